/* Helpers shared by the end-to-end tests. */
#include "e2e-util.h"

#if defined(__SANITIZE_ADDRESS__)
#include <dlfcn.h>
#endif

#include <glib/gstdio.h>
#include <lamina/lamina.h>
#include <math.h>
#include <string.h>
#include <sys/wait.h>

void e2e_write_blobs(const char *path, const char *split, int n, guint64 seed,
                     gboolean random_labels)
{
    e2e_write_blobs_chunked(path, split, n, seed, random_labels, 0);
}

void e2e_write_blobs_chunked(const char *path, const char *split, int n, guint64 seed,
                             gboolean random_labels, int chunk_rows)
{
    hid_t f = g_file_test(path, G_FILE_TEST_EXISTS)
                  ? H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT)
                  : H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    hid_t g = H5Gcreate2(f, split, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    float *x = g_new(float, 2 * n);
    gint32 *y = g_new(gint32, n);
    LmnRandom r;
    lmn_random_init(&r, seed, 7);
    for (int i = 0; i < n; i++) {
        int k = (int) lmn_random_below(&r, 4);
        x[2 * i] = (float) (3 * cos(k * G_PI / 2) + lmn_random_normal(&r));
        x[2 * i + 1] = (float) (3 * sin(k * G_PI / 2) + lmn_random_normal(&r));
        y[i] = random_labels ? (gint32) lmn_random_below(&r, 4) : k;
    }
    hsize_t xd[2] = {(hsize_t) n, 2}, yd[1] = {(hsize_t) n};
    hid_t xs = H5Screate_simple(2, xd, NULL), ys = H5Screate_simple(1, yd, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (chunk_rows > 0) {
        hsize_t chunk[2] = {(hsize_t) chunk_rows, 2};
        g_assert_cmpint(H5Pset_chunk(dcpl, 2, chunk), >=, 0);
    }
    hid_t xds = H5Dcreate2(g, "x", H5T_IEEE_F32LE, xs, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    hid_t yds = H5Dcreate2(g, "y", H5T_STD_I32LE, ys, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(H5Dwrite(xds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), >=, 0);
    g_assert_cmpint(H5Dwrite(yds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y), >=, 0);
    H5Dclose(xds);
    H5Dclose(yds);
    H5Sclose(xs);
    H5Sclose(ys);
    H5Gclose(g);
    H5Fclose(f);
    g_free(x);
    g_free(y);
}

void e2e_write_target(const char *path, const char *split, const char *name, const float *v, int n,
                      int k)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    hid_t g = H5Gopen2(f, split, H5P_DEFAULT);
    g_assert_cmpint(g, >=, 0);
    hsize_t dims[2] = {(hsize_t) n, (hsize_t) k};
    hid_t sp = H5Screate_simple(k > 0 ? 2 : 1, dims, NULL);
    hid_t ds = H5Dcreate2(g, name, k > 0 ? H5T_IEEE_F32LE : H5T_STD_I32LE, sp, H5P_DEFAULT,
                          H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(ds, >=, 0);
    if (k > 0) {
        g_assert_cmpint(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), >=, 0);
    } else {
        g_autofree gint32 *labels = g_new(gint32, MAX(n, 1));
        for (int i = 0; i < n; i++)
            labels[i] = (gint32) lrintf(v[i]);
        g_assert_cmpint(H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels), >=,
                        0);
    }
    H5Dclose(ds);
    H5Sclose(sp);
    H5Gclose(g);
    H5Fclose(f);
}

void e2e_write_split(const char *path, const char *split, const float *x, int n, int features,
                     const gint32 *y)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    hid_t g = H5Gcreate2(f, split, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(g, >=, 0);
    hsize_t xd[2] = {(hsize_t) n, (hsize_t) features}, yd[1] = {(hsize_t) n};
    hid_t xs = H5Screate_simple(2, xd, NULL), ys = H5Screate_simple(1, yd, NULL);
    hid_t xds = H5Dcreate2(g, "x", H5T_IEEE_F32LE, xs, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t yds = H5Dcreate2(g, "y", H5T_STD_I32LE, ys, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    g_assert_cmpint(H5Dwrite(xds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), >=, 0);
    g_assert_cmpint(H5Dwrite(yds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y), >=, 0);
    H5Dclose(xds);
    H5Dclose(yds);
    H5Sclose(xs);
    H5Sclose(ys);
    H5Gclose(g);
    H5Fclose(f);
}

gboolean e2e_open_backends(gboolean vulkan, LmnRegistry **registry, LmnBackend **cpu,
                           LmnBackend **vk)
{
    const char *build_dir = g_getenv("LMN_TEST_BUILD_DIR");
    g_autofree char *cache_home =
        g_build_filename(build_dir != NULL ? build_dir : g_get_tmp_dir(), "xdg-cache-home", NULL);
    g_setenv("XDG_CACHE_HOME", cache_home, TRUE);
    *registry = lmn_registry_new();
    lmn_registry_scan(*registry, NULL);
    g_autoptr(GError) error = NULL;
    *cpu = lmn_backend_new(*registry, "cpu", NULL, NULL, &error);
    g_assert_no_error(error);
    *vk = NULL;
    if (!vulkan)
        return TRUE;
#if defined(__SANITIZE_ADDRESS__)
    /* lavapipe keeps a process-wide allocation that becomes unreachable when the loader unloads
     * it, which LeakSanitizer would report (see tests/vulkan/vk-test-setup.h). */
    dlopen("libvulkan_lvp.so", RTLD_NOW | RTLD_NODELETE);
#endif
    *vk = lmn_backend_new(*registry, "vulkan", NULL, "lavapipe", &error);
    if (*vk != NULL)
        return TRUE;
    g_printerr("SKIP: no Vulkan device 'lavapipe': %s\n", error->message);
    lmn_backend_unref(*cpu);
    lmn_registry_free(*registry);
    return FALSE;
}

void e2e_remove_tree(const char *path)
{
    if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
        GDir *d = g_dir_open(path, 0, NULL);
        const char *name;
        while (d && (name = g_dir_read_name(d))) {
            g_autofree char *child = g_build_filename(path, name, NULL);
            e2e_remove_tree(child);
        }
        if (d)
            g_dir_close(d);
        g_rmdir(path);
    } else {
        g_unlink(path);
    }
}

const char *e2e_lamina_exe(void)
{
    const char *p = g_getenv("LMN_TEST_LAMINA");
    g_assert_nonnull(p);
    return p;
}

int e2e_run_lamina(char **out, char **err, const char *first, ...)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_ptr_array_add(argv, (gpointer) e2e_lamina_exe());
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *))
        g_ptr_array_add(argv, (gpointer) a);
    va_end(ap);
    g_ptr_array_add(argv, NULL);
    int status = 0;
    g_autoptr(GError) error = NULL;
    g_autofree char *o = NULL, *e = NULL;
    gboolean ok = g_spawn_sync(NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &o,
                               &e, &status, &error);
    g_assert_no_error(error);
    g_assert_true(ok);
    if (g_test_verbose())
        g_printerr("$ lamina %s\n%s%s", first, o, e);
    if (out)
        *out = g_steal_pointer(&o);
    if (err)
        *err = g_steal_pointer(&e);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

float *e2e_read_floats(const char *file, const char *name, gsize *n_out)
{
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) {
        H5Fclose(f);
        return NULL;
    }
    hid_t sp = H5Dget_space(ds);
    gsize n = (gsize) H5Sget_simple_extent_npoints(sp);
    float *v = g_new(float, MAX(n, 1));
    g_assert_cmpint(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), >=, 0);
    H5Sclose(sp);
    H5Dclose(ds);
    H5Fclose(f);
    if (n_out)
        *n_out = n;
    return v;
}

static hid_t open_attr(const char *file, const char *obj, const char *attr, hid_t *f, hid_t *o)
{
    *f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(*f, >=, 0);
    *o = H5Oopen(*f, obj, H5P_DEFAULT);
    g_assert_cmpint(*o, >=, 0);
    hid_t a = H5Aopen(*o, attr, H5P_DEFAULT);
    if (a < 0)
        g_error("%s:%s has no attribute %s", file, obj, attr);
    return a;
}

gint64 e2e_read_attr_int(const char *file, const char *obj, const char *attr)
{
    hid_t f, o;
    hid_t a = open_attr(file, obj, attr, &f, &o);
    gint64 v = 0;
    g_assert_cmpint(H5Aread(a, H5T_NATIVE_INT64, &v), >=, 0);
    H5Aclose(a);
    H5Oclose(o);
    H5Fclose(f);
    return v;
}

double e2e_read_attr_double(const char *file, const char *obj, const char *attr)
{
    hid_t f, o;
    hid_t a = open_attr(file, obj, attr, &f, &o);
    double v = 0;
    g_assert_cmpint(H5Aread(a, H5T_NATIVE_DOUBLE, &v), >=, 0);
    H5Aclose(a);
    H5Oclose(o);
    H5Fclose(f);
    return v;
}

static herr_t visit(hid_t obj, const char *name, const H5O_info_t *info, void *data)
{
    (void) obj;
    if (info->type == H5O_TYPE_DATASET)
        g_ptr_array_add(data, g_strdup(name));
    return 0;
}

GPtrArray *e2e_list_datasets(const char *file, const char *group)
{
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    g_assert_cmpint(f, >=, 0);
    if (H5Lexists(f, group, H5P_DEFAULT) > 0) {
        hid_t g = H5Gopen2(f, group, H5P_DEFAULT);
        H5Ovisit(g, H5_INDEX_NAME, H5_ITER_INC, visit, names);
        H5Gclose(g);
    }
    H5Fclose(f);
    return names;
}

void e2e_assert_same_floats(const char *a, const char *b, const char *group)
{
    g_autoptr(GPtrArray) na = e2e_list_datasets(a, group);
    g_autoptr(GPtrArray) nb = e2e_list_datasets(b, group);
    g_assert_cmpuint(na->len, >, 0);
    g_assert_cmpuint(na->len, ==, nb->len);
    for (guint i = 0; i < na->len; i++) {
        g_assert_cmpstr(g_ptr_array_index(na, i), ==, g_ptr_array_index(nb, i));
        g_autofree char *path = g_strdup_printf("%s/%s", group, (char *) g_ptr_array_index(na, i));
        gsize n1 = 0, n2 = 0;
        g_autofree float *v1 = e2e_read_floats(a, path, &n1);
        g_autofree float *v2 = e2e_read_floats(b, path, &n2);
        g_assert_cmpuint(n1, ==, n2);
        if (memcmp(v1, v2, n1 * sizeof(float)) != 0) {
            for (gsize k = 0; k < n1; k++)
                if (memcmp(&v1[k], &v2[k], sizeof(float)) != 0)
                    g_error("%s differs between %s and %s at element %zu: %.9g vs %.9g", path, a, b,
                            k, v1[k], v2[k]);
        }
    }
}

GPtrArray *e2e_csv_rows(const char *path)
{
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    g_auto(GStrv) lines = g_strsplit(g_strstrip(text), "\n", -1);
    GPtrArray *rows = g_ptr_array_new_with_free_func((GDestroyNotify) g_strfreev);
    for (guint i = 1; lines[i]; i++)
        g_ptr_array_add(rows, g_strsplit(lines[i], ",", -1));
    return rows;
}
