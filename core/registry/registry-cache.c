/* Lamina — the registry cache: what the plugin scanner said about each file.
 *
 * Scanning a plugin out of process costs a process start, so the verdict is kept, keyed by the
 * file's canonical path, size, inode and modification and change times (nanoseconds): a new or
 * changed file is scanned again, an unchanged one is not, whether it was usable or failed (a
 * plugin that crashed once is not run again until it changes).  A usable plugin's entry holds
 * its summary (names, versions, descriptions of the plugin and its features), from which the
 * registry offers the features without opening the file; the change time is part of the key
 * because, unlike the mtime, no unprivileged program can set it back after rewriting a file.  The
 * verdicts also depend on the checks this core makes, so the cache names the liblamina file it was
 * written by (size and mtime) and is discarded when that changes.
 *
 * The file is a GKeyFile, written atomically (write and rename), so a reader sees an old or a
 * new cache, never half of one; a cache that does not parse is ignored and rewritten.  Two
 * processes writing at once lose one's additions, which only costs a scan later.
 */
#define _GNU_SOURCE /* dladdr */
#include "registry-internal.h"

#include <lamina/error.h>
#include <lamina/version.h>

#include <dlfcn.h>
#include <errno.h>
#include <string.h>

#define CACHE_GROUP "registry"
/* 2: entries carry ctime, inode and the plugin's summary (format 1 had only the verdict). */
#define CACHE_FORMAT 2

typedef struct {
    char *path;
    gint64 size;
    gint64 mtime_ns;
    gint64 ctime_ns;
    guint64 inode;
    LmnPluginSummary *summary; /* usable: what the scanner found */
    GError *failure;           /* NULL: usable */
} Entry;

struct _LmnRegistryCache {
    char *file;         /* NULL: caching is off */
    char *core;         /* this liblamina's identity */
    GHashTable *by_key; /* canonical path -> Entry * */
    gboolean dirty;
};

static void entry_free(gpointer data)
{
    Entry *entry = data;
    g_free(entry->path);
    lmn_plugin_summary_free(entry->summary);
    g_clear_error(&entry->failure);
    g_free(entry);
}

static gint64 mtime_ns(const GStatBuf *st)
{
    return (gint64) st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static gint64 ctime_ns(const GStatBuf *st)
{
    return (gint64) st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
}

gboolean lmn_registry_cache_same_file(const GStatBuf *a, const GStatBuf *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           mtime_ns(a) == mtime_ns(b) && ctime_ns(a) == ctime_ns(b);
}

/* ---- plugin summaries ---- */

void lmn_plugin_summary_free(LmnPluginSummary *summary)
{
    if (summary == NULL)
        return;
    g_free(summary->name);
    g_free(summary->version);
    g_free(summary->license);
    g_free(summary->description);
    for (guint i = 0; i < summary->n_features; i++) {
        g_free(summary->features[i].name);
        g_free(summary->features[i].description);
    }
    g_free(summary->features);
    g_free(summary);
}

LmnPluginSummary *lmn_plugin_summary_copy(const LmnPluginSummary *summary)
{
    LmnPluginSummary *copy = g_new0(LmnPluginSummary, 1);
    copy->name = g_strdup(summary->name);
    copy->version = g_strdup(summary->version);
    copy->license = g_strdup(summary->license);
    copy->description = g_strdup(summary->description);
    copy->n_features = summary->n_features;
    copy->features = g_new0(LmnFeatureSummary, summary->n_features);
    for (guint i = 0; i < summary->n_features; i++) {
        copy->features[i].kind = summary->features[i].kind;
        copy->features[i].name = g_strdup(summary->features[i].name);
        copy->features[i].description = g_strdup(summary->features[i].description);
    }
    return copy;
}

void lmn_plugin_summary_save(const LmnPluginSummary *summary, GKeyFile *kf, const char *group)
{
    g_key_file_set_string(kf, group, "plugin", summary->name);
    g_key_file_set_string(kf, group, "version", summary->version);
    /* An absent key is a NULL field, so that the listing shows what the plugin itself gives. */
    if (summary->license != NULL)
        g_key_file_set_string(kf, group, "license", summary->license);
    if (summary->description != NULL)
        g_key_file_set_string(kf, group, "description", summary->description);
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < summary->n_features; i++) {
        const LmnFeatureSummary *f = &summary->features[i];
        g_ptr_array_add(names, g_strdup_printf("%s:%s", lmn_feature_kind_name(f->kind), f->name));
        if (f->description != NULL) {
            g_autofree char *key = g_strdup_printf("description.%u", i);
            g_key_file_set_string(kf, group, key, f->description);
        }
    }
    g_key_file_set_string_list(kf, group, "features", (const char *const *) names->pdata,
                               names->len);
}

static gboolean parse_kind(const char *text, LmnFeatureKind *kind)
{
    for (guint k = 0; k < LMN_FEATURE_KIND_COUNT; k++) {
        if (strcmp(text, lmn_feature_kind_name(k)) == 0) {
            *kind = k;
            return TRUE;
        }
    }
    return FALSE;
}

LmnPluginSummary *lmn_plugin_summary_load(GKeyFile *kf, const char *group, char **problem)
{
    g_autoptr(LmnPluginSummary) summary = g_new0(LmnPluginSummary, 1);
    summary->name = g_key_file_get_string(kf, group, "plugin", NULL);
    summary->version = g_key_file_get_string(kf, group, "version", NULL);
    summary->license = g_key_file_get_string(kf, group, "license", NULL);
    summary->description = g_key_file_get_string(kf, group, "description", NULL);
    if (summary->name == NULL || summary->name[0] == '\0' || summary->version == NULL ||
        summary->version[0] == '\0') {
        *problem = g_strdup("no plugin name or version");
        return NULL;
    }
    gsize n = 0;
    g_auto(GStrv) names = g_key_file_get_string_list(kf, group, "features", &n, NULL);
    if (names == NULL || n == 0 || n > LMN_PLUGIN_MAX_FEATURES) {
        *problem = g_strdup_printf("%zu features listed", names ? n : 0);
        return NULL;
    }
    summary->features = g_new0(LmnFeatureSummary, n);
    summary->n_features = (guint) n;
    for (guint i = 0; i < n; i++) {
        LmnFeatureSummary *f = &summary->features[i];
        const char *colon = strchr(names[i], ':');
        g_autofree char *kind = colon ? g_strndup(names[i], colon - names[i]) : NULL;
        if (kind == NULL || !parse_kind(kind, &f->kind) ||
            !lmn_registry_valid_feature_name(colon + 1)) {
            *problem = g_strdup_printf("feature '%s' is not KIND:NAME", names[i]);
            return NULL;
        }
        f->name = g_strdup(colon + 1);
        g_autofree char *key = g_strdup_printf("description.%u", i);
        f->description = g_key_file_get_string(kf, group, key, NULL);
        /* The registry keys features by kind and name: a plugin has each pair once. */
        for (guint j = 0; j < i; j++) {
            if (summary->features[j].kind == f->kind &&
                strcmp(summary->features[j].name, f->name) == 0) {
                *problem = g_strdup_printf("feature '%s' is listed twice", names[i]);
                return NULL;
            }
        }
    }
    return g_steal_pointer(&summary);
}

/* ---- the cache file ---- */

/* "SIZE:MTIME" of the liblamina file this code runs from, or "unknown". */
static char *core_identity(void)
{
    Dl_info info;
    GStatBuf st;
    if (dladdr((void *) lmn_registry_cache_open, &info) == 0 || info.dli_fname == NULL ||
        g_stat(info.dli_fname, &st) != 0)
        return g_strdup("unknown");
    return g_strdup_printf("%s:%" G_GINT64_FORMAT ":%" G_GINT64_FORMAT, LMN_VERSION_STRING,
                           (gint64) st.st_size, mtime_ns(&st));
}

static char *cache_file_name(void)
{
    gboolean trust = lmn_registry_trust_environment();
    const char *off = trust ? g_getenv("LAMINA_NO_REGISTRY_CACHE") : NULL;
    if (off != NULL && off[0] != '\0' && strcmp(off, "0") != 0)
        return NULL;
    const char *file = trust ? g_getenv("LAMINA_REGISTRY_CACHE") : NULL;
    if (file != NULL && file[0] != '\0')
        return g_strdup(file);
    /* Read XDG_CACHE_HOME directly: g_get_user_cache_dir() caches its first answer. */
    const char *xdg = trust ? g_getenv("XDG_CACHE_HOME") : NULL;
    if (xdg == NULL || !g_path_is_absolute(xdg))
        xdg = g_get_user_cache_dir();
    g_autofree char *base = g_strdup_printf("registry-%d.ini", LMN_ABI_MAJOR);
    return g_build_filename(xdg, "lamina", base, NULL);
}

/* Reads one [plugin N] group; NULL when any key is missing or malformed. */
static Entry *read_entry(GKeyFile *kf, const char *group)
{
    GError *e = NULL;
    g_autofree char *path = g_key_file_get_string(kf, group, "path", NULL);
    g_autofree char *status = g_key_file_get_string(kf, group, "status", NULL);
    gint64 size = g_key_file_get_int64(kf, group, "size", &e);
    gint64 mtime = e ? 0 : g_key_file_get_int64(kf, group, "mtime", &e);
    gint64 ctime = e ? 0 : g_key_file_get_int64(kf, group, "ctime", &e);
    guint64 inode = e ? 0 : g_key_file_get_uint64(kf, group, "inode", &e);
    if (e != NULL || path == NULL || status == NULL) {
        g_clear_error(&e);
        return NULL;
    }
    Entry *entry = g_new0(Entry, 1);
    entry->size = size;
    entry->mtime_ns = mtime;
    entry->ctime_ns = ctime;
    entry->inode = inode;
    if (strcmp(status, "failed") == 0) {
        gint64 code = g_key_file_get_int64(kf, group, "code", &e);
        g_autofree char *message = g_key_file_get_string(kf, group, "message", NULL);
        if (e != NULL || message == NULL || code < 0 || code > LMN_PLUGIN_ERROR_SCAN_FAILED) {
            g_clear_error(&e);
            g_free(entry);
            return NULL;
        }
        entry->failure = g_error_new_literal(LMN_PLUGIN_ERROR, (int) code, message);
    } else if (strcmp(status, "ok") == 0) {
        g_autofree char *problem = NULL;
        entry->summary = lmn_plugin_summary_load(kf, group, &problem);
        if (entry->summary == NULL) {
            g_debug("registry cache: [%s]: %s", group, problem);
            g_free(entry);
            return NULL;
        }
    } else {
        g_free(entry);
        return NULL;
    }
    entry->path = g_steal_pointer(&path);
    return entry;
}

/* Fills @cache from its file; a file that is missing, corrupt or from another core is ignored. */
static void cache_read(LmnRegistryCache *cache)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autoptr(GError) error = NULL;
    if (!g_key_file_load_from_file(kf, cache->file, G_KEY_FILE_NONE, &error)) {
        if (!g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            g_debug("registry cache %s ignored (it is rebuilt): %s", cache->file, error->message);
        return;
    }
    gint64 format = g_key_file_get_int64(kf, CACHE_GROUP, "format", NULL);
    g_autofree char *core = g_key_file_get_string(kf, CACHE_GROUP, "core", NULL);
    if (format != CACHE_FORMAT || core == NULL || strcmp(core, cache->core) != 0) {
        g_debug("registry cache %s is from another Lamina build or format; rebuilding it",
                cache->file);
        return;
    }
    g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
    for (guint k = 0; groups[k] != NULL; k++) {
        if (!g_str_has_prefix(groups[k], "plugin "))
            continue;
        Entry *entry = read_entry(kf, groups[k]);
        if (entry == NULL) {
            g_debug("registry cache %s: group [%s] is malformed; ignored", cache->file, groups[k]);
            cache->dirty = TRUE;
            continue;
        }
        g_hash_table_replace(cache->by_key, entry->path, entry);
    }
}

LmnRegistryCache *lmn_registry_cache_open(void)
{
    LmnRegistryCache *cache = g_new0(LmnRegistryCache, 1);
    cache->by_key = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, entry_free);
    cache->file = cache_file_name();
    cache->core = core_identity();
    if (cache->file != NULL)
        cache_read(cache);
    return cache;
}

gboolean lmn_registry_cache_lookup(LmnRegistryCache *cache, const char *key, const GStatBuf *st,
                                   LmnPluginSummary **summary, GError **failure)
{
    g_return_val_if_fail(cache != NULL && key != NULL && st != NULL, FALSE);
    g_return_val_if_fail(summary != NULL && *summary == NULL, FALSE);
    const Entry *entry = g_hash_table_lookup(cache->by_key, key);
    if (entry == NULL || entry->size != (gint64) st->st_size || entry->mtime_ns != mtime_ns(st) ||
        entry->ctime_ns != ctime_ns(st) || entry->inode != (guint64) st->st_ino)
        return FALSE;
    if (entry->failure != NULL)
        g_propagate_error(failure, g_error_copy(entry->failure));
    else
        *summary = lmn_plugin_summary_copy(entry->summary);
    g_debug("plugin %s: cached scan: %s", key, entry->failure ? entry->failure->message : "ok");
    return TRUE;
}

void lmn_registry_cache_store(LmnRegistryCache *cache, const char *key, const GStatBuf *st,
                              const LmnPluginSummary *summary, const GError *failure)
{
    g_return_if_fail(cache != NULL && key != NULL && st != NULL);
    g_return_if_fail((summary == NULL) != (failure == NULL));
    if (cache->file == NULL)
        return;
    Entry *entry = g_new0(Entry, 1);
    entry->path = g_strdup(key);
    entry->size = st->st_size;
    entry->mtime_ns = mtime_ns(st);
    entry->ctime_ns = ctime_ns(st);
    entry->inode = st->st_ino;
    entry->summary = summary ? lmn_plugin_summary_copy(summary) : NULL;
    entry->failure = failure ? g_error_copy(failure) : NULL;
    g_hash_table_replace(cache->by_key, entry->path, entry);
    cache->dirty = TRUE;
}

void lmn_registry_cache_forget(LmnRegistryCache *cache, const char *key)
{
    g_return_if_fail(cache != NULL && key != NULL);
    if (g_hash_table_remove(cache->by_key, key))
        cache->dirty = TRUE;
}

static gint compare_strings(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}

void lmn_registry_cache_save(LmnRegistryCache *cache)
{
    g_return_if_fail(cache != NULL);
    if (cache->file == NULL || !cache->dirty)
        return;
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_key_file_set_comment(kf, NULL, NULL,
                           " Lamina's plugin registry cache: what lamina-plugin-scanner found in "
                           "each plugin file.\n Safe to delete; it is rebuilt.",
                           NULL);
    g_key_file_set_int64(kf, CACHE_GROUP, "format", CACHE_FORMAT);
    g_key_file_set_string(kf, CACHE_GROUP, "core", cache->core);

    /* Sorted, so that the file reads the same for the same plugins. */
    g_autoptr(GPtrArray) keys = g_ptr_array_new();
    GHashTableIter it;
    gpointer key;
    g_hash_table_iter_init(&it, cache->by_key);
    while (g_hash_table_iter_next(&it, &key, NULL))
        g_ptr_array_add(keys, key);
    g_ptr_array_sort(keys, compare_strings);
    guint n = 0;
    for (guint k = 0; k < keys->len; k++) {
        const Entry *entry = g_hash_table_lookup(cache->by_key, g_ptr_array_index(keys, k));
        /* Plugins of removed test directories and uninstalled packages would pile up. */
        if (!g_file_test(entry->path, G_FILE_TEST_EXISTS))
            continue;
        g_autofree char *group = g_strdup_printf("plugin %u", n++);
        g_key_file_set_string(kf, group, "path", entry->path);
        g_key_file_set_int64(kf, group, "size", entry->size);
        g_key_file_set_int64(kf, group, "mtime", entry->mtime_ns);
        g_key_file_set_int64(kf, group, "ctime", entry->ctime_ns);
        g_key_file_set_uint64(kf, group, "inode", entry->inode);
        g_key_file_set_string(kf, group, "status", entry->failure ? "failed" : "ok");
        if (entry->failure != NULL) {
            g_key_file_set_int64(kf, group, "code", entry->failure->code);
            g_key_file_set_string(kf, group, "message", entry->failure->message);
        } else {
            lmn_plugin_summary_save(entry->summary, kf, group);
        }
    }

    g_autoptr(GError) error = NULL;
    g_autofree char *dir = g_path_get_dirname(cache->file);
    gsize length = 0;
    g_autofree char *text = g_key_file_to_data(kf, &length, NULL);
    if (g_mkdir_with_parents(dir, 0700) != 0 ||
        !g_file_set_contents(cache->file, text, (gssize) length, &error))
        g_debug("registry cache %s not written: %s", cache->file,
                error ? error->message : g_strerror(errno));
    else
        g_debug("registry cache %s written (%u plugin files)", cache->file, n);
    cache->dirty = FALSE;
}

void lmn_registry_cache_free(LmnRegistryCache *cache)
{
    if (cache == NULL)
        return;
    g_hash_table_unref(cache->by_key);
    g_free(cache->file);
    g_free(cache->core);
    g_free(cache);
}
