/* Lamina — the activation arena planner (private to liblamina and its tests).
 *
 * A training step needs many tensors (activations, gradients) whose lifetimes are known before
 * it runs: forward outputs live for the whole step, gradients from their first backward write to
 * their last backward read.  Tensors whose lifetimes do not overlap can share memory, so the
 * model asks the planner for an offset per tensor inside a few large allocations ("segments")
 * instead of allocating each tensor on its own.
 *
 * The planner is greedy by size with best fit (the "greedy by size" offset assignment of
 * Pisarchyk & Lee, 2020): tensors are placed largest first, each into the smallest gap left by the
 * already placed tensors whose lifetimes overlap it, or else where a segment grows least.  Sizes
 * and offsets are in elements; every offset is a multiple of LMN_ARENA_ALIGN_ELEMS.  No segment
 * grows beyond the given capacity, except a segment holding a single tensor larger than the
 * capacity, so no backend allocation exceeds it (Vulkan's maxMemoryAllocationSize and buffer
 * limits).
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Offsets inside a segment are multiples of this many elements: 256 bytes for 4-byte elements,
 * the largest minStorageBufferOffsetAlignment Vulkan allows, so a device backend can bind every
 * activation exactly where it starts (plugin kernels have no per-buffer offsets) and vector
 * accesses never straddle two tensors. */
#define LMN_ARENA_ALIGN_ELEMS 64

/**
 * LmnArenaBlock:
 * One tensor to place.  The caller fills size, first_use and last_use; lmn_arena_plan() fills
 * segment and offset.  Uses are inclusive points on any integer timeline: two blocks may share
 * memory only when one's last_use is strictly before the other's first_use.
 */
typedef struct {
    gint64 size;    /* elements, >= 0 */
    gint first_use; /* inclusive */
    gint last_use;  /* inclusive, >= first_use */
    guint segment;  /* out: index into LmnArenaPlan.segment_sizes */
    gint64 offset;  /* out: elements from the segment's start, a multiple of the alignment */
} LmnArenaBlock;

/**
 * LmnArenaPlan:
 * The result of lmn_arena_plan().  Clear with lmn_arena_plan_clear().
 */
typedef struct {
    GArray *segment_sizes; /* gint64 elements per segment; each a multiple of the alignment */
    gint64 total;          /* sum of segment_sizes */
    gint64 peak_live;      /* the largest sum of aligned sizes live at one time: no plan can
                            * have a smaller total, so total / peak_live measures the planner */
    gint64 unshared;       /* sum of aligned sizes: the total when nothing shares memory */
} LmnArenaPlan;

/**
 * lmn_arena_align:
 * Returns: @size rounded up to a multiple of LMN_ARENA_ALIGN_ELEMS, or G_MAXINT64 when that
 *   does not fit gint64 (no tensor can be that large, so its allocation fails)
 */
gint64 lmn_arena_align(gint64 size);

/**
 * lmn_arena_plan:
 * @blocks: (inout): @n blocks; their segment and offset are filled
 * @segment_capacity: the most elements a segment shared by several blocks may hold (> 0; rounded
 *   down to the alignment, and at least the alignment)
 * @plan: (out caller-allocates): the segments and figures; the caller clears it
 * Places every block so that blocks with overlapping lifetimes never overlap in memory.  The plan
 * is deterministic: it depends only on the blocks and their order.  A block of size 0 is placed
 * at offset 0 of segment 0, which then exists (possibly empty).  Its total never exceeds
 * @plan->unshared.  Sizes near G_MAXINT64 (a saturated lmn_shape_numel) never wrap: such a block
 * gets a dedicated segment of at least its size, and the figures saturate at G_MAXINT64, so the
 * caller's allocation of that segment fails instead of a small one being overrun.
 */
void lmn_arena_plan(LmnArenaBlock *blocks, guint n, gint64 segment_capacity, LmnArenaPlan *plan);

/** lmn_arena_plan_clear: frees what lmn_arena_plan() put in @plan (NULL-safe, idempotent). */
void lmn_arena_plan_clear(LmnArenaPlan *plan);

G_END_DECLS
