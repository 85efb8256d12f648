/* Lamina — losses on masks: binary_cross_entropy_with_logits with pos_weight, and dice.
 *
 * Weighted binary cross-entropy, as torch.nn.BCEWithLogitsLoss(pos_weight):
 *     loss = mean over elements of (1 - t) x + (1 + (w_c - 1) t) softplus(-x)
 * with w_c the weight of the element's channel (dimension 0 of the per-sample shape: C of
 * [C, H, W], the classes of [K]) or one weight for all.
 *
 * Dice (soft Dice on sigmoid probabilities against a mask t in [0, 1], Milletari et al. 2016),
 * over every element of the batch at once:
 *     p = sigmoid(x),  loss = 1 - (2 sum p t + eps) / (sum p + sum t + eps)
 * eps (`smooth`, default 1) keeps an empty mask and an empty prediction at loss 0.
 *
 * Both are plugin kernels (kernel.h) with SPIR-V variants (shaders/layers/bce-weighted-*.comp,
 * dice-*.comp) that repeat the CPU's float operations in order; the sums are core reductions
 * (double accumulation).  Their target gradients are written too (a target may be a layer's
 * output), into a scratch tensor when the core does not ask for them.
 */
#include "mask-losses.h"

#include <math.h>

#include "xent-pixel.h"

/* ---- shared ---- */

static inline float sigmoid_stable(float x)
{
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* log(1 + exp(-x)) = log(1 + exp(-|x|)) + max(-x, 0), as the shaders compute it. */
static inline float softplus_neg(float x)
{
    return logf(1.0f + expf(-fabsf(x))) + fmaxf(-x, 0.0f);
}

#ifdef LMN_HAVE_SPIRV
#include "bce-weighted-backward-spv.h"
#include "bce-weighted-forward-spv.h"
#include "dice-backward-spv.h"
#include "dice-loss-spv.h"
#include "dice-terms-spv.h"
#endif

#define KERNEL(var, name_, fn, access_, n_scalars_, spv)                                           \
    static const LmnKernelDesc var = {                                                             \
        .struct_size = sizeof(LmnKernelDesc),                                                      \
        .name = name_,                                                                             \
        .cpu = fn,                                                                                 \
        .n_buffers = G_N_ELEMENTS(access_),                                                        \
        .access = access_,                                                                         \
        .n_scalars = n_scalars_,                                                                   \
        .spirv = SPIRV(spv),                                                                       \
    }

enum { R = LMN_KERNEL_READ, W = LMN_KERNEL_WRITE };

/* ---- binary_cross_entropy_with_logits, pos_weight ---- */

enum { B_CHANNELS, B_INNER, B_SCALE, B_N_SCALARS };
enum { BCE_SAVED_WEIGHTS, BCE_SAVED_TERMS, BCE_SAVED_DT };

typedef struct {
    float scalars[B_N_SCALARS];
    double *weights;
    gint64 n_weights;
} BceWeighted;

static void bce_weighted_free(gpointer data)
{
    BceWeighted *b = data;
    g_free(b->weights);
    g_free(b);
}

/* buffers: x, t, weights, terms */
static void bcew_forward_cpu(gsize begin, gsize end, void *const *buffers, const float *s)
{
    const float *x = buffers[0], *t = buffers[1], *w = buffers[2];
    float *term = buffers[3];
    const gsize channels = (gsize) s[B_CHANNELS], inner = (gsize) s[B_INNER];
    for (gsize i = begin; i < end; i++) {
        float wc = w[(i / inner) % channels];
        float lw = 1.0f + (wc - 1.0f) * t[i];
        term[i] = (1.0f - t[i]) * x[i] + lw * softplus_neg(x[i]);
    }
}

/* buffers: x, t, weights, dx, dt */
static void bcew_backward_cpu(gsize begin, gsize end, void *const *buffers, const float *s)
{
    const float *x = buffers[0], *t = buffers[1], *w = buffers[2];
    float *dx = buffers[3], *dt = buffers[4];
    const gsize channels = (gsize) s[B_CHANNELS], inner = (gsize) s[B_INNER];
    for (gsize i = begin; i < end; i++) {
        float wc = w[(i / inner) % channels];
        float lw = 1.0f + (wc - 1.0f) * t[i];
        float gx = (1.0f - t[i]) + lw * (sigmoid_stable(x[i]) - 1.0f);
        float gt = -x[i] + (wc - 1.0f) * softplus_neg(x[i]);
        dx[i] = gx * s[B_SCALE];
        dt[i] = gt * s[B_SCALE];
    }
}

static const guint8 bcew_forward_access[] = {R, R, R, W};
static const guint8 bcew_backward_access[] = {R, R, R, W, W};
KERNEL(bcew_forward_kernel, "binary_cross_entropy_with_logits.pos_weight_terms", bcew_forward_cpu,
       bcew_forward_access, B_N_SCALARS, bce_weighted_forward_spv);
KERNEL(bcew_backward_kernel, "binary_cross_entropy_with_logits.pos_weight_grads", bcew_backward_cpu,
       bcew_backward_access, B_N_SCALARS, bce_weighted_backward_spv);

gboolean lmn_bce_weighted_wanted(LmnLayer *layer)
{
    gsize n = 0;
    lmn_params_get_float_list(lmn_layer_get_params(layer), "pos_weight", &n);
    return n > 0;
}

gboolean lmn_bce_weighted_build(LmnLayer *layer, const LmnTensorInfo *inputs, GError **error)
{
    gsize n = 0;
    const double *w = lmn_params_get_float_list(lmn_layer_get_params(layer), "pos_weight", &n);
    const LmnShape *s = &inputs[0].shape;
    gint64 numel = lmn_shape_numel(s);
    gint64 channels = n == 1 || s->ndim == 0 ? 1 : s->dims[0];
    if (n != 1 && (gint64) n != channels) {
        g_autofree char *shape = lmn_shape_to_string(s);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (binary_cross_entropy_with_logits): pos_weight has %" G_GSIZE_FORMAT
                    " values but the logits %s have %" G_GINT64_FORMAT
                    " channels (their first dimension); give one weight, or one per channel",
                    lmn_layer_get_name(layer), n, shape, channels);
        return FALSE;
    }
    if ((double) numel > 16777216.0) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (binary_cross_entropy_with_logits): with pos_weight a sample may "
                    "hold at most 2^24 values",
                    lmn_layer_get_name(layer));
        return FALSE;
    }
    BceWeighted *b = g_new0(BceWeighted, 1);
    b->weights = g_memdup2(w, n * sizeof(double));
    b->n_weights = (gint64) n;
    b->scalars[B_CHANNELS] = (float) channels;
    b->scalars[B_INNER] = (float) MAX(numel / MAX(channels, 1), 1);
    lmn_layer_set_private(layer, b, bce_weighted_free);
    LmnShape c = lmn_shape_make(1, (gint64) n);
    lmn_layer_add_saved(layer, "pos_weight", &c, LMN_DTYPE_F32, FALSE);
    lmn_layer_add_saved(layer, "loss_terms", s, LMN_DTYPE_F32, TRUE);
    lmn_layer_add_saved(layer, "target_grad", s, LMN_DTYPE_F32, TRUE);
    return TRUE;
}

void lmn_bce_weighted_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    BceWeighted *b = lmn_layer_get_private(layer);
    LmnTensor *w = lmn_layer_get_saved(layer, BCE_SAVED_WEIGHTS);
    LmnTensor *terms = lmn_layer_get_saved(layer, BCE_SAVED_TERMS);
    lmn_xent_upload_weights(b->weights, b->n_weights, w);
    LmnTensor *bufs[] = {io->inputs[0], io->inputs[1], w, terms};
    gint64 n = lmn_tensor_numel(terms);
    lmn_op_kernel(&bcew_forward_kernel, (gsize) n, bufs, b->scalars);
    lmn_op_reduce(LMN_REDUCE_SUM, terms, io->output, (float) (1.0 / (double) MAX(n, 1)), 0.0f);
}

void lmn_bce_weighted_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    BceWeighted *b = lmn_layer_get_private(layer);
    gint64 n = lmn_tensor_numel(io->inputs[0]);
    /* The mean runs over every element (PyTorch's reduction = 'mean'). */
    b->scalars[B_SCALE] = (float) (1.0 / (double) MAX(n, 1));
    LmnTensor *dx =
        io->input_grads[0] ? io->input_grads[0] : lmn_layer_get_saved(layer, BCE_SAVED_TERMS);
    LmnTensor *dt =
        io->input_grads[1] ? io->input_grads[1] : lmn_layer_get_saved(layer, BCE_SAVED_DT);
    LmnTensor *bufs[] = {io->inputs[0], io->inputs[1],
                         lmn_layer_get_saved(layer, BCE_SAVED_WEIGHTS), dx, dt};
    lmn_op_kernel(&bcew_backward_kernel, (gsize) n, bufs, b->scalars);
}

/* ---- dice ---- */

enum { D_EPS, D_N_SCALARS };
enum { DICE_SAVED_PROBS, DICE_SAVED_PT, DICE_SAVED_INTER, DICE_SAVED_TOTAL, DICE_SAVED_DT };

typedef struct {
    float scalars[D_N_SCALARS];
} Dice;

/* buffers: x, t, p, pt */
static void dice_terms_cpu(gsize begin, gsize end, void *const *buffers, const float *s)
{
    const float *x = buffers[0], *t = buffers[1];
    float *prob = buffers[2], *pt = buffers[3];
    for (gsize i = begin; i < end; i++) {
        float q = sigmoid_stable(x[i]);
        prob[i] = q;
        pt[i] = q * t[i];
    }
}

/* buffers: I, S, loss; one index */
static void dice_loss_cpu(gsize begin, gsize end, void *const *buffers, const float *s)
{
    const float *inter = buffers[0], *total = buffers[1];
    float *loss = buffers[2];
    if (begin < end) {
        float num = 2.0f * inter[0] + s[D_EPS];
        float den = total[0] + s[D_EPS];
        loss[0] = 1.0f - num / den;
    }
}

/* buffers: p, t, I, S, dx, dt */
static void dice_backward_cpu(gsize begin, gsize end, void *const *buffers, const float *s)
{
    const float *prob = buffers[0], *t = buffers[1], *inter = buffers[2], *total = buffers[3];
    float *dx = buffers[4], *dt = buffers[5];
    const float num = 2.0f * inter[0] + s[D_EPS], den = total[0] + s[D_EPS];
    const float den2 = den * den;
    for (gsize i = begin; i < end; i++) {
        float q = prob[i];
        float gp = (num - 2.0f * t[i] * den) / den2;
        dx[i] = gp * q * (1.0f - q);
        dt[i] = (num - 2.0f * q * den) / den2;
    }
}

static const guint8 dice_terms_access[] = {R, R, W, W};
static const guint8 dice_loss_access[] = {R, R, W};
static const guint8 dice_backward_access[] = {R, R, R, R, W, W};
KERNEL(dice_terms_kernel, "dice.terms", dice_terms_cpu, dice_terms_access, D_N_SCALARS,
       dice_terms_spv);
KERNEL(dice_loss_kernel, "dice.loss", dice_loss_cpu, dice_loss_access, D_N_SCALARS, dice_loss_spv);
KERNEL(dice_backward_kernel, "dice.grads", dice_backward_cpu, dice_backward_access, D_N_SCALARS,
       dice_backward_spv);

static gboolean dice_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                           LmnTensorInfo *output, GError **error)
{
    if (inputs[0].dtype != LMN_DTYPE_F32 || inputs[1].dtype != LMN_DTYPE_F32 ||
        !lmn_shape_equal(&inputs[0].shape, &inputs[1].shape)) {
        g_autofree char *p = lmn_shape_to_string(&inputs[0].shape);
        g_autofree char *t = lmn_shape_to_string(&inputs[1].shape);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (dice): logits (%s %s) and target (%s %s) must both be f32 with "
                    "the same per-sample shape; the target is a mask in [0, 1]",
                    lmn_layer_get_name(layer), lmn_dtype_name(inputs[0].dtype), p,
                    lmn_dtype_name(inputs[1].dtype), t);
        return FALSE;
    }
    Dice *d = g_new0(Dice, 1);
    d->scalars[D_EPS] = (float) lmn_params_get_float(lmn_layer_get_params(layer), "smooth");
    lmn_layer_set_private(layer, d, g_free);
    LmnShape one = lmn_shape_make(0);
    lmn_layer_add_saved(layer, "probs", &inputs[0].shape, LMN_DTYPE_F32, TRUE);
    lmn_layer_add_saved(layer, "products", &inputs[0].shape, LMN_DTYPE_F32, TRUE);
    lmn_layer_add_saved(layer, "intersection", &one, LMN_DTYPE_F32, FALSE);
    lmn_layer_add_saved(layer, "total", &one, LMN_DTYPE_F32, FALSE);
    lmn_layer_add_saved(layer, "target_grad", &inputs[0].shape, LMN_DTYPE_F32, TRUE);
    output->shape = one;
    output->dtype = LMN_DTYPE_F32;
    return TRUE;
}

static void dice_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Dice *d = lmn_layer_get_private(layer);
    LmnTensor *prob = lmn_layer_get_saved(layer, DICE_SAVED_PROBS);
    LmnTensor *pt = lmn_layer_get_saved(layer, DICE_SAVED_PT);
    LmnTensor *inter = lmn_layer_get_saved(layer, DICE_SAVED_INTER);
    LmnTensor *total = lmn_layer_get_saved(layer, DICE_SAVED_TOTAL);
    LmnTensor *terms[] = {io->inputs[0], io->inputs[1], prob, pt};
    lmn_op_kernel(&dice_terms_kernel, (gsize) lmn_tensor_numel(prob), terms, d->scalars);
    lmn_op_reduce(LMN_REDUCE_SUM, pt, inter, 1.0f, 0.0f);
    lmn_op_reduce(LMN_REDUCE_SUM, prob, total, 1.0f, 0.0f);
    lmn_op_reduce(LMN_REDUCE_SUM, io->inputs[1], total, 1.0f, 1.0f);
    LmnTensor *loss[] = {inter, total, io->output};
    lmn_op_kernel(&dice_loss_kernel, 1, loss, d->scalars);
}

static void dice_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Dice *d = lmn_layer_get_private(layer);
    LmnTensor *dx =
        io->input_grads[0] ? io->input_grads[0] : lmn_layer_get_saved(layer, DICE_SAVED_PT);
    LmnTensor *dt =
        io->input_grads[1] ? io->input_grads[1] : lmn_layer_get_saved(layer, DICE_SAVED_DT);
    LmnTensor *bufs[] = {lmn_layer_get_saved(layer, DICE_SAVED_PROBS),
                         io->inputs[1],
                         lmn_layer_get_saved(layer, DICE_SAVED_INTER),
                         lmn_layer_get_saved(layer, DICE_SAVED_TOTAL),
                         dx,
                         dt};
    lmn_op_kernel(&dice_backward_kernel, (gsize) lmn_tensor_numel(io->inputs[0]), bufs, d->scalars);
}

gboolean lmn_loss_export_sigmoid(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                                 const char *output, GError **error)
{
    const LmnShape *shape = lmn_export_input_shape(ex, 0);
    const char *probs = lmn_export_value_name(ex, layer, "probabilities");
    const char *in[] = {inputs[0], NULL}, *out[] = {probs, NULL};
    if (!lmn_export_add_output(ex, "logits", inputs[0], shape, error))
        return FALSE;
    lmn_export_add_node(ex, "Sigmoid", in, out, NULL);
    return lmn_export_add_output(ex, "probabilities", probs, shape, error);
}

const LmnLayerVTable lmn_dice_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_LOSS,
    .min_inputs = 2,
    .max_inputs = 2,
    .build = dice_build,
    .forward = dice_forward,
    .backward = dice_backward,
    .export_onnx = lmn_loss_export_sigmoid,
};

const LmnParamSpec lmn_dice_params[] = {
    LMN_PARAM_SPEC_FLOAT("smooth", "1", 0, INFINITY, 0,
                         "eps added to the numerator 2 sum(p t) and the denominator sum(p) + "
                         "sum(t), so empty masks give loss 0"),
    LMN_PARAM_SPEC_END,
};
