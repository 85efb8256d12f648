/* Lamina CPU backend — the op kernels.
 *
 * Every element loop is a plain loop over float arrays that -O3 vectorises; the switch on the
 * function is hoisted out of the loops.  Large loops are split across the pool (cpu-pool.h);
 * reductions are summed in double over fixed-size blocks whose layout depends only on the
 * element count, then the block sums are added in order, so results do not depend on the
 * thread count.  GEMM goes to BLAS.  Nothing here allocates.
 */
#include "cpu-ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#define EXEC_BEGIN(c) g_mutex_lock(&(c)->exec_lock)
#define EXEC_END(c) g_mutex_unlock(&(c)->exec_lock)

static inline float *fptr(const LmnTensor *t)
{
    return (float *) ((char *) t->buffer + t->offset);
}

static inline gint32 *iptr(const LmnTensor *t)
{
    return (gint32 *) ((char *) t->buffer + t->offset);
}

static inline gsize numel(const LmnTensor *t)
{
    gsize n = 1;
    for (guint i = 0; i < t->shape.ndim; i++)
        n *= (gsize) t->shape.dims[i];
    return n;
}

/* Runs @func over @n_units units of @unit_size elements each, in parallel only when the total
 * is large enough to pay for waking the workers. */
static void run(LmnCpuContext *c, gsize n_units, gsize unit_size, LmnCpuPoolFunc func,
                gpointer data)
{
    if (n_units == 0)
        return;
    unit_size = MAX(unit_size, 1);
    if (c->n_threads <= 1 || n_units * unit_size <= LMN_CPU_PARALLEL_MIN) {
        func(0, n_units, data);
        return;
    }
    gsize min_chunk = MAX(LMN_CPU_GRAIN / unit_size, 1);
    lmn_cpu_pool_run(c->pool, n_units, min_chunk, func, data);
}

/* ---- fill, copy ---- */

typedef struct {
    void *p;
    float value;
    gint32 ivalue;
    gboolean is_int;
} FillJob;

static void fill_range(gsize begin, gsize end, gpointer data)
{
    const FillJob *j = data;
    if (j->is_int) {
        gint32 *p = j->p;
        const gint32 v = j->ivalue;
        for (gsize i = begin; i < end; i++)
            p[i] = v;
    } else {
        float *p = j->p;
        const float v = j->value;
        for (gsize i = begin; i < end; i++)
            p[i] = v;
    }
}

void lmn_cpu_fill(gpointer ctx, LmnTensor *t, float value)
{
    LmnCpuContext *c = ctx;
    /* Converting NaN or an out-of-range float to int is undefined behaviour: clamp first. */
    float clamped = isnan(value) ? 0.0f : CLAMP(value, (float) G_MININT32, 2147483520.0f);
    FillJob j = {
        .p = (char *) t->buffer + t->offset,
        .value = value,
        .ivalue = (gint32) clamped,
        .is_int = t->dtype == LMN_DTYPE_I32,
    };
    EXEC_BEGIN(c);
    run(c, numel(t), 1, fill_range, &j);
    EXEC_END(c);
}

typedef struct {
    char *dst;
    const char *src;
} CopyJob;

static void copy_range(gsize begin, gsize end, gpointer data)
{
    const CopyJob *j = data;
    memcpy(j->dst + begin, j->src + begin, end - begin);
}

void lmn_cpu_copy(gpointer ctx, LmnTensor *dst, const LmnTensor *src)
{
    LmnCpuContext *c = ctx;
    gsize nbytes = numel(dst) * lmn_dtype_size(dst->dtype);
    CopyJob j = {(char *) dst->buffer + dst->offset, (const char *) src->buffer + src->offset};
    if (nbytes == 0 || j.dst == j.src)
        return;
    EXEC_BEGIN(c);
    if (j.dst < j.src + nbytes && j.src < j.dst + nbytes)
        memmove(j.dst, j.src, nbytes); /* overlapping views of one buffer */
    else
        run(c, nbytes, 4, copy_range, &j);
    EXEC_END(c);
}

/* ---- GEMM ---- */

void lmn_cpu_gemm(gpointer ctx, const LmnGemm *g)
{
    LmnCpuContext *c = ctx;
    if (g->m == 0 || g->n == 0)
        return;
    /* CBLAS takes int dimensions. */
    g_return_if_fail(g->m <= G_MAXINT && g->n <= G_MAXINT && g->k <= G_MAXINT);
    const int m = (int) g->m, n = (int) g->n, k = (int) g->k;
    const int lda = MAX(g->trans_a ? m : k, 1);
    const int ldb = MAX(g->trans_b ? k : n, 1);
    const gint64 batch = MAX(g->batch, 1);
    const float *a = fptr(g->a) + g->a_offset;
    const float *b = fptr(g->b) + g->b_offset;
    float *cm = fptr(g->c) + g->c_offset;

    EXEC_BEGIN(c);
    for (gint64 i = 0; i < batch; i++) {
        float *ci = cm + i * g->stride_c;
        if (k == 0) {
            /* An empty product: C = beta * C.  Handled here because BLAS rejects lda = 0 on
             * some implementations; beta == 0 overwrites, as BLAS does. */
            for (gsize e = 0; e < (gsize) m * (gsize) n; e++)
                ci[e] = g->beta == 0.0f ? 0.0f : g->beta * ci[e];
            continue;
        }
        cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans,
                    g->trans_b ? CblasTrans : CblasNoTrans, m, n, k, g->alpha, a + i * g->stride_a,
                    lda, b + i * g->stride_b, ldb, g->beta, ci, n);
    }
    EXEC_END(c);
}

/* ---- bias ---- */

typedef struct {
    float *y;
    const float *bias;
    const float *dy;
    float *db;
    gsize outer, channels, inner;
    float beta;
} BiasJob;

/* inner == 1: units are rows of [outer, channels]. */
static void bias_add_rows(gsize begin, gsize end, gpointer data)
{
    const BiasJob *j = data;
    const gsize C = j->channels;
    const float *restrict bias = j->bias;
    for (gsize o = begin; o < end; o++) {
        float *restrict y = j->y + o * C;
        for (gsize ch = 0; ch < C; ch++)
            y[ch] += bias[ch];
    }
}

/* inner > 1: units are the (o, c) planes of length inner. */
static void bias_add_planes(gsize begin, gsize end, gpointer data)
{
    const BiasJob *j = data;
    const gsize inner = j->inner;
    for (gsize r = begin; r < end; r++) {
        float *restrict y = j->y + r * inner;
        const float b = j->bias[r % j->channels];
        for (gsize i = 0; i < inner; i++)
            y[i] += b;
    }
}

void lmn_cpu_bias_add(gpointer ctx, LmnTensor *y, const LmnTensor *bias, gint64 outer,
                      gint64 channels, gint64 inner)
{
    LmnCpuContext *c = ctx;
    BiasJob j = {.y = fptr(y),
                 .bias = fptr(bias),
                 .outer = (gsize) outer,
                 .channels = (gsize) channels,
                 .inner = (gsize) inner};
    EXEC_BEGIN(c);
    if (inner == 1)
        run(c, j.outer, j.channels, bias_add_rows, &j);
    else
        run(c, j.outer * j.channels, j.inner, bias_add_planes, &j);
    EXEC_END(c);
}

#define BIAS_TILE 64

/* inner == 1: units are columns; each tile of columns is summed over all rows in double. */
static void bias_grad_columns(gsize begin, gsize end, gpointer data)
{
    const BiasJob *j = data;
    const gsize C = j->channels;
    for (gsize t = begin; t < end; t += BIAS_TILE) {
        const gsize w = MIN(BIAS_TILE, end - t);
        double acc[BIAS_TILE] = {0};
        for (gsize o = 0; o < j->outer; o++) {
            const float *restrict dy = j->dy + o * C + t;
            for (gsize q = 0; q < w; q++)
                acc[q] += dy[q];
        }
        for (gsize q = 0; q < w; q++) {
            double old = j->beta == 0.0f ? 0.0 : (double) j->beta * j->db[t + q];
            j->db[t + q] = (float) (old + acc[q]);
        }
    }
}

/* Sums @n floats in double with eight interleaved accumulators (a fixed order, so the result is
 * reproducible, and independent lanes, so it vectorises). */
static inline double sum_f64(const float *restrict x, gsize n, gboolean squares)
{
    double acc[8] = {0};
    gsize i = 0;
    if (squares) {
        for (; i + 8 <= n; i += 8)
            for (gsize q = 0; q < 8; q++)
                acc[q] += (double) x[i + q] * (double) x[i + q];
    } else {
        for (; i + 8 <= n; i += 8)
            for (gsize q = 0; q < 8; q++)
                acc[q] += (double) x[i + q];
    }
    double tail = 0.0;
    for (; i < n; i++)
        tail += squares ? (double) x[i] * (double) x[i] : (double) x[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

/* inner > 1: units are channels; each sums outer planes of length inner. */
static void bias_grad_channels(gsize begin, gsize end, gpointer data)
{
    const BiasJob *j = data;
    for (gsize ch = begin; ch < end; ch++) {
        double s = 0.0;
        for (gsize o = 0; o < j->outer; o++)
            s += sum_f64(j->dy + (o * j->channels + ch) * j->inner, j->inner, FALSE);
        double old = j->beta == 0.0f ? 0.0 : (double) j->beta * j->db[ch];
        j->db[ch] = (float) (old + s);
    }
}

void lmn_cpu_bias_grad(gpointer ctx, LmnTensor *db, const LmnTensor *dy, gint64 outer,
                       gint64 channels, gint64 inner, float beta)
{
    LmnCpuContext *c = ctx;
    BiasJob j = {.db = fptr(db),
                 .dy = fptr(dy),
                 .outer = (gsize) outer,
                 .channels = (gsize) channels,
                 .inner = (gsize) inner,
                 .beta = beta};
    EXEC_BEGIN(c);
    if (inner == 1)
        run(c, j.channels, j.outer, bias_grad_columns, &j);
    else
        run(c, j.channels, j.outer * j.inner, bias_grad_channels, &j);
    EXEC_END(c);
}

/* ---- unary ---- */

#define SOFTPLUS_THRESHOLD 20.0f /* PyTorch's default: above it softplus is linear */
#define INV_SQRT_2PI 0.3989422804014327f

typedef struct {
    LmnUnaryOp op;
    const float *x;
    const float *y;
    const float *dy;
    float *out;
    float alpha;
} UnaryJob;

static void unary_range(gsize begin, gsize end, gpointer data)
{
    const UnaryJob *j = data;
    const float *x = j->x;
    float *y = j->out;
    const float a = j->alpha;
    /* x and y may be the same array: every iteration reads x[i] before writing y[i]. */
    switch (j->op) {
    case LMN_UNARY_IDENTITY:
        if (x != y)
            memcpy(y + begin, x + begin, (end - begin) * sizeof(float));
        break;
    case LMN_UNARY_RELU:
        for (gsize i = begin; i < end; i++)
            y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case LMN_UNARY_SIGMOID:
        for (gsize i = begin; i < end; i++)
            y[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    case LMN_UNARY_TANH:
        for (gsize i = begin; i < end; i++)
            y[i] = tanhf(x[i]);
        break;
    case LMN_UNARY_LEAKY_RELU:
        for (gsize i = begin; i < end; i++)
            y[i] = x[i] > 0.0f ? x[i] : a * x[i];
        break;
    case LMN_UNARY_ELU:
        for (gsize i = begin; i < end; i++)
            y[i] = x[i] > 0.0f ? x[i] : a * expm1f(x[i]);
        break;
    case LMN_UNARY_SOFTPLUS:
        for (gsize i = begin; i < end; i++) {
            const float bx = a * x[i];
            y[i] = bx > SOFTPLUS_THRESHOLD ? x[i] : log1pf(expf(bx)) / a;
        }
        break;
    case LMN_UNARY_GELU:
        for (gsize i = begin; i < end; i++)
            y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float) M_SQRT1_2));
        break;
    case LMN_UNARY_COUNT:
        break;
    }
}

void lmn_cpu_unary(gpointer ctx, LmnUnaryOp op, const LmnTensor *x, LmnTensor *y, float alpha)
{
    LmnCpuContext *c = ctx;
    UnaryJob j = {.op = op, .x = fptr(x), .out = fptr(y), .alpha = alpha};
    EXEC_BEGIN(c);
    run(c, numel(y), 1, unary_range, &j);
    EXEC_END(c);
}

static void unary_backward_range(gsize begin, gsize end, gpointer data)
{
    const UnaryJob *j = data;
    const float *x = j->x, *y = j->y, *dy = j->dy;
    float *dx = j->out;
    const float a = j->alpha;
    /* dx may be dy: every iteration reads its inputs at i before writing dx[i]. */
    switch (j->op) {
    case LMN_UNARY_IDENTITY:
        if (dx != dy)
            memcpy(dx + begin, dy + begin, (end - begin) * sizeof(float));
        break;
    case LMN_UNARY_RELU:
        /* The derivative at 0 is 0, as in PyTorch. */
        for (gsize i = begin; i < end; i++)
            dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
        break;
    case LMN_UNARY_SIGMOID:
        for (gsize i = begin; i < end; i++)
            dx[i] = dy[i] * y[i] * (1.0f - y[i]);
        break;
    case LMN_UNARY_TANH:
        for (gsize i = begin; i < end; i++)
            dx[i] = dy[i] * (1.0f - y[i] * y[i]);
        break;
    case LMN_UNARY_LEAKY_RELU:
        for (gsize i = begin; i < end; i++)
            dx[i] = x[i] > 0.0f ? dy[i] : a * dy[i];
        break;
    case LMN_UNARY_ELU:
        for (gsize i = begin; i < end; i++)
            dx[i] = x[i] > 0.0f ? dy[i] : dy[i] * a * expf(x[i]);
        break;
    case LMN_UNARY_SOFTPLUS:
        for (gsize i = begin; i < end; i++) {
            const float bx = a * x[i];
            const float z = expf(bx);
            dx[i] = bx > SOFTPLUS_THRESHOLD ? dy[i] : dy[i] * z / (z + 1.0f);
        }
        break;
    case LMN_UNARY_GELU:
        for (gsize i = begin; i < end; i++) {
            const float cdf = 0.5f * (1.0f + erff(x[i] * (float) M_SQRT1_2));
            const float pdf = INV_SQRT_2PI * expf(-0.5f * x[i] * x[i]);
            dx[i] = dy[i] * (cdf + x[i] * pdf);
        }
        break;
    case LMN_UNARY_COUNT:
        break;
    }
}

void lmn_cpu_unary_backward(gpointer ctx, LmnUnaryOp op, const LmnTensor *x, const LmnTensor *y,
                            const LmnTensor *dy, LmnTensor *dx, float alpha)
{
    LmnCpuContext *c = ctx;
    UnaryJob j = {
        .op = op, .x = fptr(x), .y = fptr(y), .dy = fptr(dy), .out = fptr(dx), .alpha = alpha};
    EXEC_BEGIN(c);
    run(c, numel(dx), 1, unary_backward_range, &j);
    EXEC_END(c);
}

/* ---- binary, axpby ---- */

typedef struct {
    LmnBinaryOp op;
    const float *a;
    const float *b;
    float *out;
    float alpha, beta;
} BinaryJob;

static void binary_range(gsize begin, gsize end, gpointer data)
{
    const BinaryJob *j = data;
    const float *a = j->a, *b = j->b;
    float *out = j->out;
    switch (j->op) {
    case LMN_BINARY_ADD:
        for (gsize i = begin; i < end; i++)
            out[i] = a[i] + b[i];
        break;
    case LMN_BINARY_SUB:
        for (gsize i = begin; i < end; i++)
            out[i] = a[i] - b[i];
        break;
    case LMN_BINARY_MUL:
        for (gsize i = begin; i < end; i++)
            out[i] = a[i] * b[i];
        break;
    case LMN_BINARY_COUNT:
        break;
    }
}

void lmn_cpu_binary(gpointer ctx, LmnBinaryOp op, const LmnTensor *a, const LmnTensor *b,
                    LmnTensor *out)
{
    LmnCpuContext *c = ctx;
    BinaryJob j = {.op = op, .a = fptr(a), .b = fptr(b), .out = fptr(out)};
    EXEC_BEGIN(c);
    run(c, numel(out), 1, binary_range, &j);
    EXEC_END(c);
}

static void axpby_range(gsize begin, gsize end, gpointer data)
{
    const BinaryJob *j = data;
    const float *x = j->a;
    float *y = j->out;
    const float alpha = j->alpha, beta = j->beta;
    /* beta == 0 overwrites y without reading it (BLAS convention: NaN garbage is ignored). */
    if (beta == 0.0f) {
        for (gsize i = begin; i < end; i++)
            y[i] = alpha * x[i];
    } else {
        for (gsize i = begin; i < end; i++)
            y[i] = alpha * x[i] + beta * y[i];
    }
}

void lmn_cpu_axpby(gpointer ctx, float alpha, const LmnTensor *x, float beta, LmnTensor *y)
{
    LmnCpuContext *c = ctx;
    BinaryJob j = {.a = fptr(x), .out = fptr(y), .alpha = alpha, .beta = beta};
    EXEC_BEGIN(c);
    run(c, numel(y), 1, axpby_range, &j);
    EXEC_END(c);
}

/* ---- reductions ---- */

/* Blocks of @unit indices (rounded up in multiples of @unit) covering @n indices with at most
 * LMN_CPU_MAX_PARTIALS blocks.  Depends on n only, so the summation order is fixed. */
static gsize block_size(gsize n, gsize unit)
{
    gsize per = (n + LMN_CPU_MAX_PARTIALS - 1) / LMN_CPU_MAX_PARTIALS;
    return MAX((per + unit - 1) / unit * unit, unit);
}

typedef struct {
    const float *x;
    gsize n;
    gsize block;
    gboolean squares;
    double *partials;
} ReduceJob;

static void reduce_blocks(gsize begin, gsize end, gpointer data)
{
    const ReduceJob *j = data;
    for (gsize b = begin; b < end; b++) {
        gsize start = b * j->block;
        gsize len = MIN(j->block, j->n - start);
        j->partials[b] = sum_f64(j->x + start, len, j->squares);
    }
}

static double sum_partials(const double *partials, gsize n_blocks)
{
    double s = 0.0;
    for (gsize b = 0; b < n_blocks; b++)
        s += partials[b];
    return s;
}

void lmn_cpu_reduce(gpointer ctx, LmnReduceOp op, const LmnTensor *x, LmnTensor *out, float alpha,
                    float beta)
{
    LmnCpuContext *c = ctx;
    const gsize n = numel(x);
    ReduceJob j = {.x = fptr(x),
                   .n = n,
                   .block = block_size(n, 4096),
                   .squares = op == LMN_REDUCE_SUM_SQUARES,
                   .partials = c->partials};
    const gsize n_blocks = (n + j.block - 1) / j.block;
    EXEC_BEGIN(c);
    run(c, n_blocks, j.block, reduce_blocks, &j);
    double total = sum_partials(c->partials, n_blocks);
    float *o = fptr(out);
    double old = beta == 0.0f ? 0.0 : (double) beta * o[0];
    o[0] = (float) (old + (double) alpha * total);
    EXEC_END(c);
}

/* ---- softmax cross-entropy ---- */

typedef struct {
    const float *x; /* logits, or probs for the backward */
    const gint32 *labels;
    float *out; /* probs, or dx for the backward */
    gsize rows, k;
    gsize block; /* rows per partial sum */
    float smoothing;
    float scale;
    double *partials;
} XentJob;

/* Row loss = logsumexp(x) - (1 - s) x[y] - (s / K) sum_j x[j], the cross-entropy against the
 * smoothed target (1 - s) onehot(y) + s / K.  The max is subtracted before exponentiating, so
 * large logits do not overflow. */
static double softmax_row(const float *restrict x, float *restrict p, gsize k, gint32 label,
                          float s)
{
    float m = x[0];
    for (gsize q = 1; q < k; q++)
        m = x[q] > m ? x[q] : m;
    double sum = 0.0;
    for (gsize q = 0; q < k; q++) {
        const float e = expf(x[q] - m);
        p[q] = e;
        sum += e;
    }
    const float inv = (float) (1.0 / sum);
    for (gsize q = 0; q < k; q++)
        p[q] *= inv;
    const double lse = (double) m + log(sum);
    double loss = lse;
    if (s != 0.0f)
        loss -= (double) s / (double) k * sum_f64(x, k, FALSE);
    /* Labels are validated by the data layer; an out-of-range one must still not read outside
     * the row, so it simply contributes no one-hot term. */
    if (label >= 0 && (gsize) label < k)
        loss -= (1.0 - (double) s) * (double) x[label];
    return loss;
}

static void xent_blocks(gsize begin, gsize end, gpointer data)
{
    const XentJob *j = data;
    for (gsize b = begin; b < end; b++) {
        const gsize r0 = b * j->block, r1 = MIN(j->rows, r0 + j->block);
        double s = 0.0;
        for (gsize r = r0; r < r1; r++)
            s += softmax_row(j->x + r * j->k, j->out + r * j->k, j->k, j->labels[r], j->smoothing);
        j->partials[b] = s;
    }
}

void lmn_cpu_softmax_xent(gpointer ctx, const LmnTensor *logits, const LmnTensor *labels,
                          LmnTensor *probs, LmnTensor *loss, float smoothing)
{
    LmnCpuContext *c = ctx;
    const gsize rows = numel(labels);
    const gsize n = numel(logits);
    float *lo = fptr(loss);
    if (rows == 0 || n == 0) {
        lo[0] = 0.0f;
        return;
    }
    XentJob j = {.x = fptr(logits),
                 .labels = iptr(labels),
                 .out = fptr(probs),
                 .rows = rows,
                 .k = n / rows,
                 .block = block_size(rows, 1),
                 .smoothing = smoothing,
                 .partials = c->partials};
    const gsize n_blocks = (rows + j.block - 1) / j.block;
    EXEC_BEGIN(c);
    run(c, n_blocks, j.block * j.k, xent_blocks, &j);
    lo[0] = (float) (sum_partials(c->partials, n_blocks) / (double) rows);
    EXEC_END(c);
}

static void xent_backward_rows(gsize begin, gsize end, gpointer data)
{
    const XentJob *j = data;
    const gsize k = j->k;
    const float off = j->smoothing / (float) k;
    const float hit = j->scale * (1.0f - j->smoothing);
    for (gsize r = begin; r < end; r++) {
        const float *p = j->x + r * k;
        float *dx = j->out + r * k;
        for (gsize q = 0; q < k; q++)
            dx[q] = j->scale * (p[q] - off);
        const gint32 label = j->labels[r];
        if (label >= 0 && (gsize) label < k)
            dx[label] -= hit;
    }
}

void lmn_cpu_softmax_xent_backward(gpointer ctx, const LmnTensor *probs, const LmnTensor *labels,
                                   LmnTensor *dx, float scale, float smoothing)
{
    LmnCpuContext *c = ctx;
    const gsize rows = numel(labels);
    const gsize n = numel(probs);
    if (rows == 0 || n == 0)
        return;
    XentJob j = {.x = fptr(probs),
                 .labels = iptr(labels),
                 .out = fptr(dx),
                 .rows = rows,
                 .k = n / rows,
                 .smoothing = smoothing,
                 .scale = scale};
    EXEC_BEGIN(c);
    run(c, rows, j.k, xent_backward_rows, &j);
    EXEC_END(c);
}

static void count_blocks(gsize begin, gsize end, gpointer data)
{
    const XentJob *j = data;
    const gsize k = j->k;
    for (gsize b = begin; b < end; b++) {
        const gsize r0 = b * j->block, r1 = MIN(j->rows, r0 + j->block);
        gsize hits = 0;
        for (gsize r = r0; r < r1; r++) {
            const float *x = j->x + r * k;
            gsize best = 0;
            for (gsize q = 1; q < k; q++)
                if (x[q] > x[best]) /* strict: the first maximum wins */
                    best = q;
            hits += (gint64) best == (gint64) j->labels[r];
        }
        j->partials[b] = (double) hits;
    }
}

void lmn_cpu_count_correct(gpointer ctx, const LmnTensor *logits, const LmnTensor *labels,
                           LmnTensor *out)
{
    LmnCpuContext *c = ctx;
    const gsize rows = numel(labels);
    const gsize n = numel(logits);
    if (rows == 0 || n == 0)
        return;
    XentJob j = {.x = fptr(logits),
                 .labels = iptr(labels),
                 .rows = rows,
                 .k = n / rows,
                 .block = block_size(rows, 1),
                 .partials = c->partials};
    const gsize n_blocks = (rows + j.block - 1) / j.block;
    EXEC_BEGIN(c);
    run(c, n_blocks, j.block * j.k, count_blocks, &j);
    double hits = sum_partials(c->partials, n_blocks);
    if (out->dtype == LMN_DTYPE_I32)
        iptr(out)[0] += (gint32) hits;
    else
        fptr(out)[0] += (float) hits;
    EXEC_END(c);
}

/* ---- plugin kernels ---- */

typedef struct {
    LmnKernelCpuFunc func;
    void *const *buffers;
    const float *scalars;
} KernelJob;

static void kernel_range(gsize begin, gsize end, gpointer data)
{
    const KernelJob *j = data;
    j->func(begin, end, j->buffers, j->scalars);
}

void lmn_cpu_kernel(gpointer ctx, const LmnKernelDesc *kernel, gsize n, LmnTensor *const *buffers,
                    const float *scalars)
{
    LmnCpuContext *c = ctx;
    void *ptrs[LMN_KERNEL_MAX_BUFFERS] = {0};
    for (guint i = 0; i < kernel->n_buffers && i < LMN_KERNEL_MAX_BUFFERS; i++)
        ptrs[i] = (char *) buffers[i]->buffer + buffers[i]->offset;
    float scalar_copy[LMN_KERNEL_MAX_SCALARS] = {0};
    /* The kernel may read its whole declared block; copy what was given into fixed storage. */
    if (kernel->n_scalars > 0)
        memcpy(scalar_copy, scalars,
               MIN(kernel->n_scalars, LMN_KERNEL_MAX_SCALARS) * sizeof(float));
    KernelJob j = {kernel->cpu, ptrs, scalar_copy};
    EXEC_BEGIN(c);
    run(c, n, 1, kernel_range, &j);
    EXEC_END(c);
}
