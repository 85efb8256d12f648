#!/usr/bin/python3
"""Record PyTorch's resampling of images for the augmentation building blocks of
include/lamina/augment.h (checked by tests/data/test-augment.c).

Run with Debian's Python (it has torch and h5py):

    /usr/bin/python3 scripts/make-augment-fixtures.py [tests/fixtures/augment.h5]

Layout (all float32 unless noted; images are [C, H, W] with H = 9, W = 11):

    /resized_crop   x [3, H, W]; boxes int64 [K, 4] (top, left, height, width);
                    y [K, 3, H, W] = F.interpolate(box of x, (H, W), "bilinear",
                    align_corners=False)
    /affine         x [2, H, W]; inverse float64 [K, 2, 2] (output -> source about the centre);
                    y [K, 2, H, W] = F.grid_sample(x, grid, "bilinear", "zeros",
                    align_corners=True), the grid holding the source positions
    /displace       x [2, H, W]; dx, dy [K, H, W] (pixels); y [K, 2, H, W] as for affine
    /blur           plane [H, W]; sigma float64 [K]; y [K, H, W]: replicate padding and a
                    normalised Gaussian of radius min(ceil(3 sigma), max(H, W)), separably
    /hue            x [3, H, W]; turns float64 [K]; y [K, 3, H, W]: Rodrigues' rotation of
                    (R, G, B) about (1, 1, 1) / sqrt(3)

Everything is computed in float64 from the float32 inputs and stored as float32, and seeded, so
the file is the same on every run.
"""
import math
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

H, W = 9, 11


def source_grid(sx, sy):
    """A grid_sample grid [1, H, W, 2] from source pixel positions (align_corners=True)."""
    gx = 2.0 * sx / (W - 1) - 1.0
    gy = 2.0 * sy / (H - 1) - 1.0
    return torch.stack([gx, gy], dim=-1)[None]


def sample(x, sx, sy):
    return F.grid_sample(x.double()[None], source_grid(sx, sy), mode="bilinear",
                         padding_mode="zeros", align_corners=True)[0]


def resized_crop(f, gen):
    x = torch.randn(3, H, W, generator=gen)
    boxes = [(0, 0, H, W), (1, 2, 5, 7), (3, 0, 6, 4), (0, 5, 2, 6), (4, 4, 1, 1), (2, 3, 7, 8)]
    ys = []
    for top, left, bh, bw in boxes:
        box = x.double()[None, :, top:top + bh, left:left + bw]
        ys.append(F.interpolate(box, size=(H, W), mode="bilinear", align_corners=False)[0])
    g = f.create_group("resized_crop")
    g["x"] = x.numpy()
    g["boxes"] = np.array(boxes, dtype=np.int64)
    g["y"] = torch.stack(ys).float().numpy()


def affine(f, gen):
    x = torch.randn(2, H, W, generator=gen)
    cy, cx = (H - 1) / 2.0, (W - 1) / 2.0
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float64),
                            torch.arange(W, dtype=torch.float64), indexing="ij")
    mats = []
    for scale, shear in [(1.0, 0.0), (1.2, 0.0), (0.8, 10.0), (1.0, -25.0), (1.1, 40.0)]:
        t = math.tan(math.radians(shear))
        mats.append([[1.0 / scale, -t / scale], [0.0, 1.0 / scale]])
    r = math.radians(30.0)
    mats.append([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
    ys = []
    for m in mats:
        sx = m[0][0] * (xx - cx) + m[0][1] * (yy - cy) + cx
        sy = m[1][0] * (xx - cx) + m[1][1] * (yy - cy) + cy
        ys.append(sample(x, sx, sy))
    g = f.create_group("affine")
    g["x"] = x.numpy()
    g["inverse"] = np.array(mats, dtype=np.float64)
    g["y"] = torch.stack(ys).float().numpy()


def displace(f, gen):
    x = torch.randn(2, H, W, generator=gen)
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float64),
                            torch.arange(W, dtype=torch.float64), indexing="ij")
    dxs, dys, ys = [], [], []
    for amp in [0.0, 0.7, 3.0]:
        dx = (torch.rand(H, W, generator=gen) * 2 - 1) * amp
        dy = (torch.rand(H, W, generator=gen) * 2 - 1) * amp
        dxs.append(dx)
        dys.append(dy)
        ys.append(sample(x, xx + dx.double(), yy + dy.double()))
    g = f.create_group("displace")
    g["x"] = x.numpy()
    g["dx"] = torch.stack(dxs).numpy()
    g["dy"] = torch.stack(dys).numpy()
    g["y"] = torch.stack(ys).float().numpy()


def blur(f, gen):
    plane = torch.randn(H, W, generator=gen)
    sigmas = [0.5, 1.3, 4.0]
    ys = []
    for sigma in sigmas:
        radius = min(math.ceil(3 * sigma), max(H, W))
        t = torch.arange(-radius, radius + 1, dtype=torch.float64)
        k = torch.exp(-t * t / (2 * sigma * sigma))
        k /= k.sum()
        p = plane.double()[None, None]
        p = F.pad(p, (radius, radius, 0, 0), mode="replicate")
        p = F.conv2d(p, k.view(1, 1, 1, -1))
        p = F.pad(p, (0, 0, radius, radius), mode="replicate")
        p = F.conv2d(p, k.view(1, 1, -1, 1))
        ys.append(p[0, 0])
    g = f.create_group("blur")
    g["plane"] = plane.numpy()
    g["sigma"] = np.array(sigmas, dtype=np.float64)
    g["y"] = torch.stack(ys).float().numpy()


def hue(f, gen):
    x = torch.randn(3, H, W, generator=gen)
    k = torch.ones(3, dtype=torch.float64) / math.sqrt(3.0)
    kx = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]],
                      dtype=torch.float64)
    turns = [0.0, 0.05, -0.2, 1.0 / 3.0, 0.5]
    ys = []
    for t in turns:
        a = 2 * math.pi * t
        m = math.cos(a) * torch.eye(3, dtype=torch.float64) + math.sin(a) * kx + \
            (1 - math.cos(a)) * torch.outer(k, k)
        ys.append(torch.einsum("ij,jhw->ihw", m, x.double()))
    g = f.create_group("hue")
    g["x"] = x.numpy()
    g["turns"] = np.array(turns, dtype=np.float64)
    g["y"] = torch.stack(ys).float().numpy()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/augment.h5"
    gen = torch.Generator().manual_seed(20261202)
    with h5py.File(out, "w") as f:
        resized_crop(f, gen)
        affine(f, gen)
        displace(f, gen)
        blur(f, gen)
        hue(f, gen)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
