/* Tests of `lamina devices` (the binary named by LMN_TEST_LAMINA): every backend with
 * list_devices is listed, lavapipe shows as a CPU-type Vulkan device that `auto` does not pick,
 * and bad arguments fail naming the command.  Skipped (77) without a lavapipe device. */
#include <lamina/lamina.h>

#include <stdio.h>
#include <string.h>
#if defined(__SANITIZE_ADDRESS__)
#include <dlfcn.h>
#endif

/* Runs lamina with @args and, when @extra_env is not NULL, these NAME=VALUE pairs added. */
static char *run_lamina_env(const char *const *args, const char *const *extra_env, char **err,
                            int *status);

static char *run_lamina(const char *const *args, char **err, int *status)
{
    return run_lamina_env(args, NULL, err, status);
}

static char *run_lamina_env(const char *const *args, const char *const *extra_env, char **err,
                            int *status)
{
    const char *lamina = g_getenv("LMN_TEST_LAMINA");
    g_assert_nonnull(lamina);
    GPtrArray *argv = g_ptr_array_new();
    g_ptr_array_add(argv, (gpointer) lamina);
    for (guint i = 0; args[i] != NULL; i++)
        g_ptr_array_add(argv, (gpointer) args[i]);
    g_ptr_array_add(argv, NULL);
    char *out = NULL;
    g_autoptr(GError) error = NULL;
    g_auto(GStrv) env = g_get_environ();
#if defined(__SANITIZE_ADDRESS__)
    /* lavapipe keeps a process-wide allocation that becomes unreachable when the loader unloads
     * the driver at vkDestroyInstance (test-vulkan-ops pins the driver in its own process; a
     * child cannot be pinned from here), so LeakSanitizer would fail every listing. */
    const char *asan = g_environ_getenv(env, "ASAN_OPTIONS");
    g_autofree char *opts =
        g_strdup_printf("%s%sdetect_leaks=0", asan ? asan : "", asan && *asan ? ":" : "");
    env = g_environ_setenv(env, "ASAN_OPTIONS", opts, TRUE);
#endif
    for (guint i = 0; extra_env != NULL && extra_env[i] != NULL; i++) {
        g_auto(GStrv) kv = g_strsplit(extra_env[i], "=", 2);
        env = g_environ_setenv(env, kv[0], kv[1], TRUE);
    }
    g_spawn_sync(NULL, (char **) argv->pdata, env, G_SPAWN_DEFAULT, NULL, NULL, &out, err, status,
                 &error);
    g_assert_no_error(error);
    g_ptr_array_unref(argv);
    return out;
}

/* The lines of section @name ("vulkan:" up to the next blank line), or NULL. */
static char **section(const char *out, const char *name)
{
    g_autofree char *head = g_strdup_printf("%s:\n", name);
    const char *start = g_str_has_prefix(out, head) ? out : NULL;
    if (start == NULL) {
        g_autofree char *mid = g_strdup_printf("\n%s", head);
        start = strstr(out, mid);
        if (start == NULL)
            return NULL;
        start++;
    }
    const char *end = strstr(start, "\n\n");
    g_autofree char *text = end ? g_strndup(start, (gsize) (end - start)) : g_strdup(start);
    return g_strsplit(text, "\n", -1);
}

static void test_lavapipe_listed(void)
{
    const char *args[] = {"devices", NULL};
    g_autofree char *err = NULL;
    int status = 0;
    g_autofree char *out = run_lamina(args, &err, &status);
    g_test_message("%s", out);
    g_assert_true(g_spawn_check_wait_status(status, NULL));
    /* The CPU backend lists its device too. */
    g_auto(GStrv) cpu = section(out, "cpu");
    g_assert_nonnull(cpu);
    g_auto(GStrv) vk = section(out, "vulkan");
    g_assert_nonnull(vk);
    gboolean found = FALSE, other_gpu = FALSE;
    for (guint i = 1; vk[i] != NULL; i++) {
        /* Device lines: "  M N: NAME" with M '*' for auto's pick, then "      type: ..." */
        if (strlen(vk[i]) < 5 || !g_ascii_isdigit(vk[i][4]))
            continue;
        const gboolean starred = vk[i][2] == '*';
        const gboolean lavapipe = strstr(vk[i], "llvmpipe") != NULL;
        g_assert_nonnull(vk[i + 1]);
        g_assert_true(g_str_has_prefix(vk[i + 1], "      type: "));
        if (lavapipe) {
            found = TRUE;
            g_assert_false(starred);
            g_assert_true(g_str_has_prefix(vk[i + 1], "      type: cpu, memory: "));
            g_assert_nonnull(strstr(vk[i + 1], "driver: "));
        } else if (strstr(vk[i + 1], "type: cpu") == NULL) {
            other_gpu = TRUE;
        }
    }
    g_assert_true(found);
    if (!other_gpu) {
        /* Only software devices: auto keeps the CPU backend, and marks its device. */
        g_assert_nonnull(strstr(out, "\nauto would use: cpu\n"));
        g_assert_cmpint(cpu[1][2], ==, '*');
    }
}

static void test_bad_argument(void)
{
    const char *args[] = {"devices", "extra", NULL};
    g_autofree char *err = NULL;
    int status = 0;
    g_autofree char *out = run_lamina(args, &err, &status);
    g_assert_false(g_spawn_check_wait_status(status, NULL));
    g_assert_nonnull(strstr(err, "lamina devices"));
    g_assert_nonnull(strstr(err, "extra"));
    const char *args2[] = {"devices", "--no-such-option", NULL};
    g_autofree char *err2 = NULL;
    g_autofree char *out2 = run_lamina(args2, &err2, &status);
    g_assert_false(g_spawn_check_wait_status(status, NULL));
    g_assert_nonnull(strstr(err2, "lamina devices"));
    g_assert_nonnull(strstr(err2, "--no-such-option"));
}

/* Asks for the Vulkan backend and for auto under @env: vulkan must fail with a message holding
 * @what and advice, auto must print one notice line and run on the CPU. */
static void check_unavailable(const char *const *env, const char *what)
{
    const char *vk[] = {"gradcheck", "relu", "--backend", "vulkan", NULL};
    g_autofree char *err = NULL;
    int status = 0;
    g_autofree char *out = run_lamina_env(vk, env, &err, &status);
    g_test_message("%s", err);
    g_assert_false(g_spawn_check_wait_status(status, NULL));
    g_assert_nonnull(strstr(err, what));
    g_assert_nonnull(strstr(err, "--backend cpu"));
    g_assert_null(strstr(err, "CRITICAL"));

    const char *au[] = {"gradcheck", "relu", "--backend", "auto", NULL};
    g_autofree char *err2 = NULL;
    g_autofree char *out2 = run_lamina_env(au, env, &err2, &status);
    g_assert_true(g_spawn_check_wait_status(status, NULL));
    g_assert_nonnull(strstr(out2, "PASS"));
    g_assert_true(g_str_has_prefix(err2, "notice: backend auto: "));
    g_assert_nonnull(strstr(err2, "using the cpu backend"));
    g_assert_cmpint(strchr(err2, '\n') - err2 + 1, ==, (gint) strlen(err2)); /* one line */
}

/* No loader (LAMINA_VK_LOADER pointing nowhere, as on a machine without libvulkan1). */
static void test_no_loader(void)
{
    const char *env[] = {"LAMINA_VK_LOADER=/nonexistent/libvulkan.so.1", NULL};
    check_unavailable(env, "no Vulkan loader: cannot open /nonexistent/libvulkan.so.1");
    /* `lamina devices` still lists the CPU and says why Vulkan is missing. */
    const char *args[] = {"devices", NULL};
    g_autofree char *err = NULL;
    int status = 0;
    g_autofree char *out = run_lamina_env(args, env, &err, &status);
    g_assert_true(g_spawn_check_wait_status(status, NULL));
    g_assert_nonnull(strstr(out, "no Vulkan loader"));
    g_assert_nonnull(strstr(out, "\nauto would use: cpu\n"));
}

/* A loader but no driver (no ICD manifests): the loader cannot create an instance. */
static void test_no_driver(void)
{
    const char *env[] = {"VK_ICD_FILENAMES=/nonexistent/icd.json",
                         "VK_DRIVER_FILES=/nonexistent/icd.json", NULL};
    check_unavailable(env, "no usable Vulkan driver");
}

/* A selector matching no device names the selector and lists the devices there are. */
static void test_unknown_device(void)
{
    const char *args[] = {"gradcheck", "relu", "--backend", "vulkan", "--device", "nosuchgpu",
                          NULL};
    g_autofree char *err = NULL;
    int status = 0;
    g_autofree char *out = run_lamina(args, &err, &status);
    g_assert_false(g_spawn_check_wait_status(status, NULL));
    g_assert_nonnull(strstr(err, "no Vulkan device 'nosuchgpu'"));
    g_assert_nonnull(strstr(err, "llvmpipe"));
    g_assert_nonnull(strstr(err, "lamina devices"));
    /* An index past the end too. */
    const char *args2[] = {"gradcheck", "relu", "--backend", "vulkan", "--device", "99", NULL};
    g_autofree char *err2 = NULL;
    g_autofree char *out2 = run_lamina(args2, &err2, &status);
    g_assert_false(g_spawn_check_wait_status(status, NULL));
    g_assert_nonnull(strstr(err2, "99"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    /* Only meaningful where lavapipe exists: ask the backend directly first. */
    g_autoptr(GError) error = NULL;
#if defined(__SANITIZE_ADDRESS__)
    /* As in test-vulkan-ops: pin lavapipe so its process-wide allocation stays reachable. */
    dlopen("libvulkan_lvp.so", RTLD_NOW | RTLD_NODELETE);
#endif
    LmnRegistry *registry = lmn_registry_new();
    lmn_registry_scan(registry, NULL);
    LmnBackend *b = lmn_backend_new(registry, "vulkan", NULL, "lavapipe", &error);
    if (b == NULL) {
        printf("1..0 # SKIP no Vulkan device 'lavapipe': %s\n", error->message);
        lmn_registry_free(registry);
        return 77;
    }
    lmn_backend_unref(b);
    lmn_registry_free(registry);
    g_test_add_func("/vulkan/cli/devices/lavapipe", test_lavapipe_listed);
    g_test_add_func("/vulkan/cli/devices/bad-argument", test_bad_argument);
    g_test_add_func("/vulkan/cli/unavailable/no-loader", test_no_loader);
    g_test_add_func("/vulkan/cli/unavailable/no-driver", test_no_driver);
    g_test_add_func("/vulkan/cli/unavailable/unknown-device", test_unknown_device);
    return g_test_run();
}
