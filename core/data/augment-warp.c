/* Lamina — geometric augmentation building blocks (augment.h): rotation, affine maps, resized
 * crops and elastic displacement, all sampling their source bilinearly. */
#include <lamina/augment.h>

#include <math.h>
#include <string.h>

/* Bilinear sample of one [h, w] plane at source position (sx, sy) in pixel coordinates, zero
 * outside.  Taps of weight 0 are skipped, so integral positions copy pixels exactly. */
static float sample_bilinear(const float *src, gint64 h, gint64 w, double sx, double sy)
{
    double fx = floor(sx), fy = floor(sy);
    if (!(fx >= -1.0 && fx < (double) w && fy >= -1.0 && fy < (double) h)) {
        return 0.0f; /* entirely outside (or NaN) */
    }
    gint64 x0 = (gint64) fx, y0 = (gint64) fy;
    double ax = sx - fx, ay = sy - fy;
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
    return (float) acc;
}

void lmn_augment_affine(const float *in, float *out, gint64 c, gint64 h, gint64 w,
                        const double inverse[2][2])
{
    double cx = (double) (w - 1) / 2.0, cy = (double) (h - 1) / 2.0;
    for (gint64 y = 0; y < h; y++) {
        for (gint64 x = 0; x < w; x++) {
            double ox = (double) x - cx, oy = (double) y - cy;
            double sx = inverse[0][0] * ox + inverse[0][1] * oy + cx;
            double sy = inverse[1][0] * ox + inverse[1][1] * oy + cy;
            for (gint64 ch = 0; ch < c; ch++) {
                out[(ch * h + y) * w + x] = sample_bilinear(in + ch * h * w, h, w, sx, sy);
            }
        }
    }
}

void lmn_augment_rotate(const float *in, float *out, gint64 c, gint64 h, gint64 w, double degrees)
{
    /* Counter-clockwise as displayed with y pointing down.  Exact multiples of 90 degrees use
     * exact sines and cosines, so they permute pixels without blurring. */
    double rad = degrees * G_PI / 180.0;
    double cs = cos(rad), sn = sin(rad);
    double q = degrees / 90.0;
    if (q == floor(q)) {
        static const double cos_q[4] = {1, 0, -1, 0}, sin_q[4] = {0, 1, 0, -1};
        gint64 k = ((gint64) q % 4 + 4) % 4;
        cs = cos_q[k];
        sn = sin_q[k];
    }
    /* The source of an output pixel is the point rotated back by the angle: in (x, y-down)
     * coordinates about the centre, that is [[cs, -sn], [sn, cs]]. */
    const double inverse[2][2] = {{cs, -sn}, {sn, cs}};
    lmn_augment_affine(in, out, c, h, w, inverse);
}

void lmn_augment_resized_crop(const float *in, float *out, gint64 c, gint64 h, gint64 w, gint64 top,
                              gint64 left, gint64 box_h, gint64 box_w)
{
    g_return_if_fail(box_h > 0 && box_w > 0 && top >= 0 && left >= 0 && top + box_h <= h &&
                     left + box_w <= w);
    /* Half-pixel centres (align_corners = false): output pixel i samples box position
     * (i + 0.5) * box / size - 0.5, clamped below at the box's first pixel, and a tap beyond
     * the box's last pixel reads that pixel (PyTorch's bilinear interpolate). */
    double ry = (double) box_h / (double) h, rx = (double) box_w / (double) w;
    for (gint64 y = 0; y < h; y++) {
        double sy = MAX(((double) y + 0.5) * ry - 0.5, 0.0);
        gint64 y0 = MIN((gint64) sy, box_h - 1);
        gint64 y1 = MIN(y0 + 1, box_h - 1);
        double ay = sy - (double) y0;
        for (gint64 x = 0; x < w; x++) {
            double sx = MAX(((double) x + 0.5) * rx - 0.5, 0.0);
            gint64 x0 = MIN((gint64) sx, box_w - 1);
            gint64 x1 = MIN(x0 + 1, box_w - 1);
            double ax = sx - (double) x0;
            for (gint64 ch = 0; ch < c; ch++) {
                const float *s = in + (ch * h + top) * w + left;
                double v = (1.0 - ay) * ((1.0 - ax) * s[y0 * w + x0] + ax * s[y0 * w + x1]) +
                           ay * ((1.0 - ax) * s[y1 * w + x0] + ax * s[y1 * w + x1]);
                out[(ch * h + y) * w + x] = (float) v;
            }
        }
    }
}

void lmn_augment_displace(const float *in, float *out, gint64 c, gint64 h, gint64 w,
                          const float *dx, const float *dy)
{
    for (gint64 y = 0; y < h; y++) {
        for (gint64 x = 0; x < w; x++) {
            double sx = (double) x + dx[y * w + x], sy = (double) y + dy[y * w + x];
            for (gint64 ch = 0; ch < c; ch++) {
                out[(ch * h + y) * w + x] = sample_bilinear(in + ch * h * w, h, w, sx, sy);
            }
        }
    }
}

gint64 lmn_augment_blur_radius(double sigma)
{
    return sigma > 0 ? (gint64) ceil(3.0 * sigma) : 0;
}

/* One pass of the normalised Gaussian along rows (@horizontal) or columns, borders
 * replicated. */
static void blur_pass(const float *in, float *out, gint64 h, gint64 w, const double *k,
                      gint64 radius, gboolean horizontal)
{
    for (gint64 y = 0; y < h; y++) {
        for (gint64 x = 0; x < w; x++) {
            double acc = 0.0;
            for (gint64 t = -radius; t <= radius; t++) {
                gint64 yy = horizontal ? y : CLAMP(y + t, 0, h - 1);
                gint64 xx = horizontal ? CLAMP(x + t, 0, w - 1) : x;
                acc += k[t + radius] * in[yy * w + xx];
            }
            out[y * w + x] = (float) acc;
        }
    }
}

void lmn_augment_gaussian_blur(float *plane, float *scratch, gint64 h, gint64 w, double sigma)
{
    gint64 radius = lmn_augment_blur_radius(sigma);
    if (radius == 0) {
        return;
    }
    /* Radii beyond the image add only replicated border values; cap them so a huge sigma costs
     * no more than the image's own size. */
    radius = MIN(radius, MAX(h, w));
    double *k = g_new(double, 2 * radius + 1);
    double sum = 0.0;
    for (gint64 t = -radius; t <= radius; t++) {
        k[t + radius] = exp(-(double) (t * t) / (2.0 * sigma * sigma));
        sum += k[t + radius];
    }
    for (gint64 t = 0; t < 2 * radius + 1; t++) {
        k[t] /= sum;
    }
    blur_pass(plane, scratch, h, w, k, radius, TRUE);
    blur_pass(scratch, plane, h, w, k, radius, FALSE);
    g_free(k);
}

void lmn_augment_elastic_field(LmnRandom *r, float *dx, float *dy, float *scratch, gint64 h,
                               gint64 w, double alpha, double sigma)
{
    /* Simard et al. (2003): uniform displacements in [-1, 1], smoothed by a Gaussian of
     * standard deviation sigma, scaled by alpha. */
    gint64 hw = h * w;
    for (gint64 i = 0; i < hw; i++) {
        dx[i] = (float) (2.0 * lmn_random_uniform_double(r) - 1.0);
        dy[i] = (float) (2.0 * lmn_random_uniform_double(r) - 1.0);
    }
    lmn_augment_gaussian_blur(dx, scratch, h, w, sigma);
    lmn_augment_gaussian_blur(dy, scratch, h, w, sigma);
    for (gint64 i = 0; i < hw; i++) {
        dx[i] = (float) (dx[i] * alpha);
        dy[i] = (float) (dy[i] * alpha);
    }
}
