/* The Vulkan shaders' transcendental formulas under the error bounds the Vulkan spec allows a
 * real GPU, evaluated here in float32 on a dense grid against the CPU backend's formulas with the
 * op tests' tolerance (|vulkan - cpu| <= 2e-6 + 2e-5 |cpu|, tests/vulkan/test-vulkan-ops.c).
 * lavapipe computes exp, log and division exactly, so its runs cannot show these errors.
 *
 * The bounds (Vulkan spec, "Precision and Operation of SPIR-V Instructions"): exp within
 * 3 + 2|x| ulp, log within 3 ulp outside [0.5, 2] and 2^-21 absolute inside, division within
 * 2.5 ulp, tanh inherited from (e^x - e^-x) / (e^x + e^-x).  Each grid point is evaluated with
 * every error at its two extremes and at 0.
 *
 * erf, softplus's log(1 + exp) and tanh come from shaders/vulkan/erf.glsl and
 * transcendental.glsl themselves, compiled here as C (exp, log and tanh are macros for their
 * worst-case versions), so the test checks the code the GPU runs; the expressions around them
 * are transcribed from unary.comp, unary_backward.comp and random.comp.
 */
#include <glib.h>
#include <math.h>

static int err_dir; /* -1, 0 or 1: every perturbed result moves this way by its bound */

static float ulp_of(float v)
{
    int e = 0;
    frexpf(fabsf(v), &e);
    return v == 0.0f ? 1e-45f : ldexpf(1.0f, e - 24);
}

static float spec_exp(float x)
{
    float r = expf(x);
    if (!isfinite(r))
        return r;
    return (float) (r + err_dir * (3.0 + 2.0 * fabs(x)) * ulp_of(r));
}

static float spec_log(float x)
{
    float r = logf(x);
    double bound = x >= 0.5f && x <= 2.0f ? ldexp(1.0, -21) : 3.0 * ulp_of(r);
    return (float) (r + err_dir * bound);
}

static float spec_div(float a, float b)
{
    float q = a / b;
    return isfinite(q) ? (float) (q + err_dir * 2.5 * ulp_of(q)) : q;
}

/* tanh as the spec lets a GPU derive it: (e^x - e^-x) / (e^x + e^-x). */
static float spec_tanh(float x)
{
    float ep = spec_exp(x), em = spec_exp(-x);
    return spec_div(ep - em, ep + em);
}

/* The shaders' functions, from the shader sources themselves. */
float lmn_erf(float v);
float lmn_log1p_exp(float z);
float lmn_tanh(float v);
#define abs fabsf
#define exp spec_exp
#define log spec_log
#define tanh spec_tanh
#define clamp(x, lo, hi) fminf(fmaxf((x), (lo)), (hi))
#include "erf.glsl"
#include "transcendental.glsl"
#undef clamp
#undef tanh
#undef log
#undef exp
#undef abs

static gboolean close_enough(float gpu, float cpu)
{
    if ((isnan(gpu) && isnan(cpu)) || gpu == cpu)
        return TRUE;
    return fabs((double) gpu - (double) cpu) <= 2e-6 + 2e-5 * fabs((double) cpu);
}

/* The grid: [-12, 12] in steps of 2^-11, and the special values. */
#define GRID_N (24 * 2048 + 1)
static float grid(int i)
{
    return -12.0f + (float) i / 2048.0f;
}

static void test_gelu(void)
{
    const float c = 0.70710678118654752f;
    const float inv_sqrt_2pi = 0.3989422804014327f;
    int failures = 0;
    for (err_dir = -1; err_dir <= 1; err_dir++) {
        for (int i = 0; i < GRID_N; i++) {
            float x = grid(i);
            /* unary.comp op 7 and unary_backward.comp op 7 (d = 1) */
            float gpu_y = 0.5f * x * (1.0f + lmn_erf(x * c));
            float cdf = 0.5f * (1.0f + lmn_erf(x * c));
            float gpu_dx = cdf + x * (inv_sqrt_2pi * spec_exp(-0.5f * x * x));
            /* cpu-ops.c */
            float cpu_y = 0.5f * x * (1.0f + erff(x * (float) M_SQRT1_2));
            float cpu_cdf = 0.5f * (1.0f + erff(x * (float) M_SQRT1_2));
            float cpu_dx = cpu_cdf + x * (inv_sqrt_2pi * expf(-0.5f * x * x));
            if (!close_enough(gpu_y, cpu_y) || !close_enough(gpu_dx, cpu_dx)) {
                if (failures++ < 5)
                    g_test_message("x = %.9g (error %d): y %.9g vs %.9g, dx %.9g vs %.9g", x,
                                   err_dir, gpu_y, cpu_y, gpu_dx, cpu_dx);
            }
        }
    }
    err_dir = 0;
    g_assert_cmpint(failures, ==, 0);
}

/* erf itself: within 1e-6 of the exact value everywhere, and the special values. */
static void test_erf(void)
{
    err_dir = 0;
    double worst = 0;
    for (int i = 0; i < GRID_N; i++) {
        float v = grid(i) * 0.5f;
        worst = MAX(worst, fabs((double) lmn_erf(v) - erf((double) v)));
    }
    g_test_message("erf: worst absolute error %.3g", worst);
    g_assert_cmpfloat(worst, <, 1e-6);
    g_assert_true(isnan(lmn_erf(NAN)));
    g_assert_cmpfloat(lmn_erf(INFINITY), ==, 1.0f);
    g_assert_cmpfloat(lmn_erf(-INFINITY), ==, -1.0f);
    g_assert_cmpfloat(lmn_erf(0.0f), ==, 0.0f);
    g_assert_cmpfloat(lmn_erf(3.92f), ==, 1.0f);
}

/* Sigmoid and tanh (unary.comp ops 2 and 3) on [-100, 100]. */
static void test_sigmoid_tanh(void)
{
    int failures = 0;
    for (err_dir = -1; err_dir <= 1; err_dir++) {
        for (int i = 0; i <= 200 * 64; i++) {
            float v = -100.0f + (float) i / 64.0f;
            float sig = spec_div(1.0f, 1.0f + spec_exp(-v));
            if (!close_enough(sig, 1.0f / (1.0f + expf(-v))) ||
                !close_enough(lmn_tanh(v), tanhf(v)))
                failures++;
        }
        /* near 0, where a derived tanh cancels */
        for (int i = -2000; i <= 2000; i++) {
            float v = (float) i * 1e-4f;
            failures += !close_enough(lmn_tanh(v), tanhf(v));
        }
    }
    err_dir = 0;
    g_assert_cmpint(failures, ==, 0);
    g_assert_true(isnan(lmn_tanh(NAN)));
    g_assert_cmpfloat(lmn_tanh(INFINITY), ==, 1.0f);
    /* Without the clamp the derived tanh is inf / inf beyond |x| ~ 88. */
    g_assert_true(isnan(spec_tanh(90.0f)));
}

/* Softplus with beta (unary.comp op 6) and mish (op 17, and its gradient in
 * unary_backward.comp) against cpu-ops.c's log1pf formulas: log(1 + e) for a small e is where
 * log's absolute error near 1 would leave the tolerance. */
static void test_softplus_mish(void)
{
    const float betas[] = {1.0f, 2.0f, 0.1f};
    int failures = 0;
    for (err_dir = -1; err_dir <= 1; err_dir++) {
        for (int i = 0; i < GRID_N; i++) {
            float v = grid(i) * 2.0f;
            for (guint b = 0; b < G_N_ELEMENTS(betas); b++) {
                float a = betas[b], bx = a * v;
                float gpu = bx > 20.0f ? v : lmn_log1p_exp(bx) / a;
                float cpu = bx > 20.0f ? v : log1pf(expf(bx)) / a;
                failures += !close_enough(gpu, cpu);
            }
            float sp = v > 20.0f ? v : lmn_log1p_exp(v);
            float t = lmn_tanh(sp), s = spec_div(1.0f, 1.0f + spec_exp(-v));
            float cpu_sp = v > 20.0f ? v : log1pf(expf(v));
            float cpu_t = tanhf(cpu_sp), cpu_s = 1.0f / (1.0f + expf(-v));
            failures += !close_enough(v * t, v * cpu_t);
            failures += !close_enough(t + v * s * (1.0f - t * t),
                                      cpu_t + v * cpu_s * (1.0f - cpu_t * cpu_t));
        }
    }
    err_dir = 0;
    g_assert_cmpint(failures, ==, 0);
    /* log(1 + e) itself would not do: at v = -8 its error alone is above the tolerance. */
    err_dir = 1;
    float naive = -8.0f * spec_tanh(spec_log(1.0f + spec_exp(-8.0f)));
    err_dir = 0;
    g_assert_false(close_enough(naive, -8.0f * tanhf(log1pf(expf(-8.0f)))));
}

/* Box-Muller (random.comp): u1 = ((w >> 8) + 1) 2^-24 reaches 1, where log's allowed error
 * makes -2 log(u1) positive or negative; the clamp keeps every normal finite. */
static void test_box_muller(void)
{
    int unclamped_nan = 0;
    for (err_dir = -1; err_dir <= 1; err_dir++) {
        for (guint32 top = (1u << 24) - 4096; top < (1u << 24); top++) {
            float u1 = ((float) top + 1.0f) * (1.0f / 16777216.0f);
            float l = -2.0f * spec_log(u1);
            float z = sqrtf(fmaxf(l, 0.0f)) * cosf(0.5f);
            g_assert_true(isfinite(z));
            unclamped_nan += isnan(sqrtf(l));
        }
    }
    err_dir = 0;
    g_assert_cmpint(unclamped_nan, >, 0); /* what the clamp is for */
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/ops/shader-precision/erf", test_erf);
    g_test_add_func("/ops/shader-precision/gelu", test_gelu);
    g_test_add_func("/ops/shader-precision/sigmoid-tanh", test_sigmoid_tanh);
    g_test_add_func("/ops/shader-precision/softplus-mish", test_softplus_mish);
    g_test_add_func("/ops/shader-precision/box-muller", test_box_muller);
    return g_test_run();
}
