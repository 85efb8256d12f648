/* Lamina — the layer object: a built instance of a registered layer type.
 *
 * lmn_layer_new() runs the plugin's build() once; build declares what the layer needs (parameters,
 * buffers, saved tensors) and the core allocates all of it, so forward/backward only run ops.
 * Declarations made during build cannot fail at the call (the functions return indices); a bad
 * declaration is remembered and turned into lmn_layer_new()'s error after build returns.
 */
#include <string.h>

#include <lamina/error.h>
#include <lamina/initializer.h>
#include <lamina/layer.h>
#include <lamina/random.h>
#include <lamina/registry.h>

#include "layer-private.h"

typedef struct {
    char *name;
    LmnShape shape;
    LmnParamRole role;
    char *default_init;
    char *default_init_args;
    /* the initializer lmn_layer_init_params last filled it with (NULL before), for messages */
    char *init_used;
    const LmnFeature *init_feature; /* the initializer init_used names, once it ran */
    double fan_in, fan_out;
    LmnTensor *value;
    LmnTensor *grad;
} LayerParam;

typedef struct {
    char *name;
    LmnShape shape;
    float initial_value;
    LmnTensor *tensor;
} LayerBuffer;

typedef struct {
    char *name;
    LmnShape shape; /* per-sample when per_batch */
    LmnDType dtype;
    gboolean per_batch;
    LmnTensor *storage; /* the largest allocation so far */
    gint64 capacity;    /* batch size @storage was allocated for */
    LmnTensor *current; /* @storage or a view of its first rows for the current batch */
    gint64 current_batch;
} LayerSaved;

struct _LmnLayer {
    const LmnFeature *feature;
    const LmnLayerVTable *vtable;
    char *name;
    guint index;
    LmnParams *params;
    LmnBackend *backend;
    guint n_inputs;
    LmnTensorInfo *inputs;
    LmnTensorInfo output;
    GArray *param_list;  /* LayerParam */
    GArray *buffer_list; /* LayerBuffer */
    GArray *saved_list;  /* LayerSaved */
    gint64 batch;        /* last prepared batch size, 0 before the first */
    gboolean building;
    GError *build_error; /* first bad declaration made during build() */
    gint64 *index_limits; /* per input: indices must be in [0, limit); 0 = not indices */
    gpointer priv;
    GDestroyNotify priv_destroy;
    /* During build() only: finds the layers of the same model built before this one. */
    LmnLayerPeerLookup peer_lookup;
    gpointer peer_data;
    /* lmn_layer_set_collective(); n_ranks == 0: none (a single process) */
    LmnCollective collective;
    gboolean profiling;
    LmnLayerProfile profile;
};

static void layer_param_clear(gpointer p)
{
    LayerParam *lp = p;
    g_free(lp->name);
    g_free(lp->default_init);
    g_free(lp->default_init_args);
    g_free(lp->init_used);
    g_clear_pointer(&lp->value, lmn_tensor_unref);
    g_clear_pointer(&lp->grad, lmn_tensor_unref);
}

static void layer_buffer_clear(gpointer p)
{
    LayerBuffer *lb = p;
    g_free(lb->name);
    g_clear_pointer(&lb->tensor, lmn_tensor_unref);
}

static void layer_saved_clear(gpointer p)
{
    LayerSaved *ls = p;
    g_free(ls->name);
    g_clear_pointer(&ls->current, lmn_tensor_unref);
    g_clear_pointer(&ls->storage, lmn_tensor_unref);
}

/* "layer 'fc1' (dense)": how every message names the layer. */
static char *layer_describe(const LmnLayer *layer)
{
    return g_strdup_printf("layer '%s' (%s)", layer->name, layer->feature->desc->name);
}

/* Records the first bad declaration; later ones are usually consequences of it. */
G_GNUC_PRINTF(3, 4)
static void layer_declare_error(LmnLayer *layer, const char *what, const char *format, ...)
{
    if (layer->build_error != NULL) {
        return;
    }
    va_list ap;
    va_start(ap, format);
    g_autofree char *msg = g_strdup_vprintf(format, ap);
    va_end(ap);
    g_autofree char *who = layer_describe(layer);
    g_set_error(&layer->build_error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_BAD_DESCRIPTOR,
                "%s declares %s: %s (a bug in the layer plugin)", who, what, msg);
}

static gboolean shape_is_valid(const LmnShape *shape, guint max_ndim)
{
    if (shape->ndim > max_ndim) {
        return FALSE;
    }
    for (guint d = 0; d < shape->ndim; d++) {
        if (shape->dims[d] < 1) {
            return FALSE;
        }
    }
    return TRUE;
}

/* Parameters and buffers share the checkpoint namespace /model/LAYER/NAME. */
static gboolean layer_name_taken(const LmnLayer *layer, const char *name)
{
    for (guint i = 0; i < layer->param_list->len; i++) {
        if (g_strcmp0(g_array_index(layer->param_list, LayerParam, i).name, name) == 0) {
            return TRUE;
        }
    }
    for (guint i = 0; i < layer->buffer_list->len; i++) {
        if (g_strcmp0(g_array_index(layer->buffer_list, LayerBuffer, i).name, name) == 0) {
            return TRUE;
        }
    }
    return FALSE;
}

static gboolean check_declared_name(LmnLayer *layer, const char *kind, const char *name)
{
    if (name == NULL || *name == '\0') {
        layer_declare_error(layer, kind, "empty name");
        return FALSE;
    }
    if (strchr(name, '/') != NULL || strchr(name, '.') != NULL) {
        layer_declare_error(layer, kind, "name '%s' contains '/' or '.'", name);
        return FALSE;
    }
    if (layer_name_taken(layer, name)) {
        layer_declare_error(layer, kind, "name '%s' is declared twice", name);
        return FALSE;
    }
    return TRUE;
}

/* ---- used by layer plugins ---- */

const char *lmn_layer_get_name(const LmnLayer *layer)
{
    g_return_val_if_fail(layer != NULL, NULL);
    return layer->name;
}

LmnBackend *lmn_layer_get_backend(const LmnLayer *layer)
{
    g_return_val_if_fail(layer != NULL, NULL);
    return layer->backend;
}

const LmnParams *lmn_layer_get_params(const LmnLayer *layer)
{
    g_return_val_if_fail(layer != NULL, NULL);
    return layer->params;
}

guint lmn_layer_get_index(const LmnLayer *layer)
{
    g_return_val_if_fail(layer != NULL, 0);
    return layer->index;
}

guint lmn_layer_add_param(LmnLayer *layer, const char *name, const LmnShape *shape,
                          LmnParamRole role, const char *default_init,
                          const char *default_init_args, double fan_in, double fan_out)
{
    g_return_val_if_fail(layer != NULL, 0);
    g_return_val_if_fail(layer->building, 0);
    g_return_val_if_fail(shape != NULL, 0);

    guint index = layer->param_list->len;
    if (!check_declared_name(layer, "a parameter", name)) {
        return index;
    }
    if (!shape_is_valid(shape, LMN_MAX_DIMS)) {
        g_autofree char *s = lmn_shape_to_string(shape);
        layer_declare_error(layer, "a parameter", "'%s' has invalid shape %s", name, s);
        return index;
    }
    if (default_init == NULL || *default_init == '\0') {
        layer_declare_error(layer, "a parameter", "'%s' has no default initializer", name);
        return index;
    }
    LayerParam lp = {
        .name = g_strdup(name),
        .shape = *shape,
        .role = role,
        .default_init = g_strdup(default_init),
        .default_init_args = g_strdup(default_init_args),
        .fan_in = fan_in,
        .fan_out = fan_out,
    };
    g_array_append_val(layer->param_list, lp);
    return index;
}

void lmn_layer_declare_index_input(LmnLayer *layer, guint input, gint64 n_indices)
{
    g_return_if_fail(layer != NULL && layer->building);
    g_return_if_fail(input < layer->n_inputs && n_indices > 0);
    if (layer->index_limits == NULL) {
        layer->index_limits = g_new0(gint64, layer->n_inputs);
    }
    layer->index_limits[input] = n_indices;
}

gint64 lmn_layer_get_index_limit(const LmnLayer *layer, guint input)
{
    g_return_val_if_fail(layer != NULL && input < layer->n_inputs, 0);
    return layer->index_limits != NULL ? layer->index_limits[input] : 0;
}

guint lmn_layer_add_buffer(LmnLayer *layer, const char *name, const LmnShape *shape,
                           float initial_value)
{
    g_return_val_if_fail(layer != NULL, 0);
    g_return_val_if_fail(layer->building, 0);
    g_return_val_if_fail(shape != NULL, 0);

    guint index = layer->buffer_list->len;
    if (!check_declared_name(layer, "a buffer", name)) {
        return index;
    }
    if (!shape_is_valid(shape, LMN_MAX_DIMS)) {
        g_autofree char *s = lmn_shape_to_string(shape);
        layer_declare_error(layer, "a buffer", "'%s' has invalid shape %s", name, s);
        return index;
    }
    LayerBuffer lb = {.name = g_strdup(name), .shape = *shape, .initial_value = initial_value};
    g_array_append_val(layer->buffer_list, lb);
    return index;
}

guint lmn_layer_add_saved(LmnLayer *layer, const char *name, const LmnShape *shape, LmnDType dtype,
                          gboolean per_batch)
{
    g_return_val_if_fail(layer != NULL, 0);
    g_return_val_if_fail(layer->building, 0);
    g_return_val_if_fail(shape != NULL, 0);

    guint index = layer->saved_list->len;
    /* Saved tensors are scratch, not checkpointed: their names only need to be readable. */
    if (name == NULL || *name == '\0') {
        layer_declare_error(layer, "a saved tensor", "empty name");
        return index;
    }
    if (!shape_is_valid(shape, per_batch ? LMN_MAX_DIMS - 1 : LMN_MAX_DIMS)) {
        g_autofree char *s = lmn_shape_to_string(shape);
        layer_declare_error(layer, "a saved tensor", "'%s' has invalid shape %s%s", name, s,
                            per_batch ? " (the batch dimension is added in front)" : "");
        return index;
    }
    if (dtype != LMN_DTYPE_F32 && dtype != LMN_DTYPE_I32) {
        layer_declare_error(layer, "a saved tensor", "'%s' has unknown dtype %d", name,
                            (int) dtype);
        return index;
    }
    LayerSaved ls = {
        .name = g_strdup(name),
        .shape = *shape,
        .dtype = dtype,
        .per_batch = per_batch,
    };
    g_array_append_val(layer->saved_list, ls);
    return index;
}

LmnTensor *lmn_layer_get_param(LmnLayer *layer, guint index)
{
    g_return_val_if_fail(layer != NULL, NULL);
    g_return_val_if_fail(index < layer->param_list->len, NULL);
    return g_array_index(layer->param_list, LayerParam, index).value;
}

LmnTensor *lmn_layer_get_grad(LmnLayer *layer, guint index)
{
    g_return_val_if_fail(layer != NULL, NULL);
    g_return_val_if_fail(index < layer->param_list->len, NULL);
    return g_array_index(layer->param_list, LayerParam, index).grad;
}

LmnTensor *lmn_layer_get_buffer(LmnLayer *layer, guint index)
{
    g_return_val_if_fail(layer != NULL, NULL);
    g_return_val_if_fail(index < layer->buffer_list->len, NULL);
    return g_array_index(layer->buffer_list, LayerBuffer, index).tensor;
}

LmnTensor *lmn_layer_get_saved(LmnLayer *layer, guint index)
{
    g_return_val_if_fail(layer != NULL, NULL);
    g_return_val_if_fail(index < layer->saved_list->len, NULL);
    LayerSaved *ls = &g_array_index(layer->saved_list, LayerSaved, index);
    /* A per-batch tensor exists only once lmn_layer_prepare_batch() has run. */
    g_return_val_if_fail(ls->current != NULL, NULL);
    return ls->current;
}

void lmn_layer_set_private(LmnLayer *layer, gpointer data, GDestroyNotify destroy)
{
    g_return_if_fail(layer != NULL);
    if (layer->priv_destroy != NULL && layer->priv != NULL) {
        layer->priv_destroy(layer->priv);
    }
    layer->priv = data;
    layer->priv_destroy = destroy;
}

gpointer lmn_layer_get_private(const LmnLayer *layer)
{
    g_return_val_if_fail(layer != NULL, NULL);
    return layer->priv;
}

/* ---- used by the core, tools and tests ---- */

static gboolean check_input_count(const LmnLayer *layer, guint n_inputs, GError **error)
{
    guint lo = layer->vtable->min_inputs;
    guint hi = layer->vtable->max_inputs;
    if (n_inputs >= lo && n_inputs <= hi) {
        return TRUE;
    }
    g_autofree char *who = layer_describe(layer);
    g_autofree char *wanted = NULL;
    if (lo == hi) {
        wanted = g_strdup_printf("exactly %u input%s", lo, lo == 1 ? "" : "s");
    } else if (hi == G_MAXUINT) {
        wanted = g_strdup_printf("at least %u input%s", lo, lo == 1 ? "" : "s");
    } else {
        wanted = g_strdup_printf("%u to %u inputs", lo, hi);
    }
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                "%s takes %s but %u %s connected%s", who, wanted, n_inputs,
                n_inputs == 1 ? "is" : "are",
                (layer->vtable->flags & LMN_LAYER_FLAG_LOSS) != 0
                    ? " (a loss layer counts its target as its last input: input = PRED, TARGET)"
                    : "");
    return FALSE;
}

gboolean lmn_layer_check_size(const LmnLayer *layer, const char *what, const LmnShape *shape,
                              gboolean per_sample, LmnDType dtype, const char *hint, GError **error)
{
    g_return_val_if_fail(layer != NULL && what != NULL && shape != NULL && hint != NULL, FALSE);
    if (lmn_shape_nbytes_checked(shape, dtype, NULL))
        return TRUE;
    /* The count in floating point, for the message only: it cannot overflow. */
    double approx = 1.0;
    for (guint i = 0; i < shape->ndim; i++)
        approx *= (double) shape->dims[i];
    g_autofree char *who = layer_describe(layer);
    g_autofree char *s = lmn_shape_to_string(shape);
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                "%s: %s %s%s would hold about %.3g values, more than one tensor can (at most "
                "%" G_GUINT64_FORMAT " %s values); %s",
                who, what, s, per_sample ? " per sample" : "", approx,
                (guint64) (LMN_TENSOR_MAX_BYTES / lmn_dtype_size(dtype)), lmn_dtype_name(dtype),
                hint);
    return FALSE;
}

static gboolean check_infos(const LmnLayer *layer, guint n_inputs, const LmnTensorInfo *inputs,
                            GError **error)
{
    for (guint i = 0; i < n_inputs; i++) {
        /* The batch dimension goes in front of every per-sample shape. */
        if (!shape_is_valid(&inputs[i].shape, LMN_MAX_DIMS - 1) ||
            (inputs[i].dtype != LMN_DTYPE_F32 && inputs[i].dtype != LMN_DTYPE_I32)) {
            g_autofree char *who = layer_describe(layer);
            g_autofree char *s = lmn_shape_to_string(&inputs[i].shape);
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                        "%s: input %u has an unusable per-sample shape %s (at most %d dims, "
                        "each >= 1)",
                        who, i, s, LMN_MAX_DIMS - 1);
            return FALSE;
        }
        /* Before build(): a layer reads its inputs' counts, which must be exact, not wrapped. */
        g_autofree char *what =
            n_inputs == 1 ? g_strdup("its input") : g_strdup_printf("its input %u", i);
        if (!lmn_layer_check_size(layer, what, &inputs[i].shape, TRUE, inputs[i].dtype,
                                  "check [model] input and the layers before this one", error))
            return FALSE;
    }
    return TRUE;
}

static gboolean check_output(const LmnLayer *layer, GError **error)
{
    const LmnTensorInfo *out = &layer->output;
    g_autofree char *who = layer_describe(layer);
    if (!shape_is_valid(&out->shape, LMN_MAX_DIMS - 1) ||
        (out->dtype != LMN_DTYPE_F32 && out->dtype != LMN_DTYPE_I32)) {
        g_autofree char *s = lmn_shape_to_string(&out->shape);
        g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_BAD_DESCRIPTOR,
                    "%s: build() set an invalid output (per-sample shape %s, dtype %d); a bug in "
                    "the layer plugin",
                    who, s, (int) out->dtype);
        return FALSE;
    }
    /* A plugin that checks its own output says what to change; this catches the others. */
    if (!lmn_layer_check_size(layer, "its output", &out->shape, TRUE, out->dtype,
                              "change the layer's settings or its input", error))
        return FALSE;
    if ((layer->vtable->flags & LMN_LAYER_FLAG_LOSS) != 0 &&
        (lmn_shape_numel(&out->shape) != 1 || out->dtype != LMN_DTYPE_F32)) {
        g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_BAD_DESCRIPTOR,
                    "%s: a loss layer must output one f32 scalar; a bug in the layer plugin", who);
        return FALSE;
    }
    return TRUE;
}

static gboolean layer_allocate(LmnLayer *layer, GError **error)
{
    for (guint i = 0; i < layer->param_list->len; i++) {
        LayerParam *lp = &g_array_index(layer->param_list, LayerParam, i);
        lp->value = lmn_tensor_new(layer->backend, LMN_DTYPE_F32, &lp->shape, error);
        if (lp->value == NULL) {
            return FALSE;
        }
        lp->grad = lmn_tensor_new(layer->backend, LMN_DTYPE_F32, &lp->shape, error);
        if (lp->grad == NULL) {
            return FALSE;
        }
        /* Zero so that reading a gradient before the first backward gives no garbage. */
        lmn_op_fill(lp->grad, 0.0f);
    }
    for (guint i = 0; i < layer->buffer_list->len; i++) {
        LayerBuffer *lb = &g_array_index(layer->buffer_list, LayerBuffer, i);
        lb->tensor = lmn_tensor_new(layer->backend, LMN_DTYPE_F32, &lb->shape, error);
        if (lb->tensor == NULL) {
            return FALSE;
        }
    }
    /* Fixed-size saved tensors do not depend on the batch: allocate them once, now. */
    for (guint i = 0; i < layer->saved_list->len; i++) {
        LayerSaved *ls = &g_array_index(layer->saved_list, LayerSaved, i);
        if (ls->per_batch) {
            continue;
        }
        ls->storage = lmn_tensor_new(layer->backend, ls->dtype, &ls->shape, error);
        if (ls->storage == NULL) {
            return FALSE;
        }
        ls->current = lmn_tensor_ref(ls->storage);
    }
    return TRUE;
}

/* The layer feature @type, with the vtable members every layer needs. */
static const LmnFeature *layer_feature(LmnRegistry *registry, const char *type, const char *name,
                                       GError **error)
{
    const LmnFeature *feature = lmn_registry_lookup(registry, LMN_FEATURE_LAYER, type, error);
    if (feature == NULL) {
        g_prefix_error(error, "layer '%s': ", name);
        return NULL;
    }
    const LmnLayerVTable *vt = feature->desc->vtable;
    /* min/max_inputs and the three functions are all required. */
    if (vt == NULL || !LMN_VTABLE_HAS(vt, build) || !LMN_VTABLE_HAS(vt, forward) ||
        !LMN_VTABLE_HAS(vt, backward)) {
        g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_BAD_DESCRIPTOR,
                    "layer '%s': layer type '%s' from %s lacks build, forward or backward", name,
                    type, feature->path);
        return NULL;
    }
    return feature;
}

/* Runs the plugin's build(): the output info, parameters, buffers and saved tensors it declares.
 * A failure's message always names the layer. */
static gboolean layer_build(LmnLayer *layer, GError **error)
{
    layer->building = TRUE;
    layer->output.shape.ndim = 0;
    layer->output.dtype = LMN_DTYPE_F32;
    GError *build_error = NULL;
    gboolean built =
        layer->vtable->build(layer, layer->n_inputs, layer->inputs, &layer->output, &build_error);
    layer->building = FALSE;
    if (!built) {
        if (build_error == NULL) {
            g_autofree char *who = layer_describe(layer);
            g_set_error(&build_error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                        "%s: build failed without a reason", who);
        } else if (strstr(build_error->message, layer->name) == NULL) {
            /* Plugins need not repeat the layer's name: make sure the message has it. */
            g_autofree char *who = layer_describe(layer);
            g_prefix_error(&build_error, "%s: ", who);
        }
        g_propagate_error(error, build_error);
        return FALSE;
    }
    g_clear_error(&build_error);
    if (layer->build_error != NULL) {
        g_propagate_error(error, g_steal_pointer(&layer->build_error));
        return FALSE;
    }
    return TRUE;
}

LmnLayer *lmn_layer_new(LmnRegistry *registry, const char *type, const char *name, guint index,
                        const LmnParams *params, LmnBackend *backend, guint n_inputs,
                        const LmnTensorInfo *inputs, GError **error)
{
    return lmn_layer_new_in_model(registry, type, name, index, params, backend, n_inputs, inputs,
                                  NULL, NULL, error);
}

LmnLayer *lmn_layer_new_in_model(LmnRegistry *registry, const char *type, const char *name,
                                 guint index, const LmnParams *params, LmnBackend *backend,
                                 guint n_inputs, const LmnTensorInfo *inputs,
                                 LmnLayerPeerLookup lookup, gpointer lookup_data, GError **error)
{
    g_return_val_if_fail(registry != NULL, NULL);
    g_return_val_if_fail(type != NULL, NULL);
    g_return_val_if_fail(name != NULL, NULL);
    g_return_val_if_fail(backend != NULL, NULL);
    g_return_val_if_fail(n_inputs == 0 || inputs != NULL, NULL);
    g_return_val_if_fail(error == NULL || *error == NULL, NULL);

    const LmnFeature *feature = layer_feature(registry, type, name, error);
    if (feature == NULL)
        return NULL;
    LmnLayer *layer = g_new0(LmnLayer, 1);
    layer->feature = feature;
    layer->vtable = feature->desc->vtable;
    layer->name = g_strdup(name);
    layer->index = index;
    layer->backend = lmn_backend_ref(backend);
    layer->param_list = g_array_new(FALSE, TRUE, sizeof(LayerParam));
    g_array_set_clear_func(layer->param_list, layer_param_clear);
    layer->buffer_list = g_array_new(FALSE, TRUE, sizeof(LayerBuffer));
    g_array_set_clear_func(layer->buffer_list, layer_buffer_clear);
    layer->saved_list = g_array_new(FALSE, TRUE, sizeof(LayerSaved));
    g_array_set_clear_func(layer->saved_list, layer_saved_clear);
    layer->n_inputs = n_inputs;
    layer->inputs = g_memdup2(inputs, sizeof(LmnTensorInfo) * n_inputs);
    layer->peer_lookup = lookup;
    layer->peer_data = lookup_data;

    if (params != NULL) {
        layer->params = lmn_params_ref((LmnParams *) params);
    } else {
        /* No keys given: the schema's defaults (an error if a key is required). */
        g_autofree char *where = g_strdup_printf("layer '%s'", name);
        layer->params = lmn_registry_validate_params(feature, NULL, NULL, where, error);
    }
    if (layer->params == NULL || !check_input_count(layer, n_inputs, error) ||
        !check_infos(layer, n_inputs, inputs, error) || !layer_build(layer, error) ||
        !check_output(layer, error) || !layer_allocate(layer, error)) {
        lmn_layer_free(layer);
        return NULL;
    }
    layer->peer_lookup = NULL; /* peers are found while building only */
    layer->peer_data = NULL;
    return layer;
}

LmnLayer *lmn_layer_find_peer(LmnLayer *layer, const char *name)
{
    g_return_val_if_fail(layer != NULL && name != NULL, NULL);
    g_return_val_if_fail(layer->building, NULL);
    if (layer->peer_lookup == NULL)
        return NULL;
    return layer->peer_lookup(layer->peer_data, name);
}

void lmn_layer_set_collective(LmnLayer *layer, const LmnCollective *collective)
{
    g_return_if_fail(layer != NULL);
    g_return_if_fail(collective == NULL ||
                     (collective->n_ranks >= 1 && collective->allreduce != NULL));
    if (collective)
        layer->collective = *collective;
    else
        memset(&layer->collective, 0, sizeof layer->collective);
}

int lmn_layer_get_n_ranks(const LmnLayer *layer)
{
    g_return_val_if_fail(layer != NULL, 1);
    return MAX(layer->collective.n_ranks, 1);
}

gboolean lmn_layer_allreduce(LmnLayer *layer, float *values, gsize count)
{
    g_return_val_if_fail(layer != NULL && (values != NULL || count == 0), FALSE);
    if (layer->collective.n_ranks <= 1)
        return TRUE;
    return layer->collective.allreduce(layer->collective.data, values, count);
}

gint lmn_layer_find_saved(const LmnLayer *layer, const char *name)
{
    g_return_val_if_fail(layer != NULL && name != NULL, -1);
    for (guint i = 0; i < layer->saved_list->len; i++) {
        if (g_str_equal(g_array_index(layer->saved_list, LayerSaved, i).name, name))
            return (gint) i;
    }
    return -1;
}

const LmnTensorInfo *lmn_layer_get_input_info(const LmnLayer *layer, guint index)
{
    g_return_val_if_fail(layer != NULL && index < layer->n_inputs, NULL);
    return &layer->inputs[index];
}

void lmn_layer_free(LmnLayer *layer)
{
    if (layer == NULL) {
        return;
    }
    /* Private data first: a plugin's destructor may still look at the layer's tensors. */
    if (layer->priv_destroy != NULL && layer->priv != NULL) {
        layer->priv_destroy(layer->priv);
    }
    g_array_unref(layer->saved_list);
    g_array_unref(layer->buffer_list);
    g_array_unref(layer->param_list);
    g_clear_pointer(&layer->params, lmn_params_unref);
    g_clear_error(&layer->build_error);
    lmn_backend_unref(layer->backend);
    g_free(layer->inputs);
    g_free(layer->index_limits);
    g_free(layer->name);
    g_free(layer);
}

const LmnLayerVTable *lmn_layer_get_vtable(const LmnLayer *layer)
{
    g_return_val_if_fail(layer != NULL, NULL);
    return layer->vtable;
}

const char *lmn_layer_get_type_name(const LmnLayer *layer)
{
    g_return_val_if_fail(layer != NULL, NULL);
    return layer->feature->desc->name;
}

const LmnTensorInfo *lmn_layer_get_output_info(const LmnLayer *layer)
{
    g_return_val_if_fail(layer != NULL, NULL);
    return &layer->output;
}

gboolean lmn_layer_is_loss(const LmnLayer *layer)
{
    g_return_val_if_fail(layer != NULL, FALSE);
    return (layer->vtable->flags & LMN_LAYER_FLAG_LOSS) != 0;
}

gboolean lmn_layer_has_flag(const LmnLayer *layer, LmnLayerFlags flag)
{
    g_return_val_if_fail(layer != NULL, FALSE);
    return (layer->vtable->flags & flag) != 0;
}

gboolean lmn_layer_as_unary(LmnLayer *layer, LmnUnaryOp *op, float *alpha)
{
    g_return_val_if_fail(layer != NULL && op != NULL && alpha != NULL, FALSE);
    if (!LMN_VTABLE_HAS(layer->vtable, as_unary) || !layer->vtable->as_unary(layer, op, alpha))
        return FALSE;
    return (guint) *op < LMN_UNARY_COUNT;
}

guint lmn_layer_get_n_params(const LmnLayer *layer)
{
    g_return_val_if_fail(layer != NULL, 0);
    return layer->param_list->len;
}

const char *lmn_layer_get_param_name(const LmnLayer *layer, guint index)
{
    g_return_val_if_fail(layer != NULL, NULL);
    g_return_val_if_fail(index < layer->param_list->len, NULL);
    return g_array_index(layer->param_list, LayerParam, index).name;
}

LmnParamRole lmn_layer_get_param_role(const LmnLayer *layer, guint index)
{
    g_return_val_if_fail(layer != NULL, LMN_PARAM_ROLE_WEIGHT);
    g_return_val_if_fail(index < layer->param_list->len, LMN_PARAM_ROLE_WEIGHT);
    return g_array_index(layer->param_list, LayerParam, index).role;
}

const char *lmn_layer_get_param_init_name(const LmnLayer *layer, guint index)
{
    g_return_val_if_fail(layer != NULL, NULL);
    g_return_val_if_fail(index < layer->param_list->len, NULL);
    const LayerParam *lp = &g_array_index(layer->param_list, LayerParam, index);
    return lp->init_used != NULL ? lp->init_used : lp->default_init;
}

const LmnFeature *lmn_layer_get_param_init_feature(const LmnLayer *layer, guint index)
{
    g_return_val_if_fail(layer != NULL, NULL);
    g_return_val_if_fail(index < layer->param_list->len, NULL);
    return g_array_index(layer->param_list, LayerParam, index).init_feature;
}

const LmnFeature *lmn_layer_get_feature(const LmnLayer *layer)
{
    g_return_val_if_fail(layer != NULL, NULL);
    return layer->feature;
}

guint lmn_layer_get_n_buffers(const LmnLayer *layer)
{
    g_return_val_if_fail(layer != NULL, 0);
    return layer->buffer_list->len;
}

const char *lmn_layer_get_buffer_name(const LmnLayer *layer, guint index)
{
    g_return_val_if_fail(layer != NULL, NULL);
    g_return_val_if_fail(index < layer->buffer_list->len, NULL);
    return g_array_index(layer->buffer_list, LayerBuffer, index).name;
}

void lmn_layer_bind_param(LmnLayer *layer, guint index, LmnTensor *value, LmnTensor *grad)
{
    g_return_if_fail(layer != NULL);
    g_return_if_fail(index < layer->param_list->len);
    g_return_if_fail(value != NULL && grad != NULL);
    LayerParam *lp = &g_array_index(layer->param_list, LayerParam, index);
    g_return_if_fail(lmn_tensor_numel(value) == lmn_shape_numel(&lp->shape));
    g_return_if_fail(lmn_tensor_numel(grad) == lmn_shape_numel(&lp->shape));
    g_return_if_fail(value->dtype == LMN_DTYPE_F32 && grad->dtype == LMN_DTYPE_F32);

    /* Ref before unref: binding the tensors already bound must not free them. */
    LmnTensor *old_value = lp->value;
    LmnTensor *old_grad = lp->grad;
    lp->value = lmn_tensor_ref(value);
    lp->grad = lmn_tensor_ref(grad);
    g_clear_pointer(&old_value, lmn_tensor_unref);
    g_clear_pointer(&old_grad, lmn_tensor_unref);
}

void lmn_layer_reset_buffers(LmnLayer *layer)
{
    g_return_if_fail(layer != NULL);
    for (guint i = 0; i < layer->buffer_list->len; i++) {
        LayerBuffer *lb = &g_array_index(layer->buffer_list, LayerBuffer, i);
        lmn_op_fill(lb->tensor, lb->initial_value);
    }
}

/* ---- parameter initialisation ---- */

/* What one parameter is initialised with: an initializer and the keys handed to its schema. */
typedef struct {
    const char *config_init; /* NAME_init from the config, borrowed; NULL = the default */
    GPtrArray *sub_keys;     /* NAME_init.KEY from the config: KEY (owned) */
    GPtrArray *sub_values;   /* their values (owned) */
    const LmnFeature *feature;
    LmnParams *init_params;
} InitChoice;

static void init_choice_clear(InitChoice *c)
{
    g_clear_pointer(&c->sub_keys, g_ptr_array_unref);
    g_clear_pointer(&c->sub_values, g_ptr_array_unref);
    g_clear_pointer(&c->init_params, lmn_params_unref);
}

static gint layer_find_param(const LmnLayer *layer, const char *name)
{
    for (guint i = 0; i < layer->param_list->len; i++) {
        if (strcmp(g_array_index(layer->param_list, LayerParam, i).name, name) == 0) {
            return (gint) i;
        }
    }
    return -1;
}

static void set_unknown_init_key(const LmnLayer *layer, const char *where, const char *key,
                                 const char *param, GError **error)
{
    g_autofree char *who = layer_describe(layer);
    if (layer->param_list->len == 0) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY,
                    "%s: key '%s': %s has no parameters to initialise", where, key, who);
        return;
    }
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GString) list = g_string_new(NULL);
    for (guint i = 0; i < layer->param_list->len; i++) {
        const char *pn = g_array_index(layer->param_list, LayerParam, i).name;
        g_ptr_array_add(names, g_strdup(pn));
        g_string_append_printf(list, "%s%s", i > 0 ? ", " : "", pn);
    }
    g_ptr_array_add(names, NULL);
    const char *hint = lmn_suggest(param, (const char *const *) names->pdata);
    g_autofree char *dym =
        hint != NULL ? g_strdup_printf(" (did you mean '%s_init'?)", hint) : g_strdup("");
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY,
                "%s: key '%s' names no parameter '%s' of %s%s; its parameters are: %s "
                "(initializer keys are PARAM_init and PARAM_init.KEY)",
                where, key, param, who, dym, list->str);
}

/* Sorts the config's init keys into per-parameter choices. */
static gboolean collect_init_keys(const LmnLayer *layer, InitChoice *choices,
                                  const char *const *keys, const char *const *values,
                                  const char *where, GError **error)
{
    for (guint k = 0; keys != NULL && keys[k] != NULL; k++) {
        const char *key = keys[k];
        const char *value = values != NULL ? values[k] : NULL;
        const char *dot = strchr(key, '.');
        g_autofree char *head = dot != NULL ? g_strndup(key, dot - key) : g_strdup(key);
        if (!g_str_has_suffix(head, "_init") || strlen(head) == strlen("_init")) {
            set_unknown_init_key(layer, where, key, head, error);
            return FALSE;
        }
        head[strlen(head) - strlen("_init")] = '\0';
        gint p = layer_find_param(layer, head);
        if (p < 0) {
            set_unknown_init_key(layer, where, key, head, error);
            return FALSE;
        }
        if (value == NULL) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                        "%s: key '%s' has no value", where, key);
            return FALSE;
        }
        InitChoice *c = &choices[p];
        if (dot == NULL) {
            if (*value == '\0') {
                g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                            "%s: key '%s' is empty; give an initializer name such as "
                            "'he_uniform'",
                            where, key);
                return FALSE;
            }
            c->config_init = value;
        } else {
            if (dot[1] == '\0') {
                g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY,
                            "%s: key '%s' lacks the initializer's key after '.'", where, key);
                return FALSE;
            }
            g_ptr_array_add(c->sub_keys, g_strdup(dot + 1));
            g_ptr_array_add(c->sub_values, g_strdup(value));
        }
    }
    return TRUE;
}

/*
 * Splits a layer's "key=value, key=value" default arguments.  A malformed string is the
 * layer plugin's bug, reported as such.
 */
static gboolean parse_default_args(const LmnLayer *layer, const LayerParam *lp, GPtrArray *keys,
                                   GPtrArray *values, GError **error)
{
    if (lp->default_init_args == NULL) {
        return TRUE;
    }
    g_auto(GStrv) items = g_strsplit(lp->default_init_args, ",", -1);
    for (guint i = 0; items[i] != NULL; i++) {
        char *item = g_strstrip(items[i]);
        if (*item == '\0') {
            continue;
        }
        char *eq = strchr(item, '=');
        if (eq == NULL || eq == item) {
            g_autofree char *who = layer_describe(layer);
            g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_BAD_DESCRIPTOR,
                        "%s: default initializer arguments of '%s' are malformed at '%s' "
                        "(expected key=value); a bug in the layer plugin",
                        who, lp->name, item);
            return FALSE;
        }
        *eq = '\0';
        g_ptr_array_add(keys, g_strdup(g_strstrip(item)));
        g_ptr_array_add(values, g_strdup(g_strstrip(eq + 1)));
    }
    return TRUE;
}

static gboolean str_array_contains(GPtrArray *a, const char *s)
{
    for (guint i = 0; i < a->len; i++) {
        if (strcmp(g_ptr_array_index(a, i), s) == 0) {
            return TRUE;
        }
    }
    return FALSE;
}

/* Looks up the initializer of parameter @i and validates its keys. */
static gboolean resolve_init(const LmnLayer *layer, LmnRegistry *registry, guint i, InitChoice *c,
                             const char *where, GError **error)
{
    const LayerParam *lp = &g_array_index(layer->param_list, LayerParam, i);
    const char *init_name = c->config_init != NULL ? c->config_init : lp->default_init;
    g_autofree char *init_where = g_strdup_printf("%s %s_init", where, lp->name);

    c->feature = lmn_registry_lookup(registry, LMN_FEATURE_INITIALIZER, init_name, error);
    if (c->feature == NULL) {
        if (c->config_init != NULL) {
            g_prefix_error(error, "%s: ", init_where);
        } else {
            g_autofree char *who = layer_describe(layer);
            g_prefix_error(error, "%s: default initializer '%s' of %s's '%s': ", where, init_name,
                           who, lp->name);
        }
        return FALSE;
    }
    const LmnInitializerVTable *vt = c->feature->desc->vtable;
    if (!LMN_VTABLE_HAS(vt, fill)) {
        g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_BAD_DESCRIPTOR,
                    "%s: initializer '%s' from %s has no fill function", init_where, init_name,
                    c->feature->path);
        return FALSE;
    }

    /*
     * The layer's default arguments tune its default initializer (dense's he_uniform with
     * a = sqrt(5)); an initializer the config names starts from its own defaults.  Config
     * sub-keys override either.
     */
    g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) values = g_ptr_array_new_with_free_func(g_free);
    if (c->config_init == NULL) {
        g_autoptr(GPtrArray) dkeys = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GPtrArray) dvalues = g_ptr_array_new_with_free_func(g_free);
        if (!parse_default_args(layer, lp, dkeys, dvalues, error)) {
            return FALSE;
        }
        for (guint k = 0; k < dkeys->len; k++) {
            if (!str_array_contains(c->sub_keys, g_ptr_array_index(dkeys, k))) {
                g_ptr_array_add(keys, g_strdup(g_ptr_array_index(dkeys, k)));
                g_ptr_array_add(values, g_strdup(g_ptr_array_index(dvalues, k)));
            }
        }
    }
    for (guint k = 0; k < c->sub_keys->len; k++) {
        g_ptr_array_add(keys, g_strdup(g_ptr_array_index(c->sub_keys, k)));
        g_ptr_array_add(values, g_strdup(g_ptr_array_index(c->sub_values, k)));
    }
    g_ptr_array_add(keys, NULL);
    g_ptr_array_add(values, NULL);
    c->init_params =
        lmn_registry_validate_params(c->feature, (const char *const *) keys->pdata,
                                     (const char *const *) values->pdata, init_where, error);
    return c->init_params != NULL;
}

static gboolean fill_param(LmnLayer *layer, guint i, const InitChoice *c, guint64 seed,
                           guint first_param_index, const char *where, GError **error)
{
    const LayerParam *lp = &g_array_index(layer->param_list, LayerParam, i);
    const LmnInitializerVTable *vt = c->feature->desc->vtable;
    gint64 numel = lmn_shape_numel(&lp->shape);

    LmnRandom random;
    lmn_random_init(&random, seed, LMN_STREAM(LMN_STREAM_INIT, first_param_index + i));
    LmnInitTarget target = {
        .struct_size = sizeof(LmnInitTarget),
        .shape = &lp->shape,
        .numel = numel,
        .fan_in = lp->fan_in,
        .fan_out = lp->fan_out,
        .random = &random,
    };
    g_autofree float *data = g_new0(float, numel);
    GError *fill_error = NULL;
    if (!vt->fill(c->init_params, &target, data, &fill_error)) {
        if (fill_error == NULL) {
            g_set_error(&fill_error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_INIT_FAILED,
                        "initializer '%s' failed without a reason", c->feature->desc->name);
        }
        g_propagate_prefixed_error(error, fill_error, "%s %s_init: ", where, lp->name);
        return FALSE;
    }
    if (!lmn_tensor_write(lp->value, data, (gsize) numel * sizeof(float), error)) {
        g_prefix_error(error, "%s: writing parameter '%s': ", where, lp->name);
        return FALSE;
    }
    return TRUE;
}

gboolean lmn_layer_init_params(LmnLayer *layer, LmnRegistry *registry, guint64 seed,
                               guint first_param_index, const char *const *init_keys,
                               const char *const *init_values, const char *where, GError **error)
{
    g_return_val_if_fail(layer != NULL, FALSE);
    g_return_val_if_fail(registry != NULL, FALSE);
    g_return_val_if_fail(error == NULL || *error == NULL, FALSE);

    g_autofree char *default_where = NULL;
    if (where == NULL) {
        default_where = g_strdup_printf("[layer %s]", layer->name);
        where = default_where;
    }

    guint n = layer->param_list->len;
    InitChoice *choices = g_new0(InitChoice, MAX(n, 1));
    for (guint i = 0; i < n; i++) {
        choices[i].sub_keys = g_ptr_array_new_with_free_func(g_free);
        choices[i].sub_values = g_ptr_array_new_with_free_func(g_free);
    }

    /* Everything is validated before anything is written: a bad key leaves the values alone. */
    gboolean ok = collect_init_keys(layer, choices, init_keys, init_values, where, error);
    for (guint i = 0; ok && i < n; i++) {
        ok = resolve_init(layer, registry, i, &choices[i], where, error);
    }
    for (guint i = 0; ok && i < n; i++) {
        ok = fill_param(layer, i, &choices[i], seed, first_param_index, where, error);
    }
    if (ok) {
        lmn_layer_reset_buffers(layer);
        for (guint i = 0; i < n; i++) {
            LayerParam *lp = &g_array_index(layer->param_list, LayerParam, i);
            g_free(lp->init_used);
            lp->init_used = g_strdup(choices[i].feature->desc->name);
            lp->init_feature = choices[i].feature;
        }
    }
    for (guint i = 0; i < n; i++) {
        init_choice_clear(&choices[i]);
    }
    g_free(choices);
    return ok;
}

/* ---- batches ---- */

gboolean lmn_layer_prepare_batch(LmnLayer *layer, gint64 batch, GError **error)
{
    g_return_val_if_fail(layer != NULL, FALSE);
    g_return_val_if_fail(batch >= 1, FALSE);

    for (guint i = 0; i < layer->saved_list->len; i++) {
        LayerSaved *ls = &g_array_index(layer->saved_list, LayerSaved, i);
        if (!ls->per_batch || (ls->current != NULL && ls->current_batch == batch)) {
            continue;
        }
        if (batch > ls->capacity) {
            LmnShape full = lmn_shape_prepend(&ls->shape, batch);
            LmnTensor *t = lmn_tensor_new(layer->backend, ls->dtype, &full, error);
            if (t == NULL) {
                g_prefix_error(error,
                               "layer '%s': saved tensor '%s' for batch %" G_GINT64_FORMAT ": ",
                               layer->name, ls->name, batch);
                return FALSE;
            }
            g_clear_pointer(&ls->current, lmn_tensor_unref);
            g_clear_pointer(&ls->storage, lmn_tensor_unref);
            ls->storage = t;
            ls->capacity = batch;
        }
        /*
         * A smaller batch (the last, partial one of an epoch) gets a view of the first rows of
         * the largest allocation, so it costs no device memory and the next full batch finds
         * its storage still there.
         */
        g_clear_pointer(&ls->current, lmn_tensor_unref);
        if (batch == ls->capacity) {
            ls->current = lmn_tensor_ref(ls->storage);
        } else {
            LmnShape part = lmn_shape_prepend(&ls->shape, batch);
            ls->current = lmn_tensor_new_view(ls->storage, 0, &part);
        }
        ls->current_batch = batch;
    }
    layer->batch = batch;
    return TRUE;
}

gboolean lmn_layer_plan_batch(LmnLayer *layer, gint64 batch, GError **error)
{
    g_return_val_if_fail(layer != NULL, FALSE);
    g_return_val_if_fail(batch >= 1, FALSE);
    if (!LMN_VTABLE_HAS(layer->vtable, prepare_batch))
        return TRUE;
    if (!layer->vtable->prepare_batch(layer, batch, error)) {
        g_prefix_error(error, "layer '%s': readying its ops for a batch of %" G_GINT64_FORMAT ": ",
                       layer->name, batch);
        return FALSE;
    }
    return TRUE;
}

void lmn_layer_set_profiling(LmnLayer *layer, gboolean on)
{
    g_return_if_fail(layer != NULL);
    layer->profiling = on;
    layer->profile = (LmnLayerProfile){0};
}

const LmnLayerProfile *lmn_layer_get_profile(const LmnLayer *layer)
{
    g_return_val_if_fail(layer != NULL, NULL);
    return &layer->profile;
}

/* Starts timing a call: the backend's earlier work is finished first, so it is not counted
 * here.  A deferred error stays with the backend for the caller's next synchronize. */
static gint64 profile_begin(LmnLayer *layer)
{
    if (!layer->profiling)
        return 0;
    lmn_backend_synchronize(layer->backend, NULL);
    return g_get_monotonic_time();
}

static gint64 profile_end(LmnLayer *layer, gint64 t0)
{
    lmn_backend_synchronize(layer->backend, NULL);
    return g_get_monotonic_time() - t0;
}

void lmn_layer_forward(LmnLayer *layer, const LmnLayerIO *io)
{
    g_return_if_fail(layer != NULL && io != NULL);
    g_return_if_fail(io->n_inputs == layer->n_inputs);
    g_return_if_fail(layer->saved_list->len == 0 || io->batch == layer->batch);
    gint64 t0 = profile_begin(layer);
    layer->vtable->forward(layer, io);
    if (layer->profiling) {
        layer->profile.forward_us += profile_end(layer, t0);
        layer->profile.forward_calls++;
    }
}

void lmn_layer_backward(LmnLayer *layer, const LmnLayerIO *io)
{
    g_return_if_fail(layer != NULL && io != NULL);
    g_return_if_fail(io->n_inputs == layer->n_inputs);
    g_return_if_fail(layer->saved_list->len == 0 || io->batch == layer->batch);
    gint64 t0 = profile_begin(layer);
    layer->vtable->backward(layer, io);
    if (layer->profiling) {
        layer->profile.backward_us += profile_end(layer, t0);
        layer->profile.backward_calls++;
    }
}
