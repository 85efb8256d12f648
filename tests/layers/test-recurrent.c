/* Recurrent layer tests (rnn, lstm, gru): finite-difference gradient checks through time on the
 * CPU backend, forward outputs and every gradient against PyTorch (tests/fixtures/
 * layers-recurrent.h5, written by scripts/make-recurrent-fixtures.py), PyTorch's default
 * initialisation, and the errors of bad inputs and hyperparameters.
 */
#include <math.h>
#include <string.h>

#include <hdf5.h>
#include <lamina/lamina.h>

/*
 * Gradient-check tolerance, as in test-gradcheck.c: float32 forward passes with unit-scale values
 * and step 1e-2 leave a correct layer's worst relative error (with the checker's floor) well
 * below 1e-2, while a wrong gradient through time (a missing recurrent term, a transposed W_hh,
 * a wrong step offset) shows 0.1 or more.
 */
#define GRAD_TOLERANCE 1e-2

/*
 * Against PyTorch's float64 answer: the layer computes in float32 with O(F + H) term dot
 * products chained over T = 5 steps, so its relative error is a few 1e-7; 1e-4 leaves room for
 * BLAS summation orders and libm, and any formula error is orders of magnitude larger.  An
 * element's error is relative to max(|expected|, 1e-2 * the tensor's largest |expected|), so
 * that elements which happen to be near zero do not turn absolute rounding into a large ratio.
 */
#define FIXTURE_TOLERANCE 1e-4

static LmnRegistry *registry;
static LmnBackend *backend;

static const char *const cell_types[] = {"rnn", "lstm", "gru"};
static const gint64 cell_gates[] = {1, 4, 3};

static void params_cleanup(LmnParams **p)
{
    g_clear_pointer(p, lmn_params_unref);
}
#define scoped_params __attribute__((cleanup(params_cleanup))) LmnParams *

static LmnTensorInfo seq_info(gint64 steps, gint64 features)
{
    LmnTensorInfo t = {.dtype = LMN_DTYPE_F32};
    t.shape = lmn_shape_make(2, steps, features);
    return t;
}

/* Validates NULL-terminated key, value pairs for layer @type; NULL with @error on failure. */
G_GNUC_NULL_TERMINATED
static LmnParams *try_params(const char *type, GError **error, ...)
{
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_LAYER, type, error);
    g_assert_nonnull(f);
    g_autoptr(GPtrArray) keys = g_ptr_array_new();
    g_autoptr(GPtrArray) values = g_ptr_array_new();
    va_list ap;
    va_start(ap, error);
    const char *k;
    while ((k = va_arg(ap, const char *)) != NULL) {
        g_ptr_array_add(keys, (gpointer) k);
        g_ptr_array_add(values, va_arg(ap, char *));
    }
    va_end(ap);
    g_ptr_array_add(keys, NULL);
    g_ptr_array_add(values, NULL);
    return lmn_registry_validate_params(f, (const char *const *) keys->pdata,
                                        (const char *const *) values->pdata,
                                        "model.ini [layer rnn1]", error);
}

static LmnParams *cell_params(const char *type, gint64 hidden, gboolean sequences, gboolean bias)
{
    g_autofree char *h = g_strdup_printf("%" G_GINT64_FORMAT, hidden);
    g_autoptr(GError) error = NULL;
    LmnParams *p = try_params(type, &error, "hidden_size", h, "return_sequences",
                              sequences ? "true" : "false", "bias", bias ? "true" : "false", NULL);
    g_assert_no_error(error);
    g_assert_nonnull(p);
    return p;
}

/* ---- gradient checks ---- */

static void gradcheck_case(const char *type, gint64 steps, gint64 features, gint64 hidden,
                           gboolean sequences, gboolean bias, gint64 batch, guint64 seed)
{
    scoped_params p = cell_params(type, hidden, sequences, bias);
    LmnTensorInfo in = seq_info(steps, features);
    LmnGradcheckOptions o;
    lmn_gradcheck_options_init(&o);
    o.batch = batch;
    o.seed = seed;
    /* Inputs and weights of magnitude up to 1 over H + F terms saturate tanh and sigmoid, where
     * derivatives vanish and the check tells nothing; 0.5 keeps the gates in their live range. */
    o.value_scale = 0.5;
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) r = lmn_gradcheck_layer(registry, backend, type, p, 1, &in, &o, &error);
    g_assert_no_error(error);
    g_assert_nonnull(r);
    g_autofree char *table = lmn_gradcheck_format(r);
    g_test_message("%s T=%" G_GINT64_FORMAT " H=%" G_GINT64_FORMAT " seq=%d bias=%d:\n%s", type,
                   steps, hidden, sequences, bias, table);

    /* input 0, weight_ih, weight_hh (+ bias_ih, bias_hh) */
    g_assert_cmpuint(r->len, ==, bias ? 5 : 3);
    for (guint i = 0; i < r->len; i++) {
        const LmnGradcheckResult *x = g_ptr_array_index(r, i);
        g_assert_cmpint(x->n_checked, >, 0);
        if (steps == 1 && strcmp(x->name, "weight_hh") == 0) {
            /* h_{-1} = 0: W_hh has no effect on a single step, and its gradient must be 0. */
            g_assert_cmpfloat(x->max_abs_error, <, 1e-6);
            continue;
        }
        g_assert_cmpfloat(x->scale, >, 1e-6);
        g_assert_cmpfloat(x->max_rel_error, <, GRAD_TOLERANCE);
    }
}

static void test_gradcheck(gconstpointer data)
{
    const char *type = data;
    guint64 seed = 1000 + (guint64) strlen(type) * 37;
    for (int sequences = 0; sequences <= 1; sequences++) {
        for (gint64 steps = 1; steps <= 5; steps += 4) {
            gradcheck_case(type, steps, 4, 3, sequences, TRUE, 3, seed++);
        }
    }
    /* No biases; a single sample; H = 1 and F = 1. */
    gradcheck_case(type, 4, 2, 3, TRUE, FALSE, 2, seed++);
    gradcheck_case(type, 3, 3, 2, FALSE, TRUE, 1, seed++);
    gradcheck_case(type, 3, 1, 1, TRUE, TRUE, 2, seed++);
}

/* ---- against PyTorch ---- */

static gboolean read_dataset(hid_t group, const char *name, gint64 *n_out, double **data)
{
    if (H5Lexists(group, name, H5P_DEFAULT) <= 0) {
        return FALSE;
    }
    hid_t d = H5Dopen2(group, name, H5P_DEFAULT);
    g_assert_cmpint(d, >=, 0);
    hid_t space = H5Dget_space(d);
    gssize n = H5Sget_simple_extent_npoints(space);
    *data = g_new(double, n);
    g_assert_cmpint(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data), >=, 0);
    H5Sclose(space);
    H5Dclose(d);
    *n_out = n;
    return TRUE;
}

static gint64 read_int_attr(hid_t group, const char *name)
{
    hid_t a = H5Aopen(group, name, H5P_DEFAULT);
    g_assert_cmpint(a, >=, 0);
    gint64 v = 0;
    g_assert_cmpint(H5Aread(a, H5T_NATIVE_INT64, &v), >=, 0);
    H5Aclose(a);
    return v;
}

static LmnTensor *tensor_from(const double *values, gint64 n, const LmnShape *shape)
{
    g_autoptr(GError) error = NULL;
    LmnTensor *t = lmn_tensor_new(backend, LMN_DTYPE_F32, shape, &error);
    g_assert_no_error(error);
    g_assert_cmpint(lmn_tensor_numel(t), ==, n);
    g_autofree float *f = g_new(float, n);
    for (gint64 i = 0; i < n; i++) {
        f[i] = (float) values[i];
    }
    g_assert_true(lmn_tensor_write(t, f, sizeof(float) * n, &error));
    return t;
}

static void write_tensor(LmnTensor *t, const double *values, gint64 n)
{
    g_assert_cmpint(lmn_tensor_numel(t), ==, n);
    g_autofree float *f = g_new(float, n);
    for (gint64 i = 0; i < n; i++) {
        f[i] = (float) values[i];
    }
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_tensor_write(t, f, sizeof(float) * n, &error));
    g_assert_no_error(error);
}

/* Compares @t with the fixture's @name; returns the worst relative error (see the tolerance). */
static double compare(hid_t group, const char *name, LmnTensor *t)
{
    gint64 n = 0;
    g_autofree double *expect = NULL;
    g_assert_true(read_dataset(group, name, &n, &expect));
    g_assert_cmpint(lmn_tensor_numel(t), ==, n);
    g_autofree float *got = g_new(float, n);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_tensor_read(t, got, sizeof(float) * n, &error));
    g_assert_no_error(error);
    double scale = 0.0;
    for (gint64 i = 0; i < n; i++) {
        scale = MAX(scale, fabs(expect[i]));
    }
    g_assert_cmpfloat(scale, >, 0.0);
    double worst = 0.0;
    for (gint64 i = 0; i < n; i++) {
        g_assert_true(isfinite(got[i]));
        double rel = fabs(got[i] - expect[i]) / MAX(fabs(expect[i]), 1e-2 * scale);
        worst = MAX(worst, rel);
    }
    return worst;
}

static const char *const param_names[] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};

static void test_matches_pytorch(gconstpointer data)
{
    const char *type = data;
    const char *path = g_getenv("LMN_TEST_FIXTURES");
    g_assert_nonnull(path);
    g_autofree char *file_path = g_build_filename(path, "layers-recurrent.h5", NULL);
    hid_t file = H5Fopen(file_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(file, >=, 0);

    const char *suffixes[] = {"last", "seq", "nobias"};
    for (guint c = 0; c < G_N_ELEMENTS(suffixes); c++) {
        g_autofree char *group_name = g_strdup_printf("%s-%s", type, suffixes[c]);
        hid_t g = H5Gopen2(file, group_name, H5P_DEFAULT);
        g_assert_cmpint(g, >=, 0);
        gint64 N = read_int_attr(g, "batch"), T = read_int_attr(g, "steps");
        gint64 F = read_int_attr(g, "features"), H = read_int_attr(g, "hidden");
        gboolean seq = read_int_attr(g, "return_sequences") != 0;
        gboolean bias = read_int_attr(g, "bias") != 0;

        scoped_params p = cell_params(type, H, seq, bias);
        LmnTensorInfo in = seq_info(T, F);
        g_autoptr(GError) error = NULL;
        LmnLayer *l = lmn_layer_new(registry, type, "rnn1", 0, p, backend, 1, &in, &error);
        g_assert_no_error(error);
        guint n_params = lmn_layer_get_n_params(l);
        g_assert_cmpuint(n_params, ==, bias ? 4 : 2);
        for (guint i = 0; i < n_params; i++) {
            g_assert_cmpstr(lmn_layer_get_param_name(l, i), ==, param_names[i]);
            gint64 n = 0;
            g_autofree double *v = NULL;
            g_assert_true(read_dataset(g, param_names[i], &n, &v));
            write_tensor(lmn_layer_get_param(l, i), v, n);
        }

        /* A larger batch first: the saved tensors of the real one are then views of larger
         * allocations, the layout every last partial batch of an epoch runs with. */
        g_assert_true(lmn_layer_prepare_batch(l, N + 4, &error));
        g_assert_true(lmn_layer_prepare_batch(l, N, &error));
        g_assert_no_error(error);

        gint64 nx = 0, nr = 0;
        g_autofree double *xv = NULL, *rv = NULL;
        g_assert_true(read_dataset(g, "x", &nx, &xv));
        g_assert_true(read_dataset(g, "R", &nr, &rv));
        LmnShape xs = lmn_shape_make(3, N, T, F);
        LmnShape os = seq ? lmn_shape_make(3, N, T, H) : lmn_shape_make(2, N, H);
        g_autoptr(LmnTensor) x = tensor_from(xv, nx, &xs);
        g_autoptr(LmnTensor) dy = tensor_from(rv, nr, &os);
        g_autoptr(LmnTensor) out = lmn_tensor_new(backend, LMN_DTYPE_F32, &os, &error);
        g_autoptr(LmnTensor) dx = lmn_tensor_new(backend, LMN_DTYPE_F32, &xs, &error);
        g_assert_no_error(error);
        /* Garbage in the outputs: forward and backward must overwrite, not accumulate. */
        lmn_op_fill(out, 1e3f);
        lmn_op_fill(dx, 1e3f);
        for (guint i = 0; i < n_params; i++) {
            lmn_op_fill(lmn_layer_get_grad(l, i), 1e3f);
        }

        LmnTensor *inputs[] = {x};
        LmnTensor *input_grads[] = {dx};
        LmnLayerIO io = {
            .struct_size = sizeof(LmnLayerIO),
            .n_inputs = 1,
            .inputs = inputs,
            .output = out,
            .batch = N,
            .training = TRUE,
            .seed = 1,
        };
        lmn_layer_forward(l, &io);
        io.output_grad = dy;
        io.input_grads = input_grads;
        lmn_layer_backward(l, &io);

        double err = compare(g, "output", out);
        g_test_message("%s: output %.3g", group_name, err);
        g_assert_cmpfloat(err, <, FIXTURE_TOLERANCE);
        err = compare(g, "grad_x", dx);
        g_test_message("%s: grad_x %.3g", group_name, err);
        g_assert_cmpfloat(err, <, FIXTURE_TOLERANCE);
        for (guint i = 0; i < n_params; i++) {
            g_autofree char *name = g_strdup_printf("grad_%s", param_names[i]);
            err = compare(g, name, lmn_layer_get_grad(l, i));
            g_test_message("%s: %s %.3g", group_name, name, err);
            g_assert_cmpfloat(err, <, FIXTURE_TOLERANCE);
        }
        lmn_layer_free(l);
        H5Gclose(g);
    }
    H5Fclose(file);
}

/* ---- initialisation ---- */

/*
 * torch.nn.RNNBase draws every parameter from U(-1/sqrt(H), 1/sqrt(H)), whatever F is.  With
 * H = 64 and F = 300, a fan-based scheme would differ: bound 1/sqrt(300) for weight_ih under
 * nn.Linear's rule, which the variance check (3% band, 5 sigma at these sizes) rejects.
 */
static void test_init_matches_pytorch(void)
{
    const gint64 H = 64, F = 300;
    for (guint c = 0; c < G_N_ELEMENTS(cell_types); c++) {
        scoped_params p = cell_params(cell_types[c], H, FALSE, TRUE);
        LmnTensorInfo in = seq_info(7, F);
        g_autoptr(GError) error = NULL;
        LmnLayer *l = lmn_layer_new(registry, cell_types[c], "rnn1", 0, p, backend, 1, &in, &error);
        g_assert_no_error(error);
        g_assert_true(lmn_layer_init_params(l, registry, 5, 0, NULL, NULL, "test", &error));
        g_assert_no_error(error);
        const double bound = 1.0 / sqrt((double) H);
        const gint64 gh = cell_gates[c] * H;
        const gint64 expect_numel[] = {gh * F, gh * H, gh, gh};
        for (guint i = 0; i < 4; i++) {
            LmnTensor *t = lmn_layer_get_param(l, i);
            gint64 n = lmn_tensor_numel(t);
            g_assert_cmpint(n, ==, expect_numel[i]);
            g_autofree float *v = g_new(float, n);
            g_assert_true(lmn_tensor_read(t, v, sizeof(float) * n, &error));
            double sum = 0.0, sum2 = 0.0, vmax = 0.0;
            for (gint64 k = 0; k < n; k++) {
                g_assert_cmpfloat(fabs(v[k]), <=, bound * (1 + 1e-6));
                sum += v[k];
                sum2 += (double) v[k] * v[k];
                vmax = MAX(vmax, fabs(v[k]));
            }
            double var = sum2 / n - (sum / n) * (sum / n);
            double expected = bound * bound / 3.0;
            if (n >= 10000) {
                g_assert_cmpfloat(fabs(var - expected) / expected, <, 0.03);
            }
            /* Even the 64 biases of rnn reach near the bound. */
            g_assert_cmpfloat(vmax, >, 0.85 * bound);
        }
        lmn_layer_free(l);
    }
}

/* ---- bad inputs ---- */

static void test_bad_input_shape(void)
{
    for (guint c = 0; c < G_N_ELEMENTS(cell_types); c++) {
        scoped_params p = cell_params(cell_types[c], 4, FALSE, TRUE);
        LmnTensorInfo flat = {.dtype = LMN_DTYPE_F32, .shape = lmn_shape_make(1, (gint64) 10)};
        g_autoptr(GError) error = NULL;
        LmnLayer *l =
            lmn_layer_new(registry, cell_types[c], "rnn1", 0, p, backend, 1, &flat, &error);
        g_assert_null(l);
        g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH);
        g_assert_nonnull(strstr(error->message, "'rnn1'"));
        g_assert_nonnull(strstr(error->message, cell_types[c]));
        g_assert_nonnull(strstr(error->message, "[10]"));
        g_assert_nonnull(strstr(error->message, "[steps, features]"));
        g_clear_error(&error);

        LmnTensorInfo labels = {.dtype = LMN_DTYPE_I32, .shape = lmn_shape_make(2, 5, 2)};
        l = lmn_layer_new(registry, cell_types[c], "rnn1", 0, p, backend, 1, &labels, &error);
        g_assert_null(l);
        g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH);
        g_assert_nonnull(strstr(error->message, "'rnn1'"));
        g_assert_nonnull(strstr(error->message, "i32"));
    }
}

/* Sizes reach the kernels as float scalars, exact below 2^24: larger ones are refused in build,
 * before anything is allocated. */
static void test_too_large(void)
{
    g_autoptr(GError) error = NULL;
    scoped_params big = cell_params("lstm", 5000000, FALSE, TRUE);
    LmnTensorInfo in = seq_info(10, 2);
    LmnLayer *l = lmn_layer_new(registry, "lstm", "rnn1", 0, big, backend, 1, &in, &error);
    g_assert_null(l);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH);
    g_assert_nonnull(strstr(error->message, "'rnn1'"));
    g_assert_nonnull(strstr(error->message, "hidden_size 5000000"));
    g_clear_error(&error);

    scoped_params p = cell_params("gru", 4, FALSE, TRUE);
    LmnTensorInfo long_seq = seq_info((gint64) 1 << 24, 1);
    l = lmn_layer_new(registry, "gru", "rnn1", 0, p, backend, 1, &long_seq, &error);
    g_assert_null(l);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH);
    g_assert_nonnull(strstr(error->message, "[16777216, 1]"));
}

static void test_bad_params(void)
{
    for (guint c = 0; c < G_N_ELEMENTS(cell_types); c++) {
        g_autoptr(GError) error = NULL;
        LmnParams *p = try_params(cell_types[c], &error, "return_sequences", "true", NULL);
        g_assert_null(p);
        g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_MISSING);
        g_assert_nonnull(strstr(error->message, "model.ini [layer rnn1]"));
        g_assert_nonnull(strstr(error->message, "hidden_size"));
        g_clear_error(&error);

        p = try_params(cell_types[c], &error, "hidden_size", "0", NULL);
        g_assert_null(p);
        g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
        g_assert_nonnull(strstr(error->message, "hidden_size"));
        g_clear_error(&error);

        p = try_params(cell_types[c], &error, "hidden_size", "8", "units", "8", NULL);
        g_assert_null(p);
        g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY);
        g_assert_nonnull(strstr(error->message, "units"));
    }
}

/* The output shape follows return_sequences; the parameters follow PyTorch's shapes. */
static void test_shapes(void)
{
    for (guint c = 0; c < G_N_ELEMENTS(cell_types); c++) {
        for (int seq = 0; seq <= 1; seq++) {
            scoped_params p = cell_params(cell_types[c], 5, seq, TRUE);
            LmnTensorInfo in = seq_info(7, 3);
            g_autoptr(GError) error = NULL;
            LmnLayer *l =
                lmn_layer_new(registry, cell_types[c], "rnn1", 0, p, backend, 1, &in, &error);
            g_assert_no_error(error);
            const LmnTensorInfo *o = lmn_layer_get_output_info(l);
            LmnShape expect = seq ? lmn_shape_make(2, 7, 5) : lmn_shape_make(1, (gint64) 5);
            g_assert_true(lmn_shape_equal(&o->shape, &expect));
            gint64 gh = cell_gates[c] * 5;
            LmnShape w_ih = lmn_shape_make(2, gh, 3), w_hh = lmn_shape_make(2, gh, 5);
            LmnShape b = lmn_shape_make(1, gh);
            g_assert_true(lmn_shape_equal(&lmn_layer_get_param(l, 0)->shape, &w_ih));
            g_assert_true(lmn_shape_equal(&lmn_layer_get_param(l, 1)->shape, &w_hh));
            g_assert_true(lmn_shape_equal(&lmn_layer_get_param(l, 2)->shape, &b));
            g_assert_true(lmn_shape_equal(&lmn_layer_get_param(l, 3)->shape, &b));
            g_assert_cmpint(lmn_layer_get_param_role(l, 2), ==, LMN_PARAM_ROLE_BIAS);
            lmn_layer_free(l);
        }
    }
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

    for (guint c = 0; c < G_N_ELEMENTS(cell_types); c++) {
        g_autofree char *gc = g_strdup_printf("/layers/recurrent/%s/gradcheck", cell_types[c]);
        g_autofree char *pt =
            g_strdup_printf("/layers/recurrent/%s/matches-pytorch", cell_types[c]);
        g_test_add_data_func(gc, cell_types[c], test_gradcheck);
        g_test_add_data_func(pt, cell_types[c], test_matches_pytorch);
    }
    g_test_add_func("/layers/recurrent/init-matches-pytorch", test_init_matches_pytorch);
    g_test_add_func("/layers/recurrent/shapes", test_shapes);
    g_test_add_func("/layers/recurrent/bad-input-shape", test_bad_input_shape);
    g_test_add_func("/layers/recurrent/bad-params", test_bad_params);
    g_test_add_func("/layers/recurrent/too-large", test_too_large);

    int rc = g_test_run();
    lmn_backend_unref(backend);
    lmn_registry_free(registry);
    return rc;
}
