#version 450
// 2-D resampling over planes (batch * channels), as the CPU backend's cpu-ops-spatial.c, with
// the same float arithmetic and loop order (`precise` keeps the driver from fusing it):
//   forward:  y[u, oy, ox] from the one (nearest) or four (bilinear) input pixels it reads;
//   backward: dx[u, iy, ix] = sum over a window of output rows oy of wy * (sum over a window of
//             output columns ox of wx * dy[u, oy, ox]), a gather, so no atomics are needed.
// mode 0 nearest, 1 bilinear.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer In { float src[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Out { float dst[]; };
layout(push_constant) uniform P {
    uint mode; uint backward; uint total; uint off_in; uint off_out;
    int IH; int IW; int OH; int OW; float SH; float SW; uint align_corners;
} p;

struct Tap { int i0; int i1; float l0; float l1; };

Tap axis_tap(float scale, int n, int o)
{
    Tap t;
    if (p.mode == 0u) {
        precise float f = float(o) * scale;
        int i = min(int(floor(f)), n - 1);
        t.i0 = i; t.i1 = i; t.l0 = 1.0; t.l1 = 0.0;
        return t;
    }
    precise float s;
    if (p.align_corners != 0u)
        s = scale * float(o);
    else
        s = scale * (float(o) + 0.5) - 0.5;
    s = max(s, 0.0);
    int i0 = min(int(s), n - 1);
    precise float l1 = s - float(i0);
    t.i0 = i0; t.i1 = i0 + (i0 < n - 1 ? 1 : 0); t.l0 = 1.0 - l1; t.l1 = l1;
    return t;
}

float tap_weight(Tap t, int i)
{
    precise float w = (t.i0 == i ? t.l0 : 0.0) + (t.i1 == i ? t.l1 : 0.0);
    return w;
}

// Output indices [lo, hi] that may read input index i (see cpu-ops-spatial.c).
void axis_window(float scale, int n, int outn, int i, out int lo, out int hi)
{
    if (scale <= 0.0) { lo = 0; hi = outn - 1; return; }
    precise float c = (p.mode == 1u && p.align_corners == 0u) ? 0.5 * scale - 0.5 : 0.0;
    precise float a = floor((float(i) - 1.0 - c) / scale) - 1.0;
    precise float b = ceil((float(i) + 1.0 - c) / scale) + 1.0;
    lo = a <= 0.0 ? 0 : int(min(a, float(outn - 1)));
    hi = (i == n - 1 || b >= float(outn - 1)) ? outn - 1 : int(max(b, 0.0));
}

float forward_at(uint base, int oy, int ox)
{
    Tap ty = axis_tap(p.SH, p.IH, oy);
    Tap tx = axis_tap(p.SW, p.IW, ox);
    uint r0 = base + uint(ty.i0 * p.IW), r1 = base + uint(ty.i1 * p.IW);
    if (p.mode == 0u)
        return src[r0 + uint(tx.i0)];
    precise float top = tx.l0 * src[r0 + uint(tx.i0)] + tx.l1 * src[r0 + uint(tx.i1)];
    precise float bot = tx.l0 * src[r1 + uint(tx.i0)] + tx.l1 * src[r1 + uint(tx.i1)];
    precise float v = ty.l0 * top + ty.l1 * bot;
    return v;
}

float backward_at(uint base, int iy, int ix)
{
    int ylo, yhi, xlo, xhi;
    axis_window(p.SH, p.IH, p.OH, iy, ylo, yhi);
    axis_window(p.SW, p.IW, p.OW, ix, xlo, xhi);
    precise float sum = 0.0;
    for (int oy = ylo; oy <= yhi; oy++) {
        float wy = tap_weight(axis_tap(p.SH, p.IH, oy), iy);
        if (wy == 0.0)
            continue;
        precise float row = 0.0;
        for (int ox = xlo; ox <= xhi; ox++)
            row += tap_weight(axis_tap(p.SW, p.IW, ox), ix) * src[base + uint(oy * p.OW + ox)];
        sum += wy * row;
    }
    return sum;
}

void main()
{
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    uint plane_in = uint(p.IH * p.IW), plane_out = uint(p.OH * p.OW);
    for (uint e = gl_GlobalInvocationID.x; e < p.total; e += stride) {
        if (p.backward == 0u) {
            uint u = e / plane_out, r = e % plane_out;
            dst[p.off_out + e] =
                forward_at(p.off_in + u * plane_in, int(r / uint(p.OW)), int(r % uint(p.OW)));
        } else {
            uint u = e / plane_in, r = e % plane_in;
            dst[p.off_out + e] =
                backward_at(p.off_in + u * plane_out, int(r / uint(p.IW)), int(r % uint(p.IW)));
        }
    }
}
