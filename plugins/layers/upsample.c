/* Lamina — upsampling of [C, H, W] images, as torch.nn.Upsample (nearest or bilinear, by a
 * scale factor or to a size, align_corners for bilinear).
 *
 * Forward and backward are the ABI 1.3 ops lmn_op_upsample2d and its adjoint, which take the
 * source-coordinate scale PyTorch uses: with scale_factor given, 1 / scale_factor (not in / out,
 * which differs when in * scale_factor is not whole), else in / out; with align_corners,
 * (in - 1) / (out - 1).
 */
#include <math.h>

#include <lamina/lamina.h>

#define TYPE "upsample"

typedef struct {
    LmnUpsampleMode mode;
    LmnUpsampleGeom geom; /* planes per sample; multiplied by the batch per call */
} Upsample;

/* Reads @key (one value for both axes or "height, width") into @out; FALSE when absent. */
static gboolean upsample_pair(const LmnParams *p, const char *key, double out[2], gsize *n)
{
    const double *v = lmn_params_get_float_list(p, key, n);
    if (*n == 0)
        return FALSE;
    out[0] = v[0];
    out[1] = v[*n >= 2 ? 1 : 0];
    return TRUE;
}

static gboolean upsample_fail(LmnLayer *layer, gint code, const char *what, GError **error)
{
    g_set_error(error, LMN_CONFIG_ERROR, code, "layer '%s' (" TYPE "): %s",
                lmn_layer_get_name(layer), what);
    return FALSE;
}

/* One output size and its source scale, from scale_factor (@by_factor) or size. */
static gboolean upsample_axis(LmnLayer *layer, gint64 in, double v, gboolean by_factor,
                              gboolean align, gint64 *out, float *scale, GError **error)
{
    double o = by_factor ? floor((double) in * v) : v;
    if (v != v || o < 1 || o > (double) G_MAXINT32 || (!by_factor && o != floor(o)))
        return upsample_fail(layer, LMN_CONFIG_ERROR_INVALID,
                             by_factor ? "scale_factor gives an output with no pixel or more "
                                         "than 2^31 - 1 on an axis; use another scale_factor"
                                       : "size must hold whole numbers in [1, 2^31 - 1]",
                             error);
    *out = (gint64) o;
    if (align)
        *scale = *out > 1 ? (float) ((double) (in - 1) / (double) (*out - 1)) : 0.0f;
    else
        *scale = by_factor ? (float) (1.0 / v) : (float) ((double) in / (double) *out);
    return TRUE;
}

/* Exactly one of scale_factor and size; align_corners only with bilinear, as PyTorch asks. */
static gboolean upsample_keys(LmnLayer *layer, double v[2], gboolean *by_factor, GError **error)
{
    const LmnParams *p = lmn_layer_get_params(layer);
    double s[2], z[2];
    gsize ns = 0, nz = 0;
    gboolean has_s = upsample_pair(p, "scale_factor", s, &ns);
    gboolean has_z = upsample_pair(p, "size", z, &nz);
    if (has_s == has_z)
        return upsample_fail(layer, LMN_CONFIG_ERROR_INVALID,
                             "give exactly one of scale_factor and size", error);
    if ((has_s ? ns : nz) > 2)
        return upsample_fail(layer, LMN_CONFIG_ERROR_INVALID,
                             has_s ? "scale_factor takes one value or \"height, width\""
                                   : "size takes one value or \"height, width\"",
                             error);
    if (lmn_params_get_bool(p, "align_corners") &&
        !g_str_equal(lmn_params_get_string(p, "mode"), "bilinear"))
        return upsample_fail(layer, LMN_CONFIG_ERROR_INVALID,
                             "align_corners applies to mode = bilinear only; remove it", error);
    v[0] = has_s ? s[0] : z[0];
    v[1] = has_s ? s[1] : z[1];
    *by_factor = has_s;
    return TRUE;
}

static gboolean upsample_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                               LmnTensorInfo *output, GError **error)
{
    const LmnParams *p = lmn_layer_get_params(layer);
    const LmnShape *s = &inputs[0].shape;
    if (s->ndim != 3 || inputs[0].dtype != LMN_DTYPE_F32) {
        g_autofree char *shape = lmn_shape_to_string(s);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (" TYPE "): its input is %s %s, but " TYPE " takes f32 images "
                    "[channels, height, width]",
                    lmn_layer_get_name(layer), lmn_dtype_name(inputs[0].dtype), shape);
        return FALSE;
    }
    double v[2];
    gboolean by_factor;
    if (!upsample_keys(layer, v, &by_factor, error))
        return FALSE;
    Upsample u = {.mode = g_str_equal(lmn_params_get_string(p, "mode"), "bilinear")
                              ? LMN_UPSAMPLE_BILINEAR
                              : LMN_UPSAMPLE_NEAREST};
    LmnUpsampleGeom *g = &u.geom;
    *g = (LmnUpsampleGeom){.struct_size = sizeof(LmnUpsampleGeom),
                           .planes = s->dims[0],
                           .in_h = s->dims[1],
                           .in_w = s->dims[2],
                           .align_corners = lmn_params_get_bool(p, "align_corners")};
    if (!upsample_axis(layer, g->in_h, v[0], by_factor, g->align_corners, &g->out_h, &g->scale_h,
                       error) ||
        !upsample_axis(layer, g->in_w, v[1], by_factor, g->align_corners, &g->out_w, &g->scale_w,
                       error))
        return FALSE;
    LmnShape out = lmn_shape_make(3, s->dims[0], g->out_h, g->out_w);
    if (!lmn_layer_check_size(layer, "its output", &out, TRUE, LMN_DTYPE_F32,
                              "use a smaller scale_factor or size", error))
        return FALSE;
    lmn_layer_set_private(layer, g_memdup2(&u, sizeof u), g_free);
    output->shape = out;
    output->dtype = LMN_DTYPE_F32;
    return TRUE;
}

static void upsample_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Upsample *u = lmn_layer_get_private(layer);
    LmnUpsampleGeom g = u->geom;
    g.planes *= io->batch;
    lmn_op_upsample2d(u->mode, io->inputs[0], io->output, &g);
}

static void upsample_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Upsample *u = lmn_layer_get_private(layer);
    if (io->input_grads[0] == NULL)
        return;
    LmnUpsampleGeom g = u->geom;
    g.planes *= io->batch;
    lmn_op_upsample2d_backward(u->mode, io->output_grad, io->input_grads[0], &g);
}

static const char *const upsample_modes[] = {"nearest", "bilinear", NULL};

static const LmnParamSpec upsample_params[] = {
    LMN_PARAM_SPEC_ENUM("mode", "nearest", upsample_modes,
                        "nearest (PyTorch's 'nearest') or bilinear interpolation"),
    LMN_PARAM_SPEC_FLOAT_LIST("scale_factor", NULL, 1e-6, 1e6, 0,
                              "output size = floor(input size * scale_factor): one value, or "
                              "\"height, width\" (give this or size)"),
    LMN_PARAM_SPEC_FLOAT_LIST("size", NULL, 1, (double) G_MAXINT32, 0,
                              "output size: one integer, or \"height, width\" (give this or "
                              "scale_factor)"),
    LMN_PARAM_SPEC_BOOL("align_corners", "false",
                        "bilinear only: align the corner pixels' centres of input and output"),
    LMN_PARAM_SPEC_END,
};

static const LmnLayerVTable upsample_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .min_inputs = 1,
    .max_inputs = 1,
    .build = upsample_build,
    .forward = upsample_forward,
    .backward = upsample_backward,
};

static const LmnFeatureDesc upsample_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, TYPE,
                "resizes [C, H, W] images by nearest or bilinear interpolation "
                "(torch.nn.Upsample)",
                upsample_params, &upsample_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.upsample", LMN_VERSION_STRING, "MIT", "Upsampling layer",
                           upsample_features)
