/* Tests of the out-of-process plugin scan and the registry cache, run through `lamina` as a user
 * would: plugins whose query segfaults, aborts, exits or hangs, and a truncated file, must be
 * reported by name with their reason while every other command keeps working; the cache must
 * spare unchanged files a scan, rescan changed ones and survive being corrupt.
 *
 * Each test works in its own directory with its own cache file (LAMINA_REGISTRY_CACHE), and counts
 * scans by the registry's debug line "scanning in a helper process" and plugins opened in the
 * command's own process by "loading plugin PATH".
 */
#include "e2e-util.h"

#include <glib/gstdio.h>
#include <lamina/version.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utime.h>

/* Long enough for a good plugin's scan on a loaded machine under sanitizers, short enough for
 * the hanging plugin not to slow the suite down much. */
#define SCAN_TIMEOUT "2"
#define SCAN_LINE "scanning in a helper process"
#define LOAD_LINE "loading plugin "

typedef struct {
    char *dir;     /* the test's own directory */
    char *plugins; /* DIR/plugins: the --plugin-path */
    char *cache;   /* DIR/cache/registry.ini */
    char *system;  /* LAMINA_PLUGIN_SYSTEM_PATH for the runs ("" for none) */
} Fixture;

typedef struct {
    int status; /* exit status, or -1 when killed */
    char *out;
    char *err;
} Run;

static void run_clear(Run *run)
{
    g_free(run->out);
    g_free(run->err);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Run, run_clear)

static const char *build_dir(void)
{
    const char *build = g_getenv("LMN_TEST_BUILD_DIR");
    g_assert_nonnull(build);
    return build;
}

static void fixture_setup(Fixture *fx, gconstpointer unused)
{
    fx->dir = g_dir_make_tmp("lamina-scanner-XXXXXX", NULL);
    g_assert_nonnull(fx->dir);
    fx->plugins = g_build_filename(fx->dir, "plugins", NULL);
    g_assert_cmpint(g_mkdir(fx->plugins, 0700), ==, 0);
    fx->cache = g_build_filename(fx->dir, "cache", "registry.ini", NULL);
    fx->system = g_strdup("");
}

static void fixture_teardown(Fixture *fx, gconstpointer unused)
{
    e2e_remove_tree(fx->dir);
    g_free(fx->dir);
    g_free(fx->plugins);
    g_free(fx->cache);
    g_free(fx->system);
}

/* Copies @from (relative to the tests' build directory) into the plugin directory as @name. */
static char *add_plugin(Fixture *fx, const char *from, const char *name)
{
    g_autofree char *src = g_build_filename(build_dir(), from, NULL);
    g_autofree char *data = NULL;
    gsize len = 0;
    g_autoptr(GError) error = NULL;
    g_assert_true(g_file_get_contents(src, &data, &len, &error));
    char *dst = g_build_filename(fx->plugins, name, NULL);
    g_assert_true(g_file_set_contents(dst, data, (gssize) len, &error));
    g_assert_no_error(error);
    return dst;
}

/* Runs `lamina ARGS... --plugin-path DIR/plugins`; @env_extra holds NAME, VALUE pairs. */
static void run_lamina(Fixture *fx, Run *run, const char *const *env_extra, const char *const *args)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_ptr_array_add(argv, (gpointer) e2e_lamina_exe());
    for (guint k = 0; args[k] != NULL; k++)
        g_ptr_array_add(argv, (gpointer) args[k]);
    g_ptr_array_add(argv, (gpointer) "--plugin-path");
    g_ptr_array_add(argv, fx->plugins);
    g_ptr_array_add(argv, NULL);

    g_auto(GStrv) env = g_get_environ();
    g_autofree char *xdg = g_build_filename(fx->dir, "no-xdg-data", NULL);
    env = g_environ_setenv(env, "LAMINA_PLUGIN_PATH", "", TRUE);
    env = g_environ_setenv(env, "LAMINA_PLUGIN_SYSTEM_PATH", fx->system, TRUE);
    env = g_environ_setenv(env, "XDG_DATA_HOME", xdg, TRUE);
    env = g_environ_setenv(env, "LAMINA_REGISTRY_CACHE", fx->cache, TRUE);
    env = g_environ_setenv(env, "LAMINA_PLUGIN_SCAN_TIMEOUT", SCAN_TIMEOUT, TRUE);
    env = g_environ_setenv(env, "G_MESSAGES_DEBUG", "lamina", TRUE);
    env = g_environ_unsetenv(env, "LAMINA_NO_REGISTRY_CACHE");
    for (guint k = 0; env_extra != NULL && env_extra[k] != NULL; k += 2)
        env = g_environ_setenv(env, env_extra[k], env_extra[k + 1], TRUE);

    g_autoptr(GError) error = NULL;
    int wait_status = 0;
    g_assert_true(g_spawn_sync(NULL, (char **) argv->pdata, env, G_SPAWN_DEFAULT, NULL, NULL,
                               &run->out, &run->err, &wait_status, &error));
    g_assert_no_error(error);
    run->status = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
}

static void run_plugins(Fixture *fx, Run *run, const char *const *env_extra)
{
    run_lamina(fx, run, env_extra, (const char *const[]){"plugins", NULL});
}

static void assert_has(const char *text, const char *needle)
{
    if (strstr(text, needle) == NULL)
        g_error("output lacks \"%s\":\n%s", needle, text);
}

static void assert_lacks(const char *text, const char *needle)
{
    if (strstr(text, needle) != NULL)
        g_error("output has \"%s\":\n%s", needle, text);
}

static guint count_lines(const Run *run, const char *needle)
{
    guint n = 0;
    const char *texts[] = {run->out, run->err};
    for (guint t = 0; t < G_N_ELEMENTS(texts); t++) {
        for (const char *p = strstr(texts[t], needle); p != NULL; p = strstr(p + 1, needle))
            n++;
    }
    return n;
}

/* How many plugin files the run scanned out of process. */
static guint count_scans(const Run *run)
{
    return count_lines(run, SCAN_LINE);
}

/* @out without GLib's debug lines (which go to stdout): what the command itself printed. */
static char *without_debug(const char *out)
{
    GString *kept = g_string_new(NULL);
    g_auto(GStrv) lines = g_strsplit(out, "\n", -1);
    for (guint k = 0; lines[k] != NULL; k++) {
        if (!g_str_has_prefix(lines[k], "(lamina "))
            g_string_append_printf(kept, "%s\n", lines[k]);
    }
    return g_string_free(kept, FALSE);
}

static void assert_same_listing(const Run *a, const Run *b)
{
    g_autofree char *la = without_debug(a->out);
    g_autofree char *lb = without_debug(b->out);
    if (strcmp(la, lb) != 0)
        g_error("the listings differ:\n%s\n----\n%s", la, lb);
}

/* How many plugin files the run opened in its own process. */
static guint count_loads(const Run *run)
{
    return count_lines(run, LOAD_LINE);
}

/* Whether the run opened the file whose name ends in @base ("/lamina-sgd.so"). */
static gboolean loaded_file(const Run *run, const char *base)
{
    g_autofree char *needle = g_strdup_printf("%s\n", base);
    const char *texts[] = {run->out, run->err};
    for (guint t = 0; t < G_N_ELEMENTS(texts); t++) {
        for (const char *p = strstr(texts[t], LOAD_LINE); p != NULL; p = strstr(p + 1, LOAD_LINE)) {
            const char *end = strchr(p, '\n');
            g_autofree char *line = g_strndup(p, end ? (gsize) (end - p + 1) : strlen(p));
            if (g_str_has_suffix(line, needle))
                return TRUE;
        }
    }
    return FALSE;
}

/* The line of the failure list that names @path. */
static char *failure_line(const Run *run, const char *path)
{
    const char *failed = strstr(run->out, "Plugin files that failed (skipped):\n");
    if (failed == NULL)
        g_error("no failure list in:\n%s", run->out);
    g_autofree char *needle = g_strdup_printf("  %s: ", path);
    const char *line = strstr(failed, needle);
    if (line == NULL)
        g_error("the failure list does not name %s:\n%s", path, run->out);
    return g_strndup(line, strchr(line, '\n') - line);
}

/* The good plugin's features are listed from its file. */
static void assert_good_listed(const Run *run, const char *good)
{
    g_autofree char *line = g_strdup_printf("  test_sgd  test.good 1.2.3  %s\n", good);
    assert_has(run->out, line);
    assert_has(run->out, "test_identity");
}

typedef struct {
    const char *file;   /* under tests/registry/hostile/, or NULL for the truncated copy */
    const char *reason; /* expected in the failure line */
} Hostile;

static const Hostile hostile_segv = {"lamina-segv.so",
                                     "crashed while being scanned: signal SIGSEGV"};
static const Hostile hostile_abort = {"lamina-abort.so",
                                      "crashed while being scanned: signal SIGABRT"};
static const Hostile hostile_exit = {"lamina-exit.so", "ended the scanner process during its "
                                                       "query: exit status 3"};
static const Hostile hostile_hang = {"lamina-hang.so", "query timed out after " SCAN_TIMEOUT " s"};
static const Hostile hostile_truncated = {NULL, NULL};

/* A copy of the good plugin cut to a quarter: its program headers point past the end, which
 * the loader either rejects or maps and faults on (SIGBUS) while relocating. */
static char *add_truncated(Fixture *fx)
{
    g_autofree char *path = add_plugin(fx, "registry/lamina-good.so", "lamina-truncated.so");
    GStatBuf st;
    g_assert_cmpint(g_stat(path, &st), ==, 0);
    g_assert_cmpint(truncate(path, st.st_size / 4), ==, 0);
    return g_steal_pointer(&path);
}

static char *add_hostile(Fixture *fx, const Hostile *h)
{
    if (h->file == NULL)
        return add_truncated(fx);
    g_autofree char *from = g_build_filename("registry", "hostile", h->file, NULL);
    return add_plugin(fx, from, h->file);
}

static void assert_hostile_reason(const Run *run, const Hostile *h, const char *path)
{
    g_autofree char *line = failure_line(run, path);
    if (h->reason != NULL) {
        assert_has(line, h->reason);
        return;
    }
    if (strstr(line, "signal SIGBUS") == NULL && strstr(line, "signal SIGSEGV") == NULL &&
        strstr(line, "cannot load") == NULL)
        g_error("unexpected reason for the truncated file: %s", line);
}

/* `lamina plugins` with one hostile file next to a good one: exit 0, the good plugin listed, the
 * hostile file named with its reason. */
static void test_hostile(Fixture *fx, gconstpointer data)
{
    const Hostile *h = data;
    g_autofree char *good = add_plugin(fx, "registry/lamina-good.so", "lamina-good.so");
    g_autofree char *bad = add_hostile(fx, h);
    g_auto(Run) run = {0};
    run_plugins(fx, &run, NULL);
    g_assert_cmpint(run.status, ==, 0);
    assert_good_listed(&run, good);
    assert_hostile_reason(&run, h, bad);
    g_assert_cmpuint(count_scans(&run), ==, 2);
}

static const Hostile *const all_hostile[] = {&hostile_segv, &hostile_abort, &hostile_exit,
                                             &hostile_hang, &hostile_truncated};

static const char *system_plugin_path(void)
{
    /* The build tree's plugins, as tests/meson.build gives every test. */
    const char *path = g_getenv("LAMINA_PLUGIN_SYSTEM_PATH");
    g_assert_nonnull(path);
    return path;
}

/* Writes a small dense + softmax config trained with sgd on the cpu backend; returns its path. */
static char *write_train_config(Fixture *fx)
{
    g_autofree char *data = g_build_filename(fx->dir, "blobs.h5", NULL);
    e2e_write_blobs(data, "/train", 256, 1, FALSE);
    e2e_write_blobs(data, "/test", 64, 2, FALSE);
    g_autofree char *config = g_strdup_printf("[model]\ninput = 2\n"
                                              "[layer fc]\ntype = dense\nunits = 4\n"
                                              "[layer loss]\ntype = softmax_cross_entropy\n"
                                              "[optimizer]\ntype = sgd\nlr = 0.1\n"
                                              "[train]\nepochs = 1\nbatch_size = 32\nseed = 1\n"
                                              "backend = cpu\n"
                                              "[data]\ntrain = %s:/train\ntest = %s:/test\n",
                                              data, data);
    char *config_path = g_build_filename(fx->dir, "train.ini", NULL);
    g_assert_true(g_file_set_contents(config_path, config, -1, NULL));
    return config_path;
}

/* `lamina train` with every hostile file on the plugin path trains as if they were absent. */
static void test_train(Fixture *fx, gconstpointer unused)
{
    for (guint k = 0; k < G_N_ELEMENTS(all_hostile); k++)
        g_free(add_hostile(fx, all_hostile[k]));
    g_free(fx->system);
    fx->system = g_strdup(system_plugin_path());

    g_autofree char *config_path = write_train_config(fx);
    g_autofree char *out_dir = g_build_filename(fx->dir, "run", NULL);

    g_auto(Run) run = {0};
    run_lamina(fx, &run, NULL,
               (const char *const[]){"train", config_path, "--output", out_dir, NULL});
    if (run.status != 0)
        g_error("lamina train failed (%d):\n%s\n%s", run.status, run.out, run.err);
    assert_has(run.out, "epoch 1/1");
    g_autofree char *metrics = g_build_filename(out_dir, "metrics.csv", NULL);
    g_assert_true(g_file_test(metrics, G_FILE_TEST_EXISTS));
}

/* A config asking for a feature only a hostile file could provide names that file and why. */
static void test_lookup_names_failed_file(Fixture *fx, gconstpointer unused)
{
    g_autofree char *bad = add_plugin(fx, "registry/hostile/lamina-segv.so", "lamina-crashy.so");
    g_auto(Run) run = {0};
    run_lamina(fx, &run, NULL, (const char *const[]){"plugins", "describe", "crashy", NULL});
    g_assert_cmpint(run.status, ==, 1);
    assert_has(run.err, "'crashy' is not available: ");
    assert_has(run.err, bad);
    assert_has(run.err, "signal SIGSEGV");
}

/* A second run takes every verdict, good and failed, from the cache and spawns no scanner. */
static void test_cache_reused(Fixture *fx, gconstpointer unused)
{
    g_autofree char *good = add_plugin(fx, "registry/lamina-good.so", "lamina-good.so");
    g_autofree char *bad = add_hostile(fx, &hostile_segv);
    g_auto(Run) first = {0};
    run_plugins(fx, &first, NULL);
    g_assert_cmpint(first.status, ==, 0);
    g_assert_cmpuint(count_scans(&first), ==, 2);

    g_autofree char *cache = NULL;
    g_assert_true(g_file_get_contents(fx->cache, &cache, NULL, NULL));
    g_autofree char *good_key = g_strdup_printf("path=%s\n", good);
    g_autofree char *bad_key = g_strdup_printf("path=%s\n", bad);
    assert_has(cache, good_key);
    assert_has(cache, bad_key);
    assert_has(cache, "status=failed");

    g_auto(Run) second = {0};
    run_plugins(fx, &second, NULL);
    g_assert_cmpint(second.status, ==, 0);
    g_assert_cmpuint(count_scans(&second), ==, 0);
    assert_good_listed(&second, good);
    g_autofree char *line = failure_line(&second, bad);
    assert_has(line, hostile_segv.reason);
    /* The same listing, whether scanned or cached (the debug lines aside). */
    assert_has(second.out, "Search path (first match wins):");
}

/* A file whose size or mtime changed is scanned again; the others are not. */
static void test_cache_changed_file(Fixture *fx, gconstpointer unused)
{
    g_autofree char *good = add_plugin(fx, "registry/lamina-good.so", "lamina-good.so");
    g_autofree char *bad = add_hostile(fx, &hostile_exit);
    g_auto(Run) first = {0};
    run_plugins(fx, &first, NULL);
    g_assert_cmpuint(count_scans(&first), ==, 2);

    /* A crashing plugin replaced by a good one under the same name (new size and mtime). */
    g_free(add_plugin(fx, "registry/lamina-good.so", "lamina-exit.so"));
    g_auto(Run) second = {0};
    run_plugins(fx, &second, NULL);
    g_assert_cmpint(second.status, ==, 0);
    g_assert_cmpuint(count_scans(&second), ==, 1);
    assert_has(second.out, SCAN_LINE);
    g_autofree char *line = g_strdup_printf("plugin %s: " SCAN_LINE, bad);
    assert_has(second.out, line);
    /* Now a duplicate of the good plugin, not a crash. */
    assert_lacks(second.out, hostile_exit.reason);

    /* Only the modification time changes: scanned again too. */
    struct utimbuf times = {.actime = 1000000000, .modtime = 1000000000};
    g_assert_cmpint(g_utime(good, &times), ==, 0);
    g_auto(Run) third = {0};
    run_plugins(fx, &third, NULL);
    g_assert_cmpuint(count_scans(&third), ==, 1);
    g_autofree char *good_line = g_strdup_printf("plugin %s: " SCAN_LINE, good);
    assert_has(third.out, good_line);
}

static void write_cache(Fixture *fx, const char *text, gssize len)
{
    g_autofree char *dir = g_path_get_dirname(fx->cache);
    g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
    g_assert_true(g_file_set_contents(fx->cache, text, len, NULL));
}

/* A cache that is not a key file, or whose entries are malformed, is ignored and rewritten. */
static void test_cache_corrupt(Fixture *fx, gconstpointer unused)
{
    g_autofree char *good = add_plugin(fx, "registry/lamina-good.so", "lamina-good.so");
    g_autofree char *bad = add_hostile(fx, &hostile_abort);
    static const char garbage[] = "\x7f"
                                  "ELF\x00\x01[[[ not a key file\n=\n";
    write_cache(fx, garbage, sizeof(garbage) - 1);

    g_auto(Run) first = {0};
    run_plugins(fx, &first, NULL);
    g_assert_cmpint(first.status, ==, 0);
    g_assert_cmpuint(count_scans(&first), ==, 2);
    assert_good_listed(&first, good);
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autoptr(GError) error = NULL;
    g_assert_true(g_key_file_load_from_file(kf, fx->cache, G_KEY_FILE_NONE, &error));
    g_assert_no_error(error);
    g_assert_true(g_key_file_has_group(kf, "registry"));

    /* The rewritten cache with each entry's numbers broken: every file is scanned again. */
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(fx->cache, &text, NULL, NULL));
    g_autoptr(GRegex) re = g_regex_new("^(size|mtime)=.*$", G_REGEX_MULTILINE, 0, NULL);
    g_autofree char *broken = g_regex_replace(re, text, -1, 0, "\\1=twelve", 0, NULL);
    g_assert_cmpstr(broken, !=, text);
    write_cache(fx, broken, -1);
    g_auto(Run) second = {0};
    run_plugins(fx, &second, NULL);
    g_assert_cmpint(second.status, ==, 0);
    g_assert_cmpuint(count_scans(&second), ==, 2);
    g_autofree char *line = failure_line(&second, bad);
    assert_has(line, hostile_abort.reason);

    g_auto(Run) third = {0};
    run_plugins(fx, &third, NULL);
    g_assert_cmpuint(count_scans(&third), ==, 0);
}

/* A cache that cannot be read or written (a directory in its place) costs scans, not errors. */
static void test_cache_unwritable(Fixture *fx, gconstpointer unused)
{
    g_autofree char *good = add_plugin(fx, "registry/lamina-good.so", "lamina-good.so");
    g_assert_cmpint(g_mkdir_with_parents(fx->cache, 0700), ==, 0);
    for (int k = 0; k < 2; k++) {
        g_auto(Run) run = {0};
        run_plugins(fx, &run, NULL);
        g_assert_cmpint(run.status, ==, 0);
        g_assert_cmpuint(count_scans(&run), ==, 1);
        assert_good_listed(&run, good);
    }
}

/* LAMINA_NO_REGISTRY_CACHE=1: every run scans, and no cache file appears. */
static void test_cache_disabled(Fixture *fx, gconstpointer unused)
{
    g_autofree char *good = add_plugin(fx, "registry/lamina-good.so", "lamina-good.so");
    const char *const env[] = {"LAMINA_NO_REGISTRY_CACHE", "1", NULL};
    for (int k = 0; k < 2; k++) {
        g_auto(Run) run = {0};
        run_plugins(fx, &run, env);
        g_assert_cmpint(run.status, ==, 0);
        g_assert_cmpuint(count_scans(&run), ==, 1);
        assert_good_listed(&run, good);
    }
    g_assert_false(g_file_test(fx->cache, G_FILE_TEST_EXISTS));
}

/* A --plugin-path copy of the system's sgd shadows it, with a notice naming both files. */
static void test_shadow_notice(Fixture *fx, gconstpointer unused)
{
    g_autofree char *system_sgd = g_build_filename(g_getenv("LMN_BUILD_ROOT"), "plugins",
                                                   "optimizers", "lamina-sgd.so", NULL);
    g_autofree char *system_dir = g_path_get_dirname(system_sgd);
    g_free(fx->system);
    fx->system = g_strdup(system_dir);
    g_autofree char *mine = g_build_filename(fx->plugins, "lamina-my-sgd.so", NULL);
    g_autofree char *data = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(system_sgd, &data, &len, NULL));
    g_assert_true(g_file_set_contents(mine, data, (gssize) len, NULL));

    g_auto(Run) run = {0};
    run_plugins(fx, &run, NULL);
    g_assert_cmpint(run.status, ==, 0);
    g_autofree char *notice =
        g_strdup_printf("notice: optimizer 'sgd' of %s is shadowed by %s, which "
                        "comes first in the search path",
                        system_sgd, mine);
    assert_has(run.err, notice);
    /* One line, once. */
    const char *at = strstr(run.err, notice);
    g_assert_null(strstr(at + 1, notice));
    /* The copy met first is the one listed (columns are aligned: find the line). */
    const char *sgd = strstr(run.out, "\n  sgd ");
    g_assert_nonnull(sgd);
    g_autofree char *line = g_strndup(sgd + 1, strchr(sgd + 1, '\n') - (sgd + 1));
    assert_has(line, mine);
}

/* With a warm cache, `lamina train` opens only the plugins providing what its config uses
 * (dense, the loss, sgd, the default schedule, the initializers and the cpu backend), not the
 * other optimizers, layers or the vulkan backend; `lamina plugins` opens none. */
static void test_lazy_train(Fixture *fx, gconstpointer unused)
{
    g_free(fx->system);
    fx->system = g_strdup(system_plugin_path());
    g_auto(Run) warm = {0};
    run_plugins(fx, &warm, NULL);
    g_assert_cmpint(warm.status, ==, 0);
    g_assert_cmpuint(count_scans(&warm), >, 20);
    g_assert_cmpuint(count_loads(&warm), ==, 0);

    g_auto(Run) list = {0};
    run_plugins(fx, &list, NULL);
    g_assert_cmpint(list.status, ==, 0);
    g_assert_cmpuint(count_scans(&list), ==, 0);
    g_assert_cmpuint(count_loads(&list), ==, 0);
    assert_same_listing(&list, &warm);

    g_autofree char *config_path = write_train_config(fx);
    g_autofree char *out_dir = g_build_filename(fx->dir, "run", NULL);
    g_auto(Run) run = {0};
    run_lamina(fx, &run, NULL,
               (const char *const[]){"train", config_path, "--output", out_dir, NULL});
    if (run.status != 0)
        g_error("lamina train failed (%d):\n%s\n%s", run.status, run.out, run.err);
    assert_has(run.out, "epoch 1/1");
    g_assert_cmpuint(count_scans(&run), ==, 0);
    const char *const needed[] = {"/lamina-dense.so", "/lamina-losses.so", "/lamina-sgd.so",
                                  "/lamina-cpu.so"};
    for (guint k = 0; k < G_N_ELEMENTS(needed); k++) {
        if (!loaded_file(&run, needed[k]))
            g_error("lamina train did not load %s:\n%s", needed[k], run.out);
    }
    const char *const unneeded[] = {"/lamina-adam.so", "/lamina-conv.so", "/lamina-recurrent.so",
                                    "/lamina-vulkan.so"};
    for (guint k = 0; k < G_N_ELEMENTS(unneeded); k++) {
        if (loaded_file(&run, unneeded[k]))
            g_error("lamina train loaded %s, which it does not use:\n%s", unneeded[k], run.out);
    }
    /* Six today (dense, losses, sgd, schedules, initializers, cpu) of more than twenty. */
    g_assert_cmpuint(count_loads(&run), <=, 8);
}

/* `lamina plugins describe NAME` with a warm cache opens exactly the file providing NAME. */
static void test_lazy_describe(Fixture *fx, gconstpointer unused)
{
    g_autofree char *good = add_plugin(fx, "registry/lamina-good.so", "lamina-good.so");
    g_free(add_plugin(fx, "registry/lamina-dup-a.so", "lamina-dup-a.so"));
    g_auto(Run) warm = {0};
    run_plugins(fx, &warm, NULL);
    g_assert_cmpint(warm.status, ==, 0);

    g_auto(Run) run = {0};
    run_lamina(fx, &run, NULL, (const char *const[]){"plugins", "describe", "test_sgd", NULL});
    g_assert_cmpint(run.status, ==, 0);
    g_assert_cmpuint(count_scans(&run), ==, 0);
    g_assert_cmpuint(count_loads(&run), ==, 1);
    g_autofree char *line = g_strdup_printf(LOAD_LINE "%s\n", good);
    assert_has(run.out, line);
    assert_has(run.out, "test_sgd (optimizer)");
    assert_has(run.out, "Parameters:");
    assert_has(run.out, "lr");
}

/* The listing made from the scans' summaries is the one made by opening every file (which is
 * what happens without a scanner). */
static void test_lazy_listing_matches_eager(Fixture *fx, gconstpointer unused)
{
    g_free(add_plugin(fx, "registry/lamina-good.so", "lamina-good.so"));
    g_free(add_plugin(fx, "registry/lamina-dup-a.so", "lamina-dup-a.so"));
    g_free(add_plugin(fx, "registry/lamina-dup-b.so", "lamina-dup-b.so"));
    g_free(fx->system);
    fx->system = g_strdup(system_plugin_path());
    g_auto(Run) lazy = {0};
    run_plugins(fx, &lazy, NULL);
    g_assert_cmpint(lazy.status, ==, 0);
    g_assert_cmpuint(count_loads(&lazy), ==, 0);

    g_autofree char *missing = g_build_filename(fx->dir, "no-such-scanner", NULL);
    const char *const env[] = {"LAMINA_PLUGIN_SCANNER", missing, "LAMINA_NO_REGISTRY_CACHE", "1",
                               NULL};
    g_auto(Run) eager = {0};
    run_plugins(fx, &eager, env);
    g_assert_cmpint(eager.status, ==, 0);
    g_assert_cmpuint(count_loads(&eager), >, 20);
    assert_same_listing(&lazy, &eager);
}

/* Replaces @path's contents by a same-size file the loader rejects (its first page zeroed),
 * then gives it back its modification time: size and mtime say nothing changed. */
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
    GStatBuf now;
    g_assert_cmpint(g_stat(path, &now), ==, 0);
    g_assert_cmpint(now.st_size, ==, st.st_size);
    g_assert_cmpint(now.st_mtim.tv_sec, ==, st.st_mtim.tv_sec);
    g_assert_cmpint(now.st_mtim.tv_nsec, ==, st.st_mtim.tv_nsec);
}

/* A plugin rewritten after a cached scan with its old size and mtime is scanned again (its
 * ctime changed), so a broken replacement is reported, not opened. */
static void test_swapped_same_size_mtime(Fixture *fx, gconstpointer unused)
{
    g_autofree char *good = add_plugin(fx, "registry/lamina-good.so", "lamina-good.so");
    g_auto(Run) warm = {0};
    run_plugins(fx, &warm, NULL);
    g_assert_cmpint(warm.status, ==, 0);
    assert_good_listed(&warm, good);

    swap_keeping_size_and_mtime(good);
    g_auto(Run) run = {0};
    run_lamina(fx, &run, NULL, (const char *const[]){"plugins", "describe", "test_sgd", NULL});
    g_assert_cmpint(run.status, ==, 1);
    g_assert_cmpuint(count_scans(&run), ==, 1);
    g_assert_cmpuint(count_loads(&run), ==, 0);
    assert_has(run.err, "unknown feature 'test_sgd'");

    g_auto(Run) list = {0};
    run_plugins(fx, &list, NULL);
    g_assert_cmpuint(count_scans(&list), ==, 0);
    g_autofree char *line = failure_line(&list, good);
    assert_has(line, "cannot load");
}

/* A cache entry whose summary no longer matches the file (here: edited to another version) fails
 * the lookup that opens it, naming the file and the difference; the entry is dropped and the next
 * run scans the file again. */
static void test_summary_mismatch(Fixture *fx, gconstpointer unused)
{
    g_autofree char *good = add_plugin(fx, "registry/lamina-good.so", "lamina-good.so");
    g_auto(Run) warm = {0};
    run_plugins(fx, &warm, NULL);
    g_assert_cmpint(warm.status, ==, 0);

    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(fx->cache, &text, NULL, NULL));
    g_autoptr(GRegex) re = g_regex_new("^version=1\\.2\\.3$", G_REGEX_MULTILINE, 0, NULL);
    g_autofree char *edited = g_regex_replace(re, text, -1, 0, "version=9.9", 0, NULL);
    g_assert_cmpstr(edited, !=, text);
    write_cache(fx, edited, -1);

    g_auto(Run) listed = {0};
    run_plugins(fx, &listed, NULL);
    g_assert_cmpuint(count_scans(&listed), ==, 0);
    assert_has(listed.out, "test.good 9.9");

    g_auto(Run) run = {0};
    run_lamina(fx, &run, NULL, (const char *const[]){"plugins", "describe", "test_sgd", NULL});
    g_assert_cmpint(run.status, ==, 1);
    g_autofree char *message = g_strdup_printf(
        "optimizer 'test_sgd' cannot be used: %s: the plugin no longer matches its scan: its "
        "version is '1.2.3', the scan said '9.9'",
        good);
    assert_has(run.err, message);

    g_auto(Run) again = {0};
    run_plugins(fx, &again, NULL);
    g_assert_cmpuint(count_scans(&again), ==, 1);
    assert_good_listed(&again, good);
}

/* Without a scanner to run, plugins still load, with a warning that protection is off. */
static void test_scanner_missing(Fixture *fx, gconstpointer unused)
{
    g_autofree char *good = add_plugin(fx, "registry/lamina-good.so", "lamina-good.so");
    g_autofree char *missing = g_build_filename(fx->dir, "no-such-scanner", NULL);
    const char *const env[] = {"LAMINA_PLUGIN_SCANNER", missing, NULL};
    g_auto(Run) run = {0};
    run_plugins(fx, &run, env);
    g_assert_cmpint(run.status, ==, 0);
    assert_good_listed(&run, good);
    assert_has(run.err, "plugins are loaded without crash protection");
    assert_has(run.err, missing);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn, data) g_test_add(path, Fixture, data, fixture_setup, fn, fixture_teardown)
    ADD("/registry/scanner/hostile/segv", test_hostile, &hostile_segv);
    ADD("/registry/scanner/hostile/abort", test_hostile, &hostile_abort);
    ADD("/registry/scanner/hostile/exit", test_hostile, &hostile_exit);
    ADD("/registry/scanner/hostile/hang", test_hostile, &hostile_hang);
    ADD("/registry/scanner/hostile/truncated", test_hostile, &hostile_truncated);
    ADD("/registry/scanner/train-despite-hostile", test_train, NULL);
    ADD("/registry/scanner/lookup-names-failed-file", test_lookup_names_failed_file, NULL);
    ADD("/registry/scanner/cache/reused", test_cache_reused, NULL);
    ADD("/registry/scanner/cache/changed-file", test_cache_changed_file, NULL);
    ADD("/registry/scanner/cache/corrupt", test_cache_corrupt, NULL);
    ADD("/registry/scanner/cache/unwritable", test_cache_unwritable, NULL);
    ADD("/registry/scanner/cache/disabled", test_cache_disabled, NULL);
    ADD("/registry/scanner/shadow-notice", test_shadow_notice, NULL);
    ADD("/registry/scanner/scanner-missing", test_scanner_missing, NULL);
    ADD("/registry/lazy/train", test_lazy_train, NULL);
    ADD("/registry/lazy/describe", test_lazy_describe, NULL);
    ADD("/registry/lazy/listing-matches-eager", test_lazy_listing_matches_eager, NULL);
    ADD("/registry/lazy/swapped-same-size-mtime", test_swapped_same_size_mtime, NULL);
    ADD("/registry/lazy/summary-mismatch", test_summary_mismatch, NULL);
#undef ADD
    return g_test_run();
}
