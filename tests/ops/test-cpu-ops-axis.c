/* Tests of the CPU backend's ABI 1.3 ops: reductions over one axis, broadcasting binary ops and
 * their gradients, the ABI 1.3 unary functions, row normalisation and the clamp gradient.
 *
 * Oracles: PyTorch values in tests/fixtures/ops-axis.h5 (scripts/make-axis-op-fixtures.py),
 * which cover every pattern of broadcast axes for 1- to 4-D shapes; double-precision
 * references written here for shapes large enough to use the thread pool; and bitwise equality
 * between 1 and 3 threads; top-k against torch.topk (the sums have a fixed order).  Also:
 * mismatched broadcast shapes are refused with a message naming both shapes, and a backend without
 * the ops reports UNSUPPORTED naming the op.
 */
#include <lamina/lamina.h>

#include <hdf5.h>
#include <math.h>
#include <string.h>

static LmnRegistry *registry;
static LmnBackend *backend;   /* threads = 3 */
static LmnBackend *backend_1; /* threads = 1 */
static GRand *rng;
static hid_t fixture;

/* ---- helpers ---- */

static LmnBackend *open_cpu(const char *threads)
{
    g_autoptr(GError) error = NULL;
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_BACKEND, "cpu", &error);
    g_assert_no_error(error);
    const char *keys[] = {"threads", NULL};
    const char *values[] = {threads, NULL};
    LmnParams *params = lmn_registry_validate_params(f, keys, values, "test-cpu-ops-axis", &error);
    g_assert_no_error(error);
    LmnBackend *b = lmn_backend_new(registry, "cpu", params, NULL, &error);
    g_assert_no_error(error);
    lmn_params_unref(params);
    return b;
}

static LmnTensor *tensor_shaped(LmnBackend *be, LmnDType dtype, const LmnShape *shape,
                                const void *data)
{
    g_autoptr(GError) error = NULL;
    LmnTensor *t = lmn_tensor_new(be, dtype, shape, &error);
    g_assert_no_error(error);
    if (data != NULL && lmn_shape_numel(shape) > 0) {
        lmn_tensor_write(t, data, (gsize) lmn_shape_numel(shape) * 4, &error);
        g_assert_no_error(error);
    }
    return t;
}

static LmnTensor *tensor_n(LmnBackend *be, LmnDType dtype, gint64 n, const void *data)
{
    LmnShape s = lmn_shape_make(1, n);
    return tensor_shaped(be, dtype, &s, data);
}

static gpointer read_all(LmnTensor *t)
{
    g_autoptr(GError) error = NULL;
    const gsize n = (gsize) lmn_shape_numel(&t->shape);
    gpointer v = g_malloc(MAX(n, 1) * 4);
    lmn_tensor_read(t, v, n * 4, &error);
    g_assert_no_error(error);
    return v;
}

static float *random_floats(gsize n, double lo, double hi)
{
    float *v = g_new(float, MAX(n, 1));
    for (gsize i = 0; i < n; i++)
        v[i] = (float) g_rand_double_range(rng, lo, hi);
    return v;
}

/* |got - want| <= atol + rtol |want| element-wise; NaN only where want is NaN. */
static void assert_close(const char *what, const float *got, const float *want, gsize n,
                         double atol, double rtol)
{
    for (gsize i = 0; i < n; i++) {
        if ((isnan(got[i]) && isnan(want[i])) || got[i] == want[i])
            continue;
        if (!(fabs((double) got[i] - want[i]) <= atol + rtol * fabs((double) want[i])))
            g_error("%s: element %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT ": got %.9g, want %.9g",
                    what, i, n, got[i], want[i]);
    }
}

static void assert_tensor_close(const char *what, LmnTensor *t, const float *want, double atol,
                                double rtol)
{
    g_autofree float *got = read_all(t);
    assert_close(what, got, want, (gsize) lmn_shape_numel(&t->shape), atol, rtol);
}

/* ---- fixtures ---- */

static gpointer read_dataset(hid_t group, const char *name, hid_t mem_type, LmnShape *shape)
{
    hid_t dset = H5Dopen2(group, name, H5P_DEFAULT);
    g_assert_cmpint(dset, >=, 0);
    hid_t space = H5Dget_space(dset);
    int ndim = H5Sget_simple_extent_ndims(space);
    g_assert_cmpint(ndim, >=, 0);
    g_assert_cmpint(ndim, <=, LMN_MAX_DIMS);
    hsize_t dims[LMN_MAX_DIMS];
    H5Sget_simple_extent_dims(space, dims, NULL);
    shape->ndim = (guint) ndim;
    for (int d = 0; d < ndim; d++)
        shape->dims[d] = (gint64) dims[d];
    gpointer data = g_malloc(MAX(lmn_shape_numel(shape), 1) * 4);
    g_assert_cmpint(H5Dread(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), >=, 0);
    H5Sclose(space);
    H5Dclose(dset);
    return data;
}

static float *read_f32(hid_t group, const char *name, LmnShape *shape)
{
    LmnShape ignored;
    return read_dataset(group, name, H5T_NATIVE_FLOAT, shape != NULL ? shape : &ignored);
}

static double read_attr(hid_t group, const char *name)
{
    hid_t attr = H5Aopen(group, name, H5P_DEFAULT);
    g_assert_cmpint(attr, >=, 0);
    double v = 0;
    g_assert_cmpint(H5Aread(attr, H5T_NATIVE_DOUBLE, &v), >=, 0);
    H5Aclose(attr);
    return v;
}

typedef void (*CaseFunc)(hid_t group, const char *name);

static herr_t visit_case(hid_t parent, const char *name, const H5L_info_t *info, void *data)
{
    hid_t g = H5Gopen2(parent, name, H5P_DEFAULT);
    g_assert_cmpint(g, >=, 0);
    (*(CaseFunc *) data)(g, name);
    H5Gclose(g);
    return 0;
}

/* Runs @func on every case group of /@section; Returns: the number of cases. */
static guint for_each_case(const char *section, CaseFunc func)
{
    hid_t g = H5Gopen2(fixture, section, H5P_DEFAULT);
    g_assert_cmpint(g, >=, 0);
    hsize_t idx = 0;
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, visit_case, &func);
    H5Gclose(g);
    return (guint) idx;
}

/* ---- unary ---- */

static void unary_case(hid_t g, const char *name)
{
    const LmnUnaryOp op = (LmnUnaryOp) read_attr(g, "op");
    LmnShape s;
    g_autofree float *x = read_f32(g, "x", &s);
    g_autofree float *dy = read_f32(g, "dy", NULL);
    g_autofree float *y = read_f32(g, "y", NULL);
    g_autofree float *dx = read_f32(g, "dx", NULL);
    LmnTensor *tx = tensor_shaped(backend, LMN_DTYPE_F32, &s, x);
    LmnTensor *ty = tensor_shaped(backend, LMN_DTYPE_F32, &s, NULL);
    LmnTensor *tdy = tensor_shaped(backend, LMN_DTYPE_F32, &s, dy);
    LmnTensor *tdx = tensor_shaped(backend, LMN_DTYPE_F32, &s, NULL);
    lmn_op_unary(op, tx, ty, 0.0f);
    g_autofree char *fw = g_strdup_printf("unary %s", name);
    assert_tensor_close(fw, ty, y, 1e-6, 4e-6);
    lmn_op_unary_backward(op, tx, ty, tdy, tdx, 0.0f);
    g_autofree char *bw = g_strdup_printf("unary %s backward", name);
    assert_tensor_close(bw, tdx, dx, 1e-6, 1e-5);
    /* In place: y = f(x) into x, and dx into dy. */
    lmn_op_unary_backward(op, tx, ty, tdy, tdy, 0.0f);
    assert_tensor_close(bw, tdy, dx, 1e-6, 1e-5);
    lmn_op_unary(op, tx, tx, 0.0f);
    assert_tensor_close(fw, tx, y, 1e-6, 4e-6);
    lmn_tensor_unref(tx);
    lmn_tensor_unref(ty);
    lmn_tensor_unref(tdy);
    lmn_tensor_unref(tdx);
}

static void test_unary(void)
{
    g_assert_cmpuint(for_each_case("unary", unary_case), ==, LMN_UNARY_COUNT - LMN_UNARY_SQRT);
}

/* ---- axis reductions ---- */

static void reduce_case_on(LmnBackend *be, hid_t g, const char *name)
{
    const LmnAxisReduceOp op = (LmnAxisReduceOp) read_attr(g, "op");
    const gint64 outer = (gint64) read_attr(g, "outer"), axis = (gint64) read_attr(g, "axis"),
                 inner = (gint64) read_attr(g, "inner");
    LmnShape sx, sy;
    g_autofree float *x = read_f32(g, "x", &sx);
    g_autofree float *y = read_f32(g, "y", &sy);
    g_autofree float *dy = read_f32(g, "dy", NULL);
    g_autofree float *dx = read_f32(g, "dx", NULL);
    LmnTensor *tx = tensor_shaped(be, LMN_DTYPE_F32, &sx, x);
    LmnTensor *ty = tensor_shaped(be, LMN_DTYPE_F32, &sy, NULL);
    LmnTensor *tdy = tensor_shaped(be, LMN_DTYPE_F32, &sy, dy);
    LmnTensor *tdx = tensor_shaped(be, LMN_DTYPE_F32, &sx, NULL);
    LmnTensor *ti = tensor_shaped(be, LMN_DTYPE_I32, &sy, NULL);
    lmn_op_reduce_axis(op, tx, ty, ti, outer, axis, inner);
    assert_tensor_close(name, ty, y, 1e-6, 1e-6);
    if (op == LMN_AXIS_MAX) {
        LmnShape si;
        g_autofree gint32 *want = read_dataset(g, "idx", H5T_NATIVE_INT32, &si);
        g_autofree gint32 *got = read_all(ti);
        g_assert_cmpmem(got, lmn_shape_numel(&si) * 4, want, lmn_shape_numel(&si) * 4);
    }
    lmn_op_reduce_axis_backward(op, tdy, ti, tdx, outer, axis, inner);
    g_autofree char *bw = g_strdup_printf("%s backward", name);
    assert_tensor_close(bw, tdx, dx, 1e-7, 1e-6);
    LmnTensor *all[] = {tx, ty, tdy, tdx, ti};
    for (guint i = 0; i < G_N_ELEMENTS(all); i++)
        lmn_tensor_unref(all[i]);
}

static void reduce_case(hid_t g, const char *name)
{
    reduce_case_on(backend, g, name);
    reduce_case_on(backend_1, g, name);
}

/* Large enough for the pool: equal bitwise on 1 and 3 threads, and to a double reference. */
static void test_reduce_axis_large(void)
{
    const gint64 outer = 6, axis = 301, inner = 97, n = outer * axis * inner;
    g_autofree float *x = random_floats((gsize) n, -2, 2);
    for (gint op = 0; op < LMN_AXIS_COUNT; op++) {
        float *got[2] = {NULL, NULL};
        for (guint t = 0; t < 2; t++) {
            LmnBackend *be = t == 0 ? backend : backend_1;
            LmnTensor *tx = tensor_n(be, LMN_DTYPE_F32, n, x);
            LmnTensor *ty = tensor_n(be, LMN_DTYPE_F32, outer * inner, NULL);
            LmnTensor *ti = tensor_n(be, LMN_DTYPE_I32, outer * inner, NULL);
            lmn_op_reduce_axis(op, tx, ty, ti, outer, axis, inner);
            got[t] = read_all(ty);
            lmn_tensor_unref(tx);
            lmn_tensor_unref(ty);
            lmn_tensor_unref(ti);
        }
        g_assert_cmpmem(got[0], outer * inner * 4, got[1], outer * inner * 4);
        g_autofree float *want = g_new(float, outer *inner);
        for (gint64 o = 0; o < outer; o++)
            for (gint64 i = 0; i < inner; i++) {
                double s = 0, m = -INFINITY;
                for (gint64 a = 0; a < axis; a++) {
                    s += x[(o * axis + a) * inner + i];
                    m = MAX(m, x[(o * axis + a) * inner + i]);
                }
                want[o * inner + i] = (float) (op == LMN_AXIS_SUM    ? s
                                               : op == LMN_AXIS_MEAN ? s / (double) axis
                                                                     : m);
            }
        assert_close("reduce_axis large", got[0], want, (gsize) (outer * inner), 1e-6, 1e-6);
        g_free(got[0]);
        g_free(got[1]);
    }
}

static void test_reduce_axis(void)
{
    g_assert_cmpuint(for_each_case("reduce", reduce_case), >=, 20);
}

/* ---- broadcasting ---- */

static void bcast_case(hid_t g, const char *name)
{
    const LmnBinaryOp op = (LmnBinaryOp) read_attr(g, "op");
    LmnShape sa, sb, so;
    g_autofree float *a = read_f32(g, "a", &sa);
    g_autofree float *b = read_f32(g, "b", &sb);
    g_autofree float *out = read_f32(g, "out", &so);
    g_autofree float *dy = read_f32(g, "dy", NULL);
    g_autofree float *da = read_f32(g, "da", NULL);
    g_autofree float *db = read_f32(g, "db", NULL);
    g_autoptr(GError) error = NULL;
    LmnBroadcast bc;
    g_assert_true(lmn_broadcast_init(&bc, &sa, &sb, &error));
    g_assert_no_error(error);
    LmnShape got_shape = lmn_broadcast_out_shape(&bc);
    g_assert_true(lmn_shape_equal(&got_shape, &so));
    for (guint t = 0; t < 2; t++) {
        LmnBackend *be = t == 0 ? backend : backend_1;
        LmnTensor *ta = tensor_shaped(be, LMN_DTYPE_F32, &sa, a);
        LmnTensor *tb = tensor_shaped(be, LMN_DTYPE_F32, &sb, b);
        LmnTensor *to = tensor_shaped(be, LMN_DTYPE_F32, &so, NULL);
        LmnTensor *tdy = tensor_shaped(be, LMN_DTYPE_F32, &so, dy);
        LmnTensor *tda = tensor_shaped(be, LMN_DTYPE_F32, &sa, NULL);
        LmnTensor *tdb = tensor_shaped(be, LMN_DTYPE_F32, &sb, NULL);
        lmn_op_binary_broadcast(op, ta, tb, to, &bc);
        assert_tensor_close(name, to, out, 1e-6, 1e-6);
        lmn_op_binary_broadcast_backward(op, ta, tb, tdy, tda, tdb, &bc);
        g_autofree char *wa = g_strdup_printf("%s da", name);
        g_autofree char *wb = g_strdup_printf("%s db", name);
        assert_tensor_close(wa, tda, da, 1e-6, 1e-5);
        assert_tensor_close(wb, tdb, db, 1e-6, 1e-5);
        if (op == LMN_BINARY_ADD) {
            /* reduce_to_shape is the ADD gradient. */
            lmn_op_fill(tda, NAN);
            lmn_op_reduce_to_shape(tdy, tda, &bc);
            assert_tensor_close("reduce_to_shape", tda, da, 1e-6, 1e-5);
        }
        if (lmn_shape_equal(&sa, &so)) {
            /* out may alias a when a has the output's shape. */
            lmn_op_binary_broadcast(op, ta, tb, ta, &bc);
            assert_tensor_close("out = a", ta, out, 1e-6, 1e-6);
        }
        LmnTensor *all[] = {ta, tb, to, tdy, tda, tdb};
        for (guint i = 0; i < G_N_ELEMENTS(all); i++)
            lmn_tensor_unref(all[i]);
    }
}

static void test_broadcast(void)
{
    /* 3 + 9 + 27 + 81 axis patterns, plus the 5-D, rank, scalar, U-Net and tie cases. */
    g_assert_cmpuint(for_each_case("bcast", bcast_case), >=, 120 + 24 + 2);
}

/* The pool path: a large U-Net-like operand pair, equal on 1 and 3 threads bitwise. */
static void test_broadcast_large(void)
{
    LmnShape sx = lmn_shape_make(4, 16, 32, 28, 28), sw = lmn_shape_make(4, 1, 32, 1, 1);
    LmnShape sr = lmn_shape_make(4, 16, 1, 28, 28);
    const LmnShape *others[] = {&sw, &sr};
    const gsize n = 16 * 32 * 28 * 28;
    g_autofree float *x = random_floats(n, -2, 2);
    g_autofree float *dy = random_floats(n, -1, 1);
    g_autofree float *w = random_floats(n / 16, 0.5, 2);
    for (guint k = 0; k < G_N_ELEMENTS(others); k++)
        for (gint op = 0; op < LMN_BINARY_COUNT; op++) {
            LmnBroadcast bc;
            g_assert_true(lmn_broadcast_init(&bc, &sx, others[k], NULL));
            float *got[2][3] = {{NULL}};
            for (guint t = 0; t < 2; t++) {
                LmnBackend *be = t == 0 ? backend : backend_1;
                LmnTensor *ta = tensor_shaped(be, LMN_DTYPE_F32, &sx, x);
                LmnTensor *tb = tensor_shaped(be, LMN_DTYPE_F32, others[k], w);
                LmnTensor *to = tensor_shaped(be, LMN_DTYPE_F32, &sx, NULL);
                LmnTensor *tdy = tensor_shaped(be, LMN_DTYPE_F32, &sx, dy);
                LmnTensor *tda = tensor_shaped(be, LMN_DTYPE_F32, &sx, NULL);
                LmnTensor *tdb = tensor_shaped(be, LMN_DTYPE_F32, others[k], NULL);
                lmn_op_binary_broadcast(op, ta, tb, to, &bc);
                lmn_op_binary_broadcast_backward(op, ta, tb, tdy, tda, tdb, &bc);
                got[t][0] = read_all(to);
                got[t][1] = read_all(tda);
                got[t][2] = read_all(tdb);
                LmnTensor *all[] = {ta, tb, to, tdy, tda, tdb};
                for (guint i = 0; i < G_N_ELEMENTS(all); i++)
                    lmn_tensor_unref(all[i]);
            }
            g_assert_cmpmem(got[0][0], n * 4, got[1][0], n * 4);
            g_assert_cmpmem(got[0][1], n * 4, got[1][1], n * 4);
            const gsize nb = (gsize) lmn_shape_numel(others[k]);
            g_assert_cmpmem(got[0][2], nb * 4, got[1][2], nb * 4);
            if (op == LMN_BINARY_MUL && k == 0) {
                /* db[c] = sum over n, h, w of dy x, against a double reference. */
                g_autofree float *want = g_new(float, 32);
                for (gsize ch = 0; ch < 32; ch++) {
                    double s = 0;
                    for (gsize b0 = 0; b0 < 16; b0++)
                        for (gsize p = 0; p < 784; p++) {
                            const gsize i = (b0 * 32 + ch) * 784 + p;
                            s += (double) dy[i] * x[i];
                        }
                    want[ch] = (float) s;
                }
                assert_close("mul db large", got[0][2], want, 32, 1e-5, 1e-5);
            }
            for (guint t = 0; t < 2; t++)
                for (guint i = 0; i < 3; i++)
                    g_free(got[t][i]);
        }
}

static void test_broadcast_errors(void)
{
    g_autoptr(GError) error = NULL;
    LmnBroadcast bc;
    LmnShape a = lmn_shape_make(2, 2, 3), b = lmn_shape_make(2, 4, 3);
    g_assert_false(lmn_broadcast_init(&bc, &a, &b, &error));
    g_assert_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED);
    g_assert_nonnull(strstr(error->message, "[2, 3]"));
    g_assert_nonnull(strstr(error->message, "[4, 3]"));
    g_assert_nonnull(strstr(error->message, "equal or 1"));
    g_clear_error(&error);
    LmnShape c = lmn_shape_make(3, 5, 1, 3), d = lmn_shape_make(1, 4);
    g_assert_false(lmn_broadcast_init(&bc, &c, &d, &error));
    g_assert_nonnull(strstr(error->message, "dimension 1 from the right"));
    g_clear_error(&error);
    /* Overflowing output sizes are refused, not wrapped. */
    LmnShape e = lmn_shape_make(2, G_MAXINT64 / 4, 1), f = lmn_shape_make(2, 1, 1 << 20);
    g_assert_false(lmn_broadcast_init(&bc, &e, &f, &error));
    g_assert_nonnull(strstr(error->message, "too many elements"));
    g_clear_error(&error);
    /* Compatible: [5, 1, 3] and [4, 1] give [5, 4, 3]. */
    LmnShape h = lmn_shape_make(2, 4, 1);
    g_assert_true(lmn_broadcast_init(&bc, &c, &h, &error));
    LmnShape o = lmn_broadcast_out_shape(&bc), want = lmn_shape_make(3, 5, 4, 3);
    g_assert_true(lmn_shape_equal(&o, &want));
}

/* ---- row normalisation, clamp gradient ---- */

static void norm_case(hid_t g, const char *name)
{
    const float eps = (float) read_attr(g, "eps");
    LmnShape s, sr;
    g_autofree float *x = read_f32(g, "x", &s);
    g_autofree float *y = read_f32(g, "y", NULL);
    g_autofree float *mean = read_f32(g, "mean", &sr);
    g_autofree float *rstd = read_f32(g, "rstd", NULL);
    g_autofree float *dy = read_f32(g, "dy", NULL);
    g_autofree float *dx = read_f32(g, "dx", NULL);
    const gint64 rows = s.dims[0], cols = s.dims[1];
    LmnTensor *tx = tensor_shaped(backend, LMN_DTYPE_F32, &s, x);
    LmnTensor *ty = tensor_shaped(backend, LMN_DTYPE_F32, &s, NULL);
    LmnTensor *tm = tensor_shaped(backend, LMN_DTYPE_F32, &sr, NULL);
    LmnTensor *tr = tensor_shaped(backend, LMN_DTYPE_F32, &sr, NULL);
    LmnTensor *tdy = tensor_shaped(backend, LMN_DTYPE_F32, &s, dy);
    LmnTensor *tdx = tensor_shaped(backend, LMN_DTYPE_F32, &s, NULL);
    lmn_op_normalize_rows(tx, ty, tm, tr, rows, cols, eps);
    assert_tensor_close(name, ty, y, 2e-6, 2e-6);
    assert_tensor_close("mean", tm, mean, 1e-6, 1e-6);
    assert_tensor_close("rstd", tr, rstd, 1e-6, 1e-6);
    lmn_op_normalize_rows_backward(ty, tr, tdy, tdx, rows, cols);
    assert_tensor_close("normalize_rows backward", tdx, dx, 2e-5, 2e-5);
    lmn_op_normalize_rows_backward(ty, tr, tdy, tdy, rows, cols); /* dx may be dy */
    assert_tensor_close("normalize_rows backward in place", tdy, dx, 2e-5, 2e-5);
    lmn_op_normalize_rows(tx, tx, tm, tr, rows, cols, eps); /* y may be x */
    assert_tensor_close("normalize_rows in place", tx, y, 2e-6, 2e-6);
    LmnTensor *all[] = {tx, ty, tm, tr, tdy, tdx};
    for (guint i = 0; i < G_N_ELEMENTS(all); i++)
        lmn_tensor_unref(all[i]);
}

static void test_normalize_rows(void)
{
    g_assert_cmpuint(for_each_case("norm", norm_case), >=, 4);
}

static void clamp_case(hid_t g, const char *name)
{
    const float lo = (float) read_attr(g, "lo"), hi = (float) read_attr(g, "hi");
    LmnShape s;
    g_autofree float *x = read_f32(g, "x", &s);
    g_autofree float *dy = read_f32(g, "dy", NULL);
    g_autofree float *y = read_f32(g, "y", NULL);
    g_autofree float *dx = read_f32(g, "dx", NULL);
    LmnTensor *tx = tensor_shaped(backend, LMN_DTYPE_F32, &s, x);
    LmnTensor *tdy = tensor_shaped(backend, LMN_DTYPE_F32, &s, dy);
    LmnTensor *tdx = tensor_shaped(backend, LMN_DTYPE_F32, &s, NULL);
    lmn_op_clamp_backward(tx, tdy, tdx, lo, hi);
    assert_tensor_close(name, tdx, dx, 0, 0);
    lmn_op_clamp(tx, lo, hi);
    assert_tensor_close(name, tx, y, 0, 0);
    lmn_tensor_unref(tx);
    lmn_tensor_unref(tdy);
    lmn_tensor_unref(tdx);
}

static void test_clamp_backward(void)
{
    g_assert_cmpuint(for_each_case("clamp", clamp_case), ==, 2);
}

/* ---- top-k ---- */

static void topk_case(hid_t g, const char *name)
{
    const gint64 outer = (gint64) read_attr(g, "outer"), axis = (gint64) read_attr(g, "axis"),
                 inner = (gint64) read_attr(g, "inner"), k = (gint64) read_attr(g, "k");
    LmnShape sx, sv;
    g_autofree float *x = read_f32(g, "x", &sx);
    g_autofree float *values = read_f32(g, "values", &sv);
    g_autofree gint32 *idx = read_dataset(g, "idx", H5T_NATIVE_INT32, &sv);
    g_autofree float *dy = read_f32(g, "dy", NULL);
    g_autofree float *dx = read_f32(g, "dx", NULL);
    for (guint t = 0; t < 2; t++) {
        LmnBackend *be = t == 0 ? backend : backend_1;
        LmnTensor *tx = tensor_shaped(be, LMN_DTYPE_F32, &sx, x);
        LmnTensor *tv = tensor_shaped(be, LMN_DTYPE_F32, &sv, NULL);
        LmnTensor *ti = tensor_shaped(be, LMN_DTYPE_I32, &sv, NULL);
        LmnTensor *tdy = tensor_shaped(be, LMN_DTYPE_F32, &sv, dy);
        LmnTensor *tdx = tensor_shaped(be, LMN_DTYPE_F32, &sx, NULL);
        lmn_op_fill(tdx, NAN); /* must be overwritten */
        lmn_op_topk(tx, tv, ti, outer, axis, inner, k);
        assert_tensor_close(name, tv, values, 0, 0);
        g_autofree gint32 *got = read_all(ti);
        g_assert_cmpmem(got, lmn_shape_numel(&sv) * 4, idx, lmn_shape_numel(&sv) * 4);
        lmn_op_topk_backward(tdy, ti, tdx, outer, axis, inner, k);
        assert_tensor_close("topk backward", tdx, dx, 0, 0);
        LmnTensor *all[] = {tx, tv, ti, tdy, tdx};
        for (guint i = 0; i < G_N_ELEMENTS(all); i++)
            lmn_tensor_unref(all[i]);
    }
}

static void test_topk(void)
{
    g_assert_cmpuint(for_each_case("topk", topk_case), ==, 5);
}

/* ---- a backend without the ABI 1.3 ops ---- */

static LmnBackend *open_fake(void)
{
    g_autoptr(GError) error = NULL;
    if (lmn_registry_lookup(registry, LMN_FEATURE_BACKEND, "test_fake", NULL) == NULL) {
        g_autofree char *plugin =
            g_build_filename(TEST_PLUGIN_DIR, "lamina-test-backends.so", NULL);
        g_assert_true(lmn_registry_load_file(registry, plugin, &error));
    }
    LmnBackend *b = lmn_backend_new(registry, "test_fake", NULL, NULL, &error);
    g_assert_no_error(error);
    return b;
}

static void expect_unsupported(LmnBackend *b, const char *op)
{
    g_autoptr(GError) error = NULL;
    g_assert_false(lmn_backend_synchronize(b, &error));
    g_assert_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED);
    if (strstr(error->message, op) == NULL)
        g_error("'%s' not named in: %s", op, error->message);
}

static void test_unsupported(void)
{
    const char *ops[] = {"'reduce_axis'", "'binary_broadcast'", "'normalize_rows'",
                         "unary (an ABI 1.3 function)", "'binary_broadcast'"};
    for (guint k = 0; k < G_N_ELEMENTS(ops); k++) {
        LmnBackend *b = open_fake();
        LmnTensor *t = tensor_n(b, LMN_DTYPE_F32, 6, NULL);
        LmnTensor *r = tensor_n(b, LMN_DTYPE_F32, 2, NULL);
        LmnBroadcast bc;
        g_assert_true(lmn_broadcast_init(&bc, &t->shape, &t->shape, NULL));
        if (k == 0)
            lmn_op_reduce_axis(LMN_AXIS_SUM, t, r, NULL, 2, 3, 1);
        else if (k == 1)
            lmn_op_binary_broadcast(LMN_BINARY_ADD, t, t, t, &bc);
        else if (k == 2)
            lmn_op_normalize_rows(t, t, r, r, 2, 3, 1e-5f);
        else if (k == 3)
            lmn_op_unary(LMN_UNARY_SILU, t, t, 0.0f);
        else
            lmn_op_binary(LMN_BINARY_DIV, t, t, t); /* routed through binary_broadcast */
        expect_unsupported(b, ops[k]);
        lmn_tensor_unref(t);
        lmn_tensor_unref(r);
        lmn_backend_unref(b);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    registry = lmn_registry_new();
    g_autoptr(GError) error = NULL;
    lmn_registry_scan(registry, &error);
    g_assert_no_error(error);
    backend = open_cpu("3");
    backend_1 = open_cpu("1");
    rng = g_rand_new_with_seed(20261202);
    const char *dir = g_getenv("LMN_TEST_FIXTURES");
    if (dir == NULL)
        g_error("LMN_TEST_FIXTURES is not set: run this test through meson test");
    g_autofree char *path = g_build_filename(dir, "ops-axis.h5", NULL);
    fixture = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (fixture < 0)
        g_error("cannot open %s: regenerate it with scripts/make-axis-op-fixtures.py", path);

    g_test_add_func("/ops/cpu/axis/unary", test_unary);
    g_test_add_func("/ops/cpu/axis/reduce-axis", test_reduce_axis);
    g_test_add_func("/ops/cpu/axis/reduce-axis/large", test_reduce_axis_large);
    g_test_add_func("/ops/cpu/axis/broadcast", test_broadcast);
    g_test_add_func("/ops/cpu/axis/broadcast/large", test_broadcast_large);
    g_test_add_func("/ops/cpu/axis/broadcast/errors", test_broadcast_errors);
    g_test_add_func("/ops/cpu/axis/normalize-rows", test_normalize_rows);
    g_test_add_func("/ops/cpu/axis/clamp-backward", test_clamp_backward);
    g_test_add_func("/ops/cpu/axis/topk", test_topk);
    g_test_add_func("/ops/axis/unsupported", test_unsupported);

    int rc = g_test_run();
    H5Fclose(fixture);
    lmn_backend_unref(backend);
    lmn_backend_unref(backend_1);
    lmn_registry_free(registry);
    g_rand_free(rng);
    return rc;
}
