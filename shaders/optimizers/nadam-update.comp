#version 450
// nadam.update (nadam.c): the CPU kernel's float operations in its order; `precise` forbids fused
// multiply-adds, which the CPU path never forms.  Scalars: grad_coef, avg_coef, 1 - beta2^t, eps,
// beta1, 1 - beta1, beta2, 1 - beta2, weight_decay, use_decay, grad_scale.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) buffer Param { float param[]; };
layout(std430, set = 0, binding = 1) readonly buffer Grad { float grad[]; };
layout(std430, set = 0, binding = 2) buffer M { float exp_avg[]; };
layout(std430, set = 0, binding = 3) buffer V { float exp_avg_sq[]; };
layout(push_constant) uniform P { uint n; uint offset; float s[11]; } p;
void main()
{
    if (gl_GlobalInvocationID.x >= p.n)
        return;
    uint i = p.offset + gl_GlobalInvocationID.x;
    precise float pv = param[i];
    precise float d = (grad[i] * p.s[10]);
    if (p.s[9] != 0.0)
        d = d + p.s[8] * pv;
    precise float m = exp_avg[i] * p.s[4];
    m = m + p.s[5] * d;
    exp_avg[i] = m;
    precise float v = exp_avg_sq[i] * p.s[6];
    v = v + (p.s[7] * d) * d;
    exp_avg_sq[i] = v;
    precise float denom = sqrt(v / p.s[2]) + p.s[3];
    precise float q = pv + (p.s[0] * d) / denom;
    precise float r = q + (p.s[1] * m) / denom;
    param[i] = r;
}
