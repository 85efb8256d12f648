/* Lamina — the MPI communicator (Open MPI; any MPI-3 library).
 *
 * Sums are not left to MPI_Allreduce, whose reduction order depends on the library's choice of
 * algorithm (message size, topology, tuning files): a ring reduce-scatter followed by a ring
 * all-gather over MPI_Isend/MPI_Irecv fixes the order for a given number of ranks.  The data
 * are cut into N chunks; in reduce-scatter step s rank r sends chunk (r - s) mod N to rank r + 1
 * and adds chunk (r - s - 1) mod N received from rank r - 1 to its own (own + incoming), so
 * after N - 1 steps rank r holds the complete sum of chunk (r + 1) mod N; the all-gather's N - 1
 * steps pass the complete chunks on unchanged.  Each rank sends 2 (N - 1) / N of the data, the
 * bandwidth-optimal amount, and every rank ends with the same bits.
 *
 * Progress: no thread.  A request advances only in request_test() and request_wait(), which the
 * core calls between layers of backward and after it, so MPI is initialised with
 * MPI_THREAD_FUNNELED and only the thread that opened it calls MPI.  Every wait polls with a
 * deadline, so a rank that died or hangs is named in an error instead of a hang.
 */
#include <lamina/communicator.h>
#include <lamina/plugin.h>

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOST_LEN MPI_MAX_PROCESSOR_NAME

typedef struct {
    MPI_Comm comm;
    int rank, size, local_rank;
    char *hosts; /* size * HOST_LEN */
    int next_tag;
    gboolean initialized_here;
    GPtrArray *abandoned; /* requests left pending by a timeout, freed only after MPI is gone */
} Mpi;

typedef struct {
    float *data;
    gsize count;
    float *tmp; /* the largest chunk */
    int step;   /* 0 .. 2 (N - 1) */
    int tag;
    MPI_Request req[2]; /* receive, send */
    gboolean posted;
} Ring;

static gboolean mpi_failed(GError **error, int code, const char *what)
{
    char text[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(code, text, &len);
    g_set_error(error, LMN_COMM_ERROR, LMN_COMM_ERROR_FAILED, "MPI: %s failed: %s", what, text);
    return FALSE;
}

static gboolean mpi_detect(void)
{
    return g_getenv("OMPI_COMM_WORLD_SIZE") || g_getenv("PMIX_RANK") || g_getenv("PMI_RANK");
}

static gboolean gather_hosts(Mpi *m, GError **error)
{
    char name[HOST_LEN] = "";
    int len = 0;
    MPI_Get_processor_name(name, &len);
    m->hosts = g_malloc0((gsize) m->size * HOST_LEN);
    int rc = MPI_Allgather(name, HOST_LEN, MPI_CHAR, m->hosts, HOST_LEN, MPI_CHAR, m->comm);
    if (rc != MPI_SUCCESS)
        return mpi_failed(error, rc, "gathering the host names");
    for (int r = 0; r < m->size; r++)
        m->hosts[(gsize) r * HOST_LEN + HOST_LEN - 1] = '\0';
    return TRUE;
}

static void mpi_close(gpointer comm);

static gpointer mpi_open(const LmnParams *params, GError **error)
{
    (void) params;
    Mpi *m = g_new0(Mpi, 1);
    m->abandoned = g_ptr_array_new_with_free_func(g_free);
    int inited = 0, provided = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            g_set_error(error, LMN_COMM_ERROR, LMN_COMM_ERROR_FAILED,
                        "MPI_Init_thread failed; start the ranks with mpirun");
            g_ptr_array_free(m->abandoned, TRUE);
            g_free(m);
            return NULL;
        }
        m->initialized_here = TRUE;
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &m->comm);
    /* Errors come back as return codes, to become GErrors naming what failed. */
    MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(m->comm, &m->rank);
    MPI_Comm_size(m->comm, &m->size);
    MPI_Comm local;
    MPI_Comm_split_type(m->comm, MPI_COMM_TYPE_SHARED, m->rank, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &m->local_rank);
    MPI_Comm_free(&local);
    if (!gather_hosts(m, error)) {
        mpi_close(m);
        return NULL;
    }
    return m;
}

static void mpi_close(gpointer comm)
{
    Mpi *m = comm;
    MPI_Comm_free(&m->comm);
    if (m->initialized_here)
        MPI_Finalize();
    g_ptr_array_free(m->abandoned, TRUE);
    g_free(m->hosts);
    g_free(m);
}

static int mpi_rank(gpointer comm)
{
    return ((Mpi *) comm)->rank;
}

static int mpi_size(gpointer comm)
{
    return ((Mpi *) comm)->size;
}

static int mpi_local_rank(gpointer comm)
{
    return ((Mpi *) comm)->local_rank;
}

static const char *mpi_host_name(gpointer comm, int rank)
{
    Mpi *m = comm;
    return rank >= 0 && rank < m->size ? m->hosts + (gsize) rank * HOST_LEN : "?";
}

/* Chunk @c of @count elements cut into @n nearly equal chunks: its first element and length. */
static void chunk(gsize count, int n, int c, gsize *first, gsize *len)
{
    gsize base = count / (gsize) n, extra = count % (gsize) n;
    *first = base * (gsize) c + MIN((gsize) c, extra);
    *len = base + ((gsize) c < extra ? 1 : 0);
}

static int mod(int a, int n)
{
    return ((a % n) + n) % n;
}

/* Posts the receive and the send of the ring's current step. */
static gboolean post_step(Mpi *m, Ring *ring, GError **error)
{
    int n = m->size, r = m->rank, s = ring->step;
    gboolean reduce = s < n - 1;
    int send_c = reduce ? mod(r - s, n) : mod(r + 1 - (s - (n - 1)), n);
    int recv_c = reduce ? mod(r - s - 1, n) : mod(r - (s - (n - 1)), n);
    gsize sf, sl, rf, rl;
    chunk(ring->count, n, send_c, &sf, &sl);
    chunk(ring->count, n, recv_c, &rf, &rl);
    float *dst = reduce ? ring->tmp : ring->data + rf;
    int rc = MPI_Irecv(dst, (int) rl, MPI_FLOAT, mod(r - 1, n), ring->tag, m->comm, &ring->req[0]);
    if (rc != MPI_SUCCESS)
        return mpi_failed(error, rc, "MPI_Irecv");
    rc = MPI_Isend(ring->data + sf, (int) sl, MPI_FLOAT, mod(r + 1, n), ring->tag, m->comm,
                   &ring->req[1]);
    if (rc != MPI_SUCCESS)
        return mpi_failed(error, rc, "MPI_Isend");
    ring->posted = TRUE;
    return TRUE;
}

static gpointer mpi_allreduce_start(gpointer comm, float *data, gsize count, GError **error)
{
    Mpi *m = comm;
    gsize first, len;
    chunk(count, m->size, 0, &first, &len);
    if (len > (gsize) G_MAXINT) {
        g_set_error(error, LMN_COMM_ERROR, LMN_COMM_ERROR_INVALID,
                    "MPI: cannot sum %" G_GSIZE_FORMAT
                    " floats over %d ranks: a chunk of %" G_GSIZE_FORMAT
                    " exceeds MPI's int count; use smaller buckets ([train] bucket_mib)",
                    count, m->size, len);
        return NULL;
    }
    Ring *ring = g_new0(Ring, 1);
    ring->data = data;
    ring->count = count;
    ring->tmp = g_new(float, MAX(len, 1));
    /* Every rank starts its requests in the same order, so the tags agree; one tag per request
     * keeps overlapping reductions apart. */
    ring->tag = m->next_tag;
    m->next_tag = (m->next_tag + 1) % 32768;
    if (m->size > 1 && !post_step(m, ring, error)) {
        g_free(ring->tmp);
        g_free(ring);
        return NULL;
    }
    return ring;
}

static void ring_free(Ring *ring)
{
    g_free(ring->tmp);
    g_free(ring);
}

/* Advances @ring as far as it goes without blocking.  Returns: 1 done, 0 pending, -1 error. */
static int ring_progress(Mpi *m, Ring *ring, GError **error)
{
    int n = m->size;
    while (ring->step < 2 * (n - 1)) {
        int flag = 0;
        int rc = MPI_Testall(2, ring->req, &flag, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) {
            mpi_failed(error, rc, "MPI_Testall");
            return -1;
        }
        if (!flag)
            return 0;
        if (ring->step < n - 1) {
            gsize rf, rl;
            chunk(ring->count, n, mod(m->rank - ring->step - 1, n), &rf, &rl);
            float *own = ring->data + rf;
            for (gsize i = 0; i < rl; i++)
                own[i] = own[i] + ring->tmp[i];
        }
        ring->step++;
        ring->posted = FALSE;
        if (ring->step < 2 * (n - 1) && !post_step(m, ring, error))
            return -1;
    }
    return 1;
}

static int mpi_request_test(gpointer comm, gpointer request, GError **error)
{
    int done = ring_progress(comm, request, error);
    if (done != 0)
        ring_free(request);
    return done;
}

/* The peer a stalled step waits for: the sender when the receive is pending, else the
 * receiver. */
static int stalled_peer(Mpi *m, Ring *ring)
{
    int flag = 0;
    MPI_Test(&ring->req[0], &flag, MPI_STATUS_IGNORE);
    return mod(m->rank + (flag ? 1 : -1), m->size);
}

static gboolean timeout_error(Mpi *m, int peer, const char *what, double timeout, GError **error)
{
    if (peer >= 0)
        g_set_error(error, LMN_COMM_ERROR, LMN_COMM_ERROR_TIMEOUT,
                    "rank %d (host %s) did not answer rank %d (host %s) within %g s in %s: it "
                    "died or hangs (raise [train] comm_timeout if it is only slow)",
                    peer, mpi_host_name(m, peer), m->rank, mpi_host_name(m, m->rank), timeout,
                    what);
    else
        g_set_error(error, LMN_COMM_ERROR, LMN_COMM_ERROR_TIMEOUT,
                    "not every rank reached %s within %g s (rank %d, host %s, waited): a rank "
                    "died or hangs (raise [train] comm_timeout if it is only slow)",
                    what, timeout, m->rank, mpi_host_name(m, m->rank));
    return FALSE;
}

/* Sleeps a little once a wait has spun for a while, so waiting ranks leave the cores to the
 * ones still computing (ranks often share cores). */
static void poll_pause(gint64 start)
{
    if (g_get_monotonic_time() - start > 2000)
        g_usleep(20);
}

static gboolean mpi_request_wait(gpointer comm, gpointer request, double timeout, GError **error)
{
    Mpi *m = comm;
    Ring *ring = request;
    gint64 start = g_get_monotonic_time();
    gint64 deadline = start + (gint64) (timeout * 1e6);
    for (;;) {
        int done = ring_progress(m, ring, error);
        if (done != 0) {
            ring_free(ring);
            return done > 0;
        }
        if (g_get_monotonic_time() > deadline) {
            int peer = stalled_peer(m, ring);
            /* MPI may still write into the buffers: they stay until MPI is gone. */
            g_ptr_array_add(m->abandoned, ring->tmp);
            g_ptr_array_add(m->abandoned, ring);
            return timeout_error(m, peer, "a gradient all-reduce", timeout, error);
        }
        poll_pause(start);
    }
}

/* Waits for a collective's request with the deadline. */
static gboolean wait_collective(Mpi *m, MPI_Request *req, const char *what, double timeout,
                                GError **error)
{
    gint64 start = g_get_monotonic_time();
    gint64 deadline = start + (gint64) (timeout * 1e6);
    for (;;) {
        int flag = 0;
        int rc = MPI_Test(req, &flag, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS)
            return mpi_failed(error, rc, what);
        if (flag)
            return TRUE;
        if (g_get_monotonic_time() > deadline)
            return timeout_error(m, -1, what, timeout, error);
        poll_pause(start);
    }
}

static gboolean mpi_broadcast(gpointer comm, void *data, gsize nbytes, int root, double timeout,
                              GError **error)
{
    Mpi *m = comm;
    /* In pieces MPI's int count can carry. */
    const gsize piece = (gsize) 1 << 30;
    for (gsize off = 0; off < nbytes; off += piece) {
        MPI_Request req;
        int rc = MPI_Ibcast((char *) data + off, (int) MIN(piece, nbytes - off), MPI_BYTE, root,
                            m->comm, &req);
        if (rc != MPI_SUCCESS)
            return mpi_failed(error, rc, "MPI_Ibcast");
        if (!wait_collective(m, &req, "a broadcast", timeout, error))
            return FALSE;
    }
    return TRUE;
}

static gboolean mpi_barrier(gpointer comm, double timeout, GError **error)
{
    Mpi *m = comm;
    MPI_Request req;
    int rc = MPI_Ibarrier(m->comm, &req);
    if (rc != MPI_SUCCESS)
        return mpi_failed(error, rc, "MPI_Ibarrier");
    return wait_collective(m, &req, "a barrier", timeout, error);
}

static void mpi_abort(gpointer comm, int code, const char *message)
{
    Mpi *m = comm;
    if (message)
        fprintf(stderr, "%s\n", message);
    fflush(stderr);
    MPI_Abort(m->comm, code);
    exit(code);
}

static const LmnCommunicatorVTable mpi_vt = {
    .struct_size = sizeof(LmnCommunicatorVTable),
    .detect = mpi_detect,
    .open = mpi_open,
    .close = mpi_close,
    .rank = mpi_rank,
    .size = mpi_size,
    .local_rank = mpi_local_rank,
    .host_name = mpi_host_name,
    .allreduce_start = mpi_allreduce_start,
    .request_test = mpi_request_test,
    .request_wait = mpi_request_wait,
    .broadcast = mpi_broadcast,
    .barrier = mpi_barrier,
    .abort = mpi_abort,
};

static const LmnFeatureDesc features[] = {
    LMN_FEATURE(
        LMN_FEATURE_COMMUNICATOR, "mpi",
        "processes started by mpirun; deterministic ring all-reduce over MPI point-to-point", NULL,
        &mpi_vt),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.mpi", LMN_VERSION_STRING, "MIT",
                           "data-parallel communication over MPI", features)
