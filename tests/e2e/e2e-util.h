/* Helpers shared by the end-to-end tests: synthetic data, temporary directories, running the
 * `lamina` command, and reading checkpoints back with the HDF5 C API. */
#pragma once

#include <glib.h>
#include <lamina/lamina.h>
#include <hdf5.h>

G_BEGIN_DECLS

/**
 * e2e_write_blobs:
 * Adds split @split of @n samples to @path (created if missing): four unit-variance Gaussian
 * blobs in 2-D centred at (3 cos(k pi/2), 3 sin(k pi/2)), y = k as int32.  With
 * @random_labels the labels are drawn independently of x (an unlearnable split).
 */
void e2e_write_blobs(const char *path, const char *split, int n, guint64 seed,
                     gboolean random_labels);
/**
 * e2e_write_blobs_chunked:
 * As e2e_write_blobs, with x stored in chunks of @chunk_rows samples (0 = contiguous), the
 * layout a streaming dataset reads one chunk at a time.
 */
void e2e_write_blobs_chunked(const char *path, const char *split, int n, guint64 seed,
                             gboolean random_labels, int chunk_rows);
/**
 * e2e_write_split:
 * Writes @path (replacing it) with one split @split: x float32 [@n, @features] from @x and
 * y int32 [@n] from @y, contiguous.
 */
void e2e_write_split(const char *path, const char *split, const float *x, int n, int features,
                     const gint32 *y);
/**
 * e2e_write_target:
 * Adds dataset @name to split @split of the existing @path: float32 [@n, @k] from @v, or with
 * @k 0 int32 class labels [@n] (@v rounded), for the losses' `target = NAME`.
 */
void e2e_write_target(const char *path, const char *split, const char *name, const float *v, int n,
                      int k);
/**
 * e2e_open_backends:
 * For a test program run in-process: points XDG_CACHE_HOME into the build tree (so the pipeline
 * cache stays out of the user's ~/.cache), scans the build tree's plugins into *@registry and
 * opens the CPU backend as *@cpu, and with @vulkan the lavapipe device as *@vk.
 * Returns: FALSE when @vulkan and no lavapipe device opens (the caller exits 77, skipped)
 */
gboolean e2e_open_backends(gboolean vulkan, LmnRegistry **registry, LmnBackend **cpu,
                           LmnBackend **vk);
/** e2e_remove_tree: deletes a file or a directory tree. */
void e2e_remove_tree(const char *path);
/** e2e_lamina_exe: Returns: the `lamina` under test ($LMN_TEST_LAMINA). */
const char *e2e_lamina_exe(void);
/**
 * e2e_run_lamina:
 * Runs `lamina` with the NULL-terminated arguments; @out and @err (nullable) receive its output.
 * Returns: the exit status, or -1 when it did not exit normally
 */
int e2e_run_lamina(char **out, char **err, const char *first, ...) G_GNUC_NULL_TERMINATED;
/** e2e_read_floats: Returns: (transfer full): dataset @name of @file as floats, or NULL. */
float *e2e_read_floats(const char *file, const char *name, gsize *n_out);
/** e2e_read_attr_int: Returns: integer attribute @attr of object @obj in @file. */
gint64 e2e_read_attr_int(const char *file, const char *obj, const char *attr);
/** e2e_read_attr_double: Returns: float attribute @attr of object @obj in @file. */
double e2e_read_attr_double(const char *file, const char *obj, const char *attr);
/**
 * e2e_list_datasets:
 * Returns: (transfer full): the sorted paths of every dataset under @group of @file
 */
GPtrArray *e2e_list_datasets(const char *file, const char *group);
/**
 * e2e_assert_same_floats:
 * Asserts that every dataset under @group has the same shape and bytes in both files
 * (memcmp of the float arrays) and that there is at least one.
 */
void e2e_assert_same_floats(const char *a, const char *b, const char *group);
/** e2e_csv_rows: Returns: (transfer full): the data rows of a metrics.csv, split at commas. */
GPtrArray *e2e_csv_rows(const char *path);

G_END_DECLS
