// d * f'(x) of every LmnUnaryOp (op codes as in ops.h, 100 the clamp gradient over [a, b]),
// from the input xv or the saved output yv, whichever the function needs; shared by
// unary_backward.comp and the GEMM kernels' fused epilogue, so an activation's backward applied
// in a GEMM equals the op's bit for bit.
#ifndef LMN_UNARY_GRAD_F_GLSL
#define LMN_UNARY_GRAD_F_GLSL
#include "erf.glsl"
#include "transcendental.glsl"

float lmn_unary_grad_f(float xv, float yv, float d, uint op, float a, float b)
{
    switch (op) {
    case 0: return d;
    case 1: return xv <= 0.0 ? 0.0 : d; // at NaN: d, as torch's threshold_backward
    case 2: return d * yv * (1.0 - yv);
    case 3: return d * (1.0 - yv * yv);
    case 4: return xv > 0.0 ? d : a * d;
    case 5: return xv <= 0.0 ? d * a * exp(xv) : d; // at NaN: d, as in torch
    case 6: { float bx = a * xv; float z = exp(bx); return bx > 20.0 ? d : d * z / (z + 1.0); }
    case 7: {
        float cdf = 0.5 * (1.0 + lmn_erf(xv * 0.70710678118654752));
        float pdf = 0.3989422804014327 * exp(-0.5 * xv * xv);
        return d * (cdf + xv * pdf);
    }
    case 8: return 0.0;
    case 9: return xv > 0.0 ? d : (xv < 0.0 ? -d : 0.0);
    case 10: return 2.0 * xv * d;
    case 11: return d * 0.5 / yv;
    case 12: return -0.5 * d * yv * yv * yv;
    case 13: return -d * yv * yv;
    case 14: return d * yv;
    case 15: return d / xv;
    case 16: { float s = 1.0 / (1.0 + exp(-xv)); return d * s * (1.0 + xv * (1.0 - s)); }
    case 17: {
        float sp = xv > 20.0 ? xv : lmn_log1p_exp(xv);
        float t = lmn_tanh(sp), s = 1.0 / (1.0 + exp(-xv));
        return d * (t + xv * s * (1.0 - t * t));
    }
    // 100: the gradient of clamp to [alpha, beta] (hardtanh): d strictly inside, else 0.
    case 100: return xv > a && xv < b ? d : 0.0;
    }
    return d;
}
#endif
