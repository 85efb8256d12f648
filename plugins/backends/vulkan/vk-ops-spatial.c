/* Lamina Vulkan backend — the ABI 1.3 resampling ops (upsample2d and its adjoint), run by
 * shaders/vulkan/upsample.comp with the CPU backend's arithmetic (cpu-ops-spatial.c).
 *
 * Every output element depends on one plane of the input only, so above maxStorageBufferRange
 * the planes go in chunks, each binding only its planes of both operands.
 */
#include "vk-private.h"

#include <string.h>

#define MAX_GROUPS 4096u

typedef struct {
    guint32 mode, backward, total, off_in, off_out;
    gint32 ih, iw, oh, ow;
    float sh, sw;
    guint32 align_corners;
} UpsamplePush;

static guint32 up_groups(gsize n)
{
    gsize g = (n + LMN_VK_LOCAL_SIZE - 1) / LMN_VK_LOCAL_SIZE;
    return (guint32) CLAMP(g, 1, MAX_GROUPS); /* the shader loops over the rest */
}

/* Sizes the shader indexes in 32 bits; FALSE (deferred error set) when they do not fit. */
static gboolean up_fits(LmnVkContext *c, const LmnUpsampleGeom *g, const char *op)
{
    gboolean fits = g->in_h <= G_MAXINT32 / 4 && g->in_w <= G_MAXINT32 / 4 &&
                    g->out_h <= G_MAXINT32 / 4 && g->out_w <= G_MAXINT32 / 4 &&
                    g->in_h * g->in_w <= G_MAXINT32 && g->out_h * g->out_w <= G_MAXINT32;
    if (!fits)
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                         "vulkan: %s: image planes beyond 32-bit indexing", op);
    return fits;
}

/* @src has @per_src elements per plane, @dst @per_dst; one invocation per @dst element. */
static void upsample_op(LmnVkContext *c, gboolean backward, LmnUpsampleMode mode,
                        const LmnTensor *src, gsize per_src, LmnTensor *dst, gsize per_dst,
                        const LmnUpsampleGeom *g, const char *op)
{
    if (c->error != NULL || !up_fits(c, g, op))
        return;
    const gsize planes = (gsize) g->planes;
    /* The most elements one binding may span at any offset (the offset is rounded down to the
     * binding alignment, which costs up to alignment - 4 bytes of the range). */
    const gsize max_elems = (gsize) ((c->max_range - c->alignment) / 4 + 1);
    const gsize per = max_elems / MAX(per_src, per_dst);
    if (per == 0) {
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                         "vulkan: %s: one image plane exceeds maxStorageBufferRange", op);
        return;
    }
    for (gsize u0 = 0; u0 < planes; u0 += per) {
        const gsize nu = MIN(per, planes - u0);
        if (nu * per_dst > G_MAXUINT32) {
            lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                             "vulkan: %s: operands beyond 32-bit indexing", op);
            return;
        }
        UpsamplePush p = {
            .mode = mode,
            .backward = backward,
            .total = (guint32) (nu * per_dst),
            .ih = (gint32) g->in_h,
            .iw = (gint32) g->in_w,
            .oh = (gint32) g->out_h,
            .ow = (gint32) g->out_w,
            .sh = g->scale_h,
            .sw = g->scale_w,
            .align_corners = g->align_corners ? 1 : 0,
        };
        LmnVkBinding b[2];
        if (!lmn_vk_bind_tensor(c, src, u0 * per_src, nu * per_src, FALSE, &b[0], &p.off_in, op) ||
            !lmn_vk_bind_tensor(c, dst, u0 * per_dst, nu * per_dst, TRUE, &b[1], &p.off_out, op))
            return;
        lmn_vk_dispatch(c, lmn_vk_builtin_pipeline(c, LMN_VK_SHADER_UPSAMPLE), b, 2, &p, sizeof p,
                        up_groups(nu * per_dst), 1, 1);
    }
}

void lmn_vk_upsample2d(gpointer ctx, LmnUpsampleMode mode, const LmnTensor *x, LmnTensor *y,
                       const LmnUpsampleGeom *g)
{
    LmnVkContext *c = ctx;
    g_mutex_lock(&c->lock);
    upsample_op(c, FALSE, mode, x, (gsize) (g->in_h * g->in_w), y, (gsize) (g->out_h * g->out_w), g,
                "upsample2d");
    g_mutex_unlock(&c->lock);
}

void lmn_vk_upsample2d_backward(gpointer ctx, LmnUpsampleMode mode, const LmnTensor *dy,
                                LmnTensor *dx, const LmnUpsampleGeom *g)
{
    LmnVkContext *c = ctx;
    g_mutex_lock(&c->lock);
    upsample_op(c, TRUE, mode, dy, (gsize) (g->out_h * g->out_w), dx, (gsize) (g->in_h * g->in_w),
                g, "upsample2d_backward");
    g_mutex_unlock(&c->lock);
}
