#!/usr/bin/python3
"""Record PyTorch's forward and backward of Lamina's spatial layers for its tests.

Run with Debian's Python (it has torch and h5py):

    /usr/bin/python3 scripts/make-spatial-layer-fixtures.py [tests/fixtures/layers-spatial.h5]

The layout is that of scripts/make-layer-fixtures.py, one group per case:

    /<case>              attrs: type (the Lamina layer type), params (the layer's config keys as
                                "key=value;key=value"), training (0 or 1)
      x                  float32 [N, per-sample shape]   the input
      r                  float32 like y                  the fixed random weights of the objective
      y                  float32                         the output
      dx                 float32 like x                  d sum(y * r) / dx
      param/<name>       float32, PyTorch's names and shapes (weight, bias)
      grad/<name>        float32                         d sum(y * r) / d param

and /unpool_<case> for max_unpool2d, which needs the maxpool2d it undoes (unpool_cases).

Every reference is computed in float64 from the float32 values stored, so the file is an oracle
for a float32 implementation.  Everything is seeded: the file is the same on every run.
"""
import sys

import h5py
import torch
import torch.nn.functional as F

torch.manual_seed(20261202)
GEN = torch.Generator().manual_seed(5151)


def rand(*shape):
    """float32 values rounded through float32, returned as float64 tensors."""
    return torch.randn(*shape, generator=GEN, dtype=torch.float32).double()


def rounded(m):
    """A fresh module in float64 whose parameters are float32 values."""
    m = m.double()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.float().double())
    return m


def convt_case(in_shape, lamina_params, **kw):
    m = rounded(torch.nn.ConvTranspose2d(in_shape[1], **kw))
    return "conv_transpose2d", lamina_params, m, rand(*in_shape)


class Pad(torch.nn.Module):
    def __init__(self, pad, mode, value=0.0):
        super().__init__()
        self.pad, self.mode, self.value = pad, mode, value

    def forward(self, x):
        if self.mode == "constant":
            return F.pad(x, self.pad, mode="constant", value=self.value)
        return F.pad(x, self.pad, mode=self.mode)


class Crop(torch.nn.Module):
    def __init__(self, left, right, top, bottom):
        super().__init__()
        self.c = (left, right, top, bottom)

    def forward(self, x):
        l, r, t, b = self.c
        return x[:, :, t:x.shape[2] - b, l:x.shape[3] - r]


def prelu(m):
    """nn.PReLU with slopes of both signs instead of the default 0.25, as float32 values."""
    m = m.double()
    with torch.no_grad():
        m.weight.copy_((0.6 * rand(*m.weight.shape)).float().double())
    return m


class Slice(torch.nn.Module):
    """x[..., start:end, ...] along per-sample axis @axis (the batch is dimension 0)."""

    def __init__(self, axis, start, end):
        super().__init__()
        self.axis, self.start, self.end = axis, start, end

    def forward(self, x):
        dim = self.axis + 1 if self.axis >= 0 else self.axis
        index = [slice(None)] * x.dim()
        index[dim] = slice(self.start, self.end)
        return x[tuple(index)]


def cases():
    yield "convt_basic", convt_case((2, 3, 4, 5), "out_channels=4;kernel_size=3",
                                    out_channels=4, kernel_size=3)
    yield "convt_stride_padding", convt_case(
        (2, 3, 4, 3), "out_channels=2;kernel_size=3, 2;stride=2;padding=1, 0;output_padding=1",
        out_channels=2, kernel_size=(3, 2), stride=2, padding=(1, 0), output_padding=1)
    yield "convt_dilation_groups", convt_case(
        (3, 4, 3, 4), "out_channels=6;kernel_size=2, 3;dilation=2;groups=2;stride=1, 2",
        out_channels=6, kernel_size=(2, 3), dilation=2, groups=2, stride=(1, 2))
    # output_padding may reach the stride when it stays below the dilation (PyTorch's rule).
    yield "convt_output_padding_dilation", convt_case(
        (2, 2, 3, 3), "out_channels=3;kernel_size=2;dilation=3;output_padding=2",
        out_channels=3, kernel_size=2, dilation=3, output_padding=2)
    yield "convt_1x1_no_bias", convt_case((2, 4, 3, 5), "out_channels=3;kernel_size=1;bias=false",
                                          out_channels=3, kernel_size=1, bias=False)
    yield "dense_3d", ("dense", "units=5", rounded(torch.nn.Linear(4, 5)), rand(2, 3, 2, 4))
    yield "pad_constant", ("pad", "padding=1, 2, 0, 3;value=0.5", Pad((1, 2, 0, 3), "constant",
                                                                      0.5), rand(2, 3, 4, 5))
    yield "pad_reflect", ("pad", "padding=2, 1, 3, 1;mode=reflect",
                          Pad((2, 1, 3, 1), "reflect"), rand(2, 2, 5, 4))
    yield "pad_replicate", ("pad", "padding=3, 0, 1, 2;mode=replicate",
                            Pad((3, 0, 1, 2), "replicate"), rand(2, 2, 3, 4))
    yield "crop", ("crop", "cropping=1, 2, 0, 3", Crop(1, 2, 0, 3), rand(2, 3, 6, 5))
    yield "slice_middle", ("slice", "axis=1;start=1;end=-1", Slice(1, 1, -1), rand(2, 3, 5, 4))
    yield "slice_last", ("slice", "axis=-1;start=2", Slice(-1, 2, None), rand(3, 4, 6))
    yield "prelu_one", ("prelu", "", prelu(torch.nn.PReLU()), rand(2, 3, 4, 5))
    yield "prelu_channels", ("prelu", "num_parameters=3", prelu(torch.nn.PReLU(3)),
                             rand(2, 3, 4, 5))
    yield "prelu_features", ("prelu", "num_parameters=16", prelu(torch.nn.PReLU(16)),
                             rand(4, 16))
    lrn = torch.nn.LocalResponseNorm
    yield "lrn_size5", ("local_response_norm", "size=5;alpha=0.01;beta=0.75;k=2",
                        lrn(5, alpha=0.01, beta=0.75, k=2.0), 2.0 * rand(2, 7, 3, 4))
    # An even window is asymmetric (size/2 channels before, (size-1)/2 after).
    yield "lrn_size2", ("local_response_norm", "size=2;alpha=0.5;beta=0.6;k=1.5",
                        lrn(2, alpha=0.5, beta=0.6, k=1.5), rand(2, 4, 2, 3))
    yield "lrn_1d", ("local_response_norm", "size=3", lrn(3), 10.0 * rand(3, 5, 4))
    up = torch.nn.Upsample
    yield "upsample_nearest", ("upsample", "scale_factor=2", up(scale_factor=2), rand(2, 3, 3, 4))
    # A scale factor whose output size is rounded down: the source scale is 1 / 1.5, not in / out.
    yield "upsample_nearest_fraction", ("upsample", "scale_factor=1.5, 2.5",
                                        up(scale_factor=(1.5, 2.5)), rand(2, 2, 3, 3))
    yield "upsample_nearest_size", ("upsample", "size=5, 7", up(size=(5, 7)), rand(2, 2, 3, 4))
    yield "upsample_bilinear", ("upsample", "mode=bilinear;scale_factor=2",
                                up(scale_factor=2, mode="bilinear"), rand(2, 3, 3, 4))
    yield "upsample_bilinear_align", ("upsample", "mode=bilinear;size=7, 5;align_corners=true",
                                      up(size=(7, 5), mode="bilinear", align_corners=True),
                                      rand(2, 2, 3, 4))
    yield "upsample_bilinear_down", ("upsample", "mode=bilinear;size=3, 2",
                                     up(size=(3, 2), mode="bilinear"), rand(2, 2, 5, 7))


def unpool_cases(f):
    """max_unpool2d after the maxpool2d it names: /unpool_<case> with attrs pool (the maxpool2d's
    keys), x, y = unpool(pool(x)), r and dx = d sum(y * r) / dx through both layers."""
    for name, shape, k, st, pad in (("unpool_basic", (2, 3, 6, 7), 2, 2, 0),
                                    ("unpool_padded", (2, 2, 7, 8), 3, 3, 1)):
        x = rand(*shape).requires_grad_(True)
        pooled, idx = F.max_pool2d(x, k, st, pad, return_indices=True)
        y = F.max_unpool2d(pooled, idx, k, st, pad, output_size=shape[2:])
        r = rand(*y.shape)
        (y * r).sum().backward()
        g = f.create_group(name)
        g.attrs["pool"] = "kernel_size=%d;stride=%d;padding=%d" % (k, st, pad)
        g.create_dataset("x", data=x.detach().float().numpy())
        g.create_dataset("y", data=y.detach().float().numpy())
        g.create_dataset("r", data=r.float().numpy())
        g.create_dataset("dx", data=x.grad.float().numpy())


def store(f, name, layer_type, params, module, x):
    g = f.create_group(name)
    g.attrs["type"] = layer_type
    g.attrs["params"] = params
    g.attrs["training"] = 1
    x = x.clone().requires_grad_(True)
    y = module(x)
    r = rand(*y.shape)
    (y * r).sum().backward()
    g.create_dataset("x", data=x.detach().float().numpy())
    g.create_dataset("r", data=r.float().numpy())
    g.create_dataset("y", data=y.detach().float().numpy())
    g.create_dataset("dx", data=x.grad.float().numpy())
    for pname, p in module.named_parameters():
        g.create_dataset("param/" + pname, data=p.detach().float().numpy())
        g.create_dataset("grad/" + pname, data=p.grad.float().numpy())


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/layers-spatial.h5"
    with h5py.File(path, "w") as f:
        f.attrs["generator"] = ("scripts/make-spatial-layer-fixtures.py (torch %s)"
                                % torch.__version__)
        for name, (layer_type, params, module, x) in cases():
            store(f, name, layer_type, params, module, x)
        unpool_cases(f)
    print("wrote", path)


if __name__ == "__main__":
    main()
