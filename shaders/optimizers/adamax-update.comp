#version 450
// adamax.update (adamax.c): the CPU kernel's float operations in its order; `precise` forbids
// fused multiply-adds, which the CPU path never forms.  Scalars: neg_clr, eps, beta1, 1 - beta1,
// beta2, weight_decay, sign, use_decay, grad_scale.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) buffer Param { float param[]; };
layout(std430, set = 0, binding = 1) readonly buffer Grad { float grad[]; };
layout(std430, set = 0, binding = 2) buffer M { float exp_avg[]; };
layout(std430, set = 0, binding = 3) buffer U { float exp_inf[]; };
layout(push_constant) uniform P { uint n; uint offset; float s[9]; } p;
void main()
{
    if (gl_GlobalInvocationID.x >= p.n)
        return;
    uint i = p.offset + gl_GlobalInvocationID.x;
    precise float pv = param[i];
    precise float d = p.s[6] * (grad[i] * p.s[8]);
    if (p.s[7] != 0.0)
        d = d + p.s[5] * pv;
    precise float m = exp_avg[i] * p.s[2];
    m = m + p.s[3] * d;
    exp_avg[i] = m;
    precise float a = exp_inf[i] * p.s[4];
    precise float b = abs(d) + p.s[1];
    // torch.amax: NaN in either operand propagates (tested on the bits: isnan may be folded
    // away by drivers that assume no NaNs; b is NaN only when d is, and then a > b is false)
    bool a_nan = (floatBitsToUint(a) & 0x7fffffffu) > 0x7f800000u;
    float u = (a > b || a_nan) ? a : b;
    exp_inf[i] = u;
    precise float r = pv + (p.s[0] * m) / u;
    param[i] = r;
}
