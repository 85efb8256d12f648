/* Lamina — size checks shared by the layer plugins.
 *
 * Per-sample shapes reach a layer's build() from the config ([model] input, reshape's shape,
 * kernel sizes, padding), so their element counts can be anything a user types.  A count that
 * wraps past 2^64 can equal a plausible one and size a buffer far smaller than the shape, so
 * every layer that multiplies dims checks the shapes it sees and makes before using their
 * counts.  Header-only for the reason given in spatial.h: each plugin is its own .so built
 * from the public headers alone.
 */
#pragma once

#include <lamina/lamina.h>

/*
 * Checks that a tensor of @shape and @dtype can exist (lmn_shape_nbytes_checked).  Otherwise
 * sets a LMN_CONFIG_ERROR_GRAPH error naming the layer, @what ("its input", "its weight"), the
 * shape (@per_sample: an activation's shape without the batch dimension) and its approximate
 * size, and @hint (what to change), and returns FALSE.  A batch that makes a per-sample shape
 * too large is caught when the tensor is allocated.
 */
static inline gboolean lmn_sizes_check(LmnLayer *layer, const char *type, const char *what,
                                       const LmnShape *shape, gboolean per_sample, LmnDType dtype,
                                       const char *hint, GError **error)
{
    if (lmn_shape_nbytes_checked(shape, dtype, NULL)) {
        return TRUE;
    }
    /* The count in floating point, for the message only: it cannot overflow. */
    double approx = 1.0;
    for (guint i = 0; i < shape->ndim; i++) {
        approx *= (double) shape->dims[i];
    }
    g_autofree char *s = lmn_shape_to_string(shape);
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                "layer '%s' (%s): %s %s%s would hold about %.3g values, more than one tensor "
                "can (at most %" G_GUINT64_FORMAT " %s values); %s",
                lmn_layer_get_name(layer), type, what, s, per_sample ? " per sample" : "", approx,
                (guint64) (LMN_TENSOR_MAX_BYTES / lmn_dtype_size(dtype)), lmn_dtype_name(dtype),
                hint);
    return FALSE;
}

/* The hint for an input that is already too large: the cause is upstream. */
#define LMN_SIZES_INPUT_HINT "check [model] input and the layers before this one"
