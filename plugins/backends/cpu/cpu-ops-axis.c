/* Lamina CPU backend — the ABI 1.3 kernels: reductions over one axis, broadcasting binary ops
 * and their gradients, row normalisation and the clamp gradient.
 *
 * Every sum runs in double in an order fixed by the shapes alone (each output element is summed
 * by one thread, front to back), so results do not depend on the thread count.  Broadcasting
 * loops run over a coalesced plan (lmn_broadcast_plan) whose innermost dim is contiguous in the
 * output.  Nothing here allocates: per-thread accumulators live on the stack in tiles.
 */
#include "cpu-ops.h"

#include <math.h>

#define EXEC_BEGIN(c) g_mutex_lock(&(c)->exec_lock)
#define EXEC_END(c) g_mutex_unlock(&(c)->exec_lock)
/* Accumulators per tile of an inner dimension (on the stack of each loop body). */
#define TILE 64

static inline float *fptr(const LmnTensor *t)
{
    return t == NULL ? NULL : (float *) ((char *) t->buffer + t->offset);
}

static inline gint32 *iptr(const LmnTensor *t)
{
    return t == NULL ? NULL : (gint32 *) ((char *) t->buffer + t->offset);
}

static inline gsize numel(const LmnTensor *t)
{
    gsize n = 1;
    for (guint i = 0; i < t->shape.ndim; i++)
        n *= (gsize) t->shape.dims[i];
    return n;
}

/* As cpu-ops.c's run(): parallel only when the work pays for waking the workers. */
static void run(LmnCpuContext *c, gsize n_units, gsize unit_size, LmnCpuPoolFunc func,
                gpointer data)
{
    if (n_units == 0)
        return;
    unit_size = MAX(unit_size, 1);
    if (c->n_threads <= 1 || n_units * unit_size <= LMN_CPU_PARALLEL_MIN) {
        func(0, n_units, data);
        return;
    }
    lmn_cpu_pool_run(c->pool, n_units, MAX(LMN_CPU_GRAIN / unit_size, 1), func, data);
}

/* ---- reductions over one axis ---- */

typedef struct {
    LmnAxisReduceOp op;
    const float *x;
    float *out;
    gint32 *idx;
    gsize outer, axis, inner, tiles;
} AxisJob;

/* Whether @v replaces @best as the maximum: larger, or the first NaN (as torch.max). */
static inline gboolean max_takes(float v, float best)
{
    return v > best || (isnan(v) && !isnan(best));
}

/* Units are (o, tile of TILE inner positions); each sums its axis front to back. */
static void axis_units(gsize begin, gsize end, gpointer data)
{
    const AxisJob *j = data;
    for (gsize u = begin; u < end; u++) {
        const gsize o = u / j->tiles, i0 = (u % j->tiles) * TILE;
        const gsize n = MIN(TILE, j->inner - i0);
        const float *x = j->x + o * j->axis * j->inner + i0;
        float *out = j->out + o * j->inner + i0;
        if (j->op == LMN_AXIS_MAX) {
            float best[TILE];
            gint32 arg[TILE] = {0};
            for (gsize q = 0; q < n; q++)
                best[q] = x[q];
            for (gsize a = 1; a < j->axis; a++)
                for (gsize q = 0; q < n; q++)
                    if (max_takes(x[a * j->inner + q], best[q])) {
                        best[q] = x[a * j->inner + q];
                        arg[q] = (gint32) a;
                    }
            for (gsize q = 0; q < n; q++) {
                out[q] = best[q];
                j->idx[o * j->inner + i0 + q] = arg[q];
            }
            continue;
        }
        double acc[TILE] = {0};
        for (gsize a = 0; a < j->axis; a++)
            for (gsize q = 0; q < n; q++)
                acc[q] += (double) x[a * j->inner + q];
        const double scale = j->op == LMN_AXIS_MEAN ? 1.0 / (double) j->axis : 1.0;
        for (gsize q = 0; q < n; q++)
            out[q] = (float) (acc[q] * scale);
    }
}

void lmn_cpu_reduce_axis(gpointer ctx, LmnAxisReduceOp op, const LmnTensor *x, LmnTensor *out,
                         LmnTensor *indices, gint64 outer, gint64 axis, gint64 inner)
{
    LmnCpuContext *c = ctx;
    AxisJob j = {.op = op,
                 .x = fptr(x),
                 .out = fptr(out),
                 .idx = iptr(indices),
                 .outer = (gsize) outer,
                 .axis = (gsize) axis,
                 .inner = (gsize) inner,
                 .tiles = ((gsize) inner + TILE - 1) / TILE};
    EXEC_BEGIN(c);
    run(c, j.outer * j.tiles, j.axis * MIN(j.inner, TILE), axis_units, &j);
    EXEC_END(c);
}

/* Units are rows (o, a) of dx, each of inner elements. */
static void axis_backward_rows(gsize begin, gsize end, gpointer data)
{
    const AxisJob *j = data;
    const float *dy = j->x;
    const float scale = j->op == LMN_AXIS_MEAN ? (float) (1.0 / (double) j->axis) : 1.0f;
    for (gsize r = begin; r < end; r++) {
        const gsize o = r / j->axis, a = r % j->axis;
        const float *d = dy + o * j->inner;
        float *dx = j->out + r * j->inner;
        if (j->op == LMN_AXIS_MAX) {
            const gint32 *idx = j->idx + o * j->inner;
            for (gsize q = 0; q < j->inner; q++)
                dx[q] = idx[q] == (gint32) a ? d[q] : 0.0f;
        } else {
            for (gsize q = 0; q < j->inner; q++)
                dx[q] = d[q] * scale;
        }
    }
}

void lmn_cpu_reduce_axis_backward(gpointer ctx, LmnAxisReduceOp op, const LmnTensor *dy,
                                  const LmnTensor *indices, LmnTensor *dx, gint64 outer,
                                  gint64 axis, gint64 inner)
{
    LmnCpuContext *c = ctx;
    AxisJob j = {.op = op,
                 .x = fptr(dy),
                 .out = fptr(dx),
                 .idx = (gint32 *) iptr(indices),
                 .outer = (gsize) outer,
                 .axis = (gsize) axis,
                 .inner = (gsize) inner};
    EXEC_BEGIN(c);
    run(c, j.outer * j.axis, j.inner, axis_backward_rows, &j);
    EXEC_END(c);
}

/* ---- broadcasting binary ops ---- */

typedef struct {
    LmnBinaryOp op;
    LmnBroadcastPlan p;
    const float *a, *b, *dy;
    float *out;
    gboolean grad_b; /* backward: which operand's gradient */
    gsize rows, tiles;
} BcastJob;

static inline float apply(LmnBinaryOp op, float x, float y)
{
    switch (op) {
    case LMN_BINARY_ADD:
        return x + y;
    case LMN_BINARY_SUB:
        return x - y;
    case LMN_BINARY_MUL:
        return x * y;
    case LMN_BINARY_DIV:
        return x / y;
    case LMN_BINARY_MAXIMUM: /* NaN in either propagates */
        return x > y || isnan(x) ? x : y;
    case LMN_BINARY_MINIMUM:
        return x < y || isnan(x) ? x : y;
    case LMN_BINARY_COUNT:
        break;
    }
    return x;
}

/* Element offsets of row @r (all plan dims but the last) in the output, a and b. */
static void row_offsets(const LmnBroadcastPlan *p, gsize r, gsize *oo, gsize *oa, gsize *ob)
{
    *oo = *oa = *ob = 0;
    for (gint k = (gint) p->nd - 2; k >= 0; k--) {
        const gsize ck = r % (gsize) p->dims[k];
        r /= (gsize) p->dims[k];
        *oo += ck * (gsize) p->so[k];
        *oa += ck * (gsize) p->sa[k];
        *ob += ck * (gsize) p->sb[k];
    }
}

/* One loop per stride pattern of the last dim, so each vectorises. */
#define BCAST_LOOP(op_expr)                                                                        \
    do {                                                                                           \
        if (sa == 1 && sb == 1)                                                                    \
            for (gsize q = 0; q < n; q++) {                                                        \
                const float x = a[q], y = b[q];                                                    \
                o[q] = (op_expr);                                                                  \
            }                                                                                      \
        else if (sa == 1)                                                                          \
            for (gsize q = 0; q < n; q++) {                                                        \
                const float x = a[q], y = b[0];                                                    \
                o[q] = (op_expr);                                                                  \
            }                                                                                      \
        else                                                                                       \
            for (gsize q = 0; q < n; q++) {                                                        \
                const float x = a[0], y = b[q * sb];                                               \
                o[q] = (op_expr);                                                                  \
            }                                                                                      \
    } while (0)

static void bcast_row(LmnBinaryOp op, const float *a, const float *b, float *o, gsize n, gint64 sa,
                      gint64 sb)
{
    switch (op) {
    case LMN_BINARY_ADD:
        BCAST_LOOP(x + y);
        break;
    case LMN_BINARY_SUB:
        BCAST_LOOP(x - y);
        break;
    case LMN_BINARY_MUL:
        BCAST_LOOP(x * y);
        break;
    case LMN_BINARY_DIV:
        BCAST_LOOP(x / y);
        break;
    default:
        BCAST_LOOP(apply(op, x, y));
        break;
    }
}

static void bcast_rows(gsize begin, gsize end, gpointer data)
{
    const BcastJob *j = data;
    const LmnBroadcastPlan *p = &j->p;
    const guint L = p->nd - 1;
    const gsize n = (gsize) p->dims[L];
    for (gsize r = begin; r < end; r++) {
        gsize oo, oa, ob;
        row_offsets(p, r, &oo, &oa, &ob);
        bcast_row(j->op, j->a + oa, j->b + ob, j->out + oo, n, p->sa[L], p->sb[L]);
    }
}

void lmn_cpu_binary_broadcast(gpointer ctx, LmnBinaryOp op, const LmnTensor *a, const LmnTensor *b,
                              LmnTensor *out, const LmnBroadcast *bc)
{
    LmnCpuContext *c = ctx;
    BcastJob j = {.op = op, .a = fptr(a), .b = fptr(b), .out = fptr(out)};
    lmn_broadcast_plan(bc, &j.p);
    const gsize n = (gsize) j.p.dims[j.p.nd - 1];
    if (numel(out) == 0)
        return;
    EXEC_BEGIN(c);
    run(c, numel(out) / n, n, bcast_rows, &j);
    EXEC_END(c);
}

/* The gradient of out = x OP y with respect to x (@grad_b FALSE) or y, for upstream @d. */
static inline double grad_term(LmnBinaryOp op, gboolean grad_b, float d, float x, float y)
{
    switch (op) {
    case LMN_BINARY_ADD:
        return d;
    case LMN_BINARY_SUB:
        return grad_b ? -(double) d : d;
    case LMN_BINARY_MUL:
        return (double) d * (grad_b ? x : y);
    case LMN_BINARY_DIV:
        return grad_b ? -(double) d * x / ((double) y * y) : (double) d / y;
    case LMN_BINARY_MAXIMUM:
    case LMN_BINARY_MINIMUM: {
        /* As PyTorch: the loser gets 0, a tie halves the gradient, NaN passes it to both. */
        const gboolean x_wins = op == LMN_BINARY_MAXIMUM ? x > y : x < y;
        const gboolean y_wins = op == LMN_BINARY_MAXIMUM ? y > x : y < x;
        if (x == y)
            return 0.5 * d;
        return (grad_b ? x_wins : y_wins) ? 0.0 : d;
    }
    case LMN_BINARY_COUNT:
        break;
    }
    return 0.0;
}

/* Adds the gradient terms of @len positions along the last plan dim to acc[q], or all of them
 * to acc[0] with @into_one; @x and @y step by @sx and @sy (0 or 1) and may be NULL for ADD and
 * SUB.  The common functions have their own loops, which vectorise. */
static void grad_run(const BcastJob *j, const float *dy, const float *x, const float *y, gsize sx,
                     gsize sy, gsize len, double *acc, gboolean into_one)
{
    if (j->op == LMN_BINARY_ADD || j->op == LMN_BINARY_SUB) {
        const double sign = j->op == LMN_BINARY_SUB && j->grad_b ? -1.0 : 1.0;
        double s = 0.0;
        for (gsize q = 0; q < len; q++) {
            if (into_one)
                s += (double) dy[q];
            else
                acc[q] += sign * dy[q];
        }
        acc[0] += into_one ? sign * s : 0.0;
        return;
    }
    if (j->op == LMN_BINARY_MUL) {
        const float *f = j->grad_b ? x : y; /* the other operand is the factor */
        const gsize sf = j->grad_b ? sx : sy;
        double s = 0.0;
        for (gsize q = 0; q < len; q++) {
            if (into_one)
                s += (double) dy[q] * f[q * sf];
            else
                acc[q] += (double) dy[q] * f[q * sf];
        }
        acc[0] += s;
        return;
    }
    for (gsize q = 0; q < len; q++)
        acc[into_one ? 0 : q] += grad_term(j->op, j->grad_b, dy[q], x[q * sx], y[q * sy]);
}

/* Sums the gradient terms of one tile of the gradient operand: @n positions along the last plan
 * dim from @q0 (or, with the last dim broadcast for the operand, all of it into acc[0]), over
 * every coordinate of the operand's broadcast dims among the others, in row-major order. */
static void grad_tile(const BcastJob *j, const gsize base[3], gsize q0, gsize n, double *acc)
{
    const LmnBroadcastPlan *p = &j->p;
    const gint64 *sx = j->grad_b ? p->sb : p->sa;
    const guint L = p->nd - 1;
    const gboolean last_kept = sx[L] != 0;
    const gsize sa = (gsize) p->sa[L], sb = (gsize) p->sb[L], at = last_kept ? q0 : 0;
    gsize coord[LMN_BROADCAST_MAX_DIMS] = {0};
    for (;;) {
        gsize oo = base[0], oa = base[1], ob = base[2];
        for (guint k = 0; k < L; k++)
            if (sx[k] == 0) {
                oo += coord[k] * (gsize) p->so[k];
                oa += coord[k] * (gsize) p->sa[k];
                ob += coord[k] * (gsize) p->sb[k];
            }
        grad_run(j, j->dy + oo + at, j->a != NULL ? j->a + oa + at * sa : NULL,
                 j->b != NULL ? j->b + ob + at * sb : NULL, sa, sb,
                 last_kept ? n : (gsize) p->dims[L], acc, !last_kept);
        /* Next coordinate of the broadcast dims before the last (an odometer). */
        gint k = (gint) L - 1;
        for (; k >= 0; k--) {
            if (sx[k] != 0)
                continue;
            if (++coord[k] < (gsize) p->dims[k])
                break;
            coord[k] = 0;
        }
        if (k < 0)
            return;
    }
}

/* Units are (row of the gradient operand over its kept dims before the last, tile). */
static void grad_units(gsize begin, gsize end, gpointer data)
{
    const BcastJob *j = data;
    const LmnBroadcastPlan *p = &j->p;
    const gint64 *sx = j->grad_b ? p->sb : p->sa;
    const guint L = p->nd - 1;
    float *out = j->out;
    for (gsize u = begin; u < end; u++) {
        gsize r = u / j->tiles, q0 = (u % j->tiles) * TILE;
        gsize base[3] = {0, 0, 0}, ox = 0;
        for (gint k = (gint) L - 1; k >= 0; k--) {
            if (sx[k] == 0)
                continue;
            const gsize ck = r % (gsize) p->dims[k];
            r /= (gsize) p->dims[k];
            base[0] += ck * (gsize) p->so[k];
            base[1] += ck * (gsize) p->sa[k];
            base[2] += ck * (gsize) p->sb[k];
            ox += ck * (gsize) sx[k];
        }
        const gsize n = sx[L] != 0 ? MIN(TILE, (gsize) p->dims[L] - q0) : 1;
        double acc[TILE] = {0};
        grad_tile(j, base, q0, n, acc);
        for (gsize q = 0; q < n; q++)
            out[ox + q0 + q] = (float) acc[q];
    }
}

static void broadcast_grad(LmnCpuContext *c, BcastJob *j, LmnTensor *dx, gboolean grad_b)
{
    const LmnBroadcastPlan *p = &j->p;
    const gint64 *sx = grad_b ? p->sb : p->sa;
    const guint L = p->nd - 1;
    gsize rows = 1;
    for (guint k = 0; k < L; k++)
        if (sx[k] != 0)
            rows *= (gsize) p->dims[k];
    j->grad_b = grad_b;
    j->out = fptr(dx);
    j->tiles = sx[L] != 0 ? ((gsize) p->dims[L] + TILE - 1) / TILE : 1;
    gsize out_n = 1;
    for (guint k = 0; k < p->nd; k++)
        out_n *= (gsize) p->dims[k];
    if (out_n == 0) {
        /* An empty output: every gradient element is an empty sum. */
        for (gsize i = 0; i < numel(dx); i++)
            j->out[i] = 0.0f;
        return;
    }
    run(c, rows * j->tiles, out_n / MAX(numel(dx), 1) * TILE, grad_units, j);
}

void lmn_cpu_binary_broadcast_backward(gpointer ctx, LmnBinaryOp op, const LmnTensor *a,
                                       const LmnTensor *b, const LmnTensor *dy, LmnTensor *da,
                                       LmnTensor *db, const LmnBroadcast *bc)
{
    LmnCpuContext *c = ctx;
    BcastJob j = {.op = op, .a = fptr(a), .b = fptr(b), .dy = fptr(dy)};
    lmn_broadcast_plan(bc, &j.p);
    EXEC_BEGIN(c);
    if (da != NULL)
        broadcast_grad(c, &j, da, FALSE);
    if (db != NULL)
        broadcast_grad(c, &j, db, TRUE);
    EXEC_END(c);
}

/* ---- row normalisation ---- */

typedef struct {
    const float *x, *dy, *rstd_in;
    float *y, *mean, *rstd;
    gsize cols;
    float eps;
} NormJob;

/* Sum of @n floats, or of their products with @w, in double with eight lanes (a fixed order). */
static double dot_f64(const float *restrict v, const float *restrict w, gsize n)
{
    double acc[8] = {0};
    gsize i = 0;
    if (w == NULL) {
        for (; i + 8 <= n; i += 8)
            for (gsize q = 0; q < 8; q++)
                acc[q] += (double) v[i + q];
    } else {
        for (; i + 8 <= n; i += 8)
            for (gsize q = 0; q < 8; q++)
                acc[q] += (double) v[i + q] * (double) w[i + q];
    }
    double tail = 0.0;
    for (; i < n; i++)
        tail += w == NULL ? (double) v[i] : (double) v[i] * (double) w[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

static void norm_rows(gsize begin, gsize end, gpointer data)
{
    const NormJob *j = data;
    const gsize n = j->cols;
    for (gsize r = begin; r < end; r++) {
        const float *x = j->x + r * n;
        float *y = j->y + r * n;
        const double m = dot_f64(x, NULL, n) / (double) n;
        double acc[8] = {0}, tail = 0.0;
        gsize i = 0;
        for (; i + 8 <= n; i += 8)
            for (gsize q = 0; q < 8; q++) {
                const double d = (double) x[i + q] - m;
                acc[q] += d * d;
            }
        for (; i < n; i++)
            tail += ((double) x[i] - m) * ((double) x[i] - m);
        const double var = (((acc[0] + acc[1]) + (acc[2] + acc[3])) +
                            ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail) /
                           (double) n;
        const float rs = (float) (1.0 / sqrt(var + (double) j->eps));
        const float mf = (float) m;
        j->mean[r] = mf;
        j->rstd[r] = rs;
        for (gsize q = 0; q < n; q++)
            y[q] = (x[q] - mf) * rs;
    }
}

void lmn_cpu_normalize_rows(gpointer ctx, const LmnTensor *x, LmnTensor *y, LmnTensor *mean,
                            LmnTensor *rstd, gint64 rows, gint64 cols, float eps)
{
    LmnCpuContext *c = ctx;
    NormJob j = {.x = fptr(x),
                 .y = fptr(y),
                 .mean = fptr(mean),
                 .rstd = fptr(rstd),
                 .cols = (gsize) cols,
                 .eps = eps};
    EXEC_BEGIN(c);
    run(c, (gsize) rows, (gsize) cols * 3, norm_rows, &j);
    EXEC_END(c);
}

static void norm_backward_rows(gsize begin, gsize end, gpointer data)
{
    const NormJob *j = data;
    const gsize n = j->cols;
    for (gsize r = begin; r < end; r++) {
        const float *y = j->x + r * n, *dy = j->dy + r * n;
        float *dx = j->y + r * n;
        const float m1 = (float) (dot_f64(dy, NULL, n) / (double) n);
        const float m2 = (float) (dot_f64(dy, y, n) / (double) n);
        const float rs = j->rstd_in[r];
        for (gsize q = 0; q < n; q++)
            dx[q] = rs * (dy[q] - m1 - y[q] * m2);
    }
}

void lmn_cpu_normalize_rows_backward(gpointer ctx, const LmnTensor *y, const LmnTensor *rstd,
                                     const LmnTensor *dy, LmnTensor *dx, gint64 rows, gint64 cols)
{
    LmnCpuContext *c = ctx;
    NormJob j = {
        .x = fptr(y), .dy = fptr(dy), .rstd_in = fptr(rstd), .y = fptr(dx), .cols = (gsize) cols};
    EXEC_BEGIN(c);
    run(c, (gsize) rows, (gsize) cols * 3, norm_backward_rows, &j);
    EXEC_END(c);
}

/* ---- clamp gradient ---- */

typedef struct {
    const float *x, *dy;
    float *dx;
    float lo, hi;
} ClampJob;

static void clamp_backward_range(gsize begin, gsize end, gpointer data)
{
    const ClampJob *j = data;
    for (gsize i = begin; i < end; i++)
        j->dx[i] = j->x[i] > j->lo && j->x[i] < j->hi ? j->dy[i] : 0.0f;
}

void lmn_cpu_clamp_backward(gpointer ctx, const LmnTensor *x, const LmnTensor *dy, LmnTensor *dx,
                            float lo, float hi)
{
    LmnCpuContext *c = ctx;
    ClampJob j = {.x = fptr(x), .dy = fptr(dy), .dx = fptr(dx), .lo = lo, .hi = hi};
    EXEC_BEGIN(c);
    run(c, numel(dx), 1, clamp_backward_range, &j);
    EXEC_END(c);
}

/* ---- top-k ---- */

typedef struct {
    const float *x, *dy;
    float *values, *dx;
    gint32 *idx;
    const gint32 *idx_in;
    gsize axis, inner, k;
} TopkJob;

/* Whether (va, ia) comes before (vb, ib): larger first, NaN above every number, ties by the
 * lower index (torch.topk's order). */
static inline gboolean topk_before(float va, gint32 ia, float vb, gint32 ib)
{
    if (isnan(va) != isnan(vb))
        return isnan(va);
    if (!isnan(va) && va != vb)
        return va > vb;
    return ia < ib;
}

/* Units are (o, i): an insertion sort of the axis into the k output slots, strided by inner. */
static void topk_units(gsize begin, gsize end, gpointer data)
{
    const TopkJob *j = data;
    for (gsize u = begin; u < end; u++) {
        const gsize o = u / j->inner, i = u % j->inner;
        const float *x = j->x + o * j->axis * j->inner + i;
        float *v = j->values + o * j->k * j->inner + i;
        gint32 *idx = j->idx + o * j->k * j->inner + i;
        gsize filled = 0;
        for (gsize a = 0; a < j->axis; a++) {
            const float xv = x[a * j->inner];
            gsize at = filled;
            while (at > 0 &&
                   topk_before(xv, (gint32) a, v[(at - 1) * j->inner], idx[(at - 1) * j->inner]))
                at--;
            if (at >= j->k)
                continue;
            for (gsize s = MIN(filled, j->k - 1); s > at; s--) {
                v[s * j->inner] = v[(s - 1) * j->inner];
                idx[s * j->inner] = idx[(s - 1) * j->inner];
            }
            v[at * j->inner] = xv;
            idx[at * j->inner] = (gint32) a;
            filled = MIN(filled + 1, j->k);
        }
    }
}

void lmn_cpu_topk(gpointer ctx, const LmnTensor *x, LmnTensor *values, LmnTensor *indices,
                  gint64 outer, gint64 axis, gint64 inner, gint64 k)
{
    LmnCpuContext *c = ctx;
    TopkJob j = {.x = fptr(x),
                 .values = fptr(values),
                 .idx = iptr(indices),
                 .axis = (gsize) axis,
                 .inner = (gsize) inner,
                 .k = (gsize) k};
    EXEC_BEGIN(c);
    run(c, (gsize) (outer * inner), (gsize) (axis * k), topk_units, &j);
    EXEC_END(c);
}

/* Units are rows (o, a) of dx: each element looks for its position among the k indices. */
static void topk_backward_rows(gsize begin, gsize end, gpointer data)
{
    const TopkJob *j = data;
    for (gsize r = begin; r < end; r++) {
        const gsize o = r / j->axis, a = r % j->axis;
        float *dx = j->dx + r * j->inner;
        for (gsize q = 0; q < j->inner; q++)
            dx[q] = 0.0f;
        for (gsize s = 0; s < j->k; s++) {
            const gint32 *idx = j->idx_in + (o * j->k + s) * j->inner;
            const float *dy = j->dy + (o * j->k + s) * j->inner;
            for (gsize q = 0; q < j->inner; q++)
                if (idx[q] == (gint32) a)
                    dx[q] = dy[q];
        }
    }
}

void lmn_cpu_topk_backward(gpointer ctx, const LmnTensor *dy, const LmnTensor *indices,
                           LmnTensor *dx, gint64 outer, gint64 axis, gint64 inner, gint64 k)
{
    LmnCpuContext *c = ctx;
    TopkJob j = {.dy = fptr(dy),
                 .dx = fptr(dx),
                 .idx_in = iptr(indices),
                 .axis = (gsize) axis,
                 .inner = (gsize) inner,
                 .k = (gsize) k};
    EXEC_BEGIN(c);
    run(c, (gsize) (outer * axis), (gsize) (inner * k), topk_backward_rows, &j);
    EXEC_END(c);
}
