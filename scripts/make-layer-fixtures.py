#!/usr/bin/python3
"""Record PyTorch's forward and backward of the convolutional-network layers for Lamina's tests.

Run with Debian's Python (it has torch 1.13 and h5py):

    /usr/bin/python3 scripts/make-layer-fixtures.py [tests/fixtures/layers-cnn.h5]

Layout of the file, one group per case:

    /<case>              attrs: type (the Lamina layer type), params (the layer's config keys as
                                "key=value;key=value"), training (0 or 1)
      x                  float32 [N, per-sample shape]   the input
      r                  float32 like y                  the fixed random weights of the objective
      y                  float32                         the output
      dx                 float32 like x                  d sum(y * r) / dx
      param/<name>       float32, PyTorch's names and shapes (weight, bias)
      grad/<name>        float32                         d sum(y * r) / d param
      buffer/<name>      float32   buffers before the forward pass (running_mean, running_var)
      buffer_after/<name> float32  buffers after it (the running-statistics update)

Every reference is computed in float64 from the float32 values stored, so the file is an oracle
for a float32 implementation, not a second float32 implementation.  Everything is seeded: the
file is the same on every run.
"""
import sys

import h5py
import numpy as np
import torch

torch.manual_seed(20240601)
GEN = torch.Generator().manual_seed(4242)


def rand(*shape):
    """float32 values rounded through float32, returned as float64 tensors."""
    return torch.randn(*shape, generator=GEN, dtype=torch.float32).double()


def conv_case(in_shape, lamina_params, **kw):
    n, c = in_shape[0], in_shape[1]
    m = torch.nn.Conv2d(c, **kw).double()
    with torch.no_grad():
        # Parameters of a fresh module, rounded to float32 so both sides start from the same.
        for p in m.parameters():
            p.copy_(p.float().double())
    return "conv2d", lamina_params, m, rand(*in_shape), True


def bn_case(module, in_shape, lamina_params, training, affine=True):
    m = module.double()
    with torch.no_grad():
        if affine:
            m.weight.copy_(1.0 + 0.5 * rand(*m.weight.shape))
            m.bias.copy_(0.5 * rand(*m.bias.shape))
        m.running_mean.copy_(0.3 * rand(*m.running_mean.shape))
        m.running_var.copy_(0.5 + torch.rand(*m.running_var.shape, generator=GEN).double())
    # Inputs with a non-zero mean and non-unit scale per channel, as real activations have.
    x = 2.0 * rand(*in_shape) + 0.7
    x = x.float().double()
    return "batch_norm", lamina_params, m, x, training


class GlobalAvgPool(torch.nn.Module):
    def forward(self, x):
        return torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1)


def cases():
    yield "conv_basic", conv_case((2, 3, 7, 6), "out_channels=4;kernel_size=3",
                                  out_channels=4, kernel_size=3)
    yield "conv_stride_padding", conv_case(
        (3, 2, 9, 8), "out_channels=5;kernel_size=3, 2;stride=2;padding=1, 2",
        out_channels=5, kernel_size=(3, 2), stride=2, padding=(1, 2))
    yield "conv_dilation", conv_case((2, 3, 8, 9), "out_channels=4;kernel_size=3;dilation=2;"
                                     "padding=1;stride=1, 2", out_channels=4, kernel_size=3,
                                     dilation=2, padding=1, stride=(1, 2))
    yield "conv_groups", conv_case((2, 4, 6, 7), "out_channels=6;kernel_size=3;groups=2;"
                                   "padding=1", out_channels=6, kernel_size=3, groups=2,
                                   padding=1)
    yield "conv_no_bias", conv_case((2, 3, 5, 5), "out_channels=4;kernel_size=2;bias=false",
                                    out_channels=4, kernel_size=2, bias=False)
    yield "conv_1x1_groups", conv_case((3, 4, 5, 3), "out_channels=6;kernel_size=1;groups=2",
                                       out_channels=6, kernel_size=1, groups=2)
    yield "maxpool", ("maxpool2d", "kernel_size=2", torch.nn.MaxPool2d(2),
                      rand(2, 3, 8, 7), True)
    yield "maxpool_stride_padding", ("maxpool2d", "kernel_size=3;stride=2;padding=1",
                                     torch.nn.MaxPool2d(3, stride=2, padding=1),
                                     rand(2, 2, 9, 8), True)
    yield "maxpool_dilation", ("maxpool2d", "kernel_size=2, 3;stride=1;dilation=2",
                               torch.nn.MaxPool2d((2, 3), stride=1, dilation=2),
                               rand(2, 2, 7, 8), True)
    yield "avgpool", ("avgpool2d", "kernel_size=2", torch.nn.AvgPool2d(2), rand(2, 3, 8, 7),
                      True)
    yield "avgpool_stride_padding", ("avgpool2d", "kernel_size=3;stride=2;padding=1",
                                     torch.nn.AvgPool2d(3, stride=2, padding=1),
                                     rand(2, 2, 9, 8), True)
    yield "global_avgpool", ("global_avgpool", "", GlobalAvgPool(), rand(3, 4, 5, 6), True)
    yield "batch_norm_2d_train", bn_case(torch.nn.BatchNorm2d(3), (4, 3, 5, 6), "", True)
    yield "batch_norm_1d_train", bn_case(torch.nn.BatchNorm1d(6, momentum=0.3), (8, 6),
                                         "momentum=0.3", True)
    yield "batch_norm_2d_eval", bn_case(torch.nn.BatchNorm2d(3, eps=1e-3), (4, 3, 5, 6),
                                        "eps=0.001", False)
    yield "batch_norm_2d_no_affine", bn_case(torch.nn.BatchNorm2d(2, affine=False),
                                             (3, 2, 4, 5), "affine=false", True, affine=False)


def store(f, name, layer_type, params, module, x, training):
    g = f.create_group(name)
    g.attrs["type"] = layer_type
    g.attrs["params"] = params
    g.attrs["training"] = int(training)
    module.train(training)
    for bname, b in module.named_buffers():
        if bname != "num_batches_tracked":
            g.create_dataset("buffer/" + bname, data=b.float().numpy())
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
    for bname, b in module.named_buffers():
        if bname != "num_batches_tracked":
            g.create_dataset("buffer_after/" + bname, data=b.float().numpy())


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/layers-cnn.h5"
    with h5py.File(path, "w") as f:
        f.attrs["generator"] = "scripts/make-layer-fixtures.py (torch %s)" % torch.__version__
        for name, (layer_type, params, module, x, training) in cases():
            store(f, name, layer_type, params, module.double(), x, training)
    print("wrote", path)


if __name__ == "__main__":
    main()
