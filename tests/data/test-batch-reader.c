/* Tests of streaming datasets and LmnBatchReader: coverage, determinism, resume, errors. */
#include <lamina/lamina.h>

#include <math.h>
#include <string.h>

#include <glib/gstdio.h>
#include <hdf5.h>

#define N 5000
#define F 4
#define CHUNK 100
#define BATCH 32
/* 5000 * 4 floats = 78 KiB decoded; 0.01 MiB forces streaming. */
#define TINY_MB 0.01

typedef struct {
    char *dir;
    char *file;
    char *spec;
} Fixture;

/* Writes /train with x[i] = (i, 2i, 3i, 4i) float32 chunked by CHUNK rows, y[i] = i % 10;
 * @nan_at >= 0 puts a NaN in that sample. */
static void write_file(const char *path, gint64 nan_at)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t xd[2] = {N, F}, chunk[2] = {CHUNK, F}, yd[1] = {N};
    g_autofree float *x = g_new(float, N * F);
    g_autofree gint32 *y = g_new(gint32, N);
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < F; k++) {
            x[i * F + k] = (float) (i * (k + 1));
        }
        y[i] = i % 10;
    }
    if (nan_at >= 0) {
        x[nan_at * F + 2] = NAN;
    }
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 2, chunk);
    H5Pset_deflate(dcpl, 1);
    hid_t xs = H5Screate_simple(2, xd, NULL);
    hid_t xds = H5Dcreate2(g, "x", H5T_IEEE_F32LE, xs, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    g_assert_cmpint(H5Dwrite(xds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), >=, 0);
    hid_t ys = H5Screate_simple(1, yd, NULL);
    hid_t yds = H5Dcreate2(g, "y", H5T_STD_I32LE, ys, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(H5Dwrite(yds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y), >=, 0);
    H5Dclose(yds);
    H5Sclose(ys);
    H5Dclose(xds);
    H5Sclose(xs);
    H5Pclose(dcpl);
    H5Gclose(g);
    H5Fclose(f);
}

static void fixture_setup(Fixture *f, gconstpointer data)
{
    (void) data;
    f->dir = g_dir_make_tmp("lamina-reader-XXXXXX", NULL);
    g_assert_nonnull(f->dir);
    f->file = g_build_filename(f->dir, "data.h5", NULL);
    f->spec = g_strdup_printf("%s:/train", f->file);
    write_file(f->file, -1);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    (void) data;
    g_unlink(f->file);
    g_rmdir(f->dir);
    g_free(f->spec);
    g_free(f->file);
    g_free(f->dir);
}

typedef struct {
    guint32 idx[N];
    float x[N * F];
    gint32 y[N];
    gint64 n;
} Epoch;

/* Reads batches [first, end of epoch) of @epoch into @out (appending at out->n). */
static void read_epoch(LmnBatchReader *r, gint64 epoch, gint64 first, Epoch *out)
{
    lmn_batch_reader_seek(r, epoch, first);
    gint64 m;
    g_autoptr(GError) error = NULL;
    while ((m = lmn_batch_reader_next(r, out->x + out->n * F, out->y + out->n,
                                      out->idx + out->n, &error)) > 0) {
        g_assert_cmpint(m, <=, BATCH);
        out->n += m;
    }
    g_assert_no_error(error);
    g_assert_cmpint(m, ==, 0);
}

static LmnBatchReader *reader(LmnDataset *ds, guint64 seed, gboolean shuffle, gboolean prefetch)
{
    LmnBatchReaderOptions o = {
        .batch_size = BATCH, .seed = seed, .shuffle = shuffle, .prefetch = prefetch};
    g_autoptr(GError) error = NULL;
    LmnBatchReader *r = lmn_batch_reader_new(ds, &o, &error);
    g_assert_no_error(error);
    return r;
}

/* Every sample exactly once, with its own x and y. */
static void assert_complete(const Epoch *e, gint64 n, const LmnDataset *ds)
{
    g_assert_cmpint(e->n, ==, n);
    g_autofree guint8 *seen = g_new0(guint8, N);
    for (gint64 s = 0; s < n; s++) {
        guint32 i = e->idx[s];
        g_assert_cmpuint(i, <, n);
        g_assert_cmpint(seen[i], ==, 0);
        seen[i] = 1;
        /* After a split, x encodes the file row: check y agrees with x. */
        float row = e->x[s * F];
        for (int k = 0; k < F; k++) {
            g_assert_cmpfloat(e->x[s * F + k], ==, row * (float) (k + 1));
        }
        g_assert_cmpint(e->y[s], ==, (gint32) row % 10);
        if (ds != NULL && lmn_dataset_get_length(ds) == N) {
            g_assert_cmpfloat(row, ==, (float) i);
        }
    }
}

static gboolean same_order(const Epoch *a, const Epoch *b)
{
    return a->n == b->n && memcmp(a->idx, b->idx, (gsize) a->n * sizeof(guint32)) == 0;
}

static gint64 fixed_points(const Epoch *e)
{
    gint64 k = 0;
    for (gint64 s = 0; s < e->n; s++) {
        k += e->idx[s] == (guint32) s;
    }
    return k;
}

static void test_budget_selects_mode(Fixture *f, gconstpointer data)
{
    (void) data;
    g_autoptr(GError) error = NULL;
    LmnDataset *mem = lmn_dataset_open_with_budget(f->spec, 100.0, &error);
    g_assert_no_error(error);
    g_assert_false(lmn_dataset_is_streaming(mem));
    LmnDataset *st = lmn_dataset_open_with_budget(f->spec, TINY_MB, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_dataset_is_streaming(st));
    g_setenv("LAMINA_DATA_BUDGET", "0.01", TRUE);
    LmnDataset *env = lmn_dataset_open(f->spec, &error);
    g_unsetenv("LAMINA_DATA_BUDGET");
    g_assert_no_error(error);
    g_assert_true(lmn_dataset_is_streaming(env));
    /* The streaming gather reads what the in-memory one holds. */
    guint32 idx[] = {4999, 0, 1, 2, 1234, 77};
    float a[6 * F], b[6 * F];
    gint32 ya[6], yb[6];
    lmn_dataset_gather(mem, idx, 6, a, ya);
    g_assert_true(lmn_dataset_read(st, idx, 6, b, yb, &error));
    g_assert_no_error(error);
    g_assert_cmpmem(a, sizeof a, b, sizeof b);
    g_assert_cmpmem(ya, sizeof ya, yb, sizeof yb);
    lmn_dataset_free(env);
    lmn_dataset_free(st);
    lmn_dataset_free(mem);
}

static void test_streaming_epoch(Fixture *f, gconstpointer data)
{
    (void) data;
    g_autoptr(GError) error = NULL;
    LmnDataset *ds = lmn_dataset_open_with_budget(f->spec, TINY_MB, &error);
    g_assert_no_error(error);
    Epoch *e[4];
    for (int i = 0; i < 4; i++) {
        e[i] = g_new0(Epoch, 1);
    }
    LmnBatchReader *r1 = reader(ds, 1, TRUE, TRUE);
    LmnBatchReader *r2 = reader(ds, 1, TRUE, FALSE);
    LmnBatchReader *r3 = reader(ds, 2, TRUE, TRUE);
    g_assert_cmpint(lmn_batch_reader_get_batches_per_epoch(r1), ==, (N + BATCH - 1) / BATCH);
    read_epoch(r1, 0, 0, e[0]);
    read_epoch(r2, 0, 0, e[1]);
    read_epoch(r3, 0, 0, e[2]);
    read_epoch(r1, 1, 0, e[3]);
    for (int i = 0; i < 4; i++) {
        assert_complete(e[i], N, ds);
    }
    /* Prefetching or not, the same seed gives the same order; seed and epoch change it. */
    g_assert_true(same_order(e[0], e[1]));
    g_assert_cmpmem(e[0]->x, sizeof e[0]->x, e[1]->x, sizeof e[1]->x);
    g_assert_false(same_order(e[0], e[2]));
    g_assert_false(same_order(e[0], e[3]));
    /* Shuffled, not file order: a random order has about one fixed point. */
    g_assert_cmpint(fixed_points(e[0]), <, 50);
    /* Chunks are shuffled: the first batch is not drawn from the first chunks only. */
    guint32 maxfirst = 0;
    for (int s = 0; s < BATCH; s++) {
        maxfirst = MAX(maxfirst, e[0]->idx[s]);
    }
    g_assert_cmpuint(maxfirst, >=, 3 * CHUNK);
    g_assert_cmpfloat(lmn_batch_reader_get_wait_seconds(r1), >=, 0.0);
    gint64 ep, bi;
    lmn_batch_reader_get_position(r1, &ep, &bi);
    g_assert_cmpint(ep, ==, 1);
    g_assert_cmpint(bi, ==, lmn_batch_reader_get_batches_per_epoch(r1));
    lmn_batch_reader_free(r1);
    lmn_batch_reader_free(r2);
    lmn_batch_reader_free(r3);
    for (int i = 0; i < 4; i++) {
        g_free(e[i]);
    }
    lmn_dataset_free(ds);
}

/* Resuming at (epoch, batch) continues exactly as an uninterrupted reader. */
static void test_resume(Fixture *f, gconstpointer data)
{
    gboolean streaming = GPOINTER_TO_INT(data);
    g_autoptr(GError) error = NULL;
    LmnDataset *ds = lmn_dataset_open_with_budget(f->spec, streaming ? TINY_MB : 100, &error);
    g_assert_no_error(error);
    g_assert_cmpint(lmn_dataset_is_streaming(ds), ==, streaming);
    g_autofree Epoch *full = g_new0(Epoch, 1);
    g_autofree Epoch *part = g_new0(Epoch, 1);
    LmnBatchReader *a = reader(ds, 7, TRUE, TRUE);
    read_epoch(a, 3, 0, full);
    for (gint64 k = 0; k < full->n / BATCH; k += 37) {
        LmnBatchReader *b = reader(ds, 7, TRUE, k % 2 == 0);
        part->n = k * BATCH;
        read_epoch(b, 3, k, part);
        g_assert_cmpmem(full->idx + k * BATCH, (gsize) (N - k * BATCH) * sizeof(guint32),
                        part->idx + k * BATCH, (gsize) (N - k * BATCH) * sizeof(guint32));
        g_assert_cmpmem(full->x + k * BATCH * F, (gsize) (N - k * BATCH) * F * sizeof(float),
                        part->x + k * BATCH * F, (gsize) (N - k * BATCH) * F * sizeof(float));
        lmn_batch_reader_free(b);
    }
    lmn_batch_reader_free(a);
    lmn_dataset_free(ds);
}

/* In memory the order is the training loop's full permutation. */
static void test_memory_order(Fixture *f, gconstpointer data)
{
    (void) data;
    g_autoptr(GError) error = NULL;
    LmnDataset *ds = lmn_dataset_open_with_budget(f->spec, 100, &error);
    g_assert_no_error(error);
    g_autofree Epoch *e = g_new0(Epoch, 1);
    LmnBatchReader *r = reader(ds, 5, TRUE, TRUE);
    read_epoch(r, 2, 0, e);
    assert_complete(e, N, ds);
    g_autofree guint32 *want = g_new(guint32, N);
    for (int i = 0; i < N; i++) {
        want[i] = (guint32) i;
    }
    LmnRandom rng;
    lmn_random_init(&rng, 5, LMN_STREAM(LMN_STREAM_SHUFFLE, 2));
    lmn_random_shuffle(&rng, want, N);
    g_assert_cmpmem(e->idx, N * sizeof(guint32), want, N * sizeof(guint32));
    /* Without shuffling: file order, in both modes. */
    LmnDataset *st = lmn_dataset_open_with_budget(f->spec, TINY_MB, &error);
    g_assert_no_error(error);
    LmnBatchReader *r2 = reader(st, 5, FALSE, TRUE);
    g_autofree Epoch *e2 = g_new0(Epoch, 1);
    read_epoch(r2, 0, 0, e2);
    assert_complete(e2, N, st);
    g_assert_cmpint(fixed_points(e2), ==, N);
    lmn_batch_reader_free(r2);
    lmn_batch_reader_free(r);
    lmn_dataset_free(st);
    lmn_dataset_free(ds);
}

/* A streaming split: both parts stream, hold the rows the in-memory split holds. */
static void test_streaming_split(Fixture *f, gconstpointer data)
{
    (void) data;
    g_autoptr(GError) error = NULL;
    LmnDataset *mem = lmn_dataset_open_with_budget(f->spec, 100, &error);
    LmnDataset *st = lmn_dataset_open_with_budget(f->spec, TINY_MB, &error);
    g_assert_no_error(error);
    LmnDataset *mv = lmn_dataset_split(mem, 0.1, 3, &error);
    LmnDataset *sv = lmn_dataset_split(st, 0.1, 3, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_dataset_is_streaming(sv));
    LmnDataset *pairs[2][2] = {{mem, st}, {mv, sv}};
    for (int p = 0; p < 2; p++) {
        gint64 n = lmn_dataset_get_length(pairs[p][0]);
        g_assert_cmpint(n, ==, lmn_dataset_get_length(pairs[p][1]));
        g_autofree Epoch *e = g_new0(Epoch, 1);
        LmnBatchReader *r = reader(pairs[p][1], 9, TRUE, TRUE);
        read_epoch(r, 0, 0, e);
        assert_complete(e, n, NULL);
        /* Each delivered sample is the in-memory sample of that index. */
        g_autofree float *want = g_new(float, n * F);
        lmn_dataset_gather(pairs[p][0], e->idx, (gsize) n, want, NULL);
        g_assert_cmpmem(want, (gsize) n * F * sizeof(float), e->x, (gsize) n * F * sizeof(float));
        lmn_batch_reader_free(r);
    }
    lmn_dataset_free(sv);
    lmn_dataset_free(mv);
    lmn_dataset_free(st);
    lmn_dataset_free(mem);
}

/* Rank @rank's rows of each batch of an epoch of @n samples, as the trainer takes them. */
static gboolean in_rank_slice(gint64 pos, gint64 n, int rank, int ranks)
{
    gint64 s0 = pos / BATCH * BATCH, m = MIN(BATCH, n - s0), o = pos - s0;
    return o >= rank * m / ranks && o < (rank + 1) * m / ranks;
}

/* Data-parallel slices: a reader for rank r of R delivers the unsliced reader's order, labels
 * and (in its slice) samples, and reads from the file only its slice: the ranks' reads add up
 * to one reader's, each reads its share.  On the whole split and on the part a split keeps
 * (row maps), with 2 and 3 ranks (the last batch of 5000 % 32 = 8 does not divide by 3). */
static void test_streaming_slices(Fixture *f, gconstpointer data)
{
    int ranks = GPOINTER_TO_INT(data);
    for (int split = 0; split < 2; split++) {
        g_autoptr(GError) error = NULL;
        LmnDataset *ds = lmn_dataset_open_with_budget(f->spec, TINY_MB, &error);
        g_assert_no_error(error);
        LmnDataset *held = split ? lmn_dataset_split(ds, 0.1, 3, &error) : NULL;
        g_assert_no_error(error);
        gint64 n = lmn_dataset_get_length(ds);
        g_autofree Epoch *full = g_new0(Epoch, 1);
        LmnBatchReader *r = reader(ds, 5, TRUE, TRUE);
        read_epoch(r, 1, 0, full);
        lmn_batch_reader_free(r);
        g_assert_cmpint(lmn_dataset_get_rows_read(ds), ==, n);
        gint64 total = 0;
        for (int rank = 0; rank < ranks; rank++) {
            LmnDataset *d = lmn_dataset_open_with_budget(f->spec, TINY_MB, &error);
            g_assert_no_error(error);
            LmnDataset *h = split ? lmn_dataset_split(d, 0.1, 3, &error) : NULL;
            g_assert_no_error(error);
            LmnBatchReaderOptions o = {.batch_size = BATCH,
                                       .seed = 5,
                                       .shuffle = TRUE,
                                       .prefetch = rank % 2 == 0,
                                       .slice_rank = rank,
                                       .slice_count = ranks};
            r = lmn_batch_reader_new(d, &o, &error);
            g_assert_no_error(error);
            g_autofree Epoch *part = g_new0(Epoch, 1);
            read_epoch(r, 1, 0, part);
            g_assert_true(same_order(full, part));
            g_assert_cmpmem(full->y, (gsize) n * sizeof(gint32), part->y,
                            (gsize) n * sizeof(gint32));
            gint64 mine = 0;
            for (gint64 pos = 0; pos < n; pos++) {
                if (!in_rank_slice(pos, n, rank, ranks))
                    continue;
                mine++;
                g_assert_cmpmem(full->x + pos * F, F * sizeof(float), part->x + pos * F,
                                F * sizeof(float));
            }
            g_assert_cmpint(lmn_dataset_get_rows_read(d), ==, mine);
            total += mine;
            lmn_batch_reader_free(r);
            if (h)
                lmn_dataset_free(h);
            lmn_dataset_free(d);
        }
        g_assert_cmpint(total, ==, n);
        if (held)
            lmn_dataset_free(held);
        lmn_dataset_free(ds);
    }
}

/* Augmentation depends on (seed, epoch, index) only: streaming with prefetch equals applying
 * it to the plain samples. */
static void test_augment_through_reader(Fixture *f, gconstpointer data)
{
    (void) data;
    g_autoptr(GError) error = NULL;
    LmnDataset *st = lmn_dataset_open_with_budget(f->spec, TINY_MB, &error);
    g_assert_no_error(error);
    LmnAugmentConfig aug = {.noise_std = 0.5, .brightness = 0.25};
    LmnBatchReaderOptions o = {
        .batch_size = BATCH, .seed = 4, .shuffle = TRUE, .augment = &aug, .prefetch = TRUE};
    LmnBatchReader *r = lmn_batch_reader_new(st, &o, &error);
    g_assert_no_error(error);
    g_autofree Epoch *e = g_new0(Epoch, 1);
    read_epoch(r, 1, 0, e);
    LmnShape shape = lmn_shape_make(1, (gint64) F);
    float scratch[F];
    gint64 changed = 0;
    for (gint64 s = 0; s < N; s++) {
        float want[F];
        for (int k = 0; k < F; k++) {
            want[k] = (float) e->idx[s] * (float) (k + 1);
        }
        lmn_augment_apply(&aug, NULL, &shape, 4, 1, e->idx[s], want, scratch);
        g_assert_cmpmem(want, sizeof want, e->x + s * F, sizeof want);
        changed += e->x[s * F + 1] != (float) e->idx[s] * 2.0f;
    }
    g_assert_cmpint(changed, >, N - 10);
    /* Spatial transforms need images. */
    LmnAugmentConfig flip = {.hflip = 0.5};
    o.augment = &flip;
    g_assert_null(lmn_batch_reader_new(st, &o, &error));
    g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE);
    g_assert_nonnull(strstr(error->message, "hflip"));
    g_assert_nonnull(strstr(error->message, f->file));
    lmn_batch_reader_free(r);
    lmn_dataset_free(st);
}

/* NaN in a streamed file surfaces from next() with the sample's index. */
static void test_streaming_nan(Fixture *f, gconstpointer data)
{
    (void) data;
    write_file(f->file, 1234);
    g_autoptr(GError) error = NULL;
    LmnDataset *mem = lmn_dataset_open_with_budget(f->spec, 100, &error);
    g_assert_null(mem);
    g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE);
    g_clear_error(&error);
    LmnDataset *st = lmn_dataset_open_with_budget(f->spec, TINY_MB, &error);
    g_assert_no_error(error);
    for (int prefetch = 0; prefetch < 2; prefetch++) {
        LmnBatchReader *r = reader(st, 1, FALSE, prefetch);
        float x[BATCH * F];
        gint32 y[BATCH];
        gint64 m, total = 0;
        while ((m = lmn_batch_reader_next(r, x, y, NULL, &error)) > 0) {
            total += m;
        }
        g_assert_cmpint(m, ==, -1);
        /* Rows are read a chunk at a time: the batch that first needs chunk 12 fails. */
        g_assert_cmpint(total, ==, (1234 / CHUNK * CHUNK) / BATCH * BATCH);
        g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE);
        g_assert_nonnull(strstr(error->message, "sample 1234"));
        g_assert_nonnull(strstr(error->message, "/train/x"));
        g_clear_error(&error);
        lmn_batch_reader_free(r);
    }
    lmn_dataset_free(st);
}

/* Adds /train/z float32 [N, 3] = (i + 0.5, -i, 2i) and /train/aux int32 [N] = 7i mod 13. */
static void write_targets(const char *path)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "train", H5P_DEFAULT);
    g_autofree float *z = g_new(float, N * 3);
    g_autofree gint32 *aux = g_new(gint32, N);
    for (int i = 0; i < N; i++) {
        z[i * 3] = (float) i + 0.5f;
        z[i * 3 + 1] = (float) -i;
        z[i * 3 + 2] = (float) (2 * i);
        aux[i] = (7 * i) % 13;
    }
    hsize_t zd[2] = {N, 3}, ad[1] = {N};
    hid_t zs = H5Screate_simple(2, zd, NULL), as = H5Screate_simple(1, ad, NULL);
    hid_t zds = H5Dcreate2(g, "z", H5T_IEEE_F32LE, zs, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t ads = H5Dcreate2(g, "aux", H5T_STD_U8LE, as, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(H5Dwrite(zds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, z), >=, 0);
    g_assert_cmpint(H5Dwrite(ads, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, aux), >=, 0);
    H5Dclose(zds);
    H5Dclose(ads);
    H5Sclose(zs);
    H5Sclose(as);
    H5Gclose(g);
    H5Fclose(f);
}

/* One shuffled, prefetched epoch of @ds: every target of every sample agrees with its x. */
static void check_targets_epoch(LmnDataset *ds, gint64 epoch)
{
    g_autoptr(GError) error = NULL;
    g_assert_cmpuint(lmn_dataset_get_n_targets(ds), ==, 3);
    g_assert_cmpstr(lmn_dataset_get_target_name(ds, 1), ==, "z");
    g_assert_cmpint(lmn_dataset_find_target(ds, "aux"), ==, 2);
    LmnTensorInfo zi = lmn_dataset_get_target_info_at(ds, 1);
    LmnTensorInfo ai = lmn_dataset_get_target_info_at(ds, 2);
    g_assert_cmpint(zi.dtype, ==, LMN_DTYPE_F32);
    g_assert_cmpint(zi.shape.ndim, ==, 1);
    g_assert_cmpint(zi.shape.dims[0], ==, 3);
    g_assert_cmpint(ai.dtype, ==, LMN_DTYPE_I32);
    LmnBatchReaderOptions o = {.batch_size = BATCH, .seed = 3, .shuffle = TRUE, .prefetch = TRUE};
    g_autoptr(LmnBatchReader) r = lmn_batch_reader_new(ds, &o, &error);
    g_assert_no_error(error);
    lmn_batch_reader_seek(r, epoch, 0);
    float x[BATCH * F], z[BATCH * 3];
    gint32 y[BATCH], aux[BATCH];
    guint32 idx[BATCH];
    void *targets[3] = {y, z, aux};
    gint64 total = 0, m;
    while ((m = lmn_batch_reader_next_targets(r, x, targets, idx, &error)) > 0) {
        for (gint64 j = 0; j < m; j++) {
            int i = (int) x[j * F]; /* x[i] = (i, 2i, 3i, 4i) */
            g_assert_cmpint(y[j], ==, i % 10);
            g_assert_cmpint(aux[j], ==, (7 * i) % 13);
            g_assert_cmpfloat(z[j * 3], ==, (float) i + 0.5f);
            g_assert_cmpfloat(z[j * 3 + 1], ==, (float) -i);
            g_assert_cmpfloat(z[j * 3 + 2], ==, (float) (2 * i));
        }
        total += m;
    }
    g_assert_no_error(error);
    g_assert_cmpint(total, ==, lmn_dataset_get_length(ds));
    /* lmn_dataset_read_targets gives the same for the delivered indices. */
    float z2[3];
    gint32 aux2;
    void *one[3] = {NULL, z2, &aux2};
    g_assert_true(lmn_dataset_read_targets(ds, idx, 1, NULL, one, &error));
    g_assert_cmpfloat(z2[0], ==, z[0]);
    g_assert_cmpint(aux2, ==, aux[0]);
}

/* The losses' other targets: read as y is, counted in the memory budget (x streams once they
 * no longer fit beside it), delivered with each batch through the same order, in memory and
 * streaming, and kept with their samples by a split. */
static void test_targets(Fixture *f, gconstpointer data)
{
    gboolean streaming = GPOINTER_TO_INT(data);
    g_autoptr(GError) error = NULL;
    write_targets(f->file);
    const char *const names[] = {"z", "aux", "y", "z", NULL};
    /* x 78 KiB and y 20 KiB fit 0.12 MiB; with z and aux (78 KiB more) x streams. */
    double budget = streaming ? 0.12 : 64;
    LmnDataset *plain = lmn_dataset_open_with_budget(f->spec, budget, &error);
    g_assert_no_error(error);
    g_assert_false(lmn_dataset_is_streaming(plain));
    g_assert_cmpuint(lmn_dataset_get_n_targets(plain), ==, 1);
    lmn_dataset_free(plain);
    LmnDataset *ds = lmn_dataset_open_with_targets(f->spec, names, budget, &error);
    g_assert_no_error(error);
    g_assert_cmpint(lmn_dataset_is_streaming(ds), ==, streaming);
    check_targets_epoch(ds, 0);
    LmnDataset *held = lmn_dataset_split(ds, 0.2, 9, &error);
    g_assert_no_error(error);
    check_targets_epoch(ds, 1);
    check_targets_epoch(held, 2);
    g_assert_true(lmn_dataset_check_target_labels(ds, 2, 13, &error));
    g_assert_false(lmn_dataset_check_target_labels(ds, 2, 12, &error));
    g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE);
    g_assert_nonnull(strstr(error->message, "target 'aux'"));
    lmn_dataset_free(held);
    lmn_dataset_free(ds);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn, data) \
    g_test_add(path, Fixture, data, fixture_setup, fn, fixture_teardown)
    ADD("/data/stream/budget-selects-mode", test_budget_selects_mode, NULL);
    ADD("/data/reader/streaming-epoch", test_streaming_epoch, NULL);
    ADD("/data/reader/resume-memory", test_resume, GINT_TO_POINTER(0));
    ADD("/data/reader/resume-streaming", test_resume, GINT_TO_POINTER(1));
    ADD("/data/reader/memory-order", test_memory_order, NULL);
    ADD("/data/reader/streaming-split", test_streaming_split, NULL);
    ADD("/data/reader/augment", test_augment_through_reader, NULL);
    ADD("/data/reader/streaming-slices-2", test_streaming_slices, GINT_TO_POINTER(2));
    ADD("/data/reader/streaming-slices-3", test_streaming_slices, GINT_TO_POINTER(3));
    ADD("/data/reader/streaming-nan", test_streaming_nan, NULL);
    ADD("/data/reader/targets-memory", test_targets, GINT_TO_POINTER(0));
    ADD("/data/reader/targets-streaming", test_targets, GINT_TO_POINTER(1));
    return g_test_run();
}
