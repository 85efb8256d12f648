#version 450
#extension GL_GOOGLE_include_directive : require
// conv2d forward as an implicit GEMM (conv2d_common.glsl), per group g:
//   y[n, g KG + m, oy, ox] = sum over q = (ci, ky, kx) of
//       w[g KG + m, ci, ky, kx] * x[n, g CG + ci, oy SH - PH + ky DH, ox SW - PW + kx DW]
// M = KG output channels, N = batch * OH * OW output pixels, K = CG * KH * KW taps; x outside the
// image is zero padding.  Rows (taps): (ci H W, ky DH, kx DW, g KG kdim + q); columns (pixels):
// (image base of group g, oy SH - PH, ox SW - PW, y offset of channel g KG).
#include "conv2d_head.glsl"

#define A_M_STRIDE p.kdim
#define C_M_STRIDE (p.OH * p.OW)

ivec4 row_info(uint q, uint g)
{
    int kk = p.KH * p.KW;
    int qi = int(q), ci = qi / kk, r = qi % kk;
    return ivec4(ci * p.H * p.W, (r / p.KW) * p.DH, (r % p.KW) * p.DW,
                 int(g) * p.KG * int(p.kdim) + qi);
}

ivec2 row_extents()
{
    return ivec2(p.KW, p.KH);
}

void row_deltas(out ivec4 d0, out ivec4 d1, out ivec4 d2)
{
    d0 = ivec4(0, 0, p.DW, 1);
    d1 = ivec4(0, p.DH, -(p.KW - 1) * p.DW, 1);
    d2 = ivec4(p.H * p.W, -(p.KH - 1) * p.DH, -(p.KW - 1) * p.DW, 1);
}

ivec4 row_invalid()
{
    return ivec4(0, -FAR, 0, 0);
}

ivec4 col_info(uint j, uint g)
{
    int ohw = p.OH * p.OW;
    int ji = int(j), n = ji / ohw, pix = ji % ohw;
    return ivec4((n * p.C + int(g) * p.CG) * p.H * p.W, (pix / p.OW) * p.SH - p.PH,
                 (pix % p.OW) * p.SW - p.PW, (n * p.K + int(g) * p.KG) * ohw + pix);
}

float b_val(ivec4 row, ivec4 col)
{
    return x_tap(row, col);
}

#include "conv2d_common.glsl"
