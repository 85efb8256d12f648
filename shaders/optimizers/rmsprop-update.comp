#version 450
// rmsprop.update (rmsprop.c): the CPU kernel's float operations in its order; `precise` forbids
// fused multiply-adds, which the CPU path never forms.  Scalars: neg_lr, alpha, 1 - alpha, eps,
// weight_decay, momentum, sign, centered, use_momentum, use_decay, nesterov, grad_scale.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) buffer Param { float param[]; };
layout(std430, set = 0, binding = 1) readonly buffer Grad { float grad[]; };
layout(std430, set = 0, binding = 2) buffer SquareAvg { float square_avg[]; };
layout(std430, set = 0, binding = 3) buffer MomentumBuffer { float momentum_buffer[]; };
layout(std430, set = 0, binding = 4) buffer GradAvg { float grad_avg[]; };
layout(push_constant) uniform P { uint n; uint offset; float s[12]; } p;
void main()
{
    if (gl_GlobalInvocationID.x >= p.n)
        return;
    uint i = p.offset + gl_GlobalInvocationID.x;
    precise float pv = param[i];
    precise float d = p.s[6] * (grad[i] * p.s[11]);
    if (p.s[9] != 0.0)
        d = d + p.s[4] * pv;
    precise float sq = square_avg[i] * p.s[1];
    sq = sq + (p.s[2] * d) * d;
    square_avg[i] = sq;
    precise float avg;
    if (p.s[7] != 0.0) {
        precise float ga = grad_avg[i] * p.s[1];
        ga = ga + p.s[2] * d;
        grad_avg[i] = ga;
        avg = sqrt(sq + (-1.0 * ga) * ga);
    } else {
        avg = sqrt(sq);
    }
    avg = avg + p.s[3];
    precise float r;
    if (p.s[8] != 0.0) {
        precise float b = momentum_buffer[i] * p.s[5];
        b = b + d / avg;
        momentum_buffer[i] = b;
        if (p.s[10] != 0.0)
            r = pv + p.s[0] * (d / avg + p.s[5] * b);
        else
            r = pv + p.s[0] * b;
    } else {
        r = pv + (p.s[0] * d) / avg;
    }
    param[i] = r;
}
