#version 450
// Sets n 32-bit words to one bit pattern (the host converts the value to f32 or i32).
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) buffer D { uint d[]; };
layout(push_constant) uniform P { uint n; uint off; uint bits; } p;
void main()
{
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.n; i += stride)
        d[p.off + i] = p.bits;
}
