/* Lamina — the training loop, evaluation and backend selection. */
#include <lamina/lamina.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/file.h>
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
    LmnBatchReader *reader; /* the training batches: order, augmentation, prefetch */
    float *x_host;
    void *y_host;
    guint32 *idx_host; /* the dataset indices of the batch, for messages */
    LmnTensor *loss_acc;
    LmnTensor *correct_acc;
    gint stop_requested;
    /* Gradient processing (see LmnTrainConfig): one entry per parameter, in model order. */
    GArray *slots;       /* ParamSlot */
    LmnTensor *scratch;  /* flat like the parameters: noise, sign(w); NULL when unused */
    LmnTensor *penalty;  /* one f32: this step's penalty, added to the reported loss */
    LmnTensor *norm_sq;  /* one f32: the squared global gradient norm (clip_norm) */
    /* One f32 for the gradient guard without clip_norm: this step's squared global norm on a
     * backend with host memory, the run's sum of them on a device (read once per epoch). */
    LmnTensor *grad_sq;
    gboolean has_penalty;
    /* Early stopping with restore_best: the best epoch's weights, on the backend. */
    LmnTensor *best_params;
    LmnTensor *best_buffers;
    FILE *metrics;
    int lock_fd; /* OUTPUT/.lock, flock()ed for the trainer's life; -1 when not taken */
};

/* A parameter as the training loop's gradient processing sees it.  The tensors are views into
 * the model's flat tensors (and the scratch), so only real elements are touched: the padding
 * between parameters keeps a zero gradient, which keeps clip_norm's norm exact. */
typedef struct {
    LmnTensor *w;       /* borrowed from the layer */
    LmnTensor *g;       /* borrowed from the layer */
    LmnTensor *scratch; /* owned view of the scratch at the parameter's offset, or NULL */
    float l1, l2;
} ParamSlot;

static void param_slot_clear(gpointer p)
{
    ParamSlot *ps = p;
    g_clear_pointer(&ps->scratch, lmn_tensor_unref);
}

static const char *monitor_name(LmnMonitor m)
{
    return m == LMN_MONITOR_VAL_ACCURACY ? "val_accuracy" : "val_loss";
}

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
        return lmn_backend_new(registry, "cpu", NULL, NULL, error);
    }
    return lmn_backend_new(registry, name, NULL, device, error);
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
    lmn_schedule_free(t->sched);
    lmn_optimizer_free(t->opt);
    g_clear_pointer(&t->loss_acc, lmn_tensor_unref);
    g_clear_pointer(&t->correct_acc, lmn_tensor_unref);
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
    t->train = lmn_dataset_open_with_budget(t->tc->train_data, budget, error);
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
                   path, monitor_name(t->state.monitor), monitor_name(t->tc->monitor));
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

/* Per-parameter views and scratch for penalties and noise. */
static gboolean setup_gradient_processing(LmnTrainer *t, GError **error)
{
    const LmnTrainConfig *tc = t->tc;
    LmnTensor *flat = lmn_model_get_params(t->model);
    gboolean need_scratch = tc->grad_noise > 0;
    t->slots = g_array_new(FALSE, TRUE, sizeof(ParamSlot));
    g_array_set_clear_func(t->slots, param_slot_clear);
    for (guint i = 0; i < lmn_model_get_n_layers(t->model); i++) {
        LmnLayer *l = lmn_model_get_layer(t->model, i);
        const LmnLayerConfig *lc = lmn_config_get_layer(t->cfg, i);
        for (guint p = 0; p < lmn_layer_get_n_params(l); p++) {
            gboolean penalize =
                lmn_layer_get_param_role(l, p) == LMN_PARAM_ROLE_WEIGHT || tc->penalize_bias;
            ParamSlot ps = {
                .w = lmn_layer_get_param(l, p),
                .g = lmn_layer_get_grad(l, p),
                .l1 = penalize ? (float) lc->l1 : 0.0f,
                .l2 = penalize ? (float) lc->l2 : 0.0f,
            };
            need_scratch = need_scratch || ps.l1 > 0;
            t->has_penalty = t->has_penalty || ps.l1 > 0 || ps.l2 > 0;
            g_array_append_val(t->slots, ps);
        }
    }
    LmnShape one = lmn_shape_make(0);
    if (need_scratch) {
        t->scratch = lmn_tensor_new(t->backend, LMN_DTYPE_F32, &flat->shape, error);
        if (!t->scratch)
            return FALSE;
        for (guint i = 0; i < t->slots->len; i++) {
            ParamSlot *ps = &g_array_index(t->slots, ParamSlot, i);
            gint64 off = (gint64) ((ps->w->offset - flat->offset) / sizeof(float));
            ps->scratch = lmn_tensor_new_view(t->scratch, off, &ps->w->shape);
        }
    }
    if (t->has_penalty) {
        t->penalty = lmn_tensor_new(t->backend, LMN_DTYPE_F32, &one, error);
        if (!t->penalty)
            return FALSE;
    }
    if (tc->clip_norm > 0) {
        t->norm_sq = lmn_tensor_new(t->backend, LMN_DTYPE_F32, &one, error);
        if (!t->norm_sq)
            return FALSE;
    }
    return TRUE;
}

/* The data, the backend and the model with its initial weights (from a file with --init or
 * --resume), checked against each other. */
static gboolean build_model(LmnTrainer *t, LmnTensorInfo *target, GError **error)
{
    if (!open_data(t, error))
        return FALSE;
    t->backend = lmn_backend_new_for_config(t->registry, t->tc->backend, t->tc->device, error);
    if (!t->backend)
        return FALSE;
    *target = target_info_of(t->train);
    t->model = lmn_model_new(t->cfg, t->registry, t->backend, target, error);
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
    const char *weights =
        t->opts.resume_checkpoint ? t->opts.resume_checkpoint : t->opts.init_checkpoint;
    return !weights || lmn_checkpoint_load_weights_full(weights, t->model, load_flags(t), error);
}

/* The optimizer and the schedule, the best-weights copy, the state of a resumed run, and the
 * gradient processing between backward and the update. */
static gboolean build_update(LmnTrainer *t, GError **error)
{
    LmnConfig *cfg = t->cfg;
    t->opt = lmn_optimizer_new(t->registry, lmn_config_get_optimizer_type(cfg),
                               lmn_config_get_optimizer_params(cfg), lmn_model_get_params(t->model),
                               lmn_model_get_grads(t->model), error);
    if (!t->opt)
        return FALSE;
    double base_lr = lmn_params_get_float(lmn_config_get_optimizer_params(cfg), "lr");
    t->sched = lmn_schedule_new(t->registry, lmn_config_get_schedule_type(cfg),
                                lmn_config_get_schedule_params(cfg),
                                lmn_config_get_schedule_common(cfg), base_lr, error);
    if (!t->sched)
        return FALSE;
    if (!setup_best_weights(t, error))
        return FALSE;
    if (t->opts.resume_checkpoint && !resume(t, error))
        return FALSE;
    return setup_gradient_processing(t, error);
}

/* The model's activations for a batch, LSUV on a fresh initialisation, the host staging buffers,
 * the batch reader and the device-side accumulators of the loss and the correct count. */
static gboolean prepare_batches(LmnTrainer *t, const LmnTensorInfo *target, GError **error)
{
    gint64 batch = t->tc->batch_size;
    if (!lmn_model_prepare(t->model, batch, error))
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
    };
    t->reader = lmn_batch_reader_new(t->train, &ro, error);
    if (!t->reader)
        return FALSE;
    LmnShape one = lmn_shape_make(0);
    t->loss_acc = lmn_tensor_new(t->backend, LMN_DTYPE_F32, &one, error);
    t->correct_acc = t->loss_acc ? lmn_tensor_new(t->backend, LMN_DTYPE_F32, &one, error) : NULL;
    return t->correct_acc != NULL;
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

/* Takes OUTPUT/.lock with flock(), so that a second run into the same directory fails at once
 * instead of interleaving its checkpoints and metrics with the first's; the file holds the
 * holder's pid for the message. */
static gboolean lock_output(LmnTrainer *t, GError **error)
{
    g_autofree char *path = g_build_filename(t->output_dir, ".lock", NULL);
    int fd = g_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                    "cannot write in the output directory %s (creating %s: %s); choose a writable "
                    "--output",
                    t->output_dir, path, g_strerror(e));
        return FALSE;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t got = e == EWOULDBLOCK ? pread(fd, pid, sizeof pid - 1, 0) : -1;
        pid[got > 0 ? got : 0] = '\0';
        g_strstrip(pid);
        close(fd);
        if (e == EWOULDBLOCK)
            g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                        "the output directory %s is in use by another `lamina train` (pid %s); "
                        "wait for it to finish or choose another --output",
                        t->output_dir, *pid ? pid : "unknown");
        else
            g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                        "cannot lock %s: %s; choose another --output", path, g_strerror(e));
        return FALSE;
    }
    t->lock_fd = fd;
    g_autofree char *text = g_strdup_printf("%ld\n", (long) getpid());
    gsize len = strlen(text);
    if (ftruncate(fd, 0) < 0 || pwrite(fd, text, len, 0) != (ssize_t) len) {
        int e = errno;
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                    "cannot write in the output directory %s (writing %s: %s); free space there "
                    "or choose another --output",
                    t->output_dir, path, g_strerror(e));
        return FALSE;
    }
    return TRUE;
}

/* A temporary file of lmn_h5_atomic_file_new(), ".NAME.h5.XXXXXX.tmp": with the lock held, one in
 * the output directory is left from a run that was killed while it wrote a checkpoint. */
static gboolean is_stale_temp(const char *name)
{
    gsize len = strlen(name);
    if (name[0] != '.' || len < strlen(".x.h5.XXXXXX.tmp") || !g_str_has_suffix(name, ".tmp"))
        return FALSE;
    const char *suffix = name + len - strlen(".XXXXXX.tmp");
    if (suffix[0] != '.')
        return FALSE;
    for (int i = 1; i <= 6; i++)
        if (!g_ascii_isalnum(suffix[i]))
            return FALSE;
    return suffix - name > 4 && strncmp(suffix - 3, ".h5", 3) == 0;
}

static void remove_stale_temps(LmnTrainer *t)
{
    g_autoptr(GDir) dir = g_dir_open(t->output_dir, 0, NULL);
    g_autoptr(GString) removed = g_string_new(NULL);
    guint n = 0;
    for (const char *name; dir && (name = g_dir_read_name(dir));) {
        if (!is_stale_temp(name))
            continue;
        g_autofree char *path = g_build_filename(t->output_dir, name, NULL);
        if (g_unlink(path) == 0) {
            g_string_append_printf(removed, "%s%s", n ? ", " : "", name);
            n++;
        }
    }
    if (n > 0)
        g_printerr("notice: removed %u temporary file%s left in %s by a run that was stopped "
                   "while writing: %s\n",
                   n, n == 1 ? "" : "s", t->output_dir, removed->str);
}

/* The output directory: created, locked against a second run, cleared of a killed run's
 * temporary files, and shown to be writable before the first epoch rather than after it. */
static gboolean setup_output(LmnTrainer *t, GError **error)
{
    if (g_mkdir_with_parents(t->output_dir, 0755) != 0) {
        int e = errno;
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                    "cannot create the output directory %s: %s", t->output_dir, g_strerror(e));
        return FALSE;
    }
    if (!lock_output(t, error))
        return FALSE;
    remove_stale_temps(t);
    /* The lock file may exist from an earlier run, so a new file shows that one can be made. */
    g_autofree char *probe = g_build_filename(t->output_dir, ".write-test.XXXXXX", NULL);
    int fd = g_mkstemp_full(probe, O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, "x", 1) != 1) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
            g_unlink(probe);
        }
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                    "cannot write in the output directory %s: %s; choose a writable --output or "
                    "free space there",
                    t->output_dir, g_strerror(e));
        return FALSE;
    }
    close(fd);
    g_unlink(probe);
    return TRUE;
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

    LmnTensorInfo target;
    if (!build_model(t, &target, error) || !build_update(t, error) || !check_batch_size(t, error) ||
        !prepare_batches(t, &target, error) || !setup_output(t, error))
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

/* Fills the model's input and target tensors with the reader's next batch, leaving out its first
 * @skip samples; @m is the number of samples expected after them.  The batch goes straight
 * into backend memory when that is host memory and nothing is skipped. */
static gboolean next_batch(LmnTrainer *t, gint64 m, gint64 skip, GError **error)
{
    LmnTensor *x, *y;
    lmn_model_set_batch(t->model, m, &x, &y);
    float *xd = skip == 0 ? lmn_backend_host_pointer(x) : NULL;
    void *yd = skip == 0 ? lmn_backend_host_pointer(y) : NULL;
    gint64 got = lmn_batch_reader_next(t->reader, xd ? xd : t->x_host, yd ? yd : t->y_host,
                                       t->idx_host, error);
    if (got < 0)
        return FALSE;
    if (got != skip + m) {
        /* The loop and the reader count the same epoch: a mismatch is a bug, not bad data. */
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                    "%s: the batch reader delivered %" G_GINT64_FORMAT " samples where %"
                    G_GINT64_FORMAT " were expected",
                    lmn_dataset_get_spec(t->train), got, skip + m);
        return FALSE;
    }
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
    g_autofree float *x_host = g_new(float, batch * x_numel);
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

/* Opened at the first row, so a run that fails before finishing anything leaves an earlier
 * run's metrics.csv in the output directory as it was. */
static FILE *open_metrics(LmnTrainer *t, GError **error)
{
    if (t->metrics)
        return t->metrics;
    g_autofree char *path = g_build_filename(t->output_dir, "metrics.csv", NULL);
    gboolean append = t->opts.resume_checkpoint && g_file_test(path, G_FILE_TEST_EXISTS);
    FILE *f = fopen(path, append ? "a" : "w");
    if (!f) {
        int e = errno;
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED, "cannot write %s: %s", path,
                    g_strerror(e));
        return NULL;
    }
    t->metrics = f;
    if (!append &&
        fputs("epoch,step,lr,train_loss,train_accuracy,val_loss,val_accuracy,seconds\n", f) < 0) {
        int e = errno;
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                    "cannot write %s: %s; free space on that disk or choose another --output", path,
                    g_strerror(e));
        return NULL;
    }
    return f;
}

/* Returns: FALSE with errno set when the write failed. */
static gboolean csv_value(FILE *f, double v)
{
    return (isnan(v) ? fputs(",", f) : fprintf(f, ",%.6g", v)) >= 0;
}

/* The slow path of the gradient guard, taken only once the squared global norm is not finite:
 * reads every parameter's gradient to the host to name the first layer whose gradient holds NaN
 * or an infinity, or, when every value is finite, the first whose squares overflow float.
 * @step is the step that made the gradient, or 0 when the norm was only read at the epoch's end
 * (a device backend).  Always returns FALSE with @error. */
static gboolean non_finite_gradient(LmnTrainer *t, gint64 step, double norm_sq, GError **error)
{
    g_autofree char *culprit = NULL;
    for (guint i = 0; !culprit && i < lmn_model_get_n_layers(t->model); i++) {
        LmnLayer *l = lmn_model_get_layer(t->model, i);
        for (guint p = 0; !culprit && p < lmn_layer_get_n_params(l); p++) {
            LmnTensor *g = lmn_layer_get_grad(l, p);
            gint64 n = lmn_tensor_numel(g);
            g_autofree float *v = g_try_new(float, MAX(n, 1));
            if (!v || !lmn_tensor_read(g, v, (gsize) n * sizeof(float), NULL))
                continue;
            gint64 bad = 0;
            double sq = 0;
            for (gint64 k = 0; k < n; k++) {
                bad += !isfinite(v[k]);
                sq += (double) v[k] * v[k];
            }
            if (bad > 0)
                culprit =
                    g_strdup_printf("layer '%s' parameter '%s' has %" G_GINT64_FORMAT
                                    " non-finite gradient values of %" G_GINT64_FORMAT,
                                    lmn_layer_get_name(l), lmn_layer_get_param_name(l, p), bad, n);
            else if (sq > G_MAXFLOAT)
                culprit =
                    g_strdup_printf("layer '%s' parameter '%s' has gradients so large that "
                                    "their squares (%g) overflow float",
                                    lmn_layer_get_name(l), lmn_layer_get_param_name(l, p), sq);
        }
    }
    if (!culprit)
        culprit = g_strdup("no layer's gradient holds NaN or an infinity any more");
    if (step > 0)
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_NON_FINITE,
                    "epoch %" G_GINT64_FORMAT ", step %" G_GINT64_FORMAT ": the gradient is not "
                    "finite (squared global norm %g; %s); stopped before applying it (checkpoints "
                    "already in %s are kept). Lower the learning rate, or check the data and "
                    "the initial weights for extreme values",
                    t->state.epoch + 1, step, norm_sq, culprit, t->output_dir);
    else
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_NON_FINITE,
                    "epoch %" G_GINT64_FORMAT ": a gradient became non-finite during the epoch "
                    "(on this backend the gradient norm is checked once per epoch; now %s); "
                    "stopped without saving this epoch (checkpoints already in %s are kept). "
                    "Lower the learning rate, or check the data and the initial weights for "
                    "extreme values",
                    t->state.epoch + 1, culprit, t->output_dir);
    return FALSE;
}

/* The gradient guard without clip_norm: one reduction per step.  With host memory (CPU) the
 * norm is checked at once, so the step is known and not applied; on a device a read every step
 * would wait for it every step, so the squares accumulate there (NaN and infinity stay in a
 * sum) and read_epoch_figures() reads the sum with the epoch's loss. */
static gboolean guard_gradients(LmnTrainer *t, LmnTensor *grads, GError **error)
{
    if (!t->grad_sq) {
        LmnShape one = lmn_shape_make(0);
        t->grad_sq = lmn_tensor_new(t->backend, LMN_DTYPE_F32, &one, error);
        if (!t->grad_sq)
            return FALSE;
        lmn_op_fill(t->grad_sq, 0);
    }
    const float *host = lmn_backend_host_pointer(t->grad_sq);
    lmn_op_reduce(LMN_REDUCE_SUM_SQUARES, grads, t->grad_sq, 1.0f, host ? 0.0f : 1.0f);
    if (host && !isfinite(*host))
        return non_finite_gradient(t, t->state.step + 1, *host, error);
    return TRUE;
}

/* Penalties, noise and clipping between backward and the optimizer (order documented in
 * LmnTrainConfig), and the guard on the gradient's norm.  @m is the batch size, for the loss
 * accumulator. */
static gboolean process_gradients(LmnTrainer *t, gint64 m, GError **error)
{
    const LmnTrainConfig *tc = t->tc;
    guint64 step = (guint64) t->state.step;
    if (t->has_penalty) {
        /* L2 is l2/2 ||w||^2 in the loss, so its gradient is l2 w (torch's weight_decay for
         * SGD); L1 is l1 ||w||_1 with the subgradient l1 sign(w), 0 at w = 0. */
        float beta = 0.0f;
        for (guint i = 0; i < t->slots->len; i++) {
            ParamSlot *ps = &g_array_index(t->slots, ParamSlot, i);
            if (ps->l2 > 0) {
                lmn_op_reduce(LMN_REDUCE_SUM_SQUARES, ps->w, t->penalty, 0.5f * ps->l2, beta);
                beta = 1.0f;
                lmn_op_axpby(ps->l2, ps->w, 1.0f, ps->g);
            }
            if (ps->l1 > 0) {
                lmn_op_reduce(LMN_REDUCE_SUM_ABS, ps->w, t->penalty, ps->l1, beta);
                beta = 1.0f;
                lmn_op_unary(LMN_UNARY_SIGN, ps->w, ps->scratch, 0.0f);
                lmn_op_axpby(ps->l1, ps->scratch, 1.0f, ps->g);
            }
        }
        lmn_op_axpby((float) m, t->penalty, 1.0f, t->loss_acc);
    }
    if (tc->grad_noise > 0) {
        /* Neelakantan et al. (2015): sigma_t = sigma_0 / (1 + t)^gamma, t = steps done. */
        double sigma = tc->grad_noise / pow(1.0 + (double) step, tc->grad_noise_gamma);
        lmn_op_random_normal(t->scratch, 0.0f, (float) sigma, t->state.seed,
                             LMN_STREAM(LMN_STREAM_NOISE, step));
        for (guint i = 0; i < t->slots->len; i++) {
            ParamSlot *ps = &g_array_index(t->slots, ParamSlot, i);
            lmn_op_axpby(1.0f, ps->scratch, 1.0f, ps->g);
        }
    }
    LmnTensor *grads = lmn_model_get_grads(t->model);
    if (tc->clip_norm > 0) {
        /* torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), applied if < 1. */
        double norm_sq = 0;
        lmn_op_reduce(LMN_REDUCE_SUM_SQUARES, grads, t->norm_sq, 1.0f, 0.0f);
        if (!read_scalar(t->norm_sq, &norm_sq, error))
            return FALSE;
        /* An infinite norm would make coef 0 and zero the gradient silently. */
        if (!isfinite(norm_sq))
            return non_finite_gradient(t, t->state.step + 1, norm_sq, error);
        double coef = tc->clip_norm / (sqrt(norm_sq) + 1e-6);
        if (coef < 1.0)
            lmn_op_axpby((float) coef, grads, 0.0f, grads);
    } else if (!guard_gradients(t, grads, error)) {
        return FALSE;
    }
    if (tc->clip_value > 0)
        lmn_op_clamp(grads, (float) -tc->clip_value, (float) tc->clip_value);
    return TRUE;
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

/* One optimizer step on the next @m samples (after skipping @skip of the reader's batch):
 * forward, the loss guard, backward, gradient processing, the update, the accuracy count. */
static gboolean train_step(LmnTrainer *t, Epoch *ep, gint64 m, gint64 skip, gint64 steps_per_epoch,
                           GError **error)
{
    if (!next_batch(t, m, skip, error))
        return FALSE;
    guint64 step = (guint64) t->state.step;
    lmn_model_forward(t->model, TRUE, step, t->state.seed);
    /* With the CPU backend the loss is in host memory: checking every step is free. */
    const float *loss_host = lmn_backend_host_pointer(lmn_model_get_loss(t->model));
    if (loss_host && !isfinite(*loss_host))
        return non_finite_error(t, ep->index, t->state.step + 1, *loss_host, error);
    lmn_model_backward(t->model, step, t->state.seed);
    lmn_op_axpby((float) m, lmn_model_get_loss(t->model), 1.0f, t->loss_acc);
    if (!process_gradients(t, m, error))
        return FALSE;
    ep->lr = lmn_schedule_get_lr(t->sched, t->state.step, ep->index, steps_per_epoch);
    lmn_optimizer_step(t->opt, ep->lr);
    t->state.step++;
    if (lmn_model_get_target_info(t->model)->dtype == LMN_DTYPE_I32) {
        LmnTensor *y;
        lmn_model_set_batch(t->model, m, NULL, &y);
        lmn_op_count_correct(lmn_model_get_prediction(t->model), y, t->correct_acc);
    }
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
    if (!read_scalar(t->loss_acc, &l, error))
        return FALSE;
    progress_line(t, ep->index, done, n, l / (double) ep->seen, ep->seen,
                  (double) (now - ep->t0) / 1e6);
    *last_draw = now;
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
    double loss_sum = 0, correct = 0;
    if (!read_scalar(t->loss_acc, &loss_sum, error) ||
        !read_scalar(t->correct_acc, &correct, error) ||
        !lmn_backend_synchronize(t->backend, error))
        return FALSE;
    gint64 elapsed_us = g_get_monotonic_time() - ep->t0;
    ep->data_seconds = lmn_batch_reader_get_wait_seconds(t->reader) - ep->wait0;
    ep->seconds = (double) elapsed_us / 1e6;
    ep->train_loss = loss_sum / (double) ep->seen;
    gboolean labels = lmn_model_get_target_info(t->model)->dtype == LMN_DTYPE_I32;
    ep->train_acc = labels ? correct / (double) ep->seen : NAN;
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
        if (!read_scalar(t->grad_sq, &grad_sq, error))
            return FALSE;
        if (!isfinite(grad_sq))
            return non_finite_gradient(t, 0, grad_sq, error);
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
    if (t->val &&
        !lmn_evaluate(t->model, t->val, tc->batch_size, &ep->val_loss, &ep->val_acc, error))
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
    FILE *metrics = open_metrics(t, error);
    if (!metrics)
        return FALSE;
    /* Buffered: a full disk shows at the latest in fflush(), which every row ends with. */
    gboolean ok = fprintf(metrics, "%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT, ep->index + 1,
                          t->state.step) >= 0 &&
                  csv_value(metrics, ep->lr) && csv_value(metrics, ep->train_loss) &&
                  csv_value(metrics, ep->train_acc) && csv_value(metrics, ep->val_loss) &&
                  csv_value(metrics, ep->val_acc) && csv_value(metrics, ep->seconds) &&
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
    gboolean labels = lmn_model_get_target_info(t->model)->dtype == LMN_DTYPE_I32;
    if (t->opts.progress)
        printf("\r\033[K");
    printf("epoch %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT "  loss %.4f", ep->index + 1,
           t->tc->epochs, ep->train_loss);
    if (labels)
        printf("  acc %.2f%%", 100 * ep->train_acc);
    if (t->val) {
        printf("  val_loss %.4f", ep->val_loss);
        if (labels)
            printf("  val_acc %.2f%%", 100 * ep->val_acc);
        if (ep->improved)
            printf(" *");
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
    if (ep->improved && !save_checkpoint(t, "best.h5", error))
        return FALSE;
    gint64 every = t->tc->checkpoint_every;
    if (ep->reached_end && every > 0 && t->state.epoch % every == 0) {
        g_autofree char *name = g_strdup_printf("epoch-%" G_GINT64_FORMAT ".h5", t->state.epoch);
        if (!save_checkpoint(t, name, error))
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
    if (!train_epoch_steps(t, &ep, n, steps_per_epoch, error))
        return FALSE;
    if (ep.seen == 0) {
        *stop = TRUE;
        return TRUE;
    }
    if (!read_epoch_figures(t, &ep, error) || !end_epoch(t, &ep, error) ||
        !write_metrics_row(t, &ep, error))
        return FALSE;
    if (!t->opts.quiet)
        print_epoch(t, &ep);
    if (!save_epoch_checkpoints(t, &ep, error))
        return FALSE;
    *stop = ep.stop;
    return TRUE;
}

/* After the last epoch: interrupted.h5 for a stop request, the early-stopping report and the
 * best weights, final.h5, and the test split's figures. */
static gboolean finish_run(LmnTrainer *t, GError **error)
{
    const LmnTrainConfig *tc = t->tc;
    if (g_atomic_int_get(&t->stop_requested)) {
        if (!save_checkpoint(t, "interrupted.h5", error))
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
               monitor_name(tc->monitor), tc->early_stopping_min_delta, t->state.wait,
               t->state.best_metric, t->state.best_epoch,
               t->state.has_best_weights && tc->restore_best ? " (its weights restored)" : "");
    if (t->state.stopped_early && tc->restore_best && t->state.has_best_weights)
        copy_best(t, TRUE);
    if (!save_checkpoint(t, "final.h5", error))
        return FALSE;
    if (t->test) {
        double tl, ta;
        if (!lmn_evaluate(t->model, t->test, tc->batch_size, &tl, &ta, error))
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
