/* Several weighted losses ([layer] weight, target): a model with two heads, each loss reading its
 * own target dataset.
 *
 * Oracles: PyTorch (tests/fixtures/multi-loss.h5, recorded by scripts/make-multi-loss-fixtures.py)
 * for the loss values and every gradient of 1 * cross_entropy(fc2, y) + 0.5 * mse(fc3, z); with
 * --vulkan, the CPU backend for the same model on lavapipe (exit 77, skipped, when no such device
 * can be opened).  Through `lamina`: training with two losses resumed mid-epoch ends bit for bit
 * where an uninterrupted run ends (in memory and with x streaming from the file), metrics.csv has
 * the per-loss columns and `lamina eval --json` the per-loss values. */
#include "e2e-util.h"

#include <glib/gstdio.h>
#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

static LmnRegistry *registry;
static LmnBackend *cpu;
static LmnBackend *vk; /* only with --vulkan */

/* The twin of TwoHead in scripts/make-multi-loss-fixtures.py. */
static const char two_head_cfg[] =
    "[model]\ninput = 4\n[layer fc1]\ntype = dense\nunits = 6\n[layer act]\ntype = tanh\n"
    "[layer fc2]\ntype = dense\nunits = 3\n[layer main]\ntype = softmax_cross_entropy\n"
    "[layer fc3]\ntype = dense\nunits = 2\ninput = act\n"
    "[layer aux]\ntype = mse\ntarget = z\nweight = 0.5\n"
    "[optimizer]\ntype = sgd\n[train]\nbackend = cpu\n[data]\ntrain = unused.h5:/train\n";
#define N 5

static char *fixture_path(void)
{
    return g_build_filename(g_getenv("LMN_TEST_FIXTURES"), "multi-loss.h5", NULL);
}

static float *fixture_floats(const char *name, gsize *n_out)
{
    g_autofree char *fixture = fixture_path();
    float *v = e2e_read_floats(fixture, name, n_out);
    g_assert_nonnull(v);
    return v;
}

static double fixture_scalar(const char *name)
{
    g_autofree float *v = fixture_floats(name, NULL);
    return v[0];
}

static void write_floats(LmnTensor *t, const void *v, gsize bytes)
{
    g_autoptr(GError) error = NULL;
    g_assert_cmpint(lmn_tensor_nbytes(t), ==, bytes);
    g_assert_true(lmn_tensor_write(t, v, bytes, &error));
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

/* The two-head model on @backend with the fixture's weights, forward and backward on its batch
 * (input gradients on). */
static LmnModel *run_two_head_text(const char *text, LmnBackend *backend, LmnConfig **cfg_out)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_data(text, -1, "two-head.ini", &error);
    g_assert_no_error(error);
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    g_assert_cmpuint(lmn_config_get_n_targets(cfg), ==, 2);
    g_assert_cmpstr(lmn_config_get_target_name(cfg, 1), ==, "z");
    LmnTensorInfo targets[2] = {{lmn_shape_make(0), LMN_DTYPE_I32},
                                {lmn_shape_make(1, 2), LMN_DTYPE_F32}};
    /* One target is not enough for this config. */
    g_assert_null(lmn_model_new(cfg, registry, backend, &targets[0], &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH);
    g_clear_error(&error);
    LmnModel *model = lmn_model_new_with_targets(cfg, registry, backend, 2, targets,
                                                 LMN_MODEL_FLAGS_NONE, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_init_params(model, 1, &error));
    g_assert_true(lmn_model_set_input_grad(model, TRUE, &error));
    g_assert_true(lmn_model_prepare(model, N, &error));

    /* lmn_checkpoint_load_weights reads /model at a file's root: copy the group there. */
    g_autofree char *fixture = fixture_path();
    g_autofree char *dir = g_dir_make_tmp("lamina-multi-loss-XXXXXX", NULL);
    g_autofree char *path = g_build_filename(dir, "weights.h5", NULL);
    hid_t src = H5Fopen(fixture, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t dst = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(H5Ocopy(src, "two-head/model", dst, "model", H5P_DEFAULT, H5P_DEFAULT), >=, 0);
    H5Fclose(dst);
    H5Fclose(src);
    g_assert_true(lmn_checkpoint_load_weights(path, model, &error));
    g_assert_no_error(error);
    e2e_remove_tree(dir);

    LmnTensor *x, *y;
    lmn_model_set_batch(model, N, &x, &y);
    g_assert_true(y == lmn_model_get_target(model, 0));
    gsize n = 0;
    g_autofree float *xv = fixture_floats("/two-head/x", &n);
    write_floats(x, xv, n * sizeof(float));
    g_autofree float *yv = fixture_floats("/two-head/y", &n);
    gint32 labels[N];
    for (int i = 0; i < N; i++)
        labels[i] = (gint32) yv[i];
    write_floats(y, labels, sizeof labels);
    g_autofree float *zv = fixture_floats("/two-head/z", &n);
    write_floats(lmn_model_get_target(model, 1), zv, n * sizeof(float));
    lmn_model_forward(model, TRUE, 0, 1);
    lmn_model_backward(model, 0, 1);
    *cfg_out = cfg;
    return model;
}

static LmnModel *run_two_head(LmnBackend *backend, LmnConfig **cfg_out)
{
    return run_two_head_text(two_head_cfg, backend, cfg_out);
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

static double loss_of(LmnTensor *t)
{
    g_autofree float *v = read_tensor(t);
    return v[0];
}

static void test_torch(void)
{
    LmnConfig *cfg;
    LmnModel *model = run_two_head(cpu, &cfg);
    g_assert_cmpuint(lmn_model_get_n_losses(model), ==, 2);
    g_assert_cmpuint(lmn_model_get_n_targets(model), ==, 2);
    g_assert_cmpstr(lmn_layer_get_name(lmn_model_get_loss_layer(model, 0)), ==, "main");
    g_assert_cmpstr(lmn_layer_get_name(lmn_model_get_loss_layer(model, 1)), ==, "aux");
    g_assert_cmpfloat(lmn_model_get_loss_weight(model, 0), ==, 1.0);
    g_assert_cmpfloat(lmn_model_get_loss_weight(model, 1), ==, 0.5);
    g_assert_cmpint(lmn_model_get_loss_target(model, 0), ==, 0);
    g_assert_cmpint(lmn_model_get_loss_target(model, 1), ==, 1);
    g_assert_cmpint(lmn_model_get_loss_n_classes(model, 0), ==, 3);
    g_assert_cmpint(lmn_model_get_loss_n_classes(model, 1), ==, -1);
    /* The prediction is the first loss's input, fc2's logits. */
    g_assert_true(lmn_model_get_prediction(model) == lmn_model_get_layer_output(model, 2));

    double losses[3] = {loss_of(lmn_model_get_loss(model)),
                        loss_of(lmn_model_get_loss_value(model, 0)),
                        loss_of(lmn_model_get_loss_value(model, 1))};
    const char *names[3] = {"/two-head/loss", "/two-head/loss_main", "/two-head/loss_aux"};
    for (int k = 0; k < 3; k++) {
        double ref = fixture_scalar(names[k]);
        g_test_message("%s: lamina %.9g torch %.9g", names[k], losses[k], ref);
        g_assert_cmpfloat(fabs(losses[k] - ref), <=, 1e-5 * MAX(fabs(ref), 1));
    }

    double worst = 0;
    for (guint i = 0; i < lmn_model_get_n_layers(model); i++) {
        LmnLayer *l = lmn_model_get_layer(model, i);
        for (guint p = 0; p < lmn_layer_get_n_params(l); p++) {
            g_autofree char *name = g_strdup_printf("/two-head/grad/%s/%s", lmn_layer_get_name(l),
                                                    lmn_layer_get_param_name(l, p));
            gsize n = 0;
            g_autofree float *ref = fixture_floats(name, &n);
            g_assert_cmpint(lmn_tensor_numel(lmn_layer_get_grad(l, p)), ==, (gint64) n);
            g_autofree float *got = read_tensor(lmn_layer_get_grad(l, p));
            double err = rel_error(got, ref, n);
            g_test_message("%s: max |lamina - torch| / max |torch| = %.3g", name, err);
            worst = MAX(worst, err);
        }
    }
    gsize n = 0;
    g_autofree float *ref = fixture_floats("/two-head/grad_x", &n);
    g_autofree float *gx = read_tensor(lmn_model_get_input_grad(model));
    double err = rel_error(gx, ref, n);
    g_test_message("grad_x: max |lamina - torch| / max |torch| = %.3g", err);
    g_assert_cmpfloat(MAX(worst, err), <=, 1e-5);
    lmn_model_free(model);
    lmn_config_free(cfg);
}

/* fc1 frozen: its gradient stays 0, and every other gradient (the input's too, through fc1) is
 * still PyTorch's. */
static void test_torch_frozen(void)
{
    g_autofree char *text = NULL;
    const char *at = strstr(two_head_cfg, "[layer act]");
    text =
        g_strdup_printf("%.*strainable = false\n%s", (int) (at - two_head_cfg), two_head_cfg, at);
    LmnConfig *cfg;
    LmnModel *model = run_two_head_text(text, cpu, &cfg);
    double worst = 0;
    for (guint i = 0; i < lmn_model_get_n_layers(model); i++) {
        LmnLayer *l = lmn_model_get_layer(model, i);
        for (guint p = 0; p < lmn_layer_get_n_params(l); p++) {
            g_autofree float *got = read_tensor(lmn_layer_get_grad(l, p));
            gsize n = (gsize) lmn_tensor_numel(lmn_layer_get_grad(l, p));
            if (g_str_equal(lmn_layer_get_name(l), "fc1")) {
                for (gsize k = 0; k < n; k++)
                    g_assert_cmpfloat(got[k], ==, 0.0f);
                continue;
            }
            g_autofree char *name = g_strdup_printf("/two-head/grad/%s/%s", lmn_layer_get_name(l),
                                                    lmn_layer_get_param_name(l, p));
            g_autofree float *ref = fixture_floats(name, NULL);
            worst = MAX(worst, rel_error(got, ref, n));
        }
    }
    gsize n = 0;
    g_autofree float *ref = fixture_floats("/two-head/grad_x", &n);
    g_autofree float *gx = read_tensor(lmn_model_get_input_grad(model));
    worst = MAX(worst, rel_error(gx, ref, n));
    g_assert_cmpfloat(worst, <=, 1e-5);
    lmn_model_free(model);
    lmn_config_free(cfg);
}

/* The same model and batch on lavapipe and on the CPU. */
static void test_vulkan(void)
{
    LmnConfig *cfg[2];
    LmnModel *m[2];
    float *g[2], *gx[2];
    double loss[2][3];
    LmnBackend *backends[2] = {cpu, vk};
    for (int k = 0; k < 2; k++) {
        m[k] = run_two_head(backends[k], &cfg[k]);
        g[k] = read_tensor(lmn_model_get_grads(m[k]));
        gx[k] = read_tensor(lmn_model_get_input_grad(m[k]));
        loss[k][0] = loss_of(lmn_model_get_loss(m[k]));
        loss[k][1] = loss_of(lmn_model_get_loss_value(m[k], 0));
        loss[k][2] = loss_of(lmn_model_get_loss_value(m[k], 1));
    }
    gsize np = (gsize) lmn_tensor_numel(lmn_model_get_grads(m[0]));
    double e1 = rel_error(g[1], g[0], np), e2 = rel_error(gx[1], gx[0], N * 4);
    g_test_message("max |vulkan - cpu| / max |cpu|: parameters %.3g, input %.3g", e1, e2);
    g_assert_cmpfloat(e1, <=, 1e-4);
    g_assert_cmpfloat(e2, <=, 1e-4);
    for (int i = 0; i < 3; i++)
        g_assert_cmpfloat(fabs(loss[1][i] - loss[0][i]), <=, 1e-5 * MAX(fabs(loss[0][i]), 1));
    for (int k = 0; k < 2; k++) {
        g_free(g[k]);
        g_free(gx[k]);
        lmn_model_free(m[k]);
        lmn_config_free(cfg[k]);
    }
}

/* ---- through `lamina` ---- */

/* A main softmax head on y and an auxiliary mse head on z (x / 3) from the trunk, weight 0.3,
 * with everything that carries state across steps (shuffle, momentum, noise, a validation
 * split).  %s: the data file; %s: extra [data] lines. */
static const char train_template[] =
    "[model]\ninput = 2\n[layer fc1]\ntype = dense\nunits = 16\n[layer act1]\ntype = tanh\n"
    "[layer fc2]\ntype = dense\nunits = 4\n[layer main]\ntype = softmax_cross_entropy\n"
    "[layer head]\ntype = dense\nunits = 2\ninput = act1\n"
    "[layer aux]\ntype = mse\ntarget = z\nweight = 0.3\n"
    "[optimizer]\ntype = sgd\nlr = 0.05\nmomentum = 0.9\n"
    "[train]\nepochs = 2\nbatch_size = 32\nseed = 5\nbackend = cpu\ngrad_noise = 0.01\n"
    "[data]\ntrain = %s:/train\nvalidation_split = 0.1\n%s";

static void write_data(const char *path, gboolean chunked)
{
    e2e_write_blobs_chunked(path, "/train", 600, 1, FALSE, chunked ? 50 : 0);
    gsize n = 0;
    g_autofree float *x = e2e_read_floats(path, "/train/x", &n);
    for (gsize i = 0; i < n; i++)
        x[i] /= 3;
    e2e_write_target(path, "/train", "z", x, 600, 2);
}

static char *run_train(const char *dir, const char *cfg, const char *name, const char *a,
                       const char *b, char **out_text)
{
    g_autofree char *out = g_build_filename(dir, name, NULL);
    g_assert_cmpint(e2e_run_lamina(out_text, NULL, "train", cfg, "--output", out, a, b, NULL), ==,
                    0);
    return g_build_filename(out, "final.h5", NULL);
}

static void check_resume(gboolean streaming)
{
    g_autofree char *dir = g_dir_make_tmp("lamina-multi-loss-XXXXXX", NULL);
    g_autofree char *data = g_build_filename(dir, "data.h5", NULL);
    write_data(data, streaming);
    g_autofree char *text =
        g_strdup_printf(train_template, data, streaming ? "memory_budget_mb = 0.001\n" : "");
    g_autofree char *cfg = g_build_filename(dir, "run.ini", NULL);
    g_assert_true(g_file_set_contents(cfg, text, -1, NULL));

    g_autofree char *out_text = NULL;
    g_autofree char *straight = run_train(dir, cfg, "straight", "--epochs", "2", &out_text);
    g_test_message("%s", out_text);
    g_assert_true(!streaming || strstr(out_text, "streamed from the file"));
    /* The epoch line shows each loss next to the total, for training and validation. */
    g_assert_nonnull(strstr(out_text, " (main "));
    g_assert_nonnull(strstr(out_text, ", aux "));
    /* 540 training samples: 17 steps per epoch; stop inside the second. */
    g_autofree char *part = run_train(dir, cfg, "part", "--max-steps", "23", NULL);
    g_assert_cmpint(e2e_read_attr_int(part, "/train", "step"), ==, 23);
    g_autofree char *resumed = run_train(dir, cfg, "part", "--resume", part, NULL);
    e2e_assert_same_floats(straight, resumed, "/model");
    e2e_assert_same_floats(straight, resumed, "/optimizer/state");

    /* metrics.csv: the usual columns, then each loss for training and validation. */
    g_autofree char *csv = g_build_filename(dir, "straight", "metrics.csv", NULL);
    g_autofree char *contents = NULL;
    g_assert_true(g_file_get_contents(csv, &contents, NULL, NULL));
    g_assert_true(g_str_has_prefix(
        contents, "epoch,step,lr,train_loss,train_accuracy,val_loss,val_accuracy,seconds,"
                  "train_loss_main,train_loss_aux,val_loss_main,val_loss_aux\n"));
    g_autoptr(GPtrArray) rows = e2e_csv_rows(csv);
    g_assert_cmpuint(rows->len, ==, 2);
    char **last = g_ptr_array_index(rows, 1);
    g_assert_cmpuint(g_strv_length(last), ==, 12);
    /* The total is the weighted sum of the epoch means (no penalty in this config). */
    double total = g_ascii_strtod(last[3], NULL);
    double sum = g_ascii_strtod(last[8], NULL) + 0.3 * g_ascii_strtod(last[9], NULL);
    g_assert_cmpfloat(fabs(total - sum), <=, 1e-4 * fabs(total));
    double vtotal = g_ascii_strtod(last[5], NULL);
    double vsum = g_ascii_strtod(last[10], NULL) + 0.3 * g_ascii_strtod(last[11], NULL);
    g_assert_cmpfloat(fabs(vtotal - vsum), <=, 1e-4 * fabs(vtotal));

    /* lamina eval: "losses" by layer name; "loss" the weighted total. */
    g_autofree char *spec = g_strdup_printf("%s:/train", data);
    g_autofree char *json = NULL;
    g_assert_cmpint(e2e_run_lamina(&json, NULL, "eval", straight, "--data", spec, "--json",
                                   "--backend", "cpu", NULL),
                    ==, 0);
    g_test_message("%s", json);
    g_assert_nonnull(strstr(json, "\"losses\": {\"main\": "));
    g_assert_nonnull(strstr(json, ", \"aux\": "));
    g_assert_nonnull(strstr(json, "\"accuracy\": 0."));
    e2e_remove_tree(dir);
}

static void test_resume(void)
{
    check_resume(FALSE);
}

static void test_resume_streaming(void)
{
    check_resume(TRUE);
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
        g_test_add_func("/e2e/multi-loss/vulkan-equals-cpu", test_vulkan);
    } else {
        g_test_add_func("/e2e/multi-loss/torch", test_torch);
        g_test_add_func("/e2e/multi-loss/torch-frozen", test_torch_frozen);
        g_test_add_func("/e2e/multi-loss/train-resume", test_resume);
        g_test_add_func("/e2e/multi-loss/train-resume-streaming", test_resume_streaming);
    }
    int rc = g_test_run();
    g_clear_pointer(&vk, lmn_backend_unref);
    lmn_backend_unref(cpu);
    lmn_registry_free(registry);
    return rc;
}
