/* Lamina — config files: parsing with GKeyFile, validation against core and plugin schemas. */
#include <lamina/config.h>

#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

struct _LmnConfig {
    char *name;
    GKeyFile *kf;
    /* Where each group ("GROUP") and key ("GROUP\nKEY") of the text was, as a line number:
     * GKeyFile keeps none.  A value set by an override has no entry. */
    GHashTable *lines;
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

static LmnConfig *config_new_take(GKeyFile *kf, GHashTable *lines, const char *name)
{
    LmnConfig *cfg = g_new0(LmnConfig, 1);
    cfg->name = g_strdup(name);
    cfg->kf = kf;
    cfg->lines = lines;
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

/* A line of the text as it may be shown in a message: control characters, C1 controls and
 * bytes that are not UTF-8 as \xNN (so a hostile file cannot send escape sequences to the
 * terminal), and at most 60 characters of it. */
static char *escape_line(const char *s, gsize len)
{
    GString *out = g_string_new(NULL);
    const char *p = s, *end = s + len;
    for (guint n = 0; p < end; n++) {
        if (n == 60) {
            g_string_append(out, "...");
            break;
        }
        gunichar c = g_utf8_get_char_validated(p, end - p);
        if (c == (gunichar) -1 || c == (gunichar) -2 || c < 0x20 || (c >= 0x7f && c < 0xa0)) {
            g_string_append_printf(out, "\\x%02x", (guchar) *p);
            p++;
            continue;
        }
        const char *next = g_utf8_next_char(p);
        g_string_append_len(out, p, next - p);
        p = next;
    }
    return g_string_free(out, FALSE);
}

/* The first character of [s, end) that must not stand in a config line: a control character
 * other than tab, a C1 control, or a byte that is not UTF-8.  Returns: NULL when there is none. */
static const char *find_bad_char(const char *s, const char *end)
{
    for (const char *p = s; p < end;) {
        gunichar c = g_utf8_get_char_validated(p, end - p);
        if (c == (gunichar) -1 || c == (gunichar) -2 || (c < 0x20 && c != '\t') ||
            (c >= 0x7f && c < 0xa0))
            return p;
        p = g_utf8_next_char(p);
    }
    return NULL;
}

static void set_line_error(GError **error, const char *name, guint line, const char *s,
                           const char *end, const char *what)
{
    g_autofree char *shown = escape_line(s, (gsize) (end - s));
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_PARSE,
                "%s:%u: '%s' %s (a config has [group] lines, key = value lines, and comments on "
                "lines of their own starting with #)",
                name, line, shown, what);
}

/* One [group] header: the group must be new, its name valid. */
static gboolean scan_group(const char *name, guint line, const char *s, const char *end,
                           GHashTable *lines, char **group, GError **error)
{
    const char *close = memchr(s, ']', (gsize) (end - s));
    const char *rest = close ? close + 1 : end;
    while (rest < end && (*rest == ' ' || *rest == '\t'))
        rest++;
    if (!close || rest != end) {
        set_line_error(error, name, line, s, end, "is not a group header: expected [NAME]");
        return FALSE;
    }
    g_autofree char *g = g_strndup(s + 1, (gsize) (close - s - 1));
    if (!*g || strchr(g, '[')) {
        set_line_error(error, name, line, s, end,
                       "is not a group header: the name between [ and ] must be non-empty and "
                       "without brackets");
        return FALSE;
    }
    guint first = GPOINTER_TO_UINT(g_hash_table_lookup(lines, g));
    if (first) {
        /* GKeyFile would merge the two silently: a copy-paste error would train another model. */
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_PARSE,
                    "%s:%u: group [%s] is given twice (lines %u and %u); merge the two into one "
                    "group or rename one",
                    name, line, g, first, line);
        return FALSE;
    }
    g_hash_table_insert(lines, g_strdup(g), GUINT_TO_POINTER(line));
    g_free(*group);
    *group = g_steal_pointer(&g);
    return TRUE;
}

/* One key = value line: inside a group, a valid key name, the key new in its group. */
static gboolean scan_key(const char *name, guint line, const char *s, const char *end,
                         const char *eq, GHashTable *lines, const char *group, GError **error)
{
    const char *key_end = eq;
    while (key_end > s && g_ascii_isspace(key_end[-1]))
        key_end--;
    g_autofree char *key = g_strndup(s, (gsize) (key_end - s));
    if (!group) {
        set_line_error(error, name, line, s, end,
                       "comes before the first group: put it under a [group] line");
        return FALSE;
    }
    /* GKeyFile reads KEY[LOCALE] as a translation and drops it silently. */
    if (strchr(key, '[') || strchr(key, ']')) {
        set_line_error(error, name, line, s, end,
                       "has '[' or ']' in its key: key names are letters, digits, '_' and '.'");
        return FALSE;
    }
    g_autofree char *id = g_strconcat(group, "\n", key, NULL);
    guint first = GPOINTER_TO_UINT(g_hash_table_lookup(lines, id));
    if (first) {
        /* GKeyFile would keep the last one silently. */
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_PARSE,
                    "%s:%u [%s]: key '%s' is given twice (lines %u and %u); keep one", name, line,
                    group, key, first, line);
        return FALSE;
    }
    g_hash_table_insert(lines, g_steal_pointer(&id), GUINT_TO_POINTER(line));
    return TRUE;
}

/* Reads the text line by line as GKeyFile does (lines end at \n, a \r before it is dropped,
 * leading white space is skipped, # starts a comment line, no continuation lines) to record
 * where each group and key is and to reject what GKeyFile would accept silently or report
 * without a line: a group or a key given twice, a line that is none of the three kinds,
 * control characters. */
static GHashTable *scan_lines(const char *text, gsize length, const char *name, GError **error)
{
    g_autoptr(GHashTable) lines = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_autofree char *group = NULL;
    const char *p = text, *end = text + length;
    for (guint line = 1; p < end; line++) {
        const char *nl = memchr(p, '\n', (gsize) (end - p));
        const char *le = nl ? nl : end;
        const char *next = nl ? nl + 1 : end;
        if (nl && le > p && le[-1] == '\r')
            le--;
        const char *s = p;
        p = next;
        while (s < le && g_ascii_isspace(*s))
            s++;
        if (memchr(s, '\0', (gsize) (le - s))) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_PARSE,
                        "%s:%u: the line contains a NUL byte: a config is a text file", name, line);
            return NULL;
        }
        if (s == le || *s == '#')
            continue;
        const char *bad = find_bad_char(s, le);
        if (bad) {
            g_autofree char *what = g_strdup_printf(
                "contains the control character or non-UTF-8 byte \\x%02x at column %u; "
                "remove it",
                (guchar) *bad, (guint) (bad - s) + 1);
            set_line_error(error, name, line, s, le, what);
            return NULL;
        }
        if (*s == '[') {
            if (!scan_group(name, line, s, le, lines, &group, error))
                return NULL;
            continue;
        }
        const char *eq = memchr(s, '=', (gsize) (le - s));
        if (!eq || eq == s) {
            set_line_error(error, name, line, s, le,
                           eq ? "has no key before '='"
                              : "is not a [group] line, a key = value line or a # comment");
            return NULL;
        }
        if (!scan_key(name, line, s, le, eq, lines, group, error))
            return NULL;
    }
    return g_steal_pointer(&lines);
}

LmnConfig *lmn_config_new_from_data(const char *text, gssize length, const char *name,
                                    GError **error)
{
    g_return_val_if_fail(text != NULL, NULL);
    if (length < 0)
        length = (gssize) strlen(text);
    g_autoptr(GHashTable) lines = scan_lines(text, (gsize) length, name, error);
    if (!lines)
        return NULL;
    GKeyFile *kf = g_key_file_new();
    g_autoptr(GError) local = NULL;
    if (!g_key_file_load_from_data(kf, text, (gsize) length, G_KEY_FILE_KEEP_COMMENTS, &local)) {
        /* The scan rejects what GKeyFile rejects, so this is a case it missed; GKeyFile's message
         * quotes the raw line, so it is shown escaped. */
        g_autofree char *shown = escape_line(local->message, strlen(local->message));
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_PARSE,
                    "%s: not a valid config file: %s (groups are [name] lines, values are "
                    "key = value lines, comments stand on their own lines starting with #)",
                    name, shown);
        g_key_file_free(kf);
        return NULL;
    }
    return config_new_take(kf, g_steal_pointer(&lines), name);
}

void lmn_config_free(LmnConfig *cfg)
{
    if (!cfg)
        return;
    clear_validated(cfg);
    g_ptr_array_unref(cfg->layers);
    g_key_file_free(cfg->kf);
    g_hash_table_unref(cfg->lines);
    g_free(cfg->name);
    g_free(cfg);
}

const char *lmn_config_get_name(const LmnConfig *cfg)
{
    return cfg->name;
}

static guint line_of(const LmnConfig *cfg, const char *group, const char *key)
{
    if (!key)
        return GPOINTER_TO_UINT(g_hash_table_lookup(cfg->lines, group));
    g_autofree char *id = g_strconcat(group, "\n", key, NULL);
    return GPOINTER_TO_UINT(g_hash_table_lookup(cfg->lines, id));
}

char *lmn_config_dup_where(const LmnConfig *cfg, const char *group, const char *key)
{
    g_return_val_if_fail(cfg && group, NULL);
    guint line = line_of(cfg, group, key);
    return line ? g_strdup_printf("%s:%u [%s]", cfg->name, line, group)
                : g_strdup_printf("%s [%s]", cfg->name, group);
}

/* A value replaced by an override no longer stands at its line. */
static void forget_line(LmnConfig *cfg, const char *group, const char *key)
{
    g_autofree char *id = g_strconcat(group, "\n", key, NULL);
    g_hash_table_remove(cfg->lines, id);
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
    forget_line(cfg, kgroup, key);
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
    forget_line(cfg, "optimizer", "type");
    clear_validated(cfg);
    return TRUE;
}

char *lmn_config_to_data(const LmnConfig *cfg)
{
    return g_key_file_to_data(cfg->kf, NULL, NULL);
}

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
static const LmnFeature *lookup_feature(LmnConfig *cfg, LmnRegistry *registry,
                                        LmnFeatureKind kind, const char *name, const char *group,
                                        GError **error)
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
            g_autofree char *where = lmn_config_dup_where(cfg, group, "input");
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                        "%s input: empty name in '%s' (expected comma-separated layer names)",
                        where, input_text);
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
    Entries core;                          /* layer_core_specs (l1, l2) */
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
        lmn_params_new_from_strings_at(layer_core_specs, ENTRIES_ARGS(k.core), lc->where, error);
    if (!core)
        return FALSE;
    for (guint i = 0; i + 1 < k.core.keys->len; i++) {
        const char *key = g_ptr_array_index(k.core.keys, i);
        if (g_str_equal(key, "l1"))
            lc->l1 = lmn_params_get_float(core, "l1");
        else
            lc->l2 = lmn_params_get_float(core, "l2");
    }
    /* What lmn_registry_validate_params() does, with each key's own line. */
    lc->params =
        lmn_params_new_from_strings_at(f->desc->params, ENTRIES_ARGS(k.plugin), lc->where, error);
    return lc->params != NULL;
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
    return layer_inputs(cfg, lc, group, f->desc->vtable, prev_name, error) &&
           check_layer_inputs(cfg, lc, group, error) &&
           validate_layer_keys(cfg, f, lc, group, error);
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
        guint line = line_of(cfg, groups[i], NULL);
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
