/* Lamina — element-wise layers with NumPy broadcasting: multiply and subtract (of two inputs)
 * and scale (by a learnable scalar or per-channel factor, or a constant).
 *
 *   multiply: y = x_0 * x_1, subtract: y = x_0 - x_1, as torch.mul / torch.sub: the per-sample
 *             shapes must have equal rank and broadcast (each dimension equal or 1); the batch
 *             dimension is never broadcast.  Gradients are summed over the broadcast axes.
 *   scale:    y = x * weight, weight [1] or (per_channel) [C] for inputs [C, ...], initialised
 *             to value; or, with learnable = false, y = value * x and no parameter.
 * All of them run lmn_op_binary_broadcast forward and lmn_op_binary_broadcast_backward backward.
 */
#include <lamina/lamina.h>

enum { PARAM_WEIGHT = 0 };

static gboolean merge_build(LmnLayer *layer, const LmnTensorInfo *inputs, LmnTensorInfo *output,
                            GError **error)
{
    const char *name = lmn_layer_get_name(layer), *type = lmn_layer_get_type_name(layer);
    g_autofree char *s0 = lmn_shape_to_string(&inputs[0].shape);
    g_autofree char *s1 = lmn_shape_to_string(&inputs[1].shape);
    if (inputs[0].dtype != LMN_DTYPE_F32 || inputs[1].dtype != LMN_DTYPE_F32 ||
        inputs[0].shape.ndim != inputs[1].shape.ndim) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (%s): its inputs are %s %s and %s %s, but %s takes two f32 "
                    "inputs of equal rank (add size-1 dimensions with a reshape layer)",
                    name, type, lmn_dtype_name(inputs[0].dtype), s0,
                    lmn_dtype_name(inputs[1].dtype), s1, type);
        return FALSE;
    }
    LmnBroadcast bc;
    g_autoptr(GError) local = NULL;
    if (!lmn_broadcast_init(&bc, &inputs[0].shape, &inputs[1].shape, &local)) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH, "layer '%s' (%s): %s", name,
                    type, local->message);
        return FALSE;
    }
    output->dtype = LMN_DTYPE_F32;
    output->shape = lmn_broadcast_out_shape(&bc);
    output->shape.ndim = inputs[0].shape.ndim; /* a 0-dim per-sample shape stays 0-dim */
    return TRUE;
}

/* The broadcast of two [N, ...] tensors (compatible: build checked their per-sample shapes). */
static void batch_broadcast(const LmnTensor *a, const LmnTensor *b, LmnBroadcast *bc)
{
    lmn_broadcast_init(bc, &a->shape, &b->shape, NULL);
}

/* ONNX's Mul and Sub broadcast as NumPy does, and the batch dimension lines up (equal ranks). */
static gboolean merge_export(LmnExport *ex, const char *op_type, const char *const *inputs,
                             const char *output)
{
    const char *in[] = {inputs[0], inputs[1], NULL}, *out[] = {output, NULL};
    lmn_export_add_node(ex, op_type, in, out, NULL);
    return TRUE;
}
static gboolean multiply_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                                const char *output, GError **error)
{
    return merge_export(ex, "Mul", inputs, output);
}
static gboolean subtract_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                                const char *output, GError **error)
{
    return merge_export(ex, "Sub", inputs, output);
}

#define MERGE_LAYER(prefix, op)                                                                    \
    static gboolean prefix##_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,   \
                                   LmnTensorInfo *output, GError **error)                          \
    {                                                                                              \
        return merge_build(layer, inputs, output, error);                                          \
    }                                                                                              \
    static void prefix##_forward(LmnLayer *layer, const LmnLayerIO *io)                            \
    {                                                                                              \
        LmnBroadcast bc;                                                                           \
        batch_broadcast(io->inputs[0], io->inputs[1], &bc);                                        \
        lmn_op_binary_broadcast(op, io->inputs[0], io->inputs[1], io->output, &bc);                \
    }                                                                                              \
    static void prefix##_backward(LmnLayer *layer, const LmnLayerIO *io)                           \
    {                                                                                              \
        LmnBroadcast bc;                                                                           \
        batch_broadcast(io->inputs[0], io->inputs[1], &bc);                                        \
        lmn_op_binary_broadcast_backward(op, io->inputs[0], io->inputs[1], io->output_grad,        \
                                         io->input_grads[0], io->input_grads[1], &bc);             \
    }                                                                                              \
    static const LmnLayerVTable prefix##_vtable = {                                                \
        .struct_size = sizeof(LmnLayerVTable),                                                     \
        .flags = LMN_LAYER_FLAG_NONE,                                                              \
        .min_inputs = 2,                                                                           \
        .max_inputs = 2,                                                                           \
        .build = prefix##_build,                                                                   \
        .forward = prefix##_forward,                                                               \
        .backward = prefix##_backward,                                                             \
        .export_onnx = prefix##_export,                                                            \
    }

MERGE_LAYER(multiply, LMN_BINARY_MUL);
MERGE_LAYER(subtract, LMN_BINARY_SUB);

/* ---- scale ---- */

typedef struct {
    gboolean learnable;
    gboolean per_channel;
    float value;
    LmnShape weight_view; /* the weight as [1, C, 1, ...] or [1, 1, ...] against [N, ...] */
} Scale;

static gboolean scale_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                            LmnTensorInfo *output, GError **error)
{
    const LmnParams *p = lmn_layer_get_params(layer);
    const LmnShape *s = &inputs[0].shape;
    Scale *sc = g_new0(Scale, 1);
    sc->learnable = lmn_params_get_bool(p, "learnable");
    sc->per_channel = lmn_params_get_bool(p, "per_channel");
    sc->value = (float) lmn_params_get_float(p, "value");
    lmn_layer_set_private(layer, sc, g_free);
    if (inputs[0].dtype != LMN_DTYPE_F32 || (sc->per_channel && s->ndim == 0)) {
        g_autofree char *shape = lmn_shape_to_string(s);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (scale): its input is %s %s, but scale takes f32 values%s",
                    lmn_layer_get_name(layer), lmn_dtype_name(inputs[0].dtype), shape,
                    sc->per_channel ? " with a channel dimension (per_channel = true)" : "");
        return FALSE;
    }
    if (sc->per_channel && !sc->learnable) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (scale): per_channel = true needs learnable = true (a constant "
                    "factor is one value)",
                    lmn_layer_get_name(layer));
        return FALSE;
    }
    sc->weight_view.ndim = s->ndim + 1;
    for (guint d = 0; d <= s->ndim; d++)
        sc->weight_view.dims[d] = sc->per_channel && d == 1 ? s->dims[0] : 1;
    if (sc->learnable) {
        LmnShape w = lmn_shape_make(1, sc->per_channel ? s->dims[0] : (gint64) 1);
        g_autofree char *args = g_strdup_printf("value=%.9g", sc->value);
        lmn_layer_add_param(layer, "weight", &w, LMN_PARAM_ROLE_WEIGHT, "constant", args, 1, 1);
    }
    *output = inputs[0];
    return TRUE;
}

static void scale_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Scale *sc = lmn_layer_get_private(layer);
    if (!sc->learnable) {
        lmn_op_axpby(sc->value, io->inputs[0], 0.0f, io->output);
        return;
    }
    LmnBroadcast bc;
    lmn_broadcast_init(&bc, &io->inputs[0]->shape, &sc->weight_view, NULL);
    lmn_op_binary_broadcast(LMN_BINARY_MUL, io->inputs[0], lmn_layer_get_param(layer, PARAM_WEIGHT),
                            io->output, &bc);
}

static void scale_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Scale *sc = lmn_layer_get_private(layer);
    if (!sc->learnable) {
        if (io->input_grads[0] != NULL)
            lmn_op_axpby(sc->value, io->output_grad, 0.0f, io->input_grads[0]);
        return;
    }
    LmnBroadcast bc;
    lmn_broadcast_init(&bc, &io->inputs[0]->shape, &sc->weight_view, NULL);
    LmnTensor *dw = io->skip_param_grads ? NULL : lmn_layer_get_grad(layer, PARAM_WEIGHT);
    lmn_op_binary_broadcast_backward(LMN_BINARY_MUL, io->inputs[0],
                                     lmn_layer_get_param(layer, PARAM_WEIGHT), io->output_grad,
                                     io->input_grads[0], dw, &bc);
}

static const LmnLayerVTable scale_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_NONE,
    .min_inputs = 1,
    .max_inputs = 1,
    .build = scale_build,
    .forward = scale_forward,
    .backward = scale_backward,
};

static const LmnParamSpec scale_params[] = {
    LMN_PARAM_SPEC_FLOAT("value", "1.0", -1e30, 1e30, 0,
                         "the factor: the learnable weight's initial value, or the constant"),
    LMN_PARAM_SPEC_BOOL("learnable", "true", "the factor is a trained parameter named weight"),
    LMN_PARAM_SPEC_BOOL("per_channel", "false",
                        "one factor per channel (the first per-sample dimension), weight [C]"),
    LMN_PARAM_SPEC_END,
};

static const LmnFeatureDesc broadcast_merge_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "multiply",
                "element-wise product of two inputs with broadcasting (torch.mul)", NULL,
                &multiply_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "subtract",
                "element-wise difference input 0 - input 1 with broadcasting (torch.sub)", NULL,
                &subtract_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "scale",
                "multiplication by a learnable scalar or per-channel factor, or a constant",
                scale_params, &scale_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.broadcast-merge", LMN_VERSION_STRING, "MIT",
                           "Element-wise layers with broadcasting", broadcast_merge_features)
