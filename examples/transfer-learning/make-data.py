#!/usr/bin/python3
"""Splits Fashion-MNIST (the file scripts/make-fashion-mnist.sh makes) into the two tasks of the
transfer-learning example:

  source: classes 0-5 (T-shirt, trouser, pullover, dress, coat, sandal), every training image
          (/source_train, 36000) and the test images of those classes (/source_test, 6000)
  target: classes 6-9 (shirt, sneaker, bag, ankle boot) relabelled 0-3, with only PER_CLASS
          training images per class (/target_train) and every test image (/target_test, 4000)

  make-data.py FASHION_MNIST.h5 OUTPUT.h5 [PER_CLASS]      (default 20)

The images stay uint8 with the source file's `scale` attribute, so the model sees [0, 1].  The
target's training images are the first PER_CLASS of each class in file order: the same file on
every run.  Needs h5py and numpy (scripts/install-deps.sh installs them).
"""
import sys

import h5py
import numpy as np

SOURCE = [0, 1, 2, 3, 4, 5]
TARGET = [6, 7, 8, 9]


def take(x, y, classes, per_class=None):
    """The samples of @classes (the first @per_class of each, in file order), relabelled by
    their position in @classes."""
    picks = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in classes])
    picks.sort()
    relabel = np.zeros(10, dtype=np.int64)
    relabel[classes] = np.arange(len(classes))
    return x[picks], relabel[y[picks]]


def write(f, name, x, y, scale):
    g = f.create_group(name)
    d = g.create_dataset("x", data=x, chunks=(min(len(x), 256),) + x.shape[1:],
                         compression="gzip")
    d.attrs["scale"] = scale
    g.create_dataset("y", data=y.astype(np.uint8))


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    per_class = int(sys.argv[3]) if len(sys.argv) == 4 else 20
    with h5py.File(sys.argv[1], "r") as src:
        scale = float(src["train/x"].attrs["scale"])
        xtr, ytr = src["train/x"][...], src["train/y"][...].astype(np.int64)
        xte, yte = src["test/x"][...], src["test/y"][...].astype(np.int64)
    with h5py.File(sys.argv[2], "w") as out:
        write(out, "source_train", *take(xtr, ytr, SOURCE), scale)
        write(out, "source_test", *take(xte, yte, SOURCE), scale)
        write(out, "target_train", *take(xtr, ytr, TARGET, per_class), scale)
        write(out, "target_test", *take(xte, yte, TARGET), scale)
    print(f"wrote {sys.argv[2]}: source 6 classes, target 4 classes with {per_class} training "
          "images each")


if __name__ == "__main__":
    main()
