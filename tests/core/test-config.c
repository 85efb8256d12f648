/* Config parsing and validation: the graph's defaults, overrides, and the messages for every
 * kind of mistake a user makes in a config file. */
#include <lamina/lamina.h>
#include <string.h>

static LmnRegistry *registry;

static const char *base = "[model]\n"
                          "input = 1, 4, 4\n"
                          "[layer flat]\n"
                          "type = flatten\n"
                          "[layer fc1]\n"
                          "type = dense\n"
                          "units = 8\n"
                          "weight_init = xavier_uniform\n"
                          "weight_init.gain = 2.0\n"
                          "[layer act]\n"
                          "type = relu\n"
                          "[layer fc2]\n"
                          "type = dense\n"
                          "units = 3\n"
                          "[layer loss]\n"
                          "type = softmax_cross_entropy\n"
                          "[optimizer]\n"
                          "type = sgd\n"
                          "lr = 0.1\n"
                          "momentum = 0.9\n"
                          "[train]\n"
                          "epochs = 2\n"
                          "[data]\n"
                          "train = d.h5:/train\n";

static LmnConfig *load(const char *text)
{
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_data(text, -1, "model.ini", &error);
    g_assert_no_error(error);
    return cfg;
}

/* Validates @text and expects a failure of @domain/@code whose message has every fragment. */
static void expect_invalid(const char *text, GQuark domain, int code, const char *const *frags)
{
    LmnConfig *cfg = load(text);
    g_autoptr(GError) error = NULL;
    g_assert_false(lmn_config_validate(cfg, registry, &error));
    g_assert_error(error, domain, code);
    for (guint i = 0; frags[i]; i++)
        if (!strstr(error->message, frags[i]))
            g_error("expected '%s' in: %s", frags[i], error->message);
    lmn_config_free(cfg);
}

static char *replace(const char *text, const char *old, const char *new_text)
{
    const char *p = strstr(text, old);
    g_assert_nonnull(p);
    return g_strdup_printf("%.*s%s%s", (int) (p - text), text, new_text, p + strlen(old));
}

static void test_valid_defaults(void)
{
    LmnConfig *cfg = load(base);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(lmn_config_get_n_layers(cfg), ==, 5);
    const LmnShape *in = lmn_config_get_input_shape(cfg);
    g_assert_cmpuint(in->ndim, ==, 3);
    g_assert_cmpint(in->dims[2], ==, 4);
    /* Default chaining: each layer takes the previous one; the first takes the data. */
    const LmnLayerConfig *flat = lmn_config_get_layer(cfg, 0);
    g_assert_cmpstr(flat->inputs[0], ==, "input");
    g_assert_cmpstr(lmn_config_get_layer(cfg, 2)->inputs[0], ==, "fc1");
    /* The loss takes the labels as its last input. */
    const LmnLayerConfig *loss = lmn_config_get_layer(cfg, 4);
    g_assert_cmpstr(loss->inputs[0], ==, "fc2");
    g_assert_cmpstr(loss->inputs[1], ==, "labels");
    /* Initializer keys are kept apart from the layer's own schema. */
    const LmnLayerConfig *fc1 = lmn_config_get_layer(cfg, 1);
    g_assert_cmpuint(g_strv_length(fc1->init_keys), ==, 2);
    g_assert_cmpint(lmn_params_get_int(fc1->params, "units"), ==, 8);
    g_assert_cmpstr(lmn_config_get_optimizer_type(cfg), ==, "sgd");
    g_assert_cmpfloat(lmn_params_get_float(lmn_config_get_optimizer_params(cfg), "momentum"), ==,
                      0.9);
    g_assert_cmpstr(lmn_config_get_schedule_type(cfg), ==, "constant");
    const LmnTrainConfig *tc = lmn_config_get_train(cfg);
    g_assert_cmpint(tc->epochs, ==, 2);
    g_assert_cmpint(tc->batch_size, ==, 32);
    g_assert_cmpstr(tc->backend, ==, "auto");
    g_assert_null(tc->test_data);
    lmn_config_free(cfg);
}

static void test_explicit_inputs(void)
{
    g_autofree char *text = replace(base, "[layer act]\ntype = relu\n",
                                    "[layer act]\ntype = relu\ninput = fc1\n");
    LmnConfig *cfg = load(text);
    g_assert_true(lmn_config_validate(cfg, registry, NULL));
    g_assert_cmpstr(lmn_config_get_layer(cfg, 2)->inputs[0], ==, "fc1");
    lmn_config_free(cfg);

    g_autofree char *later = replace(base, "[layer act]\ntype = relu\n",
                                     "[layer act]\ntype = relu\ninput = fc2\n");
    expect_invalid(later, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                   (const char *const[]){"[layer act]", "'fc2'", "defined below", NULL});
    g_autofree char *missing = replace(base, "[layer act]\ntype = relu\n",
                                       "[layer act]\ntype = relu\ninput = fc7\n");
    expect_invalid(missing, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                   (const char *const[]){"'fc7'", "is not a layer", NULL});
}

static void test_overrides(void)
{
    LmnConfig *cfg = load(base);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_config_set(cfg, "fc1.units = 16", &error));
    g_assert_true(lmn_config_set(cfg, "optimizer.lr=0.5", &error));
    g_assert_true(lmn_config_set(cfg, "train.seed=9", &error));
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    g_assert_cmpint(lmn_params_get_int(lmn_config_get_layer(cfg, 1)->params, "units"), ==, 16);
    g_assert_cmpfloat(lmn_params_get_float(lmn_config_get_optimizer_params(cfg), "lr"), ==, 0.5);
    g_assert_cmpuint(lmn_config_get_train(cfg)->seed, ==, 9);

    /* Malformed assignments and unknown groups are refused at once. */
    g_assert_false(lmn_config_set(cfg, "lr=0.1", &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
    g_assert_nonnull(strstr(error->message, "GROUP.KEY=VALUE"));
    g_clear_error(&error);
    g_assert_false(lmn_config_set(cfg, "optimiser.lr=0.1", &error));
    g_assert_nonnull(strstr(error->message, "did you mean 'optimizer'"));
    g_clear_error(&error);

    /* The written-back config round-trips with the overrides. */
    g_autofree char *text = lmn_config_to_data(cfg);
    LmnConfig *again = load(text);
    g_assert_true(lmn_config_validate(again, registry, NULL));
    g_assert_cmpint(lmn_params_get_int(lmn_config_get_layer(again, 1)->params, "units"), ==, 16);
    lmn_config_free(again);
    lmn_config_free(cfg);
}

static void test_replace_optimizer(void)
{
    g_autofree char *text = replace(base, "momentum = 0.9\n", "momentum = 0.9\nnesterov = true\n");
    LmnConfig *cfg = load(text);
    g_autoptr(GError) error = NULL;
    /* Replacing with the same optimizer keeps every key it declares. */
    g_assert_true(lmn_config_replace_optimizer(cfg, registry, "sgd", &error));
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    g_assert_true(lmn_params_get_bool(lmn_config_get_optimizer_params(cfg), "nesterov"));
    g_assert_false(lmn_config_replace_optimizer(cfg, registry, "sgdd", &error));
    g_assert_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(error->message, "sgd"));
    lmn_config_free(cfg);
}

static void test_errors(void)
{
    g_autoptr(GError) perr = NULL;
    g_assert_null(lmn_config_new_from_data("[model\ninput = 3\n", -1, "model.ini", &perr));
    g_assert_error(perr, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_PARSE);
    g_assert_nonnull(strstr(perr->message, "model.ini"));
    g_autofree char *no_model = replace(base, "[model]\ninput = 1, 4, 4\n", "");
    expect_invalid(no_model, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_MISSING,
                   (const char *const[]){"model.ini", "[model]", NULL});
    g_autofree char *bad_group = g_strconcat(base, "[trian]\nepochs = 3\n", NULL);
    expect_invalid(bad_group, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY,
                   (const char *const[]){"[trian]", "did you mean [train]", NULL});
    g_autofree char *bad_key = replace(base, "epochs = 2\n", "epochs = 2\nepoch = 3\n");
    expect_invalid(bad_key, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY,
                   (const char *const[]){"[train]", "epoch", "epochs", NULL});
    g_autofree char *bad_value = replace(base, "epochs = 2\n", "epochs = two\n");
    expect_invalid(bad_value, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                   (const char *const[]){"[train]", "epochs", "two", NULL});
    g_autofree char *bad_type = replace(base, "type = relu\n", "type = relu6\n");
    expect_invalid(bad_type, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_NOT_FOUND,
                   (const char *const[]){"[layer act]", "relu6", "relu", NULL});
    g_autofree char *bad_units = replace(base, "units = 3\n", "units = 0\n");
    expect_invalid(bad_units, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                   (const char *const[]){"[layer fc2]", "units", NULL});
    g_autofree char *bad_opt = replace(base, "momentum = 0.9\n", "momentun = 0.9\n");
    expect_invalid(bad_opt, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY,
                   (const char *const[]){"[optimizer]", "momentun", "momentum", NULL});
    g_autofree char *nesterov = replace(base, "momentum = 0.9\n", "nesterov = true\n");
    expect_invalid(nesterov, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                   (const char *const[]){"[optimizer]", "nesterov", "momentum", NULL});
    g_autofree char *reserved = replace(base, "[layer act]", "[layer input]");
    expect_invalid(reserved, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                   (const char *const[]){"reserved", NULL});
    g_autofree char *no_data = replace(base, "[data]\ntrain = d.h5:/train\n", "");
    expect_invalid(no_data, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_MISSING,
                   (const char *const[]){"[data]", NULL});
    g_autofree char *dims = replace(base, "input = 1, 4, 4", "input = 1, 4.5");
    expect_invalid(dims, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                   (const char *const[]){"[model]", "4.5", NULL});
    g_autofree char *sched = g_strconcat(base, "[schedule]\ntype = step\ngamma = 0.5\n", NULL);
    expect_invalid(sched, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_MISSING,
                   (const char *const[]){"[schedule]", "step_size", NULL});
    g_autofree char *unit = g_strconcat(base, "[schedule]\ntype = constant\nunit = epochs\n",
                                        NULL);
    expect_invalid(unit, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                   (const char *const[]){"[schedule]", "unit", NULL});
}

/* [train] regulariser keys: defaults, per-layer l1/l2 overrides (core keys the layer's plugin
 * never sees), and --set on them. */
static void test_regularizer_keys(void)
{
    g_autofree char *text = replace(base, "[layer act]", "l2 = 0.25\n[layer act]");
    g_autofree char *text2 = replace(text, "epochs = 2\n", "epochs = 2\nl1 = 0.01\nl2 = 0.5\n");
    LmnConfig *cfg = load(text2);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_config_set(cfg, "fc2.l1=0.125", &error));
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    g_assert_no_error(error);
    const LmnTrainConfig *tc = lmn_config_get_train(cfg);
    g_assert_cmpfloat(tc->clip_norm, ==, 0);
    g_assert_cmpfloat(tc->clip_value, ==, 0);
    g_assert_cmpfloat(tc->grad_noise, ==, 0);
    g_assert_cmpfloat(tc->grad_noise_gamma, ==, 0.55);
    g_assert_false(tc->penalize_bias);
    g_assert_cmpint(tc->early_stopping_patience, ==, 0);
    g_assert_cmpint(tc->monitor, ==, LMN_MONITOR_VAL_LOSS);
    g_assert_true(tc->restore_best);
    const LmnLayerConfig *fc1 = lmn_config_get_layer(cfg, 1);
    const LmnLayerConfig *fc2 = lmn_config_get_layer(cfg, 3);
    g_assert_cmpfloat(fc1->l2, ==, 0.25); /* its own */
    g_assert_cmpfloat(fc1->l1, ==, 0.01); /* [train]'s */
    g_assert_cmpfloat(fc2->l2, ==, 0.5);
    g_assert_cmpfloat(fc2->l1, ==, 0.125); /* --set */
    /* The plugin's schema never saw l2: its params have no such key. */
    g_assert_null(lmn_params_get_text(fc1->params, "l2"));
    lmn_config_free(cfg);

    g_autofree char *bad = replace(base, "[layer act]", "l1 = minus one\n[layer act]");
    expect_invalid(bad, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                   (const char *const[]){"model.ini:10 [layer fc1]", "l1", NULL});
    g_autofree char *es =
        replace(base, "epochs = 2\n", "epochs = 2\nearly_stopping_patience = 3\n");
    expect_invalid(es, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                   (const char *const[]){"model.ini:23 [train] early_stopping_patience",
                                         "validation_split", NULL});
    g_autofree char *mon = replace(base, "epochs = 2\n", "epochs = 2\nmonitor = accuracy\n");
    expect_invalid(mon, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                   (const char *const[]){"[train]", "monitor", "val_accuracy", NULL});
}

/* [augment] and [data] memory_budget_mb: defaults (augmentation off), values, --set, and the
 * messages for a mistyped group, key or value. */
static void test_augment_group(void)
{
    LmnConfig *cfg = load(base);
    g_assert_true(lmn_config_validate(cfg, registry, NULL));
    const LmnAugmentConfig *none = lmn_config_get_augment(cfg);
    g_assert_nonnull(none);
    g_assert_false(lmn_augment_config_is_enabled(none));
    g_assert_cmpfloat(lmn_config_get_train(cfg)->memory_budget_mb, ==, 0);
    lmn_config_free(cfg);

    g_autofree char *text = g_strconcat(base, "[augment]\nhflip = 0.5\ncrop_pad = 2\n", NULL);
    g_autofree char *text2 = replace(text, "train = d.h5:/train\n",
                                     "train = d.h5:/train\nmemory_budget_mb = 0.25\n");
    cfg = load(text2);
    g_autoptr(GError) error = NULL;
    g_assert_true(lmn_config_set(cfg, "augment.rotate=15", &error));
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    g_assert_no_error(error);
    const LmnAugmentConfig *aug = lmn_config_get_augment(cfg);
    g_assert_true(lmn_augment_config_is_enabled(aug));
    g_assert_cmpfloat(aug->hflip, ==, 0.5);
    g_assert_cmpint(aug->crop_pad, ==, 2);
    g_assert_cmpfloat(aug->rotate, ==, 15);
    g_assert_cmpfloat(aug->noise_std, ==, 0);
    g_assert_cmpfloat(lmn_config_get_train(cfg)->memory_budget_mb, ==, 0.25);
    /* The group survives the round trip through a checkpoint's config text. */
    g_autofree char *saved = lmn_config_to_data(cfg);
    LmnConfig *again = load(saved);
    g_assert_true(lmn_config_validate(again, registry, NULL));
    g_assert_cmpfloat(lmn_config_get_augment(again)->rotate, ==, 15);
    lmn_config_free(again);
    lmn_config_free(cfg);

    g_autofree char *typo = g_strconcat(base, "[augment]\nhflp = 0.5\n", NULL);
    expect_invalid(typo, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY,
                   (const char *const[]){"model.ini:26 [augment]", "'hflp'", "hflip", NULL});
    g_autofree char *range = g_strconcat(base, "[augment]\nhflip = 1.5\n", NULL);
    expect_invalid(range, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                   (const char *const[]){"model.ini:26 [augment]", "hflip", "1.5", NULL});
    g_autofree char *group = g_strconcat(base, "[augmnet]\nhflip = 0.5\n", NULL);
    expect_invalid(group, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY,
                   (const char *const[]){"[augmnet]", "did you mean [augment]", NULL});
    /* The newer transforms: values, defaults, and the checks across keys. */
    g_autofree char *more = g_strconcat(base,
                                        "[augment]\nresized_crop = true\naffine_shear = 10\n"
                                        "elastic_alpha = 34\nhue = 0.1\n",
                                        NULL);
    cfg = load(more);
    g_assert_true(lmn_config_validate(cfg, registry, NULL));
    aug = lmn_config_get_augment(cfg);
    g_assert_true(aug->resized_crop);
    g_assert_cmpfloat(aug->resized_crop_scale[0], ==, 0.08);
    g_assert_cmpfloat(aug->resized_crop_ratio[1], ==, 1.3333333333333333);
    g_assert_cmpfloat(aug->affine_shear, ==, 10);
    g_assert_cmpfloat(aug->elastic_sigma, ==, 4);
    g_assert_cmpfloat(aug->hue, ==, 0.1);
    lmn_config_free(cfg);
    g_autofree char *order = g_strconcat(base,
                                         "[augment]\nresized_crop = true\n"
                                         "resized_crop_scale_min = 0.9\n"
                                         "resized_crop_scale_max = 0.5\n",
                                         NULL);
    expect_invalid(order, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                   (const char *const[]){"model.ini", "[augment]", "resized_crop_scale_min",
                                         "resized_crop_scale_max", NULL});
    g_autofree char *ratio = g_strconcat(base,
                                         "[augment]\nresized_crop = true\n"
                                         "resized_crop_ratio_min = 2\n"
                                         "resized_crop_ratio_max = 1\n",
                                         NULL);
    expect_invalid(ratio, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                   (const char *const[]){"[augment]", "resized_crop_ratio_min", NULL});
    g_autofree char *hue = g_strconcat(base, "[augment]\nhue = 0.7\n", NULL);
    expect_invalid(hue, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                   (const char *const[]){"[augment]", "hue", "0.7", NULL});
    g_autofree char *sigma = g_strconcat(base, "[augment]\nelastic_sigma = 0\n", NULL);
    expect_invalid(sigma, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                   (const char *const[]){"[augment]", "elastic_sigma", NULL});

    g_autofree char *budget = replace(base, "train = d.h5:/train\n",
                                      "train = d.h5:/train\nmemory_budget_mb = -1\n");
    expect_invalid(budget, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                   (const char *const[]){"model.ini:25 [data]", "memory_budget_mb", NULL});
}

/* Loading @text fails with a parse error whose message has every fragment. */
static void expect_parse_error(const char *text, gssize len, const char *const *frags)
{
    g_autoptr(GError) error = NULL;
    g_assert_null(lmn_config_new_from_data(text, len, "model.ini", &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_PARSE);
    for (guint i = 0; frags[i]; i++)
        if (!strstr(error->message, frags[i]))
            g_error("expected '%s' in: %s", frags[i], error->message);
    /* Whatever the line held, the message has no control character for the terminal. */
    for (const char *p = error->message; *p; p++)
        g_assert_false(g_ascii_iscntrl(*p));
}

/* The scan before GKeyFile: what GKeyFile merges or keeps silently (a group or a key given
 * twice, KEY[LOCALE]) is an error naming both lines; a line of no known kind is echoed with its
 * control characters escaped. */
static void test_prescan_errors(void)
{
    g_autofree char *dup_group = g_strconcat(base, "[layer fc1]\nunits = 4\n", NULL);
    expect_parse_error(
        dup_group, -1,
        (const char *const[]){"model.ini:25", "[layer fc1]", "twice", "lines 5 and 25", NULL});
    g_autofree char *dup_key = replace(base, "units = 8\n", "units = 8\n\n# again\n units= 16\n");
    expect_parse_error(dup_key, -1,
                       (const char *const[]){"model.ini:10 [layer fc1]", "'units'", "twice",
                                             "lines 7 and 10", NULL});
    g_autofree char *garbage =
        replace(base, "[layer act]\n", "\x1b[2J\x1b]0;owned\x07\n[layer act]\n");
    expect_parse_error(garbage, -1,
                       (const char *const[]){"model.ini:10:", "\\x1b[2J\\x1b]0;owned\\x07",
                                             "control character", NULL});
    g_autofree char *plain = replace(base, "[layer act]\n", "units 8\n[layer act]\n");
    expect_parse_error(
        plain, -1, (const char *const[]){"model.ini:10:", "'units 8'", "not a [group] line", NULL});
    g_autofree char *value = replace(base, "lr = 0.1\n", "lr = 0.1\x1b[31m\n");
    expect_parse_error(value, -1, (const char *const[]){"model.ini:19:", "\\x1b", NULL});
    g_autofree char *c1 = replace(base, "lr = 0.1\n",
                                  "lr = 0.1\xc2\x9b"
                                  "31m\n");
    expect_parse_error(c1, -1, (const char *const[]){"model.ini:19:", "\\xc2", NULL});
    g_autofree char *latin1 = replace(base, "lr = 0.1\n", "lr = 0.1\xe9\n");
    expect_parse_error(latin1, -1, (const char *const[]){"model.ini:19:", "UTF-8", NULL});
    expect_parse_error("units = 3\n[model]\n", -1,
                       (const char *const[]){"model.ini:1:", "before the first group", NULL});
    expect_parse_error("[model]\ninput[de] = 3\n", -1,
                       (const char *const[]){"model.ini:2:", "'['", NULL});
    expect_parse_error("[model] x\n", -1,
                       (const char *const[]){"model.ini:1:", "not a group header", NULL});
    expect_parse_error("[model]\n[]\n", -1,
                       (const char *const[]){"model.ini:2:", "non-empty", NULL});
    expect_parse_error("[model]\n= 3\n", -1, (const char *const[]){"model.ini:2:", "no key", NULL});
    expect_parse_error("[model]\ninput = 1\0\n", 19,
                       (const char *const[]){"model.ini:2:", "NUL", NULL});
}

/* Line numbers count comments, blank lines and CRLF line ends as GKeyFile reads them, reach the
 * validation messages, and disappear for a value an override replaced. */
static void test_prescan_lines(void)
{
    g_autofree char *crlf = NULL;
    {
        g_auto(GStrv) lines = g_strsplit(base, "\n", -1);
        g_autofree char *joined = g_strjoinv("\r\n", lines);
        crlf = g_strconcat("# a comment\r\n\r\n", joined, NULL);
    }
    LmnConfig *cfg = load(crlf);
    g_assert_true(lmn_config_validate(cfg, registry, NULL));
    g_autofree char *w_lr = lmn_config_dup_where(cfg, "optimizer", "lr");
    g_assert_cmpstr(w_lr, ==, "model.ini:21 [optimizer]");
    g_autofree char *w_fc1 = lmn_config_dup_where(cfg, "layer fc1", NULL);
    g_assert_cmpstr(w_fc1, ==, "model.ini:7 [layer fc1]");
    g_assert_cmpstr(lmn_config_get_layer(cfg, 1)->where, ==, "model.ini:7 [layer fc1]");
    g_autofree char *w_none = lmn_config_dup_where(cfg, "schedule", NULL);
    g_assert_cmpstr(w_none, ==, "model.ini [schedule]");
    g_assert_true(lmn_config_set(cfg, "optimizer.lr=0.5", NULL));
    g_autofree char *w_set = lmn_config_dup_where(cfg, "optimizer", "lr");
    g_assert_cmpstr(w_set, ==, "model.ini [optimizer]");
    g_assert_true(lmn_config_validate(cfg, registry, NULL));
    lmn_config_free(cfg);

    /* Bad values and unknown keys at their own lines, in core groups and plugins' alike. */
    g_autofree char *units = replace(base, "units = 3\n", "units = 0\n");
    expect_invalid(units, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                   (const char *const[]){"model.ini:14 [layer fc2]", "units", NULL});
    g_autofree char *opt = replace(base, "momentum = 0.9\n", "momentun = 0.9\n");
    expect_invalid(opt, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY,
                   (const char *const[]){"model.ini:20 [optimizer]", "momentun", NULL});
    g_autofree char *epochs = replace(base, "epochs = 2\n", "epochs = two\n");
    expect_invalid(epochs, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                   (const char *const[]){"model.ini:22 [train]", "epochs", NULL});
    g_autofree char *type = replace(base, "type = relu\n", "type = relu6\n");
    expect_invalid(type, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_NOT_FOUND,
                   (const char *const[]){"model.ini:11 [layer act] type", NULL});
    g_autofree char *group = g_strconcat(base, "[trian]\nepochs = 3\n", NULL);
    expect_invalid(group, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY,
                   (const char *const[]){"model.ini:25: unknown group [trian]", NULL});
    g_autofree char *sched = g_strconcat(base, "[schedule]\ntype = step\ngamma = 0.5\n", NULL);
    expect_invalid(sched, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_MISSING,
                   (const char *const[]){"model.ini:25 [schedule]", "step_size", NULL});
    g_autofree char *in = replace(base, "type = relu\n", "type = relu\ninput = fc3\n");
    expect_invalid(in, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                   (const char *const[]){"model.ini:12 [layer act] input", "fc3", NULL});

    /* A --set value has no line; an unknown key set that way still fails, without one. */
    cfg = load(base);
    g_assert_true(lmn_config_set(cfg, "train.epoch=3", NULL));
    g_autoptr(GError) error = NULL;
    g_assert_false(lmn_config_validate(cfg, registry, &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY);
    g_assert_nonnull(strstr(error->message, "model.ini [train]: unknown key 'epoch'"));
    lmn_config_free(cfg);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    registry = lmn_registry_new();
    lmn_registry_scan(registry, NULL);
    g_test_add_func("/config/valid-defaults", test_valid_defaults);
    g_test_add_func("/config/explicit-inputs", test_explicit_inputs);
    g_test_add_func("/config/overrides", test_overrides);
    g_test_add_func("/config/replace-optimizer", test_replace_optimizer);
    g_test_add_func("/config/errors", test_errors);
    g_test_add_func("/config/regularizer-keys", test_regularizer_keys);
    g_test_add_func("/config/augment-group", test_augment_group);
    g_test_add_func("/config/prescan-errors", test_prescan_errors);
    g_test_add_func("/config/prescan-lines", test_prescan_lines);
    int rc = g_test_run();
    lmn_registry_free(registry);
    return rc;
}
