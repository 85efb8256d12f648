#version 450
// Reductions over the middle axis of x viewed as [outer, axis, inner], one invocation per output
// element summing the axis front to back (float; the CPU sums in double): mode 0 sum, 1 mean,
// 2 max with the argmax (the first maximum; NaN wins, as torch.max).  Modes 10, 11, 12 are
// their gradients: one invocation per dx element, x then holding dy [outer, inner].
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) buffer O { float o[]; };
layout(std430, set = 0, binding = 2) buffer I { int idx[]; };
layout(push_constant) uniform P {
    uint n; uint off_x; uint off_o; uint off_i; uint axis; uint inner; uint mode;
} p;

void reduce_one(uint t)
{
    uint base = p.off_x + (t / p.inner) * p.axis * p.inner + t % p.inner;
    if (p.mode == 2u) {
        float best = x[base];
        int arg = 0;
        for (uint a = 1u; a < p.axis; a++) {
            float v = x[base + a * p.inner];
            if (v > best || (isnan(v) && !isnan(best))) {
                best = v;
                arg = int(a);
            }
        }
        o[p.off_o + t] = best;
        idx[p.off_i + t] = arg;
        return;
    }
    float s = 0.0;
    for (uint a = 0u; a < p.axis; a++)
        s += x[base + a * p.inner];
    o[p.off_o + t] = p.mode == 1u ? s / float(p.axis) : s;
}

void backward_one(uint t)
{
    uint i = t % p.inner, a = (t / p.inner) % p.axis, r = (t / (p.inner * p.axis)) * p.inner + i;
    float d = x[p.off_x + r];
    if (p.mode == 12u)
        d = idx[p.off_i + r] == int(a) ? d : 0.0;
    else if (p.mode == 11u)
        d = d / float(p.axis);
    o[p.off_o + t] = d;
}

void main()
{
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint t = gl_GlobalInvocationID.x; t < p.n; t += stride) {
        if (p.mode < 10u)
            reduce_one(t);
        else
            backward_one(t);
    }
}
