/* PReLU (He et al., "Delving Deep into Rectifiers", 2015) as an out-of-tree Lamina layer plugin,
 * with nn.PReLU's semantics and names, so that PyTorch weights load by name:
 *     y = x                 for x > 0
 *     y = weight[c] * x     otherwise
 * with a learnable "weight" of shape [num_parameters], num_parameters = 1 (one slope shared by
 * every element) or the channel count (the first per-sample dimension, dimension 1 of [N, C, ...]),
 * initialised to `init` (0.25).  Gradients, as PyTorch computes them (x == 0 takes the slope):
 *     dx        = dy                for x > 0, else weight[c] * dy
 *     dweight[c] = sum over the elements of channel c with x <= 0 of x * dy
 *
 * The element-wise parts that need the channel index (forward, dx) are plugin kernels with a CPU
 * function and, when the build finds the shader tools, a SPIR-V variant for the Vulkan backend
 * (see meson.build).  The weight gradient uses only the op set: its per-element terms
 * x * dy * [x <= 0] = dy * (x - relu(x)) are three element-wise ops, and the per-channel sum is a
 * bias gradient.
 */
#include <lamina/lamina.h>

/* The kernels get the channel count and the elements per channel and sample as float scalars;
 * below 2^24 a float holds them exactly. */
#define PRELU_MAX_EXTENT (1 << 24)

enum { S_CHANNELS, S_INNER, N_SCALARS };

typedef struct {
    gint64 channels; /* num_parameters: 1 or the input's channel count */
    gint64 inner;    /* elements per channel and sample */
    guint saved;     /* the weight gradient's per-element terms */
} Prelu;

/* ---- kernels ---- */

static inline gsize channel_of(gsize i, const float *s)
{
    return (i / (gsize) s[S_INNER]) % (gsize) s[S_CHANNELS];
}

/* buffers: x, weight, y */
static void prelu_forward_cpu(gsize begin, gsize end, void *const *buffers, const float *s)
{
    const float *x = buffers[0], *w = buffers[1];
    float *y = buffers[2];
    for (gsize i = begin; i < end; i++)
        y[i] = x[i] > 0.0f ? x[i] : w[channel_of(i, s)] * x[i];
}

/* buffers: x, weight, dy, dx */
static void prelu_backward_input_cpu(gsize begin, gsize end, void *const *buffers, const float *s)
{
    const float *x = buffers[0], *w = buffers[1], *dy = buffers[2];
    float *dx = buffers[3];
    for (gsize i = begin; i < end; i++)
        dx[i] = x[i] > 0.0f ? dy[i] : w[channel_of(i, s)] * dy[i];
}

#ifdef PRELU_HAVE_SPIRV
/* The Vulkan variants (prelu-forward.comp, prelu-backward.comp, embedded by meson.build with the
 * SDK's lamina-embed-shader.sh): the same single multiply as the CPU functions. */
#include <stdint.h> /* the generated headers use uint32_t */

#include "prelu-backward-spv.h"
#include "prelu-forward-spv.h"

static const LmnKernelSpirv prelu_forward_spirv = {
    .struct_size = sizeof(LmnKernelSpirv),
    .code = prelu_forward_spv,
    .code_size = sizeof prelu_forward_spv,
    .entry_point = "main",
};
static const LmnKernelSpirv prelu_backward_input_spirv = {
    .struct_size = sizeof(LmnKernelSpirv),
    .code = prelu_backward_spv,
    .code_size = sizeof prelu_backward_spv,
    .entry_point = "main",
};
#define PRELU_FORWARD_SPIRV (&prelu_forward_spirv)
#define PRELU_BACKWARD_INPUT_SPIRV (&prelu_backward_input_spirv)
#else
/* the Vulkan backend runs the CPU functions on host copies */
#define PRELU_FORWARD_SPIRV NULL
#define PRELU_BACKWARD_INPUT_SPIRV NULL
#endif

static const guint8 prelu_forward_access[] = {LMN_KERNEL_READ, LMN_KERNEL_READ, LMN_KERNEL_WRITE};

static const LmnKernelDesc prelu_forward_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "prelu.forward",
    .cpu = prelu_forward_cpu,
    .n_buffers = 3,
    .access = prelu_forward_access,
    .n_scalars = N_SCALARS,
    .spirv = PRELU_FORWARD_SPIRV,
};

static const guint8 prelu_backward_input_access[] = {LMN_KERNEL_READ, LMN_KERNEL_READ,
                                                     LMN_KERNEL_READ, LMN_KERNEL_WRITE};

static const LmnKernelDesc prelu_backward_input_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "prelu.backward_input",
    .cpu = prelu_backward_input_cpu,
    .n_buffers = 4,
    .access = prelu_backward_input_access,
    .n_scalars = N_SCALARS,
    .spirv = PRELU_BACKWARD_INPUT_SPIRV,
};

/* ---- the layer ---- */

static gboolean prelu_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                            LmnTensorInfo *output, GError **error)
{
    (void) n_inputs; /* min_inputs = max_inputs = 1: the core checked it */
    const char *name = lmn_layer_get_name(layer);
    const LmnShape *in = &inputs[0].shape;
    if (inputs[0].dtype != LMN_DTYPE_F32) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (prelu): expected an f32 input, got %s", name,
                    lmn_dtype_name(inputs[0].dtype));
        return FALSE;
    }
    gint64 n = lmn_params_get_int(lmn_layer_get_params(layer), "num_parameters");
    gint64 numel = 1;
    if (!lmn_shape_numel_checked(in, &numel) || numel >= PRELU_MAX_EXTENT) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (prelu): its input has %" G_GINT64_FORMAT " elements per sample; "
                    "this example supports fewer than 2^24",
                    name, numel);
        return FALSE;
    }
    Prelu *p = g_new0(Prelu, 1);
    if (n == 1) {
        p->channels = 1;
        p->inner = MAX(numel, 1);
    } else {
        /* nn.PReLU's channel is dimension 1 of [N, C, ...], the first per-sample dimension */
        if (in->ndim < 1 || in->dims[0] != n) {
            g_autofree char *s = lmn_shape_to_string(in);
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                        "layer '%s' (prelu): num_parameters = %" G_GINT64_FORMAT " needs an input "
                        "with %" G_GINT64_FORMAT " channels (its first per-sample dimension), "
                        "got per-sample shape %s; set num_parameters to 1 or to the channel count",
                        name, n, n, s);
            g_free(p);
            return FALSE;
        }
        p->channels = n;
        p->inner = numel / n;
    }
    LmnShape w = lmn_shape_make(1, n);
    g_autofree char *init_args =
        g_strdup_printf("value=%.9g", lmn_params_get_float(lmn_layer_get_params(layer), "init"));
    /* the fans do not matter to the constant initializer; they are what another would see */
    lmn_layer_add_param(layer, "weight", &w, LMN_PARAM_ROLE_WEIGHT, "constant", init_args,
                        (double) p->inner, (double) p->inner);
    p->saved = lmn_layer_add_saved(layer, "weight_grad_terms", in, LMN_DTYPE_F32, TRUE);
    lmn_layer_set_private(layer, p, g_free);
    output->shape = *in;
    output->dtype = LMN_DTYPE_F32;
    return TRUE;
}

static void prelu_scalars(const Prelu *p, float *s)
{
    s[S_CHANNELS] = (float) p->channels;
    s[S_INNER] = (float) p->inner;
}

static void prelu_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Prelu *p = lmn_layer_get_private(layer);
    float s[N_SCALARS];
    prelu_scalars(p, s);
    LmnTensor *buffers[] = {io->inputs[0], lmn_layer_get_param(layer, 0), io->output};
    lmn_op_kernel(&prelu_forward_kernel, (gsize) lmn_tensor_numel(io->output), buffers, s);
}

static void prelu_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Prelu *p = lmn_layer_get_private(layer);
    LmnTensor *x = io->inputs[0];
    if (io->input_grads[0] != NULL) {
        float s[N_SCALARS];
        prelu_scalars(p, s);
        LmnTensor *buffers[] = {x, lmn_layer_get_param(layer, 0), io->output_grad,
                                io->input_grads[0]};
        lmn_op_kernel(&prelu_backward_input_kernel, (gsize) lmn_tensor_numel(x), buffers, s);
    }
    if (!io->skip_param_grads) {
        /* t = dy * (x - relu(x)): x - relu(x) is exactly x where x <= 0 and exactly 0 above,
         * so t is x * dy on the negative side, as PyTorch's terms are */
        LmnTensor *t = lmn_layer_get_saved(layer, p->saved);
        lmn_op_unary(LMN_UNARY_RELU, x, t, 0.0f);
        lmn_op_binary(LMN_BINARY_SUB, x, t, t);
        lmn_op_binary(LMN_BINARY_MUL, t, io->output_grad, t);
        /* dweight[c] = sum over [N, c, inner] of t, overwritten */
        lmn_op_bias_grad(lmn_layer_get_grad(layer, 0), t, io->batch, p->channels, p->inner, 0.0f);
    }
}

static const LmnLayerVTable prelu_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_NONE,
    .min_inputs = 1,
    .max_inputs = 1,
    .build = prelu_build,
    .forward = prelu_forward,
    .backward = prelu_backward,
};

static const LmnParamSpec prelu_params[] = {
    LMN_PARAM_SPEC_INT("num_parameters", "1", 1, PRELU_MAX_EXTENT - 1, 0,
                       "slopes: 1 (shared) or the input's channel count (nn.PReLU's "
                       "num_parameters)"),
    LMN_PARAM_SPEC_FLOAT("init", "0.25", -1e6, 1e6, 0,
                         "initial value of every slope (nn.PReLU's init)"),
    LMN_PARAM_SPEC_END,
};

static const LmnFeatureDesc features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "prelu",
                "x for x > 0, weight[c] * x below, learnable slopes (nn.PReLU)", prelu_params,
                &prelu_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("example.prelu", "1.0.0", "MIT", "Example out-of-tree layer plugin",
                           features)
