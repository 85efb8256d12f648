/* Lamina — finite-difference gradient checks (see gradcheck.h for the method).
 *
 * The checker drives a layer only through the layer API: lmn_layer_new, prepare_batch, forward,
 * backward and the parameter/gradient accessors.  Host copies of every input and parameter are
 * kept so that one element can be perturbed by writing a one-element view, which keeps a check
 * linear in the number of elements rather than quadratic.
 */
#include <math.h>
#include <string.h>

#include <lamina/error.h>
#include <lamina/gradcheck.h>
#include <lamina/random.h>

#include "layer-private.h"

/*
 * Written into every gradient tensor before backward: a layer must overwrite its gradients, and
 * one that accumulates into them is off by this much, far beyond any tolerance.  Finite and
 * moderate so a backend computing 0 * old (beta = 0) still yields 0.
 */
#define GRADCHECK_SENTINEL 1000.0f

/* Relative error above which an element is measured again with a wider step. */
#define GRADCHECK_RETRY 1e-3

/*
 * Float32 evaluation resolves a derivative only to about u M / h (u = 2^-24, M the magnitude of
 * the objective's rounding error sources, h the step).  Elements are compared against at least
 * this many times that resolution, so that pure rounding noise shows as a relative error of
 * about 1 / GRADCHECK_NOISE_MULT at worst, and a wrong gradient still shows in full on every
 * element above the floor.
 */
#define GRADCHECK_NOISE_MULT 100.0

/* Stream of the checker's own random values; any fixed number distinct per purpose works. */
#define GRADCHECK_STREAM(i) LMN_STREAM(0x4743u, (i))

typedef struct {
    LmnTensor *tensor; /* borrowed for parameters, owned for inputs */
    gboolean owned;
    LmnDType dtype;
    gint64 numel;
    gpointer host; /* float or gint32 values currently in the tensor */
} Probe;

typedef struct {
    LmnLayer *layer;
    LmnBackend *backend;
    LmnGradcheckOptions opts;
    gboolean loss;
    guint n_inputs;
    Probe *inputs;
    LmnTensor **input_grads; /* NULL entries for i32 inputs */
    guint n_params;
    Probe *params;
    LmnTensor *output;
    LmnTensor *output_grad;
    gint64 out_numel;
    float *out_host;
    float *out_grad_host;
    double noise; /* resolution of a central difference at the base step, see above */
} Check;

static void probe_clear(Probe *p)
{
    if (p->owned) {
        g_clear_pointer(&p->tensor, lmn_tensor_unref);
    }
    g_clear_pointer(&p->host, g_free);
}

static void check_clear(Check *c)
{
    for (guint i = 0; c->inputs != NULL && i < c->n_inputs; i++) {
        probe_clear(&c->inputs[i]);
        if (c->input_grads[i] != NULL) {
            lmn_tensor_unref(c->input_grads[i]);
        }
    }
    g_free(c->inputs);
    g_free(c->input_grads);
    for (guint i = 0; c->params != NULL && i < c->n_params; i++) {
        probe_clear(&c->params[i]);
    }
    g_free(c->params);
    g_clear_pointer(&c->output, lmn_tensor_unref);
    g_clear_pointer(&c->output_grad, lmn_tensor_unref);
    g_free(c->out_host);
    g_free(c->out_grad_host);
    g_clear_pointer(&c->layer, lmn_layer_free);
}

void lmn_gradcheck_options_init(LmnGradcheckOptions *options)
{
    g_return_if_fail(options != NULL);
    memset(options, 0, sizeof(*options));
    options->struct_size = sizeof(LmnGradcheckOptions);
    options->seed = 1;
    options->batch = 3;
    options->step = 1e-2;
    options->value_scale = 1.0;
    options->margin = 0.1;
    options->rel_floor = 1e-3;
    options->max_elements = 0;
    options->num_classes = 0;
    options->training = TRUE;
}

void lmn_gradcheck_result_free(gpointer result)
{
    LmnGradcheckResult *r = result;
    if (r == NULL) {
        return;
    }
    g_free(r->name);
    g_free(r);
}

/* A value of magnitude in [margin, 1] * scale with a random sign: away from kinks at 0. */
static float random_value(LmnRandom *rng, const LmnGradcheckOptions *o)
{
    double m = o->margin + (1.0 - o->margin) * lmn_random_uniform_double(rng);
    double sign = (lmn_random_u32(rng) & 1u) != 0 ? -1.0 : 1.0;
    return (float) (sign * m * o->value_scale);
}

static void io_init(const Check *c, LmnLayerIO *io, gboolean backward)
{
    memset(io, 0, sizeof(*io));
    io->struct_size = sizeof(LmnLayerIO);
    io->n_inputs = c->n_inputs;
    io->output = c->output;
    io->output_grad = backward ? c->output_grad : NULL;
    io->input_grads = backward ? c->input_grads : NULL;
    io->batch = c->opts.batch;
    io->training = c->opts.training;
    io->step = 0;
    io->seed = c->opts.seed;
}

/* Forward at the current values; returns L in double (the loss, or sum(output * output_grad)). */
static gboolean eval_objective(Check *c, LmnTensor *const *inputs, double *value, GError **error)
{
    LmnLayerIO io;
    io_init(c, &io, FALSE);
    io.inputs = inputs;
    lmn_layer_forward(c->layer, &io);
    if (!lmn_tensor_read(c->output, c->out_host, (gsize) c->out_numel * sizeof(float), error)) {
        return FALSE;
    }
    if (c->loss) {
        *value = c->out_host[0];
        return TRUE;
    }
    double sum = 0.0;
    for (gint64 k = 0; k < c->out_numel; k++) {
        sum += (double) c->out_host[k] * (double) c->out_grad_host[k];
    }
    *value = sum;
    return TRUE;
}

static gboolean write_element(LmnTensor *t, gint64 index, float value, GError **error)
{
    LmnShape one = lmn_shape_make(1, (gint64) 1);
    LmnTensor *view = lmn_tensor_new_view(t, index, &one);
    gboolean ok = lmn_tensor_write(view, &value, sizeof(float), error);
    lmn_tensor_unref(view);
    return ok;
}

static gboolean probe_upload(Probe *p, GError **error)
{
    return lmn_tensor_write(p->tensor, p->host, (gsize) p->numel * 4, error);
}

/* Which elements to check: all, or max_elements distinct ones chosen at random. */
static guint32 *choose_elements(gint64 numel, gint64 max_elements, LmnRandom *rng, gint64 *n_out)
{
    guint32 *idx = g_new(guint32, numel);
    for (gint64 j = 0; j < numel; j++) {
        idx[j] = (guint32) j;
    }
    if (max_elements > 0 && max_elements < numel) {
        lmn_random_shuffle(rng, idx, (gsize) numel);
        *n_out = max_elements;
    } else {
        *n_out = numel;
    }
    return idx;
}

static LmnGradcheckResult *compare(const char *name, gboolean is_param, guint index,
                                   const guint32 *elements, gint64 n, const double *analytic,
                                   const double *numeric, double floor)
{
    LmnGradcheckResult *r = g_new0(LmnGradcheckResult, 1);
    r->name = g_strdup(name);
    r->is_param = is_param;
    r->index = index;
    r->n_checked = n;
    r->worst_element = n > 0 ? (gint64) elements[0] : -1;
    double scale = 0.0;
    for (gint64 j = 0; j < n; j++) {
        scale = MAX(scale, MAX(fabs(analytic[j]), fabs(numeric[j])));
    }
    r->scale = scale;
    r->floor = floor;
    for (gint64 j = 0; j < n; j++) {
        double a = analytic[j], num = numeric[j];
        double abs_err = fabs(a - num);
        double rel = abs_err / MAX(MAX(fabs(a), fabs(num)), floor);
        if (!isfinite(a) || !isfinite(num)) {
            rel = abs_err = INFINITY;
        }
        r->max_abs_error = MAX(r->max_abs_error, abs_err);
        if (rel > r->max_rel_error || j == 0) {
            r->max_rel_error = MAX(r->max_rel_error, rel);
            r->worst_element = elements[j];
            r->worst_analytic = a;
            r->worst_numeric = num;
        }
    }
    return r;
}

/* (L(x_e + h) - L(x_e - h)) / (2h) for element @e of @p, which is restored afterwards. */
static gboolean central_difference(Check *c, Probe *p, LmnTensor *const *inputs, gint64 e, double h,
                                   double *out, GError **error)
{
    float orig = ((float *) p->host)[e];
    float xp = (float) ((double) orig + h);
    float xm = (float) ((double) orig - h);
    double lp, lm;
    if (!write_element(p->tensor, e, xp, error) || !eval_objective(c, inputs, &lp, error) ||
        !write_element(p->tensor, e, xm, error) || !eval_objective(c, inputs, &lm, error) ||
        !write_element(p->tensor, e, orig, error)) {
        return FALSE;
    }
    /* Divide by the step actually taken after rounding to float. */
    *out = (lp - lm) / ((double) xp - (double) xm);
    return TRUE;
}

/*
 * Central differences of L with respect to the chosen elements of @p, step h.  Two effects limit
 * a float32 central difference: rounding noise of about u |L| / h (u = 2^-24; for a loss near 2
 * and h = 1e-2 that is 1e-5, comparable to the small elements of a softmax gradient), and the
 * truncation error h^2 f'''(x) / 6 (visible where a derivative crosses zero, e.g. gelu's near
 * x = -0.75).  An element that disagrees with its analytic value is therefore measured again:
 * with a 4x wider step (4x less noise, still inside the margin that keeps values away from
 * kinks), and by Richardson extrapolation (4 D(h) - D(2h)) / 3, whose truncation error is
 * O(h^4); the estimate closest to the analytic value is kept.  A wrong gradient disagrees with
 * every estimate alike, so this removes measurement error, not bugs.
 */
static gboolean numeric_grad(Check *c, Probe *p, LmnTensor *const *inputs, const guint32 *elements,
                             gint64 n, const double *analytic, double *numeric, double *floor_out,
                             GError **error)
{
    double h = c->opts.step * c->opts.value_scale;
    double scale = 0.0;
    for (gint64 j = 0; j < n; j++) {
        if (!central_difference(c, p, inputs, elements[j], h, &numeric[j], error)) {
            return FALSE;
        }
        scale = MAX(scale, MAX(fabs(analytic[j]), fabs(numeric[j])));
    }
    double floor = MAX(MAX(c->opts.rel_floor * scale, GRADCHECK_NOISE_MULT * c->noise), 1e-30);
    *floor_out = floor;
    for (gint64 j = 0; j < n; j++) {
        double a = analytic[j];
        double d1 = numeric[j];
        if (fabs(a - d1) / MAX(MAX(fabs(a), fabs(d1)), floor) <= GRADCHECK_RETRY) {
            continue;
        }
        double d2, d4;
        if (!central_difference(c, p, inputs, elements[j], 2.0 * h, &d2, error) ||
            !central_difference(c, p, inputs, elements[j], 4.0 * h, &d4, error)) {
            return FALSE;
        }
        double candidates[] = {d4, (4.0 * d1 - d2) / 3.0};
        for (guint k = 0; k < G_N_ELEMENTS(candidates); k++) {
            if (fabs(a - candidates[k]) < fabs(a - numeric[j])) {
                numeric[j] = candidates[k];
            }
        }
    }
    return TRUE;
}

static gboolean read_grad(LmnTensor *t, gint64 numel, const guint32 *elements, gint64 n,
                          double *analytic, GError **error)
{
    g_autofree float *g = g_new(float, numel);
    if (!lmn_tensor_read(t, g, (gsize) numel * sizeof(float), error)) {
        return FALSE;
    }
    for (gint64 j = 0; j < n; j++) {
        analytic[j] = g[elements[j]];
    }
    return TRUE;
}

/* The range [0, classes) of i32 inputs: num_classes, else input 0's last dimension. */
static gboolean class_count(const Check *c, const char *type, const LmnTensorInfo *inputs,
                            gint64 *classes, GError **error)
{
    *classes = c->opts.num_classes;
    for (guint i = 0; i < c->n_inputs && *classes == 0; i++) {
        if (inputs[i].dtype != LMN_DTYPE_I32)
            continue;
        const LmnShape *s0 = &inputs[0].shape;
        if (s0->ndim == 0 || inputs[0].dtype != LMN_DTYPE_F32) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                        "gradcheck of '%s': input %u is i32 but the class count cannot be "
                        "taken from input 0 (per-sample shape needs a last dimension); "
                        "set num_classes",
                        type, i);
            return FALSE;
        }
        *classes = s0->dims[s0->ndim - 1];
    }
    return TRUE;
}

/* Random inputs (class labels for i32 ones) and, for f32 inputs, their gradient tensors. */
static gboolean make_inputs(Check *c, const LmnTensorInfo *inputs, gint64 classes, LmnRandom *rng,
                            GError **error)
{
    const LmnGradcheckOptions *o = &c->opts;
    c->inputs = g_new0(Probe, c->n_inputs);
    c->input_grads = g_new0(LmnTensor *, c->n_inputs);
    for (guint i = 0; i < c->n_inputs; i++) {
        Probe *p = &c->inputs[i];
        LmnShape shape = lmn_shape_prepend(&inputs[i].shape, o->batch);
        p->dtype = inputs[i].dtype;
        p->numel = lmn_shape_numel(&shape);
        p->owned = TRUE;
        p->tensor = lmn_tensor_new(c->backend, p->dtype, &shape, error);
        if (p->tensor == NULL)
            return FALSE;
        if (p->dtype == LMN_DTYPE_I32) {
            gint32 *v = g_new(gint32, p->numel);
            for (gint64 j = 0; j < p->numel; j++)
                v[j] = (gint32) lmn_random_below(rng, (guint64) classes);
            p->host = v;
        } else {
            float *v = g_new(float, p->numel);
            for (gint64 j = 0; j < p->numel; j++)
                v[j] = random_value(rng, o);
            p->host = v;
            c->input_grads[i] = lmn_tensor_new(c->backend, LMN_DTYPE_F32, &shape, error);
            if (c->input_grads[i] == NULL)
                return FALSE;
        }
        if (!probe_upload(p, error))
            return FALSE;
    }
    return TRUE;
}

/* Random values for every parameter of the layer. */
static gboolean make_params(Check *c, LmnRandom *rng, GError **error)
{
    c->n_params = lmn_layer_get_n_params(c->layer);
    c->params = g_new0(Probe, MAX(c->n_params, 1));
    for (guint i = 0; i < c->n_params; i++) {
        Probe *p = &c->params[i];
        p->tensor = lmn_layer_get_param(c->layer, i);
        p->dtype = LMN_DTYPE_F32;
        p->numel = lmn_tensor_numel(p->tensor);
        float *v = g_new(float, p->numel);
        for (gint64 j = 0; j < p->numel; j++)
            v[j] = random_value(rng, &c->opts);
        p->host = v;
        if (!probe_upload(p, error))
            return FALSE;
    }
    return TRUE;
}

/* The output tensor and, for a layer that is not a loss, a random output gradient. */
static gboolean make_output(Check *c, const char *type, LmnRandom *rng, GError **error)
{
    const LmnTensorInfo *out = lmn_layer_get_output_info(c->layer);
    if (out->dtype != LMN_DTYPE_F32) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "gradcheck of '%s': its output is %s, not differentiable", type,
                    lmn_dtype_name(out->dtype));
        return FALSE;
    }
    LmnShape out_shape =
        c->loss ? lmn_shape_make(0) : lmn_shape_prepend(&out->shape, c->opts.batch);
    c->out_numel = lmn_shape_numel(&out_shape);
    c->out_host = g_new(float, c->out_numel);
    c->output = lmn_tensor_new(c->backend, LMN_DTYPE_F32, &out_shape, error);
    if (c->output == NULL)
        return FALSE;
    if (c->loss)
        return TRUE;
    /* Plain uniform values: output_grad needs no distance from 0. */
    c->out_grad_host = g_new(float, c->out_numel);
    for (gint64 k = 0; k < c->out_numel; k++)
        c->out_grad_host[k] = (float) (2.0 * lmn_random_uniform_double(rng) - 1.0);
    c->output_grad = lmn_tensor_new(c->backend, LMN_DTYPE_F32, &out_shape, error);
    return c->output_grad != NULL && lmn_tensor_write(c->output_grad, c->out_grad_host,
                                                      (gsize) c->out_numel * sizeof(float), error);
}

/* Builds the layer for a batch and fills its inputs, parameters and output gradient from one
 * random stream, in that order. */
static gboolean setup(Check *c, LmnRegistry *registry, const char *type, const LmnParams *params,
                      const LmnTensorInfo *inputs, GError **error)
{
    c->layer =
        lmn_layer_new(registry, type, type, 0, params, c->backend, c->n_inputs, inputs, error);
    if (c->layer == NULL)
        return FALSE;
    c->loss = lmn_layer_is_loss(c->layer);
    if (!lmn_layer_prepare_batch(c->layer, c->opts.batch, error))
        return FALSE;
    LmnRandom rng;
    lmn_random_init(&rng, c->opts.seed, GRADCHECK_STREAM(0));
    gint64 classes = 0;
    if (!class_count(c, type, inputs, &classes, error) ||
        !make_inputs(c, inputs, classes, &rng, error) || !make_params(c, &rng, error))
        return FALSE;
    lmn_layer_reset_buffers(c->layer);
    return make_output(c, type, &rng, error);
}

/* The analytic gradients at the unperturbed point, and the rounding noise of the objective that
 * numeric_grad() must stay above. */
static gboolean analytic_pass(Check *c, const char *type, LmnTensor **in_tensors, GError **error)
{
    for (guint i = 0; i < c->n_inputs; i++)
        if (c->input_grads[i] != NULL)
            lmn_op_fill(c->input_grads[i], GRADCHECK_SENTINEL);
    for (guint i = 0; i < c->n_params; i++)
        lmn_op_fill(lmn_layer_get_grad(c->layer, i), GRADCHECK_SENTINEL);
    double base;
    if (!eval_objective(c, in_tensors, &base, error))
        return FALSE;
    /*
     * Rounding sources of L: the loss value itself, or each output's rounding weighted by its
     * output_grad, which add up like a random walk.
     */
    double magnitude = 0.0;
    for (gint64 k = 0; !c->loss && k < c->out_numel; k++) {
        double term = (double) c->out_host[k] * (double) c->out_grad_host[k];
        magnitude += term * term;
    }
    magnitude = c->loss ? fabs(base) : sqrt(magnitude);
    c->noise = ldexp(magnitude, -24) / (c->opts.step * c->opts.value_scale);
    for (gint64 k = 0; k < c->out_numel; k++) {
        if (!isfinite(c->out_host[k])) {
            g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_NON_FINITE,
                        "gradcheck of '%s': forward produced a non-finite output at element "
                        "%" G_GINT64_FORMAT,
                        type, k);
            return FALSE;
        }
    }
    LmnLayerIO io;
    io_init(c, &io, TRUE);
    io.inputs = in_tensors;
    lmn_layer_backward(c->layer, &io);
    return lmn_backend_synchronize(c->backend, error);
}

/* Compares each f32 input's and parameter's analytic gradient with central differences, on the
 * elements chosen from the second random stream.  Returns: (transfer full): the results. */
static GPtrArray *compare_all(Check *c, LmnTensor **in_tensors, GError **error)
{
    g_autoptr(GPtrArray) results = g_ptr_array_new_with_free_func(lmn_gradcheck_result_free);
    LmnRandom pick;
    lmn_random_init(&pick, c->opts.seed, GRADCHECK_STREAM(1));
    guint n_tensors = c->n_inputs + c->n_params;
    for (guint t = 0; t < n_tensors; t++) {
        gboolean is_param = t >= c->n_inputs;
        guint index = is_param ? t - c->n_inputs : t;
        Probe *p = is_param ? &c->params[index] : &c->inputs[index];
        if (p->dtype != LMN_DTYPE_F32)
            continue;
        LmnTensor *grad = is_param ? lmn_layer_get_grad(c->layer, index) : c->input_grads[index];
        gint64 n;
        g_autofree guint32 *elements = choose_elements(p->numel, c->opts.max_elements, &pick, &n);
        g_autofree double *analytic = g_new(double, MAX(n, 1));
        g_autofree double *numeric = g_new(double, MAX(n, 1));
        double floor = 0.0;
        if (!read_grad(grad, p->numel, elements, n, analytic, error) ||
            !numeric_grad(c, p, in_tensors, elements, n, analytic, numeric, &floor, error))
            return NULL;
        g_autofree char *name = is_param ? g_strdup(lmn_layer_get_param_name(c->layer, index))
                                         : g_strdup_printf("input %u", index);
        g_ptr_array_add(results,
                        compare(name, is_param, index, elements, n, analytic, numeric, floor));
    }
    return g_steal_pointer(&results);
}

GPtrArray *lmn_gradcheck_layer(LmnRegistry *registry, LmnBackend *backend, const char *type,
                               const LmnParams *params, guint n_inputs, const LmnTensorInfo *inputs,
                               const LmnGradcheckOptions *options, GError **error)
{
    g_return_val_if_fail(registry != NULL, NULL);
    g_return_val_if_fail(backend != NULL, NULL);
    g_return_val_if_fail(type != NULL, NULL);
    g_return_val_if_fail(n_inputs == 0 || inputs != NULL, NULL);
    g_return_val_if_fail(error == NULL || *error == NULL, NULL);

    Check c = {.backend = backend, .n_inputs = n_inputs};
    lmn_gradcheck_options_init(&c.opts);
    if (options != NULL) {
        /* Honour an older caller's smaller struct: keep our defaults for what it lacks. */
        memcpy(&c.opts, options, MIN(options->struct_size, sizeof(LmnGradcheckOptions)));
        c.opts.struct_size = sizeof(LmnGradcheckOptions);
    }
    g_return_val_if_fail(c.opts.batch >= 1, NULL);
    g_return_val_if_fail(c.opts.step > 0.0 && c.opts.value_scale > 0.0, NULL);
    c.opts.margin = CLAMP(MAX(c.opts.margin, 4.0 * c.opts.step), 0.0, 0.9);

    GPtrArray *results = NULL;
    g_autofree LmnTensor **in_tensors = g_new0(LmnTensor *, MAX(n_inputs, 1));
    if (setup(&c, registry, type, params, inputs, error)) {
        for (guint i = 0; i < n_inputs; i++)
            in_tensors[i] = c.inputs[i].tensor;
        if (analytic_pass(&c, type, in_tensors, error))
            results = compare_all(&c, in_tensors, error);
    }
    check_clear(&c);
    return results;
}

double lmn_gradcheck_max_rel_error(const GPtrArray *results)
{
    g_return_val_if_fail(results != NULL, 0.0);
    double worst = 0.0;
    for (guint i = 0; i < results->len; i++) {
        const LmnGradcheckResult *r = g_ptr_array_index((GPtrArray *) results, i);
        worst = MAX(worst, r->max_rel_error);
    }
    return worst;
}

char *lmn_gradcheck_format(const GPtrArray *results)
{
    g_return_val_if_fail(results != NULL, NULL);
    GString *s = g_string_new(NULL);
    g_string_append_printf(s, "%-16s %9s %11s %11s %11s %11s %13s %13s\n", "tensor", "checked",
                           "max rel", "max abs", "scale", "floor", "analytic", "numeric");
    for (guint i = 0; i < results->len; i++) {
        const LmnGradcheckResult *r = g_ptr_array_index((GPtrArray *) results, i);
        g_string_append_printf(s,
                               "%-16s %9" G_GINT64_FORMAT " %11.3e %11.3e %11.3e %11.3e %13.6e "
                               "%13.6e\n",
                               r->name, r->n_checked, r->max_rel_error, r->max_abs_error, r->scale,
                               r->floor, r->worst_analytic, r->worst_numeric);
    }
    return g_string_free(s, FALSE);
}
