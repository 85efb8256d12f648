#!/usr/bin/python3
"""Record torch.optim trajectories with parameter groups for Lamina's fine-tuning tests
([layer] lr_mult and trainable, tests/e2e/test-finetune.c).

Run with Debian's Python (it has torch 1.13 and h5py):

    /usr/bin/python3 scripts/make-finetune-fixtures.py [OUTPUT_DIR]    (default tests/fixtures)

It writes finetune.h5.  The model is Lamina's

    [layer fc1] dense, units = 8   (input 2)
    [layer act1] tanh
    [layer fc2] dense, units = 4
    [layer loss] softmax_cross_entropy

trained full-batch (one step per epoch, no shuffling) on N samples.  fc1's parameters form one
torch parameter group with lr = lr_mult * lr, fc2's another with the base lr, and a schedule
(StepLR) scales both, as Lamina scales the scheduled lr of each range.  A frozen fc1
(trainable = false) is requires_grad = False and left out of the optimizer.

Layout of finetune.h5:

    /                attrs: generator, torch_version, steps, n
      x              float32 [n, 2]      the samples
      y              int32 [n]           their classes (0..3)
      init/<param>   float32             the initial parameters: fc1.weight [8, 2], fc1.bias [8],
                                         fc2.weight [4, 8], fc2.bias [4] (torch's shapes, which
                                         are Lamina's)
    /<case>          attrs: optimizer (Lamina's name), fc1_lr_mult, fc1_trainable (0/1),
                            step_size and gamma (a StepLR per step; step_size 0: constant), and
                            "hp.KEY" per hyperparameter in Lamina's names (betas: hp.beta1/2)
      <param>        float32             the parameters after the last step
      state/<param>/<slot>  float32      torch's per-parameter state tensors after the last step,
                                         under torch's names (Lamina's slot names)

Everything is seeded: the file is the same on every run.
"""
import os
import sys

import h5py
import numpy as np
import torch

N = 16
STEPS = 6

# name, optimizer, hyperparameters (torch's names), fc1 lr_mult, fc1 trainable, StepLR
CASES = [
    ("sgd_momentum", "sgd", dict(lr=0.1, momentum=0.9), 0.5, True, None),
    ("sgd_steplr", "sgd", dict(lr=0.2, momentum=0.9), 0.5, True, (2, 0.5)),
    ("adam", "adam", dict(lr=0.01), 0.5, True, None),
    ("adam_steplr", "adam", dict(lr=0.02, weight_decay=0.01), 0.25, True, (2, 0.5)),
    ("nadam", "nadam", dict(lr=0.01), 0.5, True, None),
    ("adam_frozen", "adam", dict(lr=0.01), 1.0, False, None),
    ("sgd_frozen", "sgd", dict(lr=0.1, momentum=0.9), 1.0, False, None),
]

PARAMS = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


def make_data():
    g = torch.Generator().manual_seed(7)
    y = torch.randint(0, 4, (N,), generator=g)
    centres = torch.tensor([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]])
    x = centres[y] + torch.randn(N, 2, generator=g)
    return x.float(), y


def make_model():
    torch.manual_seed(3)
    return torch.nn.Sequential(
        torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4)
    )


def optimizer_for(name, hp, groups):
    if name == "sgd":
        return torch.optim.SGD(groups, **hp)
    if name == "adam":
        return torch.optim.Adam(groups, **hp)
    if name == "nadam":
        return torch.optim.NAdam(groups, **hp)
    raise ValueError(name)


def lamina_hp(hp):
    out = {}
    for k, v in hp.items():
        if k == "betas":
            out["beta1"], out["beta2"] = v
        else:
            out[k] = v
    return out


def record_case(f, x, y, init, case):
    name, opt_name, hp, mult, trainable, steplr = case
    model = make_model()
    with torch.no_grad():
        for (pname, p) in zip(PARAMS, model.parameters()):
            p.copy_(torch.from_numpy(init[pname]))
    fc1 = list(model[0].parameters())
    fc2 = list(model[2].parameters())
    if trainable:
        groups = [dict(params=fc1, lr=mult * hp["lr"]), dict(params=fc2)]
    else:
        for p in fc1:
            p.requires_grad_(False)
        groups = [dict(params=fc2)]
    opt = optimizer_for(opt_name, hp, groups)
    sched = None
    if steplr is not None:
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=steplr[0], gamma=steplr[1])
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(STEPS):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
    g = f.create_group(name)
    g.attrs["optimizer"] = opt_name
    g.attrs["fc1_lr_mult"] = mult
    g.attrs["fc1_trainable"] = int(trainable)
    g.attrs["step_size"] = steplr[0] if steplr else 0
    g.attrs["gamma"] = steplr[1] if steplr else 1.0
    for k, v in lamina_hp(hp).items():
        g.attrs["hp." + k] = float(v)
    for pname, p in zip(PARAMS, model.parameters()):
        g.create_dataset(pname, data=p.detach().numpy().astype(np.float32))
        for slot, t in opt.state.get(p, {}).items():
            if torch.is_tensor(t) and t.dim() > 0:
                g.create_dataset("state/%s/%s" % (pname, slot),
                                 data=t.detach().numpy().astype(np.float32))


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
    x, y = make_data()
    model = make_model()
    init = {n: p.detach().numpy().astype(np.float32).copy()
            for n, p in zip(PARAMS, model.parameters())}
    path = os.path.join(out_dir, "finetune.h5")
    with h5py.File(path, "w") as f:
        f.attrs["generator"] = "scripts/make-finetune-fixtures.py"
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["steps"] = STEPS
        f.attrs["n"] = N
        f.create_dataset("x", data=x.numpy())
        f.create_dataset("y", data=y.numpy().astype(np.int32))
        for n in PARAMS:
            f.create_dataset("init/" + n, data=init[n])
        for case in CASES:
            record_case(f, x, y, init, case)
    print("wrote", path)


if __name__ == "__main__":
    main()
