/* Lamina — `lamina export`: a checkpoint's inference graph as an ONNX model. */
#include "cli.h"

#include <stdio.h>

static gboolean export_checkpoint(const char *ckpt, const char *output, LmnRegistry *registry,
                                  GError **error)
{
    LmnConfig *cfg = lmn_cli_checkpoint_config(ckpt, registry, error);
    if (cfg == NULL)
        return FALSE;
    /* Weights are read to the host once: the CPU backend is always there and enough. */
    LmnBackend *b = lmn_backend_new_for_config(registry, "cpu", NULL, error);
    LmnModel *model = b ? lmn_cli_inference_model(cfg, registry, b, error) : NULL;
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
