// db[c] = beta db[c] + sum over (o, i) of dy[o, c, i], summed in a fixed order (strided per
// invocation, then a shared-memory tree) so results are deterministic.
//   mode 0: one workgroup per channel;
//   mode 1: p.splits workgroups per channel (y), each summing the s-th of p.splits equal slices
//     of the channel's samples into part[c * splits + s];
//   mode 2: one workgroup per channel adds mode 1's partials in slice order into db.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) buffer DB { float db[]; };
layout(std430, set = 0, binding = 1) readonly buffer DY { float dy[]; };
layout(std430, set = 0, binding = 2) buffer Part { float partials[]; };
layout(push_constant) uniform P {
    uint off_db; uint off_dy; uint outer; uint channels; uint inner; float beta;
    uint mode; uint splits; uint off_part;
} p;
shared float part[1024];

#include "tree.glsl"

void store(uint c, float s)
{
    db[p.off_db + c] = p.beta == 0.0 ? s : p.beta * db[p.off_db + c] + s;
}

void main()
{
    uint c = gl_WorkGroupID.x;
    uint t = gl_LocalInvocationID.x;
    uint count = p.outer * p.inner;
    if (p.mode == 2u) {
        if (t == 0u) {
            precise float s = 0.0;
            for (uint k = 0u; k < p.splits; k++)
                s += partials[p.off_part + c * p.splits + k];
            store(c, s);
        }
        return;
    }
    uint j0 = 0u, j1 = count;
    if (p.mode == 1u) {
        uint len = (count + p.splits - 1u) / p.splits;
        j0 = min(gl_WorkGroupID.y * len, count);
        j1 = min(j0 + len, count);
    }
    float s = 0.0;
    for (uint j = j0 + t; j < j1; j += gl_WorkGroupSize.x) {
        uint o = j / p.inner, i = j % p.inner;
        s += dy[p.off_dy + (o * p.channels + c) * p.inner + i];
    }
    part[t] = s;
    barrier();
    for (uint w = gl_WorkGroupSize.x / 2u; w >= LMN_TREE_FLOOR; w >>= 1) {
        if (t < w)
            part[t] += part[t + w];
        barrier();
    }
#ifdef LMN_SUBGROUP_TREE
    if (gl_SubgroupID != 0u)
        return;
    float total = lmn_lanes_sum(part[gl_SubgroupInvocationID]);
    if (gl_SubgroupInvocationID != 0u)
        return;
#else
    if (t != 0u)
        return;
    float total = part[0];
#endif
    if (p.mode == 1u)
        partials[p.off_part + c * p.splits + gl_WorkGroupID.y] = total;
    else
        store(c, total);
}
