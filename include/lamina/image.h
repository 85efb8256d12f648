/* Lamina — image files as model inputs (`lamina predict`).
 *
 * PNG (libpng) and JPEG (libjpeg) files, recognised by their signature, become uint8 planes
 * [C, H, W] by the rule PIL follows, so that a model sees the pixels a PIL/NumPy pipeline gives:
 *   - C = 1: grey.  An RGB(A) or palette image is converted with ITU-R 601-2 luma in PIL's fixed
 *     point, L = (R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16 (Image.convert('L')); alpha
 *     is dropped.
 *   - C = 3: RGB.  A grey image is replicated into the three channels and alpha is dropped
 *     (Image.convert('RGB')).
 *   - any other C is an error.
 * 16-bit PNG samples are reduced to their high byte.  A JPEG is decoded by libjpeg with its
 * defaults (as PIL decodes it); CMYK JPEGs are refused.
 * The image must be H x W unless resizing is asked for: LMN_IMAGE_RESIZE_NEAREST samples the
 * source at pixel centres exactly as PIL's Image.resize((W, H), Image.NEAREST): output column x
 * reads source column floor(sx * (x + 0.5)) with sx = width_in / W, accumulated in double as PIL
 * accumulates it (rows likewise).
 */
#pragma once

#include <lamina/error.h>

G_BEGIN_DECLS

/**
 * LmnImageResize:
 * @LMN_IMAGE_RESIZE_NONE: an image of another size is an error
 * @LMN_IMAGE_RESIZE_NEAREST: nearest neighbour at pixel centres (PIL's Image.NEAREST)
 */
typedef enum {
    LMN_IMAGE_RESIZE_NONE,
    LMN_IMAGE_RESIZE_NEAREST,
} LmnImageResize;

/**
 * lmn_image_read:
 * @path: a PNG or JPEG file
 * @channels: 1 or 3
 * @height, @width: the size the model takes (> 0)
 * Decodes @path into @channels planes of @height x @width pixels (the rule above).
 * Returns: (transfer full): @channels * @height * @width bytes, channel-major, or NULL with
 *   LMN_DATA_ERROR_OPEN (unreadable), _FORMAT (neither PNG nor JPEG, corrupt or truncated, naming
 *   the decoder's message), _SHAPE (another size without resizing: the message names the file,
 *   its size and the model's and suggests --resize nearest; or a channel count other than 1 or
 *   3) or _DTYPE (a CMYK JPEG)
 */
guint8 *lmn_image_read(const char *path, gint64 channels, gint64 height, gint64 width,
                       LmnImageResize resize, GError **error);

G_END_DECLS
