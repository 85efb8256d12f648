/* Lamina — the raw-text scan of a config: line numbers for GKeyFile's groups and keys, and the
 * errors GKeyFile would not report (a group or key given twice, control characters). */
#include "config-private.h"

#include <string.h>

/* A line of the text as it may be shown in a message: control characters, C1 controls and
 * bytes that are not UTF-8 as \xNN (so a hostile file cannot send escape sequences to the
 * terminal), and at most 60 characters of it. */
char *lmn_config_escape_line(const char *s, gsize len)
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
    g_autofree char *shown = lmn_config_escape_line(s, (gsize) (end - s));
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
GHashTable *lmn_config_scan_lines(const char *text, gsize length, const char *name, GError **error)
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
