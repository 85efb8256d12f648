/* Lamina — helpers shared by the `lamina` sub-commands. */
#include "cli.h"

#include <stdio.h>

LmnRegistry *lmn_cli_open_registry(char **plugin_dirs)
{
    LmnRegistry *registry = lmn_registry_new();
    for (guint k = 0; plugin_dirs != NULL && plugin_dirs[k] != NULL; k++)
        lmn_registry_add_dir(registry, plugin_dirs[k]);
    /* Per-file failures are recorded, not fatal: the user may never ask for the broken plugin.
     * They surface in `lamina plugins` and in the error of a lookup that needed that file. */
    lmn_registry_scan(registry, NULL);
    return registry;
}

int lmn_cli_fail(const char *cmd, const GError *error)
{
    fprintf(stderr, "lamina %s: %s\n", cmd, error ? error->message : "failed");
    return 1;
}

LmnConfig *lmn_cli_checkpoint_config(const char *ckpt, LmnRegistry *registry, GError **error)
{
    g_autofree char *text = lmn_checkpoint_read_config(ckpt, error);
    if (!text)
        return NULL;
    g_autofree char *cfg_name = g_strdup_printf("%s:/config", ckpt);
    LmnConfig *cfg = lmn_config_new_from_data(text, -1, cfg_name, error);
    if (!cfg)
        return NULL;
    g_autoptr(GError) local = NULL;
    if (lmn_config_validate(cfg, registry, &local))
        return cfg;
    lmn_config_free(cfg);
    /* A type no plugin here provides: the checkpoint says which plugin it came from. */
    g_autofree char *why =
        local->domain == LMN_PLUGIN_ERROR ? lmn_checkpoint_explain_missing(ckpt, registry) : NULL;
    if (why)
        g_set_error(error, local->domain, local->code, "%s (%s)", why, local->message);
    else
        g_propagate_error(error, g_steal_pointer(&local));
    return NULL;
}
