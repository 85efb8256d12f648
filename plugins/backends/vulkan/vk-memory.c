/* Lamina Vulkan backend — device memory.
 *
 * Tensors never get their own VkDeviceMemory: allocations are spans of large blocks (first fit,
 * freed spans merge with their neighbours), so a model with hundreds of tensors uses a handful of
 * allocations.  A block is one VkBuffer no larger than maxStorageBufferRange (nor
 * maxMemoryAllocationSize), so any span of it can be bound whole; a tensor larger than that gets
 * a dedicated block and its ops dispatch in chunks.
 *
 * The memory type is device-local (vk-device.c).  When it is also host-visible and coherent
 * (integrated GPUs, resizable BAR, CPU devices such as lavapipe) blocks stay mapped and the host
 * reaches tensors through the mapping; otherwise through the staging ring (vk-staging.c).  New
 * spans are zeroed, as on the CPU backend, with a memset through the mapping or a recorded
 * vkCmdFillBuffer.  LAMINA_VK_MEMORY_LIMIT=BYTES caps what the blocks may hold, simulating a
 * smaller GPU.  Buffers freed while recorded or in-flight work may still use them are released
 * only once the newest submission that may use them completed (by submission serial).
 */
#include "vk-private.h"

#include <string.h>

#define BLOCK_SIZE_MAX (64u << 20)

typedef struct {
    VkDeviceSize offset, size;
} Span;

struct _LmnVkBlock {
    VkBuffer buffer;
    VkDeviceMemory memory;
    void *mapped;
    VkDeviceSize size;
    GArray *free_spans; /* Span, sorted by offset; NULL for a dedicated block */
    guint n_live;
};

/* "N bytes" below a mebibyte, "X.Y MiB" above (plain ASCII, unlike g_format_size). */
static char *size_text(guint64 n)
{
    if (n < (1u << 20))
        return g_strdup_printf("%" G_GUINT64_FORMAT " bytes", n);
    return g_strdup_printf("%.1f MiB", (double) n / (1u << 20));
}

static void out_of_memory(LmnVkContext *c, VkDeviceSize size, const char *why, GError **error)
{
    g_autofree char *want = size_text(size);
    g_autofree char *used = size_text(c->memory_used);
    g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_OUT_OF_MEMORY,
                "out of memory on Vulkan device '%s': cannot allocate %s (%s already in use; "
                "%s). Use a smaller batch size or model, or another device (--device) or "
                "--backend cpu",
                c->desc.props.deviceName, want, used, why);
}

static LmnVkBlock *block_new(LmnVkContext *c, VkDeviceSize size, gboolean dedicated, GError **error)
{
    if (size > c->alloc_max) {
        g_autofree char *why = g_strdup_printf("one allocation is limited to %" G_GUINT64_FORMAT
                                               " bytes on this device",
                                               (guint64) c->alloc_max);
        out_of_memory(c, size, why, error);
        return NULL;
    }
    if (c->memory_limit != 0 && c->memory_used + size > c->memory_limit) {
        g_autofree char *why = g_strdup_printf(
            "LAMINA_VK_MEMORY_LIMIT is %" G_GUINT64_FORMAT " bytes", c->memory_limit);
        out_of_memory(c, size, why, error);
        return NULL;
    }
    LmnVkBlock *b = g_new0(LmnVkBlock, 1);
    b->size = size;
    VkBufferCreateInfo bi = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = size,
        .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                 VK_BUFFER_USAGE_TRANSFER_DST_BIT,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    VkResult r = c->fn.vkCreateBuffer(c->device, &bi, NULL, &b->buffer);
    if (r == VK_SUCCESS) {
        VkMemoryRequirements req;
        c->fn.vkGetBufferMemoryRequirements(c->device, b->buffer, &req);
        VkMemoryAllocateInfo ai = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
            .allocationSize = req.size,
            .memoryTypeIndex = c->memory_type,
        };
        if (!(req.memoryTypeBits & (1u << c->memory_type)))
            r = VK_ERROR_FEATURE_NOT_PRESENT;
        else
            r = c->fn.vkAllocateMemory(c->device, &ai, NULL, &b->memory);
        if (r == VK_SUCCESS)
            r = c->fn.vkBindBufferMemory(c->device, b->buffer, b->memory, 0);
        if (r == VK_SUCCESS && c->mapped)
            r = c->fn.vkMapMemory(c->device, b->memory, 0, VK_WHOLE_SIZE, 0, &b->mapped);
    }
    if (r != VK_SUCCESS) {
        if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY) {
            out_of_memory(c, size,
                          r == VK_ERROR_OUT_OF_DEVICE_MEMORY ? "the driver reports the device "
                                                               "memory exhausted"
                                                             : "host memory is exhausted",
                          error);
        } else {
            g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_OUT_OF_MEMORY,
                        "cannot allocate %" G_GUINT64_FORMAT " bytes of Vulkan memory on '%s' "
                        "(VkResult %d)",
                        (guint64) size, c->desc.props.deviceName, (int) r);
        }
        if (b->memory != VK_NULL_HANDLE)
            c->fn.vkFreeMemory(c->device, b->memory, NULL);
        if (b->buffer != VK_NULL_HANDLE)
            c->fn.vkDestroyBuffer(c->device, b->buffer, NULL);
        g_free(b);
        return NULL;
    }
    c->memory_used += size;
    c->memory_peak = MAX(c->memory_peak, c->memory_used);
    if (!dedicated) {
        b->free_spans = g_array_new(FALSE, FALSE, sizeof(Span));
        Span all = {0, size};
        g_array_append_val(b->free_spans, all);
    }
    return b;
}

static void block_free(LmnVkContext *c, LmnVkBlock *b)
{
    c->memory_used -= b->size;
    c->fn.vkDestroyBuffer(c->device, b->buffer, NULL);
    c->fn.vkFreeMemory(c->device, b->memory, NULL); /* unmaps implicitly */
    if (b->free_spans != NULL)
        g_array_unref(b->free_spans);
    g_free(b);
}

static gboolean block_take(LmnVkBlock *b, VkDeviceSize size, VkDeviceSize *offset)
{
    for (guint i = 0; i < b->free_spans->len; i++) {
        Span *s = &g_array_index(b->free_spans, Span, i);
        if (s->size >= size) {
            *offset = s->offset;
            s->offset += size;
            s->size -= size;
            if (s->size == 0)
                g_array_remove_index(b->free_spans, i);
            b->n_live++;
            return TRUE;
        }
    }
    return FALSE;
}

static void block_give(LmnVkBlock *b, VkDeviceSize offset, VkDeviceSize size)
{
    GArray *spans = b->free_spans;
    guint i = 0;
    while (i < spans->len && g_array_index(spans, Span, i).offset < offset)
        i++;
    Span s = {offset, size};
    g_array_insert_val(spans, i, s);
    /* Merge with the next span, then with the previous one. */
    if (i + 1 < spans->len) {
        Span *cur = &g_array_index(spans, Span, i), *next = &g_array_index(spans, Span, i + 1);
        if (cur->offset + cur->size == next->offset) {
            cur->size += next->size;
            g_array_remove_index(spans, i + 1);
        }
    }
    if (i > 0) {
        Span *prev = &g_array_index(spans, Span, i - 1), *cur = &g_array_index(spans, Span, i);
        if (prev->offset + prev->size == cur->offset) {
            prev->size += cur->size;
            g_array_remove_index(spans, i);
        }
    }
    b->n_live--;
}

static VkDeviceSize block_size(LmnVkContext *c)
{
    VkDeviceSize s = MIN(c->block_max, c->max_range);
    return s / c->alignment * c->alignment;
}

static LmnVkBuffer *buffer_alloc(LmnVkContext *c, gsize nbytes, gboolean zero, GError **error)
{
    /* Never 0 bytes, and whole alignment units so every span starts aligned for binding. */
    VkDeviceSize size = (MAX(nbytes, 4) + c->alignment - 1) / c->alignment * c->alignment;
    LmnVkBuffer *buf = g_new0(LmnVkBuffer, 1);
    buf->size = size;
    if (c->guard)
        buf->guard = (LMN_VK_GUARD_BYTES + c->alignment - 1) / c->alignment * c->alignment;
    /* The span holds the buffer and its guard; only the buffer is ever bound. */
    const VkDeviceSize span = size + buf->guard;
    if (span > block_size(c)) {
        buf->block = block_new(c, span, TRUE, error);
        if (buf->block == NULL) {
            g_free(buf);
            return NULL;
        }
        buf->block->n_live = 1;
        g_ptr_array_add(c->blocks, buf->block);
    } else {
        for (guint i = 0; i < c->blocks->len && buf->block == NULL; i++) {
            LmnVkBlock *b = c->blocks->pdata[i];
            if (b->free_spans != NULL && block_take(b, span, &buf->offset))
                buf->block = b;
        }
        if (buf->block == NULL) {
            VkDeviceSize bs = block_size(c);
            /* Under a memory limit, a last smaller block may still hold the request. */
            if (c->memory_limit != 0 && c->memory_used + bs > c->memory_limit) {
                const guint64 left =
                    c->memory_limit > c->memory_used ? c->memory_limit - c->memory_used : 0;
                bs = MAX(span, left / c->alignment * c->alignment);
            }
            LmnVkBlock *b = block_new(c, bs, FALSE, error);
            if (b == NULL) {
                g_free(buf);
                return NULL;
            }
            g_ptr_array_add(c->blocks, b);
            block_take(b, span, &buf->offset);
            buf->block = b;
        }
    }
    if (zero) {
        /* Zeroed, as on the CPU backend, so reading never-written memory is reproducible.  A
         * new span is never in use by recorded work (frees wait for the work), so the mapping
         * can be written at once; otherwise the fill is recorded in order with everything
         * else. */
        if (c->direct)
            memset((char *) buf->block->mapped + buf->offset, 0, size);
        else
            lmn_vk_record_fill(c, buf->block->buffer, buf->offset, size, 0);
    }
    if (buf->guard > 0)
        lmn_vk_guard_arm(c, buf);
    return buf;
}

LmnVkBuffer *lmn_vk_buffer_alloc(LmnVkContext *c, gsize nbytes, GError **error)
{
    return buffer_alloc(c, nbytes, TRUE, error);
}

LmnVkBuffer *lmn_vk_buffer_alloc_uninit(LmnVkContext *c, gsize nbytes, GError **error)
{
    return buffer_alloc(c, nbytes, FALSE, error);
}

void lmn_vk_buffer_release(LmnVkContext *c, LmnVkBuffer *buf)
{
    LmnVkBlock *b = buf->block;
    if (buf->guard > 0)
        lmn_vk_guard_forget(c, buf);
    if (b->free_spans == NULL) {
        g_ptr_array_remove_fast(c->blocks, b);
        block_free(c, b);
    } else {
        block_give(b, buf->offset, buf->size + buf->guard);
    }
    g_free(buf);
}

void lmn_vk_buffer_free_deferred(LmnVkContext *c, LmnVkBuffer *buf)
{
    /* The batch being recorded gets the next serial; otherwise the last submission is the
     * newest that may use the buffer (submissions complete in order). */
    const guint64 after = c->recording ? c->submit_serial + 1 : c->submit_serial;
    if (after <= c->done_serial) {
        lmn_vk_buffer_release(c, buf);
    } else {
        buf->free_after = after;
        g_ptr_array_add(c->pending_frees, buf);
    }
}

void lmn_vk_memory_collect(LmnVkContext *c)
{
    guint kept = 0;
    for (guint i = 0; i < c->pending_frees->len; i++) {
        LmnVkBuffer *buf = c->pending_frees->pdata[i];
        if (buf->free_after <= c->done_serial)
            lmn_vk_buffer_release(c, buf);
        else
            c->pending_frees->pdata[kept++] = buf; /* in order: still in use */
    }
    g_ptr_array_set_size(c->pending_frees, kept);
}

VkBuffer lmn_vk_buffer_handle(const LmnVkBuffer *b)
{
    return b->block->buffer;
}

VkDeviceSize lmn_vk_block_size_of(LmnVkContext *c, VkBuffer buffer)
{
    for (guint i = 0; i < c->blocks->len; i++) {
        const LmnVkBlock *b = c->blocks->pdata[i];
        if (b->buffer == buffer)
            return b->size;
    }
    return 0;
}

void *lmn_vk_buffer_map(const LmnVkBuffer *b)
{
    return b->block->mapped != NULL ? (char *) b->block->mapped + b->offset : NULL;
}

gboolean lmn_vk_memory_init(LmnVkContext *c, GError **error)
{
    /* maxMemoryAllocationSize (Vulkan 1.1, which device selection requires) bounds a block. */
    VkPhysicalDeviceMaintenance3Properties m3 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                      .pNext = &m3};
    c->fn.vkGetPhysicalDeviceProperties2(c->desc.physical, &p2);
    c->alloc_max = m3.maxMemoryAllocationSize > 0 ? m3.maxMemoryAllocationSize : G_MAXUINT64;
    c->block_max = MIN((VkDeviceSize) BLOCK_SIZE_MAX, c->alloc_max);
    const char *staging = g_getenv("LAMINA_VK_STAGING");
    c->direct = c->mapped && !(staging != NULL && g_str_equal(staging, "1"));
    const char *limit = g_getenv("LAMINA_VK_MEMORY_LIMIT");
    if (limit != NULL && *limit != '\0')
        c->memory_limit = g_ascii_strtoull(limit, NULL, 10);
    if (!lmn_vk_guard_init(c, error))
        return FALSE;
    c->blocks = g_ptr_array_new();
    c->pending_frees = g_ptr_array_new();
    /* The dummy binding is never read for its contents: no zeroing (nothing records yet). */
    c->dummy = lmn_vk_buffer_alloc_uninit(c, 16, error);
    return c->dummy != NULL;
}

void lmn_vk_memory_cleanup(LmnVkContext *c)
{
    if (c->blocks == NULL)
        return;
    /* The device is idle at close (or lost): whatever is still pending goes. */
    c->done_serial = c->submit_serial + 1;
    lmn_vk_memory_collect(c);
    if (c->dummy != NULL)
        lmn_vk_buffer_release(c, c->dummy);
    /* Blocks still holding live spans belong to tensors the core failed to free; release all. */
    for (guint i = 0; i < c->blocks->len; i++)
        block_free(c, c->blocks->pdata[i]);
    g_ptr_array_unref(c->blocks);
    g_ptr_array_unref(c->pending_frees);
    c->blocks = NULL;
    lmn_vk_guard_cleanup(c);
}
