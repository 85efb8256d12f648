/* Lamina Vulkan backend — memory-type choice (see vk-memory-type.h). */
#include "vk-memory-type.h"

#define HOST (VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT)
#define LOCAL VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT
#define CACHED VK_MEMORY_PROPERTY_HOST_CACHED_BIT

/* One preference: the flags a type must have and those it must not. */
typedef struct {
    VkMemoryPropertyFlags want, avoid;
} Pref;

static VkDeviceSize heap_size(const VkPhysicalDeviceMemoryProperties *mem, guint32 type)
{
    return mem->memoryHeaps[mem->memoryTypes[type].heapIndex].size;
}

static guint32 pick(const VkPhysicalDeviceMemoryProperties *mem, const Pref *prefs, guint n_prefs,
                    guint32 type_bits, gboolean largest_heap)
{
    for (guint p = 0; p < n_prefs; p++) {
        guint32 best = G_MAXUINT32;
        for (guint32 i = 0; i < mem->memoryTypeCount && i < 32; i++) {
            const VkMemoryPropertyFlags f = mem->memoryTypes[i].propertyFlags;
            if (!(type_bits & (1u << i)) || (f & prefs[p].want) != prefs[p].want ||
                (f & prefs[p].avoid) != 0)
                continue;
            if (best == G_MAXUINT32 || (largest_heap && heap_size(mem, i) > heap_size(mem, best)))
                best = i;
        }
        if (best != G_MAXUINT32)
            return best;
    }
    return G_MAXUINT32;
}

guint32 lmn_vk_memory_type_pick(const VkPhysicalDeviceMemoryProperties *mem, LmnVkMemoryUse use,
                                gboolean shared_memory, guint32 type_bits)
{
    /* Shared memory: a mapped device-local type first; a discrete GPU: VRAM, host-visible only
     * with a full-size resizable BAR.  Host-visible memory is the last resort for tensors. */
    static const Pref shared[] = {{LOCAL | HOST, 0}, {LOCAL, 0}, {HOST, 0}};
    static const Pref discrete[] = {{LOCAL, 0}, {HOST, 0}};
    /* Uploads are written once, sequentially: system memory (not the small BAR window, which
     * tensors or other drivers' uses may need), uncached is fine (write-combined). */
    static const Pref upload[] = {{HOST, LOCAL}, {HOST, 0}};
    /* Readback is read by the CPU: uncached reads are an order of magnitude slower. */
    static const Pref readback[] = {{HOST | CACHED, 0}, {HOST, 0}};
    switch (use) {
    case LMN_VK_MEMORY_DEVICE:
        return shared_memory ? pick(mem, shared, G_N_ELEMENTS(shared), type_bits, TRUE)
                             : pick(mem, discrete, G_N_ELEMENTS(discrete), type_bits, TRUE);
    case LMN_VK_MEMORY_UPLOAD:
        return pick(mem, upload, G_N_ELEMENTS(upload), type_bits, FALSE);
    case LMN_VK_MEMORY_READBACK:
        return pick(mem, readback, G_N_ELEMENTS(readback), type_bits, FALSE);
    }
    return G_MAXUINT32;
}
