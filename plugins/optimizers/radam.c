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
#include "optimizer-common.h"

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
    RADAM_RECTIFY,    /* 1 when rho_t > 5 */
    RADAM_USE_DECAY,  /* 1 when weight_decay != 0 */
    RADAM_GRAD_SCALE, /* the gradient's factor (ABI 1.6, gradient clipping); 1 */
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

    const float grad_scale = scalars[RADAM_GRAD_SCALE];
    for (gsize i = begin; i < end; i++) {
        float d = (grad[i] * grad_scale);
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
    gboolean rectify = lmn_opt_is_set(scalars, RADAM_RECTIFY);
    gboolean decay = lmn_opt_is_set(scalars, RADAM_USE_DECAY);
    float *p = buffers[0];
    const float *g = buffers[1];
    float *m = buffers[2], *v = buffers[3];

    LMN_OPT_SPECIALISE2(rectify, decay, radam_loop, begin, end, p, g, m, v, scalars);
}

static void radam_prepare(const LmnParams *hyper, double lr, gint64 step, double *host_state,
                          float *scalars)
{
    scalars[RADAM_GRAD_SCALE] = 1.0f; /* the core writes clipping's factor over it */
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
    scalars[RADAM_EPS] = lmn_opt_float(hyper, "eps");
    scalars[RADAM_BETA1] = (float) beta1;
    scalars[RADAM_ONE_MINUS_BETA1] = (float) (1.0 - beta1);
    scalars[RADAM_BETA2] = (float) beta2;
    scalars[RADAM_ONE_MINUS_BETA2] = (float) (1.0 - beta2);
    scalars[RADAM_WEIGHT_DECAY] = (float) weight_decay;
    scalars[RADAM_RECTIFY] = lmn_opt_flag(rectify);
    scalars[RADAM_USE_DECAY] = lmn_opt_flag(weight_decay != 0.0);
}

#ifdef LMN_HAVE_SPIRV
/* The GPU variant (shaders/optimizers/radam-update.comp): the same float operations in the same order. */
#include "radam-update-spv.h"
#endif

static const char *const radam_slots[] = {"exp_avg", "exp_avg_sq", NULL};

LMN_OPT_KERNEL(radam, RADAM_N_SCALARS);

/* torch.optim.RAdam checks each value on its own; the schema does that. */
static const LmnOptimizerVTable radam_vtable = {LMN_OPT_VTABLE_BASE(radam, RADAM_GRAD_SCALE)};

static const LmnParamSpec radam_specs[] = {
    LMN_OPT_SPEC_LR("0.001"), LMN_OPT_SPEC_BETA1,           LMN_OPT_SPEC_BETA2,
    LMN_OPT_SPEC_EPS("1e-8"), LMN_OPT_SPEC_L2_WEIGHT_DECAY, LMN_PARAM_SPEC_END,
};

static const LmnFeatureDesc radam_features[] = {
    LMN_FEATURE(LMN_FEATURE_OPTIMIZER, "radam", "rectified Adam (torch.optim.RAdam)", radam_specs,
                &radam_vtable),
};

LMN_OPT_PLUGIN(radam, "lamina.radam", "RAdam (torch.optim.RAdam)")
