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
#include "optimizer-common.h"

enum {
    ADAM_NEG_STEP_SIZE, /* -lr / (1 - beta1^t) */
    ADAM_BC2_SQRT,      /* sqrt(1 - beta2^t) */
    ADAM_EPS,
    ADAM_BETA1,
    ADAM_ONE_MINUS_BETA1,
    ADAM_BETA2,
    ADAM_ONE_MINUS_BETA2,
    ADAM_WEIGHT_DECAY,
    ADAM_SIGN,       /* -1 with maximize, else 1 */
    ADAM_AMSGRAD,    /* 1 or 0 */
    ADAM_USE_DECAY,  /* 1 when weight_decay != 0 */
    ADAM_GRAD_SCALE, /* the gradient's factor (ABI 1.6, gradient clipping); 1 */
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

    const float grad_scale = scalars[ADAM_GRAD_SCALE];
    for (gsize i = begin; i < end; i++) {
        float d = sign * (grad[i] * grad_scale);
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

    gboolean amsgrad = lmn_opt_is_set(scalars, ADAM_AMSGRAD);
    gboolean decay = lmn_opt_is_set(scalars, ADAM_USE_DECAY);

    LMN_OPT_SPECIALISE2(amsgrad, decay, adam_loop, begin, end, p, g, m, v, vmax, scalars);
}

static void adam_prepare(const LmnParams *hyper, double lr, gint64 step, double *host_state,
                         float *scalars)
{
    scalars[ADAM_GRAD_SCALE] = 1.0f; /* the core writes clipping's factor over it */
    double beta1 = lmn_params_get_float(hyper, "beta1");
    double beta2 = lmn_params_get_float(hyper, "beta2");
    double weight_decay = lmn_params_get_float(hyper, "weight_decay");
    double bc1 = 1.0 - pow(beta1, (double) step);
    double bc2 = 1.0 - pow(beta2, (double) step);

    scalars[ADAM_NEG_STEP_SIZE] = (float) -(lr / bc1);
    scalars[ADAM_BC2_SQRT] = (float) sqrt(bc2);
    scalars[ADAM_EPS] = lmn_opt_float(hyper, "eps");
    scalars[ADAM_BETA1] = (float) beta1;
    scalars[ADAM_ONE_MINUS_BETA1] = (float) (1.0 - beta1);
    scalars[ADAM_BETA2] = (float) beta2;
    scalars[ADAM_ONE_MINUS_BETA2] = (float) (1.0 - beta2);
    scalars[ADAM_WEIGHT_DECAY] = (float) weight_decay;
    scalars[ADAM_SIGN] = lmn_opt_sign(hyper);
    scalars[ADAM_AMSGRAD] = lmn_opt_flag(lmn_params_get_bool(hyper, "amsgrad"));
    scalars[ADAM_USE_DECAY] = lmn_opt_flag(weight_decay != 0.0);
}

#ifdef LMN_HAVE_SPIRV
/* The GPU variant (shaders/optimizers/adam-update.comp): the same float operations in the same order. */
#include "adam-update-spv.h"
#endif

static const char *const adam_slots[] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq", NULL};

LMN_OPT_KERNEL(adam, ADAM_N_SCALARS);

/* torch.optim.Adam checks each value on its own; the schema does that. */
static const LmnOptimizerVTable adam_vtable = {LMN_OPT_VTABLE_BASE(adam, ADAM_GRAD_SCALE)};

static const LmnParamSpec adam_specs[] = {
    LMN_OPT_SPEC_LR("0.001"),
    LMN_OPT_SPEC_BETA1,
    LMN_OPT_SPEC_BETA2,
    LMN_OPT_SPEC_EPS("1e-8"),
    LMN_OPT_SPEC_FLOAT("weight_decay", "0",
                       "L2 penalty added to the gradient: grad + weight_decay * param (see adamw)"),
    LMN_OPT_SPEC_AMSGRAD,
    LMN_OPT_SPEC_MAXIMIZE,
    LMN_PARAM_SPEC_END,
};

static const LmnFeatureDesc adam_features[] = {
    LMN_FEATURE(LMN_FEATURE_OPTIMIZER, "adam",
                "Adam with L2 weight decay and AMSGrad (torch.optim.Adam)", adam_specs,
                &adam_vtable),
};

LMN_OPT_PLUGIN(adam, "lamina.adam", "Adam (torch.optim.Adam)")
