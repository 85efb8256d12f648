#!/usr/bin/python3
"""Records PyTorch's gradient of a model's loss with respect to its input, for
tests/e2e/test-input-grad.c (lmn_model_set_input_grad).

Writes tests/fixtures/input-grads.h5 (or the path given as the only argument).  One group per
model, each the PyTorch twin of a Lamina config in the C test:

  mlp       input [6]:        dense 8, tanh, dense 4, softmax cross-entropy
  cnn       input [2, 6, 6]:  conv2d 3 (3x3, padding 1), maxpool2d 2, batch_norm (training mode:
                              batch statistics), relu, flatten, dense 3, softmax cross-entropy
  lstm      input [5, 3]:     lstm 4 (last step), dense 2, mse
  residual  input [6]:        a = tanh(dense 6 (x)), b = dense 6 (x), s = a + b + x + x
                              (the input read by four layer inputs, twice by the add),
                              dense 3, softmax cross-entropy

  model/LAYER/PARAM   float32, PyTorch's names and shapes (batch_norm with its running_mean and
                      running_var buffers): the layout lmn_checkpoint_load_weights reads, once
                      copied to the root of a file
  x                   float32 [N, input shape...]
  y                   int32 [N] class labels, or float32 [N, 2] targets for mse
  loss                float64 []  mean-reduced loss
  grad_x              float64 [N, input shape...]  d loss / d x

Weights and inputs are drawn in float32 and stored as such; the reference is then computed in
float64 from exactly those values, so the fixture holds PyTorch's exact answer and the C test
measures Lamina's float32 error alone.  Everything is seeded: the file is the same on every run.

Run with Debian's Python (python3-torch, python3-h5py):
    /usr/bin/python3 scripts/make-input-grad-fixtures.py
"""
import sys

import h5py
import torch

F = torch.nn.functional


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(6, 8)
        self.fc2 = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class Cnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(3)
        self.fc = torch.nn.Linear(3 * 3 * 3, 3)

    def forward(self, x):
        h = F.relu(self.bn(F.max_pool2d(self.conv(x), 2)))
        return self.fc(torch.flatten(h, 1))


class Lstm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(3, 4, batch_first=True)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1, :])

    def lamina_state(self):
        # Lamina's lstm layer names its parameters without PyTorch's "_l0" suffix.
        state = {}
        for name, value in self.state_dict().items():
            state[name.replace("_l0", "")] = value
        return state


class Residual(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc_a = torch.nn.Linear(6, 6)
        self.fc_b = torch.nn.Linear(6, 6)
        self.fc_out = torch.nn.Linear(6, 3)

    def forward(self, x):
        s = torch.tanh(self.fc_a(x)) + self.fc_b(x) + x + x
        return self.fc_out(s)


def state_of(module):
    if hasattr(module, "lamina_state"):
        return module.lamina_state()
    return module.state_dict()


def record(f, name, module, x32, y, loss_fn):
    # The stored float32 values, before the module is switched to float64.
    params32 = {k: v.detach().clone() for k, v in state_of(module).items()
                if not k.endswith("num_batches_tracked")}
    module = module.double().train()
    x = x32.double().requires_grad_(True)
    out = module(x)
    loss = loss_fn(out, y.double() if y.dtype == torch.float32 else y.long())
    loss.backward()

    g = f.create_group(name)
    for key, value in params32.items():
        layer, param = key.split(".", 1)
        g[f"model/{layer}/{param}"] = value.float().numpy()
    g["x"] = x32.numpy()
    g["y"] = y.numpy()
    g["loss"] = loss.detach().numpy()
    g["grad_x"] = x.grad.numpy()


def rand(*shape):
    return torch.rand(*shape, dtype=torch.float32) * 2 - 1


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/input-grads.h5"
    xent = F.cross_entropy  # mean over the batch, like softmax_cross_entropy
    with h5py.File(path, "w") as f:
        torch.manual_seed(1)
        record(f, "mlp", Mlp(), rand(5, 6), torch.tensor([0, 3, 1, 2, 3], dtype=torch.int32),
               xent)
        torch.manual_seed(2)
        cnn = Cnn()
        # Non-trivial affine parameters, so the batch-norm gradient is not the identity's.
        with torch.no_grad():
            cnn.bn.weight.copy_(rand(3) * 0.5 + 1)
            cnn.bn.bias.copy_(rand(3) * 0.5)
        record(f, "cnn", cnn, rand(4, 2, 6, 6), torch.tensor([2, 0, 1, 2], dtype=torch.int32),
               xent)
        torch.manual_seed(3)
        record(f, "lstm", Lstm(), rand(3, 5, 3), rand(3, 2), F.mse_loss)  # mean over elements
        torch.manual_seed(4)
        record(f, "residual", Residual(), rand(5, 6),
               torch.tensor([1, 0, 2, 2, 1], dtype=torch.int32), xent)


if __name__ == "__main__":
    main()
