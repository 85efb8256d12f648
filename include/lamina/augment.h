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
 *   2. random crop with zero padding: pad by crop_pad on every side, crop back to H x W at a
 *      uniformly chosen offset (a shift by dy, dx in [-crop_pad, crop_pad])
 *   3. translation by whole pixels dy, dx uniform in [-translate, translate], zero fill
 *   4. rotation by an angle uniform in [-rotate, rotate] degrees about the image centre, bilinear,
 *      zero fill outside the source
 *   5. brightness: add b ~ U[-brightness, brightness]; contrast: scale the deviation from the
 *      sample's mean by f ~ U[1 - contrast, 1 + contrast]
 *   6. PCA colour jitter (AlexNet, Krizhevsky et al. 2012): for C = 3, add
 *      sum_i alpha_i * lambda_i * v_i to every pixel's (R, G, B), alpha_i ~ N(0, pca_std), where
 *      (lambda_i, v_i) are the eigenpairs of the training set's 3 x 3 channel covariance
 *   7. Gaussian noise: add N(0, noise_std) to every value
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
 * brightness, contrast, pca_std; all default to 0 = off), for the config parser to validate with
 * lmn_params_new_from_strings().
 * Returns: (transfer none): a static NULL-name-terminated array
 */
const LmnParamSpec *lmn_augment_specs(void);

/**
 * lmn_augment_config_from_params:
 * Fills @config from a set validated against lmn_augment_specs().
 */
void lmn_augment_config_from_params(const LmnParams *params, LmnAugmentConfig *config);

/** lmn_augment_config_is_enabled: Returns: whether any transform of @config is on. */
gboolean lmn_augment_config_is_enabled(const LmnAugmentConfig *config);

/**
 * lmn_augment_check_shape:
 * Checks that @config's transforms apply to samples of @shape: the spatial ones (flip, crop,
 * translate, rotate) need [C, H, W] or [H, W], PCA jitter needs [3, H, W].
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
 * lmn_augment_apply:
 * Augments one sample in place.
 * @shape: the per-sample shape
 * @pca: (nullable): required when @config->pca_std > 0
 * @seed, @epoch, @index: select the random numbers (see above)
 * @scratch: shape-numel floats of scratch space
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

G_END_DECLS
