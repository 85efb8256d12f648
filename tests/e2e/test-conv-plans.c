/* `lamina train` makes the CPU backend's convolution plans before its first step (ABI 1.6
 * conv2d_prepare, through the conv layers' prepare_batch hook): the full batch when the model is
 * prepared, and each epoch's last, partial batch and the validation split's shorter batch when
 * the trainer and lmn_evaluate() plan them.  LAMINA_CPU_STATS=1 makes the backend report, at
 * close, how many oneDNN plans it made ahead and how many an op had to make in a step: a run
 * whose every batch size was planned makes none in a step.
 *
 * The data: 75 random 1x8x8 images, 15 of them the validation split, in batches of 16, so the
 * training batches are 16 and 12 images and the validation batches 15; a conv2d and a
 * transposed convolution see all three sizes.
 */
#include "e2e-util.h"

#include <glib/gstdio.h>
#include <string.h>

static const char *config_text = "[model]\n"
                                 "input = 1, 8, 8\n"
                                 "[layer conv1]\n"
                                 "type = conv2d\n"
                                 "out_channels = 16\n"
                                 "kernel_size = 3\n"
                                 "padding = 1\n"
                                 "[layer act1]\n"
                                 "type = relu\n"
                                 "[layer conv2]\n"
                                 "type = conv2d\n"
                                 "out_channels = 16\n"
                                 "kernel_size = 3\n"
                                 "padding = 1\n"
                                 "[layer up]\n"
                                 "type = conv_transpose2d\n"
                                 "out_channels = 8\n"
                                 "kernel_size = 2\n"
                                 "stride = 2\n"
                                 "[layer flat]\n"
                                 "type = flatten\n"
                                 "[layer fc]\n"
                                 "type = dense\n"
                                 "units = 4\n"
                                 "[layer loss]\n"
                                 "type = softmax_cross_entropy\n"
                                 "[optimizer]\n"
                                 "type = sgd\n"
                                 "lr = 0.01\n"
                                 "[train]\n"
                                 "epochs = 2\n"
                                 "batch_size = 16\n"
                                 "seed = 5\n"
                                 "backend = cpu\n"
                                 "[data]\n"
                                 "train = %s:/train\n"
                                 "validation_split = 0.2\n";

/* The two counts of the backend's "cpu stats:" line in @err, and whether its description says
 * it runs oneDNN's convolutions; FALSE without such a line. */
static gboolean parse_stats(const char *err, guint *ahead, guint *in_step, gboolean *onednn)
{
    g_autoptr(GRegex) re = g_regex_new("cpu stats: (.*): ([0-9]+) oneDNN convolution plans made "
                                       "ahead, ([0-9]+) made in a step",
                                       0, 0, NULL);
    g_autoptr(GMatchInfo) m = NULL;
    if (!g_regex_match(re, err, 0, &m))
        return FALSE;
    g_autofree char *desc = g_match_info_fetch(m, 1);
    g_autofree char *a = g_match_info_fetch(m, 2), *b = g_match_info_fetch(m, 3);
    *onednn = strstr(desc, "oneDNN JIT convolutions") != NULL;
    *ahead = (guint) g_ascii_strtoull(a, NULL, 10);
    *in_step = (guint) g_ascii_strtoull(b, NULL, 10);
    return TRUE;
}

static void test_no_plan_in_a_step(void)
{
    g_autofree char *dir = g_dir_make_tmp("lamina-conv-plans-XXXXXX", NULL);
    g_assert_nonnull(dir);
    g_autofree char *data = g_build_filename(dir, "images.h5", NULL);
    g_autofree char *cfg = g_build_filename(dir, "model.ini", NULL);
    g_autofree char *out = g_build_filename(dir, "run", NULL);
    const int n = 75, features = 64;
    g_autofree float *x = g_new(float, n *features);
    g_autofree gint32 *y = g_new(gint32, n);
    g_autoptr(GRand) rng = g_rand_new_with_seed(11);
    for (int i = 0; i < n * features; i++)
        x[i] = (float) g_rand_double_range(rng, -1.0, 1.0);
    for (int i = 0; i < n; i++)
        y[i] = (gint32) g_rand_int_range(rng, 0, 4);
    e2e_write_split(data, "/train", x, n, features, y);
    g_autofree char *text = g_strdup_printf(config_text, data);
    g_assert_true(g_file_set_contents(cfg, text, -1, NULL));

    g_setenv("LAMINA_CPU_STATS", "1", TRUE);
    g_autofree char *so = NULL, *se = NULL;
    int rc = e2e_run_lamina(&so, &se, "train", cfg, "--output", out, NULL);
    g_unsetenv("LAMINA_CPU_STATS");
    g_test_message("stderr: %s", se);
    g_assert_cmpint(rc, ==, 0);
    guint ahead = 0, in_step = 0;
    gboolean onednn = FALSE;
    g_assert_true(parse_stats(se, &ahead, &in_step, &onednn));
    g_test_message("%u plans made ahead, %u in a step (oneDNN %s)", ahead, in_step,
                   onednn ? "on" : "off");
    g_assert_cmpuint(in_step, ==, 0);
    /* With oneDNN, at least the full batch's forward plans of both 16-channel convolutions. */
    if (onednn)
        g_assert_cmpuint(ahead, >=, 6);
    else
        g_assert_cmpuint(ahead, ==, 0);
    e2e_remove_tree(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/e2e/conv-plans/no-plan-in-a-step", test_no_plan_in_a_step);
    return g_test_run();
}
