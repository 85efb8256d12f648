#!/usr/bin/python3
"""Record PyTorch forward and backward values of Lamina's layer_norm, group_norm, instance_norm,
multiply, subtract, scale, mean, sum, silu, mish, hardtanh and log_softmax layers for
tests/layers/test-ext-layers.c.

Run with Debian's Python (it has torch 1.13 and h5py):

    /usr/bin/python3 scripts/make-ext-layer-fixtures.py [tests/fixtures/layers-ext.h5]

Every case is a group /<case> with attributes
    type       the Lamina layer type
    params     its hyperparameters under Lamina's key names, "key=value;key=value" ("" for none)
and float32 datasets
    x0, x1     the inputs [N, ...] (x1 only for two-input layers)
    dy, y      the output gradient and the PyTorch output
    dx0, dx1   the input gradients
    param_<name>, grad_<name>   each parameter in Lamina's order with its gradient

Values are computed in float64 from the stored float32 inputs and stored as float32.
Everything is seeded: every run writes the same values.
"""
import sys

import h5py
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(20261202)
DT = torch.float64


def q(t):
    return t.to(torch.float32).to(DT)


def f32(t):
    return t.detach().to(torch.float32).numpy()


def rand(*shape, lo=-2.0, hi=2.0):
    return q(torch.rand(shape, dtype=DT) * (hi - lo) + lo)


def record(f, name, ltype, params, fn, inputs, module_params=()):
    """fn(*inputs) -> output; module_params: (name, tensor) in Lamina's parameter order."""
    xs = [x.clone().requires_grad_(True) for x in inputs]
    ps = [(n, q(p.detach()).clone().requires_grad_(True)) for n, p in module_params]
    y = fn(*xs, *[p for _, p in ps])
    dy = rand(*y.shape, lo=-1.0, hi=1.0)
    y.backward(dy)
    g = f.create_group(name)
    g.attrs["type"] = ltype
    g.attrs["params"] = params
    for i, x in enumerate(xs):
        g.create_dataset(f"x{i}", data=f32(x))
        g.create_dataset(f"dx{i}", data=f32(x.grad))
    g.create_dataset("y", data=f32(y))
    g.create_dataset("dy", data=f32(dy))
    for n, p in ps:
        g.create_dataset(f"param_{n}", data=f32(p))
        g.create_dataset(f"grad_{n}", data=f32(p.grad))


def affine(shape):
    return [("weight", rand(*shape, lo=0.5, hi=1.5)), ("bias", rand(*shape, lo=-0.5, hi=0.5))]


def write_norms(f):
    x = rand(3, 4, 5) * 3 + 1
    record(f, "layer_norm", "layer_norm", "", lambda x, w, b: F.layer_norm(x, (5,), w, b, 1e-5),
           [x], affine((5,)))
    record(f, "layer_norm-2d", "layer_norm", "normalized_dims=2;eps=1e-3",
           lambda x, w, b: F.layer_norm(x, (4, 5), w, b, 1e-3), [x], affine((4, 5)))
    record(f, "layer_norm-nobias", "layer_norm", "bias=false",
           lambda x, w: F.layer_norm(x, (5,), w, None, 1e-5), [x], affine((5,))[:1])
    record(f, "layer_norm-plain", "layer_norm", "elementwise_affine=false",
           lambda x: F.layer_norm(x, (5,), None, None, 1e-5), [x])
    x = rand(2, 6, 3, 3)
    record(f, "group_norm", "group_norm", "groups=3",
           lambda x, w, b: F.group_norm(x, 3, w, b, 1e-5), [x], affine((6,)))
    record(f, "group_norm-plain", "group_norm", "groups=2;affine=false",
           lambda x: F.group_norm(x, 2, None, None, 1e-5), [x])
    record(f, "instance_norm", "instance_norm", "",
           lambda x: F.instance_norm(x, eps=1e-5), [x])
    record(f, "instance_norm-affine", "instance_norm", "affine=true",
           lambda x, w, b: F.instance_norm(x, weight=w, bias=b, eps=1e-5), [rand(3, 4, 7)],
           affine((4,)))


def write_merges(f):
    record(f, "multiply", "multiply", "", torch.mul, [rand(2, 3, 1, 5), rand(2, 3, 4, 1)])
    record(f, "multiply-channel", "multiply", "", torch.mul, [rand(2, 4, 3, 3), rand(2, 4, 1, 1)])
    record(f, "subtract", "subtract", "", torch.sub, [rand(3, 1, 4), rand(3, 5, 4)])
    x = rand(2, 3, 4)
    record(f, "scale", "scale", "value=0.5", lambda x, w: x * w, [x],
           [("weight", torch.tensor([0.75], dtype=DT))])
    record(f, "scale-channel", "scale", "per_channel=true",
           lambda x, w: x * w.view(1, 3, 1), [x], [("weight", rand(3, lo=0.5, hi=2.0))])
    record(f, "scale-constant", "scale", "learnable=false;value=-1.5", lambda x: -1.5 * x, [x])


def write_reductions(f):
    x = rand(2, 3, 4, 5)
    record(f, "mean", "mean", "axis=1", lambda x: x.mean(dim=2), [x])
    record(f, "mean-keepdim", "mean", "axis=-1;keepdim=true",
           lambda x: x.mean(dim=-1, keepdim=True), [x])
    record(f, "sum", "sum", "axis=0", lambda x: x.sum(dim=1), [x])
    record(f, "sum-1d", "sum", "", lambda x: x.sum(dim=-1), [rand(3, 6)])


def write_activations(f):
    x = rand(3, 40, lo=-25.0, hi=25.0)
    record(f, "silu", "silu", "", F.silu, [x])
    record(f, "mish", "mish", "", F.mish, [x])
    record(f, "hardtanh", "hardtanh", "", F.hardtanh, [rand(3, 40)])
    record(f, "hardtanh-bounds", "hardtanh", "min_val=-0.5;max_val=1.5",
           lambda x: F.hardtanh(x, -0.5, 1.5), [rand(3, 40)])
    record(f, "log_softmax", "log_softmax", "", lambda x: F.log_softmax(x, dim=-1),
           [rand(3, 2, 7, lo=-5.0, hi=5.0)])
    big = rand(2, 9, lo=-5.0, hi=5.0)
    big[0, 0] = 120.0  # large logits: exp would overflow without subtracting the maximum
    record(f, "log_softmax-large", "log_softmax", "", lambda x: F.log_softmax(x, dim=-1), [big])


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/layers-ext.h5"
    with h5py.File(path, "w", libver="latest") as f:
        write_norms(f)
        write_merges(f)
        write_reductions(f)
        write_activations(f)


if __name__ == "__main__":
    main()
