/* Lamina — dispatch of the ABI 1.3 resampling ops (lamina/ops.h), which backends may lack.
 *
 * Kept apart from ops.c so the resampling family reads as one unit; the checks are the same
 * O(1) shape agreements as every other op.
 */
#include "backend-private.h"

#include <lamina/ops.h>
#include <lamina/plugin.h>

static gboolean upsample_geom_ok(const LmnUpsampleGeom *g, const LmnTensor *x, const LmnTensor *y)
{
    if (g == NULL || g->planes <= 0 || g->in_h <= 0 || g->in_w <= 0 || g->out_h <= 0 ||
        g->out_w <= 0 || !(g->scale_h >= 0.0f) || !(g->scale_w >= 0.0f))
        return FALSE;
    /* Divisions only: a product of the geometry's sizes could overflow. */
    gint64 nx = lmn_shape_numel(&x->shape), ny = lmn_shape_numel(&y->shape);
    return nx % g->planes == 0 && nx / g->planes % g->in_h == 0 &&
           nx / g->planes / g->in_h == g->in_w && ny % g->planes == 0 &&
           ny / g->planes % g->out_h == 0 && ny / g->planes / g->out_h == g->out_w;
}

static void upsample_dispatch(LmnBackend *be, gboolean backward, LmnUpsampleMode mode,
                              const LmnTensor *src, LmnTensor *dst, const LmnUpsampleGeom *g)
{
    const LmnBackendVTable *v = be->vtable;
    if (!backward && LMN_VTABLE_HAS(v, upsample2d))
        v->upsample2d(be->context, mode, src, dst, g);
    else if (backward && LMN_VTABLE_HAS(v, upsample2d_backward))
        v->upsample2d_backward(be->context, mode, src, dst, g);
    else
        lmn_backend_record_unsupported(be, backward ? "upsample2d_backward" : "upsample2d");
}

void lmn_op_upsample2d(LmnUpsampleMode mode, const LmnTensor *x, LmnTensor *y,
                       const LmnUpsampleGeom *g)
{
    g_return_if_fail(x != NULL && y != NULL && x->backend == y->backend);
    g_return_if_fail(mode == LMN_UPSAMPLE_NEAREST || mode == LMN_UPSAMPLE_BILINEAR);
    g_return_if_fail(upsample_geom_ok(g, x, y));
    upsample_dispatch(y->backend, FALSE, mode, x, y, g);
}

void lmn_op_upsample2d_backward(LmnUpsampleMode mode, const LmnTensor *dy, LmnTensor *dx,
                                const LmnUpsampleGeom *g)
{
    g_return_if_fail(dy != NULL && dx != NULL && dy->backend == dx->backend);
    g_return_if_fail(mode == LMN_UPSAMPLE_NEAREST || mode == LMN_UPSAMPLE_BILINEAR);
    g_return_if_fail(upsample_geom_ok(g, dx, dy));
    upsample_dispatch(dx->backend, TRUE, mode, dy, dx, g);
}
