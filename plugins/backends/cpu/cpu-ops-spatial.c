/* Lamina CPU backend — the ABI 1.3 resampling ops (upsample2d and its adjoint).
 *
 * The source coordinates follow torch.nn.functional.interpolate (lamina/ops.h), computed in
 * float as PyTorch does for float tensors.  The backward pass is a gather: every input pixel
 * sums the output pixels that read it, over a window of output rows and columns around where
 * it maps, so planes split across threads without atomics and the sum order is fixed.  The
 * Vulkan shader (shaders/vulkan/upsample.comp) runs the same loops.
 */
#include <math.h>

#include "cpu-ops.h"

#include "cpu-pool.h"

#define EXEC_BEGIN(c) g_mutex_lock(&(c)->exec_lock)
#define EXEC_END(c) g_mutex_unlock(&(c)->exec_lock)

static inline float *fptr(const LmnTensor *t)
{
    return (float *) ((char *) t->buffer + t->offset);
}

/* The two input indices and weights output index @o reads along one axis. */
typedef struct {
    gint64 i0, i1;
    float l0, l1;
} Tap;

static Tap axis_tap(LmnUpsampleMode mode, gboolean align, float scale, gint64 in, gint64 o)
{
    if (mode == LMN_UPSAMPLE_NEAREST) {
        gint64 i = MIN((gint64) floorf((float) o * scale), in - 1);
        return (Tap){i, i, 1.0f, 0.0f};
    }
    float src = align ? scale * (float) o : scale * ((float) o + 0.5f) - 0.5f;
    src = MAX(src, 0.0f);
    gint64 i0 = MIN((gint64) src, in - 1);
    float l1 = src - (float) i0;
    return (Tap){i0, i0 + (i0 < in - 1 ? 1 : 0), 1.0f - l1, l1};
}

/* The weight with which output index @o reads input index @i along one axis. */
static float tap_weight(const Tap *t, gint64 i)
{
    return (t->i0 == i ? t->l0 : 0.0f) + (t->i1 == i ? t->l1 : 0.0f);
}

/* Output indices [lo, hi] that may read input index @i: a window around its image under the
 * inverse map, one pixel wider on each side than rounding can move it. */
static void axis_window(LmnUpsampleMode mode, gboolean align, float scale, gint64 in, gint64 out,
                        gint64 i, gint64 *lo, gint64 *hi)
{
    if (scale <= 0.0f) {
        *lo = 0;
        *hi = out - 1;
        return;
    }
    float c = mode == LMN_UPSAMPLE_BILINEAR && !align ? 0.5f * scale - 0.5f : 0.0f;
    float a = floorf(((float) i - 1.0f - c) / scale) - 1.0f;
    float b = ceilf(((float) i + 1.0f - c) / scale) + 1.0f;
    *lo = a <= 0.0f ? 0 : (gint64) MIN(a, (float) (out - 1));
    *hi = i == in - 1 || b >= (float) (out - 1) ? out - 1 : (gint64) MAX(b, 0.0f);
}

typedef struct {
    const float *src;
    float *dst;
    LmnUpsampleMode mode;
    LmnUpsampleGeom g;
} UpJob;

/* Every output index's taps along one axis, computed once per call rather than per pixel. */
static Tap *axis_taps(LmnUpsampleMode mode, gboolean align, float scale, gint64 in, gint64 out)
{
    Tap *t = g_new(Tap, MAX(out, 1));
    for (gint64 o = 0; o < out; o++)
        t[o] = axis_tap(mode, align, scale, in, o);
    return t;
}

static void upsample_planes(gsize begin, gsize end, gpointer data)
{
    const UpJob *j = data;
    const LmnUpsampleGeom *g = &j->g;
    g_autofree Tap *tys = axis_taps(j->mode, g->align_corners, g->scale_h, g->in_h, g->out_h);
    g_autofree Tap *txs = axis_taps(j->mode, g->align_corners, g->scale_w, g->in_w, g->out_w);
    for (gsize u = begin; u < end; u++) {
        const float *x = j->src + u * (gsize) (g->in_h * g->in_w);
        float *y = j->dst + u * (gsize) (g->out_h * g->out_w);
        for (gint64 oy = 0; oy < g->out_h; oy++) {
            const Tap ty = tys[oy];
            const float *r0 = x + ty.i0 * g->in_w, *r1 = x + ty.i1 * g->in_w;
            float *yr = y + oy * g->out_w;
            if (j->mode == LMN_UPSAMPLE_NEAREST) {
                /* a copy, so that an infinity stays one (0 * inf would be NaN) */
                for (gint64 ox = 0; ox < g->out_w; ox++)
                    yr[ox] = r0[txs[ox].i0];
                continue;
            }
            for (gint64 ox = 0; ox < g->out_w; ox++) {
                const Tap tx = txs[ox];
                yr[ox] = ty.l0 * (tx.l0 * r0[tx.i0] + tx.l1 * r0[tx.i1]) +
                         ty.l1 * (tx.l0 * r1[tx.i0] + tx.l1 * r1[tx.i1]);
            }
        }
    }
}

/* The backward's per-call tables: every output index's taps and every input index's window. */
typedef struct {
    Tap *ty, *tx;
    gint64 *ylo, *yhi, *xlo, *xhi;
} GatherTables;

static void gather_tables_init(const UpJob *j, GatherTables *t)
{
    const LmnUpsampleGeom *g = &j->g;
    t->ty = axis_taps(j->mode, g->align_corners, g->scale_h, g->in_h, g->out_h);
    t->tx = axis_taps(j->mode, g->align_corners, g->scale_w, g->in_w, g->out_w);
    t->ylo = g_new(gint64, MAX(g->in_h, 1));
    t->yhi = g_new(gint64, MAX(g->in_h, 1));
    t->xlo = g_new(gint64, MAX(g->in_w, 1));
    t->xhi = g_new(gint64, MAX(g->in_w, 1));
    for (gint64 i = 0; i < g->in_h; i++)
        axis_window(j->mode, g->align_corners, g->scale_h, g->in_h, g->out_h, i, &t->ylo[i],
                    &t->yhi[i]);
    for (gint64 i = 0; i < g->in_w; i++)
        axis_window(j->mode, g->align_corners, g->scale_w, g->in_w, g->out_w, i, &t->xlo[i],
                    &t->xhi[i]);
}

static void gather_tables_clear(GatherTables *t)
{
    g_free(t->ty);
    g_free(t->tx);
    g_free(t->ylo);
    g_free(t->yhi);
    g_free(t->xlo);
    g_free(t->xhi);
}

/* dx[iy, ix] = sum over the windows of wy(oy) * (sum over ox of wx(ox) * dy[oy, ox]). */
static float gather_pixel(const UpJob *j, const GatherTables *t, const float *dy, gint64 iy,
                          gint64 ix)
{
    const gint64 out_w = j->g.out_w;
    float sum = 0.0f;
    for (gint64 oy = t->ylo[iy]; oy <= t->yhi[iy]; oy++) {
        float wy = tap_weight(&t->ty[oy], iy);
        if (wy == 0.0f)
            continue;
        float row = 0.0f;
        for (gint64 ox = t->xlo[ix]; ox <= t->xhi[ix]; ox++)
            row += tap_weight(&t->tx[ox], ix) * dy[oy * out_w + ox];
        sum += wy * row;
    }
    return sum;
}

static void upsample_backward_planes(gsize begin, gsize end, gpointer data)
{
    const UpJob *j = data;
    const LmnUpsampleGeom *g = &j->g;
    GatherTables t;
    gather_tables_init(j, &t);
    for (gsize u = begin; u < end; u++) {
        const float *dy = j->src + u * (gsize) (g->out_h * g->out_w);
        float *dx = j->dst + u * (gsize) (g->in_h * g->in_w);
        for (gint64 iy = 0; iy < g->in_h; iy++)
            for (gint64 ix = 0; ix < g->in_w; ix++)
                dx[iy * g->in_w + ix] = gather_pixel(j, &t, dy, iy, ix);
    }
    gather_tables_clear(&t);
}

static void upsample_run(LmnCpuContext *c, const UpJob *j, LmnCpuPoolFunc func, gsize per_plane)
{
    gsize planes = (gsize) j->g.planes;
    EXEC_BEGIN(c);
    if (c->n_threads <= 1 || planes * per_plane <= LMN_CPU_PARALLEL_MIN)
        func(0, planes, (gpointer) j);
    else
        lmn_cpu_pool_run(c->pool, planes, MAX(LMN_CPU_GRAIN / MAX(per_plane, 1), 1), func,
                         (gpointer) j);
    EXEC_END(c);
}

void lmn_cpu_upsample2d(gpointer ctx, LmnUpsampleMode mode, const LmnTensor *x, LmnTensor *y,
                        const LmnUpsampleGeom *g)
{
    UpJob j = {.src = fptr(x), .dst = fptr(y), .mode = mode, .g = *g};
    upsample_run(ctx, &j, upsample_planes, (gsize) (g->out_h * g->out_w));
}

void lmn_cpu_upsample2d_backward(gpointer ctx, LmnUpsampleMode mode, const LmnTensor *dy,
                                 LmnTensor *dx, const LmnUpsampleGeom *g)
{
    UpJob j = {.src = fptr(dy), .dst = fptr(dx), .mode = mode, .g = *g};
    upsample_run(ctx, &j, upsample_backward_planes, (gsize) (g->out_h * g->out_w));
}
