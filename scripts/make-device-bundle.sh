#!/usr/bin/env bash
# Builds Lamina (release, -Donednn=disabled) and packs a relocatable copy that runs on a machine
# without Debian's libraries: a GPU machine that has a Vulkan driver, PyTorch and little else.
#
#   scripts/make-device-bundle.sh [BUILD_DIR] [OUT_DIR]     (defaults: build-release .device-bundle)
#
# Makes OUT_DIR and OUT_DIR.tar.xz, the same folder packed (git ignores /.device-bundle/ and
# /.device-bundle.tar.xz): the folder runs here, the archive is what travels to the GPU machine
# (about 16 MiB against the folder's 70, most of it OpenBLAS's kernels for every x86-64 core;
# bench/gpu/device-check.sh --bundle unpacks it).  OUT_DIR holds
#   bin/      lamina, bench-train-step, bench-vulkan-gemm and the Vulkan test programs
#             (test-vulkan-ops, -gemm, -layers, test-devices), each with RUNPATH $ORIGIN/../lib
#   lib/      liblamina and every shared library the programs and plugins need that a base
#             system may lack (resolved with ldd), RUNPATH $ORIGIN
#   plugins/  every plugin (backends/cpu, backends/vulkan, layers, ...), RUNPATH to lib/
#   libexec/  lamina-plugin-scanner, the out-of-process plugin scanner
#   env.sh    sourced before running: LAMINA_PLUGIN_SYSTEM_PATH, LAMINA_PLUGIN_SCANNER, PATH
#   vulkan-loader/*.deb  the Vulkan loader and GL dispatch libraries (amd64), for a machine whose
#             `ldconfig -p` has no libvulkan (bench/gpu/device-check.sh unpacks them)
#   bench/    the model configs bench/gpu/device-check.sh trains
# Left out, as every machine has them (or they must come from the GPU's driver): glibc (libc,
# libm, libdl, libpthread, librt, ld-linux), libgcc_s, libstdc++, libvulkan and the driver's
# libraries.  Needs patchelf (scripts/install-deps.sh installs it) and apt-get for the debs.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build-release}
out=${2:-.device-bundle}
limit_mib=50

command -v patchelf >/dev/null || { echo "make-device-bundle: patchelf is missing (apt-get install patchelf)" >&2; exit 1; }
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$src" --buildtype=release -Donednn=disabled -Dtests=true
else
  meson configure "$build" --buildtype=release -Donednn=disabled -Dtests=true
fi
ninja -C "$build"
build=$(cd "$build" && pwd)

rm -rf "$out" "$out.tar.xz"
mkdir -p "$out"/{bin,lib,plugins,libexec,vulkan-loader,bench}
out=$(cd "$out" && pwd)

# Base-system and driver libraries: never copied, so the machine's own (newer) ones are used.
is_base() {
  case "$(basename "$1")" in
    libc.so* | libm.so* | libdl.so* | libpthread.so* | librt.so* | ld-linux* | libresolv.so* | \
      libgcc_s.so* | libstdc++.so* | libvulkan.so* | libnvidia* | libcuda* | linux-vdso*) return 0 ;;
  esac
  return 1
}

# Copies every non-base library @1 needs (ldd resolves the whole tree) into lib/.
copy_deps() {
  ldd "$1" | awk '/=> \// { print $3 }' | while read -r lib; do
    is_base "$lib" && continue
    case "$lib" in "$build"/*) continue ;; esac  # Lamina's own: copied from the build below
    [ -e "$out/lib/$(basename "$lib")" ] || cp -L "$lib" "$out/lib/"
  done
}

for p in cli/lamina bench/bench-train-step bench/bench-vulkan-gemm tests/vulkan/test-vulkan-ops \
  tests/vulkan/test-vulkan-gemm tests/vulkan/test-vulkan-layers tests/vulkan/test-devices; do
  cp "$build/$p" "$out/bin/"
  copy_deps "$build/$p"
done
cp -L "$build"/core/liblamina.so.0 "$out/lib/"
ls "$out"/lib/liblamina.so.* >/dev/null
cp "$build/scanner/lamina-plugin-scanner" "$out/libexec/"
copy_deps "$build/scanner/lamina-plugin-scanner"
(cd "$build/plugins" && find . -name 'lamina-*.so' -printf '%h\n' | sort -u) | while read -r dir; do
  mkdir -p "$out/plugins/$dir"
  for so in "$build/plugins/$dir"/lamina-*.so; do
    cp "$so" "$out/plugins/$dir/"
    copy_deps "$so"
  done
done
# The libraries' own needs (a dependency of a dependency is already in ldd's answer, but a
# library ldd found only through the build tree's RUNPATH is resolved again here).
for lib in "$out"/lib/*.so*; do copy_deps "$lib"; done

# RUNPATHs relative to each file, so the folder can move anywhere.
for f in "$out"/bin/* "$out"/libexec/*; do patchelf --set-rpath '$ORIGIN/../lib' "$f"; done
for f in "$out"/lib/*.so*; do patchelf --set-rpath '$ORIGIN' "$f"; done
find "$out/plugins" -name '*.so' | while read -r f; do
  rel=$(realpath --relative-to="$(dirname "$f")" "$out/lib")
  patchelf --set-rpath "\$ORIGIN/$rel" "$f"
done
strip --strip-unneeded "$out"/bin/* "$out"/libexec/* "$out"/lib/*.so* 2>/dev/null || true
find "$out/plugins" -name '*.so' -exec strip --strip-unneeded {} +

# Every file must resolve inside the bundle or the base system.
missing=$(for f in "$out"/bin/* "$out"/libexec/* $(find "$out/plugins" "$out/lib" -name '*.so*'); do
  ldd "$f" | grep 'not found' | sed "s|^|$(basename "$f"): |"
done || true)
if [ -n "$missing" ]; then
  echo "make-device-bundle: unresolved libraries:" >&2
  echo "$missing" >&2
  exit 1
fi

plugin_path=$(cd "$out/plugins" && find . -name 'lamina-*.so' -printf '%h\n' | sort -u |
  sed 's|^\./||' | tr '\n' ' ')
cat >"$out/env.sh" <<EOF
# Source this (bash): runs the bundle's programs with the bundle's plugins and scanner.
lmn_bundle=\$(cd "\$(dirname "\${BASH_SOURCE[0]}")" && pwd)
LAMINA_PLUGIN_SYSTEM_PATH=
for d in $plugin_path; do
  LAMINA_PLUGIN_SYSTEM_PATH=\${LAMINA_PLUGIN_SYSTEM_PATH:+\$LAMINA_PLUGIN_SYSTEM_PATH:}\$lmn_bundle/plugins/\$d
done
export LAMINA_PLUGIN_SYSTEM_PATH LAMINA_PLUGIN_PATH=
export LAMINA_PLUGIN_SCANNER=\$lmn_bundle/libexec/lamina-plugin-scanner
export PATH=\$lmn_bundle/bin:\$PATH
EOF
cp "$src"/bench/mlp-sgd.ini "$src"/bench/lenet5.ini "$src"/bench/resnet.ini "$out/bench/"
git -C "$src" describe --always --dirty >"$out/VERSION" 2>/dev/null || echo unknown >"$out/VERSION"

# The Vulkan loader and GL dispatch libraries, amd64, as the device machine may have none.
lists=$(mktemp -d)
mkdir -p "$lists/partial"
o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
apt-get "${o[@]}" update -q >/dev/null
(cd "$out/vulkan-loader" &&
  apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 \
    2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
rm -rf "$lists"
ls "$out"/vulkan-loader/libvulkan1_*.deb >/dev/null

tar -C "$(dirname "$out")" -cf - "$(basename "$out")" | xz -T0 -6 >"$out.tar.xz.tmp"
mv "$out.tar.xz.tmp" "$out.tar.xz"
size_kib=$(du -sk "$out" | cut -f1)
archive_kib=$(($(stat -c %s "$out.tar.xz") / 1024))
echo "make-device-bundle: $out: $((size_kib / 1024)) MiB, $(ls "$out/lib" | wc -l) libraries;" \
  "$out.tar.xz: $((archive_kib / 1024)) MiB ($archive_kib KiB)"
if [ "$archive_kib" -gt $((limit_mib * 1024)) ]; then
  echo "make-device-bundle: $out.tar.xz is larger than $limit_mib MiB" >&2
  exit 1
fi
