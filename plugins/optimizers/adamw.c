/* Lamina — AdamW with torch.optim.AdamW's parameters and update rule (PyTorch 1.13,
 * _single_tensor_adamw, the non-capturable path), operation for operation in float32:
 *
 *     param = param * (1 - lr * weight_decay)                  (decoupled weight decay)
 *     d = maximize ? -grad : grad
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
    ADAMW_NEG_STEP_SIZE, /* -lr / (1 - beta1^t) */
    ADAMW_BC2_SQRT,      /* sqrt(1 - beta2^t) */
    ADAMW_EPS,
    ADAMW_BETA1,
    ADAMW_ONE_MINUS_BETA1,
    ADAMW_BETA2,
    ADAMW_ONE_MINUS_BETA2,
    ADAMW_DECAY_FACTOR, /* 1 - lr * weight_decay */
    ADAMW_SIGN,         /* -1 with maximize, else 1 */
    ADAMW_AMSGRAD,      /* 1 or 0 */
    ADAMW_N_SCALARS
};

/* Specialised by constant arguments so each variant is a branch-free, vectorisable loop. */
static inline __attribute__((always_inline)) void
adamw_loop(gsize begin, gsize end, float *restrict param, const float *restrict grad,
           float *restrict exp_avg, float *restrict exp_avg_sq, float *restrict max_exp_avg_sq,
           const float *scalars, const gboolean amsgrad)
{
    const float neg_step = scalars[ADAMW_NEG_STEP_SIZE];
    const float bc2_sqrt = scalars[ADAMW_BC2_SQRT];
    const float eps = scalars[ADAMW_EPS];
    const float beta1 = scalars[ADAMW_BETA1];
    const float omb1 = scalars[ADAMW_ONE_MINUS_BETA1];
    const float beta2 = scalars[ADAMW_BETA2];
    const float omb2 = scalars[ADAMW_ONE_MINUS_BETA2];
    const float decay_factor = scalars[ADAMW_DECAY_FACTOR];
    const float sign = scalars[ADAMW_SIGN];

    for (gsize i = begin; i < end; i++) {
        /* torch multiplies by 1 - lr * weight_decay even when it is 1: exact, so always do */
        float p = param[i] * decay_factor;
        float d = sign * grad[i];
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
        param[i] = p + (neg_step * m) / denom;
    }
}

static void adamw_update_cpu(gsize begin, gsize end, void *const *buffers, const float *scalars)
{
    float *p = buffers[0];
    const float *g = buffers[1];
    float *m = buffers[2], *v = buffers[3], *vmax = buffers[4];
    gboolean amsgrad = scalars[ADAMW_AMSGRAD] != 0.0f;

    if (amsgrad)
        adamw_loop(begin, end, p, g, m, v, vmax, scalars, TRUE);
    else
        adamw_loop(begin, end, p, g, m, v, vmax, scalars, FALSE);
}

static void adamw_prepare(const LmnParams *hyper, double lr, gint64 step, double *host_state,
                          float *scalars)
{
    double beta1 = lmn_params_get_float(hyper, "beta1");
    double beta2 = lmn_params_get_float(hyper, "beta2");
    double weight_decay = lmn_params_get_float(hyper, "weight_decay");
    double bc1 = 1.0 - pow(beta1, (double) step);
    double bc2 = 1.0 - pow(beta2, (double) step);

    scalars[ADAMW_NEG_STEP_SIZE] = (float) -(lr / bc1);
    scalars[ADAMW_BC2_SQRT] = (float) sqrt(bc2);
    scalars[ADAMW_EPS] = (float) lmn_params_get_float(hyper, "eps");
    scalars[ADAMW_BETA1] = (float) beta1;
    scalars[ADAMW_ONE_MINUS_BETA1] = (float) (1.0 - beta1);
    scalars[ADAMW_BETA2] = (float) beta2;
    scalars[ADAMW_ONE_MINUS_BETA2] = (float) (1.0 - beta2);
    scalars[ADAMW_DECAY_FACTOR] = (float) (1.0 - lr * weight_decay);
    scalars[ADAMW_SIGN] = lmn_params_get_bool(hyper, "maximize") ? -1.0f : 1.0f;
    scalars[ADAMW_AMSGRAD] = lmn_params_get_bool(hyper, "amsgrad") ? 1.0f : 0.0f;
}

static const guint8 adamw_access[] = {LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ, LMN_KERNEL_READ_WRITE,
                                      LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ_WRITE};

#ifdef LMN_HAVE_SPIRV
/* The GPU variant (shaders/adamw-update.comp): the same float operations in the same order. */
#include <stdint.h> /* the generated header uses uint32_t */

#include "adamw-update-spv.h"

static const LmnKernelSpirv adamw_spirv = {
    .struct_size = sizeof(LmnKernelSpirv),
    .code = adamw_update_spv,
    .code_size = sizeof adamw_update_spv,
    .entry_point = "main",
};
#define ADAMW_SPIRV (&adamw_spirv)
#else
#define ADAMW_SPIRV NULL
#endif

static const LmnKernelDesc adamw_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "adamw.update",
    .cpu = adamw_update_cpu,
    .n_buffers = G_N_ELEMENTS(adamw_access),
    .access = adamw_access,
    .n_scalars = ADAMW_N_SCALARS,
    .spirv = ADAMW_SPIRV,
};

static const char *const adamw_slots[] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq", NULL};

static const LmnOptimizerVTable adamw_vtable = {
    .struct_size = sizeof(LmnOptimizerVTable),
    .slots = adamw_slots,
    .update = &adamw_kernel,
    .n_host_state = 0,
    .host_state_names = NULL,
    .prepare = adamw_prepare,
    .slot_initial_value = NULL,
    /* torch.optim.AdamW checks each value on its own; the schema does that. */
    .validate = NULL,
};

static const LmnParamSpec adamw_specs[] = {
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
     .default_value = "0.01",
     .min = 0,
     .max = INFINITY,
     .doc = "decoupled weight decay: param * (1 - lr * weight_decay) before the Adam step"},
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

static const LmnFeatureDesc adamw_features[] = {
    {
        .struct_size = sizeof(LmnFeatureDesc),
        .kind = LMN_FEATURE_OPTIMIZER,
        .name = "adamw",
        .description = "Adam with decoupled weight decay and AMSGrad (torch.optim.AdamW)",
        .params = adamw_specs,
        .vtable = &adamw_vtable,
    },
};

static const LmnPluginDesc adamw_plugin = {
    .struct_size = sizeof(LmnPluginDesc),
    .abi_major = LMN_ABI_MAJOR,
    .abi_minor = LMN_ABI_MINOR,
    .name = "lamina.adamw",
    .version = LMN_VERSION_STRING,
    .license = "MIT",
    .description = "AdamW (torch.optim.AdamW)",
    .n_features = G_N_ELEMENTS(adamw_features),
    .features = adamw_features,
};

LMN_PLUGIN_DEFINE(adamw_plugin)
