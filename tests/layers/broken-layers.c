/* Test-only layer plugin whose gradients are deliberately wrong, so the gradient checker can be
 * shown to fail.  Built as a module in the test tree, never installed, loaded explicitly.
 *
 *   test_broken_input:   y = 2 x, but backward returns dx = 3 dy        (input gradient x1.5)
 *   test_broken_param:   y = x + b, dx right, but db = 2 * sum(dy)      (parameter gradient x2)
 *   test_accumulating:   y = x + b, but db += sum(dy) instead of db =   (accumulates)
 */
#include <lamina/lamina.h>

static gboolean same_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                           LmnTensorInfo *output, GError **error)
{
    *output = inputs[0];
    return TRUE;
}

static gboolean bias_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                           LmnTensorInfo *output, GError **error)
{
    LmnShape b = lmn_shape_make(1, lmn_shape_numel(&inputs[0].shape));
    lmn_layer_add_param(layer, "bias", &b, LMN_PARAM_ROLE_BIAS, "zeros", NULL, 1.0, 1.0);
    *output = inputs[0];
    return TRUE;
}

static void scale_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    lmn_op_fill(io->output, 0.0f);
    lmn_op_axpby(2.0f, io->inputs[0], 1.0f, io->output);
}

static void scale_backward_wrong(LmnLayer *layer, const LmnLayerIO *io)
{
    lmn_op_fill(io->input_grads[0], 0.0f);
    lmn_op_axpby(3.0f, io->output_grad, 1.0f, io->input_grads[0]);
}

static gint64 per_sample(const LmnLayerIO *io)
{
    return lmn_tensor_numel(io->inputs[0]) / io->batch;
}

static void bias_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    lmn_op_copy(io->output, io->inputs[0]);
    lmn_op_bias_add(io->output, lmn_layer_get_param(layer, 0), io->batch, per_sample(io), 1);
}

static void bias_backward_doubled(LmnLayer *layer, const LmnLayerIO *io)
{
    if (io->input_grads[0] != NULL) {
        lmn_op_copy(io->input_grads[0], io->output_grad);
    }
    LmnTensor *db = lmn_layer_get_grad(layer, 0);
    lmn_op_bias_grad(db, io->output_grad, io->batch, per_sample(io), 1, 0.0f);
    lmn_op_bias_grad(db, io->output_grad, io->batch, per_sample(io), 1, 1.0f);
}

static void bias_backward_accumulating(LmnLayer *layer, const LmnLayerIO *io)
{
    if (io->input_grads[0] != NULL) {
        lmn_op_copy(io->input_grads[0], io->output_grad);
    }
    lmn_op_bias_grad(lmn_layer_get_grad(layer, 0), io->output_grad, io->batch, per_sample(io), 1,
                     1.0f);
}

static const LmnLayerVTable broken_input_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .min_inputs = 1,
    .max_inputs = 1,
    .build = same_build,
    .forward = scale_forward,
    .backward = scale_backward_wrong,
};

static const LmnLayerVTable broken_param_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .min_inputs = 1,
    .max_inputs = 1,
    .build = bias_build,
    .forward = bias_forward,
    .backward = bias_backward_doubled,
};

static const LmnLayerVTable accumulating_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .min_inputs = 1,
    .max_inputs = 1,
    .build = bias_build,
    .forward = bias_forward,
    .backward = bias_backward_accumulating,
};

static const LmnFeatureDesc broken_features[] = {
    {.struct_size = sizeof(LmnFeatureDesc),
     .kind = LMN_FEATURE_LAYER,
     .name = "test_broken_input",
     .description = "y = 2x with a backward of 3 dy (test only)",
     .vtable = &broken_input_vtable},
    {.struct_size = sizeof(LmnFeatureDesc),
     .kind = LMN_FEATURE_LAYER,
     .name = "test_broken_param",
     .description = "y = x + b with db doubled (test only)",
     .vtable = &broken_param_vtable},
    {.struct_size = sizeof(LmnFeatureDesc),
     .kind = LMN_FEATURE_LAYER,
     .name = "test_accumulating",
     .description = "y = x + b with db accumulated (test only)",
     .vtable = &accumulating_vtable},
};

static const LmnPluginDesc broken_plugin = {
    .struct_size = sizeof(LmnPluginDesc),
    .abi_major = LMN_ABI_MAJOR,
    .abi_minor = LMN_ABI_MINOR,
    .name = "test.broken_layers",
    .version = "0",
    .license = "MIT",
    .description = "Layers with deliberately wrong gradients, for testing the gradient checker",
    .n_features = G_N_ELEMENTS(broken_features),
    .features = broken_features,
};

LMN_PLUGIN_DEFINE(broken_plugin)
