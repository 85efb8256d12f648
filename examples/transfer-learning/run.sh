#!/usr/bin/env bash
# The transfer-learning example end to end, from the repository root's point of view:
#   examples/transfer-learning/run.sh [BUILD_DIR] [OUTPUT_DIR]    (default build, out)
# 1. splits Fashion-MNIST into a source task (classes 0-5) and a target task with 20 training
#    images per class (classes 6-9), data/transfer.h5;
# 2. trains the source model (pretrain.ini) into OUTPUT/tl-source;
# 3. fine-tunes a new head on the frozen trunk (finetune.ini, --init ... --init-partial) into
#    OUTPUT/tl-finetune, and trains the same network from scratch (scratch.ini) into
#    OUTPUT/tl-scratch;
# 4. prints both target-task test accuracies (lamina eval --json).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
out=${2:-out}
lamina="$build/cli/lamina"
here=examples/transfer-learning
[ -f data/fashion-mnist.h5 ] || scripts/make-fashion-mnist.sh "$lamina" data/fashion-mnist.h5
[ -f data/transfer.h5 ] || /usr/bin/python3 "$here/make-data.py" data/fashion-mnist.h5 data/transfer.h5
"$lamina" train "$here/pretrain.ini" --output "$out/tl-source" --no-progress
"$lamina" train "$here/finetune.ini" --init "$out/tl-source/final.h5" --init-partial \
  --output "$out/tl-finetune" --quiet
"$lamina" train "$here/scratch.ini" --output "$out/tl-scratch" --quiet
for run in tl-finetune tl-scratch; do
  acc=$("$lamina" eval "$out/$run/final.h5" --data data/transfer.h5:/target_test --json |
    sed -n 's/.*"accuracy": *\([0-9.]*\).*/\1/p')
  awk -v r="$run" -v a="$acc" 'BEGIN { printf "%-12s target-task test accuracy %.2f%%\n", r, 100 * a }'
done
