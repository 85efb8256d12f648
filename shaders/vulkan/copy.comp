#version 450
// Copies n 32-bit words (f32 and i32 alike) between non-overlapping ranges.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) buffer Dst { uint dst[]; };
layout(std430, set = 0, binding = 1) readonly buffer Src { uint src[]; };
layout(push_constant) uniform P { uint n; uint off_dst; uint off_src; } p;
void main()
{
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.n; i += stride)
        dst[p.off_dst + i] = src[p.off_src + i];
}
