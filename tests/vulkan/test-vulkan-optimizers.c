/* Every optimizer's update kernel on the Vulkan backend against the CPU backend.
 *
 * For each optimizer Lamina ships, every combination of the options its kernel branches on
 * (maximize, weight decay, momentum variants, centered, amsgrad, ...) runs 20 steps on both
 * backends from the same initial parameters and the same gradient sequence, every third step
 * with its gradient scaled as gradient clipping scales it; the parameters and
 * every state slot must then agree to 1e-5 relative.  The update must run as SPIR-V: the kernel
 * ships a variant, and the backend prints no CPU-fallback warning (each optimizer runs in a
 * subprocess whose stderr is checked, and which counts warnings itself).
 *
 * Runs on Mesa's lavapipe, with VK_LAYER_KHRONOS_validation when it is installed (a validation
 * error fails the next synchronisation); every test is skipped when lavapipe cannot be opened.
 * Each test prints the largest differences it saw as a TAP comment.
 */
#include <lamina/lamina.h>

#include "vk-test-setup.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define VALIDATION_LAYER_JSON LMN_VK_TEST_VALIDATION_LAYER_JSON

#define N_ELEMENTS 1000
#define N_STEPS 20
#define RTOL 1e-5
#define MAX_AXES 5
#define MAX_KEYS 8

static LmnRegistry *registry;
static LmnBackend *cpu;
static LmnBackend *vk;
static gboolean validating;
static gint n_warnings;

/* One option axis: alternative settings, each a comma-separated list of key=value ("" = the
 * defaults).  A case takes one setting from every axis. */
typedef struct {
    const char *settings[5];
} Axis;

typedef struct {
    const char *type;
    double lr;
    Axis axes[MAX_AXES];
} OptimizerCases;

/* The option combinations: every branch of each CPU kernel (and of its prepare()) is taken. */
static const OptimizerCases optimizers[] = {
    {"sgd",
     0.05,
     {{{"", "momentum=0.9", "momentum=0.5,dampening=0.3", "momentum=0.8,nesterov=true"}},
      {{"", "weight_decay=0.01"}},
      {{"", "maximize=true"}}}},
    {"adam", 1e-2, {{{"", "amsgrad=true"}}, {{"", "weight_decay=0.01"}}, {{"", "maximize=true"}}}},
    {"adamw",
     1e-2,
     {{{"", "amsgrad=true"}}, {{"weight_decay=0", "weight_decay=0.1"}}, {{"", "maximize=true"}}}},
    {"adagrad",
     0.05,
     {{{"", "weight_decay=0.01"}},
      {{"", "maximize=true"}},
      {{"", "lr_decay=0.05"}},
      {{"", "initial_accumulator_value=0.1"}}}},
    {"rmsprop",
     1e-2,
     {{{"", "centered=true"}},
      {{"", "momentum=0.9", "momentum=0.8,nesterov=true"}},
      {{"", "weight_decay=0.01"}},
      {{"", "maximize=true"}}}},
    /* torch 1.13's NAdam and RAdam have no maximize option. */
    {"nadam", 2e-3, {{{"", "weight_decay=0.01"}}, {{"", "momentum_decay=0.01"}}}},
    /* Steps 1-5 take the unrectified branch, later ones the rectified one (beta2 0.999 and
     * 0.99 alike). */
    {"radam", 1e-2, {{{"", "weight_decay=0.01"}}, {{"", "beta1=0.8,beta2=0.99"}}}},
    {"adamax",
     2e-3,
     {{{"", "weight_decay=0.01"}}, {{"", "maximize=true"}}, {{"", "beta1=0.5,eps=1e-3"}}}},
    {"adadelta",
     1.0,
     {{{"", "weight_decay=0.01"}}, {{"", "maximize=true"}}, {{"", "rho=0.5,eps=1e-4"}}}},
};

static GLogWriterOutput counting_writer(GLogLevelFlags level, const GLogField *fields,
                                        gsize n_fields, gpointer data)
{
    if (level & (G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL))
        g_atomic_int_inc(&n_warnings);
    return g_log_writer_default(level, fields, n_fields, data);
}

static LmnBackend *open_vulkan(gboolean validation, GError **error)
{
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_BACKEND, "vulkan", error);
    if (f == NULL)
        return NULL;
    const char *keys[] = {"validation", NULL};
    const char *values[] = {validation ? "true" : "false", NULL};
    LmnParams *params =
        lmn_registry_validate_params(f, keys, values, "test-vulkan-optimizers", error);
    if (params == NULL)
        return NULL;
    LmnBackend *b = lmn_backend_new(registry, "vulkan", params, "lavapipe", error);
    lmn_params_unref(params);
    return b;
}

static LmnTensor *tensor_from(LmnBackend *b, const float *data)
{
    g_autoptr(GError) error = NULL;
    LmnShape shape = lmn_shape_make(1, (gint64) N_ELEMENTS);
    LmnTensor *t = lmn_tensor_new(b, LMN_DTYPE_F32, &shape, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_tensor_write(t, data, N_ELEMENTS * sizeof(float), &error));
    return t;
}

/* The largest differences seen for one optimizer. */
typedef struct {
    double max_abs, max_rel;
} Diff;

/* Asserts |vk - cpu| <= RTOL |cpu| + 1e-7 max|cpu| element-wise (the absolute term covers
 * elements that cancel to near zero, relative to the tensor's scale) and that the CPU values
 * are finite, so that the comparison means something.  Accumulates the differences in @d. */
static void compare(LmnTensor *c, LmnTensor *v, const char *what, Diff *d)
{
    g_autoptr(GError) error = NULL;
    float a[N_ELEMENTS], b[N_ELEMENTS];
    g_assert_true(lmn_tensor_read(c, a, sizeof a, &error));
    g_assert_no_error(error);
    g_assert_true(lmn_tensor_read(v, b, sizeof b, &error));
    g_assert_no_error(error);
    double scale = 0.0;
    for (gsize i = 0; i < N_ELEMENTS; i++) {
        if (!isfinite(a[i]))
            g_error("%s: cpu element %" G_GSIZE_FORMAT " is %g", what, i, a[i]);
        scale = MAX(scale, fabs((double) a[i]));
    }
    for (gsize i = 0; i < N_ELEMENTS; i++) {
        const double diff = fabs((double) a[i] - (double) b[i]);
        if (!(diff <= RTOL * fabs((double) a[i]) + 1e-7 * scale))
            g_error("%s: element %" G_GSIZE_FORMAT ": vulkan %.9g, cpu %.9g", what, i, b[i], a[i]);
        d->max_abs = MAX(d->max_abs, diff);
        if (a[i] != 0.0f)
            d->max_rel = MAX(d->max_rel, diff / fabs((double) a[i]));
    }
}

/* Fills @keys/@values (owned by @parts) from case number @index of @oc: the setting of axis k
 * is digit k of @index in the mixed radix of the axes' sizes.  Returns a description. */
static char *case_options(const OptimizerCases *oc, guint index, GPtrArray *parts,
                          const char **keys, const char **values)
{
    guint n = 0;
    GString *desc = g_string_new(NULL);
    for (guint k = 0; k < MAX_AXES && oc->axes[k].settings[0] != NULL; k++) {
        guint size = 0;
        while (size < G_N_ELEMENTS(oc->axes[k].settings) && oc->axes[k].settings[size] != NULL)
            size++;
        const char *setting = oc->axes[k].settings[index % size];
        index /= size;
        if (*setting == '\0')
            continue;
        g_string_append_printf(desc, "%s%s", desc->len > 0 ? "," : "", setting);
        char **pairs = g_strsplit(setting, ",", -1);
        for (guint p = 0; pairs[p] != NULL; p++) {
            char **kv = g_strsplit(pairs[p], "=", 2);
            g_assert_cmpuint(n, <, MAX_KEYS);
            g_assert_nonnull(kv[1]);
            keys[n] = kv[0];
            values[n] = kv[1];
            n++;
            g_ptr_array_add(parts, kv);
        }
        g_strfreev(pairs);
    }
    keys[n] = values[n] = NULL;
    return g_string_free(desc, FALSE);
}

static guint n_cases(const OptimizerCases *oc)
{
    guint n = 1;
    for (guint k = 0; k < MAX_AXES && oc->axes[k].settings[0] != NULL; k++) {
        guint size = 0;
        while (size < G_N_ELEMENTS(oc->axes[k].settings) && oc->axes[k].settings[size] != NULL)
            size++;
        n *= size;
    }
    return n;
}

static LmnOptimizer *optimizer_new(const char *type, const LmnParams *hyper, LmnTensor *param,
                                   LmnTensor *grad)
{
    g_autoptr(GError) error = NULL;
    LmnOptimizer *o = lmn_optimizer_new(registry, type, hyper, param, grad, &error);
    g_assert_no_error(error);
    return o;
}

/* One option combination: 20 steps on both backends, then params and slots compared. */
static void run_case(const OptimizerCases *oc, guint index, GRand *rng, Diff *diff)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) parts = g_ptr_array_new_with_free_func((GDestroyNotify) g_strfreev);
    const char *keys[MAX_KEYS + 1], *values[MAX_KEYS + 1];
    g_autofree char *desc = case_options(oc, index, parts, keys, values);
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_OPTIMIZER, oc->type, &error);
    g_assert_no_error(error);
    LmnParams *hyper = lmn_registry_validate_params(f, keys, values, oc->type, &error);
    g_assert_no_error(error);

    float init[N_ELEMENTS], g[N_ELEMENTS];
    for (gsize i = 0; i < N_ELEMENTS; i++)
        init[i] = (float) g_rand_double_range(rng, -1, 1);
    LmnTensor *pc = tensor_from(cpu, init), *pv = tensor_from(vk, init);
    memset(g, 0, sizeof g);
    LmnTensor *gc = tensor_from(cpu, g), *gv = tensor_from(vk, g);
    LmnOptimizer *oc_cpu = optimizer_new(oc->type, hyper, pc, gc);
    LmnOptimizer *oc_vk = optimizer_new(oc->type, hyper, pv, gv);
    for (guint s = 0; s < N_STEPS; s++) {
        /* Unit-scale gradients, every fifth step a small one (moments then dominate the
         * update), and a few exact zeros (adagrad with a zero accumulator, adamax's eps). */
        for (gsize i = 0; i < N_ELEMENTS; i++)
            g[i] = i % 97 == 5
                       ? 0.0f
                       : (float) g_rand_double_range(rng, -1, 1) * (s % 5 == 4 ? 1e-3f : 1.0f);
        g_assert_true(lmn_tensor_write(gc, g, sizeof g, &error));
        g_assert_true(lmn_tensor_write(gv, g, sizeof g, &error));
        /* A learning-rate schedule changes the host-computed scalars every step. */
        const double lr = oc->lr * (1.0 - 0.02 * s);
        /* Every third step clipped by norm: the kernels read the gradient scaled (ABI 1.6). */
        if (s % 3 == 1) {
            g_assert_true(lmn_optimizer_fuses_grad_scale(oc_vk));
            lmn_optimizer_set_grad_scale(oc_cpu, 0.3f);
            lmn_optimizer_set_grad_scale(oc_vk, 0.3f);
        }
        lmn_optimizer_step(oc_cpu, lr);
        lmn_optimizer_step(oc_vk, lr);
    }
    g_assert_true(lmn_backend_synchronize(vk, &error));
    g_assert_no_error(error);

    g_autofree char *what = g_strdup_printf("%s [%s] param", oc->type, desc);
    compare(pc, pv, what, diff);
    g_assert_cmpuint(lmn_optimizer_get_n_slots(oc_cpu), ==, lmn_optimizer_get_n_slots(oc_vk));
    for (guint s = 0; s < lmn_optimizer_get_n_slots(oc_cpu); s++) {
        g_autofree char *sw = g_strdup_printf("%s [%s] slot %s", oc->type, desc,
                                              lmn_optimizer_get_slot_name(oc_cpu, s));
        compare(lmn_optimizer_get_slot(oc_cpu, s), lmn_optimizer_get_slot(oc_vk, s), sw, diff);
    }
    g_assert_cmpint(lmn_optimizer_get_step(oc_vk), ==, N_STEPS);
    g_test_message("%s [%s]: ok", oc->type, desc);

    lmn_optimizer_free(oc_cpu);
    lmn_optimizer_free(oc_vk);
    lmn_tensor_unref(pc);
    lmn_tensor_unref(pv);
    lmn_tensor_unref(gc);
    lmn_tensor_unref(gv);
    lmn_params_unref(hyper);
}

static void test_optimizer(gconstpointer data)
{
    const OptimizerCases *oc = data;
    if (vk == NULL) {
        g_test_skip("no Vulkan device 'lavapipe' (Mesa's software rasteriser)");
        return;
    }
    if (!g_test_subprocess()) {
        g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDOUT);
        g_test_trap_assert_passed();
        /* vk-ops.c warns once per kernel that runs its CPU function instead. */
        g_test_trap_assert_stderr_unmatched("*no usable SPIR-V*");
        return;
    }
    /* Warnings are not fatal in this child: they are counted (and show in its stderr). */
    g_log_set_always_fatal(G_LOG_FATAL_MASK);
    g_log_set_writer_func(counting_writer, NULL, NULL);

    /* The plugin ships a SPIR-V variant (a build without glslangValidator would not). */
    g_autoptr(GError) error = NULL;
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_OPTIMIZER, oc->type, &error);
    g_assert_no_error(error);
    const LmnOptimizerVTable *vt = f->desc->vtable;
    g_assert_nonnull(vt->update->spirv);

    GRand *rng = g_rand_new_with_seed(20261123);
    Diff diff = {0, 0};
    const guint n = n_cases(oc);
    for (guint i = 0; i < n; i++)
        run_case(oc, i, rng, &diff);
    g_rand_free(rng);
    /* A TAP comment on the inherited stdout: the child runs quiet, so g_test_message would not
     * show. */
    printf("# %s: %u option combinations x %d steps%s: max |vk - cpu| %.3g, max relative %.3g\n",
           oc->type, n, N_STEPS, validating ? " (validation layer on)" : "", diff.max_abs,
           diff.max_rel);
    fflush(stdout);
    g_assert_cmpint(g_atomic_int_get(&n_warnings), ==, 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    validating = lmn_vk_test_setup(&registry, &cpu);
    g_autoptr(GError) error = NULL;
    vk = open_vulkan(validating, &error);
    if (vk == NULL)
        g_test_message("no Vulkan device 'lavapipe': %s", error->message);

    for (guint i = 0; i < G_N_ELEMENTS(optimizers); i++) {
        g_autofree char *path = g_strdup_printf("/vulkan/optimizers/%s", optimizers[i].type);
        g_test_add_data_func(path, &optimizers[i], test_optimizer);
    }
    int rc = g_test_run();

    g_clear_pointer(&vk, lmn_backend_unref);
    lmn_backend_unref(cpu);
    lmn_registry_free(registry);
    return rc;
}
