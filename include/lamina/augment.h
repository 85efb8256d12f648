/* Lamina — data augmentation for training samples.
 *
 * Each training sample is transformed independently, with random numbers drawn from Philox
 * stream LMN_STREAM(LMN_STREAM_AUGMENT, epoch) of the training seed, at a position derived from
 * the sample's index in the dataset (index << 32).  The result therefore depends only on
 * (seed, epoch, sample index) — not on the batch it lands in, on prefetching, or on thread timing —
 * and a resumed run augments exactly as an uninterrupted one.
 *
 * Transforms, applied in this order when enabled (samples are [C, H, W] or [H, W]; only noise,
 * brightness and contrast apply to other shapes):
 *   1. horizontal flip with probability hflip
 *   2. random resized crop (torchvision's RandomResizedCrop): a box of area fraction
 *      s ~ U[scale_min, scale_max] of the image and aspect ratio w / h = exp(U[ln ratio_min,
 *      ln ratio_max]) at a uniform position, resized back to H x W bilinearly; up to ten draws
 *      for a box that fits, then the largest centred box whose ratio is clamped to the range
 *   3. random crop with zero padding: pad by crop_pad on every side, crop back to H x W at a
 *      uniformly chosen offset (a shift by dy, dx in [-crop_pad, crop_pad])
 *   4. translation by whole pixels dy, dx uniform in [-translate, translate], zero fill
 *   5. rotation by an angle uniform in [-rotate, rotate] degrees about the image centre, bilinear,
 *      zero fill outside the source
 *   6. affine: scale by f ~ U[1 - affine_scale, 1 + affine_scale] and shear x by an angle
 *      a ~ U[-affine_shear, affine_shear] degrees (x' = x + tan(a) y, y pointing down), about the
 *      centre, bilinear, zero fill
 *   7. elastic distortion (Simard et al. 2003): every pixel displaced by alpha times a field of
 *      U[-1, 1] values smoothed by a Gaussian of standard deviation elastic_sigma (borders
 *      replicated), bilinear, zero fill
 *   8. brightness: add b ~ U[-brightness, brightness]; contrast: scale the deviation from the
 *      sample's mean by f ~ U[1 - contrast, 1 + contrast]
 *   9. RGB only: saturation, blending each pixel with its BT.601 luma by f ~ U[max(0, 1 - s),
 *      1 + s]; hue, rotating (R, G, B) about the grey axis by t ~ U[-hue, hue] turns (a third of
 *      a turn cycles red to green to blue, as an HSV hue shift does).  Neither clamps, so they
 *      apply to standardised data too (torchvision's ColorJitter clamps to [0, 1]).
 *  10. PCA colour jitter (AlexNet, Krizhevsky et al. 2012): for C = 3, add
 *      sum_i alpha_i * lambda_i * v_i to every pixel's (R, G, B), alpha_i ~ N(0, pca_std), where
 *      (lambda_i, v_i) are the eigenpairs of the training set's 3 x 3 channel covariance
 *  11. Gaussian noise: add N(0, noise_std) to every value
 * A transform that is off draws no random numbers, so adding one to a config leaves the draws of
 * the others as they were.
 * Augmentation is for training only; evaluation reads samples unchanged.
 */
#pragma once

#include <lamina/params.h>
#include <lamina/random.h>
#include <lamina/tensor.h>

G_BEGIN_DECLS

/**
 * LmnAugmentConfig:
 * The `[augment]` config group as a struct.  All zero (the default) disables augmentation.
 * @hflip: probability of a horizontal flip, in [0, 1]
 * @crop_pad: zero padding of the random crop, in pixels (0 = off)
 * @translate: largest shift in pixels (0 = off)
 * @rotate: largest rotation in degrees (0 = off)
 * @noise_std: standard deviation of additive Gaussian noise (0 = off)
 * @brightness: largest additive brightness change (0 = off)
 * @contrast: largest relative contrast change, in [0, 1) (0 = off)
 * @pca_std: standard deviation of the PCA colour-jitter alphas (0 = off; AlexNet used 0.1)
 * @resized_crop: whether the random resized crop is on
 * @resized_crop_scale: its [min, max] area fraction, in (0, 1] (torchvision: 0.08, 1)
 * @resized_crop_ratio: its [min, max] aspect ratio w / h (torchvision: 3/4, 4/3)
 * @affine_scale: largest relative scale change, in [0, 1) (0 = off)
 * @affine_shear: largest x-shear angle in degrees, below 90 (0 = off)
 * @elastic_alpha: elastic displacement scale in pixels (0 = off; Simard et al. used 34 on MNIST)
 * @elastic_sigma: standard deviation of the elastic field's smoothing, in pixels (default 4)
 * @saturation: largest relative saturation change (0 = off)
 * @hue: largest hue rotation in turns, in [0, 0.5] (0 = off)
 *
 * The members from @resized_crop on were appended in ABI 1.3.
 */
typedef struct {
    double hflip;
    gint64 crop_pad;
    gint64 translate;
    double rotate;
    double noise_std;
    double brightness;
    double contrast;
    double pca_std;
    gpointer reserved[4];
    gboolean resized_crop;
    double resized_crop_scale[2];
    double resized_crop_ratio[2];
    double affine_scale;
    double affine_shear;
    double elastic_alpha;
    double elastic_sigma;
    double saturation;
    double hue;
} LmnAugmentConfig;

/**
 * LmnAugmentPca:
 * Eigen-decomposition of the training set's RGB covariance, for PCA colour jitter.
 * @eigval: eigenvalues, descending
 * @eigvec: eigenvectors; eigvec[i] is the unit vector of eigval[i] (over R, G, B)
 */
typedef struct {
    double eigval[3];
    double eigvec[3][3];
} LmnAugmentPca;

/**
 * lmn_augment_specs:
 * The schema of the `[augment]` config group (keys hflip, crop_pad, translate, rotate, noise_std,
 * brightness, contrast, pca_std, resized_crop, resized_crop_scale_min/_max,
 * resized_crop_ratio_min/_max, affine_scale, affine_shear, elastic_alpha, elastic_sigma,
 * saturation, hue; every transform off by default), for the config parser to validate with
 * lmn_params_new_from_strings().
 * Returns: (transfer none): a static NULL-name-terminated array
 */
const LmnParamSpec *lmn_augment_specs(void);

/**
 * lmn_augment_config_from_params:
 * Fills @config from a set validated against lmn_augment_specs().
 */
void lmn_augment_config_from_params(const LmnParams *params, LmnAugmentConfig *config);

/**
 * lmn_augment_config_check:
 * The checks across keys that a schema cannot express: each [min, max] range of the resized
 * crop in order.
 * @where: names the group in the message, e.g. "run.ini: [augment]"
 * Returns: FALSE with LMN_CONFIG_ERROR_INVALID naming the keys
 */
gboolean lmn_augment_config_check(const LmnAugmentConfig *config, const char *where,
                                  GError **error);

/** lmn_augment_config_is_enabled: Returns: whether any transform of @config is on. */
gboolean lmn_augment_config_is_enabled(const LmnAugmentConfig *config);

/**
 * lmn_augment_check_shape:
 * Checks that @config's transforms apply to samples of @shape: the spatial ones (flip, crops,
 * translate, rotate, affine, elastic) need [C, H, W] or [H, W]; PCA jitter, saturation and hue
 * need [3, H, W].
 * @where: names the data in the message, e.g. "data.h5:/train"
 * Returns: FALSE with LMN_DATA_ERROR_SHAPE naming the transform and the shape
 */
gboolean lmn_augment_check_shape(const LmnAugmentConfig *config, const LmnShape *shape,
                                 const char *where, GError **error);

/**
 * lmn_augment_pca_from_samples:
 * Computes the channel covariance of @n samples of shape [3, H, W] (@hw = H * W values per
 * channel) in double precision over every pixel, and its eigen-decomposition (Jacobi).
 */
void lmn_augment_pca_from_samples(const float *x, gint64 n, gint64 hw, LmnAugmentPca *pca_out);

/**
 * lmn_augment_scratch_floats:
 * Returns: how many floats of scratch lmn_augment_apply() needs for samples of @shape: the
 * sample's size, plus three image planes when elastic distortion is on; 0 when a size overflows
 * (lmn_augment_check_shape() refuses such shapes first)
 */
gsize lmn_augment_scratch_floats(const LmnAugmentConfig *config, const LmnShape *shape);

/**
 * lmn_augment_apply:
 * Augments one sample in place.
 * @shape: the per-sample shape
 * @pca: (nullable): required when @config->pca_std > 0
 * @seed, @epoch, @index: select the random numbers (see above)
 * @scratch: lmn_augment_scratch_floats() floats of scratch space
 */
void lmn_augment_apply(const LmnAugmentConfig *config, const LmnAugmentPca *pca,
                       const LmnShape *shape, guint64 seed, gint64 epoch, gint64 index,
                       float *sample, float *scratch);

/* Building blocks, exposed for tests and custom pipelines.  Images are [c, h, w], row-major. */

/** lmn_augment_hflip: mirrors every row of @img in place. */
void lmn_augment_hflip(float *img, gint64 c, gint64 h, gint64 w);
/**
 * lmn_augment_shift:
 * out[ch, y, x] = in[ch, y - dy, x - dx], zero where that lies outside (positive @dx moves the
 * content right, positive @dy down).  @in and @out must not overlap.
 */
void lmn_augment_shift(const float *in, float *out, gint64 c, gint64 h, gint64 w, gint64 dy,
                       gint64 dx);
/**
 * lmn_augment_rotate:
 * Rotates by @degrees counter-clockwise (as displayed, row 0 at the top) about the centre
 * ((w - 1) / 2, (h - 1) / 2): each output pixel samples the inverse-rotated source position
 * bilinearly, zero outside.  @in and @out must not overlap.
 */
void lmn_augment_rotate(const float *in, float *out, gint64 c, gint64 h, gint64 w,
                        double degrees);
/**
 * lmn_augment_affine:
 * out(p) = in(@inverse (p - centre) + centre) for each pixel p = (x, y) (y pointing down, centre
 * ((w - 1) / 2, (h - 1) / 2)), bilinear, zero outside: @inverse maps output to source
 * positions.  @in and @out must not overlap.
 */
void lmn_augment_affine(const float *in, float *out, gint64 c, gint64 h, gint64 w,
                        const double inverse[2][2]);
/**
 * lmn_augment_resized_crop:
 * Resizes the box of @box_h x @box_w pixels at (@top, @left) of @in to the full h x w in @out,
 * bilinearly with half-pixel centres and no antialiasing (PyTorch's interpolate with
 * mode "bilinear", align_corners false).  The box must lie inside the image.
 */
void lmn_augment_resized_crop(const float *in, float *out, gint64 c, gint64 h, gint64 w, gint64 top,
                              gint64 left, gint64 box_h, gint64 box_w);
/**
 * lmn_augment_resized_crop_box:
 * Draws the box of a random resized crop from @r as documented above (torchvision's algorithm).
 * @scale, @ratio: the [min, max] ranges
 * @box: receives top, left, height, width
 */
void lmn_augment_resized_crop_box(LmnRandom *r, gint64 h, gint64 w, const double scale[2],
                                  const double ratio[2], gint64 box[4]);
/**
 * lmn_augment_displace:
 * out[ch, y, x] = in[ch] sampled bilinearly at (x + dx[y, x], y + dy[y, x]), zero outside;
 * @dx and @dy are h x w fields.  @in and @out must not overlap.
 */
void lmn_augment_displace(const float *in, float *out, gint64 c, gint64 h, gint64 w,
                          const float *dx, const float *dy);
/** lmn_augment_blur_radius: Returns: the Gaussian kernel's radius, ceil(3 @sigma) (0 for 0). */
gint64 lmn_augment_blur_radius(double sigma);
/**
 * lmn_augment_gaussian_blur:
 * Smooths the h x w @plane in place with the normalised Gaussian of standard deviation @sigma,
 * truncated at lmn_augment_blur_radius() (at most max(h, w)), separably, borders replicated.
 * @scratch: h * w floats
 */
void lmn_augment_gaussian_blur(float *plane, float *scratch, gint64 h, gint64 w, double sigma);
/**
 * lmn_augment_elastic_field:
 * Draws Simard's displacement fields into @dx and @dy (h x w each): U[-1, 1] from @r (dx then dy
 * for each pixel), blurred by @sigma, times @alpha.  @scratch: h * w floats.
 */
void lmn_augment_elastic_field(LmnRandom *r, float *dx, float *dy, float *scratch, gint64 h,
                               gint64 w, double alpha, double sigma);
/**
 * lmn_augment_saturation:
 * For an RGB image of @hw pixels per channel: each pixel becomes luma + @factor (pixel - luma),
 * luma = 0.299 R + 0.587 G + 0.114 B (0 gives grey, 1 the identity).
 */
void lmn_augment_saturation(float *img, gint64 hw, double factor);
/**
 * lmn_augment_hue_matrix:
 * The 3 x 3 rotation of (R, G, B) about the grey axis by @turns (1 = a full turn); it keeps
 * greys and R + G + B.
 */
void lmn_augment_hue_matrix(double turns, double m[3][3]);
/** lmn_augment_hue: applies lmn_augment_hue_matrix(@turns) to every pixel of an RGB image. */
void lmn_augment_hue(float *img, gint64 hw, double turns);

G_END_DECLS
