// Shared by the per-pixel softmax cross-entropy kernels (xent-pixel-*.comp): the push-constant
// block and the label decoding of plugins/layers/xent-pixel.c, with its float operations in its
// order (`precise` stops fused multiply-adds, which the CPU build never uses).

layout(local_size_x_id = 0) in;

// n, offset: this dispatch's index count and first index; s: classes C, pixels P, smoothing,
// ignore_index, the sum of the class weights, 1 when labels are f32 (0: i32), as xent-pixel.c's
// scalar block (sizes and labels as exact floats).
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

// The class of a raw label word, or -1 when the pixel is ignored (ignore_index, or a value that
// is no class: the data checks refuse those before training, and a kernel must never index
// outside the weights with one).
int label_class(uint raw)
{
    float v = p.s[5] != 0.0 ? uintBitsToFloat(raw) : float(int(raw));
    if (v == p.s[3] || !(v >= 0.0) || v >= p.s[0] || v != floor(v))
        return -1;
    return int(v);
}
