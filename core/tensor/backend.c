/* Lamina — opening backends and wrapping them in an LmnBackend. */
#include "backend-private.h"

#include <lamina/error.h>

#include <string.h>

/* Required vtable members, checked once at open so op dispatch never has to. */
/* clang-format off */
#define REQUIRED(member) \
    {#member, G_STRUCT_OFFSET(LmnBackendVTable, member), \
     sizeof(((LmnBackendVTable *) NULL)->member)}
/* clang-format on */
static const struct {
    const char *name;
    gsize offset;
    gsize size;
} required_members[] = {
    REQUIRED(open),           REQUIRED(close),
    REQUIRED(describe),       REQUIRED(alloc),
    REQUIRED(free),           REQUIRED(write),
    REQUIRED(read),           REQUIRED(synchronize),
    REQUIRED(fill),           REQUIRED(copy),
    REQUIRED(gemm),           REQUIRED(bias_add),
    REQUIRED(bias_grad),      REQUIRED(unary),
    REQUIRED(unary_backward), REQUIRED(binary),
    REQUIRED(axpby),          REQUIRED(reduce),
    REQUIRED(softmax_xent),   REQUIRED(softmax_xent_backward),
    REQUIRED(count_correct),  REQUIRED(kernel),
};
#undef REQUIRED

static gboolean check_vtable(const LmnFeature *feature, const LmnBackendVTable *vt, GError **error)
{
    if (vt == NULL) {
        g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_BAD_DESCRIPTOR,
                    "%s: backend '%s' has no vtable", feature->path, feature->desc->name);
        return FALSE;
    }
    for (gsize i = 0; i < G_N_ELEMENTS(required_members); i++) {
        gsize end = required_members[i].offset + required_members[i].size;
        gpointer fn = NULL;
        if (vt->struct_size >= end)
            memcpy(&fn, (const char *) vt + required_members[i].offset, sizeof fn);
        if (fn == NULL) {
            g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_BAD_DESCRIPTOR,
                        "%s: backend '%s' lacks the required vtable member '%s' "
                        "(struct_size %u)",
                        feature->path, feature->desc->name, required_members[i].name,
                        vt->struct_size);
            return FALSE;
        }
    }
    return TRUE;
}

LmnBackend *lmn_backend_new(LmnRegistry *registry, const char *name, const LmnParams *params,
                            const char *device, GError **error)
{
    g_return_val_if_fail(registry != NULL, NULL);
    g_return_val_if_fail(name != NULL, NULL);
    g_return_val_if_fail(error == NULL || *error == NULL, NULL);

    const LmnFeature *feature = lmn_registry_lookup(registry, LMN_FEATURE_BACKEND, name, error);
    if (feature == NULL)
        return NULL;
    /* Parameters validated against another feature's schema would be read with the wrong keys. */
    g_return_val_if_fail(params == NULL || lmn_params_get_schema(params) == feature->desc->params,
                         NULL);

    const LmnBackendVTable *vt = feature->desc->vtable;
    if (!check_vtable(feature, vt, error))
        return NULL;

    LmnParams *owned_params;
    if (params != NULL) {
        owned_params = lmn_params_ref((LmnParams *) params);
    } else {
        g_autofree char *where = g_strdup_printf("backend '%s'", feature->desc->name);
        owned_params = lmn_registry_validate_params(feature, NULL, NULL, where, error);
        if (owned_params == NULL)
            return NULL;
    }

    GError *local_error = NULL;
    gpointer ctx = vt->open(owned_params, device, &local_error);
    if (ctx == NULL) {
        if (local_error == NULL)
            g_set_error(&local_error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                        "the backend failed to open without saying why");
        g_prefix_error(&local_error, "Backend '%s' (%s): ", feature->desc->name, feature->path);
        g_propagate_error(error, local_error);
        lmn_params_unref(owned_params);
        return NULL;
    }
    /* A plugin that sets an error and still returns a context is buggy; keep the context. */
    if (local_error != NULL) {
        g_warning("backend '%s' opened but also reported: %s", feature->desc->name,
                  local_error->message);
        g_clear_error(&local_error);
    }

    LmnBackend *backend = g_new0(LmnBackend, 1);
    backend->vtable = vt;
    backend->context = ctx;
    backend->name = g_strdup(feature->desc->name);
    backend->path = g_strdup(feature->path);
    const char *desc = vt->describe(ctx);
    backend->description = g_strdup(desc != NULL ? desc : feature->desc->name);
    backend->params = owned_params;
    backend->has_host_pointer = LMN_VTABLE_HAS(vt, host_pointer);
    backend->ref_count = 1;
    g_mutex_init(&backend->error_lock);
    return backend;
}

LmnBackend *lmn_backend_ref(LmnBackend *backend)
{
    g_return_val_if_fail(backend != NULL, NULL);
    g_atomic_int_inc(&backend->ref_count);
    return backend;
}

void lmn_backend_unref(LmnBackend *backend)
{
    if (backend == NULL)
        return;
    if (!g_atomic_int_dec_and_test(&backend->ref_count))
        return;
    backend->vtable->close(backend->context);
    lmn_params_unref(backend->params);
    g_clear_error(&backend->deferred_error);
    g_mutex_clear(&backend->error_lock);
    g_free(backend->name);
    g_free(backend->path);
    g_free(backend->description);
    g_free(backend);
}

const char *lmn_backend_get_name(LmnBackend *backend)
{
    g_return_val_if_fail(backend != NULL, NULL);
    return backend->name;
}

const char *lmn_backend_describe(LmnBackend *backend)
{
    g_return_val_if_fail(backend != NULL, NULL);
    return backend->description;
}

gboolean lmn_backend_synchronize(LmnBackend *backend, GError **error)
{
    g_return_val_if_fail(backend != NULL, FALSE);
    g_return_val_if_fail(error == NULL || *error == NULL, FALSE);

    gboolean ok = TRUE;
    g_mutex_lock(&backend->error_lock);
    if (backend->deferred_error == NULL) {
        GError *local_error = NULL;
        if (!backend->vtable->synchronize(backend->context, &local_error)) {
            if (local_error == NULL)
                g_set_error(&local_error, LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_FAILED,
                            "backend '%s' failed without saying why", backend->name);
            /* Work recorded after a failure ran on bad data, so the backend stays failed: every
             * later synchronize reports the first error rather than pretending to recover. */
            backend->deferred_error = local_error;
        }
    }
    if (backend->deferred_error != NULL) {
        g_set_error_literal(error, backend->deferred_error->domain, backend->deferred_error->code,
                            backend->deferred_error->message);
        ok = FALSE;
    }
    g_mutex_unlock(&backend->error_lock);
    return ok;
}

void lmn_backend_record_unsupported(LmnBackend *backend, const char *op)
{
    g_mutex_lock(&backend->error_lock);
    if (backend->deferred_error == NULL)
        backend->deferred_error =
            g_error_new(LMN_BACKEND_ERROR, LMN_BACKEND_ERROR_UNSUPPORTED,
                        "backend '%s' (%s) does not implement the op '%s' this model needs; use "
                        "another backend or a newer version of this one",
                        backend->name, backend->path, op);
    g_mutex_unlock(&backend->error_lock);
}

const LmnBackendVTable *lmn_backend_get_vtable(LmnBackend *backend)
{
    g_return_val_if_fail(backend != NULL, NULL);
    return backend->vtable;
}

gpointer lmn_backend_get_context(LmnBackend *backend)
{
    g_return_val_if_fail(backend != NULL, NULL);
    return backend->context;
}

gpointer lmn_backend_host_pointer(const LmnTensor *t)
{
    g_return_val_if_fail(t != NULL && t->backend != NULL, NULL);
    LmnBackend *backend = t->backend;
    if (!backend->has_host_pointer)
        return NULL;
    char *base = backend->vtable->host_pointer(backend->context, t->buffer);
    return base != NULL ? base + t->offset : NULL;
}

void lmn_device_info_free(gpointer info)
{
    LmnDeviceInfo *d = info;
    if (d == NULL)
        return;
    g_free(d->name);
    g_free(d->driver);
    g_free(d->details);
    g_free(d);
}
