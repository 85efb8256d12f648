/* lmn_vk_memory_type_pick on recorded VkPhysicalDeviceMemoryProperties of GPUs CI does not have.
 *
 * The sets are written by hand from the layouts `vulkaninfo` prints for these device classes
 * (memoryHeaps / memoryTypes, in the driver's order; heap sizes rounded):
 * - NVIDIA discrete without resizable BAR (GeForce RTX 3080, proprietary driver): heap 0 = 10 GiB
 *   VRAM (DEVICE_LOCAL), heap 1 = 16 GiB system memory, heap 2 = the 256 MiB BAR window
 *   (DEVICE_LOCAL); types 0: heap 1 none, 1: heap 0 DEVICE_LOCAL, 2: heap 1 HOST_VISIBLE|
 *   HOST_COHERENT, 3: heap 1 HOST_VISIBLE|HOST_COHERENT|HOST_CACHED, 4: heap 2 DEVICE_LOCAL|
 *   HOST_VISIBLE|HOST_COHERENT.
 * - A discrete GPU with resizable BAR (Radeon RX 6800, RADV with Smart Access Memory): heap 0 =
 *   16 GiB VRAM, heap 1 = 16 GiB system memory; types 0: heap 0 DEVICE_LOCAL, 1: heap 1
 *   HOST_VISIBLE|HOST_COHERENT, 2: heap 0 DEVICE_LOCAL|HOST_VISIBLE|HOST_COHERENT (the whole
 *   VRAM mappable), 3: heap 1 HOST_VISIBLE|HOST_COHERENT|HOST_CACHED.
 * - An integrated GPU (Intel UHD 770, ANV): one 24 GiB DEVICE_LOCAL heap; types 0: DEVICE_LOCAL,
 *   1: DEVICE_LOCAL|HOST_VISIBLE|HOST_COHERENT, 2: DEVICE_LOCAL|HOST_VISIBLE|HOST_COHERENT|
 *   HOST_CACHED.
 * - lavapipe (Mesa llvmpipe): one 2 GiB DEVICE_LOCAL heap, one type with every host flag.
 */
#include "vk-memory-type.h"

#define L VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT
#define H (VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT)
#define C VK_MEMORY_PROPERTY_HOST_CACHED_BIT
#define GIB (G_GUINT64_CONSTANT(1) << 30)
#define MIB (G_GUINT64_CONSTANT(1) << 20)

typedef struct {
    const char *name;
    gboolean shared; /* integrated or CPU device */
    VkPhysicalDeviceMemoryProperties mem;
    guint32 device, upload, readback; /* the expected picks */
} Recorded;

static const Recorded recorded[] = {
    {"nvidia-discrete-bar256",
     FALSE,
     {.memoryTypeCount = 5,
      .memoryTypes = {{0, 1}, {L, 0}, {H, 1}, {H | C, 1}, {L | H, 2}},
      .memoryHeapCount = 3,
      .memoryHeaps = {{10 * GIB, VK_MEMORY_HEAP_DEVICE_LOCAL_BIT},
                      {16 * GIB, 0},
                      {256 * MIB, VK_MEMORY_HEAP_DEVICE_LOCAL_BIT}}},
     1,
     2,
     3},
    {"rebar-discrete",
     FALSE,
     {.memoryTypeCount = 4,
      .memoryTypes = {{L, 0}, {H, 1}, {L | H, 0}, {H | C, 1}},
      .memoryHeapCount = 2,
      .memoryHeaps = {{16 * GIB, VK_MEMORY_HEAP_DEVICE_LOCAL_BIT}, {16 * GIB, 0}}},
     0,
     1,
     3},
    {"integrated",
     TRUE,
     {.memoryTypeCount = 3,
      .memoryTypes = {{L, 0}, {L | H, 0}, {L | H | C, 0}},
      .memoryHeapCount = 1,
      .memoryHeaps = {{24 * GIB, VK_MEMORY_HEAP_DEVICE_LOCAL_BIT}}},
     1,
     1,
     2},
    {"lavapipe",
     TRUE,
     {.memoryTypeCount = 1,
      .memoryTypes = {{L | H | C, 0}},
      .memoryHeapCount = 1,
      .memoryHeaps = {{2 * GIB, VK_MEMORY_HEAP_DEVICE_LOCAL_BIT}}},
     0,
     0,
     0},
};

static void test_recorded(gconstpointer data)
{
    const Recorded *r = data;
    g_assert_cmpuint(lmn_vk_memory_type_pick(&r->mem, LMN_VK_MEMORY_DEVICE, r->shared, G_MAXUINT32),
                     ==, r->device);
    g_assert_cmpuint(lmn_vk_memory_type_pick(&r->mem, LMN_VK_MEMORY_UPLOAD, r->shared, G_MAXUINT32),
                     ==, r->upload);
    g_assert_cmpuint(
        lmn_vk_memory_type_pick(&r->mem, LMN_VK_MEMORY_READBACK, r->shared, G_MAXUINT32), ==,
        r->readback);
}

/* memoryTypeBits restricts the choice: without the cached type readback falls back to the
 * coherent one, and a buffer allowing no host-visible type gets none. */
static void test_type_bits(void)
{
    const VkPhysicalDeviceMemoryProperties *nv = &recorded[0].mem;
    g_assert_cmpuint(lmn_vk_memory_type_pick(nv, LMN_VK_MEMORY_READBACK, FALSE, ~(1u << 3)), ==, 2);
    g_assert_cmpuint(lmn_vk_memory_type_pick(nv, LMN_VK_MEMORY_UPLOAD, FALSE, 1u << 4), ==, 4);
    g_assert_cmpuint(lmn_vk_memory_type_pick(nv, LMN_VK_MEMORY_READBACK, FALSE, 1u << 1), ==,
                     G_MAXUINT32);
    /* Without VRAM's type, tensors go to the BAR window before system memory. */
    g_assert_cmpuint(lmn_vk_memory_type_pick(nv, LMN_VK_MEMORY_DEVICE, FALSE, ~(1u << 1)), ==, 4);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (guint i = 0; i < G_N_ELEMENTS(recorded); i++) {
        g_autofree char *path = g_strdup_printf("/vulkan/memory-type/%s", recorded[i].name);
        g_test_add_data_func(path, &recorded[i], test_recorded);
    }
    g_test_add_func("/vulkan/memory-type/type-bits", test_type_bits);
    return g_test_run();
}
