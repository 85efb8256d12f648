/* Fine-tuning ([layer] trainable, lr_mult): per-layer learning rates against torch.optim with
 * two parameter groups (tests/fixtures/finetune.h5 from scripts/make-finetune-fixtures.py), a
 * frozen layer (torch: requires_grad = False, outside the optimizer) against torch too, frozen
 * and lr_mult = 0 layers keeping their weights and optimizer slots byte for byte (CPU, and with
 * --vulkan lavapipe), exact resume with both keys, the errors for bad settings, and the default
 * path: one update launch per step, and splitting the update into ranges changes no bit. */
#include "e2e-util.h"

#include <glib/gstdio.h>
#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

static LmnRegistry *registry;
static gboolean vulkan;
static char *tmp_dir;

static const char *const param_names[] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};

/* The backend lines of [train] for this run's backend. */
static const char *backend_lines(void)
{
    return vulkan ? "backend = vulkan\ndevice = lavapipe\n" : "backend = cpu\n";
}

static LmnTrainer *new_trainer(const char *text, const char *name, LmnConfig **cfg_out)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_data(text, -1, name, &error);
    g_assert_no_error(error);
    gboolean valid = lmn_config_validate(cfg, registry, &error);
    g_assert_no_error(error);
    g_assert_true(valid);
    g_autofree char *out = g_build_filename(tmp_dir, name, NULL);
    LmnTrainerOptions opts = {.output_dir = out, .quiet = TRUE};
    LmnTrainer *t = lmn_trainer_new(cfg, registry, &opts, &error);
    g_assert_no_error(error);
    *cfg_out = cfg;
    return t;
}

static float *read_tensor(LmnTensor *t, gsize *n)
{
    *n = (gsize) lmn_tensor_numel(t);
    float *v = g_new(float, MAX(*n, 1));
    g_assert_true(lmn_tensor_read(t, v, *n * sizeof(float), NULL));
    return v;
}

/* Slot @slot of the optimizer at parameter @p of layer @l (a view at the parameter's offset). */
static float *read_slot(LmnTrainer *t, LmnLayer *l, guint p, guint slot, gsize *n)
{
    LmnTensor *flat = lmn_model_get_params(lmn_trainer_get_model(t));
    LmnTensor *w = lmn_layer_get_param(l, p);
    gint64 off = (gint64) ((w->offset - flat->offset) / sizeof(float));
    g_autoptr(LmnTensor) v = lmn_tensor_new_view(
        lmn_optimizer_get_slot(lmn_trainer_get_optimizer(t), slot), off, &w->shape);
    return read_tensor(v, n);
}

static float *read_fixture(hid_t f, const char *name, gsize *n)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
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
    H5Aread(a, H5T_NATIVE_DOUBLE, &v);
    H5Aclose(a);
    return v;
}

static char *attr_string(hid_t g, const char *name)
{
    hid_t a = H5Aopen(g, name, H5P_DEFAULT);
    hid_t type = H5Aget_type(a);
    char *s = NULL;
    if (H5Tis_variable_str(type) > 0) {
        hid_t mem = H5Tcopy(H5T_C_S1);
        H5Tset_size(mem, H5T_VARIABLE);
        H5Tset_cset(mem, H5Tget_cset(type));
        char *raw = NULL;
        H5Aread(a, mem, &raw);
        s = g_strdup(raw);
        H5free_memory(raw);
        H5Tclose(mem);
    } else {
        gsize size = H5Tget_size(type);
        s = g_malloc0(size + 1);
        H5Aread(a, type, s);
    }
    H5Tclose(type);
    H5Aclose(a);
    return s;
}

/* The fixture's hyperparameters ("hp.KEY" attributes) as [optimizer] lines. */
static herr_t add_hp(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    if (!g_str_has_prefix(name, "hp."))
        return 0;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    double v = 0;
    H5Aread(a, H5T_NATIVE_DOUBLE, &v);
    H5Aclose(a);
    g_string_append_printf(data, "%s = %.17g\n", name + 3, v);
    return 0;
}

static const char *torch_cases[] = {"sgd_momentum", "sgd_steplr",  "adam",      "adam_steplr",
                                    "nadam",        "adam_frozen", "sgd_frozen"};

/* One case of the fixture: the same model, data and initial weights trained by Lamina, every
 * parameter and every slot compared with torch's after the last step, relative to how far the
 * parameter moved (max |lamina - torch| / max |p_T - p_0|). */
static void test_torch(gconstpointer data)
{
    const char *name = data;
    g_autofree char *path = g_build_filename(g_getenv("LMN_TEST_FIXTURES"), "finetune.h5", NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    gint64 n = (gint64) attr_double(f, "n"), steps = (gint64) attr_double(f, "steps");
    gsize nx = 0;
    g_autofree float *x = read_fixture(f, "x", &nx);
    g_autofree gint32 *y = g_new(gint32, n);
    hid_t yd = H5Dopen2(f, "y", H5P_DEFAULT);
    H5Dread(yd, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y);
    H5Dclose(yd);
    g_autofree char *data_file = g_strdup_printf("%s/%s.h5", tmp_dir, name);
    e2e_write_split(data_file, "/train", x, (int) n, 2, y);

    hid_t g = H5Gopen2(f, name, H5P_DEFAULT);
    g_autofree char *opt = attr_string(g, "optimizer");
    g_autoptr(GString) hp = g_string_new(NULL);
    H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, NULL, add_hp, hp);
    double mult = attr_double(g, "fc1_lr_mult");
    gboolean trainable = attr_double(g, "fc1_trainable") != 0;
    gint64 step_size = (gint64) attr_double(g, "step_size");
    g_autofree char *fc1_extra =
        trainable ? g_strdup_printf("lr_mult = %.17g\n", mult) : g_strdup("trainable = false\n");
    g_autofree char *schedule =
        step_size > 0
            ? g_strdup_printf("[schedule]\ntype = step\nunit = step\nstep_size = %" G_GINT64_FORMAT
                              "\ngamma = %.17g\n",
                              step_size, attr_double(g, "gamma"))
            : g_strdup("");
    g_autofree char *text = g_strdup_printf(
        "[model]\ninput = 2\n[layer fc1]\ntype = dense\nunits = 8\n%s[layer act1]\ntype = tanh\n"
        "[layer fc2]\ntype = dense\nunits = 4\n[layer loss]\ntype = softmax_cross_entropy\n"
        "[optimizer]\ntype = %s\n%s%s[train]\nepochs = %" G_GINT64_FORMAT
        "\nbatch_size = %" G_GINT64_FORMAT "\nshuffle = false\nseed = 1\nbackend = cpu\n"
        "[data]\ntrain = %s:/train\n",
        fc1_extra, opt, hp->str, schedule, steps, n, data_file);
    LmnConfig *cfg = NULL;
    g_autofree char *run = g_strdup_printf("torch-%s", name);
    LmnTrainer *t = new_trainer(text, run, &cfg);
    LmnModel *model = lmn_trainer_get_model(t);
    /* torch's initial weights (its shapes are Lamina's) */
    for (guint i = 0; i < G_N_ELEMENTS(param_names); i++) {
        LmnLayer *l = lmn_model_get_layer(model, i < 2 ? 0 : 2);
        g_autofree char *ds = g_strdup_printf("init/%s", param_names[i]);
        gsize k = 0;
        g_autofree float *w0 = read_fixture(f, ds, &k);
        LmnTensor *w = lmn_layer_get_param(l, i % 2);
        g_assert_cmpint(k, ==, lmn_tensor_numel(w));
        g_assert_true(lmn_tensor_write(w, w0, k * sizeof(float), NULL));
    }
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_trainer_run(t, &error));
    g_assert_no_error(error);
    LmnOptimizer *o = lmn_trainer_get_optimizer(t);
    g_assert_cmpint(lmn_optimizer_get_step(o), ==, steps);
    /* fc1 and fc2 learn at different rates: two launches a step; frozen fc1: only fc2's. */
    g_assert_cmpuint(lmn_optimizer_get_n_launches(o), ==, (guint64) (trainable ? 2 : 1) * steps);
    double worst = 0;
    for (guint i = 0; i < G_N_ELEMENTS(param_names); i++) {
        LmnLayer *l = lmn_model_get_layer(model, i < 2 ? 0 : 2);
        guint p = i % 2;
        gsize k = 0, k0 = 0, kt = 0;
        g_autofree char *init_name = g_strdup_printf("init/%s", param_names[i]);
        g_autofree float *w0 = read_fixture(f, init_name, &k0);
        g_autofree float *wt = read_fixture(g, param_names[i], &kt);
        g_autofree float *w = read_tensor(lmn_layer_get_param(l, p), &k);
        g_assert_cmpuint(k, ==, kt);
        double moved = 0, err = 0;
        for (gsize e = 0; e < k; e++) {
            moved = MAX(moved, fabs((double) wt[e] - w0[e]));
            err = MAX(err, fabs((double) w[e] - wt[e]));
        }
        if (!trainable && i < 2) {
            /* frozen: torch leaves them, Lamina too, byte for byte */
            g_assert_cmpmem(w, k * 4, w0, k0 * 4);
            continue;
        }
        g_assert_cmpfloat(moved, >, 1e-4);
        double rel = err / moved;
        worst = MAX(worst, rel);
        if (rel > 1e-5)
            g_error("%s: %s: max |lamina - torch| / max |p_T - p_0| = %.3g", name, param_names[i],
                    rel);
        for (guint s = 0; s < lmn_optimizer_get_n_slots(o); s++) {
            g_autofree char *sname =
                g_strdup_printf("state/%s/%s", param_names[i], lmn_optimizer_get_slot_name(o, s));
            if (H5Lexists(g, "state", H5P_DEFAULT) <= 0 || H5Lexists(g, sname, H5P_DEFAULT) <= 0)
                continue;
            gsize ks = 0, kl = 0;
            g_autofree float *st = read_fixture(g, sname, &ks);
            g_autofree float *sl = read_slot(t, l, p, s, &kl);
            double scale = 0, serr = 0;
            for (gsize e = 0; e < ks; e++) {
                scale = MAX(scale, fabs((double) st[e]));
                serr = MAX(serr, fabs((double) sl[e] - st[e]));
            }
            if (serr > 1e-5 * MAX(scale, 1e-6))
                g_error("%s: %s: max |slot - torch| = %.3g (max |torch| %.3g)", name, sname, serr,
                        scale);
            worst = MAX(worst, serr / MAX(scale, 1e-6));
        }
    }
    g_test_message("%s: max relative error vs torch %.3g", name, worst);
    lmn_trainer_free(t);
    lmn_config_free(cfg);
    H5Gclose(g);
    H5Fclose(f);
}

/* Three dense layers with Adam; @fc2_extra goes into fc2's group. */
static char *three_layer_config(const char *fc2_extra, const char *data_file, const char *train)
{
    return g_strdup_printf(
        "[model]\ninput = 2\n[layer fc1]\ntype = dense\nunits = 16\n[layer act1]\ntype = tanh\n"
        "[layer fc2]\ntype = dense\nunits = 16\n%s[layer act2]\ntype = tanh\n"
        "[layer fc3]\ntype = dense\nunits = 4\n[layer loss]\ntype = softmax_cross_entropy\n"
        "[optimizer]\ntype = adam\nlr = 0.01\n[train]\nepochs = 3\nbatch_size = 64\nseed = 5\n"
        "%s%s[data]\ntrain = %s:/train\n",
        fc2_extra, backend_lines(), train ? train : "", data_file);
}

/* fc2 frozen or at lr_mult = 0: its weights and every Adam slot end byte for byte as they
 * started, while fc1 below it and fc3 above it learn. */
static void test_frozen_identical(gconstpointer data)
{
    const char *fc2_extra = data;
    g_autofree char *data_file = g_build_filename(tmp_dir, "blobs.h5", NULL);
    if (!g_file_test(data_file, G_FILE_TEST_EXISTS))
        e2e_write_blobs(data_file, "/train", 256, 3, FALSE);
    g_autofree char *text = three_layer_config(fc2_extra, data_file, NULL);
    LmnConfig *cfg = NULL;
    g_autofree char *run = g_strdup_printf("frozen-%u", g_str_hash(fc2_extra));
    LmnTrainer *t = new_trainer(text, run, &cfg);
    LmnModel *model = lmn_trainer_get_model(t);
    LmnOptimizer *o = lmn_trainer_get_optimizer(t);
    float *before[3][2][3] = {{{0}}};
    gsize sizes[3][2] = {{0}};
    for (guint li = 0; li < 3; li++) {
        LmnLayer *l = lmn_model_get_layer(model, 2 * li);
        for (guint p = 0; p < 2; p++) {
            before[li][p][0] = read_tensor(lmn_layer_get_param(l, p), &sizes[li][p]);
            for (guint s = 0; s < 2; s++) {
                gsize k = 0;
                before[li][p][1 + s] = read_slot(t, l, p, s, &k);
            }
        }
    }
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_trainer_run(t, &error));
    g_assert_no_error(error);
    gint64 steps = lmn_optimizer_get_step(o);
    g_assert_cmpint(steps, ==, 12);
    /* fc1 and fc3 each a range: two launches a step */
    g_assert_cmpuint(lmn_optimizer_get_n_launches(o), ==, 2 * (guint64) steps);
    for (guint li = 0; li < 3; li++) {
        LmnLayer *l = lmn_model_get_layer(model, 2 * li);
        for (guint p = 0; p < 2; p++) {
            gsize k = 0;
            g_autofree float *w = read_tensor(lmn_layer_get_param(l, p), &k);
            gboolean same = memcmp(w, before[li][p][0], k * 4) == 0;
            if (li == 1)
                g_assert_true(same);
            else
                g_assert_false(same);
            for (guint s = 0; s < 2; s++) {
                g_autofree float *sl = read_slot(t, l, p, s, &k);
                if (li == 1)
                    g_assert_cmpmem(sl, k * 4, before[li][p][1 + s], k * 4);
                g_free(before[li][p][1 + s]);
            }
            g_free(before[li][p][0]);
        }
    }
    lmn_trainer_free(t);
    lmn_config_free(cfg);
}

/* A run stopped after one epoch and resumed ends bit for bit where a run of two epochs ends,
 * with fc1 at half the rate and fc2 frozen (both keys come back from the checkpoint's config). */
static void test_resume(void)
{
    g_autofree char *data_file = g_build_filename(tmp_dir, "resume-blobs.h5", NULL);
    e2e_write_blobs(data_file, "/train", 300, 4, FALSE);
    g_autofree char *text = g_strdup_printf(
        "[model]\ninput = 2\n[layer fc1]\ntype = dense\nunits = 16\nlr_mult = 0.5\n"
        "[layer act1]\ntype = tanh\n[layer fc2]\ntype = dense\nunits = 16\ntrainable = false\n"
        "[layer act2]\ntype = tanh\n[layer fc3]\ntype = dense\nunits = 4\nlr_mult = 2\n"
        "[layer loss]\ntype = softmax_cross_entropy\n[optimizer]\ntype = adam\nlr = 0.01\n"
        "[schedule]\ntype = step\nunit = step\nstep_size = 3\ngamma = 0.7\n"
        "[train]\nepochs = 2\nbatch_size = 32\nseed = 9\nshuffle = true\nclip_norm = 1\n"
        "grad_noise = 0.01\nl2 = 0.001\n%s[data]\ntrain = %s:/train\n",
        backend_lines(), data_file);
    g_autofree char *cfg_path = g_build_filename(tmp_dir, "resume.ini", NULL);
    g_assert_true(g_file_set_contents(cfg_path, text, -1, NULL));
    g_autofree char *straight = g_build_filename(tmp_dir, "straight", NULL);
    g_autofree char *split = g_build_filename(tmp_dir, "split", NULL);
    g_assert_cmpint(
        e2e_run_lamina(NULL, NULL, "train", cfg_path, "--output", straight, "--quiet", NULL), ==,
        0);
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", cfg_path, "--output", split, "--epochs",
                                   "1", "--quiet", NULL),
                    ==, 0);
    g_autofree char *first = g_build_filename(split, "final.h5", NULL);
    g_autofree char *first_copy = g_build_filename(tmp_dir, "first.h5", NULL);
    g_assert_cmpint(g_rename(first, first_copy), ==, 0);
    g_autofree char *err = NULL;
    int rc = e2e_run_lamina(NULL, &err, "train", cfg_path, "--output", split, "--resume",
                            first_copy, "--quiet", NULL);
    if (rc != 0)
        g_error("resume failed: %s", err);
    g_autofree char *a = g_build_filename(straight, "final.h5", NULL);
    e2e_assert_same_floats(a, first, "/model");
    e2e_assert_same_floats(a, first, "/optimizer/state");
    g_assert_cmpint(e2e_read_attr_int(a, "/optimizer", "step"), ==,
                    e2e_read_attr_int(first, "/optimizer", "step"));
    /* and fc2 never moved: the resumed run's fc2 equals the one-epoch checkpoint's */
    gsize n1 = 0, n2 = 0;
    g_autofree float *w1 = e2e_read_floats(first_copy, "/model/fc2/weight", &n1);
    g_autofree float *w2 = e2e_read_floats(first, "/model/fc2/weight", &n2);
    g_assert_nonnull(w1);
    g_assert_cmpmem(w1, n1 * 4, w2, n2 * 4);
}

/* Bad settings are refused naming the file, the key's line and the layer. */
static void test_bad_settings(void)
{
    static const struct {
        const char *act_extra, *fc_extra, *where, *what;
        gboolean at_validate;
    } cases[] = {
        {"trainable = false\n", "", "bad.ini:7 [layer act] trainable", "no parameters", FALSE},
        {"lr_mult = 0.5\n", "", "bad.ini:7 [layer act] lr_mult", "no parameters", FALSE},
        {"trainable = true\n", "", "bad.ini:7 [layer act] trainable", "no parameters", FALSE},
        {"", "lr_mult = -1\n", "bad.ini:5 [layer fc]", "'lr_mult'", TRUE},
        {"", "lr_mult = fast\n", "bad.ini:5 [layer fc]", "'lr_mult'", TRUE},
        {"", "trainable = maybe\n", "bad.ini:5 [layer fc]", "'trainable'", TRUE},
    };
    g_autofree char *data_file = g_build_filename(tmp_dir, "bad-blobs.h5", NULL);
    e2e_write_blobs(data_file, "/train", 32, 1, FALSE);
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *text = g_strdup_printf(
            "[model]\ninput = 2\n[layer fc]\ntype = dense\n%sunits = 4\n[layer act]\n"
            "%stype = tanh\n[layer out]\ntype = dense\nunits = 4\n[layer loss]\n"
            "type = softmax_cross_entropy\n[optimizer]\ntype = sgd\nlr = 0.1\n[train]\n"
            "backend = cpu\n[data]\ntrain = %s:/train\n",
            cases[i].fc_extra, cases[i].act_extra, data_file);
        g_autoptr(GError) error = NULL;
        LmnConfig *cfg = lmn_config_new_from_data(text, -1, "bad.ini", &error);
        g_assert_no_error(error);
        gboolean ok = lmn_config_validate(cfg, registry, &error);
        if (ok) {
            g_assert_false(cases[i].at_validate);
            g_autofree char *out = g_build_filename(tmp_dir, "bad", NULL);
            LmnTrainerOptions opts = {.output_dir = out, .quiet = TRUE};
            g_assert_null(lmn_trainer_new(cfg, registry, &opts, &error));
        } else {
            g_assert_true(cases[i].at_validate);
        }
        g_assert_nonnull(error);
        g_assert_true(error->domain == LMN_CONFIG_ERROR);
        if (!strstr(error->message, cases[i].where) || !strstr(error->message, cases[i].what))
            g_error("expected '%s' and '%s' in: %s", cases[i].where, cases[i].what, error->message);
        lmn_config_free(cfg);
    }
}

/* Without the keys a step is one launch over everything; splitting the same update into two
 * ranges at the scheduled rate (what per-layer rates do) gives the same bits. */
static void test_default_one_launch(void)
{
    g_autofree char *data_file = g_build_filename(tmp_dir, "default-blobs.h5", NULL);
    e2e_write_blobs(data_file, "/train", 256, 6, FALSE);
    float *final[2] = {NULL, NULL};
    gsize n = 0;
    for (guint split = 0; split < 2; split++) {
        g_autofree char *text = three_layer_config("", data_file, "shuffle = true\n");
        LmnConfig *cfg = NULL;
        LmnTrainer *t = new_trainer(text, split ? "default-split" : "default", &cfg);
        LmnOptimizer *o = lmn_trainer_get_optimizer(t);
        if (split) {
            LmnModel *model = lmn_trainer_get_model(t);
            LmnTensor *flat = lmn_model_get_params(model);
            LmnTensor *w = lmn_layer_get_param(lmn_model_get_layer(model, 2), 0);
            gint64 off = (gint64) ((w->offset - flat->offset) / sizeof(float));
            LmnOptimizerRange r[2] = {{0, off, 1.0}, {off, lmn_tensor_numel(flat) - off, 1.0}};
            lmn_optimizer_set_ranges(o, r, 2);
        }
        g_autoptr(GError) error = NULL;
        g_assert_true(lmn_trainer_run(t, &error));
        g_assert_no_error(error);
        gint64 steps = lmn_optimizer_get_step(o);
        g_assert_cmpint(steps, ==, 12);
        g_assert_cmpuint(lmn_optimizer_get_n_launches(o), ==, (split ? 2 : 1) * (guint64) steps);
        final[split] = read_tensor(lmn_model_get_params(lmn_trainer_get_model(t)), &n);
        gsize k = 0;
        g_autofree float *m = read_tensor(lmn_optimizer_get_slot(o, 1), &k);
        final[split] = g_realloc(final[split], (n + k) * sizeof(float));
        memcpy(final[split] + n, m, k * sizeof(float));
        n += k;
        lmn_trainer_free(t);
        lmn_config_free(cfg);
    }
    g_assert_cmpmem(final[0], n * 4, final[1], n * 4);
    g_free(final[0]);
    g_free(final[1]);
}

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
    tmp_dir = g_dir_make_tmp("lamina-finetune-XXXXXX", NULL);
    g_test_add_data_func("/e2e/finetune/frozen-byte-identical", "trainable = false\n",
                         test_frozen_identical);
    g_test_add_data_func("/e2e/finetune/lr-mult-0-byte-identical", "lr_mult = 0\n",
                         test_frozen_identical);
    g_test_add_func("/e2e/finetune/resume-bit-exact", test_resume);
    if (!vulkan) {
        for (guint i = 0; i < G_N_ELEMENTS(torch_cases); i++) {
            g_autofree char *p = g_strdup_printf("/e2e/finetune/torch/%s", torch_cases[i]);
            g_test_add_data_func(p, torch_cases[i], test_torch);
        }
        g_test_add_func("/e2e/finetune/bad-settings", test_bad_settings);
        g_test_add_func("/e2e/finetune/default-one-launch", test_default_one_launch);
    }
    int rc = g_test_run();
    e2e_remove_tree(tmp_dir);
    g_free(tmp_dir);
    lmn_registry_free(registry);
    return rc;
}
