/* Lamina — learning curves: metrics.csv read strictly and drawn with cairo (PNG or SVG), for
 * `lamina plot` and `lamina train --plot`.  Private to the command-line tool. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/**
 * LmnMetrics:
 * A metrics.csv: its column names (the header row) and its rows, one double per column, NAN
 * where a cell is empty (a metric the run does not have, such as val_loss without validation).
 */
typedef struct {
    GPtrArray *columns; /* char*, owned */
    GArray *values;     /* double, n_rows * columns->len, row-major */
    guint n_rows;
} LmnMetrics;

/**
 * lmn_metrics_read:
 * Reads @path: a header row naming the columns (it must have "epoch"), then rows of as many
 * comma-separated cells, each empty or a finite number.
 * Returns: (transfer full): the table, or NULL with G_FILE_ERROR (cannot read it) or
 *   G_IO_ERROR_INVALID_DATA naming FILE:LINE, the column and what was expected
 */
LmnMetrics *lmn_metrics_read(const char *path, GError **error);
/** lmn_metrics_free: frees @metrics. */
void lmn_metrics_free(LmnMetrics *metrics);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LmnMetrics, lmn_metrics_free)
/** lmn_metrics_column: Returns: the index of column @name, or -1. */
gint lmn_metrics_column(const LmnMetrics *metrics, const char *name);

/**
 * lmn_plot_metrics:
 * @output: the picture to write: "*.png" or "*.svg"
 * @title: (nullable): a line above the panels (the run's directory, say)
 * Draws the learning curves against the epoch in up to three panels: the losses (train_loss and
 * val_loss, and the per-loss columns train_loss_NAME / val_loss_NAME of a model with several
 * losses, dashed), the accuracies (when the run has any) and the learning rate.  A panel whose
 * positive values span two decades or more has a logarithmic axis.  The file is written next to
 * @output and renamed over it, so a viewer refreshing it never reads half a picture.
 * Returns: FALSE with G_IO_ERROR_INVALID_ARGUMENT for another extension or a table without
 *   rows, or G_IO_ERROR_FAILED naming @output when cairo cannot write it
 */
gboolean lmn_plot_metrics(const LmnMetrics *metrics, const char *output, const char *title,
                          GError **error);

/**
 * lmn_plot_shutdown:
 * Releases what cairo and fontconfig keep for the process (font caches), so leak checkers see
 * none; called once before exit by commands that plotted, when no picture is being drawn.
 */
void lmn_plot_shutdown(void);

G_END_DECLS
