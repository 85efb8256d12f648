/* Lamina — counter-based random numbers (Philox-4x32-10).
 *
 * Every random draw in Lamina (initialisation, shuffling, dropout masks, augmentation, gradient
 * noise) comes from Philox keyed by (seed, stream) at a 64-bit position.  Being counter-based,
 * the same numbers can be produced on the CPU and in shaders, in any order and in parallel, and a
 * stream's state is two integers, which makes checkpoints exact.
 *
 * Counter layout: ctr[0..1] = position (low, high), ctr[2..3] = stream (low, high);
 * key[0..1] = seed (low, high).  Each Philox call yields 4 words.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/** LmnRandom: a sequential reader over one (seed, stream). Plain data: copy it to save it. */
typedef struct {
    guint64 seed;
    guint64 stream;
    guint64 position; /* index of the next 4-word block */
    guint32 block[4];
    guint used;       /* words of block already consumed; 4 = none left */
    gboolean has_spare_normal;
    double spare_normal;
} LmnRandom;

/** lmn_philox4x32: one Philox-4x32-10 evaluation. */
void lmn_philox4x32(const guint32 key[2], const guint32 ctr[4], guint32 out[4]);

/** lmn_random_init: positions @r at the start of stream @stream of @seed. */
void lmn_random_init(LmnRandom *r, guint64 seed, guint64 stream);
/** lmn_random_u32: Returns: the next 32 random bits. */
guint32 lmn_random_u32(LmnRandom *r);
/** lmn_random_uniform: Returns: a float in [0, 1) with 24 random bits: (u32 >> 8) * 2^-24. */
float lmn_random_uniform(LmnRandom *r);
/** lmn_random_uniform_double: Returns: a double in [0, 1) with 53 random bits. */
double lmn_random_uniform_double(LmnRandom *r);
/** lmn_random_normal: Returns: a standard normal deviate (Box–Muller on two doubles). */
double lmn_random_normal(LmnRandom *r);
/** lmn_random_below: Returns: an unbiased integer in [0, @n) (Lemire's method), @n > 0. */
guint64 lmn_random_below(LmnRandom *r, guint64 n);
/** lmn_random_shuffle: Fisher–Yates permutation of @n indices in place. */
void lmn_random_shuffle(LmnRandom *r, guint32 *indices, gsize n);

/**
 * LmnStreamPurpose: the high 32 bits of a stream number say what it is for, the low 32 bits
 * which one (parameter index, epoch, layer index).  Build with LMN_STREAM().
 */
typedef enum {
    LMN_STREAM_INIT = 1,    /* parameter initialisation; index = parameter index in the model */
    LMN_STREAM_SHUFFLE = 2, /* data order; index = epoch */
    LMN_STREAM_SPLIT = 3,   /* validation hold-out */
    LMN_STREAM_NOISE = 4,   /* gradient noise; index = step */
    LMN_STREAM_AUGMENT = 5, /* augmentation; index = epoch */
    LMN_STREAM_LAYER = 6,   /* stochastic layers (dropout); index = layer index */
    LMN_STREAM_ATTACK = 7,  /* adversarial random starts; index = sample index in its dataset */
    LMN_STREAM_WEIGHT_NOISE = 8, /* [train] weight_noise; index = step */
} LmnStreamPurpose;

#define LMN_STREAM(purpose, index) ((((guint64) (purpose)) << 32) | (guint64) (guint32) (index))

G_END_DECLS
