/* Lamina — the ABI 1.5 GEMM with an epilogue (lmn_op_gemm_ex, lamina/ops.h): the backend's own
 * when it has one, else the product and each part of the epilogue as separate ops, which is also
 * the specification a backend's fused form must reproduce.
 */
#include "backend-private.h"

#include <lamina/ops.h>
#include <lamina/plugin.h>

#define NUMEL(t) lmn_shape_numel(&(t)->shape)

static gboolean epilogue_is_empty(const LmnGemmEpilogue *e)
{
    return e == NULL || (e->bias == NULL && e->activation == LMN_UNARY_IDENTITY &&
                         e->a_row_sums == NULL && e->activation_grad == LMN_UNARY_IDENTITY);
}

/* Whether the @na and @nb elements from tensors @a and @b share any byte of memory. */
static gboolean overlap(const LmnTensor *a, gint64 na, const LmnTensor *b, gint64 nb)
{
    if (a->buffer != b->buffer)
        return FALSE;
    const gsize a0 = a->offset, a1 = a0 + (gsize) na * 4, b0 = b->offset, b1 = b0 + (gsize) nb * 4;
    return a0 < b1 && b0 < a1;
}

/* Whether @e may apply to @g: see lmn_op_gemm_ex. */
static gboolean epilogue_ok(const LmnGemm *g, const LmnGemmEpilogue *e)
{
    const LmnBackend *be = g->c->backend;
    if (e->struct_size < sizeof(LmnGemmEpilogue) || (guint) e->activation >= LMN_UNARY_COUNT ||
        (guint) e->activation_grad >= LMN_UNARY_COUNT)
        return FALSE;
    if (g->batch > 1 || g->c_offset != 0)
        return FALSE;
    if (e->bias != NULL &&
        (e->bias->backend != be || e->bias->dtype != LMN_DTYPE_F32 || NUMEL(e->bias) != g->n))
        return FALSE;
    if (e->activated != NULL) {
        const LmnTensor *t = e->activated;
        if (t->backend != be || t->dtype != LMN_DTYPE_F32 || NUMEL(t) < g->m * g->n ||
            e->activation == LMN_UNARY_IDENTITY || overlap(t, g->m * g->n, g->c, g->m * g->n))
            return FALSE;
    }
    if (e->activation_grad != LMN_UNARY_IDENTITY) {
        if (e->bias != NULL || e->activation != LMN_UNARY_IDENTITY || e->activated != NULL ||
            g->beta != 0.0f || e->grad_x == NULL || e->grad_y == NULL)
            return FALSE;
        const LmnTensor *xy[] = {e->grad_x, e->grad_y};
        for (guint i = 0; i < 2; i++)
            if (xy[i]->backend != be || xy[i]->dtype != LMN_DTYPE_F32 ||
                NUMEL(xy[i]) < g->m * g->n || overlap(xy[i], g->m * g->n, g->c, g->m * g->n))
                return FALSE;
    }
    if (e->a_row_sums != NULL) {
        const LmnTensor *s = e->a_row_sums;
        if (s->backend != be || s->dtype != LMN_DTYPE_F32 || NUMEL(s) != g->m || g->a_offset != 0)
            return FALSE;
        if (overlap(s, g->m, g->a, NUMEL(g->a)) || overlap(s, g->m, g->b, NUMEL(g->b)) ||
            overlap(s, g->m, g->c, g->m * g->n))
            return FALSE;
    }
    return TRUE;
}

/* @t itself when it has exactly @rows x @cols elements, else a view of its first ones (a
 * partial last batch in a tensor sized for a full one). */
static LmnTensor *exact_view(const LmnTensor *t, gint64 rows, gint64 cols)
{
    if (NUMEL(t) == rows * cols)
        return lmn_tensor_ref((LmnTensor *) t);
    const LmnShape shape = lmn_shape_make(2, rows, cols);
    return lmn_tensor_new_view((LmnTensor *) t, 0, &shape);
}

void lmn_op_gemm_ex(const LmnGemm *g, const LmnGemmEpilogue *e)
{
    if (epilogue_is_empty(e)) {
        lmn_op_gemm(g);
        return;
    }
    if (!lmn_gemm_args_ok(g))
        return;
    g_return_if_fail(epilogue_ok(g, e));
    LmnBackend *be = g->c->backend;
    if (LMN_VTABLE_HAS(be->vtable, gemm_ex)) {
        be->vtable->gemm_ex(be->context, g, e);
        return;
    }
    /* The composed form, for backends without gemm_ex: the specification of the fused one. */
    be->vtable->gemm(be->context, g);
    if (e->bias != NULL || e->activation != LMN_UNARY_IDENTITY) {
        LmnTensor *c = exact_view(g->c, g->m, g->n);
        if (e->bias != NULL)
            lmn_op_bias_add(c, e->bias, g->m, g->n, 1);
        if (e->activated != NULL) {
            LmnTensor *y = exact_view(e->activated, g->m, g->n);
            lmn_op_unary(e->activation, c, y, e->activation_alpha);
            lmn_tensor_unref(y);
        } else if (e->activation != LMN_UNARY_IDENTITY) {
            lmn_op_unary(e->activation, c, c, e->activation_alpha);
        }
        lmn_tensor_unref(c);
    }
    if (e->activation_grad != LMN_UNARY_IDENTITY) {
        LmnTensor *c = exact_view(g->c, g->m, g->n);
        LmnTensor *x = exact_view(e->grad_x, g->m, g->n), *y = exact_view(e->grad_y, g->m, g->n);
        lmn_op_unary_backward(e->activation_grad, x, y, c, c, e->activation_alpha);
        lmn_tensor_unref(x);
        lmn_tensor_unref(y);
        lmn_tensor_unref(c);
    }
    if (e->a_row_sums != NULL) {
        /* op(A) [m, k] is A [k, m] transposed (the sums run down its columns) or A itself. */
        LmnTensor *a = g->trans_a ? exact_view(g->a, g->k, g->m) : exact_view(g->a, g->m, g->k);
        if (g->trans_a)
            lmn_op_bias_grad(e->a_row_sums, a, g->k, g->m, 1, e->row_sums_beta);
        else
            lmn_op_bias_grad(e->a_row_sums, a, 1, g->m, g->k, e->row_sums_beta);
        lmn_tensor_unref(a);
    }
}
