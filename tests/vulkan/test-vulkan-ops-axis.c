/* Tests of the Vulkan backend's ABI 1.3 ops against the CPU backend on the same random inputs:
 * reductions over one axis, broadcasting binary ops and their gradients over every pattern of
 * broadcast axes for 1- to 4-D shapes (and 5-D), row normalisation, the clamp gradient and top-k
 * (ties and NaN); then
 * all of them again with maxStorageBufferRange lowered to 4 KiB, so they run in chunks (and
 * broadcast boxes are cut below their outermost dim), and the refusal of a slice larger than
 * the range.
 *
 * Runs on Mesa's lavapipe (opened by name, as CI does); the program exits 77 (skipped) when no
 * such device can be opened.  The main backend runs with the validation layer when installed.
 */
#include <lamina/lamina.h>

#include "vk-test-setup.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static LmnRegistry *registry;
static LmnBackend *cpu;
static LmnBackend *vk;
static LmnBackend *vk_small; /* LAMINA_VK_MAX_STORAGE_RANGE=4096 */
static gboolean validating;
static GRand *rng;

static LmnBackend *open_vulkan(gboolean validation, GError **error)
{
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_BACKEND, "vulkan", error);
    if (f == NULL)
        return NULL;
    const char *keys[] = {"validation", NULL};
    const char *values[] = {validation ? "true" : "false", NULL};
    LmnParams *params =
        lmn_registry_validate_params(f, keys, values, "test-vulkan-ops-axis", error);
    if (params == NULL)
        return NULL;
    LmnBackend *b = lmn_backend_new(registry, "vulkan", params, "lavapipe", error);
    lmn_params_unref(params);
    return b;
}

/* ---- paired tensors: the same data on the CPU and a Vulkan backend ---- */

typedef struct {
    LmnTensor *c, *v;
    gsize n;
} Pair;

static Pair pair_new(LmnBackend *vb, LmnDType dtype, const LmnShape *shape, double lo, double hi)
{
    g_autoptr(GError) error = NULL;
    const gsize n = (gsize) lmn_shape_numel(shape);
    g_autofree float *v = g_new(float, MAX(n, 1));
    for (gsize i = 0; i < n; i++)
        v[i] = (float) g_rand_double_range(rng, lo, hi);
    Pair p = {lmn_tensor_new(cpu, dtype, shape, &error), NULL, n};
    g_assert_no_error(error);
    p.v = lmn_tensor_new(vb, dtype, shape, &error);
    g_assert_no_error(error);
    if (n > 0 && dtype == LMN_DTYPE_F32) {
        lmn_tensor_write(p.c, v, n * 4, &error);
        g_assert_no_error(error);
        lmn_tensor_write(p.v, v, n * 4, &error);
        g_assert_no_error(error);
    }
    return p;
}

static Pair pair_1d(LmnBackend *vb, LmnDType dtype, gint64 n, double lo, double hi)
{
    LmnShape s = lmn_shape_make(1, n);
    return pair_new(vb, dtype, &s, lo, hi);
}

static void pair_free(Pair *p)
{
    lmn_tensor_unref(p->c);
    lmn_tensor_unref(p->v);
}

/* |vk - cpu| <= atol + rtol |cpu| element-wise (NaN only where the CPU has NaN). */
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

/* ---- axis reductions ---- */

static void check_reduce_axis(LmnBackend *vb, gint64 outer, gint64 axis, gint64 inner)
{
    for (gint op = 0; op < LMN_AXIS_COUNT; op++) {
        Pair x = pair_1d(vb, LMN_DTYPE_F32, outer * axis * inner, -3, 3);
        Pair y = pair_1d(vb, LMN_DTYPE_F32, outer * inner, 0, 1);
        Pair idx = pair_1d(vb, LMN_DTYPE_I32, outer * inner, 0, 0);
        Pair dy = pair_1d(vb, LMN_DTYPE_F32, outer * inner, -1, 1);
        Pair dx = pair_1d(vb, LMN_DTYPE_F32, outer * axis * inner, 0, 1);
        lmn_op_reduce_axis(op, x.c, y.c, idx.c, outer, axis, inner);
        lmn_op_reduce_axis(op, x.v, y.v, idx.v, outer, axis, inner);
        g_autofree char *what = g_strdup_printf("reduce_axis op %d [%" G_GINT64_FORMAT
                                                ", %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]",
                                                op, outer, axis, inner);
        /* Vulkan sums in float: the error grows with the axis length. */
        assert_close(&y, 1e-6 * (double) axis, 1e-5, what);
        if (op == LMN_AXIS_MAX)
            assert_equal_i32(&idx, what);
        lmn_op_reduce_axis_backward(op, dy.c, idx.c, dx.c, outer, axis, inner);
        lmn_op_reduce_axis_backward(op, dy.v, idx.v, dx.v, outer, axis, inner);
        assert_close(&dx, 1e-7, 1e-6, what);
        sync_ok(vb);
        Pair *all[] = {&x, &y, &idx, &dy, &dx};
        for (guint i = 0; i < G_N_ELEMENTS(all); i++)
            pair_free(all[i]);
    }
}

static void test_reduce_axis(void)
{
    const gint64 shapes[][3] = {{1, 1, 1}, {3, 7, 1}, {2, 6, 9}, {4, 65, 3}, {5, 300, 70}};
    for (guint s = 0; s < G_N_ELEMENTS(shapes); s++)
        check_reduce_axis(vk, shapes[s][0], shapes[s][1], shapes[s][2]);
}

/* ---- broadcasting ---- */

static void check_broadcast(LmnBackend *vb, const LmnShape *sa, const LmnShape *sb, gint op)
{
    LmnBroadcast bc;
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_broadcast_init(&bc, sa, sb, &error));
    LmnShape so = lmn_broadcast_out_shape(&bc);
    /* Divisors away from 0; values on a 0.5 grid so maximum/minimum see ties. */
    const gboolean grid = op == LMN_BINARY_MAXIMUM || op == LMN_BINARY_MINIMUM;
    Pair a = pair_new(vb, LMN_DTYPE_F32, sa, grid ? -2 : -2, 2);
    Pair b = pair_new(vb, LMN_DTYPE_F32, sb, op == LMN_BINARY_DIV ? 0.5 : -2, 2);
    if (grid) {
        Pair *ab[] = {&a, &b};
        for (guint k = 0; k < 2; k++) {
            g_autofree float *v = g_new(float, MAX(ab[k]->n, 1));
            lmn_tensor_read(ab[k]->c, v, ab[k]->n * 4, NULL);
            for (gsize i = 0; i < ab[k]->n; i++)
                v[i] = roundf(v[i] * 2) / 2;
            lmn_tensor_write(ab[k]->c, v, ab[k]->n * 4, NULL);
            lmn_tensor_write(ab[k]->v, v, ab[k]->n * 4, NULL);
        }
    }
    Pair o = pair_new(vb, LMN_DTYPE_F32, &so, 0, 1), dy = pair_new(vb, LMN_DTYPE_F32, &so, -1, 1);
    Pair da = pair_new(vb, LMN_DTYPE_F32, sa, 0, 1), db = pair_new(vb, LMN_DTYPE_F32, sb, 0, 1);
    g_autofree char *s1 = lmn_shape_to_string(sa);
    g_autofree char *s2 = lmn_shape_to_string(sb);
    g_autofree char *what = g_strdup_printf("broadcast op %d %s %s", op, s1, s2);
    lmn_op_binary_broadcast(op, a.c, b.c, o.c, &bc);
    lmn_op_binary_broadcast(op, a.v, b.v, o.v, &bc);
    assert_close(&o, 1e-6, 1e-6, what);
    lmn_op_binary_broadcast_backward(op, a.c, b.c, dy.c, da.c, db.c, &bc);
    lmn_op_binary_broadcast_backward(op, a.v, b.v, dy.v, da.v, db.v, &bc);
    /* Vulkan sums in float: the error grows with the terms per gradient element. */
    assert_close(&da, 1e-5 + 2e-6 * (double) (o.n / MAX(a.n, 1)), 1e-5, what);
    assert_close(&db, 1e-5 + 2e-6 * (double) (o.n / MAX(b.n, 1)), 1e-5, what);
    sync_ok(vb);
    Pair *all[] = {&a, &b, &o, &dy, &da, &db};
    for (guint i = 0; i < G_N_ELEMENTS(all); i++)
        pair_free(all[i]);
}

/* Every pattern of disjoint broadcast axes of a and b for 1- to 4-D shapes, each op in turn. */
static void test_broadcast_patterns(void)
{
    const gint64 base[4] = {2, 3, 4, 5};
    guint n = 0;
    for (guint nd = 1; nd <= 4; nd++) {
        guint total = 1;
        for (guint k = 0; k < nd; k++)
            total *= 3;
        for (guint pat = 0; pat < total; pat++, n++) {
            LmnShape sa = {.ndim = nd}, sb = {.ndim = nd};
            guint rest = pat;
            for (guint k = 0; k < nd; k++, rest /= 3) {
                const gint64 d = base[4 - nd + k];
                sa.dims[k] = rest % 3 == 1 ? 1 : d;
                sb.dims[k] = rest % 3 == 2 ? 1 : d;
            }
            check_broadcast(vk, &sa, &sb, (gint) (n % LMN_BINARY_COUNT));
            check_broadcast(vk, &sa, &sb, (gint) ((n + 3) % LMN_BINARY_COUNT));
        }
    }
    LmnShape a5 = lmn_shape_make(5, 2, 1, 3, 1, 4), b5 = lmn_shape_make(5, 1, 3, 1, 2, 4);
    LmnShape a2 = lmn_shape_make(2, 4, 5), b3 = lmn_shape_make(3, 3, 1, 5);
    LmnShape x4 = lmn_shape_make(4, 8, 16, 14, 14), w4 = lmn_shape_make(4, 1, 16, 1, 1);
    for (gint op = 0; op < LMN_BINARY_COUNT; op++) {
        check_broadcast(vk, &a5, &b5, op);
        check_broadcast(vk, &a2, &b3, op);
        check_broadcast(vk, &x4, &w4, op);
    }
}

/* ---- row normalisation, clamp gradient ---- */

static void check_normalize(LmnBackend *vb, gint64 rows, gint64 cols)
{
    Pair x = pair_1d(vb, LMN_DTYPE_F32, rows * cols, -3, 5),
         y = pair_1d(vb, LMN_DTYPE_F32, rows * cols, 0, 1);
    Pair m = pair_1d(vb, LMN_DTYPE_F32, rows, 0, 1), r = pair_1d(vb, LMN_DTYPE_F32, rows, 0, 1);
    Pair dy = pair_1d(vb, LMN_DTYPE_F32, rows * cols, -1, 1);
    Pair dx = pair_1d(vb, LMN_DTYPE_F32, rows * cols, 0, 1);
    lmn_op_normalize_rows(x.c, y.c, m.c, r.c, rows, cols, 1e-5f);
    lmn_op_normalize_rows(x.v, y.v, m.v, r.v, rows, cols, 1e-5f);
    assert_close(&y, 2e-5, 2e-5, "normalize_rows");
    assert_close(&m, 1e-5, 1e-5, "normalize_rows mean");
    assert_close(&r, 1e-5, 1e-5, "normalize_rows rstd");
    /* The backward from the CPU's y and rstd on both sides. */
    g_autofree float *yc = g_new(float, y.n);
    g_autofree float *rc = g_new(float, r.n);
    lmn_tensor_read(y.c, yc, y.n * 4, NULL);
    lmn_tensor_read(r.c, rc, r.n * 4, NULL);
    lmn_tensor_write(y.v, yc, y.n * 4, NULL);
    lmn_tensor_write(r.v, rc, r.n * 4, NULL);
    lmn_op_normalize_rows_backward(y.c, r.c, dy.c, dx.c, rows, cols);
    lmn_op_normalize_rows_backward(y.v, r.v, dy.v, dx.v, rows, cols);
    assert_close(&dx, 2e-5, 2e-5, "normalize_rows_backward");
    /* In place: dx into dy. */
    lmn_op_normalize_rows_backward(y.c, r.c, dy.c, dy.c, rows, cols);
    lmn_op_normalize_rows_backward(y.v, r.v, dy.v, dy.v, rows, cols);
    assert_close(&dy, 2e-5, 2e-5, "normalize_rows_backward in place");
    sync_ok(vb);
    Pair *all[] = {&x, &y, &m, &r, &dy, &dx};
    for (guint i = 0; i < G_N_ELEMENTS(all); i++)
        pair_free(all[i]);
}

static void check_clamp_backward(LmnBackend *vb, gint64 n)
{
    Pair x = pair_1d(vb, LMN_DTYPE_F32, n, -2, 2), dy = pair_1d(vb, LMN_DTYPE_F32, n, -1, 1);
    Pair dx = pair_1d(vb, LMN_DTYPE_F32, n, 0, 1);
    const float edges[3] = {-1.0f, 1.0f, 0.0f};
    lmn_tensor_write(x.c, edges, sizeof edges, NULL);
    lmn_tensor_write(x.v, edges, sizeof edges, NULL);
    lmn_op_clamp_backward(x.c, dy.c, dx.c, -1.0f, 1.0f);
    lmn_op_clamp_backward(x.v, dy.v, dx.v, -1.0f, 1.0f);
    assert_close(&dx, 0, 0, "clamp_backward");
    sync_ok(vb);
    pair_free(&x);
    pair_free(&dy);
    pair_free(&dx);
}

static void test_normalize_clamp(void)
{
    const gint64 shapes[][2] = {{1, 1}, {3, 10}, {16, 49}, {7, 3000}, {300, 64}};
    for (guint s = 0; s < G_N_ELEMENTS(shapes); s++)
        check_normalize(vk, shapes[s][0], shapes[s][1]);
    check_clamp_backward(vk, 4001);
}

/* ---- top-k ---- */

static void check_topk(LmnBackend *vb, gint64 outer, gint64 axis, gint64 inner, gint64 k)
{
    LmnShape sx = lmn_shape_make(1, outer * axis * inner),
             sv = lmn_shape_make(1, outer * k * inner);
    Pair x = pair_new(vb, LMN_DTYPE_F32, &sx, -3, 3), v = pair_new(vb, LMN_DTYPE_F32, &sv, 0, 1);
    Pair idx = pair_new(vb, LMN_DTYPE_I32, &sv, 0, 0), dy = pair_new(vb, LMN_DTYPE_F32, &sv, -1, 1);
    Pair dx = pair_new(vb, LMN_DTYPE_F32, &sx, 0, 1);
    /* Values on a 0.5 grid, so ties are common; a NaN. */
    g_autofree float *h = g_new(float, x.n);
    lmn_tensor_read(x.c, h, x.n * 4, NULL);
    for (gsize i = 0; i < x.n; i++)
        h[i] = roundf(h[i] * 2) / 2;
    h[x.n / 2] = NAN;
    lmn_tensor_write(x.c, h, x.n * 4, NULL);
    lmn_tensor_write(x.v, h, x.n * 4, NULL);
    lmn_op_topk(x.c, v.c, idx.c, outer, axis, inner, k);
    lmn_op_topk(x.v, v.v, idx.v, outer, axis, inner, k);
    assert_close(&v, 0, 0, "topk values");
    assert_equal_i32(&idx, "topk indices");
    lmn_op_topk_backward(dy.c, idx.c, dx.c, outer, axis, inner, k);
    lmn_op_topk_backward(dy.v, idx.v, dx.v, outer, axis, inner, k);
    assert_close(&dx, 0, 0, "topk_backward");
    sync_ok(vb);
    Pair *all[] = {&x, &v, &idx, &dy, &dx};
    for (guint i = 0; i < G_N_ELEMENTS(all); i++)
        pair_free(all[i]);
}

static void test_topk(void)
{
    const gint64 shapes[][4] = {{1, 1, 1, 1}, {3, 7, 1, 3}, {2, 9, 4, 9}, {5, 100, 7, 5}};
    for (guint s = 0; s < G_N_ELEMENTS(shapes); s++)
        check_topk(vk, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3]);
}

/* ---- chunked ---- */

static void test_chunked(void)
{
    /* 1024 floats per binding: slices of 63 in 10 chunks. */
    check_reduce_axis(vk_small, 160, 7, 9);
    /* Runs of outer rows; rows at dim 0 too large (2000 floats): cut at dim 1; gradients of
     * operands broadcast along a cut dim accumulate over the runs. */
    const LmnShape pairs[][2] = {
        {lmn_shape_make(4, 16, 7, 9, 10), lmn_shape_make(4, 1, 7, 1, 10)},
        {lmn_shape_make(4, 16, 7, 9, 10), lmn_shape_make(4, 16, 1, 9, 1)},
        {lmn_shape_make(3, 3, 40, 50), lmn_shape_make(3, 3, 1, 50)},
        {lmn_shape_make(3, 1, 40, 50), lmn_shape_make(3, 3, 40, 1)},
        {lmn_shape_make(1, 5000), lmn_shape_make(1, 1)},
    };
    for (guint k = 0; k < G_N_ELEMENTS(pairs); k++)
        for (gint op = 0; op < LMN_BINARY_COUNT; op++)
            check_broadcast(vk_small, &pairs[k][0], &pairs[k][1], op);
    check_normalize(vk_small, 40, 300);
    check_clamp_backward(vk_small, 10007);
    check_topk(vk_small, 160, 7, 9, 4);

    /* An [axis, inner] slice larger than the range is refused, naming the op. */
    g_autoptr(GError) error = NULL;
    Pair x = pair_1d(vk_small, LMN_DTYPE_F32, 2 * 2000, -1, 1);
    Pair y = pair_1d(vk_small, LMN_DTYPE_F32, 2, 0, 1);
    lmn_op_reduce_axis(LMN_AXIS_SUM, x.v, y.v, NULL, 2, 2000, 1);
    g_assert_false(lmn_backend_synchronize(vk_small, &error));
    g_assert_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED);
    g_assert_nonnull(strstr(error->message, "reduce_axis"));
    g_assert_nonnull(strstr(error->message, "maxStorageBufferRange"));
    pair_free(&x);
    pair_free(&y);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    validating = lmn_vk_test_setup(&registry, &cpu);
    g_autoptr(GError) error = NULL;
    vk = open_vulkan(validating, &error);
    if (vk == NULL) {
        printf("1..0 # SKIP no Vulkan device 'lavapipe': %s\n", error->message);
        return 77;
    }
    g_setenv("LAMINA_VK_MAX_STORAGE_RANGE", "4096", TRUE);
    vk_small = open_vulkan(FALSE, &error);
    g_unsetenv("LAMINA_VK_MAX_STORAGE_RANGE");
    g_assert_no_error(error);
    g_assert_nonnull(strstr(lmn_backend_describe(vk_small), "4096"));
    rng = g_rand_new_with_seed(20261202);

    g_test_add_func("/vulkan/ops-axis/reduce-axis", test_reduce_axis);
    g_test_add_func("/vulkan/ops-axis/broadcast", test_broadcast_patterns);
    g_test_add_func("/vulkan/ops-axis/normalize-clamp", test_normalize_clamp);
    g_test_add_func("/vulkan/ops-axis/topk", test_topk);
    g_test_add_func("/vulkan/ops-axis/chunked", test_chunked);

    int rc = g_test_run();
    lmn_backend_unref(vk_small);
    lmn_backend_unref(vk);
    lmn_backend_unref(cpu);
    lmn_registry_free(registry);
    g_rand_free(rng);
    return rc;
}
