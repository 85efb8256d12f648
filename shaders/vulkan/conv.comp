#version 450
// im2col, col2im and 2-D pooling over (batch * channels) planes; every mode writes each output
// element from one invocation, so nothing needs atomics and results are deterministic.
//   0 im2col: cols[u, (ki, kj), (oh, ow)] = x[u, oh sh - ph + ki dh, ow sw - pw + kj dw] or 0.
//   1 col2im: dx[u, h, w] = sum of the cols entries that im2col copied from (h, w), added in
//     (ki, kj) order as the CPU backend adds them.
//   2 max pool: y and argmax (h * W + w) of each window; padding never wins, the first maximum
//     wins, a NaN wins over numbers and the first NaN is kept; an all-padding window gives 0, -1.
//   3 average pool: the window sum in row-major order divided by kh * kw.
//   4 max pool backward: dx[u, h, w] = sum of dy over the windows whose argmax is (h, w), in
//     output order.
//   5 average pool backward: dx[u, h, w] = sum of dy / (kh * kw) over the windows containing
//     (h, w), in output order.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer In { float src[]; };
layout(std430, set = 0, binding = 1) buffer Out { float dst[]; };
layout(std430, set = 0, binding = 2) buffer Arg { int arg[]; };
layout(push_constant) uniform P {
    uint mode; uint total; uint off_in; uint off_out; uint off_arg;
    int H; int W; int KH; int KW; int SH; int SW; int PH; int PW; int DH; int DW; int OH; int OW;
} p;

bool is_nan(float v)
{
    // On the bits: drivers may fold isnan() away under their float assumptions.
    return (floatBitsToUint(v) & 0x7fffffffu) > 0x7f800000u;
}

// The range [lo, hi) of kernel (or output) indices k with start + k * step in [0, size).
void valid_range(int start, int step, int size, int count, out int lo, out int hi)
{
    int l = start >= 0 ? 0 : (-start + step - 1) / step;
    int h = size - 1 - start < 0 ? 0 : (size - 1 - start) / step + 1;
    l = min(l, count);
    hi = clamp(h, l, count);
    lo = l;
}

// Output indices o in [0, out) with o * stride == t - k * dil for some kernel index k in
// [0, kn): the windows that contain input coordinate t (t already includes the padding).
void windows_range(int t, int stride, int dil, int kn, int outn, out int lo, out int hi)
{
    // o * stride <= t  and  o * stride >= t - (kn - 1) * dil
    int a = t - (kn - 1) * dil;
    lo = a <= 0 ? 0 : (a + stride - 1) / stride;
    hi = t < 0 ? 0 : min(t / stride + 1, outn);
    lo = min(lo, hi);
}

bool hits(int t, int o, int stride, int dil, int kn)
{
    int r = t - o * stride;
    return r >= 0 && r % dil == 0 && r / dil < kn;
}

void main()
{
    uint stride_inv = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    uint plane_in = uint(p.H * p.W), plane_out = uint(p.OH * p.OW);
    uint kk = uint(p.KH * p.KW);
    for (uint e = gl_GlobalInvocationID.x; e < p.total; e += stride_inv) {
        if (p.mode == 0u) {
            int ow = int(e % uint(p.OW));
            int oh = int((e / uint(p.OW)) % uint(p.OH));
            uint r = e / plane_out;
            int kj = int(r % uint(p.KW));
            int ki = int((r / uint(p.KW)) % uint(p.KH));
            uint u = r / kk;
            int ih = oh * p.SH - p.PH + ki * p.DH;
            int iw = ow * p.SW - p.PW + kj * p.DW;
            float v = 0.0;
            if (ih >= 0 && ih < p.H && iw >= 0 && iw < p.W)
                v = src[p.off_in + u * plane_in + uint(ih * p.W + iw)];
            dst[p.off_out + e] = v;
        } else if (p.mode == 1u) {
            int w = int(e % uint(p.W));
            int h = int((e / uint(p.W)) % uint(p.H));
            uint u = e / plane_in;
            float s = 0.0;
            for (int ki = 0; ki < p.KH; ki++) {
                int th = h + p.PH - ki * p.DH;
                if (th < 0 || th % p.SH != 0 || th / p.SH >= p.OH)
                    continue;
                int oh = th / p.SH;
                for (int kj = 0; kj < p.KW; kj++) {
                    int tw = w + p.PW - kj * p.DW;
                    if (tw < 0 || tw % p.SW != 0 || tw / p.SW >= p.OW)
                        continue;
                    int ow = tw / p.SW;
                    uint row = u * kk + uint(ki * p.KW + kj);
                    s += src[p.off_in + row * plane_out + uint(oh * p.OW + ow)];
                }
            }
            dst[p.off_out + e] = s;
        } else if (p.mode == 2u || p.mode == 3u) {
            int ow = int(e % uint(p.OW));
            int oh = int((e / uint(p.OW)) % uint(p.OH));
            uint u = e / plane_out;
            int h0 = oh * p.SH - p.PH, w0 = ow * p.SW - p.PW;
            int i0, i1, j0, j1;
            valid_range(h0, p.DH, p.H, p.KH, i0, i1);
            valid_range(w0, p.DW, p.W, p.KW, j0, j1);
            uint base = p.off_in + u * plane_in;
            if (p.mode == 2u) {
                float best = 0.0;
                int at_best = -1;
                for (int ki = i0; ki < i1; ki++)
                    for (int kj = j0; kj < j1; kj++) {
                        int at = (h0 + ki * p.DH) * p.W + w0 + kj * p.DW;
                        float v = src[base + uint(at)];
                        if (at_best < 0 || v > best || (is_nan(v) && !is_nan(best))) {
                            best = v;
                            at_best = at;
                        }
                    }
                dst[p.off_out + e] = best;
                arg[p.off_arg + e] = at_best;
            } else {
                float s = 0.0;
                for (int ki = i0; ki < i1; ki++)
                    for (int kj = j0; kj < j1; kj++)
                        s += src[base + uint((h0 + ki * p.DH) * p.W + w0 + kj * p.DW)];
                dst[p.off_out + e] = s / float(kk);
            }
        } else {
            int w = int(e % uint(p.W));
            int h = int((e / uint(p.W)) % uint(p.H));
            uint u = e / plane_in;
            int at = h * p.W + w;
            int oh0, oh1, ow0, ow1;
            windows_range(h + p.PH, p.SH, p.DH, p.KH, p.OH, oh0, oh1);
            windows_range(w + p.PW, p.SW, p.DW, p.KW, p.OW, ow0, ow1);
            float s = 0.0;
            for (int oh = oh0; oh < oh1; oh++) {
                if (!hits(h + p.PH, oh, p.SH, p.DH, p.KH))
                    continue;
                for (int ow = ow0; ow < ow1; ow++) {
                    if (!hits(w + p.PW, ow, p.SW, p.DW, p.KW))
                        continue;
                    uint o = u * plane_out + uint(oh * p.OW + ow);
                    if (p.mode == 4u) {
                        if (arg[p.off_arg + o] == at)
                            s += src[p.off_in + o];
                    } else {
                        s += src[p.off_in + o] / float(kk);
                    }
                }
            }
            dst[p.off_out + e] = s;
        }
    }
}
