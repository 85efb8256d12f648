/* Lamina — the config object's internals, shared by config.c (loading, overrides, accessors),
 * scan.c (the raw-text scan) and validate.c (validation against the schemas).  Private to
 * core/config/. */
#pragma once

#include <lamina/lamina.h>

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

/* The groups the core itself reads; every other group must be [layer NAME]. */
extern const char *const lmn_config_core_groups[];

/* Drops every validated value, so the config must be validated again. */
void lmn_config_clear_validated(LmnConfig *cfg);
/* The line of @group (@key NULL) or of @key in it in the text, 0 when unknown (an override). */
guint lmn_config_line_of(const LmnConfig *cfg, const char *group, const char *key);

/* A line of the text as it may be shown in a message: control characters, C1 controls and bytes
 * that are not UTF-8 as \xNN, at most 60 characters.  Returns: (transfer full) */
char *lmn_config_escape_line(const char *s, gsize len);
/* Scans the raw text as GKeyFile will read it, rejecting what GKeyFile would accept silently or
 * report without a line.  Returns: (transfer full): the line of every group ("GROUP") and key
 * ("GROUP\nKEY"), or NULL with a LMN_CONFIG_ERROR naming @name and the line. */
GHashTable *lmn_config_scan_lines(const char *text, gsize length, const char *name, GError **error);
