#!/bin/sh
# lamina-embed-shader.sh GLSLANG SPIRV_VAL INPUT.comp OUTPUT.h NAME
#
# Compiles a GLSL compute shader to SPIR-V for Vulkan 1.2, checks it with spirv-val, and writes
# OUTPUT.h declaring `const uint32_t NAME[]` (glslangValidator's --vn output).  Used by Lamina's
# Vulkan backend and installed for third-party plugins that ship SPIR-V kernels (see
# share/lamina/plugin-shaders.md).
set -eu
glslang=$1
spirv_val=$2
input=$3
output=$4
name=$5
spv="$output.spv"
"$glslang" --quiet --target-env vulkan1.2 -V "$input" -o "$spv"
"$spirv_val" --target-env vulkan1.2 "$spv"
"$glslang" --quiet --target-env vulkan1.2 -V --vn "$name" "$input" -o "$output"
rm -f "$spv"
