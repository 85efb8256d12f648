/* Checkpoints record which plugin and version provided each component (/plugins) and the
 * training data's decoding (/data): the plugin record
 * matches the registry that trained the model, `lamina inspect` lists it, and a checkpoint whose
 * component is not available names the plugin to load; files without the record, or with a
 * damaged one, are handled without it. */
#include "e2e-util.h"

#include <glib/gstdio.h>
#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

static char *tmp_dir;
static char *ckpt;
static char *data_file;

/* Trains two steps of a small model (dense + tanh + dense, sgd, step schedule) once. */
static void make_checkpoint(void)
{
    data_file = g_build_filename(tmp_dir, "blobs.h5", NULL);
    e2e_write_blobs(data_file, "/train", 64, 2, FALSE);
    g_autofree char *text = g_strdup_printf(
        "[model]\ninput = 2\n[layer fc]\ntype = dense\nunits = 8\nweight_init = xavier_uniform\n"
        "[layer act]\ntype = tanh\n[layer out]\ntype = dense\nunits = 4\n[layer loss]\n"
        "type = softmax_cross_entropy\n[optimizer]\ntype = sgd\nlr = 0.1\n[schedule]\n"
        "type = step\nstep_size = 1\n[train]\nepochs = 1\nbatch_size = 32\nbackend = cpu\n"
        "[data]\ntrain = %s:/train\n",
        data_file);
    g_autofree char *cfg = g_build_filename(tmp_dir, "run.ini", NULL);
    g_assert_true(g_file_set_contents(cfg, text, -1, NULL));
    g_autofree char *out = g_build_filename(tmp_dir, "run", NULL);
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", cfg, "--output", out, "--quiet", NULL), ==,
                    0);
    ckpt = g_build_filename(out, "final.h5", NULL);
}

static const LmnCheckpointPlugin *find(GPtrArray *a, const char *kind, const char *name)
{
    for (guint i = 0; i < a->len; i++) {
        const LmnCheckpointPlugin *p = g_ptr_array_index(a, i);
        if (g_str_equal(p->kind, kind) && g_str_equal(p->name, name))
            return p;
    }
    g_error("no %s %s recorded", kind, name);
}

/* Every component is recorded with the plugin the registry says provides its type. */
static void test_record(void)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) a = lmn_checkpoint_read_plugins(ckpt, &error);
    g_assert_no_error(error);
    /* 4 layers, 4 initialised parameters, the optimizer, the schedule */
    g_assert_cmpuint(a->len, ==, 10);
    g_autoptr(LmnRegistry) reg = lmn_registry_new();
    lmn_registry_scan(reg, NULL);
    static const struct {
        const char *kind, *name, *type;
        LmnFeatureKind feature;
    } want[] = {
        {"layer", "fc", "dense", LMN_FEATURE_LAYER},
        {"layer", "act", "tanh", LMN_FEATURE_LAYER},
        {"layer", "loss", "softmax_cross_entropy", LMN_FEATURE_LAYER},
        {"initializer", "fc.weight", "xavier_uniform", LMN_FEATURE_INITIALIZER},
        {"initializer", "out.weight", "he_uniform", LMN_FEATURE_INITIALIZER},
        {"optimizer", "optimizer", "sgd", LMN_FEATURE_OPTIMIZER},
        {"schedule", "schedule", "step", LMN_FEATURE_SCHEDULE},
    };
    for (guint i = 0; i < G_N_ELEMENTS(want); i++) {
        const LmnCheckpointPlugin *p = find(a, want[i].kind, want[i].name);
        g_assert_cmpstr(p->type, ==, want[i].type);
        const LmnFeature *f = lmn_registry_lookup(reg, want[i].feature, want[i].type, &error);
        g_assert_no_error(error);
        g_assert_cmpstr(p->plugin, ==, f->plugin->name);
        g_assert_cmpstr(p->version, ==, f->plugin->version);
    }
    g_autofree char *out = NULL;
    g_assert_cmpint(e2e_run_lamina(&out, NULL, "inspect", ckpt, "--no-config", NULL), ==, 0);
    g_assert_nonnull(strstr(out, "plugins:\n"));
    g_assert_nonnull(strstr(out, "layer fc "));
    g_assert_nonnull(strstr(out, "lamina.dense " LMN_VERSION_STRING));
}

/* Runs `lamina eval` on the checkpoint with the build's plugin directories except those whose
 * path contains @leave_out; Returns: its stderr. */
static char *eval_without(const char *leave_out)
{
    const char *full = g_getenv("LAMINA_PLUGIN_SYSTEM_PATH");
    g_assert_nonnull(full);
    g_auto(GStrv) dirs = g_strsplit(full, ":", -1);
    g_autoptr(GStrvBuilder) b = g_strv_builder_new();
    for (guint i = 0; dirs[i]; i++)
        if (!strstr(dirs[i], leave_out))
            g_strv_builder_add(b, dirs[i]);
    g_auto(GStrv) kept = g_strv_builder_end(b);
    g_autofree char *path = g_strjoinv(":", kept);
    g_autofree char *saved_cache = g_strdup(g_getenv("LAMINA_REGISTRY_CACHE"));
    g_autofree char *cache = g_build_filename(tmp_dir, "partial-cache.ini", NULL);
    g_unlink(cache);
    g_setenv("LAMINA_PLUGIN_SYSTEM_PATH", path, TRUE);
    g_setenv("LAMINA_REGISTRY_CACHE", cache, TRUE);
    g_autofree char *spec = g_strdup_printf("%s:/train", data_file);
    char *err = NULL;
    int rc = e2e_run_lamina(NULL, &err, "eval", ckpt, "--data", spec, "--backend", "cpu", NULL);
    g_setenv("LAMINA_PLUGIN_SYSTEM_PATH", full, TRUE);
    if (saved_cache)
        g_setenv("LAMINA_REGISTRY_CACHE", saved_cache, TRUE);
    g_assert_cmpint(rc, ==, 1);
    return err;
}

static void test_missing_plugin(void)
{
    g_autofree char *no_opt = eval_without("/optimizers");
    g_assert_nonnull(strstr(no_opt, "the optimizer is a 'sgd' from plugin 'lamina.sgd'"));
    g_assert_nonnull(strstr(no_opt, "--plugin-path"));
    g_autofree char *no_layers = eval_without("/layers");
    g_assert_nonnull(strstr(no_layers, "layer '"));
    g_assert_nonnull(strstr(no_layers, "from plugin 'lamina."));
    g_assert_nonnull(strstr(no_layers, "is not available here"));
}

/* A file without /plugins (written by an earlier Lamina or another tool) has an empty record
 * and no explanation; a damaged record is an error for readers of it, and `lamina inspect`
 * says so instead of failing. */
static void test_absent_and_damaged(void)
{
    g_autofree char *fixture = g_build_filename(g_getenv("LMN_TEST_FIXTURES"), "attack.h5", NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) none = lmn_checkpoint_read_plugins(fixture, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(none->len, ==, 0);
    g_autoptr(LmnRegistry) reg = lmn_registry_new();
    g_assert_null(lmn_checkpoint_explain_missing(fixture, reg));

    g_autofree char *copy = g_build_filename(tmp_dir, "damaged.h5", NULL);
    g_autofree char *bytes = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(ckpt, &bytes, &len, NULL));
    g_assert_true(g_file_set_contents(copy, bytes, (gssize) len, NULL));
    hid_t f = H5Fopen(copy, H5F_ACC_RDWR, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    hid_t g = H5Gopen2(f, "/plugins/layers/fc", H5P_DEFAULT);
    g_assert_cmpint(H5Adelete(g, "plugin"), >=, 0);
    H5Gclose(g);
    H5Fclose(f);
    g_assert_null(lmn_checkpoint_read_plugins(copy, &error));
    g_assert_nonnull(error);
    g_assert_nonnull(strstr(error->message, "damaged.h5"));
    g_assert_null(lmn_checkpoint_explain_missing(copy, reg));
    g_autofree char *out = NULL;
    g_assert_cmpint(e2e_run_lamina(&out, NULL, "inspect", copy, "--no-config", NULL), ==, 0);
    g_assert_nonnull(strstr(out, "plugins: not readable"));
}

/* Replaces attribute @name of /data in @path with @n doubles (n = 0: an empty array). */
static void set_data_attr(const char *path, const char *name, const double *v, hsize_t n)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    hid_t g = H5Gopen2(f, "/data", H5P_DEFAULT);
    g_assert_cmpint(g, >=, 0);
    if (H5Aexists(g, name) > 0)
        g_assert_cmpint(H5Adelete(g, name), >=, 0);
    hid_t space = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
    hid_t a = H5Acreate2(g, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    if (n > 0)
        g_assert_cmpint(H5Awrite(a, H5T_NATIVE_DOUBLE, v), >=, 0);
    H5Aclose(a);
    H5Sclose(space);
    H5Gclose(g);
    H5Fclose(f);
}

/* /data (the training split's decoding, for `lamina predict`) is untrusted like the rest: a
 * scale of 0, an empty mean, a std holding 0 or NaN are format errors naming the attribute, and
 * `lamina predict` reports them instead of dividing by zero. */
static void test_damaged_data(void)
{
    static const double zero = 0.0, bad_std[] = {1.0, 0.0}, nan_mean[] = {NAN};
    static const struct {
        const char *name;
        const double *v;
        hsize_t n;
    } cases[] = {
        {"scale", &zero, 1}, {"mean", NULL, 0}, {"std", bad_std, 2}, {"mean", nan_mean, 1}};
    g_autofree char *bytes = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(ckpt, &bytes, &len, NULL));
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *copy = g_strdup_printf("%s/data-%u.h5", tmp_dir, i);
        g_assert_true(g_file_set_contents(copy, bytes, (gssize) len, NULL));
        set_data_attr(copy, cases[i].name, cases[i].v, cases[i].n);
        LmnCheckpointData d;
        gboolean found = TRUE;
        g_autoptr(GError) error = NULL;
        g_assert_false(lmn_checkpoint_read_data(copy, &d, &found, &error));
        g_assert_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT);
        g_autofree char *want = g_strdup_printf("/data %s:", cases[i].name);
        if (!strstr(error->message, want) || !strstr(error->message, copy))
            g_error("case %u: %s", i, error->message);
        g_autofree char *spec = g_strdup_printf("%s:/train", data_file);
        g_autofree char *err = NULL;
        g_assert_cmpint(e2e_run_lamina(NULL, &err, "predict", copy, spec, "--backend", "cpu", NULL),
                        ==, 1);
        g_assert_nonnull(strstr(err, want));
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    tmp_dir = g_dir_make_tmp("lamina-ckpt-plugins-XXXXXX", NULL);
    make_checkpoint();
    g_test_add_func("/e2e/checkpoint-plugins/record", test_record);
    g_test_add_func("/e2e/checkpoint-plugins/missing-plugin", test_missing_plugin);
    g_test_add_func("/e2e/checkpoint-plugins/absent-and-damaged", test_absent_and_damaged);
    g_test_add_func("/e2e/checkpoint-plugins/damaged-data", test_damaged_data);
    int rc = g_test_run();
    e2e_remove_tree(tmp_dir);
    g_free(tmp_dir);
    g_free(ckpt);
    g_free(data_file);
    return rc;
}
