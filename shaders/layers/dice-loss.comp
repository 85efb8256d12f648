#version 450
// dice.loss (plugins/layers/mask-losses.c dice_loss_cpu), one invocation:
// loss = 1 - (2 I + eps) / (S + eps) from the sums I = sum p t and S = sum p + sum t.
#extension GL_GOOGLE_include_directive : require
#include "mask-loss-common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer I { float inter[]; };
layout(std430, set = 0, binding = 1) readonly buffer S { float total[]; };
layout(std430, set = 0, binding = 2) writeonly buffer L { float loss[]; };

void main()
{
    uint i;
    if (!index_of(i))
        return;
    precise float num = 2.0 * inter[0] + p.s[0];
    precise float den = total[0] + p.s[0];
    loss[0] = 1.0 - num / den;
}
