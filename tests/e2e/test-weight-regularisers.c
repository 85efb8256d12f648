/* The training loop's regularisers on layers and weights:
 *  - activity_l1 / activity_l2: the loss term against its closed form from the layer outputs,
 *    every parameter and input gradient against central finite differences of the model's
 *    loss, and none of it in an evaluation forward;
 *  - max_norm: one step with the constraint equals torch.renorm's rule (rows whose norm exceeds
 *    c scaled by c / (norm + 1e-7)) applied to the unconstrained step, and a longer run keeps
 *    every row within c; with --vulkan the SPIR-V kernel on lavapipe against the CPU run;
 *  - weight_noise: with lr 0 the weights come back unchanged bit for bit (the noise is undone),
 *    and one step equals w - lr * grad(w + noise), the noise drawn here from its documented
 *    Philox stream and the gradient taken through the model API;
 *  - ema_decay: /ema equals the moving average computed here in double from the iterates of
 *    runs of 1..4 steps, training itself is unchanged, resume is bit-exact, and `lamina eval
 *    --ema` equals `lamina eval` of a copy whose /model holds /ema;
 *  - the errors for bad settings, each naming the file, the layer and the key.
 */
#include "e2e-util.h"

#include <glib/gstdio.h>
#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

static LmnRegistry *registry;
static LmnBackend *cpu;
static gboolean vulkan;
static char *tmp_dir;
static char *blobs;        /* blobs.h5, /train of 256 samples */
static GPtrArray *configs; /* models keep their config: freed at the end */

#define N_ACT 6

static const char *backend_lines(void)
{
    return vulkan ? "backend = vulkan\ndevice = lavapipe\n" : "backend = cpu\n";
}

static LmnConfig *load_config(const char *text, const char *name)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_data(text, -1, name, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    g_assert_no_error(error);
    g_ptr_array_add(configs, cfg);
    return cfg;
}

static float *read_tensor(LmnTensor *t)
{
    float *v = g_new(float, MAX(lmn_tensor_numel(t), 1));
    g_assert_true(lmn_tensor_read(t, v, lmn_tensor_nbytes(t), NULL));
    return v;
}

static void write_tensor(LmnTensor *t, const void *v)
{
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_tensor_write(t, v, lmn_tensor_nbytes(t), &error));
    g_assert_no_error(error);
}

/* ---- activity regularisation ---- */

static const char act_cfg[] = "[model]\ninput = 4\n"
                              "[layer fc1]\ntype = dense\nunits = 5\nactivity_l2 = 0.3\n"
                              "[layer act]\ntype = tanh\nactivity_l1 = 0.2\n"
                              "[layer fc2]\ntype = dense\nunits = 3\n"
                              "[layer loss]\ntype = softmax_cross_entropy\n"
                              "[optimizer]\ntype = sgd\n[train]\nbackend = cpu\n"
                              "[data]\ntrain = unused.h5:/train\n";

static LmnModel *act_model(const char *text, const float *x, const gint32 *y)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = load_config(text, "act.ini");
    LmnTensorInfo target = {lmn_shape_make(0), LMN_DTYPE_I32};
    LmnModel *m = lmn_model_new(cfg, registry, cpu, &target, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_init_params(m, 3, &error));
    g_assert_true(lmn_model_set_input_grad(m, TRUE, &error));
    g_assert_true(lmn_model_prepare(m, N_ACT, &error));
    LmnTensor *xt, *yt;
    lmn_model_set_batch(m, N_ACT, &xt, &yt);
    write_tensor(xt, x);
    write_tensor(yt, y);
    return m;
}

static double model_loss(LmnModel *m, gboolean training)
{
    lmn_model_forward(m, training, 0, 1);
    float loss = 0;
    g_assert_true(lmn_tensor_read(lmn_model_get_loss(m), &loss, sizeof loss, NULL));
    return loss;
}

/* The penalty from the layer outputs, computed here in double from fc1's parameters. */
static double act_penalty(LmnModel *m, const float *x)
{
    LmnLayer *fc1 = lmn_model_get_layer(m, 0);
    g_autofree float *w = read_tensor(lmn_layer_get_param(fc1, 0)); /* [5, 4] */
    g_autofree float *b = read_tensor(lmn_layer_get_param(fc1, 1));
    double sq = 0, abs_sum = 0;
    for (int s = 0; s < N_ACT; s++)
        for (int u = 0; u < 5; u++) {
            double a = b[u];
            for (int k = 0; k < 4; k++)
                a += (double) w[u * 4 + k] * x[s * 4 + k];
            sq += a * a;
            abs_sum += fabs(tanh(a));
        }
    return (0.3 * sq + 0.2 * abs_sum) / N_ACT;
}

/* Central differences of the training loss in @t (a parameter or the input), element by
 * element, against @analytic. */
static void check_fd(LmnModel *m, LmnTensor *t, const float *analytic, const char *what)
{
    gint64 n = lmn_tensor_numel(t);
    g_autofree float *v = read_tensor(t);
    const float h = 1e-3f;
    for (gint64 i = 0; i < n; i++) {
        float keep = v[i];
        v[i] = keep + h;
        write_tensor(t, v);
        double up = model_loss(m, TRUE);
        v[i] = keep - h;
        write_tensor(t, v);
        double down = model_loss(m, TRUE);
        v[i] = keep;
        write_tensor(t, v);
        double fd = (up - down) / (2.0 * h);
        /* float32 losses near 1 and a step of 1e-2: rounding adds about 1e-5, curvature h^2. */
        if (fabs(fd - analytic[i]) > 1e-3 + 1e-2 * fabs(fd))
            g_error("%s[%" G_GINT64_FORMAT "]: backward %.7g, finite differences %.7g", what, i,
                    analytic[i], fd);
    }
}

static void test_activity(void)
{
    float x[N_ACT * 4];
    gint32 y[N_ACT];
    LmnRandom r;
    lmn_random_init(&r, 11, 0);
    for (int i = 0; i < N_ACT * 4; i++)
        x[i] = (float) lmn_random_normal(&r);
    for (int i = 0; i < N_ACT; i++)
        y[i] = i % 3;
    g_autofree char *plain_text = g_strdup(act_cfg);
    for (char *p; (p = strstr(plain_text, "activity_l")) != NULL;)
        memcpy(p, "#", 1); /* comment both keys out: the same model without the penalties */
    LmnModel *plain = act_model(plain_text, x, y);
    LmnModel *act = act_model(act_cfg, x, y);
    /* The same initialisation (same seed and layers), so the losses differ by the penalty. */
    double penalty = act_penalty(act, x);
    double with = model_loss(act, TRUE), without = model_loss(plain, TRUE);
    g_assert_cmpfloat(fabs((with - without) - penalty), <, 1e-5 * (1 + penalty));
    g_assert_cmpfloat(penalty, >, 0.1);
    /* Evaluation losses leave it out, as they leave out the weight penalties. */
    g_assert_cmpfloat(fabs(model_loss(act, FALSE) - model_loss(plain, FALSE)), <, 1e-7);

    model_loss(act, TRUE);
    lmn_model_backward(act, 0, 1);
    g_autofree float *gx = read_tensor(lmn_model_get_input_grad(act));
    GPtrArray *grads = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < lmn_model_get_n_layers(act); i++) {
        LmnLayer *l = lmn_model_get_layer(act, i);
        for (guint p = 0; p < lmn_layer_get_n_params(l); p++)
            g_ptr_array_add(grads, read_tensor(lmn_layer_get_grad(l, p)));
    }
    guint k = 0;
    for (guint i = 0; i < lmn_model_get_n_layers(act); i++) {
        LmnLayer *l = lmn_model_get_layer(act, i);
        for (guint p = 0; p < lmn_layer_get_n_params(l); p++) {
            g_autofree char *what =
                g_strdup_printf("%s.%s", lmn_layer_get_name(l), lmn_layer_get_param_name(l, p));
            check_fd(act, lmn_layer_get_param(l, p), g_ptr_array_index(grads, k++), what);
        }
    }
    LmnTensor *xt;
    lmn_model_set_batch(act, N_ACT, &xt, NULL);
    check_fd(act, xt, gx, "input");
    g_ptr_array_unref(grads);
    lmn_model_free(act);
    lmn_model_free(plain);
}

static void expect_model_error(const char *text, const char *const *frags, gboolean allow_no_loss)
{
    LmnConfig *cfg = load_config(text, "bad.ini");
    g_autoptr(GError) error = NULL;
    LmnTensorInfo target = {lmn_shape_make(0), LMN_DTYPE_I32};
    LmnModel *m = allow_no_loss ? lmn_model_new_full(cfg, registry, cpu, NULL,
                                                     LMN_MODEL_ALLOW_NO_LOSS, &error)
                                : lmn_model_new(cfg, registry, cpu, &target, &error);
    g_assert_null(m);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
    for (guint i = 0; frags[i]; i++)
        if (!strstr(error->message, frags[i]))
            g_error("expected '%s' in: %s", frags[i], error->message);
}

static void test_activity_errors(void)
{
    expect_model_error(
        "[model]\ninput = 4\n[layer fc1]\ntype = dense\nunits = 3\n"
        "[layer loss]\ntype = softmax_cross_entropy\nactivity_l1 = 0.1\n"
        "[optimizer]\ntype = sgd\n[data]\ntrain = u.h5:/train\n",
        (const char *const[]){"bad.ini:8 [layer loss] activity_l1", "is a loss", NULL}, FALSE);
    expect_model_error("[model]\ninput = 4\n[layer fc1]\ntype = dense\nunits = 3\n"
                       "activity_l2 = 0.1\n[optimizer]\ntype = sgd\n[data]\ntrain = u.h5:/train\n",
                       (const char *const[]){"fc1", "no loss layer", NULL}, TRUE);
}

/* ---- training runs on the blobs ---- */

static char *mlp_config(const char *fc1_extra, const char *train_extra, const char *optimizer)
{
    return g_strdup_printf("[model]\ninput = 2\n"
                           "[layer fc1]\ntype = dense\nunits = 16\n%s"
                           "[layer act]\ntype = relu\n"
                           "[layer fc2]\ntype = dense\nunits = 4\n"
                           "[layer loss]\ntype = softmax_cross_entropy\n"
                           "[optimizer]\n%s"
                           "[train]\nbatch_size = 64\nepochs = 3\nshuffle = false\nseed = 5\n%s%s"
                           "[data]\ntrain = %s:/train\n",
                           fc1_extra, optimizer, backend_lines(), train_extra, blobs);
}

/* Trains @text into tmp_dir/@name (resuming from @resume when given); returns final.h5. */
static char *train(const char *text, const char *name, const char *resume)
{
    LmnConfig *cfg = load_config(text, name);
    g_autofree char *out = g_build_filename(tmp_dir, name, NULL);
    LmnTrainerOptions opts = {.output_dir = out, .quiet = TRUE, .resume_checkpoint = resume};
    g_autoptr(GError) error = NULL;
    LmnTrainer *t = lmn_trainer_new(cfg, registry, &opts, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_trainer_run(t, &error));
    g_assert_no_error(error);
    lmn_trainer_free(t);
    return g_build_filename(out, "final.h5", NULL);
}

static float *ckpt_floats(const char *file, const char *name, gsize *n)
{
    float *v = e2e_read_floats(file, name, n);
    if (!v)
        g_error("%s: no dataset %s", file, name);
    return v;
}

static const char sgd[] = "type = sgd\nlr = 0.5\n";

static void test_max_norm(void)
{
    g_autofree char *free_cfg = mlp_config("", "max_steps = 1\n", sgd);
    g_autofree char *mn_cfg = mlp_config("max_norm = 0.5\n", "max_steps = 1\n", sgd);
    g_autofree char *a = train(free_cfg, "mn-free", NULL);
    g_autofree char *b = train(mn_cfg, "mn-one", NULL);
    gsize n = 0, nb = 0;
    g_autofree float *wa = ckpt_floats(a, "/model/fc1/weight", &n);
    g_autofree float *wb = ckpt_floats(b, "/model/fc1/weight", &nb);
    g_assert_cmpuint(n, ==, 32);
    g_assert_cmpuint(nb, ==, n);
    /* torch.renorm(w, p=2, dim=0, maxnorm=0.5) of the unconstrained step, row by row. */
    int clipped = 0;
    for (int r = 0; r < 16; r++) {
        double norm = hypot(wa[2 * r], wa[2 * r + 1]);
        double f = norm > 0.5 ? 0.5 / (norm + 1e-7) : 1.0;
        clipped += norm > 0.5;
        for (int c = 0; c < 2; c++)
            g_assert_cmpfloat(fabs(wb[2 * r + c] - wa[2 * r + c] * f), <=, 1e-6);
    }
    g_assert_cmpint(clipped, >, 0);
    g_assert_cmpint(clipped, <, 16);
    /* Biases and the other layer are not touched. */
    e2e_assert_same_floats(a, b, "/model/fc2");
    g_autofree float *ba = ckpt_floats(a, "/model/fc1/bias", &n);
    g_autofree float *bb = ckpt_floats(b, "/model/fc1/bias", &n);
    g_assert_cmpmem(ba, n * sizeof(float), bb, n * sizeof(float));

    /* Many steps: every row stays within the bound, and the bound is reached. */
    g_autofree char *long_cfg = mlp_config("max_norm = 0.5\n", "max_steps = 40\n", sgd);
    g_autofree char *c = train(long_cfg, "mn-long", NULL);
    g_autofree float *wc = ckpt_floats(c, "/model/fc1/weight", &n);
    double largest = 0;
    for (int r = 0; r < 16; r++)
        largest = MAX(largest, hypot(wc[2 * r], wc[2 * r + 1]));
    g_assert_cmpfloat(largest, <=, 0.5 * (1 + 1e-6));
    g_assert_cmpfloat(largest, >, 0.49);
}

static void expect_train_error(const char *text, GQuark domain, gint code, const char *const *frags)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_data(text, -1, "bad.ini", &error);
    g_assert_no_error(error);
    LmnTrainer *t = NULL;
    if (lmn_config_validate(cfg, registry, &error)) {
        g_autofree char *out = g_build_filename(tmp_dir, "bad", NULL);
        LmnTrainerOptions opts = {.output_dir = out, .quiet = TRUE};
        t = lmn_trainer_new(cfg, registry, &opts, &error);
    }
    g_assert_null(t);
    g_assert_error(error, domain, code);
    for (guint i = 0; frags[i]; i++)
        if (!strstr(error->message, frags[i]))
            g_error("expected '%s' in: %s", frags[i], error->message);
    lmn_config_free(cfg);
}

static void test_regulariser_errors(void)
{
    g_autofree char *relu = mlp_config("", "", sgd);
    g_autofree char *relu_mn = NULL;
    {
        GString *s = g_string_new(relu);
        g_string_replace(s, "type = relu\n", "type = relu\nmax_norm = 1\n", 1);
        relu_mn = g_string_free(s, FALSE);
    }
    expect_train_error(relu_mn, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                       (const char *const[]){"bad.ini", "[layer act] max_norm", "'act'",
                                             "no weight matrix", NULL});
    g_autofree char *frozen = mlp_config("max_norm = 1\ntrainable = false\n", "", sgd);
    expect_train_error(frozen, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                       (const char *const[]){"[layer fc1] max_norm", "frozen", NULL});
    g_autofree char *decay = mlp_config("", "ema_decay = 1\n", sgd);
    expect_train_error(decay, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                       (const char *const[]){"bad.ini", "[train]", "ema_decay", NULL});
    g_autofree char *noise = mlp_config("", "weight_noise = -0.1\n", sgd);
    expect_train_error(noise, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                       (const char *const[]){"[train]", "weight_noise", NULL});
    g_autofree char *mn = mlp_config("max_norm = -1\n", "", sgd);
    expect_train_error(mn, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                       (const char *const[]){"[layer fc1]", "max_norm", NULL});
}

/* ---- weight noise ---- */

static void test_weight_noise(void)
{
    /* With lr 0 nothing may change: the noise is taken off again after the step. */
    g_autofree char *still =
        mlp_config("", "max_steps = 3\nweight_noise = 0.3\n", "type = sgd\nlr = 0\n");
    g_autofree char *still_plain = mlp_config("", "max_steps = 3\n", "type = sgd\nlr = 0\n");
    g_autofree char *w0 = train(still, "wn-still", NULL);
    g_autofree char *w0_plain = train(still_plain, "wn-still-plain", NULL);
    e2e_assert_same_floats(w0, w0_plain, "/model");

    g_autofree char *one = mlp_config("", "max_steps = 1\nweight_noise = 0.3\n", sgd);
    g_autofree char *w1 = train(one, "wn-one", NULL);
    g_autofree char *one_plain = mlp_config("", "max_steps = 1\n", sgd);
    g_autofree char *w1_plain = train(one_plain, "wn-one-plain", NULL);

    /* The oracle: the first batch (no shuffling), the noise of step 0 from its stream, the
     * gradient at the noisy weights, SGD's update p + (-lr) g on the clean ones. */
    LmnConfig *cfg = load_config(one, "wn-oracle.ini");
    g_autoptr(GError) error = NULL;
    LmnTensorInfo target = {lmn_shape_make(0), LMN_DTYPE_I32};
    LmnModel *m = lmn_model_new(cfg, registry, cpu, &target, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_prepare(m, 64, &error));
    g_assert_true(lmn_checkpoint_load_weights(w0, m, &error));
    g_assert_no_error(error);
    LmnTensor *flat = lmn_model_get_params(m);
    g_autofree float *clean = read_tensor(flat);
    g_autoptr(LmnTensor) noise = lmn_tensor_new(cpu, LMN_DTYPE_F32, &flat->shape, &error);
    lmn_op_random_normal(noise, 0.0f, 0.3f, 5, LMN_STREAM(LMN_STREAM_WEIGHT_NOISE, 0));
    g_autofree float *nz = read_tensor(noise);
    g_autofree float *noisy = g_memdup2(clean, lmn_tensor_nbytes(flat));
    for (guint i = 0; i < lmn_model_get_n_layers(m); i++) {
        LmnLayer *l = lmn_model_get_layer(m, i);
        for (guint p = 0; p < lmn_layer_get_n_params(l); p++) {
            LmnTensor *w = lmn_layer_get_param(l, p);
            gint64 off = (gint64) ((w->offset - flat->offset) / sizeof(float));
            for (gint64 k = 0; k < lmn_tensor_numel(w); k++)
                noisy[off + k] = clean[off + k] + nz[off + k];
        }
    }
    write_tensor(flat, noisy);
    gsize nx = 0, ny = 0;
    g_autofree float *xs = ckpt_floats(blobs, "/train/x", &nx);
    g_autofree float *ys = ckpt_floats(blobs, "/train/y", &ny);
    gint32 labels[64];
    for (int i = 0; i < 64; i++)
        labels[i] = (gint32) ys[i];
    LmnTensor *xt, *yt;
    lmn_model_set_batch(m, 64, &xt, &yt);
    g_assert_true(lmn_tensor_write(xt, xs, 64 * 2 * sizeof(float), &error));
    write_tensor(yt, labels);
    lmn_model_forward(m, TRUE, 0, 5);
    lmn_model_backward(m, 0, 5);
    for (guint i = 0; i < lmn_model_get_n_layers(m); i++) {
        LmnLayer *l = lmn_model_get_layer(m, i);
        for (guint p = 0; p < lmn_layer_get_n_params(l); p++) {
            LmnTensor *w = lmn_layer_get_param(l, p);
            gint64 off = (gint64) ((w->offset - flat->offset) / sizeof(float));
            g_autofree float *g = read_tensor(lmn_layer_get_grad(l, p));
            g_autofree char *path = g_strdup_printf("/model/%s/%s", lmn_layer_get_name(l),
                                                    lmn_layer_get_param_name(l, p));
            gsize n = 0;
            g_autofree float *got = ckpt_floats(w1, path, &n);
            /* On lavapipe the step ran there and the oracle here: GEMM rounding differs. */
            double tol = vulkan ? 1e-4 : 1e-6;
            for (gsize k = 0; k < n; k++) {
                float want = clean[off + k] + -0.5f * g[k];
                g_assert_cmpfloat(fabs(got[k] - want), <=, tol * (1 + fabs(want)));
            }
        }
    }
    lmn_model_free(m);
    /* The noise mattered. */
    g_autofree float *a = ckpt_floats(w1, "/model/fc1/weight", &nx);
    g_autofree float *b = ckpt_floats(w1_plain, "/model/fc1/weight", &nx);
    g_assert_true(memcmp(a, b, nx * sizeof(float)) != 0);
}

/* ---- the moving average ---- */

static const char momentum[] = "type = sgd\nlr = 0.2\nmomentum = 0.9\n";

static void test_ema(void)
{
    const char *params[] = {"fc1/weight", "fc1/bias", "fc2/weight", "fc2/bias"};
    GPtrArray *steps = g_ptr_array_new_with_free_func(g_free); /* the iterates P1..P4 */
    for (int k = 1; k <= 4; k++) {
        g_autofree char *extra = g_strdup_printf("max_steps = %d\n", k);
        g_autofree char *text = mlp_config("", extra, momentum);
        g_autofree char *name = g_strdup_printf("ema-p%d", k);
        g_ptr_array_add(steps, train(text, name, NULL));
    }
    g_autofree char *ema_text = mlp_config("", "max_steps = 4\nema_decay = 0.8\n", momentum);
    g_autofree char *ema = train(ema_text, "ema-4", NULL);
    /* Averaging changes nothing of the training itself. */
    e2e_assert_same_floats(ema, g_ptr_array_index(steps, 3), "/model");
    for (guint p = 0; p < G_N_ELEMENTS(params); p++) {
        gsize n = 0;
        g_autofree char *mpath = g_strdup_printf("/model/%s", params[p]);
        g_autofree char *epath = g_strdup_printf("/ema/%s", params[p]);
        g_autofree float *got = ckpt_floats(ema, epath, &n);
        g_autofree double *avg = g_new0(double, n);
        for (guint k = 0; k < 4; k++) {
            gsize m = 0;
            g_autofree float *pk = ckpt_floats(g_ptr_array_index(steps, k), mpath, &m);
            g_assert_cmpuint(m, ==, n);
            for (gsize i = 0; i < n; i++)
                avg[i] = k == 0 ? pk[i] : 0.8 * avg[i] + 0.2 * pk[i];
        }
        for (gsize i = 0; i < n; i++)
            g_assert_cmpfloat(fabs(got[i] - avg[i]), <=, 1e-6 * (1 + fabs(avg[i])));
    }
    g_ptr_array_unref(steps);

    /* Resume: two steps, then on to four, ends with the same average bit for bit. */
    g_autofree char *half_text = mlp_config("", "max_steps = 2\nema_decay = 0.8\n", momentum);
    g_autofree char *half = train(half_text, "ema-half", NULL);
    g_autofree char *resumed = train(ema_text, "ema-half", half);
    e2e_assert_same_floats(resumed, ema, "/ema");
    e2e_assert_same_floats(resumed, ema, "/model");
}

/* `lamina eval --ema` is `lamina eval` of the averaged weights. */
static void test_eval_ema(void)
{
    g_autofree char *text = mlp_config("", "max_steps = 12\nema_decay = 0.7\n", momentum);
    g_autofree char *ckpt = train(text, "ema-eval", NULL);
    /* A copy whose /model parameters are /ema's. */
    g_autofree char *copy = g_build_filename(tmp_dir, "ema-as-model.h5", NULL);
    g_autofree char *bytes = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(ckpt, &bytes, &len, NULL));
    g_assert_true(g_file_set_contents(copy, bytes, (gssize) len, NULL));
    g_autoptr(GPtrArray) names = e2e_list_datasets(copy, "/ema");
    g_assert_cmpuint(names->len, ==, 4);
    hid_t f = H5Fopen(copy, H5F_ACC_RDWR, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    for (guint i = 0; i < names->len; i++) {
        const char *name = g_ptr_array_index(names, i);
        g_autofree char *src = g_strdup_printf("/ema/%s", name);
        g_autofree char *dst = g_strdup_printf("/model/%s", name);
        gsize n = 0;
        g_autofree float *v = ckpt_floats(ckpt, src, &n);
        hid_t d = H5Dopen2(f, dst, H5P_DEFAULT);
        g_assert_cmpint(d, >=, 0);
        g_assert_cmpint(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), >=, 0);
        H5Dclose(d);
    }
    H5Fclose(f);
    g_autofree char *data = g_strdup_printf("%s:/train", blobs);
    g_autofree char *out_ema = NULL, *out_copy = NULL, *out_live = NULL, *err = NULL;
    g_assert_cmpint(e2e_run_lamina(&out_ema, NULL, "eval", ckpt, "--data", data, "--json", "--ema",
                                   "--backend", "cpu", NULL),
                    ==, 0);
    g_assert_cmpint(e2e_run_lamina(&out_copy, NULL, "eval", copy, "--data", data, "--json",
                                   "--backend", "cpu", NULL),
                    ==, 0);
    g_assert_cmpint(e2e_run_lamina(&out_live, NULL, "eval", ckpt, "--data", data, "--json",
                                   "--backend", "cpu", NULL),
                    ==, 0);
    g_assert_cmpstr(out_ema, ==, out_copy);
    g_assert_cmpstr(out_ema, !=, out_live);
    /* A checkpoint without an average says so. */
    g_autofree char *plain_text = mlp_config("", "max_steps = 2\n", momentum);
    g_autofree char *plain = train(plain_text, "ema-none", NULL);
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "eval", plain, "--data", data, "--ema", "--backend",
                                   "cpu", NULL),
                    ==, 1);
    g_assert_nonnull(strstr(err, "has no /ema"));
    g_assert_nonnull(strstr(err, plain));
}

/* With a validation split the epoch line and metrics.csv report the average too. */
static void test_ema_report(void)
{
    g_autofree char *text = g_strdup_printf("[model]\ninput = 2\n"
                                            "[layer fc1]\ntype = dense\nunits = 8\n"
                                            "[layer act]\ntype = relu\n"
                                            "[layer fc2]\ntype = dense\nunits = 4\n"
                                            "[layer loss]\ntype = softmax_cross_entropy\n"
                                            "[optimizer]\n%s"
                                            "[train]\nbatch_size = 32\nepochs = 2\n%s"
                                            "ema_decay = 0.9\n"
                                            "[data]\ntrain = %s:/train\nvalidation_split = 0.25\n",
                                            momentum, backend_lines(), blobs);
    g_autofree char *cfg_path = g_build_filename(tmp_dir, "ema-report.ini", NULL);
    g_assert_true(g_file_set_contents(cfg_path, text, -1, NULL));
    g_autofree char *out_dir = g_build_filename(tmp_dir, "ema-report", NULL);
    g_autofree char *out = NULL;
    g_assert_cmpint(e2e_run_lamina(&out, NULL, "train", cfg_path, "--output", out_dir, NULL), ==,
                    0);
    g_assert_nonnull(strstr(out, "ema val_loss"));
    g_assert_nonnull(strstr(out, "ema val_acc"));
    g_autofree char *csv = g_build_filename(out_dir, "metrics.csv", NULL);
    g_autofree char *text_csv = NULL;
    g_assert_true(g_file_get_contents(csv, &text_csv, NULL, NULL));
    g_assert_true(g_str_has_prefix(text_csv, "epoch,"));
    g_assert_nonnull(strstr(text_csv, ",val_loss_ema,val_accuracy_ema\n"));
    g_autoptr(GPtrArray) rows = e2e_csv_rows(csv);
    g_assert_cmpuint(rows->len, ==, 2);
    for (guint i = 0; i < rows->len; i++) {
        char **row = g_ptr_array_index(rows, i);
        guint n = g_strv_length(row);
        g_assert_cmpuint(n, ==, 10);
        double acc = g_ascii_strtod(row[n - 1], NULL);
        g_assert_cmpfloat(acc, >, 0.5); /* the blobs separate well */
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (int i = 1; i < argc; i++)
        vulkan = vulkan || g_str_equal(argv[i], "--vulkan");
    LmnBackend *vk = NULL;
    if (!e2e_open_backends(vulkan, &registry, &cpu, &vk))
        return 77;
    g_clear_pointer(&vk, lmn_backend_unref);
    configs = g_ptr_array_new_with_free_func((GDestroyNotify) lmn_config_free);
    tmp_dir = g_dir_make_tmp("lamina-weight-regularisers-XXXXXX", NULL);
    blobs = g_build_filename(tmp_dir, "blobs.h5", NULL);
    e2e_write_blobs(blobs, "train", 256, 9, FALSE);
    if (!vulkan) {
        g_test_add_func("/e2e/weight-regularisers/activity", test_activity);
        g_test_add_func("/e2e/weight-regularisers/activity-errors", test_activity_errors);
        g_test_add_func("/e2e/weight-regularisers/errors", test_regulariser_errors);
        g_test_add_func("/e2e/weight-regularisers/eval-ema", test_eval_ema);
        g_test_add_func("/e2e/weight-regularisers/ema-report", test_ema_report);
    }
    /* These run on the configured backend: with --vulkan, lavapipe's kernels. */
    g_test_add_func("/e2e/weight-regularisers/max-norm", test_max_norm);
    g_test_add_func("/e2e/weight-regularisers/weight-noise", test_weight_noise);
    g_test_add_func("/e2e/weight-regularisers/ema", test_ema);
    int rc = g_test_run();
    e2e_remove_tree(tmp_dir);
    g_free(tmp_dir);
    g_free(blobs);
    g_ptr_array_unref(configs);
    lmn_backend_unref(cpu);
    lmn_registry_free(registry);
    return rc;
}
