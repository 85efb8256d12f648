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
    if (cfg && !lmn_config_validate(cfg, registry, error))
        g_clear_pointer(&cfg, lmn_config_free);
    return cfg;
}
