#version 450
// sgd.update (sgd.c): the CPU kernel's float operations in its order.  `precise` keeps the
// compiler from fusing a multiply and an add into one rounding, which the CPU path never does.
// Scalars: neg_lr, weight_decay, buf_decay, buf_gain, momentum, sign, mode, use_decay, grad_scale.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) buffer Param { float param[]; };
layout(std430, set = 0, binding = 1) readonly buffer Grad { float grad[]; };
layout(std430, set = 0, binding = 2) buffer Buf { float buf[]; };
layout(push_constant) uniform P { uint n; uint offset; float s[9]; } p;
void main()
{
    if (gl_GlobalInvocationID.x >= p.n)
        return;
    uint i = p.offset + gl_GlobalInvocationID.x;
    uint mode = uint(p.s[6]);
    precise float d = p.s[5] * (grad[i] * p.s[8]);
    if (p.s[7] != 0.0)
        d = d + p.s[1] * param[i];
    if (mode != 0u) {
        precise float b = p.s[2] * buf[i] + p.s[3] * d;
        buf[i] = b;
        d = mode == 2u ? d + p.s[4] * b : b;
    }
    precise float r = param[i] + p.s[0] * d;
    param[i] = r;
}
