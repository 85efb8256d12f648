/* Lamina — layer internals shared inside the core (not installed).
 *
 * The gradient checker needs a layer's buffers in their declared initial state without running
 * any initializer (a third-party layer's default initializer may be missing from the registry a
 * check runs with), which the public API only offers bundled with parameter initialisation.
 */
#pragma once

#include <lamina/layer.h>

G_BEGIN_DECLS

/** lmn_layer_reset_buffers: fills every buffer of @layer with its declared initial value. */
void lmn_layer_reset_buffers(LmnLayer *layer);

G_END_DECLS
