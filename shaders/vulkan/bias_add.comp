#version 450
// y[o, c, i] += bias[c] for y viewed as [outer, channels, inner].
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) buffer Y { float y[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float bias[]; };
layout(push_constant) uniform P { uint n; uint off_y; uint off_b; uint channels; uint inner; } p;
void main()
{
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.n; i += stride)
        y[p.off_y + i] += bias[p.off_b + (i / p.inner) % p.channels];
}
