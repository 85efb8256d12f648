/* Lamina — the dense (fully connected) layer: y = x W^T + b, as torch.nn.Linear.
 *
 * Parameters use PyTorch's names and shapes (weight [units, in], bias [units]) and PyTorch's
 * default initialisation, so a checkpoint loads into nn.Linear by name and a fresh model starts
 * from the same distribution.
 */
#include <math.h>

#include <lamina/lamina.h>

enum { PARAM_WEIGHT = 0, PARAM_BIAS = 1 };
enum { SAVED_ONES = 0 };

typedef struct {
    gint64 in;
    gint64 units;
    gboolean bias;
} Dense;

static gboolean dense_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                            LmnTensorInfo *output, GError **error)
{
    const LmnParams *p = lmn_layer_get_params(layer);
    const LmnShape *s = &inputs[0].shape;
    if (s->ndim != 1) {
        g_autofree char *shape = lmn_shape_to_string(s);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (dense): its input has per-sample shape %s, but dense takes a 1-D "
                    "input [features]; add a flatten layer before it",
                    lmn_layer_get_name(layer), shape);
        return FALSE;
    }
    if (inputs[0].dtype != LMN_DTYPE_F32) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (dense): its input is %s, but dense takes f32 values",
                    lmn_layer_get_name(layer), lmn_dtype_name(inputs[0].dtype));
        return FALSE;
    }

    Dense *d = g_new0(Dense, 1);
    d->in = s->dims[0];
    d->units = lmn_params_get_int(p, "units");
    d->bias = lmn_params_get_bool(p, "bias");
    lmn_layer_set_private(layer, d, g_free);

    /*
     * torch.nn.Linear.reset_parameters: kaiming_uniform_(weight, a=sqrt(5)) gives
     * U(-1/sqrt(in), 1/sqrt(in)); the bias is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), which is the
     * same he_uniform with a = sqrt(5) seeing the weight's fan_in.
     */
    LmnShape w = lmn_shape_make(2, d->units, d->in);
    double fan_in = (double) d->in, fan_out = (double) d->units;
    lmn_layer_add_param(layer, "weight", &w, LMN_PARAM_ROLE_WEIGHT, "he_uniform",
                        "a=2.23606797749979, mode=fan_in", fan_in, fan_out);
    if (d->bias) {
        LmnShape b = lmn_shape_make(1, d->units);
        lmn_layer_add_param(layer, "bias", &b, LMN_PARAM_ROLE_BIAS, "he_uniform",
                            "a=2.23606797749979, mode=fan_in", fan_in, fan_out);
        /* A column of ones: the bias enters the output through the same GEMM machinery. */
        LmnShape one = lmn_shape_make(1, (gint64) 1);
        lmn_layer_add_saved(layer, "ones", &one, LMN_DTYPE_F32, TRUE);
    }

    output->shape = lmn_shape_make(1, d->units);
    output->dtype = LMN_DTYPE_F32;
    return TRUE;
}

static void dense_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Dense *d = lmn_layer_get_private(layer);
    float beta = 0.0f;
    if (d->bias) {
        /*
         * y = ones[N, 1] * b[1, units] first, then y += x W^T with beta = 1: the bias costs no
         * separate read-modify-write pass over y, as a bias_add after the GEMM would.
         */
        LmnTensor *ones = lmn_layer_get_saved(layer, SAVED_ONES);
        lmn_op_fill(ones, 1.0f);
        LmnGemm g = {
            .struct_size = sizeof(LmnGemm),
            .m = io->batch,
            .n = d->units,
            .k = 1,
            .alpha = 1.0f,
            .beta = 0.0f,
            .a = ones,
            .b = lmn_layer_get_param(layer, PARAM_BIAS),
            .c = io->output,
        };
        lmn_op_gemm(&g);
        beta = 1.0f;
    }
    LmnGemm g = {
        .struct_size = sizeof(LmnGemm),
        .trans_b = TRUE,
        .m = io->batch,
        .n = d->units,
        .k = d->in,
        .alpha = 1.0f,
        .beta = beta,
        .a = io->inputs[0],
        .b = lmn_layer_get_param(layer, PARAM_WEIGHT),
        .c = io->output,
    };
    lmn_op_gemm(&g);
}

/* dW = dy^T x and db from the output gradient. */
static void dense_param_grads(LmnLayer *layer, const Dense *d, const LmnLayerIO *io)
{
    /* dW [units, in] = dy^T [units, N] x [N, in] */
    LmnGemm gw = {
        .struct_size = sizeof(LmnGemm),
        .trans_a = TRUE,
        .m = d->units,
        .n = d->in,
        .k = io->batch,
        .alpha = 1.0f,
        .beta = 0.0f,
        .a = io->output_grad,
        .b = io->inputs[0],
        .c = lmn_layer_get_grad(layer, PARAM_WEIGHT),
    };
    lmn_op_gemm(&gw);
    if (d->bias) {
        lmn_op_bias_grad(lmn_layer_get_grad(layer, PARAM_BIAS), io->output_grad, io->batch,
                         d->units, 1, 0.0f);
    }
}

static void dense_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Dense *d = lmn_layer_get_private(layer);
    /* (an input-gradient-only pass, e.g. an attack, needs no dW) */
    if (!io->skip_param_grads)
        dense_param_grads(layer, d, io);
    if (io->input_grads[0] != NULL) {
        /* dx [N, in] = dy [N, units] W [units, in] */
        LmnGemm gx = {
            .struct_size = sizeof(LmnGemm),
            .m = io->batch,
            .n = d->in,
            .k = d->units,
            .alpha = 1.0f,
            .beta = 0.0f,
            .a = io->output_grad,
            .b = lmn_layer_get_param(layer, PARAM_WEIGHT),
            .c = io->input_grads[0],
        };
        lmn_op_gemm(&gx);
    }
}

static const LmnParamSpec dense_params[] = {
    LMN_PARAM_SPEC_INT("units", NULL, 1, (double) G_MAXINT32, LMN_PARAM_FLAG_REQUIRED,
                       "number of output features (out_features)"),
    LMN_PARAM_SPEC_BOOL("bias", "true", "add a learnable bias"),
    LMN_PARAM_SPEC_END,
};

/* nn.Linear's y = x W^T + b is ONNX's Gemm with transB = 1, reading the weight as stored. */
static gboolean dense_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                             const char *output, GError **error)
{
    const Dense *d = lmn_layer_get_private(layer);
    const char *w = lmn_export_add_param(ex, layer, "weight", error);
    const char *b = w && d->bias ? lmn_export_add_param(ex, layer, "bias", error) : NULL;
    if (w == NULL || (d->bias && b == NULL))
        return FALSE;
    const char *in[] = {inputs[0], w, b, NULL};
    const char *out[] = {output, NULL};
    const LmnExportAttr attrs[] = {LMN_EXPORT_ATTR_I("transB", 1), LMN_EXPORT_ATTRS_END};
    lmn_export_add_node(ex, "Gemm", in, out, attrs);
    return TRUE;
}

static const LmnLayerVTable dense_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_NONE,
    .min_inputs = 1,
    .max_inputs = 1,
    .build = dense_build,
    .forward = dense_forward,
    .backward = dense_backward,
    .export_onnx = dense_export,
};

static const LmnFeatureDesc dense_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "dense",
                "fully connected layer y = x W^T + b on 1-D inputs (torch.nn.Linear); "
                "weight_init / bias_init choose other initializers",
                dense_params, &dense_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.dense", LMN_VERSION_STRING, "MIT",
                           "Dense (fully connected) layer", dense_features)
