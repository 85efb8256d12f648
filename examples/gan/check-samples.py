#!/usr/bin/python3
"""Judges lamina-gan's samples with a classifier trained by `lamina train`.

    check-samples.py CLASSIFIER.h5 SAMPLES.h5[:/samples] [--test FILE:/split]

CLASSIFIER.h5 is a checkpoint of a dense classifier (e.g. `lamina train
examples/mlp-fashion-mnist.ini --output out/mlp` -> out/mlp/final.h5), loaded into PyTorch by
scripts/checkpoint-to-torch.py (flatten, dense and activations).  Prints the histogram of the
predicted classes of the samples and the mean max-softmax confidence; with --test, first the
classifier's accuracy on that split (compare it with `lamina eval`, which runs Lamina's own
forward, to see the PyTorch copy is the same classifier).  Exits 1 when a class is never
predicted: samples of a collapsed generator cover few classes.  Needs Debian's python3-torch and
python3-h5py (/usr/bin/python3); Lamina itself never needs Python.
"""
import argparse
import importlib.util
import os
import sys

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]


def load_classifier(path):
    script = os.path.join(HERE, "..", "..", "scripts", "checkpoint-to-torch.py")
    spec = importlib.util.spec_from_file_location("checkpoint_to_torch", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.load(path)


def read_split(spec):
    path, split = spec.rsplit(":/", 1) if ":/" in spec else (spec, "samples")
    with h5py.File(path, "r") as f:
        x = f[split]["x"]
        data = x[...].astype(np.float32)
        # the same decoding as Lamina's reader: (raw * scale - mean) / std
        data = data * float(x.attrs.get("scale", 1.0))
        data = (data - np.asarray(x.attrs.get("mean", 0.0), np.float32)) / \
            np.asarray(x.attrs.get("std", 1.0), np.float32)
        y = f[split]["y"][...] if "y" in f[split] else None
    return torch.from_numpy(data), y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("classifier")
    ap.add_argument("samples")
    ap.add_argument("--test")
    a = ap.parse_args()
    model = load_classifier(a.classifier)
    with torch.no_grad():
        if a.test:
            x, y = read_split(a.test)
            acc = (model(x).argmax(1).numpy() == y).mean()
            print(f"classifier accuracy on {a.test}: {acc:.4f}")
        x, _ = read_split(a.samples)
        p = torch.softmax(model(x), 1)
    conf, pred = p.max(1)
    hist = np.bincount(pred.numpy(), minlength=len(CLASSES))
    print(f"{len(x)} samples; predicted class histogram:")
    for c, n in enumerate(hist):
        print(f"  {c} {CLASSES[c]:<12} {n:5d}  {'#' * int(round(50 * n / len(x)))}")
    print(f"mean max-softmax confidence: {conf.mean().item():.4f}")
    print(f"classes predicted: {int((hist > 0).sum())} of {len(CLASSES)}")
    return 0 if (hist > 0).all() else 1


if __name__ == "__main__":
    sys.exit(main())
