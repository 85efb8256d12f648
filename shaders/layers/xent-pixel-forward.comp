#version 450
// softmax_cross_entropy.pixel_forward (plugins/layers/xent-pixel.c pixel_forward_cpu): one
// invocation per pixel; the softmax over its C logits (stride P), its loss term and its weight.
#extension GL_GOOGLE_include_directive : require
#include "xent-pixel-common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer Z { float z[]; };
layout(std430, set = 0, binding = 1) readonly buffer L { uint lab[]; };
layout(std430, set = 0, binding = 2) readonly buffer W { float w[]; };
layout(std430, set = 0, binding = 3) writeonly buffer Pr { float prob[]; };
layout(std430, set = 0, binding = 4) writeonly buffer Lo { float loss[]; };
layout(std430, set = 0, binding = 5) writeonly buffer Wy { float wy[]; };

void main()
{
    uint i;
    if (!index_of(i))
        return;
    uint classes = uint(p.s[0]), pixels = uint(p.s[1]);
    uint base = (i / pixels) * classes * pixels + i % pixels;
    float m = z[base];
    for (uint c = 1u; c < classes; c++)
        m = max(m, z[base + c * pixels]);
    precise float sum = 0.0;
    for (uint c = 0u; c < classes; c++)
        sum += exp(z[base + c * pixels] - m);
    precise float lse = m + log(sum);
    for (uint c = 0u; c < classes; c++)
        prob[base + c * pixels] = exp(z[base + c * pixels] - m) / sum;
    int y = label_class(lab[i]);
    if (y < 0) {
        loss[i] = 0.0;
        wy[i] = 0.0;
        return;
    }
    precise float smoothed = 0.0;
    for (uint c = 0u; c < classes; c++)
        smoothed += w[c] * (lse - z[base + c * pixels]);
    float s = p.s[2];
    precise float term = (1.0 - s) * w[y] * (lse - z[base + uint(y) * pixels]);
    loss[i] = term + s / p.s[0] * smoothed;
    wy[i] = w[y];
}
