/* Lamina — dropout, as torch.nn.Dropout: in training each element is zeroed with probability p
 * and the survivors are scaled by 1 / (1 - p); in evaluation it is the identity.
 *
 * The mask comes from lmn_op_dropout, i.e. from Philox keyed by the run's seed, so every backend
 * draws the same mask.  The stream number of a step is
 *
 *     stream = LMN_STREAM(LMN_STREAM_LAYER, layer index) | (step mod 2^24) << 40
 *
 * that is: bits 0-31 the layer's index in the model, bits 32-39 the purpose (LMN_STREAM_LAYER),
 * bits 40-63 the optimizer step, so each layer gets a fresh mask every step, two dropout layers
 * never share one, and a resumed run redraws exactly the masks it would have drawn.  The step
 * wraps after 2^24 (16.7 million) steps, far beyond any run.  A backend reproducing masks must
 * use this formula (lmn_dropout_stream below).
 *
 * The mask (0 or 1 / (1 - p) per element) is kept for backward: dx = dy * mask.
 */
#include <lamina/lamina.h>

enum { SAVED_MASK = 0 };

#define DROPOUT_STEP_SHIFT 40
#define DROPOUT_STEP_MASK ((G_GUINT64_CONSTANT(1) << (64 - DROPOUT_STEP_SHIFT)) - 1)

/* The Philox stream of layer @index at optimizer step @step (see the comment at the top). */
static guint64 lmn_dropout_stream(guint index, guint64 step)
{
    return LMN_STREAM(LMN_STREAM_LAYER, index) | ((step & DROPOUT_STEP_MASK) << DROPOUT_STEP_SHIFT);
}

typedef struct {
    float p;
} Dropout;

static gboolean dropout_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                              LmnTensorInfo *output, GError **error)
{
    if (inputs[0].dtype != LMN_DTYPE_F32) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (dropout): its input is %s, but dropout takes f32 values",
                    lmn_layer_get_name(layer), lmn_dtype_name(inputs[0].dtype));
        return FALSE;
    }
    Dropout *d = g_new0(Dropout, 1);
    d->p = (float) lmn_params_get_float(lmn_layer_get_params(layer), "p");
    lmn_layer_set_private(layer, d, g_free);
    lmn_layer_add_saved(layer, "mask", &inputs[0].shape, LMN_DTYPE_F32, TRUE);
    *output = inputs[0];
    return TRUE;
}

static void dropout_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Dropout *d = lmn_layer_get_private(layer);
    if (!io->training || d->p == 0.0f) {
        lmn_op_copy(io->output, io->inputs[0]);
        return;
    }
    lmn_op_dropout(io->inputs[0], io->output, lmn_layer_get_saved(layer, SAVED_MASK), d->p,
                   io->seed, lmn_dropout_stream(lmn_layer_get_index(layer), io->step));
}

static void dropout_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Dropout *d = lmn_layer_get_private(layer);
    LmnTensor *dx = io->input_grads[0];
    if (dx == NULL) {
        return;
    }
    if (!io->training || d->p == 0.0f) {
        lmn_op_copy(dx, io->output_grad);
        return;
    }
    lmn_op_binary(LMN_BINARY_MUL, io->output_grad, lmn_layer_get_saved(layer, SAVED_MASK), dx);
}

static const LmnParamSpec dropout_params[] = {
    LMN_PARAM_SPEC_FLOAT("p", "0.5", 0, 1, LMN_PARAM_FLAG_MAX_EXCLUSIVE,
                         "probability of zeroing an element in training"),
    LMN_PARAM_SPEC_END,
};

/* Dropout is the identity in evaluation: no node, its readers read its input. */
static gboolean dropout_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                               const char *output, GError **error)
{
    lmn_export_forward_input(ex, 0);
    return TRUE;
}

static const LmnLayerVTable dropout_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_NONE,
    .min_inputs = 1,
    .max_inputs = 1,
    .build = dropout_build,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .export_onnx = dropout_export,
};

static const LmnFeatureDesc dropout_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "dropout",
                "zeroes elements with probability p in training and scales the rest by "
                "1/(1-p) (torch.nn.Dropout); identity in evaluation",
                dropout_params, &dropout_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.dropout", LMN_VERSION_STRING, "MIT", "Dropout layer",
                           dropout_features)
