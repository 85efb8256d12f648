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
 *         if nesterov:  param = param + (-lr) * (d / avg + momentum * buf)
 *         else:         param = param + (-lr) * buf
 *     else:
 *         param = param + ((-lr) * d) / avg
 *
 * nesterov (Lamina's own; torch has none) is RMSprop with Nesterov momentum, Goodfellow, Bengio
 * and Courville's Algorithm 8.6, in the change of variables torch.optim.SGD uses for its Nesterov
 * option: the parameters held are the look-ahead point theta + momentum * v at which 8.6 takes
 * the gradient, and v = -lr * buf.  With a constant lr the two are the same sequence of points
 * (scripts/make-optim-fixtures.py runs 8.6 itself as the oracle); the algebra is
 * theta' + m v' = (theta + m v) - lr ((1 + m) buf' - m buf) = ... - lr (d / avg + m buf').
 *
 * Slots: torch creates momentum_buffer only with momentum > 0 and grad_avg only when centered; a
 * Lamina optimizer declares its slots once, so they always exist and stay 0 when unused.
 */
#include "optimizer-common.h"

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
    RMSPROP_NESTEROV,     /* 1 or 0 */
    RMSPROP_GRAD_SCALE,   /* the gradient's factor (ABI 1.6, gradient clipping); 1 */
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
    /* Loop-invariant, so the branch below costs nothing per element. */
    const gboolean nesterov = scalars[RMSPROP_NESTEROV] != 0.0f;

    const float grad_scale = scalars[RMSPROP_GRAD_SCALE];
    for (gsize i = begin; i < end; i++) {
        float d = sign * (grad[i] * grad_scale);
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
            if (nesterov) {
                param[i] = param[i] + neg_lr * (d / avg + momentum * b);
            } else {
                param[i] = param[i] + neg_lr * b;
            }
        } else {
            param[i] = param[i] + (neg_lr * d) / avg;
        }
    }
}

static void rmsprop_update_cpu(gsize begin, gsize end, void *const *buffers, const float *scalars)
{
    gboolean centered = lmn_opt_is_set(scalars, RMSPROP_CENTERED);
    gboolean use_momentum = lmn_opt_is_set(scalars, RMSPROP_USE_MOMENTUM);
    gboolean decay = lmn_opt_is_set(scalars, RMSPROP_USE_DECAY);

    LMN_OPT_SPECIALISE3(centered, use_momentum, decay, rmsprop_loop, begin, end, buffers[0],
                        buffers[1], buffers[2], buffers[3], buffers[4], scalars);
}

static void rmsprop_prepare(const LmnParams *hyper, double lr, gint64 step, double *host_state,
                            float *scalars)
{
    scalars[RMSPROP_GRAD_SCALE] = 1.0f; /* the core writes clipping's factor over it */
    double alpha = lmn_params_get_float(hyper, "alpha");
    double momentum = lmn_params_get_float(hyper, "momentum");
    double weight_decay = lmn_params_get_float(hyper, "weight_decay");

    scalars[RMSPROP_NEG_LR] = (float) -lr;
    scalars[RMSPROP_ALPHA] = (float) alpha;
    scalars[RMSPROP_ONE_MINUS_ALPHA] = (float) (1.0 - alpha);
    scalars[RMSPROP_EPS] = lmn_opt_float(hyper, "eps");
    scalars[RMSPROP_WEIGHT_DECAY] = (float) weight_decay;
    scalars[RMSPROP_MOMENTUM] = (float) momentum;
    scalars[RMSPROP_SIGN] = lmn_opt_sign(hyper);
    scalars[RMSPROP_CENTERED] = lmn_opt_flag(lmn_params_get_bool(hyper, "centered"));
    scalars[RMSPROP_USE_MOMENTUM] = lmn_opt_flag(momentum > 0.0);
    scalars[RMSPROP_USE_DECAY] = lmn_opt_flag(weight_decay != 0.0);
    scalars[RMSPROP_NESTEROV] = lmn_opt_flag(lmn_params_get_bool(hyper, "nesterov"));
}

#ifdef LMN_HAVE_SPIRV
/* The GPU variant (shaders/optimizers/rmsprop-update.comp): the same float operations in the same order. */
#include "rmsprop-update-spv.h"
#endif

static const char *const rmsprop_slots[] = {"square_avg", "momentum_buffer", "grad_avg", NULL};

LMN_OPT_KERNEL(rmsprop, RMSPROP_N_SCALARS);

/* torch.optim.RMSprop checks each value on its own; the schema does that.  Nesterov momentum
 * needs a momentum, as torch.optim.SGD's does. */
static gboolean rmsprop_validate(const LmnParams *hyper, GError **error)
{
    if (lmn_params_get_bool(hyper, "nesterov") && lmn_params_get_float(hyper, "momentum") <= 0) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "nesterov = true requires momentum > 0 (momentum is %g): set momentum, "
                    "e.g. momentum = 0.9",
                    lmn_params_get_float(hyper, "momentum"));
        return FALSE;
    }
    return TRUE;
}

static const LmnOptimizerVTable rmsprop_vtable = {
    LMN_OPT_VTABLE_BASE(rmsprop, RMSPROP_GRAD_SCALE),
    .validate = rmsprop_validate,
};

static const LmnParamSpec rmsprop_specs[] = {
    LMN_OPT_SPEC_LR("0.01"),
    LMN_OPT_SPEC_FLOAT("alpha", "0.99",
                       "smoothing constant of the running average of the squared gradient"),
    LMN_OPT_SPEC_EPS("1e-8"),
    LMN_OPT_SPEC_L2_WEIGHT_DECAY,
    LMN_OPT_SPEC_MOMENTUM,
    LMN_OPT_SPEC_BOOL("centered", "false",
                      "normalise by the estimated variance of the gradient instead of its second "
                      "moment"),
    LMN_OPT_SPEC_BOOL(
        "nesterov", "false",
        "Nesterov momentum (Goodfellow et al., Algorithm 8.6); requires momentum > 0"),
    LMN_OPT_SPEC_MAXIMIZE,
    LMN_PARAM_SPEC_END,
};

static const LmnFeatureDesc rmsprop_features[] = {
    LMN_FEATURE(
        LMN_FEATURE_OPTIMIZER, "rmsprop",
        "RMSprop with momentum, the centered variant (torch.optim.RMSprop) and Nesterov momentum",
        rmsprop_specs, &rmsprop_vtable),
};

LMN_OPT_PLUGIN(rmsprop, "lamina.rmsprop", "RMSprop (torch.optim.RMSprop)")
