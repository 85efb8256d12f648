/* Convolutional-network layers on the CPU backend: conv2d, maxpool2d, avgpool2d, global_avgpool,
 * batch_norm and dropout.
 *
 * Oracles: finite-difference gradient checks (gradcheck.h) over several geometries; forward and
 * backward against PyTorch, recorded in float64 by scripts/make-layer-fixtures.py
 * (tests/fixtures/layers-cnn.h5), including batch norm's running-statistics update and its
 * evaluation mode; dropout masks against the documented Philox formula and their statistics;
 * PyTorch's default initialisation; and the build errors for bad geometries.
 */
#include <math.h>
#include <string.h>

#include <hdf5.h>

#include <lamina/lamina.h>

/* See test-gradcheck.c: a correct layer stays well below it, a wrong gradient shows 0.1 or more. */
#define GRAD_TOLERANCE 1e-2
/* Float32 against a float64 reference, relative to each tensor's largest magnitude. */
#define FIXTURE_TOLERANCE 1e-4

static LmnRegistry *registry;
static LmnBackend *backend;

static void params_cleanup(LmnParams **p)
{
    g_clear_pointer(p, lmn_params_unref);
}
#define scoped_params __attribute__((cleanup(params_cleanup))) LmnParams *

static void layer_cleanup(LmnLayer **l)
{
    g_clear_pointer(l, lmn_layer_free);
}
#define scoped_layer __attribute__((cleanup(layer_cleanup))) LmnLayer *

static LmnTensorInfo f32_info(guint ndim, const gint64 *dims)
{
    LmnTensorInfo t = {.dtype = LMN_DTYPE_F32};
    t.shape.ndim = ndim;
    for (guint d = 0; d < ndim; d++) {
        t.shape.dims[d] = dims[d];
    }
    return t;
}

static LmnTensorInfo image(gint64 c, gint64 h, gint64 w)
{
    return f32_info(3, (gint64[]){c, h, w});
}

/* Validated hyperparameters of @type from parallel NULL-terminated key and value arrays. */
static LmnParams *params_from(const char *type, const char *const *keys,
                              const char *const *values, GError **error)
{
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_LAYER, type, error);
    if (f == NULL) {
        return NULL;
    }
    return lmn_registry_validate_params(f, keys, values, "test [layer]", error);
}

/* Hyperparameters from "key=value;key=value" (the fixture file's notation; "" for none). */
static LmnParams *params_parse(const char *type, const char *text)
{
    g_auto(GStrv) pairs = g_strsplit(text, ";", -1);
    g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) values = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; pairs[i] != NULL; i++) {
        if (pairs[i][0] == '\0') {
            continue;
        }
        char *eq = strchr(pairs[i], '=');
        g_assert_nonnull(eq);
        g_ptr_array_add(keys, g_strndup(pairs[i], (gsize) (eq - pairs[i])));
        g_ptr_array_add(values, g_strdup(eq + 1));
    }
    g_ptr_array_add(keys, NULL);
    g_ptr_array_add(values, NULL);
    g_autoptr(GError) error = NULL;
    LmnParams *p = params_from(type, (const char *const *) keys->pdata,
                               (const char *const *) values->pdata, &error);
    g_assert_no_error(error);
    return p;
}

/* Builds layer @type named "L" for one input, or returns NULL with @error. */
static LmnLayer *layer_try(const char *type, const char *params, const LmnTensorInfo *in,
                           guint index, GError **error)
{
    scoped_params p = params_parse(type, params);
    return lmn_layer_new(registry, type, "L", index, p, backend, 1, in, error);
}

static LmnLayer *layer_make(const char *type, const char *params, const LmnTensorInfo *in,
                            guint index)
{
    g_autoptr(GError) error = NULL;
    LmnLayer *l = layer_try(type, params, in, index, &error);
    g_assert_no_error(error);
    g_assert_nonnull(l);
    return l;
}

static LmnTensor *tensor_make(const LmnShape *per_sample, gint64 batch, const float *values)
{
    g_autoptr(GError) error = NULL;
    LmnShape s = lmn_shape_prepend(per_sample, batch);
    LmnTensor *t = lmn_tensor_new(backend, LMN_DTYPE_F32, &s, &error);
    g_assert_no_error(error);
    if (values != NULL) {
        g_assert_true(lmn_tensor_write(t, values, lmn_tensor_nbytes(t), &error));
    }
    return t;
}

static float *tensor_get(LmnTensor *t)
{
    g_autoptr(GError) error = NULL;
    float *v = g_new(float, lmn_tensor_numel(t));
    g_assert_true(lmn_tensor_read(t, v, lmn_tensor_nbytes(t), &error));
    g_assert_no_error(error);
    return v;
}

/* ---- gradient checks ---- */

static void check_grads(const char *type, const char *params, LmnTensorInfo in, gint64 batch,
                        guint64 seed, gboolean training, guint expected_tensors)
{
    scoped_params p = params_parse(type, params);
    LmnGradcheckOptions o;
    lmn_gradcheck_options_init(&o);
    o.batch = batch;
    o.seed = seed;
    o.training = training;
    if (strcmp(type, "maxpool2d") == 0) {
        /*
         * A finite difference is only valid while every window keeps its maximum: values are
         * drawn with magnitudes in [0.1, 1], so nearby values in one window are common, and a
         * narrow step keeps the perturbation from reordering them.
         */
        o.step = 1e-3;
    }
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) r =
        lmn_gradcheck_layer(registry, backend, type, p, 1, &in, &o, &error);
    g_assert_no_error(error);
    g_assert_nonnull(r);
    g_autofree char *table = lmn_gradcheck_format(r);
    g_test_message("%s (%s), batch %" G_GINT64_FORMAT ":\n%s", type, params, batch, table);
    g_assert_cmpuint(r->len, ==, expected_tensors);
    for (guint i = 0; i < r->len; i++) {
        const LmnGradcheckResult *x = g_ptr_array_index(r, i);
        g_assert_cmpint(x->n_checked, >, 0);
        g_assert_cmpfloat(x->scale, >, 1e-6);
        g_assert_cmpfloat(x->max_rel_error, <, GRAD_TOLERANCE);
    }
}

static void test_gradcheck_conv(void)
{
    const struct {
        const char *params;
        LmnTensorInfo in;
        gint64 batch;
        guint tensors;
    } cases[] = {
        {"out_channels=4;kernel_size=3", image(3, 6, 5), 2, 3},
        {"out_channels=3;kernel_size=3;stride=2;padding=1", image(2, 7, 8), 3, 3},
        {"out_channels=2;kernel_size=2, 3;stride=2, 1;padding=0, 1", image(3, 5, 6), 2, 3},
        {"out_channels=3;kernel_size=3;dilation=2;padding=2", image(2, 6, 7), 2, 3},
        {"out_channels=4;kernel_size=3;groups=2;padding=1", image(4, 5, 5), 2, 3},
        {"out_channels=3;kernel_size=2;bias=false", image(2, 5, 4), 2, 2},
        {"out_channels=6;kernel_size=1;groups=2", image(4, 3, 4), 3, 3},
        {"out_channels=2;kernel_size=3;padding=1", image(1, 4, 4), 1, 3},
    };
    for (guint c = 0; c < G_N_ELEMENTS(cases); c++) {
        check_grads("conv2d", cases[c].params, cases[c].in, cases[c].batch, 100 + c, TRUE,
                    cases[c].tensors);
    }
}

static void test_gradcheck_pool(void)
{
    check_grads("maxpool2d", "kernel_size=2", image(2, 6, 5), 2, 200, TRUE, 1);
    check_grads("maxpool2d", "kernel_size=3;stride=2;padding=1", image(2, 7, 6), 2, 201, TRUE, 1);
    check_grads("maxpool2d", "kernel_size=2;stride=1;dilation=2", image(1, 6, 6), 2, 202, TRUE, 1);
    check_grads("avgpool2d", "kernel_size=2", image(2, 6, 5), 2, 210, TRUE, 1);
    check_grads("avgpool2d", "kernel_size=3;stride=2;padding=1", image(2, 7, 6), 2, 211, TRUE, 1);
    check_grads("avgpool2d", "kernel_size=3, 2;stride=1", image(1, 5, 4), 3, 212, TRUE, 1);
    check_grads("global_avgpool", "", image(3, 4, 5), 2, 220, TRUE, 1);
}

static void test_gradcheck_batch_norm(void)
{
    /* Training: the gradient flows through the batch statistics too. */
    check_grads("batch_norm", "", f32_info(1, (gint64[]){5}), 6, 300, TRUE, 3);
    check_grads("batch_norm", "", image(3, 4, 3), 2, 301, TRUE, 3);
    check_grads("batch_norm", "", f32_info(2, (gint64[]){2, 7}), 3, 302, TRUE, 3);
    check_grads("batch_norm", "affine=false", image(2, 3, 3), 3, 303, TRUE, 1);
    /* Evaluation: frozen running statistics. */
    check_grads("batch_norm", "eps=0.01", image(3, 2, 3), 2, 304, FALSE, 3);
    check_grads("batch_norm", "affine=false", f32_info(1, (gint64[]){4}), 3, 305, FALSE, 1);
}

static void test_gradcheck_dropout(void)
{
    /* The mask is fixed for a given (seed, step), so the layer is a fixed linear map. */
    check_grads("dropout", "p=0.3", image(2, 3, 4), 3, 400, TRUE, 1);
    check_grads("dropout", "p=0.5", f32_info(1, (gint64[]){9}), 2, 401, FALSE, 1);
}

/* ---- PyTorch fixtures ---- */

static char *fixture_path(void)
{
    const char *dir = g_getenv("LMN_TEST_FIXTURES");
    g_assert_nonnull(dir);
    return g_build_filename(dir, "layers-cnn.h5", NULL);
}

static char *read_attr_string(hid_t group, const char *name)
{
    hid_t attr = H5Aopen(group, name, H5P_DEFAULT);
    g_assert_cmpint(attr, >=, 0);
    hid_t ftype = H5Aget_type(attr);
    char *out;
    if (H5Tis_variable_str(ftype) > 0) {
        hid_t mtype = H5Tcopy(H5T_C_S1);
        H5Tset_size(mtype, H5T_VARIABLE);
        /* h5py writes UTF-8; HDF5 refuses to convert between character sets. */
        H5Tset_cset(mtype, H5Tget_cset(ftype));
        char *s = NULL;
        g_assert_cmpint(H5Aread(attr, mtype, &s), >=, 0);
        out = g_strdup(s);
        H5free_memory(s);
        H5Tclose(mtype);
    } else {
        gsize n = H5Tget_size(ftype);
        out = g_malloc0(n + 1);
        g_assert_cmpint(H5Aread(attr, ftype, out), >=, 0);
    }
    H5Tclose(ftype);
    H5Aclose(attr);
    return out;
}

static gint64 read_attr_int(hid_t group, const char *name)
{
    hid_t attr = H5Aopen(group, name, H5P_DEFAULT);
    g_assert_cmpint(attr, >=, 0);
    gint64 v = 0;
    g_assert_cmpint(H5Aread(attr, H5T_NATIVE_INT64, &v), >=, 0);
    H5Aclose(attr);
    return v;
}

/* Reads float32 dataset @name; @shape receives its full shape (batch included). */
static float *read_f32(hid_t group, const char *name, LmnShape *shape)
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
    float *data = g_new(float, lmn_shape_numel(shape));
    g_assert_cmpint(H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), >=, 0);
    H5Sclose(space);
    H5Dclose(dset);
    return data;
}

static gboolean has_link(hid_t group, const char *path)
{
    /* H5Lexists needs every intermediate group to exist. */
    g_autofree char *parent = g_path_get_dirname(path);
    if (strcmp(parent, ".") != 0 && H5Lexists(group, parent, H5P_DEFAULT) <= 0) {
        return FALSE;
    }
    return H5Lexists(group, path, H5P_DEFAULT) > 0;
}

static void assert_close(const char *what, const float *got, const float *want, gint64 n)
{
    double scale = 0.0, worst = 0.0;
    gint64 worst_at = 0;
    for (gint64 i = 0; i < n; i++) {
        scale = MAX(scale, fabs(want[i]));
    }
    for (gint64 i = 0; i < n; i++) {
        double e = fabs((double) got[i] - (double) want[i]);
        g_assert_true(isfinite(got[i]));
        if (e > worst) {
            worst = e;
            worst_at = i;
        }
    }
    double rel = worst / MAX(scale, 1e-6);
    g_test_message("%s: %" G_GINT64_FORMAT " values, max |want| %.3g, worst relative error %.2e "
                   "at %" G_GINT64_FORMAT " (got %.8g, want %.8g)",
                   what, n, scale, rel, worst_at, got[worst_at], want[worst_at]);
    if (rel > FIXTURE_TOLERANCE) {
        g_error("%s: relative error %.3e above %.0e at element %" G_GINT64_FORMAT
                " (got %.8g, want %.8g)",
                what, rel, FIXTURE_TOLERANCE, worst_at, got[worst_at], want[worst_at]);
    }
}

/* Writes the fixture's values into @t after checking that it has the fixture's shape. */
static void write_checked(LmnTensor *t, const float *values, const LmnShape *shape,
                          const char *what)
{
    g_autofree char *a = lmn_shape_to_string(&t->shape);
    g_autofree char *b = lmn_shape_to_string(shape);
    if (!lmn_shape_equal(&t->shape, shape)) {
        g_error("%s: the layer's shape %s differs from PyTorch's %s", what, a, b);
    }
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_tensor_write(t, values, lmn_tensor_nbytes(t), &error));
    g_assert_no_error(error);
}

static void compare_tensor(LmnTensor *t, hid_t group, const char *path, const char *case_name)
{
    LmnShape shape;
    g_autofree float *want = read_f32(group, path, &shape);
    g_autofree char *what = g_strdup_printf("%s %s", case_name, path);
    if (lmn_tensor_numel(t) != lmn_shape_numel(&shape)) {
        g_error("%s: %" G_GINT64_FORMAT " values, PyTorch has %" G_GINT64_FORMAT, what,
                lmn_tensor_numel(t), lmn_shape_numel(&shape));
    }
    g_autofree float *got = tensor_get(t);
    assert_close(what, got, want, lmn_shape_numel(&shape));
}

static void test_pytorch_case(gconstpointer data)
{
    const char *case_name = data;
    g_autofree char *path = fixture_path();
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(file, >=, 0);
    hid_t group = H5Gopen2(file, case_name, H5P_DEFAULT);
    g_assert_cmpint(group, >=, 0);
    g_autofree char *type = read_attr_string(group, "type");
    g_autofree char *params = read_attr_string(group, "params");
    gboolean training = read_attr_int(group, "training") != 0;

    LmnShape xs, rs;
    g_autofree float *x = read_f32(group, "x", &xs);
    g_autofree float *r = read_f32(group, "r", &rs);
    const gint64 batch = xs.dims[0];
    LmnTensorInfo in = {.dtype = LMN_DTYPE_F32, .shape = {.ndim = xs.ndim - 1}};
    memcpy(in.shape.dims, xs.dims + 1, sizeof(gint64) * (xs.ndim - 1));
    scoped_layer layer = layer_make(type, params, &in, 0);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_layer_prepare_batch(layer, batch, &error));

    /* Parameters and buffers by PyTorch's names; every one of ours must be in the file. */
    for (guint i = 0; i < lmn_layer_get_n_params(layer); i++) {
        g_autofree char *p = g_strdup_printf("param/%s", lmn_layer_get_param_name(layer, i));
        g_assert_true(has_link(group, p));
        LmnShape s;
        g_autofree float *v = read_f32(group, p, &s);
        write_checked(lmn_layer_get_param(layer, i), v, &s, p);
        lmn_op_fill(lmn_layer_get_grad(layer, i), 1000.0f);
    }
    for (guint i = 0; i < lmn_layer_get_n_buffers(layer); i++) {
        g_autofree char *p = g_strdup_printf("buffer/%s", lmn_layer_get_buffer_name(layer, i));
        g_assert_true(has_link(group, p));
        LmnShape s;
        g_autofree float *v = read_f32(group, p, &s);
        write_checked(lmn_layer_get_buffer(layer, i), v, &s, p);
    }

    g_autoptr(LmnTensor) xt = tensor_make(&in.shape, batch, x);
    g_autoptr(LmnTensor) yt = tensor_make(&lmn_layer_get_output_info(layer)->shape, batch, NULL);
    g_autoptr(LmnTensor) rt = tensor_make(&lmn_layer_get_output_info(layer)->shape, batch, NULL);
    write_checked(rt, r, &rs, "r");
    g_autoptr(LmnTensor) dxt = tensor_make(&in.shape, batch, NULL);
    lmn_op_fill(dxt, 1000.0f);
    LmnTensor *ins[1] = {xt};
    LmnTensor *grads[1] = {dxt};
    LmnLayerIO io = {
        .struct_size = sizeof(LmnLayerIO),
        .n_inputs = 1,
        .inputs = ins,
        .output = yt,
        .batch = batch,
        .training = training,
        .seed = 1,
    };
    lmn_layer_forward(layer, &io);
    compare_tensor(yt, group, "y", case_name);
    for (guint i = 0; i < lmn_layer_get_n_buffers(layer); i++) {
        g_autofree char *p =
            g_strdup_printf("buffer_after/%s", lmn_layer_get_buffer_name(layer, i));
        compare_tensor(lmn_layer_get_buffer(layer, i), group, p, case_name);
    }

    io.output_grad = rt;
    io.input_grads = grads;
    lmn_layer_backward(layer, &io);
    compare_tensor(dxt, group, "dx", case_name);
    for (guint i = 0; i < lmn_layer_get_n_params(layer); i++) {
        g_autofree char *p = g_strdup_printf("grad/%s", lmn_layer_get_param_name(layer, i));
        compare_tensor(lmn_layer_get_grad(layer, i), group, p, case_name);
    }
    g_assert_true(lmn_backend_synchronize(backend, &error));
    g_assert_no_error(error);
    H5Gclose(group);
    H5Fclose(file);
}

static const char *const pytorch_cases[] = {
    "conv_basic",          "conv_stride_padding",     "conv_dilation",
    "conv_groups",         "conv_no_bias",            "conv_1x1_groups",
    "maxpool",             "maxpool_stride_padding",  "maxpool_dilation",
    "avgpool",             "avgpool_stride_padding",  "global_avgpool",
    "batch_norm_2d_train", "batch_norm_1d_train",     "batch_norm_2d_eval",
    "batch_norm_2d_no_affine",
};

/* ---- dropout ---- */

typedef struct {
    LmnLayer *layer;
    LmnTensor *x, *y, *dy, *dx;
    gint64 n; /* elements per batch */
} DropoutRun;

static void dropout_setup(DropoutRun *d, const char *params, gint64 batch, gint64 features,
                          guint index)
{
    LmnTensorInfo in = f32_info(1, (gint64[]){features});
    d->layer = layer_make("dropout", params, &in, index);
    d->n = batch * features;
    g_autofree float *x = g_new(float, d->n);
    g_autofree float *dy = g_new(float, d->n);
    for (gint64 i = 0; i < d->n; i++) {
        /* Non-zero values, so that y = 0 identifies a dropped element. */
        x[i] = 0.5f + (float) (i % 17) * 0.125f;
        dy[i] = -1.0f + (float) (i % 13) * 0.25f;
        if (dy[i] == 0.0f) {
            dy[i] = 3.0f;
        }
    }
    d->x = tensor_make(&in.shape, batch, x);
    d->dy = tensor_make(&in.shape, batch, dy);
    d->y = tensor_make(&in.shape, batch, NULL);
    d->dx = tensor_make(&in.shape, batch, NULL);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_layer_prepare_batch(d->layer, batch, &error));
}

static void dropout_clear(DropoutRun *d)
{
    lmn_layer_free(d->layer);
    lmn_tensor_unref(d->x);
    lmn_tensor_unref(d->y);
    lmn_tensor_unref(d->dy);
    lmn_tensor_unref(d->dx);
}

/* Runs forward (and backward) at (@seed, @step); returns the output, and dx in @dx_out. */
static float *dropout_run(DropoutRun *d, gboolean training, guint64 seed, guint64 step,
                          float **dx_out)
{
    LmnTensor *ins[1] = {d->x};
    LmnTensor *grads[1] = {d->dx};
    LmnLayerIO io = {
        .struct_size = sizeof(LmnLayerIO),
        .n_inputs = 1,
        .inputs = ins,
        .output = d->y,
        .batch = d->y->shape.dims[0],
        .training = training,
        .step = step,
        .seed = seed,
    };
    lmn_layer_forward(d->layer, &io);
    if (dx_out != NULL) {
        io.output_grad = d->dy;
        io.input_grads = grads;
        lmn_op_fill(d->dx, 1000.0f);
        lmn_layer_backward(d->layer, &io);
        *dx_out = tensor_get(d->dx);
    }
    return tensor_get(d->y);
}

/* The mask documented in dropout.c and ops.h, computed on the host with Philox. */
static gboolean reference_keeps(guint64 seed, guint index, guint64 step, gint64 i, float p)
{
    guint64 stream = LMN_STREAM(LMN_STREAM_LAYER, index) | ((step & 0xFFFFFFu) << 40);
    guint64 block = (guint64) i / 4;
    const guint32 key[2] = {(guint32) seed, (guint32) (seed >> 32)};
    const guint32 ctr[4] = {(guint32) block, (guint32) (block >> 32), (guint32) stream,
                            (guint32) (stream >> 32)};
    guint32 out[4];
    lmn_philox4x32(key, ctr, out);
    float u = (float) (out[i % 4] >> 8) * (1.0f / 16777216.0f);
    return u >= p;
}

static void test_dropout_eval_is_identity(void)
{
    DropoutRun d;
    dropout_setup(&d, "p=0.5", 4, 25, 3);
    g_autofree float *x = tensor_get(d.x);
    g_autofree float *dy = tensor_get(d.dy);
    float *dx = NULL;
    g_autofree float *y = dropout_run(&d, FALSE, 9, 5, &dx);
    for (gint64 i = 0; i < d.n; i++) {
        g_assert_cmpfloat(y[i], ==, x[i]);
        g_assert_cmpfloat(dx[i], ==, dy[i]);
    }
    g_free(dx);
    dropout_clear(&d);
}

static void test_dropout_training_mask(void)
{
    const float p = 0.3f, scale = 1.0f / (1.0f - p);
    const guint index = 5;
    DropoutRun d;
    dropout_setup(&d, "p=0.3", 64, 1563, index); /* 100032 elements */
    g_autofree float *x = tensor_get(d.x);
    g_autofree float *dy = tensor_get(d.dy);
    float *dx = NULL;
    g_autofree float *y = dropout_run(&d, TRUE, 77, 12, &dx);
    gint64 kept = 0;
    for (gint64 i = 0; i < d.n; i++) {
        gboolean keep = y[i] != 0.0f;
        /* y = x * mask with mask in {0, 1/(1-p)}, and dx = dy * the same mask. */
        if (keep) {
            g_assert_cmpfloat(y[i], ==, x[i] * scale);
            g_assert_cmpfloat(dx[i], ==, dy[i] * scale);
        } else {
            g_assert_cmpfloat(dx[i], ==, 0.0f);
        }
        /* Exactly the documented draw, which other backends reproduce. */
        g_assert_cmpint(keep, ==, reference_keeps(77, index, 12, i, p));
        kept += keep;
    }
    /* The kept fraction: standard deviation sqrt(p (1 - p) / n) = 0.0014; allow 5 of them. */
    double frac = (double) kept / (double) d.n;
    double sd = sqrt(p * (1.0 - p) / (double) d.n);
    g_test_message("kept %.4f of %" G_GINT64_FORMAT, frac, d.n);
    g_assert_cmpfloat(fabs(frac - (1.0 - p)), <, 5 * sd);
    g_free(dx);
    dropout_clear(&d);
}

static gint64 count_differences(const float *a, const float *b, gint64 n)
{
    gint64 diff = 0;
    for (gint64 i = 0; i < n; i++) {
        diff += (a[i] == 0.0f) != (b[i] == 0.0f);
    }
    return diff;
}

static void test_dropout_masks_per_step(void)
{
    DropoutRun d;
    dropout_setup(&d, "p=0.5", 8, 500, 2);
    g_autofree float *a = dropout_run(&d, TRUE, 3, 10, NULL);
    g_autofree float *same = dropout_run(&d, TRUE, 3, 10, NULL);
    g_autofree float *next = dropout_run(&d, TRUE, 3, 11, NULL);
    g_autofree float *other_seed = dropout_run(&d, TRUE, 4, 10, NULL);
    g_assert_cmpint(memcmp(a, same, sizeof(float) * d.n), ==, 0);
    /* Independent masks with p = 0.5 differ in half of the 4000 elements. */
    g_assert_cmpint(count_differences(a, next, d.n), >, d.n / 4);
    g_assert_cmpint(count_differences(a, other_seed, d.n), >, d.n / 4);

    /* Another layer index: another stream, another mask at the same step. */
    DropoutRun e;
    dropout_setup(&e, "p=0.5", 8, 500, 7);
    g_autofree float *b = dropout_run(&e, TRUE, 3, 10, NULL);
    g_assert_cmpint(count_differences(a, b, d.n), >, d.n / 4);
    dropout_clear(&e);
    dropout_clear(&d);
}

static void test_dropout_p_zero(void)
{
    DropoutRun d;
    dropout_setup(&d, "p=0", 2, 50, 0);
    g_autofree float *x = tensor_get(d.x);
    g_autofree float *y = dropout_run(&d, TRUE, 1, 1, NULL);
    g_assert_cmpint(memcmp(x, y, sizeof(float) * d.n), ==, 0);
    dropout_clear(&d);

    /* p = 1 would divide by zero: the schema refuses it, naming the key. */
    g_autoptr(GError) error = NULL;
    const char *keys[] = {"p", NULL}, *values[] = {"1", NULL};
    LmnParams *p = params_from("dropout", keys, values, &error);
    g_assert_null(p);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
    g_test_message("%s", error->message);
    g_assert_nonnull(strstr(error->message, "test [layer]"));
    g_assert_nonnull(strstr(error->message, "'p'"));
}

/* ---- initialisation ---- */

static float *init_and_read(LmnLayer *l, guint index)
{
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_layer_init_params(l, registry, 11, 0, NULL, NULL, "test", &error));
    g_assert_no_error(error);
    return tensor_get(lmn_layer_get_param(l, index));
}

/*
 * torch.nn.Conv2d draws weight and bias from U(-b, b), b = 1/sqrt(fan_in), fan_in = C/G kh kw.
 * 64 * 4 * 3 * 3 = 2304 weights: the sample variance's standard error is b^2 sqrt(4/45/n), 0.6%
 * of b^2/3, so 4% is a 6-sigma band; a fan_in that ignored the groups (8 * 9) would be 50% off.
 */
static void test_conv_init_matches_pytorch(void)
{
    LmnTensorInfo in = image(8, 6, 6);
    scoped_layer l = layer_make("conv2d", "out_channels=64;kernel_size=3;groups=2", &in, 0);
    const double bound = 1.0 / sqrt(4.0 * 9.0);
    g_autofree float *w = init_and_read(l, 0);
    const gint64 n = 64 * 4 * 9;
    g_assert_cmpint(lmn_tensor_numel(lmn_layer_get_param(l, 0)), ==, n);
    double sum2 = 0.0;
    for (gint64 i = 0; i < n; i++) {
        g_assert_cmpfloat(fabs(w[i]), <=, bound * (1 + 1e-6));
        sum2 += (double) w[i] * w[i];
    }
    double expected = bound * bound / 3.0;
    g_assert_cmpfloat(fabs(sum2 / n - expected) / expected, <, 0.04);
    g_autofree float *b = tensor_get(lmn_layer_get_param(l, 1));
    double bmax = 0.0;
    for (gint64 i = 0; i < 64; i++) {
        g_assert_cmpfloat(fabs(b[i]), <=, bound * (1 + 1e-6));
        bmax = MAX(bmax, fabs(b[i]));
    }
    g_assert_cmpfloat(bmax, >, 0.8 * bound);
    /* PyTorch's names and shapes. */
    g_assert_cmpstr(lmn_layer_get_param_name(l, 0), ==, "weight");
    g_assert_cmpstr(lmn_layer_get_param_name(l, 1), ==, "bias");
    LmnShape ws = lmn_shape_make(4, (gint64) 64, (gint64) 4, (gint64) 3, (gint64) 3);
    g_assert_true(lmn_shape_equal(&lmn_layer_get_param(l, 0)->shape, &ws));
    g_assert_cmpint(lmn_layer_get_param_role(l, 1), ==, LMN_PARAM_ROLE_BIAS);
}

static void test_batch_norm_init(void)
{
    LmnTensorInfo in = image(5, 2, 2);
    scoped_layer l = layer_make("batch_norm", "", &in, 0);
    g_assert_cmpuint(lmn_layer_get_n_params(l), ==, 2);
    g_assert_cmpuint(lmn_layer_get_n_buffers(l), ==, 2);
    g_assert_cmpstr(lmn_layer_get_buffer_name(l, 0), ==, "running_mean");
    g_assert_cmpstr(lmn_layer_get_buffer_name(l, 1), ==, "running_var");
    g_autofree float *w = init_and_read(l, 0);
    g_autofree float *b = tensor_get(lmn_layer_get_param(l, 1));
    g_autofree float *rm = tensor_get(lmn_layer_get_buffer(l, 0));
    g_autofree float *rv = tensor_get(lmn_layer_get_buffer(l, 1));
    for (guint i = 0; i < 5; i++) {
        g_assert_cmpfloat(w[i], ==, 1.0f);
        g_assert_cmpfloat(b[i], ==, 0.0f);
        g_assert_cmpfloat(rm[i], ==, 0.0f);
        g_assert_cmpfloat(rv[i], ==, 1.0f);
    }
    /* Neither parameters nor running statistics when both are switched off. */
    scoped_layer bare = layer_make("batch_norm", "affine=false;track_running_stats=false", &in, 0);
    g_assert_cmpuint(lmn_layer_get_n_params(bare), ==, 0);
    g_assert_cmpuint(lmn_layer_get_n_buffers(bare), ==, 0);
}

/* Without running statistics, evaluation normalises with the batch's own (as PyTorch does). */
static void test_batch_norm_untracked_eval(void)
{
    LmnTensorInfo in = f32_info(1, (gint64[]){2});
    scoped_layer l = layer_make("batch_norm", "affine=false;track_running_stats=false", &in, 0);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_layer_prepare_batch(l, 4, &error));
    const float x[8] = {1, 10, 2, 20, 3, 30, 6, 40};
    g_autoptr(LmnTensor) xt = tensor_make(&in.shape, 4, x);
    g_autoptr(LmnTensor) yt = tensor_make(&in.shape, 4, NULL);
    LmnTensor *ins[1] = {xt};
    LmnLayerIO io = {.struct_size = sizeof(LmnLayerIO), .n_inputs = 1, .inputs = ins,
                     .output = yt, .batch = 4, .training = FALSE};
    lmn_layer_forward(l, &io);
    g_autofree float *y = tensor_get(yt);
    for (int c = 0; c < 2; c++) {
        double mean = 0, var = 0;
        for (int n = 0; n < 4; n++) {
            mean += x[n * 2 + c] / 4.0;
        }
        for (int n = 0; n < 4; n++) {
            var += (x[n * 2 + c] - mean) * (x[n * 2 + c] - mean) / 4.0;
        }
        for (int n = 0; n < 4; n++) {
            double want = (x[n * 2 + c] - mean) / sqrt(var + 1e-5);
            g_assert_cmpfloat(fabs(y[n * 2 + c] - want), <, 1e-5);
        }
    }
}

/* ---- build errors ---- */

static void assert_build_error(const char *type, const char *params, LmnTensorInfo in,
                               GQuark domain, gint code, const char *const *needles)
{
    g_autoptr(GError) error = NULL;
    scoped_layer l = layer_try(type, params, &in, 0, &error);
    g_assert_null(l);
    g_assert_error(error, domain, code);
    g_test_message("%s (%s): %s", type, params, error->message);
    g_assert_nonnull(strstr(error->message, "'L'"));
    for (guint i = 0; needles[i] != NULL; i++) {
        if (strstr(error->message, needles[i]) == NULL) {
            g_error("'%s' not in: %s", needles[i], error->message);
        }
    }
}

#define NEEDLES(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_conv_errors(void)
{
    assert_build_error("conv2d", "out_channels=4;kernel_size=3;groups=2", image(3, 5, 5),
                       LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                       NEEDLES("conv2d", "3 channels", "groups = 2"));
    assert_build_error("conv2d", "out_channels=5;kernel_size=3;groups=2", image(4, 5, 5),
                       LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                       NEEDLES("out_channels = 5", "groups = 2"));
    assert_build_error("conv2d", "out_channels=4;kernel_size=5", image(1, 4, 8),
                       LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                       NEEDLES("4x8", "5x5", "empty"));
    assert_build_error("conv2d", "out_channels=4;kernel_size=3;dilation=3", image(1, 6, 8),
                       LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH, NEEDLES("7x7", "empty"));
    assert_build_error("conv2d", "out_channels=4;kernel_size=3", f32_info(1, (gint64[]){30}),
                       LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                       NEEDLES("[30]", "[channels, height, width]"));
    assert_build_error("conv2d", "out_channels=4;kernel_size=3, 3, 3", image(1, 6, 6),
                       LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                       NEEDLES("kernel_size", "3 values"));
    assert_build_error("conv2d", "out_channels=4;kernel_size=2.5", image(1, 6, 6),
                       LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                       NEEDLES("kernel_size", "2.5", "not an integer"));
    assert_build_error("conv2d", "out_channels=4;kernel_size=3;stride=1, 1.5", image(1, 6, 6),
                       LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID, NEEDLES("stride", "1.5"));

    /* The schema's own range checks name the key. */
    g_autoptr(GError) error = NULL;
    const char *keys[] = {"out_channels", "kernel_size", "padding", NULL};
    const char *values[] = {"4", "3", "-1", NULL};
    LmnParams *p = params_from("conv2d", keys, values, &error);
    g_assert_null(p);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
    g_assert_nonnull(strstr(error->message, "padding"));
    g_clear_error(&error);
    const char *keys2[] = {"kernel_size", NULL};
    const char *values2[] = {"3", NULL};
    p = params_from("conv2d", keys2, values2, &error);
    g_assert_null(p);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_MISSING);
    g_assert_nonnull(strstr(error->message, "out_channels"));
}

static void test_pool_errors(void)
{
    assert_build_error("maxpool2d", "kernel_size=3;padding=2", image(1, 8, 8), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_INVALID, NEEDLES("maxpool2d", "padding 2", "half"));
    assert_build_error("avgpool2d", "kernel_size=2, 4;padding=1, 3", image(1, 8, 8),
                       LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                       NEEDLES("avgpool2d", "padding 3", "width"));
    assert_build_error("maxpool2d", "kernel_size=3", image(2, 2, 5), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_GRAPH, NEEDLES("2x5", "empty"));
    assert_build_error("avgpool2d", "kernel_size=2", f32_info(2, (gint64[]){3, 4}),
                       LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH, NEEDLES("[3, 4]"));
    assert_build_error("global_avgpool", "", f32_info(1, (gint64[]){16}), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_GRAPH, NEEDLES("global_avgpool", "[16]"));

    /* maxpool's stride defaults to the kernel size, as in PyTorch. */
    LmnTensorInfo in = image(2, 9, 7);
    scoped_layer l = layer_make("maxpool2d", "kernel_size=3, 2", &in, 0);
    const LmnShape *out = &lmn_layer_get_output_info(l)->shape;
    g_assert_cmpint(out->dims[0], ==, 2);
    g_assert_cmpint(out->dims[1], ==, 3);
    g_assert_cmpint(out->dims[2], ==, 3);
}

static void test_batch_norm_errors(void)
{
    assert_build_error("batch_norm", "", f32_info(4, (gint64[]){2, 3, 4, 5}), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_GRAPH, NEEDLES("batch_norm", "[2, 3, 4, 5]"));
    assert_build_error("batch_norm", "", f32_info(0, NULL), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_GRAPH, NEEDLES("batch_norm", "[]"));
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

    g_test_add_func("/layers/cnn/gradcheck/conv2d", test_gradcheck_conv);
    g_test_add_func("/layers/cnn/gradcheck/pool", test_gradcheck_pool);
    g_test_add_func("/layers/cnn/gradcheck/batch-norm", test_gradcheck_batch_norm);
    g_test_add_func("/layers/cnn/gradcheck/dropout", test_gradcheck_dropout);
    for (guint i = 0; i < G_N_ELEMENTS(pytorch_cases); i++) {
        g_autofree char *path = g_strdup_printf("/layers/cnn/pytorch/%s", pytorch_cases[i]);
        g_test_add_data_func(path, pytorch_cases[i], test_pytorch_case);
    }
    g_test_add_func("/layers/cnn/dropout/eval-is-identity", test_dropout_eval_is_identity);
    g_test_add_func("/layers/cnn/dropout/training-mask", test_dropout_training_mask);
    g_test_add_func("/layers/cnn/dropout/masks-per-step", test_dropout_masks_per_step);
    g_test_add_func("/layers/cnn/dropout/p-zero", test_dropout_p_zero);
    g_test_add_func("/layers/cnn/init/conv-matches-pytorch", test_conv_init_matches_pytorch);
    g_test_add_func("/layers/cnn/init/batch-norm", test_batch_norm_init);
    g_test_add_func("/layers/cnn/batch-norm/untracked-eval", test_batch_norm_untracked_eval);
    g_test_add_func("/layers/cnn/errors/conv2d", test_conv_errors);
    g_test_add_func("/layers/cnn/errors/pool", test_pool_errors);
    g_test_add_func("/layers/cnn/errors/batch-norm", test_batch_norm_errors);

    int rc = g_test_run();
    lmn_backend_unref(backend);
    lmn_registry_free(registry);
    return rc;
}
