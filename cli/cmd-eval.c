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

/* The evaluation's figures: the total loss, the accuracy, and each loss layer's own mean. */
typedef struct {
    double loss, acc;
    guint n_losses;
    char **names; /* the loss layers' names */
    double *losses;
} EvalResult;

static void eval_result_clear(EvalResult *r)
{
    g_strfreev(r->names);
    g_free(r->losses);
}

/* "\"losses\": {\"main\": 0.41, ...}, " in the JSON, every loss layer by name. */
static void print_json_losses(const EvalResult *r)
{
    char b[G_ASCII_DTOSTR_BUF_SIZE];
    printf("\"losses\": {");
    for (guint k = 0; k < r->n_losses; k++) {
        g_autofree char *name = g_strescape(r->names[k], NULL);
        printf("%s\"%s\": %s", k ? ", " : "", name,
               isnan(r->losses[k]) ? "null" : g_ascii_formatd(b, sizeof b, "%.6f", r->losses[k]));
    }
    printf("}, ");
}

static void print_result(gboolean json, const EvalResult *r, const LmnDataset *ds, const char *data)
{
    double loss = r->loss, acc = r->acc;
    if (json) {
        char lb[G_ASCII_DTOSTR_BUF_SIZE], ab[G_ASCII_DTOSTR_BUF_SIZE];
        g_ascii_formatd(lb, sizeof lb, "%.6f", loss);
        printf("{\"loss\": %s, ", lb);
        print_json_losses(r);
        if (isnan(acc))
            printf("\"accuracy\": null, \"samples\": %" G_GINT64_FORMAT "}\n",
                   lmn_dataset_get_length(ds));
        else
            printf("\"accuracy\": %s, \"samples\": %" G_GINT64_FORMAT "}\n",
                   g_ascii_formatd(ab, sizeof ab, "%.6f", acc), lmn_dataset_get_length(ds));
        return;
    }
    printf("loss %.4f", loss);
    for (guint k = 0; r->n_losses > 1 && k < r->n_losses; k++)
        printf("%s%s %.4f%s", k ? ", " : " (", r->names[k], r->losses[k],
               k + 1 == r->n_losses ? ")" : "");
    if (!isnan(acc))
        printf("  accuracy %.2f%%", 100 * acc);
    printf("  (%" G_GINT64_FORMAT " samples of %s)\n", lmn_dataset_get_length(ds), data);
}

/* Builds the checkpoint's model on the backend, loads its weights and evaluates it on @ds. */
static gboolean evaluate_checkpoint(const char *ckpt, LmnConfig *cfg, LmnRegistry *registry,
                                    LmnBackend *b, LmnDataset *ds, gint64 batch, EvalResult *r,
                                    GError **error)
{
    LmnTensorInfo target = target_info(ds);
    LmnModel *model = lmn_config_get_n_targets(cfg) > 1
                          ? lmn_model_new_for_dataset(cfg, registry, b, ds, error)
                          : lmn_model_new(cfg, registry, b, &target, error);
    if (model) {
        r->n_losses = lmn_model_get_n_losses(model);
        r->names = g_new0(char *, r->n_losses + 1);
        for (guint k = 0; k < r->n_losses; k++)
            r->names[k] = g_strdup(lmn_layer_get_name(lmn_model_get_loss_layer(model, k)));
        r->losses = g_new0(double, MAX(r->n_losses, 1));
    }
    gboolean ok = model &&
                  lmn_dataset_check_model(ds, lmn_model_get_input_shape(model),
                                          lmn_model_get_n_classes(model), error) &&
                  lmn_model_check_targets(model, ds, error) &&
                  lmn_checkpoint_load_weights(ckpt, model, error) &&
                  lmn_evaluate_full(model, ds, batch, &r->loss, &r->acc, r->losses, error);
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
         "print {\"loss\": ..., \"losses\": {\"LAYER\": ...}, \"accuracy\": ...} instead of "
         "text",
         NULL},
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
    /* The split holds the targets the checkpoint's losses read, y always. */
    g_autoptr(GStrvBuilder) nb = g_strv_builder_new();
    for (guint t = 1; t < lmn_config_get_n_targets(cfg); t++)
        g_strv_builder_add(nb, lmn_config_get_target_name(cfg, t));
    g_auto(GStrv) names = g_strv_builder_end(nb);
    LmnDataset *ds = lmn_dataset_open_with_targets(data, (const char *const *) names, -1, &error);
    if (ds)
        b = lmn_backend_new_for_config(registry, backend ? backend : "auto", device, &error);
    EvalResult r = {0};
    if (b && evaluate_checkpoint(ckpt, cfg, registry, b, ds, batch, &r, &error))
        print_result(json, &r, ds, data);
    else
        status = lmn_cli_fail("eval", error);
    eval_result_clear(&r);
    if (b)
        lmn_backend_unref(b);
    lmn_dataset_free(ds);
    lmn_config_free(cfg);
    return status;
}
