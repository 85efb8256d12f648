/* Fine-tuning with `--init CKPT --init-partial`: a model with the trunk of a trained one and a
 * new head starts from the trained trunk byte for byte, its new head exactly as its own
 * initializer makes it without --init, and a line per tensor that was not loaded says why.  Plain
 * --init stays strict; a file that fits nothing is an error; non-finite values are still refused;
 * the --init record is in every checkpoint, shown by `lamina inspect`, and kept by --resume,
 * which stays bit-exact.
 *
 * The initial weights are observed through one step at lr = 0: SGD adds -0 * grad to each value,
 * which leaves every finite float as it was. */
#include "e2e-util.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

typedef struct {
    char *dir;
    char *data;
    char *a_final; /* model A (fc1 + fc_head), trained one epoch */
} Fixture;

/* Model A: the trunk fc1 and the head fc_head.  @extra are more layer groups after act1, @head
 * the head's name. */
static const char *config_template = "[model]\n"
                                     "input = 2\n"
                                     "[layer fc1]\n"
                                     "type = dense\n"
                                     "units = 16\n"
                                     "[layer act1]\n"
                                     "type = tanh\n"
                                     "%s"
                                     "[layer %s]\n"
                                     "type = dense\n"
                                     "units = 4\n"
                                     "[layer loss]\n"
                                     "type = softmax_cross_entropy\n"
                                     "[optimizer]\n"
                                     "type = sgd\n"
                                     "lr = %s\n"
                                     "momentum = %s\n"
                                     "[train]\n"
                                     "epochs = %s\n"
                                     "batch_size = 32\n"
                                     "seed = %s\n"
                                     "backend = cpu\n"
                                     "shuffle = true\n"
                                     "[data]\n"
                                     "train = %s:/train\n";

static char *write_config(Fixture *fx, const char *name, const char *extra, const char *head,
                          const char *lr, const char *momentum, const char *epochs,
                          const char *seed)
{
    g_autofree char *text =
        g_strdup_printf(config_template, extra, head, lr, momentum, epochs, seed, fx->data);
    g_autofree char *file = g_strdup_printf("%s.ini", name);
    char *path = g_build_filename(fx->dir, file, NULL);
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    return path;
}

static char *path_in(Fixture *fx, const char *a, const char *b)
{
    return g_build_filename(fx->dir, a, b, NULL);
}

static void fixture_setup(Fixture *fx, gconstpointer unused)
{
    fx->dir = g_dir_make_tmp("lamina-init-partial-XXXXXX", NULL);
    g_assert_nonnull(fx->dir);
    fx->data = g_build_filename(fx->dir, "blobs.h5", NULL);
    e2e_write_blobs(fx->data, "/train", 512, 1, FALSE);
    g_autofree char *cfg = write_config(fx, "a", "", "fc_head", "0.1", "0.9", "1", "3");
    g_autofree char *out = path_in(fx, "a", NULL);
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", cfg, "--output", out, "--quiet", NULL), ==,
                    0);
    fx->a_final = path_in(fx, "a", "final.h5");
}

static void fixture_teardown(Fixture *fx, gconstpointer unused)
{
    e2e_remove_tree(fx->dir);
    g_free(fx->dir);
    g_free(fx->data);
    g_free(fx->a_final);
}

static void assert_contains(const char *text, const char *needle)
{
    if (!text || !strstr(text, needle))
        g_error("expected '%s' in:\n%s", needle, text ? text : "(null)");
}

/* Asserts that dataset @name is byte for byte the same in both files. */
static void assert_same_dataset(const char *a, const char *b, const char *name)
{
    gsize na = 0, nb = 0;
    g_autofree float *va = e2e_read_floats(a, name, &na);
    g_autofree float *vb = e2e_read_floats(b, name, &nb);
    g_assert_nonnull(va);
    g_assert_nonnull(vb);
    g_assert_cmpuint(na, ==, nb);
    g_assert_cmpmem(va, na * sizeof(float), vb, nb * sizeof(float));
}

static gboolean same_dataset(const char *a, const char *b, const char *name)
{
    gsize na = 0, nb = 0;
    g_autofree float *va = e2e_read_floats(a, name, &na);
    g_autofree float *vb = e2e_read_floats(b, name, &nb);
    return va && vb && na == nb && memcmp(va, vb, na * sizeof(float)) == 0;
}

/* A new head under another name: strict --init fails naming it; --init-partial loads the trunk
 * as A trained it and leaves the head as B's initializer makes it. */
static void test_new_head(Fixture *fx, gconstpointer unused)
{
    g_autofree char *cfg = write_config(fx, "b", "", "fc_new", "0", "0", "1", "3");
    g_autofree char *strict = path_in(fx, "strict", NULL);
    g_autofree char *err = NULL;
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "train", cfg, "--output", strict, "--init",
                                   fx->a_final, "--quiet", NULL),
                    ==, 1);
    assert_contains(err, fx->a_final);
    assert_contains(err, "/model/fc_new/weight is missing");
    assert_contains(err, "add --init-partial");

    g_autofree char *out = path_in(fx, "partial", NULL);
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "train", cfg, "--output", out, "--init", fx->a_final,
                                   "--init-partial", "--max-steps", "1", "--quiet", NULL),
                    ==, 0);
    g_autofree char *line_w = g_strdup_printf("init: fc_new.weight not loaded (missing in %s); "
                                              "kept its he_uniform initialisation\n",
                                              fx->a_final);
    g_autofree char *line_b = g_strdup_printf("init: fc_new.bias not loaded (missing in %s); "
                                              "kept its ",
                                              fx->a_final);
    assert_contains(err, line_w);
    assert_contains(err, line_b);
    g_autofree char *summary =
        g_strdup_printf("init: loaded 2 of 4 tensors from %s\n", fx->a_final);
    assert_contains(err, summary);

    /* The oracle for the trunk is A's file; for the head, B trained without --init. */
    g_autofree char *fresh = path_in(fx, "fresh", NULL);
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", cfg, "--output", fresh, "--max-steps", "1",
                                   "--quiet", NULL),
                    ==, 0);
    g_autofree char *b_final = path_in(fx, "partial", "final.h5");
    g_autofree char *fresh_final = path_in(fx, "fresh", "final.h5");
    assert_same_dataset(fx->a_final, b_final, "/model/fc1/weight");
    assert_same_dataset(fx->a_final, b_final, "/model/fc1/bias");
    assert_same_dataset(fresh_final, b_final, "/model/fc_new/weight");
    assert_same_dataset(fresh_final, b_final, "/model/fc_new/bias");
    /* The trunk did change in training, so its equality to A's is not that of two fresh ones. */
    g_assert_false(same_dataset(fresh_final, b_final, "/model/fc1/weight"));

    g_assert_cmpint(e2e_read_attr_int(b_final, "/train", "init_partial"), ==, 1);
    g_assert_cmpint(e2e_read_attr_int(b_final, "/train", "init_loaded"), ==, 2);
    g_assert_cmpint(e2e_read_attr_int(b_final, "/train", "init_skipped"), ==, 2);
}

/* A head of another shape (and a layer the file lacks): both reasons, with both shapes; a tensor
 * of a partly matching layer (fc_head.bias) is still loaded. */
static void test_shape_reason(Fixture *fx, gconstpointer unused)
{
    const char *extra = "[layer fc_mid]\ntype = dense\nunits = 8\n[layer act2]\ntype = tanh\n";
    g_autofree char *cfg = write_config(fx, "c", extra, "fc_head", "0", "0", "1", "3");
    g_autofree char *out = path_in(fx, "shape", NULL);
    g_autofree char *err = NULL;
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "train", cfg, "--output", out, "--init", fx->a_final,
                                   "--init-partial", "--max-steps", "1", "--quiet", NULL),
                    ==, 0);
    g_autofree char *shape = g_strdup_printf("init: fc_head.weight not loaded (shape [4, 16] in %s "
                                             "vs [4, 8] in this model); kept its he_uniform "
                                             "initialisation\n",
                                             fx->a_final);
    assert_contains(err, shape);
    g_autofree char *missing =
        g_strdup_printf("init: fc_mid.weight not loaded (missing in %s)", fx->a_final);
    assert_contains(err, missing);
    g_assert_null(strstr(err, "fc_head.bias not loaded"));
    g_assert_null(strstr(err, "fc1.weight not loaded"));
    g_autofree char *fin = path_in(fx, "shape", "final.h5");
    assert_same_dataset(fx->a_final, fin, "/model/fc1/weight");
    assert_same_dataset(fx->a_final, fin, "/model/fc_head/bias");
    g_assert_cmpint(e2e_read_attr_int(fin, "/train", "init_loaded"), ==, 3);
    g_assert_cmpint(e2e_read_attr_int(fin, "/train", "init_skipped"), ==, 3);
    /* `lamina inspect` shows the record with the skipped tensors' names. */
    g_autofree char *text = NULL;
    g_assert_cmpint(e2e_run_lamina(&text, NULL, "inspect", fin, "--no-config", NULL), ==, 0);
    g_autofree char *from = g_strdup_printf("init_from = %s\n", fx->a_final);
    assert_contains(text, from);
    assert_contains(text, "init_partial = 1\n");
    assert_contains(text, "init_skipped_names = fc_mid.weight, fc_mid.bias, fc_head.weight\n");
    assert_contains(text, "with --init --init-partial: 3 tensors loaded, 3 kept their "
                          "initialisation: fc_mid.weight, fc_mid.bias, fc_head.weight)");
}

/* Nothing fits: an error naming the file, what it holds and what the model has. */
static void test_nothing_fits(Fixture *fx, gconstpointer unused)
{
    g_autofree char *text = g_strdup_printf("[model]\ninput = 2\n[layer other]\ntype = dense\n"
                                            "units = 4\n[layer loss]\n"
                                            "type = softmax_cross_entropy\n[optimizer]\n"
                                            "type = sgd\n[train]\nbackend = cpu\n[data]\n"
                                            "train = %s:/train\n",
                                            fx->data);
    g_autofree char *cfg = g_build_filename(fx->dir, "other.ini", NULL);
    g_assert_true(g_file_set_contents(cfg, text, -1, NULL));
    g_autofree char *out = path_in(fx, "nothing", NULL);
    g_autofree char *err = NULL;
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "train", cfg, "--output", out, "--init", fx->a_final,
                                   "--init-partial", "--quiet", NULL),
                    ==, 1);
    g_autofree char *head = g_strdup_printf("%s: nothing in it fits this model", fx->a_final);
    assert_contains(err, head);
    assert_contains(err, "it holds fc1.bias [16], fc1.weight [16, 2], fc_head.bias [4], "
                         "fc_head.weight [4, 16] under /model");
    assert_contains(err, "the model has other.weight [4, 2], other.bias [4]");
    g_autofree char *fin = path_in(fx, "nothing", "final.h5");
    g_assert_false(g_file_test(fin, G_FILE_TEST_EXISTS));
}

/* Writes a weights file (another tool's: no Lamina attributes) with A's trunk, @nan_in naming
 * the tensor whose first value becomes NaN, plus a NaN-only tensor of a layer no model here
 * has, which a partial load must not read. */
static char *write_nan_weights(Fixture *fx, const char *nan_in)
{
    char *path = g_build_filename(fx->dir, "nan.h5", NULL);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    static const char *const names[] = {"/model/fc1/weight", "/model/fc1/bias", NULL};
    for (guint i = 0; names[i]; i++) {
        gsize n = 0;
        g_autofree float *v = e2e_read_floats(fx->a_final, names[i], &n);
        g_assert_nonnull(v);
        if (g_str_equal(names[i], nan_in))
            v[0] = NAN;
        hsize_t dims[2] = {16, 2};
        hid_t space = H5Screate_simple(i == 0 ? 2 : 1, dims, NULL);
        hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(lcpl, 1);
        hid_t ds = H5Dcreate2(f, names[i], H5T_NATIVE_FLOAT, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        g_assert_cmpint(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), >=, 0);
        H5Dclose(ds);
        H5Pclose(lcpl);
        H5Sclose(space);
    }
    hsize_t one = 1;
    float nan = NAN;
    hid_t space = H5Screate_simple(1, &one, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t ds = H5Dcreate2(f, "/model/unused/weight", H5T_NATIVE_FLOAT, space, lcpl, H5P_DEFAULT,
                          H5P_DEFAULT);
    g_assert_cmpint(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, &nan), >=, 0);
    H5Dclose(ds);
    H5Pclose(lcpl);
    H5Sclose(space);
    H5Fclose(f);
    return path;
}

/* A NaN in a loaded tensor is refused unless --allow-nonfinite; one in a tensor the model does
 * not load (/model/unused) is never read, so the clean file loads without the flag. */
static void test_nonfinite(Fixture *fx, gconstpointer unused)
{
    g_autofree char *cfg = write_config(fx, "b", "", "fc_new", "0", "0", "1", "3");
    g_autofree char *clean = write_nan_weights(fx, "none");
    g_autofree char *out = path_in(fx, "clean", NULL);
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", cfg, "--output", out, "--init", clean,
                                   "--init-partial", "--max-steps", "1", "--quiet", NULL),
                    ==, 0);
    g_autofree char *nan = write_nan_weights(fx, "/model/fc1/bias");
    g_autofree char *refused = path_in(fx, "refused", NULL);
    g_autofree char *err = NULL;
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "train", cfg, "--output", refused, "--init", nan,
                                   "--init-partial", "--max-steps", "1", "--quiet", NULL),
                    ==, 1);
    g_autofree char *where = g_strdup_printf("%s:/model/fc1/bias", nan);
    assert_contains(err, where);
    assert_contains(err, "1 of 16 values are not finite");
    assert_contains(err, "--allow-nonfinite");
    /* Allowed, the NaN is loaded: the first step's loss is NaN and the loss guard stops the
     * run, which shows the weights were taken. */
    g_autofree char *allowed = path_in(fx, "allowed", NULL);
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "train", cfg, "--output", allowed, "--init", nan,
                                   "--init-partial", "--allow-nonfinite", "--max-steps", "1",
                                   "--quiet", NULL),
                    ==, 1);
    g_autofree char *loaded = g_strdup_printf("init: loaded 2 of 4 tensors from %s\n", nan);
    assert_contains(err, loaded);
    assert_contains(err, "step 1: the training loss is nan");
    g_assert_null(strstr(err, "values are not finite"));
}

/* Strict --init records itself too; --init-partial without --init is a usage error. */
static void test_strict_record(Fixture *fx, gconstpointer unused)
{
    g_autofree char *cfg = write_config(fx, "a2", "", "fc_head", "0", "0", "1", "3");
    g_autofree char *out = path_in(fx, "strict", NULL);
    g_autofree char *err = NULL;
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "train", cfg, "--output", out, "--init", fx->a_final,
                                   "--max-steps", "1", "--quiet", NULL),
                    ==, 0);
    g_assert_null(strstr(err, "init:"));
    g_autofree char *fin = path_in(fx, "strict", "final.h5");
    e2e_assert_same_floats(fx->a_final, fin, "/model");
    g_assert_cmpint(e2e_read_attr_int(fin, "/train", "init_partial"), ==, 0);
    g_assert_cmpint(e2e_read_attr_int(fin, "/train", "init_loaded"), ==, 4);
    g_assert_cmpint(e2e_read_attr_int(fin, "/train", "init_skipped"), ==, 0);
    /* A run without --init writes no record. */
    g_autofree char *a_text = NULL;
    g_assert_cmpint(e2e_run_lamina(&a_text, NULL, "inspect", fx->a_final, NULL), ==, 0);
    g_assert_null(strstr(a_text, "init_from"));
    g_autofree char *usage = NULL;
    g_assert_cmpint(
        e2e_run_lamina(NULL, &usage, "train", cfg, "--output", out, "--init-partial", NULL), ==, 2);
    assert_contains(usage, "--init-partial needs --init");
}

/* A fine-tuning run stopped mid-epoch and resumed ends bit for bit as one run straight through,
 * keeps the --init record, and does not read the --init file again (it is gone by then). */
static void test_resume(Fixture *fx, gconstpointer unused)
{
    g_autofree char *cfg = write_config(fx, "ft", "", "fc_new", "0.05", "0.9", "2", "3");
    g_autofree char *straight = path_in(fx, "straight", NULL);
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", cfg, "--output", straight, "--init",
                                   fx->a_final, "--init-partial", "--quiet", NULL),
                    ==, 0);
    g_autofree char *part = path_in(fx, "part", NULL);
    g_assert_cmpint(e2e_run_lamina(NULL, NULL, "train", cfg, "--output", part, "--init",
                                   fx->a_final, "--init-partial", "--max-steps", "21", "--quiet",
                                   NULL),
                    ==, 0);
    g_autofree char *part_final = path_in(fx, "part", "final.h5");
    g_assert_cmpint(e2e_read_attr_int(part_final, "/train", "step"), ==, 21);
    g_autofree char *moved = path_in(fx, "a-moved.h5", NULL);
    g_assert_cmpint(g_rename(fx->a_final, moved), ==, 0);
    g_autofree char *resumed = path_in(fx, "resumed", NULL);
    g_autofree char *err = NULL;
    g_assert_cmpint(e2e_run_lamina(NULL, &err, "train", cfg, "--output", resumed, "--resume",
                                   part_final, "--max-steps", "0", "--quiet", NULL),
                    ==, 0);
    g_assert_null(strstr(err, "init:"));
    g_autofree char *a = path_in(fx, "straight", "final.h5");
    g_autofree char *b = path_in(fx, "resumed", "final.h5");
    e2e_assert_same_floats(a, b, "/model");
    e2e_assert_same_floats(a, b, "/optimizer/state");
    g_assert_cmpint(e2e_read_attr_int(b, "/train", "step"), ==,
                    e2e_read_attr_int(a, "/train", "step"));
    static const char *const attrs[] = {"init_partial", "init_loaded", "init_skipped", NULL};
    for (guint i = 0; attrs[i]; i++)
        g_assert_cmpint(e2e_read_attr_int(b, "/train", attrs[i]), ==,
                        e2e_read_attr_int(a, "/train", attrs[i]));
    g_autofree char *text = NULL;
    g_assert_cmpint(e2e_run_lamina(&text, NULL, "inspect", b, "--no-config", NULL), ==, 0);
    g_autofree char *from = g_strdup_printf("init_from = %s\n", fx->a_final);
    assert_contains(text, from);
    assert_contains(text, "init_skipped_names = fc_new.weight, fc_new.bias\n");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/e2e/init-partial/new-head", Fixture, NULL, fixture_setup, test_new_head,
               fixture_teardown);
    g_test_add("/e2e/init-partial/shape-reason", Fixture, NULL, fixture_setup, test_shape_reason,
               fixture_teardown);
    g_test_add("/e2e/init-partial/nothing-fits", Fixture, NULL, fixture_setup, test_nothing_fits,
               fixture_teardown);
    g_test_add("/e2e/init-partial/nonfinite", Fixture, NULL, fixture_setup, test_nonfinite,
               fixture_teardown);
    g_test_add("/e2e/init-partial/strict-record", Fixture, NULL, fixture_setup, test_strict_record,
               fixture_teardown);
    g_test_add("/e2e/init-partial/resume", Fixture, NULL, fixture_setup, test_resume,
               fixture_teardown);
    return g_test_run();
}
