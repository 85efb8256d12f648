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
    /* ABI 1.1 */
    LMN_UNARY_SIGN = 8,    /* -1, 0, 1; derivative 0 (L1 penalties) */
    LMN_UNARY_ABS = 9,     /* derivative sign(x) */
    LMN_UNARY_SQUARE = 10, /* derivative 2x */
    /* ABI 1.3: a backend whose vtable predates the ABI 1.3 block gets
     * LMN_BACKEND_ERROR_UNSUPPORTED for these instead of a silent no-op. */
    LMN_UNARY_SQRT = 11,       /* derivative 1 / (2 y) */
    LMN_UNARY_RSQRT = 12,      /* 1 / sqrt(x); derivative -y^3 / 2 */
    LMN_UNARY_RECIPROCAL = 13, /* derivative -y^2 */
    LMN_UNARY_EXP = 14,        /* derivative y */
    LMN_UNARY_LOG = 15,        /* natural log; derivative 1 / x */
    LMN_UNARY_SILU = 16,       /* x sigmoid(x) */
    LMN_UNARY_MISH = 17,       /* x tanh(softplus(x)), softplus threshold 20 as in PyTorch */
    LMN_UNARY_COUNT
} LmnUnaryOp;

/** LmnBinaryOp: element-wise binary functions of equally shaped tensors.  Append only. */
typedef enum {
    LMN_BINARY_ADD = 0,
    LMN_BINARY_SUB = 1,
    LMN_BINARY_MUL = 2,
    /* ABI 1.3: lmn_op_binary runs these through the backend's binary_broadcast member. */
    LMN_BINARY_DIV = 3,
    LMN_BINARY_MAXIMUM = 4, /* NaN propagates, as torch.maximum */
    LMN_BINARY_MINIMUM = 5, /* NaN propagates, as torch.minimum */
    LMN_BINARY_COUNT
} LmnBinaryOp;

/** LmnReduceOp: full reductions to one scalar.  Append only. */
typedef enum {
    LMN_REDUCE_SUM = 0,
    LMN_REDUCE_SUM_SQUARES = 1,
    LMN_REDUCE_SUM_ABS = 2, /* ABI 1.1: L1 norms */
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
/**
 * lmn_op_copy: copies @src into @dst (equal byte sizes; shapes may differ).  A copy onto the
 * same bytes (@dst and @src views of one buffer at one offset) does nothing; other overlaps are
 * not allowed.
 */
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
 * lmn_op_softmax_xent_grad:
 * lmn_op_softmax_xent(@logits, @labels, @probs, @loss, @smoothing) and then
 * lmn_op_softmax_xent_backward(@probs, @labels, @dx, @scale, @smoothing), with the same results
 * (bit for bit on the CPU backend), in one pass where the backend has it (ABI 1.5): a loss layer
 * whose training forward also writes its input gradient.  @dx (like @logits) must not overlap
 * @probs or @loss.
 */
void lmn_op_softmax_xent_grad(const LmnTensor *logits, const LmnTensor *labels, LmnTensor *probs,
                              LmnTensor *loss, float smoothing, LmnTensor *dx, float scale);
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

/* ---- ABI 1.1: ops for convolutional, normalisation, stochastic and sequence layers and for
 * the training loop's regularisers.  Backends built against ABI 1.0 lack them; the core then
 * records LMN_BACKEND_ERROR_UNSUPPORTED naming the op, reported at the next synchronisation. */

/**
 * LmnConv2dGeom:
 * Geometry shared by im2col/col2im and pooling: input [batch, channels, height, width], kernel,
 * stride, zero padding and dilation per axis, and the output size, which the caller computes as
 * PyTorch does: out = floor((in + 2 pad - dilation (k - 1) - 1) / stride) + 1.
 */
typedef struct {
    guint32 struct_size;
    gint64 batch, channels, height, width;
    gint64 kernel_h, kernel_w;
    gint64 stride_h, stride_w;
    gint64 pad_h, pad_w;
    gint64 dilation_h, dilation_w;
    gint64 out_h, out_w;
    gpointer reserved[4];
} LmnConv2dGeom;

/**
 * lmn_op_im2col:
 * cols [batch, channels * kernel_h * kernel_w, out_h * out_w] from x [batch, channels, height,
 * width]; row (c, i, j) holds x[c, oh * stride - pad + i * dilation, ...], 0 outside the image.
 * A convolution is then one batched GEMM with the weight [out_ch, channels * kh * kw].
 */
void lmn_op_im2col(const LmnTensor *x, LmnTensor *cols, const LmnConv2dGeom *g);
/** lmn_op_col2im: the adjoint of im2col: dx (overwritten) = sum of cols entries per pixel. */
void lmn_op_col2im(const LmnTensor *cols, LmnTensor *dx, const LmnConv2dGeom *g);

/**
 * LmnConv2dDesc:
 * A 2-D convolution (ABI 1.4), PyTorch's nn.Conv2d without bias: x [n, c, h, w], weight
 * [k, c / groups, kernel_h, kernel_w], y [n, k, out_h, out_w] with out computed by the caller as
 * for #LmnConv2dGeom.  c and k are multiples of @groups.
 */
typedef struct {
    guint32 struct_size;
    gint64 n, c, h, w, k;
    gint64 kernel_h, kernel_w;
    gint64 stride_h, stride_w;
    gint64 pad_h, pad_w;
    gint64 dilation_h, dilation_w;
    gint64 groups;
    gint64 out_h, out_w;
    gpointer reserved[4];
} LmnConv2dDesc;

/**
 * lmn_op_conv2d_cols_numel:
 * Returns: the elements of the im2col scratch lmn_op_conv2d_* need for @d when the backend has
 *   no native convolution (lmn_backend_has_native_conv2d()), else 0
 */
gint64 lmn_op_conv2d_cols_numel(LmnBackend *backend, const LmnConv2dDesc *d);
/**
 * lmn_op_conv2d_prepare:
 * @backend: the backend the convolution will run on
 * @d: the convolution, for batches of @d->n images
 * Readies @backend's convolution ops for @d (ABI 1.6), so that their first call at that shape
 * creates nothing: the CPU backend makes its oneDNN primitives, layouts and per-thread scratch
 * here.  A conv layer calls it from its prepare_batch hook (#LmnLayerVTable), which
 * lmn_model_prepare() and lmn_model_plan_batch() run before any step.  Without it, or on a
 * backend without native convolution, the ops make what they need on their first call, as
 * before; the results are the same either way.
 * Returns: FALSE with @error only when the backend cannot run the convolution at all
 */
gboolean lmn_op_conv2d_prepare(LmnBackend *backend, const LmnConv2dDesc *d, GError **error);
/**
 * lmn_op_conv2d_forward:
 * y (overwritten) = conv2d(x, weight).  @cols: f32 scratch of lmn_op_conv2d_cols_numel()
 * elements, or NULL when that is 0 (native convolution).
 */
void lmn_op_conv2d_forward(const LmnConv2dDesc *d, const LmnTensor *x, const LmnTensor *weight,
                           LmnTensor *y, LmnTensor *cols);
/** lmn_op_conv2d_backward_data: dx (overwritten) = the gradient of conv2d's input from dy. */
void lmn_op_conv2d_backward_data(const LmnConv2dDesc *d, const LmnTensor *dy,
                                 const LmnTensor *weight, LmnTensor *dx, LmnTensor *cols);
/**
 * lmn_op_conv2d_backward_weights:
 * dweight = beta * dweight + the gradient of conv2d's weight from x and dy (beta 0 or 1).
 */
void lmn_op_conv2d_backward_weights(const LmnConv2dDesc *d, const LmnTensor *x, const LmnTensor *dy,
                                    LmnTensor *dweight, float beta, LmnTensor *cols);

/** LmnPoolMode: pooling functions.  Append only. */
typedef enum {
    LMN_POOL_MAX = 0,
    LMN_POOL_AVG = 1, /* divides by the kernel area including padding (PyTorch's default) */
} LmnPoolMode;

/**
 * lmn_op_pool2d:
 * y [batch, channels, out_h, out_w] from x by @mode over each window.  For LMN_POOL_MAX,
 * @argmax (i32, like y) receives the flat index h * width + w of each maximum (first one wins;
 * padding never wins); it may be NULL for AVG.  Dilation applies as in PyTorch's MaxPool2d.
 */
void lmn_op_pool2d(LmnPoolMode mode, const LmnTensor *x, LmnTensor *y, LmnTensor *argmax,
                   const LmnConv2dGeom *g);
/** lmn_op_pool2d_backward: dx (overwritten) from dy, routed through @argmax for MAX. */
void lmn_op_pool2d_backward(LmnPoolMode mode, const LmnTensor *dy, const LmnTensor *argmax,
                            LmnTensor *dx, const LmnConv2dGeom *g);

/**
 * lmn_op_batchnorm_stats:
 * Per channel of x viewed as [outer, channels, inner]: mean and biased variance (divided by
 * outer * inner), accumulated in double.
 */
void lmn_op_batchnorm_stats(const LmnTensor *x, LmnTensor *mean, LmnTensor *var, gint64 outer,
                            gint64 channels, gint64 inner);
/**
 * lmn_op_batchnorm_forward:
 * y = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]; @weight and @bias may be NULL
 * (1 and 0).  Used with batch statistics in training and running statistics in evaluation.
 */
void lmn_op_batchnorm_forward(const LmnTensor *x, const LmnTensor *mean, const LmnTensor *var,
                              const LmnTensor *weight, const LmnTensor *bias, LmnTensor *y,
                              float eps, gint64 outer, gint64 channels, gint64 inner);
/**
 * lmn_op_batchnorm_backward:
 * The training-mode gradient (statistics computed from the batch itself): dx overwritten, and
 * dweight, dbias (overwritten; either may be NULL when not affine).  @weight may be NULL: the
 * scale is then 1, as in lmn_op_batchnorm_forward (a backend must accept it; the CPU and Vulkan
 * backends do and are tested with it).  @dx may be @dy.
 */
void lmn_op_batchnorm_backward(const LmnTensor *x, const LmnTensor *dy, const LmnTensor *mean,
                               const LmnTensor *var, const LmnTensor *weight, LmnTensor *dx,
                               LmnTensor *dweight, LmnTensor *dbias, float eps, gint64 outer,
                               gint64 channels, gint64 inner);

/**
 * lmn_op_dropout:
 * mask[i] = u(i) >= p ? 1 / (1 - p) : 0 and y = x * mask, where u(i) is the uniform draw of
 * element i of Philox stream (@seed, @stream): with w = philox4x32(key = seed,
 * ctr = {i / 4 (64-bit, low word first), stream (low word first)})[i % 4], u = (w >> 8) * 2^-24.
 * Every backend produces the same mask.  Backward is y = dy * mask (lmn_op_binary MUL).
 */
void lmn_op_dropout(const LmnTensor *x, LmnTensor *y, LmnTensor *mask, float p, guint64 seed,
                    guint64 stream);
/**
 * lmn_op_random_normal:
 * t[i] = mean + std * z(i), with z(i) from the Philox block at counter i (as for dropout):
 * u1 = ((w0 >> 8) + 1) * 2^-24, u2 = (w1 >> 8) * 2^-24, z = sqrt(-2 ln u1) cos(2 pi u2).
 * Gradient noise and stochastic initialisation on the device use it.
 */
void lmn_op_random_normal(LmnTensor *t, float mean, float std, guint64 seed, guint64 stream);
/** lmn_op_clamp: t = min(max(t, lo), hi) element-wise (gradient clipping by value). */
void lmn_op_clamp(LmnTensor *t, float lo, float hi);

/** lmn_op_softmax: y = softmax of each row of x viewed as [rows, cols] (stable). */
void lmn_op_softmax(const LmnTensor *x, LmnTensor *y, gint64 rows, gint64 cols);
/** lmn_op_softmax_backward: dx = y * (dy - sum(dy * y)) row-wise. */
void lmn_op_softmax_backward(const LmnTensor *y, const LmnTensor *dy, LmnTensor *dx, gint64 rows,
                             gint64 cols);

/**
 * lmn_op_copy_block:
 * dst[dst_offset + r * dst_stride + c] = src[src_offset + r * src_stride + c]
 *                                        + beta * dst[...]  for r < rows, c < cols
 * (element offsets and strides).  Concatenation, splitting and sequence slicing use it.
 */
void lmn_op_copy_block(LmnTensor *dst, gint64 dst_offset, gint64 dst_stride, const LmnTensor *src,
                       gint64 src_offset, gint64 src_stride, gint64 rows, gint64 cols,
                       float beta);

/**
 * lmn_op_gather_rows:
 * out[i, :] = table[idx[i], :] for i < n, table [V, dim]; @indices is f32 (integral values) or
 * i32.  Indices are validated by the layer; out-of-range rows produce zeros.
 */
void lmn_op_gather_rows(const LmnTensor *table, const LmnTensor *indices, LmnTensor *out,
                        gint64 n, gint64 dim);
/** lmn_op_scatter_add_rows: table_grad[idx[i], :] += src[i, :] (the adjoint of gather_rows). */
void lmn_op_scatter_add_rows(LmnTensor *table_grad, const LmnTensor *indices,
                             const LmnTensor *src, gint64 n, gint64 dim);

/**
 * lmn_op_bce_logits:
 * loss[0] = mean over all elements of max(x, 0) - x t + log(1 + exp(-|x|)) (PyTorch's
 * BCEWithLogitsLoss, reduction mean).
 */
void lmn_op_bce_logits(const LmnTensor *x, const LmnTensor *target, LmnTensor *loss);
/** lmn_op_bce_logits_backward: dx = scale * (sigmoid(x) - t). */
void lmn_op_bce_logits_backward(const LmnTensor *x, const LmnTensor *target, LmnTensor *dx,
                                float scale);

/* ---- ABI 1.3: axis reductions, broadcasting binary ops, row normalisation and the hardtanh
 * gradient.  Optional vtable members: a backend built against an older ABI lacks them and the
 * core records LMN_BACKEND_ERROR_UNSUPPORTED naming the op. */

/** LmnAxisReduceOp: reductions over the middle axis of an [outer, axis, inner] view. */
typedef enum {
    LMN_AXIS_SUM = 0,
    LMN_AXIS_MEAN = 1,
    LMN_AXIS_MAX = 2, /* with i32 argmax indices; the first maximum wins, NaN counts as maximum */
    LMN_AXIS_COUNT
} LmnAxisReduceOp;

/**
 * lmn_op_reduce_axis:
 * out[o, i] = reduce over a < @axis of x[o, a, i], x viewed as [@outer, @axis, @inner] and @out
 * as [@outer, @inner].  Sums run in a fixed order (the CPU accumulates in double, Vulkan in
 * float), so results do not depend on the thread count.  For LMN_AXIS_MAX, @indices (i32, like
 * @out) receives the argmax a; it is ignored (may be NULL) otherwise.  @axis must be > 0.
 */
void lmn_op_reduce_axis(LmnAxisReduceOp op, const LmnTensor *x, LmnTensor *out, LmnTensor *indices,
                        gint64 outer, gint64 axis, gint64 inner);
/**
 * lmn_op_reduce_axis_backward:
 * dx (overwritten, [@outer, @axis, @inner]) from dy ([@outer, @inner]): SUM broadcasts dy,
 * MEAN broadcasts dy / axis, MAX routes dy to the argmax in @indices (zeros elsewhere).
 */
void lmn_op_reduce_axis_backward(LmnAxisReduceOp op, const LmnTensor *dy, const LmnTensor *indices,
                                 LmnTensor *dx, gint64 outer, gint64 axis, gint64 inner);

#define LMN_BROADCAST_MAX_DIMS LMN_MAX_DIMS

/**
 * LmnBroadcast:
 * The shapes of a broadcasting binary op, right-aligned to @ndim dims as NumPy aligns them:
 * for every k, a[k] and b[k] are each out[k] or 1, and out[k] = max(a[k], b[k]).  Build it
 * with lmn_broadcast_init(), which rejects incompatible shapes.
 */
typedef struct {
    guint32 struct_size;
    guint32 ndim; /* 1 .. LMN_BROADCAST_MAX_DIMS */
    gint64 a[LMN_BROADCAST_MAX_DIMS];
    gint64 b[LMN_BROADCAST_MAX_DIMS];
    gint64 out[LMN_BROADCAST_MAX_DIMS];
    gpointer reserved[4];
} LmnBroadcast;

/**
 * lmn_broadcast_init:
 * Fills @bc for operands of shapes @a and @b under NumPy's rules (align on the right; sizes
 * equal or 1).  Returns: FALSE with LMN_BACKEND_ERROR_FAILED naming both shapes and the first
 * mismatched dimension when they do not broadcast, or when the output size overflows
 */
gboolean lmn_broadcast_init(LmnBroadcast *bc, const LmnShape *a, const LmnShape *b, GError **error);
/** lmn_broadcast_out_shape: Returns: the output shape of @bc. */
LmnShape lmn_broadcast_out_shape(const LmnBroadcast *bc);

/**
 * LmnBroadcastPlan:
 * An #LmnBroadcast as loops for backend authors: size-1 output dims dropped and neighbouring
 * dims of the same broadcast pattern merged (so the innermost loop is as long as possible),
 * with element strides: @so of the contiguous output, @sa and @sb of the operands, 0 along
 * their broadcast dims.  @nd >= 1.
 */
typedef struct {
    guint nd;
    gint64 dims[LMN_BROADCAST_MAX_DIMS];
    gint64 so[LMN_BROADCAST_MAX_DIMS], sa[LMN_BROADCAST_MAX_DIMS], sb[LMN_BROADCAST_MAX_DIMS];
} LmnBroadcastPlan;

/** lmn_broadcast_plan: fills @plan from @bc (see #LmnBroadcastPlan). */
void lmn_broadcast_plan(const LmnBroadcast *bc, LmnBroadcastPlan *plan);

/**
 * lmn_op_binary_broadcast:
 * out = a OP b with NumPy broadcasting as described by @bc (@a has bc->a's element count, @b
 * bc->b's, @out bc->out's).  @out may alias an operand of the output's shape.
 */
void lmn_op_binary_broadcast(LmnBinaryOp op, const LmnTensor *a, const LmnTensor *b, LmnTensor *out,
                             const LmnBroadcast *bc);
/**
 * lmn_op_binary_broadcast_backward:
 * From dy (bc->out's shape), da and db (overwritten; either may be NULL) are the gradients of
 * out = a OP b, each summed over the axes its operand was broadcast along, in a fixed order.
 * MAXIMUM and MINIMUM route the gradient to the winning operand and split it in half at ties,
 * as PyTorch does.  @a and @b may be NULL for ADD and SUB, which do not read them.
 */
void lmn_op_binary_broadcast_backward(LmnBinaryOp op, const LmnTensor *a, const LmnTensor *b,
                                      const LmnTensor *dy, LmnTensor *da, LmnTensor *db,
                                      const LmnBroadcast *bc);
/**
 * lmn_op_reduce_to_shape:
 * out = x summed over the axes along which bc->a was broadcast to bc->out (x has bc->out's
 * shape, out bc->a's): the gradient of a broadcast operand.  It is the ADD case of
 * lmn_op_binary_broadcast_backward.
 */
void lmn_op_reduce_to_shape(const LmnTensor *x, LmnTensor *out, const LmnBroadcast *bc);

/**
 * lmn_op_normalize_rows:
 * For x viewed as [@rows, @cols]: y = (x - mean) * rstd row-wise, with rstd = 1 / sqrt(var +
 * eps) and var the biased variance (layer, group and instance normalisation).  @mean and @rstd
 * ([@rows], f32) receive the statistics for the backward.  @y may be @x.
 */
void lmn_op_normalize_rows(const LmnTensor *x, LmnTensor *y, LmnTensor *mean, LmnTensor *rstd,
                           gint64 rows, gint64 cols, float eps);
/**
 * lmn_op_normalize_rows_backward:
 * dx = rstd * (dy - mean(dy) - y * mean(dy * y)) row-wise, @y the normalised output of
 * lmn_op_normalize_rows.  @dx may be @dy.
 */
void lmn_op_normalize_rows_backward(const LmnTensor *y, const LmnTensor *rstd, const LmnTensor *dy,
                                    LmnTensor *dx, gint64 rows, gint64 cols);
/**
 * lmn_op_clamp_backward:
 * dx = dy where lo < x < hi, else 0 (the gradient of lmn_op_clamp and of hardtanh, as
 * PyTorch's hardtanh_backward).  @dx may be @dy.
 */
void lmn_op_clamp_backward(const LmnTensor *x, const LmnTensor *dy, LmnTensor *dx, float lo,
                           float hi);

/**
 * lmn_op_topk:
 * The @k largest values along the middle axis of x viewed as [@outer, @axis, @inner], sorted
 * in descending order, into @values (f32) and their positions along the axis into @indices
 * (i32), both [@outer, @k, @inner].  The values are torch.topk(largest=True, sorted=True)'s,
 * NaN counting as larger than every number; among equal values the lower index comes first
 * (torch.topk leaves that order unspecified; torch.sort(descending=True, stable=True) matches
 * it), so every backend returns the same indices.  1 <= @k <= @axis.
 */
void lmn_op_topk(const LmnTensor *x, LmnTensor *values, LmnTensor *indices, gint64 outer,
                 gint64 axis, gint64 inner, gint64 k);
/**
 * lmn_op_topk_backward:
 * dx (overwritten, [@outer, @axis, @inner]) = dy ([@outer, @k, @inner]) at the positions in
 * @indices, 0 elsewhere.
 */
void lmn_op_topk_backward(const LmnTensor *dy, const LmnTensor *indices, LmnTensor *dx,
                          gint64 outer, gint64 axis, gint64 inner, gint64 k);
/* ---- ABI 1.3: resampling ops of the spatial layers (upsample).  Optional members of the
 * backend vtable: a backend without them records LMN_BACKEND_ERROR_UNSUPPORTED naming the op. */

/** LmnUpsampleMode: interpolation of lmn_op_upsample2d.  Append only. */
typedef enum {
    LMN_UPSAMPLE_NEAREST = 0,  /* PyTorch's mode='nearest': src = min(floor(dst * scale), in - 1) */
    LMN_UPSAMPLE_BILINEAR = 1, /* PyTorch's mode='bilinear' */
} LmnUpsampleMode;

/**
 * LmnUpsampleGeom:
 * @planes: batch * channels: x is [planes, in_h, in_w], y [planes, out_h, out_w]
 * @scale_h, @scale_w: input pixels per output pixel as PyTorch computes them: with
 *   @align_corners (in - 1) / (out - 1) (0 when out is 1), else 1 / scale_factor when the
 *   layer was given one, or in / out
 * @align_corners: bilinear only: src = dst * scale, else src = max((dst + 0.5) * scale - 0.5, 0)
 * Bilinear reads rows/columns i0 = floor(src) and i1 = min(i0 + 1, in - 1) with weights
 * 1 - (src - i0) and src - i0, exactly as torch.nn.functional.interpolate.
 */
typedef struct {
    guint32 struct_size;
    gint64 planes, in_h, in_w, out_h, out_w;
    float scale_h, scale_w;
    gboolean align_corners;
    gpointer reserved[4];
} LmnUpsampleGeom;

/** lmn_op_upsample2d: y (overwritten) = x resampled to [out_h, out_w] by @mode. */
void lmn_op_upsample2d(LmnUpsampleMode mode, const LmnTensor *x, LmnTensor *y,
                       const LmnUpsampleGeom *g);
/**
 * lmn_op_upsample2d_backward:
 * dx (overwritten) = the adjoint of lmn_op_upsample2d applied to dy: each input pixel gathers
 * the output pixels that read it, times their weights (deterministic, no atomics).
 */
void lmn_op_upsample2d_backward(LmnUpsampleMode mode, const LmnTensor *dy, LmnTensor *dx,
                                const LmnUpsampleGeom *g);

/* ---- ABI 1.5: a GEMM with its epilogue.  An optional member of the backend vtable: without it
 * lmn_op_gemm_ex composes lmn_op_gemm, bias_add, unary and bias_grad, with the same results. */

/**
 * LmnGemmEpilogue:
 * What lmn_op_gemm_ex does around the product, so a backend can do it while each block of C is
 * still in its cache or registers instead of in separate passes over memory:
 * @bias: NULL or an f32 tensor of @n elements: C[i, j] = t[i, j] + bias[j], where t is the
 *   product's alpha op(A) op(B) + beta C
 * @activation: applied last, as lmn_op_unary(@activation, C, C, @activation_alpha);
 *   LMN_UNARY_IDENTITY for none
 * @activated: NULL, or where the activation's result goes instead: C then keeps the value
 *   before it and @activated (at least m * n f32 elements, its first m * n written, not
 *   overlapping C) receives f(C), as lmn_op_unary(@activation, C, @activated, ...) would (a
 *   layer that computes the activation layer after it, which reads both)
 * @a_row_sums: NULL or an f32 tensor of @m elements: a_row_sums[i] = @row_sums_beta *
 *   a_row_sums[i] + sum over q of op(A)[i, q] (beta 0 overwrites without reading), exactly as
 *   lmn_op_bias_grad sums (a dense layer's bias gradient comes out of its weight-gradient GEMM,
 *   whose op(A) is the output gradient transposed).  It must not overlap A, B or C.
 * @activation_grad: the backward of an activation instead of a forward one:
 *   lmn_op_unary_backward(@activation_grad, @grad_x, @grad_y, C, C, @activation_alpha) applied
 *   to the product t, so C = t * f'(x) (a layer's input gradient flowing straight through the
 *   activation layer before it); LMN_UNARY_IDENTITY for none.  It excludes @bias, @activation
 *   and @activated, and needs beta 0 (it scales the whole of C).
 * @grad_x, @grad_y: the activation's input and saved output, each at least m * n f32 elements
 *   laid out as C, neither overlapping C; both must be given, as for lmn_op_unary_backward
 * Zero-initialise the struct ({0} is "no epilogue") and set struct_size.
 */
typedef struct {
    guint32 struct_size;
    const LmnTensor *bias;
    LmnUnaryOp activation;
    float activation_alpha;
    LmnTensor *a_row_sums;
    float row_sums_beta;
    LmnTensor *activated;
    LmnUnaryOp activation_grad;
    const LmnTensor *grad_x;
    const LmnTensor *grad_y;
    gpointer reserved[2];
} LmnGemmEpilogue;

/**
 * lmn_op_gemm_ex:
 * lmn_op_gemm(@g), then @e (NULL: none).  With an epilogue the product must be one unbatched
 * product (batch 0 or 1) from the start of C (c_offset 0: C's first m * n elements), and with
 * @a_row_sums A's first m * k elements (a_offset 0) must be op(A).  The result equals
 * lmn_op_gemm followed by lmn_op_bias_add, lmn_op_unary (or lmn_op_unary_backward) and
 * lmn_op_bias_grad on the same backend (bit for bit on the CPU backend).
 */
void lmn_op_gemm_ex(const LmnGemm *g, const LmnGemmEpilogue *e);

G_END_DECLS
