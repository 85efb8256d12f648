/* Lamina — more loss layers: l1, huber, smooth_l1 (regression), nll (classification on
 * log-probabilities) and kl_div, with PyTorch's definitions and reduction = 'mean' (kl_div also
 * 'batchmean').
 *
 * As in losses.c, the last input is the target, the output is one f32 scalar and backward starts
 * the chain with d(loss)/d(loss) = 1.  Everything runs on the op set, so every backend has them.
 */
#include <lamina/lamina.h>

#include <float.h>
#include <math.h>

/* A regression loss compares two f32 tensors of one per-sample shape. */
static gboolean check_pair(LmnLayer *layer, const char *type, const LmnTensorInfo *inputs,
                           GError **error)
{
    if (inputs[0].dtype == LMN_DTYPE_F32 && inputs[1].dtype == LMN_DTYPE_F32 &&
        lmn_shape_equal(&inputs[0].shape, &inputs[1].shape))
        return TRUE;
    g_autofree char *p = lmn_shape_to_string(&inputs[0].shape);
    g_autofree char *t = lmn_shape_to_string(&inputs[1].shape);
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                "layer '%s' (%s): prediction (%s %s) and target (%s %s) must both be f32 with "
                "the same per-sample shape",
                lmn_layer_get_name(layer), type, lmn_dtype_name(inputs[0].dtype), p,
                lmn_dtype_name(inputs[1].dtype), t);
    return FALSE;
}

static void scalar_output(LmnTensorInfo *output)
{
    output->shape = lmn_shape_make(0);
    output->dtype = LMN_DTYPE_F32;
}

/* The input gradients of a loss whose d/dx is @scale * @g: dt = -dx. */
static void write_pair_grads(const LmnLayerIO *io, LmnTensor *g, float scale)
{
    for (guint i = 0; i < 2; i++)
        if (io->input_grads[i] != NULL)
            lmn_op_axpby(i == 0 ? scale : -scale, g, 0.0f, io->input_grads[i]);
}

/* A regression's output activation is the identity: the prediction is the output. */
static gboolean identity_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                                const char *output, GError **error)
{
    return lmn_export_add_output(ex, "output", inputs[0], lmn_export_input_shape(ex, 0), error);
}

/* ---- l1: mean |x - t| ---- */

enum { L1_SAVED_DIFF = 0, L1_SAVED_SIGN = 1 };

static gboolean l1_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                         LmnTensorInfo *output, GError **error)
{
    if (!check_pair(layer, "l1", inputs, error))
        return FALSE;
    lmn_layer_add_saved(layer, "diff", &inputs[0].shape, LMN_DTYPE_F32, TRUE);
    lmn_layer_add_saved(layer, "sign", &inputs[0].shape, LMN_DTYPE_F32, TRUE);
    scalar_output(output);
    return TRUE;
}

static void l1_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    LmnTensor *diff = lmn_layer_get_saved(layer, L1_SAVED_DIFF);
    lmn_op_binary(LMN_BINARY_SUB, io->inputs[0], io->inputs[1], diff);
    lmn_op_fill(io->output, 0.0f);
    lmn_op_reduce(LMN_REDUCE_SUM_ABS, diff, io->output,
                  (float) (1.0 / (double) lmn_tensor_numel(diff)), 0.0f);
}

static void l1_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    LmnTensor *diff = lmn_layer_get_saved(layer, L1_SAVED_DIFF);
    LmnTensor *sign = lmn_layer_get_saved(layer, L1_SAVED_SIGN);
    /* sign(0) = 0, as PyTorch's L1 gradient at a perfect prediction. */
    lmn_op_unary(LMN_UNARY_SIGN, diff, sign, 0.0f);
    write_pair_grads(io, sign, (float) (1.0 / (double) lmn_tensor_numel(diff)));
}

static const LmnLayerVTable l1_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_LOSS,
    .min_inputs = 2,
    .max_inputs = 2,
    .build = l1_build,
    .forward = l1_forward,
    .backward = l1_backward,
    .export_onnx = identity_export,
};

/* ---- huber and smooth_l1 ----
 *
 * With d = x - t and c = clamp(d, -delta, delta): huber = c d - c^2 / 2 element-wise (d^2 / 2
 * inside the band, delta (|d| - delta / 2) outside), its gradient c.  smooth_l1 with beta is
 * huber with delta = beta, divided by beta; beta = 0 is l1 (PyTorch's definition). */

enum { HUBER_SAVED_DIFF = 0, HUBER_SAVED_CLAMPED = 1, HUBER_SAVED_PRODUCT = 2 };

static gboolean is_smooth_l1(LmnLayer *layer)
{
    return lmn_param_spec_find(lmn_params_get_schema(lmn_layer_get_params(layer)), "beta") != NULL;
}

/* delta, and the factor the loss is divided by (beta for smooth_l1, else 1). */
static float huber_delta(LmnLayer *layer, float *divisor)
{
    const LmnParams *p = lmn_layer_get_params(layer);
    gboolean smooth = is_smooth_l1(layer);
    float d = (float) lmn_params_get_float(p, smooth ? "beta" : "delta");
    *divisor = smooth && d > 0 ? d : 1.0f;
    return d;
}

static gboolean huber_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                            LmnTensorInfo *output, GError **error)
{
    if (!check_pair(layer, is_smooth_l1(layer) ? "smooth_l1" : "huber", inputs, error))
        return FALSE;
    lmn_layer_add_saved(layer, "diff", &inputs[0].shape, LMN_DTYPE_F32, TRUE);
    lmn_layer_add_saved(layer, "clamped", &inputs[0].shape, LMN_DTYPE_F32, TRUE);
    lmn_layer_add_saved(layer, "product", &inputs[0].shape, LMN_DTYPE_F32, TRUE);
    scalar_output(output);
    return TRUE;
}

static void huber_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    LmnTensor *diff = lmn_layer_get_saved(layer, HUBER_SAVED_DIFF);
    LmnTensor *c = lmn_layer_get_saved(layer, HUBER_SAVED_CLAMPED);
    LmnTensor *cd = lmn_layer_get_saved(layer, HUBER_SAVED_PRODUCT);
    float divisor = 1.0f, delta = huber_delta(layer, &divisor);
    double inv = 1.0 / (double) lmn_tensor_numel(diff);
    lmn_op_binary(LMN_BINARY_SUB, io->inputs[0], io->inputs[1], diff);
    lmn_op_fill(io->output, 0.0f);
    if (delta == 0.0f) { /* smooth_l1 with beta = 0: l1 */
        lmn_op_reduce(LMN_REDUCE_SUM_ABS, diff, io->output, (float) inv, 0.0f);
        return;
    }
    lmn_op_copy(c, diff);
    lmn_op_clamp(c, -delta, delta);
    lmn_op_binary(LMN_BINARY_MUL, c, diff, cd);
    lmn_op_reduce(LMN_REDUCE_SUM, cd, io->output, (float) (inv / divisor), 0.0f);
    lmn_op_reduce(LMN_REDUCE_SUM_SQUARES, c, io->output, (float) (-0.5 * inv / divisor), 1.0f);
}

static void huber_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    LmnTensor *diff = lmn_layer_get_saved(layer, HUBER_SAVED_DIFF);
    LmnTensor *c = lmn_layer_get_saved(layer, HUBER_SAVED_CLAMPED);
    float divisor = 1.0f, delta = huber_delta(layer, &divisor);
    double inv = 1.0 / (double) lmn_tensor_numel(diff);
    if (delta == 0.0f) {
        lmn_op_unary(LMN_UNARY_SIGN, diff, c, 0.0f);
        write_pair_grads(io, c, (float) inv);
        return;
    }
    write_pair_grads(io, c, (float) (inv / divisor));
}

static const LmnLayerVTable huber_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_LOSS,
    .min_inputs = 2,
    .max_inputs = 2,
    .build = huber_build,
    .forward = huber_forward,
    .backward = huber_backward,
    .export_onnx = identity_export,
};

static const LmnParamSpec huber_params[] = {
    LMN_PARAM_SPEC_FLOAT("delta", "1.0", 0.0, INFINITY, LMN_PARAM_FLAG_MIN_EXCLUSIVE,
                         "quadratic below |x - t| = delta, linear above (nn.HuberLoss(delta))"),
    LMN_PARAM_SPEC_END,
};

static const LmnParamSpec smooth_l1_params[] = {
    LMN_PARAM_SPEC_FLOAT("beta", "1.0", 0.0, INFINITY, 0,
                         "quadratic below |x - t| = beta, linear above; 0 is l1 "
                         "(nn.SmoothL1Loss(beta))"),
    LMN_PARAM_SPEC_END,
};

/* ---- nll: -mean over the batch of x[label], x holding log-probabilities ----
 *
 * The one-hot rows come from softmax_xent_backward with zero probabilities: it writes
 * scale * (0 - onehot), so scale = -1 gives the one-hot and scale = 1 / N the gradient itself. */

enum { NLL_SAVED_ZEROS = 0, NLL_SAVED_ONEHOT = 1 };

static gboolean nll_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                          LmnTensorInfo *output, GError **error)
{
    const char *name = lmn_layer_get_name(layer);
    if (inputs[0].shape.ndim != 1 || inputs[0].dtype != LMN_DTYPE_F32) {
        g_autofree char *s = lmn_shape_to_string(&inputs[0].shape);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (nll): its first input must be f32 log-probabilities of "
                    "per-sample shape [classes] (a log_softmax layer's output), got %s %s",
                    name, lmn_dtype_name(inputs[0].dtype), s);
        return FALSE;
    }
    if (inputs[1].shape.ndim != 0 || inputs[1].dtype != LMN_DTYPE_I32) {
        g_autofree char *s = lmn_shape_to_string(&inputs[1].shape);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (nll): its target must be one integer class label per sample "
                    "(i32, per-sample shape []), got %s %s",
                    name, lmn_dtype_name(inputs[1].dtype), s);
        return FALSE;
    }
    lmn_layer_add_saved(layer, "zeros", &inputs[0].shape, LMN_DTYPE_F32, TRUE);
    lmn_layer_add_saved(layer, "onehot", &inputs[0].shape, LMN_DTYPE_F32, TRUE);
    scalar_output(output);
    return TRUE;
}

static void nll_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    LmnTensor *zeros = lmn_layer_get_saved(layer, NLL_SAVED_ZEROS);
    LmnTensor *onehot = lmn_layer_get_saved(layer, NLL_SAVED_ONEHOT);
    lmn_op_fill(zeros, 0.0f);
    lmn_op_softmax_xent_backward(zeros, io->inputs[1], onehot, -1.0f, 0.0f);
    lmn_op_binary(LMN_BINARY_MUL, onehot, io->inputs[0], onehot);
    lmn_op_fill(io->output, 0.0f);
    lmn_op_reduce(LMN_REDUCE_SUM, onehot, io->output, (float) (-1.0 / (double) io->batch), 0.0f);
}

static void nll_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    if (io->input_grads[0] != NULL) {
        LmnTensor *zeros = lmn_layer_get_saved(layer, NLL_SAVED_ZEROS);
        lmn_op_softmax_xent_backward(zeros, io->inputs[1], io->input_grads[0],
                                     (float) (1.0 / (double) io->batch), 0.0f);
    }
}

/* The model's output is the log-probabilities; their exp are the probabilities. */
static gboolean nll_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                           const char *output, GError **error)
{
    const LmnShape *shape = lmn_export_input_shape(ex, 0);
    const char *probs = lmn_export_value_name(ex, layer, "probabilities");
    const char *in[] = {inputs[0], NULL}, *out[] = {probs, NULL};
    if (!lmn_export_add_output(ex, "log_probabilities", inputs[0], shape, error))
        return FALSE;
    lmn_export_add_node(ex, "Exp", in, out, NULL);
    return lmn_export_add_output(ex, "probabilities", probs, shape, error);
}

static const LmnLayerVTable nll_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_LOSS,
    .min_inputs = 2,
    .max_inputs = 2,
    .build = nll_build,
    .forward = nll_forward,
    .backward = nll_backward,
    .export_onnx = nll_export,
};

/* ---- kl_div: sum of t (log t - x) over the mean's count, x log-probabilities, t probabilities
 *
 * As torch's xlogy, a zero target contributes 0: log t is taken of max(t, FLT_MIN), and the
 * product with t = 0 is 0.  d/dx = -t; d/dt = log t + 1 - x (finite at t = 0, where torch's is
 * NaN). */

enum { KL_SAVED_LOGT = 0, KL_SAVED_TERM = 1 };

static gboolean kl_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                         LmnTensorInfo *output, GError **error)
{
    if (!check_pair(layer, "kl_div", inputs, error))
        return FALSE;
    lmn_layer_add_saved(layer, "log_target", &inputs[0].shape, LMN_DTYPE_F32, TRUE);
    lmn_layer_add_saved(layer, "term", &inputs[0].shape, LMN_DTYPE_F32, TRUE);
    scalar_output(output);
    return TRUE;
}

/* 1 / the mean's count: every element ('mean'), or the batch ('batchmean', the true KL). */
static double kl_scale(LmnLayer *layer, const LmnLayerIO *io)
{
    const char *r = lmn_params_get_string(lmn_layer_get_params(layer), "reduction");
    return 1.0 /
           (double) (g_str_equal(r, "batchmean") ? io->batch : lmn_tensor_numel(io->inputs[0]));
}

static void kl_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    LmnTensor *logt = lmn_layer_get_saved(layer, KL_SAVED_LOGT);
    LmnTensor *term = lmn_layer_get_saved(layer, KL_SAVED_TERM);
    lmn_op_copy(logt, io->inputs[1]);
    lmn_op_clamp(logt, FLT_MIN, INFINITY);
    lmn_op_unary(LMN_UNARY_LOG, logt, logt, 0.0f);
    lmn_op_binary(LMN_BINARY_SUB, logt, io->inputs[0], term);
    lmn_op_binary(LMN_BINARY_MUL, term, io->inputs[1], term);
    lmn_op_fill(io->output, 0.0f);
    lmn_op_reduce(LMN_REDUCE_SUM, term, io->output, (float) kl_scale(layer, io), 0.0f);
}

static void kl_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    float scale = (float) kl_scale(layer, io);
    if (io->input_grads[0] != NULL)
        lmn_op_axpby(-scale, io->inputs[1], 0.0f, io->input_grads[0]);
    if (io->input_grads[1] != NULL) {
        /* (log t + 1 - x) scale, from the saved log t */
        LmnTensor *g = io->input_grads[1];
        lmn_op_binary(LMN_BINARY_SUB, lmn_layer_get_saved(layer, KL_SAVED_LOGT), io->inputs[0], g);
        lmn_op_axpby(scale, g, 0.0f, g);
        LmnTensor *term = lmn_layer_get_saved(layer, KL_SAVED_TERM);
        lmn_op_fill(term, scale);
        lmn_op_binary(LMN_BINARY_ADD, g, term, g);
    }
}

static const LmnLayerVTable kl_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_LOSS,
    .min_inputs = 2,
    .max_inputs = 2,
    .build = kl_build,
    .forward = kl_forward,
    .backward = kl_backward,
    .export_onnx = identity_export,
};

static const char *const kl_reductions[] = {"mean", "batchmean", NULL};
static const LmnParamSpec kl_params[] = {
    LMN_PARAM_SPEC_ENUM("reduction", "mean", kl_reductions,
                        "mean over every element (torch's default) or batchmean, over the batch "
                        "(the true KL divergence)"),
    LMN_PARAM_SPEC_END,
};

static const LmnFeatureDesc robust_loss_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "l1",
                "mean absolute error over all elements (nn.L1Loss); inputs: prediction, target "
                "of the same shape",
                NULL, &l1_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "huber",
                "quadratic near the target, linear far from it, mean over all elements "
                "(nn.HuberLoss); inputs: prediction, target of the same shape",
                huber_params, &huber_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "smooth_l1",
                "huber with delta = beta divided by beta, mean over all elements "
                "(nn.SmoothL1Loss); inputs: prediction, target of the same shape",
                smooth_l1_params, &huber_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "nll",
                "negative log-likelihood of log-probabilities [classes] against an integer "
                "label, mean over the batch (nn.NLLLoss); inputs: log-probabilities, label",
                NULL, &nll_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "kl_div",
                "Kullback-Leibler divergence of target probabilities from log-probabilities "
                "(nn.KLDivLoss); inputs: log-probabilities, target probabilities of the same "
                "shape",
                kl_params, &kl_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.robust-losses", LMN_VERSION_STRING, "MIT",
                           "Loss layers: l1, huber, smooth_l1, nll and kl_div",
                           robust_loss_features)
