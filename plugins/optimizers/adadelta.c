/* Lamina — Adadelta with torch.optim.Adadelta's parameters and update rule (PyTorch 1.13,
 * _single_tensor_adadelta), operation for operation in float32:
 *
 *     d = maximize ? -grad : grad
 *     if weight_decay != 0:  d = d + weight_decay * param
 *     sq = sq * rho;  sq = sq + ((1 - rho) * d) * d
 *     delta = (sqrt(acc + eps) / sqrt(sq + eps)) * d
 *     acc = acc * rho;  acc = acc + ((1 - rho) * delta) * delta
 *     param = param + (-lr) * delta
 */
#include <lamina/lamina.h>

#include <math.h>

enum {
    ADADELTA_NEG_LR,
    ADADELTA_RHO,
    ADADELTA_ONE_MINUS_RHO,
    ADADELTA_EPS,
    ADADELTA_WEIGHT_DECAY,
    ADADELTA_SIGN,      /* -1 with maximize, else 1 */
    ADADELTA_USE_DECAY, /* 1 when weight_decay != 0 */
    ADADELTA_N_SCALARS
};

static inline __attribute__((always_inline)) void
adadelta_loop(gsize begin, gsize end, float *restrict param, const float *restrict grad,
              float *restrict square_avg, float *restrict acc_delta, const float *scalars,
              const gboolean decay)
{
    const float neg_lr = scalars[ADADELTA_NEG_LR];
    const float rho = scalars[ADADELTA_RHO];
    const float omr = scalars[ADADELTA_ONE_MINUS_RHO];
    const float eps = scalars[ADADELTA_EPS];
    const float wd = scalars[ADADELTA_WEIGHT_DECAY];
    const float sign = scalars[ADADELTA_SIGN];

    for (gsize i = begin; i < end; i++) {
        float d = sign * grad[i];
        if (decay)
            d = d + wd * param[i];
        float sq = square_avg[i] * rho;
        sq = sq + (omr * d) * d;
        square_avg[i] = sq;
        float std = sqrtf(sq + eps);
        float delta = (sqrtf(acc_delta[i] + eps) / std) * d;
        float acc = acc_delta[i] * rho;
        acc = acc + (omr * delta) * delta;
        acc_delta[i] = acc;
        param[i] = param[i] + neg_lr * delta;
    }
}

static void adadelta_update_cpu(gsize begin, gsize end, void *const *buffers, const float *scalars)
{
    if (scalars[ADADELTA_USE_DECAY] != 0.0f)
        adadelta_loop(begin, end, buffers[0], buffers[1], buffers[2], buffers[3], scalars, TRUE);
    else
        adadelta_loop(begin, end, buffers[0], buffers[1], buffers[2], buffers[3], scalars, FALSE);
}

static void adadelta_prepare(const LmnParams *hyper, double lr, gint64 step, double *host_state,
                             float *scalars)
{
    double rho = lmn_params_get_float(hyper, "rho");
    double weight_decay = lmn_params_get_float(hyper, "weight_decay");

    scalars[ADADELTA_NEG_LR] = (float) -lr;
    scalars[ADADELTA_RHO] = (float) rho;
    scalars[ADADELTA_ONE_MINUS_RHO] = (float) (1.0 - rho);
    scalars[ADADELTA_EPS] = (float) lmn_params_get_float(hyper, "eps");
    scalars[ADADELTA_WEIGHT_DECAY] = (float) weight_decay;
    scalars[ADADELTA_SIGN] = lmn_params_get_bool(hyper, "maximize") ? -1.0f : 1.0f;
    scalars[ADADELTA_USE_DECAY] = weight_decay != 0.0 ? 1.0f : 0.0f;
}

static const guint8 adadelta_access[] = {LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ,
                                         LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ_WRITE};

#ifdef LMN_HAVE_SPIRV
/* The GPU variant (shaders/adadelta-update.comp): the same float operations in the same order. */
#include <stdint.h> /* the generated header uses uint32_t */

#include "adadelta-update-spv.h"

static const LmnKernelSpirv adadelta_spirv = {
    .struct_size = sizeof(LmnKernelSpirv),
    .code = adadelta_update_spv,
    .code_size = sizeof adadelta_update_spv,
    .entry_point = "main",
};
#define ADADELTA_SPIRV (&adadelta_spirv)
#else
#define ADADELTA_SPIRV NULL
#endif

static const LmnKernelDesc adadelta_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "adadelta.update",
    .cpu = adadelta_update_cpu,
    .n_buffers = G_N_ELEMENTS(adadelta_access),
    .access = adadelta_access,
    .n_scalars = ADADELTA_N_SCALARS,
    .spirv = ADADELTA_SPIRV,
};

static const char *const adadelta_slots[] = {"square_avg", "acc_delta", NULL};

static const LmnOptimizerVTable adadelta_vtable = {
    .struct_size = sizeof(LmnOptimizerVTable),
    .slots = adadelta_slots,
    .update = &adadelta_kernel,
    .n_host_state = 0,
    .host_state_names = NULL,
    .prepare = adadelta_prepare,
    .slot_initial_value = NULL,
    /* torch.optim.Adadelta checks each value on its own; the schema does that. */
    .validate = NULL,
};

static const LmnParamSpec adadelta_specs[] = {
    {.name = "lr",
     .type = LMN_PARAM_FLOAT,
     .default_value = "1.0",
     .min = 0,
     .max = INFINITY,
     .doc = "coefficient that scales delta before it is applied to the parameters"},
    {.name = "rho",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0.9",
     .min = 0,
     .max = 1,
     .doc = "decay of the running averages of the squared gradient and the squared update"},
    {.name = "eps",
     .type = LMN_PARAM_FLOAT,
     .default_value = "1e-6",
     .min = 0,
     .max = INFINITY,
     .doc = "added inside both square roots for numerical stability"},
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

static const LmnFeatureDesc adadelta_features[] = {
    {
        .struct_size = sizeof(LmnFeatureDesc),
        .kind = LMN_FEATURE_OPTIMIZER,
        .name = "adadelta",
        .description = "Adadelta (torch.optim.Adadelta)",
        .params = adadelta_specs,
        .vtable = &adadelta_vtable,
    },
};

static const LmnPluginDesc adadelta_plugin = {
    .struct_size = sizeof(LmnPluginDesc),
    .abi_major = LMN_ABI_MAJOR,
    .abi_minor = LMN_ABI_MINOR,
    .name = "lamina.adadelta",
    .version = LMN_VERSION_STRING,
    .license = "MIT",
    .description = "Adadelta (torch.optim.Adadelta)",
    .n_features = G_N_ELEMENTS(adadelta_features),
    .features = adadelta_features,
};

LMN_PLUGIN_DEFINE(adadelta_plugin)
