/* Lamina Vulkan backend — host transfers through a staging ring.
 *
 * One host-visible, coherent buffer (host-cached when the device has such memory, since reads
 * come back through it) is used as a ring.  A write copies the data into the ring and records a
 * vkCmdCopyBuffer into the command stream, so it costs no fence wait and stays ordered with the
 * recorded dispatches by the same range-overlap barriers (vk-exec.c).  Writes larger than what
 * is left go in pieces.  The ring is sized from the transfers it carries: it starts at 16 MiB and,
 * when one write is more than a quarter of it (a step's batch upload, say, which would then fill
 * the ring every few steps and wait for the device), it grows once to four times that write,
 * rounded up to a power of two, at most an eighth of its memory heap and 1 GiB.  Several
 * submissions may be in flight (vk-exec.c), each reading the ring span reserved while it was
 * recorded: reservations advance a 64-bit position (taken modulo the size) and each submission
 * records the position at its end, so when it completed the ring up to there is free.  A full ring
 * waits for the oldest submission still in flight (or, when the batch being recorded holds it all,
 * submits and waits).  A read records a copy into the ring, submits, waits and copies out, in
 * ring-sized pieces.
 *
 * With directly mapped memory (c->direct) a write goes through the mapping when the recorded
 * batch does not touch the bytes (the device cannot see the write before the next submission,
 * which follows it), and is staged otherwise: one memcpy more than a mapped write, but no wait
 * for the whole stream, which on every device measured costs more than the copy (the device
 * idles while the host waits, then the host idles while the device runs).  Reads wait for the
 * recorded work and copy through the mapping.  LAMINA_VK_STAGING=1 stages everything even on
 * mapped memory, so lavapipe tests the discrete-GPU path; LAMINA_VK_STAGING_SIZE=BYTES fixes the
 * ring size (no growth) so tests can exceed it.
 */
#include "vk-memory-type.h"
#include "vk-private.h"

#include <string.h>

#define RING_SIZE_DEFAULT (16u << 20)
#define RING_SIZE_MAX ((VkDeviceSize) 1 << 30)
#define RING_ALIGN 16u

struct _LmnVkStaging {
    VkBuffer buffer;
    VkDeviceMemory memory;
    void *mapped;
    VkDeviceSize size;
    guint64 head; /* bytes reserved since creation; the ring offset is head % size */
    guint64 tail; /* bytes freed: everything before it was consumed by completed submissions */
    guint64 submitted; /* head when the last submission was made */
    gboolean fixed;    /* LAMINA_VK_STAGING_SIZE: never grown */
    VkDeviceSize limit; /* the largest size growth may reach */
};

/* A batch is submitted once it has staged a quarter of the ring: the device starts on it while
 * the host records on, and by the time the ring comes round to that span its submission has
 * usually completed, where waiting for a full ring would have left the device idle meanwhile. */
#define RING_SUBMIT_FRACTION 4u

/* The ring carries readbacks as well as uploads: host-cached memory, where reads are fast. */
static guint32 ring_memory_type(LmnVkContext *c, guint32 type_bits)
{
    VkPhysicalDeviceMemoryProperties mem;
    c->fn.vkGetPhysicalDeviceMemoryProperties(c->desc.physical, &mem);
    return lmn_vk_memory_type_pick(&mem, LMN_VK_MEMORY_READBACK, FALSE, type_bits);
}

/* Creates the ring of @size bytes (the environment's when @size is 0); NULL with the deferred
 * error set when it cannot. */
static LmnVkStaging *ring_new(LmnVkContext *c, VkDeviceSize size)
{
    gboolean fixed = FALSE;
    if (size == 0) {
        size = RING_SIZE_DEFAULT;
        const char *env = g_getenv("LAMINA_VK_STAGING_SIZE");
        if (env != NULL && *env != '\0') {
            size = MAX(g_ascii_strtoull(env, NULL, 10), 256);
            fixed = TRUE;
        }
    }
    size = MIN(size, c->alloc_max) / RING_ALIGN * RING_ALIGN;
    LmnVkStaging *s = g_new0(LmnVkStaging, 1);
    s->size = size;
    s->fixed = fixed;
    VkBufferCreateInfo bi = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = size,
        .usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    VkResult r = c->fn.vkCreateBuffer(c->device, &bi, NULL, &s->buffer);
    if (r == VK_SUCCESS) {
        VkMemoryRequirements req;
        c->fn.vkGetBufferMemoryRequirements(c->device, s->buffer, &req);
        VkMemoryAllocateInfo ai = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
            .allocationSize = req.size,
            .memoryTypeIndex = ring_memory_type(c, req.memoryTypeBits),
        };
        r = ai.memoryTypeIndex == G_MAXUINT32
                ? VK_ERROR_FEATURE_NOT_PRESENT
                : c->fn.vkAllocateMemory(c->device, &ai, NULL, &s->memory);
        if (ai.memoryTypeIndex != G_MAXUINT32) {
            VkPhysicalDeviceMemoryProperties mem;
            c->fn.vkGetPhysicalDeviceMemoryProperties(c->desc.physical, &mem);
            const VkDeviceSize heap =
                mem.memoryHeaps[mem.memoryTypes[ai.memoryTypeIndex].heapIndex].size;
            s->limit = MAX(MIN(MIN(heap / 8, RING_SIZE_MAX), c->alloc_max), size);
        }
        if (r == VK_SUCCESS)
            r = c->fn.vkBindBufferMemory(c->device, s->buffer, s->memory, 0);
        if (r == VK_SUCCESS)
            r = c->fn.vkMapMemory(c->device, s->memory, 0, VK_WHOLE_SIZE, 0, &s->mapped);
    }
    if (r != VK_SUCCESS) {
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_OUT_OF_MEMORY,
                         "cannot create the %" G_GUINT64_FORMAT "-byte staging buffer for "
                         "transfers to Vulkan device '%s' (VkResult %d): free host memory, or "
                         "use --backend cpu",
                         (guint64) size, c->desc.props.deviceName, (int) r);
        if (s->memory != VK_NULL_HANDLE)
            c->fn.vkFreeMemory(c->device, s->memory, NULL);
        if (s->buffer != VK_NULL_HANDLE)
            c->fn.vkDestroyBuffer(c->device, s->buffer, NULL);
        g_free(s);
        return NULL;
    }
    return s;
}

/* The ring, created on first use (devices with mapped memory may never need it). */
static LmnVkStaging *ring_get(LmnVkContext *c)
{
    if (c->staging == NULL)
        c->staging = ring_new(c, 0);
    return c->staging;
}

static void ring_free(LmnVkContext *c, LmnVkStaging *s)
{
    c->fn.vkDestroyBuffer(c->device, s->buffer, NULL);
    c->fn.vkFreeMemory(c->device, s->memory, NULL);
    g_free(s);
}

/* Grows the ring for a write of @nbytes that is more than a quarter of it: four times the
 * write, a power of two, within the limit.  Waits once for the work in flight, which reads the
 * old ring; when the new one cannot be made, the old one stays (the write goes in pieces). */
static LmnVkStaging *ring_fit(LmnVkContext *c, LmnVkStaging *s, gsize nbytes)
{
    if (s->fixed || nbytes <= s->size / RING_SUBMIT_FRACTION || s->size >= s->limit)
        return s;
    VkDeviceSize want = s->size;
    while (want < s->limit && want / RING_SUBMIT_FRACTION < nbytes)
        want *= 2;
    want = MIN(want, s->limit);
    lmn_vk_wait_idle(c);
    if (c->lost != NULL || c->error != NULL)
        return s;
    GError *kept = NULL;
    LmnVkStaging *grown = ring_new(c, want);
    if (grown == NULL) {
        /* Not an error: the old ring still works.  Drop the deferred error ring_new set. */
        kept = c->error;
        c->error = NULL;
        g_clear_error(&kept);
        s->limit = s->size;
        return s;
    }
    grown->fixed = FALSE;
    grown->limit = MAX(grown->limit, s->limit);
    /* Positions continue, so marks taken by earlier submissions (all complete) stay below it. */
    grown->head = grown->tail = grown->submitted = s->head;
    ring_free(c, s);
    c->staging = grown;
    c->n_staging_grows++;
    return grown;
}

/* Reserves up to @want contiguous bytes of the ring at *@offset; a full ring first waits for
 * the oldest in-flight submission (whose span is then free), or submits and waits when the
 * recorded batch holds the whole ring.  Returns 0 when nothing can run (deferred error set). */
static VkDeviceSize ring_take(LmnVkContext *c, LmnVkStaging *s, VkDeviceSize want,
                              VkDeviceSize *offset)
{
    /* A submission forced by a full batch empties the ring: let it happen before this piece is
     * reserved, not between its memcpy and the copy command that reads it. */
    if (!lmn_vk_begin_command(c))
        return 0;
    while (s->head - s->tail >= s->size) {
        const gboolean waited = lmn_vk_wait_oldest(c);
        if (!waited)
            lmn_vk_wait_idle(c); /* the recorded batch holds it all */
        if (c->lost != NULL)
            return 0;
        if (!waited && s->head - s->tail >= s->size) {
            /* Nothing is in flight or recorded, so the ring is free unless submission failed. */
            lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                             "vulkan: the staging ring could not be freed");
            return 0;
        }
    }
    const VkDeviceSize at = s->head % s->size;
    /* Contiguous up to the free space and the ring's end (the next piece wraps). */
    const VkDeviceSize n = MIN(MIN(want, s->size - at), s->size - (s->head - s->tail));
    *offset = at;
    s->head += MIN((n + RING_ALIGN - 1) / RING_ALIGN * RING_ALIGN, s->size - at);
    return n;
}

void lmn_vk_host_write(LmnVkContext *c, const LmnVkBuffer *b, VkDeviceSize offset, const void *src,
                       gsize nbytes)
{
    if (nbytes == 0 || c->lost != NULL)
        return;
    const VkBuffer dst = lmn_vk_buffer_handle(b);
    VkDeviceSize at = b->offset + offset;
    if (c->direct && !lmn_vk_batch_touches(c, dst, at, at + nbytes)) {
        memcpy((char *) lmn_vk_buffer_map(b) + offset, src, nbytes);
        c->n_direct_writes++;
        return;
    }
    LmnVkStaging *s = ring_get(c);
    if (s == NULL)
        return;
    s = ring_fit(c, s, nbytes);
    c->n_staged_writes++;
    c->staged_bytes += nbytes;
    const char *p = src;
    while (nbytes > 0) {
        VkDeviceSize ring_at = 0, n = ring_take(c, s, nbytes, &ring_at);
        if (n == 0)
            return;
        memcpy((char *) s->mapped + ring_at, p, n);
        lmn_vk_record_copy(c, s->buffer, ring_at, dst, at, n);
        p += n;
        at += n;
        nbytes -= n;
    }
    if (s->head - s->submitted >= s->size / RING_SUBMIT_FRACTION)
        lmn_vk_submit_now(c);
}

gboolean lmn_vk_host_read(LmnVkContext *c, const LmnVkBuffer *b, VkDeviceSize offset, void *dst,
                          gsize nbytes)
{
    if (c->direct) {
        lmn_vk_wait_idle(c);
        if (c->lost != NULL)
            return FALSE;
        memcpy(dst, (const char *) lmn_vk_buffer_map(b) + offset, nbytes);
        return TRUE;
    }
    if (nbytes == 0)
        return c->lost == NULL;
    LmnVkStaging *s = ring_get(c);
    if (s == NULL)
        return FALSE;
    c->n_staged_reads++;
    c->staged_bytes += nbytes;
    const VkBuffer src = lmn_vk_buffer_handle(b);
    VkDeviceSize at = b->offset + offset;
    char *p = dst;
    while (nbytes > 0) {
        VkDeviceSize ring_at = 0, n = ring_take(c, s, nbytes, &ring_at);
        if (n == 0)
            return FALSE;
        lmn_vk_record_copy(c, src, at, s->buffer, ring_at, n);
        lmn_vk_wait_idle(c);
        if (c->lost != NULL || c->error != NULL)
            return FALSE;
        memcpy(p, (const char *) s->mapped + ring_at, n);
        p += n;
        at += n;
        nbytes -= n;
    }
    return TRUE;
}

VkDeviceSize lmn_vk_staging_size(LmnVkContext *c)
{
    return c->staging != NULL ? c->staging->size : 0;
}

guint64 lmn_vk_staging_mark(LmnVkContext *c)
{
    if (c->staging == NULL)
        return 0;
    c->staging->submitted = c->staging->head; /* only submissions take marks */
    return c->staging->head;
}

void lmn_vk_staging_retire(LmnVkContext *c, guint64 mark)
{
    /* Submissions complete in order, so marks only grow; a mark taken before the ring existed
     * (0) frees nothing. */
    if (c->staging != NULL)
        c->staging->tail = MAX(c->staging->tail, MIN(mark, c->staging->head));
}

void lmn_vk_staging_cleanup(LmnVkContext *c)
{
    LmnVkStaging *s = c->staging;
    if (s == NULL)
        return;
    ring_free(c, s);
    c->staging = NULL;
}
