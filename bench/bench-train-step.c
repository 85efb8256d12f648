/* Lamina benchmark: training-step throughput of a model config on synthetic data.
 *
 *   bench-train-step CONFIG [--steps N] [--warmup N] [--batch N] [--backend NAME] [--input-grad]
 *                    [--float-target C,H,W] [--profile]
 *
 * Builds the model from CONFIG (its [data] group is not read), fills one batch with random
 * inputs and labels, and times forward + backward + optimizer step, the same work
 * bench/torch_train_step.py times in PyTorch.  With --input-grad the backward pass also computes
 * dL/d(input) (lmn_model_set_input_grad), as torch_train_step.py --input-grad does with an input
 * that requires a gradient.  --batch overrides the config's batch_size (bench/gpu/device-check.sh
 * times batch 128 and 1024).  With --float-target the model's target (its y, whatever dataset
 * the config's loss names) is float32 of that per-sample shape, filled with random 0s and 1s (a
 * segmentation mask), instead of class labels.  Prints one line: "samples_per_s=..." with
 * host_us_per_step, the host time per step before the final wait (Vulkan: recording time).
 * --profile then runs as many steps again with every layer timed (lmn_layer_set_profiling) and
 * prints where a step's time goes: each layer's forward and backward, the optimizer update and
 * the rest.
 */
#include <lamina/lamina.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    LmnModel *model;
    LmnOptimizer *opt;
    LmnTensor *x;
    const float *xh;
    gint64 xn;
    GPtrArray *hosts; /* per target, its batch on the host */
    guint n_targets;
    double lr;
} Step;

/* One training step; returns the microseconds of its optimizer update (synchronised when
 * @time_update, else 0). */
static gint64 run_step(const Step *st, gint64 s, gboolean time_update)
{
    /* Uploading the batch is part of the step, as it is for the PyTorch loop. */
    lmn_tensor_write(st->x, st->xh, st->xn * sizeof(float), NULL);
    for (guint k = 0; k < st->n_targets; k++) {
        LmnTensor *t = lmn_model_get_target(st->model, k);
        lmn_tensor_write(t, g_ptr_array_index(st->hosts, k), lmn_tensor_nbytes(t), NULL);
    }
    lmn_model_forward(st->model, TRUE, (guint64) s, 1);
    lmn_model_backward(st->model, (guint64) s, 1);
    LmnBackend *b = st->x->backend;
    if (time_update)
        lmn_backend_synchronize(b, NULL);
    gint64 t0 = time_update ? g_get_monotonic_time() : 0;
    lmn_optimizer_step(st->opt, st->lr);
    if (!time_update)
        return 0;
    lmn_backend_synchronize(b, NULL);
    return g_get_monotonic_time() - t0;
}

/* --profile: @steps more steps with every layer timed, then the breakdown per step: each
 * layer's forward and backward, the optimizer update, and the rest of the step (batch upload,
 * the model's own bookkeeping). */
static void print_profile(const Step *st, gint64 steps, gint64 first_step)
{
    LmnModel *model = st->model;
    guint n = lmn_model_get_n_layers(model);
    for (guint i = 0; i < n; i++)
        lmn_layer_set_profiling(lmn_model_get_layer(model, i), TRUE);
    LmnBackend *b = st->x->backend;
    lmn_backend_synchronize(b, NULL);
    gint64 update_us = 0, t0 = g_get_monotonic_time();
    for (gint64 s = 0; s < steps; s++)
        update_us += run_step(st, first_step + s, TRUE);
    lmn_backend_synchronize(b, NULL);
    const double per = 1000.0 * (double) MAX(steps, 1);
    const double step_ms = (double) (g_get_monotonic_time() - t0) / per;
    printf("profile: %" G_GINT64_FORMAT " steps, ms per step (each layer synchronised)\n", steps);
    printf("  %-16s %-24s %9s %9s %7s\n", "layer", "type", "forward", "backward", "share");
    double layers_ms = 0;
    for (guint i = 0; i < n; i++) {
        LmnLayer *l = lmn_model_get_layer(model, i);
        const LmnLayerProfile *p = lmn_layer_get_profile(l);
        double f = (double) p->forward_us / per, bw = (double) p->backward_us / per;
        layers_ms += f + bw;
        printf("  %-16s %-24s %9.3f %9.3f %6.1f%%\n", lmn_layer_get_name(l),
               lmn_layer_get_type_name(l), f, bw, 100.0 * (f + bw) / step_ms);
        lmn_layer_set_profiling(l, FALSE);
    }
    const double update_ms = (double) update_us / per;
    printf("  %-41s %19.3f %6.1f%%\n", "optimizer update", update_ms, 100.0 * update_ms / step_ms);
    printf("  %-41s %19.3f %6.1f%%\n", "rest (batch upload, bookkeeping)",
           step_ms - layers_ms - update_ms, 100.0 * (step_ms - layers_ms - update_ms) / step_ms);
    printf("  %-41s %19.3f\n", "step", step_ms);
}

int main(int argc, char **argv)
{
    gint64 steps = 200, warmup = 20, batch_opt = 0;
    g_autofree char *backend_name = NULL;
    gboolean input_grad = FALSE, profile = FALSE;
    g_autofree char *float_target = NULL;
    GOptionEntry entries[] = {
        {"float-target", 0, 0, G_OPTION_ARG_STRING, &float_target,
         "the target is float32 of this per-sample shape, random 0/1", "C,H,W"},
        {"steps", 0, 0, G_OPTION_ARG_INT64, &steps, "timed steps", "N"},
        {"warmup", 0, 0, G_OPTION_ARG_INT64, &warmup, "untimed steps first", "N"},
        {"batch", 0, 0, G_OPTION_ARG_INT64, &batch_opt, "batch size (default: the config's)", "N"},
        {"backend", 0, 0, G_OPTION_ARG_STRING, &backend_name, "backend (default cpu)", "NAME"},
        {"input-grad", 0, 0, G_OPTION_ARG_NONE, &input_grad, "also compute dL/d(input)", NULL},
        {"profile", 0, 0, G_OPTION_ARG_NONE, &profile,
         "then run the steps again with per-layer timing and print the breakdown", NULL},
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
    LmnTensorInfo mask = {lmn_shape_make(0), LMN_DTYPE_F32};
    if (float_target) {
        g_auto(GStrv) dims = g_strsplit(float_target, ",", LMN_MAX_DIMS + 1);
        mask.shape.ndim = g_strv_length(dims);
        for (guint d = 0; d < mask.shape.ndim && d < LMN_MAX_DIMS; d++)
            mask.shape.dims[d] = g_ascii_strtoll(dims[d], NULL, 10);
        if (mask.shape.ndim > LMN_MAX_DIMS || lmn_shape_numel(&mask.shape) <= 0) {
            fprintf(stderr, "bench: --float-target %s is not a shape\n", float_target);
            return 2;
        }
    }
    /* y holds class labels unless it is the one target and --float-target is given; every other
     * target the config's losses name is the float mask. */
    guint n_targets = MAX(lmn_config_get_n_targets(cfg), 1);
    g_autofree LmnTensorInfo *targets = g_new(LmnTensorInfo, n_targets);
    for (guint k = 0; k < n_targets; k++)
        targets[k] = k > 0 || (float_target && n_targets == 1)
                         ? mask
                         : (LmnTensorInfo){lmn_shape_make(0), LMN_DTYPE_I32};
    LmnModel *model =
        lmn_model_new_with_targets(cfg, reg, b, n_targets, targets, LMN_MODEL_FLAGS_NONE, &error);
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
    gint64 classes = MAX(lmn_model_get_n_classes(model), 1);
    LmnTensor *x, *y;
    lmn_model_set_batch(model, batch, &x, &y);
    gint64 xn = lmn_tensor_numel(x);
    g_autofree float *xh = g_new(float, xn);
    LmnRandom r;
    lmn_random_init(&r, 42, 0);
    for (gint64 i = 0; i < xn; i++)
        xh[i] = lmn_random_uniform(&r);
    /* Each target's batch on the host: random labels, or random 0/1 for a float target. */
    g_autoptr(GPtrArray) hosts = g_ptr_array_new_with_free_func(g_free);
    for (guint k = 0; k < n_targets; k++) {
        LmnTensor *t = lmn_model_get_target(model, k);
        gint64 n = lmn_tensor_numel(t);
        gint32 *h = g_new(gint32, MAX(n, 1));
        for (gint64 i = 0; i < n; i++) {
            if (t->dtype == LMN_DTYPE_F32) {
                float v = lmn_random_below(&r, 2) ? 1.0f : 0.0f;
                memcpy(&h[i], &v, sizeof v);
            } else {
                h[i] = (gint32) lmn_random_below(&r, (guint64) classes);
            }
        }
        g_ptr_array_add(hosts, h);
    }
    const Step st = {.model = model,
                     .opt = opt,
                     .x = x,
                     .xh = xh,
                     .xn = xn,
                     .hosts = hosts,
                     .n_targets = n_targets,
                     .lr = lmn_params_get_float(lmn_config_get_optimizer_params(cfg), "lr")};
    gint64 t0 = 0;
    for (gint64 s = 0; s < warmup + steps; s++) {
        if (s == warmup) {
            lmn_backend_synchronize(b, NULL);
            t0 = g_get_monotonic_time();
        }
        run_step(&st, s, FALSE);
    }
    /* Host time per step before the final wait: recording (and, on the CPU backend, running) the
     * ops; on Vulkan it is the cost of building the command stream. */
    double host_us = (double) (g_get_monotonic_time() - t0) / (double) MAX(steps, 1);
    float loss = 0;
    if (!lmn_tensor_read(lmn_model_get_loss(model), &loss, sizeof loss, &error)) {
        fprintf(stderr, "bench: %s\n", error->message);
        return 1;
    }
    double secs = (double) (g_get_monotonic_time() - t0) / 1e6;
    printf("samples_per_s=%.1f steps=%" G_GINT64_FORMAT " batch=%" G_GINT64_FORMAT
           " seconds=%.3f final_loss=%.4f host_us_per_step=%.1f backend=\"%s\"\n",
           (double) (steps * batch) / secs, steps, batch, secs, loss, host_us,
           lmn_backend_describe(b));
    if (profile)
        print_profile(&st, steps, warmup + steps);
    lmn_optimizer_free(opt);
    lmn_model_free(model);
    lmn_config_free(cfg);
    return 0;
}
