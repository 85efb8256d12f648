/* Lamina — config files: loading (the raw-text scan in scan.c, then GKeyFile), overrides and the
 * validated values (validate.c checks them against the core's and the plugins' schemas). */
#include <lamina/config.h>

#include "config-private.h"

#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

const char *const lmn_config_core_groups[] = {"model", "optimizer", "schedule", "train",
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
    g_free(lc->tuning_where);
    g_free(lc->target);
    g_free(lc->loss_where);
    g_free(lc->reg_where);
    g_free(lc);
}

void lmn_config_clear_validated(LmnConfig *cfg)
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

LmnConfig *lmn_config_new_from_data(const char *text, gssize length, const char *name,
                                    GError **error)
{
    g_return_val_if_fail(text != NULL, NULL);
    if (length < 0)
        length = (gssize) strlen(text);
    g_autoptr(GHashTable) lines = lmn_config_scan_lines(text, (gsize) length, name, error);
    if (!lines)
        return NULL;
    GKeyFile *kf = g_key_file_new();
    g_autoptr(GError) local = NULL;
    if (!g_key_file_load_from_data(kf, text, (gsize) length, G_KEY_FILE_KEEP_COMMENTS, &local)) {
        /* The scan rejects what GKeyFile rejects, so this is a case it missed; GKeyFile's message
         * quotes the raw line, so it is shown escaped. */
        g_autofree char *shown = lmn_config_escape_line(local->message, strlen(local->message));
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
    lmn_config_clear_validated(cfg);
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

guint lmn_config_line_of(const LmnConfig *cfg, const char *group, const char *key)
{
    if (!key)
        return GPOINTER_TO_UINT(g_hash_table_lookup(cfg->lines, group));
    g_autofree char *id = g_strconcat(group, "\n", key, NULL);
    return GPOINTER_TO_UINT(g_hash_table_lookup(cfg->lines, id));
}

char *lmn_config_dup_where(const LmnConfig *cfg, const char *group, const char *key)
{
    g_return_val_if_fail(cfg && group, NULL);
    guint line = lmn_config_line_of(cfg, group, key);
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
    if (g_strv_contains(lmn_config_core_groups, group))
        return g_strdup(group);
    g_autofree char *layer_group = g_strdup_printf("layer %s", group);
    if (g_key_file_has_group(cfg->kf, layer_group))
        return g_steal_pointer(&layer_group);

    /* Unknown: suggest among core groups and layer names. */
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; lmn_config_core_groups[i]; i++)
        g_ptr_array_add(names, g_strdup(lmn_config_core_groups[i]));
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
    lmn_config_clear_validated(cfg);
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
    lmn_config_clear_validated(cfg);
    return TRUE;
}

char *lmn_config_to_data(const LmnConfig *cfg)
{
    return g_key_file_to_data(cfg->kf, NULL, NULL);
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

guint lmn_config_get_n_targets(const LmnConfig *cfg)
{
    guint n = 0;
    while (lmn_config_get_target_name(cfg, n))
        n++;
    return n;
}

/* Distinct targets in the order their losses come, after y; a handful of layers at most, so a
 * quadratic scan needs no storage of its own. */
const char *lmn_config_get_target_name(const LmnConfig *cfg, guint index)
{
    g_return_val_if_fail(cfg != NULL, NULL);
    if (index == 0)
        return "y";
    guint seen = 0;
    for (guint i = 0; i < cfg->layers->len; i++) {
        const LmnLayerConfig *lc = g_ptr_array_index(cfg->layers, i);
        if (!lc->target || g_str_equal(lc->target, "y"))
            continue;
        gboolean dup = FALSE;
        for (guint j = 0; j < i && !dup; j++) {
            const LmnLayerConfig *o = g_ptr_array_index(cfg->layers, j);
            dup = o->target && g_str_equal(o->target, lc->target);
        }
        if (!dup && ++seen == index)
            return lc->target;
    }
    return NULL;
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
