/* Lamina — op dispatch.
 *
 * The hot path: every op checks, in O(1), that its tensors share one backend and that the sizes
 * agree, then calls the backend's vtable member.  Required members were checked once when the
 * backend was opened (backend.c), so nothing here tests for NULL.  No allocation, no locking.
 */
#include "backend-private.h"

#include <lamina/ops.h>
#include <lamina/plugin.h>

#define NUMEL(t) lmn_shape_numel(&(t)->shape)
#define SAME_BACKEND(a, b) ((a)->backend == (b)->backend)

void lmn_op_fill(LmnTensor *t, float value)
{
    g_return_if_fail(t != NULL && t->backend != NULL);
    LmnBackend *be = t->backend;
    be->vtable->fill(be->context, t, value);
}

void lmn_op_copy(LmnTensor *dst, const LmnTensor *src)
{
    g_return_if_fail(dst != NULL && src != NULL && dst->backend != NULL);
    g_return_if_fail(SAME_BACKEND(dst, src));
    g_return_if_fail(lmn_tensor_nbytes(dst) == lmn_tensor_nbytes(src));
    /* Onto the same bytes (a reshaping layer whose output is its input's memory): nothing. */
    if (dst->buffer == src->buffer && dst->offset == src->offset)
        return;
    LmnBackend *be = dst->backend;
    be->vtable->copy(be->context, dst, src);
}

/* Whether @t holds the @batch matrices of @rows x @cols that @offset and @stride address. */
static inline gboolean gemm_operand_fits(const LmnTensor *t, gint64 offset, gint64 stride,
                                         gint64 batch, gint64 rows, gint64 cols)
{
    if (offset < 0 || stride < 0 || t->dtype != LMN_DTYPE_F32)
        return FALSE;
    if (rows == 0 || cols == 0)
        return TRUE;
    return offset + (batch - 1) * stride + rows * cols <= NUMEL(t);
}

gboolean lmn_gemm_args_ok(const LmnGemm *g)
{
    g_return_val_if_fail(g != NULL && g->a != NULL && g->b != NULL && g->c != NULL, FALSE);
    g_return_val_if_fail(g->c->backend != NULL, FALSE);
    g_return_val_if_fail(SAME_BACKEND(g->a, g->c) && SAME_BACKEND(g->b, g->c), FALSE);
    g_return_val_if_fail(g->m >= 0 && g->n >= 0 && g->k >= 0 && g->batch >= 0, FALSE);
    gint64 batch = g->batch > 1 ? g->batch : 1;
    g_return_val_if_fail(gemm_operand_fits(g->a, g->a_offset, g->stride_a, batch, g->m, g->k),
                         FALSE);
    g_return_val_if_fail(gemm_operand_fits(g->b, g->b_offset, g->stride_b, batch, g->k, g->n),
                         FALSE);
    g_return_val_if_fail(gemm_operand_fits(g->c, g->c_offset, g->stride_c, batch, g->m, g->n),
                         FALSE);
    return TRUE;
}

void lmn_op_gemm(const LmnGemm *g)
{
    if (!lmn_gemm_args_ok(g))
        return;
    LmnBackend *be = g->c->backend;
    be->vtable->gemm(be->context, g);
}

void lmn_op_bias_add(LmnTensor *y, const LmnTensor *bias, gint64 outer, gint64 channels,
                     gint64 inner)
{
    g_return_if_fail(y != NULL && bias != NULL && y->backend != NULL);
    g_return_if_fail(SAME_BACKEND(y, bias));
    g_return_if_fail(y->dtype == LMN_DTYPE_F32 && bias->dtype == LMN_DTYPE_F32);
    g_return_if_fail(outer >= 0 && channels >= 0 && inner >= 0);
    g_return_if_fail(NUMEL(y) == outer * channels * inner && NUMEL(bias) == channels);
    LmnBackend *be = y->backend;
    be->vtable->bias_add(be->context, y, bias, outer, channels, inner);
}

void lmn_op_bias_grad(LmnTensor *db, const LmnTensor *dy, gint64 outer, gint64 channels,
                      gint64 inner, float beta)
{
    g_return_if_fail(db != NULL && dy != NULL && db->backend != NULL);
    g_return_if_fail(SAME_BACKEND(db, dy));
    g_return_if_fail(db->dtype == LMN_DTYPE_F32 && dy->dtype == LMN_DTYPE_F32);
    g_return_if_fail(outer >= 0 && channels >= 0 && inner >= 0);
    g_return_if_fail(NUMEL(dy) == outer * channels * inner && NUMEL(db) == channels);
    LmnBackend *be = db->backend;
    be->vtable->bias_grad(be->context, db, dy, outer, channels, inner, beta);
}

void lmn_op_unary(LmnUnaryOp op, const LmnTensor *x, LmnTensor *y, float alpha)
{
    g_return_if_fail(x != NULL && y != NULL && y->backend != NULL);
    g_return_if_fail((guint) op < LMN_UNARY_COUNT);
    g_return_if_fail(SAME_BACKEND(x, y));
    g_return_if_fail(x->dtype == LMN_DTYPE_F32 && y->dtype == LMN_DTYPE_F32);
    g_return_if_fail(NUMEL(x) == NUMEL(y));
    LmnBackend *be = y->backend;
    /* A backend built before ABI 1.3 would not know these functions and write nothing; the
     * ABI 1.3 vtable block (clamp_backward is in it) says it does. */
    if (op >= LMN_UNARY_SQRT && !LMN_VTABLE_HAS(be->vtable, clamp_backward)) {
        lmn_backend_record_unsupported(be, "unary (an ABI 1.3 function)");
        return;
    }
    be->vtable->unary(be->context, op, x, y, alpha);
}

void lmn_op_unary_backward(LmnUnaryOp op, const LmnTensor *x, const LmnTensor *y,
                           const LmnTensor *dy, LmnTensor *dx, float alpha)
{
    g_return_if_fail(x != NULL && y != NULL && dy != NULL && dx != NULL);
    g_return_if_fail(dx->backend != NULL);
    g_return_if_fail((guint) op < LMN_UNARY_COUNT);
    g_return_if_fail(SAME_BACKEND(x, dx) && SAME_BACKEND(y, dx) && SAME_BACKEND(dy, dx));
    g_return_if_fail(x->dtype == LMN_DTYPE_F32 && y->dtype == LMN_DTYPE_F32 &&
                     dy->dtype == LMN_DTYPE_F32 && dx->dtype == LMN_DTYPE_F32);
    gint64 n = NUMEL(dx);
    g_return_if_fail(NUMEL(x) == n && NUMEL(y) == n && NUMEL(dy) == n);
    LmnBackend *be = dx->backend;
    if (op >= LMN_UNARY_SQRT && !LMN_VTABLE_HAS(be->vtable, clamp_backward)) {
        lmn_backend_record_unsupported(be, "unary_backward (an ABI 1.3 function)");
        return;
    }
    be->vtable->unary_backward(be->context, op, x, y, dy, dx, alpha);
}

void lmn_op_binary(LmnBinaryOp op, const LmnTensor *a, const LmnTensor *b, LmnTensor *out)
{
    g_return_if_fail(a != NULL && b != NULL && out != NULL && out->backend != NULL);
    g_return_if_fail((guint) op < LMN_BINARY_COUNT);
    g_return_if_fail(SAME_BACKEND(a, out) && SAME_BACKEND(b, out));
    g_return_if_fail(a->dtype == LMN_DTYPE_F32 && b->dtype == LMN_DTYPE_F32 &&
                     out->dtype == LMN_DTYPE_F32);
    g_return_if_fail(NUMEL(a) == NUMEL(out) && NUMEL(b) == NUMEL(out));
    if (op > LMN_BINARY_MUL) {
        /* The binary member predates these functions: they run as a one-axis broadcast. */
        LmnBroadcast bc = {.struct_size = sizeof bc, .ndim = 1};
        bc.a[0] = bc.b[0] = bc.out[0] = NUMEL(out);
        lmn_op_binary_broadcast(op, a, b, out, &bc);
        return;
    }
    LmnBackend *be = out->backend;
    be->vtable->binary(be->context, op, a, b, out);
}

void lmn_op_axpby(float alpha, const LmnTensor *x, float beta, LmnTensor *y)
{
    g_return_if_fail(x != NULL && y != NULL && y->backend != NULL);
    g_return_if_fail(SAME_BACKEND(x, y));
    g_return_if_fail(x->dtype == LMN_DTYPE_F32 && y->dtype == LMN_DTYPE_F32);
    g_return_if_fail(NUMEL(x) == NUMEL(y));
    LmnBackend *be = y->backend;
    be->vtable->axpby(be->context, alpha, x, beta, y);
}

void lmn_op_reduce(LmnReduceOp op, const LmnTensor *x, LmnTensor *out, float alpha, float beta)
{
    g_return_if_fail(x != NULL && out != NULL && out->backend != NULL);
    g_return_if_fail((guint) op < LMN_REDUCE_COUNT);
    g_return_if_fail(SAME_BACKEND(x, out));
    g_return_if_fail(x->dtype == LMN_DTYPE_F32 && out->dtype == LMN_DTYPE_F32);
    g_return_if_fail(NUMEL(out) == 1);
    LmnBackend *be = out->backend;
    be->vtable->reduce(be->context, op, x, out, alpha, beta);
}

/* Rows of a [N, K] logits tensor: its first dimension (a 1-D tensor is one row). */
static inline gint64 logit_rows(const LmnTensor *logits)
{
    return logits->shape.ndim >= 2 ? logits->shape.dims[0] : 1;
}

/* The arguments lmn_op_softmax_xent documents (each failure a critical). */
static gboolean xent_args_ok(const LmnTensor *logits, const LmnTensor *labels,
                             const LmnTensor *probs, const LmnTensor *loss)
{
    g_return_val_if_fail(logits != NULL && labels != NULL && probs != NULL && loss != NULL, FALSE);
    g_return_val_if_fail(logits->backend != NULL, FALSE);
    g_return_val_if_fail(SAME_BACKEND(labels, logits) && SAME_BACKEND(probs, logits) &&
                             SAME_BACKEND(loss, logits),
                         FALSE);
    g_return_val_if_fail(logits->dtype == LMN_DTYPE_F32 && labels->dtype == LMN_DTYPE_I32 &&
                             probs->dtype == LMN_DTYPE_F32 && loss->dtype == LMN_DTYPE_F32,
                         FALSE);
    g_return_val_if_fail(NUMEL(labels) == logit_rows(logits) && NUMEL(probs) == NUMEL(logits),
                         FALSE);
    g_return_val_if_fail(NUMEL(loss) == 1, FALSE);
    return TRUE;
}

void lmn_op_softmax_xent(const LmnTensor *logits, const LmnTensor *labels, LmnTensor *probs,
                         LmnTensor *loss, float smoothing)
{
    if (!xent_args_ok(logits, labels, probs, loss))
        return;
    LmnBackend *be = logits->backend;
    be->vtable->softmax_xent(be->context, logits, labels, probs, loss, smoothing);
}

void lmn_op_softmax_xent_grad(const LmnTensor *logits, const LmnTensor *labels, LmnTensor *probs,
                              LmnTensor *loss, float smoothing, LmnTensor *dx, float scale)
{
    if (!xent_args_ok(logits, labels, probs, loss))
        return;
    g_return_if_fail(dx != NULL && SAME_BACKEND(dx, logits));
    g_return_if_fail(dx->dtype == LMN_DTYPE_F32 && NUMEL(dx) == NUMEL(logits));
    g_return_if_fail(dx->buffer != probs->buffer || dx->offset != probs->offset);
    LmnBackend *be = logits->backend;
    if (!LMN_VTABLE_HAS(be->vtable, softmax_xent_grad)) {
        lmn_op_softmax_xent(logits, labels, probs, loss, smoothing);
        lmn_op_softmax_xent_backward(probs, labels, dx, scale, smoothing);
        return;
    }
    be->vtable->softmax_xent_grad(be->context, logits, labels, probs, loss, smoothing, dx, scale);
}

void lmn_op_softmax_xent_backward(const LmnTensor *probs, const LmnTensor *labels, LmnTensor *dx,
                                  float scale, float smoothing)
{
    g_return_if_fail(probs != NULL && labels != NULL && dx != NULL && dx->backend != NULL);
    g_return_if_fail(SAME_BACKEND(probs, dx) && SAME_BACKEND(labels, dx));
    g_return_if_fail(probs->dtype == LMN_DTYPE_F32 && labels->dtype == LMN_DTYPE_I32 &&
                     dx->dtype == LMN_DTYPE_F32);
    g_return_if_fail(NUMEL(labels) == logit_rows(probs) && NUMEL(dx) == NUMEL(probs));
    LmnBackend *be = dx->backend;
    be->vtable->softmax_xent_backward(be->context, probs, labels, dx, scale, smoothing);
}

void lmn_op_count_correct(const LmnTensor *logits, const LmnTensor *labels, LmnTensor *out)
{
    g_return_if_fail(logits != NULL && labels != NULL && out != NULL && out->backend != NULL);
    g_return_if_fail(SAME_BACKEND(logits, out) && SAME_BACKEND(labels, out));
    g_return_if_fail(logits->dtype == LMN_DTYPE_F32 && labels->dtype == LMN_DTYPE_I32);
    g_return_if_fail(NUMEL(labels) == logit_rows(logits) && NUMEL(out) == 1);
    LmnBackend *be = out->backend;
    be->vtable->count_correct(be->context, logits, labels, out);
}

void lmn_op_kernel(const LmnKernelDesc *kernel, gsize n, LmnTensor *const *buffers,
                   const float *scalars)
{
    g_return_if_fail(kernel != NULL && kernel->cpu != NULL);
    g_return_if_fail(kernel->n_buffers >= 1 && kernel->n_buffers <= LMN_KERNEL_MAX_BUFFERS);
    g_return_if_fail(kernel->n_scalars <= LMN_KERNEL_MAX_SCALARS);
    g_return_if_fail(buffers != NULL && buffers[0] != NULL && buffers[0]->backend != NULL);
    g_return_if_fail(scalars != NULL || kernel->n_scalars == 0);
    LmnBackend *be = buffers[0]->backend;
    for (guint i = 1; i < kernel->n_buffers; i++)
        g_return_if_fail(buffers[i] != NULL && buffers[i]->backend == be);
    be->vtable->kernel(be->context, kernel, n, buffers, scalars);
}

/* ---- ABI 1.1 ops: optional vtable members ---- */

/* Dispatches to an optional member, or records that the backend lacks it. */
#define DISPATCH_OPTIONAL(be, member, ...)                                                         \
    do {                                                                                           \
        if (LMN_VTABLE_HAS((be)->vtable, member))                                                 \
            (be)->vtable->member((be)->context, __VA_ARGS__);                                      \
        else                                                                                       \
            lmn_backend_record_unsupported((be), #member);                                         \
    } while (0)

static gboolean geom_ok(const LmnConv2dGeom *g)
{
    return g != NULL && g->batch > 0 && g->channels > 0 && g->height > 0 && g->width > 0 &&
           g->kernel_h > 0 && g->kernel_w > 0 && g->stride_h > 0 && g->stride_w > 0 &&
           g->pad_h >= 0 && g->pad_w >= 0 && g->dilation_h > 0 && g->dilation_w > 0 &&
           g->out_h > 0 && g->out_w > 0;
}

void lmn_op_im2col(const LmnTensor *x, LmnTensor *cols, const LmnConv2dGeom *g)
{
    g_return_if_fail(x != NULL && cols != NULL && SAME_BACKEND(x, cols) && geom_ok(g));
    g_return_if_fail(NUMEL(x) == g->batch * g->channels * g->height * g->width);
    g_return_if_fail(NUMEL(cols) ==
                     g->batch * g->channels * g->kernel_h * g->kernel_w * g->out_h * g->out_w);
    DISPATCH_OPTIONAL(cols->backend, im2col, x, cols, g);
}

void lmn_op_col2im(const LmnTensor *cols, LmnTensor *dx, const LmnConv2dGeom *g)
{
    g_return_if_fail(cols != NULL && dx != NULL && SAME_BACKEND(cols, dx) && geom_ok(g));
    g_return_if_fail(NUMEL(dx) == g->batch * g->channels * g->height * g->width);
    g_return_if_fail(NUMEL(cols) ==
                     g->batch * g->channels * g->kernel_h * g->kernel_w * g->out_h * g->out_w);
    DISPATCH_OPTIONAL(dx->backend, col2im, cols, dx, g);
}

void lmn_op_pool2d(LmnPoolMode mode, const LmnTensor *x, LmnTensor *y, LmnTensor *argmax,
                   const LmnConv2dGeom *g)
{
    g_return_if_fail(x != NULL && y != NULL && SAME_BACKEND(x, y) && geom_ok(g));
    g_return_if_fail(mode != LMN_POOL_MAX || argmax != NULL);
    g_return_if_fail(NUMEL(y) == g->batch * g->channels * g->out_h * g->out_w);
    DISPATCH_OPTIONAL(y->backend, pool2d, mode, x, y, argmax, g);
}

void lmn_op_pool2d_backward(LmnPoolMode mode, const LmnTensor *dy, const LmnTensor *argmax,
                            LmnTensor *dx, const LmnConv2dGeom *g)
{
    g_return_if_fail(dy != NULL && dx != NULL && SAME_BACKEND(dy, dx) && geom_ok(g));
    g_return_if_fail(mode != LMN_POOL_MAX || argmax != NULL);
    DISPATCH_OPTIONAL(dx->backend, pool2d_backward, mode, dy, argmax, dx, g);
}

void lmn_op_batchnorm_stats(const LmnTensor *x, LmnTensor *mean, LmnTensor *var, gint64 outer,
                            gint64 channels, gint64 inner)
{
    g_return_if_fail(x != NULL && mean != NULL && var != NULL && SAME_BACKEND(x, mean));
    g_return_if_fail(NUMEL(x) == outer * channels * inner && NUMEL(mean) == channels &&
                     NUMEL(var) == channels);
    DISPATCH_OPTIONAL(x->backend, batchnorm_stats, x, mean, var, outer, channels, inner);
}

void lmn_op_batchnorm_forward(const LmnTensor *x, const LmnTensor *mean, const LmnTensor *var,
                              const LmnTensor *weight, const LmnTensor *bias, LmnTensor *y,
                              float eps, gint64 outer, gint64 channels, gint64 inner)
{
    g_return_if_fail(x != NULL && mean != NULL && var != NULL && y != NULL);
    g_return_if_fail(NUMEL(x) == outer * channels * inner && NUMEL(y) == NUMEL(x));
    DISPATCH_OPTIONAL(y->backend, batchnorm_forward, x, mean, var, weight, bias, y, eps, outer,
                      channels, inner);
}

void lmn_op_batchnorm_backward(const LmnTensor *x, const LmnTensor *dy, const LmnTensor *mean,
                               const LmnTensor *var, const LmnTensor *weight, LmnTensor *dx,
                               LmnTensor *dweight, LmnTensor *dbias, float eps, gint64 outer,
                               gint64 channels, gint64 inner)
{
    g_return_if_fail(x != NULL && dy != NULL && mean != NULL && var != NULL && dx != NULL);
    g_return_if_fail(NUMEL(x) == outer * channels * inner && NUMEL(dx) == NUMEL(x));
    DISPATCH_OPTIONAL(dx->backend, batchnorm_backward, x, dy, mean, var, weight, dx, dweight,
                      dbias, eps, outer, channels, inner);
}

void lmn_op_dropout(const LmnTensor *x, LmnTensor *y, LmnTensor *mask, float p, guint64 seed,
                    guint64 stream)
{
    g_return_if_fail(x != NULL && y != NULL && mask != NULL && SAME_BACKEND(x, y));
    g_return_if_fail(p >= 0.0f && p < 1.0f);
    g_return_if_fail(NUMEL(x) == NUMEL(y) && NUMEL(mask) == NUMEL(x));
    DISPATCH_OPTIONAL(y->backend, dropout, x, y, mask, p, seed, stream);
}

void lmn_op_random_normal(LmnTensor *t, float mean, float std, guint64 seed, guint64 stream)
{
    g_return_if_fail(t != NULL && t->dtype == LMN_DTYPE_F32);
    DISPATCH_OPTIONAL(t->backend, random_normal, t, mean, std, seed, stream);
}

void lmn_op_clamp(LmnTensor *t, float lo, float hi)
{
    g_return_if_fail(t != NULL && t->dtype == LMN_DTYPE_F32 && lo <= hi);
    DISPATCH_OPTIONAL(t->backend, clamp, t, lo, hi);
}

void lmn_op_softmax(const LmnTensor *x, LmnTensor *y, gint64 rows, gint64 cols)
{
    g_return_if_fail(x != NULL && y != NULL && SAME_BACKEND(x, y));
    g_return_if_fail(NUMEL(x) == rows * cols && NUMEL(y) == rows * cols);
    DISPATCH_OPTIONAL(y->backend, softmax, x, y, rows, cols);
}

void lmn_op_softmax_backward(const LmnTensor *y, const LmnTensor *dy, LmnTensor *dx, gint64 rows,
                             gint64 cols)
{
    g_return_if_fail(y != NULL && dy != NULL && dx != NULL && SAME_BACKEND(y, dx));
    g_return_if_fail(NUMEL(y) == rows * cols && NUMEL(dx) == rows * cols);
    DISPATCH_OPTIONAL(dx->backend, softmax_backward, y, dy, dx, rows, cols);
}

void lmn_op_copy_block(LmnTensor *dst, gint64 dst_offset, gint64 dst_stride, const LmnTensor *src,
                       gint64 src_offset, gint64 src_stride, gint64 rows, gint64 cols,
                       float beta)
{
    g_return_if_fail(dst != NULL && src != NULL && SAME_BACKEND(dst, src));
    g_return_if_fail(rows >= 0 && cols >= 0 && dst_offset >= 0 && src_offset >= 0);
    if (rows == 0 || cols == 0)
        return;
    g_return_if_fail(dst_offset + (rows - 1) * dst_stride + cols <= NUMEL(dst));
    g_return_if_fail(src_offset + (rows - 1) * src_stride + cols <= NUMEL(src));
    DISPATCH_OPTIONAL(dst->backend, copy_block, dst, dst_offset, dst_stride, src, src_offset,
                      src_stride, rows, cols, beta);
}

void lmn_op_gather_rows(const LmnTensor *table, const LmnTensor *indices, LmnTensor *out,
                        gint64 n, gint64 dim)
{
    g_return_if_fail(table != NULL && indices != NULL && out != NULL && SAME_BACKEND(table, out));
    g_return_if_fail(NUMEL(indices) >= n && NUMEL(out) == n * dim && NUMEL(table) % dim == 0);
    DISPATCH_OPTIONAL(out->backend, gather_rows, table, indices, out, n, dim);
}

void lmn_op_scatter_add_rows(LmnTensor *table_grad, const LmnTensor *indices,
                             const LmnTensor *src, gint64 n, gint64 dim)
{
    g_return_if_fail(table_grad != NULL && indices != NULL && src != NULL);
    g_return_if_fail(NUMEL(indices) >= n && NUMEL(src) == n * dim &&
                     NUMEL(table_grad) % dim == 0);
    DISPATCH_OPTIONAL(table_grad->backend, scatter_add_rows, table_grad, indices, src, n, dim);
}

void lmn_op_bce_logits(const LmnTensor *x, const LmnTensor *target, LmnTensor *loss)
{
    g_return_if_fail(x != NULL && target != NULL && loss != NULL && SAME_BACKEND(x, loss));
    g_return_if_fail(NUMEL(x) == NUMEL(target) && NUMEL(loss) == 1);
    DISPATCH_OPTIONAL(loss->backend, bce_logits, x, target, loss);
}

void lmn_op_bce_logits_backward(const LmnTensor *x, const LmnTensor *target, LmnTensor *dx,
                                float scale)
{
    g_return_if_fail(x != NULL && target != NULL && dx != NULL && SAME_BACKEND(x, dx));
    g_return_if_fail(NUMEL(x) == NUMEL(target) && NUMEL(dx) == NUMEL(x));
    DISPATCH_OPTIONAL(dx->backend, bce_logits_backward, x, target, dx, scale);
}
