#!/usr/bin/python3
"""PyTorch side of bench/optim-run.sh: times optimizer.step() of torch.optim (foreach=True) over
one float32 parameter of N elements (default 10M) with a fixed gradient, the work
bench-optim-throughput times in Lamina.  Prints one line per optimizer:
"optimizer=NAME params_per_s=...".

  torch_optim_throughput.py [--n N] [--steps N] [--warmup N] [--threads N] [OPTIMIZER...]
"""
import argparse
import time

import torch

# The same settings as bench/optim-throughput.c: sgd with momentum, the others' defaults.
OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, foreach=True),
    "adam": lambda p: torch.optim.Adam(p, foreach=True),
    "adamw": lambda p: torch.optim.AdamW(p, foreach=True),
    "rmsprop": lambda p: torch.optim.RMSprop(p, foreach=True),
    "adagrad": lambda p: torch.optim.Adagrad(p, foreach=True),
    "nadam": lambda p: torch.optim.NAdam(p, foreach=True),
    "radam": lambda p: torch.optim.RAdam(p, foreach=True),
    "adamax": lambda p: torch.optim.Adamax(p, foreach=True),
    "adadelta": lambda p: torch.optim.Adadelta(p, foreach=True),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("optimizers", nargs="*", default=["sgd", "adam", "adamw", "rmsprop",
                                                      "adagrad"])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(1)
    init = torch.rand(a.n, generator=g) - 0.5
    for name in a.optimizers:
        p = torch.nn.Parameter(init.clone())
        p.grad = init.clone()
        opt = OPTIMIZERS[name]([p])
        with torch.no_grad():
            for s in range(a.warmup + a.steps):
                if s == a.warmup:
                    t0 = time.perf_counter()
                opt.step()
        secs = time.perf_counter() - t0
        print("optimizer=%s params_per_s=%.4g n=%d steps=%d seconds=%.3f threads=%d torch=%s"
              % (name, a.n * a.steps / secs, a.n, a.steps, secs, a.threads, torch.__version__),
              flush=True)


if __name__ == "__main__":
    main()
