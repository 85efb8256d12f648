/* Lamina — `lamina gradcheck LAYER`: finite-difference gradient check of one layer type.
 *
 * Builds the layer standalone with the given hyperparameters and per-sample input shapes, runs
 * lmn_gradcheck_layer() (gradcheck.h) and prints the worst relative error of every input and
 * parameter gradient with PASS/FAIL against --tolerance.  It knows layers only through the
 * layer API, so it works on any plugin, including one from an out-of-tree --plugin-path: the
 * tool a layer author runs before anything else.
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define GRADCHECK_DEFAULT_WIDTH 8

/*
 * Parses "8", "3,4,4", "3x4x4", "[2, 3]", "[]" or "scalar", each optionally prefixed with
 * "i32:" or "f32:" (the default), into a per-sample shape and dtype.
 */
static gboolean parse_input(const char *text, LmnTensorInfo *info, GError **error)
{
    const char *s = text;
    info->dtype = LMN_DTYPE_F32;
    if (g_str_has_prefix(s, "i32:")) {
        info->dtype = LMN_DTYPE_I32;
        s += 4;
    } else if (g_str_has_prefix(s, "f32:")) {
        s += 4;
    }
    g_autofree char *body = g_strstrip(g_strdup(s));
    gsize len = strlen(body);
    if (len >= 2 && body[0] == '[' && body[len - 1] == ']') {
        body[len - 1] = '\0';
        memmove(body, body + 1, len - 1);
        g_strstrip(body);
    }
    info->shape.ndim = 0;
    if (body[0] == '\0' || strcmp(body, "scalar") == 0) {
        return TRUE;
    }
    g_auto(GStrv) parts = g_strsplit_set(body, ",x", -1);
    for (guint i = 0; parts[i] != NULL; i++) {
        char *end = NULL;
        char *p = g_strstrip(parts[i]);
        gint64 d = g_ascii_strtoll(p, &end, 10);
        if (p[0] == '\0' || end == NULL || *end != '\0' || d < 1 || d > G_MAXINT32 ||
            info->shape.ndim >= LMN_MAX_DIMS - 1) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                        "--input '%s': expected a per-sample shape of 0 to %d positive "
                        "dimensions such as 8, 3,4,4 or [] (optionally prefixed with i32: for "
                        "integer inputs such as class labels)",
                        text, LMN_MAX_DIMS - 1);
            return FALSE;
        }
        info->shape.dims[info->shape.ndim++] = d;
    }
    return TRUE;
}

/* Validates the --set KEY=VALUE pairs against the layer's schema. */
static LmnParams *parse_sets(const LmnFeature *feature, char **sets, GError **error)
{
    g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) values = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; sets != NULL && sets[i] != NULL; i++) {
        const char *eq = strchr(sets[i], '=');
        if (eq == NULL || eq == sets[i]) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_PARSE,
                        "--set '%s': expected KEY=VALUE, e.g. --set units=16", sets[i]);
            return NULL;
        }
        g_ptr_array_add(keys, g_strstrip(g_strndup(sets[i], (gsize) (eq - sets[i]))));
        g_ptr_array_add(values, g_strstrip(g_strdup(eq + 1)));
    }
    g_ptr_array_add(keys, NULL);
    g_ptr_array_add(values, NULL);
    g_autofree char *where = g_strdup_printf("lamina gradcheck %s --set", feature->desc->name);
    return lmn_registry_validate_params(feature, (const char *const *) keys->pdata,
                                        (const char *const *) values->pdata, where, error);
}

static gboolean builds(LmnRegistry *registry, LmnBackend *backend, const char *type,
                       const LmnParams *params, guint n, const LmnTensorInfo *inputs)
{
    LmnLayer *layer = lmn_layer_new(registry, type, type, 0, params, backend, n, inputs, NULL);
    if (layer == NULL) {
        return FALSE;
    }
    lmn_layer_free(layer);
    return TRUE;
}

/*
 * Inputs when none are given: [8] for each required input.  A loss's last input is its target;
 * following the gradcheck API's convention, a classification loss gets an i32 class label per
 * sample (its range taken from the logits' last dimension), any other loss an f32 target shaped
 * like the prediction.  Which one the loss accepts is asked of the layer itself, by building it.
 */
static GArray *default_inputs(LmnRegistry *registry, LmnBackend *backend, const char *type,
                              const LmnLayerVTable *vt, const LmnParams *params)
{
    GArray *in = g_array_new(FALSE, TRUE, sizeof(LmnTensorInfo));
    LmnTensorInfo x = {.shape = lmn_shape_make(1, (gint64) GRADCHECK_DEFAULT_WIDTH),
                       .dtype = LMN_DTYPE_F32};
    guint n = MAX(vt->min_inputs, 1);
    for (guint i = 0; i < n; i++) {
        g_array_append_val(in, x);
    }
    if ((vt->flags & LMN_LAYER_FLAG_LOSS) != 0 && n >= 2) {
        LmnTensorInfo *target = &g_array_index(in, LmnTensorInfo, n - 1);
        target->shape = lmn_shape_make(0);
        target->dtype = LMN_DTYPE_I32;
        if (!builds(registry, backend, type, params, n, (LmnTensorInfo *) in->data)) {
            *target = x;
        }
    }
    return in;
}

/* The command line of `lamina gradcheck`. */
typedef struct {
    GStrv plugin_dirs, sets, input_texts;
    char *backend_name, *device;
    gint64 batch, seed, num_classes, max_elements;
    double tolerance, step;
    gboolean eval_mode;
} GradcheckArgs;

static void gradcheck_args_clear(GradcheckArgs *a)
{
    g_strfreev(a->plugin_dirs);
    g_strfreev(a->sets);
    g_strfreev(a->input_texts);
    g_free(a->backend_name);
    g_free(a->device);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(GradcheckArgs, gradcheck_args_clear)

/* Parses the options into @a; Returns: 0, or the exit status 2 after a usage message. */
static int parse_args(GradcheckArgs *a, int *argc, char ***argv)
{
    GOptionEntry entries[] = {
        {"set", 's', 0, G_OPTION_ARG_STRING_ARRAY, &a->sets,
         "a hyperparameter of the layer (repeatable), e.g. --set units=16", "KEY=VALUE"},
        {"input", 'i', 0, G_OPTION_ARG_STRING_ARRAY, &a->input_texts,
         "per-sample shape of the next input (repeatable, in order; a loss's target last): 8, "
         "3,4,4, [] for a scalar, i32:[] for a class label (default: [8] per input)",
         "SHAPE"},
        {"batch", 'b', 0, G_OPTION_ARG_INT64, &a->batch,
         "batch size N (default 4; the C API's default is 3)", "N"},
        {"tolerance", 't', 0, G_OPTION_ARG_DOUBLE, &a->tolerance,
         "largest accepted relative error (default 1e-2)", "TOL"},
        {"seed", 0, 0, G_OPTION_ARG_INT64, &a->seed, "seed of the random inputs and parameters",
         "SEED"},
        {"step", 0, 0, G_OPTION_ARG_DOUBLE, &a->step, "finite-difference step (default 1e-2)", "H"},
        {"num-classes", 0, 0, G_OPTION_ARG_INT64, &a->num_classes,
         "range [0, K) of i32 inputs (default: input 0's last dimension)", "K"},
        {"max-elements", 0, 0, G_OPTION_ARG_INT64, &a->max_elements,
         "check at most this many elements per tensor (default: all)", "N"},
        {"eval", 0, 0, G_OPTION_ARG_NONE, &a->eval_mode,
         "run the layer in evaluation mode (dropout off, running statistics)", NULL},
        {"backend", 0, 0, G_OPTION_ARG_STRING, &a->backend_name, "backend (default: cpu)", "NAME"},
        {"device", 0, 0, G_OPTION_ARG_STRING, &a->device, "device for GPU backends", "DEV"},
        {"plugin-path", 'P', 0, G_OPTION_ARG_FILENAME_ARRAY, &a->plugin_dirs,
         "also load plugins from DIR (repeatable)", "DIR"},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("LAYER");
    g_option_context_set_summary(
        ctx, "Check a layer type's backward against central finite differences of its forward: "
             "every input and parameter gradient, worst relative error, PASS or FAIL.  Exit "
             "status 0 when every tensor passes, 1 otherwise.");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, argc, argv, &error)) {
        fprintf(stderr, "lamina gradcheck: %s (see lamina gradcheck --help)\n", error->message);
        return 2;
    }
    if (*argc != 2) {
        fprintf(stderr, "lamina gradcheck: expected one LAYER type (see lamina gradcheck "
                        "--help; lamina plugins lists the layers)\n");
        return 2;
    }
    if (a->batch < 1 || !(a->tolerance > 0.0) || !(a->step > 0.0) || a->num_classes < 0 ||
        a->max_elements < 0) {
        fprintf(stderr, "lamina gradcheck: --batch must be >= 1, --tolerance and --step > 0, "
                        "--num-classes and --max-elements >= 0\n");
        return 2;
    }
    return 0;
}

/* The per-sample inputs: the --input shapes in order, else default_inputs(). */
static GArray *layer_inputs(const GradcheckArgs *a, LmnRegistry *registry, LmnBackend *backend,
                            const char *type, const LmnFeature *feature, const LmnParams *params,
                            GError **error)
{
    if (a->input_texts == NULL || a->input_texts[0] == NULL)
        return default_inputs(registry, backend, type, feature->desc->vtable, params);
    g_autoptr(GArray) inputs = g_array_new(FALSE, TRUE, sizeof(LmnTensorInfo));
    for (guint i = 0; a->input_texts[i] != NULL; i++) {
        LmnTensorInfo info;
        if (!parse_input(a->input_texts[i], &info, error))
            return NULL;
        g_array_append_val(inputs, info);
    }
    return g_steal_pointer(&inputs);
}

/* The report: the set-up line, the per-element table, a line per tensor and the verdict.
 * Returns: whether every tensor passed. */
static gboolean print_report(const char *type, const LmnFeature *feature, LmnBackend *backend,
                             const GradcheckArgs *a, GArray *inputs, GPtrArray *results)
{
    GString *shapes = g_string_new(NULL);
    for (guint i = 0; i < inputs->len; i++) {
        const LmnTensorInfo *info = &g_array_index(inputs, LmnTensorInfo, i);
        g_autofree char *s = lmn_shape_to_string(&info->shape);
        g_string_append_printf(shapes, "%s%s %s", i > 0 ? ", " : "", lmn_dtype_name(info->dtype),
                               s);
    }
    printf("gradcheck %s (%s) on %s, batch %" G_GINT64_FORMAT ", per-sample inputs: %s\n", type,
           feature->path, lmn_backend_get_name(backend), a->batch, shapes->str);
    g_string_free(shapes, TRUE);
    g_autofree char *table = lmn_gradcheck_format(results);
    fputs(table, stdout);
    printf("\n");

    gboolean pass = TRUE;
    for (guint i = 0; i < results->len; i++) {
        const LmnGradcheckResult *r = g_ptr_array_index(results, i);
        /* NaN compares false: a non-finite error fails. */
        gboolean ok = r->max_rel_error <= a->tolerance;
        pass = pass && ok;
        printf("%-16s worst relative error %.3e  %s\n", r->name, r->max_rel_error,
               ok ? "PASS" : "FAIL");
    }
    if (results->len == 0) {
        printf("no f32 input or parameter to check: the layer has no gradient\n");
    }
    printf("%s: worst relative error %.3e, tolerance %.3e\n", pass ? "PASS" : "FAIL",
           lmn_gradcheck_max_rel_error(results), a->tolerance);
    return pass;
}

int lmn_cli_gradcheck(int argc, char **argv)
{
    g_auto(GradcheckArgs) a = {.batch = 4, .seed = 1, .tolerance = 1e-2, .step = 1e-2};
    int usage = parse_args(&a, &argc, &argv);
    if (usage != 0)
        return usage;
    const char *type = argv[1];

    g_autoptr(GError) error = NULL;
    g_autoptr(LmnRegistry) registry = lmn_cli_open_registry(a.plugin_dirs);
    const LmnFeature *feature = lmn_registry_lookup(registry, LMN_FEATURE_LAYER, type, &error);
    if (feature == NULL)
        return lmn_cli_fail("gradcheck", error);
    g_autoptr(LmnParams) params = parse_sets(feature, a.sets, &error);
    if (params == NULL)
        return lmn_cli_fail("gradcheck", error);
    g_autoptr(LmnBackend) backend = lmn_backend_new_for_config(
        registry, a.backend_name != NULL ? a.backend_name : "cpu", a.device, &error);
    if (backend == NULL)
        return lmn_cli_fail("gradcheck", error);
    g_autoptr(GArray) inputs = layer_inputs(&a, registry, backend, type, feature, params, &error);
    if (inputs == NULL)
        return lmn_cli_fail("gradcheck", error);

    LmnGradcheckOptions o;
    lmn_gradcheck_options_init(&o);
    o.batch = a.batch;
    o.seed = (guint64) a.seed;
    o.step = a.step;
    o.num_classes = a.num_classes;
    o.max_elements = a.max_elements;
    o.training = !a.eval_mode;
    g_autoptr(GPtrArray) results =
        lmn_gradcheck_layer(registry, backend, type, params, inputs->len,
                            (const LmnTensorInfo *) inputs->data, &o, &error);
    if (results == NULL)
        return lmn_cli_fail("gradcheck", error);
    return print_report(type, feature, backend, &a, inputs, results) ? 0 : 1;
}
