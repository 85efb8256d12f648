/* Lamina — learning curves (plot.h): metrics.csv in, a PNG or SVG of its curves out. */
#include "plot.h"

#include <cairo-svg.h>
#include <cairo.h>
#include <errno.h>
#include <fontconfig/fontconfig.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- reading metrics.csv ---- */

void lmn_metrics_free(LmnMetrics *m)
{
    if (!m)
        return;
    g_ptr_array_unref(m->columns);
    g_array_unref(m->values);
    g_free(m);
}

gint lmn_metrics_column(const LmnMetrics *m, const char *name)
{
    for (guint i = 0; i < m->columns->len; i++)
        if (g_str_equal(g_ptr_array_index(m->columns, i), name))
            return (gint) i;
    return -1;
}

static double metrics_at(const LmnMetrics *m, guint row, guint col)
{
    return g_array_index(m->values, double, (gsize) row * m->columns->len + col);
}

/* One data row's cells into @m; FALSE with the place of the first bad cell. */
static gboolean read_row(LmnMetrics *m, const char *path, guint line, char *text, GError **error)
{
    g_auto(GStrv) cells = g_strsplit(text, ",", -1);
    guint n = g_strv_length(cells);
    if (n != m->columns->len) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s:%u: %u cells where the header names %u columns; is this a Lamina "
                    "metrics.csv?",
                    path, line, n, m->columns->len);
        return FALSE;
    }
    for (guint i = 0; i < n; i++) {
        const char *cell = g_strstrip(cells[i]);
        double v = NAN;
        char *end = NULL;
        if (cell[0] != '\0') {
            v = g_ascii_strtod(cell, &end);
            if (end == cell || *end != '\0' || !isfinite(v)) {
                g_autofree char *shown = g_strescape(cell, NULL);
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "%s:%u: column '%s' holds \"%.40s\", expected a finite number or "
                            "nothing",
                            path, line, (const char *) g_ptr_array_index(m->columns, i), shown);
                return FALSE;
            }
        }
        g_array_append_val(m->values, v);
    }
    m->n_rows++;
    return TRUE;
}

/* The header row's column names into @m; it must name "epoch". */
static gboolean read_header(LmnMetrics *m, const char *path, char *text, GError **error)
{
    g_auto(GStrv) names = g_strsplit(text, ",", -1);
    for (guint i = 0; names[i]; i++)
        g_ptr_array_add(m->columns, g_strdup(g_strstrip(names[i])));
    if (lmn_metrics_column(m, "epoch") < 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s:1: the header has no column 'epoch'; expected the metrics.csv that "
                    "lamina train writes (epoch,step,lr,train_loss,...)",
                    path);
        return FALSE;
    }
    return TRUE;
}

LmnMetrics *lmn_metrics_read(const char *path, GError **error)
{
    g_autofree char *text = NULL;
    gsize len = 0;
    if (!g_file_get_contents(path, &text, &len, error))
        return NULL;
    if (memchr(text, '\0', len) || !g_utf8_validate(text, (gssize) len, NULL)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s: not a text file; expected the metrics.csv that lamina train writes", path);
        return NULL;
    }
    g_autoptr(LmnMetrics) m = g_new0(LmnMetrics, 1);
    m->columns = g_ptr_array_new_with_free_func(g_free);
    m->values = g_array_new(FALSE, FALSE, sizeof(double));
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    gboolean header = FALSE;
    for (guint i = 0; lines[i]; i++) {
        char *l = g_strstrip(lines[i]);
        if (l[0] == '\0')
            continue;
        if (!header) {
            if (!read_header(m, path, l, error))
                return NULL;
            header = TRUE;
        } else if (!read_row(m, path, i + 1, l, error)) {
            return NULL;
        }
    }
    if (!header) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s: empty; expected the metrics.csv that lamina train writes", path);
        return NULL;
    }
    return g_steal_pointer(&m);
}

/* ---- drawing ---- */

enum { WIDTH = 900, PANEL_H = 250, TOP = 44, GAP = 46, BOTTOM = 48, LEFT = 78, RIGHT = 190 };

typedef struct {
    guint column;
    gboolean dashed;
    double r, g, b;
} Series;

typedef struct {
    const char *title;
    Series series[16];
    guint n_series;
    double lo, hi; /* the value range shown (log10 of it with @log) */
    gboolean log;
} Panel;

static void panel_add(Panel *p, const LmnMetrics *m, gint column, gboolean dashed, guint colour)
{
    static const double palette[][3] = {{0.12, 0.38, 0.71}, {0.89, 0.42, 0.04}, {0.17, 0.58, 0.25},
                                        {0.78, 0.15, 0.16}, {0.52, 0.35, 0.70}, {0.50, 0.50, 0.50}};
    if (column < 0 || p->n_series == G_N_ELEMENTS(p->series))
        return;
    gboolean any = FALSE;
    for (guint r = 0; r < m->n_rows; r++)
        any = any || !isnan(metrics_at(m, r, (guint) column));
    if (!any)
        return;
    const double *c = palette[colour % G_N_ELEMENTS(palette)];
    p->series[p->n_series++] = (Series){(guint) column, dashed, c[0], c[1], c[2]};
}

/* The shown range of @p's values: logarithmic when they are positive and span two decades. */
static void panel_range(Panel *p, const LmnMetrics *m)
{
    double lo = INFINITY, hi = -INFINITY;
    for (guint s = 0; s < p->n_series; s++)
        for (guint r = 0; r < m->n_rows; r++) {
            double v = metrics_at(m, r, p->series[s].column);
            if (!isnan(v)) {
                lo = MIN(lo, v);
                hi = MAX(hi, v);
            }
        }
    p->log = lo > 0 && hi / lo >= 100;
    if (p->log) {
        lo = floor(log10(lo));
        hi = ceil(log10(hi));
    } else {
        double pad = hi > lo ? 0.05 * (hi - lo) : MAX(fabs(hi) * 0.1, 0.5);
        lo -= pad;
        hi += pad;
    }
    p->lo = lo;
    p->hi = hi;
}

/* A step of 1, 2 or 5 times a power of ten giving about @n ticks over @span. */
static double nice_step(double span, int n)
{
    double raw = span / n, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static void text_at(cairo_t *cr, double x, double y, const char *s, double align_x, double align_y)
{
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    cairo_move_to(cr, x - align_x * e.width - e.x_bearing, y - align_y * e.height - e.y_bearing);
    cairo_show_text(cr, s);
}

typedef struct {
    double x0, y0, w, h; /* the plot area */
    double xmin, xmax;   /* epochs */
} Frame;

static double fx(const Frame *f, double epoch)
{
    return f->x0 + (epoch - f->xmin) / (f->xmax - f->xmin) * f->w;
}

static double fy(const Frame *f, const Panel *p, double v)
{
    double t = p->log ? log10(v) : v;
    return f->y0 + f->h - (t - p->lo) / (p->hi - p->lo) * f->h;
}

static void draw_axes(cairo_t *cr, const Frame *f, const Panel *p)
{
    char buf[32];
    cairo_set_font_size(cr, 11);
    cairo_set_line_width(cr, 1);
    /* the value axis: decades on a log scale, 1-2-5 steps otherwise */
    double step = p->log ? 1 : nice_step(p->hi - p->lo, 5);
    for (double t = ceil(p->lo / step) * step; t <= p->hi + 1e-9 * step; t += step) {
        double y = f->y0 + f->h - (t - p->lo) / (p->hi - p->lo) * f->h;
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, f->x0, y);
        cairo_line_to(cr, f->x0 + f->w, y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        g_snprintf(buf, sizeof buf, "%.4g", p->log ? pow(10, t) : fabs(t) < 1e-12 ? 0 : t);
        text_at(cr, f->x0 - 6, y, buf, 1.0, 0.5);
    }
    /* the epoch axis: whole epochs */
    double xs = MAX(1.0, nice_step(f->xmax - f->xmin, 8));
    for (double e = ceil(f->xmin / xs) * xs; e <= f->xmax + 1e-9; e += xs) {
        double x = fx(f, e);
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, x, f->y0);
        cairo_line_to(cr, x, f->y0 + f->h);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        g_snprintf(buf, sizeof buf, "%.0f", e);
        text_at(cr, x, f->y0 + f->h + 6, buf, 0.5, 0.0);
    }
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_rectangle(cr, f->x0, f->y0, f->w, f->h);
    cairo_stroke(cr);
    cairo_set_font_size(cr, 13);
    g_autofree char *title = g_strdup_printf("%s%s", p->title, p->log ? " (logarithmic)" : "");
    text_at(cr, f->x0, f->y0 - 8, title, 0.0, 1.0);
    cairo_set_font_size(cr, 11);
    text_at(cr, f->x0 + f->w / 2, f->y0 + f->h + 22, "epoch", 0.5, 0.0);
}

static void draw_series(cairo_t *cr, const Frame *f, const Panel *p, const LmnMetrics *m,
                        guint epoch_col)
{
    for (guint s = 0; s < p->n_series; s++) {
        const Series *se = &p->series[s];
        cairo_set_source_rgb(cr, se->r, se->g, se->b);
        cairo_set_line_width(cr, 2);
        double dash[] = {6, 4};
        cairo_set_dash(cr, dash, se->dashed ? 2 : 0, 0);
        gboolean pen = FALSE;
        for (guint r = 0; r < m->n_rows; r++) {
            double v = metrics_at(m, r, se->column), e = metrics_at(m, r, epoch_col);
            if (isnan(v) || isnan(e) || (p->log && v <= 0)) {
                pen = FALSE;
                continue;
            }
            if (pen)
                cairo_line_to(cr, fx(f, e), fy(f, p, v));
            else
                cairo_move_to(cr, fx(f, e), fy(f, p, v));
            pen = TRUE;
        }
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        /* a dot per epoch while they are few enough to tell apart */
        for (guint r = 0; m->n_rows <= 40 && r < m->n_rows; r++) {
            double v = metrics_at(m, r, se->column), e = metrics_at(m, r, epoch_col);
            if (isnan(v) || isnan(e) || (p->log && v <= 0))
                continue;
            cairo_arc(cr, fx(f, e), fy(f, p, v), 2.5, 0, 2 * G_PI);
            cairo_fill(cr);
        }
    }
}

static void draw_legend(cairo_t *cr, const Frame *f, const Panel *p, const LmnMetrics *m)
{
    cairo_set_font_size(cr, 11);
    for (guint s = 0; s < p->n_series; s++) {
        const Series *se = &p->series[s];
        double x = f->x0 + f->w + 16, y = f->y0 + 10 + 18.0 * s;
        cairo_set_source_rgb(cr, se->r, se->g, se->b);
        cairo_set_line_width(cr, 2);
        double dash[] = {6, 4};
        cairo_set_dash(cr, dash, se->dashed ? 2 : 0, 0);
        cairo_move_to(cr, x, y);
        cairo_line_to(cr, x + 24, y);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
        text_at(cr, x + 30, y, g_ptr_array_index(m->columns, se->column), 0.0, 0.5);
    }
}

/* The losses, the accuracies and the learning rate, the panels that have data. */
static guint make_panels(const LmnMetrics *m, Panel *panels)
{
    guint n = 0;
    Panel *loss = &panels[n];
    *loss = (Panel){.title = "loss"};
    panel_add(loss, m, lmn_metrics_column(m, "train_loss"), FALSE, 0);
    panel_add(loss, m, lmn_metrics_column(m, "val_loss"), FALSE, 1);
    for (guint c = 0, k = 2; c < m->columns->len; c++) {
        const char *name = g_ptr_array_index(m->columns, c);
        if (g_str_has_prefix(name, "train_loss_") || g_str_has_prefix(name, "val_loss_"))
            panel_add(loss, m, (gint) c, TRUE, k++);
    }
    n += loss->n_series > 0;
    Panel *acc = &panels[n];
    *acc = (Panel){.title = "accuracy"};
    panel_add(acc, m, lmn_metrics_column(m, "train_accuracy"), FALSE, 0);
    panel_add(acc, m, lmn_metrics_column(m, "val_accuracy"), FALSE, 1);
    n += acc->n_series > 0;
    Panel *lr = &panels[n];
    *lr = (Panel){.title = "learning rate"};
    panel_add(lr, m, lmn_metrics_column(m, "lr"), FALSE, 2);
    n += lr->n_series > 0;
    for (guint i = 0; i < n; i++)
        panel_range(&panels[i], m);
    return n;
}

static void draw(cairo_t *cr, const LmnMetrics *m, const Panel *panels, guint n_panels,
                 const char *title, double height)
{
    guint epoch_col = (guint) lmn_metrics_column(m, "epoch");
    double xmin = INFINITY, xmax = -INFINITY;
    for (guint r = 0; r < m->n_rows; r++) {
        double e = metrics_at(m, r, epoch_col);
        if (!isnan(e)) {
            xmin = MIN(xmin, e);
            xmax = MAX(xmax, e);
        }
    }
    if (!(xmax > xmin)) {
        xmin = (isfinite(xmin) ? xmin : 1) - 0.5;
        xmax = xmin + 1;
    }
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_rectangle(cr, 0, 0, WIDTH, height);
    cairo_fill(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    if (title) {
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        cairo_set_font_size(cr, 14);
        text_at(cr, LEFT, 10, title, 0.0, 0.0);
    }
    for (guint i = 0; i < n_panels; i++) {
        Frame f = {LEFT, TOP + i * (PANEL_H + GAP) + 20, WIDTH - LEFT - RIGHT, PANEL_H - 20, xmin,
                   xmax};
        draw_axes(cr, &f, &panels[i]);
        draw_series(cr, &f, &panels[i], m, epoch_col);
        draw_legend(cr, &f, &panels[i], m);
    }
}

/* Renders into the temporary file @tmp, as PNG or SVG. */
static cairo_status_t render(const LmnMetrics *m, const Panel *panels, guint n_panels,
                             const char *title, gboolean svg, const char *tmp)
{
    double height = TOP + n_panels * (PANEL_H + GAP) - GAP + BOTTOM;
    cairo_surface_t *surface =
        svg ? cairo_svg_surface_create(tmp, WIDTH, height)
            : cairo_image_surface_create(CAIRO_FORMAT_RGB24, WIDTH, (int) height);
    cairo_t *cr = cairo_create(surface);
    draw(cr, m, panels, n_panels, title, height);
    cairo_status_t st = cairo_status(cr);
    cairo_destroy(cr);
    if (st == CAIRO_STATUS_SUCCESS && !svg)
        st = cairo_surface_write_to_png(surface, tmp);
    cairo_surface_finish(surface);
    if (st == CAIRO_STATUS_SUCCESS)
        st = cairo_surface_status(surface);
    cairo_surface_destroy(surface);
    return st;
}

gboolean lmn_plot_metrics(const LmnMetrics *m, const char *output, const char *title,
                          GError **error)
{
    gboolean svg = g_str_has_suffix(output, ".svg");
    if (!svg && !g_str_has_suffix(output, ".png")) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "%s: the picture's name must end in .png or .svg", output);
        return FALSE;
    }
    Panel panels[3];
    guint n_panels = m->n_rows > 0 ? make_panels(m, panels) : 0;
    if (n_panels == 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "nothing to plot: the metrics have no rows with a loss, an accuracy or a "
                    "learning rate (has an epoch finished yet?)");
        return FALSE;
    }
    /* Written beside @output and renamed over it: a viewer never reads half a picture. */
    g_autofree char *tmp = g_strdup_printf("%s.XXXXXX.tmp", output);
    int fd = g_mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: cannot create it: %s", output,
                    g_strerror(e));
        return FALSE;
    }
    /* mkstemp makes it private; a picture is for anyone who may read the directory */
    fchmod(fd, 0644);
    close(fd);
    cairo_status_t st = render(m, panels, n_panels, title, svg, tmp);
    if (st != CAIRO_STATUS_SUCCESS) {
        g_unlink(tmp);
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: cannot write it: %s", output,
                    cairo_status_to_string(st));
        return FALSE;
    }
    if (g_rename(tmp, output) != 0) {
        int e = errno;
        g_unlink(tmp);
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: cannot write it: %s", output,
                    g_strerror(e));
        return FALSE;
    }
    return TRUE;
}

void lmn_plot_shutdown(void)
{
    cairo_debug_reset_static_data();
    FcFini();
}
