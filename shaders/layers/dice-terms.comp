#version 450
// dice.terms (plugins/layers/mask-losses.c dice_terms_cpu): p = sigmoid(x) and p t per element.
#extension GL_GOOGLE_include_directive : require
#include "mask-loss-common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer T { float t[]; };
layout(std430, set = 0, binding = 2) writeonly buffer Pr { float prob[]; };
layout(std430, set = 0, binding = 3) writeonly buffer PT { float pt[]; };

void main()
{
    uint i;
    if (!index_of(i))
        return;
    float q = sigmoid_stable(x[i]);
    prob[i] = q;
    pt[i] = q * t[i];
}
