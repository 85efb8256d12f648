/* Lamina — embedding: a lookup table of num_embeddings vectors of embedding_dim values, as
 * torch.nn.Embedding.
 *
 * Input: per-sample indices of any shape S (typically [T], a sequence) as f32 holding integral
 * values (what datasets deliver) or i32; output: S + [embedding_dim].  The weight
 * [num_embeddings, embedding_dim] starts as N(0, 1), PyTorch's default, and is saved under
 * PyTorch's name, so a checkpoint loads into nn.Embedding.
 *
 * Backward zero-fills the weight gradient and scatter-adds the output gradient into the rows
 * that were read (an index appearing twice accumulates twice).  Indices are not differentiable:
 * an f32 index input gets a zero gradient.  The ops treat an index outside
 * [0, num_embeddings) as a zero row that receives no gradient.  Forward cannot report errors
 * and, on a device backend, cannot see its input, so build() declares the input as indices
 * (lmn_layer_declare_index_input): when it is the model's input the core checks every batch in
 * host memory, before it reaches any backend, and refuses a fractional or out-of-range value
 * with an error naming the sample and value (so float pixels are not silently truncated).
 */
#include <lamina/lamina.h>

enum { PARAM_WEIGHT = 0 };

typedef struct {
    gint64 indices_per_sample;
    gint64 dim;
} Embedding;

static gboolean embedding_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                                LmnTensorInfo *output, GError **error)
{
    const LmnParams *p = lmn_layer_get_params(layer);
    const LmnShape *s = &inputs[0].shape;
    if (s->ndim > LMN_MAX_DIMS - 2) {
        g_autofree char *shape = lmn_shape_to_string(s);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (embedding): its input has per-sample shape %s; with the batch "
                    "and embedding dimensions the output would exceed %d dimensions",
                    lmn_layer_get_name(layer), shape, LMN_MAX_DIMS);
        return FALSE;
    }
    /* The output is the input's shape plus embedding_dim values per index. */
    LmnShape out = *s;
    out.dims[out.ndim++] = lmn_params_get_int(p, "embedding_dim");
    if (!lmn_layer_check_size(layer, "its output", &out, TRUE, LMN_DTYPE_F32,
                              "use a smaller embedding_dim or fewer indices per sample", error)) {
        return FALSE;
    }
    Embedding *e = g_new0(Embedding, 1);
    e->indices_per_sample = lmn_shape_numel(s);
    e->dim = lmn_params_get_int(p, "embedding_dim");
    lmn_layer_set_private(layer, e, g_free);
    lmn_layer_declare_index_input(layer, 0, lmn_params_get_int(p, "num_embeddings"));

    LmnShape w = lmn_shape_make(2, lmn_params_get_int(p, "num_embeddings"), e->dim);
    double fan_in, fan_out;
    lmn_shape_fans(&w, &fan_in, &fan_out);
    /* torch.nn.Embedding.reset_parameters: normal_(weight) = N(0, 1). */
    lmn_layer_add_param(layer, "weight", &w, LMN_PARAM_ROLE_WEIGHT, "normal", "mean=0, std=1",
                        fan_in, fan_out);

    output->shape = out;
    output->dtype = LMN_DTYPE_F32;
    return TRUE;
}

static void embedding_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Embedding *e = lmn_layer_get_private(layer);
    lmn_op_gather_rows(lmn_layer_get_param(layer, PARAM_WEIGHT), io->inputs[0], io->output,
                       io->batch * e->indices_per_sample, e->dim);
}

static void embedding_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Embedding *e = lmn_layer_get_private(layer);
    LmnTensor *dw = lmn_layer_get_grad(layer, PARAM_WEIGHT);
    /* Gradients are overwritten, not accumulated across steps: start from zero. */
    lmn_op_fill(dw, 0.0f);
    lmn_op_scatter_add_rows(dw, io->inputs[0], io->output_grad, io->batch * e->indices_per_sample,
                            e->dim);
    if (io->input_grads[0] != NULL) {
        lmn_op_fill(io->input_grads[0], 0.0f);
    }
}

static const LmnParamSpec embedding_params[] = {
    LMN_PARAM_SPEC_INT("num_embeddings", NULL, 1, (double) G_MAXINT32, LMN_PARAM_FLAG_REQUIRED,
                       "size of the table: indices run from 0 to num_embeddings - 1"),
    LMN_PARAM_SPEC_INT("embedding_dim", NULL, 1, (double) G_MAXINT32, LMN_PARAM_FLAG_REQUIRED,
                       "length of each embedding vector"),
    LMN_PARAM_SPEC_END,
};

/* The indices arrive as floats (as datasets deliver them): Cast to int64, then Gather rows. */
static gboolean embedding_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                                 const char *output, GError **error)
{
    const char *w = lmn_export_add_param(ex, layer, "weight", error);
    if (w == NULL)
        return FALSE;
    const char *idx = lmn_export_value_name(ex, layer, "indices");
    const char *in[] = {inputs[0], NULL}, *mid[] = {idx, NULL};
    /* 7: TensorProto.INT64 */
    const LmnExportAttr to[] = {LMN_EXPORT_ATTR_I("to", 7), LMN_EXPORT_ATTRS_END};
    lmn_export_add_node(ex, "Cast", in, mid, to);
    const char *gin[] = {w, idx, NULL}, *out[] = {output, NULL};
    const LmnExportAttr axis[] = {LMN_EXPORT_ATTR_I("axis", 0), LMN_EXPORT_ATTRS_END};
    lmn_export_add_node(ex, "Gather", gin, out, axis);
    return TRUE;
}

static const LmnLayerVTable embedding_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_NONE,
    .min_inputs = 1,
    .max_inputs = 1,
    .build = embedding_build,
    .forward = embedding_forward,
    .backward = embedding_backward,
    .export_onnx = embedding_export,
};

static const LmnFeatureDesc embedding_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "embedding",
                "looks up a learned vector per integer index: [T] -> [T, embedding_dim] "
                "(nn.Embedding)",
                embedding_params, &embedding_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.embedding", LMN_VERSION_STRING, "MIT",
                           "Embedding (lookup table) layer", embedding_features)
