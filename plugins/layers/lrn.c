/* Lamina — local response normalisation across channels, as torch.nn.LocalResponseNorm:
 *
 *     b[c] = k + alpha / size * sum of x[c']^2 over c' in [c - size/2, c + (size - 1)/2]
 *     y[c] = x[c] * b[c]^-beta
 *
 * (channels outside [0, C) count as zero, and the divisor stays size at the edges, as PyTorch's
 * zero padding and average pooling do).  The backward pass, with b kept from forward, is
 *
 *     dx[c] = dy[c] b[c]^-beta - 2 alpha beta / size * x[c] * sum of dy[c''] y[c''] / b[c'']
 *             over the c'' whose window holds c: c'' in [c - (size - 1)/2, c + size/2].
 *
 * Both are plugin kernels (kernel.h): every element computes its own window sum, so indices are
 * independent; the Vulkan variants (shaders/layers/lrn-*.comp) repeat the CPU's float
 * operations in order.  b^-beta is exp(-beta log b) on both sides.
 */
#include <math.h>

#include <lamina/lamina.h>

enum { SAVED_SCALE = 0 };
enum { S_CHANNELS, S_INNER, S_SIZE, S_ALPHA, S_BETA, S_K, N_SCALARS };

/* Exact integers in a float scalar: the kernels read C, H*W and size from the scalar block. */
#define LRN_MAX_EXACT 16777216.0

typedef struct {
    float scalars[N_SCALARS];
} Lrn;

/* Element @i's channel, and the offset of channel 0 at its pixel. */
static inline void lrn_site(gsize i, const float *s, gsize *c, gsize *base)
{
    gsize channels = (gsize) s[S_CHANNELS], inner = (gsize) s[S_INNER];
    gsize p = i % inner, n = i / (channels * inner);
    *c = (i / inner) % channels;
    *base = n * channels * inner + p;
}

/* buffers: x, y, b */
static void lrn_forward_cpu(gsize begin, gsize end, void *const *buffers, const float *s)
{
    const float *x = buffers[0];
    float *y = buffers[1], *b = buffers[2];
    const gsize channels = (gsize) s[S_CHANNELS], inner = (gsize) s[S_INNER];
    const gsize size = (gsize) s[S_SIZE];
    for (gsize i = begin; i < end; i++) {
        gsize c, base;
        lrn_site(i, s, &c, &base);
        gsize lo = c >= size / 2 ? c - size / 2 : 0, hi = MIN(c + (size - 1) / 2, channels - 1);
        float sum = 0.0f;
        for (gsize j = lo; j <= hi; j++) {
            float v = x[base + j * inner];
            sum += v * v;
        }
        float scale = s[S_K] + s[S_ALPHA] / s[S_SIZE] * sum;
        b[i] = scale;
        y[i] = x[i] * expf(-s[S_BETA] * logf(scale));
    }
}

/* buffers: x, y, b, dy, dx */
static void lrn_backward_cpu(gsize begin, gsize end, void *const *buffers, const float *s)
{
    const float *x = buffers[0], *y = buffers[1], *b = buffers[2], *dy = buffers[3];
    float *dx = buffers[4];
    const gsize channels = (gsize) s[S_CHANNELS], inner = (gsize) s[S_INNER];
    const gsize size = (gsize) s[S_SIZE];
    const float coef = 2.0f * s[S_ALPHA] * s[S_BETA] / s[S_SIZE];
    for (gsize i = begin; i < end; i++) {
        gsize c, base;
        lrn_site(i, s, &c, &base);
        gsize lo = c >= (size - 1) / 2 ? c - (size - 1) / 2 : 0;
        gsize hi = MIN(c + size / 2, channels - 1);
        float sum = 0.0f;
        for (gsize j = lo; j <= hi; j++) {
            gsize e = base + j * inner;
            sum += dy[e] * y[e] / b[e];
        }
        dx[i] = dy[i] * expf(-s[S_BETA] * logf(b[i])) - coef * x[i] * sum;
    }
}

#ifdef LMN_HAVE_SPIRV
#include <stdint.h> /* the generated headers use uint32_t */

#include "lrn-backward-spv.h"
#include "lrn-forward-spv.h"
#define SPIRV(words)                                                                               \
    (&(const LmnKernelSpirv){                                                                      \
        .struct_size = sizeof(LmnKernelSpirv),                                                     \
        .code = words,                                                                             \
        .code_size = sizeof words,                                                                 \
        .entry_point = "main",                                                                     \
    })
#else
#define SPIRV(words) NULL
#endif

static const guint8 lrn_forward_access[] = {LMN_KERNEL_READ, LMN_KERNEL_WRITE, LMN_KERNEL_WRITE};
static const guint8 lrn_backward_access[] = {LMN_KERNEL_READ, LMN_KERNEL_READ, LMN_KERNEL_READ,
                                             LMN_KERNEL_READ, LMN_KERNEL_WRITE};

static const LmnKernelDesc lrn_forward_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "local_response_norm.forward",
    .cpu = lrn_forward_cpu,
    .n_buffers = 3,
    .access = lrn_forward_access,
    .n_scalars = N_SCALARS,
    .spirv = SPIRV(lrn_forward_spv),
};
static const LmnKernelDesc lrn_backward_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "local_response_norm.backward",
    .cpu = lrn_backward_cpu,
    .n_buffers = 5,
    .access = lrn_backward_access,
    .n_scalars = N_SCALARS,
    .spirv = SPIRV(lrn_backward_spv),
};

static gboolean lrn_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                          LmnTensorInfo *output, GError **error)
{
    const LmnParams *p = lmn_layer_get_params(layer);
    const LmnShape *s = &inputs[0].shape;
    if (s->ndim < 2 || inputs[0].dtype != LMN_DTYPE_F32) {
        g_autofree char *shape = lmn_shape_to_string(s);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (local_response_norm): its input is %s %s, but it takes f32 "
                    "[channels, ...] inputs (images [C, H, W]) and normalises across channels",
                    lmn_layer_get_name(layer), lmn_dtype_name(inputs[0].dtype), shape);
        return FALSE;
    }
    double inner = 1.0;
    for (guint i = 1; i < s->ndim; i++)
        inner *= (double) s->dims[i];
    if ((double) s->dims[0] > LRN_MAX_EXACT || inner > LRN_MAX_EXACT) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (local_response_norm): its input has %" G_GINT64_FORMAT
                    " channels of %.0f values; each must be at most 2^24",
                    lmn_layer_get_name(layer), s->dims[0], inner);
        return FALSE;
    }
    Lrn *l = g_new0(Lrn, 1);
    l->scalars[S_CHANNELS] = (float) s->dims[0];
    l->scalars[S_INNER] = (float) inner;
    l->scalars[S_SIZE] = (float) lmn_params_get_int(p, "size");
    l->scalars[S_ALPHA] = (float) lmn_params_get_float(p, "alpha");
    l->scalars[S_BETA] = (float) lmn_params_get_float(p, "beta");
    l->scalars[S_K] = (float) lmn_params_get_float(p, "k");
    lmn_layer_set_private(layer, l, g_free);
    lmn_layer_add_saved(layer, "scale", s, LMN_DTYPE_F32, TRUE);
    *output = inputs[0];
    return TRUE;
}

static void lrn_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Lrn *l = lmn_layer_get_private(layer);
    LmnTensor *bufs[] = {io->inputs[0], io->output, lmn_layer_get_saved(layer, SAVED_SCALE)};
    lmn_op_kernel(&lrn_forward_kernel, (gsize) lmn_tensor_numel(io->output), bufs, l->scalars);
}

static void lrn_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Lrn *l = lmn_layer_get_private(layer);
    if (io->input_grads[0] == NULL)
        return;
    LmnTensor *bufs[] = {io->inputs[0], io->output, lmn_layer_get_saved(layer, SAVED_SCALE),
                         io->output_grad, io->input_grads[0]};
    lmn_op_kernel(&lrn_backward_kernel, (gsize) lmn_tensor_numel(io->output), bufs, l->scalars);
}

static const LmnParamSpec lrn_params[] = {
    LMN_PARAM_SPEC_INT("size", NULL, 1, 1 << 20, LMN_PARAM_FLAG_REQUIRED,
                       "number of neighbouring channels summed over"),
    LMN_PARAM_SPEC_FLOAT("alpha", "0.0001", 0, INFINITY, 0, "multiplicative factor"),
    LMN_PARAM_SPEC_FLOAT("beta", "0.75", 0, INFINITY, 0, "exponent"),
    LMN_PARAM_SPEC_FLOAT("k", "1", 0, INFINITY, LMN_PARAM_FLAG_MIN_EXCLUSIVE,
                         "additive factor (positive, so the base of the power is)"),
    LMN_PARAM_SPEC_END,
};

static const LmnLayerVTable lrn_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .min_inputs = 1,
    .max_inputs = 1,
    .build = lrn_build,
    .forward = lrn_forward,
    .backward = lrn_backward,
};

static const LmnFeatureDesc lrn_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "local_response_norm",
                "normalises each value by its neighbouring channels' squares "
                "(torch.nn.LocalResponseNorm; AlexNet's LRN)",
                lrn_params, &lrn_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.lrn", LMN_VERSION_STRING, "MIT",
                           "Local response normalisation layer", lrn_features)
