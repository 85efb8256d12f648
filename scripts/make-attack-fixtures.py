#!/usr/bin/python3
"""Records PyTorch's FGSM and PGD adversarial examples against a small model, for
tests/e2e/test-attack.c (`lamina attack`, include/lamina/attack.h).

Writes tests/fixtures/attack.h5 (or the path given as the only argument), which is at once a
Lamina checkpoint and a dataset file:

  attrs format = "lamina-checkpoint", format_version = 1 on /
  /config              the Lamina config of the model (CONFIG below)
  /model/LAYER/PARAM   float32, PyTorch's names and shapes (batch_norm with running statistics)
  /clean/x, /clean/y   float32 [N, 8] inputs in [-1, 1], int32 [N] labels: a dataset split
  /ref/CASE/x_adv      float32 [N, 8]: PyTorch's adversarial inputs for CASE
  /ref/CASE attrs      clean_accuracy, adversarial_accuracy (float64)

The model is dense 16, batch_norm, tanh, dropout 0.5, dense 3, softmax cross-entropy, with
non-trivial batch-norm running statistics: the attack runs in evaluation mode, so dropout is
the identity and batch normalisation uses those statistics.  CASES lists the attacks (their
options are repeated in the C test).  Every step is computed in float32 with the operations in
attack.h's order: x + alpha * sign(g), then min(max(x, x0 - eps), x0 + eps) for PGD, then
min(max(x, lo), hi).  The script checks that no gradient element is near 0 (where float32
rounding could flip its sign between two implementations) and that no prediction is near a tie,
and reseeds otherwise, so the comparison in the C test is exact up to rounding.

Run with Debian's Python (python3-torch, python3-h5py):
    /usr/bin/python3 scripts/make-attack-fixtures.py
"""
import math
import sys

import h5py
import torch

F = torch.nn.functional

CONFIG = """[model]
input = 8
[layer fc1]
type = dense
units = 16
[layer bn]
type = batch_norm
[layer act]
type = tanh
[layer drop]
type = dropout
p = 0.5
[layer fc2]
type = dense
units = 3
[layer loss]
type = softmax_cross_entropy
[optimizer]
type = sgd
[data]
train = unused.h5:/train
"""

N = 32
INF = math.inf
# name: (method, eps, steps, alpha, clip_min, clip_max); dyadic values, exact in float32.
CASES = {
    "fgsm": ("fgsm", 0.25, 1, 0.25, -INF, INF),
    "fgsm-clip": ("fgsm", 0.25, 1, 0.25, -1.0, 1.0),
    "pgd": ("pgd", 0.25, 5, 0.0625, -1.0, 1.0),
    "pgd-noclip": ("pgd", 0.5, 7, 0.125, -INF, INF),
}


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(8, 16)
        self.bn = torch.nn.BatchNorm1d(16)
        self.drop = torch.nn.Dropout(0.5)
        self.fc2 = torch.nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(self.drop(torch.tanh(self.bn(self.fc1(x)))))


class Tie(Exception):
    pass


def correct(model, x, y):
    with torch.no_grad():
        logits = model(x)
    top = torch.topk(logits, 2, dim=1).values
    if (top[:, 0] - top[:, 1]).min() < 1e-4:
        raise Tie("a prediction is near a tie")
    return int((logits.argmax(dim=1) == y).sum())


def attack(model, x0, y, method, eps, steps, alpha, lo, hi):
    x = x0.clone()
    for _ in range(steps):
        x.requires_grad_(True)
        loss = F.cross_entropy(model(x), y)  # the batch mean, like softmax_cross_entropy
        (g,) = torch.autograd.grad(loss, x)
        if (g.abs() / g.abs().max()).min() < 1e-4:
            raise Tie("a gradient element is near 0")
        x = x.detach() + alpha * torch.sign(g)
        if method == "pgd":
            x = torch.min(torch.max(x, x0 - eps), x0 + eps)
        x = torch.min(torch.max(x, torch.tensor(lo)), torch.tensor(hi))
    return x.detach()


def attempt(seed):
    torch.manual_seed(seed)
    model = Model()
    with torch.no_grad():
        model.bn.weight.copy_(torch.rand(16) + 0.5)
        model.bn.bias.copy_(torch.rand(16) - 0.5)
        model.bn.running_mean.copy_(torch.rand(16) - 0.5)
        model.bn.running_var.copy_(torch.rand(16) + 0.5)
    model.eval()
    x = torch.rand(N, 8) * 2 - 1
    y = torch.randint(0, 3, (N,), dtype=torch.int64)
    clean = correct(model, x, y)
    refs = {}
    for name, (method, eps, steps, alpha, lo, hi) in CASES.items():
        adv = attack(model, x, y, method, eps, steps, alpha, lo, hi)
        refs[name] = (adv, clean / N, correct(model, adv, y) / N)
    return model, x, y, refs


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/attack.h5"
    for seed in range(1, 100):
        try:
            model, x, y, refs = attempt(seed)
            break
        except Tie as why:
            print(f"seed {seed}: {why}; trying the next", file=sys.stderr)
    else:
        sys.exit("no seed without ties")
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "lamina-checkpoint"
        f.attrs["format_version"] = 1
        f["config"] = CONFIG
        for key, value in model.state_dict().items():
            if key.endswith("num_batches_tracked"):
                continue
            layer, param = key.split(".", 1)
            f[f"model/{layer}/{param}"] = value.float().numpy()
        f["clean/x"] = x.numpy()
        f["clean/y"] = y.int().numpy()
        for name, (adv, clean_acc, adv_acc) in refs.items():
            g = f.create_group(f"ref/{name}")
            g["x_adv"] = adv.numpy()
            g.attrs["clean_accuracy"] = clean_acc
            g.attrs["adversarial_accuracy"] = adv_acc
            print(f"{name}: clean {clean_acc:.4f} adversarial {adv_acc:.4f}")


if __name__ == "__main__":
    main()
