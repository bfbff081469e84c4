/*
 * Scalar reference quantizers and dequantizers for the block formats of
 * blocks.h (weights: q8_0, q4_0, q4_1; activations: q8_0, q8_1).
 *
 * Rounding rule (ggml's *_ref, so files and activations match ggml bit for
 * bit): per block of RWE_QK elements,
 *   q8_0/q8_1: d = amax / 127, q = roundf(x * (1/d))       (half away from zero)
 *   q4_0:      d = max / -8 (max = the signed element of largest magnitude),
 *              q = min(15, (int8_t)(x * (1/d) + 8.5))
 *   q4_1:      d = (max - min) / 15, m = min, q = min(15, (int8_t)((x - m) * (1/d) + 0.5))
 * A zero scale gets an inverse of 0, so an all-zero block gives d = 0, q = 0
 * (q = 8 for q4_0, whose zero point is 8).  d, m, s are stored as fp16 (RNE).
 * n must be a multiple of RWE_QK.
 */
#ifndef RWE_QUANT_H
#define RWE_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "../rwkv_edge.h"
#include "blocks.h"

void rwe_quantize_row_q8_0_ref(const float *x, void *y, int64_t n);
void rwe_quantize_row_q8_1_ref(const float *x, void *y, int64_t n);
void rwe_quantize_row_q4_0_ref(const float *x, void *y, int64_t n);
void rwe_quantize_row_q4_1_ref(const float *x, void *y, int64_t n);

void rwe_dequantize_row_q8_0_ref(const void *x, float *y, int64_t n);
void rwe_dequantize_row_q4_0_ref(const void *x, float *y, int64_t n);
void rwe_dequantize_row_q4_1_ref(const void *x, float *y, int64_t n);
/* n elements of a row of any weight type (f32, f16, bf16, q8_0, q4_0,
 * q4_1) as f32; other types leave y untouched. */
void rwe_row_to_f32(rwe_type t, const void *x, float *y, int64_t n);

/*
 * The "lanes" layout of a q8_0 / q4_0 / q4_1 row: the same bytes as the row
 * of ggml blocks, reordered at load time for kernel sets that read it
 * (rwe_kernels.mm[type].lanes), so that one 32-bit lane of a vector holds
 * one block.  A row is cut into groups of up to RWE_LANES_GROUP blocks:
 *   header: d of the group's m blocks (fp16), then their m (q4_1 only)
 *   quants: superblocks of n <= RWE_LANES_SB blocks; vector k (k < 8 for
 *     q8_0, k < 4 for q4) is n lanes of 4 bytes, lane l holding quant
 *     bytes 4k..4k+3 of the superblock's block l.  A q4 byte keeps both
 *     nibbles (elements i and i + 16); q8_0 bytes are stored as q + 128.
 * A whole group of 32 blocks is 576 (q4_0), 640 (q4_1) or 1088 (q8_0)
 * bytes, a multiple of 64, so a row whose start is aligned reads its
 * vectors from whole cache lines, in increasing address order.
 */
#define RWE_LANES_GROUP 32
#define RWE_LANES_SB 16

/* Superblock j of a lanes row of nb blocks: vector k at q + 4 * n * k, the
 * blocks' fp16 d at d (and q4_1's m at m), n blocks (16, or fewer in a row's
 * last).  qs = quant bytes per block (32 for q8_0, 16 for q4), hb = header
 * bytes per block (2, or 4 for q4_1). */
typedef struct {
    const uint8_t *q, *d, *m;
    int n;
} rwe_lanes_sb;

static inline rwe_lanes_sb rwe_lanes_at(int64_t qs, int64_t hb, const uint8_t *row, int64_t nb,
                                        int64_t j) {
    const int64_t g = j / 2, s = j % 2, left = nb - RWE_LANES_GROUP * g;
    const int64_t m = left < RWE_LANES_GROUP ? left : RWE_LANES_GROUP;
    const uint8_t *grp = row + (size_t)(g * RWE_LANES_GROUP * (hb + qs));
    rwe_lanes_sb r;
    r.d = grp + 2 * RWE_LANES_SB * s;
    r.m = grp + 2 * m + 2 * RWE_LANES_SB * s;
    r.q = grp + m * hb + s * RWE_LANES_SB * qs;
    r.n = nb - RWE_LANES_SB * j < RWE_LANES_SB ? (int)(nb - RWE_LANES_SB * j) : RWE_LANES_SB;
    return r;
}

int rwe_lanes_supported(rwe_type t);
/* Rows [r0, r1) of a (rows, cols) matrix, each row at r * rwe_row_bytes. */
void rwe_lanes_pack(rwe_type t, int64_t cols, const void *src, void *dst, int64_t r0, int64_t r1);
void rwe_lanes_unpack(rwe_type t, int64_t cols, const void *src, void *dst, int64_t r0, int64_t r1);

#endif
