/* Tests of the Vulkan backend's native convolution (ABI 1.4, vk-conv.c) against the CPU backend
 * on the same random inputs: forward, backward data and backward weights (beta 0 onto a
 * NaN-filled dweight, beta 1 onto existing values) for plain, strided, padded, dilated, grouped,
 * depthwise, 1x1, LeNet and non-square geometries, batch 1 and 5, a case needing several
 * workgroups in every dimension and two beyond the workgroup-count limit; each within 1e-5 of the
 * sum of the absolute values of the terms (the CPU convolution of |x| and |w|), and bit-identical
 * when run again.  Then the same ops with maxStorageBufferRange lowered to 4 KiB (chunks of
 * images), the refusals (an image above the range, sizes beyond 32-bit indexing) and LAMINA_VK_CONV
 * (im2col leaves the ops out of the vtable, anything else but native fails the backend's
 * initialisation), in subprocesses since the plugin reads it once per process.
 *
 * Runs on Mesa's lavapipe (opened by name, as CI does); the program exits 77 (skipped) when no
 * such device can be opened.  The main backend runs with the validation layer when installed.
 */
#include <lamina/lamina.h>

#include "../ops/conv-case.h"

#include "vk-test-setup.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static LmnRegistry *registry;
static LmnBackend *cpu;
static LmnBackend *vk;
static LmnBackend *vk_small; /* LAMINA_VK_MAX_STORAGE_RANGE=4096 */
static gboolean validating;
static GRand *rng;

static const ConvCase cases[] = {
    {"plain-3x3", 2, 3, 7, 6, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1},
    {"stride2-pad1", 3, 2, 9, 8, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1},
    {"strided-padded-asymmetric", 3, 2, 9, 8, 5, 3, 2, 2, 3, 1, 2, 1, 1, 1},
    {"dilation2", 2, 3, 10, 9, 2, 3, 3, 1, 1, 2, 2, 2, 2, 1},
    {"dilated-strided", 2, 3, 13, 11, 3, 3, 2, 2, 1, 1, 0, 2, 3, 1},
    {"groups2", 2, 6, 8, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1, 2},
    {"depthwise", 2, 4, 6, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 4},
    {"depthwise-multiplier2", 2, 4, 6, 6, 8, 3, 3, 2, 1, 1, 1, 2, 1, 4},
    {"1x1", 2, 8, 5, 5, 6, 1, 1, 1, 1, 0, 0, 1, 1, 1},
    {"1x1-stride2", 2, 8, 5, 6, 6, 1, 1, 2, 2, 0, 0, 1, 1, 1},
    {"lenet-c1-batch1", 1, 1, 28, 28, 6, 5, 5, 1, 1, 2, 2, 1, 1, 1},
    {"lenet-c1-batch5", 5, 1, 28, 28, 6, 5, 5, 1, 1, 2, 2, 1, 1, 1},
    {"lenet-c2-batch5", 5, 6, 14, 14, 16, 5, 5, 1, 1, 0, 0, 1, 1, 1},
    {"non-square", 1, 3, 11, 17, 5, 2, 5, 1, 2, 1, 2, 1, 1, 1},
    {"kernel-wider-than-padded-image", 2, 2, 3, 4, 3, 3, 5, 1, 1, 1, 1, 1, 1, 1},
    /* Forward: 48 x 578 per group, backward data 40 x 578, backward weights 48 x 360 over 578:
     * more than one workgroup along every grid dimension for every tile shape. */
    {"large-grouped", 2, 80, 17, 17, 96, 3, 3, 1, 1, 1, 1, 1, 1, 2},
};

/* Beyond 65535 workgroups (lavapipe's maxComputeWorkGroupCount) along y: 1.2M output channels
 * (75000 row tiles of forward and backward weights), and along z: 70000 groups. */
static const ConvCase grid_cases[] = {
    {"1.2M-output-channels", 1, 1, 1, 1, 1200000, 1, 1, 1, 1, 0, 0, 1, 1, 1},
    {"70000-groups", 1, 70000, 1, 1, 70000, 1, 1, 1, 1, 0, 0, 1, 1, 70000},
};

/* Images of 2 x 8 x 8 (128 elements) to 3 x 8 x 8: with a 4 KiB storage range, chunks of 5. */
static const ConvCase chunk_case = {"chunked", 7, 2, 8, 8, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1};

static LmnBackend *open_vulkan(gboolean validation, GError **error)
{
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_BACKEND, "vulkan", error);
    if (f == NULL)
        return NULL;
    const char *keys[] = {"validation", NULL};
    const char *values[] = {validation ? "true" : "false", NULL};
    LmnParams *params =
        lmn_registry_validate_params(f, keys, values, "test-vulkan-conv-ops", error);
    if (params == NULL)
        return NULL;
    LmnBackend *b = lmn_backend_new(registry, "vulkan", params, lmn_vk_test_device(), error);
    lmn_params_unref(params);
    return b;
}

/* ---- tensors ---- */

static LmnTensor *tensor_new(LmnBackend *b, gint64 n, const float *data)
{
    g_autoptr(GError) error = NULL;
    LmnShape shape = lmn_shape_make(1, MAX(n, 1));
    LmnTensor *t = lmn_tensor_new(b, LMN_DTYPE_F32, &shape, &error);
    g_assert_no_error(error);
    if (data != NULL) {
        g_assert_true(lmn_tensor_write(t, data, (gsize) n * sizeof(float), &error));
        g_assert_no_error(error);
    }
    return t;
}

static float *read_all(LmnTensor *t, gint64 n)
{
    g_autoptr(GError) error = NULL;
    float *v = g_new(float, MAX(n, 1));
    g_assert_true(lmn_tensor_read(t, v, (gsize) n * sizeof(float), &error));
    g_assert_no_error(error);
    return v;
}

static float *random_floats(gint64 n)
{
    float *v = g_new(float, MAX(n, 1));
    for (gint64 i = 0; i < n; i++)
        v[i] = (float) g_rand_double_range(rng, -1.0, 1.0);
    return v;
}

static float *filled(gint64 n, float value)
{
    float *v = g_new(float, MAX(n, 1));
    for (gint64 i = 0; i < n; i++)
        v[i] = value;
    return v;
}

static float *absolute(const float *v, gint64 n)
{
    float *a = g_new(float, MAX(n, 1));
    for (gint64 i = 0; i < n; i++)
        a[i] = fabsf(v[i]);
    return a;
}

/* ---- running an op ---- */

typedef enum { FORWARD, BACKWARD_DATA, BACKWARD_WEIGHTS } Op;
static const char *op_names[] = {"forward", "backward_data", "backward_weights"};

typedef struct {
    gint64 nx, nw, ny;
} Sizes;

static Sizes sizes_of(const LmnConv2dDesc *d)
{
    return (Sizes){d->n * d->c * d->h * d->w, d->k * (d->c / d->groups) * d->kernel_h * d->kernel_w,
                   d->n * d->k * d->out_h * d->out_w};
}

static gint64 out_size(const Sizes *s, Op op)
{
    return op == FORWARD ? s->ny : op == BACKWARD_DATA ? s->nx : s->nw;
}

/* The op on backend @b: the inputs a, w (forward: x, weight; backward data: dy, weight;
 * backward weights: x, dy) from host arrays, the output starting as @init; returns it read back.
 * The CPU gets im2col scratch when its convolution needs some. */
static float *run_op(LmnBackend *b, Op op, const LmnConv2dDesc *d, const float *a, const float *w,
                     const float *init, float beta)
{
    Sizes s = sizes_of(d);
    const gint64 na = op == BACKWARD_DATA ? s.ny : s.nx;
    const gint64 nw = op == BACKWARD_WEIGHTS ? s.ny : s.nw;
    const gint64 no = out_size(&s, op);
    LmnTensor *ta = tensor_new(b, na, a), *tw = tensor_new(b, nw, w), *to = tensor_new(b, no, init);
    const gint64 ncols = lmn_op_conv2d_cols_numel(b, d);
    LmnTensor *cols = ncols > 0 ? tensor_new(b, ncols, NULL) : NULL;
    if (op == FORWARD)
        lmn_op_conv2d_forward(d, ta, tw, to, cols);
    else if (op == BACKWARD_DATA)
        lmn_op_conv2d_backward_data(d, ta, tw, to, cols);
    else
        lmn_op_conv2d_backward_weights(d, ta, tw, to, beta, cols);
    g_autoptr(GError) error = NULL;
    lmn_backend_synchronize(b, &error);
    g_assert_no_error(error);
    float *out = read_all(to, no);
    lmn_tensor_unref(ta);
    lmn_tensor_unref(tw);
    lmn_tensor_unref(to);
    if (cols != NULL)
        lmn_tensor_unref(cols);
    return out;
}

/* |got - want| <= 1e-5 scale + |init| 1e-6 element-wise, scale being the sum of |terms|. */
static void assert_close(const char *what, const float *got, const float *want, const float *scale,
                         const float *init, gint64 n)
{
    for (gint64 i = 0; i < n; i++) {
        double tol = 1e-5 * (double) scale[i] + (init != NULL ? 1e-6 * fabs(init[i]) : 0.0);
        if (!(fabs((double) got[i] - (double) want[i]) <= tol))
            g_error("%s: element %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT
                    ": vulkan %.9g, cpu %.9g (sum of |terms| %.9g)",
                    what, i, n, got[i], want[i], scale[i]);
    }
}

/* One op on @vb against the CPU, and again on @vb for bit-identity.  The output starts as @init
 * on both (NaN where the op must overwrite it). */
static void check_op(LmnBackend *vb, const ConvCase *cc, Op op, const float *a, const float *w,
                     const float *init, float beta)
{
    LmnConv2dDesc d = conv_case_desc(cc);
    Sizes s = sizes_of(&d);
    const gint64 na = op == BACKWARD_DATA ? s.ny : s.nx;
    const gint64 nw = op == BACKWARD_WEIGHTS ? s.ny : s.nw;
    const gint64 no = out_size(&s, op);
    g_autofree float *want = run_op(cpu, op, &d, a, w, init, beta);
    g_autofree float *got = run_op(vb, op, &d, a, w, init, beta);
    /* The CPU convolution of |a| and |w| is the sum of |terms| of every output. */
    g_autofree float *abs_a = absolute(a, na), *abs_w = absolute(w, nw);
    g_autofree float *scale = run_op(cpu, op, &d, abs_a, abs_w, NULL, 0.0f);
    g_autofree char *what = g_strdup_printf("%s %s (beta %g)", cc->name, op_names[op], beta);
    assert_close(what, got, want, scale, beta != 0.0f ? init : NULL, no);
    g_autofree float *again = run_op(vb, op, &d, a, w, init, beta);
    if (memcmp(got, again, (gsize) no * sizeof(float)) != 0)
        g_error("%s: a second run differs", what);
}

static void check_case(LmnBackend *vb, const ConvCase *cc)
{
    LmnConv2dDesc d = conv_case_desc(cc);
    Sizes s = sizes_of(&d);
    g_autofree float *x = random_floats(s.nx), *w = random_floats(s.nw);
    g_autofree float *dy = random_floats(s.ny), *dw0 = random_floats(s.nw);
    g_autofree float *nan_y = filled(s.ny, NAN), *nan_x = filled(s.nx, NAN);
    g_autofree float *nan_w = filled(s.nw, NAN);
    check_op(vb, cc, FORWARD, x, w, nan_y, 0.0f);
    check_op(vb, cc, BACKWARD_DATA, dy, w, nan_x, 0.0f);
    check_op(vb, cc, BACKWARD_WEIGHTS, x, dy, nan_w, 0.0f);
    check_op(vb, cc, BACKWARD_WEIGHTS, x, dy, dw0, 1.0f);
}

static void test_case(gconstpointer data)
{
    /* Native: the core allocates no im2col scratch for the Vulkan backend. */
    LmnConv2dDesc d = conv_case_desc(data);
    g_assert_true(lmn_backend_has_native_conv2d(vk));
    g_assert_cmpint(lmn_op_conv2d_cols_numel(vk, &d), ==, 0);
    check_case(vk, data);
}

/* Above a 4 KiB storage range the batch runs in chunks of images (the weight gradient summing
 * the chunks in order). */
static void test_chunked(void)
{
    check_case(vk_small, &chunk_case);
}

/* Runs @op of @d through the vtable on a Vulkan backend of its own (a refusal leaves a backend
 * failed for good), with LAMINA_VK_MAX_STORAGE_RANGE=@range when not NULL, and tensors of the
 * sizes @d claims (or 1 element each when @tiny, for a descriptor the backend must refuse before
 * touching them); returns the error the next synchronisation reports. */
static GError *op_error(const char *range, Op op, const LmnConv2dDesc *d, gboolean tiny)
{
    GError *error = NULL;
    if (range != NULL)
        g_setenv("LAMINA_VK_MAX_STORAGE_RANGE", range, TRUE);
    LmnBackend *b = open_vulkan(FALSE, &error);
    g_unsetenv("LAMINA_VK_MAX_STORAGE_RANGE");
    g_assert_no_error(error);
    Sizes s = tiny ? (Sizes){1, 1, 1} : sizes_of(d);
    LmnTensor *x = tensor_new(b, s.nx, NULL), *w = tensor_new(b, s.nw, NULL);
    LmnTensor *y = tensor_new(b, s.ny, NULL);
    const LmnBackendVTable *vt = lmn_backend_get_vtable(b);
    gpointer ctx = lmn_backend_get_context(b);
    if (op == FORWARD)
        vt->conv2d_forward(ctx, d, x, w, y);
    else if (op == BACKWARD_DATA)
        vt->conv2d_backward_data(ctx, d, y, w, x);
    else
        vt->conv2d_backward_weights(ctx, d, x, y, w, 0.0f);
    g_assert_false(lmn_backend_synchronize(b, &error));
    lmn_tensor_unref(x);
    lmn_tensor_unref(w);
    lmn_tensor_unref(y);
    lmn_backend_unref(b);
    return error;
}

static void assert_refused(const GError *error, Op op, const char *because)
{
    g_assert_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED);
    if (strstr(error->message, op_names[op]) == NULL || strstr(error->message, because) == NULL)
        g_error("%s: expected an error naming the op and \"%s\", got: %s", op_names[op], because,
                error->message);
}

/* One image above the storage range cannot be chunked: refused, naming the op. */
static void test_image_too_large(void)
{
    const ConvCase big = {"big-image", 2, 3, 24, 24, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1};
    LmnConv2dDesc d = conv_case_desc(&big);
    for (Op op = FORWARD; op <= BACKWARD_WEIGHTS; op++) {
        g_autoptr(GError) error = op_error("4096", op, &d, FALSE);
        assert_refused(error, op, "one image (1728 elements) exceeds maxStorageBufferRange");
    }
}

/* Sizes beyond the kernels' 32-bit indexing are refused before any binding. */
static void test_beyond_32_bits(void)
{
    const ConvCase huge = {"huge", 70000, 64, 32, 32, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1};
    LmnConv2dDesc d = conv_case_desc(&huge);
    for (Op op = FORWARD; op <= BACKWARD_WEIGHTS; op++) {
        g_autoptr(GError) error = op_error(NULL, op, &d, TRUE);
        assert_refused(error, op, "beyond the kernels' 32-bit indexing");
    }
}

/* In a subprocess (the plugin reads LAMINA_VK_CONV once per process): LAMINA_VK_CONV=@value,
 * then the registry and a Vulkan backend opened as in main(). */
static LmnBackend *open_with_conv_env(const char *value, GError **error)
{
    g_setenv("LAMINA_VK_CONV", value, TRUE);
    validating = lmn_vk_test_setup(&registry, &cpu);
    rng = g_rand_new_with_seed(20261202);
    return open_vulkan(FALSE, error);
}

static void test_env_im2col(void)
{
    if (g_test_subprocess()) {
        g_autoptr(GError) error = NULL;
        vk = open_with_conv_env("im2col", &error);
        g_assert_no_error(error);
        /* The core's im2col + GEMM path, on the same backend, still matches the CPU. */
        LmnConv2dDesc d = conv_case_desc(&cases[1]);
        g_assert_false(lmn_backend_has_native_conv2d(vk));
        g_assert_cmpint(lmn_op_conv2d_cols_numel(vk, &d), >, 0);
        check_case(vk, &cases[1]);
        check_case(vk, &cases[5]);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
    g_test_trap_assert_passed();
}

static void test_env_native(void)
{
    if (g_test_subprocess()) {
        g_autoptr(GError) error = NULL;
        vk = open_with_conv_env("native", &error);
        g_assert_no_error(error);
        g_assert_true(lmn_backend_has_native_conv2d(vk));
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
    g_test_trap_assert_passed();
}

static void test_env_invalid(void)
{
    if (g_test_subprocess()) {
        g_autoptr(GError) error = NULL;
        LmnBackend *b = open_with_conv_env("gemm", &error);
        g_assert_null(b);
        g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_INIT_FAILED);
        g_assert_nonnull(strstr(error->message, "LAMINA_VK_CONV is 'gemm': expected 'native'"));
        g_assert_nonnull(strstr(error->message, "'im2col'"));
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
    g_test_trap_assert_passed();
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/vulkan/conv-ops/env/im2col", test_env_im2col);
    g_test_add_func("/vulkan/conv-ops/env/native", test_env_native);
    g_test_add_func("/vulkan/conv-ops/env/invalid", test_env_invalid);
    if (g_test_subprocess()) {
        /* The subprocess opens its own backends after setting LAMINA_VK_CONV. */
        int rc = g_test_run();
        if (vk != NULL)
            lmn_backend_unref(vk);
        if (cpu != NULL)
            lmn_backend_unref(cpu);
        if (registry != NULL)
            lmn_registry_free(registry);
        if (rng != NULL)
            g_rand_free(rng);
        return rc;
    }
    g_unsetenv("LAMINA_VK_CONV");
    validating = lmn_vk_test_setup(&registry, &cpu);
    g_autoptr(GError) error = NULL;
    vk = open_vulkan(validating, &error);
    if (vk == NULL) {
        printf("1..0 # SKIP no Vulkan device '%s': %s\n", lmn_vk_test_device(), error->message);
        return 77;
    }
    g_setenv("LAMINA_VK_MAX_STORAGE_RANGE", "4096", TRUE);
    vk_small = open_vulkan(FALSE, &error);
    g_unsetenv("LAMINA_VK_MAX_STORAGE_RANGE");
    g_assert_no_error(error);
    g_assert_nonnull(strstr(lmn_backend_describe(vk_small), "4096"));
    rng = g_rand_new_with_seed(20261202);

    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = g_strdup_printf("/vulkan/conv-ops/case/%s", cases[i].name);
        g_test_add_data_func(path, &cases[i], test_case);
    }
    for (guint i = 0; i < G_N_ELEMENTS(grid_cases); i++) {
        g_autofree char *path =
            g_strdup_printf("/vulkan/conv-ops/grid-limits/%s", grid_cases[i].name);
        g_test_add_data_func(path, &grid_cases[i], test_case);
    }
    g_test_add_func("/vulkan/conv-ops/chunked", test_chunked);
    g_test_add_func("/vulkan/conv-ops/refuse/image-above-range", test_image_too_large);
    g_test_add_func("/vulkan/conv-ops/refuse/beyond-32-bits", test_beyond_32_bits);

    int rc = g_test_run();
    lmn_backend_unref(vk_small);
    lmn_backend_unref(vk);
    lmn_backend_unref(cpu);
    lmn_registry_free(registry);
    g_rand_free(rng);
    return rc;
}
