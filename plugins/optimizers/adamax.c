/* Lamina — Adamax with torch.optim.Adamax's parameters and update rule (PyTorch 1.13,
 * _single_tensor_adamax), operation for operation in float32:
 *
 *     d = maximize ? -grad : grad
 *     if weight_decay != 0:  d = d + weight_decay * param
 *     m = m * beta1;  m = m + (1 - beta1) * d
 *     u = max(u * beta2, |d| + eps)                 (torch.amax: NaN propagates)
 *     param = param + ((-lr / (1 - beta1^t)) * m) / u
 */
#include <lamina/lamina.h>

#include <math.h>

enum {
    ADAMAX_NEG_CLR, /* -lr / (1 - beta1^t) */
    ADAMAX_EPS,
    ADAMAX_BETA1,
    ADAMAX_ONE_MINUS_BETA1,
    ADAMAX_BETA2,
    ADAMAX_WEIGHT_DECAY,
    ADAMAX_SIGN,      /* -1 with maximize, else 1 */
    ADAMAX_USE_DECAY, /* 1 when weight_decay != 0 */
    ADAMAX_N_SCALARS
};

static inline __attribute__((always_inline)) void
adamax_loop(gsize begin, gsize end, float *restrict param, const float *restrict grad,
            float *restrict exp_avg, float *restrict exp_inf, const float *scalars,
            const gboolean decay)
{
    const float neg_clr = scalars[ADAMAX_NEG_CLR];
    const float eps = scalars[ADAMAX_EPS];
    const float beta1 = scalars[ADAMAX_BETA1];
    const float omb1 = scalars[ADAMAX_ONE_MINUS_BETA1];
    const float beta2 = scalars[ADAMAX_BETA2];
    const float wd = scalars[ADAMAX_WEIGHT_DECAY];
    const float sign = scalars[ADAMAX_SIGN];

    for (gsize i = begin; i < end; i++) {
        float d = sign * grad[i];
        if (decay)
            d = d + wd * param[i];
        float m = exp_avg[i] * beta1;
        m = m + omb1 * d;
        exp_avg[i] = m;
        float a = exp_inf[i] * beta2;
        float b = fabsf(d) + eps;
        float u = (a > b || isnan(a)) ? a : b;
        exp_inf[i] = u;
        param[i] = param[i] + (neg_clr * m) / u;
    }
}

static void adamax_update_cpu(gsize begin, gsize end, void *const *buffers, const float *scalars)
{
    if (scalars[ADAMAX_USE_DECAY] != 0.0f)
        adamax_loop(begin, end, buffers[0], buffers[1], buffers[2], buffers[3], scalars, TRUE);
    else
        adamax_loop(begin, end, buffers[0], buffers[1], buffers[2], buffers[3], scalars, FALSE);
}

static void adamax_prepare(const LmnParams *hyper, double lr, gint64 step, double *host_state,
                           float *scalars)
{
    double beta1 = lmn_params_get_float(hyper, "beta1");
    double weight_decay = lmn_params_get_float(hyper, "weight_decay");

    scalars[ADAMAX_NEG_CLR] = (float) -(lr / (1.0 - pow(beta1, (double) step)));
    scalars[ADAMAX_EPS] = (float) lmn_params_get_float(hyper, "eps");
    scalars[ADAMAX_BETA1] = (float) beta1;
    scalars[ADAMAX_ONE_MINUS_BETA1] = (float) (1.0 - beta1);
    scalars[ADAMAX_BETA2] = (float) lmn_params_get_float(hyper, "beta2");
    scalars[ADAMAX_WEIGHT_DECAY] = (float) weight_decay;
    scalars[ADAMAX_SIGN] = lmn_params_get_bool(hyper, "maximize") ? -1.0f : 1.0f;
    scalars[ADAMAX_USE_DECAY] = weight_decay != 0.0 ? 1.0f : 0.0f;
}

static const guint8 adamax_access[] = {LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ,
                                       LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ_WRITE};

#ifdef LMN_HAVE_SPIRV
/* The GPU variant (shaders/adamax-update.comp): the same float operations in the same order. */
#include <stdint.h> /* the generated header uses uint32_t */

#include "adamax-update-spv.h"

static const LmnKernelSpirv adamax_spirv = {
    .struct_size = sizeof(LmnKernelSpirv),
    .code = adamax_update_spv,
    .code_size = sizeof adamax_update_spv,
    .entry_point = "main",
};
#define ADAMAX_SPIRV (&adamax_spirv)
#else
#define ADAMAX_SPIRV NULL
#endif

static const LmnKernelDesc adamax_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "adamax.update",
    .cpu = adamax_update_cpu,
    .n_buffers = G_N_ELEMENTS(adamax_access),
    .access = adamax_access,
    .n_scalars = ADAMAX_N_SCALARS,
    .spirv = ADAMAX_SPIRV,
};

static const char *const adamax_slots[] = {"exp_avg", "exp_inf", NULL};

static const LmnOptimizerVTable adamax_vtable = {
    .struct_size = sizeof(LmnOptimizerVTable),
    .slots = adamax_slots,
    .update = &adamax_kernel,
    .n_host_state = 0,
    .host_state_names = NULL,
    .prepare = adamax_prepare,
    .slot_initial_value = NULL,
    /* torch.optim.Adamax checks each value on its own; the schema does that. */
    .validate = NULL,
};

static const LmnParamSpec adamax_specs[] = {
    {.name = "lr",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0.002",
     .min = 0,
     .max = INFINITY,
     .doc = "learning rate"},
    {.name = "beta1",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0.9",
     .min = 0,
     .max = 1,
     .flags = LMN_PARAM_FLAG_MAX_EXCLUSIVE,
     .doc = "decay of the running average of the gradient (torch betas[0])"},
    {.name = "beta2",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0.999",
     .min = 0,
     .max = 1,
     .flags = LMN_PARAM_FLAG_MAX_EXCLUSIVE,
     .doc = "decay of the exponentially weighted infinity norm (torch betas[1])"},
    {.name = "eps",
     .type = LMN_PARAM_FLOAT,
     .default_value = "1e-8",
     .min = 0,
     .max = INFINITY,
     .doc = "added to |grad| for numerical stability"},
    {.name = "weight_decay",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0",
     .min = 0,
     .max = INFINITY,
     .doc = "L2 penalty added to the gradient: grad + weight_decay * param"},
    {.name = "maximize",
     .type = LMN_PARAM_BOOL,
     .default_value = "false",
     .doc = "maximise the objective instead of minimising it (negates the gradient)"},
    {NULL},
};

static const LmnFeatureDesc adamax_features[] = {
    {
        .struct_size = sizeof(LmnFeatureDesc),
        .kind = LMN_FEATURE_OPTIMIZER,
        .name = "adamax",
        .description = "Adam with the infinity norm (torch.optim.Adamax)",
        .params = adamax_specs,
        .vtable = &adamax_vtable,
    },
};

static const LmnPluginDesc adamax_plugin = {
    .struct_size = sizeof(LmnPluginDesc),
    .abi_major = LMN_ABI_MAJOR,
    .abi_minor = LMN_ABI_MINOR,
    .name = "lamina.adamax",
    .version = LMN_VERSION_STRING,
    .license = "MIT",
    .description = "Adamax (torch.optim.Adamax)",
    .n_features = G_N_ELEMENTS(adamax_features),
    .features = adamax_features,
};

LMN_PLUGIN_DEFINE(adamax_plugin)
