/* Layer tests: finite-difference gradient checks of every built-in layer on the CPU backend, proof
 * that the checker catches wrong gradients, lmn_layer_new / lmn_layer_init_params errors, and
 * PyTorch's default initialisation of dense.
 */
#include <math.h>
#include <string.h>

#include <lamina/lamina.h>

/*
 * Tolerance on the worst relative error of a correct layer.  Forward passes run in float32 (unit
 * roundoff u = 6e-8) on values of magnitude <= 1 with a step of 1e-2, so a central difference
 * carries rounding noise of about u |L| / h (1e-5 for a loss near 2) and truncation error
 * h^2 f'''(x) / 6 (2e-5 for tanh-like curvature).  The checker measures against a floor of 1e-3
 * of the tensor's largest derivative and 100 times that noise, and re-measures disagreeing
 * elements with a wider step and by Richardson extrapolation; over 200 seeds of every layer here
 * the worst relative error seen was 5e-3 (softmax with label smoothing, batch 1), typically
 * 1e-5 to 2e-3.  A wrong gradient of any real kind (a factor, a transpose, a missing term,
 * accumulation) shows 0.1 or more, as the broken-layer tests below demonstrate.
 */
#define GRAD_TOLERANCE 1e-2

static LmnRegistry *registry;

/* params.h declares no autoptr cleanup for LmnParams; a scoped one for this file. */
static void params_cleanup(LmnParams **p)
{
    g_clear_pointer(p, lmn_params_unref);
}
#define scoped_params __attribute__((cleanup(params_cleanup))) LmnParams *
static LmnBackend *backend;

static LmnTensorInfo info(LmnDType dtype, guint ndim, const gint64 *dims)
{
    LmnTensorInfo t = {.dtype = dtype};
    t.shape.ndim = ndim;
    for (guint d = 0; d < ndim; d++) {
        t.shape.dims[d] = dims[d];
    }
    return t;
}

static LmnTensorInfo f32_1d(gint64 n)
{
    return info(LMN_DTYPE_F32, 1, (gint64[]){n});
}

/* Validated hyperparameters of layer @type from NULL-terminated key, value pairs. */
G_GNUC_NULL_TERMINATED
static LmnParams *layer_params(const char *type, ...)
{
    g_autoptr(GError) error = NULL;
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_LAYER, type, &error);
    g_assert_no_error(error);
    g_autoptr(GPtrArray) keys = g_ptr_array_new();
    g_autoptr(GPtrArray) values = g_ptr_array_new();
    va_list ap;
    va_start(ap, type);
    const char *k;
    while ((k = va_arg(ap, const char *)) != NULL) {
        g_ptr_array_add(keys, (gpointer) k);
        g_ptr_array_add(values, va_arg(ap, char *));
    }
    va_end(ap);
    g_ptr_array_add(keys, NULL);
    g_ptr_array_add(values, NULL);
    LmnParams *p =
        lmn_registry_validate_params(f, (const char *const *) keys->pdata,
                                     (const char *const *) values->pdata, "test [layer]", &error);
    g_assert_no_error(error);
    g_assert_nonnull(p);
    return p;
}

/* Runs a gradient check and returns its results; the table goes to the test log. */
static GPtrArray *check(const char *type, LmnParams *params, guint n_inputs,
                        const LmnTensorInfo *inputs, gint64 batch, guint64 seed)
{
    LmnGradcheckOptions o;
    lmn_gradcheck_options_init(&o);
    o.batch = batch;
    o.seed = seed;
    g_autoptr(GError) error = NULL;
    GPtrArray *r =
        lmn_gradcheck_layer(registry, backend, type, params, n_inputs, inputs, &o, &error);
    g_assert_no_error(error);
    g_assert_nonnull(r);
    g_autofree char *table = lmn_gradcheck_format(r);
    g_test_message("%s, batch %" G_GINT64_FORMAT ":\n%s", type, batch, table);
    return r;
}

static const LmnGradcheckResult *result_named(GPtrArray *r, const char *name)
{
    for (guint i = 0; i < r->len; i++) {
        const LmnGradcheckResult *x = g_ptr_array_index(r, i);
        if (strcmp(x->name, name) == 0) {
            return x;
        }
    }
    g_assert_not_reached();
    return NULL;
}

static void assert_passes(GPtrArray *r, guint expected_tensors)
{
    g_assert_cmpuint(r->len, ==, expected_tensors);
    for (guint i = 0; i < r->len; i++) {
        const LmnGradcheckResult *x = g_ptr_array_index(r, i);
        g_assert_cmpint(x->n_checked, >, 0);
        /* A gradient that is identically zero would pass trivially; every checked one is not. */
        g_assert_cmpfloat(x->scale, >, 1e-6);
        g_assert_cmpfloat(x->max_rel_error, <, GRAD_TOLERANCE);
    }
}

/* ---- gradient checks of the built-in layers ---- */

static void test_gradcheck_dense(void)
{
    const struct {
        gint64 in, units, batch;
    } cases[] = {{1, 1, 1}, {5, 3, 1}, {7, 4, 3}, {16, 10, 8}, {3, 33, 2}};
    for (guint c = 0; c < G_N_ELEMENTS(cases); c++) {
        for (int bias = 0; bias <= 1; bias++) {
            g_autofree char *units = g_strdup_printf("%" G_GINT64_FORMAT, cases[c].units);
            scoped_params p =
                layer_params("dense", "units", units, "bias", bias ? "true" : "false", NULL);
            LmnTensorInfo in = f32_1d(cases[c].in);
            g_autoptr(GPtrArray) r = check("dense", p, 1, &in, cases[c].batch, 10 + c);
            assert_passes(r, bias ? 3 : 2);
            g_assert_cmpint(result_named(r, "weight")->n_checked, ==, cases[c].in * cases[c].units);
            g_assert_cmpint(result_named(r, "input 0")->n_checked, ==,
                            cases[c].in * cases[c].batch);
        }
    }
}

static void test_gradcheck_flatten(void)
{
    LmnTensorInfo shapes[] = {
        info(LMN_DTYPE_F32, 3, (gint64[]){2, 3, 4}),
        info(LMN_DTYPE_F32, 1, (gint64[]){5}),
        info(LMN_DTYPE_F32, 4, (gint64[]){1, 2, 1, 3}),
    };
    for (guint s = 0; s < G_N_ELEMENTS(shapes); s++) {
        g_autoptr(GPtrArray) r = check("flatten", NULL, 1, &shapes[s], 1 + s, 20 + s);
        assert_passes(r, 1);
    }
}

static void test_gradcheck_activations(void)
{
    const char *types[] = {"relu", "sigmoid", "tanh", "leaky_relu", "elu", "softplus", "gelu"};
    LmnTensorInfo shapes[] = {
        info(LMN_DTYPE_F32, 1, (gint64[]){7}),
        info(LMN_DTYPE_F32, 3, (gint64[]){2, 3, 2}),
    };
    for (guint t = 0; t < G_N_ELEMENTS(types); t++) {
        for (guint s = 0; s < G_N_ELEMENTS(shapes); s++) {
            g_autoptr(GPtrArray) r = check(types[t], NULL, 1, &shapes[s], 2 + s, 30 + t);
            assert_passes(r, 1);
        }
    }
    /* Non-default parameters take effect in both directions. */
    scoped_params lp = layer_params("leaky_relu", "negative_slope", "0.3", NULL);
    g_autoptr(GPtrArray) r = check("leaky_relu", lp, 1, &shapes[0], 4, 41);
    assert_passes(r, 1);
    scoped_params ep = layer_params("elu", "alpha", "0.5", NULL);
    g_autoptr(GPtrArray) r2 = check("elu", ep, 1, &shapes[1], 3, 42);
    assert_passes(r2, 1);
}

static void test_gradcheck_softmax_cross_entropy(void)
{
    const struct {
        gint64 classes, batch;
        const char *smoothing;
    } cases[] = {{2, 1, "0"}, {3, 4, "0"}, {10, 5, "0"}, {3, 4, "0.1"}, {10, 7, "0.25"}};
    for (guint c = 0; c < G_N_ELEMENTS(cases); c++) {
        scoped_params p =
            layer_params("softmax_cross_entropy", "label_smoothing", cases[c].smoothing, NULL);
        LmnTensorInfo in[2] = {f32_1d(cases[c].classes), info(LMN_DTYPE_I32, 0, NULL)};
        g_autoptr(GPtrArray) r = check("softmax_cross_entropy", p, 2, in, cases[c].batch, 50 + c);
        /* Only the logits are differentiable; the i32 labels are not checked. */
        assert_passes(r, 1);
        g_assert_cmpstr(result_named(r, "input 0")->name, ==, "input 0");
    }
}

static void test_gradcheck_mse(void)
{
    LmnTensorInfo shapes[] = {
        info(LMN_DTYPE_F32, 1, (gint64[]){4}),
        info(LMN_DTYPE_F32, 2, (gint64[]){2, 3}),
        info(LMN_DTYPE_F32, 0, NULL),
    };
    for (guint s = 0; s < G_N_ELEMENTS(shapes); s++) {
        LmnTensorInfo in[2] = {shapes[s], shapes[s]};
        g_autoptr(GPtrArray) r = check("mse", NULL, 2, in, 3 - s, 60 + s);
        /* Both prediction and (f32) target gradients. */
        assert_passes(r, 2);
    }
}

/* ---- the checker can fail ---- */

static void load_broken_layers(void)
{
    static gboolean loaded;
    if (loaded) {
        return;
    }
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_registry_load_file(registry, LMN_TEST_BROKEN_LAYERS, &error));
    g_assert_no_error(error);
    loaded = TRUE;
}

static void test_catches_broken_input_grad(void)
{
    load_broken_layers();
    LmnTensorInfo in = f32_1d(6);
    g_autoptr(GPtrArray) r = check("test_broken_input", NULL, 1, &in, 3, 70);
    g_assert_cmpuint(r->len, ==, 1);
    /* dx = 3 dy against the true 2 dy: relative error |3 - 2| / 3. */
    g_assert_cmpfloat_with_epsilon(result_named(r, "input 0")->max_rel_error, 1.0 / 3.0, 1e-3);
    g_assert_cmpfloat(lmn_gradcheck_max_rel_error(r), >, 10 * GRAD_TOLERANCE);
}

static void test_catches_broken_param_grad(void)
{
    load_broken_layers();
    LmnTensorInfo in = f32_1d(5);
    g_autoptr(GPtrArray) r = check("test_broken_param", NULL, 1, &in, 4, 71);
    g_assert_cmpuint(r->len, ==, 2);
    /* The error is reported where it is: the input gradient is right, the bias's doubled. */
    g_assert_cmpfloat(result_named(r, "input 0")->max_rel_error, <, GRAD_TOLERANCE);
    g_assert_cmpfloat_with_epsilon(result_named(r, "bias")->max_rel_error, 0.5, 1e-3);
}

static void test_catches_accumulating_grad(void)
{
    load_broken_layers();
    LmnTensorInfo in = f32_1d(5);
    g_autoptr(GPtrArray) r = check("test_accumulating", NULL, 1, &in, 2, 72);
    /* db = sentinel + sum(dy): far from sum(dy). */
    g_assert_cmpfloat(result_named(r, "bias")->max_rel_error, >, 0.9);
}

/* ---- lmn_layer_new errors ---- */

static void test_new_wrong_input_count(void)
{
    scoped_params p = layer_params("dense", "units", "3", NULL);
    LmnTensorInfo in[2] = {f32_1d(4), f32_1d(4)};
    g_autoptr(GError) error = NULL;
    LmnLayer *l = lmn_layer_new(registry, "dense", "fc7", 0, p, backend, 2, in, &error);
    g_assert_null(l);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH);
    g_assert_nonnull(strstr(error->message, "fc7"));
    g_assert_nonnull(strstr(error->message, "exactly 1 input"));
    g_clear_error(&error);

    /* A loss without its target. */
    l = lmn_layer_new(registry, "softmax_cross_entropy", "loss", 0, NULL, backend, 1, in, &error);
    g_assert_null(l);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH);
    g_assert_nonnull(strstr(error->message, "'loss'"));
    g_assert_nonnull(strstr(error->message, "target"));
}

/* dense maps the last axis of an input of any rank, as nn.Linear; a scalar has no axis to map. */
static void test_new_dense_last_axis(void)
{
    scoped_params p = layer_params("dense", "units", "3", NULL);
    LmnTensorInfo in = info(LMN_DTYPE_F32, 3, (gint64[]){1, 28, 28});
    g_autoptr(GError) error = NULL;
    LmnLayer *l = lmn_layer_new(registry, "dense", "fc1", 0, p, backend, 1, &in, &error);
    g_assert_no_error(error);
    const LmnShape *out = &lmn_layer_get_output_info(l)->shape;
    g_assert_cmpuint(out->ndim, ==, 3);
    g_assert_cmpint(out->dims[0], ==, 1);
    g_assert_cmpint(out->dims[1], ==, 28);
    g_assert_cmpint(out->dims[2], ==, 3);
    LmnShape w = lmn_shape_make(2, (gint64) 3, (gint64) 28);
    g_assert_true(lmn_shape_equal(&lmn_layer_get_param(l, 0)->shape, &w));
    lmn_layer_free(l);
    LmnTensorInfo scalar = info(LMN_DTYPE_F32, 0, NULL);
    l = lmn_layer_new(registry, "dense", "fc1", 0, p, backend, 1, &scalar, &error);
    g_assert_null(l);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH);
    g_assert_nonnull(strstr(error->message, "fc1"));
    g_assert_nonnull(strstr(error->message, "scalar"));
}

static void test_new_loss_target_checked(void)
{
    g_autoptr(GError) error = NULL;
    /* A float target for a classification loss. */
    LmnTensorInfo xent[2] = {f32_1d(10), info(LMN_DTYPE_F32, 0, NULL)};
    LmnLayer *l =
        lmn_layer_new(registry, "softmax_cross_entropy", "ce", 0, NULL, backend, 2, xent, &error);
    g_assert_null(l);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH);
    g_assert_nonnull(strstr(error->message, "'ce'"));
    g_clear_error(&error);

    /* Prediction and target of different shapes. */
    LmnTensorInfo mse[2] = {f32_1d(3), f32_1d(4)};
    l = lmn_layer_new(registry, "mse", "reg", 0, NULL, backend, 2, mse, &error);
    g_assert_null(l);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH);
    g_assert_nonnull(strstr(error->message, "'reg'"));
    g_assert_nonnull(strstr(error->message, "[3]"));
    g_assert_nonnull(strstr(error->message, "[4]"));
}

static void test_new_unknown_type(void)
{
    g_autoptr(GError) error = NULL;
    LmnTensorInfo in = f32_1d(3);
    LmnLayer *l = lmn_layer_new(registry, "densee", "fc1", 0, NULL, backend, 1, &in, &error);
    g_assert_null(l);
    g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(error->message, "fc1"));
}

static void test_new_describes_layer(void)
{
    scoped_params p = layer_params("dense", "units", "6", NULL);
    LmnTensorInfo in = f32_1d(4);
    g_autoptr(GError) error = NULL;
    LmnLayer *l = lmn_layer_new(registry, "dense", "fc1", 3, p, backend, 1, &in, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(lmn_layer_get_name(l), ==, "fc1");
    g_assert_cmpstr(lmn_layer_get_type_name(l), ==, "dense");
    g_assert_cmpuint(lmn_layer_get_index(l), ==, 3);
    g_assert_false(lmn_layer_is_loss(l));
    g_assert_cmpuint(lmn_layer_get_n_params(l), ==, 2);
    g_assert_cmpstr(lmn_layer_get_param_name(l, 0), ==, "weight");
    g_assert_cmpstr(lmn_layer_get_param_name(l, 1), ==, "bias");
    g_assert_cmpint(lmn_layer_get_param_role(l, 0), ==, LMN_PARAM_ROLE_WEIGHT);
    g_assert_cmpint(lmn_layer_get_param_role(l, 1), ==, LMN_PARAM_ROLE_BIAS);
    /* PyTorch's shapes: weight [out, in]. */
    LmnShape w = lmn_shape_make(2, (gint64) 6, (gint64) 4);
    g_assert_true(lmn_shape_equal(&lmn_layer_get_param(l, 0)->shape, &w));
    g_assert_cmpint(lmn_tensor_numel(lmn_layer_get_grad(l, 1)), ==, 6);
    const LmnTensorInfo *out = lmn_layer_get_output_info(l);
    g_assert_cmpuint(out->shape.ndim, ==, 1);
    g_assert_cmpint(out->shape.dims[0], ==, 6);
    /* Gradients start at zero. */
    float g[6];
    g_assert_true(lmn_tensor_read(lmn_layer_get_grad(l, 1), g, sizeof(g), &error));
    for (guint i = 0; i < 6; i++) {
        g_assert_cmpfloat(g[i], ==, 0.0f);
    }
    lmn_layer_free(l);

    LmnTensorInfo xent[2] = {f32_1d(10), info(LMN_DTYPE_I32, 0, NULL)};
    l = lmn_layer_new(registry, "softmax_cross_entropy", "loss", 4, NULL, backend, 2, xent, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_layer_is_loss(l));
    g_assert_cmpuint(lmn_layer_get_output_info(l)->shape.ndim, ==, 0);
    g_assert_cmpuint(lmn_layer_get_n_params(l), ==, 0);
    lmn_layer_free(l);
}

/* ---- saved tensors follow the batch size without reallocating when it shrinks ---- */

static void test_prepare_batch_reuses_storage(void)
{
    LmnTensorInfo xent[2] = {f32_1d(7), info(LMN_DTYPE_I32, 0, NULL)};
    g_autoptr(GError) error = NULL;
    LmnLayer *l =
        lmn_layer_new(registry, "softmax_cross_entropy", "loss", 0, NULL, backend, 2, xent, &error);
    g_assert_no_error(error);

    g_assert_true(lmn_layer_prepare_batch(l, 8, &error));
    LmnTensor *full = lmn_layer_get_saved(l, 0);
    g_assert_cmpint(full->shape.dims[0], ==, 8);
    g_assert_cmpint(full->shape.dims[1], ==, 7);
    gpointer buffer = full->buffer;

    /* The last, partial batch: a view of the same memory. */
    g_assert_true(lmn_layer_prepare_batch(l, 5, &error));
    LmnTensor *part = lmn_layer_get_saved(l, 0);
    g_assert_cmpint(part->shape.dims[0], ==, 5);
    g_assert_cmpint(lmn_tensor_numel(part), ==, 35);
    g_assert_true(part->buffer == buffer);

    /* Back to the full batch: still the same memory. */
    g_assert_true(lmn_layer_prepare_batch(l, 8, &error));
    g_assert_true(lmn_layer_get_saved(l, 0)->buffer == buffer);
    g_assert_cmpint(lmn_layer_get_saved(l, 0)->shape.dims[0], ==, 8);

    /* Growing needs a larger allocation. */
    g_assert_true(lmn_layer_prepare_batch(l, 9, &error));
    g_assert_cmpint(lmn_layer_get_saved(l, 0)->shape.dims[0], ==, 9);
    g_assert_cmpint(lmn_tensor_numel(lmn_layer_get_saved(l, 0)), ==, 63);
    lmn_layer_free(l);
}

/* ---- initialisation ---- */

static LmnLayer *new_dense(gint64 in, gint64 units)
{
    g_autofree char *u = g_strdup_printf("%" G_GINT64_FORMAT, units);
    scoped_params p = layer_params("dense", "units", u, NULL);
    LmnTensorInfo i = f32_1d(in);
    g_autoptr(GError) error = NULL;
    LmnLayer *l = lmn_layer_new(registry, "dense", "fc1", 0, p, backend, 1, &i, &error);
    g_assert_no_error(error);
    return l;
}

static float *read_param(LmnLayer *l, guint index)
{
    LmnTensor *t = lmn_layer_get_param(l, index);
    float *v = g_new(float, lmn_tensor_numel(t));
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_tensor_read(t, v, lmn_tensor_nbytes(t), &error));
    return v;
}

static void test_init_unknown_param_key(void)
{
    LmnLayer *l = new_dense(4, 3);
    const char *keys[] = {"kernel_init", NULL};
    const char *values[] = {"he_uniform", NULL};
    g_autoptr(GError) error = NULL;
    g_assert_false(
        lmn_layer_init_params(l, registry, 1, 0, keys, values, "model.ini [layer fc1]", &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY);
    g_assert_nonnull(strstr(error->message, "model.ini [layer fc1]"));
    g_assert_nonnull(strstr(error->message, "kernel_init"));
    g_assert_nonnull(strstr(error->message, "weight, bias"));
    g_clear_error(&error);

    /* A sub-key of a parameter the layer lacks is just as wrong. */
    const char *keys2[] = {"gamma_init.gain", NULL};
    const char *values2[] = {"2", NULL};
    g_assert_false(
        lmn_layer_init_params(l, registry, 1, 0, keys2, values2, "model.ini [layer fc1]", &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY);
    g_assert_nonnull(strstr(error->message, "gamma_init.gain"));
    lmn_layer_free(l);
}

static void test_init_unknown_initializer(void)
{
    LmnLayer *l = new_dense(4, 3);
    const char *keys[] = {"weight_init", NULL};
    const char *values[] = {"he_uniformm", NULL};
    g_autoptr(GError) error = NULL;
    g_assert_false(
        lmn_layer_init_params(l, registry, 1, 0, keys, values, "model.ini [layer fc1]", &error));
    g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(error->message, "model.ini [layer fc1]"));
    g_assert_nonnull(strstr(error->message, "weight_init"));
    g_assert_nonnull(strstr(error->message, "he_uniformm"));
    lmn_layer_free(l);
}

static void test_init_bad_initializer_key(void)
{
    LmnLayer *l = new_dense(4, 3);
    const char *keys[] = {"weight_init.no_such_key", NULL};
    const char *values[] = {"1", NULL};
    g_autoptr(GError) error = NULL;
    g_assert_false(
        lmn_layer_init_params(l, registry, 1, 0, keys, values, "model.ini [layer fc1]", &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY);
    g_assert_nonnull(strstr(error->message, "model.ini [layer fc1]"));
    g_assert_nonnull(strstr(error->message, "no_such_key"));
    lmn_layer_free(l);
}

/*
 * torch.nn.Linear draws weight and bias from U(-1/sqrt(in), 1/sqrt(in)).  Check the bound and the
 * variance bound^2 / 3: with n = 30000 weights the sample variance's standard error is
 * bound^2 * sqrt(4/45 / n) = 0.5% of the expected value, so 3% is a 5-sigma band that any other
 * common scheme (he_uniform with a = 0 has variance 2/in, six times larger) misses.
 */
static void test_init_dense_default_matches_pytorch(void)
{
    const gint64 in = 100, units = 300;
    LmnLayer *l = new_dense(in, units);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_layer_init_params(l, registry, 42, 0, NULL, NULL, "test", &error));
    g_assert_no_error(error);
    double bound = 1.0 / sqrt((double) in);

    g_autofree float *w = read_param(l, 0);
    gint64 n = in * units;
    double sum = 0.0, sum2 = 0.0;
    for (gint64 i = 0; i < n; i++) {
        g_assert_cmpfloat(fabs(w[i]), <=, bound * (1 + 1e-6));
        sum += w[i];
        sum2 += (double) w[i] * w[i];
    }
    double mean = sum / n;
    double var = sum2 / n - mean * mean;
    double expected = bound * bound / 3.0;
    g_assert_cmpfloat(fabs(mean), <, 5 * sqrt(expected / n));
    g_assert_cmpfloat(fabs(var - expected) / expected, <, 0.03);

    g_autofree float *b = read_param(l, 1);
    double bmax = 0.0;
    for (gint64 i = 0; i < units; i++) {
        g_assert_cmpfloat(fabs(b[i]), <=, bound * (1 + 1e-6));
        bmax = MAX(bmax, fabs(b[i]));
    }
    /* The bias spans its range too (300 draws: the largest |b| is near the bound). */
    g_assert_cmpfloat(bmax, >, 0.9 * bound);
    lmn_layer_free(l);
}

/*
 * Parameter i is drawn from stream LMN_STREAM_INIT + (first_param_index + i): the same model
 * initialises identically whether its parameters live standalone or as views of one flat tensor,
 * and a parameter's values depend on its index, not on what precedes it.
 */
static void test_init_bound_views_and_streams(void)
{
    const gint64 in = 4, units = 3, nw = in * units, total = nw + units;
    g_autoptr(GError) error = NULL;

    LmnLayer *standalone = new_dense(in, units);
    g_assert_true(lmn_layer_init_params(standalone, registry, 7, 2, NULL, NULL, "test", &error));
    g_autofree float *w = read_param(standalone, 0);
    g_autofree float *b = read_param(standalone, 1);

    LmnLayer *bound_layer = new_dense(in, units);
    LmnShape flat_shape = lmn_shape_make(1, total);
    g_autoptr(LmnTensor) flat = lmn_tensor_new(backend, LMN_DTYPE_F32, &flat_shape, &error);
    g_autoptr(LmnTensor) flat_grad = lmn_tensor_new(backend, LMN_DTYPE_F32, &flat_shape, &error);
    g_assert_no_error(error);
    lmn_op_fill(flat, -5.0f);
    LmnShape ws = lmn_shape_make(2, units, in), bs = lmn_shape_make(1, units);
    g_autoptr(LmnTensor) wv = lmn_tensor_new_view(flat, 0, &ws);
    g_autoptr(LmnTensor) wg = lmn_tensor_new_view(flat_grad, 0, &ws);
    g_autoptr(LmnTensor) bv = lmn_tensor_new_view(flat, nw, &bs);
    g_autoptr(LmnTensor) bg = lmn_tensor_new_view(flat_grad, nw, &bs);
    lmn_layer_bind_param(bound_layer, 0, wv, wg);
    lmn_layer_bind_param(bound_layer, 1, bv, bg);
    g_assert_true(lmn_layer_get_param(bound_layer, 0) == wv);
    g_assert_true(lmn_layer_get_grad(bound_layer, 1) == bg);
    g_assert_true(lmn_layer_init_params(bound_layer, registry, 7, 2, NULL, NULL, "test", &error));

    float all[15];
    g_assert_true(lmn_tensor_read(flat, all, sizeof(all), &error));
    for (gint64 i = 0; i < nw; i++) {
        g_assert_cmpfloat(all[i], ==, w[i]);
    }
    for (gint64 i = 0; i < units; i++) {
        g_assert_cmpfloat(all[nw + i], ==, b[i]);
    }

    /* Another first_param_index: other streams, other values. */
    g_assert_true(lmn_layer_init_params(bound_layer, registry, 7, 3, NULL, NULL, "test", &error));
    g_autofree float *w3 = read_param(bound_layer, 0);
    g_assert_true(memcmp(w3, w, sizeof(float) * nw) != 0);
    lmn_layer_free(bound_layer);
    lmn_layer_free(standalone);
}

/* An initializer the config names, with its own key, replaces the default. */
static void test_init_config_choice(void)
{
    LmnLayer *l = new_dense(4, 3);
    const char *keys[] = {"bias_init", "bias_init.value", NULL};
    const char *values[] = {"constant", "0.25", NULL};
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_layer_init_params(l, registry, 3, 0, keys, values, "test", &error));
    g_assert_no_error(error);
    g_autofree float *b = read_param(l, 1);
    for (guint i = 0; i < 3; i++) {
        g_assert_cmpfloat(b[i], ==, 0.25f);
    }
    lmn_layer_free(l);
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

    g_test_add_func("/layers/gradcheck/dense", test_gradcheck_dense);
    g_test_add_func("/layers/gradcheck/flatten", test_gradcheck_flatten);
    g_test_add_func("/layers/gradcheck/activations", test_gradcheck_activations);
    g_test_add_func("/layers/gradcheck/softmax-cross-entropy",
                    test_gradcheck_softmax_cross_entropy);
    g_test_add_func("/layers/gradcheck/mse", test_gradcheck_mse);
    g_test_add_func("/layers/gradcheck/catches-broken-input-grad", test_catches_broken_input_grad);
    g_test_add_func("/layers/gradcheck/catches-broken-param-grad", test_catches_broken_param_grad);
    g_test_add_func("/layers/gradcheck/catches-accumulating-grad", test_catches_accumulating_grad);
    g_test_add_func("/layers/new/wrong-input-count", test_new_wrong_input_count);
    g_test_add_func("/layers/new/dense-last-axis", test_new_dense_last_axis);
    g_test_add_func("/layers/new/loss-target-checked", test_new_loss_target_checked);
    g_test_add_func("/layers/new/unknown-type", test_new_unknown_type);
    g_test_add_func("/layers/new/describes-layer", test_new_describes_layer);
    g_test_add_func("/layers/prepare-batch/reuses-storage", test_prepare_batch_reuses_storage);
    g_test_add_func("/layers/init/unknown-param-key", test_init_unknown_param_key);
    g_test_add_func("/layers/init/unknown-initializer", test_init_unknown_initializer);
    g_test_add_func("/layers/init/bad-initializer-key", test_init_bad_initializer_key);
    g_test_add_func("/layers/init/dense-default-matches-pytorch",
                    test_init_dense_default_matches_pytorch);
    g_test_add_func("/layers/init/bound-views-and-streams", test_init_bound_views_and_streams);
    g_test_add_func("/layers/init/config-choice", test_init_config_choice);

    int rc = g_test_run();
    lmn_backend_unref(backend);
    lmn_registry_free(registry);
    return rc;
}
