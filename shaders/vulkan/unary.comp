#version 450
#extension GL_GOOGLE_include_directive : require
// y = f(x) for every LmnUnaryOp; op codes match ops.h.  y may alias x (same index read first).
// Op 100 is clamp to [alpha, beta] (comparisons, so NaN propagates as in torch.clamp).
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P {
    uint n; uint off_x; uint off_y; uint op; float alpha; float beta;
} p;

#include "erf.glsl"
#include "transcendental.glsl"

float f(float v, uint op, float a)
{
    switch (op) {
    case 0: return v;
    case 1: return v <= 0.0 ? 0.0 : v; // NaN passes through, as in torch.relu
    case 2: return 1.0 / (1.0 + exp(-v));
    case 3: return lmn_tanh(v);
    case 4: return v > 0.0 ? v : a * v;
    case 5: return v > 0.0 ? v : a * (exp(v) - 1.0);
    case 6: { float bx = a * v; return bx > 20.0 ? v : lmn_log1p_exp(bx) / a; }
    case 7: return 0.5 * v * (1.0 + lmn_erf(v * 0.70710678118654752));
    case 8: return v > 0.0 ? 1.0 : (v < 0.0 ? -1.0 : v); // 0, -0 and NaN as they are
    case 9: return abs(v);
    case 10: return v * v;
    case 11: return sqrt(v);
    case 12: return 1.0 / sqrt(v);
    case 13: return 1.0 / v;
    case 14: return exp(v);
    case 15: return log(v);
    case 16: return v / (1.0 + exp(-v));
    case 17: { float sp = v > 20.0 ? v : lmn_log1p_exp(v); return v * lmn_tanh(sp); }
    }
    return v;
}

void main()
{
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.n; i += stride) {
        float v = x[p.off_x + i];
        y[p.off_y + i] = p.op == 100u ? (v < p.alpha ? p.alpha : (v > p.beta ? p.beta : v))
                                      : f(v, p.op, p.alpha);
    }
}
