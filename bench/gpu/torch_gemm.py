#!/usr/bin/python3
"""torch.matmul GFLOP/s on CUDA at the GEMM shapes bench-vulkan-gemm timed.

  torch_gemm.py BENCH_VULKAN_GEMM_OUTPUT [--time S]

Reads the shape rows of a bench-vulkan-gemm run (net layer pass op MxNxK batch ...), times the
same product in float32 with the same transposes (a transposed operand is a transposed view, as
cuBLAS takes it) and batch (torch.bmm when batch > 1), with TF32 off and then on, and prints one
line per shape: "gemm net layer pass op MxNxK batch fp32=GFLOPS tf32=GFLOPS".  Timing: CUDA events
around as many back-to-back products as fill --time seconds, after three warm-up products.
"""
import argparse
import re
import sys

import torch

ROW = re.compile(r"^(\S+)\s+(\S+)\s+(\S+)\s+([NT]{2})\s+(\d+)x(\d+)x(\d+)\s+(\d+)\s")


def shapes(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = ROW.match(line)
            if m:
                yield (m.group(1), m.group(2), m.group(3), m.group(4),
                       int(m.group(5)), int(m.group(6)), int(m.group(7)), int(m.group(8)))


def operand(rows, cols, trans, batch):
    # Stored transposed when the op reads it transposed, then viewed back as rows x cols.
    shape = (cols, rows) if trans else (rows, cols)
    t = torch.rand((batch,) + shape if batch > 1 else shape, device="cuda") - 0.5
    return t.transpose(-1, -2) if trans else t


def gflops(op, m, n, k, batch, seconds):
    a = operand(m, k, op[0] == "T", batch)
    b = operand(k, n, op[1] == "T", batch)
    for _ in range(3):
        torch.matmul(a, b)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    torch.matmul(a, b)
    end.record()
    end.synchronize()
    once = max(start.elapsed_time(end) / 1e3, 1e-6)
    reps = int(min(max(seconds / once, 1), 1000))
    start.record()
    for _ in range(reps):
        torch.matmul(a, b)
    end.record()
    end.synchronize()
    secs = max(start.elapsed_time(end) / 1e3, 1e-9)
    return 2.0 * m * n * k * batch * reps / secs / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gemm_output")
    ap.add_argument("--time", type=float, default=0.1)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch_gemm: pytorch cuda: unavailable", file=sys.stderr)
        return 1
    rows = list(shapes(a.gemm_output))
    if not rows:
        print(f"torch_gemm: no shape rows in {a.gemm_output}", file=sys.stderr)
        return 1
    print(f"# torch {torch.__version__} on {torch.cuda.get_device_name(0)}, float32")
    for net, layer, pas, op, m, n, k, batch in rows:
        figures = {}
        for prec, tf32 in (("fp32", False), ("tf32", True)):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            figures[prec] = gflops(op, m, n, k, batch, a.time)
        print(f"gemm {net} {layer} {pas} {op} {m}x{n}x{k} {batch} "
              f"fp32={figures['fp32']:.2f} tf32={figures['tf32']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
