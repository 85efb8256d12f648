/* Lamina — max unpooling, as torch.nn.MaxUnpool2d: the partial inverse of a maxpool2d layer of
 * the same model, named by `indices`, whose argmax (the flat h * W + w of each window's maximum,
 * kept by that layer for its own backward) says where each value goes:
 *
 *     y[n, c] = 0 except y[n, c, argmax[n, c, o]] = x[n, c, o]
 *
 * with y of the pooling layer's input shape.  Forward is lmn_op_pool2d_backward routed through
 * that argmax (the pooling's own adjoint, which scatters exactly so; where overlapping windows
 * share a maximum their values add, where PyTorch keeps one of them).  Backward is the gather
 * dx[n, c, o] = dy[n, c, argmax[n, c, o]], a plugin kernel with a SPIR-V variant
 * (shaders/layers/unpool-backward.comp).
 */
#include <lamina/lamina.h>

#include "spatial.h"

#define TYPE "max_unpool2d"

enum { S_PLANE_IN, S_PLANE_OUT, N_SCALARS };

typedef struct {
    LmnLayer *pool;
    guint argmax;
    LmnConv2dGeom geom; /* the pooling's geometry; batch filled in per call */
    float scalars[N_SCALARS];
} Unpool;

/* buffers: dy (the unpooled gradient), argmax (i32), dx */
static void unpool_backward_cpu(gsize begin, gsize end, void *const *buffers, const float *s)
{
    const float *dy = buffers[0];
    const gint32 *arg = buffers[1];
    float *dx = buffers[2];
    const gsize plane_in = (gsize) s[S_PLANE_IN], plane_out = (gsize) s[S_PLANE_OUT];
    for (gsize i = begin; i < end; i++) {
        gint32 a = arg[i];
        /* -1: a window entirely in the padding had no maximum */
        dx[i] = a >= 0 ? dy[i / plane_in * plane_out + (gsize) a] : 0.0f;
    }
}

#ifdef LMN_HAVE_SPIRV
#include <stdint.h> /* the generated header uses uint32_t */

#include "unpool-backward-spv.h"
static const LmnKernelSpirv unpool_backward_spirv = {
    .struct_size = sizeof(LmnKernelSpirv),
    .code = unpool_backward_spv,
    .code_size = sizeof unpool_backward_spv,
    .entry_point = "main",
};
#define UNPOOL_SPIRV (&unpool_backward_spirv)
#else
#define UNPOOL_SPIRV NULL
#endif

static const guint8 unpool_access[] = {LMN_KERNEL_READ, LMN_KERNEL_READ, LMN_KERNEL_WRITE};
static const LmnKernelDesc unpool_backward_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "max_unpool2d.backward",
    .cpu = unpool_backward_cpu,
    .n_buffers = 3,
    .access = unpool_access,
    .n_scalars = N_SCALARS,
    .spirv = UNPOOL_SPIRV,
};

static gboolean unpool_fail(LmnLayer *layer, const char *what, const char *pool, GError **error)
{
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                "layer '%s' (" TYPE "): indices = %s %s", lmn_layer_get_name(layer), pool, what);
    return FALSE;
}

/* The named layer must be a maxpool2d built earlier whose output has this layer's input shape. */
static gboolean unpool_find_pool(LmnLayer *layer, const LmnTensorInfo *in, Unpool *u,
                                 GError **error)
{
    const char *name = lmn_params_get_string(lmn_layer_get_params(layer), "indices");
    u->pool = lmn_layer_find_peer(layer, name);
    if (u->pool == NULL)
        return unpool_fail(layer,
                           "names no layer above this one in the model; name the maxpool2d layer "
                           "whose pooling this layer undoes",
                           name, error);
    if (!g_str_equal(lmn_layer_get_type_name(u->pool), "maxpool2d") ||
        lmn_layer_find_saved(u->pool, "argmax") < 0)
        return unpool_fail(layer, "is not a maxpool2d layer, whose argmax max_unpool2d reads", name,
                           error);
    const LmnTensorInfo *pooled = lmn_layer_get_output_info(u->pool);
    if (!lmn_shape_equal(&pooled->shape, &in->shape)) {
        g_autofree char *a = lmn_shape_to_string(&pooled->shape);
        g_autofree char *b = lmn_shape_to_string(&in->shape);
        g_autofree char *what =
            g_strdup_printf("outputs %s per sample, but this layer's input is %s; unpool the "
                            "output of a layer of the pooled shape",
                            a, b);
        return unpool_fail(layer, what, name, error);
    }
    u->argmax = (guint) lmn_layer_find_saved(u->pool, "argmax");
    return TRUE;
}

/*
 * The pooling's window geometry, which pool2d_backward needs (a device backend finds the
 * windows holding each pixel from it), read from the pool layer's keys as pool.c reads them;
 * they were validated when that layer was built.
 */
static gboolean unpool_pool_geometry(LmnLayer *pool, LmnConv2dGeom *g, GError **error)
{
    gint64 kernel[2], stride[2], padding[2], dilation[2];
    return lmn_spatial_pair(pool, "maxpool2d", "kernel_size", NULL, kernel, error) &&
           lmn_spatial_pair(pool, "maxpool2d", "stride", kernel, stride, error) &&
           lmn_spatial_pair(pool, "maxpool2d", "padding", NULL, padding, error) &&
           lmn_spatial_pair(pool, "maxpool2d", "dilation", NULL, dilation, error) &&
           lmn_spatial_geometry(pool, "maxpool2d", lmn_layer_get_input_info(pool, 0), kernel,
                                stride, padding, dilation, g, error);
}

static gboolean unpool_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                             LmnTensorInfo *output, GError **error)
{
    if (inputs[0].shape.ndim != 3 || inputs[0].dtype != LMN_DTYPE_F32) {
        g_autofree char *shape = lmn_shape_to_string(&inputs[0].shape);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (" TYPE "): its input is %s %s, but " TYPE " takes f32 images "
                    "[channels, height, width]",
                    lmn_layer_get_name(layer), lmn_dtype_name(inputs[0].dtype), shape);
        return FALSE;
    }
    Unpool u = {0};
    if (!unpool_find_pool(layer, &inputs[0], &u, error))
        return FALSE;
    const LmnShape *s = &lmn_layer_get_input_info(u.pool, 0)->shape;
    const LmnShape *p = &inputs[0].shape;
    if (!unpool_pool_geometry(u.pool, &u.geom, error))
        return FALSE;
    u.scalars[S_PLANE_IN] = (float) (p->dims[1] * p->dims[2]);
    u.scalars[S_PLANE_OUT] = (float) (s->dims[1] * s->dims[2]);
    if ((double) s->dims[1] * (double) s->dims[2] > 16777216.0) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (" TYPE "): planes above 2^24 pixels are not supported",
                    lmn_layer_get_name(layer));
        return FALSE;
    }
    lmn_layer_set_private(layer, g_memdup2(&u, sizeof u), g_free);
    output->shape = *s;
    output->dtype = LMN_DTYPE_F32;
    return TRUE;
}

static void unpool_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Unpool *u = lmn_layer_get_private(layer);
    LmnConv2dGeom g = u->geom;
    g.batch = io->batch;
    lmn_op_pool2d_backward(LMN_POOL_MAX, io->inputs[0], lmn_layer_get_saved(u->pool, u->argmax),
                           io->output, &g);
}

static void unpool_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Unpool *u = lmn_layer_get_private(layer);
    if (io->input_grads[0] == NULL)
        return;
    LmnTensor *bufs[] = {io->output_grad, lmn_layer_get_saved(u->pool, u->argmax),
                         io->input_grads[0]};
    lmn_op_kernel(&unpool_backward_kernel, (gsize) lmn_tensor_numel(io->inputs[0]), bufs,
                  u->scalars);
}

static const LmnParamSpec unpool_params[] = {
    LMN_PARAM_SPEC_STRING("indices", NULL, LMN_PARAM_FLAG_REQUIRED,
                          "the maxpool2d layer (above this one) whose argmax places the values"),
    LMN_PARAM_SPEC_END,
};

static const LmnLayerVTable unpool_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .min_inputs = 1,
    .max_inputs = 1,
    .build = unpool_build,
    .forward = unpool_forward,
    .backward = unpool_backward,
};

static const LmnFeatureDesc unpool_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, TYPE,
                "puts each value back where a maxpool2d layer (indices = NAME) found its "
                "maximum, zeros elsewhere (torch.nn.MaxUnpool2d)",
                unpool_params, &unpool_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.unpool", LMN_VERSION_STRING, "MIT", "Max unpooling layer",
                           unpool_features)
