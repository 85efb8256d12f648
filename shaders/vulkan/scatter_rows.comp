#version 450
// scatter_add_rows in O(n log^2 n + n dim) work, deterministic (vk-ops.c): each source row's
// table row r and its index i are packed into one key r * n + i, the keys are sorted by a
// bitonic network, and each run of one table row in the sorted keys is summed by one invocation
// per column, in index order (a row's keys ascend with i), onto the table's value.  That is the
// CPU backend's order, so the bits are the same.  The caller keeps rows * n below 2^32 - 1.
// Mode 0: keys[k] = r_k * n + k for a valid row r_k, else ~0u (k >= n too: the padding to N).
// Mode 1: one compare-exchange stage (j, k) of the bitonic sort of the N keys, ascending.
// Mode 2: invocation (k, q), k the first sorted key of its table row: o[r, q] += the rows'
// column q, in order.  Indices are f32 (is_int 0) or i32, as in rows.comp.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer S { float src[]; };
layout(std430, set = 0, binding = 1) readonly buffer IF { float idx_f[]; };
layout(std430, set = 0, binding = 2) readonly buffer II { int idx_i[]; };
layout(std430, set = 0, binding = 3) buffer K { uint keys[]; };
layout(std430, set = 0, binding = 4) buffer O { float o[]; };
layout(push_constant) uniform P {
    uint total; uint off_s; uint off_if; uint off_ii; uint off_o;
    uint mode; uint n; uint dim; uint rows; uint is_int; uint j; uint k;
} p;

const uint NONE = 0xffffffffu;

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
        if (p.mode == 0u) {
            int r = e < p.n ? row_index(e) : -1;
            keys[e] = r < 0 ? NONE : uint(r) * p.n + e;
        } else if (p.mode == 1u) {
            uint l = e ^ p.j;
            if (l <= e)
                continue;
            uint a = keys[e], b = keys[l];
            bool up = (e & p.k) == 0u;
            if (up ? a > b : a < b) {
                keys[e] = b;
                keys[l] = a;
            }
        } else {
            uint s = e / p.dim, q = e % p.dim;
            uint key = keys[s];
            if (key == NONE)
                continue;
            uint r = key / p.n;
            // Sorted ascending, so the key before a valid one is valid too.
            if (s > 0u && keys[s - 1u] / p.n == r)
                continue;
            uint t = p.off_o + r * p.dim + q;
            float acc = o[t];
            for (uint m = s; m < p.n; m++) {
                uint km = keys[m];
                if (km == NONE || km / p.n != r)
                    break;
                acc += src[p.off_s + (km % p.n) * p.dim + q];
            }
            o[t] = acc;
        }
    }
}
