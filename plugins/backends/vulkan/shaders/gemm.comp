#version 450
// C = alpha op(A) op(B) + beta C, row-major, tiled through shared memory (tile TS x TS, padded
// against bank conflicts).  Batch entry = workgroup z; strides may be 0 to broadcast.
layout(local_size_x_id = 0, local_size_y_id = 0) in;
layout(constant_id = 0) const uint TS = 16;
layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 2) buffer C { float c[]; };
layout(push_constant) uniform P {
    uint m; uint n; uint k; uint trans_a; uint trans_b; float alpha; float beta;
    uint off_a; uint off_b; uint off_c; uint stride_a; uint stride_b; uint stride_c; uint z0;
} p;
shared float ta[TS][TS + 1];
shared float tb[TS][TS + 1];
void main()
{
    uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    uint col = gl_WorkGroupID.x * TS + tx;
    uint row = gl_WorkGroupID.y * TS + ty;
    uint z = gl_WorkGroupID.z + p.z0;
    uint ba = p.off_a + z * p.stride_a, bb = p.off_b + z * p.stride_b;
    float acc = 0.0;
    for (uint k0 = 0u; k0 < p.k; k0 += TS) {
        // ta[ty][tx] = op(A)[row][k0 + tx]; tb[ty][tx] = op(B)[k0 + ty][col]
        uint ka = k0 + tx;
        float va = 0.0;
        if (row < p.m && ka < p.k)
            va = p.trans_a != 0u ? a[ba + ka * p.m + row] : a[ba + row * p.k + ka];
        ta[ty][tx] = va;
        uint kb = k0 + ty;
        float vb = 0.0;
        if (col < p.n && kb < p.k)
            vb = p.trans_b != 0u ? b[bb + col * p.k + kb] : b[bb + kb * p.n + col];
        tb[ty][tx] = vb;
        barrier();
        for (uint q = 0u; q < TS; q++)
            acc += ta[ty][q] * tb[q][tx];
        barrier();
    }
    if (row < p.m && col < p.n) {
        uint ci = p.off_c + z * p.stride_c + row * p.n + col;
        c[ci] = p.beta == 0.0 ? p.alpha * acc : p.alpha * acc + p.beta * c[ci];
    }
}
