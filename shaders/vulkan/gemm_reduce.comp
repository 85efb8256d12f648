#version 450
#extension GL_GOOGLE_include_directive : require
// Split-K reduction: C = alpha * sum_s partial[s] + beta * C over an m x n matrix (leading
// dimension ldc), the partial products of `splits` K slices stored one m x n block after another.
// The slices are summed in index order by one invocation per element, so the result is
// deterministic: it depends on the split count (a function of the shape and device) only.
layout(local_size_x_id = 0) in;
// The GEMM's epilogue, as in gemm_tiled.comp: + bias[off_bias + column], then activation EPI_ACT.
layout(constant_id = 1) const uint EPI_BIAS = 0;
layout(constant_id = 2) const uint EPI_ACT = 0;
layout(constant_id = 3) const uint EPI_SEPARATE = 0; // f(C) into act_out, C keeping the value
// t * f'(x) of LmnUnaryOp EPI_GRAD, its input or output read through Bias laid out as C.
layout(constant_id = 4) const uint EPI_GRAD = 0;
layout(std430, set = 0, binding = 0) readonly buffer Partial { float part[]; };
layout(std430, set = 0, binding = 1) buffer C { float c[]; };
layout(std430, set = 0, binding = 2) readonly buffer Bias { float bias[]; };
layout(std430, set = 0, binding = 3) writeonly buffer Act { float act_out[]; };
layout(push_constant) uniform P {
    uint m; uint n; uint splits; uint ldc; uint off_c; float alpha; float beta;
    uint off_bias; float act_alpha; uint off_act;
} p;

#include "unary_f.glsl"
#include "unary_grad_f.glsl"

void main()
{
    uint mn = p.m * p.n;
    uint step = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < mn; i += step) {
        float s = 0.0;
        for (uint q = 0u; q < p.splits; q++)
            s += part[q * mn + i];
        uint ci = p.off_c + (i / p.n) * p.ldc + i % p.n;
        float v = p.alpha * s;
        if (p.beta != 0.0)
            v += p.beta * c[ci];
        if (EPI_BIAS != 0u)
            v += bias[p.off_bias + i % p.n];
        if (EPI_GRAD != 0u) {
            float xy = bias[p.off_bias + (i / p.n) * p.ldc + i % p.n];
            v = lmn_unary_grad_f(xy, xy, v, EPI_GRAD, p.act_alpha, 0.0);
        }
        if (EPI_ACT != 0u && EPI_SEPARATE != 0u)
            act_out[p.off_act + (i / p.n) * p.ldc + i % p.n] = lmn_unary_f(v, EPI_ACT, p.act_alpha);
        else if (EPI_ACT != 0u)
            v = lmn_unary_f(v, EPI_ACT, p.act_alpha);
        c[ci] = v;
    }
}
