#!/usr/bin/env bash
# Trains a U-Net example for 300 steps on the CPU backend and requires a mean IoU of at least
# MIN_IOU on the test split, measured by `lamina eval --json`; the targets come from
# scripts/add-fashion-mnist-masks.py.  By default examples/unet-fashion-mnist-seg.ini (each
# garment from the background) and 0.95 (predicting all background scores about 0.28,
# thresholding the input itself is not available to the model).
#   train-unet.sh LAMINA SOURCE_ROOT PYTHON [EXAMPLE.ini MIN_IOU]
set -euo pipefail
lamina=$1
src=$2
python=$3
example=${4:-unet-fashion-mnist-seg.ini}
min_iou=${5:-0.95}
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "SKIP: Debian's dataset-fashion-mnist is not installed (scripts/install-deps.sh installs it)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$src/scripts/make-fashion-mnist.sh" "$lamina" "$tmp/fm.h5"
"$python" "$src/scripts/add-fashion-mnist-masks.py" "$tmp/fm.h5"
sed "s|data/fashion-mnist.h5|$tmp/fm.h5|g" "$src/examples/$example" >"$tmp/unet.ini"
"$lamina" train "$tmp/unet.ini" --output "$tmp/out" --backend cpu --max-steps 300
json=$("$lamina" eval "$tmp/out/final.h5" --data "$tmp/fm.h5:/test" --json)
echo "eval: $json"
iou=$(echo "$json" | sed -n 's/.*"mean_iou": \([0-9.]*\).*/\1/p')
awk -v a="$iou" -v m="$min_iou" 'BEGIN { if (a + 0 >= m + 0) exit 0; print "mean IoU " a " is below " m; exit 1 }'
echo "ok: $example: mean IoU $iou after 300 steps (at least $min_iou)"
