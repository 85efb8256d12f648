/* Lamina — NumPy .npy files to a dataset split (dataset.h).
 *
 * Format (numpy.lib.format): "\x93NUMPY", major and minor version bytes, the header length
 * (uint16 LE in 1.0, uint32 LE in 2.0 and 3.0), then a Python dict literal such as
 * {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 784), } padded with spaces, then the
 * raw elements.
 */
#include "convert-private.h"

#include <errno.h>
#include <math.h>
#include <string.h>

/* Finds the value text after "'KEY':" in the header dict; NULL when absent. */
static const char *find_key(const char *header, const char *key)
{
    g_autofree char *quoted1 = g_strdup_printf("'%s'", key);
    g_autofree char *quoted2 = g_strdup_printf("\"%s\"", key);
    const char *p = strstr(header, quoted1);
    if (p == NULL) {
        p = strstr(header, quoted2);
    }
    if (p == NULL) {
        return NULL;
    }
    p += strlen(quoted1);
    while (*p == ' ') {
        p++;
    }
    if (*p != ':') {
        return NULL;
    }
    p++;
    while (*p == ' ') {
        p++;
    }
    return p;
}

static gboolean bad_header(GError **error, const char *name, const char *what)
{
    g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT, "%s: malformed .npy header: %s",
                name, what);
    return FALSE;
}

/* The magic, the format version and where the header lies: [*hstart, *hstart + *hlen). */
static gboolean npy_header_bounds(const guint8 *data, gsize len, const char *name, gsize *hstart,
                                  gsize *hlen, GError **error)
{
    static const guint8 magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    if (len < 10 || memcmp(data, magic, 6) != 0) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                    "%s: not a NumPy .npy file (it must start with \\x93NUMPY; save arrays with "
                    "numpy.save)",
                    name);
        return FALSE;
    }
    guint major = data[6];
    if (major == 1) {
        *hlen = (gsize) data[8] | ((gsize) data[9] << 8);
        *hstart = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12)
            return bad_header(error, name, "the file ends inside the header length");
        *hlen = (gsize) data[8] | ((gsize) data[9] << 8) | ((gsize) data[10] << 16) |
                ((gsize) data[11] << 24);
        *hstart = 12;
    } else {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                    "%s: .npy format version %u.%u is not supported (1.0, 2.0 and 3.0 are)", name,
                    major, data[7]);
        return FALSE;
    }
    if (*hlen > len - *hstart) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                    "%s: truncated .npy file: the header needs %zu bytes, the file has %zu", name,
                    *hstart + *hlen, len);
        return FALSE;
    }
    return TRUE;
}

/* The header's 'descr': one of the little-endian (or byte-sized) types Lamina reads. */
static gboolean npy_dtype(const char *header, const char *name, LmnNpyArray *out, GError **error)
{
    const char *descr = find_key(header, "descr");
    if (descr == NULL || (*descr != '\'' && *descr != '"'))
        return bad_header(error, name, "no 'descr' string");
    char q = *descr++;
    const char *dend = strchr(descr, q);
    if (dend == NULL)
        return bad_header(error, name, "unterminated 'descr'");
    g_autofree char *dtype = g_strndup(descr, (gsize) (dend - descr));
    char order = dtype[0];
    const char *code = dtype + (order == '<' || order == '>' || order == '|' || order == '=');
    struct {
        const char *code;
        char kind;
        int size;
    } const known[] = {{"f4", 'f', 4}, {"f8", 'f', 8}, {"u1", 'u', 1}, {"i4", 'i', 4},
                       {"i8", 'i', 8}, {"b1", 'u', 1}};
    gboolean found = FALSE;
    for (guint i = 0; i < G_N_ELEMENTS(known) && !found; i++) {
        if (strcmp(code, known[i].code) == 0) {
            out->kind = known[i].kind;
            out->item_size = known[i].size;
            found = TRUE;
        }
    }
    gboolean big = order == '>' || (order == '=' && G_BYTE_ORDER == G_BIG_ENDIAN);
    if (!found || (big && out->item_size > 1)) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_DTYPE,
                    "%s: the array's dtype '%s' is not supported; use little-endian float32, "
                    "float64, uint8, int32 or int64 (e.g. arr.astype('<f4'))",
                    name, dtype);
        return FALSE;
    }
    return TRUE;
}

/* The header's 'fortran_order', which must be False. */
static gboolean npy_c_order(const char *header, const char *name, GError **error)
{
    const char *fo = find_key(header, "fortran_order");
    if (fo == NULL)
        return bad_header(error, name, "no 'fortran_order'");
    if (g_str_has_prefix(fo, "True")) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                    "%s: the array is stored in Fortran (column-major) order; save it in C order "
                    "(numpy.save(f, numpy.ascontiguousarray(a)))",
                    name);
        return FALSE;
    }
    if (!g_str_has_prefix(fo, "False"))
        return bad_header(error, name, "'fortran_order' is neither True nor False");
    return TRUE;
}

/* The header's 'shape' tuple; the element count is checked to fit in bytes. */
static gboolean npy_shape(const char *header, const char *name, LmnNpyArray *out, GError **error)
{
    const char *sh = find_key(header, "shape");
    if (sh == NULL || *sh != '(')
        return bad_header(error, name, "no 'shape' tuple");
    sh++;
    guint64 count = 1;
    out->ndim = 0;
    for (;;) {
        while (*sh == ' ')
            sh++;
        if (*sh == ')')
            break;
        char *end = NULL;
        errno = 0;
        gint64 d = g_ascii_strtoll(sh, &end, 10);
        if (end == sh || errno != 0 || d < 0)
            return bad_header(error, name, "'shape' holds something other than sizes");
        if (out->ndim >= (int) G_N_ELEMENTS(out->shape))
            return bad_header(error, name, "'shape' has too many dimensions");
        out->shape[out->ndim++] = d;
        if (!g_uint64_checked_mul(&count, count, (guint64) d) || count > G_MAXINT64 / 8)
            return bad_header(error, name, "'shape' is impossibly large");
        sh = end;
        while (*sh == ' ')
            sh++;
        if (*sh == ',')
            sh++;
        else if (*sh != ')')
            return bad_header(error, name, "'shape' is not a tuple of integers");
    }
    out->count = (gint64) count;
    return TRUE;
}

gboolean lmn_npy_parse(const guint8 *data, gsize len, const char *name, LmnNpyArray *out,
                       GError **error)
{
    g_return_val_if_fail((data != NULL || len == 0) && name != NULL && out != NULL, FALSE);
    memset(out, 0, sizeof *out);
    gsize hstart, hlen;
    if (!npy_header_bounds(data, len, name, &hstart, &hlen, error))
        return FALSE;
    g_autofree char *header = g_strndup((const char *) data + hstart, hlen);
    if (!npy_dtype(header, name, out, error) || !npy_c_order(header, name, error) ||
        !npy_shape(header, name, out, error))
        return FALSE;
    gsize need = (gsize) out->count * (gsize) out->item_size;
    gsize have = len - hstart - hlen;
    if (have < need) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                    "%s: truncated .npy file: the shape needs %zu bytes of data, found %zu", name,
                    need, have);
        return FALSE;
    }
    out->data = data + hstart + hlen;
    return TRUE;
}

double lmn_npy_get(const LmnNpyArray *a, gint64 i)
{
    const guint8 *p = a->data + i * a->item_size;
    switch (a->kind) {
    case 'f':
        if (a->item_size == 4) {
            guint32 u;
            memcpy(&u, p, 4);
            u = GUINT32_FROM_LE(u);
            float f;
            memcpy(&f, &u, 4);
            return f;
        } else {
            guint64 u;
            memcpy(&u, p, 8);
            u = GUINT64_FROM_LE(u);
            double d;
            memcpy(&d, &u, 8);
            return d;
        }
    case 'u':
        return p[0];
    default:
        if (a->item_size == 4) {
            guint32 u;
            memcpy(&u, p, 4);
            return (gint32) GUINT32_FROM_LE(u);
        } else {
            guint64 u;
            memcpy(&u, p, 8);
            return (double) (gint64) GUINT64_FROM_LE(u);
        }
    }
}

static GMappedFile *map_file(const char *path, GError **error)
{
    g_autoptr(GError) local = NULL;
    GMappedFile *map = g_mapped_file_new(path, FALSE, &local);
    if (map == NULL) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_OPEN, "%s: cannot read it: %s", path,
                    local->message);
    }
    return map;
}

/* x must be [N, sample shape...] and y hold the same N: labels [N] / [N, 1] or float targets. */
static gboolean check_npy_pair(const LmnNpyArray *xa, const LmnNpyArray *ya, const char *x_npy,
                               const char *y_npy, GError **error)
{
    if (xa->ndim < 1 || xa->ndim > LMN_MAX_DIMS + 1 || xa->shape[0] == 0) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                    "%s: x has %d dimensions and %" G_GINT64_FORMAT
                    " samples; it must be [N, sample shape...] with N > 0 and at most %d "
                    "dimensions",
                    x_npy, xa->ndim, xa->ndim > 0 ? xa->shape[0] : 0, LMN_MAX_DIMS + 1);
        return FALSE;
    }
    if (ya->ndim < 1 || ya->shape[0] != xa->shape[0]) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                    "%s holds %" G_GINT64_FORMAT " samples but %s holds %" G_GINT64_FORMAT
                    "; they must pair up one to one",
                    x_npy, xa->shape[0], y_npy, ya->ndim > 0 ? ya->shape[0] : 0);
        return FALSE;
    }
    if (ya->kind != 'f' && (ya->ndim > 2 || (ya->ndim == 2 && ya->shape[1] != 1))) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                    "%s: integer labels must be [N] (or [N, 1]); store float targets as float32",
                    y_npy);
        return FALSE;
    }
    return TRUE;
}

/* x as native float32, every value finite.  Returns: (transfer full): xa->count values. */
static float *decode_x(const LmnNpyArray *xa, const char *x_npy, GError **error)
{
    gint64 numel = xa->count / xa->shape[0];
    g_autofree float *xf = g_new(float, MAX(xa->count, 1));
    for (gint64 i = 0; i < xa->count; i++) {
        xf[i] = (float) lmn_npy_get(xa, i);
        if (!isfinite(xf[i])) {
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                        "%s: sample %" G_GINT64_FORMAT " holds %s (element %" G_GINT64_FORMAT
                        " of the sample) after conversion to float32; x must be finite",
                        x_npy, i / numel, isnan(xf[i]) ? "NaN" : "Inf", i % numel);
            return NULL;
        }
    }
    return g_steal_pointer(&xf);
}

/* Integer y as int32 labels (0, 1, 2, ...).  Returns: (transfer full): N labels. */
static gint32 *decode_labels(const LmnNpyArray *ya, const char *y_npy, GError **error)
{
    gint64 n = ya->shape[0];
    g_autofree gint32 *yl = g_new(gint32, n);
    for (gint64 i = 0; i < n; i++) {
        double v = lmn_npy_get(ya, i);
        if (v < 0 || v > G_MAXINT32) {
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                        "%s: label %.0f at index %" G_GINT64_FORMAT
                        " is out of range; labels must be 0, 1, 2, ...",
                        y_npy, v, i);
            return NULL;
        }
        yl[i] = (gint32) v;
    }
    return g_steal_pointer(&yl);
}

/* Float y as float32 targets.  Returns: (transfer full): ya->count values. */
static float *decode_targets(const LmnNpyArray *ya)
{
    float *yt = g_new(float, MAX(ya->count, 1));
    for (gint64 i = 0; i < ya->count; i++)
        yt[i] = (float) lmn_npy_get(ya, i);
    return yt;
}

gboolean lmn_convert_npy(const char *x_npy, const char *y_npy, const char *output,
                         gboolean overwrite, gboolean normalize, GError **error)
{
    g_return_val_if_fail(x_npy != NULL && y_npy != NULL && output != NULL, FALSE);
    g_autoptr(GMappedFile) xm = map_file(x_npy, error);
    if (xm == NULL)
        return FALSE;
    g_autoptr(GMappedFile) ym = map_file(y_npy, error);
    if (ym == NULL)
        return FALSE;
    LmnNpyArray xa, ya;
    if (!lmn_npy_parse((const guint8 *) g_mapped_file_get_contents(xm),
                       g_mapped_file_get_length(xm), x_npy, &xa, error) ||
        !lmn_npy_parse((const guint8 *) g_mapped_file_get_contents(ym),
                       g_mapped_file_get_length(ym), y_npy, &ya, error) ||
        !check_npy_pair(&xa, &ya, x_npy, y_npy, error))
        return FALSE;
    /* Everything is decoded to native float32 / int32 (uint8 x stays uint8: it is compact and
     * lmn_dataset_open decodes it). */
    gboolean y_labels = ya.kind != 'f';
    gint64 n = xa.shape[0];
    gint64 numel = xa.count / n;
    gboolean x_u8 = xa.kind == 'u';
    g_autofree float *xf = decode_x(&xa, x_npy, error);
    if (xf == NULL)
        return FALSE;
    g_autofree gint32 *yl = y_labels ? decode_labels(&ya, y_npy, error) : NULL;
    if (y_labels && yl == NULL)
        return FALSE;
    g_autofree float *yt = y_labels ? NULL : decode_targets(&ya);

    g_autoptr(LmnSplitWriter) w = lmn_split_writer_new(output, overwrite, error);
    if (w == NULL)
        return FALSE;
    hsize_t xd[LMN_MAX_DIMS + 1], yd[LMN_MAX_DIMS + 2];
    for (int i = 0; i < xa.ndim; i++)
        xd[i] = (hsize_t) xa.shape[i];
    for (int i = 0; i < ya.ndim; i++)
        yd[i] = (hsize_t) ya.shape[i];
    g_autofree guint8 *xu8 = x_u8 ? g_memdup2(xa.data, (gsize) xa.count) : NULL;
    g_auto(LmnH5Id) x =
        x_u8 ? lmn_split_writer_write(w, "x", H5T_STD_U8LE, H5T_NATIVE_UINT8, xa.ndim, xd, xu8,
                                      error)
             : lmn_split_writer_write(w, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, xa.ndim, xd, xf,
                                      error);
    if (x < 0)
        return FALSE;
    g_auto(LmnH5Id) y =
        y_labels ? lmn_split_writer_write(w, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, yd, yl, error)
                 : lmn_split_writer_write(w, "y", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ya.ndim, yd, yt,
                                          error);
    if (y < 0)
        return FALSE;
    gint64 channels = xa.ndim >= 2 ? xa.shape[1] : 1;
    gint64 per_channel = channels > 0 ? numel / channels : 1;
    if (channels > 0 && numel > 0 &&
        !lmn_split_writer_write_stats(w, x, xf, n, channels, per_channel, normalize, error))
        return FALSE;
    lmn_h5_close(x);
    x = H5I_INVALID_HID;
    lmn_h5_close(y);
    y = H5I_INVALID_HID;
    return lmn_split_writer_commit(w, error);
}

/* The number of samples of @sample_shape in an array of shape @a: one when the shapes are equal,
 * else the first dimension when the rest holds one sample's values; -1 when neither. */
static gint64 npy_samples(const LmnNpyArray *a, const LmnShape *sample_shape)
{
    gboolean equal = a->ndim == (int) sample_shape->ndim;
    for (int i = 0; equal && i < a->ndim; i++)
        equal = a->shape[i] == sample_shape->dims[i];
    if (equal)
        return 1;
    gint64 numel = lmn_shape_numel(sample_shape);
    if (a->ndim < 1 || a->shape[0] == 0)
        return -1;
    gint64 rest = a->count / a->shape[0];
    return (a->ndim >= 2 || numel == 1) && rest == numel ? a->shape[0] : -1;
}

static char *npy_shape_text(const LmnNpyArray *a)
{
    GString *s = g_string_new("(");
    for (int i = 0; i < a->ndim; i++)
        g_string_append_printf(s, "%s%" G_GINT64_FORMAT, i ? ", " : "", a->shape[i]);
    g_string_append(s, a->ndim == 1 ? ",)" : ")");
    return g_string_free(s, FALSE);
}

float *lmn_npy_read_samples(const char *path, const LmnShape *sample_shape, gint64 *n_out,
                            gboolean *is_uint8_out, GError **error)
{
    g_return_val_if_fail(path != NULL && sample_shape != NULL && n_out != NULL, NULL);
    g_autoptr(GMappedFile) map = map_file(path, error);
    if (map == NULL)
        return NULL;
    LmnNpyArray a;
    if (!lmn_npy_parse((const guint8 *) g_mapped_file_get_contents(map),
                       g_mapped_file_get_length(map), path, &a, error))
        return NULL;
    if (a.kind != 'f' && !(a.kind == 'u' && a.item_size == 1)) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_DTYPE,
                    "%s: integer elements of %d bytes; inputs must be float32, float64 or uint8",
                    path, a.item_size);
        return NULL;
    }
    gint64 n = npy_samples(&a, sample_shape);
    if (n < 1) {
        g_autofree char *have = npy_shape_text(&a);
        g_autofree char *want = lmn_shape_to_string(sample_shape);
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                    "%s: shape %s does not fit the model's input %s; it must hold N samples "
                    "of that shape (N first) or be one sample",
                    path, have, want);
        return NULL;
    }
    float *x = decode_x(&a, path, error);
    if (x == NULL)
        return NULL;
    *n_out = n;
    if (is_uint8_out)
        *is_uint8_out = a.kind == 'u';
    return x;
}
