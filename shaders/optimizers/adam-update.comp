#version 450
// adam.update (adam.c): the CPU kernel's float operations in its order; `precise` forbids fused
// multiply-adds, which the CPU path never forms.  Scalars: neg_step, bc2_sqrt, eps, beta1,
// 1 - beta1, beta2, 1 - beta2, weight_decay, sign, amsgrad, use_decay, grad_scale.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) buffer Param { float param[]; };
layout(std430, set = 0, binding = 1) readonly buffer Grad { float grad[]; };
layout(std430, set = 0, binding = 2) buffer M { float exp_avg[]; };
layout(std430, set = 0, binding = 3) buffer V { float exp_avg_sq[]; };
layout(std430, set = 0, binding = 4) buffer VMax { float max_exp_avg_sq[]; };
layout(push_constant) uniform P { uint n; uint offset; float s[12]; } p;
void main()
{
    if (gl_GlobalInvocationID.x >= p.n)
        return;
    uint i = p.offset + gl_GlobalInvocationID.x;
    precise float pv = param[i];
    precise float d = p.s[8] * (grad[i] * p.s[11]);
    if (p.s[10] != 0.0)
        d = d + p.s[7] * pv;
    bool amsgrad = p.s[9] != 0.0;
    precise float m = exp_avg[i] * p.s[3];
    m = m + p.s[4] * d;
    exp_avg[i] = m;
    precise float v = exp_avg_sq[i] * p.s[5];
    v = v + (p.s[6] * d) * d;
    exp_avg_sq[i] = v;
    if (amsgrad) {
        // torch.maximum: NaN in either operand propagates (tested on the bits: isnan may be
        // folded away by drivers that assume no NaNs)
        float old = max_exp_avg_sq[i];
        bool old_nan = (floatBitsToUint(old) & 0x7fffffffu) > 0x7f800000u;
        v = (old > v || old_nan) ? old : v;
        max_exp_avg_sq[i] = v;
    }
    precise float denom = sqrt(v) / p.s[1] + p.s[2];
    precise float r = pv + (p.s[0] * m) / denom;
    param[i] = r;
}
