/* Swapping optimizers the way a practitioner does, through the public API only: an SGD config
 * (momentum, nesterov, dampening, weight_decay) gets lmn_config_replace_optimizer(NAME), as
 * `--optimizer NAME` does, and `--set optimizer.lr=...`; the keys NAME does not take are dropped
 * with one notice each (and the ones it takes are kept), the config validates, and a small MLP
 * trained on a fixed regression batch with that optimizer lowers its loss.  Then
 * `lamina plugins` lists every optimizer and `lamina plugins describe NAME` prints every
 * hyperparameter with its default and doc (the CLI binary comes from LMN_TEST_LAMINA).
 */
#include <lamina/lamina.h>

#include <math.h>
#include <string.h>

static LmnRegistry *registry;

/* Each optimizer, the lr to train with, and which of the SGD config's keys it keeps. */
typedef struct {
    const char *name;
    const char *lr;
    gboolean keeps_momentum;
    gboolean keeps_weight_decay;
    gboolean keeps_nesterov; /* rmsprop has a nesterov option too */
} SwapCase;

static const SwapCase cases[] = {
    {"sgd", "0.02", TRUE, TRUE, TRUE},      {"adagrad", "0.05", FALSE, TRUE},
    {"rmsprop", "0.002", TRUE, TRUE, TRUE}, {"adam", "0.01", FALSE, TRUE},
    {"adamw", "0.01", FALSE, TRUE},         {"nadam", "0.01", FALSE, TRUE},
    {"radam", "0.01", FALSE, TRUE},         {"adamax", "0.02", FALSE, TRUE},
    {"adadelta", "1.0", FALSE, TRUE},
};

static const char config_text[] = "[model]\n"
                                  "input = 8\n"
                                  "[layer fc1]\n"
                                  "type = dense\n"
                                  "units = 16\n"
                                  "[layer act]\n"
                                  "type = tanh\n"
                                  "[layer fc2]\n"
                                  "type = dense\n"
                                  "units = 1\n"
                                  "[layer loss]\n"
                                  "type = mse\n"
                                  "[optimizer]\n"
                                  "type = sgd\n"
                                  "lr = 0.1\n"
                                  "momentum = 0.9\n"
                                  "nesterov = true\n"
                                  "dampening = 0\n"
                                  "weight_decay = 0.0001\n"
                                  "[train]\n"
                                  "batch_size = 32\n"
                                  "[data]\n"
                                  "train = unused.h5:/train\n";

static double read_loss(LmnModel *model)
{
    g_autoptr(GError) error = NULL;
    float loss = 0.0f;
    g_assert_true(lmn_tensor_read(lmn_model_get_loss(model), &loss, sizeof loss, &error));
    g_assert_no_error(error);
    return loss;
}

/* Runs in a subprocess so the parent can check the notices on stderr. */
static void swap_and_train(const SwapCase *c)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_data(config_text, -1, "swap.ini", &error);
    g_assert_no_error(error);
    g_assert_true(lmn_config_replace_optimizer(cfg, registry, c->name, &error));
    g_assert_no_error(error);
    g_autofree char *set_lr = g_strdup_printf("optimizer.lr=%s", c->lr);
    g_assert_true(lmn_config_set(cfg, set_lr, &error));
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    g_assert_no_error(error);
    g_assert_cmpstr(lmn_config_get_optimizer_type(cfg), ==, c->name);
    const LmnParams *hyper = lmn_config_get_optimizer_params(cfg);
    g_assert_cmpfloat(lmn_params_get_float(hyper, "lr"), ==, g_ascii_strtod(c->lr, NULL));
    if (c->keeps_momentum)
        g_assert_cmpfloat(lmn_params_get_float(hyper, "momentum"), ==, 0.9);
    if (c->keeps_weight_decay)
        g_assert_cmpfloat(lmn_params_get_float(hyper, "weight_decay"), ==, 0.0001);

    LmnBackend *backend = lmn_backend_new(registry, "cpu", NULL, NULL, &error);
    g_assert_no_error(error);
    LmnTensorInfo target = {lmn_shape_make(1, 1), LMN_DTYPE_F32};
    LmnModel *model = lmn_model_new(cfg, registry, backend, &target, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_init_params(model, 7, &error));
    g_assert_true(lmn_model_prepare(model, 32, &error));
    g_assert_no_error(error);
    LmnOptimizer *opt = lmn_optimizer_new(registry, c->name, hyper, lmn_model_get_params(model),
                                          lmn_model_get_grads(model), &error);
    g_assert_no_error(error);

    /* y = a smooth function of x, one fixed batch: every optimizer should fit it a little. */
    LmnTensor *x, *y;
    lmn_model_set_batch(model, 32, &x, &y);
    float xh[32 * 8], yh[32];
    LmnRandom r;
    lmn_random_init(&r, 11, 0);
    for (int i = 0; i < 32; i++) {
        double s = 0.0;
        for (int j = 0; j < 8; j++) {
            xh[i * 8 + j] = (float) lmn_random_normal(&r);
            s += (j % 3 - 1) * 0.5 * xh[i * 8 + j];
        }
        yh[i] = (float) sin(s);
    }
    g_assert_true(lmn_tensor_write(x, xh, sizeof xh, &error));
    g_assert_true(lmn_tensor_write(y, yh, sizeof yh, &error));

    double first = 0.0, last = 0.0;
    const int steps = 60;
    for (int s = 0; s < steps; s++) {
        lmn_model_forward(model, TRUE, (guint64) s, 1);
        if (s == 0)
            first = read_loss(model);
        lmn_model_backward(model, (guint64) s, 1);
        lmn_optimizer_step(opt, lmn_params_get_float(hyper, "lr"));
    }
    lmn_model_forward(model, FALSE, 0, 0);
    last = read_loss(model);
    g_test_message("%s: loss %.5f -> %.5f after %d steps", c->name, first, last, steps);
    g_assert_true(isfinite(first) && isfinite(last));
    g_assert_cmpfloat(last, <, 0.5 * first);

    lmn_optimizer_free(opt);
    lmn_model_free(model);
    lmn_backend_unref(backend);
    lmn_config_free(cfg);
}

static void test_swap(gconstpointer data)
{
    const SwapCase *c = data;
    if (g_test_subprocess()) {
        swap_and_train(c);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
    /* one notice per key the new optimizer does not take, none for the others */
    static const char *const sgd_only[] = {"nesterov", "dampening"};
    for (gsize i = 0; i < G_N_ELEMENTS(sgd_only); i++) {
        g_autofree char *pattern =
            g_strdup_printf("*dropping optimizer.%s, which %s*", sgd_only[i], c->name);
        gboolean kept = g_str_equal(sgd_only[i], "nesterov") && c->keeps_nesterov;
        if (g_str_equal(c->name, "sgd"))
            g_test_trap_assert_stderr_unmatched("*dropping*");
        else if (kept)
            g_test_trap_assert_stderr_unmatched("*dropping optimizer.nesterov*");
        else
            g_test_trap_assert_stderr(pattern);
    }
    if (c->keeps_momentum)
        g_test_trap_assert_stderr_unmatched("*optimizer.momentum*");
    else
        g_test_trap_assert_stderr("*dropping optimizer.momentum*");
    g_test_trap_assert_stderr_unmatched("*optimizer.lr*");
    g_test_trap_assert_stderr_unmatched("*optimizer.weight_decay*");
}

/* Unknown names are refused, listing nothing changed. */
static void test_swap_unknown(void)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_data(config_text, -1, "swap.ini", &error);
    g_assert_no_error(error);
    g_assert_false(lmn_config_replace_optimizer(cfg, registry, "adamm", &error));
    g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(error->message, "adamm"));
    g_clear_error(&error);
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    g_assert_no_error(error);
    g_assert_cmpstr(lmn_config_get_optimizer_type(cfg), ==, "sgd");
    lmn_config_free(cfg);
}

static char *run_cli(const char *const *args, int *status_out)
{
    const char *lamina = g_getenv("LMN_TEST_LAMINA");
    g_assert_nonnull(lamina);
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_ptr_array_add(argv, (gpointer) lamina);
    for (gsize i = 0; args[i] != NULL; i++)
        g_ptr_array_add(argv, (gpointer) args[i]);
    g_ptr_array_add(argv, NULL);
    char *out = NULL;
    g_autofree char *err = NULL;
    g_autoptr(GError) error = NULL;
    g_assert_true(g_spawn_sync(NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out,
                               &err, status_out, &error));
    g_assert_no_error(error);
    return out;
}

/* `lamina plugins` lists every optimizer. */
static void test_cli_list(void)
{
    const char *args[] = {"plugins", NULL};
    int status = -1;
    g_autofree char *out = run_cli(args, &status);
    g_assert_true(g_spawn_check_wait_status(status, NULL));
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *plugin = g_strdup_printf("lamina-%s.so", cases[i].name);
        g_assert_nonnull(strstr(out, cases[i].name));
        g_assert_nonnull(strstr(out, plugin));
    }
}

/* `lamina plugins describe NAME` prints each hyperparameter with its default and its doc. */
static void test_cli_describe(void)
{
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        const char *args[] = {"plugins", "describe", cases[i].name, NULL};
        int status = -1;
        g_autofree char *out = run_cli(args, &status);
        g_assert_true(g_spawn_check_wait_status(status, NULL));
        g_autoptr(GError) error = NULL;
        const LmnFeature *f =
            lmn_registry_lookup(registry, LMN_FEATURE_OPTIMIZER, cases[i].name, &error);
        g_assert_no_error(error);
        for (const LmnParamSpec *s = f->desc->params; s->name != NULL; s++) {
            const char *at = strstr(out, s->name);
            if (at == NULL)
                g_error("'lamina plugins describe %s' does not list %s:\n%s", cases[i].name,
                        s->name, out);
            g_assert_nonnull(strstr(out, s->doc));
            g_assert_nonnull(strstr(out, s->default_value));
        }
    }
    /* the Adam keys a PyTorch user looks for, spelled as torch spells them */
    const char *args[] = {"plugins", "describe", "adam", NULL};
    int status = -1;
    g_autofree char *out = run_cli(args, &status);
    static const char *const adam_keys[] = {"lr",      "beta1",    "beta2", "eps",  "weight_decay",
                                            "amsgrad", "maximize", "0.999", "1e-8", "0.001"};
    for (gsize i = 0; i < G_N_ELEMENTS(adam_keys); i++)
        if (strstr(out, adam_keys[i]) == NULL)
            g_error("'lamina plugins describe adam' lacks '%s':\n%s", adam_keys[i], out);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_autoptr(GError) error = NULL;
    registry = lmn_registry_new();
    g_assert_true(lmn_registry_scan(registry, &error));

    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = g_strdup_printf("/optim/swap/%s", cases[i].name);
        g_test_add_data_func(path, &cases[i], test_swap);
    }
    g_test_add_func("/optim/swap/unknown", test_swap_unknown);
    g_test_add_func("/optim/cli/plugins-lists-optimizers", test_cli_list);
    g_test_add_func("/optim/cli/describe", test_cli_describe);
    int rc = g_test_run();
    lmn_registry_free(registry);
    return rc;
}
