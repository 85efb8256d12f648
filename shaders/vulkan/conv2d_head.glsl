// Declarations shared by the three conv2d_*.comp kernels (see conv2d_common.glsl): the tile shape
// as specialization constants, the bindings (binding 0 is the B operand's image, binding 1 the A
// operand, binding 2 the output) and the push constants vk-conv.c fills.
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint RM = 8;
layout(constant_id = 2) const uint RN = 16;
layout(constant_id = 3) const uint TM = 4;
layout(constant_id = 4) const uint TN = 4;
layout(constant_id = 5) const uint SHARED = 0;

layout(std430, set = 0, binding = 0) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 1) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 2) buffer O { float o[]; };
// C, K: channels of the whole input and output; CG, KG: per group.  m, n, kdim: the GEMM's
// rows, columns and reduction length; slice: the reduction length per split slice, splits the
// slices per group, slice_stride the elements between their copies of the output.  x0, y0, z0:
// the first workgroup of a dispatch split over the device's workgroup-count limits.  beta: 0
// overwrites the output, 1 accumulates (splits == 1 only).
layout(push_constant) uniform P {
    int C; int H; int W; int K; int KH; int KW; int SH; int SW; int PH; int PW; int DH; int DW;
    int OH; int OW; int CG; int KG;
    uint m; uint n; uint kdim; uint slice;
    uint off_a; uint off_b; uint off_c;
    uint x0; uint y0; uint z0; uint splits; uint slice_stride;
    float beta;
} p;

// Added to a row's y coordinate so that every tap of it falls outside the image.
const int FAR = 1 << 30;

// x[.., iy0 + dy, ix0 + dx] of the image at offset base + plane, 0 outside (zero padding):
// pix = (image base, iy0, ix0, _), tap = (plane offset, dy, dx, _).
float x_tap(ivec4 tap, ivec4 pix)
{
    int iy = pix.y + tap.y, ix = pix.z + tap.z;
    if (iy < 0 || iy >= p.H || ix < 0 || ix >= p.W)
        return 0.0;
    return b[p.off_b + uint(pix.x + tap.x + iy * p.W + ix)];
}
