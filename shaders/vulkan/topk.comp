#version 450
// Top-k along the middle axis of x viewed as [outer, axis, inner].  Mode 0: one invocation per
// (o, i) insertion-sorts the axis into the k slots of values and indices ([outer, k, inner]):
// larger first, NaN above every number, ties by the lower index (torch.topk's order).  Mode 1
// (backward): one invocation per dx element looks for its position among the k indices, x then
// holding dy [outer, k, inner].
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) buffer V { float v[]; };
layout(std430, set = 0, binding = 2) buffer I { int idx[]; };
layout(push_constant) uniform P {
    uint n; uint off_x; uint off_v; uint off_i; uint axis; uint inner; uint k; uint mode;
} p;

bool before(float va, int ia, float vb, int ib)
{
    if (isnan(va) != isnan(vb))
        return isnan(va);
    if (!isnan(va) && va != vb)
        return va > vb;
    return ia < ib;
}

void select_one(uint t)
{
    uint o = t / p.inner, i = t % p.inner;
    uint bx = p.off_x + o * p.axis * p.inner + i;
    uint bv = p.off_v + o * p.k * p.inner + i, bi = p.off_i + o * p.k * p.inner + i;
    uint filled = 0u;
    for (uint a = 0u; a < p.axis; a++) {
        float xv = x[bx + a * p.inner];
        uint at = filled;
        while (at > 0u && before(xv, int(a), v[bv + (at - 1u) * p.inner], idx[bi + (at - 1u) * p.inner]))
            at--;
        if (at >= p.k)
            continue;
        for (uint s = min(filled, p.k - 1u); s > at; s--) {
            v[bv + s * p.inner] = v[bv + (s - 1u) * p.inner];
            idx[bi + s * p.inner] = idx[bi + (s - 1u) * p.inner];
        }
        v[bv + at * p.inner] = xv;
        idx[bi + at * p.inner] = int(a);
        filled = min(filled + 1u, p.k);
    }
}

void backward_one(uint t)
{
    uint i = t % p.inner, a = (t / p.inner) % p.axis, o = t / (p.inner * p.axis);
    float d = 0.0;
    for (uint s = 0u; s < p.k; s++) {
        uint at = (o * p.k + s) * p.inner + i;
        if (idx[p.off_i + at] == int(a))
            d = x[p.off_x + at];
    }
    v[p.off_v + t] = d;
}

void main()
{
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint t = gl_GlobalInvocationID.x; t < p.n; t += stride) {
        if (p.mode == 0u)
            select_one(t);
        else
            backward_one(t);
    }
}
