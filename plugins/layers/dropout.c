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

/* ---- dropout2d: whole channels, as torch.nn.Dropout2d ----
 *
 * The mask has one entry per (sample, channel): lmn_op_dropout over a [N, C] tensor of ones,
 * with the stream formula above, so it is Philox-drawn exactly like dropout's.  Applying it is
 * a batched GEMM of N * C products [1, 1] x [1, inner] (a channel's scale times its plane),
 * which every backend runs with the op set it already has.
 */
enum { SAVED2D_ONES = 0, SAVED2D_MASK = 1, SAVED2D_SCRATCH = 2 };

typedef struct {
    float p;
    gint64 channels, inner;
} Dropout2d;

static gboolean dropout2d_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                                LmnTensorInfo *output, GError **error)
{
    const LmnShape *s = &inputs[0].shape;
    if (s->ndim < 2 || inputs[0].dtype != LMN_DTYPE_F32) {
        g_autofree char *shape = lmn_shape_to_string(s);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (dropout2d): its input is %s %s, but dropout2d takes f32 "
                    "[channels, ...] inputs (images [C, H, W]) and zeroes whole channels",
                    lmn_layer_get_name(layer), lmn_dtype_name(inputs[0].dtype), shape);
        return FALSE;
    }
    Dropout2d *d = g_new0(Dropout2d, 1);
    d->p = (float) lmn_params_get_float(lmn_layer_get_params(layer), "p");
    d->channels = s->dims[0];
    d->inner = 1;
    for (guint i = 1; i < s->ndim; i++)
        d->inner *= s->dims[i]; /* the input fits a tensor (checked by the core) */
    lmn_layer_set_private(layer, d, g_free);
    LmnShape ch = lmn_shape_make(1, d->channels);
    lmn_layer_add_saved(layer, "ones", &ch, LMN_DTYPE_F32, TRUE);
    lmn_layer_add_saved(layer, "mask", &ch, LMN_DTYPE_F32, TRUE);
    lmn_layer_add_saved(layer, "masked_ones", &ch, LMN_DTYPE_F32, TRUE);
    *output = inputs[0];
    return TRUE;
}

/* out[n, c, :] = mask[n, c] * in[n, c, :] */
static void dropout2d_apply(const Dropout2d *d, LmnTensor *mask, const LmnTensor *in,
                            LmnTensor *out, gint64 batch)
{
    LmnGemm g = {
        .struct_size = sizeof(LmnGemm),
        .m = 1,
        .n = d->inner,
        .k = 1,
        .alpha = 1.0f,
        .beta = 0.0f,
        .a = mask,
        .b = in,
        .c = out,
        .batch = batch * d->channels,
        .stride_a = 1,
        .stride_b = d->inner,
        .stride_c = d->inner,
    };
    lmn_op_gemm(&g);
}

static void dropout2d_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Dropout2d *d = lmn_layer_get_private(layer);
    if (!io->training || d->p == 0.0f) {
        lmn_op_copy(io->output, io->inputs[0]);
        return;
    }
    LmnTensor *ones = lmn_layer_get_saved(layer, SAVED2D_ONES);
    LmnTensor *mask = lmn_layer_get_saved(layer, SAVED2D_MASK);
    lmn_op_fill(ones, 1.0f);
    lmn_op_dropout(ones, lmn_layer_get_saved(layer, SAVED2D_SCRATCH), mask, d->p, io->seed,
                   lmn_dropout_stream(lmn_layer_get_index(layer), io->step));
    dropout2d_apply(d, mask, io->inputs[0], io->output, io->batch);
}

static void dropout2d_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Dropout2d *d = lmn_layer_get_private(layer);
    LmnTensor *dx = io->input_grads[0];
    if (dx == NULL)
        return;
    if (!io->training || d->p == 0.0f) {
        lmn_op_copy(dx, io->output_grad);
        return;
    }
    dropout2d_apply(d, lmn_layer_get_saved(layer, SAVED2D_MASK), io->output_grad, dx, io->batch);
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

static const LmnLayerVTable dropout2d_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_NONE,
    .min_inputs = 1,
    .max_inputs = 1,
    .build = dropout2d_build,
    .forward = dropout2d_forward,
    .backward = dropout2d_backward,
    .export_onnx = dropout_export,
};

static const LmnFeatureDesc dropout_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "dropout",
                "zeroes elements with probability p in training and scales the rest by "
                "1/(1-p) (torch.nn.Dropout); identity in evaluation",
                dropout_params, &dropout_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "dropout2d",
                "zeroes whole channels with probability p in training and scales the rest by "
                "1/(1-p) (torch.nn.Dropout2d); identity in evaluation",
                dropout_params, &dropout2d_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.dropout", LMN_VERSION_STRING, "MIT", "Dropout layers",
                           dropout_features)
