#version 450
// gru.backward (recurrent-kernels.c gru_backward): the gate pre-activation gradients of step t
// (input side in proj, recurrent side in step) and h_{t-1}'s direct path z * dh in dh.
#extension GL_GOOGLE_include_directive : require
#include "recurrent-common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer Dy { float dy[]; };
layout(std430, set = 0, binding = 1) buffer Dh { float dh[]; };
layout(std430, set = 0, binding = 2) readonly buffer Gates { float gates[]; };
layout(std430, set = 0, binding = 3) readonly buffer Hs { float hs[]; };
layout(std430, set = 0, binding = 4) writeonly buffer Proj { float proj[]; };
layout(std430, set = 0, binding = 5) writeonly buffer Step { float step[]; };

void main()
{
    uint i;
    if (!index_of(i))
        return;
    Site x = site(i, 3u);
    uint H = x.hidden;
    uint w = (x.cur - x.j) * 4u + x.j;
    float r = gates[w], z = gates[w + H], n = gates[w + 2u * H], hn = gates[w + 3u * H];
    float h_prev = x.t > 0u ? hs[x.prev] : 0.0;
    precise float g = dh[i] + (x.has_out ? dy[x.seq] : 0.0);
    precise float da_n = g * (1.0 - z) * (1.0 - n * n);
    precise float da_z = g * (h_prev - n) * z * (1.0 - z);
    precise float da_r = da_n * hn * r * (1.0 - r);
    uint pi = x.proj + x.j, qi = x.step + x.j;
    proj[pi] = da_r;
    proj[pi + H] = da_z;
    proj[pi + 2u * H] = da_n;
    // The recurrent side sees n's pre-activation through r * (W_hn h + b_hn).
    step[qi] = da_r;
    step[qi + H] = da_z;
    precise float dn_step = da_n * r;
    step[qi + 2u * H] = dn_step;
    precise float dh_direct = g * z;
    dh[i] = dh_direct;
}
