/* Tests of datasets in HDF5, the IDX converter and the HDF5 helpers.
 *
 * Every input is built here from C: HDF5 files written with the plain HDF5 API (not with the
 * code under test), IDX files assembled byte by byte and gzipped with GIO.  The oracles are the
 * source bytes and the documented decoding x = (raw * scale - mean) / std computed in double.
 */
#include <lamina/lamina.h>

#include <math.h>
#include <string.h>
#include <sys/wait.h>

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <hdf5.h>

#include "hdf5/h5-util.h"

/* ---- scaffolding ---------------------------------------------------------------------- */

typedef struct {
    char *dir;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    GError *error = NULL;
    f->dir = g_dir_make_tmp("lamina-data-XXXXXX", &error);
    g_assert_no_error(error);
    lmn_h5_init();
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    GDir *dir = g_dir_open(f->dir, 0, NULL);
    const char *name;
    while (dir != NULL && (name = g_dir_read_name(dir)) != NULL) {
        g_autofree char *path = g_build_filename(f->dir, name, NULL);
        if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
            g_rmdir(path);
        } else {
            g_unlink(path);
        }
    }
    if (dir != NULL) {
        g_dir_close(dir);
    }
    g_rmdir(f->dir);
    g_free(f->dir);
}

#define TEST(path, fn) g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)

static char *tmp_path(Fixture *f, const char *name)
{
    return g_build_filename(f->dir, name, NULL);
}

static int compare_names(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Names of the files in the fixture directory, sorted, joined by ' '. */
static char *list_dir(Fixture *f)
{
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    GDir *dir = g_dir_open(f->dir, 0, NULL);
    const char *name;
    while ((name = g_dir_read_name(dir)) != NULL) {
        g_ptr_array_add(names, g_strdup(name));
    }
    g_dir_close(dir);
    g_ptr_array_sort(names, compare_names);
    g_ptr_array_add(names, NULL);
    return g_strjoinv(" ", (char **) names->pdata);
}

/* Asserts @error is @code in LMN_DATA_ERROR and its message holds every NULL-terminated part. */
static void assert_data_error(GError *error, int code, ...)
{
    g_assert_nonnull(error);
    g_test_message("error: %s", error->message);
    if (!g_error_matches(error, LMN_DATA_ERROR, code)) {
        g_test_message("unexpected error: %s (code %d, wanted %d)", error->message, error->code,
                       code);
    }
    g_assert_error(error, LMN_DATA_ERROR, code);
    va_list ap;
    va_start(ap, code);
    const char *part;
    while ((part = va_arg(ap, const char *)) != NULL) {
        if (strstr(error->message, part) == NULL) {
            g_test_message("message \"%s\" lacks \"%s\"", error->message, part);
        }
        g_assert_nonnull(strstr(error->message, part));
    }
    va_end(ap);
}

/* ---- writing HDF5 inputs with the raw API --------------------------------------------- */

static hid_t h5_create(const char *path)
{
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(file, >=, 0);
    return file;
}

/* Writes dataset @name (parent groups created) of @file_type from @mem_type data. */
static hid_t h5_write(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, int ndim,
                      const hsize_t *dims, const void *data)
{
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t space = H5Screate_simple(ndim, dims, NULL);
    hid_t ds = H5Dcreate2(loc, name, file_type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(ds, >=, 0);
    g_assert_cmpint(H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), >=, 0);
    H5Sclose(space);
    H5Pclose(lcpl);
    return ds; /* caller adds attributes, then closes */
}

static void h5_attr_doubles(hid_t obj, const char *name, const double *v, hsize_t n)
{
    hid_t space = n == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
    hid_t attr = H5Acreate2(obj, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(H5Awrite(attr, H5T_NATIVE_DOUBLE, v), >=, 0);
    H5Aclose(attr);
    H5Sclose(space);
}

/* A valid split /train: x float32 [n, 3], y uint8 [n] with x[i][j] = i + j / 10, y[i] = i % 3. */
static void write_simple(const char *path, hsize_t n)
{
    hid_t file = h5_create(path);
    g_autofree float *x = g_new(float, n * 3);
    g_autofree guint8 *y = g_new(guint8, n);
    for (hsize_t i = 0; i < n; i++) {
        for (int j = 0; j < 3; j++) {
            x[i * 3 + j] = (float) i + (float) j / 10.0f;
        }
        y[i] = (guint8) (i % 3);
    }
    hsize_t xd[2] = {n, 3};
    H5Dclose(h5_write(file, "/train/x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x));
    H5Dclose(h5_write(file, "/train/y", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &n, y));
    H5Fclose(file);
}

/* ---- writing IDX inputs ----------------------------------------------------------------- */

static GBytes *gzip_bytes(const guint8 *data, gsize len)
{
    g_autoptr(GZlibCompressor) comp = g_zlib_compressor_new(G_ZLIB_COMPRESSOR_FORMAT_GZIP, 6);
    g_autoptr(GOutputStream) mem = g_memory_output_stream_new_resizable();
    g_autoptr(GOutputStream) out = g_converter_output_stream_new(mem, G_CONVERTER(comp));
    GError *error = NULL;
    g_assert_true(g_output_stream_write_all(out, data, len, NULL, NULL, &error));
    g_assert_true(g_output_stream_close(out, NULL, &error));
    g_assert_no_error(error);
    return g_memory_output_stream_steal_as_bytes(G_MEMORY_OUTPUT_STREAM(mem));
}

/* Writes an unsigned-byte IDX file with @ndim big-endian dims; @cut drops bytes at the end. */
static void write_idx(const char *path, guint ndim, const guint32 *dims, const guint8 *data,
                      gboolean gzip, gsize cut)
{
    g_autoptr(GByteArray) bytes = g_byte_array_new();
    guint8 magic[4] = {0, 0, 0x08, (guint8) ndim};
    g_byte_array_append(bytes, magic, 4);
    gsize count = 1;
    for (guint i = 0; i < ndim; i++) {
        guint32 be = GUINT32_TO_BE(dims[i]);
        g_byte_array_append(bytes, (const guint8 *) &be, 4);
        count *= dims[i];
    }
    g_byte_array_append(bytes, data, (guint) count);
    g_byte_array_set_size(bytes, bytes->len - (guint) cut);
    GError *error = NULL;
    if (gzip) {
        g_autoptr(GBytes) z = gzip_bytes(bytes->data, bytes->len);
        gsize zlen;
        const char *zdata = g_bytes_get_data(z, &zlen);
        g_file_set_contents(path, zdata, (gssize) zlen, &error);
    } else {
        g_file_set_contents(path, (const char *) bytes->data, bytes->len, &error);
    }
    g_assert_no_error(error);
}

typedef struct {
    guint32 n, rows, cols;
    guint8 *images; /* n * rows * cols */
    guint8 *labels; /* n */
    char *images_path, *labels_path;
} IdxSet;

static IdxSet make_idx(Fixture *f, const char *tag, guint32 n, guint32 rows, guint32 cols,
                       gboolean gzip, guint32 seed)
{
    IdxSet s = {.n = n, .rows = rows, .cols = cols};
    s.images = g_new(guint8, n * rows * cols);
    s.labels = g_new(guint8, n);
    GRand *rand = g_rand_new_with_seed(seed);
    for (guint32 i = 0; i < n * rows * cols; i++) {
        s.images[i] = (guint8) g_rand_int_range(rand, 0, 256);
    }
    for (guint32 i = 0; i < n; i++) {
        s.labels[i] = (guint8) g_rand_int_range(rand, 0, 10);
    }
    g_rand_free(rand);
    g_autofree char *iname = g_strdup_printf("%s-images-idx3-ubyte%s", tag, gzip ? ".gz" : "");
    g_autofree char *lname = g_strdup_printf("%s-labels-idx1-ubyte%s", tag, gzip ? ".gz" : "");
    s.images_path = tmp_path(f, iname);
    s.labels_path = tmp_path(f, lname);
    guint32 idims[3] = {n, rows, cols};
    write_idx(s.images_path, 3, idims, s.images, gzip, 0);
    write_idx(s.labels_path, 1, &n, s.labels, gzip, 0);
    return s;
}

static void idx_set_clear(IdxSet *s)
{
    g_free(s->images);
    g_free(s->labels);
    g_free(s->images_path);
    g_free(s->labels_path);
}

/* Opens @spec and checks every sample against @s (x = byte / 255, y = label), gathering in
 * reverse order so the indices matter. */
static void assert_matches_idx(const char *spec, const IdxSet *s)
{
    GError *error = NULL;
    LmnDataset *ds = lmn_dataset_open(spec, &error);
    g_assert_no_error(error);
    g_assert_cmpint(lmn_dataset_get_length(ds), ==, s->n);
    LmnShape want = lmn_shape_make(3, (gint64) 1, (gint64) s->rows, (gint64) s->cols);
    g_assert_true(lmn_shape_equal(lmn_dataset_get_sample_shape(ds), &want));
    g_assert_true(lmn_dataset_has_class_labels(ds));
    g_assert_cmpuint(lmn_dataset_get_target_shape(ds)->ndim, ==, 0);

    gsize numel = (gsize) s->rows * s->cols;
    g_autofree guint32 *idx = g_new(guint32, s->n);
    for (guint32 i = 0; i < s->n; i++) {
        idx[i] = s->n - 1 - i;
    }
    g_autofree float *x = g_new(float, s->n *numel);
    g_autofree gint32 *y = g_new(gint32, s->n);
    lmn_dataset_gather(ds, idx, s->n, x, y);
    gint64 max_label = -1;
    for (guint32 i = 0; i < s->n; i++) {
        guint32 k = idx[i];
        g_assert_cmpint(y[i], ==, s->labels[k]);
        max_label = MAX(max_label, s->labels[k]);
        for (gsize j = 0; j < numel; j++) {
            g_assert_cmpfloat_with_epsilon(x[i * numel + j], s->images[k * numel + j] / 255.0,
                                           1e-7);
        }
    }
    g_assert_cmpint(lmn_dataset_get_max_label(ds), ==, max_label);
    lmn_dataset_free(ds);
}

static gboolean files_equal(const char *a, const char *b)
{
    g_autofree char *da = NULL, *db = NULL;
    gsize la = 0, lb = 0;
    g_assert_true(g_file_get_contents(a, &da, &la, NULL));
    g_assert_true(g_file_get_contents(b, &db, &lb, NULL));
    return la == lb && memcmp(da, db, la) == 0;
}

/* ---- conversion ------------------------------------------------------------------------ */

static void test_convert_round_trip(Fixture *f, gboolean gzip)
{
    IdxSet s = make_idx(f, "train", 37, 5, 4, gzip, 11);
    g_autofree char *out = tmp_path(f, "out.h5");
    g_autofree char *spec = g_strconcat(out, ":/train", NULL);
    GError *error = NULL;
    g_assert_true(lmn_convert_idx(s.images_path, s.labels_path, spec, FALSE, &error));
    g_assert_no_error(error);
    assert_matches_idx(spec, &s);

    /* The stored layout is the documented one: uint8 x [N, 1, rows, cols] with scale = 1/255,
     * uint8 y [N], chunked, compressed when deflate is available. */
    hid_t file = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t x = H5Dopen2(file, "/train/x", H5P_DEFAULT);
    hid_t type = H5Dget_type(x);
    g_assert_cmpint(H5Tget_class(type), ==, H5T_INTEGER);
    g_assert_cmpuint(H5Tget_size(type), ==, 1);
    g_assert_cmpint(H5Tget_sign(type), ==, H5T_SGN_NONE);
    hid_t space = H5Dget_space(x);
    hsize_t dims[4];
    g_assert_cmpint(H5Sget_simple_extent_dims(space, dims, NULL), ==, 4);
    g_assert_cmpuint(dims[0], ==, 37);
    g_assert_cmpuint(dims[1], ==, 1);
    g_assert_cmpuint(dims[2], ==, 5);
    g_assert_cmpuint(dims[3], ==, 4);
    hid_t dcpl = H5Dget_create_plist(x);
    g_assert_cmpint(H5Pget_layout(dcpl), ==, H5D_CHUNKED);
    if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) {
        g_assert_cmpint(H5Pget_nfilters(dcpl), ==, 1);
        g_assert_cmpint(H5Pget_filter2(dcpl, 0, NULL, NULL, NULL, 0, NULL, NULL), ==,
                        H5Z_FILTER_DEFLATE);
    }
    double scale = 0;
    hid_t attr = H5Aopen(x, "scale", H5P_DEFAULT);
    g_assert_cmpint(H5Aread(attr, H5T_NATIVE_DOUBLE, &scale), >=, 0);
    g_assert_cmpfloat(scale, ==, 1.0 / 255.0);
    H5Aclose(attr);
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Tclose(type);
    H5Dclose(x);
    hid_t y = H5Dopen2(file, "/train/y", H5P_DEFAULT);
    type = H5Dget_type(y);
    g_assert_cmpuint(H5Tget_size(type), ==, 1);
    H5Tclose(type);
    H5Dclose(y);
    H5Fclose(file);

    /* Nothing but the inputs and the output is left in the directory. */
    g_autofree char *listing = list_dir(f);
    g_autofree char *want = g_strdup_printf("out.h5 train-images-idx3-ubyte%s "
                                            "train-labels-idx1-ubyte%s",
                                            gzip ? ".gz" : "", gzip ? ".gz" : "");
    g_assert_cmpstr(listing, ==, want);
    idx_set_clear(&s);
}

static void test_convert_plain(Fixture *f, gconstpointer data)
{
    test_convert_round_trip(f, FALSE);
}

static void test_convert_gzip(Fixture *f, gconstpointer data)
{
    test_convert_round_trip(f, TRUE);
}

static void test_convert_keeps_other_split(Fixture *f, gconstpointer data)
{
    IdxSet train = make_idx(f, "train", 20, 3, 3, TRUE, 1);
    IdxSet test = make_idx(f, "test", 7, 3, 3, FALSE, 2);
    IdxSet other = make_idx(f, "other", 9, 3, 3, FALSE, 3);
    g_autofree char *out = tmp_path(f, "both.h5");
    g_autofree char *train_spec = g_strconcat(out, ":/train", NULL);
    g_autofree char *test_spec = g_strconcat(out, ":/test", NULL);
    GError *error = NULL;
    g_assert_true(lmn_convert_idx(train.images_path, train.labels_path, train_spec, FALSE, &error));
    g_assert_true(lmn_convert_idx(test.images_path, test.labels_path, test_spec, FALSE, &error));
    g_assert_no_error(error);
    assert_matches_idx(train_spec, &train);
    assert_matches_idx(test_spec, &test);

    /* Refusing to overwrite leaves the file byte for byte as it was. */
    g_autofree char *copy = tmp_path(f, "copy.h5");
    g_autofree char *contents = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(out, &contents, &len, NULL));
    g_assert_true(g_file_set_contents(copy, contents, (gssize) len, NULL));
    g_assert_false(
        lmn_convert_idx(other.images_path, other.labels_path, train_spec, FALSE, &error));
    assert_data_error(error, LMN_DATA_ERROR_WRITE, out, "/train", "--overwrite", NULL);
    g_clear_error(&error);
    g_assert_true(files_equal(out, copy));

    /* With overwrite, the split is replaced and the other one kept. */
    g_assert_true(lmn_convert_idx(other.images_path, other.labels_path, train_spec, TRUE, &error));
    g_assert_no_error(error);
    assert_matches_idx(train_spec, &other);
    assert_matches_idx(test_spec, &test);
    g_unlink(copy);

    /* No temporary files are left behind. */
    g_autofree char *listing = list_dir(f);
    g_assert_null(strstr(listing, ".tmp"));
    idx_set_clear(&train);
    idx_set_clear(&test);
    idx_set_clear(&other);
}

static void test_convert_bad_idx(Fixture *f, gconstpointer data)
{
    IdxSet s = make_idx(f, "good", 10, 4, 4, FALSE, 5);
    g_autofree char *out = tmp_path(f, "out.h5");
    g_autofree char *spec = g_strconcat(out, ":/train", NULL);
    GError *error = NULL;
    guint32 dims[3] = {10, 4, 4};

    /* Truncated images: the message names the file and both byte counts. */
    g_autofree char *cut = tmp_path(f, "cut-images");
    write_idx(cut, 3, dims, s.images, FALSE, 30);
    g_assert_false(lmn_convert_idx(cut, s.labels_path, spec, FALSE, &error));
    assert_data_error(error, LMN_DATA_ERROR_FORMAT, cut, "truncated", "176", "146", NULL);
    g_clear_error(&error);

    /* The same, gzip-compressed (the decompressed length is what is short). */
    g_autofree char *cutgz = tmp_path(f, "cut-images.gz");
    write_idx(cutgz, 3, dims, s.images, TRUE, 30);
    g_assert_false(lmn_convert_idx(cutgz, s.labels_path, spec, FALSE, &error));
    assert_data_error(error, LMN_DATA_ERROR_FORMAT, cutgz, "truncated", "176", "146", NULL);
    g_clear_error(&error);

    /* A gzip stream cut short. */
    g_autofree char *gz = tmp_path(f, "images.gz");
    write_idx(gz, 3, dims, s.images, TRUE, 0);
    g_autofree char *zdata = NULL;
    gsize zlen = 0;
    g_assert_true(g_file_get_contents(gz, &zdata, &zlen, NULL));
    g_assert_true(g_file_set_contents(gz, zdata, (gssize) (zlen / 2), NULL));
    g_assert_false(lmn_convert_idx(gz, s.labels_path, spec, FALSE, &error));
    assert_data_error(error, LMN_DATA_ERROR_FORMAT, gz, NULL);
    g_clear_error(&error);

    /* A header promising 8 GiB of images (more than one buffer holds) with no data behind it:
     * refused from the header, before anything is read or allocated. */
    g_autofree char *huge = tmp_path(f, "huge-images");
    static const guint8 huge_header[16] = {0, 0, 0x08, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2};
    g_assert_true(g_file_set_contents(huge, (const char *) huge_header, 16, NULL));
    g_assert_false(lmn_convert_idx(huge, s.labels_path, spec, FALSE, &error));
    assert_data_error(error, LMN_DATA_ERROR_FORMAT, huge, "impossibly large", NULL);
    g_clear_error(&error);

    /* Bad magic. */
    g_autofree char *junk = tmp_path(f, "junk");
    g_assert_true(g_file_set_contents(junk, "PK\x03\x04 definitely not idx", -1, NULL));
    g_assert_false(lmn_convert_idx(junk, s.labels_path, spec, FALSE, &error));
    assert_data_error(error, LMN_DATA_ERROR_FORMAT, junk, "not an IDX file", "0x00000803", NULL);
    g_clear_error(&error);

    /* Swapped files: the labels file's magic is 0x00000801. */
    g_assert_false(lmn_convert_idx(s.labels_path, s.images_path, spec, FALSE, &error));
    assert_data_error(error, LMN_DATA_ERROR_FORMAT, s.labels_path, "swapped", NULL);
    g_clear_error(&error);

    /* Image and label counts differ. */
    g_autofree char *few = tmp_path(f, "few-labels");
    guint32 nine = 9;
    write_idx(few, 1, &nine, s.labels, FALSE, 0);
    g_assert_false(lmn_convert_idx(s.images_path, few, spec, FALSE, &error));
    assert_data_error(error, LMN_DATA_ERROR_FORMAT, s.images_path, few, "10", "9", NULL);
    g_clear_error(&error);

    /* A missing input. */
    g_autofree char *missing = tmp_path(f, "missing.gz");
    g_assert_false(lmn_convert_idx(missing, s.labels_path, spec, FALSE, &error));
    assert_data_error(error, LMN_DATA_ERROR_OPEN, missing, "no such file", NULL);
    g_clear_error(&error);

    /* A target that is not HDF5 is never overwritten. */
    g_autofree char *text = tmp_path(f, "notes.txt");
    g_assert_true(g_file_set_contents(text, "my notes\n", -1, NULL));
    g_autofree char *text_spec = g_strconcat(text, ":/train", NULL);
    g_assert_false(lmn_convert_idx(s.images_path, s.labels_path, text_spec, TRUE, &error));
    assert_data_error(error, LMN_DATA_ERROR_OPEN, text, "not an HDF5 file", NULL);
    g_clear_error(&error);
    g_autofree char *notes = NULL;
    g_assert_true(g_file_get_contents(text, &notes, NULL, NULL));
    g_assert_cmpstr(notes, ==, "my notes\n");

    /* No output appeared from any of the failures. */
    g_assert_false(g_file_test(out, G_FILE_TEST_EXISTS));
    g_autofree char *listing = list_dir(f);
    g_assert_null(strstr(listing, ".tmp"));
    idx_set_clear(&s);
}

/* ---- reading --------------------------------------------------------------------------- */

static void test_open_uint8_scale(Fixture *f, gconstpointer data)
{
    g_autofree char *path = tmp_path(f, "u8.h5");
    hid_t file = h5_create(path);
    guint8 x[4 * 2 * 3];
    for (int i = 0; i < 24; i++) {
        x[i] = (guint8) (i * 11);
    }
    guint8 y[4] = {3, 0, 2, 1};
    hsize_t xd[3] = {4, 2, 3}, yd = 4;
    hid_t xs = h5_write(file, "/d/x", H5T_STD_U8LE, H5T_NATIVE_UINT8, 3, xd, x);
    double scale = 0.5;
    h5_attr_doubles(xs, "scale", &scale, 0);
    H5Dclose(xs);
    H5Dclose(h5_write(file, "/d/y", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &yd, y));
    H5Fclose(file);

    g_autofree char *spec = g_strconcat(path, ":/d", NULL);
    GError *error = NULL;
    LmnDataset *ds = lmn_dataset_open(spec, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(lmn_dataset_get_spec(ds), ==, spec);
    LmnShape want = lmn_shape_make(2, (gint64) 2, (gint64) 3);
    g_assert_true(lmn_shape_equal(lmn_dataset_get_sample_shape(ds), &want));
    g_assert_cmpint(lmn_dataset_get_max_label(ds), ==, 3);
    guint32 idx[4] = {0, 1, 2, 3};
    float xo[24];
    gint32 yo[4];
    lmn_dataset_gather(ds, idx, 4, xo, yo);
    for (int i = 0; i < 24; i++) {
        g_assert_cmpfloat(xo[i], ==, (float) (x[i] * 0.5));
    }
    for (int i = 0; i < 4; i++) {
        g_assert_cmpint(yo[i], ==, y[i]);
    }
    lmn_dataset_free(ds);
}

static void test_open_float(Fixture *f, gconstpointer data)
{
    g_autofree char *path = tmp_path(f, "f.h5");
    hid_t file = h5_create(path);
    float x32[3 * 5];
    double x64[3 * 5];
    for (int i = 0; i < 15; i++) {
        x32[i] = (float) (i * 0.37 - 2.0);
        x64[i] = i * 0.37 - 2.0;
    }
    gint32 y[3] = {0, 1, 0};
    hsize_t xd[2] = {3, 5}, yd = 3;
    H5Dclose(h5_write(file, "/a/x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x32));
    H5Dclose(h5_write(file, "/a/y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &yd, y));
    /* float64, big-endian on disk: HDF5 converts both. */
    H5Dclose(h5_write(file, "/b/x", H5T_IEEE_F64BE, H5T_NATIVE_DOUBLE, 2, xd, x64));
    H5Dclose(h5_write(file, "/b/y", H5T_STD_I32BE, H5T_NATIVE_INT32, 1, &yd, y));
    H5Fclose(file);

    const char *splits[] = {":/a", ":/b/"};
    for (int s = 0; s < 2; s++) {
        g_autofree char *spec = g_strconcat(path, splits[s], NULL);
        GError *error = NULL;
        LmnDataset *ds = lmn_dataset_open(spec, &error);
        g_assert_no_error(error);
        g_assert_cmpint(lmn_dataset_get_length(ds), ==, 3);
        guint32 idx[3] = {2, 0, 1};
        float xo[15];
        gint32 yo[3];
        lmn_dataset_gather(ds, idx, 3, xo, yo);
        for (int i = 0; i < 3; i++) {
            g_assert_cmpint(yo[i], ==, y[idx[i]]);
            for (int j = 0; j < 5; j++) {
                g_assert_cmpfloat(xo[i * 5 + j], ==, (float) x64[idx[i] * 5 + j]);
            }
        }
        lmn_dataset_free(ds);
    }
}

static void test_open_mean_std(Fixture *f, gconstpointer data)
{
    g_autofree char *path = tmp_path(f, "norm.h5");
    hid_t file = h5_create(path);
    /* float x [2, 3, 2]: 3 channels of 2 values, per-channel mean and std. */
    float xf[12];
    guint8 xb[12];
    for (int i = 0; i < 12; i++) {
        xf[i] = (float) (i * 1.5 - 4);
        xb[i] = (guint8) (i * 20 + 3);
    }
    guint8 y[2] = {1, 0};
    hsize_t xd[3] = {2, 3, 2}, yd = 2;
    double mean[3] = {1.0, -2.0, 0.25}, std[3] = {2.0, 4.0, 0.5};
    hid_t x = h5_write(file, "/f/x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, xd, xf);
    h5_attr_doubles(x, "mean", mean, 3);
    h5_attr_doubles(x, "std", std, 3);
    H5Dclose(x);
    H5Dclose(h5_write(file, "/f/y", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &yd, y));
    /* uint8 with scale, scalar mean, per-channel std. */
    double scale = 1.0 / 255.0, smean = 0.5;
    x = h5_write(file, "/u/x", H5T_STD_U8LE, H5T_NATIVE_UINT8, 3, xd, xb);
    h5_attr_doubles(x, "scale", &scale, 0);
    h5_attr_doubles(x, "mean", &smean, 0);
    h5_attr_doubles(x, "std", std, 3);
    H5Dclose(x);
    H5Dclose(h5_write(file, "/u/y", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &yd, y));
    /* Two mean values for three channels. */
    x = h5_write(file, "/bad/x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, xd, xf);
    h5_attr_doubles(x, "mean", mean, 2);
    H5Dclose(x);
    H5Dclose(h5_write(file, "/bad/y", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &yd, y));
    H5Fclose(file);

    GError *error = NULL;
    guint32 idx[2] = {0, 1};
    float xo[12];
    gint32 yo[2];
    g_autofree char *fspec = g_strconcat(path, ":/f", NULL);
    LmnDataset *ds = lmn_dataset_open(fspec, &error);
    g_assert_no_error(error);
    lmn_dataset_gather(ds, idx, 2, xo, yo);
    for (int i = 0; i < 12; i++) {
        int c = (i / 2) % 3;
        g_assert_cmpfloat_with_epsilon(xo[i], ((double) xf[i] - mean[c]) / std[c], 1e-6);
    }
    lmn_dataset_free(ds);

    g_autofree char *uspec = g_strconcat(path, ":/u", NULL);
    ds = lmn_dataset_open(uspec, &error);
    g_assert_no_error(error);
    lmn_dataset_gather(ds, idx, 2, xo, yo);
    for (int i = 0; i < 12; i++) {
        int c = (i / 2) % 3;
        g_assert_cmpfloat_with_epsilon(xo[i], (xb[i] * scale - smean) / std[c], 1e-6);
    }
    lmn_dataset_free(ds);

    g_autofree char *bspec = g_strconcat(path, ":/bad", NULL);
    g_assert_null(lmn_dataset_open(bspec, &error));
    assert_data_error(error, LMN_DATA_ERROR_SHAPE, path, "/bad/x", "'mean'", "3 channels", NULL);
    g_clear_error(&error);
}

static void test_open_label_types(Fixture *f, gconstpointer data)
{
    g_autofree char *path = tmp_path(f, "labels.h5");
    hid_t file = h5_create(path);
    float x[4] = {0, 1, 2, 3};
    gint64 y64[4] = {7, 0, 123456789, 2};
    guint16 y16[4] = {65535, 9, 0, 40000};
    float yf[8] = {0.5f, -1, 2, 3, 4, 5, 6, 7};
    hsize_t xd = 4, yfd[2] = {4, 2};
    H5Dclose(h5_write(file, "/i64/x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &xd, x));
    H5Dclose(h5_write(file, "/i64/y", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &xd, y64));
    H5Dclose(h5_write(file, "/u16/x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &xd, x));
    H5Dclose(h5_write(file, "/u16/y", H5T_STD_U16BE, H5T_NATIVE_UINT16, 1, &xd, y16));
    H5Dclose(h5_write(file, "/reg/x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &xd, x));
    H5Dclose(h5_write(file, "/reg/y", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, yfd, yf));
    H5Fclose(file);

    GError *error = NULL;
    guint32 idx[4] = {3, 2, 1, 0};
    gint32 yo[4];
    float xo[4];
    g_autofree char *s64 = g_strconcat(path, ":/i64", NULL);
    LmnDataset *ds = lmn_dataset_open(s64, &error);
    g_assert_no_error(error);
    /* Scalar samples: x [N] has the sample shape []. */
    g_assert_cmpuint(lmn_dataset_get_sample_shape(ds)->ndim, ==, 0);
    lmn_dataset_gather(ds, idx, 4, xo, yo);
    for (int i = 0; i < 4; i++) {
        g_assert_cmpint(yo[i], ==, y64[idx[i]]);
        g_assert_cmpfloat(xo[i], ==, x[idx[i]]);
    }
    g_assert_cmpint(lmn_dataset_get_max_label(ds), ==, 123456789);
    lmn_dataset_free(ds);

    g_autofree char *s16 = g_strconcat(path, ":/u16", NULL);
    ds = lmn_dataset_open(s16, &error);
    g_assert_no_error(error);
    lmn_dataset_gather(ds, idx, 4, NULL, yo);
    for (int i = 0; i < 4; i++) {
        g_assert_cmpint(yo[i], ==, y16[idx[i]]);
    }
    g_assert_cmpint(lmn_dataset_get_max_label(ds), ==, 65535);
    lmn_dataset_free(ds);

    g_autofree char *sreg = g_strconcat(path, ":/reg", NULL);
    ds = lmn_dataset_open(sreg, &error);
    g_assert_no_error(error);
    g_assert_false(lmn_dataset_has_class_labels(ds));
    g_assert_cmpint(lmn_dataset_get_max_label(ds), ==, -1);
    LmnShape two = lmn_shape_make(1, (gint64) 2);
    g_assert_true(lmn_shape_equal(lmn_dataset_get_target_shape(ds), &two));
    float to[8];
    lmn_dataset_gather(ds, idx, 4, xo, to);
    for (int i = 0; i < 4; i++) {
        g_assert_cmpfloat(to[2 * i], ==, yf[2 * idx[i]]);
        g_assert_cmpfloat(to[2 * i + 1], ==, yf[2 * idx[i] + 1]);
    }
    /* Float targets have no classes to check. */
    LmnShape scalar = lmn_shape_make(0);
    g_assert_true(lmn_dataset_check_model(ds, &scalar, 2, &error));
    g_assert_no_error(error);
    lmn_dataset_free(ds);
}

/* Writes a file with one split /s whose x and y are given by type and data. */
static char *write_case(Fixture *f, const char *name, hid_t xtype, hid_t xmem, int xndim,
                        const hsize_t *xdims, const void *x, hid_t ytype, hid_t ymem, int yndim,
                        const hsize_t *ydims, const void *y)
{
    char *path = tmp_path(f, name);
    hid_t file = h5_create(path);
    if (x != NULL) {
        H5Dclose(h5_write(file, "/s/x", xtype, xmem, xndim, xdims, x));
    }
    if (y != NULL) {
        H5Dclose(h5_write(file, "/s/y", ytype, ymem, yndim, ydims, y));
    } else {
        H5Gclose(H5Gcreate2(file, "/s", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    }
    H5Fclose(file);
    return path;
}

/* Opens "@path:/s", expecting @code and a message with the file, the path and @extra. */
static void assert_open_fails(const char *path, const char *split, int code, const char *place,
                              const char *extra)
{
    g_autofree char *spec = g_strconcat(path, split, NULL);
    GError *error = NULL;
    g_assert_null(lmn_dataset_open(spec, &error));
    assert_data_error(error, code, path, place, extra, NULL);
    g_clear_error(&error);
}

static void test_open_bad_files(Fixture *f, gconstpointer data)
{
    /* Missing file. */
    g_autofree char *missing = tmp_path(f, "missing.h5");
    assert_open_fails(missing, ":/train", LMN_DATA_ERROR_OPEN, "missing.h5", "no such file");

    /* Random bytes. */
    g_autofree char *noise = tmp_path(f, "noise.h5");
    guint8 junk[4096];
    GRand *rand = g_rand_new_with_seed(3);
    for (gsize i = 0; i < sizeof junk; i++) {
        junk[i] = (guint8) g_rand_int(rand);
    }
    g_rand_free(rand);
    g_assert_true(g_file_set_contents(noise, (const char *) junk, sizeof junk, NULL));
    assert_open_fails(noise, ":/train", LMN_DATA_ERROR_OPEN, "noise.h5", "not an HDF5 file");

    /* A valid file cut in half. */
    g_autofree char *whole = tmp_path(f, "whole.h5");
    write_simple(whole, 200);
    g_autofree char *bytes = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(whole, &bytes, &len, NULL));
    g_autofree char *half = tmp_path(f, "half.h5");
    g_assert_true(g_file_set_contents(half, bytes, (gssize) (len / 2), NULL));
    assert_open_fails(half, ":/train", LMN_DATA_ERROR_OPEN, "half.h5", "truncated or damaged");

    /* Missing split: the message lists the splits there are. */
    assert_open_fails(whole, ":/test", LMN_DATA_ERROR_MISSING, "/test", "/train");
    /* Not a FILE:/split spec at all. */
    GError *error = NULL;
    g_assert_null(lmn_dataset_open(whole, &error));
    assert_data_error(error, LMN_DATA_ERROR_OPEN, whole, "FILE:/SPLIT", NULL);
    g_clear_error(&error);

    float x[6] = {1, 2, 3, 4, 5, 6};
    guint8 y[3] = {0, 1, 2};
    hsize_t xd[2] = {3, 2}, yd = 3, yd2 = 2;

    /* Missing y, missing x. */
    g_autofree char *no_y =
        write_case(f, "no-y.h5", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x, 0, 0, 0, NULL, NULL);
    assert_open_fails(no_y, ":/s", LMN_DATA_ERROR_MISSING, "no-y.h5:/s", "'y'");
    g_autofree char *no_x = tmp_path(f, "no-x.h5");
    hid_t file = h5_create(no_x);
    H5Dclose(h5_write(file, "/s/y", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &yd, y));
    H5Fclose(file);
    assert_open_fails(no_x, ":/s", LMN_DATA_ERROR_MISSING, "no-x.h5:/s", "'x'");

    /* Lengths differ. */
    g_autofree char *mismatch = write_case(f, "mismatch.h5", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2,
                                           xd, x, H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &yd2, y);
    g_autofree char *spec = g_strconcat(mismatch, ":/s", NULL);
    g_assert_null(lmn_dataset_open(spec, &error));
    assert_data_error(error, LMN_DATA_ERROR_SHAPE, "mismatch.h5:/s", "x has 3 samples", "y has 2",
                      NULL);
    g_clear_error(&error);

    /* Unsupported x dtypes: int16 and strings. */
    gint16 xi[6] = {1, 2, 3, 4, 5, 6};
    g_autofree char *i16 = write_case(f, "int16.h5", H5T_STD_I16LE, H5T_NATIVE_INT16, 2, xd, xi,
                                      H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &yd, y);
    assert_open_fails(i16, ":/s", LMN_DATA_ERROR_DTYPE, "int16.h5:/s/x", "int16");
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, 4);
    char xs[3][4] = {"abc", "def", "ghi"};
    g_autofree char *strings = write_case(f, "strings.h5", str, str, 1, &yd, xs, H5T_STD_U8LE,
                                          H5T_NATIVE_UINT8, 1, &yd, y);
    H5Tclose(str);
    assert_open_fails(strings, ":/s", LMN_DATA_ERROR_DTYPE, "strings.h5:/s/x", "string");

    /* NaN and Inf in float x. */
    float xn[6] = {1, 2, 3, 4, NAN, 6};
    g_autofree char *nan = write_case(f, "nan.h5", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, xn,
                                      H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &yd, y);
    assert_open_fails(nan, ":/s", LMN_DATA_ERROR_VALUE, "nan.h5:/s/x", "sample 2 holds NaN");
    double xinf[6] = {1, -INFINITY, 3, 4, 5, 6};
    g_autofree char *inf = write_case(f, "inf.h5", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, xd, xinf,
                                      H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &yd, y);
    assert_open_fails(inf, ":/s", LMN_DATA_ERROR_VALUE, "inf.h5:/s/x", "sample 0 holds -Inf");

    /* Negative label, and one beyond int32. */
    gint8 yneg[3] = {0, -1, 2};
    g_autofree char *neg = write_case(f, "neg.h5", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x,
                                      H5T_STD_I8LE, H5T_NATIVE_INT8, 1, &yd, yneg);
    assert_open_fails(neg, ":/s", LMN_DATA_ERROR_VALUE, "neg.h5:/s/y", "label -1 at index 1");
    guint64 ybig[3] = {0, 1, G_MAXUINT64};
    g_autofree char *big = write_case(f, "big.h5", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x,
                                      H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, &yd, ybig);
    assert_open_fails(big, ":/s", LMN_DATA_ERROR_VALUE, "big.h5:/s/y",
                      "label 18446744073709551615 at index 2");

    /* Integer data of shape [N, 2] is per-pixel labels: float values [2] holding the classes. */
    guint8 y2[6] = {0, 3, 1, 2, 7, 0};
    g_autofree char *wide = write_case(f, "wide.h5", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x,
                                       H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, xd, y2);
    g_autofree char *wide_spec = g_strconcat(wide, ":/s", NULL);
    LmnDataset *ds = lmn_dataset_open(wide_spec, &error);
    g_assert_no_error(error);
    LmnTensorInfo info = lmn_dataset_get_target_info_at(ds, 0);
    g_assert_cmpint(info.dtype, ==, LMN_DTYPE_F32);
    g_assert_cmpuint(info.shape.ndim, ==, 1);
    g_assert_cmpint(info.shape.dims[0], ==, 2);
    float got[6];
    guint32 idx[3] = {0, 1, 2};
    void *targets[] = {got};
    g_autofree float *xv = g_new(float, 3 * lmn_shape_numel(lmn_dataset_get_sample_shape(ds)));
    g_assert_true(lmn_dataset_read_targets(ds, idx, 3, xv, targets, &error));
    g_assert_no_error(error);
    for (guint i = 0; i < 6; i++)
        g_assert_cmpfloat(got[i], ==, (float) y2[i]);
    lmn_dataset_free(ds);
}

static void test_check_model(Fixture *f, gconstpointer data)
{
    g_autofree char *path = tmp_path(f, "fashion.h5");
    hsize_t n = 200;
    hid_t file = h5_create(path);
    g_autofree guint8 *x = g_new0(guint8, n * 784);
    g_autofree guint8 *y = g_new0(guint8, n);
    for (hsize_t i = 0; i < n; i++) {
        y[i] = (guint8) (i % 10);
    }
    y[123] = 10;
    hsize_t xd[2] = {n, 784};
    H5Dclose(h5_write(file, "/train/x", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, xd, x));
    H5Dclose(h5_write(file, "/train/y", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &n, y));
    H5Fclose(file);

    g_autofree char *spec = g_strconcat(path, ":/train", NULL);
    GError *error = NULL;
    LmnDataset *ds = lmn_dataset_open(spec, &error);
    g_assert_no_error(error);
    g_assert_cmpint(lmn_dataset_get_max_label(ds), ==, 10);

    /* A flat [784] file feeds a [1, 28, 28] model. */
    LmnShape image = lmn_shape_make(3, (gint64) 1, (gint64) 28, (gint64) 28);
    g_assert_true(lmn_dataset_check_model(ds, &image, -1, &error));
    g_assert_no_error(error);
    g_assert_true(lmn_dataset_check_model(ds, &image, 11, &error));
    g_assert_no_error(error);

    g_assert_false(lmn_dataset_check_model(ds, &image, 10, &error));
    assert_data_error(error, LMN_DATA_ERROR_VALUE, "fashion.h5:/train/y",
                      "label 10 at index 123 is out of range for a model with 10 classes", NULL);
    g_clear_error(&error);

    LmnShape cifar = lmn_shape_make(3, (gint64) 3, (gint64) 32, (gint64) 32);
    g_assert_false(lmn_dataset_check_model(ds, &cifar, 10, &error));
    assert_data_error(error, LMN_DATA_ERROR_SHAPE, "fashion.h5:/train", "[784] (784 values)",
                      "[3, 32, 32] (3072 values)", NULL);
    g_clear_error(&error);

    /* A count that wraps to 784 past 2^64 is not 784. */
    LmnShape wraps = lmn_shape_make(3, (gint64) 598407739, (gint64) 11001563, (gint64) 22416);
    g_assert_false(lmn_dataset_check_model(ds, &wraps, 11, &error));
    assert_data_error(error, LMN_DATA_ERROR_SHAPE, "fashion.h5:/train",
                      "the model's input [598407739, 11001563, 22416] has more values than fit "
                      "64 bits",
                      "set [model] input", NULL);
    g_clear_error(&error);
    lmn_dataset_free(ds);
}

/* ---- splitting ------------------------------------------------------------------------- */

static void test_split(Fixture *f, gconstpointer data)
{
    g_autofree char *path = tmp_path(f, "split.h5");
    const guint32 n = 101;
    write_simple(path, n);
    g_autofree char *spec = g_strconcat(path, ":/train", NULL);
    GError *error = NULL;

    /* The held-out set is the first round(f * N) of the LMN_STREAM_SPLIT permutation. */
    guint32 perm[101];
    for (guint32 i = 0; i < n; i++) {
        perm[i] = i;
    }
    LmnRandom rng;
    lmn_random_init(&rng, 42, LMN_STREAM(LMN_STREAM_SPLIT, 0));
    lmn_random_shuffle(&rng, perm, n);
    gboolean expect_held[101] = {FALSE};
    const guint32 n_hold = 20; /* round(0.2 * 101) = round(20.2) */
    for (guint32 i = 0; i < n_hold; i++) {
        expect_held[perm[i]] = TRUE;
    }

    guint32 first_held[20];
    for (int run = 0; run < 2; run++) {
        LmnDataset *ds = lmn_dataset_open(spec, &error);
        g_assert_no_error(error);
        LmnDataset *held = lmn_dataset_split(ds, 0.2, 42, &error);
        g_assert_no_error(error);
        g_assert_cmpint(lmn_dataset_get_length(held), ==, n_hold);
        g_assert_cmpint(lmn_dataset_get_length(ds), ==, n - n_hold);
        g_assert_cmpstr(lmn_dataset_get_spec(held), ==, spec);

        /* Each sample is in exactly one part, rows stay whole (x[i][j] = i + j/10, y = i % 3),
         * and both parts are in file order. */
        gboolean seen[101] = {FALSE};
        LmnDataset *parts[2] = {held, ds};
        for (int p = 0; p < 2; p++) {
            guint32 len = (guint32) lmn_dataset_get_length(parts[p]);
            g_assert_cmpuint(len, <=, n);
            guint32 idx[101];
            float x[101 * 3];
            gint32 y[101];
            for (guint32 i = 0; i < len; i++) {
                idx[i] = i;
            }
            lmn_dataset_gather(parts[p], idx, len, x, y);
            gint64 previous = -1, max_label = -1;
            for (guint32 i = 0; i < len; i++) {
                gint64 orig = (gint64) x[i * 3];
                g_assert_cmpint(orig, >, previous);
                previous = orig;
                g_assert_false(seen[orig]);
                seen[orig] = TRUE;
                g_assert_cmpint(expect_held[orig], ==, p == 0);
                g_assert_cmpfloat(x[i * 3 + 2], ==, (float) orig + 0.2f);
                g_assert_cmpint(y[i], ==, orig % 3);
                max_label = MAX(max_label, y[i]);
                if (p == 0 && run == 0) {
                    first_held[i] = (guint32) orig;
                } else if (p == 0) {
                    g_assert_cmpuint(first_held[i], ==, orig);
                }
            }
            g_assert_cmpint(lmn_dataset_get_max_label(parts[p]), ==, max_label);
        }
        for (guint32 i = 0; i < n; i++) {
            g_assert_true(seen[i]);
        }
        lmn_dataset_free(held);
        lmn_dataset_free(ds);
    }

    /* Another seed holds out another set. */
    LmnDataset *ds = lmn_dataset_open(spec, &error);
    LmnDataset *held = lmn_dataset_split(ds, 0.2, 43, &error);
    g_assert_no_error(error);
    float hx[20 * 3];
    guint32 idx[20];
    for (guint32 i = 0; i < 20; i++) {
        idx[i] = i;
    }
    lmn_dataset_gather(held, idx, 20, hx, NULL);
    gboolean same = TRUE;
    for (guint32 i = 0; i < 20; i++) {
        same = same && (guint32) hx[i * 3] == first_held[i];
    }
    g_assert_false(same);
    lmn_dataset_free(held);

    /* A fraction that leaves a part empty is an error, and the dataset is unchanged. */
    g_assert_null(lmn_dataset_split(ds, 0.001, 1, &error));
    assert_data_error(error, LMN_DATA_ERROR_VALUE, spec, "empty", NULL);
    g_clear_error(&error);
    g_assert_cmpint(lmn_dataset_get_length(ds), ==, n - 20);
    lmn_dataset_free(ds);
}

static void test_split_spec(Fixture *f, gconstpointer data)
{
    char *file = NULL, *split = NULL;
    GError *error = NULL;
    g_assert_true(lmn_split_spec("data/fashion.h5:/train", &file, &split, &error));
    g_assert_cmpstr(file, ==, "data/fashion.h5");
    g_assert_cmpstr(split, ==, "/train");
    g_free(file);
    g_free(split);
    /* The last ":/" separates: the file name may hold one. */
    g_assert_true(lmn_split_spec("C:/x:/y.h5:/a/b/", &file, &split, &error));
    g_assert_cmpstr(file, ==, "C:/x:/y.h5");
    g_assert_cmpstr(split, ==, "/a/b");
    g_free(file);
    g_free(split);
    g_assert_false(lmn_split_spec("fashion.h5", &file, &split, &error));
    assert_data_error(error, LMN_DATA_ERROR_OPEN, "fashion.h5", NULL);
    g_clear_error(&error);
    g_assert_false(lmn_split_spec(":/train", &file, &split, &error));
    assert_data_error(error, LMN_DATA_ERROR_OPEN, ":/train", NULL);
    g_clear_error(&error);
}

/* ---- the HDF5 helpers ------------------------------------------------------------------ */

static void test_h5_util(Fixture *f, gconstpointer data)
{
    g_autofree char *path = tmp_path(f, "util.h5");
    LmnH5Errors errs = lmn_h5_errors_checkpoint(path);
    GError *error = NULL;

    g_autoptr(LmnH5AtomicFile) af = lmn_h5_atomic_file_new(path, FALSE, &errs, &error);
    g_assert_no_error(error);
    hid_t file = lmn_h5_atomic_file_peek_id(af);
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(lmn_h5_atomic_file_peek_temp_path(af), G_FILE_TEST_EXISTS));
    {
        g_auto(LmnH5Id) group = lmn_h5_group_create(file, "model/fc1/sub", &errs, &error);
        g_assert_no_error(error);
        g_assert_true(lmn_h5_attr_write_string(group, "type", "dense ü", &errs, &error));
        g_assert_true(lmn_h5_attr_write_double(group, "lr", 0.125, &errs, &error));
        g_assert_true(lmn_h5_attr_write_int64(group, "step", G_MININT64 + 5, &errs, &error));
        double v[3] = {1.5, -2, 1e300};
        g_assert_true(lmn_h5_attr_write_doubles(group, "v", v, 3, &errs, &error));
        /* Rewriting replaces. */
        g_assert_true(lmn_h5_attr_write_double(group, "lr", 0.25, &errs, &error));
        float w[6] = {1, 2, 3, 4, 5, 6};
        LmnShape shape = lmn_shape_make(2, (gint64) 2, (gint64) 3);
        g_assert_true(
            lmn_h5_write_float_dataset(file, "/model/fc2/weight", &shape, w, &errs, &error));
        g_assert_false(
            lmn_h5_write_float_dataset(file, "/model/fc2/weight", &shape, w, &errs, &error));
        g_assert_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_WRITE);
        g_assert_nonnull(strstr(error->message, "/model/fc2/weight"));
        g_clear_error(&error);
    }
    g_assert_true(lmn_h5_atomic_file_commit(af, &error));
    g_assert_no_error(error);
    g_clear_pointer(&af, lmn_h5_atomic_file_free);
    g_autofree char *listing = list_dir(f);
    g_assert_cmpstr(listing, ==, "util.h5");

    g_auto(LmnH5Id) rd = lmn_h5_file_open_read(path, &errs, &error);
    g_assert_no_error(error);
    {
        g_auto(LmnH5Id) group = lmn_h5_group_open(rd, "/model/fc1/sub", &errs, &error);
        g_assert_no_error(error);
        g_autofree char *type = lmn_h5_attr_read_string(group, "type", &errs, &error);
        g_assert_cmpstr(type, ==, "dense ü");
        double lr = 0;
        g_assert_true(lmn_h5_attr_read_double(group, "lr", &lr, &errs, &error));
        g_assert_cmpfloat(lr, ==, 0.25);
        gint64 step = 0;
        g_assert_true(lmn_h5_attr_read_int64(group, "step", &step, &errs, &error));
        g_assert_cmpint(step, ==, G_MININT64 + 5);
        gsize n = 0;
        g_autofree double *v = lmn_h5_attr_read_doubles(group, "v", &n, &errs, &error);
        g_assert_cmpuint(n, ==, 3);
        g_assert_cmpfloat(v[2], ==, 1e300);
        g_assert_no_error(error);
        /* Wrong kinds: a float is not an int64, a number not a string, missing is missing. */
        g_assert_false(lmn_h5_attr_read_int64(group, "lr", &step, &errs, &error));
        g_assert_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT);
        g_assert_nonnull(strstr(error->message, "/model/fc1/sub"));
        g_clear_error(&error);
        g_assert_null(lmn_h5_attr_read_string(group, "lr", &errs, &error));
        g_assert_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT);
        g_clear_error(&error);
        g_assert_false(lmn_h5_attr_read_double(group, "nope", &lr, &errs, &error));
        g_assert_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT);
        g_assert_nonnull(strstr(error->message, "'nope'"));
        g_clear_error(&error);
        g_assert_false(lmn_h5_attr_read_double(group, "v", &lr, &errs, &error));
        g_assert_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_MISMATCH);
        g_clear_error(&error);
    }
    LmnShape want = lmn_shape_make(2, (gint64) 2, (gint64) 3);
    LmnShape got;
    g_autofree float *w =
        lmn_h5_read_float_dataset(rd, "/model/fc2/weight", &want, &got, &errs, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_shape_equal(&got, &want));
    g_assert_cmpfloat(w[5], ==, 6);
    LmnShape wrong = lmn_shape_make(2, (gint64) 3, (gint64) 2);
    g_assert_null(lmn_h5_read_float_dataset(rd, "/model/fc2/weight", &wrong, NULL, &errs, &error));
    g_assert_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_MISMATCH);
    g_assert_nonnull(strstr(error->message, "[2, 3]"));
    g_assert_nonnull(strstr(error->message, "[3, 2]"));
    g_clear_error(&error);
    g_assert_null(lmn_h5_read_float_dataset(rd, "/model/fc3/weight", NULL, NULL, &errs, &error));
    g_assert_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT);
    g_assert_nonnull(strstr(error->message, "/model/fc3/weight"));
    g_clear_error(&error);
    g_assert_cmpint(lmn_h5_group_open(rd, "/model/fc2/weight", &errs, &error), <, 0);
    g_assert_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_MISMATCH);
    g_clear_error(&error);
}

static void test_h5_atomic_failures(Fixture *f, gconstpointer data)
{
    g_autofree char *path = tmp_path(f, "ckpt.h5");
    write_simple(path, 5);
    g_autofree char *before = NULL;
    gsize len_before = 0;
    g_assert_true(g_file_get_contents(path, &before, &len_before, NULL));
    LmnH5Errors errs = lmn_h5_errors_data(path);
    GError *error = NULL;

    /* Abandoned without commit: the temporary file goes, the target stays as it was. */
    LmnH5AtomicFile *af = lmn_h5_atomic_file_new(path, TRUE, &errs, &error);
    g_assert_no_error(error);
    hid_t file = lmn_h5_atomic_file_peek_id(af);
    g_assert_true(lmn_h5_path_exists(file, "/train/x"));
    g_assert_true(lmn_h5_attr_write_string(file, "note", "half-done", &errs, &error));
    lmn_h5_atomic_file_free(af);
    g_autofree char *listing = list_dir(f);
    g_assert_cmpstr(listing, ==, "ckpt.h5");
    g_autofree char *after = NULL;
    gsize len_after = 0;
    g_assert_true(g_file_get_contents(path, &after, &len_after, NULL));
    g_assert_true(len_after == len_before && memcmp(before, after, len_before) == 0);

    /* A rename that fails (the target is a directory): error, no temporary file left. */
    g_autofree char *dir_target = tmp_path(f, "occupied");
    g_assert_cmpint(g_mkdir(dir_target, 0755), ==, 0);
    LmnH5Errors derrs = lmn_h5_errors_data(dir_target);
    af = lmn_h5_atomic_file_new(dir_target, FALSE, &derrs, &error);
    g_assert_no_error(error);
    g_assert_false(lmn_h5_atomic_file_commit(af, &error));
    assert_data_error(error, LMN_DATA_ERROR_WRITE, dir_target, NULL);
    g_clear_error(&error);
    lmn_h5_atomic_file_free(af);
    g_autofree char *listing2 = list_dir(f);
    g_assert_cmpstr(listing2, ==, "ckpt.h5 occupied");

    /* A directory is not a readable HDF5 file. */
    g_assert_cmpint(lmn_h5_file_open_read(dir_target, &errs, &error), <, 0);
    assert_data_error(error, LMN_DATA_ERROR_OPEN, dir_target, "directory", NULL);
    g_clear_error(&error);
}

/* ---- the command and the script -------------------------------------------------------- */

/* Runs @argv, returning the exit status and the captured output. */
static int run(char **argv, char **out, char **err)
{
    GError *error = NULL;
    int status = -1;
    g_assert_true(
        g_spawn_sync(NULL, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, out, err, &status, &error));
    g_assert_no_error(error);
    g_test_message("%s -> status %d\nstdout: %s\nstderr: %s", argv[0], status, *out, *err);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char *lamina_binary(void)
{
    const char *root = g_getenv("LMN_BUILD_ROOT");
    g_assert_nonnull(root);
    return g_build_filename(root, "cli", "lamina", NULL);
}

static void test_cli_convert(Fixture *f, gconstpointer data)
{
    g_autofree char *lamina = lamina_binary();
    IdxSet s = make_idx(f, "cli", 13, 2, 3, TRUE, 9);
    g_autofree char *out = tmp_path(f, "cli.h5");
    g_autofree char *spec = g_strconcat(out, ":/train", NULL);

    {
        char *argv[] = {lamina,        "convert",  "idx", s.images_path,
                        s.labels_path, "--output", spec,  NULL};
        g_autofree char *sout = NULL, *serr = NULL;
        g_assert_cmpint(run(argv, &sout, &serr), ==, 0);
        g_autofree char *want = g_strdup_printf("wrote 13 samples [1, 2, 3] to %s\n", spec);
        g_assert_cmpstr(sout, ==, want);
        assert_matches_idx(spec, &s);
    }
    {
        /* Again, without --overwrite: a runtime error (1) that says what to do. */
        char *argv[] = {lamina,        "convert",  "idx", s.images_path,
                        s.labels_path, "--output", spec,  NULL};
        g_autofree char *sout = NULL, *serr = NULL;
        g_assert_cmpint(run(argv, &sout, &serr), ==, 1);
        g_assert_nonnull(strstr(serr, "--overwrite"));
        g_assert_nonnull(strstr(serr, out));
        char *argv2[] = {lamina,     "convert", "idx",         s.images_path, s.labels_path,
                         "--output", spec,      "--overwrite", NULL};
        g_autofree char *sout2 = NULL, *serr2 = NULL;
        g_assert_cmpint(run(argv2, &sout2, &serr2), ==, 0);
    }
    {
        /* Usage errors (2): an unknown format lists the supported ones; no output file. */
        char *argv[] = {lamina, "convert", "parquet", "a.pq", "--output", spec, NULL};
        g_autofree char *sout = NULL, *serr = NULL;
        g_assert_cmpint(run(argv, &sout, &serr), ==, 2);
        g_assert_nonnull(strstr(serr, "'parquet'"));
        g_assert_nonnull(strstr(serr, "idx, csv, npy"));
        /* csv needs its label column. */
        char *argv3[] = {lamina, "convert", "csv", "a.csv", "--output", spec, NULL};
        g_autofree char *sout3 = NULL, *serr3 = NULL;
        g_assert_cmpint(run(argv3, &sout3, &serr3), ==, 2);
        g_assert_nonnull(strstr(serr3, "--label-column"));
        char *argv2[] = {lamina, "convert", "idx", s.images_path, s.labels_path, NULL};
        g_autofree char *sout2 = NULL, *serr2 = NULL;
        g_assert_cmpint(run(argv2, &sout2, &serr2), ==, 2);
        g_assert_nonnull(strstr(serr2, "--output"));
    }
    idx_set_clear(&s);
}

/* The Fashion-MNIST script, run on small files laid out like Debian's package. */
static void test_script(Fixture *f, gconstpointer data)
{
    g_autofree char *lamina = lamina_binary();
    const char *source_root = g_getenv("LMN_SOURCE_ROOT");
    g_assert_nonnull(source_root);
    g_autofree char *script =
        g_build_filename(source_root, "scripts", "make-fashion-mnist.sh", NULL);
    IdxSet train = make_idx(f, "train", 30, 28, 28, TRUE, 21);
    IdxSet test = make_idx(f, "t10k", 8, 28, 28, TRUE, 22);
    g_autofree char *out_dir = tmp_path(f, "data");
    g_autofree char *out = g_build_filename(out_dir, "fashion-mnist.h5", NULL);

    g_autofree char *env_dir = g_strconcat("FASHION_MNIST_DIR=", f->dir, NULL);
    char *argv[] = {"/usr/bin/env", env_dir, "/bin/sh", script, lamina, out, NULL};
    g_autofree char *sout = NULL, *serr = NULL;
    g_assert_cmpint(run(argv, &sout, &serr), ==, 0);
    g_autofree char *train_spec = g_strconcat(out, ":/train", NULL);
    g_autofree char *test_spec = g_strconcat(out, ":/test", NULL);
    g_assert_nonnull(strstr(sout, train_spec));
    assert_matches_idx(train_spec, &train);
    assert_matches_idx(test_spec, &test);
    /* Only the result is left in the output directory. */
    GDir *dir = g_dir_open(out_dir, 0, NULL);
    g_assert_cmpstr(g_dir_read_name(dir), ==, "fashion-mnist.h5");
    g_assert_null(g_dir_read_name(dir));
    g_dir_close(dir);
    g_unlink(out);
    g_rmdir(out_dir);

    /* Without the data: a clear message naming the package. */
    g_autofree char *env_none = g_strconcat("FASHION_MNIST_DIR=", out_dir, NULL);
    char *argv2[] = {"/usr/bin/env", env_none, "/bin/sh", script, lamina, out, NULL};
    g_autofree char *sout2 = NULL, *serr2 = NULL;
    g_assert_cmpint(run(argv2, &sout2, &serr2), ==, 1);
    g_assert_nonnull(strstr(serr2, "apt-get install dataset-fashion-mnist"));
    g_assert_false(g_file_test(out, G_FILE_TEST_EXISTS));
    idx_set_clear(&train);
    idx_set_clear(&test);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    TEST("/data/convert/idx-plain", test_convert_plain);
    TEST("/data/convert/idx-gzip", test_convert_gzip);
    TEST("/data/convert/keeps-other-split", test_convert_keeps_other_split);
    TEST("/data/convert/bad-idx", test_convert_bad_idx);
    TEST("/data/open/uint8-scale", test_open_uint8_scale);
    TEST("/data/open/float", test_open_float);
    TEST("/data/open/mean-std", test_open_mean_std);
    TEST("/data/open/label-types", test_open_label_types);
    TEST("/data/open/bad-files", test_open_bad_files);
    TEST("/data/check-model", test_check_model);
    TEST("/data/split/deterministic-partition", test_split);
    TEST("/data/split-spec", test_split_spec);
    TEST("/data/h5-util/round-trip", test_h5_util);
    TEST("/data/h5-util/atomic-failures", test_h5_atomic_failures);
    TEST("/data/cli/convert", test_cli_convert);
    TEST("/data/cli/fashion-mnist-script", test_script);
    return g_test_run();
}
