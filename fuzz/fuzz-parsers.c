/* libFuzzer targets for Lamina's input parsers.  One source, one target per FUZZ_TARGET value:
 *   config   lmn_config_new_from_data + lmn_config_validate against the build tree's plugins
 *   dataset  the bytes as an HDF5 file opened with lmn_dataset_open (memory and streaming)
 *   idx      the bytes as both IDX files of lmn_convert_idx
 *   npy      lmn_npy_parse on the bytes
 *   csv      lmn_csv_parse on the bytes (label column -1, with and without header)
 *   checkpoint  a checkpoint written with the HDF5 API from the bytes (fuzz-checkpoint.c), read
 *            by lmn_checkpoint_describe, _read_config, _load_weights and _load_training
 */
#include <lamina/lamina.h>

#include <unistd.h>

#include <glib/gstdio.h>

#include "data/convert-private.h"
#if FUZZ_TARGET_checkpoint
#include "fuzz-checkpoint.h"
#endif

static char *write_temp(const guint8 *data, size_t size, const char *suffix)
{
    g_autofree char *tmpl = g_strdup_printf("lamina-fuzz-XXXXXX%s", suffix);
    char *path = NULL;
    int fd = g_file_open_tmp(tmpl, &path, NULL);
    g_assert(fd >= 0);
    g_assert(write(fd, data, size) == (ssize_t) size);
    close(fd);
    return path;
}

#if FUZZ_TARGET_config || FUZZ_TARGET_checkpoint
static LmnRegistry *registry;

/* The build tree's plugins, without the environment's. */
static LmnRegistry *fuzz_registry(void)
{
    if (registry == NULL) {
        registry = lmn_registry_new();
        lmn_registry_set_use_environment(registry, FALSE);
        g_auto(GStrv) dirs = g_strsplit(LMN_FUZZ_PLUGIN_PATH, ":", -1);
        for (guint i = 0; dirs[i] != NULL; i++) {
            lmn_registry_add_dir(registry, dirs[i]);
        }
        lmn_registry_scan(registry, NULL);
    }
    return registry;
}
#endif

int LLVMFuzzerTestOneInput(const guint8 *data, size_t size);
int LLVMFuzzerTestOneInput(const guint8 *data, size_t size)
{
#if FUZZ_TARGET_config
    fuzz_registry();
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_data((const char *) data, (gssize) size, "fuzz.ini",
                                              &error);
    if (cfg != NULL) {
        lmn_config_validate(cfg, registry, NULL);
        lmn_config_free(cfg);
    }
#elif FUZZ_TARGET_dataset
    g_autofree char *path = write_temp(data, size, ".h5");
    g_autofree char *spec = g_strdup_printf("%s:/train", path);
    for (int streaming = 0; streaming < 2; streaming++) {
        LmnDataset *ds = lmn_dataset_open_with_budget(spec, streaming ? 0.0 : 64.0, NULL);
        if (ds != NULL) {
            guint32 idx[2] = {0, (guint32) (lmn_dataset_get_length(ds) - 1)};
            gint64 numel = lmn_shape_numel(lmn_dataset_get_sample_shape(ds));
            gint64 tn = MAX(lmn_shape_numel(lmn_dataset_get_target_shape(ds)), 1);
            if (numel < (1 << 20) && tn < (1 << 20)) {
                g_autofree float *x = g_new(float, 2 * numel);
                g_autofree float *y = g_new(float, 2 * tn);
                lmn_dataset_read(ds, idx, 2, x, y, NULL);
            }
            lmn_dataset_free(ds);
        }
    }
    g_unlink(path);
#elif FUZZ_TARGET_idx
    g_autofree char *path = write_temp(data, size, ".idx");
    g_autofree char *out = g_strdup_printf("%s.h5", path);
    g_autofree char *spec = g_strdup_printf("%s:/train", out);
    lmn_convert_idx(path, path, spec, TRUE, NULL);
    g_unlink(path);
    g_unlink(out);
#elif FUZZ_TARGET_npy
    LmnNpyArray a;
    if (lmn_npy_parse(data, size, "fuzz.npy", &a, NULL)) {
        volatile double sum = 0;
        for (gint64 i = 0; i < a.count; i++) {
            sum += lmn_npy_get(&a, i);
        }
    }
#elif FUZZ_TARGET_csv
    for (int header = 0; header < 2; header++) {
        LmnCsvTable t;
        if (lmn_csv_parse((const char *) data, size, "fuzz.csv", "-1", header, &t, NULL)) {
            g_assert(t.n > 0 && t.f > 0);
            lmn_csv_table_clear(&t);
        }
    }
#elif FUZZ_TARGET_checkpoint
    fuzz_checkpoint_one(fuzz_registry(), data, size);
#else
#error "define FUZZ_TARGET_<name>"
#endif
    return 0;
}
