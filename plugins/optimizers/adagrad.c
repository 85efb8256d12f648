/* Lamina — Adagrad with torch.optim.Adagrad's parameters and update rule (PyTorch 1.13,
 * _single_tensor_adagrad, dense gradients), operation for operation in float32:
 *
 *     d = maximize ? -grad : grad
 *     if weight_decay != 0:  d = d + weight_decay * param
 *     clr = lr / (1 + (t - 1) * lr_decay)                  (double, on the host)
 *     sum = sum + (1 * d) * d
 *     param = param + ((-clr) * d) / (sqrt(sum) + eps)
 *
 * The slot "sum" starts at initial_accumulator_value, as torch's state["sum"] does.
 */
#include <lamina/lamina.h>

#include <math.h>

enum {
    ADAGRAD_NEG_CLR, /* -lr / (1 + (t - 1) * lr_decay) */
    ADAGRAD_EPS,
    ADAGRAD_WEIGHT_DECAY,
    ADAGRAD_SIGN,      /* -1 with maximize, else 1 */
    ADAGRAD_USE_DECAY, /* 1 when weight_decay != 0 */
    ADAGRAD_N_SCALARS
};

static inline __attribute__((always_inline)) void
adagrad_loop(gsize begin, gsize end, float *restrict param, const float *restrict grad,
             float *restrict sum, const float *scalars, const gboolean decay)
{
    const float neg_clr = scalars[ADAGRAD_NEG_CLR];
    const float eps = scalars[ADAGRAD_EPS];
    const float wd = scalars[ADAGRAD_WEIGHT_DECAY];
    const float sign = scalars[ADAGRAD_SIGN];

    for (gsize i = begin; i < end; i++) {
        float d = sign * grad[i];
        if (decay)
            d = d + wd * param[i];
        float s = sum[i] + d * d; /* addcmul with value 1: 1 * d is exactly d */
        sum[i] = s;
        param[i] = param[i] + (neg_clr * d) / (sqrtf(s) + eps);
    }
}

static void adagrad_update_cpu(gsize begin, gsize end, void *const *buffers, const float *scalars)
{
    if (scalars[ADAGRAD_USE_DECAY] != 0.0f)
        adagrad_loop(begin, end, buffers[0], buffers[1], buffers[2], scalars, TRUE);
    else
        adagrad_loop(begin, end, buffers[0], buffers[1], buffers[2], scalars, FALSE);
}

static void adagrad_prepare(const LmnParams *hyper, double lr, gint64 step, double *host_state,
                            float *scalars)
{
    double lr_decay = lmn_params_get_float(hyper, "lr_decay");
    double weight_decay = lmn_params_get_float(hyper, "weight_decay");

    scalars[ADAGRAD_NEG_CLR] = (float) -(lr / (1.0 + (double) (step - 1) * lr_decay));
    scalars[ADAGRAD_EPS] = (float) lmn_params_get_float(hyper, "eps");
    scalars[ADAGRAD_WEIGHT_DECAY] = (float) weight_decay;
    scalars[ADAGRAD_SIGN] = lmn_params_get_bool(hyper, "maximize") ? -1.0f : 1.0f;
    scalars[ADAGRAD_USE_DECAY] = weight_decay != 0.0 ? 1.0f : 0.0f;
}

static double adagrad_slot_initial_value(const LmnParams *hyper, guint slot)
{
    return lmn_params_get_float(hyper, "initial_accumulator_value");
}

static const guint8 adagrad_access[] = {LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ,
                                        LMN_KERNEL_READ_WRITE};

#ifdef LMN_HAVE_SPIRV
/* The GPU variant (shaders/adagrad-update.comp): the same float operations in the same order. */
#include <stdint.h> /* the generated header uses uint32_t */

#include "adagrad-update-spv.h"

static const LmnKernelSpirv adagrad_spirv = {
    .struct_size = sizeof(LmnKernelSpirv),
    .code = adagrad_update_spv,
    .code_size = sizeof adagrad_update_spv,
    .entry_point = "main",
};
#define ADAGRAD_SPIRV (&adagrad_spirv)
#else
#define ADAGRAD_SPIRV NULL
#endif

static const LmnKernelDesc adagrad_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "adagrad.update",
    .cpu = adagrad_update_cpu,
    .n_buffers = G_N_ELEMENTS(adagrad_access),
    .access = adagrad_access,
    .n_scalars = ADAGRAD_N_SCALARS,
    .spirv = ADAGRAD_SPIRV,
};

static const char *const adagrad_slots[] = {"sum", NULL};

static const LmnOptimizerVTable adagrad_vtable = {
    .struct_size = sizeof(LmnOptimizerVTable),
    .slots = adagrad_slots,
    .update = &adagrad_kernel,
    .n_host_state = 0,
    .host_state_names = NULL,
    .prepare = adagrad_prepare,
    .slot_initial_value = adagrad_slot_initial_value,
    /* torch.optim.Adagrad checks each value on its own; the schema does that. */
    .validate = NULL,
};

static const LmnParamSpec adagrad_specs[] = {
    {.name = "lr",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0.01",
     .min = 0,
     .max = INFINITY,
     .doc = "learning rate"},
    {.name = "lr_decay",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0",
     .min = 0,
     .max = INFINITY,
     .doc = "step t uses lr / (1 + (t - 1) * lr_decay)"},
    {.name = "weight_decay",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0",
     .min = 0,
     .max = INFINITY,
     .doc = "L2 penalty added to the gradient: grad + weight_decay * param"},
    {.name = "initial_accumulator_value",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0",
     .min = 0,
     .max = INFINITY,
     .doc = "starting value of the sum of squared gradients"},
    {.name = "eps",
     .type = LMN_PARAM_FLOAT,
     .default_value = "1e-10",
     .min = 0,
     .max = INFINITY,
     .doc = "added to the denominator for numerical stability"},
    {.name = "maximize",
     .type = LMN_PARAM_BOOL,
     .default_value = "false",
     .doc = "maximise the objective instead of minimising it (negates the gradient)"},
    {NULL},
};

static const LmnFeatureDesc adagrad_features[] = {
    {
        .struct_size = sizeof(LmnFeatureDesc),
        .kind = LMN_FEATURE_OPTIMIZER,
        .name = "adagrad",
        .description = "Adagrad with learning-rate decay (torch.optim.Adagrad)",
        .params = adagrad_specs,
        .vtable = &adagrad_vtable,
    },
};

static const LmnPluginDesc adagrad_plugin = {
    .struct_size = sizeof(LmnPluginDesc),
    .abi_major = LMN_ABI_MAJOR,
    .abi_minor = LMN_ABI_MINOR,
    .name = "lamina.adagrad",
    .version = LMN_VERSION_STRING,
    .license = "MIT",
    .description = "Adagrad (torch.optim.Adagrad)",
    .n_features = G_N_ELEMENTS(adagrad_features),
    .features = adagrad_features,
};

LMN_PLUGIN_DEFINE(adagrad_plugin)
