/* Lamina — data-parallel training: the trainer's side of a run over several ranks.
 *
 * Every rank reads the same global shuffle and trains on its contiguous slice of each global
 * batch (batch_size / N samples), so the sequence of global batches is the single-process one.
 * Gradients are averaged over the global batch: each rank scales its batch-mean gradient by its
 * share m_r / M and the ranks sum.  The flat gradient is cut into buckets of [train] bucket_mib
 * from its end (backward writes the last layers first); a bucket's sum starts as soon as the
 * model's backward hook reports every element of it final, and reductions advance by
 * lmn_comm_test() between layers (no progress thread).  The optimizer then runs once, on
 * identical gradients, so parameters stay identical on every rank without being sent again.
 *
 * Decisions stay collective: the loss guard and a stop request are summed each step, epoch
 * figures and evaluations are reduced, and everything computed from them (schedules, early
 * stopping, best.h5) is then the same everywhere.  Only rank 0 writes files. */
#include "trainer-private.h"

#include <math.h>
#include <string.h>

typedef struct {
    gint64 first, count; /* elements of the flat gradient */
    LmnCommRequest *req; /* in flight, or NULL */
    gboolean started;
} Bucket;

struct _LmnDataParallel {
    GArray *buckets; /* Bucket, from the end of the gradient backwards (the order they finish) */
    guint next;      /* the next bucket to start in this step */
    float scale;     /* this step's share m_r / M */
    float *host;     /* the gradient in host memory: the backend's own, or staging */
    gboolean staged; /* a device backend: buckets are read into and written back from @host */
    GError *error;   /* the first error inside the backward hook */
};

static void free_dp(gpointer p)
{
    LmnDataParallel *dp = p;
    if (dp->staged)
        g_free(dp->host);
    g_array_unref(dp->buckets);
    g_clear_error(&dp->error);
    g_free(dp);
}

void lmn_train_free_data_parallel(LmnTrainer *t)
{
    g_clear_pointer(&t->dp, free_dp);
    if (t->model) {
        lmn_model_set_backward_hook(t->model, NULL, NULL);
        lmn_model_set_collective(t->model, NULL);
    }
}

/* LmnCollective.allreduce for the layers (synchronised batch normalisation): a failure is kept
 * with the backward hook's, so the step reports it from lmn_train_reduce_gradients(). */
static gboolean layer_allreduce(gpointer data, float *values, gsize count)
{
    LmnTrainer *t = data;
    return t->dp->error == NULL && lmn_comm_allreduce(t->comm, values, count, &t->dp->error);
}

/* FNV-1a over @len bytes, continuing from @h. */
static guint64 fnv(guint64 h, const void *data, gsize len)
{
    const guint8 *p = data;
    for (gsize i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* FNV-1a of the config text without [train] device: one rank per GPU passes each rank its own
 * --device, and which device a rank computes on does not change what it computes. */
static guint64 config_hash(guint64 h, const char *text)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    gboolean in_train = FALSE;
    for (guint i = 0; lines[i]; i++) {
        const char *l = lines[i];
        if (l[0] == '[')
            in_train = g_str_equal(l, "[train]");
        else if (in_train && g_str_has_prefix(l, "device="))
            continue;
        h = fnv(h, l, strlen(l) + 1);
    }
    return h;
}

/* The job's identity: the full config text (but the device), every registered feature with
 * its plugin and version, and the parameter count. */
static guint64 job_hash(LmnTrainer *t)
{
    guint64 h = config_hash(14695981039346656037ull, t->config_text);
    for (guint k = 0; k < LMN_FEATURE_KIND_COUNT; k++) {
        g_autoptr(GPtrArray) all = lmn_registry_list(t->registry, k);
        for (guint i = 0; all && i < all->len; i++) {
            const LmnFeature *f = g_ptr_array_index(all, i);
            g_autofree char *id = g_strdup_printf("%u %s %s %s;", k, f->desc->name, f->plugin->name,
                                                  f->plugin->version);
            h = fnv(h, id, strlen(id));
        }
    }
    gint64 n = lmn_model_get_n_parameters(t->model);
    return fnv(h, &n, sizeof n);
}

static gboolean check_divisible(LmnTrainer *t, GError **error)
{
    gint64 batch = t->tc->batch_size, n = t->n_ranks;
    if (batch % n == 0)
        return TRUE;
    g_autofree char *where = lmn_config_dup_where(t->cfg, "train", "batch_size");
    gint64 lower = batch / n * n, upper = lower + n;
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                "%s batch_size: %" G_GINT64_FORMAT " is the global batch and must divide evenly "
                "among the %" G_GINT64_FORMAT " processes (mpirun -np %" G_GINT64_FORMAT
                "); use a multiple of %" G_GINT64_FORMAT " such as %" G_GINT64_FORMAT
                "%s%" G_GINT64_FORMAT ", or another number of processes",
                where, batch, n, n, n, upper, lower > 0 ? " or " : "", lower > 0 ? lower : upper);
    return FALSE;
}

/* The first layer whose statistics span the ranks (a true "sync" key, see #LmnCollective), or
 * NULL. */
static LmnLayer *find_sync_layer(LmnModel *model)
{
    for (guint i = 0; i < lmn_model_get_n_layers(model); i++) {
        LmnLayer *l = lmn_model_get_layer(model, i);
        const LmnParams *p = lmn_layer_get_params(l);
        if (lmn_param_spec_find(lmn_params_get_schema(p), "sync") && lmn_params_get_bool(p, "sync"))
            return l;
    }
    return NULL;
}

/* A rank whose slice of an epoch's short last batch is empty skips that step's passes, which a
 * layer summing its statistics over the ranks cannot allow (the others would wait for it). */
static gboolean check_sync_slices(LmnTrainer *t, GError **error)
{
    gint64 batch = t->tc->batch_size, n = t->n_ranks;
    gint64 last = lmn_dataset_get_length(t->train) % batch;
    LmnLayer *l = last > 0 && last < n ? find_sync_layer(t->model) : NULL;
    if (!l)
        return TRUE;
    g_autofree char *where = lmn_config_dup_where(t->cfg, "train", "batch_size");
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                "%s batch_size: the last batch of each epoch has %" G_GINT64_FORMAT
                " of the %" G_GINT64_FORMAT " training samples, fewer than the %" G_GINT64_FORMAT
                " processes, and layer "
                "'%s' has sync = true, which needs a sample on every process; choose a batch "
                "size that leaves a last batch of 0 or at least %" G_GINT64_FORMAT
                " samples, or another number of processes",
                where, last, lmn_dataset_get_length(t->train), n, lmn_layer_get_name(l), n);
    return FALSE;
}

/* Rank 0's buffers (batch-norm statistics) everywhere. */
static gboolean broadcast_buffers(LmnTrainer *t, GError **error)
{
    for (guint i = 0; i < lmn_model_get_n_layers(t->model); i++) {
        LmnLayer *l = lmn_model_get_layer(t->model, i);
        for (guint b = 0; b < lmn_layer_get_n_buffers(l); b++)
            if (!lmn_comm_broadcast_tensor(t->comm, lmn_layer_get_buffer(l, b), 0, error))
                return FALSE;
    }
    return TRUE;
}

/* Rank 0's weights and buffers everywhere. */
static gboolean broadcast_state(LmnTrainer *t, GError **error)
{
    return lmn_comm_broadcast_tensor(t->comm, lmn_model_get_params(t->model), 0, error) &&
           broadcast_buffers(t, error);
}

static void start_bucket(LmnTrainer *t, Bucket *b)
{
    LmnDataParallel *dp = t->dp;
    b->started = TRUE;
    if (dp->error)
        return;
    LmnTensor *grads = lmn_model_get_grads(t->model);
    float *p = dp->host + b->first;
    if (dp->staged) {
        LmnShape shape = lmn_shape_make(1, b->count);
        g_autoptr(LmnTensor) view = lmn_tensor_new_view(grads, b->first, &shape);
        if (!lmn_tensor_read(view, p, (gsize) b->count * sizeof(float), &dp->error))
            return;
    } else if (!lmn_backend_synchronize(t->backend, &dp->error)) {
        return;
    }
    for (gint64 i = 0; i < b->count; i++)
        p[i] *= dp->scale;
    b->req = lmn_comm_allreduce_start(t->comm, p, (gsize) b->count, &dp->error);
}

/* Moves the reductions in flight on; a completed one is dropped from the list. */
static void test_buckets(LmnTrainer *t)
{
    LmnDataParallel *dp = t->dp;
    for (guint i = 0; i < dp->next && !dp->error; i++) {
        Bucket *b = &g_array_index(dp->buckets, Bucket, i);
        if (b->req && lmn_comm_test(t->comm, b->req, &dp->error) != 0)
            b->req = NULL;
    }
}

static void backward_hook(LmnModel *model, gint64 final_from, gpointer data)
{
    (void) model;
    LmnTrainer *t = data;
    LmnDataParallel *dp = t->dp;
    while (dp->next < dp->buckets->len) {
        Bucket *b = &g_array_index(dp->buckets, Bucket, dp->next);
        if (b->first < final_from)
            break;
        start_bucket(t, b);
        dp->next++;
    }
    test_buckets(t);
}

static void make_buckets(LmnTrainer *t)
{
    LmnDataParallel *dp = g_new0(LmnDataParallel, 1);
    LmnTensor *grads = lmn_model_get_grads(t->model);
    gint64 total = lmn_tensor_numel(grads);
    gint64 size = MAX((gint64) (t->tc->bucket_mib * 1048576.0 / sizeof(float)), (gint64) 1);
    dp->buckets = g_array_new(FALSE, TRUE, sizeof(Bucket));
    for (gint64 end = total; end > 0; end -= size) {
        Bucket b = {.first = MAX(end - size, (gint64) 0)};
        b.count = end - b.first;
        g_array_append_val(dp->buckets, b);
    }
    dp->host = lmn_backend_host_pointer(grads);
    if (!dp->host) {
        dp->staged = TRUE;
        dp->host = g_new(float, total);
    }
    t->dp = dp;
}

gboolean lmn_train_setup_data_parallel(LmnTrainer *t, GError **error)
{
    if (t->n_ranks <= 1)
        return TRUE;
    lmn_comm_set_timeout(t->comm, t->tc->comm_timeout);
    /* The identity first: ranks of different jobs would disagree on everything after it. */
    if (!lmn_comm_check_same(t->comm, job_hash(t),
                             "the config (with its overrides), the plugin set or the parameter "
                             "count",
                             error) ||
        !check_divisible(t, error) || !check_sync_slices(t, error) || !broadcast_state(t, error))
        return FALSE;
    make_buckets(t);
    LmnCollective collective = {.struct_size = sizeof collective,
                                .n_ranks = t->n_ranks,
                                .allreduce = layer_allreduce,
                                .data = t};
    lmn_model_set_collective(t->model, &collective);
    /* Adversarial training runs several backward passes a step: its buckets start after them. */
    if (!t->adv_work)
        lmn_model_set_backward_hook(t->model, backward_hook, t);
    return TRUE;
}

void lmn_train_slice(const LmnTrainer *t, gint64 m, gint64 *first, gint64 *count)
{
    gint64 r = t->rank, n = t->n_ranks;
    *first = r * m / n;
    *count = (r + 1) * m / n - *first;
}

void lmn_train_begin_gradients(LmnTrainer *t, gint64 local, gint64 global)
{
    if (!t->dp)
        return;
    t->dp->next = 0;
    t->dp->scale = (float) ((double) local / (double) global);
    for (guint i = 0; i < t->dp->buckets->len; i++)
        g_array_index(t->dp->buckets, Bucket, i).started = FALSE;
}

/* Waits for every bucket (starting those backward did not); staged ones are written back. */
static gboolean finish_buckets(LmnTrainer *t, GError **error)
{
    LmnDataParallel *dp = t->dp;
    for (; dp->next < dp->buckets->len; dp->next++)
        start_bucket(t, &g_array_index(dp->buckets, Bucket, dp->next));
    gboolean ok = dp->error == NULL;
    for (guint i = 0; i < dp->buckets->len; i++) {
        Bucket *b = &g_array_index(dp->buckets, Bucket, i);
        if (b->req && ok)
            ok = lmn_comm_wait(t->comm, b->req, error);
        b->req = NULL;
        if (ok && dp->staged) {
            LmnShape shape = lmn_shape_make(1, b->count);
            g_autoptr(LmnTensor) view =
                lmn_tensor_new_view(lmn_model_get_grads(t->model), b->first, &shape);
            ok = lmn_tensor_write(view, dp->host + b->first, (gsize) b->count * sizeof(float),
                                  error);
        }
    }
    if (dp->error) {
        g_propagate_error(error, g_steal_pointer(&dp->error));
        return FALSE;
    }
    return ok;
}

gboolean lmn_train_reduce_gradients(LmnTrainer *t, double loss, GError **error)
{
    if (!t->dp)
        return TRUE;
    if (!finish_buckets(t, error))
        return FALSE;
    /* The loss guard and a stop request, decided by all: one rank's NaN stops every rank. */
    float flags[2] = {isfinite(loss) ? 0.0f : 1.0f,
                      g_atomic_int_get(&t->stop_requested) ? 1.0f : 0.0f};
    if (!lmn_comm_allreduce(t->comm, flags, 2, error))
        return FALSE;
    if (flags[1] > 0)
        g_atomic_int_set(&t->stop_requested, 1);
    if (flags[0] > 0) {
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_NON_FINITE,
                    "epoch %" G_GINT64_FORMAT ", step %" G_GINT64_FORMAT ": the training loss is "
                    "not finite on %g of the %d ranks (here %g); stopped before applying it "
                    "(checkpoints already in %s are kept). Lower the learning rate, clip "
                    "gradients (clip_norm), or check the data for extreme values",
                    (gint64) t->state.epoch + 1, (gint64) t->state.step + 1, flags[0], t->n_ranks,
                    loss, t->output_dir);
        return FALSE;
    }
    return TRUE;
}

gboolean lmn_train_reduce_figures(LmnTrainer *t, double *values, guint n, GError **error)
{
    return t->n_ranks <= 1 || lmn_comm_allreduce_doubles(t->comm, values, n, error);
}

gboolean lmn_train_evaluate_split(LmnTrainer *t, const LmnDataset *ds, double *loss, double *acc,
                                  double *losses, GError **error)
{
    if (t->n_ranks <= 1)
        return lmn_evaluate_full(t->model, ds, t->tc->batch_size, loss, acc, losses, error);
    /* Per-rank batch-norm statistics: evaluation uses rank 0's, as its checkpoints do (the
     * weights are the same everywhere already). */
    if (!broadcast_buffers(t, error))
        return FALSE;
    return lmn_evaluate_full_comm(t->model, ds, t->tc->batch_size, t->comm, loss, acc, losses,
                                  error);
}
