/* Lamina — private interfaces between the registry (registry.c), the out-of-process plugin scan
 * (scan.c), the registry cache (registry-cache.c) and the lamina-plugin-scanner program, which
 * links liblamina so that it checks a plugin with exactly the code a load uses.
 */
#pragma once

#include <glib.h>
#include <glib/gstdio.h>

G_BEGIN_DECLS

/* The report the scanner writes and the registry reads: a key file with this group. */
#define LMN_SCAN_REPORT_GROUP "lamina-plugin-scan"

/**
 * lmn_registry_probe_file:
 * @path: the plugin file, as the registry would name it in messages
 * @report: where the summary of a good plugin goes (keys "plugin", "version", "features")
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
 *
 * Runs lamina-plugin-scanner on @path under a time limit (LAMINA_PLUGIN_SCAN_TIMEOUT seconds,
 * default 5).  A plugin that crashes, exits or hangs in its query comes back as
 * LMN_SCAN_FAILED with LMN_PLUGIN_ERROR_SCAN_FAILED naming the signal, the exit status or the
 * time limit; a plugin the checks reject comes back with the load's own error.
 */
LmnScanResult lmn_plugin_scan(const char *path, GError **error);

/* The registry cache: one verdict (usable, or failed with a reason) per plugin file, valid
 * while the file keeps its size and modification time. */
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
 * @failure: (out): the recorded reason when the verdict was "failed", else NULL
 * Returns: whether a verdict for this path, size and mtime is recorded
 */
gboolean lmn_registry_cache_lookup(LmnRegistryCache *cache, const char *key, const GStatBuf *st,
                                   GError **failure);

/**
 * lmn_registry_cache_store:
 * Records the verdict for @key as of @st: usable when @failure is NULL.
 */
void lmn_registry_cache_store(LmnRegistryCache *cache, const char *key, const GStatBuf *st,
                              const GError *failure);

/**
 * lmn_registry_cache_save:
 * Writes the cache file atomically when something changed, dropping entries of files that are
 * gone.  Failing to write is not an error: the next run scans again.
 */
void lmn_registry_cache_save(LmnRegistryCache *cache);

/** lmn_registry_cache_free: frees the cache without saving it. */
void lmn_registry_cache_free(LmnRegistryCache *cache);

G_END_DECLS
