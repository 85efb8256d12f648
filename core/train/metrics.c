/* Lamina — classification metrics from probabilities and labels (lamina/metrics.h). */
#include <lamina/error.h>
#include <lamina/metrics.h>

#include <math.h>

struct LmnClassMetrics {
    gint64 n_classes, top_k;
    gint64 samples, top1, topk;
    gint64 *confusion; /* [n_classes, n_classes], rows = true class */
};

gint64 lmn_class_metrics_rank(const float *row, gint64 n_classes, gint64 label)
{
    g_return_val_if_fail(row && label >= 0 && label < n_classes, 0);
    const float v = row[label];
    gint64 rank = 0;
    for (gint64 j = 0; j < n_classes; j++)
        rank += row[j] > v || (row[j] == v && j < label);
    return rank;
}

gint64 lmn_class_metrics_argmax(const float *row, gint64 n_classes)
{
    g_return_val_if_fail(row && n_classes > 0, 0);
    gint64 best = 0;
    for (gint64 j = 1; j < n_classes; j++)
        if (row[j] > row[best])
            best = j;
    return best;
}

void lmn_class_metrics_softmax(const float *logits, gint64 n, gint64 n_classes, float *probs)
{
    g_return_if_fail((logits && probs) || n == 0);
    for (gint64 i = 0; i < n; i++) {
        const float *z = logits + i * n_classes;
        float *p = probs + i * n_classes;
        double max = -INFINITY, sum = 0;
        for (gint64 j = 0; j < n_classes; j++)
            max = MAX(max, (double) z[j]);
        for (gint64 j = 0; j < n_classes; j++)
            sum += exp((double) z[j] - max);
        /* z and p may alias: each element is read before it is written. */
        for (gint64 j = 0; j < n_classes; j++)
            p[j] = (float) (exp((double) z[j] - max) / sum);
    }
}

void lmn_class_metrics_accumulate(double *sum, const float *probs, gsize count)
{
    for (gsize i = 0; i < count; i++)
        sum[i] += (double) probs[i];
}

void lmn_class_metrics_mean(const double *sum, gsize count, guint n, float *out)
{
    g_return_if_fail(n > 0);
    for (gsize i = 0; i < count; i++)
        out[i] = (float) (sum[i] / (double) n);
}

LmnClassMetrics *lmn_class_metrics_new(gint64 n_classes, gint64 top_k, GError **error)
{
    gsize cells = 0;
    if (n_classes < 1 || !g_size_checked_mul(&cells, (gsize) n_classes, (gsize) n_classes) ||
        !g_size_checked_mul(&cells, cells, sizeof(gint64)) || cells > G_MAXSIZE / 2) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                    "%" G_GINT64_FORMAT " classes: expected at least 1, and a confusion matrix "
                    "that fits in memory",
                    n_classes);
        return NULL;
    }
    if (top_k < 1 || top_k > n_classes) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                    "top-k %" G_GINT64_FORMAT
                    ": expected 1 to the number of classes, %" G_GINT64_FORMAT,
                    top_k, n_classes);
        return NULL;
    }
    LmnClassMetrics *m = g_new0(LmnClassMetrics, 1);
    m->n_classes = n_classes;
    m->top_k = top_k;
    m->confusion = g_try_malloc0(cells);
    if (!m->confusion) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                    "%" G_GINT64_FORMAT " classes: the confusion matrix does not fit in memory",
                    n_classes);
        g_free(m);
        return NULL;
    }
    return m;
}

void lmn_class_metrics_free(LmnClassMetrics *m)
{
    if (!m)
        return;
    g_free(m->confusion);
    g_free(m);
}

/* Checks every row and label first, so a bad batch adds nothing. */
static gboolean check_batch(const LmnClassMetrics *m, const float *probs, const gint32 *labels,
                            gint64 n, GError **error)
{
    for (gint64 i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= m->n_classes) {
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                        "sample %" G_GINT64_FORMAT ": label %d outside [0, %" G_GINT64_FORMAT ")",
                        i, labels[i], m->n_classes);
            return FALSE;
        }
        for (gint64 j = 0; j < m->n_classes; j++)
            if (!isfinite(probs[i * m->n_classes + j])) {
                g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                            "sample %" G_GINT64_FORMAT ": class %" G_GINT64_FORMAT
                            "'s score is not finite (%g)",
                            i, j, (double) probs[i * m->n_classes + j]);
                return FALSE;
            }
    }
    return TRUE;
}

gboolean lmn_class_metrics_add(LmnClassMetrics *m, const float *probs, const gint32 *labels,
                               gint64 n, GError **error)
{
    g_return_val_if_fail(m && n >= 0 && ((probs && labels) || n == 0), FALSE);
    if (!check_batch(m, probs, labels, n, error))
        return FALSE;
    for (gint64 i = 0; i < n; i++) {
        const float *row = probs + i * m->n_classes;
        gint64 pred = lmn_class_metrics_argmax(row, m->n_classes);
        gint64 rank = lmn_class_metrics_rank(row, m->n_classes, labels[i]);
        m->confusion[labels[i] * m->n_classes + pred]++;
        m->top1 += rank == 0;
        m->topk += rank < m->top_k;
    }
    m->samples += n;
    return TRUE;
}

gint64 lmn_class_metrics_get_n_classes(const LmnClassMetrics *m)
{
    return m->n_classes;
}

gint64 lmn_class_metrics_get_top_k(const LmnClassMetrics *m)
{
    return m->top_k;
}

gint64 lmn_class_metrics_get_samples(const LmnClassMetrics *m)
{
    return m->samples;
}

double lmn_class_metrics_get_accuracy(const LmnClassMetrics *m)
{
    return m->samples ? (double) m->top1 / (double) m->samples : NAN;
}

double lmn_class_metrics_get_top_k_accuracy(const LmnClassMetrics *m)
{
    return m->samples ? (double) m->topk / (double) m->samples : NAN;
}

const gint64 *lmn_class_metrics_get_confusion(const LmnClassMetrics *m)
{
    return m->confusion;
}

/* a / b with 0/0 (and any x/0) defined as 0. */
static double ratio(double a, double b)
{
    return b > 0 ? a / b : 0;
}

void lmn_class_metrics_get_class(const LmnClassMetrics *m, gint64 c, double *precision_out,
                                 double *recall_out, double *f1_out, gint64 *support_out)
{
    g_return_if_fail(m && c >= 0 && c < m->n_classes);
    gint64 tp = m->confusion[c * m->n_classes + c], predicted = 0, support = 0;
    for (gint64 j = 0; j < m->n_classes; j++) {
        predicted += m->confusion[j * m->n_classes + c];
        support += m->confusion[c * m->n_classes + j];
    }
    double p = ratio((double) tp, (double) predicted), r = ratio((double) tp, (double) support);
    if (precision_out)
        *precision_out = p;
    if (recall_out)
        *recall_out = r;
    if (f1_out)
        *f1_out = ratio(2 * p * r, p + r);
    if (support_out)
        *support_out = support;
}

void lmn_class_metrics_get_macro(const LmnClassMetrics *m, double *precision_out,
                                 double *recall_out, double *f1_out)
{
    g_return_if_fail(m);
    double sp = 0, sr = 0, sf = 0;
    for (gint64 c = 0; c < m->n_classes; c++) {
        double p, r, f;
        lmn_class_metrics_get_class(m, c, &p, &r, &f, NULL);
        sp += p;
        sr += r;
        sf += f;
    }
    if (precision_out)
        *precision_out = sp / (double) m->n_classes;
    if (recall_out)
        *recall_out = sr / (double) m->n_classes;
    if (f1_out)
        *f1_out = sf / (double) m->n_classes;
}
