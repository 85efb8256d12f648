/* The training loop's gradient processing, early stopping and NaN guard, against host-side
 * references.  Each run takes one full-batch SGD step with lr = 1 and no momentum, so the update
 * is the processed gradient itself: a plain run gives the raw gradient g = w0 - w1, and the
 * processed runs must equal the reference transformation of g computed here in double
 * (torch.nn.utils.clip_grad_norm_'s formula, clamping, l2 w and l1 sign(w) per layer and role,
 * Philox noise scaled by sigma_0 / (1 + t)^gamma). */
#include "e2e-util.h"

#include <glib/gstdio.h>
#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

static LmnRegistry *registry;

typedef struct {
    char *dir;
    char *data;
} Fixture;

typedef struct {
    gint64 offset, numel;
    guint layer; /* 0 = fc1, 2 = fc2 */
    LmnParamRole role;
} ParamInfo;

typedef struct {
    float *w0, *w1; /* the flat parameters before and after */
    gsize n;
    GArray *params; /* ParamInfo */
    double loss;    /* metrics.csv train_loss of the (only) epoch row */
} Run;

static void run_clear(Run *r)
{
    g_free(r->w0);
    g_free(r->w1);
    if (r->params)
        g_array_unref(r->params);
    memset(r, 0, sizeof *r);
}

static const char *config_template = "[model]\n"
                                     "input = 2\n"
                                     "[layer fc1]\n"
                                     "type = dense\n"
                                     "units = 32\n"
                                     "%s"
                                     "[layer act1]\n"
                                     "type = tanh\n"
                                     "[layer fc2]\n"
                                     "type = dense\n"
                                     "units = 4\n"
                                     "[layer loss]\n"
                                     "type = softmax_cross_entropy\n"
                                     "[optimizer]\n"
                                     "type = sgd\n"
                                     "lr = 1\n"
                                     "[train]\n"
                                     "epochs = 10\n"
                                     "batch_size = 256\n"
                                     "shuffle = false\n"
                                     "seed = 4\n"
                                     "backend = cpu\n"
                                     "%s"
                                     "[data]\n"
                                     "train = %s:/train\n";

static void fixture_setup(Fixture *fx, gconstpointer unused)
{
    fx->dir = g_dir_make_tmp("lamina-reg-XXXXXX", NULL);
    fx->data = g_build_filename(fx->dir, "blobs.h5", NULL);
    e2e_write_blobs(fx->data, "/train", 256, 1, FALSE);
    e2e_write_blobs(fx->data, "/val", 512, 2, TRUE);
}

static void fixture_teardown(Fixture *fx, gconstpointer unused)
{
    e2e_remove_tree(fx->dir);
    g_free(fx->dir);
    g_free(fx->data);
}

static float *read_flat(LmnModel *model, gsize *n)
{
    LmnTensor *p = lmn_model_get_params(model);
    *n = (gsize) lmn_tensor_numel(p);
    float *v = g_new(float, *n);
    g_assert_true(lmn_tensor_read(p, v, *n * sizeof(float), NULL));
    return v;
}

/* Trains (one step unless @train_extra says otherwise) into DIR/@name. */
static void train(Fixture *fx, const char *name, const char *train_extra, const char *fc1_extra,
                  const char *resume, Run *r)
{
    /* A key given twice is an error, so max_steps = 1 goes in only when @train_extra has none. */
    g_autofree char *steps =
        g_strconcat(train_extra && strstr(train_extra, "max_steps") ? "" : "max_steps = 1\n",
                    train_extra ? train_extra : "", NULL);
    g_autofree char *text =
        g_strdup_printf(config_template, fc1_extra ? fc1_extra : "", steps, fx->data);
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_data(text, -1, name, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    g_assert_no_error(error);
    g_autofree char *out = g_build_filename(fx->dir, name, NULL);
    LmnTrainerOptions opts = {.output_dir = out, .resume_checkpoint = resume, .quiet = TRUE};
    LmnTrainer *t = lmn_trainer_new(cfg, registry, &opts, &error);
    g_assert_no_error(error);
    LmnModel *model = lmn_trainer_get_model(t);
    r->w0 = read_flat(model, &r->n);
    r->params = g_array_new(FALSE, FALSE, sizeof(ParamInfo));
    LmnTensor *flat = lmn_model_get_params(model);
    for (guint i = 0; i < lmn_model_get_n_layers(model); i++) {
        LmnLayer *l = lmn_model_get_layer(model, i);
        for (guint p = 0; p < lmn_layer_get_n_params(l); p++) {
            LmnTensor *w = lmn_layer_get_param(l, p);
            ParamInfo pi = {(gint64) ((w->offset - flat->offset) / sizeof(float)),
                            lmn_tensor_numel(w), i, lmn_layer_get_param_role(l, p)};
            g_array_append_val(r->params, pi);
        }
    }
    g_assert_true(lmn_trainer_run(t, &error));
    g_assert_no_error(error);
    gsize n = 0;
    r->w1 = read_flat(model, &n);
    lmn_trainer_free(t);
    lmn_config_free(cfg);
    g_autofree char *csv = g_build_filename(out, "metrics.csv", NULL);
    g_autoptr(GPtrArray) rows = e2e_csv_rows(csv);
    g_assert_cmpuint(rows->len, >=, 1);
    r->loss = g_ascii_strtod(((char **) g_ptr_array_index(rows, rows->len - 1))[3], NULL);
}

/* Calls @fn for every real (non-padding) element: parameter info, flat index. */
#define FOR_EACH_ELEMENT(r, pi, k)                                                                 \
    for (guint _p = 0; _p < (r)->params->len; _p++)                                                \
        for (ParamInfo *pi = &g_array_index((r)->params, ParamInfo, _p); pi; pi = NULL)            \
            for (gint64 k = pi->offset; k < pi->offset + pi->numel; k++)

static void assert_close(double expected, double actual, double tol, const char *what, gint64 k)
{
    if (fabs(expected - actual) > tol)
        g_error("%s: element %" G_GINT64_FORMAT ": expected %.9g, got %.9g", what, k, expected,
                actual);
}

static void test_clip_norm(Fixture *fx, gconstpointer unused)
{
    Run base = {0}, clipped = {0}, loose = {0};
    train(fx, "base", NULL, NULL, NULL, &base);
    double sq = 0;
    FOR_EACH_ELEMENT(&base, pi, k)
    {
        double g = (double) base.w0[k] - base.w1[k];
        sq += g * g;
    }
    double norm = sqrt(sq);
    g_assert_cmpfloat(norm, >, 0.01);
    g_autofree char *extra = g_strdup_printf("clip_norm = %.9g\n", norm / 2);
    train(fx, "clipped", extra, NULL, NULL, &clipped);
    g_assert_cmpmem(base.w0, base.n * 4, clipped.w0, clipped.n * 4);
    double coef = (norm / 2) / (norm + 1e-6);
    FOR_EACH_ELEMENT(&base, pi, k)
    {
        double g = (double) base.w0[k] - base.w1[k];
        assert_close(base.w0[k] - coef * g, clipped.w1[k], 1e-6, "clip_norm", k);
    }
    /* Below the threshold nothing changes, bit for bit. */
    g_autofree char *extra2 = g_strdup_printf("clip_norm = %.9g\n", norm * 2);
    train(fx, "loose", extra2, NULL, NULL, &loose);
    g_assert_cmpmem(base.w1, base.n * 4, loose.w1, loose.n * 4);
    run_clear(&base);
    run_clear(&clipped);
    run_clear(&loose);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

static void test_clip_value(Fixture *fx, gconstpointer unused)
{
    Run base = {0}, clipped = {0};
    train(fx, "base", NULL, NULL, NULL, &base);
    g_autoptr(GArray) mags = g_array_new(FALSE, FALSE, sizeof(double));
    FOR_EACH_ELEMENT(&base, pi, k)
    {
        double g = fabs((double) base.w0[k] - base.w1[k]);
        g_array_append_val(mags, g);
    }
    g_array_sort(mags, cmp_double);
    double v = g_array_index(mags, double, mags->len / 2);
    g_autofree char *extra = g_strdup_printf("clip_value = %.9g\n", v);
    train(fx, "clipped", extra, NULL, NULL, &clipped);
    guint n_clipped = 0;
    FOR_EACH_ELEMENT(&base, pi, k)
    {
        double g = (double) base.w0[k] - base.w1[k];
        double c = CLAMP(g, -(double) (float) v, (double) (float) v);
        n_clipped += c != g;
        assert_close(base.w0[k] - c, clipped.w1[k], 1e-6, "clip_value", k);
    }
    g_assert_cmpuint(n_clipped, >, mags->len / 3);
    run_clear(&base);
    run_clear(&clipped);
}

/* L2 with a per-layer override: fc1 0.5, fc2 the [train] default 0.1; biases exempt. */
static void test_l2(Fixture *fx, gconstpointer unused)
{
    Run base = {0}, pen = {0};
    train(fx, "base", NULL, NULL, NULL, &base);
    train(fx, "l2", "l2 = 0.1\n", "l2 = 0.5\n", NULL, &pen);
    double penalty = 0;
    FOR_EACH_ELEMENT(&base, pi, k)
    {
        double g = (double) base.w0[k] - base.w1[k];
        double l2 = pi->role == LMN_PARAM_ROLE_BIAS ? 0 : pi->layer == 0 ? 0.5 : 0.1;
        penalty += 0.5 * l2 * (double) base.w0[k] * base.w0[k];
        assert_close(base.w0[k] - (g + l2 * base.w0[k]), pen.w1[k], 1e-6, "l2", k);
    }
    /* The reported loss is the data loss plus l2/2 ||w||^2. */
    g_assert_cmpfloat(penalty, >, 0.01);
    g_assert_cmpfloat_with_epsilon(pen.loss - base.loss, penalty, 1e-4 * (1 + pen.loss));
    run_clear(&base);
    run_clear(&pen);
}

/* L1 on every parameter, biases included. */
static void test_l1_bias(Fixture *fx, gconstpointer unused)
{
    Run base = {0}, pen = {0};
    train(fx, "base", NULL, NULL, NULL, &base);
    train(fx, "l1", "l1 = 0.05\npenalize_bias = true\n", NULL, NULL, &pen);
    double penalty = 0;
    guint biases = 0;
    FOR_EACH_ELEMENT(&base, pi, k)
    {
        double g = (double) base.w0[k] - base.w1[k];
        double w = base.w0[k];
        double sign = w > 0 ? 1 : w < 0 ? -1 : 0;
        penalty += 0.05 * fabs(w);
        biases += pi->role == LMN_PARAM_ROLE_BIAS && w != 0;
        assert_close(w - (g + 0.05 * sign), pen.w1[k], 1e-6, "l1", k);
    }
    g_assert_cmpuint(biases, >, 0);
    g_assert_cmpfloat_with_epsilon(pen.loss - base.loss, penalty, 1e-4 * (1 + pen.loss));
    run_clear(&base);
    run_clear(&pen);
}

/* Noise at step t = 3: resume a 3-step checkpoint with and without noise and take the
 * difference, which must be -lr * sigma_3 * z with z the Philox normals of stream (NOISE, 3). */
static void test_noise(Fixture *fx, gconstpointer unused)
{
    Run warm = {0}, noisy = {0}, quiet = {0};
    train(fx, "warm", "max_steps = 3\n", NULL, NULL, &warm);
    g_autofree char *ckpt = g_build_filename(fx->dir, "warm", "final.h5", NULL);
    train(fx, "noisy", "max_steps = 4\ngrad_noise = 0.1\ngrad_noise_gamma = 0.55\n", NULL, ckpt,
          &noisy);
    train(fx, "quiet", "max_steps = 4\n", NULL, ckpt, &quiet);
    g_assert_cmpmem(noisy.w0, noisy.n * 4, quiet.w0, quiet.n * 4);

    g_autoptr(GError) error = NULL;
    g_autoptr(LmnBackend) cpu = lmn_backend_new(registry, "cpu", NULL, NULL, &error);
    g_assert_no_error(error);
    LmnShape s = lmn_shape_make(1, (gint64) noisy.n);
    g_autoptr(LmnTensor) z = lmn_tensor_new(cpu, LMN_DTYPE_F32, &s, &error);
    g_assert_no_error(error);
    lmn_op_random_normal(z, 0.0f, 1.0f, 4, LMN_STREAM(LMN_STREAM_NOISE, 3));
    g_autofree float *zh = g_new(float, noisy.n);
    g_assert_true(lmn_tensor_read(z, zh, noisy.n * 4, &error));
    double sigma = 0.1 / pow(4.0, 0.55);
    double sum = 0, sum_sq = 0;
    guint count = 0;
    FOR_EACH_ELEMENT(&noisy, pi, k)
    {
        double d = (double) noisy.w1[k] - quiet.w1[k];
        /* z was drawn with std 1 here and sigma inside the loop: allow float rounding. */
        assert_close(-sigma * zh[k], d, 2e-6, "noise", k);
        sum += d / sigma;
        sum_sq += (d / sigma) * (d / sigma);
        count++;
    }
    /* And it looks like N(0, 1) after dividing by sigma_3 (228 samples). */
    double mean = sum / count, sd = sqrt(sum_sq / count - mean * mean);
    g_assert_cmpfloat(fabs(mean), <, 0.3);
    g_assert_cmpfloat(fabs(sd - 1), <, 0.2);
    run_clear(&warm);
    run_clear(&noisy);
    run_clear(&quiet);
}

/* Epoch at which early stopping must end a run, from the val column of metrics.csv. */
static guint expected_stop(GPtrArray *rows, int col, gboolean higher, gint64 patience,
                           guint *best_out)
{
    double best = NAN;
    guint best_epoch = 0, wait = 0;
    for (guint i = 0; i < rows->len; i++) {
        double v = g_ascii_strtod(((char **) g_ptr_array_index(rows, i))[col], NULL);
        if (isnan(best) || (higher ? v > best : v < best)) {
            best = v;
            best_epoch = i + 1;
            wait = 0;
        } else if (++wait >= patience) {
            *best_out = best_epoch;
            return i + 1;
        }
    }
    *best_out = best_epoch;
    return rows->len;
}

static void check_early_stopping(Fixture *fx, const char *name, const char *extra, gboolean restore,
                                 gboolean accuracy)
{
    g_autofree char *text = g_strdup_printf(
        "[model]\ninput = 2\n[layer fc1]\ntype = dense\nunits = 64\n[layer act]\ntype = relu\n"
        "[layer fc2]\ntype = dense\nunits = 4\n[layer loss]\ntype = softmax_cross_entropy\n"
        "[optimizer]\ntype = sgd\nlr = 0.2\nmomentum = 0.9\n[train]\nepochs = 60\n"
        "batch_size = 16\nseed = 2\nbackend = cpu\nearly_stopping_patience = 3\n%s"
        "[data]\ntrain = %s:/train\nvalidation = %s:/val\n",
        extra, fx->data, fx->data);
    g_autofree char *cfg = g_build_filename(fx->dir, "es.ini", NULL);
    g_assert_true(g_file_set_contents(cfg, text, -1, NULL));
    g_autofree char *out = g_build_filename(fx->dir, name, NULL);
    g_autofree char *stdout_text = NULL;
    g_assert_cmpint(e2e_run_lamina(&stdout_text, NULL, "train", cfg, "-o", out, NULL), ==, 0);
    g_autofree char *csv = g_build_filename(out, "metrics.csv", NULL);
    g_autoptr(GPtrArray) rows = e2e_csv_rows(csv);
    guint best = 0;
    int col = accuracy ? 6 : 5;
    guint stop = expected_stop(rows, col, accuracy, 3, &best);
    /* The validation labels are random: the model cannot improve on them for long. */
    g_assert_cmpuint(rows->len, <, 60);
    g_assert_cmpuint(rows->len, ==, stop);
    g_assert_nonnull(strstr(stdout_text, "early stopping"));
    g_autofree char *best_h5 = g_build_filename(out, "best.h5", NULL);
    g_autofree char *final_h5 = g_build_filename(out, "final.h5", NULL);
    g_assert_cmpint(e2e_read_attr_int(best_h5, "/train", "best_epoch"), ==, best);
    g_assert_cmpint(e2e_read_attr_int(best_h5, "/train", "epoch"), ==, best);
    g_assert_cmpint(e2e_read_attr_int(final_h5, "/train", "epoch"), ==, stop);
    g_assert_cmpint(e2e_read_attr_int(final_h5, "/train", "stopped_early"), ==, 1);
    g_assert_cmpint(e2e_read_attr_int(final_h5, "/train", "wait"), ==, 3);
    /* final.h5's weights: the best epoch's with restore_best, else the last epoch's. */
    g_autofree char *spec = g_strdup_printf("%s:/val", fx->data);
    g_autofree char *json = NULL;
    g_assert_cmpint(e2e_run_lamina(&json, NULL, "eval", final_h5, "--data", spec, "--json", NULL),
                    ==, 0);
    const char *key = accuracy ? "\"accuracy\": " : "\"loss\": ";
    double got = g_ascii_strtod(strstr(json, key) + strlen(key), NULL);
    guint want_row = restore ? best : stop;
    double want = g_ascii_strtod(((char **) g_ptr_array_index(rows, want_row - 1))[col], NULL);
    g_assert_cmpfloat_with_epsilon(got, want, 2e-5 * (1 + fabs(want)));
    if (restore) {
        e2e_assert_same_floats(best_h5, final_h5, "/model");
    } else {
        gsize n = 0;
        g_autofree float *a = e2e_read_floats(best_h5, "/model/fc2/weight", &n);
        g_autofree float *b = e2e_read_floats(final_h5, "/model/fc2/weight", NULL);
        g_assert_true(memcmp(a, b, n * sizeof(float)) != 0);
    }
}

static void test_early_stopping(Fixture *fx, gconstpointer unused)
{
    check_early_stopping(fx, "restore", "", TRUE, FALSE);
}

static void test_early_stopping_no_restore(Fixture *fx, gconstpointer unused)
{
    check_early_stopping(fx, "keep", "restore_best = false\n", FALSE, FALSE);
}

static void test_early_stopping_accuracy(Fixture *fx, gconstpointer unused)
{
    check_early_stopping(fx, "acc", "monitor = val_accuracy\n", TRUE, TRUE);
}

static gint cmp_names(gconstpointer a, gconstpointer b)
{
    return g_strcmp0(*(char *const *) a, *(char *const *) b);
}

static GPtrArray *list_dir(const char *dir)
{
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    GDir *d = g_dir_open(dir, 0, NULL);
    g_assert_nonnull(d);
    const char *n;
    while ((n = g_dir_read_name(d)))
        g_ptr_array_add(names, g_strdup(n));
    g_dir_close(d);
    g_ptr_array_sort(names, cmp_names);
    return names;
}

/* A diverging run stops at the first non-finite loss and leaves the output directory of an
 * earlier run exactly as it was: same files, same bytes, no temporary files. */
static void test_divergence(Fixture *fx, gconstpointer unused)
{
    /* batch_size = 8 in place of the template's: a key given twice is an error. */
    g_auto(GStrv) parts = g_strsplit(config_template, "batch_size = 256\n", 2);
    g_autofree char *tmpl = g_strjoinv("batch_size = 8\n", parts);
    g_autofree char *text = g_strdup_printf(tmpl, "", "max_steps = 0\n", fx->data);
    g_autofree char *cfg = g_build_filename(fx->dir, "d.ini", NULL);
    g_assert_true(g_file_set_contents(cfg, text, -1, NULL));
    g_autofree char *out = g_build_filename(fx->dir, "run", NULL);
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", cfg, "-o", out, "--epochs", "1", "--lr",
                                   "0.1", "-q", NULL),
                    ==, 0);
    g_autoptr(GPtrArray) before = list_dir(out);
    g_autofree char *final_h5 = g_build_filename(out, "final.h5", NULL);
    g_autofree char *csv = g_build_filename(out, "metrics.csv", NULL);
    g_autofree char *ckpt_bytes = NULL, *csv_bytes = NULL;
    gsize ckpt_len = 0, csv_len = 0;
    g_assert_true(g_file_get_contents(final_h5, &ckpt_bytes, &ckpt_len, NULL));
    g_assert_true(g_file_get_contents(csv, &csv_bytes, &csv_len, NULL));

    g_autofree char *err = NULL;
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "train", cfg, "-o", out, "--epochs", "3", "--lr",
                                   "1e38", "--set", "train.checkpoint_every=1", NULL),
                    ==, 1);
    g_assert_nonnull(strstr(err, "epoch 1, step "));
    g_assert_nonnull(strstr(err, "the training loss is"));
    g_assert_nonnull(strstr(err, "are kept"));
    g_autoptr(GPtrArray) after = list_dir(out);
    g_assert_cmpuint(after->len, ==, before->len);
    for (guint i = 0; i < after->len; i++)
        g_assert_cmpstr(g_ptr_array_index(after, i), ==, g_ptr_array_index(before, i));
    g_autofree char *ckpt2 = NULL, *csv2 = NULL;
    gsize ckpt2_len = 0, csv2_len = 0;
    g_assert_true(g_file_get_contents(final_h5, &ckpt2, &ckpt2_len, NULL));
    g_assert_true(g_file_get_contents(csv, &csv2, &csv2_len, NULL));
    g_assert_cmpmem(ckpt_bytes, ckpt_len, ckpt2, ckpt2_len);
    g_assert_cmpmem(csv_bytes, csv_len, csv2, csv2_len);
}

/* Settings that cannot work are refused before training, naming the key. */
static void test_bad_settings(Fixture *fx, gconstpointer unused)
{
    struct {
        const char *train_extra, *fc1_extra, *group, *key;
    } cases[] = {
        {"clip_norm = -1\n", NULL, "[train]", "clip_norm"},
        {"grad_noise = -0.5\n", NULL, "[train]", "grad_noise"},
        {"early_stopping_patience = 2\n", NULL, "[train]", "validation"},
        {"monitor = val_acc\n", NULL, "[train]", "val_accuracy"},
        {NULL, "l2 = -0.1\n", "[layer fc1]", "'l2'"},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *text =
            g_strdup_printf(config_template, cases[i].fc1_extra ? cases[i].fc1_extra : "",
                            cases[i].train_extra ? cases[i].train_extra : "", fx->data);
        LmnConfig *cfg = lmn_config_new_from_data(text, -1, "bad.ini", NULL);
        g_autoptr(GError) error = NULL;
        g_assert_false(lmn_config_validate(cfg, registry, &error));
        g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
        /* "bad.ini:LINE [group]": the line of the key that is wrong. */
        if (!g_str_has_prefix(error->message, "bad.ini:") ||
            !strstr(error->message, cases[i].group) || !strstr(error->message, cases[i].key))
            g_error("expected 'bad.ini:LINE', '%s' and '%s' in: %s", cases[i].group, cases[i].key,
                    error->message);
        lmn_config_free(cfg);
    }
    /* val_accuracy needs class labels: float targets are refused when the trainer starts. */
    g_autofree char *reg = g_build_filename(fx->dir, "reg.h5", NULL);
    hid_t f = H5Fcreate(reg, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    float x[8] = {0, 1, 2, 3, 4, 5, 6, 7}, y[16] = {0};
    hsize_t xd[2] = {4, 2}, yd[2] = {4, 4};
    hid_t xs = H5Screate_simple(2, xd, NULL), ys = H5Screate_simple(2, yd, NULL);
    hid_t g = H5Gcreate2(f, "/train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t xds = H5Dcreate2(g, "x", H5T_IEEE_F32LE, xs, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t yds = H5Dcreate2(g, "y", H5T_IEEE_F32LE, ys, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(xds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dwrite(yds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, y);
    H5Dclose(xds);
    H5Dclose(yds);
    H5Sclose(xs);
    H5Sclose(ys);
    H5Gclose(g);
    H5Fclose(f);
    g_autofree char *text = g_strdup_printf(
        "[model]\ninput = 2\n[layer fc]\ntype = dense\nunits = 4\n[layer loss]\ntype = mse\n"
        "[optimizer]\ntype = sgd\nlr = 0.1\n[train]\nbackend = cpu\nmonitor = val_accuracy\n"
        "early_stopping_patience = 1\n[data]\ntrain = %s:/train\nvalidation = %s:/train\n",
        reg, reg);
    LmnConfig *cfg = lmn_config_new_from_data(text, -1, "acc.ini", NULL);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    g_autofree char *out = g_build_filename(fx->dir, "acc", NULL);
    LmnTrainerOptions opts = {.output_dir = out, .quiet = TRUE};
    g_assert_null(lmn_trainer_new(cfg, registry, &opts, &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
    g_assert_nonnull(strstr(error->message, "acc.ini [train] monitor"));
    lmn_config_free(cfg);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    registry = lmn_registry_new();
    lmn_registry_scan(registry, NULL);
    g_test_add("/e2e/regularizers/clip-norm", Fixture, NULL, fixture_setup, test_clip_norm,
               fixture_teardown);
    g_test_add("/e2e/regularizers/clip-value", Fixture, NULL, fixture_setup, test_clip_value,
               fixture_teardown);
    g_test_add("/e2e/regularizers/l2-per-layer", Fixture, NULL, fixture_setup, test_l2,
               fixture_teardown);
    g_test_add("/e2e/regularizers/l1-with-bias", Fixture, NULL, fixture_setup, test_l1_bias,
               fixture_teardown);
    g_test_add("/e2e/regularizers/gradient-noise", Fixture, NULL, fixture_setup, test_noise,
               fixture_teardown);
    g_test_add("/e2e/regularizers/bad-settings", Fixture, NULL, fixture_setup, test_bad_settings,
               fixture_teardown);
    g_test_add("/e2e/early-stopping/restore-best", Fixture, NULL, fixture_setup,
               test_early_stopping, fixture_teardown);
    g_test_add("/e2e/early-stopping/keep-last", Fixture, NULL, fixture_setup,
               test_early_stopping_no_restore, fixture_teardown);
    g_test_add("/e2e/early-stopping/val-accuracy", Fixture, NULL, fixture_setup,
               test_early_stopping_accuracy, fixture_teardown);
    g_test_add("/e2e/train/divergence-keeps-checkpoints", Fixture, NULL, fixture_setup,
               test_divergence, fixture_teardown);
    int rc = g_test_run();
    lmn_registry_free(registry);
    return rc;
}
