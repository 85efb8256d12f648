/* Lamina — `lamina attack`: FGSM and PGD adversarial examples against a checkpoint's model. */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* "MIN,MAX" into two finite numbers. */
static gboolean parse_clip(const char *text, double *lo, double *hi)
{
    g_auto(GStrv) parts = g_strsplit(text, ",", -1);
    if (g_strv_length(parts) != 2)
        return FALSE;
    double v[2];
    for (int i = 0; i < 2; i++) {
        g_strstrip(parts[i]);
        char *end = NULL;
        v[i] = g_ascii_strtod(parts[i], &end);
        if (parts[i][0] == '\0' || *end != '\0' || !isfinite(v[i]))
            return FALSE;
    }
    *lo = v[0];
    *hi = v[1];
    return TRUE;
}

/* A number option: FALSE (with a message naming it) when @text is not one; NaN and infinities
 * are returned as such, for lmn_attack_options_check() to refuse by name. */
static gboolean parse_number(const char *option, const char *text, double *out)
{
    char *end = NULL;
    *out = g_ascii_strtod(text, &end);
    if (text[0] == '\0' || *end != '\0') {
        fprintf(stderr, "lamina attack: --%s: '%s' is not a number\n", option, text);
        return FALSE;
    }
    return TRUE;
}

static void print_result(gboolean json, double clean, double adv, gint64 n, const char *data,
                         const LmnAttackOptions *o)
{
    if (json) {
        char cb[G_ASCII_DTOSTR_BUF_SIZE], ab[G_ASCII_DTOSTR_BUF_SIZE];
        if (n == 0) {
            printf("{\"clean_accuracy\": null, \"adversarial_accuracy\": null, \"samples\": 0}\n");
            return;
        }
        printf(
            "{\"clean_accuracy\": %s, \"adversarial_accuracy\": %s, \"samples\": %" G_GINT64_FORMAT
            "}\n",
            g_ascii_formatd(cb, sizeof cb, "%.6f", clean),
            g_ascii_formatd(ab, sizeof ab, "%.6f", adv), n);
        return;
    }
    printf("clean accuracy %.2f%%  adversarial accuracy %.2f%%  (%s, eps %g", 100 * clean,
           100 * adv, o->method == LMN_ATTACK_PGD ? "pgd" : "fgsm", o->eps);
    if (o->method == LMN_ATTACK_PGD)
        printf(", %d steps", o->steps);
    printf("; %" G_GINT64_FORMAT " samples of %s)\n", n, data);
}

/* Builds the checkpoint's model, attacks @ds and writes the result to @output when given. */
static gboolean attack_checkpoint(const char *ckpt, LmnConfig *cfg, LmnRegistry *registry,
                                  LmnBackend *b, LmnDataset *ds, const LmnAttackOptions *o,
                                  gint64 batch, const char *output, gboolean overwrite,
                                  double *clean, double *adv, GError **error)
{
    if (!lmn_dataset_has_class_labels(ds)) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_DTYPE,
                    "%s: an attack needs class labels; this split's y holds float targets",
                    lmn_dataset_get_spec(ds));
        return FALSE;
    }
    LmnTensorInfo target = {lmn_shape_make(0), LMN_DTYPE_I32};
    LmnModel *model = lmn_model_new(cfg, registry, b, &target, error);
    if (!model) {
        /* The model is built for class labels, so a regression loss refuses them here: say why
         * an attack asked for them. */
        if (g_error_matches(*error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH) ||
            g_error_matches(*error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID))
            g_prefix_error(error,
                           "%s: an attack needs a model whose loss takes class labels "
                           "(e.g. softmax_cross_entropy): ",
                           ckpt);
        else
            g_prefix_error(error, "%s: ", ckpt);
        return FALSE;
    }
    const gint64 n = lmn_dataset_get_length(ds);
    const LmnShape *shape = lmn_model_get_input_shape(model);
    g_autofree float *x_adv = output ? g_new(float, MAX(n, 1) * lmn_shape_numel(shape)) : NULL;
    g_autofree gint32 *y = NULL;
    gboolean ok = lmn_checkpoint_load_weights(ckpt, model, error) &&
                  lmn_attack_dataset(model, ds, o, batch, x_adv, clean, adv, error);
    if (ok && output) {
        /* The same labels, in file order: read them once more (x is not needed). */
        y = g_new(gint32, MAX(n, 1));
        g_autofree guint32 *idx = g_new(guint32, MAX(n, 1));
        for (gint64 i = 0; i < n; i++)
            idx[i] = (guint32) i;
        lmn_dataset_gather(ds, idx, (gsize) n, NULL, y);
        ok = lmn_dataset_write(output, x_adv, n, shape, y, overwrite, error);
    }
    lmn_model_free(model);
    return ok;
}

/* The command line of `lamina attack`. */
typedef struct {
    GStrv plugin_dirs;
    char *data, *method, *clip, *output, *backend, *device, *eps_text, *alpha_text;
    gint steps; /* G_MININT when not given */
    gint64 seed, batch;
    gboolean random_start, json, overwrite;
} AttackArgs;

static void attack_args_clear(AttackArgs *a)
{
    g_strfreev(a->plugin_dirs);
    g_free(a->data);
    g_free(a->method);
    g_free(a->clip);
    g_free(a->output);
    g_free(a->backend);
    g_free(a->device);
    g_free(a->eps_text);
    g_free(a->alpha_text);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(AttackArgs, attack_args_clear)

/* Parses the options into @a; Returns: 0, or the exit status 2 after a usage message. */
static int parse_args(AttackArgs *a, int *argc, char ***argv)
{
    GOptionEntry entries[] = {
        {"data", 'd', 0, G_OPTION_ARG_STRING, &a->data, "the split to attack (required)",
         "FILE:/split"},
        {"method", 'm', 0, G_OPTION_ARG_STRING, &a->method, "fgsm or pgd (required)", "METHOD"},
        {"eps", 0, 0, G_OPTION_ARG_STRING, &a->eps_text,
         "L-infinity budget, >= 0, in the units the model sees (required)", "E"},
        {"steps", 0, 0, G_OPTION_ARG_INT, &a->steps, "pgd: steps (default 10)", "K"},
        {"alpha", 0, 0, G_OPTION_ARG_STRING, &a->alpha_text,
         "pgd: step size, > 0 (default 2.5 * eps / steps)", "A"},
        {"clip", 0, 0, G_OPTION_ARG_STRING, &a->clip,
         "keep inputs in [MIN, MAX] (in the units the model sees; default: no clip)", "MIN,MAX"},
        {"random-start", 0, 0, G_OPTION_ARG_NONE, &a->random_start,
         "pgd: start from a uniform point within eps of each input", NULL},
        {"seed", 0, 0, G_OPTION_ARG_INT64, &a->seed, "the random start's seed (default 0)", "S"},
        {"output", 'o', 0, G_OPTION_ARG_STRING, &a->output,
         "write the adversarial inputs (float32 x, the same y) as a split", "FILE:/split"},
        {"overwrite", 0, 0, G_OPTION_ARG_NONE, &a->overwrite, "replace an existing --output split",
         NULL},
        {"json", 0, 0, G_OPTION_ARG_NONE, &a->json,
         "print {\"clean_accuracy\": ..., \"adversarial_accuracy\": ..., \"samples\": N}", NULL},
        {"batch-size", 0, 0, G_OPTION_ARG_INT64, &a->batch, "samples per batch (default 256)", "N"},
        {"backend", 0, 0, G_OPTION_ARG_STRING, &a->backend, "backend (default: auto)", "NAME"},
        {"device", 0, 0, G_OPTION_ARG_STRING, &a->device, "device for GPU backends", "DEV"},
        {"plugin-path", 'P', 0, G_OPTION_ARG_FILENAME_ARRAY, &a->plugin_dirs,
         "also load plugins from DIR (repeatable)", "DIR"},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("CHECKPOINT");
    g_option_context_set_summary(
        ctx, "Attack a checkpoint's model with FGSM or PGD adversarial examples on a dataset "
             "split and print its clean and adversarial accuracy.  Inputs are attacked in the "
             "units the model sees (after the split's scale, mean and std), and --output writes "
             "them in those units, without scale, mean or std attributes.");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, argc, argv, &error)) {
        fprintf(stderr, "lamina attack: %s (see lamina attack --help)\n", error->message);
        return 2;
    }
    if (*argc != 2 || !a->data || !a->method || !a->eps_text) {
        fprintf(stderr, "lamina attack: expected CHECKPOINT, --data FILE:/split, --method "
                        "fgsm|pgd and --eps E (see lamina attack --help)\n");
        return 2;
    }
    return 0;
}

/* The attack's options from the command line, each checked.  Returns: 0, or the exit status 2
 * after a message naming the option. */
static int attack_options(const AttackArgs *a, LmnAttackOptions *o)
{
    lmn_attack_options_init(o);
    if (g_str_equal(a->method, "fgsm")) {
        o->method = LMN_ATTACK_FGSM;
    } else if (g_str_equal(a->method, "pgd")) {
        o->method = LMN_ATTACK_PGD;
    } else {
        fprintf(stderr, "lamina attack: --method: '%s' is not fgsm or pgd\n", a->method);
        return 2;
    }
    if (o->method == LMN_ATTACK_FGSM) {
        const char *pgd_only = a->steps != G_MININT ? "--steps"
                               : a->alpha_text      ? "--alpha"
                               : a->random_start    ? "--random-start"
                                                    : NULL;
        if (pgd_only) {
            fprintf(stderr, "lamina attack: %s applies to --method pgd only\n", pgd_only);
            return 2;
        }
    }
    if (a->batch <= 0) {
        fprintf(stderr, "lamina attack: --batch-size: %" G_GINT64_FORMAT " is not >= 1\n",
                a->batch);
        return 2;
    }
    if (a->seed < 0) {
        fprintf(stderr, "lamina attack: --seed: %" G_GINT64_FORMAT " is not >= 0\n", a->seed);
        return 2;
    }
    if (!parse_number("eps", a->eps_text, &o->eps) ||
        (a->alpha_text && !parse_number("alpha", a->alpha_text, &o->alpha)))
        return 2;
    /* A NaN --alpha would mean "the default" to the core: refuse it here. */
    if (a->alpha_text && isnan(o->alpha)) {
        fprintf(stderr, "lamina attack: --alpha: '%s' is not a finite number > 0\n", a->alpha_text);
        return 2;
    }
    if (a->steps != G_MININT)
        o->steps = a->steps;
    o->random_start = a->random_start;
    o->seed = (guint64) a->seed;
    if (a->clip && !parse_clip(a->clip, &o->clip_min, &o->clip_max)) {
        fprintf(stderr, "lamina attack: --clip: '%s' is not MIN,MAX (two finite numbers)\n",
                a->clip);
        return 2;
    }
    g_autoptr(GError) error = NULL;
    if (!lmn_attack_options_check(o, &error)) {
        fprintf(stderr, "lamina attack: --%s\n", error->message);
        return 2;
    }
    return 0;
}

int lmn_cli_attack(int argc, char **argv)
{
    g_auto(AttackArgs) a = {.steps = G_MININT, .batch = 256};
    LmnAttackOptions o;
    int usage = parse_args(&a, &argc, &argv);
    if (usage == 0)
        usage = attack_options(&a, &o);
    if (usage != 0)
        return usage;
    const char *ckpt = argv[1];
    g_autoptr(GError) error = NULL;
    g_autoptr(LmnRegistry) registry = lmn_cli_open_registry(a.plugin_dirs);
    LmnConfig *cfg = lmn_cli_checkpoint_config(ckpt, registry, &error);
    if (!cfg)
        return lmn_cli_fail("attack", error);
    int status = 0;
    LmnBackend *b = NULL;
    LmnDataset *ds = lmn_dataset_open(a.data, &error);
    if (ds)
        b = lmn_backend_new_for_config(registry, a.backend ? a.backend : "auto", a.device, &error);
    double clean = NAN, adv = NAN;
    if (b && attack_checkpoint(ckpt, cfg, registry, b, ds, &o, a.batch, a.output, a.overwrite,
                               &clean, &adv, &error))
        print_result(a.json, clean, adv, lmn_dataset_get_length(ds), a.data, &o);
    else
        status = lmn_cli_fail("attack", error);
    if (b)
        lmn_backend_unref(b);
    lmn_dataset_free(ds);
    lmn_config_free(cfg);
    return status;
}
