/* Adversarial training ([train] adversarial): trajectories against PyTorch (parameters, batch-norm
 * running statistics and each step's loss; tests/fixtures/adversarial-train.h5 from
 * scripts/make-adversarial-training-fixtures.py) on the CPU and, with --vulkan, on lavapipe;
 * adversarial_weight = 1 trains bit for bit like no adversarial training; exact resume with PGD,
 * a random start, dropout and batch normalisation; and the errors for bad settings. */
#include "e2e-util.h"

#include <glib/gstdio.h>
#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

static LmnRegistry *registry;
static gboolean vulkan;
static char *tmp_dir;

static const char *backend_lines(void)
{
    return vulkan ? "backend = vulkan\ndevice = lavapipe\n" : "backend = cpu\n";
}

static float *read_dataset(hid_t loc, const char *name, gsize *n)
{
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    g_assert_cmpint(d, >=, 0);
    hid_t s = H5Dget_space(d);
    *n = (gsize) H5Sget_simple_extent_npoints(s);
    float *v = g_new(float, *n);
    g_assert_cmpint(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), >=, 0);
    H5Sclose(s);
    H5Dclose(d);
    return v;
}

static double attr_double(hid_t g, const char *name)
{
    double v = 0;
    hid_t a = H5Aopen(g, name, H5P_DEFAULT);
    g_assert_cmpint(a, >=, 0);
    g_assert_cmpint(H5Aread(a, H5T_NATIVE_DOUBLE, &v), >=, 0);
    H5Aclose(a);
    return v;
}

static char *attr_string(hid_t g, const char *name)
{
    hid_t a = H5Aopen(g, name, H5P_DEFAULT);
    g_assert_cmpint(a, >=, 0);
    hid_t type = H5Aget_type(a);
    hid_t mem = H5Tcopy(H5T_C_S1);
    H5Tset_size(mem, H5T_VARIABLE);
    H5Tset_cset(mem, H5Tget_cset(type));
    char *raw = NULL;
    g_assert_cmpint(H5Aread(a, mem, &raw), >=, 0);
    char *s = g_strdup(raw);
    H5free_memory(raw);
    H5Tclose(mem);
    H5Tclose(type);
    H5Aclose(a);
    return s;
}

static herr_t add_hp(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    (void) info;
    if (!g_str_has_prefix(name, "hp."))
        return 0;
    g_string_append_printf(data, "%s = %.17g\n", name + 3, attr_double(loc, name));
    return 0;
}

/* "inf"/"-inf" in the fixture mean no clipping. */
static char *clip_line(double lo, double hi)
{
    if (isinf(lo) && isinf(hi))
        return g_strdup("");
    return g_strdup_printf("adversarial_clip = %.17g, %.17g\n", lo, hi);
}

/* A tensor of layer @layer: parameter @name, or buffer @name. */
static LmnTensor *layer_tensor(LmnModel *model, const char *layer, const char *name)
{
    for (guint i = 0; i < lmn_model_get_n_layers(model); i++) {
        LmnLayer *l = lmn_model_get_layer(model, i);
        if (!g_str_equal(lmn_layer_get_name(l), layer))
            continue;
        for (guint p = 0; p < lmn_layer_get_n_params(l); p++)
            if (g_str_equal(lmn_layer_get_param_name(l, p), name))
                return lmn_layer_get_param(l, p);
        for (guint b = 0; b < lmn_layer_get_n_buffers(l); b++)
            if (g_str_equal(lmn_layer_get_buffer_name(l, b), name))
                return lmn_layer_get_buffer(l, b);
    }
    g_error("no tensor %s/%s", layer, name);
}

static const char *const mlp_tensors[] = {"fc1/weight", "fc1/bias", "fc2/weight", "fc2/bias", NULL};
static const char *const bn_tensors[] = {"fc1/weight", "fc1/bias",        "bn/weight",
                                         "bn/bias",    "bn/running_mean", "bn/running_var",
                                         "fc2/weight", "fc2/bias",        NULL};

/* One fixture case trained by Lamina from torch's initial weights; every parameter and buffer is
 * compared with torch's after the last step relative to how far it moved, and each step's loss
 * (one step per epoch: metrics.csv's train_loss) with torch's. */
static void test_torch(gconstpointer data)
{
    const char *name = data;
    g_autofree char *path =
        g_build_filename(g_getenv("LMN_TEST_FIXTURES"), "adversarial-train.h5", NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    gint64 n = (gint64) attr_double(f, "n"), steps = (gint64) attr_double(f, "steps");
    hid_t g = H5Gopen2(f, name, H5P_DEFAULT);
    g_assert_cmpint(g, >=, 0);
    gsize nx = 0;
    g_autofree float *x = read_dataset(g, "x", &nx);
    g_autofree gint32 *y = g_new(gint32, n);
    hid_t yd = H5Dopen2(g, "y", H5P_DEFAULT);
    g_assert_cmpint(H5Dread(yd, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y), >=, 0);
    H5Dclose(yd);
    g_autofree char *data_file = g_strdup_printf("%s/%s.h5", tmp_dir, name);
    e2e_write_split(data_file, "/train", x, (int) n, 2, y);

    g_autofree char *model_kind = attr_string(g, "model");
    g_autofree char *opt = attr_string(g, "optimizer");
    g_autofree char *method = attr_string(g, "method");
    g_autoptr(GString) hp = g_string_new(NULL);
    H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, NULL, add_hp, hp);
    g_autofree char *clip = clip_line(attr_double(g, "clip_min"), attr_double(g, "clip_max"));
    gboolean bn = g_str_equal(model_kind, "bn");
    g_autofree char *text = g_strdup_printf(
        "[model]\ninput = 2\n[layer fc1]\ntype = dense\nunits = 8\n%s[layer act1]\ntype = tanh\n"
        "[layer fc2]\ntype = dense\nunits = 4\n[layer loss]\ntype = softmax_cross_entropy\n"
        "[optimizer]\ntype = %s\n%s[train]\nepochs = %" G_GINT64_FORMAT
        "\nbatch_size = %" G_GINT64_FORMAT "\nshuffle = false\nseed = 1\n%s"
        "adversarial = %s\nadversarial_eps = %.17g\nadversarial_steps = %" G_GINT64_FORMAT
        "\nadversarial_alpha = %.17g\nadversarial_weight = %.17g\n%s[data]\ntrain = %s:/train\n",
        bn ? "[layer bn]\ntype = batch_norm\n" : "", opt, hp->str, steps, n, backend_lines(),
        method, attr_double(g, "eps"), (gint64) attr_double(g, "adv_steps"),
        attr_double(g, "alpha"), attr_double(g, "weight"), clip, data_file);
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_data(text, -1, name, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    g_assert_no_error(error);
    g_autofree char *out = g_build_filename(tmp_dir, name, NULL);
    LmnTrainerOptions opts = {.output_dir = out, .quiet = TRUE};
    LmnTrainer *t = lmn_trainer_new(cfg, registry, &opts, &error);
    g_assert_no_error(error);
    LmnModel *model = lmn_trainer_get_model(t);

    hid_t init = H5Gopen2(g, "init", H5P_DEFAULT);
    const char *const *tensors = bn ? bn_tensors : mlp_tensors;
    for (guint i = 0; tensors[i]; i++) {
        const char *full = tensors[i];
        g_auto(GStrv) parts = g_strsplit(full, "/", 2);
        gsize k = 0;
        g_autofree float *v = read_dataset(init, full, &k);
        LmnTensor *dst = layer_tensor(model, parts[0], parts[1]);
        g_assert_cmpint(k, ==, lmn_tensor_numel(dst));
        g_assert_true(lmn_tensor_write(dst, v, k * sizeof(float), NULL));
    }
    g_assert_true(lmn_trainer_run(t, &error));
    g_assert_no_error(error);

    double worst = 0;
    for (guint i = 0; tensors[i]; i++) {
        const char *full = tensors[i];
        g_auto(GStrv) parts = g_strsplit(full, "/", 2);
        g_autofree char *final_name = g_strdup_printf("final/%s", full);
        gsize k0 = 0, kt = 0;
        g_autofree float *w0 = read_dataset(init, full, &k0);
        g_autofree float *wt = read_dataset(g, final_name, &kt);
        LmnTensor *src = layer_tensor(model, parts[0], parts[1]);
        g_assert_cmpint(kt, ==, lmn_tensor_numel(src));
        g_autofree float *w = g_new(float, kt);
        g_assert_true(lmn_tensor_read(src, w, kt * sizeof(float), NULL));
        double moved = 0, err = 0;
        for (gsize e = 0; e < kt; e++) {
            moved = MAX(moved, fabs((double) wt[e] - w0[e]));
            err = MAX(err, fabs((double) w[e] - wt[e]));
        }
        /* (fc1's bias before batch normalisation has no gradient: it stays where it was) */
        if (moved < 1e-3) {
            if (err > 1e-6)
                g_error("%s %s: torch left it in place, Lamina moved it by %g", name, full, err);
            continue;
        }
        if (err / moved > 1e-4)
            g_error("%s %s: max |lamina - torch| = %g after the weights moved %g", name, full, err,
                    moved);
        worst = MAX(worst, err / moved);
    }
    g_test_message("%s: worst relative difference %.3g", name, worst);

    gsize nl = 0;
    g_autofree float *losses = NULL;
    {
        hid_t d = H5Dopen2(g, "losses", H5P_DEFAULT);
        hid_t s = H5Dget_space(d);
        nl = (gsize) H5Sget_simple_extent_npoints(s);
        losses = g_new(float, nl);
        g_assert_cmpint(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, losses), >=, 0);
        H5Sclose(s);
        H5Dclose(d);
    }
    g_autofree char *csv = g_build_filename(out, "metrics.csv", NULL);
    g_autoptr(GPtrArray) rows = e2e_csv_rows(csv);
    g_assert_cmpuint(rows->len, ==, nl);
    for (guint r = 0; r < rows->len; r++) {
        char **cols = g_ptr_array_index(rows, r);
        double l = g_ascii_strtod(cols[3], NULL);
        if (fabs(l - losses[r]) > 1e-5 * MAX(1.0, fabs(losses[r])))
            g_error("%s step %u: loss %.9g, torch %.9g", name, r + 1, l, losses[r]);
    }
    H5Gclose(init);
    H5Gclose(g);
    H5Fclose(f);
    lmn_trainer_free(t);
    lmn_config_free(cfg);
}

static char *blobs_config(const char *data_file, const char *layers, const char *train_extra)
{
    return g_strdup_printf(
        "[model]\ninput = 2\n[layer fc1]\ntype = dense\nunits = 16\n%s[layer act1]\ntype = tanh\n"
        "[layer fc2]\ntype = dense\nunits = 4\n[layer loss]\ntype = softmax_cross_entropy\n"
        "[optimizer]\ntype = adam\nlr = 0.01\n[train]\nepochs = 2\nbatch_size = 32\nseed = 5\n"
        "shuffle = true\n%s%s[data]\ntrain = %s:/train\n",
        layers, backend_lines(), train_extra, data_file);
}

static char *train_to(const char *name, const char *text, const char *extra_arg)
{
    g_autofree char *cfg_path = g_strdup_printf("%s/%s.ini", tmp_dir, name);
    g_assert_true(g_file_set_contents(cfg_path, text, -1, NULL));
    char *out = g_build_filename(tmp_dir, name, NULL);
    g_autofree char *err = NULL;
    int rc =
        e2e_run_lamina(NULL, &err, "train", cfg_path, "--output", out, "--quiet", extra_arg, NULL);
    if (rc != 0)
        g_error("%s: lamina train failed: %s", name, err);
    return out;
}

/* w = 1 keeps only the clean loss: the gradient is w * g + 0 * g', the same bits as training
 * without the attack (the model has no batch normalisation, whose statistics the attacked
 * forward would move). */
static void test_weight_one(void)
{
    g_autofree char *data_file = g_build_filename(tmp_dir, "w1-blobs.h5", NULL);
    e2e_write_blobs(data_file, "/train", 200, 3, FALSE);
    g_autofree char *plain_text = blobs_config(data_file, "", "");
    g_autofree char *adv_text =
        blobs_config(data_file, "",
                     "adversarial = pgd\nadversarial_eps = 0.3\nadversarial_steps = 2\n"
                     "adversarial_weight = 1\n");
    g_autofree char *plain = train_to("w1-plain", plain_text, NULL);
    g_autofree char *adv = train_to("w1-adv", adv_text, NULL);
    g_autofree char *a = g_build_filename(plain, "final.h5", NULL);
    g_autofree char *b = g_build_filename(adv, "final.h5", NULL);
    e2e_assert_same_floats(a, b, "/model");
    e2e_assert_same_floats(a, b, "/optimizer/state");
}

/* Two epochs in one run end bit for bit where one epoch and a resumed one end: PGD with a random
 * start, dropout and batch normalisation, shuffled batches that do not divide the split. */
static void test_resume(void)
{
    g_autofree char *data_file = g_build_filename(tmp_dir, "resume-blobs.h5", NULL);
    e2e_write_blobs(data_file, "/train", 300, 4, FALSE);
    g_autofree char *text = blobs_config(
        data_file, "[layer bn]\ntype = batch_norm\n[layer drop]\ntype = dropout\np = 0.2\n",
        "adversarial = pgd\nadversarial_eps = 0.4\nadversarial_steps = 3\n"
        "adversarial_random_start = true\nadversarial_clip = -6, 6\nadversarial_weight = 0.4\n");
    g_autofree char *straight = train_to("resume-straight", text, NULL);
    g_autofree char *split = train_to("resume-split", text, "--epochs=1");
    g_autofree char *first = g_build_filename(split, "final.h5", NULL);
    g_autofree char *first_copy = g_build_filename(tmp_dir, "resume-first.h5", NULL);
    g_assert_cmpint(g_rename(first, first_copy), ==, 0);
    g_autofree char *cfg_path = g_strdup_printf("%s/resume-split.ini", tmp_dir);
    g_autofree char *err = NULL;
    int rc = e2e_run_lamina(NULL, &err, "train", cfg_path, "--output", split, "--resume",
                            first_copy, "--quiet", NULL);
    if (rc != 0)
        g_error("resume failed: %s", err);
    g_autofree char *a = g_build_filename(straight, "final.h5", NULL);
    e2e_assert_same_floats(a, first, "/model");
    e2e_assert_same_floats(a, first, "/optimizer/state");
    /* and the attack changed the run: the same config without it ends elsewhere */
    g_autofree char *plain_text = blobs_config(
        data_file, "[layer bn]\ntype = batch_norm\n[layer drop]\ntype = dropout\np = 0.2\n", "");
    g_autofree char *plain = train_to("resume-plain", plain_text, NULL);
    g_autofree char *c = g_build_filename(plain, "final.h5", NULL);
    gsize n1 = 0, n2 = 0;
    g_autofree float *w1 = e2e_read_floats(a, "/model/fc1/weight", &n1);
    g_autofree float *w2 = e2e_read_floats(c, "/model/fc1/weight", &n2);
    g_assert_cmpuint(n1, ==, n2);
    g_assert_true(memcmp(w1, w2, n1 * sizeof(float)) != 0);
}

/* A split of 32 samples with float32 targets [32, 4] (for an mse model). */
static void write_float_targets(const char *path)
{
    float x[32 * 2], y[32 * 4];
    for (int i = 0; i < 32 * 2; i++)
        x[i] = (float) (i % 7) / 7.0f;
    for (int i = 0; i < 32 * 4; i++)
        y[i] = (float) (i % 3);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    hid_t g = H5Gcreate2(f, "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const struct {
        const char *name;
        const float *data;
        hsize_t cols;
    } sets[] = {{"x", x, 2}, {"y", y, 4}};
    for (guint k = 0; k < 2; k++) {
        hsize_t dims[2] = {32, sets[k].cols};
        hid_t s = H5Screate_simple(2, dims, NULL);
        hid_t d =
            H5Dcreate2(g, sets[k].name, H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        g_assert_cmpint(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, sets[k].data),
                        >=, 0);
        H5Dclose(d);
        H5Sclose(s);
    }
    H5Gclose(g);
    H5Fclose(f);
}

/* Bad settings are refused naming the file, the key's line and what to do. */
static void test_bad_settings(void)
{
    static const struct {
        const char *train, *loss, *where, *what;
        gboolean at_validate;
    } cases[] = {
        {"adversarial_eps = 0.1\n", NULL, "bad.ini:14 [train] adversarial_eps",
         "no effect without adversarial training", TRUE},
        {"adversarial = fgsm\n", NULL, "[train] adversarial_eps", "needs a budget > 0", TRUE},
        {"adversarial = fgsm\nadversarial_eps = -1\n", NULL, "bad.ini:15 [train]",
         "'adversarial_eps'", TRUE},
        {"adversarial = fgm\nadversarial_eps = 1\n", NULL, "bad.ini:14 [train]", "'adversarial'",
         TRUE},
        {"adversarial = pgd\nadversarial_eps = 1\nadversarial_clip = 1\n", NULL,
         "bad.ini:16 [train] adversarial_clip", "MIN, MAX", TRUE},
        {"adversarial = pgd\nadversarial_eps = 1\nadversarial_clip = 1, 0\n", NULL,
         "bad.ini:16 [train] adversarial_clip", "MIN > MAX", TRUE},
        {"adversarial = pgd\nadversarial_eps = 1\nadversarial_steps = 0\n", NULL,
         "bad.ini:16 [train]", "'adversarial_steps'", TRUE},
        {"adversarial = fgsm\nadversarial_eps = 1\nadversarial_weight = 1.5\n", NULL,
         "bad.ini:16 [train]", "'adversarial_weight'", TRUE},
        {"adversarial = fgsm\nadversarial_eps = 1\n", "mse", "bad.ini:14 [train] adversarial",
         "class labels", FALSE},
    };
    g_autofree char *data_file = g_build_filename(tmp_dir, "bad-blobs.h5", NULL);
    e2e_write_blobs(data_file, "/train", 32, 1, FALSE);
    g_autofree char *mse_file = g_build_filename(tmp_dir, "bad-mse.h5", NULL);
    write_float_targets(mse_file);
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        gboolean mse = cases[i].loss != NULL;
        g_autofree char *text = g_strdup_printf(
            "[model]\ninput = 2\n[layer fc]\ntype = dense\nunits = 4\n[layer loss]\n"
            "type = %s\n[optimizer]\ntype = sgd\nlr = 0.1\n[train]\nbackend = cpu\n"
            "batch_size = 8\n%s[data]\ntrain = %s:/train\n",
            mse ? "mse" : "softmax_cross_entropy", cases[i].train, mse ? mse_file : data_file);
        g_autoptr(GError) error = NULL;
        LmnConfig *cfg = lmn_config_new_from_data(text, -1, "bad.ini", &error);
        g_assert_no_error(error);
        gboolean ok = lmn_config_validate(cfg, registry, &error);
        if (ok) {
            if (cases[i].at_validate)
                g_error("case %u validated: %s", i, cases[i].train);
            g_autofree char *out = g_build_filename(tmp_dir, "bad", NULL);
            LmnTrainerOptions opts = {.output_dir = out, .quiet = TRUE};
            g_assert_null(lmn_trainer_new(cfg, registry, &opts, &error));
        } else if (!cases[i].at_validate) {
            g_error("case %u: %s", i, error->message);
        }
        g_assert_nonnull(error);
        if (!strstr(error->message, cases[i].where) || !strstr(error->message, cases[i].what))
            g_error("expected '%s' and '%s' in: %s", cases[i].where, cases[i].what, error->message);
        lmn_config_free(cfg);
    }
}

static const char *torch_cases[] = {"fgsm_sgd", "fgsm_clip_adam", "pgd_bn_sgd", "pgd_adam_w0"};

int main(int argc, char **argv)
{
    vulkan = argc > 1 && g_str_equal(argv[argc - 1], "--vulkan");
    if (vulkan)
        argv[--argc] = NULL;
    g_test_init(&argc, &argv, NULL);
    /* the registry (with the build's cache), and with --vulkan lavapipe or exit 77 */
    LmnBackend *cpu_backend = NULL, *vk_backend = NULL;
    if (!e2e_open_backends(vulkan, &registry, &cpu_backend, &vk_backend))
        return 77;
    lmn_backend_unref(cpu_backend);
    if (vk_backend)
        lmn_backend_unref(vk_backend);
    tmp_dir = g_dir_make_tmp("lamina-adv-train-XXXXXX", NULL);
    for (guint i = 0; i < G_N_ELEMENTS(torch_cases); i++) {
        g_autofree char *p = g_strdup_printf("/e2e/adversarial-train/torch/%s", torch_cases[i]);
        g_test_add_data_func(p, torch_cases[i], test_torch);
    }
    g_test_add_func("/e2e/adversarial-train/resume-bit-exact", test_resume);
    if (!vulkan) {
        g_test_add_func("/e2e/adversarial-train/weight-one-is-plain", test_weight_one);
        g_test_add_func("/e2e/adversarial-train/bad-settings", test_bad_settings);
    }
    int rc = g_test_run();
    e2e_remove_tree(tmp_dir);
    g_free(tmp_dir);
    lmn_registry_free(registry);
    return rc;
}
