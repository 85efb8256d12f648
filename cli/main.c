/* Lamina — the `lamina` command: dispatches to sub-commands. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} Command;

static const Command commands[] = {
    {"train", lmn_cli_train, "train a model from a config: lamina train CONFIG [--output DIR]"},
    {"eval", lmn_cli_eval, "evaluate a checkpoint: lamina eval CKPT --data FILE:/split [--json]"},
    {"attack", lmn_cli_attack,
     "adversarial examples: lamina attack CKPT --data FILE:/split --method fgsm|pgd --eps E"},
    {"convert", lmn_cli_convert, "convert data to Lamina's HDF5 layout: lamina convert idx ..."},
    {"gradcheck", lmn_cli_gradcheck,
     "check a layer's gradients by finite differences: lamina gradcheck LAYER [--set K=V]"},
    {"devices", lmn_cli_devices, "list backend devices and the one auto picks: lamina devices"},
    {"plot", lmn_cli_plot,
     "learning curves as a picture: lamina plot OUTPUT_DIR [--output curves.png|.svg]"},
    {"predict", lmn_cli_predict, "predict: lamina predict CKPT INPUT... [--output FILE.h5]"},
    {"export", lmn_cli_export, "export to ONNX: lamina export CKPT --format onnx --output FILE"},
    {"inspect", lmn_cli_inspect, "show what a checkpoint holds: lamina inspect CKPT"},
    {"plugins", lmn_cli_plugins, "list plugins, or describe one: lamina plugins [describe NAME]"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: lamina COMMAND [ARGS...]\n\nCommands:\n");
    for (gsize i = 0; i < G_N_ELEMENTS(commands); i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`lamina COMMAND --help` shows a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (g_str_equal(argv[1], "--help") || g_str_equal(argv[1], "-h") ||
        g_str_equal(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (g_str_equal(argv[1], "--version")) {
        printf("lamina %s (plugin ABI %d.%d)\n", LMN_VERSION_STRING, LMN_ABI_MAJOR,
               LMN_ABI_MINOR);
        return 0;
    }
    for (gsize i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (g_str_equal(argv[1], commands[i].name)) {
            /* GOption's --help prints "Usage: lamina train ..." */
            g_autofree char *prgname = g_strdup_printf("lamina %s", commands[i].name);
            g_set_prgname(prgname);
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    static const char *names[G_N_ELEMENTS(commands) + 1];
    for (gsize i = 0; i < G_N_ELEMENTS(commands); i++)
        names[i] = commands[i].name;
    const char *hint = lmn_suggest(argv[1], names);
    fprintf(stderr, "lamina: unknown command '%s'%s%s%s\n\n", argv[1],
            hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
    usage(stderr);
    return 2;
}
