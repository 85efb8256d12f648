/* prelu-check: runs the prelu layer of this example, through the installed SDK's layer API, on
 * PyTorch's recorded cases and compares forward and backward.
 *
 *     prelu-check FIXTURE PLUGIN_DIR [BACKEND [DEVICE]]
 *
 * FIXTURE is tests/fixtures/prelu.h5 (scripts/make-prelu-fixtures.py): one group per case with
 * x, dy, weight, y, dx, dweight and the attribute num_parameters.  The layer gets the recorded
 * slopes instead of its 0.25 initialisation, so every branch and channel is exercised.  Prints
 * the worst relative error of each tensor and exits 1 when one exceeds the tolerance.
 */
#include <lamina/lamina.h>

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* y and dx are a single multiply of float32 values, so they must equal PyTorch's correctly
 * rounded float64 result up to one rounding.  dweight is a float32 sum of up to 120 terms x * dy
 * of both signs, whose cancellation can leave a result far below its terms, so its error is
 * measured against the sum of the terms' magnitudes: rounding stays near 1e-7 there, while a
 * wrong branch or channel is off by order 0.1. */
#define TOLERANCE_EXACT 1e-6
#define TOLERANCE_SUM 1e-5

typedef struct {
    float *data;
    LmnShape shape;
} Array;

static gboolean read_array(hid_t group, const char *name, Array *out, GError **error)
{
    hid_t ds = H5Dopen2(group, name, H5P_DEFAULT);
    if (ds < 0) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "no dataset '%s'", name);
        return FALSE;
    }
    hid_t space = H5Dget_space(ds);
    hsize_t dims[LMN_MAX_DIMS];
    int ndim = H5Sget_simple_extent_ndims(space);
    if (ndim < 1 || ndim > LMN_MAX_DIMS) {
        H5Sclose(space);
        H5Dclose(ds);
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "dataset '%s': %d dimensions", name,
                    ndim);
        return FALSE;
    }
    H5Sget_simple_extent_dims(space, dims, NULL);
    out->shape.ndim = (guint) ndim;
    gint64 n = 1;
    for (int i = 0; i < ndim; i++) {
        out->shape.dims[i] = (gint64) dims[i];
        n *= (gint64) dims[i];
    }
    out->data = g_new(float, n);
    herr_t status = H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out->data);
    H5Sclose(space);
    H5Dclose(ds);
    if (status < 0) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "cannot read dataset '%s'", name);
        return FALSE;
    }
    return TRUE;
}

/* The worst |a - b| / max(|b|, 1e-3 * max|b|, @floor, 1e-6) over the tensor. */
static double worst_error(const float *a, const float *b, gint64 n, double floor)
{
    double scale = 0;
    for (gint64 i = 0; i < n; i++)
        scale = MAX(scale, fabs((double) b[i]));
    double worst = 0;
    for (gint64 i = 0; i < n; i++) {
        double d = fabs((double) a[i] - (double) b[i]);
        double denom = MAX(MAX(fabs((double) b[i]), 1e-3 * scale), MAX(floor, 1e-6));
        worst = MAX(worst, d / denom);
    }
    return isnan(worst) ? INFINITY : worst;
}

static LmnTensor *upload(LmnBackend *backend, const Array *a, GError **error)
{
    LmnTensor *t = lmn_tensor_new(backend, LMN_DTYPE_F32, &a->shape, error);
    if (t != NULL && !lmn_tensor_write(t, a->data, lmn_tensor_nbytes(t), error))
        g_clear_pointer(&t, lmn_tensor_unref);
    return t;
}

static gboolean compare(const char *what, LmnTensor *t, const Array *want, double floor,
                        double tolerance, gboolean *ok, GError **error)
{
    gint64 n = lmn_shape_numel(&want->shape);
    g_autofree float *got = g_new(float, n);
    if (!lmn_tensor_read(t, got, (gsize) n * sizeof(float), error))
        return FALSE;
    double e = worst_error(got, want->data, n, floor);
    printf("  %-8s worst relative error %.3g (tolerance %g)\n", what, e, tolerance);
    if (!(e <= tolerance))
        *ok = FALSE;
    return TRUE;
}

static gboolean check_case(LmnRegistry *registry, LmnBackend *backend, hid_t file, const char *name,
                           gboolean *ok, GError **error)
{
    enum { X, DY, WEIGHT, Y, DX, DWEIGHT, N_ARRAYS };
    static const char *const names[] = {"x", "dy", "weight", "y", "dx", "dweight"};
    Array a[N_ARRAYS] = {{0}};
    LmnParams *params = NULL;
    LmnLayer *layer = NULL;
    LmnTensor *x = NULL, *dy = NULL, *y = NULL, *dx = NULL;
    g_autofree char *shape_text = NULL, *n_text = NULL;
    const LmnFeature *feature = NULL;
    gboolean result = FALSE;

    hid_t group = H5Gopen2(file, name, H5P_DEFAULT);
    gint64 num_parameters = 0;
    hid_t attr = H5Aopen(group, "num_parameters", H5P_DEFAULT);
    herr_t status = H5Aread(attr, H5T_NATIVE_INT64, &num_parameters);
    H5Aclose(attr);
    if (status < 0) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "%s: no num_parameters", name);
        goto out;
    }
    for (int i = 0; i < N_ARRAYS; i++)
        if (!read_array(group, names[i], &a[i], error))
            goto out;
    gint64 batch = a[X].shape.dims[0];
    /* build() sees the per-sample shape: x without its batch dimension */
    LmnTensorInfo in = {.dtype = LMN_DTYPE_F32};
    in.shape.ndim = a[X].shape.ndim - 1;
    for (guint d = 1; d < a[X].shape.ndim; d++)
        in.shape.dims[d - 1] = a[X].shape.dims[d];
    shape_text = lmn_shape_to_string(&a[X].shape);
    printf("%s: x %s, num_parameters %" G_GINT64_FORMAT "\n", name, shape_text, num_parameters);

    feature = lmn_registry_lookup(registry, LMN_FEATURE_LAYER, "prelu", error);
    if (feature == NULL)
        goto out;
    n_text = g_strdup_printf("%" G_GINT64_FORMAT, num_parameters);
    const char *keys[] = {"num_parameters", NULL}, *values[] = {n_text, NULL};
    params = lmn_registry_validate_params(feature, keys, values, name, error);
    if (params == NULL)
        goto out;
    layer = lmn_layer_new(registry, "prelu", name, 0, params, backend, 1, &in, error);
    if (layer == NULL || !lmn_layer_prepare_batch(layer, batch, error))
        goto out;
    /* the recorded slopes, not the layer's initialisation */
    LmnTensor *weight = lmn_layer_get_param(layer, 0);
    if (!lmn_tensor_write(weight, a[WEIGHT].data, lmn_tensor_nbytes(weight), error))
        goto out;
    if ((x = upload(backend, &a[X], error)) == NULL ||
        (dy = upload(backend, &a[DY], error)) == NULL ||
        (y = lmn_tensor_new(backend, LMN_DTYPE_F32, &a[X].shape, error)) == NULL ||
        (dx = lmn_tensor_new(backend, LMN_DTYPE_F32, &a[X].shape, error)) == NULL)
        goto out;

    LmnTensor *const inputs[] = {x};
    LmnTensor *const input_grads[] = {dx};
    LmnLayerIO io = {
        .struct_size = sizeof(LmnLayerIO),
        .n_inputs = 1,
        .inputs = inputs,
        .output = y,
        .batch = batch,
        .training = TRUE,
    };
    lmn_layer_forward(layer, &io);
    io.output_grad = dy;
    io.input_grads = input_grads;
    lmn_layer_backward(layer, &io);
    double terms = 0; /* sum of |x * dy| over the terms of dweight, all channels together */
    for (gint64 i = 0; i < lmn_shape_numel(&a[X].shape); i++)
        if (a[X].data[i] <= 0.0f)
            terms += fabs((double) a[X].data[i] * (double) a[DY].data[i]);
    result = compare("y", y, &a[Y], 0, TOLERANCE_EXACT, ok, error) &&
             compare("dx", dx, &a[DX], 0, TOLERANCE_EXACT, ok, error) &&
             compare("dweight", lmn_layer_get_grad(layer, 0), &a[DWEIGHT], terms, TOLERANCE_SUM, ok,
                     error);
out:
    g_clear_pointer(&x, lmn_tensor_unref);
    g_clear_pointer(&dy, lmn_tensor_unref);
    g_clear_pointer(&y, lmn_tensor_unref);
    g_clear_pointer(&dx, lmn_tensor_unref);
    g_clear_pointer(&layer, lmn_layer_free);
    g_clear_pointer(&params, lmn_params_unref);
    H5Gclose(group);
    for (int i = 0; i < N_ARRAYS; i++)
        g_free(a[i].data);
    return result;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: prelu-check FIXTURE PLUGIN_DIR [BACKEND [DEVICE]]\n");
        return 2;
    }
    const char *backend_name = argc > 3 ? argv[3] : "cpu", *device = argc > 4 ? argv[4] : NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(LmnRegistry) registry = lmn_registry_new();
    lmn_registry_add_dir(registry, argv[2]);
    g_autoptr(LmnBackend) backend = lmn_backend_new(registry, backend_name, NULL, device, &error);
    if (backend == NULL) {
        fprintf(stderr, "prelu-check: %s\n", error->message);
        return 1;
    }
    printf("backend: %s\n", lmn_backend_describe(backend));
    hid_t file = H5Fopen(argv[1], H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        fprintf(stderr, "prelu-check: cannot open %s\n", argv[1]);
        return 1;
    }
    g_autoptr(GPtrArray) cases = g_ptr_array_new_with_free_func(g_free);
    /* every top-level group is a case; by index, which works with HDF5 1.10 and later */
    H5G_info_t info;
    if (H5Gget_info(file, &info) >= 0)
        for (hsize_t i = 0; i < info.nlinks; i++) {
            char case_name[256];
            if (H5Lget_name_by_idx(file, ".", H5_INDEX_NAME, H5_ITER_INC, i, case_name,
                                   sizeof case_name, H5P_DEFAULT) > 0)
                g_ptr_array_add(cases, g_strdup(case_name));
        }
    gboolean ok = cases->len > 0;
    for (guint i = 0; i < cases->len && error == NULL; i++)
        check_case(registry, backend, file, cases->pdata[i], &ok, &error);
    H5Fclose(file);
    if (error != NULL) {
        fprintf(stderr, "prelu-check: %s\n", error->message);
        return 1;
    }
    printf(ok ? "prelu matches PyTorch\n" : "prelu differs from PyTorch\n");
    return ok ? 0 : 1;
}
