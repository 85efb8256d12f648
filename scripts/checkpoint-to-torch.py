#!/usr/bin/python3
"""Loads a Lamina checkpoint into PyTorch and, optionally, checks its predictions.

    checkpoint-to-torch.py CKPT [BATCH.h5]

Builds a torch.nn.Sequential from the checkpoint's /config (dense -> Linear, relu/tanh/sigmoid ->
the activation, flatten -> Flatten; the final loss layer is left out, so the model returns the
logits), loads /model/<layer>/<param> by name with load_state_dict (Lamina stores PyTorch's
names and shapes), and prints the model.  With BATCH.h5 (datasets /x and /logits, as written by
tests/e2e/test-interop.c) it runs the batch through the model in eval mode and exits 1 unless
every logit is within 1e-5 of Lamina's.  Exits 77 when torch or h5py cannot be imported (the
test then counts as skipped).  Use Debian's /usr/bin/python3 (python3-torch, python3-h5py).
"""
import configparser
import sys

try:
    import h5py
    import numpy as np
    import torch
except ImportError as e:
    print(f"skipping: {e}", file=sys.stderr)
    sys.exit(77)

ACTIVATIONS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
               "flatten": torch.nn.Flatten}
LOSSES = {"softmax_cross_entropy", "mse", "bce_logits", "binary_cross_entropy"}


def load(path):
    with h5py.File(path, "r") as f:
        text = f["config"][()]
        text = text.decode() if isinstance(text, bytes) else text
        cfg = configparser.ConfigParser(interpolation=None)
        cfg.read_string(text)
        modules = {}
        for group in cfg.sections():
            if not group.startswith("layer "):
                continue
            name, kind = group[6:], cfg[group]["type"].strip()
            if kind == "dense":
                out_f, in_f = f[f"model/{name}/weight"].shape
                modules[name] = torch.nn.Linear(in_f, out_f, bias=f"model/{name}/bias" in f)
            elif kind in ACTIVATIONS:
                modules[name] = ACTIVATIONS[kind]()
            elif kind in LOSSES:
                continue
            else:
                sys.exit(f"{path}: layer '{name}' of type '{kind}' has no PyTorch mapping here")
            if "input" in cfg[group]:
                sys.exit(f"{path}: layer '{name}' has explicit inputs; only chains are mapped")
        model = torch.nn.Sequential()
        for name, m in modules.items():
            model.add_module(name, m)
        state = {f"{name}.{p}": torch.from_numpy(np.asarray(f[f"model/{name}/{p}"]))
                 for name in modules if f"model/{name}" in f for p in f[f"model/{name}"]}
        model.load_state_dict(state, strict=True)
    return model.eval()


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    model = load(sys.argv[1])
    print(model)
    if len(sys.argv) == 3:
        with h5py.File(sys.argv[2], "r") as f:
            x = torch.from_numpy(np.asarray(f["x"]))
            want = np.asarray(f["logits"])
        with torch.no_grad():
            got = model(x).numpy()
        err = float(np.max(np.abs(got - want)))
        print(f"max |torch - lamina| = {err:.3g} over {want.size} logits")
        if not err <= 1e-5:
            sys.exit(1)


if __name__ == "__main__":
    main()
