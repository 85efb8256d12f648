/* Test plugins that are each wrong in one way, selected by a -DVARIANT_* define (see
 * tests/registry/meson.build).  Everything else is a valid one-initializer plugin, so each
 * registry failure the tests see has exactly one cause. */
#include <lamina/backend.h>
#include <lamina/communicator.h>
#include <lamina/error.h>
#include <lamina/initializer.h>
#include <lamina/optimizer.h>
#include <lamina/plugin.h>

#include <math.h>
#include <string.h>

static gboolean zero_fill(const LmnParams *params, const LmnInitTarget *target, float *data,
                          GError **error)
{
    memset(data, 0, sizeof(float) * (gsize) target->numel);
    return TRUE;
}

#if defined(VARIANT_BAD_DEFAULT)
#define SCALE_DEFAULT "5" /* outside [0, 2] */
#else
#define SCALE_DEFAULT "1"
#endif

/* Unused by the variants that declare another kind of feature. */
G_GNUC_UNUSED static const LmnParamSpec params[] = {
    {"scale", LMN_PARAM_FLOAT, SCALE_DEFAULT, 0.0, 2.0, NULL, 0, "a scale"},
    {NULL},
};

G_GNUC_UNUSED static const LmnInitializerVTable vtable = {
#if defined(VARIANT_SMALL_VTABLE)
    .struct_size = sizeof(guint32), /* ends before 'fill' */
#else
    .struct_size = sizeof(LmnInitializerVTable),
#endif
    .fill = zero_fill,
};

#if defined(VARIANT_DUP_A) || defined(VARIANT_DUP_B)
#define FEATURE_NAME "twin"
#else
#define FEATURE_NAME "variant"
#endif

#if defined(VARIANT_NULL_VTABLE)
#define VTABLE NULL
#else
#define VTABLE (&vtable)
#endif

#if defined(VARIANT_BAD_OPTIMIZER)
/* One slot, so the kernel must bind 3 buffers; it says 2. */
static void opt_cpu(gsize begin, gsize end, void *const *buffers, const float *scalars)
{
}

static void opt_prepare(const LmnParams *hyper, double lr, gint64 step, double *host_state,
                        float *scalars)
{
}

static const guint8 opt_access[] = {LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ};
static const LmnKernelDesc opt_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "bad.update",
    .cpu = opt_cpu,
    .n_buffers = 2,
    .access = opt_access,
    .n_scalars = 1,
};
static const char *const opt_slots[] = {"exp_avg", NULL};
static const LmnOptimizerVTable opt_vtable = {
    .struct_size = sizeof(LmnOptimizerVTable),
    .slots = opt_slots,
    .update = &opt_kernel,
    .prepare = opt_prepare,
};
static const LmnParamSpec opt_params[] = {
    {"lr", LMN_PARAM_FLOAT, "0.1", 0.0, INFINITY, NULL, 0, "learning rate"},
    {NULL},
};
#define FEATURE_KIND LMN_FEATURE_OPTIMIZER
#define FEATURE_PARAMS opt_params
#undef VTABLE
#define VTABLE (&opt_vtable)
#elif defined(VARIANT_BAD_BACKEND)
/* Every required member set except gemm.  Never called, so one stub serves all. */
static void stub(void)
{
}
#define STUB(m) .m = (__typeof__(((LmnBackendVTable *) 0)->m)) stub
static const LmnBackendVTable backend_vtable = {
    .struct_size = sizeof(LmnBackendVTable),
    STUB(open),
    STUB(close),
    STUB(describe),
    STUB(alloc),
    STUB(free),
    STUB(write),
    STUB(read),
    STUB(synchronize),
    STUB(fill),
    STUB(copy),
    STUB(bias_add),
    STUB(bias_grad),
    STUB(unary),
    STUB(unary_backward),
    STUB(binary),
    STUB(axpby),
    STUB(reduce),
    STUB(softmax_xent),
    STUB(softmax_xent_backward),
    STUB(count_correct),
    STUB(kernel),
};
#define FEATURE_KIND LMN_FEATURE_BACKEND
#define FEATURE_PARAMS NULL
#undef VTABLE
#define VTABLE (&backend_vtable)
#elif defined(VARIANT_BAD_COMMUNICATOR)
/* Every member set except request_wait.  Never called, so one stub serves all. */
static void stub(void)
{
}
#define STUB(m) .m = (__typeof__(((LmnCommunicatorVTable *) 0)->m)) stub
static const LmnCommunicatorVTable comm_vtable = {
    .struct_size = sizeof(LmnCommunicatorVTable),
    STUB(detect),
    STUB(open),
    STUB(close),
    STUB(rank),
    STUB(size),
    STUB(local_rank),
    STUB(host_name),
    STUB(allreduce_start),
    STUB(request_test),
    STUB(broadcast),
    STUB(barrier),
    STUB(abort),
};
#define FEATURE_KIND LMN_FEATURE_COMMUNICATOR
#define FEATURE_PARAMS NULL
#undef VTABLE
#define VTABLE (&comm_vtable)
#else
#define FEATURE_KIND LMN_FEATURE_INITIALIZER
#define FEATURE_PARAMS params
#endif

static const LmnFeatureDesc features[] = {
    {sizeof(LmnFeatureDesc), FEATURE_KIND, FEATURE_NAME, "a test feature", FEATURE_PARAMS, VTABLE},
};

#if defined(VARIANT_INIT_FAIL)
static gboolean variant_init(GError **error)
{
    g_set_error(error, g_quark_from_static_string("test-variant-error"), 0,
                "the test device is on fire");
    return FALSE;
}
#elif defined(VARIANT_UNSUPPORTED)
static gboolean variant_init(GError **error)
{
    g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_UNSUPPORTED, "no test device here");
    return FALSE;
}
#else
#define variant_init NULL
#endif

static const LmnPluginDesc desc = {
#if defined(VARIANT_SMALL_DESC)
    .struct_size = G_STRUCT_OFFSET(LmnPluginDesc, n_features), /* ends before the features */
#else
    .struct_size = sizeof(LmnPluginDesc),
#endif
#if defined(VARIANT_ABI_OLD)
    .abi_major = LMN_ABI_MAJOR - 1,
#else
    .abi_major = LMN_ABI_MAJOR,
#endif
#if defined(VARIANT_ABI_NEWER_MINOR)
    .abi_minor = LMN_ABI_MINOR + 1,
#else
    .abi_minor = LMN_ABI_MINOR,
#endif
#if defined(VARIANT_NULL_NAME)
    .name = NULL,
#else
    .name = "test.variant",
#endif
#if defined(VARIANT_DUP_A)
    .version = "a",
#elif defined(VARIANT_DUP_B)
    .version = "b",
#else
    .version = "0.0.1",
#endif
    .license = "MIT",
    .description = "a registry test plugin",
    .n_features = G_N_ELEMENTS(features),
    .features = features,
    .init = variant_init,
};

#if defined(VARIANT_NOENTRY)
/* Exports something, but not lamina_plugin_query. */
LMN_PLUGIN_EXPORT const LmnPluginDesc *lamina_plugin_describe(void);
LMN_PLUGIN_EXPORT const LmnPluginDesc *lamina_plugin_describe(void)
{
    return &desc;
}
#else
LMN_PLUGIN_DEFINE(desc)
#endif
