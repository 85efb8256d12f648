/* Lamina — `lamina eval`. */
#include "cli.h"

#include <math.h>
#include <stdio.h>

/* What the dataset's targets look like to a model: class labels or float targets. */
static LmnTensorInfo target_info(const LmnDataset *ds)
{
    LmnTensorInfo target;
    if (lmn_dataset_has_class_labels(ds)) {
        target.shape = lmn_shape_make(0);
        target.dtype = LMN_DTYPE_I32;
    } else {
        target.shape = *lmn_dataset_get_target_shape(ds);
        target.dtype = LMN_DTYPE_F32;
    }
    return target;
}

static void print_result(gboolean json, double loss, double acc, const LmnDataset *ds,
                         const char *data)
{
    if (json) {
        char lb[G_ASCII_DTOSTR_BUF_SIZE], ab[G_ASCII_DTOSTR_BUF_SIZE];
        g_ascii_formatd(lb, sizeof lb, "%.6f", loss);
        if (isnan(acc))
            printf("{\"loss\": %s, \"accuracy\": null, \"samples\": %" G_GINT64_FORMAT "}\n", lb,
                   lmn_dataset_get_length(ds));
        else
            printf("{\"loss\": %s, \"accuracy\": %s, \"samples\": %" G_GINT64_FORMAT "}\n", lb,
                   g_ascii_formatd(ab, sizeof ab, "%.6f", acc), lmn_dataset_get_length(ds));
        return;
    }
    printf("loss %.4f", loss);
    if (!isnan(acc))
        printf("  accuracy %.2f%%", 100 * acc);
    printf("  (%" G_GINT64_FORMAT " samples of %s)\n", lmn_dataset_get_length(ds), data);
}

/* Builds the checkpoint's model on the backend, loads its weights and evaluates it on @ds. */
static gboolean evaluate_checkpoint(const char *ckpt, LmnConfig *cfg, LmnRegistry *registry,
                                    LmnBackend *b, LmnDataset *ds, gint64 batch, double *loss,
                                    double *acc, GError **error)
{
    LmnTensorInfo target = target_info(ds);
    LmnModel *model = lmn_model_new(cfg, registry, b, &target, error);
    gboolean ok = model &&
                  lmn_dataset_check_model(ds, lmn_model_get_input_shape(model),
                                          lmn_model_get_n_classes(model), error) &&
                  lmn_checkpoint_load_weights(ckpt, model, error) &&
                  lmn_evaluate(model, ds, batch, loss, acc, error);
    lmn_model_free(model);
    return ok;
}

int lmn_cli_eval(int argc, char **argv)
{
    g_auto(GStrv) plugin_dirs = NULL;
    g_autofree char *data = NULL;
    g_autofree char *backend = NULL;
    g_autofree char *device = NULL;
    gint64 batch = 256;
    gboolean json = FALSE;
    GOptionEntry entries[] = {
        {"data", 'd', 0, G_OPTION_ARG_STRING, &data, "the split to evaluate on (required)",
         "FILE:/split"},
        {"json", 0, 0, G_OPTION_ARG_NONE, &json,
         "print {\"loss\": ..., \"accuracy\": ...} instead of text", NULL},
        {"batch-size", 0, 0, G_OPTION_ARG_INT64, &batch, "samples per batch (default 256)", "N"},
        {"backend", 0, 0, G_OPTION_ARG_STRING, &backend, "backend (default: auto)", "NAME"},
        {"device", 0, 0, G_OPTION_ARG_STRING, &device, "device for GPU backends", "DEV"},
        {"plugin-path", 'P', 0, G_OPTION_ARG_FILENAME_ARRAY, &plugin_dirs,
         "also load plugins from DIR (repeatable)", "DIR"},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("CHECKPOINT");
    g_option_context_set_summary(ctx, "Evaluate a checkpoint's model (its /config and "
                                      "/model weights) on a dataset split.");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        fprintf(stderr, "lamina eval: %s (see lamina eval --help)\n", error->message);
        return 2;
    }
    if (argc != 2 || !data || batch <= 0) {
        fprintf(stderr, "lamina eval: expected CHECKPOINT and --data FILE:/split (see lamina "
                        "eval --help)\n");
        return 2;
    }
    const char *ckpt = argv[1];
    g_autoptr(LmnRegistry) registry = lmn_cli_open_registry(plugin_dirs);
    LmnConfig *cfg = lmn_cli_checkpoint_config(ckpt, registry, &error);
    if (!cfg)
        return lmn_cli_fail("eval", error);
    int status = 0;
    LmnBackend *b = NULL;
    LmnDataset *ds = lmn_dataset_open(data, &error);
    if (ds)
        b = lmn_backend_new_for_config(registry, backend ? backend : "auto", device, &error);
    double loss, acc;
    if (b && evaluate_checkpoint(ckpt, cfg, registry, b, ds, batch, &loss, &acc, &error))
        print_result(json, loss, acc, ds, data);
    else
        status = lmn_cli_fail("eval", error);
    if (b)
        lmn_backend_unref(b);
    lmn_dataset_free(ds);
    lmn_config_free(cfg);
    return status;
}
