#version 450
// batchnorm.glsl, its trees ending in subgroup shuffles (tree.glsl): for devices with shuffle-relative
// subgroup operations in compute shaders.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle_relative : require
#define LMN_SUBGROUP_TREE
#include "batchnorm.glsl"
