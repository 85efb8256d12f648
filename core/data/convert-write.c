/* Lamina — writing a converted split (convert-private.h): chunked, compressed, atomic. */
#include "convert-private.h"

#include <math.h>
#include <string.h>

struct _LmnSplitWriter {
    char *output;
    char *file;
    char *split;
    LmnH5Errors errs;
    LmnH5AtomicFile *af;
    hid_t group;
};

void lmn_split_writer_free(LmnSplitWriter *w)
{
    if (w == NULL) {
        return;
    }
    lmn_h5_close(w->group);
    lmn_h5_atomic_file_free(w->af);
    g_free(w->output);
    g_free(w->file);
    g_free(w->split);
    g_free(w);
}

LmnSplitWriter *lmn_split_writer_new(const char *output, gboolean overwrite, GError **error)
{
    g_return_val_if_fail(output != NULL, NULL);
    g_autoptr(LmnSplitWriter) w = g_new0(LmnSplitWriter, 1);
    w->group = H5I_INVALID_HID;
    if (!lmn_split_spec(output, &w->file, &w->split, error)) {
        return NULL;
    }
    w->output = g_strdup(output);
    w->errs = lmn_h5_errors_data(w->file);
    gboolean is_root = strcmp(w->split, "/") == 0;
    gboolean exists = FALSE;
    if (g_file_test(w->file, G_FILE_TEST_EXISTS)) {
        g_auto(LmnH5Id) h5 = lmn_h5_file_open_read(w->file, &w->errs, error);
        if (h5 < 0) {
            g_prefix_error(error, "cannot add %s: ", w->split);
            return NULL;
        }
        exists = is_root ? lmn_h5_path_exists(h5, "/x") || lmn_h5_path_exists(h5, "/y")
                         : lmn_h5_path_exists(h5, w->split);
    }
    if (exists && !overwrite) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_WRITE,
                    "%s: the split %s already exists; pass --overwrite to replace it", w->file,
                    w->split);
        return NULL;
    }
    w->af = lmn_h5_atomic_file_new(w->file, TRUE, &w->errs, error);
    if (w->af == NULL) {
        return NULL;
    }
    hid_t h5 = lmn_h5_atomic_file_peek_id(w->af);
    if (exists) {
        const char *victims[] = {is_root ? "/x" : w->split, is_root ? "/y" : NULL};
        for (guint i = 0; i < G_N_ELEMENTS(victims) && victims[i] != NULL; i++) {
            if (lmn_h5_path_exists(h5, victims[i]) && H5Ldelete(h5, victims[i], H5P_DEFAULT) < 0) {
                g_autofree char *why = lmn_h5_error_text();
                g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_WRITE,
                            "%s: cannot remove the old %s: %s", w->file, victims[i], why);
                return NULL;
            }
        }
    }
    w->group = lmn_h5_group_create(h5, w->split, &w->errs, error);
    if (w->group < 0) {
        return NULL;
    }
    return g_steal_pointer(&w);
}

hid_t lmn_split_writer_write(LmnSplitWriter *w, const char *name, hid_t file_type, hid_t mem_type,
                             int ndim, const hsize_t *dims, const void *data, GError **error)
{
    g_return_val_if_fail(w != NULL && ndim >= 1 && ndim <= LMN_MAX_DIMS + 1, H5I_INVALID_HID);
    hsize_t row_bytes = H5Tget_size(file_type);
    for (int i = 1; i < ndim; i++) {
        row_bytes *= MAX(dims[i], 1);
    }
    hsize_t chunk[LMN_MAX_DIMS + 1];
    chunk[0] = MAX(1, MIN(MAX(dims[0], 1), (1u << 20) / MAX(row_bytes, 1)));
    for (int i = 1; i < ndim; i++) {
        chunk[i] = MAX(dims[i], 1);
    }
    g_auto(LmnH5Id) space = H5Screate_simple(ndim, dims, NULL);
    g_auto(LmnH5Id) dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, ndim, chunk);
    unsigned int config = 0;
    if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0 &&
        H5Zget_filter_info(H5Z_FILTER_DEFLATE, &config) >= 0 &&
        (config & H5Z_FILTER_CONFIG_ENCODE_ENABLED) != 0) {
        H5Pset_shuffle(dcpl);
        H5Pset_deflate(dcpl, 4);
    }
    H5Eclear2(H5E_DEFAULT);
    hid_t ds = H5Dcreate2(w->group, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        g_autofree char *why = lmn_h5_error_text();
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_WRITE, "%s: cannot write %s: %s",
                    w->output, name, why);
        lmn_h5_close(ds);
        return H5I_INVALID_HID;
    }
    return ds;
}

gboolean lmn_split_writer_write_stats(LmnSplitWriter *w, hid_t dset, const float *x, gint64 n,
                                      gint64 channels, gint64 per_channel, gboolean normalize,
                                      GError **error)
{
    g_autofree double *sum = g_new0(double, channels);
    g_autofree double *sq = g_new0(double, channels);
    g_autofree double *mean = g_new0(double, channels);
    g_autofree double *std = g_new0(double, channels);
    /* Two passes (mean, then squared deviations) so large offsets do not cancel. */
    for (gint64 s = 0; s < n; s++) {
        for (gint64 c = 0; c < channels; c++) {
            const float *v = x + (s * channels + c) * per_channel;
            for (gint64 k = 0; k < per_channel; k++) {
                sum[c] += v[k];
            }
        }
    }
    double count = MAX((double) n * (double) per_channel, 1.0);
    for (gint64 c = 0; c < channels; c++) {
        mean[c] = sum[c] / count;
    }
    for (gint64 s = 0; s < n; s++) {
        for (gint64 c = 0; c < channels; c++) {
            const float *v = x + (s * channels + c) * per_channel;
            for (gint64 k = 0; k < per_channel; k++) {
                double d = v[k] - mean[c];
                sq[c] += d * d;
            }
        }
    }
    for (gint64 c = 0; c < channels; c++) {
        std[c] = sqrt(sq[c] / count);
    }
    if (!lmn_h5_attr_write_doubles(dset, "stats_mean", mean, (gsize) channels, &w->errs, error) ||
        !lmn_h5_attr_write_doubles(dset, "stats_std", std, (gsize) channels, &w->errs, error)) {
        return FALSE;
    }
    if (!normalize) {
        return TRUE;
    }
    for (gint64 c = 0; c < channels; c++) {
        if (std[c] == 0.0) {
            std[c] = 1.0; /* a constant feature: centre it, do not divide by zero */
        }
    }
    return lmn_h5_attr_write_doubles(dset, "mean", mean, (gsize) channels, &w->errs, error) &&
           lmn_h5_attr_write_doubles(dset, "std", std, (gsize) channels, &w->errs, error);
}

gboolean lmn_split_writer_commit(LmnSplitWriter *w, GError **error)
{
    g_return_val_if_fail(w != NULL, FALSE);
    lmn_h5_close(w->group);
    w->group = H5I_INVALID_HID;
    return lmn_h5_atomic_file_commit(w->af, error);
}

gboolean lmn_dataset_write(const char *output, const float *x, gint64 n,
                           const LmnShape *sample_shape, const gint32 *labels, gboolean overwrite,
                           GError **error)
{
    g_return_val_if_fail(output != NULL && n >= 0 && (n == 0 || (x != NULL && labels != NULL)),
                         FALSE);
    g_return_val_if_fail(sample_shape != NULL && sample_shape->ndim <= LMN_MAX_DIMS, FALSE);
    gint64 numel = lmn_shape_numel(sample_shape);
    /* Checked before anything is written, so that a bad value names its sample and lamina's
     * own reader (which refuses NaN/Inf) is never handed a file it would reject. */
    for (gint64 s = 0; s < n; s++) {
        if (labels[s] < 0) {
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                        "%s: sample %" G_GINT64_FORMAT " has the negative label %d", output, s,
                        labels[s]);
            return FALSE;
        }
        for (gint64 k = 0; k < numel; k++) {
            if (!isfinite(x[s * numel + k])) {
                g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                            "%s: sample %" G_GINT64_FORMAT " element %" G_GINT64_FORMAT
                            " of x is not finite",
                            output, s, k);
                return FALSE;
            }
        }
    }
    g_autoptr(LmnSplitWriter) w = lmn_split_writer_new(output, overwrite, error);
    if (w == NULL) {
        return FALSE;
    }
    hsize_t dims[LMN_MAX_DIMS + 1];
    dims[0] = (hsize_t) n;
    for (guint i = 0; i < sample_shape->ndim; i++) {
        dims[i + 1] = (hsize_t) sample_shape->dims[i];
    }
    hid_t xd = lmn_split_writer_write(w, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                                      (int) sample_shape->ndim + 1, dims, x, error);
    if (xd < 0) {
        return FALSE;
    }
    lmn_h5_close(xd);
    hid_t yd =
        lmn_split_writer_write(w, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dims, labels, error);
    if (yd < 0) {
        return FALSE;
    }
    lmn_h5_close(yd);
    return lmn_split_writer_commit(w, error);
}

/* The names must cover every label of @spec's y. */
static gboolean check_classes(const char *spec, gint64 n, GError **error)
{
    /* A tiny budget: x streams, only y is read. */
    LmnDataset *ds = lmn_dataset_open_with_budget(spec, 1e-6, error);
    if (ds == NULL)
        return FALSE;
    gboolean labels = lmn_dataset_has_class_labels(ds);
    gint64 max = lmn_dataset_get_max_label(ds);
    lmn_dataset_free(ds);
    if (!labels)
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                    "%s: y holds float targets, not classes to name", spec);
    else if (n <= max)
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                    "%s: %" G_GINT64_FORMAT " class names for labels up to %" G_GINT64_FORMAT
                    "; name every class",
                    spec, n, max);
    return labels && n > max;
}

gboolean lmn_dataset_set_classes(const char *spec, const char *const *classes, GError **error)
{
    g_return_val_if_fail(spec != NULL && classes != NULL, FALSE);
    if (!check_classes(spec, g_strv_length((char **) classes), error))
        return FALSE;
    g_autofree char *file = NULL, *split = NULL;
    if (!lmn_split_spec(spec, &file, &split, error))
        return FALSE;
    LmnH5Errors errs = lmn_h5_errors_data(file);
    g_autoptr(LmnH5AtomicFile) af = lmn_h5_atomic_file_new(file, TRUE, &errs, error);
    if (af == NULL)
        return FALSE;
    g_autofree char *y_path = lmn_h5_path_join(split, "y");
    g_auto(LmnH5Id) y = H5Dopen2(lmn_h5_atomic_file_peek_id(af), y_path, H5P_DEFAULT);
    if (y < 0) {
        g_autofree char *why = lmn_h5_error_text();
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_WRITE, "%s:%s: cannot open: %s", file,
                    y_path, why);
        return FALSE;
    }
    return lmn_h5_attr_write_strings(y, "classes", classes, &errs, error) &&
           lmn_h5_atomic_file_commit(af, error);
}
