/* Exact resume (DESIGN §5): a run stopped at an epoch boundary, in the middle of an epoch
 * (max_steps) or by SIGINT and continued with --resume ends bit for bit where an uninterrupted
 * run ends: same weights, optimizer slots, best-epoch copy and counters.  The config turns on
 * everything that carries state across steps: shuffling, momentum, a validation split with early
 * stopping bookkeeping, gradient noise (a per-step random stream), clipping and an L2 penalty. */
#include "e2e-util.h"

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <lamina/lamina.h>
#include <signal.h>
#include <string.h>

typedef struct {
    char *dir;
    char *data;
    char *cfg;
} Fixture;

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
                                     "lr = 0.05\n"
                                     "momentum = 0.9\n"
                                     "[train]\n"
                                     "epochs = 2\n"
                                     "batch_size = 32\n"
                                     "seed = 11\n"
                                     "backend = cpu\n"
                                     "shuffle = true\n"
                                     "grad_noise = 0.01\n"
                                     "clip_norm = 2\n"
                                     "l2 = 0.0001\n"
                                     "early_stopping_patience = 50\n"
                                     "[data]\n"
                                     "train = %s:/train\n"
                                     "validation_split = 0.1\n";

static void fixture_setup(Fixture *fx, gconstpointer unused)
{
    fx->dir = g_dir_make_tmp("lamina-resume-XXXXXX", NULL);
    g_assert_nonnull(fx->dir);
    fx->data = g_build_filename(fx->dir, "blobs.h5", NULL);
    e2e_write_blobs(fx->data, "/train", 2000, 1, FALSE);
    g_autofree char *text = g_strdup_printf(config_template, fx->data);
    fx->cfg = g_build_filename(fx->dir, "resume.ini", NULL);
    g_assert_true(g_file_set_contents(fx->cfg, text, -1, NULL));
}

static void fixture_teardown(Fixture *fx, gconstpointer unused)
{
    e2e_remove_tree(fx->dir);
    g_free(fx->dir);
    g_free(fx->data);
    g_free(fx->cfg);
}

static char *path_in(Fixture *fx, const char *a, const char *b)
{
    return g_build_filename(fx->dir, a, b, NULL);
}

/* Trains @epochs epochs in one go into DIR/NAME; returns the final checkpoint's path. */
static char *train_straight(Fixture *fx, const char *name, const char *epochs)
{
    g_autofree char *out = path_in(fx, name, NULL);
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", fx->cfg, "--output", out, "--epochs",
                                   epochs, "--quiet", NULL),
                    ==, 0);
    return path_in(fx, name, "final.h5");
}

/* Everything that defines the state of a run must agree bit for bit. */
static void assert_same_state(const char *a, const char *b)
{
    e2e_assert_same_floats(a, b, "/model");
    e2e_assert_same_floats(a, b, "/optimizer/state");
    e2e_assert_same_floats(a, b, "/train/best");
    static const char *const ints[] = {"epoch", "step",          "best_epoch",
                                       "wait",  "epoch_samples", NULL};
    for (guint i = 0; ints[i]; i++)
        g_assert_cmpint(e2e_read_attr_int(a, "/train", ints[i]), ==,
                        e2e_read_attr_int(b, "/train", ints[i]));
    double ma = e2e_read_attr_double(a, "/train", "best_metric");
    double mb = e2e_read_attr_double(b, "/train", "best_metric");
    g_assert_cmpmem(&ma, sizeof ma, &mb, sizeof mb);
    g_assert_cmpint(e2e_read_attr_int(a, "/optimizer", "step"), ==,
                    e2e_read_attr_int(b, "/optimizer", "step"));
}

static void test_epoch_boundary(Fixture *fx, gconstpointer unused)
{
    g_autofree char *straight = train_straight(fx, "straight", "2");
    g_autofree char *first = train_straight(fx, "split", "1");
    g_assert_cmpint(e2e_read_attr_int(first, "/train", "epoch"), ==, 1);
    g_autofree char *out = path_in(fx, "split", NULL);
    g_autofree char *stdout_text = NULL;
    g_assert_cmpint(e2e_run_lamina(&stdout_text, NULL, "train", fx->cfg, "--output", out,
                                   "--resume", first, "--epochs", "2", NULL),
                    ==, 0);
    g_assert_nonnull(strstr(stdout_text, "resuming from"));
    g_assert_null(strstr(stdout_text, "epoch 1/2"));
    g_assert_nonnull(strstr(stdout_text, "epoch 2/2"));
    assert_same_state(straight, first);
    /* metrics.csv continues: one row per epoch over both invocations. */
    g_autofree char *csv = path_in(fx, "split", "metrics.csv");
    g_autoptr(GPtrArray) rows = e2e_csv_rows(csv);
    g_assert_cmpuint(rows->len, ==, 2);
    g_assert_cmpstr(((char **) g_ptr_array_index(rows, 1))[0], ==, "2");
}

/* Stopped after @steps optimizer steps (inside an epoch), then resumed to the end. */
static void check_mid_epoch(Fixture *fx, const char *steps)
{
    g_autofree char *straight = train_straight(fx, "straight", "2");
    g_autofree char *out = path_in(fx, steps, NULL);
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", fx->cfg, "--output", out, "--max-steps",
                                   steps, "--quiet", NULL),
                    ==, 0);
    g_autofree char *part = path_in(fx, steps, "final.h5");
    gint64 n_steps = g_ascii_strtoll(steps, NULL, 10);
    g_assert_cmpint(e2e_read_attr_int(part, "/train", "step"), ==, n_steps);
    /* 1800 training samples in batches of 32: 57 steps per epoch, the last one of 8. */
    g_assert_cmpint(e2e_read_attr_int(part, "/train", "epoch"), ==, n_steps / 57);
    g_assert_cmpint(e2e_read_attr_int(part, "/train", "epoch_samples"), ==, (n_steps % 57) * 32);
    g_autofree char *resumed = g_build_filename(fx->dir, "resumed", NULL);
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", fx->cfg, "--output", resumed, "--resume",
                                   part, "--max-steps", "0", "--quiet", NULL),
                    ==, 0);
    g_autofree char *fin = path_in(fx, "resumed", "final.h5");
    assert_same_state(straight, fin);
}

static void test_mid_epoch(Fixture *fx, gconstpointer unused)
{
    check_mid_epoch(fx, "30");
}

static void test_mid_second_epoch(Fixture *fx, gconstpointer unused)
{
    check_mid_epoch(fx, "80");
}

/* Waits until @path contains @needle (the child flushes its header line). */
static gboolean wait_for_text(const char *path, const char *needle, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 20) {
        g_autofree char *text = NULL;
        if (g_file_get_contents(path, &text, NULL, NULL) && strstr(text, needle))
            return TRUE;
        g_usleep(20000);
    }
    return FALSE;
}

/* SIGINT saves interrupted.h5 and exits with 130; resuming from it reproduces a straight run. */
static void test_sigint(Fixture *fx, gconstpointer unused)
{
    g_autofree char *out = path_in(fx, "sigint", NULL);
    g_autofree char *log = path_in(fx, "sigint.log", NULL);
    g_autoptr(GSubprocessLauncher) launcher =
        g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDERR_PIPE);
    g_subprocess_launcher_set_stdout_file_path(launcher, log);
    g_autoptr(GError) error = NULL;
    /* Far more epochs than can run before the signal arrives. */
    g_autoptr(GSubprocess) child =
        g_subprocess_launcher_spawn(launcher, &error, e2e_lamina_exe(), "train", fx->cfg,
                                    "--output", out, "--epochs", "100000", NULL);
    g_assert_no_error(error);
    g_assert_true(wait_for_text(log, "training ", 60000));
    /* Let it run a few epochs, so the interrupt lands inside one, not before the first step. */
    g_assert_true(wait_for_text(log, "epoch 3/", 60000));
    g_subprocess_send_signal(child, SIGINT);
    g_autofree char *err = NULL;
    g_assert_true(g_subprocess_communicate_utf8(child, NULL, NULL, NULL, &err, &error));
    g_assert_no_error(error);
    g_assert_true(g_subprocess_get_if_exited(child));
    g_assert_cmpint(g_subprocess_get_exit_status(child), ==, 130);
    g_assert_nonnull(strstr(err, "interrupted at step"));
    g_assert_nonnull(strstr(err, "--resume"));
    g_autofree char *ckpt = path_in(fx, "sigint", "interrupted.h5");
    g_assert_true(g_file_test(ckpt, G_FILE_TEST_IS_REGULAR));
    g_autofree char *fin = path_in(fx, "sigint", "final.h5");
    g_assert_false(g_file_test(fin, G_FILE_TEST_EXISTS));

    /* Continue to the end of the epoch it was in and compare with a run straight there. */
    gint64 epoch = e2e_read_attr_int(ckpt, "/train", "epoch");
    gint64 step = e2e_read_attr_int(ckpt, "/train", "step");
    g_assert_cmpint(step, >=, 2 * 57);
    g_autofree char *epochs = g_strdup_printf("%" G_GINT64_FORMAT, epoch + 1);
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", fx->cfg, "--output", out, "--resume", ckpt,
                                   "--epochs", epochs, "--quiet", NULL),
                    ==, 0);
    g_autofree char *straight = train_straight(fx, "straight", epochs);
    assert_same_state(straight, fin);
}

/* The seed decides data order and noise: resuming with another one is refused. */
static void test_seed_mismatch(Fixture *fx, gconstpointer unused)
{
    g_autofree char *first = train_straight(fx, "a", "1");
    g_autofree char *out = path_in(fx, "b", NULL);
    g_autofree char *err = NULL;
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "train", fx->cfg, "--output", out, "--resume", first,
                                   "--seed", "12", NULL),
                    ==, 1);
    g_assert_nonnull(strstr(err, "[train] seed"));
    g_assert_nonnull(strstr(err, "12"));
    g_assert_nonnull(strstr(err, "11"));
    g_assert_nonnull(strstr(err, first));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/e2e/resume/epoch-boundary-bit-exact", Fixture, NULL, fixture_setup,
               test_epoch_boundary, fixture_teardown);
    g_test_add("/e2e/resume/mid-epoch-bit-exact", Fixture, NULL, fixture_setup, test_mid_epoch,
               fixture_teardown);
    g_test_add("/e2e/resume/mid-second-epoch-bit-exact", Fixture, NULL, fixture_setup,
               test_mid_second_epoch, fixture_teardown);
    g_test_add("/e2e/resume/sigint-then-resume", Fixture, NULL, fixture_setup, test_sigint,
               fixture_teardown);
    g_test_add("/e2e/resume/seed-mismatch", Fixture, NULL, fixture_setup, test_seed_mismatch,
               fixture_teardown);
    return g_test_run();
}
