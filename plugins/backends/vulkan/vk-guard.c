/* Lamina Vulkan backend — LAMINA_VK_GUARD, the out-of-bounds write check.
 *
 * lavapipe, like most GPUs without robustness features, lets a shader write past the range its
 * descriptor binds: the write lands in whatever follows in the memory block, a neighbouring
 * tensor or nothing, and a test passes while a real GPU corrupts memory or loses the device.
 * With LAMINA_VK_GUARD=1 every buffer is allocated with LMN_VK_GUARD_BYTES more, filled with a
 * pattern, every binding's range is widened by the guard (a device that bounds-checks
 * descriptors, as lavapipe does, would otherwise drop the stray writes unseen; no shader reads
 * its arrays' length), and every dispatch is submitted and waited for alone, after which every
 * live guard is compared with the pattern: a damaged one becomes the backend's deferred error
 * naming the kernel, the buffer's size and the first byte past its end that changed.  It costs a
 * fence wait per dispatch, so it is for tests and debugging.  The guards are read through the
 * mapping, so the device's memory must be host-visible (lavapipe, integrated GPUs, resizable BAR).
 */
#include "vk-private.h"

#include <string.h>

gboolean lmn_vk_guard_init(LmnVkContext *c, GError **error)
{
    const char *env = g_getenv("LAMINA_VK_GUARD");
    if (env == NULL || *env == '\0' || g_str_equal(env, "0"))
        return TRUE;
    if (!g_str_equal(env, "1")) {
        g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                    "LAMINA_VK_GUARD = '%s': expected 1 (check every dispatch for writes past "
                    "its buffers) or 0",
                    env);
        return FALSE;
    }
    if (!c->mapped) {
        g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                    "LAMINA_VK_GUARD needs host-visible device memory to read its guards, and "
                    "%s has none that is also host-coherent: unset LAMINA_VK_GUARD, or run the "
                    "check on lavapipe or an integrated GPU",
                    c->description != NULL ? c->description : "this device");
        return FALSE;
    }
    c->guard = TRUE;
    c->guarded = g_ptr_array_new();
    c->pipeline_names = g_hash_table_new_full(NULL, NULL, NULL, g_free);
    return TRUE;
}

void lmn_vk_guard_cleanup(LmnVkContext *c)
{
    g_clear_pointer(&c->guarded, g_ptr_array_unref);
    g_clear_pointer(&c->pipeline_names, g_hash_table_unref);
}

static guint8 *guard_bytes(const LmnVkBuffer *buf)
{
    return (guint8 *) lmn_vk_buffer_map(buf) + buf->size;
}

void lmn_vk_guard_arm(LmnVkContext *c, LmnVkBuffer *buf)
{
    /* A new span is not in use by recorded work, so its guard can be written at once. */
    memset(guard_bytes(buf), LMN_VK_GUARD_PATTERN, buf->guard);
    g_ptr_array_add(c->guarded, buf);
}

/* The first changed byte of @buf's guard, or -1 when it is intact. */
static gint64 guard_damage(const LmnVkBuffer *buf)
{
    const guint8 *g = guard_bytes(buf);
    for (VkDeviceSize i = 0; i < buf->guard; i++)
        if (g[i] != LMN_VK_GUARD_PATTERN)
            return (gint64) i;
    return -1;
}

static void report(LmnVkContext *c, const LmnVkBuffer *buf, gint64 at, const char *what)
{
    const guint8 *g = guard_bytes(buf);
    lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                     "LAMINA_VK_GUARD: %s wrote past the end of a %" G_GUINT64_FORMAT
                     "-byte buffer: byte %" G_GINT64_FORMAT " after its end holds 0x%02x, not "
                     "the guard's 0x%02x; the kernel's index arithmetic or its launch size "
                     "overruns the tensor",
                     what, (guint64) buf->size, at, g[at], LMN_VK_GUARD_PATTERN);
}

void lmn_vk_guard_forget(LmnVkContext *c, LmnVkBuffer *buf)
{
    gint64 at = guard_damage(buf);
    if (at >= 0)
        report(c, buf, at, "a kernel");
    g_ptr_array_remove_fast(c->guarded, buf);
}

void lmn_vk_guard_name_pipeline(LmnVkContext *c, VkPipeline pipeline, const char *name)
{
    if (c->guard && pipeline != VK_NULL_HANDLE)
        g_hash_table_replace(c->pipeline_names, (gpointer) pipeline,
                             g_strdup(name != NULL ? name : "a kernel"));
}

VkDeviceSize lmn_vk_guard_widen(LmnVkContext *c, VkBuffer buffer, VkDeviceSize offset,
                                VkDeviceSize range)
{
    const VkDeviceSize block = lmn_vk_block_size_of(c, buffer);
    if (block <= offset)
        return range;
    return MAX(range, MIN(MIN(range + LMN_VK_GUARD_BYTES, block - offset), c->max_range));
}

void lmn_vk_guard_after_dispatch(LmnVkContext *c, VkPipeline pipeline)
{
    lmn_vk_wait_idle(c);
    const char *name = g_hash_table_lookup(c->pipeline_names, (gpointer) pipeline);
    g_autofree char *what = g_strdup_printf("kernel '%s'", name != NULL ? name : "?");
    for (guint i = 0; i < c->guarded->len; i++) {
        LmnVkBuffer *buf = c->guarded->pdata[i];
        gint64 at = guard_damage(buf);
        if (at < 0)
            continue;
        report(c, buf, at, what);
        /* Reported once: the guard is restored so later dispatches are judged on their own. */
        memset(guard_bytes(buf), LMN_VK_GUARD_PATTERN, buf->guard);
    }
}
