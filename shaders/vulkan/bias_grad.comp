#version 450
// One workgroup per channel: db[c] = beta db[c] + sum over (o, i) of dy[o, c, i], summed in a
// fixed order (strided per invocation, then a shared-memory tree) so results are deterministic.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) buffer DB { float db[]; };
layout(std430, set = 0, binding = 1) readonly buffer DY { float dy[]; };
layout(push_constant) uniform P {
    uint off_db; uint off_dy; uint outer; uint channels; uint inner; float beta;
} p;
shared float part[1024];
void main()
{
    uint c = gl_WorkGroupID.x;
    uint t = gl_LocalInvocationID.x;
    uint count = p.outer * p.inner;
    float s = 0.0;
    for (uint j = t; j < count; j += gl_WorkGroupSize.x) {
        uint o = j / p.inner, i = j % p.inner;
        s += dy[p.off_dy + (o * p.channels + c) * p.inner + i];
    }
    part[t] = s;
    barrier();
    for (uint w = gl_WorkGroupSize.x / 2u; w > 0u; w >>= 1) {
        if (t < w)
            part[t] += part[t + w];
        barrier();
    }
    if (t == 0u)
        db[p.off_db + c] = p.beta == 0.0 ? part[0] : p.beta * db[p.off_db + c] + part[0];
}
