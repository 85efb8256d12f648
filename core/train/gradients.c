/* Lamina — what happens to the gradients between backward and the optimizer: L1/L2 penalties,
 * gradient noise, clipping by norm and value, and the guard that stops a run on a non-finite
 * gradient, naming the first layer that has one. */
#include "trainer-private.h"

#include <math.h>
#include <string.h>

static void param_slot_clear(gpointer p)
{
    ParamSlot *ps = p;
    g_clear_pointer(&ps->scratch, lmn_tensor_unref);
}
/* Per-parameter views and scratch for penalties and noise. */
gboolean lmn_train_setup_gradients(LmnTrainer *t, GError **error)
{
    const LmnTrainConfig *tc = t->tc;
    LmnTensor *flat = lmn_model_get_params(t->model);
    gboolean need_scratch = tc->grad_noise > 0;
    t->slots = g_array_new(FALSE, TRUE, sizeof(ParamSlot));
    g_array_set_clear_func(t->slots, param_slot_clear);
    for (guint i = 0; i < lmn_model_get_n_layers(t->model); i++) {
        LmnLayer *l = lmn_model_get_layer(t->model, i);
        const LmnLayerConfig *lc = lmn_config_get_layer(t->cfg, i);
        for (guint p = 0; p < lmn_layer_get_n_params(l); p++) {
            gboolean penalize =
                lc->trainable &&
                (lmn_layer_get_param_role(l, p) == LMN_PARAM_ROLE_WEIGHT || tc->penalize_bias);
            ParamSlot ps = {
                .w = lmn_layer_get_param(l, p),
                .g = lmn_layer_get_grad(l, p),
                .l1 = penalize ? (float) lc->l1 : 0.0f,
                .l2 = penalize ? (float) lc->l2 : 0.0f,
                .frozen = !lc->trainable,
            };
            need_scratch = need_scratch || ps.l1 > 0;
            t->has_penalty = t->has_penalty || ps.l1 > 0 || ps.l2 > 0;
            g_array_append_val(t->slots, ps);
        }
    }
    LmnShape one = lmn_shape_make(0);
    if (need_scratch) {
        t->scratch = lmn_tensor_new(t->backend, LMN_DTYPE_F32, &flat->shape, error);
        if (!t->scratch)
            return FALSE;
        for (guint i = 0; i < t->slots->len; i++) {
            ParamSlot *ps = &g_array_index(t->slots, ParamSlot, i);
            gint64 off = (gint64) ((ps->w->offset - flat->offset) / sizeof(float));
            ps->scratch = lmn_tensor_new_view(t->scratch, off, &ps->w->shape);
        }
    }
    if (t->has_penalty) {
        t->penalty = lmn_tensor_new(t->backend, LMN_DTYPE_F32, &one, error);
        if (!t->penalty)
            return FALSE;
    }
    if (tc->clip_norm > 0) {
        t->norm_sq = lmn_tensor_new(t->backend, LMN_DTYPE_F32, &one, error);
        if (!t->norm_sq)
            return FALSE;
    }
    return TRUE;
}
/* The slow path of the gradient guard, taken only once the squared global norm is not finite:
 * reads every parameter's gradient to the host to name the first layer whose gradient holds NaN
 * or an infinity, or, when every value is finite, the first whose squares overflow float.
 * @step is the step that made the gradient, or 0 when the norm was only read at the epoch's end
 * (a device backend).  Always returns FALSE with @error. */
gboolean lmn_train_non_finite_gradient(LmnTrainer *t, gint64 step, double norm_sq, GError **error)
{
    g_autofree char *culprit = NULL;
    for (guint i = 0; !culprit && i < lmn_model_get_n_layers(t->model); i++) {
        LmnLayer *l = lmn_model_get_layer(t->model, i);
        for (guint p = 0; !culprit && p < lmn_layer_get_n_params(l); p++) {
            LmnTensor *g = lmn_layer_get_grad(l, p);
            gint64 n = lmn_tensor_numel(g);
            g_autofree float *v = g_try_new(float, MAX(n, 1));
            if (!v || !lmn_tensor_read(g, v, (gsize) n * sizeof(float), NULL))
                continue;
            gint64 bad = 0;
            double sq = 0;
            for (gint64 k = 0; k < n; k++) {
                bad += !isfinite(v[k]);
                sq += (double) v[k] * v[k];
            }
            if (bad > 0)
                culprit =
                    g_strdup_printf("layer '%s' parameter '%s' has %" G_GINT64_FORMAT
                                    " non-finite gradient values of %" G_GINT64_FORMAT,
                                    lmn_layer_get_name(l), lmn_layer_get_param_name(l, p), bad, n);
            else if (sq > G_MAXFLOAT)
                culprit =
                    g_strdup_printf("layer '%s' parameter '%s' has gradients so large that "
                                    "their squares (%g) overflow float",
                                    lmn_layer_get_name(l), lmn_layer_get_param_name(l, p), sq);
        }
    }
    if (!culprit)
        culprit = g_strdup("no layer's gradient holds NaN or an infinity any more");
    if (step > 0)
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_NON_FINITE,
                    "epoch %" G_GINT64_FORMAT ", step %" G_GINT64_FORMAT ": the gradient is not "
                    "finite (squared global norm %g; %s); stopped before applying it (checkpoints "
                    "already in %s are kept). Lower the learning rate, or check the data and "
                    "the initial weights for extreme values",
                    t->state.epoch + 1, step, norm_sq, culprit, t->output_dir);
    else
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_NON_FINITE,
                    "epoch %" G_GINT64_FORMAT ": a gradient became non-finite during the epoch "
                    "(on this backend the gradient norm is checked once per epoch; now %s); "
                    "stopped without saving this epoch (checkpoints already in %s are kept). "
                    "Lower the learning rate, or check the data and the initial weights for "
                    "extreme values",
                    t->state.epoch + 1, culprit, t->output_dir);
    return FALSE;
}
/* The gradient guard without clip_norm: one reduction per step.  With host memory (CPU) the
 * norm is checked at once, so the step is known and not applied; on a device a read every step
 * would wait for it every step, so the squares accumulate there (NaN and infinity stay in a
 * sum) and read_epoch_figures() reads the sum with the epoch's loss. */
static gboolean guard_gradients(LmnTrainer *t, LmnTensor *grads, GError **error)
{
    if (!t->grad_sq) {
        LmnShape one = lmn_shape_make(0);
        t->grad_sq = lmn_tensor_new(t->backend, LMN_DTYPE_F32, &one, error);
        if (!t->grad_sq)
            return FALSE;
        lmn_op_fill(t->grad_sq, 0);
    }
    const float *host = lmn_backend_host_pointer(t->grad_sq);
    lmn_op_reduce(LMN_REDUCE_SUM_SQUARES, grads, t->grad_sq, 1.0f, host ? 0.0f : 1.0f);
    if (host && !isfinite(*host))
        return lmn_train_non_finite_gradient(t, t->state.step + 1, *host, error);
    return TRUE;
}
/* Penalties, noise and clipping between backward and the optimizer (order documented in
 * LmnTrainConfig), and the guard on the gradient's norm.  @m is the batch size, for the loss
 * accumulator. */
gboolean lmn_train_process_gradients(LmnTrainer *t, gint64 m, GError **error)
{
    const LmnTrainConfig *tc = t->tc;
    guint64 step = (guint64) t->state.step;
    if (t->has_penalty) {
        /* L2 is l2/2 ||w||^2 in the loss, so its gradient is l2 w (torch's weight_decay for
         * SGD); L1 is l1 ||w||_1 with the subgradient l1 sign(w), 0 at w = 0. */
        float beta = 0.0f;
        for (guint i = 0; i < t->slots->len; i++) {
            ParamSlot *ps = &g_array_index(t->slots, ParamSlot, i);
            if (ps->l2 > 0) {
                lmn_op_reduce(LMN_REDUCE_SUM_SQUARES, ps->w, t->penalty, 0.5f * ps->l2, beta);
                beta = 1.0f;
                lmn_op_axpby(ps->l2, ps->w, 1.0f, ps->g);
            }
            if (ps->l1 > 0) {
                lmn_op_reduce(LMN_REDUCE_SUM_ABS, ps->w, t->penalty, ps->l1, beta);
                beta = 1.0f;
                lmn_op_unary(LMN_UNARY_SIGN, ps->w, ps->scratch, 0.0f);
                lmn_op_axpby(ps->l1, ps->scratch, 1.0f, ps->g);
            }
        }
        lmn_op_axpby((float) m, t->penalty, 1.0f, t->loss_acc);
    }
    if (tc->grad_noise > 0) {
        /* Neelakantan et al. (2015): sigma_t = sigma_0 / (1 + t)^gamma, t = steps done. */
        double sigma = tc->grad_noise / pow(1.0 + (double) step, tc->grad_noise_gamma);
        lmn_op_random_normal(t->scratch, 0.0f, (float) sigma, t->state.seed,
                             LMN_STREAM(LMN_STREAM_NOISE, step));
        for (guint i = 0; i < t->slots->len; i++) {
            ParamSlot *ps = &g_array_index(t->slots, ParamSlot, i);
            if (!ps->frozen)
                lmn_op_axpby(1.0f, ps->scratch, 1.0f, ps->g);
        }
    }
    LmnTensor *grads = lmn_model_get_grads(t->model);
    if (tc->clip_norm > 0) {
        /* torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), applied if < 1. */
        double norm_sq = 0;
        lmn_op_reduce(LMN_REDUCE_SUM_SQUARES, grads, t->norm_sq, 1.0f, 0.0f);
        if (!lmn_train_read_scalar(t->norm_sq, &norm_sq, error))
            return FALSE;
        /* An infinite norm would make coef 0 and zero the gradient silently. */
        if (!isfinite(norm_sq))
            return lmn_train_non_finite_gradient(t, t->state.step + 1, norm_sq, error);
        double coef = tc->clip_norm / (sqrt(norm_sq) + 1e-6);
        /* The optimizer's kernel applies the coefficient as it reads each gradient, unless a
         * clamp by value comes after it, which needs the scaled gradients in memory. */
        if (coef < 1.0 && tc->clip_value > 0)
            lmn_op_axpby((float) coef, grads, 0.0f, grads);
        else if (coef < 1.0)
            lmn_optimizer_set_grad_scale(t->opt, (float) coef);
    } else if (!guard_gradients(t, grads, error)) {
        return FALSE;
    }
    if (tc->clip_value > 0)
        lmn_op_clamp(grads, (float) -tc->clip_value, (float) tc->clip_value);
    return TRUE;
}
