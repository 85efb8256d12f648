/* Loss-free models and backward from an output gradient (lmn_model_new_full with
 * LMN_MODEL_ALLOW_NO_LOSS, lmn_model_backward_from, lmn_model_zero_grads).
 *
 * Oracles: PyTorch (tests/fixtures/output-grads.h5, recorded by
 * scripts/make-output-grad-fixtures.py) for a loss-free MLP backward from a given output gradient
 * and for a generator trained through a discriminator with a loss (two models on one backend,
 * the discriminator's input gradient fed as the generator's output gradient); the sum of single
 * calls for accumulation; with --vulkan, the CPU backend for the same models on lavapipe (exit
 * 77, skipped, when no such device can be opened).  Also: `lamina train` and lmn_model_new still
 * refuse a model that does not end in a loss, with the same message. */
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

/* The twins of Gen and Disc in scripts/make-output-grad-fixtures.py. */
static const char gen_cfg[] =
    "[model]\ninput = 4\n[layer fc1]\ntype = dense\nunits = 6\n"
    "[layer act]\ntype = tanh\n[layer fc2]\ntype = dense\nunits = 3\n" COMMON_TAIL;
static const char disc_cfg[] = "[model]\ninput = 3\n[layer d1]\ntype = dense\nunits = 5\n"
                               "[layer act]\ntype = tanh\n[layer d2]\ntype = dense\nunits = 2\n"
                               "[layer loss]\ntype = mse\n" COMMON_TAIL;
#define N 5

static char *fixture_path(void)
{
    return g_build_filename(g_getenv("LMN_TEST_FIXTURES"), "output-grads.h5", NULL);
}

static LmnConfig *parse(const char *text)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_data(text, -1, "output-grad.ini", &error);
    g_assert_no_error(error);
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    g_assert_no_error(error);
    return cfg;
}

/* Builds @cfg on @backend (without targets when @target is NULL), prepared for N samples with
 * input gradients on, and loads the fixture's /@group/@weights into it. */
static LmnModel *build(const LmnConfig *cfg, const LmnTensorInfo *target, LmnBackend *backend,
                       const char *group, const char *weights)
{
    g_autoptr(GError) error = NULL;
    LmnModel *model =
        lmn_model_new_full(cfg, registry, backend, target, LMN_MODEL_ALLOW_NO_LOSS, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_init_params(model, 1, &error));
    g_assert_true(lmn_model_set_input_grad(model, TRUE, &error));
    g_assert_true(lmn_model_prepare(model, N, &error));
    g_assert_no_error(error);

    /* lmn_checkpoint_load_weights reads /model at a file's root: copy the group there. */
    g_autofree char *fixture = fixture_path();
    g_autofree char *dir = g_dir_make_tmp("lamina-output-grad-XXXXXX", NULL);
    g_assert_nonnull(dir);
    g_autofree char *path = g_build_filename(dir, "weights.h5", NULL);
    g_autofree char *src_name = g_strdup_printf("%s/%s", group, weights);
    hid_t src = H5Fopen(fixture, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(src, >=, 0);
    hid_t dst = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(dst, >=, 0);
    g_assert_cmpint(H5Ocopy(src, src_name, dst, "model", H5P_DEFAULT, H5P_DEFAULT), >=, 0);
    H5Fclose(dst);
    H5Fclose(src);
    g_assert_true(lmn_checkpoint_load_weights(path, model, &error));
    g_assert_no_error(error);
    e2e_remove_tree(dir);
    return model;
}

static float *fixture_floats(const char *name, gsize *n_out)
{
    g_autofree char *fixture = fixture_path();
    float *v = e2e_read_floats(fixture, name, n_out);
    g_assert_nonnull(v);
    return v;
}

static void write_floats(LmnTensor *t, const float *v, gsize n)
{
    g_autoptr(GError) error = NULL;
    g_assert_cmpint(lmn_tensor_numel(t), ==, (gint64) n);
    g_assert_true(lmn_tensor_write(t, v, n * sizeof(float), &error));
    g_assert_no_error(error);
}

static float *read_tensor(LmnTensor *t)
{
    g_autoptr(GError) error = NULL;
    float *v = g_new(float, MAX(lmn_tensor_numel(t), 1));
    g_assert_true(lmn_tensor_read(t, v, lmn_tensor_nbytes(t), &error));
    g_assert_no_error(error);
    return v;
}

/* A tensor of the model's output shape on its backend holding @v. */
static LmnTensor *output_grad_tensor(LmnModel *model, const float *v)
{
    g_autoptr(GError) error = NULL;
    LmnTensor *out = lmn_model_get_output(model);
    LmnTensor *t = lmn_tensor_new(lmn_model_get_backend(model), LMN_DTYPE_F32, &out->shape, &error);
    g_assert_no_error(error);
    write_floats(t, v, (gsize) lmn_tensor_numel(out));
    return t;
}

/* Forward on the fixture's /@group/x; the model has no targets. */
static void forward_gen(LmnModel *gen, const char *group)
{
    LmnTensor *x, *y = (LmnTensor *) 1;
    lmn_model_set_batch(gen, N, &x, &y);
    g_assert_null(y);
    gsize n = 0;
    g_autofree char *name = g_strdup_printf("/%s/x", group);
    g_autofree float *xv = fixture_floats(name, &n);
    write_floats(x, xv, n);
    lmn_model_forward(gen, TRUE, 0, 1);
}

/* max |a - b| / max(max |b|, tiny): the error relative to the gradient's scale. */
static double rel_error(const float *a, const float *b, gsize n)
{
    double worst = 0, scale = 0;
    for (gsize i = 0; i < n; i++) {
        worst = MAX(worst, fabs((double) a[i] - b[i]));
        scale = MAX(scale, fabs((double) b[i]));
    }
    return worst / MAX(scale, 1e-12);
}

/* Every parameter gradient and the input gradient of @model against /@group/grad and
 * /@group/grad_x; returns the worst relative error. */
static double check_against_torch(LmnModel *model, const char *group)
{
    double worst = 0;
    for (guint i = 0; i < lmn_model_get_n_layers(model); i++) {
        LmnLayer *l = lmn_model_get_layer(model, i);
        for (guint p = 0; p < lmn_layer_get_n_params(l); p++) {
            g_autofree char *name = g_strdup_printf("/%s/grad/%s/%s", group, lmn_layer_get_name(l),
                                                    lmn_layer_get_param_name(l, p));
            gsize n = 0;
            g_autofree float *ref = fixture_floats(name, &n);
            LmnTensor *g = lmn_layer_get_grad(l, p);
            g_assert_cmpint(lmn_tensor_numel(g), ==, (gint64) n);
            g_autofree float *got = read_tensor(g);
            double err = rel_error(got, ref, n);
            g_test_message("%s %s: max |lamina - torch| / max |torch| = %.3g", group, name, err);
            worst = MAX(worst, err);
        }
    }
    g_autofree char *name = g_strdup_printf("/%s/grad_x", group);
    gsize n = 0;
    g_autofree float *ref = fixture_floats(name, &n);
    LmnTensor *gx = lmn_model_get_input_grad(model);
    g_assert_cmpint(lmn_tensor_numel(gx), ==, (gint64) n);
    g_autofree float *got = read_tensor(gx);
    double err = rel_error(got, ref, n);
    g_test_message("%s grad_x: max |lamina - torch| / max |torch| = %.3g", group, err);
    return MAX(worst, err);
}

/* The loss-free MLP backward from the fixture's output gradient; Returns: its gradients. */
static float *mlp_grads(LmnBackend *backend, LmnModel **model_out, LmnConfig **cfg_out)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = parse(gen_cfg);
    LmnModel *gen = build(cfg, NULL, backend, "mlp", "model");
    g_assert_false(lmn_model_has_loss(gen));
    g_assert_null(lmn_model_get_loss(gen));
    g_assert_null(lmn_model_get_target_info(gen));
    forward_gen(gen, "mlp");
    gsize n = 0;
    g_autofree float *gout = fixture_floats("/mlp/gout", &n);
    g_autoptr(LmnTensor) g = output_grad_tensor(gen, gout);
    lmn_model_zero_grads(gen);
    g_assert_true(lmn_model_backward_from(gen, g, 0, 1, &error));
    g_assert_no_error(error);
    *model_out = gen;
    *cfg_out = cfg;
    return read_tensor(lmn_model_get_grads(gen));
}

static void test_mlp_torch(void)
{
    LmnModel *gen;
    LmnConfig *cfg;
    g_autofree float *unused = mlp_grads(cpu, &gen, &cfg);
    g_assert_cmpfloat(check_against_torch(gen, "mlp"), <=, 1e-5);
    lmn_model_free(gen);
    lmn_config_free(cfg);
}

/* G then D on one backend: D's input gradient is G's output gradient.  Returns G's gradients
 * and, via @gx_out, its input gradient; checks them against PyTorch's when @torch. */
static float *gan_grads(LmnBackend *backend, gboolean torch, float **gx_out)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *gcfg = parse(gen_cfg), *dcfg = parse(disc_cfg);
    LmnTensorInfo target = {lmn_shape_make(1, 2), LMN_DTYPE_F32};
    LmnModel *gen = build(gcfg, NULL, backend, "gan", "model");
    LmnModel *disc = build(dcfg, &target, backend, "gan", "dmodel");
    g_assert_true(lmn_model_has_loss(disc));

    forward_gen(gen, "gan");
    LmnTensor *dx, *dy;
    lmn_model_set_batch(disc, N, &dx, &dy);
    g_assert_nonnull(dy);
    lmn_op_copy(dx, lmn_model_get_output(gen));
    gsize n = 0;
    g_autofree float *y = fixture_floats("/gan/y", &n);
    write_floats(dy, y, n);
    lmn_model_forward(disc, TRUE, 0, 1);
    lmn_model_backward(disc, 0, 1);

    lmn_model_zero_grads(gen);
    g_assert_true(lmn_model_backward_from(gen, lmn_model_get_input_grad(disc), 0, 1, &error));
    g_assert_no_error(error);
    if (torch)
        g_assert_cmpfloat(check_against_torch(gen, "gan"), <=, 1e-5);
    float *grads = read_tensor(lmn_model_get_grads(gen));
    *gx_out = read_tensor(lmn_model_get_input_grad(gen));
    lmn_model_free(disc);
    lmn_model_free(gen);
    lmn_config_free(dcfg);
    lmn_config_free(gcfg);
    return grads;
}

static void test_gan_torch(void)
{
    g_autofree float *gx = NULL;
    g_autofree float *unused = gan_grads(cpu, TRUE, &gx);
}

/* zero_grads, then two calls add up: the sum of the gradients of each call alone. */
static void test_accumulate(void)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = parse(gen_cfg);
    LmnModel *gen = build(cfg, NULL, cpu, "mlp", "model");
    forward_gen(gen, "mlp");
    gsize n = 0;
    g_autofree float *g1v = fixture_floats("/mlp/gout", &n);
    g_autofree float *g2v = g_new(float, n);
    for (gsize i = 0; i < n; i++)
        g2v[i] = 0.5f - g1v[n - 1 - i];
    g_autoptr(LmnTensor) g1 = output_grad_tensor(gen, g1v);
    g_autoptr(LmnTensor) g2 = output_grad_tensor(gen, g2v);
    LmnTensor *grads = lmn_model_get_grads(gen);
    gsize np = (gsize) lmn_tensor_numel(grads);
    float *single[2];
    LmnTensor *gs[2] = {g1, g2};
    for (int k = 0; k < 2; k++) {
        lmn_model_zero_grads(gen);
        g_assert_true(lmn_model_backward_from(gen, gs[k], 0, 1, &error));
        single[k] = read_tensor(grads);
    }
    lmn_model_zero_grads(gen);
    g_autofree float *zero = read_tensor(grads);
    for (gsize i = 0; i < np; i++)
        g_assert_cmpfloat(zero[i], ==, 0.0f);
    g_assert_true(lmn_model_backward_from(gen, g1, 0, 1, &error));
    g_assert_true(lmn_model_backward_from(gen, g2, 0, 1, &error));
    g_assert_no_error(error);
    g_autofree float *both = read_tensor(grads);
    g_autofree float *sum = g_new(float, np);
    for (gsize i = 0; i < np; i++)
        sum[i] = single[0][i] + single[1][i];
    double err = rel_error(both, sum, np);
    g_test_message("accumulated vs sum of single calls: %.3g", err);
    g_assert_cmpfloat(err, <=, 1e-6);
    /* The input gradient is that of the last call alone. */
    g_autofree float *gx = read_tensor(lmn_model_get_input_grad(gen));
    lmn_model_zero_grads(gen);
    g_assert_true(lmn_model_backward_from(gen, g2, 0, 1, &error));
    g_autofree float *gx2 = read_tensor(lmn_model_get_input_grad(gen));
    g_assert_cmpmem(gx, n / 3 * 4 * sizeof(float), gx2, n / 3 * 4 * sizeof(float));
    g_free(single[0]);
    g_free(single[1]);
    lmn_model_free(gen);
    lmn_config_free(cfg);
}

/* Wrong uses: a gradient of the wrong shape, backward_from on a model with a loss, a loss-free
 * config without the flag. */
static void test_refusals(void)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = parse(gen_cfg);
    LmnTensorInfo labels = {lmn_shape_make(0), LMN_DTYPE_I32};
    g_assert_null(lmn_model_new(cfg, registry, cpu, &labels, &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH);
    g_assert_nonnull(strstr(error->message, "the last layer must be a loss"));
    g_clear_error(&error);

    LmnModel *gen = build(cfg, NULL, cpu, "mlp", "model");
    forward_gen(gen, "mlp");
    LmnShape wrong = lmn_shape_make(2, N, 4);
    g_autoptr(LmnTensor) t = lmn_tensor_new(cpu, LMN_DTYPE_F32, &wrong, &error);
    g_assert_false(lmn_model_backward_from(gen, t, 0, 1, &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH);
    g_test_message("%s", error->message);
    g_clear_error(&error);
    lmn_model_free(gen);
    lmn_config_free(cfg);

    LmnConfig *dcfg = parse(disc_cfg);
    LmnTensorInfo target = {lmn_shape_make(1, 2), LMN_DTYPE_F32};
    LmnModel *disc = build(dcfg, &target, cpu, "gan", "dmodel");
    g_assert_null(lmn_model_new_full(dcfg, registry, cpu, NULL, LMN_MODEL_ALLOW_NO_LOSS, &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH);
    g_clear_error(&error);
    LmnTensor *x;
    lmn_model_set_batch(disc, N, &x, NULL);
    lmn_model_forward(disc, TRUE, 0, 1);
    g_assert_false(lmn_model_backward_from(disc, lmn_model_get_prediction(disc), 0, 1, &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH);
    lmn_model_free(disc);
    lmn_config_free(dcfg);
}

/* `lamina train` keeps requiring a loss, with the message it always gave. */
static void test_train_refuses(void)
{
    g_autofree char *dir = g_dir_make_tmp("lamina-output-grad-XXXXXX", NULL);
    g_autofree char *data = g_build_filename(dir, "blobs.h5", NULL);
    e2e_write_blobs(data, "train", 16, 1, FALSE);
    g_autofree char *cfg = g_build_filename(dir, "run.ini", NULL);
    g_autofree char *text = g_strdup_printf(
        "[model]\ninput = 2\n[layer fc1]\ntype = dense\nunits = 6\n[layer act]\ntype = tanh\n"
        "[layer fc2]\ntype = dense\nunits = 4\n[optimizer]\ntype = sgd\n[train]\nbackend = cpu\n"
        "epochs = 1\nbatch_size = 8\n[data]\ntrain = %s:/train\n",
        data);
    g_assert_true(g_file_set_contents(cfg, text, -1, NULL));
    g_autofree char *out = g_build_filename(dir, "out", NULL);
    g_autofree char *err = NULL;
    int rc = e2e_run_lamina(NULL, &err, "train", cfg, "--output", out, NULL);
    g_test_message("%s", err);
    g_assert_cmpint(rc, !=, 0);
    g_assert_nonnull(strstr(err, "[layer fc2]"));
    g_assert_nonnull(strstr(err, "the last layer must be a loss (e.g. type = "
                                 "softmax_cross_entropy)"));
    e2e_remove_tree(dir);
}

/* The same models and batches on lavapipe and on the CPU. */
static void test_vulkan(void)
{
    LmnModel *m[2];
    LmnConfig *c[2];
    float *g[2], *gan[2], *gx[2];
    LmnBackend *backends[2] = {cpu, vk};
    for (int k = 0; k < 2; k++) {
        g[k] = mlp_grads(backends[k], &m[k], &c[k]);
        gan[k] = gan_grads(backends[k], FALSE, &gx[k]);
    }
    gsize np = (gsize) lmn_tensor_numel(lmn_model_get_grads(m[0]));
    double e1 = rel_error(g[1], g[0], np);
    double e2 = rel_error(gan[1], gan[0], np);
    double e3 = rel_error(gx[1], gx[0], N * 4);
    g_test_message("max |vulkan - cpu| / max |cpu|: mlp %.3g, gan %.3g, gan input %.3g", e1, e2,
                   e3);
    g_assert_cmpfloat(e1, <=, 1e-4);
    g_assert_cmpfloat(e2, <=, 1e-4);
    g_assert_cmpfloat(e3, <=, 1e-4);
    for (int k = 0; k < 2; k++) {
        g_free(g[k]);
        g_free(gan[k]);
        g_free(gx[k]);
        lmn_model_free(m[k]);
        lmn_config_free(c[k]);
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
    if (vulkan) {
        g_test_add_func("/e2e/output-grad/vulkan-equals-cpu", test_vulkan);
    } else {
        g_test_add_func("/e2e/output-grad/torch/mlp", test_mlp_torch);
        g_test_add_func("/e2e/output-grad/torch/gan", test_gan_torch);
        g_test_add_func("/e2e/output-grad/accumulate", test_accumulate);
        g_test_add_func("/e2e/output-grad/refusals", test_refusals);
        g_test_add_func("/e2e/output-grad/train-refuses-loss-free", test_train_refuses);
    }
    int rc = g_test_run();
    g_clear_pointer(&vk, lmn_backend_unref);
    lmn_backend_unref(cpu);
    lmn_registry_free(registry);
    return rc;
}
