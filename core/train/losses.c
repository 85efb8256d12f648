/* Lamina — the training loop's side of several losses: the other targets' staging buffers, the
 * per-loss accumulators, and the per-loss figures in the epoch line and metrics.csv.  With one
 * loss none of it runs, so such runs and their output stay as they always were. */
#include "trainer-private.h"

#include <math.h>
#include <string.h>

/* The names of the config's targets other than y, NULL-terminated, for opening the splits. */
char **lmn_train_target_names(const LmnConfig *cfg)
{
    guint n = lmn_config_get_n_targets(cfg);
    char **names = g_new0(char *, n);
    for (guint t = 1; t < n; t++)
        names[t - 1] = g_strdup(lmn_config_get_target_name(cfg, t));
    return names;
}

gboolean lmn_train_setup_losses(LmnTrainer *t, GError **error)
{
    LmnModel *model = t->model;
    gint64 batch = t->tc->batch_size;
    t->n_targets = lmn_model_get_n_targets(model);
    t->t_dst = g_new0(void *, MAX(t->n_targets, 1));
    t->t_host = g_new0(void *, MAX(t->n_targets, 1));
    for (guint k = 1; k < t->n_targets; k++) {
        const LmnTensorInfo *info = lmn_model_get_target_info_at(model, k);
        gint64 numel = info->dtype == LMN_DTYPE_I32 ? 1 : lmn_shape_numel(&info->shape);
        t->t_host[k] = g_malloc(batch * numel * 4);
    }
    t->acc_loss = lmn_train_accuracy_loss(model);
    t->n_losses = lmn_model_get_n_losses(model);
    if (t->n_losses < 2)
        return TRUE;
    /* An adversarial step attacks the one loss of a classifier. */
    if (t->tc->adversarial != LMN_ADVERSARIAL_NONE) {
        g_autofree char *where = lmn_config_dup_where(t->cfg, "train", "adversarial");
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s adversarial: adversarial training needs a model with one loss, and this "
                    "one has %u; remove adversarial or all losses but one",
                    where, t->n_losses);
        return FALSE;
    }
    LmnShape shape = lmn_shape_make(1, (gint64) t->n_losses);
    t->loss_accs = lmn_tensor_new(t->backend, LMN_DTYPE_F32, &shape, error);
    if (!t->loss_accs)
        return FALSE;
    /* Views made once: a training step allocates nothing. */
    LmnShape one = lmn_shape_make(0);
    t->loss_acc_views = g_new0(LmnTensor *, t->n_losses);
    for (guint k = 0; k < t->n_losses; k++)
        t->loss_acc_views[k] = lmn_tensor_new_view(t->loss_accs, k, &one);
    t->train_losses = g_new0(double, t->n_losses);
    t->val_losses = g_new0(double, t->n_losses);
    t->read_losses = g_new0(float, t->n_losses);
    return TRUE;
}

void lmn_train_clear_losses(LmnTrainer *t)
{
    for (guint k = 1; t->t_host && k < t->n_targets; k++)
        g_free(t->t_host[k]);
    g_clear_pointer(&t->t_host, g_free);
    g_clear_pointer(&t->t_dst, g_free);
    for (guint k = 0; t->loss_acc_views && k < t->n_losses; k++)
        lmn_tensor_unref(t->loss_acc_views[k]);
    g_clear_pointer(&t->loss_acc_views, g_free);
    g_clear_pointer(&t->loss_accs, lmn_tensor_unref);
    g_clear_pointer(&t->train_losses, g_free);
    g_clear_pointer(&t->val_losses, g_free);
    g_clear_pointer(&t->read_losses, g_free);
}

void *const *lmn_train_target_buffers(LmnTrainer *t, void *y, gint64 skip)
{
    t->t_dst[0] = y;
    for (guint k = 1; k < t->n_targets; k++) {
        void *direct =
            skip == 0 ? lmn_backend_host_pointer(lmn_model_get_target(t->model, k)) : NULL;
        t->t_dst[k] = direct ? direct : t->t_host[k];
    }
    return t->t_dst;
}

gboolean lmn_train_write_targets(LmnTrainer *t, gint64 m, gint64 skip, GError **error)
{
    for (guint k = 1; k < t->n_targets; k++) {
        LmnTensor *tt = lmn_model_get_target(t->model, k);
        if (t->t_dst[k] != t->t_host[k])
            continue; /* delivered straight into host memory */
        const guint8 *src = (const guint8 *) t->t_host[k] + skip * (lmn_tensor_nbytes(tt) / m);
        if (!lmn_tensor_write(tt, src, lmn_tensor_nbytes(tt), error))
            return FALSE;
    }
    return TRUE;
}

void lmn_train_zero_losses(LmnTrainer *t)
{
    if (t->loss_accs)
        lmn_op_fill(t->loss_accs, 0);
}

void lmn_train_accumulate_losses(LmnTrainer *t, gint64 m)
{
    for (guint k = 0; t->loss_accs && k < t->n_losses; k++)
        lmn_op_axpby((float) m, lmn_model_get_loss_value(t->model, k), 1.0f, t->loss_acc_views[k]);
}

gboolean lmn_train_read_losses(LmnTrainer *t, gint64 seen, GError **error)
{
    if (!t->loss_accs)
        return TRUE;
    if (!lmn_tensor_read(t->loss_accs, t->read_losses, t->n_losses * sizeof(float), error))
        return FALSE;
    for (guint k = 0; k < t->n_losses; k++)
        t->train_losses[k] = (double) t->read_losses[k];
    /* (with several ranks, the sums of all of them: @seen counts the global batches) */
    if (!lmn_train_reduce_figures(t, t->train_losses, t->n_losses, error))
        return FALSE;
    for (guint k = 0; k < t->n_losses; k++)
        t->train_losses[k] /= (double) seen;
    return TRUE;
}

gboolean lmn_train_evaluate(LmnTrainer *t, const LmnDataset *ds, double *loss, double *acc,
                            double *losses, GError **error)
{
    if (losses)
        for (guint k = 0; k < t->n_losses; k++)
            losses[k] = NAN;
    return lmn_train_evaluate_split(t, ds, loss, acc, t->loss_accs ? losses : NULL, error);
}

/* "(main 0.4100, aux 0.6000)" after a loss figure, only with several losses. */
void lmn_train_print_losses(LmnTrainer *t, const double *values)
{
    if (!t->loss_accs)
        return;
    printf(" (");
    for (guint k = 0; k < t->n_losses; k++)
        printf("%s%s %.4f", k ? ", " : "",
               lmn_layer_get_name(lmn_model_get_loss_layer(t->model, k)), values[k]);
    printf(")");
}

gboolean lmn_train_write_loss_header(LmnTrainer *t, FILE *f)
{
    for (guint pass = 0; t->loss_accs && pass < 2; pass++)
        for (guint k = 0; k < t->n_losses; k++)
            if (fprintf(f, ",%s_loss_%s", pass == 0 ? "train" : "val",
                        lmn_layer_get_name(lmn_model_get_loss_layer(t->model, k))) < 0)
                return FALSE;
    return TRUE;
}

gboolean lmn_train_write_loss_values(LmnTrainer *t, FILE *f)
{
    for (guint k = 0; t->loss_accs && k < t->n_losses; k++)
        if (!lmn_train_csv_value(f, t->train_losses[k]))
            return FALSE;
    for (guint k = 0; t->loss_accs && k < t->n_losses; k++)
        if (!lmn_train_csv_value(f, t->val_losses[k]))
            return FALSE;
    return TRUE;
}
