/* Lamina — scanning one plugin file in a helper process.
 *
 * A plugin's query runs inside lamina-plugin-scanner first: whatever it does there (a segfault,
 * abort(), exit(), an endless loop, a SIGBUS from a truncated file inside dlopen) ends that
 * process, not the command that wanted the plugin.  The scanner writes a key-file report to its
 * stdout; this side reads it under a time limit, then reads how the process ended.  Only a
 * report followed by a clean exit counts: a plugin that exits with status 0 halfway through its
 * query has not been checked.
 */
#include "registry-internal.h"

#include <lamina/error.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#if !defined(LMN_PLUGIN_SCANNER) || !defined(LMN_BUILD_PLUGIN_SCANNER)
#error "core/meson.build defines LMN_PLUGIN_SCANNER and LMN_BUILD_PLUGIN_SCANNER"
#endif

#define DEFAULT_TIMEOUT_S 5.0
/* A report is a few hundred bytes; more is a plugin writing garbage into it. */
#define MAX_REPORT (1 << 20)

static const char *scanner_path(void)
{
    const char *env = lmn_registry_trust_environment() ? g_getenv("LAMINA_PLUGIN_SCANNER") : NULL;
    if (env != NULL && env[0] != '\0')
        return env;
    return lmn_registry_running_from_build_tree() ? LMN_BUILD_PLUGIN_SCANNER : LMN_PLUGIN_SCANNER;
}

static double scan_timeout_s(void)
{
    const char *env = g_getenv("LAMINA_PLUGIN_SCAN_TIMEOUT");
    if (env == NULL)
        return DEFAULT_TIMEOUT_S;
    char *end = NULL;
    double t = g_ascii_strtod(env, &end);
    if (end == env || *end != '\0' || !(t > 0.0 && t <= 3600.0)) {
        g_warning("LAMINA_PLUGIN_SCAN_TIMEOUT='%s' is not a number of seconds in (0, 3600]; "
                  "using %g",
                  env, DEFAULT_TIMEOUT_S);
        return DEFAULT_TIMEOUT_S;
    }
    return t;
}

/* "SIGSEGV" for the signals a broken plugin raises; NULL for others. */
static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGSEGV:
        return "SIGSEGV";
    case SIGBUS:
        return "SIGBUS";
    case SIGABRT:
        return "SIGABRT";
    case SIGFPE:
        return "SIGFPE";
    case SIGILL:
        return "SIGILL";
    case SIGTRAP:
        return "SIGTRAP";
    case SIGSYS:
        return "SIGSYS";
    case SIGKILL:
        return "SIGKILL";
    case SIGTERM:
        return "SIGTERM";
    case SIGPIPE:
        return "SIGPIPE";
    case SIGXCPU:
        return "SIGXCPU";
    case SIGXFSZ:
        return "SIGXFSZ";
    default:
        return NULL;
    }
}

/* Reads the child's report until EOF or @deadline (monotonic µs).  Returns FALSE on timeout. */
static gboolean read_report(int fd, gint64 deadline, GString *report)
{
    char buf[4096];
    for (;;) {
        gint64 left_us = deadline - g_get_monotonic_time();
        if (left_us <= 0)
            return FALSE;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, (int) MIN(left_us / 1000 + 1, G_MAXINT));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue; /* timeout: the loop's deadline check decides */
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return TRUE; /* EOF (or an error: the exit status tells the rest) */
        if (report->len < MAX_REPORT)
            g_string_append_len(report, buf, n);
    }
}

/* Waits for @pid until @deadline; returns FALSE (having killed it) on timeout. */
static gboolean wait_child(GPid pid, gint64 deadline, int *status)
{
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return TRUE;
        if (r < 0 && errno != EINTR) {
            *status = 0;
            return TRUE; /* reaped elsewhere: nothing more to learn */
        }
        if (g_get_monotonic_time() >= deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
            }
            return FALSE;
        }
        g_usleep(2000);
    }
}

/* Turns a clean exit's report into the scan's verdict (and a usable plugin's summary). */
static LmnScanResult parse_report(const char *path, const GString *text, LmnPluginSummary **summary,
                                  GError **error)
{
    g_autoptr(GKeyFile) report = g_key_file_new();
    g_autofree char *status = NULL;
    if (text->len == 0 || !g_key_file_load_from_data(report, text->str, text->len, 0, NULL) ||
        (status = g_key_file_get_string(report, LMN_SCAN_REPORT_GROUP, "status", NULL)) == NULL) {
        g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_SCAN_FAILED,
                    "%s: the plugin scanner exited without a report (did the plugin call "
                    "exit(0) in its query?)",
                    path);
        return LMN_SCAN_FAILED;
    }
    if (strcmp(status, "ok") == 0) {
        g_autofree char *problem = NULL;
        *summary = lmn_plugin_summary_load(report, LMN_SCAN_REPORT_GROUP, &problem);
        if (*summary == NULL) {
            /* The registry would offer features it knows nothing about: not usable. */
            g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_SCAN_FAILED,
                        "%s: the plugin scanner's report is malformed (%s)", path, problem);
            return LMN_SCAN_FAILED;
        }
        g_autofree char *features =
            g_key_file_get_string(report, LMN_SCAN_REPORT_GROUP, "features", NULL);
        g_debug("plugin %s scanned: %s, features %s", path, (*summary)->name, features);
        return LMN_SCAN_OK;
    }
    gint64 code = g_key_file_get_int64(report, LMN_SCAN_REPORT_GROUP, "code", NULL);
    g_autofree char *message =
        g_key_file_get_string(report, LMN_SCAN_REPORT_GROUP, "message", NULL);
    if (code < 0 || code > LMN_PLUGIN_ERROR_SCAN_FAILED)
        code = LMN_PLUGIN_ERROR_BAD_DESCRIPTOR;
    g_set_error_literal(error, LMN_PLUGIN_ERROR, (int) code,
                        message ? message
                                : "the plugin scanner reported a failure without a "
                                  "reason");
    return LMN_SCAN_FAILED;
}

LmnScanResult lmn_plugin_scan(const char *path, LmnPluginSummary **summary, GError **error)
{
    g_return_val_if_fail(summary != NULL && *summary == NULL, LMN_SCAN_UNAVAILABLE);
    const char *scanner = scanner_path();
    double timeout = scan_timeout_s();
    const char *argv[] = {scanner, path, NULL};
    /* The scanner's stderr carries only what a broken plugin (or a sanitizer) says while dying;
     * the verdict names the cause, so the noise is dropped unless someone debugs a plugin. */
    GSpawnFlags flags = G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDIN_FROM_DEV_NULL;
    if (g_getenv("LAMINA_PLUGIN_SCAN_VERBOSE") == NULL)
        flags |= G_SPAWN_STDERR_TO_DEV_NULL;

    g_debug("plugin %s: scanning in a helper process (%s)", path, scanner);
    GPid pid = 0;
    int out_fd = -1;
    GError *spawn_error = NULL;
    if (!g_spawn_async_with_pipes(NULL, (char **) argv, NULL, flags, NULL, NULL, &pid, NULL,
                                  &out_fd, NULL, &spawn_error)) {
        g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_SCAN_FAILED,
                    "cannot run the plugin scanner %s: %s", scanner, spawn_error->message);
        g_error_free(spawn_error);
        return LMN_SCAN_UNAVAILABLE;
    }

    gint64 deadline = g_get_monotonic_time() + (gint64) (timeout * G_USEC_PER_SEC);
    g_autoptr(GString) report = g_string_new(NULL);
    gboolean in_time = read_report(out_fd, deadline, report);
    close(out_fd);
    int status = 0;
    in_time = wait_child(pid, in_time ? deadline : 0, &status) && in_time;
    g_spawn_close_pid(pid);

    if (!in_time) {
        g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_SCAN_FAILED,
                    "%s: the plugin's query timed out after %g s (the limit is "
                    "LAMINA_PLUGIN_SCAN_TIMEOUT)",
                    path, timeout);
        return LMN_SCAN_FAILED;
    }
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        const char *name = signal_name(sig);
        g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_SCAN_FAILED,
                    "%s: the plugin crashed while being scanned: signal %s%s%d (%s)", path,
                    name ? name : "", name ? ", " : "", sig, g_strsignal(sig));
        return LMN_SCAN_FAILED;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        g_set_error(error, LMN_PLUGIN_ERROR, LMN_PLUGIN_ERROR_SCAN_FAILED,
                    "%s: the plugin ended the scanner process during its query: exit status %d",
                    path, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return LMN_SCAN_FAILED;
    }
    return parse_report(path, report, summary, error);
}
