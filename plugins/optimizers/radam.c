/* Lamina — RAdam with torch.optim.RAdam's parameters and update rule (PyTorch 1.13,
 * _single_tensor_radam), operation for operation in float32:
 *
 *     d = grad;  if weight_decay != 0:  d = d + weight_decay * param
 *     m = m * beta1;  m = m + (1 - beta1) * d
 *     v = v * beta2;  v = v + ((1 - beta2) * d) * d
 *     mhat = m / (1 - beta1^t)
 *     rho_inf = 2 / (1 - beta2) - 1;  rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)   (host)
 *     if rho_t > 5:
 *         rect = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
 *         adaptive = (1 / (sqrt(v) + eps)) * sqrt(1 - beta2^t)
 *         param = param - ((mhat * lr) * adaptive) * rect
 *     else:
 *         param = param - mhat * lr
 *
 * (torch evaluates `scalar / tensor` as reciprocal(tensor) * scalar; so does the kernel.)
 * Which branch a step takes depends only on t, so prepare() picks it.  torch 1.13's RAdam has
 * no maximize option.
 */
#include <lamina/lamina.h>

#include <math.h>

enum {
    RADAM_LR,
    RADAM_BC1,      /* 1 - beta1^t */
    RADAM_BC2_SQRT, /* sqrt(1 - beta2^t) */
    RADAM_RECT,     /* the variance rectification term */
    RADAM_EPS,
    RADAM_BETA1,
    RADAM_ONE_MINUS_BETA1,
    RADAM_BETA2,
    RADAM_ONE_MINUS_BETA2,
    RADAM_WEIGHT_DECAY,
    RADAM_RECTIFY,   /* 1 when rho_t > 5 */
    RADAM_USE_DECAY, /* 1 when weight_decay != 0 */
    RADAM_N_SCALARS
};

static inline __attribute__((always_inline)) void
radam_loop(gsize begin, gsize end, float *restrict param, const float *restrict grad,
           float *restrict exp_avg, float *restrict exp_avg_sq, const float *scalars,
           const gboolean rectify, const gboolean decay)
{
    const float lr = scalars[RADAM_LR];
    const float bc1 = scalars[RADAM_BC1];
    const float bc2_sqrt = scalars[RADAM_BC2_SQRT];
    const float rect = scalars[RADAM_RECT];
    const float eps = scalars[RADAM_EPS];
    const float beta1 = scalars[RADAM_BETA1];
    const float omb1 = scalars[RADAM_ONE_MINUS_BETA1];
    const float beta2 = scalars[RADAM_BETA2];
    const float omb2 = scalars[RADAM_ONE_MINUS_BETA2];
    const float wd = scalars[RADAM_WEIGHT_DECAY];

    for (gsize i = begin; i < end; i++) {
        float d = grad[i];
        if (decay)
            d = d + wd * param[i];
        float m = exp_avg[i] * beta1;
        m = m + omb1 * d;
        exp_avg[i] = m;
        float v = exp_avg_sq[i] * beta2;
        v = v + (omb2 * d) * d;
        exp_avg_sq[i] = v;
        float mhat = m / bc1;
        if (rectify) {
            float adaptive = (1.0f / (sqrtf(v) + eps)) * bc2_sqrt;
            param[i] = param[i] - ((mhat * lr) * adaptive) * rect;
        } else {
            param[i] = param[i] - mhat * lr;
        }
    }
}

static void radam_update_cpu(gsize begin, gsize end, void *const *buffers, const float *scalars)
{
    gboolean rectify = scalars[RADAM_RECTIFY] != 0.0f;
    gboolean decay = scalars[RADAM_USE_DECAY] != 0.0f;
    float *p = buffers[0];
    const float *g = buffers[1];
    float *m = buffers[2], *v = buffers[3];

    if (rectify && decay)
        radam_loop(begin, end, p, g, m, v, scalars, TRUE, TRUE);
    else if (rectify)
        radam_loop(begin, end, p, g, m, v, scalars, TRUE, FALSE);
    else if (decay)
        radam_loop(begin, end, p, g, m, v, scalars, FALSE, TRUE);
    else
        radam_loop(begin, end, p, g, m, v, scalars, FALSE, FALSE);
}

static void radam_prepare(const LmnParams *hyper, double lr, gint64 step, double *host_state,
                          float *scalars)
{
    double beta1 = lmn_params_get_float(hyper, "beta1");
    double beta2 = lmn_params_get_float(hyper, "beta2");
    double weight_decay = lmn_params_get_float(hyper, "weight_decay");
    double t = (double) step;
    double bc1 = 1.0 - pow(beta1, t);
    double bc2 = 1.0 - pow(beta2, t);
    double rho_inf = 2.0 / (1.0 - beta2) - 1.0;
    double rho_t = rho_inf - 2.0 * t * pow(beta2, t) / bc2;
    gboolean rectify = rho_t > 5.0;
    double rect = rectify ? sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf /
                                 ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                          : 0.0;

    scalars[RADAM_LR] = (float) lr;
    scalars[RADAM_BC1] = (float) bc1;
    scalars[RADAM_BC2_SQRT] = (float) sqrt(bc2);
    scalars[RADAM_RECT] = (float) rect;
    scalars[RADAM_EPS] = (float) lmn_params_get_float(hyper, "eps");
    scalars[RADAM_BETA1] = (float) beta1;
    scalars[RADAM_ONE_MINUS_BETA1] = (float) (1.0 - beta1);
    scalars[RADAM_BETA2] = (float) beta2;
    scalars[RADAM_ONE_MINUS_BETA2] = (float) (1.0 - beta2);
    scalars[RADAM_WEIGHT_DECAY] = (float) weight_decay;
    scalars[RADAM_RECTIFY] = rectify ? 1.0f : 0.0f;
    scalars[RADAM_USE_DECAY] = weight_decay != 0.0 ? 1.0f : 0.0f;
}

static const guint8 radam_access[] = {LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ, LMN_KERNEL_READ_WRITE,
                                      LMN_KERNEL_READ_WRITE};

#ifdef LMN_HAVE_SPIRV
/* The GPU variant (shaders/radam-update.comp): the same float operations in the same order. */
#include <stdint.h> /* the generated header uses uint32_t */

#include "radam-update-spv.h"

static const LmnKernelSpirv radam_spirv = {
    .struct_size = sizeof(LmnKernelSpirv),
    .code = radam_update_spv,
    .code_size = sizeof radam_update_spv,
    .entry_point = "main",
};
#define RADAM_SPIRV (&radam_spirv)
#else
#define RADAM_SPIRV NULL
#endif

static const LmnKernelDesc radam_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "radam.update",
    .cpu = radam_update_cpu,
    .n_buffers = G_N_ELEMENTS(radam_access),
    .access = radam_access,
    .n_scalars = RADAM_N_SCALARS,
    .spirv = RADAM_SPIRV,
};

static const char *const radam_slots[] = {"exp_avg", "exp_avg_sq", NULL};

static const LmnOptimizerVTable radam_vtable = {
    .struct_size = sizeof(LmnOptimizerVTable),
    .slots = radam_slots,
    .update = &radam_kernel,
    .n_host_state = 0,
    .host_state_names = NULL,
    .prepare = radam_prepare,
    .slot_initial_value = NULL,
    /* torch.optim.RAdam checks each value on its own; the schema does that. */
    .validate = NULL,
};

static const LmnParamSpec radam_specs[] = {
    {.name = "lr",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0.001",
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
     .doc = "decay of the running average of the squared gradient (torch betas[1])"},
    {.name = "eps",
     .type = LMN_PARAM_FLOAT,
     .default_value = "1e-8",
     .min = 0,
     .max = INFINITY,
     .doc = "added to the denominator for numerical stability"},
    {.name = "weight_decay",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0",
     .min = 0,
     .max = INFINITY,
     .doc = "L2 penalty added to the gradient: grad + weight_decay * param"},
    {NULL},
};

static const LmnFeatureDesc radam_features[] = {
    {
        .struct_size = sizeof(LmnFeatureDesc),
        .kind = LMN_FEATURE_OPTIMIZER,
        .name = "radam",
        .description = "rectified Adam (torch.optim.RAdam)",
        .params = radam_specs,
        .vtable = &radam_vtable,
    },
};

static const LmnPluginDesc radam_plugin = {
    .struct_size = sizeof(LmnPluginDesc),
    .abi_major = LMN_ABI_MAJOR,
    .abi_minor = LMN_ABI_MINOR,
    .name = "lamina.radam",
    .version = LMN_VERSION_STRING,
    .license = "MIT",
    .description = "RAdam (torch.optim.RAdam)",
    .n_features = G_N_ELEMENTS(radam_features),
    .features = radam_features,
};

LMN_PLUGIN_DEFINE(radam_plugin)
