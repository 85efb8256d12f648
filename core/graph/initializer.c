/* Lamina — what the core itself provides for initializers: PyTorch's fan rule and gains.
 *
 * The initializers live in plugins; the fans and gains are here so that every layer and every
 * initializer (built-in or not) computes them the same way PyTorch's
 * torch.nn.init._calculate_fan_in_and_fan_out and calculate_gain do.
 */
#include <lamina/error.h>
#include <lamina/initializer.h>

#include <math.h>
#include <string.h>

void lmn_shape_fans(const LmnShape *shape, double *fan_in, double *fan_out)
{
    g_return_if_fail(shape != NULL && shape->ndim <= LMN_MAX_DIMS);
    g_return_if_fail(fan_in != NULL && fan_out != NULL);

    if (shape->ndim < 2) {
        /* PyTorch refuses these; a vector (a bias) is its own fan either way. */
        double n = shape->ndim == 0 ? 1.0 : (double) shape->dims[0];
        *fan_in = n;
        *fan_out = n;
        return;
    }
    /* [out, in, k...]: every kernel position is one more input and one more output. */
    double receptive = 1.0;
    for (guint i = 2; i < shape->ndim; i++)
        receptive *= (double) shape->dims[i];
    *fan_in = (double) shape->dims[1] * receptive;
    *fan_out = (double) shape->dims[0] * receptive;
}

double lmn_init_calculate_gain(const char *nonlinearity, double param, GError **error)
{
    g_return_val_if_fail(nonlinearity != NULL, -1.0);
    g_return_val_if_fail(error == NULL || *error == NULL, -1.0);

    /* Layers whose output is linear in their input keep the variance as it is. */
    static const char *const linear[] = {
        "linear",           "conv1d",           "conv2d",  "conv3d", "conv_transpose1d",
        "conv_transpose2d", "conv_transpose3d", "sigmoid", NULL,
    };
    if (g_strv_contains(linear, nonlinearity))
        return 1.0;
    if (strcmp(nonlinearity, "tanh") == 0)
        return 5.0 / 3.0;
    if (strcmp(nonlinearity, "relu") == 0)
        return sqrt(2.0);
    if (strcmp(nonlinearity, "leaky_relu") == 0) {
        /* PyTorch's param=None means its default slope, not 0. */
        double slope = isnan(param) ? 0.01 : param;
        return sqrt(2.0 / (1.0 + slope * slope));
    }
    if (strcmp(nonlinearity, "selu") == 0)
        return 3.0 / 4.0; /* PyTorch's choice for self-normalising networks */
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                "unsupported nonlinearity '%s' for the initialization gain; accepted: linear, "
                "conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d, "
                "sigmoid, tanh, relu, leaky_relu, selu",
                nonlinearity);
    return -1.0;
}
