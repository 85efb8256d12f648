/* bench-onednn-primitives: oneDNN's own primitives on the residual CNN's and LeNet-5's layer
 * shapes, alone (no Lamina code), for deciding which of them the CPU backend should call.
 *
 * For 64 images (one pool chunk of a batch of 128 at 2 threads) on the calling thread's OpenMP
 * count (OMP_NUM_THREADS=1 matches the backend, which runs one primitive per chunk): each
 * convolution forward, backward data and backward weights, batch normalisation forward and
 * backward, and the 2x2 max pool forward, each on NCHW (Lamina's layout) and on the layout
 * oneDNN picks itself (channel-blocked), with the implementation oneDNN chose and the median
 * milliseconds of 30 runs.  The blocked figures leave out the reorders from and to NCHW, which
 * a backend keeping NCHW pays on every call.  Compare with `bench-train-step CONFIG --profile`
 * (LAMINA_CPU_CONV=blocked for the backend's own convolutions).
 */
#include <oneapi/dnnl/dnnl.h>

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUNS 30

static dnnl_engine_t engine;
static dnnl_stream_t stream;

static void check(dnnl_status_t s, const char *what)
{
    if (s != dnnl_success) {
        fprintf(stderr, "bench-onednn-primitives: %s failed (dnnl_status_t %d)\n", what, (int) s);
        exit(1);
    }
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

/* Median milliseconds of RUNS executions after 5 warm-ups. */
static double time_ms(dnnl_primitive_t p, int nargs, const dnnl_exec_arg_t *args)
{
    double t[RUNS];
    for (int i = 0; i < 5; i++)
        check(dnnl_primitive_execute(p, stream, nargs, args), "execute");
    for (int i = 0; i < RUNS; i++) {
        const gint64 t0 = g_get_monotonic_time();
        check(dnnl_primitive_execute(p, stream, nargs, args), "execute");
        check(dnnl_stream_wait(stream), "wait");
        t[i] = (double) (g_get_monotonic_time() - t0) / 1000.0;
    }
    qsort(t, RUNS, sizeof t[0], cmp_double);
    return t[RUNS / 2];
}

/* Memory for @md, filled with a fixed pattern. */
static dnnl_memory_t memory(const dnnl_memory_desc_t *md)
{
    dnnl_memory_t m;
    check(dnnl_memory_create(&m, md, engine, DNNL_MEMORY_ALLOCATE), "memory");
    void *p = NULL;
    check(dnnl_memory_get_data_handle(m, &p), "data handle");
    float *f = p;
    for (size_t i = 0; i < dnnl_memory_desc_get_size(md) / sizeof(float); i++)
        f[i] = (float) ((i * 7) % 13) * 0.1f;
    return m;
}

static const char *impl_of(const_dnnl_primitive_desc_t pd)
{
    const char *impl = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    return impl;
}

static dnnl_primitive_t create(const_dnnl_op_desc_t desc, const_dnnl_primitive_desc_t hint,
                               dnnl_primitive_desc_t *pd)
{
    dnnl_primitive_t p;
    check(dnnl_primitive_desc_create(pd, desc, NULL, engine, hint), "primitive descriptor");
    check(dnnl_primitive_create(&p, *pd), "primitive");
    return p;
}

static void report(const char *shape, const char *layout, const char *op,
                   const_dnnl_primitive_desc_t pd, double ms)
{
    printf("%-14s %-7s %-22s %-26s %8.3f ms\n", shape, layout, op, impl_of(pd), ms);
}

#define MD(pd, q, i) dnnl_primitive_desc_query_md((pd), (q), (i))

static void convolution(const char *name, int n, int c, int h, int k, int kh, int pad,
                        gboolean blocked)
{
    const int oh = h + 2 * pad - kh + 1;
    const dnnl_dims_t src = {n, c, h, h}, wei = {k, c, kh, kh}, dst = {n, k, oh, oh};
    const dnnl_dims_t strides = {1, 1}, padding = {pad, pad};
    dnnl_memory_desc_t s, w, d;
    const dnnl_format_tag_t act = blocked ? dnnl_format_tag_any : dnnl_nchw;
    check(dnnl_memory_desc_init_by_tag(&s, 4, src, dnnl_f32, act), "src md");
    check(dnnl_memory_desc_init_by_tag(&w, 4, wei, dnnl_f32,
                                       blocked ? dnnl_format_tag_any : dnnl_oihw),
          "weights md");
    check(dnnl_memory_desc_init_by_tag(&d, 4, dst, dnnl_f32, act), "dst md");
    const char *layout = blocked ? "blocked" : "nchw";
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t fwd, pd;
    check(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct,
                                             &s, &w, NULL, &d, strides, padding, padding),
          "convolution forward");
    dnnl_primitive_t p = create(&cd, NULL, &fwd);
    dnnl_exec_arg_t a[3] = {{DNNL_ARG_SRC, memory(MD(fwd, dnnl_query_src_md, 0))},
                            {DNNL_ARG_WEIGHTS, memory(MD(fwd, dnnl_query_weights_md, 0))},
                            {DNNL_ARG_DST, memory(MD(fwd, dnnl_query_dst_md, 0))}};
    report(name, layout, "conv forward", fwd, time_ms(p, 3, a));
    check(dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &s, &w, &d,
                                                   strides, padding, padding),
          "convolution backward data");
    p = create(&cd, fwd, &pd);
    dnnl_exec_arg_t b[3] = {{DNNL_ARG_DIFF_SRC, memory(MD(pd, dnnl_query_diff_src_md, 0))},
                            {DNNL_ARG_WEIGHTS, memory(MD(pd, dnnl_query_weights_md, 0))},
                            {DNNL_ARG_DIFF_DST, memory(MD(pd, dnnl_query_diff_dst_md, 0))}};
    report(name, layout, "conv backward data", pd, time_ms(p, 3, b));
    check(dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &s, &w, NULL,
                                                      &d, strides, padding, padding),
          "convolution backward weights");
    p = create(&cd, fwd, &pd);
    dnnl_exec_arg_t e[3] = {{DNNL_ARG_SRC, memory(MD(pd, dnnl_query_src_md, 0))},
                            {DNNL_ARG_DIFF_WEIGHTS, memory(MD(pd, dnnl_query_diff_weights_md, 0))},
                            {DNNL_ARG_DIFF_DST, memory(MD(pd, dnnl_query_diff_dst_md, 0))}};
    report(name, layout, "conv backward weights", pd, time_ms(p, 3, e));
}

static void norm_and_pool(const char *name, int n, int c, int h, gboolean blocked)
{
    const dnnl_dims_t dims = {n, c, h, h}, pooled = {n, c, h / 2, h / 2};
    const dnnl_format_tag_t tag = blocked ? dnnl_nChw16c : dnnl_nchw;
    const char *layout = blocked ? "blocked" : "nchw";
    dnnl_memory_desc_t md, omd;
    check(dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, tag), "md");
    check(dnnl_memory_desc_init_by_tag(&omd, 4, pooled, dnnl_f32, tag), "pooled md");
    dnnl_batch_normalization_desc_t bd;
    dnnl_primitive_desc_t fwd, pd;
    check(dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_training, &md, 1e-5f,
                                                     dnnl_use_scaleshift),
          "batch norm forward");
    dnnl_primitive_t p = create(&bd, NULL, &fwd);
    dnnl_memory_t x = memory(&md), ss = memory(MD(fwd, dnnl_query_weights_md, 0)),
                  mean = memory(MD(fwd, dnnl_query_dst_md, 1)),
                  var = memory(MD(fwd, dnnl_query_dst_md, 2));
    dnnl_exec_arg_t a[5] = {{DNNL_ARG_SRC, x},
                            {DNNL_ARG_DST, memory(&md)},
                            {DNNL_ARG_SCALE_SHIFT, ss},
                            {DNNL_ARG_MEAN, mean},
                            {DNNL_ARG_VARIANCE, var}};
    report(name, layout, "batch norm forward", fwd, time_ms(p, 5, a));
    check(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &md, &md, 1e-5f,
                                                      dnnl_use_scaleshift),
          "batch norm backward");
    p = create(&bd, fwd, &pd);
    dnnl_exec_arg_t b[7] = {
        {DNNL_ARG_SRC, x},
        {DNNL_ARG_DIFF_DST, memory(&md)},
        {DNNL_ARG_SCALE_SHIFT, ss},
        {DNNL_ARG_MEAN, mean},
        {DNNL_ARG_VARIANCE, var},
        {DNNL_ARG_DIFF_SRC, memory(&md)},
        {DNNL_ARG_DIFF_SCALE_SHIFT, memory(MD(pd, dnnl_query_diff_weights_md, 0))}};
    report(name, layout, "batch norm backward", pd, time_ms(p, 7, b));
    dnnl_pooling_v2_desc_t pl;
    const dnnl_dims_t kernel = {2, 2}, stride = {2, 2}, zero = {0, 0};
    check(dnnl_pooling_v2_forward_desc_init(&pl, dnnl_forward_training, dnnl_pooling_max, &md, &omd,
                                            stride, kernel, zero, zero, zero),
          "max pool forward");
    p = create(&pl, NULL, &pd);
    dnnl_exec_arg_t e[3] = {{DNNL_ARG_SRC, x},
                            {DNNL_ARG_DST, memory(&omd)},
                            {DNNL_ARG_WORKSPACE, memory(MD(pd, dnnl_query_workspace_md, 0))}};
    report(name, layout, "max pool 2x2 forward", pd, time_ms(p, 3, e));
}

int main(void)
{
    check(dnnl_engine_create(&engine, dnnl_cpu, 0), "engine");
    check(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags), "stream");
    const dnnl_version_t *v = dnnl_version();
    printf("oneDNN %d.%d.%d, 64 images, median of %d runs\n", v->major, v->minor, v->patch, RUNS);
    for (int blocked = 0; blocked < 2; blocked++) {
        convolution("lenet conv1", 64, 1, 28, 6, 5, 2, blocked);
        convolution("lenet conv2", 64, 6, 14, 16, 5, 0, blocked);
        convolution("resnet stem", 64, 1, 28, 16, 3, 1, blocked);
        convolution("resnet block", 64, 16, 14, 16, 3, 1, blocked);
        norm_and_pool("resnet 28x28", 64, 16, 28, blocked);
        norm_and_pool("resnet 14x14", 64, 16, 14, blocked);
    }
    return 0;
}
