/* Lamina — dataset internals shared by dataset.c and batch-reader.c.
 *
 * A dataset is either in memory (x decoded to float32 once) or streaming (x stays in the file and
 * rows are read and decoded on demand).  Labels and targets are always in memory: they are small
 * next to x, and the range checks need them; opening checks they fit the memory budget first.  A split's rows may be a subset of the file's rows
 * (after lmn_dataset_split); @rows maps a logical sample index to its file row.
 */
#pragma once

#include <lamina/dataset.h>

#include "hdf5/h5-util.h"

/* How raw stored values become floats: x = (raw * scale - mean[c]) / std[c]. */
typedef struct {
    gboolean is_u8;
    gboolean has_scale;
    double scale;
    double *mean; /* NULL, or n_mean values (1 or one per channel) */
    double *std;
    gsize n_mean, n_std;
    gint64 per_channel; /* values per channel (sample numel / dimension 1) */
    gint64 channels;
    double *a, *b; /* uint8: value = raw * a[c] + b[c], one per channel */
} LmnDecode;

/* The open file behind a streaming dataset; shared by the parts of a split. */
typedef struct {
    gint ref_count;
    char *file;
    char *split;
    hid_t h5;
    hid_t x;
    int ndim;
    hsize_t dims[LMN_MAX_DIMS + 1];
    GMutex lock; /* one reader of the HDF5 handles at a time, so messages stay per caller */
} LmnDatasetSource;

/* A target dataset besides y ([layer] target = NAME): like y, class labels or float targets,
 * always in memory. */
typedef struct {
    char *name;
    gboolean class_labels;
    LmnShape shape; /* [] for class labels */
    gint64 numel;   /* 1 for class labels */
    gint32 *labels; /* class labels, or NULL */
    float *values;  /* float targets, or NULL */
    gint64 max_label;
} LmnDatasetTarget;

struct _LmnDataset {
    char *spec;
    gint64 length;
    LmnShape sample_shape;
    gint64 sample_numel;
    float *x; /* memory mode: length * sample_numel decoded values; NULL when streaming */
    gboolean class_labels;
    LmnShape target_shape; /* [] for class labels */
    gint64 target_numel;   /* 1 for class labels */
    gint32 *labels;        /* class labels, or NULL */
    float *targets;        /* float targets, or NULL */
    gint64 max_label;
    LmnDecode decode;
    /* streaming */
    LmnDatasetSource *source; /* NULL in memory mode */
    guint32 *rows;            /* logical index -> file row; NULL = identity */
    gint64 chunk_rows;        /* file rows per chunk of x (a pseudo-chunk when contiguous) */
    double budget_bytes;      /* the memory budget it was opened with */
    /* the other targets, in the order they were asked for (target 1 + i) */
    guint n_extra;
    LmnDatasetTarget *extra;
    /* appended: y's optional 'classes' attribute (NULL-terminated, or NULL), and whether the
     * split has y at all (lmn_dataset_open_inputs() opens splits without one) */
    char **classes;
    gboolean has_y;
    /* streaming: samples of x read so far (lmn_dataset_get_rows_read), under source->lock */
    gint64 rows_read;
};

/**
 * lmn_dataset_read_extra:
 * Copies the other targets (not y) of samples @indices[0..n) into @targets_out[1..], each
 * nullable, as lmn_dataset_read_targets() does; they are in memory, so it cannot fail.
 */
void lmn_dataset_read_extra(const LmnDataset *ds, const guint32 *indices, gsize n,
                            void *const *targets_out);

/**
 * lmn_dataset_file_row: Returns: the file row of logical sample @i.
 */
static inline gint64 lmn_dataset_file_row(const LmnDataset *ds, gint64 i)
{
    return ds->rows != NULL ? (gint64) ds->rows[i] : i;
}

/**
 * lmn_dataset_read_range:
 * Streaming datasets: reads and decodes logical samples [@first, @first + @n), which must lie in
 * one file chunk or be contiguous file rows, into @out.  @scratch holds (file row span) *
 * sample_numel floats.  Checks the decoded values are finite.
 * Returns: FALSE with LMN_DATA_ERROR naming the file, dataset and sample
 */
gboolean lmn_dataset_read_range(const LmnDataset *ds, gint64 first, gint64 n, float *out,
                                float *scratch, GError **error);
