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

#define DEFINE_BUILD(fn, op, alpha_key)                                                            \
    static gboolean fn(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,               \
                       LmnTensorInfo *output, GError **error)                                      \
    {                                                                                              \
        return activation_setup(layer, inputs, output, op, alpha_key, error);                      \
    }

DEFINE_BUILD(relu_build, LMN_UNARY_RELU, NULL)
DEFINE_BUILD(sigmoid_build, LMN_UNARY_SIGMOID, NULL)
DEFINE_BUILD(tanh_build, LMN_UNARY_TANH, NULL)
DEFINE_BUILD(leaky_relu_build, LMN_UNARY_LEAKY_RELU, "negative_slope")
DEFINE_BUILD(elu_build, LMN_UNARY_ELU, "alpha")
DEFINE_BUILD(softplus_build, LMN_UNARY_SOFTPLUS, "beta")
DEFINE_BUILD(gelu_build, LMN_UNARY_GELU, NULL)

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

#define ACTIVATION_VTABLE(var, build_fn)                                                           \
    static const LmnLayerVTable var = {                                                            \
        .struct_size = sizeof(LmnLayerVTable),                                                     \
        .flags = LMN_LAYER_FLAG_NONE,                                                              \
        .min_inputs = 1,                                                                           \
        .max_inputs = 1,                                                                           \
        .build = build_fn,                                                                         \
        .forward = activation_forward,                                                             \
        .backward = activation_backward,                                                           \
    };

ACTIVATION_VTABLE(relu_vtable, relu_build)
ACTIVATION_VTABLE(sigmoid_vtable, sigmoid_build)
ACTIVATION_VTABLE(tanh_vtable, tanh_build)
ACTIVATION_VTABLE(leaky_relu_vtable, leaky_relu_build)
ACTIVATION_VTABLE(elu_vtable, elu_build)
ACTIVATION_VTABLE(softplus_vtable, softplus_build)
ACTIVATION_VTABLE(gelu_vtable, gelu_build)

static const LmnParamSpec leaky_relu_params[] = {
    {.name = "negative_slope",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0.01",
     .min = 0.0,
     .max = 1e6,
     .doc = "slope for negative inputs (nn.LeakyReLU's negative_slope)"},
    {NULL},
};

static const LmnParamSpec elu_params[] = {
    {.name = "alpha",
     .type = LMN_PARAM_FLOAT,
     .default_value = "1.0",
     .min = 0.0,
     .max = 1e6,
     .doc = "alpha * (exp(x) - 1) for negative inputs (nn.ELU's alpha)"},
    {NULL},
};

static const LmnParamSpec softplus_params[] = {
    {.name = "beta",
     .type = LMN_PARAM_FLOAT,
     .default_value = "1.0",
     .min = 0.0,
     .max = 1e6,
     .flags = LMN_PARAM_FLAG_MIN_EXCLUSIVE,
     .doc = "log(1 + exp(beta * x)) / beta; linear above beta * x > 20 (nn.Softplus)"},
    {NULL},
};

#define ACTIVATION_FEATURE(fname, desc, schema, vt)                                                \
    {                                                                                              \
        .struct_size = sizeof(LmnFeatureDesc), .kind = LMN_FEATURE_LAYER, .name = fname,           \
        .description = desc, .params = schema, .vtable = &vt,                                      \
    }

static const LmnFeatureDesc activation_features[] = {
    ACTIVATION_FEATURE("relu", "rectified linear unit max(0, x) (nn.ReLU)", NULL, relu_vtable),
    ACTIVATION_FEATURE("sigmoid", "logistic sigmoid 1 / (1 + exp(-x)) (nn.Sigmoid)", NULL,
                       sigmoid_vtable),
    ACTIVATION_FEATURE("tanh", "hyperbolic tangent (nn.Tanh)", NULL, tanh_vtable),
    ACTIVATION_FEATURE("leaky_relu", "x for x >= 0, negative_slope * x below (nn.LeakyReLU)",
                       leaky_relu_params, leaky_relu_vtable),
    ACTIVATION_FEATURE("elu", "x for x > 0, alpha * (exp(x) - 1) below (nn.ELU)", elu_params,
                       elu_vtable),
    ACTIVATION_FEATURE("softplus", "smooth relu log(1 + exp(beta x)) / beta (nn.Softplus)",
                       softplus_params, softplus_vtable),
    ACTIVATION_FEATURE("gelu", "Gaussian error linear unit x * Phi(x), exact erf form (nn.GELU)",
                       NULL, gelu_vtable),
};

static const LmnPluginDesc activations_plugin = {
    .struct_size = sizeof(LmnPluginDesc),
    .abi_major = LMN_ABI_MAJOR,
    .abi_minor = LMN_ABI_MINOR,
    .name = "lamina.activations",
    .version = LMN_VERSION_STRING,
    .license = "MIT",
    .description = "Element-wise activation layers",
    .n_features = G_N_ELEMENTS(activation_features),
    .features = activation_features,
};

LMN_PLUGIN_DEFINE(activations_plugin)
