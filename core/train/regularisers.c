/* Lamina — the training loop's regularisers on the weights themselves: the max_norm constraint
 * after every update, weight noise around each step's forward and backward passes, and the
 * exponential moving average of the parameters (evaluated next to them and saved as /ema). */
#include "trainer-private.h"

#include <math.h>
#include <string.h>

/* ---- max_norm: one kernel launch per step over every constrained row ---- */

/* Row r: elements [start[r], start[r] + len[r]) of the flat parameters, scaled by
 * maxn[r] / (norm + 1e-7) when its L2 norm exceeds maxn[r] (torch.renorm's rule). */
static void max_norm_cpu(gsize begin, gsize end, void *const *buffers, const float *scalars)
{
    (void) scalars;
    float *w = buffers[0];
    const gint32 *start = buffers[1], *len = buffers[2];
    const float *maxn = buffers[3];
    for (gsize r = begin; r < end; r++) {
        float *row = w + start[r];
        double sum = 0.0;
        for (gint32 i = 0; i < len[r]; i++)
            sum += (double) row[i] * row[i];
        float norm = (float) sqrt(sum);
        if (norm > maxn[r]) {
            float f = maxn[r] / (norm + 1e-7f);
            for (gint32 i = 0; i < len[r]; i++)
                row[i] *= f;
        }
    }
}

#ifdef LMN_HAVE_SPIRV
#include <stdint.h> /* the generated header uses uint32_t */

#include "max-norm-spv.h"
#define MAX_NORM_SPIRV                                                                             \
    (&(const LmnKernelSpirv){                                                                      \
        .struct_size = sizeof(LmnKernelSpirv),                                                     \
        .code = max_norm_spv,                                                                      \
        .code_size = sizeof max_norm_spv,                                                          \
        .entry_point = "main",                                                                     \
    })
#else
#define MAX_NORM_SPIRV NULL
#endif

static const guint8 max_norm_access[] = {LMN_KERNEL_READ_WRITE, LMN_KERNEL_READ, LMN_KERNEL_READ,
                                         LMN_KERNEL_READ};
static const LmnKernelDesc max_norm_kernel = {
    .struct_size = sizeof(LmnKernelDesc),
    .name = "train.max_norm",
    .cpu = max_norm_cpu,
    .n_buffers = G_N_ELEMENTS(max_norm_access),
    .access = max_norm_access,
    .n_scalars = 0,
    .spirv = MAX_NORM_SPIRV,
};

static gint64 flat_offset(LmnTensor *flat, LmnTensor *param)
{
    return (gint64) ((param->offset - flat->offset) / sizeof(float));
}

/* Appends the rows of @lc's layer's weight matrices (role WEIGHT, two or more dimensions; each
 * row the incoming weights of one output unit in PyTorch's layouts).  FALSE with an error for a
 * layer that has none, or is frozen. */
static gboolean max_norm_rows(LmnTrainer *t, guint i, GArray *start, GArray *len, GArray *maxn,
                              GError **error)
{
    const LmnLayerConfig *lc = lmn_config_get_layer(t->cfg, i);
    LmnLayer *l = lmn_model_get_layer(t->model, i);
    LmnTensor *flat = lmn_model_get_params(t->model);
    if (!lc->trainable) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s: layer '%s' is frozen (trainable = false), so its weights must stay as "
                    "they are; remove max_norm or let the layer train",
                    lc->reg_where, lc->name);
        return FALSE;
    }
    gboolean found = FALSE;
    for (guint p = 0; p < lmn_layer_get_n_params(l); p++) {
        LmnTensor *w = lmn_layer_get_param(l, p);
        if (lmn_layer_get_param_role(l, p) != LMN_PARAM_ROLE_WEIGHT || w->shape.ndim < 2)
            continue;
        gint64 rows = w->shape.dims[0], cols = lmn_tensor_numel(w) / MAX(rows, 1);
        gint64 off = flat_offset(flat, w);
        /* The kernel addresses elements with 32-bit offsets. */
        if (off + rows * cols > G_MAXINT32) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                        "%s: the model's parameters exceed 2^31 elements, more than max_norm "
                        "supports; remove max_norm",
                        lc->reg_where);
            return FALSE;
        }
        for (gint64 r = 0; r < rows; r++) {
            gint32 s = (gint32) (off + r * cols), n = (gint32) cols;
            float c = (float) lc->max_norm;
            g_array_append_val(start, s);
            g_array_append_val(len, n);
            g_array_append_val(maxn, c);
        }
        found = TRUE;
    }
    if (!found) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s: layer '%s' (%s) has no weight matrix to constrain: max_norm rescales "
                    "the rows of weights with two or more dimensions (an output unit's incoming "
                    "weights); remove it from this layer",
                    lc->reg_where, lc->name, lc->type);
        return FALSE;
    }
    return TRUE;
}

static LmnTensor *upload(LmnTrainer *t, LmnDType dtype, GArray *values, GError **error)
{
    LmnShape s = lmn_shape_make(1, (gint64) values->len);
    LmnTensor *v = lmn_tensor_new(t->backend, dtype, &s, error);
    if (v && !lmn_tensor_write(v, values->data, values->len * 4, error))
        g_clear_pointer(&v, lmn_tensor_unref);
    return v;
}

static gboolean setup_max_norm(LmnTrainer *t, GError **error)
{
    g_autoptr(GArray) start = g_array_new(FALSE, FALSE, sizeof(gint32));
    g_autoptr(GArray) len = g_array_new(FALSE, FALSE, sizeof(gint32));
    g_autoptr(GArray) maxn = g_array_new(FALSE, FALSE, sizeof(float));
    for (guint i = 0; i < lmn_model_get_n_layers(t->model); i++)
        if (lmn_config_get_layer(t->cfg, i)->max_norm > 0 &&
            !max_norm_rows(t, i, start, len, maxn, error))
            return FALSE;
    if (start->len == 0)
        return TRUE;
    t->mn_rows = start->len;
    t->mn_start = upload(t, LMN_DTYPE_I32, start, error);
    t->mn_len = t->mn_start ? upload(t, LMN_DTYPE_I32, len, error) : NULL;
    t->mn_max = t->mn_len ? upload(t, LMN_DTYPE_F32, maxn, error) : NULL;
    return t->mn_max != NULL;
}

/* ---- weight noise ---- */

static gboolean setup_weight_noise(LmnTrainer *t, GError **error)
{
    if (t->tc->weight_noise <= 0)
        return TRUE;
    LmnTensor *flat = lmn_model_get_params(t->model);
    t->clean_params = lmn_tensor_new(t->backend, LMN_DTYPE_F32, &flat->shape, error);
    t->wn_noise =
        t->clean_params ? lmn_tensor_new(t->backend, LMN_DTYPE_F32, &flat->shape, error) : NULL;
    if (!t->wn_noise)
        return FALSE;
    t->wn_views = g_ptr_array_new_with_free_func((GDestroyNotify) lmn_tensor_unref);
    for (guint i = 0; i < t->slots->len; i++) {
        ParamSlot *ps = &g_array_index(t->slots, ParamSlot, i);
        g_ptr_array_add(t->wn_views,
                        lmn_tensor_new_view(t->wn_noise, flat_offset(flat, ps->w), &ps->w->shape));
    }
    return TRUE;
}

void lmn_train_weight_noise_add(LmnTrainer *t)
{
    if (!t->clean_params)
        return;
    LmnTensor *flat = lmn_model_get_params(t->model);
    lmn_op_copy(t->clean_params, flat);
    guint64 step = (guint64) t->state.step;
    lmn_op_random_normal(t->wn_noise, 0.0f, (float) t->tc->weight_noise, t->state.seed,
                         LMN_STREAM(LMN_STREAM_WEIGHT_NOISE, step));
    for (guint i = 0; i < t->slots->len; i++) {
        ParamSlot *ps = &g_array_index(t->slots, ParamSlot, i);
        if (!ps->frozen)
            lmn_op_axpby(1.0f, g_ptr_array_index(t->wn_views, i), 1.0f, ps->w);
    }
}

void lmn_train_weight_noise_remove(LmnTrainer *t)
{
    if (t->clean_params)
        lmn_op_copy(lmn_model_get_params(t->model), t->clean_params);
}

/* ---- the exponential moving average ---- */

gboolean lmn_train_setup_ema(LmnTrainer *t, GError **error)
{
    if (t->tc->ema_decay <= 0)
        return TRUE;
    LmnTensor *flat = lmn_model_get_params(t->model);
    t->ema = lmn_tensor_new(t->backend, LMN_DTYPE_F32, &flat->shape, error);
    if (!t->ema)
        return FALSE;
    /* The padding between parameters stays 0; the first step overwrites the rest. */
    lmn_op_fill(t->ema, 0.0f);
    t->state.ema_params = t->ema;
    t->state.has_ema = FALSE;
    return TRUE;
}

gboolean lmn_train_setup_regularisers(LmnTrainer *t, GError **error)
{
    return setup_max_norm(t, error) && setup_weight_noise(t, error);
}

void lmn_train_free_regularisers(LmnTrainer *t)
{
    g_clear_pointer(&t->mn_start, lmn_tensor_unref);
    g_clear_pointer(&t->mn_len, lmn_tensor_unref);
    g_clear_pointer(&t->mn_max, lmn_tensor_unref);
    g_clear_pointer(&t->wn_views, g_ptr_array_unref);
    g_clear_pointer(&t->wn_noise, lmn_tensor_unref);
    g_clear_pointer(&t->clean_params, lmn_tensor_unref);
    g_clear_pointer(&t->ema, lmn_tensor_unref);
    t->state.ema_params = NULL;
}

void lmn_train_after_update(LmnTrainer *t)
{
    LmnTensor *flat = lmn_model_get_params(t->model);
    if (t->mn_rows > 0) {
        LmnTensor *buffers[] = {flat, t->mn_start, t->mn_len, t->mn_max};
        lmn_op_kernel(&max_norm_kernel, t->mn_rows, buffers, NULL);
    }
    if (!t->ema)
        return;
    /* The first update copies, as torch.optim.swa_utils.AveragedModel and Keras' use_ema do. */
    if (!t->state.has_ema) {
        lmn_op_copy(t->ema, flat);
        t->state.has_ema = TRUE;
        return;
    }
    float d = (float) t->tc->ema_decay;
    lmn_op_axpby(1.0f - d, flat, d, t->ema);
}

/* Evaluates @ds with the averaged parameters in the model (the buffers, such as batch-norm
 * running statistics, stay the live ones), then puts the live parameters back. */
gboolean lmn_train_evaluate_ema(LmnTrainer *t, const LmnDataset *ds, double *loss, double *acc,
                                GError **error)
{
    *loss = *acc = NAN;
    if (!t->ema || !t->state.has_ema)
        return TRUE;
    LmnTensor *flat = lmn_model_get_params(t->model);
    g_autoptr(LmnTensor) live = lmn_tensor_new(t->backend, LMN_DTYPE_F32, &flat->shape, error);
    if (!live)
        return FALSE;
    lmn_op_copy(live, flat);
    lmn_op_copy(flat, t->ema);
    gboolean ok = lmn_evaluate(t->model, ds, t->tc->batch_size, loss, acc, error);
    lmn_op_copy(flat, live);
    return ok;
}
