/* `lamina attack` and attack.h: FGSM and PGD adversarial examples.
 *
 * Oracle: PyTorch's adversarial inputs and accuracies for the same checkpoint and batch
 * (tests/fixtures/attack.h5, recorded by scripts/make-attack-fixtures.py: dense, batch_norm with
 * running statistics, tanh, dropout, dense, in evaluation mode).  Also: the --output split reads
 * back with `lamina eval` at the printed adversarial accuracy, the result does not depend on the
 * batch size, a random start is seeded, bounded and clipped, every bad option is refused naming
 * it, and, with --vulkan, lavapipe gives the CPU's result (exit 77, skipped, without it). */
#include "e2e-util.h"

#include <glib/gstdio.h>
#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#include <dlfcn.h>
#endif

/* The attacks of scripts/make-attack-fixtures.py's CASES, as `lamina attack` options. */
typedef struct {
    const char *name;
    const char *args[12];
} Case;

static const Case cases[] = {
    {"fgsm", {"--method", "fgsm", "--eps", "0.25", NULL}},
    {"fgsm-clip", {"--method", "fgsm", "--eps", "0.25", "--clip", "-1,1", NULL}},
    {"pgd",
     {"--method", "pgd", "--eps", "0.25", "--steps", "5", "--alpha", "0.0625", "--clip", "-1,1",
      NULL}},
    {"pgd-noclip", {"--method", "pgd", "--eps", "0.5", "--steps", "7", "--alpha", "0.125", NULL}},
};

static char *tmp_dir;
static gboolean vulkan;

static char *fixture(void)
{
    return g_build_filename(g_getenv("LMN_TEST_FIXTURES"), "attack.h5", NULL);
}

/* Runs `lamina attack FIXTURE --data FIXTURE:/clean ARGS... EXTRA...` and returns its status. */
static int run_attack(const Case *c, const char *const *extra, char **out, char **err)
{
    g_autofree char *f = fixture();
    g_autofree char *data = g_strdup_printf("%s:/clean", f);
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_ptr_array_add(argv, (gpointer) e2e_lamina_exe());
    const char *head[] = {"attack", f, "--data", data};
    for (gsize i = 0; i < G_N_ELEMENTS(head); i++)
        g_ptr_array_add(argv, (gpointer) head[i]);
    for (gsize i = 0; c && c->args[i]; i++)
        g_ptr_array_add(argv, (gpointer) c->args[i]);
    for (gsize i = 0; extra && extra[i]; i++)
        g_ptr_array_add(argv, (gpointer) extra[i]);
    g_ptr_array_add(argv, NULL);
    int status = 0;
    g_autoptr(GError) error = NULL;
    g_assert_true(g_spawn_sync(NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, out,
                               err, &status, &error));
    g_assert_no_error(error);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The value of "key": in a one-line JSON object. */
static double json_number(const char *json, const char *key)
{
    g_autofree char *pat = g_strdup_printf("\"%s\": ", key);
    const char *p = strstr(json, pat);
    g_assert_nonnull(p);
    return g_ascii_strtod(p + strlen(pat), NULL);
}

static double max_abs_diff(const float *a, const float *b, gsize n)
{
    double worst = 0;
    for (gsize i = 0; i < n; i++)
        worst = MAX(worst, fabs((double) a[i] - (double) b[i]));
    return worst;
}

/* Attacks with @backend (NULL: cpu) and @batch, writes the result to a split under tmp_dir and
 * returns x' with the printed accuracies. */
static float *attack_to_file(const Case *c, const char *backend, const char *batch, double *clean,
                             double *adv, char **split_out, gsize *n_out)
{
    g_autofree char *file =
        g_strdup_printf("%s/%s-%s-%s.h5", tmp_dir, c->name, backend ? backend : "cpu", batch);
    char *split = g_strdup_printf("%s:/adv", file);
    const char *extra[] = {"--json",
                           "--output",
                           split,
                           "--batch-size",
                           batch,
                           "--backend",
                           backend ? backend : "cpu",
                           backend ? "--device" : NULL,
                           "lavapipe",
                           NULL};
    g_autofree char *out = NULL, *err = NULL;
    int rc = run_attack(c, extra, &out, &err);
    if (rc != 0)
        g_printerr("%s%s", out, err);
    g_assert_cmpint(rc, ==, 0);
    *clean = json_number(out, "clean_accuracy");
    *adv = json_number(out, "adversarial_accuracy");
    g_assert_cmpint((gint64) json_number(out, "samples"), ==, 32);
    *split_out = split;
    /* Decoded units: plain float32 with none of the attributes a reader would apply. */
    hid_t h5 = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(h5, >=, 0);
    hid_t x = H5Dopen2(h5, "/adv/x", H5P_DEFAULT);
    g_assert_cmpint(x, >=, 0);
    hid_t type = H5Dget_type(x);
    g_assert_true(H5Tequal(type, H5T_IEEE_F32LE) > 0);
    for (gsize i = 0; i < 3; i++)
        g_assert_cmpint(H5Aexists(x, (const char *[]){"scale", "mean", "std"}[i]), ==, 0);
    H5Tclose(type);
    H5Dclose(x);
    H5Fclose(h5);
    return e2e_read_floats(file, "/adv/x", n_out);
}

static void test_torch(gconstpointer data)
{
    const Case *c = data;
    g_autofree char *f = fixture();
    g_autofree char *ref_name = g_strdup_printf("/ref/%s/x_adv", c->name);
    g_autofree char *ref_group = g_strdup_printf("/ref/%s", c->name);
    gsize n_ref = 0;
    g_autofree float *ref = e2e_read_floats(f, ref_name, &n_ref);
    double ref_clean = e2e_read_attr_double(f, ref_group, "clean_accuracy");
    double ref_adv = e2e_read_attr_double(f, ref_group, "adversarial_accuracy");
    /* 32 samples in one batch, and in batches of 7 (the last one short). */
    const char *batches[] = {"256", "7"};
    g_autofree float *first = NULL;
    for (gsize b = 0; b < G_N_ELEMENTS(batches); b++) {
        double clean = 0, adv = 0;
        gsize n = 0;
        g_autofree char *split = NULL;
        g_autofree float *got = attack_to_file(c, NULL, batches[b], &clean, &adv, &split, &n);
        g_assert_cmpuint(n, ==, n_ref);
        double err = max_abs_diff(got, ref, n);
        g_test_message("%s, batch %s: max |lamina - torch| = %.3g; clean %.4f (torch %.4f), "
                       "adversarial %.4f (torch %.4f)",
                       c->name, batches[b], err, clean, ref_clean, adv, ref_adv);
        g_assert_cmpfloat(err, <=, 1e-6);
        g_assert_cmpfloat(fabs(clean - ref_clean), <=, 1e-6);
        g_assert_cmpfloat(fabs(adv - ref_adv), <=, 1e-6);
        if (b == 0) {
            first = g_steal_pointer(&got);
            /* The written split is what `lamina eval` scores at the adversarial accuracy. */
            g_autofree char *out = NULL, *err_text = NULL;
            int rc = e2e_run_lamina(&out, &err_text, "eval", f, "--data", split, "--backend", "cpu",
                                    "--json", NULL);
            g_assert_cmpint(rc, ==, 0);
            g_assert_cmpfloat(fabs(json_number(out, "accuracy") - adv), <=, 1e-6);
        } else {
            g_assert_cmpmem(got, n * sizeof(float), first, n * sizeof(float));
        }
    }
}

/* lavapipe against the CPU backend and against torch. */
static void test_vulkan(gconstpointer data)
{
    const Case *c = data;
    double clean[2], adv[2];
    g_autofree float *x_cpu = NULL, *x_vk = NULL;
    g_autofree char *s0 = NULL, *s1 = NULL;
    gsize n0 = 0, n1 = 0;
    x_cpu = attack_to_file(c, NULL, "256", &clean[0], &adv[0], &s0, &n0);
    x_vk = attack_to_file(c, "vulkan", "256", &clean[1], &adv[1], &s1, &n1);
    g_assert_cmpuint(n0, ==, n1);
    g_autofree char *f = fixture();
    g_autofree char *ref_name = g_strdup_printf("/ref/%s/x_adv", c->name);
    gsize n_ref = 0;
    g_autofree float *ref = e2e_read_floats(f, ref_name, &n_ref);
    double err = max_abs_diff(x_vk, x_cpu, n0);
    g_test_message("%s: max |vulkan - cpu| = %.3g, max |vulkan - torch| = %.3g; adversarial "
                   "accuracy %.4f vs %.4f",
                   c->name, err, max_abs_diff(x_vk, ref, n_ref), adv[1], adv[0]);
    g_assert_cmpfloat(err, <=, 1e-6);
    g_assert_cmpfloat(clean[1], ==, clean[0]);
    g_assert_cmpfloat(adv[1], ==, adv[0]);
}

/* The fixture's checkpoint and data through the C API. */
typedef struct {
    LmnRegistry *registry;
    LmnBackend *backend;
    LmnConfig *cfg;
    LmnModel *model;
    LmnDataset *ds;
} Api;

static void api_open(Api *a)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *f = fixture();
    a->registry = lmn_registry_new();
    lmn_registry_scan(a->registry, NULL);
    a->backend = lmn_backend_new(a->registry, "cpu", NULL, NULL, &error);
    g_assert_no_error(error);
    g_autofree char *text = lmn_checkpoint_read_config(f, &error);
    g_assert_no_error(error);
    a->cfg = lmn_config_new_from_data(text, -1, "attack.h5:/config", &error);
    g_assert_no_error(error);
    g_assert_true(lmn_config_validate(a->cfg, a->registry, &error));
    LmnTensorInfo target = {lmn_shape_make(0), LMN_DTYPE_I32};
    a->model = lmn_model_new(a->cfg, a->registry, a->backend, &target, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_checkpoint_load_weights(f, a->model, &error));
    g_autofree char *spec = g_strdup_printf("%s:/clean", f);
    a->ds = lmn_dataset_open(spec, &error);
    g_assert_no_error(error);
}

static void api_close(Api *a)
{
    lmn_dataset_free(a->ds);
    lmn_model_free(a->model);
    lmn_config_free(a->cfg);
    lmn_backend_unref(a->backend);
    lmn_registry_free(a->registry);
}

static float *attack_api(Api *a, const LmnAttackOptions *o, gint64 batch, double *adv)
{
    g_autoptr(GError) error = NULL;
    gint64 n = lmn_dataset_get_length(a->ds);
    float *x = g_new(float, n * 8);
    double clean = 0;
    g_assert_true(lmn_attack_dataset(a->model, a->ds, o, batch, x, &clean, adv, &error));
    g_assert_no_error(error);
    g_assert_cmpfloat(fabs(clean - 0.25), <=, 1e-9); /* the fixture's clean accuracy */
    return x;
}

/* A random start: the same for the same seed at any batch size, another for another seed, and
 * every result within eps of its clean input and inside the clip range. */
static void test_random_start(void)
{
    Api a;
    api_open(&a);
    LmnAttackOptions o;
    lmn_attack_options_init(&o);
    o.method = LMN_ATTACK_PGD;
    o.eps = 0.25;
    o.steps = 3;
    o.clip_min = -1;
    o.clip_max = 1;
    o.random_start = TRUE;
    o.seed = 3;
    double adv[4];
    g_autofree float *r1 = attack_api(&a, &o, 32, &adv[0]);
    g_autofree float *r2 = attack_api(&a, &o, 5, &adv[1]);
    o.seed = 4;
    g_autofree float *r3 = attack_api(&a, &o, 32, &adv[2]);
    o.random_start = FALSE;
    g_autofree float *plain = attack_api(&a, &o, 32, &adv[3]);
    gsize n = (gsize) lmn_dataset_get_length(a.ds) * 8;
    g_assert_cmpmem(r1, n * sizeof(float), r2, n * sizeof(float));
    g_assert_cmpfloat(adv[0], ==, adv[1]);
    g_assert_cmpfloat(max_abs_diff(r1, r3, n), >, 0);
    g_assert_cmpfloat(max_abs_diff(r1, plain, n), >, 0);
    g_autofree float *x0 = g_new(float, n);
    g_autofree guint32 *idx = g_new(guint32, n / 8);
    for (gsize i = 0; i < n / 8; i++)
        idx[i] = (guint32) i;
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_dataset_read(a.ds, idx, n / 8, x0, NULL, &error));
    for (gsize i = 0; i < n; i++) {
        g_assert_cmpfloat(fabsf(r1[i] - x0[i]), <=, 0.25f + 1e-6f);
        g_assert_cmpfloat(fabsf(r3[i] - x0[i]), <=, 0.25f + 1e-6f);
        g_assert_cmpfloat(fabsf(r1[i]), <=, 1.0f);
    }
    g_test_message("pgd, random start: adversarial accuracy %.4f (seed 3), %.4f (seed 4), "
                   "%.4f without",
                   adv[0], adv[2], adv[3]);
    api_close(&a);
}

/* The C API's own refusals: input gradients off, options out of range. */
static void test_api_errors(void)
{
    Api a;
    api_open(&a);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_model_prepare(a.model, 2, &error));
    float x[16] = {0};
    gint32 y[2] = {0, 1};
    LmnAttackOptions o;
    lmn_attack_options_init(&o);
    o.eps = 0.1;
    g_assert_false(lmn_attack_batch(a.model, &o, x, y, 2, 0, x, NULL, NULL, &error));
    g_assert_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED);
    g_assert_nonnull(strstr(error->message, "input gradients"));
    g_clear_error(&error);
    o.eps = -1;
    g_assert_false(lmn_attack_options_check(&o, &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
    g_assert_true(g_str_has_prefix(error->message, "eps: "));
    api_close(&a);
}

/* Runs `lamina attack` with @args on @ckpt and @data (the fixture's when NULL), expecting
 * @status and @needle in its error output. */
static void expect_failure(const char *ckpt, const char *data, const char *const *args, int status,
                           const char *needle)
{
    g_autofree char *f = fixture();
    g_autofree char *clean = g_strdup_printf("%s:/clean", f);
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_ptr_array_add(argv, (gpointer) e2e_lamina_exe());
    g_ptr_array_add(argv, (gpointer) "attack");
    g_ptr_array_add(argv, (gpointer) (ckpt ? ckpt : f));
    g_ptr_array_add(argv, (gpointer) "--data");
    g_ptr_array_add(argv, (gpointer) (data ? data : clean));
    g_ptr_array_add(argv, (gpointer) "--backend");
    g_ptr_array_add(argv, (gpointer) "cpu");
    for (gsize i = 0; args[i]; i++)
        g_ptr_array_add(argv, (gpointer) args[i]);
    g_ptr_array_add(argv, NULL);
    g_autofree char *out = NULL, *err = NULL;
    int st = 0;
    g_autoptr(GError) error = NULL;
    g_assert_true(g_spawn_sync(NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out,
                               &err, &st, &error));
    g_test_message("%s", err);
    g_assert_true(WIFEXITED(st));
    g_assert_cmpint(WEXITSTATUS(st), ==, status);
    g_assert_nonnull(strstr(err, needle));
    g_assert_true(g_str_has_prefix(err, "lamina attack: "));
}

/* A checkpoint whose model regresses (mse): an attack needs class labels. */
static char *write_mse_checkpoint(void)
{
    const char *text = "[model]\ninput = 8\n[layer fc]\ntype = dense\nunits = 3\n"
                       "[layer loss]\ntype = mse\n[optimizer]\ntype = sgd\n"
                       "[data]\ntrain = unused.h5:/train\n";
    g_autoptr(GError) error = NULL;
    LmnRegistry *registry = lmn_registry_new();
    lmn_registry_scan(registry, NULL);
    LmnBackend *cpu = lmn_backend_new(registry, "cpu", NULL, NULL, &error);
    g_assert_no_error(error);
    LmnConfig *cfg = lmn_config_new_from_data(text, -1, "mse.ini", &error);
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    LmnTensorInfo target = {lmn_shape_make(1, 3), LMN_DTYPE_F32};
    LmnModel *m = lmn_model_new(cfg, registry, cpu, &target, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_init_params(m, 1, &error));
    char *path = g_build_filename(tmp_dir, "mse.h5", NULL);
    g_assert_true(lmn_checkpoint_save(path, text, m, NULL, NULL, NULL, &error));
    g_assert_no_error(error);
    lmn_model_free(m);
    lmn_config_free(cfg);
    lmn_backend_unref(cpu);
    lmn_registry_free(registry);
    return path;
}

static void test_bad_inputs(void)
{
#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
    expect_failure(NULL, NULL, ARGS("--method", "fgsm", "--eps", "-0.1"), 2, "--eps: -0.1");
    expect_failure(NULL, NULL, ARGS("--method", "fgsm", "--eps", "nan"), 2, "--eps: ");
    expect_failure(NULL, NULL, ARGS("--method", "fgsm", "--eps", "inf"), 2, "--eps: ");
    expect_failure(NULL, NULL, ARGS("--method", "fgsm", "--eps", "x"), 2, "--eps: 'x'");
    expect_failure(NULL, NULL, ARGS("--method", "pgd", "--eps", "0.1", "--steps", "0"), 2,
                   "--steps: 0");
    expect_failure(NULL, NULL, ARGS("--method", "pgd", "--eps", "0.1", "--alpha", "0"), 2,
                   "--alpha: 0");
    expect_failure(NULL, NULL, ARGS("--method", "pgd", "--eps", "0.1", "--alpha", "-1"), 2,
                   "--alpha: -1");
    expect_failure(NULL, NULL, ARGS("--method", "pgd", "--eps", "0.1", "--alpha", "nan"), 2,
                   "--alpha: 'nan'");
    expect_failure(NULL, NULL, ARGS("--method", "fgsm", "--eps", "0.1", "--clip", "1,0"), 2,
                   "--clip: the minimum 1 is not <= the maximum 0");
    expect_failure(NULL, NULL, ARGS("--method", "fgsm", "--eps", "0.1", "--clip", "0"), 2,
                   "--clip: '0'");
    expect_failure(NULL, NULL, ARGS("--method", "fgsm", "--eps", "0.1", "--steps", "3"), 2,
                   "--steps applies to --method pgd only");
    expect_failure(NULL, NULL, ARGS("--method", "cw", "--eps", "0.1"), 2, "--method: 'cw'");
    expect_failure(NULL, NULL, ARGS("--eps", "0.1"), 2, "--method");
    /* A model without class labels, and a split that does not fit the model. */
    g_autofree char *mse = write_mse_checkpoint();
    expect_failure(mse, NULL, ARGS("--method", "fgsm", "--eps", "0.1"), 1, "class labels");
    g_autofree char *narrow = g_build_filename(tmp_dir, "narrow.h5", NULL);
    float x[10] = {0};
    gint32 y[2] = {0, 1};
    e2e_write_split(narrow, "/test", x, 2, 5, y);
    g_autofree char *narrow_spec = g_strdup_printf("%s:/test", narrow);
    expect_failure(NULL, narrow_spec, ARGS("--method", "fgsm", "--eps", "0.1"), 1, narrow);
    /* An existing --output split is kept unless --overwrite. */
    g_autofree char *taken = g_strdup_printf("%s:/test", narrow);
    expect_failure(NULL, NULL, ARGS("--method", "fgsm", "--eps", "0.1", "--output", taken), 1,
                   "already exists");
#undef ARGS
}

int main(int argc, char **argv)
{
    vulkan = argc > 1 && g_str_equal(argv[argc - 1], "--vulkan");
    if (vulkan)
        argv[--argc] = NULL;
    g_test_init(&argc, &argv, NULL);
    const char *build_dir = g_getenv("LMN_TEST_BUILD_DIR");
    g_autofree char *cache_home =
        g_build_filename(build_dir != NULL ? build_dir : g_get_tmp_dir(), "xdg-cache-home", NULL);
    g_setenv("XDG_CACHE_HOME", cache_home, TRUE);
    if (vulkan) {
#if defined(__SANITIZE_ADDRESS__)
        /* lavapipe keeps a process-wide allocation that becomes unreachable when the loader
         * unloads it, which LeakSanitizer would report (see tests/vulkan/vk-test-setup.h). */
        dlopen("libvulkan_lvp.so", RTLD_NOW | RTLD_NODELETE);
#endif
        g_autoptr(GError) error = NULL;
        LmnRegistry *registry = lmn_registry_new();
        lmn_registry_scan(registry, NULL);
        LmnBackend *vk = lmn_backend_new(registry, "vulkan", NULL, "lavapipe", &error);
        if (vk == NULL) {
            g_printerr("SKIP: no Vulkan device 'lavapipe': %s\n", error->message);
            lmn_registry_free(registry);
            return 77;
        }
        lmn_backend_unref(vk);
        lmn_registry_free(registry);
    }
    g_autoptr(GError) error = NULL;
    tmp_dir = g_dir_make_tmp("lamina-attack-XXXXXX", &error);
    g_assert_no_error(error);
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *t = g_strdup_printf("/e2e/attack/%s/%s",
                                             vulkan ? "vulkan-equals-cpu" : "torch", cases[i].name);
        g_test_add_data_func(t, &cases[i], vulkan ? test_vulkan : test_torch);
    }
    if (!vulkan) {
        g_test_add_func("/e2e/attack/random-start", test_random_start);
        g_test_add_func("/e2e/attack/api-errors", test_api_errors);
        g_test_add_func("/e2e/attack/bad-inputs", test_bad_inputs);
    }
    int rc = g_test_run();
    e2e_remove_tree(tmp_dir);
    g_free(tmp_dir);
    return rc;
}
