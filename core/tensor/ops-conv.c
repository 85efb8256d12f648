/* Lamina — the ABI 1.4 convolution ops (lamina/ops.h): the backend's native convolution when it
 * has one, else im2col + GEMM through the caller's scratch (the path conv layers always took).
 */
#include "backend-private.h"

#include <lamina/ops.h>
#include <lamina/plugin.h>

#define NUMEL(t) lmn_shape_numel(&(t)->shape)

gboolean lmn_backend_has_native_conv2d(LmnBackend *backend)
{
    g_return_val_if_fail(backend != NULL, FALSE);
    const LmnBackendVTable *v = backend->vtable;
    return LMN_VTABLE_HAS(v, conv2d_forward) && LMN_VTABLE_HAS(v, conv2d_backward_data) &&
           LMN_VTABLE_HAS(v, conv2d_backward_weights);
}

static gboolean desc_ok(const LmnConv2dDesc *d)
{
    return d != NULL && d->n > 0 && d->c > 0 && d->h > 0 && d->w > 0 && d->k > 0 && d->groups > 0 &&
           d->c % d->groups == 0 && d->k % d->groups == 0 && d->kernel_h > 0 && d->kernel_w > 0 &&
           d->stride_h > 0 && d->stride_w > 0 && d->pad_h >= 0 && d->pad_w >= 0 &&
           d->dilation_h > 0 && d->dilation_w > 0 && d->out_h > 0 && d->out_w > 0;
}

/* Shapes of x, weight and y agree with @d. */
static gboolean shapes_ok(const LmnConv2dDesc *d, const LmnTensor *x, const LmnTensor *w,
                          const LmnTensor *y)
{
    return desc_ok(d) && x != NULL && w != NULL && y != NULL && x->backend == w->backend &&
           x->backend == y->backend && NUMEL(x) == d->n * d->c * d->h * d->w &&
           NUMEL(w) == d->k * (d->c / d->groups) * d->kernel_h * d->kernel_w &&
           NUMEL(y) == d->n * d->k * d->out_h * d->out_w;
}

gint64 lmn_op_conv2d_cols_numel(LmnBackend *backend, const LmnConv2dDesc *d)
{
    g_return_val_if_fail(backend != NULL && desc_ok(d), 0);
    if (lmn_backend_has_native_conv2d(backend))
        return 0;
    return d->n * d->c * d->kernel_h * d->kernel_w * d->out_h * d->out_w;
}

gboolean lmn_op_conv2d_prepare(LmnBackend *backend, const LmnConv2dDesc *d, GError **error)
{
    g_return_val_if_fail(backend != NULL && desc_ok(d), FALSE);
    const LmnBackendVTable *v = backend->vtable;
    if (!lmn_backend_has_native_conv2d(backend) || !LMN_VTABLE_HAS(v, conv2d_prepare))
        return TRUE;
    return v->conv2d_prepare(backend->context, d, error);
}

static LmnConv2dGeom geom_of(const LmnConv2dDesc *d)
{
    return (LmnConv2dGeom){.struct_size = sizeof(LmnConv2dGeom),
                           .batch = d->n,
                           .channels = d->c,
                           .height = d->h,
                           .width = d->w,
                           .kernel_h = d->kernel_h,
                           .kernel_w = d->kernel_w,
                           .stride_h = d->stride_h,
                           .stride_w = d->stride_w,
                           .pad_h = d->pad_h,
                           .pad_w = d->pad_w,
                           .dilation_h = d->dilation_h,
                           .dilation_w = d->dilation_w,
                           .out_h = d->out_h,
                           .out_w = d->out_w};
}

/* The per-group GEMM sizes: cols rows per group (ckk), output channels per group (kg), pixels. */
typedef struct {
    gint64 ckk, kg, l;
} GroupDims;

static GroupDims dims_of(const LmnConv2dDesc *d)
{
    return (GroupDims){(d->c / d->groups) * d->kernel_h * d->kernel_w, d->k / d->groups,
                       d->out_h * d->out_w};
}

static gboolean cols_ok(LmnBackend *be, const LmnConv2dDesc *d, const LmnTensor *cols)
{
    return cols != NULL && cols->backend == be && NUMEL(cols) == lmn_op_conv2d_cols_numel(be, d);
}

void lmn_op_conv2d_forward(const LmnConv2dDesc *d, const LmnTensor *x, const LmnTensor *weight,
                           LmnTensor *y, LmnTensor *cols)
{
    g_return_if_fail(shapes_ok(d, x, weight, y));
    LmnBackend *be = y->backend;
    if (lmn_backend_has_native_conv2d(be)) {
        be->vtable->conv2d_forward(be->context, d, x, weight, y);
        return;
    }
    g_return_if_fail(cols_ok(be, d, cols));
    LmnConv2dGeom g = geom_of(d);
    lmn_op_im2col(x, cols, &g);
    GroupDims s = dims_of(d);
    /* y[n, group] = weight[group] [kg, ckk] x cols[n, group] [ckk, l], batched over images. */
    for (gint64 gi = 0; gi < d->groups; gi++) {
        LmnGemm gm = {.struct_size = sizeof(LmnGemm),
                      .m = s.kg,
                      .n = s.l,
                      .k = s.ckk,
                      .alpha = 1.0f,
                      .beta = 0.0f,
                      .a = weight,
                      .b = cols,
                      .c = y,
                      .a_offset = gi * s.kg * s.ckk,
                      .b_offset = gi * s.ckk * s.l,
                      .c_offset = gi * s.kg * s.l,
                      .batch = d->n,
                      .stride_a = 0,
                      .stride_b = d->groups * s.ckk * s.l,
                      .stride_c = d->k * s.l};
        lmn_op_gemm(&gm);
    }
}

void lmn_op_conv2d_backward_data(const LmnConv2dDesc *d, const LmnTensor *dy,
                                 const LmnTensor *weight, LmnTensor *dx, LmnTensor *cols)
{
    g_return_if_fail(shapes_ok(d, dx, weight, dy));
    LmnBackend *be = dx->backend;
    if (lmn_backend_has_native_conv2d(be)) {
        be->vtable->conv2d_backward_data(be->context, d, dy, weight, dx);
        return;
    }
    g_return_if_fail(cols_ok(be, d, cols));
    GroupDims s = dims_of(d);
    /* dcols[n, group] = weight[group]^T [ckk, kg] x dy[n, group] [kg, l], then col2im. */
    for (gint64 gi = 0; gi < d->groups; gi++) {
        LmnGemm gm = {.struct_size = sizeof(LmnGemm),
                      .trans_a = TRUE,
                      .m = s.ckk,
                      .n = s.l,
                      .k = s.kg,
                      .alpha = 1.0f,
                      .beta = 0.0f,
                      .a = weight,
                      .b = dy,
                      .c = cols,
                      .a_offset = gi * s.kg * s.ckk,
                      .b_offset = gi * s.kg * s.l,
                      .c_offset = gi * s.ckk * s.l,
                      .batch = d->n,
                      .stride_a = 0,
                      .stride_b = d->k * s.l,
                      .stride_c = d->groups * s.ckk * s.l};
        lmn_op_gemm(&gm);
    }
    LmnConv2dGeom g = geom_of(d);
    lmn_op_col2im(cols, dx, &g);
}

void lmn_op_conv2d_backward_weights(const LmnConv2dDesc *d, const LmnTensor *x, const LmnTensor *dy,
                                    LmnTensor *dweight, float beta, LmnTensor *cols)
{
    g_return_if_fail(shapes_ok(d, x, dweight, dy));
    g_return_if_fail(beta == 0.0f || beta == 1.0f);
    LmnBackend *be = dweight->backend;
    if (lmn_backend_has_native_conv2d(be)) {
        be->vtable->conv2d_backward_weights(be->context, d, x, dy, dweight, beta);
        return;
    }
    g_return_if_fail(cols_ok(be, d, cols));
    LmnConv2dGeom g = geom_of(d);
    lmn_op_im2col(x, cols, &g);
    GroupDims s = dims_of(d);
    /* dweight[group] += dy[n, group] [kg, l] x cols[n, group]^T [l, ckk], image by image so the
     * sum over the batch runs in a fixed order. */
    for (gint64 n = 0; n < d->n; n++)
        for (gint64 gi = 0; gi < d->groups; gi++) {
            LmnGemm gm = {.struct_size = sizeof(LmnGemm),
                          .trans_b = TRUE,
                          .m = s.kg,
                          .n = s.ckk,
                          .k = s.l,
                          .alpha = 1.0f,
                          .beta = n == 0 ? beta : 1.0f,
                          .a = dy,
                          .b = cols,
                          .c = dweight,
                          .a_offset = (n * d->k + gi * s.kg) * s.l,
                          .b_offset = (n * d->groups + gi) * s.ckk * s.l,
                          .c_offset = gi * s.kg * s.ckk};
            lmn_op_gemm(&gm);
        }
}
