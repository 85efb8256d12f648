#!/usr/bin/python3
"""Adds a segmentation target to a Fashion-MNIST file made by scripts/make-fashion-mnist.sh, for
examples/unet-fashion-mnist-seg.ini: /SPLIT/mask, float32 [N, 1, 28, 28], 1 where the garment is
(the pixel above 0.1 once x is scaled to [0, 1] by its scale attribute) and 0 on the background,
for every split holding x.  An existing mask is replaced.

    /usr/bin/python3 scripts/add-fashion-mnist-masks.py data/fashion-mnist.h5
"""
import sys

import h5py
import numpy as np

THRESHOLD = 0.1


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "data/fashion-mnist.h5"
    with h5py.File(path, "a") as f:
        for name, split in f.items():
            if not isinstance(split, h5py.Group) or "x" not in split:
                continue
            x = split["x"]
            scale = float(x.attrs.get("scale", 1.0))
            if "mask" in split:
                del split["mask"]
            mask = split.create_dataset("mask", shape=x.shape, dtype=np.float32,
                                        chunks=(min(1024, x.shape[0]),) + x.shape[1:],
                                        compression="gzip")
            for start in range(0, x.shape[0], 4096):
                block = x[start:start + 4096].astype(np.float32) * scale
                mask[start:start + 4096] = (block > THRESHOLD).astype(np.float32)
            fg = float(np.mean(mask[:min(4096, x.shape[0])]))
            print(f"{path}:/{name}/mask: {x.shape[0]} masks, {fg:.1%} foreground in the first")


if __name__ == "__main__":
    main()
