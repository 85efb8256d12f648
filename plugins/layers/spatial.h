/* Lamina — helpers shared by the 2-D spatial layer plugins (conv.c, pool.c).
 *
 * Private to the layer plugins and header-only, because each plugin is its own .so built only
 * from the public headers: a helper library would be one more thing a third-party plugin could
 * not link.  Everything here is static inline.
 */
#pragma once

#include <math.h>

#include <lamina/lamina.h>

/*
 * Reads a size key that, like PyTorch's int-or-tuple arguments, is one integer for both axes or
 * "h, w" (a FLOAT_LIST of one or two integral values; the schema has already checked each
 * element's range).  @type is the layer type for messages.  An absent optional key (no default)
 * yields @fallback for both axes.
 */
static inline gboolean lmn_spatial_pair(LmnLayer *layer, const char *type, const char *key,
                                        const gint64 fallback[2], gint64 out[2], GError **error)
{
    gsize n = 0;
    const double *v = lmn_params_get_float_list(lmn_layer_get_params(layer), key, &n);
    if (n == 0 && fallback != NULL) {
        out[0] = fallback[0];
        out[1] = fallback[1];
        return TRUE;
    }
    if (n != 1 && n != 2) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "layer '%s' (%s): %s has %" G_GSIZE_FORMAT " values; give one integer for "
                    "both axes or two as \"height, width\"",
                    lmn_layer_get_name(layer), type, key, n);
        return FALSE;
    }
    for (gsize i = 0; i < n; i++) {
        if (v[i] != floor(v[i]) || fabs(v[i]) > (double) G_MAXINT32) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                        "layer '%s' (%s): %s value %g is not an integer",
                        lmn_layer_get_name(layer), type, key, v[i]);
            return FALSE;
        }
    }
    out[0] = (gint64) v[0];
    out[1] = (gint64) v[n == 2 ? 1 : 0];
    return TRUE;
}

/*
 * Checks that the input is f32 [C, H, W] and fills the batch-independent part of @g from it and
 * from kernel/stride/padding/dilation (each [h, w]), computing the output size as PyTorch does.
 * An output with no pixel is a LMN_CONFIG_ERROR_GRAPH error naming the layer and the sizes.
 */
static inline gboolean lmn_spatial_geometry(LmnLayer *layer, const char *type,
                                            const LmnTensorInfo *input, const gint64 kernel[2],
                                            const gint64 stride[2], const gint64 padding[2],
                                            const gint64 dilation[2], LmnConv2dGeom *g,
                                            GError **error)
{
    const LmnShape *s = &input->shape;
    if (s->ndim != 3) {
        g_autofree char *shape = lmn_shape_to_string(s);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (%s): its input has per-sample shape %s, but %s takes images "
                    "[channels, height, width]",
                    lmn_layer_get_name(layer), type, shape, type);
        return FALSE;
    }
    if (input->dtype != LMN_DTYPE_F32) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (%s): its input is %s, but %s takes f32 values",
                    lmn_layer_get_name(layer), type, lmn_dtype_name(input->dtype), type);
        return FALSE;
    }
    /* The core checked before build() that the input fits a tensor (lmn_layer_check_size), so
     * C * H * W fits and H and W are below 2^61; kernel, padding and dilation are at most
     * G_MAXINT32 (the schemas' bound) or, for a kernel, the image size, so the spans below
     * cannot overflow gint64. */
    *g = (LmnConv2dGeom){
        .struct_size = sizeof(LmnConv2dGeom),
        .channels = s->dims[0], .height = s->dims[1], .width = s->dims[2],
        .kernel_h = kernel[0], .kernel_w = kernel[1],
        .stride_h = stride[0], .stride_w = stride[1],
        .pad_h = padding[0], .pad_w = padding[1],
        .dilation_h = dilation[0], .dilation_w = dilation[1],
    };
    gint64 span_h = g->height + 2 * g->pad_h - g->dilation_h * (g->kernel_h - 1) - 1;
    gint64 span_w = g->width + 2 * g->pad_w - g->dilation_w * (g->kernel_w - 1) - 1;
    if (span_h < 0 || span_w < 0) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (%s): the input image %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
                    " (padded by %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT ") is smaller than the "
                    "dilated kernel %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
                    ", so the output would be empty",
                    lmn_layer_get_name(layer), type, g->height, g->width, g->pad_h, g->pad_w,
                    g->dilation_h * (g->kernel_h - 1) + 1, g->dilation_w * (g->kernel_w - 1) + 1);
        return FALSE;
    }
    g->out_h = span_h / g->stride_h + 1;
    g->out_w = span_w / g->stride_w + 1;
    return TRUE;
}

/* The ABI 1.4 convolution of @batch images with @g's window: input [@in_ch, g->height,
 * g->width], output [@out_ch, g->out_h, g->out_w], weight [@out_ch, @in_ch / @groups, kh, kw]
 * (conv2d's own, or the adjoint conv2d a conv_transpose2d runs backwards). */
static inline LmnConv2dDesc lmn_spatial_conv_desc(const LmnConv2dGeom *g, gint64 batch,
                                                  gint64 in_ch, gint64 out_ch, gint64 groups)
{
    return (LmnConv2dDesc){.struct_size = sizeof(LmnConv2dDesc),
                           .n = batch,
                           .c = in_ch,
                           .h = g->height,
                           .w = g->width,
                           .k = out_ch,
                           .kernel_h = g->kernel_h,
                           .kernel_w = g->kernel_w,
                           .stride_h = g->stride_h,
                           .stride_w = g->stride_w,
                           .pad_h = g->pad_h,
                           .pad_w = g->pad_w,
                           .dilation_h = g->dilation_h,
                           .dilation_w = g->dilation_w,
                           .groups = groups,
                           .out_h = g->out_h,
                           .out_w = g->out_w};
}
