/* Lamina — classification metrics from class probabilities and labels: top-1 and top-K
 * accuracy, the confusion matrix, per-class precision, recall, F1 and support, and their macro
 * averages.  `lamina eval` uses them; a program of its own can feed them batch by batch. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/**
 * LmnClassMetrics:
 * An accumulator over @n_classes classes: the number of samples, of top-1 and top-K hits, and
 * the confusion matrix (rows = true class, columns = predicted class).  Memory is
 * O(n_classes^2), independent of the number of samples.
 */
typedef struct LmnClassMetrics LmnClassMetrics;

/**
 * lmn_class_metrics_rank:
 * @row: @n_classes scores (probabilities or logits) of one sample
 * The rank of class @label in @row: the number of classes j with row[j] > row[label], or with
 * row[j] == row[label] and j < label.  Ties are so broken by index, as lmn_op_count_correct()'s
 * first maximum is: rank 0 is the first maximum.  @row must be finite (lmn_class_metrics_add()
 * checks).
 * Returns: the rank, in [0, @n_classes)
 */
gint64 lmn_class_metrics_rank(const float *row, gint64 n_classes, gint64 label);
/**
 * lmn_class_metrics_argmax:
 * Returns: the index of the first maximum of the finite @row
 */
gint64 lmn_class_metrics_argmax(const float *row, gint64 n_classes);
/**
 * lmn_class_metrics_softmax:
 * @logits: @n rows of @n_classes
 * @probs: (out): @n rows of @n_classes (may be @logits)
 * The softmax of each row, computed in double after subtracting the row's maximum.
 */
void lmn_class_metrics_softmax(const float *logits, gint64 n, gint64 n_classes, float *probs);
/**
 * lmn_class_metrics_accumulate:
 * sum[i] += probs[i] for i < @count, in double: averages of several models' or views'
 * probabilities are summed so, then divided by lmn_class_metrics_mean().
 */
void lmn_class_metrics_accumulate(double *sum, const float *probs, gsize count);
/** lmn_class_metrics_mean: out[i] = (float) (sum[i] / @n) for i < @count (@n > 0). */
void lmn_class_metrics_mean(const double *sum, gsize count, guint n, float *out);

/**
 * lmn_class_metrics_new:
 * @n_classes: at least 1, and with @n_classes^2 counters that fit in memory
 * @top_k: K of the top-K accuracy, in [1, @n_classes]
 * Returns: (transfer full) (nullable): an empty accumulator, or NULL with LMN_DATA_ERROR_VALUE
 *   naming the value when @n_classes or @top_k is out of range
 */
LmnClassMetrics *lmn_class_metrics_new(gint64 n_classes, gint64 top_k, GError **error);
/** lmn_class_metrics_free: frees @m (NULL is ignored). */
void lmn_class_metrics_free(LmnClassMetrics *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LmnClassMetrics, lmn_class_metrics_free)

/**
 * lmn_class_metrics_add:
 * @probs: @n rows of n_classes scores; only their order matters (probabilities or logits)
 * @labels: @n class labels
 * Adds @n samples.  The predicted class of a sample is lmn_class_metrics_argmax() of its row; it is
 * a top-K hit when lmn_class_metrics_rank() of its label is below K. Returns: FALSE with
 * LMN_DATA_ERROR_VALUE naming the sample when a label lies outside [0, n_classes) or a score is NaN
 * or infinite (nothing is added then)
 */
gboolean lmn_class_metrics_add(LmnClassMetrics *m, const float *probs, const gint32 *labels,
                               gint64 n, GError **error);

/** lmn_class_metrics_get_n_classes: Returns: the class count. */
gint64 lmn_class_metrics_get_n_classes(const LmnClassMetrics *m);
/** lmn_class_metrics_get_top_k: Returns: K. */
gint64 lmn_class_metrics_get_top_k(const LmnClassMetrics *m);
/** lmn_class_metrics_get_samples: Returns: the number of samples added. */
gint64 lmn_class_metrics_get_samples(const LmnClassMetrics *m);
/** lmn_class_metrics_get_accuracy: Returns: top-1 hits / samples (NAN without samples). */
double lmn_class_metrics_get_accuracy(const LmnClassMetrics *m);
/** lmn_class_metrics_get_top_k_accuracy: Returns: top-K hits / samples (NAN without samples). */
double lmn_class_metrics_get_top_k_accuracy(const LmnClassMetrics *m);
/**
 * lmn_class_metrics_get_confusion:
 * Returns: (transfer none): the n_classes x n_classes confusion matrix, row-major: element
 *   [t * n_classes + p] counts the samples of true class t predicted as p
 */
const gint64 *lmn_class_metrics_get_confusion(const LmnClassMetrics *m);
/**
 * lmn_class_metrics_get_class:
 * @precision_out, @recall_out, @f1_out, @support_out: (out) (optional)
 * Class @c's precision TP / (TP + FP), recall TP / (TP + FN), F1 2PR / (P + R) and support
 * TP + FN (its true samples), from the confusion matrix.  Every 0/0 is defined as 0: the
 * precision of a class never predicted, the recall of a class without samples, and the F1 when
 * both are 0.
 */
void lmn_class_metrics_get_class(const LmnClassMetrics *m, gint64 c, double *precision_out,
                                 double *recall_out, double *f1_out, gint64 *support_out);
/**
 * lmn_class_metrics_get_macro:
 * @precision_out, @recall_out, @f1_out: (out) (optional)
 * The unweighted means over every class (classes without samples included) of the per-class
 * precision, recall and F1 of lmn_class_metrics_get_class().  The macro F1 is the mean of the
 * per-class F1s, not the F1 of the macro precision and recall.
 */
void lmn_class_metrics_get_macro(const LmnClassMetrics *m, double *precision_out,
                                 double *recall_out, double *f1_out);

G_END_DECLS
