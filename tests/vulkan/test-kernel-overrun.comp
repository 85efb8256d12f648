#version 450
// A deliberately wrong plugin-style kernel for the out-of-bounds guard's test: launched over n
// indices of a tensor of n floats, each invocation also writes the element n past its own, so the
// launch writes a whole tensor's length past the end.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) buffer Y { float y[]; };
layout(push_constant) uniform P { uint n; uint offset; float scalars[1]; } p;
void main()
{
    uint i = gl_GlobalInvocationID.x;
    if (i < p.n) {
        y[p.offset + i] = p.scalars[0];
        y[p.offset + i + p.n] = p.scalars[0];
    }
}
