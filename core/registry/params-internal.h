/* Lamina — private helpers of the hyperparameter schemas (core/params.c), shared with the
 * registry, which checks a plugin's schemas when it loads the plugin.
 */
#pragma once

#include <lamina/params.h>

G_BEGIN_DECLS

/**
 * lmn_param_schema_check:
 * @schema: (nullable): a NULL-name-terminated schema
 *
 * Checks what a schema's author declared, before any user value is seen: names non-empty and
 * of [a-z0-9_], unique, types known, ENUM with at least one value, a default for every key that
 * is not REQUIRED (STRING and FLOAT_LIST may omit it: absent / empty), no default on a REQUIRED
 * key, and every default parses and lies in its range.
 *
 * Returns: (transfer full) (nullable): NULL when the schema is sound, else a message naming the
 *   entry, e.g. "params[2] ('momentum'): default '2' is out of range; expected a float in [0, 1]"
 */
char *lmn_param_schema_check(const LmnParamSpec *schema);

/**
 * lmn_param_type_name:
 * Returns: (transfer none): "float", "int", "bool", "enum", "string", "float list", or "unknown"
 */
const char *lmn_param_type_name(LmnParamType type);

G_END_DECLS
