/* Lamina — version and ABI numbers.
 *
 * The ABI major changes when an existing struct member or function changes meaning; the minor
 * changes when members or functions are appended.  A plugin is accepted when its abi_major equals
 * LMN_ABI_MAJOR and its abi_minor is not newer than LMN_ABI_MINOR.
 */
#pragma once

#define LMN_VERSION_STRING "0.1.0"
#define LMN_ABI_MAJOR 1
#define LMN_ABI_MINOR 6
