/* Lamina CPU backend — broadcast plans shared by the broadcasting kernels (cpu-ops-axis.c).
 * Private to the plugin.
 */
#pragma once

#include <lamina/ops.h>

G_BEGIN_DECLS

/* An LmnBroadcast with size-1 output dims dropped and neighbouring dims of the same
 * broadcast pattern merged, so the innermost loop is as long as possible.  Strides are in
 * elements, 0 along an operand's broadcast dims; the output is contiguous. */
typedef struct {
    guint nd;
    gint64 dims[LMN_BROADCAST_MAX_DIMS];
    gint64 so[LMN_BROADCAST_MAX_DIMS], sa[LMN_BROADCAST_MAX_DIMS], sb[LMN_BROADCAST_MAX_DIMS];
} LmnCpuBroadcastPlan;

/** lmn_cpu_broadcast_plan: the coalesced plan of @bc (nd >= 1). */
void lmn_cpu_broadcast_plan(const LmnBroadcast *bc, LmnCpuBroadcastPlan *p);

G_END_DECLS
