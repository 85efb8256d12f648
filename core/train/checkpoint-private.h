/* Lamina — the checkpoint file's internals shared by checkpoint.c (the layout) and
 * checkpoint-plugins.c (/plugins, which plugins made it).  Private to core/train/. */
#pragma once

#include "hdf5/h5-util.h"

#include <lamina/lamina.h>

/* Writes /plugins for @model and the optional @opt and @sched into the open @file. */
gboolean lmn_checkpoint_write_plugins(hid_t file, LmnModel *model, LmnOptimizer *opt,
                                      LmnSchedule *sched, const LmnH5Errors *errs, GError **error);
/* lmn_checkpoint_read_plugins() on an open file. */
GPtrArray *lmn_checkpoint_read_plugins_from(hid_t file, const LmnH5Errors *errs, GError **error);
