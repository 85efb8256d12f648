/* Lamina Vulkan backend — the plugin descriptor, the vtable, and buffer transfers.
 *
 * Opening selects a device (vk-device.c), sets up memory (vk-memory.c) and recording
 * (vk-exec.c).  Ops are recorded, not run (vk-ops.c); writes are recorded too, or copied through
 * the mapping (vk-staging.c); read and synchronize submit what is recorded, wait on one fence,
 * and report the first deferred failure.  After a device loss every call fails with that error.
 * LAMINA_VK_STATS=1 prints the submission, fence-wait, barrier, transfer, dispatch and
 * pipeline-bind counts at close.  The native convolution (vk-conv.c) is in the vtable unless
 * LAMINA_VK_CONV=im2col, read by the plugin's init().
 */
#include "vk-private.h"

#include <string.h>

static const LmnParamSpec vk_params[] = {
    LMN_PARAM_SPEC_BOOL(
        "validation", "false",
        "enable VK_LAYER_KHRONOS_validation when installed; validation errors fail the "
        "next synchronisation"),
    LMN_PARAM_SPEC_END,
};

static void print_stats(LmnVkContext *c)
{
    const char *env = g_getenv("LAMINA_VK_STATS");
    if (env == NULL || !g_str_equal(env, "1"))
        return;
    g_printerr("vulkan stats: %s: %" G_GUINT64_FORMAT " submissions, %" G_GUINT64_FORMAT
               " fence waits, %" G_GUINT64_FORMAT " barriers, %" G_GUINT64_FORMAT
               " direct writes, %" G_GUINT64_FORMAT " staged writes, %" G_GUINT64_FORMAT
               " staged reads, %" G_GUINT64_FORMAT " staged bytes, peak memory %" G_GUINT64_FORMAT
               " bytes, %" G_GUINT64_FORMAT " dispatches, %" G_GUINT64_FORMAT
               " pipeline binds, %" G_GUINT64_FORMAT
               " descriptor sets allocated (%s), staging ring %" G_GUINT64_FORMAT
               " bytes (grown %" G_GUINT64_FORMAT " times)\n",
               c->desc.props.deviceName, c->n_submits, c->n_fence_waits, c->n_barriers,
               c->n_direct_writes, c->n_staged_writes, c->n_staged_reads, c->staged_bytes,
               c->memory_peak, c->n_dispatches, c->n_pipeline_binds, c->n_sets_allocated,
               c->push_descriptors ? "push descriptors" : "descriptor pools",
               (guint64) lmn_vk_staging_size(c), c->n_staging_grows);
}

static void vk_close(gpointer ctx)
{
    LmnVkContext *c = ctx;
    if (c->device != VK_NULL_HANDLE) {
        lmn_vk_wait_idle(c);
        print_stats(c);
        /* After a loss this may report it again; the handles are destroyed all the same. */
        c->fn.vkDeviceWaitIdle(c->device);
        lmn_vk_exec_cleanup(c);
        lmn_vk_staging_cleanup(c);
        lmn_vk_memory_cleanup(c);
        c->fn.vkDestroyDevice(c->device, NULL);
    }
    lmn_vk_close_instance(c);
    if (c->error != NULL)
        g_error_free(c->error);
    if (c->lost != NULL)
        g_error_free(c->lost);
    g_free(c->first_validation_message);
    g_free(c->description);
    g_mutex_clear(&c->lock);
    g_mutex_clear(&c->validation_lock);
    g_free(c);
}

static gpointer vk_open(const LmnParams *params, const char *device, GError **error)
{
    LmnVkContext *c = g_new0(LmnVkContext, 1);
    g_mutex_init(&c->lock);
    g_mutex_init(&c->validation_lock);
    gboolean validation = params != NULL && lmn_params_get_bool(params, "validation");
    const char *selector = device;
    if (selector == NULL || *selector == '\0')
        selector = g_getenv("LAMINA_VK_DEVICE");
    if (!lmn_vk_load_instance(c, validation, error) || !lmn_vk_open_device(c, selector, error) ||
        !lmn_vk_memory_init(c, error) || !lmn_vk_exec_init(c, error)) {
        vk_close(c);
        return NULL;
    }
    char *d =
        g_strdup_printf("%s, %s host transfers%s", c->description, c->direct ? "mapped" : "staged",
                        c->subgroup_reduce ? ", subgroup reductions" : "");
    g_free(c->description);
    c->description = d;
    return c;
}

static const char *vk_describe(gpointer ctx)
{
    LmnVkContext *c = ctx;
    return c->description;
}

static gpointer vk_alloc(gpointer ctx, gsize nbytes, GError **error)
{
    LmnVkContext *c = ctx;
    g_mutex_lock(&c->lock);
    LmnVkBuffer *b = lmn_vk_check_lost(c, error) ? lmn_vk_buffer_alloc(c, nbytes, error) : NULL;
    g_mutex_unlock(&c->lock);
    return b;
}

static void vk_free(gpointer ctx, gpointer buffer)
{
    LmnVkContext *c = ctx;
    g_mutex_lock(&c->lock);
    lmn_vk_buffer_free_deferred(c, buffer);
    g_mutex_unlock(&c->lock);
}

static gboolean vk_write(gpointer ctx, gpointer buffer, gsize offset, const void *src, gsize nbytes,
                         GError **error)
{
    LmnVkContext *c = ctx;
    g_mutex_lock(&c->lock);
    /* Ordered after the recorded ops that use the old contents without waiting for them; a
     * failure of the transfer itself is deferred like an op's. */
    lmn_vk_host_write(c, buffer, offset, src, nbytes);
    gboolean ok = lmn_vk_check_lost(c, error);
    g_mutex_unlock(&c->lock);
    return ok;
}

static gboolean vk_read(gpointer ctx, gpointer buffer, gsize offset, void *dst, gsize nbytes,
                        GError **error)
{
    LmnVkContext *c = ctx;
    g_mutex_lock(&c->lock);
    gboolean ok = lmn_vk_check_lost(c, error);
    if (ok) {
        lmn_vk_host_read(c, buffer, offset, dst, nbytes);
        ok = lmn_vk_flush(c, error);
    }
    g_mutex_unlock(&c->lock);
    return ok;
}

static gboolean vk_synchronize(gpointer ctx, GError **error)
{
    LmnVkContext *c = ctx;
    g_mutex_lock(&c->lock);
    gboolean ok = lmn_vk_flush(c, error);
    g_mutex_unlock(&c->lock);
    return ok;
}

/* Not const: LAMINA_VK_CONV=im2col clears the native convolution members at init. */
static LmnBackendVTable vk_vtable = {
    .struct_size = sizeof(LmnBackendVTable),
    .open = vk_open,
    .close = vk_close,
    .describe = vk_describe,
    .alloc = vk_alloc,
    .free = vk_free,
    .write = vk_write,
    .read = vk_read,
    .synchronize = vk_synchronize,
    .fill = lmn_vk_fill,
    .copy = lmn_vk_copy,
    .gemm = lmn_vk_gemm,
    .bias_add = lmn_vk_bias_add,
    .bias_grad = lmn_vk_bias_grad,
    .unary = lmn_vk_unary,
    .unary_backward = lmn_vk_unary_backward,
    .binary = lmn_vk_binary,
    .axpby = lmn_vk_axpby,
    .reduce = lmn_vk_reduce,
    .softmax_xent = lmn_vk_softmax_xent,
    .softmax_xent_backward = lmn_vk_softmax_xent_backward,
    .count_correct = lmn_vk_count_correct,
    .kernel = lmn_vk_kernel,
    /* Device memory is not host memory to the core: tensors go through read/write. */
    .host_pointer = NULL,
    .list_devices = lmn_vk_list_devices,
    /* ABI 1.1: every op. */
    .im2col = lmn_vk_im2col,
    .col2im = lmn_vk_col2im,
    .pool2d = lmn_vk_pool2d,
    .pool2d_backward = lmn_vk_pool2d_backward,
    .batchnorm_stats = lmn_vk_batchnorm_stats,
    .batchnorm_forward = lmn_vk_batchnorm_forward,
    .batchnorm_backward = lmn_vk_batchnorm_backward,
    .dropout = lmn_vk_dropout,
    .random_normal = lmn_vk_random_normal,
    .clamp = lmn_vk_clamp,
    .softmax = lmn_vk_softmax,
    .softmax_backward = lmn_vk_softmax_backward,
    .copy_block = lmn_vk_copy_block,
    .gather_rows = lmn_vk_gather_rows,
    .scatter_add_rows = lmn_vk_scatter_add_rows,
    .bce_logits = lmn_vk_bce_logits,
    .bce_logits_backward = lmn_vk_bce_logits_backward,
    /* ABI 1.3: axis reductions, broadcasting, row normalisation */
    .reduce_axis = lmn_vk_reduce_axis,
    .reduce_axis_backward = lmn_vk_reduce_axis_backward,
    .binary_broadcast = lmn_vk_binary_broadcast,
    .binary_broadcast_backward = lmn_vk_binary_broadcast_backward,
    .normalize_rows = lmn_vk_normalize_rows,
    .normalize_rows_backward = lmn_vk_normalize_rows_backward,
    .clamp_backward = lmn_vk_clamp_backward,
    .topk = lmn_vk_topk,
    .topk_backward = lmn_vk_topk_backward,
    /* ABI 1.3: spatial resampling */
    .upsample2d = lmn_vk_upsample2d,
    .upsample2d_backward = lmn_vk_upsample2d_backward,
    /* ABI 1.4: native convolution (vk-conv.c) */
    .conv2d_forward = lmn_vk_conv2d_forward,
    .conv2d_backward_data = lmn_vk_conv2d_backward_data,
    .conv2d_backward_weights = lmn_vk_conv2d_backward_weights,
    /* ABI 1.5: the GEMM with a fused epilogue (vk-gemm.c) */
    .gemm_ex = lmn_vk_gemm_ex,
    .softmax_xent_grad = lmn_vk_softmax_xent_grad,
};

static const LmnFeatureDesc vk_features[] = {
    LMN_FEATURE(LMN_FEATURE_BACKEND, "vulkan",
                "Vulkan compute backend (GPUs; lavapipe only when asked for)", vk_params,
                &vk_vtable),
};

/* LAMINA_VK_CONV=im2col leaves the native convolution out of the vtable, so the core runs
 * convolutions as im2col + GEMM (to compare the two paths); "native" or unset keeps it.  Read
 * once per process, before the first backend opens: every Vulkan backend of a process agrees. */
static gboolean vk_init(GError **error)
{
    const char *conv = g_getenv("LAMINA_VK_CONV");
    if (conv == NULL || *conv == '\0' || g_str_equal(conv, "native"))
        return TRUE;
    if (g_str_equal(conv, "im2col")) {
        vk_vtable.conv2d_forward = NULL;
        vk_vtable.conv2d_backward_data = NULL;
        vk_vtable.conv2d_backward_weights = NULL;
        return TRUE;
    }
    g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_INIT_FAILED,
                "LAMINA_VK_CONV is '%s': expected 'native' (the implicit-GEMM convolution, the "
                "default) or 'im2col' (the core's im2col + GEMM path); set one of them or unset it",
                conv);
    return FALSE;
}

static const LmnPluginDesc vk_plugin = {
    .struct_size = sizeof(LmnPluginDesc),
    .abi_major = LMN_ABI_MAJOR,
    .abi_minor = LMN_ABI_MINOR,
    .name = "lamina.vulkan",
    .version = LMN_VERSION_STRING,
    .license = "MIT",
    .description = "The Vulkan compute backend",
    .n_features = G_N_ELEMENTS(vk_features),
    .features = vk_features,
    .init = vk_init,
};

LMN_PLUGIN_DEFINE(vk_plugin)
