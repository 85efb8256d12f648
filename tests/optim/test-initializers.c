/* Tests of the initializers plugin against torch.nn.init's closed forms: bounds, and sample
 * mean and variance within 5-sigma bounds computed from the sample size; gains; PyTorch's fan
 * rule; reproducibility per stream; and the errors for impossible settings.
 */
#include <lamina/lamina.h>

#include <math.h>
#include <string.h>

static LmnRegistry *registry;

/* Runs initializer @name with "k=v" pairs (NULL-terminated) on a [rows, cols] weight. */
static gboolean run_init(const char *name, const char *const *kv, const LmnShape *shape,
                         guint64 stream, float **data_out, GError **error)
{
    const LmnFeature *feature = lmn_registry_lookup(registry, LMN_FEATURE_INITIALIZER, name, error);
    if (feature == NULL)
        return FALSE;
    g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) values = g_ptr_array_new_with_free_func(g_free);
    for (gsize i = 0; kv != NULL && kv[i] != NULL; i++) {
        const char *eq = strchr(kv[i], '=');
        g_ptr_array_add(keys, g_strndup(kv[i], eq - kv[i]));
        g_ptr_array_add(values, g_strdup(eq + 1));
    }
    g_ptr_array_add(keys, NULL);
    g_ptr_array_add(values, NULL);
    LmnParams *params = lmn_registry_validate_params(feature, (const char *const *) keys->pdata,
                                                     (const char *const *) values->pdata,
                                                     "test.ini [layer fc] weight_init", error);
    if (params == NULL)
        return FALSE;

    LmnRandom random;
    lmn_random_init(&random, 1234, stream);
    LmnInitTarget target = {.struct_size = sizeof target,
                            .shape = shape,
                            .numel = lmn_shape_numel(shape),
                            .random = &random};
    lmn_shape_fans(shape, &target.fan_in, &target.fan_out);
    float *data = g_new(float, target.numel);
    const LmnInitializerVTable *vt = feature->desc->vtable;
    gboolean ok = vt->fill(params, &target, data, error);
    lmn_params_unref(params);
    if (!ok) {
        g_free(data);
        return FALSE;
    }
    *data_out = data;
    return TRUE;
}

typedef struct {
    double mean, var, min, max;
} Stats;

static Stats stats_of(const float *x, gsize n)
{
    Stats s = {0.0, 0.0, INFINITY, -INFINITY};
    for (gsize i = 0; i < n; i++) {
        s.mean += x[i];
        s.min = MIN(s.min, x[i]);
        s.max = MAX(s.max, x[i]);
    }
    s.mean /= (double) n;
    for (gsize i = 0; i < n; i++)
        s.var += (x[i] - s.mean) * (x[i] - s.mean);
    s.var /= (double) (n - 1);
    return s;
}

/* U(lo, hi): values inside, the extremes close to the bounds, moments within 5 sigma. */
static void assert_uniform(const float *x, gsize n, double lo, double hi)
{
    Stats s = stats_of(x, n);
    double w = hi - lo;
    double var = w * w / 12.0, mu4 = w * w * w * w / 80.0;
    g_assert_cmpfloat(s.min, >=, lo);
    g_assert_cmpfloat(s.max, <=, hi);
    /* with n >= 10^4 draws the extremes come within w/1000 of the bounds (p < 1e-4) */
    g_assert_cmpfloat(s.min, <, lo + w * 1e-3);
    g_assert_cmpfloat(s.max, >, hi - w * 1e-3);
    g_assert_cmpfloat(fabs(s.mean - (lo + hi) / 2.0), <=, 5.0 * sqrt(var / n));
    g_assert_cmpfloat(fabs(s.var - var), <=, 5.0 * sqrt((mu4 - var * var) / n));
}

static void assert_normal(const float *x, gsize n, double mean, double std)
{
    Stats s = stats_of(x, n);
    double var = std * std;
    g_assert_cmpfloat(fabs(s.mean - mean), <=, 5.0 * std / sqrt(n));
    g_assert_cmpfloat(fabs(s.var - var), <=, 5.0 * sqrt(2.0 * var * var / n));
}

static const LmnShape *weight_shape(void)
{
    static LmnShape shape;
    shape = lmn_shape_make(2, (gint64) 160, (gint64) 125); /* fan_in 125, fan_out 160 */
    return &shape;
}

#define NUMEL (160 * 125)

static void test_fans(void)
{
    /* Expected values printed by torch.nn.init._calculate_fan_in_and_fan_out. */
    static const struct {
        guint ndim;
        gint64 dims[5];
        double fan_in, fan_out;
    } cases[] = {
        {2, {10, 20}, 20, 10},          {4, {8, 3, 5, 5}, 75, 200}, {3, {4, 6, 3}, 18, 12},
        {5, {2, 3, 4, 5, 6}, 360, 240}, {4, {16, 1, 3, 3}, 9, 144},
    };
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        LmnShape shape = {.ndim = cases[i].ndim};
        memcpy(shape.dims, cases[i].dims, sizeof shape.dims);
        double fi, fo;
        lmn_shape_fans(&shape, &fi, &fo);
        g_assert_cmpfloat(fi, ==, cases[i].fan_in);
        g_assert_cmpfloat(fo, ==, cases[i].fan_out);
    }
    /* a vector is its own fan (PyTorch refuses; biases use their weight's fans anyway) */
    LmnShape vec = lmn_shape_make(1, (gint64) 7);
    double fi, fo;
    lmn_shape_fans(&vec, &fi, &fo);
    g_assert_cmpfloat(fi, ==, 7);
    g_assert_cmpfloat(fo, ==, 7);
}

static void test_zeros_constant(void)
{
    g_autoptr(GError) error = NULL;
    float *x;
    g_assert_true(run_init("zeros", NULL, weight_shape(), 1, &x, &error));
    g_assert_no_error(error);
    for (gsize i = 0; i < NUMEL; i++)
        g_assert_cmpfloat(x[i], ==, 0.0f);
    g_free(x);

    const char *kv[] = {"value=-2.5", NULL};
    g_assert_true(run_init("constant", kv, weight_shape(), 1, &x, &error));
    for (gsize i = 0; i < NUMEL; i++)
        g_assert_cmpfloat(x[i], ==, -2.5f);
    g_free(x);
    g_assert_true(run_init("constant", NULL, weight_shape(), 1, &x, &error));
    g_assert_cmpfloat(x[0], ==, 0.0f); /* default value 0 */
    g_free(x);
}

static void test_uniform_normal(void)
{
    g_autoptr(GError) error = NULL;
    float *x;
    g_assert_true(run_init("uniform", NULL, weight_shape(), 1, &x, &error));
    g_assert_no_error(error);
    assert_uniform(x, NUMEL, 0.0, 1.0); /* torch defaults a = 0, b = 1 */
    g_free(x);

    const char *kv_u[] = {"a=-3", "b=0.5", NULL};
    g_assert_true(run_init("uniform", kv_u, weight_shape(), 2, &x, &error));
    assert_uniform(x, NUMEL, -3.0, 0.5);
    g_free(x);

    g_assert_true(run_init("normal", NULL, weight_shape(), 3, &x, &error));
    assert_normal(x, NUMEL, 0.0, 1.0);
    g_free(x);

    const char *kv_n[] = {"mean=2", "std=0.01", NULL};
    g_assert_true(run_init("normal", kv_n, weight_shape(), 4, &x, &error));
    assert_normal(x, NUMEL, 2.0, 0.01);
    g_free(x);
}

static void test_xavier(void)
{
    g_autoptr(GError) error = NULL;
    float *x;
    const double fans = 125 + 160;

    g_assert_true(run_init("xavier_uniform", NULL, weight_shape(), 1, &x, &error));
    g_assert_no_error(error);
    double bound = sqrt(6.0 / fans);
    assert_uniform(x, NUMEL, -bound, bound);
    g_free(x);

    const char *kv[] = {"gain=1.5", NULL};
    g_assert_true(run_init("xavier_uniform", kv, weight_shape(), 1, &x, &error));
    assert_uniform(x, NUMEL, -1.5 * bound, 1.5 * bound);
    g_free(x);

    g_assert_true(run_init("xavier_normal", NULL, weight_shape(), 1, &x, &error));
    assert_normal(x, NUMEL, 0.0, sqrt(2.0 / fans));
    g_free(x);
    g_assert_true(run_init("xavier_normal", kv, weight_shape(), 1, &x, &error));
    assert_normal(x, NUMEL, 0.0, 1.5 * sqrt(2.0 / fans));
    g_free(x);
}

/* torch.nn.init.kaiming_*_: std = gain / sqrt(fan), bound = sqrt(3) * std, with
 * calculate_gain(nonlinearity, a). */
static void test_he(void)
{
    static const struct {
        const char *kv[4];
        double gain;
        double fan;
    } cases[] = {
        {{NULL}, 1.4142135623730951, 125},          /* leaky_relu, a = 0 */
        {{"a=0.2", NULL}, 1.3867504905630728, 125}, /* sqrt(2 / 1.04) */
        {{"nonlinearity=relu", NULL}, 1.4142135623730951, 125},
        {{"nonlinearity=tanh", NULL}, 5.0 / 3.0, 125},
        {{"nonlinearity=linear", NULL}, 1.0, 125},
        {{"nonlinearity=sigmoid", NULL}, 1.0, 125},
        {{"nonlinearity=selu", NULL}, 0.75, 125},
        {{"nonlinearity=conv2d", NULL}, 1.0, 125},
        {{"mode=fan_out", NULL}, 1.4142135623730951, 160},
        {{"mode=fan_out", "nonlinearity=leaky_relu", "a=1", NULL}, 1.0, 160},
    };
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GError) error = NULL;
        float *x;
        double std = cases[i].gain / sqrt(cases[i].fan);
        g_assert_true(run_init("he_uniform", cases[i].kv, weight_shape(), i, &x, &error));
        g_assert_no_error(error);
        assert_uniform(x, NUMEL, -sqrt(3.0) * std, sqrt(3.0) * std);
        g_free(x);
        g_assert_true(run_init("he_normal", cases[i].kv, weight_shape(), i, &x, &error));
        g_assert_no_error(error);
        assert_normal(x, NUMEL, 0.0, std);
        g_free(x);
    }

    /* 4-D weights take the receptive field into the fan: [32, 16, 3, 3] has fan_in 144. */
    LmnShape conv = lmn_shape_make(4, (gint64) 32, (gint64) 16, (gint64) 3, (gint64) 3);
    g_autoptr(GError) error = NULL;
    float *x;
    g_assert_true(run_init("he_normal", NULL, &conv, 9, &x, &error));
    assert_normal(x, lmn_shape_numel(&conv), 0.0, sqrt(2.0 / 144.0));
    g_free(x);
}

/* The same stream gives the same values; another stream other values. */
static void test_reproducible(void)
{
    g_autoptr(GError) error = NULL;
    float *a, *b, *c;
    g_assert_true(run_init("he_uniform", NULL, weight_shape(), 5, &a, &error));
    g_assert_true(run_init("he_uniform", NULL, weight_shape(), 5, &b, &error));
    g_assert_true(run_init("he_uniform", NULL, weight_shape(), 6, &c, &error));
    g_assert_cmpmem(a, NUMEL * sizeof(float), b, NUMEL * sizeof(float));
    int same = 0;
    for (gsize i = 0; i < NUMEL; i++)
        same += a[i] == c[i];
    g_assert_cmpint(same, <, 10);
    g_free(a);
    g_free(b);
    g_free(c);
}

static void assert_fails(const char *name, const char *const *kv, const LmnShape *shape,
                         GQuark domain, int code, const char *const *needles)
{
    g_autoptr(GError) error = NULL;
    float *x = NULL;
    g_assert_false(run_init(name, kv, shape, 1, &x, &error));
    g_assert_null(x);
    g_assert_error(error, domain, code);
    for (gsize i = 0; needles[i] != NULL; i++) {
        if (strstr(error->message, needles[i]) == NULL)
            g_error("message \"%s\" does not name \"%s\"", error->message, needles[i]);
    }
}

static void test_errors(void)
{
    LmnShape empty_in = lmn_shape_make(2, (gint64) 4, (gint64) 0);
    LmnShape empty = lmn_shape_make(2, (gint64) 0, (gint64) 0);

    const char *he_n[] = {"he_uniform", "fan_in", "[4, 0]", NULL};
    assert_fails("he_uniform", NULL, &empty_in, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID, he_n);
    const char *hen_n[] = {"he_normal", "fan_in", NULL};
    assert_fails("he_normal", NULL, &empty_in, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID, hen_n);
    const char *fan_out_kv[] = {"mode=fan_out", NULL};
    const char *fan_out_n[] = {"he_normal", "fan_out", "[0, 0]", NULL};
    assert_fails("he_normal", fan_out_kv, &empty, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                 fan_out_n);
    const char *xu_n[] = {"xavier_uniform", "fan_in + fan_out", NULL};
    assert_fails("xavier_uniform", NULL, &empty, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID, xu_n);
    const char *xn_n[] = {"xavier_normal", NULL};
    assert_fails("xavier_normal", NULL, &empty, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID, xn_n);

    /* a fan_out-mode He initializer only needs fan_out: [4, 0] has fan_out 4 and works */
    g_autoptr(GError) error = NULL;
    float *x = NULL;
    g_assert_true(run_init("he_uniform", fan_out_kv, &empty_in, 1, &x, &error));
    g_assert_no_error(error);
    g_free(x);

    const char *ab_kv[] = {"a=1", "b=0", NULL};
    const char *ab_n[] = {"uniform", "a = 1", "b = 0", NULL};
    assert_fails("uniform", ab_kv, weight_shape(), LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                 ab_n);

    /* the schemas reject what torch rejects */
    const char *nl_kv[] = {"nonlinearity=swish", NULL};
    const char *nl_n[] = {"nonlinearity", NULL};
    assert_fails("he_uniform", nl_kv, weight_shape(), LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                 nl_n);
    const char *mode_kv[] = {"mode=fan_avg", NULL};
    const char *mode_n[] = {"mode", NULL};
    assert_fails("he_normal", mode_kv, weight_shape(), LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                 mode_n);
    const char *std_kv[] = {"std=-1", NULL};
    const char *std_n[] = {"std", NULL};
    assert_fails("normal", std_kv, weight_shape(), LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                 std_n);
    const char *unk_kv[] = {"gian=2", NULL};
    const char *unk_n[] = {"gian", NULL};
    assert_fails("xavier_uniform", unk_kv, weight_shape(), LMN_CONFIG_ERROR,
                 LMN_CONFIG_ERROR_UNKNOWN_KEY, unk_n);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    registry = lmn_registry_new();
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_registry_scan(registry, &error));
    g_assert_no_error(error);

    g_test_add_func("/optim/initializers/fans", test_fans);
    g_test_add_func("/optim/initializers/zeros-constant", test_zeros_constant);
    g_test_add_func("/optim/initializers/uniform-normal", test_uniform_normal);
    g_test_add_func("/optim/initializers/xavier", test_xavier);
    g_test_add_func("/optim/initializers/he", test_he);
    g_test_add_func("/optim/initializers/reproducible", test_reproducible);
    g_test_add_func("/optim/initializers/errors", test_errors);
    int rc = g_test_run();
    lmn_registry_free(registry);
    return rc;
}
