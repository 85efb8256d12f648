/* Lamina benchmark: optimizer-step throughput.
 *
 *   bench-optim-throughput [--n N] [--steps N] [--warmup N] [--threads N] [OPTIMIZER...]
 *
 * Times lmn_optimizer_step over one flat vector of N parameters (default 10M) on the CPU
 * backend with the given thread count, for each optimizer named (default: sgd with momentum 0.9,
 * adam, adamw, rmsprop, adagrad); the gradient stays fixed (a step only reads it). This is
 * the work bench/torch_optim_throughput.py times with torch.optim's foreach
 * implementation.  Prints one line per optimizer: "optimizer=NAME params_per_s=...".
 */
#include <lamina/lamina.h>
#include <stdio.h>
#include <stdlib.h>

/* Hyperparameters that make each optimizer do its usual work (sgd: momentum). */
static LmnParams *bench_hyper(LmnRegistry *reg, const char *name, GError **error)
{
    const LmnFeature *f = lmn_registry_lookup(reg, LMN_FEATURE_OPTIMIZER, name, error);
    if (f == NULL)
        return NULL;
    const char *sgd_keys[] = {"lr", "momentum", NULL};
    const char *sgd_values[] = {"0.01", "0.9", NULL};
    gboolean sgd = g_str_equal(name, "sgd");
    return lmn_registry_validate_params(f, sgd ? sgd_keys : NULL, sgd ? sgd_values : NULL,
                                        "bench [optimizer]", error);
}

int main(int argc, char **argv)
{
    gint64 n = 10 * 1000 * 1000, steps = 50, warmup = 5, threads = 1;
    GOptionEntry entries[] = {
        {"n", 0, 0, G_OPTION_ARG_INT64, &n, "parameters (default 10M)", "N"},
        {"steps", 0, 0, G_OPTION_ARG_INT64, &steps, "timed steps", "N"},
        {"warmup", 0, 0, G_OPTION_ARG_INT64, &warmup, "untimed steps first", "N"},
        {"threads", 0, 0, G_OPTION_ARG_INT64, &threads, "CPU backend threads (0: one per core)",
         "N"},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("[OPTIMIZER...]");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error) || n <= 0 || steps <= 0) {
        fprintf(stderr, "usage: bench-optim-throughput [--n N] [--steps N] [--threads N] "
                        "[OPTIMIZER...]\n");
        return 2;
    }
    static const char *const defaults[] = {"sgd", "adam", "adamw", "rmsprop", "adagrad", NULL};
    const char *const *names = argc > 1 ? (const char *const *) argv + 1 : defaults;

    g_autoptr(LmnRegistry) reg = lmn_registry_new();
    lmn_registry_scan(reg, NULL);
    const LmnFeature *cpu = lmn_registry_lookup(reg, LMN_FEATURE_BACKEND, "cpu", &error);
    g_autofree char *threads_text = g_strdup_printf("%" G_GINT64_FORMAT, threads);
    const char *bkeys[] = {"threads", NULL};
    const char *bvalues[] = {threads_text, NULL};
    g_autoptr(LmnParams) bparams =
        cpu ? lmn_registry_validate_params(cpu, bkeys, bvalues, "bench [backend]", &error) : NULL;
    g_autoptr(LmnBackend) b = bparams ? lmn_backend_new(reg, "cpu", bparams, NULL, &error) : NULL;
    if (b == NULL) {
        fprintf(stderr, "bench: %s\n", error->message);
        return 1;
    }

    LmnShape shape = lmn_shape_make(1, n);
    g_autoptr(LmnTensor) params = lmn_tensor_new(b, LMN_DTYPE_F32, &shape, &error);
    g_autoptr(LmnTensor) grads = params ? lmn_tensor_new(b, LMN_DTYPE_F32, &shape, &error) : NULL;
    if (grads == NULL) {
        fprintf(stderr, "bench: %s\n", error->message);
        return 1;
    }
    /* Small random values, so no optimizer runs into denormals or overflow. */
    g_autofree float *host = g_new(float, n);
    LmnRandom r;
    lmn_random_init(&r, 1, 0);
    for (gint64 i = 0; i < n; i++)
        host[i] = (float) (lmn_random_uniform(&r) - 0.5);
    lmn_tensor_write(grads, host, (gsize) n * sizeof(float), NULL);

    for (gsize k = 0; names[k] != NULL; k++) {
        lmn_tensor_write(params, host, (gsize) n * sizeof(float), NULL);
        g_autoptr(LmnParams) hyper = bench_hyper(reg, names[k], &error);
        LmnOptimizer *opt =
            hyper ? lmn_optimizer_new(reg, names[k], hyper, params, grads, &error) : NULL;
        if (opt == NULL) {
            fprintf(stderr, "bench: %s\n", error->message);
            return 1;
        }
        double lr = lmn_params_get_float(hyper, "lr");
        gint64 t0 = 0;
        for (gint64 s = 0; s < warmup + steps; s++) {
            if (s == warmup) {
                lmn_backend_synchronize(b, NULL);
                t0 = g_get_monotonic_time();
            }
            lmn_optimizer_step(opt, lr);
        }
        lmn_backend_synchronize(b, NULL);
        double secs = (double) (g_get_monotonic_time() - t0) / 1e6;
        printf("optimizer=%s params_per_s=%.4g n=%" G_GINT64_FORMAT " steps=%" G_GINT64_FORMAT
               " seconds=%.3f backend=\"%s\"\n",
               names[k], (double) n * (double) steps / secs, n, steps, secs,
               lmn_backend_describe(b));
        fflush(stdout);
        lmn_optimizer_free(opt);
    }
    return 0;
}
