/* Lamina — loss layers: softmax_cross_entropy, mse, binary_cross_entropy_with_logits and dice.
 *
 * A loss layer's last input is its target; it outputs one f32 scalar, the mean over the batch
 * (PyTorch's reduction = 'mean', so learning rates transfer), and its backward starts the chain
 * with d(loss)/d(loss) = 1: there is no output_grad.
 */
#include <math.h>

#include <lamina/lamina.h>

#include "mask-losses.h"
#include "xent-pixel.h"

/* ---- softmax_cross_entropy ----
 *
 * Logits [classes] against one label per sample, with neither class weights nor an
 * ignore_index, run on the backend's softmax_xent op; everything else (per-pixel logits
 * [C, d1..dk], class_weight, ignore_index) on the general form of xent-pixel.c, which the
 * layer's private data marks. */

enum { XENT_SAVED_PROBS = LMN_XENT_SAVED_PROBS };

static gboolean xent_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                           LmnTensorInfo *output, GError **error)
{
    const char *name = lmn_layer_get_name(layer);
    if (lmn_xent_pixel_wanted(layer, inputs))
        return lmn_xent_pixel_build(layer, inputs, output, error);
    const LmnShape *logits = &inputs[0].shape;
    if (logits->ndim != 1 || inputs[0].dtype != LMN_DTYPE_F32) {
        g_autofree char *s = lmn_shape_to_string(logits);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (softmax_cross_entropy): its first input must be f32 logits of "
                    "per-sample shape [classes], got %s %s; add a flatten or dense layer before it",
                    name, lmn_dtype_name(inputs[0].dtype), s);
        return FALSE;
    }
    if (inputs[1].shape.ndim != 0 || inputs[1].dtype != LMN_DTYPE_I32) {
        g_autofree char *s = lmn_shape_to_string(&inputs[1].shape);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (softmax_cross_entropy): its target must be one integer class "
                    "label per sample (i32, per-sample shape []), got %s %s",
                    name, lmn_dtype_name(inputs[1].dtype), s);
        return FALSE;
    }
    lmn_layer_add_saved(layer, "probs", logits, LMN_DTYPE_F32, TRUE);
    output->shape = lmn_shape_make(0);
    output->dtype = LMN_DTYPE_F32;
    return TRUE;
}

static float xent_smoothing(LmnLayer *layer)
{
    return (float) lmn_params_get_float(lmn_layer_get_params(layer), "label_smoothing");
}

static void xent_backward(LmnLayer *layer, const LmnLayerIO *io);

/* With input gradients given (LMN_LAYER_FLAG_LOSS_GRAD_IN_FORWARD), the plain loss writes its
 * gradient in the same pass as the probabilities (lmn_op_softmax_xent_grad); the per-pixel,
 * weighted and ignore_index forms run their backward after their forward. */
static void xent_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const gboolean grad = io->input_grads != NULL && io->input_grads[0] != NULL;
    if (lmn_layer_get_private(layer) != NULL) {
        lmn_xent_pixel_forward(layer, io);
        if (grad)
            xent_backward(layer, io);
        return;
    }
    LmnTensor *probs = lmn_layer_get_saved(layer, XENT_SAVED_PROBS);
    if (grad)
        lmn_op_softmax_xent_grad(io->inputs[0], io->inputs[1], probs, io->output,
                                 xent_smoothing(layer), io->input_grads[0],
                                 (float) (1.0 / (double) io->batch));
    else
        lmn_op_softmax_xent(io->inputs[0], io->inputs[1], probs, io->output, xent_smoothing(layer));
}

static void xent_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    if (lmn_layer_get_private(layer) != NULL) {
        lmn_xent_pixel_backward(layer, io);
        return;
    }
    if (io->input_grads[0] != NULL) {
        lmn_op_softmax_xent_backward(lmn_layer_get_saved(layer, XENT_SAVED_PROBS), io->inputs[1],
                                     io->input_grads[0], (float) (1.0 / (double) io->batch),
                                     xent_smoothing(layer));
    }
}

static const LmnParamSpec xent_params[] = {
    LMN_PARAM_SPEC_FLOAT(
        "label_smoothing", "0.0", 0.0, 1.0, LMN_PARAM_FLAG_MAX_EXCLUSIVE,
        "target = (1 - s) * onehot + s / classes, as nn.CrossEntropyLoss(label_smoothing)"),
    LMN_PARAM_SPEC_INT("ignore_index", "-100", G_MININT32, G_MAXINT32, 0,
                       "pixels or samples with this label add neither loss nor gradient, and "
                       "the mean runs over the others (nn.CrossEntropyLoss(ignore_index))"),
    LMN_PARAM_SPEC_FLOAT_LIST("class_weight", NULL, 0, INFINITY, 0,
                              "one weight per class; the mean divides by the summed weights of "
                              "the targets (nn.CrossEntropyLoss(weight); named class_weight "
                              "because weight is the loss's weight in the total)"),
    LMN_PARAM_SPEC_END,
};

/* Inference has no target: the loss becomes its output activation, and the graph outputs the
 * logits and the probabilities (the loss's softmax). */
static gboolean xent_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                            const char *output, GError **error)
{
    const LmnShape *shape = lmn_export_input_shape(ex, 0);
    const char *probs = lmn_export_value_name(ex, layer, "probabilities");
    const char *in[] = {inputs[0], NULL}, *out[] = {probs, NULL};
    /* The classes are axis 1 of [N, C, d1..dk]: the last axis only for [N, C]. */
    const LmnExportAttr attrs[] = {LMN_EXPORT_ATTR_I("axis", 1), LMN_EXPORT_ATTRS_END};
    if (!lmn_export_add_output(ex, "logits", inputs[0], shape, error))
        return FALSE;
    lmn_export_add_node(ex, "Softmax", in, out, attrs);
    return lmn_export_add_output(ex, "probabilities", probs, shape, error);
}

static const LmnLayerVTable xent_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_LOSS | LMN_LAYER_FLAG_LOSS_GRAD_IN_FORWARD,
    .min_inputs = 2,
    .max_inputs = 2,
    .build = xent_build,
    .forward = xent_forward,
    .backward = xent_backward,
    .export_onnx = xent_export,
};

/* ---- mse ---- */

enum { MSE_SAVED_DIFF = 0 };

static gboolean mse_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                          LmnTensorInfo *output, GError **error)
{
    if (inputs[0].dtype != LMN_DTYPE_F32 || inputs[1].dtype != LMN_DTYPE_F32 ||
        !lmn_shape_equal(&inputs[0].shape, &inputs[1].shape)) {
        g_autofree char *p = lmn_shape_to_string(&inputs[0].shape);
        g_autofree char *t = lmn_shape_to_string(&inputs[1].shape);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (mse): prediction (%s %s) and target (%s %s) must both be f32 "
                    "with the same per-sample shape",
                    lmn_layer_get_name(layer), lmn_dtype_name(inputs[0].dtype), p,
                    lmn_dtype_name(inputs[1].dtype), t);
        return FALSE;
    }
    /* x - t, kept from forward: backward is a scaled copy of it. */
    lmn_layer_add_saved(layer, "diff", &inputs[0].shape, LMN_DTYPE_F32, TRUE);
    output->shape = lmn_shape_make(0);
    output->dtype = LMN_DTYPE_F32;
    return TRUE;
}

static void mse_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    LmnTensor *diff = lmn_layer_get_saved(layer, MSE_SAVED_DIFF);
    lmn_op_binary(LMN_BINARY_SUB, io->inputs[0], io->inputs[1], diff);
    /* Zeroed first: beta = 0 must not meet whatever the output buffer held (0 * NaN). */
    lmn_op_fill(io->output, 0.0f);
    lmn_op_reduce(LMN_REDUCE_SUM_SQUARES, diff, io->output,
                  (float) (1.0 / (double) lmn_tensor_numel(diff)), 0.0f);
}

static void mse_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    LmnTensor *diff = lmn_layer_get_saved(layer, MSE_SAVED_DIFF);
    /* d/dx mean((x - t)^2) = 2 (x - t) / numel; the target's gradient is its negative. */
    float scale = (float) (2.0 / (double) lmn_tensor_numel(diff));
    for (guint i = 0; i < 2; i++) {
        LmnTensor *g = io->input_grads[i];
        if (g != NULL) {
            lmn_op_fill(g, 0.0f);
            lmn_op_axpby(i == 0 ? scale : -scale, diff, 1.0f, g);
        }
    }
}

/* A regression's output activation is the identity: the prediction is the output. */
static gboolean mse_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                           const char *output, GError **error)
{
    return lmn_export_add_output(ex, "output", inputs[0], lmn_export_input_shape(ex, 0), error);
}

static const LmnLayerVTable mse_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_LOSS,
    .min_inputs = 2,
    .max_inputs = 2,
    .build = mse_build,
    .forward = mse_forward,
    .backward = mse_backward,
    .export_onnx = mse_export,
};

/* ---- binary_cross_entropy_with_logits ---- */

static gboolean bce_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                          LmnTensorInfo *output, GError **error)
{
    if (inputs[0].dtype != LMN_DTYPE_F32 || inputs[1].dtype != LMN_DTYPE_F32 ||
        !lmn_shape_equal(&inputs[0].shape, &inputs[1].shape)) {
        g_autofree char *p = lmn_shape_to_string(&inputs[0].shape);
        g_autofree char *t = lmn_shape_to_string(&inputs[1].shape);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (binary_cross_entropy_with_logits): logits (%s %s) and target "
                    "(%s %s) must both be f32 with the same per-sample shape; the target holds "
                    "probabilities in [0, 1]",
                    lmn_layer_get_name(layer), lmn_dtype_name(inputs[0].dtype), p,
                    lmn_dtype_name(inputs[1].dtype), t);
        return FALSE;
    }
    output->shape = lmn_shape_make(0);
    output->dtype = LMN_DTYPE_F32;
    return !lmn_bce_weighted_wanted(layer) || lmn_bce_weighted_build(layer, inputs, error);
}

/* With pos_weight (the private data marks it) the loss runs on mask-losses.c's kernels. */
static void bce_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    if (lmn_layer_get_private(layer) != NULL) {
        lmn_bce_weighted_forward(layer, io);
        return;
    }
    lmn_op_bce_logits(io->inputs[0], io->inputs[1], io->output);
}

static void bce_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    if (lmn_layer_get_private(layer) != NULL) {
        lmn_bce_weighted_backward(layer, io);
        return;
    }
    /* The mean runs over every element (PyTorch's reduction = 'mean'), not only the batch. */
    float scale = (float) (1.0 / (double) lmn_tensor_numel(io->inputs[0]));
    if (io->input_grads[0] != NULL) {
        lmn_op_bce_logits_backward(io->inputs[0], io->inputs[1], io->input_grads[0], scale);
    }
    if (io->input_grads[1] != NULL) {
        /* d/dt (max(x, 0) - x t + log(1 + exp(-|x|))) = -x, as PyTorch's target gradient. */
        lmn_op_axpby(-scale, io->inputs[0], 0.0f, io->input_grads[1]);
    }
}

static const LmnParamSpec bce_params[] = {
    LMN_PARAM_SPEC_FLOAT_LIST("pos_weight", NULL, 0, INFINITY, 0,
                              "weight of the positive term (t log sigmoid(x)): one for all "
                              "elements or one per channel, the logits' first dimension "
                              "(nn.BCEWithLogitsLoss(pos_weight))"),
    LMN_PARAM_SPEC_END,
};

static const LmnLayerVTable bce_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_LOSS,
    .min_inputs = 2,
    .max_inputs = 2,
    .build = bce_build,
    .forward = bce_forward,
    .backward = bce_backward,
    .export_onnx = lmn_loss_export_sigmoid,
};

static const LmnFeatureDesc loss_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "softmax_cross_entropy",
                "softmax of logits [classes] (or [C, d1..dk], per pixel) and cross-entropy "
                "against an integer label (or labels [d1..dk]), mean over the labels not "
                "ignored (nn.CrossEntropyLoss); inputs: logits, label",
                xent_params, &xent_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "mse",
                "mean squared error over all elements (nn.MSELoss, reduction 'mean'); "
                "inputs: prediction, target of the same shape",
                NULL, &mse_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "binary_cross_entropy_with_logits",
                "sigmoid and binary cross-entropy in one stable step, mean over all "
                "elements (nn.BCEWithLogitsLoss); inputs: logits, f32 target of the same "
                "shape",
                bce_params, &bce_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "dice",
                "soft Dice loss 1 - (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth) with "
                "p = sigmoid(logits), over the whole batch; inputs: logits, f32 mask of the same "
                "shape",
                lmn_dice_params, &lmn_dice_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.losses", LMN_VERSION_STRING, "MIT",
                           "Loss layers: softmax cross-entropy, mean squared error, binary "
                           "cross-entropy with logits, dice",
                           loss_features)
