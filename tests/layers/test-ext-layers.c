/* Tests of the layers built on the ABI 1.3 ops (layer_norm, group_norm, instance_norm, multiply,
 * subtract, scale, mean, sum, silu, mish, hardtanh, log_softmax): forward and backward values
 * against PyTorch (tests/fixtures/layers-ext.h5, recorded by scripts/make-ext-layer-fixtures.py),
 * finite-difference gradient checks of every input and parameter for each fixture case, and the
 * errors for configurations and inputs a layer cannot take.
 */
#include <hdf5.h>
#include <math.h>
#include <string.h>

#include <lamina/lamina.h>

/* See tests/layers/test-gradcheck.c: a correct layer stays far below, a wrong one far above. */
#define GRAD_TOLERANCE 1e-2

static LmnRegistry *registry;
static LmnBackend *backend;
static hid_t fixture;

static void params_cleanup(LmnParams **p)
{
    g_clear_pointer(p, lmn_params_unref);
}
#define scoped_params __attribute__((cleanup(params_cleanup))) LmnParams *

/* Validated hyperparameters from "key=value;key=value"; NULL with @error when refused. */
static LmnParams *parse_params(const char *type, const char *text, GError **error)
{
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_LAYER, type, error);
    if (f == NULL)
        return NULL;
    g_auto(GStrv) items = g_strsplit(text, ";", -1);
    g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) values = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; items[i] != NULL; i++) {
        const char *eq = strchr(items[i], '=');
        if (eq == NULL)
            continue;
        g_ptr_array_add(keys, g_strndup(items[i], (gsize) (eq - items[i])));
        g_ptr_array_add(values, g_strdup(eq + 1));
    }
    g_ptr_array_add(keys, NULL);
    g_ptr_array_add(values, NULL);
    return lmn_registry_validate_params(f, (const char *const *) keys->pdata,
                                        (const char *const *) values->pdata,
                                        "model.ini [layer bad_layer]", error);
}

static LmnParams *params_ok(const char *type, const char *text)
{
    g_autoptr(GError) error = NULL;
    LmnParams *p = parse_params(type, text, &error);
    g_assert_no_error(error);
    return p;
}

/* ---- fixtures ---- */

static gboolean has_dataset(hid_t g, const char *name)
{
    return H5Lexists(g, name, H5P_DEFAULT) > 0;
}

static float *read_f32(hid_t group, const char *name, LmnShape *shape)
{
    hid_t dset = H5Dopen2(group, name, H5P_DEFAULT);
    g_assert_cmpint(dset, >=, 0);
    hid_t space = H5Dget_space(dset);
    int ndim = H5Sget_simple_extent_ndims(space);
    g_assert_cmpint(ndim, <=, LMN_MAX_DIMS);
    hsize_t dims[LMN_MAX_DIMS];
    H5Sget_simple_extent_dims(space, dims, NULL);
    LmnShape s = {.ndim = (guint) ndim};
    for (int d = 0; d < ndim; d++)
        s.dims[d] = (gint64) dims[d];
    float *data = g_new(float, MAX(lmn_shape_numel(&s), 1));
    g_assert_cmpint(H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), >=, 0);
    H5Sclose(space);
    H5Dclose(dset);
    if (shape != NULL)
        *shape = s;
    return data;
}

static char *read_attr_string(hid_t group, const char *name)
{
    hid_t attr = H5Aopen(group, name, H5P_DEFAULT);
    g_assert_cmpint(attr, >=, 0);
    hid_t type = H5Aget_type(attr);
    char *out;
    if (H5Tis_variable_str(type) > 0) {
        hid_t mem = H5Tcopy(H5T_C_S1);
        H5Tset_size(mem, H5T_VARIABLE);
        H5Tset_cset(mem, H5Tget_cset(type));
        char *v = NULL;
        g_assert_cmpint(H5Aread(attr, mem, &v), >=, 0);
        out = g_strdup(v);
        H5free_memory(v);
        H5Tclose(mem);
    } else {
        gsize size = H5Tget_size(type);
        out = g_malloc0(size + 1);
        g_assert_cmpint(H5Aread(attr, type, out), >=, 0);
    }
    H5Tclose(type);
    H5Aclose(attr);
    return out;
}

static LmnTensor *new_tensor(const LmnShape *shape, const float *host)
{
    g_autoptr(GError) error = NULL;
    LmnTensor *t = lmn_tensor_new(backend, LMN_DTYPE_F32, shape, &error);
    g_assert_no_error(error);
    if (host != NULL)
        g_assert_true(lmn_tensor_write(t, host, lmn_tensor_nbytes(t), &error));
    else
        lmn_op_fill(t, NAN); /* must be overwritten */
    return t;
}

static void assert_tensor(const char *what, LmnTensor *t, const float *want, double atol,
                          double rtol)
{
    g_autoptr(GError) error = NULL;
    g_autofree float *got = g_new(float, lmn_tensor_numel(t));
    g_assert_true(lmn_tensor_read(t, got, lmn_tensor_nbytes(t), &error));
    for (gint64 i = 0; i < lmn_tensor_numel(t); i++)
        if (!(fabs((double) got[i] - want[i]) <= atol + rtol * fabs((double) want[i])))
            g_error("%s: element %" G_GINT64_FORMAT " is %.9g, PyTorch %.9g", what, i, got[i],
                    want[i]);
}

/* A fixture case: its layer's type, parameters and inputs. */
typedef struct {
    char *type, *params;
    guint n_inputs;
    LmnShape shapes[2]; /* [N, ...] */
    float *x[2];
} Case;

static void case_load(hid_t g, Case *c)
{
    c->type = read_attr_string(g, "type");
    c->params = read_attr_string(g, "params");
    c->n_inputs = has_dataset(g, "x1") ? 2 : 1;
    for (guint i = 0; i < c->n_inputs; i++) {
        g_autofree char *name = g_strdup_printf("x%u", i);
        c->x[i] = read_f32(g, name, &c->shapes[i]);
    }
}

static void case_clear(Case *c)
{
    g_free(c->type);
    g_free(c->params);
    for (guint i = 0; i < c->n_inputs; i++)
        g_free(c->x[i]);
}

static LmnTensorInfo per_sample(const LmnShape *full)
{
    LmnTensorInfo t = {.dtype = LMN_DTYPE_F32, .shape = {.ndim = full->ndim - 1}};
    for (guint d = 1; d < full->ndim; d++)
        t.shape.dims[d - 1] = full->dims[d];
    return t;
}

/* Writes the fixture's param_<name> values into the layer's parameters. */
static void load_params(hid_t g, LmnLayer *layer)
{
    for (guint p = 0; p < lmn_layer_get_n_params(layer); p++) {
        g_autofree char *name = g_strdup_printf("param_%s", lmn_layer_get_param_name(layer, p));
        g_assert_true(has_dataset(g, name));
        g_autofree float *v = read_f32(g, name, NULL);
        LmnTensor *w = lmn_layer_get_param(layer, p);
        g_assert_true(lmn_tensor_write(w, v, lmn_tensor_nbytes(w), NULL));
    }
}

static void run_case(hid_t g, const char *name, const Case *c)
{
    scoped_params params = params_ok(c->type, c->params);
    LmnTensorInfo infos[2];
    for (guint i = 0; i < c->n_inputs; i++)
        infos[i] = per_sample(&c->shapes[i]);
    g_autoptr(GError) error = NULL;
    const gint64 batch = c->shapes[0].dims[0];
    LmnLayer *layer =
        lmn_layer_new(registry, c->type, "fixture", 0, params, backend, c->n_inputs, infos, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_layer_prepare_batch(layer, batch, &error));
    load_params(g, layer);
    LmnShape ys;
    g_autofree float *y = read_f32(g, "y", &ys);
    g_autofree float *dy = read_f32(g, "dy", NULL);
    LmnTensor *inputs[2] = {NULL, NULL}, *grads[2] = {NULL, NULL};
    for (guint i = 0; i < c->n_inputs; i++) {
        inputs[i] = new_tensor(&c->shapes[i], c->x[i]);
        grads[i] = new_tensor(&c->shapes[i], NULL);
    }
    LmnTensor *out = new_tensor(&ys, NULL), *out_grad = new_tensor(&ys, dy);
    for (guint p = 0; p < lmn_layer_get_n_params(layer); p++)
        lmn_op_fill(lmn_layer_get_grad(layer, p), NAN);
    LmnLayerIO io = {.struct_size = sizeof(LmnLayerIO),
                     .n_inputs = c->n_inputs,
                     .inputs = inputs,
                     .output = out,
                     .batch = batch,
                     .training = TRUE,
                     .seed = 1};
    lmn_layer_forward(layer, &io);
    io.output_grad = out_grad;
    io.input_grads = grads;
    lmn_layer_backward(layer, &io);
    g_assert_true(lmn_backend_synchronize(backend, &error));
    g_autofree char *wy = g_strdup_printf("%s output", name);
    assert_tensor(wy, out, y, 2e-5, 2e-5);
    for (guint i = 0; i < c->n_inputs; i++) {
        g_autofree char *dn = g_strdup_printf("dx%u", i);
        g_autofree float *dx = read_f32(g, dn, NULL);
        g_autofree char *what = g_strdup_printf("%s %s", name, dn);
        assert_tensor(what, grads[i], dx, 5e-5, 5e-5);
        lmn_tensor_unref(inputs[i]);
        lmn_tensor_unref(grads[i]);
    }
    for (guint p = 0; p < lmn_layer_get_n_params(layer); p++) {
        g_autofree char *gn = g_strdup_printf("grad_%s", lmn_layer_get_param_name(layer, p));
        g_autofree float *want = read_f32(g, gn, NULL);
        g_autofree char *what = g_strdup_printf("%s %s", name, gn);
        assert_tensor(what, lmn_layer_get_grad(layer, p), want, 5e-5, 5e-5);
    }
    lmn_tensor_unref(out);
    lmn_tensor_unref(out_grad);
    lmn_layer_free(layer);
}

/* The finite-difference check of every input and parameter of the case's configuration. */
static void gradcheck_case(const char *name, const Case *c)
{
    scoped_params params = params_ok(c->type, c->params);
    LmnTensorInfo infos[2];
    for (guint i = 0; i < c->n_inputs; i++)
        infos[i] = per_sample(&c->shapes[i]);
    LmnGradcheckOptions o;
    lmn_gradcheck_options_init(&o);
    o.batch = c->shapes[0].dims[0];
    o.seed = 7;
    /* hardtanh's derivative jumps at its bounds, which a finite difference must not straddle:
     * check inside them here; the PyTorch cases cover inputs beyond. */
    if (strcmp(c->type, "hardtanh") == 0)
        o.value_scale = 0.45;
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) r =
        lmn_gradcheck_layer(registry, backend, c->type, params, c->n_inputs, infos, &o, &error);
    g_assert_no_error(error);
    g_autofree char *table = lmn_gradcheck_format(r);
    g_test_message("%s:\n%s", name, table);
    g_assert_cmpuint(r->len, >=, c->n_inputs);
    for (guint i = 0; i < r->len; i++) {
        const LmnGradcheckResult *x = g_ptr_array_index(r, i);
        g_assert_cmpint(x->n_checked, >, 0);
        g_assert_cmpfloat(x->scale, >, 1e-6);
        if (!(x->max_rel_error < GRAD_TOLERANCE))
            g_error("%s: %s has relative error %g", name, x->name, x->max_rel_error);
    }
}

static guint n_cases;

static herr_t visit_case(hid_t parent, const char *name, const H5L_info_t *info, void *data)
{
    hid_t g = H5Gopen2(parent, name, H5P_DEFAULT);
    Case c = {0};
    case_load(g, &c);
    if (GPOINTER_TO_INT(data))
        gradcheck_case(name, &c);
    else
        run_case(g, name, &c);
    case_clear(&c);
    H5Gclose(g);
    n_cases++;
    return 0;
}

static void for_each_case(gboolean gradcheck)
{
    n_cases = 0;
    hsize_t idx = 0;
    H5Literate(fixture, H5_INDEX_NAME, H5_ITER_INC, &idx, visit_case, GINT_TO_POINTER(gradcheck));
    g_assert_cmpuint(n_cases, ==, 24);
}

static void test_pytorch(void)
{
    for_each_case(FALSE);
}

static void test_gradcheck(void)
{
    for_each_case(TRUE);
}

/* ---- errors ---- */

#define SHAPE_INFO(...)                                                                            \
    ((LmnTensorInfo){                                                                              \
        .dtype = LMN_DTYPE_F32,                                                                    \
        .shape = {.ndim = G_N_ELEMENTS(((gint64[]){__VA_ARGS__})), .dims = {__VA_ARGS__}}})

static void assert_graph_error(const char *type, const char *params, guint n_inputs,
                               const LmnTensorInfo *inputs, const char *const *needles)
{
    g_autoptr(GError) error = NULL;
    scoped_params p = params_ok(type, params);
    LmnLayer *l =
        lmn_layer_new(registry, type, "bad_layer", 0, p, backend, n_inputs, inputs, &error);
    g_assert_null(l);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH);
    g_assert_nonnull(strstr(error->message, "'bad_layer'"));
    for (guint i = 0; needles[i] != NULL; i++)
        if (strstr(error->message, needles[i]) == NULL)
            g_error("message \"%s\" does not name \"%s\"", error->message, needles[i]);
}

static void test_errors(void)
{
    LmnTensorInfo x34[] = {SHAPE_INFO(3, 4)}, x6[] = {SHAPE_INFO(6, 2)};
    assert_graph_error("layer_norm", "normalized_dims=3", 1, x34,
                       (const char *[]){"layer_norm", "normalized_dims = 3", "[3, 4]", NULL});
    assert_graph_error("group_norm", "groups=4", 1, x6,
                       (const char *[]){"groups = 4", "6 channels", NULL});
    LmnTensorInfo rank[] = {SHAPE_INFO(3, 4), SHAPE_INFO(4)};
    assert_graph_error("multiply", "", 2, rank,
                       (const char *[]){"multiply", "[3, 4]", "[4]", "equal rank", NULL});
    LmnTensorInfo mism[] = {SHAPE_INFO(3, 4), SHAPE_INFO(2, 4)};
    assert_graph_error("subtract", "", 2, mism,
                       (const char *[]){"subtract", "[3, 4]", "[2, 4]", "equal or 1", NULL});
    assert_graph_error("scale", "per_channel=true;learnable=false", 1, x34,
                       (const char *[]){"per_channel", "learnable", NULL});
    assert_graph_error("mean", "axis=2", 1, x34,
                       (const char *[]){"mean", "axis = 2", "[3, 4]", "-2 to 1", NULL});
    assert_graph_error("hardtanh", "min_val=1;max_val=1", 1, x34,
                       (const char *[]){"min_val", "max_val", NULL});
    LmnTensorInfo scalar[] = {{.dtype = LMN_DTYPE_F32, .shape = {.ndim = 0}}};
    assert_graph_error("log_softmax", "", 1, scalar, (const char *[]){"log_softmax", NULL});
    LmnTensorInfo ints[] = {{.dtype = LMN_DTYPE_I32, .shape = {.ndim = 1, .dims = {4}}}};
    assert_graph_error("silu", "", 1, ints, (const char *[]){"silu", "i32", NULL});

    /* Keys are validated against each schema: a misspelt one is named with a suggestion. */
    g_autoptr(GError) error = NULL;
    g_assert_null(parse_params("layer_norm", "normalised_dims=2", &error));
    g_assert_nonnull(strstr(error->message, "normalised_dims"));
    g_assert_nonnull(strstr(error->message, "normalized_dims"));
    g_assert_nonnull(strstr(error->message, "bad_layer"));
    g_clear_error(&error);
    g_assert_null(parse_params("group_norm", "", &error)); /* groups is required */
    g_assert_nonnull(strstr(error->message, "groups"));
    g_clear_error(&error);
    g_assert_null(parse_params("instance_norm", "track_running_stats=true", &error));
    g_assert_nonnull(strstr(error->message, "track_running_stats"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_autoptr(GError) error = NULL;
    registry = lmn_registry_new();
    if (!lmn_registry_scan(registry, &error))
        g_error("scanning plugins: %s", error->message);
    backend = lmn_backend_new(registry, "cpu", NULL, NULL, &error);
    if (backend == NULL)
        g_error("opening the cpu backend: %s", error->message);
    const char *dir = g_getenv("LMN_TEST_FIXTURES");
    if (dir == NULL)
        g_error("LMN_TEST_FIXTURES is not set: run this test through meson test");
    g_autofree char *path = g_build_filename(dir, "layers-ext.h5", NULL);
    fixture = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (fixture < 0)
        g_error("cannot open %s: regenerate it with scripts/make-ext-layer-fixtures.py", path);

    g_test_add_func("/layers/ext/pytorch", test_pytorch);
    g_test_add_func("/layers/ext/gradcheck", test_gradcheck);
    g_test_add_func("/layers/ext/errors", test_errors);

    int rc = g_test_run();
    H5Fclose(fixture);
    lmn_backend_unref(backend);
    lmn_registry_free(registry);
    return rc;
}
