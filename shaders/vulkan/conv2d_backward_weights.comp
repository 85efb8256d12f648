#version 450
#extension GL_GOOGLE_include_directive : require
// conv2d's weight gradient as an implicit GEMM (conv2d_common.glsl), per group g:
//   dw[g KG + m, ci, ky, kx] = sum over q = (n, oy, ox) of
//       dy[n, g KG + m, oy, ox] * x[n, g CG + ci, oy SH - PH + ky DH, ox SW - PW + kx DW]
// M = KG, N = CG * KH * KW weights per output channel, K = batch * OH * OW output pixels, split
// into slices when that is long (vk-conv.c sums the slices' copies in order).  Rows (pixels):
// (image base of group g, oy SH - PH, ox SW - PW, dy offset of channel g KG); columns (taps):
// (ci H W, ky DH, kx DW, dw offset of row g KG).
#include "conv2d_head.glsl"

#define A_M_STRIDE (p.OH * p.OW)
#define C_M_STRIDE p.n

ivec4 row_info(uint q, uint g)
{
    int ohw = p.OH * p.OW;
    int qi = int(q), n = qi / ohw, pix = qi % ohw;
    return ivec4((n * p.C + int(g) * p.CG) * p.H * p.W, (pix / p.OW) * p.SH - p.PH,
                 (pix % p.OW) * p.SW - p.PW, (n * p.K + int(g) * p.KG) * ohw + pix);
}

ivec2 row_extents()
{
    return ivec2(p.OW, p.OH);
}

void row_deltas(out ivec4 d0, out ivec4 d1, out ivec4 d2)
{
    d0 = ivec4(0, 0, p.SW, 1);
    d1 = ivec4(0, p.SH, -(p.OW - 1) * p.SW, 1);
    d2 = ivec4(p.C * p.H * p.W, -(p.OH - 1) * p.SH, -(p.OW - 1) * p.SW, 1 + (p.K - 1) * p.OH * p.OW);
}

ivec4 row_invalid()
{
    return ivec4(0, -FAR, 0, 0);
}

ivec4 col_info(uint j, uint g)
{
    int kk = p.KH * p.KW;
    int ji = int(j), ci = ji / kk, r = ji % kk;
    return ivec4(ci * p.H * p.W, (r / p.KW) * p.DH, (r % p.KW) * p.DW,
                 int(g) * p.KG * int(p.n) + ji);
}

float b_val(ivec4 row, ivec4 col)
{
    return x_tap(col, row);
}

#include "conv2d_common.glsl"
