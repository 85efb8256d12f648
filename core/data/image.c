/* Lamina — PNG and JPEG files as uint8 planes [C, H, W] (image.h), by PIL's rules. */
#include <lamina/image.h>

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
/* jpeglib.h needs FILE declared first. */
#include <jpeglib.h>
#include <png.h>

/* No model input comes near this; it keeps a hostile header from asking for gigabytes. */
#define MAX_IMAGE_BYTES ((gsize) 1 << 30)

/* A decoded image: @channels interleaved samples a pixel (1 grey, 2 grey + alpha, 3 RGB,
 * 4 RGBA), rows top to bottom. */
typedef struct {
    guint8 *pixels;
    gsize width, height;
    int channels;
} Decoded;

/* Sets *@bytes_out = @w * @h * @c when that fits the limit. */
static gboolean image_bytes(gsize w, gsize h, gsize c, gsize *bytes_out)
{
    gsize row = 0;
    return g_size_checked_mul(&row, w, c) && g_size_checked_mul(bytes_out, row, h) &&
           *bytes_out <= MAX_IMAGE_BYTES && *bytes_out > 0;
}

static void corrupt(GError **error, const char *path, const char *kind, const char *why)
{
    g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT, "%s: not a readable %s image: %s",
                path, kind, why);
}

static void too_large(GError **error, const char *path, const Decoded *d)
{
    g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                "%s: %zu x %zu pixels of %d channels are more than an input image may hold (%zu "
                "bytes)",
                path, d->width, d->height, d->channels, MAX_IMAGE_BYTES);
}

/* libpng's errors jump back to png_decode with the message kept here. */
typedef struct {
    jmp_buf jump;
    char message[200];
    /* freed after a jump: libpng holds this struct's address, so they are in memory when the
     * jump comes, unlike locals that may sit in registers */
    guint8 *pixels;
    png_bytep *rows;
} PngFail;

static void png_fail(png_structp png, png_const_charp msg)
{
    PngFail *f = png_get_error_ptr(png);
    g_strlcpy(f->message, msg, sizeof f->message);
    longjmp(f->jump, 1);
}

static void png_quiet(png_structp png, png_const_charp msg)
{
    (void) png;
    (void) msg;
}

/* Expands palettes and low bit depths to 8-bit grey or RGB and drops 16-bit low bytes; a
 * tRNS chunk is not turned into alpha, which is dropped anyway. */
static void png_setup_transforms(png_structp png, png_infop info)
{
    int type = png_get_color_type(png, info);
    if (type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_bit_depth(png, info) == 16)
        png_set_strip_16(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

/* Reads every row of an opened PNG into @out (after png_read_info). */
static gboolean png_decode_rows(png_structp png, png_infop info, Decoded *out, const char *path,
                                GError **error)
{
    png_setup_transforms(png, info);
    out->width = png_get_image_width(png, info);
    out->height = png_get_image_height(png, info);
    out->channels = png_get_channels(png, info);
    gsize bytes = 0;
    gsize rowbytes = png_get_rowbytes(png, info);
    if (!image_bytes(out->width, out->height, (gsize) out->channels, &bytes) ||
        rowbytes != out->width * (gsize) out->channels) {
        too_large(error, path, out);
        return FALSE;
    }
    out->pixels = g_malloc(bytes);
    ((PngFail *) png_get_error_ptr(png))->pixels = out->pixels;
    /* Not g_autofree: a jump out of png_read_image would skip its cleanup. */
    png_bytep *rows = ((PngFail *) png_get_error_ptr(png))->rows = g_new(png_bytep, out->height);
    for (gsize y = 0; y < out->height; y++)
        rows[y] = out->pixels + y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    return TRUE;
}

static gboolean png_decode(FILE *fp, const char *path, Decoded *out, GError **error)
{
    PngFail fail = {.message = "", .pixels = NULL, .rows = NULL};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &fail, png_fail, png_quiet);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        corrupt(error, path, "PNG", "out of memory");
        return FALSE;
    }
    /* @out lives in the caller's frame, so its members survive the longjmp. */
    if (setjmp(fail.jump)) {
        png_destroy_read_struct(&png, &info, NULL);
        g_free(fail.pixels);
        g_free(fail.rows);
        out->pixels = NULL;
        corrupt(error, path, "PNG", fail.message);
        return FALSE;
    }
    png_init_io(png, fp);
    png_read_info(png, info);
    gboolean ok = png_decode_rows(png, info, out, path, error);
    g_free(fail.rows);
    png_destroy_read_struct(&png, &info, NULL);
    return ok;
}

/* libjpeg's errors, and its warnings (a truncated file is only a warning to it, which would
 * feed the model grey rows), jump back to jpeg_decode. */
typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    guint8 *pixels; /* freed after a jump (see PngFail) */
} JpegFail;

static void jpeg_fail(j_common_ptr cinfo)
{
    JpegFail *f = (JpegFail *) cinfo->err;
    f->mgr.format_message(cinfo, f->message);
    longjmp(f->jump, 1);
}

static void jpeg_message(j_common_ptr cinfo, int level)
{
    if (level < 0)
        jpeg_fail(cinfo);
}

/* Decodes the started decompression @c into @out (grey or RGB). */
static gboolean jpeg_decode_rows(struct jpeg_decompress_struct *c, Decoded *out, const char *path,
                                 GError **error)
{
    if (c->jpeg_color_space == JCS_CMYK || c->jpeg_color_space == JCS_YCCK) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_DTYPE,
                    "%s: a CMYK JPEG; convert it to RGB or grey first", path);
        return FALSE;
    }
    c->out_color_space = c->num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(c);
    out->width = c->output_width;
    out->height = c->output_height;
    out->channels = c->output_components;
    gsize bytes = 0;
    if (!image_bytes(out->width, out->height, (gsize) out->channels, &bytes)) {
        too_large(error, path, out);
        return FALSE;
    }
    out->pixels = g_malloc(bytes);
    ((JpegFail *) c->err)->pixels = out->pixels;
    while (c->output_scanline < c->output_height) {
        JSAMPROW row = out->pixels + (gsize) c->output_scanline * out->width * out->channels;
        jpeg_read_scanlines(c, &row, 1);
    }
    jpeg_finish_decompress(c);
    return TRUE;
}

static gboolean jpeg_decode(FILE *fp, const char *path, Decoded *out, GError **error)
{
    struct jpeg_decompress_struct c;
    JpegFail fail;
    fail.pixels = NULL;
    c.err = jpeg_std_error(&fail.mgr);
    fail.mgr.error_exit = jpeg_fail;
    fail.mgr.emit_message = jpeg_message;
    if (setjmp(fail.jump)) {
        jpeg_destroy_decompress(&c);
        g_free(fail.pixels);
        out->pixels = NULL;
        corrupt(error, path, "JPEG", fail.message);
        return FALSE;
    }
    jpeg_create_decompress(&c);
    jpeg_stdio_src(&c, fp);
    jpeg_read_header(&c, TRUE);
    gboolean ok = jpeg_decode_rows(&c, out, path, error);
    jpeg_destroy_decompress(&c);
    return ok;
}

/* Decodes @path by its signature. */
static gboolean decode_file(const char *path, Decoded *out, GError **error)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        int e = errno;
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_OPEN, "%s: cannot open it: %s", path,
                    g_strerror(e));
        return FALSE;
    }
    guint8 sig[8] = {0};
    size_t got = fread(sig, 1, sizeof sig, fp);
    rewind(fp);
    gboolean ok;
    if (got == 8 && png_sig_cmp(sig, 0, 8) == 0) {
        ok = png_decode(fp, path, out, error);
    } else if (got >= 3 && sig[0] == 0xFF && sig[1] == 0xD8 && sig[2] == 0xFF) {
        ok = jpeg_decode(fp, path, out, error);
    } else {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_FORMAT,
                    "%s: neither a PNG nor a JPEG file (by its first bytes)", path);
        ok = FALSE;
    }
    fclose(fp);
    return ok;
}

/* Pixel @p's value in channel @c of the model: grey from RGB by PIL's L24 luma, grey
 * replicated to RGB, alpha dropped. */
static guint8 pixel_value(const guint8 *p, int src_channels, gint64 channels, gint64 c)
{
    if (src_channels <= 2)
        return p[0];
    if (channels == 3)
        return p[c];
    return (guint8) (((guint32) p[0] * 19595u + (guint32) p[1] * 38470u + (guint32) p[2] * 7471u +
                      0x8000u) >>
                     16);
}

/* Source index of each of @n output positions, PIL's ImagingScaleAffine: the centre of output
 * pixel i maps to (i + 0.5) * in / n, accumulated in double, truncated. */
static gsize *nearest_table(gsize in, gint64 n)
{
    gsize *table = g_new(gsize, n);
    double step = (double) in / (double) n;
    double pos = step * 0.5;
    for (gint64 i = 0; i < n; i++) {
        gsize v = (gsize) pos;
        table[i] = MIN(v, in - 1);
        pos += step;
    }
    return table;
}

guint8 *lmn_image_read(const char *path, gint64 channels, gint64 height, gint64 width,
                       LmnImageResize resize, GError **error)
{
    g_return_val_if_fail(path != NULL && height > 0 && width > 0, NULL);
    if (channels != 1 && channels != 3) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                    "%s: the model takes %" G_GINT64_FORMAT " channels; images feed models of 1 "
                    "(grey) or 3 (RGB) channels",
                    path, channels);
        return NULL;
    }
    gsize bytes = 0;
    if (!image_bytes((gsize) width, (gsize) height, (gsize) channels, &bytes)) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                    "%s: the model's input %" G_GINT64_FORMAT " x %" G_GINT64_FORMAT
                    " is too large for an image",
                    path, width, height);
        return NULL;
    }
    Decoded d = {0};
    if (!decode_file(path, &d, error))
        return NULL;
    g_autofree guint8 *src = d.pixels;
    if (resize == LMN_IMAGE_RESIZE_NONE &&
        (d.width != (gsize) width || d.height != (gsize) height)) {
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                    "%s is %zu x %zu pixels but the model takes %" G_GINT64_FORMAT
                    " x %" G_GINT64_FORMAT " (width x height); resize it or pass --resize nearest",
                    path, d.width, d.height, width, height);
        return NULL;
    }
    g_autofree gsize *cols = nearest_table(d.width, width);
    g_autofree gsize *rows = nearest_table(d.height, height);
    guint8 *out = g_malloc(bytes);
    gsize plane = (gsize) width * (gsize) height;
    for (gint64 y = 0; y < height; y++) {
        const guint8 *row = src + rows[y] * d.width * (gsize) d.channels;
        for (gint64 x = 0; x < width; x++) {
            const guint8 *p = row + cols[x] * (gsize) d.channels;
            for (gint64 c = 0; c < channels; c++)
                out[(gsize) c * plane + (gsize) y * (gsize) width + (gsize) x] =
                    pixel_value(p, d.channels, channels, c);
        }
    }
    return out;
}
