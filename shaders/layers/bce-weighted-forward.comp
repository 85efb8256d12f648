#version 450
// binary_cross_entropy_with_logits.pos_weight_terms (plugins/layers/mask-losses.c
// bcew_forward_cpu): term = (1 - t) x + (1 + (w_c - 1) t) softplus(-x), one per element.
#extension GL_GOOGLE_include_directive : require
#include "mask-loss-common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer T { float t[]; };
layout(std430, set = 0, binding = 2) readonly buffer W { float w[]; };
layout(std430, set = 0, binding = 3) writeonly buffer O { float term[]; };

void main()
{
    uint i;
    if (!index_of(i))
        return;
    uint c = (i / uint(p.s[1])) % uint(p.s[0]);
    float xi = x[i], ti = t[i];
    precise float lw = 1.0 + (w[c] - 1.0) * ti;
    precise float v = (1.0 - ti) * xi + lw * softplus_neg(xi);
    term[i] = v;
}
