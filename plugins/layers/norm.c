/* Lamina — batch normalisation, as torch.nn.BatchNorm1d / BatchNorm2d.
 *
 * The input is per sample [C] (after a dense layer), [C, L] or [C, H, W] (after a convolution);
 * statistics are per channel over the batch and every other position, so the ops see it as
 * [N, C, inner].  Parameters weight (1) and bias (0) and buffers running_mean (0) and running_var
 * (1) carry PyTorch's names, shapes and initial values, so a checkpoint loads into nn.BatchNorm2d
 * by name.
 *
 * Training (and evaluation without running statistics, as PyTorch does): normalise with the
 * batch's mean and biased variance, then update the running statistics exactly like PyTorch,
 *     running_mean = (1 - m) running_mean + m mean
 *     running_var  = (1 - m) running_var  + m var n / (n - 1),   n = N * inner
 * (the unbiased variance; with n = 1, where PyTorch refuses to train, the biased one).
 * Evaluation with running statistics normalises with them; its backward (frozen statistics, used
 * by gradient checks and fine-tuning) is then the per-channel affine map's.
 *
 * The "work" tensor, as large as the input, is scratch for the two backward cases that need one:
 * a training-mode backward whose input gradient is not wanted (the op always writes dx), and the
 * evaluation-mode weight gradient sum(dy * x_hat) when there is no input gradient to borrow.
 *
 * sync = true (torch.nn.SyncBatchNorm) under data-parallel training: a training pass takes the
 * statistics of the global batch over every rank (lmn_layer_allreduce() of the per-channel
 * vectors, through host memory), and its backward the global sums of dy and dy * x_hat.  Each
 * rank's mean and biased variance are combined exactly, weighted by the rank's sample count m_r:
 *     mean = sum_r m_r mean_r / M,   var = sum_r m_r (var_r + (mean_r - mean)^2) / M,
 * the second sum taken about the global mean (not as E[x^2] - mean^2) so nothing cancels.  The
 * running statistics are updated from these with the global count.  The weight and bias
 * gradients stay the rank's own sums, which the trainer averages like every parameter
 * gradient, as PyTorch's DDP does.  With one rank nothing of this runs, so sync = true is then
 * bit-identical to sync = false.
 */
#include <math.h>
#include <string.h>

#include <lamina/lamina.h>

enum { PARAM_WEIGHT = 0, PARAM_BIAS = 1 };
enum { BUFFER_MEAN = 0, BUFFER_VAR = 1 };
enum { SAVED_MEAN = 0, SAVED_VAR = 1, SAVED_WORK = 2, SAVED_SYNC_A = 3, SAVED_SYNC_U = 4 };

typedef struct {
    gint64 channels;
    gint64 inner;
    float eps;
    float momentum;
    gboolean affine;
    gboolean track;
    gboolean sync;
    /* sync only: host copies of per-channel vectors ([C] each, the sum buffer [2C + 1]), and the
     * global batch's sample count M of the last training forward, which its backward needs */
    float *host_mean, *host_var, *host_w, *sum;
    double *global_mean;
    double global_batch;
} BatchNorm;

static void batchnorm_free(gpointer p)
{
    BatchNorm *bn = p;
    g_free(bn->host_mean);
    g_free(bn->global_mean);
    g_free(bn);
}

/* The sync buffers: one allocation of 5C + 1 floats (C is a dimension of the input, whose size
 * the core checked, so 5C + 1 floats fit) and C doubles. */
static void batchnorm_alloc_sync(BatchNorm *bn)
{
    gsize c = (gsize) bn->channels;
    bn->host_mean = g_new0(float, 5 * c + 1);
    bn->host_var = bn->host_mean + c;
    bn->host_w = bn->host_var + c;
    bn->sum = bn->host_w + c;
    bn->global_mean = g_new0(double, c);
}

static gboolean batchnorm_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                                LmnTensorInfo *output, GError **error)
{
    const LmnParams *p = lmn_layer_get_params(layer);
    const LmnShape *s = &inputs[0].shape;
    if (s->ndim < 1 || s->ndim > 3) {
        g_autofree char *shape = lmn_shape_to_string(s);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (batch_norm): its input has per-sample shape %s, but batch_norm "
                    "takes [channels], [channels, length] or [channels, height, width]",
                    lmn_layer_get_name(layer), shape);
        return FALSE;
    }
    if (inputs[0].dtype != LMN_DTYPE_F32) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (batch_norm): its input is %s, but batch_norm takes f32 values",
                    lmn_layer_get_name(layer), lmn_dtype_name(inputs[0].dtype));
        return FALSE;
    }
    BatchNorm *bn = g_new0(BatchNorm, 1);
    bn->channels = s->dims[0];
    bn->inner = lmn_shape_numel(s) / bn->channels;
    bn->eps = (float) lmn_params_get_float(p, "eps");
    bn->momentum = (float) lmn_params_get_float(p, "momentum");
    bn->affine = lmn_params_get_bool(p, "affine");
    bn->track = lmn_params_get_bool(p, "track_running_stats");
    bn->sync = lmn_params_get_bool(p, "sync");
    if (bn->sync)
        batchnorm_alloc_sync(bn);
    lmn_layer_set_private(layer, bn, batchnorm_free);

    LmnShape c = lmn_shape_make(1, bn->channels);
    if (bn->affine) {
        /* The fans are irrelevant to constant initializers; pass the channel count. */
        double fan = (double) bn->channels;
        lmn_layer_add_param(layer, "weight", &c, LMN_PARAM_ROLE_WEIGHT, "constant", "value=1",
                            fan, fan);
        lmn_layer_add_param(layer, "bias", &c, LMN_PARAM_ROLE_BIAS, "zeros", NULL, fan, fan);
    }
    if (bn->track) {
        lmn_layer_add_buffer(layer, "running_mean", &c, 0.0f);
        lmn_layer_add_buffer(layer, "running_var", &c, 1.0f);
    }
    lmn_layer_add_saved(layer, "mean", &c, LMN_DTYPE_F32, FALSE);
    lmn_layer_add_saved(layer, "var", &c, LMN_DTYPE_F32, FALSE);
    lmn_layer_add_saved(layer, "work", s, LMN_DTYPE_F32, TRUE);
    if (bn->sync) {
        lmn_layer_add_saved(layer, "sync_a", &c, LMN_DTYPE_F32, FALSE);
        lmn_layer_add_saved(layer, "sync_u", &c, LMN_DTYPE_F32, FALSE);
    }

    output->shape = *s;
    output->dtype = LMN_DTYPE_F32;
    return TRUE;
}

/* Whether this pass normalises with the batch's own statistics. */
static gboolean batchnorm_uses_batch_stats(const BatchNorm *bn, const LmnLayerIO *io)
{
    return io->training || !bn->track;
}

/* Whether this pass's statistics span the ranks (the backward's as well as the forward's). */
static gboolean batchnorm_syncs(const BatchNorm *bn, LmnLayer *layer, const LmnLayerIO *io)
{
    return bn->sync && io->training && lmn_layer_get_n_ranks(layer) > 1;
}

/*
 * Replaces this rank's batch statistics in @mean and @var by the global batch's (see the top of
 * the file).  Two sums: the count-weighted means with the counts, then the count-weighted
 * variances about the global mean.  Returns: FALSE when a sum failed (the step is discarded).
 */
static gboolean batchnorm_sync_stats(LmnLayer *layer, BatchNorm *bn, const LmnLayerIO *io,
                                     LmnTensor *mean, LmnTensor *var)
{
    gint64 c = bn->channels;
    gsize bytes = (gsize) c * sizeof(float);
    double m = (double) io->batch;
    /* A failed read leaves the backend's sticky error for the trainer; the sums still run so
     * that the other ranks are not left waiting. */
    lmn_tensor_read(mean, bn->host_mean, bytes, NULL);
    lmn_tensor_read(var, bn->host_var, bytes, NULL);
    for (gint64 k = 0; k < c; k++)
        bn->sum[k] = (float) (m * bn->host_mean[k]);
    bn->sum[c] = (float) m;
    if (!lmn_layer_allreduce(layer, bn->sum, (gsize) c + 1))
        return FALSE;
    double total = bn->sum[c];
    bn->global_batch = total;
    for (gint64 k = 0; k < c; k++) {
        bn->global_mean[k] = bn->sum[k] / total;
        double d = bn->host_mean[k] - bn->global_mean[k];
        bn->sum[k] = (float) (m * (bn->host_var[k] + d * d));
    }
    if (!lmn_layer_allreduce(layer, bn->sum, (gsize) c))
        return FALSE;
    for (gint64 k = 0; k < c; k++) {
        bn->host_mean[k] = (float) bn->global_mean[k];
        bn->host_var[k] = (float) (bn->sum[k] / total);
    }
    return lmn_tensor_write(mean, bn->host_mean, bytes, NULL) &&
           lmn_tensor_write(var, bn->host_var, bytes, NULL);
}

static void batchnorm_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    BatchNorm *bn = lmn_layer_get_private(layer);
    LmnTensor *weight = bn->affine ? lmn_layer_get_param(layer, PARAM_WEIGHT) : NULL;
    LmnTensor *bias = bn->affine ? lmn_layer_get_param(layer, PARAM_BIAS) : NULL;
    if (!batchnorm_uses_batch_stats(bn, io)) {
        lmn_op_batchnorm_forward(io->inputs[0], lmn_layer_get_buffer(layer, BUFFER_MEAN),
                                 lmn_layer_get_buffer(layer, BUFFER_VAR), weight, bias,
                                 io->output, bn->eps, io->batch, bn->channels, bn->inner);
        return;
    }
    LmnTensor *mean = lmn_layer_get_saved(layer, SAVED_MEAN);
    LmnTensor *var = lmn_layer_get_saved(layer, SAVED_VAR);
    lmn_op_batchnorm_stats(io->inputs[0], mean, var, io->batch, bn->channels, bn->inner);
    gboolean sync = batchnorm_syncs(bn, layer, io);
    if (sync && !batchnorm_sync_stats(layer, bn, io, mean, var))
        return;
    lmn_op_batchnorm_forward(io->inputs[0], mean, var, weight, bias, io->output, bn->eps,
                             io->batch, bn->channels, bn->inner);
    if (io->training && bn->track) {
        double n = (sync ? bn->global_batch : (double) io->batch) * (double) bn->inner;
        double unbiased = n > 1.0 ? n / (n - 1.0) : 1.0;
        float m = bn->momentum;
        lmn_op_axpby(m, mean, 1.0f - m, lmn_layer_get_buffer(layer, BUFFER_MEAN));
        lmn_op_axpby((float) (m * unbiased), var, 1.0f - m,
                     lmn_layer_get_buffer(layer, BUFFER_VAR));
    }
}

/*
 * Backward with frozen running statistics: y = x_hat w + b with x_hat = (x - rm) / sqrt(rv + eps)
 * independent of the batch, so dx = dy w / sqrt(rv + eps), dw = sum(dy x_hat), db = sum(dy).
 */
static void batchnorm_backward_frozen(LmnLayer *layer, const LmnLayerIO *io, const BatchNorm *bn)
{
    LmnTensor *rm = lmn_layer_get_buffer(layer, BUFFER_MEAN);
    LmnTensor *rv = lmn_layer_get_buffer(layer, BUFFER_VAR);
    LmnTensor *dx = io->input_grads[0];
    if (bn->affine) {
        lmn_op_bias_grad(lmn_layer_get_grad(layer, PARAM_BIAS), io->output_grad, io->batch,
                         bn->channels, bn->inner, 0.0f);
        /* dx is overwritten below, so it can hold dy * x_hat until then. */
        LmnTensor *work = dx != NULL ? dx : lmn_layer_get_saved(layer, SAVED_WORK);
        lmn_op_batchnorm_forward(io->inputs[0], rm, rv, NULL, NULL, work, bn->eps, io->batch,
                                 bn->channels, bn->inner);
        lmn_op_binary(LMN_BINARY_MUL, work, io->output_grad, work);
        lmn_op_bias_grad(lmn_layer_get_grad(layer, PARAM_WEIGHT), work, io->batch, bn->channels,
                         bn->inner, 0.0f);
    }
    if (dx != NULL) {
        /* (dy - 0) / sqrt(rv + eps) * w: the forward op with a zero mean is exactly dx. */
        LmnTensor *zero = lmn_layer_get_saved(layer, SAVED_MEAN);
        lmn_op_fill(zero, 0.0f);
        lmn_op_batchnorm_forward(io->output_grad, zero, rv,
                                 bn->affine ? lmn_layer_get_param(layer, PARAM_WEIGHT) : NULL,
                                 NULL, dx, bn->eps, io->batch, bn->channels, bn->inner);
    }
}

/*
 * The input gradient from the global sums S = sum(dy) and T = sum(dy x_hat) in @a and @u (this
 * rank's on entry), as PyTorch's SyncBatchNorm: dx = w invstd (dy - S/P - x_hat T/P) over the
 * global batch's P positions.  The trainer scales this rank's gradients by its share m_r / M
 * afterwards, so the rank sums its share of S and T and divides by its own m_r positions (with
 * equal shares that is S/P exactly).  Computed as (dy - a) invstd w - x_hat u with the forward
 * op, u = w invstd T/P per channel.
 */
static void batchnorm_sync_dx(LmnLayer *layer, const LmnLayerIO *io, BatchNorm *bn, LmnTensor *a,
                              LmnTensor *u)
{
    gint64 c = bn->channels;
    gsize bytes = (gsize) c * sizeof(float);
    LmnTensor *mean = lmn_layer_get_saved(layer, SAVED_MEAN);
    LmnTensor *var = lmn_layer_get_saved(layer, SAVED_VAR);
    LmnTensor *w = bn->affine ? lmn_layer_get_param(layer, PARAM_WEIGHT) : NULL;
    double share = (double) io->batch / bn->global_batch;
    double positions = (double) io->batch * (double) bn->inner;
    lmn_tensor_read(a, bn->sum, bytes, NULL);
    lmn_tensor_read(u, bn->sum + c, bytes, NULL);
    lmn_tensor_read(var, bn->host_var, bytes, NULL);
    if (w)
        lmn_tensor_read(w, bn->host_w, bytes, NULL);
    for (gint64 k = 0; k < 2 * c; k++)
        bn->sum[k] = (float) (share * bn->sum[k]);
    if (!lmn_layer_allreduce(layer, bn->sum, 2 * (gsize) c))
        return;
    for (gint64 k = 0; k < c; k++) {
        double invstd = 1.0 / sqrt((double) bn->host_var[k] + (double) bn->eps);
        double scale = w ? (double) bn->host_w[k] : 1.0;
        bn->host_mean[k] = (float) (bn->sum[k] / positions);
        bn->host_w[k] = (float) (scale * invstd * (bn->sum[c + k] / positions));
    }
    if (!lmn_tensor_write(a, bn->host_mean, bytes, NULL) ||
        !lmn_tensor_write(u, bn->host_w, bytes, NULL))
        return;
    LmnTensor *dx = io->input_grads[0];
    LmnTensor *work = lmn_layer_get_saved(layer, SAVED_WORK);
    lmn_op_batchnorm_forward(io->output_grad, a, var, w, NULL, dx, bn->eps, io->batch, c,
                             bn->inner);
    lmn_op_batchnorm_forward(io->inputs[0], mean, var, u, NULL, work, bn->eps, io->batch, c,
                             bn->inner);
    lmn_op_binary(LMN_BINARY_SUB, dx, work, dx);
}

/* Backward over the global batch: the local sums (which are this rank's weight and bias
 * gradients), then the input gradient from their sums over the ranks. */
static void batchnorm_backward_sync(LmnLayer *layer, const LmnLayerIO *io, BatchNorm *bn)
{
    LmnTensor *work = lmn_layer_get_saved(layer, SAVED_WORK);
    LmnTensor *a = lmn_layer_get_saved(layer, SAVED_SYNC_A);
    LmnTensor *u = lmn_layer_get_saved(layer, SAVED_SYNC_U);
    lmn_op_batchnorm_forward(io->inputs[0], lmn_layer_get_saved(layer, SAVED_MEAN),
                             lmn_layer_get_saved(layer, SAVED_VAR), NULL, NULL, work, bn->eps,
                             io->batch, bn->channels, bn->inner);
    lmn_op_binary(LMN_BINARY_MUL, work, io->output_grad, work);
    lmn_op_bias_grad(a, io->output_grad, io->batch, bn->channels, bn->inner, 0.0f);
    lmn_op_bias_grad(u, work, io->batch, bn->channels, bn->inner, 0.0f);
    if (bn->affine) {
        lmn_op_copy(lmn_layer_get_grad(layer, PARAM_BIAS), a);
        lmn_op_copy(lmn_layer_get_grad(layer, PARAM_WEIGHT), u);
    }
    if (io->input_grads[0] != NULL)
        batchnorm_sync_dx(layer, io, bn, a, u);
}

static void batchnorm_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    BatchNorm *bn = lmn_layer_get_private(layer);
    if (!bn->affine && io->input_grads[0] == NULL) {
        return;
    }
    if (!batchnorm_uses_batch_stats(bn, io)) {
        batchnorm_backward_frozen(layer, io, bn);
        return;
    }
    if (batchnorm_syncs(bn, layer, io)) {
        batchnorm_backward_sync(layer, io, bn);
        return;
    }
    LmnTensor *dx =
        io->input_grads[0] != NULL ? io->input_grads[0] : lmn_layer_get_saved(layer, SAVED_WORK);
    lmn_op_batchnorm_backward(io->inputs[0], io->output_grad,
                              lmn_layer_get_saved(layer, SAVED_MEAN),
                              lmn_layer_get_saved(layer, SAVED_VAR),
                              bn->affine ? lmn_layer_get_param(layer, PARAM_WEIGHT) : NULL, dx,
                              bn->affine ? lmn_layer_get_grad(layer, PARAM_WEIGHT) : NULL,
                              bn->affine ? lmn_layer_get_grad(layer, PARAM_BIAS) : NULL, bn->eps,
                              io->batch, bn->channels, bn->inner);
}

static const LmnParamSpec batchnorm_params[] = {
    LMN_PARAM_SPEC_FLOAT("eps", "1e-05", 0, INFINITY, LMN_PARAM_FLAG_MIN_EXCLUSIVE,
                         "added to the variance before the square root"),
    LMN_PARAM_SPEC_FLOAT(
        "momentum", "0.1", 0, 1, 0,
        "weight of the batch statistics in the running averages (PyTorch's convention)"),
    LMN_PARAM_SPEC_BOOL("affine", "true", "learn a per-channel scale (weight) and shift (bias)"),
    LMN_PARAM_SPEC_BOOL(
        "track_running_stats", "true",
        "keep running mean/variance for evaluation (else evaluation uses batch statistics)"),
    LMN_PARAM_SPEC_BOOL("sync", "false",
                        "under data-parallel training, compute training statistics over the "
                        "global batch of every rank (torch.nn.SyncBatchNorm); with one process "
                        "the same as false"),
    LMN_PARAM_SPEC_END,
};

/*
 * Evaluation mode with running statistics is ONNX's inference BatchNormalization; without
 * affine parameters the scale is 1 and the shift 0.  Without running statistics evaluation
 * normalises with the batch's own, which that operator cannot express.
 */
static gboolean batchnorm_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                                 const char *output, GError **error)
{
    const BatchNorm *bn = lmn_layer_get_private(layer);
    if (!bn->track) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "track_running_stats = false normalises with each batch's own statistics "
                    "in evaluation, which ONNX's inference BatchNormalization cannot express");
        return FALSE;
    }
    const char *scale, *shift;
    if (bn->affine) {
        scale = lmn_export_add_param(ex, layer, "weight", error);
        shift = scale ? lmn_export_add_param(ex, layer, "bias", error) : NULL;
    } else {
        LmnShape c = lmn_shape_make(1, bn->channels);
        g_autofree float *v = g_new(float, bn->channels);
        for (gint64 k = 0; k < bn->channels; k++)
            v[k] = 1.0f;
        scale = lmn_export_add_floats(ex, lmn_export_value_name(ex, layer, "ones"), &c, v);
        memset(v, 0, (gsize) bn->channels * sizeof(float));
        shift = lmn_export_add_floats(ex, lmn_export_value_name(ex, layer, "zeros"), &c, v);
    }
    const char *mean = shift ? lmn_export_add_param(ex, layer, "running_mean", error) : NULL;
    const char *var = mean ? lmn_export_add_param(ex, layer, "running_var", error) : NULL;
    if (var == NULL)
        return FALSE;
    const char *in[] = {inputs[0], scale, shift, mean, var, NULL};
    const char *out[] = {output, NULL};
    const LmnExportAttr attrs[] = {LMN_EXPORT_ATTR_F("epsilon", bn->eps), LMN_EXPORT_ATTRS_END};
    lmn_export_add_node(ex, "BatchNormalization", in, out, attrs);
    return TRUE;
}

static const LmnLayerVTable batchnorm_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_NONE,
    .min_inputs = 1,
    .max_inputs = 1,
    .build = batchnorm_build,
    .forward = batchnorm_forward,
    .backward = batchnorm_backward,
    .export_onnx = batchnorm_export,
};

static const LmnFeatureDesc norm_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "batch_norm",
                "batch normalisation over the batch and spatial positions of each channel "
                "(torch.nn.BatchNorm1d/2d)",
                batchnorm_params, &batchnorm_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.norm", LMN_VERSION_STRING, "MIT", "Normalisation layers",
                           norm_features)
