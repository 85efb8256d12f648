#version 450
// radam.update (radam.c): the CPU kernel's float operations in its order; `precise` forbids fused
// multiply-adds, which the CPU path never forms.  Scalars: lr, 1 - beta1^t, sqrt(1 - beta2^t),
// rect, eps, beta1, 1 - beta1, beta2, 1 - beta2, weight_decay, rectify, use_decay, grad_scale.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) buffer Param { float param[]; };
layout(std430, set = 0, binding = 1) readonly buffer Grad { float grad[]; };
layout(std430, set = 0, binding = 2) buffer M { float exp_avg[]; };
layout(std430, set = 0, binding = 3) buffer V { float exp_avg_sq[]; };
layout(push_constant) uniform P { uint n; uint offset; float s[13]; } p;
void main()
{
    if (gl_GlobalInvocationID.x >= p.n)
        return;
    uint i = p.offset + gl_GlobalInvocationID.x;
    precise float pv = param[i];
    precise float d = (grad[i] * p.s[12]);
    if (p.s[11] != 0.0)
        d = d + p.s[9] * pv;
    precise float m = exp_avg[i] * p.s[5];
    m = m + p.s[6] * d;
    exp_avg[i] = m;
    precise float v = exp_avg_sq[i] * p.s[7];
    v = v + (p.s[8] * d) * d;
    exp_avg_sq[i] = v;
    precise float mhat = m / p.s[1];
    precise float r;
    if (p.s[10] != 0.0) {
        precise float adaptive = (1.0 / (sqrt(v) + p.s[4])) * p.s[2];
        r = pv - ((mhat * p.s[0]) * adaptive) * p.s[3];
    } else {
        r = pv - mhat * p.s[0];
    }
    param[i] = r;
}
