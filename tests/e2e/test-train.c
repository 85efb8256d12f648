/* End-to-end tests of the `lamina` command: training, checkpoints, evaluation, --init, and the
 * messages users see for bad input.  The data is synthetic and written here with the HDF5 C API,
 * so the expected results are known: four well-separated Gaussian blobs in 2-D that a small MLP
 * must classify almost perfectly. */
#include <glib/gstdio.h>
#include <hdf5.h>
#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

static const char *lamina_exe(void)
{
    const char *p = g_getenv("LMN_TEST_LAMINA");
    g_assert_nonnull(p);
    return p;
}

typedef struct {
    char *dir;
    char *data; /* DIR/blobs.h5 */
} Fixture;

/* Blob k has centre (3 cos(k pi/2), 3 sin(k pi/2)) and unit variance: the Bayes error is about
 * 1.7 %, so a trained classifier must reach well over 90 %. */
static void write_blobs(const char *path, const char *split, int n, guint64 seed)
{
    hid_t f = g_file_test(path, G_FILE_TEST_EXISTS)
                  ? H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT)
                  : H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    hid_t g = H5Gcreate2(f, split, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    float *x = g_new(float, 2 * n);
    gint32 *y = g_new(gint32, n);
    LmnRandom r;
    lmn_random_init(&r, seed, 7);
    for (int i = 0; i < n; i++) {
        int k = (int) lmn_random_below(&r, 4);
        y[i] = k;
        x[2 * i] = (float) (3 * cos(k * G_PI / 2) + lmn_random_normal(&r));
        x[2 * i + 1] = (float) (3 * sin(k * G_PI / 2) + lmn_random_normal(&r));
    }
    hsize_t xd[2] = {(hsize_t) n, 2}, yd[1] = {(hsize_t) n};
    hid_t xs = H5Screate_simple(2, xd, NULL), ys = H5Screate_simple(1, yd, NULL);
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

static const char *config_template = "[model]\n"
                                     "input = 2\n"
                                     "[layer fc1]\n"
                                     "type = dense\n"
                                     "units = 32\n"
                                     "[layer act1]\n"
                                     "type = tanh\n"
                                     "[layer fc2]\n"
                                     "type = dense\n"
                                     "units = 4\n"
                                     "[layer loss]\n"
                                     "type = softmax_cross_entropy\n"
                                     "[optimizer]\n"
                                     "type = sgd\n"
                                     "lr = 0.1\n"
                                     "momentum = 0.9\n"
                                     "[train]\n"
                                     "epochs = 4\n"
                                     "batch_size = 32\n"
                                     "seed = 3\n"
                                     "backend = cpu\n"
                                     "[data]\n"
                                     "train = %s:/train\n"
                                     "test = %s:/test\n";

static void fixture_setup(Fixture *fx, gconstpointer unused)
{
    fx->dir = g_dir_make_tmp("lamina-e2e-XXXXXX", NULL);
    g_assert_nonnull(fx->dir);
    fx->data = g_build_filename(fx->dir, "blobs.h5", NULL);
    write_blobs(fx->data, "/train", 2000, 1);
    write_blobs(fx->data, "/test", 500, 2);
}

static void remove_tree(const char *path)
{
    if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
        GDir *d = g_dir_open(path, 0, NULL);
        const char *name;
        while (d && (name = g_dir_read_name(d))) {
            g_autofree char *child = g_build_filename(path, name, NULL);
            remove_tree(child);
        }
        if (d)
            g_dir_close(d);
        g_rmdir(path);
    } else {
        g_unlink(path);
    }
}

static void fixture_teardown(Fixture *fx, gconstpointer unused)
{
    remove_tree(fx->dir);
    g_free(fx->dir);
    g_free(fx->data);
}

static char *write_config(Fixture *fx, const char *name, const char *extra)
{
    g_autofree char *text = g_strdup_printf(config_template, fx->data, fx->data);
    g_autofree char *full = g_strconcat(text, extra ? extra : "", NULL);
    char *path = g_build_filename(fx->dir, name, NULL);
    g_assert_true(g_file_set_contents(path, full, -1, NULL));
    return path;
}

/* Runs lamina with @args (NULL-terminated); returns the exit status. */
static int run_lamina(char **out, char **err, const char *first, ...)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_ptr_array_add(argv, (gpointer) lamina_exe());
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *))
        g_ptr_array_add(argv, (gpointer) a);
    va_end(ap);
    g_ptr_array_add(argv, NULL);
    int status = 0;
    g_autoptr(GError) error = NULL;
    g_autofree char *o = NULL, *e = NULL;
    gboolean ok = g_spawn_sync(NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &o,
                               &e, &status, &error);
    g_assert_no_error(error);
    g_assert_true(ok);
    if (g_test_verbose())
        g_printerr("$ lamina %s\n%s%s", first, o, e);
    if (out)
        *out = g_steal_pointer(&o);
    if (err)
        *err = g_steal_pointer(&e);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static double json_number(const char *json, const char *key)
{
    g_autofree char *pat = g_strdup_printf("\"%s\": ", key);
    const char *p = strstr(json, pat);
    g_assert_nonnull(p);
    return g_ascii_strtod(p + strlen(pat), NULL);
}

static void test_train_eval(Fixture *fx, gconstpointer unused)
{
    g_autofree char *cfg = write_config(fx, "blobs.ini", NULL);
    g_autofree char *outdir = g_build_filename(fx->dir, "run", NULL);
    g_autofree char *out = NULL, *err = NULL;
    int rc = run_lamina(&out, &err, "train", cfg, "--output", outdir, NULL);
    g_assert_cmpint(rc, ==, 0);
    g_assert_nonnull(strstr(out, "epoch 4/4"));
    g_assert_nonnull(strstr(out, "samples/s"));

    /* metrics.csv: a header and one row per epoch. */
    g_autofree char *csv_path = g_build_filename(outdir, "metrics.csv", NULL);
    g_autofree char *csv = NULL;
    g_assert_true(g_file_get_contents(csv_path, &csv, NULL, NULL));
    g_auto(GStrv) lines = g_strsplit(g_strstrip(csv), "\n", -1);
    g_assert_cmpuint(g_strv_length(lines), ==, 5);
    g_assert_true(g_str_has_prefix(lines[0], "epoch,step,lr,train_loss,train_accuracy"));
    g_assert_true(g_str_has_prefix(lines[4], "4,252,"));

    g_autofree char *ckpt = g_build_filename(outdir, "final.h5", NULL);
    g_autofree char *spec = g_strdup_printf("%s:/test", fx->data);
    g_autofree char *json = NULL;
    rc = run_lamina(&json, NULL, "eval", ckpt, "--data", spec, "--json", "--backend", "cpu",
                    NULL);
    g_assert_cmpint(rc, ==, 0);
    double acc = json_number(json, "accuracy"), loss = json_number(json, "loss");
    g_assert_cmpfloat(acc, >, 0.93);
    g_assert_cmpfloat(loss, <, 0.25);

    /* The checkpoint holds PyTorch-shaped weights and the config. */
    hid_t f = H5Fopen(ckpt, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    hid_t ds = H5Dopen2(f, "/model/fc1/weight", H5P_DEFAULT);
    g_assert_cmpint(ds, >=, 0);
    hid_t sp = H5Dget_space(ds);
    hsize_t dims[2];
    g_assert_cmpint(H5Sget_simple_extent_dims(sp, dims, NULL), ==, 2);
    g_assert_cmpuint(dims[0], ==, 32);
    g_assert_cmpuint(dims[1], ==, 2);
    H5Sclose(sp);
    H5Dclose(ds);
    g_assert_cmpint(H5Lexists(f, "/optimizer/state/fc2/bias/momentum_buffer", H5P_DEFAULT), >,
                    0);
    g_assert_cmpint(H5Lexists(f, "/config", H5P_DEFAULT), >, 0);
    H5Fclose(f);
}

/* --init from the trained weights: evaluating right away gives the same loss as the source. */
static void test_init_and_max_steps(Fixture *fx, gconstpointer unused)
{
    g_autofree char *cfg = write_config(fx, "blobs.ini", NULL);
    g_autofree char *run1 = g_build_filename(fx->dir, "run1", NULL);
    g_autofree char *run2 = g_build_filename(fx->dir, "run2", NULL);
    g_assert_cmpint(run_lamina(NULL, NULL, "train", cfg, "--output", run1, "--quiet", NULL), ==,
                    0);
    g_autofree char *ckpt1 = g_build_filename(run1, "final.h5", NULL);
    /* lr 0 for 3 steps: weights stay those of --init. */
    g_assert_cmpint(run_lamina(NULL, NULL, "train", cfg, "--output", run2, "--init", ckpt1,
                               "--lr", "0", "--max-steps", "3", "--quiet", NULL),
                    ==, 0);
    g_autofree char *ckpt2 = g_build_filename(run2, "final.h5", NULL);
    g_autofree char *spec = g_strdup_printf("%s:/test", fx->data);
    g_autofree char *j1 = NULL, *j2 = NULL;
    g_assert_cmpint(run_lamina(&j1, NULL, "eval", ckpt1, "--data", spec, "--json", NULL), ==, 0);
    g_assert_cmpint(run_lamina(&j2, NULL, "eval", ckpt2, "--data", spec, "--json", NULL), ==, 0);
    g_assert_cmpfloat(json_number(j1, "loss"), ==, json_number(j2, "loss"));

    /* max_steps = 3 stops after three optimizer steps. */
    hid_t f = H5Fopen(ckpt2, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "/train", H5P_DEFAULT);
    hid_t a = H5Aopen(g, "step", H5P_DEFAULT);
    gint64 step = 0;
    H5Aread(a, H5T_NATIVE_INT64, &step);
    g_assert_cmpint(step, ==, 3);
    H5Aclose(a);
    H5Gclose(g);
    H5Fclose(f);
}

/* Weights written by another tool (h5py from a PyTorch state_dict) load with --init. */
static void test_init_foreign_weights(Fixture *fx, gconstpointer unused)
{
    g_autofree char *fixture =
        g_build_filename(g_getenv("LMN_TEST_FIXTURES"), "h5py-blobs-weights.h5", NULL);
    g_autofree char *cfg = write_config(fx, "blobs.ini", NULL);
    g_autofree char *run = g_build_filename(fx->dir, "run", NULL);
    g_autofree char *err = NULL;
    int rc = run_lamina(NULL, &err, "train", cfg, "--output", run, "--init", fixture, "--lr", "0",
                        "--max-steps", "1", "--quiet", NULL);
    g_assert_cmpint(rc, ==, 0);
    g_autofree char *ckpt = g_build_filename(run, "final.h5", NULL);
    hid_t f = H5Fopen(ckpt, H5F_ACC_RDONLY, H5P_DEFAULT);
    float w[2];
    hid_t ds = H5Dopen2(f, "/model/fc2/bias", H5P_DEFAULT);
    float bias[4];
    H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, bias);
    H5Dclose(ds);
    H5Fclose(f);
    /* The fixture script sets fc2.bias to [0.5, -0.25, 0.125, 1.0]. */
    g_assert_cmpfloat(bias[0], ==, 0.5f);
    g_assert_cmpfloat(bias[1], ==, -0.25f);
    g_assert_cmpfloat(bias[2], ==, 0.125f);
    g_assert_cmpfloat(bias[3], ==, 1.0f);
    (void) w;
}

static void expect_failure(Fixture *fx, const char *extra, const char *const *fragments)
{
    g_autofree char *cfg = write_config(fx, "bad.ini", extra);
    g_autofree char *run = g_build_filename(fx->dir, "bad-run", NULL);
    g_autofree char *err = NULL;
    int rc = run_lamina(NULL, &err, "train", cfg, "--output", run, NULL);
    g_assert_cmpint(rc, ==, 1);
    for (guint i = 0; fragments[i]; i++) {
        if (!strstr(err, fragments[i]))
            g_error("expected '%s' in: %s", fragments[i], err);
    }
}

static void test_bad_configs(Fixture *fx, gconstpointer unused)
{
    expect_failure(fx, "[layer extra]\ntype = dense\nunits = 3\n",
                   (const char *const[]){"must be the last layer", "[layer loss]", NULL});
    expect_failure(fx, "[optimiser]\nlr = 1\n",
                   (const char *const[]){"unknown group [optimiser]", "did you mean [optimizer]",
                                         NULL});
    g_autofree char *cfg = write_config(fx, "blobs.ini", NULL);
    g_autofree char *run = g_build_filename(fx->dir, "r", NULL);
    g_autofree char *err = NULL;
    g_assert_cmpint(run_lamina(NULL, &err, "train", cfg, "--output", run, "--set",
                               "optimizer.momentun=0.5", NULL),
                    ==, 1);
    g_assert_nonnull(strstr(err, "momentun"));
    g_assert_nonnull(strstr(err, "momentum"));
    g_assert_nonnull(strstr(err, "[optimizer]"));
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(run_lamina(NULL, &err, "train", cfg, "--output", run, "--set", "fc9.units=3",
                               NULL),
                    ==, 1);
    g_assert_nonnull(strstr(err, "fc9"));
    g_assert_nonnull(strstr(err, "fc1"));
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(
        run_lamina(NULL, &err, "train", cfg, "--output", run, "--optimizer", "sgdd", NULL), ==, 1);
    g_assert_nonnull(strstr(err, "sgdd"));
    g_assert_nonnull(strstr(err, "sgd"));
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(run_lamina(NULL, &err, "train", cfg, "--output", run, "--set",
                               "fc1.units=-4", NULL),
                    ==, 1);
    g_assert_nonnull(strstr(err, "units"));
    g_assert_nonnull(strstr(err, "[layer fc1]"));
    /* A model whose input does not match the data names both shapes. */
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(
        run_lamina(NULL, &err, "train", cfg, "--output", run, "--set", "model.input=3", NULL), ==,
        1);
    g_assert_nonnull(strstr(err, "blobs.h5"));
}

/* [train] threads and LAMINA_NUM_THREADS size the cpu backend (its description in the start
 * line shows the count), the key wins over the variable, a bad variable is an error naming it,
 * and two runs at one thread count give bit-identical weights. */
static void test_threads(Fixture *fx, gconstpointer unused)
{
    g_autofree char *cfg = write_config(fx, "blobs.ini", NULL);
    g_autofree char *run = g_build_filename(fx->dir, "threads", NULL);
    g_autofree char *out = NULL, *err = NULL;
    g_assert_cmpint(run_lamina(&out, NULL, "train", cfg, "--max-steps", "20", "--output", run,
                               "--set", "train.threads=1", NULL),
                    ==, 0);
    g_assert_nonnull(strstr(out, "on cpu: 1 thread,"));
    g_clear_pointer(&out, g_free);
    g_setenv("LAMINA_NUM_THREADS", "3", TRUE);
    g_assert_cmpint(
        run_lamina(&out, NULL, "train", cfg, "--max-steps", "20", "--output", run, NULL), ==, 0);
    g_assert_nonnull(strstr(out, "on cpu: 3 threads,"));
    g_clear_pointer(&out, g_free);
    g_assert_cmpint(run_lamina(&out, NULL, "train", cfg, "--max-steps", "20", "--output", run,
                               "--set", "train.threads=2", NULL),
                    ==, 0);
    g_assert_nonnull(strstr(out, "on cpu: 2 threads,"));
    g_setenv("LAMINA_NUM_THREADS", "many", TRUE);
    g_assert_cmpint(
        run_lamina(NULL, &err, "train", cfg, "--max-steps", "20", "--output", run, NULL), ==, 1);
    g_unsetenv("LAMINA_NUM_THREADS");
    g_assert_nonnull(strstr(err, "LAMINA_NUM_THREADS = 'many'"));
    g_assert_nonnull(strstr(err, "whole number"));
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(run_lamina(NULL, &err, "train", cfg, "--max-steps", "20", "--output", run,
                               "--set", "train.threads=-1", NULL),
                    ==, 1);
    g_assert_nonnull(strstr(err, "threads"));
    g_assert_nonnull(strstr(err, "[train]"));

    /* Same seed, same thread count: the same weights, bit for bit. */
    g_autofree char *spec = g_strdup_printf("%s:/test", fx->data);
    g_autofree char *ckpt = g_build_filename(run, "final.h5", NULL);
    double loss[2];
    for (guint i = 0; i < 2; i++) {
        g_autofree char *json = NULL;
        g_assert_cmpint(run_lamina(NULL, NULL, "train", cfg, "--max-steps", "20", "--output", run,
                                   "--quiet", "--set", "train.threads=2", NULL),
                        ==, 0);
        g_assert_cmpint(run_lamina(&json, NULL, "eval", ckpt, "--data", spec, "--json", NULL), ==,
                        0);
        loss[i] = json_number(json, "loss");
    }
    g_assert_cmpfloat(loss[0], ==, loss[1]);
}

/* Every element of float dataset @path in the HDF5 file @file (freed by the caller). */
static float *read_floats(const char *file, const char *path, gsize *n_out)
{
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    g_assert_cmpint(d, >=, 0);
    hid_t sp = H5Dget_space(d);
    const hssize_t n = H5Sget_simple_extent_npoints(sp);
    g_assert_cmpint(n, >, 0);
    float *v = g_new(float, n);
    g_assert_cmpint(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), >=, 0);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    *n_out = (gsize) n;
    return v;
}

/* Trains @model_text (the [model] and [layer] groups) with LAMINA_FUSE=0 and 1 at 1 and 2
 * threads; the parameters named in @params must come out bit-identical.  Returns: the config. */
static char *check_fusion(Fixture *fx, const char *name, const char *model_text,
                          const char *const *params, guint n_params)
{
    g_autofree char *text = g_strdup_printf("%s[layer loss]\ntype = softmax_cross_entropy\n"
                                            "[optimizer]\ntype = adam\nlr = 0.01\n"
                                            "[train]\nepochs = 2\nbatch_size = 96\nseed = 5\n"
                                            "backend = cpu\n[data]\ntrain = %s:/train\n",
                                            model_text, fx->data);
    g_autofree char *file = g_strdup_printf("%s.ini", name);
    char *cfg = g_build_filename(fx->dir, file, NULL);
    g_assert_true(g_file_set_contents(cfg, text, -1, NULL));
    for (guint t = 1; t <= 2; t++) {
        g_autofree char *threads = g_strdup_printf("train.threads=%u", t);
        float *w[2][8];
        gsize n[8];
        g_assert_cmpuint(n_params, <=, 8);
        for (guint fuse = 0; fuse < 2; fuse++) {
            g_autofree char *run = g_strdup_printf("%s/%s-%u-%u", fx->dir, name, t, fuse);
            g_setenv("LAMINA_FUSE", fuse ? "1" : "0", TRUE);
            g_assert_cmpint(run_lamina(NULL, NULL, "train", cfg, "--output", run, "--quiet",
                                       "--set", threads, NULL),
                            ==, 0);
            g_unsetenv("LAMINA_FUSE");
            g_autofree char *ckpt = g_build_filename(run, "final.h5", NULL);
            for (guint p = 0; p < n_params; p++)
                w[fuse][p] = read_floats(ckpt, params[p], &n[p]);
        }
        for (guint p = 0; p < n_params; p++) {
            g_assert_cmpmem(w[0][p], n[p] * sizeof(float), w[1][p], n[p] * sizeof(float));
            g_free(w[0][p]);
            g_free(w[1][p]);
        }
    }
    return cfg;
}

/* Fusion (a dense layer computing the activation after it in its GEMM's epilogue, and the
 * activation's backward in its input-gradient GEMM's) changes no number: training with it and
 * with LAMINA_FUSE=0 gives the same weights bit for bit, through relu, leaky_relu (its slope),
 * tanh and sigmoid, at 1 and 2 threads, with a partial last batch.  A bad LAMINA_FUSE is an
 * error naming it. */
static void test_fusion(Fixture *fx, gconstpointer unused)
{
    /* Every activation fused: forward into the dense layer before it, backward into the one
     * after it. */
    const char *params[] = {"/model/fc1/weight", "/model/fc1/bias", "/model/fc2/weight",
                            "/model/fc3/bias", "/model/fc4/weight"};
    g_autofree char *cfg =
        check_fusion(fx, "fusion",
                     "[model]\ninput = 2\n"
                     "[layer fc1]\ntype = dense\nunits = 48\n[layer a1]\ntype = relu\n"
                     "[layer fc2]\ntype = dense\nunits = 40\n[layer a2]\ntype = leaky_relu\n"
                     "negative_slope = 0.2\n"
                     "[layer fc3]\ntype = dense\nunits = 36\n[layer a3]\ntype = tanh\n"
                     "[layer fc4]\ntype = dense\nunits = 4\n",
                     params, G_N_ELEMENTS(params));
    /* The cases fusion leaves alone, in part or whole: a relu on the data (its gradient is
     * never needed), a tanh with an activity penalty (forward fused, backward not: the penalty
     * adds to its gradient), a relu whose input also feeds an add (neither), and a sigmoid
     * after that add (backward only: its derivative reads its output). */
    const char *params2[] = {"/model/fc1/weight", "/model/fc2/weight", "/model/fc2/bias",
                             "/model/fc3/weight", "/model/fc4/weight", "/model/fc4/bias"};
    g_autofree char *cfg2 =
        check_fusion(fx, "fusion-partial",
                     "[model]\ninput = 2\n[layer a0]\ntype = relu\n"
                     "[layer fc1]\ntype = dense\nunits = 32\n"
                     "[layer a1]\ntype = tanh\nactivity_l2 = 0.01\n"
                     "[layer fc2]\ntype = dense\nunits = 32\n[layer a2]\ntype = relu\n"
                     "[layer fc3]\ntype = dense\nunits = 32\n"
                     "[layer sum]\ntype = add\ninput = fc3, fc2\n[layer a3]\ntype = sigmoid\n"
                     "[layer fc4]\ntype = dense\nunits = 4\n",
                     params2, G_N_ELEMENTS(params2));
    g_autofree char *err = NULL;
    g_autofree char *run = g_build_filename(fx->dir, "fusion-bad", NULL);
    g_setenv("LAMINA_FUSE", "yes", TRUE);
    g_assert_cmpint(run_lamina(NULL, &err, "train", cfg, "--output", run, NULL), ==, 1);
    g_unsetenv("LAMINA_FUSE");
    g_assert_nonnull(strstr(err, "LAMINA_FUSE is 'yes'"));
}

static void test_unknown_command(void)
{
    g_autofree char *err = NULL;
    g_assert_cmpint(run_lamina(NULL, &err, "trian", NULL), ==, 2);
    g_assert_nonnull(strstr(err, "did you mean 'train'"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/e2e/train/blobs-train-eval", Fixture, NULL, fixture_setup, test_train_eval,
               fixture_teardown);
    g_test_add("/e2e/train/init-and-max-steps", Fixture, NULL, fixture_setup,
               test_init_and_max_steps, fixture_teardown);
    g_test_add("/e2e/train/init-foreign-weights", Fixture, NULL, fixture_setup,
               test_init_foreign_weights, fixture_teardown);
    g_test_add("/e2e/train/bad-configs", Fixture, NULL, fixture_setup, test_bad_configs,
               fixture_teardown);
    g_test_add("/e2e/train/threads", Fixture, NULL, fixture_setup, test_threads, fixture_teardown);
    g_test_add("/e2e/train/fusion", Fixture, NULL, fixture_setup, test_fusion, fixture_teardown);
    g_test_add_func("/e2e/cli/unknown-command", test_unknown_command);
    return g_test_run();
}
