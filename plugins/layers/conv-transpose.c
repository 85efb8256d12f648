/* Lamina — 2-D transposed convolution, as torch.nn.ConvTranspose2d.
 *
 * A transposed convolution is the adjoint of the conv2d that maps its output [OC, OH, OW] back
 * to its input [C, H, W] with the same kernel, stride, padding and dilation.  So the geometry
 * handed to im2col/col2im is that conv2d's: the "image" is this layer's output and the "output"
 * is this layer's input, and the three passes are conv2d's three passes run backwards:
 *
 *   forward       cols[n, g] [K, L] = W_g^T [K, C/G] x X[n, g] [C/G, L];  Y = col2im(cols)
 *   backward-data dcols = im2col(dY);  dX[n, g] [C/G, L] = W_g [C/G, K] x dcols[n, g] [K, L]
 *   backward-W    dW_g [C/G, K] = sum over n of X[n, g] dcols[n, g]^T
 *
 * with K = OC/G * kh * kw and L = H * W.  The weight [C, OC/G, kh, kw] is PyTorch's layout (so
 * checkpoints load into nn.ConvTranspose2d by name), and it is already the row-major [C, K]
 * matrix these GEMMs want.  As in conv.c, dW is one batched GEMM of per-sample terms and one GEMM
 * with a column of ones summing them, and a 1x1, stride-1, unpadded layer needs no im2col/col2im:
 * its patch matrix is the output itself.
 *
 * A backend with the ABI 1.4 convolution ops runs the three passes as that conv2d's ops
 * (forward = its backward-data, backward-data = its forward, dW = its backward-weights with the
 * roles of input and output swapped) and no scratch is declared.
 *
 * output_padding adds rows and columns at the bottom/right that no input pixel reaches (they
 * hold only the bias), which is why PyTorch requires it to be smaller than the stride or the
 * dilation: otherwise it would merely pad.
 */
#include <lamina/lamina.h>

#include "spatial.h"

enum { PARAM_WEIGHT = 0, PARAM_BIAS = 1 };

#define TYPE "conv_transpose2d"

typedef struct {
    LmnConv2dGeom geom; /* of the adjoint conv2d; batch filled in per call */
    gint64 in_ch, out_ch, groups;
    gint64 k;    /* rows of one group's patch block: OC/G * kh * kw */
    gint64 l;    /* input pixels per channel: H * W */
    gint64 rows; /* rows of the whole patch matrix: OC * kh * kw */
    gboolean bias;
    gboolean direct; /* 1x1, stride 1, no padding: the output is its own patch matrix */
    gboolean native; /* the backend runs the adjoint conv2d's ops (ABI 1.4); no scratch */
    guint saved_cols, saved_scratch, saved_ones;
} ConvT;

/* One output size, (in - 1) * stride - 2 * pad + dilation * (kernel - 1) + output_padding + 1,
 * overflow-checked: stride and dilation come from the config and reach 2^31. */
static gboolean convt_out_size(gint64 in, gint64 k, gint64 s, gint64 p, gint64 d, gint64 op,
                               gint64 *out)
{
    gint64 a, b;
    if (__builtin_mul_overflow(in - 1, s, &a) || __builtin_mul_overflow(d, k - 1, &b) ||
        __builtin_add_overflow(a, b, &a) || __builtin_add_overflow(a, op + 1, &a))
        return FALSE;
    *out = a - 2 * p;
    return TRUE;
}

static gboolean convt_check_output_padding(LmnLayer *layer, const gint64 op[2],
                                           const gint64 stride[2], const gint64 dilation[2],
                                           GError **error)
{
    static const char *const axis[] = {"height", "width"};
    for (int i = 0; i < 2; i++) {
        if (op[i] >= stride[i] && op[i] >= dilation[i]) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                        "layer '%s' (" TYPE "): output_padding %" G_GINT64_FORMAT " (%s) must "
                        "be smaller than the stride (%" G_GINT64_FORMAT
                        ") or the dilation (%" G_GINT64_FORMAT
                        "), as in PyTorch; use a smaller output_padding",
                        lmn_layer_get_name(layer), op[i], axis[i], stride[i], dilation[i]);
            return FALSE;
        }
    }
    return TRUE;
}

/* Checks the input, reads the keys and fills the adjoint conv2d's geometry. */
static gboolean convt_geometry(LmnLayer *layer, const LmnTensorInfo *input, LmnConv2dGeom *g,
                               GError **error)
{
    const char *name = lmn_layer_get_name(layer);
    gint64 kernel[2], stride[2], padding[2], dilation[2], op[2];
    if (!lmn_spatial_pair(layer, TYPE, "kernel_size", NULL, kernel, error) ||
        !lmn_spatial_pair(layer, TYPE, "stride", NULL, stride, error) ||
        !lmn_spatial_pair(layer, TYPE, "padding", NULL, padding, error) ||
        !lmn_spatial_pair(layer, TYPE, "dilation", NULL, dilation, error) ||
        !lmn_spatial_pair(layer, TYPE, "output_padding", NULL, op, error) ||
        !convt_check_output_padding(layer, op, stride, dilation, error))
        return FALSE;
    const LmnShape *s = &input->shape;
    if (s->ndim != 3 || input->dtype != LMN_DTYPE_F32) {
        g_autofree char *shape = lmn_shape_to_string(s);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (" TYPE "): its input is %s %s, but " TYPE " takes f32 images "
                    "[channels, height, width]",
                    name, lmn_dtype_name(input->dtype), shape);
        return FALSE;
    }
    gint64 oh, ow;
    if (!convt_out_size(s->dims[1], kernel[0], stride[0], padding[0], dilation[0], op[0], &oh) ||
        !convt_out_size(s->dims[2], kernel[1], stride[1], padding[1], dilation[1], op[1], &ow) ||
        oh <= 0 || ow <= 0) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (" TYPE "): the input image %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
                    " with this kernel_size, stride, padding, dilation and "
                    "output_padding gives no valid output size; use less padding or a smaller "
                    "stride",
                    name, s->dims[1], s->dims[2]);
        return FALSE;
    }
    *g = (LmnConv2dGeom){
        .struct_size = sizeof(LmnConv2dGeom),
        .height = oh,
        .width = ow,
        .kernel_h = kernel[0],
        .kernel_w = kernel[1],
        .stride_h = stride[0],
        .stride_w = stride[1],
        .pad_h = padding[0],
        .pad_w = padding[1],
        .dilation_h = dilation[0],
        .dilation_w = dilation[1],
        .out_h = s->dims[1],
        .out_w = s->dims[2],
    };
    return TRUE;
}

static gboolean convt_check_groups(LmnLayer *layer, gint64 in_ch, gint64 out_ch, gint64 groups,
                                   GError **error)
{
    if (in_ch % groups == 0 && out_ch % groups == 0)
        return TRUE;
    gboolean in_bad = in_ch % groups != 0;
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                "layer '%s' (" TYPE "): %s = %" G_GINT64_FORMAT
                " is not divisible by groups = %" G_GINT64_FORMAT
                "; change groups or the channel counts",
                lmn_layer_get_name(layer), in_bad ? "its input's channel count" : "out_channels",
                in_bad ? in_ch : out_ch, groups);
    return FALSE;
}

/*
 * The parameters and saved tensors.  torch.nn.ConvTranspose2d.reset_parameters is
 * kaiming_uniform_(weight, a=sqrt(5)), whose fans come from the weight [C, OC/G, kh, kw]:
 * fan_in = OC/G * kh * kw, fan_out = C * kh * kw; the bias is U(+-1/sqrt(fan_in)).
 */
static void convt_declare(LmnLayer *layer, ConvT *c, const LmnShape *w, const LmnShape *cols)
{
    double fan_in = (double) c->k;
    double fan_out = (double) (c->in_ch * c->geom.kernel_h * c->geom.kernel_w);
    lmn_layer_add_param(layer, "weight", w, LMN_PARAM_ROLE_WEIGHT, "he_uniform",
                        "a=2.23606797749979, mode=fan_in", fan_in, fan_out);
    if (c->bias) {
        LmnShape b = lmn_shape_make(1, c->out_ch);
        lmn_layer_add_param(layer, "bias", &b, LMN_PARAM_ROLE_BIAS, "he_uniform",
                            "a=2.23606797749979, mode=fan_in", fan_in, fan_out);
    }
    if (c->native)
        return;
    if (!c->direct)
        c->saved_cols = lmn_layer_add_saved(layer, "cols", cols, LMN_DTYPE_F32, TRUE);
    LmnShape scratch = lmn_shape_make(2, c->in_ch, c->k);
    c->saved_scratch = lmn_layer_add_saved(layer, "dweight_terms", &scratch, LMN_DTYPE_F32, TRUE);
    LmnShape one = lmn_shape_make(1, (gint64) 1);
    c->saved_ones = lmn_layer_add_saved(layer, "ones", &one, LMN_DTYPE_F32, TRUE);
}

static gboolean convt_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                            LmnTensorInfo *output, GError **error)
{
    const LmnParams *p = lmn_layer_get_params(layer);
    LmnConv2dGeom g;
    if (!convt_geometry(layer, &inputs[0], &g, error))
        return FALSE;
    gint64 in_ch = inputs[0].shape.dims[0];
    gint64 out_ch = lmn_params_get_int(p, "out_channels");
    gint64 groups = lmn_params_get_int(p, "groups");
    if (!convt_check_groups(layer, in_ch, out_ch, groups, error))
        return FALSE;
    g.channels = out_ch;
    LmnShape out = lmn_shape_make(3, out_ch, g.height, g.width);
    LmnShape w = lmn_shape_make(4, in_ch, out_ch / groups, g.kernel_h, g.kernel_w);
    /* Once the weight fits, K = OC/G * kh * kw and OC * kh * kw fit (C >= G); H * W fits as
     * the input does, so the patch matrix's dims cannot overflow. */
    if (!lmn_layer_check_size(layer, "its output", &out, TRUE, LMN_DTYPE_F32,
                              "use a smaller stride, fewer out_channels or a smaller input",
                              error) ||
        !lmn_layer_check_size(layer, "its weight", &w, FALSE, LMN_DTYPE_F32,
                              "use a smaller kernel_size or fewer channels", error))
        return FALSE;
    gboolean direct = g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 &&
                      g.pad_h == 0 && g.pad_w == 0 && g.height == g.out_h && g.width == g.out_w;
    LmnShape cols = lmn_shape_make(2, out_ch * g.kernel_h * g.kernel_w, g.out_h * g.out_w);
    if (!direct &&
        !lmn_layer_check_size(layer, "its patch matrix (col2im)", &cols, TRUE, LMN_DTYPE_F32,
                              "use a smaller kernel_size or fewer out_channels", error))
        return FALSE;

    ConvT *c = g_new0(ConvT, 1);
    c->geom = g;
    c->in_ch = in_ch;
    c->out_ch = out_ch;
    c->groups = groups;
    c->k = out_ch / groups * g.kernel_h * g.kernel_w;
    c->l = cols.dims[1];
    c->rows = cols.dims[0];
    c->bias = lmn_params_get_bool(p, "bias");
    c->direct = direct;
    c->native = lmn_backend_has_native_conv2d(lmn_layer_get_backend(layer));
    lmn_layer_set_private(layer, c, g_free);
    convt_declare(layer, c, &w, &cols);
    output->shape = out;
    output->dtype = LMN_DTYPE_F32;
    return TRUE;
}

/* The adjoint conv2d of @batch images: its input is this layer's output (OC channels), its
 * output this layer's input (C channels), its weight [C, OC/G, kh, kw] this layer's. */
static LmnConv2dDesc convt_desc(const ConvT *c, gint64 batch)
{
    return lmn_spatial_conv_desc(&c->geom, batch, c->out_ch, c->in_ch, c->groups);
}

/* The three passes through the backend's conv2d ops, run backwards as above. */
static void convt_forward_native(LmnLayer *layer, const ConvT *c, const LmnLayerIO *io)
{
    LmnConv2dDesc d = convt_desc(c, io->batch);
    lmn_op_conv2d_backward_data(&d, io->inputs[0], lmn_layer_get_param(layer, PARAM_WEIGHT),
                                io->output, NULL);
    if (c->bias)
        lmn_op_bias_add(io->output, lmn_layer_get_param(layer, PARAM_BIAS), io->batch, c->out_ch,
                        c->geom.height * c->geom.width);
}

static void convt_backward_native(LmnLayer *layer, const ConvT *c, const LmnLayerIO *io)
{
    LmnConv2dDesc d = convt_desc(c, io->batch);
    if (!io->skip_param_grads) {
        lmn_op_conv2d_backward_weights(&d, io->output_grad, io->inputs[0],
                                       lmn_layer_get_grad(layer, PARAM_WEIGHT), 0.0f, NULL);
        if (c->bias)
            lmn_op_bias_grad(lmn_layer_get_grad(layer, PARAM_BIAS), io->output_grad, io->batch,
                             c->out_ch, c->geom.height * c->geom.width, 0.0f);
    }
    if (io->input_grads[0] != NULL)
        lmn_op_conv2d_forward(&d, io->output_grad, lmn_layer_get_param(layer, PARAM_WEIGHT),
                              io->input_grads[0], NULL);
}

static void convt_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const ConvT *c = lmn_layer_get_private(layer);
    if (c->native) {
        convt_forward_native(layer, c, io);
        return;
    }
    LmnConv2dGeom g = c->geom;
    g.batch = io->batch;
    LmnTensor *cols = c->direct ? io->output : lmn_layer_get_saved(layer, c->saved_cols);
    const gint64 icg = c->in_ch / c->groups;
    for (gint64 grp = 0; grp < c->groups; grp++) {
        /* cols[n, grp] [K, L] = W_grp^T [K, icg] x X[n, grp] [icg, L] for every n */
        LmnGemm gemm = {
            .struct_size = sizeof(LmnGemm),
            .trans_a = TRUE,
            .m = c->k,
            .n = c->l,
            .k = icg,
            .alpha = 1.0f,
            .beta = 0.0f,
            .a = lmn_layer_get_param(layer, PARAM_WEIGHT),
            .b = io->inputs[0],
            .c = cols,
            .a_offset = grp * icg * c->k,
            .b_offset = grp * icg * c->l,
            .c_offset = grp * c->k * c->l,
            .batch = io->batch,
            .stride_a = 0,
            .stride_b = c->in_ch * c->l,
            .stride_c = c->rows * c->l,
        };
        lmn_op_gemm(&gemm);
    }
    if (!c->direct)
        lmn_op_col2im(cols, io->output, &g);
    if (c->bias) {
        lmn_op_bias_add(io->output, lmn_layer_get_param(layer, PARAM_BIAS), io->batch, c->out_ch,
                        g.height * g.width);
    }
}

/* dW (and db) from the input and the output gradient's patches. */
static void convt_param_grads(LmnLayer *layer, const ConvT *c, const LmnLayerIO *io,
                              const LmnTensor *dcols)
{
    LmnTensor *dw = lmn_layer_get_grad(layer, PARAM_WEIGHT);
    const gint64 icg = c->in_ch / c->groups;
    /* With one sample the per-sample term is the sum: write it straight into dW. */
    LmnTensor *terms = io->batch == 1 ? dw : lmn_layer_get_saved(layer, c->saved_scratch);
    for (gint64 grp = 0; grp < c->groups; grp++) {
        /* terms[n, grp] [icg, K] = X[n, grp] [icg, L] x dcols[n, grp]^T [L, K] */
        LmnGemm gemm = {
            .struct_size = sizeof(LmnGemm),
            .trans_b = TRUE,
            .m = icg,
            .n = c->k,
            .k = c->l,
            .alpha = 1.0f,
            .beta = 0.0f,
            .a = io->inputs[0],
            .b = dcols,
            .c = terms,
            .a_offset = grp * icg * c->l,
            .b_offset = grp * c->k * c->l,
            .c_offset = grp * icg * c->k,
            .batch = io->batch,
            .stride_a = c->in_ch * c->l,
            .stride_b = c->rows * c->l,
            .stride_c = c->in_ch * c->k,
        };
        lmn_op_gemm(&gemm);
    }
    if (io->batch > 1) {
        /* dW [1, C*K] = ones^T [1, N] x terms [N, C*K] */
        LmnTensor *ones = lmn_layer_get_saved(layer, c->saved_ones);
        lmn_op_fill(ones, 1.0f);
        LmnGemm sum = {
            .struct_size = sizeof(LmnGemm),
            .trans_a = TRUE,
            .m = 1,
            .n = c->in_ch * c->k,
            .k = io->batch,
            .alpha = 1.0f,
            .beta = 0.0f,
            .a = ones,
            .b = terms,
            .c = dw,
        };
        lmn_op_gemm(&sum);
    }
    if (c->bias) {
        lmn_op_bias_grad(lmn_layer_get_grad(layer, PARAM_BIAS), io->output_grad, io->batch,
                         c->out_ch, c->geom.height * c->geom.width, 0.0f);
    }
}

static void convt_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const ConvT *c = lmn_layer_get_private(layer);
    if (c->native) {
        convt_backward_native(layer, c, io);
        return;
    }
    LmnConv2dGeom g = c->geom;
    g.batch = io->batch;
    LmnTensor *dx = io->input_grads[0];
    if (io->skip_param_grads && dx == NULL)
        return;
    LmnTensor *dcols = c->direct ? io->output_grad : lmn_layer_get_saved(layer, c->saved_cols);
    if (!c->direct)
        lmn_op_im2col(io->output_grad, dcols, &g);
    if (!io->skip_param_grads)
        convt_param_grads(layer, c, io, dcols);
    if (dx == NULL)
        return;
    const gint64 icg = c->in_ch / c->groups;
    for (gint64 grp = 0; grp < c->groups; grp++) {
        /* dX[n, grp] [icg, L] = W_grp [icg, K] x dcols[n, grp] [K, L] */
        LmnGemm gemm = {
            .struct_size = sizeof(LmnGemm),
            .m = icg,
            .n = c->l,
            .k = c->k,
            .alpha = 1.0f,
            .beta = 0.0f,
            .a = lmn_layer_get_param(layer, PARAM_WEIGHT),
            .b = dcols,
            .c = dx,
            .a_offset = grp * icg * c->k,
            .b_offset = grp * c->k * c->l,
            .c_offset = grp * icg * c->l,
            .batch = io->batch,
            .stride_a = 0,
            .stride_b = c->rows * c->l,
            .stride_c = c->in_ch * c->l,
        };
        lmn_op_gemm(&gemm);
    }
}

static const LmnParamSpec convt_params[] = {
    LMN_PARAM_SPEC_INT("out_channels", NULL, 1, (double) G_MAXINT32, LMN_PARAM_FLAG_REQUIRED,
                       "number of output channels"),
    LMN_PARAM_SPEC_FLOAT_LIST("kernel_size", NULL, 1, (double) G_MAXINT32, LMN_PARAM_FLAG_REQUIRED,
                              "kernel size: one integer, or \"height, width\""),
    LMN_PARAM_SPEC_FLOAT_LIST("stride", "1", 1, (double) G_MAXINT32, 0,
                              "stride: one integer, or \"height, width\""),
    LMN_PARAM_SPEC_FLOAT_LIST("padding", "0", 0, (double) G_MAXINT32, 0,
                              "dilation * (kernel_size - 1) - padding zeros are added on each "
                              "side (PyTorch's meaning): one integer, or \"h, w\""),
    LMN_PARAM_SPEC_FLOAT_LIST("output_padding", "0", 0, (double) G_MAXINT32, 0,
                              "extra rows/columns at the bottom/right of the output, smaller "
                              "than stride or dilation: one integer, or \"h, w\""),
    LMN_PARAM_SPEC_FLOAT_LIST("dilation", "1", 1, (double) G_MAXINT32, 0,
                              "spacing of kernel taps: one integer, or \"h, w\""),
    LMN_PARAM_SPEC_INT(
        "groups", "1", 1, (double) G_MAXINT32, 0,
        "blocked connections: input and output channels split into this many groups"),
    LMN_PARAM_SPEC_BOOL("bias", "true", "add a learnable bias per output channel"),
    LMN_PARAM_SPEC_END,
};

/* ONNX's ConvTranspose has nn.ConvTranspose2d's weight layout and its output_padding. */
static gboolean convt_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                             const char *output, GError **error)
{
    const ConvT *c = lmn_layer_get_private(layer);
    const LmnConv2dGeom *g = &c->geom;
    const char *w = lmn_export_add_param(ex, layer, "weight", error);
    const char *b = w && c->bias ? lmn_export_add_param(ex, layer, "bias", error) : NULL;
    if (w == NULL || (c->bias && b == NULL))
        return FALSE;
    gint64 op[2];
    if (!lmn_spatial_pair(layer, TYPE, "output_padding", NULL, op, error))
        return FALSE;
    const gint64 kernel[] = {g->kernel_h, g->kernel_w}, strides[] = {g->stride_h, g->stride_w};
    const gint64 pads[] = {g->pad_h, g->pad_w, g->pad_h, g->pad_w};
    const gint64 dilations[] = {g->dilation_h, g->dilation_w};
    const LmnExportAttr attrs[] = {
        LMN_EXPORT_ATTR_IS("kernel_shape", kernel, 2),
        LMN_EXPORT_ATTR_IS("strides", strides, 2),
        LMN_EXPORT_ATTR_IS("pads", pads, 4),
        LMN_EXPORT_ATTR_IS("dilations", dilations, 2),
        LMN_EXPORT_ATTR_IS("output_padding", op, 2),
        LMN_EXPORT_ATTR_I("group", c->groups),
        LMN_EXPORT_ATTRS_END,
    };
    const char *in[] = {inputs[0], w, b, NULL};
    const char *out[] = {output, NULL};
    lmn_export_add_node(ex, "ConvTranspose", in, out, attrs);
    return TRUE;
}

/* The backend's plans for the adjoint convolution of @batch images, made before any step runs
 * (ABI 1.6). */
static gboolean convt_prepare_batch(LmnLayer *layer, gint64 batch, GError **error)
{
    const ConvT *c = lmn_layer_get_private(layer);
    if (!c->native)
        return TRUE;
    LmnConv2dDesc d = convt_desc(c, batch);
    return lmn_op_conv2d_prepare(lmn_layer_get_backend(layer), &d, error);
}

static const LmnLayerVTable convt_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_NONE,
    .min_inputs = 1,
    .max_inputs = 1,
    .build = convt_build,
    .forward = convt_forward,
    .backward = convt_backward,
    .export_onnx = convt_export,
    .prepare_batch = convt_prepare_batch,
};

static const LmnFeatureDesc convt_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, TYPE,
                "2-D transposed convolution of [C, H, W] images (torch.nn.ConvTranspose2d): "
                "weight [in, out/groups, kh, kw], bias [out]; weight_init / bias_init choose "
                "other initializers",
                convt_params, &convt_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.conv_transpose", LMN_VERSION_STRING, "MIT",
                           "Transposed convolution layer (GEMM + col2im)", convt_features)
