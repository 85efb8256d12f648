/* Lamina Vulkan backend — the ABI 1.3 ops: reductions over one axis (reduce_axis.comp),
 * broadcasting binary ops and their gradients (broadcast.comp), row normalisation
 * (normalize.comp) and the clamp gradient (unary_backward.comp's op 100).
 *
 * Chunking above maxStorageBufferRange: axis reductions by whole [axis, inner] slices of the
 * outer dim, row normalisation by rows, the clamp gradient by elements.  Broadcasting ops cut
 * their coalesced box (lmn_broadcast_plan) along its outermost dim into runs of rows whose
 * spans fit every operand, going one dim deeper where a single row does not fit; a gradient
 * whose operand is broadcast along the cut dim adds the later runs to the first (a fixed
 * order, so the result stays deterministic).  Still refused: one [axis, inner] slice or one row
 * larger than the range.  Sums run in float in a fixed order.
 */
#include "vk-private.h"

#include <string.h>

#define MAX_GROUPS 4096u
#define LOCK(c) g_mutex_lock(&(c)->lock)
#define UNLOCK(c) g_mutex_unlock(&(c)->lock)
#define bind lmn_vk_bind_tensor

static gsize numel(const LmnTensor *t)
{
    gsize n = 1;
    for (guint i = 0; i < t->shape.ndim; i++)
        n *= (gsize) t->shape.dims[i];
    return n;
}

static guint32 fbits(float f)
{
    guint32 u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* The most elements one binding may span at any element offset (as in vk-ops.c). */
static gsize max_elems(LmnVkContext *c)
{
    return (gsize) ((c->max_range - c->alignment) / 4 + 1);
}

static guint32 groups_for(gsize n)
{
    gsize g = (n + LMN_VK_LOCAL_SIZE - 1) / LMN_VK_LOCAL_SIZE;
    return (guint32) CLAMP(g, 1, MAX_GROUPS); /* the shaders loop over the rest */
}

static void bind_dummy(LmnVkContext *c, LmnVkBinding *b)
{
    *b = (LmnVkBinding){lmn_vk_buffer_handle(c->dummy), c->dummy->offset, c->dummy->size, FALSE};
}

static void too_large(LmnVkContext *c, const char *op, const char *what, gsize n)
{
    lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                     "vulkan: %s: %s of %" G_GSIZE_FORMAT " elements exceeds "
                     "maxStorageBufferRange (%" G_GUINT64_FORMAT " bytes)",
                     op, what, n, (guint64) c->max_range);
}

/* ---- reductions over one axis ---- */

/* Runs reduce_axis.comp @mode over chunks of whole outer slices: x (or dy) and the output (or
 * dx) each span per * (@x_slice or @o_slice) elements, the indices per * inner. */
static void axis_chunks(LmnVkContext *c, guint32 mode, const LmnTensor *x, LmnTensor *o,
                        const LmnTensor *idx, gboolean idx_write, gint64 outer, gint64 axis,
                        gint64 inner, gboolean backward, const char *op)
{
    const gsize in = (gsize) inner, slice = (gsize) axis * in;
    const gsize x_slice = backward ? in : slice, o_slice = backward ? slice : in;
    if (outer <= 0 || inner <= 0 || c->error != NULL)
        return;
    const gsize per = max_elems(c) / slice;
    if (per == 0) {
        too_large(c, op, "an [axis, inner] slice", slice);
        return;
    }
    for (gsize o0 = 0; o0 < (gsize) outer; o0 += per) {
        const gsize no = MIN(per, (gsize) outer - o0);
        guint32 push[7] = {(guint32) (no * o_slice), 0,   0, 0, (guint32) axis,
                           (guint32) inner,          mode};
        LmnVkBinding b[3];
        if (!bind(c, x, o0 * x_slice, no * x_slice, FALSE, &b[0], &push[1], op) ||
            !bind(c, o, o0 * o_slice, no * o_slice, TRUE, &b[1], &push[2], op))
            return;
        if (idx != NULL) {
            if (!bind(c, idx, o0 * in, no * in, idx_write, &b[2], &push[3], op))
                return;
        } else {
            bind_dummy(c, &b[2]);
        }
        lmn_vk_dispatch(c, lmn_vk_builtin_pipeline(c, LMN_VK_SHADER_REDUCE_AXIS), b, 3, push,
                        sizeof push, groups_for(no * o_slice), 1, 1);
    }
}

void lmn_vk_reduce_axis(gpointer ctx, LmnAxisReduceOp op, const LmnTensor *x, LmnTensor *out,
                        LmnTensor *indices, gint64 outer, gint64 axis, gint64 inner)
{
    LmnVkContext *c = ctx;
    LOCK(c);
    axis_chunks(c, (guint32) op, x, out, indices, TRUE, outer, axis, inner, FALSE, "reduce_axis");
    UNLOCK(c);
}

void lmn_vk_reduce_axis_backward(gpointer ctx, LmnAxisReduceOp op, const LmnTensor *dy,
                                 const LmnTensor *indices, LmnTensor *dx, gint64 outer, gint64 axis,
                                 gint64 inner)
{
    LmnVkContext *c = ctx;
    LOCK(c);
    axis_chunks(c, 10u + (guint32) op, dy, dx, indices, FALSE, outer, axis, inner, TRUE,
                "reduce_axis_backward");
    UNLOCK(c);
}

/* ---- broadcasting ---- */

typedef struct {
    LmnBroadcastPlan p;
    guint32 op;
    guint32 mode; /* 0 forward, 1 gradient of a, 2 gradient of b */
    const LmnTensor *a, *b, *dy;
    LmnTensor *o; /* the output, or the gradient */
    const char *name;
} BcastJob;

/* Elements an operand with strides @s spans in the box from @level with @rows rows there. */
static gsize box_span(const BcastJob *j, const gint64 *s, guint level, gsize rows)
{
    gsize span = 1 + (rows - 1) * (gsize) s[level];
    for (guint k = level + 1; k < j->p.nd; k++)
        span += (gsize) (j->p.dims[k] - 1) * (gsize) s[k];
    return span;
}

static const gint64 *grad_strides(const BcastJob *j)
{
    return j->mode == 2 ? j->p.sb : j->p.sa;
}

/* Records one dispatch over the box from @level, rows [r0, r0 + rows) there, with element
 * offsets @off (output, a, b) of its first element. */
static void bcast_dispatch(LmnVkContext *c, const BcastJob *j, guint level, gsize rows,
                           const gsize off[3], gboolean acc)
{
    const LmnBroadcastPlan *p = &j->p;
    const gint64 *sx = grad_strides(j);
    guint32 push[24] = {0};
    gsize n = 1;
    push[5] = j->op;
    push[6] = j->mode;
    push[7] = acc ? 1u : 0u;
    push[8] = p->nd - level;
    for (guint k = level; k < p->nd; k++) {
        const gsize dk = k == level ? rows : (gsize) p->dims[k];
        push[9 + k - level] = (guint32) dk;
        push[14 + k - level] = (guint32) p->sa[k];
        push[19 + k - level] = (guint32) p->sb[k];
        n *= j->mode == 0 || sx[k] != 0 ? dk : 1;
    }
    push[0] = (guint32) n;
    const gboolean reads = j->mode == 0 || j->op >= LMN_BINARY_MUL;
    const gsize span_a = box_span(j, p->sa, level, rows), span_b = box_span(j, p->sb, level, rows);
    const gsize span_o = box_span(j, p->so, level, rows);
    /* The gradient operand starts where its first term's operand does. */
    const gsize off_x = j->mode == 2 ? off[2] : off[1];
    LmnVkBinding b[4];
    gboolean ok = TRUE;
    if (reads) {
        ok = bind(c, j->a, off[1], span_a, FALSE, &b[0], &push[1], j->name) &&
             bind(c, j->b, off[2], span_b, FALSE, &b[1], &push[2], j->name);
    } else {
        bind_dummy(c, &b[0]);
        bind_dummy(c, &b[1]);
    }
    if (j->mode == 0) {
        bind_dummy(c, &b[2]);
        ok = ok && bind(c, j->o, off[0], span_o, TRUE, &b[3], &push[4], j->name);
    } else {
        ok = ok && bind(c, j->dy, off[0], span_o, FALSE, &b[2], &push[3], j->name) &&
             bind(c, j->o, off_x, n, TRUE, &b[3], &push[4], j->name);
    }
    if (ok)
        lmn_vk_dispatch(c, lmn_vk_builtin_pipeline(c, LMN_VK_SHADER_BROADCAST), b, 4, push,
                        sizeof push, groups_for(n), 1, 1);
}

/* The most rows at @level (up to its size) whose box fits every bound operand; 0 if one does
 * not fit. */
static gsize rows_that_fit(LmnVkContext *c, const BcastJob *j, guint level)
{
    const LmnBroadcastPlan *p = &j->p;
    const gint64 *strides[] = {p->so, p->sa, p->sb};
    const gsize me = max_elems(c);
    gsize per = (gsize) p->dims[level];
    for (guint s = 0; s < G_N_ELEMENTS(strides); s++) {
        const gsize one = box_span(j, strides[s], level, 1);
        if (one > me)
            return 0;
        if (strides[s][level] > 0)
            per = MIN(per, (me - one) / (gsize) strides[s][level] + 1);
    }
    return per;
}

static void bcast_level(LmnVkContext *c, const BcastJob *j, guint level, const gsize off[3],
                        gboolean acc)
{
    const LmnBroadcastPlan *p = &j->p;
    const gint64 *st[3] = {p->so, p->sa, p->sb};
    const gboolean x_bcast = j->mode != 0 && grad_strides(j)[level] == 0;
    const gsize dim = (gsize) p->dims[level];
    gsize per = rows_that_fit(c, j, level);
    const gboolean deeper = per == 0;
    if (deeper && level + 1 == p->nd) {
        too_large(c, j->name, "an operand row", box_span(j, p->so, level, 1));
        return;
    }
    if (deeper)
        per = 1;
    for (gsize r0 = 0; r0 < dim && c->error == NULL; r0 += per) {
        const gsize rows = MIN(per, dim - r0);
        const gsize sub[3] = {off[0] + r0 * (gsize) st[0][level],
                              off[1] + r0 * (gsize) st[1][level],
                              off[2] + r0 * (gsize) st[2][level]};
        const gboolean sub_acc = acc || (x_bcast && r0 > 0);
        if (deeper)
            bcast_level(c, j, level + 1, sub, sub_acc);
        else
            bcast_dispatch(c, j, level, rows, sub, sub_acc);
    }
}

static void bcast_run(LmnVkContext *c, BcastJob *j)
{
    const gsize zero[3] = {0, 0, 0};
    gsize out_n = 1;
    for (guint k = 0; k < j->p.nd; k++)
        out_n *= (gsize) j->p.dims[k];
    if (c->error != NULL)
        return;
    if (out_n == 0) {
        if (j->mode != 0 && numel(j->o) > 0) /* an empty sum */
            lmn_vk_record_fill(c, lmn_vk_buffer_handle(j->o->buffer),
                               ((const LmnVkBuffer *) j->o->buffer)->offset + j->o->offset,
                               numel(j->o) * 4, 0);
        return;
    }
    bcast_level(c, j, 0, zero, FALSE);
}

void lmn_vk_binary_broadcast(gpointer ctx, LmnBinaryOp op, const LmnTensor *a, const LmnTensor *b,
                             LmnTensor *out, const LmnBroadcast *bc)
{
    LmnVkContext *c = ctx;
    BcastJob j = {
        .op = (guint32) op, .mode = 0, .a = a, .b = b, .o = out, .name = "binary_broadcast"};
    lmn_broadcast_plan(bc, &j.p);
    LOCK(c);
    bcast_run(c, &j);
    UNLOCK(c);
}

void lmn_vk_binary_broadcast_backward(gpointer ctx, LmnBinaryOp op, const LmnTensor *a,
                                      const LmnTensor *b, const LmnTensor *dy, LmnTensor *da,
                                      LmnTensor *db, const LmnBroadcast *bc)
{
    LmnVkContext *c = ctx;
    BcastJob j = {
        .op = (guint32) op, .a = a, .b = b, .dy = dy, .name = "binary_broadcast_backward"};
    lmn_broadcast_plan(bc, &j.p);
    LOCK(c);
    if (da != NULL) {
        j.mode = 1;
        j.o = da;
        bcast_run(c, &j);
    }
    if (db != NULL) {
        j.mode = 2;
        j.o = db;
        bcast_run(c, &j);
    }
    UNLOCK(c);
}

/* ---- row normalisation ---- */

static void norm_rows(LmnVkContext *c, const LmnTensor *x, const LmnTensor *dy, LmnTensor *o,
                      const LmnTensor *mean, const LmnTensor *rstd, gint64 rows, gint64 cols,
                      guint32 mode, float eps, const char *op)
{
    if (rows <= 0 || cols <= 0 || c->error != NULL)
        return;
    const gsize per = MIN(max_elems(c) / (gsize) cols, (gsize) c->max_groups_x);
    if (per == 0) {
        too_large(c, op, "a row", (gsize) cols);
        return;
    }
    for (gsize r0 = 0; r0 < (gsize) rows; r0 += per) {
        const gsize nr = MIN(per, (gsize) rows - r0), e0 = r0 * (gsize) cols, n = nr * (gsize) cols;
        guint32 push[9] = {(guint32) nr, (guint32) cols, 0, 0, 0, 0, 0, mode, fbits(eps)};
        LmnVkBinding b[5];
        if (!bind(c, x, e0, n, FALSE, &b[0], &push[2], op) ||
            !bind(c, dy != NULL ? dy : x, e0, n, FALSE, &b[1], &push[3], op) ||
            !bind(c, o, e0, n, TRUE, &b[2], &push[4], op) ||
            !bind(c, rstd, r0, nr, mode == 0, &b[4], &push[6], op))
            return;
        if (mean != NULL) {
            if (!bind(c, mean, r0, nr, TRUE, &b[3], &push[5], op))
                return;
        } else {
            bind_dummy(c, &b[3]);
        }
        lmn_vk_dispatch(c, lmn_vk_builtin_pipeline(c, LMN_VK_SHADER_NORMALIZE), b, 5, push,
                        sizeof push, (guint32) nr, 1, 1);
    }
}

void lmn_vk_normalize_rows(gpointer ctx, const LmnTensor *x, LmnTensor *y, LmnTensor *mean,
                           LmnTensor *rstd, gint64 rows, gint64 cols, float eps)
{
    LmnVkContext *c = ctx;
    LOCK(c);
    norm_rows(c, x, NULL, y, mean, rstd, rows, cols, 0, eps, "normalize_rows");
    UNLOCK(c);
}

void lmn_vk_normalize_rows_backward(gpointer ctx, const LmnTensor *y, const LmnTensor *rstd,
                                    const LmnTensor *dy, LmnTensor *dx, gint64 rows, gint64 cols)
{
    LmnVkContext *c = ctx;
    LOCK(c);
    norm_rows(c, y, dy, dx, NULL, rstd, rows, cols, 1, 0.0f, "normalize_rows_backward");
    UNLOCK(c);
}

/* ---- clamp gradient ---- */

void lmn_vk_clamp_backward(gpointer ctx, const LmnTensor *x, const LmnTensor *dy, LmnTensor *dx,
                           float lo, float hi)
{
    LmnVkContext *c = ctx;
    const gsize n = numel(dx), chunk = max_elems(c) - 1;
    LOCK(c);
    for (gsize e0 = 0; e0 < n && c->error == NULL; e0 += chunk) {
        const gsize ne = MIN(chunk, n - e0);
        /* unary_backward.comp: {n, off_x, off_y, off_dy, off_dx, op, alpha, beta}, y unused. */
        guint32 push[8] = {(guint32) ne, 0, 0, 0, 0, 100u, fbits(lo), fbits(hi)};
        LmnVkBinding b[4];
        if (!bind(c, x, e0, ne, FALSE, &b[0], &push[1], "clamp_backward") ||
            !bind(c, x, e0, ne, FALSE, &b[1], &push[2], "clamp_backward") ||
            !bind(c, dy, e0, ne, FALSE, &b[2], &push[3], "clamp_backward") ||
            !bind(c, dx, e0, ne, TRUE, &b[3], &push[4], "clamp_backward"))
            break;
        lmn_vk_dispatch(c, lmn_vk_builtin_pipeline(c, LMN_VK_SHADER_UNARY_BACKWARD), b, 4, push,
                        sizeof push, groups_for(ne), 1, 1);
    }
    UNLOCK(c);
}

/* ---- top-k ---- */

/* topk.comp over chunks of whole outer slices: x spans [axis, inner] per slice and the values
 * and indices [k, inner] (backward: dy and the indices [k, inner], dx [axis, inner]). */
static void topk_chunks(LmnVkContext *c, const LmnTensor *x, LmnTensor *v, const LmnTensor *idx,
                        gint64 outer, gint64 axis, gint64 inner, gint64 k, gboolean backward,
                        const char *op)
{
    const gsize in = (gsize) inner, big = (gsize) axis * in, small = (gsize) k * in;
    if (outer <= 0 || inner <= 0 || c->error != NULL)
        return;
    const gsize per = max_elems(c) / big;
    if (per == 0) {
        too_large(c, op, "an [axis, inner] slice", big);
        return;
    }
    const gsize x_slice = backward ? small : big, v_slice = backward ? big : small;
    for (gsize o0 = 0; o0 < (gsize) outer; o0 += per) {
        const gsize no = MIN(per, (gsize) outer - o0);
        const gsize n = backward ? no * big : no * in;
        guint32 push[8] = {(guint32) n,       0, 0, 0, (guint32) axis, (guint32) inner, (guint32) k,
                           backward ? 1u : 0u};
        LmnVkBinding b[3];
        if (!bind(c, x, o0 * x_slice, no * x_slice, FALSE, &b[0], &push[1], op) ||
            !bind(c, v, o0 * v_slice, no * v_slice, TRUE, &b[1], &push[2], op) ||
            !bind(c, idx, o0 * small, no * small, !backward, &b[2], &push[3], op))
            return;
        lmn_vk_dispatch(c, lmn_vk_builtin_pipeline(c, LMN_VK_SHADER_TOPK), b, 3, push, sizeof push,
                        groups_for(n), 1, 1);
    }
}

void lmn_vk_topk(gpointer ctx, const LmnTensor *x, LmnTensor *values, LmnTensor *indices,
                 gint64 outer, gint64 axis, gint64 inner, gint64 k)
{
    LmnVkContext *c = ctx;
    LOCK(c);
    topk_chunks(c, x, values, indices, outer, axis, inner, k, FALSE, "topk");
    UNLOCK(c);
}

void lmn_vk_topk_backward(gpointer ctx, const LmnTensor *dy, const LmnTensor *indices,
                          LmnTensor *dx, gint64 outer, gint64 axis, gint64 inner, gint64 k)
{
    LmnVkContext *c = ctx;
    LOCK(c);
    topk_chunks(c, dy, dx, indices, outer, axis, inner, k, TRUE, "topk_backward");
    UNLOCK(c);
}
