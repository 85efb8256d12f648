/* Lamina — exporting a model's inference graph (ONNX).
 *
 * lmn_export_onnx() walks the model in file order and asks each layer's vtable for its
 * export_onnx hook (LmnLayerVTable, appended member).  A hook describes the layer's evaluation-
 * mode function as ONNX nodes through the helpers below, which hide the protobuf types, so a
 * plugin needs nothing beyond this header to export its layers.  Value names: the model's input
 * is "input", a layer's output is its own name ("fc1"), parameters are "LAYER.PARAM"
 * ("fc1.weight", PyTorch's state_dict names), and lmn_export_value_name() makes names for a
 * hook's intermediate values.  The batch dimension is the symbolic "N".
 *
 * A loss layer's hook turns the loss into its output activation and declares the graph's outputs
 * (lmn_export_add_output); a loss without a hook is dropped and its prediction becomes "output".
 * Any other layer without a hook, or whose hook fails, makes the export fail naming the layer.
 */
#pragma once

#include <lamina/model.h>

G_BEGIN_DECLS

/** LMN_EXPORT_OPSET: the ONNX opset models are exported with unless a hook needs a later one. */
#define LMN_EXPORT_OPSET 13

/** LmnExportAttrType: the kind of a node attribute (a subset of ONNX's AttributeProto). */
typedef enum {
    LMN_EXPORT_ATTR_END = 0, /* terminates an attribute array */
    LMN_EXPORT_ATTR_INT,
    LMN_EXPORT_ATTR_FLOAT,
    LMN_EXPORT_ATTR_INTS,
    LMN_EXPORT_ATTR_STRING,
} LmnExportAttrType;

/**
 * LmnExportAttr:
 * One node attribute: @i for INT, @f for FLOAT, @ints and @n_ints for INTS, @s for STRING.  An
 * array of them ends with an element of type LMN_EXPORT_ATTR_END (LMN_EXPORT_ATTRS_END).
 */
typedef struct {
    const char *name;
    LmnExportAttrType type;
    gint64 i;
    float f;
    const gint64 *ints;
    gsize n_ints;
    const char *s;
} LmnExportAttr;

#define LMN_EXPORT_ATTR_I(key, v)                                                                  \
    {                                                                                              \
        .name = (key), .type = LMN_EXPORT_ATTR_INT, .i = (v)                                       \
    }
#define LMN_EXPORT_ATTR_F(key, v)                                                                  \
    {                                                                                              \
        .name = (key), .type = LMN_EXPORT_ATTR_FLOAT, .f = (v)                                     \
    }
#define LMN_EXPORT_ATTR_IS(key, v, n)                                                              \
    {                                                                                              \
        .name = (key), .type = LMN_EXPORT_ATTR_INTS, .ints = (v), .n_ints = (n)                    \
    }
#define LMN_EXPORT_ATTR_S(key, v)                                                                  \
    {                                                                                              \
        .name = (key), .type = LMN_EXPORT_ATTR_STRING, .s = (v)                                    \
    }
#define LMN_EXPORT_ATTRS_END                                                                       \
    {                                                                                              \
        .name = NULL, .type = LMN_EXPORT_ATTR_END                                                  \
    }

/**
 * lmn_export_add_node:
 * @op_type: the ONNX operator ("Gemm")
 * @inputs: NULL-terminated value names; an empty string "" is an omitted optional input
 * @outputs: NULL-terminated value names
 * @attrs: (nullable): attributes, ended by LMN_EXPORT_ATTRS_END
 * Appends a node to the graph (nodes are kept in the order added, which must be topological).
 * The node is named after the first output.
 */
void lmn_export_add_node(LmnExport *ex, const char *op_type, const char *const *inputs,
                         const char *const *outputs, const LmnExportAttr *attrs);
/**
 * lmn_export_add_param:
 * @name: the name of one of @layer's parameters or buffers ("weight", "running_mean")
 * Reads that tensor from the backend and adds it as the f32 initializer "LAYER.NAME".
 * Returns: (transfer none): the initializer's name, valid while @ex lives, or NULL with @error
 *   when the layer has no such tensor or the backend read fails
 */
const char *lmn_export_add_param(LmnExport *ex, LmnLayer *layer, const char *name, GError **error);
/**
 * lmn_export_add_floats:
 * Adds the f32 initializer @name of shape @shape holding @data (lmn_shape_numel(@shape)
 * values, copied): weights a hook has rearranged, constants.  @name must be unused.
 * Returns: (transfer none): the name, valid while @ex lives; NULL (with a critical warning) when
 *   @name is taken
 */
const char *lmn_export_add_floats(LmnExport *ex, const char *name, const LmnShape *shape,
                                  const float *data);
/**
 * lmn_export_add_ints:
 * Adds the 1-D int64 initializer @name of @n values (shapes for Reshape, indices); @name must
 * be unused.
 * Returns: (transfer none): the name, valid while @ex lives; NULL (with a critical warning) when
 *   @name is taken
 */
const char *lmn_export_add_ints(LmnExport *ex, const char *name, const gint64 *data, gsize n);
/**
 * lmn_export_value_name:
 * Returns: (transfer none): "LAYER/SUFFIX", a name for an intermediate value of @layer's
 *   export, valid while @ex lives
 */
const char *lmn_export_value_name(LmnExport *ex, const LmnLayer *layer, const char *suffix);
/**
 * lmn_export_forward_input:
 * Declares that the layer being exported is the identity of its input @input in evaluation mode
 * (dropout): no node is added, and later layers read that input's value instead.
 */
void lmn_export_forward_input(LmnExport *ex, guint input);
/**
 * lmn_export_add_output:
 * @name: the graph output's name ("probabilities")
 * @value: the value it is; when it differs from @name an Identity node is added
 * @per_sample: the output's per-sample shape (the batch dimension "N" is prepended)
 * Declares a graph output; a loss layer's hook calls it.  Without any, the last layer's value
 * is the output "output".
 * Returns: FALSE with LMN_CONFIG_ERROR_GRAPH when @name is already the name of another value
 *   (a layer called "probabilities", say)
 */
gboolean lmn_export_add_output(LmnExport *ex, const char *name, const char *value,
                               const LmnShape *per_sample, GError **error);
/**
 * lmn_export_input_shape:
 * Returns: (transfer none): the per-sample shape of input @input of the layer being exported
 */
const LmnShape *lmn_export_input_shape(LmnExport *ex, guint input);
/**
 * lmn_export_require_opset:
 * Raises the model's opset to @opset when a hook's operator needs it (LayerNormalization: 17).
 */
void lmn_export_require_opset(LmnExport *ex, gint64 opset);

/**
 * lmn_export_onnx:
 * @model: a built model whose weights are loaded
 * @cfg: the config @model was built from (its layers' input names give the graph's edges)
 * @path: where to write the .onnx file; written to a temporary file in the same directory and
 *   renamed, so @path is either the old file or the whole new one
 * @producer_version: (nullable): recorded as the model's producer_version
 * Exports the evaluation-mode graph of @model as an ONNX ModelProto (opset LMN_EXPORT_OPSET or
 * what a hook required), with the input "input" of shape [N, input shape...].
 * Returns: FALSE with LMN_CONFIG_ERROR_GRAPH naming every layer that has no ONNX equivalent,
 *   a hook's error, or a G_FILE_ERROR when the file cannot be written
 */
gboolean lmn_export_onnx(LmnModel *model, const LmnConfig *cfg, const char *path,
                         const char *producer_version, GError **error);

G_END_DECLS
