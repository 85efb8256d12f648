/* Lamina benchmark: training-step throughput of a model config on synthetic data.
 *
 *   bench-train-step CONFIG [--steps N] [--warmup N] [--batch N] [--backend NAME] [--input-grad]
 *
 * Builds the model from CONFIG (its [data] group is not read), fills one batch with random
 * inputs and labels, and times forward + backward + optimizer step, the same work
 * bench/torch_train_step.py times in PyTorch.  With --input-grad the backward pass also computes
 * dL/d(input) (lmn_model_set_input_grad), as torch_train_step.py --input-grad does with an input
 * that requires a gradient.  --batch overrides the config's batch_size (bench/gpu/device-check.sh
 * times batch 128 and 1024).  Prints one line: "samples_per_s=...".
 */
#include <lamina/lamina.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    gint64 steps = 200, warmup = 20, batch_opt = 0;
    g_autofree char *backend_name = NULL;
    gboolean input_grad = FALSE;
    GOptionEntry entries[] = {
        {"steps", 0, 0, G_OPTION_ARG_INT64, &steps, "timed steps", "N"},
        {"warmup", 0, 0, G_OPTION_ARG_INT64, &warmup, "untimed steps first", "N"},
        {"batch", 0, 0, G_OPTION_ARG_INT64, &batch_opt, "batch size (default: the config's)", "N"},
        {"backend", 0, 0, G_OPTION_ARG_STRING, &backend_name, "backend (default cpu)", "NAME"},
        {"input-grad", 0, 0, G_OPTION_ARG_NONE, &input_grad, "also compute dL/d(input)", NULL},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("CONFIG");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error) || argc != 2) {
        fprintf(stderr, "usage: bench-train-step CONFIG [--steps N] [--warmup N] [--batch N]\n");
        return 2;
    }
    if (batch_opt < 0 || batch_opt > (1 << 20)) {
        fprintf(stderr,
                "bench: --batch %" G_GINT64_FORMAT " is not in [1, 1048576] (0: the config's)\n",
                batch_opt);
        return 2;
    }
    g_autoptr(LmnRegistry) reg = lmn_registry_new();
    lmn_registry_scan(reg, NULL);
    LmnConfig *cfg = lmn_config_new_from_file(argv[1], &error);
    if (!cfg || !lmn_config_validate(cfg, reg, &error)) {
        fprintf(stderr, "bench: %s\n", error->message);
        return 1;
    }
    const LmnTrainConfig *tc = lmn_config_get_train(cfg);
    g_autoptr(LmnBackend) b =
        lmn_backend_new_for_config(reg, backend_name ? backend_name : "cpu", NULL, &error);
    if (!b) {
        fprintf(stderr, "bench: %s\n", error->message);
        return 1;
    }
    const gint64 batch = batch_opt > 0 ? batch_opt : tc->batch_size;
    LmnTensorInfo target = {lmn_shape_make(0), LMN_DTYPE_I32};
    LmnModel *model = lmn_model_new(cfg, reg, b, &target, &error);
    if (!model || !lmn_model_init_params(model, 1, &error) ||
        !lmn_model_set_input_grad(model, input_grad, &error) ||
        !lmn_model_prepare(model, batch, &error)) {
        fprintf(stderr, "bench: %s\n", error->message);
        return 1;
    }
    LmnOptimizer *opt = lmn_optimizer_new(reg, lmn_config_get_optimizer_type(cfg),
                                          lmn_config_get_optimizer_params(cfg),
                                          lmn_model_get_params(model),
                                          lmn_model_get_grads(model), &error);
    if (!opt) {
        fprintf(stderr, "bench: %s\n", error->message);
        return 1;
    }
    gint64 classes = lmn_model_get_n_classes(model);
    LmnTensor *x, *y;
    lmn_model_set_batch(model, batch, &x, &y);
    gint64 xn = lmn_tensor_numel(x);
    g_autofree float *xh = g_new(float, xn);
    g_autofree gint32 *yh = g_new(gint32, batch);
    LmnRandom r;
    lmn_random_init(&r, 42, 0);
    for (gint64 i = 0; i < xn; i++)
        xh[i] = lmn_random_uniform(&r);
    for (gint64 i = 0; i < batch; i++)
        yh[i] = (gint32) lmn_random_below(&r, (guint64) classes);
    double lr = lmn_params_get_float(lmn_config_get_optimizer_params(cfg), "lr");
    gint64 t0 = 0;
    for (gint64 s = 0; s < warmup + steps; s++) {
        if (s == warmup) {
            lmn_backend_synchronize(b, NULL);
            t0 = g_get_monotonic_time();
        }
        /* Uploading the batch is part of the step, as it is for the PyTorch loop. */
        lmn_tensor_write(x, xh, xn * sizeof(float), NULL);
        lmn_tensor_write(y, yh, batch * sizeof(gint32), NULL);
        lmn_model_forward(model, TRUE, (guint64) s, 1);
        lmn_model_backward(model, (guint64) s, 1);
        lmn_optimizer_step(opt, lr);
    }
    float loss = 0;
    if (!lmn_tensor_read(lmn_model_get_loss(model), &loss, sizeof loss, &error)) {
        fprintf(stderr, "bench: %s\n", error->message);
        return 1;
    }
    double secs = (double) (g_get_monotonic_time() - t0) / 1e6;
    printf("samples_per_s=%.1f steps=%" G_GINT64_FORMAT " batch=%" G_GINT64_FORMAT
           " seconds=%.3f final_loss=%.4f backend=\"%s\"\n",
           (double) (steps * batch) / secs, steps, batch, secs, loss, lmn_backend_describe(b));
    lmn_optimizer_free(opt);
    lmn_model_free(model);
    lmn_config_free(cfg);
    return 0;
}
