/* Lamina — `lamina export`: a checkpoint's inference graph as an ONNX model. */
#include "cli.h"

#include <stdio.h>

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

/*
 * The checkpoint's model.  Inference needs no targets, but a loss layer cannot be built without
 * their info: class labels (i32 []) are tried first, then f32 targets shaped like the
 * prediction (mse, binary cross-entropy).  A model without a loss takes either.
 */
static LmnModel *build_model(const LmnConfig *cfg, LmnRegistry *registry, LmnBackend *b,
                             GError **error)
{
    LmnTensorInfo labels = {lmn_shape_make(0), LMN_DTYPE_I32};
    GError *first = NULL;
    LmnModel *model =
        lmn_model_new_full(cfg, registry, b, &labels, LMN_MODEL_ALLOW_NO_LOSS, &first);
    LmnTensorInfo pred;
    if (model == NULL && prediction_info(cfg, registry, b, &pred) && pred.dtype == LMN_DTYPE_F32) {
        model = lmn_model_new_full(cfg, registry, b, &pred, LMN_MODEL_ALLOW_NO_LOSS, NULL);
    }
    if (model == NULL)
        g_propagate_error(error, first);
    else
        g_clear_error(&first);
    return model;
}

static gboolean export_checkpoint(const char *ckpt, const char *output, LmnRegistry *registry,
                                  GError **error)
{
    LmnConfig *cfg = lmn_cli_checkpoint_config(ckpt, registry, error);
    if (cfg == NULL)
        return FALSE;
    /* Weights are read to the host once: the CPU backend is always there and enough. */
    LmnBackend *b = lmn_backend_new_for_config(registry, "cpu", NULL, error);
    LmnModel *model = b ? build_model(cfg, registry, b, error) : NULL;
    gboolean ok = model != NULL && lmn_checkpoint_load_weights(ckpt, model, error) &&
                  lmn_export_onnx(model, cfg, output, NULL, error);
    lmn_model_free(model);
    if (b)
        lmn_backend_unref(b);
    lmn_config_free(cfg);
    return ok;
}

int lmn_cli_export(int argc, char **argv)
{
    g_auto(GStrv) plugin_dirs = NULL;
    g_autofree char *format = NULL;
    g_autofree char *output = NULL;
    GOptionEntry entries[] = {
        {"format", 'f', 0, G_OPTION_ARG_STRING, &format, "the format: onnx (the default)", "onnx"},
        {"output", 'o', 0, G_OPTION_ARG_FILENAME, &output, "the file to write (required)", "FILE"},
        {"plugin-path", 'P', 0, G_OPTION_ARG_FILENAME_ARRAY, &plugin_dirs,
         "also load plugins from DIR (repeatable)", "DIR"},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("CHECKPOINT");
    g_option_context_set_summary(
        ctx, "Export a checkpoint's inference graph: an ONNX model (opset 13) with the input "
             "\"input\" [N, ...], the weights as initializers named LAYER.PARAM, dropout "
             "removed, batch normalisation with its running statistics, and the loss replaced "
             "by its output activation (\"probabilities\" and \"logits\").");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        fprintf(stderr, "lamina export: %s (see lamina export --help)\n", error->message);
        return 2;
    }
    if (format != NULL && !g_str_equal(format, "onnx")) {
        fprintf(stderr, "lamina export: unknown --format '%s'; the only format is onnx\n", format);
        return 2;
    }
    if (argc != 2 || output == NULL) {
        fprintf(stderr, "lamina export: expected CHECKPOINT and --output FILE (see lamina "
                        "export --help)\n");
        return 2;
    }
    g_autoptr(LmnRegistry) registry = lmn_cli_open_registry(plugin_dirs);
    if (!export_checkpoint(argv[1], output, registry, &error))
        return lmn_cli_fail("export", error);
    printf("wrote %s\n", output);
    return 0;
}
