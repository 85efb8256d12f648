/* Tests of the plugin registry with real plugin files: good ones, broken ones, duplicates and
 * the search path.  Each test copies the plugins it needs from the build directory into its own
 * temporary directory, so what a test sees is exactly what it put there. */
#include <lamina/initializer.h>
#include <lamina/registry.h>

#include <glib/gstdio.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* ---- helpers ---- */

static char *built_plugin(const char *name)
{
    const char *build = g_getenv("LMN_TEST_BUILD_DIR");
    g_assert_nonnull(build);
    return g_build_filename(build, "registry", name, NULL);
}

/* Temporary directories live until the end of the run: plugins are never unloaded, and the
 * dynamic loader recognises an already loaded object by device and inode, so a deleted copy's
 * inode reused by a later copy would hand back the old module. */
static GPtrArray *tmp_dirs;

static char *make_tmp_dir(void)
{
    g_autoptr(GError) error = NULL;
    char *dir = g_dir_make_tmp("lamina-registry-XXXXXX", &error);
    g_assert_no_error(error);
    g_ptr_array_add(tmp_dirs, g_strdup(dir));
    return dir;
}

/* Copies the built plugin @name into @dir as @as (NULL: same name); returns the copy's path. */
static char *copy_plugin(const char *dir, const char *name, const char *as)
{
    g_autofree char *src = built_plugin(name);
    g_autofree char *data = NULL;
    gsize len = 0;
    g_autoptr(GError) error = NULL;
    g_assert_true(g_file_get_contents(src, &data, &len, &error));
    g_assert_no_error(error);
    char *dst = g_build_filename(dir, as ? as : name, NULL);
    g_assert_true(
        g_file_set_contents_full(dst, data, (gssize) len, G_FILE_SET_CONTENTS_NONE, 0755, &error));
    g_assert_no_error(error);
    return dst;
}

static void remove_tree(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    if (d == NULL)
        return;
    const char *name;
    while ((name = g_dir_read_name(d)) != NULL) {
        g_autofree char *path = g_build_filename(dir, name, NULL);
        if (g_file_test(path, G_FILE_TEST_IS_DIR))
            remove_tree(path);
        else
            g_assert_cmpint(g_unlink(path), ==, 0);
    }
    g_dir_close(d);
    g_assert_cmpint(g_rmdir(dir), ==, 0);
}

/* A registry that sees only @dir. */
static LmnRegistry *registry_for(const char *dir)
{
    LmnRegistry *reg = lmn_registry_new();
    lmn_registry_set_use_environment(reg, FALSE);
    lmn_registry_add_dir(reg, dir);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_registry_scan(reg, &error));
    g_assert_no_error(error);
    return reg;
}

static void assert_has(const char *message, const char *needle)
{
    if (strstr(message, needle) == NULL)
        g_error("message \"%s\" lacks \"%s\"", message, needle);
}

/* The only failure recorded for @path; asserts there is exactly one. */
static const LmnPluginFailure *failure_for(LmnRegistry *reg, const char *path)
{
    GPtrArray *failures = lmn_registry_list_failures(reg);
    const LmnPluginFailure *found = NULL;
    for (guint k = 0; k < failures->len; k++) {
        const LmnPluginFailure *f = g_ptr_array_index(failures, k);
        if (strcmp(f->path, path) == 0) {
            g_assert_null(found);
            found = f;
        }
    }
    if (found == NULL)
        g_error("no failure recorded for %s", path);
    return found;
}

/* The good plugin in the same directory still loads and works. */
static void assert_good_plugin_works(LmnRegistry *reg, const char *good_path)
{
    g_autoptr(GError) error = NULL;
    const LmnFeature *f = lmn_registry_lookup(reg, LMN_FEATURE_INITIALIZER, "test_const", &error);
    g_assert_no_error(error);
    g_assert_nonnull(f);
    g_assert_cmpstr(f->path, ==, good_path);

    /* Call its fill through the vtable, with validated params, as the core would. */
    const char *const keys[] = {"value", NULL};
    const char *const values[] = {"2.25", NULL};
    g_autoptr(LmnParams) params = lmn_registry_validate_params(f, keys, values, "test", &error);
    g_assert_no_error(error);
    const LmnInitializerVTable *vt = f->desc->vtable;
    LmnInitTarget target = {.struct_size = sizeof(target), .numel = 3};
    float data[3] = {0};
    g_assert_true(vt->fill(params, &target, data, &error));
    g_assert_cmpfloat(data[0], ==, 2.25f);
    g_assert_cmpfloat(data[2], ==, 2.25f);
}

/* Puts the good plugin and @bad into a fresh directory, scans it, and checks the failure's
 * domain, code and that its message names the file and @needles.  Returns the message. */
static char *check_bad_plugin(const char *bad, LmnPluginError code, const char *const *needles)
{
    g_autofree char *dir = make_tmp_dir();
    g_autofree char *good = copy_plugin(dir, "lamina-good.so", NULL);
    g_autofree char *path = copy_plugin(dir, bad, NULL);
    LmnRegistry *reg = registry_for(dir);

    const LmnPluginFailure *failure = failure_for(reg, path);
    g_assert_error(failure->error, LMN_PLUGIN_ERROR, (gint) code);
    assert_has(failure->error->message, path);
    for (guint k = 0; needles && needles[k]; k++)
        assert_has(failure->error->message, needles[k]);
    g_assert_cmpuint(lmn_registry_list_failures(reg)->len, ==, 1);
    assert_good_plugin_works(reg, good);

    /* Nothing of the bad file was registered. */
    g_autoptr(GPtrArray) inits = lmn_registry_list(reg, LMN_FEATURE_INITIALIZER);
    for (guint k = 0; k < inits->len; k++)
        g_assert_cmpstr(((const LmnFeature *) g_ptr_array_index(inits, k))->path, ==, good);

    char *message = g_strdup(failure->error->message);
    lmn_registry_free(reg);
    return message;
}

/* ---- good plugin ---- */

static void test_good_plugin(void)
{
    g_autofree char *dir = make_tmp_dir();
    g_autofree char *good = copy_plugin(dir, "lamina-good.so", NULL);
    LmnRegistry *reg = registry_for(dir);
    g_assert_cmpuint(lmn_registry_list_failures(reg)->len, ==, 0);

    struct {
        LmnFeatureKind kind;
        const char *name;
    } expected[] = {
        {LMN_FEATURE_INITIALIZER, "test_const"}, {LMN_FEATURE_INITIALIZER, "test_init_count"},
        {LMN_FEATURE_OPTIMIZER, "test_sgd"},     {LMN_FEATURE_SCHEDULE, "test_constant"},
        {LMN_FEATURE_LAYER, "test_identity"},
    };
    for (guint k = 0; k < G_N_ELEMENTS(expected); k++) {
        g_autoptr(GError) error = NULL;
        const LmnFeature *f = lmn_registry_lookup(reg, expected[k].kind, expected[k].name, &error);
        g_assert_no_error(error);
        g_assert_cmpstr(f->desc->name, ==, expected[k].name);
        g_assert_cmpint(f->desc->kind, ==, expected[k].kind);
        g_assert_cmpstr(f->plugin->name, ==, "test.good");
        g_assert_cmpstr(f->plugin->version, ==, "1.2.3");
        g_assert_cmpstr(f->path, ==, good);
        g_assert_nonnull(f->desc->vtable);
    }
    /* A name of another kind is not found under this kind. */
    g_autoptr(GError) error = NULL;
    g_assert_null(lmn_registry_lookup(reg, LMN_FEATURE_LAYER, "test_sgd", &error));
    g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_NOT_FOUND);

    g_autoptr(GPtrArray) inits = lmn_registry_list(reg, LMN_FEATURE_INITIALIZER);
    g_assert_cmpuint(inits->len, ==, 2);
    g_assert_cmpstr(((const LmnFeature *) inits->pdata[0])->desc->name, ==, "test_const");
    g_assert_cmpstr(((const LmnFeature *) inits->pdata[1])->desc->name, ==, "test_init_count");
    g_autoptr(GPtrArray) backends = lmn_registry_list(reg, LMN_FEATURE_BACKEND);
    g_assert_cmpuint(backends->len, ==, 0);

    assert_good_plugin_works(reg, good);
    lmn_registry_free(reg);
}

/* init() runs once per process, on first use, however many registries load the plugin. */
static void test_init_once(void)
{
    g_autofree char *dir = make_tmp_dir();
    g_autofree char *good = copy_plugin(dir, "lamina-good.so", NULL);
    for (int round = 0; round < 2; round++) {
        LmnRegistry *reg = registry_for(dir);
        for (int k = 0; k < 3; k++) {
            g_autoptr(GError) error = NULL;
            const LmnFeature *f =
                lmn_registry_lookup(reg, LMN_FEATURE_INITIALIZER, "test_init_count", &error);
            g_assert_no_error(error);
            const LmnInitializerVTable *vt = f->desc->vtable;
            LmnInitTarget target = {.struct_size = sizeof(target), .numel = 1};
            float calls = -1;
            g_assert_true(vt->fill(NULL, &target, &calls, &error));
            g_assert_cmpfloat(calls, ==, 1.0f);
        }
        lmn_registry_free(reg);
    }
}

/* ---- broken plugins ---- */

static void test_no_entry(void)
{
    const char *const needles[] = {"not a Lamina plugin", "lamina_plugin_query", NULL};
    g_free(check_bad_plugin("lamina-noentry.so", LMN_PLUGIN_ERROR_NO_ENTRY, needles));
}

static void test_abi_old_major(void)
{
    g_autofree char *abi = g_strdup_printf("plugin ABI %d.%d, this Lamina %d.%d",
                                           LMN_ABI_MAJOR - 1, LMN_ABI_MINOR, LMN_ABI_MAJOR,
                                           LMN_ABI_MINOR);
    const char *const needles[] = {abi, "rebuild the plugin against this Lamina's headers", NULL};
    g_free(check_bad_plugin("lamina-abi-old.so", LMN_PLUGIN_ERROR_ABI_MISMATCH, needles));
}

static void test_abi_newer_minor(void)
{
    g_autofree char *abi = g_strdup_printf("plugin ABI %d.%d, this Lamina %d.%d", LMN_ABI_MAJOR,
                                           LMN_ABI_MINOR + 1, LMN_ABI_MAJOR, LMN_ABI_MINOR);
    const char *const needles[] = {abi, NULL};
    g_free(check_bad_plugin("lamina-abi-newer-minor.so", LMN_PLUGIN_ERROR_ABI_MISMATCH, needles));
}

static void test_small_descriptor(void)
{
    const char *const needles[] = {"bad plugin descriptor", "struct_size", "'features'", NULL};
    g_free(check_bad_plugin("lamina-small-desc.so", LMN_PLUGIN_ERROR_BAD_DESCRIPTOR, needles));
}

static void test_null_name(void)
{
    const char *const needles[] = {"bad plugin descriptor", "field 'name' is NULL", NULL};
    g_free(check_bad_plugin("lamina-null-name.so", LMN_PLUGIN_ERROR_BAD_DESCRIPTOR, needles));
}

static void test_null_vtable(void)
{
    const char *const needles[] = {"features[0] (initializer 'variant')", "field 'vtable' is NULL",
                                   NULL};
    g_free(check_bad_plugin("lamina-null-vtable.so", LMN_PLUGIN_ERROR_BAD_DESCRIPTOR, needles));
}

static void test_small_vtable(void)
{
    const char *const needles[] = {"features[0] (initializer 'variant')",
                                   "vtable struct_size 4 is smaller than 16", "'fill'", NULL};
    g_free(check_bad_plugin("lamina-small-vtable.so", LMN_PLUGIN_ERROR_BAD_DESCRIPTOR, needles));
}

static void test_bad_default(void)
{
    const char *const needles[] = {"features[0] (initializer 'variant')",
                                   "params[0] ('scale')",
                                   "default '5'",
                                   "out of range",
                                   "a float in [0, 2]",
                                   NULL};
    g_free(check_bad_plugin("lamina-bad-default.so", LMN_PLUGIN_ERROR_BAD_DESCRIPTOR, needles));
}

static void test_bad_optimizer(void)
{
    const char *const needles[] = {"features[0] (optimizer 'variant')", "'bad.update'",
                                   "n_buffers = 2", "1 slot(s) make 3", NULL};
    g_free(check_bad_plugin("lamina-bad-optimizer.so", LMN_PLUGIN_ERROR_BAD_DESCRIPTOR, needles));
}

static void test_bad_backend(void)
{
    const char *const needles[] = {"features[0] (backend 'variant')",
                                   "backend vtable member 'gemm' is NULL", NULL};
    g_free(check_bad_plugin("lamina-bad-backend.so", LMN_PLUGIN_ERROR_BAD_DESCRIPTOR, needles));
}

/* A communicator vtable without a required member is refused before any of it runs. */
static void test_bad_communicator(void)
{
    const char *const needles[] = {"features[0] (communicator 'variant')",
                                   "communicator vtable member 'request_wait' is NULL", NULL};
    g_free(
        check_bad_plugin("lamina-bad-communicator.so", LMN_PLUGIN_ERROR_BAD_DESCRIPTOR, needles));
}

/* A missing shared library: the dynamic loader's own words reach the user. */
static void test_missing_dependency(void)
{
    const char *const needles[] = {"cannot load", "liblmn-test-helper.so",
                                   "cannot open shared object file", NULL};
    g_free(check_bad_plugin("lamina-needs-helper.so", LMN_PLUGIN_ERROR_OPEN, needles));

    /* The same file with its helper beside it loads (its rpath is $ORIGIN/helper): the copy failed
     * only for the missing library.  Once the helper is in the process, copies without it would
     * load too, so no later test relies on this failure. */
    g_autofree char *dir = make_tmp_dir();
    g_autofree char *copy = copy_plugin(dir, "lamina-needs-helper.so", NULL);
    g_autofree char *helper_dir = g_build_filename(dir, "helper", NULL);
    g_assert_cmpint(g_mkdir(helper_dir, 0755), ==, 0);
    g_free(copy_plugin(helper_dir, "helper/liblmn-test-helper.so", "liblmn-test-helper.so"));
    LmnRegistry *reg = registry_for(dir);
    g_assert_cmpuint(lmn_registry_list_failures(reg)->len, ==, 0);
    g_autoptr(GError) error = NULL;
    const LmnFeature *f = lmn_registry_lookup(reg, LMN_FEATURE_INITIALIZER, "needs_helper", &error);
    g_assert_no_error(error);
    g_assert_cmpstr(f->path, ==, copy);
    LmnInitTarget target = {.struct_size = sizeof(target), .numel = 1};
    float v = 0;
    g_assert_true(((const LmnInitializerVTable *) f->desc->vtable)->fill(NULL, &target, &v, NULL));
    g_assert_cmpfloat(v, ==, 42.0f);
    lmn_registry_free(reg);
}

/* A lookup of a name whose file failed explains why, with that file's own error. */
static void test_lookup_reports_failed_file(void)
{
    g_autofree char *dir = make_tmp_dir();
    g_autofree char *good = copy_plugin(dir, "lamina-good.so", NULL);
    g_autofree char *bad = copy_plugin(dir, "lamina-abi-old.so", "lamina-adam.so");
    LmnRegistry *reg = registry_for(dir);
    g_autoptr(GError) error = NULL;
    g_assert_null(lmn_registry_lookup(reg, LMN_FEATURE_OPTIMIZER, "adam", &error));
    g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_ABI_MISMATCH);
    assert_has(error->message, "optimizer 'adam' is not available");
    assert_has(error->message, bad);
    g_autofree char *abi = g_strdup_printf("plugin ABI %d.%d, this Lamina %d.%d",
                                           LMN_ABI_MAJOR - 1, LMN_ABI_MINOR, LMN_ABI_MAJOR,
                                           LMN_ABI_MINOR);
    assert_has(error->message, abi);
    assert_has(error->message, "known optimizers: test_sgd");

    /* A name the file's name does not suggest gets the plain answer. */
    g_clear_error(&error);
    g_assert_null(lmn_registry_lookup(reg, LMN_FEATURE_OPTIMIZER, "ada", &error));
    g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_NOT_FOUND);
    lmn_registry_free(reg);
}

/* init() failures: INIT_FAILED with the plugin's reason; UNSUPPORTED passes through. */
static void test_init_failures(void)
{
    g_autofree char *dir = make_tmp_dir();
    g_autofree char *good = copy_plugin(dir, "lamina-good.so", NULL);
    g_autofree char *fail = copy_plugin(dir, "lamina-init-fail.so", NULL);
    LmnRegistry *reg = registry_for(dir);
    /* init runs on use, not on load: the file loads and its feature is listed. */
    g_assert_cmpuint(lmn_registry_list_failures(reg)->len, ==, 0);
    for (int k = 0; k < 2; k++) {
        g_autoptr(GError) error = NULL;
        g_assert_null(lmn_registry_lookup(reg, LMN_FEATURE_INITIALIZER, "variant", &error));
        g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_INIT_FAILED);
        assert_has(error->message, fail);
        assert_has(error->message, "the test device is on fire");
    }
    assert_good_plugin_works(reg, good);
    lmn_registry_free(reg);

    g_autofree char *dir2 = make_tmp_dir();
    g_autofree char *unsup = copy_plugin(dir2, "lamina-unsupported.so", NULL);
    reg = registry_for(dir2);
    g_autoptr(GError) error = NULL;
    g_assert_null(lmn_registry_lookup(reg, LMN_FEATURE_INITIALIZER, "variant", &error));
    g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_UNSUPPORTED);
    assert_has(error->message, "no test device here");
    assert_has(error->message, unsup);
    lmn_registry_free(reg);
}

/* ---- duplicates and the search path ---- */

static void test_duplicate_same_dir(void)
{
    g_autofree char *dir = make_tmp_dir();
    g_autofree char *a = copy_plugin(dir, "lamina-dup-a.so", NULL);
    g_autofree char *b = copy_plugin(dir, "lamina-dup-b.so", NULL);
    LmnRegistry *reg = registry_for(dir);
    g_autoptr(GError) error = NULL;
    /* Files in a directory are taken in name order: dup-a first. */
    const LmnFeature *f = lmn_registry_lookup(reg, LMN_FEATURE_INITIALIZER, "twin", &error);
    g_assert_no_error(error);
    g_assert_cmpstr(f->plugin->version, ==, "a");
    const LmnPluginFailure *failure = failure_for(reg, b);
    g_assert_error(failure->error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_DUPLICATE);
    assert_has(failure->error->message, "initializer 'twin'");
    assert_has(failure->error->message, a);
    assert_has(failure->error->message, b);
    assert_has(failure->error->message, "wins");
    lmn_registry_free(reg);
}

typedef struct {
    char *path;
    gboolean was_set;
} SavedEnv;

static SavedEnv save_env(const char *name)
{
    const char *v = g_getenv(name);
    return (SavedEnv){g_strdup(v), v != NULL};
}

static void restore_env(const char *name, SavedEnv *saved)
{
    if (saved->was_set)
        g_setenv(name, saved->path, TRUE);
    else
        g_unsetenv(name);
    g_free(saved->path);
}

/* --plugin-path (add_dir) beats LAMINA_PLUGIN_PATH, which beats XDG_DATA_HOME, which beats the
 * system directory; each loser is a DUPLICATE naming the winner. */
static void test_search_path_precedence(void)
{
    SavedEnv user = save_env("LAMINA_PLUGIN_PATH");
    SavedEnv xdg = save_env("XDG_DATA_HOME");
    SavedEnv sys = save_env("LAMINA_PLUGIN_SYSTEM_PATH");

    g_autofree char *root = make_tmp_dir();
    g_autofree char *added = g_build_filename(root, "added", NULL);
    g_autofree char *env1 = g_build_filename(root, "env1", NULL);
    g_autofree char *env2 = g_build_filename(root, "env2", NULL);
    g_autofree char *xdg_home = g_build_filename(root, "xdg", NULL);
    g_autofree char *xdg_dir = g_build_filename(xdg_home, "lamina", "plugins", NULL);
    g_autofree char *sys_dir = g_build_filename(root, "sys", NULL);
    for (const char *const *d = (const char *const[]){added, env1, env2, xdg_dir, sys_dir, NULL};
         *d; d++)
        g_assert_cmpint(g_mkdir_with_parents(*d, 0755), ==, 0);

    /* "b" sorts after "a", so only the search order can make b win. */
    g_autofree char *b_added = copy_plugin(added, "lamina-dup-b.so", NULL);
    g_autofree char *a_env2 = copy_plugin(env2, "lamina-dup-a.so", NULL);
    g_autofree char *good_env1 = copy_plugin(env1, "lamina-good.so", NULL);
    g_autofree char *good_xdg = copy_plugin(xdg_dir, "lamina-good.so", "lamina-good-xdg.so");
    g_autofree char *good_sys = copy_plugin(sys_dir, "lamina-good.so", "lamina-good-sys.so");

    g_autofree char *env_list = g_strdup_printf("%s::%s", env1, env2);
    g_setenv("LAMINA_PLUGIN_PATH", env_list, TRUE);
    g_setenv("XDG_DATA_HOME", xdg_home, TRUE);
    g_setenv("LAMINA_PLUGIN_SYSTEM_PATH", sys_dir, TRUE);

    LmnRegistry *reg = lmn_registry_new();
    lmn_registry_add_dir(reg, added);
    g_assert_true(lmn_registry_scan(reg, NULL));

    const GPtrArray *path = lmn_registry_get_search_path(reg);
    const char *const want[] = {added, env1, env2, xdg_dir, sys_dir};
    g_assert_cmpuint(path->len, ==, G_N_ELEMENTS(want));
    for (guint k = 0; k < G_N_ELEMENTS(want); k++)
        g_assert_cmpstr(g_ptr_array_index(path, k), ==, want[k]);

    g_autoptr(GError) error = NULL;
    const LmnFeature *twin = lmn_registry_lookup(reg, LMN_FEATURE_INITIALIZER, "twin", &error);
    g_assert_no_error(error);
    g_assert_cmpstr(twin->plugin->version, ==, "b");
    g_assert_cmpstr(twin->path, ==, b_added);
    const LmnPluginFailure *dup = failure_for(reg, a_env2);
    g_assert_error(dup->error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_DUPLICATE);
    assert_has(dup->error->message, b_added);

    /* The good plugin: LAMINA_PLUGIN_PATH beats XDG beats the system directory. */
    const LmnFeature *good = lmn_registry_lookup(reg, LMN_FEATURE_OPTIMIZER, "test_sgd", &error);
    g_assert_no_error(error);
    g_assert_cmpstr(good->path, ==, good_env1);
    const LmnPluginFailure *dup_xdg = NULL, *dup_sys = NULL;
    GPtrArray *failures = lmn_registry_list_failures(reg);
    for (guint k = 0; k < failures->len; k++) {
        const LmnPluginFailure *f = g_ptr_array_index(failures, k);
        g_assert_error(f->error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_DUPLICATE);
        if (strcmp(f->path, good_xdg) == 0)
            dup_xdg = f;
        if (strcmp(f->path, good_sys) == 0)
            dup_sys = f;
    }
    /* One DUPLICATE per feature of each losing copy (5 features), plus twin's. */
    g_assert_cmpuint(failures->len, ==, 1 + 5 + 5);
    g_assert_nonnull(dup_xdg);
    g_assert_nonnull(dup_sys);
    assert_has(dup_xdg->error->message, good_env1);
    assert_has(dup_sys->error->message, good_env1);
    lmn_registry_free(reg);

    /* LAMINA_PLUGIN_SYSTEM_PATH set but empty: no system directory at all. */
    g_setenv("LAMINA_PLUGIN_SYSTEM_PATH", "", TRUE);
    g_unsetenv("LAMINA_PLUGIN_PATH");
    reg = lmn_registry_new();
    path = lmn_registry_get_search_path(reg);
    g_assert_cmpuint(path->len, ==, 1);
    g_assert_cmpstr(g_ptr_array_index(path, 0), ==, xdg_dir);
    lmn_registry_free(reg);

    restore_env("LAMINA_PLUGIN_PATH", &user);
    restore_env("XDG_DATA_HOME", &xdg);
    restore_env("LAMINA_PLUGIN_SYSTEM_PATH", &sys);
}

/* Without LAMINA_PLUGIN_SYSTEM_PATH, a program running from the build tree searches the build
 * tree's plugin directories. */
static void test_search_path_build_tree(void)
{
    SavedEnv sys = save_env("LAMINA_PLUGIN_SYSTEM_PATH");
    g_unsetenv("LAMINA_PLUGIN_SYSTEM_PATH");
    const char *build_root = g_getenv("LMN_BUILD_ROOT");
    g_assert_nonnull(build_root);

    LmnRegistry *reg = lmn_registry_new();
    const GPtrArray *path = lmn_registry_get_search_path(reg);
    g_autofree char *optimizers = g_build_filename(build_root, "plugins", "optimizers", NULL);
    g_autofree char *cpu = g_build_filename(build_root, "plugins", "backends", "cpu", NULL);
    gboolean has_optimizers = FALSE, has_cpu = FALSE;
    for (guint k = 0; k < path->len; k++) {
        has_optimizers |= strcmp(g_ptr_array_index(path, k), optimizers) == 0;
        has_cpu |= strcmp(g_ptr_array_index(path, k), cpu) == 0;
    }
    g_assert_true(has_optimizers);
    g_assert_true(has_cpu);
    lmn_registry_free(reg);
    restore_env("LAMINA_PLUGIN_SYSTEM_PATH", &sys);
}

/* The same directory named twice (even spelled differently) is scanned once: no duplicates. */
static void test_same_dir_twice(void)
{
    g_autofree char *dir = make_tmp_dir();
    g_autofree char *good = copy_plugin(dir, "lamina-good.so", NULL);
    g_autofree char *dotted2 = g_strconcat(dir, "/./", NULL);
    LmnRegistry *reg = lmn_registry_new();
    lmn_registry_set_use_environment(reg, FALSE);
    lmn_registry_add_dir(reg, dir);
    lmn_registry_add_dir(reg, dir);
    lmn_registry_add_dir(reg, dotted2);
    g_assert_true(lmn_registry_scan(reg, NULL));
    g_assert_cmpuint(lmn_registry_get_search_path(reg)->len, ==, 1);
    g_assert_cmpuint(lmn_registry_list_failures(reg)->len, ==, 0);
    /* Scanning again picks up nothing twice either. */
    g_assert_true(lmn_registry_scan(reg, NULL));
    g_assert_cmpuint(lmn_registry_list_failures(reg)->len, ==, 0);
    g_autoptr(GPtrArray) inits = lmn_registry_list(reg, LMN_FEATURE_INITIALIZER);
    g_assert_cmpuint(inits->len, ==, 2);
    lmn_registry_free(reg);
}

/* Only lamina-*.so files directly in a directory are plugins. */
static void test_ignores_other_files(void)
{
    g_autofree char *dir = make_tmp_dir();
    g_autofree char *sub = g_build_filename(dir, "nested", NULL);
    g_assert_cmpint(g_mkdir(sub, 0755), ==, 0);
    const char *const ignored[] = {"libgood.so",      "good.so",           "lamina-good.so.1",
                                   "lamina-good.txt", "notlamina-good.so", "lamina-.so"};
    for (guint k = 0; k < G_N_ELEMENTS(ignored); k++)
        g_free(copy_plugin(dir, "lamina-dup-a.so", ignored[k]));
    g_free(copy_plugin(sub, "lamina-dup-a.so", NULL)); /* no recursion */
    g_autofree char *good = copy_plugin(dir, "lamina-good.so", NULL);

    LmnRegistry *reg = registry_for(dir);
    g_assert_cmpuint(lmn_registry_list_failures(reg)->len, ==, 0);
    g_autoptr(GError) error = NULL;
    g_assert_null(lmn_registry_lookup(reg, LMN_FEATURE_INITIALIZER, "twin", &error));
    g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_NOT_FOUND);
    assert_good_plugin_works(reg, good);
    lmn_registry_free(reg);
}

/* ---- lookup ---- */

static void test_not_found(void)
{
    g_autofree char *dir = make_tmp_dir();
    g_autofree char *good = copy_plugin(dir, "lamina-good.so", NULL);
    LmnRegistry *reg = registry_for(dir);

    g_autoptr(GError) error = NULL;
    g_assert_null(lmn_registry_lookup(reg, LMN_FEATURE_INITIALIZER, "test_cnst", &error));
    g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_NOT_FOUND);
    g_assert_cmpstr(error->message, ==,
                    "unknown initializer 'test_cnst' (did you mean 'test_const'?); known "
                    "initializers: test_const, test_init_count");

    g_clear_error(&error);
    g_assert_null(lmn_registry_lookup(reg, LMN_FEATURE_OPTIMIZER, "adam", &error));
    g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_NOT_FOUND);
    g_assert_cmpstr(error->message, ==, "unknown optimizer 'adam'; known optimizers: test_sgd");

    g_clear_error(&error);
    g_assert_null(lmn_registry_lookup(reg, LMN_FEATURE_BACKEND, "cpu", &error));
    g_assert_cmpstr(error->message, ==, "unknown backend 'cpu'; known backends: none");
    lmn_registry_free(reg);
}

/* load_file: a failure is recorded and returned, again on a second try; a good file loaded
 * twice is one plugin. */
static void test_load_file(void)
{
    g_autofree char *dir = make_tmp_dir();
    g_autofree char *good = copy_plugin(dir, "lamina-good.so", NULL);
    g_autofree char *bad = copy_plugin(dir, "lamina-abi-old.so", NULL);
    LmnRegistry *reg = lmn_registry_new();
    lmn_registry_set_use_environment(reg, FALSE);
    for (int k = 0; k < 2; k++) {
        g_autoptr(GError) error = NULL;
        g_assert_false(lmn_registry_load_file(reg, bad, &error));
        g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_ABI_MISMATCH);
        assert_has(error->message, bad);
        g_clear_error(&error);
        g_assert_true(lmn_registry_load_file(reg, good, &error));
        g_assert_no_error(error);
    }
    g_assert_cmpuint(lmn_registry_list_failures(reg)->len, ==, 1);
    g_autoptr(GPtrArray) inits = lmn_registry_list(reg, LMN_FEATURE_INITIALIZER);
    g_assert_cmpuint(inits->len, ==, 2);

    /* A file that does not exist is an OPEN failure naming it. */
    g_autofree char *missing = g_build_filename(dir, "lamina-missing.so", NULL);
    g_autoptr(GError) error = NULL;
    g_assert_false(lmn_registry_load_file(reg, missing, &error));
    g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_OPEN);
    assert_has(error->message, missing);
    lmn_registry_free(reg);
}

static void test_validate_params(void)
{
    g_autofree char *dir = make_tmp_dir();
    g_autofree char *good = copy_plugin(dir, "lamina-good.so", NULL);
    LmnRegistry *reg = registry_for(dir);
    const LmnFeature *f = lmn_registry_lookup(reg, LMN_FEATURE_OPTIMIZER, "test_sgd", NULL);
    g_assert_nonnull(f);

    const char *const keys[] = {"lr", "momentum", NULL};
    const char *const ok[] = {"0.5", "0.25", NULL};
    g_autoptr(GError) error = NULL;
    g_autoptr(LmnParams) p = lmn_registry_validate_params(f, keys, ok, "m.ini [optimizer]", &error);
    g_assert_no_error(error);
    g_assert_cmpfloat(lmn_params_get_float(p, "lr"), ==, 0.5);

    const char *const bad[] = {"-1", "0", NULL};
    g_assert_null(lmn_registry_validate_params(f, keys, bad, "m.ini [optimizer]", &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
    assert_has(error->message, "m.ini [optimizer]: key 'lr' = '-1'");
    lmn_registry_free(reg);
}

/* A scanned plugin is listed without being opened: names and versions are there, the schema and
 * vtable are not until it is loaded, and loading fills in the same feature record. */
static void test_lazy_list(void)
{
    g_autofree char *dir = make_tmp_dir();
    g_autofree char *good = copy_plugin(dir, "lamina-good.so", NULL);
    LmnRegistry *reg = registry_for(dir);
    g_autoptr(GPtrArray) optimizers = lmn_registry_list(reg, LMN_FEATURE_OPTIMIZER);
    g_assert_cmpuint(optimizers->len, ==, 1);
    const LmnFeature *f = g_ptr_array_index(optimizers, 0);
    g_assert_cmpstr(f->desc->name, ==, "test_sgd");
    g_assert_cmpint(f->desc->kind, ==, LMN_FEATURE_OPTIMIZER);
    g_assert_cmpstr(f->plugin->name, ==, "test.good");
    g_assert_cmpstr(f->plugin->version, ==, "1.2.3");
    g_assert_cmpstr(f->path, ==, good);
    g_assert_null(f->desc->vtable);
    g_assert_null(f->desc->params);

    /* Validating against a listed, unloaded feature loads it first (its schema is in the file). */
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) inits = lmn_registry_list(reg, LMN_FEATURE_INITIALIZER);
    const LmnFeature *init = g_ptr_array_index(inits, 0);
    g_assert_cmpstr(init->desc->name, ==, "test_const");
    g_assert_null(init->desc->vtable);
    const char *const keys[] = {"value", NULL};
    const char *const values[] = {"2", NULL};
    g_autoptr(LmnParams) params = lmn_registry_validate_params(init, keys, values, "t", &error);
    g_assert_no_error(error);
    g_assert_cmpfloat(lmn_params_get_float(params, "value"), ==, 2.0);
    g_assert_nonnull(init->desc->vtable);

    /* The file is loaded once for all its features, into the records listed before. */
    g_assert_true(lmn_registry_load_feature(reg, f, &error));
    g_assert_no_error(error);
    g_assert_nonnull(f->desc->vtable);
    g_assert_nonnull(f->desc->params);
    g_assert_cmpstr(f->desc->name, ==, "test_sgd");
    g_assert_true(lmn_registry_lookup(reg, LMN_FEATURE_OPTIMIZER, "test_sgd", &error) == f);
    lmn_registry_free(reg);
}

/* Rewrites @path with a same-size copy whose first page is zeroed (no longer an ELF file), and
 * gives it back its modification time: only the ctime tells that it changed. */
static void swap_keeping_size_and_mtime(const char *path)
{
    GStatBuf st;
    g_assert_cmpint(g_stat(path, &st), ==, 0);
    g_autofree char *data = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(path, &data, &len, NULL));
    memset(data, 0, MIN(len, 4096));
    FILE *f = fopen(path, "r+b");
    g_assert_nonnull(f);
    g_assert_cmpuint(fwrite(data, 1, len, f), ==, len);
    g_assert_cmpint(fclose(f), ==, 0);
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    g_assert_cmpint(utimensat(AT_FDCWD, path, times, 0), ==, 0);
}

/* A plugin swapped for a broken file (same size and mtime) after its scan, while this process
 * runs: the lookup that would open it fails naming the file, again on a second try, and a new
 * registry scans the file again and records why it is unusable, without opening it here. */
static void test_changed_after_scan(void)
{
    g_autofree char *dir = make_tmp_dir();
    g_autofree char *good = copy_plugin(dir, "lamina-good.so", NULL);
    LmnRegistry *reg = registry_for(dir);
    g_assert_cmpuint(lmn_registry_list_failures(reg)->len, ==, 0);
    swap_keeping_size_and_mtime(good);

    for (int k = 0; k < 2; k++) {
        g_autoptr(GError) error = NULL;
        g_assert_null(lmn_registry_lookup(reg, LMN_FEATURE_OPTIMIZER, "test_sgd", &error));
        g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_OPEN);
        assert_has(error->message, "optimizer 'test_sgd' cannot be used: ");
        assert_has(error->message, good);
        assert_has(error->message, "changed or went away after it was scanned");
    }
    /* The file's other features give the same reason; the failure is recorded once. */
    g_autoptr(GError) error = NULL;
    g_assert_null(lmn_registry_lookup(reg, LMN_FEATURE_INITIALIZER, "test_const", &error));
    g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_OPEN);
    g_clear_error(&error);
    assert_has(failure_for(reg, good)->error->message, "changed or went away");
    lmn_registry_free(reg);

    reg = registry_for(dir);
    const LmnPluginFailure *failure = failure_for(reg, good);
    g_assert_error(failure->error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_OPEN);
    assert_has(failure->error->message, "cannot load");
    g_assert_null(lmn_registry_lookup(reg, LMN_FEATURE_OPTIMIZER, "test_sgd", &error));
    g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_NOT_FOUND);
    lmn_registry_free(reg);
}

static void test_kind_names(void)
{
    g_assert_cmpstr(lmn_feature_kind_name(LMN_FEATURE_BACKEND), ==, "backend");
    g_assert_cmpstr(lmn_feature_kind_name(LMN_FEATURE_LAYER), ==, "layer");
    g_assert_cmpstr(lmn_feature_kind_name(LMN_FEATURE_OPTIMIZER), ==, "optimizer");
    g_assert_cmpstr(lmn_feature_kind_name(LMN_FEATURE_INITIALIZER), ==, "initializer");
    g_assert_cmpstr(lmn_feature_kind_name(LMN_FEATURE_SCHEDULE), ==, "schedule");
    g_assert_cmpstr(lmn_feature_kind_name(LMN_FEATURE_COMMUNICATOR), ==, "communicator");
    g_assert_cmpstr(lmn_feature_kind_name(LMN_FEATURE_KIND_COUNT), ==, "unknown");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    tmp_dirs = g_ptr_array_new_with_free_func(g_free);
    g_test_add_func("/registry/load/good", test_good_plugin);
    g_test_add_func("/registry/load/init-once", test_init_once);
    g_test_add_func("/registry/load/init-failures", test_init_failures);
    g_test_add_func("/registry/load/no-entry", test_no_entry);
    g_test_add_func("/registry/load/abi-old-major", test_abi_old_major);
    g_test_add_func("/registry/load/abi-newer-minor", test_abi_newer_minor);
    g_test_add_func("/registry/load/missing-dependency", test_missing_dependency);
    g_test_add_func("/registry/load/explicit-file", test_load_file);
    g_test_add_func("/registry/lazy/list-then-load", test_lazy_list);
    g_test_add_func("/registry/lazy/changed-after-scan", test_changed_after_scan);
    g_test_add_func("/registry/descriptor/small-struct", test_small_descriptor);
    g_test_add_func("/registry/descriptor/null-name", test_null_name);
    g_test_add_func("/registry/descriptor/null-vtable", test_null_vtable);
    g_test_add_func("/registry/descriptor/small-vtable", test_small_vtable);
    g_test_add_func("/registry/descriptor/bad-default", test_bad_default);
    g_test_add_func("/registry/descriptor/bad-optimizer", test_bad_optimizer);
    g_test_add_func("/registry/descriptor/bad-backend", test_bad_backend);
    g_test_add_func("/registry/descriptor/bad-communicator", test_bad_communicator);
    g_test_add_func("/registry/duplicate/same-dir", test_duplicate_same_dir);
    g_test_add_func("/registry/search-path/precedence", test_search_path_precedence);
    g_test_add_func("/registry/search-path/build-tree", test_search_path_build_tree);
    g_test_add_func("/registry/search-path/same-dir-twice", test_same_dir_twice);
    g_test_add_func("/registry/scan/ignores-other-files", test_ignores_other_files);
    g_test_add_func("/registry/lookup/not-found", test_not_found);
    g_test_add_func("/registry/lookup/failed-file", test_lookup_reports_failed_file);
    g_test_add_func("/registry/params/validate", test_validate_params);
    g_test_add_func("/registry/kind-names", test_kind_names);
    int status = g_test_run();
    for (guint k = 0; k < tmp_dirs->len; k++)
        remove_tree(g_ptr_array_index(tmp_dirs, k));
    g_ptr_array_unref(tmp_dirs);
    return status;
}
