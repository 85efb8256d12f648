/* Lamina — the training loop, evaluation and backend selection. */
#include <lamina/lamina.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct _LmnTrainer {
    LmnConfig *cfg;
    LmnRegistry *registry;
    LmnTrainerOptions opts;
    char *output_dir;
    char *config_text;
    const LmnTrainConfig *tc;
    LmnBackend *backend;
    LmnModel *model;
    LmnOptimizer *opt;
    LmnSchedule *sched;
    LmnDataset *train;
    LmnDataset *val;
    LmnDataset *test;
    LmnTrainState state;
    guint32 *order;
    float *x_host;
    void *y_host;
    LmnTensor *loss_acc;
    LmnTensor *correct_acc;
    gint stop_requested;
};

/* GPU backends `auto` tries, in order, before falling back to the CPU. */
static const char *const auto_backends[] = {"vulkan", NULL};

LmnBackend *lmn_backend_new_for_config(LmnRegistry *registry, const char *name,
                                       const char *device, GError **error)
{
    if (!name || !*name || g_str_equal(name, "auto")) {
        for (guint i = 0; auto_backends[i]; i++) {
            g_autoptr(GError) local = NULL;
            LmnBackend *b = lmn_backend_new(registry, auto_backends[i], NULL, device, &local);
            if (b)
                return b;
            g_printerr("notice: backend auto: %s unavailable (%s); using the cpu backend\n",
                       auto_backends[i], local->message);
        }
        return lmn_backend_new(registry, "cpu", NULL, NULL, error);
    }
    return lmn_backend_new(registry, name, NULL, device, error);
}

void lmn_trainer_free(LmnTrainer *t)
{
    if (!t)
        return;
    lmn_schedule_free(t->sched);
    lmn_optimizer_free(t->opt);
    g_clear_pointer(&t->loss_acc, lmn_tensor_unref);
    g_clear_pointer(&t->correct_acc, lmn_tensor_unref);
    lmn_model_free(t->model);
    if (t->backend)
        lmn_backend_unref(t->backend);
    lmn_dataset_free(t->train);
    lmn_dataset_free(t->val);
    lmn_dataset_free(t->test);
    g_free(t->order);
    g_free(t->x_host);
    g_free(t->y_host);
    g_free(t->output_dir);
    g_free(t->config_text);
    g_free(t);
}

static gboolean open_data(LmnTrainer *t, GError **error)
{
    t->train = lmn_dataset_open(t->tc->train_data, error);
    if (!t->train)
        return FALSE;
    if (t->tc->validation_data) {
        t->val = lmn_dataset_open(t->tc->validation_data, error);
        if (!t->val)
            return FALSE;
    } else if (t->tc->validation_split > 0) {
        t->val = lmn_dataset_split(t->train, t->tc->validation_split, t->tc->seed, error);
        if (!t->val)
            return FALSE;
    }
    if (t->tc->test_data) {
        t->test = lmn_dataset_open(t->tc->test_data, error);
        if (!t->test)
            return FALSE;
    }
    return TRUE;
}

static gboolean check_data(LmnTrainer *t, const LmnDataset *ds, GError **error)
{
    if (!ds)
        return TRUE;
    const LmnTensorInfo *target = lmn_model_get_target_info(t->model);
    gboolean labels = lmn_dataset_has_class_labels(ds);
    if (labels != (target->dtype == LMN_DTYPE_I32) ||
        (!labels && !lmn_shape_equal(lmn_dataset_get_target_shape(ds), &target->shape))) {
        g_autofree char *want = lmn_shape_to_string(&target->shape);
        g_autofree char *have = lmn_shape_to_string(lmn_dataset_get_target_shape(ds));
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                    "%s: y is %s %s per sample but the training split's y is %s %s",
                    lmn_dataset_get_spec(ds), labels ? "class labels" : "float targets", have,
                    target->dtype == LMN_DTYPE_I32 ? "class labels" : "float targets", want);
        return FALSE;
    }
    return lmn_dataset_check_model(ds, lmn_model_get_input_shape(t->model),
                                   lmn_model_get_n_classes(t->model), error);
}

static LmnTensorInfo target_info_of(const LmnDataset *ds)
{
    LmnTensorInfo info;
    if (lmn_dataset_has_class_labels(ds)) {
        info.shape = lmn_shape_make(0);
        info.dtype = LMN_DTYPE_I32;
    } else {
        info.shape = *lmn_dataset_get_target_shape(ds);
        info.dtype = LMN_DTYPE_F32;
    }
    return info;
}

LmnTrainer *lmn_trainer_new(LmnConfig *cfg, LmnRegistry *registry,
                            const LmnTrainerOptions *options, GError **error)
{
    g_return_val_if_fail(cfg && registry && options && options->output_dir, NULL);
    LmnTrainer *t = g_new0(LmnTrainer, 1);
    t->cfg = cfg;
    t->registry = registry;
    t->opts = *options;
    t->output_dir = g_strdup(options->output_dir);
    t->tc = lmn_config_get_train(cfg);
    t->config_text = lmn_config_to_data(cfg);
    t->state = (LmnTrainState){0, 0, t->tc->seed, NAN, -1};

    if (!open_data(t, error))
        goto fail;
    t->backend = lmn_backend_new_for_config(registry, t->tc->backend, t->tc->device, error);
    if (!t->backend)
        goto fail;
    LmnTensorInfo target = target_info_of(t->train);
    t->model = lmn_model_new(cfg, registry, t->backend, &target, error);
    if (!t->model)
        goto fail;
    if (!check_data(t, t->train, error) || !check_data(t, t->val, error) ||
        !check_data(t, t->test, error))
        goto fail;

    if (!lmn_model_init_params(t->model, t->tc->seed, error))
        goto fail;
    const char *weights = options->resume_checkpoint ? options->resume_checkpoint
                                                     : options->init_checkpoint;
    if (weights && !lmn_checkpoint_load_weights(weights, t->model, error))
        goto fail;

    t->opt = lmn_optimizer_new(registry, lmn_config_get_optimizer_type(cfg),
                               lmn_config_get_optimizer_params(cfg),
                               lmn_model_get_params(t->model), lmn_model_get_grads(t->model),
                               error);
    if (!t->opt)
        goto fail;
    double base_lr = lmn_params_get_float(lmn_config_get_optimizer_params(cfg), "lr");
    t->sched = lmn_schedule_new(registry, lmn_config_get_schedule_type(cfg),
                                lmn_config_get_schedule_params(cfg),
                                lmn_config_get_schedule_common(cfg), base_lr, error);
    if (!t->sched)
        goto fail;
    if (options->resume_checkpoint &&
        !lmn_checkpoint_load_training(options->resume_checkpoint, t->model, t->opt, t->sched,
                                      &t->state,
                                      options->reset_optimizer, error))
        goto fail;

    gint64 batch = t->tc->batch_size;
    if (!lmn_model_prepare(t->model, batch, error))
        goto fail;
    gint64 n = lmn_dataset_get_length(t->train);
    t->order = g_new(guint32, n);
    gint64 x_numel = lmn_shape_numel(lmn_model_get_input_shape(t->model));
    gint64 y_numel = target.dtype == LMN_DTYPE_I32 ? 1 : lmn_shape_numel(&target.shape);
    t->x_host = g_new(float, batch * x_numel);
    t->y_host = g_malloc(batch * y_numel * 4);
    LmnShape one = lmn_shape_make(0);
    t->loss_acc = lmn_tensor_new(t->backend, LMN_DTYPE_F32, &one, error);
    t->correct_acc = t->loss_acc ? lmn_tensor_new(t->backend, LMN_DTYPE_F32, &one, error) : NULL;
    if (!t->correct_acc)
        goto fail;

    if (g_mkdir_with_parents(t->output_dir, 0755) != 0) {
        int e = errno;
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                    "cannot create the output directory %s: %s", t->output_dir, g_strerror(e));
        goto fail;
    }
    return t;
fail:
    lmn_trainer_free(t);
    return NULL;
}

LmnModel *lmn_trainer_get_model(LmnTrainer *trainer)
{
    return trainer->model;
}

const LmnTrainState *lmn_trainer_get_state(LmnTrainer *trainer)
{
    return &trainer->state;
}

void lmn_trainer_request_stop(LmnTrainer *trainer)
{
    g_atomic_int_set(&trainer->stop_requested, 1);
}

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
    if (!xd && !lmn_tensor_write(x, x_host, lmn_tensor_nbytes(x), error))
        return FALSE;
    if (!yd && !lmn_tensor_write(y, y_host, lmn_tensor_nbytes(y), error))
        return FALSE;
    return TRUE;
}

static gboolean read_scalar(LmnTensor *t, double *out, GError **error)
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
    g_autoptr(LmnTensor) loss_acc = lmn_tensor_new(b, LMN_DTYPE_F32, &one, error);
    if (!loss_acc)
        return FALSE;
    g_autoptr(LmnTensor) correct = lmn_tensor_new(b, LMN_DTYPE_F32, &one, error);
    if (!correct)
        return FALSE;
    lmn_op_fill(loss_acc, 0);
    lmn_op_fill(correct, 0);
    gint64 n = lmn_dataset_get_length(ds);
    gint64 x_numel = lmn_shape_numel(lmn_model_get_input_shape(model));
    const LmnTensorInfo *ti = lmn_model_get_target_info(model);
    gint64 y_numel = ti->dtype == LMN_DTYPE_I32 ? 1 : lmn_shape_numel(&ti->shape);
    g_autofree float *x_host = g_new(float, batch * x_numel);
    g_autofree void *y_host = g_malloc(batch * y_numel * 4);
    g_autofree guint32 *idx = g_new(guint32, batch);
    gboolean labels = ti->dtype == LMN_DTYPE_I32;
    /* Per-batch means are summed in double on the host: exact enough and order-independent. */
    double loss_sum = 0;
    for (gint64 start = 0; start < n; start += batch) {
        gint64 m = MIN(batch, n - start);
        for (gint64 i = 0; i < m; i++)
            idx[i] = (guint32) (start + i);
        if (!load_batch(model, ds, idx, m, x_host, y_host, error))
            return FALSE;
        lmn_model_forward(model, FALSE, 0, 0);
        double l;
        if (!read_scalar(lmn_model_get_loss(model), &l, error))
            return FALSE;
        loss_sum += l * (double) m;
        if (labels) {
            LmnTensor *y;
            lmn_model_set_batch(model, m, NULL, &y);
            lmn_op_count_correct(lmn_model_get_prediction(model), y, correct);
        }
    }
    double c = 0;
    if (!read_scalar(correct, &c, error))
        return FALSE;
    *loss_out = n ? loss_sum / (double) n : NAN;
    *accuracy_out = labels && n ? c / (double) n : NAN;
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

static gboolean save_checkpoint(LmnTrainer *t, const char *name, GError **error)
{
    g_autofree char *path = g_build_filename(t->output_dir, name, NULL);
    return lmn_checkpoint_save(path, t->config_text, t->model, t->opt, t->sched, &t->state,
                               error);
}

static FILE *open_metrics(LmnTrainer *t, GError **error)
{
    g_autofree char *path = g_build_filename(t->output_dir, "metrics.csv", NULL);
    gboolean append = t->opts.resume_checkpoint && g_file_test(path, G_FILE_TEST_EXISTS);
    FILE *f = fopen(path, append ? "a" : "w");
    if (!f) {
        int e = errno;
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED, "cannot write %s: %s", path,
                    g_strerror(e));
        return NULL;
    }
    if (!append)
        fprintf(f, "epoch,step,lr,train_loss,train_accuracy,val_loss,val_accuracy,seconds\n");
    return f;
}

static void csv_value(FILE *f, double v)
{
    if (isnan(v))
        fputs(",", f);
    else
        fprintf(f, ",%.6g", v);
}

gboolean lmn_trainer_run(LmnTrainer *t, GError **error)
{
    const LmnTrainConfig *tc = t->tc;
    gint64 n = lmn_dataset_get_length(t->train);
    gint64 batch = tc->batch_size;
    gint64 steps_per_epoch = (n + batch - 1) / batch;
    FILE *metrics = open_metrics(t, error);
    if (!metrics)
        return FALSE;
    gboolean ok = TRUE;
    gboolean stop = FALSE;
    if (!t->opts.quiet)
        printf("training %" G_GINT64_FORMAT " parameters on %s: %" G_GINT64_FORMAT
               " samples%s, batch %" G_GINT64_FORMAT ", optimizer %s\n",
               lmn_model_get_n_parameters(t->model), lmn_backend_describe(t->backend), n,
               t->val ? " (plus validation)" : "", batch, lmn_config_get_optimizer_type(t->cfg));

    while (ok && !stop && t->state.epoch < tc->epochs) {
        gint64 epoch = t->state.epoch;
        for (gint64 i = 0; i < n; i++)
            t->order[i] = (guint32) i;
        if (tc->shuffle) {
            LmnRandom r;
            lmn_random_init(&r, tc->seed, LMN_STREAM(LMN_STREAM_SHUFFLE, epoch));
            lmn_random_shuffle(&r, t->order, (gsize) n);
        }
        lmn_op_fill(t->loss_acc, 0);
        lmn_op_fill(t->correct_acc, 0);
        gint64 seen = 0;
        double lr = 0;
        gint64 t0 = g_get_monotonic_time();
        gint64 last_draw = 0;
        gboolean labels = lmn_model_get_target_info(t->model)->dtype == LMN_DTYPE_I32;

        /* A checkpoint taken mid-epoch (max_steps, an interrupt) resumes at the next batch of
         * the same permutation. */
        gint64 first = 0;
        gint64 done_in_epoch = t->state.step - epoch * steps_per_epoch;
        if (done_in_epoch > 0 && done_in_epoch < steps_per_epoch)
            first = done_in_epoch * batch;
        gboolean reached_end = TRUE;
        for (gint64 start = first; start < n; start += batch) {
            if (tc->max_steps > 0 && t->state.step >= tc->max_steps) {
                stop = TRUE;
                reached_end = FALSE;
                break;
            }
            if (g_atomic_int_get(&t->stop_requested)) {
                stop = TRUE;
                reached_end = FALSE;
                break;
            }
            gint64 m = MIN(batch, n - start);
            if (!load_batch(t->model, t->train, t->order + start, m, t->x_host, t->y_host,
                            error)) {
                ok = FALSE;
                break;
            }
            guint64 step = (guint64) t->state.step;
            lmn_model_forward(t->model, TRUE, step, tc->seed);
            lmn_model_backward(t->model, step, tc->seed);
            lr = lmn_schedule_get_lr(t->sched, t->state.step, epoch, steps_per_epoch);
            lmn_optimizer_step(t->opt, lr);
            t->state.step++;
            lmn_op_axpby((float) m, lmn_model_get_loss(t->model), 1.0f, t->loss_acc);
            if (labels) {
                LmnTensor *y;
                lmn_model_set_batch(t->model, m, NULL, &y);
                lmn_op_count_correct(lmn_model_get_prediction(t->model), y, t->correct_acc);
            }
            seen += m;
            if (t->opts.progress) {
                gint64 now = g_get_monotonic_time();
                if (now - last_draw > 100000 || start + m >= n) {
                    double l = 0;
                    if (!read_scalar(t->loss_acc, &l, error)) {
                        ok = FALSE;
                        break;
                    }
                    progress_line(t, epoch, start + m, n, l / (double) seen, seen,
                                  (double) (now - t0) / 1e6);
                    last_draw = now;
                }
            }
        }
        if (!ok)
            break;
        if (seen == 0)
            break;
        double loss_sum = 0, correct = 0;
        if (!read_scalar(t->loss_acc, &loss_sum, error) ||
            !read_scalar(t->correct_acc, &correct, error) ||
            !lmn_backend_synchronize(t->backend, error)) {
            ok = FALSE;
            break;
        }
        double secs = (double) (g_get_monotonic_time() - t0) / 1e6;
        double train_loss = loss_sum / (double) seen;
        double train_acc = labels ? correct / (double) seen : NAN;
        if (!isfinite(train_loss)) {
            g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_NON_FINITE,
                        "epoch %" G_GINT64_FORMAT ": the training loss is %g; stopped without "
                        "saving this epoch (checkpoints already in %s are kept). Lower the "
                        "learning rate or check the data for extreme values",
                        epoch + 1, train_loss, t->output_dir);
            ok = FALSE;
            break;
        }
        double val_loss = NAN, val_acc = NAN;
        if (t->val && !lmn_evaluate(t->model, t->val, batch, &val_loss, &val_acc, error)) {
            ok = FALSE;
            break;
        }
        if (t->val) {
            lmn_schedule_observe(t->sched, val_loss);
            if (isnan(t->state.best_metric) || val_loss < t->state.best_metric) {
                t->state.best_metric = val_loss;
                t->state.best_epoch = epoch + 1;
            }
        }
        gboolean epoch_done = reached_end;
        if (epoch_done)
            t->state.epoch++;
        fprintf(metrics, "%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT, epoch + 1, t->state.step);
        csv_value(metrics, lr);
        csv_value(metrics, train_loss);
        csv_value(metrics, train_acc);
        csv_value(metrics, val_loss);
        csv_value(metrics, val_acc);
        csv_value(metrics, secs);
        fputc('\n', metrics);
        fflush(metrics);
        if (!t->opts.quiet) {
            if (t->opts.progress)
                printf("\r\033[K");
            printf("epoch %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT "  loss %.4f", epoch + 1,
                   tc->epochs, train_loss);
            if (labels)
                printf("  acc %.2f%%", 100 * train_acc);
            if (t->val) {
                printf("  val_loss %.4f", val_loss);
                if (labels)
                    printf("  val_acc %.2f%%", 100 * val_acc);
            }
            printf("  lr %.4g  %.0f samples/s  %.1fs\n", lr, (double) seen / secs, secs);
            fflush(stdout);
        }
        if (epoch_done && tc->checkpoint_every > 0 &&
            t->state.epoch % tc->checkpoint_every == 0) {
            g_autofree char *name = g_strdup_printf("epoch-%" G_GINT64_FORMAT ".h5",
                                                    t->state.epoch);
            if (!save_checkpoint(t, name, error)) {
                ok = FALSE;
                break;
            }
        }
    }
    fclose(metrics);
    if (!ok)
        return FALSE;
    if (g_atomic_int_get(&t->stop_requested)) {
        if (!save_checkpoint(t, "interrupted.h5", error))
            return FALSE;
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_INTERRUPTED,
                    "interrupted at step %" G_GINT64_FORMAT "; state saved to %s/interrupted.h5 "
                    "(continue with --resume)",
                    t->state.step, t->output_dir);
        return FALSE;
    }
    if (!save_checkpoint(t, "final.h5", error))
        return FALSE;
    if (t->test) {
        double tl, ta;
        if (!lmn_evaluate(t->model, t->test, batch, &tl, &ta, error))
            return FALSE;
        if (!t->opts.quiet) {
            printf("test  loss %.4f", tl);
            if (!isnan(ta))
                printf("  acc %.2f%%", 100 * ta);
            printf("  (%s)\n", lmn_dataset_get_spec(t->test));
        }
    }
    if (!t->opts.quiet)
        printf("saved %s/final.h5\n", t->output_dir);
    return TRUE;
}
