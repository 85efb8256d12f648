/* Lamina — error domains.
 *
 * Every fallible function takes a GError ** and returns FALSE/NULL on failure.  Each subsystem has
 * its own domain so callers (and tests) can tell a bad plugin from a bad config from a bad file.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/**
 * LmnPluginError:
 * Why a plugin file could not be used.  Values are stable (they appear in listings and tests).
 */
typedef enum {
    LMN_PLUGIN_ERROR_OPEN = 0,           /* dlopen failed; message holds the loader's text */
    LMN_PLUGIN_ERROR_NO_ENTRY = 1,       /* lamina_plugin_query is missing or returned NULL */
    LMN_PLUGIN_ERROR_ABI_MISMATCH = 2,   /* plugin ABI a.b is not compatible with the core's x.y */
    LMN_PLUGIN_ERROR_BAD_DESCRIPTOR = 3, /* a descriptor field is missing or invalid (named) */
    LMN_PLUGIN_ERROR_DUPLICATE = 4,      /* a feature name is provided twice (both paths named) */
    LMN_PLUGIN_ERROR_INIT_FAILED = 5,    /* the plugin's own initialisation failed */
    LMN_PLUGIN_ERROR_UNSUPPORTED = 6,    /* usable code, but not on this machine (e.g. no device) */
    LMN_PLUGIN_ERROR_NOT_FOUND = 7,      /* no feature of that kind and name is registered */
    LMN_PLUGIN_ERROR_SCAN_FAILED = 8,    /* it crashed, exited or hung while being scanned */
} LmnPluginError;

/** LmnConfigError: a problem in a config file or a command-line override. */
typedef enum {
    LMN_CONFIG_ERROR_PARSE = 0,       /* the file is not valid key-file syntax */
    LMN_CONFIG_ERROR_UNKNOWN_KEY = 1, /* a key no schema declares */
    LMN_CONFIG_ERROR_INVALID = 2,     /* a value of the wrong type or outside its range */
    LMN_CONFIG_ERROR_MISSING = 3,     /* a required group or key is absent */
    LMN_CONFIG_ERROR_GRAPH = 4,       /* the layer graph is malformed (cycle, unknown input, ...) */
} LmnConfigError;

/** LmnDataError: a problem in a dataset file. */
typedef enum {
    LMN_DATA_ERROR_OPEN = 0,     /* missing or unreadable file, not HDF5 */
    LMN_DATA_ERROR_MISSING = 1,  /* a group or dataset is absent */
    LMN_DATA_ERROR_SHAPE = 2,    /* shapes disagree with each other or with the model */
    LMN_DATA_ERROR_DTYPE = 3,    /* unsupported element type */
    LMN_DATA_ERROR_VALUE = 4,    /* label out of range, NaN/Inf, ... */
    LMN_DATA_ERROR_FORMAT = 5,   /* a malformed input file for a converter (IDX, CSV, npy) */
    LMN_DATA_ERROR_WRITE = 6,    /* the output could not be written */
} LmnDataError;

/** LmnCheckpointError: a problem reading or writing a checkpoint. */
typedef enum {
    LMN_CHECKPOINT_ERROR_OPEN = 0,     /* missing, unreadable, or not HDF5 */
    LMN_CHECKPOINT_ERROR_FORMAT = 1,   /* not a Lamina checkpoint, or a newer format version */
    LMN_CHECKPOINT_ERROR_MISMATCH = 2, /* parameters missing or of the wrong shape for this model */
    LMN_CHECKPOINT_ERROR_WRITE = 3,    /* the checkpoint could not be written */
    LMN_CHECKPOINT_ERROR_OPTIMIZER = 4,  /* saved optimizer differs from the configured one */
    LMN_CHECKPOINT_ERROR_NON_FINITE = 5, /* a loaded tensor holds NaN or an infinity */
} LmnCheckpointError;

/** LmnBackendError: a problem with a compute backend or device. */
typedef enum {
    LMN_BACKEND_ERROR_NO_DEVICE = 0,   /* the requested device does not exist */
    LMN_BACKEND_ERROR_OUT_OF_MEMORY = 1,
    LMN_BACKEND_ERROR_DEVICE_LOST = 2,
    LMN_BACKEND_ERROR_UNSUPPORTED = 3, /* an op or kernel the backend cannot run */
    LMN_BACKEND_ERROR_FAILED = 4,
} LmnBackendError;

/** LmnTrainError: a problem while training. */
typedef enum {
    LMN_TRAIN_ERROR_NON_FINITE = 0, /* the loss became NaN or Inf */
    LMN_TRAIN_ERROR_INTERRUPTED = 1,
    LMN_TRAIN_ERROR_FAILED = 2,
    LMN_TRAIN_ERROR_FINISHED = 3, /* --resume of a run with nothing left to train */
} LmnTrainError;

#define LMN_PLUGIN_ERROR (lmn_plugin_error_quark())
#define LMN_CONFIG_ERROR (lmn_config_error_quark())
#define LMN_DATA_ERROR (lmn_data_error_quark())
#define LMN_CHECKPOINT_ERROR (lmn_checkpoint_error_quark())
#define LMN_BACKEND_ERROR (lmn_backend_error_quark())
#define LMN_TRAIN_ERROR (lmn_train_error_quark())

/** lmn_plugin_error_quark: the GError domain of #LmnPluginError. */
GQuark lmn_plugin_error_quark(void);
/** lmn_config_error_quark: the GError domain of #LmnConfigError. */
GQuark lmn_config_error_quark(void);
/** lmn_data_error_quark: the GError domain of #LmnDataError. */
GQuark lmn_data_error_quark(void);
/** lmn_checkpoint_error_quark: the GError domain of #LmnCheckpointError. */
GQuark lmn_checkpoint_error_quark(void);
/** lmn_backend_error_quark: the GError domain of #LmnBackendError. */
GQuark lmn_backend_error_quark(void);
/** lmn_train_error_quark: the GError domain of #LmnTrainError. */
GQuark lmn_train_error_quark(void);

G_END_DECLS
