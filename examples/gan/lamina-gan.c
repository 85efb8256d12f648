/* lamina-gan: a dense GAN trained by a custom loop over Lamina's public C API, built out of tree
 * against an installed Lamina (pkg-config lamina).
 *
 * Two models share one backend: the generator (generator.ini, no loss layer, built with
 * LMN_MODEL_ALLOW_NO_LOSS) and the discriminator (discriminator.ini, binary cross-entropy on
 * logits, input gradient on).  Each discriminator step trains it on one batch of m real images
 * (target 1) and m generated ones (target 0) in a single forward and backward over 2m samples.
 * Every --k discriminator steps, one generator step: the last step's generated batch goes through
 * the updated discriminator with target 1 (the non-saturating loss, maximising log D(G(z))), and
 * the discriminator's input gradient is the generator's output gradient for
 * lmn_model_backward_from.  Both use Adam from their configs' [optimizer] groups.
 *
 * The latent noise is Philox (random.h): the z of discriminator step s is stream
 * LMN_STREAM(GAN_STREAM_LATENT, s) of --seed, the 1000 samples written at the end come from
 * LMN_STREAM(GAN_STREAM_SAMPLES, c) for their chunks c of --batch-size, so a run is a function
 * of its seed and data.
 */
#include <errno.h>
#include <glib/gstdio.h>
#include <lamina/lamina.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <string.h>

/* Random-stream purposes of this program, clear of Lamina's own (random.h). */
#define GAN_STREAM_LATENT 64
#define GAN_STREAM_SAMPLES 65
#define GAN_N_SAMPLES 1000
#define GAN_GRID 10

#define GAN_ERROR (gan_error_quark())
G_DEFINE_QUARK(lamina - gan - error - quark, gan_error)
enum { GAN_ERROR_ARGS, GAN_ERROR_DATA, GAN_ERROR_WRITE, GAN_ERROR_TRAIN };

typedef struct {
    char *data;
    gint64 epochs;
    gint64 seed;
    char *output;
    gint64 k;
    gint64 batch_size;
    char *backend;
    char *device;
    gint64 threads;
    char *generator;
    char *discriminator;
    gint64 max_steps;
} Options;

typedef struct {
    Options o;
    LmnRegistry *registry;
    LmnBackend *backend;
    LmnConfig *gcfg, *dcfg;
    LmnModel *gen, *disc;
    LmnOptimizer *gopt, *dopt;
    LmnDataset *data;
    LmnBatchReader *reader;
    gint64 z_dim;             /* the generator's per-sample input size */
    gint64 x_numel;           /* the image's element count */
    float *real;              /* host: one batch of real images */
    float *z;                 /* host: one batch of latent noise */
    float *targets;           /* host: 2 * batch discriminator targets */
    LmnTensor *d_acc, *g_acc; /* per-epoch sums of the two losses, on the backend */
    gint64 d_steps, g_steps;
} Gan;

/* The INI files beside the program: where `meson install` put them, else the source folder
 * (running from the build tree). */
static char *find_ini(const char *given, const char *name)
{
    if (given)
        return g_strdup(given);
    const char *dirs[] = {LAMINA_GAN_DATADIR, LAMINA_GAN_SOURCEDIR};
    for (gsize i = 0; i < G_N_ELEMENTS(dirs); i++) {
        char *path = g_build_filename(dirs[i], name, NULL);
        if (g_file_test(path, G_FILE_TEST_IS_REGULAR))
            return path;
        g_free(path);
    }
    return g_build_filename(LAMINA_GAN_DATADIR, name, NULL);
}

static gboolean parse_args(Options *o, int *argc, char ***argv, GError **error)
{
    o->epochs = -1;
    o->seed = -1;
    o->k = 1;
    o->batch_size = -1;
    o->threads = 0;
    GOptionEntry entries[] = {
        {"data", 0, 0, G_OPTION_ARG_STRING, &o->data,
         "training images, FILE:/split (default: discriminator.ini's [data] train)", "SPEC"},
        {"epochs", 0, 0, G_OPTION_ARG_INT64, &o->epochs, "passes over the data (default 5)", "N"},
        {"seed", 0, 0, G_OPTION_ARG_INT64, &o->seed, "initialisation, shuffle and noise seed", "S"},
        {"output", 0, 0, G_OPTION_ARG_FILENAME, &o->output, "output folder (required)", "DIR"},
        {"k", 0, 0, G_OPTION_ARG_INT64, &o->k, "discriminator steps per generator step (1)", "K"},
        {"batch-size", 0, 0, G_OPTION_ARG_INT64, &o->batch_size, "real images per step (64)", "B"},
        {"backend", 0, 0, G_OPTION_ARG_STRING, &o->backend, "cpu (default) or vulkan", "NAME"},
        {"device", 0, 0, G_OPTION_ARG_STRING, &o->device, "the backend's device", "NAME"},
        {"threads", 0, 0, G_OPTION_ARG_INT64, &o->threads, "CPU threads (0 = one per core)", "N"},
        {"generator", 0, 0, G_OPTION_ARG_FILENAME, &o->generator, "generator config", "INI"},
        {"discriminator", 0, 0, G_OPTION_ARG_FILENAME, &o->discriminator, "discriminator config",
         "INI"},
        {"max-steps", 0, 0, G_OPTION_ARG_INT64, &o->max_steps,
         "stop after this many generator steps (0 = no limit)", "N"},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("- train a dense GAN with Lamina");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_set_description(
        ctx, "Writes DIR/samples.h5 (1000 images, split /samples), DIR/samples.png (10x10 grid),\n"
             "DIR/generator.h5 and DIR/discriminator.h5 (checkpoints with optimizer state).\n");
    if (!g_option_context_parse(ctx, argc, argv, error))
        return FALSE;
    if (*argc > 1) {
        g_set_error(error, GAN_ERROR, GAN_ERROR_ARGS, "unexpected argument '%s'", (*argv)[1]);
        return FALSE;
    }
    if (!o->output) {
        g_set_error(error, GAN_ERROR, GAN_ERROR_ARGS, "--output DIR is required");
        return FALSE;
    }
    /* -1 (the initial value) means "from discriminator.ini's [train]" */
    const char *bad = o->k < 1                                   ? "--k must be >= 1"
                      : o->threads < 0                           ? "--threads must be >= 0"
                      : o->max_steps < 0                         ? "--max-steps must be >= 0"
                      : o->epochs == 0 || o->epochs < -1         ? "--epochs must be >= 1"
                      : o->batch_size == 0 || o->batch_size < -1 ? "--batch-size must be >= 1"
                      : o->seed < -1                             ? "--seed must be >= 0"
                                                                 : NULL;
    if (bad) {
        g_set_error(error, GAN_ERROR, GAN_ERROR_ARGS, "%s", bad);
        return FALSE;
    }
    o->generator = find_ini(o->generator, "generator.ini");
    o->discriminator = find_ini(o->discriminator, "discriminator.ini");
    return TRUE;
}

static LmnConfig *load_config(LmnRegistry *registry, const char *path, GError **error)
{
    LmnConfig *cfg = lmn_config_new_from_file(path, error);
    if (cfg && !lmn_config_validate(cfg, registry, error)) {
        lmn_config_free(cfg);
        return NULL;
    }
    return cfg;
}

static gboolean open_backend(Gan *g, GError **error)
{
    const char *name = g->o.backend ? g->o.backend : "cpu";
    g_autoptr(LmnParams) params = NULL;
    if (g->o.threads > 0) {
        if (!g_str_equal(name, "cpu")) {
            g_set_error(error, GAN_ERROR, GAN_ERROR_ARGS, "--threads needs --backend cpu");
            return FALSE;
        }
        const LmnFeature *f = lmn_registry_lookup(g->registry, LMN_FEATURE_BACKEND, "cpu", error);
        if (!f)
            return FALSE;
        g_autofree char *n = g_strdup_printf("%" G_GINT64_FORMAT, g->o.threads);
        const char *keys[] = {"threads", NULL}, *values[] = {n, NULL};
        params = lmn_registry_validate_params(f, keys, values, "--threads", error);
        if (!params)
            return FALSE;
    }
    g->backend = lmn_backend_new(g->registry, name, params, g->o.device, error);
    return g->backend != NULL;
}

/* Both models, their optimizers and the loss accumulators. */
static gboolean build_models(Gan *g, GError **error)
{
    g->gcfg = load_config(g->registry, g->o.generator, error);
    if (!g->gcfg)
        return FALSE;
    g->dcfg = load_config(g->registry, g->o.discriminator, error);
    if (!g->dcfg)
        return FALSE;
    const LmnTrainConfig *tc = lmn_config_get_train(g->dcfg);
    if (g->o.epochs < 0)
        g->o.epochs = tc->epochs;
    if (g->o.batch_size < 0)
        g->o.batch_size = tc->batch_size;
    if (g->o.seed < 0)
        g->o.seed = (gint64) tc->seed;
    if (!g->o.data)
        g->o.data = g_strdup(tc->train_data);

    g->gen =
        lmn_model_new_full(g->gcfg, g->registry, g->backend, NULL, LMN_MODEL_ALLOW_NO_LOSS, error);
    if (!g->gen)
        return FALSE;
    if (lmn_model_has_loss(g->gen)) {
        g_set_error(error, GAN_ERROR, GAN_ERROR_ARGS,
                    "%s: the generator must not end in a loss (it learns through the "
                    "discriminator)",
                    g->o.generator);
        return FALSE;
    }
    /* One logit per sample, and a probability target of the same shape. */
    LmnTensorInfo target = {.shape = lmn_shape_make(1, (gint64) 1), .dtype = LMN_DTYPE_F32};
    g->disc = lmn_model_new(g->dcfg, g->registry, g->backend, &target, error);
    if (!g->disc)
        return FALSE;
    const LmnShape *gin = lmn_model_get_input_shape(g->gen);
    const LmnShape *din = lmn_model_get_input_shape(g->disc);
    g->z_dim = lmn_shape_numel(gin);
    g->x_numel = lmn_shape_numel(din);
    gint64 b = g->o.batch_size;
    /* different seeds for the two models' initialisations, both functions of --seed */
    if (!lmn_model_init_params(g->gen, (guint64) g->o.seed, error) ||
        !lmn_model_init_params(g->disc, (guint64) g->o.seed + 1, error) ||
        !lmn_model_set_input_grad(g->disc, TRUE, error) || !lmn_model_prepare(g->gen, b, error) ||
        !lmn_model_prepare(g->disc, 2 * b, error))
        return FALSE;
    LmnTensor *gout;
    lmn_model_set_batch(g->gen, b, NULL, NULL);
    gout = lmn_model_get_output(g->gen);
    if (lmn_tensor_numel(gout) != b * g->x_numel) {
        g_autofree char *s = lmn_shape_to_string(din);
        g_set_error(error, GAN_ERROR, GAN_ERROR_ARGS,
                    "%s: the generator's output has %" G_GINT64_FORMAT
                    " elements per sample, the discriminator's input %s has %" G_GINT64_FORMAT,
                    g->o.generator, lmn_tensor_numel(gout) / b, s, g->x_numel);
        return FALSE;
    }
    g->gopt = lmn_optimizer_new_for_model(g->registry, NULL, NULL, g->gen, g->gcfg, error);
    g->dopt = g->gopt
                  ? lmn_optimizer_new_for_model(g->registry, NULL, NULL, g->disc, g->dcfg, error)
                  : NULL;
    if (!g->dopt)
        return FALSE;
    LmnShape one = lmn_shape_make(0);
    g->d_acc = lmn_tensor_new(g->backend, LMN_DTYPE_F32, &one, error);
    g->g_acc = g->d_acc ? lmn_tensor_new(g->backend, LMN_DTYPE_F32, &one, error) : NULL;
    if (!g->g_acc)
        return FALSE;
    g->real = g_new(float, b * g->x_numel);
    g->z = g_new(float, b * g->z_dim);
    g->targets = g_new(float, 2 * b);
    return TRUE;
}

static gboolean open_data(Gan *g, GError **error)
{
    g->data = lmn_dataset_open(g->o.data, error);
    if (!g->data)
        return FALSE;
    if (!lmn_dataset_check_model(g->data, lmn_model_get_input_shape(g->disc), -1, error))
        return FALSE;
    LmnBatchReaderOptions ro = {
        .batch_size = g->o.batch_size,
        .seed = (guint64) g->o.seed,
        .shuffle = TRUE,
        .prefetch = TRUE,
    };
    g->reader = lmn_batch_reader_new(g->data, &ro, error);
    return g->reader != NULL;
}

/* The generator's sigmoid output lies in [0, 1]: data in other units cannot be matched. */
static gboolean check_units(Gan *g, gint64 m, GError **error)
{
    float lo = INFINITY, hi = -INFINITY;
    for (gint64 i = 0; i < m * g->x_numel; i++) {
        lo = MIN(lo, g->real[i]);
        hi = MAX(hi, g->real[i]);
    }
    if (lo < 0 || hi > 1) {
        g_set_error(error, GAN_ERROR, GAN_ERROR_DATA,
                    "%s: the first batch has values in [%g, %g], the generator (%s) produces "
                    "[0, 1]; give images in [0, 1] (uint8 with scale = 1/255, no mean/std)",
                    g->o.data, lo, hi, g->o.generator);
        return FALSE;
    }
    return TRUE;
}

/* Generator forward on m latent vectors of stream @stream. */
static gboolean generate(Gan *g, gint64 m, guint64 stream, gboolean training, GError **error)
{
    LmnRandom r;
    lmn_random_init(&r, (guint64) g->o.seed, stream);
    for (gint64 i = 0; i < m * g->z_dim; i++)
        g->z[i] = (float) lmn_random_normal(&r);
    LmnTensor *z;
    lmn_model_set_batch(g->gen, m, &z, NULL);
    if (!lmn_tensor_write(z, g->z, lmn_tensor_nbytes(z), error))
        return FALSE;
    guint64 step = (guint64) lmn_optimizer_get_step(g->gopt);
    lmn_model_forward(g->gen, training, step, (guint64) g->o.seed);
    return TRUE;
}

/* One discriminator step on m real images (in g->real) and m new generated ones. */
static gboolean disc_step(Gan *g, gint64 m, GError **error)
{
    if (!generate(g, m, LMN_STREAM(GAN_STREAM_LATENT, g->d_steps), TRUE, error))
        return FALSE;
    LmnTensor *x, *y;
    lmn_model_set_batch(g->disc, 2 * m, &x, &y);
    /* real images first, then the generated ones over the second half */
    float *xd = lmn_backend_host_pointer(x);
    if (xd)
        memcpy(xd, g->real, (gsize) (m * g->x_numel) * sizeof(float));
    else {
        g_autofree float *both = g_new0(float, 2 * m * g->x_numel);
        memcpy(both, g->real, (gsize) (m * g->x_numel) * sizeof(float));
        if (!lmn_tensor_write(x, both, lmn_tensor_nbytes(x), error))
            return FALSE;
    }
    lmn_op_copy_block(x, m * g->x_numel, 0, lmn_model_get_output(g->gen), 0, 0, 1, m * g->x_numel,
                      0.0f);
    for (gint64 i = 0; i < 2 * m; i++)
        g->targets[i] = i < m ? 1.0f : 0.0f;
    if (!lmn_tensor_write(y, g->targets, lmn_tensor_nbytes(y), error))
        return FALSE;
    guint64 step = (guint64) lmn_optimizer_get_step(g->dopt);
    lmn_model_forward(g->disc, TRUE, step, (guint64) g->o.seed);
    lmn_model_backward(g->disc, step, (guint64) g->o.seed);
    lmn_op_axpby(1.0f, lmn_model_get_loss(g->disc), 1.0f, g->d_acc);
    lmn_optimizer_step(g->dopt, lmn_params_get_float(lmn_optimizer_get_hyper(g->dopt), "lr"));
    g->d_steps++;
    return TRUE;
}

/* One generator step on the last discriminator step's m generated images (the generator has
 * not changed since, so its activations are still those of that batch), against the updated
 * discriminator with target 1.  Only the discriminator's input gradient is needed here, so its
 * backward skips its own parameter gradients (lmn_model_backward_input). */
static gboolean gen_step(Gan *g, gint64 m, GError **error)
{
    LmnTensor *x, *y;
    lmn_model_set_batch(g->disc, m, &x, &y);
    lmn_op_copy(x, lmn_model_get_output(g->gen));
    lmn_op_fill(y, 1.0f);
    guint64 step = (guint64) lmn_optimizer_get_step(g->gopt);
    lmn_model_forward(g->disc, TRUE, step, (guint64) g->o.seed);
    lmn_model_backward_input(g->disc, step, (guint64) g->o.seed);
    lmn_op_axpby(1.0f, lmn_model_get_loss(g->disc), 1.0f, g->g_acc);
    lmn_model_zero_grads(g->gen);
    if (!lmn_model_backward_from(g->gen, lmn_model_get_input_grad(g->disc), step,
                                 (guint64) g->o.seed, error))
        return FALSE;
    lmn_optimizer_step(g->gopt, lmn_params_get_float(lmn_optimizer_get_hyper(g->gopt), "lr"));
    g->g_steps++;
    return TRUE;
}

static gboolean read_scalar(LmnTensor *t, float *out, GError **error)
{
    return lmn_tensor_read(t, out, sizeof(float), error);
}

/* One pass over the data; FALSE with @error, *@done when --max-steps was reached. */
static gboolean train_epoch(Gan *g, gint64 epoch, gboolean *done, GError **error)
{
    gint64 t0 = g_get_monotonic_time();
    gint64 d0 = g->d_steps, g0 = g->g_steps;
    lmn_op_fill(g->d_acc, 0.0f);
    lmn_op_fill(g->g_acc, 0.0f);
    lmn_batch_reader_seek(g->reader, epoch, 0);
    gint64 m;
    while ((m = lmn_batch_reader_next(g->reader, g->real, NULL, NULL, error)) > 0) {
        if (g->d_steps == 0 && !check_units(g, m, error))
            return FALSE;
        if (!disc_step(g, m, error))
            return FALSE;
        if ((g->d_steps - d0) % g->o.k == 0 && !gen_step(g, m, error))
            return FALSE;
        if (g->o.max_steps > 0 && g->g_steps >= g->o.max_steps) {
            *done = TRUE;
            break;
        }
    }
    if (m < 0)
        return FALSE;
    float dsum = 0, gsum = 0;
    if (!read_scalar(g->d_acc, &dsum, error) || !read_scalar(g->g_acc, &gsum, error))
        return FALSE;
    double dl = dsum / (double) MAX(g->d_steps - d0, 1);
    double gl = gsum / (double) MAX(g->g_steps - g0, 1);
    double secs = (double) (g_get_monotonic_time() - t0) / 1e6;
    printf("epoch %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT "  d_loss %.4f  g_loss %.4f  "
           "%" G_GINT64_FORMAT " d-steps %" G_GINT64_FORMAT " g-steps  %.2f s\n",
           epoch + 1, g->o.epochs, dl, gl, g->d_steps - d0, g->g_steps - g0, secs);
    fflush(stdout);
    if (!isfinite(dl) || !isfinite(gl)) {
        g_set_error(error, GAN_ERROR, GAN_ERROR_TRAIN,
                    "epoch %" G_GINT64_FORMAT ": a loss is not finite (d %g, g %g)", epoch + 1, dl,
                    gl);
        return FALSE;
    }
    return TRUE;
}

/* The 10x10 grid of the first 100 samples, grey, with a 2-pixel black border between tiles. */
static gboolean write_png(const char *path, const float *x, gint64 h, gint64 w, GError **error)
{
    const gint64 pad = 2;
    gint64 W = GAN_GRID * (w + pad) + pad, H = GAN_GRID * (h + pad) + pad;
    g_autofree guint8 *pix = g_new0(guint8, W * H);
    for (gint64 s = 0; s < GAN_GRID * GAN_GRID; s++) {
        gint64 r0 = pad + (s / GAN_GRID) * (h + pad), c0 = pad + (s % GAN_GRID) * (w + pad);
        for (gint64 i = 0; i < h; i++)
            for (gint64 j = 0; j < w; j++) {
                float v = x[(s * h + i) * w + j];
                pix[(r0 + i) * W + c0 + j] = (guint8) lrintf(CLAMP(v, 0.0f, 1.0f) * 255.0f);
            }
    }
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32) W;
    img.height = (png_uint_32) H;
    img.format = PNG_FORMAT_GRAY;
    if (!png_image_write_to_file(&img, path, 0, pix, (png_int_32) W, NULL)) {
        g_set_error(error, GAN_ERROR, GAN_ERROR_WRITE, "%s: cannot write the PNG: %s", path,
                    img.message);
        return FALSE;
    }
    return TRUE;
}

/* 1000 samples from a fixed noise stream, in evaluation mode: samples.h5 and samples.png. */
static gboolean write_samples(Gan *g, GError **error)
{
    const LmnShape *shape = lmn_model_get_input_shape(g->disc);
    g_autofree float *all = g_new(float, GAN_N_SAMPLES * g->x_numel);
    for (gint64 done = 0, chunk = 0; done < GAN_N_SAMPLES; chunk++) {
        gint64 m = MIN(g->o.batch_size, GAN_N_SAMPLES - done);
        if (!generate(g, m, LMN_STREAM(GAN_STREAM_SAMPLES, chunk), FALSE, error))
            return FALSE;
        LmnTensor *out = lmn_model_get_output(g->gen);
        if (!lmn_tensor_read(out, all + done * g->x_numel, lmn_tensor_nbytes(out), error))
            return FALSE;
        done += m;
    }
    /* labels are all 0: the samples have no class; a classifier's predictions are the point */
    g_autofree gint32 *labels = g_new0(gint32, GAN_N_SAMPLES);
    g_autofree char *h5 = g_build_filename(g->o.output, "samples.h5", NULL);
    g_autofree char *spec = g_strdup_printf("%s:/samples", h5);
    if (!lmn_dataset_write(spec, all, GAN_N_SAMPLES, shape, labels, TRUE, error))
        return FALSE;
    g_autofree char *png = g_build_filename(g->o.output, "samples.png", NULL);
    gint64 h = shape->ndim >= 2 ? shape->dims[shape->ndim - 2] : 1;
    gint64 w = shape->ndim >= 1 ? shape->dims[shape->ndim - 1] : g->x_numel;
    if (h * w != g->x_numel) {
        g_set_error(error, GAN_ERROR, GAN_ERROR_WRITE,
                    "%s: samples of %" G_GINT64_FORMAT " elements are not one grey image", png,
                    g->x_numel);
        return FALSE;
    }
    return write_png(png, all, h, w, error);
}

static gboolean write_checkpoints(Gan *g, gint64 epochs_done, GError **error)
{
    struct {
        const char *file;
        LmnConfig *cfg;
        LmnModel *model;
        LmnOptimizer *opt;
    } parts[] = {{"generator.h5", g->gcfg, g->gen, g->gopt},
                 {"discriminator.h5", g->dcfg, g->disc, g->dopt}};
    for (gsize i = 0; i < G_N_ELEMENTS(parts); i++) {
        LmnTrainState st = {
            .epoch = epochs_done,
            .step = lmn_optimizer_get_step(parts[i].opt),
            .seed = (guint64) g->o.seed,
            .best_metric = NAN,
            .best_epoch = -1,
        };
        g_autofree char *path = g_build_filename(g->o.output, parts[i].file, NULL);
        g_autofree char *text = lmn_config_to_data(parts[i].cfg);
        if (!lmn_checkpoint_save(path, text, parts[i].model, parts[i].opt, NULL, &st, error))
            return FALSE;
    }
    return TRUE;
}

static void gan_clear(Gan *g)
{
    g_free(g->real);
    g_free(g->z);
    g_free(g->targets);
    if (g->d_acc)
        lmn_tensor_unref(g->d_acc);
    if (g->g_acc)
        lmn_tensor_unref(g->g_acc);
    if (g->reader)
        lmn_batch_reader_free(g->reader);
    if (g->data)
        lmn_dataset_free(g->data);
    if (g->gopt)
        lmn_optimizer_free(g->gopt);
    if (g->dopt)
        lmn_optimizer_free(g->dopt);
    if (g->gen)
        lmn_model_free(g->gen);
    if (g->disc)
        lmn_model_free(g->disc);
    if (g->gcfg)
        lmn_config_free(g->gcfg);
    if (g->dcfg)
        lmn_config_free(g->dcfg);
    if (g->backend)
        lmn_backend_unref(g->backend);
    if (g->registry)
        lmn_registry_free(g->registry);
    g_free(g->o.data);
    g_free(g->o.output);
    g_free(g->o.backend);
    g_free(g->o.device);
    g_free(g->o.generator);
    g_free(g->o.discriminator);
}

static gboolean run(Gan *g, int *argc, char ***argv, GError **error)
{
    if (!parse_args(&g->o, argc, argv, error))
        return FALSE;
    if (g_mkdir_with_parents(g->o.output, 0755) != 0) {
        g_set_error(error, GAN_ERROR, GAN_ERROR_WRITE, "%s: cannot create the folder: %s",
                    g->o.output, g_strerror(errno));
        return FALSE;
    }
    g->registry = lmn_registry_new();
    if (!lmn_registry_scan(g->registry, error) || !open_backend(g, error) ||
        !build_models(g, error) || !open_data(g, error))
        return FALSE;
    printf("lamina-gan: %s, %" G_GINT64_FORMAT " images, batch %" G_GINT64_FORMAT
           ", k %" G_GINT64_FORMAT ", seed %" G_GINT64_FORMAT ", G %" G_GINT64_FORMAT
           " parameters, D %" G_GINT64_FORMAT "\n",
           g->o.data, lmn_dataset_get_length(g->data), g->o.batch_size, g->o.k, g->o.seed,
           lmn_model_get_n_parameters(g->gen), lmn_model_get_n_parameters(g->disc));
    gint64 epoch = 0;
    gboolean done = FALSE;
    for (; epoch < g->o.epochs && !done; epoch++)
        if (!train_epoch(g, epoch, &done, error))
            return FALSE;
    if (!lmn_backend_synchronize(g->backend, error) || !write_samples(g, error) ||
        !write_checkpoints(g, epoch, error))
        return FALSE;
    printf("wrote %s/{samples.h5,samples.png,generator.h5,discriminator.h5}\n", g->o.output);
    return TRUE;
}

int main(int argc, char **argv)
{
    Gan g = {0};
    g_autoptr(GError) error = NULL;
    gboolean ok = run(&g, &argc, &argv, &error);
    if (!ok)
        g_printerr("lamina-gan: %s\n", error ? error->message : "failed");
    gan_clear(&g);
    return ok ? 0 : 1;
}
