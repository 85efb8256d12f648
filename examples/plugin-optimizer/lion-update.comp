#version 450
// lion.update (lion.c) on the Vulkan backend: the CPU function's float operations in its order,
// so that both backends train alike.  `precise` keeps the compiler from fusing a multiply and an
// add into one rounding, which the CPU function never does.
// Scalars: lr, beta1, beta2, decay (1 - lr weight_decay).
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) buffer Param { float param[]; };
layout(std430, set = 0, binding = 1) readonly buffer Grad { float grad[]; };
layout(std430, set = 0, binding = 2) buffer ExpAvg { float exp_avg[]; };
layout(push_constant) uniform P { uint n; uint offset; float s[4]; } p;
void main()
{
    if (gl_GlobalInvocationID.x >= p.n)
        return;
    uint i = p.offset + gl_GlobalInvocationID.x;
    float g = grad[i];
    float m = exp_avg[i];
    precise float c = p.s[1] * m + (1.0 - p.s[1]) * g;
    // (c > 0) - (c < 0) as in C: 0 for a NaN, where GLSL's sign() is unspecified
    float sgn = float(c > 0.0) - float(c < 0.0);
    precise float r = param[i] * p.s[3] - p.s[0] * sgn;
    param[i] = r;
    precise float mn = p.s[2] * m + (1.0 - p.s[2]) * g;
    exp_avg[i] = mn;
}
