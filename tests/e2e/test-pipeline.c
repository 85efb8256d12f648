/* The training loop's data pipeline (LmnBatchReader): a training split larger than
 * [data] memory_budget_mb streams from its file and still trains; without shuffling, streaming
 * and in-memory training are bit for bit the same; [augment] changes training deterministically
 * (a function of the seed alone, also across a mid-epoch resume); and its mistakes are reported
 * naming the group and the key. */
#include "e2e-util.h"

#include <lamina/lamina.h>
#include <string.h>

/* 16000 training samples: x is 125 KiB and the labels 62.5 KiB, six times the 0.03 MiB budget
 * the streaming runs get; stored in chunks of 250 rows, so the reader's shuffle buffer
 * (a quarter of the budget, about 980 samples) spans a few chunks of the 64. */
#define N_TRAIN 16000
#define CHUNK_ROWS 250
#define TINY_BUDGET "0.03"

typedef struct {
    char *dir;
    char *data;
} Fixture;

static void fixture_setup(Fixture *fx, gconstpointer unused)
{
    fx->dir = g_dir_make_tmp("lamina-pipeline-XXXXXX", NULL);
    g_assert_nonnull(fx->dir);
    fx->data = g_build_filename(fx->dir, "blobs.h5", NULL);
    e2e_write_blobs_chunked(fx->data, "/train", N_TRAIN, 3, FALSE, CHUNK_ROWS);
    e2e_write_blobs(fx->data, "/test", 2000, 4, FALSE);
}

static void fixture_teardown(Fixture *fx, gconstpointer unused)
{
    e2e_remove_tree(fx->dir);
    g_free(fx->dir);
    g_free(fx->data);
}

/* Writes DIR/NAME.ini: a 2-16-4 MLP on the blobs; @data_extra goes into [data], @groups after
 * it. */
static char *write_config(Fixture *fx, const char *name, const char *shuffle,
                          const char *data_extra, const char *groups)
{
    g_autofree char *text = g_strdup_printf("[model]\n"
                                            "input = 2\n"
                                            "[layer fc1]\n"
                                            "type = dense\n"
                                            "units = 16\n"
                                            "[layer act1]\n"
                                            "type = relu\n"
                                            "[layer fc2]\n"
                                            "type = dense\n"
                                            "units = 4\n"
                                            "[layer loss]\n"
                                            "type = softmax_cross_entropy\n"
                                            "[optimizer]\n"
                                            "type = sgd\n"
                                            "lr = 0.05\n"
                                            "momentum = 0.9\n"
                                            "[train]\n"
                                            "epochs = 2\n"
                                            "batch_size = 32\n"
                                            "seed = 5\n"
                                            "backend = cpu\n"
                                            "shuffle = %s\n"
                                            "[data]\n"
                                            "train = %s:/train\n"
                                            "%s"
                                            "%s",
                                            shuffle, fx->data, data_extra, groups);
    g_autofree char *file = g_strconcat(name, ".ini", NULL);
    char *path = g_build_filename(fx->dir, file, NULL);
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    return path;
}

/* Trains @cfg into DIR/NAME (extra arguments NULL-terminated); returns final.h5's path, and the
 * standard output through @out (nullable). */
static char *train(Fixture *fx, const char *cfg, const char *name, char **out)
{
    g_autofree char *dir = g_build_filename(fx->dir, name, NULL);
    g_autofree char *err = NULL;
    int rc = e2e_run_lamina(out, &err, "train", cfg, "--output", dir, NULL);
    if (rc != 0)
        g_error("lamina train %s failed (%d): %s", cfg, rc, err);
    return g_build_filename(dir, "final.h5", NULL);
}

static double test_accuracy(Fixture *fx, const char *ckpt)
{
    g_autofree char *spec = g_strdup_printf("%s:/test", fx->data);
    g_autofree char *json = NULL;
    g_assert_cmpint(e2e_run_lamina(&json, NULL, "eval", ckpt, "--data", spec, "--json",
                                   "--backend", "cpu", NULL),
                    ==, 0);
    const char *p = strstr(json, "\"accuracy\": ");
    g_assert_nonnull(p);
    return g_ascii_strtod(p + strlen("\"accuracy\": "), NULL);
}

/* Whether any weight under /model differs between two checkpoints (same layout). */
static gboolean weights_differ(const char *a, const char *b)
{
    g_autoptr(GPtrArray) names = e2e_list_datasets(a, "/model");
    g_assert_cmpuint(names->len, >, 0);
    gboolean differ = FALSE;
    for (guint i = 0; i < names->len && !differ; i++) {
        g_autofree char *path =
            g_strdup_printf("/model/%s", (const char *) g_ptr_array_index(names, i));
        gsize na = 0, nb = 0;
        g_autofree float *wa = e2e_read_floats(a, path, &na);
        g_autofree float *wb = e2e_read_floats(b, path, &nb);
        g_assert_nonnull(wa);
        g_assert_nonnull(wb);
        g_assert_cmpuint(na, ==, nb);
        differ = memcmp(wa, wb, na * sizeof(float)) != 0;
    }
    return differ;
}

/* The tiny budget really makes the split stream, and the run still learns the blobs (the Bayes
 * accuracy is about 96%). */
static void test_streaming_trains(Fixture *fx, gconstpointer unused)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *spec = g_strdup_printf("%s:/train", fx->data);
    LmnDataset *ds = lmn_dataset_open_with_budget(spec, g_ascii_strtod(TINY_BUDGET, NULL), &error);
    g_assert_no_error(error);
    g_assert_true(lmn_dataset_is_streaming(ds));
    lmn_dataset_free(ds);

    g_autofree char *cfg =
        write_config(fx, "stream", "true", "memory_budget_mb = " TINY_BUDGET "\n", "");
    g_autofree char *out = NULL;
    g_autofree char *ckpt = train(fx, cfg, "stream", &out);
    g_assert_nonnull(strstr(out, "streamed from the file"));
    g_assert_nonnull(strstr(out, "epoch 2/2"));
    g_assert_nonnull(strstr(out, "data "));
    double acc = test_accuracy(fx, ckpt);
    g_assert_cmpfloat(acc, >, 0.93);
}

/* Without shuffling both modes deliver samples 0..N-1 in order: the same batches, so the same
 * weights bit for bit. */
static void test_streaming_matches_memory(Fixture *fx, gconstpointer unused)
{
    g_autofree char *scfg =
        write_config(fx, "stream", "false", "memory_budget_mb = " TINY_BUDGET "\n", "");
    g_autofree char *mcfg = write_config(fx, "memory", "false", "", "");
    g_autofree char *sout = NULL, *mout = NULL;
    g_autofree char *s = train(fx, scfg, "stream", &sout);
    g_autofree char *m = train(fx, mcfg, "memory", &mout);
    g_assert_nonnull(strstr(sout, "streamed from the file"));
    g_assert_null(strstr(mout, "streamed from the file"));
    e2e_assert_same_floats(s, m, "/model");
    e2e_assert_same_floats(s, m, "/optimizer/state");
}

static const char *augment_group = "[augment]\n"
                                   "noise_std = 0.5\n"
                                   "brightness = 0.3\n"
                                   "contrast = 0.2\n";

/* Augmentation changes what the model sees, yet the run is a function of the seed: two runs
 * agree bit for bit, in memory and streaming alike. */
static void test_augment_deterministic(Fixture *fx, gconstpointer unused)
{
    g_autofree char *plain_cfg = write_config(fx, "plain", "true", "", "");
    g_autofree char *aug_cfg = write_config(fx, "aug", "true", "", augment_group);
    g_autofree char *plain = train(fx, plain_cfg, "plain", NULL);
    g_autofree char *a1 = train(fx, aug_cfg, "aug1", NULL);
    g_autofree char *a2 = train(fx, aug_cfg, "aug2", NULL);
    e2e_assert_same_floats(a1, a2, "/model");
    g_assert_true(weights_differ(a1, plain));
    /* Noisy inputs still separate the blobs; evaluation reads them unchanged. */
    g_assert_cmpfloat(test_accuracy(fx, a1), >, 0.9);

    g_autofree char *saug_cfg =
        write_config(fx, "saug", "true", "memory_budget_mb = " TINY_BUDGET "\n", augment_group);
    g_autofree char *s1 = train(fx, saug_cfg, "saug1", NULL);
    g_autofree char *s2 = train(fx, saug_cfg, "saug2", NULL);
    e2e_assert_same_floats(s1, s2, "/model");
    /* A sample is augmented by (seed, epoch, index), not by its position: without shuffling,
     * streaming and memory mode augment and train identically. */
    g_autofree char *u_cfg = write_config(fx, "u", "false", "", augment_group);
    g_autofree char *us_cfg =
        write_config(fx, "us", "false", "memory_budget_mb = " TINY_BUDGET "\n", augment_group);
    g_autofree char *u = train(fx, u_cfg, "u", NULL);
    g_autofree char *us = train(fx, us_cfg, "us", NULL);
    e2e_assert_same_floats(u, us, "/model");
}

/* A streaming, shuffled, augmented run stopped inside its second epoch and resumed ends where an
 * uninterrupted one does. */
static void test_streaming_resume(Fixture *fx, gconstpointer unused)
{
    g_autofree char *cfg =
        write_config(fx, "sres", "true", "memory_budget_mb = " TINY_BUDGET "\n", augment_group);
    g_autofree char *straight = train(fx, cfg, "straight", NULL);
    /* 500 steps per epoch: stop 123 steps into the second. */
    g_autofree char *part_dir = g_build_filename(fx->dir, "part", NULL);
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", cfg, "--output", part_dir, "--max-steps",
                                   "623", "--quiet", NULL),
                    ==, 0);
    g_autofree char *part = g_build_filename(part_dir, "final.h5", NULL);
    g_assert_cmpint(e2e_read_attr_int(part, "/train", "epoch"), ==, 1);
    g_assert_cmpint(e2e_read_attr_int(part, "/train", "epoch_samples"), ==, 123 * 32);
    g_autofree char *res_dir = g_build_filename(fx->dir, "resumed", NULL);
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", cfg, "--output", res_dir, "--resume",
                                   part, "--max-steps", "0", "--quiet", NULL),
                    ==, 0);
    g_autofree char *fin = g_build_filename(res_dir, "final.h5", NULL);
    e2e_assert_same_floats(straight, fin, "/model");
    e2e_assert_same_floats(straight, fin, "/optimizer/state");
}

/* Resuming with another batch size starts inside a batch of the new size: the rest of it comes
 * first, so the epoch still sees every sample once (and the loop does not trip over it). */
static void test_resume_other_batch_size(Fixture *fx, gconstpointer unused)
{
    g_autofree char *cfg = write_config(fx, "bs", "true", "", "");
    g_autofree char *part_dir = g_build_filename(fx->dir, "part", NULL);
    /* 10 steps of 32 = 320 samples: not a multiple of 48. */
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", cfg, "--output", part_dir, "--max-steps",
                                   "10", "--quiet", NULL),
                    ==, 0);
    g_autofree char *part = g_build_filename(part_dir, "final.h5", NULL);
    g_autofree char *res_dir = g_build_filename(fx->dir, "resumed", NULL);
    g_autofree char *err = NULL;
    int rc = e2e_run_lamina(NULL, &err, "train", cfg, "--output", res_dir, "--resume", part,
                            "--max-steps", "0", "--epochs", "1", "--set", "train.batch_size=48",
                            "--quiet", NULL);
    if (rc != 0)
        g_error("resume with batch 48 failed (%d): %s", rc, err);
    g_autofree char *fin = g_build_filename(res_dir, "final.h5", NULL);
    /* 320 samples, then 16 to finish the batch of 48 they fall in, then ceil(15664 / 48). */
    g_assert_cmpint(e2e_read_attr_int(fin, "/train", "step"), ==, 10 + 1 + (15664 + 47) / 48);
    g_assert_cmpint(e2e_read_attr_int(fin, "/train", "epoch"), ==, 1);
    g_assert_cmpint(e2e_read_attr_int(fin, "/train", "epoch_samples"), ==, 0);
}

/* Mistakes in [augment]: a mistyped key names the group and the key; a transform that does not
 * fit the samples fails when the data is opened, naming the transform and the shape. */
static void test_augment_errors(Fixture *fx, gconstpointer unused)
{
    g_autofree char *typo = write_config(fx, "typo", "true", "", "[augment]\nnoise_sdt = 0.1\n");
    g_autofree char *dir = g_build_filename(fx->dir, "typo", NULL);
    g_autofree char *err = NULL;
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "train", typo, "--output", dir, NULL), !=, 0);
    g_assert_nonnull(strstr(err, "[augment]"));
    g_assert_nonnull(strstr(err, "noise_sdt"));
    g_assert_nonnull(strstr(err, "noise_std"));

    g_autofree char *flip = write_config(fx, "flip", "true", "", "[augment]\nhflip = 0.5\n");
    g_autofree char *fdir = g_build_filename(fx->dir, "flip", NULL);
    g_autofree char *ferr = NULL;
    g_assert_cmpint(e2e_run_lamina(NULL, &ferr, "train", flip, "--output", fdir, NULL), !=, 0);
    g_assert_nonnull(strstr(ferr, "hflip"));
    g_assert_nonnull(strstr(ferr, "[2]"));
    g_assert_nonnull(strstr(ferr, "blobs.h5"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/e2e/pipeline/streaming-trains", Fixture, NULL, fixture_setup,
               test_streaming_trains, fixture_teardown);
    g_test_add("/e2e/pipeline/streaming-matches-memory", Fixture, NULL, fixture_setup,
               test_streaming_matches_memory, fixture_teardown);
    g_test_add("/e2e/pipeline/augment-deterministic", Fixture, NULL, fixture_setup,
               test_augment_deterministic, fixture_teardown);
    g_test_add("/e2e/pipeline/streaming-resume", Fixture, NULL, fixture_setup,
               test_streaming_resume, fixture_teardown);
    g_test_add("/e2e/pipeline/resume-other-batch-size", Fixture, NULL, fixture_setup,
               test_resume_other_batch_size, fixture_teardown);
    g_test_add("/e2e/pipeline/augment-errors", Fixture, NULL, fixture_setup, test_augment_errors,
               fixture_teardown);
    return g_test_run();
}
