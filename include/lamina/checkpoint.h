/* Lamina — checkpoints in HDF5 (DESIGN §5).
 *
 *   /                          attrs format = "lamina-checkpoint", format_version, lamina_version
 *   /config                    the full config text
 *   /model/<layer>/<param>     float32, PyTorch names and shapes (also buffers)
 *   /optimizer                 attrs type, plugin_version, every hyperparameter, step, host state
 *   /optimizer/state/<layer>/<param>/<slot>
 *   /train                     attrs epoch, step, seed, best_metric, best_epoch, schedule state
 *
 * Files are written atomically (temporary file in the same directory, flush, fsync, rename), so
 * a failing write never damages an existing checkpoint.  Readers accept any HDF5 file with the
 * /model layout (e.g. written by h5py from a PyTorch state_dict) for lmn_checkpoint_load_weights.
 */
#pragma once

#include <lamina/model.h>
#include <lamina/optimizer.h>
#include <lamina/schedule.h>

G_BEGIN_DECLS

#define LMN_CHECKPOINT_FORMAT "lamina-checkpoint"
#define LMN_CHECKPOINT_FORMAT_VERSION 1

/** LmnTrainState: the training loop's counters, saved in /train. */
typedef struct {
    gint64 epoch; /* completed epochs */
    gint64 step;  /* optimizer steps done */
    guint64 seed;
    double best_metric; /* NAN when none yet */
    gint64 best_epoch;  /* -1 when none yet */
} LmnTrainState;

/**
 * lmn_checkpoint_save:
 * @config_text: the run's full config
 * @opt, @sched, @state: (nullable): training state to include
 * Returns: FALSE with LMN_CHECKPOINT_ERROR_WRITE (and the target untouched)
 */
gboolean lmn_checkpoint_save(const char *path, const char *config_text, LmnModel *model,
                             LmnOptimizer *opt, LmnSchedule *sched, const LmnTrainState *state,
                             GError **error);
/**
 * lmn_checkpoint_read_config:
 * Returns: (transfer full): the /config text, or NULL with LMN_CHECKPOINT_ERROR_OPEN/_FORMAT
 */
char *lmn_checkpoint_read_config(const char *path, GError **error);
/**
 * lmn_checkpoint_load_weights:
 * Loads /model/<layer>/<param> (and buffers) into @model, checking every shape.
 * Returns: FALSE with LMN_CHECKPOINT_ERROR_MISMATCH naming the first missing or misshapen
 *   parameter and the expected shape, leaving @model's values unchanged
 */
gboolean lmn_checkpoint_load_weights(const char *path, LmnModel *model, GError **error);
/**
 * lmn_checkpoint_load_training:
 * Loads optimizer state (slots laid out like @model's parameters), schedule state and counters
 * for --resume.  A different optimizer type
 * is LMN_CHECKPOINT_ERROR_OPTIMIZER unless @reset_optimizer (then the optimizer starts fresh).
 */
gboolean lmn_checkpoint_load_training(const char *path, LmnModel *model, LmnOptimizer *opt,
                                      LmnSchedule *sched, LmnTrainState *state,
                                      gboolean reset_optimizer, GError **error);

G_END_DECLS
