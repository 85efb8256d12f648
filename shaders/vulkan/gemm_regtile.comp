#version 450
#extension GL_GOOGLE_include_directive : require
// C = alpha op(A) op(B) + beta C (fp32) without shared memory, for CPU Vulkan devices (lavapipe),
// where a workgroup barrier costs a coroutine switch per invocation and "global memory" is the
// CPU cache; gemm_tiled.comp is the GPU kernel.  Same push constants as gemm_tiled.comp (see
// there).
//
// A workgroup is one row of LX invocations computing TM rows x (LX * TN) columns of C; invocation
// x owns columns col0 + x + j * LX, so the invocations that llvmpipe runs as SIMD lanes read
// neighbouring elements of B and the same elements of A.  The transposes are specialization
// constants so the inner loop has no run-time branch.
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint TM = 4;
layout(constant_id = 2) const uint TN = 4;
layout(constant_id = 3) const uint TRANS_A = 0;
layout(constant_id = 4) const uint TRANS_B = 0;
// The epilogue (lmn_op_gemm_ex) is specialised in: EPI_BIAS adds bias[off_bias + column], then
// EPI_ACT (an LmnUnaryOp, 0 for none) applies that function with act_alpha, as unary.comp does,
// to C itself or, with EPI_SEPARATE, into act_out (laid out as C from off_act), C keeping t.
// EPI_GRAD (an LmnUnaryOp, 0 for none; never with the others) multiplies t by that function's
// derivative, as unary_backward.comp does, from the one of its input or output it needs, read
// through the Bias binding laid out as C from off_bias.
layout(constant_id = 5) const uint EPI_BIAS = 0;
layout(constant_id = 6) const uint EPI_ACT = 0;
layout(constant_id = 7) const uint EPI_SEPARATE = 0;
layout(constant_id = 8) const uint EPI_GRAD = 0;
// EPI_ROWSUMS (never with EPI_SEPARATE): act_out[off_act + i] = the sum over q of op(A)[i, q]
// (lmn_op_gemm_ex's a_row_sums, beta 0), summed in q order with compensation (sum.glsl) by the
// first column of workgroups.
layout(constant_id = 9) const uint EPI_ROWSUMS = 0;

layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };
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

void main()
{
    const uint LX = gl_WorkGroupSize.x;
    uint row0 = gl_WorkGroupID.y * TM;
    uint col0 = gl_WorkGroupID.x * LX * TN + gl_LocalInvocationID.x;
    uint z = gl_WorkGroupID.z + p.z0;
    uint kz = z == p.z_last ? p.k_last : p.k;
    uint ba = p.off_a + z * p.stride_a, bb = p.off_b + z * p.stride_b;
    // Where element q of each row / column starts, and the step between consecutive q: rows and
    // columns past the edge are clamped for loading and never stored.
    uint ia[TM], jb[TN];
    for (uint i = 0u; i < TM; i++) {
        uint r = min(row0 + i, p.m - 1u);
        ia[i] = ba + (TRANS_A != 0u ? r : r * p.lda);
    }
    for (uint j = 0u; j < TN; j++) {
        uint cc = min(col0 + j * LX, p.n - 1u);
        jb[j] = bb + (TRANS_B != 0u ? cc * p.ldb : cc);
    }
    uint step_a = TRANS_A != 0u ? p.lda : 1u;
    uint step_b = TRANS_B != 0u ? 1u : p.ldb;

    float acc[TM * TN];
    for (uint i = 0u; i < TM * TN; i++)
        acc[i] = 0.0;
    float va[TM], vb[TN];
    for (uint q = 0u; q < kz; q++) {
        for (uint i = 0u; i < TM; i++)
            va[i] = a[ia[i] + q * step_a];
        for (uint j = 0u; j < TN; j++)
            vb[j] = b[jb[j] + q * step_b];
        for (uint i = 0u; i < TM; i++)
            for (uint j = 0u; j < TN; j++)
                acc[i * TN + j] = fma(va[i], vb[j], acc[i * TN + j]);
    }

    if (EPI_ROWSUMS != 0u && gl_WorkGroupID.x == 0u && gl_LocalInvocationID.x < TM &&
        row0 + gl_LocalInvocationID.x < p.m) {
        uint i = gl_LocalInvocationID.x;
        LmnSum s = lmn_sum_new();
        for (uint q = 0u; q < kz; q++)
            s = lmn_sum_add(s, a[ia[i] + q * step_a]);
        act_out[p.off_act + row0 + i] = lmn_sum_value(s);
    }

    uint bc = p.off_c + z * p.stride_c;
    for (uint i = 0u; i < TM; i++) {
        uint r = row0 + i;
        if (r >= p.m)
            break;
        for (uint j = 0u; j < TN; j++) {
            uint cc = col0 + j * LX;
            if (cc < p.n) {
                uint ci = bc + r * p.ldc + cc;
                // beta == 0 never reads C: NaN there is overwritten, as in BLAS.
                float v = p.alpha * acc[i * TN + j];
                if (p.beta != 0.0)
                    v += p.beta * c[ci];
                if (EPI_BIAS != 0u)
                    v += bias[p.off_bias + cc];
                if (EPI_GRAD != 0u) {
                    float xy = bias[p.off_bias + r * p.ldc + cc];
                    v = lmn_unary_grad_f(xy, xy, v, EPI_GRAD, p.act_alpha, 0.0);
                }
                if (EPI_ACT != 0u && EPI_SEPARATE != 0u)
                    act_out[p.off_act + r * p.ldc + cc] = lmn_unary_f(v, EPI_ACT, p.act_alpha);
                else if (EPI_ACT != 0u)
                    v = lmn_unary_f(v, EPI_ACT, p.act_alpha);
                c[ci] = v;
            }
        }
    }
}
