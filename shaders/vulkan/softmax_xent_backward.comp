#version 450
// dx = scale * (probs - target), target = (1 - s) onehot(label) + s / k.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer PR { float probs[]; };
layout(std430, set = 0, binding = 1) readonly buffer L { int labels[]; };
layout(std430, set = 0, binding = 2) buffer DX { float dx[]; };
layout(push_constant) uniform P {
    uint n; uint off_p; uint off_l; uint off_dx; uint k; float scale; float s;
} p;
void main()
{
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    float off = p.s / float(p.k);
    for (uint i = gl_GlobalInvocationID.x; i < p.n; i += stride) {
        uint r = i / p.k, q = i % p.k;
        float v = p.scale * (probs[p.off_p + i] - off);
        if (labels[p.off_l + r] == int(q))
            v -= p.scale * (1.0 - p.s);
        dx[p.off_dx + i] = v;
    }
}
