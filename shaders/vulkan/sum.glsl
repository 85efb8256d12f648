// A compensated float sum (Neumaier's variant of Kahan's): the running error of each addition is
// carried and added at the end, so a sum of n terms errs by about 2 ulp rather than n ulp.  The
// GEMM kernels sum a dense layer's bias gradient this way, so it rounds as the CPU backend's
// (accumulated in double) does in all but rare ties: training is chaotic enough that n-ulp
// differences in a bias gradient grow into visibly different runs within a few steps, where the
// CPU is the oracle.  `precise` keeps the compiler from contracting or reassociating the terms,
// which would cancel the compensation.
#ifndef LMN_SUM_GLSL
#define LMN_SUM_GLSL

struct LmnSum {
    float s;
    float c;
};

LmnSum lmn_sum_new()
{
    return LmnSum(0.0, 0.0);
}

LmnSum lmn_sum_add(LmnSum a, float v)
{
    precise float t = a.s + v;
    precise float e = abs(a.s) >= abs(v) ? (a.s - t) + v : (v - t) + a.s;
    precise float c = a.c + e;
    return LmnSum(t, c);
}

float lmn_sum_value(LmnSum a)
{
    precise float r = a.s + a.c;
    return r;
}
#endif
