/* Lamina — `lamina plugins`: what the registry found, and the schema of one feature.
 *
 * The listing comes from the registry's summaries and opens no plugin; describe opens only the
 * plugins providing NAME, whose schemas are in their files. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char *const kind_titles[LMN_FEATURE_KIND_COUNT] = {
    [LMN_FEATURE_BACKEND] = "Backends",     [LMN_FEATURE_LAYER] = "Layers",
    [LMN_FEATURE_OPTIMIZER] = "Optimizers", [LMN_FEATURE_INITIALIZER] = "Initializers",
    [LMN_FEATURE_SCHEDULE] = "Schedules",   [LMN_FEATURE_COMMUNICATOR] = "Communicators",
};

static int list_plugins(LmnRegistry *registry)
{
    for (guint kind = 0; kind < LMN_FEATURE_KIND_COUNT; kind++) {
        g_autoptr(GPtrArray) features = lmn_registry_list(registry, kind);
        printf("%s:\n", kind_titles[kind]);
        if (features->len == 0) {
            printf("  (none)\n");
            continue;
        }
        /* Align the columns on the longest entries of this kind. */
        int name_width = 0, plugin_width = 0;
        for (guint k = 0; k < features->len; k++) {
            const LmnFeature *f = g_ptr_array_index(features, k);
            g_autofree char *plugin = g_strdup_printf("%s %s", f->plugin->name, f->plugin->version);
            name_width = MAX(name_width, (int) strlen(f->desc->name));
            plugin_width = MAX(plugin_width, (int) strlen(plugin));
        }
        for (guint k = 0; k < features->len; k++) {
            const LmnFeature *f = g_ptr_array_index(features, k);
            g_autofree char *plugin = g_strdup_printf("%s %s", f->plugin->name, f->plugin->version);
            printf("  %-*s  %-*s  %s\n", name_width, f->desc->name, plugin_width, plugin, f->path);
        }
    }

    GPtrArray *failures = lmn_registry_list_failures(registry);
    if (failures->len > 0) {
        printf("\nPlugin files that failed (skipped):\n");
        for (guint k = 0; k < failures->len; k++) {
            const LmnPluginFailure *failure = g_ptr_array_index(failures, k);
            printf("  %s\n", failure->error->message);
        }
    }

    const GPtrArray *path = lmn_registry_get_search_path(registry);
    printf("\nSearch path (first match wins):\n");
    for (guint k = 0; k < path->len; k++)
        printf("  %s\n", (const char *) g_ptr_array_index(path, k));
    return 0;
}

static void print_feature(const LmnFeature *f)
{
    const LmnFeatureDesc *d = f->desc;
    printf("%s (%s)\n", d->name, lmn_feature_kind_name(d->kind));
    if (d->description && d->description[0])
        printf("  %s\n", d->description);
    printf("  plugin: %s %s", f->plugin->name, f->plugin->version);
    if (f->plugin->license && f->plugin->license[0])
        printf(" (%s)", f->plugin->license);
    printf("\n  file:   %s\n", f->path);
    printf("Parameters:\n");
    g_autofree char *schema = lmn_param_spec_describe(d->params);
    fputs(schema, stdout);
    if (d->kind == LMN_FEATURE_SCHEDULE) {
        /* [schedule] takes these too, whichever schedule it names */
        printf("Common keys of every schedule:\n");
        g_autofree char *common = lmn_param_spec_describe(lmn_schedule_common_specs());
        fputs(common, stdout);
    }
}

/* The error for a name no kind has: the best hint any single kind's lookup can give. */
static GError *not_found_anywhere(LmnRegistry *registry, const char *name)
{
    GError *first = NULL;
    for (guint kind = 0; kind < LMN_FEATURE_KIND_COUNT; kind++) {
        GError *error = NULL;
        if (lmn_registry_lookup(registry, kind, name, &error) != NULL)
            continue; /* cannot happen: the caller found no such name */
        /* A did-you-mean or a failed file that looks like NAME beats a bare "unknown". */
        gboolean helpful = error->code != LMN_PLUGIN_ERROR_NOT_FOUND ||
                           strstr(error->message, "did you mean") != NULL;
        if (helpful) {
            g_clear_error(&first);
            return error;
        }
        if (first == NULL)
            first = error;
        else
            g_error_free(error);
    }
    g_clear_error(&first);
    return g_error_new(LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_NOT_FOUND,
                       "unknown feature '%s': no backend, layer, optimizer, initializer or "
                       "schedule has that name (run `lamina plugins` to list them)",
                       name);
}

static int describe(LmnRegistry *registry, const char *name, int kind_filter)
{
    guint found = 0;
    for (guint kind = 0; kind < LMN_FEATURE_KIND_COUNT; kind++) {
        if (kind_filter >= 0 && (guint) kind_filter != kind)
            continue;
        /* Listing rather than lookup: describing a schema must not run the plugin's init. */
        g_autoptr(GPtrArray) features = lmn_registry_list(registry, kind);
        for (guint k = 0; k < features->len; k++) {
            const LmnFeature *f = g_ptr_array_index(features, k);
            if (strcmp(f->desc->name, name) == 0) {
                g_autoptr(GError) error = NULL;
                if (!lmn_registry_load_feature(registry, f, &error))
                    return lmn_cli_fail("plugins", error);
                if (found++ > 0)
                    printf("\n");
                print_feature(f);
            }
        }
    }
    if (found > 0)
        return 0;

    g_autoptr(GError) error = NULL;
    if (kind_filter >= 0)
        lmn_registry_lookup(registry, kind_filter, name, &error);
    else
        error = not_found_anywhere(registry, name);
    return lmn_cli_fail("plugins", error);
}

static int parse_kind(const char *text)
{
    for (guint kind = 0; kind < LMN_FEATURE_KIND_COUNT; kind++) {
        if (strcmp(text, lmn_feature_kind_name(kind)) == 0)
            return (int) kind;
    }
    return -1;
}

int lmn_cli_plugins(int argc, char **argv)
{
    g_auto(GStrv) plugin_dirs = NULL;
    g_autofree char *kind_text = NULL;
    GOptionEntry entries[] = {
        {"plugin-path", 'P', 0, G_OPTION_ARG_FILENAME_ARRAY, &plugin_dirs,
         "also load plugins from DIR (repeatable; searched first)", "DIR"},
        {"kind", 'k', 0, G_OPTION_ARG_STRING, &kind_text,
         "with describe: only features of this kind (backend, layer, optimizer, initializer, "
         "schedule)",
         "KIND"},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("[describe NAME]");
    g_option_context_set_summary(ctx,
                                 "Without arguments: list every feature by kind with its plugin "
                                 "and file,\nthen the plugin files that failed and why.\n"
                                 "describe NAME: print a feature's description and "
                                 "hyperparameters.");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        fprintf(stderr, "lamina plugins: %s (see lamina plugins --help)\n", error->message);
        return 2;
    }

    int kind = -1;
    if (kind_text != NULL) {
        kind = parse_kind(kind_text);
        if (kind < 0) {
            fprintf(stderr,
                    "lamina plugins: unknown kind '%s'; kinds: backend, layer, optimizer, "
                    "initializer, schedule\n",
                    kind_text);
            return 2;
        }
    }

    if (argc == 1) {
        if (kind_text != NULL) {
            fprintf(stderr, "lamina plugins: --kind goes with describe NAME\n");
            return 2;
        }
        g_autoptr(LmnRegistry) registry = lmn_cli_open_registry(plugin_dirs);
        return list_plugins(registry);
    }
    if (strcmp(argv[1], "describe") == 0) {
        if (argc != 3) {
            fprintf(stderr, "lamina plugins: describe takes one NAME (see lamina plugins "
                            "--help)\n");
            return 2;
        }
        g_autoptr(LmnRegistry) registry = lmn_cli_open_registry(plugin_dirs);
        return describe(registry, argv[2], kind);
    }
    static const char *const subcommands[] = {"describe", NULL};
    const char *guess = lmn_suggest(argv[1], subcommands);
    fprintf(stderr, "lamina plugins: unknown argument '%s'%s%s%s (see lamina plugins --help)\n",
            argv[1], guess ? " (did you mean '" : "", guess ? guess : "", guess ? "'?)" : "");
    return 2;
}
