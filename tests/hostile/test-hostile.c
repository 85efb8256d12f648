/* Hostile input: configs and dataset files whose sizes overflow, run through the real `lamina`.
 *
 * Every case must end in a clean error: a non-zero exit status (not a signal, which is how a
 * sanitizer or a wild write ends) and a message naming the culprit and what to change.  Each case
 * is its own meson test (the test path is its argument), so a regression names the case.  The
 * data files are written here, with the HDF5 C API, into a temporary directory: a file can declare
 * a huge extent for next to no bytes (an unwritten dataset reads as its fill value), which is
 * exactly what a crafted file does.
 */
#include "../e2e/e2e-util.h"

#include <glib/gstdio.h>
#include <hdf5.h>
#include <string.h>

enum { N_SAMPLES = 64 };

static char *tmp_dir;

/* Creates dataset @name in @group with @ndim @dims of @type, chunked by single elements when
 * @chunked (so no storage is allocated for the extent), and writes @data when not NULL. */
static void h5_dataset(hid_t group, const char *name, hid_t type, int ndim, const hsize_t *dims,
                       gboolean chunked, const void *data)
{
    hid_t space = H5Screate_simple(ndim, dims, NULL);
    g_assert_cmpint(space, >=, 0);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (chunked) {
        hsize_t chunk[8];
        for (int i = 0; i < ndim; i++)
            chunk[i] = 1;
        g_assert_cmpint(H5Pset_chunk(dcpl, ndim, chunk), >=, 0);
    }
    hid_t ds = H5Dcreate2(group, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    g_assert_cmpint(ds, >=, 0);
    if (data != NULL)
        g_assert_cmpint(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), >=, 0);
    H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(space);
}

typedef enum {
    DATA_GOOD,         /* x [64, 784] float32, y [64] int32: what the configs below expect */
    DATA_Y_OVERFLOW,   /* y float32 [64, 2^28, 2^28]: 2^64 bytes */
    DATA_Y_WIDE,       /* y float32 [64, 2^31]: one sample has more than G_MAXINT32 targets */
    DATA_X_OVERFLOW,   /* x uint8 [64, 2^32, 2^32]: 2^70 bytes */
    DATA_X_TRUNCATED,  /* x float32 [100000, 784] contiguous, 313 MB, in a file of a few KiB */
    DATA_INIT_WEIGHTS, /* not a dataset: /model/fc/weight [598407739, 11001563, 22416] */
} DataKind;

/* Writes split /train of kind @kind to a new file in the temporary directory. */
static char *write_data(DataKind kind)
{
    static const char *names[] = {"good.h5",       "y-overflow.h5",  "y-wide.h5",
                                  "x-overflow.h5", "x-truncated.h5", "init-weights.h5"};
    char *path = g_build_filename(tmp_dir, names[kind], NULL);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    hid_t g = H5Gcreate2(f, kind == DATA_INIT_WEIGHTS ? "model" : "train", H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT);
    g_assert_cmpint(g, >=, 0);
    g_autofree float *x = g_new(float, N_SAMPLES * 784);
    gint32 y[N_SAMPLES];
    for (int i = 0; i < N_SAMPLES * 784; i++)
        x[i] = (float) ((i * 37) % 101) / 101.0f;
    for (int i = 0; i < N_SAMPLES; i++)
        y[i] = i % 10;
    hsize_t xd[2] = {N_SAMPLES, 784}, yd[1] = {N_SAMPLES};
    switch (kind) {
    case DATA_GOOD:
        h5_dataset(g, "x", H5T_NATIVE_FLOAT, 2, xd, FALSE, x);
        h5_dataset(g, "y", H5T_NATIVE_INT32, 1, yd, FALSE, y);
        break;
    case DATA_Y_OVERFLOW: {
        hsize_t d[3] = {N_SAMPLES, (hsize_t) 1 << 28, (hsize_t) 1 << 28};
        h5_dataset(g, "x", H5T_NATIVE_FLOAT, 2, xd, FALSE, x);
        h5_dataset(g, "y", H5T_NATIVE_FLOAT, 3, d, TRUE, NULL);
        break;
    }
    case DATA_Y_WIDE: {
        hsize_t d[2] = {N_SAMPLES, (hsize_t) 1 << 31};
        h5_dataset(g, "x", H5T_NATIVE_FLOAT, 2, xd, FALSE, x);
        h5_dataset(g, "y", H5T_NATIVE_FLOAT, 2, d, TRUE, NULL);
        break;
    }
    case DATA_X_OVERFLOW: {
        hsize_t d[3] = {N_SAMPLES, (hsize_t) 1 << 32, (hsize_t) 1 << 32};
        h5_dataset(g, "x", H5T_NATIVE_UINT8, 3, d, TRUE, NULL);
        h5_dataset(g, "y", H5T_NATIVE_INT32, 1, yd, FALSE, y);
        break;
    }
    case DATA_X_TRUNCATED: {
        /* Contiguous and never written: HDF5 allocates nothing and reads the fill value, so the
         * file stays tiny while declaring 313 MB of uncompressed samples. */
        hsize_t d[2] = {100000, 784}, n[1] = {100000};
        h5_dataset(g, "x", H5T_NATIVE_FLOAT, 2, d, FALSE, NULL);
        h5_dataset(g, "y", H5T_NATIVE_INT32, 1, n, TRUE, NULL);
        break;
    }
    case DATA_INIT_WEIGHTS: {
        /* 784 values modulo 2^64, unwritten: reading it would fill the whole extent. */
        hsize_t d[3] = {598407739, 11001563, 22416};
        hid_t fc = H5Gcreate2(g, "fc", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        h5_dataset(fc, "weight", H5T_NATIVE_FLOAT, 3, d, TRUE, NULL);
        /* A second parameter as large, so a sum of the counts passes G_MAXINT64. */
        h5_dataset(fc, "bias", H5T_NATIVE_FLOAT, 3, d, TRUE, NULL);
        H5Gclose(fc);
        break;
    }
    }
    H5Gclose(g);
    H5Fclose(f);
    return path;
}

/* Writes a config of the [model] and layer groups in @model plus a short training on @data, runs
 * `lamina train` on it and checks that it fails cleanly with every one of the NULL-terminated
 * @keywords in its message. */
static void expect_failure_with(const char *name, const char *model, DataKind data,
                                const char *init, va_list keywords)
{
    g_autofree char *data_path = write_data(data);
    g_autofree char *config = g_build_filename(tmp_dir, "hostile.ini", NULL);
    g_autofree char *out_dir = g_build_filename(tmp_dir, "out", NULL);
    g_autofree char *text = g_strdup_printf("%s\n"
                                            "[optimizer]\ntype = sgd\nlr = 0.01\n\n"
                                            "[train]\nepochs = 1\nbatch_size = 8\nseed = 1\n\n"
                                            "[data]\ntrain = %s:/train\n",
                                            model, data_path);
    g_assert_true(g_file_set_contents(config, text, -1, NULL));
    g_autofree char *out = NULL, *err = NULL;
    g_autofree char *init_path = init != NULL ? write_data(DATA_INIT_WEIGHTS) : NULL;
    int status = init_path != NULL
                     ? e2e_run_lamina(&out, &err, "train", config, "--output", out_dir, "--init",
                                      init_path, NULL)
                     : e2e_run_lamina(&out, &err, "train", config, "--output", out_dir, NULL);
    g_test_message("%s: exit status %d, stderr:\n%s", name, status, err);
    /* -1: killed by a signal (a crash, or a sanitizer's abort). */
    g_assert_cmpint(status, >, 0);
    for (const char *k = va_arg(keywords, const char *); k != NULL;
         k = va_arg(keywords, const char *)) {
        if (strstr(err, k) == NULL)
            g_error("%s: the message lacks \"%s\":\n%s", name, k, err);
    }
    /* A size the user chose is the user's error, never blamed on a plugin. */
    g_assert_null(strstr(err, "a bug in the layer plugin"));
    g_assert_null(strstr(err, "AddressSanitizer"));
    g_assert_null(strstr(err, "runtime error"));
    e2e_remove_tree(out_dir);
}

static void expect_failure(const char *name, const char *model, DataKind data, ...)
{
    va_list ap;
    va_start(ap, data);
    expect_failure_with(name, model, data, NULL, ap);
    va_end(ap);
}

/* As expect_failure, for `lamina train --init` with the weights of DATA_INIT_WEIGHTS. */
static void expect_init_failure(const char *name, const char *model, ...)
{
    va_list ap;
    va_start(ap, model);
    expect_failure_with(name, model, DATA_GOOD, "init", ap);
    va_end(ap);
}

/* The classifier head every layer case ends with, when the layer under test builds at all. */
#define HEAD                                                                                       \
    "[layer flat]\ntype = flatten\n\n[layer fc]\ntype = dense\nunits = 10\n\n"                     \
    "[layer loss]\ntype = softmax_cross_entropy\n"

/* 598407739 * 11001563 * 22416 is 784 modulo 2^64: once wrapped, it passed the data check for
 * 28x28 images, sized every buffer for 784 values, and the pooling loop wrote past them. */
static void test_pool_input(void)
{
    expect_failure("pool-input",
                   "[model]\ninput = 598407739, 11001563, 22416\n\n"
                   "[layer pool]\ntype = avgpool2d\nkernel_size = 1\n\n" HEAD,
                   DATA_GOOD, "[layer pool]", "layer 'pool' (avgpool2d): its input",
                   "[598407739, 11001563, 22416]", "more than one tensor can",
                   "check [model] input", NULL);
}

/* An input that just fits, and padding that makes the output one row and column larger. */
static void test_pool_output(void)
{
    expect_failure(
        "pool-output",
        "[model]\ninput = 1, 1518500249, 1518500249\n\n"
        "[layer pool]\ntype = maxpool2d\nkernel_size = 2\nstride = 1\npadding = 1\n\n" HEAD,
        DATA_GOOD, "layer 'pool' (maxpool2d): its output", "[1, 1518500250, 1518500250]",
        "use less padding", NULL);
}

static void test_conv_output(void)
{
    expect_failure("conv-output",
                   "[model]\ninput = 1, 1, 1\n\n"
                   "[layer conv]\ntype = conv2d\nout_channels = 1\nkernel_size = 1\n"
                   "padding = 2147483647\n\n" HEAD,
                   DATA_GOOD, "layer 'conv' (conv2d): its output", "[1, 4294967295, 4294967295]",
                   "use less padding", NULL);
}

/* A 1x1 output from a kernel of 2^62 taps per channel: the weight overflows. */
static void test_conv_weight(void)
{
    expect_failure("conv-weight",
                   "[model]\ninput = 4, 1, 1\n\n"
                   "[layer conv]\ntype = conv2d\nout_channels = 1\nkernel_size = 2147483647\n"
                   "padding = 1073741823\n\n" HEAD,
                   DATA_GOOD, "layer 'conv' (conv2d): its weight", "[1, 4, 2147483647, 2147483647]",
                   "smaller kernel_size", NULL);
}

/* Output and weight fit (a 2048x2048 output, a 2^40-tap kernel), their product, the im2col
 * matrix, does not. */
static void test_conv_cols(void)
{
    expect_failure("conv-cols",
                   "[model]\ninput = 1, 1, 1\n\n"
                   "[layer conv]\ntype = conv2d\nout_channels = 1\nkernel_size = 1048576\n"
                   "padding = 525311\n\n" HEAD,
                   DATA_GOOD, "layer 'conv' (conv2d): its patch matrix (im2col)",
                   "[1099511627776, 4194304]", "larger stride", NULL);
}

/* 6232208 * 36788573 * 163649917 (about 3.75e22) is also 784 modulo 2^64: the reshape of a
 * 28x28 image to it used to pass the element-count comparison and train. */
static void test_reshape_wrap(void)
{
    expect_failure("reshape-wrap",
                   "[model]\ninput = 1, 28, 28\n\n"
                   "[layer r]\ntype = reshape\nshape = 6232208, 36788573, 163649917\n\n" HEAD,
                   DATA_GOOD, "layer 'r' (reshape): its output", "[6232208, 36788573, 163649917]",
                   "as many values as the input", NULL);
}

static void test_reshape_input(void)
{
    expect_failure("reshape-input",
                   "[model]\ninput = 598407739, 11001563, 22416\n\n"
                   "[layer r]\ntype = reshape\nshape = 784\n\n" HEAD,
                   DATA_GOOD, "layer 'r' (reshape): its input", "check [model] input", NULL);
}

static void test_flatten_input(void)
{
    expect_failure("flatten-input", "[model]\ninput = 598407739, 11001563, 22416\n\n" HEAD,
                   DATA_GOOD, "layer 'flat' (flatten): its input", "[598407739, 11001563, 22416]",
                   "check [model] input", NULL);
}

/* Three inputs of 1e18 values each: each fits, their concatenation does not. */
static void test_concat_output(void)
{
    expect_failure("concat-output",
                   "[model]\ninput = 1000000000000, 1000000\n\n"
                   "[layer cat]\ntype = concat\ninput = input, input, input\naxis = 0\n\n" HEAD,
                   DATA_GOOD, "layer 'cat' (concat): its output", "[3000000000000, 1000000]",
                   "concatenate fewer or smaller inputs", NULL);
}

static void test_concat_input(void)
{
    expect_failure("concat-input",
                   "[model]\ninput = 598407739, 11001563, 22416\n\n"
                   "[layer cat]\ntype = concat\ninput = input, input\naxis = 0\n\n" HEAD,
                   DATA_GOOD, "layer 'cat' (concat): its input 0", "check [model] input", NULL);
}

static void test_embedding_input(void)
{
    expect_failure("embedding-input",
                   "[model]\ninput = 598407739, 11001563, 22416\n\n"
                   "[layer emb]\ntype = embedding\nnum_embeddings = 10\nembedding_dim = 2\n\n" HEAD,
                   DATA_GOOD, "layer 'emb' (embedding): its input", "check [model] input", NULL);
}

/* 1e18 indices fit; 8 values for each do not. */
static void test_embedding_output(void)
{
    expect_failure("embedding-output",
                   "[model]\ninput = 1000000000000, 1000000\n\n"
                   "[layer emb]\ntype = embedding\nnum_embeddings = 10\nembedding_dim = 8\n\n" HEAD,
                   DATA_GOOD, "layer 'emb' (embedding): its output", "[1000000000000, 1000000, 8]",
                   "smaller embedding_dim", NULL);
}

static void test_batch_norm_input(void)
{
    expect_failure("batch-norm-input",
                   "[model]\ninput = 598407739, 11001563, 22416\n\n"
                   "[layer bn]\ntype = batch_norm\n\n" HEAD,
                   DATA_GOOD, "layer 'bn' (batch_norm): its input", "check [model] input", NULL);
}

/* Layers without size checks of their own rely on the core's check of every layer's inputs. */
static void test_dense_input(void)
{
    expect_failure("dense-input",
                   "[model]\ninput = 598407739, 11001563, 22416\n\n"
                   "[layer fc]\ntype = dense\nunits = 10\n\n"
                   "[layer loss]\ntype = softmax_cross_entropy\n",
                   DATA_GOOD, "[layer fc]", "layer 'fc' (dense): its input",
                   "[598407739, 11001563, 22416]", "more than one tensor can",
                   "check [model] input", NULL);
}

static void test_relu_input(void)
{
    expect_failure("relu-input",
                   "[model]\ninput = 598407739, 11001563, 22416\n\n"
                   "[layer act]\ntype = relu\n\n" HEAD,
                   DATA_GOOD, "layer 'act' (relu): its input", "check [model] input", NULL);
}

#define MLP                                                                                        \
    "[model]\ninput = 784\n\n[layer fc]\ntype = dense\nunits = 10\n\n"                             \
    "[layer loss]\ntype = softmax_cross_entropy\n"

static void test_data_x_overflow(void)
{
    expect_failure("data-x-overflow", MLP, DATA_X_OVERFLOW, "x-overflow.h5:/train/x",
                   "declares shape [64, 4294967296, 4294967296]", "does not fit 64 bits",
                   "recreate it", NULL);
}

static void test_data_y_overflow(void)
{
    expect_failure("data-y-overflow", MLP, DATA_Y_OVERFLOW, "y-overflow.h5:/train/y",
                   "declares shape [64, 268435456, 268435456]", "does not fit 64 bits", NULL);
}

static void test_data_y_wide(void)
{
    expect_failure("data-y-wide", MLP, DATA_Y_WIDE, "y-wide.h5:/train/y",
                   "float targets [2147483648] are too many values", "at most 2147483647", NULL);
}

static void test_data_x_truncated(void)
{
    expect_failure("data-x-truncated", MLP, DATA_X_TRUNCATED, "x-truncated.h5:/train/x",
                   "declares shape [100000, 784] (313600000 bytes", "but the whole file is",
                   "truncated", NULL);
}

/* Initial weights whose declared extent is 784 values modulo 2^64: the count sized the read
 * buffer before the shape was compared with the model's, and the read filled the whole extent.
 * The shape is now compared first, before anything is allocated. */
static void test_init_weights(void)
{
    expect_init_failure("init-weights", MLP, "init-weights.h5:/model/fc/weight",
                        "has shape [598407739, 11001563, 22416]", "has shape [10, 784]",
                        "written for a different model", NULL);
}

/* `lamina inspect` sums the values of every tensor it lists: with counts near G_MAXINT64 the sum
 * overflowed (undefined behaviour, found by fuzzing).  It must describe the file and saturate. */
static void test_inspect_huge(void)
{
    g_autofree char *path = write_data(DATA_INIT_WEIGHTS);
    g_autofree char *out = NULL, *err = NULL;
    int status = e2e_run_lamina(&out, &err, "inspect", path, NULL);
    g_assert_cmpint(status, ==, 0);
    g_assert_nonnull(strstr(out, "[598407739, 11001563, 22416]"));
    g_assert_nonnull(strstr(out, "9223372036854775807 values"));
    g_assert_null(strstr(err, "runtime error"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    /* HDF5 prints its own error stack for every failed call unless told not to; the failures
     * here are Lamina's to report. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    tmp_dir = g_dir_make_tmp("lamina-hostile-XXXXXX", NULL);
    g_assert_nonnull(tmp_dir);
    g_test_add_func("/hostile/pool-input", test_pool_input);
    g_test_add_func("/hostile/pool-output", test_pool_output);
    g_test_add_func("/hostile/conv-output", test_conv_output);
    g_test_add_func("/hostile/conv-weight", test_conv_weight);
    g_test_add_func("/hostile/conv-cols", test_conv_cols);
    g_test_add_func("/hostile/reshape-wrap", test_reshape_wrap);
    g_test_add_func("/hostile/reshape-input", test_reshape_input);
    g_test_add_func("/hostile/flatten-input", test_flatten_input);
    g_test_add_func("/hostile/concat-output", test_concat_output);
    g_test_add_func("/hostile/concat-input", test_concat_input);
    g_test_add_func("/hostile/embedding-input", test_embedding_input);
    g_test_add_func("/hostile/embedding-output", test_embedding_output);
    g_test_add_func("/hostile/batch-norm-input", test_batch_norm_input);
    g_test_add_func("/hostile/dense-input", test_dense_input);
    g_test_add_func("/hostile/relu-input", test_relu_input);
    g_test_add_func("/hostile/data-x-overflow", test_data_x_overflow);
    g_test_add_func("/hostile/data-y-overflow", test_data_y_overflow);
    g_test_add_func("/hostile/data-y-wide", test_data_y_wide);
    g_test_add_func("/hostile/data-x-truncated", test_data_x_truncated);
    g_test_add_func("/hostile/init-weights", test_init_weights);
    g_test_add_func("/hostile/inspect-huge", test_inspect_huge);
    int rc = g_test_run();
    e2e_remove_tree(tmp_dir);
    g_free(tmp_dir);
    return rc;
}
