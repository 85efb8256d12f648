/* Tests of the schedule object and the built-in schedules: "step" against the learning rates
 * torch.optim.lr_scheduler.StepLR (chained with LinearLR for warm-up) produced, recorded in
 * tests/fixtures/optim-sgd.h5; "constant"; the warm-up's closed form; the unit; the common keys'
 * schema; and the errors.
 */
#include <lamina/lamina.h>

#include <hdf5.h>
#include <math.h>
#include <string.h>

static LmnRegistry *registry;

static LmnParams *validate(LmnFeatureKind kind, const char *type, const char *const *keys,
                           const char *const *values, GError **error)
{
    const LmnFeature *f = lmn_registry_lookup(registry, kind, type, error);
    if (f == NULL)
        return NULL;
    return lmn_registry_validate_params(f, keys, values, "test.ini [schedule]", error);
}

static LmnSchedule *schedule_new(const char *type, const char *const *keys,
                                 const char *const *values, const LmnScheduleCommon *common,
                                 double base_lr)
{
    g_autoptr(GError) error = NULL;
    LmnParams *params = validate(LMN_FEATURE_SCHEDULE, type, keys, values, &error);
    g_assert_no_error(error);
    LmnSchedule *sched = lmn_schedule_new(registry, type, params, common, base_lr, &error);
    g_assert_no_error(error);
    g_assert_nonnull(sched);
    lmn_params_unref(params);
    return sched;
}

static void assert_close(double got, double expect)
{
    g_assert_cmpfloat(fabs(got - expect), <=, 1e-12 * fabs(expect) + 1e-300);
}

static double read_attr(hid_t group, const char *name)
{
    hid_t attr = H5Aopen(group, name, H5P_DEFAULT);
    g_assert_cmpint(attr, >=, 0);
    double v = 0.0;
    g_assert_cmpint(H5Aread(attr, H5T_NATIVE_DOUBLE, &v), >=, 0);
    H5Aclose(attr);
    return v;
}

static void test_step_vs_pytorch(void)
{
    g_autofree char *path = g_build_filename(g_getenv("LMN_TEST_FIXTURES"), "optim-sgd.h5", NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(file, >=, 0);
    int n_cases = 0, n_warmup = 0;
    for (int i = 0;; i++) {
        g_autofree char *name = g_strdup_printf("/steplr/%d", i);
        if (H5Lexists(file, name, H5P_DEFAULT) <= 0)
            break;
        hid_t g = H5Gopen2(file, name, H5P_DEFAULT);
        double base_lr = read_attr(g, "base_lr");
        g_autofree char *ss = g_strdup_printf("%d", (int) read_attr(g, "step_size"));
        g_autofree char *gm = g_strdup_printf("%.17g", read_attr(g, "gamma"));
        LmnScheduleCommon common = {LMN_SCHEDULE_UNIT_STEP, (gint64) read_attr(g, "warmup"),
                                    read_attr(g, "warmup_start_factor")};
        n_warmup += common.warmup > 0;

        hid_t d = H5Dopen2(g, "lr", H5P_DEFAULT);
        hid_t space = H5Dget_space(d);
        gssize count = H5Sget_simple_extent_npoints(space);
        double *expect = g_new(double, count);
        g_assert_cmpint(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, expect), >=,
                        0);
        const char *keys[] = {"step_size", "gamma", NULL};
        const char *values[] = {ss, gm, NULL};
        LmnSchedule *sched = schedule_new("step", keys, values, &common, base_lr);
        for (gssize t = 0; t < count; t++)
            assert_close(lmn_schedule_get_lr(sched, t, 0, 1000), expect[t]);
        lmn_schedule_free(sched);
        g_free(expect);
        H5Sclose(space);
        H5Dclose(d);
        H5Gclose(g);
        n_cases++;
    }
    H5Fclose(file);
    g_assert_cmpint(n_cases, >=, 4);
    g_assert_cmpint(n_warmup, >=, 1);
}

static void test_constant(void)
{
    LmnSchedule *sched = schedule_new("constant", NULL, NULL, NULL, 0.3);
    g_assert_cmpstr(lmn_schedule_get_type_name(sched), ==, "constant");
    for (gint64 e = 0; e < 50; e += 7)
        g_assert_cmpfloat(lmn_schedule_get_lr(sched, e * 100, e, 100), ==, 0.3);
    guint n = 99;
    lmn_schedule_get_state(sched, &n);
    g_assert_cmpuint(n, ==, 0);
    lmn_schedule_observe(sched, 1.0); /* no observer: a no-op */
    lmn_schedule_free(sched);
}

/* lr = schedule(t) * (f + (1 - f) * t / warmup) for t < warmup, in the chosen unit. */
static void test_warmup(void)
{
    LmnScheduleCommon common = {LMN_SCHEDULE_UNIT_EPOCH, 4, 0.2};
    LmnSchedule *sched = schedule_new("constant", NULL, NULL, &common, 0.5);
    for (gint64 e = 0; e < 10; e++) {
        double factor = e < 4 ? 0.2 + 0.8 * e / 4.0 : 1.0;
        /* within an epoch the steps do not matter with unit = epoch */
        for (gint64 s = 0; s < 3; s++)
            assert_close(lmn_schedule_get_lr(sched, e * 3 + s, e, 3), 0.5 * factor);
    }
    lmn_schedule_free(sched);

    const char *keys[] = {"step_size", "gamma", NULL};
    const char *values[] = {"2", "0.5", NULL};
    LmnScheduleCommon by_step = {LMN_SCHEDULE_UNIT_STEP, 3, 0.1};
    sched = schedule_new("step", keys, values, &by_step, 1.0);
    for (gint64 t = 0; t < 8; t++) {
        double base = pow(0.5, (double) (t / 2));
        double factor = t < 3 ? 0.1 + 0.9 * t / 3.0 : 1.0;
        assert_close(lmn_schedule_get_lr(sched, t, t / 5, 5), base * factor);
    }
    lmn_schedule_free(sched);
}

/* unit = epoch counts completed epochs, unit = step optimizer steps. */
static void test_unit(void)
{
    const char *keys[] = {"step_size", NULL};
    const char *values[] = {"10", NULL};
    LmnScheduleCommon epoch = {LMN_SCHEDULE_UNIT_EPOCH, 0, 0.1};
    LmnScheduleCommon step = {LMN_SCHEDULE_UNIT_STEP, 0, 0.1};
    LmnSchedule *by_epoch = schedule_new("step", keys, values, &epoch, 1.0);
    LmnSchedule *by_step = schedule_new("step", keys, values, &step, 1.0);
    /* 25 steps per epoch; after 57 steps we are in epoch 2 */
    assert_close(lmn_schedule_get_lr(by_epoch, 57, 2, 25), 1.0); /* gamma default 0.1 */
    assert_close(lmn_schedule_get_lr(by_step, 57, 2, 25), 1e-5); /* 0.1^5 */
    assert_close(lmn_schedule_get_lr(by_epoch, 250, 10, 25), 0.1);
    assert_close(lmn_schedule_get_lr(by_epoch, 249, 9, 25), 1.0);
    lmn_schedule_free(by_epoch);
    lmn_schedule_free(by_step);
}

static void test_common_specs(void)
{
    g_autoptr(GError) error = NULL;
    const LmnParamSpec *specs = lmn_schedule_common_specs();
    LmnParams *defaults = lmn_params_new_from_strings(specs, NULL, NULL, "test", &error);
    g_assert_no_error(error);
    LmnScheduleCommon c = {99, 99, 99};
    lmn_schedule_common_from_params(defaults, &c);
    g_assert_cmpint(c.unit, ==, LMN_SCHEDULE_UNIT_EPOCH);
    g_assert_cmpint(c.warmup, ==, 0);
    g_assert_cmpfloat(c.warmup_start_factor, ==, 0.1);
    lmn_params_unref(defaults);

    const char *keys[] = {"unit", "warmup", "warmup_start_factor", NULL};
    const char *values[] = {"step", "100", "1", NULL};
    LmnParams *given = lmn_params_new_from_strings(specs, keys, values, "test", &error);
    g_assert_no_error(error);
    lmn_schedule_common_from_params(given, &c);
    g_assert_cmpint(c.unit, ==, LMN_SCHEDULE_UNIT_STEP);
    g_assert_cmpint(c.warmup, ==, 100);
    g_assert_cmpfloat(c.warmup_start_factor, ==, 1.0);
    lmn_params_unref(given);

    static const char *const bad[][2] = {{"unit", "epochs"},
                                         {"warmup", "-1"},
                                         {"warmup_start_factor", "0"},
                                         {"warmup_start_factor", "1.5"}};
    for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
        const char *k[] = {bad[i][0], NULL};
        const char *v[] = {bad[i][1], NULL};
        g_assert_null(lmn_params_new_from_strings(specs, k, v, "model.ini [schedule]", &error));
        g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
        g_assert_nonnull(strstr(error->message, bad[i][0]));
        g_assert_nonnull(strstr(error->message, "model.ini"));
        g_clear_error(&error);
    }
}

static void test_errors(void)
{
    g_autoptr(GError) error = NULL;

    /* StepLR's step_size is required, and at least 1 */
    g_assert_null(validate(LMN_FEATURE_SCHEDULE, "step", NULL, NULL, &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_MISSING);
    g_assert_nonnull(strstr(error->message, "step_size"));
    g_clear_error(&error);
    const char *keys[] = {"step_size", NULL};
    const char *zero[] = {"0", NULL};
    g_assert_null(validate(LMN_FEATURE_SCHEDULE, "step", keys, zero, &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
    g_assert_nonnull(strstr(error->message, "step_size"));
    g_clear_error(&error);
    /* constant has no keys of its own */
    const char *gk[] = {"gamma", NULL};
    const char *gv[] = {"0.5", NULL};
    g_assert_null(validate(LMN_FEATURE_SCHEDULE, "constant", gk, gv, &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY);
    g_assert_nonnull(strstr(error->message, "gamma"));
    g_clear_error(&error);

    LmnParams *params = validate(LMN_FEATURE_SCHEDULE, "constant", NULL, NULL, &error);
    g_assert_no_error(error);
    g_assert_null(lmn_schedule_new(registry, "cosine_typo", params, NULL, 0.1, &error));
    g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(error->message, "cosine_typo"));
    g_clear_error(&error);

    /* common keys from code are checked too */
    static const LmnScheduleCommon bad[] = {
        {LMN_SCHEDULE_UNIT_EPOCH, -1, 0.1},
        {LMN_SCHEDULE_UNIT_EPOCH, 5, 0.0},
        {LMN_SCHEDULE_UNIT_STEP, 5, 1.5},
        {(LmnScheduleUnit) 7, 0, 0.1},
    };
    static const char *const names[] = {"warmup", "warmup_start_factor", "warmup_start_factor",
                                        "unit"};
    for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_assert_null(lmn_schedule_new(registry, "constant", params, &bad[i], 0.1, &error));
        g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
        g_assert_nonnull(strstr(error->message, names[i]));
        g_assert_nonnull(strstr(error->message, "[schedule]"));
        g_clear_error(&error);
    }
    lmn_params_unref(params);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    registry = lmn_registry_new();
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_registry_scan(registry, &error));

    g_test_add_func("/optim/schedules/step-matches-pytorch", test_step_vs_pytorch);
    g_test_add_func("/optim/schedules/constant", test_constant);
    g_test_add_func("/optim/schedules/warmup", test_warmup);
    g_test_add_func("/optim/schedules/unit", test_unit);
    g_test_add_func("/optim/schedules/common-keys", test_common_specs);
    g_test_add_func("/optim/schedules/errors", test_errors);
    int rc = g_test_run();
    lmn_registry_free(registry);
    return rc;
}
