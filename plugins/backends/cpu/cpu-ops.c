/* Lamina CPU backend — the op kernels.
 *
 * Every element loop is a plain loop over float arrays that -O3 vectorises; the switch on the
 * function is hoisted out of the loops.  Large loops are split across the pool (cpu-pool.h);
 * reductions are summed in double over fixed-size blocks whose layout depends only on the
 * element count, then the block sums are added in order, so results do not depend on the
 * thread count.  GEMM goes to oneDNN where the build has it, to BLAS otherwise.  Nothing here
 * allocates.
 */
#include "cpu-ops.h"

#include <lamina/random.h>

#include <cblas.h>
#include <math.h>
#ifdef LMN_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#endif
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

/* An empty product (k == 0): C = beta * C.  Handled here because BLAS rejects lda = 0 on some
 * implementations; beta == 0 overwrites, as BLAS does. */
static void gemm_empty(float *c, gsize mn, float beta)
{
    for (gsize e = 0; e < mn; e++)
        c[e] = beta == 0.0f ? 0.0f : beta * c[e];
}

typedef struct {
    const LmnGemm *g;
    const float *a, *b;
    float *c;
    int m, n, k, lda, ldb;
    gboolean split_n; /* blocks of C's columns (else of its rows) for one large GEMM */
    const LmnGemmEpilogue *epilogue; /* NULL, or bias/activation applied per block of C */
} GemmJob;

static void gemm_epilogue(const GemmJob *j, float *c, gsize ldc, gsize rows, gsize col0,
                          gsize cols);
LMN_CPU_CLONES static void unary_backward_range(gsize begin, gsize end, gpointer data);

/* One single-threaded product C[m, n] (leading dimension ldc) on the calling thread: oneDNN
 * where the build has it, else BLAS (itself held to one thread when the backend opens). */
static void sgemm_one(const LmnGemm *g, int m, int n, int k, const float *a, int lda,
                      const float *b, int ldb, float *c, int ldc)
{
    if (k == 0) {
        for (int r = 0; r < m; r++)
            gemm_empty(c + (gsize) r * (gsize) ldc, (gsize) n, g->beta);
        return;
    }
#ifdef LMN_HAVE_ONEDNN
    /* dnnl_sgemm rather than matmul primitives: it takes LmnGemm as it is (row-major, 'N'/'T',
     * leading dimensions, alpha and beta) with no per-shape primitive to create and cache, and
     * it runs oneDNN's JIT-compiled AVX2 / AVX-512 kernels.  It sizes its OpenMP team from the
     * calling thread's count, which is 1 here (see gemm_solo): the pool splits the work, so
     * OpenMP never starts a worker.  On an error (it has none for valid arguments) the product
     * falls back on BLAS, so C is always written. */
    if (dnnl_sgemm(g->trans_a ? 'T' : 'N', g->trans_b ? 'T' : 'N', m, n, k, g->alpha, a, lda, b,
                   ldb, g->beta, c, ldc) == dnnl_success)
        return;
#endif
    cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans,
                g->trans_b ? CblasTrans : CblasNoTrans, m, n, k, g->alpha, a, lda, b, ldb, g->beta,
                c, ldc);
}

/* Holds oneDNN to one OpenMP thread on the calling thread for one GEMM call (the count is per
 * thread, and the caller's own is restored), so no OpenMP team ever forms beside the pool. */
static int gemm_solo_begin(void)
{
#ifdef LMN_HAVE_ONEDNN
    int prev = omp_get_max_threads();
    if (prev != 1)
        omp_set_num_threads(1);
    return prev;
#else
    return 1;
#endif
}

static void gemm_solo_end(int prev)
{
#ifdef LMN_HAVE_ONEDNN
    if (prev != 1)
        omp_set_num_threads(prev);
#else
    (void) prev;
#endif
}

/* Batch entries [begin, end) of @data, a GemmJob, each a whole product on this thread. */
static void gemm_range(gsize begin, gsize end, gpointer data)
{
    const GemmJob *j = data;
    const LmnGemm *g = j->g;
    int prev = gemm_solo_begin();
    for (gsize i = begin; i < end; i++) {
        float *c = j->c + (gint64) i * g->stride_c;
        sgemm_one(g, j->m, j->n, j->k, j->a + (gint64) i * g->stride_a, j->lda,
                  j->b + (gint64) i * g->stride_b, j->ldb, c, j->n);
        if (j->epilogue != NULL)
            gemm_epilogue(j, c, (gsize) j->n, (gsize) j->m, 0, (gsize) j->n);
    }
    gemm_solo_end(prev);
}

/* Columns (split_n) or rows [begin, end) of C for the one product of @data: each block reads
 * its slice of B (columns) or A (rows) through the full leading dimensions, and every element
 * of C is summed over the whole of k by one call, so a block's values depend only on the
 * block layout, which depends only on the sizes and the thread count. */
static void gemm_block_range(gsize begin, gsize end, gpointer data)
{
    const GemmJob *j = data;
    const LmnGemm *g = j->g;
    const gsize w = end - begin;
    int prev = gemm_solo_begin();
    if (j->split_n) {
        const float *b = j->b + (g->trans_b ? begin * (gsize) j->ldb : begin);
        sgemm_one(g, j->m, (int) w, j->k, j->a, j->lda, b, j->ldb, j->c + begin, j->n);
        /* The block's epilogue runs while its columns are still in this core's cache. */
        if (j->epilogue != NULL)
            gemm_epilogue(j, j->c, (gsize) j->n, (gsize) j->m, begin, w);
    } else {
        const float *a = j->a + (g->trans_a ? begin : begin * (gsize) j->lda);
        float *c = j->c + begin * (gsize) j->n;
        sgemm_one(g, (int) w, j->n, j->k, a, j->lda, j->b, j->ldb, c, j->n);
        if (j->epilogue != NULL)
            gemm_epilogue(j, c, (gsize) j->n, w, 0, (gsize) j->n);
    }
    gemm_solo_end(prev);
}

void lmn_cpu_sgemm_serial(gboolean trans_a, gboolean trans_b, int m, int n, int k, const float *a,
                          int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    const LmnGemm g = {.struct_size = sizeof(LmnGemm),
                       .trans_a = trans_a,
                       .trans_b = trans_b,
                       .alpha = 1.0f,
                       .beta = beta};
    int prev = gemm_solo_begin();
    sgemm_one(&g, m, n, k, a, lda, b, ldb, c, ldc);
    gemm_solo_end(prev);
}

/* Below this many multiply-adds a GEMM runs on the calling thread alone: waking the pool costs
 * more than it saves (OpenBLAS draws its line at the same place, 4 * 65536). */
#define GEMM_SMALL_MNK 262144.0

/* The product of @g, with @epi (NULL or bias and activation) applied to each block of C. */
static void gemm_run(LmnCpuContext *c, const LmnGemm *g, const LmnGemmEpilogue *epi)
{
    if (g->m == 0 || g->n == 0)
        return;
    /* CBLAS takes int dimensions. */
    g_return_if_fail(g->m <= G_MAXINT && g->n <= G_MAXINT && g->k <= G_MAXINT);
    GemmJob j = {.g = g,
                 .a = fptr(g->a) + g->a_offset,
                 .b = fptr(g->b) + g->b_offset,
                 .c = fptr(g->c) + g->c_offset,
                 .m = (int) g->m,
                 .n = (int) g->n,
                 .k = (int) g->k,
                 .epilogue = epi};
    j.lda = MAX(g->trans_a ? j.m : j.k, 1);
    j.ldb = MAX(g->trans_b ? j.k : j.n, 1);
    const gsize batch = (gsize) MAX(g->batch, 1);
    const gboolean small = (double) j.m * j.n * j.k < GEMM_SMALL_MNK;
    /* One threading model: every GEMM library call runs on one thread, and the backend's own
     * pool spreads the work, so no second set of workers spins while the pool runs (OpenMP's
     * team waits busy after each parallel region, OpenBLAS's yields in a loop) and the thread
     * count is the backend's alone.  Large products are cut into blocks of C; a batch of
     * products writing disjoint C (a convolution's images) is cut into whole products. */
    EXEC_BEGIN(c);
    if (c->n_threads > 1 && batch > 1 && g->stride_c >= g->m * g->n &&
        (double) batch * j.m * j.n * j.k >= GEMM_SMALL_MNK) {
        lmn_cpu_pool_run(c->pool, batch, 1, gemm_range, &j);
    } else if (c->n_threads > 1 && !small && MAX(j.m, j.n) >= 32) {
        /* The wider side of C is cut: each block then reads the smaller share of the inputs. */
        j.split_n = j.n >= j.m;
        for (gsize i = 0; i < batch; i++) {
            GemmJob e = j;
            e.a = j.a + (gint64) i * g->stride_a;
            e.b = j.b + (gint64) i * g->stride_b;
            e.c = j.c + (gint64) i * g->stride_c;
            lmn_cpu_pool_run(c->pool, (gsize) (j.split_n ? j.n : j.m), 16, gemm_block_range, &e);
        }
    } else {
        gemm_range(0, batch, &j);
    }
    EXEC_END(c);
}

void lmn_cpu_gemm(gpointer ctx, const LmnGemm *g)
{
    gemm_run(ctx, g, NULL);
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
LMN_CPU_CLONES static void bias_add_planes(gsize begin, gsize end, gpointer data)
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

/* Sums @n floats (LMN_REDUCE_SUM), their squares or their absolute values in double with eight
 * interleaved accumulators (a fixed order, so the result is reproducible, and independent lanes,
 * so it vectorises). */
static inline double sum_f64(const float *restrict x, gsize n, LmnReduceOp op)
{
    double acc[8] = {0};
    gsize i = 0;
    if (op == LMN_REDUCE_SUM_SQUARES) {
        for (; i + 8 <= n; i += 8)
            for (gsize q = 0; q < 8; q++)
                acc[q] += (double) x[i + q] * (double) x[i + q];
    } else if (op == LMN_REDUCE_SUM_ABS) {
        for (; i + 8 <= n; i += 8)
            for (gsize q = 0; q < 8; q++)
                acc[q] += fabs((double) x[i + q]);
    } else {
        for (; i + 8 <= n; i += 8)
            for (gsize q = 0; q < 8; q++)
                acc[q] += (double) x[i + q];
    }
    double tail = 0.0;
    for (; i < n; i++) {
        const double v = x[i];
        tail += op == LMN_REDUCE_SUM_SQUARES ? v * v : (op == LMN_REDUCE_SUM_ABS ? fabs(v) : v);
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

/* inner > 1: units are channels; each sums outer planes of length inner. */
LMN_CPU_CLONES static void bias_grad_channels(gsize begin, gsize end, gpointer data)
{
    const BiasJob *j = data;
    for (gsize ch = begin; ch < end; ch++) {
        double s = 0.0;
        for (gsize o = 0; o < j->outer; o++)
            s += sum_f64(j->dy + (o * j->channels + ch) * j->inner, j->inner, LMN_REDUCE_SUM);
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

/* The ABI 1.3 functions of unary_range (same contract: x may be y). */
static void unary13_range(LmnUnaryOp op, const float *x, float *y, gsize begin, gsize end)
{
    switch (op) {
    case LMN_UNARY_SQRT:
        for (gsize i = begin; i < end; i++)
            y[i] = sqrtf(x[i]);
        break;
    case LMN_UNARY_RSQRT:
        for (gsize i = begin; i < end; i++)
            y[i] = 1.0f / sqrtf(x[i]);
        break;
    case LMN_UNARY_RECIPROCAL:
        for (gsize i = begin; i < end; i++)
            y[i] = 1.0f / x[i];
        break;
    case LMN_UNARY_EXP:
        for (gsize i = begin; i < end; i++)
            y[i] = expf(x[i]);
        break;
    case LMN_UNARY_LOG:
        for (gsize i = begin; i < end; i++)
            y[i] = logf(x[i]);
        break;
    case LMN_UNARY_SILU:
        for (gsize i = begin; i < end; i++)
            y[i] = x[i] / (1.0f + expf(-x[i]));
        break;
    case LMN_UNARY_MISH:
        for (gsize i = begin; i < end; i++) {
            const float sp = x[i] > SOFTPLUS_THRESHOLD ? x[i] : log1pf(expf(x[i]));
            y[i] = x[i] * tanhf(sp);
        }
        break;
    default:
        break;
    }
}

LMN_CPU_CLONES static void unary_range(gsize begin, gsize end, gpointer data)
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
        /* Written as "not above 0" so NaN passes through, as in torch.relu: a NaN weight must
         * reach the loss, where the guard sees it, not vanish into a zero activation. */
        for (gsize i = begin; i < end; i++)
            y[i] = x[i] <= 0.0f ? 0.0f : x[i];
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
    case LMN_UNARY_SIGN:
        /* NaN stays NaN, as in torch.sign. */
        for (gsize i = begin; i < end; i++)
            y[i] = x[i] > 0.0f ? 1.0f : (x[i] < 0.0f ? -1.0f : x[i] * 0.0f);
        break;
    case LMN_UNARY_ABS:
        for (gsize i = begin; i < end; i++)
            y[i] = fabsf(x[i]);
        break;
    case LMN_UNARY_SQUARE:
        for (gsize i = begin; i < end; i++)
            y[i] = x[i] * x[i];
        break;
    case LMN_UNARY_SQRT:
    case LMN_UNARY_RSQRT:
    case LMN_UNARY_RECIPROCAL:
    case LMN_UNARY_EXP:
    case LMN_UNARY_LOG:
    case LMN_UNARY_SILU:
    case LMN_UNARY_MISH:
        unary13_range(j->op, x, y, begin, end);
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

/* ---- GEMM with an epilogue (ABI 1.5) ---- */

/* Columns [col0, col0 + cols) of @rows rows of C (@ldc apart): + bias[col], then the activation,
 * each exactly as lmn_cpu_bias_add and lmn_cpu_unary compute it, so the fused product is bit for
 * bit the composed one. */
static void gemm_epilogue(const GemmJob *j, float *c, gsize ldc, gsize rows, gsize col0, gsize cols)
{
    const LmnGemmEpilogue *e = j->epilogue;
    const float *bias = e->bias != NULL ? fptr(e->bias) + col0 : NULL;
    /* @c is within C (j->c, one product); the activated output, and an activation gradient's
     * x and y, are laid out as C is. */
    const gsize at = (gsize) (c - j->c);
    float *act = e->activated != NULL ? fptr(e->activated) + at : NULL;
    if (e->activation_grad != LMN_UNARY_IDENTITY) {
        const float *gx = fptr(e->grad_x) + at, *gy = fptr(e->grad_y) + at;
        for (gsize r = 0; r < rows; r++) {
            float *dx = c + r * ldc + col0;
            const UnaryJob u = {.op = e->activation_grad,
                                .x = gx + r * ldc + col0,
                                .y = gy + r * ldc + col0,
                                .dy = dx,
                                .out = dx,
                                .alpha = e->activation_alpha};
            unary_backward_range(0, cols, (gpointer) &u);
        }
        return;
    }
    for (gsize r = 0; r < rows; r++) {
        float *restrict y = c + r * ldc + col0;
        if (bias != NULL)
            for (gsize q = 0; q < cols; q++)
                y[q] += bias[q];
        if (e->activation != LMN_UNARY_IDENTITY) {
            const UnaryJob u = {.op = e->activation,
                                .x = y,
                                .out = act != NULL ? act + r * ldc + col0 : y,
                                .alpha = e->activation_alpha};
            unary_range(0, cols, (gpointer) &u);
        }
    }
}

void lmn_cpu_gemm_ex(gpointer ctx, const LmnGemm *g, const LmnGemmEpilogue *e)
{
    LmnCpuContext *c = ctx;
    const gboolean per_block = e->bias != NULL || e->activation != LMN_UNARY_IDENTITY ||
                               e->activation_grad != LMN_UNARY_IDENTITY;
    gemm_run(c, g, per_block ? e : NULL);
    /* The row sums are lmn_cpu_bias_grad's, in its order: op(A) is A [k, m] transposed (sums
     * down its columns) or A [m, k] itself. */
    if (e->a_row_sums != NULL) {
        if (g->trans_a)
            lmn_cpu_bias_grad(ctx, e->a_row_sums, g->a, g->k, g->m, 1, e->row_sums_beta);
        else
            lmn_cpu_bias_grad(ctx, e->a_row_sums, g->a, 1, g->m, g->k, e->row_sums_beta);
    }
}

/* The ABI 1.3 derivatives of unary_backward_range (dx may be dy). */
static void unary13_backward_range(LmnUnaryOp op, const float *x, const float *y, const float *dy,
                                   float *dx, gsize begin, gsize end)
{
    switch (op) {
    case LMN_UNARY_SQRT:
        for (gsize i = begin; i < end; i++)
            dx[i] = dy[i] * 0.5f / y[i];
        break;
    case LMN_UNARY_RSQRT:
        for (gsize i = begin; i < end; i++)
            dx[i] = -0.5f * dy[i] * y[i] * y[i] * y[i];
        break;
    case LMN_UNARY_RECIPROCAL:
        for (gsize i = begin; i < end; i++)
            dx[i] = -dy[i] * y[i] * y[i];
        break;
    case LMN_UNARY_EXP:
        for (gsize i = begin; i < end; i++)
            dx[i] = dy[i] * y[i];
        break;
    case LMN_UNARY_LOG:
        for (gsize i = begin; i < end; i++)
            dx[i] = dy[i] / x[i];
        break;
    case LMN_UNARY_SILU:
        for (gsize i = begin; i < end; i++) {
            const float s = 1.0f / (1.0f + expf(-x[i]));
            dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
        }
        break;
    case LMN_UNARY_MISH:
        /* d/dx x tanh(sp(x)) = t + x sigmoid(x) (1 - t^2), with t = tanh(sp(x)). */
        for (gsize i = begin; i < end; i++) {
            const float sp = x[i] > SOFTPLUS_THRESHOLD ? x[i] : log1pf(expf(x[i]));
            const float t = tanhf(sp), s = 1.0f / (1.0f + expf(-x[i]));
            dx[i] = dy[i] * (t + x[i] * s * (1.0f - t * t));
        }
        break;
    default:
        break;
    }
}

LMN_CPU_CLONES static void unary_backward_range(gsize begin, gsize end, gpointer data)
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
        /* The derivative at 0 is 0, as in PyTorch; at NaN it passes dy through, as PyTorch's
         * threshold_backward does (its test is "output <= 0"). */
        for (gsize i = begin; i < end; i++) {
            /* dy read unconditionally: a conditional load keeps the loop from vectorising. */
            const float d = dy[i];
            dx[i] = x[i] <= 0.0f ? 0.0f : d;
        }
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
        for (gsize i = begin; i < end; i++) {
            const float d = dy[i];
            dx[i] = x[i] > 0.0f ? d : a * d;
        }
        break;
    case LMN_UNARY_ELU:
        for (gsize i = begin; i < end; i++)
            dx[i] = x[i] <= 0.0f ? dy[i] * a * expf(x[i]) : dy[i]; /* NaN: dy, as in torch */
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
    case LMN_UNARY_SIGN:
        /* Piecewise constant: the gradient is 0 everywhere (PyTorch's choice at 0 too). */
        for (gsize i = begin; i < end; i++)
            dx[i] = 0.0f;
        break;
    case LMN_UNARY_ABS:
        /* sign(x), 0 at 0 as in PyTorch. */
        for (gsize i = begin; i < end; i++)
            dx[i] = x[i] > 0.0f ? dy[i] : (x[i] < 0.0f ? -dy[i] : 0.0f);
        break;
    case LMN_UNARY_SQUARE:
        for (gsize i = begin; i < end; i++)
            dx[i] = 2.0f * x[i] * dy[i];
        break;
    case LMN_UNARY_SQRT:
    case LMN_UNARY_RSQRT:
    case LMN_UNARY_RECIPROCAL:
    case LMN_UNARY_EXP:
    case LMN_UNARY_LOG:
    case LMN_UNARY_SILU:
    case LMN_UNARY_MISH:
        unary13_backward_range(j->op, x, y, dy, dx, begin, end);
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
    case LMN_BINARY_DIV:
    case LMN_BINARY_MAXIMUM:
    case LMN_BINARY_MINIMUM:
    case LMN_BINARY_COUNT:
        /* The core runs these through binary_broadcast (cpu-ops-axis.c). */
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
    LmnReduceOp op;
    double *partials;
} ReduceJob;

static void reduce_blocks(gsize begin, gsize end, gpointer data)
{
    const ReduceJob *j = data;
    for (gsize b = begin; b < end; b++) {
        gsize start = b * j->block;
        gsize len = MIN(j->block, j->n - start);
        j->partials[b] = sum_f64(j->x + start, len, j->op);
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
    ReduceJob j = {
        .x = fptr(x), .n = n, .block = block_size(n, 4096), .op = op, .partials = c->partials};
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
    float *dx; /* softmax_xent_grad: also dx = scale (p - target), row by row */
} XentJob;

static void xent_backward_row(const XentJob *j, const float *p, float *dx, gint32 label);

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
        loss -= (double) s / (double) k * sum_f64(x, k, LMN_REDUCE_SUM);
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
        for (gsize r = r0; r < r1; r++) {
            s += softmax_row(j->x + r * j->k, j->out + r * j->k, j->k, j->labels[r], j->smoothing);
            /* The row's gradient while its probabilities are in cache. */
            if (j->dx != NULL)
                xent_backward_row(j, j->out + r * j->k, j->dx + r * j->k, j->labels[r]);
        }
        j->partials[b] = s;
    }
}

static void xent_run(LmnCpuContext *c, const LmnTensor *logits, const LmnTensor *labels,
                     LmnTensor *probs, LmnTensor *loss, float smoothing, LmnTensor *dx,
                     float scale);

void lmn_cpu_softmax_xent(gpointer ctx, const LmnTensor *logits, const LmnTensor *labels,
                          LmnTensor *probs, LmnTensor *loss, float smoothing)
{
    xent_run(ctx, logits, labels, probs, loss, smoothing, NULL, 0.0f);
}

void lmn_cpu_softmax_xent_grad(gpointer ctx, const LmnTensor *logits, const LmnTensor *labels,
                               LmnTensor *probs, LmnTensor *loss, float smoothing, LmnTensor *dx,
                               float scale)
{
    xent_run(ctx, logits, labels, probs, loss, smoothing, dx, scale);
}

static void xent_run(LmnCpuContext *c, const LmnTensor *logits, const LmnTensor *labels,
                     LmnTensor *probs, LmnTensor *loss, float smoothing, LmnTensor *dx, float scale)
{
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
                 .scale = scale,
                 .partials = c->partials,
                 .dx = dx != NULL ? fptr(dx) : NULL};
    const gsize n_blocks = (rows + j.block - 1) / j.block;
    EXEC_BEGIN(c);
    run(c, n_blocks, j.block * j.k, xent_blocks, &j);
    lo[0] = (float) (sum_partials(c->partials, n_blocks) / (double) rows);
    EXEC_END(c);
}

/* dx = scale (p - target) for one row of probabilities @p. */
static void xent_backward_row(const XentJob *j, const float *p, float *dx, gint32 label)
{
    const gsize k = j->k;
    const float off = j->smoothing / (float) k;
    const float hit = j->scale * (1.0f - j->smoothing);
    for (gsize q = 0; q < k; q++)
        dx[q] = j->scale * (p[q] - off);
    if (label >= 0 && (gsize) label < k)
        dx[label] -= hit;
}

static void xent_backward_rows(gsize begin, gsize end, gpointer data)
{
    const XentJob *j = data;
    for (gsize r = begin; r < end; r++)
        xent_backward_row(j, j->x + r * j->k, j->out + r * j->k, j->labels[r]);
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

/* ==== ABI 1.1 ==== */

/* ---- im2col, col2im ---- */

/* The range [lo, hi) of output columns ow whose input column ow * stride + off lies in
 * [0, width); off = j * dilation - pad may be negative. */
static inline void valid_range(gint64 off, gint64 stride, gint64 width, gint64 out_w, gint64 *lo,
                               gint64 *hi)
{
    /* ow * stride + off >= 0  <=>  ow >= ceil(-off / stride) */
    gint64 l = off >= 0 ? 0 : (-off + stride - 1) / stride;
    /* ow * stride + off <= width - 1  <=>  ow <= floor((width - 1 - off) / stride) */
    gint64 h = width - 1 - off < 0 ? 0 : (width - 1 - off) / stride + 1;
    l = MIN(l, out_w);
    h = CLAMP(h, l, out_w);
    *lo = l;
    *hi = h;
}

typedef struct {
    const float *x;
    float *out;
    const LmnConv2dGeom *g;
    gsize ld; /* the patch matrix's row stride; 0 = oh * ow (rows packed) */
} ConvJob;

/* Units are (batch, channel) planes: plane u of x feeds exactly the kernel_h * kernel_w rows
 * of cols at u * kernel_h * kernel_w (cols is [batch, channels * kh * kw, oh * ow]), so planes
 * are independent in both directions. */
LMN_CPU_CLONES static void im2col_planes(gsize begin, gsize end, gpointer data)
{
    const ConvJob *j = data;
    const LmnConv2dGeom *g = j->g;
    const gint64 H = g->height, W = g->width, OH = g->out_h, OW = g->out_w;
    const gint64 sw = g->stride_w;
    const gsize ld = j->ld != 0 ? j->ld : (gsize) (OH * OW);
    for (gsize u = begin; u < end; u++) {
        const float *xp = j->x + u * (gsize) (H * W);
        float *cp = j->out + u * (gsize) (g->kernel_h * g->kernel_w) * ld;
        for (gint64 ki = 0; ki < g->kernel_h; ki++)
            for (gint64 kj = 0; kj < g->kernel_w; kj++) {
                float *row = cp + (gsize) (ki * g->kernel_w + kj) * ld;
                const gint64 off = kj * g->dilation_w - g->pad_w;
                gint64 lo, hi;
                valid_range(off, sw, W, OW, &lo, &hi);
                for (gint64 oh = 0; oh < OH; oh++) {
                    float *restrict r = row + oh * OW;
                    const gint64 ih = oh * g->stride_h - g->pad_h + ki * g->dilation_h;
                    if (ih < 0 || ih >= H) {
                        memset(r, 0, (gsize) OW * sizeof(float));
                        continue;
                    }
                    const float *restrict xr = xp + ih * W + off;
                    for (gint64 ow = 0; ow < lo; ow++)
                        r[ow] = 0.0f;
                    if (sw == 1)
                        /* Rows are short (an image's width): a loop beats a memcpy call. */
                        for (gint64 ow = lo; ow < hi; ow++)
                            r[ow] = xr[ow];
                    else
                        for (gint64 ow = lo; ow < hi; ow++)
                            r[ow] = xr[ow * sw];
                    for (gint64 ow = hi; ow < OW; ow++)
                        r[ow] = 0.0f;
                }
            }
    }
}

void lmn_cpu_im2col_image(const float *x, float *cols, gsize ld, const LmnConv2dGeom *g)
{
    ConvJob j = {.x = x, .out = cols, .g = g, .ld = ld};
    im2col_planes(0, (gsize) g->channels, &j);
}

void lmn_cpu_im2col(gpointer ctx, const LmnTensor *x, LmnTensor *cols, const LmnConv2dGeom *g)
{
    LmnCpuContext *c = ctx;
    ConvJob j = {.x = fptr(x), .out = fptr(cols), .g = g};
    EXEC_BEGIN(c);
    run(c, (gsize) (g->batch * g->channels),
        (gsize) (g->kernel_h * g->kernel_w * g->out_h * g->out_w), im2col_planes, &j);
    EXEC_END(c);
}

/* Each plane of dx is summed from its own rows of cols in a fixed order (kernel position, then
 * output pixel), so the result does not depend on the thread count. */
LMN_CPU_CLONES static void col2im_planes(gsize begin, gsize end, gpointer data)
{
    const ConvJob *j = data;
    const LmnConv2dGeom *g = j->g;
    const gint64 H = g->height, W = g->width, OH = g->out_h, OW = g->out_w;
    const gint64 sw = g->stride_w;
    const gsize ld = j->ld != 0 ? j->ld : (gsize) (OH * OW);
    for (gsize u = begin; u < end; u++) {
        float *dp = j->out + u * (gsize) (H * W);
        const float *cp = j->x + u * (gsize) (g->kernel_h * g->kernel_w) * ld;
        memset(dp, 0, (gsize) (H * W) * sizeof(float));
        for (gint64 ki = 0; ki < g->kernel_h; ki++)
            for (gint64 kj = 0; kj < g->kernel_w; kj++) {
                const float *row = cp + (gsize) (ki * g->kernel_w + kj) * ld;
                const gint64 off = kj * g->dilation_w - g->pad_w;
                gint64 lo, hi;
                valid_range(off, sw, W, OW, &lo, &hi);
                for (gint64 oh = 0; oh < OH; oh++) {
                    const gint64 ih = oh * g->stride_h - g->pad_h + ki * g->dilation_h;
                    if (ih < 0 || ih >= H)
                        continue;
                    const float *restrict r = row + oh * OW;
                    float *restrict dr = dp + ih * W + off;
                    for (gint64 ow = lo; ow < hi; ow++)
                        dr[ow * sw] += r[ow];
                }
            }
    }
}

void lmn_cpu_col2im_image(const float *cols, float *dx, gsize ld, const LmnConv2dGeom *g)
{
    ConvJob j = {.x = cols, .out = dx, .g = g, .ld = ld};
    col2im_planes(0, (gsize) g->channels, &j);
}

void lmn_cpu_col2im(gpointer ctx, const LmnTensor *cols, LmnTensor *dx, const LmnConv2dGeom *g)
{
    LmnCpuContext *c = ctx;
    ConvJob j = {.x = fptr(cols), .out = fptr(dx), .g = g};
    EXEC_BEGIN(c);
    run(c, (gsize) (g->batch * g->channels),
        (gsize) (g->kernel_h * g->kernel_w * g->out_h * g->out_w), col2im_planes, &j);
    EXEC_END(c);
}

/* ---- pooling ---- */

typedef struct {
    LmnPoolMode mode;
    const float *x; /* x, or dy for the backward */
    float *y;       /* y, or dx for the backward */
    gint32 *argmax;
    const gint32 *argmax_in;
    const LmnConv2dGeom *g;
} PoolJob;

/* The window of output (oh, ow) as the kernel rows [*i0, *i1) and columns [*j0, *j1) that fall
 * inside the image, and its top-left corner (h0, w0) in (possibly padded) input coordinates. */
static inline void pool_window(const LmnConv2dGeom *g, gint64 oh, gint64 ow, gint64 *h0, gint64 *w0,
                               gint64 *i0, gint64 *i1, gint64 *j0, gint64 *j1)
{
    *h0 = oh * g->stride_h - g->pad_h;
    *w0 = ow * g->stride_w - g->pad_w;
    valid_range(*h0, g->dilation_h, g->height, g->kernel_h, i0, i1);
    valid_range(*w0, g->dilation_w, g->width, g->kernel_w, j0, j1);
}

/* Floats (and as many indices) of pool_max_2x2()'s per-thread buffer, on the stack. */
#define POOL_2X2_BUF 4096

/* Whether max pooling is the common 2x2, stride-2 case with every window inside the image, for
 * which pool_max_2x2() avoids the general window arithmetic (LeNet-style models spend a tenth of
 * a step pooling). */
static gboolean pool_is_2x2(const PoolJob *j)
{
    const LmnConv2dGeom *g = j->g;
    return j->mode == LMN_POOL_MAX && g->kernel_h == 2 && g->kernel_w == 2 && g->stride_h == 2 &&
           g->stride_w == 2 && g->pad_h == 0 && g->pad_w == 0 && g->dilation_h == 1 &&
           g->dilation_w == 1 && 2 * g->out_h <= g->height && 2 * g->out_w <= g->width &&
           2 * g->out_w <= POOL_2X2_BUF;
}

/* The general rule as a select: @v replaces @best when it is greater, or a NaN over a number.
 * A tournament (a vs b, c vs d, then the winners) under this rule gives exactly the sequential
 * scan's winner: a later candidate wins only when strictly better, so ties and NaNs go to the
 * first in window order. */
static inline gboolean pool_better(float v, float best)
{
    return v > best || (v != v && best == best);
}

/* Whether the right of two vertical winners @l and @r (indices @li and @ri in the plane) wins:
 * it is strictly better, or they tie (equal, or both NaN) and it comes first in window order.
 * Bitwise, not short-circuit, so that the loops around it vectorise. */
static inline int pool_pick_right(float l, float r, gint32 li, gint32 ri)
{
    const int lnan = l != l, rnan = r != r;
    const int r_better = (r > l) | (rnan & !lnan), l_better = (l > r) | (lnan & !rnan);
    return r_better | (!r_better & !l_better & (ri < li));
}

/* In two stages, each a loop the compiler vectorises (the AVX-512 clone takes 16 at once):
 * first the vertical winner of each input column pair of rows 2oh and 2oh + 1, with its index in
 * the plane, into a buffer; then, over the whole block of output rows as one flat loop (an output
 * row is too short a loop: 14 windows in the residual CNN's stem), the winner of each horizontal
 * pair.  The result is the sequential scan's: a later candidate wins only when strictly better
 * (pool_better()), and where the two vertical winners tie (equal, or both NaN) the one first in
 * window order wins, which is the one with the smaller index in the plane. */
LMN_CPU_CLONES static void pool_max_2x2(const PoolJob *j, gsize begin, gsize end)
{
    const LmnConv2dGeom *g = j->g;
    const gint64 H = g->height, W = g->width, OH = g->out_h, OW = g->out_w;
    const gint64 W2 = 2 * OW; /* the input columns the windows cover */
    const gint64 rows = MAX(POOL_2X2_BUF / W2, 1);
    float v[POOL_2X2_BUF];
    gint32 vi[POOL_2X2_BUF];
    for (gsize u = begin; u < end; u++) {
        const float *xp = j->x + u * (gsize) (H * W);
        for (gint64 oh0 = 0; oh0 < OH; oh0 += rows) {
            const gint64 nr = MIN(rows, OH - oh0);
            for (gint64 r = 0; r < nr; r++) {
                const gint64 oh = oh0 + r;
                const float *restrict x0 = xp + 2 * oh * W, *restrict x1 = x0 + W;
                float *restrict vr = v + r * W2;
                gint32 *restrict ir = vi + r * W2;
                const gint32 base = (gint32) (2 * oh * W);
                for (gint64 i = 0; i < W2; i++) {
                    const gboolean low = pool_better(x1[i], x0[i]);
                    vr[i] = low ? x1[i] : x0[i];
                    ir[i] = base + (gint32) i + (low ? (gint32) W : 0);
                }
            }
            const gsize out0 = u * (gsize) (OH * OW) + (gsize) (oh0 * OW), n = (gsize) (nr * OW);
            float *restrict y = j->y + out0;
            gint32 *restrict arg = j->argmax != NULL ? j->argmax + out0 : NULL;
            if (arg == NULL) {
                for (gsize t = 0; t < n; t++)
                    y[t] = pool_pick_right(v[2 * t], v[2 * t + 1], vi[2 * t], vi[2 * t + 1])
                               ? v[2 * t + 1]
                               : v[2 * t];
                continue;
            }
            for (gsize t = 0; t < n; t++) {
                const int right = pool_pick_right(v[2 * t], v[2 * t + 1], vi[2 * t], vi[2 * t + 1]);
                y[t] = right ? v[2 * t + 1] : v[2 * t];
                arg[t] = right ? vi[2 * t + 1] : vi[2 * t];
            }
        }
    }
}

/* Units are (batch, channel) planes; each output reads only its own input plane. */
LMN_CPU_CLONES static void pool_planes(gsize begin, gsize end, gpointer data)
{
    const PoolJob *j = data;
    if (pool_is_2x2(j)) {
        pool_max_2x2(j, begin, end);
        return;
    }
    const LmnConv2dGeom *g = j->g;
    const gint64 H = g->height, W = g->width, OH = g->out_h, OW = g->out_w;
    const gint64 dh = g->dilation_h, dw = g->dilation_w;
    const float area = (float) (g->kernel_h * g->kernel_w);
    for (gsize u = begin; u < end; u++) {
        const float *xp = j->x + u * (gsize) (H * W);
        float *yp = j->y + u * (gsize) (OH * OW);
        gint32 *ap = j->argmax != NULL ? j->argmax + u * (gsize) (OH * OW) : NULL;
        for (gint64 oh = 0; oh < OH; oh++)
            for (gint64 ow = 0; ow < OW; ow++) {
                gint64 h0, w0, i0, i1, j0, j1;
                pool_window(g, oh, ow, &h0, &w0, &i0, &i1, &j0, &j1);
                if (j->mode == LMN_POOL_MAX) {
                    /* Padding never wins; the first maximum in row-major window order wins;
                     * a NaN wins over numbers (it propagates, as in PyTorch) and the first
                     * NaN is kept.  A window entirely in the padding (impossible with
                     * PyTorch's pad <= kernel / 2) gives 0 and argmax -1. */
                    float best = 0.0f;
                    gint64 arg = -1;
                    for (gint64 ki = i0; ki < i1; ki++) {
                        const gint64 row = (h0 + ki * dh) * W;
                        for (gint64 kj = j0; kj < j1; kj++) {
                            const gint64 at = row + w0 + kj * dw;
                            const float v = xp[at];
                            if (arg < 0 || v > best || (isnan(v) && !isnan(best))) {
                                best = v;
                                arg = at;
                            }
                        }
                    }
                    yp[oh * OW + ow] = best;
                    if (ap != NULL)
                        ap[oh * OW + ow] = (gint32) arg;
                } else {
                    float s = 0.0f;
                    for (gint64 ki = i0; ki < i1; ki++) {
                        const float *xr = xp + (h0 + ki * dh) * W + w0;
                        for (gint64 kj = j0; kj < j1; kj++)
                            s += xr[kj * dw];
                    }
                    yp[oh * OW + ow] = s / area;
                }
            }
    }
}

void lmn_cpu_pool2d(gpointer ctx, LmnPoolMode mode, const LmnTensor *x, LmnTensor *y,
                    LmnTensor *argmax, const LmnConv2dGeom *g)
{
    LmnCpuContext *c = ctx;
    PoolJob j = {.mode = mode,
                 .x = fptr(x),
                 .y = fptr(y),
                 .argmax = mode == LMN_POOL_MAX && argmax != NULL ? iptr(argmax) : NULL,
                 .g = g};
    EXEC_BEGIN(c);
    run(c, (gsize) (g->batch * g->channels),
        (gsize) (g->out_h * g->out_w * g->kernel_h * g->kernel_w), pool_planes, &j);
    EXEC_END(c);
}

/* Each dx plane is cleared and then accumulated from its own dy plane in output order. */
LMN_CPU_CLONES static void pool_backward_planes(gsize begin, gsize end, gpointer data)
{
    const PoolJob *j = data;
    const LmnConv2dGeom *g = j->g;
    const gint64 H = g->height, W = g->width, OH = g->out_h, OW = g->out_w;
    const gint64 dh = g->dilation_h, dw = g->dilation_w;
    const float area = (float) (g->kernel_h * g->kernel_w);
    for (gsize u = begin; u < end; u++) {
        const float *dyp = j->x + u * (gsize) (OH * OW);
        float *dxp = j->y + u * (gsize) (H * W);
        memset(dxp, 0, (gsize) (H * W) * sizeof(float));
        if (j->mode == LMN_POOL_MAX) {
            const gint32 *ap = j->argmax_in + u * (gsize) (OH * OW);
            for (gint64 o = 0; o < OH * OW; o++)
                if (ap[o] >= 0 && ap[o] < H * W)
                    dxp[ap[o]] += dyp[o];
            continue;
        }
        for (gint64 oh = 0; oh < OH; oh++)
            for (gint64 ow = 0; ow < OW; ow++) {
                gint64 h0, w0, i0, i1, j0, j1;
                pool_window(g, oh, ow, &h0, &w0, &i0, &i1, &j0, &j1);
                const float d = dyp[oh * OW + ow] / area;
                for (gint64 ki = i0; ki < i1; ki++) {
                    float *dr = dxp + (h0 + ki * dh) * W + w0;
                    for (gint64 kj = j0; kj < j1; kj++)
                        dr[kj * dw] += d;
                }
            }
    }
}

void lmn_cpu_pool2d_backward(gpointer ctx, LmnPoolMode mode, const LmnTensor *dy,
                             const LmnTensor *argmax, LmnTensor *dx, const LmnConv2dGeom *g)
{
    LmnCpuContext *c = ctx;
    PoolJob j = {.mode = mode,
                 .x = fptr(dy),
                 .y = fptr(dx),
                 .argmax_in = mode == LMN_POOL_MAX ? iptr(argmax) : NULL,
                 .g = g};
    EXEC_BEGIN(c);
    run(c, (gsize) (g->batch * g->channels),
        (gsize) (g->out_h * g->out_w * (mode == LMN_POOL_MAX ? 1 : g->kernel_h * g->kernel_w)),
        pool_backward_planes, &j);
    EXEC_END(c);
}

/* ---- batch normalisation ---- */

/* Channels handled together when x is [outer, channels] (inner == 1): the rows are walked once
 * per tile with one accumulator per channel, so memory is read contiguously. */
#define BN_TILE 64

typedef struct {
    const float *x;
    const float *dy;
    const float *mean;
    const float *var;
    const float *weight;
    const float *bias;
    float *y; /* y, or dx */
    float *out_mean, *out_var, *dweight, *dbias;
    float eps;
    gsize outer, channels, inner;
} BnJob;

static inline float bn_invstd(float var, float eps)
{
    return (float) (1.0 / sqrt((double) var + (double) eps));
}

/* Eight interleaved double accumulators, held as two vectors of four (GCC's vector extension):
 * lanes 0-3 in lo, 4-7 in hi, so that each clone keeps them in registers (two ymm with AVX2 or
 * AVX-512; a single 64-byte vector left the AVX2 clone spilling it to the stack every
 * iteration, three times slower).  Lane by lane the operations are the scalar ones, summed in a
 * fixed order, so every clone gives the same bits. */
typedef float LmnV4f __attribute__((vector_size(16)));
typedef double LmnV4d __attribute__((vector_size(32)));

/* Macros, not functions: a function taking or returning a 32-byte vector has no fixed ABI
 * across the clones (GCC's -Wpsabi). */
#define LOAD4_F64(p)                                                                               \
    ({                                                                                             \
        LmnV4f f4_;                                                                                \
        memcpy(&f4_, (p), sizeof f4_);                                                             \
        __builtin_convertvector(f4_, LmnV4d);                                                      \
    })
#define HSUM8_F64(lo, hi)                                                                          \
    ((((lo)[0] + (lo)[1]) + ((lo)[2] + (lo)[3])) + (((hi)[0] + (hi)[1]) + ((hi)[2] + (hi)[3])))

/* Sum of (x - m)^2 in double with eight interleaved accumulators, as sum_f64(). */
static inline double sum_sqdev_f64(const float *restrict x, gsize n, double m)
{
    LmnV4d lo = {0}, hi = {0};
    gsize i = 0;
    for (; i + 8 <= n; i += 8) {
        const LmnV4d d0 = LOAD4_F64(x + i) - m, d1 = LOAD4_F64(x + i + 4) - m;
        lo += d0 * d0;
        hi += d1 * d1;
    }
    double tail = 0.0;
    for (; i < n; i++) {
        const double d = (double) x[i] - m;
        tail += d * d;
    }
    return HSUM8_F64(lo, hi) + tail;
}

/* sum(dy) and sum(dy * (x - m)) over @n elements in double, eight interleaved accumulators each
 * (sixteen measured slower). */
static inline void sum_dy_dyx_f64(const float *restrict x, const float *restrict dy, gsize n,
                                  float m, double *sdy, double *sdyx)
{
    LmnV4d a_lo = {0}, a_hi = {0}, b_lo = {0}, b_hi = {0};
    const double md = m;
    gsize i = 0;
    for (; i + 8 <= n; i += 8) {
        const LmnV4d g0 = LOAD4_F64(dy + i), g1 = LOAD4_F64(dy + i + 4);
        a_lo += g0;
        a_hi += g1;
        b_lo += g0 * (LOAD4_F64(x + i) - md);
        b_hi += g1 * (LOAD4_F64(x + i + 4) - md);
    }
    double ta = 0.0, tb = 0.0;
    for (; i < n; i++) {
        ta += dy[i];
        tb += (double) dy[i] * ((double) x[i] - md);
    }
    *sdy += HSUM8_F64(a_lo, a_hi) + ta;
    *sdyx += HSUM8_F64(b_lo, b_hi) + tb;
}

/* Two passes (mean, then squared deviations from it) in double: one-pass E[x^2] - E[x]^2 loses
 * the variance to cancellation when |mean| >> std.  Cloned (LMN_CPU_CLONES) like every loop
 * below: the baseline's SSE2 converts and adds two doubles at a time, and these loops are
 * compute-bound (a channel's planes stay in L2 between the passes). */
LMN_CPU_CLONES static void bn_stats_channels(gsize begin, gsize end, gpointer data)
{
    const BnJob *j = data;
    const double count = (double) (j->outer * j->inner);
    for (gsize ch = begin; ch < end; ch++) {
        double s = 0.0;
        for (gsize o = 0; o < j->outer; o++)
            s += sum_f64(j->x + (o * j->channels + ch) * j->inner, j->inner, LMN_REDUCE_SUM);
        const double m = s / count;
        double v = 0.0;
        for (gsize o = 0; o < j->outer; o++)
            v += sum_sqdev_f64(j->x + (o * j->channels + ch) * j->inner, j->inner, m);
        j->out_mean[ch] = (float) m;
        j->out_var[ch] = (float) (v / count);
    }
}

static void bn_stats_columns(gsize begin, gsize end, gpointer data)
{
    const BnJob *j = data;
    const gsize C = j->channels;
    const double count = (double) j->outer;
    for (gsize t = begin; t < end; t += BN_TILE) {
        const gsize w = MIN(BN_TILE, end - t);
        double s[BN_TILE] = {0}, v[BN_TILE] = {0};
        for (gsize o = 0; o < j->outer; o++) {
            const float *restrict x = j->x + o * C + t;
            for (gsize q = 0; q < w; q++)
                s[q] += x[q];
        }
        for (gsize q = 0; q < w; q++)
            s[q] /= count;
        for (gsize o = 0; o < j->outer; o++) {
            const float *restrict x = j->x + o * C + t;
            for (gsize q = 0; q < w; q++) {
                const double d = (double) x[q] - s[q];
                v[q] += d * d;
            }
        }
        for (gsize q = 0; q < w; q++) {
            j->out_mean[t + q] = (float) s[q];
            j->out_var[t + q] = (float) (v[q] / count);
        }
    }
}

void lmn_cpu_batchnorm_stats(gpointer ctx, const LmnTensor *x, LmnTensor *mean, LmnTensor *var,
                             gint64 outer, gint64 channels, gint64 inner)
{
    LmnCpuContext *c = ctx;
    BnJob j = {.x = fptr(x),
               .out_mean = fptr(mean),
               .out_var = fptr(var),
               .outer = (gsize) outer,
               .channels = (gsize) channels,
               .inner = (gsize) inner};
    if (outer * inner == 0) {
        /* No samples: the statistics are undefined; NaN says so instead of a plausible 0. */
        for (gsize ch = 0; ch < j.channels; ch++)
            j.out_mean[ch] = j.out_var[ch] = NAN;
        return;
    }
    EXEC_BEGIN(c);
    run(c, j.channels, 2 * j.outer * j.inner, inner == 1 ? bn_stats_columns : bn_stats_channels,
        &j);
    EXEC_END(c);
}

/* y = (x - mean) * (weight * invstd) + bias: subtracting the mean first keeps the precision
 * that the folded form x * scale + shift would lose when |mean| >> std. */
LMN_CPU_CLONES static void bn_forward_planes(gsize begin, gsize end, gpointer data)
{
    const BnJob *j = data;
    const gsize inner = j->inner;
    for (gsize r = begin; r < end; r++) {
        const gsize ch = r % j->channels;
        const float m = j->mean[ch];
        const float k = bn_invstd(j->var[ch], j->eps) * (j->weight ? j->weight[ch] : 1.0f);
        const float b = j->bias ? j->bias[ch] : 0.0f;
        const float *x = j->x + r * inner;
        float *y = j->y + r * inner; /* may be x */
        for (gsize i = 0; i < inner; i++)
            y[i] = (x[i] - m) * k + b;
    }
}

static void bn_forward_rows(gsize begin, gsize end, gpointer data)
{
    const BnJob *j = data;
    const gsize C = j->channels;
    for (gsize t = 0; t < C; t += BN_TILE) {
        const gsize w = MIN(BN_TILE, C - t);
        float m[BN_TILE], k[BN_TILE], b[BN_TILE];
        for (gsize q = 0; q < w; q++) {
            m[q] = j->mean[t + q];
            k[q] = bn_invstd(j->var[t + q], j->eps) * (j->weight ? j->weight[t + q] : 1.0f);
            b[q] = j->bias ? j->bias[t + q] : 0.0f;
        }
        for (gsize o = begin; o < end; o++) {
            const float *x = j->x + o * C + t;
            float *y = j->y + o * C + t;
            for (gsize q = 0; q < w; q++)
                y[q] = (x[q] - m[q]) * k[q] + b[q];
        }
    }
}

void lmn_cpu_batchnorm_forward(gpointer ctx, const LmnTensor *x, const LmnTensor *mean,
                               const LmnTensor *var, const LmnTensor *weight, const LmnTensor *bias,
                               LmnTensor *y, float eps, gint64 outer, gint64 channels, gint64 inner)
{
    LmnCpuContext *c = ctx;
    BnJob j = {.x = fptr(x),
               .mean = fptr(mean),
               .var = fptr(var),
               .weight = weight != NULL ? fptr(weight) : NULL,
               .bias = bias != NULL ? fptr(bias) : NULL,
               .y = fptr(y),
               .eps = eps,
               .outer = (gsize) outer,
               .channels = (gsize) channels,
               .inner = (gsize) inner};
    EXEC_BEGIN(c);
    if (inner == 1)
        run(c, j.outer, j.channels, bn_forward_rows, &j);
    else
        run(c, j.outer * j.channels, j.inner, bn_forward_planes, &j);
    EXEC_END(c);
}

/* With xhat = (x - mean) * invstd and M = outer * inner samples per channel:
 * dx = weight * invstd * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M),
 * dweight = sum(dy * xhat), dbias = sum(dy); the sums in double, one channel per unit. */
LMN_CPU_CLONES static void bn_backward_channels(gsize begin, gsize end, gpointer data)
{
    const BnJob *j = data;
    const gsize inner = j->inner, C = j->channels;
    const double count = (double) (j->outer * inner);
    for (gsize ch = begin; ch < end; ch++) {
        const float m = j->mean[ch];
        const float invstd = bn_invstd(j->var[ch], j->eps);
        double sdy = 0.0, sdyx = 0.0;
        for (gsize o = 0; o < j->outer; o++)
            sum_dy_dyx_f64(j->x + (o * C + ch) * inner, j->dy + (o * C + ch) * inner, inner, m,
                           &sdy, &sdyx);
        sdyx *= invstd; /* sum(dy * xhat) */
        const float k = invstd * (j->weight ? j->weight[ch] : 1.0f);
        const float mdy = (float) (sdy / count), mdyx = (float) (sdyx / count);
        for (gsize o = 0; o < j->outer; o++) {
            const float *x = j->x + (o * C + ch) * inner;
            const float *dy = j->dy + (o * C + ch) * inner;
            float *dx = j->y + (o * C + ch) * inner; /* may be dy */
            for (gsize i = 0; i < inner; i++) {
                const float xhat = (x[i] - m) * invstd;
                dx[i] = k * (dy[i] - mdy - xhat * mdyx);
            }
        }
        if (j->dweight != NULL)
            j->dweight[ch] = (float) sdyx;
        if (j->dbias != NULL)
            j->dbias[ch] = (float) sdy;
    }
}

static void bn_backward_columns(gsize begin, gsize end, gpointer data)
{
    const BnJob *j = data;
    const gsize C = j->channels;
    const double count = (double) j->outer;
    for (gsize t = begin; t < end; t += BN_TILE) {
        const gsize w = MIN(BN_TILE, end - t);
        double sdy[BN_TILE] = {0}, sdyx[BN_TILE] = {0};
        float m[BN_TILE], invstd[BN_TILE], k[BN_TILE], mdy[BN_TILE], mdyx[BN_TILE];
        for (gsize q = 0; q < w; q++) {
            m[q] = j->mean[t + q];
            invstd[q] = bn_invstd(j->var[t + q], j->eps);
        }
        for (gsize o = 0; o < j->outer; o++) {
            const float *restrict x = j->x + o * C + t;
            const float *restrict dy = j->dy + o * C + t;
            for (gsize q = 0; q < w; q++) {
                sdy[q] += dy[q];
                sdyx[q] += (double) dy[q] * ((double) x[q] - m[q]);
            }
        }
        for (gsize q = 0; q < w; q++) {
            sdyx[q] *= invstd[q];
            k[q] = invstd[q] * (j->weight ? j->weight[t + q] : 1.0f);
            mdy[q] = (float) (sdy[q] / count);
            mdyx[q] = (float) (sdyx[q] / count);
        }
        for (gsize o = 0; o < j->outer; o++) {
            const float *x = j->x + o * C + t;
            const float *dy = j->dy + o * C + t;
            float *dx = j->y + o * C + t;
            for (gsize q = 0; q < w; q++) {
                const float xhat = (x[q] - m[q]) * invstd[q];
                dx[q] = k[q] * (dy[q] - mdy[q] - xhat * mdyx[q]);
            }
        }
        for (gsize q = 0; q < w; q++) {
            if (j->dweight != NULL)
                j->dweight[t + q] = (float) sdyx[q];
            if (j->dbias != NULL)
                j->dbias[t + q] = (float) sdy[q];
        }
    }
}

void lmn_cpu_batchnorm_backward(gpointer ctx, const LmnTensor *x, const LmnTensor *dy,
                                const LmnTensor *mean, const LmnTensor *var,
                                const LmnTensor *weight, LmnTensor *dx, LmnTensor *dweight,
                                LmnTensor *dbias, float eps, gint64 outer, gint64 channels,
                                gint64 inner)
{
    LmnCpuContext *c = ctx;
    BnJob j = {.x = fptr(x),
               .dy = fptr(dy),
               .mean = fptr(mean),
               .var = fptr(var),
               .weight = weight != NULL ? fptr(weight) : NULL,
               .y = fptr(dx),
               .dweight = dweight != NULL ? fptr(dweight) : NULL,
               .dbias = dbias != NULL ? fptr(dbias) : NULL,
               .eps = eps,
               .outer = (gsize) outer,
               .channels = (gsize) channels,
               .inner = (gsize) inner};
    if (outer * inner == 0) {
        for (gsize ch = 0; ch < j.channels; ch++) {
            if (j.dweight != NULL)
                j.dweight[ch] = 0.0f;
            if (j.dbias != NULL)
                j.dbias[ch] = 0.0f;
        }
        return;
    }
    EXEC_BEGIN(c);
    run(c, j.channels, 3 * j.outer * j.inner,
        inner == 1 ? bn_backward_columns : bn_backward_channels, &j);
    EXEC_END(c);
}

/* ---- random: dropout, normal ---- */

#define TWO_POW_M24 (1.0f / 16777216.0f)

typedef struct {
    const float *x;
    float *y;
    float *mask;
    float p, keep_scale;
    float mean, std;
    guint32 key[2];
    guint32 stream[2];
} RandomJob;

/* One Philox block: counter = {block (low, high), stream (low, high)}, key = seed. */
static inline void philox_block(const RandomJob *j, guint64 block, guint32 out[4])
{
    const guint32 ctr[4] = {(guint32) block, (guint32) (block >> 32), j->stream[0], j->stream[1]};
    lmn_philox4x32(j->key, ctr, out);
}

/* Element i uses word i % 4 of block i / 4, whatever range a thread was given. */
static void dropout_range(gsize begin, gsize end, gpointer data)
{
    const RandomJob *j = data;
    guint32 w[4];
    for (gsize blk = begin / 4; blk * 4 < end; blk++) {
        philox_block(j, blk, w);
        const gsize i0 = MAX(blk * 4, begin), i1 = MIN(blk * 4 + 4, end);
        for (gsize i = i0; i < i1; i++) {
            const float u = (float) (w[i % 4] >> 8) * TWO_POW_M24;
            const float m = u >= j->p ? j->keep_scale : 0.0f;
            j->mask[i] = m;
            j->y[i] = j->x[i] * m; /* y may be x */
        }
    }
}

void lmn_cpu_dropout(gpointer ctx, const LmnTensor *x, LmnTensor *y, LmnTensor *mask, float p,
                     guint64 seed, guint64 stream)
{
    LmnCpuContext *c = ctx;
    RandomJob j = {.x = fptr(x),
                   .y = fptr(y),
                   .mask = fptr(mask),
                   .p = p,
                   .keep_scale = 1.0f / (1.0f - p),
                   .key = {(guint32) seed, (guint32) (seed >> 32)},
                   .stream = {(guint32) stream, (guint32) (stream >> 32)}};
    EXEC_BEGIN(c);
    /* Philox costs about as much as 8 plain element operations. */
    run(c, numel(y), 8, dropout_range, &j);
    EXEC_END(c);
}

/* Box–Muller on the first two words of block i: u1 in (0, 1], so the log is finite.  Evaluated
 * in double and rounded once, the most accurate value of the recipe. */
static void normal_range(gsize begin, gsize end, gpointer data)
{
    const RandomJob *j = data;
    guint32 w[4];
    for (gsize i = begin; i < end; i++) {
        philox_block(j, i, w);
        const double u1 = ((double) (w[0] >> 8) + 1.0) * (1.0 / 16777216.0);
        const double u2 = (double) (w[1] >> 8) * (1.0 / 16777216.0);
        const double z = sqrt(-2.0 * log(u1)) * cos(2.0 * G_PI * u2);
        j->y[i] = (float) ((double) j->mean + (double) j->std * z);
    }
}

void lmn_cpu_random_normal(gpointer ctx, LmnTensor *t, float mean, float std, guint64 seed,
                           guint64 stream)
{
    LmnCpuContext *c = ctx;
    RandomJob j = {.y = fptr(t),
                   .mean = mean,
                   .std = std,
                   .key = {(guint32) seed, (guint32) (seed >> 32)},
                   .stream = {(guint32) stream, (guint32) (stream >> 32)}};
    EXEC_BEGIN(c);
    run(c, numel(t), 16, normal_range, &j);
    EXEC_END(c);
}

/* ---- clamp ---- */

typedef struct {
    float *t;
    float lo, hi;
} ClampJob;

static void clamp_range(gsize begin, gsize end, gpointer data)
{
    const ClampJob *j = data;
    float *t = j->t;
    const float lo = j->lo, hi = j->hi;
    /* Comparisons rather than fminf/fmaxf, so NaN propagates as in torch.clamp. */
    for (gsize i = begin; i < end; i++)
        t[i] = t[i] < lo ? lo : (t[i] > hi ? hi : t[i]);
}

void lmn_cpu_clamp(gpointer ctx, LmnTensor *t, float lo, float hi)
{
    LmnCpuContext *c = ctx;
    ClampJob j = {.t = fptr(t), .lo = lo, .hi = hi};
    EXEC_BEGIN(c);
    run(c, numel(t), 1, clamp_range, &j);
    EXEC_END(c);
}

/* ---- softmax ---- */

typedef struct {
    const float *x; /* x, or y for the backward */
    const float *dy;
    float *out;
    gsize cols;
} SoftmaxJob;

static void softmax_rows(gsize begin, gsize end, gpointer data)
{
    const SoftmaxJob *j = data;
    const gsize k = j->cols;
    for (gsize r = begin; r < end; r++) {
        const float *x = j->x + r * k;
        float *y = j->out + r * k; /* may be x: x[q] is read before y[q] is written */
        float m = x[0];
        for (gsize q = 1; q < k; q++)
            m = x[q] > m ? x[q] : m;
        double sum = 0.0;
        for (gsize q = 0; q < k; q++) {
            const float e = expf(x[q] - m);
            y[q] = e;
            sum += e;
        }
        const float inv = (float) (1.0 / sum);
        for (gsize q = 0; q < k; q++)
            y[q] *= inv;
    }
}

void lmn_cpu_softmax(gpointer ctx, const LmnTensor *x, LmnTensor *y, gint64 rows, gint64 cols)
{
    LmnCpuContext *c = ctx;
    SoftmaxJob j = {.x = fptr(x), .out = fptr(y), .cols = (gsize) cols};
    if (cols == 0)
        return;
    EXEC_BEGIN(c);
    run(c, (gsize) rows, 4 * j.cols, softmax_rows, &j);
    EXEC_END(c);
}

static void softmax_backward_rows(gsize begin, gsize end, gpointer data)
{
    const SoftmaxJob *j = data;
    const gsize k = j->cols;
    for (gsize r = begin; r < end; r++) {
        const float *y = j->x + r * k;
        const float *dy = j->dy + r * k;
        float *dx = j->out + r * k; /* may be dy: the dot product is taken first */
        double dot = 0.0;
        for (gsize q = 0; q < k; q++)
            dot += (double) dy[q] * (double) y[q];
        const float d = (float) dot;
        for (gsize q = 0; q < k; q++)
            dx[q] = y[q] * (dy[q] - d);
    }
}

void lmn_cpu_softmax_backward(gpointer ctx, const LmnTensor *y, const LmnTensor *dy, LmnTensor *dx,
                              gint64 rows, gint64 cols)
{
    LmnCpuContext *c = ctx;
    SoftmaxJob j = {.x = fptr(y), .dy = fptr(dy), .out = fptr(dx), .cols = (gsize) cols};
    if (cols == 0)
        return;
    EXEC_BEGIN(c);
    run(c, (gsize) rows, 2 * j.cols, softmax_backward_rows, &j);
    EXEC_END(c);
}

/* ---- copy_block ---- */

typedef struct {
    float *dst;
    const float *src;
    gint64 dst_stride, src_stride;
    gsize cols;
    float beta;
} BlockJob;

static void copy_block_rows(gsize begin, gsize end, gpointer data)
{
    const BlockJob *j = data;
    for (gsize r = begin; r < end; r++) {
        float *d = j->dst + (gint64) r * j->dst_stride;
        const float *s = j->src + (gint64) r * j->src_stride;
        if (j->beta == 0.0f) {
            /* beta == 0 never reads dst (BLAS convention); memmove for a self-copy. */
            memmove(d, s, j->cols * sizeof(float));
        } else {
            for (gsize q = 0; q < j->cols; q++)
                d[q] = s[q] + j->beta * d[q];
        }
    }
}

void lmn_cpu_copy_block(gpointer ctx, LmnTensor *dst, gint64 dst_offset, gint64 dst_stride,
                        const LmnTensor *src, gint64 src_offset, gint64 src_stride, gint64 rows,
                        gint64 cols, float beta)
{
    LmnCpuContext *c = ctx;
    BlockJob j = {.dst = fptr(dst) + dst_offset,
                  .src = fptr(src) + src_offset,
                  .dst_stride = dst_stride,
                  .src_stride = src_stride,
                  .cols = (gsize) cols,
                  .beta = beta};
    if (rows <= 0 || cols <= 0)
        return;
    EXEC_BEGIN(c);
    if (dst->buffer == src->buffer)
        copy_block_rows(0, (gsize) rows, &j); /* rows may overlap: keep the sequential order */
    else
        run(c, (gsize) rows, j.cols, copy_block_rows, &j);
    EXEC_END(c);
}

/* ---- gather, scatter-add ---- */

typedef struct {
    const float *table;
    float *out;
    const float *src;
    const float *idx_f;
    const gint32 *idx_i;
    gsize n, dim, rows; /* rows: V, the table's row count */
} RowsJob;

/* The row index @i names, or -1 when it is outside [0, rows) (or a non-finite float). */
static inline gint64 row_index(const RowsJob *j, gsize i)
{
    if (j->idx_i != NULL) {
        const gint32 v = j->idx_i[i];
        return v >= 0 && (gsize) v < j->rows ? v : -1;
    }
    const float v = j->idx_f[i];
    return v >= 0.0f && v < (float) j->rows ? (gint64) v : -1;
}

static void gather_range(gsize begin, gsize end, gpointer data)
{
    const RowsJob *j = data;
    for (gsize i = begin; i < end; i++) {
        const gint64 r = row_index(j, i);
        float *o = j->out + i * j->dim;
        if (r < 0)
            memset(o, 0, j->dim * sizeof(float));
        else
            memcpy(o, j->table + (gsize) r * j->dim, j->dim * sizeof(float));
    }
}

void lmn_cpu_gather_rows(gpointer ctx, const LmnTensor *table, const LmnTensor *indices,
                         LmnTensor *out, gint64 n, gint64 dim)
{
    LmnCpuContext *c = ctx;
    if (n <= 0 || dim <= 0)
        return;
    const gboolean is_int = indices->dtype == LMN_DTYPE_I32;
    RowsJob j = {.table = fptr(table),
                 .out = fptr(out),
                 .idx_f = is_int ? NULL : fptr(indices),
                 .idx_i = is_int ? iptr(indices) : NULL,
                 .n = (gsize) n,
                 .dim = (gsize) dim,
                 .rows = numel(table) / (gsize) dim};
    EXEC_BEGIN(c);
    run(c, j.n, j.dim, gather_range, &j);
    EXEC_END(c);
}

/* Partitioned by destination row: each thread owns rows [begin, end) of the table and scans
 * all indices in order, so every row receives its additions in index order, as a sequential
 * loop would give, whatever the thread count. */
static void scatter_range(gsize begin, gsize end, gpointer data)
{
    const RowsJob *j = data;
    for (gsize i = 0; i < j->n; i++) {
        const gint64 r = row_index(j, i);
        if (r < 0 || (gsize) r < begin || (gsize) r >= end)
            continue;
        float *restrict t = j->out + (gsize) r * j->dim;
        const float *restrict s = j->src + i * j->dim;
        for (gsize q = 0; q < j->dim; q++)
            t[q] += s[q];
    }
}

void lmn_cpu_scatter_add_rows(gpointer ctx, LmnTensor *table_grad, const LmnTensor *indices,
                              const LmnTensor *src, gint64 n, gint64 dim)
{
    LmnCpuContext *c = ctx;
    if (n <= 0 || dim <= 0)
        return;
    const gboolean is_int = indices->dtype == LMN_DTYPE_I32;
    RowsJob j = {.out = fptr(table_grad),
                 .src = fptr(src),
                 .idx_f = is_int ? NULL : fptr(indices),
                 .idx_i = is_int ? iptr(indices) : NULL,
                 .n = (gsize) n,
                 .dim = (gsize) dim,
                 .rows = numel(table_grad) / (gsize) dim};
    if (j.rows == 0)
        return;
    EXEC_BEGIN(c);
    /* Per table row: on average n / rows source rows of dim elements. */
    run(c, j.rows, MAX(j.n * j.dim / j.rows, 1), scatter_range, &j);
    EXEC_END(c);
}

/* ---- binary cross-entropy with logits ---- */

typedef struct {
    const float *x;
    const float *t;
    float *dx;
    gsize n, block;
    float scale;
    double *partials;
} BceJob;

/* max(x, 0) - x t + log(1 + exp(-|x|)): never exponentiates a positive number. */
static void bce_blocks(gsize begin, gsize end, gpointer data)
{
    const BceJob *j = data;
    for (gsize b = begin; b < end; b++) {
        const gsize i0 = b * j->block, i1 = MIN(j->n, i0 + j->block);
        double s = 0.0;
        for (gsize i = i0; i < i1; i++) {
            const double x = j->x[i], t = j->t[i];
            s += (x > 0.0 ? x : 0.0) - x * t + log1p(exp(-fabs(x)));
        }
        j->partials[b] = s;
    }
}

void lmn_cpu_bce_logits(gpointer ctx, const LmnTensor *x, const LmnTensor *target, LmnTensor *loss)
{
    LmnCpuContext *c = ctx;
    const gsize n = numel(x);
    float *lo = fptr(loss);
    if (n == 0) {
        lo[0] = NAN; /* the mean of nothing, as PyTorch reports it */
        return;
    }
    BceJob j = {.x = fptr(x),
                .t = fptr(target),
                .n = n,
                .block = block_size(n, 256),
                .partials = c->partials};
    const gsize n_blocks = (n + j.block - 1) / j.block;
    EXEC_BEGIN(c);
    run(c, n_blocks, 8 * j.block, bce_blocks, &j);
    lo[0] = (float) (sum_partials(c->partials, n_blocks) / (double) n);
    EXEC_END(c);
}

static void bce_backward_range(gsize begin, gsize end, gpointer data)
{
    const BceJob *j = data;
    for (gsize i = begin; i < end; i++) {
        const float x = j->x[i];
        /* sigmoid without overflow: exp of a non-positive number only */
        const float e = expf(-fabsf(x));
        const float s = x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
        j->dx[i] = j->scale * (s - j->t[i]); /* dx may be x or t */
    }
}

void lmn_cpu_bce_logits_backward(gpointer ctx, const LmnTensor *x, const LmnTensor *target,
                                 LmnTensor *dx, float scale)
{
    LmnCpuContext *c = ctx;
    BceJob j = {.x = fptr(x), .t = fptr(target), .dx = fptr(dx), .scale = scale};
    EXEC_BEGIN(c);
    run(c, numel(dx), 4, bce_backward_range, &j);
    EXEC_END(c);
}
