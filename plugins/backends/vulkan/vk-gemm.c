/* Lamina Vulkan backend — the fp32 GEMM (LmnGemm) as compute dispatches.
 *
 * Two kernels: gemm.comp (shared-memory tiles, for GPUs) and gemm_reg.comp (register tiles
 * without shared memory, faster on CPU devices such as lavapipe); vk-device.c picks one per
 * device and LAMINA_VK_GEMM=tiled|reg overrides it.  Each operand is bound over every batch
 * entry it spans, at its offset rounded down to the binding alignment.
 */
#include "vk-private.h"

#include <string.h>

static guint32 fbits(float f)
{
    guint32 u;
    memcpy(&u, &f, sizeof u);
    return u;
}

typedef struct {
    guint32 m, n, k, trans_a, trans_b, alpha, beta, off_a, off_b, off_c, stride_a, stride_b,
        stride_c, z0;
} GemmPush;

void lmn_vk_gemm(gpointer ctx, const LmnGemm *g)
{
    LmnVkContext *c = ctx;
    if (g->m <= 0 || g->n <= 0)
        return;
    const gint64 batch = MAX(g->batch, 1);
    /* Each operand is bound over every batch entry it spans (stride 0 = one entry). */
    const gsize ext_a = (gsize) ((batch - 1) * g->stride_a + g->m * g->k);
    const gsize ext_b = (gsize) ((batch - 1) * g->stride_b + g->k * g->n);
    const gsize ext_c = (gsize) ((batch - 1) * g->stride_c + g->m * g->n);
    GemmPush p = {
        .m = (guint32) g->m,
        .n = (guint32) g->n,
        .k = (guint32) g->k,
        .trans_a = g->trans_a != FALSE,
        .trans_b = g->trans_b != FALSE,
        .alpha = fbits(g->alpha),
        .beta = fbits(g->beta),
        .stride_a = (guint32) g->stride_a,
        .stride_b = (guint32) g->stride_b,
        .stride_c = (guint32) g->stride_c,
    };
    g_mutex_lock(&c->lock);
    const guint64 tile = c->gemm_reg ? LMN_VK_GEMM_REG_TILE : LMN_VK_GEMM_TILE;
    const guint64 gx = (guint64) (g->n + tile - 1) / tile;
    const guint64 gy = (guint64) (g->m + tile - 1) / tile;
    LmnVkBinding b[3];
    if (gx > c->max_groups_x || gy > 65535) {
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                         "vulkan: gemm: a %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
                         " output exceeds the workgroup count limits",
                         g->m, g->n);
    } else if (lmn_vk_bind_tensor(c, g->a, (gsize) g->a_offset, ext_a, FALSE, &b[0], &p.off_a, "gemm") &&
               lmn_vk_bind_tensor(c, g->b, (gsize) g->b_offset, ext_b, FALSE, &b[1], &p.off_b, "gemm") &&
               lmn_vk_bind_tensor(c, g->c, (gsize) g->c_offset, ext_c, TRUE, &b[2], &p.off_c, "gemm")) {
        VkPipeline pipeline =
            lmn_vk_builtin_pipeline(c, c->gemm_reg ? LMN_VK_SHADER_GEMM_REG : LMN_VK_SHADER_GEMM);
        for (gint64 z0 = 0; z0 < batch; z0 += 65535) {
            p.z0 = (guint32) z0;
            lmn_vk_dispatch(c, pipeline, b, 3, &p, sizeof p, (guint32) gx, (guint32) gy,
                            (guint32) MIN(batch - z0, 65535));
        }
    }
    g_mutex_unlock(&c->lock);
}

