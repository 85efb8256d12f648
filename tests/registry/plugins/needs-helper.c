/* A valid plugin that needs liblmn-test-helper.so at load time (see helper.c). */
#include <lamina/initializer.h>
#include <lamina/plugin.h>

#include "../helper/helper.h"

static gboolean helper_fill(const LmnParams *params, const LmnInitTarget *target, float *data,
                            GError **error)
{
    for (gint64 i = 0; i < target->numel; i++)
        data[i] = (float) lmn_test_helper_value();
    return TRUE;
}

static const LmnInitializerVTable vtable = {
    .struct_size = sizeof(LmnInitializerVTable),
    .fill = helper_fill,
};

static const LmnFeatureDesc features[] = {
    {sizeof(LmnFeatureDesc), LMN_FEATURE_INITIALIZER, "needs_helper",
     "fills with the helper library's value", NULL, &vtable},
};

static const LmnPluginDesc desc = {
    .struct_size = sizeof(LmnPluginDesc),
    .abi_major = LMN_ABI_MAJOR,
    .abi_minor = LMN_ABI_MINOR,
    .name = "test.needs_helper",
    .version = "0.0.1",
    .n_features = G_N_ELEMENTS(features),
    .features = features,
};

LMN_PLUGIN_DEFINE(desc)
