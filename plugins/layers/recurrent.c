/* Lamina — recurrent layers: rnn (tanh), lstm and gru, as torch.nn.RNN/LSTM/GRU with
 * batch_first=True, one layer, one direction, zero initial state.
 *
 * Input per sample [T, F]; output [H] (the last step's hidden state) or, with
 * return_sequences, [T, H].  Parameters carry PyTorch's names and shapes (weight_ih [G*H, F],
 * weight_hh [G*H, H], bias_ih, bias_hh [G*H]; gate order lstm i, f, g, o and gru r, z, n), so a
 * checkpoint's tensors load into PyTorch's weight_ih_l0 etc. unchanged.
 *
 * Forward: one GEMM projects the inputs of all steps (X [N*T, F] W_ih^T); then per step one
 * GEMM h_{t-1} W_hh^T and one plugin kernel for the gate math (recurrent-kernels.c).  Backward
 * is backpropagation through time: per step, from the last, one kernel for the gate gradients,
 * one GEMM for dL/dh_{t-1} and one accumulating dW_hh; after the loop one GEMM each for dW_ih
 * and dx over all steps.
 *
 * Layout.  Tensors arrive batch-major [N, T, ...], so one time step of them is strided.  Rather
 * than gathering and scattering steps with copy_block, the saved states (hidden and cell states,
 * gates) are kept time-major [T, N, ...]: step t is then a packed [N, H] block at offset
 * t * N * H, which a GEMM addresses directly (a_offset / b_offset) with no copy and no view.
 * The tensors that meet the batch-major input (the projections and their gradients) stay
 * batch-major, and the kernels, which index freely, read and write them with the step's stride.
 * The core allocates saved tensors as [N, per-sample shape]; a time-major tensor is declared
 * with per-sample shape [T, ...] and used as [T, N, ...] memory of the same size.
 */
#include <math.h>
#include <string.h>

#include <lamina/lamina.h>

#include "recurrent-kernels.h"

typedef enum {
    CELL_RNN = 0,
    CELL_LSTM = 1,
    CELL_GRU = 2,
} CellKind;

enum { PARAM_WEIGHT_IH = 0, PARAM_WEIGHT_HH = 1, PARAM_BIAS_IH = 2, PARAM_BIAS_HH = 3 };

typedef struct {
    const char *name;
    gint64 gates;       /* G */
    gint64 saved_gates; /* per (t, n): saved gate values in units of H (0: none) */
    gboolean cell_state;
    const LmnKernelDesc *forward;
    const LmnKernelDesc *backward;
} CellInfo;

static const CellInfo cells[] = {
    [CELL_RNN] = {"rnn", 1, 0, FALSE, &recurrent_rnn_forward_kernel,
                  &recurrent_rnn_backward_kernel},
    [CELL_LSTM] = {"lstm", 4, 4, TRUE, &recurrent_lstm_forward_kernel,
                   &recurrent_lstm_backward_kernel},
    /* gru keeps W_hn h + b_hn as a fourth saved value: r multiplies it, so backward needs it. */
    [CELL_GRU] = {"gru", 3, 4, FALSE, &recurrent_gru_forward_kernel,
                  &recurrent_gru_backward_kernel},
};

/* Saved tensors; -1 where a cell has none. */
typedef struct {
    int proj;  /* [N, T, G*H] batch-major: projections, then gate-gradients (see below) */
    int step;  /* [N, G*H]: the current step's recurrent term, then its gradient */
    int hs;    /* [T, N, H] time-major hidden states */
    int cs;    /* [T, N, H] time-major cell states (lstm) */
    int gates; /* [T, N, W] time-major activated gates (lstm, gru) */
    int dh;    /* [N, H] backward: gradient reaching h_t from later steps */
    int dc;    /* [N, H] backward: gradient reaching c_t from later steps (lstm) */
} SavedSlots;

typedef struct {
    CellKind kind;
    const CellInfo *cell;
    gint64 steps, features, hidden;
    gboolean bias;
    gboolean sequences;
    SavedSlots saved;
} Recurrent;

/* A sequence [steps, features] of f32 values, small enough for the kernels' float scalars. */
static gboolean check_sequence_input(LmnLayer *layer, const CellInfo *cell,
                                     const LmnTensorInfo *input, gint64 hidden, GError **error)
{
    const LmnShape *s = &input->shape;
    if (s->ndim != 2) {
        g_autofree char *shape = lmn_shape_to_string(s);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (%s): its input has per-sample shape %s, but recurrent layers "
                    "take a sequence [steps, features] (e.g. [model] input = 50, 2)",
                    lmn_layer_get_name(layer), cell->name, shape);
        return FALSE;
    }
    if (input->dtype != LMN_DTYPE_F32) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (%s): its input is %s, but recurrent layers take f32 values",
                    lmn_layer_get_name(layer), cell->name, lmn_dtype_name(input->dtype));
        return FALSE;
    }
    /* The kernels receive sizes as float scalars, exact below 2^24. */
    if (s->dims[0] >= RNN_MAX_SCALAR_INT || hidden * cell->gates >= RNN_MAX_SCALAR_INT) {
        g_autofree char *shape = lmn_shape_to_string(s);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (%s): input %s with hidden_size %" G_GINT64_FORMAT
                    " is too large (steps and gates * hidden_size must stay below %d)",
                    lmn_layer_get_name(layer), cell->name, shape, hidden, RNN_MAX_SCALAR_INT);
        return FALSE;
    }
    return TRUE;
}

/*
 * torch.nn.RNNBase.reset_parameters: every parameter from U(-1/sqrt(H), 1/sqrt(H)).  The bound
 * depends on H only, so it is passed to the plain uniform initializer; fans are those of the
 * weight matrices (G*H outputs) for whoever picks a fan-based initializer instead.
 */
static void add_recurrent_params(LmnLayer *layer, const Recurrent *r)
{
    const gint64 hidden = r->hidden, gh = r->cell->gates * hidden;
    double k = 1.0 / sqrt((double) hidden);
    char lo[G_ASCII_DTOSTR_BUF_SIZE], hi[G_ASCII_DTOSTR_BUF_SIZE];
    g_ascii_dtostr(lo, sizeof lo, -k);
    g_ascii_dtostr(hi, sizeof hi, k);
    g_autofree char *args = g_strdup_printf("a=%s, b=%s", lo, hi);
    LmnShape w_ih = lmn_shape_make(2, gh, r->features);
    LmnShape w_hh = lmn_shape_make(2, gh, hidden);
    LmnShape b = lmn_shape_make(1, gh);
    lmn_layer_add_param(layer, "weight_ih", &w_ih, LMN_PARAM_ROLE_WEIGHT, "uniform", args,
                        (double) r->features, (double) gh);
    lmn_layer_add_param(layer, "weight_hh", &w_hh, LMN_PARAM_ROLE_WEIGHT, "uniform", args,
                        (double) hidden, (double) gh);
    if (r->bias) {
        lmn_layer_add_param(layer, "bias_ih", &b, LMN_PARAM_ROLE_BIAS, "uniform", args,
                            (double) r->features, (double) gh);
        lmn_layer_add_param(layer, "bias_hh", &b, LMN_PARAM_ROLE_BIAS, "uniform", args,
                            (double) hidden, (double) gh);
    }
}

/*
 * proj holds X W_ih^T + b_ih during forward, which nothing needs afterwards (the gates are saved
 * activated), so backward reuses it for the gate-gradients over all steps; likewise step.
 * Per-sample shapes, with the batch dimension prepended by the core.
 */
static void add_recurrent_saved(LmnLayer *layer, Recurrent *r)
{
    const CellInfo *cell = r->cell;
    const gint64 hidden = r->hidden, gh = cell->gates * hidden;
    LmnShape proj = lmn_shape_make(2, r->steps, gh);
    LmnShape step = lmn_shape_make(1, gh);
    LmnShape states = lmn_shape_make(2, r->steps, hidden);
    LmnShape one = lmn_shape_make(1, hidden);
    r->saved.proj = (int) lmn_layer_add_saved(layer, "proj", &proj, LMN_DTYPE_F32, TRUE);
    r->saved.step = (int) lmn_layer_add_saved(layer, "step", &step, LMN_DTYPE_F32, TRUE);
    r->saved.hs = (int) lmn_layer_add_saved(layer, "h", &states, LMN_DTYPE_F32, TRUE);
    r->saved.dh = (int) lmn_layer_add_saved(layer, "dh", &one, LMN_DTYPE_F32, TRUE);
    r->saved.cs = r->saved.dc = r->saved.gates = -1;
    if (cell->cell_state) {
        r->saved.cs = (int) lmn_layer_add_saved(layer, "c", &states, LMN_DTYPE_F32, TRUE);
        r->saved.dc = (int) lmn_layer_add_saved(layer, "dc", &one, LMN_DTYPE_F32, TRUE);
    }
    if (cell->saved_gates > 0) {
        LmnShape g = lmn_shape_make(2, r->steps, cell->saved_gates * hidden);
        r->saved.gates = (int) lmn_layer_add_saved(layer, "gates", &g, LMN_DTYPE_F32, TRUE);
    }
}

static gboolean recurrent_build(LmnLayer *layer, CellKind kind, const LmnTensorInfo *inputs,
                                LmnTensorInfo *output, GError **error)
{
    const CellInfo *cell = &cells[kind];
    const LmnParams *p = lmn_layer_get_params(layer);
    gint64 hidden = lmn_params_get_int(p, "hidden_size");
    if (!check_sequence_input(layer, cell, &inputs[0], hidden, error))
        return FALSE;
    Recurrent *r = g_new0(Recurrent, 1);
    r->kind = kind;
    r->cell = cell;
    r->steps = inputs[0].shape.dims[0];
    r->features = inputs[0].shape.dims[1];
    r->hidden = hidden;
    r->bias = lmn_params_get_bool(p, "bias");
    r->sequences = lmn_params_get_bool(p, "return_sequences");
    lmn_layer_set_private(layer, r, g_free);
    add_recurrent_params(layer, r);
    add_recurrent_saved(layer, r);
    output->shape = r->sequences ? lmn_shape_make(2, r->steps, hidden) : lmn_shape_make(1, hidden);
    output->dtype = LMN_DTYPE_F32;
    return TRUE;
}

static gboolean rnn_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                          LmnTensorInfo *output, GError **error)
{
    return recurrent_build(layer, CELL_RNN, inputs, output, error);
}

static gboolean lstm_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                           LmnTensorInfo *output, GError **error)
{
    return recurrent_build(layer, CELL_LSTM, inputs, output, error);
}

static gboolean gru_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                          LmnTensorInfo *output, GError **error)
{
    return recurrent_build(layer, CELL_GRU, inputs, output, error);
}

static LmnTensor *saved(LmnLayer *layer, int index)
{
    return index >= 0 ? lmn_layer_get_saved(layer, (guint) index) : NULL;
}

static void set_scalars(const Recurrent *r, gint64 batch, gint64 t, float *s)
{
    s[RNN_SCALAR_BATCH] = (float) batch;
    s[RNN_SCALAR_STEPS] = (float) r->steps;
    s[RNN_SCALAR_HIDDEN] = (float) r->hidden;
    s[RNN_SCALAR_T] = (float) t;
    s[RNN_SCALAR_SEQUENCES] = r->sequences ? 1.0f : 0.0f;
}

static void recurrent_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Recurrent *r = lmn_layer_get_private(layer);
    const gint64 N = io->batch, T = r->steps, H = r->hidden, GH = r->cell->gates * H;
    /* The batch size travels through a float scalar as well (see recurrent_build). */
    g_return_if_fail(N < RNN_MAX_SCALAR_INT);
    LmnTensor *proj = saved(layer, r->saved.proj), *step = saved(layer, r->saved.step);
    LmnTensor *hs = saved(layer, r->saved.hs), *cs = saved(layer, r->saved.cs);
    LmnTensor *gates = saved(layer, r->saved.gates);
    LmnTensor *w_hh = lmn_layer_get_param(layer, PARAM_WEIGHT_HH);
    LmnTensor *b_hh = r->bias ? lmn_layer_get_param(layer, PARAM_BIAS_HH) : NULL;

    /* proj [N*T, GH] = X [N*T, F] W_ih^T + b_ih, for every step at once. */
    LmnGemm gp = {
        .struct_size = sizeof(LmnGemm),
        .trans_b = TRUE,
        .m = N * T, .n = GH, .k = r->features,
        .alpha = 1.0f, .beta = 0.0f,
        .a = io->inputs[0], .b = lmn_layer_get_param(layer, PARAM_WEIGHT_IH), .c = proj,
    };
    lmn_op_gemm(&gp);
    if (r->bias) {
        lmn_op_bias_add(proj, lmn_layer_get_param(layer, PARAM_BIAS_IH), N * T, GH, 1);
    }

    for (gint64 t = 0; t < T; t++) {
        /* step [N, GH] = h_{t-1} W_hh^T + b_hh; h_{-1} = 0. */
        if (t == 0) {
            lmn_op_fill(step, 0.0f);
        } else {
            LmnGemm gs = {
                .struct_size = sizeof(LmnGemm),
                .trans_b = TRUE,
                .m = N, .n = GH, .k = H,
                .alpha = 1.0f, .beta = 0.0f,
                .a = hs, .b = w_hh, .c = step,
                .a_offset = (t - 1) * N * H,
            };
            lmn_op_gemm(&gs);
        }
        if (b_hh != NULL) {
            lmn_op_bias_add(step, b_hh, N, GH, 1);
        }
        float sc[RNN_N_SCALARS];
        set_scalars(r, N, t, sc);
        switch (r->kind) {
        case CELL_RNN: {
            LmnTensor *b[] = {proj, step, hs, io->output};
            lmn_op_kernel(r->cell->forward, (gsize) (N * H), b, sc);
            break;
        }
        case CELL_LSTM: {
            LmnTensor *b[] = {proj, step, gates, cs, hs, io->output};
            lmn_op_kernel(r->cell->forward, (gsize) (N * H), b, sc);
            break;
        }
        case CELL_GRU: {
            LmnTensor *b[] = {proj, step, gates, hs, io->output};
            lmn_op_kernel(r->cell->forward, (gsize) (N * H), b, sc);
            break;
        }
        }
    }
}

/* Step @t's cell kernel: proj[:, t, :] gets the gradients of the gate pre-activations, step
 * those of the recurrent term (they differ for gru's n gate); dh, dc move towards step t-1. */
static void cell_backward(LmnLayer *layer, const Recurrent *r, const LmnLayerIO *io, gint64 t)
{
    const gint64 N = io->batch, H = r->hidden;
    LmnTensor *proj = saved(layer, r->saved.proj), *step = saved(layer, r->saved.step);
    LmnTensor *hs = saved(layer, r->saved.hs), *cs = saved(layer, r->saved.cs);
    LmnTensor *gates = saved(layer, r->saved.gates);
    LmnTensor *dh = saved(layer, r->saved.dh), *dc = saved(layer, r->saved.dc);
    float sc[RNN_N_SCALARS];
    set_scalars(r, N, t, sc);
    switch (r->kind) {
    case CELL_RNN: {
        LmnTensor *b[] = {io->output_grad, dh, hs, proj, step};
        lmn_op_kernel(r->cell->backward, (gsize) (N * H), b, sc);
        break;
    }
    case CELL_LSTM: {
        LmnTensor *b[] = {io->output_grad, dh, dc, gates, cs, proj, step};
        lmn_op_kernel(r->cell->backward, (gsize) (N * H), b, sc);
        break;
    }
    case CELL_GRU: {
        LmnTensor *b[] = {io->output_grad, dh, gates, hs, proj, step};
        lmn_op_kernel(r->cell->backward, (gsize) (N * H), b, sc);
        break;
    }
    }
}

/* From step @t (> 0) to t-1: dW_hh += step^T h_{t-1}, and dh_{t-1} = step W_hh. */
static void recurrent_term_backward(LmnLayer *layer, const Recurrent *r, gint64 N, gint64 t)
{
    const gint64 H = r->hidden, GH = r->cell->gates * H;
    const gboolean gru = r->kind == CELL_GRU;
    LmnTensor *step = saved(layer, r->saved.step), *hs = saved(layer, r->saved.hs);
    LmnTensor *dh = saved(layer, r->saved.dh);
    /* dW_hh [GH, H] += step^T [GH, N] h_{t-1} [N, H] */
    LmnGemm gw = {
        .struct_size = sizeof(LmnGemm),
        .trans_a = TRUE,
        .m = GH,
        .n = H,
        .k = N,
        .alpha = 1.0f,
        .beta = 1.0f,
        .a = step,
        .b = hs,
        .c = lmn_layer_get_grad(layer, PARAM_WEIGHT_HH),
        .b_offset = (t - 1) * N * H,
    };
    lmn_op_gemm(&gw);
    /* dh_{t-1} [N, H] = step [N, GH] W_hh [GH, H], plus gru's direct path z * dh_t, which its
     * kernel left in dh. */
    LmnGemm gh = {
        .struct_size = sizeof(LmnGemm),
        .m = N,
        .n = H,
        .k = GH,
        .alpha = 1.0f,
        .beta = gru ? 1.0f : 0.0f,
        .a = step,
        .b = lmn_layer_get_param(layer, PARAM_WEIGHT_HH),
        .c = dh,
    };
    lmn_op_gemm(&gh);
}

/* Over all steps at once: dW_ih [GH, F] = proj^T [GH, N*T] X [N*T, F], db_ih, dX. */
static void input_projection_backward(LmnLayer *layer, const Recurrent *r, const LmnLayerIO *io)
{
    const gint64 N = io->batch, T = r->steps, GH = r->cell->gates * r->hidden;
    LmnTensor *proj = saved(layer, r->saved.proj);
    LmnGemm gw = {
        .struct_size = sizeof(LmnGemm),
        .trans_a = TRUE,
        .m = GH, .n = r->features, .k = N * T,
        .alpha = 1.0f, .beta = 0.0f,
        .a = proj, .b = io->inputs[0], .c = lmn_layer_get_grad(layer, PARAM_WEIGHT_IH),
    };
    lmn_op_gemm(&gw);
    if (r->bias) {
        LmnTensor *db_ih = lmn_layer_get_grad(layer, PARAM_BIAS_IH);
        lmn_op_bias_grad(db_ih, proj, N * T, GH, 1, 0.0f);
        /* For rnn and lstm both biases enter the same pre-activation a = proj + step, so at
         * every step the gradient with respect to step equals the one with respect to proj and
         * db_hh = db_ih.  One copy replaces a reduction per step (on lavapipe a barrier-bound
         * dispatch of one workgroup per channel, slower than the step's two GEMMs together). */
        if (r->kind != CELL_GRU)
            lmn_op_copy(lmn_layer_get_grad(layer, PARAM_BIAS_HH), db_ih);
    }
    if (io->input_grads[0] != NULL) {
        LmnGemm gx = {
            .struct_size = sizeof(LmnGemm),
            .m = N * T, .n = r->features, .k = GH,
            .alpha = 1.0f, .beta = 0.0f,
            .a = proj, .b = lmn_layer_get_param(layer, PARAM_WEIGHT_IH), .c = io->input_grads[0],
        };
        lmn_op_gemm(&gx);
    }
}

static void recurrent_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    const Recurrent *r = lmn_layer_get_private(layer);
    const gint64 N = io->batch, T = r->steps, GH = r->cell->gates * r->hidden;
    g_return_if_fail(N < RNN_MAX_SCALAR_INT);
    LmnTensor *step = saved(layer, r->saved.step);
    LmnTensor *dc = saved(layer, r->saved.dc);
    LmnTensor *db_hh = r->bias ? lmn_layer_get_grad(layer, PARAM_BIAS_HH) : NULL;

    /* Nothing flows into the last step from later ones; h_{-1} = 0 gives W_hh no term at t = 0,
     * so with T = 1 its gradient is exactly zero. */
    lmn_op_fill(saved(layer, r->saved.dh), 0.0f);
    if (dc != NULL)
        lmn_op_fill(dc, 0.0f);
    lmn_op_fill(lmn_layer_get_grad(layer, PARAM_WEIGHT_HH), 0.0f);

    for (gint64 t = T - 1; t >= 0; t--) {
        cell_backward(layer, r, io, t);
        /* gru's recurrent term has its own gradient for the n gate (r * da_n), so db_hh sums
         * step over the steps; rnn and lstm get it after the loop. */
        if (db_hh != NULL && r->kind == CELL_GRU)
            lmn_op_bias_grad(db_hh, step, N, GH, 1, t == T - 1 ? 0.0f : 1.0f);
        if (t > 0)
            recurrent_term_backward(layer, r, N, t);
    }
    input_projection_backward(layer, r, io);
}

/* ---- ONNX export ---- */

/*
 * Gate blocks in ONNX's order, as indices of PyTorch's (and Lamina's): ONNX's LSTM stacks
 * i, o, f, c where PyTorch stacks i, f, g, o, and its GRU z, r, h where PyTorch has r, z, n.
 */
static const gint64 onnx_gate_order[][4] = {
    [CELL_RNN] = {0},
    [CELL_LSTM] = {0, 3, 1, 2},
    [CELL_GRU] = {1, 0, 2},
};

/* Parameter @index of @layer in host memory, gate blocks reordered for ONNX into @dst (its
 * rows, G*H of @cols values, are written from offset 0). */
static gboolean read_gates(LmnLayer *layer, const Recurrent *r, guint index, gint64 cols,
                           float *dst, GError **error)
{
    LmnTensor *t = lmn_layer_get_param(layer, index);
    g_autofree float *src = g_new(float, MAX(lmn_tensor_numel(t), 1));
    if (!lmn_tensor_read(t, src, lmn_tensor_nbytes(t), error))
        return FALSE;
    gsize block = (gsize) (r->hidden * cols);
    for (gint64 g = 0; g < r->cell->gates; g++)
        memcpy(dst + g * block, src + onnx_gate_order[r->kind][g] * block, block * sizeof(float));
    return TRUE;
}

/* W [1, G*H, F], R [1, G*H, H] and B [1, 2*G*H] (input biases, then recurrent ones) named
 * LAYER.weight_ih, LAYER.weight_hh and LAYER.bias: PyTorch's tensors in ONNX's layout. */
static gboolean add_gate_params(LmnLayer *layer, LmnExport *ex, const Recurrent *r,
                                const char **names, GError **error)
{
    const char *layer_name = lmn_layer_get_name(layer);
    gint64 gh = r->cell->gates * r->hidden;
    LmnShape w = lmn_shape_make(3, (gint64) 1, gh, r->features);
    LmnShape u = lmn_shape_make(3, (gint64) 1, gh, r->hidden);
    LmnShape b = lmn_shape_make(2, (gint64) 1, 2 * gh);
    /* Each is a parameter the core allocated, so its count fits. */
    g_autofree float *buf = g_new(float, MAX(gh * MAX(r->features, r->hidden), 2 * gh));
    g_autofree char *wn = g_strdup_printf("%s.weight_ih", layer_name);
    g_autofree char *un = g_strdup_printf("%s.weight_hh", layer_name);
    g_autofree char *bn = g_strdup_printf("%s.bias", layer_name);
    if (!read_gates(layer, r, PARAM_WEIGHT_IH, r->features, buf, error))
        return FALSE;
    names[0] = lmn_export_add_floats(ex, wn, &w, buf);
    if (!read_gates(layer, r, PARAM_WEIGHT_HH, r->hidden, buf, error))
        return FALSE;
    names[1] = lmn_export_add_floats(ex, un, &u, buf);
    names[2] = "";
    if (r->bias) {
        if (!read_gates(layer, r, PARAM_BIAS_IH, 1, buf, error) ||
            !read_gates(layer, r, PARAM_BIAS_HH, 1, buf + gh, error))
            return FALSE;
        names[2] = lmn_export_add_floats(ex, bn, &b, buf);
    }
    return TRUE;
}

/* A node with one input and one output and its attributes. */
static void add_unary(LmnExport *ex, const char *op, const char *x, const char *y,
                      const LmnExportAttr *attrs)
{
    const char *in[] = {x, NULL}, *out[] = {y, NULL};
    lmn_export_add_node(ex, op, in, out, attrs);
}

/*
 * Opset 13's RNN, LSTM and GRU are time-major: Transpose [N, T, F] to [T, N, F], run the cell
 * (GRU with linear_before_reset = 1: r multiplies W_hn h + b_hn, as PyTorch's does), and take
 * Y_h [1, N, H] squeezed to [N, H], or Y [T, 1, N, H] squeezed and transposed back to [N, T, H].
 */
static gboolean recurrent_export(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                                 const char *output, GError **error)
{
    const Recurrent *r = lmn_layer_get_private(layer);
    const char *params[3];
    if (!add_gate_params(layer, ex, r, params, error))
        return FALSE;
    static const gint64 swap01[] = {1, 0, 2};
    const LmnExportAttr perm[] = {LMN_EXPORT_ATTR_IS("perm", swap01, 3), LMN_EXPORT_ATTRS_END};
    const char *xt = lmn_export_value_name(ex, layer, "time_major");
    add_unary(ex, "Transpose", inputs[0], xt, perm);
    const char *y = lmn_export_value_name(ex, layer, "Y");
    const char *yh = lmn_export_value_name(ex, layer, "Y_h");
    const char *cell_in[] = {xt, params[0], params[1], params[2], NULL};
    const char *cell_out[] = {y, yh, NULL};
    const LmnExportAttr attrs[] = {
        LMN_EXPORT_ATTR_I("hidden_size", r->hidden),
        r->kind == CELL_GRU ? (LmnExportAttr) LMN_EXPORT_ATTR_I("linear_before_reset", 1)
                            : (LmnExportAttr) LMN_EXPORT_ATTRS_END,
        LMN_EXPORT_ATTRS_END,
    };
    static const char *const ops[] = {[CELL_RNN] = "RNN", [CELL_LSTM] = "LSTM", [CELL_GRU] = "GRU"};
    lmn_export_add_node(ex, ops[r->kind], cell_in, cell_out, attrs);
    const gint64 axis = r->sequences ? 1 : 0;
    const char *axes = lmn_export_add_ints(ex, lmn_export_value_name(ex, layer, "axes"), &axis, 1);
    const char *squeezed = r->sequences ? lmn_export_value_name(ex, layer, "Y_squeezed") : output;
    const char *sq_in[] = {r->sequences ? y : yh, axes, NULL}, *sq_out[] = {squeezed, NULL};
    lmn_export_add_node(ex, "Squeeze", sq_in, sq_out, NULL);
    if (r->sequences)
        add_unary(ex, "Transpose", squeezed, output, perm);
    return TRUE;
}

static const LmnParamSpec recurrent_params[] = {
    LMN_PARAM_SPEC_INT("hidden_size", NULL, 1, (double) G_MAXINT32, LMN_PARAM_FLAG_REQUIRED,
                       "number of features of the hidden state (H)"),
    LMN_PARAM_SPEC_BOOL("bias", "true", "learnable biases bias_ih and bias_hh"),
    LMN_PARAM_SPEC_BOOL(
        "return_sequences", "false",
        "output every step's hidden state [steps, H] instead of the last one's [H]"),
    LMN_PARAM_SPEC_END,
};

#define RECURRENT_VTABLE(build_func)                                                               \
    {                                                                                              \
        .struct_size = sizeof(LmnLayerVTable), .flags = LMN_LAYER_FLAG_NONE, .min_inputs = 1,      \
        .max_inputs = 1, .build = build_func, .forward = recurrent_forward,                        \
        .backward = recurrent_backward, .export_onnx = recurrent_export,                           \
    }

static const LmnLayerVTable rnn_vtable = RECURRENT_VTABLE(rnn_build);
static const LmnLayerVTable lstm_vtable = RECURRENT_VTABLE(lstm_build);
static const LmnLayerVTable gru_vtable = RECURRENT_VTABLE(gru_build);

static const LmnFeatureDesc recurrent_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "rnn",
                "Elman recurrent layer h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) "
                "over [steps, features] inputs (torch.nn.RNN, batch_first)",
                recurrent_params, &rnn_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "lstm",
                "long short-term memory layer over [steps, features] inputs, gates "
                "i, f, g, o (torch.nn.LSTM, batch_first)",
                recurrent_params, &lstm_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "gru",
                "gated recurrent unit layer over [steps, features] inputs, gates r, z, n "
                "(torch.nn.GRU, batch_first)",
                recurrent_params, &gru_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.recurrent", LMN_VERSION_STRING, "MIT",
                           "Recurrent layers (rnn, lstm, gru) with backpropagation through time",
                           recurrent_features)
