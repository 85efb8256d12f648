/* Lamina Vulkan backend — the op set (ops.h) as compute dispatches.
 *
 * Every tensor is bound at its span's offset rounded down to minStorageBufferOffsetAlignment,
 * with the remaining element offset passed as a push constant, so views at any element offset
 * work.  Ops dispatch in chunks whenever a range would exceed maxStorageBufferRange
 * (LAMINA_VK_MAX_STORAGE_RANGE lowers it, which is how lavapipe tests the chunked path):
 * element-wise ops by elements, row ops (softmax, the cross-entropy ops, gather, copy_block) by
 * whole rows, bias_grad and the batch-norm passes by channel groups and outer planes (the
 * per-channel sums of chunks combined in a fixed order, beta applied once), image ops by
 * (batch, channel) planes, reductions by whole blocks of their fixed block layout,
 * scatter_add_rows by source rows and (with its indices read back) table rows; gather_rows
 * from a table above the range copies rows with transfer commands.  Still refused: a single
 * row (or one channel's [inner] row) larger than the range.
 * Reductions are deterministic: fixed blocks per workgroup, a shared-memory tree inside each,
 * then one workgroup summing the partials in order.  They accumulate in float, so results differ
 * from the CPU backend's double sums by rounding only.
 */
#include "vk-private.h"

#include <math.h>
#include <string.h>

#define MAX_GROUPS 4096u

typedef struct {
    const LmnTensor *t;
    gboolean write;
    gboolean whole; /* bound in full (whole_n elements) in every chunk, e.g. a bias */
    gsize whole_n;
} Arg;

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

gboolean lmn_vk_bind_tensor(LmnVkContext *c, const LmnTensor *t, gsize e0, gsize n, gboolean write,
                            LmnVkBinding *b, guint32 *off, const char *op)
{
    const LmnVkBuffer *buf = t->buffer;
    VkDeviceSize byte = buf->offset + t->offset + e0 * 4;
    VkDeviceSize aligned = byte / c->alignment * c->alignment;
    VkDeviceSize range = byte - aligned + MAX(n, 1) * 4;
    if (range > c->max_range) {
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                         "vulkan: %s: an operand of %" G_GSIZE_FORMAT " elements exceeds "
                         "maxStorageBufferRange (%" G_GUINT64_FORMAT " bytes)",
                         op, n, (guint64) c->max_range);
        return FALSE;
    }
    b->buffer = lmn_vk_buffer_handle(buf);
    b->offset = aligned;
    b->range = range;
    b->write = write;
    *off = (guint32) ((byte - aligned) / 4);
    return TRUE;
}

#define bind lmn_vk_bind_tensor

/* The most elements one binding may span at any element offset (the offset is rounded down to
 * the binding alignment, which costs up to alignment - 4 bytes of the range). */
static gsize max_elems(LmnVkContext *c)
{
    return (gsize) ((c->max_range - c->alignment) / 4 + 1);
}

/* A tensor view of a whole scratch buffer, for binding it in chunks like a tensor. */
static LmnTensor scratch_tensor(LmnVkBuffer *buf)
{
    LmnTensor t = {0};
    t.buffer = buf;
    t.dtype = LMN_DTYPE_F32;
    return t;
}

/* A view of @t from element @e0 (for binding it at an offset; only buffer, offset and dtype are
 * set, which is all binding uses). */
static LmnTensor view_at(const LmnTensor *t, gsize e0)
{
    LmnTensor v = {0};
    v.buffer = t->buffer;
    v.dtype = t->dtype;
    v.offset = t->offset + e0 * lmn_dtype_size(t->dtype);
    return v;
}

static void bind_dummy(LmnVkContext *c, LmnVkBinding *b)
{
    *b = (LmnVkBinding){lmn_vk_buffer_handle(c->dummy), c->dummy->offset, c->dummy->size, FALSE};
}

static guint32 groups_for(gsize n)
{
    gsize g = (n + LMN_VK_LOCAL_SIZE - 1) / LMN_VK_LOCAL_SIZE;
    return (guint32) CLAMP(g, 1, MAX_GROUPS); /* the shaders loop over the rest */
}

/* One element-wise shader over @n elements in chunks of whole @unit multiples; push constants
 * are {n, element offset per arg, @extra...}. */
static void elementwise_at(LmnVkContext *c, LmnVkShader shader, const Arg *args, guint n_args,
                           gsize n, gsize unit, const guint32 *extra, guint n_extra, gint base_slot,
                           const char *op);

static void elementwise(LmnVkContext *c, LmnVkShader shader, const Arg *args, guint n_args, gsize n,
                        gsize unit, const guint32 *extra, guint n_extra, const char *op)
{
    elementwise_at(c, shader, args, n_args, n, unit, extra, n_extra, -1, op);
}

/* As elementwise(); with @base_slot >= 0, extra[base_slot], extra[base_slot + 1] receive the
 * chunk's first element index (64-bit, low word first), for shaders whose values depend on it. */
static void elementwise_at(LmnVkContext *c, LmnVkShader shader, const Arg *args, guint n_args,
                           gsize n, gsize unit, const guint32 *extra, guint n_extra, gint base_slot,
                           const char *op)
{
    if (n == 0 || c->error != NULL)
        return;
    VkPipeline pipeline = lmn_vk_builtin_pipeline(c, shader);
    gsize chunk = (c->max_range - c->alignment) / 4;
    chunk = chunk / unit * unit;
    if (chunk == 0) {
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                         "vulkan: %s: a unit of %" G_GSIZE_FORMAT " elements exceeds "
                         "maxStorageBufferRange",
                         op, unit);
        return;
    }
    for (gsize e0 = 0; e0 < n; e0 += chunk) {
        const gsize ne = MIN(chunk, n - e0);
        guint32 push[LMN_VK_PUSH_BYTES / 4] = {(guint32) ne};
        LmnVkBinding b[LMN_VK_MAX_BINDINGS];
        for (guint i = 0; i < n_args; i++) {
            gboolean ok =
                args[i].whole
                    ? bind(c, args[i].t, 0, args[i].whole_n, args[i].write, &b[i], &push[1 + i], op)
                    : bind(c, args[i].t, e0, ne, args[i].write, &b[i], &push[1 + i], op);
            if (!ok)
                return;
        }
        if (n_extra > 0)
            memcpy(push + 1 + n_args, extra, n_extra * sizeof(guint32));
        if (base_slot >= 0) {
            push[1 + n_args + base_slot] = (guint32) ((guint64) e0 & 0xffffffffu);
            push[1 + n_args + base_slot + 1] = (guint32) ((guint64) e0 >> 32);
        }
        lmn_vk_dispatch(c, pipeline, b, n_args, push, (1 + n_args + n_extra) * 4, groups_for(ne), 1,
                        1);
    }
}

#define LOCK(c) g_mutex_lock(&(c)->lock)
#define UNLOCK(c) g_mutex_unlock(&(c)->lock)

void lmn_vk_fill(gpointer ctx, LmnTensor *t, float value)
{
    LmnVkContext *c = ctx;
    guint32 bits;
    if (t->dtype == LMN_DTYPE_I32) {
        /* As on the CPU: NaN and out-of-range values are clamped before converting. */
        float clamped = isnan(value) ? 0.0f : CLAMP(value, (float) G_MININT32, 2147483520.0f);
        gint32 i = (gint32) clamped;
        memcpy(&bits, &i, sizeof bits);
    } else {
        bits = fbits(value);
    }
    Arg a[] = {{t, TRUE}};
    LOCK(c);
    elementwise(c, LMN_VK_SHADER_FILL, a, 1, numel(t), 1, &bits, 1, "fill");
    UNLOCK(c);
}

void lmn_vk_copy(gpointer ctx, LmnTensor *dst, const LmnTensor *src)
{
    LmnVkContext *c = ctx;
    const gsize nbytes = numel(dst) * lmn_dtype_size(dst->dtype);
    const LmnVkBuffer *db = dst->buffer, *sb = src->buffer;
    const VkDeviceSize d0 = db->offset + dst->offset, s0 = sb->offset + src->offset;
    const gboolean same = lmn_vk_buffer_handle(db) == lmn_vk_buffer_handle(sb);
    if (nbytes == 0 || (same && d0 == s0))
        return;
    LOCK(c);
    if (same && d0 < s0 + nbytes && s0 < d0 + nbytes) {
        /* Overlapping views of one buffer: invocations (and a single vkCmdCopyBuffer) would
         * race, so go through a scratch copy, recorded in order like any op. */
        GError *e = NULL;
        LmnVkBuffer *tmp = lmn_vk_buffer_alloc_uninit(c, nbytes, &e);
        if (tmp == NULL) {
            lmn_vk_set_error(c, e->domain, e->code, "%s", e->message);
            g_error_free(e);
        } else {
            lmn_vk_record_copy(c, lmn_vk_buffer_handle(sb), s0, lmn_vk_buffer_handle(tmp),
                               tmp->offset, nbytes);
            lmn_vk_record_copy(c, lmn_vk_buffer_handle(tmp), tmp->offset, lmn_vk_buffer_handle(db),
                               d0, nbytes);
            lmn_vk_buffer_free_deferred(c, tmp);
        }
    } else {
        Arg a[] = {{dst, TRUE}, {src, FALSE}};
        elementwise(c, LMN_VK_SHADER_COPY, a, 2, nbytes / 4, 1, NULL, 0, "copy");
    }
    UNLOCK(c);
}

void lmn_vk_unary(gpointer ctx, LmnUnaryOp op, const LmnTensor *x, LmnTensor *y, float alpha)
{
    LmnVkContext *c = ctx;
    if (op == LMN_UNARY_IDENTITY && x->buffer == y->buffer && x->offset == y->offset)
        return;
    guint32 extra[] = {(guint32) op, fbits(alpha), 0};
    Arg a[] = {{x, FALSE}, {y, TRUE}};
    LOCK(c);
    elementwise(c, LMN_VK_SHADER_UNARY, a, 2, numel(y), 1, extra, 3, "unary");
    UNLOCK(c);
}

void lmn_vk_unary_backward(gpointer ctx, LmnUnaryOp op, const LmnTensor *x, const LmnTensor *y,
                           const LmnTensor *dy, LmnTensor *dx, float alpha)
{
    LmnVkContext *c = ctx;
    guint32 extra[] = {(guint32) op, fbits(alpha)};
    Arg a[] = {{x, FALSE}, {y, FALSE}, {dy, FALSE}, {dx, TRUE}};
    LOCK(c);
    elementwise(c, LMN_VK_SHADER_UNARY_BACKWARD, a, 4, numel(dx), 1, extra, 2, "unary_backward");
    UNLOCK(c);
}

void lmn_vk_binary(gpointer ctx, LmnBinaryOp op, const LmnTensor *a, const LmnTensor *b,
                   LmnTensor *out)
{
    LmnVkContext *c = ctx;
    guint32 extra[] = {(guint32) op, 0, 0};
    Arg args[] = {{a, FALSE}, {b, FALSE}, {out, TRUE}};
    LOCK(c);
    elementwise(c, LMN_VK_SHADER_BINARY, args, 3, numel(out), 1, extra, 3, "binary");
    UNLOCK(c);
}

void lmn_vk_axpby(gpointer ctx, float alpha, const LmnTensor *x, float beta, LmnTensor *y)
{
    LmnVkContext *c = ctx;
    guint32 extra[] = {3, fbits(alpha), fbits(beta)}; /* binary.comp's op 3 */
    Arg args[] = {{x, FALSE}, {y, FALSE}, {y, TRUE}};
    LOCK(c);
    elementwise(c, LMN_VK_SHADER_BINARY, args, 3, numel(y), 1, extra, 3, "axpby");
    UNLOCK(c);
}

void lmn_vk_bias_add(gpointer ctx, LmnTensor *y, const LmnTensor *bias, gint64 outer,
                     gint64 channels, gint64 inner)
{
    LmnVkContext *c = ctx;
    if (channels <= 0 || inner <= 0)
        return;
    guint32 extra[] = {(guint32) channels, (guint32) inner};
    Arg a[] = {{y, TRUE}, {bias, FALSE, TRUE, (gsize) channels}};
    LOCK(c);
    /* Chunks start at whole [channels, inner] planes so the shader's channel index holds. */
    elementwise(c, LMN_VK_SHADER_BIAS_ADD, a, 2, (gsize) (outer * channels * inner),
                (gsize) (channels * inner), extra, 2, "bias_add");
    UNLOCK(c);
}

/* A scratch buffer for partial results, released after the batch that uses it. */
static LmnVkBuffer *scratch(LmnVkContext *c, gsize n_floats, LmnVkBinding *b)
{
    GError *e = NULL;
    LmnVkBuffer *buf = lmn_vk_buffer_alloc_uninit(c, n_floats * 4, &e);
    if (buf == NULL) {
        if (c->error == NULL)
            c->error = e;
        else
            g_error_free(e);
        return NULL;
    }
    *b = (LmnVkBinding){lmn_vk_buffer_handle(buf), buf->offset, buf->size, TRUE};
    return buf;
}

static void scratch_done(LmnVkContext *c, LmnVkBuffer *buf)
{
    if (buf != NULL)
        lmn_vk_buffer_free_deferred(c, buf);
}

/* Workgroups per channel for a per-channel pass (batch norm, bias gradient) over @count samples:
 * one per 8192 samples, at most 64, so that the 16 channels of a [128, 16, 28, 28] batch run as
 * 192 workgroups, not 16 (a GPU has a hundred or more compute units).  It depends on the shape
 * only, so results do too.
 * LAMINA_VK_CHANNEL_SPLITS=N (c->channel_splits) forces N (tests: the split modes on small
 * shapes). */
static guint32 channel_splits(const LmnVkContext *c, gsize count)
{
    if (c->channel_splits > 0)
        return (guint32) MIN(c->channel_splits, MAX(count, 1));
    return (guint32) CLAMP(count / 8192, 1, 64);
}

void lmn_vk_bias_grad(gpointer ctx, LmnTensor *db, const LmnTensor *dy, gint64 outer,
                      gint64 channels, gint64 inner, float beta)
{
    LmnVkContext *c = ctx;
    if (channels <= 0)
        return;
    LOCK(c);
    const gsize C = (gsize) channels, in = (gsize) MAX(inner, 0), plane = C * in, me = max_elems(c);
    /* Channel groups within the workgroup-count limit whose [group, inner] rows fit a binding;
     * the shader's channel stride stays the full channel count, so a group is dy bound from
     * its first channel.  Within a group, chunks of outer planes whose span fits. */
    gsize cg = MIN(C, (gsize) c->max_groups_x);
    if (in > 0)
        cg = MIN(cg, me / in);
    if (cg == 0)
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                         "vulkan: bias_grad: a row of %" G_GINT64_FORMAT
                         " elements exceeds maxStorageBufferRange",
                         inner);
    for (gsize c0 = 0; cg > 0 && c0 < C && c->error == NULL; c0 += cg) {
        const gsize nc = MIN(cg, C - c0);
        const gsize per = plane == 0 ? (gsize) MAX(outer, 1) : (me - nc * in) / plane + 1;
        const LmnTensor dbv = view_at(db, c0), dyv = view_at(dy, c0 * in);
        /* The first outer chunk applies beta, the later ones add to it (beta 1): beta once,
         * and a fixed chunk order, so the result is deterministic. */
        gint64 o0 = 0;
        do {
            const gint64 no = MIN((gint64) per, outer - o0);
            const gsize span = no <= 0 ? 0 : (gsize) (no - 1) * plane + nc * in;
            /* off_db, off_dy, outer, channels, inner, beta, mode, splits, off_part */
            guint32 push[9] = {0,
                               0,
                               (guint32) MAX(no, 0),
                               (guint32) channels,
                               (guint32) inner,
                               fbits(o0 == 0 ? beta : 1.0f),
                               0,
                               1,
                               0};
            LmnVkBinding b[3];
            if (!bind(c, &dbv, 0, nc, TRUE, &b[0], &push[0], "bias_grad") ||
                !bind(c, &dyv, (gsize) MAX(o0, 0) * plane, span, FALSE, &b[1], &push[1],
                      "bias_grad"))
                break;
            /* The whole of the channels' samples in one binding and enough of them: several
             * workgroups per channel (mode 1), then their partials in order (mode 2). */
            const guint32 S = no == outer ? channel_splits(c, (gsize) MAX(no, 0) * in) : 1;
            LmnVkBuffer *pb = S > 1 ? scratch(c, nc * S, &b[2]) : NULL;
            if (S > 1 && pb == NULL)
                break;
            if (pb == NULL)
                b[2] = b[0]; /* unused by mode 0: a written binding of this dispatch */
            VkPipeline pipe = lmn_vk_builtin_pipeline(c, LMN_VK_SHADER_BIAS_GRAD);
            if (S > 1) {
                push[6] = 1;
                push[7] = S;
                lmn_vk_dispatch(c, pipe, b, 3, push, sizeof push, (guint32) nc, S, 1);
                push[6] = 2;
            }
            lmn_vk_dispatch(c, pipe, b, 3, push, sizeof push, (guint32) nc, 1, 1);
            scratch_done(c, pb);
            o0 += MAX(no, 1);
        } while (o0 < outer);
    }
    UNLOCK(c);
}

typedef struct {
    guint32 n, off_x, off_part, off_out, mode, block, alpha, beta, out_int;
} ReducePush;

/* Pass 1 of reduce.comp: out[0] = beta out[0] + alpha * sum(part[0 .. n)). */
static void reduce_final(LmnVkContext *c, const LmnVkBinding *part, guint32 off_part, guint32 n,
                         LmnTensor *out, float alpha, float beta, const char *op)
{
    LmnVkBinding b[4];
    ReducePush p = {.n = n,
                    .off_part = off_part,
                    .mode = 3,
                    .alpha = fbits(alpha),
                    .beta = fbits(beta),
                    .out_int = out->dtype == LMN_DTYPE_I32};
    bind_dummy(c, &b[0]);
    b[1] = *part;
    b[1].write = FALSE;
    if (!bind(c, out, 0, 1, TRUE, &b[2], &p.off_out, op))
        return;
    b[3] = b[2];
    lmn_vk_dispatch(c, lmn_vk_builtin_pipeline(c, LMN_VK_SHADER_REDUCE), b, 4, &p, sizeof p, 1, 1,
                    1);
}

/* Both passes of reduce.comp over the @n floats of @x.  The block layout depends on n (and on
 * maxStorageBufferRange when a block would not fit one binding) only, so the summation order
 * (and result) is fixed; above the range, pass 0 runs in chunks of whole blocks writing their
 * partials at their block index, so chunking changes nothing in the sum. */
static void reduce_tensor(LmnVkContext *c, LmnReduceOp op, const LmnTensor *x, gsize n,
                          LmnTensor *out, float alpha, float beta, const char *name)
{
    const gsize max_block = max_elems(c);
    gsize n_groups = CLAMP((n + 4095) / 4096, 1, 256);
    gsize block = MAX((n + n_groups - 1) / n_groups, 1);
    if (block > max_block) {
        block = max_block;
        n_groups = (n + block - 1) / block;
    }
    const gsize per_chunk = MIN(max_block / block, (gsize) c->max_groups_x);
    if (n_groups > max_block) {
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                         "vulkan: %s: %" G_GSIZE_FORMAT " elements exceed what two passes "
                         "can reduce",
                         name, n);
        return;
    }
    LmnVkBinding b[4];
    LmnVkBuffer *part = scratch(c, n_groups, &b[1]);
    if (part == NULL)
        return;
    for (gsize g0 = 0; g0 < n_groups; g0 += per_chunk) {
        const gsize ng = MIN(per_chunk, n_groups - g0), e0 = g0 * block;
        const gsize ne = MIN(n - e0, ng * block);
        ReducePush p = {.n = (guint32) ne,
                        .off_part = (guint32) g0,
                        .mode = (guint32) op,
                        .block = (guint32) block};
        if (!bind(c, x, e0, ne, FALSE, &b[0], &p.off_x, name))
            break;
        /* The output slots are writable in the shader: bind the (written) partials there
         * rather than the shared dummy, which would look written to every later dispatch. */
        b[2] = b[1];
        b[3] = b[1];
        lmn_vk_dispatch(c, lmn_vk_builtin_pipeline(c, LMN_VK_SHADER_REDUCE), b, 4, &p, sizeof p,
                        (guint32) ng, 1, 1);
    }
    reduce_final(c, &b[1], 0, (guint32) n_groups, out, alpha, beta, name);
    scratch_done(c, part);
}

void lmn_vk_reduce(gpointer ctx, LmnReduceOp op, const LmnTensor *x, LmnTensor *out, float alpha,
                   float beta)
{
    LmnVkContext *c = ctx;
    LOCK(c);
    reduce_tensor(c, op, x, numel(x), out, alpha, beta, "reduce");
    UNLOCK(c);
}

typedef struct {
    guint32 rows, k, off_x, off_l, off_p, off_rl, s, mode, off_dx, scale;
} XentPush;

/* softmax_xent.comp over @rows rows into a scratch row buffer, then its sum into @out.  Rows
 * go in chunks that fit maxStorageBufferRange and the workgroup count limit; each row's value
 * lands at its index, so the sum is the same however the rows were chunked. */
static void xent_rows(LmnVkContext *c, const LmnTensor *logits, const LmnTensor *labels,
                      LmnTensor *probs, LmnTensor *out, float smoothing, guint32 mode, float alpha,
                      float beta, LmnTensor *dx, float scale, const char *op)
{
    const gsize rows = numel(labels);
    const gsize k = numel(logits) / rows;
    const gsize per = MIN(max_elems(c) / MAX(k, 1), (gsize) c->max_groups_x);
    if (per == 0) {
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                         "vulkan: %s: a row of %" G_GSIZE_FORMAT " classes exceeds "
                         "maxStorageBufferRange",
                         op, k);
        return;
    }
    LmnVkBinding b[5];
    LmnVkBuffer *row_buf = scratch(c, rows, &b[3]);
    if (row_buf == NULL)
        return;
    const LmnTensor rt = scratch_tensor(row_buf);
    gboolean ok = TRUE;
    for (gsize r0 = 0; r0 < rows && ok; r0 += per) {
        const gsize nr = MIN(per, rows - r0);
        XentPush p = {.rows = (guint32) nr,
                      .k = (guint32) k,
                      .s = fbits(smoothing),
                      .mode = dx != NULL ? 2u : mode,
                      .scale = fbits(scale)};
        ok = bind(c, logits, r0 * k, nr * k, FALSE, &b[0], &p.off_x, op) &&
             bind(c, labels, r0, nr, FALSE, &b[1], &p.off_l, op) &&
             bind(c, &rt, r0, nr, TRUE, &b[3], &p.off_rl, op);
        if (ok && probs != NULL)
            ok = bind(c, probs, r0 * k, nr * k, TRUE, &b[2], &p.off_p, op);
        else if (ok)
            b[2] = b[3]; /* count_correct writes no probs; a writable slot gets written scratch */
        if (ok && dx != NULL)
            ok = bind(c, dx, r0 * k, nr * k, TRUE, &b[4], &p.off_dx, op);
        else if (ok)
            b[4] = b[2]; /* no dx: the slot repeats a written binding (never the dummy) */
        if (ok)
            lmn_vk_dispatch(c, lmn_vk_builtin_pipeline(c, LMN_VK_SHADER_SOFTMAX_XENT), b, 5, &p,
                            sizeof p, (guint32) nr, 1, 1);
    }
    if (ok) {
        if (rows <= max_elems(c)) {
            LmnVkBinding all = {lmn_vk_buffer_handle(row_buf), row_buf->offset, row_buf->size,
                                TRUE};
            reduce_final(c, &all, 0, (guint32) rows, out, alpha, beta, op);
        } else {
            reduce_tensor(c, LMN_REDUCE_SUM, &rt, rows, out, alpha, beta, op);
        }
    }
    scratch_done(c, row_buf);
}

void lmn_vk_softmax_xent(gpointer ctx, const LmnTensor *logits, const LmnTensor *labels,
                         LmnTensor *probs, LmnTensor *loss, float smoothing)
{
    LmnVkContext *c = ctx;
    const gsize rows = numel(labels);
    LOCK(c);
    if (rows == 0 || numel(logits) == 0) {
        guint32 zero = 0;
        Arg a[] = {{loss, TRUE}};
        elementwise(c, LMN_VK_SHADER_FILL, a, 1, 1, 1, &zero, 1, "softmax_xent");
    } else {
        xent_rows(c, logits, labels, probs, loss, smoothing, 0, (float) (1.0 / (double) rows), 0.0f,
                  NULL, 0.0f, "softmax_xent");
    }
    UNLOCK(c);
}

void lmn_vk_softmax_xent_grad(gpointer ctx, const LmnTensor *logits, const LmnTensor *labels,
                              LmnTensor *probs, LmnTensor *loss, float smoothing, LmnTensor *dx,
                              float scale)
{
    LmnVkContext *c = ctx;
    if (numel(labels) == 0 || numel(logits) == 0) {
        lmn_vk_softmax_xent(ctx, logits, labels, probs, loss, smoothing);
        return;
    }
    LOCK(c);
    xent_rows(c, logits, labels, probs, loss, smoothing, 0, (float) (1.0 / (double) numel(labels)),
              0.0f, dx, scale, "softmax_xent");
    UNLOCK(c);
}

void lmn_vk_count_correct(gpointer ctx, const LmnTensor *logits, const LmnTensor *labels,
                          LmnTensor *out)
{
    LmnVkContext *c = ctx;
    if (numel(labels) == 0 || numel(logits) == 0)
        return;
    LOCK(c);
    xent_rows(c, logits, labels, NULL, out, 0.0f, 1, 1.0f, 1.0f, NULL, 0.0f, "count_correct");
    UNLOCK(c);
}

void lmn_vk_softmax_xent_backward(gpointer ctx, const LmnTensor *probs, const LmnTensor *labels,
                                  LmnTensor *dx, float scale, float smoothing)
{
    LmnVkContext *c = ctx;
    const gsize rows = numel(labels), n = numel(probs);
    if (rows == 0 || n == 0)
        return;
    LOCK(c);
    const gsize k = n / rows, per = max_elems(c) / MAX(k, 1);
    if (per == 0)
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                         "vulkan: softmax_xent_backward: a row of %" G_GSIZE_FORMAT
                         " classes exceeds maxStorageBufferRange",
                         k);
    /* Chunks of whole rows, so each element's label index stays in its chunk. */
    for (gsize r0 = 0; per > 0 && r0 < rows; r0 += per) {
        const gsize nr = MIN(per, rows - r0);
        guint32 push[7] = {(guint32) (nr * k), 0, 0, 0, (guint32) k, fbits(scale),
                           fbits(smoothing)};
        LmnVkBinding b[3];
        if (!bind(c, probs, r0 * k, nr * k, FALSE, &b[0], &push[1], "softmax_xent_backward") ||
            !bind(c, labels, r0, nr, FALSE, &b[1], &push[2], "softmax_xent_backward") ||
            !bind(c, dx, r0 * k, nr * k, TRUE, &b[2], &push[3], "softmax_xent_backward"))
            break;
        lmn_vk_dispatch(c, lmn_vk_builtin_pipeline(c, LMN_VK_SHADER_SOFTMAX_XENT_BACKWARD), b, 3,
                        push, sizeof push, groups_for(nr * k), 1, 1);
    }
    UNLOCK(c);
}

/* Whether @k's SPIR-V variant can run here: metadata within the limits the dispatch below
 * assumes, and every buffer at an offset the device can bind exactly (the kernel ABI has no
 * per-buffer offsets). */
static gboolean spirv_usable(LmnVkContext *c, const LmnKernelDesc *k, LmnTensor *const *buffers)
{
    const LmnKernelSpirv *s = k->spirv;
    if (s == NULL || s->struct_size < sizeof(LmnKernelSpirv) || s->code == NULL ||
        s->code_size == 0 || s->code_size % 4 != 0 || s->code[0] != 0x07230203u ||
        s->required_features != 0 || k->n_buffers > LMN_VK_MAX_BINDINGS ||
        8 + 4 * k->n_scalars > LMN_VK_PUSH_BYTES)
        return FALSE;
    for (guint i = 0; i < k->n_buffers; i++) {
        const LmnVkBuffer *buf = buffers[i]->buffer;
        if ((buf->offset + buffers[i]->offset) % c->alignment != 0 ||
            lmn_tensor_nbytes(buffers[i]) > c->max_range)
            return FALSE;
    }
    return TRUE;
}

void lmn_vk_kernel(gpointer ctx, const LmnKernelDesc *kernel, gsize n, LmnTensor *const *buffers,
                   const float *scalars)
{
    LmnVkContext *c = ctx;
    if (n == 0)
        return;
    LOCK(c);
    if (spirv_usable(c, kernel, buffers)) {
        LmnVkBinding b[LMN_VK_MAX_BINDINGS];
        for (guint i = 0; i < kernel->n_buffers; i++) {
            const LmnVkBuffer *buf = buffers[i]->buffer;
            b[i] = (LmnVkBinding){lmn_vk_buffer_handle(buf), buf->offset + buffers[i]->offset,
                                  MAX(lmn_tensor_nbytes(buffers[i]), 4),
                                  kernel->access[i] != LMN_KERNEL_READ};
        }
        VkPipeline pipeline = lmn_vk_kernel_pipeline(c, kernel);
        const gsize per_dispatch = (gsize) c->max_groups_x * LMN_VK_LOCAL_SIZE;
        for (gsize first = 0; first < n; first += per_dispatch) {
            const gsize count = MIN(per_dispatch, n - first);
            guint32 push[LMN_VK_PUSH_BYTES / 4] = {(guint32) count, (guint32) first};
            if (kernel->n_scalars > 0)
                memcpy(push + 2, scalars, kernel->n_scalars * sizeof(float));
            lmn_vk_dispatch(c, pipeline, b, kernel->n_buffers, push, 8 + 4 * kernel->n_scalars,
                            (guint32) ((count + LMN_VK_LOCAL_SIZE - 1) / LMN_VK_LOCAL_SIZE), 1, 1);
        }
        UNLOCK(c);
        return;
    }
    if (!g_hash_table_contains(c->warned_kernels, kernel->name)) {
        g_hash_table_add(c->warned_kernels, g_strdup(kernel->name));
        g_warning("vulkan: kernel '%s' has no usable SPIR-V variant; running its CPU "
                  "implementation on host copies (slow: it waits for the device)",
                  kernel->name);
    }
    float scalar_copy[LMN_KERNEL_MAX_SCALARS] = {0};
    if (kernel->n_scalars > 0)
        memcpy(scalar_copy, scalars,
               MIN(kernel->n_scalars, LMN_KERNEL_MAX_SCALARS) * sizeof(float));
    void *ptrs[LMN_KERNEL_MAX_BUFFERS] = {0};
    const guint nb = MIN(kernel->n_buffers, LMN_KERNEL_MAX_BUFFERS);
    if (c->direct) {
        /* Mapped memory: after the pending work, the CPU function runs on it directly, and work
         * recorded later sees its writes (coherent memory, next submission). */
        lmn_vk_wait_idle(c);
        for (guint i = 0; i < nb; i++)
            ptrs[i] = (char *) lmn_vk_buffer_map(buffers[i]->buffer) + buffers[i]->offset;
        if (c->error == NULL && c->lost == NULL)
            kernel->cpu(0, n, ptrs, scalar_copy);
        UNLOCK(c);
        return;
    }
    /* Otherwise on host copies: read every buffer, run, write back the written ones (the
     * writes are recorded in order with the ops that follow). */
    gboolean ok = TRUE;
    for (guint i = 0; i < nb && ok; i++) {
        ptrs[i] = g_malloc(MAX(lmn_tensor_nbytes(buffers[i]), 4));
        ok = lmn_vk_host_read(c, buffers[i]->buffer, buffers[i]->offset, ptrs[i],
                              lmn_tensor_nbytes(buffers[i]));
    }
    if (ok) {
        kernel->cpu(0, n, ptrs, scalar_copy);
        for (guint i = 0; i < nb; i++)
            if (kernel->access[i] != LMN_KERNEL_READ)
                lmn_vk_host_write(c, buffers[i]->buffer, buffers[i]->offset, ptrs[i],
                                  lmn_tensor_nbytes(buffers[i]));
    }
    for (guint i = 0; i < nb; i++)
        g_free(ptrs[i]);
    UNLOCK(c);
}

/* ==== ABI 1.1 ==== */

void lmn_vk_clamp(gpointer ctx, LmnTensor *t, float lo, float hi)
{
    LmnVkContext *c = ctx;
    guint32 extra[] = {100, fbits(lo), fbits(hi)}; /* unary.comp's clamp */
    Arg a[] = {{t, FALSE}, {t, TRUE}};
    LOCK(c);
    elementwise(c, LMN_VK_SHADER_UNARY, a, 2, numel(t), 1, extra, 3, "clamp");
    UNLOCK(c);
}

static void random_op(LmnVkContext *c, const LmnTensor *x, LmnTensor *y, LmnTensor *mask,
                      guint32 mode, float p, float mean, float std, guint64 seed, guint64 stream,
                      const char *op)
{
    const float keep = mode == 0 ? 1.0f / (1.0f - p) : 0.0f;
    guint32 extra[] = {mode,
                       fbits(p),
                       fbits(keep),
                       fbits(mean),
                       fbits(std),
                       (guint32) seed,
                       (guint32) (seed >> 32),
                       (guint32) stream,
                       (guint32) (stream >> 32),
                       0,
                       0};
    /* random_normal has no input or mask: its y stands in for both (written anyway). */
    Arg a[] = {{x != NULL ? x : y, FALSE}, {y, TRUE}, {mask != NULL ? mask : y, TRUE}};
    elementwise_at(c, LMN_VK_SHADER_RANDOM, a, 3, numel(y), 1, extra, G_N_ELEMENTS(extra), 9, op);
}

void lmn_vk_dropout(gpointer ctx, const LmnTensor *x, LmnTensor *y, LmnTensor *mask, float p,
                    guint64 seed, guint64 stream)
{
    LmnVkContext *c = ctx;
    LOCK(c);
    random_op(c, x, y, mask, 0, p, 0, 0, seed, stream, "dropout");
    UNLOCK(c);
}

void lmn_vk_random_normal(gpointer ctx, LmnTensor *t, float mean, float std, guint64 seed,
                          guint64 stream)
{
    LmnVkContext *c = ctx;
    LOCK(c);
    random_op(c, NULL, t, NULL, 1, 0, mean, std, seed, stream, "random_normal");
    UNLOCK(c);
}

static void softmax_rows(LmnVkContext *c, const LmnTensor *x, const LmnTensor *dy, LmnTensor *o,
                         gint64 rows, gint64 cols, guint32 mode, const char *op)
{
    if (rows <= 0 || cols <= 0)
        return;
    /* One workgroup per row, in chunks of rows within the range and the group-count limit. */
    const gsize per = MIN(max_elems(c) / (gsize) cols, (gsize) c->max_groups_x);
    if (per == 0) {
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                         "vulkan: %s: a row of %" G_GINT64_FORMAT " elements exceeds "
                         "maxStorageBufferRange",
                         op, cols);
        return;
    }
    for (gsize r0 = 0; r0 < (gsize) rows; r0 += per) {
        const gsize nr = MIN(per, (gsize) rows - r0), e0 = r0 * (gsize) cols, n = nr * (gsize) cols;
        guint32 push[6] = {(guint32) nr, (guint32) cols, 0, 0, 0, mode};
        LmnVkBinding b[3];
        if (!bind(c, x, e0, n, FALSE, &b[0], &push[2], op) ||
            !bind(c, dy != NULL ? dy : x, e0, n, FALSE, &b[1], &push[3], op) ||
            !bind(c, o, e0, n, TRUE, &b[2], &push[4], op))
            return;
        lmn_vk_dispatch(c, lmn_vk_builtin_pipeline(c, LMN_VK_SHADER_SOFTMAX), b, 3, push,
                        sizeof push, (guint32) nr, 1, 1);
    }
}

void lmn_vk_softmax(gpointer ctx, const LmnTensor *x, LmnTensor *y, gint64 rows, gint64 cols)
{
    LmnVkContext *c = ctx;
    LOCK(c);
    softmax_rows(c, x, NULL, y, rows, cols, 0, "softmax");
    UNLOCK(c);
}

void lmn_vk_softmax_backward(gpointer ctx, const LmnTensor *y, const LmnTensor *dy, LmnTensor *dx,
                             gint64 rows, gint64 cols)
{
    LmnVkContext *c = ctx;
    LOCK(c);
    softmax_rows(c, y, dy, dx, rows, cols, 1, "softmax_backward");
    UNLOCK(c);
}

void lmn_vk_bce_logits(gpointer ctx, const LmnTensor *x, const LmnTensor *target, LmnTensor *loss)
{
    LmnVkContext *c = ctx;
    const gsize n = numel(x);
    LOCK(c);
    if (n == 0) {
        guint32 nan_bits = fbits(NAN); /* the mean of nothing, as PyTorch reports it */
        Arg a[] = {{loss, TRUE}};
        elementwise(c, LMN_VK_SHADER_FILL, a, 1, 1, 1, &nan_bits, 1, "bce_logits");
        UNLOCK(c);
        return;
    }
    /* Per-element terms into scratch (chunked like any element-wise op), then their mean. */
    LmnVkBinding tb;
    LmnVkBuffer *terms = scratch(c, n, &tb);
    if (terms != NULL) {
        const LmnTensor tt = scratch_tensor(terms);
        guint32 extra[] = {0, 0}; /* bce.comp mode 0 */
        Arg a[] = {{x, FALSE}, {target, FALSE}, {&tt, TRUE}};
        elementwise(c, LMN_VK_SHADER_BCE, a, 3, n, 1, extra, 2, "bce_logits");
        reduce_tensor(c, LMN_REDUCE_SUM, &tt, n, loss, (float) (1.0 / (double) n), 0.0f,
                      "bce_logits");
    }
    scratch_done(c, terms);
    UNLOCK(c);
}

void lmn_vk_bce_logits_backward(gpointer ctx, const LmnTensor *x, const LmnTensor *target,
                                LmnTensor *dx, float scale)
{
    LmnVkContext *c = ctx;
    guint32 extra[] = {1, fbits(scale)};
    Arg a[] = {{x, FALSE}, {target, FALSE}, {dx, TRUE}};
    LOCK(c);
    elementwise(c, LMN_VK_SHADER_BCE, a, 3, numel(dx), 1, extra, 2, "bce_logits_backward");
    UNLOCK(c);
}

typedef struct {
    guint32 total, off_s, off_if, off_ii, off_o, mode, n, dim, rows, is_int, ds, ss, beta;
} RowsPush;

/* rows.comp with @src, @indices (either dtype; may be NULL) and the written @o. */
static void rows_op_at(LmnVkContext *c, RowsPush *p, const LmnTensor *src, gsize src_n,
                       gsize src_e0, const LmnTensor *indices, gsize idx_e0, LmnTensor *o,
                       gsize o_n, gsize o_e0, const char *op);

static void rows_op(LmnVkContext *c, RowsPush *p, const LmnTensor *src, gsize src_n, gsize src_e0,
                    const LmnTensor *indices, LmnTensor *o, gsize o_n, gsize o_e0, const char *op)
{
    rows_op_at(c, p, src, src_n, src_e0, indices, 0, o, o_n, o_e0, op);
}

/* As rows_op, with the indices bound from element @idx_e0. */
static void rows_op_at(LmnVkContext *c, RowsPush *p, const LmnTensor *src, gsize src_n,
                       gsize src_e0, const LmnTensor *indices, gsize idx_e0, LmnTensor *o,
                       gsize o_n, gsize o_e0, const char *op)
{
    LmnVkBinding b[4];
    if (!bind(c, src, src_e0, src_n, FALSE, &b[0], &p->off_s, op) ||
        !bind(c, o, o_e0, o_n, TRUE, &b[3], &p->off_o, op))
        return;
    bind_dummy(c, &b[1]);
    bind_dummy(c, &b[2]);
    if (indices != NULL) {
        p->is_int = indices->dtype == LMN_DTYPE_I32;
        if (!bind(c, indices, idx_e0, p->n, FALSE, &b[p->is_int ? 2 : 1],
                  p->is_int ? &p->off_ii : &p->off_if, op))
            return;
    }
    lmn_vk_dispatch(c, lmn_vk_builtin_pipeline(c, LMN_VK_SHADER_ROWS), b, 4, p, sizeof *p,
                    groups_for(p->total), 1, 1);
}

/* The table rows @indices (f32 or i32, @n of them) name, read to the host after the recorded
 * work, with the shader's rule: -1 where out of [0, @rows).  NULL (deferred error) on failure. */
static gint32 *host_row_indices(LmnVkContext *c, const LmnTensor *indices, gsize n, gsize rows)
{
    gint32 *r = g_new(gint32, MAX(n, 1));
    if (!lmn_vk_host_read(c, indices->buffer, indices->offset, r, n * 4)) {
        g_free(r);
        return NULL;
    }
    for (gsize i = 0; i < n; i++) {
        if (indices->dtype == LMN_DTYPE_I32) {
            r[i] = r[i] >= 0 && (gsize) r[i] < rows ? r[i] : -1;
        } else {
            float v;
            memcpy(&v, &r[i], sizeof v);
            r[i] = v >= 0.0f && v < (float) rows ? (gint32) v : -1;
        }
    }
    return r;
}

/* gather_rows from a table above maxStorageBufferRange: transfer commands, which have no range
 * limit, copy each run of consecutive rows (after reading the indices), and fill the rows of
 * out-of-range indices with zeros. */
static void gather_rows_copies(LmnVkContext *c, const LmnTensor *table, const LmnTensor *indices,
                               LmnTensor *out, gsize n, gsize dim, gsize v)
{
    g_autofree gint32 *r = host_row_indices(c, indices, n, v);
    if (r == NULL)
        return;
    const VkBuffer tb = lmn_vk_buffer_handle(table->buffer), ob = lmn_vk_buffer_handle(out->buffer);
    const VkDeviceSize t0 = ((const LmnVkBuffer *) table->buffer)->offset + table->offset;
    const VkDeviceSize o0 = ((const LmnVkBuffer *) out->buffer)->offset + out->offset;
    const VkDeviceSize row = (VkDeviceSize) dim * 4;
    for (gsize i = 0; i < n && c->error == NULL;) {
        gsize run = 1;
        if (r[i] < 0) {
            while (i + run < n && r[i + run] < 0)
                run++;
            lmn_vk_record_fill(c, ob, o0 + i * row, run * row, 0);
        } else {
            while (i + run < n && r[i + run] == r[i] + (gint32) run)
                run++;
            lmn_vk_record_copy(c, tb, t0 + (VkDeviceSize) r[i] * row, ob, o0 + i * row, run * row);
        }
        i += run;
    }
}

void lmn_vk_gather_rows(gpointer ctx, const LmnTensor *table, const LmnTensor *indices,
                        LmnTensor *out, gint64 n, gint64 dim)
{
    LmnVkContext *c = ctx;
    if (n <= 0 || dim <= 0)
        return;
    const gsize v = numel(table) / (gsize) dim;
    LOCK(c);
    if (numel(table) > max_elems(c)) {
        gather_rows_copies(c, table, indices, out, (gsize) n, (gsize) dim, v);
        UNLOCK(c);
        return;
    }
    /* Output rows (and their indices) in chunks within the range; the table is bound whole. */
    const gsize per = max_elems(c) / (gsize) dim;
    if (per == 0)
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                         "vulkan: gather_rows: a row of %" G_GINT64_FORMAT
                         " elements exceeds maxStorageBufferRange",
                         dim);
    for (gsize r0 = 0; per > 0 && r0 < (gsize) n && c->error == NULL; r0 += per) {
        const gsize nr = MIN(per, (gsize) n - r0);
        RowsPush p = {.total = (guint32) (nr * (gsize) dim),
                      .mode = 0,
                      .n = (guint32) nr,
                      .dim = (guint32) dim,
                      .rows = (guint32) v};
        rows_op_at(c, &p, table, numel(table), 0, indices, r0, out, nr * (gsize) dim,
                   r0 * (gsize) dim, "gather_rows");
    }
    UNLOCK(c);
}

/* scatter-add of the @n source rows into the @v-row table @tg (bound whole), in chunks of
 * source rows (with their indices) that fit; the chunks run in index order, so every table
 * element still receives its additions in index order. */
static void scatter_chunks(LmnVkContext *c, const LmnTensor *tg, const LmnTensor *indices,
                           const LmnTensor *src, gsize n, gsize dim, gsize v)
{
    const gsize per = MIN(max_elems(c) / dim, n);
    for (gsize i0 = 0; i0 < n && c->error == NULL; i0 += per) {
        const gsize ni = MIN(per, n - i0);
        RowsPush p = {.total = (guint32) (v * dim),
                      .mode = 1,
                      .n = (guint32) ni,
                      .dim = (guint32) dim,
                      .rows = (guint32) v};
        rows_op_at(c, &p, src, ni * dim, i0 * dim, indices, i0, (LmnTensor *) tg, v * dim, 0,
                   "scatter_add_rows");
    }
}

typedef struct {
    guint32 total, off_s, off_if, off_ii, off_o, mode, n, dim, rows, is_int, j, k;
} ScatterPush;

/* Whether scatter_rows.comp takes the op: every operand bound whole, the sorted keys r * n + i
 * below 2^32 - 1 (the empty key), and the padded key array within one binding. */
static gboolean scatter_sorted_fits(LmnVkContext *c, gsize n, gsize dim, gsize v, gsize padded)
{
    const gsize me = max_elems(c);
    return n <= G_MAXUINT32 / dim && n * dim <= me && v * dim <= me && padded <= me &&
           (guint64) v * n < G_MAXUINT32;
}

/* scatter_add_rows through a sort (scatter_rows.comp): the keys of the @n source rows, a bitonic
 * sort of them padded to @padded (a power of two), then one pass summing each table row's
 * source rows in index order: O(n log^2 n + n dim) work, where one invocation per table element
 * scanning every index (rows.comp mode 1) was O(v n dim). */
static void scatter_sorted(LmnVkContext *c, LmnTensor *tg, const LmnTensor *indices,
                           const LmnTensor *src, gsize n, gsize dim, gsize v, gsize padded)
{
    const char *op = "scatter_add_rows";
    LmnVkBinding b[5];
    LmnVkBuffer *keys = scratch(c, padded, &b[3]);
    if (keys == NULL)
        return;
    ScatterPush p = {.n = (guint32) n, .dim = (guint32) dim, .rows = (guint32) v};
    p.is_int = indices->dtype == LMN_DTYPE_I32;
    bind_dummy(c, &b[1]);
    bind_dummy(c, &b[2]);
    if (bind(c, src, 0, n * dim, FALSE, &b[0], &p.off_s, op) &&
        bind(c, tg, 0, v * dim, TRUE, &b[4], &p.off_o, op) &&
        bind(c, indices, 0, n, FALSE, &b[p.is_int ? 2 : 1], p.is_int ? &p.off_ii : &p.off_if, op)) {
        VkPipeline pipe = lmn_vk_builtin_pipeline(c, LMN_VK_SHADER_SCATTER_ROWS);
        p.mode = 0;
        p.total = (guint32) padded;
        lmn_vk_dispatch(c, pipe, b, 5, &p, sizeof p, groups_for(padded), 1, 1);
        p.mode = 1;
        for (gsize k = 2; k <= padded; k *= 2)
            for (gsize j = k / 2; j > 0; j /= 2) {
                p.k = (guint32) k;
                p.j = (guint32) j;
                lmn_vk_dispatch(c, pipe, b, 5, &p, sizeof p, groups_for(padded), 1, 1);
            }
        p.mode = 2;
        p.total = (guint32) (n * dim);
        lmn_vk_dispatch(c, pipe, b, 5, &p, sizeof p, groups_for(n * dim), 1, 1);
    }
    scratch_done(c, keys);
}

void lmn_vk_scatter_add_rows(gpointer ctx, LmnTensor *table_grad, const LmnTensor *indices,
                             const LmnTensor *src, gint64 n, gint64 dim)
{
    LmnVkContext *c = ctx;
    if (n <= 0 || dim <= 0)
        return;
    const gsize v = numel(table_grad) / (gsize) dim, D = (gsize) dim, me = max_elems(c);
    if (v == 0)
        return;
    gsize padded = 1;
    while (padded < (gsize) n && padded <= G_MAXSIZE / 2)
        padded *= 2;
    LOCK(c);
    /* Every table row receives its source rows' additions in index order, as on the CPU, so the
     * result is deterministic: by sorting where the operands fit (and LAMINA_VK_SCATTER is not
     * "scan"), else one invocation per table element scanning every index. */
    if (D <= me && !c->scatter_scan && scatter_sorted_fits(c, (gsize) n, D, v, padded)) {
        scatter_sorted(c, table_grad, indices, src, (gsize) n, D, v, padded);
    } else if (D > me) {
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                         "vulkan: scatter_add_rows: a row of %" G_GINT64_FORMAT
                         " elements exceeds maxStorageBufferRange",
                         dim);
    } else if (v * D <= me) {
        scatter_chunks(c, table_grad, indices, src, (gsize) n, D, v);
    } else {
        /* A table above the range, in chunks of rows: with the indices read back, each chunk
         * that any index hits gets them shifted to its first row (-1, skipped, elsewhere). */
        g_autofree gint32 *r = host_row_indices(c, indices, (gsize) n, v);
        g_autofree gint32 *shifted = g_new(gint32, n);
        const gsize tr = me / D;
        for (gsize r0 = 0; r != NULL && r0 < v && c->error == NULL; r0 += tr) {
            const gsize nr = MIN(tr, v - r0);
            gboolean hit = FALSE;
            for (gsize i = 0; i < (gsize) n; i++) {
                const gboolean in = r[i] >= 0 && (gsize) r[i] >= r0 && (gsize) r[i] < r0 + nr;
                shifted[i] = in ? r[i] - (gint32) r0 : -1;
                hit = hit || in;
            }
            if (!hit)
                continue;
            LmnVkBinding unused;
            LmnVkBuffer *ib = scratch(c, (gsize) n, &unused);
            if (ib == NULL)
                break;
            lmn_vk_host_write(c, ib, 0, shifted, (gsize) n * 4);
            LmnTensor it = scratch_tensor(ib);
            it.dtype = LMN_DTYPE_I32;
            const LmnTensor tv = view_at(table_grad, r0 * D);
            scatter_chunks(c, &tv, &it, src, (gsize) n, D, nr);
            scratch_done(c, ib);
        }
    }
    UNLOCK(c);
}

/* copy_block on the host: the spans the rows cover (negative strides included) are read, the
 * rows copied in order, and the destination span written back. */
static void copy_block_host(LmnVkContext *c, LmnTensor *dst, gint64 dst_offset, gint64 dst_stride,
                            const LmnTensor *src, gint64 src_offset, gint64 src_stride, gint64 rows,
                            gint64 cols, float beta)
{
    const gint64 d_lo = dst_offset + MIN(0, (rows - 1) * dst_stride);
    const gint64 d_hi = dst_offset + MAX(0, (rows - 1) * dst_stride) + cols;
    const gint64 s_lo = src_offset + MIN(0, (rows - 1) * src_stride);
    const gint64 s_hi = src_offset + MAX(0, (rows - 1) * src_stride) + cols;
    float *d = NULL;
    const float *s = NULL;
    g_autofree float *dh = NULL, *sh = NULL;
    if (c->direct) {
        lmn_vk_wait_idle(c);
        if (c->error != NULL || c->lost != NULL)
            return;
        d = (float *) ((char *) lmn_vk_buffer_map(dst->buffer) + dst->offset) + dst_offset;
        s = (const float *) ((const char *) lmn_vk_buffer_map(src->buffer) + src->offset) +
            src_offset;
    } else {
        /* Separate copies even for one buffer: the rows are copied in order from the source
         * snapshot, updated as rows land when the spans overlap (as the CPU's memmove does). */
        const gboolean same = dst->buffer == src->buffer && dst->offset == src->offset;
        const gint64 lo = same ? MIN(d_lo, s_lo) : d_lo, hi = same ? MAX(d_hi, s_hi) : d_hi;
        dh = g_new(float, hi - lo);
        if (!lmn_vk_host_read(c, dst->buffer, dst->offset + (gsize) lo * 4, dh,
                              (gsize) (hi - lo) * 4))
            return;
        d = dh + (dst_offset - lo);
        if (same) {
            s = dh + (src_offset - lo);
        } else {
            sh = g_new(float, s_hi - s_lo);
            if (!lmn_vk_host_read(c, src->buffer, src->offset + (gsize) s_lo * 4, sh,
                                  (gsize) (s_hi - s_lo) * 4))
                return;
            s = sh + (src_offset - s_lo);
        }
        for (gint64 r = 0; r < rows; r++) {
            float *dr = d + r * dst_stride;
            const float *sr = s + r * src_stride;
            if (beta == 0.0f)
                memmove(dr, sr, (gsize) cols * sizeof(float));
            else
                for (gint64 q = 0; q < cols; q++)
                    dr[q] = sr[q] + beta * dr[q];
        }
        lmn_vk_host_write(c, dst->buffer, dst->offset + (gsize) lo * 4, dh, (gsize) (hi - lo) * 4);
        return;
    }
    for (gint64 r = 0; r < rows; r++) {
        float *dr = d + r * dst_stride;
        const float *sr = s + r * src_stride;
        if (beta == 0.0f)
            memmove(dr, sr, (gsize) cols * sizeof(float));
        else
            for (gint64 q = 0; q < cols; q++)
                dr[q] = sr[q] + beta * dr[q];
    }
}

void lmn_vk_copy_block(gpointer ctx, LmnTensor *dst, gint64 dst_offset, gint64 dst_stride,
                       const LmnTensor *src, gint64 src_offset, gint64 src_stride, gint64 rows,
                       gint64 cols, float beta)
{
    LmnVkContext *c = ctx;
    if (rows <= 0 || cols <= 0)
        return;
    LOCK(c);
    /* Byte spans the rows cover, to tell real overlap from two views of one arena. */
    gboolean overlap = dst_stride < 0 || src_stride < 0;
    if (!overlap) {
        const LmnVkBuffer *db = dst->buffer, *sb = src->buffer;
        const VkDeviceSize d_lo = db->offset + dst->offset + (VkDeviceSize) dst_offset * 4;
        const VkDeviceSize s_lo = sb->offset + src->offset + (VkDeviceSize) src_offset * 4;
        const VkDeviceSize d_hi = d_lo + (VkDeviceSize) ((rows - 1) * dst_stride + cols) * 4;
        const VkDeviceSize s_hi = s_lo + (VkDeviceSize) ((rows - 1) * src_stride + cols) * 4;
        overlap =
            lmn_vk_buffer_handle(db) == lmn_vk_buffer_handle(sb) && d_lo < s_hi && s_lo < d_hi;
    }
    if (overlap) {
        /* Rows of one buffer may overlap: keep the sequential row order, on the host after the
         * pending work (through the mapping, or on host copies written back in order). */
        copy_block_host(c, dst, dst_offset, dst_stride, src, src_offset, src_stride, rows, cols,
                        beta);
    } else {
        /* Chunks of whole rows whose source and destination spans fit one binding each. */
        const gsize me = max_elems(c), stride = (gsize) MAX(dst_stride, src_stride);
        const gsize per = (gsize) cols > me ? 0
                          : stride == 0     ? (gsize) rows
                                            : (me - (gsize) cols) / stride + 1;
        if (per == 0)
            lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                             "vulkan: copy_block: a row of %" G_GINT64_FORMAT
                             " elements exceeds maxStorageBufferRange",
                             cols);
        for (gsize r0 = 0; per > 0 && r0 < (gsize) rows && c->error == NULL; r0 += per) {
            const gsize nr = MIN(per, (gsize) rows - r0);
            RowsPush p = {.total = (guint32) (nr * (gsize) cols),
                          .mode = 2,
                          .dim = (guint32) cols,
                          .ds = (guint32) dst_stride,
                          .ss = (guint32) src_stride,
                          .beta = fbits(beta)};
            rows_op(c, &p, src, (nr - 1) * (gsize) src_stride + (gsize) cols,
                    (gsize) src_offset + r0 * (gsize) src_stride, NULL, dst,
                    (nr - 1) * (gsize) dst_stride + (gsize) cols,
                    (gsize) dst_offset + r0 * (gsize) dst_stride, "copy_block");
        }
    }
    UNLOCK(c);
}

/* ---- im2col, col2im, pooling (conv.comp) ---- */

typedef struct {
    guint32 mode, total, off_in, off_out, off_arg;
    gint32 h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow;
} ConvPush;

enum {
    CONV_IM2COL = 0,
    CONV_COL2IM = 1,
    CONV_POOL_MAX = 2,
    CONV_POOL_AVG = 3,
    CONV_POOL_MAX_BACKWARD = 4,
    CONV_POOL_AVG_BACKWARD = 5,
};

/* One conv.comp dispatch: @in (@n_in elements) read, @out (@n_out) written, one invocation per
 * element of @out; @arg (i32, @n_arg elements; may be NULL) written by max pooling, read by its
 * backward.  The shader indexes in 32 bits, so larger operands are refused. */
static void conv_op(LmnVkContext *c, guint32 mode, const LmnTensor *in, gsize n_in, LmnTensor *out,
                    gsize n_out, const LmnTensor *arg, gsize n_arg, gboolean arg_write,
                    const LmnConv2dGeom *g, const char *op)
{
    if (n_out == 0 || c->error != NULL)
        return;
    const gint64 dims[] = {g->height,     g->width,      g->kernel_h, g->kernel_w,
                           g->stride_h,   g->stride_w,   g->pad_h,    g->pad_w,
                           g->dilation_h, g->dilation_w, g->out_h,    g->out_w};
    gboolean fits = MAX(MAX(n_in, n_out), n_arg) <= G_MAXINT32;
    for (guint i = 0; i < G_N_ELEMENTS(dims); i++)
        fits = fits && dims[i] >= 0 && dims[i] <= G_MAXINT32 / 4;
    if (!fits) {
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                         "vulkan: %s: operands beyond 32-bit indexing", op);
        return;
    }
    /* Every operand is a stack of batch x channels planes, each element depending on its own
     * plane only: above maxStorageBufferRange the planes go in chunks. */
    const gsize planes = (gsize) MAX(g->batch * g->channels, 1);
    const gsize per_in = n_in / planes, per_out = n_out / planes, per_arg = n_arg / planes;
    const gsize biggest = MAX(MAX(per_in, per_out), per_arg);
    const gsize per = biggest == 0 ? planes : max_elems(c) / biggest;
    if (per == 0) {
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                         "vulkan: %s: one image plane exceeds maxStorageBufferRange", op);
        return;
    }
    for (gsize u0 = 0; u0 < planes; u0 += per) {
        const gsize nu = MIN(per, planes - u0);
        ConvPush p = {.mode = mode, .total = (guint32) (nu * per_out)};
        gint32 *geom = &p.h;
        for (guint i = 0; i < G_N_ELEMENTS(dims); i++)
            geom[i] = (gint32) dims[i];
        LmnVkBinding b[3];
        if (!bind(c, in, u0 * per_in, nu * per_in, FALSE, &b[0], &p.off_in, op) ||
            !bind(c, out, u0 * per_out, nu * per_out, TRUE, &b[1], &p.off_out, op))
            return;
        if (arg != NULL) {
            if (!bind(c, arg, u0 * per_arg, nu * per_arg, arg_write, &b[2], &p.off_arg, op))
                return;
        } else {
            bind_dummy(c, &b[2]);
        }
        lmn_vk_dispatch(c, lmn_vk_builtin_pipeline(c, LMN_VK_SHADER_CONV), b, 3, &p, sizeof p,
                        groups_for(nu * per_out), 1, 1);
    }
}

static gsize image_numel(const LmnConv2dGeom *g)
{
    return (gsize) (g->batch * g->channels * g->height * g->width);
}

static gsize pooled_numel(const LmnConv2dGeom *g)
{
    return (gsize) (g->batch * g->channels * g->out_h * g->out_w);
}

static gsize cols_numel(const LmnConv2dGeom *g)
{
    return pooled_numel(g) * (gsize) (g->kernel_h * g->kernel_w);
}

void lmn_vk_im2col(gpointer ctx, const LmnTensor *x, LmnTensor *cols, const LmnConv2dGeom *g)
{
    LmnVkContext *c = ctx;
    LOCK(c);
    conv_op(c, CONV_IM2COL, x, image_numel(g), cols, cols_numel(g), NULL, 0, FALSE, g, "im2col");
    UNLOCK(c);
}

void lmn_vk_col2im(gpointer ctx, const LmnTensor *cols, LmnTensor *dx, const LmnConv2dGeom *g)
{
    LmnVkContext *c = ctx;
    LOCK(c);
    /* One invocation per pixel gathering its contributions: deterministic, no atomics. */
    conv_op(c, CONV_COL2IM, cols, cols_numel(g), dx, image_numel(g), NULL, 0, FALSE, g, "col2im");
    UNLOCK(c);
}

void lmn_vk_pool2d(gpointer ctx, LmnPoolMode mode, const LmnTensor *x, LmnTensor *y,
                   LmnTensor *argmax, const LmnConv2dGeom *g)
{
    LmnVkContext *c = ctx;
    LOCK(c);
    if (mode == LMN_POOL_MAX && argmax == NULL) {
        /* The shader always writes argmax for MAX: give it a scratch buffer. */
        LmnVkBinding sb;
        LmnVkBuffer *tmp = scratch(c, MAX(pooled_numel(g), 1), &sb);
        if (tmp != NULL) {
            LmnTensor t = {0};
            t.buffer = tmp;
            t.dtype = LMN_DTYPE_I32;
            conv_op(c, CONV_POOL_MAX, x, image_numel(g), y, pooled_numel(g), &t, pooled_numel(g),
                    TRUE, g, "pool2d");
        }
        scratch_done(c, tmp);
    } else {
        conv_op(c, mode == LMN_POOL_MAX ? CONV_POOL_MAX : CONV_POOL_AVG, x, image_numel(g), y,
                pooled_numel(g), mode == LMN_POOL_MAX ? argmax : NULL, pooled_numel(g), TRUE, g,
                "pool2d");
    }
    UNLOCK(c);
}

void lmn_vk_pool2d_backward(gpointer ctx, LmnPoolMode mode, const LmnTensor *dy,
                            const LmnTensor *argmax, LmnTensor *dx, const LmnConv2dGeom *g)
{
    LmnVkContext *c = ctx;
    LOCK(c);
    /* One invocation per input pixel gathering from the windows that contain it. */
    conv_op(c, mode == LMN_POOL_MAX ? CONV_POOL_MAX_BACKWARD : CONV_POOL_AVG_BACKWARD, dy,
            pooled_numel(g), dx, image_numel(g), mode == LMN_POOL_MAX ? argmax : NULL,
            pooled_numel(g), FALSE, g, "pool2d_backward");
    UNLOCK(c);
}

/* ---- batch normalisation (batchnorm.comp) ---- */

typedef struct {
    guint32 mode, outer, channels, inner, eps, has_weight, has_bias, has_out1, has_out2;
    guint32 off_x, off_dy, off_mean, off_var, off_w, off_b, off_y, off_o1, off_o2;
    guint32 splits, nparts, off_part; /* modes 3-7: workgroups per channel, the partials */
} BnPush;

/* Binds @t (@n elements from element @e0) at @slot, or the dummy buffer when @t is NULL. */
static gboolean bind_opt(LmnVkContext *c, const LmnTensor *t, gsize e0, gsize n, gboolean write,
                         LmnVkBinding *b, guint32 *off, const char *op)
{
    if (t == NULL) {
        bind_dummy(c, b);
        return TRUE;
    }
    return bind(c, t, e0, n, write, b, off, op);
}

/* One batchnorm.comp dispatch on a piece of the tensors: the per-sample operands (@x, @dy, @y)
 * bound from element @e0 over @span elements, the per-channel ones from channel @c0 over @nc;
 * per-channel modes run @nc workgroups (the push constants' channels is the stride). */
static void bn_op_split(LmnVkContext *c, BnPush *p, const LmnTensor *x, const LmnTensor *dy,
                        const LmnTensor *mean, const LmnTensor *var, const LmnTensor *weight,
                        const LmnTensor *bias, LmnTensor *y, LmnTensor *out1, LmnTensor *out2,
                        gsize e0, gsize span, gsize c0, gsize nc, const LmnVkBinding *part,
                        guint32 groups_y, const char *op)
{
    LmnVkBinding b[10];
    p->has_weight = weight != NULL;
    p->has_bias = bias != NULL;
    p->has_out1 = out1 != NULL;
    p->has_out2 = out2 != NULL;
    if (!bind_opt(c, x, e0, span, FALSE, &b[0], &p->off_x, op) ||
        !bind_opt(c, dy, e0, span, FALSE, &b[1], &p->off_dy, op) ||
        !bind_opt(c, mean, c0, nc, FALSE, &b[2], &p->off_mean, op) ||
        !bind_opt(c, var, c0, nc, FALSE, &b[3], &p->off_var, op) ||
        !bind_opt(c, weight, c0, nc, FALSE, &b[4], &p->off_w, op) ||
        !bind_opt(c, bias, c0, nc, FALSE, &b[5], &p->off_b, op) ||
        !bind_opt(c, y, e0, span, TRUE, &b[6], &p->off_y, op) ||
        !bind_opt(c, out1, c0, nc, TRUE, &b[7], &p->off_o1, op) ||
        !bind_opt(c, out2, c0, nc, TRUE, &b[8], &p->off_o2, op))
        return;
    if (part != NULL)
        b[9] = *part;
    /* The writable slots count as written by the shader (synchronization validation): an
     * unused one gets a written binding of this dispatch rather than the shared dummy, which
     * would look written to every later dispatch that reads it. */
    const gboolean written[4] = {y != NULL, out1 != NULL, out2 != NULL, part != NULL};
    gint used = -1;
    for (gint k = 0; k < 4 && used < 0; k++)
        if (written[k])
            used = k;
    for (gint k = 0; k < 4 && used >= 0; k++)
        if (!written[k])
            b[6 + k] = b[6 + used];
    /* Modes 0 and 2 run one workgroup per channel (3-7 @groups_y per channel); mode 1 is
     * element-wise. */
    const guint32 groups = p->mode == 1 ? groups_for(span) : (guint32) nc;
    lmn_vk_dispatch(c, lmn_vk_builtin_pipeline(c, LMN_VK_SHADER_BATCHNORM), b, 10, p, sizeof *p,
                    groups, groups_y, 1);
}

/* Modes 0-2 (see bn_op_split). */
static void bn_op(LmnVkContext *c, BnPush *p, const LmnTensor *x, const LmnTensor *dy,
                  const LmnTensor *mean, const LmnTensor *var, const LmnTensor *weight,
                  const LmnTensor *bias, LmnTensor *y, LmnTensor *out1, LmnTensor *out2, gsize e0,
                  gsize span, gsize c0, gsize nc, const char *op)
{
    bn_op_split(c, p, x, dy, mean, var, weight, bias, y, out1, out2, e0, span, c0, nc, NULL, 1, op);
}

/* Whether the sizes fit the shader's 32-bit indexing. */
static gboolean bn_check(LmnVkContext *c, gint64 outer, gint64 channels, gint64 inner,
                         const char *op)
{
    if (c->error != NULL)
        return FALSE;
    if (outer < 0 || channels < 0 || inner < 0 || outer * channels * inner > G_MAXINT32) {
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                         "vulkan: %s: [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                         ", %" G_GINT64_FORMAT "] exceeds 32-bit indexing",
                         op, outer, channels, inner);
        return FALSE;
    }
    return channels > 0;
}

/* The split of a per-channel pass: channel groups of @cg (within the workgroup-count limit,
 * [cg, inner] fitting one binding), each in chunks of @per outer planes whose span fits.
 * FALSE (deferred error set) when one [inner] row exceeds maxStorageBufferRange. */
static gboolean bn_split(LmnVkContext *c, gsize C, gsize in, gsize *cg, gsize *per, const char *op)
{
    const gsize me = max_elems(c);
    *cg = MIN(MIN(C, (gsize) c->max_groups_x), me / MAX(in, 1));
    if (*cg == 0) {
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                         "vulkan: %s: one channel's row of %" G_GSIZE_FORMAT
                         " elements exceeds maxStorageBufferRange",
                         op, in);
        return FALSE;
    }
    /* For the largest group (smaller ones reuse it); without samples, everything at once. */
    *per = in == 0 ? G_MAXSIZE : (me - *cg * in) / (C * in) + 1;
    return TRUE;
}

/* A scratch vector of @n floats (a tensor view of it in *@t), or NULL (deferred error). */
static LmnVkBuffer *scratch_vec(LmnVkContext *c, gsize n, LmnTensor *t)
{
    LmnVkBinding unused;
    LmnVkBuffer *buf = scratch(c, MAX(n, 1), &unused);
    if (buf != NULL)
        *t = scratch_tensor(buf);
    return buf;
}

/* Element-wise helpers on @n-element vectors (n within one binding). */
static void vec_fill(LmnVkContext *c, const LmnTensor *t, gsize n, float v, const char *op)
{
    guint32 bits = fbits(v);
    Arg a[] = {{t, TRUE}};
    elementwise(c, LMN_VK_SHADER_FILL, a, 1, n, 1, &bits, 1, op);
}

/* out = a OP b (binary.comp op 0 add, 1 sub, 2 mul). */
static void vec_binary(LmnVkContext *c, guint32 bop, const LmnTensor *a, const LmnTensor *b,
                       const LmnTensor *out, gsize n, const char *op)
{
    guint32 extra[] = {bop, 0, 0};
    Arg args[] = {{a, FALSE}, {b, FALSE}, {out, TRUE}};
    elementwise(c, LMN_VK_SHADER_BINARY, args, 3, n, 1, extra, 3, op);
}

/* y = alpha x + beta y (beta 0 does not read y). */
static void vec_axpby(LmnVkContext *c, float alpha, const LmnTensor *x, float beta,
                      const LmnTensor *y, gsize n, const char *op)
{
    guint32 extra[] = {3, fbits(alpha), fbits(beta)};
    Arg args[] = {{x, FALSE}, {y, FALSE}, {y, TRUE}};
    elementwise(c, LMN_VK_SHADER_BINARY, args, 3, n, 1, extra, 3, op);
}

void lmn_vk_batchnorm_stats(gpointer ctx, const LmnTensor *x, LmnTensor *mean, LmnTensor *var,
                            gint64 outer, gint64 channels, gint64 inner)
{
    LmnVkContext *c = ctx;
    const char *op = "batchnorm_stats";
    LOCK(c);
    if (!bn_check(c, outer, channels, inner, op)) {
        UNLOCK(c);
        return;
    }
    if (outer * inner == 0) {
        /* No samples: undefined statistics are NaN, as on the CPU. */
        vec_fill(c, mean, (gsize) channels, NAN, op);
        vec_fill(c, var, (gsize) channels, NAN, op);
        UNLOCK(c);
        return;
    }
    const gsize C = (gsize) channels, in = (gsize) inner, plane = C * in, O = (gsize) outer;
    gsize cg, per;
    if (!bn_split(c, C, in, &cg, &per, op)) {
        UNLOCK(c);
        return;
    }
    for (gsize c0 = 0; c0 < C && c->error == NULL; c0 += cg) {
        const gsize nc = MIN(cg, C - c0);
        const LmnTensor xv = view_at(x, c0 * in);
        BnPush p = {.mode = 0, .channels = (guint32) C, .inner = (guint32) in};
        const guint32 S = channel_splits(c, O * in);
        if (per >= O && S > 1) {
            /* Split: partial sums of x (mode 3), then of squared deviations from the mean (4),
             * then the mean and variance (5). */
            LmnVkBinding pb;
            LmnVkBuffer *buf = scratch(c, 2 * nc * S, &pb);
            if (buf == NULL)
                break;
            const gsize span = (O - 1) * plane + nc * in;
            p.outer = (guint32) O;
            p.splits = S;
            p.nparts = (guint32) (nc * S);
            for (guint32 mode = 3; mode <= 5; mode++) {
                p.mode = mode;
                bn_op_split(c, &p, &xv, NULL, NULL, NULL, NULL, NULL, NULL, mode == 5 ? mean : NULL,
                            mode == 5 ? var : NULL, 0, span, c0, nc, &pb, mode == 5 ? 1 : S, op);
            }
            scratch_done(c, buf);
            continue;
        }
        if (per >= O) {
            /* The whole group's samples in one binding: the shader's two passes. */
            p.outer = (guint32) O;
            bn_op(c, &p, &xv, NULL, NULL, NULL, NULL, NULL, NULL, mean, var, 0,
                  (O - 1) * plane + nc * in, c0, nc, op);
            continue;
        }
        /* Chunks of outer planes: each chunk's mean and (population) variance, then combined
         * in chunk order (Chan et al.): mean = sum w_k m_k, var = sum w_k (v_k + (m_k -
         * mean)^2) with w_k = n_k / N.  Deviations are taken around each chunk's own mean, so
         * no cancellation as in E[x^2] - E[x]^2; the order is fixed, so deterministic. */
        const gsize K = (O + per - 1) / per;
        LmnTensor ms = {0}, vs = {0}, tmp = {0}; /* filled by scratch_vec() */
        LmnVkBuffer *mb = scratch_vec(c, K * nc, &ms), *vb = scratch_vec(c, K * nc, &vs),
                    *tb = scratch_vec(c, nc, &tmp);
        const LmnTensor meanv = view_at(mean, c0), varv = view_at(var, c0);
        for (gsize k = 0; k < K && mb != NULL && vb != NULL && tb != NULL; k++) {
            const gsize o0 = k * per, no = MIN(per, O - o0);
            LmnTensor mk = view_at(&ms, k * nc), vk = view_at(&vs, k * nc);
            p.outer = (guint32) no;
            bn_op(c, &p, &xv, NULL, NULL, NULL, NULL, NULL, NULL, &mk, &vk, o0 * plane,
                  (no - 1) * plane + nc * in, 0, nc, op);
            const float w = (float) ((double) no / (double) O);
            vec_axpby(c, w, &mk, k == 0 ? 0.0f : 1.0f, &meanv, nc, op);
        }
        for (gsize k = 0; k < K && mb != NULL && vb != NULL && tb != NULL; k++) {
            const gsize no = MIN(per, O - k * per);
            LmnTensor mk = view_at(&ms, k * nc), vk = view_at(&vs, k * nc);
            vec_binary(c, 1, &mk, &meanv, &tmp, nc, op);
            vec_binary(c, 2, &tmp, &tmp, &tmp, nc, op);
            vec_binary(c, 0, &tmp, &vk, &tmp, nc, op);
            const float w = (float) ((double) no / (double) O);
            vec_axpby(c, w, &tmp, k == 0 ? 0.0f : 1.0f, &varv, nc, op);
        }
        scratch_done(c, mb);
        scratch_done(c, vb);
        scratch_done(c, tb);
    }
    UNLOCK(c);
}

/* Mode 1 (y = (x - mean) invstd weight + bias) over all of [outer, channels, inner], in
 * pieces that fit: chunks of whole planes, else per sample channel groups of whole rows. */
static void bn_forward_pieces(LmnVkContext *c, const LmnTensor *x, const LmnTensor *mean,
                              const LmnTensor *var, const LmnTensor *weight, const LmnTensor *bias,
                              LmnTensor *y, float eps, gsize O, gsize C, gsize in, const char *op)
{
    const gsize me = max_elems(c), plane = C * in;
    BnPush p = {.mode = 1, .eps = fbits(eps)};
    if (plane <= me) {
        const gsize per = me / plane;
        for (gsize o0 = 0; o0 < O && c->error == NULL; o0 += per) {
            const gsize no = MIN(per, O - o0);
            p.outer = (guint32) no;
            p.channels = (guint32) C;
            p.inner = (guint32) in;
            bn_op(c, &p, x, NULL, mean, var, weight, bias, y, NULL, NULL, o0 * plane, no * plane, 0,
                  C, op);
        }
        return;
    }
    const gsize cg = me / in;
    if (cg == 0) {
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                         "vulkan: %s: one channel's row of %" G_GSIZE_FORMAT
                         " elements exceeds maxStorageBufferRange",
                         op, in);
        return;
    }
    /* Each piece is one sample's contiguous [nc, inner] block: its own channels count. */
    for (gsize o = 0; o < O && c->error == NULL; o++)
        for (gsize c0 = 0; c0 < C && c->error == NULL; c0 += cg) {
            const gsize nc = MIN(cg, C - c0);
            p.outer = 1;
            p.channels = (guint32) nc;
            p.inner = (guint32) in;
            bn_op(c, &p, x, NULL, mean, var, weight, bias, y, NULL, NULL, (o * C + c0) * in,
                  nc * in, c0, nc, op);
        }
}

void lmn_vk_batchnorm_forward(gpointer ctx, const LmnTensor *x, const LmnTensor *mean,
                              const LmnTensor *var, const LmnTensor *weight, const LmnTensor *bias,
                              LmnTensor *y, float eps, gint64 outer, gint64 channels, gint64 inner)
{
    LmnVkContext *c = ctx;
    LOCK(c);
    if (bn_check(c, outer, channels, inner, "batchnorm_forward") && outer * inner > 0)
        bn_forward_pieces(c, x, mean, var, weight, bias, y, eps, (gsize) outer, (gsize) channels,
                          (gsize) inner, "batchnorm_forward");
    UNLOCK(c);
}

/* Backward of one channel group whose samples span more than one binding.  Per chunk of outer
 * planes, mode 2 gives the chunk's sum(dy) and sum(dy xhat) (around the global mean and
 * variance, so the sums add up; its dx, from chunk-local means, goes to scratch), summed in
 * chunk order.  Then dx = k dy - k sum(dy) / M - k xhat sum(dy xhat) / M with k = invstd
 * weight, as two mode-1 passes: (dy - 0) invstd weight + b1, and (x - mean) invstd w2, added. */
static void bn_backward_group(LmnVkContext *c, const LmnTensor *x, const LmnTensor *dy,
                              const LmnTensor *mean, const LmnTensor *var, const LmnTensor *weight,
                              LmnTensor *dx, LmnTensor *dweight, LmnTensor *dbias, float eps,
                              gsize O, gsize C, gsize in, gsize c0, gsize nc, gsize per,
                              const char *op)
{
    const gsize plane = C * in, K = (O + per - 1) / per;
    const float inv_m = (float) (1.0 / ((double) O * (double) in));
    /* dx pieces: chunks of whole planes when the group is every channel, else per sample
     * [nc, inner] blocks (which fit: bn_split). */
    const gsize fp = nc == C ? MIN(max_elems(c) / plane, O) : 1;
    LmnTensor junk, s1, s2, t1, t2, ones, zeros, kv, b1, w2, isv;
    LmnVkBuffer *bufs[11] = {
        scratch_vec(c, MAX((per - 1) * plane + nc * in, fp * nc * in), &junk),
        scratch_vec(c, nc, &s1),
        scratch_vec(c, nc, &s2),
        scratch_vec(c, nc, &t1),
        scratch_vec(c, nc, &t2),
        scratch_vec(c, nc, &ones),
        scratch_vec(c, nc, &zeros),
        scratch_vec(c, nc, &kv),
        scratch_vec(c, nc, &b1),
        scratch_vec(c, nc, &w2),
        scratch_vec(c, nc, &isv),
    };
    gboolean ok = TRUE;
    for (guint i = 0; i < G_N_ELEMENTS(bufs); i++)
        ok = ok && bufs[i] != NULL;
    const LmnTensor xv = view_at(x, c0 * in), dyv = view_at(dy, c0 * in);
    const LmnTensor meanv = view_at(mean, c0), varv = view_at(var, c0);
    const LmnTensor wv = weight != NULL ? view_at(weight, c0) : ones;
    for (gsize k = 0; ok && k < K; k++) {
        const gsize o0 = k * per, no = MIN(per, O - o0);
        BnPush p = {.mode = 2,
                    .outer = (guint32) no,
                    .channels = (guint32) C,
                    .inner = (guint32) in,
                    .eps = fbits(eps)};
        /* The sample operands are bound from the chunk's start; the junk dx from its own. */
        const LmnTensor xk = view_at(&xv, o0 * plane), dyk = view_at(&dyv, o0 * plane);
        const gsize span = (no - 1) * plane + nc * in;
        bn_op(c, &p, &xk, &dyk, &meanv, &varv, weight != NULL ? &wv : NULL, NULL, &junk, &t1, &t2,
              0, span, 0, nc, op);
        vec_axpby(c, 1.0f, &t1, k == 0 ? 0.0f : 1.0f, &s1, nc, op); /* sum(dy xhat) */
        vec_axpby(c, 1.0f, &t2, k == 0 ? 0.0f : 1.0f, &s2, nc, op); /* sum(dy) */
    }
    if (ok) {
        if (dweight != NULL) {
            const LmnTensor v = view_at(dweight, c0);
            vec_axpby(c, 1.0f, &s1, 0.0f, &v, nc, op);
        }
        if (dbias != NULL) {
            const LmnTensor v = view_at(dbias, c0);
            vec_axpby(c, 1.0f, &s2, 0.0f, &v, nc, op);
        }
        vec_fill(c, &ones, nc, 1.0f, op);
        vec_fill(c, &zeros, nc, 0.0f, op);
        /* invstd by mode 1 on ones: (1 - 0) invstd. */
        BnPush p = {.mode = 1, .outer = 1, .channels = (guint32) nc, .inner = 1, .eps = fbits(eps)};
        bn_op(c, &p, &ones, NULL, &zeros, &varv, NULL, NULL, &isv, NULL, NULL, 0, nc, 0, nc, op);
        vec_binary(c, 2, &isv, &wv, &kv, nc, op);     /* k */
        vec_binary(c, 2, &kv, &s2, &t1, nc, op);      /* k sum(dy) */
        vec_axpby(c, -inv_m, &t1, 0.0f, &b1, nc, op); /* b1 = -k sum(dy) / M */
        vec_binary(c, 2, &kv, &s1, &t2, nc, op);      /* k sum(dy xhat) */
        vec_axpby(c, -inv_m, &t2, 0.0f, &w2, nc, op); /* w2 = -k sum(dy xhat) / M */
        for (gsize o0 = 0; o0 < O && c->error == NULL; o0 += fp) {
            const gsize no = MIN(fp, O - o0), e0 = o0 * plane, n = no * nc * in;
            BnPush q = {.mode = 1,
                        .outer = (guint32) no,
                        .channels = (guint32) nc,
                        .inner = (guint32) in,
                        .eps = fbits(eps)};
            const LmnTensor dxv = view_at(dx, c0 * in);
            LmnTensor dxo = view_at(&dxv, e0);
            const LmnTensor xo = view_at(&xv, e0), dyo = view_at(&dyv, e0);
            bn_op(c, &q, &dyo, NULL, &zeros, &varv, &wv, &b1, &dxo, NULL, NULL, 0, n, 0, nc, op);
            bn_op(c, &q, &xo, NULL, &meanv, &varv, &w2, NULL, &junk, NULL, NULL, 0, n, 0, nc, op);
            vec_binary(c, 0, &dxo, &junk, &dxo, n, op);
        }
    }
    for (guint i = 0; i < G_N_ELEMENTS(bufs); i++)
        scratch_done(c, bufs[i]);
}

void lmn_vk_batchnorm_backward(gpointer ctx, const LmnTensor *x, const LmnTensor *dy,
                               const LmnTensor *mean, const LmnTensor *var, const LmnTensor *weight,
                               LmnTensor *dx, LmnTensor *dweight, LmnTensor *dbias, float eps,
                               gint64 outer, gint64 channels, gint64 inner)
{
    LmnVkContext *c = ctx;
    const char *op = "batchnorm_backward";
    LOCK(c);
    gsize cg = 0, per = 0;
    const gsize C = (gsize) MAX(channels, 0), in = (gsize) MAX(inner, 0), O = (gsize) MAX(outer, 0);
    if (bn_check(c, outer, channels, inner, op) && bn_split(c, C, in, &cg, &per, op)) {
        for (gsize c0 = 0; c0 < C && c->error == NULL; c0 += cg) {
            const gsize nc = MIN(cg, C - c0);
            if (per >= O || O * in == 0) {
                /* The group's samples in one binding: the shader's single pass. */
                BnPush p = {.mode = 2,
                            .outer = (guint32) O,
                            .channels = (guint32) C,
                            .inner = (guint32) in,
                            .eps = fbits(eps)};
                const LmnTensor xv = view_at(x, c0 * in), dyv = view_at(dy, c0 * in),
                                dxv = view_at(dx, c0 * in);
                const LmnTensor mv = view_at(mean, c0), vv = view_at(var, c0);
                const LmnTensor wv = weight != NULL ? view_at(weight, c0) : mv;
                LmnTensor dwv = dweight != NULL ? view_at(dweight, c0) : mv;
                LmnTensor dbv = dbias != NULL ? view_at(dbias, c0) : mv;
                const gsize span = O == 0 ? 0 : (O - 1) * (C * in) + nc * in;
                const guint32 S = channel_splits(c, O * in);
                if (S == 1) {
                    bn_op(c, &p, &xv, &dyv, &mv, &vv, weight != NULL ? &wv : NULL, NULL,
                          (LmnTensor *) &dxv, dweight != NULL ? &dwv : NULL,
                          dbias != NULL ? &dbv : NULL, 0, span, 0, nc, op);
                    continue;
                }
                /* Split: the slices' partial sums (mode 6), then dx over each slice from the
                 * channel's sums, dweight and dbias (7). */
                LmnVkBinding pb;
                LmnVkBuffer *buf = scratch(c, 2 * nc * S, &pb);
                if (buf == NULL)
                    break;
                p.splits = S;
                p.nparts = (guint32) (nc * S);
                p.mode = 6;
                bn_op_split(c, &p, &xv, &dyv, &mv, &vv, NULL, NULL, NULL, NULL, NULL, 0, span, 0,
                            nc, &pb, S, op);
                p.mode = 7;
                bn_op_split(c, &p, &xv, &dyv, &mv, &vv, weight != NULL ? &wv : NULL, NULL,
                            (LmnTensor *) &dxv, dweight != NULL ? &dwv : NULL,
                            dbias != NULL ? &dbv : NULL, 0, span, 0, nc, &pb, S, op);
                scratch_done(c, buf);
            } else {
                bn_backward_group(c, x, dy, mean, var, weight, dx, dweight, dbias, eps, O, C, in,
                                  c0, nc, per, op);
            }
        }
    }
    UNLOCK(c);
}
