#version 450
// normalize.glsl, its trees ending in shared memory (tree.glsl).
#extension GL_GOOGLE_include_directive : require
#include "normalize.glsl"
