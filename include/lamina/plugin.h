/* Lamina — the plugin ABI.
 *
 * A plugin is a shared object named lamina-*.so that exports exactly one symbol:
 *
 *     const LmnPluginDesc *lamina_plugin_query(void);
 *
 * returning static data and doing nothing else.  Build with -fvisibility=hidden and use
 * LMN_PLUGIN_DEFINE() so only that symbol is exported.  The core accepts the plugin iff
 * abi_major == LMN_ABI_MAJOR and abi_minor <= LMN_ABI_MINOR, then checks every descriptor field
 * before any plugin code (other than the query) runs.
 *
 * Compatibility rules: every struct here and every vtable begins with struct_size; members are
 * only ever appended; the core reads a member only when it lies inside struct_size and, for
 * optional function members, is non-NULL.  A change of meaning gets a new member name.
 */
#pragma once

#include <lamina/params.h>
#include <lamina/version.h>

G_BEGIN_DECLS

/** LmnFeatureKind: what a feature is.  Stored in files: append only. */
typedef enum {
    LMN_FEATURE_BACKEND = 0,
    LMN_FEATURE_LAYER = 1,
    LMN_FEATURE_OPTIMIZER = 2,
    LMN_FEATURE_INITIALIZER = 3,
    LMN_FEATURE_SCHEDULE = 4,
    LMN_FEATURE_COMMUNICATOR = 5, /* LmnCommunicatorVTable (lamina/communicator.h) */
    LMN_FEATURE_KIND_COUNT
} LmnFeatureKind;

/**
 * LmnFeatureDesc:
 * @kind: what it is
 * @name: the name configs use ("adam"); lower-case letters, digits, '_' and '.'
 * @description: one line
 * @params: hyperparameter schema, NULL-name-terminated (may be NULL: no keys)
 * @vtable: the kind's vtable (LmnLayerVTable, LmnOptimizerVTable, ...), beginning with its
 *   struct_size
 */
typedef struct {
    guint32 struct_size;
    LmnFeatureKind kind;
    const char *name;
    const char *description;
    const LmnParamSpec *params;
    const void *vtable;
    gpointer reserved[4];
} LmnFeatureDesc;

/**
 * LMN_FEATURE: an #LmnFeatureDesc initializer with struct_size filled in, for a plugin's static
 * feature table:
 * |[
 * static const LmnFeatureDesc features[] = {
 *     LMN_FEATURE(LMN_FEATURE_OPTIMIZER, "lion", "sign-based momentum", lion_params, &lion_vt),
 * };
 * ]|
 */
#define LMN_FEATURE(kind_, name_, description_, params_, vtable_)                                  \
    {                                                                                              \
        .struct_size = sizeof(LmnFeatureDesc), .kind = (kind_), .name = (name_),                   \
        .description = (description_), .params = (params_), .vtable = (vtable_),                   \
    }

/**
 * LmnPluginDesc:
 * @name: the plugin's name ("lamina.sgd", "example.lion")
 * @version: the plugin's own version string
 * @license: SPDX identifier
 * @description: one line
 * @n_features, @features: what it provides
 * @init: (optional) runs once, the first time one of the plugin's features is used; a FALSE
 *   return with LMN_PLUGIN_ERROR_UNSUPPORTED means "not usable here" (shown, not an error)
 */
typedef struct {
    guint32 struct_size;
    guint32 abi_major;
    guint32 abi_minor;
    const char *name;
    const char *version;
    const char *license;
    const char *description;
    guint n_features;
    const LmnFeatureDesc *features;
    gboolean (*init)(GError **error);
    gpointer reserved[8];
} LmnPluginDesc;

/** The entry point's name, for loaders and error messages. */
#define LMN_PLUGIN_ENTRY_POINT "lamina_plugin_query"

#if defined(__GNUC__)
#define LMN_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define LMN_PLUGIN_EXPORT
#endif

/** LMN_PLUGIN_DEFINE: defines the entry point returning the static descriptor @desc. */
#define LMN_PLUGIN_DEFINE(desc)                                                                    \
    LMN_PLUGIN_EXPORT const LmnPluginDesc *lamina_plugin_query(void);                              \
    LMN_PLUGIN_EXPORT const LmnPluginDesc *lamina_plugin_query(void)                               \
    {                                                                                              \
        return &(desc);                                                                            \
    }

/**
 * LMN_PLUGIN_DEFINE_FEATURES:
 * @name_: the plugin's name ("example.lion")
 * @version_: its own version string
 * @license_: SPDX identifier
 * @description_: one line
 * @features_: a static #LmnFeatureDesc array (its element count is taken with G_N_ELEMENTS)
 * Defines the plugin's descriptor for this ABI, without an init(), and the entry point returning
 * it.  Write it last in the file, without a trailing semicolon:
 * |[
 * LMN_PLUGIN_DEFINE_FEATURES("example.lion", "1.0", "MIT", "the Lion optimizer", lion_features)
 * ]|
 * A plugin with an init() defines its #LmnPluginDesc itself and uses LMN_PLUGIN_DEFINE().
 */
#define LMN_PLUGIN_DEFINE_FEATURES(name_, version_, license_, description_, features_)             \
    static const LmnPluginDesc lmn_plugin_desc_ = {                                                \
        .struct_size = sizeof(LmnPluginDesc),                                                      \
        .abi_major = LMN_ABI_MAJOR,                                                                \
        .abi_minor = LMN_ABI_MINOR,                                                                \
        .name = (name_),                                                                           \
        .version = (version_),                                                                     \
        .license = (license_),                                                                     \
        .description = (description_),                                                             \
        .n_features = G_N_ELEMENTS(features_),                                                     \
        .features = (features_),                                                                   \
    };                                                                                             \
    LMN_PLUGIN_DEFINE(lmn_plugin_desc_)

/**
 * LMN_VTABLE_HAS: whether @vt (a pointer to a vtable) has a non-NULL member @member inside its
 * struct_size.  The core calls optional members only through this check.
 */
#define LMN_VTABLE_HAS(vt, member)                                                                 \
    ((vt) != NULL &&                                                                               \
     (vt)->struct_size >= G_STRUCT_OFFSET(__typeof__(*(vt)), member) + sizeof((vt)->member) &&    \
     (vt)->member != NULL)

/** lmn_feature_kind_name: Returns: (transfer none): "backend", "layer", "optimizer", ... */
const char *lmn_feature_kind_name(LmnFeatureKind kind);

G_END_DECLS
