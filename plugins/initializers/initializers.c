/* Lamina — the built-in parameter initializers, with torch.nn.init's names, defaults and
 * formulas (zeros_, constant_, uniform_, normal_, xavier_*_, kaiming_*_ as he_*), so a PyTorch
 * user's choices carry over.  Draws come from the parameter's own Philox stream, in element
 * order, so a parameter's values do not depend on the backend or on other parameters.
 */
#include <lamina/lamina.h>

#include <math.h>
#include <string.h>

/* ---- helpers ---- */

static char *init_shape_text(const LmnInitTarget *target)
{
    return target->shape != NULL ? lmn_shape_to_string(target->shape) : g_strdup("[?]");
}

/* A fan of 0 (an empty dimension) would divide by zero; PyTorch raises too. */
static gboolean init_check_fan(const char *name, const char *which, double fan,
                               const LmnInitTarget *target, GError **error)
{
    if (fan > 0.0)
        return TRUE;
    g_autofree char *shape = init_shape_text(target);
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                "initializer '%s': %s of the parameter of shape %s is %g; a fan-based "
                "initializer needs a positive fan (use another initializer, e.g. 'normal')",
                name, which, shape, fan);
    return FALSE;
}

/* torch.nn.init.calculate_gain.  For leaky_relu, @slope is the negative slope. */
static double init_gain(const char *nonlinearity, double slope)
{
    if (strcmp(nonlinearity, "tanh") == 0)
        return 5.0 / 3.0;
    if (strcmp(nonlinearity, "relu") == 0)
        return sqrt(2.0);
    if (strcmp(nonlinearity, "leaky_relu") == 0)
        return sqrt(2.0 / (1.0 + slope * slope));
    if (strcmp(nonlinearity, "selu") == 0)
        return 3.0 / 4.0;
    /* linear, conv*, conv_transpose*, sigmoid */
    return 1.0;
}

static void init_fill_uniform(const LmnInitTarget *target, float *data, double low, double high)
{
    for (gint64 i = 0; i < target->numel; i++)
        data[i] = (float) (low + (high - low) * (double) lmn_random_uniform(target->random));
}

static void init_fill_normal(const LmnInitTarget *target, float *data, double mean, double std)
{
    for (gint64 i = 0; i < target->numel; i++)
        data[i] = (float) (mean + std * lmn_random_normal(target->random));
}

/* ---- zeros, constant ---- */

static gboolean zeros_fill(const LmnParams *params, const LmnInitTarget *target, float *data,
                           GError **error)
{
    for (gint64 i = 0; i < target->numel; i++)
        data[i] = 0.0f;
    return TRUE;
}

static gboolean constant_fill(const LmnParams *params, const LmnInitTarget *target, float *data,
                              GError **error)
{
    float value = (float) lmn_params_get_float(params, "value");
    for (gint64 i = 0; i < target->numel; i++)
        data[i] = value;
    return TRUE;
}

static const LmnParamSpec constant_specs[] = {
    {.name = "value",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0",
     .min = 1,
     .max = 0,
     .doc = "the value of every element (torch.nn.init.constant_'s val)"},
    {NULL},
};

/* ---- uniform, normal ---- */

static gboolean uniform_fill(const LmnParams *params, const LmnInitTarget *target, float *data,
                             GError **error)
{
    double a = lmn_params_get_float(params, "a");
    double b = lmn_params_get_float(params, "b");
    if (a > b) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "initializer 'uniform': the lower bound a = %g exceeds the upper bound b = %g",
                    a, b);
        return FALSE;
    }
    init_fill_uniform(target, data, a, b);
    return TRUE;
}

static const LmnParamSpec uniform_specs[] = {
    {.name = "a",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0",
     .min = 1,
     .max = 0,
     .doc = "lower bound of U(a, b)"},
    {.name = "b",
     .type = LMN_PARAM_FLOAT,
     .default_value = "1",
     .min = 1,
     .max = 0,
     .doc = "upper bound of U(a, b)"},
    {NULL},
};

static gboolean normal_fill(const LmnParams *params, const LmnInitTarget *target, float *data,
                            GError **error)
{
    init_fill_normal(target, data, lmn_params_get_float(params, "mean"),
                     lmn_params_get_float(params, "std"));
    return TRUE;
}

static const LmnParamSpec normal_specs[] = {
    {.name = "mean",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0",
     .min = 1,
     .max = 0,
     .doc = "mean of N(mean, std^2)"},
    {.name = "std",
     .type = LMN_PARAM_FLOAT,
     .default_value = "1",
     .min = 0,
     .max = INFINITY,
     .doc = "standard deviation of N(mean, std^2)"},
    {NULL},
};

/* ---- Xavier / Glorot ---- */

static gboolean xavier_uniform_fill(const LmnParams *params, const LmnInitTarget *target,
                                    float *data, GError **error)
{
    double fans = target->fan_in + target->fan_out;
    if (!init_check_fan("xavier_uniform", "fan_in + fan_out", fans, target, error))
        return FALSE;
    double bound = lmn_params_get_float(params, "gain") * sqrt(6.0 / fans);
    init_fill_uniform(target, data, -bound, bound);
    return TRUE;
}

static gboolean xavier_normal_fill(const LmnParams *params, const LmnInitTarget *target,
                                   float *data, GError **error)
{
    double fans = target->fan_in + target->fan_out;
    if (!init_check_fan("xavier_normal", "fan_in + fan_out", fans, target, error))
        return FALSE;
    double std = lmn_params_get_float(params, "gain") * sqrt(2.0 / fans);
    init_fill_normal(target, data, 0.0, std);
    return TRUE;
}

static const LmnParamSpec xavier_specs[] = {
    {.name = "gain",
     .type = LMN_PARAM_FLOAT,
     .default_value = "1",
     .min = 0,
     .max = INFINITY,
     .doc = "scaling factor (torch.nn.init.calculate_gain of the activation)"},
    {NULL},
};

/* ---- He / Kaiming ---- */

static const char *const he_modes[] = {"fan_in", "fan_out", NULL};
static const char *const he_nonlinearities[] = {
    "leaky_relu",
    "relu",
    "linear",
    "sigmoid",
    "tanh",
    "selu",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    NULL,
};

static const LmnParamSpec he_specs[] = {
    {.name = "a",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0",
     .min = 1,
     .max = 0,
     .doc = "negative slope of the following leaky_relu (used only with that nonlinearity)"},
    {.name = "mode",
     .type = LMN_PARAM_ENUM,
     .default_value = "fan_in",
     .enum_values = he_modes,
     .doc = "fan_in preserves forward activations' variance, fan_out the gradients'"},
    {.name = "nonlinearity",
     .type = LMN_PARAM_ENUM,
     .default_value = "leaky_relu",
     .enum_values = he_nonlinearities,
     .doc = "the activation after this layer, for the gain (PyTorch's default: leaky_relu)"},
    {NULL},
};

/* Returns the standard deviation gain / sqrt(fan), or a negative value with @error set. */
static double he_std(const char *name, const LmnParams *params, const LmnInitTarget *target,
                     GError **error)
{
    const char *mode = lmn_params_get_string(params, "mode");
    gboolean fan_in = strcmp(mode, "fan_in") == 0;
    double fan = fan_in ? target->fan_in : target->fan_out;
    if (!init_check_fan(name, mode, fan, target, error))
        return -1.0;
    double gain =
        init_gain(lmn_params_get_string(params, "nonlinearity"), lmn_params_get_float(params, "a"));
    return gain / sqrt(fan);
}

static gboolean he_uniform_fill(const LmnParams *params, const LmnInitTarget *target, float *data,
                                GError **error)
{
    double std = he_std("he_uniform", params, target, error);
    if (std < 0.0)
        return FALSE;
    double bound = sqrt(3.0) * std;
    init_fill_uniform(target, data, -bound, bound);
    return TRUE;
}

static gboolean he_normal_fill(const LmnParams *params, const LmnInitTarget *target, float *data,
                               GError **error)
{
    double std = he_std("he_normal", params, target, error);
    if (std < 0.0)
        return FALSE;
    init_fill_normal(target, data, 0.0, std);
    return TRUE;
}

/* ---- the descriptor ---- */

#define INIT_VTABLE(fn)                                                                            \
    {                                                                                              \
        .struct_size = sizeof(LmnInitializerVTable), .fill = (fn)                                  \
    }

static const LmnInitializerVTable zeros_vt = INIT_VTABLE(zeros_fill);
static const LmnInitializerVTable constant_vt = INIT_VTABLE(constant_fill);
static const LmnInitializerVTable uniform_vt = INIT_VTABLE(uniform_fill);
static const LmnInitializerVTable normal_vt = INIT_VTABLE(normal_fill);
static const LmnInitializerVTable xavier_uniform_vt = INIT_VTABLE(xavier_uniform_fill);
static const LmnInitializerVTable xavier_normal_vt = INIT_VTABLE(xavier_normal_fill);
static const LmnInitializerVTable he_uniform_vt = INIT_VTABLE(he_uniform_fill);
static const LmnInitializerVTable he_normal_vt = INIT_VTABLE(he_normal_fill);

#define INIT_FEATURE(feature_name, desc, specs, vt)                                                \
    {                                                                                              \
        .struct_size = sizeof(LmnFeatureDesc), .kind = LMN_FEATURE_INITIALIZER,                    \
        .name = (feature_name), .description = (desc), .params = (specs), .vtable = &(vt),         \
    }

static const LmnFeatureDesc init_features[] = {
    INIT_FEATURE("zeros", "all elements 0 (torch.nn.init.zeros_)", NULL, zeros_vt),
    INIT_FEATURE("constant", "all elements one value (torch.nn.init.constant_)", constant_specs,
                 constant_vt),
    INIT_FEATURE("uniform", "U(a, b) (torch.nn.init.uniform_)", uniform_specs, uniform_vt),
    INIT_FEATURE("normal", "N(mean, std^2) (torch.nn.init.normal_)", normal_specs, normal_vt),
    INIT_FEATURE("xavier_uniform",
                 "U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)",
                 xavier_specs, xavier_uniform_vt),
    INIT_FEATURE("xavier_normal",
                 "N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)) (Glorot & Bengio 2010)",
                 xavier_specs, xavier_normal_vt),
    INIT_FEATURE("he_uniform",
                 "U(-b, b), b = gain * sqrt(3 / fan) (He et al. 2015; torch kaiming_uniform_)",
                 he_specs, he_uniform_vt),
    INIT_FEATURE("he_normal",
                 "N(0, std^2), std = gain / sqrt(fan) (He et al. 2015; torch kaiming_normal_)",
                 he_specs, he_normal_vt),
};

static const LmnPluginDesc init_plugin = {
    .struct_size = sizeof(LmnPluginDesc),
    .abi_major = LMN_ABI_MAJOR,
    .abi_minor = LMN_ABI_MINOR,
    .name = "lamina.initializers",
    .version = LMN_VERSION_STRING,
    .license = "MIT",
    .description = "parameter initializers with torch.nn.init's names and formulas",
    .n_features = G_N_ELEMENTS(init_features),
    .features = init_features,
};

LMN_PLUGIN_DEFINE(init_plugin)
