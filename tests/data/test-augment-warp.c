/* Tests of augment.h's resampling building blocks against PyTorch (tests/fixtures/augment.h5,
 * made by scripts/make-augment-fixtures.py), and of the newer transforms' closed forms and
 * statistics. */
#include <lamina/lamina.h>

#include <hdf5.h>
#include <math.h>
#include <string.h>

#define H 9
#define W 11
#define HW (H * W)

static hid_t fixtures;

/* A fixture dataset as @mem_type into a new buffer of its size (@numel_out elements). */
static gpointer read_fixture(const char *path, hid_t mem_type, gsize elem, hsize_t *numel_out)
{
    hid_t d = H5Dopen2(fixtures, path, H5P_DEFAULT);
    g_assert_cmpint(d, >=, 0);
    hid_t space = H5Dget_space(d);
    hssize_t n = H5Sget_simple_extent_npoints(space);
    g_assert_cmpint(n, >, 0);
    gpointer buf = g_malloc((gsize) n * elem);
    g_assert_cmpint(H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), >=, 0);
    H5Sclose(space);
    H5Dclose(d);
    if (numel_out)
        *numel_out = (hsize_t) n;
    return buf;
}

static float *read_f32(const char *path, hsize_t *n)
{
    return read_fixture(path, H5T_NATIVE_FLOAT, sizeof(float), n);
}

static double *read_f64(const char *path, hsize_t *n)
{
    return read_fixture(path, H5T_NATIVE_DOUBLE, sizeof(double), n);
}

static void assert_close(const float *got, const float *want, gsize n, double tol)
{
    for (gsize i = 0; i < n; i++) {
        if (fabs((double) got[i] - want[i]) > tol * (1.0 + fabs((double) want[i])))
            g_error("element %zu: got %.8g, PyTorch %.8g", i, got[i], want[i]);
    }
}

static void test_resized_crop(void)
{
    g_autofree float *x = read_f32("resized_crop/x", NULL);
    g_autofree float *y = read_f32("resized_crop/y", NULL);
    hsize_t nb;
    g_autofree gint64 *boxes =
        read_fixture("resized_crop/boxes", H5T_NATIVE_INT64, sizeof(gint64), &nb);
    float out[3 * HW];
    for (hsize_t k = 0; k < nb / 4; k++) {
        const gint64 *b = boxes + 4 * k;
        lmn_augment_resized_crop(x, out, 3, H, W, b[0], b[1], b[2], b[3]);
        assert_close(out, y + k * 3 * HW, 3 * HW, 1e-5);
    }
    /* The whole image is the identity, exactly. */
    lmn_augment_resized_crop(x, out, 3, H, W, 0, 0, H, W);
    g_assert_cmpmem(out, sizeof out, x, sizeof out);
}

static void test_affine_and_rotate(void)
{
    g_autofree float *x = read_f32("affine/x", NULL);
    g_autofree float *y = read_f32("affine/y", NULL);
    hsize_t nm;
    g_autofree double *inv = read_f64("affine/inverse", &nm);
    float out[2 * HW];
    for (hsize_t k = 0; k < nm / 4; k++) {
        const double m[2][2] = {{inv[4 * k], inv[4 * k + 1]}, {inv[4 * k + 2], inv[4 * k + 3]}};
        lmn_augment_affine(x, out, 2, H, W, m);
        assert_close(out, y + k * 2 * HW, 2 * HW, 1e-5);
    }
    /* The last matrix is a 30 degree rotation: lmn_augment_rotate agrees with PyTorch too. */
    lmn_augment_rotate(x, out, 2, H, W, 30.0);
    assert_close(out, y + (nm / 4 - 1) * 2 * HW, 2 * HW, 1e-5);
}

static void test_displace(void)
{
    g_autofree float *x = read_f32("displace/x", NULL);
    g_autofree float *y = read_f32("displace/y", NULL);
    hsize_t n;
    g_autofree float *dx = read_f32("displace/dx", &n);
    g_autofree float *dy = read_f32("displace/dy", NULL);
    float out[2 * HW];
    for (hsize_t k = 0; k < n / HW; k++) {
        lmn_augment_displace(x, out, 2, H, W, dx + k * HW, dy + k * HW);
        assert_close(out, y + k * 2 * HW, 2 * HW, 1e-5);
    }
    /* The first field is zero: an exact copy. */
    lmn_augment_displace(x, out, 2, H, W, dx, dy);
    g_assert_cmpmem(out, sizeof out, x, sizeof out);
}

static void test_blur(void)
{
    g_autofree float *plane = read_f32("blur/plane", NULL);
    g_autofree float *y = read_f32("blur/y", NULL);
    hsize_t ns;
    g_autofree double *sigma = read_f64("blur/sigma", &ns);
    float p[HW], scratch[HW];
    for (hsize_t k = 0; k < ns; k++) {
        memcpy(p, plane, sizeof p);
        lmn_augment_gaussian_blur(p, scratch, H, W, sigma[k]);
        assert_close(p, y + k * HW, HW, 1e-5);
    }
    g_assert_cmpint(lmn_augment_blur_radius(1.3), ==, 4);
    g_assert_cmpint(lmn_augment_blur_radius(0), ==, 0);
}

static void test_hue_and_saturation(void)
{
    g_autofree float *x = read_f32("hue/x", NULL);
    g_autofree float *y = read_f32("hue/y", NULL);
    hsize_t nt;
    g_autofree double *turns = read_f64("hue/turns", &nt);
    float img[3 * HW];
    for (hsize_t k = 0; k < nt; k++) {
        memcpy(img, x, sizeof img);
        lmn_augment_hue(img, HW, turns[k]);
        assert_close(img, y + k * 3 * HW, 3 * HW, 1e-5);
    }
    /* Closed forms: a third of a turn cycles R -> G -> B; greys and R + G + B are kept. */
    float px[3] = {0.9f, -0.2f, 0.4f};
    lmn_augment_hue(px, 1, 1.0 / 3.0);
    g_assert_cmpfloat_with_epsilon(px[0], 0.4, 1e-6);
    g_assert_cmpfloat_with_epsilon(px[1], 0.9, 1e-6);
    g_assert_cmpfloat_with_epsilon(px[2], -0.2, 1e-6);
    float grey[3] = {0.3f, 0.3f, 0.3f};
    lmn_augment_hue(grey, 1, 0.17);
    for (int c = 0; c < 3; c++)
        g_assert_cmpfloat_with_epsilon(grey[c], 0.3, 1e-6);
    /* Saturation 0 is the BT.601 grey; 1 the identity; any factor keeps the luma. */
    float s0[3] = {0.9f, -0.2f, 0.4f}, s1[3] = {0.9f, -0.2f, 0.4f}, s2[3] = {0.9f, -0.2f, 0.4f};
    double luma = 0.299 * 0.9f + 0.587 * -0.2f + 0.114 * 0.4f;
    lmn_augment_saturation(s0, 1, 0.0);
    lmn_augment_saturation(s1, 1, 1.0);
    lmn_augment_saturation(s2, 1, 1.7);
    for (int c = 0; c < 3; c++)
        g_assert_cmpfloat_with_epsilon(s0[c], luma, 1e-6);
    g_assert_cmpfloat_with_epsilon(s1[0], 0.9, 1e-6);
    g_assert_cmpfloat_with_epsilon(s1[1], -0.2, 1e-6);
    g_assert_cmpfloat_with_epsilon(0.299 * s2[0] + 0.587 * s2[1] + 0.114 * s2[2], luma, 1e-6);
}

/* torchvision's box drawing: inside the image, area and ratio in range (up to rounding to whole
 * pixels), and the centred fallback when no draw fits. */
static void test_resized_crop_box(void)
{
    const double scale[2] = {0.08, 1.0}, ratio[2] = {3.0 / 4.0, 4.0 / 3.0};
    LmnRandom r;
    lmn_random_init(&r, 7, 0);
    double area_sum = 0;
    int n = 4000;
    for (int i = 0; i < n; i++) {
        gint64 b[4];
        lmn_augment_resized_crop_box(&r, 28, 28, scale, ratio, b);
        g_assert_cmpint(b[0], >=, 0);
        g_assert_cmpint(b[1], >=, 0);
        g_assert_cmpint(b[2], >=, 1);
        g_assert_cmpint(b[3], >=, 1);
        g_assert_cmpint(b[0] + b[2], <=, 28);
        g_assert_cmpint(b[1] + b[3], <=, 28);
        double a = (double) (b[2] * b[3]) / (28.0 * 28.0);
        double q = (double) b[3] / (double) b[2];
        /* Rounding each side by up to half a pixel moves the area and the ratio. */
        double e = 0.5 / (double) MIN(b[2], b[3]);
        g_assert_cmpfloat(a, >=, 0.08 * (1 - e) * (1 - e) - 1e-9);
        g_assert_cmpfloat(q, >=, ratio[0] * (1 - e) / (1 + e) - 1e-9);
        g_assert_cmpfloat(q, <=, ratio[1] * (1 + e) / (1 - e) + 1e-9);
        area_sum += a;
    }
    /* U[0.08, 1] has mean 0.54; draws near 1 with a ratio far from 1 do not fit and are drawn
     * again, which lowers the mean a little. */
    g_assert_cmpfloat(area_sum / n, >, 0.47);
    g_assert_cmpfloat(area_sum / n, <, 0.56);
    const double whole[2] = {1.0, 1.0}, wide[2] = {2.0, 3.0};
    gint64 b[4];
    lmn_augment_resized_crop_box(&r, 28, 28, whole, wide, b);
    g_assert_cmpint(b[0], ==, 7);
    g_assert_cmpint(b[1], ==, 0);
    g_assert_cmpint(b[2], ==, 14);
    g_assert_cmpint(b[3], ==, 28);
}

/* The new transforms through lmn_augment_apply: deterministic per (seed, epoch, index), the
 * scratch they need, and the shape checks. */
static void test_apply_new(void)
{
    LmnShape rgb = lmn_shape_make(3, (gint64) 3, (gint64) H, (gint64) W);
    LmnAugmentConfig cfg = {.resized_crop = TRUE,
                            .resized_crop_scale = {0.3, 1.0},
                            .resized_crop_ratio = {0.75, 4.0 / 3.0},
                            .affine_scale = 0.2,
                            .affine_shear = 15,
                            .elastic_alpha = 2,
                            .elastic_sigma = 1.5,
                            .saturation = 0.5,
                            .hue = 0.1};
    g_assert_true(lmn_augment_config_is_enabled(&cfg));
    g_assert_cmpuint(lmn_augment_scratch_floats(&cfg, &rgb), ==, 3 * HW + 3 * HW);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_augment_check_shape(&cfg, &rgb, "d.h5:/train", &error));
    g_assert_true(lmn_augment_config_check(&cfg, "t.ini [augment]", &error));
    float orig[3 * HW], a[3 * HW], b[3 * HW], c[3 * HW];
    /* Exactly the advertised scratch, on the heap, so AddressSanitizer sees any overrun. */
    g_autofree float *scratch = g_new(float, lmn_augment_scratch_floats(&cfg, &rgb));
    for (int i = 0; i < 3 * HW; i++)
        orig[i] = (float) sin(0.37 * i);
    memcpy(a, orig, sizeof a);
    memcpy(b, orig, sizeof b);
    memcpy(c, orig, sizeof c);
    lmn_augment_apply(&cfg, NULL, &rgb, 3, 1, 5, a, scratch);
    lmn_augment_apply(&cfg, NULL, &rgb, 3, 1, 5, b, scratch);
    lmn_augment_apply(&cfg, NULL, &rgb, 3, 1, 6, c, scratch);
    g_assert_cmpmem(a, sizeof a, b, sizeof b);
    g_assert_true(memcmp(a, c, sizeof a) != 0);
    g_assert_true(memcmp(a, orig, sizeof a) != 0);
    for (int i = 0; i < 3 * HW; i++)
        g_assert_true(isfinite(a[i]));

    /* A tiny elastic alpha barely moves the image; the field never exceeds alpha. */
    LmnAugmentConfig el = {.elastic_alpha = 1e-3, .elastic_sigma = 2};
    LmnShape grey = lmn_shape_make(2, (gint64) H, (gint64) W);
    g_assert_cmpuint(lmn_augment_scratch_floats(&el, &grey), ==, 4 * HW);
    g_autofree float *grey_scratch = g_new(float, lmn_augment_scratch_floats(&el, &grey));
    memcpy(a, orig, HW * sizeof(float));
    lmn_augment_apply(&el, NULL, &grey, 1, 0, 0, a, grey_scratch);
    for (int i = 0; i < HW; i++)
        g_assert_cmpfloat(fabs(a[i] - orig[i]), <, 0.01);
    LmnRandom r;
    lmn_random_init(&r, 1, 2);
    float dx[HW], dy[HW], tmp[HW];
    lmn_augment_elastic_field(&r, dx, dy, tmp, H, W, 5.0, 1.0);
    double sq_smooth = 0, sq_rough = 0;
    for (int i = 0; i < HW; i++) {
        g_assert_cmpfloat(fabs(dx[i]), <=, 5.0);
        g_assert_cmpfloat(fabs(dy[i]), <=, 5.0);
        sq_smooth += dx[i] * dx[i];
    }
    lmn_augment_elastic_field(&r, dx, dy, tmp, H, W, 5.0, 0.01);
    for (int i = 0; i < HW; i++)
        sq_rough += dx[i] * dx[i];
    /* Smoothing averages independent draws: the field's energy drops. */
    g_assert_cmpfloat(sq_smooth, <, 0.5 * sq_rough);

    /* The colour transforms need RGB; the geometric ones images. */
    LmnAugmentConfig colour = {.hue = 0.1};
    g_assert_false(lmn_augment_check_shape(&colour, &grey, "d.h5:/train", &error));
    g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE);
    g_assert_nonnull(strstr(error->message, "hue"));
    g_clear_error(&error);
    LmnAugmentConfig geo = {.elastic_alpha = 3, .elastic_sigma = 4};
    LmnShape flat = lmn_shape_make(1, (gint64) 784);
    g_assert_false(lmn_augment_check_shape(&geo, &flat, "d.h5:/train", &error));
    g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE);
    g_assert_nonnull(strstr(error->message, "elastic_alpha"));
    g_clear_error(&error);
    LmnAugmentConfig bad = {
        .resized_crop = TRUE, .resized_crop_scale = {0.9, 0.5}, .resized_crop_ratio = {1, 1}};
    g_assert_false(lmn_augment_config_check(&bad, "t.ini [augment]", &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
    g_assert_nonnull(strstr(error->message, "resized_crop_scale_min"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    const char *dir = g_getenv("LMN_TEST_FIXTURES");
    g_assert_nonnull(dir);
    g_autofree char *path = g_build_filename(dir, "augment.h5", NULL);
    fixtures = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (fixtures < 0)
        g_error("%s: cannot open (make it with scripts/make-augment-fixtures.py)", path);
    g_test_add_func("/data/augment-warp/resized-crop", test_resized_crop);
    g_test_add_func("/data/augment-warp/affine-and-rotate", test_affine_and_rotate);
    g_test_add_func("/data/augment-warp/displace", test_displace);
    g_test_add_func("/data/augment-warp/blur", test_blur);
    g_test_add_func("/data/augment-warp/hue-and-saturation", test_hue_and_saturation);
    g_test_add_func("/data/augment-warp/resized-crop-box", test_resized_crop_box);
    g_test_add_func("/data/augment-warp/apply", test_apply_new);
    int rc = g_test_run();
    H5Fclose(fixtures);
    return rc;
}
