/* Lamina — stochastic gradient descent with torch.optim.SGD's parameters and update rule
 * (PyTorch 1.13, _single_tensor_sgd), operation for operation in float32 so trajectories match:
 *
 *     d = maximize ? -grad : grad
 *     if weight_decay != 0:  d = d + weight_decay * param
 *     if momentum != 0:
 *         buf = d                                         on the first step
 *         buf = momentum * buf + (1 - dampening) * d      afterwards
 *         d = nesterov ? d + momentum * buf : buf
 *     param = param + (-lr) * d
 *
 * PyTorch refuses nesterov with momentum <= 0 or dampening != 0; so does sgd_validate, before
 * training starts.
 */
#include "optimizer-common.h"

/* The scalar block prepare() fills. */
enum {
    SGD_NEG_LR,       /* -lr, rounded to float as torch's alpha is */
    SGD_WEIGHT_DECAY, /* weight_decay */
    SGD_BUF_DECAY,    /* momentum, or 0 on the first step (buf = d exactly) */
    SGD_BUF_GAIN,     /* 1 - dampening, or 1 on the first step */
    SGD_MOMENTUM,     /* momentum, for the Nesterov look-ahead */
    SGD_SIGN,         /* -1 with maximize, else 1 */
    SGD_MODE,         /* SgdMode */
    SGD_USE_DECAY,    /* 1 when weight_decay != 0 */
    SGD_GRAD_SCALE,   /* the gradient's factor (ABI 1.6, gradient clipping); 1 */
    SGD_N_SCALARS
};

typedef enum {
    SGD_MODE_PLAIN = 0,
    SGD_MODE_MOMENTUM = 1,
    SGD_MODE_NESTEROV = 2,
} SgdMode;

/* One loop body per mode, specialised by constant arguments so each inner loop is branch-free
 * and vectorises.  The operations and their order are torch's: no fused multiply-adds are formed
 * on targets without FMA, and where the compiler may form them the difference is one rounding. */
static inline __attribute__((always_inline)) void
sgd_loop(gsize begin, gsize end, float *restrict param, const float *restrict grad,
         float *restrict buf, const float *scalars, const SgdMode mode, const gboolean decay)
{
    const float neg_lr = scalars[SGD_NEG_LR];
    const float wd = scalars[SGD_WEIGHT_DECAY];
    const float buf_decay = scalars[SGD_BUF_DECAY];
    const float buf_gain = scalars[SGD_BUF_GAIN];
    const float momentum = scalars[SGD_MOMENTUM];
    const float sign = scalars[SGD_SIGN];

    const float grad_scale = scalars[SGD_GRAD_SCALE];
    for (gsize i = begin; i < end; i++) {
        float d = sign * (grad[i] * grad_scale);
        if (decay)
            d = d + wd * param[i];
        if (mode != SGD_MODE_PLAIN) {
            float b = buf_decay * buf[i] + buf_gain * d;
            buf[i] = b;
            d = mode == SGD_MODE_NESTEROV ? d + momentum * b : b;
        }
        param[i] = param[i] + neg_lr * d;
    }
}

static void sgd_update_cpu(gsize begin, gsize end, void *const *buffers, const float *scalars)
{
    float *param = buffers[0];
    const float *grad = buffers[1];
    float *buf = buffers[2];
    SgdMode mode = (SgdMode) scalars[SGD_MODE];
    gboolean decay = lmn_opt_is_set(scalars, SGD_USE_DECAY);

    switch (mode) {
    case SGD_MODE_PLAIN:
        LMN_OPT_SPECIALISE1(decay, sgd_loop, begin, end, param, grad, buf, scalars, SGD_MODE_PLAIN);
        break;
    case SGD_MODE_MOMENTUM:
        LMN_OPT_SPECIALISE1(decay, sgd_loop, begin, end, param, grad, buf, scalars,
                            SGD_MODE_MOMENTUM);
        break;
    case SGD_MODE_NESTEROV:
        LMN_OPT_SPECIALISE1(decay, sgd_loop, begin, end, param, grad, buf, scalars,
                            SGD_MODE_NESTEROV);
        break;
    }
}

static void sgd_prepare(const LmnParams *hyper, double lr, gint64 step, double *host_state,
                        float *scalars)
{
    scalars[SGD_GRAD_SCALE] = 1.0f; /* the core writes clipping's factor over it */
    double momentum = lmn_params_get_float(hyper, "momentum");
    double dampening = lmn_params_get_float(hyper, "dampening");
    double weight_decay = lmn_params_get_float(hyper, "weight_decay");
    gboolean nesterov = lmn_params_get_bool(hyper, "nesterov");
    gboolean first = step <= 1;

    scalars[SGD_NEG_LR] = (float) -lr;
    scalars[SGD_WEIGHT_DECAY] = (float) weight_decay;
    /* torch creates the buffer as a copy of d on the first step: 0 * 0 + 1 * d is exactly d. */
    scalars[SGD_BUF_DECAY] = first ? 0.0f : (float) momentum;
    scalars[SGD_BUF_GAIN] = first ? 1.0f : (float) (1.0 - dampening);
    scalars[SGD_MOMENTUM] = (float) momentum;
    scalars[SGD_SIGN] = lmn_opt_sign(hyper);
    scalars[SGD_MODE] = momentum == 0.0 ? (float) SGD_MODE_PLAIN
                        : nesterov      ? (float) SGD_MODE_NESTEROV
                                        : (float) SGD_MODE_MOMENTUM;
    scalars[SGD_USE_DECAY] = lmn_opt_flag(weight_decay != 0.0);
}

#ifdef LMN_HAVE_SPIRV
/* The GPU variant (shaders/optimizers/sgd-update.comp): the same float operations in the same order. */
#include "sgd-update-spv.h"
#endif

static const char *const sgd_slots[] = {"momentum_buffer", NULL};

LMN_OPT_KERNEL(sgd, SGD_N_SCALARS);

static gboolean sgd_validate(const LmnParams *hyper, GError **error)
{
    if (lmn_params_get_bool(hyper, "nesterov") && (lmn_params_get_float(hyper, "momentum") <= 0 ||
                                                   lmn_params_get_float(hyper, "dampening") != 0)) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "nesterov = true requires momentum > 0 and dampening = 0 (momentum is %g, "
                    "dampening %g), as in torch.optim.SGD",
                    lmn_params_get_float(hyper, "momentum"),
                    lmn_params_get_float(hyper, "dampening"));
        return FALSE;
    }
    return TRUE;
}

static const LmnOptimizerVTable sgd_vtable = {
    LMN_OPT_VTABLE_BASE(sgd, SGD_GRAD_SCALE),
    .validate = sgd_validate,
};

static const LmnParamSpec sgd_specs[] = {
    LMN_OPT_SPEC_FLOAT("lr", "0.01",
                       "learning rate (torch.optim.SGD requires one; Lamina defaults to 0.01)"),
    LMN_OPT_SPEC_MOMENTUM,
    /* min > max: no range,
    as torch.optim.SGD checks none */
    {.name = "dampening",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0",
     .min = 1,
     .max = 0,
     .doc = "dampening for momentum: buf = momentum * buf + (1 - dampening) * grad"},
    LMN_OPT_SPEC_BOOL("nesterov", "false",
                      "Nesterov momentum (PyTorch requires momentum > 0 and dampening = 0)"),
    LMN_OPT_SPEC_L2_WEIGHT_DECAY,
    LMN_OPT_SPEC_MAXIMIZE,
    LMN_PARAM_SPEC_END,
};

static const LmnFeatureDesc sgd_features[] = {
    LMN_FEATURE(LMN_FEATURE_OPTIMIZER, "sgd",
                "stochastic gradient descent with momentum, Nesterov and weight decay "
                "(torch.optim.SGD)",
                sgd_specs, &sgd_vtable),
};

LMN_OPT_PLUGIN(sgd, "lamina.sgd", "stochastic gradient descent (torch.optim.SGD)")
