/* Lamina — the trainer's internals, shared by the files of core/train/: trainer.c (building a
 * run and its lifetime), loop.c (epochs and steps), gradients.c (penalties, noise, clipping and
 * the non-finite guard), output.c (the output directory, checkpoints, metrics.csv) and
 * evaluate.c.  Private to core/train/. */
#pragma once

#include <lamina/lamina.h>

#include <stdio.h>

struct _LmnTrainer {
    LmnConfig *cfg;
    LmnRegistry *registry;
    LmnTrainerOptions opts;
    char *output_dir;
    char *config_text;
    const LmnTrainConfig *tc;
    LmnBackend *backend;
    LmnModel *model;
    LmnOptimizer *opt;
    LmnSchedule *sched;
    LmnDataset *train;
    LmnDataset *val;
    LmnDataset *test;
    LmnTrainState state;
    LmnBatchReader *reader; /* the training batches: order, augmentation, prefetch */
    float *x_host;
    void *y_host;
    guint32 *idx_host; /* the dataset indices of the batch, for messages */
    LmnTensor *loss_acc;
    LmnTensor *correct_acc;
    gint stop_requested;
    /* Gradient processing (see LmnTrainConfig): one entry per parameter, in model order. */
    GArray *slots;      /* ParamSlot */
    LmnTensor *scratch; /* flat like the parameters: noise, sign(w); NULL when unused */
    LmnTensor *penalty; /* one f32: this step's penalty, added to the reported loss */
    LmnTensor *norm_sq; /* one f32: the squared global gradient norm (clip_norm) */
    /* One f32 for the gradient guard without clip_norm: this step's squared global norm on a
     * backend with host memory, the run's sum of them on a device (read once per epoch). */
    LmnTensor *grad_sq;
    gboolean has_penalty;
    /* Early stopping with restore_best: the best epoch's weights, on the backend. */
    LmnTensor *best_params;
    LmnTensor *best_buffers;
    FILE *metrics;
    /* Several losses (losses.c): the other targets' host staging ([0] unused) and where the
     * reader delivers each target; with two or more losses, per-loss sums on the backend (one
     * view each) and the epoch's per-loss means.  NULL / 0 with one loss. */
    guint n_targets;
    void **t_host;
    void **t_dst;
    gint acc_loss;
    guint n_losses;
    LmnTensor *loss_accs;
    LmnTensor **loss_acc_views;
    float *read_losses;
    double *train_losses;
    double *val_losses;
    int lock_fd; /* OUTPUT/.lock, flock()ed for the trainer's life; -1 when not taken */
    /* Adversarial training ([train] adversarial): the attack, its host buffers, the clean
     * batch's gradient and a host copy of the labels; NULL without it. */
    LmnAttackOptions adv_options;
    struct _LmnAttackWork *adv_work;
    LmnTensor *adv_grads;
    gint32 *adv_labels;
    /* Regularisers on the weights (regularisers.c), NULL / 0 when off: the max_norm rows
     * (start, length, bound per row), weight noise's clean copy of the parameters, its noise and
     * one view of the noise per parameter slot, and the parameters' moving average (laid out like
     * the flat parameters) with the last validation figures of the averaged weights. */
    gsize mn_rows;
    LmnTensor *mn_start, *mn_len, *mn_max;
    LmnTensor *clean_params;
    LmnTensor *wn_noise;
    GPtrArray *wn_views;
    LmnTensor *ema;
    double ema_val_loss, ema_val_acc;
    /* [train] top_k: the last validation top-K accuracy (NAN when off or not yet measured). */
    double val_top_k;
    /* A segmentation model (segmentation.c): its mask loss (-1 for none) and the validation
     * split's last mean IoU. */
    gint seg_loss;
    double val_iou;
    /* Data-parallel runs (data-parallel.c): the communicator (borrowed from the options; NULL
     * for one process), this rank and the number of ranks, the gradient buckets (NULL with one
     * rank). */
    LmnComm *comm;
    int rank;
    int n_ranks;
    struct _LmnDataParallel *dp;
};
typedef struct _LmnDataParallel LmnDataParallel;

/* A parameter as the training loop's gradient processing sees it.  The tensors are views into
 * the model's flat tensors (and the scratch), so only real elements are touched: the padding
 * between parameters keeps a zero gradient, which keeps clip_norm's norm exact. */
typedef struct {
    LmnTensor *w;       /* borrowed from the layer */
    LmnTensor *g;       /* borrowed from the layer */
    LmnTensor *scratch; /* owned view of the scratch at the parameter's offset, or NULL */
    float l1, l2;
    gboolean frozen; /* [layer] trainable = false: no penalty, no noise (its gradient stays 0) */
} ParamSlot;

/* ---- losses.c ---- */

/* Returns: (transfer full): the config's targets besides y, NULL-terminated. */
char **lmn_train_target_names(const LmnConfig *cfg);
/* The staging buffers and accumulators, once the model is built. */
gboolean lmn_train_setup_losses(LmnTrainer *t, GError **error);
void lmn_train_clear_losses(LmnTrainer *t);
/* The buffers the reader delivers the batch's targets into: @y for y, the others straight into
 * host-memory target tensors when nothing is skipped, else staging. */
void *const *lmn_train_target_buffers(LmnTrainer *t, void *y, gint64 skip);
/* Writes the staged targets (after skipping @skip samples) into the model's target tensors. */
gboolean lmn_train_write_targets(LmnTrainer *t, gint64 m, gint64 skip, GError **error);
/* Per-loss sums of batch size * loss over an epoch, and their means over @seen samples. */
void lmn_train_zero_losses(LmnTrainer *t);
void lmn_train_accumulate_losses(LmnTrainer *t, gint64 m);
gboolean lmn_train_read_losses(LmnTrainer *t, gint64 seen, GError **error);
/* lmn_evaluate_full() into @losses (n_losses values, NAN until filled; only with several). */
gboolean lmn_train_evaluate(LmnTrainer *t, const LmnDataset *ds, double *loss, double *acc,
                            double *losses, GError **error);
/* The epoch line's and metrics.csv's per-loss parts; nothing with one loss. */
void lmn_train_print_losses(LmnTrainer *t, const double *values);
gboolean lmn_train_write_loss_header(LmnTrainer *t, FILE *f);
gboolean lmn_train_write_loss_values(LmnTrainer *t, FILE *f);

/* ---- evaluate.c ---- */

/* The sums lmn_evaluate_full() divides: over samples [@first, @first + @n) of @ds, the loss
 * (batch means times batch sizes, in double), the correct count and, with @losses_sum, each
 * loss's sum likewise. */
gboolean lmn_evaluate_sums(LmnModel *model, const LmnDataset *ds, gint64 batch, gint64 first,
                           gint64 n, double *loss_sum, double *correct, double *losses_sum,
                           GError **error);

/* The loss whose accuracy is reported: with one loss, loss 0 when y holds class labels; with
 * several, the first whose target does.  Returns: its index, or -1 for no accuracy. */
gint lmn_train_accuracy_loss(const LmnModel *model);
/* Adds the batch's correct predictions of loss @loss (-1: nothing) to @correct. */
void lmn_train_count_correct(LmnModel *model, gint loss, LmnTensor *correct);
/* [train] top_k against the model: it needs class labels and at most as many as the classes;
 * FALSE with an error naming the key otherwise. */
gboolean lmn_train_check_top_k(LmnTrainer *t, GError **error);
/* @ds's top-K accuracy, K = [train] top_k, from the model's class probabilities. */
gboolean lmn_train_evaluate_top_k(LmnTrainer *t, const LmnDataset *ds, double *acc, GError **error);
/* Loads the batch @idx of @ds into the model: x and y through @x_host / @y_host when the
 * backend's memory is not host memory, the other targets through @t_host (a batch of the largest
 * of them); @t_dst has lmn_dataset_get_n_targets(@ds) slots. */
gboolean lmn_train_load_eval_batch(LmnModel *model, const LmnDataset *ds, const guint32 *idx,
                                   gint64 n, float *x_host, void *y_host, void *t_host,
                                   void **t_dst, GError **error);
/* segmentation.c: finds the model's mask loss, if any (the epoch then reports a mean IoU). */
void lmn_train_setup_segmentation(LmnTrainer *t);
/* @ds's mean IoU of the mask loss (NAN for a model without one). */
gboolean lmn_train_evaluate_iou(LmnTrainer *t, const LmnDataset *ds, double *miou, GError **error);
/* Reads the one value of @t (a device-side accumulator) as a double. */
gboolean lmn_train_read_scalar(LmnTensor *t, double *out, GError **error);

/* ---- gradients.c ---- */

/* The slow path of the gradient guard, taken only once the squared global norm is not finite:
 * reads every parameter's gradient to the host to name the first layer whose gradient holds NaN
 * or an infinity, or, when every value is finite, the first whose squares overflow float.
 * @step is the step that made the gradient, or 0 when the norm was only read at the epoch's end
 * (a device backend).  Always returns FALSE with @error. */
gboolean lmn_train_non_finite_gradient(LmnTrainer *t, gint64 step, double norm_sq, GError **error);

/* Penalties, noise and clipping between backward and the optimizer (order documented in
 * LmnTrainConfig), and the guard on the gradient's norm.  @m is the batch size, for the loss
 * accumulator. */
gboolean lmn_train_process_gradients(LmnTrainer *t, gint64 m, GError **error);

/* Per-parameter views and scratch for penalties and noise. */
gboolean lmn_train_setup_gradients(LmnTrainer *t, GError **error);

/* ---- adversarial.c ---- */

/* The attack and its buffers for [train] adversarial (nothing without it); turns the model's
 * input gradients on, so it runs before lmn_model_prepare().  FALSE with an error naming
 * [train] adversarial for a model without class labels or with index inputs. */
gboolean lmn_train_setup_adversarial(LmnTrainer *t, GError **error);
void lmn_train_free_adversarial(LmnTrainer *t);
/* The attack, forwards and backwards of one adversarial-training step on the batch of @m samples in
 * the model's input tensor (@x and @labels: the same batch in host memory): the gradient left in
 * the model is that of w * J(x) + (1 - w) * J(x'), the loss sum and the correct count (of the
 * clean batch) are accumulated. */
gboolean lmn_train_adversarial_step(LmnTrainer *t, gint64 epoch, gint64 m, const float *x,
                                    const gint32 *labels, GError **error);

/* ---- regularisers.c ---- */

/* The moving average's tensor ([train] ema_decay), before a resume loads it. */
gboolean lmn_train_setup_ema(LmnTrainer *t, GError **error);
/* The max_norm rows and weight noise's buffers, once the gradient slots exist; FALSE with an
 * error naming the layer and key for max_norm on a layer without a weight matrix, or frozen. */
gboolean lmn_train_setup_regularisers(LmnTrainer *t, GError **error);
void lmn_train_free_regularisers(LmnTrainer *t);
/* Weight noise: the step's noise onto the trainable parameters (keeping the clean ones) before
 * the forward pass, and the clean parameters back after the backward pass. */
void lmn_train_weight_noise_add(LmnTrainer *t);
void lmn_train_weight_noise_remove(LmnTrainer *t);
/* After each optimizer update: the max_norm constraints, then the moving average. */
void lmn_train_after_update(LmnTrainer *t);
/* @ds's loss and accuracy with the averaged parameters (NAN, NAN without an average yet). */
gboolean lmn_train_evaluate_ema(LmnTrainer *t, const LmnDataset *ds, double *loss, double *acc,
                                GError **error);

/* ---- loop.c ---- */

/* The loss guard of a step: with a backend in host memory the loss is checked after every
 * forward (free there); FALSE with LMN_TRAIN_ERROR_NON_FINITE when it is not finite. */
gboolean lmn_train_check_loss(LmnTrainer *t, gint64 epoch, GError **error);

/* ---- output.c ---- */

/* Returns: FALSE with errno set when the write failed. */
gboolean lmn_train_csv_value(FILE *f, double v);

/* Opened at the first row, so a run that fails before finishing anything leaves an earlier
 * run's metrics.csv in the output directory as it was. */
FILE *lmn_train_open_metrics(LmnTrainer *t, GError **error);

/* Saves the run's whole state as OUTPUT/@name (atomically: an earlier file stays intact). */
gboolean lmn_train_save_checkpoint(LmnTrainer *t, const char *name, GError **error);

/* The output directory: created, locked against a second run, cleared of a killed run's
 * temporary files, and shown to be writable before the first epoch rather than after it. */
gboolean lmn_train_setup_output(LmnTrainer *t, GError **error);

/* ---- loop.c ---- */

/* Returns: the config name of @m ("val_loss", "val_accuracy"). */
const char *lmn_train_monitor_name(LmnMonitor m);

/* ---- data-parallel.c ---- */

/* With several ranks: checks that every rank runs the same job and that the batch divides,
 * broadcasts rank 0's weights, makes the gradient buckets and hooks them into backward.
 * Nothing with one rank. */
gboolean lmn_train_setup_data_parallel(LmnTrainer *t, GError **error);
void lmn_train_free_data_parallel(LmnTrainer *t);
/* This rank's contiguous slice [*first, *first + *count) of a global batch of @m samples. */
void lmn_train_slice(const LmnTrainer *t, gint64 m, gint64 *first, gint64 *count);
/* Before a step's backward: this rank trains on @local of the @global samples. */
void lmn_train_begin_gradients(LmnTrainer *t, gint64 local, gint64 global);
/* After backward: completes the sum of the gradient over the ranks (the global batch's mean),
 * then decides the loss guard (@loss: this rank's, NAN when not known) and a stop request
 * together.  Nothing with one rank. */
gboolean lmn_train_reduce_gradients(LmnTrainer *t, double loss, GError **error);
/* Sums @n figures (loss sums, counts) over the ranks, in double. */
gboolean lmn_train_reduce_figures(LmnTrainer *t, double *values, guint n, GError **error);
/* lmn_evaluate_full() of @ds, each rank evaluating its contiguous share and the sums reduced,
 * so every rank gets the global figures. */
gboolean lmn_train_evaluate_split(LmnTrainer *t, const LmnDataset *ds, double *loss, double *acc,
                                  double *losses, GError **error);
