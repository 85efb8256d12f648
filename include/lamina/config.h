/* Lamina — model and training configuration.
 *
 * A config is an INI file parsed with GKeyFile (see DESIGN §5 and the README): [model],
 * [layer NAME] groups in file order, [optimizer], [schedule], [train], [data], and optionally
 * [augment].  Loading only parses; lmn_config_validate() checks every group and key against
 * the core's schemas and each plugin's schema, and only then are the typed accessors
 * meaningful.  Messages name the file, the group and the key, say what was expected, and suggest
 * the closest known name.
 */
#pragma once

#include <lamina/augment.h>
#include <lamina/layer.h>
#include <lamina/params.h>
#include <lamina/registry.h>
#include <lamina/schedule.h>

G_BEGIN_DECLS

typedef struct _LmnConfig LmnConfig;

/**
 * LmnLayerConfig:
 * One validated [layer NAME] group.
 * @inputs: NULL-terminated input node names ("input" = the data, "labels" = the targets)
 * @init_keys, @init_values: the NAME_init and NAME_init.KEY keys, NULL-terminated
 * @where: "FILE:LINE [layer NAME]" for messages (the line of the group header)
 */
typedef struct {
    char *name;
    char *type;
    char **inputs;
    LmnParams *params;
    char **init_keys;
    char **init_values;
    char *where;
    /* appended: the effective L1/L2 penalty coefficients of this layer's weights (its `l1`/`l2`
     * keys, else [train] l1/l2); core keys like type and input, never passed to the plugin */
    double l1;
    double l2;
    /* appended: fine-tuning.  @trainable FALSE freezes the layer's parameters (no update, no
     * gradient); @lr_mult scales their learning rate (0 leaves them as they are, like a frozen
     * layer, but their gradient is still computed); @tuning_where is "FILE:LINE [layer NAME]
     * KEY" of the first of the two keys the group sets, NULL when it sets neither (the model
     * refuses them on a layer without parameters, naming that place) */
    gboolean trainable;
    double lr_mult;
    char *tuning_where;
    /* appended: several losses.  For a loss layer, @loss_weight (>= 0, default 1) weighs it in
     * the model's loss, the sum of weight * loss, and @target names the dataset of the split it
     * compares against ("y" by default; its implicit last input is then "labels", for another
     * dataset LMN_CONFIG_TARGET_PREFIX NAME).  @target is NULL for other layers.
     * @loss_where is "FILE:LINE [layer NAME] KEY" of the first of the two keys the group sets,
     * NULL when it sets neither. */
    double loss_weight;
    char *target;
    char *loss_where;
    /* appended: training-loop regularisers.  @max_norm > 0 rescales, after every step, each
     * output unit's incoming weight vector (each row of a weight parameter viewed as
     * [dims[0], rest]) whose L2 norm exceeds it to that norm, as torch.renorm(p=2, dim=0) and
     * Keras' MaxNorm; @activity_l1 / @activity_l2 add activity_l1 * sum |a| and activity_l2 *
     * sum a^2 of the layer's output a, divided by the batch size, to the training loss (as Keras'
     * activity_regularizer); 0 = off.  @reg_where is "FILE:LINE [layer NAME] KEY" of the first of
     * them the group sets (NULL when none), for the model's and the trainer's messages. */
    double max_norm;
    double activity_l1;
    double activity_l2;
    char *reg_where;
} LmnLayerConfig;

/* The input name of a loss's target node for a dataset other than y: "target:NAME" (layer names
 * cannot hold ':', so it never names a layer). */
#define LMN_CONFIG_TARGET_PREFIX "target:"

/** LmnMonitor: the validation metric early stopping and best.h5 follow.  Stored: explicit. */
typedef enum {
    LMN_MONITOR_VAL_LOSS = 0,     /* lower is better */
    LMN_MONITOR_VAL_ACCURACY = 1, /* higher is better (needs class labels) */
} LmnMonitor;

/** LmnAdversarial: adversarial training ([train] adversarial).  Stored: explicit. */
typedef enum {
    LMN_ADVERSARIAL_NONE = 0,
    LMN_ADVERSARIAL_FGSM = 1, /* one step of size adversarial_eps */
    LMN_ADVERSARIAL_PGD = 2,  /* adversarial_steps projected steps of size adversarial_alpha */
} LmnAdversarial;

/**
 * LmnTrainConfig:
 * The validated [train] and [data] groups.
 */
typedef struct {
    gint64 epochs;
    gint64 batch_size;
    guint64 seed;
    gboolean shuffle;
    gint64 max_steps;
    char *backend; /* "auto", "cpu", "vulkan", or any backend plugin */
    char *device;  /* NULL = the backend's default */
    gint64 checkpoint_every; /* epochs; 0 = only the final checkpoint */
    char *train_data;
    char *test_data;       /* NULL when absent */
    char *validation_data; /* NULL when absent */
    double validation_split;
    /* appended: gradient processing, applied each step in this order after backward:
     * penalties, noise, clip_norm, clip_value (so the update never sees a gradient outside the
     * clip bounds) */
    double clip_norm;        /* 0 = off; torch.nn.utils.clip_grad_norm_ (eps 1e-6) */
    double clip_value;       /* 0 = off; clamp to [-clip_value, clip_value] */
    double grad_noise;       /* sigma_0; 0 = off; sigma_t = sigma_0 / (1 + t)^gamma */
    double grad_noise_gamma; /* default 0.55 */
    double l1;               /* default L1 coefficient of every layer (LmnLayerConfig.l1) */
    double l2;               /* default L2 coefficient: loss += l2/2 ||w||^2, grad += l2 w */
    gboolean penalize_bias;  /* penalise LMN_PARAM_ROLE_BIAS parameters too */
    gint64 early_stopping_patience; /* epochs without improvement before stopping; 0 = off */
    double early_stopping_min_delta; /* an improvement must exceed this */
    LmnMonitor monitor;
    gboolean restore_best; /* on an early stop, go back to the best epoch's weights */
    /* appended: [data] memory_budget_mb, the budget for decoding the training split into memory
     * (lmn_dataset_open_with_budget); a larger split streams from its file.  0 = the default
     * (LAMINA_DATA_BUDGET, else 2048) */
    double memory_budget_mb;
    /* appended: [train] lsuv, lsuv_tol, lsuv_max_iter: LSUV initialisation before training
     * (lmn_model_lsuv), skipped when weights come from --init or --resume */
    gboolean lsuv;
    double lsuv_tol;      /* > 0; default 0.1 */
    gint64 lsuv_max_iter; /* default 10; 0 = orthogonal weights only */
    /* appended: [train] adversarial training (Goodfellow et al. 2015): each step trains on
     * J~ = w * J(x) + (1 - w) * J(x'), where x' is the batch attacked (attack.h, evaluation
     * mode) with the step's weights.  @adversarial_alpha is NAN for PGD's default
     * 2.5 * eps / steps; the clip bounds are -INFINITY / INFINITY without adversarial_clip. */
    LmnAdversarial adversarial;
    double adversarial_eps;      /* > 0 when adversarial is on */
    gint64 adversarial_steps;    /* PGD's steps, default 10 */
    double adversarial_alpha;    /* PGD's step size */
    double adversarial_clip_min; /* the valid input range */
    double adversarial_clip_max;
    double adversarial_weight;         /* w, in [0, 1]; default 0.5 */
    gboolean adversarial_random_start; /* PGD from a uniform point of the eps-ball */
    /* appended: [train] weight_noise = sigma adds N(0, sigma^2) noise to the trainable
     * parameters for each step's forward and backward passes only (Graves 2011): the gradient
     * is taken at the noisy weights and applied to the clean ones.  0 = off. */
    double weight_noise;
    /* appended: [train] ema_decay = d keeps an exponential moving average of the parameters,
     * ema = d * ema + (1 - d) * params after every step (the first step copies them, as
     * torch.optim.swa_utils.AveragedModel and Keras' use_ema do), saved under /ema of every
     * checkpoint and evaluated next to the live weights.  0 = off; in [0, 1). */
    double ema_decay;
    /* appended: [train] top_k = K also reports the top-K accuracy of the validation and test
     * splits (val_topK_accuracy in metrics.csv); 0 = off */
    gint64 top_k;
    /* appended: data-parallel runs (docs/distributed.md) */
    double bucket_mib;   /* gradient all-reduce bucket size in MiB; default 25 */
    double comm_timeout; /* seconds a rank waits for another before it fails; default 300 */
    /* appended: [train] threads, the CPU backend's thread count for every op, GEMM included
     * (lmn_backend_new_for_config_threads); 0 = LAMINA_NUM_THREADS, else one per usable core */
    gint64 threads;
} LmnTrainConfig;

/**
 * lmn_config_new_from_file:
 * Returns: (transfer full): the parsed (not yet validated) config, or NULL with
 *   LMN_CONFIG_ERROR_PARSE naming the file (and GKeyFile's line information)
 */
LmnConfig *lmn_config_new_from_file(const char *path, GError **error);
/**
 * lmn_config_new_from_data:
 * @name: what messages call it (a path, or "checkpoint.h5:/config")
 */
LmnConfig *lmn_config_new_from_data(const char *text, gssize length, const char *name,
                                    GError **error);
/** lmn_config_free: frees the config. */
void lmn_config_free(LmnConfig *cfg);
/** lmn_config_get_name: Returns: (transfer none): the file name used in messages. */
const char *lmn_config_get_name(const LmnConfig *cfg);
/**
 * lmn_config_dup_where:
 * @group: the group as the file names it: "train", "layer fc1"
 * @key: (nullable): a key of @group, or NULL for the group itself
 *
 * The place of a group or a key for messages: "model.ini:12 [train]" with the line the key (or
 * the group's header) stands on, or "model.ini [train]" for what has no line (a value set by
 * lmn_config_set(), a group the file does not have).  Callers append the key's name.
 *
 * Returns: (transfer full): the place
 */
char *lmn_config_dup_where(const LmnConfig *cfg, const char *group, const char *key);

/**
 * lmn_config_set:
 * @assignment: "GROUP.KEY=VALUE"; GROUP is model, optimizer, schedule, train, data, augment, or
 *   a layer's name
 * Applies a command-line override (validated later with everything else).
 * Returns: FALSE with LMN_CONFIG_ERROR_INVALID for a malformed assignment or an unknown layer
 */
gboolean lmn_config_set(LmnConfig *cfg, const char *assignment, GError **error);
/** lmn_config_set_value: sets GROUP.KEY directly (group as in lmn_config_set). */
gboolean lmn_config_set_value(LmnConfig *cfg, const char *group, const char *key,
                              const char *value, GError **error);
/**
 * lmn_config_replace_optimizer:
 * Sets the optimizer type to @name and drops the keys @name's schema does not declare, printing
 * one notice line per dropped key to stderr (so `--optimizer adam` works on an SGD config).
 * Returns: FALSE with LMN_PLUGIN_ERROR_NOT_FOUND when @name is not a registered optimizer
 */
gboolean lmn_config_replace_optimizer(LmnConfig *cfg, LmnRegistry *registry, const char *name,
                                      GError **error);
/**
 * lmn_config_validate:
 * Validates every group and key against the core and plugin schemas.
 * Returns: FALSE with a LMN_CONFIG_ERROR or LMN_PLUGIN_ERROR naming file, group and key
 */
gboolean lmn_config_validate(LmnConfig *cfg, LmnRegistry *registry, GError **error);
/** lmn_config_to_data: Returns: (transfer full): the config as INI text (for checkpoints). */
char *lmn_config_to_data(const LmnConfig *cfg);

/* ---- after a successful lmn_config_validate ---- */

/** lmn_config_get_input_shape: Returns: (transfer none): the per-sample input shape. */
const LmnShape *lmn_config_get_input_shape(const LmnConfig *cfg);
/** lmn_config_get_n_layers: Returns: number of layers. */
guint lmn_config_get_n_layers(const LmnConfig *cfg);
/**
 * lmn_config_get_n_targets:
 * Returns: the number of distinct target datasets the losses read, counting y always (so >= 1)
 */
guint lmn_config_get_n_targets(const LmnConfig *cfg);
/**
 * lmn_config_get_target_name:
 * Target 0 is "y"; the others are the losses' other `target` datasets, each once, in the order
 * of the first loss naming it.
 * Returns: (transfer none) (nullable): the name, NULL when @index >= lmn_config_get_n_targets()
 */
const char *lmn_config_get_target_name(const LmnConfig *cfg, guint index);
/** lmn_config_get_layer: Returns: (transfer none): layer @index in file order. */
const LmnLayerConfig *lmn_config_get_layer(const LmnConfig *cfg, guint index);
/** lmn_config_get_optimizer_type: Returns: (transfer none): the optimizer's name. */
const char *lmn_config_get_optimizer_type(const LmnConfig *cfg);
/** lmn_config_get_optimizer_params: Returns: (transfer none): its validated hyperparameters. */
const LmnParams *lmn_config_get_optimizer_params(const LmnConfig *cfg);
/** lmn_config_get_schedule_type: Returns: (transfer none): the schedule ("constant" if none). */
const char *lmn_config_get_schedule_type(const LmnConfig *cfg);
/** lmn_config_get_schedule_params: Returns: (transfer none): its validated keys. */
const LmnParams *lmn_config_get_schedule_params(const LmnConfig *cfg);
/** lmn_config_get_schedule_common: Returns: (transfer none): unit and warm-up. */
const LmnScheduleCommon *lmn_config_get_schedule_common(const LmnConfig *cfg);
/** lmn_config_get_train: Returns: (transfer none): the [train] and [data] settings. */
const LmnTrainConfig *lmn_config_get_train(const LmnConfig *cfg);
/**
 * lmn_config_get_augment:
 * The optional [augment] group (augment.h), applied to training batches only.
 * Returns: (transfer none): its settings; all zero (nothing enabled) when the group is absent
 */
const LmnAugmentConfig *lmn_config_get_augment(const LmnConfig *cfg);

G_END_DECLS
