#!/bin/sh
# Writes the adding problem as a Lamina dataset: /train (10000) and /test (1000) sequences of
# 50 steps, x float32 [N, 50, 2] (a value in [0, 1) and a marker, 1 at exactly two steps),
# y float32 [N, 1] = the sum of the two marked values.  See examples/lstm-adding-problem.ini.
#
# usage: scripts/make-adding-problem.sh GEN_ADDING [OUTPUT] [gen-adding options...]
#   GEN_ADDING  the generator built with Lamina (e.g. build/examples/gen-adding)
#   OUTPUT      the file to write (default data/adding-problem.h5); an existing one is replaced
#   options     --steps T, --train N, --test N, --seed S (defaults 50, 10000, 1000, 1)
set -eu

usage() {
    echo "usage: $0 GEN_ADDING [OUTPUT] [--steps T] [--train N] [--test N] [--seed S]" >&2
    echo "  (e.g. $0 build/examples/gen-adding data/adding-problem.h5)" >&2
    exit 2
}

[ $# -ge 1 ] || usage
gen=$1
shift
output=data/adding-problem.h5
if [ $# -ge 1 ]; then
    case $1 in
    -*) ;;
    *) output=$1; shift ;;
    esac
fi

if [ ! -x "$gen" ]; then
    echo "$0: $gen is not an executable; build Lamina first (meson setup build && ninja -C build)" >&2
    exit 1
fi
mkdir -p "$(dirname "$output")"
# Write next to the target and rename, so an interrupted run never leaves a truncated dataset.
tmp="$output.tmp.$$"
trap 'rm -f "$tmp"' EXIT
"$gen" "$tmp" "$@" >/dev/null
mv -f "$tmp" "$output"
trap - EXIT
echo "wrote $output"
