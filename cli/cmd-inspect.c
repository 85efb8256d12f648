/* Lamina — `lamina inspect`: what a checkpoint holds, without loading any plugin. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

int lmn_cli_inspect(int argc, char **argv)
{
    gboolean no_config = FALSE;
    GOptionEntry entries[] = {
        {"no-config", 0, 0, G_OPTION_ARG_NONE, &no_config, "leave out the config text", NULL},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("CHECKPOINT");
    g_option_context_set_summary(ctx, "Show a checkpoint's format, layers and parameter shapes, "
                                      "optimizer state, training counters and config.");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        fprintf(stderr, "lamina inspect: %s (see lamina inspect --help)\n", error->message);
        return 2;
    }
    if (argc != 2) {
        fprintf(stderr, "lamina inspect: expected one CHECKPOINT file (see lamina inspect "
                        "--help)\n");
        return 2;
    }
    g_autofree char *text = lmn_checkpoint_describe(argv[1], &error);
    if (!text)
        return lmn_cli_fail("inspect", error);
    if (no_config) {
        char *cfg = strstr(text, "\nconfig:\n");
        if (cfg)
            cfg[1] = '\0';
    }
    fputs(text, stdout);
    return 0;
}
