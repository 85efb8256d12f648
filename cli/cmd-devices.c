/* Lamina — `lamina devices`: the devices of every backend that can list them, and which one
 * `auto` would pick (a real GPU; software devices such as lavapipe are only used when named). */
#include "cli.h"

#include <stdio.h>

static const char *device_type_name(LmnDeviceType type)
{
    switch (type) {
    case LMN_DEVICE_DISCRETE_GPU:
        return "discrete-gpu";
    case LMN_DEVICE_INTEGRATED_GPU:
        return "integrated-gpu";
    case LMN_DEVICE_VIRTUAL_GPU:
        return "virtual-gpu";
    case LMN_DEVICE_CPU:
        return "cpu";
    case LMN_DEVICE_OTHER:
    default:
        return "other";
    }
}

typedef struct {
    const LmnFeature *feature;
    GPtrArray *devices; /* LmnDeviceInfo*, or NULL with @error */
    gint auto_index;
    GError *error;
} Listing;

static void listing_clear(gpointer data)
{
    Listing *l = data;
    g_clear_pointer(&l->devices, g_ptr_array_unref);
    g_clear_error(&l->error);
}

static void list_backend(const LmnFeature *f, Listing *l)
{
    const LmnBackendVTable *vt = f->desc->vtable;
    l->feature = f;
    l->auto_index = -1;
    g_autoptr(LmnParams) params = lmn_registry_validate_params(f, NULL, NULL, "devices", &l->error);
    if (params != NULL)
        l->devices = vt->list_devices(params, &l->auto_index, &l->error);
}

/* Prints @l, marking device @mark (-1: none) with '*'. */
static void print_listing(const Listing *l, gint mark)
{
    printf("%s:\n", l->feature->desc->name);
    if (l->devices == NULL) {
        printf("  (unavailable: %s)\n", l->error != NULL ? l->error->message : "no reason given");
        return;
    }
    if (l->devices->len == 0)
        printf("  (no devices)\n");
    for (guint i = 0; i < l->devices->len; i++) {
        const LmnDeviceInfo *d = g_ptr_array_index(l->devices, i);
        /* Not g_format_size(): it separates the unit with a no-break space. */
        g_autofree char *memory =
            d->memory_bytes >= (1u << 30)
                ? g_strdup_printf("%.1f GiB", (double) d->memory_bytes / (1u << 30))
                : g_strdup_printf("%.1f MiB", (double) d->memory_bytes / (1u << 20));
        printf("  %c %u: %s\n", (gint) i == mark ? '*' : ' ', i, d->name ? d->name : "(unnamed)");
        printf("      type: %s, memory: %s, driver: %s\n", device_type_name(d->type), memory,
               d->driver ? d->driver : "-");
        if (d->details != NULL && d->details[0] != '\0')
            printf("      %s\n", d->details);
    }
}

int lmn_cli_devices(int argc, char **argv)
{
    g_auto(GStrv) plugin_dirs = NULL;
    GOptionEntry entries[] = {
        {"plugin-path", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &plugin_dirs,
         "also search DIR for plugins (first)", "DIR"},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("- list the devices of each backend");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error))
        return lmn_cli_fail("devices", error);
    if (argc > 1) {
        g_set_error(&error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "unexpected argument '%s'",
                    argv[1]);
        return lmn_cli_fail("devices", error);
    }
    LmnRegistry *registry = lmn_cli_open_registry(plugin_dirs);
    g_autoptr(GPtrArray) backends = lmn_registry_list(registry, LMN_FEATURE_BACKEND);
    g_autoptr(GArray) listings = g_array_new(FALSE, TRUE, sizeof(Listing));
    g_array_set_clear_func(listings, listing_clear);
    for (guint k = 0; k < backends->len; k++) {
        const LmnFeature *f = g_ptr_array_index(backends, k);
        /* Listed features may not be loaded yet; whether a backend lists devices is in its
         * vtable, so each backend is loaded (without its init, as before). */
        g_autoptr(GError) load_error = NULL;
        if (!lmn_registry_load_feature(registry, f, &load_error)) {
            Listing l = {.feature = f, .auto_index = -1, .error = g_steal_pointer(&load_error)};
            g_array_append_val(listings, l);
            continue;
        }
        const LmnBackendVTable *vt = f->desc->vtable;
        if (vt == NULL ||
            vt->struct_size < G_STRUCT_OFFSET(LmnBackendVTable, list_devices) + sizeof(gpointer) ||
            vt->list_devices == NULL)
            continue;
        Listing l = {0};
        list_backend(f, &l);
        g_array_append_val(listings, l);
    }
    /* As lmn_backend_new_for_config() decides: the first GPU backend whose own selection picks
     * a device, else the cpu backend. */
    gint pick = -1;
    for (guint k = 0; k < listings->len && pick < 0; k++) {
        const Listing *l = &g_array_index(listings, Listing, k);
        if (!g_str_equal(l->feature->desc->name, "cpu") && l->devices != NULL &&
            l->auto_index >= 0 && (guint) l->auto_index < l->devices->len)
            pick = (gint) k;
    }
    for (guint k = 0; k < listings->len; k++) {
        const Listing *l = &g_array_index(listings, Listing, k);
        const gboolean is_cpu = g_str_equal(l->feature->desc->name, "cpu");
        gint mark = -1;
        if (pick == (gint) k || (pick < 0 && is_cpu))
            mark = MAX(l->auto_index, 0);
        if (k > 0)
            printf("\n");
        print_listing(l, mark);
    }
    if (listings->len == 0)
        printf("No backend can list devices.\n");
    if (pick >= 0) {
        const Listing *l = &g_array_index(listings, Listing, pick);
        const LmnDeviceInfo *d = g_ptr_array_index(l->devices, l->auto_index);
        printf("\nauto would use: %s device %d (%s)\n", l->feature->desc->name, l->auto_index,
               d->name);
    } else {
        printf("\nauto would use: cpu\n");
    }
    lmn_registry_free(registry);
    return 0;
}
