#!/usr/bin/python3
"""Records PyTorch's losses and gradients of a model with two weighted losses reading two
different targets, for tests/e2e/test-multi-loss.c.

Writes tests/fixtures/multi-loss.h5 (or the path given as the only argument).  The PyTorch twin
of the Lamina config in the C test, input [4]:

  fc1 dense 6, act tanh, then two heads on act:
    fc2 dense 3 -> main: softmax cross-entropy against y (class labels), weight 1
    fc3 dense 2 -> aux:  mse against z (float32 [N, 2]), weight 0.5
  loss = 1 * main + 0.5 * aux, differentiated as loss.backward()

  two-head/model/LAYER/PARAM   float32, parameters in PyTorch's names and shapes (the layout
                               lmn_checkpoint_load_weights reads, once copied to a file's root)
  two-head/x                   float32 [N, 4]  input
  two-head/y                   int32 [N]       class labels of main
  two-head/z                   float32 [N, 2]  targets of aux
  two-head/loss_main, loss_aux float64 []      each loss's own value
  two-head/loss                float64 []      the weighted total
  two-head/grad/LAYER/PARAM    float64         d loss / d parameters
  two-head/grad_x              float64 [N, 4]  d loss / d x

Values are drawn in float32 and stored as such; the reference is computed in float64 from
exactly those values, so the C test measures Lamina's float32 error alone.  Seeded: the file is
the same on every run.

Run with Debian's Python (python3-torch, python3-h5py):
    /usr/bin/python3 scripts/make-multi-loss-fixtures.py
"""
import sys

import h5py
import torch

F = torch.nn.functional
N = 5
W_MAIN, W_AUX = 1.0, 0.5


class TwoHead(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 6)
        self.fc2 = torch.nn.Linear(6, 3)
        self.fc3 = torch.nn.Linear(6, 2)

    def forward(self, x):
        h = torch.tanh(self.fc1(x))
        return self.fc2(h), self.fc3(h)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/multi-loss.h5"
    torch.manual_seed(21)
    net = TwoHead()
    x32 = torch.rand(N, 4, dtype=torch.float32) * 2 - 1
    y = torch.randint(0, 3, (N,), dtype=torch.int64)
    z32 = torch.rand(N, 2, dtype=torch.float32) * 2 - 1
    with h5py.File(path, "w") as f:
        g = f.create_group("two-head")
        for key, value in net.state_dict().items():
            layer, param = key.split(".", 1)
            g[f"model/{layer}/{param}"] = value.float().numpy()
        g["x"] = x32.numpy()
        g["y"] = y.int().numpy()
        g["z"] = z32.numpy()
        net = net.double()
        x = x32.double().requires_grad_(True)
        logits, out = net(x)
        main_loss = F.cross_entropy(logits, y)  # mean over the batch
        aux_loss = F.mse_loss(out, z32.double())  # mean over elements, like mse
        loss = W_MAIN * main_loss + W_AUX * aux_loss
        loss.backward()
        g["loss_main"] = main_loss.item()
        g["loss_aux"] = aux_loss.item()
        g["loss"] = loss.item()
        for key, value in net.named_parameters():
            layer, param = key.split(".", 1)
            g[f"grad/{layer}/{param}"] = value.grad.numpy()
        g["grad_x"] = x.grad.numpy()


if __name__ == "__main__":
    main()
