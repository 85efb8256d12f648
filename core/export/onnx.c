/* Lamina — ONNX export: the helpers of lamina/export.h and the graph walk.
 *
 * The messages are protobuf-c's, generated at build time from Debian's onnx.proto
 * (core/meson.build), and are packed once at the end.  Every protobuf structure, array and
 * string of an export is allocated through ex_alloc() and owned by the LmnExport's list, so a
 * failed export frees everything at once and no message is ever freed field by field.
 *
 * Built-in layers export themselves through the vtable hook in their own plugin files, as a
 * third-party plugin would: a layer's evaluation-mode semantics live next to its forward, and
 * the exporter needs no table of layer types that could drift from the plugins.
 */
#include <string.h>

#include <lamina/lamina.h>
#include <lamina/export.h>

#include "onnx.pb-c.h"

/* ONNX IR versions of the opsets we emit (onnx/helper.py VERSION_TABLE). */
#define IR_VERSION_OPSET_13 7
#define IR_VERSION_OPSET_17 8

struct _LmnExport {
    GPtrArray *mem; /* every allocation of the export, freed together */
    GPtrArray *nodes;
    GPtrArray *initializers;
    GPtrArray *outputs;
    GHashTable *value_names; /* names of initializers and values made so far, for uniqueness */
    gint64 opset;
    /* the layer being exported */
    const char *const *inputs;
    guint n_inputs;
    const LmnShape **input_shapes;
    const char *forwarded; /* set by lmn_export_forward_input */
    LmnShape output_shape; /* of the last graph output declared without a loss hook */
};

static gpointer ex_alloc(LmnExport *ex, gsize size)
{
    gpointer p = g_malloc0(size);
    g_ptr_array_add(ex->mem, p);
    return p;
}

/* An array of @n elements of @size bytes, overflow-checked (g_malloc0_n aborts on overflow). */
static gpointer ex_alloc_n(LmnExport *ex, gsize n, gsize size)
{
    gpointer p = g_malloc0_n(n == 0 ? 1 : n, size);
    g_ptr_array_add(ex->mem, p);
    return p;
}

static char *ex_strdup(LmnExport *ex, const char *s)
{
    char *d = g_strdup(s);
    g_ptr_array_add(ex->mem, d);
    return d;
}

static Onnx__AttributeProto *make_attr(LmnExport *ex, const LmnExportAttr *a)
{
    Onnx__AttributeProto *p = ex_alloc(ex, sizeof *p);
    onnx__attribute_proto__init(p);
    p->name = ex_strdup(ex, a->name);
    p->has_type = TRUE;
    switch (a->type) {
    case LMN_EXPORT_ATTR_INT:
        p->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
        p->has_i = TRUE;
        p->i = a->i;
        break;
    case LMN_EXPORT_ATTR_FLOAT:
        p->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
        p->has_f = TRUE;
        p->f = a->f;
        break;
    case LMN_EXPORT_ATTR_INTS:
        p->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
        p->n_ints = a->n_ints;
        p->ints = ex_alloc_n(ex, a->n_ints, sizeof(int64_t));
        for (gsize k = 0; k < a->n_ints; k++)
            p->ints[k] = a->ints[k];
        break;
    case LMN_EXPORT_ATTR_STRING:
    default:
        p->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
        p->has_s = TRUE;
        p->s.data = (uint8_t *) ex_strdup(ex, a->s ? a->s : "");
        p->s.len = strlen((const char *) p->s.data);
        break;
    }
    return p;
}

/* A NULL-terminated list copied into an export-owned array; returns its length in @n. */
static char **copy_names(LmnExport *ex, const char *const *names, size_t *n)
{
    *n = names ? g_strv_length((char **) names) : 0;
    char **out = ex_alloc_n(ex, *n, sizeof(char *));
    for (size_t k = 0; k < *n; k++)
        out[k] = ex_strdup(ex, names[k]);
    return out;
}

void lmn_export_add_node(LmnExport *ex, const char *op_type, const char *const *inputs,
                         const char *const *outputs, const LmnExportAttr *attrs)
{
    g_return_if_fail(ex != NULL && op_type != NULL && outputs != NULL && outputs[0] != NULL);
    Onnx__NodeProto *n = ex_alloc(ex, sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = ex_strdup(ex, op_type);
    n->input = copy_names(ex, inputs, &n->n_input);
    n->output = copy_names(ex, outputs, &n->n_output);
    n->name = ex_strdup(ex, outputs[0]);
    gsize n_attrs = 0;
    while (attrs != NULL && attrs[n_attrs].type != LMN_EXPORT_ATTR_END)
        n_attrs++;
    n->n_attribute = n_attrs;
    n->attribute = ex_alloc_n(ex, n_attrs, sizeof(Onnx__AttributeProto *));
    for (gsize k = 0; k < n_attrs; k++)
        n->attribute[k] = make_attr(ex, &attrs[k]);
    for (size_t k = 0; k < n->n_output; k++)
        g_hash_table_add(ex->value_names, n->output[k]);
    g_ptr_array_add(ex->nodes, n);
}

static Onnx__TensorProto *new_initializer(LmnExport *ex, const char *name, const LmnShape *shape,
                                          int32_t data_type)
{
    /* Two initializers of one name would make an invalid model: a hook's bug, caught here. */
    g_return_val_if_fail(!g_hash_table_contains(ex->value_names, name), NULL);
    Onnx__TensorProto *t = ex_alloc(ex, sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = ex_strdup(ex, name);
    t->has_data_type = TRUE;
    t->data_type = data_type;
    t->n_dims = shape->ndim;
    t->dims = ex_alloc_n(ex, shape->ndim, sizeof(int64_t));
    for (guint d = 0; d < shape->ndim; d++)
        t->dims[d] = shape->dims[d];
    g_hash_table_add(ex->value_names, t->name);
    g_ptr_array_add(ex->initializers, t);
    return t;
}

const char *lmn_export_add_floats(LmnExport *ex, const char *name, const LmnShape *shape,
                                  const float *data)
{
    g_return_val_if_fail(ex != NULL && name != NULL && shape != NULL, NULL);
    Onnx__TensorProto *t = new_initializer(ex, name, shape, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    if (t == NULL)
        return NULL;
    gint64 numel = lmn_shape_numel(shape);
    t->n_float_data = (size_t) numel;
    t->float_data = ex_alloc_n(ex, (gsize) numel, sizeof(float));
    if (numel > 0)
        memcpy(t->float_data, data, (gsize) numel * sizeof(float));
    return t->name;
}

const char *lmn_export_add_ints(LmnExport *ex, const char *name, const gint64 *data, gsize n)
{
    g_return_val_if_fail(ex != NULL && name != NULL, NULL);
    LmnShape shape = lmn_shape_make(1, (gint64) n);
    Onnx__TensorProto *t = new_initializer(ex, name, &shape, ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
    if (t == NULL)
        return NULL;
    t->n_int64_data = n;
    t->int64_data = ex_alloc_n(ex, n, sizeof(int64_t));
    for (gsize k = 0; k < n; k++)
        t->int64_data[k] = data[k];
    return t->name;
}

/* The parameter or buffer of @layer called @name, or NULL. */
static LmnTensor *find_layer_tensor(LmnLayer *layer, const char *name)
{
    for (guint i = 0; i < lmn_layer_get_n_params(layer); i++) {
        if (g_str_equal(lmn_layer_get_param_name(layer, i), name))
            return lmn_layer_get_param(layer, i);
    }
    for (guint i = 0; i < lmn_layer_get_n_buffers(layer); i++) {
        if (g_str_equal(lmn_layer_get_buffer_name(layer, i), name))
            return lmn_layer_get_buffer(layer, i);
    }
    return NULL;
}

const char *lmn_export_add_param(LmnExport *ex, LmnLayer *layer, const char *name, GError **error)
{
    g_return_val_if_fail(ex != NULL && layer != NULL && name != NULL, NULL);
    LmnTensor *t = find_layer_tensor(layer, name);
    if (t == NULL || t->dtype != LMN_DTYPE_F32) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (%s) has no f32 parameter or buffer '%s' to export",
                    lmn_layer_get_name(layer), lmn_layer_get_type_name(layer), name);
        return NULL;
    }
    g_autofree char *full = g_strdup_printf("%s.%s", lmn_layer_get_name(layer), name);
    if (g_hash_table_contains(ex->value_names, full))
        return g_hash_table_lookup(ex->value_names, full);
    /* The tensor exists on the backend, so its byte count was checked when it was made. */
    gsize nbytes = lmn_tensor_nbytes(t);
    g_autofree float *host = g_malloc(nbytes == 0 ? 1 : nbytes);
    if (!lmn_tensor_read(t, host, nbytes, error))
        return NULL;
    return lmn_export_add_floats(ex, full, &t->shape, host);
}

const char *lmn_export_value_name(LmnExport *ex, const LmnLayer *layer, const char *suffix)
{
    g_return_val_if_fail(ex != NULL && layer != NULL && suffix != NULL, NULL);
    char *name = g_strdup_printf("%s/%s", lmn_layer_get_name(layer), suffix);
    g_ptr_array_add(ex->mem, name);
    return name;
}

void lmn_export_forward_input(LmnExport *ex, guint input)
{
    g_return_if_fail(ex != NULL && input < ex->n_inputs);
    ex->forwarded = ex->inputs[input];
}

/* A float tensor type [N, per-sample dims...] with the batch dimension symbolic. */
static Onnx__ValueInfoProto *make_value_info(LmnExport *ex, const char *name,
                                             const LmnShape *per_sample)
{
    Onnx__ValueInfoProto *v = ex_alloc(ex, sizeof *v);
    onnx__value_info_proto__init(v);
    v->name = ex_strdup(ex, name);
    Onnx__TypeProto *type = ex_alloc(ex, sizeof *type);
    onnx__type_proto__init(type);
    Onnx__TypeProto__Tensor *tt = ex_alloc(ex, sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = TRUE;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    Onnx__TensorShapeProto *shape = ex_alloc(ex, sizeof *shape);
    onnx__tensor_shape_proto__init(shape);
    shape->n_dim = per_sample->ndim + 1;
    shape->dim = ex_alloc_n(ex, shape->n_dim, sizeof(Onnx__TensorShapeProto__Dimension *));
    for (size_t d = 0; d < shape->n_dim; d++) {
        Onnx__TensorShapeProto__Dimension *dim = ex_alloc(ex, sizeof *dim);
        onnx__tensor_shape_proto__dimension__init(dim);
        if (d == 0) {
            dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dim->dim_param = ex_strdup(ex, "N");
        } else {
            dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dim->dim_value = per_sample->dims[d - 1];
        }
        shape->dim[d] = dim;
    }
    tt->shape = shape;
    type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    type->tensor_type = tt;
    v->type = type;
    return v;
}

gboolean lmn_export_add_output(LmnExport *ex, const char *name, const char *value,
                               const LmnShape *per_sample, GError **error)
{
    g_return_val_if_fail(ex != NULL && name != NULL && value != NULL && per_sample != NULL, FALSE);
    if (!g_str_equal(name, value)) {
        if (g_hash_table_contains(ex->value_names, name)) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                        "the graph output '%s' would have the name of another value (a layer "
                        "or parameter); rename that layer",
                        name);
            return FALSE;
        }
        const char *in[] = {value, NULL}, *out[] = {name, NULL};
        lmn_export_add_node(ex, "Identity", in, out, NULL);
    }
    g_ptr_array_add(ex->outputs, make_value_info(ex, name, per_sample));
    return TRUE;
}

const LmnShape *lmn_export_input_shape(LmnExport *ex, guint input)
{
    g_return_val_if_fail(ex != NULL && input < ex->n_inputs, NULL);
    return ex->input_shapes[input];
}

void lmn_export_require_opset(LmnExport *ex, gint64 opset)
{
    g_return_if_fail(ex != NULL);
    ex->opset = MAX(ex->opset, opset);
}

/* ---- the graph walk ---- */

/* Per-sample shapes and value names of the graph's nodes so far, by Lamina node name. */
typedef struct {
    GHashTable *value; /* node name -> value name (a forwarded layer maps to its input's) */
    GHashTable *shape; /* node name -> const LmnShape * */
    LmnShape scalar;   /* what a node of unknown shape is said to be: only "labels" is */
} NodeMap;

/* The vtable's export hook, or NULL when the plugin's vtable predates it or leaves it NULL. */
static gpointer layer_hook(const LmnLayer *layer)
{
    const LmnLayerVTable *vt = lmn_layer_get_vtable(layer);
    gsize through = G_STRUCT_OFFSET(LmnLayerVTable, export_onnx) + sizeof(vt->export_onnx);
    return vt->struct_size >= through ? (gpointer) vt->export_onnx : NULL;
}

/* The value names of a layer's inputs, NULL-terminated, or NULL with @error. */
static const char **layer_inputs(LmnExport *ex, NodeMap *map, LmnLayer *layer,
                                 const LmnLayerConfig *lc, GError **error)
{
    guint n = g_strv_length(lc->inputs);
    const char **names = ex_alloc_n(ex, (gsize) n + 1, sizeof(char *));
    ex->input_shapes = ex_alloc_n(ex, n, sizeof(LmnShape *));
    for (guint k = 0; k < n; k++) {
        if (g_str_equal(lc->inputs[k], "labels") && !lmn_layer_is_loss(layer)) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                        "layer '%s' (%s) reads the targets (\"labels\"), which an inference "
                        "graph does not have",
                        lc->name, lc->type);
            return NULL;
        }
        const char *v = g_hash_table_lookup(map->value, lc->inputs[k]);
        names[k] = v ? v : lc->inputs[k];
        ex->input_shapes[k] = g_hash_table_lookup(map->shape, lc->inputs[k]);
        if (ex->input_shapes[k] == NULL)
            ex->input_shapes[k] = &map->scalar;
    }
    return names;
}

typedef gboolean (*ExportHook)(LmnLayer *layer, LmnExport *ex, const char *const *inputs,
                               const char *output, GError **error);

/* Exports layer @index; a layer without a hook is added to @missing (a loss is dropped). */
static gboolean export_layer(LmnExport *ex, NodeMap *map, LmnModel *model, const LmnConfig *cfg,
                             guint index, GString *missing, GError **error)
{
    LmnLayer *layer = lmn_model_get_layer(model, index);
    const LmnLayerConfig *lc = lmn_config_get_layer(cfg, index);
    const char *name = lmn_layer_get_name(layer);
    const char **inputs = layer_inputs(ex, map, layer, lc, error);
    if (inputs == NULL)
        return FALSE;
    ExportHook hook = (ExportHook) layer_hook(layer);
    if (hook == NULL) {
        if (lmn_layer_is_loss(layer)) {
            /* Dropped: its prediction is the graph's output. */
            ex->output_shape = *(const LmnShape *) g_hash_table_lookup(map->shape, lc->inputs[0]);
            g_hash_table_insert(map->value, (gpointer) name, (gpointer) inputs[0]);
            return TRUE;
        }
        g_string_append_printf(missing, "%s'%s' (%s)", missing->len ? ", " : "", name,
                               lmn_layer_get_type_name(layer));
        return TRUE;
    }
    if (missing->len > 0)
        return TRUE; /* the export fails anyway; only the list of such layers matters now */
    ex->inputs = inputs;
    ex->n_inputs = g_strv_length((char **) inputs);
    ex->forwarded = NULL;
    GError *hook_error = NULL;
    if (!hook(layer, ex, inputs, name, &hook_error)) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "cannot export layer '%s' (%s) to ONNX: %s", name,
                    lmn_layer_get_type_name(layer),
                    hook_error ? hook_error->message : "its export hook failed");
        g_clear_error(&hook_error);
        return FALSE;
    }
    g_hash_table_insert(map->value, (gpointer) name,
                        (gpointer) (ex->forwarded ? ex->forwarded : name));
    g_hash_table_insert(map->shape, (gpointer) name,
                        (gpointer) &lmn_layer_get_output_info(layer)->shape);
    ex->output_shape = lmn_layer_get_output_info(layer)->shape;
    return TRUE;
}

/* Runs every layer's export; fails naming every layer without an ONNX equivalent. */
static gboolean export_layers(LmnExport *ex, LmnModel *model, const LmnConfig *cfg, GError **error)
{
    guint n = lmn_model_get_n_layers(model);
    if (lmn_config_get_n_layers(cfg) != n) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "the config has %u layers but the model %u: it was not built from it",
                    lmn_config_get_n_layers(cfg), n);
        return FALSE;
    }
    NodeMap map = {g_hash_table_new(g_str_hash, g_str_equal),
                   g_hash_table_new(g_str_hash, g_str_equal), lmn_shape_make(0)};
    g_hash_table_insert(map.value, "input", "input");
    g_hash_table_insert(map.shape, "input", (gpointer) lmn_model_get_input_shape(model));
    g_autoptr(GString) missing = g_string_new(NULL);
    gboolean ok = TRUE;
    for (guint i = 0; ok && i < n; i++)
        ok = export_layer(ex, &map, model, cfg, i, missing, error);
    if (ok && missing->len > 0) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "cannot export to ONNX: no ONNX equivalent for layer%s %s (%s plugin%s no "
                    "export hook)",
                    strchr(missing->str, ',') ? "s" : "", missing->str,
                    strchr(missing->str, ',') ? "their" : "its",
                    strchr(missing->str, ',') ? "s provide" : " provides");
        ok = FALSE;
    }
    if (ok && ex->outputs->len == 0) {
        const char *last = lmn_layer_get_name(lmn_model_get_layer(model, n - 1));
        ok = lmn_export_add_output(ex, "output", g_hash_table_lookup(map.value, last),
                                   &ex->output_shape, error);
    }
    g_hash_table_unref(map.value);
    g_hash_table_unref(map.shape);
    return ok;
}

/* The ModelProto around the graph; every pointer stays owned by @ex. */
static Onnx__ModelProto *make_model(LmnExport *ex, LmnModel *model, const char *producer_version)
{
    Onnx__GraphProto *g = ex_alloc(ex, sizeof *g);
    onnx__graph_proto__init(g);
    g->name = ex_strdup(ex, "lamina");
    g->n_node = ex->nodes->len;
    g->node = (Onnx__NodeProto **) ex->nodes->pdata;
    g->n_initializer = ex->initializers->len;
    g->initializer = (Onnx__TensorProto **) ex->initializers->pdata;
    g->n_input = 1;
    g->input = ex_alloc(ex, sizeof(Onnx__ValueInfoProto *));
    g->input[0] = make_value_info(ex, "input", lmn_model_get_input_shape(model));
    g->n_output = ex->outputs->len;
    g->output = (Onnx__ValueInfoProto **) ex->outputs->pdata;

    Onnx__OperatorSetIdProto *opset = ex_alloc(ex, sizeof *opset);
    onnx__operator_set_id_proto__init(opset);
    opset->domain = ex_strdup(ex, "");
    opset->has_version = TRUE;
    opset->version = ex->opset;

    Onnx__ModelProto *m = ex_alloc(ex, sizeof *m);
    onnx__model_proto__init(m);
    m->has_ir_version = TRUE;
    m->ir_version = ex->opset >= 17 ? IR_VERSION_OPSET_17 : IR_VERSION_OPSET_13;
    m->n_opset_import = 1;
    m->opset_import = ex_alloc(ex, sizeof(Onnx__OperatorSetIdProto *));
    m->opset_import[0] = opset;
    m->producer_name = ex_strdup(ex, "lamina");
    m->producer_version = ex_strdup(ex, producer_version ? producer_version : LMN_VERSION_STRING);
    m->graph = g;
    return m;
}

/* Packs @m and writes it to @path atomically (a temporary file renamed over it). */
static gboolean write_model(const Onnx__ModelProto *m, const char *path, GError **error)
{
    size_t size = onnx__model_proto__get_packed_size(m);
    /* protobuf's own limit: a message over 2 GiB cannot be parsed by any reader. */
    if (size > (size_t) G_MAXINT32) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "the ONNX model would be %" G_GSIZE_FORMAT " bytes, over protobuf's 2 GiB "
                    "limit",
                    (gsize) size);
        return FALSE;
    }
    g_autofree uint8_t *buf = g_malloc(size == 0 ? 1 : size);
    size_t packed = onnx__model_proto__pack(m, buf);
    if (packed != size) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                    "packing the ONNX model gave %" G_GSIZE_FORMAT " bytes, not %" G_GSIZE_FORMAT,
                    (gsize) packed, (gsize) size);
        return FALSE;
    }
    /* CONSISTENT: written to a temporary file in the same directory, synced, then renamed. */
    return g_file_set_contents_full(path, (const char *) buf, (gssize) size,
                                    G_FILE_SET_CONTENTS_CONSISTENT, 0666, error);
}

gboolean lmn_export_onnx(LmnModel *model, const LmnConfig *cfg, const char *path,
                         const char *producer_version, GError **error)
{
    g_return_val_if_fail(model != NULL && cfg != NULL && path != NULL, FALSE);
    LmnExport ex = {
        .mem = g_ptr_array_new_with_free_func(g_free),
        .nodes = g_ptr_array_new(),
        .initializers = g_ptr_array_new(),
        .outputs = g_ptr_array_new(),
        .value_names = g_hash_table_new(g_str_hash, g_str_equal),
        .opset = LMN_EXPORT_OPSET,
    };
    gboolean ok = export_layers(&ex, model, cfg, error) &&
                  write_model(make_model(&ex, model, producer_version), path, error);
    g_hash_table_unref(ex.value_names);
    g_ptr_array_unref(ex.outputs);
    g_ptr_array_unref(ex.initializers);
    g_ptr_array_unref(ex.nodes);
    g_ptr_array_unref(ex.mem);
    return ok;
}
