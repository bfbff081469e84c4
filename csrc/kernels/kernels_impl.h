/*
 * Private to csrc/kernels/: the per-ISA kernel tables that rwe_kernels_get
 * hands out, and the reference pieces that SIMD files fall back to (a table
 * entry an ISA has no better version of points at the next-lower one).
 */
#ifndef RWE_KERNELS_IMPL_H
#define RWE_KERNELS_IMPL_H

#include "kernels.h"

/* Loop-unrolling hint for gcc only.  clang takes "#pragma GCC unroll 8" as
 * an exact count, and on the GEMM tiles' loops of 4 rows or tokens it then
 * unrolled nothing: their accumulator arrays stayed on the stack and the
 * AVX-512 and AVX2 prefill GEMMs ran at 0.30-0.46x of the gcc build's speed
 * (1024 x 1024, T = 256, 1 thread).  Without the hint clang unrolls them
 * itself (0.97-1.08x of gcc). */
#define RWE_PRAGMA(x) _Pragma(#x)
#if defined(__clang__)
#define RWE_UNROLL(n)
#else
#define RWE_UNROLL(n) RWE_PRAGMA(GCC unroll n)
#endif
/* The hint for both compilers: the AVX-512 decode loops, where clang's own
 * unrolling ran q8_0 decode at 0.87-0.92x of its hinted code in three runs
 * of four (1.02x in the other; 16384 x 2048, 1 thread), and the NEON
 * kernels (clang unrolls them more with the hint: 528 sdot in arm_neon.o
 * against 213; no ARM core here to time either). */
#define RWE_UNROLL_ALL(n) RWE_PRAGMA(GCC unroll n)

/* Software prefetch distance (bytes) of the quantized matmuls' linear
 * prefetch stream over a row tile.  Measured on a 16-core Xeon with
 * benchmarks/bench_kernels.c, q4_0 7168x2048 decode, 1 thread: 5.4-5.9 GB/s
 * without, 9.7-11.8 GB/s with 4096 (plain read 11.6-13.0 GB/s). */
#ifndef RWE_PF_AHEAD
#define RWE_PF_AHEAD 4096
#endif

/* Float matmuls over several tokens take a call's rows in blocks of about
 * this many weight bytes, every token tile over a block before the next, so
 * all but the first tile read the block from L2 instead of DRAM (AVX-512,
 * 24x2048 f16, 128-token prefill: 1.5-1.6x). */
#define RWE_FLOAT_BLOCK_BYTES (256 << 10)

/* The end of the row block that starts at row r (of rows up to r1). */
static inline int64_t rwe_float_block_end(int64_t r, int64_t r1, size_t row_bytes) {
    int64_t n = (int64_t)(RWE_FLOAT_BLOCK_BYTES / row_bytes);
    n = n < 1 ? 1 : n;
    return r + n < r1 ? r + n : r1;
}

/* The body of a SIMD file's float matmul over rows [r0, r1) of T tokens:
 * row blocks, then token tiles of RWE_TILE_T, each row of the block against
 * the tile through the file's own fdot_tile(fmt, TT, n, w, x, out) (TT a
 * constant in every call, so each tile size compiles on its own).  Expects
 * cols, W, X, x_stride, Y, y_stride, T, r0, r1 and row_bytes in scope. */
#define RWE_FLOAT_TILES(fmt)                                                                    \
    for (int64_t rb = r0, re; rb < r1; rb = re) {                                             \
        re = rwe_float_block_end(rb, r1, row_bytes);                                          \
        for (int64_t t0 = 0; t0 < T; t0 += RWE_TILE_T) {                                      \
            int tt = T - t0 < RWE_TILE_T ? (int)(T - t0) : RWE_TILE_T;                         \
            const float *x[RWE_TILE_T];                                                        \
            for (int t = 0; t < tt; t++)                                                       \
                x[t] = (const float *)((const char *)X + (size_t)(t0 + t) * x_stride);         \
            for (int64_t r = rb; r < re; r++) {                                                \
                float out[RWE_TILE_T];                                                         \
                const void *wrow = (const char *)W + (size_t)r * row_bytes;                    \
                switch (tt) {                                                                  \
                case 1: fdot_tile(fmt, 1, cols, wrow, x, out); break;                          \
                case 2: fdot_tile(fmt, 2, cols, wrow, x, out); break;                          \
                case 3: fdot_tile(fmt, 3, cols, wrow, x, out); break;                          \
                default: fdot_tile(fmt, 4, cols, wrow, x, out); break;                         \
                }                                                                              \
                for (int t = 0; t < tt; t++)                                                   \
                    Y[(t0 + t) * y_stride + r] = out[t];                                       \
            }                                                                                  \
        }                                                                                      \
    }

extern const rwe_kernels rwe_kernels_ref;

/* A SIMD file's quantized table entries: one function per format around an
 * inline body taking the file's FMT_* constant first. */
#define RWE_QMATMUL_ENTRY(name, body, F)                                                        \
    static void name(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,    \
                     int64_t y_stride, int64_t T, int64_t r0, int64_t r1) {                    \
        body(FMT_##F, cols, W, X, x_stride, Y, y_stride, T, r0, r1);                           \
    }
#if defined(__x86_64__)
extern const rwe_kernels rwe_kernels_avx2;
extern const rwe_kernels rwe_kernels_avx512;
#endif
#if defined(__aarch64__)
extern const rwe_kernels rwe_kernels_neon;
extern const rwe_kernels rwe_kernels_dotprod;
#endif

/* One thread's growing, 64-byte aligned scratch for the prefill GEMMs
 * repacked operands (kernels.c): kept between calls, freed when the thread
 * exits; NULL when memory is short (the caller then takes its plain path). */
void *rwe_gemm_workspace(size_t bytes);

/* Dot products of nb blocks of one weight row with one activation row
 * (scalar; SIMD files use them for nothing but odd tails). */
float rwe_vec_dot_q8_0_q8_0_ref(int64_t nb, const void *w, const void *x);
float rwe_vec_dot_q4_0_q8_0_ref(int64_t nb, const void *w, const void *x);
float rwe_vec_dot_q4_1_q8_1_ref(int64_t nb, const void *w, const void *x);

void rwe_matmul_f32_ref(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                        int64_t y_stride, int64_t T, int64_t r0, int64_t r1);
void rwe_matmul_f16_ref(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                        int64_t y_stride, int64_t T, int64_t r0, int64_t r1);
void rwe_matmul_bf16_ref(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                         int64_t y_stride, int64_t T, int64_t r0, int64_t r1);
void rwe_matmul_q8_0_ref(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                         int64_t y_stride, int64_t T, int64_t r0, int64_t r1);
void rwe_matmul_q4_0_ref(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                         int64_t y_stride, int64_t T, int64_t r0, int64_t r1);
void rwe_matmul_q4_1_ref(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                         int64_t y_stride, int64_t T, int64_t r0, int64_t r1);

void rwe_wkv5_ref(int64_t T, int64_t H, int64_t N, int64_t ld, const float *r, const float *k,
                  const float *v, const float *w, const float *u, float *S, float *out);
void rwe_layer_norm_ref(const float *x, const float *weight, const float *bias, float *y,
                        int64_t n, float eps);
void rwe_group_norm_ref(float *x, const float *weight, const float *bias, int64_t H, int64_t N,
                        float eps);
void rwe_token_mix_ref(const float *x, const float *prev, const float *mix, float *out, int64_t n);
void rwe_sigmoid_gate_ref(float *x, const float *r, const float *y, int64_t n);
void rwe_silu_gate_ref(float *y, const float *g, int64_t n);
void rwe_relu_square_ref(float *x, int64_t n);

#if defined(__x86_64__)
void rwe_wkv5_avx2(int64_t T, int64_t H, int64_t N, int64_t ld, const float *r, const float *k,
                   const float *v, const float *w, const float *u, float *S, float *out);
void rwe_layer_norm_avx2(const float *x, const float *weight, const float *bias, float *y,
                         int64_t n, float eps);
void rwe_group_norm_avx2(float *x, const float *weight, const float *bias, int64_t H, int64_t N,
                         float eps);
void rwe_quantize_row_q8_0_avx2(const float *x, void *y, int64_t n);
void rwe_quantize_row_q8_1_avx2(const float *x, void *y, int64_t n);
void rwe_token_mix_avx2(const float *x, const float *prev, const float *mix, float *out, int64_t n);
void rwe_sigmoid_gate_avx2(float *x, const float *r, const float *y, int64_t n);
void rwe_silu_gate_avx2(float *y, const float *g, int64_t n);
void rwe_relu_square_avx2(float *x, int64_t n);

/* The table entries both x86 sets take from x86_avx2.c: everything but the
 * activation quantizers, the matmuls and wkv5 (the AVX-512 set has its own). */
#define RWE_AVX2_VECTOR_OPS                                                                   \
    .layer_norm = rwe_layer_norm_avx2,                                                       \
    .group_norm = rwe_group_norm_avx2, .token_mix = rwe_token_mix_avx2,                      \
    .sigmoid_gate = rwe_sigmoid_gate_avx2, .silu_gate = rwe_silu_gate_avx2,                  \
    .relu_square = rwe_relu_square_avx2
#endif

#endif
