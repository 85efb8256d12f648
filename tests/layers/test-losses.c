/* Tests of the loss layers l1, huber, smooth_l1 and nll (plugins/layers/robust-losses.c), and of
 * softmax_cross_entropy's general form (per-pixel logits, ignore_index, class weights, label
 * smoothing: plugins/layers/xent-pixel.c, tests/fixtures/losses-spatial.h5):
 * finite-difference gradient checks of every input, the loss and both gradients against
 * PyTorch (tests/fixtures/losses.h5, recorded by scripts/make-loss-fixtures.py; inputs include
 * exact matches and differences on the band's edge), a Vulkan run equal to the CPU with
 * --vulkan, and the graph errors for inputs a loss cannot take.
 */
#include <hdf5.h>
#include <math.h>
#include <string.h>

#include <lamina/lamina.h>

#include "../e2e/e2e-util.h"

#define GRAD_TOLERANCE 1e-2

static LmnRegistry *registry;
static LmnBackend *cpu;
static LmnBackend *vk;

static LmnParams *params_for(const char *type, const char *key, const char *value)
{
    if (key == NULL || key[0] == '\0')
        return NULL;
    g_autoptr(GError) error = NULL;
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_LAYER, type, &error);
    g_assert_no_error(error);
    const char *keys[] = {key, NULL}, *values[] = {value, NULL};
    LmnParams *p = lmn_registry_validate_params(f, keys, values, "test [layer]", &error);
    g_assert_no_error(error);
    return p;
}

static void test_gradcheck(void)
{
    static const struct {
        const char *type, *key, *value;
        gboolean labels;
    } cases[] = {
        {"l1", NULL, NULL, FALSE},
        {"huber", NULL, NULL, FALSE},
        {"huber", "delta", "0.4", FALSE},
        {"smooth_l1", NULL, NULL, FALSE},
        {"smooth_l1", "beta", "0.3", FALSE},
        {"smooth_l1", "beta", "0", FALSE},
        {"nll", NULL, NULL, TRUE},
        {"dice", NULL, NULL, FALSE},
        {"dice", "smooth", "0.1", FALSE},
        {"binary_cross_entropy_with_logits", "pos_weight", "2.5", FALSE},
    };
    for (guint c = 0; c < G_N_ELEMENTS(cases); c++) {
        g_autoptr(LmnParams) p = params_for(cases[c].type, cases[c].key, cases[c].value);
        LmnTensorInfo in[2] = {{lmn_shape_make(1, (gint64) 6), LMN_DTYPE_F32},
                               {lmn_shape_make(1, (gint64) 6), LMN_DTYPE_F32}};
        if (cases[c].labels)
            in[1] = (LmnTensorInfo){lmn_shape_make(0), LMN_DTYPE_I32};
        LmnGradcheckOptions o;
        lmn_gradcheck_options_init(&o);
        o.batch = 4;
        o.seed = 7 + c;
        /* Values in [0.3, 1.2] in magnitude: differences fall both inside and outside the
         * bands of delta 0.4 and beta 0.3; the small step keeps the finite differences from
         * straddling a kink (|x - t| = 0 or the band's edge). */
        o.value_scale = 1.2;
        o.margin = 0.25;
        o.step = 1e-3;
        g_autoptr(GError) error = NULL;
        g_autoptr(GPtrArray) r =
            lmn_gradcheck_layer(registry, cpu, cases[c].type, p, 2, in, &o, &error);
        g_assert_no_error(error);
        g_autofree char *table = lmn_gradcheck_format(r);
        g_test_message("%s %s=%s:\n%s", cases[c].type, cases[c].key ? cases[c].key : "",
                       cases[c].value ? cases[c].value : "", table);
        g_assert_cmpuint(r->len, ==, cases[c].labels ? 1 : 2);
        g_assert_cmpfloat(lmn_gradcheck_max_rel_error(r), <, GRAD_TOLERANCE);
    }
}

static float *read_ds(hid_t g, const char *name, hid_t type, LmnShape *shape)
{
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    g_assert_cmpint(d, >=, 0);
    hid_t s = H5Dget_space(d);
    int nd = H5Sget_simple_extent_ndims(s);
    hsize_t dims[LMN_MAX_DIMS] = {0};
    H5Sget_simple_extent_dims(s, dims, NULL);
    shape->ndim = (guint) nd;
    for (int i = 0; i < nd; i++)
        shape->dims[i] = (gint64) dims[i];
    float *v = g_malloc(MAX(lmn_shape_numel(shape), 1) * 4);
    g_assert_cmpint(H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), >=, 0);
    H5Sclose(s);
    H5Dclose(d);
    return v;
}

static char *read_attr(hid_t g, const char *name)
{
    hid_t a = H5Aopen(g, name, H5P_DEFAULT);
    g_assert_cmpint(a, >=, 0);
    hid_t type = H5Aget_type(a);
    char *value = NULL;
    if (H5Tis_variable_str(type) > 0) {
        hid_t mem = H5Tcopy(H5T_C_S1);
        H5Tset_size(mem, H5T_VARIABLE);
        H5Tset_cset(mem, H5Tget_cset(type));
        char *v = NULL;
        g_assert_cmpint(H5Aread(a, mem, &v), >=, 0);
        value = g_strdup(v);
        H5free_memory(v);
        H5Tclose(mem);
    } else {
        value = g_malloc0(H5Tget_size(type) + 1);
        g_assert_cmpint(H5Aread(a, type, value), >=, 0);
    }
    H5Tclose(type);
    H5Aclose(a);
    return value;
}

static LmnTensor *tensor_from(LmnBackend *b, LmnDType dtype, const LmnShape *shape, const void *v)
{
    g_autoptr(GError) error = NULL;
    LmnTensor *t = lmn_tensor_new(b, dtype, shape, &error);
    g_assert_no_error(error);
    if (v)
        g_assert_true(lmn_tensor_write(t, v, lmn_tensor_nbytes(t), &error));
    return t;
}

static float *tensor_values(LmnTensor *t)
{
    float *v = g_new(float, MAX(lmn_tensor_numel(t), 1));
    g_assert_true(lmn_tensor_read(t, v, lmn_tensor_nbytes(t), NULL));
    return v;
}

/* The results of one forward and backward: the loss, dx and (regression) dt. */
typedef struct {
    float loss;
    float *dx, *dt;
} LossRun;

static void loss_run_clear(LossRun *r)
{
    g_free(r->dx);
    g_free(r->dt);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(LossRun, loss_run_clear)

static void run_loss(LmnBackend *b, const char *type, const LmnParams *p, const LmnShape *xs,
                     const float *x, const LmnShape *ts, const void *t, gboolean labels,
                     LossRun *out)
{
    gint64 n = xs->dims[0];
    LmnTensorInfo infos[2] = {{lmn_shape_make(0), LMN_DTYPE_F32},
                              {lmn_shape_make(0), labels ? LMN_DTYPE_I32 : LMN_DTYPE_F32}};
    infos[0].shape.ndim = xs->ndim - 1;
    memcpy(infos[0].shape.dims, xs->dims + 1, sizeof(gint64) * (LMN_MAX_DIMS - 1));
    infos[1].shape.ndim = ts->ndim - 1;
    memcpy(infos[1].shape.dims, ts->dims + 1, sizeof(gint64) * (LMN_MAX_DIMS - 1));
    g_autoptr(GError) error = NULL;
    LmnLayer *l = lmn_layer_new(registry, type, "loss", 0, p, b, 2, infos, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_layer_prepare_batch(l, n, &error));
    LmnTensor *in[2] = {tensor_from(b, LMN_DTYPE_F32, xs, x),
                        tensor_from(b, labels ? LMN_DTYPE_I32 : LMN_DTYPE_F32, ts, t)};
    LmnShape one = lmn_shape_make(0);
    LmnTensor *loss = tensor_from(b, LMN_DTYPE_F32, &one, NULL);
    LmnTensor *grads[2] = {tensor_from(b, LMN_DTYPE_F32, xs, NULL),
                           labels ? NULL : tensor_from(b, LMN_DTYPE_F32, ts, NULL)};
    for (guint i = 0; i < 2; i++)
        if (grads[i])
            lmn_op_fill(grads[i], NAN); /* must be overwritten */
    LmnLayerIO io = {.struct_size = sizeof(LmnLayerIO),
                     .n_inputs = 2,
                     .inputs = in,
                     .output = loss,
                     .batch = n,
                     .training = TRUE,
                     .seed = 1,
                     .input_grads = grads};
    lmn_layer_forward(l, &io);
    lmn_layer_backward(l, &io);
    g_assert_true(lmn_backend_synchronize(b, &error));
    g_assert_no_error(error);
    g_autofree float *lv = tensor_values(loss);
    out->loss = lv[0];
    out->dx = tensor_values(grads[0]);
    out->dt = grads[1] ? tensor_values(grads[1]) : NULL;
    for (guint i = 0; i < 2; i++) {
        lmn_tensor_unref(in[i]);
        if (grads[i])
            lmn_tensor_unref(grads[i]);
    }
    lmn_tensor_unref(loss);
    lmn_layer_free(l);
}

static void assert_close(const char *what, const float *got, const float *want, gint64 n,
                         double rtol, double atol)
{
    for (gint64 i = 0; i < n; i++)
        if (!(fabs((double) got[i] - want[i]) <= atol + rtol * fabs((double) want[i])))
            g_error("%s: element %" G_GINT64_FORMAT " is %.9g, expected %.9g", what, i, got[i],
                    want[i]);
}

static void check_case(hid_t file, const char *name)
{
    hid_t g = H5Gopen2(file, name, H5P_DEFAULT);
    g_assert_cmpint(g, >=, 0);
    g_autofree char *type = read_attr(g, "type");
    g_autofree char *key = read_attr(g, "key");
    g_autofree char *value = read_attr(g, "value");
    gboolean labels = g_str_equal(type, "nll");
    g_autoptr(LmnParams) p = params_for(type, key, value);
    LmnShape xs, ts, s;
    g_autofree float *x = read_ds(g, "x", H5T_NATIVE_FLOAT, &xs);
    g_autofree float *t =
        read_ds(g, labels ? "labels" : "t", labels ? H5T_NATIVE_INT32 : H5T_NATIVE_FLOAT, &ts);
    g_autofree float *loss = read_ds(g, "loss", H5T_NATIVE_FLOAT, &s);
    g_autofree float *dx = read_ds(g, "dx", H5T_NATIVE_FLOAT, &s);
    g_autofree float *dt = labels ? NULL : read_ds(g, "dt", H5T_NATIVE_FLOAT, &s);
    g_auto(LossRun) r = {0};
    run_loss(cpu, type, p, &xs, x, &ts, t, labels, &r);
    gint64 n = lmn_shape_numel(&xs);
    g_autofree char *what = g_strdup_printf("%s (%s)", name, type);
    assert_close(what, &r.loss, loss, 1, 1e-5, 1e-7);
    assert_close(what, r.dx, dx, n, 1e-5, 1e-8);
    /* kl_div's target gradient is NaN at t = 0 in torch and finite here (the loss and dx cover
     * those elements): leave them out. */
    g_autofree gboolean *skip = g_new0(gboolean, n);
    for (gint64 i = 0; dt != NULL && i < n; i++)
        if (!isfinite(dt[i]))
            skip[i] = TRUE, r.dt[i] = dt[i] = 0.0f;
    if (!labels)
        assert_close(what, r.dt, dt, n, 1e-5, 1e-8);
    if (vk) {
        g_auto(LossRun) v = {0};
        run_loss(vk, type, p, &xs, x, &ts, t, labels, &v);
        assert_close(what, &v.loss, &r.loss, 1, 1e-5, 1e-7);
        assert_close(what, v.dx, r.dx, n, 1e-5, 1e-8);
        for (gint64 k = 0; !labels && k < n; k++)
            if (skip[k])
                v.dt[k] = 0.0f;
        if (!labels)
            assert_close(what, v.dt, r.dt, n, 1e-5, 1e-8);
    }
    H5Gclose(g);
}

static void test_pytorch(void)
{
    g_autofree char *path = g_build_filename(g_getenv("LMN_TEST_FIXTURES"), "losses.h5", NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(file, >=, 0);
    const char *cases[] = {"l1",        "l1-3d",         "huber",           "huber-0.3",
                           "smooth_l1", "smooth_l1-0.5", "smooth_l1-0",     "nll",
                           "nll-wide",  "kl_div",        "kl_div-batchmean"};
    for (guint c = 0; c < G_N_ELEMENTS(cases); c++)
        check_case(file, cases[c]);
    H5Fclose(file);
}

/* Parameters from ';'-separated keys and values ("" for none). */
static LmnParams *params_from_lists(const char *type, const char *keys, const char *values)
{
    if (keys[0] == '\0')
        return NULL;
    g_auto(GStrv) k = g_strsplit(keys, ";", -1);
    g_auto(GStrv) v = g_strsplit(values, ";", -1);
    g_assert_cmpuint(g_strv_length(k), ==, g_strv_length(v));
    g_autoptr(GError) error = NULL;
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_LAYER, type, &error);
    g_assert_no_error(error);
    LmnParams *p = lmn_registry_validate_params(f, (const char *const *) k, (const char *const *) v,
                                                "test [layer]", &error);
    g_assert_no_error(error);
    return p;
}

/* softmax_cross_entropy's general form (xent-pixel.c) against nn.CrossEntropyLoss, and
 * binary_cross_entropy_with_logits with pos_weight and dice (mask-losses.c) against PyTorch
 * (tests/fixtures/losses-spatial.h5 from scripts/make-spatial-loss-fixtures.py): per-pixel
 * logits with float labels, ignore_index, class weights and label smoothing; per-channel, scalar
 * and per-class pos_weight; dice with two smooth terms; the target gradients of the mask losses. */
static void check_general_case(hid_t file, const char *name)
{
    hid_t g = H5Gopen2(file, name, H5P_DEFAULT);
    g_assert_cmpint(g, >=, 0);
    g_autofree char *type = read_attr(g, "type");
    g_autofree char *keys = read_attr(g, "keys");
    g_autofree char *values = read_attr(g, "values");
    g_autoptr(LmnParams) p = params_from_lists(type, keys, values);
    gboolean xent = g_str_equal(type, "softmax_cross_entropy");
    LmnShape xs, ts, s;
    g_autofree float *x = read_ds(g, "x", H5T_NATIVE_FLOAT, &xs);
    gboolean int_labels = xent && xs.ndim == 2;
    g_autofree float *t =
        read_ds(g, xent ? "labels" : "t", int_labels ? H5T_NATIVE_INT32 : H5T_NATIVE_FLOAT, &ts);
    g_autofree float *loss = read_ds(g, "loss", H5T_NATIVE_FLOAT, &s);
    g_autofree float *dx = read_ds(g, "dx", H5T_NATIVE_FLOAT, &s);
    g_autofree float *dt = xent ? NULL : read_ds(g, "dt", H5T_NATIVE_FLOAT, &s);
    gint64 n = lmn_shape_numel(&xs);
    g_autofree char *what = g_strdup_printf("%s (%s %s)", name, type, keys);
    g_auto(LossRun) r = {0};
    run_loss(cpu, type, p, &xs, x, &ts, t, int_labels, &r);
    assert_close(what, &r.loss, loss, 1, 1e-5, 1e-6);
    assert_close(what, r.dx, dx, n, 1e-4, 1e-7);
    if (dt)
        assert_close(what, r.dt, dt, n, 1e-4, 1e-7);
    if (vk) {
        g_auto(LossRun) v = {0};
        run_loss(vk, type, p, &xs, x, &ts, t, int_labels, &v);
        assert_close(what, &v.loss, &r.loss, 1, 1e-5, 1e-7);
        assert_close(what, v.dx, r.dx, n, 1e-5, 1e-8);
        if (dt)
            assert_close(what, v.dt, r.dt, n, 1e-5, 1e-8);
    }
    H5Gclose(g);
}

static void test_pytorch_general_xent(void)
{
    g_autofree char *path =
        g_build_filename(g_getenv("LMN_TEST_FIXTURES"), "losses-spatial.h5", NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(file, >=, 0);
    const char *cases[] = {"1d-weight", "1d-ignore", "1d-weight-smooth", "2d", "2d-smooth",
                           "2d-ignore", "2d-all",    "1d-seq",           "3d"};
    for (guint c = 0; c < G_N_ELEMENTS(cases); c++)
        check_general_case(file, cases[c]);
    H5Fclose(file);
}

/* Every pixel ignored: the loss is 0 / 0 (NaN, as PyTorch) and the gradient 0, never NaN; a
 * label that is no class (the data check refuses it first) is ignored, not read out of range. */
static void test_xent_all_ignored(void)
{
    g_autoptr(LmnParams) p = params_from_lists("softmax_cross_entropy", "ignore_index", "-1");
    LmnShape xs = lmn_shape_make(4, (gint64) 2, (gint64) 3, (gint64) 2, (gint64) 2);
    LmnShape ts = lmn_shape_make(3, (gint64) 2, (gint64) 2, (gint64) 2);
    float x[24], t[8];
    for (guint i = 0; i < 24; i++)
        x[i] = (float) i / 7.0f - 1.0f;
    for (guint i = 0; i < 8; i++)
        t[i] = i % 2 ? -1.0f : (i % 4 ? 3.0f : 1.5f);
    g_auto(LossRun) r = {0};
    run_loss(cpu, "softmax_cross_entropy", p, &xs, x, &ts, t, FALSE, &r);
    g_assert_true(isnan(r.loss));
    for (guint i = 0; i < 24; i++)
        g_assert_cmpfloat(r.dx[i], ==, 0.0f);
}

static void expect_graph_error_p(const char *type, const LmnParams *p, const LmnTensorInfo *in,
                                 const char *frag)
{
    g_autoptr(GError) error = NULL;
    LmnLayer *l = lmn_layer_new(registry, type, "bad", 0, p, cpu, 2, in, &error);
    g_assert_null(l);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH);
    g_assert_nonnull(strstr(error->message, "layer 'bad'"));
    g_assert_nonnull(strstr(error->message, frag));
}

static void test_xent_errors(void)
{
    LmnTensorInfo image[] = {{lmn_shape_make(3, (gint64) 4, (gint64) 5, (gint64) 6), LMN_DTYPE_F32},
                             {lmn_shape_make(2, (gint64) 5, (gint64) 6), LMN_DTYPE_F32}};
    g_autoptr(LmnParams) w3 = params_from_lists("softmax_cross_entropy", "class_weight", "1,2,3");
    expect_graph_error_p("softmax_cross_entropy", w3, image, "class_weight has 3 values");
    g_autoptr(LmnParams) w0 = params_from_lists("softmax_cross_entropy", "class_weight", "0,0,0,0");
    expect_graph_error_p("softmax_cross_entropy", w0, image, "sums to 0");
    LmnTensorInfo wrong[] = {{lmn_shape_make(3, (gint64) 4, (gint64) 5, (gint64) 6), LMN_DTYPE_F32},
                             {lmn_shape_make(2, (gint64) 6, (gint64) 5), LMN_DTYPE_F32}};
    expect_graph_error_p("softmax_cross_entropy", NULL, wrong, "labels [H, W]");
    LmnTensorInfo flat_f32[] = {{lmn_shape_make(1, (gint64) 4), LMN_DTYPE_F32},
                                {lmn_shape_make(0), LMN_DTYPE_F32}};
    expect_graph_error_p("softmax_cross_entropy", w3, flat_f32, "i32 labels");
}

static void expect_graph_error(const char *type, const LmnTensorInfo *in, const char *frag)
{
    g_autoptr(GError) error = NULL;
    LmnLayer *l = lmn_layer_new(registry, type, "bad", 0, NULL, cpu, 2, in, &error);
    g_assert_null(l);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH);
    g_assert_nonnull(strstr(error->message, "layer 'bad'"));
    g_assert_nonnull(strstr(error->message, frag));
}

static void test_graph_errors(void)
{
    LmnTensorInfo mismatch[] = {{lmn_shape_make(1, (gint64) 3), LMN_DTYPE_F32},
                                {lmn_shape_make(1, (gint64) 4), LMN_DTYPE_F32}};
    expect_graph_error("l1", mismatch, "same per-sample shape");
    expect_graph_error("huber", mismatch, "(huber)");
    expect_graph_error("smooth_l1", mismatch, "(smooth_l1)");
    expect_graph_error("kl_div", mismatch, "(kl_div)");
    LmnTensorInfo labels[] = {{lmn_shape_make(1, (gint64) 3), LMN_DTYPE_F32},
                              {lmn_shape_make(0), LMN_DTYPE_I32}};
    expect_graph_error("l1", labels, "f32");
    LmnTensorInfo image[] = {{lmn_shape_make(2, (gint64) 3, (gint64) 4), LMN_DTYPE_F32},
                             {lmn_shape_make(0), LMN_DTYPE_I32}};
    expect_graph_error("nll", image, "log-probabilities");
    LmnTensorInfo floats[] = {{lmn_shape_make(1, (gint64) 3), LMN_DTYPE_F32},
                              {lmn_shape_make(1, (gint64) 3), LMN_DTYPE_F32}};
    expect_graph_error("nll", floats, "integer class label");
    /* huber's delta must be positive. */
    g_autoptr(GError) error = NULL;
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_LAYER, "huber", &error);
    const char *keys[] = {"delta", NULL}, *values[] = {"0", NULL};
    g_assert_null(lmn_registry_validate_params(f, keys, values, "m.ini [layer h]", &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
    g_assert_nonnull(strstr(error->message, "delta"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    gboolean vulkan = FALSE;
    for (int i = 1; i < argc; i++)
        vulkan = vulkan || g_str_equal(argv[i], "--vulkan");
    if (!e2e_open_backends(vulkan, &registry, &cpu, &vk))
        return 77;
    if (!vulkan) {
        g_test_add_func("/layers/losses/gradcheck", test_gradcheck);
        g_test_add_func("/layers/losses/graph-errors", test_graph_errors);
        g_test_add_func("/layers/losses/xent-errors", test_xent_errors);
        g_test_add_func("/layers/losses/xent-all-ignored", test_xent_all_ignored);
    }
    g_test_add_func("/layers/losses/pytorch", test_pytorch);
    g_test_add_func("/layers/losses/pytorch-xent-general", test_pytorch_general_xent);
    int rc = g_test_run();
    if (vk)
        lmn_backend_unref(vk);
    lmn_backend_unref(cpu);
    lmn_registry_free(registry);
    return rc;
}
