/* Lamina — the built-in parameter initializers, with torch.nn.init's names, defaults and
 * formulas (zeros_, constant_, uniform_, normal_, xavier_*_, kaiming_*_ as he_*, orthogonal_,
 * sparse_, trunc_normal_ as truncated_normal), plus LeCun's and Kumar's schemes, so a PyTorch
 * user's choices carry over.  Draws come from the parameter's own Philox stream, in element
 * order, so a parameter's values do not depend on the backend or on other parameters.
 */
#include <lamina/lamina.h>

#include <math.h>
#include <string.h>

/* ---- helpers ---- */

static char *init_shape_text(const LmnInitTarget *target)
{
    return target->shape != NULL ? lmn_shape_to_string(target->shape) : g_strdup("[?]");
}

/* A fan of 0 (an empty dimension) would divide by zero; PyTorch raises too. */
static gboolean init_check_fan(const char *name, const char *which, double fan,
                               const LmnInitTarget *target, GError **error)
{
    if (fan > 0.0)
        return TRUE;
    g_autofree char *shape = init_shape_text(target);
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                "initializer '%s': %s of the parameter of shape %s is %g; a fan-based "
                "initializer needs a positive fan (use another initializer, e.g. 'normal')",
                name, which, shape, fan);
    return FALSE;
}

static void init_fill_uniform(const LmnInitTarget *target, float *data, double low, double high)
{
    for (gint64 i = 0; i < target->numel; i++)
        data[i] = (float) (low + (high - low) * (double) lmn_random_uniform(target->random));
}

static void init_fill_normal(const LmnInitTarget *target, float *data, double mean, double std)
{
    for (gint64 i = 0; i < target->numel; i++)
        data[i] = (float) (mean + std * lmn_random_normal(target->random));
}

/* ---- zeros, constant ---- */

static gboolean zeros_fill(const LmnParams *params, const LmnInitTarget *target, float *data,
                           GError **error)
{
    for (gint64 i = 0; i < target->numel; i++)
        data[i] = 0.0f;
    return TRUE;
}

static gboolean constant_fill(const LmnParams *params, const LmnInitTarget *target, float *data,
                              GError **error)
{
    float value = (float) lmn_params_get_float(params, "value");
    for (gint64 i = 0; i < target->numel; i++)
        data[i] = value;
    return TRUE;
}

static const LmnParamSpec constant_specs[] = {
    LMN_PARAM_SPEC_FLOAT("value", "0", 1, 0, 0,
                         "the value of every element (torch.nn.init.constant_'s val)"),
    LMN_PARAM_SPEC_END,
};

/* ---- uniform, normal ---- */

static gboolean uniform_fill(const LmnParams *params, const LmnInitTarget *target, float *data,
                             GError **error)
{
    double a = lmn_params_get_float(params, "a");
    double b = lmn_params_get_float(params, "b");
    if (a > b) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "initializer 'uniform': the lower bound a = %g exceeds the upper bound b = %g",
                    a, b);
        return FALSE;
    }
    init_fill_uniform(target, data, a, b);
    return TRUE;
}

static const LmnParamSpec uniform_specs[] = {
    LMN_PARAM_SPEC_FLOAT("a", "0", 1, 0, 0, "lower bound of U(a, b)"),
    LMN_PARAM_SPEC_FLOAT("b", "1", 1, 0, 0, "upper bound of U(a, b)"),
    LMN_PARAM_SPEC_END,
};

static gboolean normal_fill(const LmnParams *params, const LmnInitTarget *target, float *data,
                            GError **error)
{
    init_fill_normal(target, data, lmn_params_get_float(params, "mean"),
                     lmn_params_get_float(params, "std"));
    return TRUE;
}

static const LmnParamSpec normal_specs[] = {
    LMN_PARAM_SPEC_FLOAT("mean", "0", 1, 0, 0, "mean of N(mean, std^2)"),
    LMN_PARAM_SPEC_FLOAT("std", "1", 0, INFINITY, 0, "standard deviation of N(mean, std^2)"),
    LMN_PARAM_SPEC_END,
};

/* ---- Xavier / Glorot ---- */

static gboolean xavier_uniform_fill(const LmnParams *params, const LmnInitTarget *target,
                                    float *data, GError **error)
{
    double fans = target->fan_in + target->fan_out;
    if (!init_check_fan("xavier_uniform", "fan_in + fan_out", fans, target, error))
        return FALSE;
    double bound = lmn_params_get_float(params, "gain") * sqrt(6.0 / fans);
    init_fill_uniform(target, data, -bound, bound);
    return TRUE;
}

static gboolean xavier_normal_fill(const LmnParams *params, const LmnInitTarget *target,
                                   float *data, GError **error)
{
    double fans = target->fan_in + target->fan_out;
    if (!init_check_fan("xavier_normal", "fan_in + fan_out", fans, target, error))
        return FALSE;
    double std = lmn_params_get_float(params, "gain") * sqrt(2.0 / fans);
    init_fill_normal(target, data, 0.0, std);
    return TRUE;
}

static const LmnParamSpec xavier_specs[] = {
    LMN_PARAM_SPEC_FLOAT("gain", "1", 0, INFINITY, 0,
                         "scaling factor (torch.nn.init.calculate_gain of the activation)"),
    LMN_PARAM_SPEC_END,
};

/* ---- He / Kaiming ---- */

static const char *const he_modes[] = {"fan_in", "fan_out", NULL};
static const char *const he_nonlinearities[] = {
    "leaky_relu",
    "relu",
    "linear",
    "sigmoid",
    "tanh",
    "selu",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    NULL,
};

static const LmnParamSpec he_specs[] = {
    LMN_PARAM_SPEC_FLOAT(
        "a", "0", 1, 0, 0,
        "negative slope of the following leaky_relu (used only with that nonlinearity)"),
    LMN_PARAM_SPEC_ENUM("mode", "fan_in", he_modes,
                        "fan_in preserves forward activations' variance, fan_out the gradients'"),
    LMN_PARAM_SPEC_ENUM(
        "nonlinearity", "leaky_relu", he_nonlinearities,
        "the activation after this layer, for the gain (PyTorch's default: leaky_relu)"),
    LMN_PARAM_SPEC_END,
};

/* Returns the standard deviation gain / sqrt(fan), or a negative value with @error set. */
static double he_std(const char *name, const LmnParams *params, const LmnInitTarget *target,
                     GError **error)
{
    const char *mode = lmn_params_get_string(params, "mode");
    gboolean fan_in = strcmp(mode, "fan_in") == 0;
    double fan = fan_in ? target->fan_in : target->fan_out;
    if (!init_check_fan(name, mode, fan, target, error))
        return -1.0;
    double gain = lmn_init_calculate_gain(lmn_params_get_string(params, "nonlinearity"),
                                          lmn_params_get_float(params, "a"), error);
    if (gain < 0.0)
        return -1.0;
    return gain / sqrt(fan);
}

static gboolean he_uniform_fill(const LmnParams *params, const LmnInitTarget *target, float *data,
                                GError **error)
{
    double std = he_std("he_uniform", params, target, error);
    if (std < 0.0)
        return FALSE;
    double bound = sqrt(3.0) * std;
    init_fill_uniform(target, data, -bound, bound);
    return TRUE;
}

static gboolean he_normal_fill(const LmnParams *params, const LmnInitTarget *target, float *data,
                               GError **error)
{
    double std = he_std("he_normal", params, target, error);
    if (std < 0.0)
        return FALSE;
    init_fill_normal(target, data, 0.0, std);
    return TRUE;
}

/* ---- LeCun ---- */

/* LeCun et al. 1998 ("Efficient BackProp"): variance 1 / fan_in, the gain-1 case of He's rule. */
static gboolean lecun_uniform_fill(const LmnParams *params, const LmnInitTarget *target,
                                   float *data, GError **error)
{
    if (!init_check_fan("lecun_uniform", "fan_in", target->fan_in, target, error))
        return FALSE;
    double bound = sqrt(3.0 / target->fan_in);
    init_fill_uniform(target, data, -bound, bound);
    return TRUE;
}

static gboolean lecun_normal_fill(const LmnParams *params, const LmnInitTarget *target, float *data,
                                  GError **error)
{
    if (!init_check_fan("lecun_normal", "fan_in", target->fan_in, target, error))
        return FALSE;
    init_fill_normal(target, data, 0.0, sqrt(1.0 / target->fan_in));
    return TRUE;
}

/* ---- matrix view of a weight: [rows = shape[0], cols = numel / rows], as torch.nn.init ---- */

static gboolean init_matrix_dims(const char *name, const LmnInitTarget *target, gint64 *rows,
                                 gint64 *cols, GError **error)
{
    if (target->shape == NULL || target->shape->ndim < 2 || target->numel == 0) {
        g_autofree char *shape = init_shape_text(target);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "initializer '%s': the parameter of shape %s is not a non-empty matrix; it "
                    "needs 2 or more dimensions, as in PyTorch (use it for weights, not biases)",
                    name, shape);
        return FALSE;
    }
    *rows = target->shape->dims[0];
    *cols = target->numel / *rows;
    return TRUE;
}

/* ---- orthogonal (Saxe et al. 2014; torch.nn.init.orthogonal_) ---- */

/*
 * Reduced QR of a [m, n] matrix a (m >= n, row-major doubles) by Householder reflections; on
 * return q [m, n] has orthonormal columns and rdiag holds R's diagonal.  Householder rather than
 * Gram-Schmidt: Q stays orthogonal to rounding level whatever a's conditioning.
 */
static void householder_qr(double *a, gint64 m, gint64 n, double *q, double *rdiag)
{
    /* a's column k below the diagonal becomes the reflector v_k (v_k[k] kept in vk0[k]). */
    g_autofree double *vk0 = g_new(double, n);
    for (gint64 k = 0; k < n; k++) {
        double norm = 0.0;
        for (gint64 i = k; i < m; i++)
            norm += a[i * n + k] * a[i * n + k];
        norm = sqrt(norm);
        double akk = a[k * n + k];
        /* The sign opposite to a_kk avoids cancellation in v = x - alpha e1. */
        double alpha = akk > 0.0 ? -norm : norm;
        rdiag[k] = alpha;
        vk0[k] = akk - alpha;
        double vnorm2 = vk0[k] * vk0[k];
        for (gint64 i = k + 1; i < m; i++)
            vnorm2 += a[i * n + k] * a[i * n + k];
        if (vnorm2 == 0.0) {
            vk0[k] = 0.0; /* the column is already reduced: H = I */
            continue;
        }
        /* Apply H = I - 2 v v^T / (v^T v) to the remaining columns. */
        for (gint64 j = k + 1; j < n; j++) {
            double dot = vk0[k] * a[k * n + j];
            for (gint64 i = k + 1; i < m; i++)
                dot += a[i * n + k] * a[i * n + j];
            double f = 2.0 * dot / vnorm2;
            a[k * n + j] -= f * vk0[k];
            for (gint64 i = k + 1; i < m; i++)
                a[i * n + j] -= f * a[i * n + k];
        }
    }
    /* Q = H_0 H_1 ... H_{n-1} applied to the first n columns of the identity, last first. */
    for (gint64 i = 0; i < m; i++)
        for (gint64 j = 0; j < n; j++)
            q[i * n + j] = i == j ? 1.0 : 0.0;
    for (gint64 k = n - 1; k >= 0; k--) {
        double vnorm2 = vk0[k] * vk0[k];
        for (gint64 i = k + 1; i < m; i++)
            vnorm2 += a[i * n + k] * a[i * n + k];
        if (vnorm2 == 0.0)
            continue;
        for (gint64 j = 0; j < n; j++) {
            double dot = vk0[k] * q[k * n + j];
            for (gint64 i = k + 1; i < m; i++)
                dot += a[i * n + k] * q[i * n + j];
            double f = 2.0 * dot / vnorm2;
            q[k * n + j] -= f * vk0[k];
            for (gint64 i = k + 1; i < m; i++)
                q[i * n + j] -= f * a[i * n + k];
        }
    }
}

static gboolean orthogonal_fill(const LmnParams *params, const LmnInitTarget *target, float *data,
                                GError **error)
{
    gint64 rows, cols;
    if (!init_matrix_dims("orthogonal", target, &rows, &cols, error))
        return FALSE;
    double gain = lmn_params_get_float(params, "gain");
    /* torch: a normal [rows, cols] matrix, transposed to be tall, Q of its QR with the signs of
     * diag(R) (which makes the result Haar-distributed), transposed back, times gain. */
    gboolean wide = rows < cols;
    gint64 m = wide ? cols : rows, n = wide ? rows : cols;
    g_autofree double *a = g_new(double, m *n);
    for (gint64 r = 0; r < rows; r++) {
        for (gint64 c = 0; c < cols; c++) {
            double z = lmn_random_normal(target->random);
            if (wide)
                a[c * n + r] = z;
            else
                a[r * n + c] = z;
        }
    }
    g_autofree double *q = g_new(double, m *n);
    g_autofree double *rdiag = g_new(double, n);
    householder_qr(a, m, n, q, rdiag);
    for (gint64 r = 0; r < rows; r++) {
        for (gint64 c = 0; c < cols; c++) {
            gint64 i = wide ? c : r, j = wide ? r : c;
            /* torch.sign: a zero diagonal (probability 0) zeroes the column, as there. */
            double sign = rdiag[j] > 0.0 ? 1.0 : rdiag[j] < 0.0 ? -1.0 : 0.0;
            data[r * cols + c] = (float) (gain * sign * q[i * n + j]);
        }
    }
    return TRUE;
}

static const LmnParamSpec orthogonal_specs[] = {
    LMN_PARAM_SPEC_FLOAT("gain", "1", 0, INFINITY, 0,
                         "scaling factor: W^T W = gain^2 I (tall) or W W^T = gain^2 I (wide)"),
    LMN_PARAM_SPEC_END,
};

/* ---- sparse (torch.nn.init.sparse_; Martens 2010) ---- */

/* Picks @count distinct indices of [0, n) into the first @count entries of @perm (partial
 * Fisher-Yates); @perm must hold 0..n-1 in any order. */
static void init_choose(LmnRandom *random, gint64 *perm, gint64 n, gint64 count)
{
    for (gint64 i = 0; i < count; i++) {
        gint64 j = i + (gint64) lmn_random_below(random, (guint64) (n - i));
        gint64 t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static gboolean sparse_fill(const LmnParams *params, const LmnInitTarget *target, float *data,
                            GError **error)
{
    gint64 rows, cols;
    if (!init_matrix_dims("sparse", target, &rows, &cols, error))
        return FALSE;
    double std = lmn_params_get_float(params, "std");
    gint64 k = lmn_params_get_int(params, "k");
    init_fill_normal(target, data, 0.0, std);

    if (k > 0) {
        /* Martens: each unit (row = output) keeps exactly k incoming weights, the rest are 0. */
        if (k > cols) {
            g_autofree char *shape = init_shape_text(target);
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                        "initializer 'sparse': k = %" G_GINT64_FORMAT " non-zero incoming "
                        "weights per unit, but the parameter of shape %s has only %" G_GINT64_FORMAT
                        " inputs per unit",
                        k, shape, cols);
            return FALSE;
        }
        g_autofree gint64 *perm = g_new(gint64, cols);
        g_autofree gboolean *keep = g_new(gboolean, cols);
        for (gint64 r = 0; r < rows; r++) {
            for (gint64 c = 0; c < cols; c++) {
                perm[c] = c;
                keep[c] = FALSE;
            }
            init_choose(target->random, perm, cols, k);
            for (gint64 i = 0; i < k; i++)
                keep[perm[i]] = TRUE;
            for (gint64 c = 0; c < cols; c++) {
                if (!keep[c])
                    data[r * cols + c] = 0.0f;
            }
        }
        return TRUE;
    }

    /* torch: num_zeros = ceil(sparsity * rows) zeros in every column, at random rows. */
    gint64 zeros = (gint64) ceil(lmn_params_get_float(params, "sparsity") * (double) rows);
    zeros = MIN(zeros, rows);
    g_autofree gint64 *perm = g_new(gint64, rows);
    for (gint64 c = 0; c < cols; c++) {
        for (gint64 r = 0; r < rows; r++)
            perm[r] = r;
        init_choose(target->random, perm, rows, zeros);
        for (gint64 i = 0; i < zeros; i++)
            data[perm[i] * cols + c] = 0.0f;
    }
    return TRUE;
}

static const LmnParamSpec sparse_specs[] = {
    LMN_PARAM_SPEC_FLOAT(
        "sparsity", "0.1", 0, 1, 0,
        "torch.nn.init.sparse_: fraction of zeros in each column, ceil(sparsity * rows) "
        "(used when k = 0)"),
    LMN_PARAM_SPEC_INT(
        "k", "0", 0, (double) G_MAXINT32, 0,
        "Martens (2010): when > 0, exactly k non-zero incoming weights per unit (row), "
        "and sparsity is ignored (Martens used k = 15, std = 1)"),
    LMN_PARAM_SPEC_FLOAT("std", "0.01", 0, INFINITY, 0,
                         "standard deviation of the non-zero weights, N(0, std^2)"),
    LMN_PARAM_SPEC_END,
};

/* ---- Kumar 2017 ---- */

/*
 * Kumar, "On weight initialization in deep neural networks" (2017): for an activation g
 * differentiable at 0, activations keep their variance when
 *     Var(w) = 1 / (fan_in * g'(0)^2 * (1 + g(0)^2)).
 * relu is not differentiable at 0; the paper's analysis gives 2 / fan_in (He's value).
 * Weights are drawn from N(0, Var(w)).
 */
static const struct {
    const char *name;
    double g0, dg0; /* g(0), g'(0) */
} kumar_activations[] = {
    {"linear", 0.0, 1.0},     {"tanh", 0.0, 1.0}, {"sigmoid", 0.5, 0.25},
    {"softplus", G_LN2, 0.5}, {"elu", 0.0, 1.0}, /* alpha = 1: both one-sided derivatives are 1 */
    {"gelu", 0.0, 0.5},
};

static const char *const kumar_nonlinearities[] = {
    "tanh", "sigmoid", "relu", "linear", "softplus", "elu", "gelu", NULL,
};

static gboolean kumar_fill(const LmnParams *params, const LmnInitTarget *target, float *data,
                           GError **error)
{
    if (!init_check_fan("kumar", "fan_in", target->fan_in, target, error))
        return FALSE;
    const char *nl = lmn_params_get_string(params, "nonlinearity");
    double var = 2.0 / target->fan_in; /* relu */
    for (gsize i = 0; i < G_N_ELEMENTS(kumar_activations); i++) {
        if (strcmp(nl, kumar_activations[i].name) == 0) {
            double g0 = kumar_activations[i].g0, dg0 = kumar_activations[i].dg0;
            var = 1.0 / (target->fan_in * dg0 * dg0 * (1.0 + g0 * g0));
        }
    }
    init_fill_normal(target, data, 0.0, sqrt(var));
    return TRUE;
}

static const LmnParamSpec kumar_specs[] = {
    LMN_PARAM_SPEC_ENUM(
        "nonlinearity", "tanh", kumar_nonlinearities,
        "the activation g after this layer: Var(w) = 1 / (fan_in g'(0)^2 (1 + g(0)^2)); "
        "relu: 2 / fan_in"),
    LMN_PARAM_SPEC_END,
};

/* ---- truncated normal (torch.nn.init.trunc_normal_) ---- */

/* P(a <= X <= b) for X ~ N(mean, std^2). */
static double normal_mass(double mean, double std, double a, double b)
{
    double za = (a - mean) / (std * G_SQRT2), zb = (b - mean) / (std * G_SQRT2);
    /* erfc on the far side keeps precision in the tails. */
    if (za > 0.0)
        return 0.5 * (erfc(za) - erfc(zb));
    if (zb < 0.0)
        return 0.5 * (erfc(-zb) - erfc(-za));
    return 0.5 * (erf(zb) - erf(za));
}

/* Below this acceptance rate, rejection would need more than ~10^4 draws per element. */
#define TRUNC_MIN_MASS 1e-4

static gboolean truncated_normal_fill(const LmnParams *params, const LmnInitTarget *target,
                                      float *data, GError **error)
{
    double mean = lmn_params_get_float(params, "mean");
    double std = lmn_params_get_float(params, "std");
    double a = lmn_params_get_float(params, "a");
    double b = lmn_params_get_float(params, "b");
    if (!(a < b)) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "initializer 'truncated_normal': the lower cutoff a = %g must be below the "
                    "upper cutoff b = %g",
                    a, b);
        return FALSE;
    }
    double mass = normal_mass(mean, std, a, b);
    if (mass < TRUNC_MIN_MASS) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "initializer 'truncated_normal': [a, b] = [%g, %g] holds only %.3g of "
                    "N(%g, %g^2), too little to sample by rejection; choose a and b within a few "
                    "std of the mean",
                    a, b, mass, mean, std);
        return FALSE;
    }
    for (gint64 i = 0; i < target->numel; i++) {
        float v;
        do {
            /* Tested after rounding to float, so every stored value lies in [a, b]. */
            v = (float) (mean + std * lmn_random_normal(target->random));
        } while (!((double) v >= a && (double) v <= b));
        data[i] = v;
    }
    return TRUE;
}

static const LmnParamSpec truncated_normal_specs[] = {
    LMN_PARAM_SPEC_FLOAT("mean", "0", 1, 0, 0, "mean of the normal before truncation"),
    LMN_PARAM_SPEC_FLOAT("std", "1", 0, INFINITY, LMN_PARAM_FLAG_MIN_EXCLUSIVE,
                         "standard deviation of the normal before truncation"),
    LMN_PARAM_SPEC_FLOAT("a", "-2", 1, 0, 0,
                         "lower cutoff (an absolute value, as in torch.nn.init.trunc_normal_)"),
    LMN_PARAM_SPEC_FLOAT("b", "2", 1, 0, 0, "upper cutoff (an absolute value)"),
    LMN_PARAM_SPEC_END,
};

/* ---- the descriptor ---- */

#define INIT_VTABLE(fn)                                                                            \
    {                                                                                              \
        .struct_size = sizeof(LmnInitializerVTable), .fill = (fn)                                  \
    }

static const LmnInitializerVTable zeros_vt = INIT_VTABLE(zeros_fill);
static const LmnInitializerVTable constant_vt = INIT_VTABLE(constant_fill);
static const LmnInitializerVTable uniform_vt = INIT_VTABLE(uniform_fill);
static const LmnInitializerVTable normal_vt = INIT_VTABLE(normal_fill);
static const LmnInitializerVTable xavier_uniform_vt = INIT_VTABLE(xavier_uniform_fill);
static const LmnInitializerVTable xavier_normal_vt = INIT_VTABLE(xavier_normal_fill);
static const LmnInitializerVTable he_uniform_vt = INIT_VTABLE(he_uniform_fill);
static const LmnInitializerVTable he_normal_vt = INIT_VTABLE(he_normal_fill);
static const LmnInitializerVTable lecun_uniform_vt = INIT_VTABLE(lecun_uniform_fill);
static const LmnInitializerVTable lecun_normal_vt = INIT_VTABLE(lecun_normal_fill);
static const LmnInitializerVTable orthogonal_vt = INIT_VTABLE(orthogonal_fill);
static const LmnInitializerVTable sparse_vt = INIT_VTABLE(sparse_fill);
static const LmnInitializerVTable kumar_vt = INIT_VTABLE(kumar_fill);
static const LmnInitializerVTable truncated_normal_vt = INIT_VTABLE(truncated_normal_fill);

#define INIT_FEATURE(feature_name, desc, specs, vt)                                                \
    {                                                                                              \
        .struct_size = sizeof(LmnFeatureDesc), .kind = LMN_FEATURE_INITIALIZER,                    \
        .name = (feature_name), .description = (desc), .params = (specs), .vtable = &(vt),         \
    }

static const LmnFeatureDesc init_features[] = {
    INIT_FEATURE("zeros", "all elements 0 (torch.nn.init.zeros_)", NULL, zeros_vt),
    INIT_FEATURE("constant", "all elements one value (torch.nn.init.constant_)", constant_specs,
                 constant_vt),
    INIT_FEATURE("uniform", "U(a, b) (torch.nn.init.uniform_)", uniform_specs, uniform_vt),
    INIT_FEATURE("normal", "N(mean, std^2) (torch.nn.init.normal_)", normal_specs, normal_vt),
    INIT_FEATURE("xavier_uniform",
                 "U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)",
                 xavier_specs, xavier_uniform_vt),
    INIT_FEATURE("xavier_normal",
                 "N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)) (Glorot & Bengio 2010)",
                 xavier_specs, xavier_normal_vt),
    INIT_FEATURE("he_uniform",
                 "U(-b, b), b = gain * sqrt(3 / fan) (He et al. 2015; torch kaiming_uniform_)",
                 he_specs, he_uniform_vt),
    INIT_FEATURE("he_normal",
                 "N(0, std^2), std = gain / sqrt(fan) (He et al. 2015; torch kaiming_normal_)",
                 he_specs, he_normal_vt),
    INIT_FEATURE("lecun_uniform", "U(-b, b), b = sqrt(3 / fan_in) (LeCun et al. 1998)", NULL,
                 lecun_uniform_vt),
    INIT_FEATURE("lecun_normal", "N(0, 1 / fan_in) (LeCun et al. 1998)", NULL, lecun_normal_vt),
    INIT_FEATURE("orthogonal",
                 "gain times a random orthogonal matrix of the weight flattened to [rows, cols] "
                 "(Saxe et al. 2014; torch.nn.init.orthogonal_)",
                 orthogonal_specs, orthogonal_vt),
    INIT_FEATURE("sparse",
                 "N(0, std^2) with ceil(sparsity * rows) zeros per column "
                 "(torch.nn.init.sparse_), or k non-zeros per row (Martens 2010)",
                 sparse_specs, sparse_vt),
    INIT_FEATURE("kumar",
                 "N(0, 1 / (fan_in g'(0)^2 (1 + g(0)^2))) for the activation g "
                 "(Kumar 2017); relu: 2 / fan_in",
                 kumar_specs, kumar_vt),
    INIT_FEATURE("truncated_normal",
                 "N(mean, std^2) restricted to [a, b] by rejection "
                 "(torch.nn.init.trunc_normal_)",
                 truncated_normal_specs, truncated_normal_vt),
};

LMN_PLUGIN_DEFINE_FEATURES("lamina.initializers", LMN_VERSION_STRING, "MIT",
                           "parameter initializers with torch.nn.init's names and formulas",
                           init_features)
