/* Lamina — the optimizer object: an optimizer feature bound to the flat parameter and gradient
 * tensors, owning one flat state tensor per slot and the optimizer-wide host state.
 *
 * A step is prepare() on the host (cheap: a handful of scalars) and one kernel launch over every
 * element of the model, so the cost of a step does not grow with the number of layers.  Frozen
 * layers and per-layer learning rates split it into one launch per contiguous range of equal
 * learning rate (views of the flat tensors), which only configs that ask for them pay for.
 */
#include <lamina/backend.h>
#include <lamina/error.h>
#include <lamina/ops.h>
#include <lamina/optimizer.h>
#include <lamina/registry.h>
#include <lamina/tensor.h>
#include <math.h>
#include <string.h>

struct _LmnOptimizer {
    const LmnFeature *feature;
    const LmnOptimizerVTable *vtable;
    LmnParams *hyper;
    LmnTensor *params;
    LmnTensor *grads;
    guint n_slots;
    LmnTensor **slots;
    double *host_state;
    gint64 step;
    guint64 n_launches;
    /* lmn_optimizer_set_grad_scale() for the next step, 1 otherwise; fused: the kernel applies
     * it (LMN_OPTIMIZER_FLAG_GRAD_SCALE within the plugin's struct_size) */
    float grad_scale;
    gboolean fused_scale;
    /* lmn_optimizer_set_ranges(): NULL for one launch over everything, else n_ranges entries of
     * (n_slots + 2) views: param, grad, then the slots, as the update kernel binds them */
    gboolean use_ranges;
    guint n_ranges;
    LmnOptimizerRange *ranges;
    LmnTensor **range_views;
};

/* Whether @vt declares (ABI 1.6, inside its struct_size) that its kernel scales the gradients. */
static gboolean optimizer_fuses_scale(const LmnOptimizerVTable *vt)
{
    return vt->struct_size >= G_STRUCT_OFFSET(LmnOptimizerVTable, grad_scale_scalar) +
                                  sizeof(vt->grad_scale_scalar) &&
           (vt->flags & LMN_OPTIMIZER_FLAG_GRAD_SCALE) != 0;
}

/* Checks what the core relies on before any of the plugin's code runs. */
static gboolean optimizer_check_vtable(const LmnFeature *feature, GError **error)
{
    const LmnOptimizerVTable *vt = feature->desc->vtable;
    const char *problem = NULL;
    guint n_slots = 0;

    if (vt == NULL ||
        vt->struct_size < G_STRUCT_OFFSET(LmnOptimizerVTable, prepare) + sizeof(vt->prepare))
        problem = "its vtable is missing or shorter than the required members";
    else if (vt->prepare == NULL)
        problem = "prepare is NULL";
    else if (vt->update == NULL || vt->update->cpu == NULL)
        problem = "the update kernel or its CPU implementation is missing";
    else if (vt->update->n_buffers > LMN_KERNEL_MAX_BUFFERS)
        problem = "the update kernel binds more than LMN_KERNEL_MAX_BUFFERS buffers";
    else if (vt->update->n_scalars > LMN_KERNEL_MAX_SCALARS)
        problem = "the update kernel declares more than LMN_KERNEL_MAX_SCALARS scalars";
    else if (vt->n_host_state > 0 && vt->host_state_names == NULL)
        problem = "host state is declared without host_state_names";

    if (problem == NULL && vt->slots != NULL)
        while (vt->slots[n_slots] != NULL)
            n_slots++;
    if (problem == NULL && vt->update->n_buffers != 2 + n_slots)
        problem = "the update kernel must bind param, grad and one buffer per slot";
    if (problem == NULL && vt->n_host_state > 0) {
        for (guint i = 0; i < vt->n_host_state; i++)
            if (vt->host_state_names[i] == NULL) {
                problem = "host_state_names has fewer names than n_host_state";
                break;
            }
    }
    if (problem == NULL && optimizer_fuses_scale(vt) &&
        vt->grad_scale_scalar >= vt->update->n_scalars)
        problem = "grad_scale_scalar is outside the update kernel's scalar block";
    if (problem == NULL)
        return TRUE;
    g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_BAD_DESCRIPTOR,
                "optimizer '%s' from %s: %s", feature->desc->name, feature->path, problem);
    return FALSE;
}

LmnOptimizer *lmn_optimizer_new(LmnRegistry *registry, const char *type, const LmnParams *hyper,
                                LmnTensor *params, LmnTensor *grads, GError **error)
{
    g_return_val_if_fail(registry != NULL, NULL);
    g_return_val_if_fail(type != NULL, NULL);
    g_return_val_if_fail(hyper != NULL, NULL);
    g_return_val_if_fail(params != NULL && grads != NULL, NULL);
    g_return_val_if_fail(params->dtype == LMN_DTYPE_F32 && grads->dtype == LMN_DTYPE_F32, NULL);
    g_return_val_if_fail(lmn_tensor_numel(params) == lmn_tensor_numel(grads), NULL);
    g_return_val_if_fail(params->backend == grads->backend, NULL);
    g_return_val_if_fail(error == NULL || *error == NULL, NULL);

    const LmnFeature *feature = lmn_registry_lookup(registry, LMN_FEATURE_OPTIMIZER, type, error);
    if (feature == NULL)
        return NULL;
    if (!optimizer_check_vtable(feature, error))
        return NULL;
    /* The core hands every optimizer its scheduled lr; a schema without one is a plugin bug. */
    if (lmn_param_spec_find(lmn_params_get_schema(hyper), "lr") == NULL) {
        g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_BAD_DESCRIPTOR,
                    "optimizer '%s' from %s: its hyperparameters have no 'lr' key", type,
                    feature->path);
        return NULL;
    }

    const LmnOptimizerVTable *vt = feature->desc->vtable;
    if (LMN_VTABLE_HAS(vt, validate) && !vt->validate(hyper, error)) {
        g_prefix_error(error, "optimizer '%s': ", type);
        return NULL;
    }

    LmnOptimizer *opt = g_new0(LmnOptimizer, 1);
    opt->feature = feature;
    opt->vtable = feature->desc->vtable;
    opt->hyper = lmn_params_ref((LmnParams *) hyper);
    opt->params = lmn_tensor_ref(params);
    opt->grads = lmn_tensor_ref(grads);
    opt->grad_scale = 1.0f;
    opt->fused_scale = optimizer_fuses_scale(opt->vtable);
    opt->n_slots = opt->vtable->update->n_buffers - 2;
    opt->slots = g_new0(LmnTensor *, opt->n_slots + 1);
    opt->host_state = g_new0(double, MAX(opt->vtable->n_host_state, 1));

    for (guint i = 0; i < opt->n_slots; i++) {
        opt->slots[i] = lmn_tensor_new(params->backend, params->dtype, &params->shape, error);
        if (opt->slots[i] == NULL) {
            g_prefix_error(error, "optimizer '%s', state '%s': ", type, opt->vtable->slots[i]);
            lmn_optimizer_free(opt);
            return NULL;
        }
        double initial = LMN_VTABLE_HAS(opt->vtable, slot_initial_value)
                             ? opt->vtable->slot_initial_value(hyper, i)
                             : 0.0;
        lmn_op_fill(opt->slots[i], (float) initial);
    }
    return opt;
}

static void clear_ranges(LmnOptimizer *opt)
{
    for (guint i = 0; i < opt->n_ranges * (opt->n_slots + 2); i++)
        lmn_tensor_unref(opt->range_views[i]);
    g_clear_pointer(&opt->range_views, g_free);
    g_clear_pointer(&opt->ranges, g_free);
    opt->n_ranges = 0;
    opt->use_ranges = FALSE;
}

void lmn_optimizer_free(LmnOptimizer *opt)
{
    if (opt == NULL)
        return;
    for (guint i = 0; i < opt->n_slots; i++)
        if (opt->slots[i] != NULL)
            lmn_tensor_unref(opt->slots[i]);
    g_free(opt->slots);
    g_free(opt->host_state);
    clear_ranges(opt);
    lmn_tensor_unref(opt->grads);
    lmn_tensor_unref(opt->params);
    lmn_params_unref(opt->hyper);
    g_free(opt);
}

/* One launch per range at its own learning rate.  prepare() may advance the host state (NAdam's
 * running product), which must happen once per step, not once per range: every range prepares
 * from the state before the step. */
static void step_ranges(LmnOptimizer *opt, double lr)
{
    const LmnOptimizerVTable *vt = opt->vtable;
    guint n_host = MAX(vt->n_host_state, 1);
    g_autofree double *before = g_memdup2(opt->host_state, n_host * sizeof(double));
    for (guint r = 0; r < MAX(opt->n_ranges, 1); r++) {
        float scalars[LMN_KERNEL_MAX_SCALARS] = {0};
        double mult = opt->n_ranges > 0 ? opt->ranges[r].lr_mult : 1.0;
        memcpy(opt->host_state, before, n_host * sizeof(double));
        vt->prepare(opt->hyper, mult * lr, opt->step, opt->host_state, scalars);
        if (opt->fused_scale)
            scalars[vt->grad_scale_scalar] = opt->grad_scale;
        if (opt->n_ranges == 0)
            break; /* everything frozen: only the host state advances */
        LmnTensor **v = opt->range_views + r * (opt->n_slots + 2);
        lmn_op_kernel(vt->update, (gsize) opt->ranges[r].numel, v, scalars);
        opt->n_launches++;
    }
}

void lmn_optimizer_step(LmnOptimizer *opt, double lr)
{
    g_return_if_fail(opt != NULL);

    const LmnOptimizerVTable *vt = opt->vtable;
    float scalars[LMN_KERNEL_MAX_SCALARS] = {0};
    LmnTensor *buffers[LMN_KERNEL_MAX_BUFFERS];

    opt->step++;
    /* Without the kernel's scaling, the gradients are scaled in place first, as they always
     * were; with it, they are read scaled (the same float32 product) and left as they are. */
    if (opt->grad_scale != 1.0f && !opt->fused_scale)
        lmn_op_axpby(opt->grad_scale, opt->grads, 0.0f, opt->grads);
    if (opt->use_ranges) {
        step_ranges(opt, lr);
        opt->grad_scale = 1.0f;
        return;
    }
    vt->prepare(opt->hyper, lr, opt->step, opt->host_state, scalars);
    if (opt->fused_scale)
        scalars[vt->grad_scale_scalar] = opt->grad_scale;
    opt->grad_scale = 1.0f;

    buffers[0] = opt->params;
    buffers[1] = opt->grads;
    for (guint i = 0; i < opt->n_slots; i++)
        buffers[2 + i] = opt->slots[i];
    lmn_op_kernel(vt->update, (gsize) lmn_tensor_numel(opt->params), buffers, scalars);
    opt->n_launches++;
}

void lmn_optimizer_set_grad_scale(LmnOptimizer *opt, float scale)
{
    g_return_if_fail(opt != NULL);
    g_return_if_fail(isfinite(scale) && scale >= 0.0f);
    opt->grad_scale = scale;
}

gboolean lmn_optimizer_fuses_grad_scale(const LmnOptimizer *opt)
{
    g_return_val_if_fail(opt != NULL, FALSE);
    return opt->fused_scale;
}

void lmn_optimizer_set_ranges(LmnOptimizer *opt, const LmnOptimizerRange *ranges, guint n_ranges)
{
    g_return_if_fail(opt != NULL);
    g_return_if_fail(ranges != NULL || n_ranges == 0);
    gint64 end = 0, numel = lmn_tensor_numel(opt->params);
    for (guint r = 0; r < n_ranges; r++) {
        g_return_if_fail(ranges[r].offset >= end && ranges[r].numel > 0);
        g_return_if_fail(ranges[r].numel <= numel - ranges[r].offset);
        g_return_if_fail(ranges[r].lr_mult > 0);
        end = ranges[r].offset + ranges[r].numel;
    }
    clear_ranges(opt);
    opt->use_ranges = TRUE;
    opt->n_ranges = n_ranges;
    opt->ranges = g_memdup2(ranges, n_ranges * sizeof *ranges);
    guint nb = opt->n_slots + 2;
    opt->range_views = g_new0(LmnTensor *, MAX(n_ranges * nb, 1));
    for (guint r = 0; r < n_ranges; r++) {
        LmnShape shape = lmn_shape_make(1, ranges[r].numel);
        LmnTensor **v = opt->range_views + r * nb;
        v[0] = lmn_tensor_new_view(opt->params, ranges[r].offset, &shape);
        v[1] = lmn_tensor_new_view(opt->grads, ranges[r].offset, &shape);
        for (guint i = 0; i < opt->n_slots; i++)
            v[2 + i] = lmn_tensor_new_view(opt->slots[i], ranges[r].offset, &shape);
    }
}

guint64 lmn_optimizer_get_n_launches(const LmnOptimizer *opt)
{
    g_return_val_if_fail(opt != NULL, 0);
    return opt->n_launches;
}

gint64 lmn_optimizer_get_step(const LmnOptimizer *opt)
{
    g_return_val_if_fail(opt != NULL, 0);
    return opt->step;
}

void lmn_optimizer_set_step(LmnOptimizer *opt, gint64 step)
{
    g_return_if_fail(opt != NULL);
    g_return_if_fail(step >= 0);
    opt->step = step;
}

const char *lmn_optimizer_get_type_name(const LmnOptimizer *opt)
{
    g_return_val_if_fail(opt != NULL, NULL);
    return opt->feature->desc->name;
}

const char *lmn_optimizer_get_plugin_version(const LmnOptimizer *opt)
{
    g_return_val_if_fail(opt != NULL, NULL);
    return opt->feature->plugin->version;
}

const LmnFeature *lmn_optimizer_get_feature(const LmnOptimizer *opt)
{
    g_return_val_if_fail(opt != NULL, NULL);
    return opt->feature;
}

const LmnParams *lmn_optimizer_get_hyper(const LmnOptimizer *opt)
{
    g_return_val_if_fail(opt != NULL, NULL);
    return opt->hyper;
}

guint lmn_optimizer_get_n_slots(const LmnOptimizer *opt)
{
    g_return_val_if_fail(opt != NULL, 0);
    return opt->n_slots;
}

const char *lmn_optimizer_get_slot_name(const LmnOptimizer *opt, guint index)
{
    g_return_val_if_fail(opt != NULL, NULL);
    g_return_val_if_fail(index < opt->n_slots, NULL);
    return opt->vtable->slots[index];
}

LmnTensor *lmn_optimizer_get_slot(LmnOptimizer *opt, guint index)
{
    g_return_val_if_fail(opt != NULL, NULL);
    g_return_val_if_fail(index < opt->n_slots, NULL);
    return opt->slots[index];
}

double *lmn_optimizer_get_host_state(LmnOptimizer *opt, guint *n_out, const char *const **names_out)
{
    g_return_val_if_fail(opt != NULL, NULL);
    if (n_out != NULL)
        *n_out = opt->vtable->n_host_state;
    if (names_out != NULL)
        *names_out = opt->vtable->host_state_names;
    return opt->host_state;
}
