/* Lamina — evaluation of a model on a dataset split (lmn_evaluate) and the scalar reads the
 * trainer shares. */
#include "trainer-private.h"

#include <lamina/augment.h>
#include <lamina/metrics.h>

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
/* Each loss's batch means, weighted by the batch sizes and summed in double, as the total is
 * (sums, not means). */
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
        out[k] = sum;
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

/* The loss and target the accuracy is of: the first loss whose own target holds class labels
 * (with one loss reading y, the prediction and y whenever y holds them, as always; a loss on
 * another dataset is judged by that one, so a regression on `target = z` has no accuracy even
 * when y holds labels).  Returns: the loss's index, or -1 for no accuracy. */
gint lmn_train_accuracy_loss(const LmnModel *model)
{
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

/* Host staging of one evaluation batch. */
typedef struct {
    float *x;
    void *y, *t;
    void **t_dst;
    guint32 *idx;
} EvalHost;

static void eval_host_init(EvalHost *h, LmnModel *model, const LmnDataset *ds, gint64 batch)
{
    gint64 x_numel = lmn_shape_numel(lmn_model_get_input_shape(model));
    const LmnTensorInfo *ti = lmn_model_get_target_info(model);
    gint64 y_numel = ti->dtype == LMN_DTYPE_I32 ? 1 : lmn_shape_numel(&ti->shape);
    gint64 t_numel = 1;
    for (guint t = 1; t < lmn_model_get_n_targets(model); t++) {
        const LmnTensorInfo *info = lmn_model_get_target_info_at(model, t);
        t_numel = MAX(t_numel, info->dtype == LMN_DTYPE_I32 ? 1 : lmn_shape_numel(&info->shape));
    }
    h->x = g_new(float, batch *x_numel);
    h->y = g_malloc(batch * y_numel * 4);
    h->idx = g_new(guint32, batch);
    h->t = g_malloc(batch * t_numel * 4);
    h->t_dst = g_new0(void *, lmn_dataset_get_n_targets(ds));
}

static void eval_host_clear(EvalHost *h)
{
    g_free(h->x);
    g_free(h->y);
    g_free(h->idx);
    g_free(h->t);
    g_free(h->t_dst);
}

/* Runs the batches of samples [@first, @first + @n) of @ds, copying each batch's losses into
 * @losses' and @each's slots on the device and counting correct answers into @correct. */
static gboolean run_eval_batches(LmnModel *model, const LmnDataset *ds, gint64 batch, gint64 first,
                                 gint64 n, LmnTensor *losses, LmnTensor *each, LmnTensor *correct,
                                 GError **error)
{
    LmnShape one = lmn_shape_make(0);
    const gint64 n_batches = (n + batch - 1) / batch;
    guint n_losses = each ? lmn_model_get_n_losses(model) : 0;
    gint acc_loss = lmn_train_accuracy_loss(model);
    /* The last, shorter batch's kernels now, not in its forward (lmn_model_plan_batch). */
    if (n % batch != 0 && !lmn_model_plan_batch(model, n % batch, error))
        return FALSE;
    EvalHost h;
    eval_host_init(&h, model, ds, batch);
    gboolean ok = TRUE;
    for (gint64 start = 0, bi = 0; ok && start < n; start += batch, bi++) {
        gint64 m = MIN(batch, n - start);
        for (gint64 i = 0; i < m; i++)
            h.idx[i] = (guint32) (first + start + i);
        ok = load_batch(model, ds, h.idx, m, h.x, h.y, error) &&
             load_extra_targets(model, ds, h.idx, m, h.t, h.t_dst, error);
        if (!ok)
            break;
        lmn_model_forward(model, FALSE, 0, 0);
        g_autoptr(LmnTensor) slot = lmn_tensor_new_view(losses, bi, &one);
        lmn_op_copy(slot, lmn_model_get_loss(model));
        for (guint k = 0; k < n_losses; k++) {
            g_autoptr(LmnTensor) s = lmn_tensor_new_view(each, k * n_batches + bi, &one);
            lmn_op_copy(s, lmn_model_get_loss_value(model, k));
        }
        lmn_train_count_correct(model, acc_loss, correct);
    }
    eval_host_clear(&h);
    return ok;
}

gboolean lmn_evaluate_sums(LmnModel *model, const LmnDataset *ds, gint64 batch, gint64 first,
                           gint64 n, double *loss_sum, double *correct_out, double *losses_sum,
                           GError **error)
{
    if (!lmn_model_prepare(model, batch, error))
        return FALSE;
    LmnBackend *b = lmn_model_get_backend(model);
    LmnShape one = lmn_shape_make(0);
    const gint64 n_batches = (n + batch - 1) / batch;
    /* Each batch's mean loss is copied into its own slot on the device and all are read at the
     * end, so evaluation costs one host wait, not one per batch (on a GPU that wait is what
     * dominates).  The slots are summed in order in double on the host, as before. */
    LmnShape slots = lmn_shape_make(1, MAX(n_batches, (gint64) 1));
    g_autoptr(LmnTensor) losses = lmn_tensor_new(b, LMN_DTYPE_F32, &slots, error);
    if (!losses)
        return FALSE;
    /* Each loss's own mean, likewise: [n_losses, n_batches] slots. */
    guint n_losses = losses_sum ? lmn_model_get_n_losses(model) : 0;
    LmnShape each_shape = lmn_shape_make(1, MAX(n_batches * n_losses, (gint64) 1));
    g_autoptr(LmnTensor) each =
        n_losses ? lmn_tensor_new(b, LMN_DTYPE_F32, &each_shape, error) : NULL;
    if (n_losses && !each)
        return FALSE;
    g_autoptr(LmnTensor) correct = lmn_tensor_new(b, LMN_DTYPE_F32, &one, error);
    if (!correct)
        return FALSE;
    lmn_op_fill(correct, 0);
    if (!run_eval_batches(model, ds, batch, first, n, losses, each, correct, error))
        return FALSE;
    if (n_losses > 0 && !read_per_loss(each, n_losses, n_batches, batch, n, losses_sum, error))
        return FALSE;
    g_autofree float *per_batch = g_new0(float, MAX(n_batches, (gint64) 1));
    if (n_batches > 0 &&
        !lmn_tensor_read(losses, per_batch, (gsize) n_batches * sizeof(float), error))
        return FALSE;
    double sum = 0;
    for (gint64 bi = 0; bi < n_batches; bi++)
        sum += (double) per_batch[bi] * (double) MIN(batch, n - bi * batch);
    *loss_sum = sum;
    return lmn_train_read_scalar(correct, correct_out, error);
}

gboolean lmn_evaluate_full(LmnModel *model, const LmnDataset *ds, gint64 batch, double *loss_out,
                           double *accuracy_out, double *losses_out, GError **error)
{
    return lmn_evaluate_full_comm(model, ds, batch, NULL, loss_out, accuracy_out, losses_out,
                                  error);
}

void lmn_evaluate_share(gint64 n, const LmnComm *comm, gint64 *first, gint64 *count)
{
    gint64 r = comm ? lmn_comm_get_rank(comm) : 0, size = comm ? lmn_comm_get_size(comm) : 1;
    *first = r * n / size;
    *count = (r + 1) * n / size - *first;
}

gboolean lmn_evaluate_full_comm(LmnModel *model, const LmnDataset *ds, gint64 batch, LmnComm *comm,
                                double *loss_out, double *accuracy_out, double *losses_out,
                                GError **error)
{
    g_return_val_if_fail(model && ds && batch > 0, FALSE);
    gint64 n = lmn_dataset_get_length(ds), first, count;
    lmn_evaluate_share(n, comm, &first, &count);
    guint n_losses = losses_out ? lmn_model_get_n_losses(model) : 0;
    /* [loss, correct, each loss...]: one reduction of every sum */
    g_autofree double *sums = g_new0(double, 2 + n_losses);
    if (!lmn_evaluate_sums(model, ds, batch, first, count, &sums[0], &sums[1],
                           n_losses ? sums + 2 : NULL, error) ||
        (comm && !lmn_comm_allreduce_doubles(comm, sums, 2 + n_losses, error)))
        return FALSE;
    for (guint k = 0; k < n_losses; k++)
        losses_out[k] = n ? sums[2 + k] / (double) n : NAN;
    *loss_out = n ? sums[0] / (double) n : NAN;
    *accuracy_out = lmn_train_accuracy_loss(model) >= 0 && n ? sums[1] / (double) n : NAN;
    return TRUE;
}

gboolean lmn_evaluate_check_tta(const LmnShape *input_shape, LmnTta tta, gint64 pad, GError **error)
{
    if (tta == LMN_TTA_NONE)
        return TRUE;
    if (input_shape->ndim != 3) {
        g_autofree char *s = lmn_shape_to_string(input_shape);
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                    "test-time augmentation needs image inputs [C, H, W], not %s", s);
        return FALSE;
    }
    gint64 side = MIN(input_shape->dims[1], input_shape->dims[2]);
    if (tta == LMN_TTA_CROPS && (pad < 0 || pad >= side)) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                    "crop padding %" G_GINT64_FORMAT ": expected 0 to %" G_GINT64_FORMAT
                    " (below the image's height and width)",
                    pad, side - 1);
        return FALSE;
    }
    return TRUE;
}

gint64 lmn_evaluate_get_n_classes(const LmnModel *model)
{
    gint loss = lmn_train_accuracy_loss(model);
    return loss < 0 ? -1 : lmn_model_get_loss_n_classes(model, (guint) loss);
}

static guint tta_views(LmnTta tta)
{
    return tta == LMN_TTA_CROPS ? 10 : tta == LMN_TTA_HFLIP ? 2 : 1;
}

/* View @view of @tta of @n samples of @shape from @src into @dst (see LmnTta). */
static void make_view(const float *src, float *dst, gint64 n, const LmnShape *shape, LmnTta tta,
                      guint view, gint64 pad)
{
    gint64 numel = lmn_shape_numel(shape);
    if (tta == LMN_TTA_NONE || view == 0) {
        memcpy(dst, src, (gsize) (n * numel) * sizeof(float));
        return;
    }
    gint64 c = shape->dims[0], h = shape->dims[1], w = shape->dims[2];
    static const gint64 shifts[5][2] = {{0, 0}, {1, 1}, {1, -1}, {-1, 1}, {-1, -1}};
    /* hflip: view 1 mirrors; crops: views 0-4 are the crops, 5-9 their mirrors. */
    guint crop = tta == LMN_TTA_CROPS ? view % 5 : 0;
    gboolean mirror = tta == LMN_TTA_HFLIP || view >= 5;
    for (gint64 i = 0; i < n; i++) {
        float *out = dst + i * numel;
        const float *in = src + i * numel;
        if (crop)
            lmn_augment_shift(in, out, c, h, w, shifts[crop][0] * pad, shifts[crop][1] * pad);
        else
            memcpy(out, in, (gsize) numel * sizeof(float));
        if (mirror)
            lmn_augment_hflip(out, c, h, w);
    }
}

/* The host buffers of lmn_evaluate_probabilities(), one batch each. */
typedef struct {
    float *x, *view, *logits, *probs;
    double *sum;
    void *y, *t;
    void **t_dst;
    guint32 *idx;
    gint32 *labels;
} ProbBuffers;

static void prob_buffers_clear(ProbBuffers *p)
{
    g_free(p->x);
    g_free(p->view);
    g_free(p->logits);
    g_free(p->probs);
    g_free(p->sum);
    g_free(p->y);
    g_free(p->t);
    g_free(p->t_dst);
    g_free(p->idx);
    g_free(p->labels);
}

/* g_try_malloc0 of @a * @b * @size bytes, NULL on overflow or exhaustion. */
static void *alloc3(gint64 a, gint64 b, gsize size)
{
    gsize n = 0;
    if (a < 0 || b < 0 || !g_size_checked_mul(&n, (gsize) a, (gsize) b) ||
        !g_size_checked_mul(&n, n, size))
        return NULL;
    return g_try_malloc0(MAX(n, 1));
}

static gboolean prob_buffers_init(ProbBuffers *p, LmnModel *model, const LmnDataset *ds,
                                  gint64 batch, gint64 n_classes, GError **error)
{
    gint64 x_numel = lmn_shape_numel(lmn_model_get_input_shape(model));
    gint64 t_numel = 1;
    for (guint t = 0; t < lmn_model_get_n_targets(model); t++) {
        const LmnTensorInfo *info = lmn_model_get_target_info_at(model, t);
        t_numel = MAX(t_numel, info->dtype == LMN_DTYPE_I32 ? 1 : lmn_shape_numel(&info->shape));
    }
    p->x = alloc3(batch, x_numel, sizeof(float));
    p->view = alloc3(batch, x_numel, sizeof(float));
    p->logits = alloc3(batch, n_classes, sizeof(float));
    p->probs = alloc3(batch, n_classes, sizeof(float));
    p->sum = alloc3(batch, n_classes, sizeof(double));
    p->y = alloc3(batch, t_numel, 4);
    p->t = alloc3(batch, t_numel, 4);
    p->t_dst = alloc3(MAX(lmn_dataset_get_n_targets(ds), 1), 1, sizeof(void *));
    p->idx = alloc3(batch, 1, sizeof(guint32));
    p->labels = alloc3(batch, 1, sizeof(gint32));
    if (p->x && p->view && p->logits && p->probs && p->sum && p->y && p->t && p->t_dst && p->idx &&
        p->labels)
        return TRUE;
    g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                "a batch of %" G_GINT64_FORMAT " samples does not fit in memory", batch);
    return FALSE;
}

/* Loads batch [@start, @start + @m) into x (on the host) and the model's targets, and reads
 * back the labels of loss @loss. */
static gboolean prob_load_batch(LmnModel *model, const LmnDataset *ds, gint loss, gint64 start,
                                gint64 m, ProbBuffers *p, GError **error)
{
    for (gint64 i = 0; i < m; i++)
        p->idx[i] = (guint32) (start + i);
    LmnTensor *x, *y;
    lmn_model_set_batch(model, m, &x, &y);
    lmn_dataset_gather(ds, p->idx, (gsize) m, p->x, p->y);
    if (!lmn_tensor_write(y, p->y, lmn_tensor_nbytes(y), error) ||
        !load_extra_targets(model, ds, p->idx, m, p->t, p->t_dst, error))
        return FALSE;
    gint t = lmn_model_get_loss_target(model, (guint) loss);
    LmnTensor *labels = lmn_model_get_target(model, t < 0 ? 0 : (guint) t);
    if (lmn_tensor_numel(labels) != m) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                    "%s: class probabilities need one label per sample", lmn_dataset_get_spec(ds));
        return FALSE;
    }
    return lmn_tensor_read(labels, p->labels, (gsize) m * sizeof(gint32), error);
}

/* Runs every view of the loaded batch and leaves the mean probabilities in p->probs. */
static gboolean prob_run_views(LmnModel *model, const LmnDataset *ds, gint loss, gint64 m,
                               gint64 n_classes, LmnTta tta, gint64 pad, ProbBuffers *p,
                               GError **error)
{
    const LmnShape *shape = lmn_model_get_input_shape(model);
    gsize cells = (gsize) (m * n_classes);
    memset(p->sum, 0, cells * sizeof(double));
    for (guint v = 0; v < tta_views(tta); v++) {
        make_view(p->x, p->view, m, shape, tta, v, pad);
        LmnTensor *x, *y;
        lmn_model_set_batch(model, m, &x, &y);
        if (!lmn_model_check_input(model, p->view, m, p->idx, error)) {
            g_prefix_error(error, "%s: ", lmn_dataset_get_spec(ds));
            return FALSE;
        }
        if (!lmn_tensor_write(x, p->view, lmn_tensor_nbytes(x), error))
            return FALSE;
        lmn_model_forward(model, FALSE, 0, 0);
        LmnTensor *pred = lmn_model_get_loss_prediction(model, (guint) loss);
        if ((gsize) lmn_tensor_numel(pred) != cells) {
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                        "class probabilities need one row of logits per sample");
            return FALSE;
        }
        if (!lmn_tensor_read(pred, p->logits, cells * sizeof(float), error))
            return FALSE;
        lmn_class_metrics_softmax(p->logits, m, n_classes, p->logits);
        lmn_class_metrics_accumulate(p->sum, p->logits, cells);
    }
    lmn_class_metrics_mean(p->sum, cells, tta_views(tta), p->probs);
    return TRUE;
}

gboolean lmn_evaluate_probabilities(LmnModel *model, const LmnDataset *ds, gint64 batch, LmnTta tta,
                                    gint64 pad, LmnProbabilitiesFunc func, gpointer user_data,
                                    GError **error)
{
    return lmn_evaluate_probabilities_range(model, ds, batch, tta, pad, 0,
                                            lmn_dataset_get_length(ds), func, user_data, error);
}

gboolean lmn_evaluate_probabilities_range(LmnModel *model, const LmnDataset *ds, gint64 batch,
                                          LmnTta tta, gint64 pad, gint64 first, gint64 count,
                                          LmnProbabilitiesFunc func, gpointer user_data,
                                          GError **error)
{
    g_return_val_if_fail(model && ds && batch > 0 && func, FALSE);
    g_return_val_if_fail(first >= 0 && count >= 0 && first + count <= lmn_dataset_get_length(ds),
                         FALSE);
    gint loss = lmn_train_accuracy_loss(model);
    gint64 n_classes = lmn_evaluate_get_n_classes(model);
    if (loss < 0 || n_classes < 1) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                    "class probabilities need a loss whose target holds class labels");
        return FALSE;
    }
    const LmnShape *input = lmn_model_get_input_shape(model);
    if (lmn_shape_numel(lmn_dataset_get_sample_shape(ds)) != lmn_shape_numel(input)) {
        g_autofree char *a = lmn_shape_to_string(lmn_dataset_get_sample_shape(ds));
        g_autofree char *b = lmn_shape_to_string(input);
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                    "%s: samples %s do not fit the model's input %s", lmn_dataset_get_spec(ds), a,
                    b);
        return FALSE;
    }
    if (!lmn_evaluate_check_tta(input, tta, pad, error) || !lmn_model_prepare(model, batch, error))
        return FALSE;
    ProbBuffers p = {0};
    gboolean ok = prob_buffers_init(&p, model, ds, batch, n_classes, error);
    gint64 n = first + count;
    for (gint64 start = first; ok && start < n; start += batch) {
        gint64 m = MIN(batch, n - start);
        ok = prob_load_batch(model, ds, loss, start, m, &p, error) &&
             prob_run_views(model, ds, loss, m, n_classes, tta, pad, &p, error) &&
             func(start, m, p.probs, p.labels, user_data, error);
    }
    prob_buffers_clear(&p);
    return ok;
}

gboolean lmn_train_check_top_k(LmnTrainer *t, GError **error)
{
    gint64 k = t->tc->top_k;
    t->val_top_k = NAN;
    if (k == 0)
        return TRUE;
    gint64 n_classes = lmn_evaluate_get_n_classes(t->model);
    if (n_classes >= 1 && k <= n_classes)
        return TRUE;
    g_autofree char *where = lmn_config_dup_where(t->cfg, "train", "top_k");
    if (n_classes < 1)
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s top_k: the model has no loss on class labels, so there is no top-K "
                    "accuracy; remove top_k",
                    where);
    else
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s top_k: %" G_GINT64_FORMAT " is more than the model's %" G_GINT64_FORMAT
                    " classes; use a top_k of 1 to %" G_GINT64_FORMAT,
                    where, k, n_classes, n_classes);
    return FALSE;
}

static gboolean add_top_k(gint64 start, gint64 n, const float *probs, const gint32 *labels,
                          gpointer data, GError **error)
{
    (void) start;
    return lmn_class_metrics_add(data, probs, labels, n, error);
}

gboolean lmn_train_evaluate_top_k(LmnTrainer *t, const LmnDataset *ds, double *acc, GError **error)
{
    *acc = NAN;
    g_autoptr(LmnClassMetrics) m =
        lmn_class_metrics_new(lmn_evaluate_get_n_classes(t->model), t->tc->top_k, error);
    if (!m || !lmn_evaluate_probabilities(t->model, ds, t->tc->batch_size, LMN_TTA_NONE, 0,
                                          add_top_k, m, error))
        return FALSE;
    *acc = lmn_class_metrics_get_top_k_accuracy(m);
    return TRUE;
}

gboolean lmn_train_load_eval_batch(LmnModel *model, const LmnDataset *ds, const guint32 *idx,
                                   gint64 n, float *x_host, void *y_host, void *t_host,
                                   void **t_dst, GError **error)
{
    return load_batch(model, ds, idx, n, x_host, y_host, error) &&
           load_extra_targets(model, ds, idx, n, t_host, t_dst, error);
}
