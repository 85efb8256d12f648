/* Lamina — parameter initializers.
 *
 * An initializer fills a parameter in host memory from a Philox stream, given the parameter's
 * shape and the fans its layer reports (PyTorch's convention: for a weight [out, in, k...],
 * fan_in = in * prod(k), fan_out = out * prod(k)).  The core uploads the result.
 */
#pragma once

#include <lamina/params.h>
#include <lamina/random.h>
#include <lamina/tensor.h>

G_BEGIN_DECLS

/**
 * LmnInitTarget:
 * @shape: the parameter's shape
 * @numel: its element count
 * @fan_in, @fan_out: as reported by the layer
 * @random: the parameter's own stream, positioned at its start
 */
typedef struct {
    guint32 struct_size;
    const LmnShape *shape;
    gint64 numel;
    double fan_in;
    double fan_out;
    LmnRandom *random;
    gpointer reserved[4];
} LmnInitTarget;

/**
 * LmnInitializerVTable:
 * @fill: writes target->numel floats into @data; returns FALSE with an error (e.g. a fan of 0
 *   for a fan-based scheme) naming the problem
 */
typedef struct {
    guint32 struct_size;
    gboolean (*fill)(const LmnParams *params, const LmnInitTarget *target, float *data,
                     GError **error);
} LmnInitializerVTable;

/**
 * lmn_shape_fans:
 * PyTorch's _calculate_fan_in_and_fan_out for a weight of @shape (ndim >= 2; for ndim 1 both fans
 * are the length).
 */
void lmn_shape_fans(const LmnShape *shape, double *fan_in, double *fan_out);

/**
 * lmn_init_calculate_gain:
 * @nonlinearity: "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
 *   "conv_transpose2d", "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu" or "selu"
 * @param: the negative slope for "leaky_relu" (NAN = PyTorch's default of 0.01); ignored for the
 *   others
 * @error: set with LMN_CONFIG_ERROR_INVALID for an unknown @nonlinearity (the message lists the
 *   accepted names)
 *
 * torch.nn.init.calculate_gain: the factor that keeps activations' variance through a layer
 * followed by @nonlinearity (1 for linear/conv/sigmoid, 5/3 for tanh, sqrt(2) for relu,
 * sqrt(2 / (1 + slope^2)) for leaky_relu, 3/4 for selu).  Initializers and plugins share it so
 * every scheme computes gains the same way.
 *
 * Returns: the gain, or -1 with @error set
 */
double lmn_init_calculate_gain(const char *nonlinearity, double param, GError **error);

G_END_DECLS
