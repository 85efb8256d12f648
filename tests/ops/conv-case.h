/* A convolution test case and its LmnConv2dDesc, shared by the convolution op tests (CPU ops,
 * the CPU backend's oneDNN path, Vulkan ops). */
#pragma once

#include <lamina/ops.h>

typedef struct {
    const char *name;
    gint64 n, c, h, w, k, kh, kw, sh, sw, ph, pw, dh, dw, groups;
} ConvCase;

/* The descriptor of @cc, its output size as PyTorch computes it (floor division). */
static inline LmnConv2dDesc conv_case_desc(const ConvCase *cc)
{
    LmnConv2dDesc d = {.struct_size = sizeof d,
                       .n = cc->n,
                       .c = cc->c,
                       .h = cc->h,
                       .w = cc->w,
                       .k = cc->k,
                       .kernel_h = cc->kh,
                       .kernel_w = cc->kw,
                       .stride_h = cc->sh,
                       .stride_w = cc->sw,
                       .pad_h = cc->ph,
                       .pad_w = cc->pw,
                       .dilation_h = cc->dh,
                       .dilation_w = cc->dw,
                       .groups = cc->groups};
    d.out_h = (d.h + 2 * d.pad_h - d.dilation_h * (d.kernel_h - 1) - 1) / d.stride_h + 1;
    d.out_w = (d.w + 2 * d.pad_w - d.dilation_w * (d.kernel_w - 1) - 1) / d.stride_w + 1;
    return d;
}
