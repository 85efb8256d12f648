/* The CPU backend's thread pool (plugins/backends/cpu/cpu-pool.c, compiled into this test):
 * every index of every loop runs exactly once, on any thread count, whether the workers are
 * still spinning when a loop starts (loops back to back) or asleep (a pause between loops), and
 * the pool shuts down from either state.  A lost wake-up shows as the test's timeout. */
#include "../../plugins/backends/cpu/cpu-pool.h"

#include <glib.h>

typedef struct {
    gint *hits; /* one counter per index, bumped atomically */
} Visit;

static void visit(gsize begin, gsize end, gpointer data)
{
    Visit *v = data;
    for (gsize i = begin; i < end; i++)
        g_atomic_int_inc(&v->hits[i]);
}

/* Runs @loops loops over @n indices, pausing @pause_us between them, and checks every index
 * ran exactly once per loop. */
static void check_loops(guint n_threads, gsize n, guint loops, gulong pause_us)
{
    g_autoptr(GError) error = NULL;
    LmnCpuPool *pool = lmn_cpu_pool_new(n_threads, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(lmn_cpu_pool_get_n_threads(pool), ==, n_threads);
    Visit v = {.hits = g_new0(gint, n)};
    for (guint l = 0; l < loops; l++) {
        lmn_cpu_pool_run(pool, n, 1, visit, &v);
        if (pause_us > 0)
            g_usleep(pause_us);
    }
    for (gsize i = 0; i < n; i++)
        if (v.hits[i] != (gint) loops)
            g_error("threads %u, n %zu: index %zu ran %d times in %u loops", n_threads, n, i,
                    v.hits[i], loops);
    g_free(v.hits);
    lmn_cpu_pool_free(pool);
}

static void test_sizes(void)
{
    const guint threads[] = {1, 2, 3, 4, 8};
    const gsize sizes[] = {1, 15, 16, 17, 33, 100, 1000, 4097};
    for (guint t = 0; t < G_N_ELEMENTS(threads); t++)
        for (guint s = 0; s < G_N_ELEMENTS(sizes); s++)
            check_loops(threads[t], sizes[s], 3, 0);
}

/* Back to back: workers find each loop while still spinning on the last one. */
static void test_back_to_back(void)
{
    check_loops(2, 64, 50000, 0);
    check_loops(4, 256, 20000, 0);
}

/* A pause longer than the spin between loops: every loop wakes sleeping workers. */
static void test_asleep(void)
{
    check_loops(2, 64, 200, 300);
    check_loops(3, 64, 100, 300);
}

/* Pauses around the spin time, so loops start while workers are deciding to sleep. */
static void test_edge_of_sleep(void)
{
    for (gulong us = 20; us <= 80; us += 10)
        check_loops(2, 64, 300, us);
}

/* Freeing right after a loop (workers spinning) and after a pause (workers asleep). */
static void test_free(void)
{
    for (guint i = 0; i < 200; i++) {
        g_autoptr(GError) error = NULL;
        LmnCpuPool *pool = lmn_cpu_pool_new(2 + i % 3, &error);
        g_assert_no_error(error);
        gint hits[64] = {0};
        Visit v = {.hits = hits};
        lmn_cpu_pool_run(pool, 64, 1, visit, &v);
        if (i % 2 == 1)
            g_usleep(200);
        lmn_cpu_pool_free(pool);
        for (guint k = 0; k < 64; k++)
            g_assert_cmpint(hits[k], ==, 1);
    }
}

typedef struct {
    gint *hits;
    gint *chunk_of; /* the chunk each index ran in */
} IndexedVisit;

static void visit_indexed(gsize begin, gsize end, guint chunk, gpointer data)
{
    IndexedVisit *v = data;
    for (gsize i = begin; i < end; i++) {
        g_atomic_int_inc(&v->hits[i]);
        v->chunk_of[i] = (gint) chunk;
    }
}

/* The indexed loop: every index once, chunk numbers below lmn_cpu_pool_indexed_chunks(), in
 * order over contiguous, equal chunks (the last shorter). */
static void test_indexed(void)
{
    for (guint t = 1; t <= 5; t++) {
        g_autoptr(GError) error = NULL;
        LmnCpuPool *pool = lmn_cpu_pool_new(t, &error);
        g_assert_no_error(error);
        for (gsize n = 1; n <= 23; n++) {
            gint hits[23] = {0}, chunk_of[23] = {0};
            IndexedVisit v = {hits, chunk_of};
            lmn_cpu_pool_run_indexed(pool, n, visit_indexed, &v);
            guint chunks = lmn_cpu_pool_indexed_chunks(pool, n);
            g_assert_cmpuint(chunks, >=, 1);
            g_assert_cmpuint(chunks, <=, MIN(n, t));
            gsize per = (n + chunks - 1) / chunks;
            for (gsize i = 0; i < n; i++) {
                g_assert_cmpint(hits[i], ==, 1);
                g_assert_cmpint(chunk_of[i], ==, (gint) (i / per));
            }
            g_assert_cmpint(chunk_of[n - 1], ==, (gint) chunks - 1);
        }
        lmn_cpu_pool_free(pool);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/cpu-pool/sizes", test_sizes);
    g_test_add_func("/cpu-pool/back-to-back", test_back_to_back);
    g_test_add_func("/cpu-pool/asleep", test_asleep);
    g_test_add_func("/cpu-pool/edge-of-sleep", test_edge_of_sleep);
    g_test_add_func("/cpu-pool/free", test_free);
    g_test_add_func("/cpu-pool/indexed", test_indexed);
    return g_test_run();
}
