/* Lamina — the gate math of the recurrent cells, as plugin kernels (see recurrent-kernels.h).
 *
 * The formulas are PyTorch's (torch.nn.RNN with tanh, LSTM, GRU), with a_* the pre-activations
 * proj + step of a gate:
 *   rnn   h = tanh(a)
 *   lstm  i, f, o = sigmoid(a_i, a_f, a_o), g = tanh(a_g), c = f c' + i g, h = o tanh(c)
 *   gru   r, z = sigmoid(a_r, a_z), n = tanh(proj_n + r hn) with hn = (W_hn h' + b_hn),
 *         h = (1 - z) n + z h'
 * where h', c' are the previous step's states (zero before the first step).
 */
#include "recurrent-kernels.h"

#include <math.h>

#include <lamina/lamina.h>

/* Where index i of a launch reads and writes; see the layouts in recurrent-kernels.h. */
typedef struct {
    gsize n, j, hidden;
    gsize t, steps;
    gsize cur, prev;  /* (t, n, j) and (t-1, n, j) in a time-major [T, N, H] tensor */
    gsize proj;       /* (n, t, 0) in proj [N, T, G*H] */
    gsize step;       /* (n, 0) in step [N, G*H] */
    gsize seq;        /* (n, t, j) in out/dy when return_sequences, else (n, j) */
    gboolean has_out; /* whether out/dy has an element for this step */
} Site;

static inline Site site(gsize i, const float *s, gsize gates)
{
    Site x;
    gsize batch = (gsize) s[RNN_SCALAR_BATCH];
    x.hidden = (gsize) s[RNN_SCALAR_HIDDEN];
    x.steps = (gsize) s[RNN_SCALAR_STEPS];
    x.t = (gsize) s[RNN_SCALAR_T];
    x.n = i / x.hidden;
    x.j = i % x.hidden;
    x.cur = (x.t * batch + x.n) * x.hidden + x.j;
    x.prev = x.t > 0 ? x.cur - batch * x.hidden : 0;
    x.proj = (x.n * x.steps + x.t) * gates * x.hidden;
    x.step = x.n * gates * x.hidden;
    if (s[RNN_SCALAR_SEQUENCES] != 0.0f) {
        x.seq = (x.n * x.steps + x.t) * x.hidden + x.j;
        x.has_out = TRUE;
    } else {
        x.seq = x.n * x.hidden + x.j;
        x.has_out = x.t + 1 == x.steps;
    }
    return x;
}

static inline float sigmoid(float a)
{
    return 1.0f / (1.0f + expf(-a));
}

/*
 * tanh through expf.  glibc's tanhf goes through expm1f, which took a third of an LSTM's
 * training time on its own; expf has a fast FMA path.  (1 - e) / (1 + e) with e = exp(-2|x|)
 * loses relative accuracy as x -> 0 (1 - e cancels), so below |x| = 1/4 the Taylor series to
 * x^11 is used instead (truncation < 1e-10 relative there).  Both branches stay within a few
 * float32 ulps of tanh; above |x| = 9, tanh rounds to +-1 in float32.
 */
static inline float tanh_fast(float x)
{
    float a = fabsf(x);
    if (a < 0.25f) {
        float x2 = x * x;
        float p = 1382.0f / 155925.0f;
        p = p * x2 - 62.0f / 2835.0f;
        p = p * x2 + 17.0f / 315.0f;
        p = p * x2 - 2.0f / 15.0f;
        p = p * x2 + 1.0f / 3.0f;
        return x - x * x2 * p;
    }
    if (a > 9.0f)
        return copysignf(1.0f, x);
    float e = expf(-2.0f * a);
    return copysignf((1.0f - e) / (1.0f + e), x);
}

/* ---- rnn (tanh) ---- */

static void rnn_forward(gsize begin, gsize end, void *const *b, const float *s)
{
    const float *proj = b[0], *step = b[1];
    float *hs = b[2], *out = b[3];
    for (gsize i = begin; i < end; i++) {
        Site x = site(i, s, 1);
        float h = tanh_fast(proj[x.proj + x.j] + step[x.step + x.j]);
        hs[x.cur] = h;
        if (x.has_out)
            out[x.seq] = h;
    }
}

static void rnn_backward(gsize begin, gsize end, void *const *b, const float *s)
{
    const float *dy = b[0], *dh = b[1], *hs = b[2];
    float *proj = b[3], *step = b[4];
    for (gsize i = begin; i < end; i++) {
        Site x = site(i, s, 1);
        float g = dh[i] + (x.has_out ? dy[x.seq] : 0.0f);
        float h = hs[x.cur];
        float da = g * (1.0f - h * h);
        proj[x.proj + x.j] = da;
        step[x.step + x.j] = da;
    }
}

/* ---- lstm ---- */

static void lstm_forward(gsize begin, gsize end, void *const *b, const float *s)
{
    const float *proj = b[0], *step = b[1];
    float *gates = b[2], *cs = b[3], *hs = b[4], *out = b[5];
    for (gsize i = begin; i < end; i++) {
        Site x = site(i, s, 4);
        const gsize H = x.hidden;
        const float *p = proj + x.proj + x.j, *q = step + x.step + x.j;
        float ig = sigmoid(p[0] + q[0]);
        float fg = sigmoid(p[H] + q[H]);
        float gg = tanh_fast(p[2 * H] + q[2 * H]);
        float og = sigmoid(p[3 * H] + q[3 * H]);
        float c_prev = x.t > 0 ? cs[x.prev] : 0.0f;
        float c = fg * c_prev + ig * gg;
        float h = og * tanh_fast(c);
        float *w = gates + (x.cur - x.j) * 4 + x.j; /* (t, n, j) of [T, N, 4H] */
        w[0] = ig;
        w[H] = fg;
        w[2 * H] = gg;
        w[3 * H] = og;
        cs[x.cur] = c;
        hs[x.cur] = h;
        if (x.has_out)
            out[x.seq] = h;
    }
}

static void lstm_backward(gsize begin, gsize end, void *const *b, const float *s)
{
    const float *dy = b[0], *dh = b[1];
    float *dc = b[2];
    const float *gates = b[3], *cs = b[4];
    float *proj = b[5], *step = b[6];
    for (gsize i = begin; i < end; i++) {
        Site x = site(i, s, 4);
        const gsize H = x.hidden;
        const float *w = gates + (x.cur - x.j) * 4 + x.j;
        float ig = w[0], fg = w[H], gg = w[2 * H], og = w[3 * H];
        float tc = tanh_fast(cs[x.cur]);
        float c_prev = x.t > 0 ? cs[x.prev] : 0.0f;
        float g = dh[i] + (x.has_out ? dy[x.seq] : 0.0f);
        /* dL/dc_t: through h_t = o tanh(c_t) and through c_{t+1} = f_{t+1} c_t + ... */
        float gc = dc[i] + g * og * (1.0f - tc * tc);
        float da[4] = {
            gc * gg * ig * (1.0f - ig),
            gc * c_prev * fg * (1.0f - fg),
            gc * ig * (1.0f - gg * gg),
            g * tc * og * (1.0f - og),
        };
        dc[i] = gc * fg;
        float *p = proj + x.proj + x.j, *q = step + x.step + x.j;
        for (int k = 0; k < 4; k++) {
            p[k * H] = da[k];
            q[k * H] = da[k];
        }
    }
}

/* ---- gru ---- */

static void gru_forward(gsize begin, gsize end, void *const *b, const float *s)
{
    const float *proj = b[0], *step = b[1];
    float *gates = b[2], *hs = b[3], *out = b[4];
    for (gsize i = begin; i < end; i++) {
        Site x = site(i, s, 3);
        const gsize H = x.hidden;
        const float *p = proj + x.proj + x.j, *q = step + x.step + x.j;
        float r = sigmoid(p[0] + q[0]);
        float z = sigmoid(p[H] + q[H]);
        float hn = q[2 * H];
        float n = tanh_fast(p[2 * H] + r * hn);
        float h_prev = x.t > 0 ? hs[x.prev] : 0.0f;
        float h = (1.0f - z) * n + z * h_prev;
        float *w = gates + (x.cur - x.j) * 4 + x.j;
        w[0] = r;
        w[H] = z;
        w[2 * H] = n;
        w[3 * H] = hn;
        hs[x.cur] = h;
        if (x.has_out)
            out[x.seq] = h;
    }
}

static void gru_backward(gsize begin, gsize end, void *const *b, const float *s)
{
    const float *dy = b[0];
    float *dh = b[1];
    const float *gates = b[2], *hs = b[3];
    float *proj = b[4], *step = b[5];
    for (gsize i = begin; i < end; i++) {
        Site x = site(i, s, 3);
        const gsize H = x.hidden;
        const float *w = gates + (x.cur - x.j) * 4 + x.j;
        float r = w[0], z = w[H], n = w[2 * H], hn = w[3 * H];
        float h_prev = x.t > 0 ? hs[x.prev] : 0.0f;
        float g = dh[i] + (x.has_out ? dy[x.seq] : 0.0f);
        float da_n = g * (1.0f - z) * (1.0f - n * n);
        float da_z = g * (h_prev - n) * z * (1.0f - z);
        float da_r = da_n * hn * r * (1.0f - r);
        float *p = proj + x.proj + x.j, *q = step + x.step + x.j;
        p[0] = da_r;
        p[H] = da_z;
        p[2 * H] = da_n;
        /* The recurrent side sees n's pre-activation through r * (W_hn h + b_hn). */
        q[0] = da_r;
        q[H] = da_z;
        q[2 * H] = da_n * r;
        /* h_{t-1}'s direct path through z h'; recurrent.c adds step W_hh to it. */
        dh[i] = g * z;
    }
}

/* ---- descriptors ---- */

#define R LMN_KERNEL_READ
#define W LMN_KERNEL_WRITE
#define RW LMN_KERNEL_READ_WRITE

static const guint8 rnn_forward_access[] = {R, R, RW, W};
static const guint8 rnn_backward_access[] = {R, R, R, W, W};
static const guint8 lstm_forward_access[] = {R, R, W, RW, W, W};
static const guint8 lstm_backward_access[] = {R, R, RW, R, R, W, W};
static const guint8 gru_forward_access[] = {R, R, W, RW, W};
static const guint8 gru_backward_access[] = {R, RW, R, R, W, W};

#ifdef LMN_HAVE_SPIRV
/*
 * The GPU variants (shaders/layers/<cell>-<direction>.comp, built when glslangValidator and spirv-val
 * are found): the same float operations in the same order, so the Vulkan backend runs a step on
 * the device instead of reading the tensors back for the CPU functions above.  Every buffer a
 * launch binds is a whole tensor (see recurrent.c), so the backend can bind it exactly.
 */
#include <stdint.h> /* the generated headers use uint32_t */

#include "gru-backward-spv.h"
#include "gru-forward-spv.h"
#include "lstm-backward-spv.h"
#include "lstm-forward-spv.h"
#include "rnn-backward-spv.h"
#include "rnn-forward-spv.h"

#define SPIRV(words)                                                                               \
    (&(const LmnKernelSpirv){                                                                      \
        .struct_size = sizeof(LmnKernelSpirv),                                                     \
        .code = words,                                                                             \
        .code_size = sizeof words,                                                                 \
        .entry_point = "main",                                                                     \
    })
#else
#define SPIRV(words) NULL
#endif

#define KERNEL(kname, func, modes, spv)                                                            \
    {                                                                                              \
        .struct_size = sizeof(LmnKernelDesc), .name = kname, .cpu = func,                          \
        .n_buffers = G_N_ELEMENTS(modes), .access = modes, .n_scalars = RNN_N_SCALARS,             \
        .spirv = SPIRV(spv),                                                                       \
    }

const LmnKernelDesc recurrent_rnn_forward_kernel =
    KERNEL("rnn.forward", rnn_forward, rnn_forward_access, rnn_forward_spv);
const LmnKernelDesc recurrent_rnn_backward_kernel =
    KERNEL("rnn.backward", rnn_backward, rnn_backward_access, rnn_backward_spv);
const LmnKernelDesc recurrent_lstm_forward_kernel =
    KERNEL("lstm.forward", lstm_forward, lstm_forward_access, lstm_forward_spv);
const LmnKernelDesc recurrent_lstm_backward_kernel =
    KERNEL("lstm.backward", lstm_backward, lstm_backward_access, lstm_backward_spv);
const LmnKernelDesc recurrent_gru_forward_kernel =
    KERNEL("gru.forward", gru_forward, gru_forward_access, gru_forward_spv);
const LmnKernelDesc recurrent_gru_backward_kernel =
    KERNEL("gru.backward", gru_backward, gru_backward_access, gru_backward_spv);
