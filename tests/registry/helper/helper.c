/* A shared library a test plugin links against; the test copies the plugin without it, so
 * loading fails with the dynamic loader's "cannot open shared object file". */
#include "helper.h"

double lmn_test_helper_value(void)
{
    return 42.0;
}
