/* Hostile configs and output faults, run through the real `lamina`.
 *
 * Every case must end cleanly: a non-zero exit status (not a signal), a message with the file,
 * the line or the directory and what to do, no raw control characters from the config on the
 * terminal, and every file an earlier run left byte for byte as it was.  Disk full is made
 * without root: metrics.csv as a symlink to /dev/full (ENOSPC), and a file size limit
 * (RLIMIT_FSIZE, with SIGXFSZ ignored: EFBIG) below the checkpoint's size.
 */
#include "../../e2e/e2e-util.h"

#include <glib/gstdio.h>
#include <fcntl.h>
#include <hdf5.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

enum { N_SAMPLES = 64 };

static char *tmp_dir;
static char *data_path;

/* x float32 [64, 784], y int32 [64]. */
static void write_data(const char *path)
{
    g_autofree float *x = g_new(float, N_SAMPLES * 784);
    gint32 y[N_SAMPLES];
    for (int i = 0; i < N_SAMPLES * 784; i++)
        x[i] = (float) ((i * 37) % 101) / 101.0f;
    for (int i = 0; i < N_SAMPLES; i++)
        y[i] = i % 10;
    e2e_write_split(path, "train", x, N_SAMPLES, 784, y);
}

/* A small valid config with @extra lines at the end of [train] (line 14 on). */
static char *config_text(const char *extra)
{
    return g_strdup_printf("[model]\n"                      /* 1 */
                           "input = 1, 28, 28\n"            /* 2 */
                           "[layer flat]\n"                 /* 3 */
                           "type = flatten\n"               /* 4 */
                           "[layer fc]\n"                   /* 5 */
                           "type = dense\n"                 /* 6 */
                           "units = 10\n"                   /* 7 */
                           "[layer loss]\n"                 /* 8 */
                           "type = softmax_cross_entropy\n" /* 9 */
                           "[optimizer]\n"                  /* 10 */
                           "type = sgd\n"                   /* 11 */
                           "lr = 0.01\n"                    /* 12 */
                           "[train]\n"                      /* 13 */
                           "%s"                             /* 14... */
                           "[data]\n"
                           "train = %s:/train\n",
                           extra, data_path);
}

static char *write_config(const char *name, const char *text)
{
    char *path = g_build_filename(tmp_dir, name, NULL);
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    return path;
}

static char *out_dir_for(const char *name)
{
    char *dir = g_build_filename(tmp_dir, name, NULL);
    e2e_remove_tree(dir);
    return dir;
}

static void assert_has(const char *what, const char *text, const char *const *frags)
{
    for (guint i = 0; frags[i]; i++)
        if (!strstr(text, frags[i]))
            g_error("%s: the message lacks \"%s\":\n%s", what, frags[i], text);
    g_assert_null(strstr(text, "AddressSanitizer"));
    g_assert_null(strstr(text, "runtime error"));
}

/* Runs `lamina train CONFIG --output OUT` and expects a clean failure with every fragment. */
static char *expect_train_failure(const char *config, const char *out, const char *const *frags)
{
    g_autofree char *stdout_text = NULL;
    char *err = NULL;
    int status = e2e_run_lamina(&stdout_text, &err, "train", config, "--output", out, "-q", NULL);
    g_test_message("exit status %d, stderr:\n%s", status, err);
    g_assert_cmpint(status, >, 0); /* -1: killed by a signal */
    assert_has(config, err, frags);
    return err;
}

static void expect_config_failure(const char *extra_or_text, gboolean whole,
                                  const char *const *frags)
{
    g_autofree char *text = whole ? g_strdup(extra_or_text) : config_text(extra_or_text);
    g_autofree char *config = write_config("hostile.ini", text);
    g_autofree char *out = out_dir_for("out-config");
    g_autofree char *err = expect_train_failure(config, out, frags);
    /* A config error stops the run before anything is written. */
    g_assert_false(g_file_test(out, G_FILE_TEST_EXISTS));
}

static void test_dup_group(void)
{
    g_autofree char *text = config_text("epochs = 1\n");
    g_autofree char *dup = g_strconcat(text, "[layer fc]\nunits = 20\n", NULL);
    expect_config_failure(dup, TRUE,
                          (const char *const[]){"hostile.ini:17", "[layer fc]", "given twice",
                                                "lines 5 and 17", NULL});
}

static void test_dup_key(void)
{
    expect_config_failure("epochs = 1\nbatch_size = 8\nepochs = 3\n", FALSE,
                          (const char *const[]){"hostile.ini:16 [train]", "'epochs'", "given twice",
                                                "lines 14 and 16", NULL});
}

/* A line that clears the screen and sets the terminal's title: echoed escaped, at its line. */
static void test_garbage_line(void)
{
    g_autofree char *text = config_text("epochs = 1\n\x1b[2J\x1b]0;pwned\x07\n");
    g_autofree char *config = write_config("hostile.ini", text);
    g_autofree char *out = out_dir_for("out-config");
    g_autofree char *err =
        expect_train_failure(config, out,
                             (const char *const[]){"hostile.ini:15:", "\\x1b[2J\\x1b]0;pwned\\x07",
                                                   "control character", NULL});
    for (const char *p = err; *p; p++)
        if (*p != '\n' && g_ascii_iscntrl(*p))
            g_error("a raw control character 0x%02x reached the terminal:\n%s", *p, err);
}

static void test_bad_value_line(void)
{
    expect_config_failure(
        "epochs = 1\nbatch_size = eight\n", FALSE,
        (const char *const[]){"hostile.ini:15 [train]", "batch_size", "eight", NULL});
}

/* Before, 2^24 samples of 784 floats went to the allocator: "cannot allocate 52613349376 bytes". */
static void test_batch_too_large(void)
{
    g_autofree char *err = NULL;
    g_autofree char *text = config_text("epochs = 1\nbatch_size = 16777216\n");
    g_autofree char *config = write_config("hostile.ini", text);
    g_autofree char *out = out_dir_for("out-batch");
    err = expect_train_failure(config, out,
                               (const char *const[]){"hostile.ini:15 [train] batch_size",
                                                     "16777216", "64 samples", "at most 64", NULL});
    g_assert_null(strstr(err, "allocate"));
}

/* Two losses: %s after [layer fc]'s keys (line 8 on), %s after [layer loss]'s, %s after
 * [layer aux]'s, %s: more layers at the end of the model. */
static char *loss_config(const char *fc, const char *loss, const char *aux, const char *tail)
{
    return g_strdup_printf("[model]\n"           /* 1 */
                           "input = 1, 28, 28\n" /* 2 */
                           "[layer flat]\n"      /* 3 */
                           "type = flatten\n"    /* 4 */
                           "[layer fc]\n"        /* 5 */
                           "type = dense\n"      /* 6 */
                           "units = 10\n"        /* 7 */
                           "%s"                  /* 8... */
                           "[layer loss]\n"
                           "type = softmax_cross_entropy\n"
                           "%s"
                           "[layer head]\n"
                           "type = dense\n"
                           "units = 2\n"
                           "input = flat\n"
                           "[layer aux]\n"
                           "type = mse\n"
                           "%s"
                           "%s"
                           "[optimizer]\n"
                           "type = sgd\n"
                           "[train]\n"
                           "epochs = 1\n"
                           "batch_size = 8\n"
                           "[data]\n"
                           "train = %s:/train\n",
                           fc, loss, aux, tail, data_path);
}

static void expect_loss_failure(const char *fc, const char *loss, const char *aux, const char *tail,
                                const char *const *frags)
{
    g_autofree char *text = loss_config(fc, loss, aux, tail);
    expect_config_failure(text, TRUE, frags);
}

/* The data file has no "aux": named with the file and split. */
static void test_loss_target_missing(void)
{
    g_autofree char *want = g_strdup_printf("no dataset 'aux' in %s:/train", data_path);
    expect_loss_failure("", "", "target = aux\n", "",
                        (const char *const[]){want, "target = aux", NULL});
}

/* "short" has 63 rows for 64 samples. */
static void test_loss_target_length(void)
{
    g_autofree char *want = g_strdup_printf("%s:/train", data_path);
    expect_loss_failure("", "", "target = short\n", "",
                        (const char *const[]){want, "x has 64 samples but short has 63", NULL});
}

/* A target that is no dataset name at all. */
static void test_loss_target_bad_name(void)
{
    expect_loss_failure("", "", "target = ../x\n", "",
                        (const char *const[]){"hostile.ini:16 [layer aux] target", "'../x'", NULL});
}

static void test_loss_weight_non_loss(void)
{
    expect_loss_failure("weight = 0.5\n", "", "target = z\n", "",
                        (const char *const[]){"hostile.ini:8 [layer fc] weight",
                                              "only to loss layers", "'fc' (dense)", NULL});
}

static void test_loss_weight_negative(void)
{
    expect_loss_failure(
        "", "weight = -1\n", "target = z\n", "",
        (const char *const[]){"hostile.ini:10", "[layer loss]", "weight", "-1", NULL});
}

static void test_loss_weight_non_numeric(void)
{
    expect_loss_failure(
        "", "weight = heavy\n", "target = z\n", "",
        (const char *const[]){"hostile.ini:10", "[layer loss]", "weight", "heavy", NULL});
}

/* A loss's scalar read by another layer. */
static void test_loss_feeds_layer(void)
{
    expect_loss_failure("", "", "target = z\n",
                        "[layer more]\ntype = dense\nunits = 2\ninput = loss\n",
                        (const char *const[]){"hostile.ini:8 [layer loss]",
                                              "must not feed another layer", "'more'", NULL});
}

/* Adversarial training attacks a model's one loss. */
static void test_loss_adversarial(void)
{
    g_autofree char *text = loss_config("", "", "target = z\n", "");
    g_auto(GStrv) parts = g_strsplit(text, "epochs = 1\n", 2);
    g_autofree char *full =
        g_strjoinv("epochs = 1\nadversarial = fgsm\nadversarial_eps = 0.1\n", parts);
    expect_config_failure(full, TRUE,
                          (const char *const[]){"[train] adversarial", "one loss", "has 2", NULL});
}

static char *good_config(void)
{
    g_autofree char *text = config_text("epochs = 1\nbatch_size = 8\n");
    return write_config("good.ini", text);
}

/* A run holding OUTPUT/.lock (this process, with the pid a run writes there). */
static void test_output_locked(void)
{
    g_autofree char *config = good_config();
    g_autofree char *out = out_dir_for("out-locked");
    g_assert_cmpint(g_mkdir_with_parents(out, 0755), ==, 0);
    g_autofree char *lock = g_build_filename(out, ".lock", NULL);
    int fd = g_open(lock, O_RDWR | O_CREAT, 0644);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(flock(fd, LOCK_EX | LOCK_NB), ==, 0);
    g_autofree char *pid = g_strdup_printf("%ld\n", (long) getpid());
    g_assert_cmpint(write(fd, pid, strlen(pid)), ==, (gssize) strlen(pid));
    g_strstrip(pid);
    g_autofree char *want = g_strdup_printf("(pid %s)", pid);
    g_autofree char *err = expect_train_failure(
        config, out, (const char *const[]){out, "in use by another", want, NULL});
    g_autofree char *metrics = g_build_filename(out, "metrics.csv", NULL);
    g_assert_false(g_file_test(metrics, G_FILE_TEST_EXISTS));
    close(fd);
    /* Released: the next run goes ahead. */
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", config, "--output", out, "-q", NULL), ==,
                    0);
}

/* /proc/self is a directory no one can create files in, root included. */
static void test_output_unwritable(void)
{
    g_autofree char *config = good_config();
    g_autofree char *stdout_text = NULL, *err = NULL;
    int status =
        e2e_run_lamina(&stdout_text, &err, "train", config, "--output", "/proc/self", NULL);
    g_test_message("exit status %d, stdout:\n%s\nstderr:\n%s", status, stdout_text, err);
    g_assert_cmpint(status, ==, 1);
    assert_has("unwritable", err,
               (const char *const[]){"/proc/self", "cannot write in the output directory",
                                     "writable --output", NULL});
    /* Before the first epoch, not after it. */
    g_assert_null(strstr(stdout_text, "epoch 1"));
}

/* A checkpoint's temporary file from a killed run goes, with a notice; others' files stay. */
static void test_stale_temp(void)
{
    g_autofree char *config = good_config();
    g_autofree char *out = out_dir_for("out-stale");
    g_assert_cmpint(g_mkdir_with_parents(out, 0755), ==, 0);
    g_autofree char *stale = g_build_filename(out, ".final.h5.Ab3xYz.tmp", NULL);
    g_autofree char *other = g_build_filename(out, ".notes.tmp", NULL);
    g_autofree char *mine = g_build_filename(out, "final.h5.keep.tmp", NULL);
    g_assert_true(g_file_set_contents(stale, "half a checkpoint", -1, NULL));
    g_assert_true(g_file_set_contents(other, "someone's", -1, NULL));
    g_assert_true(g_file_set_contents(mine, "someone's", -1, NULL));
    g_autofree char *err = NULL;
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "train", config, "--output", out, "-q", NULL), ==,
                    0);
    assert_has("stale", err, (const char *const[]){"notice:", ".final.h5.Ab3xYz.tmp", out, NULL});
    g_assert_false(g_file_test(stale, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(other, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(mine, G_FILE_TEST_EXISTS));
}

/* A first good run, whose final.h5 a failing second run must leave as it was. */
static char *first_run(const char *out, char **final_bytes, gsize *final_len)
{
    char *config = good_config();
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", config, "--output", out, "-q", NULL), ==,
                    0);
    g_autofree char *final = g_build_filename(out, "final.h5", NULL);
    g_assert_true(g_file_get_contents(final, final_bytes, final_len, NULL));
    return config;
}

static void assert_final_unchanged(const char *out, const char *bytes, gsize len)
{
    g_autofree char *final = g_build_filename(out, "final.h5", NULL);
    g_autofree char *now = NULL;
    gsize now_len = 0;
    g_assert_true(g_file_get_contents(final, &now, &now_len, NULL));
    g_assert_cmpmem(now, now_len, bytes, len);
    /* No temporary file is left behind. */
    g_autoptr(GDir) dir = g_dir_open(out, 0, NULL);
    for (const char *name; (name = g_dir_read_name(dir));)
        g_assert_false(g_str_has_suffix(name, ".tmp"));
}

static void test_metrics_disk_full(void)
{
    g_autofree char *out = out_dir_for("out-metrics-full");
    g_autofree char *bytes = NULL;
    gsize len = 0;
    g_autofree char *config = first_run(out, &bytes, &len);
    g_autofree char *metrics = g_build_filename(out, "metrics.csv", NULL);
    g_assert_cmpint(g_unlink(metrics), ==, 0);
    g_assert_cmpint(symlink("/dev/full", metrics), ==, 0);
    g_autofree char *err = expect_train_failure(
        config, out, (const char *const[]){"metrics.csv", g_strerror(ENOSPC), "free space", NULL});
    assert_final_unchanged(out, bytes, len);
}

static void limit_file_size(gpointer data)
{
    struct rlimit rl = {.rlim_cur = GPOINTER_TO_SIZE(data), .rlim_max = RLIM_INFINITY};
    setrlimit(RLIMIT_FSIZE, &rl);
    signal(SIGXFSZ, SIG_IGN);
}

/* The checkpoint meets a file size limit below its size: EFBIG from the write, as a full disk
 * gives ENOSPC.  Before, HDF5's error stack came over two lines and the process then died with
 * SIGSEGV in HDF5's shutdown. */
static void test_checkpoint_disk_full(void)
{
    g_autofree char *out = out_dir_for("out-ckpt-full");
    g_autofree char *bytes = NULL;
    gsize len = 0;
    g_autofree char *config = first_run(out, &bytes, &len);
    g_assert_cmpuint(len, >, 16384);
    const char *argv[] = {e2e_lamina_exe(), "train", config, "--output", out, "-q", NULL};
    g_autofree char *err = NULL;
    int status = 0;
    g_autoptr(GError) error = NULL;
    g_assert_true(g_spawn_sync(NULL, (char **) argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL,
                               limit_file_size, GSIZE_TO_POINTER(16384), NULL, &err, &status,
                               &error));
    g_assert_no_error(error);
    g_test_message("wait status %d, stderr:\n%s", status, err);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 1);
    g_autofree char *final = g_build_filename(out, "final.h5", NULL);
    assert_has("checkpoint", err,
               (const char *const[]){final, g_strerror(EFBIG), "free space", "as it was", NULL});
    /* One line besides notices, without HDF5's internals. */
    g_auto(GStrv) lines = g_strsplit(g_strchomp(err), "\n", -1);
    guint n_lines = 0;
    for (guint i = 0; lines[i]; i++)
        n_lines += !g_str_has_prefix(lines[i], "notice:");
    g_assert_cmpuint(n_lines, ==, 1);
    g_assert_null(strstr(err, "errno ="));
    g_assert_null(strstr(err, "HDF5"));
    assert_final_unchanged(out, bytes, len);
}

/* SIGTERM saves interrupted.h5 like Ctrl-C; a Ctrl-C right after it must not kill the save. */
/* SIGTERM during training, then SIGINT: right after it (while the run is saving), or once
 * interrupted.h5 is there (while the process is on its way out).  Either way the state is saved
 * and the exit status is 130; the second signal never kills the process. */
static void run_two_signals(const char *name, gboolean after_save)
{
    g_autofree char *text = config_text("epochs = 1000000\nbatch_size = 8\n");
    g_autofree char *config = write_config("long.ini", text);
    g_autofree char *out = out_dir_for(name);
    const char *argv[] = {e2e_lamina_exe(), "train", config, "--output", out, "-q", NULL};
    GPid pid = 0;
    g_autoptr(GError) error = NULL;
    g_assert_true(g_spawn_async(NULL, (char **) argv, NULL,
                                G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL,
                                &pid, &error));
    g_assert_no_error(error);
    /* Training has begun once the first epoch's row is there. */
    g_autofree char *metrics = g_build_filename(out, "metrics.csv", NULL);
    for (int i = 0; i < 3000 && !g_file_test(metrics, G_FILE_TEST_EXISTS); i++)
        g_usleep(10000);
    g_assert_true(g_file_test(metrics, G_FILE_TEST_EXISTS));
    g_autofree char *saved = g_build_filename(out, "interrupted.h5", NULL);
    g_assert_cmpint(kill(pid, SIGTERM), ==, 0);
    if (after_save) {
        /* Until the file is there (a save under load, with its fsync, can take seconds); the
         * process may have exited by then (a zombie: kill still succeeds). */
        for (int i = 0; i < 30000 && !g_file_test(saved, G_FILE_TEST_EXISTS); i++)
            g_usleep(1000);
        g_assert_true(g_file_test(saved, G_FILE_TEST_EXISTS));
    }
    g_assert_cmpint(kill(pid, SIGINT), ==, 0);
    int status = 0;
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_spawn_close_pid(pid);
    g_test_message("wait status %d", status);
    if (WIFSIGNALED(status))
        g_error("%s: lamina train was killed by signal %d; expected exit status 130", name,
                WTERMSIG(status));
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 130);
    g_assert_cmpint(e2e_read_attr_int(saved, "/train", "step"), >, 0);
}

static void test_sigterm_second_signal(void)
{
    run_two_signals("out-sigterm", FALSE);
}

static void test_sigterm_signal_after_save(void)
{
    /* The window between the save and the exit is short: several tries. */
    for (int i = 0; i < 3; i++) {
        g_autofree char *name = g_strdup_printf("out-sigterm-after-save-%d", i);
        run_two_signals(name, TRUE);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    tmp_dir = g_dir_make_tmp("lamina-hostile-config-XXXXXX", NULL);
    g_assert_nonnull(tmp_dir);
    data_path = g_build_filename(tmp_dir, "data.h5", NULL);
    write_data(data_path);
    /* Targets for the losses' cases: z fits, short is one row short. */
    g_autofree float *t = g_new0(float, N_SAMPLES * 2);
    e2e_write_target(data_path, "/train", "z", t, N_SAMPLES, 2);
    e2e_write_target(data_path, "/train", "short", t, N_SAMPLES - 1, 2);
    g_test_add_func("/hostile/config/dup-group", test_dup_group);
    g_test_add_func("/hostile/config/dup-key", test_dup_key);
    g_test_add_func("/hostile/config/garbage-line", test_garbage_line);
    g_test_add_func("/hostile/config/bad-value-line", test_bad_value_line);
    g_test_add_func("/hostile/config/batch-too-large", test_batch_too_large);
    g_test_add_func("/hostile/config/output-locked", test_output_locked);
    g_test_add_func("/hostile/config/output-unwritable", test_output_unwritable);
    g_test_add_func("/hostile/config/stale-temp", test_stale_temp);
    g_test_add_func("/hostile/config/metrics-disk-full", test_metrics_disk_full);
    g_test_add_func("/hostile/config/checkpoint-disk-full", test_checkpoint_disk_full);
    g_test_add_func("/hostile/config/sigterm-second-signal", test_sigterm_second_signal);
    g_test_add_func("/hostile/config/sigterm-signal-after-save", test_sigterm_signal_after_save);
    g_test_add_func("/hostile/config/loss-target-missing", test_loss_target_missing);
    g_test_add_func("/hostile/config/loss-target-length", test_loss_target_length);
    g_test_add_func("/hostile/config/loss-target-bad-name", test_loss_target_bad_name);
    g_test_add_func("/hostile/config/loss-weight-non-loss", test_loss_weight_non_loss);
    g_test_add_func("/hostile/config/loss-weight-negative", test_loss_weight_negative);
    g_test_add_func("/hostile/config/loss-weight-non-numeric", test_loss_weight_non_numeric);
    g_test_add_func("/hostile/config/loss-feeds-layer", test_loss_feeds_layer);
    g_test_add_func("/hostile/config/loss-adversarial", test_loss_adversarial);
    int rc = g_test_run();
    e2e_remove_tree(tmp_dir);
    g_free(data_path);
    g_free(tmp_dir);
    return rc;
}
