#!/usr/bin/python3
"""Record torch.optim trajectories and lr_scheduler values for Lamina's optimizer tests.

Run with Debian's Python (it has torch 1.13 and h5py):

    /usr/bin/python3 scripts/make-optim-fixtures.py [OUTPUT_DIR]      (default tests/fixtures)

It writes optim-sgd.h5 (below), one optim-NAME.h5 per other optimizer (see OPTIMIZERS) and
optim-schedules.h5 (see SCHEDULES).

Layout of optim-sgd.h5:

    /sgd/<case>      attrs: lr (base), momentum, dampening, nesterov, weight_decay, maximize,
                            steps, n, schedule ("" or "step"), step_size, gamma
      params0        float32 [n]         the initial parameters
      grads          float32 [steps, n]  the gradient fed before step t
      params         float32 [steps, n]  the parameters after step t
      lr             float64 [steps]     the learning rate used by step t
      momentum_buffer float32 [n]        the final buffer (only when momentum != 0)
    /steplr/<i>      attrs: base_lr, step_size, gamma, warmup, warmup_start_factor
      lr             float64 [count]     the learning rate at t = 0, 1, ...

Layout of optim-NAME.h5 (adagrad, rmsprop, adam, adamw, nadam, radam, adamax, adadelta):

    /                attrs: generator, torch_version, optimizer (NAME)
    /<case>          attrs: steps, n, and one attribute "hp.KEY" per hyperparameter given, in
                            Lamina's names (torch's betas are hp.beta1, hp.beta2; booleans 0/1)
      params0        float32 [n]         the initial parameters
      grads          float32 [steps, n]  the gradient fed before step t
      params         float32 [steps, n]  the parameters after step t
      lr             float64 [steps]     the learning rate used by step t (a StepLR in the
                                         "steplr" case, else constant)
      state/<slot>   float32 [n]         every tensor in torch's final per-parameter state, under
                                         torch's name; scalar state (NAdam's mu_product) is an
                                         attribute "host.NAME" of <case>

Layout of optim-schedules.h5:

    /<type>/<i>      attrs: base_lr, warmup, warmup_start_factor, and "hp.KEY" per schedule key
                            (FLOAT_LIST keys as float64 arrays, enums as strings)
      lr             float64 [count]     the learning rate at t = 0, 1, ...
      metric         float64 [count]     (reduce_on_plateau) the metric passed after epoch t

Gradients come from a fixed quadratic, g = A p - b (negated for the maximize case, so that it
converges too), evaluated in float32 at the current parameters; they are stored, so the C test
needs no model.  Everything is seeded: the files are the same on every run.
"""
import os
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


def write_sgd(out):
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



# ---- the other optimizers ----

N_OPT = 50

# Lamina name -> (torch class, cases).  Each case is (name, Lamina hyperparameters); "steplr"
# cases also vary the learning rate (StepLR(step_size=25, gamma=0.5)) to check that every step
# uses the lr it is given.  Each optimizer's options that torch 1.13 has are all covered.
OPTIMIZERS = {
    "adagrad": (torch.optim.Adagrad, [
        ("plain", dict(lr=0.1)),
        ("weight_decay", dict(lr=0.1, weight_decay=0.05)),
        ("lr_decay", dict(lr=0.2, lr_decay=0.05)),
        ("initial_accumulator_value", dict(lr=0.1, initial_accumulator_value=0.5)),
        ("eps", dict(lr=0.1, eps=1e-3)),
        ("maximize", dict(lr=0.1, weight_decay=0.01, maximize=True)),
        ("steplr", dict(lr=0.2, lr_decay=0.01, weight_decay=0.01)),
    ]),
    "rmsprop": (torch.optim.RMSprop, [
        ("plain", dict(lr=0.01)),
        ("alpha", dict(lr=0.01, alpha=0.9)),
        ("weight_decay", dict(lr=0.01, weight_decay=0.05)),
        ("momentum", dict(lr=0.005, momentum=0.9)),
        ("centered", dict(lr=0.01, centered=True)),
        ("centered_momentum", dict(lr=0.005, momentum=0.5, centered=True, weight_decay=0.01)),
        ("maximize", dict(lr=0.01, momentum=0.5, maximize=True)),
        ("steplr", dict(lr=0.01, momentum=0.5)),
        # Lamina's nesterov option: torch has none, so Algorithm 8.6 itself is the oracle
        ("nesterov", dict(lr=0.005, momentum=0.9, nesterov=True), "RMSpropNesterov"),
        ("nesterov_centered", dict(lr=0.005, momentum=0.5, centered=True, weight_decay=0.01,
                                   nesterov=True), "RMSpropNesterov"),
        ("nesterov_maximize", dict(lr=0.005, momentum=0.7, alpha=0.9, maximize=True,
                                   nesterov=True), "RMSpropNesterov"),
    ]),
    "adam": (torch.optim.Adam, [
        ("plain", dict(lr=0.02)),
        ("betas", dict(lr=0.02, beta1=0.8, beta2=0.99)),
        ("eps", dict(lr=0.02, eps=1e-3)),
        ("weight_decay", dict(lr=0.02, weight_decay=0.05)),
        ("amsgrad", dict(lr=0.02, amsgrad=True)),
        ("maximize", dict(lr=0.02, maximize=True)),
        ("amsgrad_weight_decay_maximize", dict(lr=0.02, amsgrad=True, weight_decay=0.05,
                                               maximize=True)),
        ("steplr", dict(lr=0.05)),
    ]),
    "adamw": (torch.optim.AdamW, [
        ("plain", dict(lr=0.02)),
        ("no_weight_decay", dict(lr=0.02, weight_decay=0.0)),
        ("weight_decay", dict(lr=0.02, weight_decay=0.5)),
        ("betas", dict(lr=0.02, beta1=0.8, beta2=0.99)),
        ("amsgrad", dict(lr=0.02, amsgrad=True)),
        ("maximize", dict(lr=0.02, maximize=True)),
        ("amsgrad_maximize", dict(lr=0.02, amsgrad=True, maximize=True, weight_decay=0.1)),
        ("steplr", dict(lr=0.05, weight_decay=0.2)),
    ]),
    "nadam": (torch.optim.NAdam, [
        ("plain", dict(lr=0.02)),
        ("betas", dict(lr=0.02, beta1=0.8, beta2=0.99)),
        ("weight_decay", dict(lr=0.02, weight_decay=0.05)),
        ("momentum_decay", dict(lr=0.02, momentum_decay=0.05)),
        ("eps", dict(lr=0.02, eps=1e-3)),
        ("steplr", dict(lr=0.05)),
    ]),
    "radam": (torch.optim.RAdam, [
        ("plain", dict(lr=0.02)),
        # beta2 = 0.9: rho_inf = 19, so the rectified branch starts within a few steps
        ("betas", dict(lr=0.02, beta1=0.8, beta2=0.9)),
        ("weight_decay", dict(lr=0.02, weight_decay=0.05)),
        ("eps", dict(lr=0.02, eps=1e-3)),
        ("steplr", dict(lr=0.05)),
    ]),
    "adamax": (torch.optim.Adamax, [
        ("plain", dict(lr=0.02)),
        ("betas", dict(lr=0.02, beta1=0.8, beta2=0.99)),
        ("weight_decay", dict(lr=0.02, weight_decay=0.05)),
        ("eps", dict(lr=0.02, eps=1e-2)),
        ("maximize", dict(lr=0.02, maximize=True)),
        ("steplr", dict(lr=0.05)),
    ]),
    "adadelta": (torch.optim.Adadelta, [
        ("plain", dict(lr=1.0)),
        ("rho", dict(lr=1.0, rho=0.5)),
        ("eps", dict(lr=1.0, eps=1e-4)),
        ("weight_decay", dict(lr=1.0, weight_decay=0.05)),
        ("maximize", dict(lr=1.0, maximize=True)),
        ("steplr", dict(lr=2.0)),
    ]),
}


class RMSpropNesterov(torch.optim.Optimizer):
    """RMSprop with Nesterov momentum as Goodfellow, Bengio and Courville write it (Deep
    Learning, Algorithm 8.6), with torch.optim.RMSprop's eps, weight decay, centered and maximize
    options, in float64:

        (the caller evaluates the gradient at the interim point theta + momentum * v)
        r = alpha r + (1 - alpha) g^2;  v = momentum v - lr g / (sqrt(r) + eps);  theta += v

    The parameter it exposes is that interim point, theta + momentum * v, so that the next
    gradient is taken there.  Its state holds square_avg, grad_avg (centered) and
    momentum_buffer = -v / lr: the slots of Lamina's change of variables, for a constant lr.
    """

    def __init__(self, params, lr, momentum, alpha=0.99, eps=1e-8, weight_decay=0.0,
                 centered=False, maximize=False, nesterov=True, foreach=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps,
                                      weight_decay=weight_decay, centered=centered,
                                      maximize=maximize))
        self.aux = {}

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, m, a = group["lr"], group["momentum"], group["alpha"]
            for p in group["params"]:
                pt = p.detach().double()
                if p not in self.aux:
                    zero = torch.zeros_like(pt)
                    self.aux[p] = dict(theta=pt.clone(), v=zero, r=zero, ga=zero)
                s = self.aux[p]
                g = p.grad.double()
                g = -g if group["maximize"] else g
                g = g + group["weight_decay"] * pt  # the L2 penalty's gradient, at the same point
                s["r"] = s["r"] * a + (1 - a) * g * g
                if group["centered"]:
                    s["ga"] = s["ga"] * a + (1 - a) * g
                    avg = torch.sqrt(s["r"] - s["ga"] * s["ga"]) + group["eps"]
                else:
                    avg = torch.sqrt(s["r"]) + group["eps"]
                s["v"] = m * s["v"] - lr * g / avg
                s["theta"] = s["theta"] + s["v"]
                p.copy_((s["theta"] + m * s["v"]).float())
                st = self.state[p]
                st["square_avg"] = s["r"].float()
                st["momentum_buffer"] = (-s["v"] / lr).float()
                if group["centered"]:
                    st["grad_avg"] = s["ga"].float()


def make_problem_n(n, seed):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=g, dtype=torch.float64)
    a = (m @ m.T) / n + 0.1 * torch.eye(n, dtype=torch.float64)
    a = a / torch.linalg.eigvalsh(a).max() * 4.0
    b = torch.randn(n, generator=g, dtype=torch.float64)
    p0 = torch.randn(n, generator=g, dtype=torch.float64)
    return a.float(), b.float(), p0.float()


def torch_kwargs(hyper):
    kw = dict(hyper)
    if "beta1" in kw or "beta2" in kw:
        kw["betas"] = (kw.pop("beta1", 0.9), kw.pop("beta2", 0.999))
    return kw


def run_optimizer(cls, hyper, steplr, a, b, p0):
    sign = -1.0 if hyper.get("maximize", False) else 1.0
    p = torch.nn.Parameter(p0.clone())
    opt = cls([p], foreach=False, **torch_kwargs(hyper))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=25, gamma=0.5) if steplr else None
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
    slots, host = {}, {}
    for key, value in opt.state[p].items():
        if key == "step":
            continue
        if value.dim() == 0:
            host[key] = float(value.item())
        else:
            slots[key] = value.detach().numpy().copy()
    return (np.stack(grads).astype(np.float32), np.stack(params).astype(np.float32),
            np.array(lrs, dtype=np.float64), slots, host)


def write_optimizer(out, name):
    cls, cases = OPTIMIZERS[name]
    a, b, p0 = make_problem_n(N_OPT, 4321)
    with h5py.File(out, "w", libver="earliest") as f:
        f.attrs["generator"] = "scripts/make-optim-fixtures.py"
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["optimizer"] = name
        for entry in cases:
            case, hyper = entry[0], entry[1]
            case_cls = globals()[entry[2]] if len(entry) > 2 else cls
            grads, params, lrs, slots, host = run_optimizer(case_cls, hyper, case == "steplr",
                                                            a, b, p0)
            g = f.create_group(case)
            g.attrs["steps"] = STEPS
            g.attrs["n"] = N_OPT
            for key, value in hyper.items():
                g.attrs["hp." + key] = float(value)
            for key, value in host.items():
                g.attrs["host." + key] = value
            g.create_dataset("params0", track_times=False, data=p0.numpy())
            g.create_dataset("grads", track_times=False, data=grads)
            g.create_dataset("params", track_times=False, data=params)
            g.create_dataset("lr", track_times=False, data=lrs)
            state = g.create_group("state")
            for key, value in slots.items():
                state.create_dataset(key, track_times=False, data=value)


# ---- schedules ----

def plateau_metrics(count):
    rng = np.random.default_rng(7)
    t = np.arange(count, dtype=np.float64)
    # improves quickly, then plateaus with noise, with one late improvement
    m = 1.0 / (1.0 + 0.5 * t) + 0.02 * rng.standard_normal(count)
    m[count * 2 // 3:] -= 0.3
    return m


def lr_sequence(base_lr, make, count, metrics=None, warmup=0, start=0.1):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make(opt)
    if warmup > 0:
        linear = torch.optim.lr_scheduler.LinearLR(opt, start_factor=start, total_iters=warmup)
        sched = torch.optim.lr_scheduler.ChainedScheduler([sched, linear])
    values = []
    for i in range(count):
        values.append(opt.param_groups[0]["lr"])
        opt.step()
        if metrics is not None:
            sched.step(metrics[i])
        else:
            sched.step()
    return np.array(values, dtype=np.float64)


S = torch.optim.lr_scheduler

# type -> list of (base_lr, Lamina keys, torch constructor, count, warmup, warmup_start_factor).
# Lamina's keys are lower_snake_case: torch's T_max, T_0, T_mult are t_max, t_0, t_mult.
SCHEDULES = {
    "multistep": [
        (0.1, dict(milestones=[5, 12, 30], gamma=0.5),
         lambda o: S.MultiStepLR(o, milestones=[5, 12, 30], gamma=0.5), 40, 0, 0.1),
        (0.05, dict(milestones=[3, 3, 10]),
         lambda o: S.MultiStepLR(o, milestones=[3, 3, 10]), 20, 0, 0.1),
        (0.2, dict(milestones=[10, 4], gamma=0.3),
         lambda o: S.MultiStepLR(o, milestones=[10, 4], gamma=0.3), 20, 6, 0.25),
    ],
    "exponential": [
        (0.1, dict(gamma=0.95), lambda o: S.ExponentialLR(o, gamma=0.95), 100, 0, 0.1),
        (1.0, dict(gamma=0.5), lambda o: S.ExponentialLR(o, gamma=0.5), 40, 0, 0.1),
        (0.1, dict(gamma=0.9), lambda o: S.ExponentialLR(o, gamma=0.9), 30, 5, 0.1),
    ],
    "time_decay": [
        (0.1, dict(decay=0.5), lambda o: S.LambdaLR(o, lambda t: 1.0 / (1.0 + 0.5 * t)), 50,
         0, 0.1),
        (1.0, dict(decay=0.01), lambda o: S.LambdaLR(o, lambda t: 1.0 / (1.0 + 0.01 * t)), 50,
         0, 0.1),
    ],
    "inverse": [
        (0.1, dict(), lambda o: S.LambdaLR(o, lambda t: 1.0 / (t + 1.0)), 50, 0, 0.1),
    ],
    "linear": [
        (0.1, dict(total=10), lambda o: S.LinearLR(o, start_factor=1.0, end_factor=0.0,
                                                   total_iters=10), 20, 0, 0.1),
        (0.5, dict(total=30, end_factor=0.25),
         lambda o: S.LinearLR(o, start_factor=1.0, end_factor=0.25, total_iters=30), 50, 0, 0.1),
        (0.5, dict(total=1, end_factor=0.5),
         lambda o: S.LinearLR(o, start_factor=1.0, end_factor=0.5, total_iters=1), 15, 0, 0.1),
    ],
    "cosine": [
        (0.1, dict(t_max=20), lambda o: S.CosineAnnealingLR(o, T_max=20), 60, 0, 0.1),
        (0.5, dict(t_max=7, eta_min=0.01),
         lambda o: S.CosineAnnealingLR(o, T_max=7, eta_min=0.01), 40, 0, 0.1),
        (0.1, dict(t_max=1), lambda o: S.CosineAnnealingLR(o, T_max=1), 10, 0, 0.1),
    ],
    "cosine_restarts": [
        (0.1, dict(t_0=10), lambda o: S.CosineAnnealingWarmRestarts(o, T_0=10), 45, 0, 0.1),
        (0.5, dict(t_0=3, t_mult=2, eta_min=0.001),
         lambda o: S.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.001), 100, 0,
         0.1),
        (0.1, dict(t_0=1, t_mult=3),
         lambda o: S.CosineAnnealingWarmRestarts(o, T_0=1, T_mult=3), 50, 0, 0.1),
    ],
    "reduce_on_plateau": [
        (0.1, dict(), lambda o: S.ReduceLROnPlateau(o), 100, 0, 0.1),
        (0.1, dict(patience=2, factor=0.5),
         lambda o: S.ReduceLROnPlateau(o, patience=2, factor=0.5), 100, 0, 0.1),
        (0.1, dict(patience=1, factor=0.3, cooldown=3, min_lr=0.002),
         lambda o: S.ReduceLROnPlateau(o, patience=1, factor=0.3, cooldown=3, min_lr=0.002),
         100, 0, 0.1),
        (0.1, dict(patience=3, threshold_mode="abs", threshold=0.01),
         lambda o: S.ReduceLROnPlateau(o, patience=3, threshold_mode="abs", threshold=0.01),
         100, 0, 0.1),
        (0.1, dict(mode="max", patience=2, factor=0.5),
         lambda o: S.ReduceLROnPlateau(o, mode="max", patience=2, factor=0.5), 100, 0, 0.1),
        (0.1, dict(mode="max", threshold_mode="abs", threshold=0.05, patience=0),
         lambda o: S.ReduceLROnPlateau(o, mode="max", threshold_mode="abs", threshold=0.05,
                                       patience=0), 100, 0, 0.1),
        # reductions smaller than eps are skipped: the lr never changes
        (1e-7, dict(patience=0, factor=0.5, eps=1e-7),
         lambda o: S.ReduceLROnPlateau(o, patience=0, factor=0.5, eps=1e-7), 30, 0, 0.1),
    ],
}


def write_schedules(out):
    with h5py.File(out, "w", libver="earliest") as f:
        f.attrs["generator"] = "scripts/make-optim-fixtures.py"
        f.attrs["torch_version"] = str(torch.__version__)
        for type_name, cases in SCHEDULES.items():
            group = f.create_group(type_name)
            for i, (base_lr, keys, make, count, warmup, start) in enumerate(cases):
                g = group.create_group(str(i))
                g.attrs["base_lr"] = base_lr
                g.attrs["warmup"] = warmup
                g.attrs["warmup_start_factor"] = start
                for key, value in keys.items():
                    if isinstance(value, list):
                        g.attrs["hp." + key] = np.array(value, dtype=np.float64)
                    elif isinstance(value, str):
                        g.attrs["hp." + key] = np.bytes_(value)
                    else:
                        g.attrs["hp." + key] = float(value)
                metrics = None
                if type_name == "reduce_on_plateau":
                    metrics = plateau_metrics(count)
                    if keys.get("mode") == "max":
                        metrics = -metrics
                    g.create_dataset("metric", track_times=False, data=metrics)
                lrs = lr_sequence(base_lr, make, count, metrics, warmup, start)
                g.create_dataset("lr", track_times=False, data=lrs)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    torch.manual_seed(0)
    torch.set_num_threads(1)
    write_sgd(os.path.join(outdir, "optim-sgd.h5"))
    for name in OPTIMIZERS:
        write_optimizer(os.path.join(outdir, "optim-%s.h5" % name), name)
    write_schedules(os.path.join(outdir, "optim-schedules.h5"))


if __name__ == "__main__":
    main()
