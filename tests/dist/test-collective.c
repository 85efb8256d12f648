/* Lamina — the layer collective (lmn_model_set_collective(), lmn_layer_allreduce()) and
 * batch_norm's sync = true, in one process and without MPI.  The oracle for the sums: two ranks
 * that hold the same batch, simulated by a collective whose sum doubles every value, have global
 * statistics equal to each rank's own, so synchronised batch norm must then compute what the
 * ordinary one does (loss and every gradient, to float32 rounding), while making exactly the
 * calls the layer documents: two sums in a training forward (C + 1 and C floats), one in
 * backward (2C), none in evaluation.  Without a collective sync = true is sync = false bit for
 * bit, and a failing collective ends the pass without harm. */
#include <lamina/lamina.h>

#include <math.h>
#include <string.h>

#define N 6

static LmnRegistry *registry;
static LmnBackend *backend;

typedef struct {
    GArray *counts; /* gsize: the count of every call */
    gboolean fail;
} Twin;

static gboolean twin_allreduce(gpointer data, float *values, gsize count)
{
    Twin *t = data;
    g_array_append_val(t->counts, count);
    if (t->fail)
        return FALSE;
    for (gsize i = 0; i < count; i++)
        values[i] *= 2.0f;
    return TRUE;
}

#define MODEL(SYNC)                                                                                \
    "[model]\ninput = 2, 5, 5\n[layer c1]\ntype = conv2d\nout_channels = 3\nkernel_size = 3\n"     \
    "bias = false\n[layer bn1]\ntype = batch_norm\nsync = " SYNC "\n[layer f]\ntype = flatten\n"   \
    "[layer d1]\ntype = dense\nunits = 4\nbias = false\n[layer bn2]\ntype = batch_norm\n"          \
    "sync = " SYNC "\n[layer a]\ntype = tanh\n[layer d2]\ntype = dense\nunits = 3\n"               \
    "[layer loss]\ntype = softmax_cross_entropy\n[optimizer]\ntype = sgd\n[train]\nbackend = "     \
    "cpu\n[data]\ntrain = unused.h5:/train\n"

typedef struct {
    LmnConfig *cfg;
    LmnModel *model;
} Built;

static Built build(const char *text)
{
    g_autoptr(GError) error = NULL;
    Built b = {lmn_config_new_from_data(text, -1, "collective.ini", &error), NULL};
    g_assert_no_error(error);
    g_assert_true(lmn_config_validate(b.cfg, registry, &error));
    LmnTensorInfo target = {.dtype = LMN_DTYPE_I32, .shape = lmn_shape_make(0)};
    b.model = lmn_model_new(b.cfg, registry, backend, &target, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_init_params(b.model, 3, &error));
    g_assert_true(lmn_model_prepare(b.model, N, &error));
    LmnTensor *x, *y;
    lmn_model_set_batch(b.model, N, &x, &y);
    gint64 x_numel = lmn_tensor_numel(x);
    g_autofree float *xv = g_new(float, x_numel);
    for (gint64 i = 0; i < x_numel; i++)
        xv[i] = (float) ((i * 7919) % 23) / 11.0f - 0.7f;
    gint32 labels[N] = {0, 1, 2, 1, 0, 2};
    g_assert_true(lmn_tensor_write(x, xv, (gsize) x_numel * sizeof(float), &error));
    g_assert_true(lmn_tensor_write(y, labels, sizeof labels, &error));
    return b;
}

static void unbuild(Built *b)
{
    lmn_model_free(b->model);
    lmn_config_free(b->cfg);
}

/* A training step's loss and gradient, copied into @grads. */
static float step(LmnModel *model, float *grads)
{
    g_autoptr(GError) error = NULL;
    lmn_model_forward(model, TRUE, 0, 1);
    lmn_model_backward(model, 0, 1);
    LmnTensor *g = lmn_model_get_grads(model);
    g_assert_true(lmn_tensor_read(g, grads, (gsize) lmn_tensor_numel(g) * sizeof(float), &error));
    float loss;
    g_assert_true(lmn_tensor_read(lmn_model_get_loss(model), &loss, sizeof loss, &error));
    return loss;
}

static void test_single_process(void)
{
    Built a = build(MODEL("true")), b = build(MODEL("false"));
    gint64 n = lmn_tensor_numel(lmn_model_get_grads(a.model));
    g_autofree float *ga = g_new(float, n);
    g_autofree float *gb = g_new(float, n);
    float la = step(a.model, ga), lb = step(b.model, gb);
    g_assert_cmpmem(&la, sizeof la, &lb, sizeof lb);
    g_assert_cmpmem(ga, (gsize) n * sizeof(float), gb, (gsize) n * sizeof(float));
    g_assert_cmpint(lmn_layer_get_n_ranks(lmn_model_get_layer(a.model, 0)), ==, 1);
    unbuild(&a);
    unbuild(&b);
}

static void test_twin_ranks(void)
{
    Built a = build(MODEL("true")), b = build(MODEL("false"));
    Twin twin = {g_array_new(FALSE, FALSE, sizeof(gsize)), FALSE};
    LmnCollective c = {sizeof c, 2, twin_allreduce, &twin};
    lmn_model_set_collective(a.model, &c);
    lmn_model_set_collective(b.model, &c);
    gint64 n = lmn_tensor_numel(lmn_model_get_grads(a.model));
    g_autofree float *ga = g_new(float, n);
    g_autofree float *gb = g_new(float, n);
    float la = step(a.model, ga), lb = step(b.model, gb);
    /* bn1 has 3 channels, bn2 4: forward bn1 (4, 3), bn2 (5, 4); backward bn2 (8), bn1 (6) */
    const gsize want[] = {4, 3, 5, 4, 8, 6};
    g_assert_cmpuint(twin.counts->len, ==, G_N_ELEMENTS(want));
    g_assert_cmpmem(twin.counts->data, sizeof want, want, sizeof want);
    g_assert_cmpfloat_with_epsilon(la, lb, 1e-6 * fabsf(lb));
    double worst = 0, scale = 0;
    for (gint64 i = 0; i < n; i++) {
        worst = MAX(worst, fabs((double) ga[i] - gb[i]));
        scale = MAX(scale, fabs((double) gb[i]));
    }
    g_assert_cmpfloat(scale, >, 1e-3);
    g_assert_cmpfloat(worst, <, 1e-5 * scale);
    /* evaluation keeps each rank's own statistics: no sums */
    lmn_model_forward(a.model, FALSE, 0, 1);
    g_assert_cmpuint(twin.counts->len, ==, G_N_ELEMENTS(want));
    /* a failing collective: every call answers FALSE and the passes end without harm */
    twin.fail = TRUE;
    step(a.model, ga);
    g_assert_cmpuint(twin.counts->len, >, G_N_ELEMENTS(want));
    float v = 1;
    g_assert_false(lmn_layer_allreduce(lmn_model_get_layer(a.model, 1), &v, 1));
    lmn_model_set_collective(a.model, NULL);
    g_assert_true(lmn_layer_allreduce(lmn_model_get_layer(a.model, 1), &v, 1));
    g_assert_cmpfloat(v, ==, 1);
    g_array_unref(twin.counts);
    unbuild(&a);
    unbuild(&b);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_autoptr(GError) error = NULL;
    registry = lmn_registry_new();
    g_assert_true(lmn_registry_scan(registry, &error));
    backend = lmn_backend_new(registry, "cpu", NULL, NULL, &error);
    g_assert_no_error(error);
    g_test_add_func("/dist/collective/single-process", test_single_process);
    g_test_add_func("/dist/collective/twin-ranks", test_twin_ranks);
    int rc = g_test_run();
    lmn_backend_unref(backend);
    lmn_registry_free(registry);
    return rc;
}
