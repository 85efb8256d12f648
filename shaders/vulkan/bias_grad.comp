#version 450
// bias_grad.glsl, its trees ending in shared memory (tree.glsl).
#extension GL_GOOGLE_include_directive : require
#include "bias_grad.glsl"
