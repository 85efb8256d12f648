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
#include "optimizer-common.h"

enum {
    ADAGRAD_NEG_CLR, /* -lr / (1 + (t - 1) * lr_decay) */
    ADAGRAD_EPS,
    ADAGRAD_WEIGHT_DECAY,
    ADAGRAD_SIGN,       /* -1 with maximize, else 1 */
    ADAGRAD_USE_DECAY,  /* 1 when weight_decay != 0 */
    ADAGRAD_GRAD_SCALE, /* the gradient's factor (ABI 1.6, gradient clipping); 1 */
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

    const float grad_scale = scalars[ADAGRAD_GRAD_SCALE];
    for (gsize i = begin; i < end; i++) {
        float d = sign * (grad[i] * grad_scale);
        if (decay)
            d = d + wd * param[i];
        float s = sum[i] + d * d; /* addcmul with value 1: 1 * d is exactly d */
        sum[i] = s;
        param[i] = param[i] + (neg_clr * d) / (sqrtf(s) + eps);
    }
}

static void adagrad_update_cpu(gsize begin, gsize end, void *const *buffers, const float *scalars)
{
    gboolean decay = lmn_opt_is_set(scalars, ADAGRAD_USE_DECAY);

    LMN_OPT_SPECIALISE1(decay, adagrad_loop, begin, end, buffers[0], buffers[1], buffers[2],
                        scalars);
}

static void adagrad_prepare(const LmnParams *hyper, double lr, gint64 step, double *host_state,
                            float *scalars)
{
    scalars[ADAGRAD_GRAD_SCALE] = 1.0f; /* the core writes clipping's factor over it */
    double lr_decay = lmn_params_get_float(hyper, "lr_decay");
    double weight_decay = lmn_params_get_float(hyper, "weight_decay");

    scalars[ADAGRAD_NEG_CLR] = (float) -(lr / (1.0 + (double) (step - 1) * lr_decay));
    scalars[ADAGRAD_EPS] = lmn_opt_float(hyper, "eps");
    scalars[ADAGRAD_WEIGHT_DECAY] = (float) weight_decay;
    scalars[ADAGRAD_SIGN] = lmn_opt_sign(hyper);
    scalars[ADAGRAD_USE_DECAY] = lmn_opt_flag(weight_decay != 0.0);
}

static double adagrad_slot_initial_value(const LmnParams *hyper, guint slot)
{
    return lmn_params_get_float(hyper, "initial_accumulator_value");
}

#ifdef LMN_HAVE_SPIRV
/* The GPU variant (shaders/optimizers/adagrad-update.comp): the same float operations in the same order. */
#include "adagrad-update-spv.h"
#endif

static const char *const adagrad_slots[] = {"sum", NULL};

LMN_OPT_KERNEL(adagrad, ADAGRAD_N_SCALARS);

/* torch.optim.Adagrad checks each value on its own; the schema does that. */
static const LmnOptimizerVTable adagrad_vtable = {
    LMN_OPT_VTABLE_BASE(adagrad, ADAGRAD_GRAD_SCALE),
    .slot_initial_value = adagrad_slot_initial_value,
};

static const LmnParamSpec adagrad_specs[] = {
    LMN_OPT_SPEC_LR("0.01"),
    LMN_OPT_SPEC_FLOAT("lr_decay", "0", "step t uses lr / (1 + (t - 1) * lr_decay)"),
    LMN_OPT_SPEC_L2_WEIGHT_DECAY,
    LMN_OPT_SPEC_FLOAT("initial_accumulator_value", "0",
                       "starting value of the sum of squared gradients"),
    LMN_OPT_SPEC_EPS("1e-10"),
    LMN_OPT_SPEC_MAXIMIZE,
    LMN_PARAM_SPEC_END,
};

static const LmnFeatureDesc adagrad_features[] = {
    LMN_FEATURE(LMN_FEATURE_OPTIMIZER, "adagrad",
                "Adagrad with learning-rate decay (torch.optim.Adagrad)", adagrad_specs,
                &adagrad_vtable),
};

LMN_OPT_PLUGIN(adagrad, "lamina.adagrad", "Adagrad (torch.optim.Adagrad)")
