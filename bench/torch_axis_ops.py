#!/usr/bin/python3
"""The PyTorch side of bench/axis-ops.c: layer_norm, broadcasting binary ops, conv_transpose2d
(C to C / 2, kernel 2, stride 2) and bilinear upsampling by 2, forward and backward, at batch 32 and [C, H, W] = [16, 28, 28], [32, 14, 14], [64, 7, 7].

  torch_axis_ops.py [--iters N] [--warmup N] [--threads N]

Prints one line per case: "CASE CxHxW ms_per_iter=...", as bench-axis-ops does.
"""
import argparse
import time

import torch


def cases(c, h):
    g = torch.Generator().manual_seed(7)
    x = (torch.rand(32, c, h, h, generator=g) * 2 - 1).requires_grad_(True)
    dy = torch.rand(32, c, h, h, generator=g) * 2 - 1
    ln = torch.nn.LayerNorm([c, h, h])
    ct = torch.nn.ConvTranspose2d(c, c // 2, 2, stride=2)
    dy2 = torch.rand(32, c // 2, 2 * h, 2 * h, generator=g) * 2 - 1
    dy_up = torch.rand(32, c, 2 * h, 2 * h, generator=g) * 2 - 1
    up = torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
    w = (torch.rand(1, c, 1, 1, generator=g) * 2 - 1).requires_grad_(True)
    m = (torch.rand(32, 1, h, h, generator=g) * 2 - 1).requires_grad_(True)
    return {
        "layer_norm": lambda: ln(x).backward(dy),
        "mul_channel": lambda: (x * w).backward(dy),
        "sub_spatial": lambda: (x - m).backward(dy),
        "conv_transpose2d": lambda: ct(x).backward(dy2),
        "upsample": lambda: up(x).backward(dy_up),
    }, [x, w, m] + list(ln.parameters()) + list(ct.parameters())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for name in ("layer_norm", "mul_channel", "sub_spatial", "conv_transpose2d", "upsample"):
        for c, h in ((16, 28), (32, 14), (64, 7)):
            fns, leaves = cases(c, h)
            fn = fns[name]
            for _ in range(a.warmup):
                fn()
            t0 = time.perf_counter()
            for _ in range(a.iters):
                for t in leaves:
                    t.grad = None  # Lamina overwrites its gradients; no accumulation here either
                fn()
            ms = (time.perf_counter() - t0) * 1000.0 / a.iters
            print(f"{name} {c}x{h}x{h} ms_per_iter={ms:.4f}")


if __name__ == "__main__":
    main()
