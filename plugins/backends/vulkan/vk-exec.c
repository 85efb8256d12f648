/* Lamina Vulkan backend — pipelines, command recording, barriers and submission.
 *
 * Ops append dispatches, and host transfers append copies and fills (vk-staging.c), to the
 * current command buffer of a small ring (LMN_VK_SLOTS), each with its own fence and descriptor
 * pools.  A full batch (LAMINA_VK_MAX_BATCH lowers its size for tests) is submitted without
 * waiting and recording goes on in the next slot, so the host records while the device runs; a
 * fence is waited for only when its slot is reused, when the host reads or synchronises, or
 * when the staging ring needs space an in-flight submission still uses (counted:
 * LAMINA_VK_STATS=1).  Buffers freed meanwhile are released when the submissions that may use
 * them completed (serials, vk-memory.c).  The ranges since the last barrier are kept across a
 * submission without wait, so the first command of the next buffer that conflicts with one in
 * flight records a barrier, whose first scope covers earlier submissions too.  A
 * barrier is recorded only when a command touches a range that a command since the last barrier
 * wrote (or writes one that it read): element-wise chains on separate tensors run back to back.
 * The barrier's source stages are those of the pending commands (compute and/or transfer) and
 * its destination both, so clearing the pending list after it stays correct for either kind of
 * command that follows.
 * Pipelines are created lazily through a VkPipelineCache persisted under
 * $XDG_CACHE_HOME/lamina, named by device UUID and driver version so a driver update starts
 * afresh (the cache header is validated by the driver too).
 */
#include "vk-private.h"

#include "vk-shader-binary.h"
#include "vk-shader-broadcast.h"
#include "vk-shader-batchnorm.h"
#include "vk-shader-bce.h"
#include "vk-shader-bias_add.h"
#include "vk-shader-bias_grad.h"
#include "vk-shader-conv.h"
#include "vk-shader-copy.h"
#include "vk-shader-fill.h"
#include "vk-shader-normalize.h"
#include "vk-shader-random.h"
#include "vk-shader-reduce_axis.h"
#include "vk-shader-reduce.h"
#include "vk-shader-reduce_subgroup.h"
#include "vk-shader-bias_grad_subgroup.h"
#include "vk-shader-batchnorm_subgroup.h"
#include "vk-shader-softmax_subgroup.h"
#include "vk-shader-softmax_xent_subgroup.h"
#include "vk-shader-normalize_subgroup.h"
#include "vk-shader-rows.h"
#include "vk-shader-scatter_rows.h"
#include "vk-shader-softmax.h"
#include "vk-shader-softmax_xent.h"
#include "vk-shader-softmax_xent_backward.h"
#include "vk-shader-topk.h"
#include "vk-shader-unary.h"
#include "vk-shader-unary_backward.h"
#include "vk-shader-upsample.h"

#include <stdarg.h>
#include <string.h>

/* Dispatches per batch before a submission, bounding descriptor-pool growth. */
#define MAX_BATCH 4096
#define SETS_PER_POOL 512

static void submit(LmnVkContext *c, gboolean wait);

typedef struct {
    VkBuffer buffer;
    VkDeviceSize lo, hi;
    gboolean write;
    VkPipelineStageFlags stage; /* COMPUTE_SHADER or TRANSFER */
} Range;

static const struct {
    const guint32 *code;
    gsize size;
    const char *name;
} shaders[LMN_VK_SHADER_COUNT] = {
#define SHADER(ID, name) [ID] = {vk_spv_##name, sizeof vk_spv_##name, #name}
    SHADER(LMN_VK_SHADER_FILL, fill),
    SHADER(LMN_VK_SHADER_COPY, copy),
    SHADER(LMN_VK_SHADER_UNARY, unary),
    SHADER(LMN_VK_SHADER_UNARY_BACKWARD, unary_backward),
    SHADER(LMN_VK_SHADER_BINARY, binary),
    SHADER(LMN_VK_SHADER_BIAS_ADD, bias_add),
    SHADER(LMN_VK_SHADER_BIAS_GRAD, bias_grad),
    SHADER(LMN_VK_SHADER_REDUCE, reduce),
    SHADER(LMN_VK_SHADER_SOFTMAX_XENT, softmax_xent),
    SHADER(LMN_VK_SHADER_SOFTMAX_XENT_BACKWARD, softmax_xent_backward),
    SHADER(LMN_VK_SHADER_RANDOM, random),
    SHADER(LMN_VK_SHADER_SOFTMAX, softmax),
    SHADER(LMN_VK_SHADER_BCE, bce),
    SHADER(LMN_VK_SHADER_ROWS, rows),
    SHADER(LMN_VK_SHADER_CONV, conv),
    SHADER(LMN_VK_SHADER_BATCHNORM, batchnorm),
    SHADER(LMN_VK_SHADER_REDUCE_AXIS, reduce_axis),
    SHADER(LMN_VK_SHADER_BROADCAST, broadcast),
    SHADER(LMN_VK_SHADER_NORMALIZE, normalize),
    SHADER(LMN_VK_SHADER_TOPK, topk),
    SHADER(LMN_VK_SHADER_UPSAMPLE, upsample),
    SHADER(LMN_VK_SHADER_SCATTER_ROWS, scatter_rows),
    SHADER(LMN_VK_SHADER_REDUCE_SUBGROUP, reduce_subgroup),
    SHADER(LMN_VK_SHADER_BIAS_GRAD_SUBGROUP, bias_grad_subgroup),
    SHADER(LMN_VK_SHADER_BATCHNORM_SUBGROUP, batchnorm_subgroup),
    SHADER(LMN_VK_SHADER_SOFTMAX_SUBGROUP, softmax_subgroup),
    SHADER(LMN_VK_SHADER_SOFTMAX_XENT_SUBGROUP, softmax_xent_subgroup),
    SHADER(LMN_VK_SHADER_NORMALIZE_SUBGROUP, normalize_subgroup),
#undef SHADER
};

void lmn_vk_set_error(LmnVkContext *c, GQuark domain, gint code, const char *format, ...)
{
    if (c->error != NULL)
        return; /* the first failure is the one reported */
    va_list args;
    va_start(args, format);
    c->error = g_error_new_valist(domain, code, format, args);
    va_end(args);
}

static void record_result(LmnVkContext *c, VkResult r, const char *what)
{
    if (r == VK_ERROR_DEVICE_LOST) {
        /* Sticky: after a loss every resource of the device is undefined, so nothing may run
         * and every later call reports this same error. */
        if (c->lost == NULL)
            c->lost = g_error_new(
                LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_DEVICE_LOST,
                "Vulkan device '%s' was lost during %s (a driver crash, a GPU reset or a "
                "watchdog timeout); its memory is gone and no more work can run on it. Restart "
                "the run (from its last checkpoint), check the GPU driver (kernel log, driver "
                "version), or use another device (--device) or --backend cpu",
                c->desc.props.deviceName, what);
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_DEVICE_LOST, "%s",
                         c->lost->message);
    } else if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_OUT_OF_MEMORY,
                         "out of %s memory on Vulkan device '%s' during %s: use a smaller batch "
                         "size or model, or another device (--device) or --backend cpu",
                         r == VK_ERROR_OUT_OF_HOST_MEMORY ? "host" : "device",
                         c->desc.props.deviceName, what);
    else
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                         "%s failed on Vulkan device '%s' (VkResult %d)", what,
                         c->desc.props.deviceName, (int) r);
}

static char *cache_path(LmnVkContext *c)
{
    /* LAMINA_VK_PIPELINE_CACHE names the file instead (tests that corrupt it use their own). */
    const char *override = g_getenv("LAMINA_VK_PIPELINE_CACHE");
    if (override != NULL && *override != '\0')
        return g_strdup(override);
    GString *uuid = g_string_new(NULL);
    for (guint i = 0; i < VK_UUID_SIZE; i++)
        g_string_append_printf(uuid, "%02x", c->desc.uuid[i]);
    char *name =
        g_strdup_printf("vulkan-pipelines-%s-%08x.bin", uuid->str, c->desc.props.driverVersion);
    char *path = g_build_filename(g_get_user_cache_dir(), "lamina", name, NULL);
    g_string_free(uuid, TRUE);
    g_free(name);
    return path;
}

static void save_pipeline_cache(LmnVkContext *c)
{
    gsize size = 0;
    if (c->pipeline_cache == VK_NULL_HANDLE ||
        c->fn.vkGetPipelineCacheData(c->device, c->pipeline_cache, &size, NULL) != VK_SUCCESS ||
        size == 0)
        return;
    g_autofree char *data = g_malloc(size);
    if (c->fn.vkGetPipelineCacheData(c->device, c->pipeline_cache, &size, data) != VK_SUCCESS)
        return;
    g_autofree char *dir = g_path_get_dirname(c->pipeline_cache_path);
    /* A cache that cannot be written only costs compile time on the next run. */
    if (g_mkdir_with_parents(dir, 0700) == 0)
        g_file_set_contents(c->pipeline_cache_path, data, (gssize) size, NULL);
}

/* The one descriptor-set layout (LMN_VK_MAX_BINDINGS storage buffers), the pipeline layout
 * with its push constants, and the command pool. */
static VkResult create_layouts(LmnVkContext *c)
{
    VkDescriptorSetLayoutBinding b[LMN_VK_MAX_BINDINGS];
    for (guint i = 0; i < LMN_VK_MAX_BINDINGS; i++)
        b[i] = (VkDescriptorSetLayoutBinding){
            .binding = i,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .descriptorCount = 1,
            .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        };
    VkDescriptorSetLayoutCreateInfo li = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .flags = c->push_descriptors ? VK_DESCRIPTOR_SET_LAYOUT_CREATE_PUSH_DESCRIPTOR_BIT_KHR : 0,
        .bindingCount = LMN_VK_MAX_BINDINGS,
        .pBindings = b,
    };
    VkPushConstantRange pc = {VK_SHADER_STAGE_COMPUTE_BIT, 0, LMN_VK_PUSH_BYTES};
    VkPipelineLayoutCreateInfo pli = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1,
        .pSetLayouts = &c->set_layout,
        .pushConstantRangeCount = 1,
        .pPushConstantRanges = &pc,
    };
    VkCommandPoolCreateInfo cpi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = c->queue_family,
    };
    VkResult r = c->fn.vkCreateDescriptorSetLayout(c->device, &li, NULL, &c->set_layout);
    if (r == VK_SUCCESS)
        r = c->fn.vkCreatePipelineLayout(c->device, &pli, NULL, &c->pipeline_layout);
    if (r == VK_SUCCESS)
        r = c->fn.vkCreateCommandPool(c->device, &cpi, NULL, &c->command_pool);
    return r;
}

/* The ring of submission slots, each with its command buffer and fence.  Every slot gets its
 * arrays even after a failure (@r), so teardown can treat them alike. */
static VkResult create_slots(LmnVkContext *c, VkResult r)
{
    VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    for (guint i = 0; i < LMN_VK_SLOTS; i++) {
        LmnVkSlot *s = &c->slots[i];
        s->pools = g_ptr_array_new();
        s->hulls = g_array_new(FALSE, FALSE, sizeof(Range));
        if (r == VK_SUCCESS) {
            VkCommandBufferAllocateInfo ai = {
                .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                .commandPool = c->command_pool,
                .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                .commandBufferCount = 1,
            };
            r = c->fn.vkAllocateCommandBuffers(c->device, &ai, &s->cmd);
        }
        if (r == VK_SUCCESS)
            r = c->fn.vkCreateFence(c->device, &fi, NULL, &s->fence);
    }
    c->slot = 0;
    c->cmd = c->slots[0].cmd;
    c->batch_hulls = c->slots[0].hulls;
    return r;
}

/* The pipeline cache, from the device's cache file when it is usable. */
static void open_pipeline_cache(LmnVkContext *c)
{
    c->pipeline_cache_path = cache_path(c);
    g_autofree char *blob = NULL;
    gsize blob_size = 0;
    if (!g_file_get_contents(c->pipeline_cache_path, &blob, &blob_size, NULL))
        blob_size = 0;
    VkPipelineCacheCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
        .initialDataSize = blob_size,
        .pInitialData = blob_size > 0 ? blob : NULL,
    };
    if (c->fn.vkCreatePipelineCache(c->device, &pci, NULL, &c->pipeline_cache) != VK_SUCCESS) {
        /* A stale or corrupt file: start with an empty cache. */
        pci.initialDataSize = 0;
        pci.pInitialData = NULL;
        if (c->fn.vkCreatePipelineCache(c->device, &pci, NULL, &c->pipeline_cache) != VK_SUCCESS)
            c->pipeline_cache = VK_NULL_HANDLE;
    }
}

gboolean lmn_vk_exec_init(LmnVkContext *c, GError **error)
{
    VkResult r = create_slots(c, create_layouts(c));
    c->max_batch = MAX_BATCH;
    const char *max_batch = g_getenv("LAMINA_VK_MAX_BATCH");
    if (max_batch != NULL && *max_batch != '\0')
        c->max_batch = (guint) CLAMP(g_ascii_strtoull(max_batch, NULL, 10), 1, MAX_BATCH);
    if (r != VK_SUCCESS) {
        g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                    "cannot set up command recording on '%s' (VkResult %d)",
                    c->desc.props.deviceName, (int) r);
        return FALSE;
    }
    open_pipeline_cache(c);
    c->kernel_pipelines = g_hash_table_new(NULL, NULL);
    c->warned_kernels = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    c->pending_ranges = g_array_new(FALSE, FALSE, sizeof(Range));
    /* Test hook: lavapipe cannot lose its device, so the N-th submission can pretend to. */
    const char *fault = g_getenv("LAMINA_VK_DEBUG_FAULT");
    if (fault != NULL && g_str_has_prefix(fault, "device-lost:"))
        c->fault_lost_at = g_ascii_strtoull(fault + strlen("device-lost:"), NULL, 10);
    return TRUE;
}

void lmn_vk_exec_cleanup(LmnVkContext *c)
{
    lmn_vk_gemm_cleanup(c);
    lmn_vk_conv_cleanup(c);
    if (c->device == VK_NULL_HANDLE)
        return;
    save_pipeline_cache(c);
    for (guint i = 0; i < LMN_VK_SHADER_COUNT; i++)
        if (c->builtin[i] != VK_NULL_HANDLE)
            c->fn.vkDestroyPipeline(c->device, c->builtin[i], NULL);
    if (c->kernel_pipelines != NULL) {
        GHashTableIter it;
        gpointer key, value;
        g_hash_table_iter_init(&it, c->kernel_pipelines);
        while (g_hash_table_iter_next(&it, &key, &value))
            if (value != NULL)
                c->fn.vkDestroyPipeline(c->device, (VkPipeline) value, NULL);
        g_hash_table_unref(c->kernel_pipelines);
    }
    if (c->warned_kernels != NULL)
        g_hash_table_unref(c->warned_kernels);
    for (guint i = 0; i < LMN_VK_SLOTS; i++) {
        LmnVkSlot *s = &c->slots[i];
        if (s->pools != NULL) {
            for (guint j = 0; j < s->pools->len; j++)
                c->fn.vkDestroyDescriptorPool(c->device, (VkDescriptorPool) s->pools->pdata[j],
                                              NULL);
            g_ptr_array_unref(s->pools);
        }
        if (s->hulls != NULL)
            g_array_unref(s->hulls);
        if (s->fence != VK_NULL_HANDLE)
            c->fn.vkDestroyFence(c->device, s->fence, NULL);
    }
    c->batch_hulls = NULL;
    if (c->pending_ranges != NULL)
        g_array_unref(c->pending_ranges);
    if (c->pipeline_cache != VK_NULL_HANDLE)
        c->fn.vkDestroyPipelineCache(c->device, c->pipeline_cache, NULL);
    if (c->command_pool != VK_NULL_HANDLE)
        c->fn.vkDestroyCommandPool(c->device, c->command_pool, NULL);
    if (c->pipeline_layout != VK_NULL_HANDLE)
        c->fn.vkDestroyPipelineLayout(c->device, c->pipeline_layout, NULL);
    if (c->set_layout != VK_NULL_HANDLE)
        c->fn.vkDestroyDescriptorSetLayout(c->device, c->set_layout, NULL);
    g_free(c->pipeline_cache_path);
}

VkPipeline lmn_vk_pipeline_new(LmnVkContext *c, const guint32 *code, gsize code_size,
                               const char *entry, const guint32 *spec, guint n_spec,
                               const char *name)
{
    VkShaderModuleCreateInfo mi = {
        .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
        .codeSize = code_size,
        .pCode = code,
    };
    VkShaderModule module;
    VkResult r = c->fn.vkCreateShaderModule(c->device, &mi, NULL, &module);
    if (r != VK_SUCCESS) {
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                         "cannot create the shader module of '%s' (VkResult %d)", name, (int) r);
        return VK_NULL_HANDLE;
    }
    VkSpecializationMapEntry map[16];
    n_spec = MIN(n_spec, G_N_ELEMENTS(map));
    for (guint i = 0; i < n_spec; i++)
        map[i] = (VkSpecializationMapEntry){i, i * sizeof(guint32), sizeof(guint32)};
    VkSpecializationInfo info = {n_spec, map, n_spec * sizeof(guint32), spec};
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage =
            {
                .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                .module = module,
                .pName = entry,
                .pSpecializationInfo = n_spec > 0 ? &info : NULL,
            },
        .layout = c->pipeline_layout,
    };
    VkPipeline pipeline = VK_NULL_HANDLE;
    r = c->fn.vkCreateComputePipelines(c->device, c->pipeline_cache, 1, &ci, NULL, &pipeline);
    c->fn.vkDestroyShaderModule(c->device, module, NULL);
    if (r != VK_SUCCESS) {
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                         "cannot create the compute pipeline of '%s' (VkResult %d)", name, (int) r);
        return VK_NULL_HANDLE;
    }
    lmn_vk_guard_name_pipeline(c, pipeline, name);
    return pipeline;
}

static VkPipeline make_pipeline(LmnVkContext *c, const guint32 *code, gsize size, const char *entry,
                                guint32 local_size, const char *name)
{
    return lmn_vk_pipeline_new(c, code, size, entry, &local_size, 1, name);
}

VkPipeline lmn_vk_builtin_pipeline(LmnVkContext *c, LmnVkShader shader)
{
    /* The variants ending their trees in subgroup shuffles (the same bits, fewer barriers):
     * c->subgroup_reduce holds only where the subgroup size is a power of two within
     * LMN_VK_LOCAL_SIZE, so every workgroup is a whole number of subgroups. */
    if (c->subgroup_reduce) {
        switch (shader) {
        case LMN_VK_SHADER_REDUCE:
            shader = LMN_VK_SHADER_REDUCE_SUBGROUP;
            break;
        case LMN_VK_SHADER_BIAS_GRAD:
            shader = LMN_VK_SHADER_BIAS_GRAD_SUBGROUP;
            break;
        case LMN_VK_SHADER_BATCHNORM:
            shader = LMN_VK_SHADER_BATCHNORM_SUBGROUP;
            break;
        case LMN_VK_SHADER_SOFTMAX:
            shader = LMN_VK_SHADER_SOFTMAX_SUBGROUP;
            break;
        case LMN_VK_SHADER_SOFTMAX_XENT:
            shader = LMN_VK_SHADER_SOFTMAX_XENT_SUBGROUP;
            break;
        case LMN_VK_SHADER_NORMALIZE:
            shader = LMN_VK_SHADER_NORMALIZE_SUBGROUP;
            break;
        default:
            break;
        }
    }
    if (c->builtin[shader] == VK_NULL_HANDLE)
        c->builtin[shader] = make_pipeline(c, shaders[shader].code, shaders[shader].size, "main",
                                           LMN_VK_LOCAL_SIZE, shaders[shader].name);
    return c->builtin[shader];
}

VkPipeline lmn_vk_kernel_pipeline(LmnVkContext *c, const LmnKernelDesc *kernel)
{
    gpointer value = NULL;
    if (g_hash_table_lookup_extended(c->kernel_pipelines, kernel, NULL, &value))
        return (VkPipeline) value;
    const LmnKernelSpirv *s = kernel->spirv;
    VkPipeline p =
        make_pipeline(c, s->code, s->code_size, s->entry_point != NULL ? s->entry_point : "main",
                      LMN_VK_LOCAL_SIZE, kernel->name);
    g_hash_table_insert(c->kernel_pipelines, (gpointer) kernel, (gpointer) p);
    return p;
}

static VkDescriptorSet allocate_set(LmnVkContext *c)
{
    LmnVkSlot *s = &c->slots[c->slot];
    for (;;) {
        if (s->pool_index >= s->pools->len) {
            VkDescriptorPoolSize size = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                         SETS_PER_POOL * LMN_VK_MAX_BINDINGS};
            VkDescriptorPoolCreateInfo pi = {
                .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                .maxSets = SETS_PER_POOL,
                .poolSizeCount = 1,
                .pPoolSizes = &size,
            };
            VkDescriptorPool pool;
            VkResult r = c->fn.vkCreateDescriptorPool(c->device, &pi, NULL, &pool);
            if (r != VK_SUCCESS) {
                record_result(c, r, "descriptor pool creation");
                return VK_NULL_HANDLE;
            }
            g_ptr_array_add(s->pools, (gpointer) pool);
        }
        VkDescriptorSetAllocateInfo ai = {
            .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
            .descriptorPool = (VkDescriptorPool) s->pools->pdata[s->pool_index],
            .descriptorSetCount = 1,
            .pSetLayouts = &c->set_layout,
        };
        VkDescriptorSet set;
        if (c->fn.vkAllocateDescriptorSets(c->device, &ai, &set) == VK_SUCCESS) {
            c->n_sets_allocated++;
            return set;
        }
        s->pool_index++; /* this pool is full: the next one (created on demand) */
    }
}

static gboolean overlaps(const Range *a, VkBuffer buffer, VkDeviceSize lo, VkDeviceSize hi)
{
    return a->buffer == buffer && a->lo < hi && lo < a->hi;
}

/* Whether a command accessing @bindings must wait for the commands since the last barrier. */
static gboolean needs_barrier(LmnVkContext *c, const LmnVkBinding *bindings, guint n)
{
    for (guint i = 0; i < n; i++) {
        VkDeviceSize lo = bindings[i].offset, hi = lo + bindings[i].range;
        for (guint j = 0; j < c->pending_ranges->len; j++) {
            const Range *p = &g_array_index(c->pending_ranges, Range, j);
            if ((p->write || bindings[i].write) && overlaps(p, bindings[i].buffer, lo, hi))
                return TRUE;
        }
    }
    return FALSE;
}

/* Records the barrier a command of @stage accessing @bindings needs, then tracks its ranges
 * (for later barriers and for lmn_vk_batch_touches). */
static void track(LmnVkContext *c, const LmnVkBinding *bindings, guint n,
                  VkPipelineStageFlags stage)
{
    if (needs_barrier(c, bindings, n)) {
        VkPipelineStageFlags src = 0;
        VkAccessFlags src_access = 0;
        for (guint j = 0; j < c->pending_ranges->len; j++) {
            const Range *p = &g_array_index(c->pending_ranges, Range, j);
            src |= p->stage;
            if (p->write)
                src_access |= p->stage == VK_PIPELINE_STAGE_TRANSFER_BIT
                                  ? VK_ACCESS_TRANSFER_WRITE_BIT
                                  : VK_ACCESS_SHADER_WRITE_BIT;
        }
        /* Only writes need making available; a read-then-write hazard needs the execution
         * dependency alone.  Both destination stages: see the file comment. */
        VkMemoryBarrier mb = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            .srcAccessMask = src_access,
            .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                             VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
        };
        c->fn.vkCmdPipelineBarrier(
            c->cmd, src, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, 0,
            1, &mb, 0, NULL, 0, NULL);
        g_array_set_size(c->pending_ranges, 0);
        c->n_barriers++;
    }
    for (guint i = 0; i < n; i++) {
        Range r = {bindings[i].buffer, bindings[i].offset, bindings[i].offset + bindings[i].range,
                   bindings[i].write, stage};
        g_array_append_val(c->pending_ranges, r);
        /* The hull per VkBuffer: a handful of blocks, so a linear search. */
        guint h = 0;
        for (; h < c->batch_hulls->len; h++) {
            Range *hull = &g_array_index(c->batch_hulls, Range, h);
            if (hull->buffer == r.buffer) {
                hull->lo = MIN(hull->lo, r.lo);
                hull->hi = MAX(hull->hi, r.hi);
                break;
            }
        }
        if (h == c->batch_hulls->len)
            g_array_append_val(c->batch_hulls, r);
    }
}

static gboolean hulls_touch(GArray *hulls, VkBuffer buffer, VkDeviceSize lo, VkDeviceSize hi)
{
    for (guint h = 0; h < hulls->len; h++)
        if (overlaps(&g_array_index(hulls, Range, h), buffer, lo, hi))
            return TRUE;
    return FALSE;
}

/* Marks @s completed (its fence signalled, or nothing of it ran): its serial is done, its
 * staging-ring span free, the buffers freed meanwhile released, and it is ready to record. */
static void slot_retire(LmnVkContext *c, LmnVkSlot *s)
{
    s->in_flight = FALSE;
    c->fn.vkResetFences(c->device, 1, &s->fence);
    c->fn.vkResetCommandBuffer(s->cmd, 0);
    for (guint i = 0; i < s->pools->len; i++)
        c->fn.vkResetDescriptorPool(c->device, (VkDescriptorPool) s->pools->pdata[i], 0);
    s->pool_index = 0;
    g_array_set_size(s->hulls, 0);
    c->done_serial = MAX(c->done_serial, s->serial);
    lmn_vk_staging_retire(c, s->ring_mark);
    lmn_vk_memory_collect(c);
}

/* Whether in-flight slot @s has not completed yet (a poll: timeout 0). */
static gboolean slot_busy(LmnVkContext *c, LmnVkSlot *s)
{
    return s->in_flight && c->fn.vkWaitForFences(c->device, 1, &s->fence, VK_TRUE, 0) != VK_SUCCESS;
}

/* Waits for in-flight slot @s; a failure (a lost device) becomes the deferred error.  Callers
 * count host stalls (n_fence_waits): a synchronisation point once however many fences it waits
 * for (deterministically, as before the ring), a slot reuse or a wait for ring space only when
 * the fence had not signalled yet, since then the overlap hid the device's work. */
static gboolean slot_wait(LmnVkContext *c, LmnVkSlot *s)
{
    if (!s->in_flight)
        return FALSE;
    VkResult r = c->fn.vkWaitForFences(c->device, 1, &s->fence, VK_TRUE, UINT64_MAX);
    if (r != VK_SUCCESS)
        record_result(c, r, "command submission");
    slot_retire(c, s);
    return TRUE;
}

gboolean lmn_vk_wait_oldest(LmnVkContext *c)
{
    /* Slots are used round robin: the oldest in flight is the first after the current one. */
    for (guint i = 1; i <= LMN_VK_SLOTS; i++) {
        LmnVkSlot *s = &c->slots[(c->slot + i) % LMN_VK_SLOTS];
        if (s->in_flight) {
            if (slot_busy(c, s))
                c->n_fence_waits++;
            slot_wait(c, s);
            return TRUE;
        }
    }
    return FALSE;
}

gboolean lmn_vk_batch_touches(LmnVkContext *c, VkBuffer buffer, VkDeviceSize lo, VkDeviceSize hi)
{
    if (hulls_touch(c->batch_hulls, buffer, lo, hi))
        return TRUE;
    for (guint i = 0; i < LMN_VK_SLOTS; i++) {
        LmnVkSlot *s = &c->slots[i];
        /* A submission that already completed no longer counts: poll its fence (timeout 0,
         * no wait, not counted as one). */
        if (s->in_flight && hulls_touch(s->hulls, buffer, lo, hi)) {
            if (slot_busy(c, s))
                return TRUE;
            slot_retire(c, s);
        }
    }
    return FALSE;
}

gboolean lmn_vk_check_lost(LmnVkContext *c, GError **error)
{
    if (c->lost == NULL)
        return TRUE;
    g_propagate_error(error, g_error_copy(c->lost));
    return FALSE;
}

gboolean lmn_vk_begin(LmnVkContext *c)
{
    if (c->lost != NULL)
        return FALSE;
    if (c->recording)
        return TRUE;
    VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
    };
    VkResult r = c->fn.vkBeginCommandBuffer(c->cmd, &bi);
    if (r != VK_SUCCESS) {
        record_result(c, r, "vkBeginCommandBuffer");
        return FALSE;
    }
    c->recording = TRUE;
    c->bound_pipeline = VK_NULL_HANDLE;
    return TRUE;
}

gboolean lmn_vk_begin_command(LmnVkContext *c)
{
    if (c->error != NULL || c->lost != NULL)
        return FALSE;
    if (c->n_recorded >= c->max_batch) {
        submit(c, FALSE);
        if (c->error != NULL || c->lost != NULL)
            return FALSE;
    }
    return lmn_vk_begin(c);
}

void lmn_vk_record_copy(LmnVkContext *c, VkBuffer src, VkDeviceSize src_offset, VkBuffer dst,
                        VkDeviceSize dst_offset, VkDeviceSize size)
{
    if (size == 0 || !lmn_vk_begin_command(c))
        return;
    LmnVkBinding b[2] = {{src, src_offset, size, FALSE}, {dst, dst_offset, size, TRUE}};
    track(c, b, 2, VK_PIPELINE_STAGE_TRANSFER_BIT);
    VkBufferCopy region = {src_offset, dst_offset, size};
    c->fn.vkCmdCopyBuffer(c->cmd, src, dst, 1, &region);
    c->n_recorded++;
}

void lmn_vk_record_fill(LmnVkContext *c, VkBuffer dst, VkDeviceSize offset, VkDeviceSize size,
                        guint32 value)
{
    /* vkCmdFillBuffer wants 4-byte multiples: spans are alignment multiples. */
    g_assert(offset % 4 == 0 && size % 4 == 0);
    if (size == 0 || !lmn_vk_begin_command(c))
        return;
    LmnVkBinding b = {dst, offset, size, TRUE};
    track(c, &b, 1, VK_PIPELINE_STAGE_TRANSFER_BIT);
    c->fn.vkCmdFillBuffer(c->cmd, dst, offset, size, value);
    c->n_recorded++;
}

void lmn_vk_dispatch(LmnVkContext *c, VkPipeline pipeline, const LmnVkBinding *bindings,
                     guint n_bindings, const void *push, gsize push_size, guint32 gx, guint32 gy,
                     guint32 gz)
{
    if (pipeline == VK_NULL_HANDLE || gx == 0 || gy == 0 || gz == 0 || !lmn_vk_begin_command(c))
        return;
    VkDescriptorSet set = VK_NULL_HANDLE;
    if (!c->push_descriptors && (set = allocate_set(c)) == VK_NULL_HANDLE)
        return;
    /* Only the bindings the kernel declares are written: a descriptor the pipeline never uses
     * may stay unwritten, and every kernel is dispatched with exactly its bindings (the
     * validation layer, on in the tests, reports one that is used but not written). */
    g_assert(n_bindings <= LMN_VK_MAX_BINDINGS);
    VkDescriptorBufferInfo infos[LMN_VK_MAX_BINDINGS];
    VkWriteDescriptorSet writes[LMN_VK_MAX_BINDINGS];
    for (guint i = 0; i < n_bindings; i++) {
        infos[i] = (VkDescriptorBufferInfo){
            bindings[i].buffer, bindings[i].offset,
            c->guard
                ? lmn_vk_guard_widen(c, bindings[i].buffer, bindings[i].offset, bindings[i].range)
                : bindings[i].range};
        writes[i] = (VkWriteDescriptorSet){
            .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
            .dstSet = set,
            .dstBinding = i,
            .descriptorCount = 1,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .pBufferInfo = &infos[i],
        };
    }
    if (!c->push_descriptors)
        c->fn.vkUpdateDescriptorSets(c->device, n_bindings, writes, 0, NULL);

    track(c, bindings, n_bindings, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT);
    /* The kernel's push constants only (rounded up to whole words), not the layout's whole
     * LMN_VK_PUSH_BYTES range. */
    guint8 block[LMN_VK_PUSH_BYTES] = {0};
    const guint32 push_bytes = (guint32) MIN((push_size + 3) / 4 * 4, sizeof block);
    memcpy(block, push, MIN(push_size, sizeof block));
    if (pipeline != c->bound_pipeline) {
        c->fn.vkCmdBindPipeline(c->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline);
        c->bound_pipeline = pipeline;
        c->n_pipeline_binds++;
    }
    /* Pushed descriptors stay bound across a pipeline change (the layout is the same), and so
     * do bound sets; either way each dispatch gives its own. */
    if (c->push_descriptors) {
        if (n_bindings > 0)
            c->fn.vkCmdPushDescriptorSetKHR(c->cmd, VK_PIPELINE_BIND_POINT_COMPUTE,
                                            c->pipeline_layout, 0, n_bindings, writes);
    } else {
        c->fn.vkCmdBindDescriptorSets(c->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, c->pipeline_layout, 0,
                                      1, &set, 0, NULL);
    }
    if (push_bytes > 0)
        c->fn.vkCmdPushConstants(c->cmd, c->pipeline_layout, VK_SHADER_STAGE_COMPUTE_BIT, 0,
                                 push_bytes, block);
    c->fn.vkCmdDispatch(c->cmd, gx, gy, gz);
    c->n_recorded++;
    c->n_dispatches++;
    if (c->guard)
        lmn_vk_guard_after_dispatch(c, pipeline);
}

/* Submits the recorded batch (if any) and moves recording to the next slot, waiting for that
 * slot's earlier submission when it is still in flight; with @wait, then waits for every
 * submission.  Failures become the deferred error. */
static void submit(LmnVkContext *c, gboolean wait)
{
    if (c->recording) {
        LmnVkSlot *s = &c->slots[c->slot];
        c->recording = FALSE;
        /* Device writes made visible to the host, which reads mapped tensors and the staging
         * ring after the fence. */
        VkMemoryBarrier mb = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
            .dstAccessMask = VK_ACCESS_HOST_READ_BIT,
        };
        c->fn.vkCmdPipelineBarrier(
            c->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
            VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
        s->serial = ++c->submit_serial;
        s->ring_mark = lmn_vk_staging_mark(c);
        VkResult r = c->fn.vkEndCommandBuffer(c->cmd);
        if (r == VK_SUCCESS && c->lost == NULL) {
            c->n_submits++;
            VkSubmitInfo si = {
                .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                .commandBufferCount = 1,
                .pCommandBuffers = &c->cmd,
            };
            if (c->fault_lost_at != 0 && c->n_submits == c->fault_lost_at)
                r = VK_ERROR_DEVICE_LOST; /* LAMINA_VK_DEBUG_FAULT: nothing was submitted */
            else
                r = c->fn.vkQueueSubmit(c->queue, 1, &si, s->fence);
        }
        if (r == VK_SUCCESS && c->lost == NULL) {
            s->in_flight = TRUE;
        } else {
            if (r != VK_SUCCESS)
                record_result(c, r, "command submission");
            slot_retire(c, s); /* nothing of it runs */
        }
        c->n_recorded = 0;
        c->slot = (c->slot + 1) % LMN_VK_SLOTS;
        /* Reusing a slot waits for its last submission. */
        if (slot_busy(c, &c->slots[c->slot]))
            c->n_fence_waits++;
        slot_wait(c, &c->slots[c->slot]);
        c->cmd = c->slots[c->slot].cmd;
        c->batch_hulls = c->slots[c->slot].hulls;
    }
    if (wait) {
        gboolean waited = FALSE;
        for (guint i = 1; i <= LMN_VK_SLOTS; i++) /* oldest first */
            waited |= slot_wait(c, &c->slots[(c->slot + i) % LMN_VK_SLOTS]);
        if (waited)
            c->n_fence_waits++;
        /* Everything completed and the fences made it visible: no barrier needed against it.
         * (No array yet when the backend failed to open before lmn_vk_exec_init.) */
        if (c->pending_ranges != NULL)
            g_array_set_size(c->pending_ranges, 0);
    }
}

void lmn_vk_wait_idle(LmnVkContext *c)
{
    submit(c, TRUE);
}

void lmn_vk_submit_now(LmnVkContext *c)
{
    submit(c, FALSE);
}

gboolean lmn_vk_flush(LmnVkContext *c, GError **error)
{
    submit(c, TRUE);
    gint n_validation = g_atomic_int_get(&c->validation_errors);
    if (n_validation > 0) {
        /* Reported once: the count restarts so a later failure is a new one. */
        g_atomic_int_add(&c->validation_errors, -n_validation);
        g_mutex_lock(&c->validation_lock);
        lmn_vk_set_error(c, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                         "%d Vulkan validation error%s, the first: %s", n_validation,
                         n_validation == 1 ? "" : "s",
                         c->first_validation_message ? c->first_validation_message : "?");
        g_clear_pointer(&c->first_validation_message, g_free);
        g_mutex_unlock(&c->validation_lock);
    }
    if (c->lost != NULL) {
        g_clear_error(&c->error);
        return lmn_vk_check_lost(c, error);
    }
    if (c->error != NULL) {
        g_propagate_error(error, c->error);
        c->error = NULL;
        return FALSE;
    }
    return TRUE;
}
