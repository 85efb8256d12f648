/* LAMINA_VK_GUARD, the Vulkan backend's out-of-bounds write check, on lavapipe.
 *
 * A deliberately overrunning plugin kernel (test-kernel-overrun.comp: over a tensor of n floats
 * it also writes the n floats after it) must fail the next synchronize with an error naming the
 * kernel and the buffer, while the same launch without the guard "passes", as it does on
 * lavapipe; a correct kernel and the built-in ops raise nothing with the guard on; a bad value of
 * the variable is refused when the backend opens.  (meson also runs the layer and op comparison
 * programs with the guard on: vulkan-layers-guard, vulkan-conv-ops-guard.)
 */
#include "vk-test-setup.h"

#include <stdint.h>
#include <string.h>

#include "test-kernel-overrun-spv.h"

static LmnRegistry *registry;

static LmnBackend *open_vulkan(GError **error)
{
    return lmn_backend_new(registry, "vulkan", NULL, lmn_vk_test_device(), error);
}

static void overrun_cpu(gsize begin, gsize end, void *const *buffers, const float *scalars)
{
    float *y = buffers[0];
    for (gsize i = begin; i < end; i++)
        y[i] = scalars[0]; /* the correct half: the CPU reference stays in bounds */
}

static const guint8 overrun_access[] = {LMN_KERNEL_READ_WRITE};
static const LmnKernelSpirv overrun_spirv = {
    .struct_size = sizeof(LmnKernelSpirv),
    .code = test_kernel_overrun_spv,
    .code_size = sizeof test_kernel_overrun_spv,
    .entry_point = "main",
};
static const LmnKernelDesc overrun = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "test.overrun",
    .cpu = overrun_cpu,
    .n_buffers = 1,
    .access = overrun_access,
    .n_scalars = 1,
    .spirv = &overrun_spirv,
};

/* Runs the overrunning kernel on a fresh n-float tensor next to a neighbour; returns the
 * synchronize's error (NULL when it passed). */
static GError *run_overrun(LmnBackend *vk, gsize n)
{
    g_autoptr(GError) error = NULL;
    LmnShape shape = lmn_shape_make(1, (gint64) n);
    LmnTensor *y = lmn_tensor_new(vk, LMN_DTYPE_F32, &shape, &error);
    g_assert_no_error(error);
    LmnTensor *neighbour = lmn_tensor_new(vk, LMN_DTYPE_F32, &shape, &error);
    g_assert_no_error(error);
    const float s[] = {3.0f};
    LmnTensor *bufs[] = {y};
    lmn_op_kernel(&overrun, n, bufs, s);
    GError *result = NULL;
    lmn_backend_synchronize(vk, &result);
    lmn_tensor_unref(neighbour);
    lmn_tensor_unref(y);
    return result;
}

static void test_overrun_caught(void)
{
    if (!g_test_subprocess()) {
        g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
        g_test_trap_assert_passed();
        return;
    }
    g_setenv("LAMINA_VK_GUARD", "1", TRUE);
    g_autoptr(GError) error = NULL;
    LmnBackend *vk = open_vulkan(&error);
    g_assert_no_error(error);
    g_autoptr(GError) caught = run_overrun(vk, 1000);
    g_assert_nonnull(caught);
    g_test_message("%s", caught->message);
    g_assert_nonnull(strstr(caught->message, "LAMINA_VK_GUARD"));
    g_assert_nonnull(strstr(caught->message, "kernel 'test.overrun'"));
    g_assert_nonnull(strstr(caught->message, "past the end of a 4000-byte buffer"));
    lmn_backend_unref(vk);
}

/* Without the guard the same launch completes without a word: the reason for the guard. */
static void test_overrun_silent_without_guard(void)
{
    if (!g_test_subprocess()) {
        g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
        g_test_trap_assert_passed();
        return;
    }
    g_unsetenv("LAMINA_VK_GUARD");
    g_autoptr(GError) error = NULL;
    LmnBackend *vk = open_vulkan(&error);
    g_assert_no_error(error);
    g_autoptr(GError) caught = run_overrun(vk, 1000);
    g_assert_null(caught);
    lmn_backend_unref(vk);
}

/* With the guard on, correct work raises nothing and computes what the CPU does. */
static void test_clean_work_passes(void)
{
    if (!g_test_subprocess()) {
        g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
        g_test_trap_assert_passed();
        return;
    }
    g_setenv("LAMINA_VK_GUARD", "1", TRUE);
    g_autoptr(GError) error = NULL;
    LmnBackend *vk = open_vulkan(&error);
    g_assert_no_error(error);
    const gint64 m = 37, n = 29, k = 41;
    LmnShape sa = lmn_shape_make(1, m * k), sb = lmn_shape_make(1, k * n),
             sc = lmn_shape_make(1, m * n);
    LmnTensor *a = lmn_tensor_new(vk, LMN_DTYPE_F32, &sa, &error);
    LmnTensor *b = lmn_tensor_new(vk, LMN_DTYPE_F32, &sb, &error);
    LmnTensor *c = lmn_tensor_new(vk, LMN_DTYPE_F32, &sc, &error);
    g_assert_no_error(error);
    lmn_op_fill(a, 0.5f);
    lmn_op_fill(b, 2.0f);
    LmnGemm g = {
        .struct_size = sizeof g, .m = m, .n = n, .k = k, .alpha = 1.0f, .a = a, .b = b, .c = c};
    lmn_op_gemm(&g);
    lmn_op_unary(LMN_UNARY_RELU, c, c, 0.0f);
    g_autofree float *out = g_new(float, m *n);
    g_assert_true(lmn_tensor_read(c, out, (gsize) (m * n) * sizeof(float), &error));
    g_assert_no_error(error);
    for (gint64 i = 0; i < m * n; i++)
        g_assert_cmpfloat(out[i], ==, (float) k);
    g_assert_true(lmn_backend_synchronize(vk, &error));
    lmn_tensor_unref(a);
    lmn_tensor_unref(b);
    lmn_tensor_unref(c);
    lmn_backend_unref(vk);
}

static void test_bad_value(void)
{
    if (!g_test_subprocess()) {
        g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
        g_test_trap_assert_passed();
        return;
    }
    g_setenv("LAMINA_VK_GUARD", "yes", TRUE);
    g_autoptr(GError) error = NULL;
    LmnBackend *vk = open_vulkan(&error);
    g_assert_null(vk);
    g_assert_nonnull(error);
    g_assert_nonnull(strstr(error->message, "LAMINA_VK_GUARD = 'yes'"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    LmnBackend *cpu = NULL;
    lmn_vk_test_setup(&registry, &cpu);
    if (!g_test_subprocess()) {
        /* Skipped as a whole where no Vulkan device opens (exit 77, as the other programs). */
        g_autoptr(GError) error = NULL;
        g_unsetenv("LAMINA_VK_GUARD");
        LmnBackend *probe = open_vulkan(&error);
        if (probe == NULL) {
            g_printerr("no Vulkan device '%s': %s\n", lmn_vk_test_device(), error->message);
            return 77;
        }
        lmn_backend_unref(probe);
    }
    g_test_add_func("/vulkan/guard/overrun-caught", test_overrun_caught);
    g_test_add_func("/vulkan/guard/overrun-silent-without-guard",
                    test_overrun_silent_without_guard);
    g_test_add_func("/vulkan/guard/clean-work-passes", test_clean_work_passes);
    g_test_add_func("/vulkan/guard/bad-value", test_bad_value);
    int rc = g_test_run();
    lmn_backend_unref(cpu);
    lmn_registry_free(registry);
    return rc;
}
