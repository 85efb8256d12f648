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

ivec2 row_extents()
{
    return ivec2(p.KW, p.KH);
}

void row_deltas(out ivec4 d0, out ivec4 d1, out ivec4 d2)
{
    int kk = p.KH * p.KW;
    d0 = ivec4(0, 0, p.DW, 1);
    d1 = ivec4(0, p.DH, -(p.KW - 1) * p.DW, 1);
    d2 = ivec4(p.OH * p.OW, -(p.KH - 1) * p.DH, -(p.KW - 1) * p.DW, (p.CG - 1) * kk + 1);
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
    int oy = col.y - row.y, ox = col.z - row.z;
    if (oy < 0 || ox < 0)
        return 0.0;
    // Unit strides (the common case, a uniform branch) skip the divisions.
    if (p.SH != 1 || p.SW != 1) {
        if (oy % p.SH != 0 || ox % p.SW != 0)
            return 0.0;
        oy /= p.SH;
        ox /= p.SW;
    }
    if (oy >= p.OH || ox >= p.OW)
        return 0.0;
    return b[p.off_b + uint(col.x + row.x + oy * p.OW + ox)];
}

#include "conv2d_common.glsl"
