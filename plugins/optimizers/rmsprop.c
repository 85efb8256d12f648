/* Lamina — RMSprop with torch.optim.RMSprop's parameters and update rule (PyTorch 1.13,
 * _single_tensor_rmsprop), operation for operation in float32:
 *
 *     d = maximize ? -grad : grad
 *     if weight_decay != 0:  d = d + weight_decay * param
 *     sq = sq * alpha;  sq = sq + ((1 - alpha) * d) * d
 *     if centered:
 *         ga = ga * alpha;  ga = ga + (1 - alpha) * d
 *         avg = sqrt(sq + (-1 * ga) * ga) + eps
 *     else:
 *         avg = sqrt(sq) + eps
 *     if momentum > 0:
 *         buf = buf * momentum;  buf = buf + d / avg
 *         param = param + (-lr) * buf
 *     else:
 *         param = param + ((-lr) * d) / avg
 *
 * Slots: torch creates momentum_buffer only with momentum > 0 and grad_avg only when centered; a
 * Lamina optimizer declares its slots once, so they always exist and stay 0 when unused.
 */
#include <lamina/lamina.h>

#include <math.h>

enum {
    RMSPROP_NEG_LR,
    RMSPROP_ALPHA,
    RMSPROP_ONE_MINUS_ALPHA,
    RMSPROP_EPS,
    RMSPROP_WEIGHT_DECAY,
    RMSPROP_MOMENTUM,
    RMSPROP_SIGN,         /* -1 with maximize, else 1 */
    RMSPROP_CENTERED,     /* 1 or 0 */
    RMSPROP_USE_MOMENTUM, /* 1 when momentum > 0 */
    RMSPROP_USE_DECAY,    /* 1 when weight_decay != 0 */
    RMSPROP_N_SCALARS
};

static inline __attribute__((always_inline)) void
rmsprop_loop(gsize begin, gsize end, float *restrict param, const float *restrict grad,
             float *restrict square_avg, float *restrict momentum_buffer, float *restrict grad_avg,
             const float *scalars, const gboolean centered, const gboolean use_momentum,
             const gboolean decay)
{
    const float neg_lr = scalars[RMSPROP_NEG_LR];
    const float alpha = scalars[RMSPROP_ALPHA];
    const float oma = scalars[RMSPROP_ONE_MINUS_ALPHA];
    const float eps = scalars[RMSPROP_EPS];
    const float wd = scalars[RMSPROP_WEIGHT_DECAY];
    const float momentum = scalars[RMSPROP_MOMENTUM];
    const float sign = scalars[RMSPROP_SIGN];

    for (gsize i = begin; i < end; i++) {
        float d = sign * grad[i];
        if (decay)
            d = d + wd * param[i];
        float sq = square_avg[i] * alpha;
        sq = sq + (oma * d) * d;
        square_avg[i] = sq;
        float avg;
        if (centered) {
            float ga = grad_avg[i] * alpha;
            ga = ga + oma * d;
            grad_avg[i] = ga;
            avg = sqrtf(sq + (-1.0f * ga) * ga);
        } else {
            avg = sqrtf(sq);
        }
        avg = avg + eps;
        if (use_momentum) {
            float b = momentum_buffer[i] * momentum;
            b = b + d / avg; /* addcdiv with value 1: 1 * d is exactly d */
            momentum_buffer[i] = b;
            param[i] = param[i] + neg_lr * b;
        } else {
            param[i] = param[i] + (neg_lr * d) / avg;
        }
    }
}

#define RMSPROP_CALL(c, m, w)                                                                      \
    rmsprop_loop(begin, end, buffers[0], buffers[1], buffers[2], buffers[3], buffers[4], scalars,  \
                 c, m, w)

static void rmsprop_update_cpu(gsize begin, gsize end, void *const *buffers, const float *scalars)
{
    gboolean centered = scalars[RMSPROP_CENTERED] != 0.0f;
    gboolean use_momentum = scalars[RMSPROP_USE_MOMENTUM] != 0.0f;
    gboolean decay = scalars[RMSPROP_USE_DECAY] != 0.0f;
    int variant = (centered ? 4 : 0) | (use_momentum ? 2 : 0) | (decay ? 1 : 0);

    switch (variant) {
    case 0:
        RMSPROP_CALL(FALSE, FALSE, FALSE);
        break;
    case 1:
        RMSPROP_CALL(FALSE, FALSE, TRUE);
        break;
    case 2:
        RMSPROP_CALL(FALSE, TRUE, FALSE);
        break;
    case 3:
        RMSPROP_CALL(FALSE, TRUE, TRUE);
        break;
    case 4:
        RMSPROP_CALL(TRUE, FALSE, FALSE);
        break;
    case 5:
        RMSPROP_CALL(TRUE, FALSE, TRUE);
        break;
    case 6:
        RMSPROP_CALL(TRUE, TRUE, FALSE);
        break;
    default:
        RMSPROP_CALL(TRUE, TRUE, TRUE);
        break;
    }
}

static void rmsprop_prepare(const LmnParams *hyper, double lr, gint64 step, double *host_state,
                            float *scalars)
{
    double alpha = lmn_params_get_float(hyper, "alpha");
    double momentum = lmn_params_get_float(hyper, "momentum");
    double weight_decay = lmn_params_get_float(hyper, "weight_decay");

    scalars[RMSPROP_NEG_LR] = (float) -lr;
    scalars[RMSPROP_ALPHA] = (float) alpha;
    scalars[RMSPROP_ONE_MINUS_ALPHA] = (float) (1.0 - alpha);
    scalars[RMSPROP_EPS] = (float) lmn_params_get_float(hyper, "eps");
    scalars[RMSPROP_WEIGHT_DECAY] = (float) weight_decay;
    scalars[RMSPROP_MOMENTUM] = (float) momentum;
    scalars[RMSPROP_SIGN] = lmn_params_get_bool(hyper, "maximize") ? -1.0f : 1.0f;
    scalars[RMSPROP_CENTERED] = lmn_params_get_bool(hyper, "centered") ? 1.0f : 0.0f;
    scalars[RMSPROP_USE_MOMENTUM] = momentum > 0.0 ? 1.0f : 0.0f;
    scalars[RMSPROP_USE_DECAY] = weight_decay != 0.0 ? 1.0f : 0.0f;
}

static const guint8 rmsprop_access[] = {LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ,
                                        LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ_WRITE,
                                        LMN_KERNEL_READ_WRITE};

#ifdef LMN_HAVE_SPIRV
/* The GPU variant (shaders/rmsprop-update.comp): the same float operations in the same order. */
#include <stdint.h> /* the generated header uses uint32_t */

#include "rmsprop-update-spv.h"

static const LmnKernelSpirv rmsprop_spirv = {
    .struct_size = sizeof(LmnKernelSpirv),
    .code = rmsprop_update_spv,
    .code_size = sizeof rmsprop_update_spv,
    .entry_point = "main",
};
#define RMSPROP_SPIRV (&rmsprop_spirv)
#else
#define RMSPROP_SPIRV NULL
#endif

static const LmnKernelDesc rmsprop_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "rmsprop.update",
    .cpu = rmsprop_update_cpu,
    .n_buffers = G_N_ELEMENTS(rmsprop_access),
    .access = rmsprop_access,
    .n_scalars = RMSPROP_N_SCALARS,
    .spirv = RMSPROP_SPIRV,
};

static const char *const rmsprop_slots[] = {"square_avg", "momentum_buffer", "grad_avg", NULL};

static const LmnOptimizerVTable rmsprop_vtable = {
    .struct_size = sizeof(LmnOptimizerVTable),
    .slots = rmsprop_slots,
    .update = &rmsprop_kernel,
    .n_host_state = 0,
    .host_state_names = NULL,
    .prepare = rmsprop_prepare,
    .slot_initial_value = NULL,
    /* torch.optim.RMSprop checks each value on its own; the schema does that. */
    .validate = NULL,
};

static const LmnParamSpec rmsprop_specs[] = {
    {.name = "lr",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0.01",
     .min = 0,
     .max = INFINITY,
     .doc = "learning rate"},
    {.name = "alpha",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0.99",
     .min = 0,
     .max = INFINITY,
     .doc = "smoothing constant of the running average of the squared gradient"},
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
    {.name = "momentum",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0",
     .min = 0,
     .max = INFINITY,
     .doc = "momentum factor; 0 disables the momentum buffer"},
    {.name = "centered",
     .type = LMN_PARAM_BOOL,
     .default_value = "false",
     .doc = "normalise by the estimated variance of the gradient instead of its second moment"},
    {.name = "maximize",
     .type = LMN_PARAM_BOOL,
     .default_value = "false",
     .doc = "maximise the objective instead of minimising it (negates the gradient)"},
    {NULL},
};

static const LmnFeatureDesc rmsprop_features[] = {
    {
        .struct_size = sizeof(LmnFeatureDesc),
        .kind = LMN_FEATURE_OPTIMIZER,
        .name = "rmsprop",
        .description = "RMSprop with momentum and the centered variant (torch.optim.RMSprop)",
        .params = rmsprop_specs,
        .vtable = &rmsprop_vtable,
    },
};

static const LmnPluginDesc rmsprop_plugin = {
    .struct_size = sizeof(LmnPluginDesc),
    .abi_major = LMN_ABI_MAJOR,
    .abi_minor = LMN_ABI_MINOR,
    .name = "lamina.rmsprop",
    .version = LMN_VERSION_STRING,
    .license = "MIT",
    .description = "RMSprop (torch.optim.RMSprop)",
    .n_features = G_N_ELEMENTS(rmsprop_features),
    .features = rmsprop_features,
};

LMN_PLUGIN_DEFINE(rmsprop_plugin)
