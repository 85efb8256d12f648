/* Lamina — the model: a DAG of named layers.
 *
 * Nodes are the data input ("input"), the targets ("labels") and one per layer, in file order; a
 * layer may only take inputs defined before it, which makes every model a DAG by construction.
 * Forward runs in file order, backward in reverse; a node's output that feeds several layers gets
 * the sum of their gradients.  All parameters live in one flat tensor (and their gradients in
 * another), so an optimizer updates the whole model with one launch.  Activations and gradients
 * are views into an arena that lmn_model_prepare() plans for the largest batch and reuses: a
 * training step allocates nothing.
 */
#pragma once

#include <lamina/config.h>
#include <lamina/dataset.h>
#include <lamina/layer.h>

G_BEGIN_DECLS

typedef struct _LmnModel LmnModel;

/**
 * lmn_model_new:
 * @cfg: a validated config
 * @target: per-sample shape and dtype of the targets (i32 [] for class labels)
 * Builds every layer on @backend.  Parameters are allocated but not initialised.
 * Returns: (transfer full): the model, or NULL with LMN_CONFIG_ERROR_GRAPH or a layer's error
 */
LmnModel *lmn_model_new(const LmnConfig *cfg, LmnRegistry *registry, LmnBackend *backend,
                        const LmnTensorInfo *target, GError **error);
/** lmn_model_free: frees the model and its tensors. */
void lmn_model_free(LmnModel *model);
/** lmn_model_init_params: initialises every parameter and buffer from @seed (see layer.h). */
gboolean lmn_model_init_params(LmnModel *model, guint64 seed, GError **error);
/** lmn_model_prepare: allocates activations for batches of up to @max_batch samples. */
gboolean lmn_model_prepare(LmnModel *model, gint64 max_batch, GError **error);
/**
 * lmn_model_set_batch:
 * Makes the next forward/backward use @batch (<= the prepared maximum) samples.
 * Returns: (transfer none): via @x_out and @y_out the input and target tensors to fill
 */
void lmn_model_set_batch(LmnModel *model, gint64 batch, LmnTensor **x_out, LmnTensor **y_out);
/** lmn_model_forward: runs every layer forward. */
void lmn_model_forward(LmnModel *model, gboolean training, guint64 step, guint64 seed);
/**
 * lmn_model_backward:
 * Runs the layers backward, filling the flat gradient tensor.  It differentiates the last
 * lmn_model_forward() in that forward's mode: after an evaluation forward (training FALSE) the
 * gradient is that of the evaluation function (dropout the identity, batch normalisation with
 * its frozen running statistics), which is what an adversarial attack needs.  A frozen layer
 * ([layer] trainable = false) runs only when a layer below it needs a gradient, and the gradient
 * of its parameters stays 0; layers below the lowest one that learns (and that the input
 * gradient, when on, does not need) are not run at all.
 */
void lmn_model_backward(LmnModel *model, guint64 step, guint64 seed);
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
/** lmn_model_get_loss: Returns: (transfer none): the loss (one f32 element) of the last forward. */
LmnTensor *lmn_model_get_loss(LmnModel *model);
/**
 * lmn_model_get_prediction:
 * Returns: (transfer none): the loss layer's first input for the current batch (the logits)
 */
LmnTensor *lmn_model_get_prediction(LmnModel *model);
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
/** lmn_model_get_target_info: Returns: (transfer none): the per-sample target info. */
const LmnTensorInfo *lmn_model_get_target_info(const LmnModel *model);
/**
 * lmn_model_get_n_classes:
 * Returns: the class count (the prediction's last dimension) when targets are class labels,
 *   else -1
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
 * Returns: FALSE with the registry's error when "orthogonal" is not available, a
 *   LMN_TRAIN_ERROR_FAILED for an empty @ds or a non-finite variance, or a backend error
 */
gboolean lmn_model_lsuv(LmnModel *model, const LmnDataset *ds, gint64 batch, double tol,
                        gint max_iter, guint64 seed, GError **error);

G_END_DECLS
