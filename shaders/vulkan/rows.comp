#version 450
// Row ops on tables [rows, dim].  Mode 0 gather: out[i, q] = table[idx[i], q] (0 when the index
// is out of range).  Mode 1 scatter-add, deterministic: invocation (r, q) adds src[i, q] for
// every i with idx[i] == r, in index order.  Mode 2 copy_block: dst[r * ds + q] = src[r * ss + q]
// + beta dst[...] (beta 0 does not read dst).  Indices are f32 (is_int 0) or i32.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer S { float src[]; };
layout(std430, set = 0, binding = 1) readonly buffer IF { float idx_f[]; };
layout(std430, set = 0, binding = 2) readonly buffer II { int idx_i[]; };
layout(std430, set = 0, binding = 3) buffer O { float o[]; };
layout(push_constant) uniform P {
    uint total; uint off_s; uint off_if; uint off_ii; uint off_o;
    uint mode; uint n; uint dim; uint rows; uint is_int; uint ds; uint ss; float beta;
} p;

int row_index(uint i)
{
    if (p.is_int != 0u) {
        int v = idx_i[p.off_ii + i];
        return v >= 0 && uint(v) < p.rows ? v : -1;
    }
    float v = idx_f[p.off_if + i];
    return v >= 0.0 && v < float(p.rows) ? int(v) : -1;
}

void main()
{
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint e = gl_GlobalInvocationID.x; e < p.total; e += stride) {
        uint a = e / p.dim, q = e % p.dim;
        if (p.mode == 0u) {
            int r = row_index(a);
            o[p.off_o + e] = r < 0 ? 0.0 : src[p.off_s + uint(r) * p.dim + q];
        } else if (p.mode == 1u) {
            float acc = o[p.off_o + e];
            for (uint i = 0u; i < p.n; i++)
                if (row_index(i) == int(a))
                    acc += src[p.off_s + i * p.dim + q];
            o[p.off_o + e] = acc;
        } else {
            uint d = p.off_o + a * p.ds + q;
            float v = src[p.off_s + a * p.ss + q];
            o[d] = p.beta == 0.0 ? v : v + p.beta * o[d];
        }
    }
}
