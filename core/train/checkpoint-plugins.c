/* Lamina — which plugins a checkpoint was made with (checkpoint.h, /plugins).
 *
 *   /plugins/layers/<layer>               attrs type, plugin, version
 *   /plugins/initializers/<layer>.<param> attrs type, plugin, version (the initializer that
 *                                          filled the parameter before any --init or --resume)
 *   /plugins/optimizer, /plugins/schedule attrs type, plugin, version
 *
 * Written with every checkpoint; read when a checkpoint's component is not registered, so the
 * error can name the plugin to load instead of only the unknown type. */
#include "checkpoint-private.h"

#include <lamina/lamina.h>
#include <string.h>

static gboolean write_component(hid_t file, const char *path, const LmnFeature *f,
                                const LmnH5Errors *errs, GError **error)
{
    if (f == NULL)
        return TRUE;
    g_auto(LmnH5Id) g = lmn_h5_group_create(file, path, errs, error);
    return g >= 0 && lmn_h5_attr_write_string(g, "type", f->desc->name, errs, error) &&
           lmn_h5_attr_write_string(g, "plugin", f->plugin->name, errs, error) &&
           lmn_h5_attr_write_string(g, "version", f->plugin->version, errs, error);
}

gboolean lmn_checkpoint_write_plugins(hid_t file, LmnModel *model, LmnOptimizer *opt,
                                      LmnSchedule *sched, const LmnH5Errors *errs, GError **error)
{
    for (guint i = 0; i < lmn_model_get_n_layers(model); i++) {
        LmnLayer *l = lmn_model_get_layer(model, i);
        g_autofree char *path = g_strdup_printf("/plugins/layers/%s", lmn_layer_get_name(l));
        if (!write_component(file, path, lmn_layer_get_feature(l), errs, error))
            return FALSE;
        for (guint p = 0; p < lmn_layer_get_n_params(l); p++) {
            g_autofree char *ip =
                g_strdup_printf("/plugins/initializers/%s.%s", lmn_layer_get_name(l),
                                lmn_layer_get_param_name(l, p));
            if (!write_component(file, ip, lmn_layer_get_param_init_feature(l, p), errs, error))
                return FALSE;
        }
    }
    return (!opt || write_component(file, "/plugins/optimizer", lmn_optimizer_get_feature(opt),
                                    errs, error)) &&
           (!sched || write_component(file, "/plugins/schedule", lmn_schedule_get_feature(sched),
                                      errs, error));
}

void lmn_checkpoint_plugin_free(LmnCheckpointPlugin *p)
{
    if (!p)
        return;
    g_free(p->kind);
    g_free(p->name);
    g_free(p->type);
    g_free(p->plugin);
    g_free(p->version);
    g_free(p);
}

/* One component group's record, or NULL with @error when an attribute is missing or bad. */
static LmnCheckpointPlugin *read_component(hid_t loc, const char *kind, const char *name,
                                           const LmnH5Errors *errs, GError **error)
{
    g_auto(LmnH5Id) g = lmn_h5_group_open(loc, name, errs, error);
    if (g < 0)
        return NULL;
    g_autoptr(LmnCheckpointPlugin) p = g_new0(LmnCheckpointPlugin, 1);
    p->kind = g_strdup(kind);
    p->name = g_strdup(name);
    p->type = lmn_h5_attr_read_string(g, "type", errs, error);
    p->plugin = p->type ? lmn_h5_attr_read_string(g, "plugin", errs, error) : NULL;
    p->version = p->plugin ? lmn_h5_attr_read_string(g, "version", errs, error) : NULL;
    return p->version ? g_steal_pointer(&p) : NULL;
}

typedef struct {
    const char *kind;
    GPtrArray *names;
} Listing;

static herr_t list_name(hid_t loc, const char *name, const H5L_info_t *info, void *data)
{
    (void) loc;
    (void) info;
    g_ptr_array_add(((Listing *) data)->names, g_strdup(name));
    return 0;
}

/* Every group under @path (layers or initializers), in name order. */
static gboolean read_family(hid_t file, const char *path, const char *kind, GPtrArray *out,
                            const LmnH5Errors *errs, GError **error)
{
    if (!lmn_h5_path_exists(file, path))
        return TRUE;
    g_auto(LmnH5Id) g = lmn_h5_group_open(file, path, errs, error);
    if (g < 0)
        return FALSE;
    Listing l = {kind, g_ptr_array_new_with_free_func(g_free)};
    hsize_t idx = 0;
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, list_name, &l);
    gboolean ok = TRUE;
    for (guint i = 0; ok && i < l.names->len; i++) {
        LmnCheckpointPlugin *p =
            read_component(g, kind, g_ptr_array_index(l.names, i), errs, error);
        ok = p != NULL;
        if (ok)
            g_ptr_array_add(out, p);
    }
    g_ptr_array_unref(l.names);
    return ok;
}

GPtrArray *lmn_checkpoint_read_plugins_from(hid_t file, const LmnH5Errors *errs, GError **error)
{
    g_autoptr(GPtrArray) out =
        g_ptr_array_new_with_free_func((GDestroyNotify) lmn_checkpoint_plugin_free);
    if (!read_family(file, "/plugins/layers", "layer", out, errs, error) ||
        !read_family(file, "/plugins/initializers", "initializer", out, errs, error))
        return NULL;
    static const char *const singles[] = {"optimizer", "schedule"};
    for (guint i = 0; i < G_N_ELEMENTS(singles); i++) {
        g_autofree char *path = g_strdup_printf("/plugins/%s", singles[i]);
        if (!lmn_h5_path_exists(file, path))
            continue;
        g_auto(LmnH5Id) g = lmn_h5_group_open(file, "/plugins", errs, error);
        LmnCheckpointPlugin *p =
            g >= 0 ? read_component(g, singles[i], singles[i], errs, error) : NULL;
        if (!p)
            return NULL;
        g_ptr_array_add(out, p);
    }
    return g_steal_pointer(&out);
}

GPtrArray *lmn_checkpoint_read_plugins(const char *path, GError **error)
{
    g_return_val_if_fail(path != NULL, NULL);
    LmnH5Errors errs = lmn_h5_errors_checkpoint(path);
    g_auto(LmnH5Id) file = lmn_h5_file_open_read(path, &errs, error);
    if (file < 0)
        return NULL;
    return lmn_checkpoint_read_plugins_from(file, &errs, error);
}

char *lmn_checkpoint_explain_missing(const char *path, LmnRegistry *registry)
{
    g_return_val_if_fail(path && registry, NULL);
    g_autoptr(GPtrArray) plugins = lmn_checkpoint_read_plugins(path, NULL);
    static const struct {
        const char *kind;
        LmnFeatureKind feature;
    } kinds[] = {{"layer", LMN_FEATURE_LAYER},
                 {"initializer", LMN_FEATURE_INITIALIZER},
                 {"optimizer", LMN_FEATURE_OPTIMIZER},
                 {"schedule", LMN_FEATURE_SCHEDULE}};
    for (guint i = 0; plugins && i < plugins->len; i++) {
        const LmnCheckpointPlugin *p = g_ptr_array_index(plugins, i);
        for (guint k = 0; k < G_N_ELEMENTS(kinds); k++) {
            if (!g_str_equal(p->kind, kinds[k].kind) ||
                lmn_registry_lookup(registry, kinds[k].feature, p->type, NULL) != NULL)
                continue;
            g_autofree char *what = g_str_equal(p->kind, p->name)
                                        ? g_strdup_printf("the %s", p->kind)
                                        : g_strdup_printf("%s '%s'", p->kind, p->name);
            return g_strdup_printf("%s: %s is a '%s' from plugin '%s' %s, which is not available "
                                   "here; install that plugin, or point --plugin-path at the "
                                   "directory that holds it",
                                   path, what, p->type, p->plugin, p->version);
        }
    }
    return NULL;
}
