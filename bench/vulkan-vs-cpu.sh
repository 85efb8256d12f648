#!/usr/bin/env bash
# Training-step throughput of the Vulkan backend against the CPU backend, same model, batch and
# synthetic data (bench/bench-train-step).  Without a GPU this measures lavapipe, Mesa's CPU
# Vulkan driver, which is a correctness vehicle rather than a fast device.
#   bench/vulkan-vs-cpu.sh [BUILD_DIR] [CONFIG]
#   LAMINA_VK_DEVICE selects the Vulkan device (default here: lavapipe); LMN_BENCH_STEPS steps.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
config=${2:-bench/mlp-sgd.ini}
steps=${LMN_BENCH_STEPS:-50}
warmup=${LMN_BENCH_WARMUP:-5}
ninja -C "$build" bench/bench-train-step >/dev/null
# Run from the build tree, so the build tree's plugins are used.
unset LAMINA_PLUGIN_SYSTEM_PATH LAMINA_PLUGIN_PATH
export LAMINA_VK_DEVICE=${LAMINA_VK_DEVICE:-lavapipe}

value() { sed -n 's/.*samples_per_s=\([0-9.]*\).*/\1/p'; }
echo "$config, $steps steps after $warmup warm-up steps, fp32"
c=$("$build/bench/bench-train-step" "$config" --steps "$steps" --warmup "$warmup" --backend cpu)
echo "cpu:    $c"
v=$("$build/bench/bench-train-step" "$config" --steps "$steps" --warmup "$warmup" \
  --backend vulkan 2>/dev/null)
echo "vulkan: $v (device $LAMINA_VK_DEVICE)"
awk -v a="$(echo "$v" | value)" -v b="$(echo "$c" | value)" \
  'BEGIN { printf "ratio vulkan/cpu %.2f\n", a / b }'
