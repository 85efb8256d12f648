/* Lamina CPU backend — a fixed set of worker threads running parallel-for loops.
 *
 * Threads are created once when the backend opens, so an op never pays for thread creation.
 * A loop over [0, n) is cut into at most one contiguous chunk per thread; the calling thread
 * runs the first chunk itself and then waits for the others.  Chunk boundaries depend only on n,
 * the grain and the thread count, never on timing.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _LmnCpuPool LmnCpuPool;

/** LmnCpuPoolFunc: runs indices [begin, end) of a loop. */
typedef void (*LmnCpuPoolFunc)(gsize begin, gsize end, gpointer data);

/** lmn_cpu_pool_new: starts @n_threads - 1 workers (the caller is the n-th). */
LmnCpuPool *lmn_cpu_pool_new(guint n_threads, GError **error);
/** lmn_cpu_pool_free: stops and joins the workers. */
void lmn_cpu_pool_free(LmnCpuPool *pool);
/** lmn_cpu_pool_get_n_threads: Returns: the thread count, the caller included. */
guint lmn_cpu_pool_get_n_threads(const LmnCpuPool *pool);
/**
 * lmn_cpu_pool_run:
 * Runs @func over [0, @n).  With @min_chunk > 0, the loop is split only into chunks of at least
 * @min_chunk indices, so small loops run on the caller alone with no synchronisation at all.
 * Returns when every chunk is done.  Not reentrant: one loop at a time per pool.
 */
void lmn_cpu_pool_run(LmnCpuPool *pool, gsize n, gsize min_chunk, LmnCpuPoolFunc func,
                      gpointer data);

/** LmnCpuPoolIndexedFunc: runs indices [begin, end), chunk @chunk of the loop. */
typedef void (*LmnCpuPoolIndexedFunc)(gsize begin, gsize end, guint chunk, gpointer data);

/**
 * lmn_cpu_pool_run_indexed:
 * Runs @func over [0, @n) cut into min(@n, threads) chunks of equal size (the last shorter), each
 * told its chunk number, so that it can use per-chunk scratch.  Chunk boundaries depend only on
 * @n and the thread count.  Not reentrant, like lmn_cpu_pool_run().
 */
void lmn_cpu_pool_run_indexed(LmnCpuPool *pool, gsize n, LmnCpuPoolIndexedFunc func, gpointer data);
/** lmn_cpu_pool_indexed_chunks: Returns: the chunks lmn_cpu_pool_run_indexed() cuts [0, @n) into.
 */
guint lmn_cpu_pool_indexed_chunks(const LmnCpuPool *pool, gsize n);

G_END_DECLS
