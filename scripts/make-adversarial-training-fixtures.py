#!/usr/bin/python3
"""Record PyTorch trajectories of adversarial training (Goodfellow et al. 2015) for Lamina's
`[train] adversarial` tests (tests/e2e/test-adversarial-train.c).

Run with Debian's Python (python3-torch, python3-h5py):

    /usr/bin/python3 scripts/make-adversarial-training-fixtures.py [OUTPUT_DIR]  (tests/fixtures)

It writes adversarial-train.h5.  Each case trains one of two models, full-batch (one step per
epoch, no shuffling) for STEPS steps on N samples:

    mlp:  [layer fc1] dense 8 (input 2), [layer act1] tanh, [layer fc2] dense 4, softmax CE
    bn:   [layer fc1] dense 8, [layer bn] batch_norm, [layer act1] tanh, [layer fc2] dense 4, CE

Every step is Lamina's (core/train/adversarial.c): the batch is attacked in evaluation mode from
the step's weights (FGSM: x' = clip(x + eps sign(g)); PGD: steps of alpha with projection onto
the eps-ball, then clip; g the gradient of the batch-mean loss), then the model in training mode
takes one optimizer step on w * J(x) + (1 - w) * J(x'), the clean forward first (the batch-norm
running statistics see the clean batch, then the attacked one).  Like
scripts/make-attack-fixtures.py it makes sure no input-gradient element is near 0 at any attack
step (where float32 rounding could flip its sign between two implementations), reseeding the
data otherwise.

Layout of adversarial-train.h5:

    /                   attrs: generator, torch_version, steps, n
    /<case>             attrs: model ("mlp" or "bn"), optimizer (Lamina's name), "hp.KEY" per
                               hyperparameter, method ("fgsm"/"pgd"), eps, adv_steps, alpha,
                               clip_min, clip_max (+-inf: none), weight
      x, y              float32 [n, 2], int32 [n]: the samples
      init/<param>      float32: the initial parameters (torch's shapes, which are Lamina's)
      final/<param>     float32: parameters (and bn running statistics) after the last step
      losses            float64 [steps]: the training loss w J(x) + (1 - w) J(x') of each step
"""
import math
import os
import sys

import h5py
import numpy as np
import torch

F = torch.nn.functional
N = 16
STEPS = 5
INF = math.inf

# name, model, optimizer, hyperparameters, method, eps, attack steps, alpha, clip, weight
CASES = [
    ("fgsm_sgd", "mlp", "sgd", dict(lr=0.1, momentum=0.9), "fgsm", 0.25, 1, 0.25, (-INF, INF), 0.5),
    ("fgsm_clip_adam", "mlp", "adam", dict(lr=0.02), "fgsm", 0.5, 1, 0.5, (-2.0, 2.0), 0.3),
    ("pgd_bn_sgd", "bn", "sgd", dict(lr=0.1, momentum=0.9), "pgd", 0.25, 3, 0.125, (-3.0, 3.0),
     0.5),
    ("pgd_adam_w0", "mlp", "adam", dict(lr=0.02), "pgd", 0.5, 4, 0.25, (-INF, INF), 0.0),
]


class Tie(Exception):
    pass


def make_model(kind):
    torch.manual_seed(3)
    layers = [torch.nn.Linear(2, 8)]
    if kind == "bn":
        layers.append(torch.nn.BatchNorm1d(8))
    layers += [torch.nn.Tanh(), torch.nn.Linear(8, 4)]
    return torch.nn.Sequential(*layers)


def names(kind):
    """Lamina's LAYER/NAME of each torch state_dict entry, in order."""
    out = {"0.weight": "fc1/weight", "0.bias": "fc1/bias"}
    if kind == "bn":
        out.update({"1.weight": "bn/weight", "1.bias": "bn/bias",
                    "1.running_mean": "bn/running_mean", "1.running_var": "bn/running_var",
                    "3.weight": "fc2/weight", "3.bias": "fc2/bias"})
    else:
        out.update({"2.weight": "fc2/weight", "2.bias": "fc2/bias"})
    return out


def attack(model, x0, y, method, eps, steps, alpha, lo, hi):
    model.eval()
    x = x0.clone()
    for _ in range(steps if method == "pgd" else 1):
        x.requires_grad_(True)
        loss = F.cross_entropy(model(x), y)
        (g,) = torch.autograd.grad(loss, x)
        if (g.abs() / g.abs().max()).min() < 1e-3:
            raise Tie("an input-gradient element is near 0")
        x = x.detach() + (alpha if method == "pgd" else eps) * torch.sign(g)
        if method == "pgd":
            x = torch.min(torch.max(x, x0 - eps), x0 + eps)
        x = torch.min(torch.max(x, torch.tensor(lo)), torch.tensor(hi))
    model.train()
    return x.detach()


def optimizer_for(name, hp, params):
    return (torch.optim.SGD if name == "sgd" else torch.optim.Adam)(params, **hp)


def run_case(case, x, y):
    name, kind, opt_name, hp, method, eps, adv_steps, alpha, clip, w = case
    model = make_model(kind)
    init = {k: v.detach().numpy().astype(np.float32).copy()
            for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    opt = optimizer_for(opt_name, hp, model.parameters())
    model.train()
    losses = []
    for _ in range(STEPS):
        x_adv = attack(model, x, y, method, eps, adv_steps, alpha, clip[0], clip[1])
        opt.zero_grad()
        loss = w * F.cross_entropy(model(x), y) + (1 - w) * F.cross_entropy(model(x_adv), y)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    final = {k: v.detach().numpy().astype(np.float32).copy()
             for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    return init, final, losses


def make_data(seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (N,), generator=g)
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    x = centres[y] + 0.7 * torch.randn(N, 2, generator=g)
    return x.float(), y


def lamina_hp(hp):
    return {k: float(v) for k, v in hp.items()}


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
    path = os.path.join(out_dir, "adversarial-train.h5")
    results = {}
    for case in CASES:
        for seed in range(1, 200):
            x, y = make_data(seed)
            try:
                results[case[0]] = (x, y) + run_case(case, x, y)
                break
            except Tie as why:
                print(f"{case[0]}, data seed {seed}: {why}; trying the next", file=sys.stderr)
        else:
            sys.exit(f"{case[0]}: no data seed without near-zero gradients")
    with h5py.File(path, "w") as f:
        f.attrs["generator"] = "scripts/make-adversarial-training-fixtures.py"
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["steps"] = STEPS
        f.attrs["n"] = N
        for case in CASES:
            name, kind, opt_name, hp, method, eps, adv_steps, alpha, clip, w = case
            x, y, init, final, losses = results[name]
            g = f.create_group(name)
            g.attrs["model"] = kind
            g.attrs["optimizer"] = opt_name
            for k, v in lamina_hp(hp).items():
                g.attrs["hp." + k] = v
            g.attrs["method"] = method
            g.attrs["eps"] = eps
            g.attrs["adv_steps"] = adv_steps
            g.attrs["alpha"] = alpha
            g.attrs["clip_min"] = clip[0]
            g.attrs["clip_max"] = clip[1]
            g.attrs["weight"] = w
            g.create_dataset("x", data=x.numpy())
            g.create_dataset("y", data=y.numpy().astype(np.int32))
            for k, lname in names(kind).items():
                g.create_dataset("init/" + lname, data=init[k])
                g.create_dataset("final/" + lname, data=final[k])
            g.create_dataset("losses", data=np.array(losses, dtype=np.float64))
    print("wrote", path)


if __name__ == "__main__":
    main()
