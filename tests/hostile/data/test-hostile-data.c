/* Hostile datasets and converter faults, run through the real `lamina`.
 *
 * Every case must end cleanly: exit status 1 (not a signal), one message naming the file and
 * what to do, nothing of HDF5's internal error stack, and every existing file byte for byte as
 * it was.  A full disk is made without root by a file size limit (RLIMIT_FSIZE, with SIGXFSZ
 * ignored: EFBIG), as in tests/hostile/config.
 */
#include "../../e2e/e2e-util.h"

#include <glib/gstdio.h>
#include <hdf5.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>

enum { N_SAMPLES = 64, FEATURES = 4, FAKE_LZF = 32000 };

static char *tmp_dir;

static char *tmp_path(const char *name)
{
    return g_build_filename(tmp_dir, name, NULL);
}

static void assert_has(const char *what, const char *text, const char *const *frags)
{
    for (guint i = 0; frags[i]; i++)
        if (!strstr(text, frags[i]))
            g_error("%s: the message lacks \"%s\":\n%s", what, frags[i], text);
    g_assert_null(strstr(text, "AddressSanitizer"));
    g_assert_null(strstr(text, "runtime error"));
    g_assert_null(strstr(text, "HDF5-DIAG"));
    g_assert_null(strstr(text, "plugins"));
}

/* Writes dataset @name of @type and shape @dims under @g with @dcpl; @data may be NULL (never
 * written: chunked storage then holds nothing). */
static void write_member(hid_t g, const char *name, hid_t type, int ndim, const hsize_t *dims,
                         hid_t dcpl, const void *data)
{
    hid_t s = H5Screate_simple(ndim, dims, NULL);
    hid_t d = H5Dcreate2(g, name, type, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    g_assert_cmpint(d, >=, 0);
    if (data)
        g_assert_cmpint(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), >=, 0);
    H5Dclose(d);
    H5Sclose(s);
}

/* /train with x float32 [64, 4] (@x, or small whole numbers) and y int32 [64], x filtered
 * through @x_dcpl. */
static void write_split(const char *path, const float *x, hid_t x_dcpl)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    hid_t g = H5Gcreate2(f, "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    float xv[N_SAMPLES * FEATURES];
    gint32 y[N_SAMPLES];
    for (int i = 0; i < N_SAMPLES * FEATURES; i++)
        xv[i] = x ? x[i] : (float) (i % 7);
    for (int i = 0; i < N_SAMPLES; i++)
        y[i] = i % 10;
    hsize_t xd[2] = {N_SAMPLES, FEATURES}, yd[1] = {N_SAMPLES};
    write_member(g, "x", H5T_NATIVE_FLOAT, 2, xd, x_dcpl, xv);
    write_member(g, "y", H5T_NATIVE_INT32, 1, yd, H5P_DEFAULT, y);
    H5Gclose(g);
    H5Fclose(f);
}

static char *write_config(const char *data)
{
    g_autofree char *text = g_strdup_printf("[model]\ninput = %d\n"
                                            "[layer emb]\ntype = embedding\n"
                                            "num_embeddings = 10\nembedding_dim = 2\n"
                                            "[layer flat]\ntype = flatten\n"
                                            "[layer fc]\ntype = dense\nunits = 10\n"
                                            "[layer loss]\ntype = softmax_cross_entropy\n"
                                            "[optimizer]\ntype = sgd\nlr = 0.01\n"
                                            "[train]\nepochs = 1\nbatch_size = 16\n"
                                            "[data]\ntrain = %s:/train\n",
                                            FEATURES, data);
    char *path = tmp_path("hostile.ini");
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    return path;
}

/* Runs `lamina train` on @data and expects exit status 1 with every fragment. */
static void expect_train_failure(const char *data, const char *const *frags)
{
    g_autofree char *config = write_config(data);
    g_autofree char *out = tmp_path("out");
    e2e_remove_tree(out);
    g_autofree char *stdout_text = NULL;
    g_autofree char *err = NULL;
    int status = e2e_run_lamina(&stdout_text, &err, "train", config, "--output", out, "-q", NULL);
    g_test_message("exit status %d, stderr:\n%s", status, err);
    g_assert_cmpint(status, ==, 1); /* -1: killed by a signal */
    assert_has(data, err, frags);
    g_autofree char *final = g_build_filename(out, "final.h5", NULL);
    g_assert_false(g_file_test(final, G_FILE_TEST_EXISTS));
}

/* 2^31 samples declared in chunked storage (a tiny file): x streams, but the labels alone would
 * need 8 GiB.  Before, they were read whole and the process exhausted memory. */
static void test_labels_budget(void)
{
    g_autofree char *path = tmp_path("labels-budget.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t xd[2] = {(hsize_t) 1 << 31, FEATURES}, yd[1] = {(hsize_t) 1 << 31};
    hsize_t xc[2] = {1 << 16, FEATURES}, yc[1] = {1 << 16};
    hid_t xp = H5Pcreate(H5P_DATASET_CREATE), yp = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(xp, 2, xc);
    H5Pset_chunk(yp, 1, yc);
    write_member(g, "x", H5T_NATIVE_UINT8, 2, xd, xp, NULL);
    write_member(g, "y", H5T_NATIVE_UINT8, 1, yd, yp, NULL);
    H5Pclose(xp);
    H5Pclose(yp);
    H5Gclose(g);
    H5Fclose(f);
    expect_train_failure(path, (const char *const[]){path, "/train/y", "2147483648 samples",
                                                     "8192.0 MiB", "memory_budget_mb", NULL});
}

/* A stand-in for LZF: registered only in this process, so the `lamina` it runs lacks it, as a
 * file written by h5py with compression='lzf' meets a plain libhdf5. */
static size_t fake_lzf(unsigned int flags, size_t cd_nelmts, const unsigned int cd_values[],
                       size_t nbytes, size_t *buf_size, void **buf)
{
    (void) flags, (void) cd_nelmts, (void) cd_values, (void) buf_size, (void) buf;
    return nbytes;
}

static void test_missing_filter(void)
{
    const H5Z_class2_t cls = {H5Z_CLASS_T_VERS, FAKE_LZF, 1, 1, "lzf", NULL, NULL, fake_lzf};
    g_assert_cmpint(H5Zregister(&cls), >=, 0);
    g_autofree char *path = tmp_path("missing-filter.h5");
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk[2] = {16, FEATURES};
    H5Pset_chunk(dcpl, 2, chunk);
    /* Optional, as h5py sets LZF: the chunks are still filtered and unreadable without it. */
    g_assert_cmpint(H5Pset_filter(dcpl, FAKE_LZF, H5Z_FLAG_OPTIONAL, 0, NULL), >=, 0);
    write_split(path, NULL, dcpl);
    H5Pclose(dcpl);
    expect_train_failure(path, (const char *const[]){path, "/train/x", "filter 32000", "'lzf'",
                                                     "hdf5-filter-plugin", "h5repack", NULL});
}

/* Float pixels fed to an embedding: 2.5 used to be truncated to row 2. */
static void test_embedding_fraction(void)
{
    g_autofree char *path = tmp_path("embedding-fraction.h5");
    float x[N_SAMPLES * FEATURES];
    for (int i = 0; i < N_SAMPLES * FEATURES; i++)
        x[i] = (float) (i % 7);
    x[5 * FEATURES + 3] = 2.5f;
    write_split(path, x, H5P_DEFAULT);
    expect_train_failure(path, (const char *const[]){path, "sample 5 (item", "2.5",
                                                     "element 3", "layer 'emb' (embedding)",
                                                     "whole numbers 0..9", NULL});
}

/* Index 10 of a 10-row table used to read as a zero row. */
static void test_embedding_range(void)
{
    g_autofree char *path = tmp_path("embedding-range.h5");
    float x[N_SAMPLES * FEATURES];
    for (int i = 0; i < N_SAMPLES * FEATURES; i++)
        x[i] = (float) (i % 7);
    x[2] = 10.0f;
    write_split(path, x, H5P_DEFAULT);
    expect_train_failure(path, (const char *const[]){path, "sample 0 (item", "holds 10 ",
                                                     "num_embeddings = 10", NULL});
}

static void limit_file_size(gpointer data)
{
    struct rlimit rl = {.rlim_cur = GPOINTER_TO_SIZE(data), .rlim_max = RLIM_INFINITY};
    setrlimit(RLIMIT_FSIZE, &rl);
    signal(SIGXFSZ, SIG_IGN);
}

static char *write_csv(const char *name, int rows)
{
    GString *s = g_string_new(NULL);
    for (int i = 0; i < rows; i++) {
        for (int k = 0; k < 20; k++)
            g_string_append_printf(s, "%.6f,", g_random_double());
        g_string_append_printf(s, "%d\n", i % 5);
    }
    char *path = tmp_path(name);
    g_assert_true(g_file_set_contents(path, s->str, (gssize) s->len, NULL));
    g_string_free(s, TRUE);
    return path;
}

/* `lamina convert csv` under a 64 KiB file size limit; expects one line naming @file. */
static void expect_convert_full(const char *file, const char *split)
{
    g_autofree char *csv = write_csv("big.csv", 3000);
    g_autofree char *output = g_strdup_printf("%s:%s", file, split);
    const char *argv[] = {e2e_lamina_exe(), "convert", "csv", csv, "--label-column", "-1",
                          "--output", output, NULL};
    g_autofree char *err = NULL;
    int status = 0;
    g_autoptr(GError) error = NULL;
    g_assert_true(g_spawn_sync(NULL, (char **) argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL,
                               limit_file_size, GSIZE_TO_POINTER(65536), NULL, &err, &status,
                               &error));
    g_assert_no_error(error);
    g_test_message("wait status %d, stderr:\n%s", status, err);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 1);
    assert_has(file, err, (const char *const[]){file, g_strerror(EFBIG), "free space", NULL});
    g_auto(GStrv) lines = g_strsplit(g_strchomp(err), "\n", -1);
    g_assert_cmpuint(g_strv_length(lines), ==, 1);
    g_assert_null(strstr(err, "errno ="));
    g_assert_null(strstr(err, "HDF5"));
    /* No temporary file is left behind. */
    g_autoptr(GDir) dir = g_dir_open(tmp_dir, 0, NULL);
    for (const char *name; (name = g_dir_read_name(dir));)
        g_assert_false(g_str_has_suffix(name, ".tmp"));
}

static void test_convert_full_new(void)
{
    g_autofree char *file = tmp_path("new.h5");
    g_unlink(file);
    expect_convert_full(file, "/train");
    g_assert_false(g_file_test(file, G_FILE_TEST_EXISTS));
}

/* Adding a split to an existing file: before, HDF5 wrote the copy itself, dumped its error stack
 * and the process could crash at exit. */
static void test_convert_full_existing(void)
{
    g_autofree char *file = tmp_path("existing.h5");
    g_autofree char *small = write_csv("small.csv", 50);
    g_autofree char *output = g_strdup_printf("%s:/test", file);
    g_autofree char *err0 = NULL;
    g_assert_cmpint(e2e_run_lamina(NULL, &err0, "convert", "csv", small, "--label-column", "-1",
                                   "--output", output, NULL),
                    ==, 0);
    g_autofree char *before = NULL;
    gsize before_len = 0;
    g_assert_true(g_file_get_contents(file, &before, &before_len, NULL));
    g_assert_cmpuint(before_len, <, 65536);
    expect_convert_full(file, "/train");
    g_autofree char *after = NULL;
    gsize after_len = 0;
    g_assert_true(g_file_get_contents(file, &after, &after_len, NULL));
    g_assert_cmpmem(after, after_len, before, before_len);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    tmp_dir = g_dir_make_tmp("lamina-hostile-data-XXXXXX", NULL);
    g_assert_nonnull(tmp_dir);
    g_test_add_func("/hostile/data/labels-budget", test_labels_budget);
    g_test_add_func("/hostile/data/missing-filter", test_missing_filter);
    g_test_add_func("/hostile/data/embedding-fraction", test_embedding_fraction);
    g_test_add_func("/hostile/data/embedding-range", test_embedding_range);
    g_test_add_func("/hostile/data/convert-full-new", test_convert_full_new);
    g_test_add_func("/hostile/data/convert-full-existing", test_convert_full_existing);
    int rc = g_test_run();
    e2e_remove_tree(tmp_dir);
    g_free(tmp_dir);
    return rc;
}
