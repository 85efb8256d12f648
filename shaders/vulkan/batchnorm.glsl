// Batch normalisation over x viewed as [outer, channels, inner].
//   0 stats: one workgroup per channel, two passes (the mean, then squared deviations from it:
//     one-pass E[x^2] - E[x]^2 loses the variance to cancellation when |mean| >> std).  Each
//     pass sums strided per invocation, then a shared-memory tree: a fixed order, so results
//     are deterministic (in float, where the CPU backend sums in double).
//   1 forward, element-wise: y = (x - mean) * (invstd * weight) + bias.
//   2 backward: one workgroup per channel sums dy and dy * (x - mean) as in mode 0, then writes
//     dx = k (dy - sum(dy) / M - xhat sum(dy xhat) / M) for the channel, dweight, dbias.
// Modes 3-7 are modes 0 and 2 with p.splits workgroups per channel (y), so that a layer with
// few channels still fills a GPU.  Workgroup (c, s) takes the s-th of p.splits equal slices of
// the channel's samples and writes its partial sums to part[c * splits + s] (and, for a second
// sum, part[nparts + c * splits + s]); a later mode adds a channel's partials in slice order, the
// same order in every workgroup that needs them, so results are deterministic:
//   3 stats: the slice's sum of x;
//   4 stats: the mean from mode 3's partials, the slice's sum of squared deviations from it;
//   5 stats (one workgroup per channel): mean and variance from the partials;
//   6 backward: the slice's sums of dy and dy * (x - mean);
//   7 backward: the channel's sums from mode 6's partials, dx over the slice (and, slice 0,
//     dweight and dbias).
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer DY { float dy[]; };
layout(std430, set = 0, binding = 2) readonly buffer Mean { float mean[]; };
layout(std430, set = 0, binding = 3) readonly buffer Var { float var[]; };
layout(std430, set = 0, binding = 4) readonly buffer Weight { float weight[]; };
layout(std430, set = 0, binding = 5) readonly buffer Bias { float bias[]; };
layout(std430, set = 0, binding = 6) buffer Y { float y[]; };
layout(std430, set = 0, binding = 7) buffer O1 { float out1[]; }; // mean or dweight
layout(std430, set = 0, binding = 8) buffer O2 { float out2[]; }; // var or dbias
layout(std430, set = 0, binding = 9) buffer Part { float part[]; }; // modes 3-7
layout(push_constant) uniform P {
    uint mode; uint outer; uint channels; uint inner; float eps;
    uint has_weight; uint has_bias; uint has_out1; uint has_out2;
    uint off_x; uint off_dy; uint off_mean; uint off_var; uint off_w; uint off_b; uint off_y;
    uint off_o1; uint off_o2;
    uint splits; uint nparts; uint off_part;
} p;
shared float sa[1024];
shared float sb[1024];

#include "tree.glsl"

float invstd(uint c)
{
    precise float v = var[p.off_var + c] + p.eps;
    return 1.0 / sqrt(v);
}

uint at(uint c, uint j)
{
    uint o = j / p.inner, i = j % p.inner;
    return (o * p.channels + c) * p.inner + i;
}

// Tree sums of sa (and sb when both) over the workgroup; the totals land in sa[0], sb[0].
void tree(bool both)
{
    uint t = gl_LocalInvocationID.x;
    barrier();
    for (uint w = gl_WorkGroupSize.x / 2u; w >= LMN_TREE_FLOOR; w >>= 1) {
        if (t < w) {
            sa[t] += sa[t + w];
            if (both)
                sb[t] += sb[t + w];
        }
        barrier();
    }
#ifdef LMN_SUBGROUP_TREE
    if (gl_SubgroupID == 0u) {
        // Lane 0 reads element 0 itself, so writing it back races with no other lane.
        uint l = gl_SubgroupInvocationID;
        float ta = lmn_lanes_sum(sa[l]);
        float tb = both ? lmn_lanes_sum(sb[l]) : 0.0;
        if (l == 0u) {
            sa[0] = ta;
            if (both)
                sb[0] = tb;
        }
    }
    barrier();
#endif
}

// The sum of channel @c's partials in slice order, from part[base + c * splits].
float partials(uint c, uint base)
{
    precise float s = 0.0;
    for (uint k = 0u; k < p.splits; k++)
        s += part[p.off_part + base + c * p.splits + k];
    return s;
}

void split_modes()
{
    uint t = gl_LocalInvocationID.x;
    uint n_loc = gl_WorkGroupSize.x;
    uint c = gl_WorkGroupID.x, sl = gl_WorkGroupID.y;
    uint count = p.outer * p.inner;
    uint len = (count + p.splits - 1u) / p.splits;
    uint j0 = min(sl * len, count), j1 = min(j0 + len, count);
    uint slot = c * p.splits + sl;
    if (p.mode == 3u) {
        float s = 0.0;
        for (uint j = j0 + t; j < j1; j += n_loc)
            s += x[p.off_x + at(c, j)];
        sa[t] = s;
        tree(false);
        if (t == 0u)
            part[p.off_part + slot] = sa[0];
        return;
    }
    if (p.mode == 4u) {
        float m = partials(c, 0u) / float(count);
        precise float v = 0.0;
        for (uint j = j0 + t; j < j1; j += n_loc) {
            precise float d = x[p.off_x + at(c, j)] - m;
            v += d * d;
        }
        sa[t] = v;
        tree(false);
        if (t == 0u)
            part[p.off_part + p.nparts + slot] = sa[0];
        return;
    }
    if (p.mode == 5u) {
        if (t == 0u) {
            out1[p.off_o1 + c] = partials(c, 0u) / float(count);
            out2[p.off_o2 + c] = partials(c, p.nparts) / float(count);
        }
        return;
    }
    float m = mean[p.off_mean + c];
    if (p.mode == 6u) {
        precise float a = 0.0, b = 0.0;
        for (uint j = j0 + t; j < j1; j += n_loc) {
            uint q = at(c, j);
            float g = dy[p.off_dy + q];
            a += g;
            precise float d = x[p.off_x + q] - m;
            b += g * d;
        }
        sa[t] = a;
        sb[t] = b;
        tree(true);
        if (t == 0u) {
            part[p.off_part + slot] = sa[0];
            part[p.off_part + p.nparts + slot] = sb[0];
        }
        return;
    }
    // mode 7
    float is = invstd(c);
    precise float sdyx = partials(c, p.nparts) * is;
    float sdy = partials(c, 0u);
    precise float k = is * (p.has_weight != 0u ? weight[p.off_w + c] : 1.0);
    float mdy = sdy / float(count), mdyx = sdyx / float(count);
    for (uint j = j0 + t; j < j1; j += n_loc) {
        uint q = at(c, j);
        precise float xhat = (x[p.off_x + q] - m) * is;
        precise float r = k * (dy[p.off_dy + q] - mdy - xhat * mdyx);
        y[p.off_y + q] = r;
    }
    if (t == 0u && sl == 0u) {
        if (p.has_out1 != 0u)
            out1[p.off_o1 + c] = sdyx;
        if (p.has_out2 != 0u)
            out2[p.off_o2 + c] = sdy;
    }
}

void main()
{
    uint t = gl_LocalInvocationID.x;
    uint n_loc = gl_WorkGroupSize.x;
    if (p.mode >= 3u) {
        split_modes();
        return;
    }
    if (p.mode == 1u) {
        uint total = p.outer * p.channels * p.inner;
        uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
        for (uint e = gl_GlobalInvocationID.x; e < total; e += stride) {
            uint c = (e / p.inner) % p.channels;
            float m = mean[p.off_mean + c];
            precise float k = invstd(c) * (p.has_weight != 0u ? weight[p.off_w + c] : 1.0);
            float b = p.has_bias != 0u ? bias[p.off_b + c] : 0.0;
            precise float r = (x[p.off_x + e] - m) * k + b;
            y[p.off_y + e] = r;
        }
        return;
    }
    uint c = gl_WorkGroupID.x;
    uint count = p.outer * p.inner;
    if (p.mode == 0u) {
        float s = 0.0;
        for (uint j = t; j < count; j += n_loc)
            s += x[p.off_x + at(c, j)];
        sa[t] = s;
        tree(false);
        float m = sa[0] / float(count);
        barrier(); // everyone has read sa[0] before it is reused
        precise float v = 0.0;
        for (uint j = t; j < count; j += n_loc) {
            precise float d = x[p.off_x + at(c, j)] - m;
            v += d * d;
        }
        sa[t] = v;
        tree(false);
        if (t == 0u) {
            out1[p.off_o1 + c] = m;
            out2[p.off_o2 + c] = sa[0] / float(count);
        }
        return;
    }
    float m = mean[p.off_mean + c];
    float is = invstd(c);
    precise float a = 0.0, b = 0.0;
    for (uint j = t; j < count; j += n_loc) {
        uint q = at(c, j);
        float g = dy[p.off_dy + q];
        a += g;
        precise float d = x[p.off_x + q] - m;
        b += g * d;
    }
    sa[t] = a;
    sb[t] = b;
    tree(true);
    precise float sdyx = sb[0] * is;
    float sdy = sa[0];
    precise float k = is * (p.has_weight != 0u ? weight[p.off_w + c] : 1.0);
    float mdy = sdy / float(count), mdyx = sdyx / float(count);
    for (uint j = t; j < count; j += n_loc) {
        uint q = at(c, j);
        precise float xhat = (x[p.off_x + q] - m) * is;
        precise float r = k * (dy[p.off_dy + q] - mdy - xhat * mdyx);
        y[p.off_y + q] = r;
    }
    if (t == 0u) {
        if (p.has_out1 != 0u)
            out1[p.off_o1 + c] = sdyx;
        if (p.has_out2 != 0u)
            out2[p.off_o2 + c] = sdy;
    }
}
