// Shared by the six recurrent kernels (recurrent-*.comp): the push-constant block, the index
// decomposition and the activations of recurrent-kernels.c, written so that every float
// operation is the CPU kernel's, in its order.  `precise` stops the compiler from contracting a
// multiply and an add into one fused operation, which the CPU build never does; exp() is the one
// function whose rounding may differ from glibc's expf (a few ulps).

layout(local_size_x_id = 0) in;

// n, offset: this dispatch's index count and first index; s: the scalar block of
// recurrent-kernels.h (N, T, H, t, return_sequences), sizes as exact small floats.
layout(push_constant) uniform P
{
    uint n;
    uint offset;
    float s[5];
} p;

// Where index i reads and writes: recurrent-kernels.c's Site, with element indices as uint (a
// binding holds at most maxStorageBufferRange bytes, so every index fits).
struct Site {
    uint n, j, hidden, t, steps;
    uint cur, prev, proj, step, seq;
    bool has_out;
};

Site site(uint i, uint gates)
{
    Site x;
    uint batch = uint(p.s[0]);
    x.steps = uint(p.s[1]);
    x.hidden = uint(p.s[2]);
    x.t = uint(p.s[3]);
    x.n = i / x.hidden;
    x.j = i % x.hidden;
    x.cur = (x.t * batch + x.n) * x.hidden + x.j;
    x.prev = x.t > 0u ? x.cur - batch * x.hidden : 0u;
    x.proj = (x.n * x.steps + x.t) * gates * x.hidden;
    x.step = x.n * gates * x.hidden;
    if (p.s[4] != 0.0) {
        x.seq = (x.n * x.steps + x.t) * x.hidden + x.j;
        x.has_out = true;
    } else {
        x.seq = x.n * x.hidden + x.j;
        x.has_out = x.t + 1u == x.steps;
    }
    return x;
}

// The global index of this invocation, or false past the end of the dispatch.
bool index_of(out uint i)
{
    i = p.offset + gl_GlobalInvocationID.x;
    return gl_GlobalInvocationID.x < p.n;
}

float sigmoid(float a)
{
    precise float d = 1.0 + exp(-a);
    return 1.0 / d;
}

// recurrent-kernels.c's tanh_fast: the odd Taylor series to x^11 below |x| = 1/4, +-1 above 9,
// else (1 - e) / (1 + e) with e = exp(-2|x|).  The coefficients are the CPU's float quotients
// (1382/155925, 62/2835, 17/315, 2/15, 1/3) as exact float literals.
float tanh_fast(float x)
{
    float a = abs(x);
    if (a < 0.25) {
        precise float x2 = x * x;
        precise float q = 0.00886323582;
        q = q * x2 - 0.0218694881;
        q = q * x2 + 0.0539682545;
        q = q * x2 - 0.13333334;
        q = q * x2 + 0.333333343;
        precise float r = x - x * x2 * q;
        return r;
    }
    if (a > 9.0)
        return x < 0.0 ? -1.0 : 1.0;
    precise float e = exp(-2.0 * a);
    precise float r = (1.0 - e) / (1.0 + e);
    return x < 0.0 ? -r : r;
}
