/* Lamina — 2-D pooling: maxpool2d, avgpool2d (torch.nn.MaxPool2d / AvgPool2d with their defaults:
 * floor output size, average over the window including padding) and global_avgpool
 * ([C, H, W] -> [C], torch.nn.AdaptiveAvgPool2d(1) followed by a flatten).
 *
 * Each is one lmn_op_pool2d; max pooling keeps the argmax of every window for backward, so its
 * gradient goes to exactly the element PyTorch routes it to (the first maximum).  Global average
 * pooling is average pooling with the whole image as the window: its [N, C] output is the
 * [N, C, 1, 1] result of the op, byte for byte.
 */
#include <lamina/lamina.h>

#include "spatial.h"

typedef struct {
    LmnPoolMode mode;
    LmnConv2dGeom geom; /* batch filled in per call */
    guint saved_argmax;
} Pool;

/* PyTorch refuses padding beyond half the kernel (pool2d_shape_check); so do we. */
static gboolean pool_check_padding(LmnLayer *layer, const char *type, const gint64 kernel[2],
                                   const gint64 padding[2], GError **error)
{
    for (int a = 0; a < 2; a++) {
        if (padding[a] > kernel[a] / 2) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                        "layer '%s' (%s): padding %" G_GINT64_FORMAT " exceeds half the kernel "
                        "size %" G_GINT64_FORMAT " along the %s axis; use padding <= "
                        "kernel_size / 2",
                        lmn_layer_get_name(layer), type, padding[a], kernel[a],
                        a == 0 ? "height" : "width");
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean pool_build_windowed(LmnLayer *layer, LmnPoolMode mode, const char *type,
                                    const LmnTensorInfo *inputs, LmnTensorInfo *output,
                                    GError **error)
{
    gint64 kernel[2], stride[2], padding[2], dilation[2] = {1, 1};
    if (!lmn_spatial_pair(layer, type, "kernel_size", NULL, kernel, error) ||
        !lmn_spatial_pair(layer, type, "stride", kernel, stride, error) ||
        !lmn_spatial_pair(layer, type, "padding", NULL, padding, error) ||
        (mode == LMN_POOL_MAX &&
         !lmn_spatial_pair(layer, type, "dilation", NULL, dilation, error)) ||
        !pool_check_padding(layer, type, kernel, padding, error)) {
        return FALSE;
    }
    Pool *pool = g_new0(Pool, 1);
    pool->mode = mode;
    if (!lmn_spatial_geometry(layer, type, &inputs[0], kernel, stride, padding, dilation,
                              &pool->geom, error)) {
        g_free(pool);
        return FALSE;
    }
    /* Padding can make the output a row and a column larger than an input that just fits. */
    LmnShape out = lmn_shape_make(3, pool->geom.channels, pool->geom.out_h, pool->geom.out_w);
    if (!lmn_layer_check_size(layer, "its output", &out, TRUE, LMN_DTYPE_F32,
                              "use less padding or a smaller input", error)) {
        g_free(pool);
        return FALSE;
    }
    lmn_layer_set_private(layer, pool, g_free);
    output->shape = out;
    output->dtype = LMN_DTYPE_F32;
    if (mode == LMN_POOL_MAX) {
        pool->saved_argmax =
            lmn_layer_add_saved(layer, "argmax", &output->shape, LMN_DTYPE_I32, TRUE);
    }
    return TRUE;
}

static gboolean maxpool_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                              LmnTensorInfo *output, GError **error)
{
    return pool_build_windowed(layer, LMN_POOL_MAX, "maxpool2d", inputs, output, error);
}

static gboolean avgpool_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                              LmnTensorInfo *output, GError **error)
{
    return pool_build_windowed(layer, LMN_POOL_AVG, "avgpool2d", inputs, output, error);
}

static gboolean global_avgpool_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                                     LmnTensorInfo *output, GError **error)
{
    const LmnShape *s = &inputs[0].shape;
    /* The whole image is one window; the geometry check also rejects non-images. */
    gint64 kernel[2] = {s->ndim == 3 ? s->dims[1] : 1, s->ndim == 3 ? s->dims[2] : 1};
    gint64 one[2] = {1, 1}, zero[2] = {0, 0};
    Pool *pool = g_new0(Pool, 1);
    pool->mode = LMN_POOL_AVG;
    if (!lmn_spatial_geometry(layer, "global_avgpool", &inputs[0], kernel, one, zero, one,
                              &pool->geom, error)) {
        g_free(pool);
        return FALSE;
    }
    lmn_layer_set_private(layer, pool, g_free);
    output->shape = lmn_shape_make(1, pool->geom.channels);
    output->dtype = LMN_DTYPE_F32;
    return TRUE;
}

static void pool_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Pool *pool = lmn_layer_get_private(layer);
    LmnConv2dGeom g = pool->geom;
    g.batch = io->batch;
    LmnTensor *argmax =
        pool->mode == LMN_POOL_MAX ? lmn_layer_get_saved(layer, pool->saved_argmax) : NULL;
    lmn_op_pool2d(pool->mode, io->inputs[0], io->output, argmax, &g);
}

static void pool_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    if (io->input_grads[0] == NULL) {
        return;
    }
    const Pool *pool = lmn_layer_get_private(layer);
    LmnConv2dGeom g = pool->geom;
    g.batch = io->batch;
    LmnTensor *argmax =
        pool->mode == LMN_POOL_MAX ? lmn_layer_get_saved(layer, pool->saved_argmax) : NULL;
    lmn_op_pool2d_backward(pool->mode, io->output_grad, argmax, io->input_grads[0], &g);
}

static const LmnParamSpec maxpool_params[] = {
    LMN_PARAM_SPEC_FLOAT_LIST("kernel_size", NULL, 1, (double) G_MAXINT32, LMN_PARAM_FLAG_REQUIRED,
                              "window size: one integer, or \"height, width\""),
    LMN_PARAM_SPEC_FLOAT_LIST(
        "stride", NULL, 1, (double) G_MAXINT32, 0,
        "window step: one integer, or \"height, width\" (default: kernel_size)"),
    LMN_PARAM_SPEC_FLOAT_LIST("padding", "0", 0, (double) G_MAXINT32, 0,
                              "implicit -inf padding on each side, at most kernel_size / 2"),
    LMN_PARAM_SPEC_FLOAT_LIST("dilation", "1", 1, (double) G_MAXINT32, 0,
                              "spacing of the window's elements"),
    LMN_PARAM_SPEC_END,
};

static const LmnParamSpec avgpool_params[] = {
    LMN_PARAM_SPEC_FLOAT_LIST("kernel_size", NULL, 1, (double) G_MAXINT32, LMN_PARAM_FLAG_REQUIRED,
                              "window size: one integer, or \"height, width\""),
    LMN_PARAM_SPEC_FLOAT_LIST(
        "stride", NULL, 1, (double) G_MAXINT32, 0,
        "window step: one integer, or \"height, width\" (default: kernel_size)"),
    LMN_PARAM_SPEC_FLOAT_LIST(
        "padding", "0", 0, (double) G_MAXINT32, 0,
        "zero padding on each side (counted in the average), at most kernel_size / 2"),
    LMN_PARAM_SPEC_END,
};

/*
 * MaxPool / AveragePool with floor output sizes (ceil_mode 0), as the op computes them; the
 * average divides by the whole window, padding included (count_include_pad = 1, PyTorch's
 * default and lmn_op_pool2d's).  Global pooling is GlobalAveragePool then Flatten to [N, C].
 */
static gboolean pool_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                            const char *output, GError **error)
{
    const Pool *pool = lmn_layer_get_private(layer);
    const LmnConv2dGeom *g = &pool->geom;
    const char *out[] = {output, NULL};
    if (g_str_equal(lmn_layer_get_type_name(layer), "global_avgpool")) {
        const char *pooled = lmn_export_value_name(ex, layer, "pooled");
        const char *in[] = {inputs[0], NULL}, *mid[] = {pooled, NULL};
        lmn_export_add_node(ex, "GlobalAveragePool", in, mid, NULL);
        const LmnExportAttr axis[] = {LMN_EXPORT_ATTR_I("axis", 1), LMN_EXPORT_ATTRS_END};
        lmn_export_add_node(ex, "Flatten", mid, out, axis);
        return TRUE;
    }
    const gint64 kernel[] = {g->kernel_h, g->kernel_w}, strides[] = {g->stride_h, g->stride_w};
    const gint64 pads[] = {g->pad_h, g->pad_w, g->pad_h, g->pad_w};
    const gint64 dilations[] = {g->dilation_h, g->dilation_w};
    gboolean max = pool->mode == LMN_POOL_MAX;
    const LmnExportAttr attrs[] = {
        LMN_EXPORT_ATTR_IS("kernel_shape", kernel, 2),
        LMN_EXPORT_ATTR_IS("strides", strides, 2),
        LMN_EXPORT_ATTR_IS("pads", pads, 4),
        max ? (LmnExportAttr) LMN_EXPORT_ATTR_IS("dilations", dilations, 2)
            : (LmnExportAttr) LMN_EXPORT_ATTR_I("count_include_pad", 1),
        LMN_EXPORT_ATTRS_END,
    };
    const char *in[] = {inputs[0], NULL};
    lmn_export_add_node(ex, max ? "MaxPool" : "AveragePool", in, out, attrs);
    return TRUE;
}

#define POOL_VTABLE(build_fn)                                                                      \
    {                                                                                              \
        .struct_size = sizeof(LmnLayerVTable), .flags = LMN_LAYER_FLAG_NONE, .min_inputs = 1,      \
        .max_inputs = 1, .build = (build_fn), .forward = pool_forward, .backward = pool_backward,  \
        .export_onnx = pool_export,                                                                \
    }

static const LmnLayerVTable maxpool_vtable = POOL_VTABLE(maxpool_build);
static const LmnLayerVTable avgpool_vtable = POOL_VTABLE(avgpool_build);
static const LmnLayerVTable global_avgpool_vtable = POOL_VTABLE(global_avgpool_build);

static const LmnFeatureDesc pool_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "maxpool2d",
                "maximum over windows of [C, H, W] images (torch.nn.MaxPool2d)", maxpool_params,
                &maxpool_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "avgpool2d",
                "average over windows of [C, H, W] images (torch.nn.AvgPool2d)", avgpool_params,
                &avgpool_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "global_avgpool",
                "average of each channel over the whole image: [C, H, W] -> [C] "
                "(torch.nn.AdaptiveAvgPool2d(1) + flatten)",
                NULL, &global_avgpool_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.pool", LMN_VERSION_STRING, "MIT", "Pooling layers",
                           pool_features)
