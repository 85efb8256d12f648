/* Lamina — datasets: a split of an HDF5 file decoded into memory (dataset.h, DESIGN.md §5). */
#include <lamina/dataset.h>

#include <math.h>
#include <string.h>

#include "dataset-private.h"

/* Default memory budget for decoded x when neither the caller nor LAMINA_DATA_BUDGET sets one. */
#define DEFAULT_BUDGET_MB 2048.0
/* Labels or targets may always take this much, so a tiny budget given to make x stream (tests,
 * small machines) still opens ordinary splits. */
#define LABELS_FLOOR_BYTES (16.0 * 1024.0 * 1024.0)

static void source_unref(LmnDatasetSource *src)
{
    if (src == NULL || !g_atomic_int_dec_and_test(&src->ref_count)) {
        return;
    }
    lmn_h5_close(src->x);
    lmn_h5_close(src->h5);
    g_mutex_clear(&src->lock);
    g_free(src->file);
    g_free(src->split);
    g_free(src);
}

static void decode_clear(LmnDecode *d)
{
    g_clear_pointer(&d->mean, g_free);
    g_clear_pointer(&d->std, g_free);
    g_clear_pointer(&d->a, g_free);
    g_clear_pointer(&d->b, g_free);
}

static void decode_copy(LmnDecode *dst, const LmnDecode *src)
{
    *dst = *src;
    dst->mean = src->mean ? g_memdup2(src->mean, src->n_mean * sizeof(double)) : NULL;
    dst->std = src->std ? g_memdup2(src->std, src->n_std * sizeof(double)) : NULL;
    dst->a = src->a ? g_memdup2(src->a, (gsize) MAX(src->channels, 1) * sizeof(double)) : NULL;
    dst->b = src->b ? g_memdup2(src->b, (gsize) MAX(src->channels, 1) * sizeof(double)) : NULL;
}

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
    g_free(ds->rows);
    for (guint i = 0; i < ds->n_extra; i++) {
        g_free(ds->extra[i].name);
        g_free(ds->extra[i].labels);
        g_free(ds->extra[i].values);
    }
    g_free(ds->extra);
    g_strfreev(ds->classes);
    decode_clear(&ds->decode);
    source_unref(ds->source);
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

/* "[60000, 1, 28, 28]" for HDF5 dims, which may exceed what LmnShape holds. */
static char *dims_to_string(const hsize_t *dims, int ndim)
{
    GString *s = g_string_new("[");
    for (int i = 0; i < ndim; i++)
        g_string_append_printf(s, i == 0 ? "%" G_GUINT64_FORMAT : ", %" G_GUINT64_FORMAT,
                               (guint64) dims[i]);
    g_string_append_c(s, ']');
    return g_string_free(s, FALSE);
}

/*
 * Checks the extent a file declares before anything is sized from it.  The product of the dims
 * must fit 64 bits (everything downstream multiplies them), and a contiguous or compact dataset,
 * which stores every element uncompressed, cannot hold more bytes than the whole file: one that
 * claims to is truncated or has a corrupt header, and would otherwise have Lamina allocate for
 * the claimed size.  Chunked data may be compressed or sparse (unwritten chunks read as the fill
 * value), so for it no bound follows from the file's size.
 */
static gboolean check_declared_size(const Reader *rd, hid_t ds, const char *name,
                                    const hsize_t *dims, int ndim, GError **error)
{
    g_auto(LmnH5Id) type = H5Dget_type(ds);
    guint64 bytes = type >= 0 ? H5Tget_size(type) : 0;
    gboolean overflow = bytes == 0;
    for (int i = 0; i < ndim; i++)
        overflow = overflow || dims[i] > (hsize_t) G_MAXINT64 ||
                   !g_uint64_checked_mul(&bytes, bytes, (guint64) dims[i]);
    if (overflow) {
        g_autofree char *shape = dims_to_string(dims, ndim);
        fail(error, rd, LMN_DATA_ERROR_SHAPE, name,
             "declares shape %s, whose size in bytes does not fit 64 bits; the file is corrupt "
             "or was not written for Lamina (recreate it with lamina convert)",
             shape);
        return FALSE;
    }
    g_auto(LmnH5Id) dcpl = H5Dget_create_plist(ds);
    H5D_layout_t layout = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
    if (layout != H5D_CONTIGUOUS && layout != H5D_COMPACT) {
        H5Eclear2(H5E_DEFAULT);
        return TRUE;
    }
    g_auto(LmnH5Id) file = H5Iget_file_id(ds);
    hsize_t file_size = 0;
    if (file < 0 || H5Fget_filesize(file, &file_size) < 0) {
        H5Eclear2(H5E_DEFAULT);
        return TRUE; /* no bound to check against; the read itself still fails cleanly */
    }
    if (bytes > (guint64) file_size) {
        g_autofree char *shape = dims_to_string(dims, ndim);
        fail(error, rd, LMN_DATA_ERROR_SHAPE, name,
             "declares shape %s (%" G_GUINT64_FORMAT " bytes, stored uncompressed) but the whole "
             "file is %" G_GUINT64_FORMAT " bytes; the file is truncated or its header is "
             "corrupt (recreate it with lamina convert)",
             shape, bytes, (guint64) file_size);
        return FALSE;
    }
    return TRUE;
}

/* Reads the extent of @ds into @dims (at most @max_dims), failing on scalars and overlong ranks
 * and on extents no file can hold (check_declared_size). */
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
    if (!check_declared_size(rd, ds, name, dims, ndim, error)) {
        return -1;
    }
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

/* Scans @n floats for NaN/Inf; names the sample (counting from @first_sample) and element of the
 * first. */
static gboolean check_finite(const Reader *rd, const char *name, const float *v, gint64 n,
                             gint64 row_numel, gint64 first_sample, const char *what,
                             GError **error)
{
    for (gint64 i = 0; i < n; i++) {
        if (!isfinite(v[i])) {
            fail(error, rd, LMN_DATA_ERROR_VALUE, name,
                 "sample %" G_GINT64_FORMAT " holds %s (element %" G_GINT64_FORMAT
                 " of the sample)%s; %s must be finite",
                 first_sample + i / row_numel, isnan(v[i]) ? "NaN" : (v[i] > 0 ? "+Inf" : "-Inf"),
                 i % row_numel, what, name);
            return FALSE;
        }
    }
    return TRUE;
}

/* Decodes @rows samples of raw stored values (uint8 or float32) into @out (may alias @raw for
 * float data), after checking float input is finite; @first_sample names samples in messages. */
static gboolean decode_rows(const Reader *rd, const LmnDataset *ds, const void *raw, gint64 rows,
                            gint64 first_sample, float *out, GError **error)
{
    const LmnDecode *d = &ds->decode;
    gint64 numel = ds->sample_numel;
    gint64 count = rows * numel;
    gint64 per_channel = MAX(d->per_channel, 1);
    if (d->is_u8) {
        const guint8 *in = raw;
        if (d->mean == NULL && d->std == NULL) {
            for (gint64 i = 0; i < count; i++) {
                out[i] = (float) (in[i] * d->scale);
            }
        } else {
            for (gint64 i = 0; i < count; i++) {
                gint64 c = (i % numel) / per_channel;
                out[i] = (float) (in[i] * d->a[c] + d->b[c]);
            }
        }
    } else {
        const float *in = raw;
        /* Check the stored values, before decoding could hide where a NaN came from. */
        if (!check_finite(rd, "x", in, count, numel, first_sample, "", error)) {
            return FALSE;
        }
        if (d->has_scale || d->mean != NULL || d->std != NULL) {
            for (gint64 i = 0; i < count; i++) {
                gint64 c = (i % numel) / per_channel;
                double m = d->mean != NULL ? d->mean[d->n_mean == 1 ? 0 : c] : 0.0;
                double s = d->std != NULL ? d->std[d->n_std == 1 ? 0 : c] : 1.0;
                out[i] = (float) ((in[i] * d->scale - m) / s);
            }
        } else if (out != in) {
            memcpy(out, in, (gsize) count * sizeof(float));
        }
    }
    /* A huge scale or a tiny std can still overflow float32. */
    if ((d->has_scale || d->mean != NULL || d->std != NULL) &&
        !check_finite(rd, "x", out, count, numel, first_sample,
                      " after applying scale, mean and std", error)) {
        return FALSE;
    }
    return TRUE;
}

/* The memory budget in bytes: @budget_mb when >= 0, else LAMINA_DATA_BUDGET (MB), else the
 * default. */
static double budget_bytes(double budget_mb)
{
    if (budget_mb < 0) {
        const char *env = g_getenv("LAMINA_DATA_BUDGET");
        char *end = NULL;
        double v = env != NULL ? g_ascii_strtod(env, &end) : -1.0;
        if (env != NULL && (end == env || *end != '\0' || !(v >= 0))) {
            g_warning("LAMINA_DATA_BUDGET='%s' is not a number of megabytes; using %g MB", env,
                      DEFAULT_BUDGET_MB);
            v = -1.0;
        }
        budget_mb = v >= 0 ? v : DEFAULT_BUDGET_MB;
    }
    return budget_mb * 1024.0 * 1024.0;
}

/* Rows per stored chunk of x; for a contiguous dataset, about 1 MiB of rows. */
static gint64 chunk_rows_of(hid_t x, gint64 n, gint64 row_bytes)
{
    g_auto(LmnH5Id) dcpl = H5Dget_create_plist(x);
    hsize_t chunk[LMN_MAX_DIMS + 1];
    gint64 rows = 0;
    if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED &&
        H5Pget_chunk(dcpl, LMN_MAX_DIMS + 1, chunk) > 0) {
        rows = (gint64) chunk[0];
    }
    H5Eclear2(H5E_DEFAULT);
    if (rows <= 0) {
        rows = MAX(1, (1 << 20) / MAX(row_bytes, 1));
    }
    return MAX(1, MIN(rows, MAX(n, 1)));
}

/*
 * Refuses a dataset compressed with a filter this HDF5 cannot apply, when the split is opened:
 * otherwise the first read (possibly deep into training, for a streaming split) fails with
 * HDF5's "can't open directory ... plugins", which names neither the filter nor a remedy.
 * Optional filters count too: h5py writes LZF, and hdf5plugin Blosc, as optional, yet the chunks
 * they compressed cannot be read without them.
 */
static gboolean check_filters(const Reader *rd, hid_t ds, const char *name, GError **error)
{
    g_auto(LmnH5Id) dcpl = H5Dget_create_plist(ds);
    int n = dcpl >= 0 ? H5Pget_nfilters(dcpl) : 0;
    for (int i = 0; i < n; i++) {
        unsigned int flags = 0;
        size_t n_values = 0;
        char fname[128] = "";
        H5Z_filter_t id =
            H5Pget_filter2(dcpl, (unsigned) i, &flags, &n_values, NULL, sizeof fname, fname, NULL);
        /* H5Zfilter_avail also tries HDF5_PLUGIN_PATH, so an installed plugin passes. */
        if (id < 0 || H5Zfilter_avail(id) > 0) {
            continue;
        }
        H5Eclear2(H5E_DEFAULT);
        g_autofree char *label = g_strescape(fname[0] != '\0' ? fname : "unnamed", NULL);
        fail(error, rd, LMN_DATA_ERROR_DTYPE, name,
             "is compressed with HDF5 filter %d ('%s'), which this HDF5 library does not "
             "have; install the plugin for that filter (on Debian and Ubuntu the "
             "hdf5-filter-plugin package; elsewhere put it in HDF5_PLUGIN_PATH), or re-save "
             "the file without it where the filter is installed (h5repack -f NONE IN OUT)",
             (int) id, label);
        return FALSE;
    }
    H5Eclear2(H5E_DEFAULT);
    return TRUE;
}

/* The element type of x: uint8 (decoded with scale/mean/std) or floating point. */
static gboolean x_check_type(const Reader *rd, hid_t x, gboolean *is_u8_out, GError **error)
{
    g_auto(LmnH5Id) type = H5Dget_type(x);
    H5T_class_t cls = H5Tget_class(type);
    *is_u8_out = cls == H5T_INTEGER && H5Tget_size(type) == 1 && H5Tget_sign(type) == H5T_SGN_NONE;
    if (!*is_u8_out && cls != H5T_FLOAT) {
        g_autofree char *tname = lmn_h5_type_name(type);
        fail(error, rd, LMN_DATA_ERROR_DTYPE, "x",
             "has element type %s; x must be uint8 (optionally with a 'scale' attribute) or "
             "floating point (float32, float64); convert it to one of those",
             tname);
        return FALSE;
    }
    return TRUE;
}

/* Sets the sample shape from dims 1.. of x and checks that n samples of it fit memory sizes;
 * @bytes_out: the size of the decoded floats. */
static gboolean x_sample_shape(const Reader *rd, LmnDataset *ds, const hsize_t *dims, int ndim,
                               gsize *bytes_out, GError **error)
{
    ds->sample_shape.ndim = (guint) ndim - 1;
    ds->sample_numel = 1;
    for (int i = 1; i < ndim; i++) {
        ds->sample_shape.dims[i - 1] = (gint64) dims[i];
        guint64 numel = 0;
        if (!g_uint64_checked_mul(&numel, (guint64) ds->sample_numel, (guint64) dims[i]) ||
            numel > (guint64) G_MAXINT32) {
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
    if (!g_uint64_checked_mul(&total_u, (guint64) n, (guint64) ds->sample_numel) ||
        total_u > G_MAXSIZE || !g_size_checked_mul(bytes_out, (gsize) total_u, sizeof(float))) {
        fail(error, rd, LMN_DATA_ERROR_SHAPE, "x",
             "%" G_GINT64_FORMAT " samples of %" G_GINT64_FORMAT " values are too many", n,
             ds->sample_numel);
        return FALSE;
    }
    return TRUE;
}

/* Reads the decoding parameters, x = (raw * scale - mean[c]) / std[c], from x's attributes. */
static gboolean x_decode_params(const Reader *rd, hid_t x, LmnDataset *ds, gboolean is_u8,
                                GError **error)
{
    LmnDecode *d = &ds->decode;
    d->is_u8 = is_u8;
    d->scale = 1.0;
    d->has_scale = lmn_h5_attr_exists(x, "scale");
    if (d->has_scale) {
        g_autofree char *file_label = g_strdup(rd->file);
        LmnH5Errors errs = lmn_h5_errors_data(file_label);
        if (!lmn_h5_attr_read_double(x, "scale", &d->scale, &errs, error)) {
            return FALSE;
        }
        if (!isfinite(d->scale) || d->scale == 0.0) {
            fail(error, rd, LMN_DATA_ERROR_VALUE, "x",
                 "the attribute 'scale' is %g; it must be finite and non-zero", d->scale);
            return FALSE;
        }
    }
    gint64 channels = ds->sample_shape.ndim > 0 ? ds->sample_shape.dims[0] : 1;
    if (!read_channel_attr(rd, x, "mean", channels, &d->mean, &d->n_mean, error) ||
        !read_channel_attr(rd, x, "std", channels, &d->std, &d->n_std, error)) {
        return FALSE;
    }
    d->channels = MAX(channels, 1);
    d->per_channel = channels > 0 ? ds->sample_numel / channels : 0;
    d->a = g_new(double, d->channels);
    d->b = g_new(double, d->channels);
    for (gint64 c = 0; c < d->channels; c++) {
        double m = d->mean != NULL ? d->mean[d->n_mean == 1 ? 0 : c] : 0.0;
        double s = d->std != NULL ? d->std[d->n_std == 1 ? 0 : c] : 1.0;
        d->a[c] = d->scale / s;
        d->b[c] = -m / s;
    }
    return TRUE;
}

/* Streaming: keeps the file and x open in @ds; rows are read on demand.  Takes over *@x. */
static void x_make_source(const Reader *rd, hid_t h5, hid_t *x, LmnDataset *ds, const hsize_t *dims,
                          int ndim)
{
    LmnDatasetSource *src = g_new0(LmnDatasetSource, 1);
    src->ref_count = 1;
    src->file = g_strdup(rd->file);
    src->split = g_strdup(rd->split);
    g_mutex_init(&src->lock);
    src->h5 = H5Iinc_ref(h5) >= 0 ? h5 : H5I_INVALID_HID;
    src->x = *x;
    *x = H5I_INVALID_HID;
    src->ndim = ndim;
    memcpy(src->dims, dims, (gsize) ndim * sizeof(hsize_t));
    ds->source = src;
}

/* Memory mode: reads and decodes all @n samples of x (@bytes of floats) into ds->x. */
static gboolean x_load(const Reader *rd, hid_t x, LmnDataset *ds, const hsize_t *dims, int ndim,
                       gsize bytes, GError **error)
{
    gint64 n = (gint64) dims[0];
    if ((ds->x = g_try_malloc(MAX(bytes, 1))) == NULL) {
        fail(error, rd, LMN_DATA_ERROR_OPEN, "x",
             "not enough memory to load %" G_GINT64_FORMAT " samples of %" G_GINT64_FORMAT
             " values; set LAMINA_DATA_BUDGET (MB) below the free memory to stream them",
             n, ds->sample_numel);
        return FALSE;
    }
    if (!ds->decode.is_u8) {
        return (n == 0 ||
                read_rows(rd, x, "x", H5T_NATIVE_FLOAT, ndim, dims, 0, n, ds->x, error)) &&
               decode_rows(rd, ds, ds->x, n, 0, ds->x, error);
    }
    /* Decode block by block so the raw bytes never need a second full-size buffer. */
    gint64 block = MAX(1, (4 << 20) / MAX(ds->sample_numel, 1));
    g_autofree guint8 *raw = g_malloc(MAX((gsize) (MIN(block, n) * ds->sample_numel), 1));
    for (gint64 row0 = 0; row0 < n; row0 += block) {
        gint64 rows = MIN(block, n - row0);
        if (!read_rows(rd, x, "x", H5T_NATIVE_UINT8, ndim, dims, row0, rows, raw, error) ||
            !decode_rows(rd, ds, raw, rows, row0, ds->x + row0 * ds->sample_numel, error)) {
            return FALSE;
        }
    }
    return TRUE;
}

/* Opens x and checks its type and shape, reads the decoding parameters, then loads x into
 * memory when it fits the budget beside @target_bytes of labels or targets, else streams it. */
static gboolean read_x(const Reader *rd, hid_t h5, hid_t group, LmnDataset *ds, double budget,
                       gint64 target_bytes, gint64 *n_out, GError **error)
{
    g_auto(LmnH5Id) x = open_member(rd, group, "x", "the inputs", error);
    if (x < 0) {
        return FALSE;
    }
    hsize_t dims[LMN_MAX_DIMS + 1];
    int ndim = read_dims(rd, x, "x", dims, LMN_MAX_DIMS + 1, error);
    gboolean is_u8 = FALSE;
    gsize bytes = 0;
    if (ndim < 0 || !check_filters(rd, x, "x", error) || !x_check_type(rd, x, &is_u8, error) ||
        !x_sample_shape(rd, ds, dims, ndim, &bytes, error) ||
        !x_decode_params(rd, x, ds, is_u8, error)) {
        return FALSE;
    }
    gint64 n = (gint64) dims[0];
    gint64 row_bytes = ds->sample_numel * (is_u8 ? 1 : (gint64) sizeof(float));
    ds->chunk_rows = chunk_rows_of(x, n, row_bytes);
    *n_out = n;
    ds->budget_bytes = budget;
    if ((double) bytes + (double) target_bytes > ds->budget_bytes) {
        x_make_source(rd, h5, &x, ds, dims, ndim);
        return TRUE;
    }
    return x_load(rd, x, ds, dims, ndim, bytes, error);
}

gboolean lmn_dataset_read_range(const LmnDataset *ds, gint64 first, gint64 n, float *out,
                                float *scratch, GError **error)
{
    g_return_val_if_fail(ds != NULL && ds->source != NULL && first >= 0 && n > 0, FALSE);
    g_return_val_if_fail(first + n <= ds->length, FALSE);
    LmnDatasetSource *src = ds->source;
    Reader rd = {.file = src->file, .split = src->split, .errs = lmn_h5_errors_data(src->file)};
    gint64 row0 = lmn_dataset_file_row(ds, first);
    gint64 span = lmn_dataset_file_row(ds, first + n - 1) - row0 + 1;
    gint64 numel = ds->sample_numel;
    /* Raw bytes go to the end of @scratch (uint8 is a quarter of the size), decoded floats to
     * its start: decoding walks forwards, and float data decodes in place. */
    void *raw = ds->decode.is_u8 ? (void *) ((guint8 *) (scratch + span * numel) - span * numel)
                                 : (void *) scratch;
    g_mutex_lock(&src->lock);
    lmn_h5_init();
    gboolean ok = read_rows(&rd, src->x, "x", ds->decode.is_u8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT,
                            src->ndim, src->dims, row0, span, raw, error);
    /* (a counter of reads, not of results: the dataset is const to its readers) */
    ((LmnDataset *) ds)->rows_read += n;
    g_mutex_unlock(&src->lock);
    if (!ok || !decode_rows(&rd, ds, raw, span, row0, scratch, error)) {
        return FALSE;
    }
    if (ds->rows == NULL) {
        memcpy(out, scratch, (gsize) (n * numel) * sizeof(float));
        return TRUE;
    }
    for (gint64 i = 0; i < n; i++) {
        memcpy(out + i * numel, scratch + (lmn_dataset_file_row(ds, first + i) - row0) * numel,
               (gsize) numel * sizeof(float));
    }
    return TRUE;
}

static gboolean y_read_pixel_labels(const Reader *rd, const char *name, hid_t y, LmnDataset *ds,
                                    const hsize_t *dims, int ndim, GError **error);

/* Integer class labels [N] or [N, 1] to int32, range-checked, read block by block so the only
 * full-size buffer is the labels themselves. */
static gboolean y_read_labels(const Reader *rd, const char *name, hid_t y, hid_t type,
                              LmnDataset *ds, const hsize_t *dims, int ndim, GError **error)
{
    gint64 n = (gint64) dims[0];
    /* [N], or [N, 1] as Keras-style label columns are written; anything wider is per-pixel. */
    if (ndim > 2 || (ndim == 2 && dims[1] != 1))
        return y_read_pixel_labels(rd, name, y, ds, dims, ndim, error);
    ds->class_labels = TRUE;
    ds->target_shape.ndim = 0;
    ds->target_numel = 1;
    ds->max_label = -1;
    gboolean is_unsigned = H5Tget_sign(type) == H5T_SGN_NONE;
    gint64 block = MIN(MAX(n, 1), 1 << 16);
    g_autofree gint64 *raw = g_new(gint64, block);
    ds->labels = g_try_new(gint32, MAX(n, 1));
    if (ds->labels == NULL) {
        fail(error, rd, LMN_DATA_ERROR_OPEN, name,
             "not enough memory for %" G_GINT64_FORMAT " labels", n);
        return FALSE;
    }
    for (gint64 row0 = 0; row0 < n; row0 += block) {
        gint64 rows = MIN(block, n - row0);
        if (!read_rows(rd, y, name, is_unsigned ? H5T_NATIVE_UINT64 : H5T_NATIVE_INT64, ndim, dims,
                       row0, rows, raw, error)) {
            return FALSE;
        }
        for (gint64 k = 0; k < rows; k++) {
            gint64 i = row0 + k;
            gboolean too_big =
                is_unsigned ? (guint64) raw[k] > (guint64) G_MAXINT32 : raw[k] > G_MAXINT32;
            if (too_big || (!is_unsigned && raw[k] < 0)) {
                g_autofree char *value =
                    is_unsigned ? g_strdup_printf("%" G_GUINT64_FORMAT, (guint64) raw[k])
                                : g_strdup_printf("%" G_GINT64_FORMAT, raw[k]);
                fail(error, rd, LMN_DATA_ERROR_VALUE, name,
                     "label %s at index %" G_GINT64_FORMAT " is %s; class labels must be "
                     "0, 1, 2, ... (at most %d)",
                     value, i, too_big ? "too large" : "negative", G_MAXINT32);
                return FALSE;
            }
            ds->labels[i] = (gint32) raw[k];
            ds->max_label = MAX(ds->max_label, raw[k]);
        }
    }
    return TRUE;
}

/* Float targets [N, K...] as float32, checked finite. */
static gboolean y_read_targets(const Reader *rd, const char *name, hid_t y, LmnDataset *ds,
                               const hsize_t *dims, int ndim, GError **error)
{
    gint64 n = (gint64) dims[0];
    if (ndim - 1 > LMN_MAX_DIMS) {
        fail(error, rd, LMN_DATA_ERROR_SHAPE, name, "has too many dimensions");
        return FALSE;
    }
    ds->class_labels = FALSE;
    ds->max_label = -1;
    ds->target_shape.ndim = (guint) ndim - 1;
    ds->target_numel = 1;
    for (int i = 1; i < ndim; i++) {
        ds->target_shape.dims[i - 1] = (gint64) dims[i];
    }
    /* As for x: a sample's targets are at most G_MAXINT32 values, and all of them must fit
     * one allocation, checked before it is made. */
    gint64 total = 0;
    if (!lmn_shape_numel_checked(&ds->target_shape, &ds->target_numel) ||
        ds->target_numel > G_MAXINT32 || __builtin_mul_overflow(n, ds->target_numel, &total) ||
        (guint64) total > G_MAXSIZE / sizeof(float)) {
        g_autofree char *shape = lmn_shape_to_string(&ds->target_shape);
        fail(error, rd, LMN_DATA_ERROR_SHAPE, name,
             "%" G_GINT64_FORMAT " samples of float targets %s are too many values (at most "
             "%d per sample)",
             n, shape, G_MAXINT32);
        return FALSE;
    }
    ds->targets = g_try_new(float, MAX(total, 1));
    if (ds->targets == NULL) {
        fail(error, rd, LMN_DATA_ERROR_OPEN, name,
             "not enough memory for %" G_GINT64_FORMAT " targets", total);
        return FALSE;
    }
    if (n > 0 && !read_rows(rd, y, name, H5T_NATIVE_FLOAT, ndim, dims, 0, n, ds->targets, error)) {
        return FALSE;
    }
    return check_finite(rd, name, ds->targets, total, MAX(ds->target_numel, 1), 0, "", error);
}

/* Per-pixel class labels, integer data [N, d1..dk]: loaded as float targets holding the class
 * indices (exact below 2^24), which softmax_cross_entropy takes against logits [C, d1..dk] and
 * the segmentation IoU counts per class; negative values stay (an ignore_index such as -1).
 * Whether each is a class of the model's loss is checked when training starts
 * (lmn_dataset_check_pixel_labels). */
static gboolean y_read_pixel_labels(const Reader *rd, const char *name, hid_t y, LmnDataset *ds,
                                    const hsize_t *dims, int ndim, GError **error)
{
    if (!y_read_targets(rd, name, y, ds, dims, ndim, error))
        return FALSE;
    gint64 total = (gint64) dims[0] * ds->target_numel;
    for (gint64 i = 0; i < total; i++) {
        if (fabsf(ds->targets[i]) >= 16777216.0f) {
            fail(error, rd, LMN_DATA_ERROR_VALUE, name,
                 "per-pixel label %.0f of sample %" G_GINT64_FORMAT " is too large; labels must "
                 "be below 2^24 in magnitude",
                 (double) ds->targets[i], i / MAX(ds->target_numel, 1));
            return FALSE;
        }
    }
    return TRUE;
}

/* Reads y: integer class labels to int32 (range-checked) or float targets. */
static gboolean read_y(const Reader *rd, hid_t group, const char *name, LmnDataset *ds, gint64 n_x,
                       GError **error)
{
    g_auto(LmnH5Id) y = open_member(rd, group, name, "the labels or targets", error);
    if (y < 0) {
        return FALSE;
    }
    hsize_t dims[LMN_MAX_DIMS + 1];
    int ndim = read_dims(rd, y, name, dims, LMN_MAX_DIMS + 1, error);
    if (ndim < 0) {
        return FALSE;
    }
    gint64 n = (gint64) dims[0];
    if (n != n_x) {
        fail(error, rd, LMN_DATA_ERROR_SHAPE, NULL,
             "x has %" G_GINT64_FORMAT " samples but %s has %" G_GINT64_FORMAT
             "; both must have the same first dimension",
             n_x, name, n);
        return FALSE;
    }
    g_auto(LmnH5Id) type = H5Dget_type(y);
    H5T_class_t cls = H5Tget_class(type);
    if (cls == H5T_INTEGER) {
        return y_read_labels(rd, name, y, type, ds, dims, ndim, error);
    }
    if (cls == H5T_FLOAT) {
        return y_read_targets(rd, name, y, ds, dims, ndim, error);
    }
    g_autofree char *tname = lmn_h5_type_name(type);
    fail(error, rd, LMN_DATA_ERROR_DTYPE, name,
         "has element type %s; y must hold integer class labels (any integer type) or float "
         "targets",
         tname);
    return FALSE;
}

/*
 * Labels and targets are held in memory even when x streams (the range checks, splitting and
 * shuffling need them), so before anything is read their size is checked against the memory
 * budget: a file declaring billions of samples must not exhaust memory.  @bytes_out: what they
 * take, counted in the budget x is loaded under.  Also refuses a y whose filters are missing.
 */
static gboolean y_check_budget(const Reader *rd, hid_t group, const char *name, double budget,
                               gint64 *bytes_out, GError **error)
{
    *bytes_out = 0;
    g_auto(LmnH5Id) y = open_member(rd, group, name, "the labels or targets", error);
    if (y < 0) {
        return FALSE;
    }
    hsize_t dims[LMN_MAX_DIMS + 1];
    int ndim = read_dims(rd, y, name, dims, LMN_MAX_DIMS + 1, error);
    if (ndim < 0 || !check_filters(rd, y, name, error)) {
        return FALSE;
    }
    g_auto(LmnH5Id) type = H5Dget_type(y);
    gboolean labels = H5Tget_class(type) == H5T_INTEGER;
    /* Labels become int32, targets float32: 4 bytes a value either way.  A size beyond 64 bits
     * or a sample beyond G_MAXINT32 values is an impossible shape, which read_y reports. */
    guint64 bytes = 4;
    for (int i = 0; i < ndim; i++) {
        if (!g_uint64_checked_mul(&bytes, bytes, (guint64) dims[i]) ||
            (i > 0 && dims[i] > (hsize_t) G_MAXINT32)) {
            return TRUE;
        }
    }
    double limit = MAX(budget, LABELS_FLOOR_BYTES);
    if ((double) bytes > limit) {
        double mib = 1024.0 * 1024.0;
        fail(error, rd, LMN_DATA_ERROR_SHAPE, name,
             "%" G_GUINT64_FORMAT " samples of %s take %.1f MiB in memory, more than the %.1f "
             "MiB the memory budget allows (labels and targets stay in memory even when x "
             "streams from the file); raise [data] memory_budget_mb (or LAMINA_DATA_BUDGET, in "
             "MiB) to at least %.0f, or use a split with fewer samples",
             (guint64) dims[0], labels ? "labels" : "float targets", (double) bytes / mib,
             limit / mib, ceil((double) bytes / mib));
        return FALSE;
    }
    *bytes_out = (gint64) bytes; /* below the limit, so far below 2^63 */
    return TRUE;
}

LmnDataset *lmn_dataset_open(const char *spec, GError **error)
{
    return lmn_dataset_open_with_budget(spec, -1.0, error);
}

LmnDataset *lmn_dataset_open_with_budget(const char *spec, double budget_mb, GError **error)
{
    return lmn_dataset_open_with_targets(spec, NULL, budget_mb, error);
}

/* The names of @names other than y, each once: the datasets to read besides y. */
static GPtrArray *extra_names(const char *const *names)
{
    GPtrArray *out = g_ptr_array_new();
    for (guint i = 0; names != NULL && names[i] != NULL; i++) {
        gboolean dup = g_str_equal(names[i], "y");
        for (guint j = 0; j < out->len && !dup; j++)
            dup = g_str_equal(g_ptr_array_index(out, j), names[i]);
        if (!dup)
            g_ptr_array_add(out, (gpointer) names[i]);
    }
    return out;
}

/* A target dataset besides y must exist: a clear message before the budget check opens it. */
static gboolean extra_check(const Reader *rd, hid_t group, const char *name, double budget,
                            gint64 *bytes, GError **error)
{
    if (!lmn_h5_path_exists(group, name)) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_MISSING,
                    "no dataset '%s' in %s:%s, which a loss reads ([layer] target = %s); add it "
                    "to the split ([N] class labels or float32 [N, ...] targets, one row per "
                    "sample of x) or name another target",
                    name, rd->file, rd->split, name);
        return FALSE;
    }
    return y_check_budget(rd, group, name, budget, bytes, error);
}

/* Reads target @name like y (through a scratch dataset, so y's checks apply) into @t. */
static gboolean extra_read(const Reader *rd, hid_t group, const char *name, gint64 n,
                           LmnDatasetTarget *t, GError **error)
{
    LmnDataset tmp = {0};
    gboolean ok = read_y(rd, group, name, &tmp, n, error);
    t->name = g_strdup(name);
    t->class_labels = tmp.class_labels;
    t->shape = tmp.target_shape;
    t->numel = tmp.target_numel;
    t->labels = tmp.labels;
    t->values = tmp.targets;
    t->max_label = tmp.class_labels ? tmp.max_label : -1;
    return ok;
}

/* Reads y's optional 'classes' attribute, the class names `lamina convert --classes` records. */
static gboolean read_classes(const Reader *rd, hid_t group, LmnDataset *ds, GError **error)
{
    g_auto(LmnH5Id) y = H5Dopen2(group, "y", H5P_DEFAULT);
    if (y < 0 || !lmn_h5_attr_exists(y, "classes")) {
        H5Eclear2(H5E_DEFAULT);
        return TRUE;
    }
    ds->classes = lmn_h5_attr_read_strings(y, "classes", &rd->errs, error);
    return ds->classes != NULL;
}

/* Opens, checks and reads the split (see lmn_dataset_open_with_targets()). */
static gboolean open_split(LmnDataset *ds, const Reader *rd, hid_t h5, hid_t group,
                           const char *const *names, double budget, gboolean y_optional,
                           GError **error)
{
    g_autoptr(GPtrArray) extra = extra_names(names);
    gint64 n = 0;
    gint64 y_bytes = 0;
    ds->has_y = !y_optional || lmn_h5_path_exists(group, "y");
    if (!ds->has_y)
        return read_x(rd, h5, group, ds, budget, 0, &ds->length, error);
    /* Check the targets' presence and size before decoding x, which may take a while. */
    if (!y_check_budget(rd, group, "y", budget, &y_bytes, error) ||
        !read_classes(rd, group, ds, error))
        return FALSE;
    for (guint i = 0; i < extra->len; i++) {
        gint64 bytes = 0;
        if (!extra_check(rd, group, g_ptr_array_index(extra, i), budget, &bytes, error))
            return FALSE;
        y_bytes += bytes; /* each below the budget's limit, and a handful of them */
    }
    if (!read_x(rd, h5, group, ds, budget, y_bytes, &n, error) ||
        !read_y(rd, group, "y", ds, n, error))
        return FALSE;
    ds->extra = g_new0(LmnDatasetTarget, MAX(extra->len, 1));
    for (guint i = 0; i < extra->len; i++) {
        ds->n_extra++;
        if (!extra_read(rd, group, g_ptr_array_index(extra, i), n, &ds->extra[i], error))
            return FALSE;
    }
    ds->length = n;
    return TRUE;
}

/* Opens @spec (lmn_dataset_open_with_targets(), lmn_dataset_open_inputs()). */
static LmnDataset *open_dataset(const char *spec, const char *const *names, double budget_mb,
                                gboolean y_optional, GError **error)
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
    if (!open_split(ds, &rd, h5, group, names, budget_bytes(budget_mb), y_optional, error)) {
        return NULL;
    }
    gint64 n = ds->length;
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
    return g_steal_pointer(&ds);
}

LmnDataset *lmn_dataset_open_with_targets(const char *spec, const char *const *names,
                                          double budget_mb, GError **error)
{
    return open_dataset(spec, names, budget_mb, FALSE, error);
}

LmnDataset *lmn_dataset_open_inputs(const char *spec, double budget_mb, GError **error)
{
    return open_dataset(spec, NULL, budget_mb, TRUE, error);
}

gboolean lmn_dataset_has_y(const LmnDataset *ds)
{
    g_return_val_if_fail(ds != NULL, FALSE);
    return ds->has_y;
}

double lmn_dataset_get_scale(const LmnDataset *ds)
{
    g_return_val_if_fail(ds != NULL, 1.0);
    return ds->decode.scale;
}

const double *lmn_dataset_get_mean(const LmnDataset *ds, gsize *n_out)
{
    g_return_val_if_fail(ds != NULL && n_out != NULL, NULL);
    *n_out = ds->decode.mean != NULL ? ds->decode.n_mean : 0;
    return ds->decode.mean;
}

const double *lmn_dataset_get_std(const LmnDataset *ds, gsize *n_out)
{
    g_return_val_if_fail(ds != NULL && n_out != NULL, NULL);
    *n_out = ds->decode.std != NULL ? ds->decode.n_std : 0;
    return ds->decode.std;
}

gboolean lmn_dataset_is_uint8(const LmnDataset *ds)
{
    g_return_val_if_fail(ds != NULL, FALSE);
    return ds->decode.is_u8;
}

const char *const *lmn_dataset_get_classes(const LmnDataset *ds)
{
    g_return_val_if_fail(ds != NULL, NULL);
    return (const char *const *) ds->classes;
}

guint lmn_dataset_get_n_targets(const LmnDataset *ds)
{
    g_return_val_if_fail(ds != NULL, 0);
    return 1 + ds->n_extra;
}

const char *lmn_dataset_get_target_name(const LmnDataset *ds, guint index)
{
    g_return_val_if_fail(ds != NULL && index <= ds->n_extra, NULL);
    return index == 0 ? "y" : ds->extra[index - 1].name;
}

gint lmn_dataset_find_target(const LmnDataset *ds, const char *name)
{
    g_return_val_if_fail(ds != NULL && name != NULL, -1);
    for (guint i = 0; i <= ds->n_extra; i++)
        if (g_str_equal(lmn_dataset_get_target_name(ds, i), name))
            return (gint) i;
    return -1;
}

LmnTensorInfo lmn_dataset_get_target_info_at(const LmnDataset *ds, guint index)
{
    LmnTensorInfo info = {lmn_shape_make(0), LMN_DTYPE_I32};
    g_return_val_if_fail(ds != NULL && index <= ds->n_extra, info);
    gboolean labels = index == 0 ? ds->class_labels : ds->extra[index - 1].class_labels;
    if (!labels) {
        info.dtype = LMN_DTYPE_F32;
        info.shape = index == 0 ? ds->target_shape : ds->extra[index - 1].shape;
    }
    return info;
}

gboolean lmn_dataset_check_target_labels(const LmnDataset *ds, guint index, gint64 n_classes,
                                         GError **error)
{
    g_return_val_if_fail(ds != NULL && index <= ds->n_extra, FALSE);
    const LmnDatasetTarget *t = index > 0 ? &ds->extra[index - 1] : NULL;
    if (t == NULL || !t->class_labels || n_classes < 0 || t->max_label < n_classes)
        return TRUE;
    for (gint64 i = 0; i < ds->length; i++) {
        if (t->labels[i] >= n_classes) {
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                        "%s: target '%s': label %d at index %" G_GINT64_FORMAT
                        " is out of range for a loss with %" G_GINT64_FORMAT
                        " classes (labels must be 0..%" G_GINT64_FORMAT
                        "); give that loss's input at least %" G_GINT64_FORMAT " outputs",
                        ds->spec, t->name, t->labels[i], i, n_classes, n_classes - 1,
                        t->max_label + 1);
            return FALSE;
        }
    }
    return TRUE;
}

gboolean lmn_dataset_check_pixel_labels(const LmnDataset *ds, guint index, gint64 n_classes,
                                        gint64 ignore_index, GError **error)
{
    g_return_val_if_fail(ds != NULL && index <= ds->n_extra, FALSE);
    const LmnDatasetTarget *t = index > 0 ? &ds->extra[index - 1] : NULL;
    const float *v = t ? t->values : ds->targets;
    gint64 numel = t ? t->numel : ds->target_numel;
    if (v == NULL || n_classes < 0)
        return TRUE;
    gint64 total = ds->length * numel; /* held in memory, so it fits */
    for (gint64 i = 0; i < total; i++) {
        float x = v[i];
        if ((double) x == (double) ignore_index ||
            (x >= 0.0f && (double) x < (double) n_classes && x == floorf(x)))
            continue;
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                    "%s: target '%s': sample %" G_GINT64_FORMAT " has the per-pixel label %g at "
                    "element %" G_GINT64_FORMAT ", but the loss has %" G_GINT64_FORMAT
                    " classes: labels must be whole numbers 0..%" G_GINT64_FORMAT
                    " or the loss's ignore_index (%" G_GINT64_FORMAT
                    "); give the loss's input more channels or set ignore_index",
                    ds->spec, lmn_dataset_get_target_name(ds, index), i / MAX(numel, 1), (double) x,
                    i % MAX(numel, 1), n_classes, n_classes - 1, ignore_index);
        return FALSE;
    }
    return TRUE;
}

void lmn_dataset_read_extra(const LmnDataset *ds, const guint32 *indices, gsize n,
                            void *const *targets_out)
{
    for (guint e = 0; e < ds->n_extra; e++) {
        const LmnDatasetTarget *t = &ds->extra[e];
        void *out = targets_out[1 + e];
        if (out == NULL)
            continue;
        gsize row = (gsize) t->numel;
        for (gsize i = 0; i < n; i++) {
            if (t->class_labels)
                ((gint32 *) out)[i] = t->labels[indices[i]];
            else
                memcpy((float *) out + i * row, t->values + (gsize) indices[i] * row,
                       row * sizeof(float));
        }
    }
}

gboolean lmn_dataset_read_targets(const LmnDataset *ds, const guint32 *indices, gsize n,
                                  float *x_out, void *const *targets_out, GError **error)
{
    g_return_val_if_fail(ds != NULL && (indices != NULL || n == 0), FALSE);
    if (!lmn_dataset_read(ds, indices, n, x_out, targets_out ? targets_out[0] : NULL, error))
        return FALSE;
    if (targets_out != NULL)
        lmn_dataset_read_extra(ds, indices, n, targets_out);
    return TRUE;
}

gboolean lmn_dataset_check_model(const LmnDataset *ds, const LmnShape *input_shape,
                                 gint64 n_classes, GError **error)
{
    g_return_val_if_fail(ds != NULL && input_shape != NULL, FALSE);
    gint64 want = 0;
    if (!lmn_shape_numel_checked(input_shape, &want)) {
        g_autofree char *want_s = lmn_shape_to_string(input_shape);
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                    "%s: the model's input %s has more values than fit 64 bits; set [model] input "
                    "to the data's shape",
                    ds->spec, want_s);
        return FALSE;
    }
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

gboolean lmn_dataset_read(const LmnDataset *ds, const guint32 *indices, gsize n, float *x_out,
                          void *y_out, GError **error)
{
    g_return_val_if_fail(ds != NULL && (indices != NULL || n == 0), FALSE);
    gsize row = (gsize) ds->sample_numel;
    gsize trow = (gsize) ds->target_numel;
    for (gsize i = 0; i < n; i++) {
        guint32 k = indices[i];
        g_return_val_if_fail((gint64) k < ds->length, FALSE);
        if (x_out != NULL && ds->source == NULL) {
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
    if (x_out == NULL || ds->source == NULL || n == 0) {
        return TRUE;
    }
    /* Streaming: one hyperslab read per run of consecutive samples in consecutive file rows
     * (a sequential evaluation pass reads each batch at once). */
    g_autofree float *scratch = NULL;
    gsize scratch_rows = 0;
    for (gsize i = 0; i < n;) {
        gsize len = 1;
        while (i + len < n && indices[i + len] == indices[i] + len &&
               lmn_dataset_file_row(ds, indices[i] + (gint64) len) ==
                   lmn_dataset_file_row(ds, indices[i]) + (gint64) len) {
            len++;
        }
        if (len > scratch_rows) {
            g_free(scratch);
            scratch = g_new(float, len * row);
            scratch_rows = len;
        }
        if (!lmn_dataset_read_range(ds, indices[i], (gint64) len, x_out + i * row, scratch,
                                    error)) {
            return FALSE;
        }
        i += len;
    }
    return TRUE;
}

void lmn_dataset_gather(const LmnDataset *ds, const guint32 *indices, gsize n, float *x_out,
                        void *y_out)
{
    g_autoptr(GError) error = NULL;
    if (!lmn_dataset_read(ds, indices, n, x_out, y_out, &error) && error != NULL) {
        /* Only a streaming read can fail here; callers that can report errors use
         * lmn_dataset_read. */
        g_warning("%s; the batch is filled with zeros", error->message);
        if (x_out != NULL) {
            memset(x_out, 0, n * (gsize) ds->sample_numel * sizeof(float));
        }
    }
}

gint64 lmn_dataset_get_rows_read(const LmnDataset *ds)
{
    g_return_val_if_fail(ds != NULL, 0);
    if (ds->source == NULL)
        return 0;
    g_mutex_lock(&ds->source->lock);
    gint64 n = ds->rows_read;
    g_mutex_unlock(&ds->source->lock);
    return n;
}

gboolean lmn_dataset_is_streaming(const LmnDataset *ds)
{
    g_return_val_if_fail(ds != NULL, FALSE);
    return ds->source != NULL;
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

/* lmn_dataset_split for the other targets (in memory in both modes): @out gets the held-out rows,
 * @ds keeps the rest, compacted in place (kept[j] >= j). */
static void split_extra(LmnDataset *ds, LmnDataset *out, const guint32 *held, gint64 n_hold,
                        const guint32 *kept, gint64 n_keep)
{
    out->n_extra = ds->n_extra;
    out->extra = g_new0(LmnDatasetTarget, MAX(ds->n_extra, 1));
    for (guint e = 0; e < ds->n_extra; e++) {
        LmnDatasetTarget *t = &ds->extra[e], *o = &out->extra[e];
        *o = *t;
        o->name = g_strdup(t->name);
        gsize row = (gsize) t->numel;
        gsize esize = t->class_labels ? sizeof(gint32) : sizeof(float);
        guint8 *src = t->class_labels ? (guint8 *) t->labels : (guint8 *) t->values;
        guint8 *dst = g_malloc(MAX((gsize) n_hold * row * esize, 1));
        for (gint64 i = 0; i < n_hold; i++)
            memcpy(dst + (gsize) i * row * esize, src + (gsize) held[i] * row * esize, row * esize);
        for (gint64 j = 0; j < n_keep; j++)
            memmove(src + (gsize) j * row * esize, src + (gsize) kept[j] * row * esize,
                    row * esize);
        o->labels = t->class_labels ? (gint32 *) dst : NULL;
        o->values = t->class_labels ? NULL : (float *) dst;
        o->max_label = t->max_label = -1;
        for (gint64 i = 0; t->class_labels && i < n_hold; i++)
            o->max_label = MAX(o->max_label, o->labels[i]);
        for (gint64 j = 0; t->class_labels && j < n_keep; j++)
            t->max_label = MAX(t->max_label, t->labels[j]);
    }
}

/* lmn_dataset_split for a streaming dataset: both parts read the same file through row maps;
 * only labels and targets move. */
static LmnDataset *split_streaming(LmnDataset *ds, LmnDataset *out, const guint32 *held,
                                   gint64 n_hold, const guint32 *kept, gint64 n_keep)
{
    out->length = n_hold;
    out->sample_shape = ds->sample_shape;
    out->sample_numel = ds->sample_numel;
    out->class_labels = ds->class_labels;
    out->target_shape = ds->target_shape;
    out->target_numel = ds->target_numel;
    g_atomic_int_inc(&ds->source->ref_count);
    out->source = ds->source;
    if (ds->class_labels) {
        out->labels = g_new(gint32, n_hold);
    } else {
        out->targets = g_new(float, MAX(n_hold * ds->target_numel, 1));
    }
    lmn_dataset_read(ds, held, (gsize) n_hold, NULL,
                     ds->class_labels ? (void *) out->labels : (void *) out->targets, NULL);
    out->rows = g_new(guint32, n_hold);
    for (gint64 i = 0; i < n_hold; i++) {
        out->rows[i] = (guint32) lmn_dataset_file_row(ds, held[i]);
    }
    guint32 *rows = g_new(guint32, MAX(n_keep, 1));
    gsize trow = (gsize) ds->target_numel;
    for (gint64 j = 0; j < n_keep; j++) {
        gsize k = kept[j];
        rows[j] = (guint32) lmn_dataset_file_row(ds, (gint64) k);
        if (ds->class_labels) {
            ds->labels[j] = ds->labels[k];
        } else {
            memmove(ds->targets + (gsize) j * trow, ds->targets + k * trow, trow * sizeof(float));
        }
    }
    g_free(ds->rows);
    ds->rows = rows;
    ds->length = n_keep;
    recompute_max_label(ds);
    recompute_max_label(out);
    return out;
}

/* Keeps only the rows @kept (increasing) of an in-memory @ds, in place: kept[j] >= j, so a
 * forward pass never overwrites a row before it has been moved. */
static void compact_kept(LmnDataset *ds, const guint32 *kept, gint64 n_keep)
{
    gsize row = (gsize) ds->sample_numel;
    gsize trow = (gsize) ds->target_numel;
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
    out->classes = g_strdupv(ds->classes);
    out->has_y = ds->has_y;
    decode_copy(&out->decode, &ds->decode);
    out->chunk_rows = ds->chunk_rows;
    out->budget_bytes = ds->budget_bytes;
    split_extra(ds, out, held, n_hold, kept, n - n_hold);
    if (ds->source != NULL) {
        return split_streaming(ds, out, held, n_hold, kept, n - n_hold);
    }
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

    compact_kept(ds, kept, n - n_hold);
    recompute_max_label(ds);
    recompute_max_label(out);
    return out;
}
