#version 450
// C = alpha op(A) op(B) + beta C without shared memory: each invocation computes a 4 x 4 block
// of C straight from global memory.  For CPU Vulkan devices (lavapipe), where workgroup
// barriers are expensive (invocations run as coroutines) and "global memory" is the CPU cache;
// the shared-memory tiled gemm.comp is the GPU kernel.  Same push constants as gemm.comp;
// workgroups are 8 x 8 invocations = 32 x 32 outputs.
layout(local_size_x_id = 0, local_size_y_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 2) buffer C { float c[]; };
layout(push_constant) uniform P {
    uint m; uint n; uint k; uint trans_a; uint trans_b; float alpha; float beta;
    uint off_a; uint off_b; uint off_c; uint stride_a; uint stride_b; uint stride_c; uint z0;
} p;
void main()
{
    uint col0 = gl_GlobalInvocationID.x * 4u;
    uint row0 = gl_GlobalInvocationID.y * 4u;
    if (row0 >= p.m || col0 >= p.n)
        return;
    uint z = gl_WorkGroupID.z + p.z0;
    uint ba = p.off_a + z * p.stride_a, bb = p.off_b + z * p.stride_b;
    float acc[4][4];
    for (uint i = 0u; i < 4u; i++)
        for (uint j = 0u; j < 4u; j++)
            acc[i][j] = 0.0;
    // Rows/columns past the edge are clamped for loading and never stored.
    uint rows[4], cols[4];
    for (uint i = 0u; i < 4u; i++) {
        rows[i] = min(row0 + i, p.m - 1u);
        cols[i] = min(col0 + i, p.n - 1u);
    }
    for (uint q = 0u; q < p.k; q++) {
        float va[4], vb[4];
        for (uint i = 0u; i < 4u; i++) {
            va[i] = p.trans_a != 0u ? a[ba + q * p.m + rows[i]] : a[ba + rows[i] * p.k + q];
            vb[i] = p.trans_b != 0u ? b[bb + cols[i] * p.k + q] : b[bb + q * p.n + cols[i]];
        }
        for (uint i = 0u; i < 4u; i++)
            for (uint j = 0u; j < 4u; j++)
                acc[i][j] += va[i] * vb[j];
    }
    for (uint i = 0u; i < 4u; i++) {
        for (uint j = 0u; j < 4u; j++) {
            uint r = row0 + i, cc = col0 + j;
            if (r < p.m && cc < p.n) {
                uint ci = p.off_c + z * p.stride_c + r * p.n + cc;
                c[ci] = p.beta == 0.0 ? p.alpha * acc[i][j] : p.alpha * acc[i][j] + p.beta * c[ci];
            }
        }
    }
}
