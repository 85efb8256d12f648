// f(v) of every LmnUnaryOp (op codes as in ops.h), shared by unary.comp and the GEMM kernels'
// fused epilogue, so an activation applied in a GEMM equals the unary op's bit for bit.
#ifndef LMN_UNARY_F_GLSL
#define LMN_UNARY_F_GLSL
#include "erf.glsl"
#include "transcendental.glsl"

float lmn_unary_f(float v, uint op, float a)
{
    switch (op) {
    case 0: return v;
    case 1: return v <= 0.0 ? 0.0 : v; // NaN passes through, as in torch.relu
    case 2: return 1.0 / (1.0 + exp(-v));
    case 3: return lmn_tanh(v);
    case 4: return v > 0.0 ? v : a * v;
    case 5: return v > 0.0 ? v : a * (exp(v) - 1.0);
    case 6: { float bx = a * v; return bx > 20.0 ? v : lmn_log1p_exp(bx) / a; }
    case 7: return 0.5 * v * (1.0 + lmn_erf(v * 0.70710678118654752));
    case 8: return v > 0.0 ? 1.0 : (v < 0.0 ? -1.0 : v); // 0, -0 and NaN as they are
    case 9: return abs(v);
    case 10: return v * v;
    case 11: return sqrt(v);
    case 12: return 1.0 / sqrt(v);
    case 13: return 1.0 / v;
    case 14: return exp(v);
    case 15: return log(v);
    case 16: return v / (1.0 + exp(-v));
    case 17: { float sp = v > 20.0 ? v : lmn_log1p_exp(v); return v * lmn_tanh(sp); }
    }
    return v;
}
#endif
