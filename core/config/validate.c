/* Lamina — config validation: every group against the core's or a plugin's schema, the layer
 * graph's names and inputs, and the checks between groups. */
#include "config-private.h"

#include <math.h>
#include <string.h>

/* The core's own groups.  Their schemas are LmnParamSpec arrays like any plugin's, so the same
 * validation, messages and `describe` output apply. */
static const LmnParamSpec model_specs[] = {
    LMN_PARAM_SPEC_FLOAT_LIST("input", NULL, 1, 1e12, LMN_PARAM_FLAG_REQUIRED,
                              "per-sample input shape, e.g. \"1, 28, 28\""),
    LMN_PARAM_SPEC_END,
};

static const char *const monitor_values[] = {"val_loss", "val_accuracy", NULL};
static const char *const adversarial_values[] = {"none", "fgsm", "pgd", NULL};

static const LmnParamSpec train_specs[] = {
    LMN_PARAM_SPEC_INT("epochs", "10", 1, 1e9, 0, "passes over the training data"),
    LMN_PARAM_SPEC_INT("batch_size", "32", 1, 1 << 24, 0, "samples per optimizer step"),
    LMN_PARAM_SPEC_INT("seed", "1", 0, 9.2e18, 0,
                       "seed of every random stream (initialisation, shuffling, dropout)"),
    LMN_PARAM_SPEC_BOOL("shuffle", "true", "reshuffle the training data each epoch"),
    LMN_PARAM_SPEC_INT("max_steps", "0", 0, 9.2e18, 0,
                       "stop after this many optimizer steps; 0 = no limit"),
    LMN_PARAM_SPEC_FLOAT("bucket_mib", "25", 0.001, 4096, 0,
                         "several processes: gradients are summed in buckets of this many MiB, "
                         "each started as soon as backward has written it"),
    LMN_PARAM_SPEC_FLOAT("comm_timeout", "300", 0.01, 1e7, 0,
                         "several processes: seconds a rank waits for another before the run "
                         "stops with an error naming it"),
    LMN_PARAM_SPEC_STRING(
        "backend", "auto", 0,
        "compute backend: auto (a GPU if one works, else cpu), cpu, vulkan, or a plugin's"),
    LMN_PARAM_SPEC_INT("threads", "0", 0, 1024, 0,
                       "threads of the cpu backend for every op, GEMM included; 0 = "
                       "LAMINA_NUM_THREADS, else one per core the process may run on"),
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
    LMN_PARAM_SPEC_ENUM("adversarial", "none", adversarial_values,
                        "adversarial training: each step also trains on the batch attacked with "
                        "fgsm or pgd (as `lamina attack`) from the current weights"),
    LMN_PARAM_SPEC_FLOAT("adversarial_eps", "0", 0, INFINITY, 0,
                         "the attack's L-infinity budget, in the units the model sees (after "
                         "scale, mean and std); required (> 0) with adversarial"),
    LMN_PARAM_SPEC_INT("adversarial_steps", "10", 1, 1000, 0, "pgd's number of steps"),
    LMN_PARAM_SPEC_FLOAT("adversarial_alpha", "0", 0, INFINITY, 0,
                         "pgd's step size; 0 = 2.5 * adversarial_eps / adversarial_steps"),
    LMN_PARAM_SPEC_FLOAT_LIST("adversarial_clip", "", 1, 0, 0,
                              "MIN, MAX: the valid input range the attacked batch is clipped to "
                              "(e.g. 0, 1 for images with scale 1/255); empty = no clipping"),
    LMN_PARAM_SPEC_FLOAT("adversarial_weight", "0.5", 0, 1, 0,
                         "w of the training loss w * J(x) + (1 - w) * J(x_adversarial)"),
    LMN_PARAM_SPEC_BOOL("adversarial_random_start", "false",
                        "pgd starts from a uniform random point of the eps-ball"),
    LMN_PARAM_SPEC_FLOAT("weight_noise", "0", 0, INFINITY, 0,
                         "standard deviation of Gaussian noise added to the trainable parameters "
                         "for each step's forward and backward passes only (Graves 2011); 0 = off"),
    LMN_PARAM_SPEC_INT("top_k", "0", 0, 1e9, 0,
                       "also report the top-K accuracy of the validation and test splits "
                       "(classification); 0 = off"),
    LMN_PARAM_SPEC_FLOAT("ema_decay", "0", 0, 1, LMN_PARAM_FLAG_MAX_EXCLUSIVE,
                         "keep an exponential moving average of the parameters, ema = d * ema + "
                         "(1 - d) * params after each step, saved as /ema and evaluated too; "
                         "0 = off"),
    LMN_PARAM_SPEC_END,
};

/* Keys of a [layer NAME] group that belong to the core, not to the layer's plugin. */
static const LmnParamSpec layer_core_specs[] = {
    LMN_PARAM_SPEC_FLOAT("l1", "0", 0, INFINITY, 0,
                         "L1 penalty of this layer's weights (overrides [train] l1)"),
    LMN_PARAM_SPEC_FLOAT("l2", "0", 0, INFINITY, 0,
                         "L2 penalty of this layer's weights (overrides [train] l2)"),
    LMN_PARAM_SPEC_BOOL("trainable", "true",
                        "false freezes this layer's parameters: the optimizer leaves them and "
                        "their state as they are, and no gradient is computed for them"),
    LMN_PARAM_SPEC_FLOAT("lr_mult", "1", 0, INFINITY, 0,
                         "this layer's parameters learn at lr_mult times the scheduled learning "
                         "rate (a PyTorch parameter group); 0 leaves them as they are"),
    LMN_PARAM_SPEC_FLOAT("weight", "1", 0, INFINITY, 0,
                         "loss layers only: the model's loss is the sum of weight * loss over its "
                         "losses, and backward starts this loss with weight"),
    LMN_PARAM_SPEC_STRING("target", "y", 0,
                          "loss layers only: the dataset of the split's HDF5 group this loss "
                          "compares against (its implicit last input); y by default"),
    LMN_PARAM_SPEC_FLOAT("max_norm", "0", 0, INFINITY, 0,
                         "after every step, rescale each output unit's incoming weight vector "
                         "to L2 norm <= max_norm (torch.renorm, Keras' MaxNorm); 0 = off"),
    LMN_PARAM_SPEC_FLOAT("activity_l1", "0", 0, INFINITY, 0,
                         "add activity_l1 * sum |output| / batch size to the training loss"),
    LMN_PARAM_SPEC_FLOAT("activity_l2", "0", 0, INFINITY, 0,
                         "add activity_l2 * sum output^2 / batch size to the training loss"),
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

/* A group's keys, raw values and each key's place for messages, NULL-terminated. */
typedef struct {
    GPtrArray *keys, *values, *wheres;
} Entries;

static void entries_init(Entries *e)
{
    e->keys = g_ptr_array_new_with_free_func(g_free);
    e->values = g_ptr_array_new_with_free_func(g_free);
    e->wheres = g_ptr_array_new_with_free_func(g_free);
}

static void entries_clear(Entries *e)
{
    g_clear_pointer(&e->keys, g_ptr_array_unref);
    g_clear_pointer(&e->values, g_ptr_array_unref);
    g_clear_pointer(&e->wheres, g_ptr_array_unref);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Entries, entries_clear)

static void entries_add(Entries *e, const LmnConfig *cfg, const char *group, const char *key,
                        char *value)
{
    g_ptr_array_add(e->keys, g_strdup(key));
    g_ptr_array_add(e->values, value);
    g_ptr_array_add(e->wheres, lmn_config_dup_where(cfg, group, key));
}

static void entries_end(Entries *e)
{
    g_ptr_array_add(e->keys, NULL);
    g_ptr_array_add(e->values, NULL);
    g_ptr_array_add(e->wheres, NULL);
}

#define ENTRIES_ARGS(e)                                                                            \
    (const char *const *) (e).keys->pdata, (const char *const *) (e).values->pdata,                \
        (const char *const *) (e).wheres->pdata

/* Collects a group's keys and raw values, leaving out @skip keys. */
static void group_entries(const LmnConfig *cfg, const char *group, const char *const *skip,
                          Entries *e)
{
    entries_init(e);
    g_auto(GStrv) all = g_key_file_get_keys(cfg->kf, group, NULL, NULL);
    for (guint i = 0; all && all[i]; i++) {
        if (skip && g_strv_contains(skip, all[i]))
            continue;
        entries_add(e, cfg, group, all[i], g_key_file_get_value(cfg->kf, group, all[i], NULL));
    }
    entries_end(e);
}

static LmnParams *validate_group(LmnConfig *cfg, const char *group, const LmnParamSpec *schema,
                                 const char *const *skip, GError **error)
{
    g_auto(Entries) e = {0};
    group_entries(cfg, group, skip, &e);
    g_autofree char *where = lmn_config_dup_where(cfg, group, NULL);
    return lmn_params_new_from_strings_at(schema, ENTRIES_ARGS(e), where, error);
}

static char *get_string_or_null(const LmnParams *p, const char *key)
{
    const char *s = lmn_params_get_string(p, key);
    return (s && *s) ? g_strdup(s) : NULL;
}

/* Checks that a config value names a feature; adds the place to the registry's message. */
static const LmnFeature *lookup_feature(LmnConfig *cfg, LmnRegistry *registry, LmnFeatureKind kind,
                                        const char *name, const char *group, GError **error)
{
    g_autoptr(GError) local = NULL;
    const LmnFeature *f = lmn_registry_lookup(registry, kind, name, &local);
    if (!f) {
        g_autofree char *where = lmn_config_dup_where(cfg, group, "type");
        g_set_error(error, local->domain, local->code, "%s type: %s", where, local->message);
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
                             const LmnLayerVTable *vt, const char *prev_name,
                             gboolean *implicit_out, GError **error)
{
    gboolean is_loss = (vt->flags & LMN_LAYER_FLAG_LOSS) != 0;
    *implicit_out = FALSE;
    g_autofree char *input_text = g_key_file_get_value(cfg->kf, group, "input", NULL);
    g_autoptr(GStrvBuilder) b = g_strv_builder_new();
    if (!input_text) {
        g_strv_builder_add(b, prev_name ? prev_name : "input");
        if (is_loss)
            g_strv_builder_add(b, "labels");
        *implicit_out = is_loss;
        lc->inputs = g_strv_builder_end(b);
        return TRUE;
    }
    g_auto(GStrv) parts = g_strsplit(input_text, ",", -1);
    for (guint i = 0; parts[i]; i++) {
        g_strstrip(parts[i]);
        if (!*parts[i]) {
            g_autofree char *where = lmn_config_dup_where(cfg, group, "input");
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                        "%s input: empty name in '%s' (expected comma-separated layer names)",
                        where, input_text);
            return FALSE;
        }
        g_strv_builder_add(b, parts[i]);
    }
    if (is_loss && g_strv_length(parts) == vt->min_inputs - 1) {
        g_strv_builder_add(b, "labels");
        *implicit_out = TRUE;
    }
    lc->inputs = g_strv_builder_end(b);
    return TRUE;
}

/* Inputs must name the data or an earlier layer: this keeps the graph acyclic. */
static gboolean check_layer_inputs(LmnConfig *cfg, const LmnLayerConfig *lc, const char *group,
                                   GError **error)
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
        g_autofree char *where = lmn_config_dup_where(cfg, group, "input");
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "%s input: '%s' %s (a layer's inputs must be 'input', 'labels' or layers "
                    "defined above it)",
                    where, in, later ? "is defined below this layer" : "is not a layer");
        return FALSE;
    }
    return TRUE;
}

/* A layer group's keys other than type and input, sorted by who validates them. */
typedef struct {
    Entries plugin;                        /* the plugin's schema */
    Entries core;                          /* layer_core_specs (l1, l2, trainable, lr_mult) */
    GStrvBuilder *init_keys, *init_values; /* the parameters' initializers */
} LayerKeys;

static void layer_keys_clear(LayerKeys *k)
{
    entries_clear(&k->plugin);
    entries_clear(&k->core);
    g_strv_builder_unref(k->init_keys);
    g_strv_builder_unref(k->init_values);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(LayerKeys, layer_keys_clear)

static void split_layer_keys(LmnConfig *cfg, const char *group, LayerKeys *k)
{
    entries_init(&k->plugin);
    entries_init(&k->core);
    k->init_keys = g_strv_builder_new();
    k->init_values = g_strv_builder_new();
    g_auto(GStrv) all = g_key_file_get_keys(cfg->kf, group, NULL, NULL);
    for (guint i = 0; all && all[i]; i++) {
        if (g_str_equal(all[i], "type") || g_str_equal(all[i], "input"))
            continue;
        if (lmn_param_spec_find(layer_core_specs, all[i])) {
            entries_add(&k->core, cfg, group, all[i],
                        g_key_file_get_value(cfg->kf, group, all[i], NULL));
            continue;
        }
        g_autofree char *v = g_key_file_get_value(cfg->kf, group, all[i], NULL);
        g_strstrip(v);
        if (is_init_key(all[i])) {
            g_strv_builder_add(k->init_keys, all[i]);
            g_strv_builder_add(k->init_values, v);
        } else {
            entries_add(&k->plugin, cfg, group, all[i], g_steal_pointer(&v));
        }
    }
    entries_end(&k->plugin);
    entries_end(&k->core);
}

/* sync (synchronised batch statistics) on a layer type whose plugin does not declare it: a
 * message that says what the key means and where it applies, rather than "unknown key". */
static gboolean check_sync_key(const LmnConfig *cfg, const LmnFeature *f, const LmnLayerConfig *lc,
                               const char *group, const Entries *plugin, GError **error)
{
    if (f->desc->params && lmn_param_spec_find(f->desc->params, "sync"))
        return TRUE;
    for (guint i = 0; i + 1 < plugin->keys->len; i++) {
        if (!g_str_equal(g_ptr_array_index(plugin->keys, i), "sync"))
            continue;
        g_autofree char *where = lmn_config_dup_where(cfg, group, "sync");
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s sync: layer '%s' (%s) keeps no batch statistics to synchronise across "
                    "processes; sync = true (torch.nn.SyncBatchNorm) applies to batch_norm "
                    "layers only. Remove the key, or put it on a batch_norm layer",
                    where, lc->name, lc->type);
        return FALSE;
    }
    return TRUE;
}

/* Initializer keys go to the layer's parameters' initializers, l1/l2, trainable and lr_mult to
 * the core's schema, the rest to the plugin's. */
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
        lmn_params_new_from_strings_at(layer_core_specs, ENTRIES_ARGS(k.core), lc->where, error);
    if (!core)
        return FALSE;
    lc->trainable = lmn_params_get_bool(core, "trainable");
    lc->lr_mult = lmn_params_get_float(core, "lr_mult");
    lc->loss_weight = lmn_params_get_float(core, "weight");
    lc->target = g_strdup(lmn_params_get_string(core, "target"));
    lc->max_norm = lmn_params_get_float(core, "max_norm");
    lc->activity_l1 = lmn_params_get_float(core, "activity_l1");
    lc->activity_l2 = lmn_params_get_float(core, "activity_l2");
    g_strstrip(lc->target);
    for (guint i = 0; i + 1 < k.core.keys->len; i++) {
        const char *key = g_ptr_array_index(k.core.keys, i);
        if (g_str_equal(key, "weight") || g_str_equal(key, "target")) {
            if (!lc->loss_where) {
                g_autofree char *where = lmn_config_dup_where(cfg, group, key);
                lc->loss_where = g_strdup_printf("%s %s", where, key);
            }
        } else if (g_str_equal(key, "max_norm") || g_str_equal(key, "activity_l1") ||
                   g_str_equal(key, "activity_l2")) {
            if (!lc->reg_where) {
                g_autofree char *where = lmn_config_dup_where(cfg, group, key);
                lc->reg_where = g_strdup_printf("%s %s", where, key);
            }
        } else if (g_str_equal(key, "l1"))
            lc->l1 = lmn_params_get_float(core, "l1");
        else if (g_str_equal(key, "l2"))
            lc->l2 = lmn_params_get_float(core, "l2");
        else if (!lc->tuning_where) { /* the model refuses these on a layer without parameters */
            g_autofree char *where = lmn_config_dup_where(cfg, group, key);
            lc->tuning_where = g_strdup_printf("%s %s", where, key);
        }
    }
    if (!check_sync_key(cfg, f, lc, group, &k.plugin, error))
        return FALSE;
    /* What lmn_registry_validate_params() does, with each key's own line. */
    lc->params =
        lmn_params_new_from_strings_at(f->desc->params, ENTRIES_ARGS(k.plugin), lc->where, error);
    return lc->params != NULL;
}

/* weight and target belong to losses.  A loss's target is its implicit last input: "labels" for
 * the split's y (as always), else the node LMN_CONFIG_TARGET_PREFIX NAME of that dataset. */
static gboolean apply_loss_keys(LmnConfig *cfg, LmnLayerConfig *lc, const LmnLayerVTable *vt,
                                const char *group, gboolean implicit, GError **error)
{
    if (!(vt->flags & LMN_LAYER_FLAG_LOSS)) {
        if (lc->loss_where) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                        "%s: weight and target apply only to loss layers, and layer '%s' (%s) is "
                        "not one (e.g. type = softmax_cross_entropy or mse)",
                        lc->loss_where, lc->name, lc->type);
            return FALSE;
        }
        g_clear_pointer(&lc->target, g_free);
        return TRUE;
    }
    if (!valid_layer_name(lc->target) || g_str_equal(lc->target, "x")) {
        g_autofree char *where = lmn_config_dup_where(cfg, group, "target");
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s target: '%s' is not a usable dataset name (the name of a dataset in the "
                    "split's group, other than x: letters, digits, '_', '-', '.')",
                    where, lc->target);
        return FALSE;
    }
    if (implicit && !g_str_equal(lc->target, "y")) {
        guint last = g_strv_length(lc->inputs) - 1;
        g_free(lc->inputs[last]);
        lc->inputs[last] = g_strconcat(LMN_CONFIG_TARGET_PREFIX, lc->target, NULL);
    }
    return TRUE;
}

static gboolean validate_layer(LmnConfig *cfg, LmnRegistry *registry, const char *group,
                               const char *prev_name, GError **error)
{
    const char *name = group + strlen("layer ");
    g_autofree char *where = lmn_config_dup_where(cfg, group, NULL);
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
    gboolean implicit = FALSE;
    return layer_inputs(cfg, lc, group, f->desc->vtable, prev_name, &implicit, error) &&
           check_layer_inputs(cfg, lc, group, error) &&
           validate_layer_keys(cfg, f, lc, group, error) &&
           apply_loss_keys(cfg, lc, f->desc->vtable, group, implicit, error);
}

/* Every group is one the core knows: [model], [layer NAME], [optimizer], ... */
static gboolean check_groups(LmnConfig *cfg, const GStrv groups, gsize n_groups, GError **error)
{
    for (gsize i = 0; i < n_groups; i++) {
        if (g_strv_contains(lmn_config_core_groups, groups[i]) ||
            g_str_has_prefix(groups[i], "layer "))
            continue;
        static const char *const candidates[] = {"model", "optimizer", "schedule", "train",
                                                 "data",  "augment",   "layer",    NULL};
        const char *hint = lmn_suggest(groups[i], candidates);
        guint line = lmn_config_line_of(cfg, groups[i], NULL);
        g_autofree char *at = line ? g_strdup_printf(":%u", line) : g_strdup("");
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY,
                    "%s%s: unknown group [%s]%s%s%s; known groups: [model], [layer NAME], "
                    "[optimizer], [schedule], [train], [data], [augment]",
                    cfg->name, at, groups[i], hint ? " (did you mean [" : "", hint ? hint : "",
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
    g_autofree char *where = lmn_config_dup_where(cfg, "model", "input");
    if (n_dims == 0 || n_dims >= LMN_MAX_DIMS) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s input: %zu dimensions given, expected 1 to %d (the batch "
                    "dimension is not part of it)",
                    where, n_dims, LMN_MAX_DIMS - 1);
        return FALSE;
    }
    cfg->input_shape.ndim = (guint) n_dims;
    for (gsize i = 0; i < n_dims; i++) {
        if (dims[i] != floor(dims[i])) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                        "%s input: dimension %g is not a whole number", where, dims[i]);
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
    g_autofree char *where = lmn_config_dup_where(cfg, "optimizer", NULL);
    if (!type) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_MISSING,
                    "%s: missing key 'type' (`lamina plugins` lists the optimizers)", where);
        return FALSE;
    }
    g_strstrip(type);
    const LmnFeature *f =
        lookup_feature(cfg, registry, LMN_FEATURE_OPTIMIZER, type, "optimizer", error);
    if (!f)
        return FALSE;
    static const char *const skip[] = {"type", NULL};
    g_auto(Entries) e = {0};
    group_entries(cfg, "optimizer", skip, &e);
    /* What lmn_registry_validate_params() does, with each key's own line. */
    cfg->opt_params =
        lmn_params_new_from_strings_at(f->desc->params, ENTRIES_ARGS(e), where, error);
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
    g_auto(Entries) pe = {0};
    g_auto(Entries) ce = {0};
    entries_init(&pe);
    entries_init(&ce);
    g_auto(GStrv) all = has_group ? g_key_file_get_keys(cfg->kf, "schedule", NULL, NULL) : NULL;
    for (guint i = 0; all && all[i]; i++) {
        if (g_str_equal(all[i], "type"))
            continue;
        gboolean is_common = lmn_param_spec_find(common, all[i]) != NULL;
        entries_add(is_common ? &ce : &pe, cfg, "schedule", all[i],
                    g_key_file_get_value(cfg->kf, "schedule", all[i], NULL));
    }
    entries_end(&pe);
    entries_end(&ce);
    g_autofree char *where = lmn_config_dup_where(cfg, "schedule", NULL);
    g_autoptr(LmnParams) cp =
        lmn_params_new_from_strings_at(common, ENTRIES_ARGS(ce), where, error);
    if (!cp)
        return FALSE;
    /* What lmn_registry_validate_params() does, with each key's own line. */
    cfg->sched_params =
        lmn_params_new_from_strings_at(f->desc->params, ENTRIES_ARGS(pe), where, error);
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
    t->bucket_mib = lmn_params_get_float(tp, "bucket_mib");
    t->comm_timeout = lmn_params_get_float(tp, "comm_timeout");
    t->backend = g_strdup(lmn_params_get_string(tp, "backend"));
    t->device = get_string_or_null(tp, "device");
    t->threads = lmn_params_get_int(tp, "threads");
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
    const char *adv = lmn_params_get_string(tp, "adversarial");
    t->adversarial = g_str_equal(adv, "fgsm")  ? LMN_ADVERSARIAL_FGSM
                     : g_str_equal(adv, "pgd") ? LMN_ADVERSARIAL_PGD
                                               : LMN_ADVERSARIAL_NONE;
    t->adversarial_eps = lmn_params_get_float(tp, "adversarial_eps");
    t->adversarial_steps = lmn_params_get_int(tp, "adversarial_steps");
    double alpha = lmn_params_get_float(tp, "adversarial_alpha");
    t->adversarial_alpha = alpha > 0 ? alpha : NAN;
    gsize n_clip = 0;
    const double *clip = lmn_params_get_float_list(tp, "adversarial_clip", &n_clip);
    t->adversarial_clip_min = n_clip == 2 ? clip[0] : -INFINITY;
    t->adversarial_clip_max = n_clip == 2 ? clip[1] : INFINITY;
    t->adversarial_weight = lmn_params_get_float(tp, "adversarial_weight");
    t->adversarial_random_start = lmn_params_get_bool(tp, "adversarial_random_start");
    t->weight_noise = lmn_params_get_float(tp, "weight_noise");
    t->ema_decay = lmn_params_get_float(tp, "ema_decay");
    t->top_k = lmn_params_get_int(tp, "top_k");
}

/* The adversarial_* keys: meaningful only together with adversarial, and consistent. */
static gboolean validate_adversarial(LmnConfig *cfg, const LmnParams *tp, GError **error)
{
    const LmnTrainConfig *t = &cfg->train;
    static const char *const keys[] = {"adversarial_eps",
                                       "adversarial_steps",
                                       "adversarial_alpha",
                                       "adversarial_clip",
                                       "adversarial_weight",
                                       "adversarial_random_start",
                                       NULL};
    for (guint i = 0; keys[i]; i++) {
        if (t->adversarial != LMN_ADVERSARIAL_NONE ||
            !g_key_file_has_key(cfg->kf, "train", keys[i], NULL))
            continue;
        g_autofree char *where = lmn_config_dup_where(cfg, "train", keys[i]);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s %s: it has no effect without adversarial training; set adversarial = "
                    "fgsm or pgd, or remove it",
                    where, keys[i]);
        return FALSE;
    }
    if (t->adversarial == LMN_ADVERSARIAL_NONE)
        return TRUE;
    if (!(t->adversarial_eps > 0)) {
        g_autofree char *where = lmn_config_dup_where(cfg, "train", "adversarial_eps");
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s adversarial_eps: adversarial training needs a budget > 0, in the units "
                    "the model sees (e.g. adversarial_eps = 0.1 for images with scale 1/255)",
                    where);
        return FALSE;
    }
    gsize n_clip = 0;
    lmn_params_get_float_list(tp, "adversarial_clip", &n_clip);
    if (n_clip != 0 && (n_clip != 2 || t->adversarial_clip_min > t->adversarial_clip_max)) {
        g_autofree char *where = lmn_config_dup_where(cfg, "train", "adversarial_clip");
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s adversarial_clip: expected MIN, MAX with MIN <= MAX (e.g. 0, 1), got "
                    "%zu value%s%s",
                    where, n_clip, n_clip == 1 ? "" : "s", n_clip == 2 ? " with MIN > MAX" : "");
        return FALSE;
    }
    return TRUE;
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
    if (!validate_adversarial(cfg, tp, error))
        return FALSE;
    if (t->validation_data && t->validation_split > 0) {
        g_autofree char *where = lmn_config_dup_where(cfg, "data", "validation_split");
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s: both validation and validation_split are set; use one", where);
        return FALSE;
    }
    if (t->early_stopping_patience > 0 && !t->validation_data && t->validation_split <= 0) {
        g_autofree char *where = lmn_config_dup_where(cfg, "train", "early_stopping_patience");
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s early_stopping_patience: early stopping watches a validation "
                    "metric, but there is no validation data; set [data] validation = "
                    "FILE:/split or validation_split = 0.1",
                    where);
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
    g_autofree char *where = lmn_config_dup_where(cfg, "augment", NULL);
    return lmn_augment_config_check(&cfg->augment, where, error);
}

gboolean lmn_config_validate(LmnConfig *cfg, LmnRegistry *registry, GError **error)
{
    g_return_val_if_fail(cfg && registry, FALSE);
    lmn_config_clear_validated(cfg);
    gsize n_groups = 0;
    g_auto(GStrv) groups = g_key_file_get_groups(cfg->kf, &n_groups);
    if (check_groups(cfg, groups, n_groups, error) && validate_model(cfg, error) &&
        validate_layers(cfg, registry, groups, n_groups, error) &&
        validate_optimizer(cfg, registry, error) && validate_schedule(cfg, registry, error) &&
        validate_train_data(cfg, error) && validate_augment(cfg, error)) {
        cfg->validated = TRUE;
        return TRUE;
    }
    lmn_config_clear_validated(cfg);
    return FALSE;
}
