/* Lamina — layers that merge several inputs: add (residual connections) and concat.
 *
 *   add:    y = x_0 + x_1 + ... (equal shapes), as `a + b` in PyTorch; dx_i = dy.
 *   concat: y = torch.cat([x_0, x_1, ...], dim = axis + 1): `axis` counts per-sample dimensions
 *           (0 = channels of [C, H, W], the batch dimension is never concatenated); every other
 *           dimension must agree.
 *
 * Concatenation along a per-sample axis is, in row-major order, a block copy: with
 * outer = N * prod(dims before axis) and inner_i = prod(dims from axis on) of input i, input i
 * fills columns [offset_i, offset_i + inner_i) of the output viewed as [outer, sum inner_i].
 * Forward and backward are one lmn_op_copy_block per input each way.
 */
#include <lamina/lamina.h>

/* A sanity limit on fan-in so the private arrays stay small; any real graph is far below it. */
#define MERGE_MAX_INPUTS 64

/* ---- add ---- */

static gboolean add_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                          LmnTensorInfo *output, GError **error)
{
    for (guint i = 0; i < n_inputs; i++) {
        if (inputs[i].dtype != LMN_DTYPE_F32 ||
            !lmn_shape_equal(&inputs[i].shape, &inputs[0].shape)) {
            g_autofree char *s0 = lmn_shape_to_string(&inputs[0].shape);
            g_autofree char *si = lmn_shape_to_string(&inputs[i].shape);
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                        "layer '%s' (add): input %u is %s %s but input 0 is %s %s; add takes f32 "
                        "inputs of one per-sample shape",
                        lmn_layer_get_name(layer), i, lmn_dtype_name(inputs[i].dtype), si,
                        lmn_dtype_name(inputs[0].dtype), s0);
            return FALSE;
        }
    }
    *output = inputs[0];
    return TRUE;
}

static void add_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    lmn_op_copy(io->output, io->inputs[0]);
    for (guint i = 1; i < io->n_inputs; i++) {
        lmn_op_binary(LMN_BINARY_ADD, io->output, io->inputs[i], io->output);
    }
}

static void add_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    for (guint i = 0; i < io->n_inputs; i++) {
        if (io->input_grads[i] != NULL) {
            lmn_op_copy(io->input_grads[i], io->output_grad);
        }
    }
}

/* A chain of binary Adds in input order, the order forward sums in. */
static gboolean add_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                           const char *output, GError **error)
{
    guint n = g_strv_length((char **) inputs);
    const char *acc = inputs[0];
    for (guint i = 1; i < n; i++) {
        g_autofree char *suffix = g_strdup_printf("sum%u", i);
        const char *sum = i + 1 == n ? output : lmn_export_value_name(ex, layer, suffix);
        const char *in[] = {acc, inputs[i], NULL}, *out[] = {sum, NULL};
        lmn_export_add_node(ex, "Add", in, out, NULL);
        acc = sum;
    }
    return TRUE;
}

static const LmnLayerVTable add_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_NONE,
    .min_inputs = 2,
    .max_inputs = MERGE_MAX_INPUTS,
    .build = add_build,
    .forward = add_forward,
    .backward = add_backward,
    .export_onnx = add_export,
};

/* ---- concat ---- */

typedef struct {
    guint n_inputs;
    gint64 outer_per_sample;         /* prod(dims before axis) */
    gint64 out_inner;                /* sum of inner */
    gint64 inner[MERGE_MAX_INPUTS];  /* prod(dims from axis on) of each input */
    gint64 offset[MERGE_MAX_INPUTS]; /* its first column in the output */
} Concat;

static gboolean concat_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                             LmnTensorInfo *output, GError **error)
{
    const char *name = lmn_layer_get_name(layer);
    const LmnShape *s0 = &inputs[0].shape;
    gint64 axis = lmn_params_get_int(lmn_layer_get_params(layer), "axis");
    gint64 ndim = (gint64) s0->ndim;
    if (axis < -ndim || axis >= ndim) {
        g_autofree char *shape = lmn_shape_to_string(s0);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (concat): axis = %" G_GINT64_FORMAT " is outside the per-sample "
                    "shape %s of its inputs (valid: %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT
                    "; the batch dimension is not counted)",
                    name, axis, shape, -ndim, ndim - 1);
        return FALSE;
    }
    if (axis < 0) {
        axis += ndim;
    }
    LmnShape out = *s0;
    out.dims[axis] = 0;
    for (guint i = 0; i < n_inputs; i++) {
        const LmnShape *si = &inputs[i].shape;
        gboolean ok = inputs[i].dtype == LMN_DTYPE_F32 && si->ndim == s0->ndim;
        for (guint d = 0; ok && d < s0->ndim; d++) {
            ok = (gint64) d == axis || si->dims[d] == s0->dims[d];
        }
        if (!ok) {
            g_autofree char *a = lmn_shape_to_string(s0);
            g_autofree char *b = lmn_shape_to_string(si);
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                        "layer '%s' (concat): input %u is %s %s but input 0 is %s %s; concat "
                        "along axis %" G_GINT64_FORMAT " needs f32 inputs whose other dimensions "
                        "are equal",
                        name, i, lmn_dtype_name(inputs[i].dtype), b,
                        lmn_dtype_name(inputs[0].dtype), a, axis);
            return FALSE;
        }
        /* Each input fits a tensor (the core checked them before build()), but their sum along
         * the axis may not fit gint64. */
        if (__builtin_add_overflow(out.dims[axis], si->dims[axis], &out.dims[axis])) {
            out.dims[axis] = G_MAXINT64;
        }
    }
    if (!lmn_layer_check_size(layer, "its output", &out, TRUE, LMN_DTYPE_F32,
                              "concatenate fewer or smaller inputs", error)) {
        return FALSE;
    }

    Concat *c = g_new0(Concat, 1);
    c->n_inputs = n_inputs;
    c->outer_per_sample = 1;
    for (gint64 d = 0; d < axis; d++) {
        c->outer_per_sample *= s0->dims[d];
    }
    for (guint i = 0; i < n_inputs; i++) {
        c->inner[i] = lmn_shape_numel(&inputs[i].shape) / MAX(c->outer_per_sample, 1);
        c->offset[i] = c->out_inner;
        c->out_inner += c->inner[i];
    }
    lmn_layer_set_private(layer, c, g_free);
    output->shape = out;
    output->dtype = LMN_DTYPE_F32;
    return TRUE;
}

static void concat_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Concat *c = lmn_layer_get_private(layer);
    gint64 rows = io->batch * c->outer_per_sample;
    for (guint i = 0; i < c->n_inputs; i++) {
        if (c->inner[i] > 0) {
            lmn_op_copy_block(io->output, c->offset[i], c->out_inner, io->inputs[i], 0, c->inner[i],
                              rows, c->inner[i], 0.0f);
        }
    }
}

static void concat_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Concat *c = lmn_layer_get_private(layer);
    gint64 rows = io->batch * c->outer_per_sample;
    for (guint i = 0; i < c->n_inputs; i++) {
        if (io->input_grads[i] != NULL && c->inner[i] > 0) {
            lmn_op_copy_block(io->input_grads[i], 0, c->inner[i], io->output_grad, c->offset[i],
                              c->out_inner, rows, c->inner[i], 0.0f);
        }
    }
}

static const LmnParamSpec concat_params[] = {
    LMN_PARAM_SPEC_INT(
        "axis", "0", -LMN_MAX_DIMS, LMN_MAX_DIMS - 1, 0,
        "per-sample dimension to join along (0 = channels; negative counts from the end); "
        "torch.cat's dim is axis + 1"),
    LMN_PARAM_SPEC_END,
};

/* ONNX's Concat counts the batch dimension, so its axis is the per-sample one plus 1. */
static gboolean concat_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                              const char *output, GError **error)
{
    gint64 axis = lmn_params_get_int(lmn_layer_get_params(layer), "axis");
    if (axis < 0)
        axis += (gint64) lmn_layer_get_output_info(layer)->shape.ndim;
    const char *out[] = {output, NULL};
    const LmnExportAttr attrs[] = {LMN_EXPORT_ATTR_I("axis", axis + 1), LMN_EXPORT_ATTRS_END};
    lmn_export_add_node(ex, "Concat", inputs, out, attrs);
    return TRUE;
}

static const LmnLayerVTable concat_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_NONE,
    .min_inputs = 2,
    .max_inputs = MERGE_MAX_INPUTS,
    .build = concat_build,
    .forward = concat_forward,
    .backward = concat_backward,
    .export_onnx = concat_export,
};

static const LmnFeatureDesc merge_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "add",
                "element-wise sum of 2 or more inputs of equal shape (residual "
                "connections); input = a, b, ...",
                NULL, &add_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "concat",
                "joins 2 or more inputs along a per-sample axis (torch.cat); "
                "input = a, b, ...",
                concat_params, &concat_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.merge", LMN_VERSION_STRING, "MIT",
                           "Layers merging several inputs: add, concat", merge_features)
