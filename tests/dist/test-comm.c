/* Lamina — the communicator front-end and the MPI plugin, run under mpirun with N ranks (and
 * without it, as one process).
 *
 * Oracles: every rank fills its data from a formula of (rank, index), so each rank can compute
 * the sum of all of them itself.  The ring reduces chunk c as x[c+N-1] + (... + (x[c+1] + x[c]))
 * (ranks mod N), which the test repeats in float to demand the plugin's exact bits, and compares
 * with the double sum as a plain check of the arithmetic. */
#include <lamina/lamina.h>

#include <math.h>
#include <string.h>

static LmnRegistry *registry;
static LmnComm *comm;

static float value_of(int rank, gsize i)
{
    /* not integers: the order of the additions shows in the bits */
    return (float) sin(0.37 * (double) i + 1.3 * rank) * (1.0f + (float) rank / 3.0f);
}

/* The ring's sum of element @i of @count over @n ranks, in its order. */
static float ring_sum(gsize count, int n, gsize i)
{
    gsize base = count / (gsize) n, extra = count % (gsize) n;
    int c = 0;
    while (c + 1 < n && base * (gsize) (c + 1) + MIN((gsize) (c + 1), extra) <= i)
        c++;
    float s = value_of(c, i);
    for (int k = 1; k < n; k++)
        s = value_of((c + k) % n, i) + s;
    return s;
}

static void check_sum(const float *data, gsize count)
{
    int n = lmn_comm_get_size(comm);
    for (gsize i = 0; i < count; i++) {
        double exact = 0;
        for (int r = 0; r < n; r++)
            exact += value_of(r, i);
        g_assert_cmpfloat_with_epsilon(data[i], exact, 1e-5 * n);
        float want = ring_sum(count, n, i);
        if (memcmp(&data[i], &want, sizeof want) != 0)
            g_error("element %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT ": %.9g, the ring order "
                    "gives %.9g",
                    i, count, data[i], want);
    }
}

static void fill(float *data, gsize count)
{
    for (gsize i = 0; i < count; i++)
        data[i] = value_of(lmn_comm_get_rank(comm), i);
}

static void test_allreduce(void)
{
    int n = lmn_comm_get_size(comm);
    const gsize sizes[] = {0, 1, (gsize) n - 1, (gsize) n + 1, 1000, (1 << 20) + 7};
    for (gsize k = 0; k < G_N_ELEMENTS(sizes); k++) {
        g_autofree float *data = g_new(float, MAX(sizes[k], 1));
        fill(data, sizes[k]);
        g_autoptr(GError) error = NULL;
        g_assert_true(lmn_comm_allreduce(comm, data, sizes[k], &error));
        g_assert_no_error(error);
        check_sum(data, sizes[k]);
    }
}

/* Every rank ends with the same bits: rank 0's result is broadcast and compared. */
static void test_same_bits(void)
{
    const gsize count = 4099;
    g_autofree float *data = g_new(float, count);
    g_autofree float *root = g_new(float, count);
    fill(data, count);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_comm_allreduce(comm, data, count, &error));
    memcpy(root, data, count * sizeof(float));
    g_assert_true(lmn_comm_broadcast(comm, root, count * sizeof(float), 0, &error));
    g_assert_no_error(error);
    g_assert_cmpmem(root, count * sizeof(float), data, count * sizeof(float));
}

/* Three reductions in flight at once, moved on by lmn_comm_test() until all completed. */
static void test_nonblocking(void)
{
    const gsize counts[3] = {100000, 17, 65536};
    float *data[3];
    LmnCommRequest *req[3];
    g_autoptr(GError) error = NULL;
    for (int k = 0; k < 3; k++) {
        data[k] = g_new(float, counts[k]);
        fill(data[k], counts[k]);
        req[k] = lmn_comm_allreduce_start(comm, data[k], counts[k], &error);
        g_assert_no_error(error);
        g_assert_nonnull(req[k]);
    }
    int pending = 3;
    gint64 deadline = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
    while (pending > 0) {
        for (int k = 0; k < 3; k++) {
            if (!req[k])
                continue;
            int done = lmn_comm_test(comm, req[k], &error);
            g_assert_no_error(error);
            g_assert_cmpint(done, >=, 0);
            if (done) {
                req[k] = NULL;
                pending--;
            }
        }
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
    }
    for (int k = 0; k < 3; k++) {
        check_sum(data[k], counts[k]);
        g_free(data[k]);
    }
    /* and lmn_comm_wait() on one started afterwards */
    float one = (float) lmn_comm_get_rank(comm) + 1;
    LmnCommRequest *r = lmn_comm_allreduce_start(comm, &one, 1, &error);
    g_assert_true(lmn_comm_wait(comm, r, &error));
    int n = lmn_comm_get_size(comm);
    g_assert_cmpfloat(one, ==, (float) (n * (n + 1) / 2));
}

static void test_broadcast(void)
{
    int n = lmn_comm_get_size(comm), rank = lmn_comm_get_rank(comm);
    for (int root = 0; root < n; root += MAX(n - 1, 1)) {
        gint32 v[5];
        for (int i = 0; i < 5; i++)
            v[i] = rank == root ? 100 * root + i : -1;
        g_autoptr(GError) error = NULL;
        g_assert_true(lmn_comm_broadcast(comm, v, sizeof v, root, &error));
        g_assert_no_error(error);
        for (int i = 0; i < 5; i++)
            g_assert_cmpint(v[i], ==, 100 * root + i);
    }
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_comm_barrier(comm, &error));
    g_assert_no_error(error);
}

static void test_doubles(void)
{
    int n = lmn_comm_get_size(comm);
    double v[2] = {1e9 + 0.125 * lmn_comm_get_rank(comm), 1.0 / 3.0};
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_comm_allreduce_doubles(comm, v, 2, &error));
    g_assert_cmpfloat_with_epsilon(v[0], 1e9 * n + 0.125 * n * (n - 1) / 2, 1e-3);
    g_assert_cmpfloat_with_epsilon(v[1], n / 3.0, 1e-12);
}

/* A value that differs on the last rank is reported on every rank, naming that rank. */
static void test_check_same(void)
{
    int n = lmn_comm_get_size(comm), rank = lmn_comm_get_rank(comm);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_comm_check_same(comm, 42, "the test value", &error));
    g_assert_no_error(error);
    if (n == 1)
        return;
    gboolean ok = lmn_comm_check_same(comm, rank == n - 1 ? 43 : 42, "the test value", &error);
    g_assert_false(ok);
    g_assert_error(error, LMN_COMM_ERROR, LMN_COMM_ERROR_MISMATCH);
    g_autofree char *named = g_strdup_printf("rank %d (host", n - 1);
    g_assert_nonnull(strstr(error->message, named));
    g_assert_nonnull(strstr(error->message, "the test value"));
}

/* The size the launcher asked for: mpirun's -np, or 1 without mpirun. */
static void test_size(void)
{
    const char *env = g_getenv("OMPI_COMM_WORLD_SIZE");
    g_assert_cmpint(lmn_comm_get_size(comm), ==, env ? atoi(env) : 1);
    g_assert_cmpstr(lmn_comm_get_name(comm), ==, env ? "mpi" : "none");
    g_assert_cmpint(lmn_comm_get_rank(comm), <, lmn_comm_get_size(comm));
    g_assert_cmpint(lmn_comm_get_local_rank(comm), <=, lmn_comm_get_rank(comm));
    g_assert_nonnull(lmn_comm_get_host_name(comm, 0));
}

static void test_unknown(void)
{
    g_autoptr(GError) error = NULL;
    g_assert_null(lmn_comm_open(registry, "nccl", &error));
    g_assert_nonnull(error);
    g_assert_nonnull(strstr(error->message, "nccl"));
    g_assert_nonnull(strstr(error->message, "mpi"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_autoptr(GError) error = NULL;
    registry = lmn_registry_new();
    g_assert_true(lmn_registry_scan(registry, &error));
    comm = lmn_comm_open(registry, "auto", &error);
    g_assert_no_error(error);
    g_test_add_func("/dist/comm/size", test_size);
    g_test_add_func("/dist/comm/allreduce-ring-order", test_allreduce);
    g_test_add_func("/dist/comm/same-bits-on-every-rank", test_same_bits);
    g_test_add_func("/dist/comm/nonblocking", test_nonblocking);
    g_test_add_func("/dist/comm/broadcast-barrier", test_broadcast);
    g_test_add_func("/dist/comm/doubles", test_doubles);
    g_test_add_func("/dist/comm/check-same", test_check_same);
    g_test_add_func("/dist/comm/unknown", test_unknown);
    int rc = g_test_run();
    lmn_comm_free(comm);
    lmn_registry_free(registry);
    return rc;
}
