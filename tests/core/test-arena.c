/* The activation arena: the planner's guarantees checked exhaustively on random problems and on
 * problems with a known optimum, then a model whose gradient buffers share memory checked against
 * finite differences of its own loss. */
#include "graph/arena-private.h"

#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

static LmnRegistry *registry;

static gboolean lifetimes_overlap(const LmnArenaBlock *a, const LmnArenaBlock *b)
{
    return a->first_use <= b->last_use && b->first_use <= a->last_use;
}

/* Every guarantee of lmn_arena_plan(), pair by pair: alignment, blocks inside their segment,
 * no shared memory between blocks live at the same time, capacity, and the totals. */
static void check_plan(const LmnArenaBlock *blocks, guint n, gint64 cap, const LmnArenaPlan *plan)
{
    const GArray *segs = plan->segment_sizes;
    gint64 sum_aligned = 0, total = 0;
    for (guint i = 0; i < n; i++)
        sum_aligned += lmn_arena_align(blocks[i].size);
    for (guint s = 0; s < segs->len; s++) {
        gint64 size = g_array_index(segs, gint64, s);
        g_assert_cmpint(size % LMN_ARENA_ALIGN_ELEMS, ==, 0);
        total += size;
        /* A segment beyond the capacity holds exactly one block, which needs all of it. */
        if (size > cap) {
            guint holders = 0;
            for (guint i = 0; i < n; i++)
                if (blocks[i].segment == s && blocks[i].size > 0) {
                    holders++;
                    g_assert_cmpint(lmn_arena_align(blocks[i].size), ==, size);
                }
            g_assert_cmpuint(holders, ==, 1);
        }
    }
    g_assert_cmpint(plan->total, ==, total);
    g_assert_cmpint(plan->unshared, ==, sum_aligned);
    g_assert_cmpint(plan->total, <=, plan->unshared);
    g_assert_cmpint(plan->peak_live, <=, plan->total);
    if (n > 0)
        g_assert_cmpuint(segs->len, >, 0);

    for (guint i = 0; i < n; i++) {
        const LmnArenaBlock *a = &blocks[i];
        g_assert_cmpuint(a->segment, <, segs->len);
        g_assert_cmpint(a->offset, >=, 0);
        g_assert_cmpint(a->offset % LMN_ARENA_ALIGN_ELEMS, ==, 0);
        g_assert_cmpint(a->offset + a->size, <=, g_array_index(segs, gint64, a->segment));
        for (guint j = i + 1; j < n; j++) {
            const LmnArenaBlock *b = &blocks[j];
            if (a->size == 0 || b->size == 0 || a->segment != b->segment ||
                !lifetimes_overlap(a, b))
                continue;
            /* Aligned extents: a block owns its padding too. */
            gint64 a_end = a->offset + lmn_arena_align(a->size);
            gint64 b_end = b->offset + lmn_arena_align(b->size);
            if (a->offset < b_end && b->offset < a_end)
                g_error("blocks %u [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT ") t[%d, %d] and "
                        "%u [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT ") t[%d, %d] share memory "
                        "in segment %u",
                        i, a->offset, a_end, a->first_use, a->last_use, j, b->offset, b_end,
                        b->first_use, b->last_use, a->segment);
        }
    }

    /* peak_live recomputed at every time point, not only at first uses. */
    gint t_max = 0;
    for (guint i = 0; i < n; i++)
        t_max = MAX(t_max, blocks[i].last_use);
    gint64 peak = 0;
    for (gint t = 0; t <= t_max; t++) {
        gint64 live = 0;
        for (guint i = 0; i < n; i++)
            if (blocks[i].first_use <= t && t <= blocks[i].last_use)
                live += lmn_arena_align(blocks[i].size);
        peak = MAX(peak, live);
    }
    g_assert_cmpint(plan->peak_live, ==, peak);
}

static void test_random(void)
{
    GRand *rand = g_rand_new_with_seed(20261123);
    for (guint problem = 0; problem < 3000; problem++) {
        guint n = (guint) g_rand_int_range(rand, 0, 48);
        /* Small capacities so that segments fill up and large blocks get their own. */
        gint64 cap = g_rand_int_range(rand, 1, 4) == 1 ? g_rand_int_range(rand, 1, 400) : 1 << 20;
        gint horizon = g_rand_int_range(rand, 1, 30);
        g_autofree LmnArenaBlock *blocks = g_new0(LmnArenaBlock, MAX(n, 1));
        for (guint i = 0; i < n; i++) {
            gint32 kind = g_rand_int_range(rand, 0, 10);
            blocks[i].size = kind == 0  ? 0
                             : kind < 8 ? g_rand_int_range(rand, 1, 100)
                                        : g_rand_int_range(rand, 100, 1000);
            blocks[i].first_use = g_rand_int_range(rand, 0, horizon);
            blocks[i].last_use = blocks[i].first_use + g_rand_int_range(rand, 0, horizon);
        }
        LmnArenaPlan plan;
        lmn_arena_plan(blocks, n, cap, &plan);
        gint64 eff_cap = MAX(cap / LMN_ARENA_ALIGN_ELEMS * LMN_ARENA_ALIGN_ELEMS,
                             (gint64) LMN_ARENA_ALIGN_ELEMS);
        check_plan(blocks, n, eff_cap, &plan);

        /* Deterministic: the same problem gets the same plan. */
        g_autofree LmnArenaBlock *again = g_memdup2(blocks, sizeof *blocks * MAX(n, 1));
        for (guint i = 0; i < n; i++)
            again[i].segment = 99, again[i].offset = -1;
        LmnArenaPlan plan2;
        lmn_arena_plan(again, n, cap, &plan2);
        g_assert_cmpint(plan2.total, ==, plan.total);
        for (guint i = 0; i < n; i++) {
            g_assert_cmpuint(again[i].segment, ==, blocks[i].segment);
            g_assert_cmpint(again[i].offset, ==, blocks[i].offset);
        }
        lmn_arena_plan_clear(&plan2);
        lmn_arena_plan_clear(&plan);
        lmn_arena_plan_clear(&plan); /* idempotent */
    }
    g_rand_free(rand);
}

/* A chain as in backward: each gradient lives from its writer to its reader, so only two are
 * ever live and the optimum, two buffers, is what the planner must find. */
static void test_chain(void)
{
    enum { N = 40 };
    LmnArenaBlock blocks[N];
    for (guint i = 0; i < N; i++)
        blocks[i] = (LmnArenaBlock){
            .size = 1000 + (i % 3), .first_use = (gint) i, .last_use = (gint) i + 1};
    LmnArenaPlan plan;
    lmn_arena_plan(blocks, N, 1 << 20, &plan);
    check_plan(blocks, N, 1 << 20, &plan);
    g_assert_cmpint(plan.peak_live, ==, 2 * lmn_arena_align(1002));
    g_assert_cmpint(plan.total, ==, plan.peak_live);
    g_assert_cmpint(plan.unshared, ==, N * lmn_arena_align(1002));
    lmn_arena_plan_clear(&plan);
}

/* Blocks all live at once cannot share; blocks live at disjoint times all fit in the largest. */
static void test_extremes(void)
{
    enum { N = 7 };
    LmnArenaBlock blocks[N];
    gint64 sum = 0, largest = 0;
    for (guint i = 0; i < N; i++) {
        blocks[i] = (LmnArenaBlock){.size = 17 * (i + 1), .first_use = 0, .last_use = 5};
        sum += lmn_arena_align(17 * (i + 1));
        largest = MAX(largest, lmn_arena_align(17 * (i + 1)));
    }
    LmnArenaPlan plan;
    lmn_arena_plan(blocks, N, 1 << 20, &plan);
    check_plan(blocks, N, 1 << 20, &plan);
    g_assert_cmpint(plan.total, ==, sum);
    lmn_arena_plan_clear(&plan);

    for (guint i = 0; i < N; i++)
        blocks[i].first_use = blocks[i].last_use = (gint) (N - i);
    lmn_arena_plan(blocks, N, 1 << 20, &plan);
    check_plan(blocks, N, 1 << 20, &plan);
    g_assert_cmpint(plan.total, ==, largest);
    g_assert_cmpuint(plan.segment_sizes->len, ==, 1);
    for (guint i = 0; i < N; i++)
        g_assert_cmpint(blocks[i].offset, ==, 0);
    lmn_arena_plan_clear(&plan);

    /* Nothing to place, and only empty blocks. */
    lmn_arena_plan(NULL, 0, 64, &plan);
    g_assert_cmpint(plan.total, ==, 0);
    g_assert_cmpuint(plan.segment_sizes->len, ==, 0);
    lmn_arena_plan_clear(&plan);
    LmnArenaBlock empty[2] = {{.size = 0, .first_use = 0, .last_use = 1},
                              {.size = 0, .first_use = 1, .last_use = 1}};
    lmn_arena_plan(empty, 2, 64, &plan);
    check_plan(empty, 2, 64, &plan);
    g_assert_cmpint(plan.total, ==, 0);
    lmn_arena_plan_clear(&plan);
}

/* Sizes near G_MAXINT64 (a saturated lmn_shape_numel of a shape from a hostile config): the plan
 * must not wrap.  Each huge block gets a segment of its own at least its size, the small block
 * stays where it fits, and the figures saturate. */
static void test_huge_sizes(void)
{
    g_assert_cmpint(lmn_arena_align(G_MAXINT64), ==, G_MAXINT64);
    g_assert_cmpint(lmn_arena_align(G_MAXINT64 - 62), ==, G_MAXINT64);
    g_assert_cmpint(lmn_arena_align(G_MAXINT64 - 63), ==, G_MAXINT64 - 63);
    LmnArenaBlock blocks[3] = {
        {.size = G_MAXINT64, .first_use = 0, .last_use = 2},
        {.size = 100, .first_use = 0, .last_use = 2},
        {.size = G_MAXINT64 - 10, .first_use = 1, .last_use = 2},
    };
    LmnArenaPlan plan;
    lmn_arena_plan(blocks, 3, 1024, &plan);
    const GArray *segs = plan.segment_sizes;
    g_assert_cmpuint(segs->len, ==, 3);
    g_assert_cmpuint(blocks[0].segment, !=, blocks[2].segment);
    for (guint i = 0; i < 3; i++) {
        g_assert_cmpint(blocks[i].offset, ==, 0);
        g_assert_cmpint(g_array_index(segs, gint64, blocks[i].segment), >=, blocks[i].size);
    }
    g_assert_cmpint(g_array_index(segs, gint64, blocks[1].segment), ==, 128);
    g_assert_cmpint(plan.total, ==, G_MAXINT64);
    g_assert_cmpint(plan.unshared, ==, G_MAXINT64);
    g_assert_cmpint(plan.peak_live, ==, G_MAXINT64);
    lmn_arena_plan_clear(&plan);
}

/* The capacity bounds every shared segment; a block above it gets a segment of its own. */
static void test_segments(void)
{
    /* Sizes in units of U, so the case keeps its shape whatever the alignment (16 U). */
    const gint64 U = LMN_ARENA_ALIGN_ELEMS / 16;
    LmnArenaBlock blocks[6] = {
        {.size = 40 * U, .first_use = 0, .last_use = 3},
        {.size = 40 * U, .first_use = 0, .last_use = 3},
        {.size = 40 * U, .first_use = 0, .last_use = 3},
        {.size = 300 * U, .first_use = 0, .last_use = 3},
        {.size = 1 * U, .first_use = 0, .last_use = 3},
        {.size = 64 * U, .first_use = 0, .last_use = 3},
    };
    LmnArenaPlan plan;
    lmn_arena_plan(blocks, 6, 100 * U, &plan); /* capacity 96 U after alignment */
    check_plan(blocks, 6, 96 * U, &plan);
    /* The 300 (304 aligned) alone; then, largest first, the 64, two 48s together, the third 48
     * and the 1 (16 aligned) beside the 64, where the first segment with room is: four. */
    g_assert_cmpuint(plan.segment_sizes->len, ==, 4);
    g_assert_cmpint(g_array_index(plan.segment_sizes, gint64, blocks[3].segment), ==, 304 * U);
    g_assert_cmpint(plan.total, ==, plan.unshared);
    lmn_arena_plan_clear(&plan);
}

/* ---- a model whose gradients share memory ---- */

/* input feeds one layer; ta feeds three (b, c and the sum s) and tb two (s and the concat), so
 * the backward pass has edge buffers, single-consumer aliases and fan-out sums. */
static const char dag_config[] = "[model]\n"
                                 "input = 6\n"
                                 "[layer a]\ntype = dense\nunits = 5\n"
                                 "[layer ta]\ntype = tanh\n"
                                 "[layer b]\ntype = dense\nunits = 5\n"
                                 "[layer tb]\ntype = tanh\n"
                                 "[layer c]\ntype = dense\nunits = 5\ninput = ta\n"
                                 "[layer s]\ntype = add\ninput = tb, c, ta\n"
                                 "[layer ts]\ntype = tanh\n"
                                 "[layer d]\ntype = dense\nunits = 3\n"
                                 "[layer cat]\ntype = concat\ninput = d, tb\n"
                                 "[layer loss]\ntype = mse\ninput = cat, labels\n"
                                 "[optimizer]\ntype = sgd\n"
                                 "[train]\nbatch_size = 8\n"
                                 "[data]\ntrain = unused.h5:/train\n";

enum { BATCH = 8, N_IN = 6, N_OUT = 8 };

static double loss_of(LmnModel *m)
{
    g_autoptr(GError) error = NULL;
    float loss = 0;
    lmn_model_forward(m, TRUE, 0, 1);
    g_assert_true(lmn_tensor_read(lmn_model_get_loss(m), &loss, sizeof loss, &error));
    g_assert_no_error(error);
    return loss;
}

static float *read_all(LmnTensor *t)
{
    g_autoptr(GError) error = NULL;
    float *h = g_malloc(lmn_tensor_nbytes(t));
    g_assert_true(lmn_tensor_read(t, h, lmn_tensor_nbytes(t), &error));
    g_assert_no_error(error);
    return h;
}

static void fill_batch(LmnModel *m, gint64 batch, guint64 seed)
{
    g_autoptr(GError) error = NULL;
    LmnTensor *x, *y;
    lmn_model_set_batch(m, batch, &x, &y);
    g_autofree float *xh = g_new(float, (gsize) (batch * N_IN));
    g_autofree float *yh = g_new(float, (gsize) (batch * N_OUT));
    LmnRandom r;
    lmn_random_init(&r, seed, 0);
    for (gint64 i = 0; i < batch * N_IN; i++)
        xh[i] = (float) lmn_random_normal(&r);
    for (gint64 i = 0; i < batch * N_OUT; i++)
        yh[i] = (float) lmn_random_normal(&r) * 0.5f;
    g_assert_true(lmn_tensor_write(x, xh, lmn_tensor_nbytes(x), &error));
    g_assert_true(lmn_tensor_write(y, yh, lmn_tensor_nbytes(y), &error));
    g_assert_no_error(error);
}

static void test_model_gradients(void)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_data(dag_config, -1, "dag.ini", &error);
    g_assert_no_error(error);
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    g_assert_no_error(error);
    g_autoptr(LmnBackend) cpu = lmn_backend_new(registry, "cpu", NULL, NULL, &error);
    g_assert_no_error(error);
    LmnTensorInfo target = {lmn_shape_make(1, (gint64) N_OUT), LMN_DTYPE_F32};
    LmnModel *m = lmn_model_new(cfg, registry, cpu, &target, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_init_params(m, 3, &error));
    g_assert_cmpint(lmn_model_get_activation_bytes(m, NULL, NULL, NULL), ==, 0);
    g_assert_true(lmn_model_prepare(m, BATCH, &error));
    g_assert_no_error(error);

    gint64 unshared = 0, peak = 0;
    guint segments = 0;
    gint64 bytes = lmn_model_get_activation_bytes(m, &unshared, &peak, &segments);
    g_test_message("arena %" G_GINT64_FORMAT " bytes, unshared %" G_GINT64_FORMAT
                   ", peak %" G_GINT64_FORMAT ", %u segment(s)",
                   bytes, unshared, peak, segments);
    g_assert_cmpuint(segments, ==, 1);
    g_assert_cmpint(peak, <=, bytes);
    /* Eleven gradient buffers of which at most a few are live at once: sharing must save. */
    g_assert_cmpint(bytes, <, unshared);

    fill_batch(m, BATCH, 5);
    loss_of(m);
    lmn_model_backward(m, 0, 1);
    LmnTensor *params = lmn_model_get_params(m);
    gint64 n_params = lmn_tensor_numel(params);
    g_autofree float *grads = read_all(lmn_model_get_grads(m));
    g_autofree float *p = read_all(params);

    /* Central differences of the loss, element by element, in double around f32 values. */
    const float h = 1e-2f;
    double worst = 0;
    for (gint64 e = 0; e < n_params; e++) {
        float keep = p[e];
        p[e] = keep + h;
        g_assert_true(lmn_tensor_write(params, p, (gsize) n_params * sizeof(float), &error));
        double up = loss_of(m);
        p[e] = keep - h;
        g_assert_true(lmn_tensor_write(params, p, (gsize) n_params * sizeof(float), &error));
        double down = loss_of(m);
        p[e] = keep;
        double numeric = (up - down) / (2.0 * h);
        double err = fabs(numeric - grads[e]) / (1e-3 + fabs(numeric));
        worst = MAX(worst, err);
        if (err > 2e-2)
            g_error("parameter element %" G_GINT64_FORMAT ": backward %.6g, finite differences "
                    "%.6g",
                    e, grads[e], numeric);
    }
    g_assert_true(lmn_tensor_write(params, p, (gsize) n_params * sizeof(float), &error));
    g_test_message("%" G_GINT64_FORMAT " parameter elements, worst relative error %.3g", n_params,
                   worst);

    /* Reused memory carries nothing between steps: a smaller batch in between, then the same
     * batch again, gives bit-identical gradients. */
    fill_batch(m, 3, 9);
    loss_of(m);
    lmn_model_backward(m, 1, 1);
    fill_batch(m, BATCH, 5);
    loss_of(m);
    lmn_model_backward(m, 0, 1);
    g_autofree float *again = read_all(lmn_model_get_grads(m));
    g_assert_cmpmem(again, (gsize) n_params * sizeof(float), grads,
                    (gsize) n_params * sizeof(float));

    /* A larger batch re-plans a larger arena, with the same gradients for the same samples. */
    g_assert_true(lmn_model_prepare(m, 4 * BATCH, &error));
    g_assert_no_error(error);
    g_assert_cmpint(lmn_model_get_activation_bytes(m, NULL, NULL, NULL), >, bytes);
    fill_batch(m, BATCH, 5);
    loss_of(m);
    lmn_model_backward(m, 0, 1);
    g_autofree float *larger = read_all(lmn_model_get_grads(m));
    g_assert_cmpmem(larger, (gsize) n_params * sizeof(float), grads,
                    (gsize) n_params * sizeof(float));

    lmn_model_free(m);
    lmn_config_free(cfg);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    registry = lmn_registry_new();
    lmn_registry_scan(registry, NULL);
    g_test_add_func("/arena/random", test_random);
    g_test_add_func("/arena/chain", test_chain);
    g_test_add_func("/arena/extremes", test_extremes);
    g_test_add_func("/arena/segments", test_segments);
    g_test_add_func("/arena/huge-sizes", test_huge_sizes);
    g_test_add_func("/arena/model-gradients", test_model_gradients);
    int rc = g_test_run();
    lmn_registry_free(registry);
    return rc;
}
