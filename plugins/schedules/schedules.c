/* Lamina — the built-in learning-rate schedules.  Each matches its torch.optim.lr_scheduler
 * namesake.  All but reduce_on_plateau are pure functions of the clock's t (in the unit the
 * [schedule] group chose), written in closed form: torch's recursive forms (lr *= gamma, ...)
 * agree with them to the last few bits.  reduce_on_plateau keeps ReduceLROnPlateau's state in the
 * core's state array, so it is checkpointed and resumes exactly.
 */
#include <lamina/lamina.h>

#include <math.h>
#include <string.h>

/**
 * LMN_PURE_SCHEDULE:
 * @prefix: the schedule's identifier prefix (step)
 * Defines `static const LmnScheduleVTable prefix_vt` for a schedule that is a pure function of
 * time: no state, no observe(), lr = prefix_lr.
 */
#define LMN_PURE_SCHEDULE(prefix)                                                                  \
    static const LmnScheduleVTable prefix##_vt = {                                                 \
        .struct_size = sizeof(LmnScheduleVTable),                                                  \
        .lr = prefix##_lr,                                                                         \
    }

/* Keys that mean the same, down to the text, in every schedule that has them. */
#define SPEC_GAMMA_DECAY                                                                           \
    LMN_PARAM_SPEC_FLOAT("gamma", "0.1", 0, INFINITY, 0, "multiplicative factor of each decay")
#define SPEC_ETA_MIN                                                                               \
    LMN_PARAM_SPEC_FLOAT("eta_min", "0", 0, INFINITY, 0, "the minimum learning rate")

/* Key @key, or the run's length in the schedule's unit when it is 0 (0 when neither is known:
 * a core that does not tell the length, or a schedule used outside a run). */
static gint64 run_length_or(const LmnParams *params, const char *key, const LmnScheduleClock *clock)
{
    gint64 v = lmn_params_get_int(params, key);
    if (v > 0)
        return v;
    return LMN_SCHEDULE_CLOCK_HAS(clock, length) ? clock->length : 0;
}

/* ---- constant ---- */

static double constant_lr(const LmnParams *params, double base_lr, const LmnScheduleClock *clock,
                          const double *state)
{
    return base_lr;
}

LMN_PURE_SCHEDULE(constant);

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

LMN_PURE_SCHEDULE(step);

static const LmnParamSpec step_specs[] = {
    LMN_PARAM_SPEC_INT("step_size", NULL, 1, INFINITY, LMN_PARAM_FLAG_REQUIRED,
                       "multiply the learning rate by gamma every step_size units"),
    SPEC_GAMMA_DECAY,
    LMN_PARAM_SPEC_END,
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

LMN_PURE_SCHEDULE(multistep);

static const LmnParamSpec multistep_specs[] = {
    LMN_PARAM_SPEC_FLOAT_LIST(
        "milestones", NULL, 0, INFINITY, LMN_PARAM_FLAG_REQUIRED,
        "times (in the schedule's unit) at which the learning rate is multiplied by gamma; "
        "a fractional milestone takes effect at the next whole t"),
    SPEC_GAMMA_DECAY,
    LMN_PARAM_SPEC_END,
};

/* ---- exponential (ExponentialLR) ---- */

static double exponential_lr(const LmnParams *params, double base_lr, const LmnScheduleClock *clock,
                             const double *state)
{
    return base_lr * pow(lmn_params_get_float(params, "gamma"), (double) MAX(clock->t, 0));
}

LMN_PURE_SCHEDULE(exponential);

static const LmnParamSpec exponential_specs[] = {
    LMN_PARAM_SPEC_FLOAT("gamma", NULL, 0, INFINITY, LMN_PARAM_FLAG_REQUIRED,
                         "multiplicative factor per unit of time: lr = base_lr * gamma^t"),
    LMN_PARAM_SPEC_END,
};

/* ---- time_decay (inverse time decay) ---- */

static double time_decay_lr(const LmnParams *params, double base_lr, const LmnScheduleClock *clock,
                            const double *state)
{
    double decay = lmn_params_get_float(params, "decay");
    /* base_lr * factor, as torch's LambdaLR applies a factor */
    return base_lr * (1.0 / (1.0 + decay * (double) MAX(clock->t, 0)));
}

LMN_PURE_SCHEDULE(time_decay);

static const LmnParamSpec time_decay_specs[] = {
    LMN_PARAM_SPEC_FLOAT("decay", NULL, 0, INFINITY, LMN_PARAM_FLAG_REQUIRED,
                         "decay rate k of lr = base_lr / (1 + k t)"),
    LMN_PARAM_SPEC_END,
};

/* ---- inverse ---- */

static double inverse_lr(const LmnParams *params, double base_lr, const LmnScheduleClock *clock,
                         const double *state)
{
    return base_lr * (1.0 / ((double) MAX(clock->t, 0) + 1.0));
}

LMN_PURE_SCHEDULE(inverse);

/* ---- linear (LinearLR with start_factor = 1) ---- */

static double linear_lr(const LmnParams *params, double base_lr, const LmnScheduleClock *clock,
                        const double *state)
{
    gint64 total = run_length_or(params, "total", clock);
    double end_factor = lmn_params_get_float(params, "end_factor");
    if (total <= 0)
        return base_lr; /* no length given and no run to take it from */
    gint64 t = CLAMP(clock->t, 0, total);
    return base_lr * (1.0 + (end_factor - 1.0) * (double) t / (double) total);
}

LMN_PURE_SCHEDULE(linear);

static const LmnParamSpec linear_specs[] = {
    LMN_PARAM_SPEC_INT("total", "0", 0, INFINITY, 0,
                       "time at which the decay ends and the learning rate stays constant (torch "
                       "total_iters); 0 = the whole run, in the schedule's unit"),
    LMN_PARAM_SPEC_FLOAT("end_factor", "0", 0, 1, 0,
                         "fraction of the base learning rate reached at t = total"),
    LMN_PARAM_SPEC_END,
};

/* ---- cosine (CosineAnnealingLR) ---- */

static double cosine_lr(const LmnParams *params, double base_lr, const LmnScheduleClock *clock,
                        const double *state)
{
    gint64 t_max = run_length_or(params, "t_max", clock);
    double eta_min = lmn_params_get_float(params, "eta_min");
    if (t_max <= 0)
        return base_lr; /* no length given and no run to take it from */
    double t = (double) MAX(clock->t, 0);
    /* The closed form; past t_max it rises again, as torch's schedule does. */
    return eta_min + (base_lr - eta_min) * (1.0 + cos(G_PI * t / (double) t_max)) / 2.0;
}

LMN_PURE_SCHEDULE(cosine);

static const LmnParamSpec cosine_specs[] = {
    LMN_PARAM_SPEC_INT("t_max", "0", 0, INFINITY, 0,
                       "half period: the learning rate reaches eta_min at t = t_max (torch T_max); "
                       "0 = the whole run, in the schedule's unit"),
    SPEC_ETA_MIN,
    LMN_PARAM_SPEC_END,
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

LMN_PURE_SCHEDULE(cosine_restarts);

static const LmnParamSpec cosine_restarts_specs[] = {
    LMN_PARAM_SPEC_INT("t_0", NULL, 1, INFINITY, LMN_PARAM_FLAG_REQUIRED,
                       "length of the first cycle (torch T_0)"),
    LMN_PARAM_SPEC_INT("t_mult", "1", 1, INFINITY, 0,
                       "each cycle is t_mult times longer than the previous one (torch T_mult)"),
    SPEC_ETA_MIN,
    LMN_PARAM_SPEC_END,
};

/* ---- one_cycle (OneCycleLR, without momentum cycling) ---- */

static double anneal(gboolean cosine, double start, double end, double pct)
{
    return cosine ? end + (start - end) / 2.0 * (cos(G_PI * pct) + 1.0)
                  : (end - start) * pct + start;
}

/* torch's two phases: from base_lr / div_factor up to base_lr over the first pct_start of the
 * run (ending at step pct_start * total - 1), then down to that / final_div_factor at the last
 * step (total - 1); the optimizer's lr is the peak (torch max_lr). */
static double one_cycle_lr(const LmnParams *params, double base_lr, const LmnScheduleClock *clock,
                           const double *state)
{
    gint64 total = run_length_or(params, "total", clock);
    if (total <= 0)
        return base_lr;
    double pct_start = lmn_params_get_float(params, "pct_start");
    double initial = base_lr / lmn_params_get_float(params, "div_factor");
    double min_lr = initial / lmn_params_get_float(params, "final_div_factor");
    gboolean cosine = g_str_equal(lmn_params_get_string(params, "anneal"), "cos");
    double up_end = pct_start * (double) total - 1.0, last = (double) total - 1.0;
    double t = (double) CLAMP(clock->t, 0, total - 1);
    if (t <= up_end)
        return anneal(cosine, initial, base_lr, up_end > 0 ? t / up_end : 1.0);
    return anneal(cosine, base_lr, min_lr, last > up_end ? (t - up_end) / (last - up_end) : 1.0);
}

/* The rising phase must hold at least one step, as torch requires of total * pct_start. */
static gboolean one_cycle_validate(const LmnParams *params, const LmnScheduleCommon *common,
                                   GError **error)
{
    gint64 total = lmn_params_get_int(params, "total");
    double pct_start = lmn_params_get_float(params, "pct_start");
    if (total > 0 && pct_start * (double) total < 1.0) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "pct_start = %g of total = %" G_GINT64_FORMAT " leaves no step for the "
                    "rising phase; raise pct_start or total",
                    pct_start, total);
        return FALSE;
    }
    return TRUE;
}

static const LmnScheduleVTable one_cycle_vt = {
    .struct_size = sizeof(LmnScheduleVTable),
    .lr = one_cycle_lr,
    .validate = one_cycle_validate,
};

static const char *const anneal_values[] = {"cos", "linear", NULL};

static const LmnParamSpec one_cycle_specs[] = {
    LMN_PARAM_SPEC_INT("total", "0", 0, INFINITY, 0,
                       "length of the cycle (torch total_steps); 0 = the whole run, in the "
                       "schedule's unit (use unit = step, as torch does)"),
    LMN_PARAM_SPEC_FLOAT("pct_start", "0.3", 0, 1,
                         LMN_PARAM_FLAG_MIN_EXCLUSIVE | LMN_PARAM_FLAG_MAX_EXCLUSIVE,
                         "fraction of the cycle spent raising the learning rate"),
    LMN_PARAM_SPEC_FLOAT("div_factor", "25", 0, INFINITY, LMN_PARAM_FLAG_MIN_EXCLUSIVE,
                         "the cycle starts at lr / div_factor ([optimizer] lr is the peak)"),
    LMN_PARAM_SPEC_FLOAT("final_div_factor", "10000", 0, INFINITY, LMN_PARAM_FLAG_MIN_EXCLUSIVE,
                         "it ends at lr / div_factor / final_div_factor"),
    LMN_PARAM_SPEC_ENUM("anneal", "cos", anneal_values,
                        "the shape of both phases: cosine or linear (torch anneal_strategy)"),
    LMN_PARAM_SPEC_END,
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
    LMN_PARAM_SPEC_ENUM(
        "mode", "min", plateau_modes,
        "min: the monitored metric should decrease (a loss); max: increase (an accuracy)"),
    LMN_PARAM_SPEC_FLOAT("factor", "0.1", 0, 1, LMN_PARAM_FLAG_MAX_EXCLUSIVE,
                         "the learning rate is multiplied by factor on a plateau"),
    LMN_PARAM_SPEC_INT("patience", "10", 0, INFINITY, 0,
                       "epochs without improvement tolerated before the learning rate is reduced"),
    LMN_PARAM_SPEC_FLOAT(
        "threshold", "1e-4", 0, INFINITY, 0,
        "how much better than the best a metric must be to count as an improvement"),
    LMN_PARAM_SPEC_ENUM(
        "threshold_mode", "rel", plateau_threshold_modes,
        "rel: better than best * (1 -+ threshold); abs: better than best -+ threshold"),
    LMN_PARAM_SPEC_INT("cooldown", "0", 0, INFINITY, 0,
                       "epochs after a reduction during which bad epochs are not counted"),
    LMN_PARAM_SPEC_FLOAT("min_lr", "0", 0, INFINITY, 0, "lower bound of the learning rate"),
    LMN_PARAM_SPEC_FLOAT("eps", "1e-8", 0, INFINITY, 0, "a reduction smaller than eps is skipped"),
    LMN_PARAM_SPEC_END,
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
    LMN_FEATURE(LMN_FEATURE_SCHEDULE, "one_cycle",
                "the 1cycle policy: up to lr, then down to lr / div_factor / final_div_factor "
                "(torch OneCycleLR without momentum cycling)",
                one_cycle_specs, &one_cycle_vt),
    LMN_FEATURE(LMN_FEATURE_SCHEDULE, "reduce_on_plateau",
                "multiply lr by factor when the validation metric stops improving "
                "(torch ReduceLROnPlateau)",
                plateau_specs, &plateau_vt),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.schedules", LMN_VERSION_STRING, "MIT",
                           "learning-rate schedules (torch.optim.lr_scheduler)", schedule_features)
