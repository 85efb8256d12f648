/* Test plugins for tests/ops: fake backends that exercise the core's backend wrapper.
 *
 * Built twice (tests/ops/meson.build):
 * lamina-test-backends.so, feature "test_fake": a complete vtable without host_pointer, so
 *   lmn_tensor_read/write go through the vtable's read/write; opened on device "fail", its
 *   synchronize reports a deferred LMN_BACKEND_ERROR_DEVICE_LOST, as a GPU backend would after a
 *   lost device.
 *   Its ops compute nothing except fill, but gemm, bias_add, bias_grad and unary append a line
 *   each to the log that starts the context (a NUL-terminated string, lmn_backend_get_context),
 *   so a test sees how the core composed lmn_op_gemm_ex for a backend without gemm_ex.
 * lamina-test-incomplete.so (TEST_INCOMPLETE defined), feature "test_incomplete": a vtable that
 *   lacks the required gemm member; the core must refuse it.
 */
#include <lamina/lamina.h>

#include <stdarg.h>
#include <string.h>

typedef struct {
    char log[1024]; /* first, so a test reads it through the context pointer */
    gboolean fail;
    gint n_synchronize;
} FakeContext;

static gpointer fake_open(const LmnParams *params, const char *device, GError **error)
{
    FakeContext *c = g_new0(FakeContext, 1);
    c->fail = g_strcmp0(device, "fail") == 0;
    return c;
}

static void fake_close(gpointer ctx)
{
    g_free(ctx);
}

static const char *fake_describe(gpointer ctx)
{
    return "fake: a test backend";
}

static gpointer fake_alloc(gpointer ctx, gsize nbytes, GError **error)
{
    return g_malloc0(MAX(nbytes, 1));
}

static void fake_free(gpointer ctx, gpointer buffer)
{
    g_free(buffer);
}

static gboolean fake_write(gpointer ctx, gpointer buffer, gsize offset, const void *src,
                           gsize nbytes, GError **error)
{
    memcpy((char *) buffer + offset, src, nbytes);
    return TRUE;
}

static gboolean fake_read(gpointer ctx, gpointer buffer, gsize offset, void *dst, gsize nbytes,
                          GError **error)
{
    memcpy(dst, (const char *) buffer + offset, nbytes);
    return TRUE;
}

static gboolean fake_synchronize(gpointer ctx, GError **error)
{
    FakeContext *c = ctx;
    c->n_synchronize++;
    if (c->fail) {
        g_set_error(error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_DEVICE_LOST,
                    "fake device lost (synchronize call %d)", c->n_synchronize);
        return FALSE;
    }
    return TRUE;
}

/* fill is the one op the tests run on the fake backend: it proves dispatch reaches the vtable. */
static void fake_fill(gpointer ctx, LmnTensor *t, float value)
{
    float *p = (float *) ((char *) t->buffer + t->offset);
    for (gint64 i = 0; i < lmn_shape_numel(&t->shape); i++)
        p[i] = value;
}

static void fake_copy(gpointer ctx, LmnTensor *dst, const LmnTensor *src)
{
}

G_GNUC_PRINTF(2, 3) static void fake_log(gpointer ctx, const char *format, ...)
{
    FakeContext *c = ctx;
    const gsize used = strlen(c->log);
    va_list args;
    va_start(args, format);
    g_vsnprintf(c->log + used, sizeof c->log - used, format, args);
    va_end(args);
}

#ifndef TEST_INCOMPLETE
static void fake_gemm(gpointer ctx, const LmnGemm *g)
{
    fake_log(ctx, "gemm %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT "x%" G_GINT64_FORMAT "\n", g->m,
             g->n, g->k);
}
#endif
static void fake_bias_add(gpointer ctx, LmnTensor *y, const LmnTensor *bias, gint64 outer,
                          gint64 channels, gint64 inner)
{
    fake_log(ctx,
             "bias_add %" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT
             " of %" G_GINT64_FORMAT "\n",
             outer, channels, inner, lmn_tensor_numel(y));
}
static void fake_bias_grad(gpointer ctx, LmnTensor *db, const LmnTensor *dy, gint64 outer,
                           gint64 channels, gint64 inner, float beta)
{
    fake_log(ctx,
             "bias_grad %" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT
             " of %" G_GINT64_FORMAT " beta %g\n",
             outer, channels, inner, lmn_tensor_numel(dy), beta);
}
static void fake_unary(gpointer ctx, LmnUnaryOp op, const LmnTensor *x, LmnTensor *y, float alpha)
{
    fake_log(ctx, "unary %d %g in place %d of %" G_GINT64_FORMAT "\n", (int) op, alpha,
             x->buffer == y->buffer && x->offset == y->offset, lmn_tensor_numel(y));
}
static void fake_unary_backward(gpointer ctx, LmnUnaryOp op, const LmnTensor *x, const LmnTensor *y,
                                const LmnTensor *dy, LmnTensor *dx, float alpha)
{
}
static void fake_binary(gpointer ctx, LmnBinaryOp op, const LmnTensor *a, const LmnTensor *b,
                        LmnTensor *out)
{
}
static void fake_axpby(gpointer ctx, float alpha, const LmnTensor *x, float beta, LmnTensor *y)
{
}
static void fake_reduce(gpointer ctx, LmnReduceOp op, const LmnTensor *x, LmnTensor *out,
                        float alpha, float beta)
{
}
static void fake_softmax_xent(gpointer ctx, const LmnTensor *logits, const LmnTensor *labels,
                              LmnTensor *probs, LmnTensor *loss, float smoothing)
{
}
static void fake_softmax_xent_backward(gpointer ctx, const LmnTensor *probs,
                                       const LmnTensor *labels, LmnTensor *dx, float scale,
                                       float smoothing)
{
}
static void fake_count_correct(gpointer ctx, const LmnTensor *logits, const LmnTensor *labels,
                               LmnTensor *out)
{
}
static void fake_kernel(gpointer ctx, const LmnKernelDesc *kernel, gsize n,
                        LmnTensor *const *buffers, const float *scalars)
{
}

#define FAKE_VTABLE_BODY                                                                           \
    .open = fake_open, .close = fake_close, .describe = fake_describe, .alloc = fake_alloc,        \
    .free = fake_free, .write = fake_write, .read = fake_read, .synchronize = fake_synchronize,    \
    .fill = fake_fill, .copy = fake_copy, .bias_add = fake_bias_add, .bias_grad = fake_bias_grad,  \
    .unary = fake_unary, .unary_backward = fake_unary_backward, .binary = fake_binary,             \
    .axpby = fake_axpby, .reduce = fake_reduce, .softmax_xent = fake_softmax_xent,                 \
    .softmax_xent_backward = fake_softmax_xent_backward, .count_correct = fake_count_correct,      \
    .kernel = fake_kernel

#ifndef TEST_INCOMPLETE
static const LmnBackendVTable fake_vtable = {
    .struct_size = sizeof(LmnBackendVTable),
    FAKE_VTABLE_BODY,
    .gemm = fake_gemm,
};

static const LmnFeatureDesc features[] = {
    {
        .struct_size = sizeof(LmnFeatureDesc),
        .kind = LMN_FEATURE_BACKEND,
        .name = "test_fake",
        .description = "test backend without host memory",
        .vtable = &fake_vtable,
    },
};
#else
static const LmnBackendVTable incomplete_vtable = {
    .struct_size = sizeof(LmnBackendVTable),
    FAKE_VTABLE_BODY,
};

static const LmnFeatureDesc features[] = {
    {
        .struct_size = sizeof(LmnFeatureDesc),
        .kind = LMN_FEATURE_BACKEND,
        .name = "test_incomplete",
        .description = "test backend lacking a required op",
        .vtable = &incomplete_vtable,
    },
};
#endif

static const LmnPluginDesc plugin = {
    .struct_size = sizeof(LmnPluginDesc),
    .abi_major = LMN_ABI_MAJOR,
    .abi_minor = LMN_ABI_MINOR,
    .name = "lamina.test-backends",
    .version = "0",
    .license = "MIT",
    .description = "fake backends for the op tests",
    .n_features = G_N_ELEMENTS(features),
    .features = features,
};

LMN_PLUGIN_DEFINE(plugin)
