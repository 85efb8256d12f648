/* Lamina — softmax_cross_entropy with per-pixel labels, ignore_index and class weights
 * (xent-pixel.c), the general form behind losses.c's softmax_cross_entropy. */
#pragma once

#include <lamina/lamina.h>

/* A kernel's SPIR-V variant from the generated words (NULL in a build without shaders): the
 * loss kernels of xent-pixel.c and mask-losses.c. */
#ifdef LMN_HAVE_SPIRV
#include <stdint.h> /* the generated headers use uint32_t */
#define SPIRV(words)                                                                               \
    (&(const LmnKernelSpirv){                                                                      \
        .struct_size = sizeof(LmnKernelSpirv),                                                     \
        .code = words,                                                                             \
        .code_size = sizeof words,                                                                 \
        .entry_point = "main",                                                                     \
    })
#else
#define SPIRV(words) NULL
#endif

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
