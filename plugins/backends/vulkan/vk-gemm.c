/* Lamina Vulkan backend — the fp32 GEMM (LmnGemm) as compute dispatches.
 *
 * Kernels (all with the same push constants, see shaders/vulkan/gemm_tiled.comp):
 * - gemm_tiled.comp, for GPUs: BM x BN workgroup tiles over BK slices in double-buffered,
 *   swizzled shared memory, TM x TN register tiles of 4 x 4 blocks read as vec4s, vec4 global
 *   loads where an operand allows them; tiles, transposes and the vec4 paths are specialization
 *   constants.  Three tiles (small, medium, large) are chosen per device from its limits, and one
 *   of them per GEMM from its shape.
 * - gemm_regtile.comp, for CPU devices (lavapipe): register tiles without shared memory, since a
 *   barrier costs a coroutine switch per invocation there.
 * - split-K: a GEMM whose output has too few tiles to keep the device busy but a long K runs its
 *   K slices as separate workgroups (z), writing partial products to a scratch buffer, then
 *   gemm_reduce.comp sums the slices in a fixed order and applies alpha and beta, so results are
 *   deterministic.
 * LAMINA_VK_GEMM=tiled|reg picks the kernel; adding "splitk" (e.g. "reg,splitk") sends every GEMM
 * through split-K, so tests can run each path on one device.
 *
 * Operands are bound at their offsets rounded down to the binding alignment.  A GEMM whose
 * bindings would exceed maxStorageBufferRange (c->max_range) is split: batch entries into groups
 * that fit, then each entry into M x N x K pieces sized from the bounding box of each operand's
 * sub-matrix; K pieces after the first accumulate with beta = 1.
 *
 * lmn_op_gemm_ex's bias and activation run in the kernel that writes C (the GEMM itself, or the
 * split-K reduction), specialised per epilogue; a product that has to be cut into pieces gets
 * them as separate bias_add / unary dispatches afterwards, and the row sums of op(A) (a dense
 * layer's bias gradient) are always bias_grad's dispatch.
 */
#include "vk-private.h"

#include "vk-shader-gemm_reduce.h"
#include "vk-shader-gemm_regtile.h"
#include "vk-shader-gemm_tiled.h"

#include <string.h>

/* gemm_tiled.comp's tiles. */
typedef struct {
    guint32 bm, bn, bk, tm, tn;
} Tile;

static const Tile tiles[] = {
    {128, 128, 8, 8, 8}, /* 256 invocations, 16 KiB of shared memory (two buffers) */
    {64, 64, 16, 4, 4},  /* 256 invocations, 16 KiB */
    {32, 32, 16, 4, 4},  /* 64 invocations, 8 KiB: within every device's minimum limits */
    {64, 32, 16, 4, 4},  /* 128 invocations, 12 KiB */
};
#define TILE_FALLBACK 2u
/* The kernel's register tiles are 4 x 4 blocks and its swizzle spans 8 vec4s (gemm_tiled.comp). */
#define TILE_OK(t) ((t).tm % 4 == 0 && (t).tn % 4 == 0 && (t).bm % 32 == 0 && (t).bn % 32 == 0)

/* Candidates for the large, medium and small roles, in order of preference. */
static const guint role_candidates[3][4] = {
    {0, 1, 3, 2},
    {1, 3, 2, 2},
    {2, 3, 1, 2},
};
enum { ROLE_LARGE, ROLE_MEDIUM, ROLE_SMALL };

/* gemm_regtile.comp: REG_LX invocations (llvmpipe's SIMD width on AVX2) of REG_TM x REG_TN
 * outputs each; a workgroup covers REG_TM rows x REG_LX * REG_TN columns.  On lavapipe 4 x 4
 * measured best (bench/vulkan-gemm --cpu-time: 2 x 2 at half the rate, 8 x 2 and 16 x 1 slower:
 * the per-lane loads dominate, and larger tiles spill). */
#define REG_LX 8u
#define REG_TM 4u
#define REG_TN 4u

/* Pipeline slots in c->gemm_pipelines. */
/* clang-format off */
#define SLOT_TILED(role, ta, tb, va, vb) ((role) * 16u + (ta) * 8u + (tb) * 4u + (va) * 2u + (vb))
#define SLOT_REG(ta, tb) (48u + (ta) * 2u + (tb))
/* clang-format on */
#define SLOT_REDUCE 52u
G_STATIC_ASSERT(SLOT_REDUCE < LMN_VK_GEMM_PIPELINES);

/* Split-K: at most this many K slices, each at least MIN_SLICE long (a multiple of 16, which every
 * tile's BK divides, so every slice keeps the vec4 alignment of its operands). */
#define MAX_SPLITS 8
#define MIN_SLICE 256
#define SCRATCH_MAX ((gsize) 64 << 20)

/* The most rows/columns one dispatch covers: workgroup counts are at most 65535 per dimension and
 * no tile is narrower than 4 (the register-tiled kernel's rows). */
#define MIN_TILE 4u

typedef struct {
    guint32 m, n, k, k_last, z_last;
    guint32 lda, ldb, ldc;
    guint32 alpha, beta;
    guint32 off_a, off_b, off_c;
    guint32 stride_a, stride_b, stride_c;
    guint32 z0;
    guint32 off_bias, act_alpha, off_act;
} GemmPush;

typedef struct {
    guint32 m, n, splits, ldc, off_c, alpha, beta;
    guint32 off_bias, act_alpha, off_act;
} ReducePush;

/* A fused epilogue: NULL bias for none, activation 0 (identity) for none; or, alone, the
 * backward of activation @grad (0 for none) from @grad_xy, whichever of its input and output it
 * needs (see grad_operand). */
typedef struct {
    const LmnTensor *bias;
    LmnUnaryOp activation;
    float alpha;
    LmnTensor *activated; /* NULL: the activation overwrites C */
    LmnUnaryOp grad;
    const LmnTensor *grad_xy;
    /* NULL, or the row sums of op(A) (beta 0) where the product's kernel can write them: then
     * *@row_sums_done is set */
    LmnTensor *row_sums;
    gboolean *row_sums_done;
} Epilogue;

/* A GEMM, or a piece of one: sub-matrices of the caller's operands at element offsets oa, ob, oc
 * (of the first batch entry), with the caller's leading dimensions. */
typedef struct {
    gboolean ta, tb;
    gint64 m, n, k;
    gint64 lda, ldb, ldc;
    float alpha, beta;
    const LmnTensor *a, *b;
    LmnTensor *c;
    gint64 oa, ob, oc;
    gint64 batch, sa, sb, sc;
    const Epilogue *epi; /* NULL, or applied where C is written (whole products only) */
} Piece;

static guint32 fbits(float f)
{
    guint32 u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static guint32 tile_invocations(const Tile *t)
{
    return (t->bm / t->tm) * (t->bn / t->tn);
}

static guint32 tile_shared_bytes(const Tile *t)
{
    return 2 * t->bk * (t->bm + t->bn) * 4; /* double-buffered */
}

static gboolean tile_fits(const LmnVkContext *c, const Tile *t, gboolean whole_subgroups)
{
    const VkPhysicalDeviceLimits *lim = &c->desc.props.limits;
    const guint32 wg = tile_invocations(t);
    if (wg > lim->maxComputeWorkGroupInvocations || wg > lim->maxComputeWorkGroupSize[0] ||
        tile_shared_bytes(t) > lim->maxComputeSharedMemorySize)
        return FALSE;
    /* A workgroup smaller than a subgroup leaves lanes idle (e.g. 64 invocations on a device
     * with 128-wide subgroups). */
    return !whole_subgroups || c->desc.subgroup_size == 0 || wg % c->desc.subgroup_size == 0;
}

static guint pick_tile(const LmnVkContext *c, const guint *candidates)
{
    for (gint pass = 0; pass < 2; pass++)
        for (guint i = 0; i < 4; i++)
            if (tile_fits(c, &tiles[candidates[i]], pass == 0))
                return candidates[i];
    return TILE_FALLBACK;
}

const char *lmn_vk_gemm_select(LmnVkContext *c)
{
    for (guint i = 0; i < G_N_ELEMENTS(tiles); i++)
        g_assert(TILE_OK(tiles[i]));
    for (guint r = 0; r < 3; r++)
        c->gemm_tiles[r] = pick_tile(c, role_candidates[r]);
    /* Core Vulkan does not report compute-unit counts: a few workgroups per unit of a typical
     * device of each type.  lavapipe runs one workgroup per thread at a time. */
    switch (c->desc.props.deviceType) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
        c->gemm_busy_groups = 256;
        break;
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
        c->gemm_busy_groups = g_get_num_processors();
        break;
    default:
        c->gemm_busy_groups = 32;
        break;
    }
    /* Barriers cost a coroutine switch per invocation on CPU devices: the barrier-free kernel
     * there (measured on lavapipe: bench/vulkan-gemm). */
    const char *env = g_getenv("LAMINA_VK_GEMM");
    c->gemm_reg = c->desc.props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    c->gemm_splitk = FALSE;
    if (env != NULL && *env != '\0') {
        if (strstr(env, "reg") != NULL)
            c->gemm_reg = TRUE;
        else if (strstr(env, "tiled") != NULL)
            c->gemm_reg = FALSE;
        c->gemm_splitk = strstr(env, "splitk") != NULL;
        /* "tile=N": every role takes tile N where it fits the device, so tests run each tile. */
        const char *forced = strstr(env, "tile=");
        if (forced != NULL) {
            const guint64 i = g_ascii_strtoull(forced + 5, NULL, 10);
            if (i < G_N_ELEMENTS(tiles) && tile_fits(c, &tiles[i], FALSE))
                for (guint r = 0; r < 3; r++)
                    c->gemm_tiles[r] = (guint) i;
        }
    }
    if (c->gemm_reg)
        return c->gemm_splitk ? "register-tiled (split-K forced)" : "register-tiled";
    if (c->gemm_splitk)
        return "shared-memory tiled (split-K forced)";
    /* The tiles in the description, so a forced tile shows there. */
    const Tile *tl = &tiles[c->gemm_tiles[ROLE_LARGE]], *ts = &tiles[c->gemm_tiles[ROLE_SMALL]];
    g_snprintf(c->gemm_desc, sizeof c->gemm_desc, "shared-memory tiled (%ux%u to %ux%u tiles)",
               tl->bm, tl->bn, ts->bm, ts->bn);
    return c->gemm_desc;
}

void lmn_vk_gemm_cleanup(LmnVkContext *c)
{
    if (c->device == VK_NULL_HANDLE)
        return;
    for (guint i = 0; i < LMN_VK_GEMM_PIPELINES; i++)
        if (c->gemm_pipelines[i] != VK_NULL_HANDLE) {
            c->fn.vkDestroyPipeline(c->device, c->gemm_pipelines[i], NULL);
            c->gemm_pipelines[i] = VK_NULL_HANDLE;
        }
    if (c->gemm_epilogue_pipelines != NULL) {
        GHashTableIter it;
        gpointer value;
        g_hash_table_iter_init(&it, c->gemm_epilogue_pipelines);
        while (g_hash_table_iter_next(&it, NULL, &value))
            c->fn.vkDestroyPipeline(c->device, (VkPipeline) value, NULL);
        g_clear_pointer(&c->gemm_epilogue_pipelines, g_hash_table_unref);
    }
    if (c->gemm_scratch != NULL) {
        lmn_vk_buffer_free_deferred(c, c->gemm_scratch);
        c->gemm_scratch = NULL;
    }
}

/* The variant of pipeline @slot (of @code) specialised for @epi: spec constants @spec, then
 * EPI_BIAS, EPI_ACT, EPI_SEPARATE, EPI_GRAD and (not in the reduction) EPI_ROWSUMS.  Cached by
 * slot and epilogue. */
static VkPipeline epilogue_pipeline(LmnVkContext *c, guint slot, const Epilogue *epi,
                                    const guint32 *code, gsize code_size, const guint32 *spec,
                                    guint n_spec, const char *name)
{
    if (c->gemm_epilogue_pipelines == NULL)
        c->gemm_epilogue_pipelines = g_hash_table_new(NULL, NULL);
    const gboolean rows = epi->row_sums != NULL && slot != SLOT_REDUCE;
    const guint key = slot << 13 | rows << 12 | (guint) epi->grad << 7 |
                      (epi->activated != NULL) << 6 | (epi->bias != NULL) << 5 |
                      (guint) epi->activation;
    G_STATIC_ASSERT(LMN_UNARY_COUNT <= 32);
    VkPipeline pl = g_hash_table_lookup(c->gemm_epilogue_pipelines, GUINT_TO_POINTER(key));
    if (pl != VK_NULL_HANDLE)
        return pl;
    guint32 all[16];
    g_assert(n_spec + 5 <= G_N_ELEMENTS(all));
    memcpy(all, spec, n_spec * sizeof(guint32));
    all[n_spec] = epi->bias != NULL;
    all[n_spec + 1] = (guint32) epi->activation;
    all[n_spec + 2] = epi->activated != NULL;
    all[n_spec + 3] = (guint32) epi->grad;
    all[n_spec + 4] = rows; /* the reduction has no EPI_ROWSUMS */
    pl = lmn_vk_pipeline_new(c, code, code_size, "main", all, n_spec + (rows ? 5 : 4), name);
    if (pl != VK_NULL_HANDLE)
        g_hash_table_insert(c->gemm_epilogue_pipelines, GUINT_TO_POINTER(key), pl);
    return pl;
}

static VkPipeline tiled_pipeline(LmnVkContext *c, guint role, gboolean ta, gboolean tb, gboolean va,
                                 gboolean vb, const Epilogue *epi)
{
    const guint slot = SLOT_TILED(role, ta, tb, va, vb);
    const Tile *t = &tiles[c->gemm_tiles[role]];
    const guint32 spec[] = {tile_invocations(t), t->bm, t->bn, t->bk, t->tm, t->tn, ta, tb, va, vb};
    if (epi != NULL)
        return epilogue_pipeline(c, slot, epi, vk_spv_gemm_tiled, sizeof vk_spv_gemm_tiled, spec,
                                 G_N_ELEMENTS(spec), "gemm_tiled");
    if (c->gemm_pipelines[slot] == VK_NULL_HANDLE) {
        c->gemm_pipelines[slot] =
            lmn_vk_pipeline_new(c, vk_spv_gemm_tiled, sizeof vk_spv_gemm_tiled, "main", spec,
                                G_N_ELEMENTS(spec), "gemm_tiled");
    }
    return c->gemm_pipelines[slot];
}

static VkPipeline reg_pipeline(LmnVkContext *c, gboolean ta, gboolean tb, const Epilogue *epi)
{
    const guint slot = SLOT_REG(ta, tb);
    const guint32 spec[] = {REG_LX, REG_TM, REG_TN, ta, tb};
    if (epi != NULL)
        return epilogue_pipeline(c, slot, epi, vk_spv_gemm_regtile, sizeof vk_spv_gemm_regtile,
                                 spec, G_N_ELEMENTS(spec), "gemm_regtile");
    if (c->gemm_pipelines[slot] == VK_NULL_HANDLE) {
        c->gemm_pipelines[slot] =
            lmn_vk_pipeline_new(c, vk_spv_gemm_regtile, sizeof vk_spv_gemm_regtile, "main", spec,
                                G_N_ELEMENTS(spec), "gemm_regtile");
    }
    return c->gemm_pipelines[slot];
}

static VkPipeline reduce_pipeline(LmnVkContext *c, const Epilogue *epi)
{
    const guint32 spec[] = {LMN_VK_LOCAL_SIZE};
    if (epi != NULL)
        return epilogue_pipeline(c, SLOT_REDUCE, epi, vk_spv_gemm_reduce, sizeof vk_spv_gemm_reduce,
                                 spec, G_N_ELEMENTS(spec), "gemm_reduce");
    return lmn_vk_gemm_reduce_pipeline(c);
}

VkPipeline lmn_vk_gemm_reduce_pipeline(LmnVkContext *c)
{
    if (c->gemm_pipelines[SLOT_REDUCE] == VK_NULL_HANDLE) {
        const guint32 spec[] = {LMN_VK_LOCAL_SIZE};
        c->gemm_pipelines[SLOT_REDUCE] =
            lmn_vk_pipeline_new(c, vk_spv_gemm_reduce, sizeof vk_spv_gemm_reduce, "main", spec,
                                G_N_ELEMENTS(spec), "gemm_reduce");
    }
    return c->gemm_pipelines[SLOT_REDUCE];
}

/* Elements from the first to the last of a matrix stored as @outer rows of @inner contiguous
 * elements, @ld apart (at least 1: an empty operand is still bound). */
static gint64 span(gint64 outer, gint64 inner, gint64 ld)
{
    return outer <= 0 || inner <= 0 ? 1 : (outer - 1) * ld + inner;
}

static gint64 span_a(const Piece *p, gint64 m, gint64 k)
{
    return p->ta ? span(k, m, p->lda) : span(m, k, p->lda);
}

static gint64 span_b(const Piece *p, gint64 k, gint64 n)
{
    return p->tb ? span(n, k, p->ldb) : span(k, n, p->ldb);
}

/* Elements one binding may cover wherever it starts (the start is rounded down to the binding
 * alignment, which costs up to alignment - 4 bytes). */
static gint64 range_cap(const LmnVkContext *c)
{
    return (gint64) ((c->max_range - c->alignment) / 4);
}

/* Whether vec4 loads are valid for an operand: contiguous extent, leading dimension and the base
 * of every z slice multiples of 4 elements (the binding itself starts 16-byte aligned). */
static gboolean vec_ok(gint64 contiguous, gint64 ld, guint32 off, gint64 stride, gint64 nz)
{
    return contiguous % 4 == 0 && ld % 4 == 0 && off % 4 == 0 && (nz <= 1 || stride % 4 == 0);
}

static guint choose_role(const LmnVkContext *c, const Piece *p, gint64 batch)
{
    const Tile *large = &tiles[c->gemm_tiles[ROLE_LARGE]];
    const gint64 large_groups =
        (p->m + large->bm - 1) / large->bm * ((p->n + large->bn - 1) / large->bn) * batch;
    if (p->m >= large->bm && p->n >= large->bn && large_groups >= c->gemm_busy_groups)
        return ROLE_LARGE;
    const Tile *medium = &tiles[c->gemm_tiles[ROLE_MEDIUM]];
    if (p->m >= medium->bm && p->n >= medium->bn)
        return ROLE_MEDIUM;
    return ROLE_SMALL;
}

/* The pipeline for @p dispatched over @nz z slices with @push and epilogue @epi (NULL: none),
 * and its workgroups per slice. */
static VkPipeline kernel_for(LmnVkContext *c, const Piece *p, const GemmPush *push, gint64 nz,
                             const Epilogue *epi, guint32 *gx, guint32 *gy)
{
    if (c->gemm_reg) {
        *gx = (guint32) ((p->n + REG_LX * REG_TN - 1) / (REG_LX * REG_TN));
        *gy = (guint32) ((p->m + REG_TM - 1) / REG_TM);
        return reg_pipeline(c, p->ta, p->tb, epi);
    }
    const guint role = choose_role(c, p, nz);
    const Tile *t = &tiles[c->gemm_tiles[role]];
    *gx = (guint32) ((p->n + t->bn - 1) / t->bn);
    *gy = (guint32) ((p->m + t->bm - 1) / t->bm);
    const gboolean va = vec_ok(p->ta ? p->m : p->k, p->lda, push->off_a, push->stride_a, nz);
    const gboolean vb = vec_ok(p->tb ? p->k : p->n, p->ldb, push->off_b, push->stride_b, nz);
    return tiled_pipeline(c, role, p->ta, p->tb, va, vb, epi);
}

/* The bindings of @epi (NULL: none) after C's at @b: the bias over @n columns (or an activation
 * gradient's operand laid out as C, @c_span elements), then the activated output laid out as
 * C.  Every slot is filled, even when the kernel
 * leaves it alone: an unused bias slot repeats @unread (a binding the kernel already reads) and
 * an unused output slot repeats @c, since a slot the shader declares writable must never be the
 * shared dummy buffer (concurrent dispatches would all "write" it, a hazard to the validation
 * layer's synchronisation checks). */
static gboolean bind_epilogue(LmnVkContext *c, const Epilogue *epi, gint64 n, gint64 c_span,
                              const LmnVkBinding *unread, const LmnVkBinding *cb, LmnVkBinding *b,
                              guint32 *off_bias, guint32 *act_alpha, guint32 *off_act)
{
    *off_bias = 0, *off_act = 0;
    *act_alpha = fbits(epi != NULL ? epi->alpha : 0.0f);
    b[0] = *unread;
    b[0].write = FALSE;
    b[1] = *cb;
    if (epi != NULL && epi->bias != NULL &&
        !lmn_vk_bind_tensor(c, epi->bias, 0, (gsize) n, FALSE, &b[0], off_bias, "gemm"))
        return FALSE;
    if (epi != NULL && epi->grad != LMN_UNARY_IDENTITY &&
        !lmn_vk_bind_tensor(c, epi->grad_xy, 0, (gsize) c_span, FALSE, &b[0], off_bias, "gemm"))
        return FALSE;
    if (epi != NULL && epi->activated != NULL)
        return lmn_vk_bind_tensor(c, epi->activated, 0, (gsize) c_span, TRUE, &b[1], off_act,
                                  "gemm");
    return TRUE;
}

/* The row sums' binding in the activated output's slot @b (see Epilogue.row_sums), for @m
 * rows. */
static gboolean bind_row_sums(LmnVkContext *c, const Epilogue *epi, gint64 m, LmnVkBinding *b,
                              guint32 *off_act)
{
    if (epi == NULL || epi->row_sums == NULL)
        return TRUE;
    return lmn_vk_bind_tensor(c, epi->row_sums, 0, (gsize) m, TRUE, b, off_act, "gemm");
}

/* One dispatch per 65535 batch entries of a piece whose bindings fit. */
static void run_direct(LmnVkContext *c, const Piece *p)
{
    const gint64 nb = p->batch;
    GemmPush push = {
        .m = (guint32) p->m,
        .n = (guint32) p->n,
        .k = (guint32) p->k,
        .k_last = (guint32) p->k,
        .z_last = G_MAXUINT32,
        .lda = (guint32) p->lda,
        .ldb = (guint32) p->ldb,
        .ldc = (guint32) p->ldc,
        .alpha = fbits(p->alpha),
        .beta = fbits(p->beta),
        .stride_a = (guint32) p->sa,
        .stride_b = (guint32) p->sb,
        .stride_c = (guint32) p->sc,
    };
    LmnVkBinding b[5];
    if (!lmn_vk_bind_tensor(c, p->a, (gsize) p->oa,
                            (gsize) ((nb - 1) * p->sa + span_a(p, p->m, p->k)), FALSE, &b[0],
                            &push.off_a, "gemm") ||
        !lmn_vk_bind_tensor(c, p->b, (gsize) p->ob,
                            (gsize) ((nb - 1) * p->sb + span_b(p, p->k, p->n)), FALSE, &b[1],
                            &push.off_b, "gemm") ||
        !lmn_vk_bind_tensor(c, p->c, (gsize) p->oc,
                            (gsize) ((nb - 1) * p->sc + span(p->m, p->n, p->ldc)), TRUE, &b[2],
                            &push.off_c, "gemm"))
        return;
    const guint n_bindings = 5;
    if (!bind_epilogue(c, p->epi, p->n, span(p->m, p->n, p->ldc), &b[1], &b[2], &b[3],
                       &push.off_bias, &push.act_alpha, &push.off_act) ||
        !bind_row_sums(c, p->epi, p->m, &b[4], &push.off_act))
        return;
    guint32 gx, gy;
    VkPipeline pipeline = kernel_for(c, p, &push, nb, p->epi, &gx, &gy);
    if (pipeline != VK_NULL_HANDLE && p->epi != NULL && p->epi->row_sums != NULL)
        *p->epi->row_sums_done = TRUE;
    for (gint64 z0 = 0; z0 < nb; z0 += 65535) {
        push.z0 = (guint32) z0;
        lmn_vk_dispatch(c, pipeline, b, n_bindings, &push, sizeof push, gx, gy,
                        (guint32) MIN(nb - z0, 65535));
    }
}

/* The split-K slice count for one entry of @p, 0 for no split; @slice: the K of each slice. */
static gint64 split_count(const LmnVkContext *c, const Piece *p, gint64 *slice)
{
    if (p->k < 2)
        return 0;
    gint64 want;
    if (c->gemm_splitk) {
        want = MIN(MAX_SPLITS, (p->k + 15) / 16);
    } else {
        gint64 bm = REG_TM, bn = REG_LX * REG_TN;
        if (!c->gemm_reg) {
            const Tile *t = &tiles[c->gemm_tiles[choose_role(c, p, 1)]];
            bm = t->bm, bn = t->bn;
        }
        const gint64 groups = (p->m + bm - 1) / bm * ((p->n + bn - 1) / bn);
        if (groups * 2 > c->gemm_busy_groups)
            return 0;
        want = MIN(MIN(MAX_SPLITS, c->gemm_busy_groups / groups), p->k / MIN_SLICE);
    }
    /* The partial products must fit one binding and a bounded scratch buffer. */
    const gint64 mn = p->m * p->n;
    const gint64 fit = MIN(range_cap(c), (gint64) (SCRATCH_MAX / 4)) / MAX(mn, 1);
    want = MIN(want, fit);
    /* Forced (tests), one slice still goes through the scratch and the reduction. */
    if (want < (c->gemm_splitk ? 1 : 2))
        return 0;
    /* Slices are multiples of 16 (the BK of every tile) so each keeps vec4 alignment. */
    *slice = ((p->k + want - 1) / want + 15) / 16 * 16;
    return (p->k + *slice - 1) / *slice;
}

static gboolean ensure_scratch(LmnVkContext *c, gsize nbytes)
{
    if (c->gemm_scratch != NULL && c->gemm_scratch->size >= nbytes)
        return TRUE;
    if (c->gemm_scratch != NULL) {
        lmn_vk_buffer_free_deferred(c, c->gemm_scratch);
        c->gemm_scratch = NULL;
    }
    /* Grown geometrically (to at most the largest split-K use) so varying shapes do not
     * reallocate every time. */
    gsize size = MAX(nbytes, (gsize) 1 << 20);
    size = MIN(MAX(size, nbytes * 2), MAX(nbytes, MIN(SCRATCH_MAX, (gsize) c->max_range)));
    g_autoptr(GError) error = NULL;
    c->gemm_scratch = lmn_vk_buffer_alloc(c, size, &error);
    if (c->gemm_scratch == NULL) {
        lmn_vk_set_error(c, error->domain, error->code, "gemm split-K scratch: %s", error->message);
        return FALSE;
    }
    return TRUE;
}

/* Split-K for a one-entry piece: @splits slices of @slice K each (the last shorter) into the
 * scratch buffer, then the ordered reduction into C. */
static void run_split(LmnVkContext *c, const Piece *p, gint64 splits, gint64 slice)
{
    const gint64 mn = p->m * p->n;
    if (!ensure_scratch(c, (gsize) (splits * mn * 4)))
        return;
    GemmPush push = {
        .m = (guint32) p->m,
        .n = (guint32) p->n,
        .k = (guint32) slice,
        .k_last = (guint32) (p->k - (splits - 1) * slice),
        .z_last = (guint32) (splits - 1),
        .lda = (guint32) p->lda,
        .ldb = (guint32) p->ldb,
        .ldc = (guint32) p->n,
        .alpha = fbits(1.0f),
        .beta = fbits(0.0f),
        .off_c = 0,
        .stride_a = (guint32) (p->ta ? slice * p->lda : slice),
        .stride_b = (guint32) (p->tb ? slice : slice * p->ldb),
        .stride_c = (guint32) mn,
        .z0 = 0,
    };
    LmnVkBinding b[5];
    if (!lmn_vk_bind_tensor(c, p->a, (gsize) p->oa, (gsize) span_a(p, p->m, p->k), FALSE, &b[0],
                            &push.off_a, "gemm") ||
        !lmn_vk_bind_tensor(c, p->b, (gsize) p->ob, (gsize) span_b(p, p->k, p->n), FALSE, &b[1],
                            &push.off_b, "gemm"))
        return;
    const LmnVkBuffer *s = c->gemm_scratch;
    b[2] =
        (LmnVkBinding){lmn_vk_buffer_handle(s), s->offset, (VkDeviceSize) (splits * mn * 4), TRUE};
    guint32 gx, gy;
    /* The slices are raw partial products: the epilogue belongs to the reduction. */
    VkPipeline pipeline = kernel_for(c, p, &push, splits, NULL, &gx, &gy);
    b[3] = b[1], b[4] = b[2]; /* the unused epilogue slots (see bind_epilogue) */
    lmn_vk_dispatch(c, pipeline, b, 5, &push, sizeof push, gx, gy, (guint32) splits);

    ReducePush rp = {
        .m = (guint32) p->m,
        .n = (guint32) p->n,
        .splits = (guint32) splits,
        .ldc = (guint32) p->ldc,
        .alpha = fbits(p->alpha),
        .beta = fbits(p->beta),
    };
    LmnVkBinding r[4] = {b[2]};
    r[0].write = FALSE;
    if (!lmn_vk_bind_tensor(c, p->c, (gsize) p->oc, (gsize) span(p->m, p->n, p->ldc), TRUE, &r[1],
                            &rp.off_c, "gemm"))
        return;
    const guint n_bindings = 4;
    /* The reduction leaves the row sums to a bias_grad dispatch (lmn_vk_gemm_ex). */
    Epilogue re;
    if (p->epi != NULL)
        re = *p->epi, re.row_sums = NULL;
    const Epilogue *epi = p->epi != NULL ? &re : NULL;
    if (!bind_epilogue(c, epi, p->n, span(p->m, p->n, p->ldc), &r[0], &r[1], &r[2], &rp.off_bias,
                       &rp.act_alpha, &rp.off_act))
        return;
    const gint64 groups = MIN((mn + LMN_VK_LOCAL_SIZE - 1) / LMN_VK_LOCAL_SIZE, 4096);
    lmn_vk_dispatch(c, reduce_pipeline(c, epi), r, n_bindings, &rp, sizeof rp, (guint32) groups, 1,
                    1);
}

/* A piece whose bindings fit: split-K when it pays (or is forced), else direct. */
static void run_piece(LmnVkContext *c, const Piece *p)
{
    /* Batched GEMMs have the batch's workgroups to fill the device; forced split-K (tests) runs
     * entry by entry.  Every entry has the same shape, so the same split. */
    gint64 slice = 0;
    const gint64 splits = c->gemm_splitk || p->batch == 1 ? split_count(c, p, &slice) : 0;
    if (splits == 0) {
        run_direct(c, p);
        return;
    }
    for (gint64 e = 0; e < p->batch; e++) {
        Piece one = *p;
        one.batch = 1;
        one.oa += e * p->sa, one.ob += e * p->sb, one.oc += e * p->sc;
        run_split(c, &one, splits, slice);
    }
}

/* Shrinks a stored matrix of @outer rows of @inner elements, @ld apart, until it spans at most
 * @cap elements: fewer rows first, and only when one row is too long, a shorter row. */
static void shrink(gint64 *outer, gint64 *inner, gint64 ld, gint64 cap)
{
    if (span(*outer, *inner, ld) <= cap)
        return;
    if (*inner > cap) {
        *outer = 1;
        *inner = cap;
    } else {
        *outer = MIN(*outer, (cap - *inner) / ld + 1);
    }
}

/* Rounds a piece extent down to a multiple of 64 (or 4) so pieces keep whole tiles and vec4
 * alignment where they can. */
static gint64 round_extent(gint64 v)
{
    return v >= 64 ? v / 64 * 64 : v >= 4 ? v / 4 * 4 : v;
}

/* The longest K one dispatch runs: llvmpipe ends a shader after 65535 loop iterations in all,
 * and the register-tiled kernel runs one per K step (the shared-memory one up to about four per
 * step of a BK tile), so a longer product would silently come out wrong there.  Longer K runs
 * as K pieces accumulating with beta 1, on every device, so results do not depend on it. */
static gint64 max_k(const LmnVkContext *c)
{
    return c->gemm_reg ? 49152 : 16384;
}

/* Splits one batch entry of @p (batch 1) into M x N x K pieces whose bindings fit and whose K
 * stays within max_k(). */
static void run_chunked(LmnVkContext *c, const Piece *p)
{
    const gint64 cap = range_cap(c);
    gint64 mc = MIN(p->m, (gint64) 65535 * MIN_TILE);
    gint64 nc = MIN(p->n, (gint64) c->max_groups_x * MIN_TILE);
    gint64 kc = MIN(p->k, max_k(c));
    /* Shrinking only ever lowers extents, which never makes another operand's span larger: one
     * pass reaches a size where all three fit. */
    if (p->ta)
        shrink(&kc, &mc, p->lda, cap);
    else
        shrink(&mc, &kc, p->lda, cap);
    if (p->tb)
        shrink(&nc, &kc, p->ldb, cap);
    else
        shrink(&kc, &nc, p->ldb, cap);
    shrink(&mc, &nc, p->ldc, cap);
    mc = round_extent(mc), nc = round_extent(nc), kc = MAX(round_extent(kc), 1);
    for (gint64 m0 = 0; m0 < p->m; m0 += mc) {
        for (gint64 n0 = 0; n0 < p->n; n0 += nc) {
            for (gint64 k0 = 0; k0 < MAX(p->k, 1); k0 += kc) {
                Piece q = *p;
                q.m = MIN(mc, p->m - m0);
                q.n = MIN(nc, p->n - n0);
                q.k = MIN(kc, p->k - k0);
                q.oa += p->ta ? k0 * p->lda + m0 : m0 * p->lda + k0;
                q.ob += p->tb ? n0 * p->ldb + k0 : k0 * p->ldb + n0;
                q.oc += m0 * p->ldc + n0;
                if (k0 > 0)
                    q.beta = 1.0f; /* later K pieces add to the first's result */
                run_piece(c, &q);
            }
        }
    }
}

/* The product of @g with @epi (NULL: none) fused where the product runs whole.  Returns: FALSE
 * when it was cut into pieces with the epilogue left undone (the caller applies it). */
static gboolean gemm_run(LmnVkContext *c, const LmnGemm *g, const Epilogue *epi)
{
    if (g->m <= 0 || g->n <= 0)
        return TRUE;
    Piece p = {
        .ta = g->trans_a != FALSE,
        .tb = g->trans_b != FALSE,
        .m = g->m,
        .n = g->n,
        .k = MAX(g->k, 0),
        .lda = g->trans_a ? g->m : MAX(g->k, 1),
        .ldb = g->trans_b ? MAX(g->k, 1) : g->n,
        .ldc = g->n,
        .alpha = g->alpha,
        .beta = g->beta,
        .a = g->a,
        .b = g->b,
        .c = g->c,
        .oa = g->a_offset,
        .ob = g->b_offset,
        .oc = g->c_offset,
        .batch = MAX(g->batch, 1),
        .sa = g->stride_a,
        .sb = g->stride_b,
        .sc = g->stride_c,
    };
    const gint64 cap = range_cap(c);
    const gint64 spans[3] = {span_a(&p, p.m, p.k), span_b(&p, p.k, p.n), span(p.m, p.n, p.ldc)};
    const gint64 strides[3] = {p.sa, p.sb, p.sc};
    gboolean entry_fits = p.m <= (gint64) 65535 * MIN_TILE &&
                          p.n <= (gint64) c->max_groups_x * MIN_TILE && p.k <= max_k(c);
    /* Batch entries per dispatch group: as many as every operand's binding holds. */
    gint64 group = p.batch;
    for (guint i = 0; i < 3 && entry_fits; i++) {
        if (spans[i] > cap)
            entry_fits = FALSE;
        else if (strides[i] > 0)
            group = MIN(group, (cap - spans[i]) / strides[i] + 1);
    }
    /* The epilogue needs the whole of C from one kernel: one unbatched entry that fits. */
    const gboolean fused = epi != NULL && entry_fits && p.batch == 1;
    g_mutex_lock(&c->lock);
    for (gint64 e0 = 0; e0 < p.batch; e0 += entry_fits ? group : 1) {
        Piece q = p;
        q.epi = fused ? epi : NULL;
        q.batch = entry_fits ? MIN(group, p.batch - e0) : 1;
        q.oa += e0 * p.sa, q.ob += e0 * p.sb, q.oc += e0 * p.sc;
        if (entry_fits)
            run_piece(c, &q);
        else
            run_chunked(c, &q);
    }
    g_mutex_unlock(&c->lock);
    return epi == NULL || fused;
}

void lmn_vk_gemm(gpointer ctx, const LmnGemm *g)
{
    gemm_run(ctx, g, NULL);
}

/* @t's first @rows x @cols elements as a tensor of that shape (the ops below size their work
 * from the shape; C or A may be longer, as for a partial last batch). */
static LmnTensor exact_view(const LmnTensor *t, gint64 rows, gint64 cols)
{
    LmnTensor v = *t;
    v.shape = lmn_shape_make(2, rows, cols);
    return v;
}

/* Which of an activation's input and output its derivative reads (unary_grad_f.glsl): the
 * output for those written in terms of it (sigmoid's y (1 - y), ...), else the input. */
static gboolean grad_reads_output(LmnUnaryOp op)
{
    switch (op) {
    case LMN_UNARY_SIGMOID:
    case LMN_UNARY_TANH:
    case LMN_UNARY_SQRT:
    case LMN_UNARY_RSQRT:
    case LMN_UNARY_RECIPROCAL:
    case LMN_UNARY_EXP:
        return TRUE;
    default:
        return FALSE;
    }
}

void lmn_vk_gemm_ex(gpointer ctx, const LmnGemm *g, const LmnGemmEpilogue *e)
{
    LmnVkContext *c = ctx;
    /* The row sums go in the kernel when they overwrite (beta 0) and the activated output's
     * binding is free; else, and wherever the kernel did not write them, bias_grad sums them. */
    gboolean sums_done = FALSE;
    LmnTensor *sums = e->a_row_sums != NULL && e->row_sums_beta == 0.0f && e->activated == NULL
                          ? e->a_row_sums
                          : NULL;
    const Epilogue epi = {e->bias,
                          e->activation,
                          e->activation_alpha,
                          e->activated,
                          e->activation_grad,
                          grad_reads_output(e->activation_grad) ? e->grad_y : e->grad_x,
                          sums,
                          &sums_done};
    const gboolean has_epi = e->bias != NULL || e->activation != LMN_UNARY_IDENTITY ||
                             e->activation_grad != LMN_UNARY_IDENTITY || sums != NULL;
    if (!gemm_run(c, g, has_epi ? &epi : NULL)) {
        LmnTensor cv = exact_view(g->c, g->m, g->n);
        if (e->activation_grad != LMN_UNARY_IDENTITY) {
            const LmnTensor xv = exact_view(e->grad_x, g->m, g->n);
            const LmnTensor yv = exact_view(e->grad_y, g->m, g->n);
            lmn_vk_unary_backward(c, e->activation_grad, &xv, &yv, &cv, &cv, e->activation_alpha);
        }
        if (e->bias != NULL)
            lmn_vk_bias_add(c, &cv, e->bias, g->m, g->n, 1);
        if (e->activated != NULL) {
            LmnTensor yv = exact_view(e->activated, g->m, g->n);
            lmn_vk_unary(c, e->activation, &cv, &yv, e->activation_alpha);
        } else if (e->activation != LMN_UNARY_IDENTITY) {
            lmn_vk_unary(c, e->activation, &cv, &cv, e->activation_alpha);
        }
    }
    if (e->a_row_sums != NULL && !sums_done) {
        /* op(A) is A [k, m] transposed (sums down its columns) or A [m, k] itself. */
        if (g->trans_a) {
            const LmnTensor av = exact_view(g->a, g->k, g->m);
            lmn_vk_bias_grad(c, e->a_row_sums, &av, g->k, g->m, 1, e->row_sums_beta);
        } else {
            const LmnTensor av = exact_view(g->a, g->m, g->k);
            lmn_vk_bias_grad(c, e->a_row_sums, &av, 1, g->m, g->k, e->row_sums_beta);
        }
    }
}
