/* Lamina benchmark: the U-Net's layers and ops, forward + backward, at U-Net-like shapes on the
 * CPU backend (the work bench/torch_axis_ops.py times in PyTorch).
 *
 *   bench-axis-ops [--iters N] [--warmup N]
 *
 * Cases, each at batch 32 and [C, H, W] = [16, 28, 28], [32, 14, 14], [64, 7, 7]:
 *   layer_norm:  the layer_norm layer over [C, H, W] (nn.LayerNorm([C, H, W])), forward and
 *                backward with every gradient;
 *   mul_channel: y = x * w, w [1, C, 1, 1], and both gradients;
 *   sub_spatial: y = x - m, m [32, 1, H, W], and both gradients;
 *   conv_transpose2d: C to C / 2 channels, kernel 2, stride 2 (the U-Net's up-step), every
 *                gradient;
 *   upsample:    bilinear, scale factor 2, and its backward.
 * Prints one line per case: "CASE CxHxW ms_per_iter=...".
 */
#include <lamina/lamina.h>
#include <stdio.h>

static LmnTensor *random_tensor(LmnBackend *b, const LmnShape *s, LmnRandom *r)
{
    LmnTensor *t = lmn_tensor_new(b, LMN_DTYPE_F32, s, NULL);
    g_autofree float *h = g_new(float, lmn_shape_numel(s));
    for (gint64 i = 0; i < lmn_shape_numel(s); i++)
        h[i] = lmn_random_uniform(r) * 2 - 1;
    lmn_tensor_write(t, h, lmn_tensor_nbytes(t), NULL);
    return t;
}

typedef struct {
    LmnLayer *layer;
    LmnLayerIO io;
    LmnBinaryOp op;
    LmnTensor *x, *w, *y, *dy, *dx, *dw;
    LmnBroadcast bc;
} Work;

static void step(Work *w)
{
    if (w->layer != NULL) {
        w->io.output_grad = NULL;
        w->io.input_grads = NULL;
        lmn_layer_forward(w->layer, &w->io);
        w->io.output_grad = w->dy;
        w->io.input_grads = &w->dx;
        lmn_layer_backward(w->layer, &w->io);
        return;
    }
    lmn_op_binary_broadcast(w->op, w->x, w->w, w->y, &w->bc);
    lmn_op_binary_broadcast_backward(w->op, w->x, w->w, w->dy, w->dx, w->dw, &w->bc);
}

static gboolean setup(LmnRegistry *reg, LmnBackend *b, const char *name, gint64 c, gint64 h,
                      Work *w, GError **error)
{
    LmnRandom r;
    lmn_random_init(&r, 7, 0);
    LmnShape xs = lmn_shape_make(4, (gint64) 32, c, h, h);
    w->x = random_tensor(b, &xs, &r);
    w->y = random_tensor(b, &xs, &r);
    w->dy = random_tensor(b, &xs, &r);
    w->dx = random_tensor(b, &xs, &r);
    g_autofree char *half = g_strdup_printf("%" G_GINT64_FORMAT, c / 2);
    const char *k_ln[] = {"normalized_dims", NULL}, *v_ln[] = {"3", NULL};
    const char *k_ct[] = {"out_channels", "kernel_size", "stride", NULL},
               *v_ct[] = {half, "2", "2", NULL};
    const char *k_up[] = {"mode", "scale_factor", NULL}, *v_up[] = {"bilinear", "2", NULL};
    const char *const *keys = g_str_equal(name, "layer_norm")         ? k_ln
                              : g_str_equal(name, "conv_transpose2d") ? k_ct
                              : g_str_equal(name, "upsample")         ? k_up
                                                                      : NULL;
    const char *const *values = keys == k_ln ? v_ln : keys == k_ct ? v_ct : v_up;
    if (keys != NULL) {
        const LmnFeature *f = lmn_registry_lookup(reg, LMN_FEATURE_LAYER, name, error);
        LmnParams *p = f ? lmn_registry_validate_params(f, keys, values, "bench", error) : NULL;
        LmnTensorInfo in = {lmn_shape_make(3, c, h, h), LMN_DTYPE_F32};
        w->layer = p ? lmn_layer_new(reg, name, "layer", 0, p, b, 1, &in, error) : NULL;
        if (p != NULL)
            lmn_params_unref(p);
        if (w->layer == NULL || !lmn_layer_prepare_batch(w->layer, 32, error))
            return FALSE;
        LmnShape ys = lmn_shape_prepend(&lmn_layer_get_output_info(w->layer)->shape, 32);
        lmn_tensor_unref(w->y);
        lmn_tensor_unref(w->dy);
        w->y = random_tensor(b, &ys, &r);
        w->dy = random_tensor(b, &ys, &r);
        w->io = (LmnLayerIO){.struct_size = sizeof(LmnLayerIO),
                             .n_inputs = 1,
                             .inputs = &w->x,
                             .output = w->y,
                             .batch = 32,
                             .training = TRUE};
        return TRUE;
    }
    const gboolean mul = g_str_equal(name, "mul_channel");
    LmnShape ws = mul ? lmn_shape_make(4, (gint64) 1, c, (gint64) 1, (gint64) 1)
                      : lmn_shape_make(4, (gint64) 32, (gint64) 1, h, h);
    w->op = mul ? LMN_BINARY_MUL : LMN_BINARY_SUB;
    w->w = random_tensor(b, &ws, &r);
    w->dw = random_tensor(b, &ws, &r);
    return lmn_broadcast_init(&w->bc, &xs, &ws, error);
}

static void work_clear(Work *w)
{
    if (w->layer != NULL)
        lmn_layer_free(w->layer);
    LmnTensor *all[] = {w->x, w->w, w->y, w->dy, w->dx, w->dw};
    for (guint i = 0; i < G_N_ELEMENTS(all); i++)
        if (all[i] != NULL)
            lmn_tensor_unref(all[i]);
}

int main(int argc, char **argv)
{
    gint64 iters = 50, warmup = 5;
    GOptionEntry entries[] = {
        {"iters", 0, 0, G_OPTION_ARG_INT64, &iters, "timed iterations per case", "N"},
        {"warmup", 0, 0, G_OPTION_ARG_INT64, &warmup, "untimed iterations first", "N"},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        fprintf(stderr, "bench-axis-ops: %s\n", error->message);
        return 2;
    }
    g_autoptr(LmnRegistry) reg = lmn_registry_new();
    lmn_registry_scan(reg, NULL);
    g_autoptr(LmnBackend) b = lmn_backend_new(reg, "cpu", NULL, NULL, &error);
    if (b == NULL) {
        fprintf(stderr, "bench-axis-ops: %s\n", error->message);
        return 1;
    }
    const char *cases[] = {"layer_norm", "mul_channel", "sub_spatial", "conv_transpose2d",
                           "upsample"};
    const gint64 shapes[][2] = {{16, 28}, {32, 14}, {64, 7}};
    for (guint k = 0; k < G_N_ELEMENTS(cases); k++)
        for (guint s = 0; s < G_N_ELEMENTS(shapes); s++) {
            Work w = {0};
            if (!setup(reg, b, cases[k], shapes[s][0], shapes[s][1], &w, &error)) {
                fprintf(stderr, "bench-axis-ops: %s\n", error->message);
                return 1;
            }
            for (gint64 i = 0; i < warmup; i++)
                step(&w);
            lmn_backend_synchronize(b, NULL);
            const gint64 t0 = g_get_monotonic_time();
            for (gint64 i = 0; i < iters; i++)
                step(&w);
            lmn_backend_synchronize(b, NULL);
            const double ms = (double) (g_get_monotonic_time() - t0) / 1000.0 / (double) iters;
            printf("%s %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
                   " ms_per_iter=%.4f\n",
                   cases[k], shapes[s][0], shapes[s][1], shapes[s][1], ms);
            work_clear(&w);
        }
    return 0;
}
