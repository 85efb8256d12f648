#version 450
// train.max_norm (core/train/regularisers.c): one invocation per weight row.  Row r is the
// elements [start[r], start[r] + len[r]) of the flat parameter tensor; a row whose L2 norm
// exceeds maxn[r] is scaled by maxn[r] / (norm + 1e-7), as torch.renorm.  The CPU function sums
// the squares in double; the float sum here is within the tests' tolerance of it.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) buffer Params { float w[]; };
layout(std430, set = 0, binding = 1) readonly buffer Start { int start[]; };
layout(std430, set = 0, binding = 2) readonly buffer Len { int len[]; };
layout(std430, set = 0, binding = 3) readonly buffer MaxNorm { float maxn[]; };
layout(push_constant) uniform P { uint n; uint offset; } p;
void main()
{
    if (gl_GlobalInvocationID.x >= p.n)
        return;
    uint r = p.offset + gl_GlobalInvocationID.x;
    int b = start[r];
    int e = b + len[r];
    precise float sum = 0.0;
    for (int i = b; i < e; i++)
        sum = sum + w[i] * w[i];
    float norm = sqrt(sum);
    if (norm > maxn[r]) {
        precise float f = maxn[r] / (norm + 1e-7);
        for (int i = b; i < e; i++)
            w[i] = w[i] * f;
    }
}
