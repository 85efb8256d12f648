#version 450
// softmax_cross_entropy.pixel_backward (plugins/layers/xent-pixel.c pixel_backward_cpu): one
// invocation per logit; d(loss)/dz = ((1 - s) w_y (p_c - [c = y]) + s / C (W p_c - w_c)) / D.
#extension GL_GOOGLE_include_directive : require
#include "xent-pixel-common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer Pr { float prob[]; };
layout(std430, set = 0, binding = 1) readonly buffer L { uint lab[]; };
layout(std430, set = 0, binding = 2) readonly buffer W { float w[]; };
layout(std430, set = 0, binding = 3) readonly buffer D { float denom[]; };
layout(std430, set = 0, binding = 4) writeonly buffer G { float dz[]; };

void main()
{
    uint e;
    if (!index_of(e))
        return;
    uint classes = uint(p.s[0]), pixels = uint(p.s[1]);
    uint c = (e / pixels) % classes;
    uint i = (e / (classes * pixels)) * pixels + e % pixels;
    int y = label_class(lab[i]);
    float d = denom[0];
    if (y < 0 || d == 0.0) {
        dz[e] = 0.0;
        return;
    }
    float s = p.s[2], pc = prob[e];
    precise float hard = (1.0 - s) * w[y] * (pc - (uint(y) == c ? 1.0 : 0.0));
    precise float soft = s / p.s[0] * (p.s[4] * pc - w[c]);
    dz[e] = (hard + soft) / d;
}
