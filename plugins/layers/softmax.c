/* Lamina — softmax over the last dimension, as torch.nn.Softmax(dim=-1).
 *
 * Each sample's per-sample tensor [..., K] is a stack of rows of K values; forward normalises
 * every row (lmn_op_softmax, numerically stable), backward uses only the output:
 * dx = y * (dy - sum(dy * y)).  The graph keeps every layer's output for backward, so softmax
 * saves nothing of its own.  For classification, prefer softmax_cross_entropy on the logits: it
 * is cheaper and more accurate than softmax followed by a log.
 */
#include <lamina/lamina.h>

typedef struct {
    gint64 cols;            /* K: the last dimension */
    gint64 rows_per_sample; /* the product of the other per-sample dimensions */
} Softmax;

static gboolean softmax_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                              LmnTensorInfo *output, GError **error)
{
    const LmnShape *s = &inputs[0].shape;
    if (inputs[0].dtype != LMN_DTYPE_F32 || s->ndim == 0 || s->dims[s->ndim - 1] < 1) {
        g_autofree char *shape = lmn_shape_to_string(s);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (softmax): its input is %s %s, but softmax takes f32 values with "
                    "a non-empty last dimension to normalise over",
                    lmn_layer_get_name(layer), lmn_dtype_name(inputs[0].dtype), shape);
        return FALSE;
    }
    Softmax *sm = g_new0(Softmax, 1);
    sm->cols = s->dims[s->ndim - 1];
    sm->rows_per_sample = lmn_shape_numel(s) / sm->cols;
    lmn_layer_set_private(layer, sm, g_free);
    *output = inputs[0];
    return TRUE;
}

static void softmax_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Softmax *sm = lmn_layer_get_private(layer);
    lmn_op_softmax(io->inputs[0], io->output, io->batch * sm->rows_per_sample, sm->cols);
}

static void softmax_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Softmax *sm = lmn_layer_get_private(layer);
    if (io->input_grads[0] != NULL) {
        lmn_op_softmax_backward(io->output, io->output_grad, io->input_grads[0],
                                io->batch * sm->rows_per_sample, sm->cols);
    }
}

/* Opset 13's Softmax normalises over one axis, here the last, as forward does. */
static gboolean softmax_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                               const char *output, GError **error)
{
    const char *in[] = {inputs[0], NULL}, *out[] = {output, NULL};
    const LmnExportAttr attrs[] = {LMN_EXPORT_ATTR_I("axis", -1), LMN_EXPORT_ATTRS_END};
    lmn_export_add_node(ex, "Softmax", in, out, attrs);
    return TRUE;
}

static const LmnLayerVTable softmax_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_NONE,
    .min_inputs = 1,
    .max_inputs = 1,
    .build = softmax_build,
    .forward = softmax_forward,
    .backward = softmax_backward,
    .export_onnx = softmax_export,
};

static const LmnFeatureDesc softmax_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "softmax",
                "softmax over the last dimension, exp(x_i) / sum_j exp(x_j) "
                "(nn.Softmax(dim=-1))",
                NULL, &softmax_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.softmax", LMN_VERSION_STRING, "MIT", "Softmax layer",
                           softmax_features)
