/* Tests of `lamina gradcheck`: it passes built-in layers (a plain layer, a classification loss
 * that gets an i32 label input by default, a regression loss, an embedding with i32 indices),
 * fails the deliberately broken out-of-tree layers loaded with --plugin-path (exit status 1,
 * the failing tensor named), and reports bad input with the usual exit statuses.
 */
#include <string.h>

#include <glib.h>

typedef struct {
    int status; /* the exit status */
    char *out;
    char *err;
} Run;

static void run_clear(Run *r)
{
    g_free(r->out);
    g_free(r->err);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Run, run_clear)

/* Runs `lamina gradcheck ARGS...` (NULL-terminated). */
static void run(Run *r, ...)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_ptr_array_add(argv, (gpointer) LMN_TEST_LAMINA);
    g_ptr_array_add(argv, (gpointer) "gradcheck");
    va_list ap;
    va_start(ap, r);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        g_ptr_array_add(argv, (gpointer) a);
    }
    va_end(ap);
    g_ptr_array_add(argv, NULL);
    g_autoptr(GError) error = NULL;
    int wait_status = 0;
    g_assert_true(g_spawn_sync(NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                               &r->out, &r->err, &wait_status, &error));
    g_assert_no_error(error);
    g_assert_true(WIFEXITED(wait_status));
    r->status = WEXITSTATUS(wait_status);
    g_test_message("exit %d\nstdout:\n%s\nstderr:\n%s", r->status, r->out, r->err);
}

/* The summary line of tensor @name: "NAME worst relative error E  PASS|FAIL". */
static char *line_of(const char *out, const char *name)
{
    g_auto(GStrv) lines = g_strsplit(out, "\n", -1);
    for (guint i = 0; lines[i] != NULL; i++) {
        if (g_str_has_prefix(lines[i], name) && strstr(lines[i], "worst relative error")) {
            return g_strdup(lines[i]);
        }
    }
    g_error("no summary line for '%s' in:\n%s", name, out);
    return NULL;
}

static void assert_line(const char *out, const char *name, const char *verdict)
{
    g_autofree char *line = line_of(out, name);
    g_assert_true(g_str_has_suffix(line, verdict));
}

static void test_builtin_passes(void)
{
    g_auto(Run) r;
    run(&r, "dense", "--set", "units=3", NULL);
    g_assert_cmpint(r.status, ==, 0);
    assert_line(r.out, "input 0", "PASS");
    assert_line(r.out, "weight", "PASS");
    assert_line(r.out, "bias", "PASS");
    g_assert_nonnull(strstr(r.out, "batch 4"));
    g_assert_nonnull(strstr(r.out, "f32 [8]"));
    g_assert_true(g_str_has_prefix(strstr(r.out, "\nPASS: ") + 1, "PASS: worst relative error"));
    g_assert_null(strstr(r.out, "FAIL"));
}

static void test_options(void)
{
    g_auto(Run) r;
    run(&r, "concat", "--set", "axis=1", "--input", "2,3", "--input", "[2, 5]", "--batch", "2",
        "--tolerance", "0.001", "--seed", "7", NULL);
    g_assert_cmpint(r.status, ==, 0);
    g_assert_nonnull(strstr(r.out, "batch 2"));
    g_assert_nonnull(strstr(r.out, "f32 [2, 3], f32 [2, 5]"));
    assert_line(r.out, "input 1", "PASS");
}

static void test_losses_default_targets(void)
{
    /* A classification loss gets an i32 label per sample ... */
    g_auto(Run) r;
    run(&r, "softmax_cross_entropy", "--set", "label_smoothing=0.1", NULL);
    g_assert_cmpint(r.status, ==, 0);
    g_assert_nonnull(strstr(r.out, "f32 [8], i32 []"));
    assert_line(r.out, "input 0", "PASS");
    g_assert_null(strstr(r.out, "input 1"));

    /* ... a regression loss an f32 target like its prediction, whose gradient is checked too. */
    g_auto(Run) m;
    run(&m, "mse", NULL);
    g_assert_cmpint(m.status, ==, 0);
    g_assert_nonnull(strstr(m.out, "f32 [8], f32 [8]"));
    assert_line(m.out, "input 1", "PASS");
}

static void test_integer_inputs(void)
{
    g_auto(Run) r;
    run(&r, "embedding", "--set", "num_embeddings=5", "--set", "embedding_dim=3", "--input",
        "i32:6", "--num-classes", "5", NULL);
    g_assert_cmpint(r.status, ==, 0);
    g_assert_nonnull(strstr(r.out, "i32 [6]"));
    assert_line(r.out, "weight", "PASS");
}

/* "lamina gradcheck works on an out-of-tree layer": and it fails the broken ones. */
static void test_out_of_tree_broken(void)
{
    g_auto(Run) r;
    run(&r, "test_broken_input", "--plugin-path", LMN_TEST_BROKEN_DIR, NULL);
    g_assert_cmpint(r.status, ==, 1);
    assert_line(r.out, "input 0", "FAIL");
    g_assert_nonnull(strstr(r.out, "lamina-test-broken-layers"));
    g_assert_nonnull(strstr(r.out, "\nFAIL: "));

    /* The failure is reported where it is: the input gradient passes, the bias fails. */
    g_auto(Run) p;
    run(&p, "test_broken_param", "--plugin-path", LMN_TEST_BROKEN_DIR, NULL);
    g_assert_cmpint(p.status, ==, 1);
    assert_line(p.out, "input 0", "PASS");
    assert_line(p.out, "bias", "FAIL");

    /* Without the directory the layer is unknown. */
    g_auto(Run) u;
    run(&u, "test_broken_param", NULL);
    g_assert_cmpint(u.status, ==, 1);
    g_assert_nonnull(strstr(u.err, "test_broken_param"));
}

static void test_bad_input(void)
{
    g_auto(Run) a;
    run(&a, "dense", NULL); /* units is required */
    g_assert_cmpint(a.status, ==, 1);
    g_assert_nonnull(strstr(a.err, "lamina gradcheck"));
    g_assert_nonnull(strstr(a.err, "units"));

    g_auto(Run) b;
    run(&b, "densee", NULL);
    g_assert_cmpint(b.status, ==, 1);
    g_assert_nonnull(strstr(b.err, "dense"));

    g_auto(Run) c;
    run(&c, "relu", "--input", "3,zero", NULL);
    g_assert_cmpint(c.status, ==, 1);
    g_assert_nonnull(strstr(c.err, "--input '3,zero'"));

    g_auto(Run) d;
    run(&d, "dense", "--set", "units", NULL);
    g_assert_cmpint(d.status, ==, 1);
    g_assert_nonnull(strstr(d.err, "KEY=VALUE"));

    g_auto(Run) e;
    run(&e, "dense", "--set", "unit=3", NULL);
    g_assert_cmpint(e.status, ==, 1);
    g_assert_nonnull(strstr(e.err, "unit"));

    /* A layer that cannot take the inputs: the layer's own graph error. */
    g_auto(Run) f;
    run(&f, "add", "--input", "3", "--input", "4", NULL);
    g_assert_cmpint(f.status, ==, 1);
    g_assert_nonnull(strstr(f.err, "[4]"));

    g_auto(Run) g;
    run(&g, NULL);
    g_assert_cmpint(g.status, ==, 2);
    g_auto(Run) h;
    run(&h, "relu", "--batch", "0", NULL);
    g_assert_cmpint(h.status, ==, 2);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/layers/gradcheck-cli/builtin-passes", test_builtin_passes);
    g_test_add_func("/layers/gradcheck-cli/options", test_options);
    g_test_add_func("/layers/gradcheck-cli/losses-default-targets", test_losses_default_targets);
    g_test_add_func("/layers/gradcheck-cli/integer-inputs", test_integer_inputs);
    g_test_add_func("/layers/gradcheck-cli/out-of-tree-broken", test_out_of_tree_broken);
    g_test_add_func("/layers/gradcheck-cli/bad-input", test_bad_input);
    return g_test_run();
}
