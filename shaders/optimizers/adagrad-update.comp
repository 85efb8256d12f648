#version 450
// adagrad.update (adagrad.c): the CPU kernel's float operations in its order; `precise` forbids
// fused multiply-adds, which the CPU path never forms.  Scalars: neg_clr, eps, weight_decay,
// sign, use_decay, grad_scale.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) buffer Param { float param[]; };
layout(std430, set = 0, binding = 1) readonly buffer Grad { float grad[]; };
layout(std430, set = 0, binding = 2) buffer Sum { float sum[]; };
layout(push_constant) uniform P { uint n; uint offset; float s[6]; } p;
void main()
{
    if (gl_GlobalInvocationID.x >= p.n)
        return;
    uint i = p.offset + gl_GlobalInvocationID.x;
    precise float pv = param[i];
    precise float d = p.s[3] * (grad[i] * p.s[5]);
    if (p.s[4] != 0.0)
        d = d + p.s[2] * pv;
    precise float acc = sum[i] + d * d;
    sum[i] = acc;
    precise float r = pv + (p.s[0] * d) / (sqrt(acc) + p.s[1]);
    param[i] = r;
}
