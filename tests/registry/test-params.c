/* Tests of hyperparameter schemas: validation, defaults, messages, canonical text. */
#include <lamina/error.h>
#include <lamina/params.h>

#include <math.h>
#include <string.h>

static const char *const reductions[] = {"mean", "sum", "none", NULL};

static const LmnParamSpec schema[] = {
    {"lr", LMN_PARAM_FLOAT, "0.001", 0.0, INFINITY, NULL, LMN_PARAM_FLAG_MIN_EXCLUSIVE,
     "learning rate"},
    {"momentum", LMN_PARAM_FLOAT, "0.9", 0.0, 1.0, NULL, 0, "momentum factor"},
    {"units", LMN_PARAM_INT, NULL, 1, (double) G_MAXINT64, NULL, LMN_PARAM_FLAG_REQUIRED,
     "number of output features"},
    {"nesterov", LMN_PARAM_BOOL, "false", 1, 0, NULL, 0, "use Nesterov momentum"},
    {"reduction", LMN_PARAM_ENUM, "mean", 1, 0, reductions, 0, "how losses are reduced"},
    {"note", LMN_PARAM_STRING, NULL, 1, 0, NULL, 0, "free text"},
    {"milestones", LMN_PARAM_FLOAT_LIST, "30, 60", 0.0, INFINITY, NULL, 0, "epochs to decay at"},
    {"weight_init", LMN_PARAM_STRING, "he_uniform", 1, 0, NULL, LMN_PARAM_FLAG_PREFIX,
     "initializer of the weight"},
    {NULL},
};

/* Builds params from "key=value" strings with the schema above. */
static LmnParams *make(const char *const *pairs, GError **error)
{
    guint n = pairs ? g_strv_length((char **) pairs) : 0;
    g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) values = g_ptr_array_new_with_free_func(g_free);
    for (guint k = 0; k < n; k++) {
        const char *eq = strchr(pairs[k], '=');
        g_assert_nonnull(eq);
        g_ptr_array_add(keys, g_strndup(pairs[k], eq - pairs[k]));
        g_ptr_array_add(values, g_strdup(eq + 1));
    }
    g_ptr_array_add(keys, NULL);
    g_ptr_array_add(values, NULL);
    return lmn_params_new_from_strings(schema, (const char *const *) keys->pdata,
                                       (const char *const *) values->pdata, "model.ini [layer fc1]",
                                       error);
}

static void assert_message_has(const GError *error, const char *needle)
{
    if (strstr(error->message, needle) == NULL)
        g_error("message \"%s\" lacks \"%s\"", error->message, needle);
}

static void test_defaults(void)
{
    g_autoptr(GError) error = NULL;
    const char *const pairs[] = {"units=16", NULL};
    g_autoptr(LmnParams) p = make(pairs, &error);
    g_assert_no_error(error);
    g_assert_cmpfloat(lmn_params_get_float(p, "lr"), ==, 0.001);
    g_assert_cmpfloat(lmn_params_get_float(p, "momentum"), ==, 0.9);
    g_assert_cmpint(lmn_params_get_int(p, "units"), ==, 16);
    g_assert_cmpfloat(lmn_params_get_float(p, "units"), ==, 16.0); /* INT read as a float */
    g_assert_false(lmn_params_get_bool(p, "nesterov"));
    g_assert_cmpstr(lmn_params_get_string(p, "reduction"), ==, "mean");
    g_assert_null(lmn_params_get_string(p, "note")); /* optional, no default: absent */
    g_assert_null(lmn_params_get_text(p, "note"));
    gsize n = 0;
    const double *m = lmn_params_get_float_list(p, "milestones", &n);
    g_assert_cmpuint(n, ==, 2);
    g_assert_cmpfloat(m[0], ==, 30.0);
    g_assert_cmpfloat(m[1], ==, 60.0);
    g_assert_cmpstr(lmn_params_get_string(p, "weight_init"), ==, "he_uniform");
    g_assert_true(lmn_params_get_schema(p) == schema);
}

static void test_given_values(void)
{
    g_autoptr(GError) error = NULL;
    const char *const pairs[] = {"units= 8 ",     "lr=1e-2",
                                 "nesterov=YES",  "reduction=Sum",
                                 "note= keep me", "milestones=1.5,2 , 1e1",
                                 "momentum=0",    NULL};
    g_autoptr(LmnParams) p = make(pairs, &error);
    g_assert_no_error(error);
    g_assert_cmpint(lmn_params_get_int(p, "units"), ==, 8);
    g_assert_cmpfloat(lmn_params_get_float(p, "lr"), ==, 0.01);
    g_assert_true(lmn_params_get_bool(p, "nesterov"));
    /* Choices come back in the schema's spelling. */
    g_assert_cmpstr(lmn_params_get_string(p, "reduction"), ==, "sum");
    g_assert_cmpstr(lmn_params_get_string(p, "note"), ==, " keep me");
    gsize n = 0;
    const double *m = lmn_params_get_float_list(p, "milestones", &n);
    g_assert_cmpuint(n, ==, 3);
    g_assert_cmpfloat(m[0], ==, 1.5);
    g_assert_cmpfloat(m[1], ==, 2.0);
    g_assert_cmpfloat(m[2], ==, 10.0);

    /* Canonical texts, as written into checkpoints. */
    g_assert_cmpstr(lmn_params_get_text(p, "lr"), ==, "0.01");
    g_assert_cmpstr(lmn_params_get_text(p, "units"), ==, "8");
    g_assert_cmpstr(lmn_params_get_text(p, "nesterov"), ==, "true");
    g_assert_cmpstr(lmn_params_get_text(p, "reduction"), ==, "sum");
    g_assert_cmpstr(lmn_params_get_text(p, "milestones"), ==, "1.5, 2, 10");
    g_assert_cmpstr(lmn_params_get_text(p, "momentum"), ==, "0");
}

static void test_bool_spellings(void)
{
    const char *const truthy[] = {"true", "True", "yes", "YES", "1"};
    const char *const falsy[] = {"false", "FALSE", "no", "No", "0"};
    for (guint k = 0; k < G_N_ELEMENTS(truthy); k++) {
        for (int want = 0; want < 2; want++) {
            g_autofree char *kv = g_strdup_printf("nesterov=%s", want ? truthy[k] : falsy[k]);
            const char *const pairs[] = {"units=1", kv, NULL};
            g_autoptr(GError) error = NULL;
            g_autoptr(LmnParams) p = make(pairs, &error);
            g_assert_no_error(error);
            g_assert_cmpint(lmn_params_get_bool(p, "nesterov"), ==, want);
        }
    }
}

/* Floats must read back exactly from their canonical text. */
static void test_float_text_round_trip(void)
{
    const char *const inputs[] = {"0.1",           "3e-8",  "0.30000000000000004",
                                  "123456789.125", "1e300", "2.5e-310"};
    const char *const expected[] = {"0.1",           "3e-08",  "0.30000000000000004",
                                    "123456789.125", "1e+300", "2.5e-310"};
    for (guint k = 0; k < G_N_ELEMENTS(inputs); k++) {
        g_autofree char *kv = g_strdup_printf("lr=%s", inputs[k]);
        const char *const pairs[] = {"units=1", kv, NULL};
        g_autoptr(GError) error = NULL;
        g_autoptr(LmnParams) p = make(pairs, &error);
        g_assert_no_error(error);
        const char *text = lmn_params_get_text(p, "lr");
        g_assert_cmpstr(text, ==, expected[k]);
        g_assert_cmpfloat(g_ascii_strtod(text, NULL), ==, g_ascii_strtod(inputs[k], NULL));
    }
}

static void test_unknown_key(void)
{
    g_autoptr(GError) error = NULL;
    const char *const pairs[] = {"units=4", "momentun=0.5", NULL};
    g_autoptr(LmnParams) p = make(pairs, &error);
    g_assert_null(p);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY);
    assert_message_has(error, "model.ini [layer fc1]");
    assert_message_has(error, "'momentun'");
    assert_message_has(error, "did you mean 'momentum'?");
    assert_message_has(error, "accepted keys: lr, momentum, units, nesterov, reduction, note, "
                              "milestones, weight_init, weight_init.*");

    /* Nothing close: no suggestion, still the list. */
    g_clear_error(&error);
    const char *const far[] = {"units=4", "dropout=0.5", NULL};
    g_assert_null(make(far, &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY);
    g_assert_null(strstr(error->message, "did you mean"));
    assert_message_has(error, "accepted keys: lr,");
}

static void test_prefix_pass_through(void)
{
    g_autoptr(GError) error = NULL;
    const char *const pairs[] = {"units=4",
                                 "weight_init=normal",
                                 "weight_init.std=0.02",
                                 "weight_init.mean=0",
                                 "weight_init.std=0.05",
                                 NULL};
    g_autoptr(LmnParams) p = make(pairs, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(lmn_params_get_string(p, "weight_init"), ==, "normal");
    /* Pass-through keys are kept as text, unvalidated, the later of two winning. */
    g_assert_cmpstr(lmn_params_get_text(p, "weight_init.std"), ==, "0.05");
    g_auto(GStrv) keys = NULL;
    g_auto(GStrv) values = NULL;
    lmn_params_collect_prefixed(p, "weight_init", &keys, &values);
    g_assert_cmpuint(g_strv_length(keys), ==, 2);
    g_assert_cmpstr(keys[0], ==, "std");
    g_assert_cmpstr(values[0], ==, "0.05");
    g_assert_cmpstr(keys[1], ==, "mean");
    g_assert_cmpstr(values[1], ==, "0");

    g_auto(GStrv) none_k = NULL;
    g_auto(GStrv) none_v = NULL;
    lmn_params_collect_prefixed(p, "bias_init", &none_k, &none_v);
    g_assert_cmpuint(g_strv_length(none_k), ==, 0);

    g_autofree const char **all = lmn_params_list_keys(p);
    /* Schema keys with a value (not "note"), then pass-through keys. */
    const char *const want[] = {"lr",          "momentum",        "units",
                                "nesterov",    "reduction",       "milestones",
                                "weight_init", "weight_init.std", "weight_init.mean"};
    g_assert_cmpuint(g_strv_length((char **) all), ==, G_N_ELEMENTS(want));
    for (guint k = 0; k < G_N_ELEMENTS(want); k++)
        g_assert_cmpstr(all[k], ==, want[k]);

    /* Only a PREFIX spec passes sub-keys through; a typo in the prefix is suggested whole. */
    g_clear_error(&error);
    const char *const bad[] = {"units=4", "momentum.x=1", NULL};
    g_assert_null(make(bad, &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY);
    g_clear_error(&error);
    const char *const typo[] = {"units=4", "weight_int.gain=2", NULL};
    g_assert_null(make(typo, &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY);
    assert_message_has(error, "did you mean 'weight_init.gain'?");
}

typedef struct {
    const char *pair;
    const char *needles[3];
} BadCase;

static void test_invalid_values(void)
{
    const BadCase cases[] = {
        {"momentum=1.5", {"'momentum' = '1.5'", "out of range", "a float in [0, 1]"}},
        {"momentum=-0.1", {"'momentum'", "out of range", "[0, 1]"}},
        {"lr=0", {"'lr' = '0'", "out of range", "a float > 0"}},
        {"lr=abc", {"'lr' = 'abc'", "not a finite number", "a float > 0"}},
        {"lr=0.1x", {"'lr' = '0.1x'", "not a finite number", NULL}},
        {"lr=", {"'lr' = ''", "not a finite number", NULL}},
        {"lr=inf", {"'lr' = 'inf'", "not a finite number", NULL}},
        {"lr=nan", {"'lr' = 'nan'", "not a finite number", NULL}},
        {"lr=1e999", {"'lr' = '1e999'", "not a finite number", NULL}},
        {"units=0", {"'units' = '0'", "out of range", "an integer >= 1"}},
        {"units=2.5", {"'units' = '2.5'", "not an integer", NULL}},
        {"units=99999999999999999999", {"'units'", "out of range", NULL}},
        {"nesterov=maybe", {"'nesterov' = 'maybe'", "not a boolean", "true or false"}},
        {"reduction=meen",
         {"'reduction' = 'meen'", "did you mean 'mean'?", "one of: mean, sum, none"}},
        {"reduction=max", {"'reduction' = 'max'", "not a valid choice", "one of: mean, sum"}},
        {"milestones=1, x", {"'milestones'", "element 2 ('x')", "list of floats"}},
        {"milestones=1,,2", {"'milestones'", "empty element 2", NULL}},
        {"milestones=5, -1", {"'milestones'", "element 2 (-1) out of range", "each >= 0"}},
    };
    for (guint k = 0; k < G_N_ELEMENTS(cases); k++) {
        g_autoptr(GError) error = NULL;
        /* Every case but the "units" ones also gives the required key. */
        gboolean is_units = g_str_has_prefix(cases[k].pair, "units=");
        const char *const pairs[] = {cases[k].pair, is_units ? NULL : "units=3", NULL};
        g_autoptr(LmnParams) p = make(pairs, &error);
        g_assert_null(p);
        g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
        assert_message_has(error, "model.ini [layer fc1]");
        for (guint n = 0; n < G_N_ELEMENTS(cases[k].needles) && cases[k].needles[n]; n++)
            assert_message_has(error, cases[k].needles[n]);
    }
}

static void test_required_missing(void)
{
    g_autoptr(GError) error = NULL;
    const char *const pairs[] = {"lr=0.1", NULL};
    g_assert_null(make(pairs, &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_MISSING);
    assert_message_has(error, "model.ini [layer fc1]");
    assert_message_has(error, "'units'");
    assert_message_has(error, "number of output features");
}

static void test_empty_schema(void)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(LmnParams) p = lmn_params_new_from_strings(NULL, NULL, NULL, "x", &error);
    g_assert_no_error(error);
    g_autofree const char **keys = lmn_params_list_keys(p);
    g_assert_null(keys[0]);

    const char *const k[] = {"lr", NULL};
    const char *const v[] = {"1", NULL};
    g_assert_null(lmn_params_new_from_strings(NULL, k, v, "cfg [schedule]", &error));
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY);
    assert_message_has(error, "cfg [schedule]: unknown key 'lr'");
    assert_message_has(error, "takes no keys");
}

static void test_ref_counting(void)
{
    const char *const pairs[] = {"units=2", NULL};
    LmnParams *p = make(pairs, NULL);
    g_assert_nonnull(p);
    g_assert_true(lmn_params_ref(p) == p);
    lmn_params_unref(p);
    g_assert_cmpint(lmn_params_get_int(p, "units"), ==, 2); /* still alive */
    lmn_params_unref(p);
}

/* Getter misuse is a programming error: a critical naming the key (fatal under GTest, so each
 * case runs in a subprocess). */
static void test_getter_misuse(void)
{
    const char *const pairs[] = {"units=2", NULL};
    g_autoptr(LmnParams) p = make(pairs, NULL);
    if (g_test_subprocess()) {
        const char *which = g_getenv("LMN_TEST_MISUSE");
        if (g_strcmp0(which, "unknown") == 0)
            lmn_params_get_float(p, "nope");
        else if (g_strcmp0(which, "enum-as-int") == 0)
            lmn_params_get_int(p, "reduction");
        else
            lmn_params_get_bool(p, "lr");
        return;
    }
    const char *const cases[][2] = {
        {"unknown", "*lmn_params_get_float: the schema has no key 'nope'*"},
        {"enum-as-int", "*lmn_params_get_int: key 'reduction' is of type enum*"},
        {"float-as-bool", "*lmn_params_get_bool: key 'lr' is of type float*"},
    };
    for (guint k = 0; k < G_N_ELEMENTS(cases); k++) {
        g_setenv("LMN_TEST_MISUSE", cases[k][0], TRUE);
        g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
        g_test_trap_assert_failed();
        g_test_trap_assert_stderr(cases[k][1]);
    }
    g_unsetenv("LMN_TEST_MISUSE");
    /* get_text is the lenient one: NULL for an unknown key. */
    g_assert_null(lmn_params_get_text(p, "nope"));
}

static void test_spec_find(void)
{
    g_assert_true(lmn_param_spec_find(schema, "units") == &schema[2]);
    g_assert_null(lmn_param_spec_find(schema, "unit"));
    g_assert_null(lmn_param_spec_find(NULL, "units"));
}

static void test_describe(void)
{
    g_autofree char *text = lmn_param_spec_describe(schema);
    const char *const needles[] = {
        "lr (float, default 0.001, range > 0)\n      learning rate\n",
        "momentum (float, default 0.9, range in [0, 1])\n      momentum factor\n",
        "units (int, required, range >= 1)\n      number of output features\n",
        "nesterov (bool, default false)\n",
        "reduction (enum, default mean, one of: mean, sum, none)\n",
        "note (string, no default)\n      free text\n",
        "milestones (float list, default 30, 60, each >= 0)\n",
        "weight_init (string, default he_uniform; sub-keys weight_init.KEY passed through)\n",
    };
    for (guint k = 0; k < G_N_ELEMENTS(needles); k++) {
        if (strstr(text, needles[k]) == NULL)
            g_error("describe output lacks \"%s\":\n%s", needles[k], text);
    }
    /* In schema order. */
    g_assert_true(strstr(text, "lr (") < strstr(text, "momentum ("));
    g_assert_true(strstr(text, "milestones (") < strstr(text, "weight_init ("));

    g_autofree char *empty = lmn_param_spec_describe(NULL);
    g_assert_nonnull(strstr(empty, "no parameters"));
}

static void test_suggest(void)
{
    const char *const names[] = {"adam", "adamw", "sgd", "rmsprop", "adagrad", NULL};
    g_assert_cmpstr(lmn_suggest("adamm", names), ==, "adam");
    g_assert_cmpstr(lmn_suggest("sdg", names), ==, "sgd"); /* a transposition is one edit */
    g_assert_cmpstr(lmn_suggest("sgdd", names), ==, "sgd");
    g_assert_null(lmn_suggest("sxx", names)); /* 2 edits, and a 3-letter word allows 1 */
    g_assert_null(lmn_suggest("xyz", names));
    g_assert_cmpstr(lmn_suggest("rmsprp", names), ==, "rmsprop");
    g_assert_cmpstr(lmn_suggest("adagard", names), ==, "adagrad");
    g_assert_null(lmn_suggest("lion", names));
    g_assert_null(lmn_suggest("", names));
    g_assert_null(lmn_suggest("adam", NULL));
    g_assert_cmpstr(lmn_suggest("ad", names), ==, NULL);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/params/defaults/applied", test_defaults);
    g_test_add_func("/params/values/parsed", test_given_values);
    g_test_add_func("/params/values/bool-spellings", test_bool_spellings);
    g_test_add_func("/params/values/float-text-round-trip", test_float_text_round_trip);
    g_test_add_func("/params/errors/unknown-key", test_unknown_key);
    g_test_add_func("/params/errors/invalid-values", test_invalid_values);
    g_test_add_func("/params/errors/required-missing", test_required_missing);
    g_test_add_func("/params/prefix/pass-through", test_prefix_pass_through);
    g_test_add_func("/params/schema/empty", test_empty_schema);
    g_test_add_func("/params/schema/find", test_spec_find);
    g_test_add_func("/params/schema/describe", test_describe);
    g_test_add_func("/params/refcount", test_ref_counting);
    g_test_add_func("/params/getters/misuse", test_getter_misuse);
    g_test_add_func("/params/suggest", test_suggest);
    return g_test_run();
}
