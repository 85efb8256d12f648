#version 450
// adadelta.update (adadelta.c): the CPU kernel's float operations in its order; `precise` forbids
// fused multiply-adds, which the CPU path never forms.  Scalars: neg_lr, rho, 1 - rho, eps,
// weight_decay, sign, use_decay, grad_scale.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) buffer Param { float param[]; };
layout(std430, set = 0, binding = 1) readonly buffer Grad { float grad[]; };
layout(std430, set = 0, binding = 2) buffer SquareAvg { float square_avg[]; };
layout(std430, set = 0, binding = 3) buffer AccDelta { float acc_delta[]; };
layout(push_constant) uniform P { uint n; uint offset; float s[8]; } p;
void main()
{
    if (gl_GlobalInvocationID.x >= p.n)
        return;
    uint i = p.offset + gl_GlobalInvocationID.x;
    precise float pv = param[i];
    precise float d = p.s[5] * (grad[i] * p.s[7]);
    if (p.s[6] != 0.0)
        d = d + p.s[4] * pv;
    precise float sq = square_avg[i] * p.s[1];
    sq = sq + (p.s[2] * d) * d;
    square_avg[i] = sq;
    precise float acc_old = acc_delta[i];
    precise float std_dev = sqrt(sq + p.s[3]);
    precise float delta = (sqrt(acc_old + p.s[3]) / std_dev) * d;
    precise float acc = acc_old * p.s[1];
    acc = acc + (p.s[2] * delta) * delta;
    acc_delta[i] = acc;
    precise float r = pv + p.s[0] * delta;
    param[i] = r;
}
