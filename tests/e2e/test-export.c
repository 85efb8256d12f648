/* `lamina export --format onnx`.
 *
 * Oracle: tests/e2e/onnx-check.py, which runs onnx.checker (full check, strict shape inference)
 * on the exported file and evaluates the graph with its own NumPy implementation of the ONNX
 * operators; its outputs must equal, within 1e-5, Lamina's evaluation-mode forward of the same
 * checkpoint on the same input (the loss layer's input, and its softmax or sigmoid computed here
 * in double precision).  The models cover every layer with an export hook: an MLP with every
 * activation, dropout and a 1-D batch norm; a LeNet-like CNN with batch norm, max and average
 * pooling (padding counted in the average), a grouped dilated strided convolution and global
 * average pooling; a residual block with add, concat, reshape and softmax; an embedding with a
 * binary cross-entropy head; an mse regression; transposed convolutions with a dense layer on a
 * 3-D input.  Also: layers without an ONNX equivalent are
 * named, and bad arguments give usage errors.
 */
#include "e2e-util.h"

#include <glib/gstdio.h>
#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

static LmnRegistry *registry;
static LmnBackend *cpu;

#define N 6
#define TAIL "[optimizer]\ntype = sgd\n[train]\nbackend = cpu\n[data]\ntrain = unused.h5:/train\n"

static const char mlp_cfg[] = "[model]\ninput = 7\n"
                              "[layer fc1]\ntype = dense\nunits = 12\n"
                              "[layer bn1]\ntype = batch_norm\n"
                              "[layer act1]\ntype = gelu\n"
                              "[layer drop]\ntype = dropout\np = 0.3\n"
                              "[layer fc2]\ntype = dense\nunits = 10\n"
                              "[layer act2]\ntype = tanh\n"
                              "[layer fc3]\ntype = dense\nunits = 9\n"
                              "[layer act3]\ntype = softplus\nbeta = 2.5\n"
                              "[layer fc4]\ntype = dense\nunits = 9\n"
                              "[layer act4]\ntype = leaky_relu\nnegative_slope = 0.2\n"
                              "[layer fc5]\ntype = dense\nunits = 8\n"
                              "[layer act5]\ntype = elu\nalpha = 0.7\n"
                              "[layer fc6]\ntype = dense\nunits = 8\nbias = false\n"
                              "[layer act6]\ntype = sigmoid\n"
                              "[layer fc7]\ntype = dense\nunits = 8\n"
                              "[layer act7]\ntype = relu\n"
                              "[layer act8]\ntype = softplus\n"
                              "[layer fc8]\ntype = dense\nunits = 5\n"
                              "[layer loss]\ntype = softmax_cross_entropy\n" TAIL;

static const char cnn_cfg[] =
    "[model]\ninput = 2, 12, 12\n"
    "[layer c1]\ntype = conv2d\nout_channels = 4\nkernel_size = 3\npadding = 1\n"
    "[layer bn1]\ntype = batch_norm\n"
    "[layer r1]\ntype = relu\n"
    "[layer p1]\ntype = maxpool2d\nkernel_size = 2\n"
    "[layer c2]\ntype = conv2d\nout_channels = 6\nkernel_size = 2, 3\ngroups = 2\n"
    "dilation = 2, 1\nstride = 1, 2\npadding = 1, 0\n"
    "[layer bn2]\ntype = batch_norm\naffine = false\n"
    "[layer p2]\ntype = avgpool2d\nkernel_size = 3\nstride = 2\npadding = 1\n"
    "[layer mp]\ntype = maxpool2d\ninput = bn2\nkernel_size = 2\nstride = 1\npadding = 1\n"
    "dilation = 2\n"
    "[layer gap]\ntype = global_avgpool\ninput = mp\n"
    "[layer flat]\ntype = flatten\ninput = p2\n"
    "[layer cat]\ntype = concat\ninput = flat, gap\n"
    "[layer fc]\ntype = dense\nunits = 3\n"
    "[layer loss]\ntype = softmax_cross_entropy\n" TAIL;

static const char spatial_cfg[] =
    "[model]\ninput = 2, 5, 6\n"
    "[layer t1]\ntype = conv_transpose2d\nout_channels = 4\nkernel_size = 3\nstride = 2\n"
    "padding = 1\noutput_padding = 1\ngroups = 2\n"
    "[layer noise]\ntype = gaussian_noise\nstd = 0.1\n"
    "[layer r1]\ntype = relu\n"
    "[layer drop]\ntype = dropout2d\np = 0.2\n"
    "[layer t2]\ntype = conv_transpose2d\nout_channels = 3\nkernel_size = 2, 3\n"
    "dilation = 2\nstride = 1, 2\nbias = false\n"
    "[layer fc1]\ntype = dense\nunits = 4\n"
    "[layer flat]\ntype = flatten\n"
    "[layer fc2]\ntype = dense\nunits = 3\nbias = false\n"
    "[layer loss]\ntype = softmax_cross_entropy\n" TAIL;

static const char residual_cfg[] = "[model]\ninput = 8\n"
                                   "[layer a]\ntype = dense\nunits = 8\n"
                                   "[layer ra]\ntype = relu\n"
                                   "[layer b]\ntype = dense\nunits = 8\n"
                                   "[layer sum]\ntype = add\ninput = input, b, ra\n"
                                   "[layer cat]\ntype = concat\ninput = sum, a\naxis = -1\n"
                                   "[layer shape]\ntype = reshape\nshape = 4, -1\n"
                                   "[layer sm]\ntype = softmax\n"
                                   "[layer flat]\ntype = flatten\n"
                                   "[layer out]\ntype = dense\nunits = 3\n"
                                   "[layer loss]\ntype = mse\n" TAIL;

/* The ABI 1.3 element-wise layers: silu, mish, hardtanh, multiply, subtract, log_softmax. */
static const char elementwise_cfg[] =
    "[model]\ninput = 6\n"
    "[layer a]\ntype = dense\nunits = 6\n"
    "[layer s]\ntype = silu\n"
    "[layer m]\ntype = mish\ninput = a\n"
    "[layer h]\ntype = hardtanh\ninput = a\nmin_val = -0.5\nmax_val = 0.25\n"
    "[layer mu]\ntype = multiply\ninput = s, m\n"
    "[layer su]\ntype = subtract\ninput = mu, h\n"
    "[layer out]\ntype = dense\nunits = 4\n"
    "[layer ls]\ntype = log_softmax\n"
    "[layer loss]\ntype = softmax_cross_entropy\n" TAIL;

static const char embedding_cfg[] =
    "[model]\ninput = 5\n"
    "[layer emb]\ntype = embedding\nnum_embeddings = 11\nembedding_dim = 3\n"
    "[layer flat]\ntype = flatten\n"
    "[layer fc]\ntype = dense\nunits = 2\n"
    "[layer loss]\ntype = binary_cross_entropy_with_logits\n" TAIL;

static const char recurrent_cfg[] =
    "[model]\ninput = 5, 3\n"
    "[layer lstm]\ntype = lstm\nhidden_size = 4\nreturn_sequences = true\n"
    "[layer gru]\ntype = gru\nhidden_size = 3\nreturn_sequences = true\n"
    "[layer gru2]\ntype = gru\nhidden_size = 3\nreturn_sequences = true\nbias = false\n"
    "[layer rnn]\ntype = rnn\nhidden_size = 4\n"
    "[layer lstm2]\ntype = lstm\ninput = gru\nhidden_size = 2\nbias = false\n"
    "[layer cat]\ntype = concat\ninput = rnn, lstm2\n"
    "[layer fc]\ntype = dense\nunits = 3\n"
    "[layer loss]\ntype = softmax_cross_entropy\n" TAIL;

/* A loss without an export hook is dropped: its prediction is the output "output". */
static const char dropped_loss_cfg[] = "[model]\ninput = 6\n"
                                       "[layer fc]\ntype = dense\nunits = 4\n"
                                       "[layer drop]\ntype = dropout\n"
                                       "[layer loss]\ntype = test_zero_loss\n" TAIL;

static const char no_hook_cfg[] = "[model]\ninput = 4, 3\n"
                                  "[layer fc]\ntype = test_double\n"
                                  "[layer rec]\ntype = test_triple\n"
                                  "[layer flat]\ntype = flatten\n"
                                  "[layer out]\ntype = dense\nunits = 2\n"
                                  "[layer loss]\ntype = softmax_cross_entropy\n" TAIL;

static const char no_stats_cfg[] = "[model]\ninput = 4\n[layer fc]\ntype = dense\nunits = 3\n"
                                   "[layer bn]\ntype = batch_norm\ntrack_running_stats = false\n"
                                   "[layer loss]\ntype = softmax_cross_entropy\n" TAIL;

/* What the loss layer turns into, and so which outputs the check expects. */
typedef enum { HEAD_SOFTMAX, HEAD_SIGMOID, HEAD_IDENTITY } Head;

typedef struct {
    char *dir;
    char *ckpt;
    char *onnx;
} Files;

static void files_init(Files *f)
{
    f->dir = g_dir_make_tmp("lamina-export-XXXXXX", NULL);
    g_assert_nonnull(f->dir);
    f->ckpt = g_build_filename(f->dir, "model.h5", NULL);
    f->onnx = g_build_filename(f->dir, "model.onnx", NULL);
}

static void files_clear(Files *f)
{
    e2e_remove_tree(f->dir);
    g_free(f->dir);
    g_free(f->ckpt);
    g_free(f->onnx);
}

static LmnConfig *parse(const char *text)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_data(text, -1, "export.ini", &error);
    g_assert_no_error(error);
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    g_assert_no_error(error);
    return cfg;
}

static void write_floats(LmnTensor *t, const float *v)
{
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_tensor_write(t, v, lmn_tensor_nbytes(t), &error));
    g_assert_no_error(error);
}

static float *read_tensor(LmnTensor *t)
{
    g_autoptr(GError) error = NULL;
    float *v = g_new(float, MAX(lmn_tensor_numel(t), 1));
    g_assert_true(lmn_tensor_read(t, v, lmn_tensor_nbytes(t), &error));
    g_assert_no_error(error);
    return v;
}

/* Random inputs (whole numbers below @index_limit when it is positive) and valid targets. */
static void fill_batch(LmnModel *model, GRand *rng, gint64 index_limit, Head head, float *x_out)
{
    LmnTensor *x, *y;
    lmn_model_set_batch(model, N, &x, &y);
    gint64 nx = lmn_tensor_numel(x);
    for (gint64 i = 0; i < nx; i++)
        x_out[i] = index_limit > 0 ? (float) g_rand_int_range(rng, 0, (gint32) index_limit)
                                   : (float) g_rand_double_range(rng, -2, 2);
    write_floats(x, x_out);
    gint64 ny = lmn_tensor_numel(y);
    g_autofree float *yv = g_new(float, ny);
    for (gint64 i = 0; i < ny; i++)
        yv[i] = (float) g_rand_double_range(rng, 0, 1);
    if (head == HEAD_SOFTMAX) {
        gint32 *labels = (gint32 *) yv;
        for (gint64 i = 0; i < ny; i++)
            labels[i] = (gint32) g_rand_int_range(rng, 0, (gint32) lmn_model_get_n_classes(model));
    }
    write_floats(y, yv);
}

/* Builds @text's model, moves batch-norm statistics off their initial values with training
 * forwards, saves a checkpoint, and returns its evaluation-mode input and prediction. */
static LmnModel *make_checkpoint(const char *text, Head head, gint64 index_limit, const Files *f,
                                 float **x_out)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = parse(text);
    LmnTensorInfo target = {lmn_shape_make(0), LMN_DTYPE_I32};
    if (head != HEAD_SOFTMAX) {
        /* The targets of mse and bce are shaped like the prediction: the last dense's units. */
        guint last = lmn_config_get_n_layers(cfg);
        while (!g_str_equal(lmn_config_get_layer(cfg, --last)->type, "dense"))
            ;
        const LmnLayerConfig *fc = lmn_config_get_layer(cfg, last);
        target = (LmnTensorInfo){lmn_shape_make(1, lmn_params_get_int(fc->params, "units")),
                                 LMN_DTYPE_F32};
    }
    LmnModel *model = lmn_model_new(cfg, registry, cpu, &target, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_init_params(model, 7, &error));
    g_assert_true(lmn_model_prepare(model, N, &error));
    g_assert_no_error(error);
    g_autoptr(GRand) rng = g_rand_new_with_seed(11);
    gint64 nx = N * lmn_shape_numel(lmn_model_get_input_shape(model));
    float *x = g_new(float, nx);
    for (guint step = 0; step < 3; step++) {
        fill_batch(model, rng, index_limit, head, x);
        lmn_model_forward(model, TRUE, step, 5);
    }
    fill_batch(model, rng, index_limit, head, x);
    lmn_model_forward(model, FALSE, 0, 5);
    g_assert_true(lmn_checkpoint_save(f->ckpt, text, model, NULL, NULL, NULL, &error));
    g_assert_no_error(error);
    lmn_config_free(cfg);
    *x_out = x;
    return model;
}

static void write_file(const char *dir, const char *name, const float *v, gint64 n)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *path = g_build_filename(dir, name, NULL);
    g_assert_true(g_file_set_contents(path, (const char *) v, n * (gssize) sizeof(float), &error));
    g_assert_no_error(error);
}

/* Lamina's outputs for the head: the logits and their softmax or sigmoid, or the prediction. */
static void write_expected(LmnModel *model, Head head, const char *dir)
{
    LmnTensor *pred = lmn_model_get_prediction(model);
    g_autofree float *logits = read_tensor(pred);
    gint64 n = lmn_tensor_numel(pred), k = n / N;
    if (head == HEAD_IDENTITY) {
        write_file(dir, "output.f32", logits, n);
        return;
    }
    write_file(dir, "logits.f32", logits, n);
    g_autofree float *probs = g_new(float, n);
    for (gint64 r = 0; r < N; r++) {
        const float *z = logits + r * k;
        double max = z[0], sum = 0;
        for (gint64 j = 1; j < k; j++)
            max = MAX(max, z[j]);
        for (gint64 j = 0; j < k; j++)
            sum += exp((double) z[j] - max);
        for (gint64 j = 0; j < k; j++) {
            probs[r * k + j] = head == HEAD_SIGMOID ? (float) (1 / (1 + exp(-(double) z[j])))
                                                    : (float) (exp((double) z[j] - max) / sum);
        }
    }
    write_file(dir, "probabilities.f32", probs, n);
}

/* Runs onnx-check.py; Returns: its exit status (77: onnx missing), with its stdout. */
static int run_checker(const Files *f, char **out)
{
    g_autofree char *input = g_build_filename(f->dir, "input.f32", NULL);
    const char *argv[] = {
        g_getenv("LMN_TEST_PYTHON"), g_getenv("LMN_TEST_ONNX_CHECK"), f->onnx, input, f->dir, NULL};
    g_assert_nonnull(argv[0]);
    g_assert_nonnull(argv[1]);
    g_autofree char *err = NULL;
    int status = 0;
    g_autoptr(GError) error = NULL;
    g_assert_true(g_spawn_sync(NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, out, &err,
                               &status, &error));
    g_assert_no_error(error);
    if (err != NULL && *err != '\0')
        g_test_message("onnx-check stderr: %s", err);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Exports @text's checkpoint and checks it against Lamina; @names must all be initializers. */
static void check_model(const char *text, Head head, gint64 index_limit, const char *const *names)
{
    Files f;
    files_init(&f);
    g_autofree float *x = NULL;
    LmnModel *model = make_checkpoint(text, head, index_limit, &f, &x);
    write_file(f.dir, "input.f32", x, N * lmn_shape_numel(lmn_model_get_input_shape(model)));
    write_expected(model, head, f.dir);
    lmn_model_free(model);

    g_autofree char *out = NULL, *err = NULL;
    int rc = e2e_run_lamina(&out, &err, "export", f.ckpt, "--format", "onnx", "--output", f.onnx,
                            "--plugin-path", g_getenv("LMN_TEST_EXPORT_PLUGIN_DIR"), NULL);
    g_assert_cmpstr(err, ==, "");
    g_assert_cmpint(rc, ==, 0);
    g_autofree char *report = NULL;
    rc = run_checker(&f, &report);
    g_test_message("%s", report);
    if (rc == 77) {
        g_test_skip("python3-onnx is not installed");
    } else {
        g_assert_cmpint(rc, ==, 0);
        g_assert_nonnull(strstr(report, "opset: 13\n"));
        for (guint i = 0; names[i] != NULL; i++) {
            g_autofree char *word = g_strdup_printf(" %s", names[i]);
            g_assert_nonnull(strstr(report, word));
        }
    }
    files_clear(&f);
}

static void test_mlp(void)
{
    const char *names[] = {
        "fc1.weight", "fc1.bias", "bn1.running_mean", "bn1.running_var", "bn1.weight", "fc6.weight",
        "fc8.bias",   "Erf",      "Softplus",         "LeakyRelu",       "Elu",        NULL};
    check_model(mlp_cfg, HEAD_SOFTMAX, 0, names);
}

static void test_cnn(void)
{
    const char *names[] = {"c1.weight",          "c1.bias",     "c2.weight", "bn1.running_var",
                           "bn2.running_mean",   "AveragePool", "MaxPool",   "GlobalAveragePool",
                           "BatchNormalization", "Concat",      NULL};
    check_model(cnn_cfg, HEAD_SOFTMAX, 0, names);
}

/* conv_transpose2d (groups, output padding, dilation), dense on a 3-D input (MatMul), and the
 * training-only layers gaussian_noise and dropout2d, which export as nothing. */
static void test_spatial(void)
{
    const char *names[] = {"t1.weight",     "t1.bias", "t2.weight", "fc1.weight", "fc1.bias",
                           "ConvTranspose", "MatMul",  "Transpose", NULL};
    check_model(spatial_cfg, HEAD_SOFTMAX, 0, names);
}

static void test_residual(void)
{
    const char *names[] = {"a.weight", "b.bias", "out.weight", "Add", "Reshape", "Softmax", NULL};
    check_model(residual_cfg, HEAD_IDENTITY, 0, names);
}

static void test_elementwise(void)
{
    const char *names[] = {"a.weight", "Sigmoid", "Softplus",   "Tanh", "Clip",
                           "Mul",      "Sub",     "LogSoftmax", NULL};
    check_model(elementwise_cfg, HEAD_SOFTMAX, 0, names);
}

static void test_recurrent(void)
{
    const char *names[] = {"lstm.weight_ih",
                           "lstm.weight_hh",
                           "lstm.bias",
                           "gru.weight_ih",
                           "rnn.bias",
                           "lstm2.weight_hh",
                           "LSTM",
                           "GRU",
                           "RNN",
                           "Transpose",
                           "Squeeze",
                           NULL};
    check_model(recurrent_cfg, HEAD_SOFTMAX, 0, names);
}

static void test_dropped_loss(void)
{
    const char *names[] = {"fc.weight", "fc.bias", "Gemm", NULL};
    check_model(dropped_loss_cfg, HEAD_IDENTITY, 0, names);
}

static void test_embedding(void)
{
    const char *names[] = {"emb.weight", "Gather", "Cast", "Sigmoid", NULL};
    check_model(embedding_cfg, HEAD_SIGMOID, 11, names);
}

static const char tiny_cfg[] = "[model]\ninput = 4\n[layer fc]\ntype = dense\nunits = 3\n"
                               "[layer loss]\ntype = softmax_cross_entropy\n" TAIL;

/* A checkpoint of @text's freshly initialised model (with class labels). */
static void save_checkpoint(const char *text, const Files *f)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = parse(text);
    LmnTensorInfo target = {lmn_shape_make(0), LMN_DTYPE_I32};
    LmnModel *model = lmn_model_new(cfg, registry, cpu, &target, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_init_params(model, 1, &error));
    g_assert_true(lmn_checkpoint_save(f->ckpt, text, model, NULL, NULL, NULL, &error));
    g_assert_no_error(error);
    lmn_model_free(model);
    lmn_config_free(cfg);
}

/* `lamina export` of @text's checkpoint, with the test plugin: Returns: the exit status. */
static int export_status(const char *text, const Files *f, char **err)
{
    save_checkpoint(text, f);
    g_autofree char *out = NULL;
    return e2e_run_lamina(&out, err, "export", f->ckpt, "--output", f->onnx, "--plugin-path",
                          g_getenv("LMN_TEST_EXPORT_PLUGIN_DIR"), NULL);
}

static void test_no_equivalent(void)
{
    Files f;
    files_init(&f);
    g_autofree char *err = NULL;
    g_assert_cmpint(export_status(no_hook_cfg, &f, &err), ==, 1);
    g_test_message("%s", err);
    g_assert_nonnull(strstr(err, "lamina export: cannot export to ONNX: no ONNX equivalent for "
                                 "layers 'fc' (test_double), 'rec' (test_triple)"));
    g_assert_false(g_file_test(f.onnx, G_FILE_TEST_EXISTS));
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(export_status(no_stats_cfg, &f, &err), ==, 1);
    g_test_message("%s", err);
    g_assert_nonnull(strstr(err, "cannot export layer 'bn' (batch_norm) to ONNX: "
                                 "track_running_stats = false"));
    g_assert_false(g_file_test(f.onnx, G_FILE_TEST_EXISTS));
    files_clear(&f);
}

static void test_bad_args(void)
{
    Files f;
    files_init(&f);
    g_autofree char *out = NULL, *e1 = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL;
    g_assert_cmpint(
        e2e_run_lamina(&out, &e1, "export", f.ckpt, "--format", "tflite", "--output", f.onnx, NULL),
        ==, 2);
    g_assert_nonnull(strstr(e1, "unknown --format 'tflite'; the only format is onnx"));
    g_clear_pointer(&out, g_free);
    g_assert_cmpint(e2e_run_lamina(&out, &e2, "export", f.ckpt, NULL), ==, 2);
    g_assert_nonnull(strstr(e2, "expected CHECKPOINT and --output FILE"));
    g_clear_pointer(&out, g_free);
    g_assert_cmpint(e2e_run_lamina(&out, &e3, "export", f.ckpt, "--output", f.onnx, NULL), ==, 1);
    g_test_message("%s", e3);
    g_assert_nonnull(strstr(e3, "lamina export: "));
    g_assert_nonnull(strstr(e3, f.ckpt));
    g_clear_pointer(&out, g_free);
    /* An output directory that does not exist: the write fails, naming the file. */
    save_checkpoint(tiny_cfg, &f);
    g_autofree char *missing = g_build_filename(f.dir, "no-such-dir", "m.onnx", NULL);
    g_assert_cmpint(e2e_run_lamina(&out, &e4, "export", f.ckpt, "--output", missing, NULL), ==, 1);
    g_test_message("%s", e4);
    g_assert_nonnull(strstr(e4, "lamina export: "));
    g_assert_nonnull(strstr(e4, "m.onnx"));
    files_clear(&f);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    LmnBackend *no_vulkan = NULL;
    e2e_open_backends(FALSE, &registry, &cpu, &no_vulkan);
    g_autoptr(GError) error = NULL;
    g_autofree char *plugin = g_build_filename(g_getenv("LMN_TEST_EXPORT_PLUGIN_DIR"),
                                               "lamina-test-export-layers.so", NULL);
    g_assert_true(lmn_registry_load_file(registry, plugin, &error));
    g_assert_no_error(error);
    g_test_add_func("/export/onnx/mlp", test_mlp);
    g_test_add_func("/export/onnx/cnn", test_cnn);
    g_test_add_func("/export/onnx/spatial", test_spatial);
    g_test_add_func("/export/onnx/residual", test_residual);
    g_test_add_func("/export/onnx/elementwise", test_elementwise);
    g_test_add_func("/export/onnx/embedding", test_embedding);
    g_test_add_func("/export/onnx/recurrent", test_recurrent);
    g_test_add_func("/export/onnx/dropped-loss", test_dropped_loss);
    g_test_add_func("/export/onnx/no-equivalent", test_no_equivalent);
    g_test_add_func("/export/onnx/bad-args", test_bad_args);
    int status = g_test_run();
    lmn_backend_unref(cpu);
    lmn_registry_free(registry);
    return status;
}
