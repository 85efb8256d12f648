/* Lamina — datasets in HDF5.
 *
 * Layout (one group per split):
 *   /<split>/x   float32 or uint8, [N, sample shape...]
 *   /<split>/y   integer class labels [N] (uint8, int8, uint16, int16, int32, uint32, int64,
 *                uint64), or float32 targets [N, K...]
 *   optional attributes on x: scale (uint8 values are multiplied by it), mean, std (a scalar or
 *   one value per channel, channel = dimension 1): decoded x = (raw * scale - mean) / std.
 * A split is named "FILE:/split" on the command line and in configs.
 */
#pragma once

#include <lamina/error.h>
#include <lamina/random.h>
#include <lamina/tensor.h>

G_BEGIN_DECLS

typedef struct _LmnDataset LmnDataset;

/**
 * lmn_dataset_open:
 * @spec: "FILE:/split" (FILE may contain ':'; the last ":/" separates the split)
 * Opens and validates a split and reads it into memory (decoded to float32, labels to int32).
 * Errors (LMN_DATA_ERROR) name the file, the dataset path and the problem: missing file, not
 * HDF5, missing group or dataset, x/y length mismatch, unsupported dtype, NaN/Inf in float data,
 * negative labels.
 * Returns: (transfer full): the dataset, or NULL with @error
 */
LmnDataset *lmn_dataset_open(const char *spec, GError **error);
/** lmn_dataset_free: frees the dataset. */
void lmn_dataset_free(LmnDataset *ds);
/** lmn_dataset_get_spec: Returns: (transfer none): the "FILE:/split" it was opened from. */
const char *lmn_dataset_get_spec(const LmnDataset *ds);
/** lmn_dataset_get_length: Returns: number of samples. */
gint64 lmn_dataset_get_length(const LmnDataset *ds);
/** lmn_dataset_get_sample_shape: Returns: (transfer none): per-sample shape of x. */
const LmnShape *lmn_dataset_get_sample_shape(const LmnDataset *ds);
/** lmn_dataset_has_class_labels: Returns: TRUE when y holds integer class labels. */
gboolean lmn_dataset_has_class_labels(const LmnDataset *ds);
/** lmn_dataset_get_target_shape: Returns: (transfer none): per-sample shape of y ([] for labels). */
const LmnShape *lmn_dataset_get_target_shape(const LmnDataset *ds);
/** lmn_dataset_get_max_label: Returns: the largest class label (-1 without labels). */
gint64 lmn_dataset_get_max_label(const LmnDataset *ds);
/**
 * lmn_dataset_check_model:
 * Checks the split against a model's per-sample input shape (element count must match; a flat
 * [N, 784] file feeds a [1, 28, 28] model) and, for class labels, that every label is below
 * @n_classes (pass -1 to skip).
 * Returns: FALSE with LMN_DATA_ERROR_SHAPE / LMN_DATA_ERROR_VALUE naming file, split, expected
 *   and found values
 */
gboolean lmn_dataset_check_model(const LmnDataset *ds, const LmnShape *input_shape,
                                 gint64 n_classes, GError **error);
/**
 * lmn_dataset_gather:
 * Copies samples @indices[0..n) into @x_out (n * sample numel floats) and @y_out (n int32 labels,
 * or n * target numel floats).
 */
void lmn_dataset_gather(const LmnDataset *ds, const guint32 *indices, gsize n, float *x_out,
                        void *y_out);
/**
 * lmn_dataset_split:
 * Holds out round(@fraction * N) samples, chosen by a Philox permutation of @seed's
 * LMN_STREAM_SPLIT stream, as a new dataset; @ds keeps the rest (order preserved in both).
 * Returns: (transfer full): the held-out part, or NULL with @error when a part would be empty
 */
LmnDataset *lmn_dataset_split(LmnDataset *ds, double fraction, guint64 seed, GError **error);

/**
 * lmn_convert_idx:
 * @images, @labels: IDX files (idx3 uint8 images, idx1 uint8 labels), plain or gzip-compressed
 * @output: "FILE:/split"; FILE is created, or opened and the split added (an existing split of
 *   that name is an error unless @overwrite)
 * Writes x as uint8 [N, 1, rows, cols] with scale = 1/255 and y as uint8 [N], chunked and
 * deflate-compressed.  The file is written to a temporary name and renamed, so a failure never
 * leaves a half-written or damaged file.
 * Returns: FALSE with LMN_DATA_ERROR_OPEN / _FORMAT / _WRITE naming the file and problem
 */
gboolean lmn_convert_idx(const char *images, const char *labels, const char *output,
                         gboolean overwrite, GError **error);

/**
 * lmn_split_spec:
 * Splits "FILE:/split" into its parts.  The split keeps its leading '/' (it is the group's
 * path in the file, "/train"); trailing '/' are dropped.
 * Returns: FALSE with LMN_DATA_ERROR_OPEN when there is no ":/"
 */
gboolean lmn_split_spec(const char *spec, char **file_out, char **split_out, GError **error);

G_END_DECLS
