#version 450
// prelu.backward_input (prelu.c) on the Vulkan backend: dx = dy for x > 0, else weight[c] * dy
// (PyTorch's choice at x == 0).  Scalars: channels, inner, as in prelu-forward.comp.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer W { float weight[]; };
layout(std430, set = 0, binding = 2) readonly buffer DY { float dy[]; };
layout(std430, set = 0, binding = 3) writeonly buffer DX { float dx[]; };
layout(push_constant) uniform P { uint n; uint offset; float s[2]; } p;
void main()
{
    if (gl_GlobalInvocationID.x >= p.n)
        return;
    uint i = p.offset + gl_GlobalInvocationID.x;
    uint c = (i / uint(p.s[1])) % uint(p.s[0]);
    float g = dy[i];
    dx[i] = x[i] > 0.0 ? g : weight[c] * g;
}
