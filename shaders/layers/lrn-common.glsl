// Shared by the local response normalisation kernels (lrn-*.comp): the push-constant block and
// the index decomposition of plugins/layers/lrn.c, with its float operations in its order
// (`precise` stops fused multiply-adds, which the CPU build never uses).

layout(local_size_x_id = 0) in;

// n, offset: this dispatch's index count and first index; s: channels, inner (H * W), size,
// alpha, beta, k, as lrn.c's scalar block (sizes as exact floats).
layout(push_constant) uniform P
{
    uint n;
    uint offset;
    float s[6];
} p;

bool index_of(out uint i)
{
    i = p.offset + gl_GlobalInvocationID.x;
    return gl_GlobalInvocationID.x < p.n;
}

// Element i's channel, and the index of channel 0 at its pixel.
void site(uint i, out uint c, out uint base)
{
    uint channels = uint(p.s[0]), inner = uint(p.s[1]);
    uint q = i % inner, n = i / (channels * inner);
    c = (i / inner) % channels;
    base = n * channels * inner + q;
}
