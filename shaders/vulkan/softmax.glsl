// One workgroup per row of [rows, k].  Mode 0: y = softmax(x) (stable).  Mode 1 (backward):
// dx = y (dy - sum(dy y)), with x = y and the dot product taken before dx (which may be dy) is
// written.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer DY { float dy[]; };
layout(std430, set = 0, binding = 2) buffer O { float o[]; };
layout(push_constant) uniform P { uint rows; uint k; uint off_x; uint off_dy; uint off_o; uint mode; } p;
shared float sh[1024];
#define LMN_TREE_SH
#include "tree.glsl"

void main()
{
    uint r = gl_WorkGroupID.x, t = gl_LocalInvocationID.x;
    uint bx = p.off_x + r * p.k, bd = p.off_dy + r * p.k, bo = p.off_o + r * p.k;
    if (p.mode == 1u) {
        float d = 0.0;
        for (uint q = t; q < p.k; q += gl_WorkGroupSize.x)
            d += dy[bd + q] * x[bx + q];
        d = lmn_tree_all(d, false);
        for (uint q = t; q < p.k; q += gl_WorkGroupSize.x)
            o[bo + q] = x[bx + q] * (dy[bd + q] - d);
        return;
    }
    float m = -1.0 / 0.0;
    for (uint q = t; q < p.k; q += gl_WorkGroupSize.x)
        m = max(m, x[bx + q]);
    m = lmn_tree_all(m, true);
    float s = 0.0;
    for (uint q = t; q < p.k; q += gl_WorkGroupSize.x) {
        float e = exp(x[bx + q] - m);
        s += e;
    }
    s = lmn_tree_all(s, false);
    float inv = 1.0 / s;
    // Recomputed rather than stored before the sum: o may alias x.
    for (uint q = t; q < p.k; q += gl_WorkGroupSize.x)
        o[bo + q] = exp(x[bx + q] - m) * inv;
}
