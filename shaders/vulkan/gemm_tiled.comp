#version 450
#extension GL_GOOGLE_include_directive : require
// C = alpha op(A) op(B) + beta C (fp32), the GPU kernel.  A workgroup computes a BM x BN block of
// C, stepping through K in BK slices staged in shared memory; each invocation accumulates a
// TM x TN register tile.
//
// - Register tiles are made of 4 x 4 blocks of contiguous rows and columns, so each k step reads
//   TM / 4 + TN / 4 vec4s of shared memory rather than TM + TN words.  The TM / 4 row blocks of an
//   invocation are BM / (TM / 4) rows apart (the column blocks likewise), so the invocations of a
//   subgroup read consecutive vec4s: no bank conflicts.
// - Shared memory holds each slice k-major as vec4s of 4 consecutive rows (or columns), in two
//   buffers: while the workgroup multiplies one slice, the next one's global loads are in flight
//   in registers, and are stored into the other buffer afterwards.  One barrier per slice.
// - The vec4 index within a k row is XOR-swizzled by the row's k (swz below), so every store
//   pattern, including the transposing ones (an operand contiguous along k), hits 32 distinct
//   banks per 32 invocations, and the loads stay coalesced along each operand's contiguous
//   dimension.  The swizzle permutes aligned groups of 8 vec4s, so the reads stay conflict-free.
//
// Everything that shapes the loops is a specialization constant (vk-gemm.c picks the tile from
// the device's limits), including the transposes and the vec4 fast paths, so each variant is
// compiled without run-time branches.  TM, TN must be multiples of 4 and BM / 4, BN / 4
// multiples of 8 (the swizzle's span).  VEC_A / VEC_B may only be set when the operand's
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
const uint HM = TM / 4u;               // 4-row blocks of a register tile
const uint HN = TN / 4u;               // 4-column blocks
const uint QA = BM / 4u;               // vec4s in one k row of the A tile
const uint QB = BN / 4u;
const uint NA = BK * QA;               // vec4s in one A tile (one buffer)
const uint NB = BK * QB;
// vec4 registers per invocation holding the next slice (the scalar paths pack 4 words in each).
const uint LA = (BK * BM + 4u * WG - 1u) / (4u * WG);
const uint LB = (BK * BN + 4u * WG - 1u) / (4u * WG);

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

shared vec4 sa[2u * NA];
shared vec4 sb[2u * NB];
vec4 pa[LA];
vec4 pb[LB];

// The swizzle of k row kk: which of 8 vec4 positions its vec4 q moves to (q ^ swz).  A
// transposing store writes, per instruction, BK / 4 k rows 4 apart for 32 / (BK / 4) consecutive
// rows of the operand (8 / (BK / 4) consecutive vec4s): rows 4 apart get distinct multiples of
// 32 / BK, which spread them over all 8 positions.
uint swz(uint kk)
{
    return ((kk >> 2u) * (32u / BK)) & 7u;
}

uint ia(uint buf, uint kk, uint q)
{
    return buf * NA + kk * QA + (q ^ swz(kk));
}

uint ib(uint buf, uint kk, uint q)
{
    return buf * NB + kk * QB + (q ^ swz(kk));
}

// Slice k0 of A (rows row0.., k0 + [0, BK) clipped to kz) into pa; zeros outside the matrix.
void fetch_a(uint tid, uint ba, uint row0, uint k0, uint kz)
{
    for (uint j = 0u; j < LA; j++) {
        if (VEC_A != 0u) {
            uint l = tid + j * WG;
            vec4 v = vec4(0.0);
            if (TRANS_A == 0u) {
                // A stored [m][lda], contiguous along k: BK / 4 invocations per row.
                uint i = l / (BK / 4u), kq = (l % (BK / 4u)) * 4u;
                uint gi = row0 + i, gk = k0 + kq;
                if (l < NA && gi < p.m && gk < kz)
                    v = a4[(ba + gi * p.lda + gk) / 4u];
            } else {
                // A stored [k][lda], contiguous along m: a vec4 is 4 rows of the tile.
                uint kk = l / QA, q = l % QA;
                uint gi = row0 + 4u * q, gk = k0 + kk;
                if (l < NA && gi < p.m && gk < kz)
                    v = a4[(ba + gk * p.lda + gi) / 4u];
            }
            pa[j] = v;
        } else {
            // Element (kk, i), i fastest: consecutive invocations store consecutive words.
            for (uint e = 0u; e < 4u; e++) {
                uint l = tid + (j * 4u + e) * WG;
                uint kk = l / BM, i = l % BM;
                uint gi = row0 + i, gk = k0 + kk;
                float v = 0.0;
                if (l < BK * BM && gi < p.m && gk < kz)
                    v = a[ba + (TRANS_A != 0u ? gk * p.lda + gi : gi * p.lda + gk)];
                pa[j][e] = v;
            }
        }
    }
}

void store_a(uint tid, uint buf)
{
    for (uint j = 0u; j < LA; j++) {
        if (VEC_A != 0u) {
            uint l = tid + j * WG;
            if (l < NA) {
                if (TRANS_A == 0u) {
                    uint i = l / (BK / 4u), kq = (l % (BK / 4u)) * 4u;
                    for (uint e = 0u; e < 4u; e++)
                        sa[ia(buf, kq + e, i / 4u)][i % 4u] = pa[j][e];
                } else {
                    sa[ia(buf, l / QA, l % QA)] = pa[j];
                }
            }
        } else {
            for (uint e = 0u; e < 4u; e++) {
                uint l = tid + (j * 4u + e) * WG;
                if (l < BK * BM)
                    sa[ia(buf, l / BM, (l % BM) / 4u)][l % 4u] = pa[j][e];
            }
        }
    }
}

// Slice k0 of B (k0 + [0, BK) clipped to kz, columns col0..) into pb.
void fetch_b(uint tid, uint bb, uint col0, uint k0, uint kz)
{
    for (uint j = 0u; j < LB; j++) {
        if (VEC_B != 0u) {
            uint l = tid + j * WG;
            vec4 v = vec4(0.0);
            if (TRANS_B == 0u) {
                // B stored [k][ldb], contiguous along n: a vec4 is 4 columns of the tile.
                uint kk = l / QB, q = l % QB;
                uint gj = col0 + 4u * q, gk = k0 + kk;
                if (l < NB && gj < p.n && gk < kz)
                    v = b4[(bb + gk * p.ldb + gj) / 4u];
            } else {
                // B stored [n][ldb], contiguous along k.
                uint j4 = l / (BK / 4u), kq = (l % (BK / 4u)) * 4u;
                uint gj = col0 + j4, gk = k0 + kq;
                if (l < NB && gj < p.n && gk < kz)
                    v = b4[(bb + gj * p.ldb + gk) / 4u];
            }
            pb[j] = v;
        } else {
            for (uint e = 0u; e < 4u; e++) {
                uint l = tid + (j * 4u + e) * WG;
                uint kk = l / BN, jj = l % BN;
                uint gj = col0 + jj, gk = k0 + kk;
                float v = 0.0;
                if (l < BK * BN && gj < p.n && gk < kz)
                    v = b[bb + (TRANS_B != 0u ? gj * p.ldb + gk : gk * p.ldb + gj)];
                pb[j][e] = v;
            }
        }
    }
}

void store_b(uint tid, uint buf)
{
    for (uint j = 0u; j < LB; j++) {
        if (VEC_B != 0u) {
            uint l = tid + j * WG;
            if (l < NB) {
                if (TRANS_B == 0u) {
                    sb[ib(buf, l / QB, l % QB)] = pb[j];
                } else {
                    uint j4 = l / (BK / 4u), kq = (l % (BK / 4u)) * 4u;
                    for (uint e = 0u; e < 4u; e++)
                        sb[ib(buf, kq + e, j4 / 4u)][j4 % 4u] = pb[j][e];
                }
            }
        } else {
            for (uint e = 0u; e < 4u; e++) {
                uint l = tid + (j * 4u + e) * WG;
                if (l < BK * BN)
                    sb[ib(buf, l / BN, (l % BN) / 4u)][l % 4u] = pb[j][e];
            }
        }
    }
}

void main()
{
    uint tid = gl_LocalInvocationID.x;
    uint tx = tid % (BN / TN), ty = tid / (BN / TN);
    uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BN;
    uint z = gl_WorkGroupID.z + p.z0;
    uint kz = z == p.z_last ? p.k_last : p.k;
    uint ba = p.off_a + z * p.stride_a, bb = p.off_b + z * p.stride_b;

    float acc[TM * TN];
    for (uint i = 0u; i < TM * TN; i++)
        acc[i] = 0.0;
    fetch_a(tid, ba, row0, 0u, kz);
    fetch_b(tid, bb, col0, 0u, kz);
    store_a(tid, 0u);
    store_b(tid, 0u);
    barrier();
    uint buf = 0u;
    vec4 ra[HM], rb[HN];
    for (uint k0 = 0u; k0 < kz; k0 += BK) {
        // Uniform over the workgroup, so the barrier below stays in uniform control flow.
        bool more = k0 + BK < kz;
        if (more) {
            fetch_a(tid, ba, row0, k0 + BK, kz);
            fetch_b(tid, bb, col0, k0 + BK, kz);
        }
        for (uint kk = 0u; kk < BK; kk++) {
            for (uint h = 0u; h < HM; h++)
                ra[h] = sa[ia(buf, kk, h * (BM / TM) + ty)];
            for (uint g = 0u; g < HN; g++)
                rb[g] = sb[ib(buf, kk, g * (BN / TN) + tx)];
            for (uint h = 0u; h < HM; h++)
                for (uint r = 0u; r < 4u; r++)
                    for (uint g = 0u; g < HN; g++)
                        for (uint q = 0u; q < 4u; q++) {
                            uint e = (h * 4u + r) * TN + g * 4u + q;
                            acc[e] = fma(ra[h][r], rb[g][q], acc[e]);
                        }
        }
        // The other buffer was last read in the previous slice, before its barrier.
        if (more) {
            store_a(tid, buf ^ 1u);
            store_b(tid, buf ^ 1u);
        }
        barrier();
        buf ^= 1u;
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
    // Register element (r, q) is row r % 4 of block r / 4, column q % 4 of block q / 4; rows grow
    // with r, so the first one past M ends the loop.
    for (uint r = 0u; r < TM; r++) {
        uint gi = row0 + (r / 4u) * (BM / HM) + ty * 4u + r % 4u;
        if (gi >= p.m)
            break;
        for (uint q = 0u; q < TN; q++) {
            uint gj = col0 + (q / 4u) * (BN / HN) + tx * 4u + q % 4u;
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
