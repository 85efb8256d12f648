/* LSUV initialisation (lmn_model_lsuv, [train] lsuv): unit output variance per weighted layer,
 * orthogonal starting weights, kept biases, determinism per seed, the trainer's wiring, and
 * the config's bounds. */
#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

#include "e2e-util.h"

#define N_SAMPLES 200
#define BATCH 64

static LmnRegistry *registry;
static char *data_path;

static const char *model_text = "[model]\n"
                                "input = 1, 6, 6\n"
                                "[layer conv]\n"
                                "type = conv2d\n"
                                "out_channels = 4\n"
                                "kernel_size = 3\n"
                                "padding = 1\n"
                                "[layer act1]\n"
                                "type = relu\n"
                                "[layer flat]\n"
                                "type = flatten\n"
                                "[layer fc1]\n"
                                "type = dense\n"
                                "units = 8\n"
                                "[layer act2]\n"
                                "type = tanh\n"
                                "[layer fc2]\n"
                                "type = dense\n"
                                "units = 3\n"
                                "[layer loss]\n"
                                "type = softmax_cross_entropy\n"
                                "[optimizer]\n"
                                "type = sgd\n"
                                "lr = 0.1\n"
                                "[train]\n"
                                "epochs = 1\n"
                                "batch_size = %d\n"
                                "seed = %d\n"
                                "backend = cpu\n"
                                "%s"
                                "[data]\n"
                                "train = %s:/train\n";

/* x: N(0, 3^2) pixels (so plain orthogonal weights give output variances far from 1), y: 0..2. */
static void write_data(const char *path)
{
    float *x = g_new(float, N_SAMPLES * 36);
    gint32 *y = g_new(gint32, N_SAMPLES);
    LmnRandom r;
    lmn_random_init(&r, 7, 0);
    for (int i = 0; i < N_SAMPLES * 36; i++) {
        double u1 = lmn_random_uniform_double(&r), u2 = lmn_random_uniform_double(&r);
        x[i] = (float) (3.0 * sqrt(-2.0 * log(1.0 - u1)) * cos(2 * G_PI * u2));
    }
    for (int i = 0; i < N_SAMPLES; i++)
        y[i] = (gint32) (lmn_random_u32(&r) % 3);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t xd[4] = {N_SAMPLES, 1, 6, 6}, yd[1] = {N_SAMPLES};
    hid_t xs = H5Screate_simple(4, xd, NULL), ys = H5Screate_simple(1, yd, NULL);
    hid_t xds = H5Dcreate2(g, "x", H5T_IEEE_F32LE, xs, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t yds = H5Dcreate2(g, "y", H5T_STD_I32LE, ys, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(H5Dwrite(xds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), >=, 0);
    g_assert_cmpint(H5Dwrite(yds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y), >=, 0);
    H5Dclose(xds);
    H5Dclose(yds);
    H5Sclose(xs);
    H5Sclose(ys);
    H5Gclose(g);
    H5Fclose(f);
    g_free(x);
    g_free(y);
}

static LmnConfig *make_config(int seed, const char *train_extra, GError **error)
{
    g_autofree char *text = g_strdup_printf(model_text, BATCH, seed, train_extra, data_path);
    LmnConfig *cfg = lmn_config_new_from_data(text, -1, "lsuv.ini", error);
    if (cfg && !lmn_config_validate(cfg, registry, error))
        g_clear_pointer(&cfg, lmn_config_free);
    return cfg;
}

typedef struct {
    LmnConfig *cfg;
    LmnBackend *backend;
    LmnModel *model;
    LmnDataset *ds;
} Fixture;

/* A model initialised from @seed by lmn_model_init_params, prepared for BATCH samples. */
static void fixture_setup(Fixture *f, int seed)
{
    g_autoptr(GError) error = NULL;
    f->cfg = make_config(seed, "", &error);
    g_assert_no_error(error);
    f->backend = lmn_backend_new(registry, "cpu", NULL, NULL, &error);
    g_assert_no_error(error);
    f->ds = lmn_dataset_open(lmn_config_get_train(f->cfg)->train_data, &error);
    g_assert_no_error(error);
    LmnTensorInfo target = {lmn_shape_make(0), LMN_DTYPE_I32};
    f->model = lmn_model_new(f->cfg, registry, f->backend, &target, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_init_params(f->model, (guint64) seed, &error));
    g_assert_true(lmn_model_prepare(f->model, BATCH, &error));
    g_assert_no_error(error);
}

static void fixture_teardown(Fixture *f)
{
    lmn_model_free(f->model);
    lmn_dataset_free(f->ds);
    lmn_backend_unref(f->backend);
    lmn_config_free(f->cfg);
}

static float *read_tensor(LmnTensor *t)
{
    g_autoptr(GError) error = NULL;
    float *h = g_malloc(lmn_tensor_nbytes(t));
    g_assert_true(lmn_tensor_read(t, h, lmn_tensor_nbytes(t), &error));
    g_assert_no_error(error);
    return h;
}

static float *read_params(LmnModel *m)
{
    return read_tensor(lmn_model_get_params(m));
}

static const char *weighted[] = {"conv", "fc1", "fc2"};

static guint layer_index(LmnModel *m, const char *name)
{
    for (guint i = 0; i < lmn_model_get_n_layers(m); i++)
        if (g_str_equal(lmn_layer_get_name(lmn_model_get_layer(m, i)), name))
            return i;
    g_assert_not_reached();
}

/* Parameter @pname of layer @lname. */
static LmnTensor *param(LmnModel *m, const char *lname, const char *pname)
{
    LmnLayer *l = lmn_model_get_layer(m, layer_index(m, lname));
    for (guint p = 0; p < lmn_layer_get_n_params(l); p++)
        if (g_str_equal(lmn_layer_get_param_name(l, p), pname))
            return lmn_layer_get_param(l, p);
    g_assert_not_reached();
}

/* Loads the LSUV batch chosen independently of the library's code: the first BATCH indices of
 * the documented Philox permutation, in any order (a variance does not depend on it). */
static void load_lsuv_batch(LmnModel *m, const LmnDataset *ds, guint64 seed)
{
    guint32 order[N_SAMPLES];
    for (guint32 i = 0; i < N_SAMPLES; i++)
        order[i] = i;
    LmnRandom r;
    lmn_random_init(&r, seed, LMN_STREAM(LMN_STREAM_INIT, G_MAXUINT32));
    lmn_random_shuffle(&r, order, N_SAMPLES);
    LmnTensor *x, *y;
    lmn_model_set_batch(m, BATCH, &x, &y);
    g_autofree float *xh = g_malloc(lmn_tensor_nbytes(x));
    g_autofree gint32 *yh = g_malloc(lmn_tensor_nbytes(y));
    lmn_dataset_gather(ds, order, BATCH, xh, yh);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_tensor_write(x, xh, lmn_tensor_nbytes(x), &error));
    g_assert_true(lmn_tensor_write(y, yh, lmn_tensor_nbytes(y), &error));
    g_assert_no_error(error);
}

/* The population variance of layer @name's output after an evaluation-mode forward. */
static double output_variance(LmnModel *m, const char *name)
{
    LmnTensor *out = lmn_model_get_layer_output(m, layer_index(m, name));
    g_assert_nonnull(out);
    g_autofree float *h = read_tensor(out);
    gint64 n = lmn_tensor_numel(out);
    LmnLayer *l = lmn_model_get_layer(m, layer_index(m, name));
    g_assert_cmpint(n, ==, BATCH * lmn_shape_numel(&lmn_layer_get_output_info(l)->shape));
    double s = 0, ss = 0;
    for (gint64 i = 0; i < n; i++) {
        s += h[i];
        ss += (double) h[i] * h[i];
    }
    double mean = s / n;
    return ss / n - mean * mean;
}

/* W reshaped to [rows, cols] (rows = dim 0): the largest |(W W^T or W^T W) - c^2 I| entry, the
 * product taken over the smaller dimension so it is the identity for an orthogonal W. */
static double orthogonality_error(LmnTensor *w, double c)
{
    g_autofree float *h = read_tensor(w);
    gint64 rows = w->shape.dims[0], cols = lmn_tensor_numel(w) / rows;
    gboolean by_rows = rows <= cols;
    gint64 k = by_rows ? rows : cols, len = by_rows ? cols : rows;
    double worst = 0;
    for (gint64 a = 0; a < k; a++)
        for (gint64 b = 0; b < k; b++) {
            double dot = 0;
            for (gint64 t = 0; t < len; t++)
                dot += by_rows ? (double) h[a * cols + t] * h[b * cols + t]
                               : (double) h[t * cols + a] * h[t * cols + b];
            worst = MAX(worst, fabs(dot - (a == b ? c * c : 0.0)));
        }
    return worst;
}

static void test_unit_variance(void)
{
    Fixture f;
    fixture_setup(&f, 3);
    g_autoptr(GError) error = NULL;

    /* Plain orthogonal weights (max_iter 0) leave the first layer's variance far from 1, so the
     * check below can fail. */
    g_assert_true(lmn_model_lsuv(f.model, f.ds, BATCH, 0.1, 0, 3, &error));
    g_assert_no_error(error);
    load_lsuv_batch(f.model, f.ds, 3);
    lmn_model_forward(f.model, FALSE, 0, 3);
    g_assert_cmpfloat(fabs(output_variance(f.model, "conv") - 1.0), >, 1.0);

    const double tols[] = {0.1, 0.01};
    for (guint t = 0; t < G_N_ELEMENTS(tols); t++) {
        g_assert_true(lmn_model_lsuv(f.model, f.ds, BATCH, tols[t], 10, 3, &error));
        g_assert_no_error(error);
        load_lsuv_batch(f.model, f.ds, 3);
        lmn_model_forward(f.model, FALSE, 0, 3);
        for (guint i = 0; i < G_N_ELEMENTS(weighted); i++) {
            double var = output_variance(f.model, weighted[i]);
            if (fabs(var - 1.0) >= tols[t])
                g_error("tol %g: %s output variance %g", tols[t], weighted[i], var);
        }
    }
    fixture_teardown(&f);
}

static void test_orthogonal(void)
{
    Fixture f;
    fixture_setup(&f, 5);
    g_autoptr(GError) error = NULL;
    g_autofree float *bias_before = read_tensor(param(f.model, "fc1", "bias"));
    g_autofree float *conv_bias_before = read_tensor(param(f.model, "conv", "bias"));

    g_assert_true(lmn_model_lsuv(f.model, f.ds, BATCH, 0.1, 0, 5, &error));
    g_assert_no_error(error);
    for (guint i = 0; i < G_N_ELEMENTS(weighted); i++) {
        double e = orthogonality_error(param(f.model, weighted[i], "weight"), 1.0);
        if (e > 1e-5)
            g_error("%s: max |W W^T - I| = %g", weighted[i], e);
    }
    /* Biases are kept, bit for bit. */
    g_autofree float *bias_after = read_tensor(param(f.model, "fc1", "bias"));
    g_autofree float *conv_bias_after = read_tensor(param(f.model, "conv", "bias"));
    g_assert_cmpmem(bias_before, 8 * sizeof(float), bias_after, 8 * sizeof(float));
    g_assert_cmpmem(conv_bias_before, 4 * sizeof(float), conv_bias_after, 4 * sizeof(float));

    /* After scaling, each weight is a multiple c of an orthogonal matrix: W W^T = c^2 I. */
    g_assert_true(lmn_model_lsuv(f.model, f.ds, BATCH, 0.1, 10, 5, &error));
    g_assert_no_error(error);
    for (guint i = 0; i < G_N_ELEMENTS(weighted); i++) {
        LmnTensor *w = param(f.model, weighted[i], "weight");
        g_autofree float *h = read_tensor(w);
        gint64 rows = w->shape.dims[0], cols = lmn_tensor_numel(w) / rows;
        double row0 = 0;
        for (gint64 t = 0; t < cols; t++)
            row0 += (double) h[t] * h[t];
        double c = rows <= cols ? sqrt(row0) : 0;
        if (rows > cols) {
            for (gint64 t = 0; t < rows; t++)
                c += (double) h[t * cols] * h[t * cols];
            c = sqrt(c);
        }
        g_assert_cmpfloat(fabs(c - 1.0), >, 1e-3); /* it was rescaled */
        double e = orthogonality_error(w, c);
        if (e > 1e-4 * c * c)
            g_error("%s: max |W W^T - c^2 I| = %g (c = %g)", weighted[i], e, c);
    }
    fixture_teardown(&f);
}

static void test_deterministic(void)
{
    Fixture a, b, c;
    fixture_setup(&a, 11);
    fixture_setup(&b, 11);
    fixture_setup(&c, 12);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_model_lsuv(a.model, a.ds, BATCH, 0.1, 10, 11, &error));
    g_assert_true(lmn_model_lsuv(b.model, b.ds, BATCH, 0.1, 10, 11, &error));
    g_assert_true(lmn_model_lsuv(c.model, c.ds, BATCH, 0.1, 10, 12, &error));
    g_assert_no_error(error);
    gsize nbytes = lmn_tensor_nbytes(lmn_model_get_params(a.model));
    g_autofree float *pa = read_params(a.model);
    g_autofree float *pb = read_params(b.model);
    g_autofree float *pc = read_params(c.model);
    g_assert_cmpmem(pa, nbytes, pb, nbytes);
    g_assert_true(memcmp(pa, pc, nbytes) != 0);
    fixture_teardown(&a);
    fixture_teardown(&b);
    fixture_teardown(&c);
}

/* [train] lsuv = true makes lmn_trainer_new run lmn_model_lsuv on a training batch; without it
 * the weights are the plain initialisation. */
static void test_trainer(void)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *dir = g_dir_make_tmp("lamina-lsuv-XXXXXX", &error);
    g_assert_no_error(error);
    LmnTrainerOptions opts = {.output_dir = dir, .quiet = TRUE};

    Fixture ref;
    fixture_setup(&ref, 4);
    g_assert_true(lmn_model_lsuv(ref.model, ref.ds, BATCH, 0.05, 7, 4, &error));
    g_assert_no_error(error);
    g_autofree float *want = read_params(ref.model);
    gsize nbytes = lmn_tensor_nbytes(lmn_model_get_params(ref.model));

    LmnConfig *cfg = make_config(4, "lsuv = true\nlsuv_tol = 0.05\nlsuv_max_iter = 7\n", &error);
    g_assert_no_error(error);
    LmnTrainer *t = lmn_trainer_new(cfg, registry, &opts, &error);
    g_assert_no_error(error);
    g_autofree float *got = read_params(lmn_trainer_get_model(t));
    g_assert_cmpmem(got, nbytes, want, nbytes);
    lmn_trainer_free(t);
    lmn_config_free(cfg);

    Fixture plain;
    fixture_setup(&plain, 4);
    g_autofree float *init = read_params(plain.model);
    cfg = make_config(4, "", &error);
    g_assert_no_error(error);
    t = lmn_trainer_new(cfg, registry, &opts, &error);
    g_assert_no_error(error);
    g_autofree float *got_plain = read_params(lmn_trainer_get_model(t));
    g_assert_cmpmem(got_plain, nbytes, init, nbytes);
    g_assert_true(memcmp(init, want, nbytes) != 0);
    lmn_trainer_free(t);
    lmn_config_free(cfg);

    fixture_teardown(&ref);
    fixture_teardown(&plain);
    e2e_remove_tree(dir);
}

static void expect_config_error(const char *extra, const char *key)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = make_config(1, extra, &error);
    g_assert_null(cfg);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
    const char *frags[] = {"lsuv.ini", "[train]", key};
    for (guint i = 0; i < G_N_ELEMENTS(frags); i++)
        if (!strstr(error->message, frags[i]))
            g_error("expected '%s' in: %s", frags[i], error->message);
}

static void test_config_errors(void)
{
    expect_config_error("lsuv = true\nlsuv_tol = 0\n", "lsuv_tol");
    expect_config_error("lsuv_tol = -0.5\n", "lsuv_tol");
    expect_config_error("lsuv_max_iter = -1\n", "lsuv_max_iter");
    expect_config_error("lsuv = maybe\n", "lsuv");

    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = make_config(1, "", &error);
    g_assert_no_error(error);
    const LmnTrainConfig *tc = lmn_config_get_train(cfg);
    g_assert_false(tc->lsuv);
    g_assert_cmpfloat(tc->lsuv_tol, ==, 0.1);
    g_assert_cmpint(tc->lsuv_max_iter, ==, 10);
    lmn_config_free(cfg);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    registry = lmn_registry_new();
    g_autofree char *dir = g_dir_make_tmp("lamina-lsuv-data-XXXXXX", NULL);
    data_path = g_build_filename(dir, "data.h5", NULL);
    write_data(data_path);

    g_test_add_func("/lsuv/unit-variance", test_unit_variance);
    g_test_add_func("/lsuv/orthogonal", test_orthogonal);
    g_test_add_func("/lsuv/deterministic", test_deterministic);
    g_test_add_func("/lsuv/trainer", test_trainer);
    g_test_add_func("/lsuv/config-errors", test_config_errors);
    int rc = g_test_run();

    e2e_remove_tree(dir);
    g_free(data_path);
    lmn_registry_free(registry);
    return rc;
}
