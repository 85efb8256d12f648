/* Lamina — layers.
 *
 * A layer plugin implements LmnLayerVTable.  The core creates an LmnLayer per config group,
 * calls build() once with the per-sample shapes of its inputs (no batch dimension); build
 * declares parameters, buffers and saved tensors and returns the per-sample output shape.  The
 * core then allocates everything; forward() and backward() only run ops on ready tensors, so a
 * training step allocates nothing.
 *
 * Tensors seen in forward/backward have the batch dimension in front: [N, per-sample shape].
 * A loss layer (LMN_LAYER_FLAG_LOSS) outputs one scalar, the mean over the batch, and its
 * backward starts the chain (the gradient of the loss with respect to itself is 1).
 */
#pragma once

#include <lamina/backend.h>
#include <lamina/ops.h>
#include <lamina/params.h>
#include <lamina/registry.h>

G_BEGIN_DECLS

typedef struct _LmnLayer LmnLayer;
/* The state of an export in progress (lamina/export.h). */
typedef struct _LmnExport LmnExport;

/** LmnTensorInfo: what build() knows of an input or output: per-sample shape and dtype. */
typedef struct {
    LmnShape shape;
    LmnDType dtype;
} LmnTensorInfo;

/** LmnLayerFlags: properties of a layer type. */
typedef enum {
    LMN_LAYER_FLAG_NONE = 0,
    LMN_LAYER_FLAG_LOSS = 1 << 0,     /* output is the scalar batch mean; last input = target */
    LMN_LAYER_FLAG_IN_PLACE = 1 << 1, /* reserved: may share its output with its input */
    /* ABI 1.5: forward honours LmnLayerIO.fusion (computes the activation layer after it) */
    LMN_LAYER_FLAG_FUSES_ACTIVATION = 1 << 2,
    /* ABI 1.5: backward honours LmnLayerIO.fusion (computes the backward of the activation
     * layer before it); only read on a layer with one input */
    LMN_LAYER_FLAG_FUSES_ACTIVATION_GRAD = 1 << 3,
    /* ABI 1.5: the output is its one input's bytes in another shape (flatten), so the core may
     * give the output the input's memory; forward's lmn_op_copy(output, input) is then a copy
     * onto the same bytes, which does nothing */
    LMN_LAYER_FLAG_RESHAPE = 1 << 4,
    /* ABI 1.5: a loss layer whose forward, given LmnLayerIO.input_grads (training only), also
     * writes them exactly as its backward would; the core then skips its backward */
    LMN_LAYER_FLAG_LOSS_GRAD_IN_FORWARD = 1 << 5,
} LmnLayerFlags;

/**
 * LmnLayerFusion:
 * An element-wise activation layer whose work the core hands to a neighbour (ABI 1.5).
 *
 * In forward, to the layer before it (flag LMN_LAYER_FLAG_FUSES_ACTIVATION): that layer writes
 * its own output as always and, from it, @output = f(its output) as lmn_op_unary(@op, its
 * output, @output, @alpha) would, typically in the same pass (a GEMM's epilogue).  The
 * activation layer's forward then does not run.
 *
 * In backward, to the layer after it (flag LMN_LAYER_FLAG_FUSES_ACTIVATION_GRAD), whose one
 * input is the activation's output: that layer writes into input_grads[0] not dL/d(its input)
 * g but the gradient at the activation's input, as lmn_op_unary_backward(@op, @input, inputs[0],
 * g, input_grads[0], @alpha) would make it from g (a GEMM's epilogue again).  The activation
 * layer's backward then does not run.  @output is NULL in backward, @input NULL in forward.
 */
typedef struct {
    guint32 struct_size;
    LmnTensor *output; /* forward: the activation layer's output, [N, ...] like this layer's */
    LmnUnaryOp op;
    float alpha;
    const LmnTensor *input; /* backward: the activation layer's input, shaped as inputs[0] */
    gpointer reserved[1];
} LmnLayerFusion;

/** LmnParamRole: how the training loop treats a parameter (L1/L2 penalties skip biases). */
typedef enum {
    LMN_PARAM_ROLE_WEIGHT = 0,
    LMN_PARAM_ROLE_BIAS = 1,
} LmnParamRole;

/**
 * LmnLayerIO:
 * @inputs: the inputs, [N, ...]
 * @output: the output, [N, ...] (a one-element tensor for loss layers)
 * @output_grad: backward only: dL/d(output); NULL for loss layers.  Read-only: a layer must not
 *   use it as scratch, since it may be the caller's tensor (lmn_model_backward_from() passes the
 *   given gradient to the last layer as it is)
 * @input_grads: backward: where to write dL/d(input i), overwriting; an entry is NULL when
 *   that gradient is not needed (data inputs, labels).  NULL in forward, except for a loss layer
 *   with LMN_LAYER_FLAG_LOSS_GRAD_IN_FORWARD in a training forward, which then writes them as
 *   its backward would (ABI 1.5).  In a model an input gradient never
 *   shares memory with @output_grad, with another input gradient (even when two inputs are the
 *   same layer), or with any input or output: the activation arena planner keeps them all live
 *   while the layer's backward runs, so they get disjoint places.  A layer may therefore write
 *   its input gradients in any order while it still reads @output_grad.
 * @batch: N
 * @training: TRUE in training, FALSE in evaluation (dropout off, running statistics used)
 * @step: optimizer steps done so far (seeds per-step randomness such as dropout masks)
 * @seed: the run's seed
 * @skip_param_grads: backward only: the core will not read this layer's parameter gradients
 *   (the layer is frozen, or the pass computes only the model's input gradient, as an attack
 *   does), so the layer may skip computing them and leave them as they are; computing them
 *   anyway is correct, only slower.  Appended in the place of a reserved pointer, so plugins
 *   built before it see it as reserved and compute every gradient.
 * @fusion: NULL unless the layer's vtable has LMN_LAYER_FLAG_FUSES_ACTIVATION (in forward) or
 *   LMN_LAYER_FLAG_FUSES_ACTIVATION_GRAD (in backward): the activation layer whose forward, or
 *   backward, this one computes too (see #LmnLayerFusion).  In the place of a reserved pointer
 *   (ABI 1.5).
 */
typedef struct {
    guint32 struct_size;
    guint n_inputs;
    LmnTensor *const *inputs;
    LmnTensor *output;
    LmnTensor *output_grad;
    LmnTensor *const *input_grads;
    gint64 batch;
    gboolean training;
    guint64 step;
    guint64 seed;
    gboolean skip_param_grads;
    const LmnLayerFusion *fusion;
    gpointer reserved[2];
} LmnLayerIO;

/**
 * LmnLayerVTable:
 * @min_inputs, @max_inputs: accepted input count (a loss layer counts its target)
 * @build: validate the inputs (set a LMN_CONFIG_ERROR_GRAPH error naming the problem), declare
 *   parameters/buffers/saved tensors, and set @output's per-sample shape and dtype
 * @forward: compute io->output (and saved tensors for backward)
 * @backward: compute parameter gradients (overwrite) and the non-NULL input gradients
 * @export_onnx: optional, appended (read only when struct_size covers it, so plugins built
 *   before it have none): describe the layer's evaluation-mode function as ONNX nodes with the
 *   lamina/export.h helpers, reading the values named @inputs (n_inputs of them, a loss's target
 *   included) and producing the value named @output; a loss layer instead declares the graph's
 *   outputs.  Return FALSE with an error saying what cannot be expressed.  NULL: the layer has no
 *   ONNX equivalent (a loss without it is dropped).
 */
typedef struct {
    guint32 struct_size;
    guint32 flags;
    guint min_inputs;
    guint max_inputs;
    gboolean (*build)(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                      LmnTensorInfo *output, GError **error);
    void (*forward)(LmnLayer *layer, const LmnLayerIO *io);
    void (*backward)(LmnLayer *layer, const LmnLayerIO *io);
    gboolean (*export_onnx)(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                            const char *output, GError **error);
    /* (optional, ABI 1.5) For a built layer whose forward is exactly lmn_op_unary(*op, input,
     * output, *alpha) on its one input: sets @op and @alpha and returns TRUE, so the core may
     * fuse that forward into the layer before it (#LmnLayerFusion). */
    gboolean (*as_unary)(LmnLayer *layer, LmnUnaryOp *op, float *alpha);
    /* (optional, ABI 1.6) Makes ahead of a batch of @batch samples what the layer's ops would
     * otherwise make in the step that first uses that size (the backend's convolution plans,
     * lmn_op_conv2d_prepare()).  The core calls it after the layer's saved tensors exist, from
     * lmn_model_prepare() for the largest batch and from lmn_model_plan_batch() for the other
     * sizes a run will use; never from a step.  FALSE with @error fails the preparation. */
    gboolean (*prepare_batch)(LmnLayer *layer, gint64 batch, GError **error);
} LmnLayerVTable;

/* ---- used by layer plugins ---- */

/** lmn_layer_get_name: Returns: (transfer none): the layer's name in the model ("fc1"). */
const char *lmn_layer_get_name(const LmnLayer *layer);
/** lmn_layer_get_params: Returns: (transfer none): the validated hyperparameters. */
const LmnParams *lmn_layer_get_params(const LmnLayer *layer);
/** lmn_layer_get_index: Returns: the layer's position in the model (seeds its random stream). */
guint lmn_layer_get_index(const LmnLayer *layer);

/**
 * lmn_layer_add_param:
 * @name: PyTorch's name ("weight", "bias") — the checkpoint path is /model/LAYER/NAME
 * @shape: PyTorch's shape (dense weight [out, in])
 * @role: weight or bias
 * @default_init: initializer name used unless the config sets NAME_init, e.g. "he_uniform"
 * @default_init_args: (nullable): "key=value, key=value" overrides of the initializer's defaults
 * @fan_in, @fan_out: the fans the initializer sees (a bias uses its weight's fans)
 * Declares a trainable parameter during build().
 * Returns: the parameter's index within the layer
 */
guint lmn_layer_add_param(LmnLayer *layer, const char *name, const LmnShape *shape,
                          LmnParamRole role, const char *default_init,
                          const char *default_init_args, double fan_in, double fan_out);
/**
 * lmn_layer_add_buffer:
 * Declares a non-trainable persistent tensor (running statistics) filled with @initial_value,
 * saved in checkpoints under /model/LAYER/NAME.  Returns: its index.
 */
guint lmn_layer_add_buffer(LmnLayer *layer, const char *name, const LmnShape *shape,
                           float initial_value);
/**
 * lmn_layer_get_backend:
 * The backend the layer's tensors live on, known from build() on, so that a layer can declare
 * only the scratch its backend's ops need (lmn_backend_has_native_conv2d, say).
 * Returns: (transfer none): the backend
 */
LmnBackend *lmn_layer_get_backend(const LmnLayer *layer);
/**
 * lmn_layer_add_saved:
 * Declares a per-batch tensor of per-sample shape @shape kept from forward to backward
 * (probabilities, masks, pre-activations); the core prepends the batch dimension.  When
 * @per_batch is FALSE the shape is used as is (a scalar scratch, say).  Returns: its index.
 */
guint lmn_layer_add_saved(LmnLayer *layer, const char *name, const LmnShape *shape,
                          LmnDType dtype, gboolean per_batch);

/**
 * lmn_layer_declare_index_input:
 * @n_indices: the number of rows indexed: values must be whole numbers in [0, @n_indices)
 * Declares during build() that input @input holds indices (an embedding's token ids).  Forward
 * cannot report errors and on a device backend cannot look at its input, so the check is made
 * where the data is still in host memory: when that input is the model's input, every batch is
 * checked before it reaches the backend (lmn_model_check_input) and a non-integral or
 * out-of-range value is an error naming the sample, the value and the layer.  Indices computed
 * inside the model are not checked; the ops read an out-of-range one as a zero row.
 */
void lmn_layer_declare_index_input(LmnLayer *layer, guint input, gint64 n_indices);
/** lmn_layer_get_index_limit: Returns: @n_indices declared for input @input, or 0. */
gint64 lmn_layer_get_index_limit(const LmnLayer *layer, guint input);

/**
 * lmn_layer_find_peer:
 * @name: another layer's name in the model
 * During build() only: a layer that works with another one's state (max_unpool2d reading a
 * maxpool2d's argmax) finds it here.  Only layers built earlier (above this one in the config)
 * are found, and a standalone layer (lmn_layer_new(), gradient checks) has no peers.  The
 * pointer stays valid while the model lives, and the peer's saved tensors for the current batch
 * (lmn_layer_get_saved()) are ready in this layer's forward and backward, since the peer runs
 * forward before it and backward after it.
 * Returns: (transfer none) (nullable): the layer, or NULL when there is none of that name
 */
LmnLayer *lmn_layer_find_peer(LmnLayer *layer, const char *name);
/** lmn_layer_find_saved: Returns: the index of @layer's saved tensor @name, or -1. */
gint lmn_layer_find_saved(const LmnLayer *layer, const char *name);
/** lmn_layer_get_input_info: Returns: (transfer none): input @index's per-sample shape and dtype.
 */
const LmnTensorInfo *lmn_layer_get_input_info(const LmnLayer *layer, guint index);

/** lmn_layer_get_param: Returns: (transfer none): parameter @index's value tensor. */
LmnTensor *lmn_layer_get_param(LmnLayer *layer, guint index);
/** lmn_layer_get_grad: Returns: (transfer none): parameter @index's gradient tensor. */
LmnTensor *lmn_layer_get_grad(LmnLayer *layer, guint index);
/** lmn_layer_get_buffer: Returns: (transfer none): buffer @index. */
LmnTensor *lmn_layer_get_buffer(LmnLayer *layer, guint index);
/** lmn_layer_get_saved: Returns: (transfer none): saved tensor @index for the current batch. */
LmnTensor *lmn_layer_get_saved(LmnLayer *layer, guint index);
/** lmn_layer_set_private: attaches plugin data, freed with @destroy when the layer goes. */
void lmn_layer_set_private(LmnLayer *layer, gpointer data, GDestroyNotify destroy);
/** lmn_layer_get_private: Returns: (transfer none): the data set by lmn_layer_set_private. */
gpointer lmn_layer_get_private(const LmnLayer *layer);

/* ---- collectives: layers whose computation spans the ranks of a data-parallel run ----
 *
 * A layer such as synchronised batch normalisation needs a few values summed over every rank
 * in the middle of its forward or backward.  The core gives each layer of a model the ranks'
 * collective (lmn_model_set_collective(); the trainer sets it under mpirun), so a plugin never
 * sees the communicator itself and one built against this header runs unchanged on one
 * process, where the sum is the identity.  Added after ABI 1.3 without changing any descriptor
 * or vtable, so older plugins and cores are unaffected.
 *
 * A layer type that sums across ranks does so behind a boolean key named "sync" (batch_norm's
 * sync = true), which the core knows by that name: on a layer type without it the key is a
 * config error that says where it applies, and data-parallel training refuses a batch size
 * whose short last batch leaves a rank without samples (that rank would skip the step's passes
 * and so the sums) while such a layer has sync = true.
 */

/**
 * LmnCollective:
 * @struct_size: sizeof(LmnCollective)
 * @n_ranks: the number of ranks training together (>= 1)
 * @allreduce: sums @count floats at @values (host memory) over every rank in place, in an order
 *   fixed for @n_ranks, so every rank gets the same bits and repeated runs are bit-identical.
 *   The provider keeps a failure's error itself (the trainer reports it after the step, naming
 *   the rank and host) and answers FALSE to every later call of the same step without
 *   communicating
 * @data: passed to @allreduce
 */
typedef struct {
    guint32 struct_size;
    int n_ranks;
    gboolean (*allreduce)(gpointer data, float *values, gsize count);
    gpointer data;
} LmnCollective;

/**
 * lmn_layer_get_n_ranks:
 * Returns: the number of ranks the layer's model trains on: 1 for a single process, a
 *   standalone layer (lmn_layer_new(), gradient checks) or a model without a collective
 */
int lmn_layer_get_n_ranks(const LmnLayer *layer);
/**
 * lmn_layer_allreduce:
 * @values: (inout): @count floats in host memory (read a device tensor with lmn_tensor_read())
 * Sums @values over every rank, in place (see #LmnCollective).  Meant for a layer's training
 * forward and backward: every rank must make the same calls in the same order with the same
 * @count, which holds for a layer whose calls depend only on its config and the pass (not on
 * data values).  With one rank it returns TRUE at once and leaves @values as they are.
 * Returns: FALSE when this reduction or an earlier one of the step failed; the step is then
 *   discarded with the provider's error, and the layer may return without finishing its pass
 */
gboolean lmn_layer_allreduce(LmnLayer *layer, float *values, gsize count);

/* ---- used by the core, tools and tests (gradient checks) ---- */

/**
 * lmn_layer_new:
 * Creates and builds a standalone layer of registered type @type with validated @params, for the
 * per-sample @inputs, and allocates its parameters and buffers on @backend (values are not
 * initialised; see lmn_layer_init_params).  The graph uses this for each node; gradient checks
 * use it directly.
 * Returns: (transfer full): the layer or NULL with @error
 */
LmnLayer *lmn_layer_new(LmnRegistry *registry, const char *type, const char *name, guint index,
                        const LmnParams *params, LmnBackend *backend, guint n_inputs,
                        const LmnTensorInfo *inputs, GError **error);
/**
 * lmn_layer_set_collective:
 * Makes @layer's lmn_layer_allreduce() use @collective (copied; its @data must outlive the
 * layer or the next call).  NULL: a single process.
 */
void lmn_layer_set_collective(LmnLayer *layer, const LmnCollective *collective);
/**
 * LmnLayerProfile:
 * Wall time a layer spent in forward and backward since profiling was switched on, each call
 * bracketed by lmn_backend_synchronize() so that a device backend's queued work is counted
 * where it was recorded (which serialises that backend: a profile, not a benchmark).
 */
typedef struct {
    gint64 forward_us, backward_us;
    guint64 forward_calls, backward_calls;
} LmnLayerProfile;

/** lmn_layer_set_profiling: switches the profile of @layer on or off; either way it restarts
 * from zero. */
void lmn_layer_set_profiling(LmnLayer *layer, gboolean on);
/** lmn_layer_get_profile: Returns: (transfer none): the times gathered since profiling began. */
const LmnLayerProfile *lmn_layer_get_profile(const LmnLayer *layer);
/** lmn_layer_free: frees the layer, its tensors and private data. */
void lmn_layer_free(LmnLayer *layer);
/** lmn_layer_get_vtable: Returns: (transfer none): the layer type's vtable. */
const LmnLayerVTable *lmn_layer_get_vtable(const LmnLayer *layer);
/** lmn_layer_get_type_name: Returns: (transfer none): the registered type, e.g. "dense". */
const char *lmn_layer_get_type_name(const LmnLayer *layer);
/** lmn_layer_get_output_info: Returns: (transfer none): per-sample output shape and dtype. */
const LmnTensorInfo *lmn_layer_get_output_info(const LmnLayer *layer);
/** lmn_layer_is_loss: Returns: whether the layer is a loss. */
gboolean lmn_layer_is_loss(const LmnLayer *layer);
/**
 * lmn_layer_check_size:
 * @layer: the layer being built
 * @what: what the shape is, for the message ("its output", "its weight")
 * @shape: the shape to check
 * @per_sample: whether @shape is an activation's per-sample shape (said in the message)
 * @dtype: the element type
 * @hint: what the user can change, ending the message ("use less padding")
 *
 * Whether a tensor of @shape and @dtype can exist (lmn_shape_nbytes_checked()).  Shapes a build()
 * derives from its hyperparameters and inputs can be anything a config asks for, and a count
 * that wraps past 2^64 can equal a plausible one, so a layer checks every shape it makes before
 * it uses the shape's count.  The core checks every layer's inputs and output the same way.
 *
 * Returns: TRUE, or FALSE with a LMN_CONFIG_ERROR_GRAPH error naming the layer, @what, the shape,
 *   its approximate size and @hint
 */
gboolean lmn_layer_check_size(const LmnLayer *layer, const char *what, const LmnShape *shape,
                              gboolean per_sample, LmnDType dtype, const char *hint,
                              GError **error);
/** lmn_layer_get_n_params: Returns: number of trainable parameters. */
guint lmn_layer_get_n_params(const LmnLayer *layer);
/** lmn_layer_get_param_name: Returns: (transfer none): parameter @index's name. */
const char *lmn_layer_get_param_name(const LmnLayer *layer, guint index);
/** lmn_layer_get_param_role: Returns: parameter @index's role. */
LmnParamRole lmn_layer_get_param_role(const LmnLayer *layer, guint index);
/**
 * lmn_layer_get_param_init_name:
 * Returns: (transfer none): the initializer that lmn_layer_init_params() last filled parameter
 *   @index with (the config's NAME_init or the layer's default), or the default before it ran;
 *   for messages about values that were kept ("kept its he_uniform initialisation")
 */
const char *lmn_layer_get_param_init_name(const LmnLayer *layer, guint index);
/**
 * lmn_layer_get_param_init_feature:
 * Returns: (transfer none) (nullable): the registered initializer that lmn_layer_init_params()
 *   last filled parameter @index with (its plugin and version are recorded in checkpoints), or
 *   NULL before it ran
 */
const LmnFeature *lmn_layer_get_param_init_feature(const LmnLayer *layer, guint index);
/**
 * lmn_layer_get_feature:
 * Returns: (transfer none): the registered layer type the layer was built from: its name, and
 *   the plugin (name, version) that provides it
 */
const LmnFeature *lmn_layer_get_feature(const LmnLayer *layer);
/** lmn_layer_get_n_buffers: Returns: number of buffers. */
guint lmn_layer_get_n_buffers(const LmnLayer *layer);
/** lmn_layer_get_buffer_name: Returns: (transfer none): buffer @index's name. */
const char *lmn_layer_get_buffer_name(const LmnLayer *layer, guint index);
/**
 * lmn_layer_bind_param:
 * Makes parameter @index use @value and @grad (views into the model's flat parameter and
 * gradient tensors, so one optimizer launch covers every parameter).  Takes references.
 */
void lmn_layer_bind_param(LmnLayer *layer, guint index, LmnTensor *value, LmnTensor *grad);
/**
 * lmn_layer_init_params:
 * @init_keys, @init_values: (nullable): the config's initializer keys for this layer, NULL-
 *   terminated: "NAME_init" (an initializer name) and "NAME_init.KEY" (its hyperparameters)
 * @where: location for messages ("model.ini [layer fc1]")
 * Fills parameters with their initializers (the config's choice, else the layer's defaults) from
 * Philox stream LMN_STREAM(LMN_STREAM_INIT, @first_param_index + i) of @seed, and buffers with
 * their initial values.  An init key naming no parameter of the layer is an error.
 */
gboolean lmn_layer_init_params(LmnLayer *layer, LmnRegistry *registry, guint64 seed,
                               guint first_param_index, const char *const *init_keys,
                               const char *const *init_values, const char *where,
                               GError **error);
/**
 * lmn_layer_prepare_batch:
 * Allocates the saved tensors for batch size @batch (reuses them when it does not grow).
 */
gboolean lmn_layer_prepare_batch(LmnLayer *layer, gint64 batch, GError **error);
/**
 * lmn_layer_plan_batch:
 * Runs the plugin's prepare_batch hook (ABI 1.6) for @batch samples, when it has one; the error
 * is prefixed with the layer's name.  Returns: FALSE with @error when the hook fails.
 */
gboolean lmn_layer_plan_batch(LmnLayer *layer, gint64 batch, GError **error);
/** lmn_layer_forward: runs the plugin's forward. */
void lmn_layer_forward(LmnLayer *layer, const LmnLayerIO *io);
/** lmn_layer_backward: runs the plugin's backward. */
void lmn_layer_backward(LmnLayer *layer, const LmnLayerIO *io);

G_END_DECLS
