/* Lamina — the plugin registry.
 *
 * A registry scans plugin directories, loads each lamina-*.so, checks its descriptor and keeps
 * its features by kind and name.  Directories are searched in this order, and for a feature
 * name the first one found wins (later ones are reported as DUPLICATE, naming both files):
 *   1. directories added with lmn_registry_add_dir() (the CLI's --plugin-path), in order;
 *   2. LAMINA_PLUGIN_PATH, a ':'-separated list of directories;
 *   3. $XDG_DATA_HOME/lamina/plugins;
 *   4. the system directory: LAMINA_PLUGIN_SYSTEM_PATH if set (':'-separated), else the build
 *      tree's plugin directories when running from a build tree, else <libdir>/lamina-1/plugins.
 * A plugin that fails to load is recorded with its reason and skipped; the rest keeps working.
 * Plugins are never unloaded.
 *
 * Plugins are loaded lazily: a file that passed its scan (below) is registered from what the
 * scan found, its names, versions and descriptions, and opened in this process only when one of
 * its features is looked up for use (lmn_registry_lookup(), lmn_registry_load_feature(),
 * lmn_registry_validate_params()) or loaded explicitly (lmn_registry_load_file()).  Which copy of
 * a feature name wins is decided from the scans, exactly as if every file had been opened.
 *
 * A file is opened in this process only after lamina-plugin-scanner, a helper process, has
 * opened it and checked its descriptor: a plugin that crashes, exits or hangs there (beyond
 * LAMINA_PLUGIN_SCAN_TIMEOUT seconds, default 5) is recorded as LMN_PLUGIN_ERROR_SCAN_FAILED.
 * The scanner's verdicts are cached per path, size, inode, mtime and ctime
 * (LAMINA_REGISTRY_CACHE, default $XDG_CACHE_HOME/lamina/registry-1.ini;
 * LAMINA_NO_REGISTRY_CACHE=1 turns it off), so only new or changed files cost a scan.  A file
 * that changed after its scan is not opened: the lookup that needed it fails naming the file,
 * and its cache entry is dropped.  Without the scanner (a broken installation) every file is
 * opened at scan time, as before.  A feature name provided twice gets a one-line notice (a
 * g_message) naming both files.
 */
#pragma once

#include <lamina/error.h>
#include <lamina/plugin.h>

G_BEGIN_DECLS

typedef struct _LmnRegistry LmnRegistry;

/**
 * LmnFeature: a feature, owned by its registry.
 * Until its plugin is loaded (a feature from lmn_registry_list() may not be), @desc and @plugin
 * hold only what listing needs: kind, names, versions, license and descriptions; the schema
 * (desc->params), the vtable and plugin->init are NULL.  A feature from lmn_registry_lookup() or
 * after lmn_registry_load_feature() is loaded, and the same pointers then hold everything.
 */
typedef struct {
    const LmnFeatureDesc *desc; /* the plugin's descriptor entry (a zero-extended copy) */
    const LmnPluginDesc *plugin;
    char *path; /* the file it came from */
    gpointer reserved[2];
} LmnFeature;

/** LmnPluginFailure: a file the registry could not use, and why. */
typedef struct {
    char *path;
    GError *error; /* LMN_PLUGIN_ERROR */
} LmnPluginFailure;

/** lmn_registry_new: Returns: (transfer full): an empty registry (nothing scanned yet). */
LmnRegistry *lmn_registry_new(void);
/** lmn_registry_free: frees the registry (loaded modules stay resident). */
void lmn_registry_free(LmnRegistry *registry);
/** lmn_registry_add_dir: adds a highest-priority directory (after earlier added ones). */
void lmn_registry_add_dir(LmnRegistry *registry, const char *dir);
/**
 * lmn_registry_set_use_environment:
 * Whether scan() consults LAMINA_PLUGIN_PATH, XDG_DATA_HOME and the system directory (default
 * TRUE).  Tests turn it off to see only their own directories.
 */
void lmn_registry_set_use_environment(LmnRegistry *registry, gboolean use);
/**
 * lmn_registry_scan:
 * Registers every plugin on the search path (each new or changed file scanned out of process
 * first; a file that passed is opened only when a feature of it is used) and saves the registry
 * cache.  Per-file failures are recorded, not returned.
 * Returns: FALSE only when nothing can be scanned at all (never in practice); kept for symmetry
 */
gboolean lmn_registry_scan(LmnRegistry *registry, GError **error);
/**
 * lmn_registry_load_file:
 * Loads one plugin file explicitly, scanning it out of process first as scan() would and opening
 * it now (a failure is both recorded and returned).
 * Returns: FALSE with a LMN_PLUGIN_ERROR
 */
gboolean lmn_registry_load_file(LmnRegistry *registry, const char *path, GError **error);
/**
 * lmn_registry_lookup:
 * Finds feature @name of @kind, loading its plugin if it is not yet and running its init on
 * first use (once per process).  Like lmn_registry_list() and lmn_registry_list_failures(), it
 * scans first when the registry has neither scanned nor loaded a file yet.
 * Returns: (transfer none): the loaded feature, or NULL with LMN_PLUGIN_ERROR_NOT_FOUND (listing
 *   the known names of that kind and a "did you mean"), a recorded load failure of a file that
 *   looked like it provides @name, the error of loading its file now (one that changed since
 *   its scan; the message names the file), or the plugin's init error
 */
const LmnFeature *lmn_registry_lookup(LmnRegistry *registry, LmnFeatureKind kind,
                                      const char *name, GError **error);
/**
 * lmn_registry_list:
 * Lists without loading anything: the features may be unloaded (see #LmnFeature); call
 * lmn_registry_load_feature() before touching a listed feature's schema or vtable.
 * Returns: (transfer container): the features of @kind sorted by name (LmnFeature *)
 */
GPtrArray *lmn_registry_list(LmnRegistry *registry, LmnFeatureKind kind);
/**
 * lmn_registry_load_feature:
 * Loads @feature's plugin if it is not yet, so that desc->params, desc->vtable and
 * plugin->init are set; unlike lmn_registry_lookup() it does not run the plugin's init.
 * Returns: FALSE with a LMN_PLUGIN_ERROR naming the file when it cannot be loaded (it changed
 *   since its scan, for one); the failure is recorded and given again on every later attempt
 */
gboolean lmn_registry_load_feature(LmnRegistry *registry, const LmnFeature *feature,
                                   GError **error);
/**
 * lmn_registry_list_failures:
 * Returns: (transfer none): the files that failed, with reasons (LmnPluginFailure *)
 */
GPtrArray *lmn_registry_list_failures(LmnRegistry *registry);
/**
 * lmn_registry_get_search_path:
 * Returns: (transfer none): the directories scan() used, in order
 */
const GPtrArray *lmn_registry_get_search_path(LmnRegistry *registry);

/**
 * lmn_registry_validate_params:
 * Validates user keys for @feature against its schema (lmn_params_new_from_strings with the
 * feature's schema and @where in messages), loading its plugin first if it is not yet.
 * Returns: (transfer full): the params or NULL with a LMN_CONFIG_ERROR (or the
 *   LMN_PLUGIN_ERROR of lmn_registry_load_feature())
 */
LmnParams *lmn_registry_validate_params(const LmnFeature *feature, const char *const *keys,
                                        const char *const *values, const char *where,
                                        GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(LmnRegistry, lmn_registry_free)

G_END_DECLS
