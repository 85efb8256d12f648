/* Lamina — private helpers over the HDF5 C API, shared by datasets, converters and checkpoints.
 *
 * HDF5 reports failures by printing its error stack to stderr and returning a negative value.
 * Lamina turns the printing off (lmn_h5_init) and instead puts the stack's innermost message into
 * a GError whose domain and codes the caller chooses (LmnH5Errors), prefixed with the file name
 * and the object path, e.g. "fashion.h5:/train/x: ...".
 *
 * Every hid_t these helpers return is owned by the caller; g_auto(LmnH5Id) closes any kind of
 * handle (file, group, dataset, attribute, dataspace, datatype, property list) when it goes out
 * of scope, so no path leaks one.
 */
#pragma once

#include <hdf5.h>

#include <lamina/error.h>
#include <lamina/tensor.h>

G_BEGIN_DECLS

/**
 * LmnH5Errors:
 * Where errors go and how they are labelled: the GError domain, the code for each class of
 * problem, and the file name shown in messages (borrowed; it must outlive the struct's use).
 */
typedef struct {
    const char *filename; /* as the user named it; shown at the start of every message */
    GQuark domain;
    gint code_open;    /* missing, unreadable, not HDF5, truncated or damaged file */
    gint code_missing; /* an absent group, dataset or attribute */
    gint code_shape;   /* a dataset or attribute of the wrong shape */
    gint code_dtype;   /* an element type that cannot be converted to the requested one */
    gint code_write;   /* anything failing while creating or writing */
} LmnH5Errors;

/** lmn_h5_errors_data: Returns: the LMN_DATA_ERROR mapping for @filename (borrowed). */
LmnH5Errors lmn_h5_errors_data(const char *filename);
/**
 * lmn_h5_errors_checkpoint: Returns: the LMN_CHECKPOINT_ERROR mapping for @filename: missing
 *   objects and wrong types are FORMAT, wrong shapes MISMATCH.
 */
LmnH5Errors lmn_h5_errors_checkpoint(const char *filename);

/**
 * LmnH5Id: an hid_t that g_auto() closes with lmn_h5_close().  Initialise it with
 * H5I_INVALID_HID or a handle: `g_auto(LmnH5Id) ds = H5Dopen2(...);`
 */
typedef hid_t LmnH5Id;
/**
 * lmn_h5_close:
 * Closes @id with the close function of its kind (H5Fclose, H5Gclose, H5Dclose, H5Aclose,
 * H5Sclose, H5Tclose, H5Pclose); ignores negative or already-invalid ids, so it is safe on every
 * path.
 */
void lmn_h5_close(hid_t id);
G_DEFINE_AUTO_CLEANUP_FREE_FUNC(LmnH5Id, lmn_h5_close, H5I_INVALID_HID)

/**
 * lmn_h5_init:
 * Turns off HDF5's automatic error printing (H5Eset_auto2(H5E_DEFAULT, NULL, NULL)) for the
 * calling thread; the library is threadsafe, so the setting is per thread.  Cheap after the first
 * call in a thread: every helper here calls it, and so should code that calls HDF5 directly
 * before any helper has run in its thread.
 */
void lmn_h5_init(void);

/**
 * lmn_h5_error_text:
 * Takes the innermost (most specific) message of the calling thread's HDF5 error stack, e.g.
 * "truncated file: eof = 1024, sblock->base_addr = 0, stored_eof = 4096", and clears the stack.
 * Returns: (transfer full): the message, or "unknown HDF5 error" when the stack is empty
 */
char *lmn_h5_error_text(void);

/**
 * lmn_h5_path_join:
 * Joins two HDF5 paths with exactly one '/' between them ("/" + "x" = "/x",
 * "/train" + "x" = "/train/x").
 * Returns: (transfer full): the joined path
 */
char *lmn_h5_path_join(const char *parent, const char *child);

/**
 * lmn_h5_object_path:
 * @loc: (nullable): a file, group or dataset id, or H5I_INVALID_HID for the root
 * @name: (nullable): a path relative to @loc, or NULL for @loc itself
 * Returns: (transfer full): the absolute path in the file, e.g. "/train/x", for messages
 */
char *lmn_h5_object_path(hid_t loc, const char *name);

/**
 * lmn_h5_type_name:
 * Describes a datatype for messages: "uint8", "int16", "float32", "float64", "string",
 * "compound", "enum", ...
 * Returns: (transfer full): the name
 */
char *lmn_h5_type_name(hid_t type);

/**
 * lmn_h5_file_open_read:
 * @path: the file
 * Opens @path read-only, telling apart (all with @errs->code_open): no such file, a directory, an
 * unreadable file (the OS error), not an HDF5 file (H5Fis_hdf5), and a truncated or damaged HDF5
 * file (with HDF5's own message).
 * Returns: the file id, or H5I_INVALID_HID with @error
 */
hid_t lmn_h5_file_open_read(const char *path, const LmnH5Errors *errs, GError **error);

/**
 * lmn_h5_path_exists:
 * Returns: whether every component of @path (relative to @loc, or absolute) exists as a link;
 *   FALSE rather than an error for a missing intermediate group
 */
gboolean lmn_h5_path_exists(hid_t loc, const char *path);

/**
 * lmn_h5_group_open:
 * Opens the existing group @path under @loc.
 * Returns: the group id, or H5I_INVALID_HID with @errs->code_missing when it does not exist (or
 *   @errs->code_shape when @path is not a group)
 */
hid_t lmn_h5_group_open(hid_t loc, const char *path, const LmnH5Errors *errs, GError **error);

/**
 * lmn_h5_group_create:
 * Opens group @path under @loc, creating it and any missing parents ("a/b/c" like mkdir -p).
 * Returns: the group id, or H5I_INVALID_HID with @errs->code_write
 */
hid_t lmn_h5_group_create(hid_t loc, const char *path, const LmnH5Errors *errs, GError **error);

/** lmn_h5_attr_exists: Returns: whether @obj has an attribute @name. */
gboolean lmn_h5_attr_exists(hid_t obj, const char *name);

/**
 * lmn_h5_attr_write_string:
 * Writes (or replaces) a scalar variable-length UTF-8 string attribute, which h5py reads as str.
 * Returns: FALSE with @errs->code_write
 */
gboolean lmn_h5_attr_write_string(hid_t obj, const char *name, const char *value,
                                  const LmnH5Errors *errs, GError **error);
/**
 * lmn_h5_attr_read_string:
 * Reads a scalar string attribute, fixed or variable length.
 * Returns: (transfer full): the string, or NULL with @errs->code_missing / code_dtype / code_shape
 */
char *lmn_h5_attr_read_string(hid_t obj, const char *name, const LmnH5Errors *errs, GError **error);

/**
 * lmn_h5_attr_write_strings:
 * Writes (or replaces) a one-dimensional attribute of variable-length UTF-8 strings, which h5py
 * reads as an array of str (class names).  @values holds at least one string.
 * Returns: FALSE with @errs->code_write
 */
gboolean lmn_h5_attr_write_strings(hid_t obj, const char *name, const char *const *values,
                                   const LmnH5Errors *errs, GError **error);
/**
 * lmn_h5_attr_read_strings:
 * Reads a string attribute of any shape (fixed or variable length; a scalar is one string),
 * flattened.
 * Returns: (transfer full): a NULL-terminated array, or NULL with @errs->code_missing /
 *   code_dtype
 */
char **lmn_h5_attr_read_strings(hid_t obj, const char *name, const LmnH5Errors *errs,
                                GError **error);
/**
 * lmn_h5_write_strings_dataset:
 * Creates dataset @name under @loc as a one-dimensional array of the @n variable-length UTF-8
 * strings @values (@n may be 0).  An existing object of that name is an error.
 * Returns: FALSE with @errs->code_write
 */
gboolean lmn_h5_write_strings_dataset(hid_t loc, const char *name, const char *const *values,
                                      gsize n, const LmnH5Errors *errs, GError **error);

/** lmn_h5_attr_write_double: writes (or replaces) a scalar float64 attribute. Returns: FALSE with
 *  @errs->code_write */
gboolean lmn_h5_attr_write_double(hid_t obj, const char *name, double value,
                                  const LmnH5Errors *errs, GError **error);
/**
 * lmn_h5_attr_read_double:
 * Reads a numeric attribute holding exactly one value (scalar or one-element array; integer or
 * float) as a double.
 * Returns: FALSE with @errs->code_missing / code_dtype / code_shape
 */
gboolean lmn_h5_attr_read_double(hid_t obj, const char *name, double *value_out,
                                 const LmnH5Errors *errs, GError **error);

/** lmn_h5_attr_write_int64: writes (or replaces) a scalar int64 attribute. Returns: FALSE with
 *  @errs->code_write */
gboolean lmn_h5_attr_write_int64(hid_t obj, const char *name, gint64 value, const LmnH5Errors *errs,
                                 GError **error);
/**
 * lmn_h5_attr_read_int64:
 * Reads an integer attribute holding exactly one value (a uint64 above G_MAXINT64 is a dtype
 * error, floats are refused so nothing is rounded silently).
 * Returns: FALSE with @errs->code_missing / code_dtype / code_shape
 */
gboolean lmn_h5_attr_read_int64(hid_t obj, const char *name, gint64 *value_out,
                                const LmnH5Errors *errs, GError **error);

/**
 * lmn_h5_attr_write_doubles:
 * Writes (or replaces) a one-dimensional float64 attribute of @n values (@n > 0).
 * Returns: FALSE with @errs->code_write
 */
gboolean lmn_h5_attr_write_doubles(hid_t obj, const char *name, const double *values, gsize n,
                                   const LmnH5Errors *errs, GError **error);
/**
 * lmn_h5_attr_read_doubles:
 * Reads a numeric attribute of any shape (a scalar is one value) flattened to doubles.
 * Returns: (transfer full): @n_out values, or NULL with @errs->code_missing / code_dtype
 */
double *lmn_h5_attr_read_doubles(hid_t obj, const char *name, gsize *n_out, const LmnH5Errors *errs,
                                 GError **error);

/**
 * lmn_h5_write_float_dataset:
 * Creates dataset @name under @loc (missing parent groups are created) as float32 of @shape
 * (ndim 0 = scalar) and writes @data, contiguous and uncompressed.  An existing object of that
 * name is an error.
 * Returns: FALSE with @errs->code_write
 */
gboolean lmn_h5_write_float_dataset(hid_t loc, const char *name, const LmnShape *shape,
                                    const float *data, const LmnH5Errors *errs, GError **error);

/**
 * lmn_h5_read_float_dataset:
 * @expected: (nullable): the shape the dataset must have
 * @shape_out: (out) (optional): the dataset's shape
 * Reads a whole floating-point dataset (float32, float64, ...) as float32.
 * Returns: (transfer full): the values (g_free), or NULL with @errs->code_missing (absent),
 *   code_dtype (not floating point), or code_shape (not @expected, over LMN_MAX_DIMS dims, or
 *   an extent no tensor can hold, checked before anything is allocated)
 */
float *lmn_h5_read_float_dataset(hid_t loc, const char *name, const LmnShape *expected,
                                 LmnShape *shape_out, const LmnH5Errors *errs, GError **error);

/**
 * lmn_h5_read_string_dataset:
 * Reads dataset @name under @loc holding one string: a scalar dataspace of a string type, fixed
 * or variable length.  An array of strings (as h5py writes for a list) is refused before anything
 * is read, since a read into a buffer for one string would overrun it.
 * Returns: (transfer full): the string, or NULL with @errs->code_missing (absent or a group),
 *   code_dtype (not a string), code_shape (not scalar), or code_open (unreadable)
 */
char *lmn_h5_read_string_dataset(hid_t loc, const char *name, const LmnH5Errors *errs,
                                 GError **error);

/**
 * LmnH5AtomicFile:
 * A file written under a temporary name in the target's directory and renamed over the target
 * only when everything succeeded, so readers see the old file or the complete new one, never a
 * partial one; freeing it without a successful commit deletes the temporary file.
 */
typedef struct _LmnH5AtomicFile LmnH5AtomicFile;

/**
 * lmn_h5_atomic_file_new:
 * @target: the file to (re)place
 * @keep_existing: when @target exists, start from a byte copy of it (so its other contents are
 *   kept; it must then be a readable HDF5 file) instead of an empty file
 * Creates the temporary file ".NAME.XXXXXX.tmp" next to @target (same file system, so the rename
 * is atomic) and opens it with HDF5 for writing.  The file is built in memory (HDF5's core
 * driver; with @keep_existing the copy is read into memory) and written to the temporary file at
 * commit by checked write()s, so a full disk is an errno message and leaves no half-closed HDF5
 * file.  The whole file must therefore fit in memory: checkpoints and converted splits do (the
 * converters hold the split in memory anyway).
 * Returns: (transfer full): the writer, or NULL with @errs->code_write (or code_open when the
 *   existing target cannot be read)
 */
LmnH5AtomicFile *lmn_h5_atomic_file_new(const char *target, gboolean keep_existing,
                                        const LmnH5Errors *errs, GError **error);
/** lmn_h5_atomic_file_peek_id: Returns: the open HDF5 file id to write into (borrowed). */
hid_t lmn_h5_atomic_file_peek_id(LmnH5AtomicFile *af);
/** lmn_h5_atomic_file_peek_temp_path: Returns: (transfer none): the temporary file's path. */
const char *lmn_h5_atomic_file_peek_temp_path(LmnH5AtomicFile *af);
/**
 * lmn_h5_atomic_file_commit:
 * Flushes and closes the HDF5 file (closing any handle still open in it), fsyncs the temporary
 * file, renames it over the target and fsyncs the directory.  On failure the temporary file is
 * removed and the target is untouched.  Call at most once.
 * Returns: FALSE with @errs->code_write naming the target and the step that failed
 */
gboolean lmn_h5_atomic_file_commit(LmnH5AtomicFile *af, GError **error);
/** lmn_h5_atomic_file_free: closes and deletes the temporary file unless committed; frees @af. */
void lmn_h5_atomic_file_free(LmnH5AtomicFile *af);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LmnH5AtomicFile, lmn_h5_atomic_file_free)

G_END_DECLS
