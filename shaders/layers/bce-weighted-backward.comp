#version 450
// binary_cross_entropy_with_logits.pos_weight_grads (plugins/layers/mask-losses.c
// bcew_backward_cpu): dx = ((1 - t) + (1 + (w_c - 1) t)(sigmoid(x) - 1)) / n and
// dt = (-x + (w_c - 1) softplus(-x)) / n.
#extension GL_GOOGLE_include_directive : require
#include "mask-loss-common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer T { float t[]; };
layout(std430, set = 0, binding = 2) readonly buffer W { float w[]; };
layout(std430, set = 0, binding = 3) writeonly buffer DX { float dx[]; };
layout(std430, set = 0, binding = 4) writeonly buffer DT { float dt[]; };

void main()
{
    uint i;
    if (!index_of(i))
        return;
    uint c = (i / uint(p.s[1])) % uint(p.s[0]);
    float xi = x[i], ti = t[i], scale = p.s[2];
    precise float lw = 1.0 + (w[c] - 1.0) * ti;
    precise float gx = (1.0 - ti) + lw * (sigmoid_stable(xi) - 1.0);
    precise float gt = -xi + (w[c] - 1.0) * softplus_neg(xi);
    dx[i] = gx * scale;
    dt[i] = gt * scale;
}
