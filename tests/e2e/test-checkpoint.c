/* Checkpoints that cannot be used: each failure has its GError code and a message naming the
 * file and the place in it (a checkpoint from another optimizer, another model, a newer format,
 * a truncated file, a file that is not HDF5), and `lamina inspect` shows what a checkpoint holds
 * or says clearly why it cannot. */
#include "e2e-util.h"

#include <glib/gstdio.h>
#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

static LmnRegistry *registry;

typedef struct {
    LmnBackend *backend;
    LmnConfig *cfg;
    LmnModel *model;
    LmnOptimizer *opt;
    LmnSchedule *sched;
} Built;

static const char *config_template = "[model]\n"
                                     "input = 2\n"
                                     "[layer fc1]\n"
                                     "type = dense\n"
                                     "units = %d\n"
                                     "[layer act1]\n"
                                     "type = tanh\n"
                                     "[layer fc2]\n"
                                     "type = dense\n"
                                     "units = 4\n"
                                     "[layer loss]\n"
                                     "type = softmax_cross_entropy\n"
                                     "[optimizer]\n"
                                     "type = %s\n"
                                     "lr = 0.1\n"
                                     "%s"
                                     "[train]\n"
                                     "seed = 5\n"
                                     "backend = cpu\n"
                                     "[data]\n"
                                     "train = %s:/train\n";

static char *config_text(int units, const char *opt, const char *data)
{
    return g_strdup_printf(config_template, units, opt,
                           g_str_equal(opt, "sgd") ? "momentum = 0.9\n" : "", data);
}

static Built *build(int units, const char *opt)
{
    Built *b = g_new0(Built, 1);
    g_autoptr(GError) error = NULL;
    g_autofree char *text = config_text(units, opt, "unused.h5");
    b->cfg = lmn_config_new_from_data(text, -1, "ckpt.ini", &error);
    g_assert_no_error(error);
    g_assert_true(lmn_config_validate(b->cfg, registry, &error));
    b->backend = lmn_backend_new(registry, "cpu", NULL, NULL, &error);
    g_assert_no_error(error);
    LmnTensorInfo target = {lmn_shape_make(0), LMN_DTYPE_I32};
    b->model = lmn_model_new(b->cfg, registry, b->backend, &target, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_init_params(b->model, 5, &error));
    b->opt =
        lmn_optimizer_new(registry, opt, lmn_config_get_optimizer_params(b->cfg),
                          lmn_model_get_params(b->model), lmn_model_get_grads(b->model), &error);
    g_assert_no_error(error);
    b->sched = lmn_schedule_new(registry, lmn_config_get_schedule_type(b->cfg),
                                lmn_config_get_schedule_params(b->cfg),
                                lmn_config_get_schedule_common(b->cfg), 0.1, &error);
    g_assert_no_error(error);
    return b;
}

static void built_free(Built *b)
{
    lmn_schedule_free(b->sched);
    lmn_optimizer_free(b->opt);
    lmn_model_free(b->model);
    lmn_backend_unref(b->backend);
    lmn_config_free(b->cfg);
    g_free(b);
}

static float *read_params(Built *b, gsize *n)
{
    LmnTensor *p = lmn_model_get_params(b->model);
    *n = (gsize) lmn_tensor_numel(p);
    float *v = g_new(float, *n);
    g_assert_true(lmn_tensor_read(p, v, *n * sizeof(float), NULL));
    return v;
}

typedef struct {
    char *dir;
    char *ckpt; /* an sgd checkpoint of the units-32 model at step 7 */
} Fixture;

static void fixture_setup(Fixture *fx, gconstpointer unused)
{
    fx->dir = g_dir_make_tmp("lamina-ckpt-XXXXXX", NULL);
    fx->ckpt = g_build_filename(fx->dir, "sgd.h5", NULL);
    Built *b = build(32, "sgd");
    lmn_optimizer_set_step(b->opt, 7);
    LmnTrainState st = {1, 7, 5, 0.25, 1};
    g_autoptr(GError) error = NULL;
    g_autofree char *text = lmn_config_to_data(b->cfg);
    g_assert_true(lmn_checkpoint_save(fx->ckpt, text, b->model, b->opt, b->sched, &st, &error));
    g_assert_no_error(error);
    built_free(b);
}

static void fixture_teardown(Fixture *fx, gconstpointer unused)
{
    e2e_remove_tree(fx->dir);
    g_free(fx->dir);
    g_free(fx->ckpt);
}

static void assert_message(const GError *error, const char *const *frags)
{
    for (guint i = 0; frags[i]; i++)
        if (!strstr(error->message, frags[i]))
            g_error("expected '%s' in: %s", frags[i], error->message);
}

static void test_optimizer(Fixture *fx, gconstpointer unused)
{
    Built *b = build(32, "adam");
    LmnTrainState st = {0, 0, 5, NAN, -1};
    g_autoptr(GError) error = NULL;
    g_assert_false(lmn_checkpoint_load_training(fx->ckpt, b->model, b->opt, b->sched, &st, FALSE,
                                                LMN_CHECKPOINT_LOAD_DEFAULT, &error));
    g_assert_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_OPTIMIZER);
    assert_message(error,
                   (const char *const[]){fx->ckpt, "'sgd'", "'adam'", "--reset-optimizer", NULL});
    g_assert_cmpint(st.step, ==, 0);
    g_clear_error(&error);
    /* With reset: the counters come back, adam starts fresh. */
    g_assert_true(lmn_checkpoint_load_training(fx->ckpt, b->model, b->opt, b->sched, &st, TRUE,
                                               LMN_CHECKPOINT_LOAD_DEFAULT, &error));
    g_assert_no_error(error);
    g_assert_cmpint(st.step, ==, 7);
    g_assert_cmpint(st.epoch, ==, 1);
    g_assert_cmpint(lmn_optimizer_get_step(b->opt), ==, 0);
    built_free(b);
}

/* The same through the command, with real training data. */
static void test_optimizer_cli(Fixture *fx, gconstpointer unused)
{
    g_autofree char *data = g_build_filename(fx->dir, "blobs.h5", NULL);
    e2e_write_blobs(data, "/train", 200, 1, FALSE);
    g_autofree char *text = config_text(32, "sgd", data);
    g_autofree char *cfg = g_build_filename(fx->dir, "c.ini", NULL);
    g_assert_true(g_file_set_contents(cfg, text, -1, NULL));
    g_autofree char *out = g_build_filename(fx->dir, "run", NULL);
    g_assert_cmpint(
        e2e_run_lamina(NULL, NULL, "train", cfg, "-o", out, "--epochs", "1", "-q", NULL), ==, 0);
    g_autofree char *fin = g_build_filename(out, "final.h5", NULL);
    g_autofree char *out2 = g_build_filename(fx->dir, "run2", NULL);
    g_autofree char *err = NULL;
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "train", cfg, "-o", out2, "--resume", fin,
                                   "--optimizer", "adam", "--epochs", "2", "-q", NULL),
                    ==, 1);
    g_assert_nonnull(strstr(err, "--reset-optimizer"));
    g_assert_nonnull(strstr(err, fin));
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", cfg, "-o", out2, "--resume", fin,
                                   "--optimizer", "adam", "--reset-optimizer", "--epochs", "2",
                                   "-q", NULL),
                    ==, 0);
    g_autofree char *fin2 = g_build_filename(out2, "final.h5", NULL);
    g_assert_cmpint(e2e_read_attr_int(fin2, "/train", "epoch"), ==, 2);
    /* adam took one epoch of steps (7 of 32 samples), sgd's count did not carry over. */
    g_assert_cmpint(e2e_read_attr_int(fin2, "/optimizer", "step"), ==, 7);
    g_assert_cmpint(e2e_read_attr_int(fin2, "/train", "step"), ==, 14);
}

static void test_mismatch(Fixture *fx, gconstpointer unused)
{
    Built *b = build(16, "sgd");
    gsize n1 = 0, n2 = 0;
    g_autofree float *before = read_params(b, &n1);
    g_autoptr(GError) error = NULL;
    g_assert_false(lmn_checkpoint_load_weights(fx->ckpt, b->model, &error));
    g_assert_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_MISMATCH);
    assert_message(error, (const char *const[]){fx->ckpt, "fc1", "[32, 2]", "[16, 2]", NULL});
    /* Nothing was loaded: the model is as it was. */
    g_autofree float *after = read_params(b, &n2);
    g_assert_cmpmem(before, n1 * sizeof(float), after, n2 * sizeof(float));
    g_clear_error(&error);
    LmnTrainState st = {0, 0, 5, NAN, -1};
    g_assert_false(lmn_checkpoint_load_training(fx->ckpt, b->model, b->opt, b->sched, &st, FALSE,
                                                LMN_CHECKPOINT_LOAD_DEFAULT, &error));
    g_assert_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_MISMATCH);
    assert_message(error,
                   (const char *const[]){"momentum_buffer", "fc1", "[32, 2]", "[16, 2]", NULL});
    g_assert_cmpint(st.step, ==, 0);
    built_free(b);
}

static void test_newer_format(Fixture *fx, gconstpointer unused)
{
    hid_t f = H5Fopen(fx->ckpt, H5F_ACC_RDWR, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    hid_t root = H5Gopen2(f, "/", H5P_DEFAULT);
    hid_t a = H5Aopen(root, "format_version", H5P_DEFAULT);
    gint64 v = LMN_CHECKPOINT_FORMAT_VERSION + 1;
    g_assert_cmpint(H5Awrite(a, H5T_NATIVE_INT64, &v), >=, 0);
    H5Aclose(a);
    H5Gclose(root);
    H5Fclose(f);
    Built *b = build(32, "sgd");
    g_autoptr(GError) error = NULL;
    g_assert_false(lmn_checkpoint_load_weights(fx->ckpt, b->model, &error));
    g_assert_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT);
    assert_message(error, (const char *const[]){fx->ckpt, "version 2", "newer", NULL});
    g_clear_error(&error);
    g_assert_null(lmn_checkpoint_read_config(fx->ckpt, &error));
    g_assert_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT);
    built_free(b);
}

static void test_truncated(Fixture *fx, gconstpointer unused)
{
    g_autofree char *bytes = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(fx->ckpt, &bytes, &len, NULL));
    g_autofree char *cut = g_build_filename(fx->dir, "truncated.h5", NULL);
    g_assert_true(g_file_set_contents(cut, bytes, (gssize) (len / 2), NULL));
    Built *b = build(32, "sgd");
    g_autoptr(GError) error = NULL;
    g_assert_false(lmn_checkpoint_load_weights(cut, b->model, &error));
    g_assert_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_OPEN);
    assert_message(error, (const char *const[]){cut, "truncated", NULL});
    g_clear_error(&error);
    LmnTrainState st = {0, 0, 5, NAN, -1};
    g_assert_false(lmn_checkpoint_load_training(cut, b->model, b->opt, b->sched, &st, FALSE,
                                                LMN_CHECKPOINT_LOAD_DEFAULT, &error));
    g_assert_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_OPEN);
    built_free(b);
}

static void test_not_hdf5(Fixture *fx, gconstpointer unused)
{
    g_autofree char *path = g_build_filename(fx->dir, "notes.h5", NULL);
    g_assert_true(g_file_set_contents(path, "these are not weights\n", -1, NULL));
    Built *b = build(32, "sgd");
    g_autoptr(GError) error = NULL;
    g_assert_false(lmn_checkpoint_load_weights(path, b->model, &error));
    g_assert_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_OPEN);
    assert_message(error, (const char *const[]){path, "not an HDF5 file", NULL});
    g_clear_error(&error);
    g_assert_null(lmn_checkpoint_read_config(path, &error));
    g_assert_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_OPEN);
    built_free(b);
}

static void assert_contains(const char *text, const char *const *frags)
{
    for (guint i = 0; frags[i]; i++)
        if (!strstr(text, frags[i]))
            g_error("expected '%s' in:\n%s", frags[i], text);
}

static void test_inspect(Fixture *fx, gconstpointer unused)
{
    g_autofree char *out = NULL;
    g_assert_cmpint(e2e_run_lamina(&out, NULL, "inspect", fx->ckpt, NULL), ==, 0);
    /* 32 x 2 + 32 + 4 x 32 + 4 = 228 values; layers in config order, with their types. */
    assert_contains(out, (const char *const[]){
                             "format: lamina-checkpoint version 1", "model: 4 layers, 228 values",
                             "fc1 (dense)", "act1 (tanh)", "loss (softmax_cross_entropy)", NULL});
    g_assert_true(strstr(out, "fc1 (dense)") < strstr(out, "act1 (tanh)"));
    g_assert_true(strstr(out, "act1 (tanh)") < strstr(out, "fc2 (dense)"));
    g_autoptr(GRegex) weight = g_regex_new("weight +\\[4, 32\\] +128\\n", 0, 0, NULL);
    g_assert_true(g_regex_match(weight, out, 0, NULL));
    g_autoptr(GRegex) bias = g_regex_new("bias +\\[32\\] +32\\n", 0, 0, NULL);
    g_assert_true(g_regex_match(bias, out, 0, NULL));
    assert_contains(out, (const char *const[]){
                             "optimizer: sgd", "step 7", "lr = 0.1\n", "momentum = 0.9\n",
                             "slots: momentum_buffer", "training:", "epoch = 1\n", "step = 7\n",
                             "best_metric = 0.25\n", "seed = 5\n", "config:", "units=32", NULL});
    g_clear_pointer(&out, g_free);
    g_assert_cmpint(e2e_run_lamina(&out, NULL, "inspect", "--no-config", fx->ckpt, NULL), ==, 0);
    g_assert_null(strstr(out, "units=32"));

    /* A weights file from another tool: only /model, no format attributes. */
    g_autofree char *foreign =
        g_build_filename(g_getenv("LMN_TEST_FIXTURES"), "h5py-blobs-weights.h5", NULL);
    g_clear_pointer(&out, g_free);
    g_assert_cmpint(e2e_run_lamina(&out, NULL, "inspect", foreign, NULL), ==, 0);
    assert_contains(out, (const char *const[]){"format: none", "fc2", "[4, 32]",
                                               "optimizer: none saved", NULL});
}

static void test_inspect_bad(Fixture *fx, gconstpointer unused)
{
    g_autofree char *notes = g_build_filename(fx->dir, "notes.txt", NULL);
    g_assert_true(g_file_set_contents(notes, "hello\n", -1, NULL));
    g_autofree char *err = NULL;
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "inspect", notes, NULL), ==, 1);
    assert_contains(err,
                    (const char *const[]){"lamina inspect: ", notes, "not an HDF5 file", NULL});
    g_autofree char *bytes = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(fx->ckpt, &bytes, &len, NULL));
    g_autofree char *cut = g_build_filename(fx->dir, "cut.h5", NULL);
    g_assert_true(g_file_set_contents(cut, bytes, (gssize) (len / 3), NULL));
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "inspect", cut, NULL), ==, 1);
    assert_contains(err, (const char *const[]){cut, "truncated", NULL});
    /* An HDF5 file that is neither a checkpoint nor a weights file (a dataset). */
    g_autofree char *data = g_build_filename(fx->dir, "data.h5", NULL);
    e2e_write_blobs(data, "/train", 10, 1, FALSE);
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "inspect", data, NULL), ==, 1);
    assert_contains(err, (const char *const[]){data, "no /model group", NULL});
    g_autofree char *missing = g_build_filename(fx->dir, "missing.h5", NULL);
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "inspect", missing, NULL), ==, 1);
    assert_contains(err, (const char *const[]){missing, "no such file", NULL});
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "inspect", NULL), ==, 2);
    assert_contains(err, (const char *const[]){"expected one CHECKPOINT", NULL});
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    registry = lmn_registry_new();
    lmn_registry_scan(registry, NULL);
    g_test_add("/e2e/checkpoint/errors/optimizer", Fixture, NULL, fixture_setup, test_optimizer,
               fixture_teardown);
    g_test_add("/e2e/checkpoint/errors/optimizer-cli", Fixture, NULL, fixture_setup,
               test_optimizer_cli, fixture_teardown);
    g_test_add("/e2e/checkpoint/errors/mismatch", Fixture, NULL, fixture_setup, test_mismatch,
               fixture_teardown);
    g_test_add("/e2e/checkpoint/errors/newer-format", Fixture, NULL, fixture_setup,
               test_newer_format, fixture_teardown);
    g_test_add("/e2e/checkpoint/errors/truncated", Fixture, NULL, fixture_setup, test_truncated,
               fixture_teardown);
    g_test_add("/e2e/checkpoint/errors/not-hdf5", Fixture, NULL, fixture_setup, test_not_hdf5,
               fixture_teardown);
    g_test_add("/e2e/checkpoint/inspect/shows-everything", Fixture, NULL, fixture_setup,
               test_inspect, fixture_teardown);
    g_test_add("/e2e/checkpoint/inspect/bad-files", Fixture, NULL, fixture_setup, test_inspect_bad,
               fixture_teardown);
    int rc = g_test_run();
    lmn_registry_free(registry);
    return rc;
}
