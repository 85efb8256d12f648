/* Lamina — tensors: shapes, backend-owned storage, views and explicit host access. */
#include "backend-private.h"

#include <lamina/error.h>
#include <lamina/tensor.h>

#include <stdarg.h>
#include <string.h>

gsize lmn_dtype_size(LmnDType dtype)
{
    switch (dtype) {
    case LMN_DTYPE_F32:
        return 4;
    case LMN_DTYPE_I32:
        return 4;
    }
    g_return_val_if_reached(0);
}

const char *lmn_dtype_name(LmnDType dtype)
{
    switch (dtype) {
    case LMN_DTYPE_F32:
        return "f32";
    case LMN_DTYPE_I32:
        return "i32";
    }
    g_return_val_if_reached("unknown");
}

LmnShape lmn_shape_make(guint ndim, ...)
{
    LmnShape shape = {0};
    g_return_val_if_fail(ndim <= LMN_MAX_DIMS, shape);
    va_list ap;
    va_start(ap, ndim);
    for (guint i = 0; i < ndim; i++)
        shape.dims[i] = va_arg(ap, gint64);
    va_end(ap);
    shape.ndim = ndim;
    return shape;
}

gboolean lmn_shape_numel_checked(const LmnShape *shape, gint64 *numel_out)
{
    g_return_val_if_fail(shape != NULL && shape->ndim <= LMN_MAX_DIMS, FALSE);
    gint64 n = 1;
    for (guint i = 0; i < shape->ndim; i++) {
        if (shape->dims[i] < 0 || __builtin_mul_overflow(n, shape->dims[i], &n))
            return FALSE;
    }
    if (numel_out != NULL)
        *numel_out = n;
    return TRUE;
}

gboolean lmn_shape_nbytes_checked(const LmnShape *shape, LmnDType dtype, gsize *nbytes_out)
{
    gint64 numel = 0;
    if (!lmn_shape_numel_checked(shape, &numel))
        return FALSE;
    guint64 esize = lmn_dtype_size(dtype);
    if (esize == 0 || (guint64) numel > LMN_TENSOR_MAX_BYTES / esize)
        return FALSE;
    if (nbytes_out != NULL)
        *nbytes_out = (gsize) ((guint64) numel * esize);
    return TRUE;
}

gint64 lmn_shape_numel(const LmnShape *shape)
{
    g_return_val_if_fail(shape != NULL, 0);
    /* Saturate, never wrap: a wrapped count can equal a plausible one (598407739 x 11001563 x
     * 22416 is 784 modulo 2^64), which then sizes a buffer far smaller than the shape. */
    gint64 n = 1;
    for (guint i = 0; i < shape->ndim; i++) {
        if (__builtin_mul_overflow(n, shape->dims[i], &n))
            return G_MAXINT64;
    }
    return n;
}

gboolean lmn_shape_equal(const LmnShape *a, const LmnShape *b)
{
    g_return_val_if_fail(a != NULL && b != NULL, FALSE);
    if (a->ndim != b->ndim)
        return FALSE;
    for (guint i = 0; i < a->ndim; i++)
        if (a->dims[i] != b->dims[i])
            return FALSE;
    return TRUE;
}

LmnShape lmn_shape_prepend(const LmnShape *shape, gint64 dim)
{
    LmnShape out = {0};
    g_return_val_if_fail(shape != NULL, out);
    guint keep = MIN(shape->ndim, LMN_MAX_DIMS - 1);
    out.ndim = keep + 1;
    out.dims[0] = dim;
    for (guint i = 0; i < keep; i++)
        out.dims[i + 1] = shape->dims[i];
    return out;
}

char *lmn_shape_to_string(const LmnShape *shape)
{
    g_return_val_if_fail(shape != NULL, NULL);
    GString *s = g_string_new("[");
    for (guint i = 0; i < shape->ndim; i++)
        g_string_append_printf(s, i == 0 ? "%" G_GINT64_FORMAT : ", %" G_GINT64_FORMAT,
                               shape->dims[i]);
    g_string_append_c(s, ']');
    return g_string_free(s, FALSE);
}

LmnTensor *lmn_tensor_new(LmnBackend *backend, LmnDType dtype, const LmnShape *shape,
                          GError **error)
{
    g_return_val_if_fail(backend != NULL, NULL);
    g_return_val_if_fail(shape != NULL && shape->ndim <= LMN_MAX_DIMS, NULL);
    g_return_val_if_fail(dtype == LMN_DTYPE_F32 || dtype == LMN_DTYPE_I32, NULL);
    g_return_val_if_fail(error == NULL || *error == NULL, NULL);

    for (guint i = 0; i < shape->ndim; i++)
        g_return_val_if_fail(shape->dims[i] >= 0, NULL);
    gsize nbytes = 0;
    if (!lmn_shape_nbytes_checked(shape, dtype, &nbytes)) {
        g_autofree char *s = lmn_shape_to_string(shape);
        g_set_error(
            error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_OUT_OF_MEMORY,
            "a %s tensor of shape %s does not fit in the address space (at most %" G_GUINT64_FORMAT
            " bytes per tensor)",
            lmn_dtype_name(dtype), s, LMN_TENSOR_MAX_BYTES);
        return NULL;
    }

    GError *local_error = NULL;
    gpointer buffer = backend->vtable->alloc(backend->context, nbytes, &local_error);
    if (buffer == NULL) {
        if (local_error == NULL)
            g_set_error(&local_error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_OUT_OF_MEMORY,
                        "out of memory");
        g_autofree char *s = lmn_shape_to_string(shape);
        g_prefix_error(&local_error,
                       "Backend '%s': allocating a %s tensor of shape %s (%" G_GSIZE_FORMAT
                       " bytes): ",
                       backend->name, lmn_dtype_name(dtype), s, nbytes);
        g_propagate_error(error, local_error);
        return NULL;
    }

    LmnTensor *t = g_new0(LmnTensor, 1);
    t->backend = backend;
    t->dtype = dtype;
    t->shape = *shape;
    t->buffer = buffer;
    t->offset = 0;
    t->ref_count = 1;
    t->base = NULL;
    return t;
}

LmnTensor *lmn_tensor_new_view(LmnTensor *base, gint64 elem_offset, const LmnShape *shape)
{
    g_return_val_if_fail(base != NULL, NULL);
    g_return_val_if_fail(shape != NULL && shape->ndim <= LMN_MAX_DIMS, NULL);
    g_return_val_if_fail(elem_offset >= 0, NULL);
    for (guint i = 0; i < shape->ndim; i++)
        g_return_val_if_fail(shape->dims[i] >= 0, NULL);
    /* Checked: an offset plus a count that wraps would make a view reach past its base. */
    gint64 numel = 0, end = 0;
    g_return_val_if_fail(lmn_shape_numel_checked(shape, &numel), NULL);
    g_return_val_if_fail(!__builtin_add_overflow(elem_offset, numel, &end), NULL);
    g_return_val_if_fail(end <= lmn_tensor_numel(base), NULL);

    /* Views of views point at the owner, so chains never grow and the owner frees the memory. */
    LmnTensor *owner = base->base != NULL ? base->base : base;
    LmnTensor *t = g_new0(LmnTensor, 1);
    t->backend = base->backend;
    t->dtype = base->dtype;
    t->shape = *shape;
    t->buffer = base->buffer;
    t->offset = base->offset + (gsize) elem_offset * lmn_dtype_size(base->dtype);
    t->ref_count = 1;
    t->base = lmn_tensor_ref(owner);
    return t;
}

LmnTensor *lmn_tensor_ref(LmnTensor *tensor)
{
    g_return_val_if_fail(tensor != NULL, NULL);
    g_atomic_int_inc(&tensor->ref_count);
    return tensor;
}

void lmn_tensor_unref(LmnTensor *tensor)
{
    if (tensor == NULL)
        return;
    if (!g_atomic_int_dec_and_test(&tensor->ref_count))
        return;
    if (tensor->base != NULL) {
        lmn_tensor_unref(tensor->base);
    } else {
        LmnBackend *backend = tensor->backend;
        backend->vtable->free(backend->context, tensor->buffer);
    }
    g_free(tensor);
}

gint64 lmn_tensor_numel(const LmnTensor *tensor)
{
    g_return_val_if_fail(tensor != NULL, 0);
    return lmn_shape_numel(&tensor->shape);
}

gsize lmn_tensor_nbytes(const LmnTensor *tensor)
{
    g_return_val_if_fail(tensor != NULL, 0);
    return (gsize) lmn_shape_numel(&tensor->shape) * lmn_dtype_size(tensor->dtype);
}

gboolean lmn_tensor_write(LmnTensor *tensor, const void *src, gsize nbytes, GError **error)
{
    g_return_val_if_fail(tensor != NULL, FALSE);
    g_return_val_if_fail(src != NULL || nbytes == 0, FALSE);
    g_return_val_if_fail(nbytes <= lmn_tensor_nbytes(tensor), FALSE);
    g_return_val_if_fail(error == NULL || *error == NULL, FALSE);

    LmnBackend *backend = tensor->backend;
    if (nbytes == 0)
        return TRUE;
    if (backend->has_host_pointer) {
        char *host = backend->vtable->host_pointer(backend->context, tensor->buffer);
        if (host != NULL) {
            /* Pending work may still read the old contents: wait before overwriting them. */
            if (!lmn_backend_synchronize(backend, error))
                return FALSE;
            memcpy(host + tensor->offset, src, nbytes);
            return TRUE;
        }
    }
    GError *local_error = NULL;
    if (!backend->vtable->write(backend->context, tensor->buffer, tensor->offset, src, nbytes,
                                &local_error)) {
        if (local_error == NULL)
            g_set_error(&local_error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                        "write failed without saying why");
        g_prefix_error(&local_error,
                       "Backend '%s': writing %" G_GSIZE_FORMAT " bytes: ", backend->name, nbytes);
        g_propagate_error(error, local_error);
        return FALSE;
    }
    return TRUE;
}

gboolean lmn_tensor_read(LmnTensor *tensor, void *dst, gsize nbytes, GError **error)
{
    g_return_val_if_fail(tensor != NULL, FALSE);
    g_return_val_if_fail(dst != NULL || nbytes == 0, FALSE);
    g_return_val_if_fail(nbytes <= lmn_tensor_nbytes(tensor), FALSE);
    g_return_val_if_fail(error == NULL || *error == NULL, FALSE);

    LmnBackend *backend = tensor->backend;
    /* A read is where deferred failures surface, so it always synchronises first. */
    if (!lmn_backend_synchronize(backend, error))
        return FALSE;
    if (nbytes == 0)
        return TRUE;
    if (backend->has_host_pointer) {
        const char *host = backend->vtable->host_pointer(backend->context, tensor->buffer);
        if (host != NULL) {
            memcpy(dst, host + tensor->offset, nbytes);
            return TRUE;
        }
    }
    GError *local_error = NULL;
    if (!backend->vtable->read(backend->context, tensor->buffer, tensor->offset, dst, nbytes,
                               &local_error)) {
        if (local_error == NULL)
            g_set_error(&local_error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                        "read failed without saying why");
        g_prefix_error(&local_error,
                       "Backend '%s': reading %" G_GSIZE_FORMAT " bytes: ", backend->name, nbytes);
        g_propagate_error(error, local_error);
        return FALSE;
    }
    return TRUE;
}
