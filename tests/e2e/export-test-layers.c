/* Test-only layer plugin for `lamina export`: layers with no ONNX export hook.
 *
 *   test_double:     y = 2 x, with a vtable as a plugin built before the export hook existed
 *                    (struct_size ends before export_onnx), which the exporter must not read
 *   test_triple:     y = 3 x, with a current vtable whose export_onnx is NULL
 *   test_zero_loss:  a loss that is always 0, without a hook: the export drops it
 */
#include <stddef.h>

#include <lamina/lamina.h>

static gboolean same_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                           LmnTensorInfo *output, GError **error)
{
    *output = inputs[0];
    return TRUE;
}

static void scaled_copy(LmnTensor *dst, float a, const LmnTensor *src)
{
    lmn_op_fill(dst, 0.0f);
    lmn_op_axpby(a, src, 1.0f, dst);
}

static void double_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    scaled_copy(io->output, 2.0f, io->inputs[0]);
}

static void double_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    if (io->input_grads[0] != NULL)
        scaled_copy(io->input_grads[0], 2.0f, io->output_grad);
}

static void triple_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    scaled_copy(io->output, 3.0f, io->inputs[0]);
}

static void triple_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    if (io->input_grads[0] != NULL)
        scaled_copy(io->input_grads[0], 3.0f, io->output_grad);
}

static gboolean loss_build(LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                           LmnTensorInfo *output, GError **error)
{
    output->shape = lmn_shape_make(0);
    output->dtype = LMN_DTYPE_F32;
    return TRUE;
}

static void zero_loss_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    lmn_op_fill(io->output, 0.0f);
}

static void zero_loss_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    if (io->input_grads[0] != NULL)
        lmn_op_fill(io->input_grads[0], 0.0f);
}

static const LmnLayerVTable zero_loss_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .flags = LMN_LAYER_FLAG_LOSS,
    .min_inputs = 2,
    .max_inputs = 2,
    .build = loss_build,
    .forward = zero_loss_forward,
    .backward = zero_loss_backward,
};

static const LmnLayerVTable double_vtable = {
    .struct_size = offsetof(LmnLayerVTable, export_onnx),
    .min_inputs = 1,
    .max_inputs = 1,
    .build = same_build,
    .forward = double_forward,
    .backward = double_backward,
};

static const LmnLayerVTable triple_vtable = {
    .struct_size = sizeof(LmnLayerVTable),
    .min_inputs = 1,
    .max_inputs = 1,
    .build = same_build,
    .forward = triple_forward,
    .backward = triple_backward,
    .export_onnx = NULL,
};

static const LmnFeatureDesc export_test_features[] = {
    LMN_FEATURE(LMN_FEATURE_LAYER, "test_double", "y = 2 x (a vtable from before export hooks)",
                NULL, &double_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "test_triple", "y = 3 x (no export hook)", NULL, &triple_vtable),
    LMN_FEATURE(LMN_FEATURE_LAYER, "test_zero_loss", "a loss that is always 0 (no export hook)",
                NULL, &zero_loss_vtable),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.test-export", LMN_VERSION_STRING, "MIT",
                           "layers without ONNX export hooks", export_test_features)
