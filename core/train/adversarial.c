/* Lamina — adversarial training ([train] adversarial, Goodfellow et al. 2015): every step trains
 * on J~ = w * J(x) + (1 - w) * J(x'), where x' is the step's batch attacked with FGSM or PGD
 * (attack.h) from the weights of that step.
 *
 * A step first attacks the batch (forwards and backwards in evaluation mode, as `lamina attack`
 * does, so the attack neither draws dropout masks nor moves batch-norm running statistics),
 * then runs the clean batch forward and backward in training mode and keeps its gradient, then
 * the attacked batch, and mixes the two gradients.  Both
 * training forwards use the step's dropout masks; both update running statistics, in that
 * order, as two forward calls in PyTorch do.  PGD's random start draws from Philox key
 * seed ^ (0x9E3779B97F4A7C15 * (step + 1)), stream LMN_STREAM(LMN_STREAM_ATTACK, row of the
 * batch): a pure function of the seed and the step, so a resumed run attacks as the interrupted
 * one would have.  Everything is allocated once, by lmn_train_setup_adversarial(). */
#include "attack-private.h"
#include "trainer-private.h"

#include <math.h>
#include <string.h>

gboolean lmn_train_setup_adversarial(LmnTrainer *t, GError **error)
{
    const LmnTrainConfig *tc = t->tc;
    if (tc->adversarial == LMN_ADVERSARIAL_NONE)
        return TRUE;
    g_autofree char *where = lmn_config_dup_where(t->cfg, "train", "adversarial");
    if (lmn_model_get_n_classes(t->model) <= 0) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s adversarial: adversarial training attacks a classifier, but this model's "
                    "loss does not take class labels; use a loss such as softmax_cross_entropy "
                    "with integer labels in y, or remove adversarial",
                    where);
        return FALSE;
    }
    g_autoptr(GError) local = NULL;
    if (!lmn_model_set_input_grad(t->model, TRUE, &local)) {
        g_set_error(error, local->domain, local->code, "%s adversarial: %s", where, local->message);
        return FALSE;
    }
    LmnAttackOptions *o = &t->adv_options;
    lmn_attack_options_init(o);
    o->method = tc->adversarial == LMN_ADVERSARIAL_PGD ? LMN_ATTACK_PGD : LMN_ATTACK_FGSM;
    o->eps = tc->adversarial_eps;
    o->steps = (gint) tc->adversarial_steps;
    o->alpha = tc->adversarial_alpha;
    o->clip_min = tc->adversarial_clip_min;
    o->clip_max = tc->adversarial_clip_max;
    o->random_start = tc->adversarial_random_start;
    if (!lmn_attack_options_check(o, &local)) {
        g_set_error(error, local->domain, local->code, "%s: %s", where, local->message);
        return FALSE;
    }
    gint64 batch = tc->batch_size;
    gint64 numel = lmn_shape_numel(lmn_model_get_input_shape(t->model));
    t->adv_work = g_new0(LmnAttackWork, 1);
    if (!lmn_attack_work_init(t->adv_work, numel, batch, error))
        return FALSE;
    t->adv_labels = g_new(gint32, batch);
    LmnTensor *grads = lmn_model_get_grads(t->model);
    t->adv_grads = lmn_tensor_new(t->backend, LMN_DTYPE_F32, &grads->shape, error);
    return t->adv_grads != NULL;
}

void lmn_train_free_adversarial(LmnTrainer *t)
{
    if (t->adv_work) {
        lmn_attack_work_clear(t->adv_work);
        g_clear_pointer(&t->adv_work, g_free);
    }
    g_clear_pointer(&t->adv_labels, g_free);
    g_clear_pointer(&t->adv_grads, lmn_tensor_unref);
}

/* One training-mode forward and backward of the batch in the model's input tensor, its loss
 * added @weight * @m times to the epoch's sum. */
static gboolean train_pass(LmnTrainer *t, gint64 epoch, gint64 m, double weight, GError **error)
{
    guint64 step = (guint64) t->state.step;
    lmn_model_forward(t->model, TRUE, step, t->state.seed);
    if (!lmn_train_check_loss(t, epoch, error))
        return FALSE;
    lmn_model_backward_params(t->model, step, t->state.seed);
    lmn_op_axpby((float) (weight * (double) m), lmn_model_get_loss(t->model), 1.0f, t->loss_acc);
    return TRUE;
}

gboolean lmn_train_adversarial_step(LmnTrainer *t, gint64 epoch, gint64 m, const float *x,
                                    const gint32 *labels, GError **error)
{
    const double w = t->tc->adversarial_weight;
    LmnModel *model = t->model;
    /* The attack sees the model as the step found it, before either training forward moves a
     * batch-norm running statistic.  @x and @labels may live in the model's input and target
     * tensors, which the attack rewrites: it copies @x first, the labels are copied here. */
    memcpy(t->adv_labels, labels, (gsize) m * sizeof(gint32));
    LmnAttackOptions o = t->adv_options;
    o.seed =
        t->state.seed ^ (G_GUINT64_CONSTANT(0x9E3779B97F4A7C15) * ((guint64) t->state.step + 1));
    LmnAttackWork *work = t->adv_work;
    if (!lmn_attack_run(model, &o, x, t->adv_labels, m, 0, work, NULL, NULL, NULL, error))
        return FALSE;
    LmnTensor *xt, *y;
    lmn_model_set_batch(model, m, &xt, &y);
    if (!lmn_tensor_write(xt, work->x0, lmn_tensor_nbytes(xt), error) ||
        !train_pass(t, epoch, m, w, error))
        return FALSE;
    lmn_op_count_correct(lmn_model_get_prediction(model), y, t->correct_acc);
    LmnTensor *grads = lmn_model_get_grads(model);
    lmn_op_copy(t->adv_grads, grads);
    if (!lmn_tensor_write(xt, work->cur, lmn_tensor_nbytes(xt), error) ||
        !train_pass(t, epoch, m, 1.0 - w, error))
        return FALSE;
    /* grad = w * grad(clean) + (1 - w) * grad(attacked) */
    lmn_op_axpby((float) w, t->adv_grads, (float) (1.0 - w), grads);
    return TRUE;
}
