/* Lamina — all-reduce bandwidth of a communicator: run under mpirun (bench/dist.sh).  For each
 * size from 64 KiB to 64 MiB it times lmn_comm_allreduce() (the ring reduce-scatter and
 * all-gather) and prints the time and the bus bandwidth 2 (N - 1) / N * S / t, the figure the
 * alpha-beta model's beta is (NCCL's busbw convention), on rank 0.
 *   bench-allreduce [--min-bytes B] [--max-bytes B] [--seconds S] */
#include <lamina/lamina.h>

#include <stdio.h>
#include <stdlib.h>

static double time_one(LmnComm *comm, float *data, gsize count, double seconds)
{
    g_autoptr(GError) error = NULL;
    /* warm-up, then as many repetitions as fit in @seconds (decided by rank 0 for all) */
    if (!lmn_comm_allreduce(comm, data, count, &error))
        g_error("%s", error->message);
    gint reps = 1;
    for (;;) {
        if (!lmn_comm_barrier(comm, &error))
            g_error("%s", error->message);
        gint64 t0 = g_get_monotonic_time();
        for (gint i = 0; i < reps; i++)
            if (!lmn_comm_allreduce(comm, data, count, &error))
                g_error("%s", error->message);
        double dt = (double) (g_get_monotonic_time() - t0) / 1e6;
        if (!lmn_comm_broadcast(comm, &dt, sizeof dt, 0, &error))
            g_error("%s", error->message);
        if (dt >= seconds || reps >= 1 << 20)
            return dt / reps;
        reps *= 2;
    }
}

int main(int argc, char **argv)
{
    gint64 min_bytes = 64 << 10, max_bytes = 64 << 20;
    double seconds = 0.5;
    GOptionEntry entries[] = {
        {"min-bytes", 0, 0, G_OPTION_ARG_INT64, &min_bytes, "smallest size (default 64 KiB)", "B"},
        {"max-bytes", 0, 0, G_OPTION_ARG_INT64, &max_bytes, "largest size (default 64 MiB)", "B"},
        {"seconds", 0, 0, G_OPTION_ARG_DOUBLE, &seconds, "time per size (default 0.5)", "S"},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new(NULL);
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error) || min_bytes < 4 ||
        max_bytes < min_bytes) {
        fprintf(stderr, "bench-allreduce: %s\n", error ? error->message : "bad sizes");
        return 2;
    }
    g_autoptr(LmnRegistry) registry = lmn_registry_new();
    if (!lmn_registry_scan(registry, &error))
        g_error("%s", error->message);
    LmnComm *comm = lmn_comm_open(registry, "auto", &error);
    if (!comm)
        g_error("%s", error->message);
    int n = lmn_comm_get_size(comm), rank = lmn_comm_get_rank(comm);
    float *data = g_new0(float, (gsize) max_bytes / sizeof(float));
    if (rank == 0)
        printf("all-reduce over %d ranks (%s)\n%12s %12s %12s\n", n, lmn_comm_get_name(comm),
               "bytes", "time_us", "busbw_MB/s");
    for (gint64 bytes = min_bytes; bytes <= max_bytes; bytes *= 4) {
        gsize count = (gsize) bytes / sizeof(float);
        double t = time_one(comm, data, count, seconds);
        double busbw = n > 1 ? 2.0 * (n - 1) / n * (double) bytes / t / 1e6 : 0;
        if (rank == 0)
            printf("%12" G_GINT64_FORMAT " %12.1f %12.1f\n", bytes, t * 1e6, busbw);
    }
    fflush(stdout);
    g_free(data);
    lmn_comm_free(comm);
    return 0;
}
