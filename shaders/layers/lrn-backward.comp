#version 450
// local_response_norm.backward (plugins/layers/lrn.c lrn_backward_cpu):
// dx = dy * b^-beta - 2 alpha beta / size * x * (sum of dy * y / b over the windows holding x).
#extension GL_GOOGLE_include_directive : require
#include "lrn-common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer Y { float y[]; };
layout(std430, set = 0, binding = 2) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 3) readonly buffer DY { float dy[]; };
layout(std430, set = 0, binding = 4) writeonly buffer DX { float dx[]; };

void main()
{
    uint i;
    if (!index_of(i))
        return;
    uint c, base;
    site(i, c, base);
    uint channels = uint(p.s[0]), inner = uint(p.s[1]), size = uint(p.s[2]);
    precise float coef = 2.0 * p.s[3] * p.s[4] / p.s[2];
    uint lo = c >= (size - 1u) / 2u ? c - (size - 1u) / 2u : 0u;
    uint hi = min(c + size / 2u, channels - 1u);
    precise float sum = 0.0;
    for (uint j = lo; j <= hi; j++) {
        uint e = base + j * inner;
        sum += dy[e] * y[e] / b[e];
    }
    precise float e = -p.s[4] * log(b[i]);
    precise float v = dy[i] * exp(e) - coef * x[i] * sum;
    dx[i] = v;
}
