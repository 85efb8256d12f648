/* Tests of the Vulkan backend: every implemented op against the CPU backend on the same random
 * inputs, the chunked path for ranges above maxStorageBufferRange, plugin kernels through the
 * CPU fallback, and device-selection errors.
 *
 * Runs on Mesa's lavapipe (opened by name, as CI does; LMN_VK_TEST_DEVICE names another device,
 * see vk-test-setup.h); the whole program is skipped (exit 77) when no such device can be opened.
 * The main backend runs with VK_LAYER_KHRONOS_validation when it is installed: any validation error
 * fails the next synchronisation, so every op test below also asserts zero validation errors.
 * LMN_OP_TABLE=PATH writes the op-support table (docs/op-support.md) from what the tests ran.
 */
#include <stdint.h> /* the generated header uses uint32_t */

#include "test-kernel-axpy-spv.h"

#include <lamina/lamina.h>

#include "vk-test-setup.h"

#include <math.h>
#include <stdio.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#define VALIDATION_LAYER_JSON LMN_VK_TEST_VALIDATION_LAYER_JSON

static LmnRegistry *registry;
static LmnBackend *cpu;
static LmnBackend *vk;
static gboolean validating;
static GRand *rng;
static GHashTable *tested_ops; /* op name -> "tested" note */

static void mark(const char *op, const char *note)
{
    g_hash_table_replace(tested_ops, g_strdup(op), g_strdup(note));
}

static LmnBackend *open_vulkan(const char *device, gboolean validation, GError **error)
{
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_BACKEND, "vulkan", error);
    if (f == NULL)
        return NULL;
    const char *keys[] = {"validation", NULL};
    const char *values[] = {validation ? "true" : "false", NULL};
    LmnParams *params = lmn_registry_validate_params(f, keys, values, "test-vulkan-ops", error);
    if (params == NULL)
        return NULL;
    LmnBackend *b = lmn_backend_new(registry, "vulkan", params, device, error);
    lmn_params_unref(params);
    return b;
}

/* ---- paired tensors: the same data on the CPU and the Vulkan backend ---- */

typedef struct {
    LmnTensor *c, *v;
    gsize n;
} Pair;

static Pair pair_new_shaped(LmnBackend *vb, LmnDType dtype, LmnShape shape, const void *data)
{
    g_autoptr(GError) error = NULL;
    const gsize n = (gsize) lmn_shape_numel(&shape);
    Pair p = {lmn_tensor_new(cpu, dtype, &shape, &error), NULL, n};
    g_assert_no_error(error);
    p.v = lmn_tensor_new(vb, dtype, &shape, &error);
    g_assert_no_error(error);
    if (data != NULL && n > 0) {
        lmn_tensor_write(p.c, data, n * 4, &error);
        g_assert_no_error(error);
        lmn_tensor_write(p.v, data, n * 4, &error);
        g_assert_no_error(error);
    }
    return p;
}

static Pair pair_new_on(LmnBackend *vb, LmnDType dtype, gsize n, const void *data)
{
    return pair_new_shaped(vb, dtype, lmn_shape_make(1, (gint64) n), data);
}

/* Random logits [rows, k] (ops taking a matrix check its shape). */
static Pair pair_matrix(gint64 rows, gint64 k, double lo, double hi)
{
    g_autofree float *v = g_new(float, MAX(rows * k, 1));
    for (gint64 i = 0; i < rows * k; i++)
        v[i] = (float) g_rand_double_range(rng, lo, hi);
    return pair_new_shaped(vk, LMN_DTYPE_F32, lmn_shape_make(2, rows, k), v);
}

static Pair pair_random_on(LmnBackend *vb, gsize n, double lo, double hi)
{
    g_autofree float *v = g_new(float, MAX(n, 1));
    for (gsize i = 0; i < n; i++)
        v[i] = (float) g_rand_double_range(rng, lo, hi);
    return pair_new_on(vb, LMN_DTYPE_F32, n, v);
}

static Pair pair_random(gsize n, double lo, double hi)
{
    return pair_random_on(vk, n, lo, hi);
}

static Pair pair_labels(gsize rows, gint32 k)
{
    g_autofree gint32 *v = g_new(gint32, MAX(rows, 1));
    for (gsize i = 0; i < rows; i++)
        v[i] = g_rand_int_range(rng, 0, k);
    return pair_new_on(vk, LMN_DTYPE_I32, rows, v);
}

static void pair_free(Pair *p)
{
    lmn_tensor_unref(p->c);
    lmn_tensor_unref(p->v);
}

/* Asserts |vk - cpu| <= atol + rtol |cpu| element-wise (NaN only where the CPU has NaN). */
static void assert_close(const Pair *p, double atol, double rtol, const char *what)
{
    g_autoptr(GError) error = NULL;
    g_autofree float *a = g_new(float, MAX(p->n, 1));
    g_autofree float *b = g_new(float, MAX(p->n, 1));
    lmn_tensor_read(p->c, a, p->n * 4, &error);
    g_assert_no_error(error);
    lmn_tensor_read(p->v, b, p->n * 4, &error);
    g_assert_no_error(error);
    for (gsize i = 0; i < p->n; i++) {
        /* Both NaN, or the same infinity, are equal (their difference would be NaN). */
        if ((isnan(a[i]) && isnan(b[i])) || a[i] == b[i])
            continue;
        if (!(fabs((double) a[i] - (double) b[i]) <= atol + rtol * fabs((double) a[i])))
            g_error("%s: element %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT ": vulkan %.9g, cpu %.9g",
                    what, i, p->n, b[i], a[i]);
    }
}

static void assert_equal_i32(const Pair *p, const char *what)
{
    g_autoptr(GError) error = NULL;
    g_autofree gint32 *a = g_new(gint32, MAX(p->n, 1));
    g_autofree gint32 *b = g_new(gint32, MAX(p->n, 1));
    lmn_tensor_read(p->c, a, p->n * 4, &error);
    g_assert_no_error(error);
    lmn_tensor_read(p->v, b, p->n * 4, &error);
    g_assert_no_error(error);
    for (gsize i = 0; i < p->n; i++)
        if (a[i] != b[i])
            g_error("%s: element %" G_GSIZE_FORMAT ": vulkan %d, cpu %d", what, i, b[i], a[i]);
}

static void sync_ok(LmnBackend *b)
{
    g_autoptr(GError) error = NULL;
    lmn_backend_synchronize(b, &error);
    g_assert_no_error(error);
}

/* Runs an op on both backends: @run(tensors of one side) with the pairs' CPU or Vulkan sides. */
#define BOTH(stmt_c, stmt_v)                                                                       \
    do {                                                                                           \
        stmt_c;                                                                                    \
        stmt_v;                                                                                    \
    } while (0)

/* ---- ops ---- */

static void test_fill(void)
{
    const gsize sizes[] = {1, 7, 1000, 40001};
    for (guint s = 0; s < G_N_ELEMENTS(sizes); s++) {
        Pair f = pair_random(sizes[s], -1, 1);
        BOTH(lmn_op_fill(f.c, 2.5f), lmn_op_fill(f.v, 2.5f));
        assert_close(&f, 0, 0, "fill f32");
        Pair i = pair_labels(sizes[s], 5);
        BOTH(lmn_op_fill(i.c, -3.0f), lmn_op_fill(i.v, -3.0f));
        assert_equal_i32(&i, "fill i32");
        pair_free(&f);
        pair_free(&i);
    }
    mark("fill", "f32 and i32, 1..40001 elements");
}

static void test_copy_and_views(void)
{
    Pair src = pair_random(1001, -5, 5), dst = pair_random(1001, -1, 1);
    BOTH(lmn_op_copy(dst.c, src.c), lmn_op_copy(dst.v, src.v));
    assert_close(&dst, 0, 0, "copy");
    /* Views at odd element offsets (not aligned for binding) and overlapping views. */
    LmnShape s = lmn_shape_make(1, (gint64) 500);
    g_autoptr(LmnTensor) vc = lmn_tensor_new_view(src.c, 3, &s);
    g_autoptr(LmnTensor) vv = lmn_tensor_new_view(src.v, 3, &s);
    g_autoptr(LmnTensor) wc = lmn_tensor_new_view(dst.c, 101, &s);
    g_autoptr(LmnTensor) wv = lmn_tensor_new_view(dst.v, 101, &s);
    BOTH(lmn_op_unary(LMN_UNARY_TANH, vc, wc, 0), lmn_op_unary(LMN_UNARY_TANH, vv, wv, 0));
    assert_close(&dst, 1e-6, 1e-6, "unary on views");
    g_autoptr(LmnTensor) oc = lmn_tensor_new_view(src.c, 1, &s);
    g_autoptr(LmnTensor) ov = lmn_tensor_new_view(src.v, 1, &s);
    BOTH(lmn_op_copy(oc, vc), lmn_op_copy(ov, vv));
    assert_close(&src, 0, 0, "copy between overlapping views");
    pair_free(&src);
    pair_free(&dst);
    mark("copy", "contiguous, views at odd offsets, overlapping views");
}

static void test_unary(void)
{
    const float alphas[] = {0.0f, 0.0f, 0.0f, 0.0f, 0.1f, 1.3f, 0.7f, 0.0f, 0.0f,
                            0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    G_STATIC_ASSERT(G_N_ELEMENTS(alphas) == LMN_UNARY_COUNT);
    for (gint op = 0; op < LMN_UNARY_COUNT; op++) {
        Pair x = pair_random(3001, -6, 6), y = pair_random(3001, -1, 1);
        Pair dy = pair_random(3001, -1, 1), dx = pair_random(3001, -1, 1);
        /* Exact zeros exercise the derivative conventions at 0; NaN and the infinities must
         * come out as on the CPU (NaN propagates through the activations as in PyTorch), and
         * a NaN dy too. */
        const float special[4] = {0.0f, NAN, INFINITY, -INFINITY};
        lmn_tensor_write(x.c, special, sizeof special, NULL);
        lmn_tensor_write(x.v, special, sizeof special, NULL);
        const float nan = NAN;
        LmnShape one = lmn_shape_make(1, 1);
        g_autoptr(LmnTensor) dyc = lmn_tensor_new_view(dy.c, 7, &one);
        g_autoptr(LmnTensor) dyv = lmn_tensor_new_view(dy.v, 7, &one);
        lmn_tensor_write(dyc, &nan, 4, NULL);
        lmn_tensor_write(dyv, &nan, 4, NULL);
        BOTH(lmn_op_unary(op, x.c, y.c, alphas[op]), lmn_op_unary(op, x.v, y.v, alphas[op]));
        assert_close(&y, 2e-6, 2e-5, "unary");
        /* The backward from the CPU's saved output, so only the derivative is compared. */
        BOTH(lmn_op_unary_backward(op, x.c, y.c, dy.c, dx.c, alphas[op]),
             lmn_op_unary_backward(op, x.v, y.v, dy.v, dx.v, alphas[op]));
        assert_close(&dx, 2e-6, 2e-5, "unary_backward");
        /* In place: y = f(y), from the CPU's y on both sides (exp(exp(x)) would otherwise
         * amplify the first rounding difference beyond the tolerance). */
        g_autofree float *yc = g_new(float, y.n);
        lmn_tensor_read(y.c, yc, y.n * 4, NULL);
        lmn_tensor_write(y.v, yc, y.n * 4, NULL);
        BOTH(lmn_op_unary(op, y.c, y.c, alphas[op]), lmn_op_unary(op, y.v, y.v, alphas[op]));
        assert_close(&y, 2e-6, 2e-5, "unary in place");
        pair_free(&x);
        pair_free(&y);
        pair_free(&dy);
        pair_free(&dx);
    }
    mark("unary", "all 18 functions incl. the ABI 1.3 ones, in place, NaN and +-inf inputs");
    mark("unary_backward", "all 18 functions, zeros, NaN and +-inf inputs, a NaN dy");
}

static void test_binary_axpby(void)
{
    for (gint op = 0; op < LMN_BINARY_COUNT; op++) {
        Pair a = pair_random(2049, -3, 3), b = pair_random(2049, -3, 3),
             o = pair_random(2049, 0, 1);
        BOTH(lmn_op_binary(op, a.c, b.c, o.c), lmn_op_binary(op, a.v, b.v, o.v));
        assert_close(&o, 1e-6, 1e-6, "binary");
        BOTH(lmn_op_binary(op, a.c, o.c, a.c), lmn_op_binary(op, a.v, o.v, a.v));
        assert_close(&a, 1e-6, 1e-6, "binary aliasing an input");
        pair_free(&a);
        pair_free(&b);
        pair_free(&o);
    }
    Pair x = pair_random(777, -2, 2), y = pair_random(777, -2, 2);
    BOTH(lmn_op_axpby(0.5f, x.c, -1.5f, y.c), lmn_op_axpby(0.5f, x.v, -1.5f, y.v));
    assert_close(&y, 1e-6, 1e-6, "axpby");
    /* beta == 0 must not read y: NaN garbage in y is ignored. */
    g_autofree float *nans = g_new(float, 777);
    for (guint i = 0; i < 777; i++)
        nans[i] = NAN;
    lmn_tensor_write(y.c, nans, 777 * 4, NULL);
    lmn_tensor_write(y.v, nans, 777 * 4, NULL);
    BOTH(lmn_op_axpby(2.0f, x.c, 0.0f, y.c), lmn_op_axpby(2.0f, x.v, 0.0f, y.v));
    g_autofree float *out = g_new(float, 777);
    lmn_tensor_read(y.v, out, 777 * 4, NULL);
    for (guint i = 0; i < 777; i++)
        g_assert_false(isnan(out[i]));
    assert_close(&y, 1e-6, 1e-6, "axpby beta 0");
    BOTH(lmn_op_axpby(3.0f, x.c, 1.0f, x.c), lmn_op_axpby(3.0f, x.v, 1.0f, x.v));
    assert_close(&x, 1e-6, 1e-6, "axpby x == y");
    pair_free(&x);
    pair_free(&y);
    mark("binary", "add/sub/mul, output aliasing an input");
    mark("axpby", "beta 0 ignores NaN in y, x == y");
}

static void test_bias(void)
{
    /* The last has 32,768 samples per channel: 4 workgroups per channel for bias_grad (8192 a
     * workgroup; LAMINA_VK_CHANNEL_SPLITS forces it on all, vulkan-ops-channel-splits). */
    const gint64 shapes[][3] = {{5, 7, 1}, {3, 4, 33}, {1, 1, 1}, {64, 10, 1}, {64, 3, 512}};
    for (guint s = 0; s < G_N_ELEMENTS(shapes); s++) {
        const gint64 o = shapes[s][0], ch = shapes[s][1], in = shapes[s][2];
        Pair y = pair_random((gsize) (o * ch * in), -1, 1), b = pair_random((gsize) ch, -1, 1);
        BOTH(lmn_op_bias_add(y.c, b.c, o, ch, in), lmn_op_bias_add(y.v, b.v, o, ch, in));
        assert_close(&y, 1e-6, 1e-6, "bias_add");
        BOTH(lmn_op_bias_grad(b.c, y.c, o, ch, in, 0.0f),
             lmn_op_bias_grad(b.v, y.v, o, ch, in, 0.0f));
        assert_close(&b, 1e-5, 1e-5, "bias_grad beta 0");
        BOTH(lmn_op_bias_grad(b.c, y.c, o, ch, in, 0.5f),
             lmn_op_bias_grad(b.v, y.v, o, ch, in, 0.5f));
        assert_close(&b, 1e-5, 1e-5, "bias_grad beta 0.5");
        pair_free(&y);
        pair_free(&b);
    }
    mark("bias_add", "inner 1 and > 1");
    mark("bias_grad", "beta 0 and 0.5, several workgroups per channel");
}

static void test_reduce(void)
{
    const gsize sizes[] = {0, 1, 100, 4097, 300001};
    for (guint s = 0; s < G_N_ELEMENTS(sizes); s++) {
        for (gint op = 0; op < LMN_REDUCE_COUNT; op++) {
            Pair x = pair_random(sizes[s], -1, 1), out = pair_random(1, 0, 1);
            BOTH(lmn_op_reduce(op, x.c, out.c, 0.5f, 0.0f),
                 lmn_op_reduce(op, x.v, out.v, 0.5f, 0.0f));
            /* float accumulation vs the CPU's double: relative error ~ sqrt(n) ulp */
            assert_close(&out, 1e-4, 1e-5, "reduce");
            BOTH(lmn_op_reduce(op, x.c, out.c, 1.0f, 2.0f),
                 lmn_op_reduce(op, x.v, out.v, 1.0f, 2.0f));
            assert_close(&out, 1e-4, 1e-5, "reduce beta 2");
            pair_free(&x);
            pair_free(&out);
        }
    }
    /* Deterministic: the same input gives bit-identical results. */
    Pair x = pair_random(123457, -1, 1), out = pair_random(1, 0, 1);
    float r1, r2;
    lmn_op_reduce(LMN_REDUCE_SUM, x.v, out.v, 1.0f, 0.0f);
    lmn_tensor_read(out.v, &r1, 4, NULL);
    lmn_op_reduce(LMN_REDUCE_SUM, x.v, out.v, 1.0f, 0.0f);
    lmn_tensor_read(out.v, &r2, 4, NULL);
    g_assert_cmpmem(&r1, 4, &r2, 4);
    pair_free(&x);
    pair_free(&out);
    mark("reduce", "SUM, SUM_SQUARES, SUM_ABS; 0..300001 elements; alpha/beta; deterministic");
}

static void test_softmax_xent(void)
{
    const gint64 shapes[][2] = {{1, 1}, {8, 10}, {33, 3}, {4, 1000}};
    const float smoothings[] = {0.0f, 0.1f};
    for (guint s = 0; s < G_N_ELEMENTS(shapes); s++) {
        for (guint sm = 0; sm < G_N_ELEMENTS(smoothings); sm++) {
            const gint64 rows = shapes[s][0], k = shapes[s][1];
            Pair x = pair_matrix(rows, k, -20, 20);
            Pair l = pair_labels((gsize) rows, (gint32) k);
            Pair p = pair_matrix(rows, k, 0, 1), loss = pair_random(1, 0, 1);
            Pair dx = pair_matrix(rows, k, 0, 1);
            const float sm_v = smoothings[sm];
            BOTH(lmn_op_softmax_xent(x.c, l.c, p.c, loss.c, sm_v),
                 lmn_op_softmax_xent(x.v, l.v, p.v, loss.v, sm_v));
            assert_close(&p, 1e-7, 1e-5, "softmax_xent probs");
            assert_close(&loss, 1e-5, 1e-5, "softmax_xent loss");
            BOTH(lmn_op_softmax_xent_backward(p.c, l.c, dx.c, 1.0f / (float) rows, sm_v),
                 lmn_op_softmax_xent_backward(p.v, l.v, dx.v, 1.0f / (float) rows, sm_v));
            assert_close(&dx, 1e-7, 1e-5, "softmax_xent_backward");
            /* The one-pass form: against the CPU, and bit for bit the two ops above here. */
            Pair p2 = pair_matrix(rows, k, 0, 1), loss2 = pair_random(1, 0, 1);
            Pair dx2 = pair_matrix(rows, k, 0, 1);
            BOTH(
                lmn_op_softmax_xent_grad(x.c, l.c, p2.c, loss2.c, sm_v, dx2.c, 1.0f / (float) rows),
                lmn_op_softmax_xent_grad(x.v, l.v, p2.v, loss2.v, sm_v, dx2.v,
                                         1.0f / (float) rows));
            assert_close(&p2, 1e-7, 1e-5, "softmax_xent_grad probs");
            assert_close(&loss2, 1e-5, 1e-5, "softmax_xent_grad loss");
            assert_close(&dx2, 1e-7, 1e-5, "softmax_xent_grad dx");
            const gsize nb = (gsize) (rows * k) * sizeof(float);
            g_autofree float *v1 = g_malloc(nb), *v2 = g_malloc(nb);
            float l1 = 0, l2 = 0;
            const Pair *same[][2] = {{&p, &p2}, {&dx, &dx2}};
            for (guint i = 0; i < G_N_ELEMENTS(same); i++) {
                g_assert_true(lmn_tensor_read(same[i][0]->v, v1, nb, NULL));
                g_assert_true(lmn_tensor_read(same[i][1]->v, v2, nb, NULL));
                g_assert_cmpmem(v1, nb, v2, nb);
            }
            g_assert_true(lmn_tensor_read(loss.v, &l1, 4, NULL));
            g_assert_true(lmn_tensor_read(loss2.v, &l2, 4, NULL));
            g_assert_cmpfloat(l1, ==, l2);
            pair_free(&p2);
            pair_free(&loss2);
            pair_free(&dx2);
            /* count_correct into f32 and i32 counters (accumulating). */
            Pair cf = pair_random(1, 0, 0);
            g_autofree gint32 *seven = g_new(gint32, 1);
            seven[0] = 7;
            Pair ci = pair_new_on(vk, LMN_DTYPE_I32, 1, seven);
            BOTH(lmn_op_count_correct(x.c, l.c, cf.c), lmn_op_count_correct(x.v, l.v, cf.v));
            BOTH(lmn_op_count_correct(x.c, l.c, ci.c), lmn_op_count_correct(x.v, l.v, ci.v));
            assert_close(&cf, 0, 0, "count_correct f32");
            assert_equal_i32(&ci, "count_correct i32");
            Pair *all[] = {&x, &l, &p, &loss, &dx, &cf, &ci};
            for (guint i = 0; i < G_N_ELEMENTS(all); i++)
                pair_free(all[i]);
        }
    }
    /* Ties: the first maximum wins. */
    const float tied[] = {1, 3, 3, 0, 2, 2, 2, 2};
    const gint32 labels[] = {2, 0};
    Pair x = pair_new_shaped(vk, LMN_DTYPE_F32, lmn_shape_make(2, 2, 4), tied),
         l = pair_new_on(vk, LMN_DTYPE_I32, 2, labels);
    Pair cf = pair_random(1, 0, 0);
    float got = -1;
    lmn_op_count_correct(x.v, l.v, cf.v);
    lmn_tensor_read(cf.v, &got, 4, NULL);
    g_assert_cmpfloat(got, ==, 1.0f); /* row 0: argmax 1 != 2; row 1: argmax 0 == 0 */
    pair_free(&x);
    pair_free(&l);
    pair_free(&cf);
    mark("softmax_xent", "1x1 .. 4x1000, smoothing 0 and 0.1");
    mark("softmax_xent_backward", "as softmax_xent");
    mark("softmax_xent_grad", "as softmax_xent; bit-identical to softmax_xent and its backward");
    mark("count_correct", "f32 and i32 counters, ties");
}

static void gemm_case(LmnBackend *vb, gboolean ta, gboolean tb, gint64 m, gint64 n, gint64 k,
                      float alpha, float beta, gint64 batch, gboolean broadcast_b, gint64 off)
{
    const gint64 nb = MAX(batch, 1);
    const gint64 sa = m * k + 3, sb = broadcast_b ? 0 : k * n + 5, sc = m * n + 1;
    Pair a = pair_random_on(vb, (gsize) (off + nb * sa), -1, 1);
    Pair b = pair_random_on(vb, (gsize) (off + (broadcast_b ? 1 : nb) * (k * n + 5)), -1, 1);
    Pair c = pair_random_on(vb, (gsize) (off + nb * sc), -1, 1);
    LmnGemm g = {
        .struct_size = sizeof(LmnGemm),
        .trans_a = ta,
        .trans_b = tb,
        .m = m,
        .n = n,
        .k = k,
        .alpha = alpha,
        .beta = beta,
        .a_offset = off,
        .b_offset = off,
        .c_offset = off,
        .batch = batch,
        .stride_a = sa,
        .stride_b = sb,
        .stride_c = sc,
    };
    LmnGemm gc = g, gv = g;
    gc.a = a.c, gc.b = b.c, gc.c = c.c;
    gv.a = a.v, gv.b = b.v, gv.c = c.v;
    BOTH(lmn_op_gemm(&gc), lmn_op_gemm(&gv));
    assert_close(&c, 1e-5 * (double) k, 1e-5, "gemm");
    pair_free(&a);
    pair_free(&b);
    pair_free(&c);
}

static void test_gemm(void)
{
    /* Both GEMM kernels: the device's default (register-tiled on lavapipe) and the other one,
     * forced through LAMINA_VK_GEMM. */
    g_autoptr(GError) error = NULL;
    const char *other = strstr(lmn_backend_describe(vk), "register-tiled") ? "tiled" : "reg";
    g_setenv("LAMINA_VK_GEMM", other, TRUE);
    g_autoptr(LmnBackend) vk2 = open_vulkan(lmn_vk_test_device(), FALSE, &error);
    g_unsetenv("LAMINA_VK_GEMM");
    g_assert_no_error(error);
    g_assert_cmpstr(strstr(lmn_backend_describe(vk), "register-tiled") ? "reg" : "tiled", !=,
                    strstr(lmn_backend_describe(vk2), "register-tiled") ? "reg" : "tiled");
    LmnBackend *backends[] = {vk, vk2};
    for (guint i = 0; i < G_N_ELEMENTS(backends); i++) {
        LmnBackend *vb = backends[i];
        for (gint t = 0; t < 4; t++) {
            gemm_case(vb, t & 1, t & 2, 17, 33, 9, 1.0f, 0.0f, 0, FALSE, 0);
            gemm_case(vb, t & 1, t & 2, 64, 48, 100, 0.5f, 2.0f, 0, FALSE, 7);
            gemm_case(vb, t & 1, t & 2, 5, 3, 40, -1.0f, 1.0f, 3, FALSE, 1);
            gemm_case(vb, t & 1, t & 2, 16, 16, 16, 1.0f, 0.5f, 4, TRUE, 0);
            gemm_case(vb, t & 1, t & 2, 35, 70, 33, 1.0f, 0.0f, 2, FALSE, 3);
        }
        gemm_case(vb, FALSE, FALSE, 1, 1, 1, 2.0f, 0.0f, 1, FALSE, 0);
        gemm_case(vb, FALSE, TRUE, 128, 10, 784, 1.0f, 0.0f, 0, FALSE, 0);
        sync_ok(vb);
    }
    mark("gemm", "the device's kernel here; all transposes, alpha/beta, offsets, batch strides "
                 "incl. 0 (every kernel, split-K and the split over maxStorageBufferRange: "
                 "vulkan-gemm)");
}

/* An unbatched m x n x k product with alpha 1 (operands set by the caller). */
static LmnGemm gemm_desc(gboolean ta, gboolean tb, gint64 m, gint64 n, gint64 k, float beta)
{
    return (LmnGemm){.struct_size = sizeof(LmnGemm),
                     .trans_a = ta,
                     .trans_b = tb,
                     .m = m,
                     .n = n,
                     .k = k,
                     .alpha = 1.0f,
                     .beta = beta};
}

/* lmn_op_gemm_ex on @vb against the CPU backend's (itself bit-identical to the composed ops,
 * test-cpu-ops): @extra elements after C's m x n must stay as they were. */
static void gemm_ex_case(LmnBackend *vb, gboolean ta, gboolean tb, gint64 m, gint64 n, gint64 k,
                         float beta, gboolean bias, LmnUnaryOp act, float act_alpha,
                         gboolean row_sums, gint64 extra)
{
    Pair a = pair_random_on(vb, (gsize) (m * k + extra), -1, 1);
    Pair b = pair_random_on(vb, (gsize) (k * n), -1, 1);
    Pair c = pair_random_on(vb, (gsize) (m * n + extra), -1, 1);
    Pair bv = pair_random_on(vb, (gsize) n, -1, 1);
    Pair s = pair_random_on(vb, (gsize) m, -1, 1);
    Pair y = pair_random_on(vb, (gsize) (m * n + extra), -1, 1);
    /* An activation goes to a separate output in every other case. */
    static guint n_cases;
    const gboolean separate = act != LMN_UNARY_IDENTITY && n_cases++ % 2 == 0;
    LmnGemm g = gemm_desc(ta, tb, m, n, k, beta);
    LmnGemmEpilogue e = {.struct_size = sizeof e,
                         .activation = act,
                         .activation_alpha = act_alpha,
                         .row_sums_beta = beta};
    LmnGemm gc = g, gv = g;
    LmnGemmEpilogue ec = e, ev = e;
    gc.a = a.c, gc.b = b.c, gc.c = c.c, ec.bias = bias ? bv.c : NULL;
    ec.a_row_sums = row_sums ? s.c : NULL, ec.activated = separate ? y.c : NULL;
    gv.a = a.v, gv.b = b.v, gv.c = c.v, ev.bias = bias ? bv.v : NULL;
    ev.a_row_sums = row_sums ? s.v : NULL, ev.activated = separate ? y.v : NULL;
    BOTH(lmn_op_gemm_ex(&gc, &ec), lmn_op_gemm_ex(&gv, &ev));
    assert_close(&c, 1e-5 * (double) k, 1e-5, "gemm_ex");
    assert_close(&s, 1e-5 * (double) k, 1e-5, "gemm_ex row sums");
    assert_close(&y, 1e-5 * (double) k, 1e-5, "gemm_ex activated output");
    pair_free(&a);
    pair_free(&b);
    pair_free(&c);
    pair_free(&bv);
    pair_free(&s);
    pair_free(&y);
}

/* The backward form (C = t * f'(x, y), beta 0) on @vb against the CPU backend's. */
static void gemm_ex_grad_case(LmnBackend *vb, gboolean ta, gboolean tb, gint64 m, gint64 n,
                              gint64 k, LmnUnaryOp op, float alpha, gint64 extra)
{
    Pair a = pair_random_on(vb, (gsize) (m * k), -1, 1);
    Pair b = pair_random_on(vb, (gsize) (k * n), -1, 1);
    Pair c = pair_random_on(vb, (gsize) (m * n + extra), -1, 1);
    Pair x = pair_random_on(vb, (gsize) (m * n + extra), -2, 2);
    Pair y = pair_random_on(vb, (gsize) (m * n + extra), 0.05f, 0.95f);
    LmnGemm g = gemm_desc(ta, tb, m, n, k, 0.0f);
    LmnGemmEpilogue e = {.struct_size = sizeof e, .activation_grad = op, .activation_alpha = alpha};
    LmnGemm gc = g, gv = g;
    LmnGemmEpilogue ec = e, ev = e;
    gc.a = a.c, gc.b = b.c, gc.c = c.c, ec.grad_x = x.c, ec.grad_y = y.c;
    gv.a = a.v, gv.b = b.v, gv.c = c.v, ev.grad_x = x.v, ev.grad_y = y.v;
    BOTH(lmn_op_gemm_ex(&gc, &ec), lmn_op_gemm_ex(&gv, &ev));
    assert_close(&c, 1e-5 * (double) k, 1e-5, "gemm_ex activation gradient");
    pair_free(&a);
    pair_free(&b);
    pair_free(&c);
    pair_free(&x);
    pair_free(&y);
}

static void test_gemm_ex(void)
{
    /* Both kernels, and split-K forced (the epilogue then runs in the reduction). */
    g_autoptr(GError) error = NULL;
    const char *other = strstr(lmn_backend_describe(vk), "register-tiled") ? "tiled" : "reg";
    g_setenv("LAMINA_VK_GEMM", other, TRUE);
    g_autoptr(LmnBackend) vk2 = open_vulkan(lmn_vk_test_device(), FALSE, &error);
    g_assert_no_error(error);
    g_setenv("LAMINA_VK_GEMM", "reg,splitk", TRUE);
    g_autoptr(LmnBackend) vk3 = open_vulkan(lmn_vk_test_device(), FALSE, &error);
    g_unsetenv("LAMINA_VK_GEMM");
    g_assert_no_error(error);
    const LmnUnaryOp acts[] = {LMN_UNARY_IDENTITY, LMN_UNARY_RELU, LMN_UNARY_TANH,
                               LMN_UNARY_LEAKY_RELU, LMN_UNARY_GELU};
    LmnBackend *backends[] = {vk, vk2, vk3};
    for (guint i = 0; i < G_N_ELEMENTS(backends); i++) {
        LmnBackend *vb = backends[i];
        for (gint t = 0; t < 4; t++)
            for (guint a = 0; a < G_N_ELEMENTS(acts); a++) {
                const gboolean odd = (t + a) % 2;
                gemm_ex_case(vb, t & 1, t & 2, 37, 70, 33, odd ? 1.0f : 0.0f, a != 2, acts[a], 0.2f,
                             odd, odd ? 5 : 0);
            }
        /* The reference MLP's shapes: fc1 forward (bias) and its dW with the bias gradient. */
        gemm_ex_case(vb, FALSE, TRUE, 128, 256, 784, 0.0f, TRUE, LMN_UNARY_IDENTITY, 0, FALSE, 0);
        gemm_ex_case(vb, TRUE, FALSE, 256, 784, 128, 0.0f, FALSE, LMN_UNARY_IDENTITY, 0, TRUE, 0);
        /* LeNet-5's fc2 and fc3 dW GEMMs at 24 samples (small, several workgroup rows). */
        gemm_ex_case(vb, TRUE, FALSE, 84, 120, 24, 0.0f, FALSE, LMN_UNARY_IDENTITY, 0, TRUE, 0);
        gemm_ex_case(vb, TRUE, FALSE, 10, 84, 24, 0.0f, FALSE, LMN_UNARY_IDENTITY, 0, TRUE, 0);
        /* The backward form: derivatives from x (relu, leaky relu, gelu) and from y (sigmoid,
         * tanh), all transposes; the MLP's fc3 and fc2 input-gradient products. */
        const LmnUnaryOp grads[] = {LMN_UNARY_RELU, LMN_UNARY_SIGMOID, LMN_UNARY_TANH,
                                    LMN_UNARY_LEAKY_RELU, LMN_UNARY_GELU};
        for (gint t = 0; t < 4; t++)
            for (guint o = 0; o < G_N_ELEMENTS(grads); o++)
                gemm_ex_grad_case(vb, t & 1, t & 2, 37, 70, 33, grads[o], 0.1f,
                                  (t + o) % 2 ? 3 : 0);
        gemm_ex_grad_case(vb, FALSE, FALSE, 128, 128, 10, LMN_UNARY_RELU, 0, 0);
        gemm_ex_grad_case(vb, FALSE, FALSE, 128, 256, 128, LMN_UNARY_RELU, 0, 0);
        sync_ok(vb);
    }
    /* K beyond one dispatch's (49152 on the register-tiled kernel): the product runs in K pieces
     * and the epilogue as bias_add and unary dispatches after it. */
    gemm_ex_case(vk, FALSE, FALSE, 3, 5, 50000, 0.0f, TRUE, LMN_UNARY_RELU, 0, TRUE, 2);
    gemm_ex_grad_case(vk, FALSE, FALSE, 3, 5, 50000, LMN_UNARY_TANH, 0, 2);
    sync_ok(vk);
    mark("gemm_ex", "bias, 5 activations (in place and into a separate output), 5 activation "
                    "gradients and row sums against the CPU, all transposes, beta 0/1, "
                    "a longer C left untouched; both kernels, split-K (epilogue in the "
                    "reduction), K pieces (epilogue as separate ops)");
}

/* A plugin-style kernel without SPIR-V: y[i] = s0 * x[i] + y[i] through the CPU fallback. */
static void axpy_cpu(gsize begin, gsize end, void *const *buffers, const float *scalars)
{
    const float *x = buffers[0];
    float *y = buffers[1];
    for (gsize i = begin; i < end; i++)
        y[i] += scalars[0] * x[i];
}

static void test_kernel_fallback(void)
{
    static const guint8 access[] = {LMN_KERNEL_READ, LMN_KERNEL_READ_WRITE};
    static const LmnKernelDesc k = {
        .struct_size = sizeof(LmnKernelDesc),
        .name = "test.axpy",
        .cpu = axpy_cpu,
        .n_buffers = 2,
        .access = access,
        .n_scalars = 1,
    };
    if (g_test_subprocess()) {
        /* The fallback's warning is expected here: keep it non-fatal in this child. */
        g_log_set_always_fatal(G_LOG_FATAL_MASK);
        Pair x = pair_random(513, -1, 1), y = pair_random(513, -1, 1);
        const float s[] = {0.25f};
        LmnTensor *bc[] = {x.c, y.c}, *bv[] = {x.v, y.v};
        /* Recorded work before and after the kernel must be ordered with it. */
        BOTH(lmn_op_unary(LMN_UNARY_SQUARE, x.c, x.c, 0),
             lmn_op_unary(LMN_UNARY_SQUARE, x.v, x.v, 0));
        BOTH(lmn_op_kernel(&k, 513, bc, s), lmn_op_kernel(&k, 513, bv, s));
        BOTH(lmn_op_unary(LMN_UNARY_TANH, y.c, y.c, 0), lmn_op_unary(LMN_UNARY_TANH, y.v, y.v, 0));
        BOTH(lmn_op_kernel(&k, 513, bc, s), lmn_op_kernel(&k, 513, bv, s));
        assert_close(&y, 1e-6, 1e-6, "kernel via CPU fallback");
        pair_free(&x);
        pair_free(&y);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDOUT);
    g_test_trap_assert_passed();
    /* Warned once, naming the kernel. */
    g_test_trap_assert_stderr("*test.axpy*");
    mark("kernel", "CPU fallback on mapped memory, one warning naming the kernel");
}

/* The same kernel with a SPIR-V variant: it runs on the device (a CPU fallback would warn,
 * which is fatal in this process), for more indices than one dispatch row of groups. */
static void test_kernel_spirv(void)
{
    static const guint8 access[] = {LMN_KERNEL_READ, LMN_KERNEL_READ_WRITE};
    static const LmnKernelSpirv spirv = {
        .struct_size = sizeof(LmnKernelSpirv),
        .code = test_kernel_axpy_spv,
        .code_size = sizeof test_kernel_axpy_spv,
        .entry_point = "main",
    };
    static const LmnKernelDesc k = {
        .struct_size = sizeof(LmnKernelDesc),
        .name = "test.axpy-spirv",
        .cpu = axpy_cpu,
        .n_buffers = 2,
        .access = access,
        .n_scalars = 1,
        .spirv = &spirv,
    };
    const gsize n = 70001;
    Pair x = pair_random(n, -1, 1), y = pair_random(n, -1, 1);
    const float s[] = {-0.75f};
    LmnTensor *bc[] = {x.c, y.c}, *bv[] = {x.v, y.v};
    BOTH(lmn_op_unary(LMN_UNARY_SQUARE, x.c, x.c, 0), lmn_op_unary(LMN_UNARY_SQUARE, x.v, x.v, 0));
    BOTH(lmn_op_kernel(&k, n, bc, s), lmn_op_kernel(&k, n, bv, s));
    BOTH(lmn_op_kernel(&k, n, bc, s), lmn_op_kernel(&k, n, bv, s));
    assert_close(&y, 1e-6, 1e-6, "kernel via SPIR-V");
    pair_free(&x);
    pair_free(&y);
    mark("kernel", "SPIR-V variant on the device; CPU fallback with one warning naming the kernel");
}

/* ---- ABI 1.1 ops ---- */

static void test_clamp_softmax(void)
{
    Pair t = pair_random(2001, -3, 3);
    float nan = NAN;
    lmn_tensor_write(t.c, &nan, 4, NULL);
    lmn_tensor_write(t.v, &nan, 4, NULL);
    BOTH(lmn_op_clamp(t.c, -1.0f, 0.5f), lmn_op_clamp(t.v, -1.0f, 0.5f));
    assert_close(&t, 0, 0, "clamp (NaN propagates)");
    pair_free(&t);
    const gint64 shapes[][2] = {{1, 1}, {7, 13}, {3, 1000}};
    for (guint s = 0; s < G_N_ELEMENTS(shapes); s++) {
        const gint64 rows = shapes[s][0], cols = shapes[s][1];
        Pair x = pair_random((gsize) (rows * cols), -30, 30),
             y = pair_random((gsize) (rows * cols), 0, 1);
        Pair dy = pair_random((gsize) (rows * cols), -1, 1),
             dx = pair_random((gsize) (rows * cols), 0, 1);
        BOTH(lmn_op_softmax(x.c, y.c, rows, cols), lmn_op_softmax(x.v, y.v, rows, cols));
        assert_close(&y, 1e-7, 1e-5, "softmax");
        /* The backward from the CPU's y on both sides, so only the backward is compared. */
        g_autofree float *yv = g_new(float, rows *cols);
        lmn_tensor_read(y.c, yv, (gsize) (rows * cols) * 4, NULL);
        lmn_tensor_write(y.v, yv, (gsize) (rows * cols) * 4, NULL);
        BOTH(lmn_op_softmax_backward(y.c, dy.c, dx.c, rows, cols),
             lmn_op_softmax_backward(y.v, dy.v, dx.v, rows, cols));
        assert_close(&dx, 1e-6, 1e-5, "softmax_backward");
        BOTH(lmn_op_softmax_backward(y.c, dy.c, dy.c, rows, cols),
             lmn_op_softmax_backward(y.v, dy.v, dy.v, rows, cols));
        assert_close(&dy, 1e-6, 1e-5, "softmax_backward in place");
        BOTH(lmn_op_softmax(x.c, x.c, rows, cols), lmn_op_softmax(x.v, x.v, rows, cols));
        assert_close(&x, 1e-7, 1e-5, "softmax in place");
        Pair *all[] = {&x, &y, &dy, &dx};
        for (guint i = 0; i < G_N_ELEMENTS(all); i++)
            pair_free(all[i]);
    }
    mark("clamp", "NaN propagates");
    mark("softmax", "1x1 .. 3x1000, in place");
    mark("softmax_backward", "in place");
}

static void test_random(void)
{
    /* Philox streams must match the CPU bit for bit (masks) or to float rounding (normals). */
    const guint64 seeds[] = {0, 42, G_GUINT64_CONSTANT(0x123456789abcdef0)};
    for (guint s = 0; s < G_N_ELEMENTS(seeds); s++) {
        Pair x = pair_random(4099, -1, 1), y = pair_random(4099, 0, 1), m = pair_random(4099, 0, 1);
        BOTH(lmn_op_dropout(x.c, y.c, m.c, 0.3f, seeds[s], 7),
             lmn_op_dropout(x.v, y.v, m.v, 0.3f, seeds[s], 7));
        assert_close(&m, 0, 0, "dropout mask");
        assert_close(&y, 0, 1e-7, "dropout output");
        BOTH(lmn_op_random_normal(y.c, 0.5f, 2.0f, seeds[s], G_GUINT64_CONSTANT(1) << 33),
             lmn_op_random_normal(y.v, 0.5f, 2.0f, seeds[s], G_GUINT64_CONSTANT(1) << 33));
        assert_close(&y, 2e-5, 2e-5, "random_normal");
        Pair *all[] = {&x, &y, &m};
        for (guint i = 0; i < G_N_ELEMENTS(all); i++)
            pair_free(all[i]);
    }
    mark("dropout", "Philox masks bit-identical to the CPU, 3 seeds");
    mark("random_normal", "Philox Box-Muller, 3 seeds, 64-bit stream");
}

/* scatter_add_rows on an embedding-sized table: 3000 rows of 33, 1000 source rows (not a power
 * of two: the sort pads), one row hit 300 times, a few hundred others once or more, some
 * indices out of range.  Each row's additions run in index order on both backends (the Vulkan
 * backend sorts the indices, or with LAMINA_VK_SCATTER=scan scans them per table element), so
 * the table must be bit-identical to the CPU's; and again with a batch of one row. */
static void test_scatter_rows_large(void)
{
    const gint64 v = 3000, dim = 33, counts[] = {1000, 1};
    for (guint c = 0; c < G_N_ELEMENTS(counts); c++) {
        const gint64 n = counts[c];
        g_autofree gint32 *ii = g_new(gint32, n);
        g_autofree float *fi = g_new(float, n);
        for (gint64 i = 0; i < n; i++) {
            const gint32 pick = g_rand_int_range(rng, 0, 10);
            ii[i] = pick < 3    ? 17                                    /* one hot row */
                    : pick == 3 ? (i % 2 ? -5 : (gint32) (v + i))       /* out of range */
                                : g_rand_int_range(rng, 0, (gint32) v); /* anywhere */
            fi[i] = (float) ii[i];
        }
        Pair idx_i = pair_new_on(vk, LMN_DTYPE_I32, (gsize) n, ii);
        Pair idx_f = pair_new_on(vk, LMN_DTYPE_F32, (gsize) n, fi);
        Pair table = pair_random((gsize) (v * dim), -1, 1);
        Pair src = pair_random((gsize) (n * dim), -1, 1);
        Pair *idx[] = {&idx_i, &idx_f};
        for (guint k = 0; k < 2; k++) {
            BOTH(lmn_op_scatter_add_rows(table.c, idx[k]->c, src.c, n, dim),
                 lmn_op_scatter_add_rows(table.v, idx[k]->v, src.v, n, dim));
            assert_close(&table, 0, 0, "scatter_add_rows (3000-row table)");
        }
        Pair *all[] = {&idx_i, &idx_f, &table, &src};
        for (guint i = 0; i < G_N_ELEMENTS(all); i++)
            pair_free(all[i]);
    }
}

static void env_restore(const char *name, const char *value);

/* Reductions ending in subgroup shuffles (reduce_subgroup.comp, lavapipe has them) against the
 * shared-memory tree of a second device opened with LAMINA_VK_SUBGROUPS=0: the same pairing,
 * so the same bits, at sizes below, at and above a workgroup and over many workgroups. */
static void test_subgroup_reduce(void)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *saved = g_strdup(g_getenv("LAMINA_VK_SUBGROUPS"));
    g_setenv("LAMINA_VK_SUBGROUPS", "0", TRUE);
    LmnBackend *shared = open_vulkan(lmn_vk_test_device(), FALSE, &error);
    env_restore("LAMINA_VK_SUBGROUPS", saved);
    g_assert_no_error(error);
    g_assert_null(strstr(lmn_backend_describe(shared), "subgroup reductions"));
    const gboolean on = strstr(lmn_backend_describe(vk), "subgroup reductions") != NULL;
    g_test_message("%s", lmn_backend_describe(vk));
    if (g_strcmp0(g_getenv("LAMINA_VK_SUBGROUPS"), "0") != 0 &&
        strstr(lmn_backend_describe(vk), "llvmpipe") != NULL)
        g_assert_true(on); /* lavapipe has shuffle-relative subgroup operations */
    const gsize sizes[] = {1, 100, 128, 129, 1000, 100003};
    const LmnReduceOp ops[] = {LMN_REDUCE_SUM, LMN_REDUCE_SUM_SQUARES, LMN_REDUCE_SUM_ABS};
    LmnShape one = lmn_shape_make(0);
    for (gsize i = 0; i < G_N_ELEMENTS(sizes); i++) {
        g_autofree float *h = g_new(float, sizes[i]);
        for (gsize e = 0; e < sizes[i]; e++)
            h[e] = (float) g_rand_double_range(rng, -3, 3);
        LmnShape sh = lmn_shape_make(1, (gint64) sizes[i]);
        LmnTensor *xa = lmn_tensor_new(vk, LMN_DTYPE_F32, &sh, &error);
        LmnTensor *xb = lmn_tensor_new(shared, LMN_DTYPE_F32, &sh, &error);
        LmnTensor *ra = lmn_tensor_new(vk, LMN_DTYPE_F32, &one, &error);
        LmnTensor *rb = lmn_tensor_new(shared, LMN_DTYPE_F32, &one, &error);
        g_assert_no_error(error);
        g_assert_true(lmn_tensor_write(xa, h, sizes[i] * 4, &error));
        g_assert_true(lmn_tensor_write(xb, h, sizes[i] * 4, &error));
        for (gsize o = 0; o < G_N_ELEMENTS(ops); o++) {
            float a = 0, b = 0;
            lmn_op_reduce(ops[o], xa, ra, 0.5f, 0.0f);
            lmn_op_reduce(ops[o], xb, rb, 0.5f, 0.0f);
            g_assert_true(lmn_tensor_read(ra, &a, 4, &error));
            g_assert_true(lmn_tensor_read(rb, &b, 4, &error));
            g_assert_no_error(error);
            if (memcmp(&a, &b, 4) != 0)
                g_error("reduce op %d over %zu: %.9g with subgroups, %.9g without", (int) ops[o],
                        sizes[i], (double) a, (double) b);
        }
        lmn_tensor_unref(xa);
        lmn_tensor_unref(xb);
        lmn_tensor_unref(ra);
        lmn_tensor_unref(rb);
    }
    lmn_backend_unref(shared);
}

/* A tensor of @n floats on @b holding @h (NULL: zeros). */
static LmnTensor *tensor_from(LmnBackend *b, const float *h, gsize n)
{
    g_autoptr(GError) error = NULL;
    LmnShape sh = lmn_shape_make(1, (gint64) n);
    LmnTensor *t = lmn_tensor_new(b, LMN_DTYPE_F32, &sh, &error);
    g_assert_no_error(error);
    g_autofree float *zeros = h == NULL ? g_new0(float, n) : NULL;
    g_assert_true(lmn_tensor_write(t, h != NULL ? h : zeros, n * 4, &error));
    g_assert_no_error(error);
    return t;
}

/* A [@rows, @cols] tensor of @dtype on @b holding @h. */
static LmnTensor *matrix_from(LmnBackend *b, LmnDType dtype, const void *h, gint64 rows,
                              gint64 cols)
{
    g_autoptr(GError) error = NULL;
    LmnShape sh = cols > 0 ? lmn_shape_make(2, rows, cols) : lmn_shape_make(1, rows);
    LmnTensor *t = lmn_tensor_new(b, dtype, &sh, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_tensor_write(t, h, lmn_tensor_nbytes(t), &error));
    g_assert_no_error(error);
    return t;
}

/* @a (with subgroups) and @b (without) hold the same bits. */
static void assert_same_bits(LmnTensor *a, LmnTensor *b, gsize n, const char *what)
{
    g_autoptr(GError) error = NULL;
    g_autofree float *ha = g_new(float, n), *hb = g_new(float, n);
    g_assert_true(lmn_tensor_read(a, ha, n * 4, &error));
    g_assert_true(lmn_tensor_read(b, hb, n * 4, &error));
    g_assert_no_error(error);
    for (gsize i = 0; i < n; i++)
        if (memcmp(&ha[i], &hb[i], 4) != 0)
            g_error("%s: element %zu of %zu: %.9g with subgroups, %.9g without", what, i, n,
                    (double) ha[i], (double) hb[i]);
}

/* The per-channel and per-row trees ending in subgroup shuffles (the *_subgroup.comp variants of
 * bias_grad, batchnorm, softmax, softmax_xent and normalize) against the shared-memory trees on
 * the same device, bit for bit: one and several workgroups per channel, channels shorter than a
 * workgroup, rows shorter and longer than one. */
static void test_subgroup_channels(void)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *saved = g_strdup(g_getenv("LAMINA_VK_SUBGROUPS"));
    g_setenv("LAMINA_VK_SUBGROUPS", "0", TRUE);
    LmnBackend *shared = open_vulkan(lmn_vk_test_device(), FALSE, &error);
    env_restore("LAMINA_VK_SUBGROUPS", saved);
    g_assert_no_error(error);
    if (g_strcmp0(g_getenv("LAMINA_VK_SUBGROUPS"), "0") != 0 &&
        strstr(lmn_backend_describe(vk), "llvmpipe") != NULL)
        g_assert_nonnull(strstr(lmn_backend_describe(vk), "subgroup reductions"));
    /* {outer, channels, inner} */
    static const gint64 shapes[][3] = {
        {7, 5, 33}, {64, 3, 196}, {2, 4, 1}, {128, 16, 1}, {1, 2, 5000}};
    for (gsize s = 0; s < G_N_ELEMENTS(shapes); s++) {
        const gint64 o = shapes[s][0], ch = shapes[s][1], in = shapes[s][2];
        const gsize n = (gsize) (o * ch * in);
        g_autofree float *hx = g_new(float, n), *hdy = g_new(float, n);
        for (gsize e = 0; e < n; e++) {
            hx[e] = (float) g_rand_double_range(rng, -2, 3);
            hdy[e] = (float) g_rand_double_range(rng, -1, 1);
        }
        LmnBackend *devs[2] = {vk, shared};
        LmnTensor *x[2], *dy[2], *db[2], *mean[2], *var[2], *dx[2], *dw[2], *dbias[2];
        for (gint d = 0; d < 2; d++) {
            x[d] = tensor_from(devs[d], hx, n);
            dy[d] = tensor_from(devs[d], hdy, n);
            dx[d] = tensor_from(devs[d], NULL, n);
            db[d] = tensor_from(devs[d], NULL, (gsize) ch);
            mean[d] = tensor_from(devs[d], NULL, (gsize) ch);
            var[d] = tensor_from(devs[d], NULL, (gsize) ch);
            dw[d] = tensor_from(devs[d], NULL, (gsize) ch);
            dbias[d] = tensor_from(devs[d], NULL, (gsize) ch);
            lmn_op_bias_grad(db[d], dy[d], o, ch, in, 0.0f);
            lmn_op_batchnorm_stats(x[d], mean[d], var[d], o, ch, in);
            lmn_op_batchnorm_backward(x[d], dy[d], mean[d], var[d], NULL, dx[d], dw[d], dbias[d],
                                      1e-5f, o, ch, in);
        }
        assert_same_bits(db[0], db[1], (gsize) ch, "bias_grad");
        assert_same_bits(mean[0], mean[1], (gsize) ch, "batchnorm mean");
        assert_same_bits(var[0], var[1], (gsize) ch, "batchnorm variance");
        assert_same_bits(dx[0], dx[1], n, "batchnorm dx");
        assert_same_bits(dw[0], dw[1], (gsize) ch, "batchnorm dweight");
        assert_same_bits(dbias[0], dbias[1], (gsize) ch, "batchnorm dbias");
        /* softmax over rows of o * ch, forward and backward */
        for (gint d = 0; d < 2; d++)
            lmn_op_softmax(x[d], dx[d], o * ch, in);
        assert_same_bits(dx[0], dx[1], n, "softmax");
        for (gint d = 0; d < 2; d++) /* dx = y (dy - sum(dy y)), into x */
            lmn_op_softmax_backward(dx[d], dy[d], x[d], o * ch, in);
        assert_same_bits(x[0], x[1], n, "softmax backward");
        /* Cross-entropy's fused softmax, and the row normalisation forward and backward, on rows
         * of @in; the labels cover [0, in). */
        const gint64 rows = o * ch;
        g_autofree gint32 *hl = g_new(gint32, rows);
        for (gint64 q = 0; q < rows; q++)
            hl[q] = g_rand_int_range(rng, 0, (gint32) in);
        LmnTensor *logits[2], *labels[2], *probs[2], *loss[2], *g[2], *y[2], *rm[2], *rs[2];
        LmnShape one = lmn_shape_make(0);
        for (gint d = 0; d < 2; d++) {
            logits[d] = matrix_from(devs[d], LMN_DTYPE_F32, hx, rows, in);
            labels[d] = matrix_from(devs[d], LMN_DTYPE_I32, hl, rows, 0);
            probs[d] = matrix_from(devs[d], LMN_DTYPE_F32, hdy, rows, in);
            g[d] = matrix_from(devs[d], LMN_DTYPE_F32, hdy, rows, in);
            y[d] = matrix_from(devs[d], LMN_DTYPE_F32, hdy, rows, in);
            rm[d] = matrix_from(devs[d], LMN_DTYPE_F32, hx, rows, 0);
            rs[d] = matrix_from(devs[d], LMN_DTYPE_F32, hx, rows, 0);
            loss[d] = lmn_tensor_new(devs[d], LMN_DTYPE_F32, &one, &error);
            g_assert_no_error(error);
            lmn_op_softmax_xent_grad(logits[d], labels[d], probs[d], loss[d], 0.1f, g[d],
                                     1.0f / (float) rows);
            lmn_op_normalize_rows(logits[d], y[d], rm[d], rs[d], rows, in, 1e-5f);
            lmn_op_normalize_rows_backward(y[d], rs[d], dy[d], dx[d], rows, in);
        }
        assert_same_bits(probs[0], probs[1], n, "softmax_xent probabilities");
        assert_same_bits(loss[0], loss[1], 1, "softmax_xent loss");
        assert_same_bits(g[0], g[1], n, "softmax_xent gradient");
        assert_same_bits(y[0], y[1], n, "normalize_rows");
        assert_same_bits(rm[0], rm[1], (gsize) rows, "normalize_rows mean");
        assert_same_bits(rs[0], rs[1], (gsize) rows, "normalize_rows rstd");
        assert_same_bits(dx[0], dx[1], n, "normalize_rows backward");
        for (gint d = 0; d < 2; d++) {
            LmnTensor *all[] = {logits[d], labels[d], probs[d], loss[d], g[d], y[d], rm[d], rs[d]};
            for (guint q = 0; q < G_N_ELEMENTS(all); q++)
                lmn_tensor_unref(all[q]);
        }
        for (gint d = 0; d < 2; d++) {
            lmn_tensor_unref(x[d]);
            lmn_tensor_unref(dy[d]);
            lmn_tensor_unref(dx[d]);
            lmn_tensor_unref(db[d]);
            lmn_tensor_unref(mean[d]);
            lmn_tensor_unref(var[d]);
            lmn_tensor_unref(dw[d]);
            lmn_tensor_unref(dbias[d]);
        }
    }
    lmn_backend_unref(shared);
}

static void test_rows_and_bce(void)
{
    const gint64 v = 11, dim = 5, n = 17;
    g_autofree gint32 *ii = g_new(gint32, n);
    g_autofree float *fi = g_new(float, n);
    for (gint64 i = 0; i < n; i++) {
        ii[i] = i == 3 ? -1 : (i == 4 ? (gint32) v : g_rand_int_range(rng, 0, (gint32) v));
        fi[i] = (float) ii[i];
    }
    Pair idx_i = pair_new_on(vk, LMN_DTYPE_I32, (gsize) n, ii);
    Pair idx_f = pair_new_on(vk, LMN_DTYPE_F32, (gsize) n, fi);
    Pair table = pair_random((gsize) (v * dim), -1, 1), out = pair_random((gsize) (n * dim), 0, 1);
    Pair *idx[] = {&idx_i, &idx_f};
    for (guint k = 0; k < 2; k++) {
        BOTH(lmn_op_gather_rows(table.c, idx[k]->c, out.c, n, dim),
             lmn_op_gather_rows(table.v, idx[k]->v, out.v, n, dim));
        assert_close(&out, 0, 0, "gather_rows");
        BOTH(lmn_op_scatter_add_rows(table.c, idx[k]->c, out.c, n, dim),
             lmn_op_scatter_add_rows(table.v, idx[k]->v, out.v, n, dim));
        assert_close(&table, 1e-6, 1e-6, "scatter_add_rows");
    }
    /* copy_block: a strided block between tensors, beta 0 and 1, and inside one tensor. */
    Pair dst = pair_random(300, -1, 1), src = pair_random(300, -1, 1);
    BOTH(lmn_op_copy_block(dst.c, 5, 20, src.c, 3, 17, 9, 11, 0.0f),
         lmn_op_copy_block(dst.v, 5, 20, src.v, 3, 17, 9, 11, 0.0f));
    assert_close(&dst, 0, 0, "copy_block");
    BOTH(lmn_op_copy_block(dst.c, 1, 30, src.c, 0, 25, 8, 12, 1.0f),
         lmn_op_copy_block(dst.v, 1, 30, src.v, 0, 25, 8, 12, 1.0f));
    assert_close(&dst, 1e-6, 1e-6, "copy_block beta 1");
    BOTH(lmn_op_copy_block(dst.c, 2, 10, dst.c, 0, 10, 20, 10, 0.0f),
         lmn_op_copy_block(dst.v, 2, 10, dst.v, 0, 10, 20, 10, 0.0f));
    assert_close(&dst, 0, 0, "copy_block overlapping rows of one tensor");
    {
        /* Two disjoint views of one tensor (as layers get from the activation arena) take the
         * device path, and match the CPU. */
        LmnShape half = lmn_shape_make(1, 150);
        LmnTensor *lo_c = lmn_tensor_new_view(dst.c, 0, &half);
        LmnTensor *hi_c = lmn_tensor_new_view(dst.c, 150, &half);
        LmnTensor *lo_v = lmn_tensor_new_view(dst.v, 0, &half);
        LmnTensor *hi_v = lmn_tensor_new_view(dst.v, 150, &half);
        BOTH(lmn_op_copy_block(hi_c, 1, 12, lo_c, 2, 13, 11, 9, 0.5f),
             lmn_op_copy_block(hi_v, 1, 12, lo_v, 2, 13, 11, 9, 0.5f));
        lmn_tensor_unref(lo_c);
        lmn_tensor_unref(hi_c);
        lmn_tensor_unref(lo_v);
        lmn_tensor_unref(hi_v);
        assert_close(&dst, 1e-6, 1e-6, "copy_block between disjoint views of one tensor");
    }
    /* bce_logits */
    Pair x = pair_random(5001, -30, 30), t = pair_random(5001, 0, 1), loss = pair_random(1, 0, 1);
    Pair dx = pair_random(5001, 0, 1);
    BOTH(lmn_op_bce_logits(x.c, t.c, loss.c), lmn_op_bce_logits(x.v, t.v, loss.v));
    assert_close(&loss, 1e-5, 1e-5, "bce_logits");
    BOTH(lmn_op_bce_logits_backward(x.c, t.c, dx.c, 0.5f),
         lmn_op_bce_logits_backward(x.v, t.v, dx.v, 0.5f));
    assert_close(&dx, 1e-7, 1e-5, "bce_logits_backward");
    Pair *all[] = {&idx_i, &idx_f, &table, &out, &dst, &src, &x, &t, &loss, &dx};
    for (guint i = 0; i < G_N_ELEMENTS(all); i++)
        pair_free(all[i]);
    mark("gather_rows", "i32 and f32 indices, out-of-range rows give zeros");
    mark("scatter_add_rows", "i32 and f32 indices, repeated rows, deterministic order; a "
                             "3000-row table bit-identical to the CPU, by sorting and by "
                             "scanning (vulkan-ops-scatter-scan)");
    mark("copy_block", "strided, beta 0/1, overlapping rows of one tensor, disjoint views of one "
                       "tensor");
    mark("bce_logits", "x in [-30, 30], 5001 elements");
    mark("bce_logits_backward", "x in [-30, 30], scale 0.5");
}

/* ---- a short training run: per-step losses on Vulkan follow the CPU's ---- */

static const char train_config[] = "[model]\n"
                                   "input = 8\n"
                                   "[layer fc1]\n"
                                   "type = dense\n"
                                   "units = 32\n"
                                   "[layer act]\n"
                                   "type = tanh\n"
                                   "[layer fc2]\n"
                                   "type = dense\n"
                                   "units = 16\n"
                                   "[layer act2]\n"
                                   "type = relu\n"
                                   "[layer fc3]\n"
                                   "type = dense\n"
                                   "units = 1\n"
                                   "[layer loss]\n"
                                   "type = mse\n"
                                   "[optimizer]\n"
                                   "type = sgd\n"
                                   "lr = 0.05\n"
                                   "momentum = 0.9\n"
                                   "[train]\n"
                                   "batch_size = 24\n"
                                   "[data]\n"
                                   "train = unused.h5:/train\n";

#define TRAIN_STEPS 12
#define TRAIN_BATCH 24

static void train_losses(LmnBackend *be, double *losses)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_data(train_config, -1, "vulkan-train.ini", &error);
    g_assert_no_error(error);
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    LmnTensorInfo target = {lmn_shape_make(1, 1), LMN_DTYPE_F32};
    LmnModel *model = lmn_model_new(cfg, registry, be, &target, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_init_params(model, 5, &error));
    g_assert_true(lmn_model_prepare(model, TRAIN_BATCH, &error));
    const LmnParams *hyper = lmn_config_get_optimizer_params(cfg);
    LmnOptimizer *opt = lmn_optimizer_new(registry, "sgd", hyper, lmn_model_get_params(model),
                                          lmn_model_get_grads(model), &error);
    g_assert_no_error(error);
    LmnRandom r;
    lmn_random_init(&r, 99, 0);
    for (int step = 0; step < TRAIN_STEPS; step++) {
        LmnTensor *x, *y;
        lmn_model_set_batch(model, TRAIN_BATCH, &x, &y);
        float xh[TRAIN_BATCH * 8], yh[TRAIN_BATCH];
        for (int i = 0; i < TRAIN_BATCH; i++) {
            double acc = 0.0;
            for (int j = 0; j < 8; j++) {
                xh[i * 8 + j] = (float) lmn_random_normal(&r);
                acc += (j % 3 - 1) * 0.5 * xh[i * 8 + j];
            }
            yh[i] = (float) sin(acc);
        }
        g_assert_true(lmn_tensor_write(x, xh, sizeof xh, &error));
        g_assert_true(lmn_tensor_write(y, yh, sizeof yh, &error));
        lmn_model_forward(model, TRUE, (guint64) step, 1);
        float loss = 0.0f;
        g_assert_true(lmn_tensor_read(lmn_model_get_loss(model), &loss, sizeof loss, &error));
        g_assert_no_error(error);
        losses[step] = loss;
        lmn_model_backward(model, (guint64) step, 1);
        lmn_optimizer_step(opt, lmn_params_get_float(hyper, "lr"));
    }
    g_assert_true(lmn_backend_synchronize(be, &error));
    lmn_optimizer_free(opt);
    lmn_model_free(model);
    lmn_config_free(cfg);
}

static void test_training(void)
{
    if (g_test_subprocess()) {
        /* Warnings are not fatal in this child, so that a CPU fallback (which warns) shows in
         * its stderr, checked below. */
        g_log_set_always_fatal(G_LOG_FATAL_MASK);
        double lc[TRAIN_STEPS], lv[TRAIN_STEPS];
        train_losses(cpu, lc);
        train_losses(vk, lv);
        for (int s = 0; s < TRAIN_STEPS; s++) {
            g_test_message("step %d: cpu %.7f vulkan %.7f", s, lc[s], lv[s]);
            g_assert_cmpfloat_with_epsilon(lv[s], lc[s], 1e-6 + 1e-4 * fabs(lc[s]));
        }
        /* It trains: the last loss is below the first. */
        g_assert_cmpfloat(lv[TRAIN_STEPS - 1], <, lv[0]);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDOUT);
    g_test_trap_assert_passed();
    /* sgd's update runs as SPIR-V on the device: no CPU-fallback warning. */
    g_test_trap_assert_stderr_unmatched("*no usable SPIR-V*");
}

/* ---- maxStorageBufferRange chunking ---- */

static void test_chunked(void)
{
    g_autoptr(GError) error = NULL;
    g_setenv("LAMINA_VK_MAX_STORAGE_RANGE", "4096", TRUE);
    g_autoptr(LmnBackend) small = open_vulkan(lmn_vk_test_device(), FALSE, &error);
    g_unsetenv("LAMINA_VK_MAX_STORAGE_RANGE");
    g_assert_no_error(error);
    g_assert_nonnull(strstr(lmn_backend_describe(small), "4096"));
    /* 10007 floats = 40 KiB: ten chunks per element-wise op, tensors in dedicated blocks. */
    const gsize n = 10007;
    Pair x = pair_random_on(small, n, -3, 3), y = pair_random_on(small, n, -3, 3);
    Pair d = pair_random_on(small, n, -1, 1);
    BOTH(lmn_op_unary(LMN_UNARY_GELU, x.c, y.c, 0), lmn_op_unary(LMN_UNARY_GELU, x.v, y.v, 0));
    assert_close(&y, 2e-6, 2e-5, "chunked unary");
    BOTH(lmn_op_unary_backward(LMN_UNARY_TANH, x.c, y.c, d.c, d.c, 0),
         lmn_op_unary_backward(LMN_UNARY_TANH, x.v, y.v, d.v, d.v, 0));
    assert_close(&d, 2e-6, 2e-5, "chunked unary_backward");
    /* Fresh operands: y differs between backends by GELU's rounding. */
    Pair z = pair_random_on(small, n, -3, 3);
    BOTH(lmn_op_binary(LMN_BINARY_MUL, x.c, z.c, d.c),
         lmn_op_binary(LMN_BINARY_MUL, x.v, z.v, d.v));
    assert_close(&d, 1e-6, 1e-6, "chunked binary");
    BOTH(lmn_op_axpby(0.5f, x.c, 0.25f, d.c), lmn_op_axpby(0.5f, x.v, 0.25f, d.v));
    assert_close(&d, 1e-6, 1e-6, "chunked axpby");
    BOTH(lmn_op_copy(y.c, d.c), lmn_op_copy(y.v, d.v));
    assert_close(&y, 0, 0, "chunked copy");
    BOTH(lmn_op_fill(y.c, 1.5f), lmn_op_fill(y.v, 1.5f));
    assert_close(&y, 0, 0, "chunked fill");
    /* Philox element indices continue across chunks. */
    BOTH(lmn_op_dropout(x.c, y.c, d.c, 0.5f, 9, 3), lmn_op_dropout(x.v, y.v, d.v, 0.5f, 9, 3));
    assert_close(&d, 0, 0, "chunked dropout mask");
    BOTH(lmn_op_clamp(x.c, -0.5f, 0.5f), lmn_op_clamp(x.v, -0.5f, 0.5f));
    assert_close(&x, 0, 0, "chunked clamp");
    Pair bias = pair_random_on(small, 7, -1, 1);
    Pair yb = pair_random_on(small, 7 * 9 * 160, -1, 1); /* 40 KiB, planes of 63 floats */
    BOTH(lmn_op_bias_add(yb.c, bias.c, 160, 7, 9), lmn_op_bias_add(yb.v, bias.v, 160, 7, 9));
    assert_close(&yb, 1e-6, 1e-6, "chunked bias_add");
    /* Ops without a chunked path (per-channel batch-norm statistics over one channel larger
     * than the range) report UNSUPPORTED naming the op; the others are in
     * test-vulkan-memory.c. */
    Pair out = pair_random_on(small, 1, 0, 1), out2 = pair_random_on(small, 1, 0, 1);
    lmn_op_batchnorm_stats(x.v, out.v, out2.v, 1, 1, (gint64) n);
    g_assert_false(lmn_backend_synchronize(small, &error));
    g_assert_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED);
    g_assert_nonnull(strstr(error->message, "batchnorm_stats"));
    g_assert_nonnull(strstr(error->message, "maxStorageBufferRange"));
    Pair *all[] = {&x, &y, &z, &d, &bias, &yb, &out, &out2};
    for (guint i = 0; i < G_N_ELEMENTS(all); i++)
        pair_free(all[i]);
    /* The core keeps the first deferred error: this backend stays failed. */
}

/* ---- device selection ---- */

static void test_unknown_device(void)
{
    g_autoptr(GError) error = NULL;
    LmnBackend *b = open_vulkan("no-such-gpu", FALSE, &error);
    g_assert_null(b);
    g_assert_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_NO_DEVICE);
    g_assert_nonnull(strstr(error->message, "no-such-gpu"));
    g_assert_nonnull(strstr(error->message, "llvmpipe")); /* the devices are listed */
    g_clear_error(&error);
    b = open_vulkan("99", FALSE, &error);
    g_assert_null(b);
    g_assert_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_NO_DEVICE);
    g_assert_nonnull(strstr(error->message, "'99'"));
}

static void test_env_device(void)
{
    g_autoptr(GError) error = NULL;
    g_setenv("LAMINA_VK_DEVICE", "bogus-device", TRUE);
    LmnBackend *b = open_vulkan(NULL, FALSE, &error);
    g_unsetenv("LAMINA_VK_DEVICE");
    g_assert_null(b);
    g_assert_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_NO_DEVICE);
    g_assert_nonnull(strstr(error->message, "bogus-device"));
    g_clear_error(&error);
    /* The env selector is the default device: the test device through it. */
    g_setenv("LAMINA_VK_DEVICE", lmn_vk_test_device(), TRUE);
    b = open_vulkan(NULL, FALSE, &error);
    g_unsetenv("LAMINA_VK_DEVICE");
    g_assert_no_error(error);
    lmn_backend_unref(b);
}

static void test_auto_skips_lavapipe(void)
{
    g_autoptr(GError) error = NULL;
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_BACKEND, "vulkan", &error);
    g_assert_no_error(error);
    const LmnBackendVTable *vt = f->desc->vtable;
    gint auto_index = -2;
    g_autoptr(GPtrArray) devices = vt->list_devices(NULL, &auto_index, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(devices->len, >, 0);
    for (guint i = 0; i < devices->len; i++) {
        const LmnDeviceInfo *d = devices->pdata[i];
        g_assert_nonnull(strstr(d->details, "maxStorageBufferRange"));
        g_assert_nonnull(strstr(d->details, "subgroup size"));
    }
    if (auto_index >= 0) {
        g_test_skip("a real GPU is present: auto picks it");
        return;
    }
    LmnBackend *b = open_vulkan(NULL, FALSE, &error);
    g_assert_null(b);
    g_assert_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_NO_DEVICE);
    g_assert_nonnull(strstr(error->message, "no GPU"));
    g_assert_nonnull(strstr(error->message, "lavapipe is used only when asked for"));
}

static void test_validation_clean(void)
{
    if (!validating) {
        g_test_skip("VK_LAYER_KHRONOS_validation is not installed (or a sanitizer build)");
        return;
    }
    /* Every op test above ran with validation on; a last synchronisation reports any error
     * not yet reported. */
    sync_ok(vk);
}

/* ---- the persistent pipeline cache ---- */

/* Restores an environment variable saved as @value (NULL: unset). */
static void env_restore(const char *name, const char *value)
{
    if (value != NULL)
        g_setenv(name, value, TRUE);
    else
        g_unsetenv(name);
}

/* The staging ring grows for a write of more than a quarter of it: a 20 MiB write through a
 * 16 MiB ring grows it once, to 128 MiB (four times the write, a power of two), the data
 * arrives whole, and a second such write grows nothing.  LAMINA_VK_STATS' line at close says
 * so; it is read from this process's stderr, sent to a file meanwhile. */
static void test_staging_grows(void)
{
    g_autofree char *staging = g_strdup(g_getenv("LAMINA_VK_STAGING"));
    g_autofree char *size = g_strdup(g_getenv("LAMINA_VK_STAGING_SIZE"));
    g_autofree char *stats = g_strdup(g_getenv("LAMINA_VK_STATS"));
    g_setenv("LAMINA_VK_STAGING", "1", TRUE);
    g_unsetenv("LAMINA_VK_STAGING_SIZE");
    g_setenv("LAMINA_VK_STATS", "1", TRUE);
    g_autoptr(GError) error = NULL;
    LmnBackend *b = open_vulkan(lmn_vk_test_device(), FALSE, &error);
    g_assert_no_error(error);
    const gint64 n = 5 << 20; /* 20 MiB of floats */
    LmnShape shape = lmn_shape_make(1, n);
    LmnTensor *t = lmn_tensor_new(b, LMN_DTYPE_F32, &shape, &error);
    g_assert_no_error(error);
    g_autofree float *in = g_new(float, n), *out = g_new(float, n);
    for (gint64 round = 0; round < 2; round++) {
        for (gint64 i = 0; i < n; i++)
            in[i] = (float) (i % 1000003) * 0.5f + (float) round;
        g_assert_true(lmn_tensor_write(t, in, (gsize) n * 4, &error));
        g_assert_no_error(error);
        g_assert_true(lmn_tensor_read(t, out, (gsize) n * 4, &error));
        g_assert_no_error(error);
        g_assert_cmpmem(in, (gsize) n * 4, out, (gsize) n * 4);
    }
    lmn_tensor_unref(t);
    g_autofree char *dir = g_dir_make_tmp("lmn-vk-stats-XXXXXX", &error);
    g_assert_no_error(error);
    g_autofree char *path = g_build_filename(dir, "stderr", NULL);
    fflush(stderr);
    const int saved = dup(2);
    const int fd = g_open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    g_assert_cmpint(saved, >=, 0);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(dup2(fd, 2), ==, 2);
    lmn_backend_unref(b); /* prints the stats */
    fflush(stderr);
    g_assert_cmpint(dup2(saved, 2), ==, 2);
    close(fd);
    close(saved);
    env_restore("LAMINA_VK_STAGING", staging);
    env_restore("LAMINA_VK_STAGING_SIZE", size);
    env_restore("LAMINA_VK_STATS", stats);
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    g_test_message("%s", text);
    g_assert_nonnull(strstr(text, "staging ring 134217728 bytes (grown 1 times)"));
    g_assert_cmpint(g_unlink(path), ==, 0);
    g_assert_cmpint(g_rmdir(dir), ==, 0);
}

/* The test knobs refuse what they do not take, naming the variable, when the backend opens. */
static void test_bad_knobs(void)
{
    const char *cases[][3] = {{"LAMINA_VK_CHANNEL_SPLITS", "65", "from 1 to 64"},
                              {"LAMINA_VK_CHANNEL_SPLITS", "0", "from 1 to 64"},
                              {"LAMINA_VK_CHANNEL_SPLITS", "3x", "from 1 to 64"},
                              {"LAMINA_VK_PUSH_DESCRIPTORS", "yes", "expected 0"},
                              {"LAMINA_VK_SCATTER", "fast", "expected 'sort'"},
                              {"LAMINA_VK_SUBGROUPS", "on", "expected 0"}};
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *saved = g_strdup(g_getenv(cases[i][0]));
        g_setenv(cases[i][0], cases[i][1], TRUE);
        g_autoptr(GError) error = NULL;
        LmnBackend *b = open_vulkan(lmn_vk_test_device(), FALSE, &error);
        env_restore(cases[i][0], saved);
        g_assert_null(b);
        g_assert_nonnull(error);
        g_autofree char *expect = g_strdup_printf("%s = '%s'", cases[i][0], cases[i][1]);
        g_assert_nonnull(strstr(error->message, expect));
        g_assert_nonnull(strstr(error->message, cases[i][2]));
    }
}

/* Saved, read back, and a corrupt file discarded.  In a file of this process's own
 * (LAMINA_VK_PIPELINE_CACHE): the op suite runs in several processes at once (its variants),
 * and one corrupting the shared file would fail another's check. */
static void test_pipeline_cache(void)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *dir = g_dir_make_tmp("lmn-vk-cache-XXXXXX", &error);
    g_assert_no_error(error);
    g_autofree char *path = g_build_filename(dir, "pipelines.bin", NULL);
    g_setenv("LAMINA_VK_PIPELINE_CACHE", path, TRUE);
    LmnBackend *b = open_vulkan(lmn_vk_test_device(), FALSE, &error);
    g_assert_no_error(error);
    Pair t = pair_random_on(b, 100, 0, 1);
    BOTH(lmn_op_fill(t.c, 1.0f), lmn_op_fill(t.v, 1.0f));
    assert_close(&t, 0, 0, "fill");
    pair_free(&t);
    lmn_backend_unref(b); /* saves the cache */
    g_autofree char *data = NULL;
    gsize size = 0;
    g_assert_true(g_file_get_contents(path, &data, &size, NULL));
    /* A VkPipelineCache blob: header length (>= 32), header version 1, vendor, device, UUID.
     * (lavapipe stores only the header: Mesa 22.3 does not cache its pipelines.) */
    g_assert_cmpuint(size, >=, 32);
    guint32 header[2];
    memcpy(header, data, sizeof header);
    g_assert_cmpuint(header[0], >=, 32);
    g_assert_cmpuint(header[1], ==, 1);
    /* A corrupt file is discarded: the backend still opens and runs. */
    g_assert_true(g_file_set_contents(path, "not a pipeline cache", -1, NULL));
    b = open_vulkan(lmn_vk_test_device(), FALSE, &error);
    g_assert_no_error(error);
    t = pair_random_on(b, 100, 0, 1);
    BOTH(lmn_op_fill(t.c, 2.0f), lmn_op_fill(t.v, 2.0f));
    assert_close(&t, 0, 0, "fill after a corrupt cache");
    pair_free(&t);
    lmn_backend_unref(b);
    /* ...and saved over with a valid one. */
    g_free(data);
    data = NULL;
    g_assert_true(g_file_get_contents(path, &data, &size, NULL));
    g_assert_cmpuint(size, >=, 32);
    g_unsetenv("LAMINA_VK_PIPELINE_CACHE");
    g_assert_cmpint(g_unlink(path), ==, 0);
    g_assert_cmpint(g_rmdir(dir), ==, 0);
}

/* ---- convolution helpers, pooling, batch normalisation ---- */

/* Geometries: {batch, channels, h, w, kh, kw, sh, sw, ph, pw, dh, dw}; they cover padding,
 * strides above the kernel, dilation, 1-pixel images and windows entirely in the padding. */
static const gint64 conv_geoms[][12] = {
    {2, 3, 5, 5, 3, 3, 1, 1, 1, 1, 1, 1}, {1, 2, 7, 6, 3, 2, 2, 3, 1, 0, 1, 1},
    {2, 1, 9, 8, 3, 3, 2, 2, 2, 2, 2, 2}, {1, 4, 4, 4, 2, 2, 2, 2, 0, 0, 1, 1},
    {3, 2, 1, 7, 1, 3, 1, 2, 0, 1, 1, 1}, {1, 1, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1},
    {2, 2, 6, 5, 2, 3, 3, 1, 1, 1, 1, 2},
};

static LmnConv2dGeom conv_geom(guint i)
{
    const gint64 *v = conv_geoms[i];
    LmnConv2dGeom g = {.struct_size = sizeof(LmnConv2dGeom),
                       .batch = v[0],
                       .channels = v[1],
                       .height = v[2],
                       .width = v[3],
                       .kernel_h = v[4],
                       .kernel_w = v[5],
                       .stride_h = v[6],
                       .stride_w = v[7],
                       .pad_h = v[8],
                       .pad_w = v[9],
                       .dilation_h = v[10],
                       .dilation_w = v[11]};
    g.out_h = (g.height + 2 * g.pad_h - g.dilation_h * (g.kernel_h - 1) - 1) / g.stride_h + 1;
    g.out_w = (g.width + 2 * g.pad_w - g.dilation_w * (g.kernel_w - 1) - 1) / g.stride_w + 1;
    return g;
}

/* Small integers (so windows hold ties: the first maximum must win) and one NaN. */
static Pair pair_pool_input(gsize n, gboolean with_nan)
{
    g_autofree float *v = g_new(float, MAX(n, 1));
    for (gsize i = 0; i < n; i++)
        v[i] = (float) g_rand_int_range(rng, -3, 4);
    if (with_nan && n > 3)
        v[n / 3] = NAN;
    return pair_new_on(vk, LMN_DTYPE_F32, n, v);
}

static void test_im2col_col2im(void)
{
    for (guint i = 0; i < G_N_ELEMENTS(conv_geoms); i++) {
        const LmnConv2dGeom g = conv_geom(i);
        const gsize nx = (gsize) (g.batch * g.channels * g.height * g.width);
        const gsize nc =
            (gsize) (g.batch * g.channels * g.kernel_h * g.kernel_w * g.out_h * g.out_w);
        Pair x = pair_random(nx, -2, 2), cols = pair_random(nc, -1, 1);
        BOTH(lmn_op_im2col(x.c, cols.c, &g), lmn_op_im2col(x.v, cols.v, &g));
        sync_ok(vk);
        assert_close(&cols, 0, 0, "im2col");
        Pair dcols = pair_random(nc, -2, 2), dx = pair_random(nx, 5, 6);
        BOTH(lmn_op_col2im(dcols.c, dx.c, &g), lmn_op_col2im(dcols.v, dx.v, &g));
        sync_ok(vk);
        /* The same additions in the same order as the CPU: equal up to contraction. */
        assert_close(&dx, 1e-6, 1e-6, "col2im");
        pair_free(&x);
        pair_free(&cols);
        pair_free(&dcols);
        pair_free(&dx);
    }
    mark("im2col", "7 geometries (padding, stride, dilation, all-padding rows), exact");
    mark("col2im", "7 geometries, one invocation per pixel, deterministic");
}

static void test_pool(void)
{
    for (guint i = 0; i < G_N_ELEMENTS(conv_geoms); i++) {
        const LmnConv2dGeom g = conv_geom(i);
        const gsize nx = (gsize) (g.batch * g.channels * g.height * g.width);
        const gsize ny = (gsize) (g.batch * g.channels * g.out_h * g.out_w);
        for (guint m = 0; m < 2; m++) {
            const LmnPoolMode mode = m == 0 ? LMN_POOL_MAX : LMN_POOL_AVG;
            Pair x = pair_pool_input(nx, mode == LMN_POOL_MAX), y = pair_random(ny, 7, 8);
            g_autofree gint32 *junk = g_new0(gint32, MAX(ny, 1));
            Pair arg = pair_new_on(vk, LMN_DTYPE_I32, ny, junk);
            BOTH(lmn_op_pool2d(mode, x.c, y.c, arg.c, &g),
                 lmn_op_pool2d(mode, x.v, y.v, arg.v, &g));
            sync_ok(vk);
            assert_close(&y, 0, 1e-6, mode == LMN_POOL_MAX ? "max pool" : "avg pool");
            if (mode == LMN_POOL_MAX)
                assert_equal_i32(&arg, "max pool argmax");
            Pair dy = pair_random(ny, -1, 1), dx = pair_random(nx, 9, 10);
            BOTH(lmn_op_pool2d_backward(mode, dy.c, arg.c, dx.c, &g),
                 lmn_op_pool2d_backward(mode, dy.v, arg.v, dx.v, &g));
            sync_ok(vk);
            assert_close(&dx, 1e-6, 1e-6,
                         mode == LMN_POOL_MAX ? "max pool backward" : "avg pool backward");
            pair_free(&x);
            pair_free(&y);
            pair_free(&arg);
            pair_free(&dy);
            pair_free(&dx);
        }
    }
    /* A window entirely in the padding gives 0 and argmax -1 (geometry 5: pad 1, kernel 1). */
    const LmnConv2dGeom g = conv_geom(5);
    Pair x = pair_pool_input(4, FALSE), y = pair_random(16, 1, 2);
    g_autofree gint32 *junk = g_new0(gint32, 16);
    Pair arg = pair_new_on(vk, LMN_DTYPE_I32, 16, junk);
    lmn_op_pool2d(LMN_POOL_MAX, x.v, y.v, arg.v, &g);
    float yv[16];
    gint32 av[16];
    g_autoptr(GError) error = NULL;
    lmn_tensor_read(y.v, yv, sizeof yv, &error);
    g_assert_no_error(error);
    lmn_tensor_read(arg.v, av, sizeof av, &error);
    g_assert_no_error(error);
    g_assert_cmpfloat(yv[0], ==, 0.0f);
    g_assert_cmpint(av[0], ==, -1);
    g_assert_cmpint(av[5], ==, 0); /* (1, 1) of the padded output is pixel (0, 0) */
    pair_free(&x);
    pair_free(&y);
    pair_free(&arg);
    mark("pool2d", "max (ties, NaN, all-padding windows) and avg over 7 geometries");
    mark("pool2d_backward", "max via argmax and avg, one invocation per input pixel");
}

/* ---- ABI 1.3: spatial resampling ---- */

/* Geometries: integer and fractional factors, sizes, align_corners, downsampling, one-pixel
 * axes (scale 0 with align_corners) and planes that do not divide a chunk. */
static const struct {
    gint64 planes, ih, iw, oh, ow;
    float sh, sw;
    gboolean align;
} up_geoms[] = {
    {6, 3, 4, 6, 8, 0.5f, 0.5f, FALSE},        {4, 3, 3, 4, 7, 1 / 1.5f, 1 / 2.5f, FALSE},
    {3, 3, 4, 5, 7, 0.6f, 4 / 7.0f, FALSE},    {2, 5, 7, 3, 2, 5 / 3.0f, 3.5f, FALSE},
    {3, 3, 4, 7, 5, 2 / 6.0f, 3 / 4.0f, TRUE}, {2, 1, 4, 3, 9, 0.0f, 3 / 8.0f, TRUE},
    {5, 17, 13, 34, 26, 0.5f, 0.5f, FALSE},
};

static LmnUpsampleGeom up_geom(guint i)
{
    return (LmnUpsampleGeom){.struct_size = sizeof(LmnUpsampleGeom),
                             .planes = up_geoms[i].planes,
                             .in_h = up_geoms[i].ih,
                             .in_w = up_geoms[i].iw,
                             .out_h = up_geoms[i].oh,
                             .out_w = up_geoms[i].ow,
                             .scale_h = up_geoms[i].sh,
                             .scale_w = up_geoms[i].sw,
                             .align_corners = up_geoms[i].align};
}

/* Forward and backward of both modes on @b against the CPU. */
static void check_upsample(LmnBackend *b, const LmnUpsampleGeom *g, const char *what)
{
    const gsize nx = (gsize) (g->planes * g->in_h * g->in_w);
    const gsize ny = (gsize) (g->planes * g->out_h * g->out_w);
    for (guint m = 0; m < 2; m++) {
        const LmnUpsampleMode mode = m == 0 ? LMN_UPSAMPLE_NEAREST : LMN_UPSAMPLE_BILINEAR;
        Pair x = pair_random_on(b, nx, -2, 2), y = pair_random_on(b, ny, 7, 8);
        BOTH(lmn_op_upsample2d(mode, x.c, y.c, g), lmn_op_upsample2d(mode, x.v, y.v, g));
        sync_ok(b);
        g_autofree char *f = g_strdup_printf("%s upsample2d mode %u", what, m);
        assert_close(&y, 1e-6, 1e-6, f);
        Pair dy = pair_random_on(b, ny, -1, 1), dx = pair_random_on(b, nx, 9, 10);
        BOTH(lmn_op_upsample2d_backward(mode, dy.c, dx.c, g),
             lmn_op_upsample2d_backward(mode, dy.v, dx.v, g));
        sync_ok(b);
        g_autofree char *bw = g_strdup_printf("%s upsample2d_backward mode %u", what, m);
        /* The same loops in the same order as the CPU: equal up to rounding. */
        assert_close(&dx, 1e-5, 1e-5, bw);
        pair_free(&x);
        pair_free(&y);
        pair_free(&dy);
        pair_free(&dx);
    }
}

static void test_upsample(void)
{
    for (guint i = 0; i < G_N_ELEMENTS(up_geoms); i++) {
        const LmnUpsampleGeom g = up_geom(i);
        g_autofree char *what = g_strdup_printf("geometry %u", i);
        check_upsample(vk, &g, what);
    }
    mark("upsample2d", "nearest and bilinear, 7 geometries (fractional factors, align_corners, "
                       "downsampling, one-pixel axes), chunked planes");
    mark("upsample2d_backward", "both modes, a gather per input pixel, chunked planes");
}

/* Above a lowered maxStorageBufferRange (4 KiB = 1024 floats) the planes go in chunks: geometry 6
 * has 34 * 26 = 884 output floats per plane, so each chunk holds one plane of five. */
static void test_upsample_chunked(void)
{
    g_autoptr(GError) error = NULL;
    g_setenv("LAMINA_VK_MAX_STORAGE_RANGE", "4096", TRUE);
    g_autoptr(LmnBackend) small = open_vulkan("lavapipe", FALSE, &error);
    g_unsetenv("LAMINA_VK_MAX_STORAGE_RANGE");
    g_assert_no_error(error);
    const LmnUpsampleGeom g = up_geom(6);
    check_upsample(small, &g, "chunked");
    /* One plane larger than the range cannot be split: UNSUPPORTED naming the op. */
    const LmnUpsampleGeom big = {.struct_size = sizeof big,
                                 .planes = 1,
                                 .in_h = 20,
                                 .in_w = 20,
                                 .out_h = 40,
                                 .out_w = 40,
                                 .scale_h = 0.5f,
                                 .scale_w = 0.5f};
    Pair x = pair_random_on(small, 400, -1, 1), y = pair_random_on(small, 1600, -1, 1);
    lmn_op_upsample2d(LMN_UPSAMPLE_NEAREST, x.v, y.v, &big);
    g_assert_false(lmn_backend_synchronize(small, &error));
    g_assert_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED);
    g_assert_nonnull(strstr(error->message, "upsample2d"));
    g_assert_nonnull(strstr(error->message, "maxStorageBufferRange"));
    pair_free(&x);
    pair_free(&y);
}

/* Per-channel statistics, the forward with and without affine parameters, and the backward
 * (dx may be dy) on shapes [outer, channels, inner] including inner == 1 and one channel; the
 * CPU sums in double, Vulkan in float in a fixed order. */
static void test_batchnorm(void)
{
    /* The last two have enough samples per channel (8192 and more) for several workgroups per
     * channel (the split modes); LAMINA_VK_CHANNEL_SPLITS forces them on all
     * (vulkan-ops-channel-splits). */
    const gint64 shapes[][3] = {{4, 3, 5},  {64, 10, 1},  {2, 1, 1000}, {1, 5, 1},
                                {3, 2, 37}, {64, 3, 600}, {32, 2, 520}};
    for (guint s = 0; s < G_N_ELEMENTS(shapes); s++) {
        const gint64 outer = shapes[s][0], C = shapes[s][1], inner = shapes[s][2];
        const gsize n = (gsize) (outer * C * inner);
        /* A large mean with a small spread: a one-pass variance would lose it. */
        const double centre = s == 2 || s == 5 ? 1000.0 : 0.5;
        Pair x = pair_random(n, centre - 1, centre + 1);
        Pair mean = pair_random((gsize) C, 0, 1), var = pair_random((gsize) C, 0, 1);
        BOTH(lmn_op_batchnorm_stats(x.c, mean.c, var.c, outer, C, inner),
             lmn_op_batchnorm_stats(x.v, mean.v, var.v, outer, C, inner));
        sync_ok(vk);
        assert_close(&mean, 1e-6, 1e-6, "batchnorm mean");
        assert_close(&var, 1e-6, 2e-5, "batchnorm var");
        /* The rest compares the ops alone: both sides get the CPU's statistics. */
        g_autofree float *stats = g_new(float, 2 * C);
        g_autoptr(GError) error = NULL;
        lmn_tensor_read(mean.c, stats, (gsize) C * 4, &error);
        g_assert_no_error(error);
        lmn_tensor_read(var.c, stats + C, (gsize) C * 4, &error);
        g_assert_no_error(error);
        lmn_tensor_write(mean.v, stats, (gsize) C * 4, &error);
        g_assert_no_error(error);
        lmn_tensor_write(var.v, stats + C, (gsize) C * 4, &error);
        g_assert_no_error(error);
        Pair w = pair_random((gsize) C, 0.5, 2), b = pair_random((gsize) C, -1, 1);
        Pair y = pair_random(n, 0, 1);
        const gboolean affine = s % 2 == 0;
        BOTH(lmn_op_batchnorm_forward(x.c, mean.c, var.c, affine ? w.c : NULL, affine ? b.c : NULL,
                                      y.c, 1e-5f, outer, C, inner),
             lmn_op_batchnorm_forward(x.v, mean.v, var.v, affine ? w.v : NULL, affine ? b.v : NULL,
                                      y.v, 1e-5f, outer, C, inner));
        sync_ok(vk);
        assert_close(&y, 1e-5, 1e-5, "batchnorm forward");
        Pair dy = pair_random(n, -1, 1), dx = pair_random(n, 3, 4);
        Pair dw = pair_random((gsize) C, 0, 1), db = pair_random((gsize) C, 0, 1);
        const gboolean alias = s == 4;
        BOTH(lmn_op_batchnorm_backward(x.c, dy.c, mean.c, var.c, affine ? w.c : NULL,
                                       alias ? dy.c : dx.c, affine ? dw.c : NULL,
                                       affine ? db.c : NULL, 1e-5f, outer, C, inner),
             lmn_op_batchnorm_backward(x.v, dy.v, mean.v, var.v, affine ? w.v : NULL,
                                       alias ? dy.v : dx.v, affine ? dw.v : NULL,
                                       affine ? db.v : NULL, 1e-5f, outer, C, inner));
        sync_ok(vk);
        assert_close(alias ? &dy : &dx, 2e-5, 1e-4, "batchnorm backward dx");
        assert_close(&dw, 2e-5, 1e-4, "batchnorm backward dweight");
        assert_close(&db, 2e-5, 1e-4, "batchnorm backward dbias");
        Pair *all[] = {&x, &mean, &var, &w, &b, &y, &dy, &dx, &dw, &db};
        for (guint i = 0; i < G_N_ELEMENTS(all); i++)
            pair_free(all[i]);
    }
    /* No samples: the statistics are NaN, as on the CPU, not a plausible 0. */
    Pair x0 = pair_new_shaped(vk, LMN_DTYPE_F32,
                              lmn_shape_make(3, (gint64) 0, (gint64) 3, (gint64) 4), NULL);
    Pair m0 = pair_random(3, 0, 1), v0 = pair_random(3, 0, 1);
    BOTH(lmn_op_batchnorm_stats(x0.c, m0.c, v0.c, 0, 3, 4),
         lmn_op_batchnorm_stats(x0.v, m0.v, v0.v, 0, 3, 4));
    sync_ok(vk);
    float st[3];
    g_autoptr(GError) error = NULL;
    lmn_tensor_read(m0.v, st, sizeof st, &error);
    g_assert_no_error(error);
    g_assert_true(isnan(st[0]) && isnan(st[2]));
    assert_close(&m0, 0, 0, "batchnorm mean without samples");
    assert_close(&v0, 0, 0, "batchnorm var without samples");
    pair_free(&x0);
    pair_free(&m0);
    pair_free(&v0);
    mark("batchnorm_stats", "7 shapes incl. inner 1, a mean far above the spread (two-pass) and "
                            "several workgroups per channel, no samples (NaN)");
    mark("batchnorm_forward", "7 shapes, with and without weight/bias");
    mark("batchnorm_backward", "7 shapes, with and without dweight/dbias, dx aliasing dy, "
                               "several workgroups per channel");
}

/* ---- optimizer kernels (SPIR-V variants of sgd/adam/adamw update) ---- */

static gint n_warnings;

static GLogWriterOutput counting_writer(GLogLevelFlags level, const GLogField *fields,
                                        gsize n_fields, gpointer data)
{
    if (level & (G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL))
        g_atomic_int_inc(&n_warnings);
    return g_log_writer_default(level & ~G_LOG_FLAG_FATAL, fields, n_fields, data);
}

typedef struct {
    const char *type;
    const char *keys[5];
    const char *values[5];
    double lr;
} OptCase;

static LmnOptimizer *opt_new(const OptCase *oc, LmnTensor *param, LmnTensor *grad)
{
    g_autoptr(GError) error = NULL;
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_OPTIMIZER, oc->type, &error);
    g_assert_no_error(error);
    LmnParams *hyper = lmn_registry_validate_params(f, oc->keys, oc->values, oc->type, &error);
    g_assert_no_error(error);
    LmnOptimizer *o = lmn_optimizer_new(registry, oc->type, hyper, param, grad, &error);
    g_assert_no_error(error);
    lmn_params_unref(hyper);
    return o;
}

/* 20 steps on both backends with the same recorded gradients; parameters and every slot must
 * agree to ~1e-6 relative, and no kernel may fall back to the CPU (that warns). */
static void test_optimizers(void)
{
    static const OptCase cases[] = {
        {"sgd", {"momentum", "weight_decay", NULL}, {"0.9", "0.01", NULL}, 0.05},
        {"sgd",
         {"momentum", "nesterov", "weight_decay", NULL},
         {"0.8", "true", "0.001", NULL},
         0.1},
        {"sgd", {"weight_decay", "maximize", NULL}, {"0.1", "true", NULL}, 0.02},
        {"sgd", {"momentum", "dampening", NULL}, {"0.5", "0.3", NULL}, 0.05},
        {"adam", {"amsgrad", "weight_decay", NULL}, {"false", "0.01", NULL}, 1e-2},
        {"adam", {"amsgrad", NULL}, {"true", NULL}, 1e-2},
        {"adamw", {"amsgrad", NULL}, {"false", NULL}, 1e-2},
        {"adamw",
         {"amsgrad", "weight_decay", "maximize", NULL},
         {"true", "0.1", "true", NULL},
         1e-2},
    };
    if (!g_test_subprocess()) {
        g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDOUT);
        g_test_trap_assert_passed();
        g_test_trap_assert_stderr_unmatched("*no usable SPIR-V*");
        mark("kernel", "SPIR-V variants: the test kernel here, every optimizer's update "
                       "(vulkan-optimizers: all option combinations, 20-step trajectories), the "
                       "rnn/lstm/gru gate kernels (vulkan-layers), the per-pixel "
                       "softmax_cross_entropy kernels (layers-losses-vulkan); CPU fallback with "
                       "one warning naming the kernel");
        return;
    }
    g_log_set_writer_func(counting_writer, NULL, NULL);
    const gsize n = 1000, steps = 20;
    for (guint k = 0; k < G_N_ELEMENTS(cases); k++) {
        const OptCase *oc = &cases[k];
        Pair p = pair_random(n, -1, 1), gr = pair_random(n, -1, 1);
        LmnOptimizer *oc_cpu = opt_new(oc, p.c, gr.c), *oc_vk = opt_new(oc, p.v, gr.v);
        g_autofree float *gv = g_new(float, n);
        for (gsize s = 0; s < steps; s++) {
            for (gsize i = 0; i < n; i++)
                gv[i] = (float) g_rand_double_range(rng, -1, 1) * (s % 5 == 4 ? 1e-3f : 1.0f);
            g_autoptr(GError) error = NULL;
            lmn_tensor_write(gr.c, gv, n * 4, &error);
            g_assert_no_error(error);
            lmn_tensor_write(gr.v, gv, n * 4, &error);
            g_assert_no_error(error);
            lmn_optimizer_step(oc_cpu, oc->lr);
            lmn_optimizer_step(oc_vk, oc->lr);
        }
        sync_ok(vk);
        g_autofree char *what = g_strdup_printf("%s case %u param", oc->type, k);
        assert_close(&p, 1e-7, 1e-6, what);
        for (guint s = 0; s < lmn_optimizer_get_n_slots(oc_cpu); s++) {
            Pair slot = {lmn_optimizer_get_slot(oc_cpu, s), lmn_optimizer_get_slot(oc_vk, s), n};
            g_autofree char *sw = g_strdup_printf("%s case %u slot %s", oc->type, k,
                                                  lmn_optimizer_get_slot_name(oc_cpu, s));
            assert_close(&slot, 1e-9, 1e-6, sw);
        }
        lmn_optimizer_free(oc_cpu);
        lmn_optimizer_free(oc_vk);
        pair_free(&p);
        pair_free(&gr);
    }
    g_assert_cmpint(g_atomic_int_get(&n_warnings), ==, 0);
}

/* ---- the op-support table ---- */

/* Every op in vtable order with its member's offset: the required ones (memory and the ABI 1.0
 * ops) are always there, the optional ones only when the backend fills them in. */
#define OP(name)                                                                                   \
    {                                                                                              \
#name, G_STRUCT_OFFSET(LmnBackendVTable, name)                                             \
    }
typedef struct {
    const char *name;
    gsize offset;
} OpSlot;

static const OpSlot op_slots[] = {
    OP(fill),
    OP(copy),
    OP(gemm),
    OP(bias_add),
    OP(bias_grad),
    OP(unary),
    OP(unary_backward),
    OP(binary),
    OP(axpby),
    OP(reduce),
    OP(softmax_xent),
    OP(softmax_xent_backward),
    OP(count_correct),
    OP(kernel),
    /* ABI 1.1 */
    OP(im2col),
    OP(col2im),
    OP(pool2d),
    OP(pool2d_backward),
    OP(batchnorm_stats),
    OP(batchnorm_forward),
    OP(batchnorm_backward),
    OP(dropout),
    OP(random_normal),
    OP(clamp),
    OP(softmax),
    OP(softmax_backward),
    OP(copy_block),
    OP(gather_rows),
    OP(scatter_add_rows),
    OP(bce_logits),
    OP(bce_logits_backward),
    /* ABI 1.3: spatial resampling (tested here) */
    OP(upsample2d),
    OP(upsample2d_backward),
    /* ABI 1.5: the GEMM with an epilogue, the loss with its gradient */
    OP(gemm_ex),
    OP(softmax_xent_grad),
};

/* The ABI 1.3 axis/broadcast block, tested by test-vulkan-ops-axis (its own program, which also
 * runs every op in chunks under a lowered maxStorageBufferRange); its coverage notes live here so
 * that one program writes the whole table. */
static const struct {
    OpSlot slot;
    const char *note;
} axis_ops[] = {
    {OP(reduce_axis), "sum, mean, max with argmax; 5 shapes incl. inner 1 and axis 300; chunks of "
                      "outer slices"},
    {OP(reduce_axis_backward), "as reduce_axis; max routed through the argmax"},
    {OP(binary_broadcast), "all 6 functions over every pattern of broadcast axes for 1- to 4-D "
                           "shapes, 5-D, lower-rank operands, U-Net shapes; boxes cut below the "
                           "outermost dim"},
    {OP(binary_broadcast_backward), "as binary_broadcast, both gradients, ties of "
                                    "maximum/minimum; runs accumulated over a broadcast dim"},
    {OP(normalize_rows), "5 shapes up to 3000 columns; chunks of rows"},
    {OP(normalize_rows_backward), "as normalize_rows, dx aliasing dy"},
    {OP(clamp_backward), "the bounds themselves give 0; chunks of elements"},
    {OP(topk), "4 shapes, k = 1 .. axis, ties on a 0.5 grid (lower index first), NaN; chunks of "
               "outer slices"},
    {OP(topk_backward), "as topk"},
};

/* The ABI 1.4 native convolution, tested by test-vulkan-conv-ops (its own program). */
static const struct {
    OpSlot slot;
    const char *note;
} conv_ops[] = {
    {OP(conv2d_forward), "implicit GEMM; 16 geometries (stride, padding, dilation, groups, "
                         "depthwise, 1x1, LeNet, non-square, several workgroups per grid "
                         "dimension), 1.2M output channels and 70000 groups (beyond the "
                         "workgroup-count limit; reductions of 1.2M split), NaN outputs "
                         "overwritten, bit-identical reruns; both "
                         "kernels; chunks of images"},
    {OP(conv2d_backward_data), "as conv2d_forward, a gather per input pixel"},
    {OP(conv2d_backward_weights), "as conv2d_forward, beta 0 over NaN and beta 1; K slices "
                                  "summed in order"},
};
#undef OP

static gboolean vtable_has(const LmnBackendVTable *vt, const OpSlot *op)
{
    if (op->offset < G_STRUCT_OFFSET(LmnBackendVTable, im2col))
        return TRUE;
    return *(const gpointer *) ((const char *) vt + op->offset) != NULL;
}

static void write_op_table(const char *path)
{
    const LmnBackendVTable *vt = lmn_backend_get_vtable(vk);
    GString *s = g_string_new(
        "# Op support by backend\n\n"
        "Generated by `LMN_OP_TABLE=$PWD/docs/op-support.md meson test -C build vulkan-ops` "
        "(on lavapipe).\nThe CPU backend implements every op and is the reference.  "
        "\"tested\" means the Vulkan result was compared with the CPU backend's.\n\n"
        "| op | cpu | vulkan | vulkan test coverage |\n|---|---|---|---|\n");
    for (guint i = 0; i < G_N_ELEMENTS(op_slots); i++) {
        const char *note = g_hash_table_lookup(tested_ops, op_slots[i].name);
        g_string_append_printf(s, "| %s | yes | %s | %s |\n", op_slots[i].name,
                               !vtable_has(vt, &op_slots[i]) ? "no (UNSUPPORTED)"
                               : note                        ? "yes"
                                                             : "untested",
                               note ? note : "-");
    }
    g_string_append(
        s, "\n## ABI 1.3 axis and broadcasting ops\n\n"
           "Compared by `test-vulkan-ops-axis` (suite vulkan), also with maxStorageBufferRange "
           "lowered to\n4 KiB so that every op runs in chunks.  The CPU backend is tested against "
           "PyTorch values\n(`test-cpu-ops-axis`, fixtures from "
           "`scripts/make-axis-op-fixtures.py`).\n\n"
           "| op | cpu | vulkan | vulkan test coverage |\n|---|---|---|---|\n");
    for (guint i = 0; i < G_N_ELEMENTS(axis_ops); i++)
        g_string_append_printf(s, "| %s | yes | %s | %s |\n", axis_ops[i].slot.name,
                               vtable_has(vt, &axis_ops[i].slot) ? "yes" : "no (UNSUPPORTED)",
                               axis_ops[i].note);
    g_string_append(s, "\nVulkan sums in float in a fixed order, the CPU in double: the two agree "
                       "to rounding.  Refused\nwith UNSUPPORTED naming the op: one `[axis, inner]` "
                       "slice or one row larger than the range.\n");
    g_string_append(
        s, "\n## ABI 1.4 native convolution\n\n"
           "Compared with the CPU backend by `test-vulkan-conv-ops` (suite vulkan; "
           "`vulkan-conv-ops-tiled` runs\nthe shared-memory kernels), within 1e-5 of the sum of "
           "the terms' absolute values, also with\nmaxStorageBufferRange lowered to 4 KiB.  "
           "`LAMINA_VK_CONV=im2col` leaves them out (the core's im2col +\nGEMM path).\n\n"
           "| op | cpu | vulkan | vulkan test coverage |\n|---|---|---|---|\n");
    for (guint i = 0; i < G_N_ELEMENTS(conv_ops); i++)
        g_string_append_printf(s, "| %s | yes | %s | %s |\n", conv_ops[i].slot.name,
                               vtable_has(vt, &conv_ops[i].slot) ? "yes" : "no (UNSUPPORTED)",
                               conv_ops[i].note);
    g_string_append(s, "\nRefused with UNSUPPORTED naming the op: one image larger than the range, "
                       "sizes beyond 32-bit\nindexing.\n");
    g_autoptr(GError) error = NULL;
    g_file_set_contents(path, s->str, -1, &error);
    g_assert_no_error(error);
    g_string_free(s, TRUE);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    validating = lmn_vk_test_setup(&registry, &cpu);
    g_autoptr(GError) error = NULL;
    vk = open_vulkan(lmn_vk_test_device(), validating, &error);
    if (vk == NULL) {
        printf("1..0 # SKIP no Vulkan device '%s': %s\n", lmn_vk_test_device(), error->message);
        return 77;
    }
    rng = g_rand_new_with_seed(20261123);
    tested_ops = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);

    g_test_add_func("/vulkan/ops/fill", test_fill);
    g_test_add_func("/vulkan/ops/copy", test_copy_and_views);
    g_test_add_func("/vulkan/ops/unary", test_unary);
    g_test_add_func("/vulkan/ops/binary-axpby", test_binary_axpby);
    g_test_add_func("/vulkan/ops/bias", test_bias);
    g_test_add_func("/vulkan/ops/reduce", test_reduce);
    g_test_add_func("/vulkan/ops/softmax-xent", test_softmax_xent);
    g_test_add_func("/vulkan/ops/gemm", test_gemm);
    g_test_add_func("/vulkan/ops/gemm-ex", test_gemm_ex);
    g_test_add_func("/vulkan/ops/kernel-fallback", test_kernel_fallback);
    g_test_add_func("/vulkan/ops/kernel-spirv", test_kernel_spirv);
    g_test_add_func("/vulkan/ops/clamp-softmax", test_clamp_softmax);
    g_test_add_func("/vulkan/ops/random", test_random);
    g_test_add_func("/vulkan/ops/rows-bce", test_rows_and_bce);
    g_test_add_func("/vulkan/ops/scatter-rows-large", test_scatter_rows_large);
    g_test_add_func("/vulkan/ops/subgroup-reduce", test_subgroup_reduce);
    g_test_add_func("/vulkan/ops/subgroup-channels", test_subgroup_channels);
    g_test_add_func("/vulkan/ops/im2col-col2im", test_im2col_col2im);
    g_test_add_func("/vulkan/ops/pool2d", test_pool);
    g_test_add_func("/vulkan/ops/batchnorm", test_batchnorm);
    g_test_add_func("/vulkan/ops/upsample2d", test_upsample);
    g_test_add_func("/vulkan/chunked/upsample2d", test_upsample_chunked);
    g_test_add_func("/vulkan/kernels/optimizers", test_optimizers);
    g_test_add_func("/vulkan/chunked/elementwise", test_chunked);
    g_test_add_func("/vulkan/train/mlp-sgd", test_training);
    g_test_add_func("/vulkan/pipeline-cache/persisted", test_pipeline_cache);
    g_test_add_func("/vulkan/staging/ring-grows", test_staging_grows);
    g_test_add_func("/vulkan/knobs/refused", test_bad_knobs);
    g_test_add_func("/vulkan/device/unknown", test_unknown_device);
    g_test_add_func("/vulkan/device/env", test_env_device);
    g_test_add_func("/vulkan/device/auto-skips-lavapipe", test_auto_skips_lavapipe);
    g_test_add_func("/vulkan/validation/clean", test_validation_clean);
    int rc = g_test_run();

    const char *table = g_getenv("LMN_OP_TABLE");
    if (rc == 0 && table != NULL && *table != '\0')
        write_op_table(table);
    g_hash_table_unref(tested_ops);
    g_rand_free(rng);
    lmn_backend_unref(vk);
    lmn_backend_unref(cpu);
    lmn_registry_free(registry);
    return rc;
}
