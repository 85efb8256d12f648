/* Tests of augment.h: each transform against its closed form, statistics, determinism. */
#include <lamina/lamina.h>

#include <math.h>
#include <string.h>

#define C 3
#define H 5
#define W 5
#define NUMEL (C * H * W)

static void fill(float *img, int n)
{
    for (int i = 0; i < n; i++) {
        img[i] = (float) (i * 7 % 23) + 0.5f;
    }
}

static float at(const float *img, int c, int y, int x)
{
    return img[(c * H + y) * W + x];
}

static void test_hflip(void)
{
    float a[NUMEL], b[NUMEL];
    fill(a, NUMEL);
    memcpy(b, a, sizeof a);
    lmn_augment_hflip(b, C, H, W);
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                g_assert_cmpfloat(at(b, c, y, x), ==, at(a, c, y, W - 1 - x));
}

static void test_shift(void)
{
    float a[NUMEL], b[NUMEL];
    fill(a, NUMEL);
    int shifts[][2] = {{0, 0}, {1, 2}, {-2, 1}, {4, -4}, {5, 0}, {-1, -3}};
    for (guint s = 0; s < G_N_ELEMENTS(shifts); s++) {
        int dy = shifts[s][0], dx = shifts[s][1];
        lmn_augment_shift(a, b, C, H, W, dy, dx);
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    int sy = y - dy, sx = x - dx;
                    float want = sy >= 0 && sy < H && sx >= 0 && sx < W ? at(a, c, sy, sx) : 0;
                    g_assert_cmpfloat(at(b, c, y, x), ==, want);
                }
    }
}

static void test_rotate(void)
{
    float a[NUMEL], b[NUMEL], c2[NUMEL];
    fill(a, NUMEL);
    /* 90 degrees counter-clockwise: out[y][x] = in[x][W-1-y] (transpose, then flip rows). */
    lmn_augment_rotate(a, b, C, H, W, 90.0);
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                g_assert_cmpfloat(at(b, c, y, x), ==, at(a, c, x, W - 1 - y));
    /* 0 degrees is the identity; -90 then +90 too. */
    lmn_augment_rotate(a, b, C, H, W, 0.0);
    g_assert_cmpmem(a, sizeof a, b, sizeof b);
    lmn_augment_rotate(a, b, C, H, W, -90.0);
    lmn_augment_rotate(b, c2, C, H, W, 90.0);
    g_assert_cmpmem(a, sizeof a, c2, sizeof c2);
    /* A small angle interpolates: the centre pixel is a fixed point, and a constant image stays
     * constant away from the border. */
    float one[NUMEL];
    for (int i = 0; i < NUMEL; i++)
        one[i] = 1.0f;
    lmn_augment_rotate(one, b, C, H, W, 10.0);
    g_assert_cmpfloat_with_epsilon(at(b, 0, 2, 2), 1.0, 1e-6);
    g_assert_cmpfloat_with_epsilon(at(b, 1, 1, 2), 1.0, 1e-6);
    lmn_augment_rotate(a, b, C, H, W, 10.0);
    g_assert_cmpfloat_with_epsilon(at(b, 2, 2, 2), at(a, 2, 2, 2), 1e-6);
    /* Bilinear closed form at (1, 2): source = centre + R(-10deg)(0, +1 up). */
    double r = 10.0 * G_PI / 180.0;
    double sx = 2 + sin(r), sy = 2 - cos(r);
    int x0 = (int) floor(sx), y0 = (int) floor(sy);
    double ax = sx - x0, ay = sy - y0;
    double want = (1 - ax) * (1 - ay) * at(a, 0, y0, x0) + ax * (1 - ay) * at(a, 0, y0, x0 + 1) +
                  (1 - ax) * ay * at(a, 0, y0 + 1, x0) + ax * ay * at(a, 0, y0 + 1, x0 + 1);
    lmn_augment_rotate(a, b, C, H, W, 10.0);
    g_assert_cmpfloat_with_epsilon(at(b, 0, 1, 2), want, 1e-4);
}

/* Noise: mean 0 and the configured std over many samples; determinism per seed. */
static void test_noise_statistics(void)
{
    LmnAugmentConfig cfg = {.noise_std = 0.3};
    LmnShape shape = lmn_shape_make(1, (gint64) 100);
    float x[100], scratch[100];
    double sum = 0, sq = 0;
    int n = 0;
    for (int s = 0; s < 400; s++) {
        memset(x, 0, sizeof x);
        lmn_augment_apply(&cfg, NULL, &shape, 11, 0, s, x, scratch);
        for (int i = 0; i < 100; i++) {
            sum += x[i];
            sq += (double) x[i] * x[i];
            n++;
        }
    }
    double mean = sum / n, sd = sqrt(sq / n - mean * mean);
    /* 40000 draws: the mean's standard error is 0.0015, the std's about 0.0011. */
    g_assert_cmpfloat(fabs(mean), <, 0.0075);
    g_assert_cmpfloat(fabs(sd - 0.3), <, 0.006);
}

static void test_determinism(void)
{
    LmnAugmentConfig cfg = {.hflip = 0.5, .crop_pad = 1, .translate = 1, .rotate = 15,
                            .noise_std = 0.1, .brightness = 0.2, .contrast = 0.3};
    LmnShape shape = lmn_shape_make(3, (gint64) C, (gint64) H, (gint64) W);
    float a[NUMEL], b[NUMEL], c[NUMEL], d[NUMEL], scratch[NUMEL];
    fill(a, NUMEL);
    memcpy(b, a, sizeof a);
    memcpy(c, a, sizeof a);
    memcpy(d, a, sizeof a);
    lmn_augment_apply(&cfg, NULL, &shape, 1, 2, 3, a, scratch);
    lmn_augment_apply(&cfg, NULL, &shape, 1, 2, 3, b, scratch);
    lmn_augment_apply(&cfg, NULL, &shape, 1, 2, 4, c, scratch);
    lmn_augment_apply(&cfg, NULL, &shape, 1, 3, 3, d, scratch);
    g_assert_cmpmem(a, sizeof a, b, sizeof b);
    g_assert_true(memcmp(a, c, sizeof a) != 0);
    g_assert_true(memcmp(a, d, sizeof a) != 0);
    /* hflip with p = 1 always flips; with p = 0.5 about half the samples. */
    LmnAugmentConfig flip = {.hflip = 1.0};
    fill(a, NUMEL);
    memcpy(b, a, sizeof a);
    lmn_augment_apply(&flip, NULL, &shape, 1, 0, 0, a, scratch);
    lmn_augment_hflip(b, C, H, W);
    g_assert_cmpmem(a, sizeof a, b, sizeof b);
    flip.hflip = 0.5;
    int flipped = 0;
    for (int s = 0; s < 1000; s++) {
        fill(a, NUMEL);
        lmn_augment_apply(&flip, NULL, &shape, 1, 0, s, a, scratch);
        fill(b, NUMEL);
        flipped += memcmp(a, b, sizeof a) != 0;
    }
    g_assert_cmpint(flipped, >, 420); /* binomial(1000, 0.5): 5 sigma is 79 */
    g_assert_cmpint(flipped, <, 580);
    /* A crop is an exact shift by at most crop_pad. */
    LmnAugmentConfig crop = {.crop_pad = 2};
    for (int s = 0; s < 20; s++) {
        fill(a, NUMEL);
        fill(b, NUMEL);
        lmn_augment_apply(&crop, NULL, &shape, 1, 0, s, a, scratch);
        gboolean found = FALSE;
        for (int dy = -2; dy <= 2 && !found; dy++)
            for (int dx = -2; dx <= 2 && !found; dx++) {
                lmn_augment_shift(b, c, C, H, W, dy, dx);
                found = memcmp(a, c, sizeof a) == 0;
            }
        g_assert_true(found);
    }
}

static void test_pca(void)
{
    /* Pixels with a known covariance: RGB = m + z1 * u + z2 * v for orthonormal u, v. */
    enum { S = 50, HW = 16 };
    static float x[S * 3 * HW];
    const double u[3] = {0.6, 0.8, 0.0}, v[3] = {-0.8 * 0.6, 0.6 * 0.6, 0.8};
    LmnRandom rng;
    lmn_random_init(&rng, 99, 0);
    for (int s = 0; s < S; s++)
        for (int p = 0; p < HW; p++) {
            double z1 = 2.0 * lmn_random_normal(&rng), z2 = 0.5 * lmn_random_normal(&rng);
            for (int k = 0; k < 3; k++)
                x[(s * 3 + k) * HW + p] = (float) (0.3 + z1 * u[k] + z2 * v[k]);
        }
    LmnAugmentPca pca;
    lmn_augment_pca_from_samples(x, S, HW, &pca);
    /* Oracle: the covariance in double, naively; C v_i = lambda_i v_i. */
    double mean[3] = {0}, cov[3][3] = {{0}};
    int n = S * HW;
    for (int s = 0; s < S; s++)
        for (int p = 0; p < HW; p++)
            for (int k = 0; k < 3; k++)
                mean[k] += x[(s * 3 + k) * HW + p] / (double) n;
    for (int s = 0; s < S; s++)
        for (int p = 0; p < HW; p++)
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++)
                    cov[i][j] += (x[(s * 3 + i) * HW + p] - mean[i]) *
                                 (x[(s * 3 + j) * HW + p] - mean[j]) / n;
    for (int e = 0; e < 3; e++) {
        double norm = 0;
        for (int i = 0; i < 3; i++) {
            double cv = 0;
            for (int j = 0; j < 3; j++)
                cv += cov[i][j] * pca.eigvec[e][j];
            g_assert_cmpfloat_with_epsilon(cv, pca.eigval[e] * pca.eigvec[e][i], 1e-6);
            norm += pca.eigvec[e][i] * pca.eigvec[e][i];
        }
        g_assert_cmpfloat_with_epsilon(norm, 1.0, 1e-9);
    }
    g_assert_cmpfloat(pca.eigval[0], >=, pca.eigval[1]);
    g_assert_cmpfloat(pca.eigval[1], >=, pca.eigval[2]);
    g_assert_cmpfloat(fabs(pca.eigval[0] - 4.0), <, 0.8);

    /* The jitter adds the same alpha-weighted vector to every pixel; recover the alphas and
     * check them against N(0, pca_std). */
    LmnAugmentConfig cfg = {.pca_std = 0.1};
    LmnShape shape = lmn_shape_make(3, (gint64) 3, (gint64) 4, (gint64) 4);
    float img[3 * HW], orig[3 * HW], scratch[3 * HW];
    double asum[3] = {0}, asq[3] = {0};
    int trials = 2000;
    for (int t = 0; t < trials; t++) {
        memcpy(img, x, sizeof img);
        memcpy(orig, x, sizeof orig);
        lmn_augment_apply(&cfg, &pca, &shape, 5, 0, t, img, scratch);
        double delta[3];
        for (int k = 0; k < 3; k++) {
            delta[k] = img[k * HW] - orig[k * HW];
            for (int p = 1; p < HW; p++)
                g_assert_cmpfloat_with_epsilon(img[k * HW + p] - orig[k * HW + p], delta[k], 1e-5);
        }
        for (int e = 0; e < 3; e++) {
            if (pca.eigval[e] < 1e-3)
                continue;
            double proj = 0;
            for (int k = 0; k < 3; k++)
                proj += delta[k] * pca.eigvec[e][k];
            double alpha = proj / pca.eigval[e];
            asum[e] += alpha;
            asq[e] += alpha * alpha;
        }
    }
    for (int e = 0; e < 2; e++) {
        double m = asum[e] / trials, sd = sqrt(asq[e] / trials - m * m);
        g_assert_cmpfloat(fabs(m), <, 0.01);
        g_assert_cmpfloat(fabs(sd - 0.1), <, 0.01);
    }
}

static void test_specs(void)
{
    const char *keys[] = {"hflip", "rotate", "crop_pad", NULL};
    const char *values[] = {"0.5", "10", "4", NULL};
    g_autoptr(GError) error = NULL;
    g_autoptr(LmnParams) p =
        lmn_params_new_from_strings(lmn_augment_specs(), keys, values, "t.ini [augment]", &error);
    g_assert_no_error(error);
    LmnAugmentConfig cfg;
    lmn_augment_config_from_params(p, &cfg);
    g_assert_cmpfloat(cfg.hflip, ==, 0.5);
    g_assert_cmpfloat(cfg.rotate, ==, 10);
    g_assert_cmpint(cfg.crop_pad, ==, 4);
    g_assert_cmpfloat(cfg.noise_std, ==, 0);
    g_assert_true(lmn_augment_config_is_enabled(&cfg));
    const char *bad_keys[] = {"hflip", NULL};
    const char *bad_values[] = {"1.5", NULL};
    g_assert_null(lmn_params_new_from_strings(lmn_augment_specs(), bad_keys, bad_values,
                                              "t.ini [augment]", &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
    LmnShape flat = lmn_shape_make(1, (gint64) 784);
    g_clear_error(&error);
    g_assert_false(lmn_augment_check_shape(&cfg, &flat, "d.h5:/train", &error));
    g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/data/augment/hflip", test_hflip);
    g_test_add_func("/data/augment/shift", test_shift);
    g_test_add_func("/data/augment/rotate", test_rotate);
    g_test_add_func("/data/augment/noise-statistics", test_noise_statistics);
    g_test_add_func("/data/augment/determinism", test_determinism);
    g_test_add_func("/data/augment/pca", test_pca);
    g_test_add_func("/data/augment/specs", test_specs);
    return g_test_run();
}
