/* Lamina — scaffolding shared by the optimizer plugins in this folder (internal header).
 *
 * Each optimizer stays its own module (lamina-NAME.so, plugin "lamina.NAME"); this header only
 * holds what every one of them would otherwise spell out again: the kernel descriptor with its
 * optional SPIR-V variant, the vtable's common members, the plugin descriptor, the parameter
 * specs whose meaning and text are the same in every optimizer that has them, and small helpers
 * for prepare() and the CPU update functions.  Everything here is static, so each module gets
 * its own copy and exports nothing new.
 *
 * What stays in each optimizer's source: its update rule (the CPU loop, operation for operation
 * as torch computes it, and the matching shader), its scalar block and prepare(), its slots and
 * its parameter specs.  Nothing here does float arithmetic on parameters or state.
 *
 * Naming convention the macros rely on, for an optimizer with identifier prefix P (sgd, adam):
 *   P_update_cpu  the kernel's CPU function          P_slots    NULL-terminated slot names
 *   P_prepare     the vtable's prepare()             P_kernel   defined by LMN_OPT_KERNEL()
 *   P_update_spv  the SPIR-V words (generated header "P-update-spv.h", only with LMN_HAVE_SPIRV)
 *   P_vtable, P_specs, P_features                    P_plugin   defined by LMN_OPT_PLUGIN()
 */
#pragma once

#include <lamina/lamina.h>

#include <math.h>

#ifdef LMN_HAVE_SPIRV
/* meson.build defines LMN_HAVE_SPIRV only where it generated the P-update-spv.h headers, which
 * use uint32_t. */
#include <stdint.h>
#endif

/* ---- the update kernel ---- */

/* Access of every buffer an optimizer kernel binds: param (rw), grad (r), then one per slot (rw),
 * the order optimizer.h prescribes.  A kernel uses the first 2 + n_slots entries. */
static const guint8 lmn_opt_access[LMN_KERNEL_MAX_BUFFERS] = {
    LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ,       LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ_WRITE,
    LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ_WRITE,
    LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ_WRITE,
};

/**
 * LMN_OPT_SPIRV:
 * @words: the uint32_t array of a generated P-update-spv.h header
 * The kernel's GPU variant, or NULL when the module is built without SPIR-V (no glslangValidator
 * or spirv-val): the Vulkan backend then runs the CPU function.  @words is not evaluated then, so
 * it may name an array that was never declared.
 */
#ifdef LMN_HAVE_SPIRV
#define LMN_OPT_SPIRV(words)                                                                       \
    (&(const LmnKernelSpirv){                                                                      \
        .struct_size = sizeof(LmnKernelSpirv),                                                     \
        .code = (words),                                                                           \
        .code_size = sizeof(words),                                                                \
        .entry_point = "main",                                                                     \
    })
#else
#define LMN_OPT_SPIRV(words) NULL
#endif

/**
 * LMN_OPT_KERNEL:
 * @prefix: the optimizer's identifier prefix (adam)
 * @n_scalars: the size of its scalar block
 * Defines `static const LmnKernelDesc prefix_kernel`, named "prefix.update", running
 * prefix_update_cpu on the CPU and prefix_update_spv (see LMN_OPT_SPIRV()) on a GPU, binding
 * param, grad and one buffer per name in prefix_slots.  The source includes "prefix-update-spv.h"
 * under #ifdef LMN_HAVE_SPIRV before it.
 */
#define LMN_OPT_KERNEL(prefix, n_scalars_)                                                         \
    _Static_assert(2 + G_N_ELEMENTS(prefix##_slots) - 1 <= LMN_KERNEL_MAX_BUFFERS,                 \
                   #prefix ": too many slots for one kernel");                                     \
    _Static_assert((n_scalars_) <= LMN_KERNEL_MAX_SCALARS, #prefix ": scalar block too large");    \
    static const LmnKernelDesc prefix##_kernel = {                                                 \
        .struct_size = sizeof(LmnKernelDesc),                                                      \
        .name = #prefix ".update",                                                                 \
        .cpu = prefix##_update_cpu,                                                                \
        .n_buffers = 2 + G_N_ELEMENTS(prefix##_slots) - 1, /* the slots' NULL does not count */    \
        .access = lmn_opt_access,                                                                  \
        .n_scalars = (n_scalars_),                                                                 \
        .spirv = LMN_OPT_SPIRV(prefix##_update_spv),                                               \
    }

/**
 * LMN_OPT_VTABLE_BASE:
 * @prefix: the optimizer's identifier prefix
 * @grad_scale_: the index of the scalar its kernel multiplies each gradient by
 * The members of an #LmnOptimizerVTable initializer that every optimizer here sets the same way:
 * struct_size, slots (prefix_slots), update (&prefix_kernel), prepare (prefix_prepare), and the
 * ABI 1.6 gradient scale (LMN_OPTIMIZER_FLAG_GRAD_SCALE at @grad_scale_: every kernel here reads
 * its gradient as grad[i] * scalars[@grad_scale_] before anything else, and prepare() sets that
 * scalar to 1).  The
 * members left out stay 0/NULL: no host state, every slot starts at 0, and no validate(), which
 * is right for every torch optimizer that checks each hyperparameter on its own (the schema's
 * ranges do that); an optimizer that needs one of them adds it after this macro.
 */
#define LMN_OPT_VTABLE_BASE(prefix, grad_scale_)                                                   \
    .struct_size = sizeof(LmnOptimizerVTable), .slots = prefix##_slots,                            \
    .update = &prefix##_kernel, .prepare = prefix##_prepare,                                       \
    .flags = LMN_OPTIMIZER_FLAG_GRAD_SCALE, .grad_scale_scalar = (grad_scale_)

/* ---- the plugin ---- */

/**
 * LMN_OPT_PLUGIN:
 * @prefix: the optimizer's identifier prefix
 * @name: the plugin's name ("lamina.adam")
 * @description: the plugin's one line
 * The plugin's descriptor (MIT, this Lamina's version and ABI) with the feature table
 * prefix_features, and the module's entry point, through plugin.h's LMN_PLUGIN_DEFINE_FEATURES().
 * Write it without a trailing semicolon, last in the file.
 */
#define LMN_OPT_PLUGIN(prefix, name_, description_)                                                \
    LMN_PLUGIN_DEFINE_FEATURES((name_), LMN_VERSION_STRING, "MIT", (description_),                 \
                               prefix##_features)

/* ---- parameter specs (initializers for an LmnParamSpec array) ---- */

/** LMN_OPT_SPEC_FLOAT: a float hyperparameter @name with range >= 0. */
#define LMN_OPT_SPEC_FLOAT(name_, default_, doc_)                                                  \
    LMN_PARAM_SPEC_FLOAT((name_), (default_), 0, INFINITY, 0, (doc_))

/** LMN_OPT_SPEC_BETA: a float hyperparameter @name in [0, 1): a decay torch requires below 1. */
#define LMN_OPT_SPEC_BETA(name_, default_, doc_)                                                   \
    LMN_PARAM_SPEC_FLOAT((name_), (default_), 0, 1, LMN_PARAM_FLAG_MAX_EXCLUSIVE, (doc_))

/** LMN_OPT_SPEC_BOOL: a boolean hyperparameter @name. */
#define LMN_OPT_SPEC_BOOL(name_, default_, doc_) LMN_PARAM_SPEC_BOOL((name_), (default_), (doc_))

/* The specs below mean the same in every optimizer that has them, down to the text. */

/** LMN_OPT_SPEC_LR: the learning rate, default @default_. */
#define LMN_OPT_SPEC_LR(default_) LMN_OPT_SPEC_FLOAT("lr", default_, "learning rate")

/** LMN_OPT_SPEC_EPS: eps added to the denominator, default @default_. */
#define LMN_OPT_SPEC_EPS(default_)                                                                 \
    LMN_OPT_SPEC_FLOAT("eps", default_, "added to the denominator for numerical stability")

/** LMN_OPT_SPEC_L2_WEIGHT_DECAY: weight_decay as torch's L2 penalty on the gradient, default 0. */
#define LMN_OPT_SPEC_L2_WEIGHT_DECAY                                                               \
    LMN_OPT_SPEC_FLOAT("weight_decay", "0",                                                        \
                       "L2 penalty added to the gradient: grad + weight_decay * param")

/** LMN_OPT_SPEC_MOMENTUM: the momentum factor, default 0 (no momentum buffer). */
#define LMN_OPT_SPEC_MOMENTUM                                                                      \
    LMN_OPT_SPEC_FLOAT("momentum", "0", "momentum factor; 0 disables the momentum buffer")

/** LMN_OPT_SPEC_BETA1: torch's betas[0] of the Adam family, default 0.9. */
#define LMN_OPT_SPEC_BETA1                                                                         \
    LMN_OPT_SPEC_BETA("beta1", "0.9",                                                              \
                      "decay of the running average of the gradient (torch betas[0])")

/** LMN_OPT_SPEC_BETA2: torch's betas[1] of the Adam family, default 0.999. */
#define LMN_OPT_SPEC_BETA2                                                                         \
    LMN_OPT_SPEC_BETA("beta2", "0.999",                                                            \
                      "decay of the running average of the squared gradient (torch betas[1])")

/** LMN_OPT_SPEC_AMSGRAD: the AMSGrad switch of Adam and AdamW, default false. */
#define LMN_OPT_SPEC_AMSGRAD                                                                       \
    LMN_OPT_SPEC_BOOL("amsgrad", "false",                                                          \
                      "AMSGrad: normalise by the running maximum of the second moment")

/** LMN_OPT_SPEC_MAXIMIZE: torch's maximize, default false. */
#define LMN_OPT_SPEC_MAXIMIZE                                                                      \
    LMN_OPT_SPEC_BOOL("maximize", "false",                                                         \
                      "maximise the objective instead of minimising it (negates the gradient)")

/* ---- prepare() helpers ---- */

/**
 * lmn_opt_float:
 * @hyper: the optimizer's hyperparameters
 * @key: a float hyperparameter
 * Returns: the value rounded to float once, as torch rounds a Python float that enters a float32
 * kernel.
 */
static inline float lmn_opt_float(const LmnParams *hyper, const char *key)
{
    return (float) lmn_params_get_float(hyper, key);
}

/**
 * lmn_opt_sign:
 * @hyper: hyperparameters with a "maximize" bool
 * Returns: -1 with maximize, else 1; the kernels multiply the gradient by it, which is exact.
 */
static inline float lmn_opt_sign(const LmnParams *hyper)
{
    return lmn_params_get_bool(hyper, "maximize") ? -1.0f : 1.0f;
}

/**
 * lmn_opt_flag:
 * @on: a condition prepare() decided
 * Returns: 1 or 0, how a scalar block carries a switch to the kernels (which test it against 0).
 */
static inline float lmn_opt_flag(gboolean on)
{
    return on ? 1.0f : 0.0f;
}

/**
 * lmn_opt_is_set:
 * @scalars: a scalar block
 * @index: the position of a flag that prepare() set with lmn_opt_flag()
 * Returns: whether the flag is on.
 */
static inline gboolean lmn_opt_is_set(const float *scalars, guint index)
{
    return scalars[index] != 0.0f;
}

/* ---- CPU update functions ---- */

/**
 * LMN_OPT_SPECIALISE1, LMN_OPT_SPECIALISE2, LMN_OPT_SPECIALISE3:
 * @f1, @f2, @f3: run-time conditions
 * @loop: an always_inline loop function
 * @...: its leading arguments
 * Calls `loop(..., c1[, c2[, c3]])` where each cN is the constant TRUE or FALSE that fN has, so
 * the compiler emits one copy of the loop per combination, each free of those branches and
 * vectorisable.  (A statement; the loop's own code is untouched by it.)
 */
#define LMN_OPT_SPECIALISE1(f1, loop, ...)                                                         \
    do {                                                                                           \
        if (f1)                                                                                    \
            loop(__VA_ARGS__, TRUE);                                                               \
        else                                                                                       \
            loop(__VA_ARGS__, FALSE);                                                              \
    } while (0)
#define LMN_OPT_SPECIALISE2(f1, f2, loop, ...)                                                     \
    do {                                                                                           \
        if (f1)                                                                                    \
            LMN_OPT_SPECIALISE1(f2, loop, __VA_ARGS__, TRUE);                                      \
        else                                                                                       \
            LMN_OPT_SPECIALISE1(f2, loop, __VA_ARGS__, FALSE);                                     \
    } while (0)
#define LMN_OPT_SPECIALISE3(f1, f2, f3, loop, ...)                                                 \
    do {                                                                                           \
        if (f1)                                                                                    \
            LMN_OPT_SPECIALISE2(f2, f3, loop, __VA_ARGS__, TRUE);                                  \
        else                                                                                       \
            LMN_OPT_SPECIALISE2(f2, f3, loop, __VA_ARGS__, FALSE);                                 \
    } while (0)
