#!/usr/bin/python3
"""Record PyTorch's nn.PReLU forward and backward values for the out-of-tree layer example
(examples/plugin-layer, checked by its prelu-check program in tests/e2e/out-of-tree-layer.sh).

Run with Debian's Python (it has torch and h5py):

    /usr/bin/python3 scripts/make-prelu-fixtures.py [tests/fixtures/prelu.h5]

Every case is a group; its attribute num_parameters is nn.PReLU's (and the layer's key):

    /<case>            attrs: num_parameters
      x, dy            float32 [N, C, ...]   input and output gradient
      weight           float32 [num_parameters]  the slopes (fixed, not the 0.25 default)
      y, dx            float32 [N, C, ...]   nn.PReLU(x) and its input gradient for dy
      dweight          float32 [num_parameters]

Inputs include exact zeros, where PyTorch takes the slope's branch.  Values are computed in
float64 from float32 inputs and stored as float32, so they are the correctly rounded reference.
Everything is seeded: the file is the same on every run.
"""
import sys

import h5py
import numpy as np
import torch


def case(f, name, shape, num_parameters, gen):
    x = torch.randn(*shape, generator=gen, dtype=torch.float32)
    x.view(-1)[::7] = 0.0  # the kink: PyTorch's gradients take the x <= 0 branch there
    dy = torch.randn(*shape, generator=gen, dtype=torch.float32)
    weight = torch.rand(num_parameters, generator=gen, dtype=torch.float32) * 1.5 - 0.5
    m = torch.nn.PReLU(num_parameters=num_parameters).double()
    with torch.no_grad():
        m.weight.copy_(weight.double())
    xd = x.double().requires_grad_(True)
    y = m(xd)
    y.backward(dy.double())
    g = f.create_group(name)
    g.attrs["num_parameters"] = np.int64(num_parameters)
    for key, value in [("x", x), ("dy", dy), ("weight", weight), ("y", y.detach()),
                       ("dx", xd.grad), ("dweight", m.weight.grad)]:
        g.create_dataset(key, data=value.numpy().astype(np.float32))


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/prelu.h5"
    gen = torch.Generator().manual_seed(20151206)
    with h5py.File(path, "w") as f:
        case(f, "channels-4d", (3, 4, 5, 2), 4, gen)  # per channel, [N, C, H, W]
        case(f, "channels-2d", (5, 6), 6, gen)        # per feature, after a dense layer
        case(f, "shared-4d", (3, 4, 5, 2), 1, gen)    # one slope
        case(f, "shared-1d", (7, 9), 1, gen)


if __name__ == "__main__":
    main()
