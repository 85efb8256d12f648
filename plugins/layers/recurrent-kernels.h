/* Lamina — the gate math of the recurrent cells (rnn, lstm, gru) as plugin kernels.
 *
 * Private to lamina-recurrent.so.  recurrent.c runs the GEMMs (input projections for all steps,
 * one recurrent GEMM per step) and launches these kernels for the element-wise part of a step,
 * so a step's nonlinearities and state update are one pass over [N, H] instead of a chain of
 * unary/binary ops with temporaries.
 *
 * Every kernel runs over i in [0, N * H), with n = i / H the sample and j = i % H the hidden
 * unit, and touches only elements of that (n, j): indices are independent as kernel.h requires.
 *
 * Each kernel has a SPIR-V variant (shaders/layers/<cell>-<forward|backward>.comp, sharing
 * shaders/layers/recurrent-common.glsl) when the build finds glslangValidator and spirv-val: the
 * same float32 operations in the same order, so a Vulkan device runs every step without host round
 * trips.  The kernel ABI has no per-buffer offsets, so a launch binds whole tensors only (the
 * saved tensors, each its own allocation, and the output and its gradient) and addresses steps
 * by index.  The core places outputs and gradients at 64-byte multiples in its activation arena,
 * which every device with minStorageBufferOffsetAlignment <= 64 binds exactly; on one with a
 * larger alignment the backend would run the CPU functions instead (with its warning).
 *
 * Layouts (G = gates per cell, H = hidden size, W = the width of a step's saved gates):
 *   proj   [N, T, G*H]  batch-major, like the input: forward X W_ih^T + b_ih; backward the
 *                       gradients of the gate pre-activations (the input-side ones for gru)
 *   step   [N, G*H]     forward h_{t-1} W_hh^T + b_hh of the current step; backward the
 *                       gradients with respect to that quantity (what W_hh, b_hh and h_{t-1}
 *                       see)
 *   hs, cs [T, N, H]    time-major hidden and cell states, so step t is a packed [N, H] block
 *   gates  [T, N, W]    time-major activated gates (lstm: i, f, g, o; gru: r, z, n, W_hn h+b_hn)
 *   out    [N, T, H] with return_sequences, else [N, H]; dy the same
 *   dh, dc [N, H]       backward: the gradient reaching h_t (dh) and c_t (dc) from step t+1
 */
#pragma once

#include <lamina/kernel.h>

G_BEGIN_DECLS

/*
 * The scalar block shared by all six kernels.  Sizes travel as floats (the kernel ABI's scalar
 * type), exact for integers below 2^24, which recurrent.c checks.
 */
enum {
    RNN_SCALAR_BATCH = 0,     /* N */
    RNN_SCALAR_STEPS = 1,     /* T */
    RNN_SCALAR_HIDDEN = 2,    /* H */
    RNN_SCALAR_T = 3,         /* the step this launch computes */
    RNN_SCALAR_SEQUENCES = 4, /* 1: out/dy are [N, T, H]; 0: [N, H], the last step only */
    RNN_N_SCALARS
};

/* Largest size that survives the trip through a float scalar exactly. */
#define RNN_MAX_SCALAR_INT (1 << 24)

/* Buffers, in launch order.  Forward: rnn (proj, step, hs, out); lstm (proj, step, gates, cs,
 * hs, out); gru (proj, step, gates, hs, out).  Backward: rnn (dy, dh, hs, proj, step); lstm (dy,
 * dh, dc, gates, cs, proj, step); gru (dy, dh, gates, hs, proj, step). */
extern const LmnKernelDesc recurrent_rnn_forward_kernel;
extern const LmnKernelDesc recurrent_rnn_backward_kernel;
extern const LmnKernelDesc recurrent_lstm_forward_kernel;
extern const LmnKernelDesc recurrent_lstm_backward_kernel;
extern const LmnKernelDesc recurrent_gru_forward_kernel;
extern const LmnKernelDesc recurrent_gru_backward_kernel;

G_END_DECLS
