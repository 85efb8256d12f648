/* Lamina — optimizers.
 *
 * An optimizer plugin declares its hyperparameters (PyTorch's names), its per-parameter state
 * slots (PyTorch's names: "momentum_buffer", "exp_avg", ...), and an element-wise update kernel
 * over (param, grad, slot 0, slot 1, ...).  Once per step the core calls prepare(), which turns
 * hyperparameters, the scheduled learning rate and the step number into the kernel's scalar
 * block (bias corrections and the like are computed there, in double).  The core keeps all
 * parameters, gradients and each slot in flat tensors, so one launch updates the whole model.
 *
 * Hyperparameters arrive as data every step, so schedules never rebuild anything.
 */
#pragma once

#include <lamina/kernel.h>
#include <lamina/params.h>
#include <lamina/registry.h>

G_BEGIN_DECLS

/**
 * LmnOptimizerVTable:
 * @slots: NULL-terminated state slot names; each slot has the shape of its parameter
 * @update: the element-wise kernel; buffers: param (rw), grad (r), then one per slot (rw)
 * @n_host_state: doubles of optimizer-wide state kept on the host between steps and saved in
 *   checkpoints (e.g. NAdam's running product of momentum factors); may be 0
 * @host_state_names: NULL-terminated names of those doubles (checkpoint attributes)
 * @prepare: fills @scalars (kernel->n_scalars floats) for step @step (1 for the first update)
 *   with learning rate @lr; may update @host_state
 * @slot_initial_value: (optional) initial value of slot @slot; NULL means 0 for every slot
 * @validate: (optional) checks relations between hyperparameters that a per-key schema cannot
 *   express (SGD: nesterov needs momentum > 0 and dampening = 0); sets a
 *   LMN_CONFIG_ERROR_INVALID error naming the keys.  Called before training starts.
 * @flags: (ABI 1.6) #LmnOptimizerFlags
 * @grad_scale_scalar: (ABI 1.6) with LMN_OPTIMIZER_FLAG_GRAD_SCALE, the index in the scalar
 *   block of the factor the kernel multiplies every gradient element by before any other use
 *   of it (`g = grad[i] * scalars[grad_scale_scalar]`, one float32 rounding, as PyTorch's
 *   clip_grad_norm_ scales the gradients in place); prepare() sets it to 1 and the core then
 *   writes the step's factor there (lmn_optimizer_set_grad_scale()), so gradient clipping by norm
 *   costs no pass of its own over the gradients
 */
typedef struct {
    guint32 struct_size;
    const char *const *slots;
    const LmnKernelDesc *update;
    guint n_host_state;
    const char *const *host_state_names;
    void (*prepare)(const LmnParams *hyper, double lr, gint64 step, double *host_state,
                    float *scalars);
    double (*slot_initial_value)(const LmnParams *hyper, guint slot);
    gboolean (*validate)(const LmnParams *hyper, GError **error);
    guint32 flags;
    guint grad_scale_scalar;
} LmnOptimizerVTable;

/**
 * LmnOptimizerFlags:
 * @LMN_OPTIMIZER_FLAG_GRAD_SCALE: the update kernel reads its gradients scaled by the scalar
 *   at #LmnOptimizerVTable.grad_scale_scalar (ABI 1.6)
 */
typedef enum {
    LMN_OPTIMIZER_FLAG_NONE = 0,
    LMN_OPTIMIZER_FLAG_GRAD_SCALE = 1 << 0,
} LmnOptimizerFlags;

/* ---- the core's optimizer object (used by the training loop, custom loops, tools, tests) ---- */

typedef struct _LmnOptimizer LmnOptimizer;
typedef struct _LmnRegistry LmnRegistry;
typedef struct _LmnTensor LmnTensor;
typedef struct _LmnModel LmnModel;
typedef struct _LmnConfig LmnConfig;

/**
 * lmn_optimizer_new:
 * @type: a registered optimizer name
 * @hyper: hyperparameters validated against the feature's schema (must contain "lr")
 * @params: the flat parameter tensor, @grads: the flat gradient tensor (same shape)
 * Allocates every state slot like @params, filled with its initial value.
 * Returns: (transfer full): the optimizer, or NULL with @error
 */
LmnOptimizer *lmn_optimizer_new(LmnRegistry *registry, const char *type, const LmnParams *hyper,
                                LmnTensor *params, LmnTensor *grads, GError **error);
/** lmn_optimizer_free: frees the optimizer and its state tensors. */
void lmn_optimizer_free(LmnOptimizer *opt);
/** lmn_optimizer_step: one update with learning rate @lr: step += 1, prepare, one launch
 * (one per range with lmn_optimizer_set_ranges()). */
void lmn_optimizer_step(LmnOptimizer *opt, double lr);

/**
 * lmn_optimizer_set_grad_scale:
 * @scale: a finite factor >= 0
 * Makes the next lmn_optimizer_step() (and only that one) update with every gradient multiplied
 * by @scale, the coefficient clip_grad_norm_ computes.  An optimizer with
 * LMN_OPTIMIZER_FLAG_GRAD_SCALE does the multiplication in its update kernel and leaves the
 * gradient tensor as it is; for one without it the step first scales the gradient tensor in
 * place (lmn_op_axpby), as clipping always did.  The updated parameters and state are the same
 * bits either way.  @scale 1 (the default) multiplies nothing.
 */
void lmn_optimizer_set_grad_scale(LmnOptimizer *opt, float scale);
/**
 * lmn_optimizer_fuses_grad_scale:
 * Returns: whether @opt's kernel applies lmn_optimizer_set_grad_scale() itself
 *   (LMN_OPTIMIZER_FLAG_GRAD_SCALE), with no pass over the gradients
 */
gboolean lmn_optimizer_fuses_grad_scale(const LmnOptimizer *opt);

/**
 * LmnOptimizerRange:
 * @offset, @numel: elements of the flat tensors the range covers
 * @lr_mult: the range learns at @lr_mult times the step's learning rate (> 0)
 */
typedef struct {
    gint64 offset;
    gint64 numel;
    double lr_mult;
} LmnOptimizerRange;

/**
 * lmn_optimizer_set_ranges:
 * @ranges: (array length=n_ranges): ranges in increasing order that do not overlap
 *
 * Restricts every later step to @ranges, like PyTorch's parameter groups: each step launches the
 * update once per range, with prepare() run for the range's lr_mult * lr; elements outside every
 * range (frozen parameters) keep their values and their state byte for byte.  The step counter
 * still counts one per lmn_optimizer_step(), and the host state advances once per step: each
 * range's prepare() starts from the state before the step, and the last range's result is kept
 * (an optimizer's host state must not depend on lr).  Without a call, a step is one launch over
 * every element.  A device backend binds a range's views directly only at offsets that are
 * multiples of its binding alignment (the model's parameters start on 64-byte boundaries).
 * n_ranges = 0 freezes everything.
 */
void lmn_optimizer_set_ranges(LmnOptimizer *opt, const LmnOptimizerRange *ranges, guint n_ranges);
/**
 * lmn_optimizer_set_model_ranges:
 * @model: the model whose flat tensors @opt was made for
 * @cfg: the config @model was built from (its [layer] trainable and lr_mult)
 * Applies per-layer learning rates as `lamina train` does: each layer owns the flat tensors from
 * its first parameter to the next layer's (padding included, whose gradient is 0), neighbours
 * with the same multiplier share a range, frozen layers (trainable = false) and lr_mult = 0 have
 * none.  When every layer learns at lr_mult 1 the optimizer keeps its single launch over
 * everything (no call to lmn_optimizer_set_ranges()).
 */
void lmn_optimizer_set_model_ranges(LmnOptimizer *opt, LmnModel *model, const LmnConfig *cfg);
/**
 * lmn_optimizer_new_for_model:
 * @type: (nullable): a registered optimizer name; NULL takes @cfg's [optimizer] type
 * @hyper: (nullable): hyperparameters validated against @type's schema (must contain "lr");
 *   NULL takes @cfg's validated [optimizer] keys (lmn_config_get_optimizer_params()), which is
 *   how a custom loop reads `[optimizer] type = adam, lr = 0.0002, beta1 = 0.5` from the
 *   same INI file as the model; with @type given and @hyper NULL, @type must be @cfg's type
 * @model: the model to optimise (its flat parameters and gradients)
 * @cfg: the validated config @model was built from
 * The optimizer a custom training loop needs, made exactly as `lamina train` makes its own:
 * lmn_optimizer_new() over lmn_model_get_params() and lmn_model_get_grads(), then
 * lmn_optimizer_set_model_ranges().  A step is then lmn_model_zero_grads() (for
 * lmn_model_backward_from()), backward, lmn_optimizer_step(); its state is saved with
 * lmn_checkpoint_save() and restored with lmn_checkpoint_load_training().
 * Returns: (transfer full): the optimizer, or NULL with @error (LMN_CONFIG_ERROR_INVALID when
 *   @hyper is NULL and @type is not @cfg's optimizer, or lmn_optimizer_new()'s errors)
 */
LmnOptimizer *lmn_optimizer_new_for_model(LmnRegistry *registry, const char *type,
                                          const LmnParams *hyper, LmnModel *model,
                                          const LmnConfig *cfg, GError **error);
/** lmn_optimizer_get_n_launches: Returns: update kernels launched so far (a test hook: one per
 * step without ranges). */
guint64 lmn_optimizer_get_n_launches(const LmnOptimizer *opt);
/** lmn_optimizer_get_step: Returns: updates done so far. */
gint64 lmn_optimizer_get_step(const LmnOptimizer *opt);
/** lmn_optimizer_set_step: sets the update count (checkpoint resume). */
void lmn_optimizer_set_step(LmnOptimizer *opt, gint64 step);
/** lmn_optimizer_get_type_name: Returns: (transfer none): the feature name. */
const char *lmn_optimizer_get_type_name(const LmnOptimizer *opt);
/** lmn_optimizer_get_plugin_version: Returns: (transfer none): the providing plugin's version. */
const char *lmn_optimizer_get_plugin_version(const LmnOptimizer *opt);
/**
 * lmn_optimizer_get_feature:
 * Returns: (transfer none): the registered optimizer: its name, and the plugin and version that
 *   provide it (checkpoints record them)
 */
const LmnFeature *lmn_optimizer_get_feature(const LmnOptimizer *opt);
/** lmn_optimizer_get_hyper: Returns: (transfer none): the hyperparameters. */
const LmnParams *lmn_optimizer_get_hyper(const LmnOptimizer *opt);
/** lmn_optimizer_get_n_slots: Returns: number of state slots. */
guint lmn_optimizer_get_n_slots(const LmnOptimizer *opt);
/** lmn_optimizer_get_slot_name: Returns: (transfer none): slot @index's name. */
const char *lmn_optimizer_get_slot_name(const LmnOptimizer *opt, guint index);
/** lmn_optimizer_get_slot: Returns: (transfer none): slot @index, flat like the parameters. */
LmnTensor *lmn_optimizer_get_slot(LmnOptimizer *opt, guint index);
/**
 * lmn_optimizer_get_host_state:
 * @n_out: (out): number of doubles; @names_out: (out) (transfer none): their names
 * Returns: (transfer none): the host state, writable (checkpoint resume writes it)
 */
double *lmn_optimizer_get_host_state(LmnOptimizer *opt, guint *n_out,
                                     const char *const **names_out);

G_END_DECLS
