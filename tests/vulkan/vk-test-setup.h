/* Lamina tests — the set-up every Vulkan test program shares. */
#pragma once

#include <lamina/lamina.h>

G_BEGIN_DECLS

/* Where Debian's vulkan-validationlayers installs the Khronos validation layer's manifest. */
#define LMN_VK_TEST_VALIDATION_LAYER_JSON                                                          \
    "/usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json"

/**
 * lmn_vk_test_setup:
 * @registry_out: (out): a new registry with every plugin scanned
 * @cpu_out: (out): the CPU backend, the oracle of every Vulkan test
 * Points XDG_CACHE_HOME under the build tree (LMN_TEST_BUILD_DIR) so the pipeline cache stays out
 * of the user's ~/.cache.  In AddressSanitizer builds it pins lavapipe's driver: lavapipe keeps a
 * process-wide allocation that becomes unreachable when the loader unloads the driver at
 * vkDestroyInstance, which LeakSanitizer would report.
 * Returns: whether tests should enable the validation layer: it is installed, and this is not a
 *   sanitizer build (the layer leaks objects of its own, which LeakSanitizer reports at exit)
 */
gboolean lmn_vk_test_setup(LmnRegistry **registry_out, LmnBackend **cpu_out);

/**
 * lmn_vk_test_device:
 * The device the comparison programs open: LMN_VK_TEST_DEVICE when set and not empty (an index
 * or a name substring, as --device takes), else "lavapipe", the device CI has.  The same programs
 * then check a real GPU against the CPU backend (bench/gpu/device-check.sh sets it).
 * Returns: (transfer none): the device selector
 */
const char *lmn_vk_test_device(void);

G_END_DECLS
