/* Tests of every optimizer plugin besides sgd (adagrad, rmsprop, adam, adamw, nadam, radam,
 * adamax, adadelta) against trajectories recorded from torch.optim by
 * scripts/make-optim-fixtures.py (tests/fixtures/optim-NAME.h5).  One table drives them all:
 * for every optimizer and every case the recorded gradients and learning rates are fed step by
 * step on the CPU backend, the parameters are compared after every step relative to how far the
 * whole trajectory moves (max |lamina - torch| / max |p_T - p_0| <= 1e-5), and at the end every
 * tensor of torch's per-parameter state is compared with the Lamina slot of the same name, scalar
 * state (NAdam's mu_product) with the host state, and slots torch never created must still hold
 * their initial value.  The schemas' defaults and bounds are checked against torch's.
 */
#include <lamina/lamina.h>

#include <hdf5.h>
#include <math.h>
#include <string.h>

static LmnRegistry *registry;
static LmnBackend *backend;

/* The table: each optimizer, the cases its fixture must hold (every option torch 1.13 has), and
 * its defaults as torch.optim declares them. */
typedef struct {
    const char *name;
    const char *cases[12];
    const char *defaults[10][2];
} OptimizerCases;

static const OptimizerCases optimizers[] = {
    {"adagrad",
     {"plain", "weight_decay", "lr_decay", "initial_accumulator_value", "eps", "maximize",
      "steplr"},
     {{"lr", "0.01"},
      {"lr_decay", "0"},
      {"weight_decay", "0"},
      {"initial_accumulator_value", "0"},
      {"eps", "1e-10"},
      {"maximize", "false"}}},
    {"rmsprop",
     {"plain", "alpha", "weight_decay", "momentum", "centered", "centered_momentum", "maximize",
      "steplr", "nesterov", "nesterov_centered", "nesterov_maximize"},
     {{"lr", "0.01"},
      {"alpha", "0.99"},
      {"eps", "1e-8"},
      {"weight_decay", "0"},
      {"momentum", "0"},
      {"centered", "false"},
      {"maximize", "false"},
      {"nesterov", "false"}}},
    {"adam",
     {"plain", "betas", "eps", "weight_decay", "amsgrad", "maximize",
      "amsgrad_weight_decay_maximize", "steplr"},
     {{"lr", "0.001"},
      {"beta1", "0.9"},
      {"beta2", "0.999"},
      {"eps", "1e-8"},
      {"weight_decay", "0"},
      {"amsgrad", "false"},
      {"maximize", "false"}}},
    {"adamw",
     {"plain", "no_weight_decay", "weight_decay", "betas", "amsgrad", "maximize",
      "amsgrad_maximize", "steplr"},
     {{"lr", "0.001"},
      {"beta1", "0.9"},
      {"beta2", "0.999"},
      {"eps", "1e-8"},
      {"weight_decay", "0.01"},
      {"amsgrad", "false"},
      {"maximize", "false"}}},
    {"nadam",
     {"plain", "betas", "weight_decay", "momentum_decay", "eps", "steplr"},
     {{"lr", "0.002"},
      {"beta1", "0.9"},
      {"beta2", "0.999"},
      {"eps", "1e-8"},
      {"weight_decay", "0"},
      {"momentum_decay", "0.004"}}},
    {"radam",
     {"plain", "betas", "weight_decay", "eps", "steplr"},
     {{"lr", "0.001"},
      {"beta1", "0.9"},
      {"beta2", "0.999"},
      {"eps", "1e-8"},
      {"weight_decay", "0"}}},
    {"adamax",
     {"plain", "betas", "weight_decay", "eps", "maximize", "steplr"},
     {{"lr", "0.002"},
      {"beta1", "0.9"},
      {"beta2", "0.999"},
      {"eps", "1e-8"},
      {"weight_decay", "0"},
      {"maximize", "false"}}},
    {"adadelta",
     {"plain", "rho", "eps", "weight_decay", "maximize", "steplr"},
     {{"lr", "1"}, {"rho", "0.9"}, {"eps", "1e-6"}, {"weight_decay", "0"}, {"maximize", "false"}}},
};

/* ---- fixture reading ---- */

static double read_attr_double(hid_t obj, const char *name)
{
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    g_assert_cmpint(attr, >=, 0);
    double value = 0.0;
    g_assert_cmpint(H5Aread(attr, H5T_NATIVE_DOUBLE, &value), >=, 0);
    H5Aclose(attr);
    return value;
}

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

/* Collects the "hp.KEY" attributes as config texts typed by the optimizer's schema, and the
 * "host.NAME" attributes. */
typedef struct {
    const LmnParamSpec *schema;
    GPtrArray *keys, *values;
    GPtrArray *host_names;
    GArray *host_values;
} CaseAttrs;

static herr_t collect_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    CaseAttrs *ca = data;
    if (g_str_has_prefix(name, "hp.")) {
        const char *key = name + 3;
        const LmnParamSpec *spec = lmn_param_spec_find(ca->schema, key);
        if (spec == NULL)
            g_error("fixture key '%s' is not in the optimizer's schema", key);
        double v = read_attr_double(loc, name);
        char *text = spec->type == LMN_PARAM_BOOL ? g_strdup(v != 0 ? "true" : "false")
                     : spec->type == LMN_PARAM_INT
                         ? g_strdup_printf("%" G_GINT64_FORMAT, (gint64) v)
                         : g_strdup_printf("%.17g", v);
        g_ptr_array_add(ca->keys, g_strdup(key));
        g_ptr_array_add(ca->values, text);
    } else if (g_str_has_prefix(name, "host.")) {
        double v = read_attr_double(loc, name);
        g_ptr_array_add(ca->host_names, g_strdup(name + 5));
        g_array_append_val(ca->host_values, v);
    }
    return 0;
}

/* ---- helpers ---- */

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

static const LmnFeature *optimizer_feature(const char *name)
{
    g_autoptr(GError) error = NULL;
    const LmnFeature *f = lmn_registry_lookup(registry, LMN_FEATURE_OPTIMIZER, name, &error);
    g_assert_no_error(error);
    g_assert_nonnull(f);
    return f;
}

/* ---- the PyTorch trajectories ---- */

typedef struct {
    const char *optimizer;
    const char *name;
} CaseRef;

static void run_case(gconstpointer data)
{
    const CaseRef *ref = data;
    g_autoptr(GError) error = NULL;
    g_autofree char *file_name = g_strdup_printf("optim-%s.h5", ref->optimizer);
    g_autofree char *path = g_build_filename(g_getenv("LMN_TEST_FIXTURES"), file_name, NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(file, >=, 0);
    hid_t group = H5Gopen2(file, ref->name, H5P_DEFAULT);
    g_assert_cmpint(group, >=, 0);

    const LmnFeature *feature = optimizer_feature(ref->optimizer);
    CaseAttrs ca = {
        .schema = feature->desc->params,
        .keys = g_ptr_array_new_with_free_func(g_free),
        .values = g_ptr_array_new_with_free_func(g_free),
        .host_names = g_ptr_array_new_with_free_func(g_free),
        .host_values = g_array_new(FALSE, FALSE, sizeof(double)),
    };
    hsize_t idx = 0;
    g_assert_cmpint(H5Aiterate2(group, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr, &ca), >=, 0);
    g_assert_cmpuint(ca.keys->len, >=, 1); /* at least lr */
    g_ptr_array_add(ca.keys, NULL);
    g_ptr_array_add(ca.values, NULL);
    g_autofree char *where = g_strdup_printf("%s:/%s [optimizer]", file_name, ref->name);
    LmnParams *hyper =
        lmn_registry_validate_params(feature, (const char *const *) ca.keys->pdata,
                                     (const char *const *) ca.values->pdata, where, &error);
    g_assert_no_error(error);

    const gint64 n = (gint64) read_attr_double(group, "n");
    const gint64 steps = (gint64) read_attr_double(group, "steps");
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

    LmnTensor *p = vector_new(n, params0);
    LmnTensor *g = vector_new(n, NULL);
    LmnOptimizer *opt = lmn_optimizer_new(registry, ref->optimizer, hyper, p, g, &error);
    g_assert_no_error(error);
    g_assert_nonnull(opt);

    double scale = 1e-30;
    for (gint64 i = 0; i < n; i++)
        scale = MAX(scale, fabs((double) expect[(steps - 1) * n + i] - params0[i]));
    /* a trajectory that barely moves would make the comparison meaningless */
    g_assert_cmpfloat(scale, >, 1e-2);

    float *got = g_new(float, n);
    double worst = 0.0;
    for (gint64 t = 0; t < steps; t++) {
        g_assert_true(lmn_tensor_write(g, grads + t * n, (gsize) n * sizeof(float), &error));
        g_assert_no_error(error);
        lmn_optimizer_step(opt, lrs[t]);
        read_vector(p, got);
        for (gint64 i = 0; i < n; i++) {
            double err = fabs((double) got[i] - expect[t * n + i]) / scale;
            worst = MAX(worst, err);
            if (!(err <= 1e-5))
                g_error("%s case %s: step %" G_GINT64_FORMAT ", element %" G_GINT64_FORMAT
                        ": lamina %.9g, torch %.9g (relative error %.3g)",
                        ref->optimizer, ref->name, t + 1, i, got[i], expect[t * n + i], err);
        }
    }
    g_test_message("%s/%s: worst relative deviation over %" G_GINT64_FORMAT " steps %.3g",
                   ref->optimizer, ref->name, steps, worst);

    /* Every tensor torch keeps is a slot of the same name and agrees; the others are untouched. */
    hid_t state = H5Gopen2(group, "state", H5P_DEFAULT);
    g_assert_cmpint(state, >=, 0);
    guint n_slots = lmn_optimizer_get_n_slots(opt);
    H5G_info_t state_info;
    g_assert_cmpint(H5Gget_info(state, &state_info), >=, 0);
    hsize_t n_torch = state_info.nlinks;
    guint n_matched = 0;
    for (guint s = 0; s < n_slots; s++) {
        const char *slot = lmn_optimizer_get_slot_name(opt, s);
        read_vector(lmn_optimizer_get_slot(opt, s), got);
        if (H5Lexists(state, slot, H5P_DEFAULT) > 0) {
            float *slot_expect;
            g_assert_cmpuint(read_dataset(state, slot, H5T_NATIVE_FLOAT, sizeof(float),
                                          (gpointer *) &slot_expect),
                             ==, (gsize) n);
            double slot_scale = 1e-30, slot_worst = 0.0;
            for (gint64 i = 0; i < n; i++)
                slot_scale = MAX(slot_scale, fabs(slot_expect[i]));
            for (gint64 i = 0; i < n; i++)
                slot_worst = MAX(slot_worst, fabs((double) got[i] - slot_expect[i]) / slot_scale);
            if (!(slot_worst <= 1e-5))
                g_error("%s case %s: slot %s deviates from torch by %.3g (relative)",
                        ref->optimizer, ref->name, slot, slot_worst);
            g_free(slot_expect);
            n_matched++;
        } else {
            const LmnOptimizerVTable *vt = feature->desc->vtable;
            double initial =
                LMN_VTABLE_HAS(vt, slot_initial_value) ? vt->slot_initial_value(hyper, s) : 0.0;
            for (gint64 i = 0; i < n; i++)
                g_assert_cmpfloat(got[i], ==, (float) initial);
        }
    }
    g_assert_cmpuint(n_matched, ==, (guint) n_torch);
    H5Gclose(state);

    guint n_host = 0;
    const char *const *host_names = NULL;
    double *host = lmn_optimizer_get_host_state(opt, &n_host, &host_names);
    g_assert_cmpuint(n_host, ==, ca.host_names->len);
    for (guint k = 0; k < ca.host_names->len; k++) {
        const char *name = g_ptr_array_index(ca.host_names, k);
        double want = g_array_index(ca.host_values, double, k);
        gboolean found = FALSE;
        for (guint j = 0; j < n_host; j++)
            if (g_str_equal(host_names[j], name)) {
                g_assert_cmpfloat(fabs(host[j] - want), <=, 1e-6 * fabs(want));
                found = TRUE;
            }
        g_assert_true(found);
    }

    g_free(got);
    lmn_optimizer_free(opt);
    lmn_tensor_unref(g);
    lmn_tensor_unref(p);
    lmn_params_unref(hyper);
    g_ptr_array_unref(ca.keys);
    g_ptr_array_unref(ca.values);
    g_ptr_array_unref(ca.host_names);
    g_array_unref(ca.host_values);
    g_free(params0);
    g_free(grads);
    g_free(expect);
    g_free(lrs);
    H5Gclose(group);
    H5Fclose(file);
}

/* The fixture holds every case of the table and nothing the table forgot. */
static void test_fixture_cases(gconstpointer data)
{
    const OptimizerCases *oc = data;
    g_autofree char *file_name = g_strdup_printf("optim-%s.h5", oc->name);
    g_autofree char *path = g_build_filename(g_getenv("LMN_TEST_FIXTURES"), file_name, NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(file, >=, 0);
    H5G_info_t info;
    g_assert_cmpint(H5Gget_info(file, &info), >=, 0);
    hsize_t n_groups = info.nlinks;
    guint n_cases = 0;
    for (; n_cases < G_N_ELEMENTS(oc->cases) && oc->cases[n_cases] != NULL; n_cases++)
        g_assert_true(H5Lexists(file, oc->cases[n_cases], H5P_DEFAULT) > 0);
    g_assert_cmpuint(n_cases, ==, (guint) n_groups);
    H5Fclose(file);
}

/* Defaults are torch's; every key is documented; lr is first. */
static void test_schema(gconstpointer data)
{
    const OptimizerCases *oc = data;
    g_autoptr(GError) error = NULL;
    const LmnFeature *f = optimizer_feature(oc->name);
    LmnParams *defaults = lmn_registry_validate_params(f, NULL, NULL, "test [optimizer]", &error);
    g_assert_no_error(error);
    guint n_specs = 0;
    for (const LmnParamSpec *s = f->desc->params; s->name != NULL; s++, n_specs++) {
        g_assert_nonnull(s->doc);
        g_assert_cmpuint(strlen(s->doc), >, 10);
    }
    guint n_defaults = 0;
    for (; n_defaults < G_N_ELEMENTS(oc->defaults) && oc->defaults[n_defaults][0] != NULL;
         n_defaults++) {
        const char *key = oc->defaults[n_defaults][0];
        const char *want = oc->defaults[n_defaults][1];
        const LmnParamSpec *spec = lmn_param_spec_find(f->desc->params, key);
        g_assert_nonnull(spec);
        if (spec->type == LMN_PARAM_BOOL)
            g_assert_cmpint(lmn_params_get_bool(defaults, key), ==, g_str_equal(want, "true"));
        else
            g_assert_cmpfloat(lmn_params_get_float(defaults, key), ==, g_ascii_strtod(want, NULL));
    }
    /* the table names every key of the schema */
    g_assert_cmpuint(n_defaults, ==, n_specs);
    lmn_params_unref(defaults);
}

/* What torch.optim's constructors reject, the schemas reject, naming file and key. */
static void test_errors(void)
{
    static const struct {
        const char *optimizer, *key, *value;
    } bad[] = {
        {"adam", "beta1", "1"},
        {"adam", "beta2", "1.5"},
        {"adam", "eps", "-1e-8"},
        {"adam", "lr", "-0.001"},
        {"adamw", "weight_decay", "-1"},
        {"adamw", "beta1", "-0.1"},
        {"nadam", "momentum_decay", "-1"},
        {"radam", "beta2", "1"},
        {"adamax", "beta1", "1"},
        {"adagrad", "lr_decay", "-0.5"},
        {"adagrad", "initial_accumulator_value", "-1"},
        {"rmsprop", "alpha", "-0.5"},
        {"rmsprop", "momentum", "-0.9"},
        {"rmsprop", "centered", "maybe"},
        {"rmsprop", "nesterov", "maybe"},
        {"adadelta", "rho", "1.5"},
        {"adadelta", "eps", "-1"},
        {"adam", "betas", "0.9"},
        {"nadam", "maximize", "true"},
    };
    g_autoptr(GError) error = NULL;
    for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
        const LmnFeature *f = optimizer_feature(bad[i].optimizer);
        const char *keys[] = {bad[i].key, NULL};
        const char *values[] = {bad[i].value, NULL};
        g_assert_null(
            lmn_registry_validate_params(f, keys, values, "model.ini [optimizer]", &error));
        int code = lmn_param_spec_find(f->desc->params, bad[i].key) != NULL
                       ? LMN_CONFIG_ERROR_INVALID
                       : LMN_CONFIG_ERROR_UNKNOWN_KEY;
        g_assert_error(error, LMN_CONFIG_ERROR, code);
        g_assert_nonnull(strstr(error->message, bad[i].key));
        g_assert_nonnull(strstr(error->message, "model.ini"));
        g_clear_error(&error);
    }
    /* A relation between keys: rmsprop's Nesterov momentum needs a momentum. */
    const LmnFeature *f = optimizer_feature("rmsprop");
    const char *keys[] = {"nesterov", NULL};
    const char *values[] = {"true", NULL};
    g_autoptr(LmnParams) hyper =
        lmn_registry_validate_params(f, keys, values, "model.ini [optimizer]", &error);
    g_assert_no_error(error);
    g_autoptr(LmnTensor) p = lmn_tensor_new(backend, LMN_DTYPE_F32, &(LmnShape){1, {4}}, &error);
    g_autoptr(LmnTensor) g = lmn_tensor_new(backend, LMN_DTYPE_F32, &(LmnShape){1, {4}}, &error);
    g_assert_no_error(error);
    g_assert_null(lmn_optimizer_new(registry, "rmsprop", hyper, p, g, &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
    g_assert_nonnull(strstr(error->message, "rmsprop"));
    g_assert_nonnull(strstr(error->message, "nesterov = true requires momentum > 0"));
}

/* A model-sized vector, split across the CPU backend's threads, against a naive double-free
 * float loop written from the formula (Adam with AMSGrad and weight decay, 3 steps). */
static void test_large_adam(void)
{
    const gint64 n = 100003;
    g_autoptr(GError) error = NULL;
    float *p0 = g_new(float, n), *g0 = g_new(float, n), *ref = g_new(float, n);
    float *m = g_new0(float, n), *v = g_new0(float, n), *vmax = g_new0(float, n);
    float *got = g_new(float, n);
    LmnRandom r;
    lmn_random_init(&r, 5, 0);
    for (gint64 i = 0; i < n; i++) {
        p0[i] = (float) lmn_random_normal(&r);
        g0[i] = (float) lmn_random_normal(&r);
        ref[i] = p0[i];
    }
    const LmnFeature *f = optimizer_feature("adam");
    const char *keys[] = {"amsgrad", "weight_decay", NULL};
    const char *values[] = {"true", "0.01", NULL};
    LmnParams *hyper = lmn_registry_validate_params(f, keys, values, "test", &error);
    g_assert_no_error(error);
    LmnTensor *p = vector_new(n, p0);
    LmnTensor *g = vector_new(n, g0);
    LmnOptimizer *opt = lmn_optimizer_new(registry, "adam", hyper, p, g, &error);
    g_assert_no_error(error);
    for (int step = 1; step <= 3; step++) {
        lmn_optimizer_step(opt, 0.01);
        double bc1 = 1.0 - pow(0.9, step), bc2 = 1.0 - pow(0.999, step);
        for (gint64 i = 0; i < n; i++) {
            float d = g0[i] + 0.01f * ref[i];
            m[i] = m[i] * 0.9f + 0.1f * d;
            v[i] = v[i] * 0.999f + (0.001f * d) * d;
            vmax[i] = MAX(vmax[i], v[i]);
            float denom = sqrtf(vmax[i]) / (float) sqrt(bc2) + 1e-8f;
            ref[i] = ref[i] + ((float) (-0.01 / bc1) * m[i]) / denom;
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
    g_free(m);
    g_free(v);
    g_free(vmax);
    g_free(got);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_autoptr(GError) error = NULL;
    registry = lmn_registry_new();
    g_assert_true(lmn_registry_scan(registry, &error));
    backend = lmn_backend_new(registry, "cpu", NULL, NULL, &error);
    g_assert_no_error(error);

    GPtrArray *refs = g_ptr_array_new_with_free_func(g_free);
    for (gsize o = 0; o < G_N_ELEMENTS(optimizers); o++) {
        const OptimizerCases *oc = &optimizers[o];
        g_autofree char *cases_path = g_strdup_printf("/optim/%s/fixture-cases", oc->name);
        g_test_add_data_func(cases_path, oc, test_fixture_cases);
        g_autofree char *schema_path = g_strdup_printf("/optim/%s/schema", oc->name);
        g_test_add_data_func(schema_path, oc, test_schema);
        for (gsize c = 0; c < G_N_ELEMENTS(oc->cases) && oc->cases[c] != NULL; c++) {
            CaseRef *ref = g_new(CaseRef, 1);
            ref->optimizer = oc->name;
            ref->name = oc->cases[c];
            g_ptr_array_add(refs, ref);
            g_autofree char *test_path =
                g_strdup_printf("/optim/%s/matches-pytorch/%s", oc->name, oc->cases[c]);
            g_test_add_data_func(test_path, ref, run_case);
        }
    }
    g_test_add_func("/optim/optimizers/errors", test_errors);
    g_test_add_func("/optim/adam/large-vs-naive", test_large_adam);
    int rc = g_test_run();
    g_ptr_array_unref(refs);
    lmn_backend_unref(backend);
    lmn_registry_free(registry);
    return rc;
}
