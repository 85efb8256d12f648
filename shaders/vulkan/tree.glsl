// (tree.glsl) How a workgroup's shared-memory tree (a sum or a max over gl_WorkGroupSize.x
// values, pairing element t with t + w at each width w) ends, for the kernels that include it.
// Compiled plain, shared memory runs every level (LMN_TREE_FLOOR 1).  With LMN_SUBGROUP_TREE
// (the *_subgroup.comp variants, for devices with shuffle-relative subgroup operations in compute
// shaders), shared memory runs the levels down to one subgroup's width and subgroup 0 ends the
// tree in registers: lane l holds element l and adds lane l + w, the tree's own pairing, so the
// result is the same bits with log2(subgroup size) fewer barriers.  The host picks the variant
// only where the workgroup is a whole number of subgroups (vk-exec.c).
#ifdef LMN_SUBGROUP_TREE
#define LMN_TREE_FLOOR gl_SubgroupSize

float lmn_lanes_sum(float v)
{
    for (uint w = gl_SubgroupSize / 2u; w > 0u; w >>= 1)
        v += subgroupShuffleDown(v, w);
    return v;
}

float lmn_lanes_max(float v)
{
    for (uint w = gl_SubgroupSize / 2u; w > 0u; w >>= 1)
        v = max(v, subgroupShuffleDown(v, w));
    return v;
}
#else
#define LMN_TREE_FLOOR 1u
#endif

// With LMN_TREE_SH defined, the shader has declared `shared float sh[]` of at least
// gl_WorkGroupSize.x elements: lmn_tree_all(v, is_max) is then the sum (or the max) of every
// invocation's v, returned to all of them, sh free for reuse when it returns.  Every invocation
// of the workgroup must call it (it has barriers).
#ifdef LMN_TREE_SH
float lmn_tree_all(float v, bool is_max)
{
    uint t = gl_LocalInvocationID.x;
    sh[t] = v;
    barrier();
    for (uint w = gl_WorkGroupSize.x / 2u; w >= LMN_TREE_FLOOR; w >>= 1) {
        if (t < w)
            sh[t] = is_max ? max(sh[t], sh[t + w]) : sh[t] + sh[t + w];
        barrier();
    }
#ifdef LMN_SUBGROUP_TREE
    if (gl_SubgroupID == 0u) {
        // Lane 0 reads element 0 itself, so writing it back races with no other lane.
        float l = sh[gl_SubgroupInvocationID];
        l = is_max ? lmn_lanes_max(l) : lmn_lanes_sum(l);
        if (gl_SubgroupInvocationID == 0u)
            sh[0] = l;
    }
    barrier();
#endif
    float r = sh[0];
    barrier();
    return r;
}
#endif
