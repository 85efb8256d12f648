/* Tests of the schedules multistep, exponential, time_decay, inverse, linear, cosine,
 * cosine_restarts and reduce_on_plateau against the learning rates torch.optim.lr_scheduler
 * produced (MultiStepLR, ExponentialLR, LambdaLR, LinearLR, CosineAnnealingLR,
 * CosineAnnealingWarmRestarts, ReduceLROnPlateau fed a fixed metric sequence; some chained with
 * LinearLR for warm-up), recorded by scripts/make-optim-fixtures.py in
 * tests/fixtures/optim-schedules.h5; plus the schedules' schemas, the plateau state array, and
 * their errors.
 */
#include <lamina/lamina.h>

#include <hdf5.h>
#include <math.h>
#include <string.h>

static LmnRegistry *registry;

static const char *const schedule_types[] = {
    "multistep", "exponential", "time_decay",      "inverse",
    "linear",    "cosine",      "cosine_restarts", "reduce_on_plateau",
};

static char *attr_text(hid_t obj, const char *name)
{
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    g_assert_cmpint(attr, >=, 0);
    hid_t type = H5Aget_type(attr);
    hid_t mem = H5Tcopy(H5T_C_S1);
    H5Tset_size(mem, H5T_VARIABLE);
    H5Tset_cset(mem, H5Tget_cset(type));
    char *raw = NULL;
    g_assert_cmpint(H5Aread(attr, mem, &raw), >=, 0);
    char *s = g_strdup(raw);
    H5free_memory(raw);
    H5Tclose(mem);
    H5Tclose(type);
    H5Aclose(attr);
    return s;
}

static double read_attr(hid_t obj, const char *name)
{
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    g_assert_cmpint(attr, >=, 0);
    double v = 0.0;
    g_assert_cmpint(H5Aread(attr, H5T_NATIVE_DOUBLE, &v), >=, 0);
    H5Aclose(attr);
    return v;
}

static gsize read_doubles(hid_t group, const char *name, double **out)
{
    hid_t d = H5Dopen2(group, name, H5P_DEFAULT);
    g_assert_cmpint(d, >=, 0);
    hid_t space = H5Dget_space(d);
    gssize count = H5Sget_simple_extent_npoints(space);
    g_assert_cmpint(count, >, 0);
    *out = g_new(double, count);
    g_assert_cmpint(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out), >=, 0);
    H5Sclose(space);
    H5Dclose(d);
    return (gsize) count;
}

/* "hp.KEY" attributes as config texts: numbers, float lists ("3, 3, 10") and strings. */
typedef struct {
    GPtrArray *keys, *values;
} KeyValues;

static herr_t collect_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    KeyValues *kv = data;
    if (!g_str_has_prefix(name, "hp."))
        return 0;
    hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t type = H5Aget_type(attr);
    hid_t space = H5Aget_space(attr);
    char *text;
    if (H5Tget_class(type) == H5T_STRING && H5Tis_variable_str(type) > 0) {
        hid_t mem = H5Tcopy(H5T_C_S1);
        H5Tset_size(mem, H5T_VARIABLE);
        char *raw = NULL;
        g_assert_cmpint(H5Aread(attr, mem, &raw), >=, 0);
        text = g_strdup(raw);
        H5free_memory(raw);
        H5Tclose(mem);
    } else if (H5Tget_class(type) == H5T_STRING) {
        gsize size = H5Tget_size(type);
        char *buf = g_malloc0(size + 1);
        hid_t mem = H5Tcopy(H5T_C_S1);
        H5Tset_size(mem, size + 1); /* room for the terminator */
        g_assert_cmpint(H5Aread(attr, mem, buf), >=, 0);
        H5Tclose(mem);
        text = buf;
    } else {
        gssize n = H5Sget_simple_extent_npoints(space);
        double *v = g_new(double, n);
        g_assert_cmpint(H5Aread(attr, H5T_NATIVE_DOUBLE, v), >=, 0);
        GString *s = g_string_new(NULL);
        for (gssize i = 0; i < n; i++)
            g_string_append_printf(s, "%s%.17g", i > 0 ? ", " : "", v[i]);
        text = g_string_free(s, FALSE);
        g_free(v);
    }
    H5Sclose(space);
    H5Tclose(type);
    H5Aclose(attr);
    g_ptr_array_add(kv->keys, g_strdup(name + 3));
    g_ptr_array_add(kv->values, text);
    return 0;
}

static LmnParams *validate(const char *type, const char *const *keys, const char *const *values,
                           GError **error)
{
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_SCHEDULE, type, error);
    if (f == NULL)
        return NULL;
    return lmn_registry_validate_params(f, keys, values, "model.ini [schedule]", error);
}

/* Every recorded case of one schedule type: t = 0, 1, ... with unit = epoch; reduce_on_plateau
 * observes the recorded metric after each epoch, as torch's step(metric) does. */
static void test_vs_pytorch(gconstpointer data)
{
    const char *type = data;
    g_autofree char *path =
        g_build_filename(g_getenv("LMN_TEST_FIXTURES"), "optim-schedules.h5", NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(file, >=, 0);
    int n_cases = 0;
    guint n_changes = 0;
    double worst = 0.0;
    for (int i = 0;; i++) {
        g_autofree char *name = g_strdup_printf("/%s/%d", type, i);
        if (H5Lexists(file, type, H5P_DEFAULT) <= 0 || H5Lexists(file, name, H5P_DEFAULT) <= 0)
            break;
        hid_t g = H5Gopen2(file, name, H5P_DEFAULT);
        KeyValues kv = {g_ptr_array_new_with_free_func(g_free),
                        g_ptr_array_new_with_free_func(g_free)};
        hsize_t idx = 0;
        g_assert_cmpint(H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr, &kv), >=, 0);
        g_ptr_array_add(kv.keys, NULL);
        g_ptr_array_add(kv.values, NULL);
        g_autoptr(GError) error = NULL;
        LmnParams *params = validate(type, (const char *const *) kv.keys->pdata,
                                     (const char *const *) kv.values->pdata, &error);
        g_assert_no_error(error);
        LmnScheduleCommon common = {LMN_SCHEDULE_UNIT_EPOCH, (gint64) read_attr(g, "warmup"),
                                    read_attr(g, "warmup_start_factor")};
        double base_lr = read_attr(g, "base_lr");
        LmnSchedule *sched = lmn_schedule_new(registry, type, params, &common, base_lr, &error);
        g_assert_no_error(error);

        double *expect, *metric = NULL;
        gsize count = read_doubles(g, "lr", &expect);
        gboolean plateau = H5Lexists(g, "metric", H5P_DEFAULT) > 0;
        if (plateau)
            g_assert_cmpuint(read_doubles(g, "metric", &metric), ==, count);
        for (gsize t = 0; t < count; t++) {
            /* 7 steps per epoch: with unit = epoch the steps must not matter */
            double lr = lmn_schedule_get_lr(sched, (gint64) t * 7 + 3, (gint64) t, 7);
            double err = fabs(lr - expect[t]) / base_lr;
            worst = MAX(worst, err);
            /* torch's recursive forms round differently in the last bits */
            if (!(err <= 1e-12))
                g_error("schedule %s case %d: t = %" G_GSIZE_FORMAT ": lamina %.17g, torch "
                        "%.17g",
                        type, i, t, lr, expect[t]);
            n_changes += t > 0 && expect[t] != expect[t - 1];
            if (plateau)
                lmn_schedule_observe(sched, metric[t]);
        }
        lmn_schedule_free(sched);
        lmn_params_unref(params);
        g_ptr_array_unref(kv.keys);
        g_ptr_array_unref(kv.values);
        g_free(expect);
        g_free(metric);
        H5Gclose(g);
        n_cases++;
    }
    H5Fclose(file);
    g_assert_cmpint(n_cases, >=, 1);
    /* cases where nothing happens would test nothing */
    g_assert_cmpuint(n_changes, >=, 3);
    g_test_message("%s: %d cases, worst deviation %.3g of base_lr", type, n_cases, worst);
}

/* The plateau state lives in the core's array (checkpointed): copying it into a fresh schedule
 * continues exactly where the first one was. */
static void test_plateau_state(void)
{
    g_autoptr(GError) error = NULL;
    const char *keys[] = {"patience", "factor", "cooldown", NULL};
    const char *values[] = {"1", "0.5", "1", NULL};
    LmnParams *params = validate("reduce_on_plateau", keys, values, &error);
    g_assert_no_error(error);
    LmnSchedule *a = lmn_schedule_new(registry, "reduce_on_plateau", params, NULL, 0.8, &error);
    g_assert_no_error(error);
    guint n_state = 0;
    double *state = lmn_schedule_get_state(a, &n_state);
    g_assert_cmpuint(n_state, >=, 3);
    g_assert_cmpfloat(lmn_schedule_get_lr(a, 0, 0, 1), ==, 0.8);

    /* 1.0 best; 1.0, 1.0 two bad epochs > patience 1: halve; cool-down 1 epoch ignores one */
    const double metrics[] = {1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 0.5};
    const double lr_after[] = {0.8, 0.8, 0.4, 0.4, 0.4, 0.2, 0.2};
    for (gsize i = 0; i < G_N_ELEMENTS(metrics); i++) {
        lmn_schedule_observe(a, metrics[i]);
        g_assert_cmpfloat(fabs(lmn_schedule_get_lr(a, 0, (gint64) i + 1, 1) - lr_after[i]), <=,
                          1e-15);
        if (i == 3) {
            LmnSchedule *b =
                lmn_schedule_new(registry, "reduce_on_plateau", params, NULL, 0.8, &error);
            g_assert_no_error(error);
            guint nb = 0;
            double *sb = lmn_schedule_get_state(b, &nb);
            g_assert_cmpuint(nb, ==, n_state);
            memcpy(sb, state, n_state * sizeof(double));
            for (gsize j = i + 1; j < G_N_ELEMENTS(metrics); j++) {
                lmn_schedule_observe(b, metrics[j]);
                g_assert_cmpfloat(fabs(lmn_schedule_get_lr(b, 0, 0, 1) - lr_after[j]), <=, 1e-15);
            }
            lmn_schedule_free(b);
        }
    }
    lmn_schedule_free(a);
    lmn_params_unref(params);
}

/* Schedules spanning the run take its length from lmn_schedule_set_run_length(): one_cycle
 * (OneCycleLR), and cosine and linear without t_max / total, against torch told the length
 * (tests/fixtures/schedules-run-length.h5 from scripts/make-schedule-run-length-fixtures.py). */
static herr_t run_length_case(hid_t file, const char *name, const H5L_info_t *info, void *data)
{
    (void) info;
    guint *n_cases = data;
    hid_t g = H5Gopen2(file, name, H5P_DEFAULT);
    KeyValues kv = {g_ptr_array_new_with_free_func(g_free), g_ptr_array_new_with_free_func(g_free)};
    hsize_t idx = 0;
    g_assert_cmpint(H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr, &kv), >=, 0);
    g_ptr_array_add(kv.keys, NULL);
    g_ptr_array_add(kv.values, NULL);
    g_autofree char *type = attr_text(g, "type");
    g_autofree char *unit = attr_text(g, "unit");
    g_autoptr(GError) error = NULL;
    LmnParams *params = validate(type, (const char *const *) kv.keys->pdata,
                                 (const char *const *) kv.values->pdata, &error);
    g_assert_no_error(error);
    LmnScheduleCommon common = {
        g_str_equal(unit, "step") ? LMN_SCHEDULE_UNIT_STEP : LMN_SCHEDULE_UNIT_EPOCH, 0, 0.1};
    double base_lr = read_attr(g, "base_lr");
    gint64 epochs = (gint64) read_attr(g, "epochs"), spe = (gint64) read_attr(g, "steps_per_epoch");
    LmnSchedule *sched = lmn_schedule_new(registry, type, params, &common, base_lr, &error);
    g_assert_no_error(error);
    lmn_schedule_set_run_length(sched, epochs, spe, (gint64) read_attr(g, "max_steps"));
    double *expect = NULL;
    gsize count = read_doubles(g, "lr", &expect);
    for (gsize k = 0; k < count; k++) {
        double lr = lmn_schedule_get_lr(sched, (gint64) k, (gint64) k / spe, spe);
        if (!(fabs(lr - expect[k]) <= 1e-12 * base_lr))
            g_error("%s: step %" G_GSIZE_FORMAT ": lamina %.17g, torch %.17g", name, k, lr,
                    expect[k]);
    }
    g_free(expect);
    lmn_schedule_free(sched);
    lmn_params_unref(params);
    g_ptr_array_unref(kv.keys);
    g_ptr_array_unref(kv.values);
    H5Gclose(g);
    (*n_cases)++;
    return 0;
}

static void test_run_length(void)
{
    g_autofree char *path =
        g_build_filename(g_getenv("LMN_TEST_FIXTURES"), "schedules-run-length.h5", NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(file, >=, 0);
    guint n_cases = 0;
    hsize_t idx = 0;
    H5Literate(file, H5_INDEX_NAME, H5_ITER_INC, &idx, run_length_case, &n_cases);
    H5Fclose(file);
    g_assert_cmpuint(n_cases, ==, 5);

    /* Without a run length (a schedule used alone) they hold the base rate. */
    g_autoptr(GError) error = NULL;
    const char *keys[] = {NULL};
    LmnParams *params = validate("cosine", keys, keys, &error);
    g_assert_no_error(error);
    LmnSchedule *s = lmn_schedule_new(registry, "cosine", params, NULL, 0.3, &error);
    g_assert_no_error(error);
    g_assert_cmpfloat(lmn_schedule_get_lr(s, 5, 2, 3), ==, 0.3);
    lmn_schedule_free(s);
    lmn_params_unref(params);
}

/* one_cycle's validate hook refuses a rising phase shorter than one step, naming the keys. */
static void test_one_cycle_validate(void)
{
    g_autoptr(GError) error = NULL;
    const char *keys[] = {"total", "pct_start", NULL};
    const char *values[] = {"3", "0.25", NULL};
    LmnParams *params = validate("one_cycle", keys, values, &error);
    g_assert_no_error(error);
    g_assert_null(lmn_schedule_new(registry, "one_cycle", params, NULL, 0.1, &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
    g_assert_nonnull(strstr(error->message, "[schedule] type = one_cycle"));
    g_assert_nonnull(strstr(error->message, "pct_start"));
    lmn_params_unref(params);
}

/* Warm-up composes with any schedule (core): with cosine, the product of both. */
static void test_warmup_cosine(void)
{
    g_autoptr(GError) error = NULL;
    const char *keys[] = {"t_max", NULL};
    const char *values[] = {"10", NULL};
    LmnParams *params = validate("cosine", keys, values, &error);
    g_assert_no_error(error);
    LmnScheduleCommon common = {LMN_SCHEDULE_UNIT_STEP, 4, 0.5};
    LmnSchedule *s = lmn_schedule_new(registry, "cosine", params, &common, 1.0, &error);
    g_assert_no_error(error);
    for (gint64 t = 0; t < 12; t++) {
        double cosine = (1.0 + cos(G_PI * (double) t / 10.0)) / 2.0;
        double warm = t < 4 ? 0.5 + 0.5 * (double) t / 4.0 : 1.0;
        g_assert_cmpfloat(fabs(lmn_schedule_get_lr(s, t, 0, 100) - cosine * warm), <=, 1e-15);
    }
    lmn_schedule_free(s);
    lmn_params_unref(params);
}

/* Missing required keys, values torch rejects, and unknown keys: errors naming file and key. */
static void test_errors(void)
{
    static const struct {
        const char *type, *key, *value, *named;
        int code;
    } bad[] = {
        {"multistep", NULL, NULL, "milestones", LMN_CONFIG_ERROR_MISSING},
        {"multistep", "milestones", "3, -1", "milestones", LMN_CONFIG_ERROR_INVALID},
        {"multistep", "milestones", "3, x", "milestones", LMN_CONFIG_ERROR_INVALID},
        {"exponential", NULL, NULL, "gamma", LMN_CONFIG_ERROR_MISSING},
        {"exponential", "gamma", "-0.5", "gamma", LMN_CONFIG_ERROR_INVALID},
        {"time_decay", "decay", "-1", "decay", LMN_CONFIG_ERROR_INVALID},
        {"inverse", "gamma", "0.5", "gamma", LMN_CONFIG_ERROR_UNKNOWN_KEY},
        {"linear", "total", "-1", "total", LMN_CONFIG_ERROR_INVALID},
        {"cosine", "t_max", "-2", "t_max", LMN_CONFIG_ERROR_INVALID},
        {"one_cycle", "pct_start", "0", "pct_start", LMN_CONFIG_ERROR_INVALID},
        {"one_cycle", "pct_start", "1", "pct_start", LMN_CONFIG_ERROR_INVALID},
        {"one_cycle", "div_factor", "0", "div_factor", LMN_CONFIG_ERROR_INVALID},
        {"one_cycle", "anneal", "cosine", "anneal", LMN_CONFIG_ERROR_INVALID},
        {"cosine", "t_max", "2.5", "t_max", LMN_CONFIG_ERROR_INVALID},
        {"cosine_restarts", "t_0", "-3", "t_0", LMN_CONFIG_ERROR_INVALID},
        {"reduce_on_plateau", "factor", "1", "factor", LMN_CONFIG_ERROR_INVALID},
        {"reduce_on_plateau", "mode", "maximum", "mode", LMN_CONFIG_ERROR_INVALID},
        {"reduce_on_plateau", "threshold_mode", "relative", "threshold_mode",
         LMN_CONFIG_ERROR_INVALID},
        {"reduce_on_plateau", "patience", "-1", "patience", LMN_CONFIG_ERROR_INVALID},
        {"reduce_on_plateau", "pateince", "3", "pateince", LMN_CONFIG_ERROR_UNKNOWN_KEY},
    };
    for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autoptr(GError) error = NULL;
        const char *keys[] = {bad[i].key, NULL};
        const char *values[] = {bad[i].value, NULL};
        g_assert_null(validate(bad[i].type, keys, values, &error));
        g_assert_error(error, LMN_CONFIG_ERROR, bad[i].code);
        g_assert_nonnull(strstr(error->message, bad[i].named));
        g_assert_nonnull(strstr(error->message, "model.ini"));
    }
}

/* Every schedule is registered, documented, and listed with its keys. */
static void test_schemas(void)
{
    for (gsize i = 0; i < G_N_ELEMENTS(schedule_types); i++) {
        g_autoptr(GError) error = NULL;
        const LmnFeature *f =
            lmn_registry_lookup(registry, LMN_FEATURE_SCHEDULE, schedule_types[i], &error);
        g_assert_no_error(error);
        g_assert_nonnull(f->desc->description);
        for (const LmnParamSpec *s = f->desc->params; s != NULL && s->name != NULL; s++)
            g_assert_cmpuint(strlen(s->doc), >, 10);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    registry = lmn_registry_new();
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_registry_scan(registry, &error));

    for (gsize i = 0; i < G_N_ELEMENTS(schedule_types); i++) {
        g_autofree char *path =
            g_strdup_printf("/optim/schedules/%s/matches-pytorch", schedule_types[i]);
        g_test_add_data_func(path, schedule_types[i], test_vs_pytorch);
    }
    g_test_add_func("/optim/schedules/reduce_on_plateau/state", test_plateau_state);
    g_test_add_func("/optim/schedules/cosine/warmup", test_warmup_cosine);
    g_test_add_func("/optim/schedules/run-length/matches-pytorch", test_run_length);
    g_test_add_func("/optim/schedules/one_cycle/validate", test_one_cycle_validate);
    g_test_add_func("/optim/schedules/new-types/errors", test_errors);
    g_test_add_func("/optim/schedules/new-types/schemas", test_schemas);
    int rc = g_test_run();
    lmn_registry_free(registry);
    return rc;
}
