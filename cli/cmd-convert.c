/* Lamina — `lamina convert`: other data formats to Lamina's HDF5 dataset layout. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char usage_line[] =
    "usage: lamina convert idx IMAGES LABELS --output FILE:/split [--overwrite]\n"
    "       lamina convert csv FILE.csv --label-column N|NAME [--header] --output FILE:/split\n"
    "       lamina convert npy X.npy Y.npy --output FILE:/split [--normalize]";

/* The formats `convert` understands, for the usage error of an unknown one. */
static const char *const formats[] = {"idx", "csv", "npy", NULL};

static int usage_error(const char *format, ...) G_GNUC_PRINTF(1, 2);

static int usage_error(const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    g_autofree char *msg = g_strdup_vprintf(format, ap);
    va_end(ap);
    fprintf(stderr, "lamina convert: %s\n%s\n(see lamina convert --help)\n", msg, usage_line);
    return 2;
}

/* The format and its inputs as the command line gives them.  Returns: 0, or the exit status 2
 * after a usage message. */
static int check_arguments(int argc, char **argv, const char *label_column, const char *output)
{
    if (argc < 2)
        return usage_error("missing the input format (supported: idx, csv, npy)");
    const char *format = argv[1];
    if (!g_strv_contains(formats, format)) {
        const char *hint = lmn_suggest(format, formats);
        return usage_error("unknown input format '%s'%s%s%s; supported: idx, csv, npy", format,
                           hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
    }
    gboolean is_csv = strcmp(format, "csv") == 0;
    if (is_csv && argc != 3)
        return usage_error("csv takes one file (got %d)", argc - 2);
    if (!is_csv && argc != 4)
        return usage_error("%s takes two files, %s (got %d)", format,
                           strcmp(format, "idx") == 0 ? "IMAGES and LABELS" : "X.npy and Y.npy",
                           argc - 2);
    if (is_csv && label_column == NULL)
        return usage_error("csv needs --label-column N|NAME");
    if (output == NULL)
        return usage_error("--output FILE:/split is required");
    return 0;
}

/* Runs the converter of the format argv[1] on the inputs after it. */
static gboolean convert(char **argv, const char *label_column, gboolean header, const char *output,
                        gboolean overwrite, gboolean normalize, GError **error)
{
    const char *format = argv[1];
    if (strcmp(format, "csv") == 0)
        return lmn_convert_csv(argv[2], label_column, header, output, overwrite, normalize, error);
    if (strcmp(format, "npy") == 0)
        return lmn_convert_npy(argv[2], argv[3], output, overwrite, normalize, error);
    return lmn_convert_idx(argv[2], argv[3], output, overwrite, error);
}

int lmn_cli_convert(int argc, char **argv)
{
    g_autofree char *output = NULL;
    gboolean overwrite = FALSE;
    gboolean header = FALSE;
    gboolean normalize = FALSE;
    g_autofree char *label_column = NULL;
    g_autofree char *classes = NULL;
    GOptionEntry entries[] = {
        {"label-column", 0, 0, G_OPTION_ARG_STRING, &label_column,
         "csv: the label's column, a 0-based index (negative from the end) or a header name",
         "N|NAME"},
        {"header", 0, 0, G_OPTION_ARG_NONE, &header, "csv: the first line names the columns", NULL},
        {"normalize", 0, 0, G_OPTION_ARG_NONE, &normalize,
         "csv, npy: store the per-feature mean/std as x's mean and std attributes, so reading "
         "normalises",
         NULL},
        {"output", 'o', 0, G_OPTION_ARG_FILENAME, &output,
         "the split to write, as FILE:/split (FILE is created or the split is added to it)",
         "FILE:/split"},
        {"classes", 0, 0, G_OPTION_ARG_STRING, &classes,
         "record the class names, comma-separated, name i for label i, as y's 'classes' "
         "attribute (lamina predict prints them)",
         "NAME,NAME,..."},
        {"overwrite", 0, 0, G_OPTION_ARG_NONE, &overwrite,
         "replace the split when FILE already has one of that name", NULL},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("FORMAT INPUT... --output FILE:/split");
    g_option_context_set_summary(
        ctx, "Converts a data set to Lamina's HDF5 layout: x [N, sample shape...] and y [N].\n\n"
             "Formats:\n"
             "  idx IMAGES LABELS   MNIST-style IDX files (idx3 unsigned-byte images and idx1\n"
             "                      labels), plain or gzip-compressed; x is stored as uint8\n"
             "                      [N, 1, rows, cols] with scale = 1/255, y as uint8 [N].\n"
             "  csv FILE            numbers separated by commas, one sample per line; the\n"
             "                      --label-column holds integer labels, the rest become\n"
             "                      float32 x [N, F], y int32 [N].\n"
             "  npy X Y             NumPy .npy arrays (float32/64, uint8, int32/64, C order).\n\n"
             "csv and npy store the per-feature (per-channel) mean and std of x as the\n"
             "attributes stats_mean and stats_std, which reading does not apply; with\n"
             "--normalize they are also stored as mean and std, which reading applies.\n\n"
             "The file is written under a temporary name and renamed, so a failure never\n"
             "damages an existing file; its other splits are kept.");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        return usage_error("%s", error->message);
    }

    int usage = check_arguments(argc, argv, label_column, output);
    if (usage != 0)
        return usage;
    g_autofree char *file = NULL;
    g_autofree char *split = NULL;
    if (!lmn_split_spec(output, &file, &split, &error))
        return usage_error("--output: %s", error->message);
    g_auto(GStrv) names = classes ? g_strsplit(classes, ",", -1) : NULL;
    if (names && (names[0] == NULL || g_strv_contains((const char *const *) names, "")))
        return usage_error("--classes: an empty class name in '%s'", classes);
    if (!convert(argv, label_column, header, output, overwrite, normalize, &error) ||
        (names && !lmn_dataset_set_classes(output, (const char *const *) names, &error)))
        return lmn_cli_fail("convert", error);
    /* Read the result back: it proves the file opens, and gives the numbers to report. */
    LmnDataset *ds = lmn_dataset_open(output, &error);
    if (ds == NULL)
        return lmn_cli_fail("convert", error);
    g_autofree char *shape = lmn_shape_to_string(lmn_dataset_get_sample_shape(ds));
    printf("wrote %" G_GINT64_FORMAT " samples %s to %s\n", lmn_dataset_get_length(ds), shape,
           output);
    lmn_dataset_free(ds);
    return 0;
}
