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
#include "optimizer-common.h"

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
    ADAMW_GRAD_SCALE,   /* the gradient's factor (ABI 1.6, gradient clipping); 1 */
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

    const float grad_scale = scalars[ADAMW_GRAD_SCALE];
    for (gsize i = begin; i < end; i++) {
        /* torch multiplies by 1 - lr * weight_decay even when it is 1: exact, so always do */
        float p = param[i] * decay_factor;
        float d = sign * (grad[i] * grad_scale);
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
    gboolean amsgrad = lmn_opt_is_set(scalars, ADAMW_AMSGRAD);

    LMN_OPT_SPECIALISE1(amsgrad, adamw_loop, begin, end, p, g, m, v, vmax, scalars);
}

static void adamw_prepare(const LmnParams *hyper, double lr, gint64 step, double *host_state,
                          float *scalars)
{
    scalars[ADAMW_GRAD_SCALE] = 1.0f; /* the core writes clipping's factor over it */
    double beta1 = lmn_params_get_float(hyper, "beta1");
    double beta2 = lmn_params_get_float(hyper, "beta2");
    double weight_decay = lmn_params_get_float(hyper, "weight_decay");
    double bc1 = 1.0 - pow(beta1, (double) step);
    double bc2 = 1.0 - pow(beta2, (double) step);

    scalars[ADAMW_NEG_STEP_SIZE] = (float) -(lr / bc1);
    scalars[ADAMW_BC2_SQRT] = (float) sqrt(bc2);
    scalars[ADAMW_EPS] = lmn_opt_float(hyper, "eps");
    scalars[ADAMW_BETA1] = (float) beta1;
    scalars[ADAMW_ONE_MINUS_BETA1] = (float) (1.0 - beta1);
    scalars[ADAMW_BETA2] = (float) beta2;
    scalars[ADAMW_ONE_MINUS_BETA2] = (float) (1.0 - beta2);
    scalars[ADAMW_DECAY_FACTOR] = (float) (1.0 - lr * weight_decay);
    scalars[ADAMW_SIGN] = lmn_opt_sign(hyper);
    scalars[ADAMW_AMSGRAD] = lmn_opt_flag(lmn_params_get_bool(hyper, "amsgrad"));
}

#ifdef LMN_HAVE_SPIRV
/* The GPU variant (shaders/optimizers/adamw-update.comp): the same float operations in the same order. */
#include "adamw-update-spv.h"
#endif

static const char *const adamw_slots[] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq", NULL};

LMN_OPT_KERNEL(adamw, ADAMW_N_SCALARS);

/* torch.optim.AdamW checks each value on its own; the schema does that. */
static const LmnOptimizerVTable adamw_vtable = {LMN_OPT_VTABLE_BASE(adamw, ADAMW_GRAD_SCALE)};

static const LmnParamSpec adamw_specs[] = {
    LMN_OPT_SPEC_LR("0.001"),
    LMN_OPT_SPEC_BETA1,
    LMN_OPT_SPEC_BETA2,
    LMN_OPT_SPEC_EPS("1e-8"),
    LMN_OPT_SPEC_FLOAT(
        "weight_decay", "0.01",
        "decoupled weight decay: param * (1 - lr * weight_decay) before the Adam step"),
    LMN_OPT_SPEC_AMSGRAD,
    LMN_OPT_SPEC_MAXIMIZE,
    LMN_PARAM_SPEC_END,
};

static const LmnFeatureDesc adamw_features[] = {
    LMN_FEATURE(LMN_FEATURE_OPTIMIZER, "adamw",
                "Adam with decoupled weight decay and AMSGrad (torch.optim.AdamW)", adamw_specs,
                &adamw_vtable),
};

LMN_OPT_PLUGIN(adamw, "lamina.adamw", "AdamW (torch.optim.AdamW)")
