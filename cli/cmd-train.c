/* Lamina — `lamina train`. */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static LmnTrainer *running_trainer;

/* Only flags a request: the loop saves a checkpoint at the next step boundary. */
static void on_sigint(int sig)
{
    (void) sig;
    if (running_trainer)
        lmn_trainer_request_stop(running_trainer);
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C stops at once */
}

int lmn_cli_train(int argc, char **argv)
{
    g_auto(GStrv) plugin_dirs = NULL;
    g_auto(GStrv) sets = NULL;
    g_autofree char *output = NULL;
    g_autofree char *optimizer = NULL;
    g_autofree char *lr = NULL;
    g_autofree char *backend = NULL;
    g_autofree char *device = NULL;
    g_autofree char *init = NULL;
    g_autofree char *resume = NULL;
    gint64 epochs = 0, batch = 0, seed = -1, max_steps = -1;
    gboolean reset_opt = FALSE, quiet = FALSE, no_progress = FALSE;
    GOptionEntry entries[] = {
        {"output", 'o', 0, G_OPTION_ARG_FILENAME, &output,
         "directory for final.h5, checkpoints and metrics.csv (default: out)", "DIR"},
        {"set", 's', 0, G_OPTION_ARG_STRING_ARRAY, &sets,
         "override a config value (repeatable): GROUP.KEY=VALUE, GROUP a group or a layer name",
         "GROUP.KEY=VALUE"},
        {"optimizer", 0, 0, G_OPTION_ARG_STRING, &optimizer,
         "use this optimizer; keys it does not take are dropped with a notice", "NAME"},
        {"lr", 0, 0, G_OPTION_ARG_STRING, &lr, "learning rate (optimizer.lr)", "LR"},
        {"epochs", 0, 0, G_OPTION_ARG_INT64, &epochs, "train.epochs", "N"},
        {"batch-size", 0, 0, G_OPTION_ARG_INT64, &batch, "train.batch_size", "N"},
        {"seed", 0, 0, G_OPTION_ARG_INT64, &seed, "train.seed", "N"},
        {"max-steps", 0, 0, G_OPTION_ARG_INT64, &max_steps, "train.max_steps", "N"},
        {"backend", 0, 0, G_OPTION_ARG_STRING, &backend, "train.backend (auto, cpu, vulkan)",
         "NAME"},
        {"device", 0, 0, G_OPTION_ARG_STRING, &device, "train.device (index or name substring)",
         "DEV"},
        {"init", 0, 0, G_OPTION_ARG_FILENAME, &init,
         "start from the weights in this HDF5 file (/model/LAYER/PARAM)", "CKPT"},
        {"resume", 0, 0, G_OPTION_ARG_FILENAME, &resume,
         "continue a run from its checkpoint (weights, optimizer, counters)", "CKPT"},
        {"reset-optimizer", 0, 0, G_OPTION_ARG_NONE, &reset_opt,
         "with --resume: start the optimizer's state fresh", NULL},
        {"plugin-path", 'P', 0, G_OPTION_ARG_FILENAME_ARRAY, &plugin_dirs,
         "also load plugins from DIR (repeatable; searched first)", "DIR"},
        {"quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "print nothing per epoch", NULL},
        {"no-progress", 0, 0, G_OPTION_ARG_NONE, &no_progress,
         "no progress bar even on a terminal", NULL},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("CONFIG");
    g_option_context_set_summary(ctx, "Train the model described by CONFIG (an INI file).\n"
                                      "Overrides apply in this order: --optimizer, the shortcut "
                                      "flags, then each --set.");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        fprintf(stderr, "lamina train: %s (see lamina train --help)\n", error->message);
        return 2;
    }
    if (argc != 2) {
        fprintf(stderr, "lamina train: expected one CONFIG file (see lamina train --help)\n");
        return 2;
    }
    if (init && resume) {
        fprintf(stderr, "lamina train: --init and --resume exclude each other\n");
        return 2;
    }

    g_autoptr(LmnRegistry) registry = lmn_cli_open_registry(plugin_dirs);
    LmnConfig *cfg = lmn_config_new_from_file(argv[1], &error);
    if (!cfg)
        return lmn_cli_fail("train", error);

    gboolean ok = TRUE;
    if (optimizer)
        ok = lmn_config_replace_optimizer(cfg, registry, optimizer, &error);
    struct {
        const char *group, *key;
        char *value;
    } shortcuts[] = {
        {"optimizer", "lr", lr ? g_strdup(lr) : NULL},
        {"train", "epochs", epochs ? g_strdup_printf("%" G_GINT64_FORMAT, epochs) : NULL},
        {"train", "batch_size", batch ? g_strdup_printf("%" G_GINT64_FORMAT, batch) : NULL},
        {"train", "seed", seed >= 0 ? g_strdup_printf("%" G_GINT64_FORMAT, seed) : NULL},
        {"train", "max_steps",
         max_steps >= 0 ? g_strdup_printf("%" G_GINT64_FORMAT, max_steps) : NULL},
        {"train", "backend", backend ? g_strdup(backend) : NULL},
        {"train", "device", device ? g_strdup(device) : NULL},
    };
    for (gsize i = 0; i < G_N_ELEMENTS(shortcuts); i++) {
        if (ok && shortcuts[i].value)
            ok = lmn_config_set_value(cfg, shortcuts[i].group, shortcuts[i].key,
                                      shortcuts[i].value, &error);
        g_free(shortcuts[i].value);
    }
    for (guint i = 0; ok && sets && sets[i]; i++)
        ok = lmn_config_set(cfg, sets[i], &error);
    if (ok)
        ok = lmn_config_validate(cfg, registry, &error);
    if (!ok) {
        lmn_config_free(cfg);
        return lmn_cli_fail("train", error);
    }

    LmnTrainerOptions opts = {
        .output_dir = output ? output : "out",
        .init_checkpoint = init,
        .resume_checkpoint = resume,
        .reset_optimizer = reset_opt,
        .progress = !quiet && !no_progress && isatty(STDOUT_FILENO),
        .quiet = quiet,
    };
    LmnTrainer *trainer = lmn_trainer_new(cfg, registry, &opts, &error);
    if (!trainer) {
        lmn_config_free(cfg);
        return lmn_cli_fail("train", error);
    }
    running_trainer = trainer;
    signal(SIGINT, on_sigint);
    ok = lmn_trainer_run(trainer, &error);
    signal(SIGINT, SIG_DFL);
    running_trainer = NULL;
    lmn_trainer_free(trainer);
    lmn_config_free(cfg);
    if (!ok) {
        gboolean interrupted = g_error_matches(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_INTERRUPTED);
        lmn_cli_fail("train", error);
        return interrupted ? 130 : 1;
    }
    return 0;
}
