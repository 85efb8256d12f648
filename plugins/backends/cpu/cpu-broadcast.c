/* Lamina CPU backend — coalescing broadcast shapes into loop plans (cpu-broadcast.h). */
#include "cpu-broadcast.h"

/* Bit 0: a is broadcast along the dim, bit 1: b is. */
static guint pattern(const LmnBroadcast *bc, guint k)
{
    return (bc->a[k] != bc->out[k] ? 1u : 0u) | (bc->b[k] != bc->out[k] ? 2u : 0u);
}

/* Contiguous strides of an operand over the plan's dims, 0 where @bcast_bit is set. */
static void plan_strides(LmnCpuBroadcastPlan *p, const guint *pat, guint bcast_bit, gint64 *s)
{
    gint64 stride = 1;
    for (gint k = (gint) p->nd - 1; k >= 0; k--) {
        s[k] = (pat[k] & bcast_bit) ? 0 : stride;
        stride *= (pat[k] & bcast_bit) ? 1 : p->dims[k];
    }
}

void lmn_cpu_broadcast_plan(const LmnBroadcast *bc, LmnCpuBroadcastPlan *p)
{
    guint pat[LMN_BROADCAST_MAX_DIMS];
    p->nd = 0;
    for (guint k = 0; k < bc->ndim; k++) {
        if (bc->out[k] == 1)
            continue; /* nothing to index along it */
        const guint pk = pattern(bc, k);
        if (p->nd > 0 && pat[p->nd - 1] == pk) {
            p->dims[p->nd - 1] *= bc->out[k];
            continue;
        }
        pat[p->nd] = pk;
        p->dims[p->nd++] = bc->out[k];
    }
    if (p->nd == 0) {
        pat[0] = 0;
        p->dims[p->nd++] = 1;
    }
    plan_strides(p, pat, 4u, p->so); /* no bit 2: the output is never broadcast */
    plan_strides(p, pat, 1u, p->sa);
    plan_strides(p, pat, 2u, p->sb);
}
