/* Lamina — the training loop and evaluation. */
#pragma once

#include <lamina/communicator.h>

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
 * @comm: (nullable): the communicator of a data-parallel run (lmn_comm_open(), borrowed for the
 *   trainer's life); NULL or one rank trains in this process alone.  With several ranks each
 *   trains on its slice of every global batch, only rank 0 writes to @output_dir, and the
 *   figures and decisions are those of the global batch (docs/distributed.md).
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
    /* appended */
    LmnComm *comm;
} LmnTrainerOptions;

/**
 * lmn_backend_new_for_config:
 * Opens the backend named by @name: "auto" tries the GPU backends (a one-line notice on stderr
 * when none works) and falls back to "cpu"; any other name must open or it is an error.
 */
LmnBackend *lmn_backend_new_for_config(LmnRegistry *registry, const char *name,
                                       const char *device, GError **error);
/**
 * lmn_backend_new_for_config_threads:
 * As lmn_backend_new_for_config(), with the cpu backend (named, or the fallback of "auto") on
 * @threads threads for every op, GEMM included ([train] threads); 0 = its default
 * (LAMINA_NUM_THREADS, else one per core the process may run on).  Other backends ignore it.
 */
LmnBackend *lmn_backend_new_for_config_threads(LmnRegistry *registry, const char *name,
                                               const char *device, gint64 threads, GError **error);

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

/**
 * LmnTta:
 * @LMN_TTA_NONE: one view, the sample itself
 * @LMN_TTA_HFLIP: two views of an image [C, H, W]: itself and its horizontal mirror
 * @LMN_TTA_CROPS: ten views of an image [C, H, W]: the image zero-padded by P pixels on every
 *   side, its centre crop and its four corner crops of size H x W (the centre crop is the image
 *   itself), then the mirror of each, in that order.  The crops are lmn_augment_shift() by
 *   (dy, dx) = (0, 0), (P, P), (P, -P), (-P, P), (-P, -P) (a shift by (P, P) is the top-left
 *   crop of the padded image); the mirrors lmn_augment_hflip() of them.
 * Test-time augmentation: the views of a sample whose class probabilities are averaged.
 */
typedef enum {
    LMN_TTA_NONE,
    LMN_TTA_HFLIP,
    LMN_TTA_CROPS,
} LmnTta;

/**
 * LmnProbabilitiesFunc:
 * @start: the index in the split of the batch's first sample
 * @n: the batch's samples
 * @probs: [@n, n_classes]: each sample's class probabilities (averaged over its views)
 * @labels: [@n]: each sample's class label
 * Receives one batch of lmn_evaluate_probabilities(); the arrays are valid during the call.
 * Returns: FALSE with @error set to stop the evaluation
 */
typedef gboolean (*LmnProbabilitiesFunc)(gint64 start, gint64 n, const float *probs,
                                         const gint32 *labels, gpointer user_data, GError **error);

/**
 * lmn_evaluate_check_tta:
 * Returns: FALSE with LMN_DATA_ERROR_SHAPE when @tta is not LMN_TTA_NONE and @input_shape is not
 *   an image [C, H, W], or with LMN_DATA_ERROR_VALUE when @tta is LMN_TTA_CROPS and @pad is not
 *   in [0, min(H, W))
 */
gboolean lmn_evaluate_check_tta(const LmnShape *input_shape, LmnTta tta, gint64 pad,
                                GError **error);
/**
 * lmn_evaluate_get_n_classes:
 * Returns: the class count of @model's first loss whose target holds class labels (the loss
 *   lmn_evaluate_full()'s accuracy is of), or -1 when none does
 */
gint64 lmn_evaluate_get_n_classes(const LmnModel *model);
/**
 * LmnSegmentationIoU:
 * Intersection over union of a segmentation, over every pixel of a split.
 * Binary (binary_cross_entropy_with_logits on a mask): a pixel is predicted foreground when its
 * logit is above 0 (a sigmoid above 0.5) and is foreground when its target is 1.  IoU = TP /
 * (TP + FP + FN) for the foreground, and likewise for the background with the roles swapped;
 * @mean the mean of the two (of the defined one when a class is absent from both prediction and
 * target, whose IoU is then NAN); @classes is 2.
 * Multi-class (softmax_cross_entropy on per-pixel labels): a pixel's prediction is the argmax
 * of its C logits; IoU_k = |pred = k and label = k| / |pred = k or label = k| per class, pixels
 * labelled ignore_index left out; @mean is the mean over the classes present in prediction or
 * labels (mean IoU), @foreground that over classes 1.., @background class 0's; @classes is C.
 * @pixels counts the pixels scored.
 */
typedef struct {
    double foreground, background, mean;
    gint64 pixels;
    gint64 classes;
} LmnSegmentationIoU;
/**
 * lmn_evaluate_find_segmentation_loss:
 * Returns: the index of @model's first binary_cross_entropy_with_logits loss on a float target
 *   (a mask) or softmax_cross_entropy loss on a float target (per-pixel labels), or -1 when it
 *   has none
 */
gint lmn_evaluate_find_segmentation_loss(const LmnModel *model);
/**
 * lmn_evaluate_segmentation_iou:
 * Runs @model in evaluation mode over @ds in batches of @batch and measures the IoU of loss
 * @loss's logits against its target (see #LmnSegmentationIoU).
 * Returns: FALSE with LMN_DATA_ERROR_VALUE naming the sample when a mask value is neither 0 nor
 *   1 or a label is no class, or when @loss is not one lmn_evaluate_find_segmentation_loss()
 *   finds; with the data's or the backend's errors
 */
gboolean lmn_evaluate_segmentation_iou(LmnModel *model, const LmnDataset *ds, gint64 batch,
                                       gint loss, LmnSegmentationIoU *iou_out, GError **error);
/**
 * lmn_evaluate_full_comm:
 * @comm: (nullable): the ranks to share the work with; NULL or one rank is lmn_evaluate_full()
 * Like lmn_evaluate_full(), with every rank of @comm evaluating its contiguous share of @ds
 * (lmn_evaluate_share()) and the sums reduced, so every rank gets the figures of the whole
 * split.  Every rank must call it with the same weights and split.
 */
gboolean lmn_evaluate_full_comm(LmnModel *model, const LmnDataset *ds, gint64 batch, LmnComm *comm,
                                double *loss_out, double *accuracy_out, double *losses_out,
                                GError **error);
/**
 * lmn_evaluate_share:
 * This rank's contiguous share [*@first, *@first + *@count) of @n samples (all of them with a
 * NULL @comm): rank r of N takes r·n/N to (r+1)·n/N.
 */
void lmn_evaluate_share(gint64 n, const LmnComm *comm, gint64 *first, gint64 *count);
/**
 * lmn_evaluate_probabilities:
 * @pad: P of LMN_TTA_CROPS (ignored otherwise)
 * @func: called once per batch, in order
 * Runs @model in evaluation mode over @ds in batches of @batch, once per view of @tta, and
 * passes @func each batch's class probabilities: the softmax (lmn_class_metrics_softmax()) of the
 * logits of the first loss whose target holds class labels, averaged over the views, with that
 * loss's labels.  Only one batch of inputs and probabilities is held on the host.
 * Returns: FALSE with LMN_DATA_ERROR_VALUE when the model has no such loss, with
 *   LMN_DATA_ERROR_SHAPE when @ds's samples have another size than the model's input, with
 *   lmn_evaluate_check_tta()'s errors, the data's or the backend's, or @func's
 */
gboolean lmn_evaluate_probabilities(LmnModel *model, const LmnDataset *ds, gint64 batch, LmnTta tta,
                                    gint64 pad, LmnProbabilitiesFunc func, gpointer user_data,
                                    GError **error);
/**
 * lmn_evaluate_probabilities_range:
 * lmn_evaluate_probabilities() over samples [@first, @first + @count) of @ds only (@func's
 * start is an index into @ds), for sharing a split among ranks.
 */
gboolean lmn_evaluate_probabilities_range(LmnModel *model, const LmnDataset *ds, gint64 batch,
                                          LmnTta tta, gint64 pad, gint64 first, gint64 count,
                                          LmnProbabilitiesFunc func, gpointer user_data,
                                          GError **error);

G_END_DECLS
