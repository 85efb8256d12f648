/* Benchmark: LmnBatchReader throughput on a dataset file, memory vs streaming mode.
 *
 *   bench/reader-throughput [FILE:/split] [BATCH] [CONSUMER_SAMPLES_PER_S]
 *
 * For each mode it reads one shuffled epoch as fast as possible (samples/s, MB/s of decoded
 * float32 and of raw stored bytes), then one epoch with a consumer that spends BATCH / RATE
 * seconds per batch (default rate 40000 samples/s, the reference MLP's training rate on a
 * 2-core machine) and reports the fraction of time the consumer waited for data.
 */
#include <lamina/lamina.h>

#include <stdio.h>
#include <stdlib.h>

static void spin(double seconds)
{
    gint64 end = g_get_monotonic_time() + (gint64) (seconds * 1e6);
    while (g_get_monotonic_time() < end) {
    }
}

static void run(const char *spec, double budget_mb, gint64 batch, double rate, gboolean prefetch)
{
    g_autoptr(GError) error = NULL;
    gint64 t0 = g_get_monotonic_time();
    LmnDataset *ds = lmn_dataset_open_with_budget(spec, budget_mb, &error);
    if (ds == NULL) {
        fprintf(stderr, "reader-throughput: %s\n", error->message);
        exit(1);
    }
    double open_s = (double) (g_get_monotonic_time() - t0) / 1e6;
    gint64 numel = lmn_shape_numel(lmn_dataset_get_sample_shape(ds));
    gint64 n = lmn_dataset_get_length(ds);
    LmnBatchReaderOptions o = {
        .batch_size = batch, .seed = 1, .shuffle = TRUE, .prefetch = prefetch, .depth = 4};
    LmnBatchReader *r = lmn_batch_reader_new(ds, &o, &error);
    g_autofree float *x = g_new(float, batch * numel);
    g_autofree gint32 *y = g_new(gint32, batch * 64);
    const char *mode = lmn_dataset_is_streaming(ds) ? "streaming" : "memory";
    for (int consume = 0; consume < 2; consume++) {
        lmn_batch_reader_seek(r, consume, 0);
        double w0 = lmn_batch_reader_get_wait_seconds(r);
        gint64 s0 = g_get_monotonic_time();
        gint64 m, total = 0;
        while ((m = lmn_batch_reader_next(r, x, y, NULL, &error)) > 0) {
            total += m;
            if (consume) {
                spin((double) m / rate);
            }
        }
        if (m < 0) {
            fprintf(stderr, "reader-throughput: %s\n", error->message);
            exit(1);
        }
        double secs = (double) (g_get_monotonic_time() - s0) / 1e6;
        double wait = lmn_batch_reader_get_wait_seconds(r) - w0;
        if (!consume) {
            printf("%-9s prefetch=%d  open %.2fs  %8.0f samples/s  %7.1f MB/s decoded  "
                   "%6.1f MB/s raw uint8\n",
                   mode, prefetch, open_s, (double) total / secs,
                   (double) total * (double) numel * 4 / secs / 1e6,
                   (double) total * (double) numel / secs / 1e6);
        } else {
            printf("%-9s prefetch=%d  with a %.0f samples/s consumer: epoch %.2fs, waited "
                   "%.3fs (%.1f%% of the epoch)\n",
                   mode, prefetch, rate, secs, wait, 100.0 * wait / secs);
        }
    }
    (void) n;
    lmn_batch_reader_free(r);
    lmn_dataset_free(ds);
}

int main(int argc, char **argv)
{
    const char *spec = argc > 1 ? argv[1] : "data/fashion-mnist.h5:/train";
    gint64 batch = argc > 2 ? atoll(argv[2]) : 128;
    double rate = argc > 3 ? atof(argv[3]) : 40000.0;
    for (int prefetch = 1; prefetch >= 0; prefetch--) {
        run(spec, 4096.0, batch, rate, prefetch);
        run(spec, 1.0, batch, rate, prefetch);
    }
    return 0;
}
