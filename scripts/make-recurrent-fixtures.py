#!/usr/bin/python3
"""Records PyTorch's recurrent layers for tests/layers/test-recurrent.c.

Writes tests/fixtures/layers-recurrent.h5 (or the path given as the only argument).  One group
per case, named CELL-last, CELL-seq or CELL-nobias, for CELL in rnn, lstm, gru:

  attrs    cell ("rnn" | "lstm" | "gru"), batch N, steps T, features F, hidden H,
           return_sequences (0/1), bias (0/1)
  x        float32 [N, T, F]                      the input (batch_first)
  weight_ih, weight_hh, bias_ih, bias_hh          float32, torch's weight_ih_l0 etc. under
                                                  Lamina's names (biases only with bias = 1)
  R        float32, shaped like the output        the fixed output gradient
  output   float64 [N, H] (last step) or [N, T, H] (return_sequences)
  grad_x, grad_weight_ih, ...                     float64 gradients of sum(output * R)

Inputs and parameters are drawn in float32 and stored as such; the reference is then computed
in float64 from exactly those values, so the fixture holds PyTorch's exact answer and the C test
measures Lamina's float32 error alone.

Run with Debian's Python (python3-torch, python3-h5py):  /usr/bin/python3 scripts/make-recurrent-fixtures.py
"""
import sys

import h5py
import torch

CELLS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
# (suffix, N, T, F, H, return_sequences, bias)
CASES = [
    ("last", 3, 5, 4, 6, False, True),
    ("seq", 3, 5, 4, 6, True, True),
    ("nobias", 2, 3, 3, 5, True, False),
]


def record(f, cell, suffix, n, t, feat, hidden, seq, bias, seed):
    torch.manual_seed(seed)
    kwargs = {"batch_first": True, "bias": bias}
    if cell == "rnn":
        kwargs["nonlinearity"] = "tanh"
    module = CELLS[cell](feat, hidden, **kwargs)  # default init U(-1/sqrt(H), 1/sqrt(H))
    x32 = torch.rand(n, t, feat) * 2 - 1
    names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if bias else [])
    params32 = {name: getattr(module, name + "_l0").detach().clone() for name in names}

    module = module.double()
    x = x32.double().requires_grad_(True)
    out, _ = module(x)
    if not seq:
        out = out[:, -1, :]
    r32 = torch.rand(out.shape, dtype=torch.float32) * 2 - 1
    (out * r32.double()).sum().backward()

    g = f.create_group(f"{cell}-{suffix}")
    for key, value in [("cell", cell), ("batch", n), ("steps", t), ("features", feat),
                       ("hidden", hidden), ("return_sequences", int(seq)), ("bias", int(bias))]:
        g.attrs[key] = value
    g["x"] = x32.numpy()
    g["R"] = r32.numpy()
    g["output"] = out.detach().numpy()
    g["grad_x"] = x.grad.numpy()
    for name in names:
        g[name] = params32[name].numpy()
        g["grad_" + name] = getattr(module, name + "_l0").grad.numpy()


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/layers-recurrent.h5"
    with h5py.File(path, "w") as f:
        f.attrs["generator"] = "scripts/make-recurrent-fixtures.py, torch " + torch.__version__
        seed = 100
        for cell in CELLS:
            for case in CASES:
                record(f, cell, *case, seed)
                seed += 1
    print("wrote", path)


if __name__ == "__main__":
    main()
