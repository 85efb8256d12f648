/* Lamina CPU backend — the ABI 1.4 convolution ops, a block of images at a time.
 *
 * The pool takes whole images.  Each chunk lowers a block of B images into its own patch
 * matrix [C * kh * kw, B * oh * ow] (the images side by side, B chosen from the sizes so that the
 * block stays in L2) and runs one single-threaded GEMM per group on it: a small convolution's
 * per-image product (LeNet's second, 16 x 100 x 150) is too small for a GEMM kernel to run
 * fast, the block's (16 x 800 x 150) is not.  Outputs and output gradients pass through a
 * [K, B * oh * ow] block too, copied from and to the [N, K, oh, ow] tensors.
 *   forward:          Y_blk    = W_g x cols_blk
 *   backward data:    dx[n]    = col2im(W_g^T dY_blk), image by image
 *   backward weights: dW       = sum over blocks of dY_blk cols_blk^T: each chunk sums its blocks
 *                     into its own partial, and the partials are added in chunk order, so the
 *                     result depends only on the sizes and the thread count.
 * A 1x1 convolution with stride 1 and no padding reads the image itself, one image at a time.
 * The scratch grows on the first call with a larger layer; where it cannot be allocated, the op
 * runs as direct loops instead (slow, never wrong; LAMINA_CPU_CONV=direct forces them, so the
 * tests reach them).
 */
#include "cpu-ops.h"

#include <string.h>

#define EXEC_BEGIN(c) g_mutex_lock(&(c)->exec_lock)
#define EXEC_END(c) g_mutex_unlock(&(c)->exec_lock)

/* Below this many multiply-adds the whole op runs on the calling thread. */
#define CONV_SMALL_MACS 262144.0
/* A block's patch matrix and outputs together stay under this many floats (512 KiB, L2). */
#define CONV_BLOCK_FLOATS 131072

static inline float *fptr(const LmnTensor *t)
{
    return (float *) ((char *) t->buffer + t->offset);
}

typedef struct {
    const LmnConv2dDesc *d;
    LmnConv2dGeom g;   /* one image */
    gint64 ckk, kg, l; /* per group: patch rows, output channels; pixels per channel */
    gboolean direct;   /* 1x1, stride 1, no padding: the image is its own patch matrix */
    gint64 block;      /* images per block (1 when direct) */
    const float *x, *w, *dy;
    float *y, *dx, *dw;
    float **cols;    /* per chunk: a block's patch matrices */
    float **out;     /* per chunk: a block's outputs or output gradients */
    float **partial; /* per chunk, backward weights */
} ConvRun;

static ConvRun conv_run_of(const LmnConv2dDesc *d)
{
    ConvRun r = {.d = d};
    r.g = (LmnConv2dGeom){.struct_size = sizeof(LmnConv2dGeom),
                          .batch = 1,
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
    r.ckk = d->c / d->groups * d->kernel_h * d->kernel_w;
    r.kg = d->k / d->groups;
    r.l = d->out_h * d->out_w;
    r.direct = d->kernel_h == 1 && d->kernel_w == 1 && d->stride_h == 1 && d->stride_w == 1 &&
               d->pad_h == 0 && d->pad_w == 0;
    const double per_image = (double) (d->c * d->kernel_h * d->kernel_w + d->k) * (double) r.l;
    r.block = r.direct ? 1 : CLAMP((gint64) (CONV_BLOCK_FLOATS / per_image), 1, d->n);
    return r;
}

static double conv_macs(const ConvRun *r)
{
    return (double) r->d->n * (double) r->d->k * (double) r->ckk * (double) r->l;
}

/* Grows slot @i of a per-chunk scratch to @numel floats. */
static gboolean ensure_slot(float **slots, gsize *caps, guint i, gsize numel)
{
    if (caps[i] >= numel)
        return TRUE;
    float *p = g_try_realloc(slots[i], numel * sizeof(float));
    if (p == NULL)
        return FALSE;
    slots[i] = p;
    caps[i] = numel;
    return TRUE;
}

/* Scratch for @chunks chunks: patch matrices and output blocks (unless direct) and, with
 * @partials, weight gradients.  Points r->cols, r->out and r->partial at them. */
static gboolean conv_scratch(LmnCpuContext *c, ConvRun *r, guint chunks, gboolean partials)
{
    const gsize ld = (gsize) (r->block * r->l);
    const gsize cols = (gsize) (r->d->c * r->d->kernel_h * r->d->kernel_w) * ld;
    const gsize out = (gsize) r->d->k * ld;
    const gsize dw = (gsize) (r->d->k * r->ckk);
    if (c->conv_direct)
        return FALSE;
    for (guint i = 0; i < chunks; i++) {
        if (!r->direct && (!ensure_slot(c->conv_cols, c->conv_cols_cap, i, cols) ||
                           !ensure_slot(c->conv_out, c->conv_out_cap, i, out)))
            return FALSE;
        if (partials && !ensure_slot(c->conv_dw, c->conv_dw_cap, i, dw))
            return FALSE;
    }
    r->cols = c->conv_cols;
    r->out = c->conv_out;
    r->partial = c->conv_dw;
    return TRUE;
}

/* Chunks the op is cut into: one for a small op, else one per thread (at most one per image). */
static guint conv_chunks(const LmnCpuContext *c, const ConvRun *r)
{
    if (c->n_threads <= 1 || conv_macs(r) < CONV_SMALL_MACS)
        return 1;
    return lmn_cpu_pool_indexed_chunks(c->pool, (gsize) r->d->n);
}

/* Runs @func over the images on @chunks chunks. */
static void conv_dispatch(LmnCpuContext *c, ConvRun *r, guint chunks, LmnCpuPoolIndexedFunc func)
{
    if (chunks == 1)
        func(0, (gsize) r->d->n, 0, r);
    else
        lmn_cpu_pool_run_indexed(c->pool, (gsize) r->d->n, func, r);
}

/* The block of @nb images from @n0: their patch matrices side by side in the chunk's scratch
 * (rows nb * l apart), or the image itself when direct (nb is 1 then). */
static const float *patches(const ConvRun *r, gsize n0, gsize nb, guint chunk)
{
    const gsize image = (gsize) (r->d->c * r->d->h * r->d->w);
    if (r->direct)
        return r->x + n0 * image;
    const gsize ld = nb * (gsize) r->l;
    for (gsize b = 0; b < nb; b++)
        lmn_cpu_im2col_image(r->x + (n0 + b) * image, r->cols[chunk] + b * (gsize) r->l, ld, &r->g);
    return r->cols[chunk];
}

/* Copies images [n0, n0 + nb) of a [N, K, l] tensor into the [K, nb * l] block, or back. */
static void block_copy(const ConvRun *r, float *tensor, float *blk, gsize n0, gsize nb,
                       gboolean to_block)
{
    const gsize l = (gsize) r->l, k = (gsize) r->d->k, ld = nb * l;
    for (gsize b = 0; b < nb; b++)
        for (gsize kk = 0; kk < k; kk++) {
            float *t = tensor + ((n0 + b) * k + kk) * l, *q = blk + kk * ld + b * l;
            memcpy(to_block ? q : t, to_block ? t : q, l * sizeof(float));
        }
}

/* The output gradients of a block, [K, nb * l]: dy itself for one image, else copied. */
static const float *dy_block(const ConvRun *r, gsize n0, gsize nb, guint chunk)
{
    if (nb == 1)
        return r->dy + n0 * (gsize) (r->d->k * r->l);
    block_copy(r, (float *) r->dy, r->out[chunk], n0, nb, TRUE);
    return r->out[chunk];
}

static void forward_images(gsize begin, gsize end, guint chunk, gpointer data)
{
    const ConvRun *r = data;
    const LmnConv2dDesc *d = r->d;
    for (gsize n0 = begin; n0 < end; n0 += (gsize) r->block) {
        const gsize nb = MIN((gsize) r->block, end - n0), ld = nb * (gsize) r->l;
        const float *cols = patches(r, n0, nb, chunk);
        /* One image: straight into y; a block: into the chunk's output block, then copied. */
        float *out = nb == 1 ? r->y + n0 * (gsize) (d->k * r->l) : r->out[chunk];
        for (gint64 gi = 0; gi < d->groups; gi++)
            lmn_cpu_sgemm_serial(FALSE, FALSE, (int) r->kg, (int) ld, (int) r->ckk,
                                 r->w + gi * r->kg * r->ckk, (int) r->ckk,
                                 cols + (gsize) (gi * r->ckk) * ld, (int) ld, 0.0f,
                                 out + (gsize) (gi * r->kg) * ld, (int) ld);
        if (nb > 1)
            block_copy(r, r->y, out, n0, nb, FALSE);
    }
}

static void backward_data_images(gsize begin, gsize end, guint chunk, gpointer data)
{
    const ConvRun *r = data;
    const LmnConv2dDesc *d = r->d;
    const gsize image = (gsize) (d->c * d->h * d->w);
    for (gsize n0 = begin; n0 < end; n0 += (gsize) r->block) {
        const gsize nb = MIN((gsize) r->block, end - n0), ld = nb * (gsize) r->l;
        const float *dyb = dy_block(r, n0, nb, chunk);
        /* W^T dY straight into dx when direct, else into the patch matrices, then col2im. */
        float *dcols = r->direct ? r->dx + n0 * image : r->cols[chunk];
        for (gint64 gi = 0; gi < d->groups; gi++)
            lmn_cpu_sgemm_serial(TRUE, FALSE, (int) r->ckk, (int) ld, (int) r->kg,
                                 r->w + gi * r->kg * r->ckk, (int) r->ckk,
                                 dyb + (gsize) (gi * r->kg) * ld, (int) ld, 0.0f,
                                 dcols + (gsize) (gi * r->ckk) * ld, (int) ld);
        if (!r->direct)
            for (gsize b = 0; b < nb; b++)
                lmn_cpu_col2im_image(dcols + b * (gsize) r->l, r->dx + (n0 + b) * image, ld, &r->g);
    }
}

static void backward_weights_images(gsize begin, gsize end, guint chunk, gpointer data)
{
    const ConvRun *r = data;
    const LmnConv2dDesc *d = r->d;
    float *dw = r->partial[chunk];
    for (gsize n0 = begin; n0 < end; n0 += (gsize) r->block) {
        const gsize nb = MIN((gsize) r->block, end - n0), ld = nb * (gsize) r->l;
        const float *cols = patches(r, n0, nb, chunk);
        const float *dyb = dy_block(r, n0, nb, chunk);
        for (gint64 gi = 0; gi < d->groups; gi++)
            lmn_cpu_sgemm_serial(FALSE, TRUE, (int) r->kg, (int) r->ckk, (int) ld,
                                 dyb + (gsize) (gi * r->kg) * ld, (int) ld,
                                 cols + (gsize) (gi * r->ckk) * ld, (int) ld,
                                 n0 == begin ? 0.0f : 1.0f, dw + gi * r->kg * r->ckk, (int) r->ckk);
    }
}

/* ---- direct loops, where the scratch cannot be allocated ---- */

/* Input row and column of output (oy, ox) at kernel tap (ky, kx); FALSE in the padding. */
static inline gboolean tap(const LmnConv2dDesc *d, gint64 oy, gint64 ox, gint64 ky, gint64 kx,
                           gint64 *iy, gint64 *ix)
{
    *iy = oy * d->stride_h - d->pad_h + ky * d->dilation_h;
    *ix = ox * d->stride_w - d->pad_w + kx * d->dilation_w;
    return *iy >= 0 && *iy < d->h && *ix >= 0 && *ix < d->w;
}

/* Visits every (image, output channel, output pixel, input channel, tap) term of the
 * convolution in a fixed order: @fn gets the flat x, weight and y indices. */
typedef void (*TermFunc)(const ConvRun *r, gsize xi, gsize wi, gsize yi);

static void for_each_term(const ConvRun *r, TermFunc fn)
{
    const LmnConv2dDesc *d = r->d;
    const gint64 cg = d->c / d->groups;
    for (gint64 n = 0; n < d->n; n++)
        for (gint64 k = 0; k < d->k; k++)
            for (gint64 oy = 0; oy < d->out_h; oy++)
                for (gint64 ox = 0; ox < d->out_w; ox++) {
                    const gsize yi = (gsize) (((n * d->k + k) * d->out_h + oy) * d->out_w + ox);
                    for (gint64 ci = 0; ci < cg; ci++) {
                        const gint64 ch = k / r->kg * cg + ci;
                        for (gint64 ky = 0; ky < d->kernel_h; ky++)
                            for (gint64 kx = 0; kx < d->kernel_w; kx++) {
                                gint64 iy, ix;
                                if (!tap(d, oy, ox, ky, kx, &iy, &ix))
                                    continue;
                                fn(r, (gsize) (((n * d->c + ch) * d->h + iy) * d->w + ix),
                                   (gsize) (((k * cg + ci) * d->kernel_h + ky) * d->kernel_w + kx),
                                   yi);
                            }
                    }
                }
}

static void term_forward(const ConvRun *r, gsize xi, gsize wi, gsize yi)
{
    r->y[yi] += r->x[xi] * r->w[wi];
}

static void term_backward_data(const ConvRun *r, gsize xi, gsize wi, gsize yi)
{
    r->dx[xi] += r->dy[yi] * r->w[wi];
}

static void term_backward_weights(const ConvRun *r, gsize xi, gsize wi, gsize yi)
{
    r->dw[wi] += r->dy[yi] * r->x[xi];
}

/* ---- the ops ---- */

/* oneDNN's JIT kernels where the build has them and they take the shape (cpu-conv-dnnl.c). */
static gboolean dnnl_conv(LmnCpuContext *c, guint chunks, LmnCpuDnnlConvKind kind,
                          const LmnConv2dDesc *d, const float *in0, const float *in1, float *out,
                          float beta)
{
#ifdef LMN_HAVE_ONEDNN
    return c->dnnl != NULL &&
           lmn_cpu_dnnl_conv(c->dnnl, c->pool, chunks, kind, d, in0, in1, out, beta);
#else
    (void) c, (void) chunks, (void) kind, (void) d, (void) in0, (void) in1, (void) out, (void) beta;
    return FALSE;
#endif
}

void lmn_cpu_conv2d_forward(gpointer ctx, const LmnConv2dDesc *d, const LmnTensor *x,
                            const LmnTensor *weight, LmnTensor *y)
{
    LmnCpuContext *c = ctx;
    ConvRun r = conv_run_of(d);
    r.x = fptr(x);
    r.w = fptr(weight);
    r.y = fptr(y);
    EXEC_BEGIN(c);
    guint chunks = conv_chunks(c, &r);
    if (dnnl_conv(c, chunks, LMN_CPU_DNNL_CONV_FORWARD, d, r.x, r.w, r.y, 0.0f)) {
        /* done by oneDNN */
    } else if (conv_scratch(c, &r, chunks, FALSE)) {
        conv_dispatch(c, &r, chunks, forward_images);
    } else {
        memset(r.y, 0, (gsize) (d->n * d->k * r.l) * sizeof(float));
        for_each_term(&r, term_forward);
    }
    EXEC_END(c);
}

void lmn_cpu_conv2d_backward_data(gpointer ctx, const LmnConv2dDesc *d, const LmnTensor *dy,
                                  const LmnTensor *weight, LmnTensor *dx)
{
    LmnCpuContext *c = ctx;
    ConvRun r = conv_run_of(d);
    r.dy = fptr(dy);
    r.w = fptr(weight);
    r.dx = fptr(dx);
    EXEC_BEGIN(c);
    guint chunks = conv_chunks(c, &r);
    if (dnnl_conv(c, chunks, LMN_CPU_DNNL_CONV_BACKWARD_DATA, d, r.dy, r.w, r.dx, 0.0f)) {
        /* done by oneDNN */
    } else if (conv_scratch(c, &r, chunks, FALSE)) {
        conv_dispatch(c, &r, chunks, backward_data_images);
    } else {
        memset(r.dx, 0, (gsize) (d->n * d->c * d->h * d->w) * sizeof(float));
        for_each_term(&r, term_backward_data);
    }
    EXEC_END(c);
}

void lmn_cpu_conv2d_backward_weights(gpointer ctx, const LmnConv2dDesc *d, const LmnTensor *x,
                                     const LmnTensor *dy, LmnTensor *dweight, float beta)
{
    LmnCpuContext *c = ctx;
    ConvRun r = conv_run_of(d);
    r.x = fptr(x);
    r.dy = fptr(dy);
    float *out = fptr(dweight);
    const gsize numel = (gsize) (d->k * r.ckk);
    EXEC_BEGIN(c);
    guint chunks = conv_chunks(c, &r);
    if (dnnl_conv(c, chunks, LMN_CPU_DNNL_CONV_BACKWARD_WEIGHTS, d, r.x, r.dy, out, beta)) {
        /* done by oneDNN */
    } else if (conv_scratch(c, &r, chunks, TRUE)) {
        conv_dispatch(c, &r, chunks, backward_weights_images);
        /* beta 0 overwrites (NaN in dweight does not survive); partials in chunk order. */
        for (gsize e = 0; e < numel; e++) {
            float v = beta == 0.0f ? 0.0f : out[e];
            for (guint i = 0; i < chunks; i++)
                v += r.partial[i][e];
            out[e] = v;
        }
    } else {
        g_autofree float *acc = g_try_new0(float, numel);
        /* Not even the gradient's size is free: accumulate into dweight itself. */
        r.dw = acc != NULL ? acc : out;
        if (acc == NULL && beta == 0.0f)
            memset(out, 0, numel * sizeof(float));
        for_each_term(&r, term_backward_weights);
        if (acc != NULL)
            for (gsize e = 0; e < numel; e++)
                out[e] = (beta == 0.0f ? 0.0f : out[e]) + acc[e];
    }
    EXEC_END(c);
}

gboolean lmn_cpu_conv2d_prepare(gpointer ctx, const LmnConv2dDesc *d, GError **error)
{
    (void) error; /* every path below can run @d, if only as the direct loops */
    LmnCpuContext *c = ctx;
    ConvRun r = conv_run_of(d);
    EXEC_BEGIN(c);
    const guint chunks = conv_chunks(c, &r);
    gboolean usable[3] = {FALSE, FALSE, FALSE};
#ifdef LMN_HAVE_ONEDNN
    if (c->dnnl != NULL && !lmn_cpu_dnnl_prepare(c->dnnl, chunks, d, usable))
        usable[0] = usable[1] = usable[2] = FALSE;
#endif
    /* What oneDNN does not take runs on the blocked path: its scratch now, not in a step.  A
     * failed allocation here is tried again (and, failing, met) by the op itself. */
    if (!usable[LMN_CPU_DNNL_CONV_FORWARD] || !usable[LMN_CPU_DNNL_CONV_BACKWARD_DATA] ||
        !usable[LMN_CPU_DNNL_CONV_BACKWARD_WEIGHTS])
        (void) conv_scratch(c, &r, chunks, !usable[LMN_CPU_DNNL_CONV_BACKWARD_WEIGHTS]);
    EXEC_END(c);
    return TRUE;
}

void lmn_cpu_conv_scratch_free(gpointer ctx)
{
    LmnCpuContext *c = ctx;
    for (guint i = 0; i < c->n_threads; i++) {
        g_free(c->conv_cols[i]);
        g_free(c->conv_out[i]);
        g_free(c->conv_dw[i]);
    }
    g_free(c->conv_cols);
    g_free(c->conv_cols_cap);
    g_free(c->conv_out);
    g_free(c->conv_out_cap);
    g_free(c->conv_dw);
    g_free(c->conv_dw_cap);
}
