/* Lamina — the core's view of an opened backend.
 *
 * Private to liblamina: tensor.c and ops.c reach the vtable and context directly, because op
 * dispatch is the hot path and should cost two loads, not two function calls.
 */
#pragma once

#include <lamina/backend.h>
#include <lamina/registry.h>

G_BEGIN_DECLS

struct _LmnBackend {
    const LmnBackendVTable *vtable; /* the plugin's static data */
    gpointer context;               /* returned by vtable->open */
    char *name;                     /* the feature name, e.g. "cpu" */
    char *path;                     /* the plugin file, for messages */
    char *description;              /* vtable->describe(), copied at open */
    LmnParams *params;              /* the validated parameters the backend was opened with */
    gboolean has_host_pointer;      /* LMN_VTABLE_HAS(vtable, host_pointer), checked once */
    gint ref_count;
    GMutex error_lock;
    GError *deferred_error; /* the first deferred failure; sticky once set */
};

/**
 * lmn_backend_record_unsupported:
 * Records (once) a deferred LMN_BACKEND_ERROR_UNSUPPORTED naming @op: the backend predates it.
 */
void lmn_backend_record_unsupported(LmnBackend *backend, const char *op);

/**
 * lmn_gemm_args_ok:
 * lmn_op_gemm's checks of @g (one backend, sizes within the operands); a g_return_val_if_fail
 * names the first that fails.  Returns: TRUE when the product may run
 */
gboolean lmn_gemm_args_ok(const LmnGemm *g);

G_END_DECLS
