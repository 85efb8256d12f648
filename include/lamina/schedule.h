/* Lamina — learning-rate schedules.
 *
 * A schedule maps the base learning rate and a clock to this step's learning rate.  The core
 * resolves the schedule's unit (the common key `unit = epoch | step`) into clock->t, applies the
 * common linear warm-up (`warmup`, in the same unit) on top, and calls lr() before every step.
 * Schedules that react to metrics (reduce-on-plateau) keep their state in a small double array
 * the core owns and checkpoints.
 */
#pragma once

#include <lamina/params.h>
#include <lamina/registry.h>

G_BEGIN_DECLS

/** LmnScheduleUnit: what clock->t counts. Stored in files: explicit values. */
typedef enum {
    LMN_SCHEDULE_UNIT_EPOCH = 0,
    LMN_SCHEDULE_UNIT_STEP = 1,
} LmnScheduleUnit;

/**
 * LmnScheduleClock:
 * @t: the time in the schedule's unit: completed epochs, or optimizer steps done
 * @step: optimizer steps done
 * @epoch: completed epochs
 * @steps_per_epoch: steps in one epoch
 * @unit: the schedule's unit ([schedule] unit), which @t counts
 * @epochs: the run's length in epochs ([train] epochs); 0 when no run length is known (a schedule
 *   used outside lmn_trainer_run() without lmn_schedule_set_run_length())
 * @total_steps: the optimizer steps the run takes: epochs * steps_per_epoch, or [train]
 *   max_steps when that is smaller; 0 when unknown
 * @length: the run's length in @unit (@epochs or @total_steps), for schedules whose shape spans
 *   the whole run (a key such as t_max or total can default to it); 0 when unknown
 * The members after @reserved were appended: read them only when LMN_SCHEDULE_CLOCK_HAS() says
 * the core that called the schedule fills them.
 */
typedef struct {
    guint32 struct_size;
    gint64 t;
    gint64 step;
    gint64 epoch;
    gint64 steps_per_epoch;
    gpointer reserved[2];
    /* appended */
    LmnScheduleUnit unit;
    gint64 epochs;
    gint64 total_steps;
    gint64 length;
} LmnScheduleClock;

/** LMN_SCHEDULE_CLOCK_HAS: whether @clock (a const LmnScheduleClock *) has @member. */
#define LMN_SCHEDULE_CLOCK_HAS(clock, member)                                                      \
    ((clock)->struct_size >= G_STRUCT_OFFSET(LmnScheduleClock, member) + sizeof((clock)->member))

/**
 * LmnScheduleVTable:
 * @n_state: doubles of state (0 for pure functions of time)
 * @init_state: (optional) sets the initial state; NULL means zeros
 * @lr: Returns: the learning rate at @clock
 * @observe: (optional) called with the monitored validation metric after each epoch
 * @validate: (optional) checks relations between the schedule's keys (and the common ones) that
 *   a per-key schema cannot express; sets a LMN_CONFIG_ERROR_INVALID error naming the keys.
 *   Called when the schedule is made, before training starts.  (Appended.)
 */
typedef struct _LmnScheduleCommon LmnScheduleCommon;
typedef struct {
    guint32 struct_size;
    guint n_state;
    void (*init_state)(const LmnParams *params, double base_lr, double *state);
    double (*lr)(const LmnParams *params, double base_lr, const LmnScheduleClock *clock,
                 const double *state);
    void (*observe)(const LmnParams *params, double metric, double *state);
    gboolean (*validate)(const LmnParams *params, const LmnScheduleCommon *common,
                         GError **error);
} LmnScheduleVTable;

/* ---- the core's schedule object ---- */

typedef struct _LmnSchedule LmnSchedule;
typedef struct _LmnRegistry LmnRegistry;

/**
 * LmnScheduleCommon:
 * The keys every [schedule] group accepts besides the plugin's own (validated by the core):
 * unit = epoch | step (default epoch), warmup = length of a linear warm-up in that unit
 * (default 0), warmup_start_factor in (0, 1] (default 0.1; PyTorch LinearLR's start_factor).
 * During warm-up lr = base_lr-schedule value * (f + (1 - f) * t / warmup).
 */
struct _LmnScheduleCommon {
    LmnScheduleUnit unit;
    gint64 warmup;
    double warmup_start_factor;
};

/** lmn_schedule_common_specs: Returns: (transfer none): the schema of the common keys. */
const LmnParamSpec *lmn_schedule_common_specs(void);
/**
 * lmn_schedule_common_from_params:
 * Reads the common keys from @params, a set validated against lmn_schedule_common_specs().
 */
void lmn_schedule_common_from_params(const LmnParams *params, LmnScheduleCommon *common);

/**
 * lmn_schedule_new:
 * @params: validated against the feature's own schema
 * @common: the common keys (NULL = defaults)
 * Returns: (transfer full): the schedule, or NULL with @error
 */
LmnSchedule *lmn_schedule_new(LmnRegistry *registry, const char *type, const LmnParams *params,
                              const LmnScheduleCommon *common, double base_lr, GError **error);
/**
 * lmn_schedule_set_run_length:
 * @epochs: the run's epochs
 * @steps_per_epoch: optimizer steps in one epoch
 * @max_steps: a limit on the steps, or 0 for none
 * Tells the schedule how long the run is (LmnScheduleClock's epochs, total_steps and length), so
 * schedules that span the whole run need no key repeating it; the trainer calls it.
 */
void lmn_schedule_set_run_length(LmnSchedule *sched, gint64 epochs, gint64 steps_per_epoch,
                                 gint64 max_steps);
/** lmn_schedule_free: frees the schedule. */
void lmn_schedule_free(LmnSchedule *sched);
/** lmn_schedule_get_lr: Returns: the learning rate for the step after @step steps in @epoch. */
double lmn_schedule_get_lr(LmnSchedule *sched, gint64 step, gint64 epoch,
                           gint64 steps_per_epoch);
/** lmn_schedule_observe: passes a validation metric to schedules that react to one. */
void lmn_schedule_observe(LmnSchedule *sched, double metric);
/**
 * lmn_schedule_get_feature:
 * Returns: (transfer none): the registered schedule: its name, and the plugin and version that
 *   provide it (checkpoints record them)
 */
const LmnFeature *lmn_schedule_get_feature(const LmnSchedule *sched);
/** lmn_schedule_get_type_name: Returns: (transfer none): the feature name. */
const char *lmn_schedule_get_type_name(const LmnSchedule *sched);
/**
 * lmn_schedule_get_state:
 * @n_out: (out): number of doubles
 * Returns: (transfer none): the state, writable (checkpoint resume)
 */
double *lmn_schedule_get_state(LmnSchedule *sched, guint *n_out);

G_END_DECLS
