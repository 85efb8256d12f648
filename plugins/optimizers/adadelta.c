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
#include "optimizer-common.h"

enum {
    ADADELTA_NEG_LR,
    ADADELTA_RHO,
    ADADELTA_ONE_MINUS_RHO,
    ADADELTA_EPS,
    ADADELTA_WEIGHT_DECAY,
    ADADELTA_SIGN,       /* -1 with maximize, else 1 */
    ADADELTA_USE_DECAY,  /* 1 when weight_decay != 0 */
    ADADELTA_GRAD_SCALE, /* the gradient's factor (ABI 1.6, gradient clipping); 1 */
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

    const float grad_scale = scalars[ADADELTA_GRAD_SCALE];
    for (gsize i = begin; i < end; i++) {
        float d = sign * (grad[i] * grad_scale);
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
    gboolean decay = lmn_opt_is_set(scalars, ADADELTA_USE_DECAY);

    LMN_OPT_SPECIALISE1(decay, adadelta_loop, begin, end, buffers[0], buffers[1], buffers[2],
                        buffers[3], scalars);
}

static void adadelta_prepare(const LmnParams *hyper, double lr, gint64 step, double *host_state,
                             float *scalars)
{
    scalars[ADADELTA_GRAD_SCALE] = 1.0f; /* the core writes clipping's factor over it */
    double rho = lmn_params_get_float(hyper, "rho");
    double weight_decay = lmn_params_get_float(hyper, "weight_decay");

    scalars[ADADELTA_NEG_LR] = (float) -lr;
    scalars[ADADELTA_RHO] = (float) rho;
    scalars[ADADELTA_ONE_MINUS_RHO] = (float) (1.0 - rho);
    scalars[ADADELTA_EPS] = lmn_opt_float(hyper, "eps");
    scalars[ADADELTA_WEIGHT_DECAY] = (float) weight_decay;
    scalars[ADADELTA_SIGN] = lmn_opt_sign(hyper);
    scalars[ADADELTA_USE_DECAY] = lmn_opt_flag(weight_decay != 0.0);
}

#ifdef LMN_HAVE_SPIRV
/* The GPU variant (shaders/optimizers/adadelta-update.comp): the same float operations in the same order. */
#include "adadelta-update-spv.h"
#endif

static const char *const adadelta_slots[] = {"square_avg", "acc_delta", NULL};

LMN_OPT_KERNEL(adadelta, ADADELTA_N_SCALARS);

/* torch.optim.Adadelta checks each value on its own; the schema does that. */
static const LmnOptimizerVTable adadelta_vtable = {
    LMN_OPT_VTABLE_BASE(adadelta, ADADELTA_GRAD_SCALE)};

static const LmnParamSpec adadelta_specs[] = {
    LMN_OPT_SPEC_FLOAT("lr", "1.0",
                       "coefficient that scales delta before it is applied to the parameters"),
    /* rho = 1 is allowed,
    as torch allows it */
    {.name = "rho",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0.9",
     .min = 0,
     .max = 1,
     .doc = "decay of the running averages of the squared gradient and the squared update"},
    LMN_OPT_SPEC_FLOAT("eps", "1e-6", "added inside both square roots for numerical stability"),
    LMN_OPT_SPEC_L2_WEIGHT_DECAY,
    LMN_OPT_SPEC_MAXIMIZE,
    LMN_PARAM_SPEC_END,
};

static const LmnFeatureDesc adadelta_features[] = {
    LMN_FEATURE(LMN_FEATURE_OPTIMIZER, "adadelta", "Adadelta (torch.optim.Adadelta)",
                adadelta_specs, &adadelta_vtable),
};

LMN_OPT_PLUGIN(adadelta, "lamina.adadelta", "Adadelta (torch.optim.Adadelta)")
