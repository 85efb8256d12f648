#!/usr/bin/env bash
# Optimizer-step throughput, Lamina (CPU backend) against torch.optim (foreach=True), same
# parameter count (default 10M, one flat float32 vector), with 1 thread and with all cores.
# Prints parameters/s of both and the ratio lamina/pytorch per optimizer and thread count.
#   bench/optim-run.sh [BUILD_DIR]         env: LMN_BENCH_N, LMN_BENCH_STEPS
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
n=${LMN_BENCH_N:-10000000}
steps=${LMN_BENCH_STEPS:-50}
cores=$(nproc)
optimizers="sgd adam adamw rmsprop adagrad"
ninja -C "$build" bench/bench-optim-throughput >/dev/null
# Run from the build tree, so the build tree's plugins are used.
unset LAMINA_PLUGIN_SYSTEM_PATH LAMINA_PLUGIN_PATH

value() { sed -n "s/.*optimizer=$1 params_per_s=\([0-9.e+]*\).*/\1/p"; }
echo "optimizer step over $n float32 parameters, $steps timed steps, CPU ($(nproc) cores)"
printf '%-9s %7s %16s %16s %8s\n' optimizer threads lamina_params/s pytorch_params/s ratio
for t in $(printf '%s\n' 1 "$cores" | sort -nu); do
  l=$(OPENBLAS_NUM_THREADS=1 "$build/bench/bench-optim-throughput" --n "$n" --steps "$steps" \
    --threads "$t" $optimizers)
  p=$(OMP_NUM_THREADS=$t /usr/bin/python3 bench/torch_optim_throughput.py --n "$n" \
    --steps "$steps" --threads "$t" $optimizers)
  for o in $optimizers; do
    lv=$(echo "$l" | value "$o")
    pv=$(echo "$p" | value "$o")
    awk -v o="$o" -v t="$t" -v a="$lv" -v b="$pv" \
      'BEGIN { printf "%-9s %7d %16.4g %16.4g %8.2f\n", o, t, a, b, a / b }'
  done
done
