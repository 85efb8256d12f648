/* Test plugins whose query is hostile to the process that calls it, one way per variant
 * (HOSTILE_SEGV, HOSTILE_ABORT, HOSTILE_EXIT, HOSTILE_HANG): the plugin scanner must report each
 * as a failure with its reason, and no command may go down with it.  A truncated file is made at
 * test time from a good plugin.
 */
#include <lamina/plugin.h>

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

LMN_PLUGIN_EXPORT const LmnPluginDesc *lamina_plugin_query(void);

/* Not a null dereference, which UndefinedBehaviorSanitizer would report and turn into an exit
 * of its own: a store to an unmapped low address, a real SIGSEGV in every build. */
__attribute__((no_sanitize("undefined"))) LMN_PLUGIN_EXPORT const LmnPluginDesc *
lamina_plugin_query(void)
{
#if defined(HOSTILE_SEGV)
    /* volatile: the compiler must neither see the address nor drop the store. */
    volatile uintptr_t address = 64;
    *(volatile int *) address = 1;
#elif defined(HOSTILE_ABORT)
    abort();
#elif defined(HOSTILE_EXIT)
    exit(3);
#elif defined(HOSTILE_HANG)
    /* Sleeps rather than spins: the tests share few cores. */
    for (;;)
        pause();
#else
#error "build with one of HOSTILE_SEGV, HOSTILE_ABORT, HOSTILE_EXIT, HOSTILE_HANG"
#endif
    return NULL;
}
