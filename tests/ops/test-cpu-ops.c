/* Tests of the CPU backend's op set, tensors and the backend wrapper.
 *
 * Every op is compared with a naive double-precision reference written here, on random inputs of
 * several shapes: odd sizes, and sizes large enough that the backend splits the loop across its
 * thread pool.  The backend is opened with 3 threads so the pool is used even on small machines.
 * Gradients are also checked against central finite differences of the double reference.
 */
#include <lamina/lamina.h>

#include <math.h>
#include <string.h>

/* Sizes above the CPU backend's parallel threshold (32768 elements) use the pool. */
#define BIG 100003

static LmnRegistry *registry;
static LmnBackend *backend;   /* threads = 3 */
static LmnBackend *backend_1; /* threads = 1, for thread-count independence */
static GRand *rng;

/* ---- helpers ---- */

/* Loads lamina-test-backends.so (feature "test_fake") once. */
static void load_fake_backends(void)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *plugin = g_build_filename(TEST_PLUGIN_DIR, "lamina-test-backends.so", NULL);
    if (lmn_registry_lookup(registry, LMN_FEATURE_BACKEND, "test_fake", NULL) == NULL) {
        g_assert_true(lmn_registry_load_file(registry, plugin, &error));
        g_assert_no_error(error);
    }
}

static const LmnFeature *cpu_feature(void)
{
    g_autoptr(GError) error = NULL;
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_BACKEND, "cpu", &error);
    g_assert_no_error(error);
    g_assert_nonnull(f);
    return f;
}

static LmnBackend *open_cpu(const char *threads)
{
    g_autoptr(GError) error = NULL;
    const char *keys[] = {"threads", NULL};
    const char *values[] = {threads, NULL};
    LmnParams *params =
        lmn_registry_validate_params(cpu_feature(), keys, values, "test-cpu-ops", &error);
    g_assert_no_error(error);
    LmnBackend *b = lmn_backend_new(registry, "cpu", params, NULL, &error);
    g_assert_no_error(error);
    g_assert_nonnull(b);
    lmn_params_unref(params);
    return b;
}

static float *random_floats(gsize n, double lo, double hi)
{
    float *v = g_new(float, MAX(n, 1));
    for (gsize i = 0; i < n; i++)
        v[i] = (float) g_rand_double_range(rng, lo, hi);
    return v;
}

static LmnTensor *tensor_on(LmnBackend *be, gint64 n, const float *data)
{
    g_autoptr(GError) error = NULL;
    LmnShape shape = lmn_shape_make(1, n);
    LmnTensor *t = lmn_tensor_new(be, LMN_DTYPE_F32, &shape, &error);
    g_assert_no_error(error);
    if (data != NULL) {
        lmn_tensor_write(t, data, (gsize) n * sizeof(float), &error);
        g_assert_no_error(error);
    }
    return t;
}

static LmnTensor *tensor_f32(gint64 n, const float *data)
{
    return tensor_on(backend, n, data);
}

static LmnTensor *tensor_2d(gint64 rows, gint64 cols, const float *data)
{
    g_autoptr(GError) error = NULL;
    LmnShape shape = lmn_shape_make(2, rows, cols);
    LmnTensor *t = lmn_tensor_new(backend, LMN_DTYPE_F32, &shape, &error);
    g_assert_no_error(error);
    lmn_tensor_write(t, data, (gsize) (rows * cols) * sizeof(float), &error);
    g_assert_no_error(error);
    return t;
}

static LmnTensor *tensor_i32(gint64 n, const gint32 *data)
{
    g_autoptr(GError) error = NULL;
    LmnShape shape = lmn_shape_make(1, n);
    LmnTensor *t = lmn_tensor_new(backend, LMN_DTYPE_I32, &shape, &error);
    g_assert_no_error(error);
    if (data != NULL) {
        lmn_tensor_write(t, data, (gsize) n * sizeof(gint32), &error);
        g_assert_no_error(error);
    }
    return t;
}

static float *read_all(LmnTensor *t)
{
    g_autoptr(GError) error = NULL;
    gsize n = (gsize) lmn_tensor_numel(t);
    float *v = g_new(float, MAX(n, 1));
    g_assert_true(lmn_tensor_read(t, v, n * sizeof(float), &error));
    g_assert_no_error(error);
    return v;
}

static float read_scalar(LmnTensor *t)
{
    g_autofree float *v = read_all(t);
    return v[0];
}

/* Asserts |got - want| <= atol + rtol * |want| element-wise, naming the first failure. */
static void assert_close(const char *what, const float *got, const double *want, gsize n,
                         double rtol, double atol)
{
    for (gsize i = 0; i < n; i++) {
        double err = fabs((double) got[i] - want[i]);
        if (!(err <= atol + rtol * fabs(want[i])))
            g_error("%s: element %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT
                    ": got %.9g, want %.9g (error %.3g)",
                    what, i, n, got[i], want[i], err);
    }
}

/* ---- tensors and the backend object ---- */

static void test_shapes(void)
{
    g_assert_cmpuint(lmn_dtype_size(LMN_DTYPE_F32), ==, 4);
    g_assert_cmpuint(lmn_dtype_size(LMN_DTYPE_I32), ==, 4);
    g_assert_cmpstr(lmn_dtype_name(LMN_DTYPE_F32), ==, "f32");
    g_assert_cmpstr(lmn_dtype_name(LMN_DTYPE_I32), ==, "i32");

    LmnShape s = lmn_shape_make(4, (gint64) 128, (gint64) 1, (gint64) 28, (gint64) 28);
    g_assert_cmpuint(s.ndim, ==, 4);
    g_assert_cmpint(lmn_shape_numel(&s), ==, 128 * 28 * 28);
    g_autofree char *str = lmn_shape_to_string(&s);
    g_assert_cmpstr(str, ==, "[128, 1, 28, 28]");

    LmnShape scalar = lmn_shape_make(0);
    g_assert_cmpint(lmn_shape_numel(&scalar), ==, 1);
    g_autofree char *sstr = lmn_shape_to_string(&scalar);
    g_assert_cmpstr(sstr, ==, "[]");

    LmnShape flat = lmn_shape_make(1, (gint64) 784);
    LmnShape batched = lmn_shape_prepend(&flat, 32);
    LmnShape want = lmn_shape_make(2, (gint64) 32, (gint64) 784);
    g_assert_true(lmn_shape_equal(&batched, &want));
    g_assert_false(lmn_shape_equal(&batched, &flat));
    LmnShape other = lmn_shape_make(2, (gint64) 32, (gint64) 783);
    g_assert_false(lmn_shape_equal(&batched, &other));

    /* Prepending to a full shape keeps LMN_MAX_DIMS dims. */
    LmnShape full = lmn_shape_make(5, (gint64) 1, (gint64) 2, (gint64) 3, (gint64) 4, (gint64) 5);
    LmnShape clamped = lmn_shape_prepend(&full, 9);
    g_assert_cmpuint(clamped.ndim, ==, LMN_MAX_DIMS);
    g_assert_cmpint(clamped.dims[0], ==, 9);
    g_assert_cmpint(clamped.dims[1], ==, 1);
}

/* Counts that do not fit: checked functions fail, lmn_shape_numel saturates, and a tensor past
 * LMN_TENSOR_MAX_BYTES is refused before the backend is asked. */
static void test_shape_sizes(void)
{
    gint64 numel = -1;
    gsize nbytes = 0;
    LmnShape s = lmn_shape_make(3, (gint64) 2, (gint64) 3, (gint64) 4);
    g_assert_true(lmn_shape_numel_checked(&s, &numel));
    g_assert_cmpint(numel, ==, 24);
    g_assert_true(lmn_shape_nbytes_checked(&s, LMN_DTYPE_I32, &nbytes));
    g_assert_cmpuint(nbytes, ==, 96);
    LmnShape scalar = lmn_shape_make(0);
    g_assert_true(lmn_shape_numel_checked(&scalar, &numel));
    g_assert_cmpint(numel, ==, 1);
    LmnShape empty = lmn_shape_make(2, (gint64) 0, G_MAXINT64);
    g_assert_true(lmn_shape_numel_checked(&empty, &numel));
    g_assert_cmpint(numel, ==, 0);

    /* 598407739 * 11001563 * 22416 is 784 modulo 2^64: it must not pass for 784. */
    LmnShape wraps = lmn_shape_make(3, (gint64) 598407739, (gint64) 11001563, (gint64) 22416);
    numel = -1;
    g_assert_false(lmn_shape_numel_checked(&wraps, &numel));
    g_assert_cmpint(numel, ==, -1); /* untouched on failure */
    g_assert_cmpint(lmn_shape_numel(&wraps), ==, G_MAXINT64);
    g_assert_false(lmn_shape_nbytes_checked(&wraps, LMN_DTYPE_F32, NULL));
    LmnShape negative = lmn_shape_make(2, (gint64) -1, (gint64) 4);
    g_assert_false(lmn_shape_numel_checked(&negative, NULL));

    /* The byte limit: the largest f32 count is accepted, one more is not. */
    const gint64 most = (gint64) (LMN_TENSOR_MAX_BYTES / 4);
    LmnShape at = lmn_shape_make(1, most), past = lmn_shape_make(1, most + 1);
    g_assert_true(lmn_shape_nbytes_checked(&at, LMN_DTYPE_F32, &nbytes));
    g_assert_cmpuint(nbytes, ==, (gsize) most * 4);
    g_assert_true(lmn_shape_numel_checked(&past, NULL));
    g_assert_false(lmn_shape_nbytes_checked(&past, LMN_DTYPE_F32, NULL));

    g_autoptr(GError) error = NULL;
    g_assert_null(lmn_tensor_new(backend, LMN_DTYPE_F32, &past, &error));
    g_assert_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_OUT_OF_MEMORY);
    g_assert_nonnull(strstr(error->message, "does not fit in the address space"));
    g_clear_error(&error);
    g_assert_null(lmn_tensor_new(backend, LMN_DTYPE_F32, &wraps, &error));
    g_assert_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_OUT_OF_MEMORY);
}

static void test_tensor_round_trip(void)
{
    g_autoptr(GError) error = NULL;
    const gint64 n = 1000;
    g_autofree float *data = random_floats(n, -1, 1);
    LmnShape shape = lmn_shape_make(2, (gint64) 10, (gint64) 100);
    LmnTensor *t = lmn_tensor_new(backend, LMN_DTYPE_F32, &shape, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_shape_equal(&t->shape, &shape));
    g_assert_cmpint(lmn_tensor_numel(t), ==, n);
    g_assert_cmpuint(lmn_tensor_nbytes(t), ==, n * 4);
    g_assert_true(t->backend == backend);
    g_assert_true(lmn_tensor_write(t, data, n * sizeof(float), &error));
    g_assert_no_error(error);

    g_autofree float *back = read_all(t);
    g_assert_cmpmem(back, n * sizeof(float), data, n * sizeof(float));

    /* A partial read and write touch only the leading elements. */
    float head[3];
    g_assert_true(lmn_tensor_read(t, head, sizeof head, &error));
    g_assert_cmpmem(head, sizeof head, data, sizeof head);
    const float ones[2] = {1.0f, 1.0f};
    g_assert_true(lmn_tensor_write(t, ones, sizeof ones, &error));
    g_autofree float *back2 = read_all(t);
    g_assert_cmpfloat(back2[0], ==, 1.0f);
    g_assert_cmpfloat(back2[1], ==, 1.0f);
    g_assert_cmpfloat(back2[2], ==, data[2]);

    /* host memory: the core's fast path sees the same bytes */
    float *host = lmn_backend_host_pointer(t);
    g_assert_nonnull(host);
    g_assert_true(((guintptr) host % 64) == 0);
    g_assert_cmpfloat(host[5], ==, data[5]);

    /* A tensor of zero elements is valid. */
    LmnShape empty = lmn_shape_make(2, (gint64) 0, (gint64) 10);
    LmnTensor *e = lmn_tensor_new(backend, LMN_DTYPE_F32, &empty, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(lmn_tensor_nbytes(e), ==, 0);
    g_assert_true(lmn_tensor_read(e, NULL, 0, &error));
    lmn_tensor_unref(e);

    lmn_tensor_unref(t);
}

static void test_tensor_views(void)
{
    g_autoptr(GError) error = NULL;
    const gint64 n = 120;
    g_autofree float *data = random_floats(n, -1, 1);
    LmnTensor *base = tensor_f32(n, data);

    LmnShape vshape = lmn_shape_make(2, (gint64) 4, (gint64) 10);
    LmnTensor *view = lmn_tensor_new_view(base, 30, &vshape);
    g_assert_nonnull(view);
    g_assert_true(view->base == base);
    g_assert_cmpint(lmn_tensor_numel(view), ==, 40);
    g_autofree float *vread = read_all(view);
    g_assert_cmpmem(vread, 40 * sizeof(float), data + 30, 40 * sizeof(float));
    g_assert_true((float *) lmn_backend_host_pointer(view) ==
                  (float *) lmn_backend_host_pointer(base) + 30);

    /* A view of a view points at the owner with the offsets added. */
    LmnShape v2shape = lmn_shape_make(1, (gint64) 5);
    LmnTensor *view2 = lmn_tensor_new_view(view, 12, &v2shape);
    g_assert_true(view2->base == base);
    g_autofree float *v2read = read_all(view2);
    g_assert_cmpmem(v2read, 5 * sizeof(float), data + 42, 5 * sizeof(float));

    /* Writes and ops through a view land in the base. */
    const float w[5] = {1, 2, 3, 4, 5};
    g_assert_true(lmn_tensor_write(view2, w, sizeof w, &error));
    lmn_op_fill(view, -7.0f);
    g_autofree float *all = read_all(base);
    for (gint64 i = 0; i < n; i++) {
        float want = (i >= 30 && i < 70) ? -7.0f : data[i];
        g_assert_cmpfloat(all[i], ==, want);
    }

    /* The views keep the memory alive after the owner's last direct reference goes. */
    lmn_tensor_unref(base);
    lmn_op_fill(view2, 3.0f);
    g_autofree float *after = read_all(view2);
    g_assert_cmpfloat(after[4], ==, 3.0f);
    LmnTensor *extra = lmn_tensor_ref(view);
    lmn_tensor_unref(extra);
    lmn_tensor_unref(view2);
    lmn_tensor_unref(view);
}

static void test_backend_object(void)
{
    g_autoptr(GError) error = NULL;
    g_assert_cmpstr(lmn_backend_get_name(backend), ==, "cpu");
    const char *desc = lmn_backend_describe(backend);
    g_assert_true(g_str_has_prefix(desc, "cpu: 3 threads, "));
    g_assert_true(g_str_has_prefix(lmn_backend_describe(backend_1), "cpu: 1 thread, "));
    g_assert_true(lmn_backend_synchronize(backend, &error));
    g_assert_no_error(error);

    const LmnBackendVTable *vt = lmn_backend_get_vtable(backend);
    g_assert_true(vt == cpu_feature()->desc->vtable);
    g_assert_nonnull(lmn_backend_get_context(backend));

    g_assert_true(LMN_VTABLE_HAS(vt, list_devices));
    gint auto_index = -5;
    GPtrArray *devices = vt->list_devices(NULL, &auto_index, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(devices->len, ==, 1);
    g_assert_cmpint(auto_index, ==, 0);
    const LmnDeviceInfo *d = devices->pdata[0];
    g_assert_cmpuint(d->struct_size, ==, sizeof(LmnDeviceInfo));
    g_assert_cmpint(d->type, ==, LMN_DEVICE_CPU);
    g_assert_true(d->name != NULL && d->name[0] != '\0');
    g_assert_cmpuint(d->memory_bytes, >, 0);
    g_ptr_array_unref(devices);

    LmnBackend *ref = lmn_backend_ref(backend);
    g_assert_true(ref == backend);
    lmn_backend_unref(ref);

    /* NULL params: the schema's defaults (threads = 0: one per core). */
    LmnBackend *defaults = lmn_backend_new(registry, "cpu", NULL, "cpu", &error);
    g_assert_no_error(error);
    g_autofree char *want = g_strdup_printf("cpu: %u thread", g_get_num_processors());
    g_assert_true(g_str_has_prefix(lmn_backend_describe(defaults), want));
    lmn_backend_unref(defaults);
}

/* ---- fill, copy ---- */

static void test_fill_copy(void)
{
    const gint64 sizes[] = {1, 7, 4096, BIG};
    for (gsize s = 0; s < G_N_ELEMENTS(sizes); s++) {
        gint64 n = sizes[s];
        g_autofree float *data = random_floats(n, -3, 3);
        LmnTensor *a = tensor_f32(n, data);
        LmnTensor *b = tensor_f32(n, NULL);
        lmn_op_fill(b, 2.5f);
        g_autofree float *bv = read_all(b);
        for (gint64 i = 0; i < n; i++)
            g_assert_cmpfloat(bv[i], ==, 2.5f);
        lmn_op_copy(b, a);
        g_autofree float *cv = read_all(b);
        g_assert_cmpmem(cv, n * sizeof(float), data, n * sizeof(float));

        LmnTensor *ints = tensor_i32(n, NULL);
        lmn_op_fill(ints, -3.0f);
        g_autofree gint32 *iv = g_new(gint32, n);
        g_assert_true(lmn_tensor_read(ints, iv, n * sizeof(gint32), NULL));
        for (gint64 i = 0; i < n; i++)
            g_assert_cmpint(iv[i], ==, -3);
        lmn_tensor_unref(ints);
        lmn_tensor_unref(a);
        lmn_tensor_unref(b);
    }

    /* Copy between overlapping views of one buffer behaves like memmove. */
    const gint64 n = 1000;
    g_autofree float *data = random_floats(n, -1, 1);
    LmnTensor *base = tensor_f32(n, data);
    LmnShape vs = lmn_shape_make(1, (gint64) 600);
    LmnTensor *lo = lmn_tensor_new_view(base, 0, &vs);
    LmnTensor *hi = lmn_tensor_new_view(base, 300, &vs);
    lmn_op_copy(hi, lo);
    g_autofree float *got = read_all(base);
    for (gint64 i = 0; i < n; i++) {
        float want = i < 300 ? data[i] : (i < 900 ? data[i - 300] : data[i]);
        g_assert_cmpfloat(got[i], ==, want);
    }
    lmn_tensor_unref(lo);
    lmn_tensor_unref(hi);
    lmn_tensor_unref(base);
}

/* ---- GEMM ---- */

typedef struct {
    gint64 m, n, k;
} Dims;

/* C[b] = alpha op(A[b]) op(B[b]) + beta C[b] in double; beta == 0 ignores C (BLAS). */
static void gemm_reference(const LmnGemm *g, const float *a, const float *b, const float *c0,
                           double *c_out, double *c_abs)
{
    gint64 batch = MAX(g->batch, 1);
    for (gint64 bi = 0; bi < batch; bi++) {
        const float *A = a + g->a_offset + bi * g->stride_a;
        const float *B = b + g->b_offset + bi * g->stride_b;
        gint64 coff = g->c_offset + bi * g->stride_c;
        for (gint64 i = 0; i < g->m; i++)
            for (gint64 j = 0; j < g->n; j++) {
                double s = 0, sa = 0;
                for (gint64 p = 0; p < g->k; p++) {
                    double av = g->trans_a ? A[p * g->m + i] : A[i * g->k + p];
                    double bv = g->trans_b ? B[j * g->k + p] : B[p * g->n + j];
                    s += av * bv;
                    sa += fabs(av * bv);
                }
                double old = g->beta == 0.0f ? 0.0 : (double) g->beta * c0[coff + i * g->n + j];
                c_out[coff + i * g->n + j] = g->alpha * s + old;
                c_abs[coff + i * g->n + j] = fabs(g->alpha) * sa + fabs(old);
            }
    }
}

/* Runs @g (with a, b, c filled in here) on tensors of the given sizes and compares all of C,
 * including the elements outside the addressed matrices, which must not change. */
static void check_gemm(LmnGemm g, gint64 a_size, gint64 b_size, gint64 c_size, gboolean nan_c)
{
    g_autofree float *a = random_floats(a_size, -1, 1);
    g_autofree float *b = random_floats(b_size, -1, 1);
    g_autofree float *c0 = random_floats(c_size, -1, 1);
    if (nan_c)
        for (gint64 i = 0; i < c_size; i++)
            c0[i] = NAN;
    LmnTensor *ta = tensor_f32(a_size, a);
    LmnTensor *tb = tensor_f32(b_size, b);
    LmnTensor *tc = tensor_f32(c_size, c0);
    g_autofree double *want = g_new(double, c_size);
    g_autofree double *mag = g_new0(double, c_size);
    for (gint64 i = 0; i < c_size; i++)
        want[i] = c0[i];
    g.struct_size = sizeof(LmnGemm);
    g.a = ta;
    g.b = tb;
    g.c = tc;
    gemm_reference(&g, a, b, c0, want, mag);
    lmn_op_gemm(&g);
    g_autofree float *got = read_all(tc);
    for (gint64 i = 0; i < c_size; i++) {
        if (isnan(want[i])) { /* untouched NaN padding stays NaN */
            g_assert_true(isnan(got[i]));
            continue;
        }
        double err = fabs(got[i] - want[i]);
        if (!(err <= 1e-5 * mag[i] + 1e-6))
            g_error("gemm ta=%d tb=%d m=%" G_GINT64_FORMAT " n=%" G_GINT64_FORMAT
                    " k=%" G_GINT64_FORMAT " batch=%" G_GINT64_FORMAT
                    " alpha=%g beta=%g: C[%" G_GINT64_FORMAT "] = %.8g, want %.8g",
                    g.trans_a, g.trans_b, g.m, g.n, g.k, g.batch, g.alpha, g.beta, i, got[i],
                    want[i]);
    }
    lmn_tensor_unref(ta);
    lmn_tensor_unref(tb);
    lmn_tensor_unref(tc);
}

static void test_gemm(void)
{
    const Dims dims[] = {{1, 1, 1},  {3, 5, 7},     {17, 33, 65}, {64, 1, 128},
                         {1, 70, 3}, {130, 97, 31}, {5, 4, 0}};
    const float ab[][2] = {{1.0f, 0.0f}, {0.5f, 1.0f}, {-1.5f, 0.25f}};
    for (gsize d = 0; d < G_N_ELEMENTS(dims); d++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (gsize s = 0; s < G_N_ELEMENTS(ab); s++) {
                    LmnGemm g = {.trans_a = ta,
                                 .trans_b = tb,
                                 .m = dims[d].m,
                                 .n = dims[d].n,
                                 .k = dims[d].k,
                                 .alpha = ab[s][0],
                                 .beta = ab[s][1]};
                    gint64 mk = g.m * g.k, kn = g.k * g.n, mn = g.m * g.n;
                    check_gemm(g, MAX(mk, 1), MAX(kn, 1), mn, FALSE);
                    /* beta = 0 must ignore NaN garbage in C. */
                    g.beta = 0.0f;
                    check_gemm(g, MAX(mk, 1), MAX(kn, 1), mn, TRUE);
                    /* Offsets into larger tensors; the elements around C stay as they were. */
                    g.a_offset = 3;
                    g.b_offset = 11;
                    g.c_offset = 5;
                    g.beta = ab[s][1];
                    check_gemm(g, mk + 3 + 2, kn + 11, mn + 5 + 7, FALSE);
                }
}

static void test_gemm_batched(void)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            /* Strides larger than the matrices leave gaps that must stay untouched. */
            LmnGemm g = {.trans_a = ta,
                         .trans_b = tb,
                         .m = 6,
                         .n = 9,
                         .k = 13,
                         .alpha = 0.75f,
                         .beta = 0.5f,
                         .batch = 4,
                         .a_offset = 2,
                         .b_offset = 1,
                         .c_offset = 3};
            g.stride_a = g.m * g.k + 5;
            g.stride_b = g.k * g.n + 2;
            g.stride_c = g.m * g.n + 4;
            check_gemm(g, 2 + 4 * g.stride_a, 1 + 4 * g.stride_b, 3 + 4 * g.stride_c, FALSE);
            /* stride 0 broadcasts one B over the batch (a shared weight). */
            g.stride_b = 0;
            check_gemm(g, 2 + 4 * g.stride_a, 1 + g.k * g.n, 3 + 4 * g.stride_c, FALSE);
            /* beta = 0 on a NaN-filled batched C. */
            g.beta = 0.0f;
            g.stride_c = g.m * g.n;
            check_gemm(g, 2 + 4 * g.stride_a, 1 + g.k * g.n, 3 + 4 * g.stride_c, TRUE);
            /* Enough small entries for the backend to split the batch across its threads
             * (each entry a whole product on one thread), with gaps and a shared A. */
            LmnGemm many = {.trans_a = ta,
                            .trans_b = tb,
                            .m = 20,
                            .n = 30,
                            .k = 25,
                            .alpha = 1.0f,
                            .beta = 1.0f,
                            .batch = 40};
            many.stride_a = 0;
            many.stride_b = many.k * many.n + 3;
            many.stride_c = many.m * many.n + 1;
            check_gemm(many, many.m * many.k, 40 * many.stride_b, 40 * many.stride_c, FALSE);
        }
}

/* The training GEMMs of the reference MLP at batch 128 (forward, dX, dW of its 784-256 layer),
 * large enough for the GEMM library to block and thread them: every trans combination, beta 0
 * on NaN garbage and beta 1 (gradient accumulation), offsets, and a batch of two.  Each product
 * also runs twice from the same C, which must give the same bits (run-to-run determinism). */
static void test_gemm_training_shapes(void)
{
    const Dims dims[] = {{128, 256, 784}, {128, 784, 256}, {784, 256, 128}};
    for (gsize d = 0; d < G_N_ELEMENTS(dims); d++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int beta_one = 0; beta_one < 2; beta_one++) {
                    LmnGemm g = {.trans_a = ta,
                                 .trans_b = tb,
                                 .m = dims[d].m,
                                 .n = dims[d].n,
                                 .k = dims[d].k,
                                 .alpha = 1.0f,
                                 .beta = beta_one ? 1.0f : 0.0f,
                                 .a_offset = 16,
                                 .b_offset = 3,
                                 .c_offset = 1,
                                 .batch = d == 0 ? 2 : 1};
                    const gint64 mk = g.m * g.k, kn = g.k * g.n, mn = g.m * g.n;
                    g.stride_a = mk;
                    g.stride_b = kn + 7;
                    g.stride_c = mn + 2;
                    const gint64 a_size = 16 + g.batch * mk, b_size = 3 + g.batch * (kn + 7);
                    const gint64 c_size = 1 + g.batch * (mn + 2);
                    check_gemm(g, a_size, b_size, c_size, !beta_one);

                    g_autofree float *a = random_floats(a_size, -1, 1);
                    g_autofree float *b = random_floats(b_size, -1, 1);
                    g_autofree float *c0 = random_floats(c_size, -1, 1);
                    LmnTensor *ta_t = tensor_f32(a_size, a), *tb_t = tensor_f32(b_size, b);
                    g.struct_size = sizeof(LmnGemm);
                    g.a = ta_t;
                    g.b = tb_t;
                    float *runs[2];
                    for (int r = 0; r < 2; r++) {
                        LmnTensor *tc = tensor_f32(c_size, c0);
                        g.c = tc;
                        lmn_op_gemm(&g);
                        runs[r] = read_all(tc);
                        lmn_tensor_unref(tc);
                    }
                    g_assert_cmpmem(runs[0], c_size * sizeof(float), runs[1],
                                    c_size * sizeof(float));
                    g_free(runs[0]);
                    g_free(runs[1]);
                    lmn_tensor_unref(ta_t);
                    lmn_tensor_unref(tb_t);
                }
}

/* ---- GEMM with an epilogue (ABI 1.5) ---- */

/* An unbatched product of @d's sizes on @a and @b (C set by the caller). */
static LmnGemm gemm_desc(const Dims *d, gboolean ta, gboolean tb, float alpha, float beta,
                         LmnTensor *a, LmnTensor *b)
{
    return (LmnGemm){.struct_size = sizeof(LmnGemm),
                     .trans_a = ta,
                     .trans_b = tb,
                     .m = d->m,
                     .n = d->n,
                     .k = d->k,
                     .alpha = alpha,
                     .beta = beta,
                     .a = a,
                     .b = b};
}

/* One lmn_op_gemm_ex case on @be: the fused op against the composition lmn_op_gemm_ex specifies
 * (lmn_op_gemm, then bias_add, unary and bias_grad on exact views), bit for bit.  @extra
 * elements after C's m x n (a partial last batch) must stay untouched. */
static void check_gemm_ex(LmnBackend *be, const Dims *d, gboolean ta, gboolean tb, float beta,
                          gboolean bias, LmnUnaryOp act, float act_alpha, gboolean row_sums,
                          float sums_beta, gint64 extra)
{
    /* With an activation, every other case sends it to a separate output. */
    static guint n_cases;
    const gboolean separate = act != LMN_UNARY_IDENTITY && n_cases++ % 2 == 0;
    g_autoptr(GError) error = NULL;
    const gint64 mk = d->m * d->k, kn = d->k * d->n, mn = d->m * d->n;
    g_autofree float *a = random_floats(mk + extra, -2, 2);
    g_autofree float *b = random_floats(kn, -1, 1);
    g_autofree float *c0 = random_floats(mn + extra, -1, 1);
    g_autofree float *bv = random_floats(d->n, -1, 1);
    g_autofree float *s0 = random_floats(d->m, -1, 1);
    g_autofree float *y0 = random_floats(mn + extra, -1, 1);
    LmnTensor *at = tensor_on(be, mk + extra, a), *bt = tensor_on(be, kn, b);
    LmnTensor *biast = tensor_on(be, d->n, bv);
    LmnGemm g = gemm_desc(d, ta, tb, 0.75f, beta, at, bt);
    float *got[2], *sums[2], *acts[2];
    for (int fused = 0; fused < 2; fused++) {
        LmnTensor *ct = tensor_on(be, mn + extra, c0), *st = tensor_on(be, d->m, s0);
        LmnTensor *yt = tensor_on(be, mn + extra, y0);
        g.c = ct;
        if (fused) {
            const LmnGemmEpilogue e = {.struct_size = sizeof e,
                                       .bias = bias ? biast : NULL,
                                       .activation = act,
                                       .activation_alpha = act_alpha,
                                       .a_row_sums = row_sums ? st : NULL,
                                       .row_sums_beta = sums_beta,
                                       .activated = separate ? yt : NULL};
            lmn_op_gemm_ex(&g, &e);
        } else {
            lmn_op_gemm(&g);
            LmnShape cs = lmn_shape_make(2, d->m, d->n);
            LmnTensor *cv = lmn_tensor_new_view(ct, 0, &cs);
            if (bias)
                lmn_op_bias_add(cv, biast, d->m, d->n, 1);
            LmnTensor *yv = lmn_tensor_new_view(yt, 0, &cs);
            if (act != LMN_UNARY_IDENTITY)
                lmn_op_unary(act, cv, separate ? yv : cv, act_alpha);
            lmn_tensor_unref(yv);
            LmnShape as = ta ? lmn_shape_make(2, d->k, d->m) : lmn_shape_make(2, d->m, d->k);
            LmnTensor *av = lmn_tensor_new_view(at, 0, &as);
            if (row_sums && ta)
                lmn_op_bias_grad(st, av, d->k, d->m, 1, sums_beta);
            else if (row_sums)
                lmn_op_bias_grad(st, av, 1, d->m, d->k, sums_beta);
            lmn_tensor_unref(av);
            lmn_tensor_unref(cv);
        }
        g_assert_true(lmn_backend_synchronize(be, &error));
        got[fused] = read_all(ct);
        sums[fused] = read_all(st);
        acts[fused] = read_all(yt);
        lmn_tensor_unref(ct);
        lmn_tensor_unref(st);
        lmn_tensor_unref(yt);
    }
    g_assert_cmpmem(acts[0], (mn + extra) * sizeof(float), acts[1], (mn + extra) * sizeof(float));
    if (!separate)
        g_assert_cmpmem(acts[1], (mn + extra) * sizeof(float), y0, (mn + extra) * sizeof(float));
    else
        g_assert_cmpmem(acts[1] + mn, extra * sizeof(float), y0 + mn, extra * sizeof(float));
    g_assert_cmpmem(got[0], (mn + extra) * sizeof(float), got[1], (mn + extra) * sizeof(float));
    g_assert_cmpmem(sums[0], d->m * sizeof(float), sums[1], d->m * sizeof(float));
    g_assert_cmpmem(got[1] + mn, extra * sizeof(float), c0 + mn, extra * sizeof(float));
    if (!row_sums)
        g_assert_cmpmem(sums[1], d->m * sizeof(float), s0, d->m * sizeof(float));
    /* Against double precision: the row sums of op(A), and one element of C. */
    if (row_sums) {
        for (gint64 i = 0; i < d->m; i++) {
            double want = sums_beta * (double) s0[i];
            for (gint64 q = 0; q < d->k; q++)
                want += a[ta ? q * d->m + i : i * d->k + q];
            g_assert_cmpfloat_with_epsilon(sums[1][i], want, 1e-4 * (1 + d->k));
        }
    }
    if (act == LMN_UNARY_IDENTITY && mn > 0) {
        const gint64 i = d->m - 1, j = d->n / 2;
        double want = beta * (double) c0[i * d->n + j] + (bias ? bv[j] : 0.0);
        for (gint64 q = 0; q < d->k; q++)
            want += 0.75 * (double) a[ta ? q * d->m + i : i * d->k + q] *
                    (double) b[tb ? j * d->k + q : q * d->n + j];
        g_assert_cmpfloat_with_epsilon(got[1][i * d->n + j], want, 1e-4 * (1 + d->k));
    }
    for (int r = 0; r < 2; r++) {
        g_free(got[r]);
        g_free(sums[r]);
        g_free(acts[r]);
    }
    lmn_tensor_unref(at);
    lmn_tensor_unref(bt);
    lmn_tensor_unref(biast);
}

/* The backward form of the epilogue: C = t * f'(x, y) (beta 0), against lmn_op_gemm and then
 * lmn_op_unary_backward on views of C, bit for bit; the @extra elements after C stay as they
 * were, and one element of a ReLU case is checked in double precision. */
static void check_gemm_ex_grad(LmnBackend *be, const Dims *d, gboolean ta, gboolean tb,
                               LmnUnaryOp op, float alpha, gint64 extra)
{
    g_autoptr(GError) error = NULL;
    const gint64 mk = d->m * d->k, kn = d->k * d->n, mn = d->m * d->n;
    g_autofree float *a = random_floats(mk, -2, 2);
    g_autofree float *b = random_floats(kn, -1, 1);
    g_autofree float *c0 = random_floats(mn + extra, -1, 1);
    /* x around 0, so both sides of ReLU-like functions occur; y in (0, 1) for sigmoid's form. */
    g_autofree float *x = random_floats(mn + extra, -2, 2);
    g_autofree float *y = random_floats(mn + extra, 0.05, 0.95);
    LmnTensor *at = tensor_on(be, mk, a), *bt = tensor_on(be, kn, b);
    LmnTensor *xt = tensor_on(be, mn + extra, x), *yt = tensor_on(be, mn + extra, y);
    LmnGemm g = gemm_desc(d, ta, tb, 1.0f, 0.0f, at, bt);
    float *got[2];
    for (int fused = 0; fused < 2; fused++) {
        LmnTensor *ct = tensor_on(be, mn + extra, c0);
        g.c = ct;
        if (fused) {
            const LmnGemmEpilogue e = {.struct_size = sizeof e,
                                       .activation_grad = op,
                                       .activation_alpha = alpha,
                                       .grad_x = xt,
                                       .grad_y = yt};
            lmn_op_gemm_ex(&g, &e);
        } else {
            lmn_op_gemm(&g);
            LmnShape cs = lmn_shape_make(2, d->m, d->n);
            LmnTensor *cv = lmn_tensor_new_view(ct, 0, &cs), *xv = lmn_tensor_new_view(xt, 0, &cs);
            LmnTensor *yv = lmn_tensor_new_view(yt, 0, &cs);
            lmn_op_unary_backward(op, xv, yv, cv, cv, alpha);
            lmn_tensor_unref(cv);
            lmn_tensor_unref(xv);
            lmn_tensor_unref(yv);
        }
        g_assert_true(lmn_backend_synchronize(be, &error));
        got[fused] = read_all(ct);
        lmn_tensor_unref(ct);
    }
    g_assert_cmpmem(got[0], (mn + extra) * sizeof(float), got[1], (mn + extra) * sizeof(float));
    g_assert_cmpmem(got[1] + mn, extra * sizeof(float), c0 + mn, extra * sizeof(float));
    if (op == LMN_UNARY_RELU && mn > 0) {
        for (gint64 i = d->m - 1, j = 0; j < MIN(d->n, 8); j++) {
            double want = 0.0;
            for (gint64 q = 0; q < d->k; q++)
                want += (double) a[ta ? q * d->m + i : i * d->k + q] *
                        (double) b[tb ? j * d->k + q : q * d->n + j];
            want = x[i * d->n + j] <= 0.0f ? 0.0 : want;
            g_assert_cmpfloat_with_epsilon(got[1][i * d->n + j], want, 1e-4 * (1 + d->k));
        }
    }
    g_free(got[0]);
    g_free(got[1]);
    lmn_tensor_unref(at);
    lmn_tensor_unref(bt);
    lmn_tensor_unref(xt);
    lmn_tensor_unref(yt);
}

static void test_gemm_ex(void)
{
    /* One thread's product, a product split by columns (n >= m) and one split by rows. */
    const Dims dims[] = {{5, 7, 3}, {128, 256, 784}, {784, 256, 128}, {300, 10, 256}, {2, 3, 0}};
    const struct {
        LmnUnaryOp op;
        float alpha;
    } acts[] = {{LMN_UNARY_IDENTITY, 0}, {LMN_UNARY_RELU, 0},          {LMN_UNARY_SIGMOID, 0},
                {LMN_UNARY_TANH, 0},     {LMN_UNARY_LEAKY_RELU, 0.1f}, {LMN_UNARY_ELU, 1.0f},
                {LMN_UNARY_GELU, 0}};
    guint n = 0;
    for (gsize d = 0; d < G_N_ELEMENTS(dims); d++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (gsize a = 0; a < G_N_ELEMENTS(acts); a++, n++) {
                    LmnBackend *be = n % 2 ? backend : backend_1;
                    check_gemm_ex(be, &dims[d], ta, tb, n % 3 == 0 ? 1.0f : 0.0f, n % 4 != 1,
                                  acts[a].op, acts[a].alpha, n % 5 != 2, n % 2 ? 0.0f : 1.0f,
                                  n % 3 == 1 ? 5 : 0);
                }
    /* Every part alone, and row sums without bias or activation (a dense layer's dW GEMM). */
    check_gemm_ex(backend, &dims[1], TRUE, FALSE, 0.0f, FALSE, LMN_UNARY_IDENTITY, 0, TRUE, 0, 0);
    check_gemm_ex(backend, &dims[1], FALSE, TRUE, 0.0f, TRUE, LMN_UNARY_IDENTITY, 0, FALSE, 0, 0);
    check_gemm_ex(backend, &dims[2], FALSE, TRUE, 0.0f, FALSE, LMN_UNARY_RELU, 0, FALSE, 0, 0);
    /* The backward form, as a dense layer's input-gradient product (dy W: no transposes) and
     * every other transpose, for the activations whose derivative reads x and those reading y. */
    const LmnUnaryOp grads[] = {LMN_UNARY_RELU,       LMN_UNARY_SIGMOID, LMN_UNARY_TANH,
                                LMN_UNARY_LEAKY_RELU, LMN_UNARY_GELU,    LMN_UNARY_SILU};
    n = 0;
    for (gsize d = 0; d < G_N_ELEMENTS(dims); d++)
        for (int t = 0; t < 4; t++)
            for (gsize o = 0; o < G_N_ELEMENTS(grads); o++, n++)
                check_gemm_ex_grad(n % 2 ? backend : backend_1, &dims[d], t & 1, t >> 1, grads[o],
                                   grads[o] == LMN_UNARY_LEAKY_RELU ? 0.1f : 0.0f,
                                   n % 3 == 1 ? 5 : 0);
}

/* A backend without gemm_ex gets the composition: the fake backend logs the ops it was given. */
static void test_gemm_ex_composed(void)
{
    g_autoptr(GError) error = NULL;
    load_fake_backends();
    LmnBackend *b = lmn_backend_new(registry, "test_fake", NULL, NULL, &error);
    g_assert_no_error(error);
    const char *log = lmn_backend_get_context(b);
    LmnTensor *a = tensor_on(b, 6 * 4 + 3, NULL), *w = tensor_on(b, 4 * 5, NULL);
    LmnTensor *c = tensor_on(b, 6 * 5 + 10, NULL), *bias = tensor_on(b, 5, NULL);
    LmnTensor *s = tensor_on(b, 6, NULL);
    LmnGemm g = {
        .struct_size = sizeof g, .m = 6, .n = 5, .k = 4, .alpha = 1, .a = a, .b = w, .c = c};
    LmnGemmEpilogue e = {.struct_size = sizeof e,
                         .bias = bias,
                         .activation = LMN_UNARY_LEAKY_RELU,
                         .activation_alpha = 0.25f,
                         .a_row_sums = s,
                         .row_sums_beta = 1.0f};
    lmn_op_gemm_ex(&g, &e);
    g_assert_cmpstr(log, ==,
                    "gemm 6x5x4\nbias_add 6 5 1 of 30\nunary 4 0.25 in place 1 of 30\n"
                    "bias_grad 1 6 4 of 24 beta 1\n");
    /* op(A) = A^T: the sums run down A's columns; no epilogue is a plain gemm. */
    memset((char *) log, 0, 1);
    g.trans_a = TRUE;
    e.bias = NULL;
    e.activation = LMN_UNARY_IDENTITY;
    e.row_sums_beta = 0.0f;
    lmn_op_gemm_ex(&g, &e);
    lmn_op_gemm_ex(&g, NULL);
    g_assert_cmpstr(log, ==, "gemm 6x5x4\nbias_grad 4 6 1 of 24 beta 0\ngemm 6x5x4\n");
    g_assert_true(lmn_backend_synchronize(b, &error));
    lmn_tensor_unref(a);
    lmn_tensor_unref(w);
    lmn_tensor_unref(c);
    lmn_tensor_unref(bias);
    lmn_tensor_unref(s);
    lmn_backend_unref(b);
}

/* Epilogues lmn_op_gemm_ex refuses (a programming error, a critical): batched, C at an offset,
 * a bias of the wrong length, row sums overlapping C, an activation's backward with a bias or
 * reading C's own memory. */
static void test_gemm_ex_refused(gconstpointer data)
{
    const int which = GPOINTER_TO_INT(data);
    if (g_test_subprocess()) {
        LmnTensor *a = tensor_f32(12, NULL), *b = tensor_f32(16, NULL);
        LmnTensor *c = tensor_f32(24, NULL), *bias = tensor_f32(which == 2 ? 3 : 4, NULL);
        LmnGemm g = {
            .struct_size = sizeof g, .m = 3, .n = 4, .k = 4, .alpha = 1, .a = a, .b = b, .c = c};
        LmnGemmEpilogue e = {.struct_size = sizeof e, .bias = bias};
        if (which == 0) {
            g.batch = 2, g.stride_a = 0, g.stride_b = 0, g.stride_c = 12;
        } else if (which == 1) {
            g.c_offset = 12;
        } else if (which == 3) {
            LmnShape sh = lmn_shape_make(1, (gint64) 3);
            e.bias = NULL;
            e.a_row_sums = lmn_tensor_new_view(c, 2, &sh);
        } else if (which >= 4) {
            /* An activation's backward: never with a bias; its operands apart from C. */
            e.activation_grad = LMN_UNARY_RELU;
            e.grad_x = which == 5 ? c : a;
            e.grad_y = a;
            if (which == 5)
                e.bias = NULL;
        }
        lmn_op_gemm_ex(&g, &e);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDIN);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*lmn_op_gemm_ex*epilogue_ok*");
}

/* The description names the GEMM library the build chose (-Donednn). */
static void test_gemm_library(void)
{
    const char *desc = lmn_backend_describe(backend);
#ifdef TEST_ONEDNN
    g_assert_nonnull(strstr(desc, ", oneDNN "));
#else
    g_assert_null(strstr(desc, "oneDNN"));
#endif
}

/* ---- bias ---- */

static void test_bias(void)
{
    const gint64 shapes[][3] = {{1, 1, 1}, {7, 5, 1},     {512, 300, 1},
                                {3, 4, 9}, {8, 16, 1000}, {2, 3, 20000}};
    for (gsize s = 0; s < G_N_ELEMENTS(shapes); s++) {
        const gint64 O = shapes[s][0], C = shapes[s][1], I = shapes[s][2];
        const gint64 n = O * C * I;
        g_autofree float *y = random_floats(n, -2, 2);
        g_autofree float *bias = random_floats(C, -2, 2);
        g_autofree float *db0 = random_floats(C, -2, 2);
        LmnTensor *ty = tensor_f32(n, y);
        LmnTensor *tbias = tensor_f32(C, bias);

        lmn_op_bias_add(ty, tbias, O, C, I);
        g_autofree double *want = g_new(double, n);
        for (gint64 o = 0; o < O; o++)
            for (gint64 c = 0; c < C; c++)
                for (gint64 i = 0; i < I; i++) {
                    gint64 e = (o * C + c) * I + i;
                    want[e] = (double) y[e] + bias[c];
                }
        g_autofree float *got = read_all(ty);
        assert_close("bias_add", got, want, n, 1e-6, 1e-6);

        /* bias_grad: beta = 0.5 accumulates, beta = 0 ignores NaN garbage */
        const float betas[] = {0.5f, 0.0f};
        for (gsize bi = 0; bi < 2; bi++) {
            float beta = betas[bi];
            g_autofree float *db_init = g_memdup2(db0, C * sizeof(float));
            if (beta == 0.0f)
                for (gint64 c = 0; c < C; c++)
                    db_init[c] = NAN;
            LmnTensor *tdb = tensor_f32(C, db_init);
            LmnTensor *tdy = tensor_f32(n, y);
            lmn_op_bias_grad(tdb, tdy, O, C, I, beta);
            g_autofree double *wdb = g_new0(double, C);
            g_autofree double *mag = g_new0(double, C);
            for (gint64 o = 0; o < O; o++)
                for (gint64 c = 0; c < C; c++)
                    for (gint64 i = 0; i < I; i++) {
                        wdb[c] += y[(o * C + c) * I + i];
                        mag[c] += fabs(y[(o * C + c) * I + i]);
                    }
            g_autofree float *gdb = read_all(tdb);
            for (gint64 c = 0; c < C; c++) {
                double w = wdb[c] + (beta == 0.0f ? 0.0 : beta * (double) db0[c]);
                g_assert_cmpfloat_with_epsilon(gdb[c], w, 1e-6 * fabs(w) + 1e-9 * mag[c] + 1e-6);
            }
            lmn_tensor_unref(tdb);
            lmn_tensor_unref(tdy);
        }
        lmn_tensor_unref(ty);
        lmn_tensor_unref(tbias);
    }
}

/* ---- unary ---- */

static const struct {
    LmnUnaryOp op;
    const char *name;
    float alpha;
    gboolean kink_at_0; /* derivative undefined at 0: finite differences avoid it */
} unary_cases[] = {
    {LMN_UNARY_IDENTITY, "identity", 0.0f, FALSE},
    {LMN_UNARY_RELU, "relu", 0.0f, TRUE},
    {LMN_UNARY_SIGMOID, "sigmoid", 0.0f, FALSE},
    {LMN_UNARY_TANH, "tanh", 0.0f, FALSE},
    {LMN_UNARY_LEAKY_RELU, "leaky_relu", 0.01f, TRUE},
    {LMN_UNARY_LEAKY_RELU, "leaky_relu(0.3)", 0.3f, TRUE},
    {LMN_UNARY_ELU, "elu", 1.0f, FALSE},
    {LMN_UNARY_ELU, "elu(0.5)", 0.5f, TRUE},
    {LMN_UNARY_SOFTPLUS, "softplus", 1.0f, FALSE},
    {LMN_UNARY_SOFTPLUS, "softplus(beta=2)", 2.0f, FALSE},
    {LMN_UNARY_GELU, "gelu", 0.0f, FALSE},
    {LMN_UNARY_SIGN, "sign", 0.0f, TRUE},
    {LMN_UNARY_ABS, "abs", 0.0f, TRUE},
    {LMN_UNARY_SQUARE, "square", 0.0f, FALSE},
};

static double unary_ref(LmnUnaryOp op, double x, double a)
{
    switch (op) {
    case LMN_UNARY_IDENTITY:
        return x;
    case LMN_UNARY_RELU:
        return x > 0 ? x : 0;
    case LMN_UNARY_SIGMOID:
        return 1.0 / (1.0 + exp(-x));
    case LMN_UNARY_TANH:
        return tanh(x);
    case LMN_UNARY_LEAKY_RELU:
        return x > 0 ? x : a * x;
    case LMN_UNARY_ELU:
        return x > 0 ? x : a * (exp(x) - 1.0);
    case LMN_UNARY_SOFTPLUS:
        return a * x > 20.0 ? x : log1p(exp(a * x)) / a;
    case LMN_UNARY_GELU:
        return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case LMN_UNARY_SIGN:
        return x > 0 ? 1 : (x < 0 ? -1 : 0);
    case LMN_UNARY_ABS:
        return fabs(x);
    case LMN_UNARY_SQUARE:
        return x * x;
    default:
        g_assert_not_reached();
    }
}

/* Inputs: random values in [-6, 6] plus points that matter (0, the softplus threshold, large). */
static float *unary_inputs(gsize n)
{
    float *x = random_floats(n, -6, 6);
    const float special[] = {0.0f,  -0.0f, 1e-3f, -1e-3f, 9.99f, 10.01f,
                             19.9f, 20.1f, 30.0f, -30.0f, 88.0f, -88.0f};
    for (gsize i = 0; i < G_N_ELEMENTS(special) && i < n; i++)
        x[i * 7 % n] = special[i];
    return x;
}

static void test_unary_forward(void)
{
    const gsize sizes[] = {1, 13, 1000, BIG};
    for (gsize c = 0; c < G_N_ELEMENTS(unary_cases); c++)
        for (gsize s = 0; s < G_N_ELEMENTS(sizes); s++) {
            gsize n = sizes[s];
            g_autofree float *x = unary_inputs(n);
            g_autofree double *want = g_new(double, n);
            for (gsize i = 0; i < n; i++)
                want[i] = unary_ref(unary_cases[c].op, x[i], unary_cases[c].alpha);
            LmnTensor *tx = tensor_f32(n, x);
            LmnTensor *ty = tensor_f32(n, NULL);
            lmn_op_unary(unary_cases[c].op, tx, ty, unary_cases[c].alpha);
            g_autofree float *got = read_all(ty);
            assert_close(unary_cases[c].name, got, want, n, 2e-6, 1e-6);
            /* in place: y == x */
            lmn_op_unary(unary_cases[c].op, tx, tx, unary_cases[c].alpha);
            g_autofree float *inplace = read_all(tx);
            g_assert_cmpmem(inplace, n * sizeof(float), got, n * sizeof(float));
            lmn_tensor_unref(tx);
            lmn_tensor_unref(ty);
        }
}

/* NaN and the infinities through every activation, against PyTorch 1.13 (Debian's
 * python3-torch), recorded with
 *   x = torch.tensor([nan, -1, 0, 2, inf, -inf], requires_grad=True); y = f(x)
 *   y.backward(torch.ones(6)) or y.backward(torch.full((6,), nan))
 * A NaN must come out where PyTorch's does: relu used to turn it into 0, so a NaN weight trained
 * on with a finite loss and the loss guard never fired. */
static void test_unary_nan(void)
{
    static const struct {
        LmnUnaryOp op;
        const char *name;
        float alpha;
        double y[6], dx[6], dx_nan_dy[6];
    } cases[] = {
        {LMN_UNARY_RELU,
         "relu",
         0.0f,
         {NAN, 0, 0, 2, INFINITY, 0},
         {1, 0, 0, 1, 1, 0},
         {NAN, 0, 0, NAN, NAN, 0}},
        {LMN_UNARY_SIGMOID,
         "sigmoid",
         0.0f,
         {NAN, 0.2689414322376251, 0.5, 0.8807970285415649, 1, 0},
         {NAN, 0.1966119408607483, 0.25, 0.10499362647533417, 0, 0},
         {NAN, NAN, NAN, NAN, NAN, NAN}},
        {LMN_UNARY_TANH,
         "tanh",
         0.0f,
         {NAN, -0.7615941762924194, 0, 0.9640275835990906, 1, -1},
         {NAN, 0.41997429728507996, 1, 0.07065081596374512, 0, 0},
         {NAN, NAN, NAN, NAN, NAN, NAN}},
        {LMN_UNARY_LEAKY_RELU,
         "leaky_relu(0.1)",
         0.1f,
         {NAN, -0.1, 0, 2, INFINITY, -INFINITY},
         {0.1, 0.1, 0.1, 1, 1, 0.1},
         {NAN, NAN, NAN, NAN, NAN, NAN}},
        {LMN_UNARY_ELU,
         "elu",
         1.0f,
         {NAN, -0.6321205496788025, 0, 2, INFINITY, -1},
         {1, 0.3678794503211975, 1, 1, 1, 0},
         {NAN, NAN, NAN, NAN, NAN, NAN}},
        {LMN_UNARY_SOFTPLUS,
         "softplus",
         1.0f,
         {NAN, 0.3132616877555847, 0.6931471824645996, 2.1269280910491943, INFINITY, 0},
         {NAN, 0.2689414322376251, 0.5, 0.8807970881462097, 1, 0},
         {NAN, NAN, NAN, NAN, NAN, NAN}},
        {LMN_UNARY_GELU,
         "gelu",
         0.0f,
         {NAN, -0.1586552858352661, 0, 1.9544999599456787, INFINITY, NAN},
         {NAN, -0.08331543207168579, 0.5, 1.085231900215149, NAN, NAN},
         {NAN, NAN, NAN, NAN, NAN, NAN}},
    };
    const float x[6] = {NAN, -1, 0, 2, INFINITY, -INFINITY};
    const float ones[6] = {1, 1, 1, 1, 1, 1}, nans[6] = {NAN, NAN, NAN, NAN, NAN, NAN};
    for (gsize c = 0; c < G_N_ELEMENTS(cases); c++) {
        LmnTensor *tx = tensor_f32(6, x), *ty = tensor_f32(6, NULL), *tdx = tensor_f32(6, NULL);
        LmnTensor *tones = tensor_f32(6, ones), *tnans = tensor_f32(6, nans);
        lmn_op_unary(cases[c].op, tx, ty, cases[c].alpha);
        const double *want[3] = {cases[c].y, cases[c].dx, cases[c].dx_nan_dy};
        for (int k = 0; k < 3; k++) {
            if (k > 0)
                lmn_op_unary_backward(cases[c].op, tx, ty, k == 1 ? tones : tnans, tdx,
                                      cases[c].alpha);
            g_autofree float *got = read_all(k == 0 ? ty : tdx);
            for (int i = 0; i < 6; i++) {
                double w = want[k][i];
                gboolean ok = isnan(w)   ? isnan(got[i])
                              : isinf(w) ? got[i] == w
                                         : fabs(got[i] - w) <= 1e-6 + 1e-6 * fabs(w);
                if (!ok)
                    g_error("%s %s at x = %g: got %.9g, PyTorch gives %.9g", cases[c].name,
                            k == 0   ? "forward"
                            : k == 1 ? "backward"
                                     : "backward of a NaN dy",
                            x[i], got[i], w);
            }
        }
        lmn_tensor_unref(tx);
        lmn_tensor_unref(ty);
        lmn_tensor_unref(tdx);
        lmn_tensor_unref(tones);
        lmn_tensor_unref(tnans);
    }
}

static double unary_derivative_ref(LmnUnaryOp op, double x, double a)
{
    switch (op) {
    case LMN_UNARY_IDENTITY:
        return 1;
    case LMN_UNARY_RELU:
        return x > 0 ? 1 : 0;
    case LMN_UNARY_SIGMOID: {
        double s = 1.0 / (1.0 + exp(-x));
        return s * (1 - s);
    }
    case LMN_UNARY_TANH:
        return 1 - tanh(x) * tanh(x);
    case LMN_UNARY_LEAKY_RELU:
        return x > 0 ? 1 : a;
    case LMN_UNARY_ELU:
        return x > 0 ? 1 : a * exp(x);
    case LMN_UNARY_SOFTPLUS:
        return a * x > 20.0 ? 1 : 1.0 / (1.0 + exp(-a * x));
    case LMN_UNARY_GELU:
        return 0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * G_PI);
    case LMN_UNARY_SIGN:
        return 0;
    case LMN_UNARY_ABS:
        return x > 0 ? 1 : (x < 0 ? -1 : 0); /* 0 at 0, as in PyTorch */
    case LMN_UNARY_SQUARE:
        return 2 * x;
    default:
        g_assert_not_reached();
    }
}

static void test_unary_backward(void)
{
    const gsize sizes[] = {1, 13, 1000, BIG};
    for (gsize c = 0; c < G_N_ELEMENTS(unary_cases); c++)
        for (gsize s = 0; s < G_N_ELEMENTS(sizes); s++) {
            const LmnUnaryOp op = unary_cases[c].op;
            const double a = unary_cases[c].alpha;
            gsize n = sizes[s];
            g_autofree float *x = unary_inputs(n);
            g_autofree float *dy = random_floats(n, -2, 2);
            LmnTensor *tx = tensor_f32(n, x);
            LmnTensor *ty = tensor_f32(n, NULL);
            LmnTensor *tdy = tensor_f32(n, dy);
            LmnTensor *tdx = tensor_f32(n, NULL);
            lmn_op_unary(op, tx, ty, unary_cases[c].alpha);
            lmn_op_unary_backward(op, tx, ty, tdy, tdx, unary_cases[c].alpha);
            g_autofree float *got = read_all(tdx);

            g_autofree double *want = g_new(double, n);
            for (gsize i = 0; i < n; i++)
                want[i] = dy[i] * unary_derivative_ref(op, x[i], a);
            g_autofree char *what = g_strdup_printf("%s backward", unary_cases[c].name);
            assert_close(what, got, want, n, 1e-5, 1e-6);

            /* Central finite differences of the double forward, away from kinks. */
            const double h = 1e-6;
            for (gsize i = 0; i < n; i++) {
                double xi = x[i];
                if (unary_cases[c].kink_at_0 && fabs(xi) < 1e-3)
                    continue;
                if (op == LMN_UNARY_SOFTPLUS && fabs(a * xi - 20.0) < 1e-3)
                    continue;
                double fd = (unary_ref(op, xi + h, a) - unary_ref(op, xi - h, a)) / (2 * h);
                double w = dy[i] * fd;
                if (!(fabs(got[i] - w) <= 1e-4 * fabs(w) + 1e-5))
                    g_error("%s: finite differences at x = %.9g: backward %.9g, want %.9g", what,
                            xi, got[i], w);
            }

            /* dx may be dy */
            lmn_op_unary_backward(op, tx, ty, tdy, tdy, unary_cases[c].alpha);
            g_autofree float *inplace = read_all(tdy);
            g_assert_cmpmem(inplace, n * sizeof(float), got, n * sizeof(float));

            lmn_tensor_unref(tx);
            lmn_tensor_unref(ty);
            lmn_tensor_unref(tdy);
            lmn_tensor_unref(tdx);
        }

    /* ReLU's derivative at exactly 0 is 0, as in PyTorch. */
    const float x0[2] = {0.0f, -0.0f}, one[2] = {1.0f, 1.0f};
    LmnTensor *tx = tensor_f32(2, x0), *ty = tensor_f32(2, NULL), *tdy = tensor_f32(2, one);
    LmnTensor *tdx = tensor_f32(2, NULL);
    lmn_op_unary(LMN_UNARY_RELU, tx, ty, 0.0f);
    lmn_op_unary_backward(LMN_UNARY_RELU, tx, ty, tdy, tdx, 0.0f);
    g_autofree float *g0 = read_all(tdx);
    g_assert_cmpfloat(g0[0], ==, 0.0f);
    g_assert_cmpfloat(g0[1], ==, 0.0f);
    lmn_tensor_unref(tx);
    lmn_tensor_unref(ty);
    lmn_tensor_unref(tdy);
    lmn_tensor_unref(tdx);
}

/* ---- binary, axpby ---- */

static void test_binary_axpby(void)
{
    const gsize sizes[] = {1, 31, BIG};
    for (gsize s = 0; s < G_N_ELEMENTS(sizes); s++) {
        gsize n = sizes[s];
        g_autofree float *a = random_floats(n, -3, 3);
        g_autofree float *b = random_floats(n, -3, 3);
        g_autofree double *want = g_new(double, n);
        /* DIV, MAXIMUM and MINIMUM are tested with broadcasting (test-cpu-ops-axis.c). */
        for (int op = 0; op <= LMN_BINARY_MUL; op++) {
            for (gsize i = 0; i < n; i++)
                want[i] = op == LMN_BINARY_ADD   ? (double) a[i] + b[i]
                          : op == LMN_BINARY_SUB ? (double) a[i] - b[i]
                                                 : (double) a[i] * b[i];
            LmnTensor *ta = tensor_f32(n, a), *tb = tensor_f32(n, b), *to = tensor_f32(n, NULL);
            lmn_op_binary(op, ta, tb, to);
            g_autofree float *got = read_all(to);
            assert_close("binary", got, want, n, 1e-7, 0);
            /* out == a, then out == b */
            lmn_op_binary(op, ta, tb, ta);
            g_autofree float *ga = read_all(ta);
            assert_close("binary out=a", ga, want, n, 1e-7, 0);
            lmn_tensor_write(ta, a, n * sizeof(float), NULL);
            lmn_op_binary(op, ta, tb, tb);
            g_autofree float *gb = read_all(tb);
            assert_close("binary out=b", gb, want, n, 1e-7, 0);
            lmn_tensor_unref(ta);
            lmn_tensor_unref(tb);
            lmn_tensor_unref(to);
        }

        const float coef[][2] = {{0.5f, -1.25f}, {2.0f, 1.0f}, {-0.3f, 0.0f}};
        for (gsize cidx = 0; cidx < G_N_ELEMENTS(coef); cidx++) {
            float alpha = coef[cidx][0], beta = coef[cidx][1];
            g_autofree float *y0 = g_memdup2(b, n * sizeof(float));
            if (beta == 0.0f)
                for (gsize i = 0; i < n; i++)
                    y0[i] = NAN; /* beta = 0 ignores garbage, as in BLAS */
            for (gsize i = 0; i < n; i++)
                want[i] = (double) alpha * a[i] + (beta == 0.0f ? 0.0 : (double) beta * y0[i]);
            LmnTensor *tx = tensor_f32(n, a), *ty = tensor_f32(n, y0);
            lmn_op_axpby(alpha, tx, beta, ty);
            g_autofree float *got = read_all(ty);
            assert_close("axpby", got, want, n, 1e-6, 1e-6);
            /* x == y: y = (alpha + beta) y */
            lmn_op_axpby(alpha, tx, beta, tx);
            g_autofree float *self = read_all(tx);
            for (gsize i = 0; i < n; i++)
                want[i] = ((double) alpha + beta) * a[i];
            assert_close("axpby x=y", self, want, n, 1e-6, 1e-6);
            lmn_tensor_unref(tx);
            lmn_tensor_unref(ty);
        }
    }
}

/* ---- reductions ---- */

static void test_reduce(void)
{
    const gsize sizes[] = {1, 9, 4097, BIG, 3000017};
    for (gsize s = 0; s < G_N_ELEMENTS(sizes); s++) {
        gsize n = sizes[s];
        g_autofree float *x = random_floats(n, -1, 2);
        double sum = 0, sumsq = 0, mag = 0;
        for (gsize i = 0; i < n; i++) {
            sum += x[i];
            sumsq += (double) x[i] * x[i];
            mag += fabs(x[i]);
        }
        LmnTensor *tx = tensor_f32(n, x);
        const float start = 1.5f;
        LmnTensor *out = tensor_f32(1, &start);
        /* beta accumulation: out = 0.5 * out + 2 * sum */
        lmn_op_reduce(LMN_REDUCE_SUM, tx, out, 2.0f, 0.5f);
        double w = 0.5 * 1.5 + 2.0 * sum;
        g_assert_cmpfloat_with_epsilon(read_scalar(out), w, 2e-7 * fabs(w) + 1e-12 * mag);
        lmn_op_reduce(LMN_REDUCE_SUM_SQUARES, tx, out, 1.0f, 1.0f);
        w = (double) (float) w + sumsq;
        g_assert_cmpfloat_with_epsilon(read_scalar(out), w, 2e-7 * fabs(w));
        /* beta = 0 ignores NaN in out */
        lmn_op_fill(out, NAN);
        lmn_op_reduce(LMN_REDUCE_SUM_SQUARES, tx, out, -1.0f, 0.0f);
        g_assert_cmpfloat_with_epsilon(read_scalar(out), -sumsq, 2e-7 * sumsq);
        /* SUM_ABS: the L1 norm */
        lmn_op_reduce(LMN_REDUCE_SUM_ABS, tx, out, 0.5f, 0.0f);
        g_assert_cmpfloat_with_epsilon(read_scalar(out), 0.5 * mag, 2e-7 * mag);
        lmn_op_reduce(LMN_REDUCE_SUM_ABS, tx, out, 1.0f, -1.0f);
        w = -(double) (float) (0.5 * mag) + mag;
        g_assert_cmpfloat_with_epsilon(read_scalar(out), w, 2e-7 * mag);

        /* The sum does not depend on the thread count: 1 and 3 threads agree bit for bit. */
        LmnTensor *tx1 = tensor_on(backend_1, n, x);
        LmnTensor *out1 = tensor_on(backend_1, 1, NULL);
        lmn_op_reduce(LMN_REDUCE_SUM, tx, out, 1.0f, 0.0f);
        lmn_op_reduce(LMN_REDUCE_SUM, tx1, out1, 1.0f, 0.0f);
        float r3 = read_scalar(out), r1 = read_scalar(out1);
        g_assert_cmpmem(&r3, sizeof r3, &r1, sizeof r1);
        lmn_tensor_unref(tx1);
        lmn_tensor_unref(out1);
        lmn_tensor_unref(tx);
        lmn_tensor_unref(out);
    }
}

/* ---- softmax cross-entropy ---- */

/* Reference: probabilities and mean loss in double with a log-sum-exp. */
static double xent_reference(const float *x, const gint32 *y, gsize N, gsize K, double s,
                             double *probs)
{
    double total = 0;
    for (gsize r = 0; r < N; r++) {
        const float *row = x + r * K;
        double m = row[0];
        for (gsize q = 1; q < K; q++)
            m = MAX(m, row[q]);
        double z = 0;
        for (gsize q = 0; q < K; q++)
            z += exp(row[q] - m);
        double lse = m + log(z);
        for (gsize q = 0; q < K; q++) {
            double logp = row[q] - lse;
            if (probs != NULL)
                probs[r * K + q] = exp(logp);
            double target = (1 - s) * ((gint32) q == y[r]) + s / K;
            total -= target * logp;
        }
    }
    return total / N;
}

static void test_softmax_xent(void)
{
    const gsize shapes[][2] = {{1, 1}, {4, 10}, {129, 7}, {300, 1000}, {5000, 10}};
    const float smoothings[] = {0.0f, 0.1f};
    for (gsize sh = 0; sh < G_N_ELEMENTS(shapes); sh++)
        for (gsize si = 0; si < G_N_ELEMENTS(smoothings); si++) {
            gsize N = shapes[sh][0], K = shapes[sh][1];
            float sm = smoothings[si];
            g_autofree float *x = random_floats(N * K, -5, 5);
            g_autofree gint32 *y = g_new(gint32, N);
            for (gsize r = 0; r < N; r++)
                y[r] = g_rand_int_range(rng, 0, (gint32) K);
            if (K >= 4) { /* huge logits: a naive exp overflows */
                x[0] = 1000.0f;
                x[1] = 999.0f;
                x[2] = -1000.0f;
                y[0] = 1;
            }
            g_autofree double *wp = g_new(double, N *K);
            double wl = xent_reference(x, y, N, K, sm, wp);

            LmnTensor *tx = tensor_2d(N, K, x), *tp = tensor_2d(N, K, x);
            LmnTensor *ty = tensor_i32(N, y), *tl = tensor_f32(1, NULL);
            lmn_op_softmax_xent(tx, ty, tp, tl, sm);
            g_autofree float *probs = read_all(tp);
            assert_close("softmax probs", probs, wp, N * K, 1e-5, 1e-7);
            float loss = read_scalar(tl);
            g_assert_true(isfinite(loss));
            g_assert_cmpfloat_with_epsilon(loss, wl, 1e-5 * fabs(wl) + 1e-6);

            /* backward: dx = scale (p - target), checked against the formula and against
             * finite differences of the double reference loss (scale = 1/N: the mean) */
            LmnTensor *tdx = tensor_2d(N, K, x);
            float scale = 1.0f / N;
            lmn_op_softmax_xent_backward(tp, ty, tdx, scale, sm);
            g_autofree float *dx = read_all(tdx);
            g_autofree double *wdx = g_new(double, N *K);
            for (gsize r = 0; r < N; r++)
                for (gsize q = 0; q < K; q++)
                    wdx[r * K + q] =
                        scale * (probs[r * K + q] - ((1 - sm) * ((gint32) q == y[r]) + sm / K));
            assert_close("softmax_xent backward", dx, wdx, N * K, 1e-5, 1e-7);
            if (N * K <= 1000) {
                const double h = 1e-3;
                for (gsize e = 0; e < N * K; e++) {
                    float keep = x[e];
                    x[e] = keep + (float) h;
                    double up = xent_reference(x, y, N, K, sm, NULL);
                    x[e] = keep - (float) h;
                    double down = xent_reference(x, y, N, K, sm, NULL);
                    x[e] = keep;
                    double fd =
                        (up - down) / ((double) (keep + (float) h) - (double) (keep - (float) h));
                    if (!(fabs(dx[e] - fd) <= 1e-4 * fabs(fd) + 1e-5))
                        g_error("softmax_xent backward element %" G_GSIZE_FORMAT
                                ": %.9g, finite differences %.9g",
                                e, dx[e], fd);
                }
            }
            /* dx may be probs */
            lmn_op_softmax_xent_backward(tp, ty, tp, scale, sm);
            g_autofree float *inplace = read_all(tp);
            g_assert_cmpmem(inplace, N * K * sizeof(float), dx, N * K * sizeof(float));
            /* The one-pass form (lmn_op_softmax_xent_grad): the same probabilities, loss and
             * dx bit for bit, at 3 threads and at 1. */
            for (int b = 0; b < 2; b++) {
                LmnBackend *be = b ? backend_1 : backend;
                g_autoptr(GError) error = NULL;
                const LmnShape nk = lmn_shape_make(2, (gint64) N, (gint64) K);
                const LmnShape n1 = lmn_shape_make(1, (gint64) N);
                LmnTensor *fx = lmn_tensor_new(be, LMN_DTYPE_F32, &nk, &error);
                LmnTensor *fp = lmn_tensor_new(be, LMN_DTYPE_F32, &nk, &error);
                LmnTensor *fdx = lmn_tensor_new(be, LMN_DTYPE_F32, &nk, &error);
                LmnTensor *fy = lmn_tensor_new(be, LMN_DTYPE_I32, &n1, &error);
                LmnTensor *fl = tensor_on(be, 1, NULL);
                g_assert_no_error(error);
                g_assert_true(lmn_tensor_write(fx, x, N * K * sizeof(float), &error));
                g_assert_true(lmn_tensor_write(fy, y, N * sizeof(gint32), &error));
                lmn_op_softmax_xent_grad(fx, fy, fp, fl, sm, fdx, scale);
                g_autofree float *gp = read_all(fp);
                g_autofree float *gdx = read_all(fdx);
                g_assert_cmpmem(gp, N * K * sizeof(float), probs, N * K * sizeof(float));
                g_assert_cmpmem(gdx, N * K * sizeof(float), dx, N * K * sizeof(float));
                g_assert_cmpfloat(read_scalar(fl), ==, loss);
                lmn_tensor_unref(fx);
                lmn_tensor_unref(fp);
                lmn_tensor_unref(fy);
                lmn_tensor_unref(fl);
                lmn_tensor_unref(fdx);
            }

            lmn_tensor_unref(tx);
            lmn_tensor_unref(tp);
            lmn_tensor_unref(ty);
            lmn_tensor_unref(tl);
            lmn_tensor_unref(tdx);
        }
}

/* lmn_op_softmax_xent_grad refuses (a critical) dx in the probabilities' memory, which the
 * one pass would read back after overwriting, and a dx of the wrong size. */
static void test_softmax_xent_grad_refused(gconstpointer data)
{
    const int which = GPOINTER_TO_INT(data);
    if (g_test_subprocess()) {
        float x[6] = {0};
        const gint32 y[2] = {0, 1};
        LmnTensor *tx = tensor_2d(2, 3, x), *tp = tensor_2d(2, 3, x);
        LmnTensor *ty = tensor_i32(2, y), *tl = tensor_f32(1, NULL);
        LmnTensor *dx = which == 0 ? lmn_tensor_ref(tp) : tensor_f32(5, NULL);
        lmn_op_softmax_xent_grad(tx, ty, tp, tl, 0.0f, dx, 0.5f);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDIN);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*lmn_op_softmax_xent_grad*");
}

static void test_count_correct(void)
{
    /* Ties: the first maximum wins. */
    const float x[] = {
        1,  1,  1, /* all tied: argmax 0 */
        0,  2,  2, /* tie of 1 and 2: argmax 1 */
        3,  1,  3, /* tie of 0 and 2: argmax 0 */
        -1, -2, -0.5f,
    };
    const gint32 y[] = {0, 2, 0, 2};
    LmnTensor *tx = tensor_2d(4, 3, x), *ty = tensor_i32(4, y);
    const float start = 10.0f;
    LmnTensor *out = tensor_f32(1, &start);
    lmn_op_count_correct(tx, ty, out);
    g_assert_cmpfloat(read_scalar(out), ==, 13.0f); /* rows 0, 2, 3 */
    lmn_op_count_correct(tx, ty, out);
    g_assert_cmpfloat(read_scalar(out), ==, 16.0f); /* accumulates */
    LmnTensor *iout = tensor_i32(1, NULL);
    lmn_op_fill(iout, 0.0f);
    lmn_op_count_correct(tx, ty, iout);
    gint32 icount = -1;
    g_assert_true(lmn_tensor_read(iout, &icount, sizeof icount, NULL));
    g_assert_cmpint(icount, ==, 3);
    lmn_tensor_unref(tx);
    lmn_tensor_unref(ty);
    lmn_tensor_unref(out);
    lmn_tensor_unref(iout);

    /* Large random batches (the pool splits them) against a naive argmax. */
    const gsize shapes[][2] = {{1000, 10}, {20000, 7}};
    for (gsize s = 0; s < G_N_ELEMENTS(shapes); s++) {
        gsize N = shapes[s][0], K = shapes[s][1];
        g_autofree float *lx = random_floats(N * K, -1, 1);
        g_autofree gint32 *ly = g_new(gint32, N);
        gsize want = 0;
        for (gsize r = 0; r < N; r++) {
            /* quantised values make ties common */
            for (gsize q = 0; q < K; q++)
                lx[r * K + q] = roundf(lx[r * K + q] * 2.0f);
            ly[r] = g_rand_int_range(rng, 0, (gint32) K);
            gsize best = 0;
            for (gsize q = 1; q < K; q++)
                if (lx[r * K + q] > lx[r * K + best])
                    best = q;
            want += (gint32) best == ly[r];
        }
        LmnTensor *lt = tensor_2d(N, K, lx), *lyt = tensor_i32(N, ly);
        LmnTensor *lo = tensor_f32(1, NULL);
        lmn_op_count_correct(lt, lyt, lo);
        g_assert_cmpfloat(read_scalar(lo), ==, (float) want);
        lmn_tensor_unref(lt);
        lmn_tensor_unref(lyt);
        lmn_tensor_unref(lo);
    }
}

/* ---- plugin kernels ---- */

/* y = a * x + b: buffers {x, y}, scalars {a, b}. */
static void axpb_cpu(gsize begin, gsize end, void *const *buffers, const float *scalars)
{
    const float *x = buffers[0];
    float *y = buffers[1];
    for (gsize i = begin; i < end; i++)
        y[i] = scalars[0] * x[i] + scalars[1];
}

/* Records which threads ran which sub-ranges, to check how the backend splits a launch. */
G_LOCK_DEFINE_STATIC(calls);
static GPtrArray *call_threads;
static gsize call_indices;

static void recording_cpu(gsize begin, gsize end, void *const *buffers, const float *scalars)
{
    float *y = buffers[0];
    for (gsize i = begin; i < end; i++)
        y[i] += 1.0f;
    G_LOCK(calls);
    g_ptr_array_add(call_threads, g_thread_self());
    call_indices += end - begin;
    G_UNLOCK(calls);
}

static const guint8 recording_access[] = {LMN_KERNEL_READ_WRITE};
static const LmnKernelDesc recording_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "test.recording",
    .cpu = recording_cpu,
    .n_buffers = 1,
    .access = recording_access,
};

static guint distinct_threads(void)
{
    guint n = 0;
    for (guint i = 0; i < call_threads->len; i++) {
        gboolean seen = FALSE;
        for (guint j = 0; j < i; j++)
            seen = seen || call_threads->pdata[j] == call_threads->pdata[i];
        n += !seen;
    }
    return n;
}

static void test_kernel_split(void)
{
    /* Small launches are one call on the caller's thread; large ones are split across the
     * 3-thread pool, one contiguous chunk per thread, each index run exactly once. */
    const gsize sizes[] = {100, 30000, BIG};
    const guint want_calls[] = {1, 1, 3};
    for (gsize s = 0; s < G_N_ELEMENTS(sizes); s++) {
        LmnTensor *t = tensor_f32(sizes[s], NULL);
        lmn_op_fill(t, 0.0f);
        call_threads = g_ptr_array_new();
        call_indices = 0;
        LmnTensor *bufs[1] = {t};
        lmn_op_kernel(&recording_kernel, sizes[s], bufs, NULL);
        g_assert_cmpuint(call_indices, ==, sizes[s]);
        g_assert_cmpuint(call_threads->len, ==, want_calls[s]);
        g_assert_cmpuint(distinct_threads(), ==, want_calls[s]);
        g_assert_true(g_ptr_array_find(call_threads, g_thread_self(), NULL));
        g_autofree float *v = read_all(t);
        for (gsize i = 0; i < sizes[s]; i++)
            g_assert_cmpfloat(v[i], ==, 1.0f);
        g_ptr_array_unref(call_threads);
        lmn_tensor_unref(t);
    }
}

static const guint8 axpb_access[] = {LMN_KERNEL_READ, LMN_KERNEL_WRITE};
static const LmnKernelDesc axpb_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "test.axpb",
    .cpu = axpb_cpu,
    .n_buffers = 2,
    .access = axpb_access,
    .n_scalars = 2,
};

static void test_kernel(void)
{
    const gsize sizes[] = {1, 100, BIG, 1000000};
    for (gsize s = 0; s < G_N_ELEMENTS(sizes); s++) {
        gsize n = sizes[s];
        g_autofree float *x = random_floats(n, -4, 4);
        g_autofree double *want = g_new(double, n);
        const float scalars[2] = {1.5f, -0.25f};
        for (gsize i = 0; i < n; i++)
            want[i] = 1.5 * x[i] - 0.25;
        LmnTensor *tx = tensor_f32(n, x), *ty = tensor_f32(n, NULL);
        LmnTensor *bufs[2] = {tx, ty};
        lmn_op_kernel(&axpb_kernel, n, bufs, scalars);
        g_autofree float *got = read_all(ty);
        assert_close("kernel", got, want, n, 1e-6, 1e-6);
        /* In place, twice: an index visited twice (or never) would show. */
        LmnTensor *same[2] = {tx, tx};
        lmn_op_kernel(&axpb_kernel, n, same, scalars);
        lmn_op_kernel(&axpb_kernel, n, same, scalars);
        g_autofree float *twice = read_all(tx);
        for (gsize i = 0; i < n; i++)
            want[i] = 1.5 * (double) got[i] - 0.25;
        assert_close("kernel in place", twice, want, n, 1e-6, 1e-6);
        /* A partial range leaves the rest alone. */
        lmn_op_fill(ty, 9.0f);
        lmn_op_kernel(&axpb_kernel, n / 2, bufs, scalars);
        g_autofree float *part = read_all(ty);
        g_assert_cmpfloat(part[n - 1], ==, 9.0f);
        lmn_tensor_unref(tx);
        lmn_tensor_unref(ty);
    }
}

/* ---- errors ---- */

static void test_errors(void)
{
    g_autoptr(GError) error = NULL;
    LmnBackend *b = lmn_backend_new(registry, "cpuu", NULL, NULL, &error);
    g_assert_null(b);
    g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(error->message, "cpuu"));
    g_clear_error(&error);

    /* `threads` out of range or not an integer: a config error naming the key and place */
    const char *bad[] = {"-1", "5000", "two"};
    for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
        const char *keys[] = {"threads", NULL};
        const char *values[] = {bad[i], NULL};
        LmnParams *p =
            lmn_registry_validate_params(cpu_feature(), keys, values, "test.ini [backend]", &error);
        g_assert_null(p);
        g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
        g_assert_nonnull(strstr(error->message, "threads"));
        g_assert_nonnull(strstr(error->message, "test.ini"));
        g_clear_error(&error);
    }

    /* An unknown device */
    b = lmn_backend_new(registry, "cpu", NULL, "no-such-device-xyz", &error);
    g_assert_null(b);
    g_assert_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_NO_DEVICE);
    g_assert_nonnull(strstr(error->message, "no-such-device-xyz"));
    g_assert_nonnull(strstr(error->message, "cpu"));
    g_clear_error(&error);
}

/* ==== ABI 1.1 ops ==== */

static LmnTensor *tensor_i32_on(LmnBackend *be, gint64 n, const gint32 *data)
{
    g_autoptr(GError) error = NULL;
    LmnShape shape = lmn_shape_make(1, n);
    LmnTensor *t = lmn_tensor_new(be, LMN_DTYPE_I32, &shape, &error);
    g_assert_no_error(error);
    if (data != NULL) {
        lmn_tensor_write(t, data, (gsize) n * sizeof(gint32), &error);
        g_assert_no_error(error);
    }
    return t;
}

static gint32 *read_all_i32(LmnTensor *t)
{
    g_autoptr(GError) error = NULL;
    gsize n = (gsize) lmn_tensor_numel(t);
    gint32 *v = g_new(gint32, MAX(n, 1));
    g_assert_true(lmn_tensor_read(t, v, n * sizeof(gint32), &error));
    g_assert_no_error(error);
    return v;
}

static double dot_fd(const float *a, const double *b, gsize n)
{
    double s = 0;
    for (gsize i = 0; i < n; i++)
        s += (double) a[i] * b[i];
    return s;
}

/* ---- convolution geometry: im2col, col2im ---- */

/* {batch, channels, height, width, kh, kw, sh, sw, ph, pw, dh, dw} */
typedef struct {
    gint64 v[12];
} GeomCase;

static LmnConv2dGeom make_geom(const GeomCase *gc)
{
    const gint64 *v = gc->v;
    LmnConv2dGeom g = {
        .struct_size = sizeof(LmnConv2dGeom),
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
        .dilation_w = v[11],
    };
    /* PyTorch's output size */
    g.out_h = (g.height + 2 * g.pad_h - g.dilation_h * (g.kernel_h - 1) - 1) / g.stride_h + 1;
    g.out_w = (g.width + 2 * g.pad_w - g.dilation_w * (g.kernel_w - 1) - 1) / g.stride_w + 1;
    g_assert_cmpint(g.out_h, >, 0);
    g_assert_cmpint(g.out_w, >, 0);
    return g;
}

static gint64 geom_x_size(const LmnConv2dGeom *g)
{
    return g->batch * g->channels * g->height * g->width;
}

static gint64 geom_cols_size(const LmnConv2dGeom *g)
{
    return g->batch * g->channels * g->kernel_h * g->kernel_w * g->out_h * g->out_w;
}

static gint64 geom_y_size(const LmnConv2dGeom *g)
{
    return g->batch * g->channels * g->out_h * g->out_w;
}

/* The input pixel (b, c, ih, iw) that cols entry (b, (c, i, j), (oh, ow)) holds, or -1 for
 * padding; written straight from the definition in ops.h. */
static gint64 im2col_source(const LmnConv2dGeom *g, gint64 b, gint64 c, gint64 i, gint64 j,
                            gint64 oh, gint64 ow)
{
    gint64 ih = oh * g->stride_h - g->pad_h + i * g->dilation_h;
    gint64 iw = ow * g->stride_w - g->pad_w + j * g->dilation_w;
    if (ih < 0 || ih >= g->height || iw < 0 || iw >= g->width)
        return -1;
    return ((b * g->channels + c) * g->height + ih) * g->width + iw;
}

/* Calls @f(cols index, x index or -1) for every cols entry. */
#define FOR_EACH_COL(g, CI, XI, BODY)                                                              \
    for (gint64 b_ = 0; b_ < (g)->batch; b_++)                                                     \
        for (gint64 c_ = 0; c_ < (g)->channels; c_++)                                              \
            for (gint64 i_ = 0; i_ < (g)->kernel_h; i_++)                                          \
                for (gint64 j_ = 0; j_ < (g)->kernel_w; j_++)                                      \
                    for (gint64 oh_ = 0; oh_ < (g)->out_h; oh_++)                                  \
                        for (gint64 ow_ = 0; ow_ < (g)->out_w; ow_++) {                            \
                            gint64 CI = ((((b_ * (g)->channels + c_) * (g)->kernel_h + i_) *       \
                                              (g)->kernel_w +                                      \
                                          j_) *                                                    \
                                             (g)->out_h +                                          \
                                         oh_) *                                                    \
                                            (g)->out_w +                                           \
                                        ow_;                                                       \
                            gint64 XI = im2col_source((g), b_, c_, i_, j_, oh_, ow_);              \
                            BODY;                                                                  \
                        }

static const GeomCase conv_geoms[] = {
    {{2, 3, 7, 9, 3, 3, 1, 1, 1, 1, 1, 1}},    /* same padding */
    {{1, 2, 8, 7, 3, 2, 2, 2, 1, 0, 1, 1}},    /* stride 2, non-square kernel */
    {{3, 2, 9, 10, 3, 3, 2, 1, 2, 2, 2, 2}},   /* padding 2, dilation 2 */
    {{2, 4, 5, 5, 1, 1, 1, 1, 0, 0, 1, 1}},    /* 1x1 */
    {{1, 1, 6, 11, 5, 3, 3, 2, 2, 1, 1, 2}},   /* mixed strides and dilations */
    {{2, 3, 4, 4, 5, 5, 1, 1, 2, 2, 1, 1}},    /* kernel larger than the image */
    {{1, 2, 13, 6, 2, 4, 2, 3, 1, 2, 3, 1}},   /* odd everything */
    {{4, 16, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1}}, /* big enough for the pool */
};

static void test_im2col_col2im(void)
{
    for (gsize gi = 0; gi < G_N_ELEMENTS(conv_geoms); gi++) {
        LmnConv2dGeom g = make_geom(&conv_geoms[gi]);
        const gint64 nx = geom_x_size(&g), nc = geom_cols_size(&g);
        g_autofree float *x = random_floats(nx, -1, 1);
        g_autofree float *cin = random_floats(nc, -1, 1);
        LmnTensor *tx = tensor_f32(nx, x), *tcols = tensor_f32(nc, NULL);
        /* NaN garbage: im2col must overwrite every entry, padding included. */
        lmn_op_fill(tcols, NAN);
        lmn_op_im2col(tx, tcols, &g);
        g_autofree float *cols = read_all(tcols);
        FOR_EACH_COL(&g, ci, xi, {
            float want = xi < 0 ? 0.0f : x[xi];
            if (cols[ci] != want)
                g_error("im2col geometry %" G_GSIZE_FORMAT ": cols[%" G_GINT64_FORMAT
                        "] = %g, want %g",
                        gi, ci, cols[ci], want);
        });

        /* col2im against the scatter-add definition, dx overwritten (NaN garbage first) */
        g_autofree double *want = g_new0(double, nx);
        FOR_EACH_COL(&g, ci, xi, {
            if (xi >= 0)
                want[xi] += cin[ci];
        });
        LmnTensor *tc = tensor_f32(nc, cin), *tdx = tensor_f32(nx, NULL);
        lmn_op_fill(tdx, NAN);
        lmn_op_col2im(tc, tdx, &g);
        g_autofree float *dx = read_all(tdx);
        g_autofree char *what = g_strdup_printf("col2im geometry %" G_GSIZE_FORMAT, gi);
        assert_close(what, dx, want, nx, 1e-5, 1e-6);

        /* The adjoint identity <im2col(x), c> == <x, col2im(c)>. */
        double lhs = 0, rhs = 0, mag = 0;
        for (gint64 i = 0; i < nc; i++) {
            lhs += (double) cols[i] * cin[i];
            mag += fabs((double) cols[i] * cin[i]);
        }
        for (gint64 i = 0; i < nx; i++)
            rhs += (double) x[i] * dx[i];
        g_assert_cmpfloat_with_epsilon(lhs, rhs, 1e-6 * mag + 1e-9);

        /* Thread count does not change the result. */
        LmnTensor *tc1 = tensor_on(backend_1, nc, cin), *tdx1 = tensor_on(backend_1, nx, NULL);
        lmn_op_col2im(tc1, tdx1, &g);
        g_autofree float *dx1 = read_all(tdx1);
        g_assert_cmpmem(dx1, nx * sizeof(float), dx, nx * sizeof(float));
        lmn_tensor_unref(tc1);
        lmn_tensor_unref(tdx1);
        lmn_tensor_unref(tx);
        lmn_tensor_unref(tcols);
        lmn_tensor_unref(tc);
        lmn_tensor_unref(tdx);
    }
}

/* A convolution as im2col + one batched GEMM (weight broadcast with stride 0), against a naive
 * direct convolution in double. */
static void test_conv_via_im2col(void)
{
    const gint64 out_channels[] = {5, 1, 7, 4};
    const gsize geoms[] = {0, 2, 4, 6};
    for (gsize t = 0; t < G_N_ELEMENTS(geoms); t++) {
        LmnConv2dGeom g = make_geom(&conv_geoms[geoms[t]]);
        const gint64 OC = out_channels[t];
        const gint64 K = g.channels * g.kernel_h * g.kernel_w, P = g.out_h * g.out_w;
        const gint64 nx = geom_x_size(&g), nc = geom_cols_size(&g), ny = g.batch * OC * P;
        g_autofree float *x = random_floats(nx, -1, 1);
        g_autofree float *w = random_floats(OC * K, -1, 1);
        LmnTensor *tx = tensor_f32(nx, x), *tw = tensor_f32(OC * K, w);
        LmnTensor *tcols = tensor_f32(nc, NULL), *ty = tensor_f32(ny, NULL);
        lmn_op_im2col(tx, tcols, &g);
        LmnGemm gemm = {.struct_size = sizeof(LmnGemm),
                        .m = OC,
                        .n = P,
                        .k = K,
                        .alpha = 1.0f,
                        .beta = 0.0f,
                        .a = tw,
                        .b = tcols,
                        .c = ty,
                        .batch = g.batch,
                        .stride_a = 0,
                        .stride_b = K * P,
                        .stride_c = OC * P};
        lmn_op_gemm(&gemm);
        g_autofree float *y = read_all(ty);
        g_autofree double *want = g_new0(double, ny);
        for (gint64 b = 0; b < g.batch; b++)
            for (gint64 o = 0; o < OC; o++)
                for (gint64 oh = 0; oh < g.out_h; oh++)
                    for (gint64 ow = 0; ow < g.out_w; ow++) {
                        double s = 0;
                        for (gint64 c = 0; c < g.channels; c++)
                            for (gint64 i = 0; i < g.kernel_h; i++)
                                for (gint64 j = 0; j < g.kernel_w; j++) {
                                    gint64 ih = oh * g.stride_h - g.pad_h + i * g.dilation_h;
                                    gint64 iw = ow * g.stride_w - g.pad_w + j * g.dilation_w;
                                    if (ih < 0 || ih >= g.height || iw < 0 || iw >= g.width)
                                        continue;
                                    s += (double) w[(o * g.channels + c) * g.kernel_h * g.kernel_w +
                                                    i * g.kernel_w + j] *
                                         x[((b * g.channels + c) * g.height + ih) * g.width + iw];
                                }
                        want[(b * OC + o) * P + oh * g.out_w + ow] = s;
                    }
        assert_close("conv via im2col", y, want, ny, 1e-5, 1e-5);
        lmn_tensor_unref(tx);
        lmn_tensor_unref(tw);
        lmn_tensor_unref(tcols);
        lmn_tensor_unref(ty);
    }
}

/* ---- pooling ---- */

/* Naive pooling in double; for MAX, @arg receives the first maximum's flat index in its plane. */
static void pool_reference(LmnPoolMode mode, const LmnConv2dGeom *g, const float *x, double *y,
                           gint32 *arg)
{
    const gint64 HW = g->height * g->width;
    for (gint64 p = 0; p < g->batch * g->channels; p++)
        for (gint64 oh = 0; oh < g->out_h; oh++)
            for (gint64 ow = 0; ow < g->out_w; ow++) {
                double best = -INFINITY, sum = 0;
                gint64 best_i = -1;
                for (gint64 i = 0; i < g->kernel_h; i++)
                    for (gint64 j = 0; j < g->kernel_w; j++) {
                        gint64 ih = oh * g->stride_h - g->pad_h + i * g->dilation_h;
                        gint64 iw = ow * g->stride_w - g->pad_w + j * g->dilation_w;
                        if (ih < 0 || ih >= g->height || iw < 0 || iw >= g->width)
                            continue; /* padding: 0 for AVG, never the maximum */
                        double v = x[p * HW + ih * g->width + iw];
                        sum += v;
                        if (best_i < 0 || v > best) {
                            best = v;
                            best_i = ih * g->width + iw;
                        }
                    }
                gint64 o = (p * g->out_h + oh) * g->out_w + ow;
                if (mode == LMN_POOL_MAX) {
                    y[o] = best;
                    arg[o] = (gint32) best_i;
                } else {
                    y[o] = sum / (double) (g->kernel_h * g->kernel_w);
                }
            }
}

static const GeomCase pool_geoms[] = {
    {{2, 3, 7, 9, 3, 3, 2, 2, 1, 1, 1, 1}},
    {{1, 2, 8, 8, 2, 2, 2, 2, 0, 0, 1, 1}},
    {{2, 2, 9, 11, 3, 2, 1, 2, 1, 1, 1, 1}},
    {{3, 5, 10, 7, 3, 3, 3, 3, 1, 1, 1, 1}},
    {{1, 3, 6, 5, 2, 3, 1, 1, 1, 1, 1, 1}},
    {{8, 16, 32, 32, 2, 2, 2, 2, 0, 0, 1, 1}}, /* big enough for the pool */
    {{2, 3, 9, 7, 2, 2, 2, 2, 0, 0, 1, 1}},    /* 2x2 fast path, last row/column dropped */
};

/* MAX only: PyTorch's MaxPool2d dilation */
static const GeomCase pool_dilated_geoms[] = {
    {{2, 2, 9, 11, 3, 2, 1, 2, 1, 1, 2, 2}},
    {{1, 3, 12, 10, 3, 3, 2, 1, 1, 0, 2, 3}},
};

static void check_pool(LmnPoolMode mode, const GeomCase *gc)
{
    LmnConv2dGeom g = make_geom(gc);
    const gint64 nx = geom_x_size(&g), ny = geom_y_size(&g);
    const gint64 HW = g.height * g.width, OHW = g.out_h * g.out_w;
    g_autofree float *x = random_floats(nx, -3, 3);
    g_autofree float *dy = random_floats(ny, -1, 1);
    g_autofree double *want = g_new(double, ny);
    g_autofree gint32 *want_arg = g_new(gint32, ny);
    pool_reference(mode, &g, x, want, want_arg);
    LmnTensor *tx = tensor_f32(nx, x), *ty = tensor_f32(ny, NULL);
    LmnTensor *targ = mode == LMN_POOL_MAX ? tensor_i32(ny, NULL) : NULL;
    lmn_op_pool2d(mode, tx, ty, targ, &g);
    g_autofree float *y = read_all(ty);
    const char *name = mode == LMN_POOL_MAX ? "max pool" : "avg pool";
    assert_close(name, y, want, ny, 1e-6, 1e-6);

    LmnTensor *tdy = tensor_f32(ny, dy), *tdx = tensor_f32(nx, NULL);
    lmn_op_fill(tdx, NAN); /* overwritten, not accumulated */
    lmn_op_pool2d_backward(mode, tdy, targ, tdx, &g);
    g_autofree float *dx = read_all(tdx);
    g_autofree double *want_dx = g_new0(double, nx);
    if (mode == LMN_POOL_MAX) {
        g_autofree gint32 *arg = read_all_i32(targ);
        g_assert_cmpmem(arg, ny * sizeof(gint32), want_arg, ny * sizeof(gint32));
        /* Routing: each dy goes to its window's maximum, summed where windows overlap. */
        for (gint64 o = 0; o < ny; o++)
            want_dx[(o / OHW) * HW + want_arg[o]] += dy[o];
        assert_close("max pool backward", dx, want_dx, nx, 1e-6, 1e-6);
    } else {
        for (gint64 p = 0; p < g.batch * g.channels; p++)
            for (gint64 oh = 0; oh < g.out_h; oh++)
                for (gint64 ow = 0; ow < g.out_w; ow++)
                    for (gint64 i = 0; i < g.kernel_h; i++)
                        for (gint64 j = 0; j < g.kernel_w; j++) {
                            gint64 ih = oh * g.stride_h - g.pad_h + i * g.dilation_h;
                            gint64 iw = ow * g.stride_w - g.pad_w + j * g.dilation_w;
                            if (ih >= 0 && ih < g.height && iw >= 0 && iw < g.width)
                                want_dx[p * HW + ih * g.width + iw] +=
                                    dy[(p * g.out_h + oh) * g.out_w + ow] /
                                    (double) (g.kernel_h * g.kernel_w);
                        }
        assert_close("avg pool backward", dx, want_dx, nx, 1e-5, 1e-6);
    }

    /* Central finite differences of L = <dy, pool(x)> on small cases (MAX away from ties). */
    if (nx <= 2000) {
        g_autofree double *yp = g_new(double, ny);
        g_autofree double *ym = g_new(double, ny);
        g_autofree gint32 *scratch = g_new(gint32, ny);
        const double h = 1e-3;
        for (gint64 i = 0; i < nx; i++) {
            const float xi = x[i];
            x[i] = (float) (xi + h);
            pool_reference(mode, &g, x, yp, scratch);
            x[i] = (float) (xi - h);
            pool_reference(mode, &g, x, ym, scratch);
            const double hp = (double) (float) (xi + h) - xi, hm = xi - (double) (float) (xi - h);
            x[i] = xi;
            double lp = 0, lm = 0;
            for (gint64 o = 0; o < ny; o++) {
                lp += dy[o] * yp[o];
                lm += dy[o] * ym[o];
            }
            const double fd = (lp - lm) / (hp + hm);
            if (!(fabs(dx[i] - fd) <= 1e-3 * fabs(fd) + 1e-4))
                g_error("%s backward: finite differences at x[%" G_GINT64_FORMAT
                        "]: backward %.7g, want %.7g",
                        name, i, dx[i], fd);
        }
    }

    /* Thread count does not change the result. */
    LmnTensor *tdy1 = tensor_on(backend_1, ny, dy), *tdx1 = tensor_on(backend_1, nx, NULL);
    LmnTensor *targ1 = mode == LMN_POOL_MAX ? tensor_i32_on(backend_1, ny, want_arg) : NULL;
    lmn_op_pool2d_backward(mode, tdy1, targ1, tdx1, &g);
    g_autofree float *dx1 = read_all(tdx1);
    g_assert_cmpmem(dx1, nx * sizeof(float), dx, nx * sizeof(float));
    g_clear_pointer(&targ1, lmn_tensor_unref);
    lmn_tensor_unref(tdy1);
    lmn_tensor_unref(tdx1);
    g_clear_pointer(&targ, lmn_tensor_unref);
    lmn_tensor_unref(tx);
    lmn_tensor_unref(ty);
    lmn_tensor_unref(tdy);
    lmn_tensor_unref(tdx);
}

static void test_pool(void)
{
    for (gsize gi = 0; gi < G_N_ELEMENTS(pool_geoms); gi++) {
        check_pool(LMN_POOL_MAX, &pool_geoms[gi]);
        check_pool(LMN_POOL_AVG, &pool_geoms[gi]);
    }
    for (gsize gi = 0; gi < G_N_ELEMENTS(pool_dilated_geoms); gi++)
        check_pool(LMN_POOL_MAX, &pool_dilated_geoms[gi]);

    /* Ties: the first maximum in window order wins, and padding never wins even over negative
     * values (a window at the corner of an all -5 image). */
    const GeomCase tie = {{1, 1, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1}};
    LmnConv2dGeom g = make_geom(&tie);
    float x[16];
    for (int i = 0; i < 16; i++)
        x[i] = -5.0f;
    LmnTensor *tx = tensor_f32(16, x), *ty = tensor_f32(16, NULL), *targ = tensor_i32(16, NULL);
    lmn_op_pool2d(LMN_POOL_MAX, tx, ty, targ, &g);
    g_autofree float *y = read_all(ty);
    g_autofree gint32 *arg = read_all_i32(targ);
    for (int oh = 0; oh < 4; oh++)
        for (int ow = 0; ow < 4; ow++) {
            g_assert_cmpfloat(y[oh * 4 + ow], ==, -5.0f);
            g_assert_cmpint(arg[oh * 4 + ow], ==, MAX(oh - 1, 0) * 4 + MAX(ow - 1, 0));
        }
    /* The 2x2 stride-2 fast path keeps the rule: in each window of a 4x4 image the first
     * maximum wins among ties, and a NaN wins over numbers (the first NaN kept). */
    {
        const GeomCase two = {{1, 1, 4, 4, 2, 2, 2, 2, 0, 0, 1, 1}};
        LmnConv2dGeom g2 = make_geom(&two);
        const float xs[16] = {1, 3, 7, 7,     /* window 0: 3 at 1; window 1: first 7 at 2 */
                              3, 2, 7, NAN,   /* window 1's NaN at 7 wins over the 7s */
                              NAN, 0, -1, -2, /* window 2: first NaN at 8 */
                              NAN, 5, -3, -1};
        LmnTensor *x2 = tensor_f32(16, xs), *y2 = tensor_f32(4, NULL), *a2 = tensor_i32(4, NULL);
        lmn_op_pool2d(LMN_POOL_MAX, x2, y2, a2, &g2);
        g_autofree float *yv = read_all(y2);
        g_autofree gint32 *av = read_all_i32(a2);
        g_assert_cmpfloat(yv[0], ==, 3.0f);
        g_assert_cmpint(av[0], ==, 1);
        g_assert_true(isnan(yv[1]));
        g_assert_cmpint(av[1], ==, 7);
        g_assert_true(isnan(yv[2]));
        g_assert_cmpint(av[2], ==, 8);
        g_assert_cmpfloat(yv[3], ==, -1.0f);
        g_assert_cmpint(av[3], ==, 10);
        lmn_tensor_unref(x2);
        lmn_tensor_unref(y2);
        lmn_tensor_unref(a2);
    }
    /* The fast path on many ties: values in {0, 1, 2}, odd height and width (the last row and
     * column dropped), planes of 65 output rows of 100 input columns (more than its buffer's 40
     * rows at a time), split across the pool; the first maximum in window order wins. */
    {
        const GeomCase many = {{3, 4, 131, 101, 2, 2, 2, 2, 0, 0, 1, 1}};
        LmnConv2dGeom g3 = make_geom(&many);
        const gint64 nx = geom_x_size(&g3), ny = geom_y_size(&g3);
        g_autofree float *xs = random_floats((gsize) nx, 0, 3);
        for (gint64 i = 0; i < nx; i++)
            xs[i] = floorf(xs[i]);
        g_autofree double *want = g_new(double, ny);
        g_autofree gint32 *want_arg = g_new(gint32, ny);
        pool_reference(LMN_POOL_MAX, &g3, xs, want, want_arg);
        LmnTensor *x3 = tensor_f32(nx, xs), *y3 = tensor_f32(ny, NULL), *a3 = tensor_i32(ny, NULL);
        lmn_op_pool2d(LMN_POOL_MAX, x3, y3, a3, &g3);
        g_autofree float *yv = read_all(y3);
        g_autofree gint32 *av = read_all_i32(a3);
        for (gint64 o = 0; o < ny; o++) {
            g_assert_cmpfloat(yv[o], ==, want[o]);
            g_assert_cmpint(av[o], ==, want_arg[o]);
        }
        lmn_tensor_unref(x3);
        lmn_tensor_unref(y3);
        lmn_tensor_unref(a3);
    }
    /* Signed zeros tie: the first in window order is kept, sign and all. */
    {
        const GeomCase two = {{1, 1, 2, 4, 2, 2, 2, 2, 0, 0, 1, 1}};
        LmnConv2dGeom g4 = make_geom(&two);
        const float xs[8] = {-0.0f, -1,    0.0f,  0.0f, /* window 0: -0 at 0; window 1: +0 at 2 */
                             0.0f,  -0.0f, -0.0f, -0.0f};
        LmnTensor *x4 = tensor_f32(8, xs), *y4 = tensor_f32(2, NULL), *a4 = tensor_i32(2, NULL);
        lmn_op_pool2d(LMN_POOL_MAX, x4, y4, a4, &g4);
        g_autofree float *yv = read_all(y4);
        g_autofree gint32 *av = read_all_i32(a4);
        g_assert_true(signbit(yv[0]));
        g_assert_cmpint(av[0], ==, 0);
        g_assert_false(signbit(yv[1]));
        g_assert_cmpint(av[1], ==, 2);
        lmn_tensor_unref(x4);
        lmn_tensor_unref(y4);
        lmn_tensor_unref(a4);
    }
    /* AVG counts the padding in the divisor (PyTorch's count_include_pad): corner = 4 / 9. */
    lmn_op_fill(tx, 1.0f);
    lmn_op_pool2d(LMN_POOL_AVG, tx, ty, NULL, &g);
    g_autofree float *avg = read_all(ty);
    g_assert_cmpfloat_with_epsilon(avg[0], 4.0 / 9.0, 1e-7);
    g_assert_cmpfloat_with_epsilon(avg[1], 6.0 / 9.0, 1e-7);
    g_assert_cmpfloat_with_epsilon(avg[5], 1.0, 1e-7);
    lmn_tensor_unref(tx);
    lmn_tensor_unref(ty);
    lmn_tensor_unref(targ);
}

/* ---- batch normalisation ---- */

/* Batch statistics and y = BN(x) in double, x [outer, C, inner]. */
static void bn_reference(const double *x, const double *w, const double *b, gint64 O, gint64 C,
                         gint64 I, double eps, double *mean, double *var, double *y)
{
    const double M = (double) (O * I);
    for (gint64 c = 0; c < C; c++) {
        double s = 0, v = 0;
        for (gint64 o = 0; o < O; o++)
            for (gint64 i = 0; i < I; i++)
                s += x[(o * C + c) * I + i];
        const double m = s / M;
        for (gint64 o = 0; o < O; o++)
            for (gint64 i = 0; i < I; i++) {
                double d = x[(o * C + c) * I + i] - m;
                v += d * d;
            }
        mean[c] = m;
        var[c] = v / M;
        if (y != NULL)
            for (gint64 o = 0; o < O; o++)
                for (gint64 i = 0; i < I; i++) {
                    gint64 e = (o * C + c) * I + i;
                    y[e] = (x[e] - m) / sqrt(var[c] + eps) * (w ? w[c] : 1.0) + (b ? b[c] : 0.0);
                }
    }
}

static double *to_double(const float *v, gsize n)
{
    double *d = g_new(double, MAX(n, 1));
    for (gsize i = 0; i < n; i++)
        d[i] = v[i];
    return d;
}

static void test_batchnorm(void)
{
    const gint64 shapes[][3] = {{7, 3, 5},    {16, 5, 1},    {5, 130, 1}, {3, 2, 1},
                                {4, 3, 3000}, {300, 200, 1}, {2, 1, 17}};
    const float eps = 1e-5f;
    for (gsize s = 0; s < G_N_ELEMENTS(shapes); s++) {
        const gint64 O = shapes[s][0], C = shapes[s][1], I = shapes[s][2], n = O * C * I;
        /* An offset mean: a one-pass E[x^2] - E[x]^2 in float would lose the variance. */
        g_autofree float *x = random_floats(n, 2.0, 4.0);
        g_autofree float *dy = random_floats(n, -1, 1);
        g_autofree float *w = random_floats(C, 0.5, 1.5);
        g_autofree float *bias = random_floats(C, -1, 1);
        g_autofree double *xd = to_double(x, n), *wd = to_double(w, C), *bd = to_double(bias, C);
        g_autofree double *mean = g_new(double, C), *var = g_new(double, C);
        g_autofree double *y = g_new(double, n);
        bn_reference(xd, wd, bd, O, C, I, eps, mean, var, y);

        LmnTensor *tx = tensor_f32(n, x), *tdy = tensor_f32(n, dy);
        LmnTensor *tw = tensor_f32(C, w), *tb = tensor_f32(C, bias);
        LmnTensor *tm = tensor_f32(C, NULL), *tv = tensor_f32(C, NULL), *ty = tensor_f32(n, NULL);
        lmn_op_batchnorm_stats(tx, tm, tv, O, C, I);
        g_autofree float *gm = read_all(tm), *gv = read_all(tv);
        assert_close("batchnorm mean", gm, mean, C, 1e-6, 1e-7);
        assert_close("batchnorm var", gv, var, C, 1e-5, 1e-8);

        lmn_op_batchnorm_forward(tx, tm, tv, tw, tb, ty, eps, O, C, I);
        g_autofree float *gy = read_all(ty);
        assert_close("batchnorm forward", gy, y, n, 1e-4, 1e-4);
        /* without affine parameters (weight 1, bias 0), in place */
        g_autofree double *y0 = g_new(double, n);
        bn_reference(xd, NULL, NULL, O, C, I, eps, mean, var, y0);
        LmnTensor *tx2 = tensor_f32(n, x);
        lmn_op_batchnorm_forward(tx2, tm, tv, NULL, NULL, tx2, eps, O, C, I);
        g_autofree float *gy0 = read_all(tx2);
        assert_close("batchnorm forward, not affine", gy0, y0, n, 1e-4, 1e-4);

        /* Backward against the analytic training-mode gradient in double. */
        LmnTensor *tdx = tensor_f32(n, NULL), *tdw = tensor_f32(C, NULL),
                  *tdb = tensor_f32(C, NULL);
        lmn_op_fill(tdw, NAN);
        lmn_op_fill(tdb, NAN);
        lmn_op_batchnorm_backward(tx, tdy, tm, tv, tw, tdx, tdw, tdb, eps, O, C, I);
        g_autofree float *gdx = read_all(tdx), *gdw = read_all(tdw), *gdb = read_all(tdb);
        g_autofree double *wdx = g_new(double, n);
        g_autofree double *wdw = g_new0(double, C), *wdb = g_new0(double, C);
        const double M = (double) (O * I);
        for (gint64 c = 0; c < C; c++) {
            const double inv = 1.0 / sqrt(var[c] + eps);
            double sdy = 0, sdyx = 0;
            for (gint64 o = 0; o < O; o++)
                for (gint64 i = 0; i < I; i++) {
                    gint64 e = (o * C + c) * I + i;
                    sdy += dy[e];
                    sdyx += dy[e] * (xd[e] - mean[c]) * inv;
                }
            wdw[c] = sdyx;
            wdb[c] = sdy;
            for (gint64 o = 0; o < O; o++)
                for (gint64 i = 0; i < I; i++) {
                    gint64 e = (o * C + c) * I + i;
                    double xhat = (xd[e] - mean[c]) * inv;
                    wdx[e] = wd[c] * inv * (dy[e] - sdy / M - xhat * sdyx / M);
                }
        }
        assert_close("batchnorm dx", gdx, wdx, n, 1e-3, 1e-4);
        assert_close("batchnorm dweight", gdw, wdw, C, 1e-4, 1e-4);
        assert_close("batchnorm dbias", gdb, wdb, C, 1e-5, 1e-5);

        /* ... and against central finite differences of L = <dy, BN(x)> with batch statistics,
         * all in double (small shapes: each step recomputes the statistics). */
        if (n <= 200) {
            g_autofree double *yp = g_new(double, n), *ym = g_new(double, n);
            g_autofree double *mm = g_new(double, C), *vv = g_new(double, C);
            const double h = 1e-5;
            for (gint64 e = 0; e < n; e++) {
                const double xe = xd[e];
                xd[e] = xe + h;
                bn_reference(xd, wd, bd, O, C, I, eps, mm, vv, yp);
                xd[e] = xe - h;
                bn_reference(xd, wd, bd, O, C, I, eps, mm, vv, ym);
                xd[e] = xe;
                const double fd = (dot_fd(dy, yp, n) - dot_fd(dy, ym, n)) / (2 * h);
                if (!(fabs(gdx[e] - fd) <= 1e-3 * fabs(fd) + 2e-4))
                    g_error("batchnorm dx [%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT
                            ",%" G_GINT64_FORMAT "]: finite differences at %" G_GINT64_FORMAT
                            ": backward %.7g, want %.7g",
                            O, C, I, e, gdx[e], fd);
            }
            for (gint64 c = 0; c < C; c++) {
                const double wc = wd[c], bc = bd[c];
                wd[c] = wc + h;
                bn_reference(xd, wd, bd, O, C, I, eps, mm, vv, yp);
                wd[c] = wc - h;
                bn_reference(xd, wd, bd, O, C, I, eps, mm, vv, ym);
                wd[c] = wc;
                double fd = (dot_fd(dy, yp, n) - dot_fd(dy, ym, n)) / (2 * h);
                g_assert_cmpfloat_with_epsilon(gdw[c], fd, 1e-4 * fabs(fd) + 1e-4);
                bd[c] = bc + h;
                bn_reference(xd, wd, bd, O, C, I, eps, mm, vv, yp);
                bd[c] = bc - h;
                bn_reference(xd, wd, bd, O, C, I, eps, mm, vv, ym);
                bd[c] = bc;
                fd = (dot_fd(dy, yp, n) - dot_fd(dy, ym, n)) / (2 * h);
                g_assert_cmpfloat_with_epsilon(gdb[c], fd, 1e-4 * fabs(fd) + 1e-4);
            }
        }

        /* NULL weight (1) and NULL gradients; dx may be dy; 1 thread gives the same bits. */
        LmnTensor *tx1 = tensor_on(backend_1, n, x), *tdy1 = tensor_on(backend_1, n, dy);
        LmnTensor *tm1 = tensor_on(backend_1, C, gm), *tv1 = tensor_on(backend_1, C, gv);
        LmnTensor *tw1 = tensor_on(backend_1, C, w), *tdx1 = tensor_on(backend_1, n, NULL);
        lmn_op_batchnorm_backward(tx1, tdy1, tm1, tv1, tw1, tdx1, NULL, NULL, eps, O, C, I);
        g_autofree float *gdx1 = read_all(tdx1);
        g_assert_cmpmem(gdx1, n * sizeof(float), gdx, n * sizeof(float));
        lmn_op_batchnorm_backward(tx1, tdy1, tm1, tv1, NULL, tdy1, NULL, NULL, eps, O, C, I);
        g_autofree float *gdx_nw = read_all(tdy1);
        for (gint64 e = 0; e < n; e++)
            wdx[e] /= wd[(e / I) % C];
        assert_close("batchnorm dx, no weight, dx = dy", gdx_nw, wdx, n, 1e-3, 1e-4);
        lmn_tensor_unref(tx1);
        lmn_tensor_unref(tdy1);
        lmn_tensor_unref(tm1);
        lmn_tensor_unref(tv1);
        lmn_tensor_unref(tw1);
        lmn_tensor_unref(tdx1);

        lmn_tensor_unref(tx);
        lmn_tensor_unref(tx2);
        lmn_tensor_unref(tdy);
        lmn_tensor_unref(tw);
        lmn_tensor_unref(tb);
        lmn_tensor_unref(tm);
        lmn_tensor_unref(tv);
        lmn_tensor_unref(ty);
        lmn_tensor_unref(tdx);
        lmn_tensor_unref(tdw);
        lmn_tensor_unref(tdb);
    }
}

/* ---- dropout, random_normal ---- */

/* Word i % 4 of Philox block i / 4 of (seed, stream), restated from ops.h. */
static guint32 philox_word(guint64 seed, guint64 stream, guint64 i, guint word)
{
    const guint32 key[2] = {(guint32) (seed & 0xffffffffu), (guint32) (seed >> 32)};
    const guint32 ctr[4] = {(guint32) (i & 0xffffffffu), (guint32) (i >> 32),
                            (guint32) (stream & 0xffffffffu), (guint32) (stream >> 32)};
    guint32 out[4];
    lmn_philox4x32(key, ctr, out);
    return out[word];
}

static void test_dropout(void)
{
    const guint64 seed = G_GUINT64_CONSTANT(0x123456789abcdef0);
    const guint64 stream = LMN_STREAM(LMN_STREAM_LAYER, 3);
    const float ps[] = {0.0f, 0.1f, 0.5f, 0.9f};
    const gsize sizes[] = {37, BIG};
    for (gsize si = 0; si < G_N_ELEMENTS(sizes); si++)
        for (gsize pi = 0; pi < G_N_ELEMENTS(ps); pi++) {
            const gsize n = sizes[si];
            const float p = ps[pi];
            const float keep = 1.0f / (1.0f - p);
            g_autofree float *x = random_floats(n, -2, 2);
            LmnTensor *tx = tensor_f32(n, x), *ty = tensor_f32(n, NULL), *tm = tensor_f32(n, NULL);
            lmn_op_dropout(tx, ty, tm, p, seed, stream);
            g_autofree float *y = read_all(ty), *m = read_all(tm);
            gsize kept = 0;
            for (gsize i = 0; i < n; i++) {
                g_assert_true(m[i] == 0.0f || m[i] == keep);
                g_assert_cmpfloat(y[i], ==, x[i] * m[i]);
                kept += m[i] != 0.0f;
            }
            if (n == BIG) {
                const double sigma = sqrt(p * (1.0 - p) / (double) n);
                const double frac = (double) kept / (double) n;
                if (!(fabs(frac - (1.0 - p)) <= 5 * sigma + 1e-12))
                    g_error("dropout p=%g: kept %.5f, want %.5f +- 5 * %.5f", p, frac, 1.0 - p,
                            sigma);
            }
            /* The mask, recomputed from lmn_philox4x32 for a few hundred indices (the first
             * ones, so every word of a block, and random ones up to the end). */
            for (gsize t = 0; t < MIN(n, 300); t++) {
                const gsize i = t < 64 ? t : (gsize) g_rand_int_range(rng, 0, (gint32) n);
                const guint32 wrd = philox_word(seed, stream, i / 4, i % 4);
                const float u = (float) (wrd >> 8) * (1.0f / 16777216.0f);
                g_assert_cmpfloat(m[i], ==, u >= p ? keep : 0.0f);
            }
            /* One thread gives the same mask. */
            LmnTensor *tx1 = tensor_on(backend_1, n, x), *ty1 = tensor_on(backend_1, n, NULL);
            LmnTensor *tm1 = tensor_on(backend_1, n, NULL);
            lmn_op_dropout(tx1, ty1, tm1, p, seed, stream);
            g_autofree float *m1 = read_all(tm1), *y1 = read_all(ty1);
            g_assert_cmpmem(m1, n * sizeof(float), m, n * sizeof(float));
            g_assert_cmpmem(y1, n * sizeof(float), y, n * sizeof(float));
            /* Another stream (and another seed) gives another mask; in place y == x works. */
            if (p > 0.0f) {
                lmn_op_dropout(tx1, tx1, tm1, p, seed, stream + 1);
                g_autofree float *m2 = read_all(tm1), *y2 = read_all(tx1);
                gsize diff = 0;
                for (gsize i = 0; i < n; i++) {
                    diff += m2[i] != m[i];
                    g_assert_cmpfloat(y2[i], ==, x[i] * m2[i]);
                }
                g_assert_cmpuint(diff, >, n == BIG ? n / 20 : 0);
                lmn_op_dropout(tx, ty, tm1, p, seed + 1, stream);
                g_autofree float *m3 = read_all(tm1);
                g_assert_true(memcmp(m3, m, n * sizeof(float)) != 0);
            }
            lmn_tensor_unref(tx1);
            lmn_tensor_unref(ty1);
            lmn_tensor_unref(tm1);
            lmn_tensor_unref(tx);
            lmn_tensor_unref(ty);
            lmn_tensor_unref(tm);
        }
}

static void test_random_normal(void)
{
    const guint64 seed = 42, stream = LMN_STREAM(LMN_STREAM_NOISE, 7);
    const float mean = 0.5f, std = 2.0f;
    const gsize n = BIG;
    LmnTensor *t = tensor_f32(n, NULL);
    lmn_op_random_normal(t, mean, std, seed, stream);
    g_autofree float *v = read_all(t);
    g_autofree double *want = g_new(double, n);
    double s = 0, ss = 0;
    for (gsize i = 0; i < n; i++) {
        const double u1 = ((double) (philox_word(seed, stream, i, 0) >> 8) + 1.0) / 16777216.0;
        const double u2 = (double) (philox_word(seed, stream, i, 1) >> 8) / 16777216.0;
        want[i] = mean + std * sqrt(-2.0 * log(u1)) * cos(2.0 * G_PI * u2);
        s += v[i];
        ss += (double) v[i] * v[i];
    }
    assert_close("random_normal recipe", v, want, n, 1e-6, 1e-6);
    const double m = s / n, var = ss / n - m * m;
    g_assert_cmpfloat(fabs(m - mean), <=, 5 * std / sqrt((double) n));
    g_assert_cmpfloat(fabs(var - std * std), <=, 5 * std * std * sqrt(2.0 / n));

    LmnTensor *t1 = tensor_on(backend_1, n, NULL);
    lmn_op_random_normal(t1, mean, std, seed, stream);
    g_autofree float *v1 = read_all(t1);
    g_assert_cmpmem(v1, n * sizeof(float), v, n * sizeof(float));
    lmn_op_random_normal(t1, mean, std, seed, stream + 1);
    g_autofree float *v2 = read_all(t1);
    gsize same = 0;
    for (gsize i = 0; i < n; i++)
        same += v2[i] == v[i];
    g_assert_cmpuint(same, <, n / 1000);
    lmn_tensor_unref(t);
    lmn_tensor_unref(t1);
}

/* ---- clamp ---- */

static void test_clamp(void)
{
    const gsize sizes[] = {5, BIG};
    for (gsize s = 0; s < G_N_ELEMENTS(sizes); s++) {
        const gsize n = sizes[s];
        g_autofree float *x = random_floats(n, -3, 3);
        x[0] = NAN;
        x[1] = -1.0f;
        x[2] = 0.5f;
        x[3] = INFINITY;
        LmnTensor *t = tensor_f32(n, x);
        lmn_op_clamp(t, -1.0f, 0.5f);
        g_autofree float *v = read_all(t);
        g_assert_true(isnan(v[0])); /* NaN propagates, as in torch.clamp */
        for (gsize i = 1; i < n; i++)
            g_assert_cmpfloat(v[i], ==, x[i] < -1.0f ? -1.0f : (x[i] > 0.5f ? 0.5f : x[i]));
        lmn_tensor_unref(t);
    }
}

/* ---- softmax ---- */

static void softmax_reference(const double *x, double *y, gint64 rows, gint64 cols)
{
    for (gint64 r = 0; r < rows; r++) {
        double m = -INFINITY, s = 0;
        for (gint64 q = 0; q < cols; q++)
            m = MAX(m, x[r * cols + q]);
        for (gint64 q = 0; q < cols; q++)
            s += exp(x[r * cols + q] - m);
        for (gint64 q = 0; q < cols; q++)
            y[r * cols + q] = exp(x[r * cols + q] - m) / s;
    }
}

static void test_softmax(void)
{
    const gint64 shapes[][2] = {{1, 1}, {7, 13}, {300, 400}, {5, 1000}, {3, 4}};
    for (gsize s = 0; s < G_N_ELEMENTS(shapes); s++) {
        const gint64 R = shapes[s][0], K = shapes[s][1], n = R * K;
        g_autofree float *x = random_floats(n, -5, 5);
        if (n == 12) { /* stability: logits of +-1000 */
            const float big[12] = {1000, 999,   -1000, 0,    -1000, -1000,
                                   -999, -1000, 1000,  1000, 1000,  1000};
            memcpy(x, big, sizeof big);
        }
        g_autofree float *dy = random_floats(n, -1, 1);
        g_autofree double *xd = to_double(x, n), *y = g_new(double, n);
        softmax_reference(xd, y, R, K);
        LmnTensor *tx = tensor_f32(n, x), *ty = tensor_f32(n, NULL);
        lmn_op_softmax(tx, ty, R, K);
        g_autofree float *gy = read_all(ty);
        assert_close("softmax", gy, y, n, 1e-5, 1e-7);
        for (gint64 r = 0; r < R; r++) {
            double sum = 0;
            for (gint64 q = 0; q < K; q++) {
                g_assert_true(isfinite(gy[r * K + q]));
                sum += gy[r * K + q];
            }
            g_assert_cmpfloat_with_epsilon(sum, 1.0, 1e-5);
        }
        /* backward: analytic in double, then finite differences on the small shapes */
        LmnTensor *tdy = tensor_f32(n, dy), *tdx = tensor_f32(n, NULL);
        lmn_op_softmax_backward(ty, tdy, tdx, R, K);
        g_autofree float *gdx = read_all(tdx);
        g_autofree double *wdx = g_new(double, n);
        for (gint64 r = 0; r < R; r++) {
            double dot = 0;
            for (gint64 q = 0; q < K; q++)
                dot += dy[r * K + q] * y[r * K + q];
            for (gint64 q = 0; q < K; q++)
                wdx[r * K + q] = y[r * K + q] * (dy[r * K + q] - dot);
        }
        assert_close("softmax backward", gdx, wdx, n, 1e-4, 1e-6);
        if (n <= 100) {
            g_autofree double *yp = g_new(double, n), *ym = g_new(double, n);
            const double h = 1e-6;
            for (gint64 e = 0; e < n; e++) {
                const double xe = xd[e];
                xd[e] = xe + h;
                softmax_reference(xd, yp, R, K);
                xd[e] = xe - h;
                softmax_reference(xd, ym, R, K);
                xd[e] = xe;
                const double fd = (dot_fd(dy, yp, n) - dot_fd(dy, ym, n)) / (2 * h);
                g_assert_cmpfloat_with_epsilon(gdx[e], fd, 1e-4 * fabs(fd) + 1e-6);
            }
        }
        /* in place: y == x, and dx == dy */
        lmn_op_softmax(tx, tx, R, K);
        g_autofree float *inplace = read_all(tx);
        g_assert_cmpmem(inplace, n * sizeof(float), gy, n * sizeof(float));
        lmn_op_softmax_backward(ty, tdy, tdy, R, K);
        g_autofree float *inplace_dx = read_all(tdy);
        g_assert_cmpmem(inplace_dx, n * sizeof(float), gdx, n * sizeof(float));
        lmn_tensor_unref(tx);
        lmn_tensor_unref(ty);
        lmn_tensor_unref(tdy);
        lmn_tensor_unref(tdx);
    }
}

/* ---- copy_block ---- */

static void test_copy_block(void)
{
    /* {rows, cols, dst_offset, dst_stride, src_offset, src_stride} */
    const gint64 cases[][6] = {
        {7, 9, 3, 13, 5, 11}, {1, 1, 0, 1, 0, 1}, {4, 6, 2, 6, 0, 6}, {400, 300, 17, 310, 1, 301}};
    const float betas[] = {0.0f, 1.0f, 0.5f};
    for (gsize ci = 0; ci < G_N_ELEMENTS(cases); ci++)
        for (gsize bi = 0; bi < G_N_ELEMENTS(betas); bi++) {
            const gint64 R = cases[ci][0], K = cases[ci][1], doff = cases[ci][2];
            const gint64 dstr = cases[ci][3], soff = cases[ci][4], sstr = cases[ci][5];
            const float beta = betas[bi];
            const gint64 nd = doff + (R - 1) * dstr + K + 5, ns = soff + (R - 1) * sstr + K + 3;
            g_autofree float *d0 = random_floats(nd, -1, 1);
            g_autofree float *src = random_floats(ns, -1, 1);
            /* beta == 0 must not read dst: NaN inside the block must not leak through. */
            if (beta == 0.0f)
                for (gint64 r = 0; r < R; r++)
                    d0[doff + r * dstr] = NAN;
            LmnTensor *td = tensor_f32(nd, d0), *ts = tensor_f32(ns, src);
            lmn_op_copy_block(td, doff, dstr, ts, soff, sstr, R, K, beta);
            g_autofree float *got = read_all(td);
            g_autofree double *want = to_double(d0, nd);
            for (gint64 r = 0; r < R; r++)
                for (gint64 q = 0; q < K; q++) {
                    gint64 e = doff + r * dstr + q;
                    want[e] = src[soff + r * sstr + q] + (beta == 0.0f ? 0.0 : beta * d0[e]);
                }
            /* Outside the block nothing changes (NaN padding compares as NaN). */
            for (gint64 e = 0; e < nd; e++) {
                if (isnan(want[e])) {
                    g_assert_true(isnan(got[e]));
                    continue;
                }
                g_assert_cmpfloat_with_epsilon(got[e], want[e], 1e-6);
            }
            lmn_tensor_unref(td);
            lmn_tensor_unref(ts);
        }
    /* Within one tensor: a row-block moved down by one row (overlapping source and target). */
    float v[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    LmnTensor *t = tensor_f32(12, v);
    lmn_op_copy_block(t, 4, 4, t, 0, 4, 2, 4, 0.0f);
    g_autofree float *got = read_all(t);
    const float want[12] = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
    (void) want;
    /* Rows are copied in order, so row 2 receives the already-copied row 1. */
    g_assert_cmpmem(got, sizeof v, want, sizeof v);
    lmn_tensor_unref(t);
}

/* ---- gather, scatter-add ---- */

static void check_gather_scatter(gboolean int_indices, gint64 V, gint64 dim, gint64 n,
                                 const gint32 *idx)
{
    g_autofree float *table = random_floats(V * dim, -1, 1);
    g_autofree float *src = random_floats(n * dim, -1, 1);
    g_autofree float *g0 = random_floats(V * dim, -1, 1);
    g_autofree float *fidx = g_new(float, n);
    for (gint64 i = 0; i < n; i++)
        fidx[i] = (float) idx[i];
    LmnTensor *tidx = int_indices ? tensor_i32(n, idx) : tensor_f32(n, fidx);
    LmnTensor *ttab = tensor_f32(V * dim, table), *tout = tensor_f32(n * dim, NULL);
    lmn_op_fill(tout, NAN);
    lmn_op_gather_rows(ttab, tidx, tout, n, dim);
    g_autofree float *out = read_all(tout);
    for (gint64 i = 0; i < n; i++)
        for (gint64 q = 0; q < dim; q++) {
            const gboolean in = idx[i] >= 0 && idx[i] < V;
            g_assert_cmpfloat(out[i * dim + q], ==, in ? table[idx[i] * dim + q] : 0.0f);
        }

    LmnTensor *tg = tensor_f32(V * dim, g0), *tsrc = tensor_f32(n * dim, src);
    lmn_op_scatter_add_rows(tg, tidx, tsrc, n, dim);
    g_autofree float *grad = read_all(tg);
    g_autofree double *want = to_double(g0, V * dim);
    for (gint64 i = 0; i < n; i++)
        if (idx[i] >= 0 && idx[i] < V) /* out of range: skipped */
            for (gint64 q = 0; q < dim; q++)
                want[idx[i] * dim + q] += src[i * dim + q];
    assert_close("scatter_add_rows", grad, want, V * dim, 1e-5, 1e-5);

    /* The adjoint identity <gather(T), S> == <T, scatter(S)> from a zero gradient. */
    lmn_op_fill(tg, 0.0f);
    lmn_op_scatter_add_rows(tg, tidx, tsrc, n, dim);
    g_autofree float *scattered = read_all(tg);
    double lhs = 0, rhs = 0, mag = 0;
    for (gint64 e = 0; e < n * dim; e++) {
        lhs += (double) out[e] * src[e];
        mag += fabs((double) out[e] * src[e]);
    }
    for (gint64 e = 0; e < V * dim; e++)
        rhs += (double) table[e] * scattered[e];
    g_assert_cmpfloat_with_epsilon(lhs, rhs, 1e-5 * mag + 1e-9);

    /* Deterministic: one thread gives the same bits. */
    LmnTensor *tidx1 =
        int_indices ? tensor_i32_on(backend_1, n, idx) : tensor_on(backend_1, n, fidx);
    LmnTensor *tg1 = tensor_on(backend_1, V * dim, NULL),
              *tsrc1 = tensor_on(backend_1, n * dim, src);
    lmn_op_scatter_add_rows(tg1, tidx1, tsrc1, n, dim);
    g_autofree float *grad1 = read_all(tg1);
    g_assert_cmpmem(grad1, V * dim * sizeof(float), scattered, V * dim * sizeof(float));
    lmn_tensor_unref(tidx1);
    lmn_tensor_unref(tg1);
    lmn_tensor_unref(tsrc1);
    lmn_tensor_unref(tidx);
    lmn_tensor_unref(ttab);
    lmn_tensor_unref(tout);
    lmn_tensor_unref(tg);
    lmn_tensor_unref(tsrc);
}

static void test_gather_scatter(void)
{
    /* Duplicates accumulate; -1, V and 100 are out of range. */
    const gint32 small[] = {3, 0, 3, 10, -1, 11, 7, 3, 100, 0, 5, 5, 5, 2, 9, 1, 4, 6, 8, 3};
    for (int k = 0; k < 2; k++)
        check_gather_scatter(k == 1, 11, 7, G_N_ELEMENTS(small), small);
    /* Large: many duplicates per row, split across the pool. */
    const gint64 n = 5003, V = 50, dim = 64;
    g_autofree gint32 *idx = g_new(gint32, n);
    for (gint64 i = 0; i < n; i++)
        idx[i] = g_rand_int_range(rng, -2, (gint32) V + 2);
    for (int k = 0; k < 2; k++)
        check_gather_scatter(k == 1, V, dim, n, idx);

    /* The duplicate sum, exactly: three 1s into one row. */
    const gint32 dup[3] = {1, 1, 1};
    const float ones[6] = {1, 1, 1, 1, 1, 1};
    LmnTensor *tidx = tensor_i32(3, dup), *tg = tensor_f32(6, NULL), *ts = tensor_f32(6, ones);
    lmn_op_fill(tg, 0.0f);
    lmn_op_scatter_add_rows(tg, tidx, ts, 3, 2);
    g_autofree float *g = read_all(tg);
    const float want[6] = {0, 0, 3, 3, 0, 0};
    g_assert_cmpmem(g, sizeof want, want, sizeof want);
    lmn_tensor_unref(tidx);
    lmn_tensor_unref(tg);
    lmn_tensor_unref(ts);
}

/* ---- binary cross-entropy with logits ---- */

static double bce_element(double x, double t)
{
    /* the textbook form, in double: accurate enough for the |x| <= 8 of the finite differences
     * (1 - sigmoid(x) cancels for large x, which is why the op uses the stable form) */
    const double s = 1.0 / (1.0 + exp(-x));
    return -(t * log(s) + (1 - t) * log1p(-s));
}

static void test_bce_logits(void)
{
    const gsize sizes[] = {1, 13, BIG};
    for (gsize si = 0; si < G_N_ELEMENTS(sizes); si++) {
        const gsize n = sizes[si];
        g_autofree float *x = random_floats(n, -8, 8);
        g_autofree float *t = random_floats(n, 0, 1);
        if (n > 4) { /* extremes: the stable form must stay finite */
            x[0] = 100.0f;
            x[1] = -100.0f;
            x[2] = 0.0f;
            t[0] = 0.0f;
            t[1] = 1.0f;
        }
        double sum = 0;
        for (gsize i = 0; i < n; i++) {
            const double xi = x[i];
            sum += MAX(xi, 0.0) - xi * t[i] + log1p(exp(-fabs(xi)));
        }
        LmnTensor *tx = tensor_f32(n, x), *tt = tensor_f32(n, t), *tl = tensor_f32(1, NULL);
        lmn_op_bce_logits(tx, tt, tl);
        const double want = sum / (double) n;
        g_assert_cmpfloat_with_epsilon(read_scalar(tl), want, 1e-6 * fabs(want) + 1e-7);

        const float scale = 1.0f / (float) n;
        LmnTensor *tdx = tensor_f32(n, NULL);
        lmn_op_bce_logits_backward(tx, tt, tdx, scale);
        g_autofree float *dx = read_all(tdx);
        g_autofree double *wdx = g_new(double, n);
        for (gsize i = 0; i < n; i++)
            wdx[i] = scale * (1.0 / (1.0 + exp(-(double) x[i])) - t[i]);
        assert_close("bce backward", dx, wdx, n, 1e-5, 1e-9);
        /* finite differences of the mean loss in double */
        for (gsize i = 0; i < MIN(n, 200); i++) {
            const double xi = x[i], h = 1e-6;
            if (fabs(xi) > 10)
                continue;
            const double fd =
                (bce_element(xi + h, t[i]) - bce_element(xi - h, t[i])) / (2 * h) / (double) n;
            g_assert_cmpfloat_with_epsilon(dx[i], fd, 1e-4 * fabs(fd) + 1e-7 / (double) n);
        }
        /* thread count independence of the mean */
        LmnTensor *tx1 = tensor_on(backend_1, n, x), *tt1 = tensor_on(backend_1, n, t);
        LmnTensor *tl1 = tensor_on(backend_1, 1, NULL);
        lmn_op_bce_logits(tx1, tt1, tl1);
        float l3 = read_scalar(tl), l1 = read_scalar(tl1);
        g_assert_cmpmem(&l3, sizeof l3, &l1, sizeof l1);
        lmn_tensor_unref(tx1);
        lmn_tensor_unref(tt1);
        lmn_tensor_unref(tl1);
        lmn_tensor_unref(tx);
        lmn_tensor_unref(tt);
        lmn_tensor_unref(tl);
        lmn_tensor_unref(tdx);
    }
}

/* ---- a backend without the 1.1 and 1.3 ops ---- */

static void test_unsupported_op(void)
{
    g_autoptr(GError) error = NULL;
    load_fake_backends();

    /* clamp: recorded, reported at synchronisation naming the op and the backend, and kept */
    LmnBackend *b = lmn_backend_new(registry, "test_fake", NULL, NULL, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_backend_synchronize(b, &error));
    LmnTensor *t = tensor_on(b, 8, NULL);
    lmn_op_clamp(t, 0.0f, 1.0f);
    g_assert_false(lmn_backend_synchronize(b, &error));
    g_assert_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED);
    g_assert_nonnull(strstr(error->message, "'clamp'"));
    g_assert_nonnull(strstr(error->message, "test_fake"));
    g_clear_error(&error);
    lmn_op_softmax(t, t, 2, 4);
    g_assert_false(lmn_backend_synchronize(b, &error));
    g_assert_nonnull(strstr(error->message, "'clamp'")); /* the first error */
    g_clear_error(&error);
    lmn_tensor_unref(t);
    lmn_backend_unref(b);

    /* im2col on a fresh backend: also surfaces at the next read */
    b = lmn_backend_new(registry, "test_fake", NULL, NULL, &error);
    g_assert_no_error(error);
    const GeomCase gc = {{1, 1, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1}};
    LmnConv2dGeom g = make_geom(&gc);
    LmnTensor *x = tensor_on(b, geom_x_size(&g), NULL);
    LmnTensor *cols = tensor_on(b, geom_cols_size(&g), NULL);
    lmn_op_im2col(x, cols, &g);
    float v[16];
    g_assert_false(lmn_tensor_read(x, v, sizeof v, &error));
    g_assert_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED);
    g_assert_nonnull(strstr(error->message, "'im2col'"));
    g_clear_error(&error);
    lmn_tensor_unref(x);
    lmn_tensor_unref(cols);
    lmn_backend_unref(b);

    /* an ABI 1.3 op, and its backward on a fresh backend */
    const LmnUpsampleGeom ug = {.struct_size = sizeof ug,
                                .planes = 2,
                                .in_h = 2,
                                .in_w = 2,
                                .out_h = 4,
                                .out_w = 4,
                                .scale_h = 0.5f,
                                .scale_w = 0.5f};
    for (int backward = 0; backward < 2; backward++) {
        b = lmn_backend_new(registry, "test_fake", NULL, NULL, &error);
        g_assert_no_error(error);
        LmnTensor *small = tensor_on(b, 8, NULL), *big = tensor_on(b, 32, NULL);
        if (backward)
            lmn_op_upsample2d_backward(LMN_UPSAMPLE_BILINEAR, big, small, &ug);
        else
            lmn_op_upsample2d(LMN_UPSAMPLE_NEAREST, small, big, &ug);
        g_assert_false(lmn_backend_synchronize(b, &error));
        g_assert_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED);
        g_assert_nonnull(
            strstr(error->message, backward ? "'upsample2d_backward'" : "'upsample2d'"));
        g_clear_error(&error);
        lmn_tensor_unref(small);
        lmn_tensor_unref(big);
        lmn_backend_unref(b);
    }
}

/* The fake backends of test-backends-plugin.c exercise the core paths the CPU backend does not:
 * no host memory, deferred errors, and a vtable missing a required op. */
static void test_fake_backends(void)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *plugin = g_build_filename(TEST_PLUGIN_DIR, "lamina-test-backends.so", NULL);
    gboolean loaded = lmn_registry_load_file(registry, plugin, &error);
    g_assert_no_error(error);
    g_assert_true(loaded);

    /* A backend lacking a required op is refused, naming the member, whether the registry
     * catches it when loading the file or lmn_backend_new() does when opening it. */
    g_autofree char *incomplete =
        g_build_filename(TEST_PLUGIN_DIR, "lamina-test-incomplete.so", NULL);
    loaded = lmn_registry_load_file(registry, incomplete, &error);
    if (!loaded) {
        g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_BAD_DESCRIPTOR);
        g_assert_nonnull(strstr(error->message, "gemm"));
        g_assert_nonnull(strstr(error->message, "lamina-test-incomplete.so"));
        g_clear_error(&error);
    }
    LmnBackend *b = lmn_backend_new(registry, "test_incomplete", NULL, NULL, &error);
    g_assert_null(b);
    g_assert_nonnull(error);
    g_assert_true(error->domain == LMN_PLUGIN_ERROR);
    if (loaded) {
        g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_BAD_DESCRIPTOR);
        g_assert_nonnull(strstr(error->message, "gemm"));
        g_assert_nonnull(strstr(error->message, "test_incomplete"));
    }
    g_clear_error(&error);

    /* No host_pointer: reads and writes go through the vtable. */
    b = lmn_backend_new(registry, "test_fake", NULL, NULL, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(lmn_backend_describe(b), ==, "fake: a test backend");
    const float data[6] = {1, 2, 3, 4, 5, 6};
    LmnTensor *t = tensor_on(b, 6, data);
    g_assert_null(lmn_backend_host_pointer(t));
    LmnShape vs = lmn_shape_make(1, (gint64) 3);
    LmnTensor *v = lmn_tensor_new_view(t, 2, &vs);
    float got[3];
    g_assert_true(lmn_tensor_read(v, got, sizeof got, &error));
    g_assert_no_error(error);
    g_assert_cmpmem(got, sizeof got, data + 2, sizeof got);
    lmn_op_fill(v, 8.0f);
    float all[6];
    g_assert_true(lmn_tensor_read(t, all, sizeof all, &error));
    const float want[6] = {1, 2, 8, 8, 8, 6};
    g_assert_cmpmem(all, sizeof all, want, sizeof want);
    lmn_tensor_unref(v);
    lmn_tensor_unref(t);
    lmn_backend_unref(b);

    /* A deferred failure surfaces at the next read, and keeps surfacing. */
    b = lmn_backend_new(registry, "test_fake", NULL, "fail", &error);
    g_assert_no_error(error);
    t = tensor_on(b, 6, NULL);
    g_assert_false(lmn_tensor_read(t, all, sizeof all, &error));
    g_assert_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_DEVICE_LOST);
    g_assert_nonnull(strstr(error->message, "call 1"));
    g_clear_error(&error);
    g_assert_false(lmn_backend_synchronize(b, &error));
    g_assert_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_DEVICE_LOST);
    g_assert_nonnull(strstr(error->message, "call 1")); /* the first error, kept */
    g_clear_error(&error);
    lmn_tensor_unref(t);
    lmn_backend_unref(b);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    registry = lmn_registry_new();
    const char *build_root = g_getenv("LMN_BUILD_ROOT");
    if (build_root != NULL) {
        /* Only the CPU backend: other plugins' state must not affect these tests. */
        g_autofree char *dir = g_build_filename(build_root, "plugins", "backends", "cpu", NULL);
        lmn_registry_set_use_environment(registry, FALSE);
        lmn_registry_add_dir(registry, dir);
    }
    g_autoptr(GError) error = NULL;
    lmn_registry_scan(registry, &error);
    g_assert_no_error(error);
    backend = open_cpu("3");
    backend_1 = open_cpu("1");
    rng = g_rand_new_with_seed(20240607);

    g_test_add_func("/ops/cpu/shape", test_shapes);
    g_test_add_func("/ops/cpu/shape/sizes", test_shape_sizes);
    g_test_add_func("/ops/cpu/tensor/round-trip", test_tensor_round_trip);
    g_test_add_func("/ops/cpu/tensor/views", test_tensor_views);
    g_test_add_func("/ops/cpu/backend/object", test_backend_object);
    g_test_add_func("/ops/cpu/fill-copy", test_fill_copy);
    g_test_add_func("/ops/cpu/gemm/transposes", test_gemm);
    g_test_add_func("/ops/cpu/gemm/batched", test_gemm_batched);
    g_test_add_func("/ops/cpu/gemm/training-shapes", test_gemm_training_shapes);
    g_test_add_func("/ops/cpu/gemm/library", test_gemm_library);
    g_test_add_func("/ops/cpu/gemm-ex/fused", test_gemm_ex);
    g_test_add_func("/ops/cpu/gemm-ex/composed", test_gemm_ex_composed);
    g_test_add_data_func("/ops/cpu/gemm-ex/refused/batched", GINT_TO_POINTER(0),
                         test_gemm_ex_refused);
    g_test_add_data_func("/ops/cpu/gemm-ex/refused/c-offset", GINT_TO_POINTER(1),
                         test_gemm_ex_refused);
    g_test_add_data_func("/ops/cpu/gemm-ex/refused/bias-length", GINT_TO_POINTER(2),
                         test_gemm_ex_refused);
    g_test_add_data_func("/ops/cpu/gemm-ex/refused/sums-overlap-c", GINT_TO_POINTER(3),
                         test_gemm_ex_refused);
    g_test_add_data_func("/ops/cpu/gemm-ex/refused/grad-with-bias", GINT_TO_POINTER(4),
                         test_gemm_ex_refused);
    g_test_add_data_func("/ops/cpu/gemm-ex/refused/grad-overlaps-c", GINT_TO_POINTER(5),
                         test_gemm_ex_refused);
    g_test_add_func("/ops/cpu/bias", test_bias);
    g_test_add_func("/ops/cpu/unary/forward", test_unary_forward);
    g_test_add_func("/ops/cpu/unary/backward", test_unary_backward);
    g_test_add_func("/ops/cpu/unary/nan", test_unary_nan);
    g_test_add_func("/ops/cpu/binary-axpby", test_binary_axpby);
    g_test_add_func("/ops/cpu/reduce", test_reduce);
    g_test_add_func("/ops/cpu/softmax-xent", test_softmax_xent);
    g_test_add_data_func("/ops/cpu/softmax-xent-grad/refused/dx-is-probs", GINT_TO_POINTER(0),
                         test_softmax_xent_grad_refused);
    g_test_add_data_func("/ops/cpu/softmax-xent-grad/refused/dx-size", GINT_TO_POINTER(1),
                         test_softmax_xent_grad_refused);
    g_test_add_func("/ops/cpu/count-correct", test_count_correct);
    g_test_add_func("/ops/cpu/kernel", test_kernel);
    g_test_add_func("/ops/cpu/kernel/split", test_kernel_split);
    g_test_add_func("/ops/cpu/errors", test_errors);
    g_test_add_func("/ops/backend/fake", test_fake_backends);
    g_test_add_func("/ops/cpu/im2col-col2im", test_im2col_col2im);
    g_test_add_func("/ops/cpu/conv-via-im2col", test_conv_via_im2col);
    g_test_add_func("/ops/cpu/pool2d", test_pool);
    g_test_add_func("/ops/cpu/batchnorm", test_batchnorm);
    g_test_add_func("/ops/cpu/dropout", test_dropout);
    g_test_add_func("/ops/cpu/random-normal", test_random_normal);
    g_test_add_func("/ops/cpu/clamp", test_clamp);
    g_test_add_func("/ops/cpu/softmax", test_softmax);
    g_test_add_func("/ops/cpu/copy-block", test_copy_block);
    g_test_add_func("/ops/cpu/gather-scatter", test_gather_scatter);
    g_test_add_func("/ops/cpu/bce-logits", test_bce_logits);
    g_test_add_func("/ops/backend/unsupported-op", test_unsupported_op);

    int rc = g_test_run();
    lmn_backend_unref(backend);
    lmn_backend_unref(backend_1);
    lmn_registry_free(registry);
    g_rand_free(rng);
    return rc;
}
