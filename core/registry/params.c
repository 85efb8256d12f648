/* Lamina — hyperparameter schemas and validated parameter sets.
 *
 * A schema is static data owned by a (resident) plugin or by the core, so an LmnParams only
 * borrows it.  Every value is parsed once, when the set is built, into its typed form and its
 * canonical text; getters never parse.  The canonical text is what checkpoints store, so it must
 * round-trip exactly (floats are printed with the fewest digits that read back to the same
 * double).
 */
#include "params-internal.h"

#include <lamina/error.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A schema longer than this is surely missing its NULL-name terminator. */
#define MAX_SCHEMA_ENTRIES 1024

typedef struct {
    gboolean present;
    char *text; /* canonical config text */
    double f;
    gint64 i;
    gboolean b;
    const char *s; /* ENUM: the schema's own spelling; STRING: == text */
    double *list;
    gsize n_list;
} ParamValue;

struct _LmnParams {
    gatomicrefcount ref_count;
    const LmnParamSpec *schema;
    guint n_specs;
    ParamValue *values;      /* one per spec, in schema order */
    GPtrArray *extra_keys;   /* pass-through "prefix.sub" keys (char *), in the order given */
    GPtrArray *extra_values; /* their texts */
};

static void param_value_clear(ParamValue *v)
{
    g_free(v->text);
    g_free(v->list);
    memset(v, 0, sizeof(*v));
}

static guint schema_length(const LmnParamSpec *schema)
{
    guint n = 0;
    if (schema == NULL)
        return 0;
    while (n < MAX_SCHEMA_ENTRIES && schema[n].name != NULL)
        n++;
    return n;
}

const char *lmn_param_type_name(LmnParamType type)
{
    switch (type) {
    case LMN_PARAM_FLOAT:
        return "float";
    case LMN_PARAM_INT:
        return "int";
    case LMN_PARAM_BOOL:
        return "bool";
    case LMN_PARAM_ENUM:
        return "enum";
    case LMN_PARAM_STRING:
        return "string";
    case LMN_PARAM_FLOAT_LIST:
        return "float list";
    }
    return "unknown";
}

/* ---- number formatting ---- */

/* The shortest "%.Ng" text that reads back as exactly @v, so "0.1" stays "0.1" and checkpoint
 * attributes round-trip. */
static char *format_double(double v)
{
    char buf[G_ASCII_DTOSTR_BUF_SIZE];
    if (isinf(v))
        return g_strdup(v > 0 ? "inf" : "-inf");
    if (isnan(v))
        return g_strdup("nan");
    char fmt[8];
    int digits;
    for (digits = 1; digits <= 17; digits++) {
        g_snprintf(fmt, sizeof(fmt), "%%.%dg", digits);
        g_ascii_formatd(buf, sizeof(buf), fmt, v);
        if (g_ascii_strtod(buf, NULL) == v)
            break;
    }
    /* "%.1g" prints 10 as "1e+01"; people write 10, so use plain digits up to 1e16. */
    const char *e = strchr(buf, 'e');
    if (e != NULL) {
        int exponent = atoi(e + 1);
        if (exponent >= digits && exponent < 16) {
            g_snprintf(fmt, sizeof(fmt), "%%.%dg", exponent + 1);
            g_ascii_formatd(buf, sizeof(buf), fmt, v);
        }
    }
    return g_strdup(buf);
}

/* ---- ranges ---- */

static gboolean spec_has_range(const LmnParamSpec *spec)
{
    return spec->min <= spec->max; /* FALSE for min > max and for NaN bounds */
}

/* Whether one side of the range is effectively open.  INT bounds at or beyond the gint64
 * limits are "no bound" (the header suggests G_MININT64-like values for one-sided ranges). */
static gboolean min_is_open(const LmnParamSpec *spec)
{
    if (spec->type == LMN_PARAM_INT)
        return spec->min <= (double) G_MININT64;
    return isinf(spec->min) && spec->min < 0;
}

static gboolean max_is_open(const LmnParamSpec *spec)
{
    if (spec->type == LMN_PARAM_INT)
        return spec->max >= (double) G_MAXINT64;
    return isinf(spec->max) && spec->max > 0;
}

/* " in [0, 1]", " > 0", " <= 10", or "" when unbounded. */
static char *range_text(const LmnParamSpec *spec)
{
    if (!spec_has_range(spec))
        return g_strdup("");
    gboolean lo_open = min_is_open(spec), hi_open = max_is_open(spec);
    gboolean lo_excl = (spec->flags & LMN_PARAM_FLAG_MIN_EXCLUSIVE) != 0;
    gboolean hi_excl = (spec->flags & LMN_PARAM_FLAG_MAX_EXCLUSIVE) != 0;
    g_autofree char *lo = format_double(spec->min);
    g_autofree char *hi = format_double(spec->max);
    if (lo_open && hi_open)
        return g_strdup("");
    if (lo_open)
        return g_strdup_printf(" %s %s", hi_excl ? "<" : "<=", hi);
    if (hi_open)
        return g_strdup_printf(" %s %s", lo_excl ? ">" : ">=", lo);
    return g_strdup_printf(" in %c%s, %s%c", lo_excl ? '(' : '[', lo, hi, hi_excl ? ')' : ']');
}

static gboolean in_range(const LmnParamSpec *spec, double v)
{
    if (!spec_has_range(spec))
        return TRUE;
    if (!min_is_open(spec)) {
        if ((spec->flags & LMN_PARAM_FLAG_MIN_EXCLUSIVE) ? !(v > spec->min) : !(v >= spec->min))
            return FALSE;
    }
    if (!max_is_open(spec)) {
        if ((spec->flags & LMN_PARAM_FLAG_MAX_EXCLUSIVE) ? !(v < spec->max) : !(v <= spec->max))
            return FALSE;
    }
    return TRUE;
}

/* What a value of @spec must look like: "a float in [0, 1]", "one of: min, max", ... */
static char *expect_text(const LmnParamSpec *spec)
{
    g_autofree char *range = range_text(spec);
    switch (spec->type) {
    case LMN_PARAM_FLOAT:
        return g_strdup_printf("a float%s", range);
    case LMN_PARAM_INT:
        return g_strdup_printf("an integer%s", range);
    case LMN_PARAM_BOOL:
        return g_strdup("true or false (or yes/no, 1/0)");
    case LMN_PARAM_ENUM: {
        g_autofree char *choices =
            spec->enum_values ? g_strjoinv(", ", (char **) spec->enum_values) : g_strdup("");
        return g_strdup_printf("one of: %s", choices);
    }
    case LMN_PARAM_STRING:
        return g_strdup("text");
    case LMN_PARAM_FLOAT_LIST:
        if (range[0] != '\0')
            return g_strdup_printf("a comma-separated list of floats, each%s", range);
        return g_strdup("a comma-separated list of floats");
    }
    return g_strdup("a value of an unknown type");
}

/* ---- parsing ---- */

/* Parses a finite double; the whole (stripped) text must be consumed. */
static gboolean parse_double(const char *text, double *out)
{
    char *end = NULL;
    if (text[0] == '\0')
        return FALSE;
    errno = 0;
    double v = g_ascii_strtod(text, &end);
    if (end == text || *end != '\0')
        return FALSE;
    /* ERANGE on underflow still gives a usable (tiny or zero) value; overflow gives inf. */
    if (!isfinite(v))
        return FALSE;
    *out = v;
    return TRUE;
}

/**
 * parse_value:
 * Parses @text for @spec into @out (cleared first).  On failure returns FALSE and sets @why to
 * the reason phrase that follows "key 'k' = 'text'" in messages.
 */
/* The parsers of parse_value(), one per type: each reads the stripped text @t into @out (value
 * and canonical text) or says in *why what is wrong with it. */

static gboolean parse_float_value(const LmnParamSpec *spec, const char *t, ParamValue *out,
                                  char **why)
{
    double v;
    if (!parse_double(t, &v)) {
        *why = g_strdup("is not a finite number");
        return FALSE;
    }
    if (!in_range(spec, v)) {
        *why = g_strdup("is out of range");
        return FALSE;
    }
    out->f = v;
    out->text = format_double(v);
    return TRUE;
}

static gboolean parse_int_value(const LmnParamSpec *spec, const char *t, ParamValue *out,
                                char **why)
{
    char *end = NULL;
    errno = 0;
    gint64 v = g_ascii_strtoll(t, &end, 10);
    if (t[0] == '\0' || end == t || *end != '\0') {
        *why = g_strdup("is not an integer");
        return FALSE;
    }
    if (errno == ERANGE || !in_range(spec, (double) v)) {
        *why = g_strdup("is out of range");
        return FALSE;
    }
    out->i = v;
    out->f = (double) v;
    out->text = g_strdup_printf("%" G_GINT64_FORMAT, v);
    return TRUE;
}

static gboolean parse_bool_value(const char *t, ParamValue *out, char **why)
{
    static const char *const yes[] = {"true", "yes", "1"};
    static const char *const no[] = {"false", "no", "0"};
    for (guint k = 0; k < G_N_ELEMENTS(yes); k++) {
        if (g_ascii_strcasecmp(t, yes[k]) == 0 || g_ascii_strcasecmp(t, no[k]) == 0) {
            out->b = g_ascii_strcasecmp(t, yes[k]) == 0;
            out->text = g_strdup(out->b ? "true" : "false");
            return TRUE;
        }
    }
    *why = g_strdup("is not a boolean");
    return FALSE;
}

static gboolean parse_enum_value(const LmnParamSpec *spec, const char *t, ParamValue *out,
                                 char **why)
{
    const char *match = NULL;
    for (guint k = 0; spec->enum_values && spec->enum_values[k] && !match; k++) {
        if (strcmp(t, spec->enum_values[k]) == 0)
            match = spec->enum_values[k];
    }
    /* Accept "Mean" for "mean": case is never meaningful in a choice name. */
    for (guint k = 0; spec->enum_values && spec->enum_values[k] && !match; k++) {
        if (g_ascii_strcasecmp(t, spec->enum_values[k]) == 0)
            match = spec->enum_values[k];
    }
    if (match == NULL) {
        const char *guess =
            spec->enum_values ? lmn_suggest(t, (const char *const *) spec->enum_values) : NULL;
        if (guess)
            *why = g_strdup_printf("is not a valid choice (did you mean '%s'?)", guess);
        else
            *why = g_strdup("is not a valid choice");
        return FALSE;
    }
    out->s = match;
    out->text = g_strdup(match);
    return TRUE;
}

static gboolean parse_float_list_value(const LmnParamSpec *spec, const char *t, ParamValue *out,
                                       char **why)
{
    g_autoptr(GArray) values = g_array_new(FALSE, FALSE, sizeof(double));
    g_auto(GStrv) parts = t[0] != '\0' ? g_strsplit(t, ",", -1) : NULL;
    for (guint k = 0; parts && parts[k] != NULL; k++) {
        char *p = g_strstrip(parts[k]);
        double v;
        if (p[0] == '\0') {
            *why = g_strdup_printf("has an empty element %u", k + 1);
            return FALSE;
        }
        if (!parse_double(p, &v)) {
            *why = g_strdup_printf("has element %u ('%s') that is not a finite number", k + 1, p);
            return FALSE;
        }
        if (!in_range(spec, v)) {
            *why = g_strdup_printf("has element %u (%s) out of range", k + 1, p);
            return FALSE;
        }
        g_array_append_val(values, v);
    }
    GString *canon = g_string_new(NULL);
    for (guint k = 0; k < values->len; k++) {
        g_autofree char *s = format_double(g_array_index(values, double, k));
        if (k > 0)
            g_string_append(canon, ", ");
        g_string_append(canon, s);
    }
    out->n_list = values->len;
    out->list = (double *) g_array_free(g_steal_pointer(&values), FALSE);
    out->text = g_string_free(canon, FALSE);
    return TRUE;
}

static gboolean parse_value(const LmnParamSpec *spec, const char *text, ParamValue *out, char **why)
{
    param_value_clear(out);
    if (spec->type == LMN_PARAM_STRING) {
        out->text = g_strdup(text);
        out->s = out->text;
        out->present = TRUE;
        return TRUE;
    }
    g_autofree char *t = g_strstrip(g_strdup(text));
    gboolean ok;
    switch (spec->type) {
    case LMN_PARAM_FLOAT:
        ok = parse_float_value(spec, t, out, why);
        break;
    case LMN_PARAM_INT:
        ok = parse_int_value(spec, t, out, why);
        break;
    case LMN_PARAM_BOOL:
        ok = parse_bool_value(t, out, why);
        break;
    case LMN_PARAM_ENUM:
        ok = parse_enum_value(spec, t, out, why);
        break;
    case LMN_PARAM_FLOAT_LIST:
        ok = parse_float_list_value(spec, t, out, why);
        break;
    default:
        *why = g_strdup_printf("has an unknown type %d in the schema", (int) spec->type);
        return FALSE;
    }
    out->present = ok;
    return ok;
}

/* ---- lookup helpers ---- */

static gint spec_index(const LmnParamSpec *schema, guint n, const char *name)
{
    for (guint k = 0; k < n; k++) {
        if (strcmp(schema[k].name, name) == 0)
            return (gint) k;
    }
    return -1;
}

const LmnParamSpec *lmn_param_spec_find(const LmnParamSpec *schema, const char *name)
{
    g_return_val_if_fail(name != NULL, NULL);
    gint k = spec_index(schema, schema_length(schema), name);
    return k >= 0 ? &schema[k] : NULL;
}

/* "lr, momentum, weight_init, weight_init.*" — what an unknown-key message offers. */
static char *accepted_keys_text(const LmnParamSpec *schema, guint n)
{
    if (n == 0)
        return g_strdup("none (this feature takes no keys)");
    GString *s = g_string_new(NULL);
    for (guint k = 0; k < n; k++) {
        if (k > 0)
            g_string_append(s, ", ");
        g_string_append(s, schema[k].name);
        if (schema[k].flags & LMN_PARAM_FLAG_PREFIX)
            g_string_append_printf(s, ", %s.*", schema[k].name);
    }
    return g_string_free(s, FALSE);
}

static void set_unknown_key_error(GError **error, const LmnParamSpec *schema, guint n,
                                  const char *where, const char *key)
{
    g_autofree const char **names = g_new0(const char *, n + 1);
    g_autofree const char **prefixes = g_new0(const char *, n + 1);
    guint n_prefixes = 0;
    for (guint k = 0; k < n; k++) {
        names[k] = schema[k].name;
        if (schema[k].flags & LMN_PARAM_FLAG_PREFIX)
            prefixes[n_prefixes++] = schema[k].name;
    }

    g_autofree char *hint = NULL;
    const char *dot = strchr(key, '.');
    if (dot != NULL && n_prefixes > 0) {
        /* "weight_int.gain": suggest on the prefix, keep the sub-key. */
        g_autofree char *head = g_strndup(key, dot - key);
        const char *guess = lmn_suggest(head, prefixes);
        if (guess && strcmp(guess, head) != 0)
            hint = g_strdup_printf(" (did you mean '%s%s'?)", guess, dot);
    }
    if (hint == NULL) {
        const char *guess = lmn_suggest(key, names);
        if (guess)
            hint = g_strdup_printf(" (did you mean '%s'?)", guess);
    }
    g_autofree char *accepted = accepted_keys_text(schema, n);
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_UNKNOWN_KEY,
                "%s: unknown key '%s'%s; accepted keys: %s", where, key, hint ? hint : "",
                accepted);
}

static void set_invalid_error(GError **error, const LmnParamSpec *spec, const char *where,
                              const char *text, const char *why)
{
    g_autofree char *expect = expect_text(spec);
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                "%s: key '%s' = '%s' %s; expected %s", where, spec->name, text, why, expect);
}

/* ---- LmnParams ---- */

static void lmn_params_free(LmnParams *params)
{
    for (guint k = 0; k < params->n_specs; k++)
        param_value_clear(&params->values[k]);
    g_free(params->values);
    g_ptr_array_unref(params->extra_keys);
    g_ptr_array_unref(params->extra_values);
    g_free(params);
}

/* Stores a pass-through key; a key given twice keeps the later text (an override). */
static void set_extra(LmnParams *params, const char *key, const char *value)
{
    for (guint k = 0; k < params->extra_keys->len; k++) {
        if (strcmp(g_ptr_array_index(params->extra_keys, k), key) == 0) {
            g_free(params->extra_values->pdata[k]);
            params->extra_values->pdata[k] = g_strdup(value);
            return;
        }
    }
    g_ptr_array_add(params->extra_keys, g_strdup(key));
    g_ptr_array_add(params->extra_values, g_strdup(value));
}

/* The PREFIX spec that "NAME.SUB" belongs to, or NULL. */
static const LmnParamSpec *prefix_spec_for(const LmnParamSpec *schema, guint n, const char *key)
{
    const char *dot = strchr(key, '.');
    if (dot == NULL || dot == key || dot[1] == '\0')
        return NULL;
    gsize len = (gsize) (dot - key);
    for (guint k = 0; k < n; k++) {
        if ((schema[k].flags & LMN_PARAM_FLAG_PREFIX) && strlen(schema[k].name) == len &&
            strncmp(schema[k].name, key, len) == 0)
            return &schema[k];
    }
    return NULL;
}

LmnParams *lmn_params_new_from_strings(const LmnParamSpec *schema, const char *const *keys,
                                       const char *const *values, const char *where, GError **error)
{
    return lmn_params_new_from_strings_at(schema, keys, values, NULL, where, error);
}

LmnParams *lmn_params_new_from_strings_at(const LmnParamSpec *schema, const char *const *keys,
                                          const char *const *values, const char *const *key_wheres,
                                          const char *where, GError **error)
{
    g_return_val_if_fail((keys == NULL) == (values == NULL), NULL);
    g_return_val_if_fail(error == NULL || *error == NULL, NULL);

    if (where == NULL)
        where = "parameters";

    LmnParams *params = g_new0(LmnParams, 1);
    g_atomic_ref_count_init(&params->ref_count);
    params->schema = schema;
    params->n_specs = schema_length(schema);
    params->values = g_new0(ParamValue, params->n_specs + 1);
    params->extra_keys = g_ptr_array_new_with_free_func(g_free);
    params->extra_values = g_ptr_array_new_with_free_func(g_free);

    const guint n = params->n_specs;
    for (guint i = 0; keys != NULL && keys[i] != NULL; i++) {
        const char *key = keys[i];
        const char *text = values[i];
        const char *key_where = key_wheres && key_wheres[i] ? key_wheres[i] : where;
        if (G_UNLIKELY(text == NULL)) {
            g_critical("%s: key '%s' has a NULL value", G_STRFUNC, key);
            lmn_params_free(params);
            return NULL;
        }

        gint k = spec_index(schema, n, key);
        if (k >= 0) {
            g_autofree char *why = NULL;
            /* A key given twice keeps the later value, as an override does. */
            if (!parse_value(&schema[k], text, &params->values[k], &why)) {
                set_invalid_error(error, &schema[k], key_where, text, why);
                lmn_params_free(params);
                return NULL;
            }
            continue;
        }
        if (prefix_spec_for(schema, n, key) != NULL) {
            set_extra(params, key, text);
            continue;
        }
        set_unknown_key_error(error, schema, n, key_where, key);
        lmn_params_free(params);
        return NULL;
    }

    for (guint k = 0; k < n; k++) {
        const LmnParamSpec *spec = &schema[k];
        if (params->values[k].present)
            continue;
        if (spec->flags & LMN_PARAM_FLAG_REQUIRED) {
            g_autofree char *expect = expect_text(spec);
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_MISSING,
                        "%s: missing required key '%s' (%s%s%s)", where, spec->name, expect,
                        spec->doc ? ": " : "", spec->doc ? spec->doc : "");
            lmn_params_free(params);
            return NULL;
        }
        if (spec->default_value == NULL)
            continue; /* an optional STRING / FLOAT_LIST: absent */
        g_autofree char *why = NULL;
        if (!parse_value(spec, spec->default_value, &params->values[k], &why)) {
            /* Plugin schemas are checked at load time, so this is a core schema's bug; still an
             * error rather than an abort. */
            g_autofree char *expect = expect_text(spec);
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                        "%s: the schema's default for key '%s' ('%s') %s; expected %s", where,
                        spec->name, spec->default_value, why, expect);
            lmn_params_free(params);
            return NULL;
        }
    }
    return params;
}

LmnParams *lmn_params_ref(LmnParams *params)
{
    g_return_val_if_fail(params != NULL, NULL);
    g_atomic_ref_count_inc(&params->ref_count);
    return params;
}

void lmn_params_unref(LmnParams *params)
{
    if (params == NULL)
        return;
    if (g_atomic_ref_count_dec(&params->ref_count))
        lmn_params_free(params);
}

const LmnParamSpec *lmn_params_get_schema(const LmnParams *params)
{
    g_return_val_if_fail(params != NULL, NULL);
    return params->schema;
}

/* The value of schema key @name checked against the types the getter @func accepts; NULL (after
 * a critical naming the key) on API misuse. */
static const ParamValue *typed_value(const LmnParams *params, const char *name, const char *func,
                                     LmnParamType type_a, LmnParamType type_b)
{
    gint k = spec_index(params->schema, params->n_specs, name);
    if (G_UNLIKELY(k < 0)) {
        g_critical("%s: the schema has no key '%s'", func, name);
        return NULL;
    }
    const LmnParamSpec *spec = &params->schema[k];
    if (G_UNLIKELY(spec->type != type_a && spec->type != type_b)) {
        g_critical("%s: key '%s' is of type %s", func, name, lmn_param_type_name(spec->type));
        return NULL;
    }
    return &params->values[k];
}

double lmn_params_get_float(const LmnParams *params, const char *name)
{
    g_return_val_if_fail(params != NULL && name != NULL, 0.0);
    const ParamValue *v = typed_value(params, name, G_STRFUNC, LMN_PARAM_FLOAT, LMN_PARAM_INT);
    return v ? v->f : 0.0;
}

gint64 lmn_params_get_int(const LmnParams *params, const char *name)
{
    g_return_val_if_fail(params != NULL && name != NULL, 0);
    const ParamValue *v = typed_value(params, name, G_STRFUNC, LMN_PARAM_INT, LMN_PARAM_INT);
    return v ? v->i : 0;
}

gboolean lmn_params_get_bool(const LmnParams *params, const char *name)
{
    g_return_val_if_fail(params != NULL && name != NULL, FALSE);
    const ParamValue *v = typed_value(params, name, G_STRFUNC, LMN_PARAM_BOOL, LMN_PARAM_BOOL);
    return v ? v->b : FALSE;
}

const char *lmn_params_get_string(const LmnParams *params, const char *name)
{
    g_return_val_if_fail(params != NULL && name != NULL, NULL);
    const ParamValue *v = typed_value(params, name, G_STRFUNC, LMN_PARAM_ENUM, LMN_PARAM_STRING);
    return v ? v->s : NULL;
}

const double *lmn_params_get_float_list(const LmnParams *params, const char *name, gsize *n_out)
{
    if (n_out)
        *n_out = 0;
    g_return_val_if_fail(params != NULL && name != NULL, NULL);
    const ParamValue *v =
        typed_value(params, name, G_STRFUNC, LMN_PARAM_FLOAT_LIST, LMN_PARAM_FLOAT_LIST);
    if (v == NULL)
        return NULL;
    if (n_out)
        *n_out = v->n_list;
    return v->list;
}

const char *lmn_params_get_text(const LmnParams *params, const char *name)
{
    g_return_val_if_fail(params != NULL && name != NULL, NULL);
    gint k = spec_index(params->schema, params->n_specs, name);
    if (k >= 0)
        return params->values[k].text;
    for (guint e = 0; e < params->extra_keys->len; e++) {
        if (strcmp(g_ptr_array_index(params->extra_keys, e), name) == 0)
            return g_ptr_array_index(params->extra_values, e);
    }
    return NULL;
}

void lmn_params_collect_prefixed(const LmnParams *params, const char *prefix, char ***keys_out,
                                 char ***values_out)
{
    g_return_if_fail(params != NULL && prefix != NULL && keys_out != NULL && values_out != NULL);
    GPtrArray *keys = g_ptr_array_new();
    GPtrArray *values = g_ptr_array_new();
    gsize len = strlen(prefix);
    for (guint e = 0; e < params->extra_keys->len; e++) {
        const char *key = g_ptr_array_index(params->extra_keys, e);
        if (strncmp(key, prefix, len) == 0 && key[len] == '.') {
            g_ptr_array_add(keys, g_strdup(key + len + 1));
            g_ptr_array_add(values, g_strdup(g_ptr_array_index(params->extra_values, e)));
        }
    }
    g_ptr_array_add(keys, NULL);
    g_ptr_array_add(values, NULL);
    *keys_out = (char **) g_ptr_array_free(keys, FALSE);
    *values_out = (char **) g_ptr_array_free(values, FALSE);
}

const char **lmn_params_list_keys(const LmnParams *params)
{
    g_return_val_if_fail(params != NULL, NULL);
    GPtrArray *out = g_ptr_array_new();
    for (guint k = 0; k < params->n_specs; k++) {
        if (params->values[k].present)
            g_ptr_array_add(out, (gpointer) params->schema[k].name);
    }
    for (guint e = 0; e < params->extra_keys->len; e++)
        g_ptr_array_add(out, g_ptr_array_index(params->extra_keys, e));
    g_ptr_array_add(out, NULL);
    return (const char **) g_ptr_array_free(out, FALSE);
}

/* ---- description ---- */

char *lmn_param_spec_describe(const LmnParamSpec *schema)
{
    guint n = schema_length(schema);
    if (n == 0)
        return g_strdup("  (no parameters)\n");

    GString *s = g_string_new(NULL);
    for (guint k = 0; k < n; k++) {
        const LmnParamSpec *spec = &schema[k];
        g_string_append_printf(s, "  %s (%s", spec->name, lmn_param_type_name(spec->type));
        if (spec->flags & LMN_PARAM_FLAG_REQUIRED)
            g_string_append(s, ", required");
        else if (spec->default_value != NULL)
            g_string_append_printf(s, ", default %s",
                                   spec->default_value[0] ? spec->default_value : "\"\"");
        else
            g_string_append(s, ", no default");

        if (spec->type == LMN_PARAM_ENUM && spec->enum_values != NULL) {
            g_autofree char *choices = g_strjoinv(", ", (char **) spec->enum_values);
            g_string_append_printf(s, ", one of: %s", choices);
        } else if (spec->type == LMN_PARAM_FLOAT || spec->type == LMN_PARAM_INT ||
                   spec->type == LMN_PARAM_FLOAT_LIST) {
            g_autofree char *range = range_text(spec);
            if (range[0] != '\0')
                g_string_append_printf(
                    s, ", %s%s", spec->type == LMN_PARAM_FLOAT_LIST ? "each" : "range", range);
        }
        if (spec->flags & LMN_PARAM_FLAG_PREFIX)
            g_string_append_printf(s, "; sub-keys %s.KEY passed through", spec->name);
        g_string_append(s, ")\n");
        if (spec->doc != NULL && spec->doc[0] != '\0')
            g_string_append_printf(s, "      %s\n", spec->doc);
    }
    return g_string_free(s, FALSE);
}

/* ---- suggestions ---- */

/* Edit distance counting an adjacent transposition as one edit (optimal string alignment), so
 * "trian" is one slip from "train", as a person sees it. */
static guint edit_distance(const char *a, const char *b)
{
    gsize la = strlen(a), lb = strlen(b);
    /* Three rows: the one two back is needed for transpositions. */
    g_autofree guint *rows = g_new(guint, 3 * (lb + 1));
    guint *prev2 = rows, *prev = rows + lb + 1, *cur = rows + 2 * (lb + 1);
    for (gsize j = 0; j <= lb; j++)
        prev[j] = (guint) j;
    for (gsize i = 1; i <= la; i++) {
        cur[0] = (guint) i;
        for (gsize j = 1; j <= lb; j++) {
            guint cost = a[i - 1] == b[j - 1] ? 0 : 1;
            guint best = MIN(prev[j] + 1, cur[j - 1] + 1);
            best = MIN(best, prev[j - 1] + cost);
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                best = MIN(best, prev2[j - 2] + 1);
            cur[j] = best;
        }
        guint *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

const char *lmn_suggest(const char *word, const char *const *candidates)
{
    g_return_val_if_fail(word != NULL, NULL);
    if (candidates == NULL || word[0] == '\0')
        return NULL;
    /* A third of the word's length catches one or two slips in a long name without proposing
     * unrelated short names; every word gets at least one edit. */
    guint limit = MAX(1u, (guint) (strlen(word) / 3));
    const char *best = NULL;
    guint best_distance = G_MAXUINT;
    for (guint k = 0; candidates[k] != NULL; k++) {
        guint d = edit_distance(word, candidates[k]);
        if (d < best_distance) {
            best_distance = d;
            best = candidates[k];
        }
    }
    return best_distance <= limit ? best : NULL;
}

/* ---- schema checks (for the registry) ---- */

static gboolean valid_key_name(const char *name)
{
    if (name[0] == '\0')
        return FALSE;
    for (const char *p = name; *p; p++) {
        if (!(g_ascii_islower(*p) || g_ascii_isdigit(*p) || *p == '_'))
            return FALSE;
    }
    return TRUE;
}

char *lmn_param_schema_check(const LmnParamSpec *schema)
{
    if (schema == NULL)
        return NULL;
    guint n = 0;
    while (schema[n].name != NULL) {
        if (n >= MAX_SCHEMA_ENTRIES)
            return g_strdup_printf("params: more than %d entries (is the NULL-name terminator "
                                   "missing?)",
                                   MAX_SCHEMA_ENTRIES);
        n++;
    }
    for (guint k = 0; k < n; k++) {
        const LmnParamSpec *spec = &schema[k];
        if (!valid_key_name(spec->name))
            return g_strdup_printf("params[%u] ('%s'): name must be non-empty lower_snake_case "
                                   "([a-z0-9_])",
                                   k, spec->name);
        for (guint j = 0; j < k; j++) {
            if (strcmp(schema[j].name, spec->name) == 0)
                return g_strdup_printf("params[%u] ('%s'): name already used by params[%u]", k,
                                       spec->name, j);
        }
        if ((guint) spec->type > LMN_PARAM_FLOAT_LIST)
            return g_strdup_printf("params[%u] ('%s'): type %d is not a known LmnParamType", k,
                                   spec->name, (int) spec->type);
        if (spec->type == LMN_PARAM_ENUM) {
            if (spec->enum_values == NULL || spec->enum_values[0] == NULL)
                return g_strdup_printf("params[%u] ('%s'): enum_values is empty for an ENUM", k,
                                       spec->name);
            for (guint v = 0; spec->enum_values[v] != NULL; v++) {
                if (spec->enum_values[v][0] == '\0')
                    return g_strdup_printf("params[%u] ('%s'): enum_values[%u] is empty", k,
                                           spec->name, v);
            }
        }
        gboolean required = (spec->flags & LMN_PARAM_FLAG_REQUIRED) != 0;
        if (required && spec->default_value != NULL)
            return g_strdup_printf("params[%u] ('%s'): REQUIRED but has default '%s'", k,
                                   spec->name, spec->default_value);
        if (!required && spec->default_value == NULL && spec->type != LMN_PARAM_STRING &&
            spec->type != LMN_PARAM_FLOAT_LIST)
            return g_strdup_printf("params[%u] ('%s'): default_value is NULL but the key is not "
                                   "REQUIRED",
                                   k, spec->name);
        if (spec->default_value != NULL) {
            ParamValue v = {0};
            g_autofree char *why = NULL;
            if (!parse_value(spec, spec->default_value, &v, &why)) {
                g_autofree char *expect = expect_text(spec);
                return g_strdup_printf("params[%u] ('%s'): default '%s' %s; expected %s", k,
                                       spec->name, spec->default_value, why, expect);
            }
            param_value_clear(&v);
        }
    }
    return NULL;
}
