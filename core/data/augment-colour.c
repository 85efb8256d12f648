/* Lamina — colour augmentation building blocks for RGB images (augment.h). */
#include <lamina/augment.h>

#include <math.h>

/* ITU-R BT.601 luma, as torchvision's rgb_to_grayscale. */
static double luma(double r, double g, double b)
{
    return 0.299 * r + 0.587 * g + 0.114 * b;
}

void lmn_augment_saturation(float *img, gint64 hw, double factor)
{
    float *r = img, *g = img + hw, *b = img + 2 * hw;
    for (gint64 p = 0; p < hw; p++) {
        double y = luma(r[p], g[p], b[p]);
        r[p] = (float) (y + factor * (r[p] - y));
        g[p] = (float) (y + factor * (g[p] - y));
        b[p] = (float) (y + factor * (b[p] - y));
    }
}

void lmn_augment_hue_matrix(double turns, double m[3][3])
{
    /* Rodrigues' rotation about the unit grey axis k = (1, 1, 1) / sqrt(3):
     * M = cos t I + sin t [k]x + (1 - cos t) k k^T.  A third of a turn maps red to green, green
     * to blue and blue to red, as a hue shift of 1/3 in HSV does. */
    double t = turns * 2.0 * G_PI;
    double cs = cos(t), sn = sin(t), s3 = sn / sqrt(3.0), o = (1.0 - cs) / 3.0;
    double d = cs + o, a = o - s3, b = o + s3;
    m[0][0] = d, m[0][1] = a, m[0][2] = b;
    m[1][0] = b, m[1][1] = d, m[1][2] = a;
    m[2][0] = a, m[2][1] = b, m[2][2] = d;
}

void lmn_augment_hue(float *img, gint64 hw, double turns)
{
    double m[3][3];
    lmn_augment_hue_matrix(turns, m);
    float *r = img, *g = img + hw, *b = img + 2 * hw;
    for (gint64 p = 0; p < hw; p++) {
        double v[3] = {r[p], g[p], b[p]};
        r[p] = (float) (m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2]);
        g[p] = (float) (m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2]);
        b[p] = (float) (m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2]);
    }
}
