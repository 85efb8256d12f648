/* Tests of the initializers plugin against torch.nn.init's closed forms: bounds, and sample
 * mean and variance within 5-sigma bounds computed from the sample size; gains (values printed by
 * torch.nn.init.calculate_gain); PyTorch's fan rule; orthogonality; exact sparsity counts;
 * truncation bounds; reproducibility per stream; and the errors for impossible settings.
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

/* ---- LeCun, orthogonal, sparse, Kumar, truncated normal, calculate_gain ---- */

static void test_lecun(void)
{
    g_autoptr(GError) error = NULL;
    float *x;
    g_assert_true(run_init("lecun_uniform", NULL, weight_shape(), 11, &x, &error));
    g_assert_no_error(error);
    assert_uniform(x, NUMEL, -sqrt(3.0 / 125.0), sqrt(3.0 / 125.0));
    g_free(x);
    g_assert_true(run_init("lecun_normal", NULL, weight_shape(), 12, &x, &error));
    g_assert_no_error(error);
    assert_normal(x, NUMEL, 0.0, sqrt(1.0 / 125.0));
    g_free(x);
    /* The receptive field counts: [16, 8, 3, 3] has fan_in 72. */
    LmnShape conv = lmn_shape_make(4, (gint64) 16, (gint64) 8, (gint64) 3, (gint64) 3);
    g_assert_true(run_init("lecun_normal", NULL, &conv, 13, &x, &error));
    assert_normal(x, lmn_shape_numel(&conv), 0.0, sqrt(1.0 / 72.0));
    g_free(x);
}

/*
 * For W viewed as [rows, cols]: W^T W = gain^2 I when tall (rows >= cols), W W^T = gain^2 I when
 * wide, computed in double from the float values (float rounding of entries of size
 * 1/sqrt(rows) leaves an error around 1e-7, far inside 1e-5).
 */
static void assert_orthogonal(const float *w, gint64 rows, gint64 cols, double gain)
{
    gboolean wide = rows < cols;
    gint64 n = wide ? rows : cols, len = wide ? cols : rows;
    double worst = 0.0;
    for (gint64 i = 0; i < n; i++) {
        for (gint64 j = i; j < n; j++) {
            double dot = 0.0;
            for (gint64 k = 0; k < len; k++) {
                double a = wide ? w[i * cols + k] : w[k * cols + i];
                double b = wide ? w[j * cols + k] : w[k * cols + j];
                dot += a * b;
            }
            double expected = i == j ? gain * gain : 0.0;
            worst = MAX(worst, fabs(dot - expected));
        }
    }
    g_assert_cmpfloat(worst, <=, 1e-5 * MAX(gain * gain, 1.0));
}

static void test_orthogonal(void)
{
    static const struct {
        guint ndim;
        gint64 dims[4];
        const char *gain;
    } cases[] = {
        {2, {64, 16}, NULL},      {2, {16, 64}, NULL}, {2, {50, 50}, "2"},
        {2, {1, 40}, NULL},       {2, {40, 1}, "0.5"}, {4, {8, 3, 3, 3}, "1.4142135623730951"},
        {4, {40, 2, 2, 2}, NULL},
    };
    for (gsize c = 0; c < G_N_ELEMENTS(cases); c++) {
        LmnShape shape = {.ndim = cases[c].ndim};
        memcpy(shape.dims, cases[c].dims, sizeof cases[c].dims);
        g_autofree char *kv0 = cases[c].gain ? g_strdup_printf("gain=%s", cases[c].gain) : NULL;
        const char *kv[] = {kv0, NULL};
        g_autoptr(GError) error = NULL;
        float *w;
        g_assert_true(run_init("orthogonal", kv, &shape, 20 + c, &w, &error));
        g_assert_no_error(error);
        gint64 rows = shape.dims[0], cols = lmn_shape_numel(&shape) / rows;
        assert_orthogonal(w, rows, cols, cases[c].gain ? g_ascii_strtod(cases[c].gain, NULL) : 1);
        g_free(w);
    }

    /* Haar-distributed: over many 4x4 draws each entry has mean 0 and variance 1/4. */
    LmnShape small = lmn_shape_make(2, (gint64) 4, (gint64) 4);
    const gsize draws = 2000;
    g_autofree float *all = g_new(float, draws * 16);
    for (gsize d = 0; d < draws; d++) {
        g_autoptr(GError) error = NULL;
        float *w;
        g_assert_true(run_init("orthogonal", NULL, &small, 1000 + d, &w, &error));
        memcpy(all + d * 16, w, 16 * sizeof(float));
        g_free(w);
    }
    /* E[q^2] = 1/n, E[q^4] = 3 / (n (n + 2)) for a uniform unit vector's coordinate. */
    Stats s = stats_of(all, draws * 16);
    double var = 0.25, mu4 = 3.0 / 24.0;
    g_assert_cmpfloat(fabs(s.mean), <=, 5.0 * sqrt(var / (draws * 16.0)) * 2.0);
    g_assert_cmpfloat(fabs(s.var - var), <=, 5.0 * sqrt((mu4 - var * var) / draws));
}

static gint64 count_zeros(const float *x, gint64 start, gint64 stride, gint64 n)
{
    gint64 z = 0;
    for (gint64 i = 0; i < n; i++)
        z += x[start + i * stride] == 0.0f;
    return z;
}

static void test_sparse(void)
{
    /* torch: ceil(sparsity * rows) zeros per column, exactly (the normal draws are never 0). */
    static const struct {
        const char *sparsity;
        gint64 zeros; /* math.ceil(sparsity * 160) as Python computes it */
    } cases[] = {{"0.1", 16}, {"0.3", 48}, {"0.7", 112}, {"0", 0}, {"1", 160}, {"0.001", 1}};
    for (gsize c = 0; c < G_N_ELEMENTS(cases); c++) {
        g_autofree char *kv0 = g_strdup_printf("sparsity=%s", cases[c].sparsity);
        const char *kv[] = {kv0, NULL};
        g_autoptr(GError) error = NULL;
        float *x;
        g_assert_true(run_init("sparse", kv, weight_shape(), 30 + c, &x, &error));
        g_assert_no_error(error);
        for (gint64 col = 0; col < 125; col++)
            g_assert_cmpint(count_zeros(x, col, 125, 160), ==, cases[c].zeros);
        g_free(x);
    }

    /* The non-zeros are N(0, std^2): default std 0.01, and another std. */
    const char *kv_std[] = {"sparsity=0.5", "std=2", NULL};
    g_autoptr(GError) error = NULL;
    float *x;
    g_assert_true(run_init("sparse", kv_std, weight_shape(), 40, &x, &error));
    g_autofree float *nz = g_new(float, NUMEL);
    gsize n = 0;
    for (gsize i = 0; i < NUMEL; i++) {
        if (x[i] != 0.0f)
            nz[n++] = x[i];
    }
    g_assert_cmpuint(n, ==, NUMEL / 2);
    assert_normal(nz, n, 0.0, 2.0);
    g_free(x);
    g_assert_true(run_init("sparse", NULL, weight_shape(), 41, &x, &error));
    n = 0;
    for (gsize i = 0; i < NUMEL; i++) {
        if (x[i] != 0.0f)
            nz[n++] = x[i];
    }
    g_assert_cmpuint(n, ==, NUMEL - 16 * 125);
    assert_normal(nz, n, 0.0, 0.01);
    g_free(x);

    /* Martens: exactly k non-zero incoming weights per unit (row). */
    const char *kv_k[] = {"k=15", "std=1", NULL};
    g_assert_true(run_init("sparse", kv_k, weight_shape(), 42, &x, &error));
    g_assert_no_error(error);
    n = 0;
    for (gint64 row = 0; row < 160; row++)
        g_assert_cmpint(count_zeros(x, row * 125, 1, 125), ==, 125 - 15);
    for (gsize i = 0; i < NUMEL; i++) {
        if (x[i] != 0.0f)
            nz[n++] = x[i];
    }
    assert_normal(nz, n, 0.0, 1.0);
    g_free(x);
    /* ... and the chosen inputs differ between units. */
    const char *kv_k1[] = {"k=1", NULL};
    g_assert_true(run_init("sparse", kv_k1, weight_shape(), 43, &x, &error));
    gint64 first_col_hits = count_zeros(x, 0, 125, 160);
    g_assert_cmpint(first_col_hits, >, 140); /* about 160 * 124/125 */
    g_assert_cmpint(first_col_hits, <, 160 - 0 + 1);
    g_free(x);
}

/* Kumar 2017: Var(w) = 1 / (fan_in g'(0)^2 (1 + g(0)^2)), relu 2 / fan_in; fan_in = 125. */
static void test_kumar(void)
{
    static const struct {
        const char *nl;
        double var;
    } cases[] = {
        {NULL, 1.0 / 125},     {"tanh", 1.0 / 125},
        {"linear", 1.0 / 125}, {"sigmoid", 1.0 / (125 * 0.0625 * 1.25)}, /* 12.8 / fan_in */
        {"relu", 2.0 / 125},   {"softplus", 1.0 / (125 * 0.25 * (1.0 + G_LN2 * G_LN2))},
        {"elu", 1.0 / 125},    {"gelu", 4.0 / 125},
    };
    for (gsize c = 0; c < G_N_ELEMENTS(cases); c++) {
        g_autofree char *kv0 = cases[c].nl ? g_strdup_printf("nonlinearity=%s", cases[c].nl) : NULL;
        const char *kv[] = {kv0, NULL};
        g_autoptr(GError) error = NULL;
        float *x;
        g_assert_true(run_init("kumar", kv, weight_shape(), 50 + c, &x, &error));
        g_assert_no_error(error);
        assert_normal(x, NUMEL, 0.0, sqrt(cases[c].var));
        g_free(x);
    }
}

static double std_normal_pdf(double z)
{
    return exp(-0.5 * z * z) / sqrt(2.0 * G_PI);
}

/* Every value in [a, b]; mean and variance of the truncated normal within 5 sigma. */
static void assert_truncated(const float *x, gsize n, double mu, double sigma, double a, double b)
{
    double al = (a - mu) / sigma, be = (b - mu) / sigma;
    double z = 0.5 * (erf(be / G_SQRT2) - erf(al / G_SQRT2));
    double pa = std_normal_pdf(al), pb = std_normal_pdf(be);
    double mean = mu + sigma * (pa - pb) / z;
    double var =
        sigma * sigma * (1.0 + (al * pa - be * pb) / z - ((pa - pb) / z) * ((pa - pb) / z));
    Stats s = stats_of(x, n);
    g_assert_cmpfloat(s.min, >=, a);
    g_assert_cmpfloat(s.max, <=, b);
    g_assert_cmpfloat(fabs(s.mean - mean), <=, 5.0 * sqrt(var / n));
    /* The fourth central moment of a truncated normal is below 3 var^2: a conservative bound. */
    g_assert_cmpfloat(fabs(s.var - var), <=, 5.0 * sqrt(2.0 * var * var / n));
}

static void test_truncated_normal(void)
{
    g_autoptr(GError) error = NULL;
    float *x;
    g_assert_true(run_init("truncated_normal", NULL, weight_shape(), 60, &x, &error));
    g_assert_no_error(error);
    assert_truncated(x, NUMEL, 0.0, 1.0, -2.0, 2.0); /* torch's defaults */
    /* values get near both cutoffs (P(|z| in [1.99, 2]) ~ 0.1% of 20000 draws, both sides) */
    Stats s = stats_of(x, NUMEL);
    g_assert_cmpfloat(s.min, <, -1.98);
    g_assert_cmpfloat(s.max, >, 1.98);
    g_free(x);

    const char *kv[] = {"mean=0.5", "std=2", "a=-1", "b=0.3", NULL};
    g_assert_true(run_init("truncated_normal", kv, weight_shape(), 61, &x, &error));
    g_assert_no_error(error);
    assert_truncated(x, NUMEL, 0.5, 2.0, -1.0, 0.3);
    g_free(x);

    const char *kv2[] = {"std=0.02", "a=-0.04", "b=0.04", NULL};
    g_assert_true(run_init("truncated_normal", kv2, weight_shape(), 62, &x, &error));
    assert_truncated(x, NUMEL, 0.0, 0.02, -0.04, 0.04);
    g_free(x);
}

static void test_calculate_gain(void)
{
    /* Printed by torch 1.13's torch.nn.init.calculate_gain. */
    static const struct {
        const char *name;
        double param;
        double gain;
    } cases[] = {
        {"linear", NAN, 1},
        {"conv1d", NAN, 1},
        {"conv2d", NAN, 1},
        {"conv3d", NAN, 1},
        {"conv_transpose1d", NAN, 1},
        {"conv_transpose2d", NAN, 1},
        {"conv_transpose3d", NAN, 1},
        {"sigmoid", NAN, 1},
        {"tanh", NAN, 1.6666666666666667},
        {"relu", NAN, 1.4142135623730951},
        {"selu", NAN, 0.75},
        {"leaky_relu", NAN, 1.4141428569978354}, /* param None: slope 0.01 */
        {"leaky_relu", 0.2, 1.3867504905630728},
        {"leaky_relu", 0.0, 1.4142135623730951},
        {"leaky_relu", 3.0, 0.4472135954999579},
        {"tanh", 7.0, 1.6666666666666667}, /* param ignored */
    };
    for (gsize c = 0; c < G_N_ELEMENTS(cases); c++) {
        g_autoptr(GError) error = NULL;
        double g = lmn_init_calculate_gain(cases[c].name, cases[c].param, &error);
        g_assert_no_error(error);
        g_assert_cmpfloat_with_epsilon(g, cases[c].gain, 1e-15);
    }
    g_autoptr(GError) error = NULL;
    g_assert_cmpfloat(lmn_init_calculate_gain("swish", NAN, &error), ==, -1.0);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
    g_assert_nonnull(strstr(error->message, "'swish'"));
    g_assert_nonnull(strstr(error->message, "leaky_relu"));
}

static void test_new_errors(void)
{
    LmnShape vec = lmn_shape_make(1, (gint64) 10);
    LmnShape empty_in = lmn_shape_make(2, (gint64) 4, (gint64) 0);
    const char *orth_n[] = {"orthogonal", "[10]", "2 or more", NULL};
    assert_fails("orthogonal", NULL, &vec, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID, orth_n);
    const char *sparse_n[] = {"sparse", "[10]", NULL};
    assert_fails("sparse", NULL, &vec, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID, sparse_n);
    const char *k_kv[] = {"k=126", NULL};
    const char *k_n[] = {"sparse", "k = 126", "[160, 125]", "125", NULL};
    assert_fails("sparse", k_kv, weight_shape(), LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID, k_n);
    const char *sp_kv[] = {"sparsity=1.5", NULL};
    const char *sp_n[] = {"sparsity", NULL};
    assert_fails("sparse", sp_kv, weight_shape(), LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID, sp_n);
    const char *lu_n[] = {"lecun_uniform", "fan_in", "[4, 0]", NULL};
    assert_fails("lecun_uniform", NULL, &empty_in, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                 lu_n);
    const char *ln_n[] = {"lecun_normal", "fan_in", NULL};
    assert_fails("lecun_normal", NULL, &empty_in, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID, ln_n);
    const char *ku_n[] = {"kumar", "fan_in", NULL};
    assert_fails("kumar", NULL, &empty_in, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID, ku_n);
    const char *ku_kv[] = {"nonlinearity=selu", NULL};
    const char *kun_n[] = {"nonlinearity", NULL};
    assert_fails("kumar", ku_kv, weight_shape(), LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID, kun_n);
    const char *ab_kv[] = {"a=1", "b=1", NULL};
    const char *ab_n[] = {"truncated_normal", "a = 1", "b = 1", NULL};
    assert_fails("truncated_normal", ab_kv, weight_shape(), LMN_CONFIG_ERROR,
                 LMN_CONFIG_ERROR_INVALID, ab_n);
    /* [10, 11] holds 1e-23 of N(0, 1): rejection would never finish; refused instead */
    const char *far_kv[] = {"a=10", "b=11", NULL};
    const char *far_n[] = {"truncated_normal", "[a, b] = [10, 11]", NULL};
    assert_fails("truncated_normal", far_kv, weight_shape(), LMN_CONFIG_ERROR,
                 LMN_CONFIG_ERROR_INVALID, far_n);
    const char *std0_kv[] = {"std=0", NULL};
    const char *std0_n[] = {"std", NULL};
    assert_fails("truncated_normal", std0_kv, weight_shape(), LMN_CONFIG_ERROR,
                 LMN_CONFIG_ERROR_INVALID, std0_n);
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
    g_test_add_func("/optim/initializers/lecun", test_lecun);
    g_test_add_func("/optim/initializers/orthogonal", test_orthogonal);
    g_test_add_func("/optim/initializers/sparse", test_sparse);
    g_test_add_func("/optim/initializers/kumar", test_kumar);
    g_test_add_func("/optim/initializers/truncated-normal", test_truncated_normal);
    g_test_add_func("/optim/initializers/calculate-gain", test_calculate_gain);
    g_test_add_func("/optim/initializers/new-errors", test_new_errors);
    int rc = g_test_run();
    lmn_registry_free(registry);
    return rc;
}
