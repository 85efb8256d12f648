#!/usr/bin/python3
"""Records PyTorch's gradients of loss-free models, for tests/e2e/test-output-grad.c
(lmn_model_backward_from).

Writes tests/fixtures/output-grads.h5 (or the path given as the only argument).  Two groups,
each the PyTorch twin of Lamina configs in the C test:

  mlp  G, input [4]: dense 6 (fc1), tanh, dense 3 (fc2), no loss; backward from a given output
       gradient, i.e. out.backward(gout)
  gan  G as above, then D, input [3]: dense 5 (d1), tanh, dense 2 (d2), mse against y; the
       composed loss mse(D(G(z)), y) differentiated with respect to G's parameters and z

  GROUP/model/LAYER/PARAM        float32, G's parameters in PyTorch's names and shapes (the
                                 layout lmn_checkpoint_load_weights reads, once copied to the
                                 root of a file)
  gan/dmodel/LAYER/PARAM         float32, D's parameters likewise
  GROUP/x                        float32 [N, 4]  G's input
  mlp/gout                       float32 [N, 3]  the output gradient
  gan/y                          float32 [N, 2]  D's targets
  GROUP/grad/LAYER/PARAM         float64  d out.backward / d G's parameters
  GROUP/grad_x                   float64 [N, 4]  ... with respect to G's input

Values are drawn in float32 and stored as such; the reference is computed in float64 from
exactly those values, so the C test measures Lamina's float32 error alone.  Seeded: the file is
the same on every run.

Run with Debian's Python (python3-torch, python3-h5py):
    /usr/bin/python3 scripts/make-output-grad-fixtures.py
"""
import sys

import h5py
import torch

F = torch.nn.functional


class Gen(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 6)
        self.fc2 = torch.nn.Linear(6, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class Disc(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.d1 = torch.nn.Linear(3, 5)
        self.d2 = torch.nn.Linear(5, 2)

    def forward(self, x):
        return self.d2(torch.tanh(self.d1(x)))


def rand(*shape):
    return torch.rand(*shape, dtype=torch.float32) * 2 - 1


def store_params(g, prefix, module):
    for key, value in module.state_dict().items():
        layer, param = key.split(".", 1)
        g[f"{prefix}/{layer}/{param}"] = value.float().numpy()


def store_grads(g, module):
    for key, value in module.named_parameters():
        layer, param = key.split(".", 1)
        g[f"grad/{layer}/{param}"] = value.grad.numpy()


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/output-grads.h5"
    with h5py.File(path, "w") as f:
        torch.manual_seed(11)
        gen = Gen()
        x32, gout32 = rand(5, 4), rand(5, 3)
        g = f.create_group("mlp")
        store_params(g, "model", gen)
        g["x"] = x32.numpy()
        g["gout"] = gout32.numpy()
        gen = gen.double()
        x = x32.double().requires_grad_(True)
        gen(x).backward(gout32.double())
        store_grads(g, gen)
        g["grad_x"] = x.grad.numpy()

        torch.manual_seed(12)
        gen, disc = Gen(), Disc()
        x32, y32 = rand(5, 4), rand(5, 2)
        g = f.create_group("gan")
        store_params(g, "model", gen)
        store_params(g, "dmodel", disc)
        g["x"] = x32.numpy()
        g["y"] = y32.numpy()
        gen, disc = gen.double(), disc.double()
        x = x32.double().requires_grad_(True)
        F.mse_loss(disc(gen(x)), y32.double()).backward()  # mean over elements, like mse
        store_grads(g, gen)
        g["grad_x"] = x.grad.numpy()


if __name__ == "__main__":
    main()
