#version 450
// gru.forward (recurrent-kernels.c gru_forward): gates r, z, n of step t, then h; saves
// W_hn h' + b_hn as a fourth gate value for backward.
#extension GL_GOOGLE_include_directive : require
#include "recurrent-common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer Proj { float proj[]; };
layout(std430, set = 0, binding = 1) readonly buffer Step { float step[]; };
layout(std430, set = 0, binding = 2) writeonly buffer Gates { float gates[]; };
layout(std430, set = 0, binding = 3) buffer Hs { float hs[]; };
layout(std430, set = 0, binding = 4) writeonly buffer Out { float outs[]; };

void main()
{
    uint i;
    if (!index_of(i))
        return;
    Site x = site(i, 3u);
    uint H = x.hidden, pi = x.proj + x.j, qi = x.step + x.j;
    precise float ar = proj[pi] + step[qi];
    precise float az = proj[pi + H] + step[qi + H];
    float r = sigmoid(ar);
    float z = sigmoid(az);
    float hn = step[qi + 2u * H];
    precise float an = proj[pi + 2u * H] + r * hn;
    float n = tanh_fast(an);
    float h_prev = x.t > 0u ? hs[x.prev] : 0.0;
    precise float h = (1.0 - z) * n + z * h_prev;
    uint w = (x.cur - x.j) * 4u + x.j;
    gates[w] = r;
    gates[w + H] = z;
    gates[w + 2u * H] = n;
    gates[w + 3u * H] = hn;
    hs[x.cur] = h;
    if (x.has_out)
        outs[x.seq] = h;
}
