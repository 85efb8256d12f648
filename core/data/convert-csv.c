/* Lamina — CSV files to a dataset split (dataset.h): float features, one integer label column. */
#include "convert-private.h"

#include <errno.h>
#include <math.h>
#include <string.h>

void lmn_csv_table_clear(LmnCsvTable *t)
{
    g_clear_pointer(&t->x, g_free);
    g_clear_pointer(&t->y, g_free);
    t->n = t->f = 0;
}

/* Splits one line into trimmed cells, removing surrounding double quotes. */
static GPtrArray *split_cells(const char *line, gsize len)
{
    GPtrArray *cells = g_ptr_array_new_with_free_func(g_free);
    gsize start = 0;
    gboolean quoted = FALSE;
    for (gsize i = 0; i <= len; i++) {
        if (i < len && line[i] == '"') {
            quoted = !quoted;
        }
        if (i == len || (line[i] == ',' && !quoted)) {
            char *cell = g_strstrip(g_strndup(line + start, i - start));
            gsize cl = strlen(cell);
            if (cl >= 2 && cell[0] == '"' && cell[cl - 1] == '"') {
                memmove(cell, cell + 1, cl - 2);
                cell[cl - 2] = '\0';
                g_strstrip(cell);
            }
            g_ptr_array_add(cells, cell);
            start = i + 1;
        }
    }
    return cells;
}

/* The state of lmn_csv_parse() between rows. */
typedef struct {
    const char *name, *label_column;
    gboolean header;
    GArray *xs;    /* float features, row after row */
    GArray *ys;    /* gint32 labels */
    gint64 n_cols; /* -1 until the first row */
    gint64 label;  /* the label's column */
} CsvParse;

/* The first row fixes the column count and resolves the label column: a name (from the header)
 * or an index (negative counts from the end). */
static gboolean csv_columns(CsvParse *p, GPtrArray *cells, gint64 line_no, GError **error)
{
    gint64 nc = cells->len;
    p->n_cols = nc;
    if (nc < 2) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                    "%s:%" G_GINT64_FORMAT ": has %" G_GINT64_FORMAT
                    " column; a CSV data set needs a label column and at least one "
                    "feature",
                    p->name, line_no, nc);
        return FALSE;
    }
    char *end = NULL;
    errno = 0;
    gint64 idx = g_ascii_strtoll(p->label_column, &end, 10);
    gboolean numeric = end != p->label_column && *end == '\0' && errno == 0;
    p->label = G_MININT64;
    if (!numeric && p->header) {
        for (gint64 c = 0; c < nc; c++)
            if (strcmp(g_ptr_array_index(cells, c), p->label_column) == 0)
                p->label = c;
    } else if (numeric) {
        p->label = idx < 0 ? nc + idx : idx;
    }
    if (p->label < 0 || p->label >= nc) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                    "%s:%" G_GINT64_FORMAT ": no label column '%s' among the %" G_GINT64_FORMAT
                    " columns%s",
                    p->name, line_no, p->label_column, nc,
                    numeric     ? " (columns count from 0; negative counts from the end)"
                    : p->header ? " of the header"
                                : "; without --header give an index");
        return FALSE;
    }
    return TRUE;
}

/* One data row: an integer label in the label column, finite numbers everywhere else. */
static gboolean csv_row(CsvParse *p, GPtrArray *cells, gint64 line_no, GError **error)
{
    for (gint64 c = 0; c < (gint64) cells->len; c++) {
        const char *cell = g_ptr_array_index(cells, c);
        char *end = NULL;
        if (c == p->label) {
            errno = 0;
            gint64 v = g_ascii_strtoll(cell, &end, 10);
            if (*cell == '\0' || *end != '\0' || errno != 0 || v < 0 || v > G_MAXINT32) {
                g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                            "%s:%" G_GINT64_FORMAT ": column %" G_GINT64_FORMAT
                            " (the label) holds '%s'; labels must be integers 0, 1, 2, ...",
                            p->name, line_no, c + 1, cell);
                return FALSE;
            }
            gint32 y = (gint32) v;
            g_array_append_val(p->ys, y);
            continue;
        }
        double v = g_ascii_strtod(cell, &end);
        if (*cell == '\0' || *end != '\0' || !isfinite((float) v)) {
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                        "%s:%" G_GINT64_FORMAT ": column %" G_GINT64_FORMAT
                        " holds '%s'; features must be finite numbers",
                        p->name, line_no, c + 1, cell);
            return FALSE;
        }
        float fv = (float) v;
        g_array_append_val(p->xs, fv);
    }
    return TRUE;
}

/* Whether a line holds only white space. */
static gboolean blank_line(const char *line, gsize len)
{
    for (gsize i = 0; i < len; i++)
        if (!g_ascii_isspace(line[i]))
            return FALSE;
    return TRUE;
}

gboolean lmn_csv_parse(const char *data, gsize len, const char *name, const char *label_column,
                       gboolean header, LmnCsvTable *out, GError **error)
{
    g_return_val_if_fail((data != NULL || len == 0) && name != NULL && label_column != NULL &&
                             out != NULL,
                         FALSE);
    memset(out, 0, sizeof *out);
    if (memchr(data, '\0', len) != NULL) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                    "%s: holds a NUL byte; it is not a text CSV file", name);
        return FALSE;
    }
    g_autoptr(GArray) xs = g_array_new(FALSE, FALSE, sizeof(float));
    g_autoptr(GArray) ys = g_array_new(FALSE, FALSE, sizeof(gint32));
    CsvParse p = {name, label_column, header, xs, ys, -1, G_MININT64};
    gboolean need_header = header;
    gsize pos = 0;
    gint64 line_no = 0;
    while (pos < len) {
        const char *line = data + pos;
        const char *nl = memchr(line, '\n', len - pos);
        gsize line_len = nl != NULL ? (gsize) (nl - line) : len - pos;
        pos += line_len + (nl != NULL ? 1 : 0);
        line_no++;
        if (line_len > 0 && line[line_len - 1] == '\r')
            line_len--;
        if (blank_line(line, line_len))
            continue;
        g_autoptr(GPtrArray) cells = split_cells(line, line_len);
        if (p.n_cols < 0) {
            if (!csv_columns(&p, cells, line_no, error))
                return FALSE;
        } else if ((gint64) cells->len != p.n_cols) {
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                        "%s:%" G_GINT64_FORMAT ": the row has %u columns but the first row has "
                        "%" G_GINT64_FORMAT,
                        name, line_no, cells->len, p.n_cols);
            return FALSE;
        }
        if (need_header) {
            need_header = FALSE;
            continue;
        }
        if (!csv_row(&p, cells, line_no, error))
            return FALSE;
    }
    if (ys->len == 0) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT, "%s: holds no data rows", name);
        return FALSE;
    }
    out->n = ys->len;
    out->f = p.n_cols - 1;
    out->x = (float *) g_array_free(g_steal_pointer(&xs), FALSE);
    out->y = (gint32 *) g_array_free(g_steal_pointer(&ys), FALSE);
    return TRUE;
}

gboolean lmn_convert_csv(const char *csv, const char *label_column, gboolean header,
                         const char *output, gboolean overwrite, gboolean normalize,
                         GError **error)
{
    g_return_val_if_fail(csv != NULL && label_column != NULL && output != NULL, FALSE);
    g_autoptr(GError) local = NULL;
    g_autoptr(GMappedFile) map = g_mapped_file_new(csv, FALSE, &local);
    if (map == NULL) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_OPEN, "%s: cannot read it: %s", csv,
                    local->message);
        return FALSE;
    }
    LmnCsvTable t = {0};
    if (!lmn_csv_parse(g_mapped_file_get_contents(map), g_mapped_file_get_length(map), csv,
                       label_column, header, &t, error)) {
        return FALSE;
    }
    gboolean ok = FALSE;
    g_autoptr(LmnSplitWriter) w = lmn_split_writer_new(output, overwrite, error);
    if (w != NULL) {
        hsize_t xd[2] = {(hsize_t) t.n, (hsize_t) t.f};
        hsize_t yd[1] = {(hsize_t) t.n};
        g_auto(LmnH5Id) x =
            lmn_split_writer_write(w, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, t.x, error);
        g_auto(LmnH5Id) y = x < 0 ? H5I_INVALID_HID
                                  : lmn_split_writer_write(w, "y", H5T_STD_I32LE, H5T_NATIVE_INT32,
                                                           1, yd, t.y, error);
        ok = y >= 0 && lmn_split_writer_write_stats(w, x, t.x, t.n, t.f, 1, normalize, error);
        lmn_h5_close(x);
        x = H5I_INVALID_HID;
        lmn_h5_close(y);
        y = H5I_INVALID_HID;
        ok = ok && lmn_split_writer_commit(w, error);
    }
    lmn_csv_table_clear(&t);
    return ok;
}
