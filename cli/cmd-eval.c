/* Lamina — `lamina eval`. */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* What the dataset's targets look like to a model: class labels or float targets. */
static LmnTensorInfo target_info(const LmnDataset *ds)
{
    LmnTensorInfo target;
    if (lmn_dataset_has_class_labels(ds)) {
        target.shape = lmn_shape_make(0);
        target.dtype = LMN_DTYPE_I32;
    } else {
        target.shape = *lmn_dataset_get_target_shape(ds);
        target.dtype = LMN_DTYPE_F32;
    }
    return target;
}

/* The evaluation's figures: the total loss, the accuracy, and each loss layer's own mean. */
typedef struct {
    double loss, acc;
    guint n_losses;
    char **names; /* the loss layers' names */
    double *losses;
    gboolean has_iou; /* a segmentation loss (binary_cross_entropy_with_logits on a mask) */
    LmnSegmentationIoU iou;
} EvalResult;

static void eval_result_clear(EvalResult *r)
{
    g_strfreev(r->names);
    g_free(r->losses);
}

/* "\"losses\": {\"main\": 0.41, ...}, " in the JSON, every loss layer by name. */
static void print_json_losses(const EvalResult *r)
{
    char b[G_ASCII_DTOSTR_BUF_SIZE];
    printf("\"losses\": {");
    for (guint k = 0; k < r->n_losses; k++) {
        g_autofree char *name = g_strescape(r->names[k], NULL);
        printf("%s\"%s\": %s", k ? ", " : "", name,
               isnan(r->losses[k]) ? "null" : g_ascii_formatd(b, sizeof b, "%.6f", r->losses[k]));
    }
    printf("}, ");
}

/* A JSON number with 6 decimals, or null for NAN (@b: G_ASCII_DTOSTR_BUF_SIZE). */
static const char *json_num(char *b, double v)
{
    return isnan(v) ? "null" : g_ascii_formatd(b, G_ASCII_DTOSTR_BUF_SIZE, "%.6f", v);
}

/* One checkpoint's figures of lmn_evaluate_full(): "loss", "losses", "accuracy", "samples" in
 * JSON (without the closing brace, for the keys that follow), or its line of text. */
static void print_result(gboolean json, const EvalResult *r, const LmnDataset *ds, const char *data)
{
    double loss = r->loss, acc = r->acc;
    if (json) {
        char lb[G_ASCII_DTOSTR_BUF_SIZE], ab[G_ASCII_DTOSTR_BUF_SIZE];
        printf("{\"loss\": %s, ", json_num(lb, loss));
        print_json_losses(r);
        printf("\"accuracy\": %s, \"samples\": %" G_GINT64_FORMAT, json_num(ab, acc),
               lmn_dataset_get_length(ds));
        return;
    }
    printf("loss %.4f", loss);
    for (guint k = 0; r->n_losses > 1 && k < r->n_losses; k++)
        printf("%s%s %.4f%s", k ? ", " : " (", r->names[k], r->losses[k],
               k + 1 == r->n_losses ? ")" : "");
    if (!isnan(acc))
        printf("  accuracy %.2f%%", 100 * acc);
    printf("  (%" G_GINT64_FORMAT " samples of %s)\n", lmn_dataset_get_length(ds), data);
}

/* `lamina eval`'s options, as parsed. */
typedef struct {
    gint64 batch, top_k, pad;
    gboolean top_k_given, json;
    gboolean ema; /* the parameters from /ema, the moving average */
    LmnTta tta;
    const char *tta_name;
    const char *data;
    const char *distributed; /* --distributed */
    LmnComm *comm;           /* the ranks sharing the split (one without mpirun) */
} EvalOptions;

/* One checkpoint of the evaluation, an ensemble member when there are several. */
typedef struct {
    const char *ckpt;
    LmnConfig *cfg;
    LmnDataset *ds;
    EvalResult r;
    LmnShape input;
    gint64 n_classes; /* -1 without class labels */
    LmnClassMetrics *metrics;
} Member;

static void member_clear(Member *m)
{
    lmn_class_metrics_free(m->metrics);
    eval_result_clear(&m->r);
    lmn_dataset_free(m->ds);
    lmn_config_free(m->cfg);
}

/* The ensemble's running sum of its members' probabilities, [N, n_classes] in double, and the
 * labels the first member read. */
typedef struct {
    Member *member;
    const Member *first;
    gboolean ensemble;
    double *sum;
    gint32 *labels;
} ProbSink;

/* The [N, n_classes] sum, allocated at the first member's first batch (overflow-checked). */
static gboolean sink_alloc(ProbSink *s, GError **error)
{
    gint64 n = lmn_dataset_get_length(s->first->ds);
    gsize cells = 0, bytes = 0;
    if (g_size_checked_mul(&cells, (gsize) n, (gsize) s->first->n_classes) &&
        g_size_checked_mul(&bytes, cells, sizeof(double)))
        s->sum = g_try_malloc0(MAX(bytes, 1));
    s->labels = s->sum ? g_try_malloc0(MAX((gsize) n * sizeof(gint32), 1)) : NULL;
    if (s->labels)
        return TRUE;
    g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                "the ensemble's probabilities of %" G_GINT64_FORMAT " samples and %" G_GINT64_FORMAT
                " classes do not fit in memory",
                n, s->first->n_classes);
    return FALSE;
}

static gboolean sink_batch(gint64 start, gint64 n, const float *probs, const gint32 *labels,
                           gpointer user_data, GError **error)
{
    ProbSink *s = user_data;
    Member *m = s->member;
    if (!lmn_class_metrics_add(m->metrics, probs, labels, n, error)) {
        g_prefix_error(error, "%s: ", m->ckpt);
        return FALSE;
    }
    if (!s->ensemble)
        return TRUE;
    if (!s->sum && !sink_alloc(s, error))
        return FALSE;
    if (m == s->first)
        memcpy(s->labels + start, labels, (gsize) n * sizeof(gint32));
    else if (memcmp(s->labels + start, labels, (gsize) n * sizeof(gint32)) != 0) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                    "%s reads other labels than %s from %s (the ensemble's members must be "
                    "scored against the same classes)",
                    m->ckpt, s->first->ckpt, lmn_dataset_get_spec(m->ds));
        return FALSE;
    }
    lmn_class_metrics_accumulate(s->sum + start * m->n_classes, probs, (gsize) (n * m->n_classes));
    return TRUE;
}

/* The checkpoint's config and the split with every target its losses read (y always). */
static gboolean member_open(Member *m, LmnRegistry *registry, const char *data, GError **error)
{
    m->cfg = lmn_cli_checkpoint_config(m->ckpt, registry, error);
    if (!m->cfg)
        return FALSE;
    g_autoptr(GStrvBuilder) nb = g_strv_builder_new();
    for (guint t = 1; t < lmn_config_get_n_targets(m->cfg); t++)
        g_strv_builder_add(nb, lmn_config_get_target_name(m->cfg, t));
    g_auto(GStrv) names = g_strv_builder_end(nb);
    m->ds = lmn_dataset_open_with_targets(data, (const char *const *) names, -1, error);
    return m->ds != NULL;
}

/* Members must agree with the first on the input shape and the class count. */
static gboolean member_check_agrees(const Member *m, const Member *first, GError **error)
{
    if (lmn_dataset_get_length(m->ds) != lmn_dataset_get_length(first->ds)) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                    "%s: the split changed length while the ensemble was evaluated",
                    lmn_dataset_get_spec(m->ds));
        return FALSE;
    }
    if (lmn_shape_equal(&m->input, &first->input) && m->n_classes == first->n_classes)
        return TRUE;
    g_autofree char *a = lmn_shape_to_string(&first->input);
    g_autofree char *b = lmn_shape_to_string(&m->input);
    g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                "the ensemble's members disagree: %s takes inputs %s with %" G_GINT64_FORMAT
                " classes, %s inputs %s with %" G_GINT64_FORMAT " classes",
                first->ckpt, a, first->n_classes, m->ckpt, b, m->n_classes);
    return FALSE;
}

/* The class count and K, checked: K outside [1, C] is a usage error (G_OPTION_ERROR). */
static gboolean member_setup_metrics(Member *m, const Member *first, EvalOptions *o,
                                     gboolean ensemble, GError **error)
{
    if (m->n_classes < 1) {
        if (!ensemble && o->tta == LMN_TTA_NONE && !o->top_k_given)
            return TRUE; /* a regression model: the loss alone, as ever */
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                    "%s: --top-k, --tta and ensembles need a loss whose target holds class "
                    "labels",
                    m->ckpt);
        return FALSE;
    }
    if (m != first && !member_check_agrees(m, first, error))
        return FALSE;
    if (!o->top_k_given)
        o->top_k = MIN(5, m->n_classes);
    if (o->top_k > m->n_classes) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--top-k %" G_GINT64_FORMAT ": %s has only %" G_GINT64_FORMAT " classes",
                    o->top_k, m->ckpt, m->n_classes);
        return FALSE;
    }
    if (!lmn_evaluate_check_tta(&m->input, o->tta, o->pad, error)) {
        g_prefix_error(error, "%s: --tta %s: ", m->ckpt, o->tta_name);
        return FALSE;
    }
    m->metrics = lmn_class_metrics_new(m->n_classes, o->top_k, error);
    return m->metrics != NULL;
}

/* Builds the checkpoint's model on the backend, loads its weights, evaluates it on its split
 * (lmn_evaluate_full()) and, with class labels, feeds its probabilities to @sink. */
/* Several ranks: each one's share of the split's probabilities and labels, placed into arrays
 * of the whole split that are zero elsewhere, so that a sum over the ranks gathers them. */
typedef struct {
    float *probs;  /* [N, n_classes] */
    float *labels; /* [N]: class indices, exact in float below 2^24 */
    gint64 n_classes;
} Gather;

static gboolean gather_batch(gint64 start, gint64 n, const float *probs, const gint32 *labels,
                             gpointer user_data, GError **error)
{
    (void) error;
    Gather *g = user_data;
    memcpy(g->probs + start * g->n_classes, probs, (gsize) (n * g->n_classes) * sizeof(float));
    for (gint64 i = 0; i < n; i++)
        g->labels[start + i] = (float) labels[i];
    return TRUE;
}

/* The gathered probabilities, fed to @sink batch by batch as one process would. */
static gboolean replay_gathered(const Gather *g, gint64 n, gint64 batch, ProbSink *sink,
                                GError **error)
{
    g_autofree gint32 *labels = g_new(gint32, MAX(batch, 1));
    for (gint64 start = 0; start < n; start += batch) {
        gint64 m = MIN(batch, n - start);
        for (gint64 i = 0; i < m; i++)
            labels[i] = (gint32) g->labels[start + i];
        if (!sink_batch(start, m, g->probs + start * g->n_classes, labels, sink, error))
            return FALSE;
    }
    return TRUE;
}

/* The class probabilities of @m's split for its metrics: with several ranks each computes its
 * share and the shares are gathered (a sum of arrays zero outside each share). */
static gboolean member_probabilities(Member *m, LmnModel *model, EvalOptions *o, ProbSink *sink,
                                     GError **error)
{
    if (lmn_comm_get_size(o->comm) == 1)
        return lmn_evaluate_probabilities(model, m->ds, o->batch, o->tta, o->pad, sink_batch, sink,
                                          error);
    gint64 n = lmn_dataset_get_length(m->ds), first, count;
    gsize cells = 0, bytes = 0;
    Gather g = {.n_classes = m->n_classes};
    if (g_size_checked_mul(&cells, (gsize) n, (gsize) m->n_classes) &&
        g_size_checked_mul(&bytes, cells, sizeof(float)))
        g.probs = g_try_malloc0(MAX(bytes, 1));
    g.labels = g.probs ? g_try_malloc0(MAX((gsize) n * sizeof(float), 1)) : NULL;
    gboolean ok = g.labels != NULL;
    if (!ok)
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                    "the probabilities of %" G_GINT64_FORMAT " samples and %" G_GINT64_FORMAT
                    " classes do not fit in memory",
                    n, m->n_classes);
    lmn_evaluate_share(n, o->comm, &first, &count);
    ok = ok &&
         lmn_evaluate_probabilities_range(model, m->ds, o->batch, o->tta, o->pad, first, count,
                                          gather_batch, &g, error) &&
         lmn_comm_allreduce(o->comm, g.probs, cells, error) &&
         lmn_comm_allreduce(o->comm, g.labels, (gsize) n, error) &&
         replay_gathered(&g, n, o->batch, sink, error);
    g_free(g.probs);
    g_free(g.labels);
    return ok;
}

static gboolean evaluate_member(Member *m, LmnRegistry *registry, LmnBackend *b, EvalOptions *o,
                                ProbSink *sink, GError **error)
{
    LmnTensorInfo target = target_info(m->ds);
    LmnModel *model = lmn_config_get_n_targets(m->cfg) > 1
                          ? lmn_model_new_for_dataset(m->cfg, registry, b, m->ds, error)
                          : lmn_model_new(m->cfg, registry, b, &target, error);
    EvalResult *r = &m->r;
    if (model) {
        r->n_losses = lmn_model_get_n_losses(model);
        r->names = g_new0(char *, r->n_losses + 1);
        for (guint k = 0; k < r->n_losses; k++)
            r->names[k] = g_strdup(lmn_layer_get_name(lmn_model_get_loss_layer(model, k)));
        r->losses = g_new0(double, MAX(r->n_losses, 1));
        m->input = *lmn_model_get_input_shape(model);
        m->n_classes = lmn_evaluate_get_n_classes(model);
    }
    sink->member = m;
    gboolean ok = model && member_setup_metrics(m, sink->first, o, sink->ensemble, error) &&
                  lmn_dataset_check_model(m->ds, lmn_model_get_input_shape(model),
                                          lmn_model_get_n_classes(model), error) &&
                  lmn_model_check_targets(model, m->ds, error) &&
                  lmn_checkpoint_load_weights_full(
                      m->ckpt, model,
                      o->ema ? LMN_CHECKPOINT_LOAD_EMA : LMN_CHECKPOINT_LOAD_DEFAULT, error) &&
                  lmn_evaluate_full_comm(model, m->ds, o->batch, o->comm, &r->loss, &r->acc,
                                         r->losses, error);
    /* (every rank measures the IoU of the whole split; rank 0 reports it) */
    gint seg = model ? lmn_evaluate_find_segmentation_loss(model) : -1;
    if (ok && seg >= 0) {
        r->has_iou = TRUE;
        ok = lmn_evaluate_segmentation_iou(model, m->ds, o->batch, seg, &r->iou, error);
    }
    if (ok && m->metrics)
        ok = member_probabilities(m, model, o, sink, error);
    lmn_model_free(model);
    return ok;
}

/* The ensemble's metrics: its mean probabilities, batch by batch. */
static LmnClassMetrics *ensemble_metrics(const ProbSink *s, gint64 n, gint64 n_classes,
                                         guint members, gint64 top_k, GError **error)
{
    g_autoptr(LmnClassMetrics) em = lmn_class_metrics_new(n_classes, top_k, error);
    if (!em)
        return NULL;
    const gint64 rows = 256;
    g_autofree float *mean = g_new(float, rows *n_classes);
    for (gint64 start = 0; start < n; start += rows) {
        gint64 m = MIN(rows, n - start);
        lmn_class_metrics_mean(s->sum + start * n_classes, (gsize) (m * n_classes), members, mean);
        if (!lmn_class_metrics_add(em, mean, s->labels + start, m, error))
            return NULL;
    }
    return g_steal_pointer(&em);
}

/* "\"accuracy\": ..., \"top_k_accuracy\": ..." and, with @full, the confusion matrix, the
 * per-class figures and their macro averages. */
static void print_metrics_json(const LmnClassMetrics *m, gboolean full)
{
    char a[G_ASCII_DTOSTR_BUF_SIZE], b[G_ASCII_DTOSTR_BUF_SIZE], c[G_ASCII_DTOSTR_BUF_SIZE];
    printf("\"accuracy\": %s, \"top_k_accuracy\": %s",
           json_num(a, lmn_class_metrics_get_accuracy(m)),
           json_num(b, lmn_class_metrics_get_top_k_accuracy(m)));
    if (!full)
        return;
    gint64 k = lmn_class_metrics_get_n_classes(m);
    const gint64 *cm = lmn_class_metrics_get_confusion(m);
    printf(", \"confusion\": [");
    for (gint64 t = 0; t < k; t++) {
        printf("%s[", t ? ", " : "");
        for (gint64 p = 0; p < k; p++)
            printf("%s%" G_GINT64_FORMAT, p ? ", " : "", cm[t * k + p]);
        printf("]");
    }
    printf("], \"classes\": [");
    for (gint64 j = 0; j < k; j++) {
        double p, r, f;
        gint64 s;
        lmn_class_metrics_get_class(m, j, &p, &r, &f, &s);
        printf("%s{\"precision\": %s, \"recall\": %s, \"f1\": %s, \"support\": %" G_GINT64_FORMAT
               "}",
               j ? ", " : "", json_num(a, p), json_num(b, r), json_num(c, f), s);
    }
    double p, r, f;
    lmn_class_metrics_get_macro(m, &p, &r, &f);
    printf("], \"macro\": {\"precision\": %s, \"recall\": %s, \"f1\": %s}", json_num(a, p),
           json_num(b, r), json_num(c, f));
}

/* The text form: accuracies on one line and, with @full, the confusion matrix and a table of the
 * per-class figures. */
static void print_metrics_text(const LmnClassMetrics *m, const char *what, gboolean full)
{
    printf("%s: top-1 %.2f%%  top-%" G_GINT64_FORMAT " %.2f%%\n", what,
           100 * lmn_class_metrics_get_accuracy(m), lmn_class_metrics_get_top_k(m),
           100 * lmn_class_metrics_get_top_k_accuracy(m));
    if (!full)
        return;
    gint64 k = lmn_class_metrics_get_n_classes(m);
    const gint64 *cm = lmn_class_metrics_get_confusion(m);
    printf("confusion matrix (rows: true class, columns: predicted class):\n%8s", "");
    for (gint64 p = 0; p < k; p++)
        printf(" %7" G_GINT64_FORMAT, p);
    for (gint64 t = 0; t < k; t++) {
        printf("\n%8" G_GINT64_FORMAT, t);
        for (gint64 p = 0; p < k; p++)
            printf(" %7" G_GINT64_FORMAT, cm[t * k + p]);
    }
    printf("\n%8s %9s %9s %9s %9s\n", "class", "precision", "recall", "f1", "support");
    for (gint64 j = 0; j < k; j++) {
        double p, r, f;
        gint64 s;
        lmn_class_metrics_get_class(m, j, &p, &r, &f, &s);
        printf("%8" G_GINT64_FORMAT " %9.4f %9.4f %9.4f %9" G_GINT64_FORMAT "\n", j, p, r, f, s);
    }
    double p, r, f;
    lmn_class_metrics_get_macro(m, &p, &r, &f);
    printf("%8s %9.4f %9.4f %9.4f\n", "macro", p, r, f);
}

static void print_json_string(const char *key, const char *value)
{
    g_autofree char *v = g_strescape(value, NULL);
    printf("\"%s\": \"%s\"", key, v);
}

/* One checkpoint: the figures of old, then K, the views and the metrics of the probabilities. */
/* The IoU of a segmentation: JSON members after the others, or a line of text. */
static void print_iou(gboolean json, const LmnSegmentationIoU *iou)
{
    char a[G_ASCII_DTOSTR_BUF_SIZE], b[G_ASCII_DTOSTR_BUF_SIZE], c[G_ASCII_DTOSTR_BUF_SIZE];
    if (json)
        printf(", \"mean_iou\": %s, \"iou\": {\"background\": %s, \"foreground\": %s}",
               json_num(a, iou->mean), json_num(b, iou->background), json_num(c, iou->foreground));
    else
        printf("mean IoU %.4f (background %.4f, foreground %.4f) over %" G_GINT64_FORMAT
               " pixels\n",
               iou->mean, iou->background, iou->foreground, iou->pixels);
}

static void print_single(const EvalOptions *o, const Member *m)
{
    print_result(o->json, &m->r, m->ds, o->data);
    if (m->r.has_iou)
        print_iou(o->json, &m->r.iou);
    if (o->json) {
        if (m->metrics) {
            printf(", \"top_k\": %" G_GINT64_FORMAT ", ", o->top_k);
            print_json_string("tta", o->tta_name);
            printf(", \"metrics\": {");
            print_metrics_json(m->metrics, TRUE);
            printf("}");
        }
        printf("}\n");
    } else if (m->metrics) {
        g_autofree char *what = g_strdup_printf("accuracy (tta %s)", o->tta_name);
        print_metrics_text(m->metrics, what, TRUE);
    }
}

/* Several checkpoints: each member's figures and accuracies, then the ensemble's metrics. */
static void print_ensemble(const EvalOptions *o, const Member *members, guint n,
                           const LmnClassMetrics *em)
{
    if (o->json) {
        printf("{\"samples\": %" G_GINT64_FORMAT ", \"top_k\": %" G_GINT64_FORMAT ", ",
               lmn_dataset_get_length(members[0].ds), o->top_k);
        print_json_string("tta", o->tta_name);
        printf(", \"members\": [");
    }
    for (guint i = 0; i < n; i++) {
        const Member *m = &members[i];
        if (o->json) {
            printf("%s", i ? ", " : "");
            print_result(TRUE, &m->r, m->ds, o->data);
            printf(", ");
            print_json_string("checkpoint", m->ckpt);
            printf(", \"metrics\": {");
            print_metrics_json(m->metrics, FALSE);
            printf("}}");
        } else {
            printf("%s: ", m->ckpt);
            print_result(FALSE, &m->r, m->ds, o->data);
            g_autofree char *what = g_strdup_printf("  accuracy (tta %s)", o->tta_name);
            print_metrics_text(m->metrics, what, FALSE);
        }
    }
    if (o->json) {
        printf("], \"ensemble\": {\"members\": %u, ", n);
        print_metrics_json(em, TRUE);
        printf("}}\n");
    } else {
        g_autofree char *what = g_strdup_printf("ensemble of %u (tta %s)", n, o->tta_name);
        print_metrics_text(em, what, TRUE);
    }
}

static gboolean parse_tta(const char *name, EvalOptions *o)
{
    o->tta_name = name ? name : "none";
    if (g_str_equal(o->tta_name, "none"))
        o->tta = LMN_TTA_NONE;
    else if (g_str_equal(o->tta_name, "hflip"))
        o->tta = LMN_TTA_HFLIP;
    else if (g_str_equal(o->tta_name, "crops"))
        o->tta = LMN_TTA_CROPS;
    else
        return FALSE;
    return TRUE;
}

/* Evaluates every checkpoint of @ckpts and prints the report.  Returns: the exit status. */
/* The exit status of a failed evaluation.  One rank's failure among several is its alone, so it
 * ends every rank (the others would wait for it). */
static int eval_failed(const EvalOptions *o, const GError *error)
{
    if (error && error->domain == G_OPTION_ERROR)
        return (fprintf(stderr, "lamina eval: %s (see lamina eval --help)\n", error->message), 2);
    if (lmn_comm_get_size(o->comm) == 1)
        return lmn_cli_fail("eval", error);
    int rank = lmn_comm_get_rank(o->comm);
    g_autofree char *msg = g_strdup_printf(
        "lamina eval: rank %d of %d (host %s): %s", rank, lmn_comm_get_size(o->comm),
        lmn_comm_get_host_name(o->comm, rank), error ? error->message : "failed");
    lmn_comm_abort(o->comm, 1, msg);
    return 1;
}

static int run_eval(char **ckpts, guint n, EvalOptions *o, char **plugin_dirs, const char *backend,
                    const char *device)
{
    g_autoptr(LmnRegistry) registry = lmn_cli_open_registry(plugin_dirs);
    g_autoptr(GError) error = NULL;
    g_autoptr(LmnComm) comm = lmn_comm_open(registry, o->distributed, &error);
    if (!comm)
        return lmn_cli_fail("eval", error);
    o->comm = comm;
    Member *members = g_new0(Member, n);
    ProbSink sink = {.first = &members[0], .ensemble = n > 1};
    LmnBackend *b = NULL;
    gboolean ok = TRUE;
    for (guint i = 0; ok && i < n; i++) {
        members[i].ckpt = ckpts[i];
        ok = member_open(&members[i], registry, o->data, &error);
        if (ok && !b)
            b = lmn_backend_new_for_config(registry, backend ? backend : "auto", device, &error);
        ok = ok && b && evaluate_member(&members[i], registry, b, o, &sink, &error);
    }
    g_autoptr(LmnClassMetrics) em = NULL;
    if (ok && n > 1) {
        em = ensemble_metrics(&sink, lmn_dataset_get_length(members[0].ds), members[0].n_classes, n,
                              o->top_k, &error);
        ok = em != NULL;
    }
    int status = ok ? 0 : eval_failed(o, error);
    /* Several ranks: every one has the figures of the whole split; rank 0 prints them. */
    if (ok && lmn_comm_get_rank(o->comm) == 0) {
        if (n > 1)
            print_ensemble(o, members, n, em);
        else
            print_single(o, &members[0]);
    }
    for (guint i = 0; i < n; i++)
        member_clear(&members[i]);
    g_free(members);
    g_free(sink.sum);
    g_free(sink.labels);
    if (b)
        lmn_backend_unref(b);
    return status;
}

int lmn_cli_eval(int argc, char **argv)
{
    g_auto(GStrv) plugin_dirs = NULL;
    g_autofree char *data = NULL, *backend = NULL, *device = NULL, *tta = NULL, *dist = NULL;
    EvalOptions o = {.batch = 256, .top_k = G_MININT64, .pad = 4};
    GOptionEntry entries[] = {
        {"data", 'd', 0, G_OPTION_ARG_STRING, &data, "the split to evaluate on (required)",
         "FILE:/split"},
        {"json", 0, 0, G_OPTION_ARG_NONE, &o.json,
         "print {\"loss\": ..., \"losses\": {\"LAYER\": ...}, \"accuracy\": ..., \"metrics\": "
         "{...}} instead of text",
         NULL},
        {"top-k", 'k', 0, G_OPTION_ARG_INT64, &o.top_k,
         "also report top-K accuracy (default 5, or the class count when smaller)", "K"},
        {"tta", 0, 0, G_OPTION_ARG_STRING, &tta,
         "test-time augmentation of images: none (default), hflip (2 views) or crops (10 views)",
         "MODE"},
        {"ema", 0, 0, G_OPTION_ARG_NONE, &o.ema,
         "evaluate the moving average of the weights (/ema, written by runs with [train] "
         "ema_decay) instead of /model",
         NULL},
        {"tta-pad", 0, 0, G_OPTION_ARG_INT64, &o.pad,
         "--tta crops: pixels of zero padding the crops are taken from (default 4)", "P"},
        {"batch-size", 0, 0, G_OPTION_ARG_INT64, &o.batch, "samples per batch (default 256)", "N"},
        {"backend", 0, 0, G_OPTION_ARG_STRING, &backend, "backend (default: auto)", "NAME"},
        {"device", 0, 0, G_OPTION_ARG_STRING, &device, "device for GPU backends", "DEV"},
        {"plugin-path", 'P', 0, G_OPTION_ARG_FILENAME_ARRAY, &plugin_dirs,
         "also load plugins from DIR (repeatable)", "DIR"},
        {"distributed", 0, 0, G_OPTION_ARG_STRING, &dist,
         "several processes share the split: auto (the default: mpi when started by mpirun), "
         "mpi, or none",
         "NAME"},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("CHECKPOINT [CHECKPOINT...]");
    g_option_context_set_summary(
        ctx, "Evaluate a checkpoint's model (its /config and /model weights) on a dataset split; "
             "several checkpoints are evaluated as an ensemble (the mean of their class "
             "probabilities).");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        fprintf(stderr, "lamina eval: %s (see lamina eval --help)\n", error->message);
        return 2;
    }
    if (argc < 2 || !data || o.batch <= 0) {
        fprintf(stderr, "lamina eval: expected CHECKPOINT... and --data FILE:/split (see lamina "
                        "eval --help)\n");
        return 2;
    }
    o.top_k_given = o.top_k != G_MININT64;
    const char *bad = o.top_k_given && o.top_k < 1 ? "--top-k: expected a K of at least 1"
                      : !parse_tta(tta, &o)        ? "--tta: expected none, hflip or crops"
                      : o.pad < 0                  ? "--tta-pad: expected P of at least 0"
                                                   : NULL;
    if (bad) {
        fprintf(stderr, "lamina eval: %s (see lamina eval --help)\n", bad);
        return 2;
    }
    o.data = data;
    o.distributed = dist;
    return run_eval(argv + 1, (guint) (argc - 1), &o, plugin_dirs, backend, device);
}
