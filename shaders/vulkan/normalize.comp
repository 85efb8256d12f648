#version 450
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

float tree(float v)
{
    uint t = gl_LocalInvocationID.x;
    sh[t] = v;
    barrier();
    for (uint w = gl_WorkGroupSize.x / 2u; w > 0u; w >>= 1) {
        if (t < w)
            sh[t] = sh[t] + sh[t + w];
        barrier();
    }
    float r = sh[0];
    barrier();
    return r;
}

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
        float m1 = tree(s1) / float(n), m2 = tree(s2) / float(n), rs = rstd[p.off_r + r];
        for (uint q = t; q < n; q += gl_WorkGroupSize.x)
            o[bo + q] = rs * (dy[bd + q] - m1 - x[bx + q] * m2);
        return;
    }
    float s = 0.0;
    for (uint q = t; q < n; q += gl_WorkGroupSize.x)
        s += x[bx + q];
    float m = tree(s) / float(n);
    float v = 0.0;
    for (uint q = t; q < n; q += gl_WorkGroupSize.x) {
        float d = x[bx + q] - m;
        v += d * d;
    }
    float rs = 1.0 / sqrt(tree(v) / float(n) + p.eps);
    if (t == 0u) {
        mean[p.off_m + r] = m;
        rstd[p.off_r + r] = rs;
    }
    for (uint q = t; q < n; q += gl_WorkGroupSize.x)
        o[bo + q] = (x[bx + q] - m) * rs;
}
