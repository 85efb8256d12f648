/* Lamina — finite-difference gradient checks for layers.
 *
 * A gradient check builds one layer standalone (lmn_layer_new) on a backend, fills its inputs
 * and parameters with seeded random values, runs forward and backward once, and compares every
 * f32 input gradient and every parameter gradient with central finite differences of the scalar
 *
 *     L = sum(output * output_grad)      (output_grad a fixed random tensor)
 *
 * or, for a loss layer, of the loss itself.  L is accumulated in double on the host from float
 * forward passes.  It works for any registered layer type, third-party ones included: the
 * checker knows layers only through the layer API.  Used by the test suites on every backend and
 * by `lamina gradcheck`.
 *
 * Float32 forward passes limit the attainable agreement: with the defaults a correct layer shows
 * worst relative errors of 1e-5 to 5e-3; a wrong gradient (a missing factor, a transposed
 * operand, accumulation instead of overwrite) shows errors of order 0.1 to 1.  A bound of 1e-2
 * separates the two.
 */
#pragma once

#include <lamina/layer.h>
#include <lamina/registry.h>

G_BEGIN_DECLS

/**
 * LmnGradcheckOptions:
 * @seed: seeds every random value (inputs, labels, parameters, output_grad)
 * @batch: the batch size N (default 3; `lamina gradcheck` sets 4 unless --batch is given)
 * @step: finite-difference step relative to @value_scale (default 1e-2)
 * @value_scale: f32 inputs and parameters are drawn with magnitudes in
 *   [@margin * @value_scale, @value_scale] and random signs (default 1)
 * @margin: keeps values away from 0, where activations such as relu have a kink, so that no
 *   finite-difference step crosses it (default 0.1; raised to 4 * @step when smaller)
 * @rel_floor: the relative error of an element is |a - n| / max(|a|, |n|, floor), with a the
 *   analytic and n the numeric derivative, and floor the larger of @rel_floor * s (s the largest
 *   |a| or |n| of that tensor) and 100 times the float32 resolution of a central difference
 *   (2^-24 * |L| / step for a loss; for other layers |L| is replaced by the root sum of squares
 *   of output * output_grad), so that elements far below the tensor's scale or the evaluation's
 *   precision do not report rounding noise as a large relative error (default 1e-3)
 * @max_elements: check at most this many elements per tensor, chosen at random (0 = all)
 * @num_classes: range [0, num_classes) of random i32 inputs (class labels); 0 = the last
 *   dimension of the first input's per-sample shape (the logits of a classification loss)
 * @training: the mode forward and backward run in (default TRUE)
 *
 * Initialise with lmn_gradcheck_options_init() and change what you need; the struct only ever
 * grows.
 */
typedef struct {
    guint32 struct_size;
    guint64 seed;
    gint64 batch;
    double step;
    double value_scale;
    double margin;
    double rel_floor;
    gint64 max_elements;
    gint64 num_classes;
    gboolean training;
    gpointer reserved[4];
} LmnGradcheckOptions;

/**
 * LmnGradcheckResult:
 * One checked tensor.
 * @name: "input 0", "input 1", ... or the parameter's name ("weight")
 * @is_param: whether it is a parameter (else an input)
 * @index: the input or parameter index
 * @n_checked: elements compared
 * @max_rel_error: the worst relative error (see #LmnGradcheckOptions.rel_floor)
 * @max_abs_error: the worst |analytic - numeric|
 * @worst_element: flat index (over [N, ...] for inputs) of the worst relative error
 * @worst_analytic, @worst_numeric: the two derivatives there
 * @scale: the largest |analytic| or |numeric| derivative in the tensor
 * @floor: the smallest denominator of the relative errors (see #LmnGradcheckOptions.rel_floor)
 */
typedef struct {
    char *name;
    gboolean is_param;
    guint index;
    gint64 n_checked;
    double max_rel_error;
    double max_abs_error;
    gint64 worst_element;
    double worst_analytic;
    double worst_numeric;
    double scale;
    double floor;
    gpointer reserved[2];
} LmnGradcheckResult;

/** lmn_gradcheck_options_init: sets @options->struct_size and every default. */
void lmn_gradcheck_options_init(LmnGradcheckOptions *options);

/**
 * lmn_gradcheck_layer:
 * @registry: where @type is looked up
 * @backend: the backend the layer and its tensors live on
 * @type: a registered layer type
 * @params: (nullable): hyperparameters validated against @type's schema; NULL = its defaults
 * @n_inputs, @inputs: per-sample shapes and dtypes of the inputs (a loss's target last)
 * @options: (nullable): NULL = lmn_gradcheck_options_init()'s defaults
 * @error: set when the layer cannot be built, a backend operation fails, or the layer's forward
 *   output at the checked point is not finite
 *
 * Checks every f32 input's gradient and every parameter's gradient against central finite
 * differences.  Gradient tensors are pre-filled with a large constant before backward, so a
 * backward that accumulates instead of overwriting is caught too.
 *
 * Returns: (transfer full) (element-type LmnGradcheckResult): one result per f32 input, then one
 *   per parameter; NULL with @error on failure.  The array frees its elements.
 */
GPtrArray *lmn_gradcheck_layer(LmnRegistry *registry, LmnBackend *backend, const char *type,
                               const LmnParams *params, guint n_inputs, const LmnTensorInfo *inputs,
                               const LmnGradcheckOptions *options, GError **error);

/** lmn_gradcheck_result_free: frees one result. */
void lmn_gradcheck_result_free(gpointer result);

/**
 * lmn_gradcheck_max_rel_error:
 * Returns: the worst relative error over @results (0 for an empty array)
 */
double lmn_gradcheck_max_rel_error(const GPtrArray *results);

/**
 * lmn_gradcheck_format:
 * Returns: (transfer full): a human-readable table of @results, one line per tensor, as
 *   `lamina gradcheck` prints it
 */
char *lmn_gradcheck_format(const GPtrArray *results);

G_END_DECLS
