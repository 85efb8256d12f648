// The implicit-GEMM convolution kernel shared by conv2d_forward.comp, conv2d_backward_data.comp
// and conv2d_backward_weights.comp (vk-conv.c dispatches them).  Each op is a GEMM
//   out[m][j] = sum over q of A(m, q) * B(q, j)
// whose B operand, the patch matrix, is never materialised: the including shader says how a
// reduction index q (a "row" of B) and a column j decode into offsets and coordinates (row_info,
// col_info, both ivec4) and reads B straight from the image (b_val).  A(m, q) is
// a[off_a + row.w + m * A_M_STRIDE], the output element out[m][j] is o[off_c + col.w +
// m * C_M_STRIDE] (plus the split slice's offset).
//
// A workgroup of RM * RN invocations computes a BM x BN block (BM = RM * TM, BN = RN * TN); the
// invocation (tx, ty) owns rows ty + i RM and columns tx + j RN, so neighbouring invocations read
// neighbouring columns of B and the same elements of A.  Workgroup z is (group, K slice): slice s
// sums q in [s * slice, min(kdim, (s + 1) * slice)).  With SHARED the K loop steps through BK-row
// tiles of A and B staged in shared memory (GPUs); without it every invocation reads its operands
// directly (CPU devices such as lavapipe, where a barrier costs a coroutine switch).  llvmpipe
// ends a shader after 65535 loop iterations in all, so vk-conv.c keeps each slice shorter than
// that, splitting long reductions of every op.  Either way
// each output is one invocation's fma chain over q in increasing order: no atomics, and the
// result depends on the shape and the split count only, so it is bit-identical run to run.
//
// The including shader defines, before #include: A_M_STRIDE, C_M_STRIDE (int expressions of p),
// ivec4 row_info(uint q, uint g), ivec4 row_invalid() (a row whose b_val is 0 for every column),
// ivec4 col_info(uint j, uint g), float b_val(ivec4 row, ivec4 col), and for stepping q without
// divisions ivec2 row_extents() (q's innermost and middle extents) and row_deltas(d0, d1, d2)
// (what row_info gains from q to q + 1 when neither, the innermost, or both of them wrap).

const uint BK = 16u;
const uint WG = RM * RN;
const uint BM = RM * TM;
const uint BN = RN * TN;
const uint SA = BM + 1u;
const uint SB = BN + 1u;

shared float sa[SHARED != 0u ? BK * SA : 1u];
shared float sb[SHARED != 0u ? BK * SB : 1u];
shared ivec4 srow[SHARED != 0u ? BK : 1u];
shared ivec4 scol[SHARED != 0u ? BN : 1u];

float a_val(uint m, ivec4 r)
{
    return a[p.off_a + uint(r.w) + m * uint(A_M_STRIDE)];
}

void main()
{
    const uint tid = gl_LocalInvocationID.x;
    const uint tx = tid % RN, ty = tid / RN;
    const uint col0 = (gl_WorkGroupID.x + p.x0) * BN;
    const uint row0 = (gl_WorkGroupID.y + p.y0) * BM;
    const uint z = gl_WorkGroupID.z + p.z0;
    const uint g = z / p.splits, s = z % p.splits;
    const uint q0 = s * p.slice;
    const uint q1 = min(p.kdim, q0 + p.slice);

    float acc[TM * TN];
    for (uint i = 0u; i < TM * TN; i++)
        acc[i] = 0.0;
    float va[TM], vb[TN];
    if (SHARED == 0u) {
        // Rows and columns past the edge are clamped for loading and never stored.
        ivec4 cj[TN];
        for (uint j = 0u; j < TN; j++)
            cj[j] = col_info(min(col0 + tx + j * RN, p.n - 1u), g);
        uint mi[TM];
        for (uint i = 0u; i < TM; i++)
            mi[i] = min(row0 + ty + i * RM, p.m - 1u);
        // The row info advances by additions: q is (outer, mid c1, inner c0) with extents
        // row_extents(), and the step adds d0, or d1 when c0 wraps, or d2 when c1 wraps too
        // (q is the same in every invocation, so the branches are uniform).
        ivec2 ext = row_extents();
        ivec4 d0, d1, d2;
        row_deltas(d0, d1, d2);
        ivec4 r = row_info(q0, g);
        int c0 = int(q0) % ext.x, c1 = (int(q0) / ext.x) % ext.y;
        for (uint q = q0; q < q1; q++) {
            for (uint i = 0u; i < TM; i++)
                va[i] = a_val(mi[i], r);
            for (uint j = 0u; j < TN; j++)
                vb[j] = b_val(r, cj[j]);
            for (uint i = 0u; i < TM; i++)
                for (uint j = 0u; j < TN; j++)
                    acc[i * TN + j] = fma(va[i], vb[j], acc[i * TN + j]);
            if (++c0 < ext.x) {
                r += d0;
            } else {
                c0 = 0;
                if (++c1 < ext.y) {
                    r += d1;
                } else {
                    c1 = 0;
                    r += d2;
                }
            }
        }
    } else {
        for (uint l = tid; l < BN; l += WG)
            scol[l] = col_info(min(col0 + l, p.n - 1u), g);
        for (uint k0 = q0; k0 < q1; k0 += BK) {
            if (tid < BK)
                srow[tid] = k0 + tid < q1 ? row_info(k0 + tid, g) : row_invalid();
            barrier();
            for (uint l = tid; l < BM * BK; l += WG) {
                uint kk = l / BM, i = l % BM;
                // Zero (not a clamped load) past the slice: 0 * inf would be NaN.
                sa[kk * SA + i] =
                    k0 + kk < q1 && row0 + i < p.m ? a_val(row0 + i, srow[kk]) : 0.0;
            }
            for (uint l = tid; l < BN * BK; l += WG) {
                uint kk = l / BN, j = l % BN;
                sb[kk * SB + j] = b_val(srow[kk], scol[j]);
            }
            barrier();
            for (uint kk = 0u; kk < BK; kk++) {
                for (uint i = 0u; i < TM; i++)
                    va[i] = sa[kk * SA + ty + i * RM];
                for (uint j = 0u; j < TN; j++)
                    vb[j] = sb[kk * SB + tx + j * RN];
                for (uint i = 0u; i < TM; i++)
                    for (uint j = 0u; j < TN; j++)
                        acc[i * TN + j] = fma(va[i], vb[j], acc[i * TN + j]);
            }
            barrier();
        }
    }

    // Slice s of a split reduction writes its own copy of the output (vk-conv.c sums them).
    const uint slice_off = s * p.slice_stride;
    for (uint j = 0u; j < TN; j++) {
        uint cn = col0 + tx + j * RN;
        if (cn >= p.n)
            break;
        ivec4 c = SHARED != 0u ? scol[tx + j * RN] : col_info(cn, g);
        for (uint i = 0u; i < TM; i++) {
            uint m = row0 + ty + i * RM;
            if (m >= p.m)
                break;
            uint oi = p.off_c + slice_off + uint(c.w) + m * uint(C_M_STRIDE);
            // beta == 0 never reads the output: NaN there is overwritten.
            float v = acc[i * TN + j];
            if (p.beta != 0.0)
                v += p.beta * o[oi];
            o[oi] = v;
        }
    }
}
