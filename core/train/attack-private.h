/* Lamina — the attacks' internals (attack.c), shared with adversarial training (adversarial.c):
 * the host buffers of an attack made once and reused, so a training step allocates nothing.
 * Private to core/train/. */
#pragma once

#include <lamina/attack.h>

/* Host buffers for attacks on up to @capacity samples: the clean batch, the current point and
 * the input gradient. */
typedef struct _LmnAttackWork {
    float *x0;
    float *cur; /* after lmn_attack_run(): the adversarial batch */
    float *grad;
    gint64 capacity;
} LmnAttackWork;

/* Allocates @w for @n_max samples of @numel elements; FALSE with LMN_TRAIN_ERROR_FAILED when
 * that size overflows or memory runs out. */
gboolean lmn_attack_work_init(LmnAttackWork *w, gint64 numel, gint64 n_max, GError **error);
/* Frees @w's buffers (it may be cleared twice). */
void lmn_attack_work_clear(LmnAttackWork *w);
/* FALSE with LMN_TRAIN_ERROR_FAILED when @model has no class labels or no input gradients. */
gboolean lmn_attack_check_model(LmnModel *model, GError **error);
/* lmn_attack_batch() on checked options and model, with @w (capacity >= @n) for its buffers:
 * the adversarial batch is left in @w->cur.  @correct, one f32 on the model's backend, is needed
 * only for the counts. */
gboolean lmn_attack_run(LmnModel *model, const LmnAttackOptions *o, const float *x,
                        const gint32 *labels, gint64 n, gint64 first_index, LmnAttackWork *w,
                        LmnTensor *correct, gint64 *clean_correct_out, gint64 *adv_correct_out,
                        GError **error);
