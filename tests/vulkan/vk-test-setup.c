/* Lamina tests — the set-up every Vulkan test program shares (see vk-test-setup.h). */
#include "vk-test-setup.h"

#if defined(__SANITIZE_ADDRESS__)
#include <dlfcn.h>
#endif

const char *lmn_vk_test_device(void)
{
    const char *dev = g_getenv("LMN_VK_TEST_DEVICE");
    return dev != NULL && *dev != '\0' ? dev : "lavapipe";
}

gboolean lmn_vk_test_setup(LmnRegistry **registry_out, LmnBackend **cpu_out)
{
    const char *build_dir = g_getenv("LMN_TEST_BUILD_DIR");
    g_autofree char *cache_home =
        g_build_filename(build_dir != NULL ? build_dir : g_get_tmp_dir(), "xdg-cache-home", NULL);
    g_setenv("XDG_CACHE_HOME", cache_home, TRUE);
    g_autoptr(GError) error = NULL;
    *registry_out = lmn_registry_new();
    lmn_registry_scan(*registry_out, NULL);
    *cpu_out = lmn_backend_new(*registry_out, "cpu", NULL, NULL, &error);
    g_assert_no_error(error);
#if defined(__SANITIZE_ADDRESS__)
    dlopen("libvulkan_lvp.so", RTLD_NOW | RTLD_NODELETE);
    return FALSE;
#else
    return g_file_test(LMN_VK_TEST_VALIDATION_LAYER_JSON, G_FILE_TEST_EXISTS);
#endif
}
