/* gen-adding — writes the adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015) as a
 * Lamina dataset, so the LSTM example and its test need no Python.
 *
 * Each sample is a sequence of T steps with two features: a value drawn from U[0, 1) and a
 * marker, 1 at exactly two steps (one in each half of the sequence) and 0 elsewhere.  The target
 * is the sum of the two marked values.  A model must carry the first marked value across at
 * least T/2 steps: predicting the mean, 1, scores an MSE of Var(U + U) = 1/6.
 *
 * Layout (Lamina's HDF5 dataset): /train and /test, each with x float32 [N, T, 2] and y float32
 * [N, 1].  The output is deterministic for given sizes and seed (GLib's Mersenne Twister).
 *
 *   gen-adding OUTPUT [--steps T] [--train N] [--test N] [--seed S]
 */
#include <stdio.h>
#include <stdlib.h>

#include <glib.h>
#include <hdf5.h>

static gboolean write_split(hid_t file, const char *name, gint64 n, gint64 steps, GRand *rand,
                            GError **error)
{
    g_autofree float *x = g_new0(float, n * steps * 2);
    g_autofree float *y = g_new(float, n);
    const gint64 half = steps / 2;
    for (gint64 s = 0; s < n; s++) {
        float *row = x + s * steps * 2;
        for (gint64 t = 0; t < steps; t++)
            row[2 * t] = (float) g_rand_double(rand);
        gint64 a = g_rand_int_range(rand, 0, (gint32) half);
        gint64 b = g_rand_int_range(rand, (gint32) half, (gint32) steps);
        row[2 * a + 1] = 1.0f;
        row[2 * b + 1] = 1.0f;
        y[s] = row[2 * a] + row[2 * b];
    }

    hid_t group = H5Gcreate2(file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t xdims[3] = {(hsize_t) n, (hsize_t) steps, 2};
    hsize_t ydims[2] = {(hsize_t) n, 1};
    hid_t xs = H5Screate_simple(3, xdims, NULL), ys = H5Screate_simple(2, ydims, NULL);
    hid_t xd = -1, yd = -1;
    herr_t ok = -1;
    if (group >= 0 && xs >= 0 && ys >= 0) {
        xd = H5Dcreate2(group, "x", H5T_IEEE_F32LE, xs, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        yd = H5Dcreate2(group, "y", H5T_IEEE_F32LE, ys, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (xd >= 0 && yd >= 0 &&
            H5Dwrite(xd, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0 &&
            H5Dwrite(yd, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) >= 0)
            ok = 0;
    }
    if (xd >= 0)
        H5Dclose(xd);
    if (yd >= 0)
        H5Dclose(yd);
    if (xs >= 0)
        H5Sclose(xs);
    if (ys >= 0)
        H5Sclose(ys);
    if (group >= 0)
        H5Gclose(group);
    if (ok < 0) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_IO, "could not write the split /%s", name);
        return FALSE;
    }
    return TRUE;
}

int main(int argc, char **argv)
{
    gint64 steps = 50, n_train = 10000, n_test = 1000, seed = 1;
    GOptionEntry entries[] = {
        {"steps", 0, 0, G_OPTION_ARG_INT64, &steps, "sequence length T (default 50)", "T"},
        {"train", 0, 0, G_OPTION_ARG_INT64, &n_train, "training samples (default 10000)", "N"},
        {"test", 0, 0, G_OPTION_ARG_INT64, &n_test, "test samples (default 1000)", "N"},
        {"seed", 0, 0, G_OPTION_ARG_INT64, &seed, "random seed (default 1)", "S"},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("OUTPUT - write the adding problem");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        fprintf(stderr, "gen-adding: %s\n", error->message);
        return 2;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: gen-adding OUTPUT [--steps T] [--train N] [--test N] [--seed S]\n");
        return 2;
    }
    if (steps < 2 || steps > G_MAXINT32 || n_train < 1 || n_test < 1 ||
        n_train * steps > G_MAXINT32 || n_test * steps > G_MAXINT32) {
        fprintf(stderr, "gen-adding: need --steps >= 2 and --train, --test >= 1 (got T = %"
                G_GINT64_FORMAT ", train %" G_GINT64_FORMAT ", test %" G_GINT64_FORMAT ")\n",
                steps, n_train, n_test);
        return 2;
    }

    /* HDF5's own error stack printing would duplicate our message. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fcreate(argv[1], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) {
        fprintf(stderr, "gen-adding: cannot create %s\n", argv[1]);
        return 1;
    }
    GRand *rand = g_rand_new_with_seed((guint32) seed);
    gboolean ok = write_split(file, "train", n_train, steps, rand, &error) &&
                  write_split(file, "test", n_test, steps, rand, &error);
    g_rand_free(rand);
    if (H5Fclose(file) < 0 && ok) {
        g_set_error(&error, G_FILE_ERROR, G_FILE_ERROR_IO, "could not close the file");
        ok = FALSE;
    }
    if (!ok) {
        fprintf(stderr, "gen-adding: %s: %s\n", argv[1], error->message);
        return 1;
    }
    printf("wrote %s: /train %" G_GINT64_FORMAT " and /test %" G_GINT64_FORMAT
           " sequences of %" G_GINT64_FORMAT " steps\n", argv[1], n_train, n_test, steps);
    return 0;
}
