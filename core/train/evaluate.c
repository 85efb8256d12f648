/* Lamina — evaluation of a model on a dataset split (lmn_evaluate) and the scalar reads the
 * trainer shares. */
#include "trainer-private.h"

#include <math.h>

/* Copies samples into the model's input and target tensors, straight into backend memory when
 * it is host memory. */
static gboolean load_batch(LmnModel *model, const LmnDataset *ds, const guint32 *idx, gint64 n,
                           float *x_host, void *y_host, GError **error)
{
    LmnTensor *x, *y;
    lmn_model_set_batch(model, n, &x, &y);
    float *xd = lmn_backend_host_pointer(x);
    void *yd = lmn_backend_host_pointer(y);
    lmn_dataset_gather(ds, idx, (gsize) n, xd ? xd : x_host, yd ? yd : y_host);
    if (!lmn_model_check_input(model, xd ? xd : x_host, n, idx, error)) {
        g_prefix_error(error, "%s: ", lmn_dataset_get_spec(ds));
        return FALSE;
    }
    if (!xd && !lmn_tensor_write(x, x_host, lmn_tensor_nbytes(x), error))
        return FALSE;
    if (!yd && !lmn_tensor_write(y, y_host, lmn_tensor_nbytes(y), error))
        return FALSE;
    return TRUE;
}
gboolean lmn_train_read_scalar(LmnTensor *t, double *out, GError **error)
{
    float v = 0;
    if (!lmn_tensor_read(t, &v, sizeof v, error))
        return FALSE;
    *out = v;
    return TRUE;
}
gboolean lmn_evaluate(LmnModel *model, const LmnDataset *ds, gint64 batch, double *loss_out,
                      double *accuracy_out, GError **error)
{
    g_return_val_if_fail(model && ds && batch > 0, FALSE);
    if (!lmn_model_prepare(model, batch, error))
        return FALSE;
    LmnBackend *b = lmn_model_get_backend(model);
    LmnShape one = lmn_shape_make(0);
    gint64 n = lmn_dataset_get_length(ds);
    const gint64 n_batches = (n + batch - 1) / batch;
    /* Each batch's mean loss is copied into its own slot on the device and all are read at the
     * end, so evaluation costs one host wait, not one per batch (on a GPU that wait is what
     * dominates).  The slots are summed in order in double on the host, as before. */
    LmnShape slots = lmn_shape_make(1, MAX(n_batches, (gint64) 1));
    g_autoptr(LmnTensor) losses = lmn_tensor_new(b, LMN_DTYPE_F32, &slots, error);
    if (!losses)
        return FALSE;
    g_autoptr(LmnTensor) correct = lmn_tensor_new(b, LMN_DTYPE_F32, &one, error);
    if (!correct)
        return FALSE;
    lmn_op_fill(correct, 0);
    gint64 x_numel = lmn_shape_numel(lmn_model_get_input_shape(model));
    const LmnTensorInfo *ti = lmn_model_get_target_info(model);
    gint64 y_numel = ti->dtype == LMN_DTYPE_I32 ? 1 : lmn_shape_numel(&ti->shape);
    g_autofree float *x_host = g_new(float, batch *x_numel);
    g_autofree void *y_host = g_malloc(batch * y_numel * 4);
    g_autofree guint32 *idx = g_new(guint32, batch);
    gboolean labels = ti->dtype == LMN_DTYPE_I32;
    for (gint64 start = 0, bi = 0; start < n; start += batch, bi++) {
        gint64 m = MIN(batch, n - start);
        for (gint64 i = 0; i < m; i++)
            idx[i] = (guint32) (start + i);
        if (!load_batch(model, ds, idx, m, x_host, y_host, error))
            return FALSE;
        lmn_model_forward(model, FALSE, 0, 0);
        g_autoptr(LmnTensor) slot = lmn_tensor_new_view(losses, bi, &one);
        lmn_op_copy(slot, lmn_model_get_loss(model));
        if (labels) {
            LmnTensor *y;
            lmn_model_set_batch(model, m, NULL, &y);
            lmn_op_count_correct(lmn_model_get_prediction(model), y, correct);
        }
    }
    g_autofree float *per_batch = g_new0(float, MAX(n_batches, (gint64) 1));
    if (n_batches > 0 &&
        !lmn_tensor_read(losses, per_batch, (gsize) n_batches * sizeof(float), error))
        return FALSE;
    double loss_sum = 0;
    for (gint64 bi = 0; bi < n_batches; bi++)
        loss_sum += (double) per_batch[bi] * (double) MIN(batch, n - bi * batch);
    double c = 0;
    if (!lmn_train_read_scalar(correct, &c, error))
        return FALSE;
    *loss_out = n ? loss_sum / (double) n : NAN;
    *accuracy_out = labels && n ? c / (double) n : NAN;
    return TRUE;
}
