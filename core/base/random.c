/* Lamina — Philox-4x32-10 and the sequential LmnRandom reader.
 *
 * Philox is implemented exactly as Random123 (Salmon et al., SC'11) defines it, so the same
 * words come out of a shader implementing the same rounds: the known-answer vectors of
 * Random123's kat_vectors are checked by tests/optim/test-random.c.
 */
#include <lamina/random.h>

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u
#define PHILOX_ROUNDS 10

static inline void mulhilo32(guint32 a, guint32 b, guint32 *hi, guint32 *lo)
{
    guint64 p = (guint64) a * (guint64) b;
    *hi = (guint32) (p >> 32);
    *lo = (guint32) p;
}

void lmn_philox4x32(const guint32 key[2], const guint32 ctr[4], guint32 out[4])
{
    guint32 c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    guint32 k0 = key[0], k1 = key[1];

    for (int round = 0; round < PHILOX_ROUNDS; round++) {
        /* Random123 bumps the key between rounds, never before the first. */
        if (round > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        guint32 hi0, lo0, hi1, lo1;
        mulhilo32(PHILOX_M0, c0, &hi0, &lo0);
        mulhilo32(PHILOX_M1, c2, &hi1, &lo1);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

void lmn_random_init(LmnRandom *r, guint64 seed, guint64 stream)
{
    g_return_if_fail(r != NULL);

    r->seed = seed;
    r->stream = stream;
    r->position = 0;
    r->block[0] = r->block[1] = r->block[2] = r->block[3] = 0;
    r->used = 4;
    r->has_spare_normal = FALSE;
    r->spare_normal = 0.0;
}

static void random_refill(LmnRandom *r)
{
    const guint32 key[2] = {(guint32) r->seed, (guint32) (r->seed >> 32)};
    const guint32 ctr[4] = {(guint32) r->position, (guint32) (r->position >> 32),
                            (guint32) r->stream, (guint32) (r->stream >> 32)};
    lmn_philox4x32(key, ctr, r->block);
    r->position++;
    r->used = 0;
}

guint32 lmn_random_u32(LmnRandom *r)
{
    if (r->used >= 4)
        random_refill(r);
    return r->block[r->used++];
}

float lmn_random_uniform(LmnRandom *r)
{
    /* 24 bits fill a float's significand exactly, so every value is representable and < 1. */
    return (float) (lmn_random_u32(r) >> 8) * (1.0f / 16777216.0f);
}

double lmn_random_uniform_double(LmnRandom *r)
{
    guint64 a = lmn_random_u32(r) >> 5; /* 27 bits */
    guint64 b = lmn_random_u32(r) >> 6; /* 26 bits */
    return (double) ((a << 26) | b) * (1.0 / 9007199254740992.0);
}

double lmn_random_normal(LmnRandom *r)
{
    if (r->has_spare_normal) {
        r->has_spare_normal = FALSE;
        return r->spare_normal;
    }
    /* 1 - u lies in (0, 1], so the logarithm is finite. */
    double u1 = 1.0 - lmn_random_uniform_double(r);
    double u2 = lmn_random_uniform_double(r);
    double radius = sqrt(-2.0 * log(u1));
    double theta = 2.0 * G_PI * u2;
    r->spare_normal = radius * sin(theta);
    r->has_spare_normal = TRUE;
    return radius * cos(theta);
}

static guint64 random_u64(LmnRandom *r)
{
    guint64 lo = lmn_random_u32(r);
    guint64 hi = lmn_random_u32(r);
    return (hi << 32) | lo;
}

guint64 lmn_random_below(LmnRandom *r, guint64 n)
{
    g_return_val_if_fail(n > 0, 0);

    /* Lemire, "Fast random integer generation in an interval" (2019): multiply-and-shift,
     * rejecting the few low products that would make some results more likely.  Ranges that fit
     * 32 bits use one word per draw, which keeps shuffles cheap. */
    if (n <= G_GUINT64_CONSTANT(0x100000000)) {
        guint64 m = (guint64) lmn_random_u32(r) * n;
        guint32 low = (guint32) m;
        if (low < n) {
            guint32 threshold = (guint32) ((G_GUINT64_CONSTANT(0x100000000) - n) % n);
            while (low < threshold) {
                m = (guint64) lmn_random_u32(r) * n;
                low = (guint32) m;
            }
        }
        return m >> 32;
    }

    unsigned __int128 m = (unsigned __int128) random_u64(r) * n;
    guint64 low = (guint64) m;
    if (low < n) {
        guint64 threshold = (0 - n) % n;
        while (low < threshold) {
            m = (unsigned __int128) random_u64(r) * n;
            low = (guint64) m;
        }
    }
    return (guint64) (m >> 64);
}

void lmn_random_shuffle(LmnRandom *r, guint32 *indices, gsize n)
{
    g_return_if_fail(indices != NULL || n == 0);

    for (gsize i = n; i > 1; i--) {
        gsize j = (gsize) lmn_random_below(r, i);
        guint32 tmp = indices[i - 1];
        indices[i - 1] = indices[j];
        indices[j] = tmp;
    }
}
