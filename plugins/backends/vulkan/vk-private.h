/* Lamina Vulkan backend — private declarations shared by the plugin's files.
 *
 * The Vulkan loader is opened with dlopen at run time (so the plugin loads, and reports a clear
 * error, on machines without libvulkan); every entry point used lives in LmnVkFns.
 */
#pragma once

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include <lamina/lamina.h>

G_BEGIN_DECLS

#define LMN_VK_GLOBAL_FNS(X)                                                                       \
    X(vkCreateInstance)                                                                            \
    X(vkEnumerateInstanceLayerProperties)                                                          \
    X(vkEnumerateInstanceExtensionProperties)

#define LMN_VK_INSTANCE_FNS(X)                                                                     \
    X(vkDestroyInstance)                                                                           \
    X(vkEnumeratePhysicalDevices)                                                                  \
    X(vkGetPhysicalDeviceProperties)                                                               \
    X(vkGetPhysicalDeviceProperties2)                                                              \
    X(vkGetPhysicalDeviceMemoryProperties)                                                         \
    X(vkGetPhysicalDeviceQueueFamilyProperties)                                                    \
    X(vkEnumerateDeviceExtensionProperties)                                                        \
    X(vkCreateDevice)                                                                              \
    X(vkDestroyDevice)                                                                             \
    X(vkGetDeviceQueue)                                                                            \
    X(vkCreateBuffer)                                                                              \
    X(vkDestroyBuffer)                                                                             \
    X(vkGetBufferMemoryRequirements)                                                               \
    X(vkAllocateMemory)                                                                            \
    X(vkFreeMemory)                                                                                \
    X(vkBindBufferMemory)                                                                          \
    X(vkMapMemory)                                                                                 \
    X(vkCreateShaderModule)                                                                        \
    X(vkDestroyShaderModule)                                                                       \
    X(vkCreateDescriptorSetLayout)                                                                 \
    X(vkDestroyDescriptorSetLayout)                                                                \
    X(vkCreatePipelineLayout)                                                                      \
    X(vkDestroyPipelineLayout)                                                                     \
    X(vkCreateComputePipelines)                                                                    \
    X(vkDestroyPipeline)                                                                           \
    X(vkCreatePipelineCache)                                                                       \
    X(vkDestroyPipelineCache)                                                                      \
    X(vkGetPipelineCacheData)                                                                      \
    X(vkCreateDescriptorPool)                                                                      \
    X(vkDestroyDescriptorPool)                                                                     \
    X(vkResetDescriptorPool)                                                                       \
    X(vkAllocateDescriptorSets)                                                                    \
    X(vkUpdateDescriptorSets)                                                                      \
    X(vkCreateCommandPool)                                                                         \
    X(vkDestroyCommandPool)                                                                        \
    X(vkAllocateCommandBuffers)                                                                    \
    X(vkBeginCommandBuffer)                                                                        \
    X(vkEndCommandBuffer)                                                                          \
    X(vkResetCommandBuffer)                                                                        \
    X(vkCmdBindPipeline)                                                                           \
    X(vkCmdBindDescriptorSets)                                                                     \
    X(vkCmdPushConstants)                                                                          \
    X(vkCmdDispatch)                                                                               \
    X(vkCmdPipelineBarrier)                                                                        \
    X(vkCmdCopyBuffer)                                                                             \
    X(vkCmdFillBuffer)                                                                             \
    X(vkCreateFence)                                                                               \
    X(vkDestroyFence)                                                                              \
    X(vkResetFences)                                                                               \
    X(vkWaitForFences)                                                                             \
    X(vkQueueSubmit)                                                                               \
    X(vkDeviceWaitIdle)

/* Optional: present only with VK_EXT_debug_utils (validation runs). */
#define LMN_VK_OPTIONAL_FNS(X)                                                                     \
    X(vkCreateDebugUtilsMessengerEXT)                                                              \
    X(vkDestroyDebugUtilsMessengerEXT)

#define LMN_VK_DECLARE_FN(name) PFN_##name name;
typedef struct {
    PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr;
    LMN_VK_GLOBAL_FNS(LMN_VK_DECLARE_FN)
    LMN_VK_INSTANCE_FNS(LMN_VK_DECLARE_FN)
    LMN_VK_OPTIONAL_FNS(LMN_VK_DECLARE_FN)
    /* VK_KHR_push_descriptor's, where the device has it and it is enabled. */
    PFN_vkCmdPushDescriptorSetKHR vkCmdPushDescriptorSetKHR;
} LmnVkFns;
#undef LMN_VK_DECLARE_FN

/* The most storage-buffer bindings one dispatch uses (plugin kernels: LMN_KERNEL_MAX_BUFFERS). */
#define LMN_VK_MAX_BINDINGS LMN_KERNEL_MAX_BUFFERS
#define LMN_VK_PUSH_BYTES 128

/* Built-in shaders (shaders/vulkan/NAME.comp). */
typedef enum {
    LMN_VK_SHADER_FILL,
    LMN_VK_SHADER_COPY,
    LMN_VK_SHADER_UNARY,
    LMN_VK_SHADER_UNARY_BACKWARD,
    LMN_VK_SHADER_BINARY,
    LMN_VK_SHADER_BIAS_ADD,
    LMN_VK_SHADER_BIAS_GRAD,
    LMN_VK_SHADER_REDUCE,
    LMN_VK_SHADER_SOFTMAX_XENT,
    LMN_VK_SHADER_SOFTMAX_XENT_BACKWARD,
    LMN_VK_SHADER_RANDOM,
    LMN_VK_SHADER_SOFTMAX,
    LMN_VK_SHADER_BCE,
    LMN_VK_SHADER_ROWS,
    LMN_VK_SHADER_CONV,
    LMN_VK_SHADER_BATCHNORM,
    /* ABI 1.3 (vk-ops-axis.c) */
    LMN_VK_SHADER_REDUCE_AXIS,
    LMN_VK_SHADER_BROADCAST,
    LMN_VK_SHADER_NORMALIZE,
    LMN_VK_SHADER_TOPK,
    /* ABI 1.3: spatial resampling */
    LMN_VK_SHADER_UPSAMPLE,
    /* scatter_add_rows by sorting (vk-ops.c) */
    LMN_VK_SHADER_SCATTER_ROWS,
    /* Variants whose trees end in subgroup shuffles (reduce.glsl, tree.glsl), which
     * lmn_vk_builtin_pipeline() takes for the plain ones where c->subgroup_reduce is set */
    LMN_VK_SHADER_REDUCE_SUBGROUP,
    LMN_VK_SHADER_BIAS_GRAD_SUBGROUP,
    LMN_VK_SHADER_BATCHNORM_SUBGROUP,
    LMN_VK_SHADER_SOFTMAX_SUBGROUP,
    LMN_VK_SHADER_SOFTMAX_XENT_SUBGROUP,
    LMN_VK_SHADER_NORMALIZE_SUBGROUP,
    LMN_VK_SHADER_COUNT
} LmnVkShader;

typedef struct _LmnVkBlock LmnVkBlock;
typedef struct _LmnVkStaging LmnVkStaging;

#define LMN_VK_SLOTS 3

/* One command buffer of the submission ring (vk-exec.c), with what its submission holds. */
typedef struct {
    VkCommandBuffer cmd;
    VkFence fence;
    GPtrArray *pools; /* VkDescriptorPool, as pointers: reset when the slot is reused */
    guint pool_index; /* the pool sets are allocated from */
    gboolean in_flight;
    guint64 serial;    /* submission serial while in flight */
    guint64 ring_mark; /* staging ring position at submission: the ring up to it is free after */
    GArray *hulls;     /* per VkBuffer, the hull of the ranges the submission touches */
} LmnVkSlot;

/* A backend buffer handle: a span of a block. */
typedef struct {
    LmnVkBlock *block;
    VkDeviceSize offset;
    VkDeviceSize size;
    guint64 free_after; /* freed: released once submission serial free_after completed */
    VkDeviceSize guard; /* LAMINA_VK_GUARD: bytes of guard pattern after the span, 0 = none */
} LmnVkBuffer;

/* One binding of a dispatch: a range of a VkBuffer and whether the shader writes it. */
typedef struct {
    VkBuffer buffer;
    VkDeviceSize offset;
    VkDeviceSize range;
    gboolean write;
} LmnVkBinding;

/* A device as enumerated (for selection and `lamina devices`). */
typedef struct {
    VkPhysicalDevice physical;
    VkPhysicalDeviceProperties props;
    char driver_name[VK_MAX_DRIVER_NAME_SIZE];
    char driver_info[VK_MAX_DRIVER_INFO_SIZE];
    guint8 uuid[VK_UUID_SIZE];
    guint32 subgroup_size;
    /* compute shaders have subgroup shuffle-down (SHUFFLE_RELATIVE) at a power-of-two
     * subgroup size within LMN_VK_LOCAL_SIZE: reduce_subgroup.comp can run */
    gboolean subgroup_shuffle;
    guint64 memory_bytes;
    gboolean is_lavapipe;
} LmnVkDeviceDesc;

typedef struct {
    LmnVkFns fn;
    void *loader; /* dlopen handle */
    VkInstance instance;
    VkDebugUtilsMessengerEXT messenger;
    gint validation_errors; /* atomic: counted by the debug messenger */
    char *first_validation_message;
    GMutex validation_lock;

    LmnVkDeviceDesc desc;
    VkDevice device;
    VkQueue queue;
    guint32 queue_family;
    guint32 memory_type;
    VkDeviceSize max_range; /* maxStorageBufferRange, possibly lowered by the env override */
    VkDeviceSize alignment; /* of binding offsets (and of every span) */
    guint32 max_groups_x;
    gboolean gemm_reg; /* gemm_regtile.comp (CPU devices) rather than gemm_tiled.comp (vk-gemm.c) */
    char *description;

    /* vk-memory.c (memory type chosen in vk-device.c) */
    gboolean mapped;        /* memory_type is HOST_VISIBLE|HOST_COHERENT: blocks stay mapped */
    gboolean direct;        /* host access through the mapping (mapped, LAMINA_VK_STAGING unset) */
    VkDeviceSize block_max; /* largest block: maxMemoryAllocationSize, maxBufferSize, 64 MiB */
    VkDeviceSize alloc_max; /* maxMemoryAllocationSize (and maxBufferSize when known) */
    guint64 memory_limit;   /* LAMINA_VK_MEMORY_LIMIT, 0 = none */
    guint64 memory_used;    /* bytes of device memory held by blocks */
    guint64 memory_peak;
    gboolean guard;             /* LAMINA_VK_GUARD=1: guard bytes after every buffer (vk-guard.c) */
    GPtrArray *guarded;         /* LmnVkBuffer*, the live buffers with a guard */
    GHashTable *pipeline_names; /* VkPipeline -> kernel name, with the guard on */
    GPtrArray *blocks;        /* LmnVkBlock*, shared blocks with free spans */
    GPtrArray *pending_frees; /* LmnVkBuffer* freed while recorded work may still use them */
    LmnVkBuffer *dummy;       /* bound to unused binding slots */

    /* vk-exec.c */
    VkDescriptorSetLayout set_layout;
    /* VK_KHR_push_descriptor: each dispatch writes its descriptors into the command buffer, with
     * no set to allocate and update (LAMINA_VK_PUSH_DESCRIPTORS=0 turns it off, for tests). */
    gboolean push_descriptors;
    /* LAMINA_VK_CHANNEL_SPLITS: workgroups per channel forced on the per-channel passes
     * (vk-ops.c), 0 to choose them from the shape. */
    guint32 channel_splits;
    /* LAMINA_VK_SCATTER=scan: scatter_add_rows by its O(rows n dim) scan, not the sort */
    gboolean scatter_scan;
    /* workgroup trees (reductions, per-channel and per-row passes) end with subgroup shuffles
     * (desc.subgroup_shuffle, unless LAMINA_VK_SUBGROUPS=0): lmn_vk_builtin_pipeline() */
    gboolean subgroup_reduce;
    VkPipelineLayout pipeline_layout;
    VkPipelineCache pipeline_cache;
    char *pipeline_cache_path;
    VkPipeline builtin[LMN_VK_SHADER_COUNT];
    GHashTable *kernel_pipelines; /* LmnKernelDesc* -> VkPipeline */
    GHashTable *warned_kernels;   /* kernel names already warned about */
    VkCommandPool command_pool;
    /* A ring of command buffers: a full batch is submitted without waiting and recording goes
     * on in the next slot; a slot is waited for only when it is reused, or for host access. */
    LmnVkSlot slots[LMN_VK_SLOTS];
    guint slot;            /* the slot being recorded (or recorded next) */
    guint64 submit_serial; /* serial of the last submission (1, 2, ...) */
    guint64 done_serial;   /* every submission up to this serial has completed */
    guint max_batch;       /* commands per batch; LAMINA_VK_MAX_BATCH lowers it (tests) */
    VkCommandBuffer cmd;   /* the current slot's command buffer */
    gboolean recording;
    guint n_recorded;
    /* The pipeline last bound in the command buffer being recorded (VK_NULL_HANDLE after
     * vkBeginCommandBuffer): consecutive dispatches of one kernel skip the rebind. */
    VkPipeline bound_pipeline;
    GArray *pending_ranges; /* LmnVkRange written or read since the last barrier */
    GArray *batch_hulls;    /* per VkBuffer, the hull of the ranges the recorded batch touches */
    GError *error;          /* first deferred error */
    GError *lost;           /* sticky: the device was lost, every later call fails with this */
    guint64 fault_lost_at;  /* LAMINA_VK_DEBUG_FAULT=device-lost:N, 0 = none */
    /* Counters (LAMINA_VK_STATS=1 prints them at close). */
    guint64 n_submits, n_fence_waits, n_barriers, n_direct_writes, n_staged_writes, n_staged_reads,
        staged_bytes, n_dispatches, n_pipeline_binds, n_sets_allocated, n_staging_grows;
    GMutex lock; /* serialises ops from different threads */

    /* vk-staging.c */
    LmnVkStaging *staging;

    /* vk-gemm.c */
#define LMN_VK_GEMM_PIPELINES 53 /* 3 tiles x 16 tiled variants, 4 register-tiled, 1 reduction */
    gboolean gemm_splitk;      /* LAMINA_VK_GEMM=...splitk: every GEMM through split-K (tests) */
    guint gemm_tiles[3];       /* the small, medium and large tiles (indices into vk-gemm.c's table) */
    char gemm_desc[64];        /* lmn_vk_gemm_select's description when it is formatted */
    guint32 gemm_busy_groups;  /* workgroups that keep the device busy: below it, split-K */
    VkPipeline gemm_pipelines[LMN_VK_GEMM_PIPELINES]; /* created on first use */
    GHashTable *gemm_epilogue_pipelines; /* variants with a fused epilogue, by slot and epilogue */
    LmnVkBuffer *gemm_scratch; /* split-K partial products, grown on demand */

    /* vk-conv.c: per op (forward, backward data, backward weights) and tile shape */
#define LMN_VK_CONV_OPS 3
#define LMN_VK_CONV_TILES 9
    VkPipeline conv_pipelines[LMN_VK_CONV_OPS * LMN_VK_CONV_TILES]; /* created on first use */
} LmnVkContext;

/* vk-device.c */
gboolean lmn_vk_load_instance(LmnVkContext *c, gboolean validation, GError **error);
GArray *lmn_vk_enumerate(LmnVkContext *c, GError **error);
gint lmn_vk_auto_index(GArray *devices);
gboolean lmn_vk_open_device(LmnVkContext *c, const char *selector, GError **error);
void lmn_vk_close_instance(LmnVkContext *c);
GPtrArray *lmn_vk_list_devices(const LmnParams *params, gint *auto_index, GError **error);
const char *lmn_vk_device_type_name(VkPhysicalDeviceType type);

/* vk-memory.c */
gboolean lmn_vk_memory_init(LmnVkContext *c, GError **error);
void lmn_vk_memory_cleanup(LmnVkContext *c);
LmnVkBuffer *lmn_vk_buffer_alloc(LmnVkContext *c, gsize nbytes, GError **error);
void lmn_vk_buffer_release(LmnVkContext *c, LmnVkBuffer *b);
void lmn_vk_buffer_free_deferred(LmnVkContext *c, LmnVkBuffer *b);
void lmn_vk_memory_collect(LmnVkContext *c);
/* As lmn_vk_buffer_alloc, without zeroing (scratch whose every element is written first). */
LmnVkBuffer *lmn_vk_buffer_alloc_uninit(LmnVkContext *c, gsize nbytes, GError **error);
VkBuffer lmn_vk_buffer_handle(const LmnVkBuffer *b);
/* The host address of @b, or NULL when its memory is not mapped (c->mapped is FALSE). */
void *lmn_vk_buffer_map(const LmnVkBuffer *b);
/* The size of the block whose VkBuffer is @buffer, 0 when none is (the staging ring's). */
VkDeviceSize lmn_vk_block_size_of(LmnVkContext *c, VkBuffer buffer);

/* vk-staging.c: host transfers.  Writes are copied into the staging ring and recorded as
 * vkCmdCopyBuffer (no wait), or copied through the mapping when c->direct and the recorded
 * batch does not touch the bytes; reads wait for the recorded work.  Failures become the
 * deferred error.  Call with c->lock held. */
void lmn_vk_host_write(LmnVkContext *c, const LmnVkBuffer *b, VkDeviceSize offset, const void *src,
                       gsize nbytes);
gboolean lmn_vk_host_read(LmnVkContext *c, const LmnVkBuffer *b, VkDeviceSize offset, void *dst,
                          gsize nbytes);
/* The ring position now (bytes reserved so far): a submission records it, and once that
 * submission completed the ring up to it is free again. */
guint64 lmn_vk_staging_mark(LmnVkContext *c);
/* Called when the submission that recorded @mark completed: the ring up to @mark is free. */
void lmn_vk_staging_retire(LmnVkContext *c, guint64 mark);
void lmn_vk_staging_cleanup(LmnVkContext *c);
/* The staging ring's size in bytes (0 before its first use). */
VkDeviceSize lmn_vk_staging_size(LmnVkContext *c);

/* vk-exec.c */
gboolean lmn_vk_exec_init(LmnVkContext *c, GError **error);
void lmn_vk_exec_cleanup(LmnVkContext *c);
void lmn_vk_set_error(LmnVkContext *c, GQuark domain, gint code, const char *format, ...)
    G_GNUC_PRINTF(4, 5);
void lmn_vk_dispatch(LmnVkContext *c, VkPipeline pipeline, const LmnVkBinding *bindings,
                     guint n_bindings, const void *push, gsize push_size, guint32 gx, guint32 gy,
                     guint32 gz);
/* vk-guard.c: LAMINA_VK_GUARD, the out-of-bounds write check.  Every buffer gets guard bytes
 * after its span, filled with a pattern; every dispatch is submitted and waited for on its own
 * and the guards checked, so a kernel writing past a tensor fails with an error naming it. */
#define LMN_VK_GUARD_BYTES 65536
#define LMN_VK_GUARD_PATTERN 0xA5
gboolean lmn_vk_guard_init(LmnVkContext *c, GError **error);
void lmn_vk_guard_cleanup(LmnVkContext *c);
/* Fills @buf's guard and keeps it checked until lmn_vk_guard_forget(). */
void lmn_vk_guard_arm(LmnVkContext *c, LmnVkBuffer *buf);
/* Checks @buf's guard one last time (a deferred error when damaged) and stops tracking it. */
void lmn_vk_guard_forget(LmnVkContext *c, LmnVkBuffer *buf);
/* Names @pipeline for the guard's messages. */
void lmn_vk_guard_name_pipeline(LmnVkContext *c, VkPipeline pipeline, const char *name);
/* The range a binding gets with the guard on: @range plus the guard, within the block and
 * maxStorageBufferRange, so that an overrun lands in the guard even on devices that discard
 * writes outside a descriptor's range (lavapipe does). */
VkDeviceSize lmn_vk_guard_widen(LmnVkContext *c, VkBuffer buffer, VkDeviceSize offset,
                                VkDeviceSize range);
/* After a dispatch of @pipeline: waits for it and checks every guard. */
void lmn_vk_guard_after_dispatch(LmnVkContext *c, VkPipeline pipeline);

VkPipeline lmn_vk_builtin_pipeline(LmnVkContext *c, LmnVkShader shader);
VkPipeline lmn_vk_kernel_pipeline(LmnVkContext *c, const LmnKernelDesc *kernel);
/* Creates a compute pipeline for @code with specialization constants 0..n_spec-1 set to @spec
 * (each a 32-bit value); failures become the deferred error and return VK_NULL_HANDLE.  The
 * caller owns the pipeline (destroy it in its cleanup). */
VkPipeline lmn_vk_pipeline_new(LmnVkContext *c, const guint32 *code, gsize code_size,
                               const char *entry, const guint32 *spec, guint n_spec,
                               const char *name);
/* Starts recording when not recording yet; FALSE (deferred error set) on failure. */
gboolean lmn_vk_begin(LmnVkContext *c);
/* Makes room for one more command: submits (and waits) when the batch is full, then starts
 * recording.  FALSE when nothing may be recorded (a deferred error or a lost device). */
gboolean lmn_vk_begin_command(LmnVkContext *c);
/* Records a transfer copy / fill with the hazard tracking of dispatches (barriers as needed). */
void lmn_vk_record_copy(LmnVkContext *c, VkBuffer src, VkDeviceSize src_offset, VkBuffer dst,
                        VkDeviceSize dst_offset, VkDeviceSize size);
void lmn_vk_record_fill(LmnVkContext *c, VkBuffer dst, VkDeviceSize offset, VkDeviceSize size,
                        guint32 value);
/* Whether work recorded, or submitted and not known to have completed, may access [lo, hi)
 * of @buffer. */
gboolean lmn_vk_batch_touches(LmnVkContext *c, VkBuffer buffer, VkDeviceSize lo, VkDeviceSize hi);
/* FALSE with @error set when the device was lost (every call after that fails the same way). */
gboolean lmn_vk_check_lost(LmnVkContext *c, GError **error);
/* Submits recorded work and waits; returns (and clears) the first deferred error. */
gboolean lmn_vk_flush(LmnVkContext *c, GError **error);
/* Submits recorded work and waits, keeping any error deferred (for host access inside ops). */
void lmn_vk_wait_idle(LmnVkContext *c);
/* Submits the recorded batch, if any, without waiting for it (a slot reused may wait for its
 * previous submission).  Call with c->lock held. */
void lmn_vk_submit_now(LmnVkContext *c);
/* Waits for the oldest submission still in flight; FALSE when none is. */
gboolean lmn_vk_wait_oldest(LmnVkContext *c);
/* The local size every built-in 1-D shader is specialised with. */
#define LMN_VK_LOCAL_SIZE 128u

/* vk-ops.c: binds elements [e0, e0 + n) of @t at its offset rounded down to the binding
 * alignment; the element offset inside the binding goes to @off.  Returns FALSE (with the
 * deferred error set) when the range exceeds maxStorageBufferRange. */
gboolean lmn_vk_bind_tensor(LmnVkContext *c, const LmnTensor *t, gsize e0, gsize n, gboolean write,
                            LmnVkBinding *b, guint32 *off, const char *op);

/* vk-ops.c, vk-gemm.c: the op vtable members. */
void lmn_vk_fill(gpointer ctx, LmnTensor *t, float value);
void lmn_vk_copy(gpointer ctx, LmnTensor *dst, const LmnTensor *src);
void lmn_vk_gemm(gpointer ctx, const LmnGemm *g);
void lmn_vk_gemm_ex(gpointer ctx, const LmnGemm *g, const LmnGemmEpilogue *e);
void lmn_vk_softmax_xent_grad(gpointer ctx, const LmnTensor *logits, const LmnTensor *labels,
                              LmnTensor *probs, LmnTensor *loss, float smoothing, LmnTensor *dx,
                              float scale);
void lmn_vk_bias_add(gpointer ctx, LmnTensor *y, const LmnTensor *bias, gint64 outer,
                     gint64 channels, gint64 inner);
void lmn_vk_bias_grad(gpointer ctx, LmnTensor *db, const LmnTensor *dy, gint64 outer,
                      gint64 channels, gint64 inner, float beta);
void lmn_vk_unary(gpointer ctx, LmnUnaryOp op, const LmnTensor *x, LmnTensor *y, float alpha);
void lmn_vk_unary_backward(gpointer ctx, LmnUnaryOp op, const LmnTensor *x, const LmnTensor *y,
                           const LmnTensor *dy, LmnTensor *dx, float alpha);
void lmn_vk_binary(gpointer ctx, LmnBinaryOp op, const LmnTensor *a, const LmnTensor *b,
                   LmnTensor *out);
void lmn_vk_axpby(gpointer ctx, float alpha, const LmnTensor *x, float beta, LmnTensor *y);
void lmn_vk_reduce(gpointer ctx, LmnReduceOp op, const LmnTensor *x, LmnTensor *out, float alpha,
                   float beta);
void lmn_vk_softmax_xent(gpointer ctx, const LmnTensor *logits, const LmnTensor *labels,
                         LmnTensor *probs, LmnTensor *loss, float smoothing);
void lmn_vk_softmax_xent_backward(gpointer ctx, const LmnTensor *probs, const LmnTensor *labels,
                                  LmnTensor *dx, float scale, float smoothing);
void lmn_vk_count_correct(gpointer ctx, const LmnTensor *logits, const LmnTensor *labels,
                          LmnTensor *out);
void lmn_vk_kernel(gpointer ctx, const LmnKernelDesc *kernel, gsize n, LmnTensor *const *buffers,
                   const float *scalars);
/* ABI 1.1 */
void lmn_vk_dropout(gpointer ctx, const LmnTensor *x, LmnTensor *y, LmnTensor *mask, float p,
                    guint64 seed, guint64 stream);
void lmn_vk_random_normal(gpointer ctx, LmnTensor *t, float mean, float std, guint64 seed,
                          guint64 stream);
void lmn_vk_clamp(gpointer ctx, LmnTensor *t, float lo, float hi);
void lmn_vk_softmax(gpointer ctx, const LmnTensor *x, LmnTensor *y, gint64 rows, gint64 cols);
void lmn_vk_softmax_backward(gpointer ctx, const LmnTensor *y, const LmnTensor *dy, LmnTensor *dx,
                             gint64 rows, gint64 cols);
void lmn_vk_copy_block(gpointer ctx, LmnTensor *dst, gint64 dst_offset, gint64 dst_stride,
                       const LmnTensor *src, gint64 src_offset, gint64 src_stride, gint64 rows,
                       gint64 cols, float beta);
void lmn_vk_gather_rows(gpointer ctx, const LmnTensor *table, const LmnTensor *indices,
                        LmnTensor *out, gint64 n, gint64 dim);
void lmn_vk_scatter_add_rows(gpointer ctx, LmnTensor *table_grad, const LmnTensor *indices,
                             const LmnTensor *src, gint64 n, gint64 dim);
void lmn_vk_bce_logits(gpointer ctx, const LmnTensor *x, const LmnTensor *target, LmnTensor *loss);
void lmn_vk_bce_logits_backward(gpointer ctx, const LmnTensor *x, const LmnTensor *target,
                                LmnTensor *dx, float scale);
void lmn_vk_im2col(gpointer ctx, const LmnTensor *x, LmnTensor *cols, const LmnConv2dGeom *g);
void lmn_vk_col2im(gpointer ctx, const LmnTensor *cols, LmnTensor *dx, const LmnConv2dGeom *g);
void lmn_vk_pool2d(gpointer ctx, LmnPoolMode mode, const LmnTensor *x, LmnTensor *y,
                   LmnTensor *argmax, const LmnConv2dGeom *g);
void lmn_vk_pool2d_backward(gpointer ctx, LmnPoolMode mode, const LmnTensor *dy,
                            const LmnTensor *argmax, LmnTensor *dx, const LmnConv2dGeom *g);
void lmn_vk_batchnorm_stats(gpointer ctx, const LmnTensor *x, LmnTensor *mean, LmnTensor *var,
                            gint64 outer, gint64 channels, gint64 inner);
void lmn_vk_batchnorm_forward(gpointer ctx, const LmnTensor *x, const LmnTensor *mean,
                              const LmnTensor *var, const LmnTensor *weight, const LmnTensor *bias,
                              LmnTensor *y, float eps, gint64 outer, gint64 channels, gint64 inner);
void lmn_vk_batchnorm_backward(gpointer ctx, const LmnTensor *x, const LmnTensor *dy,
                               const LmnTensor *mean, const LmnTensor *var, const LmnTensor *weight,
                               LmnTensor *dx, LmnTensor *dweight, LmnTensor *dbias, float eps,
                               gint64 outer, gint64 channels, gint64 inner);
/* ---- ABI 1.3: axis reductions, broadcasting, row normalisation (vk-ops-axis.c) ---- */
void lmn_vk_reduce_axis(gpointer ctx, LmnAxisReduceOp op, const LmnTensor *x, LmnTensor *out,
                        LmnTensor *indices, gint64 outer, gint64 axis, gint64 inner);
void lmn_vk_reduce_axis_backward(gpointer ctx, LmnAxisReduceOp op, const LmnTensor *dy,
                                 const LmnTensor *indices, LmnTensor *dx, gint64 outer, gint64 axis,
                                 gint64 inner);
void lmn_vk_binary_broadcast(gpointer ctx, LmnBinaryOp op, const LmnTensor *a, const LmnTensor *b,
                             LmnTensor *out, const LmnBroadcast *bc);
void lmn_vk_binary_broadcast_backward(gpointer ctx, LmnBinaryOp op, const LmnTensor *a,
                                      const LmnTensor *b, const LmnTensor *dy, LmnTensor *da,
                                      LmnTensor *db, const LmnBroadcast *bc);
void lmn_vk_normalize_rows(gpointer ctx, const LmnTensor *x, LmnTensor *y, LmnTensor *mean,
                           LmnTensor *rstd, gint64 rows, gint64 cols, float eps);
void lmn_vk_normalize_rows_backward(gpointer ctx, const LmnTensor *y, const LmnTensor *rstd,
                                    const LmnTensor *dy, LmnTensor *dx, gint64 rows, gint64 cols);
void lmn_vk_clamp_backward(gpointer ctx, const LmnTensor *x, const LmnTensor *dy, LmnTensor *dx,
                           float lo, float hi);
void lmn_vk_topk(gpointer ctx, const LmnTensor *x, LmnTensor *values, LmnTensor *indices,
                 gint64 outer, gint64 axis, gint64 inner, gint64 k);
void lmn_vk_topk_backward(gpointer ctx, const LmnTensor *dy, const LmnTensor *indices,
                          LmnTensor *dx, gint64 outer, gint64 axis, gint64 inner, gint64 k);
/* ---- end of the ABI 1.3 axis/broadcast block ---- */

/* vk-gemm.c */
/* Picks the GEMM kernel and tile sizes for the opened device (c->desc, limits) and reads
 * LAMINA_VK_GEMM (tiled, reg, optionally with splitk: e.g. "reg,splitk").  Returns a static
 * description for the backend's one-line summary. */
const char *lmn_vk_gemm_select(LmnVkContext *c);
/* Destroys the GEMM pipelines and frees the split-K scratch (before lmn_vk_memory_cleanup). */
void lmn_vk_gemm_cleanup(LmnVkContext *c);
/* gemm_reduce.comp's pipeline (C = alpha * the sum of split slices in order + beta C); also
 * sums vk-conv.c's weight-gradient slices.  VK_NULL_HANDLE (deferred error set) on failure. */
VkPipeline lmn_vk_gemm_reduce_pipeline(LmnVkContext *c);

/* vk-conv.c: the ABI 1.4 native convolution (implicit GEMMs, conv2d_*.comp). */
void lmn_vk_conv2d_forward(gpointer ctx, const LmnConv2dDesc *d, const LmnTensor *x,
                           const LmnTensor *weight, LmnTensor *y);
void lmn_vk_conv2d_backward_data(gpointer ctx, const LmnConv2dDesc *d, const LmnTensor *dy,
                                 const LmnTensor *weight, LmnTensor *dx);
void lmn_vk_conv2d_backward_weights(gpointer ctx, const LmnConv2dDesc *d, const LmnTensor *x,
                                    const LmnTensor *dy, LmnTensor *dweight, float beta);
/* Destroys the convolution pipelines (with the other pipelines, in lmn_vk_exec_cleanup). */
void lmn_vk_conv_cleanup(LmnVkContext *c);

/* vk-ops-spatial.c: the ABI 1.3 resampling ops. */
void lmn_vk_upsample2d(gpointer ctx, LmnUpsampleMode mode, const LmnTensor *x, LmnTensor *y,
                       const LmnUpsampleGeom *g);
void lmn_vk_upsample2d_backward(gpointer ctx, LmnUpsampleMode mode, const LmnTensor *dy,
                                LmnTensor *dx, const LmnUpsampleGeom *g);

G_END_DECLS
