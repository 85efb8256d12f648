#version 450
#extension GL_GOOGLE_include_directive : require
// dx = dy * f'(x) (or of the saved output y); op codes match ops.h.  dx may alias dy.
// Op 100 is the clamp gradient over [alpha, beta].
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer Y { float y[]; };
layout(std430, set = 0, binding = 2) readonly buffer DY { float dy[]; };
layout(std430, set = 0, binding = 3) buffer DX { float dx[]; };
layout(push_constant) uniform P {
    uint n; uint off_x; uint off_y; uint off_dy; uint off_dx; uint op; float alpha; float beta;
} p;

#include "erf.glsl"
#include "transcendental.glsl"

float g(float xv, float yv, float d, uint op, float a)
{
    switch (op) {
    case 0: return d;
    case 1: return xv <= 0.0 ? 0.0 : d; // at NaN: d, as torch's threshold_backward
    case 2: return d * yv * (1.0 - yv);
    case 3: return d * (1.0 - yv * yv);
    case 4: return xv > 0.0 ? d : a * d;
    case 5: return xv <= 0.0 ? d * a * exp(xv) : d; // at NaN: d, as in torch
    case 6: { float bx = a * xv; float z = exp(bx); return bx > 20.0 ? d : d * z / (z + 1.0); }
    case 7: {
        float cdf = 0.5 * (1.0 + lmn_erf(xv * 0.70710678118654752));
        float pdf = 0.3989422804014327 * exp(-0.5 * xv * xv);
        return d * (cdf + xv * pdf);
    }
    case 8: return 0.0;
    case 9: return xv > 0.0 ? d : (xv < 0.0 ? -d : 0.0);
    case 10: return 2.0 * xv * d;
    case 11: return d * 0.5 / yv;
    case 12: return -0.5 * d * yv * yv * yv;
    case 13: return -d * yv * yv;
    case 14: return d * yv;
    case 15: return d / xv;
    case 16: { float s = 1.0 / (1.0 + exp(-xv)); return d * s * (1.0 + xv * (1.0 - s)); }
    case 17: {
        float sp = xv > 20.0 ? xv : lmn_log1p_exp(xv);
        float t = lmn_tanh(sp), s = 1.0 / (1.0 + exp(-xv));
        return d * (t + xv * s * (1.0 - t * t));
    }
    // 100: the gradient of clamp to [alpha, beta] (hardtanh): d strictly inside, else 0.
    case 100: return xv > a && xv < p.beta ? d : 0.0;
    }
    return d;
}

void main()
{
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.n; i += stride)
        dx[p.off_dx + i] = g(x[p.off_x + i], y[p.off_y + i], dy[p.off_dy + i], p.op, p.alpha);
}
