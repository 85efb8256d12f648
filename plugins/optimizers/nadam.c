/* Lamina — NAdam with torch.optim.NAdam's parameters and update rule (PyTorch 1.13,
 * _single_tensor_nadam), operation for operation in float32:
 *
 *     d = grad;  if weight_decay != 0:  d = d + weight_decay * param
 *     mu_t = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay))      (and mu_{t+1} likewise)
 *     mu_product = mu_product * mu_t                            (host state, see below)
 *     m = m * beta1;  m = m + (1 - beta1) * d
 *     v = v * beta2;  v = v + ((1 - beta2) * d) * d
 *     denom = sqrt(v / (1 - beta2^t)) + eps
 *     param = param + ((-lr * (1 - mu_t) / (1 - mu_product)) * d) / denom
 *     param = param + ((-lr * mu_{t+1} / (1 - mu_product * mu_t * mu_{t+1})) * m) / denom
 *
 * torch keeps mu_product in a float32 tensor, so prepare() rounds it to float after each
 * multiplication exactly as that tensor is rounded; the host state "mu_product" holds it (torch's
 * state["mu_product"]).  Step 1 starts from a product of 1 whatever the stored value, so a fresh
 * optimizer needs no initial host state.  torch 1.13's NAdam has no maximize option.
 */
#include "optimizer-common.h"

enum {
    NADAM_GRAD_COEF, /* -lr * (1 - mu_t) / (1 - mu_product) */
    NADAM_AVG_COEF,  /* -lr * mu_{t+1} / (1 - mu_product_next) */
    NADAM_BC2,       /* 1 - beta2^t */
    NADAM_EPS,
    NADAM_BETA1,
    NADAM_ONE_MINUS_BETA1,
    NADAM_BETA2,
    NADAM_ONE_MINUS_BETA2,
    NADAM_WEIGHT_DECAY,
    NADAM_USE_DECAY,  /* 1 when weight_decay != 0 */
    NADAM_GRAD_SCALE, /* the gradient's factor (ABI 1.6, gradient clipping); 1 */
    NADAM_N_SCALARS
};

enum { NADAM_HOST_MU_PRODUCT, NADAM_N_HOST_STATE };

static inline __attribute__((always_inline)) void
nadam_loop(gsize begin, gsize end, float *restrict param, const float *restrict grad,
           float *restrict exp_avg, float *restrict exp_avg_sq, const float *scalars,
           const gboolean decay)
{
    const float grad_coef = scalars[NADAM_GRAD_COEF];
    const float avg_coef = scalars[NADAM_AVG_COEF];
    const float bc2 = scalars[NADAM_BC2];
    const float eps = scalars[NADAM_EPS];
    const float beta1 = scalars[NADAM_BETA1];
    const float omb1 = scalars[NADAM_ONE_MINUS_BETA1];
    const float beta2 = scalars[NADAM_BETA2];
    const float omb2 = scalars[NADAM_ONE_MINUS_BETA2];
    const float wd = scalars[NADAM_WEIGHT_DECAY];

    const float grad_scale = scalars[NADAM_GRAD_SCALE];
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
        float denom = sqrtf(v / bc2) + eps;
        float p = param[i] + (grad_coef * d) / denom;
        param[i] = p + (avg_coef * m) / denom;
    }
}

static void nadam_update_cpu(gsize begin, gsize end, void *const *buffers, const float *scalars)
{
    gboolean decay = lmn_opt_is_set(scalars, NADAM_USE_DECAY);

    LMN_OPT_SPECIALISE1(decay, nadam_loop, begin, end, buffers[0], buffers[1], buffers[2],
                        buffers[3], scalars);
}

static void nadam_prepare(const LmnParams *hyper, double lr, gint64 step, double *host_state,
                          float *scalars)
{
    scalars[NADAM_GRAD_SCALE] = 1.0f; /* the core writes clipping's factor over it */
    double beta1 = lmn_params_get_float(hyper, "beta1");
    double beta2 = lmn_params_get_float(hyper, "beta2");
    double weight_decay = lmn_params_get_float(hyper, "weight_decay");
    double momentum_decay = lmn_params_get_float(hyper, "momentum_decay");
    double t = (double) step;

    double mu = beta1 * (1.0 - 0.5 * pow(0.96, t * momentum_decay));
    double mu_next = beta1 * (1.0 - 0.5 * pow(0.96, (t + 1.0) * momentum_decay));
    /* float32 tensor arithmetic, as torch's state["mu_product"] */
    float product = step <= 1 ? 1.0f : (float) host_state[NADAM_HOST_MU_PRODUCT];
    product = product * (float) mu;
    float product_next = (product * (float) mu) * (float) mu_next;
    host_state[NADAM_HOST_MU_PRODUCT] = product;

    scalars[NADAM_GRAD_COEF] = (float) (-lr * (1.0 - mu) / (1.0 - (double) product));
    scalars[NADAM_AVG_COEF] = (float) (-lr * mu_next / (1.0 - (double) product_next));
    scalars[NADAM_BC2] = (float) (1.0 - pow(beta2, t));
    scalars[NADAM_EPS] = lmn_opt_float(hyper, "eps");
    scalars[NADAM_BETA1] = (float) beta1;
    scalars[NADAM_ONE_MINUS_BETA1] = (float) (1.0 - beta1);
    scalars[NADAM_BETA2] = (float) beta2;
    scalars[NADAM_ONE_MINUS_BETA2] = (float) (1.0 - beta2);
    scalars[NADAM_WEIGHT_DECAY] = (float) weight_decay;
    scalars[NADAM_USE_DECAY] = lmn_opt_flag(weight_decay != 0.0);
}

#ifdef LMN_HAVE_SPIRV
/* The GPU variant (shaders/optimizers/nadam-update.comp): the same float operations in the same order. */
#include "nadam-update-spv.h"
#endif

static const char *const nadam_slots[] = {"exp_avg", "exp_avg_sq", NULL};
static const char *const nadam_host_state_names[] = {"mu_product", NULL};

LMN_OPT_KERNEL(nadam, NADAM_N_SCALARS);

/* torch.optim.NAdam checks each value on its own; the schema does that. */
static const LmnOptimizerVTable nadam_vtable = {
    LMN_OPT_VTABLE_BASE(nadam, NADAM_GRAD_SCALE),
    .n_host_state = NADAM_N_HOST_STATE,
    .host_state_names = nadam_host_state_names,
};

static const LmnParamSpec nadam_specs[] = {
    LMN_OPT_SPEC_LR("0.002"),
    LMN_OPT_SPEC_BETA1,
    LMN_OPT_SPEC_BETA2,
    LMN_OPT_SPEC_EPS("1e-8"),
    LMN_OPT_SPEC_L2_WEIGHT_DECAY,
    LMN_OPT_SPEC_FLOAT("momentum_decay", "0.004",
                       "momentum decay psi of the schedule mu_t = beta1 (1 - 0.5 * 0.96^(t psi))"),
    LMN_PARAM_SPEC_END,
};

static const LmnFeatureDesc nadam_features[] = {
    LMN_FEATURE(LMN_FEATURE_OPTIMIZER, "nadam", "Adam with Nesterov momentum (torch.optim.NAdam)",
                nadam_specs, &nadam_vtable),
};

LMN_OPT_PLUGIN(nadam, "lamina.nadam", "NAdam (torch.optim.NAdam)")
