/* Lamina — lmn_model_set_backward_hook(), which data-parallel training starts its gradient
 * buckets from: the offsets it reports never grow, the pass ends with 0, and every gradient
 * element at or after an offset already holds the value the whole backward pass leaves there
 * (the oracle: the gradient read after backward).  A frozen layer's zeros count as final. */
#include <lamina/lamina.h>

#include <string.h>

#define N 6

static LmnRegistry *registry;
static LmnBackend *backend;

typedef struct {
    GArray *offsets;  /* gint64 */
    GPtrArray *grads; /* float * copies of the gradient at each call */
    gint64 numel;
} Seen;

static void hook(LmnModel *model, gint64 final_from, gpointer data)
{
    Seen *s = data;
    g_array_append_val(s->offsets, final_from);
    float *copy = g_new(float, s->numel);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_tensor_read(lmn_model_get_grads(model), copy,
                                  (gsize) s->numel * sizeof(float), &error));
    g_ptr_array_add(s->grads, copy);
}

static void run_case(gconstpointer data)
{
    const char *cfg_text = data;
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_data(cfg_text, -1, "hook.ini", &error);
    g_assert_no_error(error);
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    LmnTensorInfo target = {.dtype = LMN_DTYPE_I32, .shape = lmn_shape_make(0)};
    LmnModel *model = lmn_model_new(cfg, registry, backend, &target, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_init_params(model, 3, &error));
    g_assert_true(lmn_model_prepare(model, N, &error));
    LmnTensor *x, *y;
    lmn_model_set_batch(model, N, &x, &y);
    gint64 x_numel = lmn_tensor_numel(x);
    g_autofree float *xv = g_new(float, x_numel);
    for (gint64 i = 0; i < x_numel; i++)
        xv[i] = (float) ((i * 7919) % 23) / 11.0f - 1.0f;
    gint32 labels[N] = {0, 1, 2, 1, 0, 2};
    g_assert_true(lmn_tensor_write(x, xv, (gsize) x_numel * sizeof(float), &error));
    g_assert_true(lmn_tensor_write(y, labels, sizeof labels, &error));
    lmn_model_forward(model, TRUE, 0, 1);

    Seen s = {g_array_new(FALSE, FALSE, sizeof(gint64)), g_ptr_array_new_with_free_func(g_free),
              lmn_tensor_numel(lmn_model_get_grads(model))};
    lmn_model_set_backward_hook(model, hook, &s);
    lmn_model_backward(model, 0, 1);
    g_autofree float *final = g_new(float, s.numel);
    g_assert_true(lmn_tensor_read(lmn_model_get_grads(model), final,
                                  (gsize) s.numel * sizeof(float), &error));
    g_assert_cmpuint(s.offsets->len, >=, lmn_model_get_n_layers(model));
    g_assert_cmpint(g_array_index(s.offsets, gint64, s.offsets->len - 1), ==, 0);
    /* the last layer's parameters are final before the first layer's are */
    g_assert_cmpint(g_array_index(s.offsets, gint64, 0), >, 0);
    for (guint k = 0; k < s.offsets->len; k++) {
        gint64 off = g_array_index(s.offsets, gint64, k);
        if (k > 0)
            g_assert_cmpint(off, <=, g_array_index(s.offsets, gint64, k - 1));
        const float *at = g_ptr_array_index(s.grads, k);
        g_assert_cmpmem(at + off, (gsize) (s.numel - off) * sizeof(float), final + off,
                        (gsize) (s.numel - off) * sizeof(float));
    }
    /* lmn_model_backward_from() and a removed hook report nothing */
    guint calls = s.offsets->len;
    lmn_model_set_backward_hook(model, NULL, NULL);
    lmn_model_backward(model, 0, 1);
    g_assert_cmpuint(s.offsets->len, ==, calls);
    g_array_unref(s.offsets);
    g_ptr_array_unref(s.grads);
    lmn_model_free(model);
    lmn_config_free(cfg);
}

#define TAIL                                                                                       \
    "[layer loss]\ntype = softmax_cross_entropy\n[optimizer]\ntype = sgd\n[train]\nbackend = "     \
    "cpu\n[data]\ntrain = unused.h5:/train\n"

static const char mlp[] = "[model]\ninput = 5\n[layer d1]\ntype = dense\nunits = 7\n"
                          "[layer a1]\ntype = relu\n[layer d2]\ntype = dense\nunits = 4\n"
                          "[layer d3]\ntype = dense\nunits = 3\n" TAIL;
static const char frozen[] = "[model]\ninput = 5\n[layer d1]\ntype = dense\nunits = 7\n"
                             "[layer d2]\ntype = dense\nunits = 4\ntrainable = false\n"
                             "[layer d3]\ntype = dense\nunits = 3\n" TAIL;
static const char conv[] = "[model]\ninput = 1, 6, 6\n[layer c1]\ntype = conv2d\n"
                           "out_channels = 2\nkernel_size = 3\n[layer bn]\ntype = batch_norm\n"
                           "[layer f]\ntype = flatten\n[layer d]\ntype = dense\nunits = 3\n" TAIL;

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_autoptr(GError) error = NULL;
    registry = lmn_registry_new();
    g_assert_true(lmn_registry_scan(registry, &error));
    backend = lmn_backend_new(registry, "cpu", NULL, NULL, &error);
    g_assert_no_error(error);
    g_test_add_data_func("/dist/backward-hook/mlp", mlp, run_case);
    g_test_add_data_func("/dist/backward-hook/frozen-layer", frozen, run_case);
    g_test_add_data_func("/dist/backward-hook/conv-batch-norm", conv, run_case);
    int rc = g_test_run();
    lmn_backend_unref(backend);
    lmn_registry_free(registry);
    return rc;
}
