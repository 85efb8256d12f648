/* Lamina — predictions: the loss's activation and the predictions file (predict.h). */
#include <lamina/predict.h>

#include <math.h>

#include "hdf5/h5-util.h"

LmnPredictActivation lmn_predict_activation_for_loss(const char *type)
{
    g_return_val_if_fail(type != NULL, LMN_PREDICT_NONE);
    /* nll's input holds log-probabilities: their softmax is their exp. */
    if (g_str_equal(type, "softmax_cross_entropy") || g_str_equal(type, "nll"))
        return LMN_PREDICT_SOFTMAX;
    if (g_str_equal(type, "binary_cross_entropy_with_logits"))
        return LMN_PREDICT_SIGMOID;
    return LMN_PREDICT_NONE;
}

const char *lmn_predict_activation_name(LmnPredictActivation act)
{
    return act == LMN_PREDICT_SOFTMAX ? "softmax" : act == LMN_PREDICT_SIGMOID ? "sigmoid" : "none";
}

static void softmax_row(const float *in, gint64 k, float *out)
{
    double max = in[0];
    for (gint64 j = 1; j < k; j++)
        max = MAX(max, (double) in[j]);
    double sum = 0.0;
    for (gint64 j = 0; j < k; j++)
        sum += exp((double) in[j] - max);
    for (gint64 j = 0; j < k; j++)
        out[j] = (float) (exp((double) in[j] - max) / sum);
}

void lmn_predict_apply(LmnPredictActivation act, const float *logits, gint64 n, gint64 k,
                       float *out)
{
    g_return_if_fail(logits != NULL && out != NULL && n >= 0 && k > 0);
    for (gint64 i = 0; i < n; i++) {
        const float *row = logits + i * k;
        float *o = out + i * k;
        if (act == LMN_PREDICT_SOFTMAX) {
            softmax_row(row, k, o);
            continue;
        }
        for (gint64 j = 0; j < k; j++)
            o[j] =
                act == LMN_PREDICT_SIGMOID ? (float) (1.0 / (1.0 + exp(-(double) row[j]))) : row[j];
    }
}

/* The predicted classes (see predict.h), @n or @n * @k int32; NULL for raw outputs. */
static gint32 *predicted(const float *probs, gint64 n, gint64 k, LmnPredictActivation act,
                         LmnShape *shape)
{
    if (act == LMN_PREDICT_NONE)
        return NULL;
    gboolean per_output = act == LMN_PREDICT_SIGMOID && k > 1;
    *shape = per_output ? lmn_shape_make(2, n, k) : lmn_shape_make(1, n);
    gint32 *out = g_new(gint32, MAX(per_output ? n * k : n, 1));
    for (gint64 i = 0; i < n; i++) {
        const float *row = probs + i * k;
        if (per_output) {
            for (gint64 j = 0; j < k; j++)
                out[i * k + j] = row[j] >= 0.5f;
        } else if (act == LMN_PREDICT_SIGMOID) {
            out[i] = row[0] >= 0.5f;
        } else {
            gint64 best = 0;
            for (gint64 j = 1; j < k; j++)
                best = row[j] > row[best] ? j : best;
            out[i] = (gint32) best;
        }
    }
    return out;
}

static gboolean write_int_dataset(hid_t file, const char *name, const LmnShape *shape,
                                  const gint32 *data, const LmnH5Errors *errs, GError **error)
{
    hsize_t dims[LMN_MAX_DIMS];
    for (guint i = 0; i < shape->ndim; i++)
        dims[i] = (hsize_t) shape->dims[i];
    g_auto(LmnH5Id) space = H5Screate_simple((int) shape->ndim, dims, NULL);
    g_auto(LmnH5Id) ds =
        H5Dcreate2(file, name, H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        g_autofree char *why = lmn_h5_error_text();
        g_set_error(error, errs->domain, errs->code_write, "%s:%s: cannot write: %s",
                    errs->filename, name, why);
        return FALSE;
    }
    return TRUE;
}

gboolean lmn_predictions_write(const char *path, const char *const *inputs, gint64 n, gint64 k,
                               const float *probs, LmnPredictActivation act,
                               const char *const *classes, GError **error)
{
    g_return_val_if_fail(path != NULL && inputs != NULL && probs != NULL && n > 0 && k > 0, FALSE);
    LmnH5Errors errs = lmn_h5_errors_data(path);
    g_autoptr(LmnH5AtomicFile) af = lmn_h5_atomic_file_new(path, FALSE, &errs, error);
    if (af == NULL)
        return FALSE;
    hid_t file = lmn_h5_atomic_file_peek_id(af);
    LmnShape pshape = lmn_shape_make(2, n, k);
    LmnShape cshape;
    g_autofree gint32 *pred = predicted(probs, n, k, act, &cshape);
    g_auto(LmnH5Id) root = H5Gopen2(file, "/", H5P_DEFAULT);
    gboolean ok =
        root >= 0 &&
        lmn_h5_write_float_dataset(file, "/probabilities", &pshape, probs, &errs, error) &&
        (pred == NULL || write_int_dataset(file, "/predictions", &cshape, pred, &errs, error)) &&
        lmn_h5_write_strings_dataset(file, "/inputs", inputs, (gsize) n, &errs, error) &&
        lmn_h5_attr_write_string(root, "activation", lmn_predict_activation_name(act), &errs,
                                 error) &&
        (classes == NULL || classes[0] == NULL ||
         lmn_h5_attr_write_strings(root, "classes", classes, &errs, error));
    return ok && lmn_h5_atomic_file_commit(af, error);
}
