/* Lamina — datasets in HDF5.
 *
 * Layout (one group per split):
 *   /<split>/x   float32 or uint8, [N, sample shape...]
 *   /<split>/y   integer class labels [N] (uint8, int8, uint16, int16, int32, uint32, int64,
 *                uint64), or float32 targets [N, K...]
 *   optional attributes on x: scale (uint8 values are multiplied by it), mean, std (a scalar or
 *   one value per channel, channel = dimension 1): decoded x = (raw * scale - mean) / std.
 *   optional attribute on y: classes, a string array of class names (name i for label i).
 *   y may be absent for inference only (lmn_dataset_open_inputs()).
 *   /<split>/NAME  further targets that losses read ([layer] target = NAME): like y, integer
 *                class labels [N] or float32 targets [N, K...], one row per sample of x
 * A split is named "FILE:/split" on the command line and in configs.
 *
 * Targets are numbered: 0 is y, then the other datasets lmn_dataset_open_with_targets() was
 * asked for, in that order.
 */
#pragma once

#include <lamina/augment.h>
#include <lamina/error.h>
#include <lamina/layer.h> /* LmnTensorInfo */
#include <lamina/random.h>
#include <lamina/tensor.h>

G_BEGIN_DECLS

typedef struct _LmnDataset LmnDataset;

/**
 * lmn_dataset_open:
 * @spec: "FILE:/split" (FILE may contain ':'; the last ":/" separates the split)
 * Opens and validates a split.  Same as lmn_dataset_open_with_budget(@spec, -1, @error): x is
 * decoded into memory when it fits the memory budget, else streamed from the file.
 * Errors (LMN_DATA_ERROR) name the file, the dataset path and the problem: missing file, not
 * HDF5, missing group or dataset, x/y length mismatch, unsupported dtype, NaN/Inf in float data,
 * negative labels.
 * Returns: (transfer full): the dataset, or NULL with @error
 */
LmnDataset *lmn_dataset_open(const char *spec, GError **error);
/**
 * lmn_dataset_open_with_budget:
 * @budget_mb: memory budget in MiB for decoded x (float32); negative: the LAMINA_DATA_BUDGET
 *   environment variable (MiB, e.g. "512" or "0.5"), else 2048
 * Opens and validates a split.  When the decoded x fits the budget it is read into memory
 * (labels to int32); otherwise the dataset *streams*: x stays in the file and is read by hyperslab
 * and decoded on demand (lmn_dataset_read, LmnBatchReader), while labels and targets are still
 * held in memory: their size counts in the budget, and a split whose labels or targets alone
 * exceed it (or 16 MiB, whichever is larger) is refused before they are read, naming the size
 * and memory_budget_mb.  A dataset compressed with an HDF5 filter this HDF5 lacks is refused
 * naming the filter.  In streaming mode NaN/Inf in x is found when the sample is read (reads fail
 * with LMN_DATA_ERROR_VALUE naming the sample) rather than at open.
 * Returns: (transfer full): the dataset, or NULL with @error (as lmn_dataset_open)
 */
LmnDataset *lmn_dataset_open_with_budget(const char *spec, double budget_mb, GError **error);
/**
 * lmn_dataset_open_with_targets:
 * @names: (nullable) (array zero-terminated=1): datasets of the split to read besides y (e.g.
 *   lmn_config_get_target_name() for each of the config's targets); "y" and repeats are
 *   skipped, so the config's list may be passed as it is
 * @budget_mb: as lmn_dataset_open_with_budget()
 * Like lmn_dataset_open_with_budget() (which is this with no @names), also reading each named
 * target dataset as y is read: integer class labels (to int32, range-checked) or float targets,
 * finite, with x's sample count; they stay in memory and count in the memory budget as y does.
 * Returns: (transfer full): the dataset, or NULL with @error: LMN_DATA_ERROR_MISSING "no dataset
 *   'NAME' in FILE:/split", _SHAPE naming the file, split and dataset with x's and its sample
 *   counts, or any error of lmn_dataset_open_with_budget() for that dataset
 */
LmnDataset *lmn_dataset_open_with_targets(const char *spec, const char *const *names,
                                          double budget_mb, GError **error);
/**
 * lmn_dataset_open_inputs:
 * @budget_mb: as lmn_dataset_open_with_budget()
 * Opens a split for inference (`lamina predict`): like lmn_dataset_open_with_budget(), but y is
 * optional.  A split without y has no targets: lmn_dataset_has_y() is FALSE,
 * lmn_dataset_has_class_labels() FALSE, its target shape [] and its targets must not be read
 * (pass NULL for @y_out).
 * Returns: (transfer full): the dataset, or NULL with @error (as lmn_dataset_open)
 */
LmnDataset *lmn_dataset_open_inputs(const char *spec, double budget_mb, GError **error);
/** lmn_dataset_has_y: Returns: FALSE only for a split without y (lmn_dataset_open_inputs()). */
gboolean lmn_dataset_has_y(const LmnDataset *ds);
/** lmn_dataset_get_scale: Returns: x's 'scale' attribute, 1 when absent. */
double lmn_dataset_get_scale(const LmnDataset *ds);
/**
 * lmn_dataset_get_mean:
 * @n_out: (out): 0 when absent, 1 for a scalar, else one value per channel
 * Returns: (transfer none) (nullable): x's 'mean' attribute, NULL when absent (mean 0)
 */
const double *lmn_dataset_get_mean(const LmnDataset *ds, gsize *n_out);
/** lmn_dataset_get_std: as lmn_dataset_get_mean(), for x's 'std' attribute (NULL: std 1). */
const double *lmn_dataset_get_std(const LmnDataset *ds, gsize *n_out);
/** lmn_dataset_is_uint8: Returns: whether x is stored as uint8 (pixels). */
gboolean lmn_dataset_is_uint8(const LmnDataset *ds);
/**
 * lmn_dataset_get_classes:
 * Returns: (transfer none) (nullable) (array zero-terminated=1): the class names of y's
 *   'classes' attribute (a string array, name i for label i, as `lamina convert --classes`
 *   writes it), or NULL when it has none
 */
const char *const *lmn_dataset_get_classes(const LmnDataset *ds);
/** lmn_dataset_get_n_targets: Returns: the number of targets, y included (>= 1). */
guint lmn_dataset_get_n_targets(const LmnDataset *ds);
/** lmn_dataset_get_target_name: Returns: (transfer none): target @index's dataset name. */
const char *lmn_dataset_get_target_name(const LmnDataset *ds, guint index);
/** lmn_dataset_find_target: Returns: the index of target @name, or -1 when it was not read. */
gint lmn_dataset_find_target(const LmnDataset *ds, const char *name);
/**
 * lmn_dataset_get_target_info_at:
 * Returns: target @index's per-sample info: i32 [] for class labels, else f32 and its shape
 */
LmnTensorInfo lmn_dataset_get_target_info_at(const LmnDataset *ds, guint index);
/**
 * lmn_dataset_check_pixel_labels:
 * @index: a target holding float values (per-pixel labels loaded from integer data)
 * @n_classes: the classes of the loss reading it
 * @ignore_index: the loss's label that marks a value to ignore
 * Checks every value of target @index is a whole number in [0, @n_classes) or @ignore_index.
 * Returns: FALSE with LMN_DATA_ERROR_VALUE naming the sample and value otherwise; TRUE for class
 *   labels or a negative @n_classes
 */
gboolean lmn_dataset_check_pixel_labels(const LmnDataset *ds, guint index, gint64 n_classes,
                                        gint64 ignore_index, GError **error);
/**
 * lmn_dataset_check_target_labels:
 * For target @index > 0 holding class labels, checks that every label is below @n_classes
 * (-1 skips; target 0, y, is checked by lmn_dataset_check_model()).
 * Returns: FALSE with LMN_DATA_ERROR_VALUE naming the split, the target, the sample and label
 */
gboolean lmn_dataset_check_target_labels(const LmnDataset *ds, guint index, gint64 n_classes,
                                         GError **error);
/**
 * lmn_dataset_read_targets:
 * @targets_out: (nullable): lmn_dataset_get_n_targets() buffers, each nullable: [0] for y as
 *   @y_out of lmn_dataset_read(), [t] for target t (n int32 labels or n * numel floats)
 * As lmn_dataset_read(), for every target.
 * Returns: FALSE with @error as lmn_dataset_read()
 */
gboolean lmn_dataset_read_targets(const LmnDataset *ds, const guint32 *indices, gsize n,
                                  float *x_out, void *const *targets_out, GError **error);
/** lmn_dataset_is_streaming: Returns: TRUE when x is read from the file on demand. */
gboolean lmn_dataset_is_streaming(const LmnDataset *ds);
/**
 * lmn_dataset_get_rows_read:
 * Returns: the samples of x this dataset (this part of a split) has read from its file so far:
 *   what a streaming dataset costs in reads, and what data-parallel training divides among the
 *   ranks; 0 in memory mode, where x was read whole when the dataset was opened
 */
gint64 lmn_dataset_get_rows_read(const LmnDataset *ds);
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
 * or n * target numel floats); either may be NULL.  A streaming read that fails (a damaged
 * chunk, NaN in the file) logs a warning and fills @x_out with zeros: use lmn_dataset_read to get
 * the error instead.
 */
void lmn_dataset_gather(const LmnDataset *ds, const guint32 *indices, gsize n, float *x_out,
                        void *y_out);
/**
 * lmn_dataset_read:
 * As lmn_dataset_gather, reporting failures of streaming reads.  Consecutive indices in
 * consecutive file rows are read with one hyperslab, so sequential passes are efficient; random
 * single samples from a compressed file cost a chunk decompression each (use LmnBatchReader).
 * Returns: FALSE with LMN_DATA_ERROR_OPEN (unreadable chunk) or _VALUE (NaN/Inf) naming the
 *   file, dataset and sample
 */
gboolean lmn_dataset_read(const LmnDataset *ds, const guint32 *indices, gsize n, float *x_out,
                          void *y_out, GError **error);
/**
 * lmn_dataset_split:
 * Holds out round(@fraction * N) samples, chosen by a Philox permutation of @seed's
 * LMN_STREAM_SPLIT stream, as a new dataset; @ds keeps the rest (order preserved in both).
 * A streaming dataset's parts both stream from the same file.
 * Returns: (transfer full): the held-out part, or NULL with @error when a part would be empty
 */
LmnDataset *lmn_dataset_split(LmnDataset *ds, double fraction, guint64 seed, GError **error);

/**
 * LmnBatchReader:
 * Delivers one epoch of mini-batches of a dataset: in a deterministic order, optionally
 * augmented, decoded ahead of time by a prefetch thread.
 *
 * Order for (seed, epoch), drawn from Philox stream LMN_STREAM(LMN_STREAM_SHUFFLE, epoch):
 * - in-memory datasets: a full Fisher–Yates permutation of 0..N-1 (lmn_random_shuffle of the
 *   identity), the same order the training loop has always used;
 * - streaming datasets: the file's chunks in a random order (a permutation of chunk indices),
 *   then a shuffle buffer of K samples: samples enter in chunk order, and each output is a
 *   uniformly chosen buffered sample, replaced by the next incoming one (the remaining K drain in
 *   random order at the end).  Every sample appears exactly once; a sample entering the stream at
 *   position p leaves at a position >= p - K, after a geometric wait of mean K; with K at least
 *   a few chunks, neighbouring samples of the file are spread across many batches.  K is a
 *   quarter of the memory budget (at least 4 batches), and the reader holds at most K samples
 *   plus one chunk decoded at a time.
 * Without shuffling the order is 0..N-1.  The order is computed from indices alone, so
 * prefetching, thread timing and where reading resumed never change it.
 *
 * Augmentation (when @augment enables it) is applied per sample with the stream
 * LMN_STREAM(LMN_STREAM_AUGMENT, epoch) at the sample's index (augment.h).
 */
typedef struct _LmnBatchReader LmnBatchReader;

/**
 * LmnBatchReaderOptions:
 * @batch_size: samples per batch (the last batch of an epoch may be smaller)
 * @seed: the training seed
 * @shuffle: shuffle each epoch (else file order)
 * @augment: (nullable): augmentation, or NULL for none; copied
 * @prefetch: decode batches in a background thread (@depth batches ahead, default 2 when 0)
 * @depth: prefetch depth in batches (0 = 2)
 * @slice_rank, @slice_count: data-parallel training: with @slice_count > 1 only the rows
 *   [@slice_rank m / @slice_count, (@slice_rank + 1) m / @slice_count) of each batch of m
 *   samples (this rank's slice, as the trainer takes it) get their x; a streaming dataset reads
 *   only those samples from the file (hyperslabs of the rows each needs, not whole chunks), and
 *   the other rows' x are unspecified.  Labels, targets and indices cover the whole batch (they
 *   are in memory).  0 or 1: every row.  In the place of a reserved pointer (two 32-bit
 *   fields), so callers that zero the struct get every row.
 */
typedef struct {
    gint64 batch_size;
    guint64 seed;
    gboolean shuffle;
    const LmnAugmentConfig *augment;
    gboolean prefetch;
    gint64 depth;
    gint32 slice_rank;
    gint32 slice_count;
    gpointer reserved[3];
} LmnBatchReaderOptions;

/**
 * lmn_batch_reader_new:
 * @ds: the dataset (borrowed; it must outlive the reader and not be split while it is used)
 * Creates a reader positioned at (epoch 0, batch 0).  For PCA colour jitter the RGB covariance is
 * computed here, once (over the whole set in memory mode, over the first 64 MiB of samples when
 * streaming).
 * Returns: (transfer full): the reader, or NULL with LMN_DATA_ERROR_SHAPE when the augmentation
 *   does not fit the samples' shape (or a read error while computing the PCA)
 */
LmnBatchReader *lmn_batch_reader_new(LmnDataset *ds, const LmnBatchReaderOptions *options,
                                     GError **error);
/** lmn_batch_reader_free: stops the prefetch thread and frees the reader. */
void lmn_batch_reader_free(LmnBatchReader *reader);
/** lmn_batch_reader_get_batches_per_epoch: Returns: ceil(N / batch size). */
gint64 lmn_batch_reader_get_batches_per_epoch(const LmnBatchReader *reader);
/**
 * lmn_batch_reader_seek:
 * Positions the reader at batch @batch_index (0 .. batches per epoch) of @epoch, for the start of
 * an epoch or an exact resume: the batches that follow are the same as those an uninterrupted
 * reader would have delivered from that point.
 */
void lmn_batch_reader_seek(LmnBatchReader *reader, gint64 epoch, gint64 batch_index);
/**
 * lmn_batch_reader_get_position:
 * @epoch_out, @batch_index_out: (out) (optional): the epoch and the index of the next batch
 */
void lmn_batch_reader_get_position(const LmnBatchReader *reader, gint64 *epoch_out,
                                   gint64 *batch_index_out);
/**
 * lmn_batch_reader_next:
 * @x_out: batch size * sample numel floats
 * @y_out: (nullable): batch size int32 labels, or batch size * target numel floats
 * @indices_out: (nullable): batch size dataset indices of the delivered samples
 * Delivers the next batch of the current epoch.  At the end of the epoch it returns 0; call
 * lmn_batch_reader_seek(reader, epoch + 1, 0) to go on.
 * Returns: the number of samples delivered, 0 at the end of the epoch, or -1 with @error (a
 *   streaming read failed: LMN_DATA_ERROR naming the file and sample)
 */
gint64 lmn_batch_reader_next(LmnBatchReader *reader, float *x_out, void *y_out,
                             guint32 *indices_out, GError **error);
/**
 * lmn_batch_reader_next_targets:
 * @targets_out: (nullable): lmn_dataset_get_n_targets() buffers, each nullable: [0] for y (as
 *   @y_out of lmn_batch_reader_next()), [t] for target t of the dataset (batch size int32
 *   labels or batch size * numel floats)
 * As lmn_batch_reader_next(), delivering every target of the batch's samples (the same order,
 * prefetched with the batch).
 * Returns: as lmn_batch_reader_next()
 */
gint64 lmn_batch_reader_next_targets(LmnBatchReader *reader, float *x_out, void *const *targets_out,
                                     guint32 *indices_out, GError **error);
/**
 * lmn_batch_reader_get_wait_seconds:
 * Returns: the total time lmn_batch_reader_next has spent waiting for data (with prefetching,
 *   the time the consumer was blocked; without, the time spent reading and decoding)
 */
double lmn_batch_reader_get_wait_seconds(const LmnBatchReader *reader);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LmnBatchReader, lmn_batch_reader_free)

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
 * lmn_convert_csv:
 * @csv: a comma-separated file of numbers, one sample per line (blank lines skipped)
 * @label_column: the label's column: a 0-based index (negative counts from the end) or, with
 *   @header, its name in the header
 * @header: the first non-blank line names the columns
 * @output, @overwrite: as lmn_convert_idx
 * @normalize: also store the statistics as x's mean/std attributes, which lmn_dataset_open
 *   applies ((x - mean) / std; a constant feature gets std 1)
 * Writes x as float32 [N, F] (every column but the label) and y as int32 [N], chunked and
 * compressed.  Per-feature mean and population std, computed in double, are always stored as the
 * attributes stats_mean and stats_std of x: informational names that lmn_dataset_open does not
 * apply, so data is never normalised twice.
 * Returns: FALSE with LMN_DATA_ERROR_FORMAT naming the file, line and column (a ragged row, a
 *   non-numeric cell, a label that is not an integer >= 0), _OPEN or _WRITE
 */
gboolean lmn_convert_csv(const char *csv, const char *label_column, gboolean header,
                         const char *output, gboolean overwrite, gboolean normalize,
                         GError **error);

/**
 * lmn_convert_npy:
 * @x_npy: a .npy array [N, sample shape...]: float32, float64, uint8, int32 or int64,
 *   little-endian, C order (format versions 1.0 to 3.0)
 * @y_npy: a .npy array of N integer labels ([N] or [N, 1]), or float targets [N, K...]
 * @output, @overwrite, @normalize: as lmn_convert_csv
 * Writes x as uint8 (from uint8) or float32, y as int32 labels or float32 targets, chunked and
 * compressed, with stats_mean / stats_std per channel (dimension 1 of x) as lmn_convert_csv.
 * Returns: FALSE with LMN_DATA_ERROR_FORMAT (bad magic, malformed header, Fortran order,
 *   truncated data, N mismatch), _DTYPE (unsupported dtype), _VALUE (NaN/Inf, negative label),
 *   _OPEN or _WRITE, naming the file
 */
gboolean lmn_convert_npy(const char *x_npy, const char *y_npy, const char *output,
                         gboolean overwrite, gboolean normalize, GError **error);

/**
 * lmn_dataset_set_classes:
 * @spec: an existing split "FILE:/split" with integer class labels
 * @classes: (array zero-terminated=1): the class names, name i for label i
 * Stores @classes as y's string-array attribute 'classes' (lmn_dataset_get_classes()), rewriting
 * the file atomically with its other contents kept.  `lamina convert --classes` uses it.
 * Returns: FALSE with LMN_DATA_ERROR_VALUE (fewer names than classes, or y not class labels),
 *   _WRITE, or an error opening the split
 */
gboolean lmn_dataset_set_classes(const char *spec, const char *const *classes, GError **error);

/**
 * lmn_npy_read_samples:
 * @path: a .npy file of float32, float64 or uint8 elements, C order (as lmn_convert_npy() reads)
 * @sample_shape: one sample's shape (the model's input)
 * @n_out: (out): the number of samples
 * @is_uint8_out: (out) (optional): whether the file held uint8 (pixels, still to preprocess)
 * Reads inputs for `lamina predict`: an array shaped exactly @sample_shape is one sample; one of
 * two or more dimensions whose every row holds a sample's element count ([N, sample...], or a
 * flat [N, numel]) is N samples.
 * Returns: (transfer full): *@n_out * numel floats (uint8 as 0..255), or NULL with
 *   LMN_DATA_ERROR_SHAPE (naming the file's shape and the model's), _DTYPE, _VALUE (NaN/Inf),
 *   _FORMAT or _OPEN, naming the file
 */
float *lmn_npy_read_samples(const char *path, const LmnShape *sample_shape, gint64 *n_out,
                            gboolean *is_uint8_out, GError **error);

/**
 * lmn_dataset_write:
 * @output: "FILE:/split"; FILE is created, or opened and the split added (an existing split of
 *   that name is an error unless @overwrite)
 * @x: @n samples of @sample_shape, float32, in the units a model sees
 * @labels: @n class labels (>= 0)
 * Writes x as float32 [N, sample shape...] without scale, mean or std attributes (the values are
 * stored decoded, so reading them back gives @x exactly) and y as int32 [N], chunked and
 * compressed, atomically as the converters do.  For programs that make data, e.g. the
 * adversarial examples of `lamina attack`.
 * Returns: FALSE with LMN_DATA_ERROR_VALUE (a NaN/Inf in @x or a negative label, naming the
 *   sample), _OPEN or _WRITE, naming the file
 */
gboolean lmn_dataset_write(const char *output, const float *x, gint64 n,
                           const LmnShape *sample_shape, const gint32 *labels, gboolean overwrite,
                           GError **error);

/**
 * lmn_split_spec:
 * Splits "FILE:/split" into its parts.  The split keeps its leading '/' (it is the group's
 * path in the file, "/train"); trailing '/' are dropped.
 * Returns: FALSE with LMN_DATA_ERROR_OPEN when there is no ":/"
 */
gboolean lmn_split_spec(const char *spec, char **file_out, char **split_out, GError **error);

G_END_DECLS
