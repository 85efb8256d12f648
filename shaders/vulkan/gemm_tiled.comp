#version 450
#extension GL_GOOGLE_include_directive : require
// C = alpha op(A) op(B) + beta C (fp32), the GPU kernel.  A workgroup computes a BM x BN block of
// C, stepping through K in BK slices staged in shared memory; each invocation accumulates a
// TM x TN register tile.  Rows and columns of the register tile are strided by BM/TM and BN/TN
// so neighbouring invocations read neighbouring shared-memory words (no bank conflicts on the
// inner loop) and store neighbouring elements of C (coalesced).
//
// Everything that shapes the loops is a specialization constant (vk-gemm.c picks the tile from
// the device's limits), including the transposes and the vec4 fast paths, so each variant is
// compiled without run-time branches.  VEC_A / VEC_B may only be set when the operand's
// contiguous extent, its leading dimension and its base offsets are multiples of 4: a vec4 is then
// either wholly inside the matrix or wholly outside.
//
// op(A) is m x k, op(B) is k x n, with leading dimensions lda, ldb, ldc (elements between rows of
// the matrices as stored).  Workgroup z selects a batch entry or, for split-K, a K slice: slice z
// starts stride_{a,b,c} elements further and spans k elements, the last (z == z_last) k_last.
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint BM = 64;
layout(constant_id = 2) const uint BN = 64;
layout(constant_id = 3) const uint BK = 16;
layout(constant_id = 4) const uint TM = 4;
layout(constant_id = 5) const uint TN = 4;
layout(constant_id = 6) const uint TRANS_A = 0;
layout(constant_id = 7) const uint TRANS_B = 0;
layout(constant_id = 8) const uint VEC_A = 0;
layout(constant_id = 9) const uint VEC_B = 0;
// The epilogue (lmn_op_gemm_ex) is specialised in: EPI_BIAS adds bias[off_bias + column], then
// EPI_ACT (an LmnUnaryOp, 0 for none) applies that function with act_alpha, as unary.comp does,
// to C itself or, with EPI_SEPARATE, into act_out (laid out as C from off_act), C keeping t.
// EPI_GRAD (an LmnUnaryOp, 0 for none; never with the others) multiplies t by that function's
// derivative, as unary_backward.comp does, from the one of its input or output it needs, read
// through the Bias binding laid out as C from off_bias.
layout(constant_id = 10) const uint EPI_BIAS = 0;
layout(constant_id = 11) const uint EPI_ACT = 0;
layout(constant_id = 12) const uint EPI_SEPARATE = 0;
layout(constant_id = 13) const uint EPI_GRAD = 0;
// EPI_ROWSUMS (never with EPI_SEPARATE): act_out[off_act + i] = the sum over q of op(A)[i, q]
// (lmn_op_gemm_ex's a_row_sums, beta 0), summed in q order with compensation (sum.glsl) by the
// first column of workgroups,
// one invocation per row.
layout(constant_id = 14) const uint EPI_ROWSUMS = 0;

const uint WG = (BM / TM) * (BN / TN); // == local_size_x (set by the host from the same table)
const uint RM = BM / TM;               // register-tile row stride
const uint RN = BN / TN;               // register-tile column stride
// Padded k-major tiles: element (kk, i) of the A tile is sa[kk * SA + i].  A stride of 2 mod 8
// words spreads the transposing stores of row-major slices (4 consecutive kk per vec4) over
// distinct banks.
const uint SA = BM + 2u;
const uint SB = BN + 2u;

layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 0) readonly buffer A4 { vec4 a4[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 1) readonly buffer B4 { vec4 b4[]; };
layout(std430, set = 0, binding = 2) buffer C { float c[]; };
layout(std430, set = 0, binding = 3) readonly buffer Bias { float bias[]; };
layout(std430, set = 0, binding = 4) writeonly buffer Act { float act_out[]; };
layout(push_constant) uniform P {
    uint m; uint n; uint k; uint k_last; uint z_last;
    uint lda; uint ldb; uint ldc;
    float alpha; float beta;
    uint off_a; uint off_b; uint off_c;
    uint stride_a; uint stride_b; uint stride_c;
    uint z0;
    uint off_bias; float act_alpha; uint off_act;
} p;

#include "unary_f.glsl"
#include "unary_grad_f.glsl"
#include "sum.glsl"

shared float sa[BK * SA];
shared float sb[BK * SB];

void load_a(uint tid, uint ba, uint row0, uint k0, uint kz)
{
    if (TRANS_A == 0u) {
        // A stored [m][lda]: contiguous along k.
        if (VEC_A != 0u) {
            for (uint l = tid; l < BM * BK / 4u; l += WG) {
                uint i = l / (BK / 4u), kq = (l % (BK / 4u)) * 4u;
                uint gi = row0 + i, gk = k0 + kq;
                vec4 v = vec4(0.0);
                if (gi < p.m && gk < kz)
                    v = a4[(ba + gi * p.lda + gk) / 4u];
                sa[(kq + 0u) * SA + i] = v.x;
                sa[(kq + 1u) * SA + i] = v.y;
                sa[(kq + 2u) * SA + i] = v.z;
                sa[(kq + 3u) * SA + i] = v.w;
            }
        } else {
            for (uint l = tid; l < BM * BK; l += WG) {
                uint i = l / BK, kk = l % BK;
                uint gi = row0 + i, gk = k0 + kk;
                float v = 0.0;
                if (gi < p.m && gk < kz)
                    v = a[ba + gi * p.lda + gk];
                sa[kk * SA + i] = v;
            }
        }
    } else {
        // A stored [k][lda]: contiguous along m.
        if (VEC_A != 0u) {
            for (uint l = tid; l < BM * BK / 4u; l += WG) {
                uint kk = l / (BM / 4u), iq = (l % (BM / 4u)) * 4u;
                uint gi = row0 + iq, gk = k0 + kk;
                vec4 v = vec4(0.0);
                if (gi < p.m && gk < kz)
                    v = a4[(ba + gk * p.lda + gi) / 4u];
                sa[kk * SA + iq + 0u] = v.x;
                sa[kk * SA + iq + 1u] = v.y;
                sa[kk * SA + iq + 2u] = v.z;
                sa[kk * SA + iq + 3u] = v.w;
            }
        } else {
            for (uint l = tid; l < BM * BK; l += WG) {
                uint kk = l / BM, i = l % BM;
                uint gi = row0 + i, gk = k0 + kk;
                float v = 0.0;
                if (gi < p.m && gk < kz)
                    v = a[ba + gk * p.lda + gi];
                sa[kk * SA + i] = v;
            }
        }
    }
}

void load_b(uint tid, uint bb, uint col0, uint k0, uint kz)
{
    if (TRANS_B == 0u) {
        // B stored [k][ldb]: contiguous along n.
        if (VEC_B != 0u) {
            for (uint l = tid; l < BN * BK / 4u; l += WG) {
                uint kk = l / (BN / 4u), jq = (l % (BN / 4u)) * 4u;
                uint gj = col0 + jq, gk = k0 + kk;
                vec4 v = vec4(0.0);
                if (gj < p.n && gk < kz)
                    v = b4[(bb + gk * p.ldb + gj) / 4u];
                sb[kk * SB + jq + 0u] = v.x;
                sb[kk * SB + jq + 1u] = v.y;
                sb[kk * SB + jq + 2u] = v.z;
                sb[kk * SB + jq + 3u] = v.w;
            }
        } else {
            for (uint l = tid; l < BN * BK; l += WG) {
                uint kk = l / BN, j = l % BN;
                uint gj = col0 + j, gk = k0 + kk;
                float v = 0.0;
                if (gj < p.n && gk < kz)
                    v = b[bb + gk * p.ldb + gj];
                sb[kk * SB + j] = v;
            }
        }
    } else {
        // B stored [n][ldb]: contiguous along k.
        if (VEC_B != 0u) {
            for (uint l = tid; l < BN * BK / 4u; l += WG) {
                uint j = l / (BK / 4u), kq = (l % (BK / 4u)) * 4u;
                uint gj = col0 + j, gk = k0 + kq;
                vec4 v = vec4(0.0);
                if (gj < p.n && gk < kz)
                    v = b4[(bb + gj * p.ldb + gk) / 4u];
                sb[(kq + 0u) * SB + j] = v.x;
                sb[(kq + 1u) * SB + j] = v.y;
                sb[(kq + 2u) * SB + j] = v.z;
                sb[(kq + 3u) * SB + j] = v.w;
            }
        } else {
            for (uint l = tid; l < BN * BK; l += WG) {
                uint j = l / BK, kk = l % BK;
                uint gj = col0 + j, gk = k0 + kk;
                float v = 0.0;
                if (gj < p.n && gk < kz)
                    v = b[bb + gj * p.ldb + gk];
                sb[kk * SB + j] = v;
            }
        }
    }
}

void main()
{
    uint tid = gl_LocalInvocationID.x;
    uint tx = tid % RN, ty = tid / RN;
    uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BN;
    uint z = gl_WorkGroupID.z + p.z0;
    uint kz = z == p.z_last ? p.k_last : p.k;
    uint ba = p.off_a + z * p.stride_a, bb = p.off_b + z * p.stride_b;

    float acc[TM * TN];
    for (uint i = 0u; i < TM * TN; i++)
        acc[i] = 0.0;
    float ra[TM], rb[TN];
    for (uint k0 = 0u; k0 < kz; k0 += BK) {
        load_a(tid, ba, row0, k0, kz);
        load_b(tid, bb, col0, k0, kz);
        barrier();
        for (uint kk = 0u; kk < BK; kk++) {
            for (uint r = 0u; r < TM; r++)
                ra[r] = sa[kk * SA + ty + r * RM];
            for (uint q = 0u; q < TN; q++)
                rb[q] = sb[kk * SB + tx + q * RN];
            for (uint r = 0u; r < TM; r++)
                for (uint q = 0u; q < TN; q++)
                    acc[r * TN + q] = fma(ra[r], rb[q], acc[r * TN + q]);
        }
        barrier();
    }

    if (EPI_ROWSUMS != 0u && gl_WorkGroupID.x == 0u) {
        for (uint i = tid; i < BM && row0 + i < p.m; i += WG) {
            uint gi = row0 + i;
            LmnSum s = lmn_sum_new();
            for (uint q = 0u; q < kz; q++)
                s = lmn_sum_add(s, a[ba + (TRANS_A != 0u ? q * p.lda + gi : gi * p.lda + q)]);
            act_out[p.off_act + gi] = lmn_sum_value(s);
        }
    }

    uint bc = p.off_c + z * p.stride_c;
    for (uint r = 0u; r < TM; r++) {
        uint gi = row0 + ty + r * RM;
        if (gi >= p.m)
            break;
        for (uint q = 0u; q < TN; q++) {
            uint gj = col0 + tx + q * RN;
            if (gj < p.n) {
                uint ci = bc + gi * p.ldc + gj;
                // beta == 0 never reads C: NaN there is overwritten, as in BLAS.
                float v = p.alpha * acc[r * TN + q];
                if (p.beta != 0.0)
                    v += p.beta * c[ci];
                if (EPI_BIAS != 0u)
                    v += bias[p.off_bias + gj];
                if (EPI_GRAD != 0u) {
                    float xy = bias[p.off_bias + gi * p.ldc + gj];
                    v = lmn_unary_grad_f(xy, xy, v, EPI_GRAD, p.act_alpha, 0.0);
                }
                if (EPI_ACT != 0u && EPI_SEPARATE != 0u)
                    act_out[p.off_act + gi * p.ldc + gj] = lmn_unary_f(v, EPI_ACT, p.act_alpha);
                else if (EPI_ACT != 0u)
                    v = lmn_unary_f(v, EPI_ACT, p.act_alpha);
                c[ci] = v;
            }
        }
    }
}
