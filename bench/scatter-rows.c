/* Milliseconds per scatter_add_rows (an embedding layer's weight gradient) on a backend: a
 * table of --rows rows of --dim, --n source rows with uniformly random indices, as an embedding
 * of that vocabulary sees a batch of --n tokens.  The Vulkan backend sorts the indices by
 * default, or scans them once per table element with LAMINA_VK_SCATTER=scan, read once per
 * process, so compare two runs:
 *
 *   build/bench/bench-scatter-rows [--backend vulkan] [--rows 10000] [--dim 64] [--n 4096]
 *   LAMINA_VK_SCATTER=scan build/bench/bench-scatter-rows --reps 1
 *
 * The figure is the mean over --reps repetitions recorded back to back and waited for once,
 * after a warm-up call that also compiles the pipelines.
 */
#include <lamina/lamina.h>

#include <stdio.h>
#include <stdlib.h>

static LmnTensor *tensor(LmnBackend *b, LmnDType dtype, gint64 rows, gint64 cols, const void *data)
{
    g_autoptr(GError) error = NULL;
    LmnShape s = cols > 0 ? lmn_shape_make(2, rows, cols) : lmn_shape_make(1, rows);
    LmnTensor *t = lmn_tensor_new(b, dtype, &s, &error);
    if (t == NULL || !lmn_tensor_write(t, data, lmn_tensor_nbytes(t), &error)) {
        fprintf(stderr, "bench-scatter-rows: %s\n", error->message);
        exit(1);
    }
    return t;
}

int main(int argc, char **argv)
{
    gchar *backend_name = NULL, *device = NULL;
    gint64 rows = 10000, dim = 64, n = 4096, reps = 5;
    GOptionEntry entries[] = {
        {"backend", 0, 0, G_OPTION_ARG_STRING, &backend_name, "backend (default vulkan)", "NAME"},
        {"device", 0, 0, G_OPTION_ARG_STRING, &device, "device (default: the backend's)", "DEV"},
        {"rows", 0, 0, G_OPTION_ARG_INT64, &rows, "table rows (default 10000)", "N"},
        {"dim", 0, 0, G_OPTION_ARG_INT64, &dim, "row length (default 64)", "N"},
        {"n", 0, 0, G_OPTION_ARG_INT64, &n, "source rows (default 4096)", "N"},
        {"reps", 0, 0, G_OPTION_ARG_INT64, &reps, "timed repetitions (default 5)", "N"},
        {NULL},
    };
    g_autoptr(GError) error = NULL;
    g_autoptr(GOptionContext) oc = g_option_context_new(NULL);
    g_option_context_add_main_entries(oc, entries, NULL);
    if (!g_option_context_parse(oc, &argc, &argv, &error) || rows < 1 || dim < 1 || n < 1 ||
        reps < 1 || rows > G_MAXINT32 || rows > G_MAXINT64 / dim || n > G_MAXINT64 / dim) {
        fprintf(stderr, "bench-scatter-rows: %s\n",
                error != NULL ? error->message : "sizes and --reps must be positive");
        return 2;
    }
    LmnRegistry *registry = lmn_registry_new();
    if (!lmn_registry_scan(registry, &error)) {
        fprintf(stderr, "bench-scatter-rows: %s\n", error->message);
        return 1;
    }
    LmnBackend *b =
        lmn_backend_new(registry, backend_name ? backend_name : "vulkan", NULL, device, &error);
    if (b == NULL) {
        fprintf(stderr, "bench-scatter-rows: %s\n", error->message);
        return 1;
    }
    g_autoptr(GRand) rng = g_rand_new_with_seed(1);
    g_autofree gint32 *idx = g_new(gint32, n);
    for (gint64 i = 0; i < n; i++)
        idx[i] = g_rand_int_range(rng, 0, (gint32) rows);
    g_autofree float *table0 = g_new0(float, rows *dim), *src0 = g_new(float, n *dim);
    for (gint64 i = 0; i < n * dim; i++)
        src0[i] = (float) g_rand_double_range(rng, -1, 1);
    LmnTensor *table = tensor(b, LMN_DTYPE_F32, rows, dim, table0);
    LmnTensor *src = tensor(b, LMN_DTYPE_F32, n, dim, src0);
    LmnTensor *indices = tensor(b, LMN_DTYPE_I32, n, 0, idx);

    lmn_op_scatter_add_rows(table, indices, src, n, dim);
    if (!lmn_backend_synchronize(b, &error)) {
        fprintf(stderr, "bench-scatter-rows: %s\n", error->message);
        return 1;
    }
    const gint64 t0 = g_get_monotonic_time();
    for (gint64 r = 0; r < reps; r++)
        lmn_op_scatter_add_rows(table, indices, src, n, dim);
    if (!lmn_backend_synchronize(b, &error)) {
        fprintf(stderr, "bench-scatter-rows: %s\n", error->message);
        return 1;
    }
    const double ms = (double) (g_get_monotonic_time() - t0) / 1000.0 / (double) reps;
    printf("scatter_add_rows rows=%" G_GINT64_FORMAT " dim=%" G_GINT64_FORMAT " n=%" G_GINT64_FORMAT
           ": %.3f ms  (%s)\n",
           rows, dim, n, ms, lmn_backend_describe(b));
    lmn_tensor_unref(table);
    lmn_tensor_unref(src);
    lmn_tensor_unref(indices);
    lmn_backend_unref(b);
    lmn_registry_free(registry);
    g_free(backend_name);
    g_free(device);
    return 0;
}
