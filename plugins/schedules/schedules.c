/* Lamina — the built-in learning-rate schedules.  Each is a pure function of the clock's t (in
 * the unit the [schedule] group chose) and matches its torch.optim.lr_scheduler namesake.
 */
#include <lamina/lamina.h>

#include <math.h>

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

static const LmnFeatureDesc schedule_features[] = {
    {
        .struct_size = sizeof(LmnFeatureDesc),
        .kind = LMN_FEATURE_SCHEDULE,
        .name = "constant",
        .description = "the base learning rate throughout (warm-up still applies)",
        .params = NULL,
        .vtable = &constant_vt,
    },
    {
        .struct_size = sizeof(LmnFeatureDesc),
        .kind = LMN_FEATURE_SCHEDULE,
        .name = "step",
        .description = "lr = base_lr * gamma^floor(t / step_size) (torch StepLR)",
        .params = step_specs,
        .vtable = &step_vt,
    },
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
