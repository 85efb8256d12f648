/* Lamina CPU backend — the thread pool. */
#include "cpu-pool.h"

#include <lamina/error.h>

typedef struct {
    LmnCpuPool *pool;
    guint index; /* 1 .. n_threads - 1; chunk 0 belongs to the caller */
} Worker;

struct _LmnCpuPool {
    guint n_threads;
    GThread **threads;
    Worker *workers;

    GMutex lock;
    GCond wake; /* workers wait here for a new generation */
    GCond done; /* the caller waits here for remaining == 0 */
    guint64 generation;
    gboolean quit;

    /* The current loop, read by workers under the lock. */
    LmnCpuPoolFunc func;
    gpointer data;
    gsize n;
    gsize chunk;
    guint n_chunks;
    guint remaining; /* worker chunks not finished yet */
};

static gpointer worker_main(gpointer user_data)
{
    Worker *w = user_data;
    LmnCpuPool *pool = w->pool;
    /* Generation 0 is the state at creation.  Reading pool->generation here instead would miss
     * a loop started before this thread got to run, and the caller would wait forever. */
    guint64 seen = 0;
    g_mutex_lock(&pool->lock);
    for (;;) {
        while (!pool->quit && pool->generation == seen)
            g_cond_wait(&pool->wake, &pool->lock);
        if (pool->quit)
            break;
        seen = pool->generation;
        if (w->index >= pool->n_chunks)
            continue;
        LmnCpuPoolFunc func = pool->func;
        gpointer data = pool->data;
        gsize begin = w->index * pool->chunk;
        gsize end = MIN(pool->n, begin + pool->chunk);
        g_mutex_unlock(&pool->lock);
        func(begin, end, data);
        g_mutex_lock(&pool->lock);
        if (--pool->remaining == 0)
            g_cond_signal(&pool->done);
    }
    g_mutex_unlock(&pool->lock);
    return NULL;
}

LmnCpuPool *lmn_cpu_pool_new(guint n_threads, GError **error)
{
    g_return_val_if_fail(n_threads >= 1, NULL);
    LmnCpuPool *pool = g_new0(LmnCpuPool, 1);
    pool->n_threads = 1;
    g_mutex_init(&pool->lock);
    g_cond_init(&pool->wake);
    g_cond_init(&pool->done);
    pool->threads = g_new0(GThread *, n_threads);
    pool->workers = g_new0(Worker, n_threads);
    for (guint i = 1; i < n_threads; i++) {
        pool->workers[i].pool = pool;
        pool->workers[i].index = i;
        g_autofree char *name = g_strdup_printf("lmn-cpu-%u", i);
        GError *local_error = NULL;
        pool->threads[i] = g_thread_try_new(name, worker_main, &pool->workers[i], &local_error);
        if (pool->threads[i] == NULL) {
            g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                        "cannot start worker thread %u of %u: %s", i, n_threads,
                        local_error->message);
            g_error_free(local_error);
            lmn_cpu_pool_free(pool);
            return NULL;
        }
        pool->n_threads = i + 1;
    }
    return pool;
}

void lmn_cpu_pool_free(LmnCpuPool *pool)
{
    if (pool == NULL)
        return;
    g_mutex_lock(&pool->lock);
    pool->quit = TRUE;
    g_cond_broadcast(&pool->wake);
    g_mutex_unlock(&pool->lock);
    for (guint i = 1; i < pool->n_threads; i++)
        g_thread_join(pool->threads[i]);
    g_free(pool->threads);
    g_free(pool->workers);
    g_mutex_clear(&pool->lock);
    g_cond_clear(&pool->wake);
    g_cond_clear(&pool->done);
    g_free(pool);
}

guint lmn_cpu_pool_get_n_threads(const LmnCpuPool *pool)
{
    g_return_val_if_fail(pool != NULL, 1);
    return pool->n_threads;
}

void lmn_cpu_pool_run(LmnCpuPool *pool, gsize n, gsize min_chunk, LmnCpuPoolFunc func,
                      gpointer data)
{
    if (n == 0)
        return;
    gsize n_chunks = min_chunk > 0 ? n / min_chunk : n;
    n_chunks = CLAMP(n_chunks, 1, pool->n_threads);
    if (n_chunks == 1) {
        func(0, n, data);
        return;
    }
    /* Chunks are multiples of 16 indices so element loops start on 64-byte boundaries. */
    gsize chunk = (n + n_chunks - 1) / n_chunks;
    chunk = (chunk + 15) & ~(gsize) 15;
    n_chunks = (n + chunk - 1) / chunk;
    if (n_chunks == 1) {
        func(0, n, data);
        return;
    }

    g_mutex_lock(&pool->lock);
    pool->func = func;
    pool->data = data;
    pool->n = n;
    pool->chunk = chunk;
    pool->n_chunks = (guint) n_chunks;
    pool->remaining = (guint) n_chunks - 1;
    pool->generation++;
    g_cond_broadcast(&pool->wake);
    g_mutex_unlock(&pool->lock);

    func(0, chunk, data);

    g_mutex_lock(&pool->lock);
    while (pool->remaining > 0)
        g_cond_wait(&pool->done, &pool->lock);
    g_mutex_unlock(&pool->lock);
}
