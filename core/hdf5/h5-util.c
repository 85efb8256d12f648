/* Lamina — private helpers over the HDF5 C API (see h5-util.h). */
#include "h5-util.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

LmnH5Errors lmn_h5_errors_data(const char *filename)
{
    return (LmnH5Errors){
        .filename = filename,
        .domain = LMN_DATA_ERROR,
        .code_open = LMN_DATA_ERROR_OPEN,
        .code_missing = LMN_DATA_ERROR_MISSING,
        .code_shape = LMN_DATA_ERROR_SHAPE,
        .code_dtype = LMN_DATA_ERROR_DTYPE,
        .code_write = LMN_DATA_ERROR_WRITE,
    };
}

LmnH5Errors lmn_h5_errors_checkpoint(const char *filename)
{
    return (LmnH5Errors){
        .filename = filename,
        .domain = LMN_CHECKPOINT_ERROR,
        .code_open = LMN_CHECKPOINT_ERROR_OPEN,
        .code_missing = LMN_CHECKPOINT_ERROR_FORMAT,
        .code_shape = LMN_CHECKPOINT_ERROR_MISMATCH,
        .code_dtype = LMN_CHECKPOINT_ERROR_FORMAT,
        .code_write = LMN_CHECKPOINT_ERROR_WRITE,
    };
}

void lmn_h5_close(hid_t id)
{
    if (id < 0 || H5Iis_valid(id) <= 0) {
        return;
    }
    switch (H5Iget_type(id)) {
    case H5I_FILE:
        H5Fclose(id);
        break;
    case H5I_GROUP:
        H5Gclose(id);
        break;
    case H5I_DATASET:
        H5Dclose(id);
        break;
    case H5I_ATTR:
        H5Aclose(id);
        break;
    case H5I_DATASPACE:
        H5Sclose(id);
        break;
    case H5I_DATATYPE:
        H5Tclose(id);
        break;
    case H5I_GENPROP_LST:
        H5Pclose(id);
        break;
    default:
        H5Idec_ref(id);
        break;
    }
}

/* HDF5 is built threadsafe on Debian, which makes the automatic error printing a per-thread
 * setting: the library-wide once covers H5open, the private flag each thread. */
static GPrivate h5_thread_quiet;

void lmn_h5_init(void)
{
    static gsize once = 0;
    if (g_once_init_enter(&once)) {
        H5open();
        g_once_init_leave(&once, 1);
    }
    if (g_private_get(&h5_thread_quiet) == NULL) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        g_private_set(&h5_thread_quiet, GINT_TO_POINTER(1));
    }
}

static herr_t take_innermost(unsigned n, const H5E_error2_t *err, void *data)
{
    char **out = data;
    if (n == 0 && err->desc != NULL && err->desc[0] != '\0') {
        *out = g_strdup(err->desc);
    }
    return 0;
}

char *lmn_h5_error_text(void)
{
    char *text = NULL;
    lmn_h5_init();
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_innermost, &text);
    H5Eclear2(H5E_DEFAULT);
    return text != NULL ? text : g_strdup("unknown HDF5 error");
}

char *lmn_h5_path_join(const char *parent, const char *child)
{
    gsize len = strlen(parent);
    while (len > 0 && parent[len - 1] == '/') {
        len--;
    }
    while (*child == '/') {
        child++;
    }
    if (*child == '\0') {
        return len == 0 ? g_strdup("/") : g_strndup(parent, len);
    }
    return g_strdup_printf("%.*s/%s", (int) len, parent, child);
}

char *lmn_h5_object_path(hid_t loc, const char *name)
{
    g_autofree char *base = NULL;
    if (name != NULL && name[0] == '/') {
        return g_strdup(name);
    }
    if (loc >= 0 && H5Iis_valid(loc) > 0) {
        ssize_t len = H5Iget_name(loc, NULL, 0);
        if (len > 0) {
            base = g_malloc((gsize) len + 1);
            H5Iget_name(loc, base, (size_t) len + 1);
        }
    }
    if (base == NULL) {
        base = g_strdup("/");
    }
    return name != NULL ? lmn_h5_path_join(base, name) : g_steal_pointer(&base);
}

char *lmn_h5_type_name(hid_t type)
{
    size_t size = H5Tget_size(type);
    switch (H5Tget_class(type)) {
    case H5T_INTEGER:
        return g_strdup_printf("%sint%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "", size * 8);
    case H5T_FLOAT:
        return g_strdup_printf("float%zu", size * 8);
    case H5T_STRING:
        return g_strdup("string");
    case H5T_COMPOUND:
        return g_strdup("compound");
    case H5T_ENUM:
        return g_strdup("enum (e.g. bool)");
    case H5T_BITFIELD:
        return g_strdup("bitfield");
    case H5T_OPAQUE:
        return g_strdup("opaque");
    case H5T_REFERENCE:
        return g_strdup("reference");
    case H5T_VLEN:
        return g_strdup("variable-length");
    case H5T_ARRAY:
        return g_strdup("array");
    case H5T_TIME:
        return g_strdup("time");
    default:
        return g_strdup("unknown");
    }
}

/* "FILE:/path: message" in the caller's domain. */
G_GNUC_PRINTF(6, 7)
static void set_error(GError **error, const LmnH5Errors *errs, gint code, hid_t loc,
                      const char *name, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    g_autofree char *msg = g_strdup_vprintf(format, ap);
    va_end(ap);
    g_autofree char *path = lmn_h5_object_path(loc, name);
    g_set_error(error, errs->domain, code, "%s:%s: %s", errs->filename, path, msg);
}

/* A file-access property list shared by every open: file locking is kept but not required, so
 * files on file systems without flock (some NFS set-ups) still open. */
static hid_t make_fapl(gboolean strong_close)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
#if H5_VERSION_GE(1, 10, 7)
    H5Pset_file_locking(fapl, TRUE, TRUE);
#endif
    if (strong_close) {
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    }
    return fapl;
}

hid_t lmn_h5_file_open_read(const char *path, const LmnH5Errors *errs, GError **error)
{
    g_return_val_if_fail(path != NULL && errs != NULL, H5I_INVALID_HID);
    lmn_h5_init();

    if (!g_file_test(path, G_FILE_TEST_EXISTS)) {
        g_set_error(error, errs->domain, errs->code_open, "%s: no such file", path);
        return H5I_INVALID_HID;
    }
    if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
        g_set_error(error, errs->domain, errs->code_open, "%s: is a directory, not an HDF5 file",
                    path);
        return H5I_INVALID_HID;
    }
    /* Ask the OS first: HDF5 would report a permission problem as "not HDF5". */
    int fd = g_open(path, O_RDONLY, 0);
    if (fd < 0) {
        int saved = errno;
        g_set_error(error, errs->domain, errs->code_open, "%s: cannot read it: %s", path,
                    g_strerror(saved));
        return H5I_INVALID_HID;
    }
    struct stat st;
    gboolean empty = fstat(fd, &st) == 0 && st.st_size == 0;
    close(fd);
    if (empty) {
        g_set_error(error, errs->domain, errs->code_open, "%s: the file is empty, not an HDF5 file",
                    path);
        return H5I_INVALID_HID;
    }

    htri_t is_hdf5 = H5Fis_hdf5(path);
    if (is_hdf5 <= 0) {
        g_autofree char *why = is_hdf5 < 0 ? lmn_h5_error_text() : NULL;
        H5Eclear2(H5E_DEFAULT);
        g_set_error(error, errs->domain, errs->code_open,
                    "%s: not an HDF5 file (no HDF5 signature found%s%s)", path,
                    why != NULL ? ": " : "", why != NULL ? why : "");
        return H5I_INVALID_HID;
    }

    g_auto(LmnH5Id) fapl = make_fapl(FALSE);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (file < 0) {
        g_autofree char *why = lmn_h5_error_text();
        g_set_error(error, errs->domain, errs->code_open,
                    "%s: the HDF5 file is truncated or damaged (%s); recreate it", path, why);
        return H5I_INVALID_HID;
    }
    return file;
}

gboolean lmn_h5_path_exists(hid_t loc, const char *path)
{
    lmn_h5_init();
    g_auto(GStrv) parts = g_strsplit(path, "/", -1);
    g_autoptr(GString) prefix = g_string_new(path[0] == '/' ? "/" : "");
    for (guint i = 0; parts[i] != NULL; i++) {
        if (parts[i][0] == '\0') {
            continue;
        }
        if (prefix->len > 0 && prefix->str[prefix->len - 1] != '/') {
            g_string_append_c(prefix, '/');
        }
        g_string_append(prefix, parts[i]);
        if (H5Lexists(loc, prefix->str, H5P_DEFAULT) <= 0) {
            H5Eclear2(H5E_DEFAULT);
            return FALSE;
        }
    }
    return TRUE;
}

hid_t lmn_h5_group_open(hid_t loc, const char *path, const LmnH5Errors *errs, GError **error)
{
    lmn_h5_init();
    if (!lmn_h5_path_exists(loc, path)) {
        set_error(error, errs, errs->code_missing, loc, path, "no such group");
        return H5I_INVALID_HID;
    }
    hid_t obj = H5Oopen(loc, path, H5P_DEFAULT);
    if (obj < 0) {
        g_autofree char *why = lmn_h5_error_text();
        set_error(error, errs, errs->code_open, loc, path, "cannot open it: %s", why);
        return H5I_INVALID_HID;
    }
    if (H5Iget_type(obj) != H5I_GROUP) {
        lmn_h5_close(obj);
        set_error(error, errs, errs->code_shape, loc, path, "is a dataset, not a group");
        return H5I_INVALID_HID;
    }
    return obj;
}

hid_t lmn_h5_group_create(hid_t loc, const char *path, const LmnH5Errors *errs, GError **error)
{
    lmn_h5_init();
    g_auto(GStrv) parts = g_strsplit(path, "/", -1);
    g_autoptr(GString) prefix = g_string_new(path[0] == '/' ? "/" : "");
    for (guint i = 0; parts[i] != NULL; i++) {
        if (parts[i][0] == '\0') {
            continue;
        }
        if (prefix->len > 0 && prefix->str[prefix->len - 1] != '/') {
            g_string_append_c(prefix, '/');
        }
        g_string_append(prefix, parts[i]);
        if (H5Lexists(loc, prefix->str, H5P_DEFAULT) > 0) {
            continue;
        }
        g_auto(LmnH5Id) group = H5Gcreate2(loc, prefix->str, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (group < 0) {
            g_autofree char *why = lmn_h5_error_text();
            set_error(error, errs, errs->code_write, loc, prefix->str,
                      "cannot create the group: %s", why);
            return H5I_INVALID_HID;
        }
    }
    hid_t group = H5Oopen(loc, path, H5P_DEFAULT);
    if (group < 0 || H5Iget_type(group) != H5I_GROUP) {
        g_autofree char *why = group < 0 ? lmn_h5_error_text() : g_strdup("it is not a group");
        lmn_h5_close(group);
        set_error(error, errs, errs->code_write, loc, path, "cannot open the group: %s", why);
        return H5I_INVALID_HID;
    }
    return group;
}

gboolean lmn_h5_attr_exists(hid_t obj, const char *name)
{
    lmn_h5_init();
    htri_t exists = H5Aexists(obj, name);
    H5Eclear2(H5E_DEFAULT);
    return exists > 0;
}

/* Replaces attribute @name with a new one of @file_type and @space holding @buf. */
static gboolean attr_write(hid_t obj, const char *name, hid_t file_type, hid_t mem_type,
                           hid_t space, const void *buf, const LmnH5Errors *errs, GError **error)
{
    lmn_h5_init();
    if (H5Aexists(obj, name) > 0 && H5Adelete(obj, name) < 0) {
        g_autofree char *why = lmn_h5_error_text();
        set_error(error, errs, errs->code_write, obj, NULL, "cannot replace the attribute '%s': %s",
                  name, why);
        return FALSE;
    }
    g_auto(LmnH5Id) attr = H5Acreate2(obj, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0 || H5Awrite(attr, mem_type, buf) < 0) {
        g_autofree char *why = lmn_h5_error_text();
        set_error(error, errs, errs->code_write, obj, NULL, "cannot write the attribute '%s': %s",
                  name, why);
        return FALSE;
    }
    return TRUE;
}

gboolean lmn_h5_attr_write_string(hid_t obj, const char *name, const char *value,
                                  const LmnH5Errors *errs, GError **error)
{
    g_return_val_if_fail(name != NULL && value != NULL && errs != NULL, FALSE);
    lmn_h5_init();
    g_auto(LmnH5Id) type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    g_auto(LmnH5Id) space = H5Screate(H5S_SCALAR);
    return attr_write(obj, name, type, type, space, &value, errs, error);
}

gboolean lmn_h5_attr_write_double(hid_t obj, const char *name, double value,
                                  const LmnH5Errors *errs, GError **error)
{
    g_return_val_if_fail(name != NULL && errs != NULL, FALSE);
    lmn_h5_init();
    g_auto(LmnH5Id) space = H5Screate(H5S_SCALAR);
    return attr_write(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, space, &value, errs, error);
}

gboolean lmn_h5_attr_write_int64(hid_t obj, const char *name, gint64 value, const LmnH5Errors *errs,
                                 GError **error)
{
    g_return_val_if_fail(name != NULL && errs != NULL, FALSE);
    lmn_h5_init();
    g_auto(LmnH5Id) space = H5Screate(H5S_SCALAR);
    return attr_write(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, space, &value, errs, error);
}

gboolean lmn_h5_attr_write_doubles(hid_t obj, const char *name, const double *values, gsize n,
                                   const LmnH5Errors *errs, GError **error)
{
    g_return_val_if_fail(name != NULL && values != NULL && n > 0 && errs != NULL, FALSE);
    lmn_h5_init();
    hsize_t dim = n;
    g_auto(LmnH5Id) space = H5Screate_simple(1, &dim, NULL);
    return attr_write(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, space, values, errs, error);
}

/* Opens attribute @name with its type and element count, or fails with code_missing. */
static hid_t attr_open(hid_t obj, const char *name, hid_t *type_out, hssize_t *count_out,
                       const LmnH5Errors *errs, GError **error)
{
    lmn_h5_init();
    if (H5Aexists(obj, name) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        set_error(error, errs, errs->code_missing, obj, NULL, "no attribute '%s'", name);
        return H5I_INVALID_HID;
    }
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    g_auto(LmnH5Id) space = attr >= 0 ? H5Aget_space(attr) : H5I_INVALID_HID;
    hid_t type = attr >= 0 ? H5Aget_type(attr) : H5I_INVALID_HID;
    hssize_t count = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (attr < 0 || type < 0 || count < 0) {
        g_autofree char *why = lmn_h5_error_text();
        lmn_h5_close(type);
        lmn_h5_close(attr);
        set_error(error, errs, errs->code_open, obj, NULL, "cannot read the attribute '%s': %s",
                  name, why);
        return H5I_INVALID_HID;
    }
    *type_out = type;
    *count_out = count;
    return attr;
}

/* Checks that an opened attribute is numeric (integer or float). */
static gboolean attr_check_numeric(hid_t obj, const char *name, hid_t type, const LmnH5Errors *errs,
                                   GError **error)
{
    H5T_class_t cls = H5Tget_class(type);
    if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
        g_autofree char *tname = lmn_h5_type_name(type);
        set_error(error, errs, errs->code_dtype, obj, NULL,
                  "the attribute '%s' holds %s; a number was expected", name, tname);
        return FALSE;
    }
    return TRUE;
}

/* Checks that an attribute holds exactly one @what ("value", "string"). */
static gboolean attr_check_single(hid_t obj, const char *name, hssize_t count, const char *what,
                                  const LmnH5Errors *errs, GError **error)
{
    if (count != 1) {
        set_error(error, errs, errs->code_shape, obj, NULL,
                  "the attribute '%s' holds %" G_GINT64_FORMAT " %ss; one was expected", name,
                  (gint64) count, what);
        return FALSE;
    }
    return TRUE;
}

/* Reports a failed H5Aread of attribute @name with HDF5's own explanation. */
static void attr_read_failed(hid_t obj, const char *name, const LmnH5Errors *errs, GError **error)
{
    g_autofree char *why = lmn_h5_error_text();
    set_error(error, errs, errs->code_open, obj, NULL, "cannot read the attribute '%s': %s", name,
              why);
}

gboolean lmn_h5_attr_read_double(hid_t obj, const char *name, double *value_out,
                                 const LmnH5Errors *errs, GError **error)
{
    g_return_val_if_fail(name != NULL && value_out != NULL && errs != NULL, FALSE);
    g_auto(LmnH5Id) type = H5I_INVALID_HID;
    hssize_t count = 0;
    g_auto(LmnH5Id) attr = attr_open(obj, name, &type, &count, errs, error);
    if (attr < 0 || !attr_check_numeric(obj, name, type, errs, error)) {
        return FALSE;
    }
    if (!attr_check_single(obj, name, count, "value", errs, error)) {
        return FALSE;
    }
    if (H5Aread(attr, H5T_NATIVE_DOUBLE, value_out) < 0) {
        attr_read_failed(obj, name, errs, error);
        return FALSE;
    }
    return TRUE;
}

gboolean lmn_h5_attr_read_int64(hid_t obj, const char *name, gint64 *value_out,
                                const LmnH5Errors *errs, GError **error)
{
    g_return_val_if_fail(name != NULL && value_out != NULL && errs != NULL, FALSE);
    g_auto(LmnH5Id) type = H5I_INVALID_HID;
    hssize_t count = 0;
    g_auto(LmnH5Id) attr = attr_open(obj, name, &type, &count, errs, error);
    if (attr < 0) {
        return FALSE;
    }
    if (H5Tget_class(type) != H5T_INTEGER) {
        g_autofree char *tname = lmn_h5_type_name(type);
        set_error(error, errs, errs->code_dtype, obj, NULL,
                  "the attribute '%s' holds %s; an integer was expected", name, tname);
        return FALSE;
    }
    if (!attr_check_single(obj, name, count, "value", errs, error)) {
        return FALSE;
    }
    herr_t status;
    gboolean too_big = FALSE;
    if (H5Tget_sign(type) == H5T_SGN_NONE) {
        guint64 u = 0;
        status = H5Aread(attr, H5T_NATIVE_UINT64, &u);
        too_big = u > (guint64) G_MAXINT64;
        *value_out = (gint64) u;
    } else {
        status = H5Aread(attr, H5T_NATIVE_INT64, value_out);
    }
    if (status < 0) {
        attr_read_failed(obj, name, errs, error);
        return FALSE;
    }
    if (too_big) {
        set_error(error, errs, errs->code_dtype, obj, NULL,
                  "the attribute '%s' does not fit in a signed 64-bit integer", name);
        return FALSE;
    }
    return TRUE;
}

double *lmn_h5_attr_read_doubles(hid_t obj, const char *name, gsize *n_out, const LmnH5Errors *errs,
                                 GError **error)
{
    g_return_val_if_fail(name != NULL && n_out != NULL && errs != NULL, NULL);
    g_auto(LmnH5Id) type = H5I_INVALID_HID;
    hssize_t count = 0;
    g_auto(LmnH5Id) attr = attr_open(obj, name, &type, &count, errs, error);
    if (attr < 0 || !attr_check_numeric(obj, name, type, errs, error)) {
        return NULL;
    }
    g_autofree double *values = g_new0(double, MAX(count, 1));
    if (count > 0 && H5Aread(attr, H5T_NATIVE_DOUBLE, values) < 0) {
        attr_read_failed(obj, name, errs, error);
        return NULL;
    }
    *n_out = (gsize) count;
    return g_steal_pointer(&values);
}

char *lmn_h5_attr_read_string(hid_t obj, const char *name, const LmnH5Errors *errs, GError **error)
{
    g_return_val_if_fail(name != NULL && errs != NULL, NULL);
    g_auto(LmnH5Id) type = H5I_INVALID_HID;
    hssize_t count = 0;
    g_auto(LmnH5Id) attr = attr_open(obj, name, &type, &count, errs, error);
    if (attr < 0) {
        return NULL;
    }
    if (H5Tget_class(type) != H5T_STRING) {
        g_autofree char *tname = lmn_h5_type_name(type);
        set_error(error, errs, errs->code_dtype, obj, NULL,
                  "the attribute '%s' holds %s; a string was expected", name, tname);
        return NULL;
    }
    if (!attr_check_single(obj, name, count, "string", errs, error)) {
        return NULL;
    }
    g_auto(LmnH5Id) mem_type = H5Tcopy(H5T_C_S1);
    H5Tset_cset(mem_type, H5Tget_cset(type));
    char *result = NULL;
    herr_t status;
    if (H5Tis_variable_str(type) > 0) {
        char *value = NULL;
        H5Tset_size(mem_type, H5T_VARIABLE);
        status = H5Aread(attr, mem_type, &value);
        if (status >= 0) {
            result = g_strdup(value != NULL ? value : "");
            H5free_memory(value);
        }
    } else {
        size_t size = H5Tget_size(type);
        H5Tset_size(mem_type, size + 1);
        H5Tset_strpad(mem_type, H5T_STR_NULLTERM);
        result = g_malloc0(size + 1);
        status = H5Aread(attr, mem_type, result);
    }
    if (status < 0) {
        g_free(result);
        attr_read_failed(obj, name, errs, error);
        return NULL;
    }
    return result;
}

static hid_t utf8_vlen_type(void)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    return type;
}

gboolean lmn_h5_attr_write_strings(hid_t obj, const char *name, const char *const *values,
                                   const LmnH5Errors *errs, GError **error)
{
    g_return_val_if_fail(name != NULL && values != NULL && values[0] != NULL, FALSE);
    g_return_val_if_fail(errs != NULL, FALSE);
    lmn_h5_init();
    g_auto(LmnH5Id) type = utf8_vlen_type();
    hsize_t dim = g_strv_length((char **) values);
    g_auto(LmnH5Id) space = H5Screate_simple(1, &dim, NULL);
    return attr_write(obj, name, type, type, space, values, errs, error);
}

/* Reads @count fixed-length strings of @type from @attr. */
static char **read_fixed_strings(hid_t attr, hid_t type, hssize_t count)
{
    size_t size = H5Tget_size(type);
    g_auto(LmnH5Id) mem_type = H5Tcopy(H5T_C_S1);
    H5Tset_cset(mem_type, H5Tget_cset(type));
    H5Tset_size(mem_type, size + 1);
    H5Tset_strpad(mem_type, H5T_STR_NULLTERM);
    gsize total = 0;
    if (!g_size_checked_mul(&total, size + 1, (gsize) count))
        return NULL;
    g_autofree char *buf = g_malloc0(MAX(total, 1));
    if (H5Aread(attr, mem_type, buf) < 0)
        return NULL;
    char **out = g_new0(char *, count + 1);
    for (hssize_t i = 0; i < count; i++)
        out[i] = g_strndup(buf + (gsize) i * (size + 1), size);
    return out;
}

char **lmn_h5_attr_read_strings(hid_t obj, const char *name, const LmnH5Errors *errs,
                                GError **error)
{
    g_return_val_if_fail(name != NULL && errs != NULL, NULL);
    g_auto(LmnH5Id) type = H5I_INVALID_HID;
    hssize_t count = 0;
    g_auto(LmnH5Id) attr = attr_open(obj, name, &type, &count, errs, error);
    if (attr < 0)
        return NULL;
    if (H5Tget_class(type) != H5T_STRING) {
        g_autofree char *tname = lmn_h5_type_name(type);
        set_error(error, errs, errs->code_dtype, obj, NULL,
                  "the attribute '%s' holds %s; strings were expected", name, tname);
        return NULL;
    }
    char **out = NULL;
    if (H5Tis_variable_str(type) > 0) {
        g_autofree char **raw = g_new0(char *, count + 1);
        g_auto(LmnH5Id) mem_type = utf8_vlen_type();
        H5Tset_cset(mem_type, H5Tget_cset(type));
        if (H5Aread(attr, mem_type, raw) >= 0) {
            out = g_new0(char *, count + 1);
            for (hssize_t i = 0; i < count; i++) {
                out[i] = g_strdup(raw[i] != NULL ? raw[i] : "");
                H5free_memory(raw[i]);
            }
        }
    } else {
        out = read_fixed_strings(attr, type, count);
    }
    if (out == NULL)
        attr_read_failed(obj, name, errs, error);
    return out;
}

gboolean lmn_h5_write_strings_dataset(hid_t loc, const char *name, const char *const *values,
                                      gsize n, const LmnH5Errors *errs, GError **error)
{
    g_return_val_if_fail(name != NULL && (values != NULL || n == 0) && errs != NULL, FALSE);
    lmn_h5_init();
    if (lmn_h5_path_exists(loc, name)) {
        set_error(error, errs, errs->code_write, loc, name, "already exists");
        return FALSE;
    }
    g_auto(LmnH5Id) type = utf8_vlen_type();
    hsize_t dim = n;
    g_auto(LmnH5Id) space = H5Screate_simple(1, &dim, NULL);
    g_auto(LmnH5Id) ds = H5Dcreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0 || (n > 0 && H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values) < 0)) {
        g_autofree char *why = lmn_h5_error_text();
        set_error(error, errs, errs->code_write, loc, name, "cannot write: %s", why);
        return FALSE;
    }
    return TRUE;
}

gboolean lmn_h5_write_float_dataset(hid_t loc, const char *name, const LmnShape *shape,
                                    const float *data, const LmnH5Errors *errs, GError **error)
{
    g_return_val_if_fail(name != NULL && shape != NULL && shape->ndim <= LMN_MAX_DIMS, FALSE);
    g_return_val_if_fail(data != NULL && errs != NULL, FALSE);
    lmn_h5_init();
    if (lmn_h5_path_exists(loc, name)) {
        set_error(error, errs, errs->code_write, loc, name, "already exists");
        return FALSE;
    }
    hsize_t dims[LMN_MAX_DIMS];
    for (guint i = 0; i < shape->ndim; i++) {
        dims[i] = (hsize_t) shape->dims[i];
    }
    g_auto(LmnH5Id) space =
        shape->ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(shape->ndim, dims, NULL);
    g_auto(LmnH5Id) lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    g_auto(LmnH5Id) ds =
        H5Dcreate2(loc, name, H5T_IEEE_F32LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        g_autofree char *why = lmn_h5_error_text();
        set_error(error, errs, errs->code_write, loc, name, "cannot write the dataset: %s", why);
        return FALSE;
    }
    return TRUE;
}

/* Opens dataset @name of @loc, whose type must be of @class (@what names the values expected,
 * for the message).  Returns: the dataset (its type in *type_out), or H5I_INVALID_HID with
 * @errs->code_missing (absent, or a group), code_open or code_dtype. */
static hid_t open_typed_dataset(hid_t loc, const char *name, H5T_class_t class, const char *what,
                                hid_t *type_out, const LmnH5Errors *errs, GError **error)
{
    lmn_h5_init();
    if (!lmn_h5_path_exists(loc, name)) {
        set_error(error, errs, errs->code_missing, loc, name, "no such dataset");
        return H5I_INVALID_HID;
    }
    g_auto(LmnH5Id) ds = H5Oopen(loc, name, H5P_DEFAULT);
    if (ds < 0 || H5Iget_type(ds) != H5I_DATASET) {
        g_autofree char *why = ds < 0 ? lmn_h5_error_text() : g_strdup("it is a group");
        set_error(error, errs, ds < 0 ? errs->code_open : errs->code_missing, loc, name,
                  "cannot open it as a dataset: %s", why);
        return H5I_INVALID_HID;
    }
    g_auto(LmnH5Id) type = H5Dget_type(ds);
    if (H5Tget_class(type) != class) {
        g_autofree char *tname = lmn_h5_type_name(type);
        set_error(error, errs, errs->code_dtype, loc, name, "holds %s; %s", tname, what);
        return H5I_INVALID_HID;
    }
    /* Handed over to the caller: cleared here so the cleanup does not close them. */
    *type_out = type;
    type = H5I_INVALID_HID;
    hid_t result = ds;
    ds = H5I_INVALID_HID;
    return result;
}

float *lmn_h5_read_float_dataset(hid_t loc, const char *name, const LmnShape *expected,
                                 LmnShape *shape_out, const LmnH5Errors *errs, GError **error)
{
    g_return_val_if_fail(name != NULL && errs != NULL, NULL);
    g_auto(LmnH5Id) type = H5I_INVALID_HID;
    g_auto(LmnH5Id) ds = open_typed_dataset(
        loc, name, H5T_FLOAT, "floating-point values were expected", &type, errs, error);
    if (ds < 0)
        return NULL;
    g_auto(LmnH5Id) space = H5Dget_space(ds);
    /* A null dataspace has no values at all; read as a scalar it would leave one unwritten. */
    if (H5Sget_simple_extent_type(space) == H5S_NULL) {
        set_error(error, errs, errs->code_shape, loc, name,
                  "has an empty (null) dataspace; an array of values was expected");
        return NULL;
    }
    int ndim = H5Sget_simple_extent_ndims(space);
    if (ndim < 0 || ndim > LMN_MAX_DIMS) {
        set_error(error, errs, errs->code_shape, loc, name,
                  "has %d dimensions; at most %d are supported", ndim, LMN_MAX_DIMS);
        return NULL;
    }
    hsize_t dims[LMN_MAX_DIMS];
    H5Sget_simple_extent_dims(space, dims, NULL);
    LmnShape shape = {.ndim = (guint) ndim};
    gboolean fits = TRUE;
    for (int i = 0; i < ndim; i++) {
        fits = fits && dims[i] <= (hsize_t) G_MAXINT64;
        shape.dims[i] = fits ? (gint64) dims[i] : G_MAXINT64;
    }
    /* The extent is the file's word: a count that wrapped would size the buffer below what
     * H5Dread then writes into it. */
    if (!fits || !lmn_shape_nbytes_checked(&shape, LMN_DTYPE_F32, NULL)) {
        g_autofree char *got = lmn_shape_to_string(&shape);
        set_error(error, errs, errs->code_shape, loc, name,
                  "declares shape %s, more values than one tensor can hold; the file is corrupt",
                  got);
        return NULL;
    }
    if (expected != NULL && !lmn_shape_equal(expected, &shape)) {
        g_autofree char *want = lmn_shape_to_string(expected);
        g_autofree char *got = lmn_shape_to_string(&shape);
        set_error(error, errs, errs->code_shape, loc, name, "has shape %s but %s was expected", got,
                  want);
        return NULL;
    }
    gint64 numel = lmn_shape_numel(&shape);
    g_autofree float *data = g_try_new(float, MAX(numel, 1));
    if (data == NULL) {
        set_error(error, errs, errs->code_open, loc, name,
                  "not enough memory for %" G_GINT64_FORMAT " values", numel);
        return NULL;
    }
    if (numel > 0 && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        g_autofree char *why = lmn_h5_error_text();
        set_error(error, errs, errs->code_open, loc, name, "cannot read it (damaged file?): %s",
                  why);
        return NULL;
    }
    if (shape_out != NULL) {
        *shape_out = shape;
    }
    return g_steal_pointer(&data);
}

/* Describes a dataspace for messages: "a scalar", "an empty (null) dataspace", "shape [3, 2]". */
static char *space_text(hid_t space)
{
    H5S_class_t cls = H5Sget_simple_extent_type(space);
    if (cls == H5S_SCALAR)
        return g_strdup("a scalar");
    if (cls != H5S_SIMPLE)
        return g_strdup("an empty (null) dataspace");
    int ndim = H5Sget_simple_extent_ndims(space);
    hsize_t dims[H5S_MAX_RANK];
    if (ndim < 0 || ndim > H5S_MAX_RANK || H5Sget_simple_extent_dims(space, dims, NULL) < 0)
        return g_strdup("an unreadable dataspace");
    GString *out = g_string_new("shape [");
    for (int i = 0; i < ndim; i++)
        g_string_append_printf(out, "%s%" G_GUINT64_FORMAT, i ? ", " : "", (guint64) dims[i]);
    g_string_append_c(out, ']');
    return g_string_free(out, FALSE);
}

char *lmn_h5_read_string_dataset(hid_t loc, const char *name, const LmnH5Errors *errs,
                                 GError **error)
{
    g_return_val_if_fail(name != NULL && errs != NULL, NULL);
    g_auto(LmnH5Id) type = H5I_INVALID_HID;
    g_auto(LmnH5Id) ds =
        open_typed_dataset(loc, name, H5T_STRING, "one string was expected", &type, errs, error);
    if (ds < 0)
        return NULL;
    /* The dataspace decides how many strings a read writes: one buffer is sized for one. */
    g_auto(LmnH5Id) space = H5Dget_space(ds);
    if (space < 0 || H5Sget_simple_extent_type(space) != H5S_SCALAR) {
        g_autofree char *got = space >= 0 ? space_text(space) : g_strdup("no dataspace");
        set_error(error, errs, errs->code_shape, loc, name,
                  "holds strings of %s; one scalar string was expected", got);
        return NULL;
    }
    g_auto(LmnH5Id) mem_type = H5Tcopy(H5T_C_S1);
    H5Tset_cset(mem_type, H5Tget_cset(type));
    char *result = NULL;
    herr_t status;
    if (H5Tis_variable_str(type) > 0) {
        char *value = NULL;
        H5Tset_size(mem_type, H5T_VARIABLE);
        status = H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, &value);
        if (status >= 0) {
            result = g_strdup(value != NULL ? value : "");
            H5free_memory(value);
        }
    } else {
        size_t size = H5Tget_size(type);
        H5Tset_size(mem_type, size + 1);
        H5Tset_strpad(mem_type, H5T_STR_NULLTERM);
        result = g_try_malloc0(size + 1);
        status = result != NULL ? H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, result) : -1;
    }
    if (status < 0) {
        g_autofree char *why = result != NULL ? lmn_h5_error_text() : g_strdup("out of memory");
        g_free(result);
        set_error(error, errs, errs->code_open, loc, name, "cannot read it: %s", why);
        return NULL;
    }
    return result;
}

struct _LmnH5AtomicFile {
    char *target;
    char *temp;
    LmnH5Errors errs; /* errs.filename points at target */
    hid_t file;
    gboolean committed;
};

/* Copies @src's bytes into the open descriptor @fd; FALSE with errno set on failure. */
static gboolean copy_into_fd(const char *src, int fd)
{
    int in = g_open(src, O_RDONLY, 0);
    if (in < 0) {
        return FALSE;
    }
    char buf[1 << 16];
    for (;;) {
        ssize_t got = read(in, buf, sizeof buf);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            int saved = errno;
            close(in);
            errno = saved;
            return got == 0;
        }
        for (ssize_t done = 0; done < got;) {
            ssize_t put = write(fd, buf + done, (size_t) (got - done));
            if (put < 0 && errno == EINTR) {
                continue;
            }
            if (put < 0) {
                int saved = errno;
                close(in);
                errno = saved;
                return FALSE;
            }
            done += put;
        }
    }
}

LmnH5AtomicFile *lmn_h5_atomic_file_new(const char *target, gboolean keep_existing,
                                        const LmnH5Errors *errs, GError **error)
{
    g_return_val_if_fail(target != NULL && errs != NULL, NULL);
    lmn_h5_init();

    g_autoptr(LmnH5AtomicFile) af = g_new0(LmnH5AtomicFile, 1);
    af->target = g_strdup(target);
    af->errs = *errs;
    af->errs.filename = af->target;
    af->file = H5I_INVALID_HID;

    gboolean start_from_copy = keep_existing && g_file_test(target, G_FILE_TEST_EXISTS);
    if (start_from_copy) {
        /* Refuse to build on something that is not a readable HDF5 file. */
        hid_t probe = lmn_h5_file_open_read(target, errs, error);
        if (probe < 0) {
            return NULL;
        }
        lmn_h5_close(probe);
    }

    g_autofree char *dir = g_path_get_dirname(target);
    g_autofree char *base = g_path_get_basename(target);
    g_autofree char *name = g_strdup_printf(".%s.XXXXXX.tmp", base);
    af->temp = g_build_filename(dir, name, NULL);
    /* 0666 minus the umask, like any new file; a copy takes the original's mode below. */
    int fd = g_mkstemp_full(af->temp, O_RDWR | O_CLOEXEC, 0666);
    if (fd < 0) {
        int saved = errno;
        g_set_error(error, errs->domain, errs->code_write,
                    "%s: cannot create a temporary file in %s: %s", target, dir, g_strerror(saved));
        g_clear_pointer(&af->temp, g_free);
        return NULL;
    }
    if (start_from_copy) {
        struct stat st;
        if (!copy_into_fd(target, fd) || fstat(fd, &st) < 0) {
            int saved = errno;
            close(fd);
            g_set_error(error, errs->domain, errs->code_write,
                        "%s: cannot copy it to a temporary file: %s; free space on that disk "
                        "(or raise the file size limit) and try again; %s is as it was before",
                        target, g_strerror(saved), target);
            return NULL;
        }
        struct stat orig;
        if (g_stat(target, &orig) == 0) {
            fchmod(fd, orig.st_mode & 07777);
        }
    }
    if (close(fd) < 0) {
        int saved = errno;
        g_set_error(error, errs->domain, errs->code_write, "%s: cannot write %s: %s", target,
                    af->temp, g_strerror(saved));
        return NULL;
    }

    /* Strong close: committing must not leave the file open because a caller kept a handle. */
    g_auto(LmnH5Id) fapl = make_fapl(TRUE);
    /* The file is built in memory (a copy of an existing one is read into memory by the core
     * driver) and written out by commit() with checked write()s: when the disk is full, HDF5's
     * own failed writes leave a file it can neither close nor forget, which crashed the process
     * in HDF5's shutdown at exit.  Without a backing store nothing HDF5 does touches the disk. */
    if (H5Pset_fapl_core(fapl, 1 << 20, FALSE) < 0) {
        g_autofree char *why = lmn_h5_error_text();
        g_set_error(error, errs->domain, errs->code_write, "%s: cannot create it in memory: %s",
                    target, why);
        return NULL;
    }
    af->file = start_from_copy ? H5Fopen(af->temp, H5F_ACC_RDWR, fapl)
                               : H5Fcreate(af->temp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (af->file < 0) {
        g_autofree char *why = lmn_h5_error_text();
        g_set_error(error, errs->domain, errs->code_write, "%s: cannot create %s: %s", target,
                    af->temp, why);
        return NULL;
    }
    return g_steal_pointer(&af);
}

hid_t lmn_h5_atomic_file_peek_id(LmnH5AtomicFile *af)
{
    g_return_val_if_fail(af != NULL, H5I_INVALID_HID);
    return af->file;
}

const char *lmn_h5_atomic_file_peek_temp_path(LmnH5AtomicFile *af)
{
    g_return_val_if_fail(af != NULL, NULL);
    return af->temp;
}

/* fsync()s @path through a fresh read-only descriptor; FALSE with errno on failure. */
static gboolean fsync_path(const char *path, gboolean directory)
{
    int fd = g_open(path, O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0), 0);
    if (fd < 0) {
        return FALSE;
    }
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    /* Some file systems cannot fsync a directory; the rename is still atomic there. */
    if (rc < 0 && directory && (saved == EINVAL || saved == ENOTSUP)) {
        return TRUE;
    }
    errno = saved;
    return rc == 0;
}

/* Writes all of @buf to @path (truncated first); FALSE with errno on failure. */
static gboolean write_whole_file(const char *path, const void *buf, gsize len)
{
    int fd = g_open(path, O_WRONLY | O_TRUNC | O_CLOEXEC, 0);
    if (fd < 0) {
        return FALSE;
    }
    for (gsize done = 0; done < len;) {
        ssize_t put = write(fd, (const char *) buf + done, len - done);
        if (put < 0 && errno == EINTR) {
            continue;
        }
        if (put < 0) {
            int saved = errno;
            close(fd);
            errno = saved;
            return FALSE;
        }
        done += (gsize) put;
    }
    return close(fd) == 0;
}

/* The in-memory file's bytes, written to the temporary file.  The HDF5 file is closed either
 * way; only our own write() can meet a full disk. */
static gboolean write_image(LmnH5AtomicFile *af, GError **error)
{
    const LmnH5Errors *errs = &af->errs;
    herr_t flushed = H5Fflush(af->file, H5F_SCOPE_GLOBAL);
    ssize_t size = flushed < 0 ? -1 : H5Fget_file_image(af->file, NULL, 0);
    g_autofree char *image = size > 0 ? g_try_malloc((gsize) size) : NULL;
    gboolean got = image && H5Fget_file_image(af->file, image, (size_t) size) == size;
    g_autofree char *why = got ? NULL : lmn_h5_error_text();
    H5Fclose(af->file);
    af->file = H5I_INVALID_HID;
    if (!got) {
        g_set_error(error, errs->domain, errs->code_write, "%s: cannot assemble the file: %s",
                    af->target, size > 0 && !image ? "out of memory" : why);
        return FALSE;
    }
    if (!write_whole_file(af->temp, image, (gsize) size)) {
        int saved = errno;
        g_set_error(error, errs->domain, errs->code_write,
                    "%s: cannot write it: %s (writing %s, %" G_GSSIZE_FORMAT " bytes); free "
                    "space on that disk (or raise the file size limit) and try again; %s is "
                    "as it was before",
                    af->target, g_strerror(saved), af->temp, size, af->target);
        return FALSE;
    }
    return TRUE;
}

gboolean lmn_h5_atomic_file_commit(LmnH5AtomicFile *af, GError **error)
{
    g_return_val_if_fail(af != NULL && !af->committed && af->file >= 0, FALSE);
    const LmnH5Errors *errs = &af->errs;

    if (!write_image(af, error)) {
        return FALSE;
    }
    if (!fsync_path(af->temp, FALSE)) {
        int saved = errno;
        g_set_error(error, errs->domain, errs->code_write, "%s: cannot sync %s to disk: %s",
                    af->target, af->temp, g_strerror(saved));
        return FALSE;
    }
    if (g_rename(af->temp, af->target) < 0) {
        int saved = errno;
        g_set_error(error, errs->domain, errs->code_write, "%s: cannot rename %s over it: %s",
                    af->target, af->temp, g_strerror(saved));
        return FALSE;
    }
    af->committed = TRUE;
    g_autofree char *dir = g_path_get_dirname(af->target);
    if (!fsync_path(dir, TRUE)) {
        int saved = errno;
        g_set_error(error, errs->domain, errs->code_write,
                    "%s: written, but syncing its directory %s failed: %s", af->target, dir,
                    g_strerror(saved));
        return FALSE;
    }
    return TRUE;
}

void lmn_h5_atomic_file_free(LmnH5AtomicFile *af)
{
    if (af == NULL) {
        return;
    }
    lmn_h5_close(af->file);
    if (!af->committed && af->temp != NULL) {
        g_unlink(af->temp);
    }
    g_free(af->temp);
    g_free(af->target);
    g_free(af);
}
