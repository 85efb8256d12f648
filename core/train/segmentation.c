/* Lamina — segmentation metrics (trainer.h): the intersection over union of a binary mask
 * (binary_cross_entropy_with_logits on a 0/1 target), or of C classes per pixel
 * (softmax_cross_entropy on per-pixel labels, the argmax over the channels as prediction). */
#include "trainer-private.h"

#include <math.h>

gint lmn_evaluate_find_segmentation_loss(const LmnModel *model)
{
    g_return_val_if_fail(model != NULL, -1);
    for (guint k = 0; k < lmn_model_get_n_losses(model); k++) {
        const LmnLayer *l = lmn_model_get_loss_layer((LmnModel *) model, k);
        gint t = lmn_model_get_loss_target(model, k);
        if (t < 0 || lmn_model_get_target_info_at(model, (guint) t)->dtype != LMN_DTYPE_F32)
            continue;
        const char *type = lmn_layer_get_type_name(l);
        if (g_str_equal(type, "binary_cross_entropy_with_logits") ||
            g_str_equal(type, "softmax_cross_entropy"))
            return (gint) k;
    }
    return -1;
}

typedef struct {
    gint64 tp, fp, fn, tn;
    /* multi-class: per class, pixels predicted and labelled (intersection), predicted, labelled */
    gint64 classes, ignore_index;
    gint64 *inter, *pred, *label;
} Counts;

/* Adds the pixels of @n samples: logits [n, C, P] and labels [n, P], argmax over C (the first
 * maximum, as torch.argmax), pixels labelled ignore_index left out. */
static gboolean count_classes(const float *logit, const float *target, gint64 n, gint64 pixels,
                              gint64 first, const LmnDataset *ds, Counts *c, GError **error)
{
    const gint64 classes = c->classes;
    for (gint64 s = 0; s < n; s++) {
        for (gint64 q = 0; q < pixels; q++) {
            float y = target[s * pixels + q];
            if ((double) y == (double) c->ignore_index)
                continue;
            if (!(y >= 0.0f && (double) y < (double) classes && y == floorf(y))) {
                g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                            "%s: sample %" G_GINT64_FORMAT " has the per-pixel label %g; the "
                            "IoU needs labels 0..%" G_GINT64_FORMAT " or the ignore_index",
                            lmn_dataset_get_spec(ds), first + s, (double) y, classes - 1);
                return FALSE;
            }
            const float *z = logit + s * classes * pixels + q;
            gint64 best = 0;
            for (gint64 k = 1; k < classes; k++)
                if (z[k * pixels] > z[best * pixels])
                    best = k;
            gint64 label = (gint64) y;
            c->pred[best]++;
            c->label[label]++;
            c->inter[best] += best == label;
        }
    }
    return TRUE;
}

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

/* Multi-class: IoU_k = inter / (pred + label - inter); the mean over the classes that occur in
 * the prediction or the labels, the foreground figure over classes 1.. likewise, and class 0's
 * as the background. */
static void class_means(const Counts *c, LmnSegmentationIoU *iou)
{
    double sum = 0.0, fg = 0.0;
    gint64 n = 0, n_fg = 0, pixels = 0;
    for (gint64 k = 0; k < c->classes; k++) {
        pixels += c->label[k];
        double v = ratio(c->inter[k], c->pred[k] + c->label[k] - c->inter[k]);
        if (k == 0)
            iou->background = v;
        if (isnan(v))
            continue;
        sum += v, n++;
        if (k > 0)
            fg += v, n_fg++;
    }
    iou->mean = n > 0 ? sum / (double) n : NAN;
    iou->foreground = n_fg > 0 ? fg / (double) n_fg : NAN;
    iou->pixels = pixels;
    iou->classes = c->classes;
}

/* A softmax_cross_entropy loss: its classes and ignore_index into @c; returns the logits per
 * label (C, or 1 for a mask). */
static gint64 setup_classes(LmnModel *model, gint loss, Counts *c)
{
    LmnLayer *layer = lmn_model_get_loss_layer(model, (guint) loss);
    if (!g_str_equal(lmn_layer_get_type_name(layer), "softmax_cross_entropy"))
        return 1;
    /* Logits [C, d1..dk] against labels [d1..dk]: per_sample counts the labels. */
    c->classes = lmn_model_get_loss_prediction_info(model, (guint) loss)->shape.dims[0];
    c->ignore_index = lmn_params_get_int(lmn_layer_get_params(layer), "ignore_index");
    return c->classes;
}

gboolean lmn_evaluate_segmentation_iou(LmnModel *model, const LmnDataset *ds, gint64 batch,
                                       gint loss, LmnSegmentationIoU *iou_out, GError **error)
{
    g_return_val_if_fail(model && ds && batch > 0 && iou_out, FALSE);
    if (loss < 0 || loss != lmn_evaluate_find_segmentation_loss(model)) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                    "the IoU of a segmentation needs a binary_cross_entropy_with_logits loss on a "
                    "float mask or a softmax_cross_entropy loss on per-pixel labels");
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
    Counts c = {0};
    gint64 classes = setup_classes(model, loss, &c);
    gsize c_logits = 0;
    if (!g_size_checked_mul(&c_logits, c4, (gsize) classes)) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                    "a batch of %" G_GINT64_FORMAT " samples does not fit in memory", batch);
        return FALSE;
    }
    g_autofree float *logits = g_malloc(c_logits);
    g_autofree float *target = g_malloc(c4);
    g_autofree gint64 *class_counts = g_new0(gint64, 3 * classes);
    c.inter = class_counts, c.pred = class_counts + classes, c.label = class_counts + 2 * classes;
    gint64 n = lmn_dataset_get_length(ds);
    for (gint64 start = 0; start < n; start += batch) {
        gint64 m = MIN(batch, n - start);
        for (gint64 i = 0; i < m; i++)
            idx[i] = (guint32) (start + i);
        if (!lmn_train_load_eval_batch(model, ds, idx, m, x_host, y_host, t_host, t_dst, error))
            return FALSE;
        lmn_model_forward_inference(model);
        gsize bytes = (gsize) (m * per_sample) * sizeof(float);
        if (!lmn_tensor_read(lmn_model_get_loss_prediction(model, (guint) loss), logits,
                             bytes * (gsize) classes, error) ||
            !lmn_tensor_read(lmn_model_get_target(model, (guint) t), target, bytes, error))
            return FALSE;
        gboolean ok =
            c.classes > 0
                ? count_classes(logits, target, m, per_sample, start, ds, &c, error)
                : count_pixels(logits, target, m * per_sample, per_sample, start, ds, &c, error);
        if (!ok)
            return FALSE;
    }
    if (c.classes > 0) {
        class_means(&c, iou_out);
        return TRUE;
    }
    iou_out->foreground = ratio(c.tp, c.tp + c.fp + c.fn);
    iou_out->background = ratio(c.tn, c.tn + c.fp + c.fn);
    iou_out->pixels = c.tp + c.fp + c.fn + c.tn;
    iou_out->classes = 2;
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
