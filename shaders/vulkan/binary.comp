#version 450
// out = a OP b (0 add, 1 sub, 2 mul), or with op 3: y = alpha x + beta y (axpby; beta 0 = no read).
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 2) buffer O { float o[]; };
layout(push_constant) uniform P {
    uint n; uint off_a; uint off_b; uint off_o; uint op; float alpha; float beta;
} p;
void main()
{
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.n; i += stride) {
        float r;
        if (p.op == 0u)
            r = a[p.off_a + i] + b[p.off_b + i];
        else if (p.op == 1u)
            r = a[p.off_a + i] - b[p.off_b + i];
        else if (p.op == 2u)
            r = a[p.off_a + i] * b[p.off_b + i];
        else
            r = p.beta == 0.0 ? p.alpha * a[p.off_a + i]
                              : p.alpha * a[p.off_a + i] + p.beta * o[p.off_o + i];
        o[p.off_o + i] = r;
    }
}
