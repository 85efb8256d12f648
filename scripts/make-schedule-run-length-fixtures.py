#!/usr/bin/python3
"""Record torch.optim.lr_scheduler learning rates for Lamina's schedules that span the whole
run: one_cycle (OneCycleLR, cycle_momentum=False), and cosine and linear without their length
keys (t_max, total default to the run's length).  For tests/optim/test-lr-schedules.c.

Run with Debian's Python (python3-torch, python3-h5py):

    /usr/bin/python3 scripts/make-schedule-run-length-fixtures.py [OUTPUT_DIR]   (tests/fixtures)

It writes schedules-run-length.h5, one group per case:

    /<case>   attrs: type (Lamina's schedule), unit ("epoch"/"step"), base_lr, epochs,
                     steps_per_epoch, max_steps (0: none), "hp.KEY" per key given to Lamina
      lr      float64 [total steps]: the learning rate of each optimizer step, in order

The torch side is told the run's length explicitly (total_steps, T_max, total_iters); Lamina is
not, and must take it from the run.
"""
import math
import os
import sys

import h5py
import numpy as np
import torch

# name, Lamina type, unit, base_lr, epochs, steps_per_epoch, max_steps, Lamina keys, torch factory
CASES = [
    ("one_cycle_cos", "one_cycle", "step", 0.1, 3, 7, 0, {},
     lambda opt, total, epochs: torch.optim.lr_scheduler.OneCycleLR(
         opt, max_lr=0.1, total_steps=total, cycle_momentum=False)),
    ("one_cycle_linear_max_steps", "one_cycle", "step", 0.05, 4, 5, 13,
     {"anneal": "linear", "pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0},
     lambda opt, total, epochs: torch.optim.lr_scheduler.OneCycleLR(
         opt, max_lr=0.05, total_steps=total, pct_start=0.25, div_factor=10.0,
         final_div_factor=100.0, anneal_strategy="linear", cycle_momentum=False)),
    ("one_cycle_total_given", "one_cycle", "step", 0.2, 2, 6, 0, {"total": 16},
     lambda opt, total, epochs: torch.optim.lr_scheduler.OneCycleLR(
         opt, max_lr=0.2, total_steps=16, cycle_momentum=False)),
    ("cosine_run_epochs", "cosine", "epoch", 0.1, 5, 3, 0, {"eta_min": 0.001},
     lambda opt, total, epochs: torch.optim.lr_scheduler.CosineAnnealingLR(
         opt, T_max=epochs, eta_min=0.001)),
    ("linear_run_steps", "linear", "step", 0.1, 3, 4, 0, {"end_factor": 0.1},
     lambda opt, total, epochs: torch.optim.lr_scheduler.LinearLR(
         opt, start_factor=1.0, end_factor=0.1, total_iters=total)),
]


def record(case):
    name, _, unit, base_lr, epochs, spe, max_steps, _, make = case
    total = epochs * spe if max_steps == 0 else min(max_steps, epochs * spe)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make(opt, total, epochs)
    n_sched_steps = min(total, 16) if name == "one_cycle_total_given" else total
    lrs = []
    for k in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        # torch steps per epoch for epoch-unit schedules, per step otherwise; OneCycleLR refuses
        # a step past its total
        if unit == "step" and k + 1 < n_sched_steps:
            sched.step()
        elif unit == "epoch" and (k + 1) % spe == 0:
            sched.step()
    return np.array(lrs, dtype=np.float64)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
    path = os.path.join(out_dir, "schedules-run-length.h5")
    with h5py.File(path, "w") as f:
        f.attrs["generator"] = "scripts/make-schedule-run-length-fixtures.py"
        f.attrs["torch_version"] = str(torch.__version__)
        for case in CASES:
            name, type_, unit, base_lr, epochs, spe, max_steps, keys, _ = case
            g = f.create_group(name)
            g.attrs["type"] = type_
            g.attrs["unit"] = unit
            g.attrs["base_lr"] = base_lr
            g.attrs["epochs"] = epochs
            g.attrs["steps_per_epoch"] = spe
            g.attrs["max_steps"] = max_steps
            for k, v in keys.items():
                g.attrs["hp." + k] = v
            g.create_dataset("lr", data=record(case))
    print("wrote", path)


if __name__ == "__main__":
    main()
