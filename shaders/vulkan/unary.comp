#version 450
#extension GL_GOOGLE_include_directive : require
// y = f(x) for every LmnUnaryOp; op codes match ops.h.  y may alias x (same index read first).
// Op 100 is clamp to [alpha, beta] (comparisons, so NaN propagates as in torch.clamp).
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P {
    uint n; uint off_x; uint off_y; uint op; float alpha; float beta;
} p;

#include "unary_f.glsl"

void main()
{
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.n; i += stride) {
        float v = x[p.off_x + i];
        y[p.off_y + i] = p.op == 100u ? (v < p.alpha ? p.alpha : (v > p.beta ? p.beta : v))
                                      : lmn_unary_f(v, p.op, p.alpha);
    }
}
