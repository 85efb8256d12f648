/* Lamina — adversarial attacks (attack.h): FGSM and PGD through the model's input gradients.
 *
 * The perturbation is computed on the host: a step needs one input-gradient read and one input
 * write per batch anyway, and float32 element-wise arithmetic in a fixed order is what makes the
 * result equal PyTorch's on the same model, on every backend. */
#include "attack-private.h"

#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

void lmn_attack_options_init(LmnAttackOptions *options)
{
    g_return_if_fail(options != NULL);
    memset(options, 0, sizeof *options);
    options->method = LMN_ATTACK_FGSM;
    options->eps = 0.0;
    options->steps = 10;
    options->alpha = NAN;
    options->clip_min = -INFINITY;
    options->clip_max = INFINITY;
}

gboolean lmn_attack_options_check(const LmnAttackOptions *o, GError **error)
{
    g_return_val_if_fail(o != NULL, FALSE);
    if (o->method != LMN_ATTACK_FGSM && o->method != LMN_ATTACK_PGD) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "method: %d is not fgsm or pgd", (int) o->method);
        return FALSE;
    }
    if (!isfinite(o->eps) || o->eps < 0) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "eps: %g is not a finite number >= 0", o->eps);
        return FALSE;
    }
    if (o->method == LMN_ATTACK_PGD && o->steps < 1) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "steps: %d; pgd needs at least 1 step", o->steps);
        return FALSE;
    }
    if (o->method == LMN_ATTACK_PGD && !isnan(o->alpha) && (!isfinite(o->alpha) || o->alpha <= 0)) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "alpha: %g is not a finite number > 0", o->alpha);
        return FALSE;
    }
    if (isnan(o->clip_min) || isnan(o->clip_max) || o->clip_min > o->clip_max) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "clip: the minimum %g is not <= the maximum %g", o->clip_min, o->clip_max);
        return FALSE;
    }
    return TRUE;
}

static inline float clampf(float v, float lo, float hi)
{
    return fminf(fmaxf(v, lo), hi);
}

static inline float signf(float g)
{
    return (float) ((g > 0) - (g < 0));
}

/* One forward in evaluation mode on @x; with @grad_out also backward and dL/dx into it; with
 * @correct also the number of correct rows. */
static gboolean step(LmnModel *model, gint64 n, const float *x, float *grad_out, LmnTensor *correct,
                     gint64 *correct_out, GError **error)
{
    LmnTensor *xt, *yt;
    lmn_model_set_batch(model, n, &xt, &yt);
    if (!lmn_tensor_write(xt, x, lmn_tensor_nbytes(xt), error))
        return FALSE;
    lmn_model_forward(model, FALSE, 0, 0);
    if (correct_out) {
        lmn_op_fill(correct, 0);
        lmn_op_count_correct(lmn_model_get_prediction(model), yt, correct);
        float c = 0;
        if (!lmn_tensor_read(correct, &c, sizeof c, error))
            return FALSE;
        *correct_out = (gint64) c;
    }
    if (grad_out) {
        lmn_model_backward_input(model, 0, 0);
        LmnTensor *g = lmn_model_get_input_grad(model);
        if (!lmn_tensor_read(g, grad_out, lmn_tensor_nbytes(g), error))
            return FALSE;
    }
    return TRUE;
}

/* The checks lmn_attack_batch() documents, shared with adversarial training. */
gboolean lmn_attack_check_model(LmnModel *model, GError **error)
{
    if (lmn_model_get_n_classes(model) <= 0) {
        g_set_error_literal(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                            "an attack needs a model whose loss takes class labels (e.g. "
                            "softmax_cross_entropy); this one has none");
        return FALSE;
    }
    if (!lmn_model_get_input_grad_enabled(model)) {
        g_set_error_literal(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                            "an attack needs input gradients: call lmn_model_set_input_grad() "
                            "first");
        return FALSE;
    }
    return TRUE;
}

gboolean lmn_attack_work_init(LmnAttackWork *w, gint64 numel, gint64 n_max, GError **error)
{
    memset(w, 0, sizeof *w);
    gsize total = 0;
    if (numel < 1 || n_max < 1 || !g_size_checked_mul(&total, (gsize) numel, (gsize) n_max) ||
        total > G_MAXSIZE / (3 * sizeof(float))) {
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                    "an attack on %" G_GINT64_FORMAT " samples of %" G_GINT64_FORMAT
                    " elements needs more memory than can be addressed",
                    n_max, numel);
        return FALSE;
    }
    w->x0 = g_try_new(float, total);
    w->cur = g_try_new(float, total);
    w->grad = g_try_new(float, total);
    w->capacity = n_max;
    if (!w->x0 || !w->cur || !w->grad) {
        lmn_attack_work_clear(w);
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                    "out of memory for an attack's %zu MiB of host buffers",
                    3 * total * sizeof(float) >> 20);
        return FALSE;
    }
    return TRUE;
}

void lmn_attack_work_clear(LmnAttackWork *w)
{
    g_clear_pointer(&w->x0, g_free);
    g_clear_pointer(&w->cur, g_free);
    g_clear_pointer(&w->grad, g_free);
    w->capacity = 0;
}

gboolean lmn_attack_run(LmnModel *model, const LmnAttackOptions *o, const float *x,
                        const gint32 *labels, gint64 n, gint64 first_index, LmnAttackWork *w,
                        LmnTensor *correct, gint64 *clean_correct_out, gint64 *adv_correct_out,
                        GError **error)
{
    const gint64 numel = lmn_shape_numel(lmn_model_get_input_shape(model));
    const gsize total = (gsize) (n * numel);
    const float eps = (float) o->eps;
    const float lo = (float) o->clip_min, hi = (float) o->clip_max;
    const gboolean pgd = o->method == LMN_ATTACK_PGD;
    const gint steps = pgd ? o->steps : 1;
    const float alpha =
        !pgd ? eps : (float) (isnan(o->alpha) ? 2.5 * o->eps / (double) o->steps : o->alpha);
    const gboolean random_start = pgd && o->random_start;

    LmnTensor *yt;
    lmn_model_set_batch(model, n, NULL, &yt);
    if (!lmn_tensor_write(yt, labels, lmn_tensor_nbytes(yt), error))
        return FALSE;
    /* The clean input is kept aside: @x may be the model's own input tensor, which every step
     * overwrites. */
    float *x0 = w->x0, *cur = w->cur, *grad = w->grad;
    memcpy(x0, x, total * sizeof(float));
    memcpy(cur, x, total * sizeof(float));
    if (random_start) {
        for (gint64 s = 0; s < n; s++) {
            LmnRandom r;
            lmn_random_init(&r, o->seed, LMN_STREAM(LMN_STREAM_ATTACK, first_index + s));
            for (gint64 k = 0; k < numel; k++) {
                gsize i = (gsize) (s * numel + k);
                float u = lmn_random_uniform(&r);
                cur[i] = clampf(x0[i] + eps * (2.0f * u - 1.0f), lo, hi);
            }
        }
        if (clean_correct_out && !step(model, n, x0, NULL, correct, clean_correct_out, error))
            return FALSE;
    }
    for (gint k = 0; k < steps; k++) {
        /* Without a random start the first forward is the clean input's: it also counts. */
        gint64 *count = k == 0 && !random_start ? clean_correct_out : NULL;
        if (!step(model, n, cur, grad, correct, count, error))
            return FALSE;
        for (gsize i = 0; i < total; i++) {
            float v = cur[i] + alpha * signf(grad[i]);
            if (pgd)
                v = fminf(fmaxf(v, x0[i] - eps), x0[i] + eps);
            cur[i] = clampf(v, lo, hi);
        }
    }
    if (adv_correct_out && !step(model, n, cur, NULL, correct, adv_correct_out, error))
        return FALSE;
    return TRUE;
}

gboolean lmn_attack_batch(LmnModel *model, const LmnAttackOptions *o, const float *x,
                          const gint32 *labels, gint64 n, gint64 first_index, float *x_adv_out,
                          gint64 *clean_correct_out, gint64 *adv_correct_out, GError **error)
{
    g_return_val_if_fail(model && o && x && labels && n >= 1 && first_index >= 0 && x_adv_out,
                         FALSE);
    if (!lmn_attack_options_check(o, error) || !lmn_attack_check_model(model, error))
        return FALSE;
    LmnShape one = lmn_shape_make(0);
    g_autoptr(LmnTensor) correct = NULL;
    if (clean_correct_out || adv_correct_out) {
        correct = lmn_tensor_new(lmn_model_get_backend(model), LMN_DTYPE_F32, &one, error);
        if (!correct)
            return FALSE;
    }
    const gint64 numel = lmn_shape_numel(lmn_model_get_input_shape(model));
    LmnAttackWork w;
    if (!lmn_attack_work_init(&w, numel, n, error))
        return FALSE;
    gboolean ok = lmn_attack_run(model, o, x, labels, n, first_index, &w, correct,
                                 clean_correct_out, adv_correct_out, error);
    if (ok)
        memcpy(x_adv_out, w.cur, (gsize) (n * numel) * sizeof(float));
    lmn_attack_work_clear(&w);
    return ok;
}

gboolean lmn_attack_dataset(LmnModel *model, const LmnDataset *ds, const LmnAttackOptions *o,
                            gint64 batch, float *x_adv_out, double *clean_accuracy_out,
                            double *adv_accuracy_out, GError **error)
{
    g_return_val_if_fail(model && ds && o && batch >= 1, FALSE);
    if (!lmn_attack_options_check(o, error))
        return FALSE;
    if (!lmn_dataset_has_class_labels(ds)) {
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                    "%s: an attack needs class labels; this split's y holds float targets",
                    lmn_dataset_get_spec(ds));
        return FALSE;
    }
    gint64 n_classes = lmn_model_get_n_classes(model);
    if (n_classes <= 0) {
        g_set_error_literal(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                            "an attack needs a model whose loss takes class labels (e.g. "
                            "softmax_cross_entropy); this one has none");
        return FALSE;
    }
    if (!lmn_dataset_check_model(ds, lmn_model_get_input_shape(model), n_classes, error))
        return FALSE;
    const gint64 n = lmn_dataset_get_length(ds);
    const gint64 b = MAX(MIN(batch, n), (gint64) 1);
    if (!lmn_model_set_input_grad(model, TRUE, error) || !lmn_model_prepare(model, b, error))
        return FALSE;
    const gint64 numel = lmn_shape_numel(lmn_model_get_input_shape(model));
    g_autofree float *x = g_new(float, b *numel);
    g_autofree gint32 *y = g_new(gint32, b);
    g_autofree guint32 *idx = g_new(guint32, b);
    gint64 clean = 0, adv = 0;
    for (gint64 start = 0; start < n; start += b) {
        gint64 m = MIN(b, n - start);
        for (gint64 i = 0; i < m; i++)
            idx[i] = (guint32) (start + i);
        if (!lmn_dataset_read(ds, idx, (gsize) m, x, y, error))
            return FALSE;
        gint64 c = 0, a = 0;
        float *out = x_adv_out ? x_adv_out + start * numel : x;
        if (!lmn_attack_batch(model, o, x, y, m, start, out, &c, &a, error)) {
            g_prefix_error(error, "%s: ", lmn_dataset_get_spec(ds));
            return FALSE;
        }
        clean += c;
        adv += a;
    }
    if (clean_accuracy_out)
        *clean_accuracy_out = n ? (double) clean / (double) n : NAN;
    if (adv_accuracy_out)
        *adv_accuracy_out = n ? (double) adv / (double) n : NAN;
    return TRUE;
}
