/* Lamina — predictions of a trained model (`lamina predict`).
 *
 * A prediction is the input of the model's first loss layer (lmn_model_get_prediction(), run by
 * lmn_model_forward_inference()) turned into what that loss models:
 *   - softmax_cross_entropy: class probabilities, softmax over the last dimension; the predicted
 *     class is the argmax (the first of equal maxima);
 *   - binary_cross_entropy_with_logits: independent probabilities, the logistic sigmoid; the
 *     prediction of each output is p >= 0.5 (1) or not (0);
 *   - any other loss (mse, a regression, a plugin's): the raw outputs; there is no predicted
 *     class.
 *
 * The file lmn_predictions_write() writes:
 *   /probabilities   float32 [N, K]  the values above (raw outputs for a regression)
 *   /predictions     int32 [N] (softmax; sigmoid with K = 1) or [N, K] 0/1 (sigmoid, K > 1);
 *                    absent for a regression
 *   /inputs          string [N]      what each row came from ("shoe.png", "x.npy[3]",
 *                                    "data.h5:/test[7]")
 *   attrs on /: activation ("softmax", "sigmoid" or "none"), classes (string array, when known)
 */
#pragma once

#include <lamina/model.h>

G_BEGIN_DECLS

/**
 * LmnPredictActivation:
 * @LMN_PREDICT_SOFTMAX: softmax_cross_entropy
 * @LMN_PREDICT_SIGMOID: binary_cross_entropy_with_logits
 * @LMN_PREDICT_NONE: any other loss: raw outputs
 */
typedef enum {
    LMN_PREDICT_SOFTMAX,
    LMN_PREDICT_SIGMOID,
    LMN_PREDICT_NONE,
} LmnPredictActivation;

/** lmn_predict_activation_for_loss: Returns: the activation of a loss layer of type @type. */
LmnPredictActivation lmn_predict_activation_for_loss(const char *type);
/** lmn_predict_activation_name: Returns: "softmax", "sigmoid" or "none". */
const char *lmn_predict_activation_name(LmnPredictActivation act);
/**
 * lmn_predict_apply:
 * @logits: @n rows of @k values
 * @out: @n * @k floats, may be @logits
 * Applies @act to each row, in double (softmax subtracts the row's maximum first).
 */
void lmn_predict_apply(LmnPredictActivation act, const float *logits, gint64 n, gint64 k,
                       float *out);
/**
 * lmn_predictions_write:
 * @inputs: @n names, one per row
 * @probs: @n * @k values from lmn_predict_apply()
 * @classes: (nullable) (array zero-terminated=1): class names to record
 * Writes the file above atomically (a temporary file in the same directory, renamed), so a
 * failure leaves an existing @path as it was.
 * Returns: FALSE with LMN_DATA_ERROR_WRITE naming the file
 */
gboolean lmn_predictions_write(const char *path, const char *const *inputs, gint64 n, gint64 k,
                               const float *probs, LmnPredictActivation act,
                               const char *const *classes, GError **error);

G_END_DECLS
