/* Lion (Chen et al., "Symbolic Discovery of Optimization Algorithms", 2023) as an out-of-tree
 * Lamina optimizer plugin.  Per element, with m the "exp_avg" slot:
 *     p  <- p * (1 - lr * weight_decay)            (decoupled weight decay)
 *     p  <- p - lr * sign(beta1 * m + (1 - beta1) * g)
 *     m  <- beta2 * m + (1 - beta2) * g
 * The kernel has a CPU function (the reference, and what every backend can run) and, when the
 * build finds the shader tools, a SPIR-V variant for the Vulkan backend (see meson.build).
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

static const guint8 lion_access[] = {LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ, LMN_KERNEL_READ_WRITE};

#ifdef LION_HAVE_SPIRV
/* The Vulkan variant (lion-update.comp, embedded by meson.build with the SDK's
 * lamina-embed-shader.sh): the same float operations in the same order as lion_update. */
#include <stdint.h> /* the generated header uses uint32_t */

#include "lion-update-spv.h"

static const LmnKernelSpirv lion_spirv = {
    .struct_size = sizeof(LmnKernelSpirv),
    .code = lion_update_spv,
    .code_size = sizeof lion_update_spv,
    .entry_point = "main",
};
#define LION_SPIRV (&lion_spirv)
#else
#define LION_SPIRV NULL /* the Vulkan backend runs lion_update on host copies */
#endif

static const LmnKernelDesc lion_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "lion.update",
    .cpu = lion_update,
    .n_buffers = 3,
    .access = lion_access,
    .n_scalars = N_SCALARS,
    .spirv = LION_SPIRV,
};

static const char *const lion_slots[] = {"exp_avg", NULL};

static const LmnOptimizerVTable lion_vtable = {
    .struct_size = sizeof(LmnOptimizerVTable),
    .slots = lion_slots,
    .update = &lion_kernel,
    .prepare = lion_prepare,
};

/* params.h's LMN_PARAM_SPEC_* initializers: designated members, so LmnParamSpec's reserved
 * fields after doc stay zero without -Wmissing-field-initializers. */
static const LmnParamSpec lion_params[] = {
    LMN_PARAM_SPEC_FLOAT("lr", "0.0001", 0, 1e6, 0, "learning rate (3-10x smaller than AdamW's)"),
    LMN_PARAM_SPEC_FLOAT("beta1", "0.9", 0, 1, LMN_PARAM_FLAG_MAX_EXCLUSIVE,
                         "interpolation factor for the update direction"),
    LMN_PARAM_SPEC_FLOAT("beta2", "0.99", 0, 1, LMN_PARAM_FLAG_MAX_EXCLUSIVE,
                         "decay of the momentum slot exp_avg"),
    LMN_PARAM_SPEC_FLOAT("weight_decay", "0", 0, 1e6, 0, "decoupled weight decay"),
    LMN_PARAM_SPEC_END,
};

static const LmnFeatureDesc features[] = {
    LMN_FEATURE(LMN_FEATURE_OPTIMIZER, "lion",
                "Lion: sign of an interpolated momentum (Chen et al. 2023)", lion_params,
                &lion_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("example.lion", "1.0.0", "MIT", "Example out-of-tree optimizer plugin",
                           features)
