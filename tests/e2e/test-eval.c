/* `lamina eval`: top-K accuracy, the confusion matrix, ensembles and test-time augmentation.
 *
 * Oracles: the test computes every probability itself, through the C API (each checkpoint's
 * model, its weights, one evaluation-mode forward of the whole split, the logits) with its own
 * softmax in double, its own image mirroring and ten-crop views, its own mean over members and
 * views and its own counts; the JSON of `lamina eval` must agree.  Also: the members' "accuracy"
 * is what each checkpoint scores alone, an ensemble of one checkpoint twice is that checkpoint,
 * --tta hflip on a mirrored copy of the split equals it on the split, and bad input fails with
 * status 2 (usage) or 1. */
#include "e2e-util.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#define N 120
#define C 3
#define IH 4
#define IW 5
#define NUMEL (IH * IW)

typedef struct {
    char *dir, *data, *ckpt[2], *flat_ckpt, *wide_ckpt;
    float x[N * NUMEL], m[N * NUMEL]; /* the test split and its mirror */
    gint32 y[N];
} Fixture;

static Fixture fx;

/* x float32 [n, 1, IH, IW] and y int32 [n] as split @split of @path (added to the file). */
static void write_images(const char *path, const char *split, const float *x, const gint32 *y,
                         int n, int rank)
{
    hid_t f = g_file_test(path, G_FILE_TEST_EXISTS)
                  ? H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT)
                  : H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    hid_t g = H5Gcreate2(f, split, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t img[4] = {(hsize_t) n, 1, IH, IW}, flat[2] = {(hsize_t) n, NUMEL},
            yd[1] = {(hsize_t) n};
    hid_t xs = rank == 4 ? H5Screate_simple(4, img, NULL) : H5Screate_simple(2, flat, NULL);
    hid_t ys = H5Screate_simple(1, yd, NULL);
    hid_t xds = H5Dcreate2(g, "x", H5T_IEEE_F32LE, xs, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t yds = H5Dcreate2(g, "y", H5T_STD_I32LE, ys, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(H5Dwrite(xds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), >=, 0);
    g_assert_cmpint(H5Dwrite(yds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y), >=, 0);
    H5Dclose(xds);
    H5Dclose(yds);
    H5Sclose(xs);
    H5Sclose(ys);
    H5Gclose(g);
    H5Fclose(f);
}

static void mirror(const float *in, float *out)
{
    for (int r = 0; r < IH; r++)
        for (int c = 0; c < IW; c++)
            out[r * IW + c] = in[r * IW + IW - 1 - c];
}

/* Class k brightens row k and, asymmetrically, column k + 1, under heavy noise. */
static void make_split(GRand *rng, float *x, gint32 *y, int n)
{
    for (int i = 0; i < n; i++) {
        y[i] = g_rand_int_range(rng, 0, C);
        for (int j = 0; j < NUMEL; j++) {
            double u1 = g_rand_double(rng), u2 = g_rand_double(rng);
            x[i * NUMEL + j] = (float) (sqrt(-2 * log(1 - u1)) * cos(2 * G_PI * u2));
        }
        for (int c = 0; c < IW; c++)
            x[i * NUMEL + y[i] * IW + c] += 0.6f;
        for (int r = 0; r < IH; r++)
            x[i * NUMEL + r * IW + y[i] + 1] += 0.6f;
    }
}

static const char cfg_template[] =
    "[model]\ninput = %s\n%s[layer fc1]\ntype = dense\nunits = %d\n[layer act]\ntype = tanh\n"
    "[layer fc2]\ntype = dense\nunits = %d\n[layer loss]\ntype = softmax_cross_entropy\n"
    "[optimizer]\ntype = sgd\nlr = 0.05\n[train]\nepochs = 1\nbatch_size = 16\nseed = %d\n"
    "backend = cpu\n[data]\ntrain = %s:/%s\n";

static char *train(const char *name, const char *input, int units, int classes, int seed,
                   const char *split)
{
    g_autofree char *cfg = g_build_filename(fx.dir, name, NULL);
    g_autofree char *text = g_strdup_printf(
        cfg_template, input, g_str_equal(split, "flat") ? "" : "[layer flat]\ntype = flatten\n",
        units, classes, seed, fx.data, split);
    g_assert_true(g_file_set_contents(cfg, text, -1, NULL));
    g_autofree char *out = g_strconcat(cfg, ".out", NULL);
    g_autofree char *err = NULL;
    int rc = e2e_run_lamina(NULL, &err, "train", cfg, "--output", out, NULL);
    if (rc != 0)
        g_error("lamina train %s failed (%d): %s", name, rc, err);
    return g_build_filename(out, "final.h5", NULL);
}

static void setup(void)
{
    fx.dir = g_dir_make_tmp("lamina-eval-XXXXXX", NULL);
    fx.data = g_build_filename(fx.dir, "img.h5", NULL);
    g_autoptr(GRand) rng = g_rand_new_with_seed(11);
    g_autofree float *x = g_new(float, 400 * NUMEL);
    g_autofree gint32 *y = g_new(gint32, 400);
    make_split(rng, x, y, 400);
    write_images(fx.data, "train", x, y, 400, 4);
    write_images(fx.data, "flat", x, y, 400, 2);
    make_split(rng, fx.x, fx.y, N);
    write_images(fx.data, "test", fx.x, fx.y, N, 4);
    for (int i = 0; i < N; i++)
        mirror(fx.x + i * NUMEL, fx.m + i * NUMEL);
    write_images(fx.data, "mirror", fx.m, fx.y, N, 4);
    fx.ckpt[0] = train("a.ini", "1, 4, 5", 8, C, 1, "train");
    fx.ckpt[1] = train("b.ini", "1, 4, 5", 12, C, 2, "train");
    fx.flat_ckpt = train("flat.ini", "20", 8, C, 3, "flat");
    fx.wide_ckpt = train("wide.ini", "1, 4, 5", 8, C + 1, 4, "train");
}

static LmnRegistry *registry;
static LmnBackend *cpu;

/* The checkpoint's softmax probabilities of @x [N, 1, IH, IW], in double: one forward of the
 * whole split in evaluation mode, the logits read back, the softmax computed here. */
static void oracle_probs(const char *ckpt, const float *x, const gint32 *y, double *p)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *text = lmn_checkpoint_read_config(ckpt, &error);
    g_assert_no_error(error);
    LmnConfig *cfg = lmn_config_new_from_data(text, -1, ckpt, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    LmnTensorInfo target = {lmn_shape_make(0), LMN_DTYPE_I32};
    LmnModel *model = lmn_model_new(cfg, registry, cpu, &target, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_checkpoint_load_weights(ckpt, model, &error));
    g_assert_true(lmn_model_prepare(model, N, &error));
    LmnTensor *tx, *ty;
    lmn_model_set_batch(model, N, &tx, &ty);
    g_assert_true(lmn_tensor_write(tx, x, N * NUMEL * sizeof(float), &error));
    g_assert_true(lmn_tensor_write(ty, y, N * sizeof(gint32), &error));
    lmn_model_forward(model, FALSE, 0, 0);
    float z[N * C];
    g_assert_true(lmn_tensor_read(lmn_model_get_prediction(model), z, sizeof z, &error));
    g_assert_no_error(error);
    for (int i = 0; i < N; i++) {
        double max = z[i * C], sum = 0;
        for (int j = 1; j < C; j++)
            max = fmax(max, z[i * C + j]);
        for (int j = 0; j < C; j++)
            sum += exp(z[i * C + j] - max);
        for (int j = 0; j < C; j++)
            p[i * C + j] = exp(z[i * C + j] - max) / sum;
    }
    lmn_model_free(model);
    lmn_config_free(cfg);
}

/* The counts of mean probabilities @p: top-1 and top-2 hits and the confusion matrix. */
typedef struct {
    int top1, top2;
    int confusion[C][C];
} Counts;

static Counts count(const double *p, const gint32 *y)
{
    Counts k = {0};
    for (int i = 0; i < N; i++) {
        const double *r = p + i * C;
        int best = 0, second = -1;
        for (int j = 1; j < C; j++)
            if (r[j] > r[best])
                best = j;
        for (int j = 0; j < C; j++)
            if (j != best && (second < 0 || r[j] > r[second]))
                second = j;
        k.top1 += best == y[i];
        k.top2 += best == y[i] || second == y[i];
        k.confusion[y[i]][best]++;
    }
    return k;
}

/* The number after "@key": in @json, after @anchor when it is not NULL. */
static double json_number(const char *json, const char *anchor, const char *key)
{
    const char *from = anchor ? strstr(json, anchor) : json;
    g_assert_nonnull(from);
    g_autofree char *k = g_strdup_printf("\"%s\": ", key);
    const char *p = strstr(from, k);
    g_assert_nonnull(p);
    return g_ascii_strtod(p + strlen(k), NULL);
}

/* Checks the accuracies and the confusion matrix after @anchor in @json against @k. */
static void check_counts(const char *json, const char *anchor, const Counts *k)
{
    g_assert_cmpfloat_with_epsilon(json_number(json, anchor, "accuracy"), (double) k->top1 / N,
                                   1e-6);
    g_assert_cmpfloat_with_epsilon(json_number(json, anchor, "top_k_accuracy"),
                                   (double) k->top2 / N, 1e-6);
    const char *p = strstr(strstr(json, anchor), "\"confusion\": [");
    g_assert_nonnull(p);
    p += strlen("\"confusion\": [");
    for (int t = 0; t < C; t++)
        for (int q = 0; q < C; q++) {
            while (*p && !g_ascii_isdigit(*p))
                p++;
            char *end = NULL;
            g_assert_cmpint(g_ascii_strtoll(p, &end, 10), ==, k->confusion[t][q]);
            p = end;
        }
}

static char *eval_json(const char *first, ...) G_GNUC_NULL_TERMINATED;
/* `lamina eval ARGS... --json --backend cpu`, which must succeed. */
static char *eval_json(const char *first, ...)
{
    g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *lamina = g_strdup(e2e_lamina_exe());
    g_ptr_array_add(args, g_strdup(lamina));
    g_ptr_array_add(args, g_strdup("eval"));
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *))
        g_ptr_array_add(args, g_strdup(a));
    va_end(ap);
    g_ptr_array_add(args, g_strdup("--json"));
    g_ptr_array_add(args, g_strdup("--backend"));
    g_ptr_array_add(args, g_strdup("cpu"));
    g_ptr_array_add(args, NULL);
    char *out = NULL, *err = NULL;
    int status = -1;
    g_autoptr(GError) error = NULL;
    g_assert_true(g_spawn_sync(NULL, (char **) args->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out,
                               &err, &status, &error));
    g_assert_no_error(error);
    if (!g_spawn_check_wait_status(status, NULL))
        g_error("lamina eval failed: %s", err);
    g_free(err);
    return out;
}

static char *spec(const char *split)
{
    return g_strdup_printf("%s:/%s", fx.data, split);
}

/* Two members: each one's accuracy as alone, the ensemble's against the mean of the oracle's
 * probabilities; one checkpoint twice is that checkpoint; one checkpoint keeps its keys. */
static void test_ensemble(void)
{
    g_autofree char *test = spec("test");
    double p[2][N * C], mean[N * C];
    for (int k = 0; k < 2; k++)
        oracle_probs(fx.ckpt[k], fx.x, fx.y, p[k]);
    for (int i = 0; i < N * C; i++)
        mean[i] = (p[0][i] + p[1][i]) / 2;
    Counts ka = count(p[0], fx.y), kb = count(p[1], fx.y), ke = count(mean, fx.y);
    g_test_message("accuracy: a %d, b %d, ensemble %d of %d", ka.top1, kb.top1, ke.top1, N);
    /* A split the members neither ace nor agree on, so the checks have something to check. */
    g_assert_cmpint(ka.top1, <, N);
    g_assert_cmpint(ka.top1, >, N / C);
    g_assert_cmpint(memcmp(&ka, &kb, sizeof ka), !=, 0);
    g_autofree char *json = eval_json(fx.ckpt[0], fx.ckpt[1], "--data", test, "--top-k", "2", NULL);
    check_counts(json, "\"ensemble\": {", &ke);
    g_autofree char *anchor_a = g_strdup_printf("\"checkpoint\": \"%s\"", fx.ckpt[0]);
    g_autofree char *anchor_b = g_strdup_printf("\"checkpoint\": \"%s\"", fx.ckpt[1]);
    g_assert_cmpfloat_with_epsilon(json_number(json, anchor_a, "accuracy"), (double) ka.top1 / N,
                                   1e-6);
    g_assert_cmpfloat_with_epsilon(json_number(json, anchor_b, "top_k_accuracy"),
                                   (double) kb.top2 / N, 1e-6);
    g_assert_cmpfloat(json_number(json, NULL, "samples"), ==, N);
    g_assert_cmpfloat(json_number(json, "\"ensemble\": {", "members"), ==, 2);
    /* Alone, with the keys of old: loss, losses, accuracy, samples; then the new ones. */
    g_autofree char *alone = eval_json(fx.ckpt[0], "--data", test, "--top-k", "2", NULL);
    g_assert_true(g_str_has_prefix(alone, "{\"loss\": "));
    g_assert_nonnull(strstr(alone, "\"losses\": {\"loss\": "));
    g_assert_cmpfloat_with_epsilon(json_number(alone, NULL, "accuracy"), (double) ka.top1 / N,
                                   1e-6);
    g_assert_cmpfloat(json_number(alone, NULL, "samples"), ==, N);
    check_counts(alone, "\"metrics\": {", &ka);
    g_assert_cmpfloat(json_number(alone, NULL, "loss"), ==,
                      json_number(json, "\"members\": [", "loss"));
    /* One checkpoint twice: the mean of equal probabilities is each. */
    g_autofree char *twice =
        eval_json(fx.ckpt[0], fx.ckpt[0], "--data", test, "--top-k", "2", NULL);
    const char *ens = strstr(twice, "\"ensemble\": {\"members\": 2, ");
    g_assert_nonnull(ens);
    const char *single = strstr(alone, "\"metrics\": {") + strlen("\"metrics\": {");
    g_assert_true(g_str_has_prefix(ens + strlen("\"ensemble\": {\"members\": 2, "), single));
}

/* The ten views of LmnTta's crops, built here: the image zero-padded by @pad, cropped at the
 * centre and the four corners, each also mirrored; @p gets their mean probabilities. */
static void oracle_crops(const char *ckpt, int pad, double *p)
{
    static const int offsets[5][2] = {{1, 1}, {0, 0}, {0, 2}, {2, 0}, {2, 2}};
    g_autofree float *view = g_new(float, N *NUMEL);
    g_autofree double *q = g_new(double, N *C);
    memset(p, 0, N * C * sizeof(double));
    for (int v = 0; v < 10; v++) {
        int oy = offsets[v % 5][0] * pad, ox = offsets[v % 5][1] * pad;
        for (int i = 0; i < N; i++)
            for (int r = 0; r < IH; r++)
                for (int c = 0; c < IW; c++) {
                    int sr = r + oy - pad, sc = (v >= 5 ? IW - 1 - c : c) + ox - pad;
                    gboolean inside = sr >= 0 && sr < IH && sc >= 0 && sc < IW;
                    view[i * NUMEL + r * IW + c] = inside ? fx.x[i * NUMEL + sr * IW + sc] : 0;
                }
        oracle_probs(ckpt, view, fx.y, q);
        for (int i = 0; i < N * C; i++)
            p[i] += q[i] / 10;
    }
}

/* --tta hflip against the oracle's mean of the image and its mirror; on the mirrored split it is
 * the same; the mirrored split evaluated plainly is the oracle's mirror view; --tta crops against
 * the oracle's ten views. */
static void test_tta(void)
{
    g_autofree char *test = spec("test");
    g_autofree char *mirrored = spec("mirror");
    double p[N * C], q[N * C], mean[N * C];
    oracle_probs(fx.ckpt[0], fx.x, fx.y, p);
    oracle_probs(fx.ckpt[0], fx.m, fx.y, q);
    for (int i = 0; i < N * C; i++)
        mean[i] = (p[i] + q[i]) / 2;
    Counts km = count(q, fx.y), kh = count(mean, fx.y);
    Counts kp = count(p, fx.y);
    /* The views change the figures, so a mode that skipped one would be seen. */
    g_assert_cmpint(memcmp(&kp, &kh, sizeof kp), !=, 0);
    g_assert_cmpint(memcmp(&km, &kh, sizeof km), !=, 0);
    g_test_message("accuracy: plain %d, mirrored %d, hflip %d of %d", kp.top1, km.top1, kh.top1, N);
    g_autofree char *plain_m = eval_json(fx.ckpt[0], "--data", mirrored, "--top-k", "2", NULL);
    check_counts(plain_m, "\"metrics\": {", &km);
    g_assert_cmpfloat_with_epsilon(json_number(plain_m, NULL, "accuracy"), (double) km.top1 / N,
                                   1e-6);
    g_autofree char *h =
        eval_json(fx.ckpt[0], "--data", test, "--top-k", "2", "--tta", "hflip", NULL);
    check_counts(h, "\"metrics\": {", &kh);
    g_assert_nonnull(strstr(h, "\"tta\": \"hflip\""));
    g_autofree char *hm =
        eval_json(fx.ckpt[0], "--data", mirrored, "--top-k", "2", "--tta", "hflip", NULL);
    g_assert_cmpstr(strstr(hm, "\"metrics\": {"), ==, strstr(h, "\"metrics\": {"));
    /* Batches of 7 (the last one short) change nothing. */
    g_autofree char *h7 = eval_json(fx.ckpt[0], "--data", test, "--top-k", "2", "--tta", "hflip",
                                    "--batch-size", "7", NULL);
    g_assert_cmpstr(strstr(h7, "\"metrics\": {"), ==, strstr(h, "\"metrics\": {"));
    /* An ensemble with TTA: each member's views, then the members' mean. */
    double p1[N * C], q1[N * C];
    oracle_probs(fx.ckpt[1], fx.x, fx.y, p1);
    oracle_probs(fx.ckpt[1], fx.m, fx.y, q1);
    for (int i = 0; i < N * C; i++)
        mean[i] = ((p[i] + q[i]) / 2 + (p1[i] + q1[i]) / 2) / 2;
    Counts ke = count(mean, fx.y);
    g_autofree char *he =
        eval_json(fx.ckpt[0], fx.ckpt[1], "--data", test, "--top-k", "2", "--tta", "hflip", NULL);
    check_counts(he, "\"ensemble\": {", &ke);
    double crops[N * C];
    oracle_crops(fx.ckpt[0], 1, crops);
    Counts kc = count(crops, fx.y);
    g_test_message("accuracy: crops %d of %d", kc.top1, N);
    g_autofree char *c = eval_json(fx.ckpt[0], "--data", test, "--top-k", "2", "--tta", "crops",
                                   "--tta-pad", "1", NULL);
    check_counts(c, "\"metrics\": {", &kc);
}

/* Runs `lamina eval ARGS --backend cpu` expecting @status and @message on stderr. */
static void expect_failure(int status, const char *message, const char *const *args)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_ptr_array_add(argv, (gpointer) e2e_lamina_exe());
    g_ptr_array_add(argv, "eval");
    for (const char *const *a = args; *a; a++)
        g_ptr_array_add(argv, (gpointer) *a);
    g_ptr_array_add(argv, "--backend");
    g_ptr_array_add(argv, "cpu");
    g_ptr_array_add(argv, NULL);
    g_autofree char *out = NULL, *err = NULL;
    int wait = 0;
    g_assert_true(g_spawn_sync(NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out,
                               &err, &wait, NULL));
    g_test_message("%s", err);
    g_assert_true(WIFEXITED(wait));
    g_assert_cmpint(WEXITSTATUS(wait), ==, status);
    g_assert_nonnull(strstr(err, message));
    g_assert_cmpstr(out, ==, "");
}

static void test_errors(void)
{
    g_autofree char *test = spec("test");
    g_autofree char *flat = spec("flat");
    const char *a = fx.ckpt[0];
    expect_failure(2, "--top-k: expected a K of at least 1",
                   (const char *[]){a, "--data", test, "--top-k", "0", NULL});
    expect_failure(2, "--top-k 4: ", (const char *[]){a, "--data", test, "--top-k", "4", NULL});
    expect_failure(2, "--tta: expected none, hflip or crops",
                   (const char *[]){a, "--data", test, "--tta", "vflip", NULL});
    expect_failure(2, "--tta-pad: expected P of at least 0",
                   (const char *[]){a, "--data", test, "--tta", "crops", "--tta-pad", "-1", NULL});
    expect_failure(1, "crop padding 4: expected 0 to 3",
                   (const char *[]){a, "--data", test, "--tta", "crops", NULL});
    expect_failure(1, "test-time augmentation needs image inputs [C, H, W], not [20]",
                   (const char *[]){fx.flat_ckpt, "--data", flat, "--tta", "hflip", NULL});
    g_autofree char *shapes = g_strdup_printf(
        "the ensemble's members disagree: %s takes inputs [1, 4, 5] with 3 classes, %s inputs "
        "[20] with 3 classes",
        a, fx.flat_ckpt);
    expect_failure(1, shapes, (const char *[]){a, fx.flat_ckpt, "--data", test, NULL});
    g_autofree char *classes = g_strdup_printf(
        "the ensemble's members disagree: %s takes inputs [1, 4, 5] with 3 classes, %s inputs "
        "[1, 4, 5] with 4 classes",
        a, fx.wide_ckpt);
    expect_failure(1, classes, (const char *[]){a, fx.wide_ckpt, "--data", test, NULL});
}

/* The text form: each member's line, the ensemble's accuracies, matrix and table. */
static void test_text(void)
{
    g_autofree char *test = spec("test");
    g_autofree char *out = NULL, *err = NULL;
    g_assert_cmpint(e2e_run_lamina(&out, &err, "eval", fx.ckpt[0], fx.ckpt[1], "--data", test,
                                   "--top-k", "2", "--backend", "cpu", NULL),
                    ==, 0);
    g_autofree char *a = g_strdup_printf("%s: loss ", fx.ckpt[0]);
    g_assert_nonnull(strstr(out, a));
    g_assert_nonnull(strstr(out, "ensemble of 2 (tta none): top-1 "));
    g_assert_nonnull(strstr(out, "confusion matrix (rows: true class, columns: predicted class)"));
    g_assert_nonnull(strstr(out, "   macro "));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    LmnBackend *vk = NULL;
    e2e_open_backends(FALSE, &registry, &cpu, &vk);
    setup();
    g_test_add_func("/e2e/eval/ensemble", test_ensemble);
    g_test_add_func("/e2e/eval/tta", test_tta);
    g_test_add_func("/e2e/eval/text", test_text);
    g_test_add_func("/e2e/eval/errors", test_errors);
    int status = g_test_run();
    e2e_remove_tree(fx.dir);
    for (int k = 0; k < 2; k++)
        g_free(fx.ckpt[k]);
    g_free(fx.flat_ckpt);
    g_free(fx.wide_ckpt);
    g_free(fx.data);
    g_free(fx.dir);
    lmn_backend_unref(cpu);
    lmn_registry_free(registry);
    return status;
}
