/*
 * The kernel table: every numeric op the engine uses, one function pointer
 * each, the matrix products indexed by weight type (mm[type]) and the
 * activation quantizers by activation type.  rwe_kernels_get(isa) returns
 * the table of one kernel set; the engine never branches on ISA or on
 * weight format beyond picking an entry here.
 *
 * Naming: rwe_<op>_<weight format>_<isa>, e.g. rwe_matmul_q4_0_avx512.
 * Testing (csrc/tests/test_kernels.c): every entry but the lanes and gemm
 * products has a scalar twin in ref.c (the same entry of the ref set) and
 * is tested against it.  The lanes products have no twin, as the ref set
 * reads GGML blocks only: each runs on a lanes-packed copy of the weights
 * and is held to the ref product of the unpacked ones.  The gemm products
 * are held to their set's lanes product on the same floats, bit for bit
 * from RWE_GEMM_MIN_T tokens (both are the same GEMM then).
 *
 * Matrix products (matvec is the T == 1 case):
 *   W: rows x cols, row-major, each row stored in the weight format
 *      (cols is a multiple of RWE_QK for block formats).
 *   X: T activation rows of `cols` elements in the format's activation type
 *      (rwe_act_type): f32 rows for float weights, q8_0 blocks for q8_0/q4_0,
 *      q8_1 blocks for q4_1; row t starts at (const char *)X + t * x_stride.
 *   Y: Y[t * y_stride + r] = dot(W row r, X row t), for r in [r0, r1).
 * The thread pool splits [0, rows) into row ranges, so a kernel only ever
 * writes rows r0..r1-1.
 */
#ifndef RWE_KERNELS_H
#define RWE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "../rwkv_edge.h"
#include "../quant/blocks.h"

typedef void (*rwe_matmul_fn)(int64_t cols, const void *W, const void *X, size_t x_stride,
                              float *Y, int64_t y_stride, int64_t T, int64_t r0, int64_t r1);
/* Convert one f32 activation row of n elements into the activation type. */
typedef void (*rwe_quantize_row_fn)(const float *x, void *y, int64_t n);
/* A matmul whose X rows are already packed for it (gemm_act, below). */
typedef void (*rwe_gemm_fn)(int64_t cols, const void *W, const void *X, size_t x_stride,
                            float *Y, int64_t y_stride, int64_t T, int64_t r0, int64_t r1);

/* Calls of this many tokens or more take the quantized kernels' GEMM path
 * (weights and activations repacked so one int32 lane holds one block);
 * shorter ones run as register tiles or one matvec per token. */
#define RWE_GEMM_MIN_T 8

/* One past the largest type id (ggml's: bf16 is 30): the tables below are
 * indexed by rwe_type, and a type without kernels has NULL entries. */
#define RWE_N_TYPES 31

/* The products of one weight type. */
typedef struct {
    rwe_matmul_fn matmul; /* W rows as the file stores them (GGML blocks) */
    /* W in the lanes layout (quant/quant.h), which the engine repacks
     * quantized matrices into at load where the set has this; NULL in sets
     * that read GGML blocks only, and for float types. */
    rwe_matmul_fn lanes;
    /* Prefill: the lanes product with the activations quantized and packed
     * once, row by row, for every thread (gemm_act), where `lanes` packs
     * them itself in each call (so in each thread's share of the rows).
     * Only the AVX-512 set has these (its `lanes` packs activations with
     * gathers; the AVX2 set packs with shuffles and gained nothing from
     * them, docs/KERNEL_NOTES.md).  Used from RWE_GEMM_MIN_T tokens; their
     * repack workspace is rwe_gemm_workspace's, as every GEMM's. */
    rwe_gemm_fn gemm;
} rwe_matmul_set;

typedef struct rwe_kernels {
    rwe_isa isa;
    const char *name;                 /* "ref", "avx2", "avx512", "neon", "dotprod" */

    /* By activation type (q8_0, q8_1): an f32 row into that type. */
    rwe_quantize_row_fn quantize_row[RWE_N_TYPES];
    /* By weight type (f32, f16, bf16, q8_0, q4_0, q4_1). */
    rwe_matmul_set mm[RWE_N_TYPES];

    /* For the gemm entries: gemm_act turns a row of n floats into act
     * (q8_0, or q8_1 for q4_1) blocks packed in gemm_act_bytes(n) bytes, a
     * multiple of 64; X rows are 64-byte aligned (x_stride a multiple of
     * 64).  NULL where the set has no gemm entries. */
    size_t (*gemm_act_bytes)(int64_t n);
    void (*gemm_act)(rwe_type act, const float *x, void *y, int64_t n);

    /* WKV5 over T tokens of one layer (T == 1 is the RNN step).
     * r, k, v, out: T rows ld >= H*N floats apart (head h of token t at
     * t*ld + h*N; ld > H*N runs a slice of a layer's heads); w, u: H x N
     * (decay in (0,1), bonus);
     * S: H x N x N [head][key i][value j], updated in place:
     *   out[t,h,j] = sum_i r[t,h,i] * (u[h,i] * k[t,h,i] * v[t,h,j] + S[h,i,j])
     *   S[h,i,j]   = k[t,h,i] * v[t,h,j] + w[h,i] * S[h,i,j]                   */
    void (*wkv5)(int64_t T, int64_t H, int64_t N, int64_t ld, const float *r, const float *k,
                 const float *v, const float *w, const float *u, float *S, float *out);

    /* y = (x - mean) / sqrt(var + eps) * weight + bias over n elements (y may be x). */
    void (*layer_norm)(const float *x, const float *weight, const float *bias, float *y,
                       int64_t n, float eps);
    /* In place over H groups of N elements, then the per-channel affine. */
    void (*group_norm)(float *x, const float *weight, const float *bias, int64_t H,
                       int64_t N, float eps);

    /* The elementwise steps between the matrices, over n elements:
     *   token_mix:    out = x * mix + prev * (1 - mix)   (token shift)
     *   sigmoid_gate: x += sigmoid(r) * y                (FFN receptance gate)
     *   silu_gate:    y *= g * sigmoid(g)                (attention gate)
     *   relu_square:  x = max(x, 0)^2, in place          (FFN key) */
    void (*token_mix)(const float *x, const float *prev, const float *mix, float *out,
                      int64_t n);
    void (*sigmoid_gate)(float *x, const float *r, const float *y, int64_t n);
    void (*silu_gate)(float *y, const float *g, int64_t n);
    void (*relu_square)(float *x, int64_t n);
} rwe_kernels;

/* NULL when the kernel set is not compiled in; does not check the CPU. */
const rwe_kernels *rwe_kernels_get(rwe_isa isa);

/* The products of weight type t in set k (all NULL for a type it lacks,
 * any value of t allowed). */
const rwe_matmul_set *rwe_kernels_mm(const rwe_kernels *k, rwe_type t);

/* q8_1 is an activation-only type (the partner of q4_1 weights), so it is not
 * in the ABI's rwe_type; its value is ggml's type id. */
#define RWE_TYPE_Q8_1 ((rwe_type)9)

/* Activation type of a weight type (RWE_TYPE_F32 for float weights,
 * RWE_TYPE_Q8_1 for q4_1, RWE_TYPE_Q8_0 for q8_0/q4_0). */
rwe_type rwe_act_type(rwe_type weight_type);
/* Bytes of one row of n elements of a type; 0 if n is not a whole number of blocks. */
size_t rwe_row_bytes(rwe_type type, int64_t n);

/* fp16 / bf16 <-> f32 (round to nearest even), scalar. */
float rwe_f16_to_f32(uint16_t h);
uint16_t rwe_f32_to_f16(float f);
float rwe_bf16_to_f32(uint16_t h);
uint16_t rwe_f32_to_bf16(float f);

#endif
