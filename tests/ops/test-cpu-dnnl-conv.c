/* White-box tests of the CPU backend's oneDNN convolution path (cpu-conv-dnnl.c), built only
 * where the build has oneDNN.
 *
 * test-conv-ops checks the backend's convolution ops from outside, but cannot tell whether a
 * shape ran on oneDNN's kernels or fell back on the blocked path.  Here lmn_cpu_dnnl_conv() is
 * called directly: on LeNet-5's and the residual CNN's shapes it must take the op (return TRUE),
 * and every op it takes is compared with a double-precision direct convolution, at one chunk and
 * at the pool's chunks of unequal size, run twice for bit-identical results, with the plans of
 * the first call reused by the second.
 */
#include "../../plugins/backends/cpu/cpu-ops.h"
#include "conv-case.h"

#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <string.h>

/* A case, and whether oneDNN must take it: a shape it has a JIT kernel for on x86-64 (with
 * AVX2 at least; the weight gradient of a one-channel input only with AVX-512). */
typedef struct {
    ConvCase shape;
    gboolean must_run;
} Case;

/* Whether oneDNN runs its AVX-512 kernels on this machine. */
static gboolean has_avx512(void)
{
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return (isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;
}

static const Case cases[] = {
    {{"lenet-conv1", 7, 1, 28, 28, 6, 5, 5, 1, 1, 2, 2, 1, 1, 1}, TRUE},
    {{"lenet-conv2", 7, 6, 14, 14, 16, 5, 5, 1, 1, 0, 0, 1, 1, 1}, TRUE},
    {{"resnet-stem", 5, 1, 28, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1}, TRUE},
    {{"resnet-block", 5, 16, 14, 14, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1}, TRUE},
    /* Others oneDNN may or may not take; what it takes must be right. */
    {{"strided-padded", 4, 3, 9, 8, 5, 3, 2, 2, 3, 1, 2, 1, 1, 1}, FALSE},
    {{"floor-output", 3, 4, 10, 11, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1}, FALSE},
    {{"dilated", 3, 8, 10, 9, 8, 3, 3, 1, 2, 2, 1, 2, 3, 1}, FALSE},
    {{"grouped", 3, 32, 8, 7, 32, 3, 3, 1, 1, 1, 1, 1, 1, 2}, FALSE},
    {{"pointwise", 3, 16, 12, 10, 32, 1, 1, 1, 1, 0, 0, 1, 1, 1}, FALSE},
};

/* The three ops as direct double-precision loops: y, dx and dw accumulated over every term. */
static void reference(const LmnConv2dDesc *d, const float *x, const float *w, const float *dy,
                      double *y, double *dx, double *dw)
{
    const gint64 cg = d->c / d->groups, kg = d->k / d->groups;
    for (gint64 n = 0; n < d->n; n++)
        for (gint64 k = 0; k < d->k; k++)
            for (gint64 oy = 0; oy < d->out_h; oy++)
                for (gint64 ox = 0; ox < d->out_w; ox++) {
                    const gint64 yi = ((n * d->k + k) * d->out_h + oy) * d->out_w + ox;
                    for (gint64 ci = 0; ci < cg; ci++)
                        for (gint64 ky = 0; ky < d->kernel_h; ky++)
                            for (gint64 kx = 0; kx < d->kernel_w; kx++) {
                                const gint64 iy = oy * d->stride_h - d->pad_h + ky * d->dilation_h;
                                const gint64 ix = ox * d->stride_w - d->pad_w + kx * d->dilation_w;
                                if (iy < 0 || iy >= d->h || ix < 0 || ix >= d->w)
                                    continue;
                                const gint64 ch = k / kg * cg + ci;
                                const gint64 xi = ((n * d->c + ch) * d->h + iy) * d->w + ix;
                                const gint64 wi =
                                    ((k * cg + ci) * d->kernel_h + ky) * d->kernel_w + kx;
                                y[yi] += (double) x[xi] * w[wi];
                                dx[xi] += (double) dy[yi] * w[wi];
                                dw[wi] += (double) dy[yi] * x[xi];
                            }
                }
}

static void fill(float *v, gsize n, GRand *rng)
{
    for (gsize i = 0; i < n; i++)
        v[i] = (float) g_rand_double_range(rng, -1.0, 1.0);
}

static void assert_close(const char *what, const float *got, const double *want, gsize n)
{
    double scale = 0.0;
    for (gsize i = 0; i < n; i++)
        scale = MAX(scale, fabs(want[i]));
    for (gsize i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= 1e-5 * (1.0 + scale))) {
            g_test_message("%s[%zu] = %.9g, expected %.9g", what, i, got[i], want[i]);
            g_assert_not_reached();
        }
}

static LmnCpuPool *pool;
static LmnCpuDnnl *dnnl;

static void check_case(gconstpointer data)
{
    const Case *cc = data;
    const LmnConv2dDesc d = conv_case_desc(&cc->shape);
    const gsize nx = (gsize) (d.n * d.c * d.h * d.w), ny = (gsize) (d.n * d.k * d.out_h * d.out_w);
    const gsize nw = (gsize) (d.k * (d.c / d.groups) * d.kernel_h * d.kernel_w);
    g_autoptr(GRand) rng = g_rand_new_with_seed(7);
    g_autofree float *x = g_new(float, nx), *w = g_new(float, nw), *dy = g_new(float, ny);
    fill(x, nx, rng);
    fill(w, nw, rng);
    fill(dy, ny, rng);
    g_autofree double *ry = g_new0(double, ny), *rdx = g_new0(double, nx),
                      *rdw = g_new0(double, nw);
    reference(&d, x, w, dy, ry, rdx, rdw);
    g_autofree double *rdw2 = g_new(double, nw);
    for (gsize i = 0; i < nw; i++)
        rdw2[i] = 2.0 * rdw[i];

    const guint chunk_counts[] = {1, lmn_cpu_pool_indexed_chunks(pool, (gsize) d.n)};
    g_assert_cmpuint(chunk_counts[1], >, 1);
    for (guint ci = 0; ci < G_N_ELEMENTS(chunk_counts); ci++) {
        const guint chunks = chunk_counts[ci];
        g_autofree float *y = g_new(float, ny), *y2 = g_new(float, ny);
        g_autofree float *dx = g_new(float, nx), *dx2 = g_new(float, nx);
        g_autofree float *dw = g_new(float, nw), *dw2 = g_new(float, nw);
        for (gsize i = 0; i < ny; i++)
            y[i] = y2[i] = NAN;
        for (gsize i = 0; i < nx; i++)
            dx[i] = dx2[i] = NAN;
        for (gsize i = 0; i < nw; i++)
            dw[i] = dw2[i] = NAN;

        const gboolean fwd =
            lmn_cpu_dnnl_conv(dnnl, pool, chunks, LMN_CPU_DNNL_CONV_FORWARD, &d, x, w, y, 0.0f);
        const gboolean bwd_data = lmn_cpu_dnnl_conv(
            dnnl, pool, chunks, LMN_CPU_DNNL_CONV_BACKWARD_DATA, &d, dy, w, dx, 0.0f);
        /* beta 0 overwrites the NaNs. */
        const gboolean bwd_w = lmn_cpu_dnnl_conv(
            dnnl, pool, chunks, LMN_CPU_DNNL_CONV_BACKWARD_WEIGHTS, &d, x, dy, dw, 0.0f);
        g_test_message("%s, %u chunk(s): forward %d, backward data %d, backward weights %d",
                       cc->shape.name, chunks, fwd, bwd_data, bwd_w);
        if (cc->must_run) {
            g_assert_true(fwd);
            if (d.c > 1 || has_avx512())
                g_assert_true(bwd_w);
            if (d.c > 1) /* a first layer's input gradient is never asked for */
                g_assert_true(bwd_data);
        }
        if (fwd)
            assert_close("y", y, ry, ny);
        if (bwd_data)
            assert_close("dx", dx, rdx, nx);
        if (bwd_w)
            assert_close("dw", dw, rdw, nw);

        /* Again, with the plans kept: the same bits, and no plan made. */
        const guint plans = lmn_cpu_dnnl_n_plans(dnnl);
        g_assert_true(fwd == lmn_cpu_dnnl_conv(dnnl, pool, chunks, LMN_CPU_DNNL_CONV_FORWARD, &d, x,
                                               w, y2, 0.0f));
        g_assert_true(bwd_data == lmn_cpu_dnnl_conv(dnnl, pool, chunks,
                                                    LMN_CPU_DNNL_CONV_BACKWARD_DATA, &d, dy, w, dx2,
                                                    0.0f));
        g_assert_true(bwd_w == lmn_cpu_dnnl_conv(dnnl, pool, chunks,
                                                 LMN_CPU_DNNL_CONV_BACKWARD_WEIGHTS, &d, x, dy, dw2,
                                                 0.0f));
        g_assert_cmpuint(lmn_cpu_dnnl_n_plans(dnnl), ==, plans);
        if (fwd)
            g_assert_cmpmem(y, ny * sizeof(float), y2, ny * sizeof(float));
        if (bwd_data)
            g_assert_cmpmem(dx, nx * sizeof(float), dx2, nx * sizeof(float));
        if (bwd_w) {
            g_assert_cmpmem(dw, nw * sizeof(float), dw2, nw * sizeof(float));
            /* beta 1 adds to what is there. */
            g_assert_true(lmn_cpu_dnnl_conv(dnnl, pool, chunks, LMN_CPU_DNNL_CONV_BACKWARD_WEIGHTS,
                                            &d, x, dy, dw2, 1.0f));
            assert_close("dw (beta 1)", dw2, rdw2, nw);
        }
    }
}

/* Past 256 plans the cache starts over: 300 batch sizes of one small convolution, each a plan of
 * its own, never hold more than 256, and each result is still right. */
static void test_plan_cache_bound(void)
{
    for (gint64 n = 1; n <= 300; n++) {
        const ConvCase cc = {"cache", n, 16, 6, 6, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1};
        const LmnConv2dDesc d = conv_case_desc(&cc);
        const gsize nx = (gsize) (n * 16 * 36), nw = 16 * 16 * 9;
        g_autofree float *x = g_new(float, nx), *w = g_new(float, nw), *y = g_new(float, nx);
        g_autoptr(GRand) rng = g_rand_new_with_seed((guint32) n);
        fill(x, nx, rng);
        fill(w, nw, rng);
        if (!lmn_cpu_dnnl_conv(dnnl, pool, 1, LMN_CPU_DNNL_CONV_FORWARD, &d, x, w, y, 0.0f))
            g_error("batch %" G_GINT64_FORMAT ": oneDNN did not take a 16-channel 3x3 convolution", n);
        g_assert_cmpuint(lmn_cpu_dnnl_n_plans(dnnl), <=, 256);
        if (n % 50 == 0) {
            g_autofree double *ry = g_new0(double, nx), *rdx = g_new0(double, nx);
            g_autofree double *rdw = g_new0(double, nw);
            g_autofree float *dy = g_new0(float, nx);
            reference(&d, x, w, dy, ry, rdx, rdw);
            assert_close("y", y, ry, nx);
        }
    }
}

/* lmn_cpu_dnnl_prepare() makes every plan the three ops then use, at one chunk and at the
 * pool's: on a fresh engine, no op call makes one after it, each op takes the shape exactly
 * when prepare said it would, and preparing again makes nothing. */
static void test_prepare(void)
{
    for (gsize ci = 0; ci < G_N_ELEMENTS(cases); ci++) {
        const LmnConv2dDesc d = conv_case_desc(&cases[ci].shape);
        const gsize nx = (gsize) (d.n * d.c * d.h * d.w),
                    ny = (gsize) (d.n * d.k * d.out_h * d.out_w);
        const gsize nw = (gsize) (d.k * (d.c / d.groups) * d.kernel_h * d.kernel_w);
        g_autofree float *x = g_new0(float, nx), *w = g_new0(float, nw), *dy = g_new0(float, ny);
        g_autofree float *y = g_new(float, ny), *dx = g_new(float, nx), *dw = g_new(float, nw);
        const guint chunk_counts[] = {1, lmn_cpu_pool_indexed_chunks(pool, (gsize) d.n)};
        for (guint k = 0; k < G_N_ELEMENTS(chunk_counts); k++) {
            LmnCpuDnnl *fresh = lmn_cpu_dnnl_new(3);
            g_assert_nonnull(fresh);
            gboolean usable[3];
            g_assert_true(lmn_cpu_dnnl_prepare(fresh, chunk_counts[k], &d, usable));
            guint ahead, on_call;
            lmn_cpu_dnnl_plan_counts(fresh, &ahead, &on_call);
            g_assert_cmpuint(ahead, >=, 3);
            g_assert_cmpuint(on_call, ==, 0);
            if (cases[ci].must_run)
                g_assert_true(usable[LMN_CPU_DNNL_CONV_FORWARD]);
            g_assert_true(usable[LMN_CPU_DNNL_CONV_FORWARD] ==
                          lmn_cpu_dnnl_conv(fresh, pool, chunk_counts[k], LMN_CPU_DNNL_CONV_FORWARD,
                                            &d, x, w, y, 0.0f));
            g_assert_true(usable[LMN_CPU_DNNL_CONV_BACKWARD_DATA] ==
                          lmn_cpu_dnnl_conv(fresh, pool, chunk_counts[k],
                                            LMN_CPU_DNNL_CONV_BACKWARD_DATA, &d, dy, w, dx, 0.0f));
            g_assert_true(usable[LMN_CPU_DNNL_CONV_BACKWARD_WEIGHTS] ==
                          lmn_cpu_dnnl_conv(fresh, pool, chunk_counts[k],
                                            LMN_CPU_DNNL_CONV_BACKWARD_WEIGHTS, &d, x, dy, dw,
                                            0.0f));
            g_assert_true(lmn_cpu_dnnl_prepare(fresh, chunk_counts[k], &d, usable));
            guint ahead2, on_call2;
            lmn_cpu_dnnl_plan_counts(fresh, &ahead2, &on_call2);
            g_assert_cmpuint(ahead2, ==, ahead);
            g_assert_cmpuint(on_call2, ==, 0);
            g_assert_cmpuint(lmn_cpu_dnnl_n_plans(fresh), ==, ahead);
            lmn_cpu_dnnl_free(fresh);
        }
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    /* Three threads: seven images are cut into chunks of 3, 3 and 1, five into 2, 2 and 1. */
    g_autoptr(GError) error = NULL;
    pool = lmn_cpu_pool_new(3, &error);
    g_assert_no_error(error);
    dnnl = lmn_cpu_dnnl_new(3);
    g_assert_nonnull(dnnl);
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = g_strdup_printf("/cpu/dnnl-conv/%s", cases[i].shape.name);
        g_test_add_data_func(path, &cases[i], check_case);
    }
    g_test_add_func("/cpu/dnnl-conv/plan-cache-bound", test_plan_cache_bound);
    g_test_add_func("/cpu/dnnl-conv/prepare", test_prepare);
    const int rc = g_test_run();
    lmn_cpu_dnnl_free(dnnl);
    lmn_cpu_pool_free(pool);
    return rc;
}
