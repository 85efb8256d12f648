/* Lamina — flatten: [N, d1, d2, ...] -> [N, d1 * d2 * ...], as torch.nn.Flatten().
 *
 * Row-major storage makes this a relabelling of the same bytes.  The layer API hands a layer its
 * output tensor rather than letting it return a view of its input, so forward and backward are
 * plain copies (one pass, no arithmetic); with LMN_LAYER_FLAG_RESHAPE a model gives the output
 * the input's own memory, and the forward copy, onto the same bytes, does nothing.
 */
#include <lamina/lamina.h>

static gboolean flatten_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                              LmnTensorInfo *output, GError **error)
{
    /* The count becomes a dimension; it is exact, since the core checked that the input fits a
     * tensor (lmn_layer_check_size) before build(). */
    output->shape = lmn_shape_make(1, lmn_shape_numel(&inputs[0].shape));
    output->dtype = inputs[0].dtype;
    return TRUE;
}

static void flatten_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    lmn_op_copy(io->output, io->inputs[0]);
}

static void flatten_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    if (io->input_grads[0] != NULL) {
        lmn_op_copy(io->input_grads[0], io->output_grad);
    }
}

/* Every per-sample dimension into one: ONNX's Flatten with axis 1. */
static gboolean flatten_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                               const char *output, GError **error)
{
    const char *in[] = {inputs[0], NULL}, *out[] = {output, NULL};
    const LmnExportAttr attrs[] = {LMN_EXPORT_ATTR_I("axis", 1), LMN_EXPORT_ATTRS_END};
    lmn_export_add_node(ex, "Flatten", in, out, attrs);
    return TRUE;
}

static const LmnLayerVTable flatten_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_RESHAPE,
    .min_inputs = 1,
    .max_inputs = 1,
    .build = flatten_build,
    .forward = flatten_forward,
    .backward = flatten_backward,
    .export_onnx = flatten_export,
};

static const LmnFeatureDesc flatten_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "flatten",
                "flattens each sample to 1-D: [N, C, H, W] -> [N, C*H*W] (nn.Flatten)", NULL,
                &flatten_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.flatten", LMN_VERSION_STRING, "MIT", "Flatten layer",
                           flatten_features)
