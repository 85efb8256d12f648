/* Lamina Vulkan backend — the choice of a memory type, as a pure function of the device's
 * VkPhysicalDeviceMemoryProperties (so it is unit-tested on recorded property sets of GPUs CI
 * does not have: tests/vulkan/test-vulkan-memory-type.c).
 */
#pragma once

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include <glib.h>

G_BEGIN_DECLS

/* What the memory is for. */
typedef enum {
    LMN_VK_MEMORY_DEVICE,   /* tensors: device-local, where compute is fast */
    LMN_VK_MEMORY_UPLOAD,   /* host writes, device reads: host-visible, coherent, not the BAR */
    LMN_VK_MEMORY_READBACK, /* device writes, host reads: host-visible, coherent, cached */
} LmnVkMemoryUse;

/* Returns the index of the memory type in @mem to allocate for @use among the types allowed by
 * @type_bits (VkMemoryRequirements.memoryTypeBits; G_MAXUINT32 for any), or G_MAXUINT32 when no
 * type fits.  @shared_memory is TRUE on devices sharing memory with the host (integrated GPUs,
 * CPU devices): there a device-local type that is also host-visible and coherent is preferred
 * for tensors, so the host reaches them through a mapping.  On a discrete GPU tensors get the
 * device-local type on the largest device-local heap (the 256 MiB BAR window loses to VRAM).
 * Ties go to the lowest index, the order the driver lists its preferred types in. */
guint32 lmn_vk_memory_type_pick(const VkPhysicalDeviceMemoryProperties *mem, LmnVkMemoryUse use,
                                gboolean shared_memory, guint32 type_bits);

G_END_DECLS
