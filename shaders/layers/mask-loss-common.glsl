// Shared by the dice and weighted binary cross-entropy kernels (mask-loss-*.comp): the
// push-constant block of plugins/layers/mask-losses.c and its stable sigmoid and softplus, with
// its float operations in its order (`precise` stops fused multiply-adds).

layout(local_size_x_id = 0) in;

// n, offset: this dispatch's index count and first index; s: mask-losses.c's scalar block
// (weighted BCE: channels, values per channel, 1 / element count; dice: epsilon).
layout(push_constant) uniform P
{
    uint n;
    uint offset;
    float s[3];
} p;

bool index_of(out uint i)
{
    i = p.offset + gl_GlobalInvocationID.x;
    return gl_GlobalInvocationID.x < p.n;
}

float sigmoid_stable(float x)
{
    if (x >= 0.0)
        return 1.0 / (1.0 + exp(-x));
    float e = exp(x);
    return e / (1.0 + e);
}

// log(1 + exp(-x)) = log(1 + exp(-|x|)) + max(-x, 0)
float softplus_neg(float x)
{
    precise float v = log(1.0 + exp(-abs(x))) + max(-x, 0.0);
    return v;
}
