/* Lamina — the communicator front-end: a plugin's vtable with the run's deadline, the
 * single-process case (no plugin), double sums carried as float pairs, staging of device tensors
 * through host memory, and the start-up check that every rank runs the same job. */
#include <lamina/communicator.h>
#include <lamina/backend.h>
#include <lamina/error.h>
#include <lamina/plugin.h>

#include <string.h>

struct _LmnComm {
    const LmnFeature *feature; /* NULL: one process */
    const LmnCommunicatorVTable *vt;
    gpointer handle;
    double timeout;
    int rank, size, local_rank;
};

/* A plugin request, or a completed one (a single process, zero floats). */
struct _LmnCommRequest {
    gpointer plugin_request;
};

GQuark lmn_comm_error_quark(void)
{
    return g_quark_from_static_string("lmn-comm-error-quark");
}

LmnComm *lmn_comm_new_single(void)
{
    LmnComm *c = g_new0(LmnComm, 1);
    c->timeout = 300;
    c->size = 1;
    return c;
}

/* The first communicator whose detect() recognises the launcher, or NULL. */
static const LmnFeature *detect_feature(LmnRegistry *registry)
{
    g_autoptr(GPtrArray) all = lmn_registry_list(registry, LMN_FEATURE_COMMUNICATOR);
    for (guint i = 0; all && i < all->len; i++) {
        const LmnFeature *f = g_ptr_array_index(all, i);
        g_autoptr(GError) e = NULL;
        const LmnFeature *loaded =
            lmn_registry_lookup(registry, LMN_FEATURE_COMMUNICATOR, f->desc->name, &e);
        if (!loaded)
            continue;
        const LmnCommunicatorVTable *vt = loaded->desc->vtable;
        /* (the registry checked every required member, detect() among them) */
        if (vt->detect())
            return loaded;
    }
    return NULL;
}

LmnComm *lmn_comm_open(LmnRegistry *registry, const char *name, GError **error)
{
    if (name && strcmp(name, "none") == 0)
        return lmn_comm_new_single();
    const LmnFeature *f = NULL;
    if (name == NULL || strcmp(name, "auto") == 0) {
        f = detect_feature(registry);
        if (!f)
            return lmn_comm_new_single();
    } else {
        f = lmn_registry_lookup(registry, LMN_FEATURE_COMMUNICATOR, name, error);
        if (!f) {
            g_prefix_error(error, "--distributed %s: ", name);
            return NULL;
        }
    }
    const LmnCommunicatorVTable *vt = f->desc->vtable;
    g_autoptr(LmnParams) params =
        lmn_registry_validate_params(f, NULL, NULL, "[distributed]", error);
    if (!params)
        return NULL;
    gpointer h = vt->open(params, error);
    if (!h)
        return NULL;
    LmnComm *c = lmn_comm_new_single();
    c->feature = f;
    c->vt = vt;
    c->handle = h;
    c->rank = vt->rank(h);
    c->size = vt->size(h);
    c->local_rank = vt->local_rank(h);
    return c;
}

void lmn_comm_free(LmnComm *comm)
{
    if (!comm)
        return;
    if (comm->vt)
        comm->vt->close(comm->handle);
    g_free(comm);
}

const char *lmn_comm_get_name(const LmnComm *comm)
{
    return comm->feature ? comm->feature->desc->name : "none";
}

int lmn_comm_get_rank(const LmnComm *comm)
{
    return comm->rank;
}

int lmn_comm_get_size(const LmnComm *comm)
{
    return comm->size;
}

int lmn_comm_get_local_rank(const LmnComm *comm)
{
    return comm->local_rank;
}

const char *lmn_comm_get_host_name(const LmnComm *comm, int rank)
{
    g_return_val_if_fail(rank >= 0 && rank < comm->size, "?");
    if (comm->vt)
        return comm->vt->host_name(comm->handle, rank);
    return g_get_host_name();
}

void lmn_comm_set_timeout(LmnComm *comm, double seconds)
{
    g_return_if_fail(seconds > 0);
    comm->timeout = seconds;
}

double lmn_comm_get_timeout(const LmnComm *comm)
{
    return comm->timeout;
}

LmnCommRequest *lmn_comm_allreduce_start(LmnComm *comm, float *data, gsize count, GError **error)
{
    LmnCommRequest *r = g_new0(LmnCommRequest, 1);
    if (comm->size == 1 || count == 0)
        return r;
    r->plugin_request = comm->vt->allreduce_start(comm->handle, data, count, error);
    if (!r->plugin_request) {
        g_free(r);
        return NULL;
    }
    return r;
}

int lmn_comm_test(LmnComm *comm, LmnCommRequest *request, GError **error)
{
    int done = request->plugin_request
                   ? comm->vt->request_test(comm->handle, request->plugin_request, error)
                   : 1;
    if (done != 0)
        g_free(request);
    return done;
}

gboolean lmn_comm_wait(LmnComm *comm, LmnCommRequest *request, GError **error)
{
    gboolean ok =
        request->plugin_request
            ? comm->vt->request_wait(comm->handle, request->plugin_request, comm->timeout, error)
            : TRUE;
    g_free(request);
    return ok;
}

gboolean lmn_comm_allreduce(LmnComm *comm, float *data, gsize count, GError **error)
{
    LmnCommRequest *r = lmn_comm_allreduce_start(comm, data, count, error);
    return r && lmn_comm_wait(comm, r, error);
}

gboolean lmn_comm_allreduce_doubles(LmnComm *comm, double *data, gsize count, GError **error)
{
    if (comm->size == 1 || count == 0)
        return TRUE;
    if (count > G_MAXSIZE / sizeof(double)) {
        g_set_error(error, LMN_COMM_ERROR, LMN_COMM_ERROR_INVALID,
                    "cannot sum %" G_GSIZE_FORMAT " doubles: too many", count);
        return FALSE;
    }
    /* Small arrays (epoch figures): every rank broadcasts its values in turn and all add them in
     * rank order in double, so the sum keeps double precision and the same bits everywhere. */
    g_autofree double *sum = g_new0(double, count);
    g_autofree double *v = g_new(double, count);
    for (int r = 0; r < comm->size; r++) {
        memcpy(v, data, count * sizeof(double));
        if (!lmn_comm_broadcast(comm, v, count * sizeof(double), r, error))
            return FALSE;
        for (gsize i = 0; i < count; i++)
            sum[i] += v[i];
    }
    memcpy(data, sum, count * sizeof(double));
    return TRUE;
}

gboolean lmn_comm_broadcast(LmnComm *comm, void *data, gsize nbytes, int root, GError **error)
{
    g_return_val_if_fail(root >= 0 && root < comm->size, FALSE);
    if (comm->size == 1 || nbytes == 0)
        return TRUE;
    return comm->vt->broadcast(comm->handle, data, nbytes, root, comm->timeout, error);
}

gboolean lmn_comm_broadcast_tensor(LmnComm *comm, LmnTensor *t, int root, GError **error)
{
    if (comm->size == 1)
        return TRUE;
    gsize nbytes = lmn_tensor_nbytes(t);
    if (!lmn_backend_synchronize(t->backend, error))
        return FALSE;
    void *host = lmn_backend_host_pointer(t);
    if (host)
        return lmn_comm_broadcast(comm, host, nbytes, root, error);
    g_autofree void *staging = g_malloc(nbytes);
    return lmn_tensor_read(t, staging, nbytes, error) &&
           lmn_comm_broadcast(comm, staging, nbytes, root, error) &&
           lmn_tensor_write(t, staging, nbytes, error);
}

gboolean lmn_comm_barrier(LmnComm *comm, GError **error)
{
    if (comm->size == 1)
        return TRUE;
    return comm->vt->barrier(comm->handle, comm->timeout, error);
}

/* The ranks whose value differs from rank 0's, as "1 (host a), 3 (host b)". */
static char *list_differing(const LmnComm *comm, const float *flags)
{
    GString *s = g_string_new(NULL);
    for (int r = 0; r < comm->size; r++)
        if (flags[r] != 0)
            g_string_append_printf(s, "%s%d (host %s)", s->len ? ", " : "", r,
                                   lmn_comm_get_host_name(comm, r));
    return g_string_free(s, FALSE);
}

gboolean lmn_comm_check_same(LmnComm *comm, guint64 value, const char *what, GError **error)
{
    if (comm->size == 1)
        return TRUE;
    guint64 root = value;
    if (!lmn_comm_broadcast(comm, &root, sizeof root, 0, error))
        return FALSE;
    /* Each rank marks its own slot, so every rank learns which ones differ and all stop. */
    g_autofree float *flags = g_new0(float, (gsize) comm->size);
    flags[comm->rank] = root != value ? 1.0f : 0.0f;
    if (!lmn_comm_allreduce(comm, flags, (gsize) comm->size, error))
        return FALSE;
    g_autofree char *bad = list_differing(comm, flags);
    if (bad[0] == '\0')
        return TRUE;
    g_set_error(error, LMN_COMM_ERROR, LMN_COMM_ERROR_MISMATCH,
                "rank %s run%s a different job from rank 0 (host %s): %s differ. Start every "
                "rank with the same config file, overrides, plugins and Lamina build",
                bad, strchr(bad, ',') ? "" : "s", lmn_comm_get_host_name(comm, 0), what);
    return FALSE;
}

void lmn_comm_abort(LmnComm *comm, int code, const char *message)
{
    if (comm->size == 1)
        return;
    comm->vt->abort(comm->handle, code, message);
}
