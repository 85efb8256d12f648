#version 450
// prelu.forward (prelu.c) on the Vulkan backend: y = x for x > 0, else weight[c] * x, with c the
// channel of element i.  One multiply, so both backends give bit-identical results.
// Scalars: channels, inner (elements per channel and sample); both exact in a float (prelu.c
// checks they are below 2^24).
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer W { float weight[]; };
layout(std430, set = 0, binding = 2) writeonly buffer Y { float y[]; };
layout(push_constant) uniform P { uint n; uint offset; float s[2]; } p;
void main()
{
    if (gl_GlobalInvocationID.x >= p.n)
        return;
    uint i = p.offset + gl_GlobalInvocationID.x;
    uint c = (i / uint(p.s[1])) % uint(p.s[0]);
    float v = x[i];
    y[i] = v > 0.0 ? v : weight[c] * v;
}
