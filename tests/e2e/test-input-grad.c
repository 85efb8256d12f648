/* Input gradients (lmn_model_set_input_grad): dL/d(input) through the model path.
 *
 * Oracles: PyTorch's gradient for four models (tests/fixtures/input-grads.h5, recorded by
 * scripts/make-input-grad-fixtures.py: an MLP; conv2d + maxpool + batch_norm + dense; lstm +
 * dense with mse; a residual model whose input feeds two dense branches and, twice, an add),
 * central finite differences of the loss, and, with --vulkan, the CPU backend for the same models
 * on lavapipe (exit 77, skipped, when no such device can be opened).  Also: the feature is off by
 * default and then changes nothing in the examples' activation arenas, and a model whose input is
 * read as indices (an embedding) refuses it naming the layer. */
#include "e2e-util.h"

#include <glib/gstdio.h>
#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

static LmnRegistry *registry;
static LmnBackend *cpu;
static LmnBackend *vk; /* only with --vulkan */

#define COMMON_TAIL                                                                                \
    "[optimizer]\ntype = sgd\n[train]\nbackend = cpu\n[data]\ntrain = unused.h5:/train\n"

/* The Lamina twins of the models in scripts/make-input-grad-fixtures.py, then models whose
 * first layer is each other kind with an input gradient (checked by finite differences and on
 * Vulkan only, with the parameters lmn_model_init_params gives and generated batches). */
typedef struct {
    const char *name;
    const char *cfg;
    gboolean regression; /* mse with f32 [2] targets, else class labels */
    gboolean fixture;    /* weights and batch from input-grads.h5 */
    gint64 n;            /* generated batch size, without a fixture */
    float h;             /* finite-difference step */
} Case;

static const Case cases[] = {
    {"mlp",
     "[model]\ninput = 6\n[layer fc1]\ntype = dense\nunits = 8\n[layer act]\ntype = tanh\n"
     "[layer fc2]\ntype = dense\nunits = 4\n[layer loss]\ntype = "
     "softmax_cross_entropy\n" COMMON_TAIL,
     FALSE, TRUE, 0, 1e-2f},
    {"cnn",
     "[model]\ninput = 2, 6, 6\n"
     "[layer conv]\ntype = conv2d\nout_channels = 3\nkernel_size = 3\npadding = 1\n"
     "[layer pool]\ntype = maxpool2d\nkernel_size = 2\n[layer bn]\ntype = batch_norm\n"
     "[layer act]\ntype = relu\n[layer flat]\ntype = flatten\n"
     "[layer fc]\ntype = dense\nunits = 3\n[layer loss]\ntype = "
     "softmax_cross_entropy\n" COMMON_TAIL,
     FALSE, TRUE, 0, 1e-2f},
    {"lstm",
     "[model]\ninput = 5, 3\n[layer lstm]\ntype = lstm\nhidden_size = 4\n"
     "[layer fc]\ntype = dense\nunits = 2\n[layer loss]\ntype = mse\n" COMMON_TAIL,
     TRUE, TRUE, 0, 1e-2f},
    {"residual",
     "[model]\ninput = 6\n[layer fc_a]\ntype = dense\nunits = 6\ninput = input\n"
     "[layer act_a]\ntype = tanh\n[layer fc_b]\ntype = dense\nunits = 6\ninput = input\n"
     "[layer sum]\ntype = add\ninput = act_a, fc_b, input, input\n"
     "[layer fc_out]\ntype = dense\nunits = 3\n[layer loss]\ntype = "
     "softmax_cross_entropy\n" COMMON_TAIL,
     FALSE, TRUE, 0, 1e-2f},
    {"first-maxpool",
     "[model]\ninput = 2, 4, 4\n[layer pool]\ntype = maxpool2d\nkernel_size = 2\n"
     "[layer flat]\ntype = flatten\n[layer fc]\ntype = dense\nunits = 3\n"
     "[layer loss]\ntype = softmax_cross_entropy\n" COMMON_TAIL,
     FALSE, FALSE, 3, 1e-3f},
    {"first-avgpool",
     "[model]\ninput = 2, 4, 4\n[layer pool]\ntype = avgpool2d\nkernel_size = 2\n"
     "[layer flat]\ntype = flatten\n[layer fc]\ntype = dense\nunits = 3\n"
     "[layer loss]\ntype = softmax_cross_entropy\n" COMMON_TAIL,
     FALSE, FALSE, 3, 1e-2f},
    {"first-batch-norm",
     "[model]\ninput = 2, 3, 3\n[layer bn]\ntype = batch_norm\n[layer act]\ntype = tanh\n"
     "[layer flat]\ntype = flatten\n[layer fc]\ntype = dense\nunits = 3\n"
     "[layer loss]\ntype = softmax_cross_entropy\n" COMMON_TAIL,
     FALSE, FALSE, 5, 1e-2f},
    {"first-gru",
     "[model]\ninput = 4, 3\n[layer gru]\ntype = gru\nhidden_size = 3\n"
     "return_sequences = true\n[layer flat]\ntype = flatten\n"
     "[layer fc]\ntype = dense\nunits = 3\n[layer loss]\ntype = "
     "softmax_cross_entropy\n" COMMON_TAIL,
     FALSE, FALSE, 3, 1e-2f},
    {"first-activation",
     "[model]\ninput = 5\n[layer act]\ntype = sigmoid\n[layer fc]\ntype = dense\nunits = 3\n"
     "[layer loss]\ntype = softmax_cross_entropy\n" COMMON_TAIL,
     FALSE, FALSE, 4, 1e-2f},
    {"first-flatten",
     "[model]\ninput = 2, 3\n[layer flat]\ntype = flatten\n[layer fc]\ntype = dense\n"
     "units = 3\n[layer loss]\ntype = softmax_cross_entropy\n" COMMON_TAIL,
     FALSE, FALSE, 4, 1e-2f},
    {"first-reshape",
     "[model]\ninput = 6\n[layer r]\ntype = reshape\nshape = 2, 3\n[layer act]\ntype = tanh\n"
     "[layer flat]\ntype = flatten\n[layer fc]\ntype = dense\nunits = 3\n"
     "[layer loss]\ntype = softmax_cross_entropy\n" COMMON_TAIL,
     FALSE, FALSE, 4, 1e-2f},
    {"first-add-twice",
     "[model]\ninput = 4\n[layer twice]\ntype = add\ninput = input, input\n"
     "[layer act]\ntype = tanh\n[layer fc]\ntype = dense\nunits = 3\n"
     "[layer loss]\ntype = softmax_cross_entropy\n" COMMON_TAIL,
     FALSE, FALSE, 4, 1e-2f},
};

static char *fixture_path(void)
{
    return g_build_filename(g_getenv("LMN_TEST_FIXTURES"), "input-grads.h5", NULL);
}

/* Builds @text on @backend; its parameters are initialised from seed 1. */
static LmnModel *build(const char *text, gboolean regression, LmnBackend *backend,
                       LmnConfig **cfg_out)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_data(text, -1, "input-grad.ini", &error);
    g_assert_no_error(error);
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    g_assert_no_error(error);
    LmnTensorInfo target = regression ? (LmnTensorInfo){lmn_shape_make(1, 2), LMN_DTYPE_F32}
                                      : (LmnTensorInfo){lmn_shape_make(0), LMN_DTYPE_I32};
    LmnModel *model = lmn_model_new(cfg, registry, backend, &target, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_init_params(model, 1, &error));
    *cfg_out = cfg;
    return model;
}

/* Loads the fixture's /CASE/model into @model: lmn_checkpoint_load_weights reads /model at a
 * file's root, so the group is copied into a file of its own first. */
static void load_fixture_weights(LmnModel *model, const char *name)
{
    g_autofree char *fixture = fixture_path();
    g_autofree char *dir = g_dir_make_tmp("lamina-input-grad-XXXXXX", NULL);
    g_assert_nonnull(dir);
    g_autofree char *path = g_build_filename(dir, "weights.h5", NULL);
    g_autofree char *src_name = g_strdup_printf("%s/model", name);
    hid_t src = H5Fopen(fixture, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(src, >=, 0);
    hid_t dst = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(dst, >=, 0);
    g_assert_cmpint(H5Ocopy(src, src_name, dst, "model", H5P_DEFAULT, H5P_DEFAULT), >=, 0);
    H5Fclose(dst);
    H5Fclose(src);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_checkpoint_load_weights(path, model, &error));
    g_assert_no_error(error);
    e2e_remove_tree(dir);
}

/* Reads dataset @name of the fixture as doubles. */
static double *read_doubles(const char *name, gsize *n_out)
{
    g_autofree char *fixture = fixture_path();
    hid_t f = H5Fopen(fixture, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    g_assert_cmpint(d, >=, 0);
    hid_t s = H5Dget_space(d);
    gsize n = (gsize) H5Sget_simple_extent_npoints(s);
    double *v = g_new(double, MAX(n, 1));
    g_assert_cmpint(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), >=, 0);
    H5Sclose(s);
    H5Dclose(d);
    H5Fclose(f);
    *n_out = n;
    return v;
}

/* One batch of a case: inputs and targets, in the fixture's host layout. */
typedef struct {
    gint64 n;
    float *x;
    gsize n_x;
    void *y; /* gint32 labels or floats */
    gsize y_bytes;
} Batch;

/* A generated batch: inputs uniform in [-1, 1) from a fixed seed, labels i mod 3. */
static void batch_generate(Batch *b, const Case *c, LmnModel *model)
{
    b->n = c->n;
    b->n_x = (gsize) (c->n * lmn_shape_numel(lmn_model_get_input_shape(model)));
    b->x = g_new(float, b->n_x);
    g_autoptr(GRand) r = g_rand_new_with_seed(7);
    for (gsize i = 0; i < b->n_x; i++)
        b->x[i] = (float) g_rand_double_range(r, -1, 1);
    gint32 *y = g_new(gint32, c->n);
    for (gint64 i = 0; i < c->n; i++)
        y[i] = (gint32) (i % 3);
    b->y = y;
    b->y_bytes = (gsize) c->n * sizeof(gint32);
}

/* The case's batch: the fixture's, or generated; with its fixture weights loaded into @model. */
static void batch_load(Batch *b, const Case *c, LmnModel *model)
{
    if (!c->fixture) {
        batch_generate(b, c, model);
        return;
    }
    load_fixture_weights(model, c->name);
    g_autofree char *xn = g_strdup_printf("/%s/x", c->name);
    g_autofree char *yn = g_strdup_printf("/%s/y", c->name);
    g_autofree char *fixture = fixture_path();
    b->x = e2e_read_floats(fixture, xn, &b->n_x);
    g_assert_nonnull(b->x);
    gsize n_y = 0;
    g_autofree double *y = read_doubles(yn, &n_y);
    if (c->regression) {
        float *yf = g_new(float, n_y);
        for (gsize i = 0; i < n_y; i++)
            yf[i] = (float) y[i];
        b->y = yf;
        b->n = (gint64) n_y / 2;
    } else {
        gint32 *yi = g_new(gint32, n_y);
        for (gsize i = 0; i < n_y; i++)
            yi[i] = (gint32) y[i];
        b->y = yi;
        b->n = (gint64) n_y;
    }
    b->y_bytes = n_y * 4;
}

static void batch_clear(Batch *b)
{
    g_free(b->x);
    g_free(b->y);
}

/* Runs forward (training mode: batch statistics) on @x and returns the loss. */
static double run_forward(LmnModel *model, const Batch *b, const float *x)
{
    g_autoptr(GError) error = NULL;
    LmnTensor *xt, *yt;
    lmn_model_set_batch(model, b->n, &xt, &yt);
    g_assert_true(lmn_tensor_write(xt, x, lmn_tensor_nbytes(xt), &error));
    g_assert_true(lmn_tensor_write(yt, b->y, b->y_bytes, &error));
    lmn_model_forward(model, TRUE, 0, 1);
    float loss = 0;
    g_assert_true(lmn_tensor_read(lmn_model_get_loss(model), &loss, sizeof loss, &error));
    g_assert_no_error(error);
    return loss;
}

/* Forward and backward on the batch; returns the input gradient (and the loss via @loss_out). */
static float *input_grad_of(LmnModel *model, const Batch *b, double *loss_out)
{
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_model_set_input_grad(model, TRUE, &error));
    g_assert_no_error(error);
    g_assert_true(lmn_model_prepare(model, b->n, &error));
    double loss = run_forward(model, b, b->x);
    lmn_model_backward(model, 0, 1);
    LmnTensor *g = lmn_model_get_input_grad(model);
    g_assert_nonnull(g);
    g_assert_cmpint(g->shape.ndim, ==, lmn_model_get_input_shape(model)->ndim + 1);
    g_assert_cmpint(g->shape.dims[0], ==, b->n);
    g_assert_cmpint(lmn_tensor_numel(g), ==, (gint64) b->n_x);
    float *out = g_new(float, b->n_x);
    g_assert_true(lmn_tensor_read(g, out, lmn_tensor_nbytes(g), &error));
    g_assert_no_error(error);
    if (loss_out)
        *loss_out = loss;
    return out;
}

/* max |a - b| / max(max |b|, tiny): the error relative to the gradient's scale. */
static double rel_error(const float *a, const double *b, gsize n)
{
    double worst = 0, scale = 0;
    for (gsize i = 0; i < n; i++) {
        worst = MAX(worst, fabs(a[i] - b[i]));
        scale = MAX(scale, fabs(b[i]));
    }
    return worst / MAX(scale, 1e-12);
}

static void test_torch(gconstpointer data)
{
    const Case *c = data;
    LmnConfig *cfg = NULL;
    LmnModel *model = build(c->cfg, c->regression, cpu, &cfg);
    Batch b;
    batch_load(&b, c, model);
    double loss = 0;
    g_autofree float *got = input_grad_of(model, &b, &loss);
    g_autofree char *gn = g_strdup_printf("/%s/grad_x", c->name);
    g_autofree char *ln = g_strdup_printf("/%s/loss", c->name);
    gsize n_ref = 0, n_loss = 0;
    g_autofree double *ref = read_doubles(gn, &n_ref);
    g_autofree double *ref_loss = read_doubles(ln, &n_loss);
    g_assert_cmpuint(n_ref, ==, b.n_x);
    g_assert_cmpfloat(fabs(loss - ref_loss[0]), <=, 1e-5 * MAX(1.0, fabs(ref_loss[0])));
    double err = rel_error(got, ref, n_ref);
    g_test_message("%s: max |lamina - torch| / max |torch| = %.3g (loss %.8g vs %.8g)", c->name,
                   err, loss, ref_loss[0]);
    g_assert_cmpfloat(err, <=, 1e-5);

    /* A second backward overwrites the gradient rather than adding to it. */
    lmn_model_backward(model, 0, 1);
    g_autofree float *again = g_new(float, b.n_x);
    g_autoptr(GError) error = NULL;
    LmnTensor *g = lmn_model_get_input_grad(model);
    g_assert_true(lmn_tensor_read(g, again, lmn_tensor_nbytes(g), &error));
    g_assert_cmpmem(again, b.n_x * sizeof(float), got, b.n_x * sizeof(float));

    /* The input-only backward (what attacks run) gives the same bits; on the dense-only model
     * it also leaves the parameter gradients alone, i.e. it skipped computing them. */
    LmnTensor *grads = lmn_model_get_grads(model);
    lmn_op_fill(grads, 7.0f);
    lmn_op_fill(g, 0.0f);
    lmn_model_backward_input(model, 0, 1);
    g_assert_true(lmn_tensor_read(g, again, lmn_tensor_nbytes(g), &error));
    g_assert_cmpmem(again, b.n_x * sizeof(float), got, b.n_x * sizeof(float));
    /* The parameter-only backward (adversarial training's clean and attacked passes) gives the
     * parameter gradients of a full backward, bit for bit. */
    {
        gsize n_grads = (gsize) lmn_tensor_numel(grads);
        g_autofree float *full = g_new(float, n_grads);
        g_autofree float *params_only = g_new(float, n_grads);
        /* (the padding between parameters is never written: give it the same value) */
        lmn_op_fill(grads, 5.0f);
        lmn_model_backward(model, 0, 1);
        g_assert_true(lmn_tensor_read(grads, full, n_grads * sizeof(float), &error));
        lmn_op_fill(grads, 5.0f);
        lmn_model_backward_params(model, 0, 1);
        g_assert_true(lmn_tensor_read(grads, params_only, n_grads * sizeof(float), &error));
        g_assert_cmpmem(full, n_grads * sizeof(float), params_only, n_grads * sizeof(float));
    }
    if (g_str_equal(c->name, "mlp")) {
        lmn_op_fill(grads, 7.0f);
        lmn_model_backward_input(model, 0, 1);
        gsize n_grads = (gsize) lmn_tensor_numel(grads);
        g_autofree float *gv = g_new(float, n_grads);
        g_assert_true(lmn_tensor_read(grads, gv, n_grads * sizeof(float), &error));
        for (gsize i = 0; i < n_grads; i++)
            g_assert_cmpfloat(gv[i], ==, 7.0f);
    }
    batch_clear(&b);
    lmn_model_free(model);
    lmn_config_free(cfg);
}

/* Central differences of the loss in double steps of float32 inputs, against the gradient. */
static void test_finite_differences(gconstpointer data)
{
    const Case *c = data;
    LmnConfig *cfg = NULL;
    LmnModel *model = build(c->cfg, c->regression, cpu, &cfg);
    Batch b;
    batch_load(&b, c, model);
    g_autofree float *grad = input_grad_of(model, &b, NULL);
    g_autofree float *x = g_memdup2(b.x, b.n_x * sizeof(float));
    g_autofree double *fd = g_new(double, b.n_x);
    const float h = c->h;
    for (gsize i = 0; i < b.n_x; i++) {
        x[i] = b.x[i] + h;
        double up = run_forward(model, &b, x);
        x[i] = b.x[i] - h;
        double down = run_forward(model, &b, x);
        x[i] = b.x[i];
        fd[i] = (up - down) / (2.0 * h);
    }
    double err = rel_error(grad, fd, b.n_x);
    g_test_message("%s: max |gradient - finite difference| / max |fd| = %.3g", c->name, err);
    g_assert_cmpfloat(err, <=, 1e-2);
    batch_clear(&b);
    lmn_model_free(model);
    lmn_config_free(cfg);
}

/* The same model and batch on lavapipe and on the CPU. */
static void test_vulkan(gconstpointer data)
{
    const Case *c = data;
    Batch b;
    float *grads[2];
    double losses[2];
    LmnBackend *backends[2] = {cpu, vk};
    for (int k = 0; k < 2; k++) {
        LmnConfig *cfg = NULL;
        /* Both builds initialise from the same seed, so they hold the same parameters. */
        LmnModel *model = build(c->cfg, c->regression, backends[k], &cfg);
        if (k == 0)
            batch_load(&b, c, model);
        else if (c->fixture)
            load_fixture_weights(model, c->name);
        grads[k] = input_grad_of(model, &b, &losses[k]);
        lmn_model_free(model);
        lmn_config_free(cfg);
    }
    g_autofree double *cpu_grad = g_new(double, b.n_x);
    for (gsize i = 0; i < b.n_x; i++)
        cpu_grad[i] = grads[0][i];
    double err = rel_error(grads[1], cpu_grad, b.n_x);
    g_test_message("%s: max |vulkan - cpu| / max |cpu| = %.3g", c->name, err);
    g_assert_cmpfloat(err, <=, 1e-4);
    g_assert_cmpfloat(fabs(losses[0] - losses[1]), <=, 1e-5 * MAX(1.0, fabs(losses[0])));
    g_free(grads[0]);
    g_free(grads[1]);
    batch_clear(&b);
}

/* The examples' models: with input gradients off (the default, or set off explicitly, or turned
 * on and off again) the arena is the same; on, it grows by exactly the input's gradient buffer. */
static void test_off_by_default(void)
{
    static const struct {
        const char *file;
        gboolean regression;
    } examples[] = {
        {"mlp-fashion-mnist.ini", FALSE},
        {"lenet5-fashion-mnist.ini", FALSE},
        {"resnet-fashion-mnist.ini", FALSE},
        {"lstm-adding-problem.ini", TRUE},
    };
    const gint64 batch = 8;
    for (gsize e = 0; e < G_N_ELEMENTS(examples); e++) {
        g_autofree char *path =
            g_build_filename(g_getenv("LMN_SOURCE_ROOT"), "examples", examples[e].file, NULL);
        g_autoptr(GError) error = NULL;
        LmnConfig *cfg = lmn_config_new_from_file(path, &error);
        g_assert_no_error(error);
        g_assert_true(lmn_config_validate(cfg, registry, &error));
        LmnTensorInfo target = examples[e].regression
                                   ? (LmnTensorInfo){lmn_shape_make(1, 1), LMN_DTYPE_F32}
                                   : (LmnTensorInfo){lmn_shape_make(0), LMN_DTYPE_I32};
        gint64 bytes[3], unshared[3], peak[3];
        guint segs[3];
        for (int mode = 0; mode < 3; mode++) {
            /* 0: never set; 1: set off before prepare; 2: on before prepare, off after it. */
            LmnModel *m = lmn_model_new(cfg, registry, cpu, &target, &error);
            g_assert_no_error(error);
            g_assert_false(lmn_model_get_input_grad_enabled(m));
            if (mode >= 1)
                g_assert_true(lmn_model_set_input_grad(m, mode == 2, &error));
            g_assert_true(lmn_model_prepare(m, batch, &error));
            if (mode == 2) {
                gint64 on_unshared = 0;
                gint64 on = lmn_model_get_activation_bytes(m, &on_unshared, NULL, NULL);
                g_assert_cmpint(on, >, 0);
                lmn_model_set_batch(m, batch, NULL, NULL);
                LmnTensor *g = lmn_model_get_input_grad(m);
                g_assert_nonnull(g);
                gint64 numel = batch * lmn_shape_numel(lmn_model_get_input_shape(m));
                g_assert_cmpint(lmn_tensor_numel(g), ==, numel);
                g_assert_true(lmn_model_set_input_grad(m, FALSE, &error));
                g_assert_no_error(error);
                gint64 off_unshared = 0;
                lmn_model_get_activation_bytes(m, &off_unshared, NULL, NULL);
                /* Every example's input has one consumer, so no fan-out edge buffers: the
                 * difference is the gradient buffer, aligned to 64 elements, plus those of the
                 * parameter-free layers reading the input (a flatten, the input's size), whose
                 * gradients only the input's needs. */
                const gint64 one = (numel + 63) / 64 * 64 * 4;
                g_assert_cmpint(on_unshared - off_unshared, >=, one);
                g_assert_cmpint((on_unshared - off_unshared) % one, ==, 0);
            }
            bytes[mode] =
                lmn_model_get_activation_bytes(m, &unshared[mode], &peak[mode], &segs[mode]);
            lmn_model_set_batch(m, batch, NULL, NULL);
            g_assert_null(lmn_model_get_input_grad(m));
            lmn_model_free(m);
        }
        g_test_message("%s: %" G_GINT64_FORMAT " activation bytes", examples[e].file, bytes[0]);
        for (int mode = 1; mode < 3; mode++) {
            g_assert_cmpint(bytes[mode], ==, bytes[0]);
            g_assert_cmpint(unshared[mode], ==, unshared[0]);
            g_assert_cmpint(peak[mode], ==, peak[0]);
            g_assert_cmpuint(segs[mode], ==, segs[0]);
        }
        lmn_config_free(cfg);
    }
}

/* An embedding reads token ids: asking for their gradient is an error naming the layer. */
static void test_index_input_refused(void)
{
    LmnConfig *cfg = NULL;
    LmnModel *model =
        build("[model]\ninput = 4\n[layer tokens]\ntype = embedding\nnum_embeddings = 10\n"
              "embedding_dim = 3\n[layer flat]\ntype = flatten\n"
              "[layer fc]\ntype = dense\nunits = 2\n[layer loss]\ntype = "
              "softmax_cross_entropy\n" COMMON_TAIL,
              FALSE, cpu, &cfg);
    g_autoptr(GError) error = NULL;
    g_assert_false(lmn_model_set_input_grad(model, TRUE, &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH);
    g_assert_nonnull(strstr(error->message, "'tokens' (embedding)"));
    g_assert_false(lmn_model_get_input_grad_enabled(model));
    g_clear_error(&error);
    /* Off stays possible, and the model still trains as before. */
    g_assert_true(lmn_model_set_input_grad(model, FALSE, &error));
    g_assert_true(lmn_model_prepare(model, 2, &error));
    lmn_model_set_batch(model, 2, NULL, NULL);
    g_assert_null(lmn_model_get_input_grad(model));
    lmn_model_free(model);
    lmn_config_free(cfg);
}

/* Turning input gradients on for a prepared model re-plans its arena: the gradient is right. */
static void test_enable_after_prepare(void)
{
    const Case *c = &cases[3];
    LmnConfig *cfg = NULL;
    LmnModel *model = build(c->cfg, c->regression, cpu, &cfg);
    Batch b;
    batch_load(&b, c, model);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_model_prepare(model, b.n + 3, &error));
    run_forward(model, &b, b.x);
    lmn_model_backward(model, 0, 1);
    g_assert_null(lmn_model_get_input_grad(model));
    g_autofree float *got = input_grad_of(model, &b, NULL); /* enables it, then prepares */
    gsize n_ref = 0;
    g_autofree double *ref = read_doubles("/residual/grad_x", &n_ref);
    g_assert_cmpfloat(rel_error(got, ref, n_ref), <=, 1e-5);
    batch_clear(&b);
    lmn_model_free(model);
    lmn_config_free(cfg);
}

/* The backward pass skips what only the input's gradient needs: in the MLP example the flatten
 * that reads the input runs no backward and fc1 computes no input gradient unless input
 * gradients are on.  Seen through the layers' profiles (lmn_layer_set_profiling), which also
 * restart from zero when switched. */
/* examples/mlp-fashion-mnist.ini, validated: flatten, dense, relu, dense, relu, dense, loss. */
static LmnConfig *example_mlp_config(void)
{
    g_autofree char *path =
        g_build_filename(g_getenv("LMN_SOURCE_ROOT"), "examples", "mlp-fashion-mnist.ini", NULL);
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_file(path, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    return cfg;
}

static void test_backward_skips_input_side(void)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = example_mlp_config();
    LmnTensorInfo target = {lmn_shape_make(0), LMN_DTYPE_I32};
    LmnModel *m = lmn_model_new(cfg, registry, cpu, &target, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_prepare(m, 4, &error));
    LmnLayer *flat = lmn_model_get_layer(m, 0);
    g_assert_cmpstr(lmn_layer_get_type_name(flat), ==, "flatten");
    g_assert_true(lmn_layer_get_backend(flat) == cpu);
    for (int on = 0; on < 2; on++) {
        g_assert_true(lmn_model_set_input_grad(m, on, &error));
        for (guint i = 0; i < lmn_model_get_n_layers(m); i++)
            lmn_layer_set_profiling(lmn_model_get_layer(m, i), TRUE);
        LmnTensor *x, *y;
        lmn_model_set_batch(m, 4, &x, &y);
        lmn_op_fill(x, 0.5f);
        lmn_op_fill(y, 1.0f);
        lmn_model_forward(m, TRUE, 0, 1);
        lmn_model_backward(m, 0, 1);
        const LmnLayerProfile *p = lmn_layer_get_profile(flat);
        g_assert_cmpuint(p->forward_calls, ==, 1);
        g_assert_cmpuint(p->backward_calls, ==, (guint64) on);
        const LmnLayerProfile *fc1 = lmn_layer_get_profile(lmn_model_get_layer(m, 1));
        g_assert_cmpuint(fc1->backward_calls, ==, 1);
        g_assert_cmpint(fc1->forward_us, >=, 0);
        lmn_layer_set_profiling(flat, FALSE);
        g_assert_cmpuint(lmn_layer_get_profile(flat)->forward_calls, ==, 0);
        lmn_model_forward(m, TRUE, 0, 1);
        g_assert_cmpuint(lmn_layer_get_profile(flat)->forward_calls, ==, 0);
    }
    lmn_model_free(m);
    lmn_config_free(cfg);
}

/* The reference MLP (flatten, dense, relu, dense, relu, dense, loss) with fusion on and off
 * (LAMINA_FUSE, read when the model is made): with it, the relu layers never run (the dense
 * layer before each computes its forward, the one after it its backward); every layer output,
 * the loss, the parameter gradients and the input gradient are bit-identical either way. */
static void test_fusion_outputs(void)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = example_mlp_config();
    LmnTensorInfo target = {lmn_shape_make(0), LMN_DTYPE_I32};
    const gint64 batch = 5;
    const gsize n_x = (gsize) batch * 784;
    g_autofree float *x0 = g_new(float, n_x);
    for (gsize i = 0; i < n_x; i++)
        x0[i] = (float) ((i * 7919) % 1000) / 500.0f - 1.0f;
    const gint32 y0[5] = {3, 1, 4, 1, 5};
    GPtrArray *runs[2];
    for (int fuse = 0; fuse < 2; fuse++) {
        g_setenv("LAMINA_FUSE", fuse ? "1" : "0", TRUE);
        LmnModel *m = lmn_model_new(cfg, registry, cpu, &target, &error);
        g_unsetenv("LAMINA_FUSE");
        g_assert_no_error(error);
        g_assert_true(lmn_model_init_params(m, 11, &error));
        g_assert_true(lmn_model_prepare(m, 8, &error));
        g_assert_true(lmn_model_set_input_grad(m, TRUE, &error));
        for (guint i = 0; i < lmn_model_get_n_layers(m); i++)
            lmn_layer_set_profiling(lmn_model_get_layer(m, i), TRUE);
        LmnTensor *x, *y;
        lmn_model_set_batch(m, batch, &x, &y);
        g_assert_true(lmn_tensor_write(x, x0, n_x * sizeof(float), &error));
        g_assert_true(lmn_tensor_write(y, y0, sizeof y0, &error));
        lmn_model_forward(m, TRUE, 0, 1);
        lmn_model_backward(m, 0, 1);
        runs[fuse] = g_ptr_array_new_with_free_func(g_free);
        for (guint i = 0; i < lmn_model_get_n_layers(m); i++) {
            LmnLayer *l = lmn_model_get_layer(m, i);
            LmnTensor *out = lmn_model_get_layer_output(m, i);
            float *v = g_new(float, lmn_tensor_numel(out));
            g_assert_true(lmn_tensor_read(out, v, lmn_tensor_nbytes(out), &error));
            g_ptr_array_add(runs[fuse], v);
            const LmnLayerProfile *p = lmn_layer_get_profile(l);
            const gboolean relu = g_str_equal(lmn_layer_get_type_name(l), "relu");
            g_assert_cmpuint(p->forward_calls, ==, relu && fuse ? 0 : 1);
            if (relu)
                g_assert_cmpuint(p->backward_calls, ==, fuse ? 0 : 1);
        }
        LmnTensor *dx = lmn_model_get_input_grad(m);
        float *v = g_new(float, lmn_tensor_numel(dx));
        g_assert_true(lmn_tensor_read(dx, v, lmn_tensor_nbytes(dx), &error));
        g_ptr_array_add(runs[fuse], v);
        LmnTensor *grads = lmn_model_get_grads(m);
        v = g_new(float, lmn_tensor_numel(grads));
        g_assert_true(lmn_tensor_read(grads, v, lmn_tensor_nbytes(grads), &error));
        g_ptr_array_add(runs[fuse], v);
        if (fuse) {
            /* sizes, from the last model */
            for (guint i = 0; i < runs[0]->len; i++) {
                LmnTensor *t = i < lmn_model_get_n_layers(m)    ? lmn_model_get_layer_output(m, i)
                               : i == lmn_model_get_n_layers(m) ? dx
                                                                : grads;
                g_assert_cmpmem(runs[0]->pdata[i], lmn_tensor_nbytes(t), runs[1]->pdata[i],
                                lmn_tensor_nbytes(t));
            }
        }
        lmn_model_free(m);
    }
    g_ptr_array_unref(runs[0]);
    g_ptr_array_unref(runs[1]);
    lmn_config_free(cfg);
}

/* Backward fusion at the data: a relu on the input, whose backward the dense layer after it
 * computes (writing the input gradient itself) when input gradients are on, and a tanh between
 * two dense layers; and the loss's gradient, written by its training forward.  Bit-identical
 * with fusion on and off: lmn_model_backward's input and parameter gradients, then
 * lmn_model_backward_params' parameter gradients (a second backward of the same forward, which
 * finds the loss's gradient intact), then the gradients after an evaluation forward (whose
 * backward runs the loss layer's own backward). */
static void test_fusion_at_input(void)
{
    const char *text = "[model]\ninput = 6\n[layer a0]\ntype = relu\n"
                       "[layer fc1]\ntype = dense\nunits = 5\n[layer a1]\ntype = tanh\n"
                       "[layer fc2]\ntype = dense\nunits = 3\n"
                       "[layer loss]\ntype = softmax_cross_entropy\n" COMMON_TAIL;
    g_autoptr(GError) error = NULL;
    const gint64 batch = 4;
    float x0[4 * 6];
    for (guint i = 0; i < G_N_ELEMENTS(x0); i++)
        x0[i] = (float) ((i * 37) % 11) / 5.0f - 1.0f;
    const gint32 y0[4] = {2, 0, 1, 2};
    float *got[2][4];
    gsize sizes[4];
    for (int fuse = 0; fuse < 2; fuse++) {
        LmnConfig *cfg;
        g_setenv("LAMINA_FUSE", fuse ? "1" : "0", TRUE);
        LmnModel *m = build(text, FALSE, cpu, &cfg);
        g_unsetenv("LAMINA_FUSE");
        g_assert_true(lmn_model_prepare(m, batch, &error));
        g_assert_true(lmn_model_set_input_grad(m, TRUE, &error));
        LmnLayer *a0 = lmn_model_get_layer(m, 0);
        LmnLayer *loss = lmn_model_get_layer(m, lmn_model_get_n_layers(m) - 1);
        lmn_layer_set_profiling(a0, TRUE);
        lmn_layer_set_profiling(loss, TRUE);
        LmnTensor *x, *y;
        lmn_model_set_batch(m, batch, &x, &y);
        g_assert_true(lmn_tensor_write(x, x0, sizeof x0, &error));
        g_assert_true(lmn_tensor_write(y, y0, sizeof y0, &error));
        lmn_model_forward(m, TRUE, 0, 1);
        lmn_model_backward(m, 0, 1);
        g_assert_cmpuint(lmn_layer_get_profile(a0)->backward_calls, ==, fuse ? 0 : 1);
        LmnTensor *outs[3] = {lmn_model_get_input_grad(m), lmn_model_get_grads(m), NULL};
        for (guint k = 0; k < 2; k++) {
            sizes[k] = lmn_tensor_nbytes(outs[k]);
            got[fuse][k] = g_malloc(sizes[k]);
            g_assert_true(lmn_tensor_read(outs[k], got[fuse][k], sizes[k], &error));
        }
        g_assert_cmpuint(lmn_layer_get_profile(loss)->backward_calls, ==, fuse ? 0 : 1);
        lmn_model_backward_params(m, 0, 1);
        sizes[2] = sizes[3] = sizes[1];
        got[fuse][2] = g_malloc(sizes[2]);
        g_assert_true(lmn_tensor_read(outs[1], got[fuse][2], sizes[2], &error));
        lmn_model_forward(m, FALSE, 0, 1);
        lmn_model_backward(m, 0, 1);
        g_assert_cmpuint(lmn_layer_get_profile(loss)->backward_calls, ==, fuse ? 1 : 3);
        got[fuse][3] = g_malloc(sizes[3]);
        g_assert_true(lmn_tensor_read(outs[1], got[fuse][3], sizes[3], &error));
        lmn_model_free(m);
        lmn_config_free(cfg);
    }
    for (guint k = 0; k < 4; k++) {
        g_assert_cmpmem(got[0][k], sizes[k], got[1][k], sizes[k]);
        g_free(got[0][k]);
        g_free(got[1][k]);
    }
}

int main(int argc, char **argv)
{
    gboolean vulkan = argc > 1 && g_str_equal(argv[argc - 1], "--vulkan");
    if (vulkan)
        argv[--argc] = NULL;
    g_test_init(&argc, &argv, NULL);
    if (!e2e_open_backends(vulkan, &registry, &cpu, &vk))
        return 77;
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *t = g_strdup_printf("/e2e/input-grad/torch/%s", cases[i].name);
        g_autofree char *f =
            g_strdup_printf("/e2e/input-grad/finite-differences/%s", cases[i].name);
        g_autofree char *v = g_strdup_printf("/e2e/input-grad/vulkan-equals-cpu/%s", cases[i].name);
        if (vulkan) {
            g_test_add_data_func(v, &cases[i], test_vulkan);
        } else {
            if (cases[i].fixture)
                g_test_add_data_func(t, &cases[i], test_torch);
            g_test_add_data_func(f, &cases[i], test_finite_differences);
        }
    }
    if (!vulkan) {
        g_test_add_func("/e2e/input-grad/off-by-default", test_off_by_default);
        g_test_add_func("/e2e/input-grad/index-input-refused", test_index_input_refused);
        g_test_add_func("/e2e/input-grad/enable-after-prepare", test_enable_after_prepare);
        g_test_add_func("/e2e/input-grad/backward-skips-input-side",
                        test_backward_skips_input_side);
        g_test_add_func("/e2e/fusion/outputs-and-gradients", test_fusion_outputs);
        g_test_add_func("/e2e/fusion/at-the-input", test_fusion_at_input);
    }
    int rc = g_test_run();
    g_clear_pointer(&vk, lmn_backend_unref);
    lmn_backend_unref(cpu);
    lmn_registry_free(registry);
    return rc;
}
