/* Lamina — additive Gaussian noise: y = x + std * n, n ~ N(0, 1), in training only (Keras'
 * GaussianNoise; PyTorch has no module for it); the identity in evaluation.
 *
 * The noise comes from lmn_op_random_normal keyed by the run's seed and the same stream formula
 * as dropout (dropout.c): the layer's index in bits 0-31, LMN_STREAM_LAYER in bits 32-39 and the
 * optimizer step in bits 40-63, so every step draws fresh noise, identically on every backend,
 * and a resumed run redraws what it would have drawn.  The noise does not depend on x, so
 * dx = dy.
 */
#include <math.h>

#include <lamina/lamina.h>

enum { SAVED_NOISE = 0 };

#define NOISE_STEP_SHIFT 40
#define NOISE_STEP_MASK ((G_GUINT64_CONSTANT(1) << (64 - NOISE_STEP_SHIFT)) - 1)

static gboolean noise_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                            LmnTensorInfo *output, GError **error)
{
    if (inputs[0].dtype != LMN_DTYPE_F32) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (gaussian_noise): its input is %s, but gaussian_noise takes f32 "
                    "values",
                    lmn_layer_get_name(layer), lmn_dtype_name(inputs[0].dtype));
        return FALSE;
    }
    float *std = g_new(float, 1);
    *std = (float) lmn_params_get_float(lmn_layer_get_params(layer), "std");
    lmn_layer_set_private(layer, std, g_free);
    lmn_layer_add_saved(layer, "noise", &inputs[0].shape, LMN_DTYPE_F32, TRUE);
    *output = inputs[0];
    return TRUE;
}

static void noise_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const float *std = lmn_layer_get_private(layer);
    if (!io->training || *std == 0.0f) {
        lmn_op_copy(io->output, io->inputs[0]);
        return;
    }
    LmnTensor *noise = lmn_layer_get_saved(layer, SAVED_NOISE);
    guint64 stream = LMN_STREAM(LMN_STREAM_LAYER, lmn_layer_get_index(layer)) |
                     ((io->step & NOISE_STEP_MASK) << NOISE_STEP_SHIFT);
    lmn_op_random_normal(noise, 0.0f, *std, io->seed, stream);
    lmn_op_binary(LMN_BINARY_ADD, io->inputs[0], noise, io->output);
}

static void noise_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    if (io->input_grads[0] != NULL)
        lmn_op_copy(io->input_grads[0], io->output_grad);
}

static const LmnParamSpec noise_params[] = {
    LMN_PARAM_SPEC_FLOAT("std", NULL, 0, INFINITY, LMN_PARAM_FLAG_REQUIRED,
                         "standard deviation of the noise added in training"),
    LMN_PARAM_SPEC_END,
};

/* The identity in evaluation: no node, its readers read its input. */
static gboolean noise_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                             const char *output, GError **error)
{
    lmn_export_forward_input(ex, 0);
    return TRUE;
}

static const LmnLayerVTable noise_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .min_inputs = 1,
    .max_inputs = 1,
    .build = noise_build,
    .forward = noise_forward,
    .backward = noise_backward,
    .export_onnx = noise_export,
};

static const LmnFeatureDesc noise_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "gaussian_noise",
                "adds N(0, std^2) noise in training (a regulariser); identity in evaluation",
                noise_params, &noise_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.noise", LMN_VERSION_STRING, "MIT", "Gaussian noise layer",
                           noise_features)
