/* Lamina CPU backend — the context shared by the vtable (cpu-backend.c) and the kernels
 * (cpu-ops.c).  Private to the plugin.
 */
#pragma once

#include "cpu-pool.h"

#include <lamina/backend.h>

G_BEGIN_DECLS

/* The memory-bound kernels (im2col, col2im, pooling, element-wise activations, bias) are built
 * for AVX-512, AVX2 and the baseline, and the loader picks the best the processor runs: the
 * plugin's baseline is x86-64's SSE2, so without them every such loop moves 16 bytes at a time.
 * The plugin is compiled with -ffp-contract=off, so no clone fuses a multiply-add the baseline
 * rounds twice: every clone gives the same bits. */
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define LMN_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef LMN_CPU_CLONES
#define LMN_CPU_CLONES
#endif

/* Loops shorter than this run on the calling thread: waking workers costs more than it saves. */
#define LMN_CPU_PARALLEL_MIN 32768
/* The smallest piece of an element loop handed to one thread once a loop is split. */
#define LMN_CPU_GRAIN 16384
/* Blocked reductions use at most this many partial sums, so they need no allocation. */
#define LMN_CPU_MAX_PARTIALS 4096

/* oneDNN's JIT convolutions (cpu-conv-dnnl.c), where the build has oneDNN. */
typedef struct _LmnCpuDnnl LmnCpuDnnl;

typedef struct {
    LmnCpuPool *pool;
    guint n_threads;
    char *description;
    /* Serialises ops from different threads: the pool runs one loop at a time, the partial sums
     * below are shared, and BLAS must never run beside pool work (they would fight for cores). */
    GMutex exec_lock;
    double partials[LMN_CPU_MAX_PARTIALS];
    /* Per pool chunk, the convolution ops' scratch (cpu-conv.c), grown on first use of a larger
     * layer and kept: a block of images' patch matrices, their outputs, and a partial weight
     * gradient. */
    gboolean conv_direct; /* LAMINA_CPU_CONV=direct: the direct loops, for testing them */
    float **conv_cols;
    gsize *conv_cols_cap;
    float **conv_dw;
    gsize *conv_dw_cap;
    float **conv_out; /* a block's outputs or output gradients, [K, images * oh * ow] */
    gsize *conv_out_cap;
    /* oneDNN's convolution kernels and their plans, or NULL: the blocked path (no oneDNN in the
     * build, or LAMINA_CPU_CONV=blocked or direct). */
    LmnCpuDnnl *dnnl;
} LmnCpuContext;

void lmn_cpu_fill(gpointer ctx, LmnTensor *t, float value);
void lmn_cpu_copy(gpointer ctx, LmnTensor *dst, const LmnTensor *src);
void lmn_cpu_gemm(gpointer ctx, const LmnGemm *g);
void lmn_cpu_gemm_ex(gpointer ctx, const LmnGemm *g, const LmnGemmEpilogue *e);
void lmn_cpu_softmax_xent_grad(gpointer ctx, const LmnTensor *logits, const LmnTensor *labels,
                               LmnTensor *probs, LmnTensor *loss, float smoothing, LmnTensor *dx,
                               float scale);
void lmn_cpu_bias_add(gpointer ctx, LmnTensor *y, const LmnTensor *bias, gint64 outer,
                      gint64 channels, gint64 inner);
void lmn_cpu_bias_grad(gpointer ctx, LmnTensor *db, const LmnTensor *dy, gint64 outer,
                       gint64 channels, gint64 inner, float beta);
void lmn_cpu_unary(gpointer ctx, LmnUnaryOp op, const LmnTensor *x, LmnTensor *y, float alpha);
void lmn_cpu_unary_backward(gpointer ctx, LmnUnaryOp op, const LmnTensor *x, const LmnTensor *y,
                            const LmnTensor *dy, LmnTensor *dx, float alpha);
void lmn_cpu_binary(gpointer ctx, LmnBinaryOp op, const LmnTensor *a, const LmnTensor *b,
                    LmnTensor *out);
void lmn_cpu_axpby(gpointer ctx, float alpha, const LmnTensor *x, float beta, LmnTensor *y);
void lmn_cpu_reduce(gpointer ctx, LmnReduceOp op, const LmnTensor *x, LmnTensor *out, float alpha,
                    float beta);
void lmn_cpu_softmax_xent(gpointer ctx, const LmnTensor *logits, const LmnTensor *labels,
                          LmnTensor *probs, LmnTensor *loss, float smoothing);
void lmn_cpu_softmax_xent_backward(gpointer ctx, const LmnTensor *probs, const LmnTensor *labels,
                                   LmnTensor *dx, float scale, float smoothing);
void lmn_cpu_count_correct(gpointer ctx, const LmnTensor *logits, const LmnTensor *labels,
                           LmnTensor *out);
void lmn_cpu_kernel(gpointer ctx, const LmnKernelDesc *kernel, gsize n, LmnTensor *const *buffers,
                    const float *scalars);

/* Serial pieces for the convolution ops (cpu-conv.c), run inside pool chunks: one image's
 * patch matrix [channels * kh * kw, oh * ow] with rows @ld apart (0 = packed; g->batch is
 * ignored), so several images' matrices can sit side by side, its col2im (dx overwritten), and
 * one single-threaded product C = A B + beta C with alpha 1. */
void lmn_cpu_im2col_image(const float *x, float *cols, gsize ld, const LmnConv2dGeom *g);
void lmn_cpu_col2im_image(const float *cols, float *dx, gsize ld, const LmnConv2dGeom *g);
void lmn_cpu_sgemm_serial(gboolean trans_a, gboolean trans_b, int m, int n, int k, const float *a,
                          int lda, const float *b, int ldb, float beta, float *c, int ldc);

/* ABI 1.4: native convolution (cpu-conv.c) */
void lmn_cpu_conv2d_forward(gpointer ctx, const LmnConv2dDesc *d, const LmnTensor *x,
                            const LmnTensor *weight, LmnTensor *y);
void lmn_cpu_conv2d_backward_data(gpointer ctx, const LmnConv2dDesc *d, const LmnTensor *dy,
                                  const LmnTensor *weight, LmnTensor *dx);
void lmn_cpu_conv2d_backward_weights(gpointer ctx, const LmnConv2dDesc *d, const LmnTensor *x,
                                     const LmnTensor *dy, LmnTensor *dweight, float beta);
/* ABI 1.6 conv2d_prepare: oneDNN's plans for @d, or the blocked path's scratch. */
gboolean lmn_cpu_conv2d_prepare(gpointer ctx, const LmnConv2dDesc *d, GError **error);
/* Frees the convolution scratch (cpu_close). */
void lmn_cpu_conv_scratch_free(gpointer ctx);

/* The three convolution ops in oneDNN's terms: the operands in0, in1 and out of
 * lmn_cpu_dnnl_conv() are x, weight, y (forward); dy, weight, dx (backward data); and x, dy,
 * dweight (backward weights). */
typedef enum {
    LMN_CPU_DNNL_CONV_FORWARD,
    LMN_CPU_DNNL_CONV_BACKWARD_DATA,
    LMN_CPU_DNNL_CONV_BACKWARD_WEIGHTS,
} LmnCpuDnnlConvKind;

#ifdef LMN_HAVE_ONEDNN
/* The engine and one stream per thread; NULL where oneDNN cannot make them. */
LmnCpuDnnl *lmn_cpu_dnnl_new(guint n_threads);
void lmn_cpu_dnnl_free(LmnCpuDnnl *dn);
/* Runs @kind on @d with oneDNN's JIT kernels, the images cut into @chunks pool chunks (1, or
 * lmn_cpu_pool_indexed_chunks() of the batch), and returns TRUE; or returns FALSE having written
 * nothing the caller relies on (oneDNN has no JIT kernel for the shape, or a call failed), and
 * the caller runs its own path.  Backward weights: out = beta * out + the gradient (beta 0 or
 * 1).  Called under the context's exec lock. */
gboolean lmn_cpu_dnnl_conv(LmnCpuDnnl *dn, LmnCpuPool *pool, guint chunks, LmnCpuDnnlConvKind kind,
                           const LmnConv2dDesc *d, const float *in0, const float *in1, float *out,
                           float beta);
/* Makes the plans of all three kinds for @d cut into @chunks chunks, and grows the per-chunk
 * scratch their calls will use, so that lmn_cpu_dnnl_conv() on @d creates and allocates
 * nothing.  usable[kind]: whether oneDNN runs that kind (else the caller's path will).  FALSE
 * when the scratch cannot be allocated.  Called under the context's exec lock. */
gboolean lmn_cpu_dnnl_prepare(LmnCpuDnnl *dn, guint chunks, const LmnConv2dDesc *d,
                              gboolean usable[3]);
/* The plans made so far (each shape, op and chunk size), for the tests. */
guint lmn_cpu_dnnl_n_plans(LmnCpuDnnl *dn);
/* How many plans lmn_cpu_dnnl_prepare() made and how many an op's own call had to make. */
void lmn_cpu_dnnl_plan_counts(const LmnCpuDnnl *dn, guint *ahead, guint *on_call);
#endif

/* ABI 1.1 */
void lmn_cpu_im2col(gpointer ctx, const LmnTensor *x, LmnTensor *cols, const LmnConv2dGeom *g);
void lmn_cpu_col2im(gpointer ctx, const LmnTensor *cols, LmnTensor *dx, const LmnConv2dGeom *g);
void lmn_cpu_pool2d(gpointer ctx, LmnPoolMode mode, const LmnTensor *x, LmnTensor *y,
                    LmnTensor *argmax, const LmnConv2dGeom *g);
void lmn_cpu_pool2d_backward(gpointer ctx, LmnPoolMode mode, const LmnTensor *dy,
                             const LmnTensor *argmax, LmnTensor *dx, const LmnConv2dGeom *g);
void lmn_cpu_batchnorm_stats(gpointer ctx, const LmnTensor *x, LmnTensor *mean, LmnTensor *var,
                             gint64 outer, gint64 channels, gint64 inner);
void lmn_cpu_batchnorm_forward(gpointer ctx, const LmnTensor *x, const LmnTensor *mean,
                               const LmnTensor *var, const LmnTensor *weight, const LmnTensor *bias,
                               LmnTensor *y, float eps, gint64 outer, gint64 channels,
                               gint64 inner);
void lmn_cpu_batchnorm_backward(gpointer ctx, const LmnTensor *x, const LmnTensor *dy,
                                const LmnTensor *mean, const LmnTensor *var,
                                const LmnTensor *weight, LmnTensor *dx, LmnTensor *dweight,
                                LmnTensor *dbias, float eps, gint64 outer, gint64 channels,
                                gint64 inner);
void lmn_cpu_dropout(gpointer ctx, const LmnTensor *x, LmnTensor *y, LmnTensor *mask, float p,
                     guint64 seed, guint64 stream);
void lmn_cpu_random_normal(gpointer ctx, LmnTensor *t, float mean, float std, guint64 seed,
                           guint64 stream);
void lmn_cpu_clamp(gpointer ctx, LmnTensor *t, float lo, float hi);
void lmn_cpu_softmax(gpointer ctx, const LmnTensor *x, LmnTensor *y, gint64 rows, gint64 cols);
void lmn_cpu_softmax_backward(gpointer ctx, const LmnTensor *y, const LmnTensor *dy, LmnTensor *dx,
                              gint64 rows, gint64 cols);
void lmn_cpu_copy_block(gpointer ctx, LmnTensor *dst, gint64 dst_offset, gint64 dst_stride,
                        const LmnTensor *src, gint64 src_offset, gint64 src_stride, gint64 rows,
                        gint64 cols, float beta);
void lmn_cpu_gather_rows(gpointer ctx, const LmnTensor *table, const LmnTensor *indices,
                         LmnTensor *out, gint64 n, gint64 dim);
void lmn_cpu_scatter_add_rows(gpointer ctx, LmnTensor *table_grad, const LmnTensor *indices,
                              const LmnTensor *src, gint64 n, gint64 dim);
void lmn_cpu_bce_logits(gpointer ctx, const LmnTensor *x, const LmnTensor *target, LmnTensor *loss);
void lmn_cpu_bce_logits_backward(gpointer ctx, const LmnTensor *x, const LmnTensor *target,
                                 LmnTensor *dx, float scale);

/* ---- ABI 1.3: axis reductions, broadcasting, row normalisation (cpu-ops-axis.c) ---- */
void lmn_cpu_reduce_axis(gpointer ctx, LmnAxisReduceOp op, const LmnTensor *x, LmnTensor *out,
                         LmnTensor *indices, gint64 outer, gint64 axis, gint64 inner);
void lmn_cpu_reduce_axis_backward(gpointer ctx, LmnAxisReduceOp op, const LmnTensor *dy,
                                  const LmnTensor *indices, LmnTensor *dx, gint64 outer,
                                  gint64 axis, gint64 inner);
void lmn_cpu_binary_broadcast(gpointer ctx, LmnBinaryOp op, const LmnTensor *a, const LmnTensor *b,
                              LmnTensor *out, const LmnBroadcast *bc);
void lmn_cpu_binary_broadcast_backward(gpointer ctx, LmnBinaryOp op, const LmnTensor *a,
                                       const LmnTensor *b, const LmnTensor *dy, LmnTensor *da,
                                       LmnTensor *db, const LmnBroadcast *bc);
void lmn_cpu_normalize_rows(gpointer ctx, const LmnTensor *x, LmnTensor *y, LmnTensor *mean,
                            LmnTensor *rstd, gint64 rows, gint64 cols, float eps);
void lmn_cpu_normalize_rows_backward(gpointer ctx, const LmnTensor *y, const LmnTensor *rstd,
                                     const LmnTensor *dy, LmnTensor *dx, gint64 rows, gint64 cols);
void lmn_cpu_clamp_backward(gpointer ctx, const LmnTensor *x, const LmnTensor *dy, LmnTensor *dx,
                            float lo, float hi);
void lmn_cpu_topk(gpointer ctx, const LmnTensor *x, LmnTensor *values, LmnTensor *indices,
                  gint64 outer, gint64 axis, gint64 inner, gint64 k);
void lmn_cpu_topk_backward(gpointer ctx, const LmnTensor *dy, const LmnTensor *indices,
                           LmnTensor *dx, gint64 outer, gint64 axis, gint64 inner, gint64 k);
/* ---- end of the ABI 1.3 axis/broadcast block ---- */
/* ABI 1.3: spatial resampling (cpu-ops-spatial.c) */
void lmn_cpu_upsample2d(gpointer ctx, LmnUpsampleMode mode, const LmnTensor *x, LmnTensor *y,
                        const LmnUpsampleGeom *g);
void lmn_cpu_upsample2d_backward(gpointer ctx, LmnUpsampleMode mode, const LmnTensor *dy,
                                 LmnTensor *dx, const LmnUpsampleGeom *g);

G_END_DECLS
