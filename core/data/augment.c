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
    LMN_PARAM_SPEC_BOOL("resized_crop", "false",
                        "random resized crop (torchvision's RandomResizedCrop), resized back to "
                        "the sample's height and width"),
    LMN_PARAM_SPEC_FLOAT("resized_crop_scale_min", "0.08", 0, 1, LMN_PARAM_FLAG_MIN_EXCLUSIVE,
                         "smallest area fraction of the resized crop's box"),
    LMN_PARAM_SPEC_FLOAT("resized_crop_scale_max", "1", 0, 1, LMN_PARAM_FLAG_MIN_EXCLUSIVE,
                         "largest area fraction of the resized crop's box"),
    LMN_PARAM_SPEC_FLOAT("resized_crop_ratio_min", "0.75", 0.01, 100, 0,
                         "smallest aspect ratio (width / height) of the resized crop's box"),
    LMN_PARAM_SPEC_FLOAT("resized_crop_ratio_max", "1.3333333333333333", 0.01, 100, 0,
                         "largest aspect ratio (width / height) of the resized crop's box"),
    LMN_PARAM_SPEC_FLOAT("affine_scale", "0", 0, 1, LMN_PARAM_FLAG_MAX_EXCLUSIVE,
                         "random scaling by a factor in [1-affine_scale, 1+affine_scale] about "
                         "the centre (0 = off)"),
    LMN_PARAM_SPEC_FLOAT("affine_shear", "0", 0, 89, 0,
                         "random x-shear by up to this many degrees (0 = off)"),
    LMN_PARAM_SPEC_FLOAT("elastic_alpha", "0", 0, 1e6, 0,
                         "elastic distortion (Simard et al.): displacement scale in pixels "
                         "(0 = off; 34 for MNIST in the paper)"),
    LMN_PARAM_SPEC_FLOAT("elastic_sigma", "4", 0, 1e4, LMN_PARAM_FLAG_MIN_EXCLUSIVE,
                         "standard deviation in pixels of the elastic field's Gaussian smoothing"),
    LMN_PARAM_SPEC_FLOAT("saturation", "0", 0, INFINITY, 0,
                         "RGB: blend with the luma by a factor in [max(0, 1-s), 1+s] (0 = off)"),
    LMN_PARAM_SPEC_FLOAT("hue", "0", 0, 0.5, 0,
                         "RGB: rotate colours about the grey axis by up to this many turns "
                         "(0 = off)"),
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
    config->resized_crop = lmn_params_get_bool(params, "resized_crop");
    config->resized_crop_scale[0] = lmn_params_get_float(params, "resized_crop_scale_min");
    config->resized_crop_scale[1] = lmn_params_get_float(params, "resized_crop_scale_max");
    config->resized_crop_ratio[0] = lmn_params_get_float(params, "resized_crop_ratio_min");
    config->resized_crop_ratio[1] = lmn_params_get_float(params, "resized_crop_ratio_max");
    config->affine_scale = lmn_params_get_float(params, "affine_scale");
    config->affine_shear = lmn_params_get_float(params, "affine_shear");
    config->elastic_alpha = lmn_params_get_float(params, "elastic_alpha");
    config->elastic_sigma = lmn_params_get_float(params, "elastic_sigma");
    config->saturation = lmn_params_get_float(params, "saturation");
    config->hue = lmn_params_get_float(params, "hue");
}

gboolean lmn_augment_config_check(const LmnAugmentConfig *c, const char *where, GError **error)
{
    g_return_val_if_fail(c != NULL, FALSE);
    if (c->resized_crop && c->resized_crop_scale[0] > c->resized_crop_scale[1]) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s: resized_crop_scale_min (%g) is above resized_crop_scale_max (%g); "
                    "give the smaller area fraction first",
                    where, c->resized_crop_scale[0], c->resized_crop_scale[1]);
        return FALSE;
    }
    if (c->resized_crop && c->resized_crop_ratio[0] > c->resized_crop_ratio[1]) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s: resized_crop_ratio_min (%g) is above resized_crop_ratio_max (%g); "
                    "give the smaller aspect ratio first",
                    where, c->resized_crop_ratio[0], c->resized_crop_ratio[1]);
        return FALSE;
    }
    return TRUE;
}

static gboolean is_spatial(const LmnAugmentConfig *c)
{
    return c->hflip > 0 || c->crop_pad > 0 || c->translate > 0 || c->rotate > 0 ||
           c->resized_crop || c->affine_scale > 0 || c->affine_shear > 0 || c->elastic_alpha > 0;
}

/* The transforms that need three colour channels. */
static gboolean is_rgb(const LmnAugmentConfig *c)
{
    return c->pca_std > 0 || c->saturation > 0 || c->hue > 0;
}

gboolean lmn_augment_config_is_enabled(const LmnAugmentConfig *c)
{
    g_return_val_if_fail(c != NULL, FALSE);
    return is_spatial(c) || is_rgb(c) || c->noise_std > 0 || c->brightness > 0 || c->contrast > 0;
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
                    "%s: samples are %s; [augment] hflip, crop_pad, translate, rotate, "
                    "resized_crop, affine_* and elastic_alpha need images [C, H, W] or [H, W] "
                    "(store x with its image shape)",
                    where, s);
        return FALSE;
    }
    if (is_rgb(config) && !(image && c == 3 && shape->ndim == 3)) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                    "%s: samples are %s; [augment] pca_std, saturation and hue need RGB images "
                    "[3, H, W]",
                    where, s);
        return FALSE;
    }
    if (lmn_augment_scratch_floats(config, shape) == 0) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                    "%s: samples are %s, too large to augment in memory", where, s);
        return FALSE;
    }
    return TRUE;
}

gsize lmn_augment_scratch_floats(const LmnAugmentConfig *config, const LmnShape *shape)
{
    g_return_val_if_fail(config != NULL && shape != NULL, 0);
    gint64 numel = lmn_shape_numel(shape), c = 1, h = 1, w = numel;
    if (numel <= 0 || (guint64) numel > G_MAXSIZE / sizeof(float) / 4) {
        return 0;
    }
    if (config->elastic_alpha > 0 && image_dims(shape, &c, &h, &w)) {
        return (gsize) numel + 3 * (gsize) (h * w); /* the result, dx, dy and blur scratch */
    }
    return (gsize) numel;
}

void lmn_augment_resized_crop_box(LmnRandom *r, gint64 h, gint64 w, const double scale[2],
                                  const double ratio[2], gint64 box[4])
{
    double area = (double) h * (double) w;
    double lr0 = log(ratio[0]), lr1 = log(ratio[1]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * (scale[0] + (scale[1] - scale[0]) * lmn_random_uniform_double(r));
        double aspect = exp(lr0 + (lr1 - lr0) * lmn_random_uniform_double(r));
        /* nearbyint rounds half to even, as Python's round() in torchvision does. */
        double bw = nearbyint(sqrt(target * aspect)), bh = nearbyint(sqrt(target / aspect));
        if (bw > 0 && bw <= (double) w && bh > 0 && bh <= (double) h) {
            box[2] = (gint64) bh;
            box[3] = (gint64) bw;
            box[0] = (gint64) lmn_random_below(r, (guint64) (h - box[2] + 1));
            box[1] = (gint64) lmn_random_below(r, (guint64) (w - box[3] + 1));
            return;
        }
    }
    /* The largest centred box whose aspect ratio is clamped into the range. */
    double in_ratio = (double) w / (double) h;
    gint64 bh = h, bw = w;
    if (in_ratio < ratio[0]) {
        bh = (gint64) nearbyint((double) w / ratio[0]);
    } else if (in_ratio > ratio[1]) {
        bw = (gint64) nearbyint((double) h * ratio[1]);
    }
    box[2] = CLAMP(bh, 1, h);
    box[3] = CLAMP(bw, 1, w);
    box[0] = (h - box[2]) / 2;
    box[1] = (w - box[3]) / 2;
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

/* The geometric transforms, 2 to 7 of the header's list (the flip is done by the caller). */
static void apply_geometry(const LmnAugmentConfig *config, LmnRandom *r, gint64 c, gint64 h,
                           gint64 w, float *sample, float *scratch)
{
    gsize bytes = (gsize) (c * h * w) * sizeof(float);
    if (config->resized_crop) {
        gint64 box[4];
        lmn_augment_resized_crop_box(r, h, w, config->resized_crop_scale,
                                     config->resized_crop_ratio, box);
        lmn_augment_resized_crop(sample, scratch, c, h, w, box[0], box[1], box[2], box[3]);
        memcpy(sample, scratch, bytes);
    }
    if (config->crop_pad > 0) {
        gint64 span = 2 * config->crop_pad + 1;
        gint64 dy = (gint64) lmn_random_below(r, (guint64) span) - config->crop_pad;
        gint64 dx = (gint64) lmn_random_below(r, (guint64) span) - config->crop_pad;
        lmn_augment_shift(sample, scratch, c, h, w, dy, dx);
        memcpy(sample, scratch, bytes);
    }
    if (config->translate > 0) {
        gint64 span = 2 * config->translate + 1;
        gint64 dy = (gint64) lmn_random_below(r, (guint64) span) - config->translate;
        gint64 dx = (gint64) lmn_random_below(r, (guint64) span) - config->translate;
        lmn_augment_shift(sample, scratch, c, h, w, dy, dx);
        memcpy(sample, scratch, bytes);
    }
    if (config->rotate > 0) {
        double deg = (2.0 * lmn_random_uniform_double(r) - 1.0) * config->rotate;
        lmn_augment_rotate(sample, scratch, c, h, w, deg);
        memcpy(sample, scratch, bytes);
    }
    if (config->affine_scale > 0 || config->affine_shear > 0) {
        double f = 1.0, t = 0.0;
        if (config->affine_scale > 0) {
            f += (2.0 * lmn_random_uniform_double(r) - 1.0) * config->affine_scale;
        }
        if (config->affine_shear > 0) {
            t = tan((2.0 * lmn_random_uniform_double(r) - 1.0) * config->affine_shear * G_PI /
                    180.0);
        }
        /* Forward map f [[1, t], [0, 1]]; its inverse samples the source. */
        const double inverse[2][2] = {{1.0 / f, -t / f}, {0.0, 1.0 / f}};
        lmn_augment_affine(sample, scratch, c, h, w, inverse);
        memcpy(sample, scratch, bytes);
    }
    if (config->elastic_alpha > 0) {
        float *dx = scratch + c * h * w, *dy = dx + h * w, *blur = dy + h * w;
        lmn_augment_elastic_field(r, dx, dy, blur, h, w, config->elastic_alpha,
                                  config->elastic_sigma);
        lmn_augment_displace(sample, scratch, c, h, w, dx, dy);
        memcpy(sample, scratch, bytes);
    }
}

/* Brightness, contrast and the RGB transforms (8 to 10). */
static void apply_colour(const LmnAugmentConfig *config, const LmnAugmentPca *pca, LmnRandom *r,
                         gboolean rgb, gint64 numel, gint64 hw, float *sample)
{
    if (config->brightness > 0) {
        float b = (float) ((2.0 * lmn_random_uniform_double(r) - 1.0) * config->brightness);
        for (gint64 i = 0; i < numel; i++) {
            sample[i] += b;
        }
    }
    if (config->contrast > 0) {
        double f = 1.0 + (2.0 * lmn_random_uniform_double(r) - 1.0) * config->contrast;
        double mean = 0.0;
        for (gint64 i = 0; i < numel; i++) {
            mean += sample[i];
        }
        mean /= (double) numel;
        for (gint64 i = 0; i < numel; i++) {
            sample[i] = (float) ((sample[i] - mean) * f + mean);
        }
    }
    if (rgb && config->saturation > 0) {
        double lo = MAX(0.0, 1.0 - config->saturation), hi = 1.0 + config->saturation;
        lmn_augment_saturation(sample, hw, lo + (hi - lo) * lmn_random_uniform_double(r));
    }
    if (rgb && config->hue > 0) {
        lmn_augment_hue(sample, hw, (2.0 * lmn_random_uniform_double(r) - 1.0) * config->hue);
    }
    if (config->pca_std > 0 && pca != NULL && rgb) {
        double delta[3] = {0, 0, 0};
        for (int i = 0; i < 3; i++) {
            double alpha = lmn_random_normal(r) * config->pca_std;
            for (int k = 0; k < 3; k++) {
                delta[k] += alpha * pca->eigval[i] * pca->eigvec[i][k];
            }
        }
        for (gint64 ch = 0; ch < 3; ch++) {
            float d = (float) delta[ch];
            for (gint64 p = 0; p < hw; p++) {
                sample[ch * hw + p] += d;
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
    /* 2^32 blocks per sample: far more than any sample consumes, so streams never overlap
     * (the elastic field, the largest consumer, draws 2 values per pixel). */
    r.position = (guint64) index << 32;
    gint64 numel = lmn_shape_numel(shape);
    gint64 c = 1, h = 1, w = numel;
    gboolean image = image_dims(shape, &c, &h, &w);

    if (image && config->hflip > 0 && lmn_random_uniform_double(&r) < config->hflip) {
        lmn_augment_hflip(sample, c, h, w);
    }
    if (image) {
        apply_geometry(config, &r, c, h, w, sample, scratch);
    }
    apply_colour(config, pca, &r, image && c == 3, numel, h * w, sample);
    if (config->noise_std > 0) {
        for (gint64 i = 0; i < numel; i++) {
            sample[i] += (float) (lmn_random_normal(&r) * config->noise_std);
        }
    }
}
