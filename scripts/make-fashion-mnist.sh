#!/bin/sh
# Converts Debian's Fashion-MNIST (package dataset-fashion-mnist) to Lamina's HDF5 layout:
# one file with the splits /train (60000 samples) and /test (10000), x uint8 [N, 1, 28, 28]
# with scale = 1/255, y uint8 [N].
#
# usage: scripts/make-fashion-mnist.sh LAMINA [OUTPUT]
#   LAMINA  the lamina binary (e.g. build/cli/lamina)
#   OUTPUT  the file to write (default data/fashion-mnist.h5); an existing one is replaced
#
# FASHION_MNIST_DIR overrides where the IDX files are looked for.
set -eu

usage() {
    echo "usage: $0 LAMINA [OUTPUT]  (e.g. $0 build/cli/lamina data/fashion-mnist.h5)" >&2
    exit 2
}

[ $# -ge 1 ] && [ $# -le 2 ] || usage
lamina=$1
output=${2:-data/fashion-mnist.h5}
src=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}

if [ ! -x "$lamina" ]; then
    echo "$0: $lamina is not an executable; build Lamina first (meson setup build && ninja -C build)" >&2
    exit 1
fi
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    if [ ! -f "$src/$f.gz" ]; then
        echo "$0: $src/$f.gz not found; install the data with: apt-get install dataset-fashion-mnist" >&2
        exit 1
    fi
done

mkdir -p "$(dirname "$output")"
# Build the new file beside the old one, then move it into place, so a failure halfway leaves
# any previous file intact and never a file with only /train.
tmp="$(dirname "$output")/.$(basename "$output").new.$$"
trap 'rm -f "$tmp"' EXIT INT TERM
rm -f "$tmp"
# Fashion-MNIST's class names, label 0 to 9, which `lamina predict` prints.
classes="T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"
# `lamina convert` reports "wrote N samples [shape] to TMP:/split"; show the final name instead.
done=$("$lamina" convert idx "$src/train-images-idx3-ubyte.gz" "$src/train-labels-idx1-ubyte.gz" \
    --classes "$classes" --output "$tmp:/train")
echo "${done%% to *} to $output:/train"
done=$("$lamina" convert idx "$src/t10k-images-idx3-ubyte.gz" "$src/t10k-labels-idx1-ubyte.gz" \
    --classes "$classes" --output "$tmp:/test")
echo "${done%% to *} to $output:/test"
mv -f "$tmp" "$output"
trap - EXIT INT TERM
