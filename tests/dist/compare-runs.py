#!/usr/bin/env python3
"""Compares two training runs' outputs (final.h5 and metrics.csv).

  compare-runs.py A_DIR B_DIR --exact          every weight and figure bit-identical
  compare-runs.py A_DIR B_DIR --rtol R --atol A  within a tolerance (see dist-train.sh for why)
"""
import argparse
import csv
import sys

import h5py
import numpy as np


def weights(path):
    out = {}
    with h5py.File(path, "r") as f:
        f["model"].visititems(
            lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def losses(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return np.array([float(r["train_loss"]) for r in rows]), [r for r in rows]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--exact", action="store_true")
    ap.add_argument("--rtol", type=float, default=0.0)
    ap.add_argument("--atol", type=float, default=0.0)
    ap.add_argument("--loss-rtol", type=float, default=0.0)
    args = ap.parse_args()
    wa, wb = weights(args.a + "/final.h5"), weights(args.b + "/final.h5")
    if sorted(wa) != sorted(wb):
        sys.exit(f"different tensors: {sorted(wa)} vs {sorted(wb)}")
    la, ra = losses(args.a + "/metrics.csv")
    lb, rb = losses(args.b + "/metrics.csv")
    if len(la) != len(lb):
        sys.exit(f"{len(la)} epochs against {len(lb)}")
    worst = 0.0
    for name in sorted(wa):
        x, y = wa[name], wb[name]
        if x.shape != y.shape:
            sys.exit(f"{name}: shape {x.shape} vs {y.shape}")
        if args.exact:
            if x.tobytes() != y.tobytes():
                d = np.abs(x.astype(np.float64) - y).max()
                sys.exit(f"{name}: not bit-identical (max difference {d:g})")
        else:
            d = np.abs(x.astype(np.float64) - y) - args.rtol * np.abs(y)
            worst = max(worst, float(np.abs(x.astype(np.float64) - y).max()))
            if (d > args.atol).any():
                sys.exit(f"{name}: max difference {np.abs(x - y).max():g} exceeds atol {args.atol:g} "
                         f"+ rtol {args.rtol:g}")
    if args.exact:
        for x, y in zip(ra, rb):
            for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
                if k in x and x[k] != y[k]:
                    sys.exit(f"metrics.csv {k}: {x[k]} vs {y[k]}")
    else:
        rel = np.abs(la - lb) / np.abs(lb)
        if (rel > args.loss_rtol).any():
            sys.exit(f"per-epoch train losses {la} vs {lb}: relative difference {rel.max():g} "
                     f"exceeds {args.loss_rtol:g}")
    print(f"ok: {len(wa)} tensors, {len(la)} epochs; largest weight difference {worst:g}; "
          f"losses {la} vs {lb}")


main()
