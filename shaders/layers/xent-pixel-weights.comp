#version 450
// softmax_cross_entropy.class_weights (plugins/layers/xent-pixel.c weights_cpu): writes up to 29
// class weights from the scalar block, w[s[0] + i] = s[1 + i]; the layer fills its weight tensor
// in chunks of 29 before each forward pass (weights have no other way onto a device).
layout(local_size_x_id = 0) in;

layout(push_constant) uniform P
{
    uint n;
    uint offset;
    float s[30];
} p;

layout(std430, set = 0, binding = 0) writeonly buffer W { float w[]; };

void main()
{
    uint i = p.offset + gl_GlobalInvocationID.x;
    if (gl_GlobalInvocationID.x >= p.n)
        return;
    w[uint(p.s[0]) + i] = p.s[1u + i];
}
