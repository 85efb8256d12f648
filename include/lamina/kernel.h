/* Lamina — kernels shipped by plugins.
 *
 * A layer or optimizer that needs more than the core op set ships its own kernel: a mandatory CPU
 * implementation (the reference, and the fallback on any backend) and, optionally, SPIR-V for
 * the Vulkan backend with the metadata the backend needs to validate and dispatch it.  Plugins
 * never link a GPU API.
 *
 * A kernel runs over a 1-D index range [0, n).  Each index must be independent of the others, so
 * the CPU backend may split the range across threads and a GPU backend may run one invocation per
 * index.  Buffers are f32 or i32 tensors bound in order; scalars are a small float block
 * recomputed by the host as often as it likes (learning rates, bias corrections).
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define LMN_KERNEL_MAX_BUFFERS 12
/* The core accepts up to LMN_KERNEL_MAX_SCALARS scalars (the CPU function receives them all),
 * but a SPIR-V variant runs only with at most 30: the Vulkan backend's push-constant block is
 * 128 bytes (the minimum maxPushConstantsSize every Vulkan device has), and `uint n; uint
 * offset;` take 8 of them, leaving 120 for 30 floats.  With 31 or 32 scalars the Vulkan backend
 * runs the kernel's CPU function on host copies instead (with a one-time warning). */
#define LMN_KERNEL_MAX_SCALARS 32

/**
 * LmnKernelCpuFunc:
 * @begin, @end: the index sub-range this call handles
 * @buffers: base pointers of the bound tensors (element 0 of each)
 * @scalars: the scalar block
 * Runs indices [begin, end).  Must not keep pointers after returning.
 */
typedef void (*LmnKernelCpuFunc)(gsize begin, gsize end, void *const *buffers,
                                 const float *scalars);

/** LmnKernelAccess: how a kernel uses a bound buffer (decides GPU barriers). */
typedef enum {
    LMN_KERNEL_READ = 1,
    LMN_KERNEL_WRITE = 2,
    LMN_KERNEL_READ_WRITE = 3,
} LmnKernelAccess;

/**
 * LmnKernelSpirv:
 * A SPIR-V variant.  Bindings: set 0, storage buffers 0..n_buffers-1 in the order of the launch;
 * the scalar block and the index count arrive as push constants: `uint n; uint offset; float
 * scalars[n_scalars]` (offset is the first index of this dispatch when the backend splits), at
 * most 128 bytes, so a SPIR-V variant is used only when n_scalars <= 30 (see above).
 * The local size x is specialization constant 0.
 */
typedef struct {
    guint32 struct_size;
    const guint32 *code;
    gsize code_size;        /* bytes */
    const char *entry_point;
    guint32 required_features; /* reserved for device feature bits; 0 = none */
    gpointer reserved[4];
} LmnKernelSpirv;

/**
 * LmnKernelDesc:
 * @name: shown in warnings and op-support tables, e.g. "sgd.update"
 * @cpu: the reference implementation (mandatory)
 * @n_buffers: how many tensors a launch binds (<= LMN_KERNEL_MAX_BUFFERS)
 * @access: per-buffer #LmnKernelAccess
 * @n_scalars: size of the scalar block (<= LMN_KERNEL_MAX_SCALARS; <= 30 for @spirv to be used)
 * @spirv: (nullable): GPU variant
 */
typedef struct {
    guint32 struct_size;
    const char *name;
    LmnKernelCpuFunc cpu;
    guint n_buffers;
    const guint8 *access;
    guint n_scalars;
    const LmnKernelSpirv *spirv;
    gpointer reserved[4];
} LmnKernelDesc;

G_END_DECLS
