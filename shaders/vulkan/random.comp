#version 450
// Philox-4x32-10 draws, exactly as core/base/random.c and ops.h define them.  Mode 0: dropout
// (mask = u >= p ? keep : 0, y = x mask; element i uses word i % 4 of block i / 4).  Mode 1:
// normal (y = mean + std z, Box-Muller on words 0 and 1 of block i).  Element indices start at
// base (the first element of this chunk).
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) buffer Y { float y[]; };
layout(std430, set = 0, binding = 2) buffer M { float mask[]; };
layout(push_constant) uniform P {
    uint n; uint off_x; uint off_y; uint off_m;
    uint mode; float prob; float keep; float mean; float stddev;
    uint key0; uint key1; uint stream0; uint stream1; uint base_lo; uint base_hi;
} p;

uvec4 philox(uvec4 c, uvec2 k)
{
    for (int round = 0; round < 10; round++) {
        if (round > 0)
            k += uvec2(0x9E3779B9u, 0xBB67AE85u);
        uint hi0, lo0, hi1, lo1;
        umulExtended(0xD2511F53u, c.x, hi0, lo0);
        umulExtended(0xCD9E8D57u, c.z, hi1, lo1);
        c = uvec4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
    }
    return c;
}

void main()
{
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint j = gl_GlobalInvocationID.x; j < p.n; j += stride) {
        // 64-bit element index base + j, without 64-bit integer support.
        uint lo = p.base_lo + j;
        uint hi = p.base_hi + (lo < j ? 1u : 0u);
        if (p.mode == 0u) {
            uvec4 w = philox(uvec4((lo >> 2) | (hi << 30), hi >> 2, p.stream0, p.stream1),
                             uvec2(p.key0, p.key1));
            uint word = w[lo & 3u];
            float u = float(word >> 8) * (1.0 / 16777216.0);
            float m = u >= p.prob ? p.keep : 0.0;
            mask[p.off_m + j] = m;
            y[p.off_y + j] = x[p.off_x + j] * m;
        } else {
            uvec4 w = philox(uvec4(lo, hi, p.stream0, p.stream1), uvec2(p.key0, p.key1));
            float u1 = (float(w.x >> 8) + 1.0) * (1.0 / 16777216.0);
            float u2 = float(w.y >> 8) * (1.0 / 16777216.0);
            // log may err by 2^-21 near 1 (the spec's bound), so -2 log(u1) can come out
            // slightly negative for u1 just below 1: clamped, sqrt never sees it.
            float z = sqrt(max(-2.0 * log(u1), 0.0)) * cos(6.283185307179586 * u2);
            y[p.off_y + j] = p.mean + p.stddev * z;
        }
    }
}
