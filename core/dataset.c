/* Lamina — datasets: a split of an HDF5 file decoded into memory (dataset.h, DESIGN.md §5). */
#include <lamina/dataset.h>

#include <math.h>
#include <string.h>

#include "h5-util.h"

struct _LmnDataset {
    char *spec;
    gint64 length;
    LmnShape sample_shape;
    gint64 sample_numel;
    float *x; /* length * sample_numel decoded values, one allocation */
    gboolean class_labels;
    LmnShape target_shape; /* [] for class labels */
    gint64 target_numel;   /* 1 for class labels */
    gint32 *labels;        /* class labels, or NULL */
    float *targets;        /* float targets, or NULL */
    gint64 max_label;
};

gboolean lmn_split_spec(const char *spec, char **file_out, char **split_out, GError **error)
{
    g_return_val_if_fail(spec != NULL && file_out != NULL && split_out != NULL, FALSE);
    /* The last ":/" separates, so a Windows-like or URL-like file name keeps its own colons. */
    const char *sep = g_strrstr(spec, ":/");
    if (sep == NULL || sep == spec) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_OPEN,
                    "'%s' does not name a dataset split; write FILE:/SPLIT, e.g. "
                    "fashion-mnist.h5:/train",
                    spec);
        return FALSE;
    }
    char *split = g_strdup(sep + 1);
    gsize len = strlen(split);
    while (len > 1 && split[len - 1] == '/') {
        split[--len] = '\0';
    }
    *file_out = g_strndup(spec, (gsize) (sep - spec));
    *split_out = split;
    return TRUE;
}

const char *lmn_dataset_get_spec(const LmnDataset *ds)
{
    g_return_val_if_fail(ds != NULL, NULL);
    return ds->spec;
}

gint64 lmn_dataset_get_length(const LmnDataset *ds)
{
    g_return_val_if_fail(ds != NULL, 0);
    return ds->length;
}

const LmnShape *lmn_dataset_get_sample_shape(const LmnDataset *ds)
{
    g_return_val_if_fail(ds != NULL, NULL);
    return &ds->sample_shape;
}

gboolean lmn_dataset_has_class_labels(const LmnDataset *ds)
{
    g_return_val_if_fail(ds != NULL, FALSE);
    return ds->class_labels;
}

const LmnShape *lmn_dataset_get_target_shape(const LmnDataset *ds)
{
    g_return_val_if_fail(ds != NULL, NULL);
    return &ds->target_shape;
}

gint64 lmn_dataset_get_max_label(const LmnDataset *ds)
{
    g_return_val_if_fail(ds != NULL, -1);
    return ds->class_labels ? ds->max_label : -1;
}

void lmn_dataset_free(LmnDataset *ds)
{
    if (ds == NULL) {
        return;
    }
    g_free(ds->spec);
    g_free(ds->x);
    g_free(ds->labels);
    g_free(ds->targets);
    g_free(ds);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(LmnDataset, lmn_dataset_free)

/* State shared by the reading steps: where we are, for messages. */
typedef struct {
    const char *file;
    const char *split;
    LmnH5Errors errs;
} Reader;

/* "FILE:/split/name" */
static char *where(const Reader *rd, const char *name)
{
    g_autofree char *path = name != NULL ? lmn_h5_path_join(rd->split, name) : NULL;
    return g_strdup_printf("%s:%s", rd->file, path != NULL ? path : rd->split);
}

G_GNUC_PRINTF(5, 6)
static void fail(GError **error, const Reader *rd, gint code, const char *name, const char *format,
                 ...)
{
    va_list ap;
    va_start(ap, format);
    g_autofree char *msg = g_strdup_vprintf(format, ap);
    va_end(ap);
    g_autofree char *place = where(rd, name);
    g_set_error(error, LMN_DATA_ERROR, code, "%s: %s", place, msg);
}

/* Lists the groups at the root of a file for a "no such split" message. */
static herr_t collect_group(hid_t group, const char *name, const H5L_info_t *info, void *data)
{
    g_auto(LmnH5Id) obj = H5Oopen(group, name, H5P_DEFAULT);
    if (obj >= 0 && H5Iget_type(obj) == H5I_GROUP) {
        GString *list = data;
        g_string_append_printf(list, "%s/%s", list->len > 0 ? ", " : "", name);
    }
    return 0;
}

/* Opens dataset @name of the split, telling a missing one from one that is not a dataset. */
static hid_t open_member(const Reader *rd, hid_t group, const char *name, const char *role,
                         GError **error)
{
    if (!lmn_h5_path_exists(group, name)) {
        fail(error, rd, LMN_DATA_ERROR_MISSING, NULL,
             "no dataset '%s' (%s); a split holds x [N, sample shape...] and y [N] or [N, K...]",
             name, role);
        return H5I_INVALID_HID;
    }
    hid_t obj = H5Oopen(group, name, H5P_DEFAULT);
    if (obj < 0) {
        g_autofree char *why = lmn_h5_error_text();
        fail(error, rd, LMN_DATA_ERROR_OPEN, name, "cannot open it (damaged file?): %s", why);
        return H5I_INVALID_HID;
    }
    if (H5Iget_type(obj) != H5I_DATASET) {
        lmn_h5_close(obj);
        fail(error, rd, LMN_DATA_ERROR_MISSING, name, "is a group; %s must be a dataset", name);
        return H5I_INVALID_HID;
    }
    return obj;
}

/* Reads the extent of @ds into @dims (at most @max_dims), failing on scalars and overlong ranks. */
static int read_dims(const Reader *rd, hid_t ds, const char *name, hsize_t *dims, int max_dims,
                     GError **error)
{
    g_auto(LmnH5Id) space = H5Dget_space(ds);
    int ndim = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    if (ndim < 0) {
        g_autofree char *why = lmn_h5_error_text();
        fail(error, rd, LMN_DATA_ERROR_OPEN, name, "cannot read its shape: %s", why);
        return -1;
    }
    if (ndim == 0) {
        fail(error, rd, LMN_DATA_ERROR_SHAPE, name,
             "is a scalar; its first dimension must count the samples");
        return -1;
    }
    if (ndim > max_dims) {
        fail(error, rd, LMN_DATA_ERROR_SHAPE, name,
             "has %d dimensions; at most %d are supported (the sample count and %d more)", ndim,
             max_dims, max_dims - 1);
        return -1;
    }
    H5Sget_simple_extent_dims(space, dims, NULL);
    return ndim;
}

/* Reads rows [row0, row0 + rows) of @ds (row = @row_numel elements) as @mem_type into @buf. */
static gboolean read_rows(const Reader *rd, hid_t ds, const char *name, hid_t mem_type, int ndim,
                          const hsize_t *dims, gint64 row0, gint64 rows, void *buf, GError **error)
{
    g_auto(LmnH5Id) fspace = H5Dget_space(ds);
    hsize_t start[LMN_MAX_DIMS + 1] = {0};
    hsize_t count[LMN_MAX_DIMS + 1];
    start[0] = (hsize_t) row0;
    count[0] = (hsize_t) rows;
    for (int i = 1; i < ndim; i++) {
        count[i] = dims[i];
    }
    /* The memory space has the selection's shape: with a flat one HDF5 maps element by element,
     * about ten times slower. */
    g_auto(LmnH5Id) mspace = H5Screate_simple(ndim, count, NULL);
    if (H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dread(ds, mem_type, mspace, fspace, H5P_DEFAULT, buf) < 0) {
        g_autofree char *why = lmn_h5_error_text();
        fail(error, rd, LMN_DATA_ERROR_OPEN, name,
             "cannot read samples %" G_GINT64_FORMAT "..%" G_GINT64_FORMAT
             " (truncated or damaged file?): %s",
             row0, row0 + rows - 1, why);
        return FALSE;
    }
    return TRUE;
}

/* Reads the optional per-channel attribute @name (mean, std) of x: one value, or one per
 * channel (@channels = dimension 1 of x). */
static gboolean read_channel_attr(const Reader *rd, hid_t x, const char *name, gint64 channels,
                                  double **values_out, gsize *n_out, GError **error)
{
    *values_out = NULL;
    *n_out = 0;
    if (!lmn_h5_attr_exists(x, name)) {
        return TRUE;
    }
    g_autofree char *file_label = g_strdup(rd->file);
    LmnH5Errors errs = lmn_h5_errors_data(file_label);
    gsize n = 0;
    g_autofree double *values = lmn_h5_attr_read_doubles(x, name, &n, &errs, error);
    if (values == NULL) {
        return FALSE;
    }
    if (n != 1 && (gint64) n != channels) {
        fail(error, rd, LMN_DATA_ERROR_SHAPE, "x",
             "the attribute '%s' has %zu values, but x has %" G_GINT64_FORMAT
             " channel%s (dimension 1); give one value or one per channel",
             name, n, channels, channels == 1 ? "" : "s");
        return FALSE;
    }
    for (gsize i = 0; i < n; i++) {
        if (!isfinite(values[i]) || (strcmp(name, "std") == 0 && values[i] == 0.0)) {
            fail(error, rd, LMN_DATA_ERROR_VALUE, "x",
                 "the attribute '%s' has the value %g at index %zu; it must be finite%s", name,
                 values[i], i, strcmp(name, "std") == 0 ? " and non-zero" : "");
            return FALSE;
        }
    }
    *values_out = g_steal_pointer(&values);
    *n_out = n;
    return TRUE;
}

/* Scans @n floats for NaN/Inf; names the sample and element of the first. */
static gboolean check_finite(const Reader *rd, const char *name, const float *v, gint64 n,
                             gint64 row_numel, const char *what, GError **error)
{
    for (gint64 i = 0; i < n; i++) {
        if (!isfinite(v[i])) {
            fail(error, rd, LMN_DATA_ERROR_VALUE, name,
                 "sample %" G_GINT64_FORMAT " holds %s (element %" G_GINT64_FORMAT
                 " of the sample)%s; %s must be finite",
                 i / row_numel, isnan(v[i]) ? "NaN" : (v[i] > 0 ? "+Inf" : "-Inf"), i % row_numel,
                 what, name);
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean read_x(const Reader *rd, hid_t group, LmnDataset *ds, gint64 *n_out, GError **error)
{
    g_auto(LmnH5Id) x = open_member(rd, group, "x", "the inputs", error);
    if (x < 0) {
        return FALSE;
    }
    hsize_t dims[LMN_MAX_DIMS + 1];
    int ndim = read_dims(rd, x, "x", dims, LMN_MAX_DIMS + 1, error);
    if (ndim < 0) {
        return FALSE;
    }
    g_auto(LmnH5Id) type = H5Dget_type(x);
    H5T_class_t cls = H5Tget_class(type);
    gboolean is_u8 =
        cls == H5T_INTEGER && H5Tget_size(type) == 1 && H5Tget_sign(type) == H5T_SGN_NONE;
    if (!is_u8 && cls != H5T_FLOAT) {
        g_autofree char *tname = lmn_h5_type_name(type);
        fail(error, rd, LMN_DATA_ERROR_DTYPE, "x",
             "has element type %s; x must be uint8 (optionally with a 'scale' attribute) or "
             "floating point (float32, float64); convert it to one of those",
             tname);
        return FALSE;
    }

    ds->sample_shape.ndim = (guint) ndim - 1;
    ds->sample_numel = 1;
    for (int i = 1; i < ndim; i++) {
        ds->sample_shape.dims[i - 1] = (gint64) dims[i];
        guint64 numel = 0;
        if (!g_uint64_checked_mul(&numel, (guint64) ds->sample_numel, (guint64) dims[i]) ||
            numel > (guint64) G_MAXINT64) {
            fail(error, rd, LMN_DATA_ERROR_SHAPE, "x", "has an impossibly large sample shape");
            return FALSE;
        }
        ds->sample_numel = (gint64) numel;
    }
    if (ds->sample_numel == 0) {
        g_autofree char *shape = lmn_shape_to_string(&ds->sample_shape);
        fail(error, rd, LMN_DATA_ERROR_SHAPE, "x", "its samples %s hold no values", shape);
        return FALSE;
    }
    gint64 n = (gint64) dims[0];
    guint64 total_u = 0;
    gsize bytes = 0;
    if (!g_uint64_checked_mul(&total_u, (guint64) n, (guint64) ds->sample_numel) ||
        total_u > G_MAXSIZE || !g_size_checked_mul(&bytes, (gsize) total_u, sizeof(float)) ||
        (ds->x = g_try_malloc(MAX(bytes, 1))) == NULL) {
        fail(error, rd, LMN_DATA_ERROR_OPEN, "x",
             "not enough memory to load %" G_GINT64_FORMAT " samples of %" G_GINT64_FORMAT
             " values",
             n, ds->sample_numel);
        return FALSE;
    }
    gint64 total = (gint64) total_u;

    /* Decoding parameters: x = (raw * scale - mean[c]) / std[c]. */
    double scale = 1.0;
    gboolean has_scale = lmn_h5_attr_exists(x, "scale");
    if (has_scale) {
        g_autofree char *file_label = g_strdup(rd->file);
        LmnH5Errors errs = lmn_h5_errors_data(file_label);
        if (!lmn_h5_attr_read_double(x, "scale", &scale, &errs, error)) {
            return FALSE;
        }
        if (!isfinite(scale) || scale == 0.0) {
            fail(error, rd, LMN_DATA_ERROR_VALUE, "x",
                 "the attribute 'scale' is %g; it must be finite and non-zero", scale);
            return FALSE;
        }
    }
    gint64 channels = ds->sample_shape.ndim > 0 ? ds->sample_shape.dims[0] : 1;
    g_autofree double *mean = NULL;
    g_autofree double *std = NULL;
    gsize n_mean = 0, n_std = 0;
    if (!read_channel_attr(rd, x, "mean", channels, &mean, &n_mean, error) ||
        !read_channel_attr(rd, x, "std", channels, &std, &n_std, error)) {
        return FALSE;
    }
    gint64 per_channel = channels > 0 ? ds->sample_numel / channels : 0;

    if (is_u8) {
        /* Decode block by block so the raw bytes never need a second full-size buffer. */
        gint64 block = MAX(1, (4 << 20) / MAX(ds->sample_numel, 1));
        g_autofree guint8 *raw = g_malloc(MAX((gsize) (MIN(block, n) * ds->sample_numel), 1));
        /* Per-channel affine map in double: value = raw * a[c] + b[c]. */
        g_autofree double *a = g_new(double, MAX(channels, 1));
        g_autofree double *b = g_new(double, MAX(channels, 1));
        for (gint64 c = 0; c < MAX(channels, 1); c++) {
            double m = mean != NULL ? mean[n_mean == 1 ? 0 : c] : 0.0;
            double s = std != NULL ? std[n_std == 1 ? 0 : c] : 1.0;
            a[c] = scale / s;
            b[c] = -m / s;
        }
        for (gint64 row0 = 0; row0 < n; row0 += block) {
            gint64 rows = MIN(block, n - row0);
            if (!read_rows(rd, x, "x", H5T_NATIVE_UINT8, ndim, dims, row0, rows, raw, error)) {
                return FALSE;
            }
            float *out = ds->x + row0 * ds->sample_numel;
            gint64 count = rows * ds->sample_numel;
            if (mean == NULL && std == NULL) {
                for (gint64 i = 0; i < count; i++) {
                    out[i] = (float) (raw[i] * scale);
                }
            } else {
                for (gint64 i = 0; i < count; i++) {
                    gint64 c = (i % ds->sample_numel) / MAX(per_channel, 1);
                    out[i] = (float) (raw[i] * a[c] + b[c]);
                }
            }
        }
    } else {
        if (n > 0 && !read_rows(rd, x, "x", H5T_NATIVE_FLOAT, ndim, dims, 0, n, ds->x, error)) {
            return FALSE;
        }
        /* Check the stored values, before decoding could hide where a NaN came from. */
        if (!check_finite(rd, "x", ds->x, total, MAX(ds->sample_numel, 1), "", error)) {
            return FALSE;
        }
        if (has_scale || mean != NULL || std != NULL) {
            for (gint64 i = 0; i < total; i++) {
                gint64 c = (i % ds->sample_numel) / MAX(per_channel, 1);
                double m = mean != NULL ? mean[n_mean == 1 ? 0 : c] : 0.0;
                double s = std != NULL ? std[n_std == 1 ? 0 : c] : 1.0;
                ds->x[i] = (float) ((ds->x[i] * scale - m) / s);
            }
        }
    }
    /* A huge scale or a tiny std can still overflow float32. */
    if ((has_scale || mean != NULL || std != NULL) &&
        !check_finite(rd, "x", ds->x, total, MAX(ds->sample_numel, 1),
                      " after applying scale, mean and std", error)) {
        return FALSE;
    }
    *n_out = n;
    return TRUE;
}

/* Reads y: integer class labels to int32 (range-checked) or float targets. */
static gboolean read_y(const Reader *rd, hid_t group, LmnDataset *ds, gint64 n_x, GError **error)
{
    g_auto(LmnH5Id) y = open_member(rd, group, "y", "the labels or targets", error);
    if (y < 0) {
        return FALSE;
    }
    hsize_t dims[LMN_MAX_DIMS + 1];
    int ndim = read_dims(rd, y, "y", dims, LMN_MAX_DIMS + 1, error);
    if (ndim < 0) {
        return FALSE;
    }
    gint64 n = (gint64) dims[0];
    if (n != n_x) {
        fail(error, rd, LMN_DATA_ERROR_SHAPE, NULL,
             "x has %" G_GINT64_FORMAT " samples but y has %" G_GINT64_FORMAT
             "; both must have the same first dimension",
             n_x, n);
        return FALSE;
    }
    g_auto(LmnH5Id) type = H5Dget_type(y);
    H5T_class_t cls = H5Tget_class(type);
    if (cls == H5T_INTEGER) {
        /* [N], or [N, 1] as Keras-style label columns are written. */
        if (ndim > 2 || (ndim == 2 && dims[1] != 1)) {
            g_autofree char *tname = lmn_h5_type_name(type);
            fail(error, rd, LMN_DATA_ERROR_SHAPE, "y",
                 "holds %s values of shape [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                 "%s]; integer class labels must be [N] (store float32 for [N, K] targets)",
                 tname, n, (gint64) dims[1], ndim > 2 ? ", ..." : "");
            return FALSE;
        }
        ds->class_labels = TRUE;
        ds->target_shape.ndim = 0;
        ds->target_numel = 1;
        gboolean is_unsigned = H5Tget_sign(type) == H5T_SGN_NONE;
        g_autofree gint64 *raw = g_try_new(gint64, MAX(n, 1));
        ds->labels = g_try_new(gint32, MAX(n, 1));
        if (raw == NULL || ds->labels == NULL) {
            fail(error, rd, LMN_DATA_ERROR_OPEN, "y",
                 "not enough memory for %" G_GINT64_FORMAT " labels", n);
            return FALSE;
        }
        if (n > 0 && !read_rows(rd, y, "y", is_unsigned ? H5T_NATIVE_UINT64 : H5T_NATIVE_INT64,
                                ndim, dims, 0, n, raw, error)) {
            return FALSE;
        }
        ds->max_label = -1;
        for (gint64 i = 0; i < n; i++) {
            gboolean too_big =
                is_unsigned ? (guint64) raw[i] > (guint64) G_MAXINT32 : raw[i] > G_MAXINT32;
            if (too_big || (!is_unsigned && raw[i] < 0)) {
                g_autofree char *value =
                    is_unsigned ? g_strdup_printf("%" G_GUINT64_FORMAT, (guint64) raw[i])
                                : g_strdup_printf("%" G_GINT64_FORMAT, raw[i]);
                fail(error, rd, LMN_DATA_ERROR_VALUE, "y",
                     "label %s at index %" G_GINT64_FORMAT " is %s; class labels must be "
                     "0, 1, 2, ... (at most %d)",
                     value, i, too_big ? "too large" : "negative", G_MAXINT32);
                return FALSE;
            }
            ds->labels[i] = (gint32) raw[i];
            ds->max_label = MAX(ds->max_label, raw[i]);
        }
        return TRUE;
    }
    if (cls == H5T_FLOAT) {
        if (ndim - 1 > LMN_MAX_DIMS) {
            fail(error, rd, LMN_DATA_ERROR_SHAPE, "y", "has too many dimensions");
            return FALSE;
        }
        ds->class_labels = FALSE;
        ds->max_label = -1;
        ds->target_shape.ndim = (guint) ndim - 1;
        ds->target_numel = 1;
        for (int i = 1; i < ndim; i++) {
            ds->target_shape.dims[i - 1] = (gint64) dims[i];
            ds->target_numel *= (gint64) dims[i];
        }
        gint64 total = n * ds->target_numel;
        ds->targets = g_try_new(float, MAX(total, 1));
        if (ds->targets == NULL) {
            fail(error, rd, LMN_DATA_ERROR_OPEN, "y",
                 "not enough memory for %" G_GINT64_FORMAT " targets", total);
            return FALSE;
        }
        if (n > 0 &&
            !read_rows(rd, y, "y", H5T_NATIVE_FLOAT, ndim, dims, 0, n, ds->targets, error)) {
            return FALSE;
        }
        return check_finite(rd, "y", ds->targets, total, MAX(ds->target_numel, 1), "", error);
    }
    g_autofree char *tname = lmn_h5_type_name(type);
    fail(error, rd, LMN_DATA_ERROR_DTYPE, "y",
         "has element type %s; y must hold integer class labels (any integer type) or float "
         "targets",
         tname);
    return FALSE;
}

LmnDataset *lmn_dataset_open(const char *spec, GError **error)
{
    g_return_val_if_fail(spec != NULL, NULL);
    g_autofree char *file = NULL;
    g_autofree char *split = NULL;
    if (!lmn_split_spec(spec, &file, &split, error)) {
        return NULL;
    }
    Reader rd = {.file = file, .split = split, .errs = lmn_h5_errors_data(file)};

    g_auto(LmnH5Id) h5 = lmn_h5_file_open_read(file, &rd.errs, error);
    if (h5 < 0) {
        return NULL;
    }
    if (!lmn_h5_path_exists(h5, split)) {
        g_autoptr(GString) groups = g_string_new(NULL);
        H5Literate(h5, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, collect_group, groups);
        H5Eclear2(H5E_DEFAULT);
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_MISSING,
                    "%s: no split '%s' in the file (its groups: %s)", file, split,
                    groups->len > 0 ? groups->str : "none");
        return NULL;
    }
    g_auto(LmnH5Id) group = lmn_h5_group_open(h5, split, &rd.errs, error);
    if (group < 0) {
        return NULL;
    }

    g_autoptr(LmnDataset) ds = g_new0(LmnDataset, 1);
    ds->spec = g_strdup(spec);
    gint64 n = 0;
    /* Check y's presence and length before decoding x, which may take a while. */
    {
        g_auto(LmnH5Id) y = open_member(&rd, group, "y", "the labels or targets", error);
        if (y < 0) {
            return NULL;
        }
    }
    if (!read_x(&rd, group, ds, &n, error) || !read_y(&rd, group, ds, n, error)) {
        return NULL;
    }
    if (n == 0) {
        fail(error, &rd, LMN_DATA_ERROR_SHAPE, NULL, "the split holds no samples");
        return NULL;
    }
    if (n > (gint64) G_MAXUINT32) {
        fail(error, &rd, LMN_DATA_ERROR_SHAPE, NULL,
             "the split holds %" G_GINT64_FORMAT " samples; at most %u are supported", n,
             G_MAXUINT32);
        return NULL;
    }
    ds->length = n;
    return g_steal_pointer(&ds);
}

gboolean lmn_dataset_check_model(const LmnDataset *ds, const LmnShape *input_shape,
                                 gint64 n_classes, GError **error)
{
    g_return_val_if_fail(ds != NULL && input_shape != NULL, FALSE);
    gint64 want = lmn_shape_numel(input_shape);
    if (want != ds->sample_numel) {
        g_autofree char *have_s = lmn_shape_to_string(&ds->sample_shape);
        g_autofree char *want_s = lmn_shape_to_string(input_shape);
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                    "%s: samples are %s (%" G_GINT64_FORMAT " values) but the model's input is "
                    "%s (%" G_GINT64_FORMAT " values); set [model] input to the data's shape or "
                    "use a dataset made for this model",
                    ds->spec, have_s, ds->sample_numel, want_s, want);
        return FALSE;
    }
    if (n_classes >= 0 && ds->class_labels && ds->max_label >= n_classes) {
        g_autofree char *file = NULL;
        g_autofree char *split = NULL;
        lmn_split_spec(ds->spec, &file, &split, NULL);
        g_autofree char *y_path = lmn_h5_path_join(split, "y");
        for (gint64 i = 0; i < ds->length; i++) {
            if (ds->labels[i] >= n_classes) {
                g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                            "%s:%s: label %d at index %" G_GINT64_FORMAT
                            " is out of range for a model with %" G_GINT64_FORMAT
                            " classes (labels must be 0..%" G_GINT64_FORMAT
                            "); give the last layer at least %" G_GINT64_FORMAT " outputs",
                            file, y_path, ds->labels[i], i, n_classes, n_classes - 1,
                            ds->max_label + 1);
                return FALSE;
            }
        }
    }
    return TRUE;
}

void lmn_dataset_gather(const LmnDataset *ds, const guint32 *indices, gsize n, float *x_out,
                        void *y_out)
{
    g_return_if_fail(ds != NULL && (indices != NULL || n == 0));
    gsize row = (gsize) ds->sample_numel;
    gsize trow = (gsize) ds->target_numel;
    for (gsize i = 0; i < n; i++) {
        guint32 k = indices[i];
        g_return_if_fail((gint64) k < ds->length);
        if (x_out != NULL) {
            memcpy(x_out + i * row, ds->x + (gsize) k * row, row * sizeof(float));
        }
        if (y_out == NULL) {
            continue;
        }
        if (ds->class_labels) {
            ((gint32 *) y_out)[i] = ds->labels[k];
        } else {
            memcpy((float *) y_out + i * trow, ds->targets + (gsize) k * trow,
                   trow * sizeof(float));
        }
    }
}

static int compare_u32(const void *a, const void *b)
{
    guint32 x = *(const guint32 *) a, y = *(const guint32 *) b;
    return (x > y) - (x < y);
}

static void recompute_max_label(LmnDataset *ds)
{
    ds->max_label = -1;
    if (ds->class_labels) {
        for (gint64 i = 0; i < ds->length; i++) {
            ds->max_label = MAX(ds->max_label, ds->labels[i]);
        }
    }
}

LmnDataset *lmn_dataset_split(LmnDataset *ds, double fraction, guint64 seed, GError **error)
{
    g_return_val_if_fail(ds != NULL, NULL);
    g_return_val_if_fail(fraction >= 0.0 && fraction <= 1.0, NULL);
    gint64 n = ds->length;
    gint64 n_hold = (gint64) llround(fraction * (double) n);
    if (n_hold <= 0 || n_hold >= n) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                    "%s: holding out a fraction %g of %" G_GINT64_FORMAT
                    " samples leaves %s empty; choose a validation split between %g and %g",
                    ds->spec, fraction, n,
                    n_hold <= 0 ? "the validation part" : "nothing to train on", 0.5 / (double) n,
                    1.0 - 0.5 / (double) n);
        return NULL;
    }

    g_autofree guint32 *order = g_new(guint32, n);
    for (gint64 i = 0; i < n; i++) {
        order[i] = (guint32) i;
    }
    LmnRandom rng;
    lmn_random_init(&rng, seed, LMN_STREAM(LMN_STREAM_SPLIT, 0));
    lmn_random_shuffle(&rng, order, (gsize) n);
    /* Both parts keep file order, so a split is a selection, not a reshuffle. */
    guint32 *held = order;
    guint32 *kept = order + n_hold;
    qsort(held, (gsize) n_hold, sizeof(guint32), compare_u32);
    qsort(kept, (gsize) (n - n_hold), sizeof(guint32), compare_u32);

    LmnDataset *out = g_new0(LmnDataset, 1);
    out->spec = g_strdup(ds->spec);
    out->length = n_hold;
    out->sample_shape = ds->sample_shape;
    out->sample_numel = ds->sample_numel;
    out->class_labels = ds->class_labels;
    out->target_shape = ds->target_shape;
    out->target_numel = ds->target_numel;
    out->x = g_new(float, MAX(n_hold * ds->sample_numel, 1));
    if (ds->class_labels) {
        out->labels = g_new(gint32, n_hold);
    } else {
        out->targets = g_new(float, MAX(n_hold * ds->target_numel, 1));
    }
    lmn_dataset_gather(ds, held, (gsize) n_hold, out->x,
                       ds->class_labels ? (void *) out->labels : (void *) out->targets);

    /* Compact the kept rows in place: kept[j] >= j, so a forward pass never overwrites a row
     * before it has been moved. */
    gsize row = (gsize) ds->sample_numel;
    gsize trow = (gsize) ds->target_numel;
    gint64 n_keep = n - n_hold;
    for (gint64 j = 0; j < n_keep; j++) {
        gsize k = kept[j];
        if (k == (gsize) j) {
            continue;
        }
        memmove(ds->x + (gsize) j * row, ds->x + k * row, row * sizeof(float));
        if (ds->class_labels) {
            ds->labels[j] = ds->labels[k];
        } else {
            memmove(ds->targets + (gsize) j * trow, ds->targets + k * trow, trow * sizeof(float));
        }
    }
    ds->length = n_keep;
    ds->x = g_realloc(ds->x, MAX((gsize) n_keep * row * sizeof(float), 1));
    if (ds->class_labels) {
        ds->labels = g_realloc(ds->labels, (gsize) n_keep * sizeof(gint32));
    } else {
        ds->targets = g_realloc(ds->targets, MAX((gsize) n_keep * trow * sizeof(float), 1));
    }
    recompute_max_label(ds);
    recompute_max_label(out);
    return out;
}
