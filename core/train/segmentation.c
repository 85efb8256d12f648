/* Lamina — segmentation metrics: the intersection over union of a binary mask (trainer.h). */
#include "trainer-private.h"

#include <math.h>

gint lmn_evaluate_find_segmentation_loss(const LmnModel *model)
{
    g_return_val_if_fail(model != NULL, -1);
    for (guint k = 0; k < lmn_model_get_n_losses(model); k++) {
        const LmnLayer *l = lmn_model_get_loss_layer((LmnModel *) model, k);
        gint t = lmn_model_get_loss_target(model, k);
        if (t >= 0 && g_str_equal(lmn_layer_get_type_name(l), "binary_cross_entropy_with_logits") &&
            lmn_model_get_target_info_at(model, (guint) t)->dtype == LMN_DTYPE_F32)
            return (gint) k;
    }
    return -1;
}

typedef struct {
    gint64 tp, fp, fn, tn;
} Counts;

/* Adds @n pixels of logits and 0/1 targets of the batch starting at sample @first. */
static gboolean count_pixels(const float *logit, const float *target, gint64 n, gint64 per_sample,
                             gint64 first, const LmnDataset *ds, Counts *c, GError **error)
{
    for (gint64 i = 0; i < n; i++) {
        if (target[i] != 0.0f && target[i] != 1.0f) {
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                        "%s: sample %" G_GINT64_FORMAT " has the target value %g; the IoU of a "
                        "segmentation needs a mask of 0 and 1",
                        lmn_dataset_get_spec(ds), first + i / per_sample, target[i]);
            return FALSE;
        }
        gboolean p = logit[i] > 0.0f, g = target[i] == 1.0f;
        c->tp += p && g;
        c->fp += p && !g;
        c->fn += !p && g;
        c->tn += !p && !g;
    }
    return TRUE;
}

static double ratio(gint64 a, gint64 b)
{
    return b > 0 ? (double) a / (double) b : NAN;
}

gboolean lmn_evaluate_segmentation_iou(LmnModel *model, const LmnDataset *ds, gint64 batch,
                                       gint loss, LmnSegmentationIoU *iou_out, GError **error)
{
    g_return_val_if_fail(model && ds && batch > 0 && iou_out, FALSE);
    if (loss < 0 || loss != lmn_evaluate_find_segmentation_loss(model)) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                    "the IoU of a segmentation needs a binary_cross_entropy_with_logits loss on a "
                    "float mask");
        return FALSE;
    }
    if (!lmn_model_prepare(model, batch, error))
        return FALSE;
    gint t = lmn_model_get_loss_target(model, (guint) loss);
    gint64 per_sample = lmn_shape_numel(&lmn_model_get_target_info_at(model, (guint) t)->shape);
    gint64 x_numel = lmn_shape_numel(lmn_model_get_input_shape(model));
    gint64 t_numel = 1;
    for (guint k = 0; k < lmn_model_get_n_targets(model); k++) {
        const LmnTensorInfo *info = lmn_model_get_target_info_at(model, k);
        t_numel = MAX(t_numel, info->dtype == LMN_DTYPE_I32 ? 1 : lmn_shape_numel(&info->shape));
    }
    gsize a = 0, b = 0, c4 = 0;
    if (!g_size_checked_mul(&a, (gsize) batch, (gsize) MAX(x_numel, 1) * sizeof(float)) ||
        !g_size_checked_mul(&b, (gsize) batch, (gsize) t_numel * 4) ||
        !g_size_checked_mul(&c4, (gsize) batch, (gsize) per_sample * sizeof(float))) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                    "a batch of %" G_GINT64_FORMAT " samples does not fit in memory", batch);
        return FALSE;
    }
    g_autofree float *x_host = g_malloc(a);
    g_autofree void *y_host = g_malloc(b);
    g_autofree void *t_host = g_malloc(b);
    g_autofree void **t_dst = g_new0(void *, MAX(lmn_dataset_get_n_targets(ds), 1));
    g_autofree guint32 *idx = g_new(guint32, batch);
    g_autofree float *logits = g_malloc(c4);
    g_autofree float *target = g_malloc(c4);
    Counts c = {0};
    gint64 n = lmn_dataset_get_length(ds);
    for (gint64 start = 0; start < n; start += batch) {
        gint64 m = MIN(batch, n - start);
        for (gint64 i = 0; i < m; i++)
            idx[i] = (guint32) (start + i);
        if (!lmn_train_load_eval_batch(model, ds, idx, m, x_host, y_host, t_host, t_dst, error))
            return FALSE;
        lmn_model_forward_inference(model);
        gsize bytes = (gsize) (m * per_sample) * sizeof(float);
        if (!lmn_tensor_read(lmn_model_get_loss_prediction(model, (guint) loss), logits, bytes,
                             error) ||
            !lmn_tensor_read(lmn_model_get_target(model, (guint) t), target, bytes, error) ||
            !count_pixels(logits, target, m * per_sample, per_sample, start, ds, &c, error))
            return FALSE;
    }
    iou_out->foreground = ratio(c.tp, c.tp + c.fp + c.fn);
    iou_out->background = ratio(c.tn, c.tn + c.fp + c.fn);
    iou_out->pixels = c.tp + c.fp + c.fn + c.tn;
    gboolean fg = !isnan(iou_out->foreground), bg = !isnan(iou_out->background);
    iou_out->mean = fg && bg ? (iou_out->foreground + iou_out->background) / 2
                    : fg     ? iou_out->foreground
                             : iou_out->background;
    return TRUE;
}

void lmn_train_setup_segmentation(LmnTrainer *t)
{
    t->seg_loss = lmn_evaluate_find_segmentation_loss(t->model);
    t->val_iou = NAN;
}

gboolean lmn_train_evaluate_iou(LmnTrainer *t, const LmnDataset *ds, double *miou, GError **error)
{
    *miou = NAN;
    if (t->seg_loss < 0)
        return TRUE;
    LmnSegmentationIoU iou;
    if (!lmn_evaluate_segmentation_iou(t->model, ds, t->tc->batch_size, t->seg_loss, &iou, error))
        return FALSE;
    *miou = iou.mean;
    return TRUE;
}
