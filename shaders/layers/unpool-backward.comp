#version 450
// max_unpool2d.backward (plugins/layers/unpool.c unpool_backward_cpu):
// dx[i] = dy[plane of i, argmax[i]], or 0 where argmax is -1 (a window with no maximum).
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P
{
    uint n;
    uint offset;
    float s[2]; // pixels per plane of dx (the pooled size) and of dy (the unpooled size)
} p;
layout(std430, set = 0, binding = 0) readonly buffer DY { float dy[]; };
layout(std430, set = 0, binding = 1) readonly buffer ARG { int arg[]; };
layout(std430, set = 0, binding = 2) writeonly buffer DX { float dx[]; };

void main()
{
    if (gl_GlobalInvocationID.x >= p.n)
        return;
    uint i = p.offset + gl_GlobalInvocationID.x;
    int a = arg[i];
    dx[i] = a >= 0 ? dy[i / uint(p.s[0]) * uint(p.s[1]) + uint(a)] : 0.0;
}
