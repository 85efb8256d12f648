/* PyTorch interop in both directions.  Weights of a PyTorch MLP saved with h5py load into the
 * equivalent Lamina model (--init semantics) and give PyTorch's logits; and a Lamina checkpoint
 * loads into PyTorch by name (scripts/checkpoint-to-torch.py) with Lamina's predictions.
 *
 * The second half runs when the program is given --torch, as its own meson test: it needs a
 * Python with torch, h5py and numpy ($LMN_TEST_PYTHON; scripts/install-deps.sh installs them), and
 * without one the program exits 77 so that meson reports the test as skipped.  (A g_test_skip
 * inside a program that then exits 0 is counted as a pass, which hid the missing half.) */
#include "e2e-util.h"

#include <glib/gstdio.h>
#include <lamina/lamina.h>
#include <math.h>
#include <string.h>
#include <sys/wait.h>

static LmnRegistry *registry;

/* Builds the model of @cfg_text on the CPU backend for class labels. */
static LmnModel *build(const char *cfg_text, const char *name, LmnConfig **cfg_out)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_data(cfg_text, -1, name, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    g_assert_no_error(error);
    g_autoptr(LmnBackend) cpu = lmn_backend_new(registry, "cpu", NULL, NULL, &error);
    g_assert_no_error(error);
    LmnTensorInfo target = {lmn_shape_make(0), LMN_DTYPE_I32};
    LmnModel *model = lmn_model_new(cfg, registry, cpu, &target, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_init_params(model, 1, &error));
    *cfg_out = cfg;
    return model;
}

/* Evaluation-mode logits of @n samples @x (the labels are placeholders). */
static float *forward(LmnModel *model, const float *x, gint64 n, gsize *n_out)
{
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_model_prepare(model, n, &error));
    LmnTensor *xt, *yt;
    lmn_model_set_batch(model, n, &xt, &yt);
    g_assert_true(lmn_tensor_write(xt, x, lmn_tensor_nbytes(xt), &error));
    lmn_op_fill(yt, 0);
    lmn_model_forward(model, FALSE, 0, 0);
    LmnTensor *logits = lmn_model_get_prediction(model);
    *n_out = (gsize) lmn_tensor_numel(logits);
    float *out = g_new(float, *n_out);
    g_assert_true(lmn_tensor_read(logits, out, lmn_tensor_nbytes(logits), &error));
    g_assert_no_error(error);
    return out;
}

static void test_torch_to_lamina(void)
{
    g_autofree char *fixture =
        g_build_filename(g_getenv("LMN_TEST_FIXTURES"), "torch-mlp-logits.h5", NULL);
    static const char *cfg_text = "[model]\ninput = 5\n"
                                  "[layer fc1]\ntype = dense\nunits = 16\n"
                                  "[layer act1]\ntype = tanh\n"
                                  "[layer fc2]\ntype = dense\nunits = 8\n"
                                  "[layer act2]\ntype = relu\n"
                                  "[layer fc3]\ntype = dense\nunits = 6\n"
                                  "[layer act3]\ntype = sigmoid\n"
                                  "[layer fc4]\ntype = dense\nunits = 3\n"
                                  "[layer loss]\ntype = softmax_cross_entropy\n"
                                  "[optimizer]\ntype = sgd\n[train]\nbackend = cpu\n"
                                  "[data]\ntrain = unused.h5:/train\n";
    LmnConfig *cfg = NULL;
    LmnModel *model = build(cfg_text, "torch-mlp.ini", &cfg);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_checkpoint_load_weights(fixture, model, &error));
    g_assert_no_error(error);
    gsize n_x = 0, n_ref = 0, n_got = 0;
    g_autofree float *x = e2e_read_floats(fixture, "/input", &n_x);
    g_autofree float *ref = e2e_read_floats(fixture, "/logits", &n_ref);
    g_assert_cmpuint(n_x, ==, 50);
    g_autofree float *got = forward(model, x, 10, &n_got);
    g_assert_cmpuint(n_got, ==, n_ref);
    for (gsize i = 0; i < n_ref; i++)
        if (fabsf(got[i] - ref[i]) > 1e-5f)
            g_error("logit %zu: PyTorch %.8g, Lamina %.8g", i, ref[i], got[i]);
    lmn_model_free(model);
    lmn_config_free(cfg);
}

static void write_batch(const char *path, const float *x, hsize_t n, hsize_t d, const float *logits,
                        hsize_t k)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t xd[2] = {n, d}, ld[2] = {n, k};
    hid_t xs = H5Screate_simple(2, xd, NULL), ls = H5Screate_simple(2, ld, NULL);
    hid_t xds = H5Dcreate2(f, "x", H5T_IEEE_F32LE, xs, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t lds = H5Dcreate2(f, "logits", H5T_IEEE_F32LE, ls, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(H5Dwrite(xds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), >=, 0);
    g_assert_cmpint(H5Dwrite(lds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, logits), >=, 0);
    H5Dclose(xds);
    H5Dclose(lds);
    H5Sclose(xs);
    H5Sclose(ls);
    H5Fclose(f);
}

static void test_lamina_to_torch(void)
{
    g_autofree char *dir = g_dir_make_tmp("lamina-interop-XXXXXX", NULL);
    g_autofree char *data = g_build_filename(dir, "blobs.h5", NULL);
    e2e_write_blobs(data, "/train", 500, 1, FALSE);
    e2e_write_blobs(data, "/test", 64, 2, FALSE);
    g_autofree char *cfg_text = g_strdup_printf(
        "[model]\ninput = 2\n[layer fc1]\ntype = dense\nunits = 16\n[layer act1]\ntype = relu\n"
        "[layer fc2]\ntype = dense\nunits = 8\n[layer act2]\ntype = sigmoid\n"
        "[layer fc3]\ntype = dense\nunits = 4\n[layer loss]\ntype = softmax_cross_entropy\n"
        "[optimizer]\ntype = sgd\nlr = 0.1\nmomentum = 0.9\n[train]\nepochs = 2\nbackend = cpu\n"
        "[data]\ntrain = %s:/train\n",
        data);
    g_autofree char *cfg_path = g_build_filename(dir, "mlp.ini", NULL);
    g_assert_true(g_file_set_contents(cfg_path, cfg_text, -1, NULL));
    g_autofree char *out = g_build_filename(dir, "run", NULL);
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", cfg_path, "-o", out, "-q", NULL), ==, 0);
    g_autofree char *ckpt = g_build_filename(out, "final.h5", NULL);

    /* Lamina's own predictions, from the checkpoint alone (its /config and /model). */
    g_autoptr(GError) error = NULL;
    g_autofree char *text = lmn_checkpoint_read_config(ckpt, &error);
    g_assert_no_error(error);
    LmnConfig *cfg = NULL;
    LmnModel *model = build(text, "final.h5:/config", &cfg);
    g_assert_true(lmn_checkpoint_load_weights(ckpt, model, &error));
    gsize n_x = 0, n_logits = 0;
    g_autofree float *x = e2e_read_floats(data, "/test/x", &n_x);
    g_autofree float *logits = forward(model, x, 64, &n_logits);
    g_autofree char *batch = g_build_filename(dir, "batch.h5", NULL);
    write_batch(batch, x, 64, 2, logits, 4);
    lmn_model_free(model);
    lmn_config_free(cfg);

    g_autofree char *script =
        g_build_filename(g_getenv("LMN_SOURCE_ROOT"), "scripts", "checkpoint-to-torch.py", NULL);
    /* main() has checked that this Python imports torch and h5py, so every failure is one. */
    const char *argv[] = {g_getenv("LMN_TEST_PYTHON"), script, ckpt, batch, NULL};
    g_autofree char *o = NULL, *e = NULL;
    int status = 0;
    g_assert_true(g_spawn_sync(NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &o, &e,
                               &status, &error));
    g_assert_no_error(error);
    int rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (rc != 0)
        g_error("checkpoint-to-torch.py failed (%d):\n%s%s", rc, o, e);
    g_assert_nonnull(strstr(o, "max |torch - lamina|"));
    e2e_remove_tree(dir);
}

/* Returns: NULL when $LMN_TEST_PYTHON imports torch, h5py and numpy, else why it cannot. */
static char *python_missing(void)
{
    const char *python = g_getenv("LMN_TEST_PYTHON");
    if (python == NULL || !g_file_test(python, G_FILE_TEST_IS_EXECUTABLE))
        return g_strdup_printf("no Python at LMN_TEST_PYTHON (%s)", python ? python : "unset");
    const char *argv[] = {python, "-c", "import torch, h5py, numpy", NULL};
    g_autofree char *e = NULL;
    int status = 0;
    if (!g_spawn_sync(NULL, (char **) argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, NULL, &e,
                      &status, NULL) ||
        !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return g_strdup_printf("%s cannot import torch, h5py and numpy (scripts/install-deps.sh "
                               "installs python3-torch, python3-h5py and python3-numpy): %s",
                               python, e != NULL ? g_strstrip(e) : "");
    return NULL;
}

int main(int argc, char **argv)
{
    gboolean torch = argc > 1 && g_str_equal(argv[argc - 1], "--torch");
    if (torch)
        argv[--argc] = NULL;
    g_test_init(&argc, &argv, NULL);
    if (torch) {
        g_autofree char *why = python_missing();
        if (why != NULL) {
            g_printerr("SKIP: the PyTorch half cannot run: %s\n", why);
            return 77;
        }
    }
    registry = lmn_registry_new();
    lmn_registry_scan(registry, NULL);
    if (torch)
        g_test_add_func("/e2e/interop/lamina-checkpoint-in-torch", test_lamina_to_torch);
    else
        g_test_add_func("/e2e/interop/torch-weights-give-torch-logits", test_torch_to_lamina);
    int rc = g_test_run();
    lmn_registry_free(registry);
    return rc;
}
