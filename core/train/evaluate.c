/* Lamina — evaluation of a model on a dataset split (lmn_evaluate) and the scalar reads the
 * trainer shares. */
#include "trainer-private.h"

#include <math.h>
#include <string.h>

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
/* Each loss's batch means, weighted by the batch sizes and summed in double, as the total is. */
static gboolean read_per_loss(LmnTensor *each, guint n_losses, gint64 n_batches, gint64 batch,
                              gint64 n, double *out, GError **error)
{
    gsize count = (gsize) (n_losses * n_batches);
    g_autofree float *v = g_new0(float, MAX(count, 1));
    if (count > 0 && !lmn_tensor_read(each, v, count * sizeof(float), error))
        return FALSE;
    for (guint k = 0; k < n_losses; k++) {
        double sum = 0;
        for (gint64 bi = 0; bi < n_batches; bi++)
            sum += (double) v[k * n_batches + bi] * (double) MIN(batch, n - bi * batch);
        out[k] = n ? sum / (double) n : NAN;
    }
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
/* Fills the model's targets other than y for the batch @idx, from @ds's target of the same name
 * (@host: scratch of a batch of the largest target). */
static gboolean load_extra_targets(LmnModel *model, const LmnDataset *ds, const guint32 *idx,
                                   gint64 n, void *host, void **dst, GError **error)
{
    for (guint t = 1; t < lmn_model_get_n_targets(model); t++) {
        gint k = lmn_dataset_find_target(ds, lmn_model_get_target_name(model, t));
        LmnTensor *tt = lmn_model_get_target(model, t);
        if (k < 0) {
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_MISSING,
                        "%s: the model's losses read the target '%s', which this split was not "
                        "opened with",
                        lmn_dataset_get_spec(ds), lmn_model_get_target_name(model, t));
            return FALSE;
        }
        memset(dst, 0, lmn_dataset_get_n_targets(ds) * sizeof *dst);
        dst[k] = host;
        if (!lmn_dataset_read_targets(ds, idx, (gsize) n, NULL, dst, error) ||
            !lmn_tensor_write(tt, host, lmn_tensor_nbytes(tt), error))
            return FALSE;
    }
    return TRUE;
}

/* The loss and target the accuracy is of: with one loss, the prediction and y whenever y holds
 * class labels (as always); with several, the first loss whose target holds class labels.
 * Returns: the loss's index, or -1 for no accuracy. */
gint lmn_train_accuracy_loss(const LmnModel *model)
{
    const LmnTensorInfo *ti = lmn_model_get_target_info(model);
    if (lmn_model_get_n_losses(model) == 1)
        return ti && ti->dtype == LMN_DTYPE_I32 ? 0 : -1;
    for (guint i = 0; i < lmn_model_get_n_losses(model); i++) {
        gint t = lmn_model_get_loss_target(model, i);
        if (t >= 0 && lmn_model_get_target_info_at(model, (guint) t)->dtype == LMN_DTYPE_I32)
            return (gint) i;
    }
    return -1;
}

void lmn_train_count_correct(LmnModel *model, gint loss, LmnTensor *correct)
{
    if (loss < 0)
        return;
    gint t = lmn_model_get_loss_target(model, (guint) loss);
    lmn_op_count_correct(lmn_model_get_loss_prediction(model, (guint) loss),
                         lmn_model_get_target(model, t < 0 ? 0 : (guint) t), correct);
}

gboolean lmn_evaluate(LmnModel *model, const LmnDataset *ds, gint64 batch, double *loss_out,
                      double *accuracy_out, GError **error)
{
    return lmn_evaluate_full(model, ds, batch, loss_out, accuracy_out, NULL, error);
}

gboolean lmn_evaluate_full(LmnModel *model, const LmnDataset *ds, gint64 batch, double *loss_out,
                           double *accuracy_out, double *losses_out, GError **error)
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
    /* Each loss's own mean, likewise: [n_losses, n_batches] slots. */
    guint n_losses = losses_out ? lmn_model_get_n_losses(model) : 0;
    LmnShape each_shape = lmn_shape_make(1, MAX(n_batches * n_losses, (gint64) 1));
    g_autoptr(LmnTensor) each =
        n_losses ? lmn_tensor_new(b, LMN_DTYPE_F32, &each_shape, error) : NULL;
    if (n_losses && !each)
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
    gint acc_loss = lmn_train_accuracy_loss(model);
    gboolean labels = acc_loss >= 0;
    gint64 t_numel = 1;
    for (guint t = 1; t < lmn_model_get_n_targets(model); t++) {
        const LmnTensorInfo *info = lmn_model_get_target_info_at(model, t);
        t_numel = MAX(t_numel, info->dtype == LMN_DTYPE_I32 ? 1 : lmn_shape_numel(&info->shape));
    }
    g_autofree void *t_host = g_malloc(batch * t_numel * 4);
    g_autofree void **t_dst = g_new0(void *, lmn_dataset_get_n_targets(ds));
    for (gint64 start = 0, bi = 0; start < n; start += batch, bi++) {
        gint64 m = MIN(batch, n - start);
        for (gint64 i = 0; i < m; i++)
            idx[i] = (guint32) (start + i);
        if (!load_batch(model, ds, idx, m, x_host, y_host, error) ||
            !load_extra_targets(model, ds, idx, m, t_host, t_dst, error))
            return FALSE;
        lmn_model_forward(model, FALSE, 0, 0);
        g_autoptr(LmnTensor) slot = lmn_tensor_new_view(losses, bi, &one);
        lmn_op_copy(slot, lmn_model_get_loss(model));
        for (guint k = 0; k < n_losses; k++) {
            g_autoptr(LmnTensor) s = lmn_tensor_new_view(each, k * n_batches + bi, &one);
            lmn_op_copy(s, lmn_model_get_loss_value(model, k));
        }
        lmn_train_count_correct(model, acc_loss, correct);
    }
    if (n_losses > 0 && !read_per_loss(each, n_losses, n_batches, batch, n, losses_out, error))
        return FALSE;
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
