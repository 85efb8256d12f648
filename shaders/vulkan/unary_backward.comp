#version 450
#extension GL_GOOGLE_include_directive : require
// dx = dy * f'(x) (or of the saved output y); op codes match ops.h.  dx may alias dy.
// Op 100 is the clamp gradient over [alpha, beta].
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer Y { float y[]; };
layout(std430, set = 0, binding = 2) readonly buffer DY { float dy[]; };
layout(std430, set = 0, binding = 3) buffer DX { float dx[]; };
layout(push_constant) uniform P {
    uint n; uint off_x; uint off_y; uint off_dy; uint off_dx; uint op; float alpha; float beta;
} p;

#include "unary_grad_f.glsl"

void main()
{
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.n; i += stride)
        dx[p.off_dx + i] =
            lmn_unary_grad_f(x[p.off_x + i], y[p.off_y + i], dy[p.off_dy + i], p.op, p.alpha, p.beta);
}
