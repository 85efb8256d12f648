// One workgroup per row of logits [rows, k]: probs = softmax(row), and row_loss[r] the
// cross-entropy against (1 - s) onehot(label) + s / k.  Mode 1 instead writes hit[r] = 1 when the
// row's first maximum equals the label (count_correct); probs is then unused.  Mode 2 is mode 0
// that also writes dx = scale (probs - target), as softmax_xent_backward.comp computes it from
// the stored probabilities (lmn_op_softmax_xent_grad).
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer L { int labels[]; };
layout(std430, set = 0, binding = 2) buffer PR { float probs[]; };
layout(std430, set = 0, binding = 3) buffer RL { float row_loss[]; };
layout(std430, set = 0, binding = 4) writeonly buffer DX { float dx[]; };
layout(push_constant) uniform P {
    uint rows; uint k; uint off_x; uint off_l; uint off_p; uint off_rl; float s; uint mode;
    uint off_dx; float scale;
} p;
shared float sh[1024];
shared uint shi[1024];
#define LMN_TREE_SH
#include "tree.glsl"


void main()
{
    uint r = gl_WorkGroupID.x;
    uint t = gl_LocalInvocationID.x;
    uint base = p.off_x + r * p.k;
    int label = labels[p.off_l + r];
    if (p.mode == 1u) {
        // First maximum: reduce (value, index) pairs preferring the larger value, then the
        // smaller index.
        float best = -1.0 / 0.0;
        uint bi = 0xffffffffu;
        for (uint q = t; q < p.k; q += gl_WorkGroupSize.x) {
            float v = x[base + q];
            if (bi == 0xffffffffu || v > best) {
                best = v;
                bi = q;
            }
        }
        sh[t] = best;
        shi[t] = bi;
        barrier();
        for (uint w = gl_WorkGroupSize.x / 2u; w > 0u; w >>= 1) {
            if (t < w) {
                float ov = sh[t + w];
                uint oi = shi[t + w];
                if (oi != 0xffffffffu &&
                    (shi[t] == 0xffffffffu || ov > sh[t] || (ov == sh[t] && oi < shi[t]))) {
                    sh[t] = ov;
                    shi[t] = oi;
                }
            }
            barrier();
        }
        if (t == 0u)
            row_loss[p.off_rl + r] = int(shi[0]) == label ? 1.0 : 0.0;
        return;
    }
    float m = -1.0 / 0.0;
    for (uint q = t; q < p.k; q += gl_WorkGroupSize.x)
        m = max(m, x[base + q]);
    m = lmn_tree_all(m, true);
    float se = 0.0, sx = 0.0;
    for (uint q = t; q < p.k; q += gl_WorkGroupSize.x) {
        float e = exp(x[base + q] - m);
        probs[p.off_p + r * p.k + q] = e;
        se += e;
        sx += x[base + q];
    }
    se = lmn_tree_all(se, false);
    sx = lmn_tree_all(sx, false);
    float inv = 1.0 / se;
    float off = p.s / float(p.k);
    for (uint q = t; q < p.k; q += gl_WorkGroupSize.x) {
        float pv = probs[p.off_p + r * p.k + q] * inv;
        probs[p.off_p + r * p.k + q] = pv;
        if (p.mode == 2u) {
            float v = p.scale * (pv - off);
            if (label == int(q))
                v -= p.scale * (1.0 - p.s);
            dx[p.off_dx + r * p.k + q] = v;
        }
    }
    if (t == 0u) {
        float loss = m + log(se);
        if (p.s != 0.0)
            loss -= p.s / float(p.k) * sx;
        if (label >= 0 && uint(label) < p.k)
            loss -= (1.0 - p.s) * x[base + uint(label)];
        row_loss[p.off_rl + r] = loss;
    }
}
