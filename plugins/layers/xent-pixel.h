/* Lamina — softmax_cross_entropy with per-pixel labels, ignore_index and class weights
 * (xent-pixel.c), the general form behind losses.c's softmax_cross_entropy. */
#pragma once

#include <lamina/lamina.h>

/* TRUE when @layer's options or shapes need the general form: logits [C, d1..dk] with k >= 1,
 * a class_weight, or an ignore_index that is a class (>= 0). */
gboolean lmn_xent_pixel_wanted(LmnLayer *layer, const LmnTensorInfo *inputs);
/* Checks the shapes and the options and declares the layer's tensors; sets @output. */
gboolean lmn_xent_pixel_build(LmnLayer *layer, const LmnTensorInfo *inputs, LmnTensorInfo *output,
                              GError **error);
void lmn_xent_pixel_forward(LmnLayer *layer, const LmnLayerIO *io);
void lmn_xent_pixel_backward(LmnLayer *layer, const LmnLayerIO *io);
/* Writes @n weights onto the device tensor @weights (all 1 when @values is NULL), through a
 * kernel's scalar block: a layer has no other way to put constants on a device. */
void lmn_xent_upload_weights(const double *values, gint64 n, LmnTensor *weights);
/* The index of the layer's saved probabilities (the same slot for both forms). */
#define LMN_XENT_SAVED_PROBS 0
