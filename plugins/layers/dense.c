/* Lamina — the dense (fully connected) layer: y = x W^T + b, as torch.nn.Linear.
 *
 * As nn.Linear, it applies to the last axis of an input of any rank: a per-sample input
 * [d1, ..., dk, in] is `outer` = d1 * ... * dk rows of `in` features, so the GEMMs below see
 * N * outer rows, and the output is [d1, ..., dk, units].
 *
 * Parameters use PyTorch's names and shapes (weight [units, in], bias [units]) and PyTorch's
 * default initialisation, so a checkpoint loads into nn.Linear by name and a fresh model starts
 * from the same distribution.
 */
#include <math.h>

#include <lamina/lamina.h>

enum { PARAM_WEIGHT = 0, PARAM_BIAS = 1 };

typedef struct {
    gint64 in;
    gint64 units;
    gint64 outer; /* rows per sample: the product of every axis but the last */
    guint rank;   /* of the per-sample input */
    gboolean bias;
} Dense;

static gboolean dense_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                            LmnTensorInfo *output, GError **error)
{
    const LmnParams *p = lmn_layer_get_params(layer);
    const LmnShape *s = &inputs[0].shape;
    if (s->ndim == 0) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (dense): its input is a scalar per sample, but dense takes an "
                    "input [..., features] and maps its last axis; reshape it to [1] first",
                    lmn_layer_get_name(layer));
        return FALSE;
    }
    if (inputs[0].dtype != LMN_DTYPE_F32) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (dense): its input is %s, but dense takes f32 values",
                    lmn_layer_get_name(layer), lmn_dtype_name(inputs[0].dtype));
        return FALSE;
    }

    Dense *d = g_new0(Dense, 1);
    d->in = s->dims[s->ndim - 1];
    d->units = lmn_params_get_int(p, "units");
    /* The core checked that the input fits a tensor, so this product cannot overflow. */
    d->rank = s->ndim;
    d->outer = 1;
    for (guint i = 0; i + 1 < s->ndim; i++)
        d->outer *= s->dims[i];
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
    }

    output->shape = *s;
    output->shape.dims[s->ndim - 1] = d->units;
    if (!lmn_layer_check_size(layer, "its output", &output->shape, TRUE, LMN_DTYPE_F32,
                              "use fewer units", error))
        return FALSE;
    output->dtype = LMN_DTYPE_F32;
    return TRUE;
}

/*
 * The bias is the GEMM's epilogue, added to each block of y as it is computed, and db comes out
 * of the weight-gradient GEMM as the row sums of its dy^T: no separate pass over y or dy where
 * the backend fuses them (lmn_op_gemm_ex composes the same ops where it does not).
 */
static void dense_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Dense *d = lmn_layer_get_private(layer);
    LmnGemm g = {
        .struct_size = sizeof(LmnGemm),
        .trans_b = TRUE,
        .m = io->batch * d->outer,
        .n = d->units,
        .k = d->in,
        .alpha = 1.0f,
        .beta = 0.0f,
        .a = io->inputs[0],
        .b = lmn_layer_get_param(layer, PARAM_WEIGHT),
        .c = io->output,
    };
    /* A fused activation layer's output comes from the same epilogue (y stays as it is). */
    const LmnLayerFusion *f = io->fusion;
    const LmnGemmEpilogue e = {
        .struct_size = sizeof(LmnGemmEpilogue),
        .bias = d->bias ? lmn_layer_get_param(layer, PARAM_BIAS) : NULL,
        .activation = f != NULL ? f->op : LMN_UNARY_IDENTITY,
        .activation_alpha = f != NULL ? f->alpha : 0.0f,
        .activated = f != NULL ? f->output : NULL,
    };
    lmn_op_gemm_ex(&g, &e);
}

/* dW = dy^T x, and db = the row sums of dy^T. */
static void dense_param_grads(LmnLayer *layer, const Dense *d, const LmnLayerIO *io)
{
    /* dW [units, in] = dy^T [units, N] x [N, in] */
    LmnGemm gw = {
        .struct_size = sizeof(LmnGemm),
        .trans_a = TRUE,
        .m = d->units,
        .n = d->in,
        .k = io->batch * d->outer,
        .alpha = 1.0f,
        .beta = 0.0f,
        .a = io->output_grad,
        .b = io->inputs[0],
        .c = lmn_layer_get_grad(layer, PARAM_WEIGHT),
    };
    const LmnGemmEpilogue e = {
        .struct_size = sizeof(LmnGemmEpilogue),
        .a_row_sums = d->bias ? lmn_layer_get_grad(layer, PARAM_BIAS) : NULL,
    };
    lmn_op_gemm_ex(&gw, &e);
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
            .m = io->batch * d->outer,
            .n = d->in,
            .k = d->units,
            .alpha = 1.0f,
            .beta = 0.0f,
            .a = io->output_grad,
            .b = lmn_layer_get_param(layer, PARAM_WEIGHT),
            .c = io->input_grads[0],
        };
        /* A fused activation before this layer: its backward is this product's epilogue, so
         * input_grads[0] is the gradient at the activation's input (f' from its input and
         * output, the latter being this layer's input). */
        const LmnLayerFusion *f = io->fusion;
        const LmnGemmEpilogue e = {
            .struct_size = sizeof(LmnGemmEpilogue),
            .activation_grad = f != NULL ? f->op : LMN_UNARY_IDENTITY,
            .activation_alpha = f != NULL ? f->alpha : 0.0f,
            .grad_x = f != NULL ? f->input : NULL,
            .grad_y = f != NULL ? io->inputs[0] : NULL,
        };
        lmn_op_gemm_ex(&gx, &e);
    }
}

static const LmnParamSpec dense_params[] = {
    LMN_PARAM_SPEC_INT("units", NULL, 1, (double) G_MAXINT32, LMN_PARAM_FLAG_REQUIRED,
                       "number of output features (out_features)"),
    LMN_PARAM_SPEC_BOOL("bias", "true", "add a learnable bias"),
    LMN_PARAM_SPEC_END,
};

/* A higher-rank input: MatMul broadcasts over the leading axes, where Gemm takes only 2-D. */
static void dense_export_matmul(LmnLayer *layer, LmnExport *ex, const char *x, const char *w,
                                const char *b, const char *output)
{
    const char *wt = lmn_export_value_name(ex, layer, "weight_t");
    const gint64 perm[] = {1, 0};
    const LmnExportAttr tattrs[] = {LMN_EXPORT_ATTR_IS("perm", perm, 2), LMN_EXPORT_ATTRS_END};
    lmn_export_add_node(ex, "Transpose", (const char *const[]){w, NULL},
                        (const char *const[]){wt, NULL}, tattrs);
    const char *mm = b != NULL ? lmn_export_value_name(ex, layer, "matmul") : output;
    lmn_export_add_node(ex, "MatMul", (const char *const[]){x, wt, NULL},
                        (const char *const[]){mm, NULL}, NULL);
    if (b != NULL) {
        lmn_export_add_node(ex, "Add", (const char *const[]){mm, b, NULL},
                            (const char *const[]){output, NULL}, NULL);
    }
}

/* nn.Linear's y = x W^T + b is ONNX's Gemm with transB = 1, reading the weight as stored. */
static gboolean dense_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                             const char *output, GError **error)
{
    const Dense *d = lmn_layer_get_private(layer);
    const char *w = lmn_export_add_param(ex, layer, "weight", error);
    const char *b = w && d->bias ? lmn_export_add_param(ex, layer, "bias", error) : NULL;
    if (w == NULL || (d->bias && b == NULL))
        return FALSE;
    if (d->rank > 1) {
        dense_export_matmul(layer, ex, inputs[0], w, b, output);
        return TRUE;
    }
    const char *in[] = {inputs[0], w, b, NULL};
    const char *out[] = {output, NULL};
    const LmnExportAttr attrs[] = {LMN_EXPORT_ATTR_I("transB", 1), LMN_EXPORT_ATTRS_END};
    lmn_export_add_node(ex, "Gemm", in, out, attrs);
    return TRUE;
}

static const LmnLayerVTable dense_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_FUSES_ACTIVATION | LMN_LAYER_FLAG_FUSES_ACTIVATION_GRAD,
    .min_inputs = 1,
    .max_inputs = 1,
    .build = dense_build,
    .forward = dense_forward,
    .backward = dense_backward,
    .export_onnx = dense_export,
};

static const LmnFeatureDesc dense_features[] = {
    LMN_FEATURE(
        LMN_FEATURE_LAYER, "dense",
        "fully connected layer y = x W^T + b on the last axis of its input (torch.nn.Linear); "
        "weight_init / bias_init choose other initializers",
        dense_params, &dense_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.dense", LMN_VERSION_STRING, "MIT",
                           "Dense (fully connected) layer", dense_features)
