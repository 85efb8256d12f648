/* [train] top_k: the validation split's top-K accuracy in the epoch line and metrics.csv
 * (val_topK_accuracy) equals `lamina eval --top-k K` of the epoch's checkpoint on that split,
 * the test split's is printed after training, and a K the model cannot have is refused naming
 * the key.  Also: which loss the accuracy is of, for a regression on another target. */
#include "e2e-util.h"

#include <glib/gstdio.h>
#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

static char *tmp_dir;
static char *blobs;

static char *write_config(const char *name, const char *loss, const char *extra)
{
    g_autofree char *text = g_strdup_printf(
        "[model]\ninput = 2\n[layer fc1]\ntype = dense\nunits = 8\n[layer act]\ntype = relu\n"
        "[layer fc2]\ntype = dense\nunits = 4\n[layer loss]\ntype = %s\n"
        "[optimizer]\ntype = sgd\nlr = 0.05\n"
        "[train]\nbatch_size = 32\nepochs = 2\nbackend = cpu\n%s"
        "[data]\ntrain = %s:/train\nvalidation = %s:/val\ntest = %s:/val\n",
        loss, extra, blobs, blobs, blobs);
    char *path = g_build_filename(tmp_dir, name, NULL);
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    return path;
}

/* The value of "top_k_accuracy" in `lamina eval --json` output. */
static double json_top_k(const char *out)
{
    const char *p = strstr(out, "\"top_k_accuracy\": ");
    g_assert_nonnull(p);
    return g_ascii_strtod(p + strlen("\"top_k_accuracy\": "), NULL);
}

static void test_top_k(void)
{
    g_autofree char *cfg = write_config("top-k.ini", "softmax_cross_entropy", "top_k = 2\n");
    g_autofree char *out_dir = g_build_filename(tmp_dir, "top-k", NULL);
    g_autofree char *out = NULL, *err = NULL;
    int status = e2e_run_lamina(&out, &err, "train", cfg, "--output", out_dir, NULL);
    if (status != 0)
        g_error("training failed (%d): %s", status, err);
    g_assert_nonnull(strstr(out, "val_top2 "));
    g_assert_nonnull(strstr(out, "  top2 "));
    g_autofree char *csv = g_build_filename(out_dir, "metrics.csv", NULL);
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(csv, &text, NULL, NULL));
    g_assert_nonnull(strstr(text, ",val_top2_accuracy\n"));
    g_autoptr(GPtrArray) rows = e2e_csv_rows(csv);
    g_assert_cmpuint(rows->len, ==, 2);
    char **last = g_ptr_array_index(rows, 1);
    double logged = g_ascii_strtod(last[g_strv_length(last) - 1], NULL);
    /* The oracle: lamina eval's own top-K of the last epoch's weights on the same split. */
    g_autofree char *final = g_build_filename(out_dir, "final.h5", NULL);
    g_autofree char *spec = g_strdup_printf("%s:/val", blobs);
    g_autofree char *eval_out = NULL;
    g_assert_cmpint(e2e_run_lamina(&eval_out, NULL, "eval", final, "--data", spec, "--top-k", "2",
                                   "--json", "--backend", "cpu", NULL),
                    ==, 0);
    double want = json_top_k(eval_out);
    /* metrics.csv keeps six significant digits. */
    g_assert_cmpfloat(fabs(logged - want), <=, 1e-5);
    g_assert_cmpfloat(want, >, 0.9); /* four blobs: top-2 is nearly always right */
}

static void expect_refused(const char *name, const char *loss, const char *extra,
                           const char *const *frags)
{
    g_autofree char *cfg = write_config(name, loss, extra);
    g_autofree char *out_dir = g_build_filename(tmp_dir, name, NULL);
    g_autofree char *err = NULL;
    int status = e2e_run_lamina(NULL, &err, "train", cfg, "--output", out_dir, NULL);
    g_assert_cmpint(status, >, 0);
    for (guint i = 0; frags[i]; i++)
        if (!strstr(err, frags[i]))
            g_error("expected '%s' in: %s", frags[i], err);
}

static void test_top_k_errors(void)
{
    expect_refused(
        "too-many.ini", "softmax_cross_entropy", "top_k = 5\n",
        (const char *const[]){"too-many.ini", "[train] top_k", "more than the model's 4", NULL});
    expect_refused(
        "no-labels.ini", "mse\ntarget = z", "top_k = 1\n",
        (const char *const[]){"no-labels.ini", "[train] top_k", "no loss on class labels", NULL});
}

/* A regression on another dataset (target = z) has no accuracy, even though the split's y holds
 * class labels: the accuracy used to be counted against z as if it held them. */
static void test_regression_on_other_target(void)
{
    g_autofree char *cfg = write_config("regression.ini", "mse\ntarget = z", "");
    g_autofree char *out_dir = g_build_filename(tmp_dir, "regression", NULL);
    g_autofree char *out = NULL, *err = NULL;
    int status = e2e_run_lamina(&out, &err, "train", cfg, "--output", out_dir, NULL);
    if (status != 0)
        g_error("training failed (%d): %s", status, err);
    g_assert_null(strstr(err, "CRITICAL"));
    g_assert_nonnull(strstr(out, "test  loss "));
    g_assert_null(strstr(out, "acc "));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    tmp_dir = g_dir_make_tmp("lamina-top-k-XXXXXX", NULL);
    blobs = g_build_filename(tmp_dir, "blobs.h5", NULL);
    e2e_write_blobs(blobs, "train", 256, 3, FALSE);
    e2e_write_blobs(blobs, "val", 128, 4, FALSE);
    /* A float target for a regression model, which has no top-K accuracy. */
    g_autofree float *z = g_new0(float, 256 * 4);
    e2e_write_target(blobs, "train", "z", z, 256, 4);
    e2e_write_target(blobs, "val", "z", z, 128, 4);
    g_test_add_func("/e2e/top-k/validation-and-test", test_top_k);
    g_test_add_func("/e2e/top-k/errors", test_top_k_errors);
    g_test_add_func("/e2e/top-k/regression-on-other-target", test_regression_on_other_target);
    int rc = g_test_run();
    e2e_remove_tree(tmp_dir);
    return rc;
}
