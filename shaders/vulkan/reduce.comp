#version 450
// The deterministic sum of reduce.glsl, its last levels in shared memory (any device).
#extension GL_GOOGLE_include_directive : require
#include "reduce.glsl"
