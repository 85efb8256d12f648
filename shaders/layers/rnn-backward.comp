#version 450
// rnn.backward (recurrent-kernels.c rnn_backward): the gradient of step t's pre-activation.
#extension GL_GOOGLE_include_directive : require
#include "recurrent-common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer Dy { float dy[]; };
layout(std430, set = 0, binding = 1) readonly buffer Dh { float dh[]; };
layout(std430, set = 0, binding = 2) readonly buffer Hs { float hs[]; };
layout(std430, set = 0, binding = 3) writeonly buffer Proj { float proj[]; };
layout(std430, set = 0, binding = 4) writeonly buffer Step { float step[]; };

void main()
{
    uint i;
    if (!index_of(i))
        return;
    Site x = site(i, 1u);
    precise float g = dh[i] + (x.has_out ? dy[x.seq] : 0.0);
    float h = hs[x.cur];
    precise float da = g * (1.0 - h * h);
    proj[x.proj + x.j] = da;
    step[x.step + x.j] = da;
}
