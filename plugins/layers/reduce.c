/* Lamina — reductions over one per-sample axis: mean and sum, as torch.mean / torch.sum with
 * dim = axis + 1 (the batch dimension is never reduced) and keepdim.
 *
 * The input viewed as [N * prod(dims before axis), dims[axis], prod(dims after axis)] is what
 * lmn_op_reduce_axis reduces; the backward broadcasts the gradient back
 * (lmn_op_reduce_axis_backward), divided by the axis length for mean.
 */
#include <lamina/lamina.h>

typedef struct {
    LmnAxisReduceOp op;
    gint64 outer, axis, inner; /* outer per sample */
} Reduce;

static gboolean reduce_setup(LmnLayer *layer, const LmnTensorInfo *inputs, LmnTensorInfo *output,
                             LmnAxisReduceOp op, GError **error)
{
    const LmnParams *p = lmn_layer_get_params(layer);
    const LmnShape *s = &inputs[0].shape;
    const gint64 ndim = (gint64) s->ndim;
    gint64 axis = lmn_params_get_int(p, "axis");
    if (inputs[0].dtype != LMN_DTYPE_F32 || axis < -ndim || axis >= ndim) {
        g_autofree char *shape = lmn_shape_to_string(s);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (%s): axis = %" G_GINT64_FORMAT " does not name a dimension of "
                    "its %s per-sample input %s (valid: %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT
                    " of f32 values; the batch dimension is not counted)",
                    lmn_layer_get_name(layer), lmn_layer_get_type_name(layer), axis,
                    lmn_dtype_name(inputs[0].dtype), shape, -ndim, ndim - 1);
        return FALSE;
    }
    if (axis < 0)
        axis += ndim;
    Reduce *r = g_new0(Reduce, 1);
    r->op = op;
    r->outer = r->inner = 1;
    for (gint64 d = 0; d < ndim; d++) {
        if (d < axis)
            r->outer *= s->dims[d];
        else if (d > axis)
            r->inner *= s->dims[d];
    }
    r->axis = s->dims[axis];
    lmn_layer_set_private(layer, r, g_free);
    output->dtype = LMN_DTYPE_F32;
    output->shape = *s;
    if (lmn_params_get_bool(p, "keepdim")) {
        output->shape.dims[axis] = 1;
    } else {
        for (gint64 d = axis; d + 1 < ndim; d++)
            output->shape.dims[d] = s->dims[d + 1];
        output->shape.ndim--;
    }
    return TRUE;
}

static void reduce_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Reduce *r = lmn_layer_get_private(layer);
    lmn_op_reduce_axis(r->op, io->inputs[0], io->output, NULL, io->batch * r->outer, r->axis,
                       r->inner);
}

static void reduce_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Reduce *r = lmn_layer_get_private(layer);
    if (io->input_grads[0] != NULL)
        lmn_op_reduce_axis_backward(r->op, io->output_grad, NULL, io->input_grads[0],
                                    io->batch * r->outer, r->axis, r->inner);
}

#define REDUCE_LAYER(prefix, op)                                                                   \
    static gboolean prefix##_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,   \
                                   LmnTensorInfo *output, GError **error)                          \
    {                                                                                              \
        return reduce_setup(layer, inputs, output, op, error);                                     \
    }                                                                                              \
    static const LmnLayerVTable prefix##_vtable = {                                                \
        .struct_size = sizeof(LmnLayerVTable),                                                     \
        .flags = LMN_LAYER_FLAG_NONE,                                                              \
        .min_inputs = 1,                                                                           \
        .max_inputs = 1,                                                                           \
        .build = prefix##_build,                                                                   \
        .forward = reduce_forward,                                                                 \
        .backward = reduce_backward,                                                               \
    }

REDUCE_LAYER(mean, LMN_AXIS_MEAN);
REDUCE_LAYER(sum, LMN_AXIS_SUM);

static const LmnParamSpec reduce_params[] = {
    LMN_PARAM_SPEC_INT("axis", "-1", -(LMN_MAX_DIMS - 1), LMN_MAX_DIMS - 2, 0,
                       "the per-sample dimension reduced (negative: from the end; the batch "
                       "dimension is not counted)"),
    LMN_PARAM_SPEC_BOOL("keepdim", "false", "keep the reduced dimension with size 1"),
    LMN_PARAM_SPEC_END,
};

static const LmnFeatureDesc reduce_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "mean", "mean over one per-sample axis (torch.mean)",
                reduce_params, &mean_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "sum", "sum over one per-sample axis (torch.sum)", reduce_params,
                &sum_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.reduce", LMN_VERSION_STRING, "MIT", "Reductions over one axis",
                           reduce_features)
