/* Lamina CPU backend — the plugin descriptor, the vtable, memory and device description.
 *
 * The reference backend every other backend is tested against.  Memory is 64-byte aligned host
 * memory (so host_pointer lets the core skip copies), GEMM is oneDNN (where the build has it) or
 * OpenBLAS, everything else is in cpu-ops.c on one thread pool.  Work runs synchronously, so there
 * are never deferred errors.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "cpu-ops.h"

#include <lamina/lamina.h>

#include <cblas.h>
#include <sched.h>
#include <stdlib.h>
#ifdef LMN_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#endif
#include <string.h>
#include <unistd.h>

#define CPU_ALIGNMENT 64
#define CPU_MAX_THREADS 1024

static const LmnParamSpec cpu_params[] = {
    LMN_PARAM_SPEC_INT("threads", "0", 0, CPU_MAX_THREADS, 0,
                       "threads for every op, GEMM included; 0 = LAMINA_NUM_THREADS, else one per "
                       "core this process may "
                       "run on"),
    LMN_PARAM_SPEC_END,
};

/* The GEMM library: "oneDNN 2.6.3 sgemm", or "OpenBLAS 0.3.21" from openblas_get_config()'s
 * "OpenBLAS 0.3.21 DYNAMIC_ARCH ...". */
static char *blas_name(void)
{
#if defined(LMN_HAVE_ONEDNN)
    const dnnl_version_t *v = dnnl_version();
    return g_strdup_printf("oneDNN %d.%d.%d sgemm", v->major, v->minor, v->patch);
#elif defined(LMN_HAVE_OPENBLAS)
    const char *config = openblas_get_config();
    if (config != NULL) {
        g_auto(GStrv) words = g_strsplit(config, " ", 3);
        if (words[0] != NULL && words[1] != NULL)
            return g_strdup_printf("%s %s", words[0], words[1]);
    }
    return g_strdup("OpenBLAS");
#else
    return g_strdup("CBLAS");
#endif
}

/* The "model name" line of /proc/cpuinfo, or a generic name elsewhere. */
static char *cpu_model_name(void)
{
    g_autofree char *text = NULL;
    if (g_file_get_contents("/proc/cpuinfo", &text, NULL, NULL)) {
        g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
        for (guint i = 0; lines[i] != NULL; i++) {
            if (g_str_has_prefix(lines[i], "model name")) {
                const char *colon = strchr(lines[i], ':');
                if (colon != NULL)
                    return g_strstrip(g_strdup(colon + 1));
            }
        }
    }
    return g_strdup("CPU");
}

static guint64 physical_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES);
    long page_size = sysconf(_SC_PAGESIZE);
    return pages > 0 && page_size > 0 ? (guint64) pages * (guint64) page_size : 0;
}

static gboolean device_matches(const char *device, const char *model)
{
    if (device == NULL || *device == '\0' || g_str_equal(device, "0") ||
        g_ascii_strcasecmp(device, "cpu") == 0)
        return TRUE;
    g_autofree char *d = g_ascii_strdown(device, -1);
    g_autofree char *m = g_ascii_strdown(model, -1);
    return strstr(m, d) != NULL;
}

/* The cores this process may run on (its affinity: taskset, or mpirun binding each rank of a
 * data-parallel run to its cores), so that ranks sharing a machine do not each start a thread
 * per core of it.  GLib's g_get_num_processors() counts the whole machine. */
static guint usable_cores(void)
{
#ifdef CPU_COUNT
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return (guint) CPU_COUNT(&set);
#endif
    return g_get_num_processors();
}

#ifdef LMN_HAVE_ONEDNN
/* oneDNN initialises its settings (ISA detection, verbosity) and JIT kernels lazily on the first
 * calls.  The pool's threads call dnnl_sgemm concurrently, so the first calls are made here, on
 * one thread, for every transpose combination and both betas. */
static void gemm_warm_up(void)
{
    float a[16] = {0}, b[16] = {0}, c[16] = {0};
    static const char t[] = {'N', 'T'};
    /* On one OpenMP thread, as every later call: no team is ever started. */
    const int prev = omp_get_max_threads();
    omp_set_num_threads(1);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            for (int beta = 0; beta < 2; beta++)
                dnnl_sgemm(t[i], t[j], 4, 4, 4, 1.0f, a, 4, b, 4, (float) beta, c, 4);
    omp_set_num_threads(prev);
}
#endif

/* LAMINA_NUM_THREADS, the count where neither the backend's key nor [train] threads gives one:
 * unset or empty leaves *threads as it is; anything but a whole number 1..CPU_MAX_THREADS is an
 * error, not a silent default. */
static gboolean threads_from_env(gint64 *threads, GError **error)
{
    const char *text = g_getenv("LAMINA_NUM_THREADS");
    if (text == NULL || *text == '\0')
        return TRUE;
    gint64 v = 0;
    if (!g_ascii_string_to_signed(text, 10, 1, CPU_MAX_THREADS, &v, NULL)) {
        g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                    "LAMINA_NUM_THREADS = '%s': expected a whole number of threads from 1 to %d; "
                    "unset it to use one thread per core",
                    text, CPU_MAX_THREADS);
        return FALSE;
    }
    *threads = v;
    return TRUE;
}

/* LAMINA_CPU_CONV: unset (oneDNN's JIT kernels where the build has oneDNN, else the blocked
 * im2col + GEMM path), "blocked" for that path even with oneDNN, or "direct" for the direct
 * loops (cpu-conv.c); the last two are there to test the paths oneDNN otherwise hides. */
static gboolean conv_mode_from_env(gboolean *direct, gboolean *blocked, GError **error)
{
    const char *text = g_getenv("LAMINA_CPU_CONV");
    *direct = g_strcmp0(text, "direct") == 0;
    *blocked = g_strcmp0(text, "blocked") == 0;
    if (text == NULL || *text == '\0' || *direct || *blocked)
        return TRUE;
    g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                "LAMINA_CPU_CONV = '%s': expected 'blocked' (im2col + GEMM, not oneDNN's "
                "convolution kernels) or 'direct' (direct loops), both for testing, or nothing; "
                "unset it",
                text);
    return FALSE;
}

static gpointer cpu_open(const LmnParams *params, const char *device, GError **error)
{
    g_autofree char *model = cpu_model_name();
    if (!device_matches(device, model)) {
        g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_NO_DEVICE,
                    "no device '%s': the cpu backend has one device, 0 (\"%s\")", device, model);
        return NULL;
    }
    gint64 threads = params != NULL ? lmn_params_get_int(params, "threads") : 0;
    if (threads <= 0 && !threads_from_env(&threads, error))
        return NULL;
    if (threads <= 0)
        threads = usable_cores();
    threads = CLAMP(threads, 1, CPU_MAX_THREADS);
    gboolean conv_direct = FALSE, conv_blocked = FALSE;
    if (!conv_mode_from_env(&conv_direct, &conv_blocked, error))
        return NULL;

    LmnCpuContext *c = g_new0(LmnCpuContext, 1);
    c->n_threads = (guint) threads;
    c->conv_direct = conv_direct;
    c->pool = lmn_cpu_pool_new(c->n_threads, error);
    if (c->pool == NULL) {
        g_free(c);
        return NULL;
    }
    g_mutex_init(&c->exec_lock);
    c->conv_cols = g_new0(float *, c->n_threads);
    c->conv_cols_cap = g_new0(gsize, c->n_threads);
    c->conv_dw = g_new0(float *, c->n_threads);
    c->conv_out = g_new0(float *, c->n_threads);
    c->conv_out_cap = g_new0(gsize, c->n_threads);
    c->conv_dw_cap = g_new0(gsize, c->n_threads);
#ifdef LMN_HAVE_OPENBLAS
    /* GEMM library calls run on one thread each, spread by the pool (lmn_cpu_gemm), so
     * OpenBLAS's own workers never run: one thread count, the pool's, for everything. */
    openblas_set_num_threads(1);
#endif
#ifdef LMN_HAVE_ONEDNN
    gemm_warm_up();
    /* Without an engine (it needs no device, so only a failed allocation stops it) the
     * convolutions keep to the blocked path. */
    if (!conv_direct && !conv_blocked)
        c->dnnl = lmn_cpu_dnnl_new(c->n_threads);
#endif
    g_autofree char *blas = blas_name();
    c->description =
        g_strdup_printf("cpu: %u thread%s, %s%s", c->n_threads, c->n_threads == 1 ? "" : "s", blas,
                        c->dnnl != NULL ? ", oneDNN JIT convolutions" : "");
    return c;
}

/* LAMINA_CPU_STATS=1: at close, how many oneDNN convolution plans were made ahead of a step
 * (conv2d_prepare) and how many by an op in a step, which a prepared run keeps at 0. */
static void print_stats(const LmnCpuContext *c)
{
    const char *env = g_getenv("LAMINA_CPU_STATS");
    if (env == NULL || !g_str_equal(env, "1"))
        return;
    guint ahead = 0, on_call = 0;
#ifdef LMN_HAVE_ONEDNN
    if (c->dnnl != NULL)
        lmn_cpu_dnnl_plan_counts(c->dnnl, &ahead, &on_call);
#endif
    g_printerr("cpu stats: %s: %u oneDNN convolution plans made ahead, %u made in a step\n",
               c->description, ahead, on_call);
}

static void cpu_close(gpointer ctx)
{
    LmnCpuContext *c = ctx;
    print_stats(c);
    lmn_cpu_pool_free(c->pool);
    lmn_cpu_conv_scratch_free(c);
#ifdef LMN_HAVE_ONEDNN
    lmn_cpu_dnnl_free(c->dnnl);
#endif
    g_mutex_clear(&c->exec_lock);
    g_free(c->description);
    g_free(c);
}

static const char *cpu_describe(gpointer ctx)
{
    LmnCpuContext *c = ctx;
    return c->description;
}

static gpointer cpu_alloc(gpointer ctx, gsize nbytes, GError **error)
{
    /* Rounded up to whole cache lines, and never 0 bytes, so every tensor has its own address. */
    gsize size = (MAX(nbytes, 1) + CPU_ALIGNMENT - 1) & ~(gsize) (CPU_ALIGNMENT - 1);
    if (size < nbytes) {
        g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_OUT_OF_MEMORY,
                    "cannot allocate %" G_GSIZE_FORMAT " bytes of host memory", nbytes);
        return NULL;
    }
    void *p = NULL;
    if (posix_memalign(&p, CPU_ALIGNMENT, size) != 0) {
        g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_OUT_OF_MEMORY,
                    "cannot allocate %" G_GSIZE_FORMAT " bytes of host memory", nbytes);
        return NULL;
    }
    /* Zeroed so that a layer reading memory it never wrote fails the same way on every run. */
    memset(p, 0, size);
    return p;
}

static void cpu_free(gpointer ctx, gpointer buffer)
{
    free(buffer);
}

static gboolean cpu_write(gpointer ctx, gpointer buffer, gsize offset, const void *src,
                          gsize nbytes, GError **error)
{
    memcpy((char *) buffer + offset, src, nbytes);
    return TRUE;
}

static gboolean cpu_read(gpointer ctx, gpointer buffer, gsize offset, void *dst, gsize nbytes,
                         GError **error)
{
    memcpy(dst, (const char *) buffer + offset, nbytes);
    return TRUE;
}

static gboolean cpu_synchronize(gpointer ctx, GError **error)
{
    /* Every op has finished when it returns: nothing is pending and nothing can be deferred. */
    return TRUE;
}

static gpointer cpu_host_pointer(gpointer ctx, gpointer buffer)
{
    return buffer;
}

static GPtrArray *cpu_list_devices(const LmnParams *params, gint *auto_index, GError **error)
{
    GPtrArray *devices = g_ptr_array_new_with_free_func(lmn_device_info_free);
    LmnDeviceInfo *d = g_new0(LmnDeviceInfo, 1);
    d->struct_size = sizeof(LmnDeviceInfo);
    d->name = cpu_model_name();
    d->driver = blas_name();
    d->type = LMN_DEVICE_CPU;
    d->memory_bytes = physical_memory();
    guint cores = g_get_num_processors();
    d->details = g_strdup_printf("%u logical core%s", cores, cores == 1 ? "" : "s");
    g_ptr_array_add(devices, d);
    if (auto_index != NULL)
        *auto_index = 0;
    return devices;
}

static const LmnBackendVTable cpu_vtable = {
    .struct_size = sizeof(LmnBackendVTable),
    .open = cpu_open,
    .close = cpu_close,
    .describe = cpu_describe,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .write = cpu_write,
    .read = cpu_read,
    .synchronize = cpu_synchronize,
    .fill = lmn_cpu_fill,
    .copy = lmn_cpu_copy,
    .gemm = lmn_cpu_gemm,
    .bias_add = lmn_cpu_bias_add,
    .bias_grad = lmn_cpu_bias_grad,
    .unary = lmn_cpu_unary,
    .unary_backward = lmn_cpu_unary_backward,
    .binary = lmn_cpu_binary,
    .axpby = lmn_cpu_axpby,
    .reduce = lmn_cpu_reduce,
    .softmax_xent = lmn_cpu_softmax_xent,
    .softmax_xent_backward = lmn_cpu_softmax_xent_backward,
    .count_correct = lmn_cpu_count_correct,
    .kernel = lmn_cpu_kernel,
    .host_pointer = cpu_host_pointer,
    .list_devices = cpu_list_devices,
    .im2col = lmn_cpu_im2col,
    .col2im = lmn_cpu_col2im,
    .pool2d = lmn_cpu_pool2d,
    .pool2d_backward = lmn_cpu_pool2d_backward,
    .batchnorm_stats = lmn_cpu_batchnorm_stats,
    .batchnorm_forward = lmn_cpu_batchnorm_forward,
    .batchnorm_backward = lmn_cpu_batchnorm_backward,
    .dropout = lmn_cpu_dropout,
    .random_normal = lmn_cpu_random_normal,
    .clamp = lmn_cpu_clamp,
    .softmax = lmn_cpu_softmax,
    .softmax_backward = lmn_cpu_softmax_backward,
    .copy_block = lmn_cpu_copy_block,
    .gather_rows = lmn_cpu_gather_rows,
    .scatter_add_rows = lmn_cpu_scatter_add_rows,
    .bce_logits = lmn_cpu_bce_logits,
    .bce_logits_backward = lmn_cpu_bce_logits_backward,
    /* ABI 1.3: axis reductions, broadcasting, row normalisation */
    .reduce_axis = lmn_cpu_reduce_axis,
    .reduce_axis_backward = lmn_cpu_reduce_axis_backward,
    .binary_broadcast = lmn_cpu_binary_broadcast,
    .binary_broadcast_backward = lmn_cpu_binary_broadcast_backward,
    .normalize_rows = lmn_cpu_normalize_rows,
    .normalize_rows_backward = lmn_cpu_normalize_rows_backward,
    .clamp_backward = lmn_cpu_clamp_backward,
    .topk = lmn_cpu_topk,
    .topk_backward = lmn_cpu_topk_backward,
    /* ABI 1.3: spatial resampling */
    .upsample2d = lmn_cpu_upsample2d,
    .upsample2d_backward = lmn_cpu_upsample2d_backward,
    .conv2d_forward = lmn_cpu_conv2d_forward,
    .conv2d_backward_data = lmn_cpu_conv2d_backward_data,
    .conv2d_backward_weights = lmn_cpu_conv2d_backward_weights,
    .gemm_ex = lmn_cpu_gemm_ex,
    .softmax_xent_grad = lmn_cpu_softmax_xent_grad,
    .conv2d_prepare = lmn_cpu_conv2d_prepare,
};

static const LmnFeatureDesc cpu_features[] = {
    LMN_FEATURE(LMN_FEATURE_BACKEND, "cpu",
                "Reference CPU backend: oneDNN or OpenBLAS GEMM, vectorised loops, one thread pool",
                cpu_params, &cpu_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.cpu", LMN_VERSION_STRING, "MIT", "The CPU compute backend",
                           cpu_features)
