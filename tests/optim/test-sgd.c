/* Tests of the optimizer object and the "sgd" plugin against trajectories recorded from
 * torch.optim.SGD (scripts/make-optim-fixtures.py → tests/fixtures/optim-sgd.h5): the recorded
 * gradients are fed step by step on the CPU backend and the parameters compared after every
 * step, relative to the size of the whole trajectory; the final momentum buffer too.  The
 * "steplr" case takes its learning rates from a Lamina "step" schedule, checked against the
 * rates torch's StepLR used.
 */
#include <lamina/lamina.h>

#include <hdf5.h>
#include <math.h>
#include <string.h>

static LmnRegistry *registry;
static LmnBackend *backend;

/* ---- fixture reading ---- */

static char *fixture_path(void)
{
    const char *dir = g_getenv("LMN_TEST_FIXTURES");
    g_assert_nonnull(dir);
    return g_build_filename(dir, "optim-sgd.h5", NULL);
}

static double read_attr_double(hid_t group, const char *name)
{
    hid_t attr = H5Aopen(group, name, H5P_DEFAULT);
    g_assert_cmpint(attr, >=, 0);
    double value = 0.0;
    g_assert_cmpint(H5Aread(attr, H5T_NATIVE_DOUBLE, &value), >=, 0);
    H5Aclose(attr);
    return value;
}

/* Reads a whole dataset converted to @mem_type; returns its element count. */
static gsize read_dataset(hid_t group, const char *name, hid_t mem_type, gsize elem_size,
                          gpointer *data_out)
{
    hid_t dset = H5Dopen2(group, name, H5P_DEFAULT);
    g_assert_cmpint(dset, >=, 0);
    hid_t space = H5Dget_space(dset);
    gssize n = H5Sget_simple_extent_npoints(space);
    g_assert_cmpint(n, >, 0);
    gpointer data = g_malloc((gsize) n * elem_size);
    g_assert_cmpint(H5Dread(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), >=, 0);
    H5Sclose(space);
    H5Dclose(dset);
    *data_out = data;
    return (gsize) n;
}

/* ---- helpers ---- */

static LmnParams *sgd_hyper(const char *const *keys, const char *const *values)
{
    g_autoptr(GError) error = NULL;
    const LmnFeature *feature = lmn_registry_lookup(registry, LMN_FEATURE_OPTIMIZER, "sgd", &error);
    g_assert_no_error(error);
    LmnParams *hyper =
        lmn_registry_validate_params(feature, keys, values, "test [optimizer]", &error);
    g_assert_no_error(error);
    return hyper;
}

static LmnTensor *vector_new(gint64 n, const float *values)
{
    g_autoptr(GError) error = NULL;
    LmnShape shape = lmn_shape_make(1, n);
    LmnTensor *t = lmn_tensor_new(backend, LMN_DTYPE_F32, &shape, &error);
    g_assert_no_error(error);
    if (values != NULL) {
        g_assert_true(lmn_tensor_write(t, values, (gsize) n * sizeof(float), &error));
        g_assert_no_error(error);
    }
    return t;
}

static void read_vector(LmnTensor *t, float *dst)
{
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_tensor_read(t, dst, lmn_tensor_nbytes(t), &error));
    g_assert_no_error(error);
}

/* ---- the PyTorch trajectories ---- */

static void run_case(gconstpointer data)
{
    const char *name = data;
    g_autofree char *path = fixture_path();
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(file, >=, 0);
    g_autofree char *group_path = g_strdup_printf("/sgd/%s", name);
    hid_t group = H5Gopen2(file, group_path, H5P_DEFAULT);
    g_assert_cmpint(group, >=, 0);

    const gint64 n = (gint64) read_attr_double(group, "n");
    const gint64 steps = (gint64) read_attr_double(group, "steps");
    const double base_lr = read_attr_double(group, "lr");
    const double momentum = read_attr_double(group, "momentum");
    const gint64 step_size = (gint64) read_attr_double(group, "step_size");
    g_autofree char *lr_text = g_strdup_printf("%.17g", base_lr);
    g_autofree char *momentum_text = g_strdup_printf("%.17g", momentum);
    g_autofree char *dampening_text =
        g_strdup_printf("%.17g", read_attr_double(group, "dampening"));
    g_autofree char *wd_text = g_strdup_printf("%.17g", read_attr_double(group, "weight_decay"));
    const char *nesterov_text = read_attr_double(group, "nesterov") != 0 ? "true" : "false";
    const char *maximize_text = read_attr_double(group, "maximize") != 0 ? "true" : "false";

    float *params0, *grads, *expect;
    double *lrs;
    g_assert_cmpuint(
        read_dataset(group, "params0", H5T_NATIVE_FLOAT, sizeof(float), (gpointer *) &params0), ==,
        (gsize) n);
    g_assert_cmpuint(
        read_dataset(group, "grads", H5T_NATIVE_FLOAT, sizeof(float), (gpointer *) &grads), ==,
        (gsize) (n * steps));
    g_assert_cmpuint(
        read_dataset(group, "params", H5T_NATIVE_FLOAT, sizeof(float), (gpointer *) &expect), ==,
        (gsize) (n * steps));
    g_assert_cmpuint(
        read_dataset(group, "lr", H5T_NATIVE_DOUBLE, sizeof(double), (gpointer *) &lrs), ==,
        (gsize) steps);

    const char *keys[] = {"lr",       "momentum", "dampening", "weight_decay",
                          "nesterov", "maximize", NULL};
    const char *values[] = {lr_text,       momentum_text, dampening_text, wd_text, nesterov_text,
                            maximize_text, NULL};
    LmnParams *hyper = sgd_hyper(keys, values);

    LmnTensor *p = vector_new(n, params0);
    LmnTensor *g = vector_new(n, NULL);
    g_autoptr(GError) error = NULL;
    LmnOptimizer *opt = lmn_optimizer_new(registry, "sgd", hyper, p, g, &error);
    g_assert_no_error(error);
    g_assert_nonnull(opt);

    LmnSchedule *sched = NULL;
    if (step_size > 0) {
        const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_SCHEDULE, "step", &error);
        g_assert_no_error(error);
        g_autofree char *ss = g_strdup_printf("%" G_GINT64_FORMAT, step_size);
        g_autofree char *gm = g_strdup_printf("%.17g", read_attr_double(group, "gamma"));
        const char *skeys[] = {"step_size", "gamma", NULL};
        const char *svalues[] = {ss, gm, NULL};
        LmnParams *sp = lmn_registry_validate_params(f, skeys, svalues, "test [schedule]", &error);
        g_assert_no_error(error);
        LmnScheduleCommon common = {LMN_SCHEDULE_UNIT_STEP, 0, 0.1};
        sched = lmn_schedule_new(registry, "step", sp, &common, base_lr, &error);
        g_assert_no_error(error);
        lmn_params_unref(sp);
    }

    /* The scale of the comparison: how far the whole trajectory moves each coordinate. */
    double scale = 1e-30;
    for (gint64 i = 0; i < n; i++)
        scale = MAX(scale, fabs((double) expect[(steps - 1) * n + i] - params0[i]));

    float *got = g_new(float, n);
    double worst = 0.0;
    for (gint64 t = 0; t < steps; t++) {
        g_assert_true(lmn_tensor_write(g, grads + t * n, (gsize) n * sizeof(float), &error));
        g_assert_no_error(error);
        double lr = lrs[t];
        if (sched != NULL) {
            lr = lmn_schedule_get_lr(sched, t, 0, steps);
            g_assert_cmpfloat(fabs(lr - lrs[t]), <=, 1e-12 * lrs[t]);
        }
        lmn_optimizer_step(opt, lr);
        g_assert_cmpint(lmn_optimizer_get_step(opt), ==, t + 1);
        read_vector(p, got);
        for (gint64 i = 0; i < n; i++) {
            double err = fabs((double) got[i] - expect[t * n + i]) / scale;
            worst = MAX(worst, err);
            if (err > 1e-5)
                g_error("sgd case %s: step %" G_GINT64_FORMAT ", element %" G_GINT64_FORMAT
                        ": lamina %.9g, torch %.9g (relative error %.3g)",
                        name, t + 1, i, got[i], expect[t * n + i], err);
        }
    }
    g_test_message("case %s: worst relative deviation %.3g", name, worst);

    g_assert_cmpuint(lmn_optimizer_get_n_slots(opt), ==, 1);
    g_assert_cmpstr(lmn_optimizer_get_slot_name(opt, 0), ==, "momentum_buffer");
    if (momentum != 0.0) {
        float *buf_expect;
        g_assert_cmpuint(read_dataset(group, "momentum_buffer", H5T_NATIVE_FLOAT, sizeof(float),
                                      (gpointer *) &buf_expect),
                         ==, (gsize) n);
        double buf_scale = 1e-30;
        for (gint64 i = 0; i < n; i++)
            buf_scale = MAX(buf_scale, fabs(buf_expect[i]));
        read_vector(lmn_optimizer_get_slot(opt, 0), got);
        for (gint64 i = 0; i < n; i++)
            g_assert_cmpfloat(fabs((double) got[i] - buf_expect[i]) / buf_scale, <=, 1e-5);
        g_free(buf_expect);
    } else {
        g_assert_false(H5Lexists(group, "momentum_buffer", H5P_DEFAULT) > 0);
    }

    g_free(got);
    lmn_schedule_free(sched);
    lmn_optimizer_free(opt);
    lmn_tensor_unref(g);
    lmn_tensor_unref(p);
    lmn_params_unref(hyper);
    g_free(params0);
    g_free(grads);
    g_free(expect);
    g_free(lrs);
    H5Gclose(group);
    H5Fclose(file);
}

/* ---- the object itself ---- */

static void test_object(void)
{
    g_autoptr(GError) error = NULL;
    const float p0[3] = {1.0f, -2.0f, 3.0f};
    const float g0[3] = {0.5f, 0.25f, -1.0f};
    const char *keys[] = {"momentum", "dampening", NULL};
    const char *values[] = {"0.5", "0.5", NULL};
    LmnParams *hyper = sgd_hyper(keys, values);
    LmnTensor *p = vector_new(3, p0);
    LmnTensor *g = vector_new(3, g0);

    LmnOptimizer *opt = lmn_optimizer_new(registry, "sgd", hyper, p, g, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(lmn_optimizer_get_type_name(opt), ==, "sgd");
    g_assert_nonnull(lmn_optimizer_get_plugin_version(opt));
    g_assert_true(lmn_optimizer_get_hyper(opt) == hyper);
    g_assert_cmpfloat(lmn_params_get_float(lmn_optimizer_get_hyper(opt), "lr"), ==, 0.01);
    g_assert_cmpint(lmn_optimizer_get_step(opt), ==, 0);
    guint n_host = 99;
    const char *const *names = (const char *const *) &n_host;
    g_assert_nonnull(lmn_optimizer_get_host_state(opt, &n_host, &names));
    g_assert_cmpuint(n_host, ==, 0);

    /* The slot is flat like the parameters and starts at 0. */
    LmnTensor *slot = lmn_optimizer_get_slot(opt, 0);
    g_assert_true(lmn_shape_equal(&slot->shape, &p->shape));
    g_assert_true(slot->backend == p->backend);
    float buf[3];
    read_vector(slot, buf);
    for (int i = 0; i < 3; i++)
        g_assert_cmpfloat(buf[i], ==, 0.0f);

    /* First step: buf = g (not (1 - dampening) * g); second: buf = 0.5 buf + 0.5 g. */
    float got[3];
    lmn_optimizer_step(opt, 0.1);
    read_vector(slot, buf);
    read_vector(p, got);
    for (int i = 0; i < 3; i++) {
        g_assert_cmpfloat(buf[i], ==, g0[i]);
        g_assert_cmpfloat(got[i], ==, p0[i] + -0.1f * g0[i]);
    }
    lmn_optimizer_step(opt, 0.1);
    read_vector(slot, buf);
    for (int i = 0; i < 3; i++)
        g_assert_cmpfloat(buf[i], ==, 0.5f * g0[i] + 0.5f * g0[i]);

    /* Resuming at a later step keeps the buffer rule of later steps. */
    lmn_optimizer_set_step(opt, 10);
    lmn_optimizer_step(opt, 0.1);
    g_assert_cmpint(lmn_optimizer_get_step(opt), ==, 11);
    read_vector(slot, buf);
    for (int i = 0; i < 3; i++)
        g_assert_cmpfloat(buf[i], ==, 0.5f * g0[i] + 0.5f * g0[i]);

    lmn_optimizer_free(opt);
    lmn_tensor_unref(g);
    lmn_tensor_unref(p);
    lmn_params_unref(hyper);
}

/* A model-sized vector (split across the CPU backend's threads) against a naive loop. */
static void test_large(void)
{
    const gint64 n = 100003;
    g_autoptr(GError) error = NULL;
    float *p0 = g_new(float, n), *g0 = g_new(float, n), *ref = g_new(float, n);
    float *buf = g_new0(float, n), *got = g_new(float, n);
    LmnRandom r;
    lmn_random_init(&r, 3, 0);
    for (gint64 i = 0; i < n; i++) {
        p0[i] = (float) lmn_random_normal(&r);
        g0[i] = (float) lmn_random_normal(&r);
        ref[i] = p0[i];
    }
    const char *keys[] = {"momentum", "nesterov", "weight_decay", NULL};
    const char *values[] = {"0.9", "true", "0.001", NULL};
    LmnParams *hyper = sgd_hyper(keys, values);
    LmnTensor *p = vector_new(n, p0);
    LmnTensor *g = vector_new(n, g0);
    LmnOptimizer *opt = lmn_optimizer_new(registry, "sgd", hyper, p, g, &error);
    g_assert_no_error(error);
    for (int step = 1; step <= 3; step++) {
        lmn_optimizer_step(opt, 0.05);
        for (gint64 i = 0; i < n; i++) {
            float d = g0[i] + 0.001f * ref[i];
            buf[i] = step == 1 ? d : 0.9f * buf[i] + 1.0f * d;
            d = d + 0.9f * buf[i];
            ref[i] = ref[i] + -0.05f * d;
        }
    }
    read_vector(p, got);
    for (gint64 i = 0; i < n; i++)
        g_assert_cmpfloat(fabs(got[i] - ref[i]), <=, 1e-6 * (1.0 + fabs(ref[i])));
    lmn_optimizer_free(opt);
    lmn_tensor_unref(g);
    lmn_tensor_unref(p);
    lmn_params_unref(hyper);
    g_free(p0);
    g_free(g0);
    g_free(ref);
    g_free(buf);
    g_free(got);
}

static void test_errors(void)
{
    g_autoptr(GError) error = NULL;
    LmnParams *hyper = sgd_hyper(NULL, NULL);
    LmnTensor *p = vector_new(4, NULL);
    LmnTensor *g = vector_new(4, NULL);
    g_assert_null(lmn_optimizer_new(registry, "sgdd", hyper, p, g, &error));
    g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(error->message, "sgdd"));
    g_clear_error(&error);

    /* the schema rejects what torch.optim.SGD rejects */
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_OPTIMIZER, "sgd", &error);
    g_assert_no_error(error);
    static const char *const bad[][2] = {
        {"lr", "-0.1"}, {"momentum", "-0.5"}, {"weight_decay", "-1"}, {"nesterov", "maybe"}};
    for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
        const char *keys[] = {bad[i][0], NULL};
        const char *values[] = {bad[i][1], NULL};
        g_assert_null(
            lmn_registry_validate_params(f, keys, values, "test.ini [optimizer]", &error));
        g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
        g_assert_nonnull(strstr(error->message, bad[i][0]));
        g_assert_nonnull(strstr(error->message, "test.ini"));
        g_clear_error(&error);
    }
    lmn_tensor_unref(g);
    lmn_tensor_unref(p);
    lmn_params_unref(hyper);
}

int main(int argc, char **argv)
{
    static const char *const cases[] = {
        "plain",    "momentum", "dampening", "nesterov", "weight_decay", "weight_decay_momentum",
        "maximize", "steplr",
    };
    g_test_init(&argc, &argv, NULL);

    g_autoptr(GError) error = NULL;
    registry = lmn_registry_new();
    g_assert_true(lmn_registry_scan(registry, &error));
    backend = lmn_backend_new(registry, "cpu", NULL, NULL, &error);
    g_assert_no_error(error);

    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *test_path = g_strdup_printf("/optim/sgd/matches-pytorch/%s", cases[i]);
        g_test_add_data_func(test_path, cases[i], run_case);
    }
    g_test_add_func("/optim/sgd/object", test_object);
    g_test_add_func("/optim/sgd/large-vs-naive", test_large);
    g_test_add_func("/optim/sgd/errors", test_errors);
    int rc = g_test_run();
    lmn_backend_unref(backend);
    lmn_registry_free(registry);
    return rc;
}
