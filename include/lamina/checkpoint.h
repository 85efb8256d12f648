/* Lamina — checkpoints in HDF5 (DESIGN §5).
 *
 *   /                          attrs format = "lamina-checkpoint", format_version, lamina_version
 *   /config                    the full config text
 *   /model/<layer>/<param>     float32, PyTorch names and shapes (also buffers)
 *   /optimizer                 attrs type, plugin_version, every hyperparameter, step, host state
 *   /optimizer/state/<layer>/<param>/<slot>
 *   /train                     attrs epoch, step, seed, best_metric, best_epoch, schedule state,
 *                              epoch_samples, wait, stopped_early, monitor; with --init also
 *                              init_from, init_partial, init_loaded, init_skipped,
 *                              init_skipped_names (see LmnTrainState)
 *   /train/best/<layer>/<name> (only with early stopping and restore_best) the best epoch's
 *                              parameters and buffers, to restore them after a resumed run
 *   /ema/<layer>/<param>       (only with [train] ema_decay) the parameters' moving average,
 *                              PyTorch names and shapes like /model (parameters only: buffers
 *                              such as running statistics are the live ones under /model)
 *   /plugins/layers/<layer>    attrs type, plugin, version: the plugin that provided each
 *   /plugins/initializers/<layer>.<param>, /plugins/optimizer, /plugins/schedule  likewise
 *   /data                      (written by `lamina train` since predict existed) the training
 *                              split's preprocessing, for `lamina predict`: attrs scale (double),
 *                              mean and std (double arrays, one value or one per channel; absent
 *                              = 0 and 1), x_dtype ("uint8" or "float"), source (the [data] train
 *                              spec) and, when y had them, classes (string array, name i for
 *                              label i).  Decoded input = (raw * scale - mean[c]) / std[c].
 *
 * Exact resume needs no random-number state: every random stream is a pure function of (seed,
 * stream) — the shuffle permutation of epoch E is Philox stream LMN_STREAM(SHUFFLE, E), the
 * gradient noise of step S is LMN_STREAM(NOISE, S), dropout masks depend on (seed, step) — so
 * epoch, step and epoch_samples (the samples of the current permutation already trained) place a
 * resumed run exactly where the interrupted one stopped.
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
    /* appended */
    gint64 epoch_samples;   /* samples of epoch `epoch` already trained (0 at an epoch boundary) */
    gint64 wait;            /* completed epochs since the monitored metric last improved */
    gboolean stopped_early; /* early stopping ended the run */
    LmnMonitor monitor;     /* the metric best_metric measures */
    /* (nullable, borrowed) backend copies of the best epoch's weights, saved to and loaded from
     * /train/best when has_best_weights: @best_params is laid out like the model's flat
     * parameter tensor, @best_buffers holds every buffer back to back in layer order */
    LmnTensor *best_params;
    LmnTensor *best_buffers;
    gboolean has_best_weights;
    /* appended: where the run's first weights came from (--init), kept by every checkpoint of
     * the run and by --resume, so a fine-tuned model says what it was fine-tuned from.
     * @init_from is NULL without --init (no attributes are written).  The strings are owned by
     * the state: lmn_checkpoint_load_training() replaces them, lmn_train_state_clear_init()
     * frees them. */
    char *init_from;          /* the --init path as given */
    gboolean init_partial;    /* --init-partial: mismatching tensors kept their initialisation */
    gint64 init_loaded;       /* parameters and buffers loaded from @init_from */
    gint64 init_skipped;      /* those left to their initializers (0 without --init-partial) */
    char *init_skipped_names; /* "LAYER.NAME, ..." of the skipped ones, "" when none */
    /* appended: (nullable, borrowed) the training split, whose decoding and class names
     * lmn_checkpoint_save() records in /data, so that `lamina predict` preprocesses images as
     * the model was trained; NULL writes no /data */
    const LmnDataset *train_data;
    /* appended: (nullable, borrowed) the parameters' exponential moving average ([train]
     * ema_decay), laid out like the model's flat parameter tensor; saved as /ema/<layer>/<param>
     * when @has_ema, and loaded from there by lmn_checkpoint_load_training() (which sets
     * @has_ema when the file has it) */
    LmnTensor *ema_params;
    gboolean has_ema;
} LmnTrainState;

/**
 * LmnCheckpointData:
 * What a checkpoint's /data group records of the training split (see the top comment).
 * @scale: x's scale (1 when the split had none)
 * @mean, @std: (nullable): @n_mean / @n_std values (one, or one per channel); NULL: 0 and 1
 * @classes: (nullable): NULL-terminated class names, name i for label i
 * @source: (nullable): the training split, "FILE:/split" as the config named it
 * @is_uint8: whether the split's x was uint8 (pixels)
 */
typedef struct {
    double scale;
    double *mean, *std;
    gsize n_mean, n_std;
    char **classes;
    char *source;
    gboolean is_uint8;
} LmnCheckpointData;

/** lmn_checkpoint_data_clear: frees @data's members and resets it to scale 1, nothing else. */
void lmn_checkpoint_data_clear(LmnCheckpointData *data);
/**
 * lmn_checkpoint_data_from_dataset:
 * Fills @data (which it first clears) from @ds's decoding attributes and class names; @source is
 * lmn_dataset_get_spec(@ds).
 */
void lmn_checkpoint_data_from_dataset(LmnCheckpointData *data, const LmnDataset *ds);
/**
 * lmn_checkpoint_read_data:
 * @data_out: (out caller-allocates): filled when the checkpoint has /data; clear it with
 *   lmn_checkpoint_data_clear()
 * Returns: TRUE with *@found_out TRUE when /data was read, TRUE with *@found_out FALSE for a
 *   checkpoint written before /data existed, FALSE with LMN_CHECKPOINT_ERROR_OPEN / _FORMAT
 */
gboolean lmn_checkpoint_read_data(const char *path, LmnCheckpointData *data_out,
                                  gboolean *found_out, GError **error);

/** lmn_train_state_clear_init: frees @state's --init record and sets it to "none". */
void lmn_train_state_clear_init(LmnTrainState *state);

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
/* The largest /train epoch and step counters (and /optimizer step) a checkpoint may hold: no
 * real run comes near them, and below them the training loop's arithmetic (step + 1,
 * epoch * steps_per_epoch, the schedule's step as a double) cannot overflow or round. */
#define LMN_CHECKPOINT_MAX_EPOCH G_MAXINT32
#define LMN_CHECKPOINT_MAX_STEP (G_GINT64_CONSTANT(1) << 53)

/**
 * LmnCheckpointLoadFlags:
 * @LMN_CHECKPOINT_LOAD_DEFAULT: load the values as they are
 * @LMN_CHECKPOINT_LOAD_REQUIRE_FINITE: refuse a tensor holding NaN or an infinity
 *   (LMN_CHECKPOINT_ERROR_NON_FINITE, naming it and counting them); training sets it unless
 *   `--allow-nonfinite` is given
 * @LMN_CHECKPOINT_LOAD_EMA: take the parameters from /ema instead of /model (buffers still come
 *   from /model): the moving average of a run with [train] ema_decay, as `lamina eval --ema`
 *   does; a file without /ema is LMN_CHECKPOINT_ERROR_MISMATCH
 */
typedef enum {
    LMN_CHECKPOINT_LOAD_DEFAULT = 0,
    LMN_CHECKPOINT_LOAD_REQUIRE_FINITE = 1 << 0,
    LMN_CHECKPOINT_LOAD_EMA = 1 << 1,
} LmnCheckpointLoadFlags;

/**
 * lmn_checkpoint_load_weights:
 * Loads /model/<layer>/<param> (and buffers) into @model, checking every shape; the values are
 * taken as they are (lmn_checkpoint_load_weights_full() with LMN_CHECKPOINT_LOAD_DEFAULT).
 * Returns: FALSE with LMN_CHECKPOINT_ERROR_MISMATCH naming the first missing or misshapen
 *   parameter and the expected shape, leaving @model's values unchanged
 */
gboolean lmn_checkpoint_load_weights(const char *path, LmnModel *model, GError **error);
/**
 * lmn_checkpoint_load_weights_full:
 * As lmn_checkpoint_load_weights(), with @flags.
 * Returns: FALSE as lmn_checkpoint_load_weights(), or with LMN_CHECKPOINT_ERROR_NON_FINITE
 *   under LMN_CHECKPOINT_LOAD_REQUIRE_FINITE, leaving @model's values unchanged
 */
gboolean lmn_checkpoint_load_weights_full(const char *path, LmnModel *model,
                                          LmnCheckpointLoadFlags flags, GError **error);
/**
 * LmnCheckpointSkipReason:
 * @LMN_CHECKPOINT_SKIP_MISSING: the file has no /model/LAYER/NAME
 * @LMN_CHECKPOINT_SKIP_SHAPE: the file's tensor has another shape
 */
typedef enum {
    LMN_CHECKPOINT_SKIP_MISSING = 0,
    LMN_CHECKPOINT_SKIP_SHAPE = 1,
} LmnCheckpointSkipReason;

/** LmnCheckpointSkipped: one model tensor lmn_checkpoint_load_weights_partial() left alone. */
typedef struct {
    char *layer;
    guint layer_index;  /* the layer's index in the model (lmn_model_get_layer) */
    char *name;         /* the parameter's or buffer's name */
    gboolean is_buffer; /* a buffer (running statistics), else parameter @index */
    guint index;        /* the index within the layer's parameters or buffers */
    LmnCheckpointSkipReason reason;
    LmnShape file_shape; /* with LMN_CHECKPOINT_SKIP_SHAPE: the file's shape */
    LmnShape shape;      /* the model's shape */
} LmnCheckpointSkipped;

/** LmnCheckpointLoadReport: what lmn_checkpoint_load_weights_partial() loaded and skipped. */
typedef struct {
    guint n_loaded;
    GPtrArray *skipped; /* LmnCheckpointSkipped, in model order */
} LmnCheckpointLoadReport;

/** lmn_checkpoint_load_report_free: frees @report (NULL is ignored). */
void lmn_checkpoint_load_report_free(LmnCheckpointLoadReport *report);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LmnCheckpointLoadReport, lmn_checkpoint_load_report_free)

/**
 * lmn_checkpoint_load_weights_partial:
 * @report: (out) (transfer full): what was loaded and what was skipped
 * Loads every parameter and buffer of @model whose /model/LAYER/NAME exists in @path with the
 * same shape, and leaves the others as they are (fine-tuning with a new head: the caller
 * initialised them and reports @report's skipped ones).  Tensors are read and, under
 * LMN_CHECKPOINT_LOAD_REQUIRE_FINITE, checked as lmn_checkpoint_load_weights_full() does.
 * Returns: FALSE with LMN_CHECKPOINT_ERROR_MISMATCH when nothing fits (the message names what
 *   the file holds and what the model has), or an error of a tensor that could not be read or
 *   is not finite; @model's values are unchanged then
 */
gboolean lmn_checkpoint_load_weights_partial(const char *path, LmnModel *model,
                                             LmnCheckpointLoadFlags flags,
                                             LmnCheckpointLoadReport **report, GError **error);
/**
 * lmn_checkpoint_load_training:
 * Loads optimizer state (slots laid out like @model's parameters), schedule state and counters
 * for --resume.  A different optimizer type
 * is LMN_CHECKPOINT_ERROR_OPTIMIZER unless @reset_optimizer (then the optimizer starts fresh).
 * When @state->best_params is set (the caller allocated it like the flat parameters, and
 * best_buffers for the buffers) and the file has /train/best, the best weights are loaded into
 * them and has_best_weights is set; otherwise has_best_weights is cleared.  With
 * LMN_CHECKPOINT_LOAD_REQUIRE_FINITE in @flags, slots and best weights holding NaN or an
 * infinity are refused.  The --init record of /train replaces @state's (none when absent;
 * counts out of range are LMN_CHECKPOINT_ERROR_FORMAT).  Counters out of range (negative, an epoch
 * beyond LMN_CHECKPOINT_MAX_EPOCH, a step beyond LMN_CHECKPOINT_MAX_STEP, a best epoch or wait
 * beyond the epoch) are LMN_CHECKPOINT_ERROR_FORMAT.  Nothing is written unless everything was
 * read.
 */
gboolean lmn_checkpoint_load_training(const char *path, LmnModel *model, LmnOptimizer *opt,
                                      LmnSchedule *sched, LmnTrainState *state,
                                      gboolean reset_optimizer, LmnCheckpointLoadFlags flags,
                                      GError **error);

/**
 * LmnCheckpointPlugin:
 * @kind: "layer", "initializer", "optimizer" or "schedule"
 * @name: the component: a layer's name, "LAYER.PARAM" for an initializer, else @kind
 * @type: the registered type it was ("dense", "he_uniform", "adam")
 * @plugin, @version: the plugin that provided @type when the checkpoint was written
 */
typedef struct {
    char *kind;
    char *name;
    char *type;
    char *plugin;
    char *version;
} LmnCheckpointPlugin;
/** lmn_checkpoint_plugin_free: frees @plugin. */
void lmn_checkpoint_plugin_free(LmnCheckpointPlugin *plugin);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LmnCheckpointPlugin, lmn_checkpoint_plugin_free)
/**
 * lmn_checkpoint_read_plugins:
 * Returns: (transfer full) (element-type LmnCheckpointPlugin): which plugin and version provided
 *   each layer, initializer, the optimizer and the schedule (/plugins; empty for files written
 *   before it was recorded or by other tools), or NULL with LMN_CHECKPOINT_ERROR_OPEN or _FORMAT
 */
GPtrArray *lmn_checkpoint_read_plugins(const char *path, GError **error);
/**
 * lmn_checkpoint_explain_missing:
 * For a checkpoint whose config names a type @registry does not have: the first recorded
 * component whose type is not registered, as "PATH: layer 'fc1' is a 'TYPE' from plugin 'NAME'
 * VERSION, which is not available here; install that plugin, or point --plugin-path at the
 * directory that holds it".
 * Returns: (transfer full) (nullable): the sentence, or NULL when every recorded type is
 *   registered or nothing is recorded
 */
char *lmn_checkpoint_explain_missing(const char *path, LmnRegistry *registry);

/**
 * lmn_checkpoint_describe:
 * Summarises a checkpoint for people (`lamina inspect`): format and version, the model's layers
 * (in config order) with each parameter's shape and count, the optimizer's type,
 * hyperparameters, step and slots, the training counters, and the config text.  Works without
 * plugins, and on weight files written by other tools (/model only).
 * Returns: (transfer full): the text, or NULL with LMN_CHECKPOINT_ERROR_OPEN (missing, not HDF5,
 *   truncated) or _FORMAT (neither a Lamina checkpoint nor a /model group)
 */
char *lmn_checkpoint_describe(const char *path, GError **error);

G_END_DECLS
