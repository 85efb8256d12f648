#!/usr/bin/python3
"""Adds segmentation targets to a Fashion-MNIST file made by scripts/make-fashion-mnist.sh, for
every split holding x (existing ones are replaced):

  /SPLIT/mask  float32 [N, 1, 28, 28]: 1 where the garment is (the pixel above 0.1 once x is
               scaled to [0, 1] by its scale attribute) and 0 on the background, for
               examples/unet-fashion-mnist-seg.ini;
  /SPLIT/seg   uint8 [N, 28, 28]: per-pixel labels, 0 on the background and 1 + the garment's
               category (1..10) on its pixels, for examples/unet-fashion-mnist-classes.ini.

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
            for old in ("mask", "seg"):
                if old in split:
                    del split[old]
            mask = split.create_dataset("mask", shape=x.shape, dtype=np.float32,
                                        chunks=(min(1024, x.shape[0]),) + x.shape[1:],
                                        compression="gzip")
            seg = split.create_dataset("seg", shape=(x.shape[0],) + x.shape[2:], dtype=np.uint8,
                                       chunks=(min(1024, x.shape[0]),) + x.shape[2:],
                                       compression="gzip")
            y = split["y"]
            for start in range(0, x.shape[0], 4096):
                block = x[start:start + 4096].astype(np.float32) * scale
                fg_block = block > THRESHOLD
                mask[start:start + 4096] = fg_block.astype(np.float32)
                labels = np.asarray(y[start:start + 4096]).astype(np.uint8).reshape(-1, 1, 1)
                seg[start:start + 4096] = np.where(fg_block[:, 0], labels + 1, 0)
            fg = float(np.mean(mask[:min(4096, x.shape[0])]))
            print(f"{path}:/{name}/mask and seg: {x.shape[0]} masks and label maps, {fg:.1%} "
                  "foreground in the first")


if __name__ == "__main__":
    main()
