#version 450
#extension GL_GOOGLE_include_directive : require
// conv2d's input gradient as an implicit GEMM (conv2d_common.glsl): each dx element gathers, in
// a fixed order, from the output pixels whose windows read it (no atomics).  Per group g:
//   dx[n, g CG + ci, iy, ix] = sum over q = (m, ky, kx) of
//       w[g KG + m, ci, ky, kx] * dy[n, g KG + m, oy, ox]
// over the taps with oy SH = iy + PH - ky DH and ox SW = ix + PW - kx DW inside the output.
// M = CG, N = batch * H * W input pixels, K = KG * KH * KW.  Rows: (m OH OW, ky DH, kx DW,
// w offset of (g KG + m, 0, ky, kx)); columns: (dy base of group g, iy + PH, ix + PW, dx offset
// of channel g CG).
#include "conv2d_head.glsl"

#define A_M_STRIDE (p.KH * p.KW)
#define C_M_STRIDE (p.H * p.W)

ivec4 row_info(uint q, uint g)
{
    int kk = p.KH * p.KW;
    int qi = int(q), m = qi / kk, r = qi % kk;
    return ivec4(m * p.OH * p.OW, (r / p.KW) * p.DH, (r % p.KW) * p.DW,
                 (int(g) * p.KG + m) * p.CG * kk + r);
}

// ty = iy + PH - FAR is negative: no output pixel.
ivec4 row_invalid()
{
    return ivec4(0, FAR, 0, 0);
}

ivec4 col_info(uint j, uint g)
{
    int hw = p.H * p.W;
    int ji = int(j), n = ji / hw, pix = ji % hw;
    return ivec4((n * p.K + int(g) * p.KG) * p.OH * p.OW, pix / p.W + p.PH, pix % p.W + p.PW,
                 (n * p.C + int(g) * p.CG) * hw + pix);
}

float b_val(ivec4 row, ivec4 col)
{
    int ty = col.y - row.y, tx = col.z - row.z;
    if (ty < 0 || tx < 0 || ty % p.SH != 0 || tx % p.SW != 0)
        return 0.0;
    int oy = ty / p.SH, ox = tx / p.SW;
    if (oy >= p.OH || ox >= p.OW)
        return 0.0;
    return b[p.off_b + uint(col.x + row.x + oy * p.OW + ox)];
}

#include "conv2d_common.glsl"
