/*
 * Private to csrc/kernels/: the per-ISA kernel tables that rwe_kernels_get
 * hands out, and the reference pieces that SIMD files fall back to (a table
 * entry an ISA has no better version of points at the next-lower one).
 */
#ifndef RWE_KERNELS_IMPL_H
#define RWE_KERNELS_IMPL_H

#include "kernels.h"

/* Loop-unrolling hint for gcc only: clang takes "#pragma GCC unroll n" as
 * an exact count and then unrolled nothing in the GEMM tiles' loops of 4
 * rows or tokens (their accumulators stayed on the stack); left alone it
 * unrolls them itself. */
#define RWE_PRAGMA(x) _Pragma(#x)
#if defined(__clang__)
#define RWE_UNROLL(n)
#else
#define RWE_UNROLL(n) RWE_PRAGMA(GCC unroll n)
#endif
/* The hint for both compilers: the AVX-512 decode loops and the NEON
 * kernels, where clang's own unrolling was slower or smaller. */
#define RWE_UNROLL_ALL(n) RWE_PRAGMA(GCC unroll n)

/* ---- Tuning constants shared by the SIMD sets (defined here only; the
 * measurements behind each are in docs/KERNEL_NOTES.md). */

/* Tokens per register tile of the float and GGML-block matmuls: a weight
 * block is loaded and unpacked once per tile. */
#define RWE_TILE_T 4

/* Weight rows the prefill GEMMs repack at a time; every token of a call
 * then reads them from L1/L2. */
#define RWE_GEMM_RB 16

/* Bytes of weights a decode stream must have before a call's row range is
 * split into several far-apart streams (2, or 4 for the AVX-512 float and
 * GGML decodes) that share the activation loads: shorter streams lose. */
#define RWE_MIN_STREAM (64 << 10)

/* Layout superblocks (RWE_LANES_SB blocks) per lanes decode chunk: the
 * packed activations of 16384 columns stay on the stack, a chunk is whole
 * lanes groups, and the rows of every real model are read in one pass. */
#define RWE_LANES_CHUNK 32

/* Software prefetch distance (bytes) of the quantized matmuls' linear
 * prefetch stream over a row tile (hardware prefetchers follow a tile's
 * short interleaved row streams poorly). */
#ifndef RWE_PF_AHEAD
#define RWE_PF_AHEAD 4096
#endif

/* Float matmuls over several tokens take a call's rows in blocks of about
 * this many weight bytes, every token tile over a block before the next, so
 * all but the first tile read the block from L2 instead of DRAM. */
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

/* The formats as the SIMD files' inline bodies take them (a constant first
 * argument, so each format compiles on its own). */
enum { FMT_Q8_0, FMT_Q4_0, FMT_Q4_1 };
enum { FMT_F32, FMT_F16, FMT_BF16 };

/* Bytes of one weight block (in GGML blocks or the lanes layout alike). */
static inline size_t block_bytes(int fmt) {
    return fmt == FMT_Q8_0 ? sizeof(rwe_block_q8_0)
                           : (fmt == FMT_Q4_0 ? sizeof(rwe_block_q4_0) : sizeof(rwe_block_q4_1));
}

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

/* The one workspace of every GEMM's repacked operands (kernels.c): each
 * thread's own, growing, 64-byte aligned, kept between calls and freed when
 * the thread exits, so any thread may run any call; NULL when memory is
 * short (the caller then takes a path that needs none). */
void *rwe_gemm_workspace(size_t bytes);
/* Tests only: requests above max bytes get NULL from now on (SIZE_MAX: none). */
void rwe_gemm_workspace_limit(size_t max);

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
void rwe_matmul_q8_0_avx2(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                          int64_t y_stride, int64_t T, int64_t r0, int64_t r1);
void rwe_matmul_q4_0_avx2(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                          int64_t y_stride, int64_t T, int64_t r0, int64_t r1);
void rwe_matmul_q4_1_avx2(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                          int64_t y_stride, int64_t T, int64_t r0, int64_t r1);
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
