/* Lamina — an optimizer for a model (optimizer.h): the trainer's way of binding an optimizer to a
 * model's flat tensors with the config's per-layer trainable / lr_mult ranges, shared with custom
 * training loops.  It lives above optim/, as it needs the model and its config. */
#include <lamina/config.h>
#include <lamina/error.h>
#include <lamina/model.h>
#include <lamina/optimizer.h>
#include <lamina/tensor.h>

/* Ranges are built from the config's layers because the model keeps its per-layer settings to
 * itself; the model's layers and the config's are the same list in the same order. */
void lmn_optimizer_set_model_ranges(LmnOptimizer *opt, LmnModel *model, const LmnConfig *cfg)
{
    g_return_if_fail(opt && model && cfg);
    g_return_if_fail(lmn_config_get_n_layers(cfg) == lmn_model_get_n_layers(model));
    LmnTensor *flat = lmn_model_get_params(model);
    g_autoptr(GArray) ranges = g_array_new(FALSE, FALSE, sizeof(LmnOptimizerRange));
    gboolean uniform = TRUE;
    gint64 start = -1;
    double mult = 0;
    for (guint i = 0; i < lmn_model_get_n_layers(model); i++) {
        LmnLayer *l = lmn_model_get_layer(model, i);
        const LmnLayerConfig *lc = lmn_config_get_layer(cfg, i);
        if (lmn_layer_get_n_params(l) == 0)
            continue;
        gint64 off = (gint64) ((lmn_layer_get_param(l, 0)->offset - flat->offset) / sizeof(float));
        double m = lc->trainable ? lc->lr_mult : 0.0;
        uniform = uniform && m == 1.0;
        if (start >= 0 && m != mult) {
            LmnOptimizerRange r = {start, off - start, mult};
            if (mult > 0)
                g_array_append_val(ranges, r);
            start = -1;
        }
        if (start < 0) {
            start = off;
            mult = m;
        }
    }
    if (uniform)
        return;
    if (start >= 0 && mult > 0) {
        LmnOptimizerRange r = {start, lmn_tensor_numel(flat) - start, mult};
        g_array_append_val(ranges, r);
    }
    lmn_optimizer_set_ranges(opt, (const LmnOptimizerRange *) (gpointer) ranges->data, ranges->len);
}

LmnOptimizer *lmn_optimizer_new_for_model(LmnRegistry *registry, const char *type,
                                          const LmnParams *hyper, LmnModel *model,
                                          const LmnConfig *cfg, GError **error)
{
    g_return_val_if_fail(registry && model && cfg, NULL);
    const char *cfg_type = lmn_config_get_optimizer_type(cfg);
    if (!type)
        type = cfg_type;
    if (!hyper) {
        /* The config's keys were validated against its own optimizer's schema only. */
        if (!g_str_equal(type, cfg_type)) {
            g_set_error(
                error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                "%s: optimizer '%s' needs its own hyperparameters (the config's [optimizer] "
                "is '%s')",
                lmn_config_get_name(cfg), type, cfg_type);
            return NULL;
        }
        hyper = lmn_config_get_optimizer_params(cfg);
    }
    LmnOptimizer *opt = lmn_optimizer_new(registry, type, hyper, lmn_model_get_params(model),
                                          lmn_model_get_grads(model), error);
    if (opt)
        lmn_optimizer_set_model_ranges(opt, model, cfg);
    return opt;
}
