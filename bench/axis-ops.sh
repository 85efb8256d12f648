#!/usr/bin/env bash
# layer_norm, broadcasting binary ops, conv_transpose2d and upsample (forward + backward) at
# U-Net-like shapes: Lamina's CPU
# backend (bench-axis-ops) against PyTorch on the CPU (bench/torch_axis_ops.py), interleaved, RUNS
# times.  PyTorch runs at 1 and 2 threads, each with this environment's OPENBLAS_CORETYPE /
# OPENBLAS_L2_SIZE kept and unset; per run and case the fastest of those four is compared.
# Prints every figure and, per case, PyTorch's time over Lamina's (above 1: Lamina is faster)
# as min / median / max over the runs.
#   bench/axis-ops.sh [BUILD_DIR] [RUNS]        (needs PyTorch: scripts/install-deps.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
runs=${2:-5}
iters=${LMN_BENCH_ITERS:-50}
ninja -C "$build" bench/bench-axis-ops >/dev/null
unset LAMINA_PLUGIN_SYSTEM_PATH LAMINA_PLUGIN_PATH
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq "$runs"); do
  "$build/bench/bench-axis-ops" --iters "$iters" | sed "s/^/$r lamina /" >>"$out"
  for t in 1 2; do
    OMP_NUM_THREADS=$t /usr/bin/python3 bench/torch_axis_ops.py --iters "$iters" --threads "$t" |
      sed "s/^/$r torch-$t /" >>"$out"
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=$t \
      /usr/bin/python3 bench/torch_axis_ops.py --iters "$iters" --threads "$t" |
      sed "s/^/$r torch-$t-unset /" >>"$out"
  done
done
cat "$out"
/usr/bin/python3 - "$out" <<'PY'
import statistics, sys
t = {}
for line in open(sys.argv[1]):
    run, who, case, shape, ms = line.split()
    t.setdefault((case, shape), {}).setdefault(int(run), {})[who] = float(ms.split("=")[1])
print(f"{'case':<12} {'shape':<9} {'lamina ms':>10} {'torch ms':>9}  torch/lamina min / median / max")
for (case, shape), per_run in t.items():
    lam = [v["lamina"] for v in per_run.values()]
    best = [min(x for k, x in v.items() if k != "lamina") for v in per_run.values()]
    ratios = sorted(b / l for b, l in zip(best, lam))
    print(f"{case:<12} {shape:<9} {statistics.median(lam):>10.3f} {statistics.median(best):>9.3f}"
          f"  {ratios[0]:.2f} / {statistics.median(ratios):.2f} / {ratios[-1]:.2f}")
PY
