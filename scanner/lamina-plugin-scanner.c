/* lamina-plugin-scanner — checks one plugin file on behalf of the registry.
 *
 * Usage (by liblamina only): lamina-plugin-scanner PATH
 *
 * Opens PATH, calls its lamina_plugin_query and checks the descriptor with the registry's own
 * code (lmn_registry_probe_file), then writes a key-file report to the stdout it was started
 * with and exits 0.  A good plugin's report holds its summary (names, versions, descriptions of
 * the plugin and its features), from which the registry lists and finds its features without
 * opening the file until one is used.  Anything a broken plugin does to this process (a crash, exit(), a hang) is
 * read by the registry from the way the process ended.  Only the registry runs this program, so
 * it has no options and says nothing on success.
 */
#include "registry/registry-internal.h"

#include <lamina/error.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
/* Under AddressSanitizer a plugin's SIGSEGV, SIGBUS or SIGFPE would end the process through
 * ASan's handler (exit status 1, or SIGABRT with abort_on_error), hiding which signal it was.
 * The scanner exists to let such plugins die, so the signals keep their default action here;
 * ASAN_OPTIONS still overrides these defaults. */
const char *__asan_default_options(void);
__attribute__((visibility("default"), used)) const char *__asan_default_options(void)
{
    return "handle_segv=0:handle_sigbus=0:handle_sigfpe=0:handle_sigill=0:handle_abort=0";
}
#endif

static gboolean write_all(int fd, const char *data, gsize len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0)
            return FALSE;
        data += n;
        len -= (gsize) n;
    }
    return TRUE;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PLUGIN-FILE (run by liblamina, not by hand)\n", argv[0]);
        return 2;
    }
    /* The report gets its own descriptor and stdout goes to stderr, so that a plugin printing
     * in its constructor or query cannot forge or corrupt the report. */
    int report_fd = dup(STDOUT_FILENO);
    if (report_fd < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
        perror("lamina-plugin-scanner");
        return 2;
    }

    g_autoptr(GKeyFile) report = g_key_file_new();
    g_autoptr(GError) error = NULL;
    if (lmn_registry_probe_file(argv[1], report, &error)) {
        g_key_file_set_string(report, LMN_SCAN_REPORT_GROUP, "status", "ok");
    } else {
        g_key_file_set_string(report, LMN_SCAN_REPORT_GROUP, "status", "failed");
        g_key_file_set_int64(report, LMN_SCAN_REPORT_GROUP, "code", error->code);
        g_key_file_set_string(report, LMN_SCAN_REPORT_GROUP, "message", error->message);
    }
    gsize len = 0;
    g_autofree char *text = g_key_file_to_data(report, &len, NULL);
    if (!write_all(report_fd, text, len)) {
        perror("lamina-plugin-scanner: writing the report");
        return 2;
    }
    close(report_fd);
    return 0;
}
