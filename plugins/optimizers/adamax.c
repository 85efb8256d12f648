/* Lamina — Adamax with torch.optim.Adamax's parameters and update rule (PyTorch 1.13,
 * _single_tensor_adamax), operation for operation in float32:
 *
 *     d = maximize ? -grad : grad
 *     if weight_decay != 0:  d = d + weight_decay * param
 *     m = m * beta1;  m = m + (1 - beta1) * d
 *     u = max(u * beta2, |d| + eps)                 (torch.amax: NaN propagates)
 *     param = param + ((-lr / (1 - beta1^t)) * m) / u
 */
#include "optimizer-common.h"

enum {
    ADAMAX_NEG_CLR, /* -lr / (1 - beta1^t) */
    ADAMAX_EPS,
    ADAMAX_BETA1,
    ADAMAX_ONE_MINUS_BETA1,
    ADAMAX_BETA2,
    ADAMAX_WEIGHT_DECAY,
    ADAMAX_SIGN,       /* -1 with maximize, else 1 */
    ADAMAX_USE_DECAY,  /* 1 when weight_decay != 0 */
    ADAMAX_GRAD_SCALE, /* the gradient's factor (ABI 1.6, gradient clipping); 1 */
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

    const float grad_scale = scalars[ADAMAX_GRAD_SCALE];
    for (gsize i = begin; i < end; i++) {
        float d = sign * (grad[i] * grad_scale);
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
    gboolean decay = lmn_opt_is_set(scalars, ADAMAX_USE_DECAY);

    LMN_OPT_SPECIALISE1(decay, adamax_loop, begin, end, buffers[0], buffers[1], buffers[2],
                        buffers[3], scalars);
}

static void adamax_prepare(const LmnParams *hyper, double lr, gint64 step, double *host_state,
                           float *scalars)
{
    scalars[ADAMAX_GRAD_SCALE] = 1.0f; /* the core writes clipping's factor over it */
    double beta1 = lmn_params_get_float(hyper, "beta1");
    double weight_decay = lmn_params_get_float(hyper, "weight_decay");

    scalars[ADAMAX_NEG_CLR] = (float) -(lr / (1.0 - pow(beta1, (double) step)));
    scalars[ADAMAX_EPS] = lmn_opt_float(hyper, "eps");
    scalars[ADAMAX_BETA1] = (float) beta1;
    scalars[ADAMAX_ONE_MINUS_BETA1] = (float) (1.0 - beta1);
    scalars[ADAMAX_BETA2] = lmn_opt_float(hyper, "beta2");
    scalars[ADAMAX_WEIGHT_DECAY] = (float) weight_decay;
    scalars[ADAMAX_SIGN] = lmn_opt_sign(hyper);
    scalars[ADAMAX_USE_DECAY] = lmn_opt_flag(weight_decay != 0.0);
}

#ifdef LMN_HAVE_SPIRV
/* The GPU variant (shaders/optimizers/adamax-update.comp): the same float operations in the same order. */
#include "adamax-update-spv.h"
#endif

static const char *const adamax_slots[] = {"exp_avg", "exp_inf", NULL};

LMN_OPT_KERNEL(adamax, ADAMAX_N_SCALARS);

/* torch.optim.Adamax checks each value on its own; the schema does that. */
static const LmnOptimizerVTable adamax_vtable = {LMN_OPT_VTABLE_BASE(adamax, ADAMAX_GRAD_SCALE)};

static const LmnParamSpec adamax_specs[] = {
    LMN_OPT_SPEC_LR("0.002"),
    LMN_OPT_SPEC_BETA1,
    LMN_OPT_SPEC_BETA("beta2", "0.999",
                      "decay of the exponentially weighted infinity norm (torch betas[1])"),
    LMN_OPT_SPEC_FLOAT("eps", "1e-8", "added to |grad| for numerical stability"),
    LMN_OPT_SPEC_L2_WEIGHT_DECAY,
    LMN_OPT_SPEC_MAXIMIZE,
    LMN_PARAM_SPEC_END,
};

static const LmnFeatureDesc adamax_features[] = {
    LMN_FEATURE(LMN_FEATURE_OPTIMIZER, "adamax", "Adam with the infinity norm (torch.optim.Adamax)",
                adamax_specs, &adamax_vtable),
};

LMN_OPT_PLUGIN(adamax, "lamina.adamax", "Adamax (torch.optim.Adamax)")
