/* Lamina — the training loop and evaluation. */
#pragma once

#include <lamina/checkpoint.h>
#include <lamina/config.h>
#include <lamina/dataset.h>
#include <lamina/model.h>
#include <lamina/optimizer.h>

G_BEGIN_DECLS

typedef struct _LmnTrainer LmnTrainer;

/**
 * LmnTrainerOptions:
 * @output_dir: where final.h5, periodic checkpoints and metrics.csv go (created)
 * @init_checkpoint: (nullable): weights to start from (--init)
 * @resume_checkpoint: (nullable): full state to continue from (--resume)
 * @reset_optimizer: with --resume, start the optimizer fresh even if its type changed
 * @progress: draw a progress bar (the CLI sets it when stdout is a terminal)
 * @quiet: print nothing per epoch
 * @allow_nonfinite: load weights and optimizer state holding NaN or infinities from
 *   @init_checkpoint or @resume_checkpoint (--allow-nonfinite); by default they are refused
 * @init_partial: with @init_checkpoint, load only the parameters and buffers whose layer, name
 *   and shape match, keep the others' initialisation and print one line on stderr for each
 *   (--init-partial); without it every one must match.  Loading nothing is an error either way.
 * @epoch_done: (nullable): called after each epoch's row of metrics.csv is written (and
 *   flushed), with the file's path and @epoch_done_data: `lamina train --plot` redraws its
 *   learning curves there.  It must not call back into the trainer.
 */
typedef struct {
    const char *output_dir;
    const char *init_checkpoint;
    const char *resume_checkpoint;
    gboolean reset_optimizer;
    gboolean progress;
    gboolean quiet;
    gboolean allow_nonfinite;
    /* appended */
    gboolean init_partial;
    /* appended */
    void (*epoch_done)(const char *metrics_path, gpointer epoch_done_data);
    gpointer epoch_done_data;
} LmnTrainerOptions;

/**
 * lmn_backend_new_for_config:
 * Opens the backend named by @name: "auto" tries the GPU backends (a one-line notice on stderr
 * when none works) and falls back to "cpu"; any other name must open or it is an error.
 */
LmnBackend *lmn_backend_new_for_config(LmnRegistry *registry, const char *name,
                                       const char *device, GError **error);

/**
 * lmn_trainer_new:
 * @cfg: a validated config (the trainer borrows it)
 * Opens the data, the backend, builds and initialises the model and the optimizer.
 * Returns: (transfer full): the trainer, or NULL with @error
 */
LmnTrainer *lmn_trainer_new(LmnConfig *cfg, LmnRegistry *registry,
                            const LmnTrainerOptions *options, GError **error);
/** lmn_trainer_free: frees the trainer. */
void lmn_trainer_free(LmnTrainer *trainer);
/**
 * lmn_trainer_run:
 * Trains for the configured epochs (or max_steps), writing metrics.csv and checkpoints.
 * Returns: FALSE with LMN_TRAIN_ERROR_NON_FINITE when the loss stops being finite (the last good
 *   checkpoint is kept), or another error
 */
gboolean lmn_trainer_run(LmnTrainer *trainer, GError **error);
/** lmn_trainer_get_model: Returns: (transfer none): the model. */
LmnModel *lmn_trainer_get_model(LmnTrainer *trainer);
/** lmn_trainer_get_optimizer: Returns: (transfer none): the optimizer (its slots, its launch
 * count). */
LmnOptimizer *lmn_trainer_get_optimizer(LmnTrainer *trainer);
/** lmn_trainer_get_state: Returns: (transfer none): the counters. */
const LmnTrainState *lmn_trainer_get_state(LmnTrainer *trainer);
/** lmn_trainer_request_stop: asks the loop to save and stop after the current step (SIGINT). */
void lmn_trainer_request_stop(LmnTrainer *trainer);

/**
 * lmn_evaluate:
 * Mean loss and accuracy (NAN without class labels) of @model over @ds in batches of @batch.
 */
gboolean lmn_evaluate(LmnModel *model, const LmnDataset *ds, gint64 batch, double *loss_out,
                      double *accuracy_out, GError **error);
/**
 * lmn_evaluate_full:
 * @losses_out: (nullable) (array): lmn_model_get_n_losses() values: each loss's own
 *   (unweighted) mean over @ds, in the model's loss order
 * As lmn_evaluate(), with per-loss means.  @loss_out is the weighted total, @accuracy_out that of
 * the first loss whose target holds class labels (NAN when none does).  @ds supplies every
 * target the model's losses read (lmn_dataset_open_with_targets()).
 */
gboolean lmn_evaluate_full(LmnModel *model, const LmnDataset *ds, gint64 batch, double *loss_out,
                           double *accuracy_out, double *losses_out, GError **error);

G_END_DECLS
