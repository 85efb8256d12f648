/* Tests of `lamina convert csv|npy` (lmn_convert_csv, lmn_convert_npy): values, statistics,
 * normalisation, and every malformed input with its place named. */
#include <lamina/lamina.h>

#include <math.h>
#include <string.h>

#include <glib/gstdio.h>
#include <hdf5.h>

typedef struct {
    char *dir;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    (void) data;
    f->dir = g_dir_make_tmp("lamina-convert-XXXXXX", NULL);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    (void) data;
    g_autoptr(GDir) d = g_dir_open(f->dir, 0, NULL);
    const char *name;
    while ((name = g_dir_read_name(d)) != NULL) {
        g_autofree char *p = g_build_filename(f->dir, name, NULL);
        g_unlink(p);
    }
    g_rmdir(f->dir);
    g_free(f->dir);
}

static char *write_text(Fixture *f, const char *name, const char *text, gsize len)
{
    char *path = g_build_filename(f->dir, name, NULL);
    g_assert_true(g_file_set_contents(path, text, (gssize) len, NULL));
    return path;
}

/* Reads a float64 attribute array of x. */
static void read_attr(const char *file, const char *split, const char *attr, double *out, int n)
{
    hid_t h = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_autofree char *p = g_strdup_printf("%s/x", split);
    hid_t d = H5Dopen2(h, p, H5P_DEFAULT);
    hid_t a = H5Aopen(d, attr, H5P_DEFAULT);
    g_assert_cmpint(a, >=, 0);
    hid_t s = H5Aget_space(a);
    g_assert_cmpint(H5Sget_simple_extent_npoints(s), ==, n);
    g_assert_cmpint(H5Aread(a, H5T_NATIVE_DOUBLE, out), >=, 0);
    H5Sclose(s);
    H5Aclose(a);
    H5Dclose(d);
    H5Fclose(h);
}

static gboolean has_attr(const char *file, const char *attr)
{
    hid_t h = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(h, "/train/x", H5P_DEFAULT);
    gboolean r = H5Aexists(d, attr) > 0;
    H5Dclose(d);
    H5Fclose(h);
    return r;
}

static void test_csv(Fixture *f, gconstpointer data)
{
    (void) data;
    const char *text = "f1, \"f2\" ,label,f3\r\n1.5,2,3,-1\n\n  0.25,1e1, 0 ,4\n-2,0,1,7\n";
    g_autofree char *csv = write_text(f, "a.csv", text, strlen(text));
    g_autofree char *out = g_build_filename(f->dir, "o.h5", NULL);
    g_autofree char *spec = g_strdup_printf("%s:/train", out);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_convert_csv(csv, "label", TRUE, spec, FALSE, FALSE, &error));
    g_assert_no_error(error);
    LmnDataset *ds = lmn_dataset_open(spec, &error);
    g_assert_no_error(error);
    g_assert_cmpint(lmn_dataset_get_length(ds), ==, 3);
    g_assert_cmpint(lmn_dataset_get_sample_shape(ds)->dims[0], ==, 3);
    const float want_x[9] = {1.5f, 2, -1, 0.25f, 10, 4, -2, 0, 7};
    const gint32 want_y[3] = {3, 0, 1};
    guint32 idx[3] = {0, 1, 2};
    float x[9];
    gint32 y[3];
    lmn_dataset_gather(ds, idx, 3, x, y);
    g_assert_cmpmem(x, sizeof x, want_x, sizeof want_x);
    g_assert_cmpmem(y, sizeof y, want_y, sizeof want_y);
    lmn_dataset_free(ds);
    /* Statistics per feature in double (population std), not applied on reading. */
    double mean[3], std[3];
    read_attr(out, "/train", "stats_mean", mean, 3);
    read_attr(out, "/train", "stats_std", std, 3);
    for (int k = 0; k < 3; k++) {
        double m = 0, v = 0;
        for (int i = 0; i < 3; i++)
            m += want_x[i * 3 + k] / 3.0;
        for (int i = 0; i < 3; i++)
            v += (want_x[i * 3 + k] - m) * (want_x[i * 3 + k] - m) / 3.0;
        g_assert_cmpfloat_with_epsilon(mean[k], m, 1e-12);
        g_assert_cmpfloat_with_epsilon(std[k], sqrt(v), 1e-12);
    }
    g_assert_false(has_attr(out, "mean"));
    /* An existing split is refused, then replaced with --overwrite and --normalize (the label
     * column given by index this time), which reading applies. */
    g_assert_false(lmn_convert_csv(csv, "label", TRUE, spec, FALSE, TRUE, &error));
    g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_WRITE);
    g_clear_error(&error);
    g_assert_true(lmn_convert_csv(csv, "2", TRUE, spec, TRUE, TRUE, &error));
    g_assert_no_error(error);
    ds = lmn_dataset_open(spec, &error);
    g_assert_no_error(error);
    lmn_dataset_gather(ds, idx, 3, x, y);
    for (int i = 0; i < 9; i++)
        g_assert_cmpfloat_with_epsilon(x[i], (want_x[i] - mean[i % 3]) / std[i % 3], 1e-6);
    lmn_dataset_free(ds);
}

typedef struct {
    const char *text;
    const char *label;
    gboolean header;
    const char *needle;
} BadCsv;

static void test_csv_bad(Fixture *f, gconstpointer data)
{
    (void) data;
    const BadCsv cases[] = {
        {"1,2,0\n3,4\n", "-1", FALSE, "b.csv:2: the row has 2 columns but the first row has 3"},
        {"1,2,0\n\n3,abc,1\n", "2", FALSE, "b.csv:3: column 2 holds 'abc'"},
        {"1,2,0\n3,4,1.5\n", "2", FALSE, "b.csv:2: column 3 (the label) holds '1.5'"},
        {"1,2,0\n3,4,-1\n", "-1", FALSE, "column 3 (the label) holds '-1'"},
        {"a,b\n1,2\n", "c", TRUE, "b.csv:1: no label column 'c'"},
        {"1,2\n", "5", FALSE, "no label column '5'"},
        {"a,b\n", "a", TRUE, "holds no data rows"},
        {"1,nan,0\n", "2", FALSE, "column 2 holds 'nan'"},
        {"1,1e999,0\n", "2", FALSE, "column 2 holds '1e999'"},
    };
    g_autofree char *out = g_build_filename(f->dir, "o.h5", NULL);
    g_autofree char *spec = g_strdup_printf("%s:/train", out);
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *csv = write_text(f, "b.csv", cases[i].text, strlen(cases[i].text));
        g_autoptr(GError) error = NULL;
        g_assert_false(lmn_convert_csv(csv, cases[i].label, cases[i].header, spec, TRUE, FALSE,
                                       &error));
        g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT);
        if (strstr(error->message, cases[i].needle) == NULL) {
            g_error("case %u: '%s' lacks '%s'", i, error->message, cases[i].needle);
        }
        g_assert_false(g_file_test(out, G_FILE_TEST_EXISTS));
    }
}

/* Builds a .npy file: format @major, dtype @descr, header dict tail, then @data. */
static GByteArray *npy(guint major, const char *descr, const char *fortran, const char *shape,
                       const void *data, gsize len)
{
    g_autofree char *dict = g_strdup_printf(
        "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr, fortran, shape);
    gsize pre = major == 1 ? 10 : 12;
    gsize hl = strlen(dict) + 1;
    hl += (64 - (pre + hl) % 64) % 64;
    GByteArray *b = g_byte_array_new();
    const guint8 magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', (guint8) major, 0};
    g_byte_array_append(b, magic, 8);
    guint8 lenb[4] = {(guint8) hl, (guint8) (hl >> 8), (guint8) (hl >> 16), (guint8) (hl >> 24)};
    g_byte_array_append(b, lenb, major == 1 ? 2 : 4);
    g_byte_array_append(b, (const guint8 *) dict, (guint) strlen(dict));
    for (gsize i = strlen(dict); i < hl - 1; i++)
        g_byte_array_append(b, (const guint8 *) " ", 1);
    g_byte_array_append(b, (const guint8 *) "\n", 1);
    g_byte_array_append(b, data, (guint) len);
    return b;
}

static char *write_npy(Fixture *f, const char *name, GByteArray *b)
{
    char *p = write_text(f, name, (const char *) b->data, b->len);
    g_byte_array_unref(b);
    return p;
}

static void test_npy(Fixture *f, gconstpointer data)
{
    (void) data;
    /* x float64 [4, 2, 3] (2 channels), y int64 [4]; format 1.0 and 2.0. */
    double xv[24];
    for (int i = 0; i < 24; i++)
        xv[i] = (i * 37 % 11) - 3.25;
    gint64 yv[4] = {1, 0, 3, 2};
    g_autofree char *out = g_build_filename(f->dir, "o.h5", NULL);
    g_autofree char *spec = g_strdup_printf("%s:/train", out);
    for (guint major = 1; major <= 2; major++) {
        g_autofree char *xp = write_npy(f, "x.npy", npy(major, "<f8", "False", "(4, 2, 3)", xv,
                                                        sizeof xv));
        g_autofree char *yp = write_npy(f, "y.npy", npy(major, "<i8", "False", "(4,)", yv,
                                                        sizeof yv));
        g_autoptr(GError) error = NULL;
        g_assert_true(lmn_convert_npy(xp, yp, spec, TRUE, FALSE, &error));
        g_assert_no_error(error);
        LmnDataset *ds = lmn_dataset_open(spec, &error);
        g_assert_no_error(error);
        g_assert_cmpint(lmn_dataset_get_sample_shape(ds)->ndim, ==, 2);
        guint32 idx[4] = {0, 1, 2, 3};
        float x[24];
        gint32 y[4];
        lmn_dataset_gather(ds, idx, 4, x, y);
        for (int i = 0; i < 24; i++)
            g_assert_cmpfloat(x[i], ==, (float) xv[i]);
        for (int i = 0; i < 4; i++)
            g_assert_cmpint(y[i], ==, yv[i]);
        lmn_dataset_free(ds);
        double mean[2], std[2];
        read_attr(out, "/train", "stats_mean", mean, 2);
        read_attr(out, "/train", "stats_std", std, 2);
        for (int c = 0; c < 2; c++) {
            double m = 0, v = 0;
            for (int s = 0; s < 4; s++)
                for (int k = 0; k < 3; k++)
                    m += (float) xv[(s * 2 + c) * 3 + k] / 12.0;
            for (int s = 0; s < 4; s++)
                for (int k = 0; k < 3; k++)
                    v += pow((float) xv[(s * 2 + c) * 3 + k] - m, 2) / 12.0;
            g_assert_cmpfloat_with_epsilon(mean[c], m, 1e-12);
            g_assert_cmpfloat_with_epsilon(std[c], sqrt(v), 1e-12);
        }
    }
    /* uint8 x stays uint8; int32 labels. */
    guint8 xb[6] = {0, 255, 7, 8, 9, 10};
    gint32 yb[2] = {5, 6};
    g_autofree char *xp = write_npy(f, "x.npy", npy(1, "|u1", "False", "(2, 3)", xb, 6));
    g_autofree char *yp = write_npy(f, "y.npy", npy(1, "<i4", "False", "(2,)", yb, 8));
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_convert_npy(xp, yp, spec, TRUE, TRUE, &error));
    g_assert_no_error(error);
    LmnDataset *ds = lmn_dataset_open(spec, &error);
    g_assert_no_error(error);
    g_assert_cmpint(lmn_dataset_get_max_label(ds), ==, 6);
    lmn_dataset_free(ds);
}

typedef struct {
    guint major;
    const char *descr;
    const char *fortran;
    const char *shape;
    gsize data_len;
    gint code;
    const char *needle;
} BadNpy;

static void test_npy_bad(Fixture *f, gconstpointer data)
{
    (void) data;
    const BadNpy cases[] = {
        {1, "<f4", "True", "(2, 3)", 24, LMN_DATA_ERROR_FORMAT, "Fortran"},
        {1, "<c8", "False", "(2, 3)", 48, LMN_DATA_ERROR_DTYPE, "dtype '<c8' is not supported"},
        {1, ">f4", "False", "(2, 3)", 24, LMN_DATA_ERROR_DTYPE, "dtype '>f4'"},
        {1, "<f4", "False", "(2, 3)", 20, LMN_DATA_ERROR_FORMAT, "truncated .npy file"},
        {2, "<f8", "False", "(2, 3)", 47, LMN_DATA_ERROR_FORMAT, "needs 48 bytes of data"},
        {1, "<f4", "False", "(2, x)", 24, LMN_DATA_ERROR_FORMAT, "malformed .npy header"},
        {9, "<f4", "False", "(2, 3)", 24, LMN_DATA_ERROR_FORMAT, "version 9.0"},
    };
    g_autofree char *out = g_build_filename(f->dir, "o.h5", NULL);
    g_autofree char *spec = g_strdup_printf("%s:/train", out);
    guint8 zeros[64] = {0};
    gint32 y[2] = {0, 1};
    g_autofree char *yp = write_npy(f, "y.npy", npy(1, "<i4", "False", "(2,)", y, 8));
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *xp = write_npy(f, "x.npy", npy(cases[i].major, cases[i].descr,
                                                        cases[i].fortran, cases[i].shape, zeros,
                                                        cases[i].data_len));
        g_autoptr(GError) error = NULL;
        g_assert_false(lmn_convert_npy(xp, yp, spec, TRUE, FALSE, &error));
        g_assert_error(error, LMN_DATA_ERROR, cases[i].code);
        if (strstr(error->message, cases[i].needle) == NULL ||
            strstr(error->message, "x.npy") == NULL) {
            g_error("case %u: '%s' lacks '%s' or the file", i, error->message, cases[i].needle);
        }
    }
    g_autofree char *junk = write_text(f, "x.npy", "PK\x03\x04 not numpy", 15);
    g_autoptr(GError) error = NULL;
    g_assert_false(lmn_convert_npy(junk, yp, spec, TRUE, FALSE, &error));
    g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT);
    g_assert_nonnull(strstr(error->message, "not a NumPy .npy file"));
    g_clear_error(&error);
    /* NaN in x; x and y disagree on N. */
    float xn[6] = {0, 1, NAN, 3, 4, 5};
    g_autofree char *xp = write_npy(f, "x.npy", npy(1, "<f4", "False", "(2, 3)", xn, 24));
    g_assert_false(lmn_convert_npy(xp, yp, spec, TRUE, FALSE, &error));
    g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE);
    g_assert_nonnull(strstr(error->message, "sample 0 holds NaN (element 2"));
    g_clear_error(&error);
    g_autofree char *y3 = write_npy(f, "y3.npy", npy(1, "<i4", "False", "(1,)", y, 4));
    xn[2] = 2;
    g_autofree char *xp2 = write_npy(f, "x.npy", npy(1, "<f4", "False", "(2, 3)", xn, 24));
    g_assert_false(lmn_convert_npy(xp2, y3, spec, TRUE, FALSE, &error));
    g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT);
    g_assert_nonnull(strstr(error->message, "must pair up"));
    g_assert_false(g_file_test(out, G_FILE_TEST_EXISTS));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/data/convert/csv", Fixture, NULL, fixture_setup, test_csv, fixture_teardown);
    g_test_add("/data/convert/csv-bad", Fixture, NULL, fixture_setup, test_csv_bad,
               fixture_teardown);
    g_test_add("/data/convert/npy", Fixture, NULL, fixture_setup, test_npy, fixture_teardown);
    g_test_add("/data/convert/npy-bad", Fixture, NULL, fixture_setup, test_npy_bad,
               fixture_teardown);
    return g_test_run();
}
