/* Lamina CPU backend — the convolution ops through oneDNN's JIT convolution kernels.
 *
 * oneDNN's direct convolution kernels run on channel-blocked layouts (nChw16c and the like, with
 * matching blocked weights) and beat the blocked im2col + GEMM path of cpu-conv.c three to five
 * times on LeNet's and the residual CNN's convolutions (bench/README.md).  Lamina's tensors stay
 * NCHW, so each op reorders its operands into the layouts the kernel asks for, runs it, and
 * reorders the result back; the reorders are element copies and cost a fraction of the product.
 *
 * The images are split over the backend's pool as in cpu-conv.c, each chunk running its own
 * primitive for its number of images on one OpenMP thread (the pool does the threading, so no
 * OpenMP team forms).  Backward weights gives each chunk its own partial gradient, and the
 * partials are added in chunk order: the result depends only on the shapes and the thread count.
 *
 * A plan (the primitives and layouts for one op at one shape and chunk size) is created ahead
 * of the first step by lmn_cpu_dnnl_prepare() (the ABI 1.6 conv2d_prepare, which a conv layer
 * calls when its model is prepared), or else on the op's first call, and kept: a step creates
 * nothing once its shapes are planned.  A shape for
 * which oneDNN has only its GEMM-based or reference implementation gets a plan that says so, and
 * the op keeps to cpu-conv.c's path, as it does when any oneDNN call fails.
 */
#include "cpu-ops.h"

#ifdef LMN_HAVE_ONEDNN

#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define DNNL_ALIGNMENT 64
/* A model has a handful of convolution shapes; past this many plans the cache starts over. */
#define DNNL_MAX_PLANS 256

/* One operand of a plan: its layout as Lamina holds it (NCHW, OIHW or GOIHW), the layout the
 * kernel takes, and the reorder between them (user -> inner for an input, inner -> user for the
 * output), NULL when the two are the same. */
typedef struct {
    dnnl_memory_desc_t user, inner;
    dnnl_primitive_t reorder;
    gsize inner_bytes;
} Operand;

/* The primitives of one op at one shape and chunk size. */
typedef struct {
    gboolean usable; /* FALSE: oneDNN has no JIT kernel for it (or failed): cpu-conv.c's path */
    dnnl_primitive_t conv;
    Operand in0, in1, out; /* by kind: see LmnCpuDnnlConvKind */
    gsize scratchpad_bytes;
    /* Forward and backward data: the weights in the kernel's layout, reordered once per call
     * before the chunks run (they all read it). */
    gpointer weights;
} Plan;

/* Per-chunk scratch, grown on first use of a larger plan and kept. */
enum { SLOT_IN0, SLOT_IN1, SLOT_OUT, SLOT_PARTIAL, SLOT_SCRATCHPAD, N_SLOTS };

struct _LmnCpuDnnl {
    dnnl_engine_t engine;
    dnnl_stream_t *streams; /* one per chunk: a stream is not shared between threads */
    guint n_streams;
    GHashTable *plans; /* key string -> Plan */
    gpointer *slots[N_SLOTS];
    gsize *caps[N_SLOTS];
    /* Plans made by lmn_cpu_dnnl_prepare() and by an op's own call (LAMINA_CPU_STATS). */
    guint made_ahead, made_on_call;
};

static gpointer aligned_grow(gpointer *slot, gsize *cap, gsize bytes)
{
    if (*cap >= bytes)
        return *slot;
    free(*slot);
    *slot = NULL;
    *cap = 0;
    /* posix_memalign, not g_aligned_alloc, which aborts on failure. */
    void *p = NULL;
    if (posix_memalign(&p, DNNL_ALIGNMENT, MAX(bytes, DNNL_ALIGNMENT)) != 0)
        return NULL;
    *slot = p;
    *cap = bytes;
    return p;
}

static void operand_clear(Operand *o)
{
    if (o->reorder != NULL)
        dnnl_primitive_destroy(o->reorder);
    o->reorder = NULL;
}

static void plan_free(gpointer data)
{
    Plan *p = data;
    if (p->conv != NULL)
        dnnl_primitive_destroy(p->conv);
    operand_clear(&p->in0);
    operand_clear(&p->in1);
    operand_clear(&p->out);
    free(p->weights);
    g_free(p);
}

LmnCpuDnnl *lmn_cpu_dnnl_new(guint n_threads)
{
    LmnCpuDnnl *dn = g_new0(LmnCpuDnnl, 1);
    if (dnnl_engine_create(&dn->engine, dnnl_cpu, 0) != dnnl_success) {
        g_free(dn);
        return NULL;
    }
    dn->n_streams = n_threads;
    dn->streams = g_new0(dnnl_stream_t, n_threads);
    for (guint i = 0; i < n_threads; i++)
        if (dnnl_stream_create(&dn->streams[i], dn->engine, dnnl_stream_default_flags) !=
            dnnl_success) {
            lmn_cpu_dnnl_free(dn);
            return NULL;
        }
    dn->plans = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, plan_free);
    for (guint s = 0; s < N_SLOTS; s++) {
        dn->slots[s] = g_new0(gpointer, n_threads);
        dn->caps[s] = g_new0(gsize, n_threads);
    }
    return dn;
}

void lmn_cpu_dnnl_free(LmnCpuDnnl *dn)
{
    if (dn == NULL)
        return;
    if (dn->plans != NULL)
        g_hash_table_destroy(dn->plans);
    for (guint s = 0; s < N_SLOTS; s++) {
        for (guint i = 0; dn->slots[s] != NULL && i < dn->n_streams; i++)
            free(dn->slots[s][i]);
        g_free(dn->slots[s]);
        g_free(dn->caps[s]);
    }
    for (guint i = 0; i < dn->n_streams; i++)
        if (dn->streams[i] != NULL)
            dnnl_stream_destroy(dn->streams[i]);
    g_free(dn->streams);
    dnnl_engine_destroy(dn->engine);
    g_free(dn);
}

/* ---- plans ---- */

/* A primitive's scratchpad bytes (attributes set it to user-managed, so every chunk passes its
 * own and no primitive keeps hidden state between threads). */
static gsize scratchpad_bytes(const_dnnl_primitive_desc_t pd)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    return md != NULL ? dnnl_memory_desc_get_size(md) : 0;
}

/* Fills @o's inner layout from @pd's @what and creates the reorder from or to @o->user. */
static gboolean operand_init(LmnCpuDnnl *dn, Operand *o, const_dnnl_primitive_desc_t pd,
                             dnnl_query_t what, gboolean is_output,
                             const_dnnl_primitive_attr_t attr, gsize *scratch)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, what, 0);
    if (md == NULL)
        return FALSE;
    o->inner = *md;
    o->inner_bytes = dnnl_memory_desc_get_size(md);
    if (dnnl_memory_desc_equal(&o->user, &o->inner))
        return TRUE;
    const dnnl_memory_desc_t *from = is_output ? &o->inner : &o->user;
    const dnnl_memory_desc_t *to = is_output ? &o->user : &o->inner;
    dnnl_primitive_desc_t rpd = NULL;
    if (dnnl_reorder_primitive_desc_create(&rpd, from, dn->engine, to, dn->engine, attr) !=
        dnnl_success)
        return FALSE;
    *scratch = MAX(*scratch, scratchpad_bytes(rpd));
    const gboolean ok = dnnl_primitive_create(&o->reorder, rpd) == dnnl_success;
    dnnl_primitive_desc_destroy(rpd);
    return ok;
}

/* Whether @pd runs one of oneDNN's direct JIT kernels ("jit:avx512_core", "brgconv:..."), not
 * its im2col + GEMM ("gemm:jit", which cpu-conv.c's blocked path matches) or reference loops. */
static gboolean is_jit(const_dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success ||
        impl == NULL)
        return FALSE;
    return g_str_has_prefix(impl, "jit") || g_str_has_prefix(impl, "brg");
}

/* Per kind (LmnCpuDnnlConvKind), the queries for in0, in1 and out's layouts and their execution
 * arguments. */
static const dnnl_query_t arg_queries[3][3] = {
    {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md},
    {dnnl_query_diff_dst_md, dnnl_query_weights_md, dnnl_query_diff_src_md},
    {dnnl_query_src_md, dnnl_query_diff_dst_md, dnnl_query_diff_weights_md}};
static const int arg_kinds[3][3] = {{DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
                                    {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC},
                                    {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS}};

/* Whether the kernel's layout of @o pads its channels to more than four times their number: a
 * 1-channel image in 16-channel blocks (the input gradient of a first layer) runs oneDNN's
 * kernel on 16 times the data, eight times slower than the blocked path (bench/README.md). */
static gboolean padded_too_far(const Operand *o)
{
    return o->inner_bytes > 4 * dnnl_memory_desc_get_size(&o->user);
}

static void plan_build(LmnCpuDnnl *dn, Plan *p, LmnCpuDnnlConvKind kind, const LmnConv2dDesc *d,
                       gint64 images)
{
    const gint64 g = d->groups;
    const dnnl_dims_t src_dims = {images, d->c, d->h, d->w};
    const dnnl_dims_t dst_dims = {images, d->k, d->out_h, d->out_w};
    dnnl_dims_t w_dims = {d->k, d->c, d->kernel_h, d->kernel_w};
    int w_ndims = 4;
    dnnl_format_tag_t w_tag = dnnl_oihw;
    if (g > 1) {
        const dnnl_dims_t gw = {g, d->k / g, d->c / g, d->kernel_h, d->kernel_w};
        memcpy(w_dims, gw, sizeof gw);
        w_ndims = 5;
        w_tag = dnnl_goihw;
    }
    const dnnl_dims_t strides = {d->stride_h, d->stride_w};
    const dnnl_dims_t dilates = {d->dilation_h - 1, d->dilation_w - 1};
    const dnnl_dims_t pad_l = {d->pad_h, d->pad_w};
    /* The right padding that makes oneDNN's output size PyTorch's floor((h + 2p - ext) / s) + 1. */
    const dnnl_dims_t pad_r = {
        (d->out_h - 1) * d->stride_h + (d->kernel_h - 1) * d->dilation_h + 1 - d->h - d->pad_h,
        (d->out_w - 1) * d->stride_w + (d->kernel_w - 1) * d->dilation_w + 1 - d->w - d->pad_w};
    if (pad_r[0] < 0 || pad_r[1] < 0)
        return;

    dnnl_memory_desc_t src_any, dst_any, w_any, src_user, dst_user, w_user;
    if (dnnl_memory_desc_init_by_tag(&src_any, 4, src_dims, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&dst_any, 4, dst_dims, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&w_any, w_ndims, w_dims, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&src_user, 4, src_dims, dnnl_f32, dnnl_nchw) ||
        dnnl_memory_desc_init_by_tag(&dst_user, 4, dst_dims, dnnl_f32, dnnl_nchw) ||
        dnnl_memory_desc_init_by_tag(&w_user, w_ndims, w_dims, dnnl_f32, w_tag))
        return;

    dnnl_primitive_attr_t attr = NULL;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success)
        return;
    dnnl_primitive_desc_t fwd_pd = NULL, pd = NULL;
    dnnl_convolution_desc_t cd;
    /* The forward descriptor: the op itself, or the hint the backward ones are created from. */
    if (dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) != dnnl_success ||
        dnnl_dilated_convolution_forward_desc_init(
            &cd, dnnl_forward_training, dnnl_convolution_direct, &src_any, &w_any, NULL, &dst_any,
            strides, dilates, pad_l, pad_r) != dnnl_success ||
        dnnl_primitive_desc_create(&fwd_pd, &cd, attr, dn->engine, NULL) != dnnl_success)
        goto out;
    if (kind == LMN_CPU_DNNL_CONV_FORWARD) {
        pd = fwd_pd;
        fwd_pd = NULL;
    } else {
        dnnl_status_t s = kind == LMN_CPU_DNNL_CONV_BACKWARD_DATA
                              ? dnnl_dilated_convolution_backward_data_desc_init(
                                    &cd, dnnl_convolution_direct, &src_any, &w_any, &dst_any,
                                    strides, dilates, pad_l, pad_r)
                              : dnnl_dilated_convolution_backward_weights_desc_init(
                                    &cd, dnnl_convolution_direct, &src_any, &w_any, NULL, &dst_any,
                                    strides, dilates, pad_l, pad_r);
        if (s != dnnl_success ||
            dnnl_primitive_desc_create(&pd, &cd, attr, dn->engine, fwd_pd) != dnnl_success)
            goto out;
    }
    if (!is_jit(pd))
        goto out;

    gsize scratch = scratchpad_bytes(pd);
    /* Each kind's operands (see LmnCpuDnnlConvKind): Lamina's layout, and the query for the
     * kernel's. */
    const dnnl_memory_desc_t *const users[3][3] = {{&src_user, &w_user, &dst_user},
                                                   {&dst_user, &w_user, &src_user},
                                                   {&src_user, &dst_user, &w_user}};
    Operand *const operands[3] = {&p->in0, &p->in1, &p->out};
    gboolean ok = TRUE;
    for (int i = 0; i < 3 && ok; i++) {
        operands[i]->user = *users[kind][i];
        ok = operand_init(dn, operands[i], pd, arg_queries[kind][i], i == 2, attr, &scratch) &&
             !padded_too_far(operands[i]);
    }
    if (!ok || dnnl_primitive_create(&p->conv, pd) != dnnl_success)
        goto out;
    p->scratchpad_bytes = scratch;
    if (kind != LMN_CPU_DNNL_CONV_BACKWARD_WEIGHTS && p->in1.reorder != NULL &&
        posix_memalign(&p->weights, DNNL_ALIGNMENT, MAX(p->in1.inner_bytes, DNNL_ALIGNMENT)) != 0) {
        p->weights = NULL;
        goto out;
    }
    p->usable = TRUE;
out:
    if (fwd_pd != NULL)
        dnnl_primitive_desc_destroy(fwd_pd);
    if (pd != NULL)
        dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
}

/* The plan for @kind on @d with @images images per chunk: from the cache, else made now (by
 * lmn_cpu_dnnl_prepare() when @ahead). */
static Plan *plan_get(LmnCpuDnnl *dn, LmnCpuDnnlConvKind kind, const LmnConv2dDesc *d,
                      gint64 images, gboolean ahead)
{
    char key[320];
    g_snprintf(key, sizeof key,
               "%d %" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT
               " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT
               " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT
               " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT,
               (int) kind, images, d->c, d->h, d->w, d->k, d->kernel_h, d->kernel_w, d->stride_h,
               d->stride_w, d->pad_h, d->pad_w, d->dilation_h, d->dilation_w, d->groups, d->out_h,
               d->out_w);
    Plan *p = g_hash_table_lookup(dn->plans, key);
    if (p != NULL)
        return p;
    p = g_new0(Plan, 1);
    /* oneDNN sizes a kernel's thread partition when its primitive descriptor is created, from
     * the OpenMP count then: one, as when it runs on a pool chunk, or each chunk would start a
     * team of its own. */
    const int prev = omp_get_max_threads();
    omp_set_num_threads(1);
    plan_build(dn, p, kind, d, images);
    omp_set_num_threads(prev);
    if (!p->usable) {
        /* Keep only the verdict, so later calls do not try again. */
        Plan *verdict = g_new0(Plan, 1);
        plan_free(p);
        p = verdict;
    }
    g_hash_table_insert(dn->plans, g_strdup(key), p);
    if (ahead)
        dn->made_ahead++;
    else
        dn->made_on_call++;
    return p;
}

guint lmn_cpu_dnnl_n_plans(LmnCpuDnnl *dn)
{
    return g_hash_table_size(dn->plans);
}

void lmn_cpu_dnnl_plan_counts(const LmnCpuDnnl *dn, guint *ahead, guint *on_call)
{
    *ahead = dn->made_ahead;
    *on_call = dn->made_on_call;
}

/* The chunk sizes lmn_cpu_pool_run_indexed cuts @n images into with @chunks chunks:
 * ceil(n / chunks) each, the last one shorter. */
static void chunk_sizes(gsize n, guint chunks, gsize *per, gsize *last)
{
    *per = (n + chunks - 1) / chunks;
    *last = n - (chunks - 1) * *per;
}

/* Grows chunk @chunk's scratch to what @p needs, as run_chunk would on its first call. */
static gboolean plan_reserve(LmnCpuDnnl *dn, const Plan *p, LmnCpuDnnlConvKind kind, guint chunk)
{
    const struct {
        guint slot;
        gboolean needed;
        gsize bytes;
    } needs[] = {
        {SLOT_SCRATCHPAD, p->scratchpad_bytes > 0, p->scratchpad_bytes},
        {SLOT_IN0, p->in0.reorder != NULL, p->in0.inner_bytes},
        {SLOT_IN1, kind == LMN_CPU_DNNL_CONV_BACKWARD_WEIGHTS && p->in1.reorder != NULL,
         p->in1.inner_bytes},
        {SLOT_OUT, p->out.reorder != NULL, p->out.inner_bytes},
        {SLOT_PARTIAL, kind == LMN_CPU_DNNL_CONV_BACKWARD_WEIGHTS,
         dnnl_memory_desc_get_size(&p->out.user)},
    };
    for (gsize i = 0; i < G_N_ELEMENTS(needs); i++)
        if (needs[i].needed &&
            aligned_grow(&dn->slots[needs[i].slot][chunk], &dn->caps[needs[i].slot][chunk],
                         needs[i].bytes) == NULL)
            return FALSE;
    return TRUE;
}

gboolean lmn_cpu_dnnl_prepare(LmnCpuDnnl *dn, guint chunks, const LmnConv2dDesc *d,
                              gboolean usable[3])
{
    const gsize n = (gsize) d->n;
    if (dn == NULL || n == 0 || chunks == 0 || chunks > dn->n_streams)
        return FALSE;
    gsize per, last;
    chunk_sizes(n, chunks, &per, &last);
    /* Room for the six plans, so that no lookup below frees one made before it. */
    if (g_hash_table_size(dn->plans) + 6 > DNNL_MAX_PLANS)
        g_hash_table_remove_all(dn->plans);
    for (int kind = 0; kind < 3; kind++) {
        const Plan *full = plan_get(dn, kind, d, (gint64) per, TRUE);
        const Plan *tail = last == per ? full : plan_get(dn, kind, d, (gint64) last, TRUE);
        usable[kind] = full->usable && tail->usable;
        for (guint i = 0; usable[kind] && i < chunks; i++)
            if (!plan_reserve(dn, i + 1 == chunks ? tail : full, kind, i))
                return FALSE;
    }
    return TRUE;
}

/* ---- running ---- */

typedef struct {
    LmnCpuDnnl *dn;
    LmnCpuDnnlConvKind kind;
    Plan *plans[2]; /* a full chunk's and the last chunk's (the same when they are equal) */
    gsize per_chunk;
    gsize in0_image, in1_image, out_image; /* floats per image; 0 for the weights */
    const float *in0, *in1;
    float *out;
    gint failed;
} DnnlRun;

static gboolean memory(dnnl_memory_t *m, const dnnl_memory_desc_t *md, LmnCpuDnnl *dn, void *ptr)
{
    return dnnl_memory_create(m, md, dn->engine, ptr) == dnnl_success;
}

/* Runs @prim with @nargs arguments, creating and destroying their memory objects. */
static gboolean execute(LmnCpuDnnl *dn, dnnl_stream_t stream, dnnl_primitive_t prim, int nargs,
                        const int *kinds, const dnnl_memory_desc_t *const *mds, void *const *ptrs,
                        void *scratchpad, gsize scratchpad_size)
{
    dnnl_exec_arg_t args[5];
    int n = 0;
    gboolean ok = TRUE;
    for (int i = 0; i < nargs && ok; i++) {
        args[n].arg = kinds[i];
        ok = memory(&args[n].memory, mds[i], dn, ptrs[i]);
        n += ok;
    }
    dnnl_memory_desc_t pad_md;
    if (ok && scratchpad_size > 0) {
        const dnnl_dims_t dims = {(dnnl_dim_t) scratchpad_size};
        args[n].arg = DNNL_ARG_SCRATCHPAD;
        ok = dnnl_memory_desc_init_by_tag(&pad_md, 1, dims, dnnl_u8, dnnl_a) == dnnl_success &&
             memory(&args[n].memory, &pad_md, dn, scratchpad);
        n += ok;
    }
    ok = ok && dnnl_primitive_execute(prim, stream, n, args) == dnnl_success &&
         dnnl_stream_wait(stream) == dnnl_success;
    for (int i = 0; i < n; i++)
        dnnl_memory_destroy(args[i].memory);
    return ok;
}

/* Reorders @o from @from to @to (the operand's direction). */
static gboolean reorder(LmnCpuDnnl *dn, dnnl_stream_t stream, const Operand *o, gboolean is_output,
                        const void *from, void *to, void *scratchpad, gsize scratchpad_size)
{
    const int kinds[] = {DNNL_ARG_FROM, DNNL_ARG_TO};
    const dnnl_memory_desc_t *mds[] = {is_output ? &o->inner : &o->user,
                                       is_output ? &o->user : &o->inner};
    void *const ptrs[] = {(void *) from, to};
    return execute(dn, stream, o->reorder, 2, kinds, mds, ptrs, scratchpad, scratchpad_size);
}

/* Points *@inner at @o's data in the kernel's layout: @user itself, or reordered into @slot. */
static gboolean stage_input(LmnCpuDnnl *dn, dnnl_stream_t stream, const Operand *o,
                            const float *user, gpointer *slot, gsize *cap, void **inner,
                            void *scratchpad, gsize scratchpad_size)
{
    if (o->reorder == NULL) {
        *inner = (void *) user;
        return TRUE;
    }
    *inner = aligned_grow(slot, cap, o->inner_bytes);
    return *inner != NULL &&
           reorder(dn, stream, o, FALSE, user, *inner, scratchpad, scratchpad_size);
}

static void run_chunk(gsize begin, gsize end, guint chunk, gpointer data)
{
    DnnlRun *r = data;
    LmnCpuDnnl *dn = r->dn;
    if (begin == end || g_atomic_int_get(&r->failed))
        return;
    const Plan *p = r->plans[end - begin == r->per_chunk ? 0 : 1];
    dnnl_stream_t stream = dn->streams[chunk];
    /* One OpenMP thread on this thread: the pool does the threading. */
    const int prev = omp_get_max_threads();
    if (prev != 1)
        omp_set_num_threads(1);

    gboolean ok = TRUE;
    const gsize pad = p->scratchpad_bytes;
    void *scratchpad = pad > 0 ? aligned_grow(&dn->slots[SLOT_SCRATCHPAD][chunk],
                                              &dn->caps[SLOT_SCRATCHPAD][chunk], pad)
                               : NULL;
    ok = pad == 0 || scratchpad != NULL;
    void *in0 = NULL, *in1 = NULL, *out_inner = NULL;
    ok = ok && stage_input(dn, stream, &p->in0, r->in0 + begin * r->in0_image,
                           &dn->slots[SLOT_IN0][chunk], &dn->caps[SLOT_IN0][chunk], &in0,
                           scratchpad, pad);
    if (r->kind == LMN_CPU_DNNL_CONV_BACKWARD_WEIGHTS)
        ok = ok && stage_input(dn, stream, &p->in1, r->in1 + begin * r->in1_image,
                               &dn->slots[SLOT_IN1][chunk], &dn->caps[SLOT_IN1][chunk], &in1,
                               scratchpad, pad);
    else
        in1 = p->in1.reorder != NULL ? p->weights : (void *) r->in1;

    /* The output: this chunk's images of y or dx, or its own partial weight gradient. */
    void *out_user =
        r->kind == LMN_CPU_DNNL_CONV_BACKWARD_WEIGHTS
            ? aligned_grow(&dn->slots[SLOT_PARTIAL][chunk], &dn->caps[SLOT_PARTIAL][chunk],
                           dnnl_memory_desc_get_size(&p->out.user))
            : (void *) (r->out + begin * r->out_image);
    ok = ok && out_user != NULL;
    if (ok)
        out_inner = p->out.reorder == NULL
                        ? out_user
                        : aligned_grow(&dn->slots[SLOT_OUT][chunk], &dn->caps[SLOT_OUT][chunk],
                                       p->out.inner_bytes);
    ok = ok && out_inner != NULL;

    if (ok) {
        const dnnl_memory_desc_t *mds[] = {&p->in0.inner, &p->in1.inner, &p->out.inner};
        void *const ptrs[] = {in0, in1, out_inner};
        ok = execute(dn, stream, p->conv, 3, arg_kinds[r->kind], mds, ptrs, scratchpad, pad);
    }
    if (ok && p->out.reorder != NULL)
        ok = reorder(dn, stream, &p->out, TRUE, out_inner, out_user, scratchpad, pad);
    if (prev != 1)
        omp_set_num_threads(prev);
    if (!ok)
        g_atomic_int_set(&r->failed, 1);
}

gboolean lmn_cpu_dnnl_conv(LmnCpuDnnl *dn, LmnCpuPool *pool, guint chunks, LmnCpuDnnlConvKind kind,
                           const LmnConv2dDesc *d, const float *in0, const float *in1, float *out,
                           float beta)
{
    const gsize n = (gsize) d->n;
    if (dn == NULL || n == 0 || chunks == 0)
        return FALSE;
    gsize per, last;
    chunk_sizes(n, chunks, &per, &last);
    DnnlRun r = {.dn = dn, .kind = kind, .per_chunk = per, .in0 = in0, .in1 = in1, .out = out};
    /* Room for this call's two plans, made before either is looked up, so that the second
     * lookup never frees the first. */
    if (g_hash_table_size(dn->plans) + 2 > DNNL_MAX_PLANS)
        g_hash_table_remove_all(dn->plans);
    r.plans[0] = plan_get(dn, kind, d, (gint64) per, FALSE);
    r.plans[1] = last == per ? r.plans[0] : plan_get(dn, kind, d, (gint64) last, FALSE);
    if (!r.plans[0]->usable || !r.plans[1]->usable)
        return FALSE;
    const gsize src = (gsize) (d->c * d->h * d->w), dst = (gsize) (d->k * d->out_h * d->out_w);
    switch (kind) {
    case LMN_CPU_DNNL_CONV_FORWARD:
        r.in0_image = src, r.out_image = dst;
        break;
    case LMN_CPU_DNNL_CONV_BACKWARD_DATA:
        r.in0_image = dst, r.out_image = src;
        break;
    case LMN_CPU_DNNL_CONV_BACKWARD_WEIGHTS:
        r.in0_image = src, r.in1_image = dst;
        break;
    }
    /* The weights in each plan's layout, on this thread before the chunks start. */
    if (kind != LMN_CPU_DNNL_CONV_BACKWARD_WEIGHTS)
        for (guint i = 0; i < (r.plans[1] == r.plans[0] ? 1u : 2u); i++) {
            const Plan *p = r.plans[i];
            if (p->in1.reorder == NULL)
                continue;
            const gsize pad = p->scratchpad_bytes;
            void *scratchpad = pad > 0 ? aligned_grow(&dn->slots[SLOT_SCRATCHPAD][0],
                                                      &dn->caps[SLOT_SCRATCHPAD][0], pad)
                                       : NULL;
            const int prev = omp_get_max_threads();
            omp_set_num_threads(1);
            const gboolean ok =
                (pad == 0 || scratchpad != NULL) &&
                reorder(dn, dn->streams[0], &p->in1, FALSE, in1, p->weights, scratchpad, pad);
            omp_set_num_threads(prev);
            if (!ok)
                return FALSE;
        }
    if (chunks == 1)
        run_chunk(0, n, 0, &r);
    else
        lmn_cpu_pool_run_indexed(pool, n, run_chunk, &r);
    if (g_atomic_int_get(&r.failed))
        return FALSE;
    if (kind == LMN_CPU_DNNL_CONV_BACKWARD_WEIGHTS) {
        /* beta 0 overwrites (NaN in dweight does not survive); partials in chunk order. */
        const gsize numel = (gsize) (d->k * (d->c / d->groups) * d->kernel_h * d->kernel_w);
        float *const *partial = (float *const *) dn->slots[SLOT_PARTIAL];
        for (gsize e = 0; e < numel; e++) {
            float v = beta == 0.0f ? 0.0f : out[e];
            for (guint i = 0; i < chunks; i++)
                v += partial[i][e];
            out[e] = v;
        }
    }
    return TRUE;
}

#endif /* LMN_HAVE_ONEDNN */
