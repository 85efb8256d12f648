#!/usr/bin/python3
"""Record torch.optim.SGD trajectories and lr_scheduler values for Lamina's optimizer tests.

Run with Debian's Python (it has torch 1.13 and h5py):

    /usr/bin/python3 scripts/make-optim-fixtures.py [tests/fixtures/optim-sgd.h5]

Layout of the file:

    /sgd/<case>      attrs: lr (base), momentum, dampening, nesterov, weight_decay, maximize,
                            steps, n, schedule ("" or "step"), step_size, gamma
      params0        float32 [n]         the initial parameters
      grads          float32 [steps, n]  the gradient fed before step t
      params         float32 [steps, n]  the parameters after step t
      lr             float64 [steps]     the learning rate used by step t
      momentum_buffer float32 [n]        the final buffer (only when momentum != 0)
    /steplr/<i>      attrs: base_lr, step_size, gamma, warmup, warmup_start_factor
      lr             float64 [count]     the learning rate at t = 0, 1, ...

Gradients come from a fixed quadratic, g = A p - b (negated for the maximize case, so that it
converges too), evaluated in float32 at the current parameters; they are stored, so the C test
needs no model.  Everything is seeded: the file is the same on every run.
"""
import sys

import h5py
import numpy as np
import torch

N = 32
STEPS = 100

CASES = [
    ("plain", dict(lr=0.05)),
    ("momentum", dict(lr=0.02, momentum=0.9)),
    ("dampening", dict(lr=0.02, momentum=0.9, dampening=0.5)),
    ("nesterov", dict(lr=0.02, momentum=0.9, nesterov=True)),
    ("weight_decay", dict(lr=0.05, weight_decay=1e-2)),
    ("weight_decay_momentum", dict(lr=0.02, momentum=0.9, weight_decay=1e-2)),
    ("maximize", dict(lr=0.02, momentum=0.9, weight_decay=1e-2, maximize=True)),
    ("steplr", dict(lr=0.05, momentum=0.9, schedule=("step", 30, 0.5))),
]

STEPLR = [
    # base_lr, step_size, gamma, warmup, warmup_start_factor, count
    (0.1, 1, 0.1, 0, 0.1, 12),
    (0.1, 3, 0.5, 0, 0.1, 40),
    (0.05, 10, 0.9, 0, 0.1, 60),
    (1.0, 7, 0.25, 0, 0.1, 40),
    (0.1, 3, 0.5, 5, 0.1, 30),
    (0.2, 4, 0.8, 8, 0.25, 30),
]


def make_problem():
    g = torch.Generator().manual_seed(1234)
    m = torch.randn(N, N, generator=g, dtype=torch.float64)
    # Symmetric positive definite with eigenvalues in about [0.1, 4]: every case converges.
    a = (m @ m.T) / N + 0.1 * torch.eye(N, dtype=torch.float64)
    a = a / torch.linalg.eigvalsh(a).max() * 4.0
    b = torch.randn(N, generator=g, dtype=torch.float64)
    p0 = torch.randn(N, generator=g, dtype=torch.float64)
    return a.float(), b.float(), p0.float()


def run_case(opts, a, b, p0):
    opts = dict(opts)
    schedule = opts.pop("schedule", None)
    sign = -1.0 if opts.get("maximize", False) else 1.0
    p = torch.nn.Parameter(p0.clone())
    opt = torch.optim.SGD([p], foreach=False, **opts)
    sched = None
    if schedule is not None:
        _, step_size, gamma = schedule
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma)
    grads, params, lrs = [], [], []
    for _ in range(STEPS):
        with torch.no_grad():
            grad = sign * (a @ p.detach() - b)
        p.grad = grad.clone()
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
        grads.append(grad.numpy().copy())
        params.append(p.detach().numpy().copy())
    buf = opt.state[p].get("momentum_buffer")
    return (np.stack(grads).astype(np.float32), np.stack(params).astype(np.float32),
            np.array(lrs, dtype=np.float64), None if buf is None else buf.numpy().copy())


def steplr_values(base_lr, step_size, gamma, warmup, start_factor, count):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base_lr)
    step = torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma)
    if warmup > 0:
        linear = torch.optim.lr_scheduler.LinearLR(opt, start_factor=start_factor,
                                                   total_iters=warmup)
        sched = torch.optim.lr_scheduler.ChainedScheduler([step, linear])
    else:
        sched = step
    values = []
    for _ in range(count):
        values.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(values, dtype=np.float64)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/optim-sgd.h5"
    torch.manual_seed(0)
    torch.set_num_threads(1)
    a, b, p0 = make_problem()
    with h5py.File(out, "w", libver="earliest") as f:
        f.attrs["generator"] = "scripts/make-optim-fixtures.py"
        f.attrs["torch_version"] = str(torch.__version__)
        sgd = f.create_group("sgd")
        for name, opts in CASES:
            grads, params, lrs, buf = run_case(opts, a, b, p0)
            g = sgd.create_group(name)
            g.attrs["lr"] = float(opts["lr"])
            g.attrs["momentum"] = float(opts.get("momentum", 0.0))
            g.attrs["dampening"] = float(opts.get("dampening", 0.0))
            g.attrs["nesterov"] = int(opts.get("nesterov", False))
            g.attrs["weight_decay"] = float(opts.get("weight_decay", 0.0))
            g.attrs["maximize"] = int(opts.get("maximize", False))
            g.attrs["steps"] = STEPS
            g.attrs["n"] = N
            sched = opts.get("schedule")
            g.attrs["schedule"] = sched[0] if sched else ""
            g.attrs["step_size"] = int(sched[1]) if sched else 0
            g.attrs["gamma"] = float(sched[2]) if sched else 0.0
            g.create_dataset("params0", track_times=False, data=p0.numpy())
            g.create_dataset("grads", track_times=False, data=grads)
            g.create_dataset("params", track_times=False, data=params)
            g.create_dataset("lr", track_times=False, data=lrs)
            if buf is not None:
                g.create_dataset("momentum_buffer", track_times=False, data=buf)
        steplr = f.create_group("steplr")
        for i, (base_lr, step_size, gamma, warmup, start, count) in enumerate(STEPLR):
            g = steplr.create_group(str(i))
            g.attrs["base_lr"] = base_lr
            g.attrs["step_size"] = step_size
            g.attrs["gamma"] = gamma
            g.attrs["warmup"] = warmup
            g.attrs["warmup_start_factor"] = start
            lrs = steplr_values(base_lr, step_size, gamma, warmup, start, count)
            g.create_dataset("lr", track_times=False, data=lrs)


if __name__ == "__main__":
    main()
