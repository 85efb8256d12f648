/* Tests of the Vulkan backend's memory and transfer model, against the CPU backend:
 *
 * - chunked dispatch: with LAMINA_VK_MAX_STORAGE_RANGE lowered to 64 KiB, the row, reduction,
 *   gather, block-copy and image ops on tensors above it give the CPU's results;
 * - the staging path (LAMINA_VK_STAGING=1, forced on lavapipe's mapped memory, with a 4 KiB
 *   ring): writes at odd offsets and sizes interleaved with recorded ops in both orders, reads,
 *   transfers far above the ring size, zero-filled allocations, overlapping copies;
 * - failures: LAMINA_VK_MEMORY_LIMIT makes allocations fail with a clear error and leaves the
 *   backend usable; LAMINA_VK_DEBUG_FAULT=device-lost:N makes every later call fail with the
 *   same error, and closing the backend still frees everything (ASan builds check that).
 *
 * Runs on Mesa's lavapipe (skipped, exit 77, without it), with VK_LAYER_KHRONOS_validation and
 * synchronization validation when installed (not in sanitizer builds): any validation error
 * fails the next synchronisation, so each test's final reads assert zero errors.
 */
#include <lamina/lamina.h>

#include "vk-test-setup.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define VALIDATION_LAYER_JSON LMN_VK_TEST_VALIDATION_LAYER_JSON

static LmnRegistry *registry;
static LmnBackend *cpu;
static gboolean validating;
static GRand *rng;

/* Opens lavapipe with the environment variables @env (NAME=VALUE, NULL-terminated) set only
 * while it opens: the backend reads them then. */
static LmnBackend *open_vulkan_env(const char *const *env, GError **error)
{
    for (guint i = 0; env != NULL && env[i] != NULL; i++) {
        g_auto(GStrv) kv = g_strsplit(env[i], "=", 2);
        g_setenv(kv[0], kv[1], TRUE);
    }
    LmnBackend *b = NULL;
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_BACKEND, "vulkan", error);
    if (f != NULL) {
        const char *keys[] = {"validation", NULL};
        const char *values[] = {validating ? "true" : "false", NULL};
        LmnParams *params =
            lmn_registry_validate_params(f, keys, values, "test-vulkan-memory", error);
        if (params != NULL) {
            b = lmn_backend_new(registry, "vulkan", params, "lavapipe", error);
            lmn_params_unref(params);
        }
    }
    for (guint i = 0; env != NULL && env[i] != NULL; i++) {
        g_auto(GStrv) kv = g_strsplit(env[i], "=", 2);
        g_unsetenv(kv[0]);
    }
    return b;
}

/* ---- paired tensors: the same data on the CPU and the Vulkan backend ---- */

typedef struct {
    LmnTensor *c, *v;
    gsize n;
} Pair;

static Pair pair_new(LmnBackend *vk, LmnDType dtype, gsize n, const void *data)
{
    g_autoptr(GError) error = NULL;
    LmnShape shape = lmn_shape_make(1, (gint64) n);
    Pair p = {lmn_tensor_new(cpu, dtype, &shape, &error), NULL, n};
    g_assert_no_error(error);
    p.v = lmn_tensor_new(vk, dtype, &shape, &error);
    g_assert_no_error(error);
    if (data != NULL && n > 0) {
        g_assert_true(lmn_tensor_write(p.c, data, n * 4, &error));
        g_assert_true(lmn_tensor_write(p.v, data, n * 4, &error));
    }
    return p;
}

static Pair pair_random(LmnBackend *vk, gsize n, double lo, double hi)
{
    g_autofree float *v = g_new(float, MAX(n, 1));
    for (gsize i = 0; i < n; i++)
        v[i] = (float) g_rand_double_range(rng, lo, hi);
    return pair_new(vk, LMN_DTYPE_F32, n, v);
}

/* Random logits [rows, k] (the loss ops take their row count from the shape). */
static Pair pair_matrix(LmnBackend *vk, gsize rows, gsize k)
{
    g_autoptr(GError) error = NULL;
    LmnShape shape = lmn_shape_make(2, (gint64) rows, (gint64) k);
    Pair p = {lmn_tensor_new(cpu, LMN_DTYPE_F32, &shape, &error), NULL, rows * k};
    g_assert_no_error(error);
    p.v = lmn_tensor_new(vk, LMN_DTYPE_F32, &shape, &error);
    g_assert_no_error(error);
    g_autofree float *v = g_new(float, rows *k);
    for (gsize i = 0; i < rows * k; i++)
        v[i] = (float) g_rand_double_range(rng, -3, 3);
    g_assert_true(lmn_tensor_write(p.c, v, rows * k * 4, NULL));
    g_assert_true(lmn_tensor_write(p.v, v, rows * k * 4, NULL));
    return p;
}

static Pair pair_labels(LmnBackend *vk, gsize n, gint32 k)
{
    g_autofree gint32 *v = g_new(gint32, MAX(n, 1));
    for (gsize i = 0; i < n; i++)
        v[i] = g_rand_int_range(rng, 0, k);
    return pair_new(vk, LMN_DTYPE_I32, n, v);
}

/* A view of @n elements of both tensors of @base from element @at. */
static Pair pair_view(const Pair *base, gsize at, gsize n)
{
    LmnShape shape = lmn_shape_make(1, (gint64) n);
    return (Pair){lmn_tensor_new_view(base->c, (gint64) at, &shape),
                  lmn_tensor_new_view(base->v, (gint64) at, &shape), n};
}

static void pair_free(Pair *p)
{
    lmn_tensor_unref(p->c);
    lmn_tensor_unref(p->v);
}

/* Asserts |vk - cpu| <= atol + rtol |cpu| element-wise (bits compared for i32 tensors). */
static void assert_close(const Pair *p, double atol, double rtol, const char *what)
{
    g_autoptr(GError) error = NULL;
    g_autofree float *a = g_new(float, MAX(p->n, 1));
    g_autofree float *b = g_new(float, MAX(p->n, 1));
    g_assert_true(lmn_tensor_read(p->c, a, p->n * 4, &error));
    lmn_tensor_read(p->v, b, p->n * 4, &error);
    g_assert_no_error(error);
    const gboolean ints = p->v->dtype == LMN_DTYPE_I32;
    for (gsize i = 0; i < p->n; i++) {
        if (ints ? memcmp(&a[i], &b[i], 4) == 0
                 : (isnan(a[i]) && isnan(b[i])) ||
                       fabs((double) a[i] - (double) b[i]) <= atol + rtol * fabs((double) a[i]))
            continue;
        g_error("%s: element %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT ": vulkan %.9g, cpu %.9g",
                what, i, p->n, b[i], a[i]);
    }
}

#define BOTH(stmt_c, stmt_v)                                                                       \
    do {                                                                                           \
        stmt_c;                                                                                    \
        stmt_v;                                                                                    \
    } while (0)

/* ---- chunked dispatch above maxStorageBufferRange ---- */

#define RANGE_64K "LAMINA_VK_MAX_STORAGE_RANGE=65536"

static LmnBackend *open_small_range(void)
{
    g_autoptr(GError) error = NULL;
    const char *env[] = {RANGE_64K, NULL};
    LmnBackend *vk = open_vulkan_env(env, &error);
    g_assert_no_error(error);
    g_assert_nonnull(strstr(lmn_backend_describe(vk), "65536"));
    return vk;
}

static void test_chunked_reduce(void)
{
    g_autoptr(LmnBackend) vk = open_small_range();
    /* 100003 floats = 6 bindings' worth; odd so the last block is partial. */
    Pair x = pair_random(vk, 100003, -2, 2);
    const LmnReduceOp ops[] = {LMN_REDUCE_SUM, LMN_REDUCE_SUM_SQUARES, LMN_REDUCE_SUM_ABS};
    for (guint i = 0; i < G_N_ELEMENTS(ops); i++) {
        Pair out = pair_random(vk, 1, 1, 2);
        /* alpha and beta applied once, whatever the number of chunks. */
        BOTH(lmn_op_reduce(ops[i], x.c, out.c, 0.5f, 0.25f),
             lmn_op_reduce(ops[i], x.v, out.v, 0.5f, 0.25f));
        assert_close(&out, 1e-3, 1e-5, "chunked reduce");
        pair_free(&out);
    }
    /* Deterministic: the same reduction twice gives the same bits. */
    Pair a = pair_new(vk, LMN_DTYPE_F32, 1, NULL), b = pair_new(vk, LMN_DTYPE_F32, 1, NULL);
    lmn_op_reduce(LMN_REDUCE_SUM, x.v, a.v, 1, 0);
    lmn_op_reduce(LMN_REDUCE_SUM, x.v, b.v, 1, 0);
    float va = 0, vb = 1;
    g_assert_true(lmn_tensor_read(a.v, &va, 4, NULL));
    g_assert_true(lmn_tensor_read(b.v, &vb, 4, NULL));
    g_assert_cmpmem(&va, 4, &vb, 4);
    /* bce_logits: terms and their mean above the range. */
    Pair t = pair_random(vk, 100003, 0, 1), loss = pair_new(vk, LMN_DTYPE_F32, 1, NULL);
    BOTH(lmn_op_bce_logits(x.c, t.c, loss.c), lmn_op_bce_logits(x.v, t.v, loss.v));
    assert_close(&loss, 1e-5, 1e-5, "chunked bce_logits");
    Pair *all[] = {&x, &a, &b, &t, &loss};
    for (guint i = 0; i < G_N_ELEMENTS(all); i++)
        pair_free(all[i]);
}

static void test_chunked_rows(void)
{
    g_autoptr(LmnBackend) vk = open_small_range();
    /* softmax cross-entropy: 3000 rows of 10 = 30000 floats, about two bindings. */
    const gsize rows = 3000, k = 10;
    Pair x = pair_matrix(vk, rows, k), l = pair_labels(vk, rows, (gint32) k);
    Pair probs = pair_matrix(vk, rows, k);
    Pair loss = pair_new(vk, LMN_DTYPE_F32, 1, NULL),
         dx = pair_new(vk, LMN_DTYPE_F32, rows * k, NULL);
    BOTH(lmn_op_softmax_xent(x.c, l.c, probs.c, loss.c, 0.1f),
         lmn_op_softmax_xent(x.v, l.v, probs.v, loss.v, 0.1f));
    assert_close(&probs, 1e-6, 1e-5, "chunked softmax_xent probs");
    assert_close(&loss, 1e-6, 1e-5, "chunked softmax_xent loss");
    BOTH(lmn_op_softmax_xent_backward(probs.c, l.c, dx.c, 0.5f, 0.1f),
         lmn_op_softmax_xent_backward(probs.v, l.v, dx.v, 0.5f, 0.1f));
    assert_close(&dx, 1e-6, 1e-5, "chunked softmax_xent_backward");
    Pair correct = pair_random(vk, 1, 0, 3);
    BOTH(lmn_op_count_correct(x.c, l.c, correct.c), lmn_op_count_correct(x.v, l.v, correct.v));
    assert_close(&correct, 0, 0, "chunked count_correct");

    /* softmax and its backward: 1500 rows of 20. */
    Pair y = pair_new(vk, LMN_DTYPE_F32, rows * k, NULL), dy = pair_random(vk, rows * k, -1, 1);
    BOTH(lmn_op_softmax(x.c, y.c, 1500, 20), lmn_op_softmax(x.v, y.v, 1500, 20));
    assert_close(&y, 1e-6, 1e-5, "chunked softmax");
    BOTH(lmn_op_softmax_backward(y.c, dy.c, dx.c, 1500, 20),
         lmn_op_softmax_backward(y.v, dy.v, dx.v, 1500, 20));
    assert_close(&dx, 1e-6, 1e-5, "chunked softmax_backward");

    /* bias_grad over 400 planes of [7, 9] (25200 floats), beta applied once. */
    Pair g = pair_random(vk, 400 * 7 * 9, -1, 1), db = pair_random(vk, 7, -1, 1);
    BOTH(lmn_op_bias_grad(db.c, g.c, 400, 7, 9, 0.5f),
         lmn_op_bias_grad(db.v, g.v, 400, 7, 9, 0.5f));
    assert_close(&db, 1e-4, 1e-5, "chunked bias_grad");

    /* copy_block: 300 rows of 80 between strides 100 and 90 (30000 / 27000 floats). */
    Pair dst = pair_random(vk, 300 * 100, -1, 1), src = pair_random(vk, 300 * 90, -1, 1);
    BOTH(lmn_op_copy_block(dst.c, 7, 100, src.c, 3, 90, 299, 80, 0.5f),
         lmn_op_copy_block(dst.v, 7, 100, src.v, 3, 90, 299, 80, 0.5f));
    assert_close(&dst, 1e-6, 1e-6, "chunked copy_block");

    /* gather_rows: 600 rows of 64 (38400 floats) from a 50-row table. */
    Pair table = pair_random(vk, 50 * 64, -1, 1), idx = pair_labels(vk, 600, 50);
    Pair out = pair_new(vk, LMN_DTYPE_F32, 600 * 64, NULL);
    BOTH(lmn_op_gather_rows(table.c, idx.c, out.c, 600, 64),
         lmn_op_gather_rows(table.v, idx.v, out.v, 600, 64));
    assert_close(&out, 0, 0, "chunked gather_rows");
    Pair *all[] = {&x, &l,  &probs, &loss, &dx,    &correct, &y,  &dy,
                   &g, &db, &dst,   &src,  &table, &idx,     &out};
    for (guint i = 0; i < G_N_ELEMENTS(all); i++)
        pair_free(all[i]);
}

static void test_chunked_images(void)
{
    g_autoptr(LmnBackend) vk = open_small_range();
    /* 8 x 4 planes of 32 x 32 = 32768 floats; im2col with a 3 x 3 kernel is 9 times that. */
    LmnConv2dGeom g = {.struct_size = sizeof g,
                       .batch = 8,
                       .channels = 4,
                       .height = 32,
                       .width = 32,
                       .kernel_h = 3,
                       .kernel_w = 3,
                       .stride_h = 1,
                       .stride_w = 1,
                       .pad_h = 1,
                       .pad_w = 1,
                       .dilation_h = 1,
                       .dilation_w = 1,
                       .out_h = 32,
                       .out_w = 32};
    const gsize img = 8 * 4 * 32 * 32, cols = img * 9;
    Pair x = pair_random(vk, img, -1, 1), c = pair_new(vk, LMN_DTYPE_F32, cols, NULL);
    Pair dx = pair_new(vk, LMN_DTYPE_F32, img, NULL);
    BOTH(lmn_op_im2col(x.c, c.c, &g), lmn_op_im2col(x.v, c.v, &g));
    assert_close(&c, 0, 0, "chunked im2col");
    BOTH(lmn_op_col2im(c.c, dx.c, &g), lmn_op_col2im(c.v, dx.v, &g));
    assert_close(&dx, 1e-6, 1e-6, "chunked col2im");
    /* 2 x 2 pooling, stride 2. */
    LmnConv2dGeom p = g;
    p.kernel_h = p.kernel_w = p.stride_h = p.stride_w = 2;
    p.pad_h = p.pad_w = 0;
    p.out_h = p.out_w = 16;
    const gsize pooled = 8 * 4 * 16 * 16;
    Pair y = pair_new(vk, LMN_DTYPE_F32, pooled, NULL),
         arg = pair_new(vk, LMN_DTYPE_I32, pooled, NULL);
    Pair dy = pair_random(vk, pooled, -1, 1);
    BOTH(lmn_op_pool2d(LMN_POOL_MAX, x.c, y.c, arg.c, &p),
         lmn_op_pool2d(LMN_POOL_MAX, x.v, y.v, arg.v, &p));
    assert_close(&y, 0, 0, "chunked max pool");
    assert_close(&arg, 0, 0, "chunked max pool argmax");
    BOTH(lmn_op_pool2d_backward(LMN_POOL_MAX, dy.c, arg.c, dx.c, &p),
         lmn_op_pool2d_backward(LMN_POOL_MAX, dy.v, arg.v, dx.v, &p));
    assert_close(&dx, 0, 0, "chunked max pool backward");
    BOTH(lmn_op_pool2d(LMN_POOL_AVG, x.c, y.c, NULL, &p),
         lmn_op_pool2d(LMN_POOL_AVG, x.v, y.v, NULL, &p));
    assert_close(&y, 1e-6, 1e-6, "chunked average pool");
    BOTH(lmn_op_pool2d_backward(LMN_POOL_AVG, dy.c, NULL, dx.c, &p),
         lmn_op_pool2d_backward(LMN_POOL_AVG, dy.v, NULL, dx.v, &p));
    assert_close(&dx, 1e-6, 1e-6, "chunked average pool backward");
    Pair *all[] = {&x, &c, &dx, &y, &arg, &dy};
    for (guint i = 0; i < G_N_ELEMENTS(all); i++)
        pair_free(all[i]);
}

/* Batch normalisation above the range: statistics, forward and backward against the CPU for
 * x [outer, channels, inner].  Values around 4 with spread 1, so a variance from E[x^2] -
 * E[x]^2 would lose digits; @affine picks weight/bias and dweight/dbias or NULLs. */
static void check_batchnorm(LmnBackend *vk, gsize outer, gsize channels, gsize inner,
                            gboolean affine, const char *what)
{
    const gsize n = outer * channels * inner;
    Pair x = pair_random(vk, n, 3, 5), dy = pair_random(vk, n, -1, 1);
    Pair mean = pair_new(vk, LMN_DTYPE_F32, channels, NULL),
         var = pair_new(vk, LMN_DTYPE_F32, channels, NULL);
    Pair w = pair_random(vk, channels, 0.5, 1.5), b = pair_random(vk, channels, -1, 1);
    Pair y = pair_new(vk, LMN_DTYPE_F32, n, NULL), dx = pair_random(vk, n, 7, 8);
    Pair dw = pair_random(vk, channels, 7, 8), db = pair_random(vk, channels, 7, 8);
    const gint64 o = (gint64) outer, c = (gint64) channels, i = (gint64) inner;
    BOTH(lmn_op_batchnorm_stats(x.c, mean.c, var.c, o, c, i),
         lmn_op_batchnorm_stats(x.v, mean.v, var.v, o, c, i));
    g_autofree char *m1 = g_strdup_printf("%s: mean", what);
    g_autofree char *m2 = g_strdup_printf("%s: var", what);
    assert_close(&mean, 1e-5, 1e-5, m1);
    assert_close(&var, 1e-5, 1e-4, m2);
    /* The same statistics on both sides from here, so forward and backward compare alone. */
    g_autofree float *hm = g_new(float, channels), *hv = g_new(float, channels);
    g_assert_true(lmn_tensor_read(mean.c, hm, channels * 4, NULL));
    g_assert_true(lmn_tensor_read(var.c, hv, channels * 4, NULL));
    g_assert_true(lmn_tensor_write(mean.v, hm, channels * 4, NULL));
    g_assert_true(lmn_tensor_write(var.v, hv, channels * 4, NULL));
    BOTH(lmn_op_batchnorm_forward(x.c, mean.c, var.c, affine ? w.c : NULL, affine ? b.c : NULL, y.c,
                                  1e-5f, o, c, i),
         lmn_op_batchnorm_forward(x.v, mean.v, var.v, affine ? w.v : NULL, affine ? b.v : NULL, y.v,
                                  1e-5f, o, c, i));
    g_autofree char *m3 = g_strdup_printf("%s: forward", what);
    assert_close(&y, 1e-5, 1e-5, m3);
    BOTH(lmn_op_batchnorm_backward(x.c, dy.c, mean.c, var.c, affine ? w.c : NULL, dx.c,
                                   affine ? dw.c : NULL, affine ? db.c : NULL, 1e-5f, o, c, i),
         lmn_op_batchnorm_backward(x.v, dy.v, mean.v, var.v, affine ? w.v : NULL, dx.v,
                                   affine ? dw.v : NULL, affine ? db.v : NULL, 1e-5f, o, c, i));
    g_autofree char *m4 = g_strdup_printf("%s: dx", what);
    g_autofree char *m5 = g_strdup_printf("%s: dweight", what);
    g_autofree char *m6 = g_strdup_printf("%s: dbias", what);
    assert_close(&dx, 1e-4, 1e-4, m4);
    /* Sums of thousands of terms, in float against the CPU's double. */
    assert_close(&dw, 2e-3, 1e-4, m5);
    assert_close(&db, 2e-3, 1e-4, m6);
    Pair *all[] = {&x, &dy, &mean, &var, &w, &b, &y, &dx, &dw, &db};
    for (guint k = 0; k < G_N_ELEMENTS(all); k++)
        pair_free(all[k]);
}

static void test_chunked_batchnorm(void)
{
    g_autoptr(LmnBackend) vk = open_small_range();
    /* inner 1: [10000, 5], 50000 floats: four chunks of outer rows per channel. */
    check_batchnorm(vk, 10000, 5, 1, TRUE, "batchnorm inner 1");
    /* inner > 1: [40, 6, 300], 72000 floats: chunks of 9 planes. */
    check_batchnorm(vk, 40, 6, 300, TRUE, "batchnorm inner 300");
    check_batchnorm(vk, 40, 6, 300, FALSE, "batchnorm inner 300, not affine");
    /* A plane above the range: [3, 5, 5000], channel groups of 3 and 2, one sample a chunk. */
    check_batchnorm(vk, 3, 5, 5000, TRUE, "batchnorm channel groups");
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_backend_synchronize(vk, &error));
}

/* Indices @n in [0, @rows) with every value repeated (runs and scattered repeats), and, with
 * @invalid, some out of range (skipped by scatter, zeros for gather). */
static Pair pair_indices(LmnBackend *vk, gsize n, gint32 rows, LmnDType dtype, gboolean invalid)
{
    g_autofree gint32 *iv = g_new(gint32, n);
    g_autofree float *fv = g_new(float, n);
    for (gsize i = 0; i < n; i++) {
        iv[i] = i % 7 < 3 ? (gint32) ((i / 7) % (gsize) rows) : g_rand_int_range(rng, 0, rows);
        if (invalid && i % 53 == 5)
            iv[i] = i % 2 ? rows + 3 : -2;
        fv[i] = (float) iv[i];
    }
    return pair_new(vk, dtype, n, dtype == LMN_DTYPE_I32 ? (const void *) iv : (const void *) fv);
}

static void test_chunked_scatter_gather(void)
{
    g_autoptr(LmnBackend) vk = open_small_range();
    const LmnDType types[] = {LMN_DTYPE_I32, LMN_DTYPE_F32};
    for (guint t = 0; t < G_N_ELEMENTS(types); t++) {
        /* A table of 300 rows of 64 (19200 floats) above the range, 500 repeated indices. */
        Pair idx = pair_indices(vk, 500, 300, types[t], TRUE);
        Pair table = pair_random(vk, 300 * 64, -1, 1), src = pair_random(vk, 500 * 64, -1, 1);
        BOTH(lmn_op_scatter_add_rows(table.c, idx.c, src.c, 500, 64),
             lmn_op_scatter_add_rows(table.v, idx.v, src.v, 500, 64));
        assert_close(&table, 1e-6, 1e-6, "scatter_add_rows, table above the range");
        Pair out = pair_random(vk, 500 * 64, 5, 6);
        BOTH(lmn_op_gather_rows(table.c, idx.c, out.c, 500, 64),
             lmn_op_gather_rows(table.v, idx.v, out.v, 500, 64));
        assert_close(&out, 0, 0, "gather_rows, table above the range");
        /* A table within the range, the source above it: chunks of source rows. */
        Pair small = pair_random(vk, 50 * 64, -1, 1),
             idx2 = pair_indices(vk, 600, 50, types[t], FALSE);
        Pair src2 = pair_random(vk, 600 * 64, -1, 1);
        BOTH(lmn_op_scatter_add_rows(small.c, idx2.c, src2.c, 600, 64),
             lmn_op_scatter_add_rows(small.v, idx2.v, src2.v, 600, 64));
        assert_close(&small, 1e-6, 1e-6, "scatter_add_rows, source above the range");
        Pair *all[] = {&idx, &table, &src, &out, &small, &idx2, &src2};
        for (guint k = 0; k < G_N_ELEMENTS(all); k++)
            pair_free(all[k]);
    }
    /* bias_grad over 70000 channels (above the workgroup-count limit of 65535 and the range):
     * channel groups, beta applied once. */
    const gint64 inners[] = {1, 2};
    for (guint k = 0; k < G_N_ELEMENTS(inners); k++) {
        const gsize nch = 70000, no = 3, ni = (gsize) inners[k];
        Pair g = pair_random(vk, no * nch * ni, -1, 1), db = pair_random(vk, nch, -1, 1);
        BOTH(lmn_op_bias_grad(db.c, g.c, (gint64) no, (gint64) nch, inners[k], 0.5f),
             lmn_op_bias_grad(db.v, g.v, (gint64) no, (gint64) nch, inners[k], 0.5f));
        assert_close(&db, 1e-6, 1e-5, "bias_grad, channel groups");
        pair_free(&g);
        pair_free(&db);
    }
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_backend_synchronize(vk, &error));
}

/* ---- overlapped submission ---- */

/* Batches of 4 commands (LAMINA_VK_MAX_BATCH), so a chain of ops spans many submissions in
 * flight at once: host writes to tensors in-flight work still reads (@staged: through a 1 KiB
 * ring whose space in-flight copies still hold), temporaries freed while in flight and their
 * memory reused, and ops reading what an earlier submission wrote, all against the CPU. */
static void test_overlapped_submission(gconstpointer staged)
{
    g_autoptr(GError) error = NULL;
    const char *env[] = {"LAMINA_VK_MAX_BATCH=4", staged != NULL ? "LAMINA_VK_STAGING=1" : NULL,
                         "LAMINA_VK_STAGING_SIZE=1024", NULL};
    g_autoptr(LmnBackend) vk = open_vulkan_env(env, &error);
    g_assert_no_error(error);
    Pair acc = pair_random(vk, 3000, -1, 1), x = pair_random(vk, 3000, -1, 1);
    g_autofree float *h = g_new(float, 3000);
    for (guint step = 0; step < 40; step++) {
        Pair t = pair_new(vk, LMN_DTYPE_F32, 3000, NULL);
        BOTH(lmn_op_unary(LMN_UNARY_TANH, x.c, t.c, 0), lmn_op_unary(LMN_UNARY_TANH, x.v, t.v, 0));
        BOTH(lmn_op_axpby(0.5f, t.c, 0.9f, acc.c), lmn_op_axpby(0.5f, t.v, 0.9f, acc.v));
        pair_free(&t); /* freed while the ops using it may be in flight */
        for (guint i = 0; i < 3000; i++)
            h[i] = (float) g_rand_double_range(rng, -1, 1);
        /* Overwrites x, which the tanh above (maybe in flight) reads. */
        BOTH(lmn_tensor_write(x.c, h, 3000 * 4, NULL), lmn_tensor_write(x.v, h, 3000 * 4, NULL));
        BOTH(lmn_op_binary(LMN_BINARY_MUL, acc.c, x.c, x.c),
             lmn_op_binary(LMN_BINARY_MUL, acc.v, x.v, x.v));
    }
    assert_close(&acc, 1e-5, 1e-5, "overlapped submission: accumulator");
    assert_close(&x, 1e-5, 1e-5, "overlapped submission: x");
    g_assert_true(lmn_backend_synchronize(vk, &error));
    g_assert_no_error(error);
    pair_free(&acc);
    pair_free(&x);
}

/* ---- the staging path ---- */

/* With @staged, host transfers forced through a 4 KiB ring (every transfer below of more than
 * 1024 floats goes in pieces); without, lavapipe's mapped memory, where writes to bytes the
 * recorded work touches go through the ring too and the others through the mapping. */
static LmnBackend *open_staged(gboolean staged)
{
    g_autoptr(GError) error = NULL;
    const char *env[] = {"LAMINA_VK_STAGING_SIZE=4096", staged ? "LAMINA_VK_STAGING=1" : NULL,
                         NULL};
    LmnBackend *vk = open_vulkan_env(env, &error);
    g_assert_no_error(error);
    g_assert_nonnull(strstr(lmn_backend_describe(vk),
                            staged ? "staged host transfers" : "mapped host transfers"));
    return vk;
}

static void test_staging_transfers(gconstpointer staged)
{
    g_autoptr(LmnBackend) vk = open_staged(staged != NULL);
    g_autoptr(GError) error = NULL;

    /* New tensors read as zeros (a recorded fill), also above the ring size. */
    Pair fresh = pair_new(vk, LMN_DTYPE_F32, 5000, NULL);
    Pair base = pair_random(vk, 1001, -1, 1);
    assert_close(&fresh, 0, 0, "zero-filled allocation");

    /* Writes at odd element offsets and sizes through views, interleaved with recorded ops. */
    Pair a = pair_view(&base, 3, 497), b = pair_view(&base, 509, 491);
    Pair y = pair_new(vk, LMN_DTYPE_F32, 497, NULL), head = pair_view(&base, 0, 491);
    g_autofree float *v1 = g_new(float, 497), *v2 = g_new(float, 497);
    for (guint i = 0; i < 497; i++) {
        v1[i] = (float) g_rand_double_range(rng, -1, 1);
        v2[i] = (float) g_rand_double_range(rng, -1, 1);
    }
    for (guint round = 0; round < 3; round++) {
        /* dispatch after write: the op must see v1 */
        BOTH(lmn_tensor_write(a.c, v1, 497 * 4, NULL), lmn_tensor_write(a.v, v1, 497 * 4, NULL));
        BOTH(lmn_op_unary(LMN_UNARY_TANH, a.c, y.c, 0), lmn_op_unary(LMN_UNARY_TANH, a.v, y.v, 0));
        /* write after dispatch: the op above must not see v2 */
        BOTH(lmn_tensor_write(a.c, v2, 497 * 4, NULL), lmn_tensor_write(a.v, v2, 497 * 4, NULL));
        BOTH(lmn_op_axpby(1.0f, a.c, 0.5f, y.c), lmn_op_axpby(1.0f, a.v, 0.5f, y.v));
        /* a partial write of 13 floats at an odd offset into the middle of b */
        BOTH(lmn_tensor_write(b.c, v1 + round, 13 * 4, NULL),
             lmn_tensor_write(b.v, v1 + round, 13 * 4, NULL));
        BOTH(lmn_op_axpby(0.25f, b.c, 1.0f, head.c), lmn_op_axpby(0.25f, b.v, 1.0f, head.v));
    }
    assert_close(&y, 1e-6, 1e-5, "ops interleaved with staged writes");
    assert_close(&base, 1e-6, 1e-5, "staged writes through views");
    /* A read of a view at an odd offset. */
    Pair mid = pair_view(&base, 77, 333);
    assert_close(&mid, 1e-6, 1e-5, "staged read of a view");

    /* Transfers far above the ring: 300001 floats = 293 ring fills each way. */
    const gsize big = 300001;
    Pair x = pair_random(vk, big, -1, 1), z = pair_new(vk, LMN_DTYPE_F32, big, NULL);
    BOTH(lmn_op_unary(LMN_UNARY_RELU, x.c, z.c, 0), lmn_op_unary(LMN_UNARY_RELU, x.v, z.v, 0));
    g_autofree float *host = g_new(float, big);
    for (gsize i = 0; i < big; i++)
        host[i] = (float) i;
    BOTH(lmn_tensor_write(x.c, host, big * 4, NULL), lmn_tensor_write(x.v, host, big * 4, NULL));
    BOTH(lmn_op_axpby(1.0f, x.c, 1.0f, z.c), lmn_op_axpby(1.0f, x.v, 1.0f, z.v));
    assert_close(&z, 0, 0, "large staged transfers");
    assert_close(&x, 0, 0, "large staged write read back");

    /* Overlapping copies between views of one buffer, and copy_block within one buffer: these
     * run on the device (scratch copy) or the host (row order) without a mapping. */
    Pair lo = pair_view(&base, 0, 600), hi = pair_view(&base, 100, 600);
    BOTH(lmn_op_copy(hi.c, lo.c), lmn_op_copy(hi.v, lo.v));
    assert_close(&base, 1e-6, 1e-5, "overlapping copy");
    BOTH(lmn_op_copy_block(base.c, 10, 30, base.c, 0, 25, 20, 20, 0.5f),
         lmn_op_copy_block(base.v, 10, 30, base.v, 0, 25, 20, 20, 0.5f));
    assert_close(&base, 1e-6, 1e-5, "copy_block within one buffer");
    g_assert_true(lmn_backend_synchronize(vk, &error));
    g_assert_no_error(error);
    Pair *all[] = {&fresh, &a, &b, &y, &head, &mid, &x, &z, &lo, &hi, &base};
    for (guint i = 0; i < G_N_ELEMENTS(all); i++)
        pair_free(all[i]);
}

/* The staged and chunked paths together: ops above the range on staged memory. */
static void test_staging_chunked(void)
{
    g_autoptr(GError) error = NULL;
    const char *env[] = {"LAMINA_VK_STAGING=1", "LAMINA_VK_STAGING_SIZE=4096", RANGE_64K, NULL};
    g_autoptr(LmnBackend) vk = open_vulkan_env(env, &error);
    g_assert_no_error(error);
    Pair x = pair_random(vk, 70001, -2, 2), out = pair_new(vk, LMN_DTYPE_F32, 1, NULL);
    BOTH(lmn_op_reduce(LMN_REDUCE_SUM_SQUARES, x.c, out.c, 1, 0),
         lmn_op_reduce(LMN_REDUCE_SUM_SQUARES, x.v, out.v, 1, 0));
    assert_close(&out, 1e-3, 1e-5, "staged chunked reduce");
    pair_free(&x);
    pair_free(&out);
}

/* ---- failures ---- */

static void test_memory_limit(void)
{
    g_autoptr(GError) error = NULL;
    /* A 1 MiB device: 64 KiB tensors fit until the limit, then allocation fails cleanly. */
    const char *env[] = {"LAMINA_VK_MEMORY_LIMIT=1048576", NULL};
    g_autoptr(LmnBackend) vk = open_vulkan_env(env, &error);
    g_assert_no_error(error);
    LmnShape s = lmn_shape_make(1, (gint64) 16384);
    GPtrArray *held = g_ptr_array_new_with_free_func((GDestroyNotify) lmn_tensor_unref);
    LmnTensor *t;
    while ((t = lmn_tensor_new(vk, LMN_DTYPE_F32, &s, &error)) != NULL) {
        g_ptr_array_add(held, t);
        g_assert_cmpuint(held->len, <=, 16);
    }
    g_assert_cmpuint(held->len, >=, 14);
    g_assert_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_OUT_OF_MEMORY);
    g_assert_nonnull(strstr(error->message, "out of memory on Vulkan device 'llvmpipe"));
    g_assert_nonnull(strstr(error->message, "LAMINA_VK_MEMORY_LIMIT"));
    g_assert_nonnull(strstr(error->message, "smaller batch"));
    g_clear_error(&error);
    /* One tensor larger than the whole limit fails the same way. */
    LmnShape huge = lmn_shape_make(1, (gint64) 1 << 20);
    g_assert_null(lmn_tensor_new(vk, LMN_DTYPE_F32, &huge, &error));
    g_assert_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_OUT_OF_MEMORY);
    g_clear_error(&error);
    /* Freeing makes room again, and the backend still computes. */
    g_ptr_array_set_size(held, 2);
    t = lmn_tensor_new(vk, LMN_DTYPE_F32, &s, &error);
    g_assert_no_error(error);
    lmn_op_fill(t, 2.0f);
    lmn_op_axpby(1.0f, t, 1.0f, held->pdata[0]);
    float v = 0;
    g_assert_true(lmn_tensor_read(held->pdata[0], &v, 4, &error));
    g_assert_cmpfloat(v, ==, 2.0f);
    lmn_tensor_unref(t);
    g_ptr_array_unref(held);
}

static void check_lost(GError **error)
{
    g_assert_error(*error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_DEVICE_LOST);
    g_assert_nonnull(strstr((*error)->message, "'llvmpipe"));
    g_assert_nonnull(strstr((*error)->message, "was lost"));
    g_clear_error(error);
}

static void test_device_lost(gconstpointer staged)
{
    g_autoptr(GError) error = NULL;
    const char *env[] = {"LAMINA_VK_DEBUG_FAULT=device-lost:2",
                         staged != NULL ? "LAMINA_VK_STAGING=1" : NULL, NULL};
    LmnBackend *vk = open_vulkan_env(env, &error);
    g_assert_no_error(error);
    Pair x = pair_random(vk, 5000, -1, 1), y = pair_new(vk, LMN_DTYPE_F32, 5000, NULL);
    lmn_op_unary(LMN_UNARY_RELU, x.v, y.v, 0);
    /* The first submission runs. */
    g_assert_true(lmn_backend_synchronize(vk, &error));
    lmn_op_unary(LMN_UNARY_TANH, x.v, y.v, 0);
    /* The second reports the loss; it stays: every later call fails with the same error. */
    g_assert_false(lmn_backend_synchronize(vk, &error));
    check_lost(&error);
    g_assert_false(lmn_backend_synchronize(vk, &error));
    check_lost(&error);
    float buf[16] = {0};
    g_assert_false(lmn_tensor_read(y.v, buf, sizeof buf, &error));
    check_lost(&error);
    g_assert_false(lmn_tensor_write(y.v, buf, sizeof buf, &error));
    check_lost(&error);
    LmnShape s = lmn_shape_make(1, (gint64) 8);
    g_assert_null(lmn_tensor_new(vk, LMN_DTYPE_F32, &s, &error));
    check_lost(&error);
    lmn_op_fill(y.v, 1.0f); /* recorded nowhere, never crashes */
    g_assert_false(lmn_backend_synchronize(vk, &error));
    check_lost(&error);
    /* Everything is freed on close (LeakSanitizer checks in ASan builds). */
    pair_free(&x);
    pair_free(&y);
    lmn_backend_unref(vk);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    validating = lmn_vk_test_setup(&registry, &cpu);
    g_autoptr(GError) error = NULL;
    LmnBackend *probe = open_vulkan_env(NULL, &error);
    if (probe == NULL) {
        printf("1..0 # SKIP no Vulkan device 'lavapipe': %s\n", error->message);
        return 77;
    }
    lmn_backend_unref(probe);
    rng = g_rand_new_with_seed(20261124);
    g_test_add_func("/vulkan/memory/chunked-reduce", test_chunked_reduce);
    g_test_add_func("/vulkan/memory/chunked-rows", test_chunked_rows);
    g_test_add_func("/vulkan/memory/chunked-images", test_chunked_images);
    g_test_add_func("/vulkan/memory/chunked-batchnorm", test_chunked_batchnorm);
    g_test_add_func("/vulkan/memory/chunked-scatter-gather", test_chunked_scatter_gather);
    g_test_add_data_func("/vulkan/memory/overlap-mapped", NULL, test_overlapped_submission);
    g_test_add_data_func("/vulkan/memory/overlap-staged", "staged", test_overlapped_submission);
    g_test_add_data_func("/vulkan/memory/transfers-staged", "staged", test_staging_transfers);
    g_test_add_data_func("/vulkan/memory/transfers-mapped", NULL, test_staging_transfers);
    g_test_add_func("/vulkan/memory/staging-chunked", test_staging_chunked);
    g_test_add_func("/vulkan/memory/memory-limit", test_memory_limit);
    g_test_add_data_func("/vulkan/memory/device-lost-mapped", NULL, test_device_lost);
    g_test_add_data_func("/vulkan/memory/device-lost-staged", "staged", test_device_lost);
    int status = g_test_run();
    lmn_backend_unref(cpu);
    lmn_registry_free(registry);
    g_rand_free(rng);
    return status;
}
