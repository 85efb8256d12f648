/* Lamina — checkpoints: writing and reading the DESIGN §5 layout. */
#include "h5-util.h"

#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

/* Element offset of a parameter view inside the model's flat tensor: optimizer slots are flat
 * like the parameters, so the same offset addresses a parameter's slice of each slot. */
static gint64 flat_offset(const LmnTensor *flat, const LmnTensor *view)
{
    return (gint64) ((view->offset - flat->offset) / sizeof(float));
}

static gboolean write_tensor(hid_t file, const char *path, LmnTensor *t, const LmnH5Errors *errs,
                             GError **error)
{
    g_autofree float *host = g_new(float, MAX(lmn_tensor_numel(t), 1));
    if (!lmn_tensor_read(t, host, lmn_tensor_nbytes(t), error))
        return FALSE;
    return lmn_h5_write_float_dataset(file, path, &t->shape, host, errs, error);
}

static gboolean write_string_dataset(hid_t file, const char *name, const char *text,
                                     const LmnH5Errors *errs, GError **error)
{
    g_auto(LmnH5Id) type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    g_auto(LmnH5Id) space = H5Screate(H5S_SCALAR);
    g_auto(LmnH5Id) ds = H5Dcreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT,
                                    H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, &text) < 0) {
        g_autofree char *msg = lmn_h5_error_text();
        g_set_error(error, errs->domain, errs->code_write, "%s:%s: cannot write: %s",
                    errs->filename, name, msg);
        return FALSE;
    }
    return TRUE;
}

/* Writes a hyperparameter as an attribute of its natural HDF5 type, so h5py shows numbers as
 * numbers. */
static gboolean write_param_attr(hid_t obj, const LmnParams *p, const LmnParamSpec *spec,
                                 const LmnH5Errors *errs, GError **error)
{
    switch (spec->type) {
    case LMN_PARAM_FLOAT:
        return lmn_h5_attr_write_double(obj, spec->name, lmn_params_get_float(p, spec->name),
                                        errs, error);
    case LMN_PARAM_INT:
        return lmn_h5_attr_write_int64(obj, spec->name, lmn_params_get_int(p, spec->name), errs,
                                       error);
    case LMN_PARAM_BOOL:
        return lmn_h5_attr_write_int64(obj, spec->name, lmn_params_get_bool(p, spec->name), errs,
                                       error);
    default: {
        const char *text = lmn_params_get_text(p, spec->name);
        return lmn_h5_attr_write_string(obj, spec->name, text ? text : "", errs, error);
    }
    }
}

static gboolean write_model(hid_t file, LmnModel *model, const LmnH5Errors *errs, GError **error)
{
    for (guint i = 0; i < lmn_model_get_n_layers(model); i++) {
        LmnLayer *l = lmn_model_get_layer(model, i);
        for (guint p = 0; p < lmn_layer_get_n_params(l); p++) {
            g_autofree char *path = g_strdup_printf("/model/%s/%s", lmn_layer_get_name(l),
                                                    lmn_layer_get_param_name(l, p));
            if (!write_tensor(file, path, lmn_layer_get_param(l, p), errs, error))
                return FALSE;
        }
        for (guint b = 0; b < lmn_layer_get_n_buffers(l); b++) {
            g_autofree char *path = g_strdup_printf("/model/%s/%s", lmn_layer_get_name(l),
                                                    lmn_layer_get_buffer_name(l, b));
            if (!write_tensor(file, path, lmn_layer_get_buffer(l, b), errs, error))
                return FALSE;
        }
    }
    return TRUE;
}

static gboolean write_optimizer(hid_t file, LmnModel *model, LmnOptimizer *opt,
                                const LmnH5Errors *errs, GError **error)
{
    g_auto(LmnH5Id) g = lmn_h5_group_create(file, "/optimizer", errs, error);
    if (g < 0)
        return FALSE;
    if (!lmn_h5_attr_write_string(g, "type", lmn_optimizer_get_type_name(opt), errs, error) ||
        !lmn_h5_attr_write_string(g, "plugin_version", lmn_optimizer_get_plugin_version(opt),
                                  errs, error) ||
        !lmn_h5_attr_write_int64(g, "step", lmn_optimizer_get_step(opt), errs, error))
        return FALSE;
    const LmnParams *hyper = lmn_optimizer_get_hyper(opt);
    for (const LmnParamSpec *s = lmn_params_get_schema(hyper); s && s->name; s++)
        if (!write_param_attr(g, hyper, s, errs, error))
            return FALSE;
    guint n_host = 0;
    const char *const *host_names = NULL;
    double *host = lmn_optimizer_get_host_state(opt, &n_host, &host_names);
    for (guint i = 0; i < n_host; i++) {
        g_autofree char *name = g_strdup_printf("host_state.%s", host_names[i]);
        if (!lmn_h5_attr_write_double(g, name, host[i], errs, error))
            return FALSE;
    }
    LmnTensor *flat = lmn_model_get_params(model);
    for (guint s = 0; s < lmn_optimizer_get_n_slots(opt); s++) {
        LmnTensor *slot = lmn_optimizer_get_slot(opt, s);
        for (guint i = 0; i < lmn_model_get_n_layers(model); i++) {
            LmnLayer *l = lmn_model_get_layer(model, i);
            for (guint p = 0; p < lmn_layer_get_n_params(l); p++) {
                LmnTensor *param = lmn_layer_get_param(l, p);
                g_autoptr(LmnTensor) view =
                    lmn_tensor_new_view(slot, flat_offset(flat, param), &param->shape);
                g_autofree char *path = g_strdup_printf(
                    "/optimizer/state/%s/%s/%s", lmn_layer_get_name(l),
                    lmn_layer_get_param_name(l, p), lmn_optimizer_get_slot_name(opt, s));
                if (!write_tensor(file, path, view, errs, error))
                    return FALSE;
            }
        }
    }
    return TRUE;
}

static gboolean write_train(hid_t file, LmnSchedule *sched, const LmnTrainState *st,
                            const LmnH5Errors *errs, GError **error)
{
    g_auto(LmnH5Id) g = lmn_h5_group_create(file, "/train", errs, error);
    if (g < 0)
        return FALSE;
    if (!lmn_h5_attr_write_int64(g, "epoch", st->epoch, errs, error) ||
        !lmn_h5_attr_write_int64(g, "step", st->step, errs, error) ||
        !lmn_h5_attr_write_int64(g, "seed", (gint64) st->seed, errs, error) ||
        !lmn_h5_attr_write_double(g, "best_metric", st->best_metric, errs, error) ||
        !lmn_h5_attr_write_int64(g, "best_epoch", st->best_epoch, errs, error))
        return FALSE;
    if (sched) {
        guint n = 0;
        double *state = lmn_schedule_get_state(sched, &n);
        if (!lmn_h5_attr_write_string(g, "schedule", lmn_schedule_get_type_name(sched), errs,
                                      error))
            return FALSE;
        if (n > 0 && !lmn_h5_attr_write_doubles(g, "schedule_state", state, n, errs, error))
            return FALSE;
    }
    return TRUE;
}

gboolean lmn_checkpoint_save(const char *path, const char *config_text, LmnModel *model,
                             LmnOptimizer *opt, LmnSchedule *sched, const LmnTrainState *state,
                             GError **error)
{
    g_return_val_if_fail(path && config_text && model, FALSE);
    LmnH5Errors errs = lmn_h5_errors_checkpoint(path);
    g_autoptr(LmnH5AtomicFile) af = lmn_h5_atomic_file_new(path, FALSE, &errs, error);
    if (!af)
        return FALSE;
    hid_t file = lmn_h5_atomic_file_peek_id(af);
    {
        g_auto(LmnH5Id) root = H5Gopen2(file, "/", H5P_DEFAULT);
        if (!lmn_h5_attr_write_string(root, "format", LMN_CHECKPOINT_FORMAT, &errs, error) ||
            !lmn_h5_attr_write_int64(root, "format_version", LMN_CHECKPOINT_FORMAT_VERSION,
                                     &errs, error) ||
            !lmn_h5_attr_write_string(root, "lamina_version", LMN_VERSION_STRING, &errs, error))
            return FALSE;
    }
    if (!write_string_dataset(file, "/config", config_text, &errs, error) ||
        !write_model(file, model, &errs, error))
        return FALSE;
    if (opt && !write_optimizer(file, model, opt, &errs, error))
        return FALSE;
    if (state && !write_train(file, sched, state, &errs, error))
        return FALSE;
    return lmn_h5_atomic_file_commit(af, error);
}

/* Opens a checkpoint and checks its format attributes when present (weights written by other
 * tools have none and are accepted by the weight loader). */
static hid_t open_checkpoint(const char *path, gboolean require_format, GError **error)
{
    LmnH5Errors errs = lmn_h5_errors_checkpoint(path);
    hid_t file = lmn_h5_file_open_read(path, &errs, error);
    if (file < 0)
        return file;
    g_auto(LmnH5Id) root = H5Gopen2(file, "/", H5P_DEFAULT);
    if (!lmn_h5_attr_exists(root, "format")) {
        if (!require_format)
            return file;
        g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT,
                    "%s: not a Lamina checkpoint (no 'format' attribute on /); only weights "
                    "(--init) can be loaded from it",
                    path);
        lmn_h5_close(file);
        return H5I_INVALID_HID;
    }
    g_autofree char *format = lmn_h5_attr_read_string(root, "format", &errs, error);
    gint64 version = 0;
    if (!format || !lmn_h5_attr_read_int64(root, "format_version", &version, &errs, error)) {
        lmn_h5_close(file);
        return H5I_INVALID_HID;
    }
    if (!g_str_equal(format, LMN_CHECKPOINT_FORMAT)) {
        g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT,
                    "%s: format attribute is '%s', expected '" LMN_CHECKPOINT_FORMAT "'", path,
                    format);
        lmn_h5_close(file);
        return H5I_INVALID_HID;
    }
    if (version > LMN_CHECKPOINT_FORMAT_VERSION) {
        g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT,
                    "%s: checkpoint format version %" G_GINT64_FORMAT
                    " is newer than this Lamina reads (%d); upgrade Lamina",
                    path, version, LMN_CHECKPOINT_FORMAT_VERSION);
        lmn_h5_close(file);
        return H5I_INVALID_HID;
    }
    return file;
}

char *lmn_checkpoint_read_config(const char *path, GError **error)
{
    g_auto(LmnH5Id) file = open_checkpoint(path, TRUE, error);
    if (file < 0)
        return NULL;
    g_auto(LmnH5Id) ds = H5Dopen2(file, "/config", H5P_DEFAULT);
    if (ds < 0) {
        g_autofree char *msg = lmn_h5_error_text();
        g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT,
                    "%s: no /config dataset (the model's config); it cannot be evaluated or "
                    "resumed on its own",
                    path);
        return NULL;
    }
    g_auto(LmnH5Id) ftype = H5Dget_type(ds);
    if (H5Tget_class(ftype) != H5T_STRING) {
        g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT,
                    "%s:/config: expected a string dataset", path);
        return NULL;
    }
    g_auto(LmnH5Id) mtype = H5Tcopy(H5T_C_S1);
    H5Tset_size(mtype, H5T_VARIABLE);
    H5Tset_cset(mtype, H5Tget_cset(ftype));
    if (H5Tis_variable_str(ftype) > 0) {
        char *text = NULL;
        if (H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, &text) < 0 || !text) {
            g_autofree char *msg = lmn_h5_error_text();
            g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT,
                        "%s:/config: cannot read: %s", path, msg);
            return NULL;
        }
        char *copy = g_strdup(text);
        H5free_memory(text);
        return copy;
    }
    gsize size = H5Tget_size(ftype);
    char *buf = g_malloc0(size + 1);
    if (H5Dread(ds, ftype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        g_autofree char *msg = lmn_h5_error_text();
        g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT,
                    "%s:/config: cannot read: %s", path, msg);
        g_free(buf);
        return NULL;
    }
    return buf;
}

/* Reads a float dataset that must exist with exactly @shape into a new host buffer. */
static float *read_exact(hid_t file, const char *path, const char *h5path, const LmnShape *shape,
                         const char *what, GError **error)
{
    LmnH5Errors errs = lmn_h5_errors_checkpoint(path);
    if (!lmn_h5_path_exists(file, h5path)) {
        g_autofree char *s = lmn_shape_to_string(shape);
        g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_MISMATCH,
                    "%s: %s %s is missing (expected float32 %s); the checkpoint was written for "
                    "a different model",
                    path, what, h5path, s);
        return NULL;
    }
    g_autoptr(GError) local = NULL;
    LmnShape found;
    float *data = lmn_h5_read_float_dataset(file, h5path, NULL, &found, &errs, &local);
    if (!data) {
        g_propagate_error(error, g_steal_pointer(&local));
        return NULL;
    }
    if (!lmn_shape_equal(&found, shape)) {
        g_autofree char *want = lmn_shape_to_string(shape);
        g_autofree char *have = lmn_shape_to_string(&found);
        g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_MISMATCH,
                    "%s:%s has shape %s but this model's %s has shape %s; the checkpoint was "
                    "written for a different model",
                    path, h5path, have, what, want);
        g_free(data);
        return NULL;
    }
    return data;
}

typedef struct {
    LmnTensor *target;
    float *data;
} PendingWrite;

static void pending_clear(gpointer p)
{
    g_free(((PendingWrite *) p)->data);
}

/* Commits reads only when all succeeded, so a mismatch leaves the model as it was. */
static gboolean apply_pending(GArray *pending, GError **error)
{
    for (guint i = 0; i < pending->len; i++) {
        PendingWrite *w = &g_array_index(pending, PendingWrite, i);
        if (!lmn_tensor_write(w->target, w->data, lmn_tensor_nbytes(w->target), error))
            return FALSE;
    }
    return TRUE;
}

gboolean lmn_checkpoint_load_weights(const char *path, LmnModel *model, GError **error)
{
    g_return_val_if_fail(path && model, FALSE);
    g_auto(LmnH5Id) file = open_checkpoint(path, FALSE, error);
    if (file < 0)
        return FALSE;
    g_autoptr(GArray) pending = g_array_new(FALSE, TRUE, sizeof(PendingWrite));
    g_array_set_clear_func(pending, pending_clear);
    for (guint i = 0; i < lmn_model_get_n_layers(model); i++) {
        LmnLayer *l = lmn_model_get_layer(model, i);
        guint np = lmn_layer_get_n_params(l), nb = lmn_layer_get_n_buffers(l);
        for (guint k = 0; k < np + nb; k++) {
            gboolean is_param = k < np;
            LmnTensor *t = is_param ? lmn_layer_get_param(l, k) : lmn_layer_get_buffer(l, k - np);
            const char *pname = is_param ? lmn_layer_get_param_name(l, k)
                                         : lmn_layer_get_buffer_name(l, k - np);
            g_autofree char *h5path =
                g_strdup_printf("/model/%s/%s", lmn_layer_get_name(l), pname);
            g_autofree char *what = g_strdup_printf("layer '%s' %s '%s'", lmn_layer_get_name(l),
                                                    is_param ? "parameter" : "buffer", pname);
            float *data = read_exact(file, path, h5path, &t->shape, what, error);
            if (!data)
                return FALSE;
            PendingWrite w = {t, data};
            g_array_append_val(pending, w);
        }
    }
    return apply_pending(pending, error);
}

gboolean lmn_checkpoint_load_training(const char *path, LmnModel *model, LmnOptimizer *opt,
                                      LmnSchedule *sched, LmnTrainState *state,
                                      gboolean reset_optimizer, GError **error)
{
    g_return_val_if_fail(path && model && opt && state, FALSE);
    LmnH5Errors errs = lmn_h5_errors_checkpoint(path);
    g_auto(LmnH5Id) file = open_checkpoint(path, TRUE, error);
    if (file < 0)
        return FALSE;
    g_auto(LmnH5Id) tg = lmn_h5_group_open(file, "/train", &errs, error);
    if (tg < 0)
        return FALSE;
    gint64 epoch, step, seed, best_epoch;
    double best;
    if (!lmn_h5_attr_read_int64(tg, "epoch", &epoch, &errs, error) ||
        !lmn_h5_attr_read_int64(tg, "step", &step, &errs, error) ||
        !lmn_h5_attr_read_int64(tg, "seed", &seed, &errs, error) ||
        !lmn_h5_attr_read_double(tg, "best_metric", &best, &errs, error) ||
        !lmn_h5_attr_read_int64(tg, "best_epoch", &best_epoch, &errs, error))
        return FALSE;

    g_auto(LmnH5Id) og = lmn_h5_group_open(file, "/optimizer", &errs, error);
    if (og < 0)
        return FALSE;
    g_autofree char *type = lmn_h5_attr_read_string(og, "type", &errs, error);
    if (!type)
        return FALSE;
    gboolean same = g_str_equal(type, lmn_optimizer_get_type_name(opt));
    if (!same && !reset_optimizer) {
        g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_OPTIMIZER,
                    "%s: the checkpoint was trained with optimizer '%s' but the config uses "
                    "'%s'; pass --reset-optimizer to continue with fresh '%s' state",
                    path, type, lmn_optimizer_get_type_name(opt),
                    lmn_optimizer_get_type_name(opt));
        return FALSE;
    }
    if (same && !reset_optimizer) {
        gint64 opt_step = 0;
        if (!lmn_h5_attr_read_int64(og, "step", &opt_step, &errs, error))
            return FALSE;
        guint n_host = 0;
        const char *const *names = NULL;
        double *host = lmn_optimizer_get_host_state(opt, &n_host, &names);
        g_autofree double *host_new = g_new0(double, MAX(n_host, 1));
        for (guint i = 0; i < n_host; i++) {
            g_autofree char *an = g_strdup_printf("host_state.%s", names[i]);
            if (!lmn_h5_attr_read_double(og, an, &host_new[i], &errs, error))
                return FALSE;
        }
        /* Slots are stored per parameter; the model's layout says where each one goes. */
        g_autoptr(GArray) pending = g_array_new(FALSE, TRUE, sizeof(PendingWrite));
        g_array_set_clear_func(pending, pending_clear);
        g_autoptr(GPtrArray) views = g_ptr_array_new_with_free_func(
            (GDestroyNotify) lmn_tensor_unref);
        LmnTensor *flat = lmn_model_get_params(model);
        for (guint s = 0; s < lmn_optimizer_get_n_slots(opt); s++) {
            LmnTensor *slot = lmn_optimizer_get_slot(opt, s);
            for (guint i = 0; i < lmn_model_get_n_layers(model); i++) {
                LmnLayer *l = lmn_model_get_layer(model, i);
                for (guint p = 0; p < lmn_layer_get_n_params(l); p++) {
                    LmnTensor *param = lmn_layer_get_param(l, p);
                    LmnTensor *view =
                        lmn_tensor_new_view(slot, flat_offset(flat, param), &param->shape);
                    g_ptr_array_add(views, view);
                    g_autofree char *h5path = g_strdup_printf(
                        "/optimizer/state/%s/%s/%s", lmn_layer_get_name(l),
                        lmn_layer_get_param_name(l, p), lmn_optimizer_get_slot_name(opt, s));
                    g_autofree char *what = g_strdup_printf(
                        "optimizer slot '%s' of layer '%s' parameter '%s'",
                        lmn_optimizer_get_slot_name(opt, s), lmn_layer_get_name(l),
                        lmn_layer_get_param_name(l, p));
                    float *data = read_exact(file, path, h5path, &param->shape, what, error);
                    if (!data)
                        return FALSE;
                    PendingWrite w = {view, data};
                    g_array_append_val(pending, w);
                }
            }
        }
        if (!apply_pending(pending, error))
            return FALSE;
        lmn_optimizer_set_step(opt, opt_step);
        memcpy(host, host_new, n_host * sizeof(double));
    }
    if (sched) {
        guint n = 0;
        double *st = lmn_schedule_get_state(sched, &n);
        if (n > 0) {
            gsize got = 0;
            g_autofree double *vals =
                lmn_h5_attr_read_doubles(tg, "schedule_state", &got, &errs, error);
            if (!vals)
                return FALSE;
            if (got == n)
                memcpy(st, vals, n * sizeof(double));
        }
    }
    state->epoch = epoch;
    state->step = step;
    state->seed = (guint64) seed;
    state->best_metric = best;
    state->best_epoch = best_epoch;
    return TRUE;
}
