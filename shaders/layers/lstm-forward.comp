#version 450
// lstm.forward (recurrent-kernels.c lstm_forward): gates i, f, g, o of step t, then c and h.
#extension GL_GOOGLE_include_directive : require
#include "recurrent-common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer Proj { float proj[]; };
layout(std430, set = 0, binding = 1) readonly buffer Step { float step[]; };
layout(std430, set = 0, binding = 2) writeonly buffer Gates { float gates[]; };
layout(std430, set = 0, binding = 3) buffer Cs { float cs[]; };
layout(std430, set = 0, binding = 4) writeonly buffer Hs { float hs[]; };
layout(std430, set = 0, binding = 5) writeonly buffer Out { float outs[]; };

void main()
{
    uint i;
    if (!index_of(i))
        return;
    Site x = site(i, 4u);
    uint H = x.hidden, pi = x.proj + x.j, qi = x.step + x.j;
    precise float ai = proj[pi] + step[qi];
    precise float af = proj[pi + H] + step[qi + H];
    precise float ag = proj[pi + 2u * H] + step[qi + 2u * H];
    precise float ao = proj[pi + 3u * H] + step[qi + 3u * H];
    float ig = sigmoid(ai);
    float fg = sigmoid(af);
    float gg = tanh_fast(ag);
    float og = sigmoid(ao);
    float c_prev = x.t > 0u ? cs[x.prev] : 0.0;
    precise float c = fg * c_prev + ig * gg;
    precise float h = og * tanh_fast(c);
    uint w = (x.cur - x.j) * 4u + x.j; // (t, n, j) of [T, N, 4H]
    gates[w] = ig;
    gates[w + H] = fg;
    gates[w + 2u * H] = gg;
    gates[w + 3u * H] = og;
    cs[x.cur] = c;
    hs[x.cur] = h;
    if (x.has_out)
        outs[x.seq] = h;
}
