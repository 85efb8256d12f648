/* Lion (Chen et al., "Symbolic Discovery of Optimization Algorithms", 2023) as an out-of-tree
 * Lamina optimizer plugin.  Per element, with m the "exp_avg" slot:
 *     p  <- p * (1 - lr * weight_decay)            (decoupled weight decay)
 *     p  <- p - lr * sign(beta1 * m + (1 - beta1) * g)
 *     m  <- beta2 * m + (1 - beta2) * g
 */
#include <lamina/lamina.h>

enum { S_LR, S_BETA1, S_BETA2, S_DECAY, N_SCALARS };

static void lion_update(gsize begin, gsize end, void *const *buffers, const float *s)
{
    float *p = buffers[0];
    const float *g = buffers[1];
    float *m = buffers[2];
    const float lr = s[S_LR], b1 = s[S_BETA1], b2 = s[S_BETA2], decay = s[S_DECAY];
    for (gsize i = begin; i < end; i++) {
        float c = b1 * m[i] + (1.0f - b1) * g[i];
        float sign = (c > 0.0f) - (c < 0.0f);
        p[i] = p[i] * decay - lr * sign;
        m[i] = b2 * m[i] + (1.0f - b2) * g[i];
    }
}

static void lion_prepare(const LmnParams *hyper, double lr, gint64 step, double *host_state,
                         float *scalars)
{
    (void) step; /* Lion needs neither the step count nor host state */
    (void) host_state;
    scalars[S_LR] = (float) lr;
    scalars[S_BETA1] = (float) lmn_params_get_float(hyper, "beta1");
    scalars[S_BETA2] = (float) lmn_params_get_float(hyper, "beta2");
    scalars[S_DECAY] = (float) (1.0 - lr * lmn_params_get_float(hyper, "weight_decay"));
}

static const guint8 lion_access[] = {LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ,
                                     LMN_KERNEL_READ_WRITE};

static const LmnKernelDesc lion_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "lion.update",
    .cpu = lion_update,
    .n_buffers = 3,
    .access = lion_access,
    .n_scalars = N_SCALARS,
};

static const char *const lion_slots[] = {"exp_avg", NULL};

static const LmnOptimizerVTable lion_vtable = {
    .struct_size = sizeof(LmnOptimizerVTable),
    .slots = lion_slots,
    .update = &lion_kernel,
    .prepare = lion_prepare,
};

static const LmnParamSpec lion_params[] = {
    {"lr", LMN_PARAM_FLOAT, "0.0001", 0, 1e6, NULL, 0,
     "learning rate (3-10x smaller than AdamW's)"},
    {"beta1", LMN_PARAM_FLOAT, "0.9", 0, 1, NULL, LMN_PARAM_FLAG_MAX_EXCLUSIVE,
     "interpolation factor for the update direction"},
    {"beta2", LMN_PARAM_FLOAT, "0.99", 0, 1, NULL, LMN_PARAM_FLAG_MAX_EXCLUSIVE,
     "decay of the momentum slot exp_avg"},
    {"weight_decay", LMN_PARAM_FLOAT, "0", 0, 1e6, NULL, 0, "decoupled weight decay"},
    {NULL},
};

static const LmnFeatureDesc features[] = {
    {
        .struct_size = sizeof(LmnFeatureDesc),
        .kind = LMN_FEATURE_OPTIMIZER,
        .name = "lion",
        .description = "Lion: sign of an interpolated momentum (Chen et al. 2023)",
        .params = lion_params,
        .vtable = &lion_vtable,
    },
};

static const LmnPluginDesc plugin = {
    .struct_size = sizeof(LmnPluginDesc),
    .abi_major = LMN_ABI_MAJOR,
    .abi_minor = LMN_ABI_MINOR,
    .name = "example.lion",
    .version = "1.0.0",
    .license = "MIT",
    .description = "Example out-of-tree optimizer plugin",
    .n_features = G_N_ELEMENTS(features),
    .features = features,
};

LMN_PLUGIN_DEFINE(plugin)
