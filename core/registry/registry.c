/* Lamina — the plugin registry.
 *
 * Loading a plugin is: dlopen (RTLD_LOCAL, resident), find lamina_plugin_query, call it, and
 * check every field of the static descriptor it returns before anything else of the plugin is
 * touched.  Descriptors are copied into zero-filled structs of the core's size, so a plugin
 * built against an older minor ABI (a shorter struct) reads as having NULL/0 in the members it
 * does not know.  The registry never calls layer, optimizer or backend code; it only keeps the
 * vtables and runs a plugin's optional init() when one of its features is first asked for.
 *
 * Failures are recorded per file, never fatal: a user who did not ask for a broken plugin should
 * not be stopped by it, and `lamina plugins` shows every recorded reason.
 *
 * Before a file is opened here, its query and these checks run in lamina-plugin-scanner (scan.c),
 * so that a plugin that crashes, exits or hangs there is recorded as failed instead of taking
 * this process down.  The verdicts are cached per path, size, inode, mtime and ctime
 * (registry-cache.c): only new or changed files cost a scan.
 *
 * A usable plugin is registered from what its scan found (its summary: names, versions and
 * descriptions, from the cache or a fresh scan), without opening it here: most commands use a
 * handful of the plugins, and opening all of them costs start-up time and runs every plugin's
 * constructors.  The file is opened when one of its features is looked up for use (or its schema
 * or vtable is asked for), with the same checks as an eager load, and its descriptor must then
 * match the summary; one that changed since its scan fails that lookup, naming the file, and its
 * cache entry is dropped.  First-wins ordering and the shadowing notice are decided from the
 * summaries at scan time, so they are the same as when every file was opened at start-up.
 */
#include "params-internal.h"
#include "registry-internal.h"

#include <lamina/registry.h>
#include <lamina/backend.h>
#include <lamina/communicator.h>
#include <lamina/initializer.h>
#include <lamina/layer.h>
#include <lamina/optimizer.h>
#include <lamina/schedule.h>

#include <gmodule.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if !defined(LMN_SYSTEM_PLUGIN_DIR) || !defined(LMN_BUILD_ROOT) || !defined(LMN_BUILD_PLUGIN_PATH)
#error "core/meson.build defines LMN_SYSTEM_PLUGIN_DIR, LMN_BUILD_ROOT and LMN_BUILD_PLUGIN_PATH"
#endif

/* Size of @type up to and including @member: the smallest struct_size that contains it. */
#define LMN_SIZE_THROUGH(type, member)                                                             \
    (G_STRUCT_OFFSET(type, member) + sizeof(((type *) 0)->member))

/* A plugin, loaded or known from its summary: the module and zero-extended copies of its
 * descriptors.  An unloaded plugin's copies hold the summary's strings and NULL params, vtables
 * and init; loading fills those in place, so pointers handed out before stay valid. */
typedef struct {
    char *path;
    char *key; /* canonical path */
    gboolean loaded;
    GStatBuf st;               /* unloaded: the file as its scan saw it */
    LmnPluginSummary *summary; /* unloaded (and after): owns the strings desc points to */
    GError *load_error;        /* a failed deferred load, given to every later lookup */
    GModule *module;
    const LmnPluginDesc *original; /* the plugin's static data: the key of its init state */
    LmnPluginDesc desc;
    LmnFeatureDesc *features; /* desc.n_features copies; desc.features points here */
} Plugin;

/* LmnFeature is public; the registry's own record extends it. */
typedef struct {
    LmnFeature pub;
    Plugin *plugin;
    LmnRegistry *registry; /* to load the plugin from lmn_registry_validate_params() */
} Feature;

struct _LmnRegistry {
    GPtrArray *added_dirs; /* char *, in the order added */
    gboolean use_environment;
    gboolean scanned;
    GPtrArray *search_path;                      /* char *, as of the last scan */
    GHashTable *seen;                            /* canonical file path -> LOADED / FAILED */
    GPtrArray *plugins;                          /* Plugin *, owned */
    GPtrArray *features;                         /* Feature *, owned, in load order */
    GHashTable *by_name[LMN_FEATURE_KIND_COUNT]; /* name -> Feature * (borrowed) */
    GPtrArray *failures;                         /* LmnPluginFailure *, owned */
    LmnRegistryCache *cache;                     /* opened at the first file, saved at scan end */
    GMutex load_lock; /* deferred loads: lookups from several threads stay safe */
};

enum { FILE_LOADED = 1, FILE_FAILED = 2 };

/* ---- plugin init: once per process, whatever the number of registries ---- */

typedef struct {
    gboolean done;
    GError *error; /* the plugin's own error, NULL on success */
} InitState;

static GMutex init_lock;
static GHashTable *init_states; /* const LmnPluginDesc * (original) -> InitState * */

const char *lmn_feature_kind_name(LmnFeatureKind kind)
{
    switch (kind) {
    case LMN_FEATURE_BACKEND:
        return "backend";
    case LMN_FEATURE_LAYER:
        return "layer";
    case LMN_FEATURE_OPTIMIZER:
        return "optimizer";
    case LMN_FEATURE_INITIALIZER:
        return "initializer";
    case LMN_FEATURE_SCHEDULE:
        return "schedule";
    case LMN_FEATURE_COMMUNICATOR:
        return "communicator";
    case LMN_FEATURE_KIND_COUNT:
        break;
    }
    return "unknown";
}

/* ---- bookkeeping ---- */

static void plugin_free(gpointer data)
{
    Plugin *plugin = data;
    /* The module stays resident: plugin code may have left threads, atexit handlers or driver
     * state behind, and unloading it is never safe. */
    g_free(plugin->path);
    g_free(plugin->key);
    lmn_plugin_summary_free(plugin->summary);
    g_clear_error(&plugin->load_error);
    g_free(plugin->features);
    g_free(plugin);
}

static void feature_free(gpointer data)
{
    Feature *feature = data;
    g_free(feature->pub.path);
    g_free(feature);
}

static void failure_free(gpointer data)
{
    LmnPluginFailure *failure = data;
    g_free(failure->path);
    g_clear_error(&failure->error);
    g_free(failure);
}

LmnRegistry *lmn_registry_new(void)
{
    LmnRegistry *reg = g_new0(LmnRegistry, 1);
    reg->added_dirs = g_ptr_array_new_with_free_func(g_free);
    reg->use_environment = TRUE;
    reg->seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    reg->plugins = g_ptr_array_new_with_free_func(plugin_free);
    reg->features = g_ptr_array_new_with_free_func(feature_free);
    for (guint k = 0; k < LMN_FEATURE_KIND_COUNT; k++)
        reg->by_name[k] = g_hash_table_new(g_str_hash, g_str_equal);
    reg->failures = g_ptr_array_new_with_free_func(failure_free);
    g_mutex_init(&reg->load_lock);
    return reg;
}

void lmn_registry_free(LmnRegistry *reg)
{
    if (reg == NULL)
        return;
    g_ptr_array_unref(reg->added_dirs);
    if (reg->search_path)
        g_ptr_array_unref(reg->search_path);
    g_hash_table_unref(reg->seen);
    for (guint k = 0; k < LMN_FEATURE_KIND_COUNT; k++)
        g_hash_table_unref(reg->by_name[k]);
    g_ptr_array_unref(reg->features);
    g_ptr_array_unref(reg->plugins);
    g_ptr_array_unref(reg->failures);
    if (reg->cache != NULL) {
        lmn_registry_cache_save(reg->cache);
        lmn_registry_cache_free(reg->cache);
    }
    g_mutex_clear(&reg->load_lock);
    g_free(reg);
}

void lmn_registry_add_dir(LmnRegistry *reg, const char *dir)
{
    g_return_if_fail(reg != NULL && dir != NULL);
    g_ptr_array_add(reg->added_dirs, g_strdup(dir));
}

void lmn_registry_set_use_environment(LmnRegistry *reg, gboolean use)
{
    g_return_if_fail(reg != NULL);
    reg->use_environment = use;
}

static void record_failure(LmnRegistry *reg, const char *path, const GError *error)
{
    LmnPluginFailure *failure = g_new0(LmnPluginFailure, 1);
    failure->path = g_strdup(path);
    failure->error = g_error_copy(error);
    g_ptr_array_add(reg->failures, failure);
    /* Debug only: the reason is shown by `lamina plugins` and whenever someone asks for a
     * feature this file looked like it provides. */
    g_debug("plugin %s skipped: %s", path, error->message);
}

/* A key identifying a file however it was reached (relative path, symlink, "dir/./x"). */
static char *canonical_path(const char *path)
{
    char resolved[PATH_MAX];
    if (realpath(path, resolved) != NULL)
        return g_strdup(resolved);
    return g_canonicalize_filename(path, NULL);
}

/* ---- descriptor checks ---- */

gboolean lmn_registry_valid_feature_name(const char *name)
{
    if (name[0] == '\0')
        return FALSE;
    for (const char *p = name; *p; p++) {
        if (!(g_ascii_islower(*p) || g_ascii_isdigit(*p) || *p == '_' || *p == '.'))
            return FALSE;
    }
    return TRUE;
}

/* Whether the pointer-sized member at @offset of @vtable is NULL. */
static gboolean member_is_null(const void *vtable, gsize offset)
{
    gpointer p;
    memcpy(&p, (const char *) vtable + offset, sizeof(p));
    return p == NULL;
}

typedef struct {
    const char *name;
    gsize offset;
} Member;

/* clang-format off */
#define BACKEND_MEMBER(m) {#m, G_STRUCT_OFFSET(LmnBackendVTable, m)}
/* clang-format on */

/* Everything the core calls without a fallback (core/backend.c calls describe when it opens a
 * backend); host_pointer and list_devices are optional. */
static const Member backend_required[] = {
    BACKEND_MEMBER(open),           BACKEND_MEMBER(close),
    BACKEND_MEMBER(describe),       BACKEND_MEMBER(alloc),
    BACKEND_MEMBER(free),           BACKEND_MEMBER(write),
    BACKEND_MEMBER(read),           BACKEND_MEMBER(synchronize),
    BACKEND_MEMBER(fill),           BACKEND_MEMBER(copy),
    BACKEND_MEMBER(gemm),           BACKEND_MEMBER(bias_add),
    BACKEND_MEMBER(bias_grad),      BACKEND_MEMBER(unary),
    BACKEND_MEMBER(unary_backward), BACKEND_MEMBER(binary),
    BACKEND_MEMBER(axpby),          BACKEND_MEMBER(reduce),
    BACKEND_MEMBER(softmax_xent),   BACKEND_MEMBER(softmax_xent_backward),
    BACKEND_MEMBER(count_correct),  BACKEND_MEMBER(kernel),
};

/* clang-format off */
#define LAYER_MEMBER(m) {#m, G_STRUCT_OFFSET(LmnLayerVTable, m)}
/* clang-format on */
static const Member layer_required[] = {
    LAYER_MEMBER(build),
    LAYER_MEMBER(forward),
    LAYER_MEMBER(backward),
};

/* clang-format off */
#define OPTIMIZER_MEMBER(m) {#m, G_STRUCT_OFFSET(LmnOptimizerVTable, m)}
/* clang-format on */
static const Member optimizer_required[] = {
    OPTIMIZER_MEMBER(update),
    OPTIMIZER_MEMBER(prepare),
};

static const Member initializer_required[] = {
    {"fill", G_STRUCT_OFFSET(LmnInitializerVTable, fill)},
};

static const Member schedule_required[] = {
    {"lr", G_STRUCT_OFFSET(LmnScheduleVTable, lr)},
};

/* clang-format off */
#define COMM_MEMBER(m) {#m, G_STRUCT_OFFSET(LmnCommunicatorVTable, m)}
/* clang-format on */
static const Member communicator_required[] = {
    COMM_MEMBER(detect),       COMM_MEMBER(open),
    COMM_MEMBER(close),        COMM_MEMBER(rank),
    COMM_MEMBER(size),         COMM_MEMBER(local_rank),
    COMM_MEMBER(host_name),    COMM_MEMBER(allreduce_start),
    COMM_MEMBER(request_test), COMM_MEMBER(request_wait),
    COMM_MEMBER(broadcast),    COMM_MEMBER(barrier),
    COMM_MEMBER(abort),
};

typedef struct {
    gsize min_size; /* through the last required member */
    const char *last_required;
    const Member *required;
    guint n_required;
} KindRules;

static const KindRules kind_rules[LMN_FEATURE_KIND_COUNT] = {
    [LMN_FEATURE_BACKEND] = {LMN_SIZE_THROUGH(LmnBackendVTable, kernel), "kernel", backend_required,
                             G_N_ELEMENTS(backend_required)},
    [LMN_FEATURE_LAYER] = {LMN_SIZE_THROUGH(LmnLayerVTable, backward), "backward", layer_required,
                           G_N_ELEMENTS(layer_required)},
    [LMN_FEATURE_OPTIMIZER] = {LMN_SIZE_THROUGH(LmnOptimizerVTable, prepare), "prepare",
                               optimizer_required, G_N_ELEMENTS(optimizer_required)},
    [LMN_FEATURE_INITIALIZER] = {LMN_SIZE_THROUGH(LmnInitializerVTable, fill), "fill",
                                 initializer_required, G_N_ELEMENTS(initializer_required)},
    [LMN_FEATURE_SCHEDULE] = {LMN_SIZE_THROUGH(LmnScheduleVTable, lr), "lr", schedule_required,
                              G_N_ELEMENTS(schedule_required)},
    [LMN_FEATURE_COMMUNICATOR] = {LMN_SIZE_THROUGH(LmnCommunicatorVTable, abort), "abort",
                                  communicator_required, G_N_ELEMENTS(communicator_required)},
};

static guint strv_length_const(const char *const *v)
{
    guint n = 0;
    while (v != NULL && v[n] != NULL)
        n++;
    return n;
}

/* Optimizer specifics: the update kernel must bind param, grad and one buffer per slot, and the
 * schema must take a learning rate.  Returns a message, or NULL when sound. */
static char *check_optimizer(const LmnOptimizerVTable *vt, const LmnParamSpec *schema)
{
    const LmnKernelDesc *k = vt->update;
    if (k->struct_size < LMN_SIZE_THROUGH(LmnKernelDesc, n_scalars))
        return g_strdup_printf("update kernel struct_size %u is smaller than %zu (through "
                               "'n_scalars')",
                               k->struct_size, LMN_SIZE_THROUGH(LmnKernelDesc, n_scalars));
    if (k->name == NULL || k->name[0] == '\0')
        return g_strdup("update kernel field 'name' is NULL or empty");
    if (k->cpu == NULL)
        return g_strdup_printf("update kernel '%s' has no 'cpu' function (the CPU "
                               "implementation is mandatory)",
                               k->name);
    guint n_slots = strv_length_const(vt->slots);
    if (k->n_buffers != 2 + n_slots)
        return g_strdup_printf("update kernel '%s' binds n_buffers = %u, but param, grad and %u "
                               "slot(s) make %u",
                               k->name, k->n_buffers, n_slots, 2 + n_slots);
    if (k->n_buffers > LMN_KERNEL_MAX_BUFFERS)
        return g_strdup_printf("update kernel '%s' binds %u buffers, more than %d", k->name,
                               k->n_buffers, LMN_KERNEL_MAX_BUFFERS);
    if (k->n_scalars > LMN_KERNEL_MAX_SCALARS)
        return g_strdup_printf("update kernel '%s' has n_scalars = %u, more than %d", k->name,
                               k->n_scalars, LMN_KERNEL_MAX_SCALARS);
    if (k->access == NULL)
        return g_strdup_printf("update kernel '%s' field 'access' is NULL", k->name);
    for (guint b = 0; b < k->n_buffers; b++) {
        if (k->access[b] < LMN_KERNEL_READ || k->access[b] > LMN_KERNEL_READ_WRITE)
            return g_strdup_printf("update kernel '%s' access[%u] = %u is not an "
                                   "LmnKernelAccess",
                                   k->name, b, k->access[b]);
    }
    if (k->struct_size >= LMN_SIZE_THROUGH(LmnKernelDesc, spirv) && k->spirv != NULL) {
        const LmnKernelSpirv *sp = k->spirv;
        if (sp->struct_size < LMN_SIZE_THROUGH(LmnKernelSpirv, entry_point))
            return g_strdup_printf("update kernel '%s' spirv struct_size %u is smaller than %zu",
                                   k->name, sp->struct_size,
                                   LMN_SIZE_THROUGH(LmnKernelSpirv, entry_point));
        if (sp->code == NULL || sp->code_size == 0 || sp->code_size % 4 != 0)
            return g_strdup_printf("update kernel '%s' spirv code is NULL or its code_size %zu "
                                   "is not a positive multiple of 4",
                                   k->name, (gsize) sp->code_size);
        if (sp->code[0] != 0x07230203u)
            return g_strdup_printf("update kernel '%s' spirv code does not start with the "
                                   "SPIR-V magic number",
                                   k->name);
        if (sp->entry_point == NULL || sp->entry_point[0] == '\0')
            return g_strdup_printf("update kernel '%s' spirv entry_point is NULL or empty",
                                   k->name);
    }
    if (vt->n_host_state > 0 && strv_length_const(vt->host_state_names) != vt->n_host_state)
        return g_strdup_printf("n_host_state is %u but host_state_names has %u names",
                               vt->n_host_state, strv_length_const(vt->host_state_names));
    const LmnParamSpec *lr = lmn_param_spec_find(schema, "lr");
    if (lr == NULL || lr->type != LMN_PARAM_FLOAT)
        return g_strdup("params has no FLOAT key 'lr' (every optimizer takes a learning rate)");
    return NULL;
}

/* Checks one feature copy; returns a message naming the field, or NULL. */
static char *check_feature(const LmnFeatureDesc *f)
{
    if ((guint) f->kind >= LMN_FEATURE_KIND_COUNT)
        return g_strdup_printf("kind %d is not a known LmnFeatureKind", (int) f->kind);
    const char *kind = lmn_feature_kind_name(f->kind);
    if (f->vtable == NULL)
        return g_strdup_printf("field 'vtable' is NULL");

    const KindRules *rules = &kind_rules[f->kind];
    guint32 vt_size;
    memcpy(&vt_size, f->vtable, sizeof(vt_size));
    if (vt_size < rules->min_size)
        return g_strdup_printf("vtable struct_size %u is smaller than %zu, the size of the %s "
                               "vtable through its last required member '%s'",
                               vt_size, rules->min_size, kind, rules->last_required);
    for (guint m = 0; m < rules->n_required; m++) {
        if (member_is_null(f->vtable, rules->required[m].offset))
            return g_strdup_printf("%s vtable member '%s' is NULL (it is required)", kind,
                                   rules->required[m].name);
    }

    char *schema_problem = lmn_param_schema_check(f->params);
    if (schema_problem != NULL)
        return schema_problem;

    if (f->kind == LMN_FEATURE_OPTIMIZER)
        return check_optimizer(f->vtable, f->params);
    return NULL;
}

static gboolean set_bad(GError **error, const char *path, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static gboolean set_bad(GError **error, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *what = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_BAD_DESCRIPTOR,
                "%s: bad plugin descriptor: %s", path, what);
    return FALSE;
}

/* Copies and checks the descriptor.  On success fills @plugin's desc and features. */
/* The plugin descriptor's own fields, after the copy into plugin->desc. */
static gboolean check_plugin_fields(const char *path, const LmnPluginDesc *desc, GError **error)
{
    if (desc->name == NULL || desc->name[0] == '\0')
        return set_bad(error, path, "field 'name' is %s", desc->name ? "empty" : "NULL");
    if (desc->version == NULL || desc->version[0] == '\0')
        return set_bad(error, path, "field 'version' is %s", desc->version ? "empty" : "NULL");
    if (desc->n_features == 0)
        return set_bad(error, path,
                       "field 'n_features' is 0 (a plugin provides at least one "
                       "feature)");
    if (desc->n_features > LMN_PLUGIN_MAX_FEATURES)
        return set_bad(error, path, "field 'n_features' is %u, more than %d (garbage?)",
                       desc->n_features, LMN_PLUGIN_MAX_FEATURES);
    if (desc->features == NULL)
        return set_bad(error, path, "field 'features' is NULL but n_features is %u",
                       desc->n_features);
    return TRUE;
}

/* Feature @i after its copy: a valid name, a vtable its kind accepts, unique in the plugin. */
static gboolean check_feature_entry(const Plugin *plugin, guint i, GError **error)
{
    const char *path = plugin->path;
    const LmnFeatureDesc *f = &plugin->features[i];
    if (f->name == NULL)
        return set_bad(error, path, "features[%u]: field 'name' is NULL", i);
    if (!lmn_registry_valid_feature_name(f->name))
        return set_bad(error, path,
                       "features[%u]: name '%s' must be non-empty and use only "
                       "a-z, 0-9, '_' and '.'",
                       i, f->name);
    g_autofree char *problem = check_feature(f);
    if (problem != NULL) {
        if ((guint) f->kind < LMN_FEATURE_KIND_COUNT)
            return set_bad(error, path, "features[%u] (%s '%s'): %s", i,
                           lmn_feature_kind_name(f->kind), f->name, problem);
        return set_bad(error, path, "features[%u] ('%s'): %s", i, f->name, problem);
    }
    for (guint j = 0; j < i; j++) {
        if (plugin->features[j].kind == f->kind && strcmp(plugin->features[j].name, f->name) == 0)
            return set_bad(error, path,
                           "features[%u] (%s '%s'): same kind and name as "
                           "features[%u]",
                           i, lmn_feature_kind_name(f->kind), f->name, j);
    }
    return TRUE;
}

/* Copies the feature array into plugin->features at this ABI's element size, checking each. */
static gboolean copy_features(Plugin *plugin, GError **error)
{
    const char *path = plugin->path;
    const LmnPluginDesc *desc = &plugin->desc;
    /* Step through the array by the plugin's own element size: an older minor ABI may have a
     * shorter LmnFeatureDesc.  A longer one would be a newer minor, rejected before. */
    const guint32 stride = desc->features[0].struct_size;
    const gsize feature_min = LMN_SIZE_THROUGH(LmnFeatureDesc, vtable);
    if (stride < feature_min || stride > sizeof(LmnFeatureDesc))
        return set_bad(error, path, "features[0].struct_size %u is not between %zu and %zu", stride,
                       feature_min, sizeof(LmnFeatureDesc));

    plugin->features = g_new0(LmnFeatureDesc, desc->n_features);
    for (guint i = 0; i < desc->n_features; i++) {
        const LmnFeatureDesc *src =
            (const LmnFeatureDesc *) ((const char *) desc->features + (gsize) i * stride);
        if (src->struct_size != stride)
            return set_bad(error, path,
                           "features[%u].struct_size %u differs from "
                           "features[0].struct_size %u",
                           i, src->struct_size, stride);
        LmnFeatureDesc *f = &plugin->features[i];
        memcpy(f, src, stride);
        f->struct_size = sizeof(LmnFeatureDesc);
        if (!check_feature_entry(plugin, i, error))
            return FALSE;
    }
    plugin->desc.features = plugin->features;
    return TRUE;
}

static gboolean check_descriptor(Plugin *plugin, const LmnPluginDesc *d, GError **error)
{
    const char *path = plugin->path;
    const gsize abi_size = LMN_SIZE_THROUGH(LmnPluginDesc, abi_minor);

    if (d->struct_size < abi_size)
        return set_bad(error, path, "struct_size %u is too small to hold the ABI version",
                       d->struct_size);
    if (d->abi_major != LMN_ABI_MAJOR || d->abi_minor > LMN_ABI_MINOR) {
        g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_ABI_MISMATCH,
                    "%s: plugin ABI %u.%u, this Lamina %d.%d: rebuild the plugin against this "
                    "Lamina's headers",
                    path, d->abi_major, d->abi_minor, LMN_ABI_MAJOR, LMN_ABI_MINOR);
        return FALSE;
    }
    const gsize min_size = LMN_SIZE_THROUGH(LmnPluginDesc, features);
    if (d->struct_size < min_size)
        return set_bad(error, path,
                       "struct_size %u is smaller than %zu (the descriptor through "
                       "'features')",
                       d->struct_size, min_size);

    memcpy(&plugin->desc, d, MIN((gsize) d->struct_size, sizeof(LmnPluginDesc)));
    plugin->desc.struct_size = sizeof(LmnPluginDesc);
    return check_plugin_fields(path, &plugin->desc, error) && copy_features(plugin, error);
}

/* Opens @path and checks it; returns the plugin or NULL with the reason. */
static Plugin *open_plugin(const char *path, GError **error)
{
    /* dlopen searches the library path for a name without '/', so always pass a path. */
    g_autofree char *open_path =
        g_path_is_absolute(path) ? g_strdup(path) : g_canonicalize_filename(path, NULL);
    GModule *module = g_module_open(open_path, G_MODULE_BIND_LOCAL);
    if (module == NULL) {
        g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_OPEN, "%s: cannot load: %s", path,
                    g_module_error());
        return NULL;
    }
    /* Never unloaded, even when it turns out not to be a plugin: its constructors have run. */
    g_module_make_resident(module);

    gpointer sym = NULL;
    if (!g_module_symbol(module, LMN_PLUGIN_ENTRY_POINT, &sym) || sym == NULL) {
        g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_NO_ENTRY,
                    "%s: not a Lamina plugin: it does not export %s() (define it with "
                    "LMN_PLUGIN_DEFINE)",
                    path, LMN_PLUGIN_ENTRY_POINT);
        return NULL;
    }
    const LmnPluginDesc *(*query)(void) = (const LmnPluginDesc *(*) (void) ) sym;
    const LmnPluginDesc *d = query();
    if (d == NULL) {
        g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_NO_ENTRY, "%s: %s() returned NULL",
                    path, LMN_PLUGIN_ENTRY_POINT);
        return NULL;
    }

    Plugin *plugin = g_new0(Plugin, 1);
    plugin->path = g_strdup(path);
    plugin->module = module;
    plugin->original = d;
    if (!check_descriptor(plugin, d, error)) {
        plugin_free(plugin);
        return NULL;
    }
    return plugin;
}

/* The summary a scan reports for a plugin that passed the checks. */
static LmnPluginSummary *summary_from_plugin(const Plugin *plugin)
{
    LmnPluginSummary *summary = g_new0(LmnPluginSummary, 1);
    summary->name = g_strdup(plugin->desc.name);
    summary->version = g_strdup(plugin->desc.version);
    summary->license = g_strdup(plugin->desc.license);
    summary->description = g_strdup(plugin->desc.description);
    summary->n_features = plugin->desc.n_features;
    summary->features = g_new0(LmnFeatureSummary, summary->n_features);
    for (guint i = 0; i < summary->n_features; i++) {
        summary->features[i].kind = plugin->features[i].kind;
        summary->features[i].name = g_strdup(plugin->features[i].name);
        summary->features[i].description = g_strdup(plugin->features[i].description);
    }
    return summary;
}

gboolean lmn_registry_probe_file(const char *path, GKeyFile *report, GError **error)
{
    g_return_val_if_fail(path != NULL && report != NULL, FALSE);
    Plugin *plugin = open_plugin(path, error);
    if (plugin == NULL)
        return FALSE;
    g_autoptr(LmnPluginSummary) summary = summary_from_plugin(plugin);
    lmn_plugin_summary_save(summary, report, LMN_SCAN_REPORT_GROUP);
    plugin_free(plugin);
    return TRUE;
}

/* A plugin known only from its scan: what listing and lookup need, nothing to call yet. */
static Plugin *plugin_from_summary(const char *path, const char *key, const GStatBuf *st,
                                   LmnPluginSummary *summary)
{
    Plugin *plugin = g_new0(Plugin, 1);
    plugin->path = g_strdup(path);
    plugin->key = g_strdup(key);
    plugin->st = *st;
    plugin->summary = summary;
    plugin->desc.struct_size = sizeof(LmnPluginDesc);
    plugin->desc.abi_major = LMN_ABI_MAJOR;
    plugin->desc.name = summary->name;
    plugin->desc.version = summary->version;
    plugin->desc.license = summary->license;
    plugin->desc.description = summary->description;
    plugin->desc.n_features = summary->n_features;
    plugin->features = g_new0(LmnFeatureDesc, summary->n_features);
    for (guint i = 0; i < summary->n_features; i++) {
        LmnFeatureDesc *f = &plugin->features[i];
        f->struct_size = sizeof(LmnFeatureDesc);
        f->kind = summary->features[i].kind;
        f->name = summary->features[i].name;
        f->description = summary->features[i].description;
    }
    plugin->desc.features = plugin->features;
    return plugin;
}

/* What differs between the summary a plugin was registered from and its descriptor now, or
 * NULL when they agree. */
static char *summary_mismatch(const LmnPluginSummary *s, const Plugin *now)
{
    const LmnPluginDesc *d = &now->desc;
#define DIFFERS(what, cached, actual)                                                              \
    if (g_strcmp0((cached), (actual)) != 0)                                                        \
    return g_strdup_printf("%s is '%s', the scan said '%s'", what, (actual) ? (actual) : "(none)", \
                           (cached) ? (cached) : "(none)")
    DIFFERS("the plugin's name", s->name, d->name);
    DIFFERS("its version", s->version, d->version);
    DIFFERS("its license", s->license, d->license);
    DIFFERS("its description", s->description, d->description);
    if (s->n_features != d->n_features)
        return g_strdup_printf("it has %u features, the scan said %u", d->n_features,
                               s->n_features);
    for (guint i = 0; i < s->n_features; i++) {
        const LmnFeatureSummary *sf = &s->features[i];
        const LmnFeatureDesc *f = &now->features[i];
        if (sf->kind != f->kind || strcmp(sf->name, f->name) != 0)
            return g_strdup_printf("features[%u] is %s '%s', the scan said %s '%s'", i,
                                   lmn_feature_kind_name(f->kind), f->name,
                                   lmn_feature_kind_name(sf->kind), sf->name);
        DIFFERS("a feature's description", sf->description, f->description);
    }
#undef DIFFERS
    return NULL;
}

/* Opens @path in this process (debug line "loading plugin PATH", which tests count). */
static Plugin *load_here(const char *path, GError **error)
{
    g_debug("loading plugin %s", path);
    return open_plugin(path, error);
}

/* Opens a plugin registered from its summary and fills in its code.  Any failure means the file
 * is no longer what was scanned: its cache entry is dropped so that the next run scans it. */
static gboolean load_deferred(LmnRegistry *reg, Plugin *plugin, GError **error)
{
    GStatBuf st;
    GError *local = NULL;
    Plugin *now = NULL;
    /* Never open a file that changed since its scan: a crashing replacement would take this
     * process down, which is what the scan is for. */
    if (g_stat(plugin->key, &st) != 0 || !lmn_registry_cache_same_file(&st, &plugin->st)) {
        g_set_error(&local, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_OPEN,
                    "%s: the file changed or went away after it was scanned; it is not loaded "
                    "unscanned (run the command again to scan it)",
                    plugin->path);
    } else if ((now = load_here(plugin->path, &local)) != NULL) {
        g_autofree char *diff = summary_mismatch(plugin->summary, now);
        if (diff != NULL)
            g_set_error(&local, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_BAD_DESCRIPTOR,
                        "%s: the plugin no longer matches its scan: %s (the registry cache entry "
                        "is dropped, so the next run scans it again)",
                        plugin->path, diff);
    } else {
        GError *why = g_error_new(local->domain, local->code,
                                  "%s (it passed its scan, so it changed since; its registry cache "
                                  "entry is dropped)",
                                  local->message);
        g_error_free(local);
        local = why;
    }
    if (local != NULL) {
        if (reg->cache != NULL) {
            lmn_registry_cache_forget(reg->cache, plugin->key);
            lmn_registry_cache_save(reg->cache);
        }
        if (now != NULL)
            plugin_free(now);
        g_propagate_error(error, local);
        return FALSE;
    }

    /* The strings are the summary's, equal to the plugin's own; only what the summary lacks is
     * filled in, so a reader of the names never sees them change. */
    plugin->module = now->module;
    plugin->original = now->original;
    plugin->desc.abi_major = now->desc.abi_major;
    plugin->desc.abi_minor = now->desc.abi_minor;
    plugin->desc.init = now->desc.init;
    memcpy(plugin->desc.reserved, now->desc.reserved, sizeof(plugin->desc.reserved));
    for (guint i = 0; i < plugin->desc.n_features; i++) {
        plugin->features[i].params = now->features[i].params;
        plugin->features[i].vtable = now->features[i].vtable;
        memcpy(plugin->features[i].reserved, now->features[i].reserved,
               sizeof(plugin->features[i].reserved));
    }
    plugin->loaded = TRUE;
    plugin_free(now);
    return TRUE;
}

/* Makes sure @plugin's code is loaded; a failure is recorded once and given to every caller. */
static gboolean ensure_loaded(LmnRegistry *reg, Plugin *plugin, GError **error)
{
    g_mutex_lock(&reg->load_lock);
    if (!plugin->loaded && plugin->load_error == NULL &&
        !load_deferred(reg, plugin, &plugin->load_error))
        record_failure(reg, plugin->path, plugin->load_error);
    gboolean ok = plugin->loaded;
    GError *cause = ok ? NULL : g_error_copy(plugin->load_error);
    g_mutex_unlock(&reg->load_lock);
    if (cause != NULL)
        g_propagate_error(error, cause);
    return ok;
}

/* Registers the plugin's features; a name already taken is a DUPLICATE failure of this file.
 * Returns FALSE (with the first duplicate) when any feature was a duplicate. */
static gboolean register_plugin(LmnRegistry *reg, Plugin *plugin, GError **error)
{
    gboolean all_ok = TRUE;
    g_ptr_array_add(reg->plugins, plugin);
    for (guint i = 0; i < plugin->desc.n_features; i++) {
        const LmnFeatureDesc *f = &plugin->features[i];
        Feature *winner = g_hash_table_lookup(reg->by_name[f->kind], f->name);
        if (winner != NULL) {
            g_autoptr(GError) dup = g_error_new(
                LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_DUPLICATE,
                "%s: %s '%s' is also provided by %s, which comes first in the search path and "
                "wins; the copy in %s is ignored",
                plugin->path, lmn_feature_kind_name(f->kind), f->name, winner->pub.path,
                plugin->path);
            record_failure(reg, plugin->path, dup);
            /* Shadowing is often deliberate (a patched optimizer on --plugin-path), but a user
             * who did not mean it must learn which copy runs. */
            g_printerr("notice: %s '%s' of %s is shadowed by %s, which comes first in the "
                       "search path\n",
                       lmn_feature_kind_name(f->kind), f->name, plugin->path, winner->pub.path);
            if (all_ok)
                g_propagate_error(error, g_steal_pointer(&dup));
            all_ok = FALSE;
            continue;
        }
        Feature *feature = g_new0(Feature, 1);
        feature->pub.desc = f;
        feature->pub.plugin = &plugin->desc;
        feature->pub.path = g_strdup(plugin->path);
        feature->plugin = plugin;
        feature->registry = reg;
        g_ptr_array_add(reg->features, feature);
        g_hash_table_insert(reg->by_name[f->kind], (gpointer) f->name, feature);
    }
    return all_ok;
}

typedef enum {
    SCANNED_OK,      /* passed a scan (cached or now): *summary says what it provides */
    SCANNED_FAILED,  /* unusable: the error says why */
    SCAN_UNPROTECTED /* no scan possible: load it here, as before the scanner existed */
} ScanVerdict;

/* Whether @path passed its scan in a helper process, from the cache or scanning it now. */
static ScanVerdict scan_file(LmnRegistry *reg, const char *path, const char *key, GStatBuf *st,
                             LmnPluginSummary **summary, GError **error)
{
    if (g_stat(key, st) != 0)
        return SCAN_UNPROTECTED; /* opening it gives the loader's reason */
    if (reg->cache == NULL)
        reg->cache = lmn_registry_cache_open();
    GError *failure = NULL;
    if (lmn_registry_cache_lookup(reg->cache, key, st, summary, &failure)) {
        if (failure == NULL)
            return SCANNED_OK;
        g_propagate_error(error, failure);
        return SCANNED_FAILED;
    }
    /* Once the scanner could not run, trying again for every file only costs a fork each. */
    static gboolean scanner_missing = FALSE;
    if (g_atomic_int_get(&scanner_missing))
        return SCAN_UNPROTECTED;
    switch (lmn_plugin_scan(path, summary, &failure)) {
    case LMN_SCAN_OK:
        lmn_registry_cache_store(reg->cache, key, st, *summary, NULL);
        return SCANNED_OK;
    case LMN_SCAN_FAILED:
        lmn_registry_cache_store(reg->cache, key, st, NULL, failure);
        g_propagate_error(error, failure);
        return SCANNED_FAILED;
    case LMN_SCAN_UNAVAILABLE:
        break;
    }
    /* Without the scanner (a broken installation) plugins still load, as before it existed,
     * but the user is told once that a crashing plugin now takes the command down. */
    g_atomic_int_set(&scanner_missing, TRUE);
    static gsize warned = 0;
    if (g_once_init_enter(&warned)) {
        g_warning("%s; plugins are loaded without crash protection", failure->message);
        g_once_init_leave(&warned, 1);
    }
    g_error_free(failure);
    return SCAN_UNPROTECTED;
}

static Plugin *find_plugin(LmnRegistry *reg, const char *key)
{
    for (guint k = 0; k < reg->plugins->len; k++) {
        Plugin *plugin = g_ptr_array_index(reg->plugins, k);
        if (strcmp(plugin->key, key) == 0)
            return plugin;
    }
    return NULL;
}

/* Registers @path's features; @now: open the file before returning (an explicit load), instead
 * of when a feature is first used. */
static gboolean load_file(LmnRegistry *reg, const char *path, gboolean now, GError **error)
{
    char *key = canonical_path(path);
    gpointer status = g_hash_table_lookup(reg->seen, key);
    if (status != NULL) {
        gboolean loaded = GPOINTER_TO_INT(status) == FILE_LOADED;
        const GError *recorded = NULL;
        /* Asked again for a file that failed: give the recorded reason again. */
        for (guint k = 0; !loaded && recorded == NULL && k < reg->failures->len; k++) {
            LmnPluginFailure *failure = g_ptr_array_index(reg->failures, k);
            g_autofree char *fkey = canonical_path(failure->path);
            if (strcmp(fkey, key) == 0)
                recorded = failure->error;
        }
        Plugin *plugin = loaded && now ? find_plugin(reg, key) : NULL;
        g_free(key);
        if (plugin != NULL)
            return ensure_loaded(reg, plugin, error);
        if (loaded)
            return TRUE;
        if (recorded != NULL)
            g_propagate_error(error, g_error_copy(recorded));
        else
            g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_OPEN, "%s: failed earlier", path);
        return FALSE;
    }

    GError *local = NULL;
    Plugin *plugin = NULL;
    GStatBuf st;
    LmnPluginSummary *summary = NULL;
    switch (scan_file(reg, path, key, &st, &summary, &local)) {
    case SCANNED_OK:
        plugin = plugin_from_summary(path, key, &st, summary);
        if (now && !load_deferred(reg, plugin, &local))
            g_clear_pointer(&plugin, plugin_free);
        break;
    case SCANNED_FAILED:
        break;
    case SCAN_UNPROTECTED:
        plugin = load_here(path, &local);
        if (plugin != NULL) {
            plugin->key = g_strdup(key);
            plugin->loaded = TRUE;
        }
        break;
    }
    if (plugin == NULL) {
        g_hash_table_insert(reg->seen, key, GINT_TO_POINTER(FILE_FAILED));
        record_failure(reg, path, local);
        g_propagate_error(error, local);
        return FALSE;
    }
    g_hash_table_insert(reg->seen, key, GINT_TO_POINTER(FILE_LOADED));
    return register_plugin(reg, plugin, error);
}

gboolean lmn_registry_load_file(LmnRegistry *reg, const char *path, GError **error)
{
    g_return_val_if_fail(reg != NULL && path != NULL, FALSE);
    g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
    return load_file(reg, path, TRUE, error);
}

/* ---- search path ---- */

/* Whether this process runs from the build tree, so that `./build/cli/lamina` finds the plugins
 * built next to it without installing them. */
gboolean lmn_registry_running_from_build_tree(void)
{
    static gsize cached = 0;
    static gboolean result = FALSE;
    if (g_once_init_enter(&cached)) {
        g_autofree char *exe = g_file_read_link("/proc/self/exe", NULL);
        g_autofree char *root = canonical_path(LMN_BUILD_ROOT);
        g_autofree char *root_slash = g_strconcat(root, "/", NULL);
        result = exe != NULL && g_str_has_prefix(exe, root_slash);
        g_once_init_leave(&cached, 1);
    }
    return result;
}

gboolean lmn_registry_trust_environment(void)
{
    return getuid() == geteuid() && getgid() == getegid();
}

static void add_path_list(GPtrArray *dirs, const char *list)
{
    g_auto(GStrv) parts = g_strsplit(list, G_SEARCHPATH_SEPARATOR_S, -1);
    for (guint k = 0; parts[k] != NULL; k++) {
        if (parts[k][0] != '\0')
            g_ptr_array_add(dirs, g_strdup(parts[k]));
    }
}

static GPtrArray *compute_search_path(LmnRegistry *reg)
{
    GPtrArray *dirs = g_ptr_array_new_with_free_func(g_free);
    for (guint k = 0; k < reg->added_dirs->len; k++)
        g_ptr_array_add(dirs, g_strdup(g_ptr_array_index(reg->added_dirs, k)));

    if (reg->use_environment) {
        /* Like GIO's extra module path: a setuid program must not load code named by its
         * caller's environment. */
        gboolean trust_env = lmn_registry_trust_environment();

        const char *user = trust_env ? g_getenv("LAMINA_PLUGIN_PATH") : NULL;
        if (user != NULL)
            add_path_list(dirs, user);

        /* Read XDG_DATA_HOME directly: g_get_user_data_dir() caches its first answer. */
        const char *xdg = trust_env ? g_getenv("XDG_DATA_HOME") : NULL;
        if (xdg == NULL || !g_path_is_absolute(xdg))
            xdg = g_get_user_data_dir();
        g_ptr_array_add(dirs, g_build_filename(xdg, "lamina", "plugins", NULL));

        const char *system = trust_env ? g_getenv("LAMINA_PLUGIN_SYSTEM_PATH") : NULL;
        if (system != NULL)
            add_path_list(dirs, system); /* set but empty: no system directory at all */
        else if (lmn_registry_running_from_build_tree())
            add_path_list(dirs, LMN_BUILD_PLUGIN_PATH);
        else
            g_ptr_array_add(dirs, g_strdup(LMN_SYSTEM_PLUGIN_DIR));
    }

    /* A directory named twice (say, by --plugin-path and LAMINA_PLUGIN_PATH) is scanned once,
     * at its first position. */
    GPtrArray *unique = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GHashTable) keys = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (guint k = 0; k < dirs->len; k++) {
        const char *dir = g_ptr_array_index(dirs, k);
        char *key = canonical_path(dir);
        if (g_hash_table_contains(keys, key)) {
            g_free(key);
            continue;
        }
        g_hash_table_add(keys, key);
        g_ptr_array_add(unique, g_strdup(dir));
    }
    g_ptr_array_unref(dirs);
    return unique;
}

static gboolean is_plugin_file_name(const char *name)
{
    return strlen(name) > strlen("lamina-.so") && g_str_has_prefix(name, "lamina-") &&
           g_str_has_suffix(name, ".so");
}

static gint compare_strings(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static void scan_dir(LmnRegistry *reg, const char *dir)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GDir) d = g_dir_open(dir, 0, &error);
    if (d == NULL) {
        /* Most directories on the path need not exist (no user plugins, say). */
        g_debug("plugin directory %s not scanned: %s", dir, error->message);
        return;
    }
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    const char *name;
    while ((name = g_dir_read_name(d)) != NULL) {
        if (is_plugin_file_name(name))
            g_ptr_array_add(names, g_strdup(name));
    }
    g_ptr_array_sort(names, compare_strings);
    for (guint k = 0; k < names->len; k++) {
        g_autofree char *path = g_build_filename(dir, g_ptr_array_index(names, k), NULL);
        if (!g_file_test(path, G_FILE_TEST_IS_REGULAR))
            continue;
        load_file(reg, path, FALSE, NULL);
    }
}

gboolean lmn_registry_scan(LmnRegistry *reg, GError **error)
{
    g_return_val_if_fail(reg != NULL, FALSE);
    if (reg->search_path)
        g_ptr_array_unref(reg->search_path);
    reg->search_path = compute_search_path(reg);
    for (guint k = 0; k < reg->search_path->len; k++)
        scan_dir(reg, g_ptr_array_index(reg->search_path, k));
    reg->scanned = TRUE;
    if (reg->cache != NULL)
        lmn_registry_cache_save(reg->cache);
    return TRUE;
}

/* Lookups on a registry nobody filled scan first, so a forgotten scan() is not a mystery. */
static void ensure_scanned(LmnRegistry *reg)
{
    if (!reg->scanned && g_hash_table_size(reg->seen) == 0)
        lmn_registry_scan(reg, NULL);
}

const GPtrArray *lmn_registry_get_search_path(LmnRegistry *reg)
{
    g_return_val_if_fail(reg != NULL, NULL);
    if (reg->search_path == NULL)
        reg->search_path = compute_search_path(reg);
    return reg->search_path;
}

/* ---- lookup ---- */

static gint compare_features(gconstpointer a, gconstpointer b)
{
    const LmnFeature *fa = *(const LmnFeature *const *) a;
    const LmnFeature *fb = *(const LmnFeature *const *) b;
    return strcmp(fa->desc->name, fb->desc->name);
}

GPtrArray *lmn_registry_list(LmnRegistry *reg, LmnFeatureKind kind)
{
    g_return_val_if_fail(reg != NULL, NULL);
    g_return_val_if_fail((guint) kind < LMN_FEATURE_KIND_COUNT, NULL);
    ensure_scanned(reg);
    GPtrArray *out = g_ptr_array_new();
    GHashTableIter it;
    gpointer value;
    g_hash_table_iter_init(&it, reg->by_name[kind]);
    while (g_hash_table_iter_next(&it, NULL, &value))
        g_ptr_array_add(out, &((Feature *) value)->pub);
    g_ptr_array_sort(out, compare_features);
    return out;
}

GPtrArray *lmn_registry_list_failures(LmnRegistry *reg)
{
    g_return_val_if_fail(reg != NULL, NULL);
    ensure_scanned(reg);
    return reg->failures;
}

/* Runs the plugin's init once per process; returns FALSE with the (cached) reason. */
static gboolean run_init(const Feature *feature, GError **error)
{
    const Plugin *plugin = feature->plugin;
    if (plugin->desc.init == NULL)
        return TRUE;

    g_mutex_lock(&init_lock);
    if (init_states == NULL)
        init_states = g_hash_table_new(g_direct_hash, g_direct_equal);
    InitState *state = g_hash_table_lookup(init_states, plugin->original);
    if (state == NULL) {
        state = g_new0(InitState, 1);
        g_hash_table_insert(init_states, (gpointer) plugin->original, state);
    }
    if (!state->done) {
        GError *local = NULL;
        if (!plugin->desc.init(&local) && local == NULL)
            local = g_error_new_literal(LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_INIT_FAILED,
                                        "init() returned FALSE without a reason");
        state->error = local;
        state->done = TRUE;
    }
    GError *cause = state->error ? g_error_copy(state->error) : NULL;
    g_mutex_unlock(&init_lock);

    if (cause == NULL)
        return TRUE;
    if (cause->domain == LMN_PLUGIN_ERROR && cause->code == LMN_PLUGIN_ERROR_UNSUPPORTED)
        g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_UNSUPPORTED,
                    "%s '%s' (%s) is not usable on this machine: %s",
                    lmn_feature_kind_name(feature->pub.desc->kind), feature->pub.desc->name,
                    feature->pub.path, cause->message);
    else
        g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_INIT_FAILED,
                    "%s: plugin '%s' failed to initialise: %s", feature->pub.path,
                    plugin->desc.name, cause->message);
    g_error_free(cause);
    return FALSE;
}

/* Whether a failed file's name suggests it provides @name: "lamina-adam.so" or
 * "lamina-optim-adam.so" for "adam" (@name bounded by the ends, '_' or '.'). */
static gboolean file_name_suggests(const char *path, const char *name)
{
    g_autofree char *base = g_path_get_basename(path);
    if (!is_plugin_file_name(base))
        return FALSE;
    g_autofree char *stem =
        g_strndup(base + strlen("lamina-"), strlen(base) - strlen("lamina-") - strlen(".so"));
    /* File names use '-' where feature names use '_': "lamina-needs-helper.so". */
    g_strdelimit(stem, "-", '_');
    gsize len = strlen(name);
    for (const char *p = strstr(stem, name); p != NULL; p = strstr(p + 1, name)) {
        gboolean left = p == stem || p[-1] == '_' || p[-1] == '.';
        gboolean right = p[len] == '\0' || p[len] == '_' || p[len] == '.';
        if (left && right)
            return TRUE;
    }
    return FALSE;
}

const LmnFeature *lmn_registry_lookup(LmnRegistry *reg, LmnFeatureKind kind, const char *name,
                                      GError **error)
{
    g_return_val_if_fail(reg != NULL && name != NULL, NULL);
    g_return_val_if_fail((guint) kind < LMN_FEATURE_KIND_COUNT, NULL);
    g_return_val_if_fail(error == NULL || *error == NULL, NULL);
    ensure_scanned(reg);

    Feature *feature = g_hash_table_lookup(reg->by_name[kind], name);
    if (feature != NULL) {
        if (!ensure_loaded(reg, feature->plugin, error)) {
            g_prefix_error(error, "%s '%s' cannot be used: ", lmn_feature_kind_name(kind), name);
            return NULL;
        }
        return run_init(feature, error) ? &feature->pub : NULL;
    }

    const char *kind_name = lmn_feature_kind_name(kind);
    g_autoptr(GPtrArray) known = lmn_registry_list(reg, kind);
    g_autofree const char **names = g_new0(const char *, known->len + 1);
    GString *list = g_string_new(NULL);
    for (guint k = 0; k < known->len; k++) {
        const LmnFeature *f = g_ptr_array_index(known, k);
        names[k] = f->desc->name;
        g_string_append_printf(list, "%s%s", k ? ", " : "", f->desc->name);
    }
    if (known->len == 0)
        g_string_append(list, "none");
    g_autofree char *known_text = g_string_free(list, FALSE);

    /* A file that failed to load and looks like it provides @name explains the absence better
     * than any list. */
    for (guint k = 0; k < reg->failures->len; k++) {
        const LmnPluginFailure *failure = g_ptr_array_index(reg->failures, k);
        if (g_error_matches(failure->error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_DUPLICATE))
            continue;
        if (file_name_suggests(failure->path, name)) {
            g_set_error(error, LMN_PLUGIN_ERROR, failure->error->code,
                        "%s '%s' is not available: %s; known %ss: %s", kind_name, name,
                        failure->error->message, kind_name, known_text);
            return NULL;
        }
    }

    const char *guess = lmn_suggest(name, names);
    g_autofree char *hint = guess ? g_strdup_printf(" (did you mean '%s'?)", guess) : NULL;
    g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_NOT_FOUND,
                "unknown %s '%s'%s; known %ss: %s", kind_name, name, hint ? hint : "", kind_name,
                known_text);
    return NULL;
}

gboolean lmn_registry_load_feature(LmnRegistry *reg, const LmnFeature *feature, GError **error)
{
    g_return_val_if_fail(reg != NULL && feature != NULL, FALSE);
    g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
    const Feature *f = (const Feature *) feature;
    g_return_val_if_fail(f->registry == reg, FALSE);
    if (!ensure_loaded(reg, f->plugin, error)) {
        g_prefix_error(error,
                       "%s '%s' cannot be used: ", lmn_feature_kind_name(feature->desc->kind),
                       feature->desc->name);
        return FALSE;
    }
    return TRUE;
}

LmnParams *lmn_registry_validate_params(const LmnFeature *feature, const char *const *keys,
                                        const char *const *values, const char *where,
                                        GError **error)
{
    g_return_val_if_fail(feature != NULL && feature->desc != NULL, NULL);
    /* A feature from lmn_registry_list() may not be loaded yet, and its schema is in the file:
     * validating against the summary's NULL schema would reject every key. */
    const Feature *f = (const Feature *) feature;
    if (!lmn_registry_load_feature(f->registry, feature, error))
        return NULL;
    return lmn_params_new_from_strings(feature->desc->params, keys, values, where, error);
}
