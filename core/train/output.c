/* Lamina — the run's output directory: its lock, stale temporary files, the write probe,
 * checkpoints and metrics.csv, every write checked. */
#include "trainer-private.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* Takes OUTPUT/.lock with flock(), so that a second run into the same directory fails at once
 * instead of interleaving its checkpoints and metrics with the first's; the file holds the
 * holder's pid for the message. */
static gboolean lock_output(LmnTrainer *t, GError **error)
{
    g_autofree char *path = g_build_filename(t->output_dir, ".lock", NULL);
    int fd = g_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                    "cannot write in the output directory %s (creating %s: %s); choose a writable "
                    "--output",
                    t->output_dir, path, g_strerror(e));
        return FALSE;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t got = e == EWOULDBLOCK ? pread(fd, pid, sizeof pid - 1, 0) : -1;
        pid[got > 0 ? got : 0] = '\0';
        g_strstrip(pid);
        close(fd);
        if (e == EWOULDBLOCK)
            g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                        "the output directory %s is in use by another `lamina train` (pid %s); "
                        "wait for it to finish or choose another --output",
                        t->output_dir, *pid ? pid : "unknown");
        else
            g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                        "cannot lock %s: %s; choose another --output", path, g_strerror(e));
        return FALSE;
    }
    t->lock_fd = fd;
    g_autofree char *text = g_strdup_printf("%ld\n", (long) getpid());
    gsize len = strlen(text);
    if (ftruncate(fd, 0) < 0 || pwrite(fd, text, len, 0) != (ssize_t) len) {
        int e = errno;
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                    "cannot write in the output directory %s (writing %s: %s); free space there "
                    "or choose another --output",
                    t->output_dir, path, g_strerror(e));
        return FALSE;
    }
    return TRUE;
}
/* A temporary file of lmn_h5_atomic_file_new(), ".NAME.h5.XXXXXX.tmp": with the lock held, one in
 * the output directory is left from a run that was killed while it wrote a checkpoint. */
static gboolean is_stale_temp(const char *name)
{
    gsize len = strlen(name);
    if (name[0] != '.' || len < strlen(".x.h5.XXXXXX.tmp") || !g_str_has_suffix(name, ".tmp"))
        return FALSE;
    const char *suffix = name + len - strlen(".XXXXXX.tmp");
    if (suffix[0] != '.')
        return FALSE;
    for (int i = 1; i <= 6; i++)
        if (!g_ascii_isalnum(suffix[i]))
            return FALSE;
    return suffix - name > 4 && strncmp(suffix - 3, ".h5", 3) == 0;
}
static void remove_stale_temps(LmnTrainer *t)
{
    g_autoptr(GDir) dir = g_dir_open(t->output_dir, 0, NULL);
    g_autoptr(GString) removed = g_string_new(NULL);
    guint n = 0;
    for (const char *name; dir && (name = g_dir_read_name(dir));) {
        if (!is_stale_temp(name))
            continue;
        g_autofree char *path = g_build_filename(t->output_dir, name, NULL);
        if (g_unlink(path) == 0) {
            g_string_append_printf(removed, "%s%s", n ? ", " : "", name);
            n++;
        }
    }
    if (n > 0)
        g_printerr("notice: removed %u temporary file%s left in %s by a run that was stopped "
                   "while writing: %s\n",
                   n, n == 1 ? "" : "s", t->output_dir, removed->str);
}
/* The output directory: created, locked against a second run, cleared of a killed run's
 * temporary files, and shown to be writable before the first epoch rather than after it. */
gboolean lmn_train_setup_output(LmnTrainer *t, GError **error)
{
    /* In a data-parallel run only rank 0 writes (checkpoints and metrics.csv). */
    if (t->rank != 0)
        return TRUE;
    if (g_mkdir_with_parents(t->output_dir, 0755) != 0) {
        int e = errno;
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                    "cannot create the output directory %s: %s", t->output_dir, g_strerror(e));
        return FALSE;
    }
    if (!lock_output(t, error))
        return FALSE;
    remove_stale_temps(t);
    /* The lock file may exist from an earlier run, so a new file shows that one can be made. */
    g_autofree char *probe = g_build_filename(t->output_dir, ".write-test.XXXXXX", NULL);
    int fd = g_mkstemp_full(probe, O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, "x", 1) != 1) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
            g_unlink(probe);
        }
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                    "cannot write in the output directory %s: %s; choose a writable --output or "
                    "free space there",
                    t->output_dir, g_strerror(e));
        return FALSE;
    }
    close(fd);
    g_unlink(probe);
    return TRUE;
}
gboolean lmn_train_save_checkpoint(LmnTrainer *t, const char *name, GError **error)
{
    if (t->rank != 0)
        return TRUE;
    g_autofree char *path = g_build_filename(t->output_dir, name, NULL);
    t->state.train_data = t->train; /* /data: what `lamina predict` preprocesses images with */
    return lmn_checkpoint_save(path, t->config_text, t->model, t->opt, t->sched, &t->state, error);
}
/* Opened at the first row, so a run that fails before finishing anything leaves an earlier
 * run's metrics.csv in the output directory as it was. */
FILE *lmn_train_open_metrics(LmnTrainer *t, GError **error)
{
    if (t->metrics)
        return t->metrics;
    g_autofree char *path = g_build_filename(t->output_dir, "metrics.csv", NULL);
    gboolean append = t->opts.resume_checkpoint && g_file_test(path, G_FILE_TEST_EXISTS);
    FILE *f = fopen(path, append ? "a" : "w");
    if (!f) {
        int e = errno;
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED, "cannot write %s: %s", path,
                    g_strerror(e));
        return NULL;
    }
    t->metrics = f;
    if (!append &&
        (fputs("epoch,step,lr,train_loss,train_accuracy,val_loss,val_accuracy,seconds", f) < 0 ||
         !lmn_train_write_loss_header(t, f) ||
         (t->ema && fputs(",val_loss_ema,val_accuracy_ema", f) < 0) ||
         (t->tc->top_k > 0 &&
          fprintf(f, ",val_top%" G_GINT64_FORMAT "_accuracy", t->tc->top_k) < 0) ||
         (t->seg_loss >= 0 && fputs(",val_mean_iou", f) < 0) || fputc('\n', f) == EOF)) {
        int e = errno;
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                    "cannot write %s: %s; free space on that disk or choose another --output", path,
                    g_strerror(e));
        return NULL;
    }
    return f;
}
/* Returns: FALSE with errno set when the write failed. */
gboolean lmn_train_csv_value(FILE *f, double v)
{
    return (isnan(v) ? fputs(",", f) : fprintf(f, ",%.6g", v)) >= 0;
}
