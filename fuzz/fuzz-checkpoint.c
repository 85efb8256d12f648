/* Lamina — structure-aware fuzzing of the checkpoint readers.
 *
 * Once: a small model (dense-relu-dense with Adam and reduce_on_plateau, so there are slots and
 * schedule state) is built from the build tree's plugins and saved as a template checkpoint, and
 * every attribute and dataset in it is listed.  Per input: the template is copied, the bytes are
 * decoded into up to 16 edits of those objects (delete; an attribute or dataset replaced by an
 * integer, a float, a string, an array or a dataset of another shape or type; values refilled
 * with the bytes, NaN and infinities included; a huge declared extent without data), and every
 * reader runs on the result: lmn_checkpoint_describe, lmn_checkpoint_read_plugins,
 * lmn_checkpoint_explain_missing, lmn_checkpoint_read_data, lmn_checkpoint_read_config (and the
 * config it returns through lmn_config_validate), lmn_checkpoint_load_weights (of /model and,
 * with LMN_CHECKPOINT_LOAD_EMA, of /ema), and
 * lmn_checkpoint_load_training with and without reset_optimizer, each with and without
 * LMN_CHECKPOINT_LOAD_REQUIRE_FINITE.  An all-zero input is the
 * template itself, which must load.
 */
#include "fuzz-checkpoint.h"

#include <hdf5.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

static const char model_config[] = "[model]\ninput = 4\n\n"
                                   "[layer fc]\ntype = dense\nunits = 3\n\n"
                                   "[layer act]\ntype = relu\n\n"
                                   "[layer out]\ntype = dense\nunits = 2\n\n"
                                   "[layer loss]\ntype = softmax_cross_entropy\n\n"
                                   "[optimizer]\ntype = adam\nlr = 0.01\n\n"
                                   "[schedule]\ntype = reduce_on_plateau\n\n"
                                   "[train]\nepochs = 3\n\n"
                                   "[data]\ntrain = unused.h5:/train\n";

typedef struct {
    char *path; /* the object */
    char *name; /* the attribute's name, or NULL for the dataset itself */
} Target;

typedef struct {
    LmnConfig *cfg;
    LmnBackend *backend;
    LmnModel *model;
    LmnOptimizer *opt;
    LmnSchedule *sched;
    LmnTrainState state;
    char *template_bytes;
    gsize template_size;
    GArray *targets; /* Target */
    char *work;      /* the file each input is written to */
} Fixture;

static Fixture fx;

/* ---- the bytes as a stream of choices; 0 when they run out ---- */

typedef struct {
    const guint8 *data;
    size_t size, pos;
} Bytes;

static guint8 next_u8(Bytes *b)
{
    return b->pos < b->size ? b->data[b->pos++] : 0;
}

static guint64 next_u64(Bytes *b)
{
    guint64 v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | next_u8(b);
    return v;
}

static float next_float(Bytes *b)
{
    guint32 u = 0;
    for (int i = 0; i < 4; i++)
        u = (u << 8) | next_u8(b);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Integers readers must survive: boundaries, negatives, and raw bytes. */
static gint64 next_int(Bytes *b)
{
    static const gint64 picks[] = {1, 0, -1, G_MAXINT64, G_MININT64, G_GINT64_CONSTANT(1) << 62,
                                   1000000000000};
    guint8 k = next_u8(b) % (G_N_ELEMENTS(picks) + 1);
    return k < G_N_ELEMENTS(picks) ? picks[k] : (gint64) next_u64(b);
}

/* ---- the template ---- */

static herr_t collect_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    Target t = {g_strdup(data), g_strdup(name)};
    g_array_append_val(fx.targets, t);
    return 0;
}

static void collect_attrs_of(hid_t file, const char *path)
{
    hid_t obj = H5Oopen(file, path, H5P_DEFAULT);
    g_assert(obj >= 0);
    H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, collect_attr, (void *) path);
    H5Oclose(obj);
}

static herr_t collect_link(hid_t group, const char *name, const H5L_info_t *info, void *data)
{
    g_autofree char *path = g_strconcat("/", name, NULL);
    collect_attrs_of(group, path);
    hid_t obj = H5Oopen(group, path, H5P_DEFAULT);
    if (obj >= 0 && H5Iget_type(obj) == H5I_DATASET) {
        Target t = {g_strdup(path), NULL};
        g_array_append_val(fx.targets, t);
    }
    if (obj >= 0)
        H5Oclose(obj);
    return 0;
}

static void fixture_init(LmnRegistry *registry)
{
    g_autoptr(GError) error = NULL;
    fx.cfg = lmn_config_new_from_data(model_config, -1, "fuzz-model.ini", &error);
    g_assert(fx.cfg != NULL && lmn_config_validate(fx.cfg, registry, &error));
    fx.backend = lmn_backend_new_for_config(registry, "cpu", NULL, &error);
    g_assert(fx.backend != NULL);
    LmnTensorInfo target = {.shape = lmn_shape_make(0), .dtype = LMN_DTYPE_I32};
    fx.model = lmn_model_new(fx.cfg, registry, fx.backend, &target, &error);
    g_assert(fx.model != NULL && lmn_model_init_params(fx.model, 1, &error));
    fx.opt = lmn_optimizer_new(registry, lmn_config_get_optimizer_type(fx.cfg),
                               lmn_config_get_optimizer_params(fx.cfg),
                               lmn_model_get_params(fx.model), lmn_model_get_grads(fx.model),
                               &error);
    g_assert(fx.opt != NULL);
    fx.sched = lmn_schedule_new(registry, lmn_config_get_schedule_type(fx.cfg),
                                lmn_config_get_schedule_params(fx.cfg),
                                lmn_config_get_schedule_common(fx.cfg), 0.01, &error);
    g_assert(fx.sched != NULL);
    fx.state = (LmnTrainState){.epoch = 1, .step = 10, .seed = 1, .best_metric = 0.5,
                               .best_epoch = 1, .monitor = LMN_MONITOR_VAL_LOSS};
    /* A moving average too, so /ema is written and read back like the weights. */
    LmnTensor *flat = lmn_model_get_params(fx.model);
    fx.state.ema_params = lmn_tensor_new(fx.backend, LMN_DTYPE_F32, &flat->shape, &error);
    g_assert(fx.state.ema_params != NULL);
    lmn_op_copy(fx.state.ema_params, flat);
    fx.state.has_ema = TRUE;

    g_autofree char *dir = g_dir_make_tmp("lamina-fuzz-ckpt-XXXXXX", NULL);
    g_assert(dir != NULL);
    g_autofree char *template_path = g_build_filename(dir, "template.h5", NULL);
    g_autofree char *text = lmn_config_to_data(fx.cfg);
    g_assert(lmn_checkpoint_save(template_path, text, fx.model, fx.opt, fx.sched, &fx.state,
                                 &error));
    g_assert(g_file_get_contents(template_path, &fx.template_bytes, &fx.template_size, NULL));
    fx.work = g_build_filename(dir, "work.h5", NULL);

    fx.targets = g_array_new(FALSE, TRUE, sizeof(Target));
    hid_t file = H5Fopen(template_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert(file >= 0);
    collect_attrs_of(file, "/");
    H5Lvisit(file, H5_INDEX_NAME, H5_ITER_NATIVE, collect_link, NULL);
    H5Fclose(file);
    g_unlink(template_path);
    g_assert(fx.targets->len > 10);
}

/* ---- edits ---- */

/* A string type: variable length, or fixed at @len bytes. */
static hid_t string_type(gboolean variable, gsize len)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, variable ? H5T_VARIABLE : MAX(len, 1));
    return t;
}

/* Writes @n values of the kind @kind (0 integers, 1 doubles, 2 strings) from the bytes into a
 * new attribute or dataset @name of @loc with the dataspace @space. */
static void write_values(hid_t loc, const char *name, gboolean attribute, hid_t space, int kind,
                         gsize n, Bytes *b)
{
    hid_t type = -1, mem = -1;
    g_autofree void *buf = NULL;
    g_autofree char *text = NULL;
    const char **strings = NULL;
    if (kind == 0) {
        gint64 *v = g_new(gint64, MAX(n, 1));
        for (gsize i = 0; i < n; i++)
            v[i] = next_int(b);
        buf = v;
        type = H5Tcopy(H5T_STD_I64LE);
        mem = H5Tcopy(H5T_NATIVE_INT64);
    } else if (kind == 1) {
        double *v = g_new(double, MAX(n, 1));
        for (gsize i = 0; i < n; i++)
            v[i] = (double) next_float(b);
        buf = v;
        type = H5Tcopy(H5T_IEEE_F64LE);
        mem = H5Tcopy(H5T_NATIVE_DOUBLE);
    } else {
        gsize len = next_u8(b) % 24;
        text = g_malloc0(len + 1);
        for (gsize i = 0; i < len; i++)
            text[i] = (char) (next_u8(b) | 1); /* no NUL inside */
        strings = g_new(const char *, MAX(n, 1));
        for (gsize i = 0; i < n; i++)
            strings[i] = text;
        buf = strings;
        type = string_type(TRUE, 0);
        mem = H5Tcopy(type);
    }
    hid_t id = attribute ? H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT)
                         : H5Dcreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT,
                                      H5P_DEFAULT);
    if (id >= 0) {
        if (attribute) {
            H5Awrite(id, mem, buf);
            H5Aclose(id);
        } else {
            H5Dwrite(id, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
            H5Dclose(id);
        }
    }
    H5Tclose(type);
    H5Tclose(mem);
}

/* A dataspace: scalar, or 1 to 3 dims of up to 5 elements. */
static hid_t small_space(Bytes *b, gsize *n)
{
    int rank = next_u8(b) % 4;
    hsize_t dims[3];
    *n = 1;
    for (int i = 0; i < rank; i++) {
        dims[i] = next_u8(b) % 6;
        *n *= dims[i];
    }
    return rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, NULL);
}

/* Replaces attribute or dataset @t (or deletes it), as the next bytes say. */
static void edit(hid_t file, const Target *t, Bytes *b)
{
    guint8 action = next_u8(b) % 6;
    hid_t obj = H5Oopen(file, t->path, H5P_DEFAULT);
    if (obj < 0)
        return; /* deleted by an earlier edit */
    if (t->name != NULL) {
        if (H5Aexists(obj, t->name) > 0)
            H5Adelete(obj, t->name);
        if (action > 0) {
            gsize n = 1;
            hid_t space = action == 4 ? small_space(b, &n) : H5Screate(H5S_SCALAR);
            write_values(obj, t->name, TRUE, space, action == 4 ? next_u8(b) % 3 : action - 1, n,
                         b);
            H5Sclose(space);
        }
        H5Oclose(obj);
        return;
    }
    H5Oclose(obj);
    if (action == 1) {
        /* Same shape, new values: NaN, infinities, denormals, whatever the bytes hold. */
        hid_t ds = H5Dopen2(file, t->path, H5P_DEFAULT);
        hid_t space = H5Dget_space(ds);
        hssize_t n = H5Sget_simple_extent_npoints(space);
        if (n > 0 && n < (1 << 16)) {
            g_autofree float *v = g_new(float, n);
            for (hssize_t i = 0; i < n; i++)
                v[i] = next_float(b);
            H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
        }
        H5Sclose(space);
        H5Dclose(ds);
        return;
    }
    H5Ldelete(file, t->path, H5P_DEFAULT);
    if (action == 0)
        return;
    if (action == 5) {
        /* A declared extent far beyond the file, chunked so nothing is stored. */
        hsize_t dims[2] = {(hsize_t) 1 << (next_u8(b) % 40), (hsize_t) 1 << (next_u8(b) % 40)};
        hsize_t chunk[2] = {1, 1};
        hid_t space = H5Screate_simple(2, dims, NULL);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_chunk(dcpl, 2, chunk);
        hid_t ds = H5Dcreate2(file, t->path, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl,
                              H5P_DEFAULT);
        if (ds >= 0)
            H5Dclose(ds);
        H5Pclose(dcpl);
        H5Sclose(space);
        return;
    }
    gsize n = 1;
    hid_t space = small_space(b, &n);
    write_values(file, t->path, FALSE, space, action - 2, n, b);
    H5Sclose(space);
}

/* ---- one input ---- */

void fuzz_checkpoint_one(LmnRegistry *registry, const guint8 *data, size_t size)
{
    if (fx.targets == NULL)
        fixture_init(registry);
    g_assert(g_file_set_contents(fx.work, fx.template_bytes, (gssize) fx.template_size, NULL));
    Bytes b = {data, size, 0};
    guint n_edits = next_u8(&b) % 17;
    guint8 mode = next_u8(&b);
    gboolean reset = mode & 1;
    LmnCheckpointLoadFlags flags =
        (mode & 2) ? LMN_CHECKPOINT_LOAD_DEFAULT : LMN_CHECKPOINT_LOAD_REQUIRE_FINITE;
    hid_t file = H5Fopen(fx.work, H5F_ACC_RDWR, H5P_DEFAULT);
    g_assert(file >= 0);
    for (guint i = 0; i < n_edits; i++) {
        guint16 k = (guint16) ((next_u8(&b) << 8) | next_u8(&b));
        edit(file, &g_array_index(fx.targets, Target, k % fx.targets->len), &b);
    }
    H5Fclose(file);

    g_free(lmn_checkpoint_describe(fx.work, NULL));
    GPtrArray *plugins = lmn_checkpoint_read_plugins(fx.work, NULL);
    if (plugins)
        g_ptr_array_unref(plugins);
    g_free(lmn_checkpoint_explain_missing(fx.work, registry));
    LmnCheckpointData decoding;
    gboolean data_found = FALSE;
    if (lmn_checkpoint_read_data(fx.work, &decoding, &data_found, NULL) && data_found)
        lmn_checkpoint_data_clear(&decoding);
    char *text = lmn_checkpoint_read_config(fx.work, NULL);
    if (text != NULL) {
        LmnConfig *cfg = lmn_config_new_from_data(text, -1, "fuzz:/config", NULL);
        if (cfg != NULL) {
            lmn_config_validate(cfg, registry, NULL);
            lmn_config_free(cfg);
        }
        g_free(text);
    }
    gboolean loaded = lmn_checkpoint_load_weights_full(fx.work, fx.model, flags, NULL);
    gboolean loaded_ema =
        lmn_checkpoint_load_weights_full(fx.work, fx.model, flags | LMN_CHECKPOINT_LOAD_EMA, NULL);
    LmnTrainState st = fx.state;
    gboolean resumed =
        lmn_checkpoint_load_training(fx.work, fx.model, fx.opt, fx.sched, &st, reset, flags, NULL);
    /* The template itself must load: a reader that refuses a valid file is a finding too. */
    if (n_edits == 0)
        g_assert(loaded && loaded_ema && resumed);
}
