/* Tests of the activation, softmax, merge, shape, embedding and loss layers added in issue 5:
 * finite-difference gradient checks of every new layer on the CPU backend; forward and backward
 * values against PyTorch (tests/fixtures/layers-misc.h5, recorded by
 * scripts/make-misc-layer-fixtures.py); and the graph errors for inputs a layer cannot take.
 */
#include <hdf5.h>
#include <math.h>
#include <string.h>

#include <lamina/lamina.h>

/* See tests/layers/test-gradcheck.c: a correct layer stays far below, a wrong one far above. */
#define GRAD_TOLERANCE 1e-2

static LmnRegistry *registry;
static LmnBackend *backend;

static void params_cleanup(LmnParams **p)
{
    g_clear_pointer(p, lmn_params_unref);
}
#define scoped_params __attribute__((cleanup(params_cleanup))) LmnParams *

static LmnTensorInfo info(LmnDType dtype, guint ndim, const gint64 *dims)
{
    LmnTensorInfo t = {.dtype = dtype};
    t.shape.ndim = ndim;
    for (guint d = 0; d < ndim; d++) {
        t.shape.dims[d] = dims[d];
    }
    return t;
}

#define F32(...)                                                                                   \
    info(LMN_DTYPE_F32, G_N_ELEMENTS(((gint64[]){__VA_ARGS__})), (gint64[]){__VA_ARGS__})

/* Validated hyperparameters of layer @type from a NULL-terminated key, value list. */
static LmnParams *layer_params_v(const char *type, const char *const *kv)
{
    g_autoptr(GError) error = NULL;
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_LAYER, type, &error);
    g_assert_no_error(error);
    g_autoptr(GPtrArray) keys = g_ptr_array_new();
    g_autoptr(GPtrArray) values = g_ptr_array_new();
    for (guint i = 0; kv != NULL && kv[i] != NULL; i += 2) {
        g_ptr_array_add(keys, (gpointer) kv[i]);
        g_ptr_array_add(values, (gpointer) kv[i + 1]);
    }
    g_ptr_array_add(keys, NULL);
    g_ptr_array_add(values, NULL);
    LmnParams *p =
        lmn_registry_validate_params(f, (const char *const *) keys->pdata,
                                     (const char *const *) values->pdata, "test [layer]", &error);
    g_assert_no_error(error);
    g_assert_nonnull(p);
    return p;
}

#define layer_params(type, ...) layer_params_v(type, (const char *const[]){__VA_ARGS__, NULL})

/* ---- gradient checks ---- */

static GPtrArray *check_full(const char *type, const LmnParams *params, guint n_inputs,
                             const LmnTensorInfo *inputs, gint64 batch, guint64 seed,
                             gint64 num_classes)
{
    LmnGradcheckOptions o;
    lmn_gradcheck_options_init(&o);
    o.batch = batch;
    o.seed = seed;
    o.num_classes = num_classes;
    g_autoptr(GError) error = NULL;
    GPtrArray *r =
        lmn_gradcheck_layer(registry, backend, type, params, n_inputs, inputs, &o, &error);
    g_assert_no_error(error);
    g_assert_nonnull(r);
    g_autofree char *table = lmn_gradcheck_format(r);
    g_test_message("%s, batch %" G_GINT64_FORMAT ":\n%s", type, batch, table);
    return r;
}

static void assert_passes(GPtrArray *r, guint expected_tensors)
{
    g_assert_cmpuint(r->len, ==, expected_tensors);
    for (guint i = 0; i < r->len; i++) {
        const LmnGradcheckResult *x = g_ptr_array_index(r, i);
        g_assert_cmpint(x->n_checked, >, 0);
        g_assert_cmpfloat(x->scale, >, 1e-6);
        g_assert_cmpfloat(x->max_rel_error, <, GRAD_TOLERANCE);
    }
}

static void check_passes(const char *type, const LmnParams *params, guint n_inputs,
                         const LmnTensorInfo *inputs, gint64 batch, guint64 seed,
                         guint expected_tensors)
{
    g_autoptr(GPtrArray) r = check_full(type, params, n_inputs, inputs, batch, seed, 0);
    assert_passes(r, expected_tensors);
}

static void test_gradcheck_activations(void)
{
    /* The activations' defaults are also checked by test-gradcheck; here non-default values. */
    LmnTensorInfo in[] = {F32(9), F32(2, 3, 2)};
    scoped_params sp = layer_params("softplus", "beta", "2");
    scoped_params lp = layer_params("leaky_relu", "negative_slope", "0.2");
    scoped_params ep = layer_params("elu", "alpha", "1.5");
    for (guint s = 0; s < G_N_ELEMENTS(in); s++) {
        check_passes("softplus", sp, 1, &in[s], 3, 100 + s, 1);
        check_passes("leaky_relu", lp, 1, &in[s], 3, 110 + s, 1);
        check_passes("elu", ep, 1, &in[s], 3, 120 + s, 1);
        check_passes("gelu", NULL, 1, &in[s], 3, 130 + s, 1);
    }
}

static void test_gradcheck_softmax(void)
{
    LmnTensorInfo in[] = {F32(1), F32(2), F32(7), F32(3, 4), F32(2, 2, 5)};
    for (guint s = 0; s < G_N_ELEMENTS(in); s++) {
        g_autoptr(GPtrArray) r = check_full("softmax", NULL, 1, &in[s], 2 + s % 2, 140 + s, 0);
        g_assert_cmpuint(r->len, ==, 1);
        const LmnGradcheckResult *x = g_ptr_array_index(r, 0);
        g_assert_cmpfloat(x->max_rel_error, <, GRAD_TOLERANCE);
        /* A one-element softmax is constant: its gradient is identically 0. */
        if (in[s].shape.dims[in[s].shape.ndim - 1] > 1) {
            g_assert_cmpfloat(x->scale, >, 1e-6);
        } else {
            g_assert_cmpfloat(x->scale, <, 1e-4);
        }
    }
}

static void test_gradcheck_add(void)
{
    LmnTensorInfo two[] = {F32(2, 3), F32(2, 3)};
    check_passes("add", NULL, 2, two, 3, 150, 2);
    LmnTensorInfo three[] = {F32(5), F32(5), F32(5)};
    check_passes("add", NULL, 3, three, 2, 151, 3);
}

static void test_gradcheck_concat(void)
{
    LmnTensorInfo c0[] = {F32(2, 3), F32(4, 3)};
    check_passes("concat", NULL, 2, c0, 3, 160, 2);
    scoped_params a1 = layer_params("concat", "axis", "1");
    LmnTensorInfo c1[] = {F32(2, 3), F32(2, 1), F32(2, 5)};
    check_passes("concat", a1, 3, c1, 2, 161, 3);
    scoped_params am1 = layer_params("concat", "axis", "-1");
    LmnTensorInfo c2[] = {F32(2, 2, 3), F32(2, 2, 2)};
    check_passes("concat", am1, 2, c2, 2, 162, 2);
    LmnTensorInfo c3[] = {F32(3), F32(5)};
    check_passes("concat", NULL, 2, c3, 4, 163, 2);
}

static void test_gradcheck_reshape(void)
{
    scoped_params p1 = layer_params("reshape", "shape", "3, -1");
    LmnTensorInfo in1 = F32(2, 6);
    check_passes("reshape", p1, 1, &in1, 3, 170, 1);
    scoped_params p2 = layer_params("reshape", "shape", "2, 2, 3");
    LmnTensorInfo in2 = F32(12);
    check_passes("reshape", p2, 1, &in2, 2, 171, 1);
}

static void test_gradcheck_embedding(void)
{
    scoped_params p = layer_params("embedding", "num_embeddings", "6", "embedding_dim", "4");
    /* i32 indices drawn in [0, 6): only the weight is differentiable. */
    LmnTensorInfo in = info(LMN_DTYPE_I32, 1, (gint64[]){5});
    g_autoptr(GPtrArray) r = check_full("embedding", p, 1, &in, 3, 180, 6);
    assert_passes(r, 1);
    const LmnGradcheckResult *w = g_ptr_array_index(r, 0);
    g_assert_cmpstr(w->name, ==, "weight");
    g_assert_cmpint(w->n_checked, ==, 24);
}

static void test_gradcheck_bce(void)
{
    LmnTensorInfo a[] = {F32(6), F32(6)};
    check_passes("binary_cross_entropy_with_logits", NULL, 2, a, 3, 190, 2);
    LmnTensorInfo b[] = {F32(2, 3), F32(2, 3)};
    check_passes("binary_cross_entropy_with_logits", NULL, 2, b, 2, 191, 2);
}

/* ---- against PyTorch ---- */

typedef struct {
    hid_t file;
} Fixture;

static hid_t open_fixture(void)
{
    const char *dir = g_getenv("LMN_TEST_FIXTURES");
    g_assert_nonnull(dir);
    g_autofree char *path = g_build_filename(dir, "layers-misc.h5", NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(file, >=, 0);
    return file;
}

/* A dataset's values as @mem_type, and its shape. */
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
    for (int d = 0; d < ndim; d++) {
        shape->dims[d] = (gint64) dims[d];
    }
    gpointer data = g_malloc(MAX(lmn_shape_numel(shape), 1) * 4);
    g_assert_cmpint(H5Dread(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), >=, 0);
    H5Sclose(space);
    H5Dclose(dset);
    return data;
}

static float *read_f32(hid_t group, const char *name, LmnShape *shape)
{
    return read_dataset(group, name, H5T_NATIVE_FLOAT, shape);
}

static char *read_attr_string(hid_t group, const char *name)
{
    hid_t attr = H5Aopen(group, name, H5P_DEFAULT);
    g_assert_cmpint(attr, >=, 0);
    hid_t type = H5Aget_type(attr);
    char *value = NULL;
    if (H5Tis_variable_str(type) > 0) {
        hid_t mem = H5Tcopy(H5T_C_S1);
        H5Tset_size(mem, H5T_VARIABLE);
        H5Tset_cset(mem, H5Tget_cset(type));
        char *v = NULL;
        g_assert_cmpint(H5Aread(attr, mem, &v), >=, 0);
        value = g_strdup(v);
        H5free_memory(v);
        H5Tclose(mem);
    } else {
        gsize size = H5Tget_size(type);
        value = g_malloc0(size + 1);
        g_assert_cmpint(H5Aread(attr, type, value), >=, 0);
    }
    H5Tclose(type);
    H5Aclose(attr);
    return value;
}

static double read_attr_double(hid_t group, const char *name)
{
    hid_t attr = H5Aopen(group, name, H5P_DEFAULT);
    g_assert_cmpint(attr, >=, 0);
    double v = 0.0;
    g_assert_cmpint(H5Aread(attr, H5T_NATIVE_DOUBLE, &v), >=, 0);
    H5Aclose(attr);
    return v;
}

/* |got - want| <= atol + rtol |want| element-wise, naming the first element that is not. */
static void assert_close(const char *what, const float *got, const float *want, gint64 n,
                         double rtol, double atol)
{
    for (gint64 i = 0; i < n; i++) {
        double err = fabs((double) got[i] - (double) want[i]);
        if (!(err <= atol + rtol * fabs((double) want[i]))) {
            g_error("%s: element %" G_GINT64_FORMAT " is %.9g, PyTorch %.9g", what, i, got[i],
                    want[i]);
        }
    }
}

static LmnTensor *new_tensor(LmnDType dtype, const LmnShape *shape, const void *host)
{
    g_autoptr(GError) error = NULL;
    LmnTensor *t = lmn_tensor_new(backend, dtype, shape, &error);
    g_assert_no_error(error);
    if (host != NULL) {
        g_assert_true(lmn_tensor_write(t, host, lmn_tensor_nbytes(t), &error));
        g_assert_no_error(error);
    }
    return t;
}

static float *read_tensor(LmnTensor *t)
{
    g_autoptr(GError) error = NULL;
    float *v = g_new(float, lmn_tensor_numel(t));
    g_assert_true(lmn_tensor_read(t, v, lmn_tensor_nbytes(t), &error));
    g_assert_no_error(error);
    return v;
}

/*
 * One forward and backward of a standalone layer on full-batch tensors.
 * @inputs: [N, ...] tensors; @dy: the output gradient for a non-loss layer
 * Returns the layer (for its parameter gradients); @output and @input_grads (one per input, NULL
 * for i32 inputs) hold the results.
 */
static LmnLayer *run_layer(const char *type, const LmnParams *params, guint n_inputs,
                           LmnTensor *const *inputs, const float *param0, const float *dy,
                           LmnTensor **output, LmnTensor **input_grads)
{
    gint64 batch = inputs[0]->shape.dims[0];
    LmnTensorInfo infos[4];
    g_assert_cmpuint(n_inputs, <=, G_N_ELEMENTS(infos));
    for (guint i = 0; i < n_inputs; i++) {
        infos[i].dtype = inputs[i]->dtype;
        infos[i].shape.ndim = inputs[i]->shape.ndim - 1;
        memcpy(infos[i].shape.dims, inputs[i]->shape.dims + 1, sizeof(gint64) * (LMN_MAX_DIMS - 1));
    }
    g_autoptr(GError) error = NULL;
    LmnLayer *layer =
        lmn_layer_new(registry, type, "fixture", 0, params, backend, n_inputs, infos, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_layer_prepare_batch(layer, batch, &error));
    if (param0 != NULL) {
        LmnTensor *w = lmn_layer_get_param(layer, 0);
        g_assert_true(lmn_tensor_write(w, param0, lmn_tensor_nbytes(w), &error));
    }
    gboolean loss = lmn_layer_is_loss(layer);
    LmnShape out_shape = loss ? lmn_shape_make(0)
                              : lmn_shape_prepend(&lmn_layer_get_output_info(layer)->shape, batch);
    *output = new_tensor(LMN_DTYPE_F32, &out_shape, NULL);
    g_autoptr(LmnTensor) out_grad = loss ? NULL : new_tensor(LMN_DTYPE_F32, &out_shape, dy);
    for (guint i = 0; i < n_inputs; i++) {
        input_grads[i] = inputs[i]->dtype == LMN_DTYPE_F32
                             ? new_tensor(LMN_DTYPE_F32, &inputs[i]->shape, NULL)
                             : NULL;
        if (input_grads[i] != NULL) {
            lmn_op_fill(input_grads[i], NAN); /* must be overwritten */
        }
    }
    for (guint i = 0; i < lmn_layer_get_n_params(layer); i++) {
        lmn_op_fill(lmn_layer_get_grad(layer, i), NAN);
    }
    LmnLayerIO io = {
        .struct_size = sizeof(LmnLayerIO),
        .n_inputs = n_inputs,
        .inputs = inputs,
        .output = *output,
        .batch = batch,
        .training = TRUE,
        .seed = 1,
    };
    lmn_layer_forward(layer, &io);
    io.output_grad = out_grad;
    io.input_grads = input_grads;
    lmn_layer_backward(layer, &io);
    g_assert_true(lmn_backend_synchronize(backend, &error));
    g_assert_no_error(error);
    return layer;
}

static void test_fixture_activations(void)
{
    hid_t file = open_fixture();
    const char *cases[] = {"leaky_relu", "leaky_relu.0.2", "elu",       "elu.0.5",
                           "gelu",       "softplus",       "softplus.2"};
    for (guint c = 0; c < G_N_ELEMENTS(cases); c++) {
        g_autofree char *path = g_strdup_printf("/act/%s", cases[c]);
        hid_t g = H5Gopen2(file, path, H5P_DEFAULT);
        g_assert_cmpint(g, >=, 0);
        g_autofree char *type = read_attr_string(g, "type");
        g_autofree char *key = read_attr_string(g, "key");
        g_autofree char *value = read_attr_string(g, "value");
        scoped_params p = key[0] != '\0' ? layer_params(type, key, value) : NULL;
        LmnShape xs, s;
        g_autofree float *x = read_f32(g, "x", &xs);
        g_autofree float *dy = read_f32(g, "dy", &s);
        g_autofree float *y = read_f32(g, "y", &s);
        g_autofree float *dx = read_f32(g, "dx", &s);
        g_autoptr(LmnTensor) in = new_tensor(LMN_DTYPE_F32, &xs, x);
        LmnTensor *out = NULL, *grads[1] = {NULL};
        LmnLayer *l = run_layer(type, p, 1, &in, NULL, dy, &out, grads);
        g_autofree float *got_y = read_tensor(out);
        g_autofree float *got_dx = read_tensor(grads[0]);
        gint64 n = lmn_shape_numel(&xs);
        g_test_message("%s", path);
        assert_close(path, got_y, y, n, 1e-5, 1e-6);
        assert_close(path, got_dx, dx, n, 1e-5, 1e-6);
        lmn_tensor_unref(out);
        lmn_tensor_unref(grads[0]);
        lmn_layer_free(l);
        H5Gclose(g);
    }
    H5Fclose(file);
}

static void test_fixture_softmax(void)
{
    hid_t file = open_fixture();
    const char *cases[] = {"rows", "3d", "large"};
    for (guint c = 0; c < G_N_ELEMENTS(cases); c++) {
        g_autofree char *path = g_strdup_printf("/softmax/%s", cases[c]);
        hid_t g = H5Gopen2(file, path, H5P_DEFAULT);
        LmnShape xs, s;
        g_autofree float *x = read_f32(g, "x", &xs);
        g_autofree float *dy = read_f32(g, "dy", &s);
        g_autofree float *y = read_f32(g, "y", &s);
        g_autofree float *dx = read_f32(g, "dx", &s);
        g_autoptr(LmnTensor) in = new_tensor(LMN_DTYPE_F32, &xs, x);
        LmnTensor *out = NULL, *grads[1] = {NULL};
        LmnLayer *l = run_layer("softmax", NULL, 1, &in, NULL, dy, &out, grads);
        g_autofree float *got_y = read_tensor(out);
        g_autofree float *got_dx = read_tensor(grads[0]);
        gint64 n = lmn_shape_numel(&xs);
        assert_close(path, got_y, y, n, 1e-5, 1e-7);
        assert_close(path, got_dx, dx, n, 1e-4, 1e-6);
        lmn_tensor_unref(out);
        lmn_tensor_unref(grads[0]);
        lmn_layer_free(l);
        H5Gclose(g);
    }
    H5Fclose(file);
}

static void test_fixture_bce(void)
{
    hid_t file = open_fixture();
    const char *cases[] = {"small", "wide"};
    for (guint c = 0; c < G_N_ELEMENTS(cases); c++) {
        g_autofree char *path = g_strdup_printf("/bce/%s", cases[c]);
        hid_t g = H5Gopen2(file, path, H5P_DEFAULT);
        LmnShape xs, s;
        g_autofree float *x = read_f32(g, "x", &xs);
        g_autofree float *t = read_f32(g, "t", &s);
        g_autofree float *loss = read_f32(g, "loss", &s);
        g_autofree float *dx = read_f32(g, "dx", &s);
        g_autofree float *dt = read_f32(g, "dt", &s);
        LmnTensor *in[2] = {new_tensor(LMN_DTYPE_F32, &xs, x), new_tensor(LMN_DTYPE_F32, &xs, t)};
        LmnTensor *out = NULL, *grads[2] = {NULL, NULL};
        LmnLayer *l =
            run_layer("binary_cross_entropy_with_logits", NULL, 2, in, NULL, NULL, &out, grads);
        g_autofree float *got_loss = read_tensor(out);
        g_autofree float *got_dx = read_tensor(grads[0]);
        g_autofree float *got_dt = read_tensor(grads[1]);
        gint64 n = lmn_shape_numel(&xs);
        assert_close(path, got_loss, loss, 1, 1e-5, 1e-7);
        assert_close(path, got_dx, dx, n, 1e-5, 1e-8);
        assert_close(path, got_dt, dt, n, 1e-5, 1e-8);
        for (guint i = 0; i < 2; i++) {
            lmn_tensor_unref(in[i]);
            lmn_tensor_unref(grads[i]);
        }
        lmn_tensor_unref(out);
        lmn_layer_free(l);
        H5Gclose(g);
    }
    H5Fclose(file);
}

/* softmax_cross_entropy's label smoothing is nn.CrossEntropyLoss(label_smoothing = s)'s. */
static void test_fixture_label_smoothing(void)
{
    hid_t file = open_fixture();
    const char *cases[] = {"plain", "smooth0.1", "smooth0.3", "smooth0.9"};
    for (guint c = 0; c < G_N_ELEMENTS(cases); c++) {
        g_autofree char *path = g_strdup_printf("/xent/%s", cases[c]);
        hid_t g = H5Gopen2(file, path, H5P_DEFAULT);
        char s_text[G_ASCII_DTOSTR_BUF_SIZE];
        g_ascii_dtostr(s_text, sizeof s_text, read_attr_double(g, "label_smoothing"));
        scoped_params p = layer_params("softmax_cross_entropy", "label_smoothing", s_text);
        LmnShape xs, ls, s;
        g_autofree float *x = read_f32(g, "x", &xs);
        g_autofree gint32 *labels = read_dataset(g, "labels", H5T_NATIVE_INT32, &ls);
        g_autofree float *loss = read_f32(g, "loss", &s);
        g_autofree float *dx = read_f32(g, "dx", &s);
        LmnTensor *in[2] = {new_tensor(LMN_DTYPE_F32, &xs, x),
                            new_tensor(LMN_DTYPE_I32, &ls, labels)};
        LmnTensor *out = NULL, *grads[2] = {NULL, NULL};
        LmnLayer *l = run_layer("softmax_cross_entropy", p, 2, in, NULL, NULL, &out, grads);
        g_assert_null(grads[1]);
        g_autofree float *got_loss = read_tensor(out);
        g_autofree float *got_dx = read_tensor(grads[0]);
        assert_close(path, got_loss, loss, 1, 1e-5, 1e-7);
        assert_close(path, got_dx, dx, lmn_shape_numel(&xs), 1e-5, 1e-7);
        lmn_tensor_unref(in[0]);
        lmn_tensor_unref(in[1]);
        lmn_tensor_unref(grads[0]);
        lmn_tensor_unref(out);
        lmn_layer_free(l);
        H5Gclose(g);
    }
    H5Fclose(file);
}

/* Embedding with i32 indices and with the same indices as f32 values (what datasets hold). */
static void test_fixture_embedding(void)
{
    hid_t file = open_fixture();
    const char *cases[] = {"small", "wide"};
    for (guint c = 0; c < G_N_ELEMENTS(cases); c++) {
        for (int as_float = 0; as_float <= 1; as_float++) {
            g_autofree char *path = g_strdup_printf("/embedding/%s", cases[c]);
            hid_t g = H5Gopen2(file, path, H5P_DEFAULT);
            g_autofree char *num = g_strdup_printf("%.0f", read_attr_double(g, "num_embeddings"));
            g_autofree char *dim = g_strdup_printf("%.0f", read_attr_double(g, "embedding_dim"));
            scoped_params p =
                layer_params("embedding", "num_embeddings", num, "embedding_dim", dim);
            LmnShape ws, is, s;
            g_autofree float *w = read_f32(g, "weight", &ws);
            g_autofree gint32 *idx = read_dataset(g, "idx", H5T_NATIVE_INT32, &is);
            g_autofree float *dy = read_f32(g, "dy", &s);
            g_autofree float *y = read_f32(g, "y", &s);
            g_autofree float *dw = read_f32(g, "dweight", &s);
            gint64 n_idx = lmn_shape_numel(&is);
            g_autofree float *fidx = g_new(float, n_idx);
            for (gint64 i = 0; i < n_idx; i++) {
                fidx[i] = (float) idx[i];
            }
            LmnTensor *in = as_float ? new_tensor(LMN_DTYPE_F32, &is, fidx)
                                     : new_tensor(LMN_DTYPE_I32, &is, idx);
            LmnTensor *out = NULL, *grads[1] = {NULL};
            LmnLayer *l = run_layer("embedding", p, 1, &in, w, dy, &out, grads);
            g_autofree float *got_y = read_tensor(out);
            g_autofree float *got_dw = read_tensor(lmn_layer_get_grad(l, 0));
            g_assert_cmpint(lmn_tensor_numel(out), ==, n_idx * ws.dims[1]);
            assert_close(path, got_y, y, n_idx * ws.dims[1], 0.0, 0.0); /* a copy: exact */
            assert_close(path, got_dw, dw, lmn_shape_numel(&ws), 1e-6, 1e-7);
            if (as_float) {
                /* Indices are not differentiable: their gradient is 0, not left unwritten. */
                g_autofree float *gi = read_tensor(grads[0]);
                for (gint64 i = 0; i < n_idx; i++) {
                    g_assert_cmpfloat(gi[i], ==, 0.0f);
                }
                lmn_tensor_unref(grads[0]);
            } else {
                g_assert_null(grads[0]);
            }
            lmn_tensor_unref(in);
            lmn_tensor_unref(out);
            lmn_layer_free(l);
            H5Gclose(g);
        }
    }
    H5Fclose(file);
}

/* The default weight is N(0, 1), torch.nn.Embedding's, under PyTorch's name and shape. */
static void test_embedding_default_init(void)
{
    scoped_params p = layer_params("embedding", "num_embeddings", "200", "embedding_dim", "50");
    LmnTensorInfo in = info(LMN_DTYPE_I32, 1, (gint64[]){3});
    g_autoptr(GError) error = NULL;
    LmnLayer *l = lmn_layer_new(registry, "embedding", "emb", 0, p, backend, 1, &in, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(lmn_layer_get_param_name(l, 0), ==, "weight");
    LmnShape w = lmn_shape_make(2, (gint64) 200, (gint64) 50);
    g_assert_true(lmn_shape_equal(&lmn_layer_get_param(l, 0)->shape, &w));
    const LmnTensorInfo *out = lmn_layer_get_output_info(l);
    g_assert_cmpuint(out->shape.ndim, ==, 2);
    g_assert_cmpint(out->shape.dims[0], ==, 3);
    g_assert_cmpint(out->shape.dims[1], ==, 50);
    g_assert_true(lmn_layer_init_params(l, registry, 5, 0, NULL, NULL, "test", &error));
    g_assert_no_error(error);
    g_autofree float *v = read_tensor(lmn_layer_get_param(l, 0));
    double sum = 0.0, sum2 = 0.0;
    const gint64 n = 200 * 50;
    for (gint64 i = 0; i < n; i++) {
        sum += v[i];
        sum2 += (double) v[i] * v[i];
    }
    double mean = sum / n, var = sum2 / n - mean * mean;
    g_assert_cmpfloat(fabs(mean), <, 5.0 / sqrt((double) n));
    g_assert_cmpfloat(fabs(var - 1.0), <, 5.0 * sqrt(2.0 / n));
    lmn_layer_free(l);
}

/* ---- graph errors ---- */

static void assert_graph_error(const char *type, const LmnParams *params, guint n_inputs,
                               const LmnTensorInfo *inputs, const char *const *needles)
{
    g_autoptr(GError) error = NULL;
    LmnLayer *l =
        lmn_layer_new(registry, type, "bad_layer", 0, params, backend, n_inputs, inputs, &error);
    g_assert_null(l);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH);
    g_assert_nonnull(strstr(error->message, "'bad_layer'"));
    for (guint i = 0; needles[i] != NULL; i++) {
        if (strstr(error->message, needles[i]) == NULL) {
            g_error("message \"%s\" does not name \"%s\"", error->message, needles[i]);
        }
    }
}

static void test_errors_add(void)
{
    LmnTensorInfo in[] = {F32(2, 3), F32(3, 2)};
    assert_graph_error("add", NULL, 2, in, (const char *[]){"add", "[2, 3]", "[3, 2]", NULL});
    LmnTensorInfo in3[] = {F32(4), F32(4), F32(5)};
    assert_graph_error("add", NULL, 3, in3, (const char *[]){"input 2", "[5]", NULL});
    LmnTensorInfo mixed[] = {F32(4), info(LMN_DTYPE_I32, 1, (gint64[]){4})};
    assert_graph_error("add", NULL, 2, mixed, (const char *[]){"i32", NULL});
    LmnTensorInfo one[] = {F32(4)};
    assert_graph_error("add", NULL, 1, one, (const char *[]){"input", NULL});
}

static void test_errors_concat(void)
{
    LmnTensorInfo in[] = {F32(2, 3), F32(4, 5)};
    assert_graph_error("concat", NULL, 2, in,
                       (const char *[]){"concat", "[2, 3]", "[4, 5]", "axis 0", NULL});
    LmnTensorInfo rank[] = {F32(2, 3), F32(2, 3, 1)};
    assert_graph_error("concat", NULL, 2, rank, (const char *[]){"[2, 3, 1]", NULL});
    scoped_params a2 = layer_params("concat", "axis", "2");
    LmnTensorInfo ok[] = {F32(2, 3), F32(2, 3)};
    assert_graph_error("concat", a2, 2, ok, (const char *[]){"axis = 2", "[2, 3]", NULL});
}

static void test_errors_reshape(void)
{
    scoped_params p = layer_params("reshape", "shape", "5, 2");
    LmnTensorInfo in = F32(3, 4);
    assert_graph_error("reshape", p, 1, &in,
                       (const char *[]){"reshape", "[3, 4]", "12", "[5, 2]", "10", NULL});
    scoped_params inf = layer_params("reshape", "shape", "5, -1");
    assert_graph_error("reshape", inf, 1, &in, (const char *[]){"12", "multiple of 5", NULL});
    scoped_params two = layer_params("reshape", "shape", "-1, -1");
    assert_graph_error("reshape", two, 1, &in, (const char *[]){"-1", NULL});
    scoped_params frac = layer_params("reshape", "shape", "2.5, 4");
    assert_graph_error("reshape", frac, 1, &in, (const char *[]){"2.5", NULL});
    scoped_params many = layer_params("reshape", "shape", "1, 1, 3, 4, 1");
    assert_graph_error("reshape", many, 1, &in, (const char *[]){"5 dimensions", NULL});
}

static void test_errors_other(void)
{
    LmnTensorInfo bce[] = {F32(3), F32(4)};
    assert_graph_error("binary_cross_entropy_with_logits", NULL, 2, bce,
                       (const char *[]){"[3]", "[4]", NULL});
    LmnTensorInfo bce_i32[] = {F32(3), info(LMN_DTYPE_I32, 1, (gint64[]){3})};
    assert_graph_error("binary_cross_entropy_with_logits", NULL, 2, bce_i32,
                       (const char *[]){"i32", NULL});
    LmnTensorInfo sm = info(LMN_DTYPE_I32, 1, (gint64[]){3});
    assert_graph_error("softmax", NULL, 1, &sm, (const char *[]){"softmax", "i32", NULL});
    LmnTensorInfo scalar = info(LMN_DTYPE_F32, 0, NULL);
    assert_graph_error("softmax", NULL, 1, &scalar, (const char *[]){"[]", NULL});
    scoped_params e = layer_params("embedding", "num_embeddings", "4", "embedding_dim", "2");
    LmnTensorInfo deep = F32(2, 2, 2, 2);
    assert_graph_error("embedding", e, 1, &deep, (const char *[]){"[2, 2, 2, 2]", NULL});
}

/* A missing required key is a config error that names it, before any layer code runs. */
static void test_errors_schema(void)
{
    g_autoptr(GError) error = NULL;
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_LAYER, "embedding", &error);
    g_assert_no_error(error);
    const char *keys[] = {"num_embeddings", NULL}, *values[] = {"10", NULL};
    LmnParams *p = lmn_registry_validate_params(f, keys, values, "model.ini [layer emb]", &error);
    g_assert_null(p);
    g_assert_nonnull(error);
    g_assert_nonnull(strstr(error->message, "embedding_dim"));
    g_clear_error(&error);
    f = lmn_registry_lookup(registry, LMN_FEATURE_LAYER, "reshape", &error);
    p = lmn_registry_validate_params(f, NULL, NULL, "model.ini [layer r]", &error);
    g_assert_null(p);
    g_assert_nonnull(strstr(error->message, "shape"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_autoptr(GError) error = NULL;
    registry = lmn_registry_new();
    if (!lmn_registry_scan(registry, &error)) {
        g_error("scanning plugins: %s", error->message);
    }
    backend = lmn_backend_new(registry, "cpu", NULL, NULL, &error);
    if (backend == NULL) {
        g_error("opening the cpu backend: %s", error->message);
    }

    g_test_add_func("/layers/misc/gradcheck/activations", test_gradcheck_activations);
    g_test_add_func("/layers/misc/gradcheck/softmax", test_gradcheck_softmax);
    g_test_add_func("/layers/misc/gradcheck/add", test_gradcheck_add);
    g_test_add_func("/layers/misc/gradcheck/concat", test_gradcheck_concat);
    g_test_add_func("/layers/misc/gradcheck/reshape", test_gradcheck_reshape);
    g_test_add_func("/layers/misc/gradcheck/embedding", test_gradcheck_embedding);
    g_test_add_func("/layers/misc/gradcheck/bce-with-logits", test_gradcheck_bce);
    g_test_add_func("/layers/misc/pytorch/activations", test_fixture_activations);
    g_test_add_func("/layers/misc/pytorch/softmax", test_fixture_softmax);
    g_test_add_func("/layers/misc/pytorch/bce-with-logits", test_fixture_bce);
    g_test_add_func("/layers/misc/pytorch/label-smoothing", test_fixture_label_smoothing);
    g_test_add_func("/layers/misc/pytorch/embedding", test_fixture_embedding);
    g_test_add_func("/layers/misc/embedding/default-init", test_embedding_default_init);
    g_test_add_func("/layers/misc/errors/add", test_errors_add);
    g_test_add_func("/layers/misc/errors/concat", test_errors_concat);
    g_test_add_func("/layers/misc/errors/reshape", test_errors_reshape);
    g_test_add_func("/layers/misc/errors/other", test_errors_other);
    g_test_add_func("/layers/misc/errors/schema", test_errors_schema);

    int rc = g_test_run();
    lmn_backend_unref(backend);
    lmn_registry_free(registry);
    return rc;
}
