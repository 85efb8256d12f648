/* Lamina — adversarial examples: FGSM and PGD against a model with input gradients.
 *
 * Both attacks perturb inputs to increase the model's loss on their true labels, with the loss
 * and its input gradient computed in evaluation mode (dropout off, batch normalisation with its
 * running statistics), so they attack the function lmn_evaluate() scores:
 *
 *   FGSM (Goodfellow et al. 2015):  x' = clip(x + eps * sign(dL/dx))
 *   PGD (Madry et al. 2018):        x_0 = x, or clip(x + u) with u uniform in [-eps, eps] for a
 *                                   random start; then @steps times
 *                                   x_k+1 = clip(proj(x_k + alpha * sign(dL/dx_k)))
 *
 * where proj(v) = min(max(v, x - eps), x + eps) keeps each element within eps of the clean input
 * (the L-infinity ball), clip(v) = min(max(v, clip_min), clip_max), and sign(0) = 0.  L is the
 * model's mean loss over the batch; its sign is that of each sample's own loss gradient, so a
 * sample's result does not depend on the others in its batch.  Everything is in the units the
 * model sees: a dataset's scale, mean and std are applied before (lmn_dataset_read), so eps,
 * alpha and the clip bounds are in decoded units too (e.g. clip 0, 1 for images stored as uint8
 * with scale 1/255).  Arithmetic is float32, element by element, in the order written above.
 */
#pragma once

#include <lamina/dataset.h>
#include <lamina/model.h>

G_BEGIN_DECLS

/** LmnAttackMethod: the attack. */
typedef enum {
    LMN_ATTACK_FGSM = 0, /* one step of size eps */
    LMN_ATTACK_PGD = 1,  /* @steps projected steps of size alpha */
} LmnAttackMethod;

/**
 * LmnAttackOptions:
 * @method: FGSM or PGD
 * @eps: the L-infinity budget, finite and >= 0
 * @steps: PGD's step count, >= 1 (ignored by FGSM)
 * @alpha: PGD's step size, finite and > 0; NAN for the common default 2.5 * eps / steps (ignored
 *   by FGSM)
 * @clip_min, @clip_max: the valid input range, clip_min <= clip_max; -INFINITY / INFINITY for
 *   none
 * @random_start: start PGD from a uniform point of the eps-ball (ignored by FGSM)
 * @seed: the random start's seed: sample i of a dataset (index @first_index + row of a batch)
 *   draws its noise in element order from Philox stream LMN_STREAM(LMN_STREAM_ATTACK, i), one
 *   lmn_random_uniform() u per element, noise = eps * (2u - 1); so it does not depend on the
 *   batch size
 * Initialise with lmn_attack_options_init().
 */
typedef struct {
    LmnAttackMethod method;
    double eps;
    gint steps;
    double alpha;
    double clip_min;
    double clip_max;
    gboolean random_start;
    guint64 seed;
    gpointer reserved[4];
} LmnAttackOptions;

/**
 * lmn_attack_options_init:
 * Sets FGSM, eps 0, 10 steps, the default alpha (NAN), no clip, no random start, seed 0.
 */
void lmn_attack_options_init(LmnAttackOptions *options);

/**
 * lmn_attack_options_check:
 * Returns: FALSE with LMN_CONFIG_ERROR_INVALID naming the option (eps, steps, alpha, clip) and
 *   its value when it is out of range
 */
gboolean lmn_attack_options_check(const LmnAttackOptions *options, GError **error);

/**
 * lmn_attack_batch:
 * @model: a model with class labels (lmn_model_get_n_classes() > 0) and input gradients on
 *   (lmn_model_set_input_grad()), prepared for at least @n samples
 * @x: @n samples of the model's input, host memory
 * @labels: their @n class labels
 * @n: samples, >= 1
 * @first_index: the index of @x's first sample in its dataset (for the random start's streams)
 * @x_adv_out: @n samples: the adversarial inputs (may be @x itself)
 * @clean_correct_out, @adv_correct_out: (out) (optional): how many of the @n samples the model
 *   classifies correctly before and after the attack (first maximum of the logits, as
 *   lmn_evaluate())
 * Attacks one batch (see the top of this header).  Each step runs lmn_model_forward() in
 * evaluation mode and lmn_model_backward_input(); the model's parameter gradients are left
 * unspecified, its parameters and buffers are not changed.  The model's input and target tensors
 * are left holding the adversarial batch, its logits those of the last forward. Returns: FALSE with
 * the options' error (lmn_attack_options_check()), LMN_TRAIN_ERROR_FAILED when the model has no
 * class labels or input gradients are off, or a backend error
 */
gboolean lmn_attack_batch(LmnModel *model, const LmnAttackOptions *options, const float *x,
                          const gint32 *labels, gint64 n, gint64 first_index, float *x_adv_out,
                          gint64 *clean_correct_out, gint64 *adv_correct_out, GError **error);

/**
 * lmn_attack_dataset:
 * @model: a model with class labels
 * @ds: a split with class labels that fits @model (lmn_dataset_check_model())
 * @batch: samples per batch, >= 1 (the result does not depend on it)
 * @x_adv_out: (nullable): length of @ds * the sample size floats: every adversarial input, in
 *   dataset order
 * @clean_accuracy_out, @adv_accuracy_out: (out) (optional): the fractions of @ds classified
 *   correctly before and after the attack (NAN for an empty split)
 * Attacks every sample of @ds in order, batch by batch.  Turns the model's input gradients on
 * and prepares it for min(@batch, length) samples.
 * Returns: FALSE with the options' error, LMN_TRAIN_ERROR_FAILED naming the split when it has no
 *   class labels or the model has none, LMN_DATA_ERROR_SHAPE / _VALUE when it does not fit the
 *   model, a read error, or a backend error
 */
gboolean lmn_attack_dataset(LmnModel *model, const LmnDataset *ds, const LmnAttackOptions *options,
                            gint64 batch, float *x_adv_out, double *clean_accuracy_out,
                            double *adv_accuracy_out, GError **error);

G_END_DECLS
