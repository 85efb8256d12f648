/* A well-formed test plugin: one feature of each kind the registry checks cheaply (no backend),
 * so the tests see that a good plugin loads, is listed and is found next to broken ones. */
#include <lamina/initializer.h>
#include <lamina/layer.h>
#include <lamina/optimizer.h>
#include <lamina/plugin.h>
#include <lamina/schedule.h>

#include <math.h>

static int init_calls;

static gboolean good_init(GError **error)
{
    init_calls++;
    return TRUE;
}

/* test_const: fills with its "value". */
static gboolean const_fill(const LmnParams *params, const LmnInitTarget *target, float *data,
                           GError **error)
{
    float v = (float) lmn_params_get_float(params, "value");
    for (gint64 i = 0; i < target->numel; i++)
        data[i] = v;
    return TRUE;
}

static const LmnParamSpec const_params[] = {
    {"value", LMN_PARAM_FLOAT, "0.5", -10.0, 10.0, NULL, 0, "the constant every element gets"},
    {NULL},
};

static const LmnInitializerVTable const_vtable = {
    .struct_size = sizeof(LmnInitializerVTable),
    .fill = const_fill,
};

/* test_init_count: fills with how often the plugin's init has run (the tests expect 1). */
static gboolean count_fill(const LmnParams *params, const LmnInitTarget *target, float *data,
                           GError **error)
{
    for (gint64 i = 0; i < target->numel; i++)
        data[i] = (float) init_calls;
    return TRUE;
}

static const LmnInitializerVTable count_vtable = {
    .struct_size = sizeof(LmnInitializerVTable),
    .fill = count_fill,
};

/* test_sgd: a momentum-free SGD step, param -= lr * grad, with one (unused) slot. */
static void sgd_cpu(gsize begin, gsize end, void *const *buffers, const float *scalars)
{
    float *p = buffers[0];
    const float *g = buffers[1];
    for (gsize i = begin; i < end; i++)
        p[i] -= scalars[0] * g[i];
}

static const guint8 sgd_access[] = {LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ, LMN_KERNEL_READ_WRITE};

static const LmnKernelDesc sgd_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "test_sgd.update",
    .cpu = sgd_cpu,
    .n_buffers = 3,
    .access = sgd_access,
    .n_scalars = 1,
};

static void sgd_prepare(const LmnParams *hyper, double lr, gint64 step, double *host_state,
                        float *scalars)
{
    scalars[0] = (float) lr;
}

static const char *const sgd_slots[] = {"momentum_buffer", NULL};

static const LmnOptimizerVTable sgd_vtable = {
    .struct_size = sizeof(LmnOptimizerVTable),
    .slots = sgd_slots,
    .update = &sgd_kernel,
    .prepare = sgd_prepare,
};

static const LmnParamSpec sgd_params[] = {
    {"lr", LMN_PARAM_FLOAT, "0.01", 0.0, INFINITY, NULL, LMN_PARAM_FLAG_MIN_EXCLUSIVE,
     "learning rate"},
    {"momentum", LMN_PARAM_FLOAT, "0", 0.0, 1.0, NULL, 0, "momentum factor"},
    {NULL},
};

/* test_constant: the base learning rate at every step. */
static double constant_lr(const LmnParams *params, double base_lr, const LmnScheduleClock *clock,
                          const double *state)
{
    return base_lr;
}

static const LmnScheduleVTable constant_vtable = {
    .struct_size = sizeof(LmnScheduleVTable),
    .lr = constant_lr,
};

/* test_identity: output = input (never run by the registry tests; only checked). */
static gboolean identity_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                               LmnTensorInfo *output, GError **error)
{
    *output = inputs[0];
    return TRUE;
}

static void identity_forward(LmnLayer *layer, const LmnLayerIO *io)
{
}

static void identity_backward(LmnLayer *layer, const LmnLayerIO *io)
{
}

static const LmnLayerVTable identity_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .min_inputs = 1,
    .max_inputs = 1,
    .build = identity_build,
    .forward = identity_forward,
    .backward = identity_backward,
};

static const LmnFeatureDesc features[] = {
    {sizeof(LmnFeatureDesc), LMN_FEATURE_INITIALIZER, "test_const", "fills with a constant",
     const_params, &const_vtable},
    {sizeof(LmnFeatureDesc), LMN_FEATURE_INITIALIZER, "test_init_count",
     "fills with the number of init() calls", NULL, &count_vtable},
    {sizeof(LmnFeatureDesc), LMN_FEATURE_OPTIMIZER, "test_sgd", "plain SGD", sgd_params,
     &sgd_vtable},
    {sizeof(LmnFeatureDesc), LMN_FEATURE_SCHEDULE, "test_constant", "constant learning rate", NULL,
     &constant_vtable},
    {sizeof(LmnFeatureDesc), LMN_FEATURE_LAYER, "test_identity", "output = input", NULL,
     &identity_vtable},
};

static const LmnPluginDesc desc = {
    .struct_size = sizeof(LmnPluginDesc),
    .abi_major = LMN_ABI_MAJOR,
    .abi_minor = LMN_ABI_MINOR,
    .name = "test.good",
    .version = "1.2.3",
    .license = "MIT",
    .description = "a well-formed plugin for the registry tests",
    .n_features = G_N_ELEMENTS(features),
    .features = features,
    .init = good_init,
};

LMN_PLUGIN_DEFINE(desc)
