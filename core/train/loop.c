/* Lamina — the training loop: epochs and their steps, progress and epoch reports, best-epoch
 * tracking and early stopping, and the end of a run (interrupted.h5, final.h5, the test split). */
#include "trainer-private.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const char *lmn_train_monitor_name(LmnMonitor m)
{
    return m == LMN_MONITOR_VAL_ACCURACY ? "val_accuracy" : "val_loss";
}
/* Fills the model's input and target tensors with the reader's next batch of @total samples,
 * leaving out its first @skip samples; @m is the number of samples taken after them (the rest
 * belongs to other ranks).  The batch goes straight into backend memory when that is host
 * memory and it is taken whole.  *@x_out and *@y_out point at the batch in host memory (there
 * or in the staging buffers).  With @m 0 the batch is only consumed. */
static gboolean next_batch(LmnTrainer *t, gint64 m, gint64 skip, gint64 total, const float **x_out,
                           const void **y_out, GError **error)
{
    LmnTensor *x = NULL, *y = NULL;
    gboolean whole = skip == 0 && m == total;
    if (m > 0)
        lmn_model_set_batch(t->model, m, &x, &y);
    float *xd = whole ? lmn_backend_host_pointer(x) : NULL;
    void *yd = whole ? lmn_backend_host_pointer(y) : NULL;
    void *const *targets = lmn_train_target_buffers(t, yd ? yd : t->y_host, whole ? 0 : -1);
    gint64 got =
        lmn_batch_reader_next_targets(t->reader, xd ? xd : t->x_host, targets, t->idx_host, error);
    if (got < 0)
        return FALSE;
    if (got != total) {
        /* The loop and the reader count the same epoch: a mismatch is a bug, not bad data. */
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                    "%s: the batch reader delivered %" G_GINT64_FORMAT
                    " samples where %" G_GINT64_FORMAT " were expected",
                    lmn_dataset_get_spec(t->train), got, total);
        return FALSE;
    }
    if (m == 0)
        return TRUE;
    const guint8 *xs = (const guint8 *) t->x_host + skip * (lmn_tensor_nbytes(x) / m);
    const guint8 *ys = (const guint8 *) t->y_host + skip * (lmn_tensor_nbytes(y) / m);
    /* Index inputs are checked here, where the batch is in host memory on every backend. */
    if (!lmn_model_check_input(t->model, xd ? xd : (const float *) xs, m, t->idx_host + skip,
                               error)) {
        g_prefix_error(error, "%s, epoch %" G_GINT64_FORMAT ", step %" G_GINT64_FORMAT ": ",
                       lmn_dataset_get_spec(t->train), (gint64) t->state.epoch + 1,
                       (gint64) t->state.step + 1);
        return FALSE;
    }
    if (!xd && !lmn_tensor_write(x, xs, lmn_tensor_nbytes(x), error))
        return FALSE;
    if (!yd && !lmn_tensor_write(y, ys, lmn_tensor_nbytes(y), error))
        return FALSE;
    if (!lmn_train_write_targets(t, m, skip, error))
        return FALSE;
    *x_out = xd ? xd : (const float *) xs;
    *y_out = yd ? yd : (const void *) ys;
    return TRUE;
}
static void progress_line(LmnTrainer *t, gint64 epoch, gint64 done, gint64 total, double loss,
                          gint64 seen, double elapsed)
{
    const int width = 30;
    int filled = total ? (int) (width * done / total) : width;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
    bar[width] = '\0';
    double rate = elapsed > 0 ? (double) seen / elapsed : 0;
    printf("\repoch %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT " [%s] %3d%%  loss %.4f  %.0f "
           "samples/s ",
           epoch + 1, t->tc->epochs, bar, total ? (int) (100 * done / total) : 100, loss, rate);
    fflush(stdout);
}
static gboolean non_finite_error(LmnTrainer *t, gint64 epoch, gint64 step, double loss,
                                 GError **error)
{
    g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_NON_FINITE,
                "epoch %" G_GINT64_FORMAT ", step %" G_GINT64_FORMAT ": the training loss is "
                "%g; stopped before applying it (checkpoints already in %s are kept). Lower the "
                "learning rate, clip gradients (clip_norm), or check the data for extreme values",
                epoch + 1, step, loss, t->output_dir);
    return FALSE;
}
/* Copies the model's weights into the best-weights tensors, or back with @restore. */
static void copy_best(LmnTrainer *t, gboolean restore)
{
    LmnTensor *flat = lmn_model_get_params(t->model);
    if (restore)
        lmn_op_copy(flat, t->best_params);
    else
        lmn_op_copy(t->best_params, flat);
    gint64 off = 0;
    for (guint i = 0; t->best_buffers && i < lmn_model_get_n_layers(t->model); i++) {
        LmnLayer *l = lmn_model_get_layer(t->model, i);
        for (guint b = 0; b < lmn_layer_get_n_buffers(l); b++) {
            LmnTensor *buf = lmn_layer_get_buffer(l, b);
            g_autoptr(LmnTensor) view = lmn_tensor_new_view(t->best_buffers, off, &buf->shape);
            if (restore)
                lmn_op_copy(buf, view);
            else
                lmn_op_copy(view, buf);
            off += lmn_tensor_numel(buf);
        }
    }
}
/* After a complete epoch with validation: tracks the best metric, keeps the best weights, and
 * decides on early stopping (Keras' EarlyStopping rule: an improvement must beat the best by
 * more than min_delta).  Returns whether the metric improved. */
static gboolean track_best(LmnTrainer *t, gint64 epoch, double val_loss, double val_acc)
{
    const LmnTrainConfig *tc = t->tc;
    gboolean higher = tc->monitor == LMN_MONITOR_VAL_ACCURACY;
    double metric = higher ? val_acc : val_loss;
    double best = t->state.best_metric;
    double d = tc->early_stopping_min_delta;
    gboolean improved = isnan(best) || (higher ? metric > best + d : metric < best - d);
    if (isnan(metric))
        improved = FALSE;
    if (improved) {
        t->state.best_metric = metric;
        t->state.best_epoch = epoch + 1;
        t->state.wait = 0;
        if (t->best_params) {
            copy_best(t, FALSE);
            t->state.has_best_weights = TRUE;
        }
    } else {
        t->state.wait++;
    }
    return improved;
}
/* The run's banner: what is trained on what, the activation memory, where a resume starts. */
static void print_start(LmnTrainer *t, gint64 n)
{
    printf("training %" G_GINT64_FORMAT " parameters on %s: %" G_GINT64_FORMAT
           " samples%s%s, batch %" G_GINT64_FORMAT ", optimizer %s\n",
           lmn_model_get_n_parameters(t->model), lmn_backend_describe(t->backend), n,
           t->val ? " (plus validation)" : "",
           lmn_dataset_is_streaming(t->train) ? " streamed from the file" : "", t->tc->batch_size,
           lmn_config_get_optimizer_type(t->cfg));
    /* Activation memory next to the parameter count: for a batch size it is usually the larger
     * of the two. */
    gint64 unshared = 0, peak = 0;
    guint segments = 0;
    gint64 arena = lmn_model_get_activation_bytes(t->model, &unshared, &peak, &segments);
    printf("activations %.2f MiB in %u allocation%s (%.2f MiB with one per buffer, "
           "%.2f MiB live at most)\n",
           (double) arena / (1 << 20), segments, segments == 1 ? "" : "s",
           (double) unshared / (1 << 20), (double) peak / (1 << 20));
    if (t->n_ranks > 1)
        printf("data-parallel over %d ranks (%s): %" G_GINT64_FORMAT " samples of each batch per "
               "rank, gradients summed in buckets of %g MiB\n",
               t->n_ranks, lmn_comm_get_name(t->comm), t->tc->batch_size / t->n_ranks,
               t->tc->bucket_mib);
    if (t->opts.resume_checkpoint)
        printf("resuming from %s at epoch %" G_GINT64_FORMAT ", step %" G_GINT64_FORMAT "\n",
               t->opts.resume_checkpoint, t->state.epoch + 1, t->state.step);
    fflush(stdout);
}
/* One epoch as the loop and its report see it. */
typedef struct {
    gint64 index;         /* the epoch, from 0 */
    gint64 seen;          /* samples trained on in this call (a resumed epoch counts its rest) */
    double lr;            /* the learning rate of the last step */
    gint64 t0;            /* monotonic start, microseconds */
    double wait0;         /* the reader's wait time at the start */
    gboolean reached_end; /* FALSE when max_steps or a stop request ended it early */
    gboolean stop;        /* the run ends after this epoch */
    double train_loss, train_acc, val_loss, val_acc, seconds, data_seconds;
    gboolean improved; /* the monitored metric improved (best.h5 is written) */
} Epoch;
/* A schedule gave a learning rate no optimizer can use: the schedule is at fault, not the
 * model, so name it rather than letting the weights turn into NaN. */
static gboolean bad_lr_error(LmnTrainer *t, const Epoch *ep, GError **error)
{
    const LmnFeature *f = lmn_schedule_get_feature(t->sched);
    g_autofree char *where = lmn_config_dup_where(t->cfg, "schedule", "type");
    g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_NON_FINITE,
                "epoch %" G_GINT64_FORMAT ", step %" G_GINT64_FORMAT ": schedule '%s' (plugin "
                "'%s' %s, %s type) returned a learning rate of %g; stopped before applying it "
                "(checkpoints already in %s are kept). Check the schedule's keys",
                ep->index + 1, t->state.step + 1, f->desc->name, f->plugin->name,
                f->plugin->version, where, ep->lr, t->output_dir);
    return FALSE;
}

gboolean lmn_train_check_loss(LmnTrainer *t, gint64 epoch, GError **error)
{
    /* With the CPU backend the loss is in host memory: checking every step is free. */
    const float *loss_host = lmn_backend_host_pointer(lmn_model_get_loss(t->model));
    if (loss_host && !isfinite(*loss_host))
        return non_finite_error(t, epoch, t->state.step + 1, *loss_host, error);
    return TRUE;
}
/* Forward, the loss guard and backward of a step (with adversarial training, those of the clean
 * and the attacked batch) on the @m samples loaded; *@loss is the batch's loss where it is in
 * host memory, for the collective guard of a data-parallel run. */
static gboolean forward_backward(LmnTrainer *t, Epoch *ep, gint64 m, const float *xh,
                                 const void *yh, double *loss, GError **error)
{
    if (t->adv_work)
        return lmn_train_adversarial_step(t, ep->index, m, xh, yh, error);
    guint64 step = (guint64) t->state.step;
    lmn_model_forward(t->model, TRUE, step, t->state.seed);
    const float *loss_host = lmn_backend_host_pointer(lmn_model_get_loss(t->model));
    *loss = loss_host ? *loss_host : 0.0;
    /* With several ranks the guard is decided by all of them after backward. */
    if (t->n_ranks == 1 && !lmn_train_check_loss(t, ep->index, error))
        return FALSE;
    lmn_model_backward(t->model, step, t->state.seed);
    lmn_op_axpby((float) m, lmn_model_get_loss(t->model), 1.0f, t->loss_acc);
    lmn_train_accumulate_losses(t, m);
    return TRUE;
}
/* One optimizer step on the next @m samples (after skipping @skip of the reader's batch), of
 * which this rank trains on its slice: forward and backward, the gradient's sum over the
 * ranks, gradient processing, the update, the accuracy count. */
static gboolean train_step(LmnTrainer *t, Epoch *ep, gint64 m, gint64 skip, gint64 steps_per_epoch,
                           GError **error)
{
    const float *xh = NULL;
    const void *yh = NULL;
    gint64 first, local;
    lmn_train_slice(t, m, &first, &local);
    if (!next_batch(t, local, skip + first, skip + m, &xh, &yh, error))
        return FALSE;
    lmn_train_begin_gradients(t, local, m);
    double loss = 0;
    /* Weight noise holds for this step's passes; the update applies to the clean weights. */
    lmn_train_weight_noise_add(t);
    /* (a rank whose slice of a last, short batch is empty contributes a zero gradient) */
    if (local == 0)
        lmn_model_zero_grads(t->model);
    else if (!forward_backward(t, ep, local, xh, yh, &loss, error))
        return FALSE;
    lmn_train_weight_noise_remove(t);
    if (!lmn_train_reduce_gradients(t, loss, error) ||
        !lmn_train_process_gradients(t, local, error))
        return FALSE;
    ep->lr = lmn_schedule_get_lr(t->sched, t->state.step, ep->index, steps_per_epoch);
    if (!isfinite(ep->lr) || ep->lr < 0)
        return bad_lr_error(t, ep, error);
    lmn_optimizer_step(t->opt, ep->lr);
    t->state.step++;
    lmn_train_after_update(t);
    /* (adversarial training counted the clean batch's correct answers before the attack) */
    if (!t->adv_work && local > 0)
        lmn_train_count_correct(t->model, t->acc_loss, t->correct_acc);
    return TRUE;
}
/* Redraws the progress bar at most every 0.1 s, and at the end of the epoch. */
static gboolean update_progress(LmnTrainer *t, Epoch *ep, gint64 done, gint64 n, gint64 *last_draw,
                                GError **error)
{
    gint64 now = g_get_monotonic_time();
    if (now - *last_draw <= 100000 && done < n)
        return TRUE;
    double l = 0;
    if (!lmn_train_read_scalar(t->loss_acc, &l, error))
        return FALSE;
    progress_line(t, ep->index, done, n, l / (double) ep->seen, ep->seen,
                  (double) (now - ep->t0) / 1e6);
    *last_draw = now;
    return TRUE;
}
/* Readies the model's ops for each size this rank's steps over samples [@first, @n) take in
 * batches of @batch, the first @skip short (lmn_model_plan_batch), so that no step of the epoch
 * makes a backend plan: the full slice, an epoch's last partial one and a resumed epoch's
 * first.  A size already planned costs a lookup per layer. */
static gboolean plan_epoch_batches(LmnTrainer *t, gint64 first, gint64 n, gint64 batch, gint64 skip,
                                   GError **error)
{
    if (first >= n)
        return TRUE;
    const gint64 head = MIN(batch - skip, n - first), rest = n - first - head;
    const gint64 sizes[] = {head, rest > 0 ? MIN(batch, rest) : 0, rest % batch};
    for (gsize i = 0; i < G_N_ELEMENTS(sizes); i++) {
        gint64 slice_first, local;
        if (sizes[i] == 0)
            continue;
        lmn_train_slice(t, sizes[i], &slice_first, &local);
        if (local > 0 && !lmn_model_plan_batch(t->model, local, error))
            return FALSE;
    }
    return TRUE;
}

/* Trains the steps of epoch ep->index that are left, from the position the state records. */
static gboolean train_epoch_steps(LmnTrainer *t, Epoch *ep, gint64 n, gint64 steps_per_epoch,
                                  GError **error)
{
    const LmnTrainConfig *tc = t->tc;
    gint64 batch = tc->batch_size;
    gint64 last_draw = 0;
    /* A checkpoint taken mid-epoch (max_steps, an interrupt) resumes at the next sample of the
     * same order: the reader's batches are those an uninterrupted run would have had. */
    gint64 first =
        t->state.epoch_samples > 0 && t->state.epoch_samples < n ? t->state.epoch_samples : 0;
    lmn_batch_reader_seek(t->reader, ep->index, first / batch);
    /* Only a batch size changed on resume puts the position inside a batch: the rest of that
     * batch comes first, as a smaller batch, so no sample is seen twice or skipped. */
    gint64 skip = first % batch;
    if (!plan_epoch_batches(t, first, n, batch, skip, error))
        return FALSE;
    ep->reached_end = TRUE;
    for (gint64 start = first; start < n;) {
        if ((tc->max_steps > 0 && t->state.step >= tc->max_steps) ||
            g_atomic_int_get(&t->stop_requested)) {
            ep->stop = TRUE;
            ep->reached_end = FALSE;
            return TRUE;
        }
        gint64 m = MIN(batch - skip, n - start);
        if (!train_step(t, ep, m, skip, steps_per_epoch, error))
            return FALSE;
        skip = 0;
        t->state.epoch_samples = start + m;
        ep->seen += m;
        start += m;
        if (t->opts.progress && !update_progress(t, ep, start, n, &last_draw, error))
            return FALSE;
    }
    return TRUE;
}
/* The epoch's training figures, read from the device once, and the loss guard over them. */
static gboolean read_epoch_figures(LmnTrainer *t, Epoch *ep, GError **error)
{
    double sums[2] = {0, 0};
    if (!lmn_train_read_scalar(t->loss_acc, &sums[0], error) ||
        !lmn_train_read_scalar(t->correct_acc, &sums[1], error) ||
        !lmn_train_reduce_figures(t, sums, 2, error) ||
        !lmn_train_read_losses(t, ep->seen, error) || !lmn_backend_synchronize(t->backend, error))
        return FALSE;
    gint64 elapsed_us = g_get_monotonic_time() - ep->t0;
    ep->data_seconds = lmn_batch_reader_get_wait_seconds(t->reader) - ep->wait0;
    ep->seconds = (double) elapsed_us / 1e6;
    ep->train_loss = sums[0] / (double) ep->seen;
    gboolean labels = t->acc_loss >= 0;
    ep->train_acc = labels ? sums[1] / (double) ep->seen : NAN;
    if (!isfinite(ep->train_loss)) {
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_NON_FINITE,
                    "epoch %" G_GINT64_FORMAT ": the training loss is %g; stopped without "
                    "saving this epoch (checkpoints already in %s are kept). Lower the "
                    "learning rate, clip gradients (clip_norm), or check the data for "
                    "extreme values",
                    ep->index + 1, ep->train_loss, t->output_dir);
        return FALSE;
    }
    /* The device's sum of squared gradient norms (guard_gradients); the CPU checked each step. */
    double grad_sq = 0;
    if (t->grad_sq && !lmn_backend_host_pointer(t->grad_sq)) {
        if (!lmn_train_read_scalar(t->grad_sq, &grad_sq, error))
            return FALSE;
        if (!isfinite(grad_sq))
            return lmn_train_non_finite_gradient(t, 0, grad_sq, error);
    }
    return TRUE;
}
/* Validation, then, for a complete epoch only, the schedule, the best metric and early stopping,
 * so a run stopped mid-epoch and resumed makes the same decisions as one that was not. */
static gboolean end_epoch(LmnTrainer *t, Epoch *ep, GError **error)
{
    const LmnTrainConfig *tc = t->tc;
    ep->val_loss = NAN;
    ep->val_acc = NAN;
    if (t->val && !lmn_train_evaluate(t, t->val, &ep->val_loss, &ep->val_acc, t->val_losses, error))
        return FALSE;
    if (t->val && !lmn_train_evaluate_ema(t, t->val, &t->ema_val_loss, &t->ema_val_acc, error))
        return FALSE;
    if (t->val && t->tc->top_k > 0 && !lmn_train_evaluate_top_k(t, t->val, &t->val_top_k, error))
        return FALSE;
    if (t->val && !lmn_train_evaluate_iou(t, t->val, &t->val_iou, error))
        return FALSE;
    ep->improved = FALSE;
    if (!ep->reached_end)
        return TRUE;
    if (t->val) {
        lmn_schedule_observe(t->sched, ep->val_loss);
        ep->improved = track_best(t, ep->index, ep->val_loss, ep->val_acc);
    }
    t->state.epoch++;
    t->state.epoch_samples = 0;
    if (t->val && tc->early_stopping_patience > 0 && t->state.wait >= tc->early_stopping_patience) {
        t->state.stopped_early = TRUE;
        ep->stop = TRUE;
    }
    return TRUE;
}
/* The epoch's row of metrics.csv. */
static gboolean write_metrics_row(LmnTrainer *t, const Epoch *ep, GError **error)
{
    FILE *metrics = lmn_train_open_metrics(t, error);
    if (!metrics)
        return FALSE;
    /* Buffered: a full disk shows at the latest in fflush(), which every row ends with. */
    gboolean ok =
        fprintf(metrics, "%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT, ep->index + 1, t->state.step) >=
            0 &&
        lmn_train_csv_value(metrics, ep->lr) && lmn_train_csv_value(metrics, ep->train_loss) &&
        lmn_train_csv_value(metrics, ep->train_acc) && lmn_train_csv_value(metrics, ep->val_loss) &&
        lmn_train_csv_value(metrics, ep->val_acc) && lmn_train_csv_value(metrics, ep->seconds) &&
        lmn_train_write_loss_values(t, metrics) &&
        (!t->ema || (lmn_train_csv_value(metrics, t->ema_val_loss) &&
                     lmn_train_csv_value(metrics, t->ema_val_acc))) &&
        (t->tc->top_k == 0 || lmn_train_csv_value(metrics, t->val_top_k)) &&
        (t->seg_loss < 0 || lmn_train_csv_value(metrics, t->val_iou)) &&
        fputc('\n', metrics) != EOF && fflush(metrics) == 0;
    if (!ok) {
        int e = errno;
        g_autofree char *path = g_build_filename(t->output_dir, "metrics.csv", NULL);
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                    "cannot write %s: %s; free space on that disk or choose another --output", path,
                    g_strerror(e));
        return FALSE;
    }
    return TRUE;
}
/* The epoch's line on the terminal. */
static void print_epoch(LmnTrainer *t, const Epoch *ep)
{
    gboolean labels = t->acc_loss >= 0;
    if (t->opts.progress)
        printf("\r\033[K");
    printf("epoch %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT "  loss %.4f", ep->index + 1,
           t->tc->epochs, ep->train_loss);
    lmn_train_print_losses(t, t->train_losses);
    if (labels)
        printf("  acc %.2f%%", 100 * ep->train_acc);
    if (t->val) {
        printf("  val_loss %.4f", ep->val_loss);
        lmn_train_print_losses(t, t->val_losses);
        if (labels)
            printf("  val_acc %.2f%%", 100 * ep->val_acc);
        if (t->tc->top_k > 0)
            printf("  val_top%" G_GINT64_FORMAT " %.2f%%", t->tc->top_k, 100 * t->val_top_k);
        if (t->seg_loss >= 0)
            printf("  val_miou %.4f", t->val_iou);
        if (ep->improved)
            printf(" *");
        if (t->ema && !isnan(t->ema_val_loss)) {
            printf("  ema val_loss %.4f", t->ema_val_loss);
            if (labels)
                printf("  ema val_acc %.2f%%", 100 * t->ema_val_acc);
        }
    }
    /* The share of the epoch spent waiting for batches the prefetch thread had not decoded yet:
     * a high value means the data pipeline, not the model, limits the speed. */
    double secs = ep->seconds;
    printf("  lr %.4g  %.0f samples/s  data %.0f%%  %.1fs\n", ep->lr, (double) ep->seen / secs,
           secs > 0 ? 100.0 * ep->data_seconds / secs : 0.0, secs);
    fflush(stdout);
}
/* best.h5 after an improvement, epoch-N.h5 every checkpoint_every complete epochs. */
static gboolean save_epoch_checkpoints(LmnTrainer *t, const Epoch *ep, GError **error)
{
    if (ep->improved && !lmn_train_save_checkpoint(t, "best.h5", error))
        return FALSE;
    gint64 every = t->tc->checkpoint_every;
    if (ep->reached_end && every > 0 && t->state.epoch % every == 0) {
        g_autofree char *name = g_strdup_printf("epoch-%" G_GINT64_FORMAT ".h5", t->state.epoch);
        if (!lmn_train_save_checkpoint(t, name, error))
            return FALSE;
    }
    return TRUE;
}
/* Trains one epoch (or what is left of it) and reports it.  Returns FALSE on an error; sets
 * *stop when the run ends after it (max_steps, a stop request, early stopping, nothing left). */
static gboolean run_epoch(LmnTrainer *t, gint64 n, gint64 steps_per_epoch, gboolean *stop,
                          GError **error)
{
    Epoch ep = {
        .index = t->state.epoch,
        .t0 = g_get_monotonic_time(),
        .wait0 = lmn_batch_reader_get_wait_seconds(t->reader),
    };
    lmn_op_fill(t->loss_acc, 0);
    lmn_op_fill(t->correct_acc, 0);
    lmn_train_zero_losses(t);
    if (!train_epoch_steps(t, &ep, n, steps_per_epoch, error))
        return FALSE;
    if (ep.seen == 0) {
        *stop = TRUE;
        return TRUE;
    }
    if (!read_epoch_figures(t, &ep, error) || !end_epoch(t, &ep, error) ||
        (t->rank == 0 && !write_metrics_row(t, &ep, error)))
        return FALSE;
    if (!t->opts.quiet)
        print_epoch(t, &ep);
    if (t->opts.epoch_done && t->rank == 0) {
        g_autofree char *path = g_build_filename(t->output_dir, "metrics.csv", NULL);
        t->opts.epoch_done(path, t->opts.epoch_done_data);
    }
    if (!save_epoch_checkpoints(t, &ep, error))
        return FALSE;
    *stop = ep.stop;
    return TRUE;
}
/* What streaming the training split cost in reads (each rank reads only its slices). */
static void print_rows_read(const LmnTrainer *t)
{
    gint64 n = lmn_dataset_get_rows_read(t->train);
    if (t->n_ranks > 1)
        printf("rank %d read %" G_GINT64_FORMAT " training samples of x from the file (its "
               "slices of the batches)\n",
               t->rank, n);
    else
        printf("read %" G_GINT64_FORMAT " training samples of x from the file\n", n);
}

/* After the last epoch: interrupted.h5 for a stop request, the early-stopping report and the
 * best weights, final.h5, and the test split's figures. */
static gboolean finish_run(LmnTrainer *t, GError **error)
{
    const LmnTrainConfig *tc = t->tc;
    if (g_atomic_int_get(&t->stop_requested)) {
        if (!lmn_train_save_checkpoint(t, "interrupted.h5", error))
            return FALSE;
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_INTERRUPTED,
                    "interrupted at step %" G_GINT64_FORMAT "; state saved to %s/interrupted.h5 "
                    "(continue with --resume)",
                    t->state.step, t->output_dir);
        return FALSE;
    }
    if (t->state.stopped_early && !t->opts.quiet)
        printf("early stopping: %s has not improved by more than %g for %" G_GINT64_FORMAT
               " epochs; best %.6g at epoch %" G_GINT64_FORMAT "%s\n",
               lmn_train_monitor_name(tc->monitor), tc->early_stopping_min_delta, t->state.wait,
               t->state.best_metric, t->state.best_epoch,
               t->state.has_best_weights && tc->restore_best ? " (its weights restored)" : "");
    if (t->state.stopped_early && tc->restore_best && t->state.has_best_weights)
        copy_best(t, TRUE);
    if (!lmn_train_save_checkpoint(t, "final.h5", error))
        return FALSE;
    if (t->test) {
        double tl, ta;
        if (!lmn_train_evaluate_split(t, t->test, &tl, &ta, NULL, error))
            return FALSE;
        double top = NAN, miou = NAN;
        if ((tc->top_k > 0 && !lmn_train_evaluate_top_k(t, t->test, &top, error)) ||
            !lmn_train_evaluate_iou(t, t->test, &miou, error))
            return FALSE;
        if (!t->opts.quiet) {
            printf("test  loss %.4f", tl);
            if (!isnan(ta))
                printf("  acc %.2f%%", 100 * ta);
            if (!isnan(top))
                printf("  top%" G_GINT64_FORMAT " %.2f%%", tc->top_k, 100 * top);
            if (!isnan(miou))
                printf("  mean IoU %.4f", miou);
            printf("  (%s)\n", lmn_dataset_get_spec(t->test));
        }
        if (t->ema && !lmn_train_evaluate_ema(t, t->test, &tl, &ta, error))
            return FALSE;
        if (t->ema && !isnan(tl) && !t->opts.quiet) {
            printf("test  loss %.4f", tl);
            if (!isnan(ta))
                printf("  acc %.2f%%", 100 * ta);
            printf("  (the moving average of the weights, /ema)\n");
        }
    }
    if (!t->opts.quiet && lmn_dataset_is_streaming(t->train))
        print_rows_read(t);
    if (!t->opts.quiet && t->rank == 0)
        printf("saved %s/final.h5\n", t->output_dir);
    return TRUE;
}
gboolean lmn_trainer_run(LmnTrainer *t, GError **error)
{
    gint64 n = lmn_dataset_get_length(t->train);
    gint64 batch = t->tc->batch_size;
    gint64 steps_per_epoch = (n + batch - 1) / batch;
    if (!t->opts.quiet)
        print_start(t, n);
    /* A checkpoint from before epoch_samples was saved: derive it from the step count. */
    if (t->state.epoch_samples < 0) {
        gint64 done = t->state.step - t->state.epoch * steps_per_epoch;
        t->state.epoch_samples = done > 0 && done < steps_per_epoch ? done * batch : 0;
    }
    gboolean ok = TRUE, stop = FALSE;
    while (ok && !stop && t->state.epoch < t->tc->epochs)
        ok = run_epoch(t, n, steps_per_epoch, &stop, error);
    if (t->metrics) {
        int closed = fclose(t->metrics);
        int e = errno;
        t->metrics = NULL;
        if (ok && closed != 0) {
            g_autofree char *path = g_build_filename(t->output_dir, "metrics.csv", NULL);
            g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                        "cannot write %s: %s; free space on that disk or choose another --output",
                        path, g_strerror(e));
            ok = FALSE;
        }
    }
    return ok && finish_run(t, error);
}
