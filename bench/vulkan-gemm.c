/* GFLOP/s of the Vulkan GEMM kernels on the GEMM shapes of the reference MLP (bench/mlp-sgd.ini),
 * LeNet-5 (bench/lenet5.ini) and the residual CNN (bench/resnet.ini) at batch 128 — forward, input
 * gradient (dX) and weight gradient (dW) of every dense and conv2d layer, as plugins/layers/dense.c
 * and conv.c issue them — next to the CPU backend (OpenBLAS) on the same shapes.
 *
 *   build/bench/bench-vulkan-gemm [--device lavapipe] [--kernels tiled,reg,splitk] [--time 0.1]
 *                                 [--filter "mlp fc1"] [--square 4096]
 *
 * Each kernel is a LAMINA_VK_GEMM value ("splitk" forces split-K over the device's default
 * kernel).  Every figure is the mean over as many repetitions as fill --time seconds (at least
 * one), after a warm-up run that also compiles the pipelines; Vulkan repetitions are recorded
 * back to back and waited for once.  The ratio column is Vulkan / CPU for each kernel.
 * --square N adds an N x N x N product (NN, row "square N"), the size at which a GPU's peak shows;
 * the mean row stays that of the models' shapes.
 */
#include <lamina/lamina.h>

#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *net, *layer, *pass;
    gboolean ta, tb;
    gint64 m, n, k, batch, stride_a, stride_b, stride_c;
} Shape;

#define N 128 /* batch size */

/* clang-format off */
/* Dense layer in -> out: forward y = x W^T, dX = dy W, dW = dy^T x. */
#define DENSE(net, layer, in, out)                                                                 \
    {net, layer, "fwd", FALSE, TRUE, N, out, in, 0, 0, 0, 0},                                      \
        {net, layer, "dX", FALSE, FALSE, N, in, out, 0, 0, 0, 0},                                  \
        {net, layer, "dW", TRUE, FALSE, out, in, N, 0, 0, 0, 0}

/* Conv with OC output channels, K = IC*KH*KW patch rows, L output pixels (per sample, batched
 * with the weights broadcast), then the per-sample dW terms summed by a ones^T GEMM. */
#define CONV(net, layer, oc, kk, l, rows)                                                          \
    {net, layer, "fwd", FALSE, FALSE, oc, l, kk, N, 0, (rows) * (l), (oc) * (l)},                  \
        {net, layer, "dX", TRUE, FALSE, kk, l, oc, N, 0, (oc) * (l), (rows) * (l)},                \
        {net, layer, "dW", FALSE, TRUE, oc, kk, l, N, (oc) * (l), (rows) * (l), (oc) * (kk)},      \
        {net, layer, "dW-sum", TRUE, FALSE, 1, (oc) * (kk), N, 0, 0, 0, 0}

/* clang-format on */

static const Shape shapes[] = {
    DENSE("mlp", "fc1", 784, 256),
    DENSE("mlp", "fc2", 256, 256),
    DENSE("mlp", "fc3", 256, 10),
    CONV("lenet", "conv1", 6, 25, 784, 25),
    CONV("lenet", "conv2", 16, 150, 100, 150),
    DENSE("lenet", "fc1", 400, 120),
    DENSE("lenet", "fc2", 120, 84),
    DENSE("lenet", "fc3", 84, 10),
    /* bench/resnet.ini: the 3x3 stem on 28x28, the block's two 16-channel 3x3 convs on 14x14. */
    CONV("resnet", "stem", 16, 9, 784, 9),
    CONV("resnet", "b1conv", 16, 144, 196, 144),
    DENSE("resnet", "fc", 784, 10),
};

typedef struct {
    LmnTensor *a, *b, *c;
} Operands;

/* --cpu-time: divide by the process's CPU time (all threads, the driver's included) instead of
 * wall time, to compare kernels on a machine shared with other work. */
static gboolean use_cpu_time;

static double now(void)
{
    if (!use_cpu_time)
        return g_get_monotonic_time() / 1e6;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double) ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double) ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static gint64 extent(gint64 batch, gint64 stride, gint64 size)
{
    return (MAX(batch, 1) - 1) * stride + size;
}

static Operands operands_new(LmnBackend *be, const Shape *s)
{
    g_autoptr(GError) error = NULL;
    const gint64 sizes[3] = {extent(s->batch, s->stride_a, s->m * s->k),
                             extent(s->batch, s->stride_b, s->k * s->n),
                             extent(s->batch, s->stride_c, s->m * s->n)};
    LmnTensor *t[3];
    for (guint i = 0; i < 3; i++) {
        LmnShape shape = lmn_shape_make(1, sizes[i]);
        t[i] = lmn_tensor_new(be, LMN_DTYPE_F32, &shape, &error);
        g_assert_no_error(error);
        g_autofree float *v = g_new(float, sizes[i]);
        for (gint64 j = 0; j < sizes[i]; j++)
            v[j] = (float) ((j * 7919) % 1000) / 1000.0f - 0.5f;
        lmn_tensor_write(t[i], v, (gsize) sizes[i] * 4, &error);
        g_assert_no_error(error);
    }
    return (Operands){t[0], t[1], t[2]};
}

static void run(const Shape *s, const Operands *o)
{
    LmnGemm g = {
        .struct_size = sizeof(LmnGemm),
        .trans_a = s->ta,
        .trans_b = s->tb,
        .m = s->m,
        .n = s->n,
        .k = s->k,
        .alpha = 1.0f,
        .beta = 0.0f,
        .a = o->a,
        .b = o->b,
        .c = o->c,
        .batch = s->batch,
        .stride_a = s->stride_a,
        .stride_b = s->stride_b,
        .stride_c = s->stride_c,
    };
    lmn_op_gemm(&g);
}

static void sync_or_die(LmnBackend *be)
{
    g_autoptr(GError) error = NULL;
    if (!lmn_backend_synchronize(be, &error)) {
        fprintf(stderr, "bench-vulkan-gemm: %s\n", error->message);
        exit(1);
    }
}

/* GFLOP/s of @s on @be over about @seconds. */
static double measure(LmnBackend *be, const Shape *s, double seconds)
{
    Operands o = operands_new(be, s);
    run(s, &o); /* warm-up: pipelines, caches */
    sync_or_die(be);
    double t0 = now();
    run(s, &o);
    sync_or_die(be);
    double once = MAX(now() - t0, 1e-6);
    const gint reps = (gint) CLAMP(seconds / once, 1, 1000);
    t0 = now();
    for (gint r = 0; r < reps; r++)
        run(s, &o);
    sync_or_die(be);
    const double t = MAX(now() - t0, 1e-6);
    lmn_tensor_unref(o.a);
    lmn_tensor_unref(o.b);
    lmn_tensor_unref(o.c);
    const double flops =
        2.0 * (double) s->m * (double) s->n * (double) s->k * (double) MAX(s->batch, 1) * reps;
    return flops / t / 1e9;
}

/* Prints one row: @sh on the CPU and on every Vulkan backend; adds the figures to @sum. */
static void report(const Shape *sh, LmnBackend *cpu, LmnBackend **vk, guint nk, double seconds,
                   double *sum)
{
    char mnk[48];
    g_snprintf(mnk, sizeof mnk, "%" G_GINT64_FORMAT "x%" G_GINT64_FORMAT "x%" G_GINT64_FORMAT,
               sh->m, sh->n, sh->k);
    printf("%-6s %-6s %-7s %c%c  %15s %6" G_GINT64_FORMAT, sh->net, sh->layer, sh->pass,
           sh->ta ? 'T' : 'N', sh->tb ? 'T' : 'N', mnk, MAX(sh->batch, 1));
    const double c = measure(cpu, sh, seconds);
    sum[0] += c;
    printf(" %8.2f", c);
    for (guint i = 0; i < nk; i++) {
        const double v = measure(vk[i], sh, seconds);
        sum[i + 1] += v;
        printf(" %7.2f (%4.2fx)", v, v / c);
    }
    printf("\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    g_autofree char *device = NULL;
    g_autofree char *kernels = NULL;
    g_autofree char *filter = NULL;
    double seconds = 0.1;
    gint64 square = 0;
    GOptionEntry entries[] = {
        {"device", 0, 0, G_OPTION_ARG_STRING, &device, "Vulkan device (default: lavapipe)", "DEV"},
        {"kernels", 0, 0, G_OPTION_ARG_STRING, &kernels,
         "comma-separated LAMINA_VK_GEMM values (default: tiled,reg,splitk; tiled:tile=N forces "
         "tile N of vk-gemm.c's table)",
         "LIST"},
        {"filter", 0, 0, G_OPTION_ARG_STRING, &filter,
         "only the shapes whose \"net layer pass\" contains TEXT", "TEXT"},
        {"cpu-time", 0, 0, G_OPTION_ARG_NONE, &use_cpu_time,
         "rate per second of process CPU time rather than of wall time", NULL},
        {"time", 0, 0, G_OPTION_ARG_DOUBLE, &seconds, "seconds per measurement (default 0.1)", "S"},
        {"square", 0, 0, G_OPTION_ARG_INT64, &square, "also an N x N x N product", "N"},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("- Vulkan GEMM GFLOP/s vs the CPU");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        fprintf(stderr, "bench-vulkan-gemm: %s\n", error->message);
        return 2;
    }
    if (square < 0 || square > 32768) {
        fprintf(stderr, "bench-vulkan-gemm: --square %" G_GINT64_FORMAT " is not in [1, 32768]\n",
                square);
        return 2;
    }
    const char *dev = device != NULL ? device : g_getenv("LAMINA_VK_DEVICE");
    if (dev == NULL)
        dev = "lavapipe";
    g_auto(GStrv) names = g_strsplit(kernels != NULL ? kernels : "tiled,reg,splitk", ",", -1);
    const guint nk = g_strv_length(names);

    g_autoptr(LmnRegistry) reg = lmn_registry_new();
    lmn_registry_scan(reg, NULL);
    LmnBackend *cpu = lmn_backend_new(reg, "cpu", NULL, NULL, &error);
    if (cpu == NULL) {
        fprintf(stderr, "bench-vulkan-gemm: %s\n", error->message);
        return 1;
    }
    g_autofree LmnBackend **vk = g_new0(LmnBackend *, nk);
    for (guint i = 0; i < nk; i++) {
        g_setenv("LAMINA_VK_GEMM", names[i], TRUE);
        vk[i] = lmn_backend_new(reg, "vulkan", NULL, dev, &error);
        g_unsetenv("LAMINA_VK_GEMM");
        if (vk[i] == NULL) {
            fprintf(stderr, "bench-vulkan-gemm: %s\n", error->message);
            return 1;
        }
        printf("# %-8s %s\n", names[i], lmn_backend_describe(vk[i]));
    }
    printf("# %-8s %s\n", "cpu", lmn_backend_describe(cpu));
    printf("# GFLOP/s, batch %d; (x) = Vulkan / CPU\n", N);
    printf("%-6s %-6s %-7s %-3s %15s %6s", "net", "layer", "pass", "op", "MxNxK", "batch");
    printf(" %8s", "cpu");
    for (guint i = 0; i < nk; i++)
        printf(" %15s", names[i]);
    printf("\n");

    g_autoptr(GTimer) total = g_timer_new();
    g_autofree double *sum = g_new0(double, nk + 1);
    guint n_run = 0;
    for (guint s = 0; s < G_N_ELEMENTS(shapes); s++) {
        const Shape *sh = &shapes[s];
        g_autofree char *label = g_strdup_printf("%s %s %s", sh->net, sh->layer, sh->pass);
        if (filter != NULL && strstr(label, filter) == NULL)
            continue;
        n_run++;
        report(sh, cpu, vk, nk, seconds, sum);
    }
    if (square > 0) {
        g_autofree char *size = g_strdup_printf("%" G_GINT64_FORMAT, square);
        const Shape sq = {"square", size, "fwd", FALSE, FALSE, square, square, square, 0, 0, 0, 0};
        g_autofree double *ignored = g_new0(double, nk + 1);
        report(&sq, cpu, vk, nk, seconds, ignored);
    }
    n_run = MAX(n_run, 1);
    printf("%-6s %-6s %-7s %-3s %15s %6s %8.2f", "mean", "", "", "", "", "", sum[0] / n_run);
    for (guint i = 0; i < nk; i++)
        printf(" %7.2f (%4.2fx)", sum[i + 1] / n_run, sum[i + 1] / sum[0]);
    printf("\n# %.1f s\n", g_timer_elapsed(total, NULL));
    for (guint i = 0; i < nk; i++)
        lmn_backend_unref(vk[i]);
    lmn_backend_unref(cpu);
    return 0;
}
