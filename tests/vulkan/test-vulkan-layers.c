/* Layers on the Vulkan backend: a finite-difference gradient check (gradcheck.h) of every
 * registered layer type on lavapipe, and each layer's forward output on Vulkan against the CPU
 * backend's for the same parameters, inputs, seed and step (so dropout masks must be identical).
 *
 * The whole program is skipped (exit 77) when no Vulkan device named "lavapipe" (or the one
 * LMN_VK_TEST_DEVICE names, see vk-test-setup.h) can be opened.
 * A layer whose ops the backend does not implement yet (LMN_BACKEND_ERROR_UNSUPPORTED) is
 * skipped with the backend's message, which names the op.  Shapes are small and at most
 * MAX_ELEMENTS elements per tensor are differentiated, because every finite difference is two
 * forward passes with a readback each.
 */
#include <lamina/lamina.h>

#include "vk-test-setup.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* As in tests/layers: a correct layer shows worst relative errors of 1e-5 to 5e-3 in float32, a
 * wrong gradient 0.1 or more. */
#define GRAD_TOLERANCE 1e-2
#define MAX_ELEMENTS 64
#define MAX_INPUTS 3

static LmnRegistry *registry;
static LmnBackend *cpu;
static LmnBackend *vk;
/* The recurrent cases' backend: with VK_LAYER_KHRONOS_validation where it is installed (and not
 * under a sanitizer), so any validation error fails their synchronisation; else vk. */
static LmnBackend *vk_recurrent;
static gboolean recurrent_validating;

#define VALIDATION_LAYER_JSON LMN_VK_TEST_VALIDATION_LAYER_JSON

typedef struct {
    const char *name;   /* test path component */
    const char *type;   /* registered layer type */
    const char *params; /* "key=value;key=value" */
    guint n_inputs;
    LmnTensorInfo inputs[MAX_INPUTS];
    gint64 batch;
    gboolean eval;      /* run in evaluation mode (default: training) */
    double value_scale; /* 0 = the checker's default */
    double step;        /* 0 = the checker's default */
    gint64 num_classes; /* range of i32 inputs; 0 = the checker's default */
    guint n_tensors;    /* gradient results expected */
    gboolean fallback;  /* a plugin kernel without SPIR-V: the backend warns and runs its C
                           implementation on host copies (DESIGN §3) */
} Case;

/* One line per macro and per case reads better than clang-format's layout of them. */
/* clang-format off */
#define SHAPE(...) {.ndim = G_N_ELEMENTS(((gint64[]){__VA_ARGS__})), .dims = {__VA_ARGS__}}
#define F32(...) {.shape = SHAPE(__VA_ARGS__), .dtype = LMN_DTYPE_F32}
#define I32(...) {.shape = SHAPE(__VA_ARGS__), .dtype = LMN_DTYPE_I32}
#define LABELS {.shape = {.ndim = 0}, .dtype = LMN_DTYPE_I32}

static const Case cases[] = {
    {"dense", "dense", "units=4", 1, {F32(5)}, 3, .n_tensors = 3},
    {"dense-nobias", "dense", "units=3;bias=false", 1, {F32(4)}, 2, .n_tensors = 2},
    {"flatten", "flatten", "", 1, {F32(2, 3, 2)}, 2, .n_tensors = 1},
    {"relu", "relu", "", 1, {F32(2, 3)}, 2, .n_tensors = 1},
    {"sigmoid", "sigmoid", "", 1, {F32(2, 3)}, 2, .n_tensors = 1},
    {"tanh", "tanh", "", 1, {F32(2, 3)}, 2, .n_tensors = 1},
    {"leaky_relu", "leaky_relu", "negative_slope=0.2", 1, {F32(7)}, 2, .n_tensors = 1},
    {"elu", "elu", "alpha=0.5", 1, {F32(7)}, 2, .n_tensors = 1},
    {"softplus", "softplus", "beta=2", 1, {F32(7)}, 2, .n_tensors = 1},
    {"gelu", "gelu", "", 1, {F32(7)}, 2, .n_tensors = 1},
    {"softmax", "softmax", "", 1, {F32(2, 5)}, 2, .n_tensors = 1},
    {"add", "add", "", 2, {F32(2, 3), F32(2, 3)}, 2, .n_tensors = 2},
    {"add-3", "add", "", 3, {F32(5), F32(5), F32(5)}, 2, .n_tensors = 3},
    {"concat", "concat", "axis=1", 2, {F32(2, 3), F32(2, 2)}, 2, .n_tensors = 2},
    {"reshape", "reshape", "shape=3, -1", 1, {F32(2, 6)}, 2, .n_tensors = 1},
    {"embedding", "embedding", "num_embeddings=6;embedding_dim=4", 1, {I32(5)}, 2,
     .num_classes = 6, .n_tensors = 1},
    {"softmax_cross_entropy", "softmax_cross_entropy", "", 2, {F32(5), LABELS}, 3,
     .n_tensors = 1},
    {"softmax_cross_entropy-smoothing", "softmax_cross_entropy", "label_smoothing=0.1", 2,
     {F32(4), LABELS}, 3, .n_tensors = 1},
    {"mse", "mse", "", 2, {F32(4), F32(4)}, 3, .n_tensors = 2},
    {"bce", "binary_cross_entropy_with_logits", "", 2, {F32(6), F32(6)}, 3, .n_tensors = 2},
    {"dropout", "dropout", "p=0.3", 1, {F32(2, 3, 4)}, 3, .n_tensors = 1},
    {"dropout-eval", "dropout", "p=0.5", 1, {F32(9)}, 2, .eval = TRUE, .n_tensors = 1},
    /* Inputs and weights up to 1 over H + F terms saturate the gates; 0.5 keeps them live. */
    /* The recurrent kernels ship SPIR-V: no fallback warning (fatal here), see test_recurrent. */
    {"rnn", "rnn", "hidden_size=3;return_sequences=true", 1, {F32(3, 4)}, 2,
     .value_scale = 0.5, .n_tensors = 5},
    {"lstm", "lstm", "hidden_size=3", 1, {F32(3, 4)}, 2,
     .value_scale = 0.5, .n_tensors = 5},
    {"gru", "gru", "hidden_size=3;return_sequences=true", 1, {F32(3, 4)}, 2,
     .value_scale = 0.5, .n_tensors = 5},
    {"conv2d", "conv2d", "out_channels=3;kernel_size=3;padding=1", 1, {F32(2, 5, 5)}, 2,
     .n_tensors = 3},
    {"conv2d-strided", "conv2d", "out_channels=2;kernel_size=3;stride=2;bias=false", 1,
     {F32(2, 7, 6)}, 2, .n_tensors = 2},
    /* A narrow step keeps the perturbation from reordering values inside a window. */
    {"maxpool2d", "maxpool2d", "kernel_size=2", 1, {F32(2, 6, 5)}, 2, .step = 1e-3,
     .n_tensors = 1},
    {"avgpool2d", "avgpool2d", "kernel_size=3;stride=2;padding=1", 1, {F32(2, 7, 6)}, 2,
     .n_tensors = 1},
    {"global_avgpool", "global_avgpool", "", 1, {F32(3, 4, 5)}, 2, .n_tensors = 1},
    {"batch_norm", "batch_norm", "", 1, {F32(3, 4, 3)}, 2, .n_tensors = 3},
    {"batch_norm-eval", "batch_norm", "eps=0.01", 1, {F32(3, 2, 3)}, 2, .eval = TRUE,
     .n_tensors = 3},
    /* Layers on the ABI 1.3 ops. */
    {"layer_norm", "layer_norm", "", 1, {F32(3, 5)}, 2, .n_tensors = 3},
    {"layer_norm-2d-plain", "layer_norm", "normalized_dims=2;elementwise_affine=false", 1,
     {F32(2, 3, 4)}, 2, .n_tensors = 1},
    {"group_norm", "group_norm", "groups=2", 1, {F32(4, 3, 2)}, 2, .n_tensors = 3},
    {"instance_norm", "instance_norm", "affine=true", 1, {F32(3, 5)}, 2, .n_tensors = 3},
    {"multiply", "multiply", "", 2, {F32(3, 1, 4), F32(3, 2, 1)}, 2, .n_tensors = 2},
    {"subtract", "subtract", "", 2, {F32(1, 4), F32(3, 4)}, 2, .n_tensors = 2},
    {"scale", "scale", "per_channel=true", 1, {F32(3, 4)}, 2, .n_tensors = 2},
    {"mean", "mean", "axis=0;keepdim=true", 1, {F32(3, 4)}, 2, .n_tensors = 1},
    {"sum", "sum", "axis=-1", 1, {F32(3, 4)}, 2, .n_tensors = 1},
    {"silu", "silu", "", 1, {F32(7)}, 2, .n_tensors = 1},
    {"mish", "mish", "", 1, {F32(7)}, 2, .n_tensors = 1},
    {"hardtanh", "hardtanh", "min_val=-2;max_val=2", 1, {F32(7)}, 2, .n_tensors = 1},
    {"log_softmax", "log_softmax", "", 1, {F32(2, 5)}, 2, .n_tensors = 1},
    {"conv_transpose2d", "conv_transpose2d", "out_channels=3;kernel_size=3", 1, {F32(2, 3, 4)},
     2, .n_tensors = 3},
    {"conv_transpose2d-strided", "conv_transpose2d",
     "out_channels=4;kernel_size=3;stride=2;padding=1;output_padding=1;groups=2;bias=false", 1,
     {F32(2, 3, 3)}, 2, .n_tensors = 2},
    {"conv_transpose2d-1x1", "conv_transpose2d", "out_channels=2;kernel_size=1", 1,
     {F32(3, 2, 3)}, 2, .n_tensors = 3},
    {"dense-3d", "dense", "units=3", 1, {F32(2, 2, 4)}, 2, .n_tensors = 3},
    {"pad-constant", "pad", "padding=1, 2, 0, 1;value=0.5", 1, {F32(2, 3, 3)}, 2, .n_tensors = 1},
    {"pad-reflect", "pad", "padding=2, 1, 1, 2;mode=reflect", 1, {F32(2, 3, 4)}, 2,
     .n_tensors = 1},
    {"pad-replicate", "pad", "padding=2, 0, 1, 1;mode=replicate", 1, {F32(1, 3, 3)}, 2,
     .n_tensors = 1},
    {"crop", "crop", "cropping=1, 0, 2, 1", 1, {F32(2, 5, 4)}, 2, .n_tensors = 1},
    {"slice", "slice", "axis=1;start=1;end=4", 1, {F32(2, 5, 3)}, 2, .n_tensors = 1},
    {"gaussian_noise", "gaussian_noise", "std=0.3", 1, {F32(2, 3, 4)}, 3, .n_tensors = 1},
    {"dropout2d", "dropout2d", "p=0.4", 1, {F32(5, 2, 3)}, 3, .n_tensors = 1},
    {"prelu", "prelu", "", 1, {F32(3, 2, 4)}, 2, .n_tensors = 2},
    {"prelu-channels", "prelu", "num_parameters=3;init=-0.2", 1, {F32(3, 2, 4)}, 2,
     .n_tensors = 2},
    /* The LRN kernels ship SPIR-V: no fallback. */
    {"local_response_norm", "local_response_norm", "size=3;alpha=0.5;k=2", 1, {F32(5, 2, 3)},
     2, .n_tensors = 1},
    {"local_response_norm-even", "local_response_norm", "size=4;alpha=0.3;beta=0.5", 1,
     {F32(6, 4)}, 2, .n_tensors = 1},
    {"upsample-nearest", "upsample", "scale_factor=2, 1.5", 1, {F32(2, 3, 4)}, 2,
     .n_tensors = 1},
    {"upsample-bilinear", "upsample", "mode=bilinear;scale_factor=2", 1, {F32(2, 3, 3)}, 2,
     .n_tensors = 1},
    {"upsample-bilinear-align", "upsample", "mode=bilinear;size=5, 3;align_corners=true", 1,
     {F32(2, 3, 4)}, 2, .n_tensors = 1},
};
/* clang-format on */

static LmnParams *parse_params(const char *type, const char *text)
{
    g_autoptr(GError) error = NULL;
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_LAYER, type, &error);
    g_assert_no_error(error);
    g_auto(GStrv) items = g_strsplit(text, ";", -1);
    g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) values = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; items[i] != NULL; i++) {
        if (*items[i] == '\0')
            continue;
        const char *eq = strchr(items[i], '=');
        g_assert_nonnull(eq);
        g_ptr_array_add(keys, g_strndup(items[i], (gsize) (eq - items[i])));
        g_ptr_array_add(values, g_strdup(eq + 1));
    }
    g_ptr_array_add(keys, NULL);
    g_ptr_array_add(values, NULL);
    LmnParams *p = lmn_registry_validate_params(f, (const char *const *) keys->pdata,
                                                (const char *const *) values->pdata,
                                                "test-vulkan-layers", &error);
    g_assert_no_error(error);
    return p;
}

/* The fallback's one warning per kernel is expected: it must not abort the test (g_test_init
 * makes warnings fatal), so it is made non-fatal around such a layer. */
static void expect_fallback(const Case *c, gboolean on)
{
    if (!c->fallback)
        return;
    g_log_set_always_fatal(on ? G_LOG_FATAL_MASK
                              : G_LOG_FATAL_MASK | G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL);
}

/* Skips the test when @error says the backend lacks an op; returns whether it did. */
static gboolean skip_if_unsupported(const GError *error)
{
    if (error == NULL || !g_error_matches(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED))
        return FALSE;
    g_autofree char *msg = g_strdup_printf("not on this Vulkan backend yet: %s", error->message);
    g_test_skip(msg);
    return TRUE;
}

static void test_gradcheck(gconstpointer data)
{
    const Case *c = data;
    LmnParams *p = parse_params(c->type, c->params);
    LmnGradcheckOptions o;
    lmn_gradcheck_options_init(&o);
    o.batch = c->batch;
    o.seed = 4000 + (guint64) (c - cases);
    o.training = !c->eval;
    o.max_elements = MAX_ELEMENTS;
    if (c->value_scale > 0)
        o.value_scale = c->value_scale;
    if (c->step > 0)
        o.step = c->step;
    o.num_classes = c->num_classes;
    g_autoptr(GError) error = NULL;
    expect_fallback(c, TRUE);
    g_autoptr(GPtrArray) r =
        lmn_gradcheck_layer(registry, vk, c->type, p, c->n_inputs, c->inputs, &o, &error);
    expect_fallback(c, FALSE);
    lmn_params_unref(p);
    if (skip_if_unsupported(error))
        return;
    g_assert_no_error(error);
    g_assert_nonnull(r);
    g_autofree char *table = lmn_gradcheck_format(r);
    g_test_message("%s (%s) on Vulkan, batch %" G_GINT64_FORMAT ":\n%s", c->type, c->params,
                   c->batch, table);
    g_assert_cmpuint(r->len, ==, c->n_tensors);
    for (guint i = 0; i < r->len; i++) {
        const LmnGradcheckResult *x = g_ptr_array_index(r, i);
        g_assert_cmpint(x->n_checked, >, 0);
        /* An identically zero gradient would pass trivially; every checked one is not. */
        g_assert_cmpfloat(x->scale, >, 1e-6);
        if (x->max_rel_error >= GRAD_TOLERANCE)
            g_error("%s %s: relative error %g at element %" G_GINT64_FORMAT
                    " (analytic %g, numeric %g)",
                    c->name, x->name, x->max_rel_error, x->worst_element, x->worst_analytic,
                    x->worst_numeric);
    }
}

/* ---- forward: Vulkan against the CPU ---- */

typedef struct {
    LmnLayer *layer;
    LmnTensor *inputs[MAX_INPUTS];
    LmnTensor *output;
} Side;

static void side_clear(Side *s, guint n_inputs)
{
    for (guint i = 0; i < n_inputs; i++)
        g_clear_pointer(&s->inputs[i], lmn_tensor_unref);
    g_clear_pointer(&s->output, lmn_tensor_unref);
    g_clear_pointer(&s->layer, lmn_layer_free);
}

/* Builds the layer of @c on @b with parameters from the same seed and the given input data;
 * returns FALSE (test skipped) when the backend lacks an op. */
static gboolean side_forward(Side *s, LmnBackend *b, const Case *c, LmnParams *p,
                             void *const *host_inputs, guint64 seed, guint64 step)
{
    g_autoptr(GError) error = NULL;
    memset(s, 0, sizeof *s);
    s->layer = lmn_layer_new(registry, c->type, c->name, 3, p, b, c->n_inputs, c->inputs, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_layer_init_params(s->layer, registry, 17, 0, NULL, NULL, NULL, &error));
    g_assert_no_error(error);
    g_assert_true(lmn_layer_prepare_batch(s->layer, c->batch, &error));
    g_assert_no_error(error);
    for (guint i = 0; i < c->n_inputs; i++) {
        LmnShape shape = lmn_shape_prepend(&c->inputs[i].shape, c->batch);
        s->inputs[i] = lmn_tensor_new(b, c->inputs[i].dtype, &shape, &error);
        g_assert_no_error(error);
        g_assert_true(lmn_tensor_write(s->inputs[i], host_inputs[i],
                                       lmn_tensor_nbytes(s->inputs[i]), &error));
    }
    const LmnTensorInfo *oi = lmn_layer_get_output_info(s->layer);
    LmnShape oshape =
        lmn_layer_is_loss(s->layer) ? lmn_shape_make(0) : lmn_shape_prepend(&oi->shape, c->batch);
    s->output = lmn_tensor_new(b, oi->dtype, &oshape, &error);
    g_assert_no_error(error);
    LmnLayerIO io = {
        .struct_size = sizeof(LmnLayerIO),
        .n_inputs = c->n_inputs,
        .inputs = s->inputs,
        .output = s->output,
        .batch = c->batch,
        .training = !c->eval,
        .step = step,
        .seed = seed,
    };
    lmn_layer_forward(s->layer, &io);
    /* A backend records an op's failure and reports it at the next synchronisation. */
    if (!lmn_backend_synchronize(b, &error)) {
        if (skip_if_unsupported(error))
            return FALSE;
        g_assert_no_error(error);
    }
    return TRUE;
}

static float *read_all(LmnTensor *t)
{
    g_autoptr(GError) error = NULL;
    float *h = g_malloc(MAX(lmn_tensor_nbytes(t), 4));
    g_assert_true(lmn_tensor_read(t, h, lmn_tensor_nbytes(t), &error));
    g_assert_no_error(error);
    return h;
}

static void test_forward(gconstpointer data)
{
    const Case *c = data;
    LmnParams *p = parse_params(c->type, c->params);
    GRand *rng = g_rand_new_with_seed(7000 + (guint32) (c - cases));
    void *host[MAX_INPUTS] = {NULL};
    for (guint i = 0; i < c->n_inputs; i++) {
        gint64 n = c->batch * lmn_shape_numel(&c->inputs[i].shape);
        host[i] = g_malloc(MAX(n, 1) * 4);
        for (gint64 k = 0; k < n; k++) {
            if (c->inputs[i].dtype == LMN_DTYPE_I32) {
                /* Class labels index the first input's last dimension; embeddings index rows. */
                gint64 range = c->num_classes > 0
                                   ? c->num_classes
                                   : c->inputs[0].shape.dims[c->inputs[0].shape.ndim - 1];
                ((gint32 *) host[i])[k] = (gint32) g_rand_int_range(rng, 0, (gint32) range);
            } else {
                ((float *) host[i])[k] = (float) g_rand_double_range(rng, -2, 2);
            }
        }
    }
    /* Two steps: a dropout mask must change with the step and agree for each. */
    for (guint64 step = 5; step <= 6; step++) {
        Side sc, sv;
        g_assert_true(side_forward(&sc, cpu, c, p, host, 99, step));
        expect_fallback(c, TRUE);
        gboolean ran = side_forward(&sv, vk, c, p, host, 99, step);
        expect_fallback(c, FALSE);
        if (!ran) {
            side_clear(&sc, c->n_inputs);
            side_clear(&sv, c->n_inputs);
            break;
        }
        gint64 n = lmn_tensor_numel(sc.output);
        g_assert_cmpint(lmn_tensor_numel(sv.output), ==, n);
        g_autofree float *a = read_all(sc.output);
        g_autofree float *v = read_all(sv.output);
        double scale = 0;
        for (gint64 k = 0; k < n; k++)
            scale = MAX(scale, fabs(a[k]));
        g_assert_cmpfloat(scale, >, 0);
        for (gint64 k = 0; k < n; k++) {
            g_assert_true(isfinite(v[k]));
            /* Summation order differs between GEMM kernels: agreement to float32 accuracy. */
            if (fabs(a[k] - v[k]) > 1e-5 * MAX(scale, 1.0))
                g_error("%s step %" G_GUINT64_FORMAT ": element %" G_GINT64_FORMAT
                        ": cpu %.9g, vulkan %.9g",
                        c->name, step, k, a[k], v[k]);
            /* Dropout: the same units are dropped. */
            if ((a[k] == 0.0f) != (v[k] == 0.0f))
                g_error("%s step %" G_GUINT64_FORMAT ": element %" G_GINT64_FORMAT
                        " is zero on one backend only (cpu %g, vulkan %g)",
                        c->name, step, k, a[k], v[k]);
        }
        if (g_str_equal(c->type, "dropout") && !c->eval) {
            gint64 zeros = 0;
            for (gint64 k = 0; k < n; k++)
                zeros += a[k] == 0.0f;
            /* p = 0.3 of 72 elements: a mask that drops nothing would make the check empty. */
            g_assert_cmpint(zeros, >, 0);
            g_assert_cmpint(zeros, <, n);
        }
        side_clear(&sc, c->n_inputs);
        side_clear(&sv, c->n_inputs);
    }
    for (guint i = 0; i < c->n_inputs; i++)
        g_free(host[i]);
    g_rand_free(rng);
    lmn_params_unref(p);
}

/* ---- recurrent layers: forward and backward against the CPU ---- */

/*
 * rnn, lstm and gru run their gate math as plugin kernels with SPIR-V variants.  Each case runs
 * one forward and one backward on both backends with the same parameters, input and output
 * gradient, and compares the output, the input gradient and every parameter gradient.  Shapes
 * cover one step, one sample, hidden sizes that are not multiples of 4, both output modes, no
 * bias, and more indices (N * H) than one workgroup holds.  g_test_init makes warnings fatal, so
 * the backend's CPU-fallback warning would fail the case; the log writer below also counts it.
 */
typedef struct {
    const char *name;
    const char *type;
    gint64 steps, features, hidden, batch;
    gboolean sequences, bias;
} RecurrentCase;

/* clang-format off */
static const RecurrentCase recurrent_cases[] = {
    {"rnn-t1-n1", "rnn", 1, 2, 3, 1, FALSE, TRUE},
    {"rnn-seq", "rnn", 9, 3, 5, 4, TRUE, TRUE},
    {"rnn-nobias", "rnn", 4, 2, 6, 2, FALSE, FALSE},
    {"lstm-t1-n1", "lstm", 1, 3, 3, 1, FALSE, TRUE},
    {"lstm-t1-seq", "lstm", 1, 2, 5, 3, TRUE, TRUE},
    {"lstm-seq", "lstm", 7, 3, 6, 5, TRUE, TRUE},
    {"lstm-n1", "lstm", 6, 2, 7, 1, FALSE, TRUE},
    {"lstm-nobias", "lstm", 5, 4, 5, 3, FALSE, FALSE},
    {"lstm-wide", "lstm", 3, 5, 10, 33, TRUE, TRUE},
    {"gru-t1-n1", "gru", 1, 2, 3, 1, TRUE, TRUE},
    {"gru-seq", "gru", 6, 3, 7, 4, TRUE, TRUE},
    {"gru-last", "gru", 5, 2, 5, 3, FALSE, TRUE},
    {"gru-nobias-wide", "gru", 3, 4, 9, 30, FALSE, FALSE},
};
/* clang-format on */

static gint n_fallback_warnings;

static GLogWriterOutput counting_writer(GLogLevelFlags level, const GLogField *fields,
                                        gsize n_fields, gpointer data)
{
    for (gsize i = 0; i < n_fields; i++)
        if (g_str_equal(fields[i].key, "MESSAGE") && fields[i].length < 0 &&
            strstr(fields[i].value, "no usable SPIR-V") != NULL)
            g_atomic_int_inc(&n_fallback_warnings);
    return g_log_writer_default(level, fields, n_fields, data);
}

typedef struct {
    LmnLayer *layer;
    LmnTensor *x, *y, *dy, *dx;
} RecurrentSide;

static LmnTensor *tensor_with(LmnBackend *b, const LmnShape *shape, const float *data)
{
    g_autoptr(GError) error = NULL;
    LmnTensor *t = lmn_tensor_new(b, LMN_DTYPE_F32, shape, &error);
    g_assert_no_error(error);
    if (data != NULL) {
        g_assert_true(lmn_tensor_write(t, data, lmn_tensor_nbytes(t), &error));
        g_assert_no_error(error);
    }
    return t;
}

/* Builds the layer on @b, copies @params_from's parameters into it (or initialises them when
 * NULL), and runs forward and backward. */
static void recurrent_run(RecurrentSide *s, LmnBackend *b, const RecurrentCase *rc, LmnParams *p,
                          LmnLayer *params_from, const float *x, const float *dy)
{
    g_autoptr(GError) error = NULL;
    LmnTensorInfo in = {.shape = lmn_shape_make(2, rc->steps, rc->features),
                        .dtype = LMN_DTYPE_F32};
    s->layer = lmn_layer_new(registry, rc->type, rc->name, 1, p, b, 1, &in, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_layer_init_params(s->layer, registry, 23, 0, NULL, NULL, NULL, &error));
    g_assert_no_error(error);
    if (params_from != NULL) {
        for (guint i = 0; i < lmn_layer_get_n_params(s->layer); i++) {
            g_autofree float *v = read_all(lmn_layer_get_param(params_from, i));
            LmnTensor *t = lmn_layer_get_param(s->layer, i);
            g_assert_true(lmn_tensor_write(t, v, lmn_tensor_nbytes(t), &error));
            g_assert_no_error(error);
        }
    }
    g_assert_true(lmn_layer_prepare_batch(s->layer, rc->batch, &error));
    g_assert_no_error(error);
    LmnShape xs = lmn_shape_make(3, rc->batch, rc->steps, rc->features);
    LmnShape ys = rc->sequences ? lmn_shape_make(3, rc->batch, rc->steps, rc->hidden)
                                : lmn_shape_make(2, rc->batch, rc->hidden);
    s->x = tensor_with(b, &xs, x);
    s->y = tensor_with(b, &ys, NULL);
    s->dy = tensor_with(b, &ys, dy);
    s->dx = tensor_with(b, &xs, NULL);
    LmnTensor *inputs[] = {s->x};
    LmnTensor *input_grads[] = {s->dx};
    LmnLayerIO io = {
        .struct_size = sizeof(LmnLayerIO),
        .n_inputs = 1,
        .inputs = inputs,
        .output = s->y,
        .output_grad = s->dy,
        .input_grads = input_grads,
        .batch = rc->batch,
        .training = TRUE,
        .step = 1,
        .seed = 5,
    };
    lmn_layer_forward(s->layer, &io);
    lmn_layer_backward(s->layer, &io);
    lmn_backend_synchronize(b, &error);
    g_assert_no_error(error);
}

static void recurrent_side_clear(RecurrentSide *s)
{
    g_clear_pointer(&s->x, lmn_tensor_unref);
    g_clear_pointer(&s->y, lmn_tensor_unref);
    g_clear_pointer(&s->dy, lmn_tensor_unref);
    g_clear_pointer(&s->dx, lmn_tensor_unref);
    g_clear_pointer(&s->layer, lmn_layer_free);
}

/* Asserts |cpu - vk| <= tol * max(max |cpu|, 1) over the tensor; returns the largest difference
 * relative to that scale.  An all-zero tensor would make the comparison empty. */
static double compare(const char *what, LmnTensor *tc, LmnTensor *tv, double tol)
{
    gint64 n = lmn_tensor_numel(tc);
    g_assert_cmpint(lmn_tensor_numel(tv), ==, n);
    g_autofree float *a = read_all(tc);
    g_autofree float *v = read_all(tv);
    double scale = 0, worst = 0;
    for (gint64 k = 0; k < n; k++)
        scale = MAX(scale, fabs(a[k]));
    if (scale <= 1e-6)
        g_error("%s: the CPU result is all zero, so the comparison would prove nothing", what);
    scale = MAX(scale, 1.0);
    for (gint64 k = 0; k < n; k++) {
        if (!isfinite(v[k]) || fabs(a[k] - v[k]) > tol * scale)
            g_error("%s: element %" G_GINT64_FORMAT ": cpu %.9g, vulkan %.9g", what, k, a[k], v[k]);
        worst = MAX(worst, fabs(a[k] - v[k]) / scale);
    }
    return worst;
}

static void test_recurrent(gconstpointer data)
{
    const RecurrentCase *rc = data;
    g_autofree char *text =
        g_strdup_printf("hidden_size=%" G_GINT64_FORMAT ";return_sequences=%s;bias=%s", rc->hidden,
                        rc->sequences ? "true" : "false", rc->bias ? "true" : "false");
    LmnParams *p = parse_params(rc->type, text);
    GRand *rng = g_rand_new_with_seed(9100 + (guint32) (rc - recurrent_cases));
    const gint64 nx = rc->batch * rc->steps * rc->features;
    const gint64 ny = rc->batch * (rc->sequences ? rc->steps : 1) * rc->hidden;
    g_autofree float *x = g_new(float, nx);
    g_autofree float *dy = g_new(float, ny);
    for (gint64 k = 0; k < nx; k++)
        x[k] = (float) g_rand_double_range(rng, -2, 2);
    for (gint64 k = 0; k < ny; k++)
        dy[k] = (float) g_rand_double_range(rng, -1, 1);
    g_rand_free(rng);

    const gint before = g_atomic_int_get(&n_fallback_warnings);
    RecurrentSide sc, sv;
    memset(&sc, 0, sizeof sc);
    memset(&sv, 0, sizeof sv);
    recurrent_run(&sc, cpu, rc, p, NULL, x, dy);
    recurrent_run(&sv, vk_recurrent, rc, p, sc.layer, x, dy);
    g_assert_cmpint(g_atomic_int_get(&n_fallback_warnings), ==, before);

    /* Forward: float32 accuracy (GEMM summation orders differ, exp may differ by a few ulps).
     * Gradients sum over steps and samples in different orders too, hence a little more. */
    double worst_y = compare("output", sc.y, sv.y, 1e-5);
    double worst_g = compare("input gradient", sc.dx, sv.dx, 2e-5);
    g_assert_cmpuint(lmn_layer_get_n_params(sc.layer), ==, rc->bias ? 4 : 2);
    for (guint i = 0; i < lmn_layer_get_n_params(sc.layer); i++) {
        g_autofree char *what =
            g_strdup_printf("gradient of %s", lmn_layer_get_param_name(sc.layer, i));
        /* With one step, h_{-1} = 0 gives W_hh an exactly zero gradient on both backends. */
        if (rc->steps == 1 && i == 1) {
            g_autofree float *a = read_all(lmn_layer_get_grad(sc.layer, i));
            g_autofree float *v = read_all(lmn_layer_get_grad(sv.layer, i));
            gint64 n = lmn_tensor_numel(lmn_layer_get_grad(sc.layer, i));
            for (gint64 k = 0; k < n; k++)
                g_assert_true(a[k] == 0.0f && v[k] == 0.0f);
            continue;
        }
        worst_g = MAX(worst_g, compare(what, lmn_layer_get_grad(sc.layer, i),
                                       lmn_layer_get_grad(sv.layer, i), 2e-5));
    }
    g_test_message("%s: max |vk - cpu| / scale: output %.3g, gradients %.3g%s", rc->name, worst_y,
                   worst_g, recurrent_validating ? " (validation layer on)" : "");
    recurrent_side_clear(&sc);
    recurrent_side_clear(&sv);
    lmn_params_unref(p);
}

/* ---- max_unpool2d: in a model, after the maxpool2d it names ---- */

/* Output and input gradient of maxpool2d (kernel 3, stride 3, padding 1) then max_unpool2d on
 * backend @b for input @x [2, 2, 7, 8] and output gradient @r; a standalone layer cannot be
 * checked, since the unpooling reads its pooling layer's argmax.  Returns y and dx. */
static void unpool_run(LmnBackend *b, const float *x, const float *r, float **y, float **dx)
{
    static const char text[] = "[model]\ninput = 2, 7, 8\n"
                               "[layer pool]\ntype = maxpool2d\nkernel_size = 3\npadding = 1\n"
                               "[layer up]\ntype = max_unpool2d\nindices = pool\n"
                               "[optimizer]\ntype = sgd\n[train]\nbackend = cpu\n"
                               "[data]\ntrain = unused.h5:/train\n";
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_data(text, -1, "unpool.ini", &error);
    g_assert_no_error(error);
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    LmnModel *m = lmn_model_new_full(cfg, registry, b, NULL, LMN_MODEL_ALLOW_NO_LOSS, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_set_input_grad(m, TRUE, &error));
    g_assert_true(lmn_model_prepare(m, 2, &error));
    LmnTensor *xt = NULL, *unused = NULL;
    lmn_model_set_batch(m, 2, &xt, &unused);
    g_assert_true(lmn_tensor_write(xt, x, lmn_tensor_nbytes(xt), &error));
    lmn_model_forward(m, TRUE, 0, 1);
    LmnTensor *out = lmn_model_get_output(m);
    LmnTensor *rt = tensor_with(b, &out->shape, r);
    g_assert_true(lmn_model_backward_from(m, rt, 0, 1, &error));
    g_assert_no_error(error);
    *y = read_all(out);
    *dx = read_all(lmn_model_get_input_grad(m));
    lmn_tensor_unref(rt);
    lmn_model_free(m);
    lmn_config_free(cfg);
}

static void test_unpool(void)
{
    const gint64 n = 2 * 2 * 7 * 8;
    g_autofree float *x = g_new(float, n);
    g_autofree float *r = g_new(float, n);
    GRand *rng = g_rand_new_with_seed(77);
    for (gint64 i = 0; i < n; i++) {
        x[i] = (float) g_rand_double_range(rng, -1, 1);
        r[i] = (float) g_rand_double_range(rng, -1, 1);
    }
    g_rand_free(rng);
    float *yc, *dxc, *yv, *dxv;
    gint before = n_fallback_warnings;
    unpool_run(cpu, x, r, &yc, &dxc);
    unpool_run(vk, x, r, &yv, &dxv);
    /* The unpooling's kernel ships SPIR-V: it must not fall back to the CPU. */
    g_assert_cmpint(n_fallback_warnings, ==, before);
    gint64 nonzero = 0;
    for (gint64 i = 0; i < n; i++) {
        g_assert_cmpfloat(yv[i], ==, yc[i]);
        g_assert_cmpfloat(dxv[i], ==, dxc[i]);
        nonzero += dxc[i] != 0.0f;
    }
    g_assert_cmpint(nonzero, >, n / 20); /* one pixel of each 3x3 window */
    g_free(yc);
    g_free(dxc);
    g_free(yv);
    g_free(dxv);
}

static LmnBackend *open_lavapipe(GError **error)
{
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_BACKEND, "vulkan", error);
    if (f == NULL)
        return NULL;
    return lmn_backend_new(registry, "vulkan", NULL, lmn_vk_test_device(), error);
}

/* lavapipe with the validation layer on (the backend's "validation" parameter). */
static LmnBackend *open_lavapipe_validating(GError **error)
{
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_BACKEND, "vulkan", error);
    if (f == NULL)
        return NULL;
    const char *keys[] = {"validation", NULL};
    const char *values[] = {"true", NULL};
    LmnParams *params = lmn_registry_validate_params(f, keys, values, "test-vulkan-layers", error);
    if (params == NULL)
        return NULL;
    LmnBackend *b = lmn_backend_new(registry, "vulkan", params, lmn_vk_test_device(), error);
    lmn_params_unref(params);
    return b;
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    recurrent_validating = lmn_vk_test_setup(&registry, &cpu);
    g_autoptr(GError) error = NULL;
    vk = open_lavapipe(&error);
    if (vk == NULL) {
        printf("1..0 # SKIP no Vulkan device '%s': %s\n", lmn_vk_test_device(), error->message);
        lmn_backend_unref(cpu);
        lmn_registry_free(registry);
        return 77;
    }

    vk_recurrent = recurrent_validating ? open_lavapipe_validating(&error) : lmn_backend_ref(vk);
    g_assert_no_error(error);

    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *gpath = g_strdup_printf("/vulkan/layers/gradcheck/%s", cases[i].name);
        g_autofree char *fpath = g_strdup_printf("/vulkan/layers/forward/%s", cases[i].name);
        g_test_add_data_func(gpath, &cases[i], test_gradcheck);
        g_test_add_data_func(fpath, &cases[i], test_forward);
    }
    g_log_set_writer_func(counting_writer, NULL, NULL);
    for (guint i = 0; i < G_N_ELEMENTS(recurrent_cases); i++) {
        g_autofree char *path =
            g_strdup_printf("/vulkan/layers/recurrent/%s", recurrent_cases[i].name);
        g_test_add_data_func(path, &recurrent_cases[i], test_recurrent);
    }
    g_test_add_func("/vulkan/layers/model/max_unpool2d", test_unpool);
    int rc = g_test_run();
    lmn_backend_unref(vk_recurrent);
    lmn_backend_unref(vk);
    lmn_backend_unref(cpu);
    lmn_registry_free(registry);
    return rc;
}
