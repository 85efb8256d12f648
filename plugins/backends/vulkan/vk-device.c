/* Lamina Vulkan backend — the loader, the instance, device enumeration and selection.
 *
 * libvulkan is opened with dlopen so that a machine without a Vulkan loader gets a clear
 * NO_DEVICE error instead of a plugin that fails to load.  Selection follows DESIGN.md §4: no
 * selector means the first discrete, then integrated GPU; lavapipe (a CPU device) is used only
 * when asked for by index or name, so `backend = auto` falls back to the CPU backend quickly.
 */
#include "vk-memory-type.h"
#include "vk-private.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

const char *lmn_vk_device_type_name(VkPhysicalDeviceType type)
{
    switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
        return "discrete GPU";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
        return "integrated GPU";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
        return "virtual GPU";
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
        return "cpu";
    default:
        return "other";
    }
}

static VKAPI_ATTR VkBool32 VKAPI_CALL debug_callback(
    VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT types,
    const VkDebugUtilsMessengerCallbackDataEXT *data, void *user)
{
    LmnVkContext *c = user;
    if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) {
        g_atomic_int_inc(&c->validation_errors);
        g_mutex_lock(&c->validation_lock);
        if (c->first_validation_message == NULL)
            c->first_validation_message = g_strdup(data->pMessage);
        g_mutex_unlock(&c->validation_lock);
    }
    return VK_FALSE;
}

static gboolean has_layer(LmnVkContext *c, const char *name)
{
    guint32 n = 0;
    if (c->fn.vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0)
        return FALSE;
    g_autofree VkLayerProperties *layers = g_new(VkLayerProperties, n);
    c->fn.vkEnumerateInstanceLayerProperties(&n, layers);
    for (guint32 i = 0; i < n; i++)
        if (g_str_equal(layers[i].layerName, name))
            return TRUE;
    return FALSE;
}

/* The loader unloads a driver with the last instance that uses it.  Drivers keep process-wide
 * state (lavapipe's is a heap block) that then becomes unreachable, so every `backend = auto`
 * probe on a machine without a GPU would leak it.  One plain instance created on first use and
 * kept for the life of the process — like the plugin and the loader, which are never unloaded —
 * keeps the drivers resident.  Failure is harmless: the real instance reports its own error. */
static VkInstance resident_instance = VK_NULL_HANDLE;

static void keep_drivers_resident(LmnVkContext *c)
{
    static gsize once = 0;
    if (!g_once_init_enter(&once))
        return;
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "lamina",
        .apiVersion = VK_API_VERSION_1_2,
    };
    VkInstanceCreateInfo info = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pApplicationInfo = &app,
    };
    if (c->fn.vkCreateInstance(&info, NULL, &resident_instance) != VK_SUCCESS)
        resident_instance = VK_NULL_HANDLE;
    g_once_init_leave(&once, 1);
}

/* Opens the loader (LAMINA_VK_LOADER names another one, e.g. one unpacked outside the library
 * path) and its global functions. */
static gboolean open_loader(LmnVkContext *c, GError **error)
{
    const char *lib = g_getenv("LAMINA_VK_LOADER");
    if (lib == NULL || *lib == '\0')
        lib = "libvulkan.so.1";
    c->loader = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (c->loader == NULL) {
        g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_NO_DEVICE,
                    "no Vulkan loader: cannot open %s (%s); install the Vulkan loader and a "
                    "driver (Debian: libvulkan1 with mesa-vulkan-drivers or the GPU vendor's "
                    "driver), or use --backend cpu",
                    lib, dlerror());
        return FALSE;
    }
    c->fn.vkGetInstanceProcAddr =
        (PFN_vkGetInstanceProcAddr) (gpointer) dlsym(c->loader, "vkGetInstanceProcAddr");
    if (c->fn.vkGetInstanceProcAddr == NULL) {
        g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_NO_DEVICE,
                    "no Vulkan loader: %s lacks vkGetInstanceProcAddr", lib);
        return FALSE;
    }
#define LOAD_GLOBAL(name)                                                                          \
    c->fn.name = (PFN_##name) c->fn.vkGetInstanceProcAddr(VK_NULL_HANDLE, #name);                  \
    if (c->fn.name == NULL) {                                                                      \
        g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_NO_DEVICE,                         \
                    "the Vulkan loader lacks %s", #name);                                          \
        return FALSE;                                                                              \
    }
    LMN_VK_GLOBAL_FNS(LOAD_GLOBAL)
#undef LOAD_GLOBAL
    keep_drivers_resident(c);
    return TRUE;
}

/* A Vulkan 1.2 instance, with the validation layer (and synchronization validation) when
 * @use_validation. */
static gboolean create_instance(LmnVkContext *c, gboolean use_validation, GError **error)
{
    const char *layer = "VK_LAYER_KHRONOS_validation";
    const char *extensions[] = {VK_EXT_DEBUG_UTILS_EXTENSION_NAME};
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "lamina",
        .pEngineName = "lamina",
        .apiVersion = VK_API_VERSION_1_2,
    };
    /* Synchronization validation checks the range-overlap barriers of vk-exec.c: a missing one
     * is a hazard error even on lavapipe, which happens to run dispatches in order. */
    const VkValidationFeatureEnableEXT enables[] = {
        VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT};
    VkValidationFeaturesEXT features = {
        .sType = VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT,
        .enabledValidationFeatureCount = G_N_ELEMENTS(enables),
        .pEnabledValidationFeatures = enables,
    };
    VkInstanceCreateInfo info = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pNext = use_validation ? &features : NULL,
        .pApplicationInfo = &app,
        .enabledLayerCount = use_validation ? 1 : 0,
        .ppEnabledLayerNames = use_validation ? &layer : NULL,
        .enabledExtensionCount = use_validation ? 1 : 0,
        .ppEnabledExtensionNames = use_validation ? extensions : NULL,
    };
    VkResult r = c->fn.vkCreateInstance(&info, NULL, &c->instance);
    if (r != VK_SUCCESS) {
        g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_NO_DEVICE,
                    "cannot create a Vulkan instance (VkResult %d): no usable Vulkan driver; "
                    "install one (Debian: mesa-vulkan-drivers, or the GPU vendor's), check "
                    "VK_ICD_FILENAMES, or use --backend cpu",
                    (int) r);
        return FALSE;
    }
    return TRUE;
}

/* The instance-level functions (required and optional). */
static gboolean load_instance_fns(LmnVkContext *c, GError **error)
{
#define LOAD_INSTANCE(name)                                                                        \
    c->fn.name = (PFN_##name) c->fn.vkGetInstanceProcAddr(c->instance, #name);                     \
    if (c->fn.name == NULL) {                                                                      \
        g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_NO_DEVICE,                         \
                    "the Vulkan instance lacks %s (Vulkan 1.1 is required)", #name);               \
        return FALSE;                                                                              \
    }
    LMN_VK_INSTANCE_FNS(LOAD_INSTANCE)
#undef LOAD_INSTANCE
#define LOAD_OPTIONAL(name)                                                                        \
    c->fn.name = (PFN_##name) c->fn.vkGetInstanceProcAddr(c->instance, #name);
    LMN_VK_OPTIONAL_FNS(LOAD_OPTIONAL)
#undef LOAD_OPTIONAL
    return TRUE;
}

/* Routes validation errors and warnings to debug_callback(). */
static void add_debug_messenger(LmnVkContext *c)
{
    if (c->fn.vkCreateDebugUtilsMessengerEXT == NULL)
        return;
    VkDebugUtilsMessengerCreateInfoEXT m = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = debug_callback,
        .pUserData = c,
    };
    c->fn.vkCreateDebugUtilsMessengerEXT(c->instance, &m, NULL, &c->messenger);
}

gboolean lmn_vk_load_instance(LmnVkContext *c, gboolean validation, GError **error)
{
    if (!open_loader(c, error))
        return FALSE;
    const char *layer = "VK_LAYER_KHRONOS_validation";
    gboolean use_validation = validation && has_layer(c, layer);
    if (validation && !use_validation)
        g_warning("vulkan: validation requested but %s is not installed", layer);
    if (!create_instance(c, use_validation, error) || !load_instance_fns(c, error))
        return FALSE;
    if (use_validation)
        add_debug_messenger(c);
    return TRUE;
}

void lmn_vk_close_instance(LmnVkContext *c)
{
    if (c->messenger != VK_NULL_HANDLE)
        c->fn.vkDestroyDebugUtilsMessengerEXT(c->instance, c->messenger, NULL);
    if (c->instance != VK_NULL_HANDLE)
        c->fn.vkDestroyInstance(c->instance, NULL);
    /* The loader stays loaded (as plugins do): drivers keep process-wide state that would leak,
     * or dangle, if their code were unmapped. */
    c->instance = VK_NULL_HANDLE;
    c->loader = NULL;
}

GArray *lmn_vk_enumerate(LmnVkContext *c, GError **error)
{
    guint32 n = 0;
    VkResult r = c->fn.vkEnumeratePhysicalDevices(c->instance, &n, NULL);
    GArray *devices = g_array_new(FALSE, TRUE, sizeof(LmnVkDeviceDesc));
    if (r != VK_SUCCESS || n == 0)
        return devices;
    g_autofree VkPhysicalDevice *phys = g_new(VkPhysicalDevice, n);
    c->fn.vkEnumeratePhysicalDevices(c->instance, &n, phys);
    for (guint32 i = 0; i < n; i++) {
        LmnVkDeviceDesc d = {.physical = phys[i]};
        c->fn.vkGetPhysicalDeviceProperties(phys[i], &d.props);
        if (d.props.apiVersion < VK_API_VERSION_1_1)
            continue; /* properties2, subgroups and storage-buffer layouts need 1.1 */
        VkPhysicalDeviceDriverProperties drv = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
        VkPhysicalDeviceSubgroupProperties sub = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES,
            .pNext = d.props.apiVersion >= VK_API_VERSION_1_2 ? &drv : NULL};
        VkPhysicalDeviceIDProperties id = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES,
                                           .pNext = &sub};
        VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                          .pNext = &id};
        c->fn.vkGetPhysicalDeviceProperties2(phys[i], &p2);
        memcpy(d.uuid, id.deviceUUID, VK_UUID_SIZE);
        d.subgroup_size = sub.subgroupSize;
        d.subgroup_shuffle =
            (sub.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) != 0 &&
            (sub.supportedOperations & VK_SUBGROUP_FEATURE_SHUFFLE_RELATIVE_BIT) != 0 &&
            sub.subgroupSize >= 2 && sub.subgroupSize <= LMN_VK_LOCAL_SIZE &&
            (sub.subgroupSize & (sub.subgroupSize - 1)) == 0;
        g_strlcpy(d.driver_name, drv.driverName[0] ? drv.driverName : "unknown",
                  sizeof d.driver_name);
        g_strlcpy(d.driver_info, drv.driverInfo, sizeof d.driver_info);
        d.is_lavapipe = drv.driverID == VK_DRIVER_ID_MESA_LLVMPIPE ||
                        strstr(d.props.deviceName, "llvmpipe") != NULL;
        VkPhysicalDeviceMemoryProperties mem;
        c->fn.vkGetPhysicalDeviceMemoryProperties(phys[i], &mem);
        for (guint32 h = 0; h < mem.memoryHeapCount; h++)
            if (mem.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
                d.memory_bytes = MAX(d.memory_bytes, mem.memoryHeaps[h].size);
        g_array_append_val(devices, d);
    }
    (void) error;
    return devices;
}

gint lmn_vk_auto_index(GArray *devices)
{
    const VkPhysicalDeviceType order[] = {VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU,
                                          VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU};
    for (guint o = 0; o < G_N_ELEMENTS(order); o++)
        for (guint i = 0; i < devices->len; i++)
            if (g_array_index(devices, LmnVkDeviceDesc, i).props.deviceType == order[o])
                return (gint) i;
    return -1;
}

static char *device_list_text(GArray *devices)
{
    GString *s = g_string_new(NULL);
    for (guint i = 0; i < devices->len; i++) {
        const LmnVkDeviceDesc *d = &g_array_index(devices, LmnVkDeviceDesc, i);
        g_string_append_printf(s, "%s%u: %s (%s)", i ? ", " : "", i, d->props.deviceName,
                               lmn_vk_device_type_name(d->props.deviceType));
    }
    if (devices->len == 0)
        g_string_append(s, "none");
    return g_string_free(s, FALSE);
}

static gboolean matches(const LmnVkDeviceDesc *d, const char *selector)
{
    g_autofree char *sel = g_ascii_strdown(selector, -1);
    g_autofree char *name = g_ascii_strdown(d->props.deviceName, -1);
    g_autofree char *driver = g_ascii_strdown(d->driver_name, -1);
    if (d->is_lavapipe && g_str_equal(sel, "lavapipe"))
        return TRUE; /* Mesa's Vulkan driver calls itself llvmpipe */
    return strstr(name, sel) != NULL || strstr(driver, sel) != NULL;
}

/* Picks the device for @selector (NULL or "" = auto); -1 with @error when none fits. */
static gint select_device(GArray *devices, const char *selector, GError **error)
{
    g_autofree char *list = device_list_text(devices);
    if (selector == NULL || *selector == '\0') {
        gint i = lmn_vk_auto_index(devices);
        if (i < 0) {
            gboolean lavapipe = FALSE;
            for (guint j = 0; j < devices->len; j++)
                lavapipe |= g_array_index(devices, LmnVkDeviceDesc, j).is_lavapipe;
            g_set_error(
                error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_NO_DEVICE,
                "no GPU%s (Vulkan devices: %s); use --backend cpu, or name a device",
                lavapipe ? "; lavapipe is used only when asked for (--device lavapipe)" : "", list);
        }
        return i;
    }
    gboolean numeric = TRUE;
    for (const char *p = selector; *p; p++)
        numeric &= g_ascii_isdigit(*p);
    if (numeric) {
        guint64 i = g_ascii_strtoull(selector, NULL, 10);
        if (i < devices->len)
            return (gint) i;
    } else {
        for (guint i = 0; i < devices->len; i++)
            if (matches(&g_array_index(devices, LmnVkDeviceDesc, i), selector))
                return (gint) i;
    }
    g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_NO_DEVICE,
                "no Vulkan device '%s' (devices: %s); give an index or a part of a name "
                "(`lamina devices` lists them)",
                selector, list);
    return -1;
}

/* The memory type for tensors (lmn_vk_memory_type_pick); the host reaches it through a mapping
 * when it is host-visible and coherent, otherwise through the staging ring. */
static guint32 pick_memory_type(LmnVkContext *c)
{
    VkPhysicalDeviceMemoryProperties mem;
    c->fn.vkGetPhysicalDeviceMemoryProperties(c->desc.physical, &mem);
    const VkMemoryPropertyFlags host =
        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    const gboolean shared = c->desc.props.deviceType == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU ||
                            c->desc.props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    const guint32 pick = lmn_vk_memory_type_pick(&mem, LMN_VK_MEMORY_DEVICE, shared, G_MAXUINT32);
    if (pick != G_MAXUINT32)
        c->mapped = (mem.memoryTypes[pick].propertyFlags & host) == host;
    return pick;
}

/* LAMINA_VK_PUSH_DESCRIPTORS (0 or 1, default 1), LAMINA_VK_CHANNEL_SPLITS (1 to 64, default
 * from the shape: c->channel_splits 0), LAMINA_VK_SUBGROUPS (0 or 1, default 1: where the device
 * has them) and LAMINA_VK_SCATTER (sort or scan, default sort), read
 * once when the device opens; anything else is an error naming the variable, not a silent
 * default. */
static gboolean read_test_knobs(LmnVkContext *c, GError **error)
{
    const char *push = g_getenv("LAMINA_VK_PUSH_DESCRIPTORS");
    c->push_descriptors = TRUE;
    if (push != NULL && *push != '\0') {
        if (!g_str_equal(push, "0") && !g_str_equal(push, "1")) {
            g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                        "LAMINA_VK_PUSH_DESCRIPTORS = '%s': expected 0 (descriptor sets from "
                        "pools) or 1 (push descriptors where the device has them); unset it",
                        push);
            return FALSE;
        }
        c->push_descriptors = g_str_equal(push, "1");
    }
    const char *splits = g_getenv("LAMINA_VK_CHANNEL_SPLITS");
    c->channel_splits = 0;
    if (splits != NULL && *splits != '\0') {
        guint64 v = 0;
        if (!g_ascii_string_to_unsigned(splits, 10, 1, 64, &v, NULL)) {
            g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                        "LAMINA_VK_CHANNEL_SPLITS = '%s': expected a whole number of workgroups "
                        "per channel from 1 to 64; unset it for the default (one per 8192 "
                        "samples)",
                        splits);
            return FALSE;
        }
        c->channel_splits = (guint32) v;
    }
    const char *subgroups = g_getenv("LAMINA_VK_SUBGROUPS");
    c->subgroup_reduce = c->desc.subgroup_shuffle;
    if (subgroups != NULL && *subgroups != '\0') {
        if (!g_str_equal(subgroups, "0") && !g_str_equal(subgroups, "1")) {
            g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                        "LAMINA_VK_SUBGROUPS = '%s': expected 0 (reductions in shared memory "
                        "only) or 1 (subgroup shuffles where the device has them); unset it",
                        subgroups);
            return FALSE;
        }
        c->subgroup_reduce = c->desc.subgroup_shuffle && g_str_equal(subgroups, "1");
    }
    const char *scatter = g_getenv("LAMINA_VK_SCATTER");
    c->scatter_scan = FALSE;
    if (scatter != NULL && *scatter != '\0') {
        if (!g_str_equal(scatter, "sort") && !g_str_equal(scatter, "scan")) {
            g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                        "LAMINA_VK_SCATTER = '%s': expected 'sort' (scatter_add_rows by sorting "
                        "its indices, the default) or 'scan' (one invocation per table element "
                        "scanning every index, for comparison); unset it",
                        scatter);
            return FALSE;
        }
        c->scatter_scan = g_str_equal(scatter, "scan");
    }
    return TRUE;
}

/* Whether the chosen physical device offers device extension @name. */
static gboolean has_device_extension(LmnVkContext *c, const char *name)
{
    guint32 n = 0;
    if (c->fn.vkEnumerateDeviceExtensionProperties(c->desc.physical, NULL, &n, NULL) != VK_SUCCESS)
        return FALSE;
    g_autofree VkExtensionProperties *props = g_new0(VkExtensionProperties, MAX(n, 1));
    if (c->fn.vkEnumerateDeviceExtensionProperties(c->desc.physical, NULL, &n, props) != VK_SUCCESS)
        return FALSE;
    for (guint32 i = 0; i < n; i++)
        if (g_str_equal(props[i].extensionName, name))
            return TRUE;
    return FALSE;
}

gboolean lmn_vk_open_device(LmnVkContext *c, const char *selector, GError **error)
{
    g_autoptr(GArray) devices = lmn_vk_enumerate(c, error);
    if (devices == NULL)
        return FALSE;
    gint index = select_device(devices, selector, error);
    if (index < 0)
        return FALSE;
    c->desc = g_array_index(devices, LmnVkDeviceDesc, index);

    guint32 nq = 0;
    c->fn.vkGetPhysicalDeviceQueueFamilyProperties(c->desc.physical, &nq, NULL);
    g_autofree VkQueueFamilyProperties *q = g_new0(VkQueueFamilyProperties, MAX(nq, 1));
    c->fn.vkGetPhysicalDeviceQueueFamilyProperties(c->desc.physical, &nq, q);
    c->queue_family = G_MAXUINT32;
    for (guint32 i = 0; i < nq && c->queue_family == G_MAXUINT32; i++)
        if (q[i].queueFlags & VK_QUEUE_COMPUTE_BIT)
            c->queue_family = i;
    c->memory_type = pick_memory_type(c);
    if (c->queue_family == G_MAXUINT32 || c->memory_type == G_MAXUINT32) {
        g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                    "Vulkan device '%s' has no %s", c->desc.props.deviceName,
                    c->queue_family == G_MAXUINT32 ? "compute queue"
                                                   : "device-local or host-visible memory");
        return FALSE;
    }
    float priority = 1.0f;
    VkDeviceQueueCreateInfo qi = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = c->queue_family,
        .queueCount = 1,
        .pQueuePriorities = &priority,
    };
    if (!read_test_knobs(c, error))
        return FALSE;
    const char *push_ext = VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME;
    c->push_descriptors = c->push_descriptors && has_device_extension(c, push_ext);
    VkDeviceCreateInfo di = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qi,
        .enabledExtensionCount = c->push_descriptors ? 1 : 0,
        .ppEnabledExtensionNames = c->push_descriptors ? &push_ext : NULL,
    };
    VkResult r = c->fn.vkCreateDevice(c->desc.physical, &di, NULL, &c->device);
    if (r != VK_SUCCESS) {
        g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_NO_DEVICE,
                    "cannot create a logical device on '%s' (VkResult %d)",
                    c->desc.props.deviceName, (int) r);
        return FALSE;
    }
    c->fn.vkGetDeviceQueue(c->device, c->queue_family, 0, &c->queue);
    if (c->push_descriptors) {
        /* Through the instance: it dispatches to the device the command buffer belongs to. */
        c->fn.vkCmdPushDescriptorSetKHR =
            (PFN_vkCmdPushDescriptorSetKHR) c->fn.vkGetInstanceProcAddr(
                c->instance, "vkCmdPushDescriptorSetKHR");
        c->push_descriptors = c->fn.vkCmdPushDescriptorSetKHR != NULL;
    }

    const VkPhysicalDeviceLimits *lim = &c->desc.props.limits;
    c->max_range = lim->maxStorageBufferRange;
    const char *override = g_getenv("LAMINA_VK_MAX_STORAGE_RANGE");
    if (override != NULL && *override != '\0') {
        guint64 v = g_ascii_strtoull(override, NULL, 10);
        /* Lowering only: a larger value than the device allows would be invalid usage. */
        if (v >= 1024 && v < c->max_range)
            c->max_range = v;
    }
    c->alignment = MAX(lim->minStorageBufferOffsetAlignment, 16);
    c->max_groups_x = MIN(lim->maxComputeWorkGroupCount[0], 65535u);
    /* The GEMM kernel and its tiles (vk-gemm.c; LAMINA_VK_GEMM overrides the choice). */
    const char *gemm = lmn_vk_gemm_select(c);
    c->description = g_strdup_printf(
        "vulkan: %s (%s, %s %s), max storage range %" G_GUINT64_FORMAT " bytes, %s gemm",
        c->desc.props.deviceName, lmn_vk_device_type_name(c->desc.props.deviceType),
        c->desc.driver_name, c->desc.driver_info, (guint64) c->max_range,
        gemm);
    return TRUE;
}

GPtrArray *lmn_vk_list_devices(const LmnParams *params, gint *auto_index, GError **error)
{
    LmnVkContext c = {0};
    g_mutex_init(&c.validation_lock);
    GPtrArray *out = NULL;
    if (lmn_vk_load_instance(&c, FALSE, error)) {
        g_autoptr(GArray) devices = lmn_vk_enumerate(&c, error);
        if (devices != NULL) {
            out = g_ptr_array_new_with_free_func(lmn_device_info_free);
            gint pick = lmn_vk_auto_index(devices);
            for (guint i = 0; i < devices->len; i++) {
                const LmnVkDeviceDesc *d = &g_array_index(devices, LmnVkDeviceDesc, i);
                LmnDeviceInfo *info = g_new0(LmnDeviceInfo, 1);
                info->struct_size = sizeof(LmnDeviceInfo);
                info->name = g_strdup(d->props.deviceName);
                info->driver = g_strdup_printf("%s %s", d->driver_name, d->driver_info);
                switch (d->props.deviceType) {
                case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
                    info->type = LMN_DEVICE_DISCRETE_GPU;
                    break;
                case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
                    info->type = LMN_DEVICE_INTEGRATED_GPU;
                    break;
                case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
                    info->type = LMN_DEVICE_VIRTUAL_GPU;
                    break;
                case VK_PHYSICAL_DEVICE_TYPE_CPU:
                    info->type = LMN_DEVICE_CPU;
                    break;
                default:
                    info->type = LMN_DEVICE_OTHER;
                }
                info->memory_bytes = d->memory_bytes;
                const VkPhysicalDeviceLimits *lim = &d->props.limits;
                info->details = g_strdup_printf(
                    "maxStorageBufferRange %u, maxComputeWorkGroupInvocations %u, subgroup "
                    "size %u, driver version 0x%x%s%s",
                    lim->maxStorageBufferRange, lim->maxComputeWorkGroupInvocations,
                    d->subgroup_size, d->props.driverVersion, (gint) i == pick ? ", auto" : "",
                    d->is_lavapipe ? ", only by name or index" : "");
                g_ptr_array_add(out, info);
            }
            if (auto_index != NULL)
                *auto_index = pick;
        }
    }
    lmn_vk_close_instance(&c);
    g_free(c.first_validation_message);
    g_mutex_clear(&c.validation_lock);
    return out;
}
