/* Lamina — dispatch of the ABI 1.3 ops: axis reductions, broadcasting binary ops, row
 * normalisation and the clamp gradient, and the broadcast-shape rules the callers build on.
 *
 * All of them are optional vtable members: a backend without one gets a deferred
 * LMN_BACKEND_ERROR_UNSUPPORTED naming it, as for the ABI 1.1 ops (ops.c).
 */
#include "backend-private.h"

#include <lamina/error.h>
#include <lamina/ops.h>
#include <lamina/plugin.h>

#define NUMEL(t) lmn_shape_numel(&(t)->shape)
#define SAME_BACKEND(a, b) ((a)->backend == (b)->backend)
#define IS_F32(t) ((t)->dtype == LMN_DTYPE_F32)

/* Dispatches to an optional member, or records that the backend lacks it. */
#define DISPATCH_OPTIONAL(be, member, ...)                                                         \
    do {                                                                                           \
        if (LMN_VTABLE_HAS((be)->vtable, member))                                                  \
            (be)->vtable->member((be)->context, __VA_ARGS__);                                      \
        else                                                                                       \
            lmn_backend_record_unsupported((be), #member);                                         \
    } while (0)

/* Whether outer * axis * inner is a valid, non-overflowing element count equal to @n. */
static gboolean axis_dims_ok(gint64 outer, gint64 axis, gint64 inner, gint64 n)
{
    gint64 oa, total;
    if (outer < 0 || axis <= 0 || inner < 0)
        return FALSE;
    if (__builtin_mul_overflow(outer, axis, &oa) || __builtin_mul_overflow(oa, inner, &total))
        return FALSE;
    return total == n;
}

void lmn_op_reduce_axis(LmnAxisReduceOp op, const LmnTensor *x, LmnTensor *out, LmnTensor *indices,
                        gint64 outer, gint64 axis, gint64 inner)
{
    g_return_if_fail(x != NULL && out != NULL && out->backend != NULL && SAME_BACKEND(x, out));
    g_return_if_fail((guint) op < LMN_AXIS_COUNT && IS_F32(x) && IS_F32(out));
    g_return_if_fail(axis_dims_ok(outer, axis, inner, NUMEL(x)));
    g_return_if_fail(NUMEL(out) == outer * inner);
    if (op == LMN_AXIS_MAX) {
        g_return_if_fail(indices != NULL && SAME_BACKEND(indices, out));
        g_return_if_fail(indices->dtype == LMN_DTYPE_I32 && NUMEL(indices) == outer * inner);
    }
    DISPATCH_OPTIONAL(out->backend, reduce_axis, op, x, out, op == LMN_AXIS_MAX ? indices : NULL,
                      outer, axis, inner);
}

void lmn_op_reduce_axis_backward(LmnAxisReduceOp op, const LmnTensor *dy, const LmnTensor *indices,
                                 LmnTensor *dx, gint64 outer, gint64 axis, gint64 inner)
{
    g_return_if_fail(dy != NULL && dx != NULL && dx->backend != NULL && SAME_BACKEND(dy, dx));
    g_return_if_fail((guint) op < LMN_AXIS_COUNT && IS_F32(dy) && IS_F32(dx));
    g_return_if_fail(axis_dims_ok(outer, axis, inner, NUMEL(dx)));
    g_return_if_fail(NUMEL(dy) == outer * inner);
    if (op == LMN_AXIS_MAX) {
        g_return_if_fail(indices != NULL && SAME_BACKEND(indices, dx));
        g_return_if_fail(indices->dtype == LMN_DTYPE_I32 && NUMEL(indices) == outer * inner);
    }
    DISPATCH_OPTIONAL(dx->backend, reduce_axis_backward, op, dy,
                      op == LMN_AXIS_MAX ? indices : NULL, dx, outer, axis, inner);
}

/* ---- broadcasting ---- */

gboolean lmn_broadcast_init(LmnBroadcast *bc, const LmnShape *a, const LmnShape *b, GError **error)
{
    g_return_val_if_fail(bc != NULL && a != NULL && b != NULL, FALSE);
    g_return_val_if_fail(a->ndim <= LMN_BROADCAST_MAX_DIMS && b->ndim <= LMN_BROADCAST_MAX_DIMS,
                         FALSE);
    *bc = (LmnBroadcast){.struct_size = sizeof(LmnBroadcast)};
    bc->ndim = MAX(MAX(a->ndim, b->ndim), 1);
    gint64 total = 1;
    for (guint k = 0; k < bc->ndim; k++) {
        /* Right-aligned: dimension k of the output is dimension k - (ndim - a->ndim) of a. */
        const gint kr = (gint) bc->ndim - 1 - (gint) k;
        const gint64 da = kr < (gint) a->ndim ? a->dims[a->ndim - 1 - kr] : 1;
        const gint64 db = kr < (gint) b->ndim ? b->dims[b->ndim - 1 - kr] : 1;
        if (da < 0 || db < 0 || (da != db && da != 1 && db != 1)) {
            g_autofree char *sa = lmn_shape_to_string(a);
            g_autofree char *sb = lmn_shape_to_string(b);
            g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                        "shapes %s and %s do not broadcast: dimension %d from the right is "
                        "%" G_GINT64_FORMAT " against %" G_GINT64_FORMAT
                        " (sizes must be equal or 1); reshape one input so they match",
                        sa, sb, kr + 1, da, db);
            return FALSE;
        }
        bc->a[k] = da;
        bc->b[k] = db;
        bc->out[k] = da == 1 ? db : da;
        if (__builtin_mul_overflow(total, bc->out[k], &total) || total > G_MAXINT64 / 8) {
            g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                        "the broadcast output of two operands has too many elements");
            return FALSE;
        }
    }
    return TRUE;
}

LmnShape lmn_broadcast_out_shape(const LmnBroadcast *bc)
{
    LmnShape s = {0};
    g_return_val_if_fail(bc != NULL && bc->ndim <= LMN_BROADCAST_MAX_DIMS, s);
    s.ndim = bc->ndim;
    for (guint k = 0; k < bc->ndim; k++)
        s.dims[k] = bc->out[k];
    return s;
}

/* Bit 0: a is broadcast along the dim, bit 1: b is. */
static guint pattern(const LmnBroadcast *bc, guint k)
{
    return (bc->a[k] != bc->out[k] ? 1u : 0u) | (bc->b[k] != bc->out[k] ? 2u : 0u);
}

/* Contiguous strides of an operand over the plan's dims, 0 where @bcast_bit is set. */
static void plan_strides(LmnBroadcastPlan *p, const guint *pat, guint bcast_bit, gint64 *s)
{
    gint64 stride = 1;
    for (gint k = (gint) p->nd - 1; k >= 0; k--) {
        s[k] = (pat[k] & bcast_bit) ? 0 : stride;
        stride *= (pat[k] & bcast_bit) ? 1 : p->dims[k];
    }
}

void lmn_broadcast_plan(const LmnBroadcast *bc, LmnBroadcastPlan *p)
{
    g_return_if_fail(bc != NULL && p != NULL && bc->ndim <= LMN_BROADCAST_MAX_DIMS);
    guint pat[LMN_BROADCAST_MAX_DIMS];
    p->nd = 0;
    for (guint k = 0; k < bc->ndim; k++) {
        if (bc->out[k] == 1)
            continue; /* nothing to index along it */
        const guint pk = pattern(bc, k);
        if (p->nd > 0 && pat[p->nd - 1] == pk) {
            p->dims[p->nd - 1] *= bc->out[k];
            continue;
        }
        pat[p->nd] = pk;
        p->dims[p->nd++] = bc->out[k];
    }
    if (p->nd == 0) {
        pat[0] = 0;
        p->dims[p->nd++] = 1;
    }
    plan_strides(p, pat, 4u, p->so); /* no bit 2: the output is never broadcast */
    plan_strides(p, pat, 1u, p->sa);
    plan_strides(p, pat, 2u, p->sb);
}

static gint64 dims_numel(const gint64 *d, guint n)
{
    gint64 total = 1;
    for (guint k = 0; k < n; k++)
        total *= d[k];
    return total;
}

/* Whether @bc is consistent (each operand dim equal to the output's or 1). */
static gboolean broadcast_ok(const LmnBroadcast *bc)
{
    if (bc == NULL || bc->struct_size < sizeof(LmnBroadcast) || bc->ndim == 0 ||
        bc->ndim > LMN_BROADCAST_MAX_DIMS)
        return FALSE;
    for (guint k = 0; k < bc->ndim; k++) {
        if (bc->out[k] < 0 || (bc->a[k] != bc->out[k] && bc->a[k] != 1) ||
            (bc->b[k] != bc->out[k] && bc->b[k] != 1))
            return FALSE;
    }
    return TRUE;
}

void lmn_op_binary_broadcast(LmnBinaryOp op, const LmnTensor *a, const LmnTensor *b, LmnTensor *out,
                             const LmnBroadcast *bc)
{
    g_return_if_fail(a != NULL && b != NULL && out != NULL && out->backend != NULL);
    g_return_if_fail((guint) op < LMN_BINARY_COUNT && broadcast_ok(bc));
    g_return_if_fail(SAME_BACKEND(a, out) && SAME_BACKEND(b, out));
    g_return_if_fail(IS_F32(a) && IS_F32(b) && IS_F32(out));
    g_return_if_fail(NUMEL(a) == dims_numel(bc->a, bc->ndim) &&
                     NUMEL(b) == dims_numel(bc->b, bc->ndim) &&
                     NUMEL(out) == dims_numel(bc->out, bc->ndim));
    DISPATCH_OPTIONAL(out->backend, binary_broadcast, op, a, b, out, bc);
}

void lmn_op_binary_broadcast_backward(LmnBinaryOp op, const LmnTensor *a, const LmnTensor *b,
                                      const LmnTensor *dy, LmnTensor *da, LmnTensor *db,
                                      const LmnBroadcast *bc)
{
    g_return_if_fail(dy != NULL && dy->backend != NULL && IS_F32(dy));
    g_return_if_fail((guint) op < LMN_BINARY_COUNT && broadcast_ok(bc));
    g_return_if_fail(NUMEL(dy) == dims_numel(bc->out, bc->ndim));
    const gboolean reads = op != LMN_BINARY_ADD && op != LMN_BINARY_SUB;
    g_return_if_fail(!reads || (a != NULL && b != NULL));
    const LmnTensor *operands[] = {a, b, da, db};
    const gint64 *dims[] = {bc->a, bc->b, bc->a, bc->b};
    for (guint i = 0; i < G_N_ELEMENTS(operands); i++) {
        if (operands[i] == NULL || (i < 2 && !reads))
            continue;
        g_return_if_fail(SAME_BACKEND(operands[i], dy) && IS_F32(operands[i]));
        g_return_if_fail(NUMEL(operands[i]) == dims_numel(dims[i], bc->ndim));
    }
    if (da == NULL && db == NULL)
        return;
    DISPATCH_OPTIONAL(dy->backend, binary_broadcast_backward, op, reads ? a : NULL,
                      reads ? b : NULL, dy, da, db, bc);
}

void lmn_op_reduce_to_shape(const LmnTensor *x, LmnTensor *out, const LmnBroadcast *bc)
{
    lmn_op_binary_broadcast_backward(LMN_BINARY_ADD, NULL, NULL, x, out, NULL, bc);
}

/* ---- top-k ---- */

/* Whether x is [outer, axis, inner] and the other tensors (@i32 indices) [outer, k, inner]. */
static gboolean topk_shapes_ok(const LmnTensor *x, const LmnTensor *v, const LmnTensor *idx,
                               gint64 outer, gint64 axis, gint64 inner, gint64 k)
{
    if (k < 1 || k > axis || !axis_dims_ok(outer, axis, inner, NUMEL(x)))
        return FALSE;
    return idx->dtype == LMN_DTYPE_I32 && NUMEL(idx) == outer * k * inner &&
           (v == NULL || NUMEL(v) == outer * k * inner);
}

void lmn_op_topk(const LmnTensor *x, LmnTensor *values, LmnTensor *indices, gint64 outer,
                 gint64 axis, gint64 inner, gint64 k)
{
    g_return_if_fail(x != NULL && values != NULL && indices != NULL && x->backend != NULL);
    g_return_if_fail(SAME_BACKEND(values, x) && SAME_BACKEND(indices, x));
    g_return_if_fail(IS_F32(x) && IS_F32(values));
    g_return_if_fail(topk_shapes_ok(x, values, indices, outer, axis, inner, k));
    DISPATCH_OPTIONAL(x->backend, topk, x, values, indices, outer, axis, inner, k);
}

void lmn_op_topk_backward(const LmnTensor *dy, const LmnTensor *indices, LmnTensor *dx,
                          gint64 outer, gint64 axis, gint64 inner, gint64 k)
{
    g_return_if_fail(dy != NULL && indices != NULL && dx != NULL && dx->backend != NULL);
    g_return_if_fail(SAME_BACKEND(dy, dx) && SAME_BACKEND(indices, dx));
    g_return_if_fail(IS_F32(dy) && IS_F32(dx));
    g_return_if_fail(topk_shapes_ok(dx, dy, indices, outer, axis, inner, k));
    DISPATCH_OPTIONAL(dx->backend, topk_backward, dy, indices, dx, outer, axis, inner, k);
}

/* ---- row normalisation, clamp gradient ---- */

void lmn_op_normalize_rows(const LmnTensor *x, LmnTensor *y, LmnTensor *mean, LmnTensor *rstd,
                           gint64 rows, gint64 cols, float eps)
{
    g_return_if_fail(x != NULL && y != NULL && mean != NULL && rstd != NULL);
    g_return_if_fail(y->backend != NULL && SAME_BACKEND(x, y) && SAME_BACKEND(mean, y) &&
                     SAME_BACKEND(rstd, y));
    g_return_if_fail(IS_F32(x) && IS_F32(y) && IS_F32(mean) && IS_F32(rstd));
    g_return_if_fail(axis_dims_ok(rows, cols, 1, NUMEL(x)) && NUMEL(y) == NUMEL(x));
    g_return_if_fail(NUMEL(mean) == rows && NUMEL(rstd) == rows && eps >= 0.0f);
    DISPATCH_OPTIONAL(y->backend, normalize_rows, x, y, mean, rstd, rows, cols, eps);
}

void lmn_op_normalize_rows_backward(const LmnTensor *y, const LmnTensor *rstd, const LmnTensor *dy,
                                    LmnTensor *dx, gint64 rows, gint64 cols)
{
    g_return_if_fail(y != NULL && rstd != NULL && dy != NULL && dx != NULL);
    g_return_if_fail(dx->backend != NULL && SAME_BACKEND(y, dx) && SAME_BACKEND(rstd, dx) &&
                     SAME_BACKEND(dy, dx));
    g_return_if_fail(IS_F32(y) && IS_F32(rstd) && IS_F32(dy) && IS_F32(dx));
    g_return_if_fail(axis_dims_ok(rows, cols, 1, NUMEL(y)) && NUMEL(dy) == NUMEL(y) &&
                     NUMEL(dx) == NUMEL(y) && NUMEL(rstd) == rows);
    DISPATCH_OPTIONAL(dx->backend, normalize_rows_backward, y, rstd, dy, dx, rows, cols);
}

void lmn_op_clamp_backward(const LmnTensor *x, const LmnTensor *dy, LmnTensor *dx, float lo,
                           float hi)
{
    g_return_if_fail(x != NULL && dy != NULL && dx != NULL && dx->backend != NULL);
    g_return_if_fail(SAME_BACKEND(x, dx) && SAME_BACKEND(dy, dx) && lo <= hi);
    g_return_if_fail(IS_F32(x) && IS_F32(dy) && IS_F32(dx));
    g_return_if_fail(NUMEL(x) == NUMEL(dx) && NUMEL(dy) == NUMEL(dx));
    DISPATCH_OPTIONAL(dx->backend, clamp_backward, x, dy, dx, lo, hi);
}
