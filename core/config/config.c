/* Lamina — config files: parsing with GKeyFile, validation against core and plugin schemas. */
#include <lamina/config.h>

#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

struct _LmnConfig {
    char *name;
    GKeyFile *kf;
    gboolean validated;
    LmnShape input_shape;
    GPtrArray *layers; /* LmnLayerConfig * */
    char *opt_type;
    LmnParams *opt_params;
    char *sched_type;
    LmnParams *sched_params;
    LmnScheduleCommon sched_common;
    LmnTrainConfig train;
    LmnAugmentConfig augment; /* all zero without an [augment] group */
};

/* The core's own groups.  Their schemas are LmnParamSpec arrays like any plugin's, so the same
 * validation, messages and `describe` output apply. */
static const LmnParamSpec model_specs[] = {
    LMN_PARAM_SPEC_FLOAT_LIST("input", NULL, 1, 1e12, LMN_PARAM_FLAG_REQUIRED,
                              "per-sample input shape, e.g. \"1, 28, 28\""),
    LMN_PARAM_SPEC_END,
};

static const char *const monitor_values[] = {"val_loss", "val_accuracy", NULL};

static const LmnParamSpec train_specs[] = {
    LMN_PARAM_SPEC_INT("epochs", "10", 1, 1e9, 0, "passes over the training data"),
    LMN_PARAM_SPEC_INT("batch_size", "32", 1, 1 << 24, 0, "samples per optimizer step"),
    LMN_PARAM_SPEC_INT("seed", "1", 0, 9.2e18, 0,
                       "seed of every random stream (initialisation, shuffling, dropout)"),
    LMN_PARAM_SPEC_BOOL("shuffle", "true", "reshuffle the training data each epoch"),
    LMN_PARAM_SPEC_INT("max_steps", "0", 0, 9.2e18, 0,
                       "stop after this many optimizer steps; 0 = no limit"),
    LMN_PARAM_SPEC_STRING(
        "backend", "auto", 0,
        "compute backend: auto (a GPU if one works, else cpu), cpu, vulkan, or a plugin's"),
    LMN_PARAM_SPEC_STRING(
        "device", "", 0,
        "device index or name substring for GPU backends; empty = the backend's choice"),
    LMN_PARAM_SPEC_INT("checkpoint_every", "0", 0, 1e9, 0,
                       "write OUTPUT/epoch-N.h5 every this many epochs; 0 = only final.h5"),
    LMN_PARAM_SPEC_FLOAT("clip_norm", "0", 0, INFINITY, 0,
                         "rescale all gradients when their global L2 norm exceeds this, as "
                         "torch.nn.utils.clip_grad_norm_; 0 = off"),
    LMN_PARAM_SPEC_FLOAT("clip_value", "0", 0, INFINITY, 0,
                         "clamp every gradient element to [-clip_value, clip_value]; 0 = off"),
    LMN_PARAM_SPEC_FLOAT(
        "grad_noise", "0", 0, INFINITY, 0,
        "sigma_0 of Gaussian gradient noise N(0, sigma_t^2), sigma_t = sigma_0 / (1 + step)^gamma; "
        "0 = off"),
    LMN_PARAM_SPEC_FLOAT("grad_noise_gamma", "0.55", 0, INFINITY, 0,
                         "decay exponent gamma of the gradient noise"),
    LMN_PARAM_SPEC_FLOAT("l1", "0", 0, INFINITY, 0,
                         "L1 penalty l1 * sum |w| on weights (a [layer] group's l1 overrides it)"),
    LMN_PARAM_SPEC_FLOAT("l2", "0", 0, INFINITY, 0,
                         "L2 penalty l2/2 * sum w^2 on weights, gradient l2 * w (a [layer] group's "
                         "l2 overrides it)"),
    LMN_PARAM_SPEC_BOOL("penalize_bias", "false", "apply l1/l2 to biases too, not only to weights"),
    LMN_PARAM_SPEC_INT(
        "early_stopping_patience", "0", 0, 1e9, 0,
        "stop after this many epochs without improvement of the monitored metric; 0 = off"),
    LMN_PARAM_SPEC_FLOAT("early_stopping_min_delta", "0", 0, INFINITY, 0,
                         "smallest change of the monitored metric that counts as an improvement"),
    LMN_PARAM_SPEC_ENUM("monitor", "val_loss", monitor_values,
                        "validation metric for early stopping and OUTPUT/best.h5"),
    LMN_PARAM_SPEC_BOOL("restore_best", "true",
                        "when early stopping ends the run, final.h5 gets the best epoch's weights"),
    LMN_PARAM_SPEC_BOOL(
        "lsuv", "false",
        "layer-sequential unit-variance initialisation (Mishkin & Matas 2016) on one training "
        "batch before training: orthogonal weights rescaled until each layer's output variance is "
        "1"),
    LMN_PARAM_SPEC_FLOAT("lsuv_tol", "0.1", 0, INFINITY, LMN_PARAM_FLAG_MIN_EXCLUSIVE,
                         "LSUV stops rescaling a layer once |var(output) - 1| < lsuv_tol"),
    LMN_PARAM_SPEC_INT(
        "lsuv_max_iter", "10", 0, 1000, 0,
        "LSUV rescales each layer at most this many times (0 = orthogonal weights only)"),
    LMN_PARAM_SPEC_END,
};

/* Keys of a [layer NAME] group that belong to the core, not to the layer's plugin. */
static const LmnParamSpec layer_core_specs[] = {
    LMN_PARAM_SPEC_FLOAT("l1", "0", 0, INFINITY, 0,
                         "L1 penalty of this layer's weights (overrides [train] l1)"),
    LMN_PARAM_SPEC_FLOAT("l2", "0", 0, INFINITY, 0,
                         "L2 penalty of this layer's weights (overrides [train] l2)"),
    LMN_PARAM_SPEC_END,
};

static const LmnParamSpec data_specs[] = {
    LMN_PARAM_SPEC_STRING("train", NULL, LMN_PARAM_FLAG_REQUIRED, "training split, FILE:/split"),
    LMN_PARAM_SPEC_STRING("test", "", 0, "test split evaluated after training"),
    LMN_PARAM_SPEC_STRING("validation", "", 0,
                          "validation split evaluated each epoch (instead of validation_split)"),
    LMN_PARAM_SPEC_FLOAT("validation_split", "0", 0, 1, LMN_PARAM_FLAG_MAX_EXCLUSIVE,
                         "fraction of train held out for validation, chosen from the seed"),
    LMN_PARAM_SPEC_FLOAT(
        "memory_budget_mb", "0", 0, INFINITY, 0,
        "MiB of memory for the decoded training split; a larger split streams from its file. "
        "0 = $LAMINA_DATA_BUDGET, else 2048"),
    LMN_PARAM_SPEC_END,
};

static const char *const core_groups[] = {"model", "optimizer", "schedule", "train",
                                          "data",  "augment",   NULL};

static void layer_config_free(gpointer p)
{
    LmnLayerConfig *lc = p;
    g_free(lc->name);
    g_free(lc->type);
    g_strfreev(lc->inputs);
    if (lc->params)
        lmn_params_unref(lc->params);
    g_strfreev(lc->init_keys);
    g_strfreev(lc->init_values);
    g_free(lc->where);
    g_free(lc);
}

static void clear_validated(LmnConfig *cfg)
{
    g_ptr_array_set_size(cfg->layers, 0);
    g_clear_pointer(&cfg->opt_type, g_free);
    g_clear_pointer(&cfg->opt_params, lmn_params_unref);
    g_clear_pointer(&cfg->sched_type, g_free);
    g_clear_pointer(&cfg->sched_params, lmn_params_unref);
    g_clear_pointer(&cfg->train.backend, g_free);
    g_clear_pointer(&cfg->train.device, g_free);
    g_clear_pointer(&cfg->train.train_data, g_free);
    g_clear_pointer(&cfg->train.test_data, g_free);
    g_clear_pointer(&cfg->train.validation_data, g_free);
    memset(&cfg->augment, 0, sizeof cfg->augment);
    cfg->validated = FALSE;
}

static LmnConfig *config_new_take(GKeyFile *kf, const char *name)
{
    LmnConfig *cfg = g_new0(LmnConfig, 1);
    cfg->name = g_strdup(name);
    cfg->kf = kf;
    cfg->layers = g_ptr_array_new_with_free_func(layer_config_free);
    return cfg;
}

LmnConfig *lmn_config_new_from_file(const char *path, GError **error)
{
    g_return_val_if_fail(path != NULL, NULL);
    g_autofree char *text = NULL;
    gsize len = 0;
    g_autoptr(GError) local = NULL;
    if (!g_file_get_contents(path, &text, &len, &local)) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_PARSE,
                    "%s: cannot read the config: %s", path, local->message);
        return NULL;
    }
    return lmn_config_new_from_data(text, (gssize) len, path, error);
}

LmnConfig *lmn_config_new_from_data(const char *text, gssize length, const char *name,
                                    GError **error)
{
    g_return_val_if_fail(text != NULL, NULL);
    GKeyFile *kf = g_key_file_new();
    g_autoptr(GError) local = NULL;
    if (length < 0)
        length = (gssize) strlen(text);
    if (!g_key_file_load_from_data(kf, text, (gsize) length, G_KEY_FILE_KEEP_COMMENTS, &local)) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_PARSE,
                    "%s: not a valid config file: %s (groups are [name] lines, values are "
                    "key = value lines, comments stand on their own lines starting with #)",
                    name, local->message);
        g_key_file_free(kf);
        return NULL;
    }
    return config_new_take(kf, name);
}

void lmn_config_free(LmnConfig *cfg)
{
    if (!cfg)
        return;
    clear_validated(cfg);
    g_ptr_array_unref(cfg->layers);
    g_key_file_free(cfg->kf);
    g_free(cfg->name);
    g_free(cfg);
}

const char *lmn_config_get_name(const LmnConfig *cfg)
{
    return cfg->name;
}

/* Maps a user-facing group name ("optimizer", "fc1") to the key-file group. */
static char *resolve_group(LmnConfig *cfg, const char *group, GError **error)
{
    if (g_strv_contains(core_groups, group))
        return g_strdup(group);
    g_autofree char *layer_group = g_strdup_printf("layer %s", group);
    if (g_key_file_has_group(cfg->kf, layer_group))
        return g_steal_pointer(&layer_group);

    /* Unknown: suggest among core groups and layer names. */
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; core_groups[i]; i++)
        g_ptr_array_add(names, g_strdup(core_groups[i]));
    gsize n_groups = 0;
    g_auto(GStrv) groups = g_key_file_get_groups(cfg->kf, &n_groups);
    for (gsize i = 0; i < n_groups; i++)
        if (g_str_has_prefix(groups[i], "layer "))
            g_ptr_array_add(names, g_strdup(groups[i] + 6));
    g_ptr_array_add(names, NULL);
    const char *hint = lmn_suggest(group, (const char *const *) names->pdata);
    g_autofree char *known = g_strjoinv(", ", (char **) names->pdata);
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                "%s: no group or layer named '%s'%s%s%s; known: %s", cfg->name, group,
                hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "", known);
    return NULL;
}

gboolean lmn_config_set_value(LmnConfig *cfg, const char *group, const char *key,
                              const char *value, GError **error)
{
    g_return_val_if_fail(cfg && group && key && value, FALSE);
    g_autofree char *kgroup = resolve_group(cfg, group, error);
    if (!kgroup)
        return FALSE;
    g_key_file_set_value(cfg->kf, kgroup, key, value);
    clear_validated(cfg);
    return TRUE;
}

gboolean lmn_config_set(LmnConfig *cfg, const char *assignment, GError **error)
{
    g_return_val_if_fail(cfg && assignment, FALSE);
    const char *eq = strchr(assignment, '=');
    const char *dot = strchr(assignment, '.');
    if (!eq || !dot || dot > eq || dot == assignment || dot + 1 == eq) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "--set '%s': expected GROUP.KEY=VALUE, e.g. optimizer.lr=0.01 or "
                    "fc1.units=128",
                    assignment);
        return FALSE;
    }
    g_autofree char *group = g_strndup(assignment, (gsize) (dot - assignment));
    g_autofree char *key = g_strndup(dot + 1, (gsize) (eq - dot - 1));
    g_strstrip(group);
    g_strstrip(key);
    g_autofree char *value = g_strstrip(g_strdup(eq + 1));
    return lmn_config_set_value(cfg, group, key, value, error);
}

gboolean lmn_config_replace_optimizer(LmnConfig *cfg, LmnRegistry *registry, const char *name,
                                      GError **error)
{
    g_return_val_if_fail(cfg && registry && name, FALSE);
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_OPTIMIZER, name, error);
    if (!f)
        return FALSE;
    if (g_key_file_has_group(cfg->kf, "optimizer")) {
        g_auto(GStrv) keys = g_key_file_get_keys(cfg->kf, "optimizer", NULL, NULL);
        for (guint i = 0; keys && keys[i]; i++) {
            if (g_str_equal(keys[i], "type"))
                continue;
            if (!lmn_param_spec_find(f->desc->params, keys[i])) {
                g_printerr("notice: --optimizer %s: dropping optimizer.%s, which %s does not "
                           "take\n",
                           name, keys[i], name);
                g_key_file_remove_key(cfg->kf, "optimizer", keys[i], NULL);
            }
        }
    }
    g_key_file_set_value(cfg->kf, "optimizer", "type", name);
    clear_validated(cfg);
    return TRUE;
}

char *lmn_config_to_data(const LmnConfig *cfg)
{
    return g_key_file_to_data(cfg->kf, NULL, NULL);
}

/* Collects a group's keys and raw values, leaving out @skip keys. */
static void group_entries(GKeyFile *kf, const char *group, const char *const *skip,
                          GPtrArray *keys, GPtrArray *values)
{
    g_auto(GStrv) all = g_key_file_get_keys(kf, group, NULL, NULL);
    for (guint i = 0; all && all[i]; i++) {
        if (skip && g_strv_contains(skip, all[i]))
            continue;
        g_ptr_array_add(keys, g_strdup(all[i]));
        g_ptr_array_add(values, g_key_file_get_value(kf, group, all[i], NULL));
    }
    g_ptr_array_add(keys, NULL);
    g_ptr_array_add(values, NULL);
}

static LmnParams *validate_group(LmnConfig *cfg, const char *group, const LmnParamSpec *schema,
                                 const char *const *skip, GError **error)
{
    g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) values = g_ptr_array_new_with_free_func(g_free);
    group_entries(cfg->kf, group, skip, keys, values);
    g_autofree char *where = g_strdup_printf("%s [%s]", cfg->name, group);
    return lmn_params_new_from_strings(schema, (const char *const *) keys->pdata,
                                       (const char *const *) values->pdata, where, error);
}

static char *get_string_or_null(const LmnParams *p, const char *key)
{
    const char *s = lmn_params_get_string(p, key);
    return (s && *s) ? g_strdup(s) : NULL;
}

/* Checks that a config value names a feature; adds the place to the registry's message. */
static const LmnFeature *lookup_feature(LmnConfig *cfg, LmnRegistry *registry,
                                        LmnFeatureKind kind, const char *name, const char *group,
                                        GError **error)
{
    g_autoptr(GError) local = NULL;
    const LmnFeature *f = lmn_registry_lookup(registry, kind, name, &local);
    if (!f) {
        g_set_error(error, local->domain, local->code, "%s [%s] type: %s", cfg->name, group,
                    local->message);
        return NULL;
    }
    return f;
}

static gboolean is_init_key(const char *key)
{
    const char *p = strstr(key, "_init");
    while (p) {
        if (p != key && (p[5] == '\0' || p[5] == '.'))
            return TRUE;
        p = strstr(p + 1, "_init");
    }
    return FALSE;
}

static gboolean valid_layer_name(const char *name)
{
    if (!*name)
        return FALSE;
    for (const char *p = name; *p; p++)
        if (!g_ascii_isalnum(*p) && *p != '_' && *p != '-' && *p != '.')
            return FALSE;
    return TRUE;
}

static gboolean check_layer_name(LmnConfig *cfg, const char *name, const char *where,
                                 GError **error)
{
    if (!valid_layer_name(name) || g_str_equal(name, "input") || g_str_equal(name, "labels")) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s: '%s' is not a usable layer name (use letters, digits, '_', '-', '.'; "
                    "'input' and 'labels' are reserved for the data)",
                    where, name);
        return FALSE;
    }
    for (guint i = 0; i < cfg->layers->len; i++) {
        const LmnLayerConfig *o = g_ptr_array_index(cfg->layers, i);
        if (g_str_equal(o->name, name)) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                        "%s: a layer named '%s' is already defined", where, name);
            return FALSE;
        }
    }
    return TRUE;
}

/* The layer's type key, looked up in the registry. */
static const LmnFeature *layer_feature(LmnConfig *cfg, LmnRegistry *registry, const char *group,
                                       const char *where, char **type_out, GError **error)
{
    g_autofree char *type = g_key_file_get_value(cfg->kf, group, "type", NULL);
    if (!type || !*type) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_MISSING,
                    "%s: missing key 'type' (the layer type, e.g. dense; `lamina plugins` lists "
                    "them)",
                    where);
        return NULL;
    }
    g_strstrip(type);
    const LmnFeature *f = lookup_feature(cfg, registry, LMN_FEATURE_LAYER, type, group, error);
    if (f)
        *type_out = g_steal_pointer(&type);
    return f;
}

/* Inputs: the explicit list, else the previous layer (or the data for the first layer); a loss
 * takes the labels as its last input unless told otherwise. */
static gboolean layer_inputs(LmnConfig *cfg, LmnLayerConfig *lc, const char *group,
                             const LmnLayerVTable *vt, const char *prev_name, GError **error)
{
    gboolean is_loss = (vt->flags & LMN_LAYER_FLAG_LOSS) != 0;
    g_autofree char *input_text = g_key_file_get_value(cfg->kf, group, "input", NULL);
    g_autoptr(GStrvBuilder) b = g_strv_builder_new();
    if (!input_text) {
        g_strv_builder_add(b, prev_name ? prev_name : "input");
        if (is_loss)
            g_strv_builder_add(b, "labels");
        lc->inputs = g_strv_builder_end(b);
        return TRUE;
    }
    g_auto(GStrv) parts = g_strsplit(input_text, ",", -1);
    for (guint i = 0; parts[i]; i++) {
        g_strstrip(parts[i]);
        if (!*parts[i]) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                        "%s input: empty name in '%s' (expected comma-separated layer names)",
                        lc->where, input_text);
            return FALSE;
        }
        g_strv_builder_add(b, parts[i]);
    }
    if (is_loss && g_strv_length(parts) == vt->min_inputs - 1)
        g_strv_builder_add(b, "labels");
    lc->inputs = g_strv_builder_end(b);
    return TRUE;
}

/* Inputs must name the data or an earlier layer: this keeps the graph acyclic. */
static gboolean check_layer_inputs(LmnConfig *cfg, const LmnLayerConfig *lc, GError **error)
{
    for (guint i = 0; lc->inputs[i]; i++) {
        const char *in = lc->inputs[i];
        if (g_str_equal(in, "input") || g_str_equal(in, "labels"))
            continue;
        gboolean found = FALSE;
        for (guint j = 0; j + 1 < cfg->layers->len && !found; j++)
            found = g_str_equal(((LmnLayerConfig *) g_ptr_array_index(cfg->layers, j))->name, in);
        if (found)
            continue;
        g_auto(GStrv) groups = g_key_file_get_groups(cfg->kf, NULL);
        g_autofree char *want = g_strdup_printf("layer %s", in);
        gboolean later = g_strv_contains((const char *const *) groups, want);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "%s input: '%s' %s (a layer's inputs must be 'input', 'labels' or layers "
                    "defined above it)",
                    lc->where, in, later ? "is defined below this layer" : "is not a layer");
        return FALSE;
    }
    return TRUE;
}

/* A layer group's keys other than type and input, sorted by who validates them. */
typedef struct {
    GPtrArray *keys, *values;              /* the plugin's schema; NULL-terminated */
    GPtrArray *core_keys, *core_values;    /* layer_core_specs (l1, l2); NULL-terminated */
    GStrvBuilder *init_keys, *init_values; /* the parameters' initializers */
} LayerKeys;

static void layer_keys_clear(LayerKeys *k)
{
    g_ptr_array_unref(k->keys);
    g_ptr_array_unref(k->values);
    g_ptr_array_unref(k->core_keys);
    g_ptr_array_unref(k->core_values);
    g_strv_builder_unref(k->init_keys);
    g_strv_builder_unref(k->init_values);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(LayerKeys, layer_keys_clear)

static void split_layer_keys(LmnConfig *cfg, const char *group, LayerKeys *k)
{
    k->keys = g_ptr_array_new_with_free_func(g_free);
    k->values = g_ptr_array_new_with_free_func(g_free);
    k->core_keys = g_ptr_array_new_with_free_func(g_free);
    k->core_values = g_ptr_array_new_with_free_func(g_free);
    k->init_keys = g_strv_builder_new();
    k->init_values = g_strv_builder_new();
    g_auto(GStrv) all = g_key_file_get_keys(cfg->kf, group, NULL, NULL);
    for (guint i = 0; all && all[i]; i++) {
        if (g_str_equal(all[i], "type") || g_str_equal(all[i], "input"))
            continue;
        if (lmn_param_spec_find(layer_core_specs, all[i])) {
            g_ptr_array_add(k->core_keys, g_strdup(all[i]));
            g_ptr_array_add(k->core_values, g_key_file_get_value(cfg->kf, group, all[i], NULL));
            continue;
        }
        g_autofree char *v = g_key_file_get_value(cfg->kf, group, all[i], NULL);
        g_strstrip(v);
        if (is_init_key(all[i])) {
            g_strv_builder_add(k->init_keys, all[i]);
            g_strv_builder_add(k->init_values, v);
        } else {
            g_ptr_array_add(k->keys, g_strdup(all[i]));
            g_ptr_array_add(k->values, g_steal_pointer(&v));
        }
    }
    g_ptr_array_add(k->keys, NULL);
    g_ptr_array_add(k->values, NULL);
    g_ptr_array_add(k->core_keys, NULL);
    g_ptr_array_add(k->core_values, NULL);
}

/* Initializer keys go to the layer's parameters' initializers, l1/l2 to the core's schema, the
 * rest to the plugin's. */
static gboolean validate_layer_keys(LmnConfig *cfg, const LmnFeature *f, LmnLayerConfig *lc,
                                    const char *group, GError **error)
{
    g_auto(LayerKeys) k = {0};
    split_layer_keys(cfg, group, &k);
    lc->init_keys = g_strv_builder_end(k.init_keys);
    lc->init_values = g_strv_builder_end(k.init_values);
    /* Penalty overrides: NAN until [train] supplies the defaults for the keys not given. */
    lc->l1 = lc->l2 = NAN;
    g_autoptr(LmnParams) core =
        lmn_params_new_from_strings(layer_core_specs, (const char *const *) k.core_keys->pdata,
                                    (const char *const *) k.core_values->pdata, lc->where, error);
    if (!core)
        return FALSE;
    for (guint i = 0; i + 1 < k.core_keys->len; i++) {
        const char *key = g_ptr_array_index(k.core_keys, i);
        if (g_str_equal(key, "l1"))
            lc->l1 = lmn_params_get_float(core, "l1");
        else
            lc->l2 = lmn_params_get_float(core, "l2");
    }
    lc->params =
        lmn_registry_validate_params(f, (const char *const *) k.keys->pdata,
                                     (const char *const *) k.values->pdata, lc->where, error);
    return lc->params != NULL;
}

static gboolean validate_layer(LmnConfig *cfg, LmnRegistry *registry, const char *group,
                               const char *prev_name, GError **error)
{
    const char *name = group + strlen("layer ");
    g_autofree char *where = g_strdup_printf("%s [%s]", cfg->name, group);
    if (!check_layer_name(cfg, name, where, error))
        return FALSE;
    g_autofree char *type = NULL;
    const LmnFeature *f = layer_feature(cfg, registry, group, where, &type, error);
    if (!f)
        return FALSE;

    LmnLayerConfig *lc = g_new0(LmnLayerConfig, 1);
    lc->name = g_strdup(name);
    lc->type = g_steal_pointer(&type);
    lc->where = g_steal_pointer(&where);
    g_ptr_array_add(cfg->layers, lc);
    return layer_inputs(cfg, lc, group, f->desc->vtable, prev_name, error) &&
           check_layer_inputs(cfg, lc, error) && validate_layer_keys(cfg, f, lc, group, error);
}

/* Every group is one the core knows: [model], [layer NAME], [optimizer], ... */
static gboolean check_groups(LmnConfig *cfg, const GStrv groups, gsize n_groups, GError **error)
{
    for (gsize i = 0; i < n_groups; i++) {
        if (g_strv_contains(core_groups, groups[i]) || g_str_has_prefix(groups[i], "layer "))
            continue;
        static const char *const candidates[] = {"model", "optimizer", "schedule", "train",
                                                 "data",  "augment",   "layer",    NULL};
        const char *hint = lmn_suggest(groups[i], candidates);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY,
                    "%s: unknown group [%s]%s%s%s; known groups: [model], [layer NAME], "
                    "[optimizer], [schedule], [train], [data], [augment]",
                    cfg->name, groups[i], hint ? " (did you mean [" : "", hint ? hint : "",
                    hint ? "]?)" : "");
        return FALSE;
    }
    return TRUE;
}

/* [model]: the per-sample input shape. */
static gboolean validate_model(LmnConfig *cfg, GError **error)
{
    if (!g_key_file_has_group(cfg->kf, "model")) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_MISSING,
                    "%s: missing group [model] (it gives the per-sample input shape, e.g. "
                    "input = 1, 28, 28)",
                    cfg->name);
        return FALSE;
    }
    g_autoptr(LmnParams) model = validate_group(cfg, "model", model_specs, NULL, error);
    if (!model)
        return FALSE;
    gsize n_dims = 0;
    const double *dims = lmn_params_get_float_list(model, "input", &n_dims);
    if (n_dims == 0 || n_dims >= LMN_MAX_DIMS) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s [model] input: %zu dimensions given, expected 1 to %d (the batch "
                    "dimension is not part of it)",
                    cfg->name, n_dims, LMN_MAX_DIMS - 1);
        return FALSE;
    }
    cfg->input_shape.ndim = (guint) n_dims;
    for (gsize i = 0; i < n_dims; i++) {
        if (dims[i] != floor(dims[i])) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                        "%s [model] input: dimension %g is not a whole number", cfg->name,
                        dims[i]);
            return FALSE;
        }
        cfg->input_shape.dims[i] = (gint64) dims[i];
    }
    return TRUE;
}

/* The [layer NAME] groups in file order, each fed by the one before unless it says otherwise. */
static gboolean validate_layers(LmnConfig *cfg, LmnRegistry *registry, const GStrv groups,
                                gsize n_groups, GError **error)
{
    const char *prev = NULL;
    for (gsize i = 0; i < n_groups; i++) {
        if (!g_str_has_prefix(groups[i], "layer "))
            continue;
        if (!validate_layer(cfg, registry, groups[i], prev, error))
            return FALSE;
        prev = ((LmnLayerConfig *) g_ptr_array_index(cfg->layers, cfg->layers->len - 1))->name;
    }
    if (cfg->layers->len == 0) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_MISSING,
                    "%s: no [layer NAME] groups: a model needs layers ending in a loss", cfg->name);
        return FALSE;
    }
    return TRUE;
}

/* [optimizer]: required; its keys against the plugin's schema and its validate(). */
static gboolean validate_optimizer(LmnConfig *cfg, LmnRegistry *registry, GError **error)
{
    if (!g_key_file_has_group(cfg->kf, "optimizer")) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_MISSING,
                    "%s: missing group [optimizer] (e.g. type = sgd and lr = 0.01)", cfg->name);
        return FALSE;
    }
    g_autofree char *type = g_key_file_get_value(cfg->kf, "optimizer", "type", NULL);
    if (!type) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_MISSING,
                    "%s [optimizer]: missing key 'type' (`lamina plugins` lists the "
                    "optimizers)",
                    cfg->name);
        return FALSE;
    }
    g_strstrip(type);
    const LmnFeature *f =
        lookup_feature(cfg, registry, LMN_FEATURE_OPTIMIZER, type, "optimizer", error);
    if (!f)
        return FALSE;
    static const char *const skip[] = {"type", NULL};
    g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) values = g_ptr_array_new_with_free_func(g_free);
    group_entries(cfg->kf, "optimizer", skip, keys, values);
    g_autofree char *where = g_strdup_printf("%s [optimizer]", cfg->name);
    cfg->opt_params = lmn_registry_validate_params(
        f, (const char *const *) keys->pdata, (const char *const *) values->pdata, where, error);
    if (!cfg->opt_params)
        return FALSE;
    const LmnOptimizerVTable *ovt = f->desc->vtable;
    g_autoptr(GError) local = NULL;
    if (LMN_VTABLE_HAS(ovt, validate) && !ovt->validate(cfg->opt_params, &local)) {
        g_set_error(error, local->domain, local->code, "%s: %s", where, local->message);
        return FALSE;
    }
    cfg->opt_type = g_steal_pointer(&type);
    return TRUE;
}

/* [schedule]: optional, constant by default; the common keys (unit, warm-up) are validated by
 * the core, the rest by the plugin's schema. */
static gboolean validate_schedule(LmnConfig *cfg, LmnRegistry *registry, GError **error)
{
    gboolean has_group = g_key_file_has_group(cfg->kf, "schedule");
    g_autofree char *type =
        has_group ? g_key_file_get_value(cfg->kf, "schedule", "type", NULL) : NULL;
    if (type)
        g_strstrip(type);
    else
        type = g_strdup("constant");
    const LmnFeature *f =
        lookup_feature(cfg, registry, LMN_FEATURE_SCHEDULE, type, "schedule", error);
    if (!f)
        return FALSE;
    const LmnParamSpec *common = lmn_schedule_common_specs();
    g_autoptr(GPtrArray) pk = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) pv = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) ck = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) cv = g_ptr_array_new_with_free_func(g_free);
    g_auto(GStrv) all = has_group ? g_key_file_get_keys(cfg->kf, "schedule", NULL, NULL) : NULL;
    for (guint i = 0; all && all[i]; i++) {
        if (g_str_equal(all[i], "type"))
            continue;
        gboolean is_common = lmn_param_spec_find(common, all[i]) != NULL;
        g_ptr_array_add(is_common ? ck : pk, g_strdup(all[i]));
        g_ptr_array_add(is_common ? cv : pv,
                        g_key_file_get_value(cfg->kf, "schedule", all[i], NULL));
    }
    g_ptr_array_add(pk, NULL);
    g_ptr_array_add(pv, NULL);
    g_ptr_array_add(ck, NULL);
    g_ptr_array_add(cv, NULL);
    g_autofree char *where = g_strdup_printf("%s [schedule]", cfg->name);
    g_autoptr(LmnParams) cp = lmn_params_new_from_strings(
        common, (const char *const *) ck->pdata, (const char *const *) cv->pdata, where, error);
    if (!cp)
        return FALSE;
    cfg->sched_params = lmn_registry_validate_params(f, (const char *const *) pk->pdata,
                                                     (const char *const *) pv->pdata, where, error);
    if (!cfg->sched_params)
        return FALSE;
    lmn_schedule_common_from_params(cp, &cfg->sched_common);
    cfg->sched_type = g_steal_pointer(&type);
    return TRUE;
}

/* Copies the validated [train] and [data] values into cfg->train. */
static void read_train_config(LmnTrainConfig *t, const LmnParams *tp, const LmnParams *dp)
{
    t->epochs = lmn_params_get_int(tp, "epochs");
    t->batch_size = lmn_params_get_int(tp, "batch_size");
    t->seed = (guint64) lmn_params_get_int(tp, "seed");
    t->shuffle = lmn_params_get_bool(tp, "shuffle");
    t->max_steps = lmn_params_get_int(tp, "max_steps");
    t->backend = g_strdup(lmn_params_get_string(tp, "backend"));
    t->device = get_string_or_null(tp, "device");
    t->checkpoint_every = lmn_params_get_int(tp, "checkpoint_every");
    t->train_data = g_strdup(lmn_params_get_string(dp, "train"));
    t->test_data = get_string_or_null(dp, "test");
    t->validation_data = get_string_or_null(dp, "validation");
    t->validation_split = lmn_params_get_float(dp, "validation_split");
    t->clip_norm = lmn_params_get_float(tp, "clip_norm");
    t->clip_value = lmn_params_get_float(tp, "clip_value");
    t->grad_noise = lmn_params_get_float(tp, "grad_noise");
    t->grad_noise_gamma = lmn_params_get_float(tp, "grad_noise_gamma");
    t->l1 = lmn_params_get_float(tp, "l1");
    t->l2 = lmn_params_get_float(tp, "l2");
    t->penalize_bias = lmn_params_get_bool(tp, "penalize_bias");
    t->early_stopping_patience = lmn_params_get_int(tp, "early_stopping_patience");
    t->early_stopping_min_delta = lmn_params_get_float(tp, "early_stopping_min_delta");
    t->monitor = g_str_equal(lmn_params_get_string(tp, "monitor"), "val_accuracy")
                     ? LMN_MONITOR_VAL_ACCURACY
                     : LMN_MONITOR_VAL_LOSS;
    t->restore_best = lmn_params_get_bool(tp, "restore_best");
    t->memory_budget_mb = lmn_params_get_float(dp, "memory_budget_mb");
    t->lsuv = lmn_params_get_bool(tp, "lsuv");
    t->lsuv_tol = lmn_params_get_float(tp, "lsuv_tol");
    t->lsuv_max_iter = lmn_params_get_int(tp, "lsuv_max_iter");
}

/* [train] and [data] (required), the checks between them, and the layers' penalty defaults. */
static gboolean validate_train_data(LmnConfig *cfg, GError **error)
{
    g_autoptr(LmnParams) tp = validate_group(cfg, "train", train_specs, NULL, error);
    if (!tp)
        return FALSE;
    if (!g_key_file_has_group(cfg->kf, "data")) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_MISSING,
                    "%s: missing group [data] (e.g. train = fashion-mnist.h5:/train)", cfg->name);
        return FALSE;
    }
    g_autoptr(LmnParams) dp = validate_group(cfg, "data", data_specs, NULL, error);
    if (!dp)
        return FALSE;
    LmnTrainConfig *t = &cfg->train;
    read_train_config(t, tp, dp);
    if (t->validation_data && t->validation_split > 0) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s [data]: both validation and validation_split are set; use one", cfg->name);
        return FALSE;
    }
    if (t->early_stopping_patience > 0 && !t->validation_data && t->validation_split <= 0) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s [train] early_stopping_patience: early stopping watches a validation "
                    "metric, but there is no validation data; set [data] validation = "
                    "FILE:/split or validation_split = 0.1",
                    cfg->name);
        return FALSE;
    }
    for (guint i = 0; i < cfg->layers->len; i++) {
        LmnLayerConfig *lc = g_ptr_array_index(cfg->layers, i);
        if (isnan(lc->l1))
            lc->l1 = t->l1;
        if (isnan(lc->l2))
            lc->l2 = t->l2;
    }
    return TRUE;
}

/* [augment]: optional; its absence leaves every transform off.  Whether the transforms fit the
 * samples' shape is checked when the data is opened (lmn_batch_reader_new). */
static gboolean validate_augment(LmnConfig *cfg, GError **error)
{
    g_autoptr(LmnParams) ap = validate_group(cfg, "augment", lmn_augment_specs(), NULL, error);
    if (!ap)
        return FALSE;
    lmn_augment_config_from_params(ap, &cfg->augment);
    return TRUE;
}

gboolean lmn_config_validate(LmnConfig *cfg, LmnRegistry *registry, GError **error)
{
    g_return_val_if_fail(cfg && registry, FALSE);
    clear_validated(cfg);
    gsize n_groups = 0;
    g_auto(GStrv) groups = g_key_file_get_groups(cfg->kf, &n_groups);
    if (check_groups(cfg, groups, n_groups, error) && validate_model(cfg, error) &&
        validate_layers(cfg, registry, groups, n_groups, error) &&
        validate_optimizer(cfg, registry, error) && validate_schedule(cfg, registry, error) &&
        validate_train_data(cfg, error) && validate_augment(cfg, error)) {
        cfg->validated = TRUE;
        return TRUE;
    }
    clear_validated(cfg);
    return FALSE;
}

#define CHECK_VALIDATED(cfg, val) g_return_val_if_fail((cfg)->validated, val)

const LmnShape *lmn_config_get_input_shape(const LmnConfig *cfg)
{
    CHECK_VALIDATED(cfg, NULL);
    return &cfg->input_shape;
}

guint lmn_config_get_n_layers(const LmnConfig *cfg)
{
    CHECK_VALIDATED(cfg, 0);
    return cfg->layers->len;
}

const LmnLayerConfig *lmn_config_get_layer(const LmnConfig *cfg, guint index)
{
    CHECK_VALIDATED(cfg, NULL);
    g_return_val_if_fail(index < cfg->layers->len, NULL);
    return g_ptr_array_index(cfg->layers, index);
}

const char *lmn_config_get_optimizer_type(const LmnConfig *cfg)
{
    CHECK_VALIDATED(cfg, NULL);
    return cfg->opt_type;
}

const LmnParams *lmn_config_get_optimizer_params(const LmnConfig *cfg)
{
    CHECK_VALIDATED(cfg, NULL);
    return cfg->opt_params;
}

const char *lmn_config_get_schedule_type(const LmnConfig *cfg)
{
    CHECK_VALIDATED(cfg, NULL);
    return cfg->sched_type;
}

const LmnParams *lmn_config_get_schedule_params(const LmnConfig *cfg)
{
    CHECK_VALIDATED(cfg, NULL);
    return cfg->sched_params;
}

const LmnScheduleCommon *lmn_config_get_schedule_common(const LmnConfig *cfg)
{
    CHECK_VALIDATED(cfg, NULL);
    return &cfg->sched_common;
}

const LmnTrainConfig *lmn_config_get_train(const LmnConfig *cfg)
{
    CHECK_VALIDATED(cfg, NULL);
    return &cfg->train;
}

const LmnAugmentConfig *lmn_config_get_augment(const LmnConfig *cfg)
{
    CHECK_VALIDATED(cfg, NULL);
    return &cfg->augment;
}
