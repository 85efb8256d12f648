/* Lamina — error domains.
 *
 * The quark strings follow GLib's "<namespace>-<thing>-error-quark" convention so that a GError
 * printed by a debugger or logged by GLib is recognisable.
 */
#include <lamina/error.h>

GQuark lmn_plugin_error_quark(void)
{
    return g_quark_from_static_string("lmn-plugin-error-quark");
}

GQuark lmn_config_error_quark(void)
{
    return g_quark_from_static_string("lmn-config-error-quark");
}

GQuark lmn_data_error_quark(void)
{
    return g_quark_from_static_string("lmn-data-error-quark");
}

GQuark lmn_checkpoint_error_quark(void)
{
    return g_quark_from_static_string("lmn-checkpoint-error-quark");
}

GQuark lmn_backend_error_quark(void)
{
    return g_quark_from_static_string("lmn-backend-error-quark");
}

GQuark lmn_train_error_quark(void)
{
    return g_quark_from_static_string("lmn-train-error-quark");
}
