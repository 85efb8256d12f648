/* Lamina — the trainer: backend selection, building a run (data, model, optimizer, schedule,
 * resumed state, batches) and its lifetime.  The loop is in loop.c, gradient processing in
 * gradients.c, the output directory and its files in output.c, evaluation in evaluate.c. */
#include "trainer-private.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* GPU backends `auto` tries, in order, before falling back to the CPU. */
static const char *const auto_backends[] = {"vulkan", NULL};

/* The cpu backend, on @threads threads when > 0. */
static LmnBackend *open_cpu(LmnRegistry *registry, const char *device, gint64 threads,
                            GError **error)
{
    if (threads <= 0)
        return lmn_backend_new(registry, "cpu", NULL, device, error);
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_BACKEND, "cpu", error);
    if (f == NULL)
        return NULL;
    g_autofree char *text = g_strdup_printf("%" G_GINT64_FORMAT, threads);
    const char *keys[] = {"threads", NULL}, *values[] = {text, NULL};
    g_autoptr(LmnParams) params =
        lmn_registry_validate_params(f, keys, values, "[train] threads", error);
    return params != NULL ? lmn_backend_new(registry, "cpu", params, device, error) : NULL;
}

LmnBackend *lmn_backend_new_for_config_threads(LmnRegistry *registry, const char *name,
                                               const char *device, gint64 threads, GError **error)
{
    if (!name || !*name || g_str_equal(name, "auto")) {
        for (guint i = 0; auto_backends[i]; i++) {
            g_autoptr(GError) local = NULL;
            LmnBackend *b = lmn_backend_new(registry, auto_backends[i], NULL, device, &local);
            if (b)
                return b;
            /* One short line for the common cases; the full reason when something is broken. */
            if (g_error_matches(local, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_NOT_FOUND))
                g_printerr("notice: backend auto: no %s backend installed; using the cpu "
                           "backend\n",
                           auto_backends[i]);
            else if (g_error_matches(local, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_NO_DEVICE))
                g_printerr("notice: backend auto: no GPU found by %s; using the cpu backend "
                           "(`lamina devices` lists the devices)\n",
                           auto_backends[i]);
            else
                g_printerr("notice: backend auto: %s unavailable (%s); using the cpu backend\n",
                           auto_backends[i], local->message);
        }
        return open_cpu(registry, NULL, threads, error);
    }
    if (g_str_equal(name, "cpu"))
        return open_cpu(registry, device, threads, error);
    return lmn_backend_new(registry, name, NULL, device, error);
}

LmnBackend *lmn_backend_new_for_config(LmnRegistry *registry, const char *name, const char *device,
                                       GError **error)
{
    return lmn_backend_new_for_config_threads(registry, name, device, 0, error);
}

void lmn_trainer_free(LmnTrainer *t)
{
    if (!t)
        return;
    if (t->metrics)
        fclose(t->metrics);
    /* Closing releases the flock; the file stays, as another run may already have it open. */
    if (t->lock_fd >= 0)
        close(t->lock_fd);
    if (t->slots)
        g_array_unref(t->slots);
    g_clear_pointer(&t->scratch, lmn_tensor_unref);
    g_clear_pointer(&t->penalty, lmn_tensor_unref);
    g_clear_pointer(&t->norm_sq, lmn_tensor_unref);
    g_clear_pointer(&t->grad_sq, lmn_tensor_unref);
    g_clear_pointer(&t->best_params, lmn_tensor_unref);
    g_clear_pointer(&t->best_buffers, lmn_tensor_unref);
    lmn_train_free_data_parallel(t);
    lmn_train_free_adversarial(t);
    lmn_train_free_regularisers(t);
    lmn_train_state_clear_init(&t->state);
    lmn_schedule_free(t->sched);
    lmn_optimizer_free(t->opt);
    g_clear_pointer(&t->loss_acc, lmn_tensor_unref);
    g_clear_pointer(&t->correct_acc, lmn_tensor_unref);
    lmn_train_clear_losses(t);
    lmn_model_free(t->model);
    if (t->backend)
        lmn_backend_unref(t->backend);
    /* The reader borrows the training split (and its prefetch thread reads it). */
    g_clear_pointer(&t->reader, lmn_batch_reader_free);
    lmn_dataset_free(t->train);
    lmn_dataset_free(t->val);
    lmn_dataset_free(t->test);
    g_free(t->x_host);
    g_free(t->y_host);
    g_free(t->idx_host);
    g_free(t->output_dir);
    g_free(t->config_text);
    g_free(t);
}

static gboolean open_data(LmnTrainer *t, GError **error)
{
    /* Only the training split gets the configured budget: it is the one read every epoch, and
     * a split too large for it streams through the batch reader's shuffle buffer. */
    double budget = t->tc->memory_budget_mb > 0 ? t->tc->memory_budget_mb : -1;
    /* Every split holds the targets the losses read ([layer] target), y always. */
    g_auto(GStrv) targets = lmn_train_target_names(t->cfg);
    const char *const *names = (const char *const *) targets;
    t->train = lmn_dataset_open_with_targets(t->tc->train_data, names, budget, error);
    if (!t->train)
        return FALSE;
    if (t->tc->validation_data) {
        t->val = lmn_dataset_open_with_targets(t->tc->validation_data, names, -1, error);
        if (!t->val)
            return FALSE;
    } else if (t->tc->validation_split > 0) {
        t->val = lmn_dataset_split(t->train, t->tc->validation_split, t->tc->seed, error);
        if (!t->val)
            return FALSE;
    }
    if (t->tc->test_data) {
        t->test = lmn_dataset_open_with_targets(t->tc->test_data, names, -1, error);
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
                                   lmn_model_get_n_classes(t->model), error) &&
           lmn_model_check_targets(t->model, ds, error);
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

/* With early stopping and restore_best, the best epoch's weights are kept on the backend. */
static gboolean setup_best_weights(LmnTrainer *t, GError **error)
{
    const LmnTrainConfig *tc = t->tc;
    if (!(tc->early_stopping_patience > 0 && tc->restore_best && t->val))
        return TRUE;
    LmnTensor *flat = lmn_model_get_params(t->model);
    t->best_params = lmn_tensor_new(t->backend, LMN_DTYPE_F32, &flat->shape, error);
    if (!t->best_params)
        return FALSE;
    lmn_op_fill(t->best_params, 0.0f);
    gint64 n_buf = 0;
    for (guint i = 0; i < lmn_model_get_n_layers(t->model); i++) {
        LmnLayer *l = lmn_model_get_layer(t->model, i);
        for (guint b = 0; b < lmn_layer_get_n_buffers(l); b++)
            n_buf += lmn_tensor_numel(lmn_layer_get_buffer(l, b));
    }
    if (n_buf > 0) {
        LmnShape s = lmn_shape_make(1, n_buf);
        t->best_buffers = lmn_tensor_new(t->backend, LMN_DTYPE_F32, &s, error);
        if (!t->best_buffers)
            return FALSE;
    }
    t->state.best_params = t->best_params;
    t->state.best_buffers = t->best_buffers;
    return TRUE;
}

/* How weights and state are loaded: NaN or infinities are refused unless --allow-nonfinite. */
static LmnCheckpointLoadFlags load_flags(const LmnTrainer *t)
{
    return t->opts.allow_nonfinite ? LMN_CHECKPOINT_LOAD_DEFAULT
                                   : LMN_CHECKPOINT_LOAD_REQUIRE_FINITE;
}

static gboolean resume(LmnTrainer *t, GError **error)
{
    const char *path = t->opts.resume_checkpoint;
    if (!lmn_checkpoint_load_training(path, t->model, t->opt, t->sched, &t->state,
                                      t->opts.reset_optimizer, load_flags(t), error))
        return FALSE;
    /* A finished run "resumed" would train nothing and silently rewrite final.h5. */
    const char *config = lmn_config_get_name(t->cfg);
    if (t->state.epoch >= t->tc->epochs) {
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FINISHED,
                    "%s: the run already finished: it trained %" G_GINT64_FORMAT
                    " epochs and %s [train] epochs is %" G_GINT64_FORMAT
                    ", so nothing is left to train. Raise epochs (--epochs %" G_GINT64_FORMAT
                    " or more) to train further, or start a new run without --resume",
                    path, t->state.epoch, config, t->tc->epochs, t->state.epoch + 1);
        return FALSE;
    }
    if (t->tc->max_steps > 0 && t->state.step >= t->tc->max_steps) {
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FINISHED,
                    "%s: the run already took %" G_GINT64_FORMAT " steps and %s [train] "
                    "max_steps is %" G_GINT64_FORMAT
                    ", so nothing is left to train. Raise max_steps (--max-steps %" G_GINT64_FORMAT
                    " or more, or 0 for no limit) to train further",
                    path, t->state.step, config, t->tc->max_steps, t->state.step + 1);
        return FALSE;
    }
    /* Data order, dropout masks and gradient noise are streams of the seed: another seed would
     * not continue the same run. */
    if (t->state.seed != t->tc->seed) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s [train] seed: %" G_GUINT64_FORMAT " differs from the seed %"
                    G_GUINT64_FORMAT " that %s was trained with; a resumed run must keep its "
                    "seed (data order and random streams depend on it)",
                    lmn_config_get_name(t->cfg), t->tc->seed, t->state.seed, path);
        return FALSE;
    }
    if (t->state.monitor != t->tc->monitor) {
        g_printerr("notice: %s tracked %s; the best value so far is forgotten and %s is "
                   "tracked from now on\n",
                   path, lmn_train_monitor_name(t->state.monitor),
                   lmn_train_monitor_name(t->tc->monitor));
        t->state.monitor = t->tc->monitor;
        t->state.best_metric = NAN;
        t->state.best_epoch = -1;
        t->state.wait = 0;
        t->state.has_best_weights = FALSE;
    }
    if (t->best_params && t->state.best_epoch >= 0 && !t->state.has_best_weights) {
        /* Without the old best weights nothing could be restored: start the comparison over. */
        g_printerr("notice: %s holds no copy of the best epoch's weights (early stopping or "
                   "restore_best was off); the best epoch is tracked again from here\n",
                   path);
        t->state.best_metric = NAN;
        t->state.best_epoch = -1;
        t->state.wait = 0;
    }
    t->state.stopped_early = FALSE;
    return TRUE;
}

/* One line per tensor that --init-partial left to its initializer, naming why. */
static void print_skipped(const char *path, const LmnCheckpointSkipped *s, LmnLayer *l)
{
    g_autofree char *reason = NULL;
    if (s->reason == LMN_CHECKPOINT_SKIP_MISSING) {
        reason = g_strdup_printf("missing in %s", path);
    } else {
        g_autofree char *have = lmn_shape_to_string(&s->file_shape);
        g_autofree char *want = lmn_shape_to_string(&s->shape);
        reason = g_strdup_printf("shape %s in %s vs %s in this model", have, path, want);
    }
    if (s->is_buffer)
        g_printerr("init: %s.%s not loaded (%s); kept its initial value\n", s->layer, s->name,
                   reason);
    else
        g_printerr("init: %s.%s not loaded (%s); kept its %s initialisation\n", s->layer, s->name,
                   reason, lmn_layer_get_param_init_name(l, s->index));
}

/* Loads --init's weights into the freshly initialised model and keeps the record of it that
 * every checkpoint of the run carries. */
static gboolean load_init(LmnTrainer *t, GError **error)
{
    const char *path = t->opts.init_checkpoint;
    guint n_tensors = 0;
    for (guint i = 0; i < lmn_model_get_n_layers(t->model); i++) {
        LmnLayer *l = lmn_model_get_layer(t->model, i);
        n_tensors += lmn_layer_get_n_params(l) + lmn_layer_get_n_buffers(l);
    }
    g_autoptr(GString) names = g_string_new(NULL);
    guint n_loaded = n_tensors, n_skipped = 0;
    if (!t->opts.init_partial) {
        GError *local = NULL;
        if (!lmn_checkpoint_load_weights_full(path, t->model, load_flags(t), &local)) {
            /* A mismatch under --init is most often a new head: say how to keep it. */
            if (g_error_matches(local, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_MISMATCH)) {
                char *m = g_strdup_printf("%s; to load only the tensors that fit and keep the "
                                          "others' initialisation, add --init-partial",
                                          local->message);
                g_free(local->message);
                local->message = m;
            }
            g_propagate_error(error, local);
            return FALSE;
        }
    } else {
        g_autoptr(LmnCheckpointLoadReport) report = NULL;
        if (!lmn_checkpoint_load_weights_partial(path, t->model, load_flags(t), &report, error))
            return FALSE;
        n_loaded = report->n_loaded;
        n_skipped = report->skipped->len;
        for (guint i = 0; i < report->skipped->len; i++) {
            const LmnCheckpointSkipped *s = g_ptr_array_index(report->skipped, i);
            print_skipped(path, s, lmn_model_get_layer(t->model, s->layer_index));
            g_string_append_printf(names, "%s%s.%s", i ? ", " : "", s->layer, s->name);
        }
        if (n_skipped > 0)
            g_printerr("init: loaded %u of %u tensors from %s\n", n_loaded, n_tensors, path);
    }
    t->state.init_from = g_strdup(path);
    t->state.init_partial = t->opts.init_partial;
    t->state.init_loaded = n_loaded;
    t->state.init_skipped = n_skipped;
    t->state.init_skipped_names = g_string_free(g_steal_pointer(&names), FALSE);
    return TRUE;
}

/* The data, the backend and the model with its initial weights (from a file with --init or
 * --resume), checked against each other. */
static gboolean build_model(LmnTrainer *t, LmnTensorInfo *target, GError **error)
{
    if (!open_data(t, error))
        return FALSE;
    t->backend = lmn_backend_new_for_config_threads(t->registry, t->tc->backend, t->tc->device,
                                                    t->tc->threads, error);
    if (!t->backend)
        return FALSE;
    *target = target_info_of(t->train);
    t->model = lmn_config_get_n_targets(t->cfg) > 1
                   ? lmn_model_new_for_dataset(t->cfg, t->registry, t->backend, t->train, error)
                   : lmn_model_new(t->cfg, t->registry, t->backend, target, error);
    if (!t->model)
        return FALSE;
    if (!check_data(t, t->train, error) || !check_data(t, t->val, error) ||
        !check_data(t, t->test, error))
        return FALSE;
    if (t->tc->monitor == LMN_MONITOR_VAL_ACCURACY && target->dtype != LMN_DTYPE_I32) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s [train] monitor: val_accuracy needs class labels, but %s has float "
                    "targets; use monitor = val_loss",
                    lmn_config_get_name(t->cfg), t->tc->train_data);
        return FALSE;
    }
    if (!lmn_model_init_params(t->model, t->tc->seed, error))
        return FALSE;
    /* A resumed run takes its weights (and its --init record) from the checkpoint. */
    if (t->opts.resume_checkpoint)
        return lmn_checkpoint_load_weights_full(t->opts.resume_checkpoint, t->model, load_flags(t),
                                                error);
    return !t->opts.init_checkpoint || load_init(t, error);
}

/* The optimizer and the schedule, the best-weights copy, the state of a resumed run, and the
 * gradient processing between backward and the update. */
static gboolean build_update(LmnTrainer *t, GError **error)
{
    LmnConfig *cfg = t->cfg;
    /* The same call a custom loop makes, so both apply [layer] trainable and lr_mult alike. */
    t->opt = lmn_optimizer_new_for_model(t->registry, NULL, NULL, t->model, cfg, error);
    if (!t->opt)
        return FALSE;
    double base_lr = lmn_params_get_float(lmn_config_get_optimizer_params(cfg), "lr");
    t->sched = lmn_schedule_new(t->registry, lmn_config_get_schedule_type(cfg),
                                lmn_config_get_schedule_params(cfg),
                                lmn_config_get_schedule_common(cfg), base_lr, error);
    if (!t->sched)
        return FALSE;
    /* Schedules spanning the whole run (cosine's t_max, one_cycle's total) default to it. */
    gint64 n = lmn_dataset_get_length(t->train), batch = t->tc->batch_size;
    lmn_schedule_set_run_length(t->sched, t->tc->epochs, (n + batch - 1) / batch,
                                t->tc->max_steps);
    if (!setup_best_weights(t, error) || !lmn_train_setup_ema(t, error))
        return FALSE;
    if (t->opts.resume_checkpoint && !resume(t, error))
        return FALSE;
    return lmn_train_setup_gradients(t, error) && lmn_train_setup_regularisers(t, error);
}

/* The model's activations for a batch, LSUV on a fresh initialisation, the host staging buffers,
 * the batch reader and the device-side accumulators of the loss and the correct count. */
static gboolean prepare_batches(LmnTrainer *t, const LmnTensorInfo *target, GError **error)
{
    gint64 batch = t->tc->batch_size;
    if (!lmn_train_setup_adversarial(t, error) || !lmn_model_prepare(t->model, batch, error))
        return FALSE;
    /* LSUV refines a fresh initialisation; weights loaded from a file are kept as they are.  Its
     * batch is at most a training batch, so it allocates no larger activations. */
    gboolean fresh = !t->opts.resume_checkpoint && !t->opts.init_checkpoint;
    if (t->tc->lsuv && fresh &&
        !lmn_model_lsuv(t->model, t->train, batch, t->tc->lsuv_tol, (gint) t->tc->lsuv_max_iter,
                        t->tc->seed, error))
        return FALSE;
    gint64 x_numel = lmn_shape_numel(lmn_model_get_input_shape(t->model));
    gint64 y_numel = target->dtype == LMN_DTYPE_I32 ? 1 : lmn_shape_numel(&target->shape);
    t->x_host = g_new(float, batch * x_numel);
    t->y_host = g_malloc(batch * y_numel * 4);
    t->idx_host = g_new(guint32, batch);
    /* Evaluation never augments: only the training batches go through [augment]. */
    const LmnAugmentConfig *aug = lmn_config_get_augment(t->cfg);
    LmnBatchReaderOptions ro = {
        .batch_size = batch,
        .seed = t->tc->seed,
        .shuffle = t->tc->shuffle,
        .augment = lmn_augment_config_is_enabled(aug) ? aug : NULL,
        .prefetch = TRUE,
        /* each rank takes its slice of every batch: only that part is read from the file */
        .slice_rank = t->rank,
        .slice_count = t->n_ranks,
    };
    t->reader = lmn_batch_reader_new(t->train, &ro, error);
    if (!t->reader)
        return FALSE;
    LmnShape one = lmn_shape_make(0);
    t->loss_acc = lmn_tensor_new(t->backend, LMN_DTYPE_F32, &one, error);
    t->correct_acc = t->loss_acc ? lmn_tensor_new(t->backend, LMN_DTYPE_F32, &one, error) : NULL;
    lmn_train_setup_segmentation(t);
    return t->correct_acc != NULL && lmn_train_setup_losses(t, error) &&
           lmn_train_check_top_k(t, error);
}

/* The training batch must fit in the training split: a larger one is a typo or the wrong data,
 * and would otherwise size the activations (and the allocation) for samples that do not exist. */
static gboolean check_batch_size(LmnTrainer *t, GError **error)
{
    gint64 n = lmn_dataset_get_length(t->train);
    if (t->tc->batch_size <= n)
        return TRUE;
    g_autofree char *where = lmn_config_dup_where(t->cfg, "train", "batch_size");
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                "%s batch_size: %" G_GINT64_FORMAT
                " is larger than the training set (%" G_GINT64_FORMAT
                " samples in %s%s); use a batch_size of at most %" G_GINT64_FORMAT,
                where, t->tc->batch_size, n, t->tc->train_data,
                t->tc->validation_split > 0 ? " after the validation split" : "", n);
    return FALSE;
}

LmnTrainer *lmn_trainer_new(LmnConfig *cfg, LmnRegistry *registry, const LmnTrainerOptions *options,
                            GError **error)
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
    t->state.monitor = t->tc->monitor;
    t->lock_fd = -1;
    t->comm = options->comm;
    t->rank = t->comm ? lmn_comm_get_rank(t->comm) : 0;
    t->n_ranks = t->comm ? lmn_comm_get_size(t->comm) : 1;

    LmnTensorInfo target;
    if (!build_model(t, &target, error) || !build_update(t, error) || !check_batch_size(t, error) ||
        !prepare_batches(t, &target, error) || !lmn_train_setup_data_parallel(t, error) ||
        !lmn_train_setup_output(t, error))
        goto fail;
    return t;
fail:
    lmn_trainer_free(t);
    return NULL;
}

LmnModel *lmn_trainer_get_model(LmnTrainer *trainer)
{
    return trainer->model;
}

LmnOptimizer *lmn_trainer_get_optimizer(LmnTrainer *trainer)
{
    return trainer->opt;
}

const LmnTrainState *lmn_trainer_get_state(LmnTrainer *trainer)
{
    return &trainer->state;
}

void lmn_trainer_request_stop(LmnTrainer *trainer)
{
    g_atomic_int_set(&trainer->stop_requested, 1);
}
