/* Lamina — element-wise activation layers (relu, sigmoid, tanh, leaky_relu, elu, softplus, gelu).
 *
 * Each runs lmn_op_unary forward and lmn_op_unary_backward backward.  The backward needs the
 * input (relu, elu, softplus, gelu) or the output (sigmoid, tanh: f' = y(1 - y), 1 - y^2); both
 * are kept by the graph for backward, since every layer's output is its successor's input, so
 * these layers save nothing of their own.
 */
#include <lamina/lamina.h>

typedef struct {
    LmnUnaryOp op;
    float alpha;
} Activation;

static gboolean activation_setup(LmnLayer *layer, const LmnTensorInfo *inputs,
                                 LmnTensorInfo *output, LmnUnaryOp op, const char *alpha_key,
                                 GError **error)
{
    if (inputs[0].dtype != LMN_DTYPE_F32) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (%s): its input is %s, but activations take f32 values",
                    lmn_layer_get_name(layer), lmn_layer_get_type_name(layer),
                    lmn_dtype_name(inputs[0].dtype));
        return FALSE;
    }
    Activation *a = g_new0(Activation, 1);
    a->op = op;
    a->alpha = alpha_key != NULL
                   ? (float) lmn_params_get_float(lmn_layer_get_params(layer), alpha_key)
                   : 0.0f;
    lmn_layer_set_private(layer, a, g_free);
    *output = inputs[0];
    return TRUE;
}

static void activation_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Activation *a = lmn_layer_get_private(layer);
    lmn_op_unary(a->op, io->inputs[0], io->output, a->alpha);
}

/* The core may fuse the forward into the layer before (a dense layer's GEMM epilogue). */
static gboolean activation_as_unary(LmnLayer *layer, LmnUnaryOp *op, float *alpha)
{
    const Activation *a = lmn_layer_get_private(layer);
    *op = a->op;
    *alpha = a->alpha;
    return TRUE;
}

static void activation_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Activation *a = lmn_layer_get_private(layer);
    if (io->input_grads[0] != NULL) {
        lmn_op_unary_backward(a->op, io->inputs[0], io->output, io->output_grad, io->input_grads[0],
                              a->alpha);
    }
}

/* A scalar constant of the layer's export, named LAYER/WHAT. */
static const char *export_scalar(LmnExport *ex, LmnLayer *layer, const char *what, float v)
{
    LmnShape scalar = lmn_shape_make(0);
    return lmn_export_add_floats(ex, lmn_export_value_name(ex, layer, what), &scalar, &v);
}

/* A node with one input and one output; returns the output. */
static const char *export_unary(LmnExport *ex, const char *op, const char *x, const char *y,
                                const LmnExportAttr *attrs)
{
    const char *in[] = {x, NULL}, *out[] = {y, NULL};
    lmn_export_add_node(ex, op, in, out, attrs);
    return y;
}

/* A node with two inputs and one output; returns the output. */
static const char *export_binary(LmnExport *ex, const char *op, const char *a, const char *b,
                                 const char *y)
{
    const char *in[] = {a, b, NULL}, *out[] = {y, NULL};
    lmn_export_add_node(ex, op, in, out, NULL);
    return y;
}

/* softplus(beta x) / beta: ONNX's Softplus has no beta, so scale around it.  Above beta x > 20
 * forward returns x, which log(1 + exp(beta x)) / beta equals to float precision. */
static void export_softplus(LmnExport *ex, LmnLayer *layer, const char *x, const char *y,
                            float beta)
{
    if (beta == 1.0f) {
        export_unary(ex, "Softplus", x, y, NULL);
        return;
    }
    const char *b = export_scalar(ex, layer, "beta", beta);
    const char *bx = export_binary(ex, "Mul", x, b, lmn_export_value_name(ex, layer, "beta_x"));
    const char *sp = export_unary(ex, "Softplus", bx, lmn_export_value_name(ex, layer, "sp"), NULL);
    export_binary(ex, "Div", sp, b, y);
}

/* The exact GELU x * 0.5 * (1 + erf(x / sqrt 2)): ONNX has no Gelu before opset 20. */
static void export_gelu(LmnExport *ex, LmnLayer *layer, const char *x, const char *y)
{
    const char *r2 = export_scalar(ex, layer, "sqrt2", (float) G_SQRT2);
    const char *one = export_scalar(ex, layer, "one", 1.0f);
    const char *half = export_scalar(ex, layer, "half", 0.5f);
    const char *t = export_binary(ex, "Div", x, r2, lmn_export_value_name(ex, layer, "scaled"));
    const char *e = export_unary(ex, "Erf", t, lmn_export_value_name(ex, layer, "erf"), NULL);
    const char *p = export_binary(ex, "Add", e, one, lmn_export_value_name(ex, layer, "erf1"));
    const char *xp = export_binary(ex, "Mul", x, p, lmn_export_value_name(ex, layer, "x_erf1"));
    export_binary(ex, "Mul", xp, half, y);
}

static gboolean activation_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                                  const char *output, GError **error)
{
    const Activation *a = lmn_layer_get_private(layer);
    const LmnExportAttr alpha[] = {LMN_EXPORT_ATTR_F("alpha", a->alpha), LMN_EXPORT_ATTRS_END};
    switch (a->op) {
    case LMN_UNARY_RELU:
        export_unary(ex, "Relu", inputs[0], output, NULL);
        return TRUE;
    case LMN_UNARY_SIGMOID:
        export_unary(ex, "Sigmoid", inputs[0], output, NULL);
        return TRUE;
    case LMN_UNARY_TANH:
        export_unary(ex, "Tanh", inputs[0], output, NULL);
        return TRUE;
    case LMN_UNARY_LEAKY_RELU:
        export_unary(ex, "LeakyRelu", inputs[0], output, alpha);
        return TRUE;
    case LMN_UNARY_ELU:
        export_unary(ex, "Elu", inputs[0], output, alpha);
        return TRUE;
    case LMN_UNARY_SOFTPLUS:
        export_softplus(ex, layer, inputs[0], output, a->alpha);
        return TRUE;
    case LMN_UNARY_GELU:
        export_gelu(ex, layer, inputs[0], output);
        return TRUE;
    default:
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "activation op %d has no ONNX form", (int) a->op);
        return FALSE;
    }
}

/**
 * ACTIVATION:
 * @prefix: the layer's identifier prefix (leaky_relu)
 * @op: its #LmnUnaryOp
 * @alpha_key: the key of the op's parameter (NULL: none)
 * Defines prefix_build and `static const LmnLayerVTable prefix_vtable`: one input, the shared
 * forward and backward.
 */
#define ACTIVATION(prefix, op, alpha_key)                                                          \
    static gboolean prefix##_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,   \
                                   LmnTensorInfo *output, GError **error)                          \
    {                                                                                              \
        return activation_setup(layer, inputs, output, op, alpha_key, error);                      \
    }                                                                                              \
    static const LmnLayerVTable prefix##_vtable = {                                                \
        .struct_size = sizeof(LmnLayerVTable),                                                     \
        .flags = LMN_LAYER_FLAG_NONE,                                                              \
        .min_inputs = 1,                                                                           \
        .max_inputs = 1,                                                                           \
        .build = prefix##_build,                                                                   \
        .forward = activation_forward,                                                             \
        .backward = activation_backward,                                                           \
        .export_onnx = activation_export,                                                          \
        .as_unary = activation_as_unary,                                                           \
    }

ACTIVATION(relu, LMN_UNARY_RELU, NULL);
ACTIVATION(sigmoid, LMN_UNARY_SIGMOID, NULL);
ACTIVATION(tanh, LMN_UNARY_TANH, NULL);
ACTIVATION(leaky_relu, LMN_UNARY_LEAKY_RELU, "negative_slope");
ACTIVATION(elu, LMN_UNARY_ELU, "alpha");
ACTIVATION(softplus, LMN_UNARY_SOFTPLUS, "beta");
ACTIVATION(gelu, LMN_UNARY_GELU, NULL);

static const LmnParamSpec leaky_relu_params[] = {
    LMN_PARAM_SPEC_FLOAT("negative_slope", "0.01", 0.0, 1e6, 0,
                         "slope for negative inputs (nn.LeakyReLU's negative_slope)"),
    LMN_PARAM_SPEC_END,
};

static const LmnParamSpec elu_params[] = {
    LMN_PARAM_SPEC_FLOAT("alpha", "1.0", 0.0, 1e6, 0,
                         "alpha * (exp(x) - 1) for negative inputs (nn.ELU's alpha)"),
    LMN_PARAM_SPEC_END,
};

static const LmnParamSpec softplus_params[] = {
    LMN_PARAM_SPEC_FLOAT("beta", "1.0", 0.0, 1e6, LMN_PARAM_FLAG_MIN_EXCLUSIVE,
                         "log(1 + exp(beta * x)) / beta; linear above beta * x > 20 (nn.Softplus)"),
    LMN_PARAM_SPEC_END,
};

/* A layer feature named @name with the vtable ACTIVATION(name, ...) defined. */
#define ACTIVATION_FEATURE(name, desc, schema)                                                     \
    LMN_FEATURE(LMN_FEATURE_LAYER, #name, desc, schema, &name##_vtable)

static const LmnFeatureDesc activation_features[] = {
    ACTIVATION_FEATURE(relu, "rectified linear unit max(0, x) (nn.ReLU)", NULL),
    ACTIVATION_FEATURE(sigmoid, "logistic sigmoid 1 / (1 + exp(-x)) (nn.Sigmoid)", NULL),
    ACTIVATION_FEATURE(tanh, "hyperbolic tangent (nn.Tanh)", NULL),
    ACTIVATION_FEATURE(leaky_relu, "x for x >= 0, negative_slope * x below (nn.LeakyReLU)",
                       leaky_relu_params),
    ACTIVATION_FEATURE(elu, "x for x > 0, alpha * (exp(x) - 1) below (nn.ELU)", elu_params),
    ACTIVATION_FEATURE(softplus, "smooth relu log(1 + exp(beta x)) / beta (nn.Softplus)",
                       softplus_params),
    ACTIVATION_FEATURE(gelu, "Gaussian error linear unit x * Phi(x), exact erf form (nn.GELU)",
                       NULL),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.activations", LMN_VERSION_STRING, "MIT",
                           "Element-wise activation layers", activation_features)
