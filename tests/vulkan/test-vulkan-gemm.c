/* The Vulkan GEMM against the CPU backend (OpenBLAS): every kernel variant (the shared-memory
 * tiled kernel, the register-tiled one, and split-K over each, forced through LAMINA_VK_GEMM),
 * all transpose combinations, alpha/beta (beta 0 over NaN), odd and aligned sizes, operands at
 * odd element offsets and inside views, batch strides including 0, the path that splits a GEMM
 * whose operands exceed maxStorageBufferRange (lowered through LAMINA_VK_MAX_STORAGE_RANGE), and
 * split-K's determinism.
 *
 * Every element of each C tensor is compared, including the padding around and between the
 * matrices, which must be left untouched.  Tolerances grow with K (each output is a K-term dot
 * product in float32 on both sides, summed in different orders).  Runs on lavapipe, opened by
 * name (or on the device LMN_VK_TEST_DEVICE names); the program is skipped (exit 77) without it.
 * Backends run with VK_LAYER_KHRONOS_validation when it is installed (not under sanitizers: the
 * layer leaks), and any validation error fails the next synchronisation.
 */
#include <lamina/lamina.h>

#include "vk-test-setup.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define VALIDATION_LAYER_JSON LMN_VK_TEST_VALIDATION_LAYER_JSON

static LmnRegistry *registry;
static LmnBackend *cpu;
static gboolean validating;
static GRand *rng;

/* Opens lavapipe with LAMINA_VK_GEMM=@gemm and, when @max_range is set,
 * LAMINA_VK_MAX_STORAGE_RANGE=@max_range (both read when the device opens). */
static LmnBackend *open_vulkan(const char *gemm, const char *max_range, GError **error)
{
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_BACKEND, "vulkan", error);
    if (f == NULL)
        return NULL;
    const char *keys[] = {"validation", NULL};
    const char *values[] = {validating ? "true" : "false", NULL};
    LmnParams *params = lmn_registry_validate_params(f, keys, values, "test-vulkan-gemm", error);
    if (params == NULL)
        return NULL;
    if (gemm != NULL)
        g_setenv("LAMINA_VK_GEMM", gemm, TRUE);
    if (max_range != NULL)
        g_setenv("LAMINA_VK_MAX_STORAGE_RANGE", max_range, TRUE);
    LmnBackend *b = lmn_backend_new(registry, "vulkan", params, lmn_vk_test_device(), error);
    g_unsetenv("LAMINA_VK_GEMM");
    g_unsetenv("LAMINA_VK_MAX_STORAGE_RANGE");
    lmn_params_unref(params);
    return b;
}

static LmnBackend *open_variant(const char *gemm, const char *max_range, const char *expect)
{
    g_autoptr(GError) error = NULL;
    LmnBackend *b = open_vulkan(gemm, max_range, &error);
    g_assert_no_error(error);
    const char *desc = lmn_backend_describe(b);
    if (strstr(desc, expect) == NULL)
        g_error("LAMINA_VK_GEMM=%s: expected '%s' in '%s'", gemm, expect, desc);
    if (max_range != NULL)
        g_assert_nonnull(strstr(desc, max_range));
    return b;
}

static void sync_ok(LmnBackend *b)
{
    g_autoptr(GError) error = NULL;
    lmn_backend_synchronize(b, &error);
    g_assert_no_error(error);
}

/* One GEMM problem. */
typedef struct {
    gboolean ta, tb;
    gint64 m, n, k;
    float alpha, beta;
    gint64 batch;              /* 0 = not batched */
    gboolean bcast_a, bcast_b; /* stride 0: every batch entry uses entry 0 */
    gint64 off;                /* a_offset, b_offset, c_offset (elements) */
    gint64 view;               /* > 0: operands are views starting @view elements into tensors */
    gint64 pad;                /* elements between batch entries, beyond each matrix */
    gboolean nan_c;            /* C starts as NaN (beta must be 0) */
} Case;

/* The same data on both backends: a tensor (or a view into one) of @n elements. */
typedef struct {
    LmnTensor *base[2], *t[2]; /* [0] CPU, [1] Vulkan */
    gsize n;
} Pair;

static Pair pair_new(LmnBackend *vb, gsize n, gint64 view, gboolean nan)
{
    g_autoptr(GError) error = NULL;
    Pair p = {.n = n};
    const gsize total = n + (gsize) view;
    g_autofree float *v = g_new(float, total);
    for (gsize i = 0; i < total; i++)
        v[i] = nan ? NAN : (float) g_rand_double_range(rng, -1, 1);
    LmnBackend *be[2] = {cpu, vb};
    for (guint s = 0; s < 2; s++) {
        LmnShape shape = lmn_shape_make(1, (gint64) total);
        p.base[s] = lmn_tensor_new(be[s], LMN_DTYPE_F32, &shape, &error);
        g_assert_no_error(error);
        lmn_tensor_write(p.base[s], v, total * 4, &error);
        g_assert_no_error(error);
        LmnShape vs = lmn_shape_make(1, (gint64) n);
        p.t[s] = view > 0 ? lmn_tensor_new_view(p.base[s], view, &vs) : lmn_tensor_ref(p.base[s]);
    }
    return p;
}

static void pair_free(Pair *p)
{
    for (guint s = 0; s < 2; s++) {
        lmn_tensor_unref(p->t[s]);
        lmn_tensor_unref(p->base[s]);
    }
}

/* Reads the Vulkan side of @p (the whole underlying tensor). */
static float *read_all(const Pair *p, guint side, gsize *n)
{
    g_autoptr(GError) error = NULL;
    *n = (gsize) lmn_shape_numel(&p->base[side]->shape);
    float *v = g_new(float, *n);
    lmn_tensor_read(p->base[side], v, *n * 4, &error);
    g_assert_no_error(error);
    return v;
}

/* Runs @cs on the CPU and on @vb; returns the Vulkan result (the whole C tensor) when @out. */
static void run_case(LmnBackend *vb, const Case *cs, const char *label, float **out, gsize *out_n)
{
    const gint64 nb = MAX(cs->batch, 1);
    const gint64 sa = cs->bcast_a ? 0 : cs->m * cs->k + cs->pad;
    const gint64 sb = cs->bcast_b ? 0 : cs->k * cs->n + cs->pad;
    const gint64 sc = cs->m * cs->n + cs->pad;
    /* A trailing pad after the last entry too, so stray writes past C show. */
    Pair a = pair_new(vb, (gsize) (cs->off + (cs->bcast_a ? 1 : nb) * (cs->m * cs->k + cs->pad)),
                      cs->view, FALSE);
    Pair b = pair_new(vb, (gsize) (cs->off + (cs->bcast_b ? 1 : nb) * (cs->k * cs->n + cs->pad)),
                      cs->view, FALSE);
    Pair c = pair_new(vb, (gsize) (cs->off + nb * sc + 3), cs->view, cs->nan_c);
    for (guint s = 0; s < 2; s++) {
        LmnGemm g = {
            .struct_size = sizeof(LmnGemm),
            .trans_a = cs->ta,
            .trans_b = cs->tb,
            .m = cs->m,
            .n = cs->n,
            .k = cs->k,
            .alpha = cs->alpha,
            .beta = cs->beta,
            .a = a.t[s],
            .b = b.t[s],
            .c = c.t[s],
            .a_offset = cs->off,
            .b_offset = cs->off,
            .c_offset = cs->off,
            .batch = cs->batch,
            .stride_a = sa,
            .stride_b = sb,
            .stride_c = sc,
        };
        lmn_op_gemm(&g);
    }
    gsize n;
    g_autofree float *want = read_all(&c, 0, &n);
    float *got = read_all(&c, 1, &n);
    const double atol = 4e-6 * (double) (cs->k + 1) * (fabs(cs->alpha) + 1);
    for (gsize i = 0; i < n; i++) {
        if (isnan(want[i]) && isnan(got[i]))
            continue; /* NaN padding of a nan_c case, untouched on both */
        if (!(fabs((double) got[i] - want[i]) <= atol + 1e-5 * fabs(want[i])))
            g_error("%s: %s%s %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
                    " alpha %g beta %g batch %" G_GINT64_FORMAT "%s%s off %" G_GINT64_FORMAT
                    " view %" G_GINT64_FORMAT ": C element %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT
                    ": vulkan %.9g, cpu %.9g",
                    label, cs->ta ? "T" : "N", cs->tb ? "T" : "N", cs->m, cs->n, cs->k, cs->alpha,
                    cs->beta, cs->batch, cs->bcast_a ? " A-broadcast" : "",
                    cs->bcast_b ? " B-broadcast" : "", cs->off, cs->view, i, n, got[i], want[i]);
    }
    if (out != NULL) {
        *out = got;
        *out_n = n;
    } else {
        g_free(got);
    }
    pair_free(&a);
    pair_free(&b);
    pair_free(&c);
}

/* The problems every kernel variant runs, for each transpose combination. */
static void run_suite(LmnBackend *vb, const char *label)
{
    static const gint64 sizes[][3] = {
        {1, 1, 1},    {3, 3, 3},      {17, 33, 9},  {64, 64, 64},   {129, 65, 17},
        {1, 129, 64}, {128, 10, 784}, {33, 1, 100}, {200, 136, 48}, {4, 8, 3},
    };
    for (gint t = 0; t < 4; t++) {
        const gboolean ta = t & 1, tb = (t & 2) != 0;
        for (guint i = 0; i < G_N_ELEMENTS(sizes); i++) {
            Case cs = {ta, tb, sizes[i][0], sizes[i][1], sizes[i][2], 1.0f, 0.0f};
            run_case(vb, &cs, label, NULL, NULL);
        }
        /* alpha/beta; beta 0 must ignore NaN in C. */
        run_case(vb, &(Case){ta, tb, 64, 48, 100, 0.5f, 2.0f}, label, NULL, NULL);
        run_case(vb, &(Case){ta, tb, 19, 7, 40, -1.5f, 1.0f}, label, NULL, NULL);
        run_case(vb, &(Case){ta, tb, 36, 20, 52, 2.0f, 0.0f, .nan_c = TRUE}, label, NULL, NULL);
        /* Odd element offsets (operands not 16-byte aligned) and views at odd offsets, on
         * otherwise vec4-friendly shapes. */
        run_case(vb, &(Case){ta, tb, 64, 32, 64, 1.0f, 0.5f, .off = 3}, label, NULL, NULL);
        run_case(vb, &(Case){ta, tb, 64, 32, 64, 1.0f, 0.0f, .off = 4, .view = 5}, label, NULL,
                 NULL);
        run_case(vb, &(Case){ta, tb, 21, 13, 11, 1.0f, 1.0f, .off = 1, .view = 3}, label, NULL,
                 NULL);
        /* Batches: padded strides, A or B broadcast (stride 0), aligned strides. */
        run_case(vb, &(Case){ta, tb, 5, 3, 40, -1.0f, 1.0f, 3, .pad = 3, .off = 1}, label, NULL,
                 NULL);
        run_case(vb, &(Case){ta, tb, 16, 16, 16, 1.0f, 0.5f, 4, .bcast_b = TRUE}, label, NULL,
                 NULL);
        run_case(vb, &(Case){ta, tb, 35, 70, 33, 1.0f, 0.0f, 3, .bcast_a = TRUE, .pad = 1}, label,
                 NULL, NULL);
        run_case(vb, &(Case){ta, tb, 32, 64, 32, 1.0f, 0.0f, 5, .pad = 4, .view = 4}, label, NULL,
                 NULL);
    }
    /* K = 0: C = beta C. */
    run_case(vb, &(Case){FALSE, FALSE, 7, 9, 0, 1.0f, 0.5f}, label, NULL, NULL);
    /* A long K with a small output (what split-K is for when not forced). */
    run_case(vb, &(Case){TRUE, FALSE, 4, 12, 4096, 1.0f, 0.0f}, label, NULL, NULL);
    run_case(vb, &(Case){FALSE, TRUE, 3, 5, 3001, 1.0f, 1.0f, .off = 1}, label, NULL, NULL);
    /* K beyond what one shader may loop over on llvmpipe (65535 iterations): K pieces. */
    run_case(vb, &(Case){FALSE, FALSE, 2, 3, 200000, 1.0f, 0.0f}, label, NULL, NULL);
    run_case(vb, &(Case){TRUE, TRUE, 3, 2, 70001, -1.0f, 1.0f, 2, .pad = 1}, label, NULL, NULL);
    sync_ok(vb);
}

static void test_variant(gconstpointer data)
{
    const char *const *v = data; /* {LAMINA_VK_GEMM, expected description} */
    LmnBackend *vb = open_variant(v[0], NULL, v[1]);
    run_suite(vb, v[0]);
    lmn_backend_unref(vb);
}

/* Split-K sums its slices in a fixed order: repeated runs are bit-identical. */
static void test_splitk_deterministic(void)
{
    LmnBackend *vb = open_variant("reg,splitk", NULL, "split-K forced");
    Case cs = {TRUE, FALSE, 20, 30, 2000, 1.0f, 0.0f};
    float *first = NULL, *again = NULL;
    gsize n1 = 0, n2 = 0;
    g_rand_set_seed(rng, 7); /* the same inputs for both runs */
    run_case(vb, &cs, "split-K", &first, &n1);
    g_rand_set_seed(rng, 7);
    run_case(vb, &cs, "split-K", &again, &n2);
    g_assert_cmpuint(n1, ==, n2);
    g_assert_cmpmem(first, n1 * 4, again, n2 * 4);
    g_free(again);
    g_free(first);
    sync_ok(vb);
    lmn_backend_unref(vb);
}

/* Operands beyond the (lowered) maxStorageBufferRange: split over batch entries, M, N and K. */
static void test_chunked(gconstpointer data)
{
    const char *gemm = data;
    /* 64 KiB = 16384 floats per binding. */
    LmnBackend *vb = open_variant(gemm, "65536", strstr(gemm, "reg") ? "register" : "tiled");
    for (gint t = 0; t < 4; t++) {
        const gboolean ta = t & 1, tb = (t & 2) != 0;
        /* Every operand 2-4x the range: M and N pieces. */
        run_case(vb, &(Case){ta, tb, 300, 200, 150, 1.0f, 0.5f}, gemm, NULL, NULL);
        /* A row of A and a column of B (20000 floats) exceed the range: K pieces, accumulating
         * with beta = 1 after the first; beta 0 over NaN only applies to the first. */
        run_case(vb, &(Case){ta, tb, 3, 5, 20000, 1.0f, 0.0f, .nan_c = TRUE}, gemm, NULL, NULL);
        run_case(vb, &(Case){ta, tb, 9, 2, 17001, -0.5f, 2.0f, .off = 3}, gemm, NULL, NULL);
        /* Batches: each entry fits but not all together (groups of entries), with A broadcast. */
        run_case(vb, &(Case){ta, tb, 40, 50, 60, 1.0f, 0.0f, 12, .pad = 5, .off = 1}, gemm, NULL,
                 NULL);
        run_case(vb, &(Case){ta, tb, 64, 64, 64, 1.0f, 1.0f, 9, .bcast_a = TRUE}, gemm, NULL, NULL);
        /* ... and entries that themselves must be split, in views. */
        run_case(vb, &(Case){ta, tb, 130, 140, 70, 1.0f, 0.0f, 2, .pad = 7, .view = 3}, gemm, NULL,
                 NULL);
    }
    sync_ok(vb);
    lmn_backend_unref(vb);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_unsetenv("LAMINA_VK_GEMM");
    g_unsetenv("LAMINA_VK_MAX_STORAGE_RANGE");
    validating = lmn_vk_test_setup(&registry, &cpu);
    g_autoptr(GError) error = NULL;
    LmnBackend *probe = open_vulkan(NULL, NULL, &error);
    if (probe == NULL) {
        printf("1..0 # SKIP no Vulkan device '%s': %s\n", lmn_vk_test_device(), error->message);
        return 77;
    }
    lmn_backend_unref(probe);
    rng = g_rand_new_with_seed(20261123);

    static const char *const tiled[] = {"tiled", "shared-memory tiled"};
    static const char *const reg[] = {"reg", "register-tiled"};
    static const char *const tiled_split[] = {"tiled,splitk", "shared-memory tiled (split-K"};
    static const char *const reg_split[] = {"reg,splitk", "register-tiled (split-K"};
    g_test_add_data_func("/vulkan/gemm/tiled", tiled, test_variant);
    /* Each of gemm_tiled.comp's tiles (vk-gemm.c's table) in every role: the 8 x 8 and 4 x 4
     * register tiles, BK 8 and 16, and a non-square workgroup tile. */
    static const char *const tile_variants[][2] = {
        {"tiled,tile=0", "(128x128 to 128x128 tiles)"},
        {"tiled,tile=1", "(64x64 to 64x64 tiles)"},
        {"tiled,tile=2", "(32x32 to 32x32 tiles)"},
        {"tiled,tile=3", "(64x32 to 64x32 tiles)"},
    };
    for (guint i = 0; i < G_N_ELEMENTS(tile_variants); i++) {
        g_autofree char *path = g_strdup_printf("/vulkan/gemm/tiled/tile%u", i);
        g_test_add_data_func(path, tile_variants[i], test_variant);
    }
    g_test_add_data_func("/vulkan/gemm/reg", reg, test_variant);
    g_test_add_data_func("/vulkan/gemm/tiled-splitk", tiled_split, test_variant);
    g_test_add_data_func("/vulkan/gemm/reg-splitk", reg_split, test_variant);
    g_test_add_func("/vulkan/gemm/splitk-deterministic", test_splitk_deterministic);
    g_test_add_data_func("/vulkan/gemm/chunked/tiled", "tiled", test_chunked);
    g_test_add_data_func("/vulkan/gemm/chunked/reg", "reg", test_chunked);
    g_test_add_data_func("/vulkan/gemm/chunked/tiled-splitk", "tiled,splitk", test_chunked);
    int rc = g_test_run();

    g_rand_free(rng);
    lmn_backend_unref(cpu);
    lmn_registry_free(registry);
    return rc;
}
