#!/usr/bin/python3
"""PyTorch side of bench/gan-run.sh: one epoch of examples/gan's dense GAN, timed.

The same networks as examples/gan/generator.ini and discriminator.ini (z 100 -> 256 -> 512 ->
1024 -> 784, LeakyReLU 0.2, sigmoid; 784 -> 1024 -> 512 -> 256 -> 1, LeakyReLU 0.2, dropout 0.3),
the same step as lamina-gan with k = 1:
the discriminator on one batch of m real and m generated images concatenated (binary
cross-entropy on logits, the mean over 2m), then the generator on the same generated batch
against the updated discriminator with target 1; Adam lr 2e-4, betas (0.5, 0.999) for both.
Prints "epoch_s=..." (data loading excluded: the split is decoded into memory first, as
Lamina's reader holds it in memory too).

  gan_torch.py FILE:/split --batch 64 --threads N [--epochs 1] [--seed 1] [--samples OUT.h5]

With --samples, also writes 1000 samples as lamina-gan does (split /samples: x float32
[1000, 1, 28, 28], y int32 zeros), for examples/gan/check-samples.py: a reference for the
quality lamina-gan's samples should reach.
"""
import argparse
import time

import h5py
import numpy as np
import torch


Z_DIM = 100


def generator():
    return torch.nn.Sequential(
        torch.nn.Linear(Z_DIM, 256), torch.nn.LeakyReLU(0.2),
        torch.nn.Linear(256, 512), torch.nn.LeakyReLU(0.2),
        torch.nn.Linear(512, 1024), torch.nn.LeakyReLU(0.2),
        torch.nn.Linear(1024, 784), torch.nn.Sigmoid())


def discriminator():
    return torch.nn.Sequential(
        torch.nn.Linear(784, 1024), torch.nn.LeakyReLU(0.2), torch.nn.Dropout(0.3),
        torch.nn.Linear(1024, 512), torch.nn.LeakyReLU(0.2), torch.nn.Dropout(0.3),
        torch.nn.Linear(512, 256), torch.nn.LeakyReLU(0.2), torch.nn.Dropout(0.3),
        torch.nn.Linear(256, 1))


def load(spec):
    path, split = spec.rsplit(":/", 1)
    with h5py.File(path, "r") as f:
        x = f[split]["x"]
        scale = float(x.attrs.get("scale", 1.0))
        data = x[...].astype(np.float32) * scale
    return torch.from_numpy(data.reshape(len(data), -1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--samples")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x = load(a.data)
    g, d = generator(), discriminator()
    gopt = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    dopt = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = torch.nn.BCEWithLogitsLoss()
    for _ in range(a.epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(len(x))
        dsum = gsum = 0.0
        steps = 0
        for i in range(0, len(x), a.batch):
            real = x[perm[i:i + a.batch]]
            m = len(real)
            fake = g(torch.randn(m, Z_DIM))
            target = torch.cat([torch.ones(m, 1), torch.zeros(m, 1)])
            dopt.zero_grad()
            dloss = bce(d(torch.cat([real, fake.detach()])), target)
            dloss.backward()
            dopt.step()
            gopt.zero_grad()
            gloss = bce(d(fake), torch.ones(m, 1))
            gloss.backward()
            gopt.step()
            dsum += dloss.item()
            gsum += gloss.item()
            steps += 1
        secs = time.perf_counter() - t0
        print(f"d_loss={dsum / steps:.4f} g_loss={gsum / steps:.4f} epoch_s={secs:.3f}",
              flush=True)
    if a.samples:
        g.eval()
        with torch.no_grad():
            x = g(torch.randn(1000, Z_DIM)).reshape(1000, 1, 28, 28).numpy()
        with h5py.File(a.samples, "w") as f:
            f["samples/x"] = x.astype(np.float32)
            f["samples/y"] = np.zeros(1000, np.int32)


if __name__ == "__main__":
    main()
