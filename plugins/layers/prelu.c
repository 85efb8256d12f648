/* Lamina — parametric ReLU, as torch.nn.PReLU: y = max(0, x) + weight[c] * min(0, x), with one
 * learnable slope (num_parameters = 1) or one per channel (the first per-sample axis).
 *
 * Built from the op set alone, so every backend runs it: with neg = x - relu(x) = min(0, x),
 * the per-channel scaling weight[c] * neg is a batched GEMM with the diagonal matrix diag(weight)
 * [C, C] (copied onto a zeroed matrix with copy_block, a stride of 0 for a single slope), added
 * with beta = 1 onto relu(x).  Backward: dx = relu'(x) dy + diag(weight) (dy - relu'(x) dy), and
 * dweight[c] = sum of dy * neg over channel c, a bias-gradient reduction.
 * (examples/plugin-layer/ shows the same layer written as an out-of-tree plugin with its own
 * kernels.)
 */
#include <math.h>

#include <lamina/lamina.h>

enum { SAVED_NEG = 0, SAVED_DIAG = 1, SAVED_TERMS = 2 };

typedef struct {
    gint64 params;   /* num_parameters */
    gint64 channels; /* channels of the input the slopes map onto (1 for one slope) */
    gint64 inner;    /* elements per channel and sample */
} Prelu;

static gboolean prelu_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                            LmnTensorInfo *output, GError **error)
{
    const LmnParams *params = lmn_layer_get_params(layer);
    const LmnShape *in = &inputs[0].shape;
    g_autofree char *shape = lmn_shape_to_string(in);
    gint64 n = lmn_params_get_int(params, "num_parameters");
    if (inputs[0].dtype != LMN_DTYPE_F32 || in->ndim < 1 || (n != 1 && in->dims[0] != n)) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (prelu): num_parameters = %" G_GINT64_FORMAT " does not fit its "
                    "%s input %s; prelu takes f32 [channels, ...]: set num_parameters to 1 or to "
                    "the channel count (the first per-sample dimension)",
                    lmn_layer_get_name(layer), n, lmn_dtype_name(inputs[0].dtype), shape);
        return FALSE;
    }
    Prelu *p = g_new0(Prelu, 1);
    p->params = n;
    p->channels = in->dims[0];
    p->inner = 1;
    for (guint i = 1; i < in->ndim; i++)
        p->inner *= in->dims[i]; /* the input fits a tensor (checked by the core) */
    lmn_layer_set_private(layer, p, g_free);
    LmnShape w = lmn_shape_make(1, n);
    g_autofree char *init = g_strdup_printf("value=%.9g", lmn_params_get_float(params, "init"));
    lmn_layer_add_param(layer, "weight", &w, LMN_PARAM_ROLE_WEIGHT, "constant", init,
                        (double) p->inner, (double) p->inner);
    LmnShape diag = lmn_shape_make(2, p->channels, p->channels);
    if (!lmn_layer_check_size(layer, "its slope matrix", &diag, FALSE, LMN_DTYPE_F32,
                              "use num_parameters = 1 or fewer channels", error))
        return FALSE;
    lmn_layer_add_saved(layer, "negative_part", in, LMN_DTYPE_F32, TRUE);
    lmn_layer_add_saved(layer, "slopes", &diag, LMN_DTYPE_F32, FALSE);
    lmn_layer_add_saved(layer, "weight_grad_terms", in, LMN_DTYPE_F32, TRUE);
    *output = inputs[0];
    return TRUE;
}

/* diag(weight) [C, C]: weight[c] (or the one slope) on the diagonal. */
static LmnTensor *prelu_diag(LmnLayer *layer, const Prelu *p)
{
    LmnTensor *diag = lmn_layer_get_saved(layer, SAVED_DIAG);
    lmn_op_fill(diag, 0.0f);
    lmn_op_copy_block(diag, 0, p->channels + 1, lmn_layer_get_param(layer, 0), 0,
                      p->params == 1 ? 0 : 1, p->channels, 1, 0.0f);
    return diag;
}

/* out[n] [C, inner] += diag [C, C] x in[n] [C, inner] for every sample n */
static void prelu_scale(const Prelu *p, LmnTensor *diag, LmnTensor *in, LmnTensor *out,
                        gint64 batch)
{
    LmnGemm g = {
        .struct_size = sizeof(LmnGemm),
        .m = p->channels,
        .n = p->inner,
        .k = p->channels,
        .alpha = 1.0f,
        .beta = 1.0f,
        .a = diag,
        .b = in,
        .c = out,
        .batch = batch,
        .stride_a = 0,
        .stride_b = p->channels * p->inner,
        .stride_c = p->channels * p->inner,
    };
    lmn_op_gemm(&g);
}

static void prelu_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Prelu *p = lmn_layer_get_private(layer);
    LmnTensor *neg = lmn_layer_get_saved(layer, SAVED_NEG);
    lmn_op_unary(LMN_UNARY_RELU, io->inputs[0], io->output, 0.0f);
    lmn_op_binary(LMN_BINARY_SUB, io->inputs[0], io->output, neg);
    prelu_scale(p, prelu_diag(layer, p), neg, io->output, io->batch);
}

static void prelu_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Prelu *p = lmn_layer_get_private(layer);
    LmnTensor *neg = lmn_layer_get_saved(layer, SAVED_NEG);
    LmnTensor *terms = lmn_layer_get_saved(layer, SAVED_TERMS);
    if (!io->skip_param_grads) {
        lmn_op_binary(LMN_BINARY_MUL, io->output_grad, neg, terms);
        gint64 ch = p->params == 1 ? 1 : p->channels;
        lmn_op_bias_grad(lmn_layer_get_grad(layer, 0), terms, io->batch, ch,
                         p->channels * p->inner / ch, 0.0f);
    }
    LmnTensor *dx = io->input_grads[0];
    if (dx == NULL)
        return;
    /* dx = relu'(x) dy, then the rest of dy, (1 - relu'(x)) dy, scaled by the slopes */
    lmn_op_unary_backward(LMN_UNARY_RELU, io->inputs[0], io->output, io->output_grad, dx, 0.0f);
    lmn_op_binary(LMN_BINARY_SUB, io->output_grad, dx, terms);
    prelu_scale(p, prelu_diag(layer, p), terms, dx, io->batch);
}

static const LmnParamSpec prelu_params[] = {
    LMN_PARAM_SPEC_INT("num_parameters", "1", 1, (double) G_MAXINT32, 0,
                       "slopes: 1, or one per channel (the first per-sample dimension)"),
    LMN_PARAM_SPEC_FLOAT("init", "0.25", -INFINITY, INFINITY, 0, "initial slope"),
    LMN_PARAM_SPEC_END,
};

static const LmnLayerVTable prelu_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .min_inputs = 1,
    .max_inputs = 1,
    .build = prelu_build,
    .forward = prelu_forward,
    .backward = prelu_backward,
};

static const LmnFeatureDesc prelu_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "prelu",
                "x for x > 0, weight[c] * x below, learnable slopes (torch.nn.PReLU)", prelu_params,
                &prelu_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.prelu", LMN_VERSION_STRING, "MIT", "Parametric ReLU layer",
                           prelu_features)
