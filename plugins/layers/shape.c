/* Lamina — reshape: [N, per-sample dims...] -> [N, shape...], as x.reshape(N, *shape).
 *
 * `shape` lists the per-sample dimensions (the batch dimension stays in front and is not
 * listed); one entry may be -1 and is then inferred from the element count, as in PyTorch.
 * Row-major storage makes this a relabelling of the same bytes; the layer API hands a layer its
 * output tensor rather than letting it return a view, so forward and backward are plain copies.
 */
#include <math.h>

#include <lamina/lamina.h>

static gboolean reshape_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                              LmnTensorInfo *output, GError **error)
{
    const char *name = lmn_layer_get_name(layer);
    gsize n = 0;
    const double *dims = lmn_params_get_float_list(lmn_layer_get_params(layer), "shape", &n);
    g_autofree char *in_text = lmn_shape_to_string(&inputs[0].shape);
    if (n == 0 || n > LMN_MAX_DIMS - 1) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (reshape): shape has %" G_GSIZE_FORMAT " dimensions; give 1 to "
                    "%d per-sample dimensions (the batch dimension is not listed)",
                    name, n, LMN_MAX_DIMS - 1);
        return FALSE;
    }
    LmnShape out = {.ndim = (guint) n};
    gint64 known = 1;
    gint infer = -1;
    for (gsize i = 0; i < n; i++) {
        double d = dims[i];
        if (d == -1.0 && infer < 0) {
            infer = (gint) i;
            out.dims[i] = 1;
            continue;
        }
        if (d != floor(d) || d < 1.0 || d > (double) G_MAXINT32) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                        "layer '%s' (reshape): shape entry %" G_GSIZE_FORMAT " is %g; entries "
                        "are positive integers, and at most one may be -1 (inferred)",
                        name, i, d);
            return FALSE;
        }
        out.dims[i] = (gint64) d;
    }
    /* Checked: up to four entries of 2^31 overflow 64 bits, and a product that wrapped could
     * match the input's count (a ~3.7e22-element shape passed for a 784-element one). */
    if (!lmn_layer_check_size(layer, "its output", &out, TRUE, inputs[0].dtype,
                              "give a shape with as many values as the input", error)) {
        return FALSE;
    }
    lmn_shape_numel_checked(&out, &known); /* the -1 entry counts as 1 here */
    gint64 numel = lmn_shape_numel(&inputs[0].shape);
    if (infer >= 0) {
        if (numel % known != 0) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                        "layer '%s' (reshape): the input %s has %" G_GINT64_FORMAT " elements "
                        "per sample, not a multiple of %" G_GINT64_FORMAT " (the product of the "
                        "given dimensions), so the -1 entry cannot be inferred",
                        name, in_text, numel, known);
            return FALSE;
        }
        out.dims[infer] = numel / known;
    }
    gint64 out_numel = lmn_shape_numel(&out);
    if (out_numel != numel) {
        g_autofree char *out_text = lmn_shape_to_string(&out);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (reshape): cannot reshape the input %s (%" G_GINT64_FORMAT
                    " elements per sample) to %s (%" G_GINT64_FORMAT " elements)",
                    name, in_text, numel, out_text, out_numel);
        return FALSE;
    }
    output->shape = out;
    output->dtype = inputs[0].dtype;
    return TRUE;
}

static void reshape_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    lmn_op_copy(io->output, io->inputs[0]);
}

static void reshape_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    if (io->input_grads[0] != NULL) {
        lmn_op_copy(io->input_grads[0], io->output_grad);
    }
}

static const LmnParamSpec reshape_params[] = {
    LMN_PARAM_SPEC_FLOAT_LIST(
        "shape", NULL, -1, (double) G_MAXINT32, LMN_PARAM_FLAG_REQUIRED,
        "per-sample output dimensions, e.g. \"1, 28, 28\"; one may be -1 (inferred)"),
    LMN_PARAM_SPEC_END,
};

/* Reshape to [0, output dims...]: 0 keeps the batch dimension symbolic (allowzero = 0). */
static gboolean reshape_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                               const char *output, GError **error)
{
    const LmnShape *s = &lmn_layer_get_output_info(layer)->shape;
    gint64 dims[LMN_MAX_DIMS + 1] = {0};
    for (guint d = 0; d < s->ndim; d++)
        dims[d + 1] = s->dims[d];
    const char *shape =
        lmn_export_add_ints(ex, lmn_export_value_name(ex, layer, "shape"), dims, s->ndim + 1);
    const char *in[] = {inputs[0], shape, NULL}, *out[] = {output, NULL};
    lmn_export_add_node(ex, "Reshape", in, out, NULL);
    return TRUE;
}

static const LmnLayerVTable reshape_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_NONE,
    .min_inputs = 1,
    .max_inputs = 1,
    .build = reshape_build,
    .forward = reshape_forward,
    .backward = reshape_backward,
    .export_onnx = reshape_export,
};

static const LmnFeatureDesc shape_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "reshape",
                "gives each sample another shape with the same element count "
                "(x.reshape(N, *shape))",
                reshape_params, &reshape_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.shape", LMN_VERSION_STRING, "MIT", "Shape layers: reshape",
                           shape_features)
