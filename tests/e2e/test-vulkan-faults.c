/* `lamina train` on the Vulkan backend when the device fails: running out of device memory
 * (simulated by LAMINA_VK_MEMORY_LIMIT) and losing the device (simulated by
 * LAMINA_VK_DEBUG_FAULT=device-lost:N, since lavapipe cannot lose one).  Either way the command
 * exits non-zero with a message that names the device, what failed and what to do, and the
 * checkpoints a previous run left in the output directory are byte-identical afterwards.
 *
 * Also the transfer model seen from a whole run: with host transfers forced through the staging
 * ring (LAMINA_VK_STAGING=1) the per-epoch losses match the CPU backend's, and a training step
 * (batch uploads, forward, backward, optimizer update) costs at most one fence wait: the counts
 * LAMINA_VK_STATS=1 prints at close are compared between two runs that differ only in their
 * number of steps.
 *
 * Runs on Mesa's lavapipe; skipped (exit 77) when no Vulkan device 'lavapipe' can be opened.
 */
#include "e2e-util.h"

#include <lamina/lamina.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char *dir;
    char *config;
    char *out;
} Fixture;

static const char *config_template = "[model]\n"
                                     "input = 2\n"
                                     "[layer fc1]\n"
                                     "type = dense\n"
                                     "units = 64\n"
                                     "[layer act1]\n"
                                     "type = tanh\n"
                                     "[layer fc2]\n"
                                     "type = dense\n"
                                     "units = 4\n"
                                     "[layer loss]\n"
                                     "type = softmax_cross_entropy\n"
                                     "[optimizer]\n"
                                     "type = adam\n"
                                     "lr = 0.01\n"
                                     "[train]\n"
                                     "epochs = 3\n"
                                     "batch_size = 32\n"
                                     "seed = 3\n"
                                     "[data]\n"
                                     "train = %s:/train\n";

static void fixture_setup(Fixture *fx, gconstpointer unused)
{
    g_autoptr(GError) error = NULL;
    fx->dir = g_dir_make_tmp("lamina-vk-faults-XXXXXX", &error);
    g_assert_no_error(error);
    g_autofree char *data = g_build_filename(fx->dir, "blobs.h5", NULL);
    e2e_write_blobs(data, "/train", 512, 11, FALSE);
    fx->config = g_build_filename(fx->dir, "blobs.ini", NULL);
    g_autofree char *text = g_strdup_printf(config_template, data);
    g_assert_true(g_file_set_contents(fx->config, text, -1, NULL));
    fx->out = g_build_filename(fx->dir, "run", NULL);
}

static void fixture_teardown(Fixture *fx, gconstpointer unused)
{
    g_unsetenv("LAMINA_VK_MEMORY_LIMIT");
    g_unsetenv("LAMINA_VK_DEBUG_FAULT");
    e2e_remove_tree(fx->dir);
    g_free(fx->dir);
    g_free(fx->config);
    g_free(fx->out);
}

/* The contents of every .h5 file in @dir, by name. */
static GHashTable *checkpoints(const char *dir)
{
    GHashTable *t =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_bytes_unref);
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    g_assert_nonnull(d);
    for (const char *name; (name = g_dir_read_name(d)) != NULL;) {
        if (!g_str_has_suffix(name, ".h5"))
            continue;
        g_autofree char *path = g_build_filename(dir, name, NULL);
        char *bytes = NULL;
        gsize len = 0;
        g_assert_true(g_file_get_contents(path, &bytes, &len, NULL));
        g_hash_table_insert(t, g_strdup(name), g_bytes_new_take(bytes, len));
    }
    return t;
}

static void assert_same_checkpoints(GHashTable *before, GHashTable *after)
{
    g_assert_cmpuint(g_hash_table_size(before), >, 0);
    g_assert_cmpuint(g_hash_table_size(after), ==, g_hash_table_size(before));
    GHashTableIter it;
    gpointer name, bytes;
    g_hash_table_iter_init(&it, before);
    while (g_hash_table_iter_next(&it, &name, &bytes)) {
        GBytes *now = g_hash_table_lookup(after, name);
        g_assert_nonnull(now);
        g_assert_true(g_bytes_equal(bytes, now));
    }
}

/* A first, successful run leaves checkpoints in the output directory. */
static void train_once(Fixture *fx)
{
    g_autofree char *err = NULL;
    int status = e2e_run_lamina(NULL, &err, "train", fx->config, "--output", fx->out, "--backend",
                                "vulkan", "--device", "lavapipe", "--quiet", NULL);
    if (status != 0)
        g_printerr("%s", err);
    g_assert_cmpint(status, ==, 0);
}

static void test_out_of_memory(Fixture *fx, gconstpointer unused)
{
    train_once(fx);
    g_autoptr(GHashTable) before = checkpoints(fx->out);
    /* 8 KiB of device memory: the model's tensors alone need more. */
    g_setenv("LAMINA_VK_MEMORY_LIMIT", "8192", TRUE);
    g_autofree char *err = NULL;
    int status = e2e_run_lamina(NULL, &err, "train", fx->config, "--output", fx->out, "--backend",
                                "vulkan", "--device", "lavapipe", "--quiet", NULL);
    g_unsetenv("LAMINA_VK_MEMORY_LIMIT");
    g_assert_cmpint(status, !=, 0);
    g_assert_cmpint(status, >, 0); /* exited, not crashed */
    g_assert_nonnull(strstr(err, "out of memory on Vulkan device"));
    g_assert_nonnull(strstr(err, "llvmpipe"));
    g_assert_nonnull(strstr(err, "smaller batch"));
    g_autoptr(GHashTable) after = checkpoints(fx->out);
    assert_same_checkpoints(before, after);
}

static void test_device_lost(Fixture *fx, gconstpointer unused)
{
    train_once(fx);
    g_autoptr(GHashTable) before = checkpoints(fx->out);
    /* The third submission (during the first epoch) reports VK_ERROR_DEVICE_LOST. */
    g_setenv("LAMINA_VK_DEBUG_FAULT", "device-lost:3", TRUE);
    g_autofree char *err = NULL;
    int status = e2e_run_lamina(NULL, &err, "train", fx->config, "--output", fx->out, "--backend",
                                "vulkan", "--device", "lavapipe", "--quiet", NULL);
    g_unsetenv("LAMINA_VK_DEBUG_FAULT");
    g_assert_cmpint(status, !=, 0);
    g_assert_cmpint(status, >, 0);
    g_assert_nonnull(strstr(err, "was lost"));
    g_assert_nonnull(strstr(err, "llvmpipe"));
    g_assert_nonnull(strstr(err, "check the GPU driver"));
    g_autoptr(GHashTable) after = checkpoints(fx->out);
    assert_same_checkpoints(before, after);
}

/* The per-epoch train_loss column of DIR/metrics.csv. */
static GArray *epoch_losses(const char *dir)
{
    g_autofree char *path = g_build_filename(dir, "metrics.csv", NULL);
    g_autoptr(GPtrArray) rows = e2e_csv_rows(path);
    GArray *out = g_array_new(FALSE, FALSE, sizeof(double));
    for (guint i = 0; i < rows->len; i++) {
        char **cols = rows->pdata[i];
        double v = g_ascii_strtod(cols[3], NULL);
        g_array_append_val(out, v);
    }
    return out;
}

static void test_staged_training_matches_cpu(Fixture *fx, gconstpointer unused)
{
    g_autofree char *cpu_out = g_build_filename(fx->dir, "cpu", NULL);
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", fx->config, "--output", cpu_out,
                                   "--backend", "cpu", "--quiet", NULL),
                    ==, 0);
    g_setenv("LAMINA_VK_STAGING", "1", TRUE);
    g_autofree char *err = NULL;
    int status = e2e_run_lamina(NULL, &err, "train", fx->config, "--output", fx->out, "--backend",
                                "vulkan", "--device", "lavapipe", "--quiet", NULL);
    g_unsetenv("LAMINA_VK_STAGING");
    if (status != 0)
        g_printerr("%s", err);
    g_assert_cmpint(status, ==, 0);
    g_autoptr(GArray) a = epoch_losses(cpu_out);
    g_autoptr(GArray) b = epoch_losses(fx->out);
    g_assert_cmpuint(a->len, ==, 3);
    g_assert_cmpuint(b->len, ==, a->len);
    for (guint i = 0; i < a->len; i++) {
        double x = g_array_index(a, double, i), y = g_array_index(b, double, i);
        if (g_test_verbose())
            g_printerr("epoch %u: cpu %.7f vulkan (staged) %.7f\n", i + 1, x, y);
        g_assert_cmpfloat(fabs(x - y), <=, 1e-4 * fabs(x) + 1e-6);
    }
    /* Learning happened: the check above is not one of two constant runs. */
    g_assert_cmpfloat(g_array_index(b, double, 2), <, g_array_index(b, double, 0));
}

/* What LAMINA_VK_STATS=1 reports of a run. */
typedef struct {
    guint64 fence_waits, dispatches, binds, submissions, staged_bytes, sets;
    gboolean push; /* descriptors pushed into the command buffer, not allocated sets */
} VkStats;

static guint64 stat_before(const char *line, const char *label)
{
    /* "..., N label, ...": the digits right before @label (which starts with a space) */
    const char *at = strstr(line, label);
    g_assert_nonnull(at);
    const char *end = at;
    while (at > line && g_ascii_isdigit(at[-1]))
        at--;
    g_assert_true(at < end);
    return g_ascii_strtoull(at, NULL, 10);
}

/* Runs @steps optimizer steps with LAMINA_VK_STATS=1; Returns: the counts it reports. */
static VkStats run_stats(Fixture *fx, int steps, const char *staging, const char *fuse)
{
    g_autofree char *steps_text = g_strdup_printf("%d", steps);
    g_autofree char *out = g_strdup_printf("%s-%d", fx->out, steps);
    g_setenv("LAMINA_VK_STATS", "1", TRUE);
    g_setenv("LAMINA_VK_STAGING", staging, TRUE);
    g_setenv("LAMINA_FUSE", fuse, TRUE);
    g_autofree char *err = NULL;
    int status =
        e2e_run_lamina(NULL, &err, "train", fx->config, "--output", out, "--backend", "vulkan",
                       "--device", "lavapipe", "--max-steps", steps_text, "--quiet", NULL);
    g_unsetenv("LAMINA_VK_STATS");
    g_unsetenv("LAMINA_VK_STAGING");
    g_unsetenv("LAMINA_FUSE");
    g_assert_cmpint(status, ==, 0);
    const char *line = strstr(err, "vulkan stats: ");
    g_assert_nonnull(line);
    const char *at = strstr(line, " submissions, ");
    g_assert_nonnull(at);
    VkStats s = {g_ascii_strtoull(at + strlen(" submissions, "), NULL, 10),
                 stat_before(line, " dispatches"),
                 stat_before(line, " pipeline binds"),
                 stat_before(line, " submissions"),
                 stat_before(line, " staged bytes"),
                 stat_before(line, " descriptor sets allocated"),
                 strstr(line, "(push descriptors)") != NULL};
    if (g_test_verbose())
        g_printerr("%d steps (LAMINA_VK_STAGING=%s): %s", steps, staging, line);
    return s;
}

/* Fence waits do not grow with the steps; every step records the same dispatches, exactly as
 * many as counted below (with and without fusion); a pipeline is bound at most once per
 * dispatch (binds of the pipeline already bound are skipped). */
static void test_fence_waits_per_step(Fixture *fx, gconstpointer unused)
{
    /* 512 samples in batches of 32: 16 steps an epoch; both runs stop inside the first epoch,
     * so they differ by 12 training steps only (the final checkpoint reads are the same). */
    const char *modes[] = {"0", "1"};
    for (guint m = 0; m < G_N_ELEMENTS(modes); m++) {
        const VkStats few = run_stats(fx, 2, modes[m], "1"),
                      many = run_stats(fx, 14, modes[m], "1");
        g_assert_cmpuint(many.fence_waits, >=, few.fence_waits);
        g_assert_cmpuint(many.fence_waits - few.fence_waits, <=, 12);
        g_assert_cmpuint(many.dispatches, >, few.dispatches);
        g_assert_cmpuint((many.dispatches - few.dispatches) % 12, ==, 0);
        g_assert_cmpuint(many.binds, <=, many.dispatches);
        if (g_test_verbose())
            g_printerr("%" G_GUINT64_FORMAT " dispatches per step\n",
                       (many.dispatches - few.dispatches) / 12);
        /* 3 forward (each dense layer one GEMM with its bias, and the tanh, in its epilogue;
         * softmax_xent, which writes the loss's gradient too), 3 backward (fc2's dW GEMM, db in
         * its epilogue; its dx, tanh's derivative in its epilogue; fc1's dW and db likewise)
         * and 7 for the update and the step's loss and accuracy. */
        g_assert_cmpuint(many.dispatches - few.dispatches, ==, 12 * 13);
    }
    /* Unfused, the tanh forward and backward and the loss's backward are three dispatches more
     * per step. */
    const VkStats few = run_stats(fx, 2, "0", "0"), many = run_stats(fx, 14, "0", "0");
    g_assert_cmpuint(many.dispatches - few.dispatches, ==, 12 * 16);
    /* Staged through a 1 KiB ring, the recorded work goes to the device each time it has
     * staged a quarter of the ring, not only when the ring is full: more submissions than the
     * run makes with a ring it never fills (its reads and writes of results) plus one per ring
     * filled (which is what waiting for a full ring alone gives: measured 34 against 44). */
    g_setenv("LAMINA_VK_STAGING_SIZE", "1048576", TRUE);
    const VkStats large = run_stats(fx, 14, "1", "1");
    g_setenv("LAMINA_VK_STAGING_SIZE", "1024", TRUE);
    const VkStats small = run_stats(fx, 14, "1", "1");
    g_unsetenv("LAMINA_VK_STAGING_SIZE");
    if (g_test_verbose())
        g_printerr("1 KiB ring: %" G_GUINT64_FORMAT " submissions for %" G_GUINT64_FORMAT
                   " staged bytes; 1 MiB ring: %" G_GUINT64_FORMAT "\n",
                   small.submissions, small.staged_bytes, large.submissions);
    g_assert_cmpuint(small.staged_bytes, >, 8 * 1024);
    g_assert_cmpuint(small.submissions, >, large.submissions + small.staged_bytes / 1024);
}

/* lavapipe offers VK_KHR_push_descriptor: dispatches push their descriptors and no set is
 * allocated; with LAMINA_VK_PUSH_DESCRIPTORS=0 every dispatch allocates one from the pools, and
 * the run records the same dispatches. */
static void test_push_descriptors(Fixture *fx, gconstpointer unused)
{
    const VkStats pushed = run_stats(fx, 2, "0", "1");
    g_assert_true(pushed.push);
    g_assert_cmpuint(pushed.sets, ==, 0);
    g_setenv("LAMINA_VK_PUSH_DESCRIPTORS", "0", TRUE);
    const VkStats pooled = run_stats(fx, 3, "0", "1");
    g_unsetenv("LAMINA_VK_PUSH_DESCRIPTORS");
    g_assert_false(pooled.push);
    g_assert_cmpuint(pooled.sets, ==, pooled.dispatches);
    /* One step more: 13 dispatches more (test_fence_waits_per_step counts them). */
    g_assert_cmpuint(pooled.dispatches, ==, pushed.dispatches + 13);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(LmnRegistry) registry = lmn_registry_new();
    lmn_registry_scan(registry, NULL);
    LmnBackend *vk = lmn_backend_new(registry, "vulkan", NULL, "lavapipe", &error);
    if (vk == NULL) {
        printf("1..0 # SKIP no Vulkan device 'lavapipe': %s\n", error->message);
        return 77;
    }
    lmn_backend_unref(vk);
    g_test_add("/e2e/vulkan-faults/out-of-memory", Fixture, NULL, fixture_setup, test_out_of_memory,
               fixture_teardown);
    g_test_add("/e2e/vulkan-faults/device-lost", Fixture, NULL, fixture_setup, test_device_lost,
               fixture_teardown);
    g_test_add("/e2e/vulkan/staged-training-matches-cpu", Fixture, NULL, fixture_setup,
               test_staged_training_matches_cpu, fixture_teardown);
    g_test_add("/e2e/vulkan/fence-waits-per-step", Fixture, NULL, fixture_setup,
               test_fence_waits_per_step, fixture_teardown);
    g_test_add("/e2e/vulkan/push-descriptors", Fixture, NULL, fixture_setup, test_push_descriptors,
               fixture_teardown);
    return g_test_run();
}
