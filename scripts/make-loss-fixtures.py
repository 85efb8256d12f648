#!/usr/bin/python3
"""Record PyTorch's values of the loss layers in plugins/layers/robust-losses.c (l1, huber,
smooth_l1, nll, kl_div) for tests/layers/test-losses.c.

Run with Debian's Python (it has torch and h5py):

    /usr/bin/python3 scripts/make-loss-fixtures.py [tests/fixtures/losses.h5]

Every case is a group; attributes give the layer type and its one hyperparameter under Lamina's
key name ("" when none):

    /<case>            attrs: type, key, value
      x                float32 [N, ...]  prediction (log-probabilities [N, K] for nll)
      t                float32 [N, ...]  target (regression losses)
      labels           int32 [N]         class labels (nll)
      loss             float32 []        the module's mean loss
      dx, dt           float32           its gradients (dt for the regression losses)

Inputs include exact matches (x = t) and differences exactly at the huber / smooth_l1 band edge,
where PyTorch's branches meet (see regression() for the one point left out).  Values are computed in float64 from the stored float32 inputs and
stored as float32.  Everything is seeded: the file is the same on every run.
"""
import sys

import h5py
import torch

DT = torch.float64


def q(t):
    return t.to(torch.float32).to(DT)


def f32(t):
    return t.detach().to(torch.float32).numpy()


def regression(f, name, type_, key, value, module, shape, scale, gen):
    x = q((torch.rand(shape, generator=gen, dtype=DT) * 2 - 1) * scale)
    t = q((torch.rand(shape, generator=gen, dtype=DT) * 2 - 1) * scale)
    flat_x, flat_t = x.view(-1), t.view(-1)
    # A perfect prediction: l1's subgradient there is 0.  Not for smooth_l1 with beta = 0: torch
    # 1.13's gradient at x = t is then -1 / N, where nn.L1Loss's (and Lamina's, which treats
    # beta = 0 as l1) is 0.
    if not (type_ == "smooth_l1" and value == "0"):
        flat_t[0] = flat_x[0]
    if value not in ("", "0"):
        edge = float(value)
        flat_t[1] = flat_x[1] - edge  # exactly on the band's edge
    xr = x.clone().requires_grad_(True)
    tr = t.clone().requires_grad_(True)
    loss = module(xr, tr)
    loss.backward()
    g = f.create_group(name)
    g.attrs["type"] = type_
    g.attrs["key"] = key
    g.attrs["value"] = value
    for k, v in (("x", xr), ("t", tr), ("loss", loss), ("dx", xr.grad), ("dt", tr.grad)):
        g.create_dataset(k, data=f32(v))


def nll(f, name, n, k, gen):
    logits = (torch.rand((n, k), generator=gen, dtype=DT) * 2 - 1) * 4
    x = q(torch.log_softmax(logits, dim=1))
    labels = torch.randint(0, k, (n,), generator=gen)
    xr = x.clone().requires_grad_(True)
    loss = torch.nn.NLLLoss()(xr, labels)
    loss.backward()
    g = f.create_group(name)
    g.attrs["type"] = "nll"
    g.attrs["key"] = ""
    g.attrs["value"] = ""
    g.create_dataset("x", data=f32(xr))
    g.create_dataset("labels", data=labels.to(torch.int32).numpy())
    g.create_dataset("loss", data=f32(loss))
    g.create_dataset("dx", data=f32(xr.grad))


def kl_div(f, name, shape, reduction, gen):
    logits = (torch.rand(shape, generator=gen, dtype=DT) * 2 - 1) * 3
    x = q(torch.log_softmax(logits, dim=-1))
    t = torch.rand(shape, generator=gen, dtype=DT)
    t.view(-1)[::5] = 0.0  # zero probabilities contribute nothing (torch's xlogy)
    t = q(t / t.sum(dim=-1, keepdim=True))
    xr = x.clone().requires_grad_(True)
    tr = t.clone().requires_grad_(True)
    loss = torch.nn.KLDivLoss(reduction=reduction)(xr, tr)
    loss.backward()
    g = f.create_group(name)
    g.attrs["type"] = "kl_div"
    g.attrs["key"] = "reduction"
    g.attrs["value"] = reduction
    # dt at t = 0 is NaN in torch (d/dt of xlogy at 0); Lamina's is finite: the test skips those.
    for k, v in (("x", xr), ("t", tr), ("loss", loss), ("dx", xr.grad), ("dt", tr.grad)):
        g.create_dataset(k, data=f32(v))


def main(path):
    gen = torch.Generator().manual_seed(20261202)
    with h5py.File(path, "w") as f:
        f.attrs["generator"] = "scripts/make-loss-fixtures.py, torch " + torch.__version__
        regression(f, "l1", "l1", "", "", torch.nn.L1Loss(), (4, 6), 2.0, gen)
        regression(f, "l1-3d", "l1", "", "", torch.nn.L1Loss(), (3, 2, 5), 2.0, gen)
        regression(f, "huber", "huber", "", "1", torch.nn.HuberLoss(), (5, 7), 3.0, gen)
        regression(f, "huber-0.3", "huber", "delta", "0.3", torch.nn.HuberLoss(delta=0.3),
                   (4, 6), 1.0, gen)
        regression(f, "smooth_l1", "smooth_l1", "", "1", torch.nn.SmoothL1Loss(), (5, 7), 3.0,
                   gen)
        regression(f, "smooth_l1-0.5", "smooth_l1", "beta", "0.5",
                   torch.nn.SmoothL1Loss(beta=0.5), (3, 2, 5), 2.0, gen)
        regression(f, "smooth_l1-0", "smooth_l1", "beta", "0", torch.nn.SmoothL1Loss(beta=0.0),
                   (4, 6), 2.0, gen)
        nll(f, "nll", 6, 5, gen)
        nll(f, "nll-wide", 3, 12, gen)
        kl_div(f, "kl_div", (4, 6), "mean", gen)
        kl_div(f, "kl_div-batchmean", (3, 2, 5), "batchmean", gen)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/losses.h5")
