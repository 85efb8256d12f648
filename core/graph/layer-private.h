/* Lamina — layer internals shared inside the core (not installed).
 *
 * The gradient checker needs a layer's buffers in their declared initial state without running
 * any initializer (a third-party layer's default initializer may be missing from the registry a
 * check runs with), which the public API only offers bundled with parameter initialisation.
 */
#pragma once

#include <lamina/layer.h>

G_BEGIN_DECLS

/**
 * LmnLayerPeerLookup:
 * Returns: (nullable): the already built layer named @name of the model behind @data, or NULL
 */
typedef LmnLayer *(*LmnLayerPeerLookup)(gpointer data, const char *name);

/**
 * lmn_layer_new_in_model:
 * lmn_layer_new() for a layer of a model: during its build(), lmn_layer_find_peer() asks @lookup
 * (with @lookup_data) for the model's layers built before it.
 */
LmnLayer *lmn_layer_new_in_model(LmnRegistry *registry, const char *type, const char *name,
                                 guint index, const LmnParams *params, LmnBackend *backend,
                                 guint n_inputs, const LmnTensorInfo *inputs,
                                 LmnLayerPeerLookup lookup, gpointer lookup_data, GError **error);

/** lmn_layer_reset_buffers: fills every buffer of @layer with its declared initial value. */
void lmn_layer_reset_buffers(LmnLayer *layer);

/**
 * lmn_layer_has_flag:
 * Returns: whether @layer's vtable has @flag (one of LmnLayerFlags: what the core may fuse or
 *   alias around it)
 */
gboolean lmn_layer_has_flag(const LmnLayer *layer, LmnLayerFlags flag);
/**
 * lmn_layer_as_unary:
 * Returns: TRUE, with @op and @alpha, when @layer's forward is exactly lmn_op_unary on its input
 *   (its vtable's optional as_unary says so)
 */
gboolean lmn_layer_as_unary(LmnLayer *layer, LmnUnaryOp *op, float *alpha);

G_END_DECLS
