/* Lamina — normalisation within each sample: layer_norm, group_norm and instance_norm, as
 * torch.nn.LayerNorm, GroupNorm and InstanceNorm1d/2d.
 *
 * All three normalise rows of the input viewed as [rows, cols] with lmn_op_normalize_rows
 * (biased variance, eps inside the square root, PyTorch's definition):
 *   layer_norm:    rows = N * prod(leading dims), cols = prod(last normalized_dims dims);
 *                  weight and bias have the normalised shape;
 *   group_norm:    rows = N * groups, cols = C / groups * prod(spatial); weight, bias [C];
 *   instance_norm: group_norm with one group per channel; affine off by default, no running
 *                  statistics (PyTorch's defaults; track_running_stats is not offered).
 * The affine map y = x_hat * weight + bias broadcasts weight over the rows (layer_norm: a
 * [rows, cols] * [1, cols] box; the others [N, C, S] * [1, C, 1]).  Backward: one broadcast
 * backward gives dx_hat = dy * weight into the input gradient and dweight = sum(dy * x_hat) in
 * one pass, dbias = sum(dy) over the same axes, then lmn_op_normalize_rows_backward turns dx_hat
 * into dx in place.  Without the affine map the output is x_hat itself and nothing else is kept.
 */
#include <lamina/lamina.h>

enum { PARAM_WEIGHT = 0, PARAM_BIAS = 1 };
enum { SAVED_MEAN = 0, SAVED_RSTD = 1, SAVED_XHAT = 2, SAVED_WORK = 3 };

typedef struct {
    gint64 rows_per_sample, cols;
    gint64 channels, spatial; /* the affine map's [C, S] per sample (layer_norm: [1, cols]) */
    gboolean per_channel;     /* group_norm / instance_norm: weight over channels */
    gboolean weight, bias;
    float eps;
} SampleNorm;

static gboolean check_f32(LmnLayer *layer, const LmnTensorInfo *in, GError **error)
{
    if (in->dtype == LMN_DTYPE_F32 && in->shape.ndim >= 1)
        return TRUE;
    g_autofree char *shape = lmn_shape_to_string(&in->shape);
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                "layer '%s' (%s): its input is %s %s, but it takes f32 values of at least one "
                "dimension",
                lmn_layer_get_name(layer), lmn_layer_get_type_name(layer),
                lmn_dtype_name(in->dtype), shape);
    return FALSE;
}

/* Declares the parameters (of shape @shape) and the saved statistics, and the output. */
static void declare(LmnLayer *layer, SampleNorm *sn, const LmnTensorInfo *in, const LmnShape *shape,
                    LmnTensorInfo *output)
{
    const double fan = (double) lmn_shape_numel(shape);
    if (sn->weight)
        lmn_layer_add_param(layer, "weight", shape, LMN_PARAM_ROLE_WEIGHT, "constant", "value=1",
                            fan, fan);
    if (sn->bias)
        lmn_layer_add_param(layer, "bias", shape, LMN_PARAM_ROLE_BIAS, "zeros", NULL, fan, fan);
    LmnShape rows = lmn_shape_make(1, sn->rows_per_sample);
    lmn_layer_add_saved(layer, "mean", &rows, LMN_DTYPE_F32, TRUE);
    lmn_layer_add_saved(layer, "rstd", &rows, LMN_DTYPE_F32, TRUE);
    if (sn->weight || sn->bias) {
        lmn_layer_add_saved(layer, "x_hat", &in->shape, LMN_DTYPE_F32, TRUE);
        /* dx_hat when the input gradient is not wanted but the weight's is. */
        lmn_layer_add_saved(layer, "work", &in->shape, LMN_DTYPE_F32, TRUE);
    }
    lmn_layer_set_private(layer, sn, g_free);
    *output = *in;
}

static gboolean layernorm_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                                LmnTensorInfo *output, GError **error)
{
    const LmnParams *p = lmn_layer_get_params(layer);
    const LmnShape *s = &inputs[0].shape;
    if (!check_f32(layer, &inputs[0], error))
        return FALSE;
    const gint64 k = lmn_params_get_int(p, "normalized_dims");
    if (k > (gint64) s->ndim) {
        g_autofree char *shape = lmn_shape_to_string(s);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (layer_norm): normalized_dims = %" G_GINT64_FORMAT
                    " is more than the %u dimensions of its per-sample input %s; use 1 to %u",
                    lmn_layer_get_name(layer), k, s->ndim, shape, s->ndim);
        return FALSE;
    }
    SampleNorm *sn = g_new0(SampleNorm, 1);
    LmnShape norm = {.ndim = (guint) k};
    sn->cols = 1;
    for (guint d = 0; d < (guint) k; d++) {
        norm.dims[d] = s->dims[s->ndim - k + d];
        sn->cols *= norm.dims[d];
    }
    sn->rows_per_sample = lmn_shape_numel(s) / MAX(sn->cols, 1);
    sn->channels = sn->cols;
    sn->spatial = 1;
    const gboolean affine = lmn_params_get_bool(p, "elementwise_affine");
    sn->weight = affine;
    sn->bias = affine && lmn_params_get_bool(p, "bias");
    sn->eps = (float) lmn_params_get_float(p, "eps");
    declare(layer, sn, &inputs[0], &norm, output);
    return TRUE;
}

static gboolean groupnorm_setup(LmnLayer *layer, const LmnTensorInfo *in, gint64 groups,
                                gboolean affine, LmnTensorInfo *output, GError **error)
{
    const LmnShape *s = &in->shape;
    const gint64 c = s->dims[0];
    if (groups < 1 || c % groups != 0) {
        g_autofree char *shape = lmn_shape_to_string(s);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (group_norm): groups = %" G_GINT64_FORMAT
                    " does not divide the %" G_GINT64_FORMAT
                    " channels of its per-sample input %s; use a divisor of the channel count",
                    lmn_layer_get_name(layer), groups, c, shape);
        return FALSE;
    }
    SampleNorm *sn = g_new0(SampleNorm, 1);
    sn->channels = c;
    sn->spatial = lmn_shape_numel(s) / MAX(c, 1);
    sn->rows_per_sample = groups;
    sn->cols = c / groups * sn->spatial;
    sn->per_channel = TRUE;
    sn->weight = sn->bias = affine;
    sn->eps = (float) lmn_params_get_float(lmn_layer_get_params(layer), "eps");
    LmnShape cs = lmn_shape_make(1, c);
    declare(layer, sn, in, &cs, output);
    return TRUE;
}

static gboolean groupnorm_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                                LmnTensorInfo *output, GError **error)
{
    const LmnParams *p = lmn_layer_get_params(layer);
    return check_f32(layer, &inputs[0], error) &&
           groupnorm_setup(layer, &inputs[0], lmn_params_get_int(p, "groups"),
                           lmn_params_get_bool(p, "affine"), output, error);
}

static gboolean instancenorm_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                                   LmnTensorInfo *output, GError **error)
{
    const LmnParams *p = lmn_layer_get_params(layer);
    return check_f32(layer, &inputs[0], error) &&
           groupnorm_setup(layer, &inputs[0], inputs[0].shape.dims[0],
                           lmn_params_get_bool(p, "affine"), output, error);
}

/* The affine map's broadcast for a batch of @n: x_hat [n, C, S] (layer_norm: [rows, cols, 1])
 * against the parameters as [1, C, 1]. */
static void affine_broadcast(const SampleNorm *sn, gint64 n, LmnBroadcast *bc)
{
    const gint64 outer = sn->per_channel ? n : n * sn->rows_per_sample;
    LmnShape x = lmn_shape_make(3, outer, sn->channels, sn->spatial);
    LmnShape w = lmn_shape_make(3, (gint64) 1, sn->channels, (gint64) 1);
    lmn_broadcast_init(bc, &x, &w, NULL); /* compatible by construction */
}

static void samplenorm_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const SampleNorm *sn = lmn_layer_get_private(layer);
    const gint64 rows = io->batch * sn->rows_per_sample;
    LmnTensor *mean = lmn_layer_get_saved(layer, SAVED_MEAN);
    LmnTensor *rstd = lmn_layer_get_saved(layer, SAVED_RSTD);
    if (!sn->weight && !sn->bias) {
        lmn_op_normalize_rows(io->inputs[0], io->output, mean, rstd, rows, sn->cols, sn->eps);
        return;
    }
    LmnTensor *xhat = lmn_layer_get_saved(layer, SAVED_XHAT);
    lmn_op_normalize_rows(io->inputs[0], xhat, mean, rstd, rows, sn->cols, sn->eps);
    LmnBroadcast bc;
    affine_broadcast(sn, io->batch, &bc);
    if (sn->weight)
        lmn_op_binary_broadcast(LMN_BINARY_MUL, xhat, lmn_layer_get_param(layer, PARAM_WEIGHT),
                                io->output, &bc);
    else
        lmn_op_copy(io->output, xhat);
    if (sn->bias)
        lmn_op_binary_broadcast(LMN_BINARY_ADD, io->output, lmn_layer_get_param(layer, PARAM_BIAS),
                                io->output, &bc);
}

static void samplenorm_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const SampleNorm *sn = lmn_layer_get_private(layer);
    const gint64 rows = io->batch * sn->rows_per_sample;
    LmnTensor *rstd = lmn_layer_get_saved(layer, SAVED_RSTD);
    LmnTensor *dx = io->input_grads[0];
    if (!sn->weight && !sn->bias) {
        if (dx != NULL)
            lmn_op_normalize_rows_backward(io->output, rstd, io->output_grad, dx, rows, sn->cols);
        return;
    }
    const gboolean params = !io->skip_param_grads;
    if (dx == NULL && !params)
        return;
    LmnTensor *xhat = lmn_layer_get_saved(layer, SAVED_XHAT);
    LmnBroadcast bc;
    affine_broadcast(sn, io->batch, &bc);
    LmnTensor *dxhat = dx != NULL ? dx : lmn_layer_get_saved(layer, SAVED_WORK);
    if (sn->weight) {
        LmnTensor *w = lmn_layer_get_param(layer, PARAM_WEIGHT);
        LmnTensor *dw = params ? lmn_layer_get_grad(layer, PARAM_WEIGHT) : NULL;
        lmn_op_binary_broadcast_backward(LMN_BINARY_MUL, xhat, w, io->output_grad, dxhat, dw, &bc);
    } else {
        lmn_op_copy(dxhat, io->output_grad);
    }
    if (sn->bias && params)
        lmn_op_binary_broadcast_backward(LMN_BINARY_ADD, NULL, NULL, io->output_grad, NULL,
                                         lmn_layer_get_grad(layer, PARAM_BIAS), &bc);
    if (dx != NULL)
        lmn_op_normalize_rows_backward(xhat, rstd, dx, dx, rows, sn->cols);
}

#define SAMPLENORM_VTABLE(prefix)                                                                  \
    static const LmnLayerVTable prefix##_vtable = {                                                \
        .struct_size = sizeof(LmnLayerVTable),                                                     \
        .flags = LMN_LAYER_FLAG_NONE,                                                              \
        .min_inputs = 1,                                                                           \
        .max_inputs = 1,                                                                           \
        .build = prefix##_build,                                                                   \
        .forward = samplenorm_forward,                                                             \
        .backward = samplenorm_backward,                                                           \
    }

SAMPLENORM_VTABLE(layernorm);
SAMPLENORM_VTABLE(groupnorm);
SAMPLENORM_VTABLE(instancenorm);

#define EPS_SPEC                                                                                   \
    LMN_PARAM_SPEC_FLOAT("eps", "1e-5", 0.0, 1.0, 0, "added to the variance inside the square root")

static const LmnParamSpec layernorm_params[] = {
    LMN_PARAM_SPEC_INT("normalized_dims", "1", 1, LMN_MAX_DIMS - 1, 0,
                       "normalise over this many last per-sample dimensions (the length of "
                       "nn.LayerNorm's normalized_shape)"),
    LMN_PARAM_SPEC_BOOL("elementwise_affine", "true",
                        "learnable weight (1) and bias (0) of the normalised shape"),
    LMN_PARAM_SPEC_BOOL("bias", "true", "with elementwise_affine: also the bias"),
    EPS_SPEC,
    LMN_PARAM_SPEC_END,
};

static const LmnParamSpec groupnorm_params[] = {
    LMN_PARAM_SPEC_INT("groups", NULL, 1, 1e9, LMN_PARAM_FLAG_REQUIRED,
                       "channel groups normalised together (nn.GroupNorm's num_groups); must "
                       "divide the channel count"),
    LMN_PARAM_SPEC_BOOL("affine", "true", "learnable per-channel weight (1) and bias (0)"),
    EPS_SPEC,
    LMN_PARAM_SPEC_END,
};

static const LmnParamSpec instancenorm_params[] = {
    LMN_PARAM_SPEC_BOOL("affine", "false", "learnable per-channel weight (1) and bias (0)"),
    EPS_SPEC,
    LMN_PARAM_SPEC_END,
};

static const LmnFeatureDesc samplenorm_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "layer_norm",
                "normalisation over the last normalized_dims dimensions of each sample "
                "(torch.nn.LayerNorm)",
                layernorm_params, &layernorm_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "group_norm",
                "normalisation over groups of channels of each sample (torch.nn.GroupNorm)",
                groupnorm_params, &groupnorm_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "instance_norm",
                "normalisation over the positions of each channel of each sample "
                "(torch.nn.InstanceNorm1d/2d, without running statistics)",
                instancenorm_params, &instancenorm_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.sample-norm", LMN_VERSION_STRING, "MIT",
                           "Per-sample normalisation layers", samplenorm_features)
