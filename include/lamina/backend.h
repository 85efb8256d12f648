/* Lamina — compute backends.
 *
 * A backend plugin implements LmnBackendVTable: memory (alloc/free/read/write), synchronisation
 * and the op set of ops.h.  The core wraps an opened backend in an LmnBackend, which holds the
 * first deferred error.  Backend authors: every op member is required except where marked
 * optional; the core refuses a backend whose vtable lacks a required op.
 */
#pragma once

#include <lamina/ops.h>
#include <lamina/params.h>

G_BEGIN_DECLS

/** LmnDeviceType: kinds of device, in the order `auto` prefers them. */
typedef enum {
    LMN_DEVICE_DISCRETE_GPU = 0,
    LMN_DEVICE_INTEGRATED_GPU = 1,
    LMN_DEVICE_VIRTUAL_GPU = 2,
    LMN_DEVICE_CPU = 3, /* a CPU, or a software rasteriser such as lavapipe */
    LMN_DEVICE_OTHER = 4,
} LmnDeviceType;

/** LmnDeviceInfo: one device a backend can open, as `lamina devices` lists it. */
typedef struct {
    guint32 struct_size;
    char *name;
    char *driver;
    LmnDeviceType type;
    guint64 memory_bytes;
    char *details; /* free text: key limits */
    gpointer reserved[4];
} LmnDeviceInfo;

/**
 * LmnBackendVTable:
 * All functions receive the context returned by @open.
 */
typedef struct {
    guint32 struct_size;
    /* @device: NULL or the user's device selector (an index or a name substring) */
    gpointer (*open)(const LmnParams *params, const char *device, GError **error);
    void (*close)(gpointer ctx);
    /* Returns a short description of the opened device, e.g. "cpu (2 threads, OpenBLAS)" */
    const char *(*describe)(gpointer ctx);
    gpointer (*alloc)(gpointer ctx, gsize nbytes, GError **error);
    void (*free)(gpointer ctx, gpointer buffer);
    gboolean (*write)(gpointer ctx, gpointer buffer, gsize offset, const void *src, gsize nbytes,
                      GError **error);
    /* Waits for pending work touching the buffer before copying. */
    gboolean (*read)(gpointer ctx, gpointer buffer, gsize offset, void *dst, gsize nbytes,
                     GError **error);
    /* Waits for all recorded work; reports the first failure since the last call. */
    gboolean (*synchronize)(gpointer ctx, GError **error);

    void (*fill)(gpointer ctx, LmnTensor *t, float value);
    void (*copy)(gpointer ctx, LmnTensor *dst, const LmnTensor *src);
    void (*gemm)(gpointer ctx, const LmnGemm *g);
    void (*bias_add)(gpointer ctx, LmnTensor *y, const LmnTensor *bias, gint64 outer,
                     gint64 channels, gint64 inner);
    void (*bias_grad)(gpointer ctx, LmnTensor *db, const LmnTensor *dy, gint64 outer,
                      gint64 channels, gint64 inner, float beta);
    void (*unary)(gpointer ctx, LmnUnaryOp op, const LmnTensor *x, LmnTensor *y, float alpha);
    void (*unary_backward)(gpointer ctx, LmnUnaryOp op, const LmnTensor *x, const LmnTensor *y,
                           const LmnTensor *dy, LmnTensor *dx, float alpha);
    void (*binary)(gpointer ctx, LmnBinaryOp op, const LmnTensor *a, const LmnTensor *b,
                   LmnTensor *out);
    void (*axpby)(gpointer ctx, float alpha, const LmnTensor *x, float beta, LmnTensor *y);
    void (*reduce)(gpointer ctx, LmnReduceOp op, const LmnTensor *x, LmnTensor *out, float alpha,
                   float beta);
    void (*softmax_xent)(gpointer ctx, const LmnTensor *logits, const LmnTensor *labels,
                         LmnTensor *probs, LmnTensor *loss, float smoothing);
    void (*softmax_xent_backward)(gpointer ctx, const LmnTensor *probs, const LmnTensor *labels,
                                  LmnTensor *dx, float scale, float smoothing);
    void (*count_correct)(gpointer ctx, const LmnTensor *logits, const LmnTensor *labels,
                          LmnTensor *out);
    void (*kernel)(gpointer ctx, const LmnKernelDesc *kernel, gsize n,
                   LmnTensor *const *buffers, const float *scalars);

    /* (optional) host address of a buffer when the backend's memory is host memory; lets the
     * core skip staging copies.  NULL or a NULL return means "use read/write". */
    gpointer (*host_pointer)(gpointer ctx, gpointer buffer);
    /* (optional) lists devices without opening one; returns an array of LmnDeviceInfo with
     * g_ptr_array_new_with_free_func(lmn_device_info_free). @auto_index: the one `auto` picks,
     * or -1. */
    GPtrArray *(*list_devices)(const LmnParams *params, gint *auto_index, GError **error);

    /* ABI 1.1 ops (see ops.h).  Optional for the loader, so backends built against 1.0 still
     * load; a model that uses a missing one fails with LMN_BACKEND_ERROR_UNSUPPORTED. */
    void (*im2col)(gpointer ctx, const LmnTensor *x, LmnTensor *cols, const LmnConv2dGeom *g);
    void (*col2im)(gpointer ctx, const LmnTensor *cols, LmnTensor *dx, const LmnConv2dGeom *g);
    void (*pool2d)(gpointer ctx, LmnPoolMode mode, const LmnTensor *x, LmnTensor *y,
                   LmnTensor *argmax, const LmnConv2dGeom *g);
    void (*pool2d_backward)(gpointer ctx, LmnPoolMode mode, const LmnTensor *dy,
                            const LmnTensor *argmax, LmnTensor *dx, const LmnConv2dGeom *g);
    void (*batchnorm_stats)(gpointer ctx, const LmnTensor *x, LmnTensor *mean, LmnTensor *var,
                            gint64 outer, gint64 channels, gint64 inner);
    void (*batchnorm_forward)(gpointer ctx, const LmnTensor *x, const LmnTensor *mean,
                              const LmnTensor *var, const LmnTensor *weight,
                              const LmnTensor *bias, LmnTensor *y, float eps, gint64 outer,
                              gint64 channels, gint64 inner);
    void (*batchnorm_backward)(gpointer ctx, const LmnTensor *x, const LmnTensor *dy,
                               const LmnTensor *mean, const LmnTensor *var,
                               const LmnTensor *weight, LmnTensor *dx, LmnTensor *dweight,
                               LmnTensor *dbias, float eps, gint64 outer, gint64 channels,
                               gint64 inner);
    void (*dropout)(gpointer ctx, const LmnTensor *x, LmnTensor *y, LmnTensor *mask, float p,
                    guint64 seed, guint64 stream);
    void (*random_normal)(gpointer ctx, LmnTensor *t, float mean, float std, guint64 seed,
                          guint64 stream);
    void (*clamp)(gpointer ctx, LmnTensor *t, float lo, float hi);
    void (*softmax)(gpointer ctx, const LmnTensor *x, LmnTensor *y, gint64 rows, gint64 cols);
    void (*softmax_backward)(gpointer ctx, const LmnTensor *y, const LmnTensor *dy, LmnTensor *dx,
                             gint64 rows, gint64 cols);
    void (*copy_block)(gpointer ctx, LmnTensor *dst, gint64 dst_offset, gint64 dst_stride,
                       const LmnTensor *src, gint64 src_offset, gint64 src_stride, gint64 rows,
                       gint64 cols, float beta);
    void (*gather_rows)(gpointer ctx, const LmnTensor *table, const LmnTensor *indices,
                        LmnTensor *out, gint64 n, gint64 dim);
    void (*scatter_add_rows)(gpointer ctx, LmnTensor *table_grad, const LmnTensor *indices,
                             const LmnTensor *src, gint64 n, gint64 dim);
    void (*bce_logits)(gpointer ctx, const LmnTensor *x, const LmnTensor *target,
                       LmnTensor *loss);
    void (*bce_logits_backward)(gpointer ctx, const LmnTensor *x, const LmnTensor *target,
                                LmnTensor *dx, float scale);

    /* ---- ABI 1.3: axis reductions, broadcasting, row normalisation (see ops.h).  Optional;
     * a backend with this block also implements the ABI 1.3 LmnUnaryOp and LmnBinaryOp values. */
    void (*reduce_axis)(gpointer ctx, LmnAxisReduceOp op, const LmnTensor *x, LmnTensor *out,
                        LmnTensor *indices, gint64 outer, gint64 axis, gint64 inner);
    void (*reduce_axis_backward)(gpointer ctx, LmnAxisReduceOp op, const LmnTensor *dy,
                                 const LmnTensor *indices, LmnTensor *dx, gint64 outer, gint64 axis,
                                 gint64 inner);
    void (*binary_broadcast)(gpointer ctx, LmnBinaryOp op, const LmnTensor *a, const LmnTensor *b,
                             LmnTensor *out, const LmnBroadcast *bc);
    void (*binary_broadcast_backward)(gpointer ctx, LmnBinaryOp op, const LmnTensor *a,
                                      const LmnTensor *b, const LmnTensor *dy, LmnTensor *da,
                                      LmnTensor *db, const LmnBroadcast *bc);
    void (*normalize_rows)(gpointer ctx, const LmnTensor *x, LmnTensor *y, LmnTensor *mean,
                           LmnTensor *rstd, gint64 rows, gint64 cols, float eps);
    void (*normalize_rows_backward)(gpointer ctx, const LmnTensor *y, const LmnTensor *rstd,
                                    const LmnTensor *dy, LmnTensor *dx, gint64 rows, gint64 cols);
    void (*clamp_backward)(gpointer ctx, const LmnTensor *x, const LmnTensor *dy, LmnTensor *dx,
                           float lo, float hi);
    void (*topk)(gpointer ctx, const LmnTensor *x, LmnTensor *values, LmnTensor *indices,
                 gint64 outer, gint64 axis, gint64 inner, gint64 k);
    void (*topk_backward)(gpointer ctx, const LmnTensor *dy, const LmnTensor *indices,
                          LmnTensor *dx, gint64 outer, gint64 axis, gint64 inner, gint64 k);
    /* ---- end of the ABI 1.3 axis/broadcast block ---- */
    /* ---- ABI 1.3: spatial resampling (upsample layer).  Optional, like the 1.1 ops. ---- */
    void (*upsample2d)(gpointer ctx, LmnUpsampleMode mode, const LmnTensor *x, LmnTensor *y,
                       const LmnUpsampleGeom *g);
    void (*upsample2d_backward)(gpointer ctx, LmnUpsampleMode mode, const LmnTensor *dy,
                                LmnTensor *dx, const LmnUpsampleGeom *g);

    /* ---- ABI 1.4: native convolution (see lmn_op_conv2d_* in ops.h).  Optional: without
     * them the core runs a convolution as im2col + GEMM.  All three or none. ---- */
    void (*conv2d_forward)(gpointer ctx, const LmnConv2dDesc *d, const LmnTensor *x,
                           const LmnTensor *weight, LmnTensor *y);
    void (*conv2d_backward_data)(gpointer ctx, const LmnConv2dDesc *d, const LmnTensor *dy,
                                 const LmnTensor *weight, LmnTensor *dx);
    void (*conv2d_backward_weights)(gpointer ctx, const LmnConv2dDesc *d, const LmnTensor *x,
                                    const LmnTensor *dy, LmnTensor *dweight, float beta);
    /* ---- end of the ABI 1.4 native convolution block ---- */

    /* ---- ABI 1.5: lmn_op_gemm_ex (see ops.h).  Optional: without it the core composes gemm,
     * bias_add, unary and bias_grad.  The core has validated @g and @e (never NULL here) as
     * lmn_op_gemm_ex documents. ---- */
    void (*gemm_ex)(gpointer ctx, const LmnGemm *g, const LmnGemmEpilogue *e);
    /* ABI 1.5: lmn_op_softmax_xent_grad (see ops.h).  Optional: without it the core composes
     * softmax_xent and softmax_xent_backward.  Arguments validated by the core. */
    void (*softmax_xent_grad)(gpointer ctx, const LmnTensor *logits, const LmnTensor *labels,
                              LmnTensor *probs, LmnTensor *loss, float smoothing, LmnTensor *dx,
                              float scale);

    /* ---- ABI 1.6: lmn_op_conv2d_prepare (see ops.h).  Optional, and only read from a backend
     * with the ABI 1.4 convolution block: makes ahead of time what the three convolution ops
     * would otherwise make on their first call at @d's shape (kernels, layouts, scratch).  The
     * core has validated @d.  An error means the backend cannot run the convolution at all. */
    gboolean (*conv2d_prepare)(gpointer ctx, const LmnConv2dDesc *d, GError **error);
} LmnBackendVTable;

/**
 * lmn_backend_new:
 * Opens backend feature @name from @registry with validated @params (NULL = defaults) on
 * @device (NULL = the backend's default).
 * Returns: (transfer full): the backend, or NULL with LMN_PLUGIN_ERROR_NOT_FOUND,
 *   LMN_BACKEND_ERROR_* or the plugin's own error
 */
typedef struct _LmnRegistry LmnRegistry;

LmnBackend *lmn_backend_new(LmnRegistry *registry, const char *name, const LmnParams *params, const char *device,
                            GError **error);
/** lmn_backend_ref: Returns: @backend with one more reference. */
LmnBackend *lmn_backend_ref(LmnBackend *backend);
/** lmn_backend_unref: closes the backend on the last reference (after its tensors are gone). */
void lmn_backend_unref(LmnBackend *backend);
/** lmn_backend_get_name: Returns: (transfer none): the feature name, e.g. "cpu". */
const char *lmn_backend_get_name(LmnBackend *backend);
/** lmn_backend_describe: Returns: (transfer none): the device description. */
const char *lmn_backend_describe(LmnBackend *backend);
/** lmn_backend_synchronize: waits for recorded work. Returns: FALSE with the first deferred error. */
gboolean lmn_backend_synchronize(LmnBackend *backend, GError **error);
/** lmn_backend_get_vtable: Returns: (transfer none): the backend's vtable (for op dispatch). */
const LmnBackendVTable *lmn_backend_get_vtable(LmnBackend *backend);
/**
 * lmn_backend_has_native_conv2d:
 * Returns: TRUE when @backend implements the ABI 1.4 convolution ops itself (the core then needs
 *   no im2col scratch for lmn_op_conv2d_*)
 */
gboolean lmn_backend_has_native_conv2d(LmnBackend *backend);
/** lmn_backend_get_context: Returns: (transfer none): the plugin's context. */
gpointer lmn_backend_get_context(LmnBackend *backend);
/**
 * lmn_backend_host_pointer:
 * Returns: (nullable): element 0 of @t in host memory when the backend's memory is host memory
 */
gpointer lmn_backend_host_pointer(const LmnTensor *t);

/** lmn_device_info_free: frees an #LmnDeviceInfo from a list_devices array. */
void lmn_device_info_free(gpointer info);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(LmnBackend, lmn_backend_unref)

G_END_DECLS
