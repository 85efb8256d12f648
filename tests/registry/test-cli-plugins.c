/* Tests of `lamina plugins`, run as a user would, against the registry tests' plugins (built in
 * this directory: good ones, broken ones and a duplicate). */
#include <glib.h>
#include <lamina/version.h>

#include <string.h>
#include <sys/wait.h>

typedef struct {
    int status;
    char *out;
    char *err;
} Run;

static void run_clear(Run *run)
{
    g_free(run->out);
    g_free(run->err);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Run, run_clear)

static char *plugin_dir(void)
{
    const char *build = g_getenv("LMN_TEST_BUILD_DIR");
    g_assert_nonnull(build);
    return g_build_filename(build, "registry", NULL);
}

/* Runs `lamina plugins ARGS... --plugin-path <this dir>` seeing no other plugin directory. */
static void run_plugins(Run *run, const char *const *args)
{
    g_autofree char *dir = plugin_dir();
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_ptr_array_add(argv, (gpointer) LMN_TEST_LAMINA_EXE);
    g_ptr_array_add(argv, (gpointer) "plugins");
    for (guint k = 0; args[k] != NULL; k++)
        g_ptr_array_add(argv, (gpointer) args[k]);
    g_ptr_array_add(argv, (gpointer) "--plugin-path");
    g_ptr_array_add(argv, dir);
    g_ptr_array_add(argv, NULL);

    g_auto(GStrv) env = g_get_environ();
    env = g_environ_setenv(env, "LAMINA_PLUGIN_PATH", "", TRUE);
    env = g_environ_setenv(env, "LAMINA_PLUGIN_SYSTEM_PATH", "", TRUE);
    g_autofree char *xdg = g_build_filename(dir, "no-such-xdg-home", NULL);
    env = g_environ_setenv(env, "XDG_DATA_HOME", xdg, TRUE);

    g_autoptr(GError) error = NULL;
    int wait_status = 0;
    g_assert_true(g_spawn_sync(NULL, (char **) argv->pdata, env, G_SPAWN_DEFAULT, NULL, NULL,
                               &run->out, &run->err, &wait_status, &error));
    g_assert_no_error(error);
    g_assert_true(WIFEXITED(wait_status));
    run->status = WEXITSTATUS(wait_status);
}

static void assert_has(const char *text, const char *needle)
{
    if (strstr(text, needle) == NULL)
        g_error("output lacks \"%s\":\n%s", needle, text);
}

static void test_list(void)
{
    g_auto(Run) run = {0};
    run_plugins(&run, (const char *const[]){NULL});
    g_assert_cmpint(run.status, ==, 0);
    g_autofree char *dir = plugin_dir();
    g_autofree char *good = g_build_filename(dir, "lamina-good.so", NULL);
    g_autofree char *abi_old = g_build_filename(dir, "lamina-abi-old.so", NULL);
    g_autofree char *dup_b = g_build_filename(dir, "lamina-dup-b.so", NULL);

    /* Features grouped by kind, each with its plugin, version and file. */
    const char *optimizers = strstr(run.out, "Optimizers:\n");
    const char *initializers = strstr(run.out, "Initializers:\n");
    g_assert_nonnull(optimizers);
    g_assert_nonnull(initializers);
    const char *sgd = strstr(run.out, "  test_sgd  ");
    g_assert_true(sgd > optimizers && sgd < initializers);
    const char *line_end = strchr(sgd, '\n');
    g_autofree char *line = g_strndup(sgd, line_end - sgd);
    assert_has(line, "test.good 1.2.3");
    assert_has(line, good);
    assert_has(run.out, "Backends:\n  (none)\n");
    assert_has(run.out, "needs_helper"); /* loads: its helper lies beside it here */

    /* Then the files that failed, with their reasons. */
    const char *failed = strstr(run.out, "Plugin files that failed");
    g_assert_nonnull(failed);
    g_autofree char *abi_line = g_strdup_printf("%s: plugin ABI %d.%d, this Lamina %d.%d", abi_old,
                                                LMN_ABI_MAJOR - 1, LMN_ABI_MINOR, LMN_ABI_MAJOR,
                                                LMN_ABI_MINOR);
    assert_has(failed, abi_line);
    assert_has(failed, "lamina-noentry.so: not a Lamina plugin");
    assert_has(failed, "field 'name' is NULL");
    g_autofree char *dup_line =
        g_strdup_printf("%s: initializer 'twin' is also provided by", dup_b);
    assert_has(failed, dup_line);
    assert_has(run.out, "Search path");
}

static void test_describe(void)
{
    g_auto(Run) run = {0};
    run_plugins(&run, (const char *const[]){"describe", "test_sgd", NULL});
    g_assert_cmpint(run.status, ==, 0);
    assert_has(run.out, "test_sgd (optimizer)\n  plain SGD\n");
    assert_has(run.out, "plugin: test.good 1.2.3 (MIT)");
    assert_has(run.out, "lamina-good.so");
    assert_has(run.out, "lr (float, default 0.01, range > 0)\n      learning rate\n");
    assert_has(run.out, "momentum (float, default 0, range in [0, 1])\n      momentum factor\n");

    g_auto(Run) by_kind = {0};
    run_plugins(&by_kind,
                (const char *const[]){"describe", "test_const", "--kind", "initializer", NULL});
    g_assert_cmpint(by_kind.status, ==, 0);
    assert_has(by_kind.out, "value (float, default 0.5, range in [-10, 10])");
}

static void test_describe_unknown(void)
{
    g_auto(Run) typo = {0};
    run_plugins(&typo, (const char *const[]){"describe", "test_sgdd", NULL});
    g_assert_cmpint(typo.status, ==, 1);
    assert_has(typo.err, "lamina plugins: unknown optimizer 'test_sgdd' (did you mean "
                         "'test_sgd'?); known optimizers: test_sgd");

    g_auto(Run) wrong_kind = {0};
    run_plugins(&wrong_kind,
                (const char *const[]){"describe", "test_sgd", "--kind", "layer", NULL});
    g_assert_cmpint(wrong_kind.status, ==, 1);
    assert_has(wrong_kind.err, "unknown layer 'test_sgd'; known layers: test_identity");

    g_auto(Run) nothing = {0};
    run_plugins(&nothing, (const char *const[]){"describe", "zzzzzz", NULL});
    g_assert_cmpint(nothing.status, ==, 1);
    assert_has(nothing.err, "unknown feature 'zzzzzz'");
}

static void test_usage_errors(void)
{
    g_auto(Run) no_name = {0};
    run_plugins(&no_name, (const char *const[]){"describe", NULL});
    g_assert_cmpint(no_name.status, ==, 2);
    assert_has(no_name.err, "describe takes one NAME");

    g_auto(Run) bad_kind = {0};
    run_plugins(&bad_kind, (const char *const[]){"describe", "x", "--kind", "optimiser", NULL});
    g_assert_cmpint(bad_kind.status, ==, 2);
    assert_has(bad_kind.err, "unknown kind 'optimiser'");

    g_auto(Run) extra = {0};
    run_plugins(&extra, (const char *const[]){"descibe", NULL});
    g_assert_cmpint(extra.status, ==, 2);
    assert_has(extra.err, "unknown argument 'descibe' (did you mean 'describe'?)");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/cli/plugins/list", test_list);
    g_test_add_func("/cli/plugins/describe", test_describe);
    g_test_add_func("/cli/plugins/describe-unknown", test_describe_unknown);
    g_test_add_func("/cli/plugins/usage-errors", test_usage_errors);
    return g_test_run();
}
