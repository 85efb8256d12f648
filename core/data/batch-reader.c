/* Lamina — mini-batches of a dataset: order, streaming chunk reads, prefetch (dataset.h).
 *
 * The order of an epoch is planned from indices alone (plan_epoch), before any data is read, so
 * it cannot depend on timing.  Producing a batch (produce) is sequential: in streaming mode it
 * keeps decoded rows of the chunks read so far in a slot pool until their turn comes.  With
 * prefetching, a worker thread runs produce for the batches ahead and hands them over through a
 * GAsyncQueue; buffers travel back through a second queue, so nothing is allocated per batch.
 */
#include "dataset-private.h"

#include <string.h>

typedef struct {
    gint64 index; /* batch index within the epoch */
    gint64 n;
    float *x;
    void *y;
    void **extra; /* the dataset's other targets, [1..n_targets) (entry 0 unused) */
    guint32 *idx;
    GError *error;
} Batch;

/* The file chunks of a streaming dataset, as ranges of logical indices. */
typedef struct {
    gint64 first;
    gint64 n;
} Chunk;

struct _LmnBatchReader {
    LmnDataset *ds;
    gint64 batch;
    guint64 seed;
    gboolean shuffle;
    gboolean augment;
    LmnAugmentConfig aug;
    LmnAugmentPca pca;
    gboolean prefetch;
    gint64 depth;
    gint64 slice_rank, slice_count; /* x only for this rank's slice of each batch (count > 1) */
    gint64 n;
    gint64 batches;
    gint64 y_numel;

    /* plan of the current epoch */
    gint64 epoch;
    gint64 next_batch; /* consumer position */
    gboolean planned;  /* order[] is for epoch */
    guint32 *order;
    guint32 *pos_of; /* streaming: inverse of order */
    Chunk *chunks;
    gint64 n_chunks;
    gint64 max_chunk;
    guint32 *chunk_order;
    gint64 buffer_k;

    /* producer state (owned by the worker thread while it runs) */
    gint64 prod_batch;
    gint64 start_pos; /* first sample position of this run: earlier ones were delivered */
    gint64 chunk_cursor;
    gint32 *slot_of; /* logical index -> slot, -1 = not loaded */
    float *pool;     /* (buffer_k + max_chunk) slots of sample numel floats */
    gint32 *free_slots;
    gint64 n_free;
    float *chunk_buf;
    float *scratch;
    float *aug_scratch;

    /* prefetch */
    GThread *worker;
    GAsyncQueue *full;
    GAsyncQueue *empty;
    gint cancel;
    Batch *batches_all;
    Batch local; /* without prefetching */
    gboolean running;

    double wait_s;
};

/* A value no real Batch pointer has: wakes a worker blocked on the empty queue to stop. */
static Batch stop_token;

static void plan_epoch(LmnBatchReader *r)
{
    gint64 n = r->n;
    LmnRandom rng;
    lmn_random_init(&rng, r->seed, LMN_STREAM(LMN_STREAM_SHUFFLE, r->epoch));
    if (!lmn_dataset_is_streaming(r->ds) || !r->shuffle) {
        for (gint64 i = 0; i < n; i++) {
            r->order[i] = (guint32) i;
        }
        if (r->shuffle) {
            lmn_random_shuffle(&rng, r->order, (gsize) n);
        }
        for (gint64 c = 0; c < r->n_chunks; c++) {
            r->chunk_order[c] = (guint32) c;
        }
    } else {
        for (gint64 c = 0; c < r->n_chunks; c++) {
            r->chunk_order[c] = (guint32) c;
        }
        lmn_random_shuffle(&rng, r->chunk_order, (gsize) r->n_chunks);
        /* The shuffle buffer, simulated on indices: pool order[] doubles as output. */
        g_autofree guint32 *buf = g_new(guint32, MAX(r->buffer_k, 1));
        gint64 fill = 0, out = 0;
        for (gint64 c = 0; c < r->n_chunks; c++) {
            const Chunk *ch = &r->chunks[r->chunk_order[c]];
            for (gint64 i = ch->first; i < ch->first + ch->n; i++) {
                if (fill < r->buffer_k) {
                    buf[fill++] = (guint32) i;
                    continue;
                }
                gint64 j = (gint64) lmn_random_below(&rng, (guint64) r->buffer_k);
                r->order[out++] = buf[j];
                buf[j] = (guint32) i;
            }
        }
        while (fill > 0) {
            gint64 j = (gint64) lmn_random_below(&rng, (guint64) fill);
            r->order[out++] = buf[j];
            buf[j] = buf[--fill];
        }
        g_assert(out == n);
    }
    if (r->pos_of != NULL) {
        for (gint64 s = 0; s < n; s++) {
            r->pos_of[r->order[s]] = (guint32) s;
        }
    }
    r->planned = TRUE;
}

/* Resets the producer to start at batch @b of the planned epoch. */
static void producer_reset(LmnBatchReader *r, gint64 b)
{
    r->prod_batch = b;
    r->start_pos = b * r->batch;
    r->chunk_cursor = 0;
    if (r->slot_of != NULL) {
        for (gint64 i = 0; i < r->n; i++) {
            r->slot_of[i] = -1;
        }
        gint64 slots = r->buffer_k + r->max_chunk;
        for (gint64 s = 0; s < slots; s++) {
            r->free_slots[s] = (gint32) (slots - 1 - s);
        }
        r->n_free = slots;
    }
}

/* Whether the sample at epoch position @pos gets its x: it lies in this rank's slice of its
 * batch (lmn_train_slice()'s rule), or there are no slices. */
static gboolean in_slice(const LmnBatchReader *r, gint64 pos)
{
    if (r->slice_count <= 1)
        return TRUE;
    gint64 s0 = pos / r->batch * r->batch;
    gint64 m = MIN(r->batch, r->n - s0);
    gint64 o = pos - s0;
    return o >= r->slice_rank * m / r->slice_count && o < (r->slice_rank + 1) * m / r->slice_count;
}

/* Whether logical sample @li of a chunk is still to be delivered by this reader. */
static gboolean wanted(const LmnBatchReader *r, gint64 li)
{
    return r->pos_of[li] >= r->start_pos && in_slice(r, r->pos_of[li]);
}

/* Reads the wanted samples of @ch into chunk_buf (at their offsets in the chunk): the whole
 * chunk in one read without slices, else one hyperslab per run of wanted rows, so a rank reads
 * its share of the file and no more.  Returns: FALSE with @error; *@any: whether it read any. */
static gboolean read_chunk(LmnBatchReader *r, const Chunk *ch, gboolean *any, GError **error)
{
    gint64 numel = r->ds->sample_numel;
    *any = FALSE;
    for (gint64 k = 0; k < ch->n; k++) {
        if (!wanted(r, ch->first + k))
            continue;
        gint64 end = k + 1;
        while (end < ch->n && (r->slice_count <= 1 || wanted(r, ch->first + end)))
            end++;
        if (r->slice_count <= 1)
            end = ch->n; /* (and k is the first wanted one: read the rest whole) */
        if (!lmn_dataset_read_range(r->ds, ch->first + k, end - k, r->chunk_buf + k * numel,
                                    r->scratch, error))
            return FALSE;
        *any = TRUE;
        k = end - 1;
    }
    return TRUE;
}

/* Streaming: reads chunks in the planned order until logical sample @i is loaded. */
static gboolean load_until(LmnBatchReader *r, gint64 i, GError **error)
{
    gint64 numel = r->ds->sample_numel;
    while (r->slot_of[i] < 0) {
        g_assert(r->chunk_cursor < r->n_chunks);
        const Chunk *ch = &r->chunks[r->chunk_order[r->chunk_cursor++]];
        /* Chunks whose samples were all delivered before the resume point, or belong to other
         * ranks, are skipped. */
        gboolean any;
        if (!read_chunk(r, ch, &any, error)) {
            return FALSE;
        }
        if (!any) {
            continue;
        }
        for (gint64 k = 0; k < ch->n; k++) {
            gint64 li = ch->first + k;
            if (!wanted(r, li)) {
                continue;
            }
            g_assert(r->n_free > 0);
            gint32 slot = r->free_slots[--r->n_free];
            memcpy(r->pool + (gint64) slot * numel, r->chunk_buf + k * numel,
                   (gsize) numel * sizeof(float));
            r->slot_of[li] = slot;
        }
    }
    return TRUE;
}

/* Fills @out with batch r->prod_batch and advances. */
static gboolean produce(LmnBatchReader *r, Batch *out, GError **error)
{
    LmnDataset *ds = r->ds;
    gint64 b = r->prod_batch++;
    gint64 s0 = b * r->batch;
    gint64 m = MIN(r->batch, r->n - s0);
    gint64 numel = ds->sample_numel;
    out->index = b;
    out->n = m;
    memcpy(out->idx, r->order + s0, (gsize) m * sizeof(guint32));
    if (!lmn_dataset_read(ds, out->idx, (gsize) m, lmn_dataset_is_streaming(ds) ? NULL : out->x,
                          out->y, error)) {
        return FALSE;
    }
    lmn_dataset_read_extra(ds, out->idx, (gsize) m, out->extra);
    if (lmn_dataset_is_streaming(ds)) {
        for (gint64 j = 0; j < m; j++) {
            if (!in_slice(r, s0 + j))
                continue;
            gint64 i = out->idx[j];
            if (!load_until(r, i, error)) {
                return FALSE;
            }
            gint32 slot = r->slot_of[i];
            memcpy(out->x + j * numel, r->pool + (gint64) slot * numel,
                   (gsize) numel * sizeof(float));
            r->slot_of[i] = -1;
            r->free_slots[r->n_free++] = slot;
        }
    }
    if (r->augment) {
        for (gint64 j = 0; j < m; j++) {
            if (!in_slice(r, s0 + j))
                continue;
            lmn_augment_apply(&r->aug, &r->pca, &ds->sample_shape, r->seed, r->epoch, out->idx[j],
                              out->x + j * numel, r->aug_scratch);
        }
    }
    return TRUE;
}

static gpointer worker_main(gpointer data)
{
    LmnBatchReader *r = data;
    while (r->prod_batch < r->batches && !g_atomic_int_get(&r->cancel)) {
        Batch *bt = g_async_queue_pop(r->empty);
        if (bt == &stop_token) {
            break;
        }
        g_clear_error(&bt->error);
        gboolean ok = produce(r, bt, &bt->error);
        g_async_queue_push(r->full, bt);
        if (!ok) {
            break;
        }
    }
    return NULL;
}

static void stop_worker(LmnBatchReader *r)
{
    if (r->worker == NULL) {
        return;
    }
    g_atomic_int_set(&r->cancel, 1);
    g_async_queue_push(r->empty, &stop_token);
    g_thread_join(r->worker);
    r->worker = NULL;
    g_atomic_int_set(&r->cancel, 0);
    /* Return every buffer to the empty queue and drop a stop token left unread. */
    Batch *bt;
    while ((bt = g_async_queue_try_pop(r->full)) != NULL) {
        g_async_queue_push(r->empty, bt);
    }
    GQueue keep = G_QUEUE_INIT;
    while ((bt = g_async_queue_try_pop(r->empty)) != NULL) {
        if (bt != &stop_token) {
            g_queue_push_tail(&keep, bt);
        }
    }
    while ((bt = g_queue_pop_head(&keep)) != NULL) {
        g_async_queue_push(r->empty, bt);
    }
}

/* Makes the producer ready to deliver r->next_batch of r->epoch. */
static void start(LmnBatchReader *r)
{
    if (!r->planned) {
        plan_epoch(r);
    }
    producer_reset(r, r->next_batch);
    if (r->prefetch && r->next_batch < r->batches) {
        r->worker = g_thread_new("lamina-prefetch", worker_main, r);
    }
    r->running = TRUE;
}

static void batch_alloc(Batch *bt, const LmnBatchReader *r)
{
    bt->x = g_new(float, r->batch * r->ds->sample_numel);
    bt->y = g_malloc((gsize) (r->batch * r->y_numel) * 4);
    bt->idx = g_new(guint32, r->batch);
    /* Labels and float targets are 4 bytes a value either way. */
    bt->extra = g_new0(void *, 1 + r->ds->n_extra);
    for (guint e = 0; e < r->ds->n_extra; e++)
        bt->extra[1 + e] = g_malloc((gsize) (r->batch * r->ds->extra[e].numel) * 4);
}

static void batch_clear(Batch *bt, const LmnBatchReader *r)
{
    g_free(bt->x);
    g_free(bt->y);
    g_free(bt->idx);
    for (guint e = 0; bt->extra != NULL && e < r->ds->n_extra; e++)
        g_free(bt->extra[1 + e]);
    g_clear_pointer(&bt->extra, g_free);
    g_clear_error(&bt->error);
}

/* PCA of the RGB covariance over the training samples (the first 64 MiB when streaming). */
static gboolean compute_pca(LmnBatchReader *r, GError **error)
{
    LmnDataset *ds = r->ds;
    gint64 hw = ds->sample_numel / 3;
    if (!lmn_dataset_is_streaming(ds)) {
        lmn_augment_pca_from_samples(ds->x, ds->length, hw, &r->pca);
        return TRUE;
    }
    gint64 n = MIN(ds->length, MAX(1, (64 << 20) / (ds->sample_numel * 4)));
    g_autofree float *x = g_new(float, n * ds->sample_numel);
    g_autofree guint32 *idx = g_new(guint32, n);
    for (gint64 i = 0; i < n; i++) {
        idx[i] = (guint32) i;
    }
    if (!lmn_dataset_read(ds, idx, (gsize) n, x, NULL, error)) {
        return FALSE;
    }
    lmn_augment_pca_from_samples(x, n, hw, &r->pca);
    return TRUE;
}

LmnBatchReader *lmn_batch_reader_new(LmnDataset *ds, const LmnBatchReaderOptions *options,
                                     GError **error)
{
    g_return_val_if_fail(ds != NULL && options != NULL && options->batch_size > 0, NULL);
    g_autoptr(LmnBatchReader) r = g_new0(LmnBatchReader, 1);
    r->ds = ds;
    r->batch = options->batch_size;
    r->seed = options->seed;
    r->shuffle = options->shuffle;
    r->prefetch = options->prefetch;
    r->depth = options->depth > 0 ? options->depth : 2;
    r->slice_count = MAX(options->slice_count, 1);
    r->slice_rank = CLAMP(options->slice_rank, 0, r->slice_count - 1);
    r->n = lmn_dataset_get_length(ds);
    r->batches = (r->n + r->batch - 1) / r->batch;
    r->y_numel = ds->target_numel;
    if (options->augment != NULL && lmn_augment_config_is_enabled(options->augment)) {
        if (!lmn_augment_check_shape(options->augment, &ds->sample_shape, ds->spec, error)) {
            return NULL;
        }
        r->aug = *options->augment;
        r->augment = TRUE;
        r->aug_scratch =
            g_new(float, lmn_augment_scratch_floats(options->augment, &ds->sample_shape));
        if (r->aug.pca_std > 0 && !compute_pca(r, error)) {
            return NULL;
        }
    }
    r->order = g_new(guint32, MAX(r->n, 1));

    /* Chunks as ranges of logical indices (the rows map is sorted, so each chunk's samples are
     * contiguous); in memory mode one pseudo-chunk per sample range is unused but harmless. */
    GArray *chunks = g_array_new(FALSE, FALSE, sizeof(Chunk));
    for (gint64 i = 0; i < r->n;) {
        gint64 c = lmn_dataset_file_row(ds, i) / ds->chunk_rows;
        Chunk ch = {.first = i, .n = 0};
        while (i < r->n && lmn_dataset_file_row(ds, i) / ds->chunk_rows == c) {
            ch.n++;
            i++;
        }
        r->max_chunk = MAX(r->max_chunk, ch.n);
        g_array_append_val(chunks, ch);
    }
    r->n_chunks = chunks->len;
    r->chunks = (Chunk *) g_array_free(chunks, FALSE);
    r->chunk_order = g_new(guint32, MAX(r->n_chunks, 1));

    if (lmn_dataset_is_streaming(ds)) {
        /* A quarter of the memory budget for the shuffle buffer, at least four batches. */
        gint64 k = (gint64) (ds->budget_bytes / 4 / (double) (ds->sample_numel * 4));
        r->buffer_k = MIN(MAX(k, 4 * r->batch), r->n);
        r->pos_of = g_new(guint32, MAX(r->n, 1));
        r->slot_of = g_new(gint32, MAX(r->n, 1));
        gint64 slots = r->buffer_k + r->max_chunk;
        r->pool = g_new(float, slots * ds->sample_numel);
        r->free_slots = g_new(gint32, slots);
        r->chunk_buf = g_new(float, r->max_chunk * ds->sample_numel);
        /* Span of file rows of one chunk: at most chunk_rows. */
        r->scratch = g_new(float, ds->chunk_rows * ds->sample_numel);
    }

    if (r->prefetch) {
        r->full = g_async_queue_new();
        r->empty = g_async_queue_new();
        r->batches_all = g_new0(Batch, r->depth);
        for (gint64 i = 0; i < r->depth; i++) {
            batch_alloc(&r->batches_all[i], r);
            g_async_queue_push(r->empty, &r->batches_all[i]);
        }
    } else {
        batch_alloc(&r->local, r);
    }
    return g_steal_pointer(&r);
}

void lmn_batch_reader_free(LmnBatchReader *r)
{
    if (r == NULL) {
        return;
    }
    stop_worker(r);
    if (r->batches_all != NULL) {
        for (gint64 i = 0; i < r->depth; i++) {
            batch_clear(&r->batches_all[i], r);
        }
        g_free(r->batches_all);
    }
    batch_clear(&r->local, r);
    g_clear_pointer(&r->full, g_async_queue_unref);
    g_clear_pointer(&r->empty, g_async_queue_unref);
    g_free(r->order);
    g_free(r->pos_of);
    g_free(r->chunks);
    g_free(r->chunk_order);
    g_free(r->slot_of);
    g_free(r->pool);
    g_free(r->free_slots);
    g_free(r->chunk_buf);
    g_free(r->scratch);
    g_free(r->aug_scratch);
    g_free(r);
}

gint64 lmn_batch_reader_get_batches_per_epoch(const LmnBatchReader *r)
{
    g_return_val_if_fail(r != NULL, 0);
    return r->batches;
}

void lmn_batch_reader_seek(LmnBatchReader *r, gint64 epoch, gint64 batch_index)
{
    g_return_if_fail(r != NULL && epoch >= 0);
    g_return_if_fail(batch_index >= 0 && batch_index <= r->batches);
    stop_worker(r);
    if (epoch != r->epoch) {
        r->planned = FALSE;
    }
    r->epoch = epoch;
    r->next_batch = batch_index;
    r->running = FALSE;
}

void lmn_batch_reader_get_position(const LmnBatchReader *r, gint64 *epoch_out,
                                   gint64 *batch_index_out)
{
    g_return_if_fail(r != NULL);
    if (epoch_out != NULL) {
        *epoch_out = r->epoch;
    }
    if (batch_index_out != NULL) {
        *batch_index_out = r->next_batch;
    }
}

static gint64 next_batch(LmnBatchReader *r, float *x_out, void *y_out, void *const *targets_out,
                         guint32 *indices_out, GError **error);

gint64 lmn_batch_reader_next(LmnBatchReader *r, float *x_out, void *y_out, guint32 *indices_out,
                             GError **error)
{
    return next_batch(r, x_out, y_out, NULL, indices_out, error);
}

gint64 lmn_batch_reader_next_targets(LmnBatchReader *r, float *x_out, void *const *targets_out,
                                     guint32 *indices_out, GError **error)
{
    return next_batch(r, x_out, targets_out != NULL ? targets_out[0] : NULL, targets_out,
                      indices_out, error);
}

/* @targets_out: NULL, or every target's buffer ([0] is @y_out's). */
static gint64 next_batch(LmnBatchReader *r, float *x_out, void *y_out, void *const *targets_out,
                         guint32 *indices_out, GError **error)
{
    g_return_val_if_fail(r != NULL && x_out != NULL, -1);
    if (r->next_batch >= r->batches) {
        return 0;
    }
    if (!r->running) {
        start(r);
    }
    gint64 t0 = g_get_monotonic_time();
    Batch *bt;
    if (r->prefetch) {
        bt = g_async_queue_pop(r->full);
    } else {
        bt = &r->local;
        g_clear_error(&bt->error);
        produce(r, bt, &bt->error);
    }
    r->wait_s += (double) (g_get_monotonic_time() - t0) / 1e6;
    g_assert(bt->error != NULL || bt->index == r->next_batch);
    gint64 m = bt->n;
    if (bt->error != NULL) {
        g_propagate_error(error, g_steal_pointer(&bt->error));
        /* The worker stopped; a later call restarts from this batch. */
        if (r->prefetch) {
            g_async_queue_push(r->empty, bt);
        }
        stop_worker(r);
        r->running = FALSE;
        return -1;
    }
    memcpy(x_out, bt->x, (gsize) (m * r->ds->sample_numel) * sizeof(float));
    if (y_out != NULL) {
        memcpy(y_out, bt->y, (gsize) (m * r->y_numel) * 4);
    }
    for (guint e = 0; targets_out != NULL && e < r->ds->n_extra; e++) {
        if (targets_out[1 + e] != NULL)
            memcpy(targets_out[1 + e], bt->extra[1 + e], (gsize) (m * r->ds->extra[e].numel) * 4);
    }
    if (indices_out != NULL) {
        memcpy(indices_out, bt->idx, (gsize) m * sizeof(guint32));
    }
    if (r->prefetch) {
        g_async_queue_push(r->empty, bt);
    }
    r->next_batch++;
    return m;
}

double lmn_batch_reader_get_wait_seconds(const LmnBatchReader *r)
{
    g_return_val_if_fail(r != NULL, 0.0);
    return r->wait_s;
}
