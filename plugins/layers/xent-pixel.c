/* Lamina — softmax_cross_entropy in its general form, as torch.nn.CrossEntropyLoss on
 * logits [N, C, d1, ..., dk] against class indices [N, d1, ..., dk] (k >= 0):
 *
 *     loss = sum over pixels i not ignored of
 *              (1 - s) w[y_i] (-log p_i[y_i]) + s / C * sum_c w[c] (-log p_i[c])
 *            / sum over the same pixels of w[y_i]
 *
 * with p_i the softmax over the C logits of pixel i, w the class weights (1 without
 * class_weight), s the label smoothing and a pixel ignored when its label is ignore_index.  That
 * is PyTorch's reduction = 'mean' with weights and label smoothing; when every pixel is ignored
 * the loss is 0 / 0 = NaN, as in PyTorch, and the gradient 0.
 *
 * Labels arrive as i32 (class labels) or as f32 holding whole numbers (per-pixel labels: the
 * dataset loads integer [N, H, W] data as float targets, see dataset.c).  Three plugin kernels
 * (kernel.h): the per-pixel softmax and loss terms, the per-logit gradient, and the upload of
 * the class weights through the scalar block; the two sums are core reductions (double
 * accumulation, so the result does not depend on threads or devices).  The Vulkan variants
 * (shaders/layers/xent-pixel-*.comp) repeat the CPU's float operations in order.
 */
#include "xent-pixel.h"

#include <math.h>

enum { S_CLASSES, S_PIXELS, S_SMOOTH, S_IGNORE, S_WSUM, S_LABEL_F32, N_SCALARS };
enum {
    SAVED_PROBS = LMN_XENT_SAVED_PROBS,
    SAVED_LOSS,
    SAVED_WY,
    SAVED_WEIGHTS,
    SAVED_SUM,
    SAVED_DENOM
};
/* Class weights the upload kernel writes per launch: 30 push-constant floats less the offset. */
#define WEIGHT_CHUNK 29
/* Sizes, indices and labels travel as floats: exact up to 2^24. */
#define XENT_MAX_EXACT 16777216.0

typedef struct {
    float scalars[N_SCALARS];
    double *weights; /* C class weights, or NULL for all 1 */
    gint64 classes;
} XentPixel;

static void xent_pixel_free(gpointer data)
{
    XentPixel *x = data;
    g_free(x->weights);
    g_free(x);
}

/* The class of label @i, or -1 when ignored or no class (never an index out of range). */
static inline gint64 label_class(const void *labels, gsize i, const float *s)
{
    float v =
        s[S_LABEL_F32] != 0.0f ? ((const float *) labels)[i] : (float) ((const gint32 *) labels)[i];
    if (v == s[S_IGNORE] || !(v >= 0.0f) || v >= s[S_CLASSES] || v != floorf(v))
        return -1;
    return (gint64) v;
}

/* buffers: logits, labels, weights, probs, loss terms, w[y]; one index per pixel. */
static void pixel_forward_cpu(gsize begin, gsize end, void *const *buffers, const float *s)
{
    const float *z = buffers[0], *w = buffers[2];
    float *prob = buffers[3], *loss = buffers[4], *wy = buffers[5];
    const gsize classes = (gsize) s[S_CLASSES], pixels = (gsize) s[S_PIXELS];
    for (gsize i = begin; i < end; i++) {
        gsize base = (i / pixels) * classes * pixels + i % pixels;
        float m = z[base];
        for (gsize c = 1; c < classes; c++)
            m = fmaxf(m, z[base + c * pixels]);
        float sum = 0.0f;
        for (gsize c = 0; c < classes; c++)
            sum += expf(z[base + c * pixels] - m);
        float lse = m + logf(sum);
        for (gsize c = 0; c < classes; c++)
            prob[base + c * pixels] = expf(z[base + c * pixels] - m) / sum;
        gint64 y = label_class(buffers[1], i, s);
        if (y < 0) {
            loss[i] = wy[i] = 0.0f;
            continue;
        }
        float smooth = 0.0f;
        for (gsize c = 0; c < classes; c++)
            smooth += w[c] * (lse - z[base + c * pixels]);
        float term = (1.0f - s[S_SMOOTH]) * w[y] * (lse - z[base + (gsize) y * pixels]);
        loss[i] = term + s[S_SMOOTH] / s[S_CLASSES] * smooth;
        wy[i] = w[y];
    }
}

/* buffers: probs, labels, weights, the denominator D (one value), dlogits; one index per logit. */
static void pixel_backward_cpu(gsize begin, gsize end, void *const *buffers, const float *s)
{
    const float *prob = buffers[0], *w = buffers[2], *denom = buffers[3];
    float *dz = buffers[4];
    const gsize classes = (gsize) s[S_CLASSES], pixels = (gsize) s[S_PIXELS];
    const float d = denom[0], sm = s[S_SMOOTH];
    for (gsize e = begin; e < end; e++) {
        gsize c = (e / pixels) % classes;
        gsize i = (e / (classes * pixels)) * pixels + e % pixels;
        gint64 y = label_class(buffers[1], i, s);
        if (y < 0 || d == 0.0f) {
            dz[e] = 0.0f;
            continue;
        }
        float pc = prob[e];
        float hard = (1.0f - sm) * w[y] * (pc - ((gsize) y == c ? 1.0f : 0.0f));
        float soft = sm / s[S_CLASSES] * (s[S_WSUM] * pc - w[c]);
        dz[e] = (hard + soft) / d;
    }
}

/* buffers: weights; w[s[0] + i] = s[1 + i]. */
static void weights_cpu(gsize begin, gsize end, void *const *buffers, const float *s)
{
    float *w = buffers[0];
    for (gsize i = begin; i < end; i++)
        w[(gsize) s[0] + i] = s[1 + i];
}

#ifdef LMN_HAVE_SPIRV
#include "xent-pixel-backward-spv.h"
#include "xent-pixel-forward-spv.h"
#include "xent-pixel-weights-spv.h"
#endif

static const guint8 forward_access[] = {LMN_KERNEL_READ,  LMN_KERNEL_READ,  LMN_KERNEL_READ,
                                        LMN_KERNEL_WRITE, LMN_KERNEL_WRITE, LMN_KERNEL_WRITE};
static const guint8 backward_access[] = {LMN_KERNEL_READ, LMN_KERNEL_READ, LMN_KERNEL_READ,
                                         LMN_KERNEL_READ, LMN_KERNEL_WRITE};
static const guint8 weights_access[] = {LMN_KERNEL_WRITE};

static const LmnKernelDesc forward_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "softmax_cross_entropy.pixel_forward",
    .cpu = pixel_forward_cpu,
    .n_buffers = 6,
    .access = forward_access,
    .n_scalars = N_SCALARS,
    .spirv = SPIRV(xent_pixel_forward_spv),
};
static const LmnKernelDesc backward_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "softmax_cross_entropy.pixel_backward",
    .cpu = pixel_backward_cpu,
    .n_buffers = 5,
    .access = backward_access,
    .n_scalars = N_SCALARS,
    .spirv = SPIRV(xent_pixel_backward_spv),
};
static const LmnKernelDesc weights_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "softmax_cross_entropy.class_weights",
    .cpu = weights_cpu,
    .n_buffers = 1,
    .access = weights_access,
    .n_scalars = WEIGHT_CHUNK + 1,
    .spirv = SPIRV(xent_pixel_weights_spv),
};

gboolean lmn_xent_pixel_wanted(LmnLayer *layer, const LmnTensorInfo *inputs)
{
    const LmnParams *p = lmn_layer_get_params(layer);
    gsize n = 0;
    lmn_params_get_float_list(p, "class_weight", &n);
    return inputs[0].shape.ndim >= 2 || n > 0 || lmn_params_get_int(p, "ignore_index") >= 0;
}

static gboolean fail(GError **error, LmnLayer *layer, const char *what)
{
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                "layer '%s' (softmax_cross_entropy): %s", lmn_layer_get_name(layer), what);
    return FALSE;
}

/* Logits [C, d1..dk] (k >= 0) and labels [d1..dk], i32 or (k >= 1) f32 class indices. */
static gboolean check_shapes(LmnLayer *layer, const LmnTensorInfo *inputs, GError **error)
{
    const LmnShape *z = &inputs[0].shape, *t = &inputs[1].shape;
    gboolean same = z->ndim >= 1 && t->ndim + 1 == z->ndim;
    for (guint i = 0; same && i < t->ndim; i++)
        same = t->dims[i] == z->dims[i + 1];
    gboolean dtype_ok =
        inputs[1].dtype == LMN_DTYPE_I32 || (inputs[1].dtype == LMN_DTYPE_F32 && t->ndim >= 1);
    if (inputs[0].dtype == LMN_DTYPE_F32 && same && dtype_ok)
        return TRUE;
    g_autofree char *zs = lmn_shape_to_string(z);
    g_autofree char *ts = lmn_shape_to_string(t);
    g_autofree char *msg = g_strdup_printf(
        "its inputs are logits %s %s and target %s %s, but it takes f32 logits [classes, d1, "
        "..., dk] and class indices [d1, ..., dk] (i32 labels, or per-pixel labels loaded from "
        "integer data); for images, logits [C, H, W] against labels [H, W]",
        lmn_dtype_name(inputs[0].dtype), zs, lmn_dtype_name(inputs[1].dtype), ts);
    return fail(error, layer, msg);
}

static gboolean read_options(LmnLayer *layer, XentPixel *x, GError **error)
{
    const LmnParams *p = lmn_layer_get_params(layer);
    gsize n = 0;
    const double *w = lmn_params_get_float_list(p, "class_weight", &n);
    if (n > 0 && (gint64) n != x->classes) {
        g_autofree char *msg = g_strdup_printf("class_weight has %" G_GSIZE_FORMAT
                                               " values but the logits have %" G_GINT64_FORMAT
                                               " classes; give one weight per class",
                                               n, x->classes);
        return fail(error, layer, msg);
    }
    double sum = 0.0;
    for (gsize c = 0; c < n; c++)
        sum += w[c];
    if (n > 0 && !(sum > 0.0)) {
        return fail(error, layer,
                    "class_weight sums to 0; give at least one class a weight above 0");
    }
    x->weights = n > 0 ? g_memdup2(w, n * sizeof(double)) : NULL;
    x->scalars[S_WSUM] = n > 0 ? (float) sum : (float) x->classes;
    gint64 ignore = lmn_params_get_int(p, "ignore_index");
    x->scalars[S_IGNORE] = (float) ignore;
    x->scalars[S_SMOOTH] = (float) lmn_params_get_float(p, "label_smoothing");
    return TRUE;
}

gboolean lmn_xent_pixel_build(LmnLayer *layer, const LmnTensorInfo *inputs, LmnTensorInfo *output,
                              GError **error)
{
    if (!check_shapes(layer, inputs, error))
        return FALSE;
    const LmnShape *z = &inputs[0].shape;
    double pixels = 1.0;
    for (guint i = 1; i < z->ndim; i++)
        pixels *= (double) z->dims[i];
    if ((double) z->dims[0] > XENT_MAX_EXACT || pixels > XENT_MAX_EXACT)
        return fail(error, layer, "its logits have more than 2^24 classes or pixels per sample");
    XentPixel *x = g_new0(XentPixel, 1);
    x->classes = z->dims[0];
    x->scalars[S_CLASSES] = (float) z->dims[0];
    x->scalars[S_PIXELS] = (float) pixels;
    x->scalars[S_LABEL_F32] = inputs[1].dtype == LMN_DTYPE_F32 ? 1.0f : 0.0f;
    if (!read_options(layer, x, error)) {
        xent_pixel_free(x);
        return FALSE;
    }
    lmn_layer_set_private(layer, x, xent_pixel_free);
    LmnShape classes = lmn_shape_make(1, z->dims[0]), one = lmn_shape_make(0);
    lmn_layer_add_saved(layer, "probs", z, LMN_DTYPE_F32, TRUE);
    lmn_layer_add_saved(layer, "loss_terms", &inputs[1].shape, LMN_DTYPE_F32, TRUE);
    lmn_layer_add_saved(layer, "target_weights", &inputs[1].shape, LMN_DTYPE_F32, TRUE);
    lmn_layer_add_saved(layer, "class_weights", &classes, LMN_DTYPE_F32, FALSE);
    lmn_layer_add_saved(layer, "loss_sum", &one, LMN_DTYPE_F32, FALSE);
    lmn_layer_add_saved(layer, "weight_sum", &one, LMN_DTYPE_F32, FALSE);
    output->shape = lmn_shape_make(0);
    output->dtype = LMN_DTYPE_F32;
    return TRUE;
}

void lmn_xent_upload_weights(const double *values, gint64 n, LmnTensor *weights)
{
    if (values == NULL) {
        lmn_op_fill(weights, 1.0f);
        return;
    }
    LmnTensor *bufs[] = {weights};
    for (gint64 c0 = 0; c0 < n; c0 += WEIGHT_CHUNK) {
        float s[WEIGHT_CHUNK + 1] = {(float) c0};
        gint64 m = MIN(WEIGHT_CHUNK, n - c0);
        for (gint64 k = 0; k < m; k++)
            s[1 + k] = (float) values[c0 + k];
        lmn_op_kernel(&weights_kernel, (gsize) m, bufs, s);
    }
}

void lmn_xent_pixel_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const XentPixel *x = lmn_layer_get_private(layer);
    LmnTensor *weights = lmn_layer_get_saved(layer, SAVED_WEIGHTS);
    LmnTensor *terms = lmn_layer_get_saved(layer, SAVED_LOSS);
    LmnTensor *wy = lmn_layer_get_saved(layer, SAVED_WY);
    LmnTensor *sum = lmn_layer_get_saved(layer, SAVED_SUM);
    LmnTensor *denom = lmn_layer_get_saved(layer, SAVED_DENOM);
    /* Every forward pass: the tensor is a few floats, and no other hook runs before the first. */
    lmn_xent_upload_weights(x->weights, x->classes, weights);
    LmnTensor *bufs[] = {
        io->inputs[0], io->inputs[1], weights, lmn_layer_get_saved(layer, SAVED_PROBS), terms, wy};
    lmn_op_kernel(&forward_kernel, (gsize) lmn_tensor_numel(terms), bufs, x->scalars);
    lmn_op_reduce(LMN_REDUCE_SUM, terms, sum, 1.0f, 0.0f);
    lmn_op_reduce(LMN_REDUCE_SUM, wy, denom, 1.0f, 0.0f);
    lmn_op_binary(LMN_BINARY_DIV, sum, denom, io->output);
}

void lmn_xent_pixel_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const XentPixel *x = lmn_layer_get_private(layer);
    if (io->input_grads[0] == NULL)
        return;
    LmnTensor *bufs[] = {lmn_layer_get_saved(layer, SAVED_PROBS), io->inputs[1],
                         lmn_layer_get_saved(layer, SAVED_WEIGHTS),
                         lmn_layer_get_saved(layer, SAVED_DENOM), io->input_grads[0]};
    lmn_op_kernel(&backward_kernel, (gsize) lmn_tensor_numel(io->input_grads[0]), bufs, x->scalars);
}
