/* Lamina — end-to-end tests of `lamina predict`.
 *
 * Oracles (tests/fixtures/predict-*, written by scripts/make-predict-fixtures.py with PyTorch,
 * NumPy and PIL): PyTorch's probabilities for an MLP, a binary cross-entropy head, a LeNet-like
 * CNN, a residual block and an LSTM on the same weights; PIL's decode of PNG and JPEG files
 * (convert('L'), convert('RGB'), resize(Image.NEAREST)), exact; PyTorch's probabilities for those
 * images after NumPy's preprocessing; NumPy's top 3.  Then class names recorded by `lamina
 * convert --classes` and `lamina train`, the 1/255 fallback, and every bad input's exit status.
 */
#include "e2e-util.h"

#include <hdf5.h>
#include <lamina/lamina.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static char *tmpdir;

static char *fixture(const char *name)
{
    return g_build_filename(g_getenv("LMN_TEST_FIXTURES"), name, NULL);
}

static char *image(const char *name)
{
    return g_build_filename(g_getenv("LMN_TEST_FIXTURES"), "predict-images", name, NULL);
}

/* Dataset @name of @file read as @type, @n_out elements; NULL when absent. */
static void *read_as(const char *file, const char *name, hid_t type, gsize size, gsize *n_out)
{
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    hid_t ds = H5Lexists(f, name, H5P_DEFAULT) > 0 ? H5Dopen2(f, name, H5P_DEFAULT) : -1;
    void *v = NULL;
    if (ds >= 0) {
        hid_t sp = H5Dget_space(ds);
        *n_out = (gsize) H5Sget_simple_extent_npoints(sp);
        v = g_malloc(MAX(*n_out, 1) * size);
        g_assert_cmpint(H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), >=, 0);
        H5Sclose(sp);
        H5Dclose(ds);
    }
    H5Fclose(f);
    return v;
}

static double *read_doubles(const char *file, const char *name, gsize *n)
{
    return read_as(file, name, H5T_NATIVE_DOUBLE, sizeof(double), n);
}

static gint32 *read_ints(const char *file, const char *name, gsize *n)
{
    return read_as(file, name, H5T_NATIVE_INT32, sizeof(gint32), n);
}

/* Runs predict with @args (NULL-terminated, at most 12) and returns its status. */
static int predict(char **out, char **err, const char *const *args)
{
    const char *a[16] = {"predict", "--backend", "cpu"};
    guint n = 3;
    for (guint i = 0; args[i] && n < 15; i++)
        a[n++] = args[i];
    return e2e_run_lamina(out, err, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9],
                          a[10], a[11], a[12], a[13], a[14], NULL);
}

static void assert_close(const float *got, const double *want, gsize n, double tol)
{
    double worst = 0.0;
    for (gsize i = 0; i < n; i++)
        worst = MAX(worst, fabs((double) got[i] - want[i]));
    if (g_test_verbose())
        g_printerr("largest difference %.3g\n", worst);
    g_assert_cmpfloat(worst, <=, tol);
}

/* A two-head model whose second loss reads another target: each head against PyTorch. */
static void test_heads(void)
{
    g_autofree char *ckpt = fixture("predict-multi.h5");
    g_autofree char *split = g_strdup_printf("%s:/test", ckpt);
    const char *heads[] = {NULL, "fine", "coarse"};
    const char *expected[] = {"expected", "expected", "expected_coarse"};
    for (guint h = 0; h < G_N_ELEMENTS(heads); h++) {
        g_autofree char *out = g_build_filename(tmpdir, "heads.h5", NULL);
        const char *args[] = {ckpt, split, "-o", out, heads[h] ? "--head" : NULL, heads[h], NULL};
        g_assert_cmpint(predict(NULL, NULL, args), ==, 0);
        gsize n = 0, m = 0;
        g_autofree float *probs = e2e_read_floats(out, "probabilities", &n);
        g_autofree double *want = read_doubles(ckpt, expected[h], &m);
        g_assert_cmpuint(n, ==, m);
        assert_close(probs, want, n, 1e-5);
    }
}

/* Probabilities of the checkpoint's /test split against PyTorch's, in batches of 3 (7 rows). */
static void test_torch(gconstpointer data)
{
    const char *model = data;
    g_autofree char *name = g_strdup_printf("predict-%s.h5", model);
    g_autofree char *ckpt = fixture(name);
    g_autofree char *split = g_strdup_printf("%s:/test", ckpt);
    g_autofree char *out = g_build_filename(tmpdir, name, NULL);
    const char *args[] = {ckpt, split, "--batch", "3", "--output", out, NULL};
    g_assert_cmpint(predict(NULL, NULL, args), ==, 0);
    gsize n = 0, m = 0, np = 0;
    g_autofree float *probs = e2e_read_floats(out, "probabilities", &n);
    g_autofree double *want = read_doubles(ckpt, "expected", &m);
    g_assert_cmpuint(n, ==, m);
    assert_close(probs, want, n, 1e-5);
    g_autofree gint32 *pred = read_ints(out, "predictions", &np);
    gboolean bce = g_str_equal(model, "bce");
    g_assert_cmpuint(np, ==, bce ? n : 7);
    gsize k = n / 7;
    for (gsize i = 0; i < 7; i++)
        for (gsize j = 0; j < (bce ? k : 1); j++) {
            gsize best = 0;
            for (gsize c = 1; !bce && c < k; c++)
                best = want[i * k + c] > want[i * k + best] ? c : best;
            gint32 expect = bce ? want[i * k + j] >= 0.5 : (gint32) best;
            g_assert_cmpint(pred[bce ? i * k + j : i], ==, expect);
        }
    hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t ds = H5Dopen2(f, "inputs", H5P_DEFAULT);
    hid_t type = H5Dget_type(ds);
    char *names[7] = {0};
    g_assert_cmpint(H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, names), >=, 0);
    g_autofree char *row6 = g_strdup_printf("%s[6]", split);
    g_assert_cmpstr(names[6], ==, row6);
    for (int i = 0; i < 7; i++)
        H5free_memory(names[i]);
    H5Tclose(type);
    H5Dclose(ds);
    H5Fclose(f);
}

static const char *const images[] = {"grey.png", "rgb.png", "rgba.png", "big.png", "small.png",
                                     "grey.jpg", "rgb.jpg", "big.jpg",  NULL};

/* lmn_image_read against PIL's decode, at the image's own size and resized to 12 x 12. */
static void test_decode(void)
{
    g_autofree char *ref = fixture("predict-images.h5");
    for (guint i = 0; images[i]; i++)
        for (gint64 c = 1; c <= 3; c += 2)
            for (int resized = 0; resized < 2; resized++) {
                g_autofree char *name = g_strdup_printf(
                    "%s/%s/c%" G_GINT64_FORMAT, resized ? "resized" : "pixels", images[i], c);
                gsize n = 0;
                g_autofree guint8 *want = read_as(ref, name, H5T_NATIVE_UINT8, 1, &n);
                g_assert_nonnull(want);
                hid_t f = H5Fopen(ref, H5F_ACC_RDONLY, H5P_DEFAULT);
                hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
                hid_t sp = H5Dget_space(ds);
                hsize_t dims[3];
                H5Sget_simple_extent_dims(sp, dims, NULL);
                H5Sclose(sp);
                H5Dclose(ds);
                H5Fclose(f);
                g_autofree char *path = image(images[i]);
                g_autoptr(GError) error = NULL;
                g_autofree guint8 *got = lmn_image_read(
                    path, c, (gint64) dims[1], (gint64) dims[2],
                    resized ? LMN_IMAGE_RESIZE_NEAREST : LMN_IMAGE_RESIZE_NONE, &error);
                g_assert_no_error(error);
                g_assert_cmpmem(got, n, want, n);
            }
}

/* The LeNet checkpoint on images: PyTorch on PIL's pixels, preprocessed by /data. */
static void test_images(void)
{
    g_autofree char *ckpt = fixture("predict-lenet.h5");
    for (guint i = 0; images[i]; i++) {
        g_autofree char *path = image(images[i]);
        g_autofree char *out = g_build_filename(tmpdir, "image.h5", NULL);
        gboolean resize =
            g_str_has_prefix(images[i], "big") || g_str_has_prefix(images[i], "small");
        const char *args[] = {ckpt, path, "-o", out, resize ? "--resize" : NULL, "nearest", NULL};
        g_assert_cmpint(predict(NULL, NULL, args), ==, 0);
        g_autofree char *name = g_strdup_printf("images/%s", images[i]);
        gsize n = 0, m = 0;
        g_autofree float *probs = e2e_read_floats(out, "probabilities", &n);
        g_autofree double *want = read_doubles(ckpt, name, &m);
        g_assert_cmpuint(n, ==, 10);
        g_assert_cmpuint(m, ==, 10);
        assert_close(probs, want, n, 1e-5);
    }
}

static const char *const fashion[] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                      "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/* --json and the text lines against NumPy's top 3 of PyTorch's probabilities. */
static void test_top(void)
{
    g_autofree char *ckpt = fixture("predict-lenet.h5");
    g_autofree char *split = g_strdup_printf("%s:/test", ckpt);
    gsize n = 0, m = 0;
    g_autofree double *want = read_doubles(ckpt, "expected", &n);
    g_autofree gint32 *top = read_ints(ckpt, "top3", &m);
    g_assert_cmpuint(m, ==, 21);
    g_autofree char *json = NULL, *text = NULL;
    const char *jargs[] = {ckpt, split, "--json", NULL};
    g_assert_cmpint(predict(&json, NULL, jargs), ==, 0);
    const char *targs[] = {ckpt, split, "--top", "3", NULL};
    g_assert_cmpint(predict(&text, NULL, targs), ==, 0);
    g_assert_true(g_str_has_prefix(json, "[{\"input\": \""));
    g_autoptr(GRegex) re = g_regex_new("\\{\"class\": (\\d+), \"name\": \"([^\"]*)\", "
                                       "\"probability\": ([-+.0-9e]+)\\}",
                                       0, 0, NULL);
    g_autoptr(GMatchInfo) mi = NULL;
    g_regex_match(re, json, 0, &mi);
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    for (guint i = 0; i < 21; i++, g_match_info_next(mi, NULL)) {
        g_assert_true(g_match_info_matches(mi));
        g_autofree char *cls = g_match_info_fetch(mi, 1);
        g_autofree char *name = g_match_info_fetch(mi, 2);
        g_autofree char *p = g_match_info_fetch(mi, 3);
        g_assert_cmpint(atoi(cls), ==, top[i]);
        g_assert_cmpstr(name, ==, fashion[top[i]]);
        g_assert_cmpfloat(fabs(g_ascii_strtod(p, NULL) - want[(i / 3) * 10 + top[i]]), <=, 1e-5);
        g_assert_nonnull(strstr(lines[i / 3], fashion[top[i]]));
    }
    g_assert_false(g_match_info_matches(mi));
    g_autofree char *line0 =
        g_strdup_printf("%s[0]: %s %.1f%%, ", split, fashion[top[0]], 100 * want[top[0]]);
    g_assert_true(g_str_has_prefix(lines[0], line0));
}

typedef struct {
    const char *what;
    int status;
    const char *message;
    const char *args[8];
} BadCase;

static void test_errors(void)
{
    g_autofree char *lenet = fixture("predict-lenet.h5");
    g_autofree char *mlp = fixture("predict-mlp.h5");
    g_autofree char *resnet = fixture("predict-resnet.h5");
    g_autofree char *big = image("big.png"), *grey = image("grey.png");
    g_autofree char *corrupt = image("corrupt.png"), *trunc = image("truncated.jpg");
    g_autofree char *huge = image("huge.png");
    g_autofree char *split = g_strdup_printf("%s:/test", lenet);
    g_autofree char *npy = g_build_filename(tmpdir, "wrong.npy", NULL);
    /* A [2, 5] float32 array: rows of 5 for a model of 6 inputs. */
    static const char header[] = "\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortran_order': "
                                 "False, 'shape': (2, 5), }";
    g_autoptr(GString) file = g_string_new_len(header, sizeof header - 1);
    while (file->len < 127)
        g_string_append_c(file, ' ');
    g_string_append_c(file, '\n');
    for (int i = 0; i < 40; i++)
        g_string_append_c(file, 0);
    g_assert_true(g_file_set_contents(npy, file->str, (gssize) file->len, NULL));
    g_autofree char *bad_ckpt = g_build_filename(tmpdir, "bad-ckpt.h5", NULL);
    g_assert_true(g_file_set_contents(bad_ckpt, "not HDF5", -1, NULL));
    const BadCase cases[] = {
        {"another size", 1, "--resize nearest", {lenet, big}},
        {"another channel count", 1, "2 channels", {resnet, grey}},
        {"corrupt PNG", 1, "not a readable PNG", {lenet, corrupt}},
        {"truncated JPEG", 1, "not a readable JPEG", {lenet, trunc}},
        {"a huge PNG header", 1, "60000 x 60000", {lenet, huge, "--resize", "nearest"}},
        {"npy of the wrong shape", 1, "does not fit the model's input [6]", {mlp, npy}},
        {"--top 0", 2, "--top", {lenet, grey, "--top", "0"}},
        {"--top above C", 2, "more than the model's 10 classes", {lenet, grey, "--top", "11"}},
        {"a split that does not fit", 1, "the model's input is [6]", {mlp, split}},
        {"an unreadable checkpoint", 1, "bad-ckpt.h5", {bad_ckpt, grey}},
        {"no input", 2, "at least one INPUT", {lenet}},
        {"--head naming no loss", 2, "not a loss layer", {mlp, grey, "--head", "fc1"}},
        {"--resize bilinear", 2, "--resize takes nearest", {lenet, grey, "--resize", "bilinear"}},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *err = NULL;
        int status = predict(NULL, &err, cases[i].args);
        /* Under ASan/UBSan a report would also end in a failure: look for one. */
        if (status != cases[i].status || !strstr(err, cases[i].message) ||
            strstr(err, "Sanitizer") || strstr(err, "runtime error"))
            g_error("%s: status %d, stderr: %s", cases[i].what, status, err);
    }
}

/* Writes a .npy file: @descr ('|u1', '<i8'), @shape ("(40, 1, 12, 12)") and @n raw bytes. */
static void write_npy(const char *path, const char *descr, const char *shape, const void *data,
                      gsize n)
{
    g_autoptr(GString) s = g_string_new("\x93NUMPY\x01");
    g_string_append_c(s, 0);
    g_string_append(s, "  "); /* the header length, set below */
    g_string_append_printf(s, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr,
                           shape);
    while ((s->len + 1) % 64)
        g_string_append_c(s, ' ');
    g_string_append_c(s, '\n');
    s->str[8] = (char) ((s->len - 10) & 0xff);
    s->str[9] = (char) ((s->len - 10) >> 8);
    g_string_append_len(s, data, (gssize) n);
    g_assert_true(g_file_set_contents(path, s->str, (gssize) s->len, NULL));
}

/* convert --classes, then train: the checkpoint's /data, and predict printing the names. */
static void test_train_records(void)
{
    g_autofree char *xs = g_build_filename(tmpdir, "x.npy", NULL);
    g_autofree char *ys = g_build_filename(tmpdir, "y.npy", NULL);
    guint8 x[40 * 144];
    gint64 y[40];
    for (int i = 0; i < 40; i++) {
        y[i] = i % 3;
        for (int j = 0; j < 144; j++)
            x[i * 144 + j] = (guint8) ((y[i] * 80 + j * 7 + i) % 256);
    }
    write_npy(xs, "|u1", "(40, 1, 12, 12)", x, sizeof x);
    write_npy(ys, "<i8", "(40,)", y, sizeof y);
    g_autofree char *data = g_build_filename(tmpdir, "data.h5", NULL);
    g_autofree char *spec = g_strdup_printf("%s:/train", data);
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "convert", "npy", xs, ys, "--classes", "a b,c/d",
                                   "-o", spec, NULL),
                    ==, 1); /* two names for three classes */
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "convert", "npy", xs, ys, "--overwrite", "--classes",
                                   "a b,c/d,e", "-o", spec, NULL),
                    ==, 0);
    g_autofree char *cfg = g_build_filename(tmpdir, "train.ini", NULL);
    g_autofree char *text = g_strdup_printf(
        "[model]\ninput = 1, 12, 12\n[layer flat]\ntype = flatten\n[layer fc]\ntype = dense\n"
        "units = 3\n[layer loss]\ntype = softmax_cross_entropy\n[optimizer]\ntype = sgd\n"
        "lr = 0.001\n[train]\nepochs = 1\nbatch_size = 8\nbackend = cpu\n[data]\ntrain = %s\n",
        spec);
    g_assert_true(g_file_set_contents(cfg, text, -1, NULL));
    g_autofree char *run = g_build_filename(tmpdir, "run", NULL);
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", cfg, "-o", run, NULL), ==, 0);
    g_autofree char *ckpt = g_build_filename(run, "final.h5", NULL);
    LmnCheckpointData d;
    gboolean found = FALSE;
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_checkpoint_read_data(ckpt, &d, &found, &error));
    g_assert_no_error(error);
    g_assert_true(found);
    g_assert_cmpfloat(d.scale, ==, 1.0);
    g_assert_true(d.is_uint8);
    g_assert_cmpstr(d.source, ==, spec);
    g_assert_cmpuint(g_strv_length(d.classes), ==, 3);
    g_assert_cmpstr(d.classes[1], ==, "c/d");
    lmn_checkpoint_data_clear(&d);
    g_autofree char *out = NULL;
    g_autofree char *grey = image("grey.png");
    const char *args[] = {ckpt, grey, "--top", "3", NULL};
    g_assert_cmpint(predict(&out, NULL, args), ==, 0);
    g_assert_nonnull(strstr(out, "a b "));
    g_assert_nonnull(strstr(out, "c/d "));
    g_assert_nonnull(strstr(out, "e "));
}

/* A copy of the LeNet checkpoint without /data, its [data] train set to @train. */
static char *old_checkpoint(const char *name, const char *train)
{
    g_autofree char *src = fixture("predict-lenet.h5");
    char *ckpt = g_build_filename(tmpdir, name, NULL);
    g_autofree char *bytes = NULL, *text = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(src, &bytes, &len, NULL));
    g_assert_true(g_file_set_contents(ckpt, bytes, (gssize) len, NULL));
    hid_t f = H5Fopen(ckpt, H5F_ACC_RDWR, H5P_DEFAULT);
    g_assert_cmpint(H5Ldelete(f, "data", H5P_DEFAULT), >=, 0);
    g_assert_cmpint(H5Ldelete(f, "config", H5P_DEFAULT), >=, 0);
    text = lmn_checkpoint_read_config(src, NULL);
    g_autofree char *needle = g_strdup("train = absent.h5:/train");
    char *at = strstr(text, needle);
    g_assert_nonnull(at);
    *at = '\0';
    g_autofree char *config = g_strdup_printf("%strain = %s%s", text, train, at + strlen(needle));
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t ds = H5Dcreate2(f, "config", type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const char *value = config;
    g_assert_cmpint(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, &value), >=, 0);
    H5Dclose(ds);
    H5Sclose(space);
    H5Tclose(type);
    H5Fclose(f);
    return ckpt;
}

/* A uint8 split of two samples with scale 1/255, mean 0.5 and std 0.25, as LeNet was trained. */
static char *write_train_split(void)
{
    g_autofree char *file = g_build_filename(tmpdir, "lenet-train.h5", NULL);
    hid_t f = H5Fcreate(file, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    guint8 x[2 * 144] = {0};
    gint32 y[2] = {0, 1};
    hsize_t xd[4] = {2, 1, 12, 12}, yd[1] = {2}, one = 1;
    hid_t xs = H5Screate_simple(4, xd, NULL), ys = H5Screate_simple(1, yd, NULL);
    hid_t xds = H5Dcreate2(g, "x", H5T_STD_U8LE, xs, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t yds = H5Dcreate2(g, "y", H5T_STD_I32LE, ys, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(H5Dwrite(xds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), >=, 0);
    g_assert_cmpint(H5Dwrite(yds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y), >=, 0);
    const char *names[] = {"scale", "mean", "std"};
    const double values[] = {1.0 / 255.0, 0.5, 0.25};
    hid_t as = H5Screate_simple(1, &one, NULL);
    for (int i = 0; i < 3; i++) {
        hid_t a = H5Acreate2(xds, names[i], H5T_IEEE_F64LE, as, H5P_DEFAULT, H5P_DEFAULT);
        g_assert_cmpint(H5Awrite(a, H5T_NATIVE_DOUBLE, &values[i]), >=, 0);
        H5Aclose(a);
    }
    H5Sclose(as);
    H5Dclose(xds);
    H5Dclose(yds);
    H5Sclose(xs);
    H5Sclose(ys);
    H5Gclose(g);
    H5Fclose(f);
    return g_strdup_printf("%s:/train", file);
}

/* Without /data: the training split of /config when it is here (then the probabilities are
 * PyTorch's for the same preprocessing), else pixels / 255 with a notice. */
static void test_fallback(void)
{
    g_autofree char *grey = image("grey.png");
    g_autofree char *absent = old_checkpoint("old.h5", "absent.h5:/train");
    g_autofree char *err = NULL, *out = NULL;
    const char *args[] = {absent, grey, NULL};
    g_assert_cmpint(predict(&out, &err, args), ==, 0);
    g_assert_nonnull(strstr(err, "1/255"));
    g_assert_nonnull(strstr(out, "class ")); /* no names recorded */
    g_autofree char *spec = write_train_split();
    g_autofree char *present = old_checkpoint("old-with-split.h5", spec);
    g_autofree char *file = g_build_filename(tmpdir, "fallback.h5", NULL);
    g_autofree char *err2 = NULL;
    const char *args2[] = {present, grey, "-o", file, NULL};
    g_assert_cmpint(predict(NULL, &err2, args2), ==, 0);
    g_assert_null(strstr(err2, "1/255"));
    gsize n = 0, m = 0;
    g_autofree float *probs = e2e_read_floats(file, "probabilities", &n);
    g_autofree char *lenet = fixture("predict-lenet.h5");
    g_autofree double *want = read_doubles(lenet, "images/grey.png", &m);
    g_assert_cmpuint(n, ==, m);
    assert_close(probs, want, n, 1e-5);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("lamina-predict-XXXXXX", NULL);
    static const char *const models[] = {"mlp", "bce", "lenet", "resnet", "lstm"};
    for (guint i = 0; i < G_N_ELEMENTS(models); i++) {
        g_autofree char *path = g_strdup_printf("/predict/torch/%s", models[i]);
        g_test_add_data_func(path, models[i], test_torch);
    }
    g_test_add_func("/predict/heads", test_heads);
    g_test_add_func("/predict/decode", test_decode);
    g_test_add_func("/predict/images", test_images);
    g_test_add_func("/predict/top", test_top);
    g_test_add_func("/predict/errors", test_errors);
    g_test_add_func("/predict/train-records", test_train_records);
    g_test_add_func("/predict/fallback", test_fallback);
    int status = g_test_run();
    e2e_remove_tree(tmpdir);
    g_free(tmpdir);
    return status;
}
