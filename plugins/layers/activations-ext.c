/* Lamina — activation layers on the ABI 1.3 ops: silu and mish (lmn_op_unary), hardtanh
 * (lmn_op_clamp and lmn_op_clamp_backward) and log_softmax over the last axis.
 *
 *   silu:        x sigmoid(x) (nn.SiLU)
 *   mish:        x tanh(softplus(x)) (nn.Mish)
 *   hardtanh:    clamp(x, min_val, max_val); the gradient passes strictly inside (nn.Hardtanh)
 *   log_softmax: x - max - log(sum(exp(x - max))) over the last per-sample dimension
 *                (nn.LogSoftmax(dim=-1)), with the maximum subtracted first, so large logits
 *                neither overflow nor lose the small probabilities' logs; backward
 *                dx = dy - exp(y) sum(dy).
 */
#include <lamina/lamina.h>

static gboolean check_f32(LmnLayer *layer, const LmnTensorInfo *in, guint min_ndim, GError **error)
{
    if (in->dtype == LMN_DTYPE_F32 && in->shape.ndim >= min_ndim)
        return TRUE;
    g_autofree char *shape = lmn_shape_to_string(&in->shape);
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                "layer '%s' (%s): its input is %s %s, but it takes f32 values%s",
                lmn_layer_get_name(layer), lmn_layer_get_type_name(layer),
                lmn_dtype_name(in->dtype), shape, min_ndim > 0 ? " of at least one dimension" : "");
    return FALSE;
}

/* ---- ONNX export: each as the opset's nodes (Mish and SiLU have none before opset 18) ---- */

static const char *export_node(LmnExport *ex, const char *op, const char *a, const char *b,
                               const char *y, const LmnExportAttr *attrs)
{
    const char *in[] = {a, b, NULL}, *out[] = {y, NULL};
    lmn_export_add_node(ex, op, in, out, attrs);
    return y;
}

/* x sigmoid(x) */
static gboolean silu_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                            const char *output, GError **error)
{
    const char *s = export_node(ex, "Sigmoid", inputs[0], NULL,
                                lmn_export_value_name(ex, layer, "sigmoid"), NULL);
    export_node(ex, "Mul", inputs[0], s, output, NULL);
    return TRUE;
}

/* x tanh(softplus(x)) */
static gboolean mish_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                            const char *output, GError **error)
{
    const char *sp = export_node(ex, "Softplus", inputs[0], NULL,
                                 lmn_export_value_name(ex, layer, "softplus"), NULL);
    const char *t =
        export_node(ex, "Tanh", sp, NULL, lmn_export_value_name(ex, layer, "tanh"), NULL);
    export_node(ex, "Mul", inputs[0], t, output, NULL);
    return TRUE;
}

/* ---- silu, mish ---- */

#define UNARY_LAYER(prefix, op)                                                                    \
    static gboolean prefix##_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,   \
                                   LmnTensorInfo *output, GError **error)                          \
    {                                                                                              \
        *output = inputs[0];                                                                       \
        return check_f32(layer, &inputs[0], 0, error);                                             \
    }                                                                                              \
    static void prefix##_forward(LmnLayer *layer, const LmnLayerIO *io)                            \
    {                                                                                              \
        lmn_op_unary(op, io->inputs[0], io->output, 0.0f);                                         \
    }                                                                                              \
    static void prefix##_backward(LmnLayer *layer, const LmnLayerIO *io)                           \
    {                                                                                              \
        if (io->input_grads[0] != NULL)                                                            \
            lmn_op_unary_backward(op, io->inputs[0], io->output, io->output_grad,                  \
                                  io->input_grads[0], 0.0f);                                       \
    }                                                                                              \
    static const LmnLayerVTable prefix##_vtable = {                                                \
        .struct_size = sizeof(LmnLayerVTable),                                                     \
        .min_inputs = 1,                                                                           \
        .max_inputs = 1,                                                                           \
        .build = prefix##_build,                                                                   \
        .forward = prefix##_forward,                                                               \
        .backward = prefix##_backward,                                                             \
        .export_onnx = prefix##_export,                                                            \
    }

UNARY_LAYER(silu, LMN_UNARY_SILU);
UNARY_LAYER(mish, LMN_UNARY_MISH);

/* ---- hardtanh ---- */

typedef struct {
    float lo, hi;
} Hardtanh;

static gboolean hardtanh_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                               LmnTensorInfo *output, GError **error)
{
    const LmnParams *p = lmn_layer_get_params(layer);
    Hardtanh *h = g_new0(Hardtanh, 1);
    h->lo = (float) lmn_params_get_float(p, "min_val");
    h->hi = (float) lmn_params_get_float(p, "max_val");
    lmn_layer_set_private(layer, h, g_free);
    if (!(h->lo < h->hi)) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (hardtanh): min_val = %g is not below max_val = %g; set "
                    "min_val < max_val",
                    lmn_layer_get_name(layer), h->lo, h->hi);
        return FALSE;
    }
    *output = inputs[0];
    return check_f32(layer, &inputs[0], 0, error);
}

static void hardtanh_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Hardtanh *h = lmn_layer_get_private(layer);
    lmn_op_copy(io->output, io->inputs[0]);
    lmn_op_clamp(io->output, h->lo, h->hi);
}

static void hardtanh_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Hardtanh *h = lmn_layer_get_private(layer);
    if (io->input_grads[0] != NULL)
        lmn_op_clamp_backward(io->inputs[0], io->output_grad, io->input_grads[0], h->lo, h->hi);
}

/* Clip with its bounds as inputs (opset 11). */
static gboolean hardtanh_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                                const char *output, GError **error)
{
    const Hardtanh *h = lmn_layer_get_private(layer);
    LmnShape scalar = lmn_shape_make(0);
    const char *lo =
        lmn_export_add_floats(ex, lmn_export_value_name(ex, layer, "min"), &scalar, &h->lo);
    const char *hi =
        lmn_export_add_floats(ex, lmn_export_value_name(ex, layer, "max"), &scalar, &h->hi);
    const char *in[] = {inputs[0], lo, hi, NULL}, *out[] = {output, NULL};
    lmn_export_require_opset(ex, 11);
    lmn_export_add_node(ex, "Clip", in, out, NULL);
    return TRUE;
}

static const LmnLayerVTable hardtanh_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .min_inputs = 1,
    .max_inputs = 1,
    .build = hardtanh_build,
    .forward = hardtanh_forward,
    .backward = hardtanh_backward,
    .export_onnx = hardtanh_export,
};

/* ---- log_softmax ---- */

enum { SAVED_STAT = 0, SAVED_ARGMAX = 1, SAVED_WORK = 2 };

typedef struct {
    gint64 rows, cols; /* rows per sample */
} LogSoftmax;

static gboolean logsoftmax_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                                 LmnTensorInfo *output, GError **error)
{
    if (!check_f32(layer, &inputs[0], 1, error))
        return FALSE;
    const LmnShape *s = &inputs[0].shape;
    LogSoftmax *ls = g_new0(LogSoftmax, 1);
    ls->cols = s->dims[s->ndim - 1];
    ls->rows = lmn_shape_numel(s) / ls->cols;
    lmn_layer_set_private(layer, ls, g_free);
    LmnShape rows = lmn_shape_make(1, ls->rows);
    lmn_layer_add_saved(layer, "stat", &rows, LMN_DTYPE_F32, TRUE);
    lmn_layer_add_saved(layer, "argmax", &rows, LMN_DTYPE_I32, TRUE);
    lmn_layer_add_saved(layer, "work", s, LMN_DTYPE_F32, TRUE);
    *output = inputs[0];
    return TRUE;
}

/* [rows, cols] against a per-row [rows, 1]. */
static void row_broadcast(const LogSoftmax *ls, gint64 batch, LmnBroadcast *bc)
{
    LmnShape x = lmn_shape_make(2, batch * ls->rows, ls->cols);
    LmnShape r = lmn_shape_make(2, batch * ls->rows, (gint64) 1);
    lmn_broadcast_init(bc, &x, &r, NULL);
}

static void logsoftmax_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const LogSoftmax *ls = lmn_layer_get_private(layer);
    const gint64 rows = io->batch * ls->rows;
    LmnTensor *stat = lmn_layer_get_saved(layer, SAVED_STAT);
    LmnTensor *work = lmn_layer_get_saved(layer, SAVED_WORK);
    LmnBroadcast bc;
    row_broadcast(ls, io->batch, &bc);
    lmn_op_reduce_axis(LMN_AXIS_MAX, io->inputs[0], stat, lmn_layer_get_saved(layer, SAVED_ARGMAX),
                       rows, ls->cols, 1);
    lmn_op_binary_broadcast(LMN_BINARY_SUB, io->inputs[0], stat, io->output, &bc);
    lmn_op_unary(LMN_UNARY_EXP, io->output, work, 0.0f);
    lmn_op_reduce_axis(LMN_AXIS_SUM, work, stat, NULL, rows, ls->cols, 1);
    lmn_op_unary(LMN_UNARY_LOG, stat, stat, 0.0f);
    lmn_op_binary_broadcast(LMN_BINARY_SUB, io->output, stat, io->output, &bc);
}

static void logsoftmax_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const LogSoftmax *ls = lmn_layer_get_private(layer);
    LmnTensor *dx = io->input_grads[0];
    if (dx == NULL)
        return;
    LmnTensor *stat = lmn_layer_get_saved(layer, SAVED_STAT);
    LmnTensor *work = lmn_layer_get_saved(layer, SAVED_WORK);
    LmnBroadcast bc;
    row_broadcast(ls, io->batch, &bc);
    lmn_op_reduce_axis(LMN_AXIS_SUM, io->output_grad, stat, NULL, io->batch * ls->rows, ls->cols,
                       1);
    lmn_op_unary(LMN_UNARY_EXP, io->output, work, 0.0f);
    lmn_op_binary_broadcast(LMN_BINARY_MUL, work, stat, work, &bc);
    lmn_op_binary(LMN_BINARY_SUB, io->output_grad, work, dx);
}

static gboolean logsoftmax_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                                  const char *output, GError **error)
{
    const LmnExportAttr attrs[] = {LMN_EXPORT_ATTR_I("axis", -1), LMN_EXPORT_ATTRS_END};
    lmn_export_require_opset(ex, 13); /* axis = -1 means the last axis alone from opset 13 on */
    export_node(ex, "LogSoftmax", inputs[0], NULL, output, attrs);
    return TRUE;
}

static const LmnLayerVTable logsoftmax_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .min_inputs = 1,
    .max_inputs = 1,
    .build = logsoftmax_build,
    .forward = logsoftmax_forward,
    .backward = logsoftmax_backward,
    .export_onnx = logsoftmax_export,
};

static const LmnParamSpec hardtanh_params[] = {
    LMN_PARAM_SPEC_FLOAT("min_val", "-1.0", -1e30, 1e30, 0, "the lower bound (nn.Hardtanh)"),
    LMN_PARAM_SPEC_FLOAT("max_val", "1.0", -1e30, 1e30, 0, "the upper bound (nn.Hardtanh)"),
    LMN_PARAM_SPEC_END,
};

static const LmnFeatureDesc activation_ext_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "silu", "sigmoid-weighted linear unit x sigmoid(x) (nn.SiLU)",
                NULL, &silu_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "mish", "x tanh(softplus(x)) (nn.Mish)", NULL, &mish_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "hardtanh", "clamp to [min_val, max_val] (nn.Hardtanh)",
                hardtanh_params, &hardtanh_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "log_softmax",
                "logarithm of the softmax over the last dimension (nn.LogSoftmax(dim=-1))", NULL,
                &logsoftmax_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.activations-ext", LMN_VERSION_STRING, "MIT",
                           "Activation layers on the ABI 1.3 ops", activation_ext_features)
