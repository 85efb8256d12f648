#version 450
// A plugin-style kernel for the tests: y[i] += scalars[0] * x[i], following kernel.h's SPIR-V
// contract (local size = specialization constant 0; push constants n, offset, scalars).
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { uint n; uint offset; float scalars[1]; } p;
void main()
{
    uint i = gl_GlobalInvocationID.x;
    if (i < p.n)
        y[p.offset + i] += p.scalars[0] * x[p.offset + i];
}
