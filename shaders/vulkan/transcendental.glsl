// Element-wise functions robust to the error bounds the Vulkan spec allows real GPUs: log near 1
// errs by up to 2^-21 absolute (so log(1 + e) for a small e loses all its digits), and tanh may
// be derived from exp (so it overflows to inf / inf beyond |x| ~ 88 and cancels near 0).
// tests/ops/test-shader-precision.c evaluates this very file as C with every error at its bound.
// Written in the common subset of GLSL and C (exp, log, tanh, clamp are macros there).
#ifndef LMN_TRANSCENDENTAL_GLSL
#define LMN_TRANSCENDENTAL_GLSL

// log(1 + exp(z)), the softplus of z, for z <= 20 (callers return z itself beyond): the series of
// log(1 + e) while e = exp(z) < 0.1 (truncation below 1.2e-10), log(1 + e) above.
float lmn_log1p_exp(float z)
{
    float e = exp(z);
    if (e < 0.1f) {
        float p = -0.125f;
        p = p * e + 0.142857143f;
        p = p * e + -0.166666667f;
        p = p * e + 0.2f;
        p = p * e + -0.25f;
        p = p * e + 0.333333333f;
        p = p * e + -0.5f;
        p = p * e + 1.0f;
        return e * p;
    }
    return log(1.0f + e);
}

// tanh: its series below |v| = 0.1 (truncation below 2e-11), else tanh of the argument clamped to
// [-10, 10] (tanh(+-10) is +-1 in float); NaN stays NaN.
float lmn_tanh(float v)
{
    if (isnan(v))
        return v;
    float a = abs(v);
    if (a < 0.1f) {
        float s = v * v;
        float p = -0.0539682540f;
        p = p * s + 0.133333333f;
        p = p * s + -0.333333333f;
        p = p * s + 1.0f;
        return v * p;
    }
    return tanh(clamp(v, -10.0f, 10.0f));
}
#endif
