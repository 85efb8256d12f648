/* Lamina — the model: a DAG of named layers.
 *
 * Nodes are the data input ("input"), the targets (y's is "labels"; another dataset a loss names
 * with `target = NAME` is LMN_CONFIG_TARGET_PREFIX NAME) and one per layer, in file order; a
 * layer may only take inputs defined before it, which makes every model a DAG by construction.
 * Forward runs in file order, backward in reverse; a node's output that feeds several layers gets
 * the sum of their gradients.  All parameters live in one flat tensor (and their gradients in
 * another), so an optimizer updates the whole model with one launch.  Activations and gradients
 * are views into an arena that lmn_model_prepare() plans for the largest batch and reuses: a
 * training step allocates nothing.
 *
 * A model may have several loss layers, anywhere in the graph (an auxiliary head on an
 * intermediate layer, one head per task).  A loss's output is a scalar that feeds no layer; every
 * other layer must feed one.  The model's loss is the sum of weight_i * loss_i ([layer] weight,
 * default 1), and backward seeds loss i with weight_i, so the gradients are those of PyTorch's
 * `sum(w_i * loss_i).backward()`.
 *
 * Custom training loops.  `lamina train` is one client of this API; a program may own the loop:
 *   1. build: lmn_config_new_from_file() + lmn_config_validate(), then lmn_model_new() (or
 *      lmn_model_new_full() with LMN_MODEL_ALLOW_NO_LOSS for a generator or feature extractor);
 *   2. init params: lmn_model_init_params(), or lmn_checkpoint_load_weights();
 *   3. optionally lmn_model_set_input_grad(), then lmn_model_prepare() for the largest batch;
 *   4. the optimizer: lmn_optimizer_new_for_model() (optimizer.h) from the config's [optimizer],
 *      with the layers' trainable / lr_mult ranges applied as the trainer applies them;
 *   5. each step: lmn_model_set_batch() and fill x (and y), lmn_model_forward(), then
 *      lmn_model_backward() (overwrites the gradients) or lmn_model_zero_grads() and
 *      lmn_model_backward_from() (accumulates), then lmn_optimizer_step();
 *   6. checkpoint: lmn_checkpoint_save() with the optimizer and an LmnTrainState of the loop's
 *      counters; resume with lmn_checkpoint_load_weights() + lmn_checkpoint_load_training().
 * Pass the optimizer's step count (lmn_optimizer_get_step()) and the run's seed as @step and
 * @seed to forward and backward: dropout masks are a function of them, as in `lamina train`.
 */
#pragma once

#include <lamina/config.h>
#include <lamina/dataset.h>
#include <lamina/layer.h>

G_BEGIN_DECLS

typedef struct _LmnModel LmnModel;

/**
 * LmnModelFlags:
 * @LMN_MODEL_FLAGS_NONE: the model must end in a loss (what `lamina train` builds)
 * @LMN_MODEL_ALLOW_NO_LOSS: the last layer may be any layer (a generator, a feature extractor)
 *   for a custom loop: such a model has no loss, its backward starts from a given gradient of its
 *   output (lmn_model_backward_from), and it needs no targets unless a layer reads "labels"
 */
typedef enum {
    LMN_MODEL_FLAGS_NONE = 0,
    LMN_MODEL_ALLOW_NO_LOSS = 1 << 0,
} LmnModelFlags;

/**
 * lmn_model_new:
 * @cfg: a validated config
 * @target: per-sample shape and dtype of the targets (i32 [] for class labels)
 * Builds every layer on @backend.  Parameters are allocated but not initialised.  The same as
 * lmn_model_new_full() with LMN_MODEL_FLAGS_NONE: the last layer must be a loss.
 * Returns: (transfer full): the model, or NULL with LMN_CONFIG_ERROR_GRAPH or a layer's error
 */
LmnModel *lmn_model_new(const LmnConfig *cfg, LmnRegistry *registry, LmnBackend *backend,
                        const LmnTensorInfo *target, GError **error);
/**
 * lmn_model_new_full:
 * @cfg: a validated config
 * @target: (nullable): per-sample shape and dtype of the targets; NULL (only with
 *   LMN_MODEL_ALLOW_NO_LOSS) for a model without targets, which then has no labels tensor
 * @flags: LMN_MODEL_ALLOW_NO_LOSS lets the last layer be a non-loss layer
 * Like lmn_model_new().  A model has its own parameters, gradients and activations: several
 * models may live on one backend at once (a generator and a discriminator, say).
 * Returns: (transfer full): the model, or NULL with LMN_CONFIG_ERROR_GRAPH (the last layer is not
 *   a loss without LMN_MODEL_ALLOW_NO_LOSS, a loss elsewhere than last, a loss or a layer reading
 *   "labels" without @target) or a layer's error
 */
LmnModel *lmn_model_new_full(const LmnConfig *cfg, LmnRegistry *registry, LmnBackend *backend,
                             const LmnTensorInfo *target, LmnModelFlags flags, GError **error);
/**
 * lmn_model_new_with_targets:
 * @cfg: a validated config
 * @n_targets: lmn_config_get_n_targets(@cfg), or 0 (only with LMN_MODEL_ALLOW_NO_LOSS) for a
 *   model without targets
 * @targets: (array length=n_targets) (nullable): per-sample shape and dtype of each target, in
 *   the config's order: [0] is y's (the "labels" node), [t] that of
 *   lmn_config_get_target_name(@cfg, t) (e.g. from lmn_dataset_get_target_info_at())
 * @flags: as lmn_model_new_full()
 * Like lmn_model_new_full(), for configs whose losses read datasets other than y ([layer]
 * target = NAME).  lmn_model_new_full() is this with y's info alone.
 * Returns: (transfer full): the model, or NULL with LMN_CONFIG_ERROR_GRAPH (as
 *   lmn_model_new_full(); also when @n_targets does not match the config, a loss's output feeds
 *   a layer, or a non-loss layer feeds nothing) or a layer's error
 */
LmnModel *lmn_model_new_with_targets(const LmnConfig *cfg, LmnRegistry *registry,
                                     LmnBackend *backend, guint n_targets,
                                     const LmnTensorInfo *targets, LmnModelFlags flags,
                                     GError **error);
/**
 * lmn_model_new_for_dataset:
 * @ds: a split opened with (at least) the config's targets (lmn_dataset_open_with_targets() with
 *   lmn_config_get_target_name() of each)
 * lmn_model_new_with_targets() with the per-sample info of each of the config's targets in @ds.
 * Returns: (transfer full): the model, or NULL with LMN_DATA_ERROR_MISSING (a target @ds lacks)
 *   or an error of lmn_model_new_with_targets()
 */
LmnModel *lmn_model_new_for_dataset(const LmnConfig *cfg, LmnRegistry *registry,
                                    LmnBackend *backend, const LmnDataset *ds, GError **error);
/**
 * lmn_model_check_targets:
 * Checks @ds's targets other than y (which lmn_dataset_check_model() checks) against the model:
 * each present with the model's dtype and shape, and class labels below the class count of the
 * losses reading them.
 * Returns: FALSE with LMN_DATA_ERROR_SHAPE or _VALUE naming the split and the target
 */
gboolean lmn_model_check_targets(const LmnModel *model, const LmnDataset *ds, GError **error);
/** lmn_model_has_loss: Returns: whether the model has a loss layer (its last layer is one). */
gboolean lmn_model_has_loss(const LmnModel *model);
/** lmn_model_free: frees the model and its tensors. */
void lmn_model_free(LmnModel *model);
/** lmn_model_init_params: initialises every parameter and buffer from @seed (see layer.h). */
gboolean lmn_model_init_params(LmnModel *model, guint64 seed, GError **error);
/**
 * lmn_model_prepare:
 * Allocates activations for batches of up to @max_batch samples, and readies the layers' ops
 * for @max_batch (lmn_model_plan_batch()).
 */
gboolean lmn_model_prepare(LmnModel *model, gint64 max_batch, GError **error);
/**
 * lmn_model_plan_batch:
 * @batch: a batch size from 1 to the prepared maximum
 * Readies the layers' ops for batches of @batch samples, as lmn_model_prepare() does for the
 * largest: a backend that builds kernels per shape (the CPU backend's oneDNN convolutions)
 * builds them now rather than in the first step of that size.  The current batch is unchanged,
 * and a size already planned costs a lookup per layer.  `lamina train` and lmn_evaluate() plan
 * an epoch's last, partial batch this way; a size that was never planned still works, its
 * kernels made on first use.
 * Returns: FALSE with @error (prefixed with the layer's name) when a layer's hook fails
 */
gboolean lmn_model_plan_batch(LmnModel *model, gint64 batch, GError **error);
/**
 * lmn_model_set_batch:
 * Makes the next forward/backward use @batch (<= the prepared maximum) samples.
 * Returns: (transfer none): via @x_out and @y_out the input and target tensors to fill; *@y_out
 *   is NULL for a model built without targets
 */
void lmn_model_set_batch(LmnModel *model, gint64 batch, LmnTensor **x_out, LmnTensor **y_out);
/** lmn_model_forward: runs every layer forward. */
void lmn_model_forward(LmnModel *model, gboolean training, guint64 step, guint64 seed);
/**
 * lmn_model_forward_inference:
 * Runs forward in evaluation mode (dropout the identity, batch normalisation with its running
 * statistics) for inference: every layer but the loss layers, so the targets need not be filled
 * (a layer other than a loss that reads them would read whatever they hold).  Afterwards
 * lmn_model_get_prediction() and lmn_model_get_loss_prediction() hold each loss's input (the
 * logits) and lmn_model_get_output() a loss-free model's output; the loss values are those of
 * an earlier forward, and lmn_model_backward() must not follow (run lmn_model_forward() first).
 * `lamina predict` uses it.
 */
void lmn_model_forward_inference(LmnModel *model);
/**
 * lmn_model_backward:
 * Runs the layers backward, filling the flat gradient tensor.  It differentiates the last
 * lmn_model_forward() in that forward's mode: after an evaluation forward (training FALSE) the
 * gradient is that of the evaluation function (dropout the identity, batch normalisation with
 * its frozen running statistics), which is what an adversarial attack needs.  A frozen layer
 * ([layer] trainable = false) runs only when a layer below it needs a gradient, and the gradient
 * of its parameters stays 0; layers below the lowest one that learns (and that the input
 * gradient, when on, does not need) are not run at all.  It overwrites the parameter gradients
 * and needs a model that ends in a loss (else see lmn_model_backward_from()).
 */
void lmn_model_backward(LmnModel *model, guint64 step, guint64 seed);
/**
 * LmnModelBackwardHook:
 * @model: the model running backward
 * @grads_final_from: an element offset into the flat gradient tensor
 *   (lmn_model_get_grads()): every element from there on holds its final value of this
 *   backward pass (the layers owning them have run; parameters are laid out in layer order and
 *   backward runs in reverse).  The last call of a pass has 0: the whole gradient is final.
 * @data: the hook's data
 * Called between the layers of lmn_model_backward() and lmn_model_backward_params() (not of
 * lmn_model_backward_input() or lmn_model_backward_from()), with offsets that never grow
 * within a pass.  Data-parallel training starts summing the gradient's buckets there while
 * backward goes on.  The hook may read the gradient (after lmn_backend_synchronize()) but must
 * not change values before @grads_final_from.
 */
typedef void (*LmnModelBackwardHook)(LmnModel *model, gint64 grads_final_from, gpointer data);
/** lmn_model_set_backward_hook: installs @hook (NULL: none) with @data. */
void lmn_model_set_backward_hook(LmnModel *model, LmnModelBackwardHook hook, gpointer data);
/**
 * lmn_model_set_collective:
 * Gives every layer of @model the ranks' collective (lmn_layer_allreduce(); see #LmnCollective),
 * or NULL for a single process (the default).  Data-parallel training sets it; a layer that
 * sums values across ranks does so only in a training pass, so evaluation stays per-rank.
 */
void lmn_model_set_collective(LmnModel *model, const LmnCollective *collective);
/**
 * lmn_model_backward_params:
 * Like lmn_model_backward(), but it does not compute dL/d(input) even when input gradients are
 * on (lmn_model_get_input_grad() is then unspecified: its memory is shared with gradients whose
 * lifetimes do not overlap it): a loop that needs the input gradient only now and then
 * (adversarial training's attack) pays for it only then.  The parameter gradients
 * are the same bits as after lmn_model_backward().
 */
void lmn_model_backward_params(LmnModel *model, guint64 step, guint64 seed);
/**
 * lmn_model_backward_input:
 * Backward for the input gradient alone (PyTorch's torch.autograd.grad(loss, x)): like
 * lmn_model_backward(), but it runs only the layers between the input and the loss and asks
 * none for its parameters' gradients, which are left unspecified (a layer may skip them, see
 * LmnLayerIO.skip_param_grads).  dL/d(input) (lmn_model_get_input_grad()) is the same as after
 * lmn_model_backward().  Attacks use it; it needs input gradients on and a model with a loss.
 */
void lmn_model_backward_input(LmnModel *model, guint64 step, guint64 seed);
/**
 * lmn_model_backward_from:
 * @output_grad: dX/d(output) for some scalar X of the caller's: an f32 tensor on the model's
 *   backend with the shape of lmn_model_get_output() for the current batch; only read
 * Backward for a model without a loss (LMN_MODEL_ALLOW_NO_LOSS), like PyTorch's
 * `out.backward(output_grad)`: it differentiates the last lmn_model_forward() as
 * lmn_model_backward() does, and ADDS d X/d(parameters) to the flat gradient tensor, so a custom
 * loop calls lmn_model_zero_grads() first and may then accumulate several calls (a generator
 * trained through a discriminator: the discriminator's input gradient is this model's output
 * gradient).  The input gradient, when on, is overwritten with dX/d(input) (not accumulated).
 * No batch mean is taken: @output_grad carries whatever scaling the caller wants.
 * Returns: FALSE with LMN_CONFIG_ERROR_GRAPH when the model ends in a loss or @output_grad has
 *   the wrong shape, dtype or backend, or with the backend's error when the scratch copy of the
 *   gradients (allocated on the first call) cannot be made
 */
gboolean lmn_model_backward_from(LmnModel *model, const LmnTensor *output_grad, guint64 step,
                                 guint64 seed, GError **error);
/** lmn_model_zero_grads: sets every parameter gradient to 0 (see lmn_model_backward_from()). */
void lmn_model_zero_grads(LmnModel *model);
/**
 * lmn_model_get_output:
 * The last layer's output for the current batch, as left by the last lmn_model_forward(): a
 * loss-free model's output, or the last loss layer's own value in a model with losses (the
 * model's loss, their weighted sum, is lmn_model_get_loss()).
 * Returns: (transfer none): the tensor, or NULL before the first lmn_model_set_batch()
 */
LmnTensor *lmn_model_get_output(LmnModel *model);
/**
 * lmn_model_set_input_grad:
 * @enabled: whether lmn_model_backward() also computes dL/d(input)
 * Input gradients (for adversarial examples, saliency maps, a generator trained through a
 * discriminator) are off by default, and then cost nothing: the input has no gradient buffer and
 * the layers reading it are not asked for its gradient.  Turned on, backward writes the gradient
 * of the loss with respect to every input element, summed over every layer that reads the input
 * (a residual branch reading it twice contributes both uses).  Call it before lmn_model_prepare()
 * to plan the arena once; on a prepared model it re-plans the arena for the same largest batch,
 * which invalidates the tensors lmn_model_set_batch() returned (call it again and refill them).
 * Returns: FALSE with LMN_CONFIG_ERROR_GRAPH naming the layer when @enabled and a layer reads the
 *   input as indices (lmn_layer_declare_index_input, e.g. an embedding: integers have no
 *   gradient), or with the backend's error when re-planning fails (the model is then unprepared
 *   and keeps its previous setting)
 */
gboolean lmn_model_set_input_grad(LmnModel *model, gboolean enabled, GError **error);
/** lmn_model_get_input_grad_enabled: Returns: whether input gradients are on. */
gboolean lmn_model_get_input_grad_enabled(const LmnModel *model);
/**
 * lmn_model_get_input_grad:
 * dL/d(input), [batch, input shape...] f32 for the current batch, filled by lmn_model_backward()
 * (overwritten whole by each call; the loss is the batch mean, so this is the gradient of that
 * mean).  It lives in the activation arena: read it before the next lmn_model_set_batch() with a
 * different batch size or re-plan.
 * Returns: (transfer none) (nullable): the tensor, or NULL when input gradients are off or before
 *   the first lmn_model_set_batch()
 */
LmnTensor *lmn_model_get_input_grad(LmnModel *model);
/**
 * lmn_model_get_loss:
 * The model's loss: the sum of weight * loss over its loss layers, in file order (the one loss
 * layer's own output when there is one, of weight 1).
 * Returns: (transfer none) (nullable): the loss (one f32 element) of the last forward; NULL for
 *   a model without a loss
 */
LmnTensor *lmn_model_get_loss(LmnModel *model);
/**
 * lmn_model_get_prediction:
 * Returns: (transfer none) (nullable): the first loss layer's first input for the current batch
 *   (the logits); NULL for a model without a loss (see lmn_model_get_output())
 */
LmnTensor *lmn_model_get_prediction(LmnModel *model);
/** lmn_model_get_n_losses: Returns: the number of loss layers (0 for a loss-free model). */
guint lmn_model_get_n_losses(const LmnModel *model);
/** lmn_model_get_loss_layer: Returns: (transfer none): loss @index (< n_losses, file order). */
LmnLayer *lmn_model_get_loss_layer(LmnModel *model, guint index);
/** lmn_model_get_loss_weight: Returns: loss @index's weight ([layer] weight, default 1). */
double lmn_model_get_loss_weight(const LmnModel *model, guint index);
/**
 * lmn_model_get_loss_value:
 * Returns: (transfer none): loss @index's own (unweighted) scalar of the last forward, f32 [];
 *   NULL before the first lmn_model_set_batch()
 */
LmnTensor *lmn_model_get_loss_value(LmnModel *model, guint index);
/**
 * lmn_model_get_loss_prediction:
 * Returns: (transfer none): loss @index's first input for the current batch
 */
LmnTensor *lmn_model_get_loss_prediction(LmnModel *model, guint index);
/**
 * lmn_model_get_loss_prediction_info:
 * Returns: (transfer none): the per-sample shape and dtype of loss @index's first input (logits
 *   [C, d1..dk] for a per-pixel softmax_cross_entropy), known from build on
 */
const LmnTensorInfo *lmn_model_get_loss_prediction_info(const LmnModel *model, guint index);
/**
 * lmn_model_get_loss_target:
 * Returns: the target (index for lmn_model_get_target()) loss @index reads as its last input,
 *   or -1 when its last input is a layer (e.g. an mse between two layers' outputs)
 */
gint lmn_model_get_loss_target(const LmnModel *model, guint index);
/**
 * lmn_model_get_loss_n_classes:
 * Returns: the class count of loss @index (its prediction's last dimension) when its target is
 *   class labels, else -1
 */
gint64 lmn_model_get_loss_n_classes(const LmnModel *model, guint index);
/**
 * lmn_model_get_n_targets:
 * Returns: the number of target tensors: lmn_config_get_n_targets() of the config, or 0 for a
 *   model built without targets
 */
guint lmn_model_get_n_targets(const LmnModel *model);
/** lmn_model_get_target_name: Returns: (transfer none): target @index's dataset name ("y" first).
 */
const char *lmn_model_get_target_name(const LmnModel *model, guint index);
/** lmn_model_get_target_info_at: Returns: (transfer none): target @index's per-sample info. */
const LmnTensorInfo *lmn_model_get_target_info_at(const LmnModel *model, guint index);
/**
 * lmn_model_get_target:
 * The tensor to fill with target @index for the current batch ([0] is the one
 * lmn_model_set_batch() returns as *y_out), valid until the next lmn_model_set_batch() with
 * another batch size.
 * Returns: (transfer none): the tensor, or NULL before the first lmn_model_set_batch()
 */
LmnTensor *lmn_model_get_target(LmnModel *model, guint index);
/** lmn_model_get_params: Returns: (transfer none): the flat parameter tensor. */
LmnTensor *lmn_model_get_params(LmnModel *model);
/** lmn_model_get_grads: Returns: (transfer none): the flat gradient tensor. */
LmnTensor *lmn_model_get_grads(LmnModel *model);
/** lmn_model_get_n_layers: Returns: number of layers. */
guint lmn_model_get_n_layers(const LmnModel *model);
/** lmn_model_get_layer: Returns: (transfer none): layer @index. */
LmnLayer *lmn_model_get_layer(LmnModel *model, guint index);
/** lmn_model_get_input_shape: Returns: (transfer none): the per-sample input shape. */
const LmnShape *lmn_model_get_input_shape(const LmnModel *model);
/**
 * lmn_model_get_target_info:
 * Returns: (transfer none) (nullable): the per-sample info of target 0 (y); NULL for a model
 *   built without targets
 */
const LmnTensorInfo *lmn_model_get_target_info(const LmnModel *model);
/**
 * lmn_model_get_n_classes:
 * Returns: the class count (the first loss's prediction's last dimension) when the model has a
 *   loss and y holds class labels, else -1
 */
gint64 lmn_model_get_n_classes(const LmnModel *model);
/**
 * lmn_model_check_input:
 * @x: @n samples of the model's input, in host memory
 * @indices: (nullable): the samples' indices in their dataset, for the message
 * Checks a batch against the layers that read the model's input as indices
 * (lmn_layer_declare_index_input), before it is written to the backend.
 * Returns: FALSE with LMN_DATA_ERROR_VALUE naming the sample of the batch, the element, the value,
 *   the layer and the valid range
 */
gboolean lmn_model_check_input(const LmnModel *model, const float *x, gint64 n,
                               const guint32 *indices, GError **error);
/** lmn_model_get_n_parameters: Returns: the number of trainable scalars. */
gint64 lmn_model_get_n_parameters(const LmnModel *model);
/**
 * lmn_model_get_activation_bytes:
 * @unshared_out: (out) (optional): bytes the same buffers would take with one allocation each
 * @peak_out: (out) (optional): the most bytes live at one time in a step (no arena is smaller)
 * @n_segments_out: (out) (optional): backend allocations the arena is made of
 * The activation arena holds every layer output and gradient buffer, planned by
 * lmn_model_prepare() so that gradients whose lifetimes in a step do not overlap share memory.
 * Returns: its size in bytes for the prepared batch, 0 before lmn_model_prepare()
 */
gint64 lmn_model_get_activation_bytes(const LmnModel *model, gint64 *unshared_out,
                                      gint64 *peak_out, guint *n_segments_out);
/** lmn_model_get_backend: Returns: (transfer none): the backend. */
LmnBackend *lmn_model_get_backend(const LmnModel *model);
/**
 * lmn_model_get_layer_output:
 * The output of layer @index (in file order) for the current batch, as left by the last
 * lmn_model_forward(); the loss layer's is its scalar loss.
 * Returns: (transfer none): the tensor, or NULL before the first lmn_model_set_batch()
 */
LmnTensor *lmn_model_get_layer_output(LmnModel *model, guint index);
/**
 * lmn_model_lsuv:
 * @ds: the data the batch comes from (its samples must fit the model's input)
 * @batch: samples in the batch (clamped to @ds's length); the model is prepared for it
 * @tol: tolerance on the output variance, > 0
 * @max_iter: rescalings per layer at most; 0 leaves the orthogonal weights unscaled
 * @seed: chooses the batch (the first @batch samples of a Philox permutation of @ds, stream
 *   LMN_STREAM(LMN_STREAM_INIT, G_MAXUINT32)) and seeds the orthogonal weights (the same
 *   streams as lmn_model_init_params)
 * Layer-sequential unit-variance initialisation (Mishkin & Matas 2016, "All you need is a good
 * init").  For every layer with a parameter named "weight" of two or more dimensions, in forward
 * order: the weight is re-initialised with the registered "orthogonal" initializer (the layer's
 * other parameters are kept), then, while |var(output) - 1| >= @tol and fewer than @max_iter
 * rescalings were made, the model runs forward in evaluation mode on the fixed batch and the
 * weight is multiplied by 1 / sqrt(var(output)), where var is the population variance of all
 * elements of that layer's output.  Buffers (batch-norm running statistics) are reset as by
 * lmn_model_init_params.  A layer whose output is constant (var 0) is left unscaled.
 * Returns: FALSE with LMN_CONFIG_ERROR_GRAPH for a model without a loss, with the registry's
 *   error when "orthogonal" is not available, a
 *   LMN_TRAIN_ERROR_FAILED for an empty @ds or a non-finite variance, or a backend error
 */
gboolean lmn_model_lsuv(LmnModel *model, const LmnDataset *ds, gint64 batch, double tol,
                        gint max_iter, guint64 seed, GError **error);

G_END_DECLS
