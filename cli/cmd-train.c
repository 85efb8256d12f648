/* Lamina — `lamina train`. */
#include "cli.h"
#include "plot.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static LmnTrainer *volatile running_trainer; /* read by on_stop_signal */
static volatile sig_atomic_t stop_signals;

/* Only flags a request: the loop saves interrupted.h5 at the next step boundary.  A second
 * Ctrl-C (or SIGTERM) must not kill the process while that checkpoint is being written, so it
 * only says so; SIGKILL still ends the run at once. */
static void on_stop_signal(int sig)
{
    (void) sig;
    if (stop_signals++ == 0) {
        if (running_trainer)
            lmn_trainer_request_stop(running_trainer);
        return;
    }
    static const char msg[] = "lamina train: stopping; saving interrupted.h5 first, please wait\n";
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void) ignored;
}

static void set_stop_handler(void (*handler)(int))
{
    /* The handler runs on a stack of its own.  On the thread's stack its frame lands below the
     * stack pointer of whatever it interrupted, and the JIT kernels of the CPU backend (oneDNN's
     * sgemm among them) keep data there: a stop signal during a step corrupted the heap about
     * once in a hundred runs (glibc: "corrupted size vs. prev_size", in the next GEMM).  With
     * the alternate stack, 0 in 450 such runs where 4 in 450 failed without it. */
    static char alt_stack[64 * 1024];
    static gboolean alt_set;
    if (!alt_set) {
        stack_t st = {.ss_sp = alt_stack, .ss_size = sizeof alt_stack, .ss_flags = 0};
        alt_set = sigaltstack(&st, NULL) == 0;
    }
    struct sigaction sa = {0};
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_ONSTACK;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* The command line of `lamina train`. */
typedef struct {
    GStrv plugin_dirs, sets;
    char *output, *optimizer, *lr, *backend, *device, *init, *resume, *distributed;
    gint64 epochs, batch, seed, max_steps;
    gboolean reset_opt, quiet, no_progress, allow_nonfinite, init_partial, plot, verbose;
    LmnComm *comm; /* the ranks of a data-parallel run (one for a single process) */
} TrainArgs;

static void train_args_clear(TrainArgs *a)
{
    g_strfreev(a->plugin_dirs);
    g_strfreev(a->sets);
    g_free(a->output);
    g_free(a->optimizer);
    g_free(a->lr);
    g_free(a->backend);
    g_free(a->device);
    g_free(a->init);
    g_free(a->resume);
    g_free(a->distributed);
    /* Leaves the job (MPI_Finalize) after the last collective. */
    lmn_comm_free(a->comm);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(TrainArgs, train_args_clear)

/* Parses the options into @a; Returns: 0, or the exit status 2 after a usage message. */
static int parse_args(TrainArgs *a, int *argc, char ***argv)
{
    GOptionEntry entries[] = {
        {"output", 'o', 0, G_OPTION_ARG_FILENAME, &a->output,
         "directory for final.h5, checkpoints and metrics.csv (default: out)", "DIR"},
        {"set", 's', 0, G_OPTION_ARG_STRING_ARRAY, &a->sets,
         "override a config value (repeatable): GROUP.KEY=VALUE, GROUP a group or a layer name",
         "GROUP.KEY=VALUE"},
        {"optimizer", 0, 0, G_OPTION_ARG_STRING, &a->optimizer,
         "use this optimizer; keys it does not take are dropped with a notice", "NAME"},
        {"lr", 0, 0, G_OPTION_ARG_STRING, &a->lr, "learning rate (optimizer.lr)", "LR"},
        {"epochs", 0, 0, G_OPTION_ARG_INT64, &a->epochs, "train.epochs", "N"},
        {"batch-size", 0, 0, G_OPTION_ARG_INT64, &a->batch, "train.batch_size", "N"},
        {"seed", 0, 0, G_OPTION_ARG_INT64, &a->seed, "train.seed", "N"},
        {"max-steps", 0, 0, G_OPTION_ARG_INT64, &a->max_steps, "train.max_steps", "N"},
        {"backend", 0, 0, G_OPTION_ARG_STRING, &a->backend, "train.backend (auto, cpu, vulkan)",
         "NAME"},
        {"device", 0, 0, G_OPTION_ARG_STRING, &a->device, "train.device (index or name substring)",
         "DEV"},
        {"init", 0, 0, G_OPTION_ARG_FILENAME, &a->init,
         "start from the weights in this HDF5 file (/model/LAYER/PARAM)", "CKPT"},
        {"init-partial", 0, 0, G_OPTION_ARG_NONE, &a->init_partial,
         "with --init: load only the tensors whose layer, name and shape match; the others keep "
         "their initialisation (a line each says which and why)",
         NULL},
        {"resume", 0, 0, G_OPTION_ARG_FILENAME, &a->resume,
         "continue a run from its checkpoint (weights, optimizer, counters)", "CKPT"},
        {"reset-optimizer", 0, 0, G_OPTION_ARG_NONE, &a->reset_opt,
         "with --resume: start the optimizer's state fresh", NULL},
        {"allow-nonfinite", 0, 0, G_OPTION_ARG_NONE, &a->allow_nonfinite,
         "with --init or --resume: load weights and optimizer state holding NaN or infinities",
         NULL},
        {"plugin-path", 'P', 0, G_OPTION_ARG_FILENAME_ARRAY, &a->plugin_dirs,
         "also load plugins from DIR (repeatable; searched first)", "DIR"},
        {"quiet", 'q', 0, G_OPTION_ARG_NONE, &a->quiet, "print nothing per epoch", NULL},
        {"no-progress", 0, 0, G_OPTION_ARG_NONE, &a->no_progress,
         "no progress bar even on a terminal", NULL},
        {"distributed", 0, 0, G_OPTION_ARG_STRING, &a->distributed,
         "several processes: auto (the default: mpi when started by mpirun), mpi, or none "
         "(train alone even under mpirun)",
         "NAME"},
        {"verbose", 'v', 0, G_OPTION_ARG_NONE, &a->verbose,
         "several processes: every rank prints its epochs, not only rank 0", NULL},
        {"plot", 0, 0, G_OPTION_ARG_NONE, &a->plot,
         "redraw OUTPUT/curves.png (as lamina plot does) after every epoch", NULL},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("CONFIG");
    g_option_context_set_summary(ctx, "Train the model described by CONFIG (an INI file).\n"
                                      "Overrides apply in this order: --optimizer, the shortcut "
                                      "flags, then each --set.");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, argc, argv, &error)) {
        fprintf(stderr, "lamina train: %s (see lamina train --help)\n", error->message);
        return 2;
    }
    if (*argc != 2) {
        fprintf(stderr, "lamina train: expected one CONFIG file (see lamina train --help)\n");
        return 2;
    }
    if (a->init_partial && !a->init) {
        fprintf(stderr, "lamina train: --init-partial needs --init CKPT (a resumed run keeps "
                        "the weights of its checkpoint)\n");
        return 2;
    }
    if (a->init && a->resume) {
        fprintf(stderr, "lamina train: --init and --resume exclude each other\n");
        return 2;
    }
    return 0;
}

/* --optimizer, then the shortcut flags, then each --set; then the whole config is validated. */
static gboolean apply_overrides(LmnConfig *cfg, LmnRegistry *registry, const TrainArgs *a,
                                GError **error)
{
    if (a->optimizer && !lmn_config_replace_optimizer(cfg, registry, a->optimizer, error))
        return FALSE;
    struct {
        const char *group, *key;
        char *value;
    } shortcuts[] = {
        {"optimizer", "lr", a->lr ? g_strdup(a->lr) : NULL},
        {"train", "epochs", a->epochs ? g_strdup_printf("%" G_GINT64_FORMAT, a->epochs) : NULL},
        {"train", "batch_size", a->batch ? g_strdup_printf("%" G_GINT64_FORMAT, a->batch) : NULL},
        {"train", "seed", a->seed >= 0 ? g_strdup_printf("%" G_GINT64_FORMAT, a->seed) : NULL},
        {"train", "max_steps",
         a->max_steps >= 0 ? g_strdup_printf("%" G_GINT64_FORMAT, a->max_steps) : NULL},
        {"train", "backend", a->backend ? g_strdup(a->backend) : NULL},
        {"train", "device", a->device ? g_strdup(a->device) : NULL},
    };
    gboolean ok = TRUE;
    for (gsize i = 0; i < G_N_ELEMENTS(shortcuts); i++) {
        if (ok && shortcuts[i].value)
            ok = lmn_config_set_value(cfg, shortcuts[i].group, shortcuts[i].key, shortcuts[i].value,
                                      error);
        g_free(shortcuts[i].value);
    }
    for (guint i = 0; ok && a->sets && a->sets[i]; i++)
        ok = lmn_config_set(cfg, a->sets[i], error);
    return ok && lmn_config_validate(cfg, registry, error);
}

/* --plot: redraws curves.png beside metrics.csv after each epoch.  A picture that cannot be
 * drawn is not worth stopping a run for: the first failure is reported and plotting stops. */
static void plot_epoch(const char *metrics_path, gpointer data)
{
    gboolean *failed = data;
    if (*failed)
        return;
    g_autoptr(GError) error = NULL;
    g_autofree char *dir = g_path_get_dirname(metrics_path);
    g_autofree char *out = g_build_filename(dir, "curves.png", NULL);
    g_autoptr(LmnMetrics) m = lmn_metrics_read(metrics_path, &error);
    if (!m || !lmn_plot_metrics(m, out, metrics_path, &error)) {
        fprintf(stderr, "lamina train: warning: --plot: %s; training goes on without it\n",
                error->message);
        *failed = TRUE;
    }
}

/* A failure of one rank of several: every rank decides a stop request, the loss guard and a job
 * mismatch alike, and those end the job normally (rank 0 reports them); any
 * other failure is this rank's alone, so it is reported with the rank and host and ends every
 * rank (MPI_Abort), where the others would wait for it.  Returns: the exit status. */
static int fail_train(const TrainArgs *a, const GError *error, int status)
{
    LmnComm *comm = a->comm;
    if (!comm || lmn_comm_get_size(comm) == 1) {
        lmn_cli_fail("train", error);
        return status;
    }
    int rank = lmn_comm_get_rank(comm);
    gboolean collective = g_error_matches(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_INTERRUPTED) ||
                          g_error_matches(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_NON_FINITE) ||
                          g_error_matches(error, LMN_COMM_ERROR, LMN_COMM_ERROR_MISMATCH);
    if (collective) {
        if (rank == 0 || a->verbose)
            lmn_cli_fail("train", error);
        return status;
    }
    g_autofree char *msg =
        g_strdup_printf("lamina train: rank %d of %d (host %s): %s", rank, lmn_comm_get_size(comm),
                        lmn_comm_get_host_name(comm, rank), error->message);
    lmn_comm_abort(comm, status, msg);
    return status;
}

/* Trains with Ctrl-C turned into a stop request.  Returns: the exit status. */
static int run_trainer(LmnConfig *cfg, LmnRegistry *registry, const TrainArgs *a)
{
    g_autoptr(GError) error = NULL;
    int rank = lmn_comm_get_rank(a->comm);
    LmnTrainerOptions opts = {
        .output_dir = a->output ? a->output : "out",
        .init_checkpoint = a->init,
        .resume_checkpoint = a->resume,
        .reset_optimizer = a->reset_opt,
        .progress = !a->quiet && !a->no_progress && isatty(STDOUT_FILENO) && rank == 0,
        .quiet = a->quiet || (rank != 0 && !a->verbose),
        .allow_nonfinite = a->allow_nonfinite,
        .init_partial = a->init_partial,
        .comm = a->comm,
    };
    gboolean plot_failed = FALSE;
    if (a->plot) {
        opts.epoch_done = plot_epoch;
        opts.epoch_done_data = &plot_failed;
    }
    /* A file size limit (ulimit -f) then fails a write with EFBIG, reported like a full disk,
     * instead of killing the process mid-write. */
    signal(SIGXFSZ, SIG_IGN);
    /* The backend's worker threads, started while the trainer is made, inherit a mask that
     * blocks the stop signals, so the kernel delivers them to this thread, whose handler has the
     * alternate stack (set_stop_handler): a worker's stack holds JIT kernel data below its
     * stack pointer too.  Unblocked before the handler is set, so a signal during setup still
     * ends the process as it always did. */
    sigset_t stop_set, old_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_set, &old_set);
    LmnTrainer *trainer = lmn_trainer_new(cfg, registry, &opts, &error);
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);
    if (!trainer)
        return fail_train(a, error, 1);
    running_trainer = trainer;
    stop_signals = 0;
    set_stop_handler(on_stop_signal);
    gboolean ok = lmn_trainer_run(trainer, &error);
    running_trainer = NULL; /* the handler must not reach a trainer about to be freed */
    /* After a stop request the run has saved interrupted.h5 and the process exits 130: the
     * handler stays, so a second signal arriving now (a second Ctrl-C, or SIGINT after SIGTERM)
     * only prints its notice rather than killing the process on its way out.  Otherwise the
     * default action comes back. */
    if (stop_signals == 0)
        set_stop_handler(SIG_DFL);
    lmn_trainer_free(trainer);
    if (a->plot)
        lmn_plot_shutdown();
    if (!ok) {
        gboolean interrupted = g_error_matches(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_INTERRUPTED);
        return fail_train(a, error, interrupted ? 130 : 1);
    }
    return 0;
}

int lmn_cli_train(int argc, char **argv)
{
    g_auto(TrainArgs) a = {.seed = -1, .max_steps = -1};
    int usage = parse_args(&a, &argc, &argv);
    if (usage != 0)
        return usage;
    g_autoptr(LmnRegistry) registry = lmn_cli_open_registry(a.plugin_dirs);
    g_autoptr(GError) error = NULL;
    a.comm = lmn_comm_open(registry, a.distributed, &error);
    if (!a.comm)
        return lmn_cli_fail("train", error);
    LmnConfig *cfg = lmn_config_new_from_file(argv[1], &error);
    if (!cfg)
        return fail_train(&a, error, 1);
    int status = apply_overrides(cfg, registry, &a, &error) ? run_trainer(cfg, registry, &a)
                                                            : fail_train(&a, error, 1);
    lmn_config_free(cfg);
    return status;
}
