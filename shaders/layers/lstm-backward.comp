#version 450
// lstm.backward (recurrent-kernels.c lstm_backward): the gate pre-activation gradients of step
// t, and dc towards step t-1.
#extension GL_GOOGLE_include_directive : require
#include "recurrent-common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer Dy { float dy[]; };
layout(std430, set = 0, binding = 1) readonly buffer Dh { float dh[]; };
layout(std430, set = 0, binding = 2) buffer Dc { float dc[]; };
layout(std430, set = 0, binding = 3) readonly buffer Gates { float gates[]; };
layout(std430, set = 0, binding = 4) readonly buffer Cs { float cs[]; };
layout(std430, set = 0, binding = 5) writeonly buffer Proj { float proj[]; };
layout(std430, set = 0, binding = 6) writeonly buffer Step { float step[]; };

void main()
{
    uint i;
    if (!index_of(i))
        return;
    Site x = site(i, 4u);
    uint H = x.hidden;
    uint w = (x.cur - x.j) * 4u + x.j;
    float ig = gates[w], fg = gates[w + H], gg = gates[w + 2u * H], og = gates[w + 3u * H];
    float tc = tanh_fast(cs[x.cur]);
    float c_prev = x.t > 0u ? cs[x.prev] : 0.0;
    precise float g = dh[i] + (x.has_out ? dy[x.seq] : 0.0);
    // dL/dc_t: through h_t = o tanh(c_t) and through c_{t+1} = f_{t+1} c_t + ...
    precise float gc = dc[i] + g * og * (1.0 - tc * tc);
    precise float da[4];
    da[0] = gc * gg * ig * (1.0 - ig);
    da[1] = gc * c_prev * fg * (1.0 - fg);
    da[2] = gc * ig * (1.0 - gg * gg);
    da[3] = g * tc * og * (1.0 - og);
    precise float dcn = gc * fg;
    dc[i] = dcn;
    uint pi = x.proj + x.j, qi = x.step + x.j;
    for (uint k = 0u; k < 4u; k++) {
        proj[pi + k * H] = da[k];
        step[qi + k * H] = da[k];
    }
}
