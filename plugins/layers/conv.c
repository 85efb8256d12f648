/* Lamina — 2-D convolution, as torch.nn.Conv2d (cross-correlation, zero padding).
 *
 * Forward is im2col followed by GEMMs: cols [N, C*kh*kw, OH*OW] is the per-sample patch matrix,
 * and for each group g the output block Y[n, g] [OC/G, OH*OW] = W_g [OC/G, C/G*kh*kw] x
 * cols[n, g]; one batched GEMM per group covers the whole batch (the weight is broadcast with a
 * zero stride).  Rows of cols are ordered (channel, kernel row, kernel column), so group g's rows
 * are a contiguous block, and the weight [OC, C/G, kh, kw] (PyTorch's layout, so checkpoints load
 * into nn.Conv2d by name) is already the row-major [OC, C/G*kh*kw] matrix the GEMM wants.
 *
 * Backward:
 *   dW   = sum over n of dY[n] cols[n]^T: one batched GEMM writes the per-sample terms into a
 *          scratch [N, OC, C/G*kh*kw], and a GEMM with a column of ones sums them, so the whole
 *          reduction is two launches (a loop of N accumulating GEMMs would serialise N dependent
 *          launches on a device backend);
 *   db   = lmn_op_bias_grad over (N, OC, OH*OW);
 *   dx   = col2im(W^T dY), where W^T dY is written over cols: once dW is computed nothing needs
 *          the patches of this batch any more, and reusing them saves a tensor as large as the
 *          layer's largest.
 * A 1x1 convolution with stride 1 and no padding needs no im2col at all: cols would equal the
 * input, so the GEMMs read the input and write dx directly.
 *
 * Every tensor is declared in build(), so forward and backward allocate nothing.
 *
 * A backend with the ABI 1.4 convolution ops (lmn_backend_has_native_conv2d: the CPU backend
 * lowers image by image into cache-sized scratch; a GPU backend may run an implicit GEMM) runs
 * all three products itself and the layer only adds the bias; the patch matrix and the other
 * scratch of the GEMM path are then not declared at all.
 */
#include <math.h>

#include <lamina/lamina.h>

#include "spatial.h"

enum { PARAM_WEIGHT = 0, PARAM_BIAS = 1 };

typedef struct {
    LmnConv2dGeom geom; /* batch filled in per call */
    gint64 out_ch;
    gint64 groups;
    gint64 k;     /* rows of one group's patch block: C/G * kh * kw */
    gint64 l;     /* output pixels per channel: OH * OW */
    gint64 rows;  /* rows of the whole patch matrix: C * kh * kw */
    gboolean bias;
    gboolean direct; /* 1x1, stride 1, no padding: the input is its own patch matrix */
    gboolean native; /* the backend runs the convolution (ABI 1.4); no scratch declared */
    guint saved_cols, saved_scratch, saved_ones;
} Conv;

/* The window geometry from the layer's keys and its input, and groups dividing the channels. */
static gboolean conv_geometry(LmnLayer *layer, const LmnTensorInfo *input, LmnConv2dGeom *geom,
                              GError **error)
{
    const LmnParams *p = lmn_layer_get_params(layer);
    const char *name = lmn_layer_get_name(layer);
    gint64 kernel[2], stride[2], padding[2], dilation[2];
    if (!lmn_spatial_pair(layer, "conv2d", "kernel_size", NULL, kernel, error) ||
        !lmn_spatial_pair(layer, "conv2d", "stride", NULL, stride, error) ||
        !lmn_spatial_pair(layer, "conv2d", "padding", NULL, padding, error) ||
        !lmn_spatial_pair(layer, "conv2d", "dilation", NULL, dilation, error) ||
        !lmn_spatial_geometry(layer, "conv2d", input, kernel, stride, padding, dilation, geom,
                              error))
        return FALSE;
    gint64 out_ch = lmn_params_get_int(p, "out_channels");
    gint64 groups = lmn_params_get_int(p, "groups");
    if (geom->channels % groups != 0) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (conv2d): its input has %" G_GINT64_FORMAT " channels, which "
                    "groups = %" G_GINT64_FORMAT " does not divide",
                    name, geom->channels, groups);
        return FALSE;
    }
    if (out_ch % groups != 0) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (conv2d): out_channels = %" G_GINT64_FORMAT " is not divisible "
                    "by groups = %" G_GINT64_FORMAT,
                    name, out_ch, groups);
        return FALSE;
    }
    return TRUE;
}

/*
 * The weight and bias, and the saved tensors.  torch.nn.Conv2d.reset_parameters:
 * kaiming_uniform_(weight, a=sqrt(5)) with PyTorch's fans (fan_in = C/G * kh * kw, fan_out =
 * OC * kh * kw); the bias is U(+-1/sqrt(fan_in)), which is the same he_uniform seeing the
 * weight's fan_in.
 */
static void conv_declare(LmnLayer *layer, Conv *c, const LmnShape *w, const LmnShape *cols)
{
    double fan_in = (double) c->k;
    double fan_out = (double) (c->out_ch * c->geom.kernel_h * c->geom.kernel_w);
    lmn_layer_add_param(layer, "weight", w, LMN_PARAM_ROLE_WEIGHT, "he_uniform",
                        "a=2.23606797749979, mode=fan_in", fan_in, fan_out);
    if (c->bias) {
        LmnShape b = lmn_shape_make(1, c->out_ch);
        lmn_layer_add_param(layer, "bias", &b, LMN_PARAM_ROLE_BIAS, "he_uniform",
                            "a=2.23606797749979, mode=fan_in", fan_in, fan_out);
    }
    /* A backend with its own convolution ops needs none of the GEMM path's scratch. */
    if (c->native)
        return;
    if (!c->direct)
        c->saved_cols = lmn_layer_add_saved(layer, "cols", cols, LMN_DTYPE_F32, TRUE);
    LmnShape scratch = lmn_shape_make(2, c->out_ch, c->k);
    c->saved_scratch = lmn_layer_add_saved(layer, "dweight_terms", &scratch, LMN_DTYPE_F32, TRUE);
    LmnShape one = lmn_shape_make(1, (gint64) 1);
    c->saved_ones = lmn_layer_add_saved(layer, "ones", &one, LMN_DTYPE_F32, TRUE);
}

static gboolean conv_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                           LmnTensorInfo *output, GError **error)
{
    const LmnParams *p = lmn_layer_get_params(layer);
    LmnConv2dGeom geom;
    if (!conv_geometry(layer, &inputs[0], &geom, error))
        return FALSE;
    gint64 out_ch = lmn_params_get_int(p, "out_channels");
    gint64 groups = lmn_params_get_int(p, "groups");
    LmnShape out = lmn_shape_make(3, out_ch, geom.out_h, geom.out_w);
    LmnShape w = lmn_shape_make(4, out_ch, geom.channels / groups, geom.kernel_h, geom.kernel_w);
    /* Kernel sizes and padding come from the config, so the output, the weight and the patch
     * matrix are checked before any count is used.  Once the weight [OC, C/G, kh, kw] fits, so
     * do K = C/G * kh * kw and C * kh * kw (OC >= G, as G divides OC), and OH * OW fits once
     * the output does: the patch matrix's dims below cannot overflow. */
    if (!lmn_layer_check_size(layer, "its output", &out, TRUE, LMN_DTYPE_F32,
                              "use less padding, fewer out_channels or a smaller input", error) ||
        !lmn_layer_check_size(layer, "its weight", &w, FALSE, LMN_DTYPE_F32,
                              "use a smaller kernel_size or fewer channels", error))
        return FALSE;
    gboolean direct = geom.kernel_h == 1 && geom.kernel_w == 1 && geom.stride_h == 1 &&
                      geom.stride_w == 1 && geom.pad_h == 0 && geom.pad_w == 0;
    LmnShape cols =
        lmn_shape_make(2, geom.channels * geom.kernel_h * geom.kernel_w, geom.out_h * geom.out_w);
    if (!direct &&
        !lmn_layer_check_size(layer, "its patch matrix (im2col)", &cols, TRUE, LMN_DTYPE_F32,
                              "use a smaller kernel_size, a larger stride or less padding", error))
        return FALSE;

    Conv *c = g_new0(Conv, 1);
    c->geom = geom;
    c->out_ch = out_ch;
    c->groups = groups;
    c->k = geom.channels / groups * geom.kernel_h * geom.kernel_w;
    c->l = cols.dims[1];
    c->rows = cols.dims[0];
    c->bias = lmn_params_get_bool(p, "bias");
    c->direct = direct;
    c->native = lmn_backend_has_native_conv2d(lmn_layer_get_backend(layer));
    lmn_layer_set_private(layer, c, g_free);
    conv_declare(layer, c, &w, &cols);
    output->shape = out;
    output->dtype = LMN_DTYPE_F32;
    return TRUE;
}

/* The layer as an ABI 1.4 convolution of @batch images. */
static LmnConv2dDesc conv_desc(const Conv *c, gint64 batch)
{
    return lmn_spatial_conv_desc(&c->geom, batch, c->geom.channels, c->out_ch, c->groups);
}

/* The patch matrix of this batch: the saved cols, or the input itself for a direct conv. */
static LmnTensor *conv_patches(LmnLayer *layer, const Conv *c, const LmnLayerIO *io)
{
    return c->direct ? io->inputs[0] : lmn_layer_get_saved(layer, c->saved_cols);
}

static void conv_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Conv *c = lmn_layer_get_private(layer);
    if (c->native) {
        LmnConv2dDesc d = conv_desc(c, io->batch);
        lmn_op_conv2d_forward(&d, io->inputs[0], lmn_layer_get_param(layer, PARAM_WEIGHT),
                              io->output, NULL);
        if (c->bias)
            lmn_op_bias_add(io->output, lmn_layer_get_param(layer, PARAM_BIAS), io->batch,
                            c->out_ch, c->l);
        return;
    }
    LmnConv2dGeom g = c->geom;
    g.batch = io->batch;
    LmnTensor *cols = conv_patches(layer, c, io);
    if (!c->direct) {
        lmn_op_im2col(io->inputs[0], cols, &g);
    }
    const gint64 ocg = c->out_ch / c->groups;
    for (gint64 grp = 0; grp < c->groups; grp++) {
        /* Y[n, grp] [ocg, L] = W_grp [ocg, K] x cols[n, grp] [K, L] for every n */
        LmnGemm gemm = {
            .struct_size = sizeof(LmnGemm),
            .m = ocg, .n = c->l, .k = c->k,
            .alpha = 1.0f, .beta = 0.0f,
            .a = lmn_layer_get_param(layer, PARAM_WEIGHT), .b = cols, .c = io->output,
            .a_offset = grp * ocg * c->k,
            .b_offset = grp * c->k * c->l,
            .c_offset = grp * ocg * c->l,
            .batch = io->batch,
            .stride_a = 0, .stride_b = c->rows * c->l, .stride_c = c->out_ch * c->l,
        };
        lmn_op_gemm(&gemm);
    }
    if (c->bias) {
        lmn_op_bias_add(io->output, lmn_layer_get_param(layer, PARAM_BIAS), io->batch, c->out_ch,
                        c->l);
    }
}

/* dW (and db) from dY and the forward pass's patches. */
static void conv_param_grads(LmnLayer *layer, const Conv *c, const LmnLayerIO *io, LmnTensor *cols)
{
    LmnTensor *dw = lmn_layer_get_grad(layer, PARAM_WEIGHT);
    const gint64 ocg = c->out_ch / c->groups;
    /* With one sample the per-sample term is the sum: write it straight into dW. */
    LmnTensor *terms = io->batch == 1 ? dw : lmn_layer_get_saved(layer, c->saved_scratch);
    for (gint64 grp = 0; grp < c->groups; grp++) {
        /* terms[n, grp] [ocg, K] = dY[n, grp] [ocg, L] x cols[n, grp]^T [L, K] */
        LmnGemm gemm = {
            .struct_size = sizeof(LmnGemm),
            .trans_b = TRUE,
            .m = ocg, .n = c->k, .k = c->l,
            .alpha = 1.0f, .beta = 0.0f,
            .a = io->output_grad, .b = cols, .c = terms,
            .a_offset = grp * ocg * c->l,
            .b_offset = grp * c->k * c->l,
            .c_offset = grp * ocg * c->k,
            .batch = io->batch,
            .stride_a = c->out_ch * c->l, .stride_b = c->rows * c->l,
            .stride_c = c->out_ch * c->k,
        };
        lmn_op_gemm(&gemm);
    }
    if (io->batch > 1) {
        /* dW [1, OC*K] = ones^T [1, N] x terms [N, OC*K] */
        LmnTensor *ones = lmn_layer_get_saved(layer, c->saved_ones);
        lmn_op_fill(ones, 1.0f);
        LmnGemm sum = {
            .struct_size = sizeof(LmnGemm),
            .trans_a = TRUE,
            .m = 1, .n = c->out_ch * c->k, .k = io->batch,
            .alpha = 1.0f, .beta = 0.0f,
            .a = ones, .b = terms, .c = dw,
        };
        lmn_op_gemm(&sum);
    }
    if (c->bias) {
        lmn_op_bias_grad(lmn_layer_get_grad(layer, PARAM_BIAS), io->output_grad, io->batch,
                         c->out_ch, c->l, 0.0f);
    }
}

/* Backward through the backend's own convolution ops. */
static void conv_backward_native(LmnLayer *layer, const Conv *c, const LmnLayerIO *io)
{
    LmnConv2dDesc d = conv_desc(c, io->batch);
    if (!io->skip_param_grads) {
        lmn_op_conv2d_backward_weights(&d, io->inputs[0], io->output_grad,
                                       lmn_layer_get_grad(layer, PARAM_WEIGHT), 0.0f, NULL);
        if (c->bias)
            lmn_op_bias_grad(lmn_layer_get_grad(layer, PARAM_BIAS), io->output_grad, io->batch,
                             c->out_ch, c->l, 0.0f);
    }
    if (io->input_grads[0] != NULL)
        lmn_op_conv2d_backward_data(&d, io->output_grad, lmn_layer_get_param(layer, PARAM_WEIGHT),
                                    io->input_grads[0], NULL);
}

static void conv_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Conv *c = lmn_layer_get_private(layer);
    if (c->native) {
        conv_backward_native(layer, c, io);
        return;
    }
    LmnConv2dGeom g = c->geom;
    g.batch = io->batch;
    LmnTensor *cols = conv_patches(layer, c, io);
    const gint64 ocg = c->out_ch / c->groups;
    /* (an input-gradient-only pass, e.g. an attack, needs no dW) */
    if (!io->skip_param_grads) {
        conv_param_grads(layer, c, io, cols);
    }

    LmnTensor *dx = io->input_grads[0];
    if (dx == NULL) {
        return;
    }
    /* Patch gradients W^T dY, over the (now consumed) cols, or straight into dx when direct. */
    LmnTensor *dcols = c->direct ? dx : cols;
    for (gint64 grp = 0; grp < c->groups; grp++) {
        /* dcols[n, grp] [K, L] = W_grp^T [K, ocg] x dY[n, grp] [ocg, L] */
        LmnGemm gemm = {
            .struct_size = sizeof(LmnGemm),
            .trans_a = TRUE,
            .m = c->k, .n = c->l, .k = ocg,
            .alpha = 1.0f, .beta = 0.0f,
            .a = lmn_layer_get_param(layer, PARAM_WEIGHT), .b = io->output_grad, .c = dcols,
            .a_offset = grp * ocg * c->k,
            .b_offset = grp * ocg * c->l,
            .c_offset = grp * c->k * c->l,
            .batch = io->batch,
            .stride_a = 0, .stride_b = c->out_ch * c->l, .stride_c = c->rows * c->l,
        };
        lmn_op_gemm(&gemm);
    }
    if (!c->direct) {
        lmn_op_col2im(dcols, dx, &g);
    }
}

static const LmnParamSpec conv_params[] = {
    LMN_PARAM_SPEC_INT("out_channels", NULL, 1, (double) G_MAXINT32, LMN_PARAM_FLAG_REQUIRED,
                       "number of output channels"),
    LMN_PARAM_SPEC_FLOAT_LIST("kernel_size", NULL, 1, (double) G_MAXINT32, LMN_PARAM_FLAG_REQUIRED,
                              "kernel size: one integer, or \"height, width\""),
    LMN_PARAM_SPEC_FLOAT_LIST("stride", "1", 1, (double) G_MAXINT32, 0,
                              "stride: one integer, or \"height, width\""),
    LMN_PARAM_SPEC_FLOAT_LIST("padding", "0", 0, (double) G_MAXINT32, 0,
                              "zero padding on each side: one integer, or \"h, w\""),
    LMN_PARAM_SPEC_FLOAT_LIST("dilation", "1", 1, (double) G_MAXINT32, 0,
                              "spacing of kernel taps: one integer, or \"h, w\""),
    LMN_PARAM_SPEC_INT(
        "groups", "1", 1, (double) G_MAXINT32, 0,
        "blocked connections: input and output channels split into this many groups"),
    LMN_PARAM_SPEC_BOOL("bias", "true", "add a learnable bias per output channel"),
    LMN_PARAM_SPEC_END,
};

/* ONNX's Conv is nn.Conv2d's cross-correlation with the same weight layout [OC, C/G, kh, kw]. */
static gboolean conv_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                            const char *output, GError **error)
{
    const Conv *c = lmn_layer_get_private(layer);
    const LmnConv2dGeom *g = &c->geom;
    const char *w = lmn_export_add_param(ex, layer, "weight", error);
    const char *b = w && c->bias ? lmn_export_add_param(ex, layer, "bias", error) : NULL;
    if (w == NULL || (c->bias && b == NULL))
        return FALSE;
    const gint64 kernel[] = {g->kernel_h, g->kernel_w}, strides[] = {g->stride_h, g->stride_w};
    const gint64 pads[] = {g->pad_h, g->pad_w, g->pad_h, g->pad_w};
    const gint64 dilations[] = {g->dilation_h, g->dilation_w};
    const LmnExportAttr attrs[] = {
        LMN_EXPORT_ATTR_IS("kernel_shape", kernel, 2),
        LMN_EXPORT_ATTR_IS("strides", strides, 2),
        LMN_EXPORT_ATTR_IS("pads", pads, 4),
        LMN_EXPORT_ATTR_IS("dilations", dilations, 2),
        LMN_EXPORT_ATTR_I("group", c->groups),
        LMN_EXPORT_ATTRS_END,
    };
    const char *in[] = {inputs[0], w, b, NULL};
    const char *out[] = {output, NULL};
    lmn_export_add_node(ex, "Conv", in, out, attrs);
    return TRUE;
}

/* The backend's convolution plans for @batch images, made before any step runs (ABI 1.6). */
static gboolean conv_prepare_batch(LmnLayer *layer, gint64 batch, GError **error)
{
    const Conv *c = lmn_layer_get_private(layer);
    if (!c->native)
        return TRUE;
    LmnConv2dDesc d = conv_desc(c, batch);
    return lmn_op_conv2d_prepare(lmn_layer_get_backend(layer), &d, error);
}

static const LmnLayerVTable conv_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_NONE,
    .min_inputs = 1,
    .max_inputs = 1,
    .build = conv_build,
    .forward = conv_forward,
    .backward = conv_backward,
    .export_onnx = conv_export,
    .prepare_batch = conv_prepare_batch,
};

static const LmnFeatureDesc conv_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "conv2d",
                "2-D convolution of [C, H, W] images (torch.nn.Conv2d): weight [out, "
                "in/groups, kh, kw], bias [out]; weight_init / bias_init choose other "
                "initializers",
                conv_params, &conv_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.conv", LMN_VERSION_STRING, "MIT",
                           "Convolution layers (the backend's convolution ops, or im2col + GEMM)",
                           conv_features)
