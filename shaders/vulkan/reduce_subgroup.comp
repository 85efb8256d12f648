#version 450
// The deterministic sum of reduce.glsl, its last levels across one subgroup by shuffles: for
// devices with subgroup shuffle-relative operations in compute shaders (vk-ops.c).
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle_relative : require
#define LMN_REDUCE_SUBGROUP
#include "reduce.glsl"
