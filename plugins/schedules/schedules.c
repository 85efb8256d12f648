/* Lamina — the built-in learning-rate schedules.  Each matches its torch.optim.lr_scheduler
 * namesake.  All but reduce_on_plateau are pure functions of the clock's t (in the unit the
 * [schedule] group chose), written in closed form: torch's recursive forms (lr *= gamma, ...)
 * agree with them to the last few bits.  reduce_on_plateau keeps ReduceLROnPlateau's state in the
 * core's state array, so it is checkpointed and resumes exactly.
 */
#include <lamina/lamina.h>

#include <math.h>
#include <string.h>

/* ---- constant ---- */

static double constant_lr(const LmnParams *params, double base_lr, const LmnScheduleClock *clock,
                          const double *state)
{
    return base_lr;
}

static const LmnScheduleVTable constant_vt = {
    .struct_size = sizeof(LmnScheduleVTable),
    .n_state = 0,
    .lr = constant_lr,
};

/* ---- step (StepLR) ---- */

static double step_lr(const LmnParams *params, double base_lr, const LmnScheduleClock *clock,
                      const double *state)
{
    gint64 step_size = lmn_params_get_int(params, "step_size");
    double gamma = lmn_params_get_float(params, "gamma");
    gint64 t = MAX(clock->t, 0);
    /* StepLR's closed form; its recursive form multiplies by gamma at each boundary, which
     * agrees to the last few bits. */
    return base_lr * pow(gamma, (double) (t / step_size));
}

static const LmnScheduleVTable step_vt = {
    .struct_size = sizeof(LmnScheduleVTable),
    .n_state = 0,
    .lr = step_lr,
};

static const LmnParamSpec step_specs[] = {
    {.name = "step_size",
     .type = LMN_PARAM_INT,
     .default_value = NULL,
     .min = 1,
     .max = INFINITY,
     .flags = LMN_PARAM_FLAG_REQUIRED,
     .doc = "multiply the learning rate by gamma every step_size units"},
    {.name = "gamma",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0.1",
     .min = 0,
     .max = INFINITY,
     .doc = "multiplicative factor of each decay"},
    {NULL},
};

/* ---- multistep (MultiStepLR) ---- */

static double multistep_lr(const LmnParams *params, double base_lr, const LmnScheduleClock *clock,
                           const double *state)
{
    gsize n = 0;
    const double *milestones = lmn_params_get_float_list(params, "milestones", &n);
    double gamma = lmn_params_get_float(params, "gamma");
    double t = (double) MAX(clock->t, 0);
    int passed = 0;

    /* MultiStepLR's closed form, gamma^bisect_right(milestones, t): a milestone given twice
     * decays twice, as torch's Counter of milestones does; the order does not matter. */
    for (gsize i = 0; i < n; i++)
        passed += t >= milestones[i];
    return base_lr * pow(gamma, (double) passed);
}

static const LmnScheduleVTable multistep_vt = {
    .struct_size = sizeof(LmnScheduleVTable),
    .n_state = 0,
    .lr = multistep_lr,
};

static const LmnParamSpec multistep_specs[] = {
    {.name = "milestones",
     .type = LMN_PARAM_FLOAT_LIST,
     .default_value = NULL,
     .min = 0,
     .max = INFINITY,
     .flags = LMN_PARAM_FLAG_REQUIRED,
     .doc = "times (in the schedule's unit) at which the learning rate is multiplied by gamma; "
            "a fractional milestone takes effect at the next whole t"},
    {.name = "gamma",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0.1",
     .min = 0,
     .max = INFINITY,
     .doc = "multiplicative factor of each decay"},
    {NULL},
};

/* ---- exponential (ExponentialLR) ---- */

static double exponential_lr(const LmnParams *params, double base_lr, const LmnScheduleClock *clock,
                             const double *state)
{
    return base_lr * pow(lmn_params_get_float(params, "gamma"), (double) MAX(clock->t, 0));
}

static const LmnScheduleVTable exponential_vt = {
    .struct_size = sizeof(LmnScheduleVTable),
    .n_state = 0,
    .lr = exponential_lr,
};

static const LmnParamSpec exponential_specs[] = {
    {.name = "gamma",
     .type = LMN_PARAM_FLOAT,
     .default_value = NULL,
     .min = 0,
     .max = INFINITY,
     .flags = LMN_PARAM_FLAG_REQUIRED,
     .doc = "multiplicative factor per unit of time: lr = base_lr * gamma^t"},
    {NULL},
};

/* ---- time_decay (inverse time decay) ---- */

static double time_decay_lr(const LmnParams *params, double base_lr, const LmnScheduleClock *clock,
                            const double *state)
{
    double decay = lmn_params_get_float(params, "decay");
    /* base_lr * factor, as torch's LambdaLR applies a factor */
    return base_lr * (1.0 / (1.0 + decay * (double) MAX(clock->t, 0)));
}

static const LmnScheduleVTable time_decay_vt = {
    .struct_size = sizeof(LmnScheduleVTable),
    .n_state = 0,
    .lr = time_decay_lr,
};

static const LmnParamSpec time_decay_specs[] = {
    {.name = "decay",
     .type = LMN_PARAM_FLOAT,
     .default_value = NULL,
     .min = 0,
     .max = INFINITY,
     .flags = LMN_PARAM_FLAG_REQUIRED,
     .doc = "decay rate k of lr = base_lr / (1 + k t)"},
    {NULL},
};

/* ---- inverse ---- */

static double inverse_lr(const LmnParams *params, double base_lr, const LmnScheduleClock *clock,
                         const double *state)
{
    return base_lr * (1.0 / ((double) MAX(clock->t, 0) + 1.0));
}

static const LmnScheduleVTable inverse_vt = {
    .struct_size = sizeof(LmnScheduleVTable),
    .n_state = 0,
    .lr = inverse_lr,
};

/* ---- linear (LinearLR with start_factor = 1) ---- */

static double linear_lr(const LmnParams *params, double base_lr, const LmnScheduleClock *clock,
                        const double *state)
{
    gint64 total = lmn_params_get_int(params, "total");
    double end_factor = lmn_params_get_float(params, "end_factor");
    gint64 t = CLAMP(clock->t, 0, total);
    return base_lr * (1.0 + (end_factor - 1.0) * (double) t / (double) total);
}

static const LmnScheduleVTable linear_vt = {
    .struct_size = sizeof(LmnScheduleVTable),
    .n_state = 0,
    .lr = linear_lr,
};

static const LmnParamSpec linear_specs[] = {
    {.name = "total",
     .type = LMN_PARAM_INT,
     .default_value = NULL,
     .min = 1,
     .max = INFINITY,
     .flags = LMN_PARAM_FLAG_REQUIRED,
     .doc = "time at which the decay ends and the learning rate stays constant (torch "
            "total_iters)"},
    {.name = "end_factor",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0",
     .min = 0,
     .max = 1,
     .doc = "fraction of the base learning rate reached at t = total"},
    {NULL},
};

/* ---- cosine (CosineAnnealingLR) ---- */

static double cosine_lr(const LmnParams *params, double base_lr, const LmnScheduleClock *clock,
                        const double *state)
{
    gint64 t_max = lmn_params_get_int(params, "t_max");
    double eta_min = lmn_params_get_float(params, "eta_min");
    double t = (double) MAX(clock->t, 0);
    /* The closed form; past t_max it rises again, as torch's schedule does. */
    return eta_min + (base_lr - eta_min) * (1.0 + cos(G_PI * t / (double) t_max)) / 2.0;
}

static const LmnScheduleVTable cosine_vt = {
    .struct_size = sizeof(LmnScheduleVTable),
    .n_state = 0,
    .lr = cosine_lr,
};

static const LmnParamSpec cosine_specs[] = {
    {.name = "t_max",
     .type = LMN_PARAM_INT,
     .default_value = NULL,
     .min = 1,
     .max = INFINITY,
     .flags = LMN_PARAM_FLAG_REQUIRED,
     .doc = "half period: the learning rate reaches eta_min at t = t_max (torch T_max)"},
    {.name = "eta_min",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0",
     .min = 0,
     .max = INFINITY,
     .doc = "the minimum learning rate"},
    {NULL},
};

/* ---- cosine_restarts (CosineAnnealingWarmRestarts) ---- */

static double cosine_restarts_lr(const LmnParams *params, double base_lr,
                                 const LmnScheduleClock *clock, const double *state)
{
    gint64 t_0 = lmn_params_get_int(params, "t_0");
    gint64 t_mult = lmn_params_get_int(params, "t_mult");
    double eta_min = lmn_params_get_float(params, "eta_min");
    gint64 t_cur = MAX(clock->t, 0), t_i = t_0;

    /* Integer arithmetic, so restarts fall exactly where torch's step() counter puts them. */
    if (t_mult == 1) {
        t_cur %= t_0;
    } else {
        while (t_cur >= t_i) {
            t_cur -= t_i;
            if (t_i > G_MAXINT64 / t_mult)
                break;
            t_i *= t_mult;
        }
    }
    return eta_min + (base_lr - eta_min) * (1.0 + cos(G_PI * (double) t_cur / (double) t_i)) / 2.0;
}

static const LmnScheduleVTable cosine_restarts_vt = {
    .struct_size = sizeof(LmnScheduleVTable),
    .n_state = 0,
    .lr = cosine_restarts_lr,
};

static const LmnParamSpec cosine_restarts_specs[] = {
    {.name = "t_0",
     .type = LMN_PARAM_INT,
     .default_value = NULL,
     .min = 1,
     .max = INFINITY,
     .flags = LMN_PARAM_FLAG_REQUIRED,
     .doc = "length of the first cycle (torch T_0)"},
    {.name = "t_mult",
     .type = LMN_PARAM_INT,
     .default_value = "1",
     .min = 1,
     .max = INFINITY,
     .doc = "each cycle is t_mult times longer than the previous one (torch T_mult)"},
    {.name = "eta_min",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0",
     .min = 0,
     .max = INFINITY,
     .doc = "the minimum learning rate"},
    {NULL},
};

/* ---- reduce_on_plateau (ReduceLROnPlateau) ---- */

enum {
    PLATEAU_LR,       /* the current learning rate */
    PLATEAU_BEST,     /* the best metric so far (+-inf before the first) */
    PLATEAU_BAD,      /* epochs without improvement */
    PLATEAU_COOLDOWN, /* epochs of cool-down left */
    PLATEAU_N_STATE
};

static gboolean plateau_mode_max(const LmnParams *params)
{
    return strcmp(lmn_params_get_string(params, "mode"), "max") == 0;
}

static void plateau_init_state(const LmnParams *params, double base_lr, double *state)
{
    state[PLATEAU_LR] = base_lr;
    state[PLATEAU_BEST] = plateau_mode_max(params) ? -INFINITY : INFINITY;
    state[PLATEAU_BAD] = 0;
    state[PLATEAU_COOLDOWN] = 0;
}

static double plateau_lr(const LmnParams *params, double base_lr, const LmnScheduleClock *clock,
                         const double *state)
{
    return state[PLATEAU_LR];
}

/* ReduceLROnPlateau.is_better, comparison for comparison (a NaN metric is never better). */
static gboolean plateau_is_better(const LmnParams *params, double a, double best)
{
    double threshold = lmn_params_get_float(params, "threshold");
    gboolean rel = strcmp(lmn_params_get_string(params, "threshold_mode"), "rel") == 0;

    if (!plateau_mode_max(params))
        return rel ? a < best * (1.0 - threshold) : a < best - threshold;
    return rel ? a > best * (threshold + 1.0) : a > best + threshold;
}

/* ReduceLROnPlateau.step(metrics). */
static void plateau_observe(const LmnParams *params, double metric, double *state)
{
    if (plateau_is_better(params, metric, state[PLATEAU_BEST])) {
        state[PLATEAU_BEST] = metric;
        state[PLATEAU_BAD] = 0;
    } else {
        state[PLATEAU_BAD] += 1;
    }
    if (state[PLATEAU_COOLDOWN] > 0) {
        state[PLATEAU_COOLDOWN] -= 1;
        state[PLATEAU_BAD] = 0; /* bad epochs during cool-down do not count */
    }
    if (state[PLATEAU_BAD] > (double) lmn_params_get_int(params, "patience")) {
        double old_lr = state[PLATEAU_LR];
        double new_lr = MAX(old_lr * lmn_params_get_float(params, "factor"),
                            lmn_params_get_float(params, "min_lr"));
        if (old_lr - new_lr > lmn_params_get_float(params, "eps"))
            state[PLATEAU_LR] = new_lr;
        state[PLATEAU_COOLDOWN] = (double) lmn_params_get_int(params, "cooldown");
        state[PLATEAU_BAD] = 0;
    }
}

static const LmnScheduleVTable plateau_vt = {
    .struct_size = sizeof(LmnScheduleVTable),
    .n_state = PLATEAU_N_STATE,
    .init_state = plateau_init_state,
    .lr = plateau_lr,
    .observe = plateau_observe,
};

static const char *const plateau_modes[] = {"min", "max", NULL};
static const char *const plateau_threshold_modes[] = {"rel", "abs", NULL};

static const LmnParamSpec plateau_specs[] = {
    {.name = "mode",
     .type = LMN_PARAM_ENUM,
     .default_value = "min",
     .enum_values = plateau_modes,
     .doc = "min: the monitored metric should decrease (a loss); max: increase (an accuracy)"},
    {.name = "factor",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0.1",
     .min = 0,
     .max = 1,
     .flags = LMN_PARAM_FLAG_MAX_EXCLUSIVE,
     .doc = "the learning rate is multiplied by factor on a plateau"},
    {.name = "patience",
     .type = LMN_PARAM_INT,
     .default_value = "10",
     .min = 0,
     .max = INFINITY,
     .doc = "epochs without improvement tolerated before the learning rate is reduced"},
    {.name = "threshold",
     .type = LMN_PARAM_FLOAT,
     .default_value = "1e-4",
     .min = 0,
     .max = INFINITY,
     .doc = "how much better than the best a metric must be to count as an improvement"},
    {.name = "threshold_mode",
     .type = LMN_PARAM_ENUM,
     .default_value = "rel",
     .enum_values = plateau_threshold_modes,
     .doc = "rel: better than best * (1 -+ threshold); abs: better than best -+ threshold"},
    {.name = "cooldown",
     .type = LMN_PARAM_INT,
     .default_value = "0",
     .min = 0,
     .max = INFINITY,
     .doc = "epochs after a reduction during which bad epochs are not counted"},
    {.name = "min_lr",
     .type = LMN_PARAM_FLOAT,
     .default_value = "0",
     .min = 0,
     .max = INFINITY,
     .doc = "lower bound of the learning rate"},
    {.name = "eps",
     .type = LMN_PARAM_FLOAT,
     .default_value = "1e-8",
     .min = 0,
     .max = INFINITY,
     .doc = "a reduction smaller than eps is skipped"},
    {NULL},
};

static const LmnFeatureDesc schedule_features[] = {
    LMN_FEATURE(LMN_FEATURE_SCHEDULE, "constant",
                "the base learning rate throughout (warm-up still applies)", NULL, &constant_vt),
    LMN_FEATURE(LMN_FEATURE_SCHEDULE, "step",
                "lr = base_lr * gamma^floor(t / step_size) (torch StepLR)", step_specs, &step_vt),
    LMN_FEATURE(LMN_FEATURE_SCHEDULE, "multistep",
                "lr = base_lr * gamma^(milestones passed) (torch MultiStepLR)", multistep_specs,
                &multistep_vt),
    LMN_FEATURE(LMN_FEATURE_SCHEDULE, "exponential", "lr = base_lr * gamma^t (torch ExponentialLR)",
                exponential_specs, &exponential_vt),
    LMN_FEATURE(LMN_FEATURE_SCHEDULE, "time_decay",
                "inverse time decay: lr = base_lr / (1 + decay * t)", time_decay_specs,
                &time_decay_vt),
    LMN_FEATURE(LMN_FEATURE_SCHEDULE, "inverse", "lr = base_lr / (t + 1)", NULL, &inverse_vt),
    LMN_FEATURE(LMN_FEATURE_SCHEDULE, "linear",
                "linear decay to end_factor * base_lr at t = total, constant after "
                "(torch LinearLR with start_factor 1)",
                linear_specs, &linear_vt),
    LMN_FEATURE(LMN_FEATURE_SCHEDULE, "cosine",
                "cosine annealing from base_lr to eta_min over t_max (torch "
                "CosineAnnealingLR)",
                cosine_specs, &cosine_vt),
    LMN_FEATURE(LMN_FEATURE_SCHEDULE, "cosine_restarts",
                "cosine annealing with warm restarts (torch CosineAnnealingWarmRestarts)",
                cosine_restarts_specs, &cosine_restarts_vt),
    LMN_FEATURE(LMN_FEATURE_SCHEDULE, "reduce_on_plateau",
                "multiply lr by factor when the validation metric stops improving "
                "(torch ReduceLROnPlateau)",
                plateau_specs, &plateau_vt),
};

static const LmnPluginDesc schedule_plugin = {
    .struct_size = sizeof(LmnPluginDesc),
    .abi_major = LMN_ABI_MAJOR,
    .abi_minor = LMN_ABI_MINOR,
    .name = "lamina.schedules",
    .version = LMN_VERSION_STRING,
    .license = "MIT",
    .description = "learning-rate schedules (torch.optim.lr_scheduler)",
    .n_features = G_N_ELEMENTS(schedule_features),
    .features = schedule_features,
};

LMN_PLUGIN_DEFINE(schedule_plugin)
