/* Lamina — Adam with torch.optim.Adam's parameters and update rule (PyTorch 1.13,
 * _single_tensor_adam, the non-capturable path), operation for operation in float32:
 *
 *     d = maximize ? -grad : grad
 *     if weight_decay != 0:  d = d + weight_decay * param          (L2, added to the gradient)
 *     m = m * beta1;  m = m + (1 - beta1) * d
 *     v = v * beta2;  v = v + ((1 - beta2) * d) * d
 *     if amsgrad:  vmax = max(vmax, v);  v' = vmax  else v' = v
 *     denom = sqrt(v') / sqrt(bias_correction2) + eps
 *     param = param + ((-lr / bias_correction1) * m) / denom
 *
 * The bias corrections 1 - beta^t, their square root and the step size are computed in double
 * by prepare(), as Python computes them, and rounded to float once, as torch rounds a Python
 * scalar when it enters a float32 kernel.
 *
 * Slots: torch creates max_exp_avg_sq only with amsgrad; a Lamina optimizer declares its slots
 * once, so the slot always exists and stays 0 without amsgrad (the kernel never touches it then).
 */
#include <lamina/lamina.h>

#include <math.h>

enum {
    ADAM_NEG_STEP_SIZE, /* -lr / (1 - beta1^t) */
    ADAM_BC2_SQRT,      /* sqrt(1 - beta2^t) */
    ADAM_EPS,
    ADAM_BETA1,
    ADAM_ONE_MINUS_BETA1,
    ADAM_BETA2,
    ADAM_ONE_MINUS_BETA2,
    ADAM_WEIGHT_DECAY,
    ADAM_SIGN,      /* -1 with maximize, else 1 */
    ADAM_AMSGRAD,   /* 1 or 0 */
    ADAM_USE_DECAY, /* 1 when weight_decay != 0 */
    ADAM_N_SCALARS
};

/* Specialised by constant arguments so each variant is a branch-free, vectorisable loop. */
static inline __attribute__((always_inline)) void
adam_loop(gsize begin, gsize end, float *restrict param, const float *restrict grad,
          float *restrict exp_avg, float *restrict exp_avg_sq, float *restrict max_exp_avg_sq,
          const float *scalars, const gboolean amsgrad, const gboolean decay)
{
    const float neg_step = scalars[ADAM_NEG_STEP_SIZE];
    const float bc2_sqrt = scalars[ADAM_BC2_SQRT];
    const float eps = scalars[ADAM_EPS];
    const float beta1 = scalars[ADAM_BETA1];
    const float omb1 = scalars[ADAM_ONE_MINUS_BETA1];
    const float beta2 = scalars[ADAM_BETA2];
    const float omb2 = scalars[ADAM_ONE_MINUS_BETA2];
    const float wd = scalars[ADAM_WEIGHT_DECAY];
    const float sign = scalars[ADAM_SIGN];

    for (gsize i = begin; i < end; i++) {
        float d = sign * grad[i];
        if (decay)
            d = d + wd * param[i];
        float m = exp_avg[i] * beta1;
        m = m + omb1 * d;
        exp_avg[i] = m;
        float v = exp_avg_sq[i] * beta2;
        v = v + (omb2 * d) * d;
        exp_avg_sq[i] = v;
        if (amsgrad) {
            /* torch.maximum: NaN in either operand propagates */
            float old = max_exp_avg_sq[i];
            v = (old > v || isnan(old)) ? old : v;
            max_exp_avg_sq[i] = v;
        }
        float denom = sqrtf(v) / bc2_sqrt + eps;
        param[i] = param[i] + (neg_step * m) / denom;
    }
}

static void adam_update_cpu(gsize begin, gsize end, void *const *buffers, const float *scalars)
{
    float *p = buffers[0];
    const float *g = buffers[1];
    float *m = buffers[2], *v = buffers[3], *vmax = buffers[4];
    gboolean amsgrad = scalars[ADAM_AMSGRAD] != 0.0f;
    gboolean decay = scalars[ADAM_USE_DECAY] != 0.0f;

    if (amsgrad && decay)
        adam_loop(begin, end, p, g, m, v, vmax, scalars, TRUE, TRUE);
    else if (amsgrad)
        adam_loop(begin, end, p, g, m, v, vmax, scalars, TRUE, FALSE);
    else if (decay)
        adam_loop(begin, end, p, g, m, v, vmax, scalars, FALSE, TRUE);
    else
        adam_loop(begin, end, p, g, m, v, vmax, scalars, FALSE, FALSE);
}

static void adam_prepare(const LmnParams *hyper, double lr, gint64 step, double *host_state,
                         float *scalars)
{
    double beta1 = lmn_params_get_float(hyper, "beta1");
    double beta2 = lmn_params_get_float(hyper, "beta2");
    double weight_decay = lmn_params_get_float(hyper, "weight_decay");
    double bc1 = 1.0 - pow(beta1, (double) step);
    double bc2 = 1.0 - pow(beta2, (double) step);

    scalars[ADAM_NEG_STEP_SIZE] = (float) -(lr / bc1);
    scalars[ADAM_BC2_SQRT] = (float) sqrt(bc2);
    scalars[ADAM_EPS] = (float) lmn_params_get_float(hyper, "eps");
    scalars[ADAM_BETA1] = (float) beta1;
    scalars[ADAM_ONE_MINUS_BETA1] = (float) (1.0 - beta1);
    scalars[ADAM_BETA2] = (float) beta2;
    scalars[ADAM_ONE_MINUS_BETA2] = (float) (1.0 - beta2);
    scalars[ADAM_WEIGHT_DECAY] = (float) weight_decay;
    scalars[ADAM_SIGN] = lmn_params_get_bool(hyper, "maximize") ? -1.0f : 1.0f;
    scalars[ADAM_AMSGRAD] = lmn_params_get_bool(hyper, "amsgrad") ? 1.0f : 0.0f;
    scalars[ADAM_USE_DECAY] = weight_decay != 0.0 ? 1.0f : 0.0f;
}

static const guint8 adam_access[] = {LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ, LMN_KERNEL_READ_WRITE,
                                     LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ_WRITE};

#ifdef LMN_HAVE_SPIRV
/* The GPU variant (shaders/adam-update.comp): the same float operations in the same order. */
#include <stdint.h> /* the generated header uses uint32_t */

#include "adam-update-spv.h"

static const LmnKernelSpirv adam_spirv = {
    .struct_size = sizeof(LmnKernelSpirv),
    .code = adam_update_spv,
    .code_size = sizeof adam_update_spv,
    .entry_point = "main",
};
#define ADAM_SPIRV (&adam_spirv)
#else
#define ADAM_SPIRV NULL
#endif

static const LmnKernelDesc adam_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "adam.update",
    .cpu = adam_update_cpu,
    .n_buffers = G_N_ELEMENTS(adam_access),
    .access = adam_access,
    .n_scalars = ADAM_N_SCALARS,
    .spirv = ADAM_SPIRV,
};

static const char *const adam_slots[] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq", NULL};

static const LmnOptimizerVTable adam_vtable = {
    .struct_size = sizeof(LmnOptimizerVTable),
    .slots = adam_slots,
    .update = &adam_kernel,
    .n_host_state = 0,
    .host_state_names = NULL,
    .prepare = adam_prepare,
    .slot_initial_value = NULL,
    /* torch.optim.Adam checks each value on its own; the schema does that. */
    .validate = NULL,
};

static const LmnParamSpec adam_specs[] = {
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
     .doc = "L2 penalty added to the gradient: grad + weight_decay * param (see adamw)"},
    {.name = "amsgrad",
     .type = LMN_PARAM_BOOL,
     .default_value = "false",
     .doc = "AMSGrad: normalise by the running maximum of the second moment"},
    {.name = "maximize",
     .type = LMN_PARAM_BOOL,
     .default_value = "false",
     .doc = "maximise the objective instead of minimising it (negates the gradient)"},
    {NULL},
};

static const LmnFeatureDesc adam_features[] = {
    {
        .struct_size = sizeof(LmnFeatureDesc),
        .kind = LMN_FEATURE_OPTIMIZER,
        .name = "adam",
        .description = "Adam with L2 weight decay and AMSGrad (torch.optim.Adam)",
        .params = adam_specs,
        .vtable = &adam_vtable,
    },
};

static const LmnPluginDesc adam_plugin = {
    .struct_size = sizeof(LmnPluginDesc),
    .abi_major = LMN_ABI_MAJOR,
    .abi_minor = LMN_ABI_MINOR,
    .name = "lamina.adam",
    .version = LMN_VERSION_STRING,
    .license = "MIT",
    .description = "Adam (torch.optim.Adam)",
    .n_features = G_N_ELEMENTS(adam_features),
    .features = adam_features,
};

LMN_PLUGIN_DEFINE(adam_plugin)
