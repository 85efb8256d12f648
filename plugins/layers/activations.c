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

static void activation_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Activation *a = lmn_layer_get_private(layer);
    if (io->input_grads[0] != NULL) {
        lmn_op_unary_backward(a->op, io->inputs[0], io->output, io->output_grad, io->input_grads[0],
                              a->alpha);
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
