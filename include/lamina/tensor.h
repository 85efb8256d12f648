/* Lamina — tensors.
 *
 * A tensor is a dtype, a row-major shape of up to LMN_MAX_DIMS dimensions, and a range of a
 * backend-owned buffer.  Layers never dereference tensor memory: they pass tensors to ops
 * (ops.h).  Host access is explicit and rare (lmn_tensor_read / lmn_tensor_write) because on a
 * device backend it means a transfer and a synchronisation.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define LMN_MAX_DIMS 5

/** LmnDType: element type.  Stored in files: append only, explicit values. */
typedef enum {
    LMN_DTYPE_F32 = 0,
    LMN_DTYPE_I32 = 1,
} LmnDType;

/** LmnShape: a row-major shape; ndim 0 is a scalar (one element). */
typedef struct {
    guint ndim;
    gint64 dims[LMN_MAX_DIMS];
} LmnShape;

typedef struct _LmnBackend LmnBackend;
typedef struct _LmnTensor LmnTensor;

/**
 * LmnTensor:
 * The fields are public for backends, which need buffer and offset to run ops.  Layers and
 * optimizers treat them as read-only.
 */
struct _LmnTensor {
    LmnBackend *backend; /* owner of the memory (borrowed: a backend outlives its tensors) */
    LmnDType dtype;
    LmnShape shape;
    gpointer buffer;     /* backend handle of the allocation */
    gsize offset;        /* byte offset of element 0 inside buffer */
    gint ref_count;
    LmnTensor *base;     /* for views: the tensor owning the buffer (holds a reference) */
    gpointer reserved[2];
};

/** lmn_dtype_size: Returns: bytes per element of @dtype. */
gsize lmn_dtype_size(LmnDType dtype);
/** lmn_dtype_name: Returns: (transfer none): "f32", "i32". */
const char *lmn_dtype_name(LmnDType dtype);

/** lmn_shape_make: Returns: a shape of @ndim dims taken from the variadic gint64 arguments. */
LmnShape lmn_shape_make(guint ndim, ...);
/**
 * LMN_TENSOR_MAX_BYTES:
 * The most bytes one tensor may hold.  Byte counts and offsets inside a tensor must fit gsize
 * and ptrdiff_t (kernels index with pointer differences) and its element count gint64, so the
 * limit is the largest gssize; lmn_tensor_new refuses anything larger before asking a backend.
 */
#define LMN_TENSOR_MAX_BYTES ((guint64) G_MAXSSIZE)

/**
 * lmn_shape_numel:
 * Returns: the element count (1 for a scalar).  A count that does not fit gint64 saturates to
 *   G_MAXINT64 instead of wrapping, so no overflowing shape can pass for a small one; where a
 *   shape comes from input (a config, a file) use lmn_shape_numel_checked and report the error.
 */
gint64 lmn_shape_numel(const LmnShape *shape);
/**
 * lmn_shape_numel_checked:
 * @numel_out: (out) (optional): the element count (1 for a scalar), set only on success
 * Multiplies the dims with overflow checks.
 * Returns: FALSE when a dim is negative or the count does not fit gint64
 */
gboolean lmn_shape_numel_checked(const LmnShape *shape, gint64 *numel_out);
/**
 * lmn_shape_nbytes_checked:
 * @nbytes_out: (out) (optional): the size in bytes of a @dtype tensor of @shape, set only on
 *   success
 * Returns: FALSE when lmn_shape_numel_checked fails or the size exceeds LMN_TENSOR_MAX_BYTES,
 *   i.e. when no tensor of that shape can exist
 */
gboolean lmn_shape_nbytes_checked(const LmnShape *shape, LmnDType dtype, gsize *nbytes_out);
/** lmn_shape_equal: Returns: whether both shapes have the same dims. */
gboolean lmn_shape_equal(const LmnShape *a, const LmnShape *b);
/**
 * lmn_shape_prepend: Returns: @shape with @dim added in front (the batch dimension), or with
 *   ndim unchanged-and-clamped if @shape already has LMN_MAX_DIMS dims (callers check first).
 */
LmnShape lmn_shape_prepend(const LmnShape *shape, gint64 dim);
/** lmn_shape_to_string: Returns: (transfer full): "[128, 1, 28, 28]". */
char *lmn_shape_to_string(const LmnShape *shape);

/**
 * lmn_tensor_new:
 * Allocates an uninitialised tensor on @backend.
 * Returns: (transfer full): the tensor, or NULL with LMN_BACKEND_ERROR_OUT_OF_MEMORY (also when
 *   the tensor would exceed LMN_TENSOR_MAX_BYTES)
 */
LmnTensor *lmn_tensor_new(LmnBackend *backend, LmnDType dtype, const LmnShape *shape,
                          GError **error);
/**
 * lmn_tensor_new_view:
 * A tensor sharing @base's memory from element @elem_offset with another shape, e.g. a flatten
 * or a batch slice.  The view holds a reference on @base.
 * Returns: (transfer full): the view
 */
LmnTensor *lmn_tensor_new_view(LmnTensor *base, gint64 elem_offset, const LmnShape *shape);
/** lmn_tensor_ref: Returns: @tensor with one more reference. */
LmnTensor *lmn_tensor_ref(LmnTensor *tensor);
/** lmn_tensor_unref: drops a reference; the memory returns to the backend on the last one. */
void lmn_tensor_unref(LmnTensor *tensor);
/** lmn_tensor_numel: Returns: the element count. */
gint64 lmn_tensor_numel(const LmnTensor *tensor);
/** lmn_tensor_nbytes: Returns: the size in bytes. */
gsize lmn_tensor_nbytes(const LmnTensor *tensor);

/**
 * lmn_tensor_write:
 * Copies @nbytes from host memory @src into the tensor, starting at its first element.
 * Returns: FALSE with @error when the backend fails (device lost, ...)
 */
gboolean lmn_tensor_write(LmnTensor *tensor, const void *src, gsize nbytes, GError **error);
/**
 * lmn_tensor_read:
 * Waits for pending work on the tensor's backend, then copies @nbytes into @dst.
 * Returns: FALSE with @error on a backend failure, including one deferred from an earlier op.
 */
gboolean lmn_tensor_read(LmnTensor *tensor, void *dst, gsize nbytes, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(LmnTensor, lmn_tensor_unref)

G_END_DECLS
