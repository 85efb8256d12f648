#version 450
// dice.grads (plugins/layers/mask-losses.c dice_backward_cpu): with num = 2 I + eps and
// den = S + eps, dL/dp = (num - 2 t den) / den^2, dx = dL/dp p (1 - p), dt = (num - 2 p den) / den^2.
#extension GL_GOOGLE_include_directive : require
#include "mask-loss-common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer Pr { float prob[]; };
layout(std430, set = 0, binding = 1) readonly buffer T { float t[]; };
layout(std430, set = 0, binding = 2) readonly buffer I { float inter[]; };
layout(std430, set = 0, binding = 3) readonly buffer S { float total[]; };
layout(std430, set = 0, binding = 4) writeonly buffer DX { float dx[]; };
layout(std430, set = 0, binding = 5) writeonly buffer DT { float dt[]; };

void main()
{
    uint i;
    if (!index_of(i))
        return;
    precise float num = 2.0 * inter[0] + p.s[0];
    precise float den = total[0] + p.s[0];
    precise float den2 = den * den;
    float q = prob[i], ti = t[i];
    precise float gp = (num - 2.0 * ti * den) / den2;
    precise float gx = gp * q * (1.0 - q);
    precise float gt = (num - 2.0 * q * den) / den2;
    dx[i] = gx;
    dt[i] = gt;
}
