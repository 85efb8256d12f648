/* Milliseconds per forward, backward-data and backward-weights pass of the convolutions of
 * LeNet-5 (bench/lenet5.ini) and the residual CNN (bench/resnet.ini) at batch 128 on a Vulkan
 * device, through lmn_op_conv2d_* as the conv2d layer issues them: the backend's native
 * implicit-GEMM convolution, or with LAMINA_VK_CONV=im2col the core's im2col + GEMM path.  The
 * switch is read once per process, so compare two runs:
 *
 *   build/bench/bench-vulkan-conv [--device lavapipe] [--time 0.5]
 *   LAMINA_VK_CONV=im2col build/bench/bench-vulkan-conv
 *
 * Each figure is the mean over as many repetitions as fill --time seconds (at least one), after
 * a warm-up run that also compiles the pipelines; repetitions are recorded back to back and
 * waited for once.
 */
#include <lamina/lamina.h>

#include <stdio.h>
#include <stdlib.h>

typedef struct {
    const char *net, *layer;
    gint64 c, hw, k, kernel, pad;
} Conv;

#define N 128 /* batch size */

static const Conv convs[] = {
    {"lenet", "conv1", 1, 28, 6, 5, 2},
    {"lenet", "conv2", 6, 14, 16, 5, 0},
    {"resnet", "stem", 1, 28, 16, 3, 1},
    {"resnet", "b1conv", 16, 14, 16, 3, 1},
};

static LmnConv2dDesc desc_of(const Conv *cv)
{
    LmnConv2dDesc d = {.struct_size = sizeof d,
                       .n = N,
                       .c = cv->c,
                       .h = cv->hw,
                       .w = cv->hw,
                       .k = cv->k,
                       .kernel_h = cv->kernel,
                       .kernel_w = cv->kernel,
                       .stride_h = 1,
                       .stride_w = 1,
                       .pad_h = cv->pad,
                       .pad_w = cv->pad,
                       .dilation_h = 1,
                       .dilation_w = 1,
                       .groups = 1};
    d.out_h = d.h + 2 * d.pad_h - d.kernel_h + 1;
    d.out_w = d.out_h;
    return d;
}

static LmnTensor *tensor_new(LmnBackend *be, gint64 n)
{
    g_autoptr(GError) error = NULL;
    LmnShape shape = lmn_shape_make(1, MAX(n, 1));
    LmnTensor *t = lmn_tensor_new(be, LMN_DTYPE_F32, &shape, &error);
    if (t == NULL) {
        fprintf(stderr, "bench-vulkan-conv: %s\n", error->message);
        exit(1);
    }
    lmn_op_random_normal(t, 0.0f, 1.0f, 7, 0);
    return t;
}

typedef struct {
    const LmnConv2dDesc *d;
    LmnTensor *x, *w, *y, *dy, *dx, *dw, *cols;
} Operands;

static void run_pass(const Operands *o, int pass)
{
    if (pass == 0)
        lmn_op_conv2d_forward(o->d, o->x, o->w, o->y, o->cols);
    else if (pass == 1)
        lmn_op_conv2d_backward_data(o->d, o->dy, o->w, o->dx, o->cols);
    else
        lmn_op_conv2d_backward_weights(o->d, o->x, o->dy, o->dw, 0.0f, o->cols);
}

static void sync_or_die(LmnBackend *be)
{
    g_autoptr(GError) error = NULL;
    if (!lmn_backend_synchronize(be, &error)) {
        fprintf(stderr, "bench-vulkan-conv: %s\n", error->message);
        exit(1);
    }
}

/* Mean milliseconds of @pass over repetitions filling @seconds. */
static double time_pass(LmnBackend *be, const Operands *o, int pass, double seconds)
{
    run_pass(o, pass);
    sync_or_die(be);
    gint64 reps = 0;
    const gint64 t0 = g_get_monotonic_time();
    gint64 t1 = t0;
    for (gint64 batch = 1; (double) (t1 - t0) < seconds * 1e6; batch *= 2) {
        for (gint64 r = 0; r < batch; r++)
            run_pass(o, pass);
        sync_or_die(be);
        reps += batch;
        t1 = g_get_monotonic_time();
    }
    return (double) (t1 - t0) / 1e3 / (double) reps;
}

int main(int argc, char **argv)
{
    g_autofree char *device = NULL;
    double seconds = 0.5;
    GOptionEntry entries[] = {
        {"device", 0, 0, G_OPTION_ARG_STRING, &device, "Vulkan device (default: lavapipe)", "DEV"},
        {"time", 0, 0, G_OPTION_ARG_DOUBLE, &seconds, "seconds per measurement (default 0.5)", "S"},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("- Vulkan convolution timings");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        fprintf(stderr, "bench-vulkan-conv: %s\n", error->message);
        return 2;
    }
    const char *dev = device != NULL ? device : g_getenv("LAMINA_VK_DEVICE");
    g_autoptr(LmnRegistry) reg = lmn_registry_new();
    lmn_registry_scan(reg, NULL);
    LmnBackend *vk = lmn_backend_new(reg, "vulkan", NULL, dev != NULL ? dev : "lavapipe", &error);
    if (vk == NULL) {
        fprintf(stderr, "bench-vulkan-conv: %s\n", error->message);
        return 1;
    }
    printf("# %s\n# convolution: %s; ms per pass, batch %d\n", lmn_backend_describe(vk),
           lmn_backend_has_native_conv2d(vk) ? "native (implicit GEMM)" : "im2col + GEMM", N);
    printf("%-6s %-7s %9s %9s %9s %9s\n", "net", "layer", "fwd", "dX", "dW", "total");
    double nets[2] = {0, 0};
    for (guint i = 0; i < G_N_ELEMENTS(convs); i++) {
        LmnConv2dDesc d = desc_of(&convs[i]);
        const gint64 nx = d.n * d.c * d.h * d.w, nw = d.k * d.c * d.kernel_h * d.kernel_w;
        const gint64 ny = d.n * d.k * d.out_h * d.out_w, nc = lmn_op_conv2d_cols_numel(vk, &d);
        Operands o = {&d,
                      tensor_new(vk, nx),
                      tensor_new(vk, nw),
                      tensor_new(vk, ny),
                      tensor_new(vk, ny),
                      tensor_new(vk, nx),
                      tensor_new(vk, nw),
                      nc > 0 ? tensor_new(vk, nc) : NULL};
        double ms[3], total = 0;
        for (int pass = 0; pass < 3; pass++)
            total += ms[pass] = time_pass(vk, &o, pass, seconds);
        printf("%-6s %-7s %9.3f %9.3f %9.3f %9.3f\n", convs[i].net, convs[i].layer, ms[0], ms[1],
               ms[2], total);
        nets[i / 2] += total;
        LmnTensor *all[] = {o.x, o.w, o.y, o.dy, o.dx, o.dw, o.cols};
        for (guint t = 0; t < G_N_ELEMENTS(all); t++)
            if (all[t] != NULL)
                lmn_tensor_unref(all[t]);
    }
    printf("# lenet both convs %.3f ms, resnet stem + b1conv %.3f ms\n", nets[0], nets[1]);
    lmn_backend_unref(vk);
    return 0;
}
