/* Lamina CPU backend — the thread pool.
 *
 * A loop is handed to the workers through an atomic generation counter.  Between loops a
 * worker spins on it for a short, fixed time (LMN_CPU_POOL_SPIN_US) before it sleeps on a
 * condition variable, and the caller spins the same way for the workers to finish: waking a
 * sleeping thread costs tens of microseconds on a virtual machine, as long as a small GEMM, and a
 * training step runs its ops back to back, so most loops find their workers still spinning.
 * The spin is bounded and yields nothing to the scheduler on purpose: a process sharing the
 * cores loses at most that time per loop, where OpenMP's default wait keeps a core busy for
 * milliseconds and OpenBLAS's keeps calling sched_yield.
 *
 * Sleeping is race-free by the usual protocol: a thread about to sleep announces it (an atomic
 * count) and checks the condition again under the mutex; the thread that changes the condition
 * changes it first, then reads the count and signals under the mutex when someone sleeps.  All
 * atomics are GLib's, which are sequentially consistent, so one of the two always sees the other.
 */
#include "cpu-pool.h"

#include <lamina/error.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void) 0)
#endif

/* How long a thread spins before it sleeps. */
#define LMN_CPU_POOL_SPIN_US 50

typedef struct {
    LmnCpuPool *pool;
    guint index; /* 1 .. n_threads - 1; chunk 0 belongs to the caller */
} Worker;

struct _LmnCpuPool {
    guint n_threads;
    GThread **threads;
    Worker *workers;

    GMutex lock;
    GCond wake;           /* sleeping workers wait here for a new generation */
    GCond done;           /* a sleeping caller waits here for remaining == 0 */
    gint generation;      /* atomic; bumped once per loop, after the loop's fields are written */
    gint quit;            /* atomic */
    gint sleepers;        /* atomic: workers asleep or about to be */
    gint caller_sleeping; /* atomic */

    /* The current loop, written by the caller before the generation changes and read by the
     * workers after they see it change. */
    LmnCpuPoolFunc func;
    LmnCpuPoolIndexedFunc func_indexed; /* used instead of func when set */
    gpointer data;
    gsize n;
    gsize chunk;
    guint n_chunks;
    gint remaining; /* atomic: workers that have not finished this generation */
};

/* Spins until *@value differs from @seen (or the pool quits) or the spin time runs out.
 * Returns: TRUE when it changed. */
static gboolean spin_until_changed(const LmnCpuPool *pool, const gint *value, gint seen)
{
    gint64 deadline = 0;
    for (guint i = 1;; i++) {
        if (g_atomic_int_get(value) != seen || g_atomic_int_get(&pool->quit))
            return TRUE;
        CPU_RELAX();
        if ((i & 255) == 0) {
            gint64 now = g_get_monotonic_time();
            if (deadline == 0)
                deadline = now + LMN_CPU_POOL_SPIN_US;
            else if (now >= deadline)
                return FALSE;
        }
    }
}

/* Waits (spinning, then asleep) for a generation other than @seen. */
static void wait_for_work(LmnCpuPool *pool, gint seen)
{
    if (spin_until_changed(pool, &pool->generation, seen))
        return;
    g_mutex_lock(&pool->lock);
    g_atomic_int_inc(&pool->sleepers);
    while (g_atomic_int_get(&pool->generation) == seen && !g_atomic_int_get(&pool->quit))
        g_cond_wait(&pool->wake, &pool->lock);
    g_atomic_int_add(&pool->sleepers, -1);
    g_mutex_unlock(&pool->lock);
}

static gpointer worker_main(gpointer user_data)
{
    Worker *w = user_data;
    LmnCpuPool *pool = w->pool;
    /* Generation 0 is the state at creation.  Reading pool->generation here instead would miss
     * a loop started before this thread got to run, and the caller would wait forever. */
    gint seen = 0;
    for (;;) {
        wait_for_work(pool, seen);
        if (g_atomic_int_get(&pool->quit))
            break;
        seen = g_atomic_int_get(&pool->generation);
        /* Every worker reports every generation, chunk or not, so the caller cannot write the
         * next loop's fields while a late worker still reads this one's. */
        if (w->index < pool->n_chunks) {
            gsize begin = w->index * pool->chunk;
            gsize end = MIN(pool->n, begin + pool->chunk);
            if (pool->func_indexed != NULL)
                pool->func_indexed(begin, end, w->index, pool->data);
            else
                pool->func(begin, end, pool->data);
        }
        if (g_atomic_int_dec_and_test(&pool->remaining) &&
            g_atomic_int_get(&pool->caller_sleeping)) {
            g_mutex_lock(&pool->lock);
            g_cond_signal(&pool->done);
            g_mutex_unlock(&pool->lock);
        }
    }
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
    g_atomic_int_set(&pool->quit, 1);
    g_mutex_lock(&pool->lock);
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

/* Waits (spinning, then asleep) for every worker to report the current generation. */
static void wait_for_workers(LmnCpuPool *pool)
{
    if (g_atomic_int_get(&pool->remaining) == 0)
        return;
    gint64 deadline = 0;
    for (guint i = 1; g_atomic_int_get(&pool->remaining) != 0; i++) {
        CPU_RELAX();
        if ((i & 255) == 0) {
            gint64 now = g_get_monotonic_time();
            if (deadline == 0)
                deadline = now + LMN_CPU_POOL_SPIN_US;
            else if (now >= deadline)
                break;
        }
    }
    g_mutex_lock(&pool->lock);
    g_atomic_int_set(&pool->caller_sleeping, 1);
    while (g_atomic_int_get(&pool->remaining) != 0)
        g_cond_wait(&pool->done, &pool->lock);
    g_atomic_int_set(&pool->caller_sleeping, 0);
    g_mutex_unlock(&pool->lock);
}

/* Publishes a loop to the workers (its fields first, then the generation) and wakes any that
 * sleep. */
static void start_loop(LmnCpuPool *pool, LmnCpuPoolFunc func, LmnCpuPoolIndexedFunc func_indexed,
                       gpointer data, gsize n, gsize chunk, guint n_chunks)
{
    pool->func = func;
    pool->func_indexed = func_indexed;
    pool->data = data;
    pool->n = n;
    pool->chunk = chunk;
    pool->n_chunks = n_chunks;
    g_atomic_int_set(&pool->remaining, (gint) pool->n_threads - 1);
    g_atomic_int_inc(&pool->generation);
    if (g_atomic_int_get(&pool->sleepers) > 0) {
        g_mutex_lock(&pool->lock);
        g_cond_broadcast(&pool->wake);
        g_mutex_unlock(&pool->lock);
    }
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

    start_loop(pool, func, NULL, data, n, chunk, (guint) n_chunks);
    func(0, chunk, data);
    wait_for_workers(pool);
}

guint lmn_cpu_pool_indexed_chunks(const LmnCpuPool *pool, gsize n)
{
    if (n == 0)
        return 1;
    /* Equal chunks of ceil(n / threads); with n = 4 on 3 threads that is 2 chunks of 2. */
    gsize per = (n + pool->n_threads - 1) / pool->n_threads;
    return (guint) ((n + per - 1) / per);
}

void lmn_cpu_pool_run_indexed(LmnCpuPool *pool, gsize n, LmnCpuPoolIndexedFunc func, gpointer data)
{
    if (n == 0)
        return;
    const guint n_chunks = lmn_cpu_pool_indexed_chunks(pool, n);
    const gsize chunk = (n + n_chunks - 1) / n_chunks;
    if (n_chunks == 1) {
        func(0, n, 0, data);
        return;
    }
    start_loop(pool, NULL, func, data, n, chunk, n_chunks);
    func(0, chunk, 0, data);
    wait_for_workers(pool);
}
