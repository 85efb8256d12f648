#version 450
// rnn.forward (recurrent-kernels.c rnn_forward): h = tanh(proj + step) for step t.
#extension GL_GOOGLE_include_directive : require
#include "recurrent-common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer Proj { float proj[]; };
layout(std430, set = 0, binding = 1) readonly buffer Step { float step[]; };
layout(std430, set = 0, binding = 2) buffer Hs { float hs[]; };
layout(std430, set = 0, binding = 3) writeonly buffer Out { float outs[]; };

void main()
{
    uint i;
    if (!index_of(i))
        return;
    Site x = site(i, 1u);
    precise float a = proj[x.proj + x.j] + step[x.step + x.j];
    float h = tanh_fast(a);
    hs[x.cur] = h;
    if (x.has_out)
        outs[x.seq] = h;
}
