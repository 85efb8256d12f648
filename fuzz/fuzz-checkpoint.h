/* Lamina — the checkpoint fuzz target (fuzz-checkpoint.c). */
#pragma once

#include <lamina/lamina.h>

/*
 * Mutates a valid checkpoint of a small model with the HDF5 API, as the bytes @data direct
 * (attributes and datasets deleted, retyped, reshaped, refilled with the bytes' values), and
 * reads it back with every checkpoint reader.  Structure-aware: every file is valid HDF5, so
 * the findings are Lamina's, not crashes inside libhdf5 on corrupt bytes.
 */
void fuzz_checkpoint_one(LmnRegistry *registry, const guint8 *data, size_t size);
