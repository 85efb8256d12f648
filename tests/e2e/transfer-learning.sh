#!/usr/bin/env bash
# The transfer-learning example (examples/transfer-learning/) end to end on the CPU backend:
# the source model, then a new head on its frozen trunk with --init-partial.  Checks that the
# skipped tensors are named, that the frozen convolutions are byte for byte those of the source
# model, that fc1 (lr_mult = 0.1) moved, and that the fine-tuned model reaches at least 88% on
# the target task's test images (it reaches 91.9%), measured by `lamina eval --json`.
#   transfer-learning.sh LAMINA SOURCE_ROOT
set -euo pipefail
lamina=$1
src=$2
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "SKIP: Debian's dataset-fashion-mnist is not installed"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ex="$src/examples/transfer-learning"
"$src/scripts/make-fashion-mnist.sh" "$lamina" "$tmp/fm.h5"
/usr/bin/python3 "$ex/make-data.py" "$tmp/fm.h5" "$tmp/transfer.h5"
for c in pretrain finetune; do
  sed "s|data/transfer.h5|$tmp/transfer.h5|g" "$ex/$c.ini" >"$tmp/$c.ini"
done
"$lamina" train "$tmp/pretrain.ini" --output "$tmp/source" --backend cpu --quiet
"$lamina" train "$tmp/finetune.ini" --init "$tmp/source/final.h5" --init-partial \
  --output "$tmp/finetune" --backend cpu --quiet 2>"$tmp/init.log"
cat "$tmp/init.log"
grep -q "head_target.weight not loaded (missing in" "$tmp/init.log"
grep -q "loaded 6 of 8 tensors" "$tmp/init.log"
for p in conv1/weight conv1/bias conv2/weight conv2/bias; do
  h5diff "$tmp/source/final.h5" "$tmp/finetune/final.h5" "/model/$p" "/model/$p" ||
    { echo "frozen $p changed"; exit 1; }
done
if h5diff -q "$tmp/source/final.h5" "$tmp/finetune/final.h5" /model/fc1/weight /model/fc1/weight; then
  echo "fc1 (lr_mult = 0.1) did not learn"
  exit 1
fi
json=$("$lamina" eval "$tmp/finetune/final.h5" --data "$tmp/transfer.h5:/target_test" --json --backend cpu)
echo "eval: $json"
acc=$(echo "$json" | sed -n 's/.*"accuracy": \([0-9.]*\).*/\1/p')
awk -v a="$acc" 'BEGIN { if (a + 0 >= 0.88) exit 0; print "accuracy " a " is below 0.88"; exit 1 }'
echo "ok: target-task test accuracy $acc"
