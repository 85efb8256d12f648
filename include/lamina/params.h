/* Lamina — hyperparameter schemas and validated parameter sets.
 *
 * Every feature (layer, optimizer, initializer, schedule, backend) declares its keys as a static,
 * NULL-name-terminated array of LmnParamSpec.  The core validates config values against the
 * schema before any plugin code runs, so plugins read values that are known to exist, have the
 * declared type and lie in range.  The same schema drives `lamina plugins describe`, command-line
 * help and the attributes written into checkpoints.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/** LmnParamType: the type of one hyperparameter.  Stored in files: append only. */
typedef enum {
    LMN_PARAM_FLOAT = 0,      /* a double */
    LMN_PARAM_INT = 1,        /* a 64-bit integer */
    LMN_PARAM_BOOL = 2,       /* true/false */
    LMN_PARAM_ENUM = 3,       /* one of enum_values; read back as its string */
    LMN_PARAM_STRING = 4,     /* free text */
    LMN_PARAM_FLOAT_LIST = 5, /* comma-separated doubles, e.g. "30, 60, 90" */
} LmnParamType;

/** LmnParamFlags: properties of a hyperparameter. */
typedef enum {
    LMN_PARAM_FLAG_NONE = 0,
    LMN_PARAM_FLAG_REQUIRED = 1 << 0, /* no default: the config must give it */
    LMN_PARAM_FLAG_MIN_EXCLUSIVE = 1 << 1, /* value must be > min rather than >= min */
    LMN_PARAM_FLAG_MAX_EXCLUSIVE = 1 << 2, /* value must be < max rather than <= max */
    LMN_PARAM_FLAG_PREFIX = 1 << 3, /* name is a prefix: keys "NAME.SUBKEY" are passed through
                                       unvalidated here and validated by whoever consumes them
                                       (e.g. "weight_init." keys go to the initializer) */
} LmnParamFlags;

/**
 * LmnParamSpec:
 * @name: the key, lower_snake_case; NULL ends the array
 * @type: value type
 * @default_value: the default as config text ("0.9", "true", "mean", "30, 60"); NULL with
 *   LMN_PARAM_FLAG_REQUIRED
 * @min, @max: inclusive bounds for FLOAT, INT and each FLOAT_LIST element; ignored when min > max
 *   (use -INFINITY/INFINITY or G_MININT64-like values for one-sided ranges)
 * @enum_values: NULL-terminated accepted strings for ENUM
 * @flags: #LmnParamFlags
 * @doc: one line shown by `lamina plugins describe`
 */
typedef struct {
    const char *name;
    LmnParamType type;
    const char *default_value;
    double min;
    double max;
    const char *const *enum_values;
    guint32 flags;
    const char *doc;
    gpointer reserved[4];
} LmnParamSpec;

/* ---- schema entries ----
 * Initializers for the entries of a static LmnParamSpec array, one key per line:
 * |[
 * static const LmnParamSpec lion_params[] = {
 *     LMN_PARAM_SPEC_FLOAT("lr", "1e-4", 0, INFINITY, 0, "learning rate"),
 *     LMN_PARAM_SPEC_INT("period", NULL, 1, 1e9, LMN_PARAM_FLAG_REQUIRED, "steps per cycle"),
 *     LMN_PARAM_SPEC_BOOL("maximize", "false", "maximise the objective"),
 *     LMN_PARAM_SPEC_END,
 * };
 * ]|
 * A required key has a NULL default and LMN_PARAM_FLAG_REQUIRED; the members not named stay 0.
 */

/** LMN_PARAM_SPEC_FLOAT: a float key in [@min_, @max_] (see #LmnParamFlags for @flags_). */
#define LMN_PARAM_SPEC_FLOAT(name_, default_, min_, max_, flags_, doc_)                            \
    {                                                                                              \
        .name = (name_), .type = LMN_PARAM_FLOAT, .default_value = (default_), .min = (min_),      \
        .max = (max_), .flags = (flags_), .doc = (doc_)                                            \
    }
/** LMN_PARAM_SPEC_INT: an integer key in [@min_, @max_]. */
#define LMN_PARAM_SPEC_INT(name_, default_, min_, max_, flags_, doc_)                              \
    {                                                                                              \
        .name = (name_), .type = LMN_PARAM_INT, .default_value = (default_), .min = (min_),        \
        .max = (max_), .flags = (flags_), .doc = (doc_)                                            \
    }
/** LMN_PARAM_SPEC_FLOAT_LIST: a comma-separated list of floats, each in [@min_, @max_]. */
#define LMN_PARAM_SPEC_FLOAT_LIST(name_, default_, min_, max_, flags_, doc_)                       \
    {                                                                                              \
        .name = (name_), .type = LMN_PARAM_FLOAT_LIST, .default_value = (default_), .min = (min_), \
        .max = (max_), .flags = (flags_), .doc = (doc_)                                            \
    }
/** LMN_PARAM_SPEC_BOOL: a boolean key. */
#define LMN_PARAM_SPEC_BOOL(name_, default_, doc_)                                                 \
    {                                                                                              \
        .name = (name_), .type = LMN_PARAM_BOOL, .default_value = (default_), .doc = (doc_)        \
    }
/** LMN_PARAM_SPEC_ENUM: one of the NULL-terminated strings @values_. */
#define LMN_PARAM_SPEC_ENUM(name_, default_, values_, doc_)                                        \
    {                                                                                              \
        .name = (name_), .type = LMN_PARAM_ENUM, .default_value = (default_),                      \
        .enum_values = (values_), .doc = (doc_)                                                    \
    }
/** LMN_PARAM_SPEC_STRING: free text. */
#define LMN_PARAM_SPEC_STRING(name_, default_, flags_, doc_)                                       \
    {                                                                                              \
        .name = (name_), .type = LMN_PARAM_STRING, .default_value = (default_), .flags = (flags_), \
        .doc = (doc_)                                                                              \
    }
/** LMN_PARAM_SPEC_END: the entry that ends a schema. */
#define LMN_PARAM_SPEC_END                                                                         \
    {                                                                                              \
        NULL                                                                                       \
    }

/** LmnParams: an immutable-after-validation set of typed values for one schema. */
typedef struct _LmnParams LmnParams;

/**
 * lmn_params_new_from_strings:
 * @schema: the feature's schema (NULL-name-terminated; may be NULL for "no keys")
 * @keys: (nullable): keys given by the user, NULL-terminated
 * @values: (nullable): the matching config texts
 * @where: a human-readable location used in messages, e.g. "model.ini [optimizer]"
 * @error: set with LMN_CONFIG_ERROR on an unknown key (with a "did you mean" suggestion and the
 *   accepted keys), a value that does not parse, or a value out of range
 *
 * Validates user-given values against @schema and fills defaults for the rest.
 * Keys that match a LMN_PARAM_FLAG_PREFIX spec as "NAME.SUB" are kept as strings for the consumer.
 *
 * Returns: (transfer full): the validated set, or NULL on error
 */
LmnParams *lmn_params_new_from_strings(const LmnParamSpec *schema, const char *const *keys,
                                       const char *const *values, const char *where,
                                       GError **error);

/**
 * lmn_params_new_from_strings_at:
 * @key_wheres: (nullable): per key, the place messages about that key name (e.g.
 *   "model.ini:12 [optimizer]", with the key's line), parallel to @keys; an entry may be NULL
 * @where: the place of messages about the whole set (a missing required key)
 *
 * As lmn_params_new_from_strings(), for callers that know where each key was given, so that an
 * unknown key or a bad value is reported at its own line rather than at its group's.
 *
 * Returns: (transfer full): the validated set, or NULL on error
 */
LmnParams *lmn_params_new_from_strings_at(const LmnParamSpec *schema, const char *const *keys,
                                          const char *const *values, const char *const *key_wheres,
                                          const char *where, GError **error);

/** lmn_params_ref: adds a reference. Returns: @params */
LmnParams *lmn_params_ref(LmnParams *params);
/** lmn_params_unref: drops a reference; frees on the last one. */
void lmn_params_unref(LmnParams *params);

/** lmn_params_get_schema: Returns: (transfer none): the schema the set was validated against. */
const LmnParamSpec *lmn_params_get_schema(const LmnParams *params);

/** lmn_params_get_float: Returns: the value of FLOAT key @name (an INT is converted). */
double lmn_params_get_float(const LmnParams *params, const char *name);
/** lmn_params_get_int: Returns: the value of INT key @name. */
gint64 lmn_params_get_int(const LmnParams *params, const char *name);
/** lmn_params_get_bool: Returns: the value of BOOL key @name. */
gboolean lmn_params_get_bool(const LmnParams *params, const char *name);
/** lmn_params_get_string: Returns: (transfer none): the value of ENUM or STRING key @name. */
const char *lmn_params_get_string(const LmnParams *params, const char *name);
/**
 * lmn_params_get_float_list:
 * @n_out: (out): number of elements
 * Returns: (transfer none): the elements of FLOAT_LIST key @name
 */
const double *lmn_params_get_float_list(const LmnParams *params, const char *name, gsize *n_out);
/**
 * lmn_params_get_text:
 * Returns: (transfer none) (nullable): the canonical config text of any key, including
 *   pass-through "prefix.sub" keys; NULL when absent.
 */
const char *lmn_params_get_text(const LmnParams *params, const char *name);
/**
 * lmn_params_collect_prefixed:
 * @prefix: e.g. "weight_init"
 * @keys_out, @values_out: (out) (transfer full): NULL-terminated string vectors of the keys after
 *   "PREFIX." and their texts
 * Used to hand sub-keys such as "weight_init.gain" to the initializer.
 */
void lmn_params_collect_prefixed(const LmnParams *params, const char *prefix, char ***keys_out,
                                 char ***values_out);
/**
 * lmn_params_list_keys:
 * Returns: (transfer container): every key in the set (schema keys then pass-through keys), in a
 *   stable order; free with g_free (the strings are borrowed).
 */
const char **lmn_params_list_keys(const LmnParams *params);

/**
 * lmn_param_spec_find:
 * Returns: (transfer none) (nullable): the spec named @name in @schema
 */
const LmnParamSpec *lmn_param_spec_find(const LmnParamSpec *schema, const char *name);

/**
 * lmn_param_spec_describe:
 * Returns: (transfer full): a multi-line human description of @schema (name, type, default,
 *   range or choices, doc), as `lamina plugins describe` prints it.
 */
char *lmn_param_spec_describe(const LmnParamSpec *schema);

/**
 * lmn_suggest:
 * @word: the unknown word
 * @candidates: NULL-terminated known words
 * Returns: (transfer none) (nullable): the closest candidate by edit distance when it is close
 *   enough to be a plausible typo, else NULL.  Used for every "did you mean" hint.
 */
const char *lmn_suggest(const char *word, const char *const *candidates);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(LmnParams, lmn_params_unref)

G_END_DECLS
