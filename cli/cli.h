/* Lamina — the `lamina` command: shared declarations of its sub-commands.
 *
 * Each sub-command lives in cli/cmd-NAME.c, parses its own options with GOptionContext and
 * returns the process exit status: 0 on success, 1 on a runtime failure (after printing the
 * GError message to stderr as "lamina NAME: MESSAGE"), 2 on a usage error.
 */
#pragma once

#include <lamina/lamina.h>

G_BEGIN_DECLS

/** lmn_cli_plugins: `lamina plugins [describe NAME] [--plugin-path DIR]...` */
int lmn_cli_plugins(int argc, char **argv);
/** lmn_cli_convert: `lamina convert idx IMAGES LABELS --output FILE:/split [--overwrite]` */
int lmn_cli_convert(int argc, char **argv);
/** lmn_cli_train: `lamina train CONFIG [--output DIR] [options]` */
int lmn_cli_train(int argc, char **argv);
/** lmn_cli_eval: `lamina eval CKPT [CKPT...] --data FILE:/split [--top-k K] [--tta MODE] [--json]`
 */
int lmn_cli_eval(int argc, char **argv);
/**
 * lmn_cli_attack:
 * `lamina attack CKPT --data FILE:/split --method fgsm|pgd --eps E [--output FILE:/split]`:
 * FGSM / PGD adversarial examples (attack.h), clean and adversarial accuracy
 */
int lmn_cli_attack(int argc, char **argv);
/** lmn_cli_inspect: `lamina inspect CKPT [--no-config]` */
int lmn_cli_inspect(int argc, char **argv);
/** lmn_cli_gradcheck: `lamina gradcheck LAYER [--set KEY=VALUE]... [--input SHAPE]...` */
int lmn_cli_gradcheck(int argc, char **argv);
/** lmn_cli_plot: `lamina plot METRICS.csv|OUTPUT_DIR [--output FILE.png|.svg]` */
int lmn_cli_plot(int argc, char **argv);
/**
 * lmn_cli_export:
 * `lamina export CKPT --format onnx --output FILE [--plugin-path DIR]...`: the checkpoint's
 * inference graph as an ONNX model (export.h)
 */
int lmn_cli_export(int argc, char **argv);
/** lmn_cli_devices: `lamina devices [--plugin-path DIR]...`: devices per backend, auto's pick */
int lmn_cli_devices(int argc, char **argv);

/**
 * lmn_cli_open_registry:
 * @plugin_dirs: (nullable): the --plugin-path directories, NULL-terminated
 * Creates a registry with those directories first, scans the search path, and logs nothing:
 * failures are listed by `lamina plugins` and reported when a failing plugin is asked for.
 * Returns: (transfer full): the registry
 */
LmnRegistry *lmn_cli_open_registry(char **plugin_dirs);

/** lmn_cli_fail: prints "lamina CMD: MESSAGE" for @error to stderr. Returns: 1 */
int lmn_cli_fail(const char *cmd, const GError *error);
/**
 * lmn_cli_checkpoint_config:
 * Returns: (transfer full): the checkpoint's own /config, validated against the plugins of
 *   @registry, or NULL with @error (`lamina eval` and `lamina attack` rebuild its model)
 */
LmnConfig *lmn_cli_checkpoint_config(const char *ckpt, LmnRegistry *registry, GError **error);
/**
 * lmn_cli_inference_model:
 * The checkpoint config's model for inference (`lamina export`, `lamina predict`).  No targets
 * are read, but a loss layer cannot be built without their info: class labels (i32 []) are tried
 * first, then f32 targets shaped like the last layer's prediction (mse, binary cross-entropy).
 * A model without a loss takes either.  A config whose losses read several targets ([layer]
 * target = NAME) is built with class labels for every target.
 * Returns: (transfer full): the model, unprepared and uninitialised, or NULL with @error (the
 *   first attempt's)
 */
LmnModel *lmn_cli_inference_model(const LmnConfig *cfg, LmnRegistry *registry, LmnBackend *b,
                                  GError **error);
/**
 * lmn_cli_predict:
 * `lamina predict CKPT INPUT... [--output FILE.h5] [--top K] [--json] [--head LAYER]`
 */
int lmn_cli_predict(int argc, char **argv);

G_END_DECLS
