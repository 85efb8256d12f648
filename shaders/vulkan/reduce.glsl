// (reduce.glsl: the body of reduce.comp and reduce_subgroup.comp.)
// Two-pass deterministic reduction.  Pass 0 (mode 0..2 = LmnReduceOp): workgroup g sums block g
// of x (block = ceil(n / groups)) into partial[g].  Pass 1 (mode 3): one workgroup sums the
// partials and writes out[0] = beta out[0] + alpha total, as f32 or (flag) i32.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) buffer Part { float part_buf[]; };
layout(std430, set = 0, binding = 2) buffer OutF { float outf[]; };
layout(std430, set = 0, binding = 3) buffer OutI { int outi[]; };
layout(push_constant) uniform P {
    uint n; uint off_x; uint off_part; uint off_out; uint mode; uint block; float alpha;
    float beta; uint out_int;
} p;
shared float sh[1024];
void main()
{
    uint t = gl_LocalInvocationID.x;
    uint g = gl_WorkGroupID.x;
    float s = 0.0;
    if (p.mode < 3u) {
        uint start = g * p.block;
        uint end = min(p.n, start + p.block);
        for (uint i = start + t; i < end; i += gl_WorkGroupSize.x) {
            float v = x[p.off_x + i];
            s += p.mode == 0u ? v : (p.mode == 1u ? v * v : abs(v));
        }
    } else {
        for (uint i = t; i < p.n; i += gl_WorkGroupSize.x)
            s += part_buf[p.off_part + i];
    }
    sh[t] = s;
    barrier();
#ifdef LMN_REDUCE_SUBGROUP
    // The tree down to one subgroup's width in shared memory, then its last levels in registers:
    // lane l of subgroup 0 holds sh[l] and adds lane l + w, the tree's pairing, so the sum is
    // the same bits with log2(subgroup size) fewer barriers.
    for (uint w = gl_WorkGroupSize.x / 2u; w >= gl_SubgroupSize; w >>= 1) {
        if (t < w)
            sh[t] += sh[t + w];
        barrier();
    }
    if (gl_SubgroupID != 0u)
        return;
    float total = sh[gl_SubgroupInvocationID];
    for (uint w = gl_SubgroupSize / 2u; w > 0u; w >>= 1)
        total += subgroupShuffleDown(total, w);
    if (gl_SubgroupInvocationID != 0u)
        return;
#else
    for (uint w = gl_WorkGroupSize.x / 2u; w > 0u; w >>= 1) {
        if (t < w)
            sh[t] += sh[t + w];
        barrier();
    }
    if (t != 0u)
        return;
    float total = sh[0];
#endif
    if (p.mode < 3u) {
        part_buf[p.off_part + g] = total;
    } else if (p.out_int != 0u) {
        float old = p.beta == 0.0 ? 0.0 : p.beta * float(outi[p.off_out]);
        outi[p.off_out] = int(old + p.alpha * total);
    } else {
        float old = p.beta == 0.0 ? 0.0 : p.beta * outf[p.off_out];
        outf[p.off_out] = old + p.alpha * total;
    }
}
