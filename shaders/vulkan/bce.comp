#version 450
// Binary cross-entropy with logits.  Mode 0: o[i] = max(x, 0) - x t + log(1 + exp(-|x|)) (the
// per-element loss, summed afterwards by reduce.comp).  Mode 1: o[i] = scale (sigmoid(x) - t).
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer T { float tg[]; };
layout(std430, set = 0, binding = 2) buffer O { float o[]; };
layout(push_constant) uniform P { uint n; uint off_x; uint off_t; uint off_o; uint mode; float scale; } p;
void main()
{
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.n; i += stride) {
        float v = x[p.off_x + i], t = tg[p.off_t + i];
        float e = exp(-abs(v));
        if (p.mode == 0u) {
            o[p.off_o + i] = max(v, 0.0) - v * t + log(1.0 + e);
        } else {
            float s = v >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
            o[p.off_o + i] = p.scale * (s - t);
        }
    }
}
