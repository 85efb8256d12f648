/* Lamina — `lamina predict`: a checkpoint's predictions for dataset rows, .npy arrays and
 * images (predict.h, image.h). */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* The inputs gathered from the command line: @n rows of the model's input, in model units. */
typedef struct {
    GPtrArray *names; /* char *, one a row */
    GArray *x;        /* float */
    gint64 numel;     /* one row's values */
} Inputs;

/* What predict knows of the model: its input, its first loss's activation and the classes. */
typedef struct {
    LmnModel *model;
    LmnCheckpointData data;
    gboolean have_data; /* /data, or the training split it fell back to */
    gboolean noticed;   /* the 1/255 notice was printed */
    LmnPredictActivation act;
    LmnImageResize resize;
    guint head; /* the loss whose input is the prediction */
} Predictor;

/* Index of element @i's channel among @n_values per-channel values (1: one for all): the
 * training split's channels are its dimension 1, so n_values consecutive runs of a sample. */
static gint64 channel_of(gint64 i, gint64 numel, gsize n_values)
{
    return n_values <= 1 ? 0 : (i % numel) / (numel / (gint64) n_values);
}

/* The preprocessing of uint8 pixels: x = (pixel * scale - mean[c]) / std[c]. */
static gboolean preprocess(Predictor *p, const char *what, float *x, gint64 n, gint64 numel,
                           GError **error)
{
    const LmnCheckpointData *d = &p->data;
    if (!p->have_data && !p->noticed) {
        fprintf(stderr,
                "lamina predict: the checkpoint records no preprocessing and its "
                "training split is not here; %s: pixels scaled by 1/255\n",
                what);
        p->noticed = TRUE;
    }
    if ((d->mean && numel % (gint64) d->n_mean) || (d->std && numel % (gint64) d->n_std)) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                    "%s: the training split's mean or std has %zu values, which do not divide "
                    "the model's %" G_GINT64_FORMAT " inputs into channels",
                    what, d->mean ? d->n_mean : d->n_std, numel);
        return FALSE;
    }
    double scale = p->have_data ? d->scale : 1.0 / 255.0;
    for (gint64 i = 0; i < n * numel; i++) {
        double m = d->mean ? d->mean[channel_of(i, numel, d->n_mean)] : 0.0;
        double s = d->std ? d->std[channel_of(i, numel, d->n_std)] : 1.0;
        x[i] = (float) (((double) x[i] * scale - m) / s);
    }
    return TRUE;
}

/* Makes room for @n more rows in @in.  Returns: the first new value, or NULL with @error when
 * the inputs would outgrow what one array holds. */
static float *grow(Inputs *in, gint64 n, const char *what, GError **error)
{
    guint64 values = 0;
    guint64 old = in->x->len;
    if (!g_uint64_checked_mul(&values, (guint64) n, (guint64) in->numel) ||
        values > G_MAXUINT - old) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                    "%s: %" G_GINT64_FORMAT " samples are more than predict holds at once; "
                    "split the input",
                    what, n);
        return NULL;
    }
    g_array_set_size(in->x, (guint) (old + values));
    return &g_array_index(in->x, float, old);
}

/* Every row of the split @spec (y optional), named FILE:/split[i]. */
static gboolean add_split(Predictor *p, Inputs *in, const char *spec, GError **error)
{
    LmnDataset *ds = lmn_dataset_open_inputs(spec, -1, error);
    gboolean ok = ds && lmn_dataset_check_model(ds, lmn_model_get_input_shape(p->model), -1, error);
    gint64 n = ok ? lmn_dataset_get_length(ds) : 0;
    float *dst = ok ? grow(in, n, spec, error) : NULL;
    if (dst) {
        g_autofree guint32 *idx = g_new(guint32, n);
        for (gint64 i = 0; i < n; i++)
            idx[i] = (guint32) i;
        ok = lmn_dataset_read(ds, idx, (gsize) n, dst, NULL, error);
        for (gint64 i = 0; ok && i < n; i++)
            g_ptr_array_add(in->names, g_strdup_printf("%s[%" G_GINT64_FORMAT "]", spec, i));
    }
    lmn_dataset_free(ds);
    return dst != NULL && ok;
}

/* The samples of a .npy file, named FILE[i] (FILE alone for a single sample). */
static gboolean add_npy(Predictor *p, Inputs *in, const char *path, GError **error)
{
    gint64 n = 0;
    gboolean u8 = FALSE;
    g_autofree float *x =
        lmn_npy_read_samples(path, lmn_model_get_input_shape(p->model), &n, &u8, error);
    /* Float arrays are taken as model inputs; uint8 ones are pixels, preprocessed as images. */
    if (x == NULL || (u8 && !preprocess(p, path, x, n, in->numel, error)))
        return FALSE;
    float *dst = grow(in, n, path, error);
    if (dst == NULL)
        return FALSE;
    memcpy(dst, x, (gsize) (n * in->numel) * sizeof(float));
    for (gint64 i = 0; i < n; i++)
        g_ptr_array_add(in->names, n == 1 ? g_strdup(path)
                                          : g_strdup_printf("%s[%" G_GINT64_FORMAT "]", path, i));
    return TRUE;
}

static gboolean add_image(Predictor *p, Inputs *in, const char *path, GError **error)
{
    const LmnShape *shape = lmn_model_get_input_shape(p->model);
    if (shape->ndim != 3) {
        g_autofree char *s = lmn_shape_to_string(shape);
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                    "%s: the model's input is %s; images feed models of input [C, H, W]", path, s);
        return FALSE;
    }
    g_autofree guint8 *pixels =
        lmn_image_read(path, shape->dims[0], shape->dims[1], shape->dims[2], p->resize, error);
    float *x = pixels ? grow(in, 1, path, error) : NULL;
    if (x == NULL)
        return FALSE;
    for (gint64 i = 0; i < in->numel; i++)
        x[i] = pixels[i];
    if (!preprocess(p, path, x, 1, in->numel, error))
        return FALSE;
    g_ptr_array_add(in->names, g_strdup(path));
    return TRUE;
}

/* FILE:/split when FILE exists, a .npy by its name, else an image. */
static gboolean add_input(Predictor *p, Inputs *in, const char *arg, GError **error)
{
    const char *sep = g_strrstr(arg, ":/");
    g_autofree char *file = sep ? g_strndup(arg, (gsize) (sep - arg)) : NULL;
    if (file && g_file_test(file, G_FILE_TEST_IS_REGULAR))
        return add_split(p, in, arg, error);
    if (!g_file_test(arg, G_FILE_TEST_EXISTS)) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_OPEN,
                    "%s: no such file (an input is FILE:/split, a .npy file or a PNG/JPEG image)",
                    arg);
        return FALSE;
    }
    g_autofree char *lower = g_ascii_strdown(arg, -1);
    if (g_str_has_suffix(lower, ".npy"))
        return add_npy(p, in, arg, error);
    return add_image(p, in, arg, error);
}

/* The preprocessing and class names: /data, else the training split of /config if present. */
static gboolean load_data_info(Predictor *p, const char *ckpt, const LmnConfig *cfg, GError **error)
{
    if (!lmn_checkpoint_read_data(ckpt, &p->data, &p->have_data, error))
        return FALSE;
    const char *train = lmn_config_get_train(cfg)->train_data;
    if (p->have_data || train == NULL)
        return TRUE;
    g_autofree char *file = NULL, *split = NULL;
    if (!lmn_split_spec(train, &file, &split, NULL) || !g_file_test(file, G_FILE_TEST_EXISTS))
        return TRUE;
    /* A tiny budget makes x stream: only its attributes are wanted, not its pixels. */
    LmnDataset *ds = lmn_dataset_open_inputs(train, 1e-6, error);
    if (ds == NULL)
        return FALSE;
    lmn_checkpoint_data_from_dataset(&p->data, ds);
    p->have_data = TRUE;
    lmn_dataset_free(ds);
    return TRUE;
}

/* The prediction tensor of the current batch: the head loss's input, else the output. */
static LmnTensor *prediction_tensor(LmnModel *model, guint head)
{
    return lmn_model_has_loss(model) ? lmn_model_get_loss_prediction(model, head)
                                     : lmn_model_get_output(model);
}

/* Runs the model over @in in batches of @batch; *@k_out is a row's prediction values. */
static float *run_model(LmnModel *model, guint head, const Inputs *in, gint64 batch, gint64 *k_out,
                        GError **error)
{
    gint64 n = (gint64) in->names->len;
    batch = MIN(batch, n);
    if (!lmn_model_prepare(model, batch, error))
        return NULL;
    float *out = NULL;
    for (gint64 first = 0; first < n; first += batch) {
        gint64 b = MIN(batch, n - first);
        LmnTensor *x = NULL, *y = NULL;
        lmn_model_set_batch(model, b, &x, &y);
        const float *src = &g_array_index(in->x, float, first * in->numel);
        if (!lmn_tensor_write(x, src, (gsize) (b * in->numel) * sizeof(float), error))
            break;
        lmn_model_forward_inference(model);
        LmnTensor *pred = prediction_tensor(model, head);
        gint64 k = lmn_tensor_numel(pred) / b;
        if (out == NULL) {
            *k_out = k;
            out = g_new(float, n *k); /* n * k fits: the model held batch * k of them */
        }
        if (!lmn_tensor_read(pred, out + first * k, (gsize) (b * k) * sizeof(float), error)) {
            g_clear_pointer(&out, g_free);
            break;
        }
    }
    return out;
}

/* Row @row's classes by decreasing probability (ties: the lower class first), @k of them. */
static gint64 *top_classes(const float *row, gint64 n_classes, gint64 k)
{
    gint64 *order = g_new(gint64, k);
    g_autofree gboolean *used = g_new0(gboolean, n_classes);
    for (gint64 t = 0; t < k; t++) {
        gint64 best = -1;
        for (gint64 j = 0; j < n_classes; j++)
            if (!used[j] && (best < 0 || row[j] > row[best]))
                best = j;
        used[best] = TRUE;
        order[t] = best;
    }
    return order;
}

static char *class_name(const Predictor *p, gint64 j, gint64 n_classes)
{
    const char *const *names = (const char *const *) p->data.classes;
    if (names && (gint64) g_strv_length((char **) names) == n_classes)
        return g_strdup(names[j]);
    return g_strdup_printf("class %" G_GINT64_FORMAT, j);
}

/* One JSON string literal: quotes, backslashes and control characters escaped, UTF-8 kept. */
static void print_json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *c = (const unsigned char *) s; *c; c++) {
        if (*c == '"' || *c == '\\')
            printf("\\%c", *c);
        else if (*c < 0x20)
            printf("\\u%04x", *c);
        else
            putchar(*c);
    }
    putchar('"');
}

static void print_top(const Predictor *p, const Inputs *in, const float *probs, gint64 k_cls,
                      gint64 top, gboolean json)
{
    char b[G_ASCII_DTOSTR_BUF_SIZE];
    if (json)
        printf("[");
    for (guint i = 0; i < in->names->len; i++) {
        const float *row = probs + (gint64) i * k_cls;
        g_autofree gint64 *order = top_classes(row, k_cls, top);
        if (json) {
            printf("%s{\"input\": ", i ? ", " : "");
            print_json_string(g_ptr_array_index(in->names, i));
            printf(", \"top\": [");
        } else {
            printf("%s:", (const char *) g_ptr_array_index(in->names, i));
        }
        for (gint64 t = 0; t < top; t++) {
            g_autofree char *name = class_name(p, order[t], k_cls);
            if (json) {
                printf("%s{\"class\": %" G_GINT64_FORMAT ", \"name\": ", t ? ", " : "", order[t]);
                print_json_string(name);
                printf(", \"probability\": %s}",
                       g_ascii_formatd(b, sizeof b, "%.9g", row[order[t]]));
            } else {
                printf("%s %s %.1f%%", t ? "," : "", name, 100.0 * row[order[t]]);
            }
        }
        printf(json ? "]}" : "\n");
    }
    if (json)
        printf("]\n");
}

/* A regression's raw outputs, one line (or JSON object) per input. */
static void print_raw(const Inputs *in, const float *out, gint64 k, gboolean json)
{
    char b[G_ASCII_DTOSTR_BUF_SIZE];
    if (json)
        printf("[");
    for (guint i = 0; i < in->names->len; i++) {
        if (json) {
            printf("%s{\"input\": ", i ? ", " : "");
            print_json_string(g_ptr_array_index(in->names, i));
            printf(", \"outputs\": [");
        } else {
            printf("%s:", (const char *) g_ptr_array_index(in->names, i));
        }
        for (gint64 j = 0; j < k; j++)
            printf(json ? "%s%s" : "%s %s", j && json ? ", " : "",
                   g_ascii_formatd(b, sizeof b, "%.9g", out[(gint64) i * k + j]));
        printf(json ? "]}" : "\n");
    }
    if (json)
        printf("]\n");
}

static gboolean gather_inputs(Predictor *p, Inputs *in, char **args, GError **error)
{
    for (guint i = 0; args[i] != NULL; i++)
        if (!add_input(p, in, args[i], error))
            return FALSE;
    return TRUE;
}

/* Options of one run, as parsed. */
typedef struct {
    char *output;
    gint64 top, batch;
    gboolean json;
    char *head;
} PredictOptions;

/* Writes or prints @probs.  Returns: the exit status. */
static int report(const Predictor *p, const Inputs *in, float *probs, gint64 k,
                  const PredictOptions *o)
{
    g_autoptr(GError) error = NULL;
    if (o->output) {
        g_autofree const char **names = (const char **) g_new0(char *, in->names->len + 1);
        for (guint i = 0; i < in->names->len; i++)
            names[i] = g_ptr_array_index(in->names, i);
        if (!lmn_predictions_write(o->output, names, in->names->len, k, probs, p->act,
                                   (const char *const *) p->data.classes, &error))
            return lmn_cli_fail("predict", error);
        printf("wrote %s (%u inputs)\n", o->output, in->names->len);
    } else if (p->act == LMN_PREDICT_NONE) {
        print_raw(in, probs, k, o->json);
    } else if (o->top > k) {
        fprintf(stderr,
                "lamina predict: --top %" G_GINT64_FORMAT
                " is more than the model's %" G_GINT64_FORMAT
                " classes (see lamina predict --help)\n",
                o->top, k);
        return 2;
    } else {
        print_top(p, in, probs, k, o->top, o->json);
    }
    return fflush(stdout) == 0 ? 0 : lmn_cli_fail("predict", NULL);
}

/* The loss named @head (NULL: the first) and its activation.  Returns: 0, or 2 after a usage
 * message when @head names no loss layer. */
static int choose_head(Predictor *p, const char *head)
{
    guint n = lmn_model_get_n_losses(p->model);
    g_autoptr(GString) names = g_string_new(NULL);
    for (p->head = 0; head && p->head < n; p->head++) {
        const char *name = lmn_layer_get_name(lmn_model_get_loss_layer(p->model, p->head));
        if (g_str_equal(name, head))
            break;
        g_string_append_printf(names, "%s%s", names->len ? ", " : "", name);
    }
    if (head && p->head == n) {
        fprintf(stderr,
                "lamina predict: --head %s is not a loss layer of the model (its losses: "
                "%s; see lamina predict --help)\n",
                head, names->len ? names->str : "none");
        return 2;
    }
    p->act = n > 0 ? lmn_predict_activation_for_loss(
                         lmn_layer_get_type_name(lmn_model_get_loss_layer(p->model, p->head)))
                   : LMN_PREDICT_NONE;
    /* A per-pixel softmax_cross_entropy (logits [C, d1..dk]) has a softmax per pixel, not one
     * over the sample's values: its raw logits are written instead of wrong probabilities. */
    if (p->act == LMN_PREDICT_SOFTMAX &&
        lmn_model_get_loss_prediction_info(p->model, p->head)->shape.ndim > 1) {
        fprintf(stderr,
                "lamina predict: loss '%s' classifies every pixel; writing its raw "
                "logits (activation none; the classes are axis 1 of [N, C, ...])\n",
                lmn_layer_get_name(lmn_model_get_loss_layer(p->model, p->head)));
        p->act = LMN_PREDICT_NONE;
    }
    return 0;
}

/* Builds the model, gathers the inputs, runs and reports.  Returns: the exit status. */
static int predict(const char *ckpt, char **args, LmnRegistry *registry, LmnBackend *b,
                   LmnConfig *cfg, Predictor *p, const PredictOptions *o)
{
    g_autoptr(GError) error = NULL;
    p->model = lmn_cli_inference_model(cfg, registry, b, &error);
    if (p->model == NULL || !lmn_checkpoint_load_weights(ckpt, p->model, &error) ||
        !load_data_info(p, ckpt, cfg, &error))
        return lmn_cli_fail("predict", error);
    int usage = choose_head(p, o->head);
    if (usage != 0)
        return usage;
    Inputs in = {g_ptr_array_new_with_free_func(g_free), g_array_new(FALSE, FALSE, sizeof(float)),
                 lmn_shape_numel(lmn_model_get_input_shape(p->model))};
    int status = 0;
    gint64 k = 0;
    g_autofree float *out = NULL;
    if (!gather_inputs(p, &in, args, &error) ||
        !(out = run_model(p->model, p->head, &in, o->batch, &k, &error)))
        status = lmn_cli_fail("predict", error);
    if (status == 0) {
        lmn_predict_apply(p->act, out, (gint64) in.names->len, k, out);
        status = report(p, &in, out, k, o);
    }
    g_ptr_array_unref(in.names);
    g_array_unref(in.x);
    return status;
}

static int usage(const char *why)
{
    fprintf(stderr, "lamina predict: %s (see lamina predict --help)\n", why);
    return 2;
}

int lmn_cli_predict(int argc, char **argv)
{
    g_auto(GStrv) plugin_dirs = NULL;
    g_autofree char *backend = NULL, *device = NULL, *resize = NULL;
    PredictOptions o = {NULL, 3, 256, FALSE, NULL};
    GOptionEntry entries[] = {
        {"output", 'o', 0, G_OPTION_ARG_FILENAME, &o.output,
         "write /probabilities, /predictions and /inputs to this HDF5 file instead of printing",
         "FILE.h5"},
        {"top", 'k', 0, G_OPTION_ARG_INT64, &o.top, "print the K most likely classes (default 3)",
         "K"},
        {"json", 0, 0, G_OPTION_ARG_NONE, &o.json,
         "print a JSON array of {\"input\", \"top\": [{\"class\", \"name\", \"probability\"}]}",
         NULL},
        {"batch", 0, 0, G_OPTION_ARG_INT64, &o.batch, "samples per forward pass (default 256)",
         "N"},
        {"head", 0, 0, G_OPTION_ARG_STRING, &o.head,
         "predict with the input of this loss layer (default: the first loss)", "LAYER"},
        {"backend", 0, 0, G_OPTION_ARG_STRING, &backend, "backend (default: auto)", "NAME"},
        {"device", 0, 0, G_OPTION_ARG_STRING, &device, "device for GPU backends", "DEV"},
        {"resize", 0, 0, G_OPTION_ARG_STRING, &resize,
         "resize images of another size: nearest (PIL's Image.NEAREST)", "nearest"},
        {"plugin-path", 'P', 0, G_OPTION_ARG_FILENAME_ARRAY, &plugin_dirs,
         "also load plugins from DIR (repeatable)", "DIR"},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("CHECKPOINT INPUT...");
    g_option_context_set_summary(
        ctx, "Predict with a checkpoint's model.  An INPUT is a dataset split FILE:/split (labels "
             "optional), a .npy array [N, sample...] or one sample, or a PNG or JPEG image, "
             "converted to the model's [C, H, W] and preprocessed as the training split was.");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error))
        return usage(error->message);
    if (argc < 3)
        return usage("expected CHECKPOINT and at least one INPUT");
    if (o.top < 1 || o.batch < 1)
        return usage(o.top < 1 ? "--top must be at least 1" : "--batch must be at least 1");
    if (resize && !g_str_equal(resize, "nearest"))
        return usage("--resize takes nearest");
    g_autoptr(LmnRegistry) registry = lmn_cli_open_registry(plugin_dirs);
    LmnConfig *cfg = lmn_cli_checkpoint_config(argv[1], registry, &error);
    if (cfg == NULL)
        return lmn_cli_fail("predict", error);
    LmnBackend *b =
        lmn_backend_new_for_config(registry, backend ? backend : "auto", device, &error);
    Predictor p = {.data = {.scale = 1.0},
                   .resize = resize ? LMN_IMAGE_RESIZE_NEAREST : LMN_IMAGE_RESIZE_NONE};
    int status =
        b ? predict(argv[1], argv + 2, registry, b, cfg, &p, &o) : lmn_cli_fail("predict", error);
    lmn_model_free(p.model);
    lmn_checkpoint_data_clear(&p.data);
    if (b)
        lmn_backend_unref(b);
    lmn_config_free(cfg);
    g_free(o.output);
    g_free(o.head);
    return status;
}
