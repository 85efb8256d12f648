// One workgroup per row of [rows, cols].  Mode 0: y = (x - mean) rstd with rstd = 1 / sqrt(var
// + eps), var biased, saving mean and rstd (two passes: the mean, then the squared deviations).
// Mode 1 (backward): dx = rstd (dy - mean(dy) - y mean(dy y)), x holding y.  o may alias x or
// dy: every sum is taken before o is written.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer DY { float dy[]; };
layout(std430, set = 0, binding = 2) buffer O { float o[]; };
layout(std430, set = 0, binding = 3) buffer M { float mean[]; };
layout(std430, set = 0, binding = 4) buffer R { float rstd[]; };
layout(push_constant) uniform P {
    uint rows; uint cols; uint off_x; uint off_dy; uint off_o; uint off_m; uint off_r; uint mode;
    float eps;
} p;
shared float sh[1024];
#define LMN_TREE_SH
#include "tree.glsl"


void main()
{
    uint r = gl_WorkGroupID.x, t = gl_LocalInvocationID.x, n = p.cols;
    uint bx = p.off_x + r * n, bd = p.off_dy + r * n, bo = p.off_o + r * n;
    if (p.mode == 1u) {
        float s1 = 0.0, s2 = 0.0;
        for (uint q = t; q < n; q += gl_WorkGroupSize.x) {
            s1 += dy[bd + q];
            s2 += dy[bd + q] * x[bx + q];
        }
        float m1 = lmn_tree_all(s1, false) / float(n);
        float m2 = lmn_tree_all(s2, false) / float(n);
        float rs = rstd[p.off_r + r];
        for (uint q = t; q < n; q += gl_WorkGroupSize.x)
            o[bo + q] = rs * (dy[bd + q] - m1 - x[bx + q] * m2);
        return;
    }
    float s = 0.0;
    for (uint q = t; q < n; q += gl_WorkGroupSize.x)
        s += x[bx + q];
    float m = lmn_tree_all(s, false) / float(n);
    float v = 0.0;
    for (uint q = t; q < n; q += gl_WorkGroupSize.x) {
        float d = x[bx + q] - m;
        v += d * d;
    }
    float rs = 1.0 / sqrt(lmn_tree_all(v, false) / float(n) + p.eps);
    if (t == 0u) {
        mean[p.off_m + r] = m;
        rstd[p.off_r + r] = rs;
    }
    for (uint q = t; q < n; q += gl_WorkGroupSize.x)
        o[bo + q] = (x[bx + q] - m) * rs;
}
