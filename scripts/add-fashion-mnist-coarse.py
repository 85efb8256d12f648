#!/usr/bin/python3
"""Adds a second target to a Fashion-MNIST file made by scripts/make-fashion-mnist.sh, for
examples/multi-task-fashion-mnist.ini: /SPLIT/coarse, int32 [N], the article's group
(0 tops: T-shirt, pullover, coat, shirt; 1 trousers and dresses; 2 footwear: sandal, sneaker,
ankle boot; 3 bags), for every split holding y.  An existing coarse is replaced.

    /usr/bin/python3 scripts/add-fashion-mnist-coarse.py data/fashion-mnist.h5
"""
import sys

import h5py
import numpy as np

GROUP = np.array([0, 1, 0, 1, 0, 2, 0, 2, 3, 2], dtype=np.int32)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "data/fashion-mnist.h5"
    with h5py.File(path, "a") as f:
        for name, split in f.items():
            if not isinstance(split, h5py.Group) or "y" not in split:
                continue
            if "coarse" in split:
                del split["coarse"]
            split.create_dataset("coarse", data=GROUP[split["y"][()]], compression="gzip")
            print(f"{path}:/{name}/coarse: {split['y'].shape[0]} labels")


if __name__ == "__main__":
    main()
