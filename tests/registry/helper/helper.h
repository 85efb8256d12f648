/* The helper library of lamina-needs-helper.so (see helper.c). */
#pragma once

__attribute__((visibility("default"))) double lmn_test_helper_value(void);
