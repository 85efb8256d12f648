/* Lamina — checkpoints: writing and reading the DESIGN §5 layout. */
#include "checkpoint-private.h"
#include "hdf5/h5-util.h"

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

static const char *const monitor_names[] = {"val_loss", "val_accuracy", NULL};

/* Visits the best-weights copies: each parameter's slice of @st->best_params (at the parameter's
 * offset in the model's flat tensor) and each buffer's slice of @st->best_buffers (buffers back
 * to back in layer order), with the /train/best path it is stored under. */
typedef gboolean (*BestVisit)(LmnTensor *view, const char *h5path, const char *what,
                              gpointer data, GError **error);

static gboolean visit_best(LmnModel *model, const LmnTrainState *st, BestVisit visit,
                           gpointer data, GError **error)
{
    LmnTensor *flat = lmn_model_get_params(model);
    gint64 buf_off = 0;
    for (guint i = 0; i < lmn_model_get_n_layers(model); i++) {
        LmnLayer *l = lmn_model_get_layer(model, i);
        guint np = lmn_layer_get_n_params(l), nb = lmn_layer_get_n_buffers(l);
        for (guint k = 0; k < np + nb; k++) {
            gboolean is_param = k < np;
            LmnTensor *t = is_param ? lmn_layer_get_param(l, k) : lmn_layer_get_buffer(l, k - np);
            const char *name = is_param ? lmn_layer_get_param_name(l, k)
                                        : lmn_layer_get_buffer_name(l, k - np);
            g_autoptr(LmnTensor) view = NULL;
            if (is_param) {
                view = lmn_tensor_new_view(st->best_params, flat_offset(flat, t), &t->shape);
            } else {
                view = lmn_tensor_new_view(st->best_buffers, buf_off, &t->shape);
                buf_off += lmn_tensor_numel(t);
            }
            g_autofree char *h5path =
                g_strdup_printf("/train/best/%s/%s", lmn_layer_get_name(l), name);
            g_autofree char *what = g_strdup_printf("best-epoch copy of layer '%s' %s '%s'",
                                                    lmn_layer_get_name(l),
                                                    is_param ? "parameter" : "buffer", name);
            if (!visit(view, h5path, what, data, error))
                return FALSE;
        }
    }
    return TRUE;
}

/* Visits the moving average's parameters: each one's slice of @st->ema_params, stored as
 * /ema/<layer>/<param>. */
static gboolean visit_ema(LmnModel *model, const LmnTrainState *st, BestVisit visit, gpointer data,
                          GError **error)
{
    LmnTensor *flat = lmn_model_get_params(model);
    for (guint i = 0; i < lmn_model_get_n_layers(model); i++) {
        LmnLayer *l = lmn_model_get_layer(model, i);
        for (guint k = 0; k < lmn_layer_get_n_params(l); k++) {
            LmnTensor *t = lmn_layer_get_param(l, k);
            g_autoptr(LmnTensor) view =
                lmn_tensor_new_view(st->ema_params, flat_offset(flat, t), &t->shape);
            const char *name = lmn_layer_get_param_name(l, k);
            g_autofree char *h5path = g_strdup_printf("/ema/%s/%s", lmn_layer_get_name(l), name);
            g_autofree char *what = g_strdup_printf("moving average of layer '%s' parameter '%s'",
                                                    lmn_layer_get_name(l), name);
            if (!visit(view, h5path, what, data, error))
                return FALSE;
        }
    }
    return TRUE;
}

typedef struct {
    hid_t file;
    const LmnH5Errors *errs;
} WriteCtx;

static gboolean write_best_one(LmnTensor *view, const char *h5path, const char *what,
                               gpointer data, GError **error)
{
    (void) what;
    WriteCtx *ctx = data;
    return write_tensor(ctx->file, h5path, view, ctx->errs, error);
}

static gboolean write_train(hid_t file, LmnModel *model, LmnSchedule *sched,
                            const LmnTrainState *st, const LmnH5Errors *errs, GError **error)
{
    g_auto(LmnH5Id) g = lmn_h5_group_create(file, "/train", errs, error);
    if (g < 0)
        return FALSE;
    guint monitor = (guint) st->monitor < G_N_ELEMENTS(monitor_names) - 1 ? st->monitor : 0;
    if (!lmn_h5_attr_write_int64(g, "epoch", st->epoch, errs, error) ||
        !lmn_h5_attr_write_int64(g, "step", st->step, errs, error) ||
        !lmn_h5_attr_write_int64(g, "seed", (gint64) st->seed, errs, error) ||
        !lmn_h5_attr_write_double(g, "best_metric", st->best_metric, errs, error) ||
        !lmn_h5_attr_write_int64(g, "best_epoch", st->best_epoch, errs, error) ||
        !lmn_h5_attr_write_int64(g, "epoch_samples", st->epoch_samples, errs, error) ||
        !lmn_h5_attr_write_int64(g, "wait", st->wait, errs, error) ||
        !lmn_h5_attr_write_int64(g, "stopped_early", st->stopped_early ? 1 : 0, errs, error) ||
        !lmn_h5_attr_write_string(g, "monitor", monitor_names[monitor], errs, error))
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
    if (st->init_from &&
        (!lmn_h5_attr_write_string(g, "init_from", st->init_from, errs, error) ||
         !lmn_h5_attr_write_int64(g, "init_partial", st->init_partial ? 1 : 0, errs, error) ||
         !lmn_h5_attr_write_int64(g, "init_loaded", st->init_loaded, errs, error) ||
         !lmn_h5_attr_write_int64(g, "init_skipped", st->init_skipped, errs, error) ||
         !lmn_h5_attr_write_string(g, "init_skipped_names",
                                   st->init_skipped_names ? st->init_skipped_names : "", errs,
                                   error)))
        return FALSE;
    if (st->has_best_weights && st->best_params) {
        WriteCtx ctx = {file, errs};
        if (!visit_best(model, st, write_best_one, &ctx, error))
            return FALSE;
    }
    if (st->has_ema && st->ema_params) {
        WriteCtx ctx = {file, errs};
        if (!visit_ema(model, st, write_best_one, &ctx, error))
            return FALSE;
    }
    return TRUE;
}

void lmn_train_state_clear_init(LmnTrainState *state)
{
    g_return_if_fail(state != NULL);
    g_clear_pointer(&state->init_from, g_free);
    g_clear_pointer(&state->init_skipped_names, g_free);
    state->init_partial = FALSE;
    state->init_loaded = 0;
    state->init_skipped = 0;
}

void lmn_checkpoint_data_clear(LmnCheckpointData *data)
{
    g_return_if_fail(data != NULL);
    g_free(data->mean);
    g_free(data->std);
    g_strfreev(data->classes);
    g_free(data->source);
    *data = (LmnCheckpointData){.scale = 1.0};
}

void lmn_checkpoint_data_from_dataset(LmnCheckpointData *data, const LmnDataset *ds)
{
    g_return_if_fail(data != NULL && ds != NULL);
    lmn_checkpoint_data_clear(data);
    const double *mean = lmn_dataset_get_mean(ds, &data->n_mean);
    const double *std = lmn_dataset_get_std(ds, &data->n_std);
    data->scale = lmn_dataset_get_scale(ds);
    data->mean = mean ? g_memdup2(mean, data->n_mean * sizeof(double)) : NULL;
    data->std = std ? g_memdup2(std, data->n_std * sizeof(double)) : NULL;
    data->classes = g_strdupv((char **) lmn_dataset_get_classes(ds));
    data->source = g_strdup(lmn_dataset_get_spec(ds));
    data->is_uint8 = lmn_dataset_is_uint8(ds);
}

/* /data: the training split's decoding and class names (checkpoint.h), for `lamina predict`. */
static gboolean write_data(hid_t file, const LmnDataset *ds, const LmnH5Errors *errs,
                           GError **error)
{
    LmnCheckpointData d = {.scale = 1.0};
    lmn_checkpoint_data_from_dataset(&d, ds);
    g_auto(LmnH5Id) group = lmn_h5_group_create(file, "/data", errs, error);
    gboolean ok =
        group >= 0 && lmn_h5_attr_write_double(group, "scale", d.scale, errs, error) &&
        (d.mean == NULL ||
         lmn_h5_attr_write_doubles(group, "mean", d.mean, d.n_mean, errs, error)) &&
        (d.std == NULL || lmn_h5_attr_write_doubles(group, "std", d.std, d.n_std, errs, error)) &&
        lmn_h5_attr_write_string(group, "x_dtype", d.is_uint8 ? "uint8" : "float", errs, error) &&
        lmn_h5_attr_write_string(group, "source", d.source, errs, error) &&
        (d.classes == NULL || d.classes[0] == NULL ||
         lmn_h5_attr_write_strings(group, "classes", (const char *const *) d.classes, errs, error));
    lmn_checkpoint_data_clear(&d);
    return ok;
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
    if (state && !write_train(file, model, sched, state, &errs, error))
        return FALSE;
    if (state && state->train_data && !write_data(file, state->train_data, &errs, error))
        return FALSE;
    if (!lmn_checkpoint_write_plugins(file, model, opt, sched, &errs, error))
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

/* The decoding predict applies to inputs: a scale, means and standard deviations it can use
 * (finite, the divisors non-zero, at least one value each), or a format error naming them. */
static gboolean check_values(const double *v, gsize n, gboolean divisor, const char *name,
                             const char *path, GError **error)
{
    gboolean ok = n >= 1;
    for (gsize i = 0; ok && i < n; i++)
        ok = isfinite(v[i]) && (!divisor || v[i] != 0.0);
    if (!ok)
        g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT,
                    "%s: /data %s: expected finite numbers%s (one, or one per channel), got %zu "
                    "value%s%s; the checkpoint is damaged: retrain or re-save it",
                    path, name, divisor ? " other than 0" : "", n, n == 1 ? "" : "s",
                    n >= 1 ? ", not all of them such" : "");
    return ok;
}

static gboolean check_data_attrs(const LmnCheckpointData *d, const char *path, GError **error)
{
    return check_values(&d->scale, 1, TRUE, "scale", path, error) &&
           (!d->mean || check_values(d->mean, d->n_mean, FALSE, "mean", path, error)) &&
           (!d->std || check_values(d->std, d->n_std, TRUE, "std", path, error));
}

/* Reads /data's attributes into @d; absent optional ones keep their defaults. */
static gboolean read_data_attrs(hid_t group, LmnCheckpointData *d, const LmnH5Errors *errs,
                                GError **error)
{
    if (!lmn_h5_attr_read_double(group, "scale", &d->scale, errs, error))
        return FALSE;
    if (lmn_h5_attr_exists(group, "mean") &&
        !(d->mean = lmn_h5_attr_read_doubles(group, "mean", &d->n_mean, errs, error)))
        return FALSE;
    if (lmn_h5_attr_exists(group, "std") &&
        !(d->std = lmn_h5_attr_read_doubles(group, "std", &d->n_std, errs, error)))
        return FALSE;
    if (lmn_h5_attr_exists(group, "classes") &&
        !(d->classes = lmn_h5_attr_read_strings(group, "classes", errs, error)))
        return FALSE;
    if (lmn_h5_attr_exists(group, "source") &&
        !(d->source = lmn_h5_attr_read_string(group, "source", errs, error)))
        return FALSE;
    if (lmn_h5_attr_exists(group, "x_dtype")) {
        g_autofree char *dtype = lmn_h5_attr_read_string(group, "x_dtype", errs, error);
        if (dtype == NULL)
            return FALSE;
        d->is_uint8 = g_str_equal(dtype, "uint8");
    }
    return check_data_attrs(d, errs->filename, error);
}

gboolean lmn_checkpoint_read_data(const char *path, LmnCheckpointData *data_out,
                                  gboolean *found_out, GError **error)
{
    g_return_val_if_fail(path != NULL && data_out != NULL && found_out != NULL, FALSE);
    *data_out = (LmnCheckpointData){.scale = 1.0};
    *found_out = FALSE;
    g_auto(LmnH5Id) file = open_checkpoint(path, TRUE, error);
    if (file < 0)
        return FALSE;
    if (!lmn_h5_path_exists(file, "/data"))
        return TRUE;
    LmnH5Errors errs = lmn_h5_errors_checkpoint(path);
    g_auto(LmnH5Id) group = lmn_h5_group_open(file, "/data", &errs, error);
    if (group < 0 || !read_data_attrs(group, data_out, &errs, error)) {
        lmn_checkpoint_data_clear(data_out);
        return FALSE;
    }
    *found_out = TRUE;
    return TRUE;
}

char *lmn_checkpoint_read_config(const char *path, GError **error)
{
    g_auto(LmnH5Id) file = open_checkpoint(path, TRUE, error);
    if (file < 0)
        return NULL;
    if (!lmn_h5_path_exists(file, "/config")) {
        g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT,
                    "%s: no /config dataset (the model's config); it cannot be evaluated or "
                    "resumed on its own",
                    path);
        return NULL;
    }
    /* The helper checks type and dataspace before reading: a string array stored as /config
     * used to be read into a buffer for one string. */
    LmnH5Errors errs = lmn_h5_errors_checkpoint(path);
    g_autoptr(GError) local = NULL;
    char *text = lmn_h5_read_string_dataset(file, "/config", &errs, &local);
    if (!text) {
        g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT,
                    "%s; the checkpoint is damaged "
                    "or was not written by Lamina: use another checkpoint of the run",
                    local->message);
        return NULL;
    }
    return text;
}

/* A dataset's declared shape, without reading it (FALSE when @path is no dataset). */
static gboolean dataset_shape(hid_t file, const char *path, LmnShape *shape)
{
    g_auto(LmnH5Id) ds = H5Dopen2(file, path, H5P_DEFAULT);
    if (ds < 0)
        return FALSE;
    g_auto(LmnH5Id) space = H5Dget_space(ds);
    int nd = H5Sget_simple_extent_ndims(space);
    if (nd < 0 || nd > LMN_MAX_DIMS)
        return FALSE;
    hsize_t dims[LMN_MAX_DIMS];
    H5Sget_simple_extent_dims(space, dims, NULL);
    shape->ndim = (guint) nd;
    for (int i = 0; i < nd; i++)
        shape->dims[i] = dims[i] <= (hsize_t) G_MAXINT64 ? (gint64) dims[i] : G_MAXINT64;
    return TRUE;
}

/* Fails when @data holds NaN or an infinity: a run that diverged saved it, and training on from
 * it would only make more (the loss guard stops it at once, or relu hides it and it trains on
 * silently).  Named by tensor, with the count, so the user can judge the damage. */
static gboolean check_finite(const float *data, gint64 numel, const char *path, const char *h5path,
                             const char *what, GError **error)
{
    gint64 bad = 0, first = -1;
    for (gint64 i = 0; i < numel; i++) {
        if (!isfinite(data[i])) {
            if (first < 0)
                first = i;
            bad++;
        }
    }
    if (bad == 0)
        return TRUE;
    g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_NON_FINITE,
                "%s:%s (%s): %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT
                " values are not finite (NaN or infinity; the first at flat index %" G_GINT64_FORMAT
                "); the run that saved it diverged or the file is damaged. Use an earlier "
                "checkpoint, or pass --allow-nonfinite to load it anyway",
                path, h5path, what, bad, numel, first);
    return FALSE;
}

/* Reads a float dataset that must exist with exactly @shape into a new host buffer. */
static float *read_exact(hid_t file, const char *path, const char *h5path, const LmnShape *shape,
                         const char *what, LmnCheckpointLoadFlags flags, GError **error)
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
    /* The shape is compared before anything is allocated: the file's extent may be anything. */
    LmnShape found;
    if (dataset_shape(file, h5path, &found) && !lmn_shape_equal(&found, shape)) {
        g_autofree char *want = lmn_shape_to_string(shape);
        g_autofree char *have = lmn_shape_to_string(&found);
        g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_MISMATCH,
                    "%s:%s has shape %s but this model's %s has shape %s; the checkpoint was "
                    "written for a different model",
                    path, h5path, have, what, want);
        return NULL;
    }
    float *data = lmn_h5_read_float_dataset(file, h5path, shape, NULL, &errs, error);
    if (data && (flags & LMN_CHECKPOINT_LOAD_REQUIRE_FINITE) &&
        !check_finite(data, lmn_shape_numel(shape), path, h5path, what, error)) {
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
    return lmn_checkpoint_load_weights_full(path, model, LMN_CHECKPOINT_LOAD_DEFAULT, error);
}

static GPtrArray *list_links(hid_t file, const char *group);

static void skipped_free(gpointer p)
{
    LmnCheckpointSkipped *s = p;
    g_free(s->layer);
    g_free(s->name);
    g_free(s);
}

void lmn_checkpoint_load_report_free(LmnCheckpointLoadReport *report)
{
    if (!report)
        return;
    g_clear_pointer(&report->skipped, g_ptr_array_unref);
    g_free(report);
}

/* Appends "NAME SHAPE" to a list of at most 8 entries, then counts the rest, so a message about
 * a large model or file stays readable. */
static void list_tensor(GString *out, guint *n, const char *layer, const char *name,
                        const LmnShape *shape)
{
    if (*n < 8) {
        g_autofree char *s = shape ? lmn_shape_to_string(shape) : g_strdup("(not a dataset)");
        g_string_append_printf(out, "%s%s.%s %s", *n ? ", " : "", layer, name, s);
    }
    (*n)++;
}

static void list_end(GString *out, guint n)
{
    if (n == 0)
        g_string_append(out, "nothing");
    else if (n > 8)
        g_string_append_printf(out, " and %u more", n - 8);
}

/* The error of a partial load that found nothing to load: what the file holds under /model
 * and what the model has, so a user sees at once whether the layer names or the shapes differ. */
static void set_nothing_fits(hid_t file, const char *path, LmnModel *model, GError **error)
{
    g_autoptr(GString) held = g_string_new(NULL);
    guint n_held = 0;
    g_autoptr(GPtrArray) layers = list_links(file, "/model");
    for (guint i = 0; i < layers->len; i++) {
        const char *layer = g_ptr_array_index(layers, i);
        g_autofree char *group = g_strdup_printf("/model/%s", layer);
        g_autoptr(GPtrArray) names = list_links(file, group);
        for (guint j = 0; j < names->len; j++) {
            const char *name = g_ptr_array_index(names, j);
            g_autofree char *h5path = g_strdup_printf("%s/%s", group, name);
            LmnShape shape;
            gboolean ok = dataset_shape(file, h5path, &shape);
            list_tensor(held, &n_held, layer, name, ok ? &shape : NULL);
        }
    }
    list_end(held, n_held);
    g_autoptr(GString) has = g_string_new(NULL);
    guint n_has = 0;
    for (guint i = 0; i < lmn_model_get_n_layers(model); i++) {
        LmnLayer *l = lmn_model_get_layer(model, i);
        guint np = lmn_layer_get_n_params(l), nb = lmn_layer_get_n_buffers(l);
        for (guint k = 0; k < np + nb; k++) {
            gboolean is_param = k < np;
            LmnTensor *t = is_param ? lmn_layer_get_param(l, k) : lmn_layer_get_buffer(l, k - np);
            list_tensor(has, &n_has, lmn_layer_get_name(l),
                        is_param ? lmn_layer_get_param_name(l, k)
                                 : lmn_layer_get_buffer_name(l, k - np),
                        &t->shape);
        }
    }
    list_end(has, n_has);
    g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_MISMATCH,
                "%s: nothing in it fits this model: it holds %s under /model; the model has %s. "
                "A tensor is loaded only when its layer name, its name and its shape match: "
                "rename the layers in the config to those of the file, or start without --init",
                path, held->str, has->str);
}

/* Loads every tensor of @model from @path.  Without @report every one must be there with its
 * shape (the first that is not is the error); with it, those missing or misshapen in the file
 * are listed in it instead, and only finding none at all is an error. */
static gboolean load_weights(const char *path, LmnModel *model, LmnCheckpointLoadFlags flags,
                             LmnCheckpointLoadReport *report, GError **error)
{
    g_auto(LmnH5Id) file = open_checkpoint(path, FALSE, error);
    if (file < 0)
        return FALSE;
    gboolean ema = (flags & LMN_CHECKPOINT_LOAD_EMA) != 0;
    if (ema && !lmn_h5_path_exists(file, "/ema")) {
        g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_MISMATCH,
                    "%s: has no /ema, the moving average of the weights (the run that wrote it "
                    "had no [train] ema_decay); evaluate its /model weights without --ema",
                    path);
        return FALSE;
    }
    g_autoptr(GArray) pending = g_array_new(FALSE, TRUE, sizeof(PendingWrite));
    g_array_set_clear_func(pending, pending_clear);
    guint n_tensors = 0;
    for (guint i = 0; i < lmn_model_get_n_layers(model); i++) {
        LmnLayer *l = lmn_model_get_layer(model, i);
        guint np = lmn_layer_get_n_params(l), nb = lmn_layer_get_n_buffers(l);
        for (guint k = 0; k < np + nb; k++) {
            gboolean is_param = k < np;
            LmnTensor *t = is_param ? lmn_layer_get_param(l, k) : lmn_layer_get_buffer(l, k - np);
            const char *pname = is_param ? lmn_layer_get_param_name(l, k)
                                         : lmn_layer_get_buffer_name(l, k - np);
            g_autofree char *h5path = g_strdup_printf(
                "/%s/%s/%s", is_param && ema ? "ema" : "model", lmn_layer_get_name(l), pname);
            n_tensors++;
            if (report) {
                /* Only absence and another shape are a mismatch; a tensor that is there with
                 * the right shape but cannot be read is damage, and an error below. */
                LmnShape found;
                gboolean missing = !lmn_h5_path_exists(file, h5path);
                if (missing ||
                    (dataset_shape(file, h5path, &found) && !lmn_shape_equal(&found, &t->shape))) {
                    LmnCheckpointSkipped *s = g_new0(LmnCheckpointSkipped, 1);
                    s->layer = g_strdup(lmn_layer_get_name(l));
                    s->layer_index = i;
                    s->name = g_strdup(pname);
                    s->is_buffer = !is_param;
                    s->index = is_param ? k : k - np;
                    s->reason = missing ? LMN_CHECKPOINT_SKIP_MISSING : LMN_CHECKPOINT_SKIP_SHAPE;
                    s->file_shape = missing ? lmn_shape_make(0) : found;
                    s->shape = t->shape;
                    g_ptr_array_add(report->skipped, s);
                    continue;
                }
            }
            g_autofree char *what = g_strdup_printf("layer '%s' %s '%s'", lmn_layer_get_name(l),
                                                    is_param ? "parameter" : "buffer", pname);
            float *data = read_exact(file, path, h5path, &t->shape, what, flags, error);
            if (!data)
                return FALSE;
            PendingWrite w = {t, data};
            g_array_append_val(pending, w);
        }
    }
    if (report && pending->len == 0 && n_tensors > 0) {
        set_nothing_fits(file, path, model, error);
        return FALSE;
    }
    if (report)
        report->n_loaded = pending->len;
    return apply_pending(pending, error);
}

gboolean lmn_checkpoint_load_weights_full(const char *path, LmnModel *model,
                                          LmnCheckpointLoadFlags flags, GError **error)
{
    g_return_val_if_fail(path && model, FALSE);
    return load_weights(path, model, flags, NULL, error);
}

gboolean lmn_checkpoint_load_weights_partial(const char *path, LmnModel *model,
                                             LmnCheckpointLoadFlags flags,
                                             LmnCheckpointLoadReport **report, GError **error)
{
    g_return_val_if_fail(path && model && report, FALSE);
    g_autoptr(LmnCheckpointLoadReport) r = g_new0(LmnCheckpointLoadReport, 1);
    r->skipped = g_ptr_array_new_with_free_func(skipped_free);
    if (!load_weights(path, model, flags, r, error))
        return FALSE;
    *report = g_steal_pointer(&r);
    return TRUE;
}

typedef struct {
    hid_t file;
    const char *path;
    GArray *pending;
    GPtrArray *views;
    LmnCheckpointLoadFlags flags;
} ReadCtx;

static gboolean read_best_one(LmnTensor *view, const char *h5path, const char *what,
                              gpointer data, GError **error)
{
    ReadCtx *ctx = data;
    float *values = read_exact(ctx->file, ctx->path, h5path, &view->shape, what, ctx->flags, error);
    if (!values)
        return FALSE;
    g_ptr_array_add(ctx->views, lmn_tensor_ref(view));
    PendingWrite w = {view, values};
    g_array_append_val(ctx->pending, w);
    return TRUE;
}

/* Reads an optional integer attribute of /train (absent in checkpoints of older versions). */
static gboolean read_optional_int(hid_t g, const char *name, gint64 fallback, gint64 *out,
                                  const LmnH5Errors *errs, GError **error)
{
    *out = fallback;
    return !lmn_h5_attr_exists(g, name) || lmn_h5_attr_read_int64(g, name, out, errs, error);
}

/* What lmn_checkpoint_load_training() reads before it writes anything. */
typedef struct {
    LmnTrainState state; /* the counters of /train */
    gboolean load_opt;   /* the optimizer's state is restored (same type, no reset) */
    gint64 opt_step;
    double *host;  /* the optimizer's host state, n_host values */
    double *sched; /* the schedule's state, n_sched values (n_sched 0: left fresh) */
    guint n_sched;
    GArray *pending;  /* PendingWrite: slots and best weights, written last */
    GPtrArray *views; /* the tensor views the pending writes go through */
} TrainingRead;

static void training_read_clear(TrainingRead *r)
{
    lmn_train_state_clear_init(&r->state);
    g_free(r->host);
    g_free(r->sched);
    g_clear_pointer(&r->pending, g_array_unref);
    g_clear_pointer(&r->views, g_ptr_array_unref);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(TrainingRead, training_read_clear)

/* The counters of /train: epoch, step, seed, the best metric and early stopping's state. */
static gboolean read_train_counters(hid_t tg, const char *path, const LmnH5Errors *errs,
                                    LmnTrainState *st, GError **error)
{
    gint64 seed, stopped_early;
    if (!lmn_h5_attr_read_int64(tg, "epoch", &st->epoch, errs, error) ||
        !lmn_h5_attr_read_int64(tg, "step", &st->step, errs, error) ||
        !lmn_h5_attr_read_int64(tg, "seed", &seed, errs, error) ||
        !lmn_h5_attr_read_double(tg, "best_metric", &st->best_metric, errs, error) ||
        !lmn_h5_attr_read_int64(tg, "best_epoch", &st->best_epoch, errs, error) ||
        !read_optional_int(tg, "epoch_samples", -1, &st->epoch_samples, errs, error) ||
        !read_optional_int(tg, "wait", 0, &st->wait, errs, error) ||
        !read_optional_int(tg, "stopped_early", 0, &stopped_early, errs, error))
        return FALSE;
    st->seed = (guint64) seed;
    st->stopped_early = stopped_early != 0;
    st->monitor = LMN_MONITOR_VAL_LOSS;
    if (lmn_h5_attr_exists(tg, "monitor")) {
        g_autofree char *m = lmn_h5_attr_read_string(tg, "monitor", errs, error);
        if (!m)
            return FALSE;
        if (g_str_equal(m, "val_accuracy"))
            st->monitor = LMN_MONITOR_VAL_ACCURACY;
    }
    if (st->epoch < 0 || st->step < 0 || st->epoch_samples < -1) {
        g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT,
                    "%s:/train: negative counters (epoch %" G_GINT64_FORMAT
                    ", step %" G_GINT64_FORMAT "); the file is damaged",
                    path, st->epoch, st->step);
        return FALSE;
    }
    /* Bounds far beyond any real run and far below where the loop's arithmetic (step + 1,
     * epoch * steps_per_epoch, the schedule's doubles) would overflow or lose exactness. */
    struct {
        const char *name;
        gint64 value, lo, hi;
    } counters[] = {
        {"epoch", st->epoch, 0, LMN_CHECKPOINT_MAX_EPOCH},
        {"step", st->step, 0, LMN_CHECKPOINT_MAX_STEP},
        {"epoch_samples", st->epoch_samples, -1, LMN_CHECKPOINT_MAX_STEP},
        {"best_epoch", st->best_epoch, -1, st->epoch},
        {"wait", st->wait, 0, st->epoch},
    };
    for (gsize i = 0; i < G_N_ELEMENTS(counters); i++) {
        if (counters[i].value < counters[i].lo || counters[i].value > counters[i].hi) {
            g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT,
                        "%s:/train: %s is %" G_GINT64_FORMAT "; expected %" G_GINT64_FORMAT
                        " to %" G_GINT64_FORMAT " (epoch is %" G_GINT64_FORMAT
                        "); the file is damaged: use another checkpoint",
                        path, counters[i].name, counters[i].value, counters[i].lo, counters[i].hi,
                        st->epoch);
            return FALSE;
        }
    }
    return TRUE;
}

/* The --init record of /train (absent when the run started without --init). */
static gboolean read_init_record(hid_t tg, const char *path, const LmnH5Errors *errs,
                                 LmnTrainState *st, GError **error)
{
    if (!lmn_h5_attr_exists(tg, "init_from"))
        return TRUE;
    gint64 partial = 0;
    st->init_from = lmn_h5_attr_read_string(tg, "init_from", errs, error);
    if (!st->init_from || !read_optional_int(tg, "init_partial", 0, &partial, errs, error) ||
        !read_optional_int(tg, "init_loaded", 0, &st->init_loaded, errs, error) ||
        !read_optional_int(tg, "init_skipped", 0, &st->init_skipped, errs, error))
        return FALSE;
    st->init_skipped_names = lmn_h5_attr_exists(tg, "init_skipped_names")
                                 ? lmn_h5_attr_read_string(tg, "init_skipped_names", errs, error)
                                 : g_strdup("");
    if (!st->init_skipped_names)
        return FALSE;
    /* No model has G_MAXINT32 tensors; beyond that the file is damaged. */
    if (partial < 0 || partial > 1 || st->init_loaded < 0 || st->init_loaded > G_MAXINT32 ||
        st->init_skipped < 0 || st->init_skipped > G_MAXINT32) {
        g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT,
                    "%s:/train: init_partial is %" G_GINT64_FORMAT ", init_loaded %" G_GINT64_FORMAT
                    ", init_skipped %" G_GINT64_FORMAT "; expected 0 or 1 and counts from 0 to "
                    "%d; the file is damaged: use another checkpoint",
                    path, partial, st->init_loaded, st->init_skipped, G_MAXINT32);
        return FALSE;
    }
    st->init_partial = partial != 0;
    return TRUE;
}

/* Whether the saved optimizer's state is to be loaded: only for the same type; another type is
 * an error unless @reset_optimizer. */
static gboolean check_optimizer_type(hid_t og, const char *path, LmnOptimizer *opt,
                                     gboolean reset_optimizer, const LmnH5Errors *errs,
                                     gboolean *load, GError **error)
{
    g_autofree char *type = lmn_h5_attr_read_string(og, "type", errs, error);
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
    *load = same && !reset_optimizer;
    return TRUE;
}

/* Queues one slot of one parameter: /optimizer/state/LAYER/PARAM/SLOT. */
static gboolean read_slot(hid_t file, const char *path, LmnModel *model, LmnOptimizer *opt, guint s,
                          LmnLayer *l, guint p, TrainingRead *r, LmnCheckpointLoadFlags flags,
                          GError **error)
{
    LmnTensor *param = lmn_layer_get_param(l, p);
    LmnTensor *slot = lmn_optimizer_get_slot(opt, s);
    LmnTensor *view =
        lmn_tensor_new_view(slot, flat_offset(lmn_model_get_params(model), param), &param->shape);
    g_ptr_array_add(r->views, view);
    const char *slot_name = lmn_optimizer_get_slot_name(opt, s);
    g_autofree char *h5path = g_strdup_printf("/optimizer/state/%s/%s/%s", lmn_layer_get_name(l),
                                              lmn_layer_get_param_name(l, p), slot_name);
    g_autofree char *what =
        g_strdup_printf("optimizer slot '%s' of layer '%s' parameter '%s'", slot_name,
                        lmn_layer_get_name(l), lmn_layer_get_param_name(l, p));
    float *data = read_exact(file, path, h5path, &param->shape, what, flags, error);
    if (!data)
        return FALSE;
    PendingWrite w = {view, data};
    g_array_append_val(r->pending, w);
    return TRUE;
}

/* The optimizer's step, host state and slots.  Slots are stored per parameter; the model's
 * layout says where each one goes. */
static gboolean read_optimizer_state(hid_t file, hid_t og, const char *path, LmnModel *model,
                                     LmnOptimizer *opt, const LmnH5Errors *errs, TrainingRead *r,
                                     LmnCheckpointLoadFlags flags, GError **error)
{
    guint n_host = 0;
    const char *const *names = NULL;
    lmn_optimizer_get_host_state(opt, &n_host, &names);
    r->host = g_new0(double, MAX(n_host, 1));
    if (!lmn_h5_attr_read_int64(og, "step", &r->opt_step, errs, error))
        return FALSE;
    if (r->opt_step < 0 || r->opt_step > LMN_CHECKPOINT_MAX_STEP) {
        g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT,
                    "%s:/optimizer: step is %" G_GINT64_FORMAT "; expected 0 to %" G_GINT64_FORMAT
                    " (no run takes more steps); the file is damaged: use another checkpoint",
                    path, r->opt_step, (gint64) LMN_CHECKPOINT_MAX_STEP);
        return FALSE;
    }
    for (guint i = 0; i < n_host; i++) {
        g_autofree char *an = g_strdup_printf("host_state.%s", names[i]);
        if (!lmn_h5_attr_read_double(og, an, &r->host[i], errs, error))
            return FALSE;
    }
    for (guint s = 0; s < lmn_optimizer_get_n_slots(opt); s++) {
        for (guint i = 0; i < lmn_model_get_n_layers(model); i++) {
            LmnLayer *l = lmn_model_get_layer(model, i);
            for (guint p = 0; p < lmn_layer_get_n_params(l); p++)
                if (!read_slot(file, path, model, opt, s, l, p, r, flags, error))
                    return FALSE;
        }
    }
    return TRUE;
}

/* The schedule's state; a run resumed with another schedule type starts it fresh. */
static gboolean read_schedule_state(hid_t tg, const char *path, LmnSchedule *sched,
                                    const LmnH5Errors *errs, TrainingRead *r, GError **error)
{
    guint n_sched = 0;
    if (sched)
        lmn_schedule_get_state(sched, &n_sched);
    if (n_sched > 0 && lmn_h5_attr_exists(tg, "schedule")) {
        g_autofree char *sname = lmn_h5_attr_read_string(tg, "schedule", errs, error);
        if (!sname)
            return FALSE;
        if (!g_str_equal(sname, lmn_schedule_get_type_name(sched)))
            n_sched = 0;
    }
    if (n_sched == 0)
        return TRUE;
    gsize got = 0;
    r->sched = lmn_h5_attr_read_doubles(tg, "schedule_state", &got, errs, error);
    if (!r->sched)
        return FALSE;
    if (got != n_sched) {
        g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_MISMATCH,
                    "%s:/train schedule_state has %zu values but schedule '%s' keeps %u; "
                    "the checkpoint was written with another schedule",
                    path, got, lmn_schedule_get_type_name(sched), n_sched);
        return FALSE;
    }
    r->n_sched = n_sched;
    return TRUE;
}

/* Writes what was read into the optimizer, the schedule and @state. */
static gboolean apply_training(TrainingRead *r, LmnOptimizer *opt, LmnSchedule *sched,
                               LmnTrainState *state, GError **error)
{
    if (!apply_pending(r->pending, error))
        return FALSE;
    if (r->load_opt) {
        guint n_host = 0;
        const char *const *names = NULL;
        double *host = lmn_optimizer_get_host_state(opt, &n_host, &names);
        lmn_optimizer_set_step(opt, r->opt_step);
        memcpy(host, r->host, n_host * sizeof(double));
    }
    if (r->n_sched > 0) {
        guint n = 0;
        memcpy(lmn_schedule_get_state(sched, &n), r->sched, r->n_sched * sizeof(double));
    }
    LmnTrainState *st = &r->state;
    state->epoch = st->epoch;
    state->step = st->step;
    state->seed = st->seed;
    state->best_metric = st->best_metric;
    state->best_epoch = st->best_epoch;
    state->epoch_samples = st->epoch_samples;
    state->wait = st->wait;
    state->stopped_early = st->stopped_early;
    state->monitor = st->monitor;
    state->has_best_weights = st->has_best_weights;
    state->has_ema = st->has_ema;
    lmn_train_state_clear_init(state);
    state->init_from = g_steal_pointer(&st->init_from);
    state->init_skipped_names = g_steal_pointer(&st->init_skipped_names);
    state->init_partial = st->init_partial;
    state->init_loaded = st->init_loaded;
    state->init_skipped = st->init_skipped;
    return TRUE;
}

gboolean lmn_checkpoint_load_training(const char *path, LmnModel *model, LmnOptimizer *opt,
                                      LmnSchedule *sched, LmnTrainState *state,
                                      gboolean reset_optimizer, LmnCheckpointLoadFlags flags,
                                      GError **error)
{
    g_return_val_if_fail(path && model && opt && state, FALSE);
    LmnH5Errors errs = lmn_h5_errors_checkpoint(path);
    g_auto(LmnH5Id) file = open_checkpoint(path, TRUE, error);
    if (file < 0)
        return FALSE;
    g_auto(LmnH5Id) tg = lmn_h5_group_open(file, "/train", &errs, error);
    if (tg < 0)
        return FALSE;
    /* Everything is read and checked before anything is written, so a failure leaves the
     * optimizer, the schedule and @state as they were. */
    g_auto(TrainingRead) r = {0};
    if (!read_train_counters(tg, path, &errs, &r.state, error) ||
        !read_init_record(tg, path, &errs, &r.state, error))
        return FALSE;
    g_auto(LmnH5Id) og = lmn_h5_group_open(file, "/optimizer", &errs, error);
    if (og < 0 || !check_optimizer_type(og, path, opt, reset_optimizer, &errs, &r.load_opt, error))
        return FALSE;
    r.pending = g_array_new(FALSE, TRUE, sizeof(PendingWrite));
    g_array_set_clear_func(r.pending, pending_clear);
    r.views = g_ptr_array_new_with_free_func((GDestroyNotify) lmn_tensor_unref);
    if (r.load_opt && !read_optimizer_state(file, og, path, model, opt, &errs, &r, flags, error))
        return FALSE;
    r.state.has_best_weights = state->best_params && lmn_h5_path_exists(file, "/train/best");
    if (r.state.has_best_weights) {
        ReadCtx ctx = {file, path, r.pending, r.views, flags};
        if (!visit_best(model, state, read_best_one, &ctx, error))
            return FALSE;
    }
    r.state.has_ema = state->ema_params && lmn_h5_path_exists(file, "/ema");
    if (r.state.has_ema) {
        ReadCtx ctx = {file, path, r.pending, r.views, flags};
        if (!visit_ema(model, state, read_best_one, &ctx, error))
            return FALSE;
    }
    return read_schedule_state(tg, path, sched, &errs, &r, error) &&
           apply_training(&r, opt, sched, state, error);
}

/* ---- lmn_checkpoint_describe ---- */

static herr_t collect_name(hid_t loc, const char *name, const H5L_info_t *info, void *data)
{
    (void) loc;
    (void) info;
    g_ptr_array_add(data, g_strdup(name));
    return 0;
}

/* Link names directly under @group, in name order (empty when it does not exist). */
static GPtrArray *list_links(hid_t file, const char *group)
{
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    if (!lmn_h5_path_exists(file, group))
        return names;
    g_auto(LmnH5Id) g = H5Gopen2(file, group, H5P_DEFAULT);
    if (g < 0 || H5Iget_type(g) != H5I_GROUP)
        return names;
    hsize_t idx = 0;
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_name, names);
    return names;
}

static herr_t collect_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    (void) loc;
    (void) info;
    g_ptr_array_add(data, g_strdup(name));
    return 0;
}

/* Writes the shortest "%g" text of @v that reads back as @v into @buf. */
static const char *shortest_double(char *buf, double v)
{
    for (int prec = 1; prec <= 17; prec++) {
        char fmt[8];
        g_snprintf(fmt, sizeof fmt, "%%.%dg", prec);
        g_ascii_formatd(buf, G_ASCII_DTOSTR_BUF_SIZE, fmt, v);
        if (g_ascii_strtod(buf, NULL) == v || isnan(v))
            break;
    }
    return buf;
}

/* An attribute's value as text: integers exactly, floats as the shortest text that reads back
 * as the same double, strings as they are. */
static char *attr_text(hid_t obj, const char *name, const LmnH5Errors *errs)
{
    g_auto(LmnH5Id) a = H5Aopen(obj, name, H5P_DEFAULT);
    g_auto(LmnH5Id) type = a >= 0 ? H5Aget_type(a) : H5I_INVALID_HID;
    H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
    g_autoptr(GError) local = NULL;
    if (cls == H5T_STRING) {
        char *s = lmn_h5_attr_read_string(obj, name, errs, &local);
        return s ? s : g_strdup("?");
    }
    if (cls == H5T_INTEGER) {
        gint64 v = 0;
        if (lmn_h5_attr_read_int64(obj, name, &v, errs, &local))
            return g_strdup_printf("%" G_GINT64_FORMAT, v);
    }
    gsize n = 0;
    g_autofree double *v = lmn_h5_attr_read_doubles(obj, name, &n, errs, NULL);
    if (!v)
        return g_strdup("?");
    GString *out = g_string_new(n == 1 ? "" : "[");
    for (gsize i = 0; i < n; i++) {
        char buf[G_ASCII_DTOSTR_BUF_SIZE];
        g_string_append_printf(out, "%s%s", i ? ", " : "", shortest_double(buf, v[i]));
    }
    if (n != 1)
        g_string_append_c(out, ']');
    return g_string_free(out, FALSE);
}

/* Appends "  name = value" for every attribute of @path but those in @skip. */
static void describe_attrs(GString *out, hid_t file, const char *path, const char *const *skip,
                           const LmnH5Errors *errs)
{
    g_auto(LmnH5Id) obj = H5Oopen(file, path, H5P_DEFAULT);
    if (obj < 0)
        return;
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    hsize_t idx = 0;
    H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr, names);
    for (guint i = 0; i < names->len; i++) {
        const char *n = g_ptr_array_index(names, i);
        if (skip && g_strv_contains(skip, n))
            continue;
        g_autofree char *v = attr_text(obj, n, errs);
        g_string_append_printf(out, "    %s = %s\n", n, v);
    }
}

/* Appends one layer's tensors; returns the number of scalars in them. */
/* Counts from a file can be anything: a sum saturates rather than overflow. */
static gint64 add_saturated(gint64 a, gint64 b)
{
    gint64 r;
    return __builtin_add_overflow(a, b, &r) ? G_MAXINT64 : r;
}

static gint64 describe_layer(GString *out, hid_t file, const char *layer, const char *type,
                             GPtrArray *slots)
{
    g_autofree char *group = g_strdup_printf("/model/%s", layer);
    g_autoptr(GPtrArray) names = list_links(file, group);
    g_string_append_printf(out, "  %s%s%s%s\n", layer, type ? " (" : "", type ? type : "",
                           type ? ")" : "");
    gint64 total = 0;
    for (guint i = 0; i < names->len; i++) {
        const char *n = g_ptr_array_index(names, i);
        g_autofree char *path = g_strdup_printf("%s/%s", group, n);
        LmnShape shape;
        if (!dataset_shape(file, path, &shape)) {
            g_string_append_printf(out, "    %-14s (not a readable dataset)\n", n);
            continue;
        }
        g_autofree char *s = lmn_shape_to_string(&shape);
        gint64 numel = lmn_shape_numel(&shape);
        total = add_saturated(total, numel);
        /* With optimizer slots saved, a tensor without them is a buffer (running stats). */
        g_autofree char *state = g_strdup_printf("/optimizer/state/%s/%s", layer, n);
        gboolean buffer = slots->len > 0 && !lmn_h5_path_exists(file, state);
        g_string_append_printf(out, "    %-14s %-18s %10" G_GINT64_FORMAT "%s\n", n, s, numel,
                               buffer ? "  (buffer)" : "");
    }
    return total;
}

/* "format: ..." for a Lamina checkpoint, or the note for a plain weights file. */
static void describe_format(GString *out, hid_t root, gboolean lamina, const LmnH5Errors *errs)
{
    if (!lamina) {
        g_string_append(out, "format: none (a weights file written by another tool; only "
                             "/model is read, with --init)\n");
        return;
    }
    g_autofree char *format = attr_text(root, "format", errs);
    g_autofree char *version = attr_text(root, "format_version", errs);
    g_autofree char *by = lmn_h5_attr_exists(root, "lamina_version")
                              ? attr_text(root, "lamina_version", errs)
                              : g_strdup("?");
    g_string_append_printf(out, "format: %s version %s (written by Lamina %s)\n", format, version,
                           by);
}

/* The optimizer's slot names: those of the first parameter that has any. */
static GPtrArray *slot_names(hid_t file)
{
    GPtrArray *slots = list_links(file, "/optimizer/state");
    if (slots->len == 0)
        return slots;
    g_autofree char *l0 = g_strdup(g_ptr_array_index(slots, 0));
    g_autofree char *lp = g_strdup_printf("/optimizer/state/%s", l0);
    g_autoptr(GPtrArray) params = list_links(file, lp);
    g_ptr_array_set_size(slots, 0);
    if (params->len > 0) {
        g_autofree char *pp = g_strdup_printf("%s/%s", lp, (char *) g_ptr_array_index(params, 0));
        g_autoptr(GPtrArray) s = list_links(file, pp);
        for (guint i = 0; i < s->len; i++)
            g_ptr_array_add(slots, g_strdup(g_ptr_array_index(s, i)));
    }
    return slots;
}

/* "model: N layers, M values" and a line per layer.  The config gives layer order and types;
 * layers only in /model follow by name. */
static void describe_model(GString *out, hid_t file, const char *config, GPtrArray *slots)
{
    g_autoptr(GPtrArray) layers = list_links(file, "/model");
    g_autoptr(GHashTable) shown = g_hash_table_new(g_str_hash, g_str_equal);
    g_autoptr(GString) body = g_string_new(NULL);
    gint64 total = 0;
    guint n_layers = 0;
    g_autoptr(GKeyFile) kf = g_key_file_new();
    if (config && g_key_file_load_from_data(kf, config, (gsize) -1, G_KEY_FILE_NONE, NULL)) {
        g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
        for (guint i = 0; groups[i]; i++) {
            if (!g_str_has_prefix(groups[i], "layer "))
                continue;
            const char *name = groups[i] + 6;
            g_autofree char *type = g_key_file_get_value(kf, groups[i], "type", NULL);
            if (type)
                g_strstrip(type);
            total = add_saturated(total, describe_layer(body, file, name, type, slots));
            n_layers++;
            for (guint j = 0; j < layers->len; j++)
                if (g_str_equal(g_ptr_array_index(layers, j), name))
                    g_hash_table_add(shown, g_ptr_array_index(layers, j));
        }
    }
    for (guint j = 0; j < layers->len; j++) {
        const char *name = g_ptr_array_index(layers, j);
        if (g_hash_table_contains(shown, name))
            continue;
        total = add_saturated(total, describe_layer(body, file, name, NULL, slots));
        n_layers++;
    }
    g_string_append_printf(out, "model: %u layers, %" G_GINT64_FORMAT " values\n", n_layers,
                           total);
    g_string_append(out, body->str);
}

/* An attribute's text, or "?" when the attribute is absent. */
static char *attr_text_or_unknown(hid_t obj, const char *name, const LmnH5Errors *errs)
{
    return lmn_h5_attr_exists(obj, name) ? attr_text(obj, name, errs) : g_strdup("?");
}

static void describe_optimizer(GString *out, hid_t file, GPtrArray *slots, const LmnH5Errors *errs)
{
    if (!lmn_h5_path_exists(file, "/optimizer")) {
        g_string_append(out, "optimizer: none saved\n");
        return;
    }
    g_auto(LmnH5Id) og = H5Gopen2(file, "/optimizer", H5P_DEFAULT);
    g_autofree char *type = attr_text_or_unknown(og, "type", errs);
    g_autofree char *ver = attr_text_or_unknown(og, "plugin_version", errs);
    g_autofree char *step = attr_text_or_unknown(og, "step", errs);
    g_string_append_printf(out, "optimizer: %s (plugin version %s), step %s\n", type, ver, step);
    g_string_append(out, "  hyperparameters:\n");
    static const char *const skip[] = {"type", "plugin_version", "step", NULL};
    describe_attrs(out, file, "/optimizer", skip, errs);
    g_string_append(out, "  slots:");
    if (slots->len == 0)
        g_string_append(out, " none");
    for (guint i = 0; i < slots->len; i++)
        g_string_append_printf(out, " %s", (char *) g_ptr_array_index(slots, i));
    g_string_append_c(out, '\n');
}

static void describe_training(GString *out, hid_t file, const LmnH5Errors *errs)
{
    if (!lmn_h5_path_exists(file, "/train")) {
        g_string_append(out, "training: no counters saved\n");
        return;
    }
    g_string_append(out, "training:\n");
    describe_attrs(out, file, "/train", NULL, errs);
    g_auto(LmnH5Id) tg = H5Gopen2(file, "/train", H5P_DEFAULT);
    if (tg >= 0 && lmn_h5_attr_exists(tg, "init_from")) {
        g_autofree char *from = attr_text(tg, "init_from", errs);
        g_autofree char *partial = attr_text_or_unknown(tg, "init_partial", errs);
        g_autofree char *loaded = attr_text_or_unknown(tg, "init_loaded", errs);
        g_autofree char *skipped = attr_text_or_unknown(tg, "init_skipped", errs);
        g_autofree char *names = attr_text_or_unknown(tg, "init_skipped_names", errs);
        gboolean is_partial = g_str_equal(partial, "1");
        g_string_append_printf(out,
                               "    (the run started from the weights of %s with --init%s: "
                               "%s tensors loaded, %s kept their initialisation%s%s)\n",
                               from, is_partial ? " --init-partial" : "", loaded, skipped,
                               *names && !g_str_equal(names, "?") ? ": " : "",
                               g_str_equal(names, "?") ? "" : names);
    }
    if (lmn_h5_path_exists(file, "/train/best"))
        g_string_append(out, "    (the best epoch's weights are saved in /train/best)\n");
}

/* The config text, indented, without its trailing blank lines. */
static void describe_config(GString *out, const char *config)
{
    g_string_append(out, "config:\n");
    g_auto(GStrv) lines = g_strsplit(config, "\n", -1);
    guint n = g_strv_length(lines);
    while (n > 0 && !*lines[n - 1])
        n--;
    for (guint i = 0; i < n; i++)
        g_string_append_printf(out, "%s%s\n", *lines[i] ? "  " : "", lines[i]);
}

/* "plugins:" and a line per component, when the file records them. */
static void describe_plugins(GString *out, hid_t file, const LmnH5Errors *errs)
{
    if (!lmn_h5_path_exists(file, "/plugins"))
        return;
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) plugins = lmn_checkpoint_read_plugins_from(file, errs, &error);
    if (!plugins) {
        g_string_append_printf(out, "plugins: not readable: %s\n", error->message);
        return;
    }
    g_string_append(out, "plugins:\n");
    for (guint i = 0; i < plugins->len; i++) {
        const LmnCheckpointPlugin *p = g_ptr_array_index(plugins, i);
        g_autofree char *what = g_str_equal(p->kind, p->name)
                                    ? g_strdup(p->kind)
                                    : g_strdup_printf("%s %s", p->kind, p->name);
        g_string_append_printf(out, "  %-28s %-24s %s %s\n", what, p->type, p->plugin, p->version);
    }
}

char *lmn_checkpoint_describe(const char *path, GError **error)
{
    g_return_val_if_fail(path != NULL, NULL);
    LmnH5Errors errs = lmn_h5_errors_checkpoint(path);
    g_auto(LmnH5Id) file = open_checkpoint(path, FALSE, error);
    if (file < 0)
        return NULL;
    g_auto(LmnH5Id) root = H5Gopen2(file, "/", H5P_DEFAULT);
    gboolean lamina = lmn_h5_attr_exists(root, "format");
    if (!lamina && !lmn_h5_path_exists(file, "/model")) {
        g_set_error(error, LMN_CHECKPOINT_ERROR, LMN_CHECKPOINT_ERROR_FORMAT,
                    "%s: neither a Lamina checkpoint (no 'format' attribute on /) nor a weights "
                    "file (no /model group)",
                    path);
        return NULL;
    }
    GString *out = g_string_new(NULL);
    g_string_append_printf(out, "checkpoint %s\n", path);
    describe_format(out, root, lamina, &errs);
    g_autofree char *config = NULL;
    g_autoptr(GError) config_error = NULL;
    if (lamina && lmn_h5_path_exists(file, "/config"))
        config = lmn_checkpoint_read_config(path, &config_error);
    g_autoptr(GPtrArray) slots = slot_names(file);
    describe_model(out, file, config, slots);
    describe_optimizer(out, file, slots, &errs);
    describe_training(out, file, &errs);
    describe_plugins(out, file, &errs);
    if (config)
        describe_config(out, config);
    else if (config_error)
        g_string_append_printf(out, "config: not readable: %s\n", config_error->message);
    return g_string_free(out, FALSE);
}
