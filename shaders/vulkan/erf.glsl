// lmn_erf(v): erf in float32 without a single division, accurate under the error bounds the
// Vulkan spec allows real GPUs (exp within 3 + 2|x| ulp): within 6% of the op tests' tolerance
// of the CPU's erff for GELU on a dense grid, worst case included
// (tests/ops/test-shader-precision.c evaluates this very file as C with perturbed exp).
//   |v| < 1:        v * P(v^2), P of degree 7
//   1 <= |v| < 3.92: 1 - exp(Q(|v| - 1)), Q of degree 10 fitting log(erfc)
//   beyond:          +-1 (erfc(3.92) is below half an ulp of 1); NaN stays NaN
// The coefficients are least-squares fits in double on Chebyshev nodes (relative error of P
// 4e-11, absolute error of Q 2e-10), rounded to float.
// Written in the common subset of GLSL and C (abs and exp are macros there).
#ifndef LMN_ERF_GLSL
#define LMN_ERF_GLSL
float lmn_erf(float v)
{
    float a = abs(v);
    if (a < 1.0f) {
        float s = v * v;
        float p = -9.673591194e-06f;
        p = p * s + 1.126825373e-04f;
        p = p * s + -8.484396385e-04f;
        p = p * s + 5.221053492e-03f;
        p = p * s + -2.686543763e-02f;
        p = p * s + 1.128378287e-01f;
        p = p * s + -3.761263788e-01f;
        p = p * s + 1.128379226e+00f;
        return v * p;
    }
    if (a < 3.92f) {
        float u = a - 1.0f;
        float q = -4.778926410e-08f;
        q = q * u + 6.446489920e-07f;
        q = q * u + -1.987010819e-06f;
        q = q * u + -2.196682181e-05f;
        q = q * u + 3.007681516e-04f;
        q = q * u + -2.033935627e-03f;
        q = q * u + 1.006563567e-02f;
        q = q * u + -4.157185927e-02f;
        q = q * u + -8.431053758e-01f;
        q = q * u + -2.638967752e+00f;
        q = q * u + -1.849605560e+00f;
        float r = 1.0f - exp(q);
        return v < 0.0f ? -r : r;
    }
    if (a >= 3.92f)
        return v < 0.0f ? -1.0f : 1.0f;
    return v; // NaN
}
#endif
