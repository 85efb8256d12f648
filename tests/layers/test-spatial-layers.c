/* Spatial layers on the CPU backend: conv_transpose2d, upsample, pad, crop, slice, dropout2d,
 * local_response_norm, prelu, max_unpool2d (in a model, after the maxpool2d it names),
 * gaussian_noise and dense on inputs of any rank.
 *
 * Oracles: finite-difference gradient checks (gradcheck.h) of inputs and parameters over several
 * geometries; forward and backward against PyTorch, recorded in float64 by
 * scripts/make-spatial-layer-fixtures.py (tests/fixtures/layers-spatial.h5); PyTorch's default
 * initialisation of ConvTranspose2d; the noise's statistics; and the build errors of bad
 * configurations, each naming the layer and the key.
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
static LmnParams *params_from(const char *type, const char *const *keys, const char *const *values,
                              GError **error)
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
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) r = lmn_gradcheck_layer(registry, backend, type, p, 1, &in, &o, &error);
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

/* ---- PyTorch fixtures ---- */

static char *fixture_path(void)
{
    const char *dir = g_getenv("LMN_TEST_FIXTURES");
    g_assert_nonnull(dir);
    return g_build_filename(dir, "layers-spatial.h5", NULL);
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
    "convt_basic",
    "convt_stride_padding",
    "convt_dilation_groups",
    "convt_output_padding_dilation",
    "convt_1x1_no_bias",
    "dense_3d",
    "pad_constant",
    "pad_reflect",
    "pad_replicate",
    "crop",
    "upsample_nearest",
    "upsample_nearest_fraction",
    "upsample_nearest_size",
    "upsample_bilinear",
    "upsample_bilinear_align",
    "upsample_bilinear_down",
    "lrn_size5",
    "lrn_size2",
    "lrn_1d",
    "slice_middle",
    "slice_last",
    "prelu_one",
    "prelu_channels",
    "prelu_features",
};

/* ---- gradient checks ---- */

static void test_gradcheck_conv_transpose(void)
{
    static const struct {
        const char *params;
        LmnTensorInfo in;
        gint64 batch;
        guint tensors;
    } cases[] = {
        {"out_channels=3;kernel_size=3", {{3, {2, 4, 3}}, LMN_DTYPE_F32}, 2, 3},
        {"out_channels=4;kernel_size=3;stride=2;padding=1;output_padding=1",
         {{3, {2, 3, 4}}, LMN_DTYPE_F32},
         3,
         3},
        {"out_channels=4;kernel_size=2, 3;groups=2;dilation=2;stride=1, 2",
         {{3, {4, 3, 3}}, LMN_DTYPE_F32},
         2,
         3},
        {"out_channels=3;kernel_size=2;dilation=3;output_padding=2",
         {{3, {2, 3, 3}}, LMN_DTYPE_F32},
         1,
         3},
        {"out_channels=2;kernel_size=1;bias=false", {{3, {3, 3, 4}}, LMN_DTYPE_F32}, 2, 2},
    };
    for (guint c = 0; c < G_N_ELEMENTS(cases); c++) {
        check_grads("conv_transpose2d", cases[c].params, cases[c].in, cases[c].batch, 500 + c, TRUE,
                    cases[c].tensors);
    }
}

static void test_gradcheck_pad_crop(void)
{
    check_grads("pad", "padding=2, 1, 3, 1;value=0.5", image(2, 4, 3), 2, 600, TRUE, 1);
    check_grads("pad", "padding=2, 1, 3, 1;mode=reflect", image(2, 5, 4), 2, 601, TRUE, 1);
    check_grads("pad", "padding=3, 0, 1, 2;mode=replicate", image(2, 3, 4), 2, 602, TRUE, 1);
    check_grads("pad", "padding=1;mode=replicate", image(1, 1, 1), 3, 603, TRUE, 1);
    check_grads("crop", "cropping=1, 2, 0, 3", image(2, 6, 5), 2, 604, TRUE, 1);
    check_grads("slice", "axis=1;start=1;end=-1", image(2, 5, 3), 2, 605, TRUE, 1);
    check_grads("slice", "axis=0;start=-2", f32_info(2, (gint64[]){4, 3}), 3, 606, TRUE, 1);
}

static void test_gradcheck_upsample(void)
{
    check_grads("upsample", "scale_factor=2, 3", image(2, 3, 2), 2, 800, TRUE, 1);
    check_grads("upsample", "size=2, 7", image(2, 5, 3), 2, 801, TRUE, 1);
    check_grads("upsample", "mode=bilinear;scale_factor=1.5", image(2, 3, 4), 2, 802, TRUE, 1);
    check_grads("upsample", "mode=bilinear;size=5, 3;align_corners=true", image(1, 3, 4), 2, 803,
                TRUE, 1);
    check_grads("upsample", "mode=bilinear;size=2, 3", image(2, 5, 7), 2, 804, TRUE, 1);
}

static void test_gradcheck_dense_rank(void)
{
    check_grads("dense", "units=3", f32_info(2, (gint64[]){4, 5}), 2, 700, TRUE, 3);
    check_grads("dense", "units=2;bias=false", f32_info(3, (gint64[]){2, 3, 4}), 2, 701, TRUE, 2);
    check_grads("gaussian_noise", "std=0.5", image(2, 3, 4), 2, 702, TRUE, 1);
    check_grads("dropout2d", "p=0.4", image(5, 3, 2), 3, 704, TRUE, 1);
    check_grads("prelu", "", image(3, 4, 5), 3, 708, TRUE, 2);
    check_grads("prelu", "num_parameters=3", image(3, 4, 5), 2, 709, TRUE, 2);
    check_grads("prelu", "num_parameters=6;init=-0.3", f32_info(1, (gint64[]){6}), 4, 710, TRUE, 2);
    check_grads("local_response_norm", "size=3;alpha=0.5;k=2", image(6, 2, 3), 2, 706, TRUE, 1);
    check_grads("local_response_norm", "size=4;alpha=0.3;beta=0.5", f32_info(2, (gint64[]){5, 3}),
                2, 707, TRUE, 1);
    check_grads("dropout2d", "p=0.4", f32_info(2, (gint64[]){4, 3}), 2, 705, FALSE, 1);
    check_grads("gaussian_noise", "std=0.5", f32_info(1, (gint64[]){6}), 2, 703, FALSE, 1);
}

/* ---- initialisation ---- */

/*
 * torch.nn.ConvTranspose2d draws weight and bias from U(-b, b), b = 1/sqrt(fan_in), with the fans
 * of its weight [C, OC/G, kh, kw]: fan_in = OC/G kh kw = 16 * 9 here.  16 * 32 * 9 = 4608
 * weights: the sample variance's standard error is 0.4% of b^2/3, so 3% is a 7-sigma band; a
 * fan_in from the input channels (C/G kh kw = 8 * 9) would be 100% off.
 */
static void test_conv_transpose_init(void)
{
    LmnTensorInfo in = image(16, 3, 3);
    scoped_layer l =
        layer_make("conv_transpose2d", "out_channels=64;kernel_size=3;groups=2", &in, 0);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_layer_init_params(l, registry, 11, 0, NULL, NULL, "test", &error));
    g_assert_no_error(error);
    const double bound = 1.0 / sqrt(32.0 * 9.0);
    LmnShape ws = lmn_shape_make(4, (gint64) 16, (gint64) 32, (gint64) 3, (gint64) 3);
    g_assert_true(lmn_shape_equal(&lmn_layer_get_param(l, 0)->shape, &ws));
    g_autofree float *w = tensor_get(lmn_layer_get_param(l, 0));
    const gint64 n = lmn_shape_numel(&ws);
    double sum2 = 0.0;
    for (gint64 i = 0; i < n; i++) {
        g_assert_cmpfloat(fabs(w[i]), <=, bound * (1 + 1e-6));
        sum2 += (double) w[i] * w[i];
    }
    double expected = bound * bound / 3.0;
    g_assert_cmpfloat(fabs(sum2 / n - expected) / expected, <, 0.03);
    g_assert_cmpstr(lmn_layer_get_param_name(l, 0), ==, "weight");
    g_assert_cmpstr(lmn_layer_get_param_name(l, 1), ==, "bias");
    g_assert_cmpint(lmn_tensor_numel(lmn_layer_get_param(l, 1)), ==, 64);
    const LmnShape *out = &lmn_layer_get_output_info(l)->shape;
    g_assert_cmpint(out->dims[0], ==, 64);
    g_assert_cmpint(out->dims[1], ==, 5);
    g_assert_cmpint(out->dims[2], ==, 5);
}

/* ---- gaussian noise ---- */

/* Runs gaussian_noise (std 0.5) on x = 1 for @n values; returns y. */
static float *noise_run(gboolean training, guint64 step, gint64 n)
{
    LmnTensorInfo in = f32_info(1, (gint64[]){n});
    scoped_layer l = layer_make("gaussian_noise", "std=0.5", &in, 3);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_layer_prepare_batch(l, 1, &error));
    g_autoptr(LmnTensor) x = tensor_make(&in.shape, 1, NULL);
    g_autoptr(LmnTensor) y = tensor_make(&in.shape, 1, NULL);
    lmn_op_fill(x, 1.0f);
    LmnTensor *ins[1] = {x};
    LmnLayerIO io = {
        .struct_size = sizeof(LmnLayerIO),
        .n_inputs = 1,
        .inputs = ins,
        .output = y,
        .batch = 1,
        .training = training,
        .step = step,
        .seed = 9,
    };
    lmn_layer_forward(l, &io);
    return tensor_get(y);
}

/* Mean 1 and std 0.5 within 5 standard errors, fresh noise per step, identity in evaluation. */
static void test_noise_statistics(void)
{
    const gint64 n = 20000;
    g_autofree float *a = noise_run(TRUE, 0, n);
    g_autofree float *b = noise_run(TRUE, 1, n);
    g_autofree float *e = noise_run(FALSE, 0, n);
    double sum = 0.0, sum2 = 0.0;
    gint64 same = 0;
    for (gint64 i = 0; i < n; i++) {
        sum += a[i];
        sum2 += ((double) a[i] - 1.0) * ((double) a[i] - 1.0);
        same += a[i] == b[i];
        g_assert_cmpfloat(e[i], ==, 1.0f);
    }
    g_assert_cmpfloat(fabs(sum / n - 1.0), <, 5 * 0.5 / sqrt((double) n));
    g_assert_cmpfloat(fabs(sqrt(sum2 / n) - 0.5), <, 5 * 0.5 / sqrt(2.0 * n));
    g_assert_cmpint(same, <, 10);
}

/* ---- dropout2d ---- */

/*
 * Whole channels are zeroed or scaled by 1 / (1 - p): 2000 channels of 6 pixels at p = 0.3 drop
 * 600 +- 20.5 (one standard deviation), so [500, 700] is a 5-sigma band; the next step draws
 * another mask, and evaluation is the identity.
 */
static float *dropout2d_run(gboolean training, guint64 step, gint64 channels)
{
    LmnTensorInfo in = image(channels, 2, 3);
    scoped_layer l = layer_make("dropout2d", "p=0.3", &in, 4);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_layer_prepare_batch(l, 1, &error));
    g_autoptr(LmnTensor) x = tensor_make(&in.shape, 1, NULL);
    g_autoptr(LmnTensor) y = tensor_make(&in.shape, 1, NULL);
    lmn_op_fill(x, 2.0f);
    LmnTensor *ins[1] = {x};
    LmnLayerIO io = {
        .struct_size = sizeof(LmnLayerIO),
        .n_inputs = 1,
        .inputs = ins,
        .output = y,
        .batch = 1,
        .training = training,
        .step = step,
        .seed = 5,
    };
    lmn_layer_forward(l, &io);
    return tensor_get(y);
}

static void test_dropout2d_channels(void)
{
    const gint64 channels = 2000;
    g_autofree float *a = dropout2d_run(TRUE, 0, channels);
    g_autofree float *b = dropout2d_run(TRUE, 1, channels);
    g_autofree float *e = dropout2d_run(FALSE, 0, channels);
    gint64 dropped = 0, differ = 0;
    for (gint64 c = 0; c < channels; c++) {
        const float *plane = a + c * 6;
        g_assert_true(plane[0] == 0.0f || fabsf(plane[0] - 2.0f / 0.7f) < 1e-6f);
        for (int i = 1; i < 6; i++)
            g_assert_cmpfloat(plane[i], ==, plane[0]);
        dropped += plane[0] == 0.0f;
        differ += (plane[0] == 0.0f) != (b[c * 6] == 0.0f);
        for (int i = 0; i < 6; i++)
            g_assert_cmpfloat(e[c * 6 + i], ==, 2.0f);
    }
    g_assert_cmpint(dropped, >=, 500);
    g_assert_cmpint(dropped, <=, 700);
    g_assert_cmpint(differ, >, 500); /* independent masks differ on 2 p (1 - p) = 42% */
}

/* ---- build-error helpers ---- */

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

/* ---- max_unpool2d: a model of the maxpool2d it names and itself ---- */

/* A loss-free model from config @text on @b, or NULL with @error; the model reads its config,
 * which *@cfg receives (free it after the model). */
static LmnModel *model_try(LmnBackend *b, const char *text, LmnConfig **cfg, GError **error)
{
    *cfg = lmn_config_new_from_data(text, -1, "test.ini", error);
    if (*cfg == NULL || !lmn_config_validate(*cfg, registry, error))
        return NULL;
    return lmn_model_new_full(*cfg, registry, b, NULL, LMN_MODEL_ALLOW_NO_LOSS, error);
}

static char *unpool_config(const char *pool, const LmnShape *in)
{
    g_autofree char *keys = g_strdelimit(g_strdup(pool), ";", '\n');
    return g_strdup_printf("[model]\ninput = %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                           ", %" G_GINT64_FORMAT "\n[layer pool]\ntype = maxpool2d\n%s\n"
                           "[layer up]\ntype = max_unpool2d\nindices = pool\n"
                           "[optimizer]\ntype = sgd\n[train]\nbackend = cpu\n"
                           "[data]\ntrain = unused.h5:/train\n",
                           in->dims[1], in->dims[2], in->dims[3], keys);
}

/* y = unpool(pool(x)) and dx = d sum(y * r) / dx against PyTorch's max_unpool2d. */
static void test_unpool_case(gconstpointer data)
{
    const char *case_name = data;
    g_autofree char *path = fixture_path();
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t group = H5Gopen2(file, case_name, H5P_DEFAULT);
    g_assert_cmpint(group, >=, 0);
    g_autofree char *pool = read_attr_string(group, "pool");
    LmnShape xs, rs;
    g_autofree float *x = read_f32(group, "x", &xs);
    g_autofree float *r = read_f32(group, "r", &rs);
    g_autofree char *text = unpool_config(pool, &xs);
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = NULL;
    LmnModel *m = model_try(backend, text, &cfg, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_set_input_grad(m, TRUE, &error));
    g_assert_true(lmn_model_prepare(m, xs.dims[0], &error));
    LmnTensor *xt = NULL, *yt = NULL;
    lmn_model_set_batch(m, xs.dims[0], &xt, &yt);
    write_checked(xt, x, &xs, "x");
    lmn_model_forward(m, TRUE, 0, 1);
    compare_tensor(lmn_model_get_output(m), group, "y", case_name);
    g_autoptr(LmnTensor) rt = tensor_make(&lmn_model_get_output(m)->shape, 1, NULL);
    g_autoptr(LmnTensor) rv = lmn_tensor_new_view(rt, 0, &rs);
    write_checked(rv, r, &rs, "r");
    g_assert_true(lmn_model_backward_from(m, rv, 0, 1, &error));
    g_assert_no_error(error);
    compare_tensor(lmn_model_get_input_grad(m), group, "dx", case_name);
    lmn_model_free(m);
    lmn_config_free(cfg);
    H5Gclose(group);
    H5Fclose(file);
}

static void assert_model_error(const char *text, const char *const *needles)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = NULL;
    LmnModel *m = model_try(backend, text, &cfg, &error);
    g_clear_pointer(&cfg, lmn_config_free);
    g_assert_null(m);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH);
    g_test_message("%s", error->message);
    for (guint i = 0; needles[i] != NULL; i++) {
        if (strstr(error->message, needles[i]) == NULL)
            g_error("'%s' not in: %s", needles[i], error->message);
    }
}

#define UNPOOL_TAIL                                                                                \
    "[optimizer]\ntype = sgd\n[train]\nbackend = cpu\n[data]\ntrain = unused.h5:/train\n"

static void test_unpool_errors(void)
{
    assert_model_error(
        "[model]\ninput = 1, 4, 4\n[layer pool]\ntype = maxpool2d\n"
        "kernel_size = 2\n[layer up]\ntype = max_unpool2d\nindices = poool\n" UNPOOL_TAIL,
        NEEDLES("'up'", "max_unpool2d", "poool", "names no layer"));
    assert_model_error(
        "[model]\ninput = 1, 4, 4\n[layer pool]\ntype = avgpool2d\n"
        "kernel_size = 2\n[layer up]\ntype = max_unpool2d\nindices = pool\n" UNPOOL_TAIL,
        NEEDLES("'up'", "indices = pool", "not a maxpool2d"));
    /* A layer further down is not built yet: it cannot be the one undone. */
    assert_model_error(
        "[model]\ninput = 1, 4, 4\n[layer up]\ntype = max_unpool2d\n"
        "indices = pool\n[layer pool]\ntype = maxpool2d\nkernel_size = 2\n" UNPOOL_TAIL,
        NEEDLES("'up'", "names no layer above"));
    assert_model_error(
        "[model]\ninput = 1, 4, 4\n[layer pool]\ntype = maxpool2d\n"
        "kernel_size = 2\n[layer c]\ntype = conv2d\nout_channels = 3\n"
        "kernel_size = 1\n[layer up]\ntype = max_unpool2d\nindices = pool\n" UNPOOL_TAIL,
        NEEDLES("'up'", "outputs [1, 2, 2]", "[3, 2, 2]"));
    /* A standalone layer has no model to find the pooling in. */
    assert_build_error("max_unpool2d", "indices=pool", image(1, 2, 2), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_GRAPH, NEEDLES("max_unpool2d", "names no layer"));
}

/* ---- build errors ---- */

static void test_conv_transpose_errors(void)
{
    const char *t = "conv_transpose2d";
    assert_build_error(t, "out_channels=4;kernel_size=3;stride=2;output_padding=2", image(2, 4, 4),
                       LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                       NEEDLES(t, "output_padding 2", "stride (2)", "dilation (1)"));
    assert_build_error(t, "out_channels=4;kernel_size=3;output_padding=0, 1", image(2, 4, 4),
                       LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                       NEEDLES("output_padding 1 (width)"));
    assert_build_error(t, "out_channels=4;kernel_size=3;groups=2", image(3, 4, 4), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_GRAPH,
                       NEEDLES(t, "input's channel count = 3", "groups = 2"));
    assert_build_error(t, "out_channels=5;kernel_size=3;groups=2", image(4, 4, 4), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_GRAPH, NEEDLES("out_channels = 5", "groups = 2"));
    assert_build_error(t, "out_channels=4;kernel_size=1;padding=1", image(2, 2, 2),
                       LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH, NEEDLES("2x2", "no valid"));
    assert_build_error(t, "out_channels=4;kernel_size=3", f32_info(1, (gint64[]){30}),
                       LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                       NEEDLES("[30]", "[channels, height, width]"));
    assert_build_error(t, "out_channels=4;kernel_size=3, 3, 3", image(1, 6, 6), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_INVALID, NEEDLES("kernel_size", "3 values"));
    /* A stride of 2^31 - 1 on a large image overflows no count: it is reported as too large. */
    assert_build_error(t, "out_channels=4;kernel_size=3;stride=2147483647",
                       image(1, 1 << 20, 1 << 20), LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                       NEEDLES(t, "its output"));
}

static void test_pad_crop_errors(void)
{
    assert_build_error("pad", "padding=1, 2", image(1, 4, 4), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_INVALID, NEEDLES("pad", "padding", "2 values"));
    assert_build_error("pad", "padding=1.5", image(1, 4, 4), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_INVALID, NEEDLES("padding", "1.5", "not an integer"));
    assert_build_error("pad", "padding=0, 0, 4, 0;mode=reflect", image(1, 4, 6), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_GRAPH, NEEDLES("mode = reflect", "4x6", "replicate"));
    assert_build_error("pad", "padding=1", f32_info(2, (gint64[]){4, 4}), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_GRAPH, NEEDLES("pad", "[4, 4]"));
    assert_build_error("crop", "cropping=1, 2, 0, 0", image(1, 4, 3), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_GRAPH, NEEDLES("crop", "cropping = 1, 2, 0, 0", "4x3"));
    assert_build_error("crop", "cropping=1, 1, 1", image(1, 4, 3), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_INVALID, NEEDLES("cropping", "3 values"));
    assert_build_error("slice", "axis=3", image(1, 4, 3), LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                       NEEDLES("slice", "axis = 3", "[1, 4, 3]", "-3 to 2"));
    assert_build_error("slice", "axis=1;start=3;end=2", image(1, 4, 3), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_GRAPH, NEEDLES("slice", "start = 3", "end = 2", "size 4"));
    assert_build_error("slice", "axis=-1;start=5", image(1, 4, 3), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_GRAPH, NEEDLES("start = 5", "select nothing"));
    /* The schema names the key of an unknown mode. */
    g_autoptr(GError) error = NULL;
    const char *keys[] = {"padding", "mode", NULL};
    const char *values[] = {"1", "circular", NULL};
    LmnParams *p = params_from("pad", keys, values, &error);
    g_assert_null(p);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
    g_assert_nonnull(strstr(error->message, "mode"));
}

static void test_upsample_errors(void)
{
    const char *t = "upsample";
    assert_build_error(t, "", image(1, 4, 4), LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                       NEEDLES(t, "exactly one of scale_factor and size"));
    assert_build_error(t, "scale_factor=2;size=8", image(1, 4, 4), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_INVALID, NEEDLES("exactly one of scale_factor and size"));
    assert_build_error(t, "scale_factor=2, 2, 2", image(1, 4, 4), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_INVALID, NEEDLES("scale_factor", "height, width"));
    assert_build_error(t, "size=4.5", image(1, 4, 4), LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                       NEEDLES("size", "whole numbers"));
    assert_build_error(t, "scale_factor=0.1", image(1, 4, 4), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_INVALID, NEEDLES("scale_factor", "no pixel"));
    assert_build_error(t, "scale_factor=2;align_corners=true", image(1, 4, 4), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_INVALID, NEEDLES("align_corners", "bilinear"));
    assert_build_error(t, "scale_factor=2", f32_info(2, (gint64[]){4, 4}), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_GRAPH, NEEDLES(t, "[4, 4]", "[channels, height, width]"));
    assert_build_error(t, "scale_factor=1000000", image(64, 1 << 16, 1 << 16), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_INVALID, NEEDLES("scale_factor", "2^31 - 1"));
    assert_build_error(t, "size=2147483647", image(64, 2, 2), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_GRAPH, NEEDLES(t, "its output"));
    g_autoptr(GError) error = NULL;
    const char *keys[] = {"scale_factor", "mode", NULL};
    const char *values[] = {"2", "bicubic", NULL};
    LmnParams *p = params_from(t, keys, values, &error);
    g_assert_null(p);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
    g_assert_nonnull(strstr(error->message, "mode"));
}

static void test_other_errors(void)
{
    assert_build_error("dense", "units=3", f32_info(0, NULL), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_GRAPH, NEEDLES("dense", "scalar", "[..., features]"));
    assert_build_error("dropout2d", "p=0.2", f32_info(1, (gint64[]){7}), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_GRAPH, NEEDLES("dropout2d", "[7]", "[channels, ...]"));
    assert_build_error("local_response_norm", "size=3", f32_info(1, (gint64[]){7}),
                       LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                       NEEDLES("local_response_norm", "[7]", "[channels, ...]"));
    assert_build_error("prelu", "num_parameters=4", image(3, 4, 5), LMN_CONFIG_ERROR,
                       LMN_CONFIG_ERROR_GRAPH,
                       NEEDLES("prelu", "num_parameters = 4", "[3, 4, 5]", "channel count"));
    assert_build_error("gaussian_noise", "std=0.1",
                       (LmnTensorInfo){.shape = {.ndim = 1, .dims = {3}}, .dtype = LMN_DTYPE_I32},
                       LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH, NEEDLES("gaussian_noise", "i32"));
    g_autoptr(GError) error = NULL;
    const char *keys[] = {"std", NULL};
    const char *values[] = {"-1", NULL};
    LmnParams *p = params_from("gaussian_noise", keys, values, &error);
    g_assert_null(p);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
    g_assert_nonnull(strstr(error->message, "std"));
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

    g_test_add_func("/layers/spatial/gradcheck/conv-transpose2d", test_gradcheck_conv_transpose);
    g_test_add_func("/layers/spatial/gradcheck/pad-crop", test_gradcheck_pad_crop);
    g_test_add_func("/layers/spatial/gradcheck/upsample", test_gradcheck_upsample);
    g_test_add_func("/layers/spatial/gradcheck/dense-noise", test_gradcheck_dense_rank);
    for (guint i = 0; i < G_N_ELEMENTS(pytorch_cases); i++) {
        g_autofree char *path = g_strdup_printf("/layers/spatial/pytorch/%s", pytorch_cases[i]);
        g_test_add_data_func(path, pytorch_cases[i], test_pytorch_case);
    }
    g_test_add_func("/layers/spatial/init/conv-transpose2d", test_conv_transpose_init);
    g_test_add_func("/layers/spatial/gaussian-noise/statistics", test_noise_statistics);
    g_test_add_func("/layers/spatial/dropout2d/channels", test_dropout2d_channels);
    g_test_add_func("/layers/spatial/errors/conv-transpose2d", test_conv_transpose_errors);
    g_test_add_func("/layers/spatial/errors/pad-crop", test_pad_crop_errors);
    g_test_add_func("/layers/spatial/errors/upsample", test_upsample_errors);
    g_test_add_func("/layers/spatial/errors/max-unpool2d", test_unpool_errors);
    g_test_add_data_func("/layers/spatial/pytorch/unpool_basic", "unpool_basic", test_unpool_case);
    g_test_add_data_func("/layers/spatial/pytorch/unpool_padded", "unpool_padded",
                         test_unpool_case);
    g_test_add_func("/layers/spatial/errors/other", test_other_errors);

    int rc = g_test_run();
    lmn_backend_unref(backend);
    lmn_registry_free(registry);
    return rc;
}
