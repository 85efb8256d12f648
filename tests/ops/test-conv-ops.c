/* Tests of the ABI 1.4 convolution ops (lmn_op_conv2d_*) on the CPU backend.
 *
 * Each op is compared with a direct double-precision convolution written here with naive loops,
 * on strided, padded, dilated and grouped cases, and run twice to check that the same inputs
 * give bit-identical outputs.  meson runs it three times: the CPU backend's own ops on its
 * default threads, on 3 threads (chunks of unequal size), and as its direct loops
 * (LAMINA_CPU_CONV=direct).
 */
#include <lamina/lamina.h>

#include "conv-case.h"

#include <math.h>
#include <string.h>

static LmnRegistry *registry;
static LmnBackend *backend;
static GRand *rng;

static const ConvCase cases[] = {
    {"plain", 2, 3, 7, 6, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1},
    {"strided-padded", 3, 2, 9, 8, 5, 3, 2, 2, 3, 1, 2, 1, 1, 1},
    {"dilated", 2, 3, 10, 9, 2, 3, 3, 1, 2, 2, 1, 2, 3, 1},
    {"grouped", 2, 6, 8, 7, 4, 3, 3, 2, 1, 1, 1, 1, 1, 2},
    {"depthwise", 2, 4, 6, 6, 8, 3, 3, 1, 1, 1, 1, 2, 1, 4},
    {"lenet-c1", 4, 1, 28, 28, 6, 5, 5, 1, 1, 2, 2, 1, 1, 1},
    /* Large enough for the CPU backend to split the images across its threads. */
    {"lenet-c2-batch", 13, 6, 14, 14, 16, 5, 5, 1, 1, 0, 0, 1, 1, 1},
    {"pointwise", 9, 8, 12, 10, 16, 1, 1, 1, 1, 0, 0, 1, 1, 1},
    {"pointwise-grouped", 7, 8, 12, 10, 12, 1, 1, 1, 1, 0, 0, 1, 1, 4},
};

static LmnTensor *tensor_new(gint64 n, const float *data)
{
    g_autoptr(GError) error = NULL;
    LmnShape shape = lmn_shape_make(1, MAX(n, 1));
    LmnTensor *t = lmn_tensor_new(backend, LMN_DTYPE_F32, &shape, &error);
    g_assert_no_error(error);
    if (data != NULL) {
        g_assert_true(lmn_tensor_write(t, data, (gsize) n * sizeof(float), &error));
        g_assert_no_error(error);
    }
    return t;
}

static float *read_all(LmnTensor *t, gint64 n)
{
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_backend_synchronize(backend, &error));
    float *v = g_new(float, n);
    g_assert_true(lmn_tensor_read(t, v, (gsize) n * sizeof(float), &error));
    g_assert_no_error(error);
    return v;
}

static float *random_floats(gint64 n)
{
    float *v = g_new(float, n);
    for (gint64 i = 0; i < n; i++)
        v[i] = (float) g_rand_double_range(rng, -1.0, 1.0);
    return v;
}

/* Calls @fn(x index, w index, y index) for every multiply of the direct convolution. */
typedef void (*TapFn)(gint64 xi, gint64 wi, gint64 yi, gpointer data);

static void for_each_tap(const LmnConv2dDesc *d, TapFn fn, gpointer data)
{
    gint64 cg = d->c / d->groups, kg = d->k / d->groups;
    for (gint64 n = 0; n < d->n; n++)
        for (gint64 k = 0; k < d->k; k++)
            for (gint64 oh = 0; oh < d->out_h; oh++)
                for (gint64 ow = 0; ow < d->out_w; ow++)
                    for (gint64 c = 0; c < cg; c++)
                        for (gint64 i = 0; i < d->kernel_h; i++)
                            for (gint64 j = 0; j < d->kernel_w; j++) {
                                gint64 ih = oh * d->stride_h - d->pad_h + i * d->dilation_h;
                                gint64 iw = ow * d->stride_w - d->pad_w + j * d->dilation_w;
                                if (ih < 0 || ih >= d->h || iw < 0 || iw >= d->w)
                                    continue;
                                gint64 ci = (k / kg) * cg + c;
                                fn(((n * d->c + ci) * d->h + ih) * d->w + iw,
                                   ((k * cg + c) * d->kernel_h + i) * d->kernel_w + j,
                                   ((n * d->k + k) * d->out_h + oh) * d->out_w + ow, data);
                            }
}

typedef struct {
    const float *x, *w, *y; /* inputs of the op (y = dy for the backward ones) */
    double *out;
    int which; /* 0 forward, 1 backward data, 2 backward weights */
} RefData;

static void ref_tap(gint64 xi, gint64 wi, gint64 yi, gpointer data)
{
    RefData *r = data;
    if (r->which == 0)
        r->out[yi] += (double) r->x[xi] * r->w[wi];
    else if (r->which == 1)
        r->out[xi] += (double) r->y[yi] * r->w[wi];
    else
        r->out[wi] += (double) r->y[yi] * r->x[xi];
}

static void assert_close(const char *what, const float *got, const double *want, gint64 n)
{
    for (gint64 i = 0; i < n; i++) {
        double tol = 1e-4 * (1.0 + fabs(want[i]));
        if (fabs(got[i] - want[i]) > tol)
            g_error("%s: element %" G_GINT64_FORMAT ": %.8g, want %.8g", what, i, got[i], want[i]);
    }
}

/* Runs one op of @d twice on fresh outputs; checks the reference and bit-identity. */
static void check_case(gconstpointer p)
{
    const ConvCase *cc = p;
    LmnConv2dDesc d = conv_case_desc(cc);
    gint64 nx = d.n * d.c * d.h * d.w, nw = d.k * (d.c / d.groups) * d.kernel_h * d.kernel_w;
    gint64 ny = d.n * d.k * d.out_h * d.out_w;
    g_autofree float *x = random_floats(nx), *w = random_floats(nw), *dy = random_floats(ny);
    g_autofree float *w0 = random_floats(nw);
    LmnTensor *tx = tensor_new(nx, x), *tw = tensor_new(nw, w), *tdy = tensor_new(ny, dy);
    gint64 ncols = lmn_op_conv2d_cols_numel(backend, &d);
    LmnTensor *cols = ncols > 0 ? tensor_new(ncols, NULL) : NULL;
    const gint64 sizes[3] = {ny, nx, nw};
    float *first[3] = {NULL, NULL, NULL};
    for (int rep = 0; rep < 2; rep++)
        for (int which = 0; which < 3; which++) {
            LmnTensor *out = tensor_new(sizes[which], which == 2 ? w0 : NULL);
            if (which == 0)
                lmn_op_conv2d_forward(&d, tx, tw, out, cols);
            else if (which == 1)
                lmn_op_conv2d_backward_data(&d, tdy, tw, out, cols);
            else /* beta 1: accumulates onto w0 */
                lmn_op_conv2d_backward_weights(&d, tx, tdy, out, 1.0f, cols);
            float *got = read_all(out, sizes[which]);
            lmn_tensor_unref(out);
            if (rep == 1) {
                g_assert_cmpmem(got, sizes[which] * sizeof(float), first[which],
                                sizes[which] * sizeof(float));
                g_free(got);
                continue;
            }
            g_autofree double *want = g_new0(double, sizes[which]);
            if (which == 2)
                for (gint64 i = 0; i < nw; i++)
                    want[i] = w0[i];
            RefData r = {x, w, dy, want, which};
            for_each_tap(&d, ref_tap, &r);
            static const char *names[3] = {"forward", "backward_data", "backward_weights"};
            g_autofree char *what = g_strdup_printf("%s %s", cc->name, names[which]);
            assert_close(what, got, want, sizes[which]);
            first[which] = got;
        }
    for (int i = 0; i < 3; i++)
        g_free(first[i]);
    lmn_tensor_unref(tx);
    lmn_tensor_unref(tw);
    lmn_tensor_unref(tdy);
    if (cols != NULL)
        lmn_tensor_unref(cols);
}

/* beta 0 overwrites dweight whatever it held. */
static void test_backward_weights_overwrites(void)
{
    LmnConv2dDesc d = conv_case_desc(&cases[1]);
    gint64 nx = d.n * d.c * d.h * d.w, nw = d.k * d.c * d.kernel_h * d.kernel_w;
    gint64 ny = d.n * d.k * d.out_h * d.out_w;
    g_autofree float *x = random_floats(nx), *dy = random_floats(ny);
    g_autofree float *junk = g_new(float, nw);
    for (gint64 i = 0; i < nw; i++)
        junk[i] = 1e30f;
    LmnTensor *tx = tensor_new(nx, x), *tdy = tensor_new(ny, dy), *dw = tensor_new(nw, junk);
    gint64 ncols = lmn_op_conv2d_cols_numel(backend, &d);
    LmnTensor *cols = ncols > 0 ? tensor_new(ncols, NULL) : NULL;
    lmn_op_conv2d_backward_weights(&d, tx, tdy, dw, 0.0f, cols);
    g_autofree float *got = read_all(dw, nw);
    g_autofree double *want = g_new0(double, nw);
    RefData r = {x, NULL, dy, want, 2};
    for_each_tap(&d, ref_tap, &r);
    assert_close("backward_weights beta 0", got, want, nw);
    lmn_tensor_unref(tx);
    lmn_tensor_unref(tdy);
    lmn_tensor_unref(dw);
    if (cols != NULL)
        lmn_tensor_unref(cols);
}

/* LAMINA_CPU_CONV takes "direct" or nothing: anything else is refused when the backend opens,
 * naming the variable. */
static void test_bad_conv_env(void)
{
    g_autofree char *saved = g_strdup(g_getenv("LAMINA_CPU_CONV"));
    g_setenv("LAMINA_CPU_CONV", "fast", TRUE);
    g_autoptr(GError) error = NULL;
    LmnBackend *b = lmn_backend_new(registry, "cpu", NULL, NULL, &error);
    if (saved != NULL)
        g_setenv("LAMINA_CPU_CONV", saved, TRUE);
    else
        g_unsetenv("LAMINA_CPU_CONV");
    g_assert_null(b);
    g_assert_nonnull(error);
    g_assert_nonnull(strstr(error->message, "LAMINA_CPU_CONV = 'fast'"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    registry = lmn_registry_new();
    const char *build_root = g_getenv("LMN_BUILD_ROOT");
    if (build_root != NULL) {
        g_autofree char *dir = g_build_filename(build_root, "plugins", "backends", "cpu", NULL);
        lmn_registry_set_use_environment(registry, FALSE);
        lmn_registry_add_dir(registry, dir);
    }
    g_autoptr(GError) error = NULL;
    lmn_registry_scan(registry, &error);
    g_assert_no_error(error);
    backend = lmn_backend_new(registry, "cpu", NULL, NULL, &error);
    g_assert_no_error(error);
    rng = g_rand_new_with_seed(20261202);
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = g_strdup_printf("/ops/conv2d/cpu/%s", cases[i].name);
        g_test_add_data_func(path, &cases[i], check_case);
    }
    g_test_add_func("/ops/conv2d/cpu/backward-weights-overwrites",
                    test_backward_weights_overwrites);
    g_test_add_func("/ops/conv2d/cpu/bad-env", test_bad_conv_env);
    int rc = g_test_run();
    lmn_backend_unref(backend);
    lmn_registry_free(registry);
    g_rand_free(rng);
    return rc;
}
