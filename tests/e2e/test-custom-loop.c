/* A custom training loop through the public API against `lamina train` (the oracle): the same
 * config, seed and data, trained by a loop of lmn_batch_reader_next, lmn_model_forward,
 * lmn_model_backward and lmn_optimizer_step on an optimizer from lmn_optimizer_new_for_model
 * (hyperparameters from the config's [optimizer], a frozen layer and an lr_mult range), must end
 * with the trainer's parameters and optimizer state bit for bit.  The loop stops half-way, saves
 * a checkpoint with lmn_checkpoint_save, rebuilds everything and restores it with
 * lmn_checkpoint_load_training, so saving and loading the optimizer's state is covered too. */
#include "e2e-util.h"

#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

static LmnRegistry *registry;
static LmnBackend *cpu;

#define EPOCHS 4
#define BATCH 16
#define SEED 7

static char *config_text(const char *data)
{
    return g_strdup_printf("[model]\ninput = 2\n"
                           "[layer fc1]\ntype = dense\nunits = 8\ntrainable = false\n"
                           "[layer act1]\ntype = tanh\n"
                           "[layer fc2]\ntype = dense\nunits = 8\nlr_mult = 0.5\n"
                           "[layer act2]\ntype = relu\n"
                           "[layer fc3]\ntype = dense\nunits = 4\n"
                           "[layer loss]\ntype = softmax_cross_entropy\n"
                           "[optimizer]\ntype = adam\nlr = 0.01\nbeta1 = 0.5\n"
                           "[train]\nepochs = %d\nbatch_size = %d\nseed = %d\nshuffle = true\n"
                           "backend = cpu\n"
                           "[data]\ntrain = %s:/train\n",
                           EPOCHS, BATCH, SEED, data);
}

typedef struct {
    LmnConfig *cfg;
    LmnModel *model;
    LmnOptimizer *opt;
} Loop;

static void loop_build(Loop *l, const char *text)
{
    g_autoptr(GError) error = NULL;
    l->cfg = lmn_config_new_from_data(text, -1, "custom-loop.ini", &error);
    g_assert_no_error(error);
    g_assert_true(lmn_config_validate(l->cfg, registry, &error));
    LmnTensorInfo target = {.dtype = LMN_DTYPE_I32, .shape = lmn_shape_make(0)};
    l->model = lmn_model_new(l->cfg, registry, cpu, &target, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_init_params(l->model, SEED, &error));
    g_assert_true(lmn_model_prepare(l->model, BATCH, &error));
    /* type and hyperparameters from the config's [optimizer] group */
    l->opt = lmn_optimizer_new_for_model(registry, NULL, NULL, l->model, l->cfg, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(lmn_optimizer_get_type_name(l->opt), ==, "adam");
}

static void loop_free(Loop *l)
{
    lmn_optimizer_free(l->opt);
    lmn_model_free(l->model);
    lmn_config_free(l->cfg);
}

/* Trains epochs [@first, @last) the way the trainer orders its steps. */
static void loop_epochs(Loop *l, LmnDataset *ds, gint64 first, gint64 last)
{
    g_autoptr(GError) error = NULL;
    LmnBatchReaderOptions ro = {.batch_size = BATCH, .seed = SEED, .shuffle = TRUE};
    g_autoptr(LmnBatchReader) reader = lmn_batch_reader_new(ds, &ro, &error);
    g_assert_no_error(error);
    double lr = lmn_params_get_float(lmn_config_get_optimizer_params(l->cfg), "lr");
    for (gint64 epoch = first; epoch < last; epoch++) {
        lmn_batch_reader_seek(reader, epoch, 0);
        float x[BATCH * 2];
        gint32 y[BATCH];
        gint64 m;
        while ((m = lmn_batch_reader_next(reader, x, y, NULL, &error)) > 0) {
            LmnTensor *xt, *yt;
            lmn_model_set_batch(l->model, m, &xt, &yt);
            g_assert_true(lmn_tensor_write(xt, x, lmn_tensor_nbytes(xt), &error));
            g_assert_true(lmn_tensor_write(yt, y, lmn_tensor_nbytes(yt), &error));
            guint64 step = (guint64) lmn_optimizer_get_step(l->opt);
            lmn_model_forward(l->model, TRUE, step, SEED);
            lmn_model_backward(l->model, step, SEED);
            lmn_optimizer_step(l->opt, lr);
        }
        g_assert_no_error(error);
    }
}

static void test_same_as_trainer(void)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *dir = g_dir_make_tmp("lamina-custom-loop-XXXXXX", NULL);
    g_autofree char *data = g_build_filename(dir, "blobs.h5", NULL);
    /* 100 samples: the last batch of each epoch is short (100 = 6 * 16 + 4) */
    e2e_write_blobs(data, "/train", 100, 3, FALSE);
    g_autofree char *text = config_text(data);
    g_autofree char *ini = g_build_filename(dir, "custom-loop.ini", NULL);
    g_assert_true(g_file_set_contents(ini, text, -1, NULL));

    /* the oracle */
    g_autofree char *out = g_build_filename(dir, "trained", NULL);
    g_autofree char *err = NULL;
    int rc = e2e_run_lamina(NULL, &err, "train", ini, "--output", out, "--quiet", NULL);
    if (rc != 0)
        g_printerr("%s", err);
    g_assert_cmpint(rc, ==, 0);
    g_autofree char *final = g_build_filename(out, "final.h5", NULL);

    /* the custom loop, interrupted by a checkpoint after half the epochs */
    g_autofree char *spec = g_strdup_printf("%s:/train", data);
    LmnDataset *ds = lmn_dataset_open(spec, &error);
    g_assert_no_error(error);
    g_autofree char *half = g_build_filename(dir, "half.h5", NULL);
    Loop l;
    loop_build(&l, text);
    loop_epochs(&l, ds, 0, EPOCHS / 2);
    gint64 steps_half = lmn_optimizer_get_step(l.opt);
    /* lmn_checkpoint_load_training needs the loop's counters (/train) as well */
    LmnTrainState saved = {.epoch = EPOCHS / 2,
                           .step = steps_half,
                           .seed = SEED,
                           .best_metric = NAN,
                           .best_epoch = -1};
    g_assert_true(lmn_checkpoint_save(half, text, l.model, l.opt, NULL, &saved, &error));
    g_assert_no_error(error);
    loop_free(&l);

    loop_build(&l, text);
    g_assert_true(lmn_checkpoint_load_weights(half, l.model, &error));
    LmnTrainState state = {.best_metric = 0, .best_epoch = -1};
    gboolean loaded = lmn_checkpoint_load_training(half, l.model, l.opt, NULL, &state, FALSE,
                                                   LMN_CHECKPOINT_LOAD_REQUIRE_FINITE, &error);
    g_assert_no_error(error);
    g_assert_true(loaded);
    lmn_train_state_clear_init(&state);
    g_assert_cmpint(lmn_optimizer_get_step(l.opt), ==, steps_half);
    g_assert_cmpint(state.epoch, ==, EPOCHS / 2);
    g_assert_cmpint(state.step, ==, steps_half);
    loop_epochs(&l, ds, EPOCHS / 2, EPOCHS);
    g_assert_cmpint(lmn_optimizer_get_step(l.opt), ==, EPOCHS * 7);
    g_autofree char *mine = g_build_filename(dir, "mine.h5", NULL);
    g_assert_true(lmn_checkpoint_save(mine, text, l.model, l.opt, NULL, NULL, &error));
    g_assert_no_error(error);
    loop_free(&l);
    lmn_dataset_free(ds);

    /* The frozen layer did not move, so the ranges are in effect; then everything is equal. */
    g_autofree char *init = g_build_filename(dir, "init.h5", NULL);
    loop_build(&l, text);
    g_assert_true(lmn_checkpoint_save(init, text, l.model, NULL, NULL, NULL, &error));
    loop_free(&l);
    gsize n0 = 0, n1 = 0;
    g_autofree float *w0 = e2e_read_floats(init, "/model/fc1/weight", &n0);
    g_autofree float *w1 = e2e_read_floats(mine, "/model/fc1/weight", &n1);
    g_assert_cmpuint(n0, ==, 16);
    g_assert_cmpmem(w0, n0 * sizeof(float), w1, n1 * sizeof(float));
    g_assert_cmpint(e2e_read_attr_int(mine, "/optimizer", "step"), ==,
                    e2e_read_attr_int(final, "/optimizer", "step"));
    e2e_assert_same_floats(mine, final, "/model");
    e2e_assert_same_floats(mine, final, "/optimizer/state");
    e2e_remove_tree(dir);
}

/* An optimizer other than the config's needs its own hyperparameters. */
static void test_type_without_hyper(void)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *text = config_text("unused.h5");
    Loop l;
    loop_build(&l, text);
    LmnOptimizer *opt = lmn_optimizer_new_for_model(registry, "sgd", NULL, l.model, l.cfg, &error);
    g_assert_null(opt);
    g_assert_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID);
    g_assert_nonnull(strstr(error->message, "'sgd' needs its own hyperparameters"));
    loop_free(&l);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    LmnBackend *unused = NULL;
    e2e_open_backends(FALSE, &registry, &cpu, &unused);
    g_test_add_func("/custom-loop/same-as-trainer", test_same_as_trainer);
    g_test_add_func("/custom-loop/type-without-hyper", test_type_without_hyper);
    int rc = g_test_run();
    lmn_backend_unref(cpu);
    lmn_registry_free(registry);
    return rc;
}
