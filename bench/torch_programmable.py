#!/usr/bin/python3
"""PyTorch side of bench/programmable.sh: the reference MLP (784-256-256-10, SGD momentum 0.9,
lr 0.05, batch 128) trained on Fashion-MNIST for a number of steps, in one of the variants
Lamina's `lamina train` runs:

  plain      forward, backward, optimizer step
  fgsm, pgd  adversarial training as Lamina's [train] adversarial: the batch is attacked in
             evaluation mode (FGSM, or PGD with --pgd-steps steps of 2.5 eps / steps), then one
             step on w * J(x) + (1 - w) * J(x') (w = 0.5), inputs clipped to [0, 1]
  frozen     fc1 and fc2 frozen (requires_grad False, outside the optimizer): only fc3 learns

  torch_programmable.py DATA.h5 --variant V [--steps N] [--threads N] [--eps E] [--pgd-steps K]

The batches come from a per-epoch permutation of the split held in memory as float32 (x / 255),
as Lamina's reader decodes it.  Prints "samples_per_s=..." over the whole run (no warm-up is
left out, as Lamina's epoch line counts every step too).
"""
import argparse
import time

import h5py
import numpy as np
import torch

F = torch.nn.functional


def mlp():
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(784, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10))


def attack(model, x0, y, method, eps, steps):
    model.eval()
    alpha = eps if method == "fgsm" else 2.5 * eps / steps
    x = x0.clone()
    for _ in range(1 if method == "fgsm" else steps):
        x.requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
        x = x.detach() + alpha * torch.sign(g)
        if method == "pgd":
            x = torch.min(torch.max(x, x0 - eps), x0 + eps)
        x = x.clamp(0.0, 1.0)
    model.train()
    return x.detach()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--variant", choices=["plain", "fgsm", "pgd", "frozen"], default="plain")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--pgd-steps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with h5py.File(a.data, "r") as f:
        x_all = torch.from_numpy(f["train/x"][...].astype(np.float32) / 255.0)
        y_all = torch.from_numpy(f["train/y"][...].astype(np.int64))
    model = mlp()
    params = list(model.parameters())
    if a.variant == "frozen":
        for p in params[:4]:
            p.requires_grad_(False)
        params = params[4:]
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    n = x_all.shape[0]
    perm = torch.randperm(n)
    pos = 0
    t0 = time.perf_counter()
    for _ in range(a.steps):
        if pos + a.batch > n:
            perm, pos = torch.randperm(n), 0
        idx = perm[pos:pos + a.batch]
        pos += a.batch
        x, y = x_all[idx], y_all[idx]
        if a.variant in ("fgsm", "pgd"):
            x_adv = attack(model, x, y, a.variant, a.eps, a.pgd_steps)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        if a.variant in ("fgsm", "pgd"):
            loss = 0.5 * loss + 0.5 * F.cross_entropy(model(x_adv), y)
        loss.backward()
        opt.step()
    secs = time.perf_counter() - t0
    print(f"samples_per_s={a.steps * a.batch / secs:.1f} variant={a.variant} steps={a.steps} "
          f"seconds={secs:.3f} final_loss={loss.item():.4f} threads={torch.get_num_threads()}")


if __name__ == "__main__":
    main()
