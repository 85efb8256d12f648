/* The classification metrics (lamina/metrics.h) against NumPy: tests/fixtures/eval-metrics.h5,
 * recorded by scripts/make-eval-fixtures.py, holds probabilities, labels and NumPy's top-K hits,
 * confusion matrix, per-class precision, recall, F1, support and macro averages of them, and the
 * mean of several members' probabilities (the ensemble average). */
#include <hdf5.h>
#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

static char *fixture_path(void)
{
    return g_build_filename(g_getenv("LMN_TEST_FIXTURES"), "eval-metrics.h5", NULL);
}

/* Dataset @name of the fixture as @type (native), its dimensions in @dims (up to 3). */
static void *read_dataset(const char *name, hid_t type, gsize elem, hsize_t *dims)
{
    g_autofree char *path = fixture_path();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    g_assert_cmpint(d, >=, 0);
    hid_t s = H5Dget_space(d);
    hsize_t local[3] = {1, 1, 1};
    int rank = H5Sget_simple_extent_dims(s, dims ? dims : local, NULL);
    g_assert_cmpint(rank, >=, 1);
    hssize_t n = H5Sget_simple_extent_npoints(s);
    void *v = g_malloc0((gsize) MAX(n, 1) * elem);
    g_assert_cmpint(H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), >=, 0);
    H5Sclose(s);
    H5Dclose(d);
    H5Fclose(f);
    return v;
}

static void *read_case(const char *c, const char *name, hid_t type, gsize elem, hsize_t *dims)
{
    g_autofree char *path = g_strdup_printf("/%s/%s", c, name);
    return read_dataset(path, type, elem, dims);
}

/* The members' mean through lmn_class_metrics_accumulate() and lmn_class_metrics_mean() equals
 * NumPy's (summed in float64, rounded to float32) bit for bit. */
static float *check_mean(const char *c, gint64 *n_out, gint64 *k_out)
{
    hsize_t dims[3] = {0};
    g_autofree float *probs = read_case(c, "probs", H5T_NATIVE_FLOAT, sizeof(float), dims);
    g_autofree float *want = read_case(c, "mean", H5T_NATIVE_FLOAT, sizeof(float), NULL);
    gsize cells = (gsize) (dims[1] * dims[2]);
    g_autofree double *sum = g_new0(double, cells);
    for (hsize_t m = 0; m < dims[0]; m++)
        lmn_class_metrics_accumulate(sum, probs + m * cells, cells);
    float *mean = g_new(float, cells);
    lmn_class_metrics_mean(sum, cells, (guint) dims[0], mean);
    for (gsize i = 0; i < cells; i++)
        g_assert_cmpfloat(mean[i], ==, want[i]);
    *n_out = (gint64) dims[1];
    *k_out = (gint64) dims[2];
    return mean;
}

static void check_class_figures(const char *c, const LmnClassMetrics *m, gint64 k)
{
    g_autofree double *precision = read_case(c, "precision", H5T_NATIVE_DOUBLE, 8, NULL);
    g_autofree double *recall = read_case(c, "recall", H5T_NATIVE_DOUBLE, 8, NULL);
    g_autofree double *f1 = read_case(c, "f1", H5T_NATIVE_DOUBLE, 8, NULL);
    g_autofree gint64 *support = read_case(c, "support", H5T_NATIVE_INT64, 8, NULL);
    g_autofree double *macro = read_case(c, "macro", H5T_NATIVE_DOUBLE, 8, NULL);
    for (gint64 j = 0; j < k; j++) {
        double p, r, f;
        gint64 s;
        lmn_class_metrics_get_class(m, j, &p, &r, &f, &s);
        g_assert_cmpfloat_with_epsilon(p, precision[j], 1e-12);
        g_assert_cmpfloat_with_epsilon(r, recall[j], 1e-12);
        g_assert_cmpfloat_with_epsilon(f, f1[j], 1e-12);
        g_assert_cmpint(s, ==, support[j]);
    }
    double mp, mr, mf;
    lmn_class_metrics_get_macro(m, &mp, &mr, &mf);
    g_assert_cmpfloat_with_epsilon(mp, macro[0], 1e-12);
    g_assert_cmpfloat_with_epsilon(mr, macro[1], 1e-12);
    g_assert_cmpfloat_with_epsilon(mf, macro[2], 1e-12);
}

/* Every K's top-K accuracy, the confusion matrix and P/R/F1 of the case's mean probabilities,
 * added in uneven batches. */
static void test_case(gconstpointer data)
{
    const char *c = data;
    gint64 n, k;
    g_autofree float *mean = check_mean(c, &n, &k);
    g_autofree gint32 *labels = read_case(c, "labels", H5T_NATIVE_INT32, 4, NULL);
    g_autofree gint64 *hits = read_case(c, "topk_hits", H5T_NATIVE_INT64, 8, NULL);
    g_autofree gint64 *confusion = read_case(c, "confusion", H5T_NATIVE_INT64, 8, NULL);
    for (gint64 top = 1; top <= k; top++) {
        g_autoptr(GError) error = NULL;
        g_autoptr(LmnClassMetrics) m = lmn_class_metrics_new(k, top, &error);
        g_assert_no_error(error);
        for (gint64 start = 0; start < n; start += 13) {
            gint64 b = MIN(13, n - start);
            g_assert_true(lmn_class_metrics_add(m, mean + start * k, labels + start, b, &error));
            g_assert_no_error(error);
        }
        g_assert_cmpint(lmn_class_metrics_get_samples(m), ==, n);
        g_assert_cmpfloat(lmn_class_metrics_get_top_k_accuracy(m), ==, (double) hits[top - 1] / n);
        g_assert_cmpfloat(lmn_class_metrics_get_accuracy(m), ==, (double) hits[0] / n);
        const gint64 *got = lmn_class_metrics_get_confusion(m);
        for (gint64 i = 0; i < k * k; i++)
            g_assert_cmpint(got[i], ==, confusion[i]);
        check_class_figures(c, m, k);
    }
}

/* Ties go to the lower index, as lmn_op_count_correct's first maximum. */
static void test_ties(void)
{
    const float row[4] = {0.25f, 0.5f, 0.5f, 0.25f};
    g_assert_cmpint(lmn_class_metrics_argmax(row, 4), ==, 1);
    g_assert_cmpint(lmn_class_metrics_rank(row, 4, 1), ==, 0);
    g_assert_cmpint(lmn_class_metrics_rank(row, 4, 2), ==, 1);
    g_assert_cmpint(lmn_class_metrics_rank(row, 4, 0), ==, 2);
    g_assert_cmpint(lmn_class_metrics_rank(row, 4, 3), ==, 3);
}

/* Out-of-range K, classes and labels, and non-finite scores are errors; a bad batch adds
 * nothing; without samples the accuracies are NAN and every 0/0 is 0. */
static void test_errors(void)
{
    g_autoptr(GError) error = NULL;
    g_assert_null(lmn_class_metrics_new(3, 0, &error));
    g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE);
    g_clear_error(&error);
    g_assert_null(lmn_class_metrics_new(3, 4, &error));
    g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE);
    g_clear_error(&error);
    g_assert_null(lmn_class_metrics_new(0, 1, &error));
    g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE);
    g_clear_error(&error);
    g_assert_null(lmn_class_metrics_new(G_MAXINT64, 1, &error));
    g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE);
    g_clear_error(&error);
    g_autoptr(LmnClassMetrics) m = lmn_class_metrics_new(2, 1, &error);
    g_assert_no_error(error);
    g_assert_true(isnan(lmn_class_metrics_get_accuracy(m)));
    double p = -1, r = -1, f = -1;
    lmn_class_metrics_get_macro(m, &p, &r, &f);
    g_assert_cmpfloat(p, ==, 0);
    g_assert_cmpfloat(r, ==, 0);
    g_assert_cmpfloat(f, ==, 0);
    const float probs[4] = {0.5f, 0.5f, NAN, 1};
    const gint32 good[2] = {0, 1}, bad[2] = {0, 2};
    g_assert_false(lmn_class_metrics_add(m, probs, bad, 2, &error));
    g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE);
    g_assert_nonnull(strstr(error->message, "label 2"));
    g_clear_error(&error);
    g_assert_false(lmn_class_metrics_add(m, probs, good, 2, &error));
    g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE);
    g_assert_cmpint(lmn_class_metrics_get_samples(m), ==, 0);
}

/* The softmax against hand values, in place. */
static void test_softmax(void)
{
    float z[6] = {0, 0, 0, 1000, 1001, 1000};
    lmn_class_metrics_softmax(z, 2, 3, z);
    for (int j = 0; j < 3; j++)
        g_assert_cmpfloat_with_epsilon(z[j], 1.0 / 3, 1e-7);
    g_assert_cmpfloat_with_epsilon(z[4], M_E / (2 + M_E), 1e-7);
    g_assert_cmpfloat_with_epsilon(z[3], 1 / (2 + M_E), 1e-7);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_data_func("/metrics/numpy/ties", "ties", test_case);
    g_test_add_data_func("/metrics/numpy/ensemble", "ensemble", test_case);
    g_test_add_data_func("/metrics/numpy/binary", "binary", test_case);
    g_test_add_func("/metrics/ties", test_ties);
    g_test_add_func("/metrics/errors", test_errors);
    g_test_add_func("/metrics/softmax", test_softmax);
    return g_test_run();
}
