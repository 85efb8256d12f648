/* Lamina — what the core itself provides for initializers: PyTorch's fan rule.
 *
 * The initializers live in plugins; the fans are here so that every layer (built-in or not)
 * reports them the same way PyTorch's torch.nn.init._calculate_fan_in_and_fan_out does.
 */
#include <lamina/initializer.h>

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
