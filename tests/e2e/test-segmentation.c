/* The IoU of a binary segmentation (lmn_evaluate_segmentation_iou, `lamina eval`'s mean_iou,
 * the trainer's val_mean_iou) against its closed form: a model whose logits are its inputs (scale
 * by a constant 1, then binary_cross_entropy_with_logits on a mask), so the predicted foreground is
 * x > 0 and the counts can be made by hand; a mask value other than 0 or 1 is refused naming the
 * sample.  Likewise for C classes: softmax_cross_entropy on per-pixel labels (integer data,
 * ignore_index), its mean IoU by hand, and labels that are no class refused. */
#include "e2e-util.h"

#include <glib/gstdio.h>
#include <hdf5.h>
#include <lamina/lamina.h>
#include <math.h>
#include <string.h>

#define N 7
#define P 6

static const char config_text[] = "[model]\ninput = 6\n"
                                  "[layer logits]\ntype = scale\nvalue = 1\nlearnable = false\n"
                                  "[layer loss]\ntype = binary_cross_entropy_with_logits\n"
                                  "target = mask\n"
                                  "[optimizer]\ntype = sgd\n[train]\nbackend = cpu\n"
                                  "[data]\ntrain = unused.h5:/train\n";

static char *tmp_dir;

/* x and mask of N samples of P pixels, and the closed form of their IoU. */
static void make_data(float *x, float *mask, gint32 *y, double *fg, double *bg)
{
    LmnRandom r;
    lmn_random_init(&r, 5, 0);
    gint64 tp = 0, fp = 0, fn = 0, tn = 0;
    for (int i = 0; i < N * P; i++) {
        x[i] = (float) lmn_random_normal(&r);
        mask[i] = lmn_random_uniform_double(&r) < 0.4 ? 1.0f : 0.0f;
        gboolean p = x[i] > 0, g = mask[i] == 1.0f;
        tp += p && g, fp += p && !g, fn += !p && g, tn += !p && !g;
    }
    for (int i = 0; i < N; i++)
        y[i] = 0;
    *fg = (double) tp / (double) (tp + fp + fn);
    *bg = (double) tn / (double) (tn + fp + fn);
}

static void test_iou(void)
{
    float x[N * P], mask[N * P];
    gint32 y[N];
    double fg, bg;
    make_data(x, mask, y, &fg, &bg);
    g_autofree char *data = g_build_filename(tmp_dir, "seg.h5", NULL);
    e2e_write_split(data, "test", x, N, P, y);
    e2e_write_target(data, "test", "mask", mask, N, P);

    LmnRegistry *registry = NULL;
    LmnBackend *cpu = NULL, *vk = NULL;
    g_assert_true(e2e_open_backends(FALSE, &registry, &cpu, &vk));
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_data(config_text, -1, "seg.ini", &error);
    g_assert_no_error(error);
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    g_autofree char *spec = g_strdup_printf("%s:/test", data);
    const char *targets[] = {"mask", NULL};
    LmnDataset *ds = lmn_dataset_open_with_targets(spec, targets, 0, &error);
    g_assert_no_error(error);
    LmnModel *model = lmn_model_new_for_dataset(cfg, registry, cpu, ds, &error);
    g_assert_no_error(error);
    gint loss = lmn_evaluate_find_segmentation_loss(model);
    g_assert_cmpint(loss, ==, 0);
    /* Batches of 3: the last one is short. */
    LmnSegmentationIoU iou;
    g_assert_true(lmn_evaluate_segmentation_iou(model, ds, 3, loss, &iou, &error));
    g_assert_no_error(error);
    g_assert_cmpfloat(fabs(iou.foreground - fg), <, 1e-12);
    g_assert_cmpfloat(fabs(iou.background - bg), <, 1e-12);
    g_assert_cmpfloat(fabs(iou.mean - (fg + bg) / 2), <, 1e-12);
    g_assert_cmpint(iou.pixels, ==, N * P);

    /* The same through `lamina eval` on a checkpoint of the model. */
    g_autofree char *ckpt = g_build_filename(tmp_dir, "seg-model.h5", NULL);
    g_autofree char *text = lmn_config_to_data(cfg);
    g_assert_true(lmn_checkpoint_save(ckpt, text, model, NULL, NULL, NULL, &error));
    g_assert_no_error(error);
    g_autofree char *out = NULL, *err = NULL;
    int status = e2e_run_lamina(&out, &err, "eval", ckpt, "--data", spec, "--json", "--backend",
                                "cpu", NULL);
    if (status != 0)
        g_error("lamina eval failed (%d): %s", status, err);
    const char *p = strstr(out, "\"mean_iou\": ");
    g_assert_nonnull(p);
    g_assert_cmpfloat(fabs(g_ascii_strtod(p + strlen("\"mean_iou\": "), NULL) - (fg + bg) / 2), <,
                      1e-6);

    /* A mask that is not 0/1 is refused, naming the sample. */
    mask[2 * P + 1] = 0.5f;
    g_autofree char *bad = g_build_filename(tmp_dir, "seg-bad.h5", NULL);
    e2e_write_split(bad, "test", x, N, P, y);
    e2e_write_target(bad, "test", "mask", mask, N, P);
    g_autofree char *bad_spec = g_strdup_printf("%s:/test", bad);
    LmnDataset *bds = lmn_dataset_open_with_targets(bad_spec, targets, 0, &error);
    g_assert_no_error(error);
    g_assert_false(lmn_evaluate_segmentation_iou(model, bds, 3, loss, &iou, &error));
    g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE);
    g_assert_nonnull(strstr(error->message, "sample 2"));
    g_assert_nonnull(strstr(error->message, "seg-bad.h5"));
    lmn_dataset_free(bds);
    lmn_model_free(model);
    lmn_dataset_free(ds);
    lmn_config_free(cfg);
    lmn_backend_unref(cpu);
    lmn_registry_free(registry);
}

/* Training reports the validation split's mean IoU each epoch (val_miou, val_mean_iou in
 * metrics.csv) and the test split's at the end, as lamina eval measures them. */
static void test_training_report(void)
{
    float x[N * P], mask[N * P];
    gint32 y[N];
    double fg, bg;
    make_data(x, mask, y, &fg, &bg);
    g_autofree char *data = g_build_filename(tmp_dir, "seg-train.h5", NULL);
    e2e_write_split(data, "train", x, N, P, y);
    e2e_write_target(data, "train", "mask", mask, N, P);
    g_autofree char *text = g_strdup_printf(
        "[model]\ninput = 6\n[layer logits]\ntype = scale\nvalue = 1\n"
        "[layer loss]\ntype = binary_cross_entropy_with_logits\ntarget = mask\n"
        "[optimizer]\ntype = sgd\nlr = 0.1\n[train]\nepochs = 2\nbatch_size = 3\nbackend = cpu\n"
        "[data]\ntrain = %s:/train\nvalidation = %s:/train\ntest = %s:/train\n",
        data, data, data);
    g_autofree char *cfg = g_build_filename(tmp_dir, "seg-train.ini", NULL);
    g_assert_true(g_file_set_contents(cfg, text, -1, NULL));
    g_autofree char *out_dir = g_build_filename(tmp_dir, "seg-train", NULL);
    g_autofree char *out = NULL, *err = NULL;
    int status = e2e_run_lamina(&out, &err, "train", cfg, "--output", out_dir, NULL);
    if (status != 0)
        g_error("lamina train failed (%d): %s", status, err);
    g_assert_nonnull(strstr(out, "val_miou "));
    g_assert_nonnull(strstr(out, "mean IoU "));
    g_autofree char *csv = g_build_filename(out_dir, "metrics.csv", NULL);
    g_autofree char *contents = NULL;
    g_assert_true(g_file_get_contents(csv, &contents, NULL, NULL));
    g_assert_nonnull(strstr(contents, ",val_mean_iou\n"));
    g_autoptr(GPtrArray) rows = e2e_csv_rows(csv);
    g_assert_cmpuint(rows->len, ==, 2);
    char **last = g_ptr_array_index(rows, 1);
    double logged = g_ascii_strtod(last[g_strv_length(last) - 1], NULL);
    g_autofree char *final = g_build_filename(out_dir, "final.h5", NULL);
    g_autofree char *spec = g_strdup_printf("%s:/train", data);
    g_autofree char *eval_out = NULL;
    g_assert_cmpint(e2e_run_lamina(&eval_out, NULL, "eval", final, "--data", spec, "--json",
                                   "--backend", "cpu", NULL),
                    ==, 0);
    const char *p = strstr(eval_out, "\"mean_iou\": ");
    g_assert_nonnull(p);
    g_assert_cmpfloat(fabs(logged - g_ascii_strtod(p + strlen("\"mean_iou\": "), NULL)), <, 1e-5);
}

/* ---- multi-class: softmax_cross_entropy on per-pixel labels ---- */

#define C 3

static const char classes_config[] = "[model]\ninput = 18\n"
                                     "[layer logits]\ntype = reshape\nshape = 3, 6\n"
                                     "[layer loss]\ntype = softmax_cross_entropy\n"
                                     "target = seg\nignore_index = -1\n"
                                     "[optimizer]\ntype = sgd\n[train]\nbackend = cpu\n"
                                     "[data]\ntrain = unused.h5:/train\n";

/* Integer labels [N, P] as the target @name (per-pixel labels). */
static void write_int_target(const char *path, const char *name, const gint32 *v)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "test", H5P_DEFAULT);
    hsize_t dims[2] = {N, P};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(g, name, H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(d, >=, 0);
    g_assert_cmpint(H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), >=, 0);
    H5Dclose(d);
    H5Sclose(sp);
    H5Gclose(g);
    H5Fclose(f);
}

/* x [N, C, P] and labels [N, P] (some -1, ignored), and the mean IoU by hand: the argmax of each
 * pixel's C values against its label, per class |both| / |either|, mean over classes present. */
static double make_class_data(float *x, gint32 *labels, gint32 *y)
{
    LmnRandom r;
    lmn_random_init(&r, 9, 0);
    gint64 inter[C] = {0}, uni[C] = {0};
    for (int i = 0; i < N * C * P; i++)
        x[i] = (float) lmn_random_normal(&r);
    for (int n = 0; n < N; n++) {
        y[n] = 0;
        for (int q = 0; q < P; q++) {
            double u = lmn_random_uniform_double(&r);
            gint32 label = u < 0.15 ? -1 : (gint32) (u * 10) % C;
            labels[n * P + q] = label;
            if (label < 0)
                continue;
            int best = 0;
            for (int c = 1; c < C; c++)
                if (x[(n * C + c) * P + q] > x[(n * C + best) * P + q])
                    best = c;
            inter[best] += best == label;
            for (int c = 0; c < C; c++)
                uni[c] += best == c || label == c;
        }
    }
    double sum = 0.0;
    int present = 0;
    for (int c = 0; c < C; c++)
        if (uni[c] > 0)
            sum += (double) inter[c] / (double) uni[c], present++;
    return sum / present;
}

static void test_iou_classes(void)
{
    float x[N * C * P];
    gint32 labels[N * P], y[N];
    double want = make_class_data(x, labels, y);
    g_autofree char *data = g_build_filename(tmp_dir, "seg-classes.h5", NULL);
    e2e_write_split(data, "test", x, N, C * P, y);
    write_int_target(data, "seg", labels);

    LmnRegistry *registry = NULL;
    LmnBackend *cpu = NULL, *vk = NULL;
    g_assert_true(e2e_open_backends(FALSE, &registry, &cpu, &vk));
    g_autoptr(GError) error = NULL;
    LmnConfig *cfg = lmn_config_new_from_data(classes_config, -1, "seg.ini", &error);
    g_assert_no_error(error);
    g_assert_true(lmn_config_validate(cfg, registry, &error));
    g_autofree char *spec = g_strdup_printf("%s:/test", data);
    const char *targets[] = {"seg", NULL};
    LmnDataset *ds = lmn_dataset_open_with_targets(spec, targets, 0, &error);
    g_assert_no_error(error);
    /* Integer [N, P] data is per-pixel labels: float values [P] holding the classes. */
    LmnTensorInfo info = lmn_dataset_get_target_info_at(ds, 1);
    g_assert_cmpint(info.dtype, ==, LMN_DTYPE_F32);
    g_assert_cmpuint(info.shape.ndim, ==, 1);
    g_assert_cmpint(info.shape.dims[0], ==, P);
    LmnModel *model = lmn_model_new_for_dataset(cfg, registry, cpu, ds, &error);
    g_assert_no_error(error);
    g_assert_true(lmn_model_check_targets(model, ds, &error));
    gint loss = lmn_evaluate_find_segmentation_loss(model);
    g_assert_cmpint(loss, ==, 0);
    LmnSegmentationIoU iou;
    g_assert_true(lmn_evaluate_segmentation_iou(model, ds, 3, loss, &iou, &error));
    g_assert_no_error(error);
    g_assert_cmpfloat(fabs(iou.mean - want), <, 1e-12);
    g_assert_cmpint(iou.classes, ==, C);
    gint64 scored = 0;
    for (int i = 0; i < N * P; i++)
        scored += labels[i] >= 0;
    g_assert_cmpint(iou.pixels, ==, scored);

    /* lamina predict writes a per-pixel classifier's raw logits (a softmax over the whole
     * sample would be wrong), saying so. */
    g_autofree char *ckpt = g_build_filename(tmp_dir, "seg-classes-model.h5", NULL);
    g_autofree char *text = lmn_config_to_data(cfg);
    g_assert_true(lmn_checkpoint_save(ckpt, text, model, NULL, NULL, NULL, &error));
    g_assert_no_error(error);
    g_autofree char *out = NULL, *err = NULL;
    int status =
        e2e_run_lamina(&out, &err, "predict", ckpt, spec, "--json", "--backend", "cpu", NULL);
    if (status != 0)
        g_error("lamina predict failed (%d): %s", status, err);
    g_assert_nonnull(strstr(err, "classifies every pixel"));
    g_assert_nonnull(strstr(out, "\"outputs\""));

    /* A label that is neither a class nor ignore_index is refused before training, naming the
     * sample, the value and the classes. */
    labels[4 * P + 2] = C;
    g_autofree char *bad = g_build_filename(tmp_dir, "seg-classes-bad.h5", NULL);
    e2e_write_split(bad, "test", x, N, C * P, y);
    write_int_target(bad, "seg", labels);
    g_autofree char *bad_spec = g_strdup_printf("%s:/test", bad);
    LmnDataset *bds = lmn_dataset_open_with_targets(bad_spec, targets, 0, &error);
    g_assert_no_error(error);
    g_assert_false(lmn_model_check_targets(model, bds, &error));
    g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE);
    g_assert_nonnull(strstr(error->message, "seg-classes-bad.h5"));
    g_assert_nonnull(strstr(error->message, "sample 4"));
    g_assert_nonnull(strstr(error->message, "label 3"));
    g_assert_nonnull(strstr(error->message, "ignore_index (-1)"));
    g_clear_error(&error);
    lmn_dataset_free(bds);

    /* Per-pixel labels of 2^24 or more cannot be held exactly: refused when the split opens. */
    labels[4 * P + 2] = 1 << 24;
    g_autofree char *huge = g_build_filename(tmp_dir, "seg-classes-huge.h5", NULL);
    e2e_write_split(huge, "test", x, N, C * P, y);
    write_int_target(huge, "seg", labels);
    g_autofree char *huge_spec = g_strdup_printf("%s:/test", huge);
    g_assert_null(lmn_dataset_open_with_targets(huge_spec, targets, 0, &error));
    g_assert_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE);
    g_assert_nonnull(strstr(error->message, "too large"));
    lmn_model_free(model);
    lmn_dataset_free(ds);
    lmn_config_free(cfg);
    lmn_backend_unref(cpu);
    lmn_registry_free(registry);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    tmp_dir = g_dir_make_tmp("lamina-segmentation-XXXXXX", NULL);
    g_test_add_func("/e2e/segmentation/iou", test_iou);
    g_test_add_func("/e2e/segmentation/training-report", test_training_report);
    g_test_add_func("/e2e/segmentation/iou-classes", test_iou_classes);
    int rc = g_test_run();
    e2e_remove_tree(tmp_dir);
    g_free(tmp_dir);
    return rc;
}
