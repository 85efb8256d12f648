/* Lamina — losses on masks (mask-losses.c): binary_cross_entropy_with_logits with pos_weight,
 * and the dice loss. */
#pragma once

#include <lamina/lamina.h>

/* binary_cross_entropy_with_logits with pos_weight (the layer's private data marks it): */
/* TRUE when @layer sets pos_weight. */
gboolean lmn_bce_weighted_wanted(LmnLayer *layer);
/* Checks pos_weight against the logits' channels (dimension 0 of the per-sample shape). */
gboolean lmn_bce_weighted_build(LmnLayer *layer, const LmnTensorInfo *inputs, GError **error);
void lmn_bce_weighted_forward(LmnLayer *layer, const LmnLayerIO *io);
void lmn_bce_weighted_backward(LmnLayer *layer, const LmnLayerIO *io);

/* Inference has no target: the graph outputs the logits and their sigmoid (the mask losses'
 * export_onnx). */
gboolean lmn_loss_export_sigmoid(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                                 const char *output, GError **error);

/* The dice layer. */
extern const LmnLayerVTable lmn_dice_vtable;
extern const LmnParamSpec lmn_dice_params[];
