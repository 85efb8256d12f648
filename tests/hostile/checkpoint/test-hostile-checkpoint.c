/* Hostile checkpoints and non-finite values, run through the real `lamina`.
 *
 * Each case trains a small model on Gaussian blobs with `lamina train` to get a genuine
 * checkpoint, damages a copy of it with the HDF5 C API the way a crafted or corrupt file would
 * be, and runs `lamina` on it: the run must end with a non-zero exit status (not a signal, which
 * is how a sanitizer or a wild write ends), a message naming the file, the place and what to
 * do, and every file written before left as it was.
 */
#include "../../e2e/e2e-util.h"

#include <glib/gstdio.h>
#include <hdf5.h>
#include <math.h>
#include <string.h>

static char *tmp_dir;

/* The model every case trains: 2-D blobs, a hidden relu layer, 4 classes, SGD with momentum (so
 * the checkpoint has optimizer slots). */
static char *write_config(const char *name, const char *data, const char *extra)
{
    g_autofree char *path = g_build_filename(tmp_dir, name, NULL);
    g_autofree char *text = g_strdup_printf(
        "[model]\ninput = 2\n\n"
        "[layer fc1]\ntype = dense\nunits = 8\n\n[layer act]\ntype = relu\n\n"
        "[layer fc]\ntype = dense\nunits = 4\n\n[layer loss]\ntype = softmax_cross_entropy\n\n"
        "[optimizer]\ntype = sgd\nlr = 0.01\nmomentum = 0.9\n\n"
        "[train]\nepochs = 1\nbatch_size = 16\nseed = 1\n%s\n"
        "[data]\ntrain = %s:/train\n",
        extra != NULL ? extra : "", data);
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    return g_steal_pointer(&path);
}

/* Runs lamina with the NULL-terminated arguments and checks it failed cleanly with every one of
 * @keywords (NULL-terminated, after the arguments' NULL) in its stderr. */
static void expect_failure(const char *name, const char *const *args, const char *const *keywords)
{
    g_autofree char *out = NULL, *err = NULL;
    int status = e2e_run_lamina(&out, &err, args[0], args[1], args[2], args[3], args[4], args[5],
                                args[6], args[7], NULL);
    g_test_message("%s: exit status %d, stderr:\n%s", name, status, err);
    /* -1: killed by a signal (a crash, or a sanitizer's abort). */
    g_assert_cmpint(status, >, 0);
    for (guint i = 0; keywords[i] != NULL; i++)
        if (strstr(err, keywords[i]) == NULL)
            g_error("%s: the message lacks \"%s\":\n%s", name, keywords[i], err);
    g_assert_null(strstr(err, "AddressSanitizer"));
    g_assert_null(strstr(err, "runtime error"));
}

typedef struct {
    char *data;   /* the blobs */
    char *config; /* write_config(data) */
    char *out;    /* the first run's output directory */
    char *final;  /* out/final.h5 */
} Run;

static void run_clear(Run *r)
{
    g_free(r->data);
    g_free(r->config);
    g_free(r->out);
    g_free(r->final);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Run, run_clear)

/* Trains the model for one epoch into a fresh directory, with @extra [train] keys: the genuine
 * checkpoint to damage. */
static void train_once_with(Run *r, const char *name, const char *extra)
{
    g_autofree char *data_name = g_strdup_printf("%s.h5", name);
    r->data = g_build_filename(tmp_dir, data_name, NULL);
    e2e_write_blobs(r->data, "train", 64, 7, FALSE);
    g_autofree char *cfg_name = g_strdup_printf("%s.ini", name);
    r->config = write_config(cfg_name, r->data, extra);
    g_autofree char *out_name = g_strdup_printf("%s-out", name);
    r->out = g_build_filename(tmp_dir, out_name, NULL);
    r->final = g_build_filename(r->out, "final.h5", NULL);
    g_autofree char *err = NULL;
    int status = e2e_run_lamina(NULL, &err, "train", r->config, "--output", r->out, "--quiet",
                                "--backend", "cpu", NULL);
    if (status != 0)
        g_error("%s: the first training failed (%d):\n%s", name, status, err);
}

static void train_once(Run *r, const char *name)
{
    train_once_with(r, name, NULL);
}

/* A byte copy of @src named @name in the temporary directory. */
static char *copy_file(const char *src, const char *name)
{
    g_autofree char *bytes = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(src, &bytes, &len, NULL));
    char *dst = g_build_filename(tmp_dir, name, NULL);
    g_assert_true(g_file_set_contents(dst, bytes, (gssize) len, NULL));
    return dst;
}

/* Asserts that @path still has the bytes @before. */
static void assert_unchanged(const char *path, const char *before, gsize before_len)
{
    g_autofree char *now = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(path, &now, &len, NULL));
    g_assert_cmpmem(now, len, before, before_len);
}

/* Replaces /config of @path with an array of three strings, variable or fixed length. */
static void config_as_array(const char *path, gboolean variable)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    g_assert_cmpint(H5Ldelete(f, "/config", H5P_DEFAULT), >=, 0);
    hid_t type = H5Tcopy(H5T_C_S1);
    const char *vlen[3] = {"[model]\ninput = 2\n", "[layer fc]\ntype = dense\n", "units = 4\n"};
    char fixed[3][64] = {"[model]", "input = 2", "[layer fc]"};
    H5Tset_size(type, variable ? H5T_VARIABLE : 64);
    hsize_t dims[1] = {3};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t ds = H5Dcreate2(f, "/config", type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(ds, >=, 0);
    g_assert_cmpint(
        H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, variable ? (void *) vlen : fixed), >=, 0);
    H5Dclose(ds);
    H5Sclose(space);
    H5Tclose(type);
    H5Fclose(f);
}

static void check_config_array(const char *name, gboolean variable)
{
    g_auto(Run) r = {0};
    train_once(&r, name);
    g_autofree char *bad_name = g_strdup_printf("%s-bad.h5", name);
    g_autofree char *bad = copy_file(r.final, bad_name);
    config_as_array(bad, variable);
    /* inspect shows what it can and says why the config is missing; it must not crash. */
    g_autofree char *out = NULL, *err = NULL;
    int status = e2e_run_lamina(&out, &err, "inspect", bad, NULL);
    g_test_message("inspect: exit status %d\n%s%s", status, out, err);
    g_assert_cmpint(status, >=, 0);
    g_assert_nonnull(strstr(out, "/config"));
    g_assert_nonnull(strstr(out, "one scalar string was expected"));
    g_assert_null(strstr(err, "AddressSanitizer"));
    g_autofree char *spec = g_strdup_printf("%s:/train", r.data);
    const char *args[] = {"eval", bad, "--data", spec, NULL, NULL, NULL, NULL};
    const char *keys[] = {bad_name,
                          ":/config",
                          "holds strings of shape [3]",
                          "one scalar string was expected",
                          "use another checkpoint",
                          NULL};
    expect_failure(name, args, keys);
}

static void test_config_array_vlen(void)
{
    check_config_array("config-array-vlen", TRUE);
}

static void test_config_array_fixed(void)
{
    check_config_array("config-array-fixed", FALSE);
}

/* Sets integer attribute @attr of @obj in @path. */
static void set_attr_int(const char *path, const char *obj, const char *attr, gint64 value)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    /* Through the object: HDF5 1.10's H5Awrite fails on an attribute opened by path. */
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    hid_t a = H5Aopen(o, attr, H5P_DEFAULT);
    g_assert_cmpint(a, >=, 0);
    g_assert_cmpint(H5Awrite(a, H5T_NATIVE_INT64, &value), >=, 0);
    H5Oclose(o);
    H5Aclose(a);
    H5Fclose(f);
}

/* Resumes @ckpt into a new output directory with @extra arguments and expects @keywords. */
static void expect_resume_failure(const char *name, const Run *r, const char *ckpt,
                                  const char *extra, const char *const *keywords)
{
    g_autofree char *out_name = g_strdup_printf("%s-resumed", name);
    g_autofree char *out = g_build_filename(tmp_dir, out_name, NULL);
    const char *args[] = {"train", r->config, "--output", out, "--resume", ckpt, extra, NULL};
    expect_failure(name, args, keywords);
    g_autofree char *final = g_build_filename(out, "final.h5", NULL);
    g_assert_false(g_file_test(final, G_FILE_TEST_EXISTS));
}

static void test_step_overflow(void)
{
    g_auto(Run) r = {0};
    train_once(&r, "step-overflow");
    g_autofree char *bad = copy_file(r.final, "step-overflow-bad.h5");
    set_attr_int(bad, "/train", "step", G_MAXINT64);
    const char *keys[] = {"step-overflow-bad.h5:/train", "step is 9223372036854775807",
                          "expected 0 to 9007199254740992", "use another checkpoint", NULL};
    expect_resume_failure("step-overflow", &r, bad, "--epochs=3", keys);
}

static void test_epoch_overflow(void)
{
    g_auto(Run) r = {0};
    train_once(&r, "epoch-overflow");
    g_autofree char *bad = copy_file(r.final, "epoch-overflow-bad.h5");
    set_attr_int(bad, "/train", "epoch", G_MAXINT64 / 2);
    const char *keys[] = {"epoch-overflow-bad.h5:/train", "epoch is 4611686018427387903",
                          "expected 0 to 2147483647", NULL};
    expect_resume_failure("epoch-overflow", &r, bad, "--epochs=3", keys);
}

/* Resuming the final checkpoint of a finished run trained nothing and rewrote final.h5. */
static void test_finished_run(void)
{
    g_auto(Run) r = {0};
    train_once(&r, "finished-run");
    g_autofree char *before = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(r.final, &before, &len, NULL));
    const char *args[] = {"train", r.config, "--output", r.out, "--resume", r.final, NULL, NULL};
    const char *keys[] = {"final.h5: the run already finished", "trained 1 epochs",
                          "[train] epochs is 1", "--epochs 2", NULL};
    expect_failure("finished-run", args, keys);
    assert_unchanged(r.final, before, len);
    /* With epochs raised it trains on. */
    g_autofree char *more = g_build_filename(tmp_dir, "finished-run-more", NULL);
    g_autofree char *err = NULL;
    int status = e2e_run_lamina(NULL, &err, "train", r.config, "--output", more, "--resume",
                                r.final, "--epochs", "2", "--quiet", NULL);
    if (status != 0)
        g_error("finished-run: resuming with --epochs 2 failed (%d):\n%s", status, err);
    g_autofree char *more_final = g_build_filename(more, "final.h5", NULL);
    g_assert_cmpint(e2e_read_attr_int(more_final, "/train", "epoch"), ==, 2);
}

/* Writes NaN, +inf and NaN into the first three values of float dataset @name of @path. */
static void poison(const char *path, const char *name)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    g_assert_cmpint(ds, >=, 0);
    hid_t space = H5Dget_space(ds);
    hssize_t n = H5Sget_simple_extent_npoints(space);
    g_assert_cmpint(n, >=, 3);
    g_autofree float *v = g_new(float, n);
    g_assert_cmpint(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), >=, 0);
    v[0] = NAN;
    v[1] = INFINITY;
    v[2] = NAN;
    g_assert_cmpint(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), >=, 0);
    H5Sclose(space);
    H5Dclose(ds);
    H5Fclose(f);
}

static void test_nonfinite_weight(void)
{
    g_auto(Run) r = {0};
    train_once(&r, "nonfinite-weight");
    g_autofree char *bad = copy_file(r.final, "nonfinite-weight-bad.h5");
    poison(bad, "/model/fc1/weight");
    const char *keys[] = {"nonfinite-weight-bad.h5:/model/fc1/weight",
                          "layer 'fc1' parameter 'weight'", "3 of 16 values are not finite",
                          "--allow-nonfinite", NULL};
    expect_resume_failure("nonfinite-weight", &r, bad, "--epochs=2", keys);
    /* --init reads the same weights and refuses them the same way. */
    g_autofree char *out = g_build_filename(tmp_dir, "nonfinite-weight-init", NULL);
    const char *args[] = {"train", r.config, "--output", out, "--init", bad, NULL, NULL};
    expect_failure("nonfinite-weight --init", args, keys);
}

/* The moving average (/ema) is read with the same checks as the weights: --resume refuses a
 * poisoned one and a misshapen one naming the tensor, and eval --ema fails cleanly on NaN. */
static void test_bad_ema(void)
{
    g_auto(Run) r = {0};
    train_once_with(&r, "bad-ema", "ema_decay = 0.9\n");
    g_autofree char *bad = copy_file(r.final, "bad-ema-nan.h5");
    poison(bad, "/ema/fc1/weight");
    const char *keys[] = {"bad-ema-nan.h5:/ema/fc1/weight",
                          "moving average of layer 'fc1' parameter 'weight'",
                          "3 of 16 values are not finite", NULL};
    expect_resume_failure("bad-ema-nan", &r, bad, "--epochs=2", keys);
    g_autofree char *spec = g_strdup_printf("%s:/train", r.data);
    const char *eval_args[] = {"eval", bad, "--data", spec, "--ema", NULL, NULL, NULL};
    /* eval takes weights as they are (as for /model) and stops at the first non-finite score. */
    const char *eval_keys[] = {"bad-ema-nan.h5", "not finite", NULL};
    expect_failure("bad-ema-nan eval", eval_args, eval_keys);

    g_autofree char *shape = copy_file(r.final, "bad-ema-shape.h5");
    hid_t f = H5Fopen(shape, H5F_ACC_RDWR, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    g_assert_cmpint(H5Ldelete(f, "/ema/fc/bias", H5P_DEFAULT), >=, 0);
    hsize_t dims[1] = {7};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t ds = H5Dcreate2(f, "/ema/fc/bias", H5T_NATIVE_FLOAT, space, H5P_DEFAULT, H5P_DEFAULT,
                          H5P_DEFAULT);
    g_assert_cmpint(ds, >=, 0);
    float zeros[7] = {0};
    g_assert_cmpint(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros), >=, 0);
    H5Dclose(ds);
    H5Sclose(space);
    H5Fclose(f);
    const char *shape_keys[] = {"bad-ema-shape.h5:/ema/fc/bias", "[7]", "[4]", NULL};
    expect_resume_failure("bad-ema-shape", &r, shape, "--epochs=2", shape_keys);
}

static void test_nonfinite_slot(void)
{
    g_auto(Run) r = {0};
    train_once(&r, "nonfinite-slot");
    g_autofree char *bad = copy_file(r.final, "nonfinite-slot-bad.h5");
    poison(bad, "/optimizer/state/fc/bias/momentum_buffer");
    const char *keys[] = {"nonfinite-slot-bad.h5:/optimizer/state/fc/bias/momentum_buffer",
                          "optimizer slot 'momentum_buffer' of layer 'fc' parameter 'bias'",
                          "3 of 4 values are not finite", "--allow-nonfinite", NULL};
    expect_resume_failure("nonfinite-slot", &r, bad, "--epochs=2", keys);
}

/* Loaded anyway, a NaN weight before a relu must stop the run at its first step: relu used to
 * map NaN to 0, so the run trained on with a finite loss and saved NaN weights as final.h5. */
static void test_nonfinite_init_allowed(void)
{
    g_auto(Run) r = {0};
    train_once(&r, "nonfinite-init-allowed");
    g_autofree char *bad = copy_file(r.final, "nonfinite-init-allowed-bad.h5");
    poison(bad, "/model/fc1/weight");
    /* Into the first run's directory: its final.h5 must survive the failed run. */
    g_autofree char *before = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(r.final, &before, &len, NULL));
    const char *args[] = {"train",  r.config, "--output",          r.out,
                          "--init", bad,      "--allow-nonfinite", NULL};
    const char *keys[] = {"step 1", "not", "finite", "checkpoints already in", NULL};
    expect_failure("nonfinite-init-allowed", args, keys);
    assert_unchanged(r.final, before, len);
}

/* Inputs of 1e30 keep the loss finite (about 1e30) but the gradient's squared norm overflows
 * float: the guard stops the run at step 1 and names the first layer, with and without
 * clip_norm (whose coefficient max_norm / inf used to zero the gradient silently). */
static void test_gradient_overflow(void)
{
    g_autofree char *data = g_build_filename(tmp_dir, "gradient-overflow.h5", NULL);
    float x[64][2];
    gint32 y[64];
    for (int i = 0; i < 64; i++) {
        x[i][0] = (i % 2 ? 1e30f : -1e30f);
        x[i][1] = (i % 3 ? 1e30f : -1e30f);
        y[i] = i % 4;
    }
    e2e_write_split(data, "train", &x[0][0], 64, 2, y);
    const char *extras[] = {NULL, "clip_norm = 1.0\n"};
    for (int k = 0; k < 2; k++) {
        g_autofree char *cfg_name = g_strdup_printf("gradient-overflow-%d.ini", k);
        g_autofree char *config = write_config(cfg_name, data, extras[k]);
        g_autofree char *out = g_build_filename(tmp_dir, "gradient-overflow-out", NULL);
        const char *args[] = {"train", config, "--output", out, "--backend", "cpu", NULL, NULL};
        const char *keys[] = {"epoch 1, step 1: the gradient is not finite", "layer 'fc1'",
                              "overflow float", "stopped before applying it", NULL};
        expect_failure(k == 0 ? "gradient-overflow" : "gradient-overflow (clip_norm)", args, keys);
        g_autofree char *final = g_build_filename(out, "final.h5", NULL);
        g_assert_false(g_file_test(final, G_FILE_TEST_EXISTS));
        e2e_remove_tree(out);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    tmp_dir = g_dir_make_tmp("lamina-hostile-ckpt-XXXXXX", NULL);
    g_assert_nonnull(tmp_dir);
    g_test_add_func("/hostile/checkpoint/config-array-vlen", test_config_array_vlen);
    g_test_add_func("/hostile/checkpoint/config-array-fixed", test_config_array_fixed);
    g_test_add_func("/hostile/checkpoint/step-overflow", test_step_overflow);
    g_test_add_func("/hostile/checkpoint/epoch-overflow", test_epoch_overflow);
    g_test_add_func("/hostile/checkpoint/finished-run", test_finished_run);
    g_test_add_func("/hostile/checkpoint/nonfinite-weight", test_nonfinite_weight);
    g_test_add_func("/hostile/checkpoint/nonfinite-slot", test_nonfinite_slot);
    g_test_add_func("/hostile/checkpoint/bad-ema", test_bad_ema);
    g_test_add_func("/hostile/checkpoint/nonfinite-init-allowed", test_nonfinite_init_allowed);
    g_test_add_func("/hostile/checkpoint/gradient-overflow", test_gradient_overflow);
    int rc = g_test_run();
    e2e_remove_tree(tmp_dir);
    g_free(tmp_dir);
    return rc;
}
