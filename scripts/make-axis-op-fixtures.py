#!/usr/bin/python3
"""Record PyTorch values of the ABI 1.3 ops (axis reductions, broadcasting binary ops and their
gradients, the ABI 1.3 unary functions, row normalisation, the clamp gradient) for
tests/ops/test-cpu-ops-axis.c.

Run with Debian's Python (it has torch 1.13 and h5py):

    /usr/bin/python3 scripts/make-axis-op-fixtures.py [tests/fixtures/ops-axis.h5]

Groups (float32 datasets unless noted; attributes in brackets):

    /unary/<case>    [op (LmnUnaryOp value), alpha]  x, dy, y = f(x), dx = dy f'(x)
    /reduce/<case>   [op (LmnAxisReduceOp), outer, axis, inner]
                     x [outer, axis, inner], y [outer, inner], idx int32 (max only), dy, dx
    /bcast/<case>    [op (LmnBinaryOp)]  a, b (their own shapes, NumPy-broadcastable),
                     out = a OP b, dy (out's shape), da, db (summed to a's and b's shapes)
    /norm/<case>     [eps]  x [rows, cols], y, mean [rows], rstd [rows], dy, dx
    /clamp/<case>    [lo, hi]  x, dy, y = hardtanh(x), dx
    /topk/<case>     [outer, axis, inner, k]  x [outer, axis, inner], values, idx int32
                     [outer, k, inner] (torch.sort(dim=1, descending=True, stable=True)'s first
                     k, whose values torch.topk(dim=1) equals), dy, dx

/bcast holds every pair of disjoint broadcast-axis subsets of a and b for 1- to 4-D shapes
(the six ops in turn), operands of lower rank than the output, 5-D shapes, and ties
for maximum/minimum.  References are computed in float64 from the stored float32 inputs and
stored as float32.  Everything is seeded: every run writes the same values.
"""
import itertools
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

torch.manual_seed(20261202)
DT = torch.float64

UNARY = {"sqrt": 11, "rsqrt": 12, "reciprocal": 13, "exp": 14, "log": 15, "silu": 16, "mish": 17}
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum"]


def q(t):
    return t.to(torch.float32).to(DT)


def f32(t):
    return t.detach().to(torch.float32).numpy()


def rand(shape, lo=-1.0, hi=1.0):
    return q(torch.rand(shape, dtype=DT) * (hi - lo) + lo)


def write(g, **arrays):
    for k, v in arrays.items():
        if isinstance(v, torch.Tensor):
            v = v.detach()
            v = v.to(torch.int32).numpy() if k == "idx" else f32(v)
        g.create_dataset(k, data=v)


def unary_fn(name):
    return {
        "sqrt": torch.sqrt,
        "rsqrt": torch.rsqrt,
        "reciprocal": torch.reciprocal,
        "exp": torch.exp,
        "log": torch.log,
        "silu": F.silu,
        "mish": F.mish,
    }[name]


def write_unary(root):
    for name, op in UNARY.items():
        positive = name in ("sqrt", "rsqrt", "log", "reciprocal")
        x = rand((400,), 0.05, 6.0) if positive else rand((400,), -8.0, 8.0)
        if name in ("silu", "mish"):
            x[:6] = torch.tensor([0.0, 19.9, 20.1, 30.0, -30.0, -80.0], dtype=DT)
        if name == "reciprocal":
            x[200:] = -x[200:]
        x = x.clone().requires_grad_(True)
        dy = rand(x.shape)
        y = unary_fn(name)(x)
        y.backward(dy)
        g = root.create_group(name)
        g.attrs["op"] = op
        g.attrs["alpha"] = 0.0
        write(g, x=x, dy=dy, y=y, dx=x.grad)


def write_reduce(root):
    shapes = [(1, 5, 1), (3, 7, 1), (2, 6, 9), (1, 1, 4), (4, 65, 3), (4, 37, 50), (2, 3, 200)]
    for i, shape in enumerate(shapes):
        for name, op in (("sum", 0), ("mean", 1), ("max", 2)):
            x = rand(shape, -3, 3)
            if name == "max" and i == 2:
                x = torch.round(x)  # ties: the first maximum wins, as torch.max
            x = x.clone().requires_grad_(True)
            dy = rand((shape[0], shape[2]))
            idx = None
            if name == "sum":
                y = x.sum(dim=1)
            elif name == "mean":
                y = x.mean(dim=1)
            else:
                y, idx = x.max(dim=1)
            y.backward(dy)
            g = root.create_group(f"{name}-{'x'.join(map(str, shape))}")
            g.attrs["op"] = op
            g.attrs["outer"], g.attrs["axis"], g.attrs["inner"] = shape
            write(g, x=x, y=y, dy=dy, dx=x.grad)
            if idx is not None:
                write(g, idx=idx)


def binary(op, a, b):
    return {
        "add": torch.add,
        "sub": torch.sub,
        "mul": torch.mul,
        "div": torch.div,
        "maximum": torch.maximum,
        "minimum": torch.minimum,
    }[op](a, b)


def write_bcast_case(root, name, op, sa, sb, ties=False):
    a, b = rand(sa, -2, 2), rand(sb, -2, 2)
    if op == "div":
        b = torch.where(b.abs() < 0.25, torch.full_like(b, 0.5), b)
    if ties:
        a, b = torch.round(a * 2) / 2, torch.round(b * 2) / 2
    a, b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    out = binary(op, a, b)
    dy = rand(out.shape)
    out.backward(dy)
    g = root.create_group(name)
    g.attrs["op"] = BINARY.index(op)
    write(g, a=a, b=b, out=out, dy=dy, da=a.grad, db=b.grad)


def write_bcast(root):
    base = [2, 3, 2, 3]
    n = 0
    for nd in range(1, 5):
        dims = base[4 - nd:]
        # Each axis: broadcast in neither (0), in a (1) or in b (2).
        for pattern in itertools.product(range(3), repeat=nd):
            sa = [1 if p == 1 else d for p, d in zip(pattern, dims)]
            sb = [1 if p == 2 else d for p, d in zip(pattern, dims)]
            # Leading broadcast dims of a dropped: a has lower rank than the output.
            if nd > 1 and pattern[0] == 1 and n % 2 == 0:
                sa = sa[1:]
            op = BINARY[n % 6]
            tag = "".join(map(str, pattern))
            write_bcast_case(root, f"{nd}d-{tag}-{op}", op, sa, sb)
            n += 1
    for op in BINARY:
        write_bcast_case(root, f"5d-{op}", op, [2, 1, 3, 1, 4], [1, 3, 1, 2, 4])
        write_bcast_case(root, f"rank-{op}", op, [4, 5], [3, 1, 5])
        write_bcast_case(root, f"scalar-{op}", op, [1], [3, 4])
        write_bcast_case(root, f"unet-{op}", op, [4, 16, 3, 3], [1, 16, 1, 1])
    for op in ("maximum", "minimum"):
        write_bcast_case(root, f"ties-{op}", op, [4, 1, 6], [1, 5, 6], ties=True)


def write_norm(root):
    for rows, cols, eps in ((1, 1, 1e-5), (3, 10, 1e-5), (16, 49, 1e-5), (7, 300, 1e-3)):
        x = (rand((rows, cols), -3, 3) * 2 + 0.5).clone().requires_grad_(True)
        x = q(x.detach()).requires_grad_(True)
        dy = rand((rows, cols))
        var, mean = torch.var_mean(x.detach(), dim=1, unbiased=False)
        y = F.layer_norm(x, (cols,), eps=eps)
        y.backward(dy)
        g = root.create_group(f"{rows}x{cols}")
        g.attrs["eps"] = eps
        write(g, x=x, y=y, mean=mean, rstd=1.0 / torch.sqrt(var + eps), dy=dy, dx=x.grad)


def write_clamp(root):
    for lo, hi in ((-1.0, 1.0), (-0.5, 2.0)):
        x = rand((500,), -3, 3)
        x[:4] = torch.tensor([lo, hi, 0.0, hi + 1], dtype=DT)
        x = x.clone().requires_grad_(True)
        dy = rand(x.shape)
        y = F.hardtanh(x, lo, hi)
        y.backward(dy)
        g = root.create_group(f"{lo}_{hi}")
        g.attrs["lo"], g.attrs["hi"] = lo, hi
        write(g, x=x, dy=dy, y=y, dx=x.grad)


def write_topk(root):
    for outer, axis, inner, k in ((1, 5, 1, 1), (3, 7, 1, 3), (2, 9, 4, 9), (4, 33, 3, 5),
                                  (2, 64, 2, 64)):
        x = rand((outer, axis, inner), -3, 3)
        x = torch.round(x * 2) / 2  # ties: the lower index first
        if axis > 5:
            x[0, 2, 0] = float("nan")  # NaN sorts above every number
        x = x.clone().requires_grad_(True)
        # torch.topk leaves the order of equal values unspecified (and its CPU kernel does not
        # keep the lower index first for larger k); Lamina's order is a stable descending sort's.
        idx = torch.sort(x.detach(), dim=1, descending=True, stable=True).indices[:, :k]
        values = torch.gather(x, 1, idx)
        ref = torch.topk(x.detach(), k, dim=1, largest=True, sorted=True).values
        assert torch.equal(torch.nan_to_num(values.detach(), 9.0), torch.nan_to_num(ref, 9.0))
        dy = rand(values.shape)
        values.backward(dy)
        g = root.create_group(f"{outer}x{axis}x{inner}-k{k}")
        g.attrs["outer"], g.attrs["axis"], g.attrs["inner"], g.attrs["k"] = outer, axis, inner, k
        write(g, x=x, values=values, idx=idx, dy=dy, dx=x.grad)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/ops-axis.h5"
    # The latest format keeps the per-dataset overhead of a few hundred small datasets small.
    with h5py.File(path, "w", libver="latest") as f:
        for name, fn in (("unary", write_unary), ("reduce", write_reduce), ("bcast", write_bcast),
                         ("norm", write_norm), ("clamp", write_clamp),
                         ("topk", write_topk)):
            fn(f.create_group(name))


if __name__ == "__main__":
    main()
