/* Lamina Vulkan backend — the ABI 1.4 native convolution (lmn_op_conv2d_* in ops.h).
 *
 * Each op is an implicit GEMM (shaders/vulkan/conv2d_common.glsl): the kernels index the image
 * and the weights directly, so no im2col scratch is ever allocated.
 *   forward:           M = k / groups, N = batch * out_h * out_w, K = c / groups * kh * kw
 *   backward data:     M = c / groups, N = batch * h * w,         K = k / groups * kh * kw
 *   backward weights:  M = k / groups, N = c / groups * kh * kw,  K = batch * out_h * out_w
 * Workgroups are (column tile, row tile, group x K slice).  Backward weights has a long
 * reduction and few outputs: it is split into K slices, each writing its own copy of dweight to
 * a scratch buffer, which gemm_reduce.comp then sums in slice order (applying beta), so the
 * result is deterministic; the split count depends on the shape and device only.  Any op's
 * reduction longer than max_slice() is split the same way, because llvmpipe ends a shader after
 * 65535 loop iterations.
 *
 * The tile (one of a few shapes) is picked per op to waste the least padding; the kernels stage
 * tiles in shared memory on GPUs and read operands directly on CPU devices, following the GEMM's
 * choice (c->gemm_reg: LAMINA_VK_GEMM=tiled forces the shared-memory kernels on lavapipe).
 * Operands above maxStorageBufferRange run in chunks of whole images (backward weights
 * accumulating the chunks in order); an image, or the weights, larger than the range, and sizes
 * beyond the kernels' 32-bit indexing, are refused with a deferred error.
 */
#include "vk-private.h"

#include "vk-shader-conv2d_backward_data.h"
#include "vk-shader-conv2d_backward_weights.h"
#include "vk-shader-conv2d_forward.h"

typedef enum { OP_FORWARD, OP_BACKWARD_DATA, OP_BACKWARD_WEIGHTS } ConvOp;

static const struct {
    const guint32 *code;
    gsize size;
    const char *name;
} kernels[LMN_VK_CONV_OPS] = {
    [OP_FORWARD] = {vk_spv_conv2d_forward, sizeof vk_spv_conv2d_forward, "conv2d_forward"},
    [OP_BACKWARD_DATA] = {vk_spv_conv2d_backward_data, sizeof vk_spv_conv2d_backward_data,
                          "conv2d_backward_data"},
    [OP_BACKWARD_WEIGHTS] = {vk_spv_conv2d_backward_weights, sizeof vk_spv_conv2d_backward_weights,
                             "conv2d_backward_weights"},
};

/* Invocation grid rm x rn, register tile tm x tn: blocks of (rm tm) x (rn tn) outputs. */
typedef struct {
    guint32 rm, rn, tm, tn;
} Tile;

static const Tile tiles[LMN_VK_CONV_TILES] = {
    {8, 16, 4, 4},  /* 32 x 64 */
    {2, 64, 4, 4},  /* 8 x 256: few output channels, many pixels */
    {8, 16, 1, 2},  /* 8 x 32: small outputs (weight gradients of small layers) */
    {16, 8, 2, 4},  /* 32 x 32 */
    {1, 128, 1, 4}, /* 1 x 512: one channel (a single-channel input's gradient) */
    {1, 128, 8, 4}, /* 8 x 512: as 8 x 256 with twice the multiplies per load */
    {2, 64, 8, 4},  /* 16 x 256 */
    /* Workgroups of 16 and 32 invocations for the weight gradients of small layers (few outputs,
     * long sums split over many workgroups), on CPU devices only (GPUs want fuller groups). */
    {1, 16, 16, 1}, /* 16 x 16 */
    {1, 32, 8, 1},  /* 8 x 32 */
};

/* Tiles of fewer invocations than this run on CPU devices only. */
#define GPU_MIN_INVOCATIONS 64

/* The push constants of conv2d_head.glsl. */
typedef struct {
    gint32 c, h, w, k, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, cg, kg;
    guint32 m, n, kdim, slice, off_a, off_b, off_c, x0, y0, z0, splits, slice_stride;
    float beta;
} ConvPush;
G_STATIC_ASSERT(sizeof(ConvPush) <= LMN_VK_PUSH_BYTES);

/* The push constants of gemm_reduce.comp (vk-gemm.c). */
typedef struct {
    guint32 m, n, splits, ldc, off_c;
    float alpha, beta;
    guint32 off_bias, act_alpha, off_act; /* the epilogue's, unused here */
} ReducePush;

/* The most dimension (and padded extent) the kernels' int arithmetic takes without overflow. */
#define MAX_DIM (G_GINT64_CONSTANT(1) << 28)
/* Split slices of the weight gradient for parallelism: at most this many, each at least
 * MIN_SLICE long (reductions longer than max_slice() are split further). */
#define MAX_SPLITS 256u
#define MIN_SLICE 256u

void lmn_vk_conv_cleanup(LmnVkContext *c)
{
    if (c->device == VK_NULL_HANDLE)
        return;
    for (guint i = 0; i < G_N_ELEMENTS(c->conv_pipelines); i++)
        if (c->conv_pipelines[i] != VK_NULL_HANDLE) {
            c->fn.vkDestroyPipeline(c->device, c->conv_pipelines[i], NULL);
            c->conv_pipelines[i] = VK_NULL_HANDLE;
        }
}

static VkPipeline conv_pipeline(LmnVkContext *c, ConvOp op, guint tile)
{
    VkPipeline *slot = &c->conv_pipelines[op * LMN_VK_CONV_TILES + tile];
    if (*slot == VK_NULL_HANDLE) {
        const Tile *t = &tiles[tile];
        const guint32 spec[] = {t->rm * t->rn, t->rm, t->rn, t->tm, t->tn, !c->gemm_reg};
        *slot = lmn_vk_pipeline_new(c, kernels[op].code, kernels[op].size, "main", spec,
                                    G_N_ELEMENTS(spec), kernels[op].name);
    }
    return *slot;
}

static gsize ceil_div(gsize a, gsize b)
{
    return (a + b - 1) / b;
}

/* Shared memory of a tile's kernel with SHARED set (conv2d_common.glsl: the A and B tiles of
 * BK rows, padded by one, and the row and column tables). */
static gsize shared_bytes(const Tile *t)
{
    const gsize bk = 16, bm = t->rm * t->tm, bn = t->rn * t->tn;
    return 4 * (bk * (bm + 1) + bk * (bn + 1)) + 16 * (bk + bn);
}

/* The tile computing the m x n output with the least padded work, a small register tile
 * counting as extra work (it loads more per multiply); with the shared-memory kernels, among
 * the tiles that fit the device's shared memory (tile 0 always does: 7.5 KiB) and have enough
 * invocations. */
static guint pick_tile(LmnVkContext *c, gsize m, gsize n)
{
    guint best = 0;
    double best_cost = 0;
    for (guint i = 0; i < LMN_VK_CONV_TILES; i++) {
        const Tile *t = &tiles[i];
        if (!c->gemm_reg && (shared_bytes(t) > c->desc.props.limits.maxComputeSharedMemorySize ||
                             t->rm * t->rn < GPU_MIN_INVOCATIONS))
            continue;
        const gsize bm = t->rm * t->tm, bn = t->rn * t->tn;
        double cost = (double) (ceil_div(m, bm) * bm) * (double) (ceil_div(n, bn) * bn) *
                      (1.0 + 4.0 / (double) (t->tm * t->tn));
        if (i == 0 || cost < best_cost) {
            best = i;
            best_cost = cost;
        }
    }
    return best;
}

/* Whether @d is within the kernels' 32-bit indexing (set the deferred error if not). */
static gboolean desc_fits(LmnVkContext *c, const LmnConv2dDesc *d, const char *op)
{
    const gint64 dims[] = {d->n,
                           d->c,
                           d->h,
                           d->w,
                           d->k,
                           d->kernel_h,
                           d->kernel_w,
                           d->stride_h,
                           d->stride_w,
                           d->pad_h,
                           d->pad_w,
                           d->dilation_h,
                           d->dilation_w,
                           d->groups,
                           d->out_h,
                           d->out_w,
                           d->h + 2 * d->pad_h,
                           d->w + 2 * d->pad_w};
    gboolean fits = TRUE;
    for (guint i = 0; i < G_N_ELEMENTS(dims); i++)
        fits = fits && dims[i] >= 0 && dims[i] <= MAX_DIM;
    /* Each operand's element count, in a double so the products cannot overflow first. */
    const double x = (double) d->n * d->c * d->h * d->w,
                 y = (double) d->n * d->k * d->out_h * d->out_w;
    const double wt = (double) d->k * (d->c / MAX(d->groups, 1)) * d->kernel_h * d->kernel_w;
    fits = fits && x <= G_MAXINT32 && y <= G_MAXINT32 && wt <= G_MAXINT32;
    if (!fits)
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                         "vulkan: %s: a convolution of %" G_GINT64_FORMAT " x %" G_GINT64_FORMAT
                         " x %" G_GINT64_FORMAT " x %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT
                         " channels is beyond the kernels' 32-bit indexing; run it on the CPU "
                         "backend or in smaller batches",
                         op, d->n, d->c, d->h, d->w, d->k);
    return fits;
}

static ConvPush push_of(const LmnConv2dDesc *d)
{
    return (ConvPush){
        .c = (gint32) d->c,
        .h = (gint32) d->h,
        .w = (gint32) d->w,
        .k = (gint32) d->k,
        .kh = (gint32) d->kernel_h,
        .kw = (gint32) d->kernel_w,
        .sh = (gint32) d->stride_h,
        .sw = (gint32) d->stride_w,
        .ph = (gint32) d->pad_h,
        .pw = (gint32) d->pad_w,
        .dh = (gint32) d->dilation_h,
        .dw = (gint32) d->dilation_w,
        .oh = (gint32) d->out_h,
        .ow = (gint32) d->out_w,
        .cg = (gint32) (d->c / d->groups),
        .kg = (gint32) (d->k / d->groups),
        .splits = 1,
    };
}

/* Dispatches @op over gx x gy x gz workgroups, in pieces within the device's workgroup-count
 * limits (the shader adds p.x0, p.y0, p.z0 to its workgroup id). */
static void dispatch_grid(LmnVkContext *c, VkPipeline pipeline, const LmnVkBinding *b, ConvPush *p,
                          gsize gx, gsize gy, gsize gz)
{
    const guint32 *lim = c->desc.props.limits.maxComputeWorkGroupCount;
    const gsize mx = MIN(c->max_groups_x, 65535u), my = MIN(lim[1], 65535u),
                mz = MIN(lim[2], 65535u);
    for (gsize z0 = 0; z0 < gz; z0 += mz)
        for (gsize y0 = 0; y0 < gy; y0 += my)
            for (gsize x0 = 0; x0 < gx; x0 += mx) {
                p->x0 = (guint32) x0;
                p->y0 = (guint32) y0;
                p->z0 = (guint32) z0;
                lmn_vk_dispatch(c, pipeline, b, 3, p, sizeof *p, (guint32) MIN(mx, gx - x0),
                                (guint32) MIN(my, gy - y0), (guint32) MIN(mz, gz - z0));
            }
}

/* One implicit GEMM of @op: p->m x p->n outputs per group over p->kdim, with p's offsets and
 * slices set by the caller. */
static void run_gemm(LmnVkContext *c, ConvOp op, const LmnConv2dDesc *d, const LmnVkBinding *b,
                     ConvPush *p)
{
    const guint t = pick_tile(c, p->m, p->n);
    const Tile *tile = &tiles[t];
    VkPipeline pipeline = conv_pipeline(c, op, t);
    if (pipeline == VK_NULL_HANDLE)
        return;
    dispatch_grid(c, pipeline, b, p, ceil_div(p->n, tile->rn * tile->tn),
                  ceil_div(p->m, tile->rm * tile->tm), (gsize) d->groups * p->splits);
}

/* The most elements one binding may span at any element offset. */
static gsize max_elems(LmnVkContext *c)
{
    return (gsize) ((c->max_range - c->alignment) / 4 + 1);
}

/* The longest reduction one slice may run: llvmpipe ends a shader after 65535 loop iterations
 * in all (the direct kernels run one per reduction step, the shared-memory ones up to about 40
 * per BK-row tile), so longer reductions of every op are split, on every device. */
static gsize max_slice(LmnVkContext *c)
{
    return c->gemm_reg ? 49152 : 16384;
}

/* The output (@b[2], @out_n elements) = beta output + the GEMM of @p in @splits K slices:
 * directly for one, else each slice's copy written to a scratch buffer and summed in slice
 * order by gemm_reduce.comp (which applies beta).  The caller keeps splits x out_n within one
 * binding. */
static void split_gemm(LmnVkContext *c, ConvOp op, const LmnConv2dDesc *d, const LmnVkBinding *b,
                       ConvPush *p, gsize out_n, gsize splits, float beta)
{
    p->slice = (guint32) ceil_div(p->kdim, splits);
    p->splits = (guint32) ceil_div(p->kdim, p->slice); /* no empty slice */
    if (p->splits == 1) {
        p->beta = beta;
        p->slice_stride = 0;
        run_gemm(c, op, d, b, p);
        return;
    }
    GError *e = NULL;
    LmnVkBuffer *part = lmn_vk_buffer_alloc_uninit(c, (gsize) p->splits * out_n * 4, &e);
    if (part == NULL) {
        lmn_vk_set_error(c, e->domain, e->code, "vulkan: %s: %s", kernels[op].name, e->message);
        g_error_free(e);
        return;
    }
    LmnVkBinding sb[3] = {b[0], b[1], {lmn_vk_buffer_handle(part), part->offset, part->size, TRUE}};
    ConvPush sp = *p;
    sp.off_c = 0;
    sp.beta = 0.0f;
    sp.slice_stride = (guint32) out_n;
    run_gemm(c, op, d, sb, &sp);
    ReducePush rp = {.m = 1,
                     .n = (guint32) out_n,
                     .splits = p->splits,
                     .ldc = (guint32) out_n,
                     .off_c = p->off_c,
                     .alpha = 1.0f,
                     .beta = beta};
    /* gemm_reduce.comp's epilogue slots (bias, activated output), unused here, repeat the
     * partials and C: a writable slot must not be the shared dummy buffer (vk-gemm.c). */
    LmnVkBinding r[4] = {sb[2], b[2], sb[2], b[2]};
    r[0].write = FALSE;
    r[2].write = FALSE;
    VkPipeline reduce = lmn_vk_gemm_reduce_pipeline(c);
    if (reduce != VK_NULL_HANDLE)
        lmn_vk_dispatch(c, reduce, r, 4, &rp, sizeof rp,
                        (guint32) MIN(ceil_div(out_n, LMN_VK_LOCAL_SIZE), c->max_groups_x), 1, 1);
    lmn_vk_buffer_free_deferred(c, part);
}

/* Images per chunk so that @per_a and @per_b elements per image fit one binding; 0 (with the
 * deferred error set) when one image does not. */
static gsize images_per_chunk(LmnVkContext *c, const LmnConv2dDesc *d, gsize per_a, gsize per_b,
                              const char *op)
{
    const gsize per = max_elems(c) / MAX(MAX(per_a, per_b), 1);
    if (per == 0)
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                         "vulkan: %s: one image (%" G_GSIZE_FORMAT " elements) exceeds "
                         "maxStorageBufferRange (%" G_GUINT64_FORMAT " bytes)",
                         op, MAX(per_a, per_b), (guint64) c->max_range);
    return MIN(per, (gsize) d->n);
}

/* Forward and backward data: one GEMM per chunk of images, @img (x or dy) and @out (y or dx)
 * bound per chunk, the weights whole. */
static void image_op(LmnVkContext *c, ConvOp op, const LmnConv2dDesc *d, const LmnTensor *img,
                     gsize per_img, const LmnTensor *weight, LmnTensor *out, gsize per_out,
                     const char *name)
{
    if (c->error != NULL || !desc_fits(c, d, name))
        return;
    ConvPush p = push_of(d);
    const gboolean fwd = op == OP_FORWARD;
    p.m = (guint32) (fwd ? p.kg : p.cg);
    p.kdim = (guint32) ((fwd ? p.cg : p.kg) * d->kernel_h * d->kernel_w);
    /* Reductions above max_slice() (thousands of channels) run split, with a copy of the
     * output chunk per slice: those have to fit one binding too. */
    const gsize splits = ceil_div(p.kdim, max_slice(c));
    const gsize per = images_per_chunk(c, d, per_img, per_out * splits, name);
    if (per == 0)
        return;
    const gsize wn = (gsize) (d->k * (d->c / d->groups) * d->kernel_h * d->kernel_w);
    LmnVkBinding b[3];
    if (!lmn_vk_bind_tensor(c, weight, 0, wn, FALSE, &b[1], &p.off_a, name))
        return;
    for (gsize n0 = 0; n0 < (gsize) d->n; n0 += per) {
        const gsize nb = MIN(per, (gsize) d->n - n0);
        p.n = (guint32) (nb * (fwd ? d->out_h * d->out_w : d->h * d->w));
        if (!lmn_vk_bind_tensor(c, img, n0 * per_img, nb * per_img, FALSE, &b[0], &p.off_b, name) ||
            !lmn_vk_bind_tensor(c, out, n0 * per_out, nb * per_out, TRUE, &b[2], &p.off_c, name))
            return;
        split_gemm(c, op, d, b, &p, nb * per_out, splits, 0.0f);
    }
}

void lmn_vk_conv2d_forward(gpointer ctx, const LmnConv2dDesc *d, const LmnTensor *x,
                           const LmnTensor *weight, LmnTensor *y)
{
    LmnVkContext *c = ctx;
    g_mutex_lock(&c->lock);
    image_op(c, OP_FORWARD, d, x, (gsize) (d->c * d->h * d->w), weight, y,
             (gsize) (d->k * d->out_h * d->out_w), "conv2d_forward");
    g_mutex_unlock(&c->lock);
}

void lmn_vk_conv2d_backward_data(gpointer ctx, const LmnConv2dDesc *d, const LmnTensor *dy,
                                 const LmnTensor *weight, LmnTensor *dx)
{
    LmnVkContext *c = ctx;
    g_mutex_lock(&c->lock);
    image_op(c, OP_BACKWARD_DATA, d, dy, (gsize) (d->k * d->out_h * d->out_w), weight, dx,
             (gsize) (d->c * d->h * d->w), "conv2d_backward_data");
    g_mutex_unlock(&c->lock);
}

/* K slices for a weight-gradient GEMM of @p's size: enough workgroups to keep the device busy,
 * each slice at least MIN_SLICE long, and all the slices' copies of dweight within one binding
 * and 32-bit indexing. */
static guint32 split_count(LmnVkContext *c, const ConvPush *p, const LmnConv2dDesc *d, gsize wn)
{
    const Tile *t = &tiles[pick_tile(c, p->m, p->n)];
    const gsize groups =
        ceil_div(p->m, t->rm * t->tm) * ceil_div(p->n, t->rn * t->tn) * (gsize) d->groups;
    gsize s = ceil_div((gsize) c->gemm_busy_groups * 16, groups);
    s = MIN(s, ceil_div(p->kdim, MIN_SLICE));
    s = MIN(s, MAX_SPLITS);
    s = MIN(s, MIN(max_elems(c), (gsize) G_MAXINT32) / MAX(wn, 1));
    return (guint32) MAX(s, 1);
}

/* Images per chunk of the weight gradient: within one binding (images_per_chunk), and each
 * chunk's reduction of nb out_h out_w steps needs a slice per max_slice() of them, the slices'
 * copies of dweight fitting one binding too.  0 (deferred error set) when one image does not. */
static gsize weight_images_per_chunk(LmnVkContext *c, const LmnConv2dDesc *d, gsize wn,
                                     const char *name)
{
    const gsize per_x = (gsize) (d->c * d->h * d->w), per_dy = (gsize) (d->k * d->out_h * d->out_w);
    gsize per = images_per_chunk(c, d, per_x, per_dy, name);
    if (per == 0)
        return 0;
    const gsize ohw = (gsize) (d->out_h * d->out_w);
    per = MIN(per, max_elems(c) / MAX(wn, 1) * max_slice(c) / ohw);
    if (per == 0)
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                         "vulkan: %s: the split reduction over one image (%" G_GSIZE_FORMAT
                         " slices of %" G_GSIZE_FORMAT " weights) exceeds maxStorageBufferRange",
                         name, ceil_div(ohw, max_slice(c)), wn);
    return per;
}

void lmn_vk_conv2d_backward_weights(gpointer ctx, const LmnConv2dDesc *d, const LmnTensor *x,
                                    const LmnTensor *dy, LmnTensor *dweight, float beta)
{
    LmnVkContext *c = ctx;
    const char *name = "conv2d_backward_weights";
    g_mutex_lock(&c->lock);
    const gsize per_x = (gsize) (d->c * d->h * d->w), per_dy = (gsize) (d->k * d->out_h * d->out_w);
    const gsize wn = (gsize) (d->k * (d->c / d->groups) * d->kernel_h * d->kernel_w);
    const gsize per =
        c->error == NULL && desc_fits(c, d, name) ? weight_images_per_chunk(c, d, wn, name) : 0;
    ConvPush p = push_of(d);
    LmnVkBinding b[3];
    if (per > 0 && lmn_vk_bind_tensor(c, dweight, 0, wn, TRUE, &b[2], &p.off_c, name)) {
        p.m = (guint32) p.kg;
        p.n = (guint32) (p.cg * d->kernel_h * d->kernel_w);
        /* Chunks of images accumulate in order: the first applies beta, the others add. */
        for (gsize n0 = 0; n0 < (gsize) d->n; n0 += per) {
            const gsize nb = MIN(per, (gsize) d->n - n0);
            p.kdim = (guint32) (nb * d->out_h * d->out_w);
            if (!lmn_vk_bind_tensor(c, x, n0 * per_x, nb * per_x, FALSE, &b[0], &p.off_b, name) ||
                !lmn_vk_bind_tensor(c, dy, n0 * per_dy, nb * per_dy, FALSE, &b[1], &p.off_a, name))
                break;
            const gsize splits = MAX(split_count(c, &p, d, wn), ceil_div(p.kdim, max_slice(c)));
            split_gemm(c, OP_BACKWARD_WEIGHTS, d, b, &p, wn, splits, n0 == 0 ? beta : 1.0f);
        }
    }
    g_mutex_unlock(&c->lock);
}
