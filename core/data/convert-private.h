/* Lamina — internals of the converters (convert-*.c): the split writer and the CSV / .npy
 * parsers, exposed to the fuzz targets and tests. */
#pragma once

#include <lamina/dataset.h>

#include "hdf5/h5-util.h"

/**
 * LmnSplitWriter:
 * Writes one split of a dataset file through an LmnH5AtomicFile: the file is replaced only on
 * commit, so a failure never damages it; its other splits are kept.
 */
typedef struct _LmnSplitWriter LmnSplitWriter;

/**
 * lmn_split_writer_new:
 * @output: "FILE:/split"
 * Refuses an existing split unless @overwrite (LMN_DATA_ERROR_WRITE), removes it when
 * overwriting, and creates the split's group.
 * Returns: (transfer full): the writer, or NULL with @error
 */
LmnSplitWriter *lmn_split_writer_new(const char *output, gboolean overwrite, GError **error);
/**
 * lmn_split_writer_write:
 * Creates dataset @name (x or y) of @file_type and @dims in the split, chunked (about 1 MiB per
 * chunk, whole samples) and deflate-compressed, from @data in @mem_type.
 * Returns: (transfer full): the open dataset (for attributes; close it), or H5I_INVALID_HID with
 *   LMN_DATA_ERROR_WRITE
 */
hid_t lmn_split_writer_write(LmnSplitWriter *w, const char *name, hid_t file_type, hid_t mem_type,
                             int ndim, const hsize_t *dims, const void *data, GError **error);
/**
 * lmn_split_writer_write_stats:
 * Computes per-channel (dimension 1 of x; one value for 1-D x) mean and population std of @x in
 * double and stores them as the attributes stats_mean / stats_std of @dset.  With @normalize
 * also as mean / std, which lmn_dataset_open applies (a zero std is stored as 1 there).
 */
gboolean lmn_split_writer_write_stats(LmnSplitWriter *w, hid_t dset, const float *x, gint64 n,
                                      gint64 channels, gint64 per_channel, gboolean normalize,
                                      GError **error);
/** lmn_split_writer_commit: Returns: FALSE with LMN_DATA_ERROR_WRITE. */
gboolean lmn_split_writer_commit(LmnSplitWriter *w, GError **error);
/** lmn_split_writer_free: frees the writer; without a commit the file is unchanged. */
void lmn_split_writer_free(LmnSplitWriter *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LmnSplitWriter, lmn_split_writer_free)

/** LmnCsvTable: a parsed CSV file: @n rows of @f float features and an int32 label each. */
typedef struct {
    gint64 n;
    gint64 f;
    float *x;
    gint32 *y;
} LmnCsvTable;

/**
 * lmn_csv_parse:
 * @name: the file name for messages
 * @label_column: a 0-based column index (negative counts from the end) or, with @header, a column
 *   name
 * Parses comma-separated numbers; blank lines are skipped, cells may be quoted.
 * Returns: FALSE with LMN_DATA_ERROR_FORMAT naming the file, line and column: a ragged row, a
 *   non-numeric cell, a label that is not an integer >= 0, an unknown label column, no rows
 */
gboolean lmn_csv_parse(const char *data, gsize len, const char *name, const char *label_column,
                       gboolean header, LmnCsvTable *out, GError **error);
/** lmn_csv_table_clear: frees the table's arrays. */
void lmn_csv_table_clear(LmnCsvTable *t);

/** LmnNpyArray: a parsed .npy file (borrowing the data bytes). */
typedef struct {
    char kind;      /* 'f' float, 'i' signed, 'u' unsigned */
    int item_size;  /* bytes per element */
    int ndim;
    gint64 shape[LMN_MAX_DIMS + 2];
    gint64 count;   /* elements */
    const guint8 *data;
} LmnNpyArray;

/**
 * lmn_npy_parse:
 * Parses a .npy (format 1.0, 2.0 or 3.0) header: little-endian (or byte-sized) float32, float64,
 * uint8, int32, int64 in C order, and checks the data length.
 * Returns: FALSE with LMN_DATA_ERROR_FORMAT (bad magic, malformed header, fortran_order, truncated
 *   data) or LMN_DATA_ERROR_DTYPE (unsupported dtype), naming the file
 */
gboolean lmn_npy_parse(const guint8 *data, gsize len, const char *name, LmnNpyArray *out,
                       GError **error);
/** lmn_npy_get: Returns: element @i of @a as a double. */
double lmn_npy_get(const LmnNpyArray *a, gint64 i);
