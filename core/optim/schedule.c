/* Lamina — the schedule object: a schedule feature plus the common keys every [schedule] group
 * accepts (unit, warmup, warmup_start_factor), and the state array the core checkpoints.
 */
#include <lamina/error.h>
#include <lamina/registry.h>
#include <lamina/schedule.h>

#include <math.h>
#include <string.h>

struct _LmnSchedule {
    const LmnFeature *feature;
    const LmnScheduleVTable *vtable;
    LmnParams *params;
    LmnScheduleCommon common;
    double base_lr;
    double *state;
    /* the run's length (lmn_schedule_set_run_length), 0 until told */
    gint64 epochs;
    gint64 total_steps;
};

static const char *const schedule_units[] = {"epoch", "step", NULL};

static const LmnParamSpec schedule_common_specs[] = {
    LMN_PARAM_SPEC_ENUM("unit", "epoch", schedule_units,
                        "what the schedule's time counts: completed epochs or optimizer steps"),
    LMN_PARAM_SPEC_INT(
        "warmup", "0", 0, INFINITY, 0,
        "length of a linear learning-rate warm-up, in the schedule's unit (0: none)"),
    LMN_PARAM_SPEC_FLOAT(
        "warmup_start_factor", "0.1", 0, 1, LMN_PARAM_FLAG_MIN_EXCLUSIVE,
        "fraction of the learning rate the warm-up starts from (PyTorch LinearLR's "
        "start_factor)"),
    LMN_PARAM_SPEC_END,
};

const LmnParamSpec *lmn_schedule_common_specs(void)
{
    return schedule_common_specs;
}

void lmn_schedule_common_from_params(const LmnParams *params, LmnScheduleCommon *common)
{
    g_return_if_fail(params != NULL && common != NULL);

    common->unit = strcmp(lmn_params_get_string(params, "unit"), "step") == 0
                       ? LMN_SCHEDULE_UNIT_STEP
                       : LMN_SCHEDULE_UNIT_EPOCH;
    common->warmup = lmn_params_get_int(params, "warmup");
    common->warmup_start_factor = lmn_params_get_float(params, "warmup_start_factor");
}

/* Common keys may also come from code (not only from a validated config), so check them here. */
static gboolean schedule_check_common(const char *type, const LmnScheduleCommon *common,
                                      GError **error)
{
    if (common->unit != LMN_SCHEDULE_UNIT_EPOCH && common->unit != LMN_SCHEDULE_UNIT_STEP) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "[schedule] type = %s: unit %d is neither epoch (0) nor step (1)", type,
                    (int) common->unit);
        return FALSE;
    }
    if (common->warmup < 0) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "[schedule] type = %s: warmup = %" G_GINT64_FORMAT " must be >= 0", type,
                    common->warmup);
        return FALSE;
    }
    if (!(common->warmup_start_factor > 0.0 && common->warmup_start_factor <= 1.0)) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "[schedule] type = %s: warmup_start_factor = %g must lie in (0, 1]", type,
                    common->warmup_start_factor);
        return FALSE;
    }
    return TRUE;
}

LmnSchedule *lmn_schedule_new(LmnRegistry *registry, const char *type, const LmnParams *params,
                              const LmnScheduleCommon *common, double base_lr, GError **error)
{
    static const LmnScheduleCommon defaults = {
        .unit = LMN_SCHEDULE_UNIT_EPOCH,
        .warmup = 0,
        .warmup_start_factor = 0.1,
    };

    g_return_val_if_fail(registry != NULL, NULL);
    g_return_val_if_fail(type != NULL, NULL);
    g_return_val_if_fail(params != NULL, NULL);
    g_return_val_if_fail(error == NULL || *error == NULL, NULL);

    if (common == NULL)
        common = &defaults;
    if (!schedule_check_common(type, common, error))
        return NULL;

    const LmnFeature *feature = lmn_registry_lookup(registry, LMN_FEATURE_SCHEDULE, type, error);
    if (feature == NULL)
        return NULL;
    const LmnScheduleVTable *vt = feature->desc->vtable;
    if (vt == NULL || !LMN_VTABLE_HAS(vt, lr)) {
        g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_BAD_DESCRIPTOR,
                    "schedule '%s' from %s: its vtable has no lr function", type, feature->path);
        return NULL;
    }

    LmnSchedule *sched = g_new0(LmnSchedule, 1);
    sched->feature = feature;
    sched->vtable = vt;
    sched->params = lmn_params_ref((LmnParams *) params);
    sched->common = *common;
    sched->base_lr = base_lr;
    sched->state = g_new0(double, MAX(vt->n_state, 1));
    if (LMN_VTABLE_HAS(vt, validate)) {
        g_autoptr(GError) local = NULL;
        if (!vt->validate(params, common, &local)) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                        "[schedule] type = %s: %s", type,
                        local ? local->message : "the schedule refused its keys");
            lmn_schedule_free(sched);
            return NULL;
        }
    }
    if (vt->n_state > 0 && LMN_VTABLE_HAS(vt, init_state))
        vt->init_state(params, base_lr, sched->state);
    return sched;
}

void lmn_schedule_free(LmnSchedule *sched)
{
    if (sched == NULL)
        return;
    lmn_params_unref(sched->params);
    g_free(sched->state);
    g_free(sched);
}

double lmn_schedule_get_lr(LmnSchedule *sched, gint64 step, gint64 epoch, gint64 steps_per_epoch)
{
    g_return_val_if_fail(sched != NULL, 0.0);

    LmnScheduleClock clock = {
        .struct_size = sizeof(LmnScheduleClock),
        .t = sched->common.unit == LMN_SCHEDULE_UNIT_STEP ? step : epoch,
        .step = step,
        .epoch = epoch,
        .steps_per_epoch = steps_per_epoch,
        .unit = sched->common.unit,
        .epochs = sched->epochs,
        .total_steps = sched->total_steps,
        .length = sched->common.unit == LMN_SCHEDULE_UNIT_STEP ? sched->total_steps
                                                               : sched->epochs,
    };
    double lr = sched->vtable->lr(sched->params, sched->base_lr, &clock, sched->state);

    /* PyTorch's LinearLR(start_factor = f, total_iters = warmup) chained on top. */
    if (clock.t < sched->common.warmup) {
        double f = sched->common.warmup_start_factor;
        lr *= f + (1.0 - f) * (double) clock.t / (double) sched->common.warmup;
    }
    return lr;
}

void lmn_schedule_set_run_length(LmnSchedule *sched, gint64 epochs, gint64 steps_per_epoch,
                                 gint64 max_steps)
{
    g_return_if_fail(sched != NULL && epochs >= 0 && steps_per_epoch >= 0 && max_steps >= 0);
    sched->epochs = epochs;
    /* (the checkpoint bounds keep epochs and steps far below overflow; saturate anyway) */
    gint64 total = steps_per_epoch > 0 && epochs > G_MAXINT64 / steps_per_epoch
                       ? G_MAXINT64
                       : epochs * steps_per_epoch;
    sched->total_steps = max_steps > 0 ? MIN(total, max_steps) : total;
}

void lmn_schedule_observe(LmnSchedule *sched, double metric)
{
    g_return_if_fail(sched != NULL);
    if (LMN_VTABLE_HAS(sched->vtable, observe))
        sched->vtable->observe(sched->params, metric, sched->state);
}

const LmnFeature *lmn_schedule_get_feature(const LmnSchedule *sched)
{
    g_return_val_if_fail(sched != NULL, NULL);
    return sched->feature;
}

const char *lmn_schedule_get_type_name(const LmnSchedule *sched)
{
    g_return_val_if_fail(sched != NULL, NULL);
    return sched->feature->desc->name;
}

double *lmn_schedule_get_state(LmnSchedule *sched, guint *n_out)
{
    g_return_val_if_fail(sched != NULL, NULL);
    if (n_out != NULL)
        *n_out = sched->vtable->n_state;
    return sched->state;
}
