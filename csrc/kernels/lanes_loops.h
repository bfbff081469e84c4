/*
 * The loops of the quantized lanes-layout products, written once for every
 * SIMD set that has them (x86_avx2.c, x86_avx512.c): the GEMM threshold,
 * the GEMM driver out of line per format (qgemm, gemm_loops.h) and the
 * decode driver (column chunks, the split of a row range into far-apart
 * streams).  A set's file includes this after defining its pieces, and gets
 * the mm[type].lanes entries RWE_LANES_ENTRIES(isa) names.
 *
 * The pieces (fmt is FMT_Q8_0 / FMT_Q4_0 / FMT_Q4_1 below): gemm_loops.h's,
 * with gemm_rows reading lanes-layout weights, and
 *   lanes_x          decode activations of one layout superblock (RWE_LANES_SB
 *                    blocks)
 *   lanes_pack_x(fmt, x, nb, j, lanes_x *o)   layout superblock j of a row
 *   lanes_decode(fmt, K, W, row_bytes, nb, xs, j0, nj, Y, r0, r1)
 *                    rows [r0, r1) over layout superblocks [j0, j0 + nj)
 *                    (activations xs[j - j0]), K rows at a time, one from
 *                    each K-th of the range; adds to Y after the first chunk;
 *                    returns the first row not done, r0 + K * ((r1 - r0) / K)
 */
#ifndef RWE_LANES_LOOPS_H
#define RWE_LANES_LOOPS_H

#include "gemm_loops.h"

/* Decode of one token over rows [r0, r1): the row's layout superblocks in
 * chunks of RWE_LANES_CHUNK (their packed activations stay on the stack),
 * and per chunk two long streams, one from each half of the range, where
 * each half has RWE_MIN_STREAM bytes, then one row at a time. */
static inline __attribute__((always_inline)) void lanes_matvec(int fmt, int64_t cols,
                                                               const void *W, const void *X,
                                                               float *Y, int64_t r0, int64_t r1) {
    const int64_t nb = cols / RWE_QK, nsb = sb_count_of(nb, RWE_LANES_SB);
    const size_t row_bytes = (size_t)nb * block_bytes(fmt);
    lanes_x xs[RWE_LANES_CHUNK];
    const int two = (size_t)(r1 - r0) * row_bytes >= 2 * (size_t)RWE_MIN_STREAM;
    for (int64_t j0 = 0; j0 < nsb; j0 += RWE_LANES_CHUNK) {
        const int64_t nj = nsb - j0 < RWE_LANES_CHUNK ? nsb - j0 : RWE_LANES_CHUNK;
        for (int64_t j = 0; j < nj; j++)
            lanes_pack_x(fmt, X, nb, j0 + j, xs + j);
        int64_t r = r0;
        if (two)
            r = lanes_decode(fmt, 2, W, row_bytes, nb, xs, j0, nj, Y, r0, r1);
        lanes_decode(fmt, 1, W, row_bytes, nb, xs, j0, nj, Y, r, r1);
    }
}

/* qgemm kept out of line, one instance per format: inlined into its
 * callers, the tiles' registers spilled (docs/KERNEL_NOTES.md). */
static __attribute__((noinline)) int lanes_gemm(int fmt, int64_t cols, const void *W, const void *X,
                                                size_t x_stride, float *Y, int64_t y_stride,
                                                int64_t T, int64_t r0, int64_t r1) {
    if (fmt == FMT_Q8_0)
        return qgemm(FMT_Q8_0, cols, W, X, x_stride, Y, y_stride, T, r0, r1);
    if (fmt == FMT_Q4_0)
        return qgemm(FMT_Q4_0, cols, W, X, x_stride, Y, y_stride, T, r0, r1);
    return qgemm(FMT_Q4_1, cols, W, X, x_stride, Y, y_stride, T, r0, r1);
}

/* Fewer than RWE_GEMM_MIN_T tokens are one matvec each (a call's matrix
 * stays in L3 for the next token); more go through the GEMM, token by token
 * also when its workspace is not to be had. */
static inline __attribute__((always_inline)) void lanes_matmul(int fmt, int64_t cols, const void *W,
                                                               const void *X, size_t x_stride,
                                                               float *Y, int64_t y_stride,
                                                               int64_t T, int64_t r0, int64_t r1) {
    if (T >= RWE_GEMM_MIN_T && lanes_gemm(fmt, cols, W, X, x_stride, Y, y_stride, T, r0, r1))
        return;
    for (int64_t t = 0; t < T; t++)
        lanes_matvec(fmt, cols, W, (const uint8_t *)X + (size_t)t * x_stride, Y + t * y_stride, r0, r1);
}

#define RWE_LANES_ENTRIES(isa)                                                                  \
    RWE_QMATMUL_ENTRY(matmul_lanes_q8_0_##isa, lanes_matmul, Q8_0)                              \
    RWE_QMATMUL_ENTRY(matmul_lanes_q4_0_##isa, lanes_matmul, Q4_0)                              \
    RWE_QMATMUL_ENTRY(matmul_lanes_q4_1_##isa, lanes_matmul, Q4_1)

#endif
