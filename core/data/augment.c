/* Lamina — per-sample data augmentation (augment.h). */
#include <lamina/augment.h>
#include <lamina/error.h>

#include <math.h>
#include <string.h>

static const LmnParamSpec augment_specs[] = {
    LMN_PARAM_SPEC_FLOAT("hflip", "0", 0, 1, 0, "probability of a horizontal flip"),
    LMN_PARAM_SPEC_INT(
        "crop_pad", "0", 0, 1024, 0,
        "random crop after zero padding by this many pixels on every side (0 = off)"),
    LMN_PARAM_SPEC_INT(
        "translate", "0", 0, 1024, 0,
        "random shift by up to this many pixels in each direction, zero fill (0 = off)"),
    LMN_PARAM_SPEC_FLOAT(
        "rotate", "0", 0, 180, 0,
        "random rotation by up to this many degrees, bilinear, zero fill (0 = off)"),
    LMN_PARAM_SPEC_FLOAT("noise_std", "0", 0, INFINITY, 0,
                         "standard deviation of additive Gaussian noise (0 = off)"),
    LMN_PARAM_SPEC_FLOAT(
        "brightness", "0", 0, INFINITY, 0,
        "add a value uniform in [-brightness, brightness] to the sample (0 = off)"),
    LMN_PARAM_SPEC_FLOAT(
        "contrast", "0", 0, 1, LMN_PARAM_FLAG_MAX_EXCLUSIVE,
        "scale deviations from the sample mean by a factor in [1-contrast, 1+contrast]"),
    LMN_PARAM_SPEC_FLOAT(
        "pca_std", "0", 0, INFINITY, 0,
        "AlexNet PCA colour jitter: std of the alphas on the RGB eigenvectors (3 channels)"),
    LMN_PARAM_SPEC_END,
};

const LmnParamSpec *lmn_augment_specs(void)
{
    return augment_specs;
}

void lmn_augment_config_from_params(const LmnParams *params, LmnAugmentConfig *config)
{
    g_return_if_fail(params != NULL && config != NULL);
    memset(config, 0, sizeof *config);
    config->hflip = lmn_params_get_float(params, "hflip");
    config->crop_pad = lmn_params_get_int(params, "crop_pad");
    config->translate = lmn_params_get_int(params, "translate");
    config->rotate = lmn_params_get_float(params, "rotate");
    config->noise_std = lmn_params_get_float(params, "noise_std");
    config->brightness = lmn_params_get_float(params, "brightness");
    config->contrast = lmn_params_get_float(params, "contrast");
    config->pca_std = lmn_params_get_float(params, "pca_std");
}

static gboolean is_spatial(const LmnAugmentConfig *c)
{
    return c->hflip > 0 || c->crop_pad > 0 || c->translate > 0 || c->rotate > 0;
}

gboolean lmn_augment_config_is_enabled(const LmnAugmentConfig *c)
{
    g_return_val_if_fail(c != NULL, FALSE);
    return is_spatial(c) || c->noise_std > 0 || c->brightness > 0 || c->contrast > 0 ||
           c->pca_std > 0;
}

/* [C, H, W] or [H, W] (C = 1); FALSE for anything else. */
static gboolean image_dims(const LmnShape *shape, gint64 *c, gint64 *h, gint64 *w)
{
    if (shape->ndim == 3) {
        *c = shape->dims[0];
        *h = shape->dims[1];
        *w = shape->dims[2];
        return TRUE;
    }
    if (shape->ndim == 2) {
        *c = 1;
        *h = shape->dims[0];
        *w = shape->dims[1];
        return TRUE;
    }
    return FALSE;
}

gboolean lmn_augment_check_shape(const LmnAugmentConfig *config, const LmnShape *shape,
                                 const char *where, GError **error)
{
    g_return_val_if_fail(config != NULL && shape != NULL, FALSE);
    gint64 c, h, w;
    gboolean image = image_dims(shape, &c, &h, &w);
    g_autofree char *s = lmn_shape_to_string(shape);
    if (is_spatial(config) && !image) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                    "%s: samples are %s; [augment] hflip, crop_pad, translate and rotate need "
                    "images [C, H, W] or [H, W] (store x with its image shape)",
                    where, s);
        return FALSE;
    }
    if (config->pca_std > 0 && !(image && c == 3 && shape->ndim == 3)) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                    "%s: samples are %s; [augment] pca_std needs RGB images [3, H, W]", where, s);
        return FALSE;
    }
    return TRUE;
}

/* Cyclic Jacobi eigen-decomposition of a symmetric 3 x 3 matrix, sorted descending. */
static void jacobi3(double a[3][3], double val[3], double vec[3][3])
{
    double v[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
    for (int sweep = 0; sweep < 50; sweep++) {
        double off = fabs(a[0][1]) + fabs(a[0][2]) + fabs(a[1][2]);
        if (off < 1e-300) {
            break;
        }
        for (int p = 0; p < 2; p++) {
            for (int q = p + 1; q < 3; q++) {
                if (a[p][q] == 0.0) {
                    continue;
                }
                double theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                double cs = 1.0 / sqrt(t * t + 1.0), sn = t * cs;
                for (int k = 0; k < 3; k++) { /* A <- A J (columns p, q) */
                    double akp = a[k][p], akq = a[k][q];
                    a[k][p] = cs * akp - sn * akq;
                    a[k][q] = sn * akp + cs * akq;
                }
                for (int k = 0; k < 3; k++) { /* A <- J^T A (rows p, q) */
                    double apk = a[p][k], aqk = a[q][k];
                    a[p][k] = cs * apk - sn * aqk;
                    a[q][k] = sn * apk + cs * aqk;
                }
                for (int k = 0; k < 3; k++) {
                    double vkp = v[k][p], vkq = v[k][q];
                    v[k][p] = cs * vkp - sn * vkq;
                    v[k][q] = sn * vkp + cs * vkq;
                }
            }
        }
    }
    int idx[3] = {0, 1, 2};
    for (int i = 0; i < 3; i++) {
        for (int j = i + 1; j < 3; j++) {
            if (a[idx[j]][idx[j]] > a[idx[i]][idx[i]]) {
                int t = idx[i];
                idx[i] = idx[j];
                idx[j] = t;
            }
        }
    }
    for (int i = 0; i < 3; i++) {
        val[i] = a[idx[i]][idx[i]];
        for (int k = 0; k < 3; k++) {
            vec[i][k] = v[k][idx[i]];
        }
    }
}

void lmn_augment_pca_from_samples(const float *x, gint64 n, gint64 hw, LmnAugmentPca *pca_out)
{
    g_return_if_fail((x != NULL || n == 0) && hw > 0 && pca_out != NULL);
    double sum[3] = {0}, cross[3][3] = {{0}};
    for (gint64 s = 0; s < n; s++) {
        const float *img = x + s * 3 * hw;
        for (gint64 p = 0; p < hw; p++) {
            double rgb[3] = {img[p], img[hw + p], img[2 * hw + p]};
            for (int i = 0; i < 3; i++) {
                sum[i] += rgb[i];
                for (int j = 0; j < 3; j++) {
                    cross[i][j] += rgb[i] * rgb[j];
                }
            }
        }
    }
    double count = MAX((double) n * (double) hw, 1.0);
    double cov[3][3];
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) {
            cov[i][j] = cross[i][j] / count - (sum[i] / count) * (sum[j] / count);
        }
    }
    jacobi3(cov, pca_out->eigval, pca_out->eigvec);
    for (int i = 0; i < 3; i++) {
        /* Rounding can make a zero eigenvalue slightly negative. */
        pca_out->eigval[i] = MAX(pca_out->eigval[i], 0.0);
    }
}

void lmn_augment_hflip(float *img, gint64 c, gint64 h, gint64 w)
{
    for (gint64 r = 0; r < c * h; r++) {
        float *row = img + r * w;
        for (gint64 i = 0, j = w - 1; i < j; i++, j--) {
            float t = row[i];
            row[i] = row[j];
            row[j] = t;
        }
    }
}

void lmn_augment_shift(const float *in, float *out, gint64 c, gint64 h, gint64 w, gint64 dy,
                       gint64 dx)
{
    for (gint64 ch = 0; ch < c; ch++) {
        for (gint64 y = 0; y < h; y++) {
            float *o = out + (ch * h + y) * w;
            gint64 sy = y - dy;
            if (sy < 0 || sy >= h) {
                memset(o, 0, (gsize) w * sizeof(float));
                continue;
            }
            const float *src = in + (ch * h + sy) * w;
            for (gint64 x = 0; x < w; x++) {
                gint64 sx = x - dx;
                o[x] = sx >= 0 && sx < w ? src[sx] : 0.0f;
            }
        }
    }
}

void lmn_augment_rotate(const float *in, float *out, gint64 c, gint64 h, gint64 w, double degrees)
{
    /* Counter-clockwise as displayed with y pointing down: the inverse map rotates by +angle in
     * (x, -y) coordinates.  Exact multiples of 90 degrees use exact sines and cosines, so they
     * permute pixels without blurring. */
    double rad = degrees * G_PI / 180.0;
    double cs = cos(rad), sn = sin(rad);
    double q = degrees / 90.0;
    if (q == floor(q)) {
        static const double cos_q[4] = {1, 0, -1, 0}, sin_q[4] = {0, 1, 0, -1};
        gint64 k = ((gint64) q % 4 + 4) % 4;
        cs = cos_q[k];
        sn = sin_q[k];
    }
    double cx = (double) (w - 1) / 2.0, cy = (double) (h - 1) / 2.0;
    for (gint64 y = 0; y < h; y++) {
        for (gint64 x = 0; x < w; x++) {
            double ox = (double) x - cx, oy = cy - (double) y; /* up is positive */
            /* Source of output (ox, oy) is the point rotated by -angle. */
            double sx = cs * ox + sn * oy + cx;
            double sy = cy - (-sn * ox + cs * oy);
            double fx = floor(sx), fy = floor(sy);
            gint64 x0 = (gint64) fx, y0 = (gint64) fy;
            double ax = sx - fx, ay = sy - fy;
            for (gint64 ch = 0; ch < c; ch++) {
                const float *src = in + ch * h * w;
                double acc = 0.0;
                for (int dy = 0; dy < 2; dy++) {
                    for (int dx = 0; dx < 2; dx++) {
                        double wt = (dx ? ax : 1.0 - ax) * (dy ? ay : 1.0 - ay);
                        gint64 xx = x0 + dx, yy = y0 + dy;
                        if (wt != 0.0 && xx >= 0 && xx < w && yy >= 0 && yy < h) {
                            acc += wt * src[yy * w + xx];
                        }
                    }
                }
                out[(ch * h + y) * w + x] = (float) acc;
            }
        }
    }
}

void lmn_augment_apply(const LmnAugmentConfig *config, const LmnAugmentPca *pca,
                       const LmnShape *shape, guint64 seed, gint64 epoch, gint64 index,
                       float *sample, float *scratch)
{
    g_return_if_fail(config != NULL && shape != NULL && sample != NULL && scratch != NULL);
    LmnRandom r;
    lmn_random_init(&r, seed, LMN_STREAM(LMN_STREAM_AUGMENT, epoch));
    /* 2^32 blocks per sample: far more than any sample consumes, so streams never overlap. */
    r.position = (guint64) index << 32;
    gint64 numel = lmn_shape_numel(shape);
    gint64 c = 1, h = 1, w = numel;
    gboolean image = image_dims(shape, &c, &h, &w);
    gsize bytes = (gsize) numel * sizeof(float);

    if (image && config->hflip > 0 && lmn_random_uniform_double(&r) < config->hflip) {
        lmn_augment_hflip(sample, c, h, w);
    }
    if (image && config->crop_pad > 0) {
        gint64 span = 2 * config->crop_pad + 1;
        gint64 dy = (gint64) lmn_random_below(&r, (guint64) span) - config->crop_pad;
        gint64 dx = (gint64) lmn_random_below(&r, (guint64) span) - config->crop_pad;
        lmn_augment_shift(sample, scratch, c, h, w, dy, dx);
        memcpy(sample, scratch, bytes);
    }
    if (image && config->translate > 0) {
        gint64 span = 2 * config->translate + 1;
        gint64 dy = (gint64) lmn_random_below(&r, (guint64) span) - config->translate;
        gint64 dx = (gint64) lmn_random_below(&r, (guint64) span) - config->translate;
        lmn_augment_shift(sample, scratch, c, h, w, dy, dx);
        memcpy(sample, scratch, bytes);
    }
    if (image && config->rotate > 0) {
        double deg = (2.0 * lmn_random_uniform_double(&r) - 1.0) * config->rotate;
        lmn_augment_rotate(sample, scratch, c, h, w, deg);
        memcpy(sample, scratch, bytes);
    }
    if (config->brightness > 0) {
        float b = (float) ((2.0 * lmn_random_uniform_double(&r) - 1.0) * config->brightness);
        for (gint64 i = 0; i < numel; i++) {
            sample[i] += b;
        }
    }
    if (config->contrast > 0) {
        double f = 1.0 + (2.0 * lmn_random_uniform_double(&r) - 1.0) * config->contrast;
        double mean = 0.0;
        for (gint64 i = 0; i < numel; i++) {
            mean += sample[i];
        }
        mean /= (double) numel;
        for (gint64 i = 0; i < numel; i++) {
            sample[i] = (float) ((sample[i] - mean) * f + mean);
        }
    }
    if (config->pca_std > 0 && pca != NULL && image && c == 3) {
        double delta[3] = {0, 0, 0};
        for (int i = 0; i < 3; i++) {
            double alpha = lmn_random_normal(&r) * config->pca_std;
            for (int k = 0; k < 3; k++) {
                delta[k] += alpha * pca->eigval[i] * pca->eigvec[i][k];
            }
        }
        for (gint64 ch = 0; ch < 3; ch++) {
            float d = (float) delta[ch];
            for (gint64 p = 0; p < h * w; p++) {
                sample[ch * h * w + p] += d;
            }
        }
    }
    if (config->noise_std > 0) {
        for (gint64 i = 0; i < numel; i++) {
            sample[i] += (float) (lmn_random_normal(&r) * config->noise_std);
        }
    }
}
