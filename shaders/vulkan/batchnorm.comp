#version 450
// batchnorm.glsl, its trees ending in shared memory (tree.glsl).
#extension GL_GOOGLE_include_directive : require
#include "batchnorm.glsl"
