/* Lamina — `lamina plot`: a run's learning curves as a PNG or SVG picture (plot.h). */
#include "cli.h"
#include "plot.h"

#include <stdio.h>

int lmn_cli_plot(int argc, char **argv)
{
    g_autofree char *output = NULL;
    GOptionEntry entries[] = {
        {"output", 'o', 0, G_OPTION_ARG_FILENAME, &output,
         "the picture, .png or .svg (default: curves.png beside the metrics)", "FILE"},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("METRICS.csv|OUTPUT_DIR");
    g_option_context_set_summary(
        ctx, "Draw a run's learning curves from its metrics.csv (a training run's output "
             "directory may be given instead): loss, accuracy and learning rate per epoch.");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        fprintf(stderr, "lamina plot: %s (see lamina plot --help)\n", error->message);
        return 2;
    }
    if (argc != 2) {
        fprintf(stderr, "lamina plot: expected one metrics.csv or output directory (see lamina "
                        "plot --help)\n");
        return 2;
    }
    g_autofree char *csv = g_file_test(argv[1], G_FILE_TEST_IS_DIR)
                               ? g_build_filename(argv[1], "metrics.csv", NULL)
                               : g_strdup(argv[1]);
    if (!output) {
        g_autofree char *dir = g_path_get_dirname(csv);
        output = g_build_filename(dir, "curves.png", NULL);
    }
    g_autoptr(LmnMetrics) m = lmn_metrics_read(csv, &error);
    gboolean ok = m && lmn_plot_metrics(m, output, csv, &error);
    lmn_plot_shutdown();
    if (!ok)
        return lmn_cli_fail("plot", error);
    printf("wrote %s (%u epoch%s)\n", output, m->n_rows, m->n_rows == 1 ? "" : "s");
    return 0;
}
