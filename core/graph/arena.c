/* Lamina — the activation arena planner: offsets for tensors with known lifetimes. */
#include "arena-private.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    gint64 lo, hi; /* elements [lo, hi) */
} Span;

gint64 lmn_arena_align(gint64 size)
{
    if (size > G_MAXINT64 - (LMN_ARENA_ALIGN_ELEMS - 1))
        return G_MAXINT64;
    return (size + LMN_ARENA_ALIGN_ELEMS - 1) / LMN_ARENA_ALIGN_ELEMS * LMN_ARENA_ALIGN_ELEMS;
}

/* Sizes come from shapes a config chose, so sums saturate rather than wrap: a wrapped total
 * would plan segments smaller than the tensors placed in them. */
static gint64 add_sat(gint64 a, gint64 b)
{
    gint64 r;
    return __builtin_add_overflow(a, b, &r) ? G_MAXINT64 : r;
}

static gboolean lifetimes_overlap(const LmnArenaBlock *a, const LmnArenaBlock *b)
{
    return a->first_use <= b->last_use && b->first_use <= a->last_use;
}

/* Placement order: largest first, because a large block placed late finds no gap and grows the
 * arena; then earlier first use and then input order, so that equal problems get equal plans. */
static gint compare_placement(gconstpointer pa, gconstpointer pb, gpointer data)
{
    const LmnArenaBlock *blocks = data;
    guint a = *(const guint *) pa, b = *(const guint *) pb;
    gint64 sa = lmn_arena_align(blocks[a].size), sb = lmn_arena_align(blocks[b].size);
    if (sa != sb)
        return sa > sb ? -1 : 1;
    if (blocks[a].first_use != blocks[b].first_use)
        return blocks[a].first_use < blocks[b].first_use ? -1 : 1;
    return (a > b) - (a < b);
}

static gint compare_span(gconstpointer pa, gconstpointer pb)
{
    const Span *a = pa, *b = pb;
    if (a->lo != b->lo)
        return a->lo < b->lo ? -1 : 1;
    return (a->hi > b->hi) - (a->hi < b->hi);
}

static guint add_segment(LmnArenaPlan *plan, GArray *dedicated, gint64 size, gboolean alone)
{
    g_array_append_val(plan->segment_sizes, size);
    g_array_append_val(dedicated, alone);
    return plan->segment_sizes->len - 1;
}

/* The largest sum of aligned sizes live at one time.  It is reached at some block's first use
 * (live sets only grow there), so only those times are tried. */
static gint64 peak_live(const LmnArenaBlock *blocks, guint n)
{
    gint64 peak = 0;
    for (guint i = 0; i < n; i++) {
        gint t = blocks[i].first_use;
        gint64 live = 0;
        for (guint j = 0; j < n; j++)
            if (blocks[j].first_use <= t && t <= blocks[j].last_use)
                live = add_sat(live, lmn_arena_align(blocks[j].size));
        peak = MAX(peak, live);
    }
    return peak;
}

/* The planner's state while it places blocks in order. */
typedef struct {
    LmnArenaBlock *blocks;
    LmnArenaPlan *plan;
    GArray *dedicated; /* gboolean per segment: holds one block larger than the capacity */
    gint64 cap;        /* a shared segment's capacity, aligned */
    guint *placed;     /* the blocks placed so far (indices into blocks) */
    guint n_placed;
    Span *busy; /* scratch: the busy ranges of one segment */
} Placer;

/* Where @b (aligned @size) would go: best fit is the smallest gap that holds it, among the free
 * ranges left inside each segment's current size by the placed blocks whose lifetimes overlap
 * it; failing that, the free end of the segment that grows least without passing the capacity.
 * *tail_growth stays G_MAXINT64 when no segment can take it. */
typedef struct {
    gint best_seg, tail_seg;
    gint64 best_off, best_gap, tail_off, tail_growth;
} Fit;

/* Considers segment @s for @b, updating @fit. */
static void fit_in_segment(Placer *pl, guint s, const LmnArenaBlock *b, gint64 size, Fit *fit)
{
    guint n_busy = 0;
    for (guint p = 0; p < pl->n_placed; p++) {
        const LmnArenaBlock *o = &pl->blocks[pl->placed[p]];
        if (o->segment == s && lifetimes_overlap(o, b))
            pl->busy[n_busy++] = (Span){o->offset, o->offset + lmn_arena_align(o->size)};
    }
    qsort(pl->busy, n_busy, sizeof *pl->busy, compare_span);
    gint64 end = 0; /* everything below is free or already considered */
    for (guint i = 0; i < n_busy; i++) {
        gint64 gap = pl->busy[i].lo - end;
        if (gap >= size && gap < fit->best_gap) {
            fit->best_seg = (gint) s;
            fit->best_off = end;
            fit->best_gap = gap;
        }
        end = MAX(end, pl->busy[i].hi);
    }
    gint64 seg_size = g_array_index(pl->plan->segment_sizes, gint64, s);
    if (seg_size - end >= size) {
        if (seg_size - end < fit->best_gap) {
            fit->best_seg = (gint) s;
            fit->best_off = end;
            fit->best_gap = seg_size - end;
        }
    } else if (add_sat(end, size) <= pl->cap && end + size - seg_size < fit->tail_growth) {
        /* cap is below G_MAXINT64 (rounded down to the alignment), so a saturated sum never
         * passes this test. */
        fit->tail_seg = (gint) s;
        fit->tail_off = end;
        fit->tail_growth = end + size - seg_size;
    }
}

/* Places one block of aligned @size > 0 in a shared segment: in a gap, at a segment's grown
 * end, or in a new segment. */
static void place_shared(Placer *pl, LmnArenaBlock *b, gint64 size)
{
    Fit fit = {-1, -1, 0, G_MAXINT64, 0, G_MAXINT64};
    for (guint s = 0; s < pl->plan->segment_sizes->len; s++)
        if (!g_array_index(pl->dedicated, gboolean, s))
            fit_in_segment(pl, s, b, size, &fit);
    if (fit.best_seg >= 0) {
        b->segment = (guint) fit.best_seg;
        b->offset = fit.best_off;
    } else if (fit.tail_seg >= 0) {
        /* end <= seg_size, so a segment grows by at most the block's size: the total never
         * exceeds the unshared sum. */
        b->segment = (guint) fit.tail_seg;
        b->offset = fit.tail_off;
        g_array_index(pl->plan->segment_sizes, gint64, fit.tail_seg) += fit.tail_growth;
    } else {
        b->segment = add_segment(pl->plan, pl->dedicated, size, FALSE);
        b->offset = 0;
    }
}

/* Places block @index: empty blocks at offset 0 of segment 0, blocks above the capacity in a
 * segment of their own, the rest shared. */
static void place_block(Placer *pl, guint index)
{
    LmnArenaBlock *b = &pl->blocks[index];
    gint64 size = lmn_arena_align(b->size);
    pl->plan->unshared = add_sat(pl->plan->unshared, size);
    if (size == 0) {
        /* Occupies nothing, so it conflicts with nothing; segment 0 only has to exist. */
        if (pl->plan->segment_sizes->len == 0)
            add_segment(pl->plan, pl->dedicated, 0, FALSE);
        b->segment = 0;
        b->offset = 0;
        return;
    }
    if (size > pl->cap) {
        b->segment = add_segment(pl->plan, pl->dedicated, size, TRUE);
        b->offset = 0;
    } else {
        place_shared(pl, b, size);
    }
    pl->placed[pl->n_placed++] = index;
}

void lmn_arena_plan(LmnArenaBlock *blocks, guint n, gint64 segment_capacity, LmnArenaPlan *plan)
{
    g_return_if_fail(plan != NULL);
    memset(plan, 0, sizeof *plan);
    plan->segment_sizes = g_array_new(FALSE, FALSE, sizeof(gint64));
    g_return_if_fail(blocks != NULL || n == 0);
    g_return_if_fail(segment_capacity > 0);
    for (guint i = 0; i < n; i++)
        g_return_if_fail(blocks[i].size >= 0 && blocks[i].first_use <= blocks[i].last_use);

    g_autoptr(GArray) dedicated = g_array_new(FALSE, FALSE, sizeof(gboolean));
    g_autofree guint *order = g_new(guint, MAX(n, 1));
    g_autofree guint *placed = g_new(guint, MAX(n, 1));
    g_autofree Span *busy = g_new(Span, MAX(n, 1));
    Placer pl = {
        .blocks = blocks,
        .plan = plan,
        .dedicated = dedicated,
        .cap = MAX(segment_capacity / LMN_ARENA_ALIGN_ELEMS * LMN_ARENA_ALIGN_ELEMS,
                   (gint64) LMN_ARENA_ALIGN_ELEMS),
        .placed = placed,
        .busy = busy,
    };
    for (guint i = 0; i < n; i++)
        order[i] = i;
    g_qsort_with_data(order, (gint) n, sizeof *order, compare_placement, blocks);
    for (guint k = 0; k < n; k++)
        place_block(&pl, order[k]);

    for (guint s = 0; s < plan->segment_sizes->len; s++)
        plan->total = add_sat(plan->total, g_array_index(plan->segment_sizes, gint64, s));
    plan->peak_live = peak_live(blocks, n);
}

void lmn_arena_plan_clear(LmnArenaPlan *plan)
{
    if (plan == NULL)
        return;
    g_clear_pointer(&plan->segment_sizes, g_array_unref);
    plan->total = plan->peak_live = plan->unshared = 0;
}
