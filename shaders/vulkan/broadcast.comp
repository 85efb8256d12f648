#version 450
// Broadcasting binary ops over a box of up to 5 dims (d, row-major; the output contiguous, a and
// b indexed through strides sa, sb that are 0 along their broadcast dims).  Op codes match
// LmnBinaryOp.  Mode 0: o = a OP b, one invocation per output element.  Mode 1 (2): the
// gradient of a (b), one invocation per element of the gradient operand (contiguous over its
// non-broadcast dims), summing its terms over the broadcast dims in row-major order (float);
// with acc set it adds to what the gradient holds (a box split along a broadcast dim).
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 2) readonly buffer DY { float dy[]; };
layout(std430, set = 0, binding = 3) buffer O { float o[]; };
layout(push_constant) uniform P {
    uint n; uint off_a; uint off_b; uint off_dy; uint off_o; uint op; uint mode; uint acc;
    uint nd; uint d[5]; uint sa[5]; uint sb[5];
} p;

float apply(float x, float y)
{
    switch (p.op) {
    case 0u: return x + y;
    case 1u: return x - y;
    case 2u: return x * y;
    case 3u: return x / y;
    case 4u: return x > y || isnan(x) ? x : y; // NaN propagates, as torch.maximum
    case 5u: return x < y || isnan(x) ? x : y;
    }
    return x;
}

// The gradient term of out = x OP y for x (grad_b false) or y, as the CPU backend's.
float term(bool grad_b, float d, float x, float y)
{
    switch (p.op) {
    case 0u: return d;
    case 1u: return grad_b ? -d : d;
    case 2u: return d * (grad_b ? x : y);
    case 3u: return grad_b ? -d * x / (y * y) : d / y;
    }
    // maximum / minimum: the loser gets 0, a tie halves it, NaN passes it to both (PyTorch).
    bool x_wins = p.op == 4u ? x > y : x < y;
    bool y_wins = p.op == 4u ? y > x : y < x;
    if (x == y)
        return 0.5 * d;
    return (grad_b ? x_wins : y_wins) ? 0.0 : d;
}

void forward_one(uint t)
{
    uint rem = t, ia = 0u, ib = 0u;
    for (int k = int(p.nd) - 1; k >= 0; k--) {
        uint c = rem % p.d[k];
        rem /= p.d[k];
        ia += c * p.sa[k];
        ib += c * p.sb[k];
    }
    o[p.off_o + t] = apply(a[p.off_a + ia], b[p.off_b + ib]);
}

void backward_one(uint t)
{
    bool grad_b = p.mode == 2u;
    uint so[5];
    uint s = 1u, nb = 1u;
    for (int k = int(p.nd) - 1; k >= 0; k--) {
        so[k] = s;
        s *= p.d[k];
        if ((grad_b ? p.sb[k] : p.sa[k]) == 0u)
            nb *= p.d[k];
    }
    uint rem = t, oo = 0u, ia = 0u, ib = 0u;
    for (int k = int(p.nd) - 1; k >= 0; k--) {
        if ((grad_b ? p.sb[k] : p.sa[k]) == 0u)
            continue;
        uint c = rem % p.d[k];
        rem /= p.d[k];
        oo += c * so[k];
        ia += c * p.sa[k];
        ib += c * p.sb[k];
    }
    bool reads = p.op >= 2u;
    float sum = 0.0;
    for (uint j = 0u; j < nb; j++) {
        uint r = j, jo = oo, ja = ia, jb = ib;
        for (int k = int(p.nd) - 1; k >= 0; k--) {
            if ((grad_b ? p.sb[k] : p.sa[k]) != 0u)
                continue;
            uint c = r % p.d[k];
            r /= p.d[k];
            jo += c * so[k];
            ja += c * p.sa[k];
            jb += c * p.sb[k];
        }
        float x = reads ? a[p.off_a + ja] : 0.0;
        float y = reads ? b[p.off_b + jb] : 0.0;
        sum += term(grad_b, dy[p.off_dy + jo], x, y);
    }
    o[p.off_o + t] = p.acc != 0u ? o[p.off_o + t] + sum : sum;
}

void main()
{
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint t = gl_GlobalInvocationID.x; t < p.n; t += stride) {
        if (p.mode == 0u)
            forward_one(t);
        else
            backward_one(t);
    }
}
