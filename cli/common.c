/* Lamina — helpers shared by the `lamina` sub-commands. */
#include "cli.h"

#include <stdio.h>

LmnRegistry *lmn_cli_open_registry(char **plugin_dirs)
{
    LmnRegistry *registry = lmn_registry_new();
    for (guint k = 0; plugin_dirs != NULL && plugin_dirs[k] != NULL; k++)
        lmn_registry_add_dir(registry, plugin_dirs[k]);
    /* Per-file failures are recorded, not fatal: the user may never ask for the broken plugin.
     * They surface in `lamina plugins` and in the error of a lookup that needed that file. */
    lmn_registry_scan(registry, NULL);
    return registry;
}

int lmn_cli_fail(const char *cmd, const GError *error)
{
    fprintf(stderr, "lamina %s: %s\n", cmd, error ? error->message : "failed");
    return 1;
}

LmnConfig *lmn_cli_checkpoint_config(const char *ckpt, LmnRegistry *registry, GError **error)
{
    g_autofree char *text = lmn_checkpoint_read_config(ckpt, error);
    if (!text)
        return NULL;
    g_autofree char *cfg_name = g_strdup_printf("%s:/config", ckpt);
    LmnConfig *cfg = lmn_config_new_from_data(text, -1, cfg_name, error);
    if (!cfg)
        return NULL;
    g_autoptr(GError) local = NULL;
    if (lmn_config_validate(cfg, registry, &local))
        return cfg;
    lmn_config_free(cfg);
    /* A type no plugin here provides: the checkpoint says which plugin it came from. */
    g_autofree char *why =
        local->domain == LMN_PLUGIN_ERROR ? lmn_checkpoint_explain_missing(ckpt, registry) : NULL;
    if (why)
        g_set_error(error, local->domain, local->code, "%s (%s)", why, local->message);
    else
        g_propagate_error(error, g_steal_pointer(&local));
    return NULL;
}

/* Per-sample info of node @name among the standalone layers built so far. */
static const LmnTensorInfo *node_info(GHashTable *infos, const char *name)
{
    return g_hash_table_lookup(infos, name);
}

/*
 * The per-sample info of the last layer's first input (a loss's prediction), found by building
 * the layers before it standalone: a regression loss's target has that shape, which the
 * checkpoint does not record.  Returns FALSE when a layer does not build.
 */
static gboolean prediction_info(const LmnConfig *cfg, LmnRegistry *registry, LmnBackend *b,
                                LmnTensorInfo *out)
{
    guint n = lmn_config_get_n_layers(cfg);
    g_autoptr(GHashTable) infos = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, g_free);
    LmnTensorInfo *input = g_new(LmnTensorInfo, 1);
    *input = (LmnTensorInfo){*lmn_config_get_input_shape(cfg), LMN_DTYPE_F32};
    g_hash_table_insert(infos, "input", input);
    gboolean ok = n > 0;
    for (guint i = 0; ok && i + 1 < n; i++) {
        const LmnLayerConfig *lc = lmn_config_get_layer(cfg, i);
        guint n_in = g_strv_length(lc->inputs);
        g_autofree LmnTensorInfo *in = g_new0(LmnTensorInfo, MAX(n_in, 1));
        for (guint k = 0; ok && k < n_in; k++) {
            const LmnTensorInfo *info = node_info(infos, lc->inputs[k]);
            ok = info != NULL;
            if (ok)
                in[k] = *info;
        }
        LmnLayer *layer =
            ok ? lmn_layer_new(registry, lc->type, lc->name, i, lc->params, b, n_in, in, NULL)
               : NULL;
        ok = layer != NULL;
        if (ok)
            g_hash_table_insert(infos, lc->name,
                                g_memdup2(lmn_layer_get_output_info(layer), sizeof(LmnTensorInfo)));
        lmn_layer_free(layer);
    }
    const LmnTensorInfo *pred =
        ok ? node_info(infos, lmn_config_get_layer(cfg, n - 1)->inputs[0]) : NULL;
    if (pred != NULL)
        *out = *pred;
    return pred != NULL;
}

/* The model with every target given @info (@first_error set by the first failure only). */
static LmnModel *model_with_targets(const LmnConfig *cfg, LmnRegistry *registry, LmnBackend *b,
                                    const LmnTensorInfo *info, GError **first_error)
{
    guint n_targets = MAX(lmn_config_get_n_targets(cfg), 1);
    g_autofree LmnTensorInfo *all = g_new(LmnTensorInfo, n_targets);
    for (guint t = 0; t < n_targets; t++)
        all[t] = *info;
    GError *error = NULL;
    LmnModel *model =
        n_targets > 1 ? lmn_model_new_with_targets(cfg, registry, b, n_targets, all,
                                                   LMN_MODEL_ALLOW_NO_LOSS, &error)
                      : lmn_model_new_full(cfg, registry, b, info, LMN_MODEL_ALLOW_NO_LOSS, &error);
    if (error != NULL && *first_error == NULL)
        g_propagate_error(first_error, error);
    else
        g_clear_error(&error);
    return model;
}

/*
 * The checkpoint's model.  Inference needs no targets, but a loss layer cannot be built without
 * their info: class labels (i32 []) are tried first, then f32 targets shaped like the
 * prediction (mse, binary cross-entropy), then f32 targets shaped like the prediction less its
 * first dimension (per-pixel labels of a softmax_cross_entropy on logits [C, H, W]).  A model
 * without a loss takes either.
 */
LmnModel *lmn_cli_inference_model(const LmnConfig *cfg, LmnRegistry *registry, LmnBackend *b,
                                  GError **error)
{
    LmnTensorInfo labels = {lmn_shape_make(0), LMN_DTYPE_I32};
    GError *first = NULL;
    LmnModel *model = model_with_targets(cfg, registry, b, &labels, &first);
    LmnTensorInfo pred;
    if (model == NULL && prediction_info(cfg, registry, b, &pred) && pred.dtype == LMN_DTYPE_F32) {
        model = model_with_targets(cfg, registry, b, &pred, &first);
        if (model == NULL && pred.shape.ndim >= 2) {
            LmnTensorInfo pixels = {lmn_shape_make(0), LMN_DTYPE_F32};
            pixels.shape.ndim = pred.shape.ndim - 1;
            for (guint i = 1; i < pred.shape.ndim; i++)
                pixels.shape.dims[i - 1] = pred.shape.dims[i];
            model = model_with_targets(cfg, registry, b, &pixels, &first);
        }
    }
    if (model == NULL)
        g_propagate_error(error, first);
    else
        g_clear_error(&first);
    return model;
}
