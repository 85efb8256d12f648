/* lmn_optimizer_set_grad_scale() (ABI 1.6): gradient clipping's factor applied inside the
 * update kernel.
 *
 * The oracle is the update with its gradients scaled beforehand, which is what clipping did
 * before (torch's clip_grad_norm_ multiplies the gradients in place; the e2e clip tests and the
 * torch fixtures check that path): for every optimizer Lamina ships, in the variants its kernel
 * branches on, a run whose steps take lmn_optimizer_set_grad_scale() must leave the parameters
 * and every state slot bit-identical to a run fed grad * scale (one float32 product per
 * element), and the gradient tensor untouched.  A scale is used by one step only.
 *
 * An optimizer without LMN_OPTIMIZER_FLAG_GRAD_SCALE (test_sgd of tests/registry/plugins/good.c)
 * gets the gradients scaled in place before its kernel runs, with the same result.
 */
#include <lamina/lamina.h>

#include <string.h>

#define N 777
#define STEPS 6

static LmnRegistry *registry;
static LmnBackend *backend;

typedef struct {
    const char *type;
    const char *options; /* "key=value,key=value" or "" */
} Variant;

static const Variant variants[] = {
    {"sgd", ""},
    {"sgd", "momentum=0.9,weight_decay=0.01"},
    {"sgd", "momentum=0.9,nesterov=true,maximize=true"},
    {"adagrad", "weight_decay=0.1"},
    {"rmsprop", "momentum=0.5,centered=true"},
    {"adam", ""},
    {"adam", "amsgrad=true,weight_decay=0.01,maximize=true"},
    {"adamw", "amsgrad=true"},
    {"nadam", "weight_decay=0.01"},
    {"radam", ""},
    {"adamax", "weight_decay=0.01"},
    {"adadelta", "maximize=true"},
};

/* The step's factors: clipping's coefficients below 1, an unclipped step (no call), and 0. */
static const float step_scales[STEPS] = {0.25f, 0.7312f, -1.0f, 0.0f, 0.031f, 0.5f};

static LmnTensor *vector_new(const float *values)
{
    g_autoptr(GError) error = NULL;
    LmnShape s = lmn_shape_make(1, (gint64) N);
    LmnTensor *t = lmn_tensor_new(backend, LMN_DTYPE_F32, &s, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_tensor_write(t, values, N * sizeof(float), &error));
    return t;
}

static void read_vector(LmnTensor *t, float *out)
{
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_tensor_read(t, out, N * sizeof(float), &error));
    g_assert_no_error(error);
}

static LmnParams *variant_params(const LmnFeature *f, const char *options)
{
    g_auto(GStrv) pairs = g_strsplit(options, ",", -1);
    g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) values = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(keys, g_strdup("lr"));
    g_ptr_array_add(values, g_strdup("0.01"));
    for (guint i = 0; pairs[i] != NULL; i++) {
        if (*pairs[i] == '\0')
            continue;
        g_auto(GStrv) kv = g_strsplit(pairs[i], "=", 2);
        g_ptr_array_add(keys, g_strdup(kv[0]));
        g_ptr_array_add(values, g_strdup(kv[1]));
    }
    g_ptr_array_add(keys, NULL);
    g_ptr_array_add(values, NULL);
    g_autoptr(GError) error = NULL;
    LmnParams *p = lmn_registry_validate_params(
        f, (const char *const *) keys->pdata, (const char *const *) values->pdata, "test", &error);
    g_assert_no_error(error);
    return p;
}

/* Runs @type with @hyper twice from the same start: with the scales set, and with the
 * gradients scaled on the host; asserts bit-identical parameters and slots. */
static void compare_runs(const char *type, LmnParams *hyper, gboolean expect_fused)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GRand) rng = g_rand_new_with_seed(23);
    float init[N], g[N], scaled[N], got[N], want[N];
    for (gsize i = 0; i < N; i++)
        init[i] = (float) g_rand_double_range(rng, -1, 1);
    LmnTensor *pa = vector_new(init), *pb = vector_new(init);
    memset(g, 0, sizeof g);
    LmnTensor *ga = vector_new(g), *gb = vector_new(g);
    LmnOptimizer *a = lmn_optimizer_new(registry, type, hyper, pa, ga, &error);
    g_assert_no_error(error);
    LmnOptimizer *b = lmn_optimizer_new(registry, type, hyper, pb, gb, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_optimizer_fuses_grad_scale(a) == expect_fused);

    for (guint s = 0; s < STEPS; s++) {
        for (gsize i = 0; i < N; i++)
            g[i] = i % 89 == 3 ? 0.0f : (float) g_rand_double_range(rng, -2, 2);
        const float k = step_scales[s];
        for (gsize i = 0; i < N; i++)
            scaled[i] = k < 0 ? g[i] : g[i] * k;
        g_assert_true(lmn_tensor_write(ga, g, sizeof g, &error));
        g_assert_true(lmn_tensor_write(gb, scaled, sizeof scaled, &error));
        if (k >= 0)
            lmn_optimizer_set_grad_scale(a, k);
        lmn_optimizer_step(a, 0.01 * (1.0 + s));
        lmn_optimizer_step(b, 0.01 * (1.0 + s));
        /* Fused, the gradients stay as written; otherwise they were scaled in place. */
        read_vector(ga, got);
        g_assert_cmpmem(got, sizeof got, expect_fused ? g : scaled, sizeof g);
        read_vector(pa, got);
        read_vector(pb, want);
        if (memcmp(got, want, sizeof got) != 0)
            g_error("%s step %u (scale %g): the parameters differ from the pre-scaled run", type,
                    s + 1, (double) k);
    }
    for (guint s = 0; s < lmn_optimizer_get_n_slots(a); s++) {
        read_vector(lmn_optimizer_get_slot(a, s), got);
        read_vector(lmn_optimizer_get_slot(b, s), want);
        if (memcmp(got, want, sizeof got) != 0)
            g_error("%s: slot %s differs from the pre-scaled run", type,
                    lmn_optimizer_get_slot_name(a, s));
    }
    lmn_optimizer_free(a);
    lmn_optimizer_free(b);
    lmn_tensor_unref(pa);
    lmn_tensor_unref(pb);
    lmn_tensor_unref(ga);
    lmn_tensor_unref(gb);
}

static void test_variant(gconstpointer data)
{
    const Variant *v = data;
    g_autoptr(GError) error = NULL;
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_OPTIMIZER, v->type, &error);
    g_assert_no_error(error);
    LmnParams *hyper = variant_params(f, v->options);
    compare_runs(v->type, hyper, TRUE);
    lmn_params_unref(hyper);
}

/* Every optimizer the registry lists from Lamina's own plugins declares the fused scale. */
static void test_all_fuse(void)
{
    g_autoptr(GPtrArray) all = lmn_registry_list(registry, LMN_FEATURE_OPTIMIZER);
    guint seen = 0;
    for (guint i = 0; i < all->len; i++) {
        const LmnFeature *f = g_ptr_array_index(all, i);
        if (g_str_equal(f->desc->name, "test_sgd"))
            continue;
        gboolean listed = FALSE;
        for (gsize k = 0; k < G_N_ELEMENTS(variants); k++)
            listed = listed || g_str_equal(variants[k].type, f->desc->name);
        if (!listed)
            g_error("optimizer %s has no grad-scale variant in this test", f->desc->name);
        seen++;
    }
    g_assert_cmpuint(seen, ==, 9);
}

/* A plugin without the flag: the core scales the gradient tensor in place first. */
static void test_unfused_plugin(void)
{
    const char *path = g_getenv("LMN_TEST_GOOD_PLUGIN");
    g_assert_nonnull(path);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_registry_load_file(registry, path, &error));
    g_assert_no_error(error);
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_OPTIMIZER, "test_sgd", &error);
    g_assert_no_error(error);
    LmnParams *hyper = variant_params(f, "");
    compare_runs("test_sgd", hyper, FALSE);
    lmn_params_unref(hyper);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_autoptr(GError) error = NULL;
    registry = lmn_registry_new();
    g_assert_true(lmn_registry_scan(registry, &error));
    backend = lmn_backend_new(registry, "cpu", NULL, NULL, &error);
    g_assert_no_error(error);
    for (gsize i = 0; i < G_N_ELEMENTS(variants); i++) {
        g_autofree char *path =
            g_strdup_printf("/optim/grad-scale/%s/%s", variants[i].type,
                            *variants[i].options ? variants[i].options : "defaults");
        g_strdelimit(path, ",=", '-');
        g_test_add_data_func(path, &variants[i], test_variant);
    }
    g_test_add_func("/optim/grad-scale/every-optimizer", test_all_fuse);
    g_test_add_func("/optim/grad-scale/unfused-plugin", test_unfused_plugin);
    const int rc = g_test_run();
    lmn_backend_unref(backend);
    lmn_registry_free(registry);
    return rc;
}
