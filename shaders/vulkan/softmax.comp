#version 450
// softmax.glsl, its trees ending in shared memory (tree.glsl).
#extension GL_GOOGLE_include_directive : require
#include "softmax.glsl"
