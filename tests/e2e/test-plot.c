/* `lamina plot` and `lamina train --plot`: the pictures are valid PNG and SVG files with the
 * curves drawn in them, the panels follow the columns a run has, a picture is replaced whole,
 * and bad metrics files and names are clear errors naming the place. */
#include "e2e-util.h"

#include <cairo.h>
#include <glib/gstdio.h>
#include <string.h>

static char *tmp_dir;

static char *write_csv(const char *name, const char *text)
{
    char *path = g_build_filename(tmp_dir, name, NULL);
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    return path;
}

/* Pixels of @png whose colour is near (r, g, b) (0-255), and the share that is not white. */
static guint count_colour(const char *png, int r, int g, int b, double *ink_out)
{
    cairo_surface_t *s = cairo_image_surface_create_from_png(png);
    g_assert_cmpint(cairo_surface_status(s), ==, CAIRO_STATUS_SUCCESS);
    int w = cairo_image_surface_get_width(s), h = cairo_image_surface_get_height(s);
    int stride = cairo_image_surface_get_stride(s);
    const guint8 *data = cairo_image_surface_get_data(s);
    guint hits = 0, ink = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            guint32 px = *(const guint32 *) (data + y * stride + 4 * x);
            int pr = (px >> 16) & 0xff, pg = (px >> 8) & 0xff, pb = px & 0xff;
            hits += abs(pr - r) < 12 && abs(pg - g) < 12 && abs(pb - b) < 12;
            ink += pr < 250 || pg < 250 || pb < 250;
        }
    cairo_surface_destroy(s);
    if (ink_out)
        *ink_out = (double) ink / ((double) w * h);
    return hits;
}

static const char *const run_csv =
    "epoch,step,lr,train_loss,train_accuracy,val_loss,val_accuracy,seconds,train_loss_aux\n"
    "1,10,0.1,2.5,0.3,2.4,0.31,1.5,3.1\n"
    "2,20,0.05,1.2,0.6,1.3,0.58,1.4,2.0\n"
    "3,30,0.025,0.02,0.9,0.5,0.8,1.4,1.0\n"
    "4,40,0.0125,0.01,0.95,,0.82,1.4,0.5\n";

static void test_png_and_svg(void)
{
    g_autofree char *csv = write_csv("run.csv", run_csv);
    g_autofree char *png = g_build_filename(tmp_dir, "run.png", NULL);
    g_autofree char *svg = g_build_filename(tmp_dir, "run.svg", NULL);
    g_autofree char *out = NULL;
    g_assert_cmpint(e2e_run_lamina(&out, NULL, "plot", csv, "--output", png, NULL), ==, 0);
    g_assert_nonnull(strstr(out, "4 epochs"));
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "plot", csv, "-o", svg, NULL), ==, 0);
    g_autofree char *head = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(png, &head, &len, NULL));
    g_assert_cmpuint(len, >, 1000);
    g_assert_cmpmem(head, 8, "\x89PNG\r\n\x1a\n", 8);
    double ink = 0;
    /* the train curves' blue and the validation curves' orange are drawn */
    g_assert_cmpuint(count_colour(png, 31, 97, 181, &ink), >, 200);
    g_assert_cmpuint(count_colour(png, 227, 107, 10, NULL), >, 200);
    g_assert_cmpfloat(ink, >, 0.01);
    g_assert_cmpfloat(ink, <, 0.5);
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(svg, &text, &len, NULL));
    g_assert_true(g_str_has_prefix(text, "<?xml"));
    g_assert_nonnull(strstr(text, "<svg"));
    g_assert_nonnull(strstr(text, "</svg>"));
    /* nothing but the picture is left in the directory */
    g_autoptr(GDir) d = g_dir_open(tmp_dir, 0, NULL);
    for (const char *n; (n = g_dir_read_name(d));)
        g_assert_false(g_str_has_suffix(n, ".tmp"));
}

/* Without validation or accuracy (a regression run) the panels that have data are drawn. */
static void test_regression_run(void)
{
    g_autofree char *csv = write_csv(
        "reg.csv", "epoch,step,lr,train_loss,train_accuracy,val_loss,val_accuracy,seconds\n"
                   "1,5,0.01,0.9,,,,0.1\n2,10,0.01,0.4,,,,0.1\n");
    g_autofree char *png = g_build_filename(tmp_dir, "reg.png", NULL);
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "plot", csv, "-o", png, NULL), ==, 0);
    g_assert_cmpuint(count_colour(png, 31, 97, 181, NULL), >, 100);
    g_assert_cmpuint(count_colour(png, 227, 107, 10, NULL), ==, 0); /* no validation curve */
}

/* `lamina train --plot` keeps OUTPUT/curves.png up to date, and `lamina plot OUTPUT_DIR` finds
 * the run's metrics.csv. */
static void test_train_plot(void)
{
    g_autofree char *data = g_build_filename(tmp_dir, "blobs.h5", NULL);
    e2e_write_blobs(data, "/train", 128, 3, FALSE);
    g_autofree char *text = g_strdup_printf(
        "[model]\ninput = 2\n[layer fc]\ntype = dense\nunits = 4\n[layer loss]\n"
        "type = softmax_cross_entropy\n[optimizer]\ntype = sgd\nlr = 0.1\n[train]\nepochs = 3\n"
        "batch_size = 32\nbackend = cpu\n[data]\ntrain = %s:/train\nvalidation_split = 0.25\n",
        data);
    g_autofree char *cfg = write_csv("plot.ini", text);
    g_autofree char *out = g_build_filename(tmp_dir, "trained", NULL);
    g_assert_cmpint(
        e2e_run_lamina(NULL, NULL, "train", cfg, "--output", out, "--quiet", "--plot", NULL), ==,
        0);
    g_autofree char *png = g_build_filename(out, "curves.png", NULL);
    g_assert_cmpuint(count_colour(png, 227, 107, 10, NULL), >, 100);
    g_assert_cmpint(g_unlink(png), ==, 0);
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "plot", out, NULL), ==, 0);
    g_assert_true(g_file_test(png, G_FILE_TEST_IS_REGULAR));
}

/* Bad metrics files and names: exit status 1 (2 for usage) and the place in the message. */
static void test_bad_input(void)
{
    static const struct {
        const char *csv, *name, *expect;
    } cases[] = {
        {"epoch,lr\n1,0.1\n2,abc\n", "bad-cell.csv", "bad-cell.csv:3: column 'lr' holds \"abc\""},
        {"epoch,lr\n1,0.1,5\n", "cells.csv", "cells.csv:2: 3 cells where the header names 2"},
        {"step,lr\n1,0.1\n", "noepoch.csv", "noepoch.csv:1: the header has no column 'epoch'"},
        {"", "empty.csv", "empty.csv: empty"},
        {"epoch,step,lr,train_loss\n", "header.csv", "nothing to plot"},
        {"epoch,lr\n1,inf\n", "inf.csv", "expected a finite number"},
        {"epoch,lr\n1,\x01\xff\n", "binary.csv", "not a text file"},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *csv = write_csv(cases[i].name, cases[i].csv);
        g_autofree char *png = g_build_filename(tmp_dir, "bad.png", NULL);
        g_autofree char *err = NULL;
        g_assert_cmpint(e2e_run_lamina(NULL, &err, "plot", csv, "-o", png, NULL), ==, 1);
        if (!strstr(err, cases[i].expect))
            g_error("case %u: expected '%s' in: %s", i, cases[i].expect, err);
        g_assert_false(g_file_test(png, G_FILE_TEST_EXISTS));
    }
    g_autofree char *csv = write_csv("good.csv", run_csv);
    g_autofree char *err = NULL;
    g_autofree char *jpg = g_build_filename(tmp_dir, "curves.jpg", NULL);
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "plot", csv, "-o", jpg, NULL), ==, 1);
    g_assert_nonnull(strstr(err, "must end in .png or .svg"));
    g_clear_pointer(&err, g_free);
    g_autofree char *nodir = g_build_filename(tmp_dir, "no", "such", "dir", "c.png", NULL);
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "plot", csv, "-o", nodir, NULL), ==, 1);
    g_assert_nonnull(strstr(err, "cannot create it"));
    g_clear_pointer(&err, g_free);
    g_autofree char *missing = g_build_filename(tmp_dir, "missing.csv", NULL);
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "plot", missing, NULL), ==, 1);
    g_assert_nonnull(strstr(err, "missing.csv"));
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "plot", NULL), ==, 2);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    tmp_dir = g_dir_make_tmp("lamina-plot-XXXXXX", NULL);
    g_test_add_func("/e2e/plot/png-and-svg", test_png_and_svg);
    g_test_add_func("/e2e/plot/regression-run", test_regression_run);
    g_test_add_func("/e2e/plot/train-plot", test_train_plot);
    g_test_add_func("/e2e/plot/bad-input", test_bad_input);
    int rc = g_test_run();
    e2e_remove_tree(tmp_dir);
    g_free(tmp_dir);
    return rc;
}
