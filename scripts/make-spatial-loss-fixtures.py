#!/usr/bin/python3
"""Record PyTorch's values of softmax_cross_entropy in its general form (plugins/layers/
xent-pixel.c: per-pixel logits, ignore_index, class weights, label smoothing), of
binary_cross_entropy_with_logits with pos_weight and of the dice loss (plugins/layers/
mask-losses.c) for tests/layers/test-losses.c.

Run with Debian's Python (it has torch and h5py):

    /usr/bin/python3 scripts/make-spatial-loss-fixtures.py [tests/fixtures/losses-spatial.h5]

Every case is a group; attributes give Lamina's keys and values, ';'-separated:

    /<case>            attrs: type, keys, values
      x                float32 [N, C, d1..dk]  logits
      labels           int32 [N] (k = 0) or float32 [N, d1..dk] (per-pixel labels) class indices
                       (softmax_cross_entropy)
      t                float32 [N, ...]        the mask (binary_cross_entropy_with_logits, dice)
      loss             float32 []              the loss
      dx, dt           float32                 its gradients (dt for the mask losses)

dice is 1 - (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth) with p = sigmoid(x) over the
whole batch, written out in torch (autograd gives the gradients).

Values are computed in float64 from the stored float32 logits and stored as float32.  Everything
is seeded: the file is the same on every run.
"""
import sys

import h5py
import torch

DT = torch.float64


def case(f, name, shape, gen, ignore=None, weight=None, smoothing=0.0, n_ignored=0):
    n, c = shape[0], shape[1]
    x = ((torch.rand(shape, generator=gen, dtype=DT) * 2 - 1) * 4).to(torch.float32).to(DT)
    labels = torch.randint(0, c, (n,) + tuple(shape[2:]), generator=gen)
    if ignore is not None:
        flat = labels.view(-1)
        pick = torch.randperm(flat.numel(), generator=gen)[:n_ignored]
        flat[pick] = ignore
    kwargs, keys, values = {}, [], []
    if ignore is not None:
        kwargs["ignore_index"] = ignore
        keys.append("ignore_index")
        values.append(str(ignore))
    if weight is not None:
        kwargs["weight"] = torch.tensor(weight, dtype=DT)
        keys.append("class_weight")
        values.append(", ".join(repr(w) for w in weight))
    if smoothing:
        kwargs["label_smoothing"] = smoothing
        keys.append("label_smoothing")
        values.append(repr(smoothing))
    xr = x.clone().requires_grad_(True)
    loss = torch.nn.CrossEntropyLoss(**kwargs)(xr, labels)
    loss.backward()
    g = f.create_group(name)
    g.attrs["type"] = "softmax_cross_entropy"
    g.attrs["keys"] = ";".join(keys)
    g.attrs["values"] = ";".join(values)
    g.create_dataset("x", data=xr.detach().to(torch.float32).numpy())
    spatial = len(shape) > 2
    g.create_dataset("labels", data=(labels.to(torch.float32) if spatial
                                     else labels.to(torch.int32)).numpy())
    g.create_dataset("loss", data=loss.detach().to(torch.float32).numpy())
    g.create_dataset("dx", data=xr.grad.to(torch.float32).numpy())


def mask_case(f, name, type_, shape, gen, key="", value="", module=None):
    x = ((torch.rand(shape, generator=gen, dtype=DT) * 2 - 1) * 4).to(torch.float32).to(DT)
    t = (torch.rand(shape, generator=gen, dtype=DT) < 0.4).to(DT)
    # soft targets too: a mask in [0, 1]
    t.view(-1)[::7] = 0.25
    xr = x.clone().requires_grad_(True)
    tr = t.clone().requires_grad_(True)
    loss = module(xr, tr)
    loss.backward()
    g = f.create_group(name)
    g.attrs["type"] = type_
    g.attrs["keys"] = key
    g.attrs["values"] = value
    for k, v in (("x", xr), ("t", tr), ("loss", loss), ("dx", xr.grad), ("dt", tr.grad)):
        g.create_dataset(k, data=v.detach().to(torch.float32).numpy())


def dice(smooth):
    def f(x, t):
        p = torch.sigmoid(x)
        return 1 - (2 * (p * t).sum() + smooth) / (p.sum() + t.sum() + smooth)
    return f


def main(path):
    gen = torch.Generator().manual_seed(20261202)
    with h5py.File(path, "w") as f:
        f.attrs["generator"] = "scripts/make-spatial-loss-fixtures.py, torch " + torch.__version__
        case(f, "1d-weight", (6, 5), gen, weight=[0.5, 2.0, 1.0, 0.25, 3.0])
        case(f, "1d-ignore", (8, 5), gen, ignore=2, n_ignored=0)
        case(f, "1d-weight-smooth", (6, 4), gen, weight=[1.5, 0.5, 1.0, 2.0], smoothing=0.1)
        case(f, "2d", (3, 4, 5, 6), gen)
        case(f, "2d-smooth", (2, 3, 4, 4), gen, smoothing=0.2)
        case(f, "2d-ignore", (3, 4, 5, 6), gen, ignore=-1, n_ignored=17)
        case(f, "2d-all", (2, 5, 3, 7), gen, ignore=255, n_ignored=9,
             weight=[0.2, 1.0, 3.0, 0.7, 1.3], smoothing=0.15)
        case(f, "1d-seq", (2, 3, 7), gen, ignore=-100, n_ignored=3, weight=[1.0, 2.0, 0.5])
        case(f, "3d", (2, 3, 2, 3, 4), gen)
        mask_case(f, "bce-pos-weight", "binary_cross_entropy_with_logits", (4, 3, 5, 5), gen,
                  "pos_weight", "0.5, 2.0, 3.5",
                  torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([0.5, 2.0, 3.5],
                                                                     dtype=DT).view(3, 1, 1)))
        mask_case(f, "bce-pos-weight-1", "binary_cross_entropy_with_logits", (6, 7), gen,
                  "pos_weight", "2.5",
                  torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([2.5], dtype=DT)))
        mask_case(f, "bce-pos-weight-classes", "binary_cross_entropy_with_logits", (5, 4), gen,
                  "pos_weight", "1.0, 0.2, 4.0, 1.5",
                  torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([1.0, 0.2, 4.0, 1.5],
                                                                     dtype=DT)))
        mask_case(f, "dice", "dice", (3, 1, 6, 6), gen, module=dice(1.0))
        mask_case(f, "dice-smooth", "dice", (4, 10), gen, "smooth", "0.01", module=dice(0.01))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/losses-spatial.h5")
