/* Lamina — the op set: the contract between layers/optimizers and backends.
 *
 * Every op exists on every backend and has a CPU-vs-backend test.  Ops run on the backend that
 * owns their tensors (all tensors of one op must share a backend).  Ops do not return errors:
 * a device backend records work asynchronously, so a failure surfaces at the next
 * lmn_backend_synchronize() or lmn_tensor_read(), which report the first deferred error.
 * Shapes are checked by the caller (the layer); ops assume contiguous row-major tensors.
 */
#pragma once

#include <lamina/kernel.h>
#include <lamina/tensor.h>

G_BEGIN_DECLS

/** LmnUnaryOp: element-wise functions with their derivatives.  Append only. */
typedef enum {
    LMN_UNARY_IDENTITY = 0,
    LMN_UNARY_RELU = 1,
    LMN_UNARY_SIGMOID = 2,
    LMN_UNARY_TANH = 3,
    LMN_UNARY_LEAKY_RELU = 4, /* alpha = negative slope */
    LMN_UNARY_ELU = 5,        /* alpha */
    LMN_UNARY_SOFTPLUS = 6,   /* alpha = beta; threshold 20 as in PyTorch */
    LMN_UNARY_GELU = 7,       /* exact erf form */
    LMN_UNARY_COUNT
} LmnUnaryOp;

/** LmnBinaryOp: element-wise binary functions of equally shaped tensors.  Append only. */
typedef enum {
    LMN_BINARY_ADD = 0,
    LMN_BINARY_SUB = 1,
    LMN_BINARY_MUL = 2,
    LMN_BINARY_COUNT
} LmnBinaryOp;

/** LmnReduceOp: full reductions to one scalar.  Append only. */
typedef enum {
    LMN_REDUCE_SUM = 0,
    LMN_REDUCE_SUM_SQUARES = 1,
    LMN_REDUCE_COUNT
} LmnReduceOp;

/**
 * LmnGemm:
 * C = alpha * op(A) * op(B) + beta * C, with op(X) = X or X^T, all row-major and packed:
 * op(A) is [m, k], op(B) is [k, n], C is [m, n].  @batch > 1 repeats it with the element strides
 * given (0 stride broadcasts an operand).  Offsets address sub-matrices of larger tensors.
 * beta == 0 overwrites C without reading it (NaN or garbage in C is ignored, as in BLAS).
 */
typedef struct {
    guint32 struct_size;
    gboolean trans_a, trans_b;
    gint64 m, n, k;
    float alpha, beta;
    const LmnTensor *a;
    const LmnTensor *b;
    LmnTensor *c;
    gint64 a_offset, b_offset, c_offset; /* in elements */
    gint64 batch;                        /* 0 or 1 = not batched */
    gint64 stride_a, stride_b, stride_c; /* in elements, between batch entries */
    gpointer reserved[4];
} LmnGemm;

/** lmn_op_fill: sets every element of @t (f32 or i32) to @value. */
void lmn_op_fill(LmnTensor *t, float value);
/** lmn_op_copy: copies @src into @dst (equal byte sizes; shapes may differ). */
void lmn_op_copy(LmnTensor *dst, const LmnTensor *src);
/** lmn_op_gemm: general matrix multiply, see #LmnGemm. */
void lmn_op_gemm(const LmnGemm *g);
/**
 * lmn_op_bias_add:
 * y viewed as [outer, channels, inner]: y[o, c, i] += bias[c].  Dense layers use inner = 1,
 * convolutions inner = H*W.
 */
void lmn_op_bias_add(LmnTensor *y, const LmnTensor *bias, gint64 outer, gint64 channels,
                     gint64 inner);
/**
 * lmn_op_bias_grad:
 * db[c] = beta * db[c] + sum over o, i of dy[o, c, i]; beta == 0 overwrites db without
 * reading it, as in BLAS.
 */
void lmn_op_bias_grad(LmnTensor *db, const LmnTensor *dy, gint64 outer, gint64 channels,
                      gint64 inner, float beta);
/** lmn_op_unary: y = f(x) element-wise; @alpha parameterises some functions. @y may be @x. */
void lmn_op_unary(LmnUnaryOp op, const LmnTensor *x, LmnTensor *y, float alpha);
/**
 * lmn_op_unary_backward:
 * dx = dy * f'(x), using whichever of @x (input) and @y (saved output) the function needs; both
 * must be given.  @dx may be @dy.
 */
void lmn_op_unary_backward(LmnUnaryOp op, const LmnTensor *x, const LmnTensor *y,
                           const LmnTensor *dy, LmnTensor *dx, float alpha);
/** lmn_op_binary: out = a OP b element-wise (equal element counts). @out may alias an input. */
void lmn_op_binary(LmnBinaryOp op, const LmnTensor *a, const LmnTensor *b, LmnTensor *out);
/**
 * lmn_op_axpby: y = alpha * x + beta * y element-wise; beta == 0 overwrites y without reading it
 * (as in BLAS).  @x may be @y.
 */
void lmn_op_axpby(float alpha, const LmnTensor *x, float beta, LmnTensor *y);
/**
 * lmn_op_reduce:
 * out[0] = beta * out[0] + alpha * reduce(x), @out a one-element f32 tensor (beta == 0 overwrites
 * it without reading it).  Sums accumulate in double so the result does not depend on thread
 * count.
 */
void lmn_op_reduce(LmnReduceOp op, const LmnTensor *x, LmnTensor *out, float alpha, float beta);
/**
 * lmn_op_softmax_xent:
 * For logits [N, K] and i32 labels [N]: probs = softmax(logits) row-wise, and
 * loss[0] = mean over rows of the cross-entropy against the label smoothed by @smoothing
 * (target = (1 - s) * onehot + s / K, PyTorch's definition).
 * A label outside [0, K) makes the backend record LMN_BACKEND_ERROR_FAILED-free behaviour: the
 * data layer validates labels before they reach an op, so ops may assume they are in range.
 */
void lmn_op_softmax_xent(const LmnTensor *logits, const LmnTensor *labels, LmnTensor *probs,
                         LmnTensor *loss, float smoothing);
/**
 * lmn_op_softmax_xent_backward:
 * dx = scale * (probs - target) with target as above; the layer passes scale = 1 / N for a mean.
 */
void lmn_op_softmax_xent_backward(const LmnTensor *probs, const LmnTensor *labels,
                                  LmnTensor *dx, float scale, float smoothing);
/**
 * lmn_op_count_correct:
 * out[0] += number of rows of @logits [N, K] whose argmax (first maximum) equals the i32 label.
 * @out is a one-element f32 or i32 tensor.
 */
void lmn_op_count_correct(const LmnTensor *logits, const LmnTensor *labels, LmnTensor *out);
/**
 * lmn_op_kernel:
 * Runs a plugin kernel over indices [0, @n) with @buffers bound in order and @scalars as its
 * scalar block.  Backends without a usable variant run the kernel's CPU function (on host
 * copies for device backends, with a one-time warning naming the kernel).
 */
void lmn_op_kernel(const LmnKernelDesc *kernel, gsize n, LmnTensor *const *buffers,
                   const float *scalars);

G_END_DECLS
