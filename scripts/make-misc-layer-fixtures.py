#!/usr/bin/python3
"""Record PyTorch forward and backward values of Lamina's activation, softmax, loss and embedding
layers for tests/layers/test-misc-layers.c.

Run with Debian's Python (it has torch 1.13 and h5py):

    /usr/bin/python3 scripts/make-misc-layer-fixtures.py [tests/fixtures/layers-misc.h5]

Every case is a group with float32 datasets (int32 for indices and labels); attributes give the
layer's hyperparameters under Lamina's key names:

    /act/<case>        attrs: type (leaky_relu, elu, softplus, gelu), key, value (the one
                              hyperparameter, "" when none)
      x, dy            float32 [N, F]   input and output gradient
      y, dx            float32 [N, F]   nn.<Activation>(x) and its input gradient for dy
    /softmax/<case>
      x, dy, y, dx     float32 [N, R, K] softmax over the last dimension
    /bce/<case>
      x, t             float32 [N, F]   logits and target probabilities
      loss             float32 []       nn.BCEWithLogitsLoss()(x, t)
      dx, dt           float32 [N, F]   gradients of the loss
    /xent/<case>       attrs: label_smoothing
      x                float32 [N, K]   logits
      labels           int32 [N]
      loss             float32 []       nn.CrossEntropyLoss(label_smoothing=s)(x, labels)
      dx               float32 [N, K]
    /embedding/<case>  attrs: num_embeddings, embedding_dim
      weight           float32 [V, D]
      idx              int32 [N, T]     (repeats included, so gradients accumulate)
      dy, y            float32 [N, T, D]
      dweight          float32 [V, D]

Values are computed in float64 and stored as float32, so they are the correctly rounded
reference.  Everything is seeded: the file is the same on every run.
"""
import sys

import h5py
import numpy as np
import torch

torch.manual_seed(20240601)
DT = torch.float64


def q(t):
    """Rounds to float32 (what the file stores) and back, so the float64 reference is computed
    from exactly the stored inputs."""
    return t.to(torch.float32).to(DT)


def f32(t):
    return t.detach().to(torch.float32).numpy()


def write_act(g, name, module, key, value, x):
    dy = q(torch.rand(x.shape, dtype=DT) * 2 - 1)
    xr = q(x).clone().requires_grad_(True)
    y = module(xr)
    y.backward(dy)
    c = g.create_group(name)
    c.attrs["type"] = name.split(".")[0]
    c.attrs["key"] = key
    c.attrs["value"] = value
    for k, v in (("x", xr), ("dy", dy), ("y", y), ("dx", xr.grad)):
        c.create_dataset(k, data=f32(v))


def spread(shape, scale):
    """Values over [-scale, scale] plus the special points 0 and near-0."""
    x = (torch.rand(shape, dtype=DT) * 2 - 1) * scale
    flat = x.view(-1)
    flat[:4] = torch.tensor([0.0, 1e-4, -1e-4, -scale], dtype=DT)
    return x


def main(path):
    with h5py.File(path, "w") as f:
        f.attrs["generator"] = "scripts/make-misc-layer-fixtures.py, torch " + torch.__version__
        act = f.create_group("act")
        x = spread((5, 12), 6.0)
        write_act(act, "leaky_relu", torch.nn.LeakyReLU(), "", "", x)
        write_act(act, "leaky_relu.0.2", torch.nn.LeakyReLU(0.2), "negative_slope", "0.2", x)
        write_act(act, "elu", torch.nn.ELU(), "", "", x)
        write_act(act, "elu.0.5", torch.nn.ELU(alpha=0.5), "alpha", "0.5", x)
        write_act(act, "gelu", torch.nn.GELU(), "", "", x)
        # beta * x beyond the threshold 20 switches softplus to the identity
        xs = spread((5, 12), 30.0)
        write_act(act, "softplus", torch.nn.Softplus(), "", "", xs)
        write_act(act, "softplus.2", torch.nn.Softplus(beta=2.0), "beta", "2", xs)

        sm = f.create_group("softmax")
        for name, shape, scale in (("rows", (4, 7), 3.0), ("3d", (3, 2, 5), 3.0),
                                   ("large", (2, 6), 80.0)):
            x = q((torch.rand(shape, dtype=DT) * 2 - 1) * scale)
            dy = q(torch.rand(shape, dtype=DT) * 2 - 1)
            xr = x.clone().requires_grad_(True)
            y = torch.softmax(xr, dim=-1)
            y.backward(dy)
            c = sm.create_group(name)
            for k, v in (("x", xr), ("dy", dy), ("y", y), ("dx", xr.grad)):
                c.create_dataset(k, data=f32(v))

        bce = f.create_group("bce")
        for name, shape, scale in (("small", (4, 6), 3.0), ("wide", (3, 2, 5), 40.0)):
            x = q((torch.rand(shape, dtype=DT) * 2 - 1) * scale)
            t = q(torch.rand(shape, dtype=DT))
            t.view(-1)[:3] = torch.tensor([0.0, 1.0, 0.5], dtype=DT)
            xr = x.clone().requires_grad_(True)
            tr = t.clone().requires_grad_(True)
            loss = torch.nn.BCEWithLogitsLoss()(xr, tr)
            loss.backward()
            c = bce.create_group(name)
            for k, v in (("x", xr), ("t", tr), ("loss", loss), ("dx", xr.grad), ("dt", tr.grad)):
                c.create_dataset(k, data=f32(v))

        xent = f.create_group("xent")
        for name, n, k, s in (("plain", 6, 5, 0.0), ("smooth0.1", 6, 5, 0.1),
                              ("smooth0.3", 8, 10, 0.3), ("smooth0.9", 4, 3, 0.9)):
            x = q((torch.rand((n, k), dtype=DT) * 2 - 1) * 4)
            labels = torch.randint(0, k, (n,))
            xr = x.clone().requires_grad_(True)
            loss = torch.nn.CrossEntropyLoss(label_smoothing=s)(xr, labels)
            loss.backward()
            c = xent.create_group(name)
            c.attrs["label_smoothing"] = s
            c.create_dataset("x", data=f32(xr))
            c.create_dataset("labels", data=labels.to(torch.int32).numpy())
            c.create_dataset("loss", data=f32(loss))
            c.create_dataset("dx", data=f32(xr.grad))

        emb = f.create_group("embedding")
        for name, v, d, n, t in (("small", 7, 3, 4, 5), ("wide", 20, 16, 3, 9)):
            module = torch.nn.Embedding(v, d).to(DT)
            with torch.no_grad():
                module.weight.copy_(q(module.weight))
            idx = torch.randint(0, v, (n, t))
            idx[0, 0] = idx[0, 1] = idx[1, 0] = v - 1  # a repeated row accumulates
            dy = q(torch.rand((n, t, d), dtype=DT) * 2 - 1)
            y = module(idx)
            y.backward(dy)
            c = emb.create_group(name)
            c.attrs["num_embeddings"] = v
            c.attrs["embedding_dim"] = d
            c.create_dataset("weight", data=f32(module.weight))
            c.create_dataset("idx", data=idx.to(torch.int32).numpy())
            c.create_dataset("dy", data=f32(dy))
            c.create_dataset("y", data=f32(y))
            c.create_dataset("dweight", data=f32(module.weight.grad))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/layers-misc.h5")
