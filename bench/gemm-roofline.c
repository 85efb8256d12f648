/* Lamina benchmark: the GEMM bound of the reference MLP's training step.
 *
 *   bench-gemm-roofline [--batch N] [--reps N]
 *
 * Times, on the cpu backend (its GEMM library and thread count, LAMINA_NUM_THREADS), the eight
 * products one training step of bench/mlp-sgd.ini (784-256-256-10) runs: the three forward
 * products, the three weight gradients and the two input gradients the step needs (the first
 * layer's is not).  Prints each shape's GFLOP/s and one line "gemm_bound_samples_per_s=..." ,
 * the batch divided by the products' summed time: the throughput of a step that did nothing but
 * its GEMMs.  bench/run.sh prints Lamina's share of it.
 */
#include <lamina/lamina.h>
#include <stdio.h>

typedef struct {
    const char *what;
    gboolean trans_a, trans_b;
    gint64 m, n, k;
} Shape;

static LmnTensor *filled(LmnBackend *b, gint64 numel, float value, GError **error)
{
    LmnShape s = lmn_shape_make(1, numel);
    LmnTensor *t = lmn_tensor_new(b, LMN_DTYPE_F32, &s, error);
    if (t != NULL)
        lmn_op_fill(t, value);
    return t;
}

/* Seconds per product of @s, the best of @reps timed blocks of 20. */
static double time_shape(LmnBackend *b, const Shape *s, gint64 reps, GError **error)
{
    g_autoptr(LmnTensor) a = filled(b, s->m * s->k, 0.01f, error);
    g_autoptr(LmnTensor) bb = a ? filled(b, s->k * s->n, 0.02f, error) : NULL;
    g_autoptr(LmnTensor) c = bb ? filled(b, s->m * s->n, 0.0f, error) : NULL;
    if (c == NULL)
        return -1;
    LmnGemm g = {.struct_size = sizeof g,
                 .trans_a = s->trans_a,
                 .trans_b = s->trans_b,
                 .m = s->m,
                 .n = s->n,
                 .k = s->k,
                 .alpha = 1.0f,
                 .a = a,
                 .b = bb,
                 .c = c};
    for (int w = 0; w < 20; w++)
        lmn_op_gemm(&g);
    double best = G_MAXDOUBLE;
    for (gint64 r = 0; r < reps; r++) {
        gint64 t0 = g_get_monotonic_time();
        for (int i = 0; i < 20; i++)
            lmn_op_gemm(&g);
        if (!lmn_backend_synchronize(b, error))
            return -1;
        best = MIN(best, (double) (g_get_monotonic_time() - t0) / 20e6);
    }
    return best;
}

int main(int argc, char **argv)
{
    gint64 batch = 128, reps = 30;
    GOptionEntry entries[] = {
        {"batch", 0, 0, G_OPTION_ARG_INT64, &batch, "batch size (default 128)", "N"},
        {"reps", 0, 0, G_OPTION_ARG_INT64, &reps, "timed blocks per shape (default 30)", "N"},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error) || batch < 1 || batch > 65536 ||
        reps < 1) {
        fprintf(stderr, "usage: bench-gemm-roofline [--batch 1..65536] [--reps N>0]\n");
        return 2;
    }
    g_autoptr(LmnRegistry) reg = lmn_registry_new();
    lmn_registry_scan(reg, NULL);
    g_autoptr(LmnBackend) b = lmn_backend_new_for_config(reg, "cpu", NULL, &error);
    if (b == NULL) {
        fprintf(stderr, "bench: %s\n", error->message);
        return 1;
    }
    /* The dense layer's products: y = x W^T, dW = dy^T x, dx = dy W. */
    const Shape shapes[] = {
        {"fc1 forward", FALSE, TRUE, batch, 256, 784},
        {"fc2 forward", FALSE, TRUE, batch, 256, 256},
        {"fc3 forward", FALSE, TRUE, batch, 10, 256},
        {"fc1 dW", TRUE, FALSE, 256, 784, batch},
        {"fc2 dW", TRUE, FALSE, 256, 256, batch},
        {"fc3 dW", TRUE, FALSE, 10, 256, batch},
        {"fc2 dx", FALSE, FALSE, batch, 256, 256},
        {"fc3 dx", FALSE, FALSE, batch, 256, 10},
    };
    double total = 0;
    printf("backend: %s\n", lmn_backend_describe(b));
    for (guint i = 0; i < G_N_ELEMENTS(shapes); i++) {
        const Shape *s = &shapes[i];
        double sec = time_shape(b, s, reps, &error);
        if (sec < 0) {
            fprintf(stderr, "bench: %s\n", error->message);
            return 1;
        }
        total += sec;
        printf("%-12s m=%-5" G_GINT64_FORMAT " n=%-5" G_GINT64_FORMAT " k=%-5" G_GINT64_FORMAT
               " %8.1f GFLOP/s %8.1f us\n",
               s->what, s->m, s->n, s->k, 2.0 * s->m * s->n * s->k / sec / 1e9, sec * 1e6);
    }
    printf("gemm_bound_samples_per_s=%.0f gemm_us_per_step=%.1f\n", (double) batch / total,
           total * 1e6);
    return 0;
}
