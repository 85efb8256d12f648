/* Lamina — IDX (MNIST-style) files to a dataset split in HDF5 (see dataset.h).
 *
 * IDX: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, then each
 * dimension as a big-endian uint32, then the data.  Files are often gzip-compressed; the gzip
 * magic 1f 8b tells them apart.
 */
#include <lamina/dataset.h>

#include <string.h>

#include <gio/gio.h>

#include "hdf5/h5-util.h"

typedef struct {
    guint ndim;
    guint32 dims[3];
    GByteArray *data;
} Idx;

static void idx_clear(Idx *idx)
{
    g_clear_pointer(&idx->data, g_byte_array_unref);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Idx, idx_clear)

static const char *idx_type_name(guint8 type)
{
    switch (type) {
    case 0x08:
        return "unsigned byte";
    case 0x09:
        return "signed byte";
    case 0x0B:
        return "int16";
    case 0x0C:
        return "int32";
    case 0x0D:
        return "float32";
    case 0x0E:
        return "float64";
    default:
        return NULL;
    }
}

/* Reads up to @len bytes (fewer only at the end of the stream); gzip errors become FORMAT. */
static gboolean read_bytes(const char *path, GInputStream *in, gboolean gzip, void *buf, gsize len,
                           gsize *got, GError **error)
{
    g_autoptr(GError) local = NULL;
    if (!g_input_stream_read_all(in, buf, len, got, NULL, &local)) {
        if (gzip && local->domain == G_IO_ERROR) {
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                        "%s: the gzip data is truncated or damaged (%s)", path, local->message);
        } else {
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_OPEN, "%s: cannot read it: %s", path,
                        local->message);
        }
        return FALSE;
    }
    return TRUE;
}

/* An IDX file being read: the stream (through gzip when the file is compressed). */
typedef struct {
    const char *path;
    const char *what; /* "images" or "labels", for messages */
    GInputStream *in;
    gboolean gzip;
    const char *decompressed; /* " (after gzip decompression)" or "" */
} IdxStream;

static void idx_stream_clear(IdxStream *s)
{
    g_clear_object(&s->in);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(IdxStream, idx_stream_clear)

/* Opens the file and, when its first bytes are gzip's magic, a decompressing stream over it. */
static gboolean idx_open(IdxStream *s, GError **error)
{
    const char *path = s->path;
    g_autoptr(GFile) file = g_file_new_for_path(path);
    g_autoptr(GError) local = NULL;
    g_autoptr(GFileInputStream) raw = g_file_read(file, NULL, &local);
    if (raw == NULL) {
        if (g_error_matches(local, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_OPEN, "%s: no such file", path);
        else
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_OPEN, "%s: cannot read it: %s", path,
                        local->message);
        return FALSE;
    }
    guint8 magic2[2] = {0, 0};
    gsize got = 0;
    if (!read_bytes(path, G_INPUT_STREAM(raw), FALSE, magic2, 2, &got, error))
        return FALSE;
    s->gzip = got == 2 && magic2[0] == 0x1f && magic2[1] == 0x8b;
    if (!g_seekable_seek(G_SEEKABLE(raw), 0, G_SEEK_SET, NULL, &local)) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_OPEN, "%s: cannot read it: %s", path,
                    local->message);
        return FALSE;
    }
    if (s->gzip) {
        g_autoptr(GZlibDecompressor) dec = g_zlib_decompressor_new(G_ZLIB_COMPRESSOR_FORMAT_GZIP);
        s->in = g_converter_input_stream_new(G_INPUT_STREAM(raw), G_CONVERTER(dec));
    } else {
        s->in = g_object_ref(G_INPUT_STREAM(raw));
    }
    s->decompressed = s->gzip ? " (after gzip decompression)" : "";
    return TRUE;
}

/* The magic number: unsigned bytes in @want_ndim dimensions. */
static gboolean idx_read_magic(IdxStream *s, guint want_ndim, GError **error)
{
    const char *path = s->path;
    guint8 magic[4];
    gsize got = 0;
    if (!read_bytes(path, s->in, s->gzip, magic, 4, &got, error))
        return FALSE;
    guint32 want_magic = 0x0800u | want_ndim;
    if (got < 4) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                    "%s: %zu bytes%s is too short for an IDX file (the %s need magic 0x%08x)", path,
                    got, s->decompressed, s->what, want_magic);
        return FALSE;
    }
    guint32 found_magic = ((guint32) magic[0] << 24) | ((guint32) magic[1] << 16) |
                          ((guint32) magic[2] << 8) | magic[3];
    if (magic[0] != 0 || magic[1] != 0 || idx_type_name(magic[2]) == NULL || magic[3] == 0) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                    "%s: not an IDX file (magic 0x%08x; the %s need 0x%08x)", path, found_magic,
                    s->what, want_magic);
        return FALSE;
    }
    if (magic[2] != 0x08) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                    "%s: the IDX file holds %s values (magic 0x%08x); only unsigned bytes "
                    "(0x%08x) are supported",
                    path, idx_type_name(magic[2]), found_magic, want_magic);
        return FALSE;
    }
    if (magic[3] != want_ndim) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                    "%s: the IDX file has %u dimension%s (magic 0x%08x) but the %s need %u "
                    "(magic 0x%08x); are the images and labels files swapped?",
                    path, magic[3], magic[3] == 1 ? "" : "s", found_magic, s->what, want_ndim,
                    want_magic);
        return FALSE;
    }
    return TRUE;
}

/* The dimensions; *expected is their product, the data's size in bytes.  A GByteArray holds at
 * most G_MAXUINT bytes, so a larger promise is refused here, before anything is read. */
static gboolean idx_read_dims(IdxStream *s, guint want_ndim, Idx *idx, guint64 *expected,
                              GError **error)
{
    const char *path = s->path;
    guint8 dim_bytes[12];
    gsize header = 4 + 4 * (gsize) want_ndim;
    gsize got = 0;
    if (!read_bytes(path, s->in, s->gzip, dim_bytes, 4 * want_ndim, &got, error))
        return FALSE;
    if (got < 4 * want_ndim) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                    "%s: truncated IDX file: expected at least %zu header bytes, found %zu%s", path,
                    header, 4 + got, s->decompressed);
        return FALSE;
    }
    *expected = 1;
    idx->ndim = want_ndim;
    for (guint i = 0; i < want_ndim; i++) {
        guint32 be;
        memcpy(&be, dim_bytes + 4 * i, 4);
        idx->dims[i] = GUINT32_FROM_BE(be);
        if (idx->dims[i] == 0) {
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                        "%s: dimension %u of the IDX header is 0; the file holds no %s", path, i,
                        s->what);
            return FALSE;
        }
        if (!g_uint64_checked_mul(expected, *expected, idx->dims[i]) || *expected > G_MAXUINT) {
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                        "%s: the IDX header's dimensions are impossibly large (more than %u "
                        "bytes of %s)",
                        path, G_MAXUINT, s->what);
            return FALSE;
        }
    }
    return TRUE;
}

/* The data, which must be exactly @expected bytes.  It grows as data arrives (no allocation
 * trusts the header), but never past what the header promises. */
static gboolean idx_read_data(IdxStream *s, gsize header, guint64 expected, Idx *idx,
                              GError **error)
{
    const char *path = s->path;
    gsize got = 0;
    idx->data = g_byte_array_new();
    gsize chunk = 1 << 20;
    while ((guint64) idx->data->len < expected) {
        gsize want = (gsize) MIN((guint64) chunk, expected - idx->data->len);
        guint old = idx->data->len;
        g_byte_array_set_size(idx->data, old + (guint) want);
        if (!read_bytes(path, s->in, s->gzip, idx->data->data + old, want, &got, error))
            return FALSE;
        g_byte_array_set_size(idx->data, old + (guint) got);
        if (got < want) {
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                        "%s: truncated IDX file: the header promises %" G_GUINT64_FORMAT
                        " bytes, found %" G_GUINT64_FORMAT "%s",
                        path, header + expected, (guint64) (header + idx->data->len),
                        s->decompressed);
            return FALSE;
        }
    }
    guint8 extra;
    if (!read_bytes(path, s->in, s->gzip, &extra, 1, &got, error))
        return FALSE;
    if (got > 0) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                    "%s: the IDX file is longer than its header says (%" G_GUINT64_FORMAT
                    " bytes expected%s); it may be damaged",
                    path, header + expected, s->decompressed);
        return FALSE;
    }
    return TRUE;
}

/* Reads and validates one IDX file of unsigned bytes with @want_ndim dimensions. */
static gboolean idx_read(const char *path, const char *what, guint want_ndim, Idx *idx,
                         GError **error)
{
    g_auto(IdxStream) s = {.path = path, .what = what};
    guint64 expected = 0;
    return idx_open(&s, error) && idx_read_magic(&s, want_ndim, error) &&
           idx_read_dims(&s, want_ndim, idx, &expected, error) &&
           idx_read_data(&s, 4 + 4 * (gsize) want_ndim, expected, idx, error);
}

/* A dataset-creation property list: chunks of @chunk_rows samples, deflate when available. */
static hid_t make_dcpl(int ndim, const hsize_t *dims, hsize_t chunk_rows)
{
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk[4];
    chunk[0] = chunk_rows;
    for (int i = 1; i < ndim; i++) {
        chunk[i] = dims[i];
    }
    H5Pset_chunk(dcpl, ndim, chunk);
    unsigned int config = 0;
    if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0 &&
        H5Zget_filter_info(H5Z_FILTER_DEFLATE, &config) >= 0 &&
        (config & H5Z_FILTER_CONFIG_ENCODE_ENABLED) != 0) {
        H5Pset_deflate(dcpl, 4);
    }
    H5Eclear2(H5E_DEFAULT);
    return dcpl;
}

static gboolean write_u8(hid_t group, const char *name, int ndim, const hsize_t *dims,
                         hsize_t chunk_rows, const guint8 *data, const LmnH5Errors *errs,
                         const char *spec, GError **error)
{
    g_auto(LmnH5Id) space = H5Screate_simple(ndim, dims, NULL);
    g_auto(LmnH5Id) dcpl = make_dcpl(ndim, dims, chunk_rows);
    g_auto(LmnH5Id) ds =
        H5Dcreate2(group, name, H5T_STD_U8LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        g_autofree char *why = lmn_h5_error_text();
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_WRITE, "%s: cannot write %s: %s", spec,
                    name, why);
        return FALSE;
    }
    if (strcmp(name, "x") == 0 &&
        !lmn_h5_attr_write_double(ds, "scale", 1.0 / 255.0, errs, error)) {
        return FALSE;
    }
    return TRUE;
}

/* Whether the split is already in @file: refused early, before decompressing anything, unless
 * @overwrite. */
static gboolean split_exists(const char *file, const char *split, gboolean overwrite,
                             const LmnH5Errors *errs, gboolean *exists, GError **error)
{
    *exists = FALSE;
    if (g_file_test(file, G_FILE_TEST_EXISTS)) {
        g_auto(LmnH5Id) h5 = lmn_h5_file_open_read(file, errs, error);
        if (h5 < 0) {
            /* Say that the file is left alone, so nobody fears for it. */
            if (error != NULL && *error != NULL) {
                char *msg = g_strdup_printf("%s; the split %s was not added and the file is "
                                            "unchanged (choose another output file)",
                                            (*error)->message, split);
                g_free((*error)->message);
                (*error)->message = msg;
            }
            return FALSE;
        }
        *exists = strcmp(split, "/") == 0
                      ? lmn_h5_path_exists(h5, "/x") || lmn_h5_path_exists(h5, "/y")
                      : lmn_h5_path_exists(h5, split);
    }
    if (*exists && !overwrite) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_WRITE,
                    "%s: the split %s already exists; pass --overwrite to replace it", file, split);
        return FALSE;
    }
    return TRUE;
}

/* Unlinks the old split being replaced.  Its space stays in the file (HDF5 does not reclaim it
 * across sessions); h5repack compacts it. */
static gboolean remove_old_split(hid_t h5, const char *file, const char *split, GError **error)
{
    gboolean is_root = strcmp(split, "/") == 0;
    const char *victims[] = {is_root ? "/x" : split, is_root ? "/y" : NULL};
    for (guint i = 0; i < G_N_ELEMENTS(victims) && victims[i] != NULL; i++) {
        if (lmn_h5_path_exists(h5, victims[i]) && H5Ldelete(h5, victims[i], H5P_DEFAULT) < 0) {
            g_autofree char *why = lmn_h5_error_text();
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_WRITE,
                        "%s: cannot remove the old %s: %s", file, victims[i], why);
            return FALSE;
        }
    }
    return TRUE;
}

/* x [N, 1, H, W] and y [N] as chunked, compressed uint8 datasets in @group. */
static gboolean write_split(hid_t group, const Idx *img, const Idx *lab, const LmnH5Errors *errs,
                            const char *output, GError **error)
{
    gsize n = img->dims[0];
    gsize sample_bytes = (gsize) img->dims[1] * img->dims[2];
    hsize_t x_dims[4] = {n, 1, img->dims[1], img->dims[2]};
    hsize_t y_dims[1] = {n};
    /* About 1024 samples (under 1 MiB) per chunk, so mini-batch reads decompress little extra. */
    hsize_t x_rows = MAX(1, MIN(MIN(n, 1024), (1u << 20) / sample_bytes));
    hsize_t y_rows = MIN(n, 65536);
    return write_u8(group, "x", 4, x_dims, x_rows, img->data->data, errs, output, error) &&
           write_u8(group, "y", 1, y_dims, y_rows, lab->data->data, errs, output, error);
}

gboolean lmn_convert_idx(const char *images, const char *labels, const char *output,
                         gboolean overwrite, GError **error)
{
    g_return_val_if_fail(images != NULL && labels != NULL && output != NULL, FALSE);
    g_autofree char *file = NULL;
    g_autofree char *split = NULL;
    if (!lmn_split_spec(output, &file, &split, error))
        return FALSE;
    LmnH5Errors errs = lmn_h5_errors_data(file);
    gboolean exists = FALSE;
    if (!split_exists(file, split, overwrite, &errs, &exists, error))
        return FALSE;

    g_auto(Idx) img = {0};
    g_auto(Idx) lab = {0};
    if (!idx_read(images, "images", 3, &img, error) || !idx_read(labels, "labels", 1, &lab, error))
        return FALSE;
    if (img.dims[0] != lab.dims[0]) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                    "%s holds %u images but %s holds %u labels; they must pair up one to one",
                    images, img.dims[0], labels, lab.dims[0]);
        return FALSE;
    }

    g_autoptr(LmnH5AtomicFile) af = lmn_h5_atomic_file_new(file, TRUE, &errs, error);
    if (af == NULL)
        return FALSE;
    hid_t h5 = lmn_h5_atomic_file_peek_id(af);
    if (exists && !remove_old_split(h5, file, split, error))
        return FALSE;
    g_auto(LmnH5Id) group = lmn_h5_group_create(h5, split, &errs, error);
    if (group < 0 || !write_split(group, &img, &lab, &errs, output, error))
        return FALSE;
    lmn_h5_close(group);
    group = H5I_INVALID_HID;
    return lmn_h5_atomic_file_commit(af, error);
}
