/* Lamina — private interfaces between the registry (registry.c), the out-of-process plugin scan
 * (scan.c), the registry cache (registry-cache.c) and the lamina-plugin-scanner program, which
 * links liblamina so that it checks a plugin with exactly the code a load uses.
 */
#pragma once

#include <lamina/plugin.h>

#include <glib.h>
#include <glib/gstdio.h>

G_BEGIN_DECLS

/* The report the scanner writes and the registry reads: a key file with this group. */
#define LMN_SCAN_REPORT_GROUP "lamina-plugin-scan"

/* More features than this in one file means a garbage descriptor, not a big plugin. */
#define LMN_PLUGIN_MAX_FEATURES 4096

/* What a scan learns about a usable plugin: everything `lamina plugins` lists and a lookup needs
 * to find a feature, so that the registry can offer the plugin's features without opening the
 * file until one of them is used. */
typedef struct {
    LmnFeatureKind kind;
    char *name;
    char *description; /* NULL when the plugin gives none */
} LmnFeatureSummary;

typedef struct {
    char *name;
    char *version;
    char *license;     /* NULL when the plugin gives none */
    char *description; /* NULL when the plugin gives none */
    guint n_features;
    LmnFeatureSummary *features;
} LmnPluginSummary;

/** lmn_plugin_summary_free: frees @summary (NULL is fine). */
void lmn_plugin_summary_free(LmnPluginSummary *summary);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LmnPluginSummary, lmn_plugin_summary_free)

/** lmn_plugin_summary_copy: Returns: (transfer full): a deep copy of @summary */
LmnPluginSummary *lmn_plugin_summary_copy(const LmnPluginSummary *summary);

/**
 * lmn_plugin_summary_save:
 * Writes @summary into @group of @kf (keys "plugin", "version", "license", "description",
 * "features" as KIND:NAME, "description.N"); the scanner's report and the cache use it.
 */
void lmn_plugin_summary_save(const LmnPluginSummary *summary, GKeyFile *kf, const char *group);

/**
 * lmn_plugin_summary_load:
 * Reads what lmn_plugin_summary_save() wrote, checking it as the registry would check a
 * descriptor's names (a cache file is only as trustworthy as the user's home directory).
 * Returns: (transfer full): the summary, or NULL with a message saying what is malformed
 */
LmnPluginSummary *lmn_plugin_summary_load(GKeyFile *kf, const char *group, char **problem);

/**
 * lmn_registry_valid_feature_name:
 * Returns: whether @name is non-empty and uses only a-z, 0-9, '_' and '.'
 */
gboolean lmn_registry_valid_feature_name(const char *name);

/**
 * lmn_registry_probe_file:
 * @path: the plugin file, as the registry would name it in messages
 * @report: where the summary of a good plugin goes (lmn_plugin_summary_save())
 *
 * Opens @path, calls its query and checks the descriptor exactly as lmn_registry_load_file()
 * does, without registering anything.  Meant for the scanner process: the module stays loaded.
 * Returns: FALSE with the LMN_PLUGIN_ERROR a load would give
 */
gboolean lmn_registry_probe_file(const char *path, GKeyFile *report, GError **error);

/**
 * lmn_registry_running_from_build_tree:
 * Returns: whether this process's executable lies in the build tree liblamina was built in, so
 *   that it uses the build tree's plugins and scanner instead of the installed ones
 */
gboolean lmn_registry_running_from_build_tree(void);

/**
 * lmn_registry_trust_environment:
 * Returns: FALSE in a setuid or setgid process, which must not take paths from its caller's
 *   environment (plugin directories, the scanner, the cache)
 */
gboolean lmn_registry_trust_environment(void);

typedef enum {
    LMN_SCAN_OK,         /* the plugin's query and descriptor passed in the helper process */
    LMN_SCAN_FAILED,     /* the plugin is unusable: the GError says why */
    LMN_SCAN_UNAVAILABLE /* no helper process could run: the caller decides (GError says why) */
} LmnScanResult;

/**
 * lmn_plugin_scan:
 * @path: the plugin file
 * @summary: (out): what the scanner found in a usable plugin (set only for LMN_SCAN_OK)
 *
 * Runs lamina-plugin-scanner on @path under a time limit (LAMINA_PLUGIN_SCAN_TIMEOUT seconds,
 * default 5).  A plugin that crashes, exits or hangs in its query comes back as
 * LMN_SCAN_FAILED with LMN_PLUGIN_ERROR_SCAN_FAILED naming the signal, the exit status or the
 * time limit; a plugin the checks reject comes back with the load's own error.
 */
LmnScanResult lmn_plugin_scan(const char *path, LmnPluginSummary **summary, GError **error);

/* The registry cache: one verdict (usable with the plugin's summary, or failed with a reason)
 * per plugin file, valid while the file keeps its size, modification and change times and
 * inode.  The change time (ctime) cannot be set back by utimensat(), so a file rewritten in place
 * and given its old mtime back is still seen as changed. */
typedef struct _LmnRegistryCache LmnRegistryCache;

/**
 * lmn_registry_cache_open:
 * Reads the cache file (LAMINA_REGISTRY_CACHE, else $XDG_CACHE_HOME/lamina/registry-ABI.ini);
 * a missing, unreadable or corrupt file gives an empty cache.  LAMINA_NO_REGISTRY_CACHE=1 gives
 * a cache that remembers nothing.
 * Returns: (transfer full): the cache (never NULL)
 */
LmnRegistryCache *lmn_registry_cache_open(void);

/**
 * lmn_registry_cache_lookup:
 * @key: the file's canonical path
 * @st: the file's current status
 * @summary: (out) (transfer full): the plugin's summary when the verdict was "usable", else NULL
 * @failure: (out): the recorded reason when the verdict was "failed", else NULL
 * Returns: whether a verdict for this file as @st describes it is recorded
 */
gboolean lmn_registry_cache_lookup(LmnRegistryCache *cache, const char *key, const GStatBuf *st,
                                   LmnPluginSummary **summary, GError **failure);

/**
 * lmn_registry_cache_store:
 * Records the verdict for @key as of @st: usable with @summary when @failure is NULL.
 */
void lmn_registry_cache_store(LmnRegistryCache *cache, const char *key, const GStatBuf *st,
                              const LmnPluginSummary *summary, const GError *failure);

/**
 * lmn_registry_cache_forget:
 * Drops the verdict for @key (a file that no longer matches its scan), so that the next
 * lookup misses and the file is scanned again.
 */
void lmn_registry_cache_forget(LmnRegistryCache *cache, const char *key);

/**
 * lmn_registry_cache_same_file:
 * Returns: whether @a and @b describe the same file contents as far as the cache can tell
 *   (device, inode, size, mtime and ctime)
 */
gboolean lmn_registry_cache_same_file(const GStatBuf *a, const GStatBuf *b);

/**
 * lmn_registry_cache_save:
 * Writes the cache file atomically when something changed, dropping entries of files that are
 * gone.  Failing to write is not an error: the next run scans again.
 */
void lmn_registry_cache_save(LmnRegistryCache *cache);

/** lmn_registry_cache_free: frees the cache without saving it. */
void lmn_registry_cache_free(LmnRegistryCache *cache);

G_END_DECLS
