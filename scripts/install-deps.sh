#!/usr/bin/env bash
# Installs the Debian 12 packages Lamina needs to build, test and run its demo.
#   scripts/install-deps.sh          build + test + demo dependencies, PyTorch and h5py included
#                                    (the interop test, bench/ and the fixture scripts use them)
#   scripts/install-deps.sh --bench  the same (accepted for older instructions)
#   scripts/install-deps.sh --fuzz   also clang and its libFuzzer runtime for scripts/fuzz.sh
# Packages already installed are left alone; nothing is installed when everything is present.
set -euo pipefail

packages=(
  gcc libc6-dev meson ninja-build pkg-config
  libglib2.0-dev libhdf5-dev hdf5-tools libopenblas-dev
  # the CPU backend's GEMM through oneDNN (used where installed; -Donednn=disabled keeps OpenBLAS)
  libdnnl-dev
  # examples/gan writes its grid of samples as PNG; lamina predict reads PNG and JPEG images
  libpng-dev libjpeg62-turbo-dev
  libvulkan-dev mesa-vulkan-drivers glslang-tools spirv-tools vulkan-validationlayers vulkan-tools
  dataset-fashion-mnist
  # lamina plot: cairo draws the curves, with a font for their labels
  libcairo2-dev fonts-dejavu-core
  # lamina export --format onnx: protobuf-c over Debian's onnx.proto; the export test checks
  # the model with onnx.checker
  protobuf-c-compiler libprotobuf-c-dev python3-onnx
  # data-parallel training: the MPI communicator plugin and its tests (mpirun)
  libopenmpi-dev openmpi-bin
  # Without these the PyTorch half of the interop test (e2e-interop-torch) is skipped.
  python3-torch python3-h5py python3-numpy
  # scripts/make-predict-fixtures.py makes and decodes the images of the predict test with PIL
  python3-pil
  # scripts/make-device-bundle.sh: RUNPATHs of the relocatable GPU bundle, and its archive
  patchelf xz-utils
)
if [ "${1:-}" = "--fuzz" ]; then
  packages+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing Debian packages: ${missing[*]}" >&2
  echo "install-deps: run as root (or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
