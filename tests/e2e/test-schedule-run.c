/* Schedules inside `lamina train`: cosine without t_max anneals over the run's epochs (the lr
 * column of metrics.csv against the closed form), a schedule that returns a non-finite learning
 * rate stops the run with an error naming it, and one_cycle's validate hook refuses its keys
 * before training. */
#include "e2e-util.h"

#include <math.h>
#include <string.h>

static char *tmp_dir;
static char *data_file;

static int train_lr(const char *name, const char *lr, const char *schedule, char **err)
{
    g_autofree char *text = g_strdup_printf(
        "[model]\ninput = 2\n[layer fc]\ntype = dense\nunits = 4\n[layer loss]\n"
        "type = softmax_cross_entropy\n[optimizer]\ntype = sgd\nlr = %s\n[schedule]\n%s"
        "[train]\nepochs = 4\nbatch_size = 16\nbackend = cpu\n[data]\ntrain = %s:/train\n",
        lr, schedule, data_file);
    g_autofree char *cfg = g_strdup_printf("%s/%s.ini", tmp_dir, name);
    g_assert_true(g_file_set_contents(cfg, text, -1, NULL));
    g_autofree char *out = g_build_filename(tmp_dir, name, NULL);
    return e2e_run_lamina(NULL, err, "train", cfg, "--output", out, "--quiet", NULL);
}

static int train(const char *name, const char *schedule, char **err)
{
    return train_lr(name, "0.1", schedule, err);
}

static void test_cosine_over_run(void)
{
    g_assert_cmpint(train("cosine", "type = cosine\neta_min = 0.01\n", NULL), ==, 0);
    g_autofree char *csv = g_strdup_printf("%s/cosine/metrics.csv", tmp_dir);
    g_autoptr(GPtrArray) rows = e2e_csv_rows(csv);
    g_assert_cmpuint(rows->len, ==, 4);
    for (guint e = 0; e < rows->len; e++) {
        char **cols = g_ptr_array_index(rows, e);
        double lr = g_ascii_strtod(cols[2], NULL);
        double want = 0.01 + (0.1 - 0.01) * (1.0 + cos(G_PI * e / 4.0)) / 2.0;
        g_assert_cmpfloat(fabs(lr - want), <=, 1e-6 * want);
    }
}

static void test_non_finite_lr(void)
{
    g_autofree char *err = NULL;
    /* 10 on the first step, 1e309 = inf on the second, before the weights can overflow */
    g_assert_cmpint(train_lr("inf", "10", "type = exponential\nunit = step\ngamma = 1e308\n", &err),
                    ==, 1);
    if (!strstr(err, "schedule 'exponential' (plugin 'lamina.schedules'") ||
        !strstr(err, "inf.ini:12 [schedule] type") || !strstr(err, "learning rate of inf"))
        g_error("unexpected: %s", err);
}

static void test_one_cycle_refused(void)
{
    g_autofree char *err = NULL;
    g_assert_cmpint(train("cycle", "type = one_cycle\ntotal = 3\npct_start = 0.25\n", &err), ==, 1);
    g_assert_nonnull(strstr(err, "[schedule] type = one_cycle: pct_start = 0.25 of total = 3"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    tmp_dir = g_dir_make_tmp("lamina-schedule-run-XXXXXX", NULL);
    data_file = g_build_filename(tmp_dir, "blobs.h5", NULL);
    e2e_write_blobs(data_file, "/train", 64, 1, FALSE);
    g_test_add_func("/e2e/schedule-run/cosine-over-run", test_cosine_over_run);
    g_test_add_func("/e2e/schedule-run/non-finite-lr", test_non_finite_lr);
    g_test_add_func("/e2e/schedule-run/one-cycle-refused", test_one_cycle_refused);
    int rc = g_test_run();
    e2e_remove_tree(tmp_dir);
    g_free(tmp_dir);
    g_free(data_file);
    return rc;
}
