#version 450
// local_response_norm.forward (plugins/layers/lrn.c lrn_forward_cpu):
// b = k + alpha / size * (sum of the window's squares), y = x * exp(-beta * log(b)).
#extension GL_GOOGLE_include_directive : require
#include "lrn-common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Y { float y[]; };
layout(std430, set = 0, binding = 2) writeonly buffer B { float b[]; };

void main()
{
    uint i;
    if (!index_of(i))
        return;
    uint c, base;
    site(i, c, base);
    uint channels = uint(p.s[0]), inner = uint(p.s[1]), size = uint(p.s[2]);
    uint lo = c >= size / 2u ? c - size / 2u : 0u;
    uint hi = min(c + (size - 1u) / 2u, channels - 1u);
    precise float sum = 0.0;
    for (uint j = lo; j <= hi; j++) {
        float v = x[base + j * inner];
        sum += v * v;
    }
    precise float scale = p.s[5] + p.s[3] / p.s[2] * sum;
    b[i] = scale;
    precise float e = -p.s[4] * log(scale);
    y[i] = x[i] * exp(e);
}
