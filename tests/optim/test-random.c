/* Tests of Philox-4x32-10 and LmnRandom: Random123's known answers, the documented counter
 * layout, distribution moments within 5-sigma bounds computed from the sample size, and the
 * unbiasedness of lmn_random_below and lmn_random_shuffle.
 */
#include <lamina/lamina.h>

#include <math.h>

/* Random123's kat_vectors for philox4x32_10. */
static void test_philox_known_answers(void)
{
    static const struct {
        guint32 ctr[4];
        guint32 key[2];
        guint32 expect[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (gsize i = 0; i < G_N_ELEMENTS(kat); i++) {
        guint32 out[4];
        lmn_philox4x32(kat[i].key, kat[i].ctr, out);
        for (int w = 0; w < 4; w++)
            g_assert_cmphex(out[w], ==, kat[i].expect[w]);
    }
}

/* random.h's layout: ctr = (position lo, hi, stream lo, hi), key = (seed lo, hi). */
static void test_random_layout(void)
{
    const guint64 seed = G_GUINT64_CONSTANT(0x0123456789abcdef);
    const guint64 stream = LMN_STREAM(LMN_STREAM_SHUFFLE, 7);
    LmnRandom r;
    lmn_random_init(&r, seed, stream);

    const guint32 key[2] = {(guint32) seed, (guint32) (seed >> 32)};
    for (guint32 pos = 0; pos < 3; pos++) {
        const guint32 ctr[4] = {pos, 0, (guint32) stream, (guint32) (stream >> 32)};
        guint32 block[4];
        lmn_philox4x32(key, ctr, block);
        for (int w = 0; w < 4; w++)
            g_assert_cmphex(lmn_random_u32(&r), ==, block[w]);
    }
    g_assert_cmpuint(r.position, ==, 3);
    g_assert_cmpuint(LMN_STREAM(LMN_STREAM_SHUFFLE, 7), ==, (G_GUINT64_CONSTANT(2) << 32) | 7);

    /* A 64-bit position crosses into ctr[1]. */
    LmnRandom far;
    lmn_random_init(&far, seed, stream);
    far.position = G_GUINT64_CONSTANT(0x100000002);
    const guint32 ctr_far[4] = {2, 1, (guint32) stream, (guint32) (stream >> 32)};
    guint32 block_far[4];
    lmn_philox4x32(key, ctr_far, block_far);
    g_assert_cmphex(lmn_random_u32(&far), ==, block_far[0]);
}

/* Copying the plain struct saves the stream: the copy continues identically. */
static void test_random_copy_resumes(void)
{
    LmnRandom r;
    lmn_random_init(&r, 42, 3);
    lmn_random_u32(&r);
    lmn_random_normal(&r); /* leaves a spare normal pending */
    LmnRandom saved = r;
    double a[9], b[9];
    for (int i = 0; i < 9; i++)
        a[i] = i % 3 == 0 ? lmn_random_normal(&r) : (double) lmn_random_u32(&r);
    for (int i = 0; i < 9; i++)
        b[i] = i % 3 == 0 ? lmn_random_normal(&saved) : (double) lmn_random_u32(&saved);
    for (int i = 0; i < 9; i++)
        g_assert_cmpfloat(a[i], ==, b[i]);
}

static void test_random_streams_differ(void)
{
    LmnRandom a, b, c;
    lmn_random_init(&a, 1, 0);
    lmn_random_init(&b, 1, 1);
    lmn_random_init(&c, 2, 0);
    int same_ab = 0, same_ac = 0;
    for (int i = 0; i < 64; i++) {
        guint32 x = lmn_random_u32(&a), y = lmn_random_u32(&b), z = lmn_random_u32(&c);
        same_ab += x == y;
        same_ac += x == z;
    }
    g_assert_cmpint(same_ab, <, 2);
    g_assert_cmpint(same_ac, <, 2);
}

/* Mean and variance of @n draws against (mean, var) and the 4th central moment @mu4:
 * the sample mean has sd sqrt(var/n), the sample variance about sqrt((mu4 - var^2)/n). */
static void assert_moments(const double *x, gsize n, double mean, double var, double mu4)
{
    double sum = 0.0;
    for (gsize i = 0; i < n; i++)
        sum += x[i];
    double m = sum / (double) n;
    double ss = 0.0;
    for (gsize i = 0; i < n; i++)
        ss += (x[i] - m) * (x[i] - m);
    double v = ss / (double) (n - 1);
    g_assert_cmpfloat(fabs(m - mean), <=, 5.0 * sqrt(var / (double) n));
    g_assert_cmpfloat(fabs(v - var), <=, 5.0 * sqrt((mu4 - var * var) / (double) n));
}

#define N_MOMENTS 400000

static void test_random_uniform(void)
{
    LmnRandom r, copy;
    lmn_random_init(&r, 7, 11);
    copy = r;
    double *x = g_new(double, N_MOMENTS);
    for (gsize i = 0; i < N_MOMENTS; i++) {
        float u = lmn_random_uniform(&r);
        /* exactly the documented 24-bit construction */
        g_assert_cmpfloat(u, ==, (float) (lmn_random_u32(&copy) >> 8) * 0x1p-24f);
        g_assert_cmpfloat(u, >=, 0.0f);
        g_assert_cmpfloat(u, <, 1.0f);
        x[i] = u;
    }
    assert_moments(x, N_MOMENTS, 0.5, 1.0 / 12.0, 1.0 / 80.0);

    for (gsize i = 0; i < N_MOMENTS; i++) {
        double u = lmn_random_uniform_double(&r);
        g_assert_cmpfloat(u, >=, 0.0);
        g_assert_cmpfloat(u, <, 1.0);
        x[i] = u;
    }
    assert_moments(x, N_MOMENTS, 0.5, 1.0 / 12.0, 1.0 / 80.0);
    /* 53 bits: the low bits of the significand vary (24-bit floats would leave them zero). */
    gboolean low_bits = FALSE;
    for (int i = 0; i < 16 && !low_bits; i++)
        low_bits = fmod(lmn_random_uniform_double(&r) * 0x1p53, 0x1p29) != 0.0;
    g_assert_true(low_bits);
    g_free(x);
}

static void test_random_normal(void)
{
    LmnRandom r;
    lmn_random_init(&r, 2024, LMN_STREAM(LMN_STREAM_NOISE, 5));
    double *x = g_new(double, N_MOMENTS);
    gsize within_one = 0;
    for (gsize i = 0; i < N_MOMENTS; i++) {
        x[i] = lmn_random_normal(&r);
        g_assert_true(isfinite(x[i]));
        within_one += fabs(x[i]) < 1.0;
    }
    assert_moments(x, N_MOMENTS, 0.0, 1.0, 3.0);
    /* P(|Z| < 1) = erf(1/sqrt 2); a binomial proportion's sd is sqrt(p(1-p)/n). */
    double p = erf(1.0 / sqrt(2.0));
    double frac = (double) within_one / N_MOMENTS;
    g_assert_cmpfloat(fabs(frac - p), <=, 5.0 * sqrt(p * (1.0 - p) / N_MOMENTS));
    g_free(x);
}

/* Chi-square of @counts over @k equally likely cells against a 5-sigma bound of the
 * chi-square distribution (mean k-1, variance 2(k-1)). */
static void assert_uniform_counts(const guint64 *counts, guint k, guint64 total)
{
    double expected = (double) total / k, chi2 = 0.0;
    for (guint i = 0; i < k; i++)
        chi2 += ((double) counts[i] - expected) * ((double) counts[i] - expected) / expected;
    g_assert_cmpfloat(chi2, <=, (k - 1) + 5.0 * sqrt(2.0 * (k - 1)));
}

static void test_random_below(void)
{
    LmnRandom r;
    lmn_random_init(&r, 99, 1);

    for (int i = 0; i < 100; i++)
        g_assert_cmpuint(lmn_random_below(&r, 1), ==, 0);

    guint64 counts[7] = {0};
    for (int i = 0; i < 70000; i++) {
        guint64 v = lmn_random_below(&r, 7);
        g_assert_cmpuint(v, <, 7);
        counts[v]++;
    }
    assert_uniform_counts(counts, 7, 70000);

    /* n = 3 * 2^30: a plain multiply-shift maps two 32-bit words to every result divisible by 3
     * and one to the others, so P(v % 3 == 0) would be 1/2 instead of 1/3. */
    const guint64 n = G_GUINT64_CONSTANT(3) << 30;
    const int draws = 30000;
    int zero_mod3 = 0;
    for (int i = 0; i < draws; i++) {
        guint64 v = lmn_random_below(&r, n);
        g_assert_cmpuint(v, <, n);
        zero_mod3 += v % 3 == 0;
    }
    double frac = (double) zero_mod3 / draws;
    g_assert_cmpfloat(fabs(frac - 1.0 / 3.0), <=, 5.0 * sqrt((2.0 / 9.0) / draws));

    /* The 64-bit path: the same bias argument with n = 3 * 2^62, and the full range is used. */
    const guint64 big = G_GUINT64_CONSTANT(3) << 62;
    zero_mod3 = 0;
    guint64 top_counts[3] = {0};
    for (int i = 0; i < draws; i++) {
        guint64 v = lmn_random_below(&r, big);
        g_assert_cmpuint(v, <, big);
        zero_mod3 += v % 3 == 0;
        top_counts[v >> 62]++;
    }
    frac = (double) zero_mod3 / draws;
    g_assert_cmpfloat(fabs(frac - 1.0 / 3.0), <=, 5.0 * sqrt((2.0 / 9.0) / draws));
    assert_uniform_counts(top_counts, 3, draws);
}

static void shuffle_identity(LmnRandom *r, guint32 *v, gsize n)
{
    for (gsize i = 0; i < n; i++)
        v[i] = (guint32) i;
    lmn_random_shuffle(r, v, n);
}

static void test_random_shuffle(void)
{
    enum { N = 1000 };
    guint32 a[N], b[N], c[N];
    LmnRandom r;

    lmn_random_init(&r, 5, LMN_STREAM(LMN_STREAM_SHUFFLE, 0));
    shuffle_identity(&r, a, N);
    gboolean seen[N] = {FALSE};
    for (gsize i = 0; i < N; i++) {
        g_assert_cmpuint(a[i], <, N);
        g_assert_false(seen[a[i]]);
        seen[a[i]] = TRUE;
    }

    lmn_random_init(&r, 5, LMN_STREAM(LMN_STREAM_SHUFFLE, 0));
    shuffle_identity(&r, b, N);
    g_assert_cmpmem(a, sizeof a, b, sizeof b);

    lmn_random_init(&r, 5, LMN_STREAM(LMN_STREAM_SHUFFLE, 1));
    shuffle_identity(&r, c, N);
    int fixed_same = 0;
    for (gsize i = 0; i < N; i++)
        fixed_same += a[i] == c[i];
    /* two independent permutations agree in about one position */
    g_assert_cmpint(fixed_same, <, 10);

    /* n = 0 and 1 are no-ops */
    guint32 one = 17;
    lmn_random_shuffle(&r, &one, 1);
    g_assert_cmpuint(one, ==, 17);
    lmn_random_shuffle(&r, NULL, 0);

    /* All 6 orders of 3 elements are equally likely. */
    guint64 counts[6] = {0};
    const int trials = 60000;
    for (int t = 0; t < trials; t++) {
        guint32 v[3];
        shuffle_identity(&r, v, 3);
        guint code = v[0] * 2 + (v[1] > v[2]); /* first element and the order of the rest */
        counts[code]++;
    }
    assert_uniform_counts(counts, 6, trials);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/optim/random/philox-known-answers", test_philox_known_answers);
    g_test_add_func("/optim/random/counter-layout", test_random_layout);
    g_test_add_func("/optim/random/copy-resumes", test_random_copy_resumes);
    g_test_add_func("/optim/random/streams-differ", test_random_streams_differ);
    g_test_add_func("/optim/random/uniform", test_random_uniform);
    g_test_add_func("/optim/random/normal", test_random_normal);
    g_test_add_func("/optim/random/below-unbiased", test_random_below);
    g_test_add_func("/optim/random/shuffle", test_random_shuffle);
    return g_test_run();
}
