/* Lamina — spatial padding and cropping of [C, H, W] images: pad (torch.nn.functional.pad with
 * mode constant, reflect or replicate) and crop (its inverse, slicing a border off); and slice,
 * a range of one axis of any input (x[..., start:end, ...]).
 *
 * Both are built from lmn_op_copy_block, in two passes through a saved [C, H, OW] (or [C, OH,
 * W]) intermediate: a copy_block moves rows of equal stride, and the rows of one pass are
 * uniform — the width pass treats the batch as N*C*H rows of W values, the height pass as N*C
 * planes of H*OW values — where a single pass would need a stride change at every plane.
 *
 * Padding a border column or row copies an input column or row: the same one for every pad
 * column (replicate), or the mirror image about the edge (reflect, the edge itself excluded, as
 * PyTorch does).  Backward is the adjoint: the interior of dY is copied back, and each border
 * column or row of dY is added (copy_block with beta = 1) onto the input column or row it came
 * from, so a pixel copied several times collects every contribution.  That is one launch per
 * border column and row, which stays small for the few pixels of padding networks use.
 */
#include <lamina/lamina.h>

#include "spatial.h"

enum { SAVED_MID = 0 };

typedef enum { PAD_CONSTANT = 0, PAD_REFLECT = 1, PAD_REPLICATE = 2 } PadMode;

typedef struct {
    gint64 c, h, w; /* input */
    gint64 oh, ow;  /* output */
    gint64 left, right, top, bottom;
    PadMode mode;
    float value;
} Pad;

/* Reads (left, right, top, bottom) from @key: one value for every side or four. */
static gboolean pad_sides(LmnLayer *layer, const char *type, const char *key, gint64 out[4],
                          GError **error)
{
    gsize n = 0;
    const double *v = lmn_params_get_float_list(lmn_layer_get_params(layer), key, &n);
    if (n != 1 && n != 4) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "layer '%s' (%s): %s has %" G_GSIZE_FORMAT " values; give one for every "
                    "side or four as \"left, right, top, bottom\"",
                    lmn_layer_get_name(layer), type, key, n);
        return FALSE;
    }
    for (gsize i = 0; i < 4; i++) {
        double x = v[n == 4 ? i : 0];
        if (x != (double) (gint64) x) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                        "layer '%s' (%s): %s value %g is not an integer", lmn_layer_get_name(layer),
                        type, key, x);
            return FALSE;
        }
        out[i] = (gint64) x;
    }
    return TRUE;
}

/* The input must be an f32 image; its [C, H, W] go to @c, @h, @w. */
static gboolean pad_input(LmnLayer *layer, const char *type, const LmnTensorInfo *in, gint64 *c,
                          gint64 *h, gint64 *w, GError **error)
{
    if (in->shape.ndim != 3 || in->dtype != LMN_DTYPE_F32) {
        g_autofree char *shape = lmn_shape_to_string(&in->shape);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (%s): its input is %s %s, but %s takes f32 images [channels, "
                    "height, width]",
                    lmn_layer_get_name(layer), type, lmn_dtype_name(in->dtype), shape, type);
        return FALSE;
    }
    *c = in->shape.dims[0];
    *h = in->shape.dims[1];
    *w = in->shape.dims[2];
    return TRUE;
}

/* Reflect needs each pad below the size of its axis, replicate a non-empty axis (PyTorch). */
static gboolean pad_check_mode(LmnLayer *layer, const Pad *p, GError **error)
{
    if (p->mode != PAD_REFLECT)
        return TRUE;
    if (MAX(p->left, p->right) < p->w && MAX(p->top, p->bottom) < p->h)
        return TRUE;
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                "layer '%s' (pad): mode = reflect needs padding smaller than the input's size on "
                "each axis, but padding = %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                ", %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT " meets an image of %" G_GINT64_FORMAT
                "x%" G_GINT64_FORMAT "; use less padding or mode = replicate",
                lmn_layer_get_name(layer), p->left, p->right, p->top, p->bottom, p->h, p->w);
    return FALSE;
}

static gboolean pad_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                          LmnTensorInfo *output, GError **error)
{
    const LmnParams *params = lmn_layer_get_params(layer);
    Pad p = {0};
    gint64 s[4];
    if (!pad_input(layer, "pad", &inputs[0], &p.c, &p.h, &p.w, error) ||
        !pad_sides(layer, "pad", "padding", s, error))
        return FALSE;
    p.left = s[0], p.right = s[1], p.top = s[2], p.bottom = s[3];
    const char *mode = lmn_params_get_string(params, "mode");
    p.mode = g_str_equal(mode, "reflect")     ? PAD_REFLECT
             : g_str_equal(mode, "replicate") ? PAD_REPLICATE
                                              : PAD_CONSTANT;
    p.value = (float) lmn_params_get_float(params, "value");
    if (!pad_check_mode(layer, &p, error))
        return FALSE;
    /* Each side is at most G_MAXINT32 (the schema) and H, W fit a tensor: no overflow. */
    p.oh = p.h + p.top + p.bottom;
    p.ow = p.w + p.left + p.right;
    LmnShape out = lmn_shape_make(3, p.c, p.oh, p.ow);
    LmnShape mid = lmn_shape_make(3, p.c, p.h, p.ow);
    if (!lmn_layer_check_size(layer, "its output", &out, TRUE, LMN_DTYPE_F32, "use less padding",
                              error))
        return FALSE;
    lmn_layer_set_private(layer, g_memdup2(&p, sizeof p), g_free);
    lmn_layer_add_saved(layer, "padded_columns", &mid, LMN_DTYPE_F32, TRUE);
    output->shape = out;
    output->dtype = LMN_DTYPE_F32;
    return TRUE;
}

/* The input index a border position @i (< 0 or >= @n) copies, for reflect or replicate. */
static gint64 pad_source(PadMode mode, gint64 i, gint64 n)
{
    if (mode == PAD_REPLICATE)
        return i < 0 ? 0 : n - 1;
    return i < 0 ? -i : 2 * (n - 1) - i;
}

/*
 * Copies the border columns (@cols, width pass) or rows (height pass) from their sources, or
 * adds them back onto their sources when @adjoint.  @rows, @stride_in, @stride_out describe the
 * pass as copy_block sees it, @unit is the size of one column (1) or row (OW), @n the axis
 * length, @before / @after the pad sizes.
 */
typedef struct {
    gint64 rows, stride_in, stride_out, unit, n, before, after;
} PadPass;

static void pad_border(const Pad *p, const PadPass *s, LmnTensor *in, LmnTensor *out,
                       gboolean adjoint)
{
    for (gint64 j = -s->before; j < s->n + s->after; j++) {
        if (j >= 0 && j < s->n)
            continue;
        gint64 src = pad_source(p->mode, j, s->n) * s->unit;
        gint64 dst = (j + s->before) * s->unit;
        if (adjoint)
            lmn_op_copy_block(in, src, s->stride_in, out, dst, s->stride_out, s->rows, s->unit,
                              1.0f);
        else
            lmn_op_copy_block(out, dst, s->stride_out, in, src, s->stride_in, s->rows, s->unit,
                              0.0f);
    }
}

static PadPass pad_width_pass(const Pad *p, gint64 batch)
{
    return (PadPass){batch * p->c * p->h, p->w, p->ow, 1, p->w, p->left, p->right};
}

static PadPass pad_height_pass(const Pad *p, gint64 batch)
{
    return (PadPass){batch * p->c, p->h * p->ow, p->oh * p->ow, p->ow, p->h, p->top, p->bottom};
}

static void pad_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Pad *p = lmn_layer_get_private(layer);
    LmnTensor *mid = lmn_layer_get_saved(layer, SAVED_MID);
    PadPass wp = pad_width_pass(p, io->batch), hp = pad_height_pass(p, io->batch);
    if (p->mode == PAD_CONSTANT) {
        lmn_op_fill(mid, p->value);
        lmn_op_fill(io->output, p->value);
    }
    lmn_op_copy_block(mid, p->left, p->ow, io->inputs[0], 0, p->w, wp.rows, p->w, 0.0f);
    if (p->mode != PAD_CONSTANT)
        pad_border(p, &wp, io->inputs[0], mid, FALSE);
    lmn_op_copy_block(io->output, p->top * p->ow, hp.stride_out, mid, 0, hp.stride_in, hp.rows,
                      p->h * p->ow, 0.0f);
    if (p->mode != PAD_CONSTANT)
        pad_border(p, &hp, mid, io->output, FALSE);
}

static void pad_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Pad *p = lmn_layer_get_private(layer);
    LmnTensor *dx = io->input_grads[0];
    if (dx == NULL)
        return;
    LmnTensor *mid = lmn_layer_get_saved(layer, SAVED_MID);
    PadPass wp = pad_width_pass(p, io->batch), hp = pad_height_pass(p, io->batch);
    lmn_op_copy_block(mid, 0, hp.stride_in, io->output_grad, p->top * p->ow, hp.stride_out, hp.rows,
                      p->h * p->ow, 0.0f);
    if (p->mode != PAD_CONSTANT)
        pad_border(p, &hp, mid, io->output_grad, TRUE);
    lmn_op_copy_block(dx, 0, p->w, mid, p->left, p->ow, wp.rows, p->w, 0.0f);
    if (p->mode != PAD_CONSTANT)
        pad_border(p, &wp, dx, mid, TRUE);
}

/* ---- crop: y = x[:, :, top : H - bottom, left : W - right] ---- */

static gboolean crop_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                           LmnTensorInfo *output, GError **error)
{
    Pad p = {0};
    gint64 s[4];
    if (!pad_input(layer, "crop", &inputs[0], &p.c, &p.h, &p.w, error) ||
        !pad_sides(layer, "crop", "cropping", s, error))
        return FALSE;
    p.left = s[0], p.right = s[1], p.top = s[2], p.bottom = s[3];
    /* Each side is at most G_MAXINT32 (the schema): the sums cannot overflow. */
    if (p.left + p.right >= p.w || p.top + p.bottom >= p.h) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (crop): cropping = %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                    ", %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT " (left, right, top, bottom) "
                    "leaves nothing of its %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT " input; "
                    "crop less",
                    lmn_layer_get_name(layer), p.left, p.right, p.top, p.bottom, p.h, p.w);
        return FALSE;
    }
    p.oh = p.h - p.top - p.bottom;
    p.ow = p.w - p.left - p.right;
    LmnShape mid = lmn_shape_make(3, p.c, p.oh, p.w);
    lmn_layer_set_private(layer, g_memdup2(&p, sizeof p), g_free);
    lmn_layer_add_saved(layer, "cropped_rows", &mid, LMN_DTYPE_F32, TRUE);
    output->shape = lmn_shape_make(3, p.c, p.oh, p.ow);
    output->dtype = LMN_DTYPE_F32;
    return TRUE;
}

static void crop_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Pad *p = lmn_layer_get_private(layer);
    LmnTensor *mid = lmn_layer_get_saved(layer, SAVED_MID);
    gint64 planes = io->batch * p->c;
    lmn_op_copy_block(mid, 0, p->oh * p->w, io->inputs[0], p->top * p->w, p->h * p->w, planes,
                      p->oh * p->w, 0.0f);
    lmn_op_copy_block(io->output, 0, p->ow, mid, p->left, p->w, planes * p->oh, p->ow, 0.0f);
}

static void crop_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Pad *p = lmn_layer_get_private(layer);
    LmnTensor *dx = io->input_grads[0];
    if (dx == NULL)
        return;
    LmnTensor *mid = lmn_layer_get_saved(layer, SAVED_MID);
    gint64 planes = io->batch * p->c;
    lmn_op_fill(mid, 0.0f);
    lmn_op_fill(dx, 0.0f);
    lmn_op_copy_block(mid, p->left, p->w, io->output_grad, 0, p->ow, planes * p->oh, p->ow, 0.0f);
    lmn_op_copy_block(dx, p->top * p->w, p->h * p->w, mid, 0, p->oh * p->w, planes, p->oh * p->w,
                      0.0f);
}

/* ---- slice: y = x[:, ..., start:end, ...] along one per-sample axis ---- */

typedef struct {
    gint64 outer, dim, inner; /* per sample: prod(dims before axis), the axis, prod(after) */
    gint64 start, len;
} Slice;

/* Python's reading of a slice bound: negative counts from the end, then clamped to [0, dim]. */
static gint64 slice_bound(gint64 v, gint64 dim)
{
    if (v < 0)
        v += dim;
    return CLAMP(v, 0, dim);
}

static gboolean slice_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                            LmnTensorInfo *output, GError **error)
{
    const LmnParams *p = lmn_layer_get_params(layer);
    const LmnShape *s = &inputs[0].shape;
    gint64 axis = lmn_params_get_int(p, "axis"), ndim = (gint64) s->ndim;
    g_autofree char *shape = lmn_shape_to_string(s);
    if (axis < -ndim || axis >= ndim || inputs[0].dtype != LMN_DTYPE_F32) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (slice): axis = %" G_GINT64_FORMAT " does not name an axis of "
                    "its %s input %s (per-sample axes %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT
                    ", f32)",
                    lmn_layer_get_name(layer), axis, lmn_dtype_name(inputs[0].dtype), shape, -ndim,
                    ndim - 1);
        return FALSE;
    }
    axis = axis < 0 ? axis + ndim : axis;
    Slice sl = {.outer = 1, .dim = s->dims[axis], .inner = 1};
    for (gint64 d = 0; d < ndim; d++) {
        if (d < axis)
            sl.outer *= s->dims[d]; /* the input fits a tensor: no overflow */
        else if (d > axis)
            sl.inner *= s->dims[d];
    }
    sl.start = slice_bound(lmn_params_get_int(p, "start"), sl.dim);
    gint64 end = slice_bound(lmn_params_get_int(p, "end"), sl.dim);
    if (end <= sl.start) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (slice): start = %" G_GINT64_FORMAT " and end = %" G_GINT64_FORMAT
                    " select nothing of axis %" G_GINT64_FORMAT " (size %" G_GINT64_FORMAT
                    ") of its input %s; end must come after start",
                    lmn_layer_get_name(layer), lmn_params_get_int(p, "start"),
                    lmn_params_get_int(p, "end"), axis, sl.dim, shape);
        return FALSE;
    }
    sl.len = end - sl.start;
    lmn_layer_set_private(layer, g_memdup2(&sl, sizeof sl), g_free);
    output->shape = *s;
    output->shape.dims[axis] = sl.len;
    output->dtype = LMN_DTYPE_F32;
    return TRUE;
}

/* Rows of the copy: every (sample, outer index); a row is len * inner contiguous values. */
static void slice_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Slice *sl = lmn_layer_get_private(layer);
    lmn_op_copy_block(io->output, 0, sl->len * sl->inner, io->inputs[0], sl->start * sl->inner,
                      sl->dim * sl->inner, io->batch * sl->outer, sl->len * sl->inner, 0.0f);
}

static void slice_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Slice *sl = lmn_layer_get_private(layer);
    LmnTensor *dx = io->input_grads[0];
    if (dx == NULL)
        return;
    lmn_op_fill(dx, 0.0f);
    lmn_op_copy_block(dx, sl->start * sl->inner, sl->dim * sl->inner, io->output_grad, 0,
                      sl->len * sl->inner, io->batch * sl->outer, sl->len * sl->inner, 0.0f);
}

static const LmnParamSpec slice_params[] = {
    LMN_PARAM_SPEC_INT("axis", NULL, -LMN_MAX_DIMS, LMN_MAX_DIMS - 1, LMN_PARAM_FLAG_REQUIRED,
                       "the per-sample axis sliced (0 is the first after the batch; -1 the last)"),
    LMN_PARAM_SPEC_INT("start", "0", -(double) G_MAXINT32, (double) G_MAXINT32, 0,
                       "first index kept; negative counts from the end"),
    LMN_PARAM_SPEC_INT("end", "2147483647", -(double) G_MAXINT32, (double) G_MAXINT32, 0,
                       "index after the last kept (clamped to the axis); negative counts from "
                       "the end"),
    LMN_PARAM_SPEC_END,
};

static const LmnLayerVTable slice_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .min_inputs = 1,
    .max_inputs = 1,
    .build = slice_build,
    .forward = slice_forward,
    .backward = slice_backward,
};

static const char *const pad_modes[] = {"constant", "reflect", "replicate", NULL};

static const LmnParamSpec pad_params[] = {
    LMN_PARAM_SPEC_FLOAT_LIST("padding", NULL, 0, (double) G_MAXINT32, LMN_PARAM_FLAG_REQUIRED,
                              "pixels added on each side: one integer, or \"left, right, top, "
                              "bottom\" (torch.nn.functional.pad's order)"),
    LMN_PARAM_SPEC_ENUM("mode", "constant", pad_modes,
                        "constant (value), reflect (mirror without the edge) or replicate "
                        "(repeat the edge)"),
    LMN_PARAM_SPEC_FLOAT("value", "0", -INFINITY, INFINITY, 0, "the fill value of mode = constant"),
    LMN_PARAM_SPEC_END,
};

static const LmnParamSpec crop_params[] = {
    LMN_PARAM_SPEC_FLOAT_LIST("cropping", NULL, 0, (double) G_MAXINT32, LMN_PARAM_FLAG_REQUIRED,
                              "pixels removed on each side: one integer, or \"left, right, top, "
                              "bottom\""),
    LMN_PARAM_SPEC_END,
};

static const LmnLayerVTable pad_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .min_inputs = 1,
    .max_inputs = 1,
    .build = pad_build,
    .forward = pad_forward,
    .backward = pad_backward,
};

static const LmnLayerVTable crop_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .min_inputs = 1,
    .max_inputs = 1,
    .build = crop_build,
    .forward = crop_forward,
    .backward = crop_backward,
};

static const LmnFeatureDesc pad_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "pad",
                "pads [C, H, W] images with a constant, their reflection or their edge "
                "(torch.nn.functional.pad)",
                pad_params, &pad_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "crop",
                "removes a border from [C, H, W] images (x[:, :, top:H-bottom, left:W-right])",
                crop_params, &crop_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "slice",
                "keeps indices start..end-1 of one axis (x[..., start:end, ...], Python's "
                "bounds)",
                slice_params, &slice_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.pad", LMN_VERSION_STRING, "MIT",
                           "Padding, cropping and slicing layers", pad_features)
