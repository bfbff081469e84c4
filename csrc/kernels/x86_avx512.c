/*
 * AVX-512 F/BW/VL + VNNI kernels (Ice Lake, Sapphire Rapids, Zen 4 on).
 *
 * Quantized weights are read in the lanes layout only (quant/quant.h; the
 * engine repacks every quantized matrix into it at load): one 32-bit lane
 * of a vector holds one block, so a zmm is 16 blocks (a "superblock" here
 * and in the GEMM).  The set's GGML-block products, used only under
 * RWKV_EDGE_REPACK=0, are the AVX2 set's (x86_avx2.c).
 * vpdpbusd multiplies unsigned by signed bytes, so one side is made
 * unsigned and the offset comes back out through a per-block integer bias:
 *   decode (lanes_*): the weights are unsigned (q8_0 stored + 128, q4
 *     nibbles), the bias -128 sum x (q8_0) or -8 sum x (q4_0) per block;
 *   GEMM (gemm_*): the activations are unsigned (x + 128), the bias
 *     -128 sum w per block;
 *   q4_1 adds m * s in float (s = the q8_1 block sum).
 * Scalar equivalent per block: sumi = bias + sum_j u[j] x[j];
 *   y += dw*dx*sumi (+ m*s), summed over blocks (rwe_vec_dot_*_ref).
 */
#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#include "../quant/quant.h"
#include "kernels_impl.h"

/* Every function of this file is built for these features (the file is
 * compiled with baseline flags; the CPU is probed before any of it runs).
 * clang ignores GCC's pragma and has its own form.  tune=generic keeps the
 * code what was measured when a user builds with CFLAGS=-march=native
 * (gcc's znver4 tuning made the GEMM tile's register operands memory
 * operands; docs/KERNEL_NOTES.md). */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c,tune=generic")
#endif


/* ------------------------------------------------- activation quantizers */

/* A block of 32 is 2 x 16 lanes.  roundf is trunc(v) + sign(v) where
 * |v - trunc(v)| >= 0.5, bit-exact.  Non-finite input as the ref
 * (quant_ref.c): the scale skips it, products are clamped to +-127 and a
 * NaN product gives 0. */

/* 16 lanes whose maximum is the block's largest finite |x| (0 for none). */
static inline __m512 block_absmax(const float *x) {
    const __m512 inf = _mm512_set1_ps(__builtin_inff());
    __m512 a0 = _mm512_abs_ps(_mm512_loadu_ps(x)), a1 = _mm512_abs_ps(_mm512_loadu_ps(x + 16));
    a0 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a0, inf, _CMP_LT_OQ), a0);
    a1 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a1, inf, _CMP_LT_OQ), a1);
    return _mm512_max_ps(a0, a1);
}

/* The block's 32 quants at scale inverse id into qs; returns their sum per lane. */
static inline __m512i block_quants(const float *x, __m512 id, int8_t *qs) {
    __m512i s = _mm512_setzero_si512();
    for (int h = 0; h < 2; h++) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + 16 * h), id);
        v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v); /* NaN -> 0 */
        v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
        __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(v, t)),
                                          _mm512_set1_ps(0.5f), _CMP_GE_OQ);
        __m512i vsign = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(INT32_MIN));
        __m512 one = _mm512_castsi512_ps(_mm512_or_si512(vsign, _mm512_set1_epi32(0x3f800000)));
        __m512i q = _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, one));
        s = _mm512_add_epi32(s, q);
        _mm_storeu_si128((__m128i *)(qs + 16 * h), _mm512_cvtsepi32_epi8(q));
    }
    return s;
}

/* One block: writes qs, returns d, sets *sum = sum(qs). */
static inline float quantize_block16(const float *x, int8_t *qs, int *sum) {
    float d = _mm512_reduce_max_ps(block_absmax(x)) / 127.0f;
    *sum = _mm512_reduce_add_epi32(block_quants(x, _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f), qs));
    return d;
}

static void quantize_row_q8_0_avx512(const float *x, void *vy, int64_t n) {
    rwe_block_q8_0 *y = vy;
    int sum;
    for (int64_t b = 0; b < n / RWE_QK; b++)
        y[b].d = rwe_f32_to_f16(quantize_block16(x + b * RWE_QK, y[b].qs, &sum));
}

static void quantize_row_q8_1_avx512(const float *x, void *vy, int64_t n) {
    rwe_block_q8_1 *y = vy;
    int sum;
    for (int64_t b = 0; b < n / RWE_QK; b++) {
        float d = quantize_block16(x + b * RWE_QK, y[b].qs, &sum);
        y[b].d = rwe_f32_to_f16(d);
        y[b].s = rwe_f32_to_f16((float)sum * d);
    }
}

/* ------------------------------------------------------ prefill GEMM */

/*
 * With many tokens (T >= RWE_GEMM_MIN_T) both operands are repacked into
 * superblocks of 16 blocks (512 columns), lane l of vector k holding
 * elements 4k..4k+3 of block l, so eight vpdpbusd finish 16 blocks and the
 * scales cost 3 float ops per 8 vpdpbusd.  The activations are packed once
 * per call (masked gathers), or once per chunk for all threads by gemm_act
 * below; the weights once per block of RWE_GEMM_RB rows from the lanes
 * layout (a sign flip or a nibble split, no transpose), reused by every
 * token of the call.  The activations become the unsigned operand (x + 128,
 * i.e. x XOR 0x80) and the weights stay signed; the +128 comes back out
 * through a per-block weight bias -128 * sum(w) that seeds the integer sums.
 * In lanes past the row's last block the weights' quants, bias and scales
 * are zero (the activations' quants there are 0x80 after the flip, their
 * scales 0), so those lanes add nothing; the folded tail below relies on it.
 */
#define GEMM_SB 16       /* blocks per superblock: one per int32 lane */
#define GEMM_R 4         /* rows per register tile (gemm_store_4xT assumes 4) */
#define GEMM_T 4         /* tokens per register tile */

/* Superblocks in a row of cols columns (the last may be partial). */
static inline int64_t sb_count(int64_t cols) { return (cols / RWE_QK + GEMM_SB - 1) / GEMM_SB; }

typedef struct {
    uint8_t q[8][64]; /* x + 128 */
    float d[16];
    float s[16];      /* q8_1 only: d * sum(qs) */
} __attribute__((aligned(64))) gx;

typedef struct {
    int8_t q[8][64];  /* q8_0: qs; q4_0: nibble - 8; q4_1: nibble */
    int32_t bias[16]; /* -128 * sum(q) */
    float d[16];
    float m[16];      /* q4_1 only */
} __attribute__((aligned(64))) gw;

/* Lane L holds block L: the order of the lanes layout (quant.h). */
static inline __m512i lane_blocks(void) {
    return _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
}

/* For lanes holding superblock j's blocks in the order `blocks`: their byte
 * offsets, and the lanes whose block exists in a row of nb blocks. */
static inline __m512i sb_offsets(__m512i blocks, int block_bytes) {
    return _mm512_mullo_epi32(blocks, _mm512_set1_epi32(block_bytes));
}

static inline __mmask16 sb_mask(__m512i blocks, int64_t nb, int64_t j) {
    int64_t n = nb - j * GEMM_SB;
    return n >= GEMM_SB ? (__mmask16)0xffff
                        : _mm512_cmplt_epi32_mask(blocks, _mm512_set1_epi32((int)n));
}

/* Gathers the 32-bit words at base + 16-lane byte offsets (masked lanes 0). */
static inline __m512i gather32(__mmask16 m, __m512i off, const uint8_t *base) {
    return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, off, base, 1);
}

static inline __m512 half_to_f32(__m512i w) { /* low 16 bits of each lane */
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(w));
}

/* Superblock j of one activation row (q8_0 blocks, or q8_1 for q4_1), its
 * lanes in block order (lane_blocks), as the lanes layout's weights. */
static void gemm_pack_x(int fmt, const uint8_t *x, int64_t nb, int64_t j, gx *o) {
    const int q81 = fmt == FMT_Q4_1;
    const int bs = q81 ? (int)sizeof(rwe_block_q8_1) : (int)sizeof(rwe_block_q8_0);
    const __m512i blocks = lane_blocks();
    const __m512i off = sb_offsets(blocks, bs);
    const __mmask16 m = sb_mask(blocks, nb, j);
    const uint8_t *base = x + (size_t)(j * GEMM_SB) * (size_t)bs;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int k = 0; k < 8; k++)
        _mm512_store_si512(o->q[k], _mm512_xor_si512(gather32(m, off, base + (q81 ? 4 : 2) + 4 * k),
                                                     flip));
    __m512i ds = gather32(m, off, base);
    _mm512_store_ps(o->d, half_to_f32(ds));
    _mm512_store_ps(o->s, q81 ? half_to_f32(_mm512_srli_epi32(ds, 16)) : _mm512_setzero_ps());
}

/* Stores a superblock's signed quants and their bias -128 * sum(q). */
static inline void gemm_store_w(const __m512i q[8], gw *o) {
    const __m512i u128 = _mm512_set1_epi8((char)0x80);
    __m512i sum = _mm512_setzero_si512();
    for (int k = 0; k < 8; k++) {
        _mm512_store_si512(o->q[k], q[k]);
        sum = _mm512_dpbusd_epi32(sum, u128, q[k]); /* 128 * sum(q) per lane */
    }
    _mm512_store_si512(o->bias, _mm512_sub_epi32(_mm512_setzero_si512(), sum));
}

/* ------------------------------------------------------- lanes layout */

/* Superblock j of a lanes row (quant.h). */
typedef rwe_lanes_sb lanes_sb;

static inline lanes_sb lanes_at(int fmt, const uint8_t *row, int64_t nb, int64_t j) {
    return rwe_lanes_at(fmt == FMT_Q8_0 ? 32 : 16, fmt == FMT_Q4_1 ? 4 : 2, row, nb, j);
}

static inline __mmask16 lanes_mask(int n) { return (__mmask16)((1u << n) - 1); }

/* One vector of a superblock's n lanes.  Plain loads wherever n allows
 * (16, 8 and 4 lanes: whole zmm, ymm, xmm): masked loads that miss the
 * caches run several times slower on Zen 5 (docs/KERNEL_NOTES.md), and 768
 * columns are a superblock of 16 blocks and one of 8.  Other counts (a
 * row's last superblock only) stay masked. */
static inline __m512i lanes_load(lanes_sb b, const uint8_t *p) {
    switch (b.n) {
    case 16: return _mm512_loadu_si512(p);
    case 8: return _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)p));
    case 4: return _mm512_zextsi128_si512(_mm_loadu_si128((const __m128i *)p));
    default: return _mm512_maskz_loadu_epi32(lanes_mask(b.n), p);
    }
}

/* Quant vector k of a superblock as unsigned bytes (q8_0 is stored + 128);
 * for q4, k < 4 gives the low nibbles and k >= 4 the high ones of vector k % 4.
 * Lanes past n are 0. */
static inline __m512i lanes_vec(int fmt, lanes_sb b, int k) {
    if (fmt == FMT_Q8_0)
        return lanes_load(b, b.q + 4 * b.n * k);
    __m512i v = lanes_load(b, b.q + 4 * b.n * (k % 4));
    const __m512i nib = _mm512_set1_epi8(0x0f);
    return k < 4 ? _mm512_and_si512(v, nib) : _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
}

/* The superblock's n fp16 scales (or mins) as f32; plain loads as lanes_load. */
static inline __m512 lanes_half(lanes_sb b, const uint8_t *p) {
    switch (b.n) {
    case 16: return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
    case 8: return _mm512_cvtph_ps(_mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)p)));
    case 4: return _mm512_cvtph_ps(_mm256_zextsi128_si256(_mm_loadl_epi64((const __m128i *)p)));
    default: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lanes_mask(b.n), p));
    }
}

/* Superblock j of one weight row in the lanes layout, into the GEMM's gw
 * (signed quants): no transpose, the lanes are already one block each. */
static void gemm_pack_w_lanes(int fmt, const uint8_t *row, int64_t nb, int64_t j, gw *o) {
    const lanes_sb b = lanes_at(fmt, row, nb, j);
    const __m512i zp = _mm512_maskz_set1_epi8(_cvtu64_mask64(b.n == 16 ? ~0ull : (1ull << (4 * b.n)) - 1),
                                              fmt == FMT_Q8_0 ? (char)0x80 : (fmt == FMT_Q4_0 ? 8 : 0));
    __m512i q[8];
    for (int k = 0; k < 8; k++)
        q[k] = _mm512_sub_epi8(lanes_vec(fmt, b, k), zp);
    gemm_store_w(q, o);
    _mm512_store_ps(o->d, lanes_half(b, b.d));
    _mm512_store_ps(o->m, fmt == FMT_Q4_1 ? lanes_half(b, b.m) : _mm512_setzero_ps());
}

/* Decode activations of one superblock: lane l holds block l's quants
 * (signed), the bias that removes the weights' offset (q8_0: -128 sum x,
 * q4_0: -8 sum x, q4_1: 0), d and (q8_1) s = d * sum. */
typedef struct {
    int8_t q[8][64];
    int32_t bias[16];
    float d[16];
    float s[16];
} __attribute__((aligned(64))) lanes_x;

static void lanes_pack_x(int fmt, const uint8_t *x, int64_t nb, int64_t j, lanes_x *o) {
    const int q81 = fmt == FMT_Q4_1;
    const int bs = q81 ? (int)sizeof(rwe_block_q8_1) : (int)sizeof(rwe_block_q8_0);
    const __m512i off = sb_offsets(lane_blocks(), bs);
    const __mmask16 m = sb_mask(lane_blocks(), nb, j);
    const uint8_t *base = x + (size_t)(j * GEMM_SB) * (size_t)bs;
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i sum = _mm512_setzero_si512();
    for (int k = 0; k < 8; k++) {
        __m512i v = gather32(m, off, base + (q81 ? 4 : 2) + 4 * k);
        _mm512_store_si512(o->q[k], v);
        sum = _mm512_dpbusd_epi32(sum, ones, v);
    }
    int zp = fmt == FMT_Q8_0 ? 128 : (fmt == FMT_Q4_0 ? 8 : 0);
    _mm512_store_si512(o->bias, _mm512_mullo_epi32(sum, _mm512_set1_epi32(-zp)));
    __m512i ds = gather32(m, off, base);
    _mm512_store_ps(o->d, half_to_f32(ds));
    _mm512_store_ps(o->s, q81 ? half_to_f32(_mm512_srli_epi32(ds, 16)) : _mm512_setzero_ps());
}

/* Integer sums of superblock b of one row with activations x, vectors
 * [k0, k0 + nk), added to s. */
static inline __attribute__((always_inline)) __m512i lanes_sum(int fmt, lanes_sb b, const lanes_x *x,
                                                               int k0, int nk, __m512i s) {
    RWE_UNROLL_ALL(8)
    for (int k = k0; k < k0 + nk; k++)
        s = _mm512_dpbusd_epi32(s, lanes_vec(fmt, b, k), _mm512_load_si512(x->q[k]));
    return s;
}

/* acc += the float value of superblock b's integer sums s. */
static inline __attribute__((always_inline)) __m512 lanes_scale(int fmt, lanes_sb b, const lanes_x *x,
                                                                __m512i s, __m512 acc) {
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(lanes_half(b, b.d), _mm512_load_ps(x->d)),
                          acc);
    if (fmt == FMT_Q4_1)
        acc = _mm512_fmadd_ps(lanes_half(b, b.m), _mm512_load_ps(x->s), acc);
    return acc;
}

/* Superblock j of K rows against its activations x, added to acc[k].  full:
 * a whole superblock (RWE_LANES_SB blocks), whose loads then compile to
 * plain vectors without a test of the lane count (lanes_load); only a
 * row's partial last superblock pays that test.  Each row's part is read
 * before the next row's (q8_0 in two halves of 4 vectors, q4 whole): the
 * empty asm keeps gcc from hoisting every load of the K rows to the top of
 * the step, which was slower from DRAM (docs/KERNEL_NOTES.md). */
static inline __attribute__((always_inline)) void lanes_step(int fmt, int K, int full,
                                                             const uint8_t *const *row, int64_t nb,
                                                             const lanes_x *x, int64_t j, __m512 *acc) {
    const int parts = fmt == FMT_Q8_0 ? 2 : 1, per = 8 / parts;
    /* only [0, K) is used; both set to quiet gcc */
    __m512i s[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
    lanes_sb b[2] = {{0}, {0}};
    RWE_UNROLL_ALL(2)
    for (int k = 0; k < K; k++) {
        b[k] = lanes_at(fmt, row[k], nb, j);
        if (full)
            b[k].n = RWE_LANES_SB;
        s[k] = _mm512_load_si512(x->bias);
    }
    RWE_UNROLL_ALL(8)
    for (int part = 0; part < parts; part++)
        RWE_UNROLL_ALL(2)
        for (int k = 0; k < K; k++) {
            __asm__ volatile("" ::: "memory");
            s[k] = lanes_sum(fmt, b[k], x, per * part, per, s[k]);
        }
    RWE_UNROLL_ALL(2)
    for (int k = 0; k < K; k++)
        acc[k] = lanes_scale(fmt, b[k], x, s[k], acc[k]);
}

/* lanes_loops.h's decode step: K rows at a time, one from each K-th of the
 * range (K long linear streams), whole superblocks first, then a row's
 * partial last one if the chunk has it. */
static inline __attribute__((always_inline)) int64_t lanes_decode(int fmt, int K, const uint8_t *W,
                                                               size_t row_bytes, int64_t nb,
                                                               const lanes_x *xs, int64_t j0, int64_t nj,
                                                               float *Y, int64_t r0, int64_t r1) {
    const int64_t h = (r1 - r0) / K;
    const int64_t whole = nb / RWE_LANES_SB < j0 + nj ? nb / RWE_LANES_SB : j0 + nj;
    for (int64_t i = 0; i < h; i++) {
        const uint8_t *row[2] = {W, W};
        __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
        RWE_UNROLL_ALL(2)
        for (int k = 0; k < K; k++) {
            row[k] = W + (size_t)(r0 + k * h + i) * row_bytes;
            acc[k] = _mm512_setzero_ps();
        }
        int64_t j = j0;
        for (; j < whole; j++)
            lanes_step(fmt, K, 1, row, nb, xs + (j - j0), j, acc);
        for (; j < j0 + nj; j++)
            lanes_step(fmt, K, 0, row, nb, xs + (j - j0), j, acc);
        RWE_UNROLL_ALL(2)
        for (int k = 0; k < K; k++) {
            float v = _mm512_reduce_add_ps(acc[k]);
            float *y = Y + r0 + k * h + i;
            *y = j0 == 0 ? v : *y + v;
        }
    }
    return r0 + K * h;
}

/* Lane 4t + i = the 16-lane sum of f[i][t] (its maximum when take_max), in
 * about 40 shuffles and adds where 16 separate reductions take 128: each
 * row's 4 vectors halve their lanes twice into y[i] (128-bit lane t holds 4
 * partial sums of f[i][t]), and two rounds of unpacks finish the 4 rows. */
static inline __attribute__((always_inline)) __m512 reduce_4x4(const __m512 f[4][4], int take_max) {
#define RWE_OP(a, b) (take_max ? _mm512_max_ps(a, b) : _mm512_add_ps(a, b))
    __m512 y[4];
    RWE_UNROLL(4)
    for (int i = 0; i < 4; i++) {
        const __m512 *r = f[i];
        __m512 ab = RWE_OP(_mm512_shuffle_f32x4(r[0], r[1], 0x44), _mm512_shuffle_f32x4(r[0], r[1], 0xee));
        __m512 cd = RWE_OP(_mm512_shuffle_f32x4(r[2], r[3], 0x44), _mm512_shuffle_f32x4(r[2], r[3], 0xee));
        y[i] = RWE_OP(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xdd));
    }
    __m512 p01 = RWE_OP(_mm512_unpacklo_ps(y[0], y[1]), _mm512_unpackhi_ps(y[0], y[1]));
    __m512 p23 = RWE_OP(_mm512_unpacklo_ps(y[2], y[3]), _mm512_unpackhi_ps(y[2], y[3]));
    __m512d a = _mm512_castps_pd(p01), b = _mm512_castps_pd(p23);
    return RWE_OP(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
#undef RWE_OP
}

/* Y[t * y_stride + i] = the 16-lane sum of f[i][t] for a 4 x TT tile
 * (with 1024 columns a tile has only 2 superblocks, and 16 separate
 * reductions cost as much as the sums).  reduce_4x4 leaves token t's 4
 * rows in 128-bit lane t, and Y's rows are adjacent, so each token is one
 * 16-byte store (a stack array and 16 scalar stores stalled on store
 * forwarding). */
static inline __attribute__((always_inline)) void gemm_store_4xT(int TT, __m512 f[4][4], float *Y,
                                                                 int64_t y_stride) {
    const __m512 z = _mm512_setzero_ps();
    __m512 g[4][4];
    RWE_UNROLL(4)
    for (int i = 0; i < 4; i++)
        RWE_UNROLL(4)
        for (int t = 0; t < 4; t++)
            g[i][t] = t < TT ? f[i][t] : z;
    __m512 q = reduce_4x4((const __m512(*)[4])g, 0);
    _mm_storeu_ps(Y, _mm512_castps512_ps128(q)); /* lane t = rows 0..3 of token t */
    if (TT > 1) _mm_storeu_ps(Y + y_stride, _mm512_extractf32x4_ps(q, 1));
    if (TT > 2) _mm_storeu_ps(Y + 2 * y_stride, _mm512_extractf32x4_ps(q, 2));
    if (TT > 3) _mm_storeu_ps(Y + 3 * y_stride, _mm512_extractf32x4_ps(q, 3));
}

/* A row's partial last superblock of m <= 8 blocks, "folded" (lanes order
 * only): the 4 rows of a tile share nv = 1 (m <= 4) or 2 (m <= 8) vectors,
 * row i in the slot of `width` = 16 / (4 / nv) lanes at (i % (4 / nv)) *
 * width of vector i / (4 / nv).  A token's blocks, lanes [0, width) of its
 * last superblock, are broadcast into every slot as they are loaded.  A
 * 768-column row (24 blocks) then costs 1.5 superblocks of vpdpbusd, not 2. */
typedef struct {
    int nv;          /* 0: no folded tail */
    const gw *w;     /* nv vectors */
    const gx *const *x; /* per token: its last superblock */
} gtail;

static inline int tail_width(int nv) { return nv == 1 ? 4 : 8; }

/* Lanes [0, width) of v (an aligned 64-byte vector) in every slot. */
static inline __m512i tail_bcast(int width, const void *v) {
    return width == 4 ? _mm512_broadcast_i32x4(_mm_load_si128(v))
                      : _mm512_broadcast_i64x4(_mm256_load_si256(v));
}

/* f[i][t] = row i's part of the folded tail (scaled, its lanes only, the
 * rest 0), as the tile's starting sums; NV is tl->nv as a constant, so that
 * f stays in registers.  The main superblocks' registers are not live yet. */
static inline __attribute__((always_inline)) void gemm_tail(int fmt, int TT, int NV, const gtail *tl,
                                                            __m512 f[4][4]) {
    const int per = 4 / NV, width = tail_width(NV);
    __m512i s[2][4];
    RWE_UNROLL(2)
    for (int v = 0; v < NV; v++)
        RWE_UNROLL(4)
        for (int t = 0; t < TT; t++)
            s[v][t] = _mm512_load_si512(tl->w[v].bias);
    RWE_UNROLL(8)
    for (int k = 0; k < 8; k++) {
        __m512i xv[4];
        RWE_UNROLL(4)
        for (int t = 0; t < TT; t++)
            xv[t] = tail_bcast(width, tl->x[t]->q[k]);
        RWE_UNROLL(2)
        for (int v = 0; v < NV; v++) {
            __m512i wv = _mm512_load_si512(tl->w[v].q[k]);
            RWE_UNROLL(4)
            for (int t = 0; t < TT; t++)
                s[v][t] = _mm512_dpbusd_epi32(s[v][t], xv[t], wv);
        }
    }
    RWE_UNROLL(2)
    for (int v = 0; v < NV; v++)
        RWE_UNROLL(4)
        for (int t = 0; t < TT; t++) {
            const __m512 xd = _mm512_castsi512_ps(tail_bcast(width, tl->x[t]->d));
            __m512 g = _mm512_mul_ps(_mm512_cvtepi32_ps(s[v][t]), _mm512_mul_ps(_mm512_load_ps(tl->w[v].d), xd));
            if (fmt == FMT_Q4_1)
                g = _mm512_fmadd_ps(_mm512_load_ps(tl->w[v].m),
                                    _mm512_castsi512_ps(tail_bcast(width, tl->x[t]->s)), g);
            RWE_UNROLL(4)
            for (int r = 0; r < per; r++)
                f[v * per + r][t] = _mm512_maskz_mov_ps((__mmask16)(((1u << width) - 1) << (r * width)), g);
        }
}

/* Y[t][r + i] = W row i . X token t for an R x TT tile over nsb superblocks
 * (and, for 4 rows, a folded tail when tl); w[i] / x[t] point at row i's /
 * token t's superblock 0. */
static inline __attribute__((always_inline)) void gemm_tile(int fmt, int R, int TT, int64_t nsb,
                                                            const gw *const *w,
                                                            const gx *const *x, const gtail *tl,
                                                            float *Y, int64_t y_stride) {
    __m512 f[4][4];
    if (R == 4 && tl && tl->nv == 1)
        gemm_tail(fmt, TT, 1, tl, f);
    else if (R == 4 && tl && tl->nv == 2)
        gemm_tail(fmt, TT, 2, tl, f);
    else
        RWE_UNROLL(8)
        for (int i = 0; i < R; i++)
            RWE_UNROLL(8)
            for (int t = 0; t < TT; t++)
                f[i][t] = _mm512_setzero_ps();
    for (int64_t j = 0; j < nsb; j++) {
        __m512i s[4][4];
        RWE_UNROLL(8)
        for (int i = 0; i < R; i++) {
            __m512i b = _mm512_load_si512(w[i][j].bias);
            RWE_UNROLL(8)
            for (int t = 0; t < TT; t++)
                s[i][t] = b;
        }
        RWE_UNROLL(8)
        for (int k = 0; k < 8; k++) {
            __m512i xv[4];
            RWE_UNROLL(8)
            for (int t = 0; t < TT; t++)
                xv[t] = _mm512_load_si512(x[t][j].q[k]);
            RWE_UNROLL(8)
            for (int i = 0; i < R; i++) {
                __m512i wv = _mm512_load_si512(w[i][j].q[k]);
                RWE_UNROLL(8)
                for (int t = 0; t < TT; t++)
                    s[i][t] = _mm512_dpbusd_epi32(s[i][t], xv[t], wv);
            }
        }
        RWE_UNROLL(8)
        for (int i = 0; i < R; i++) {
            __m512 wd = _mm512_load_ps(w[i][j].d);
            RWE_UNROLL(8)
            for (int t = 0; t < TT; t++) {
                __m512 d = _mm512_mul_ps(wd, _mm512_load_ps(x[t][j].d));
                f[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[i][t]), d, f[i][t]);
                if (fmt == FMT_Q4_1)
                    f[i][t] = _mm512_fmadd_ps(_mm512_load_ps(w[i][j].m), _mm512_load_ps(x[t][j].s),
                                              f[i][t]);
            }
        }
    }
    if (R == 4) {
        gemm_store_4xT(TT, f, Y, y_stride);
        return;
    }
    RWE_UNROLL(8)
    for (int i = 0; i < R; i++)
        RWE_UNROLL(8)
        for (int t = 0; t < TT; t++)
            Y[t * y_stride + i] = _mm512_reduce_add_ps(f[i][t]);
}

#define RWE_GEMM_TILE(R, TT) gemm_tile(fmt, R, TT, nsb - (tl.nv > 0), wp, xt, &tl, y, y_stride)

/* The full 4 x GEMM_T tile, compiled once per format out of line so that
 * every caller runs the same code: inlined into the lanes GEMM, gcc turned
 * its weight operands into memory operands (116 of 128 vpdpbusd). */
#define RWE_GEMM_TILE_FULL(F)                                                                    \
    static __attribute__((noinline)) void gemm_tile_full_##F(int64_t nsb, const gw *const *w,   \
                                                             const gx *const *x,                \
                                                             const gtail *tl, float *Y,         \
                                                             int64_t y_stride) {                \
        gemm_tile(FMT_##F, 4, GEMM_T, nsb, w, x, tl, Y, y_stride);                               \
    }                                                                                            \
    static __attribute__((noinline)) void gemm_tile_whole_##F(int64_t nsb, const gw *const *w,  \
                                                              const gx *const *x, float *Y,     \
                                                              int64_t y_stride) {               \
        gemm_tile(FMT_##F, 4, GEMM_T, nsb, w, x, NULL, Y, y_stride);                             \
    }
RWE_GEMM_TILE_FULL(Q8_0)
RWE_GEMM_TILE_FULL(Q4_0)
RWE_GEMM_TILE_FULL(Q4_1)

/* Rows without a folded tail keep a tile without the tail's code: the same
 * instructions as before it existed, so shapes without a tail (1024, 2048,
 * 3584 columns) cannot lose from it. */
static inline void gemm_tile_whole(int fmt, int64_t nsb, const gw *const *w, const gx *const *x,
                                   float *Y, int64_t y_stride) {
    if (fmt == FMT_Q8_0) gemm_tile_whole_Q8_0(nsb, w, x, Y, y_stride);
    else if (fmt == FMT_Q4_0) gemm_tile_whole_Q4_0(nsb, w, x, Y, y_stride);
    else gemm_tile_whole_Q4_1(nsb, w, x, Y, y_stride);
}

static inline void gemm_tile_full(int fmt, int64_t nsb, const gw *const *w, const gx *const *x,
                                  const gtail *tl, float *Y, int64_t y_stride) {
    if (fmt == FMT_Q8_0) gemm_tile_full_Q8_0(nsb, w, x, tl, Y, y_stride);
    else if (fmt == FMT_Q4_0) gemm_tile_full_Q4_0(nsb, w, x, tl, Y, y_stride);
    else gemm_tile_full_Q4_1(nsb, w, x, tl, Y, y_stride);
}

/* Folded-tail vectors: 0 when the last superblock is whole or has more than 8 blocks. */
static inline int tail_vectors(int64_t nb) {
    int64_t m = nb % GEMM_SB;
    return m == 0 || m > 8 ? 0 : (m <= 4 ? 1 : 2);
}

/* Index vector that puts lanes [0, width) of the first operand of a
 * permutex2var in slot s0 and those of the second in slot s0 + 1
 * (s0 + 2 <= 16 / width). */
static inline __m512i tail_index(int width, int s0) {
    int32_t idx[16] = {0};
    for (int b = 0; b < width; b++) {
        idx[s0 * width + b] = b;
        idx[(s0 + 1) * width + b] = 16 + b;
    }
    return _mm512_loadu_si512(idx);
}

/* Folds the last superblocks of 4 packed rows (r[i], lanes order) into nv vectors at o. */
static void fold_tail_w(int nv, const gw *const r[4], gw *o) {
    const int width = tail_width(nv), words = (int)(sizeof(gw) / 64);
    const __m512i lo = tail_index(width, 0), hi = tail_index(width, nv == 1 ? 2 : 0);
    for (int k = 0; k < words; k++) {
        __m512i v[4];
        for (int i = 0; i < 4; i++)
            v[i] = _mm512_load_si512((const __m512i *)r[i] + k);
        if (nv == 2) { /* rows 2u, 2u + 1 -> slots 0, 1 of vector u */
            _mm512_store_si512((__m512i *)o + k, _mm512_permutex2var_epi32(v[0], lo, v[1]));
            _mm512_store_si512((__m512i *)(o + 1) + k, _mm512_permutex2var_epi32(v[2], lo, v[3]));
        } else { /* rows 0..3 -> slots 0..3 */
            _mm512_store_si512((__m512i *)o + k,
                               _mm512_mask_blend_epi32(0xff00, _mm512_permutex2var_epi32(v[0], lo, v[1]),
                                                       _mm512_permutex2var_epi32(v[2], hi, v[3])));
        }
    }
}

/* GEMM workspace: RWE_GEMM_RB x nsb packed weight superblocks, then room for
 * RWE_GEMM_RB / 4 tiles' folded tails of up to 2 vectors. */
static inline size_t gemm_w_bytes(int64_t nsb) {
    return (size_t)(RWE_GEMM_RB * nsb + RWE_GEMM_RB / 4 * 2) * sizeof(gw);
}

/* Y = W X over rows [r0, r1) for T tokens whose packed activations are xs,
 * token t xsb bytes after t - 1 (a multiple of 64); weights in the lanes
 * layout; ws is gemm_w_bytes(nsb). */
static inline __attribute__((always_inline)) void gemm_rows(int fmt, int64_t cols,
                                                            const void *W, const gx *xs,
                                                            size_t xsb, float *Y, int64_t y_stride,
                                                            int64_t T, int64_t r0, int64_t r1,
                                                            gw *ws) {
    const int64_t nb = cols / RWE_QK, nsb = sb_count(cols);
    const size_t row_bytes = (size_t)nb * (block_bytes(fmt));
    const int nv = tail_vectors(nb);
    gw *wf = ws + RWE_GEMM_RB * nsb;
    for (int64_t rb = r0; rb < r1; rb += RWE_GEMM_RB) {
        int64_t nr = r1 - rb < RWE_GEMM_RB ? r1 - rb : RWE_GEMM_RB;
        for (int64_t i = 0; i < nr; i++)
            for (int64_t j = 0; j < nsb; j++) {
                const uint8_t *row = (const uint8_t *)W + (size_t)(rb + i) * row_bytes;
                gemm_pack_w_lanes(fmt, row, nb, j, ws + i * nsb + j);
            }
        for (int64_t i = 0; nv && i + 4 <= nr; i += 4) {
            const gw *last[4] = {ws + (i + 1) * nsb - 1, ws + (i + 2) * nsb - 1, ws + (i + 3) * nsb - 1,
                                 ws + (i + 4) * nsb - 1};
            fold_tail_w(nv, last, wf + i / 4 * nv);
        }
        for (int64_t t0 = 0; t0 < T; t0 += GEMM_T) {
            int tt = T - t0 < GEMM_T ? (int)(T - t0) : GEMM_T;
            const gx *xt[GEMM_T], *tails[GEMM_T];
            for (int t = 0; t < tt; t++) {
                xt[t] = (const gx *)((const char *)xs + (size_t)(t0 + t) * xsb);
                tails[t] = xt[t] + nsb - 1;
            }
            for (int64_t i = 0; i < nr; i += GEMM_R) {
                const gw *wp[GEMM_R];
                int rr = nr - i < GEMM_R ? (int)(nr - i) : GEMM_R;
                for (int k = 0; k < rr; k++)
                    wp[k] = ws + (i + k) * nsb;
                float *y = Y + t0 * y_stride + rb + i;
                const gtail tl = {.nv = rr == 4 ? nv : 0, .w = wf + i / 4 * nv, .x = tails};
                if (rr == 4 && tt == GEMM_T && !nv)
                    gemm_tile_whole(fmt, nsb, wp, xt, y, y_stride);
                else if (rr == 4 && tt == GEMM_T)
                    gemm_tile_full(fmt, nsb - 1, wp, xt, &tl, y, y_stride);
                else if (rr == 4 && tt == 3)
                    RWE_GEMM_TILE(4, 3);
                else if (rr == 4 && tt == 2)
                    RWE_GEMM_TILE(4, 2);
                else if (rr == 4 && tt == 1)
                    RWE_GEMM_TILE(4, 1);
                else
                    for (int k = 0; k < rr; k++) {
                        const gw *const *w1 = wp + k;
                        for (int t = 0; t < tt; t++)
                            gemm_tile(fmt, 1, 1, nsb, w1, xt + t, NULL, y + t * y_stride + k, y_stride);
                    }
            }
        }
    }
}

#define RWE_GEMM_OWN_ROWS
#include "lanes_loops.h"

RWE_LANES_ENTRIES(avx512)

/* Activation rows packed once for every thread (rwe_kernels.gemm_act):
 * each row is its superblocks' gx, lanes order. */
static size_t gemm_act_bytes_avx512(int64_t n) {
    return (size_t)sb_count(n) * sizeof(gx);
}

/* Lane l = the maximum of a[l]'s 16 lanes (l < 16): reduce_4x4 with a as
 * its 4 x 4 leaves a[4e + k]'s maximum in lane 4k + e, and one permute puts
 * a[l]'s in lane l.  Maxima are exact in any order. */
static inline __m512 max_across16(const __m512 a[16]) {
    return _mm512_permutexvar_ps(_mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0),
                                 reduce_4x4((const __m512(*)[4])a, 1));
}

/* f32 -> fp16 -> f32 per lane, round to nearest even (as rwe_f32_to_f16). */
static inline __m512 via_half(__m512 v) {
    return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* out[k] lane l = dword k of q[l] (16 blocks of 32 quants): vector i holds
 * blocks 2i, 2i + 1 at first (vector bits b3 b2 b1, lane bits b0 k2 k1 k0),
 * and each round of permutes over pairs of vectors swaps one vector bit
 * with one lane bit; the last round also puts the lanes in block order.
 * 24 permutes, where 8 gathers from the same stack copy took a quarter of
 * gemm_act's time. */
static inline void transpose_quants(const int8_t q[16][RWE_QK], __m512i out[8]) {
    static const int32_t ix[3][2][16] = {
        {{0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30},
         {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}},
        {{0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},
         {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31}},
        {{0, 8, 1, 9, 2, 10, 3, 11, 16, 24, 17, 25, 18, 26, 19, 27},
         {4, 12, 5, 13, 6, 14, 7, 15, 20, 28, 21, 29, 22, 30, 23, 31}}};
    for (int i = 0; i < 8; i++)
        out[i] = _mm512_load_si512(q[2 * i]);
    for (int r = 0; r < 3; r++) {
        const __m512i lo = _mm512_loadu_si512(ix[r][0]), hi = _mm512_loadu_si512(ix[r][1]);
        for (int a = 0; a < 8; a++) {
            if (a & (1 << r))
                continue;
            __m512i x = out[a], y = out[a | (1 << r)];
            out[a] = _mm512_permutex2var_epi32(x, lo, y);
            out[a | (1 << r)] = _mm512_permutex2var_epi32(x, hi, y);
        }
    }
}

/* One superblock of a row, its nb <= 16 blocks of floats at x, quantized
 * (q8_0, or q8_1 when q81) straight into o, the bytes that quantizing the row and packing it
 * with gemm_pack_x (lanes order) give: the 16 blocks' scales are one vector
 * here (one division for all), and the quants go through a stack copy. */
static inline __attribute__((always_inline)) void gemm_act_sb(int q81, const float *x, int nb,
                                                               gx *o) {
    __m512 a[16];
    for (int b = 0; b < 16; b++)
        a[b] = b < nb ? block_absmax(x + b * RWE_QK) : _mm512_setzero_ps();
    const __m512 d = _mm512_div_ps(max_across16(a), _mm512_set1_ps(127.0f));
    const __mmask16 nz = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_OQ);
    float id[16];
    _mm512_storeu_ps(id, _mm512_maskz_div_ps(nz, _mm512_set1_ps(1.0f), d));
    int8_t qs[16][RWE_QK] __attribute__((aligned(64)));
    int32_t sum[16];
    for (int b = 0; b < nb; b++) {
        __m512i s = block_quants(x + b * RWE_QK, _mm512_set1_ps(id[b]), qs[b]);
        sum[b] = q81 ? _mm512_reduce_add_epi32(s) : 0;
    }
    for (int b = nb; b < 16; b++)
        memset(qs[b], 0, RWE_QK), sum[b] = 0;
    __m512i q[8];
    transpose_quants((const int8_t(*)[RWE_QK])qs, q);
    for (int k = 0; k < 8; k++)
        _mm512_store_si512(o->q[k], _mm512_xor_si512(q[k], _mm512_set1_epi8((char)0x80)));
    _mm512_store_ps(o->d, via_half(d));
    _mm512_store_ps(o->s, q81 ? via_half(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(sum)), d))
                              : _mm512_setzero_ps());
}

/* One row into its superblocks' gx (rwe_kernels.gemm_act). */
static void gemm_act_avx512(rwe_type act, const float *x, void *y, int64_t n) {
    const int64_t nb = n / RWE_QK, nsb = sb_count(n);
    for (int64_t j = 0; j < nsb; j++) {
        int64_t m = nb - j * GEMM_SB < GEMM_SB ? nb - j * GEMM_SB : GEMM_SB;
        if (act == RWE_TYPE_Q8_1)
            gemm_act_sb(1, x + j * GEMM_SB * RWE_QK, (int)m, (gx *)y + j);
        else
            gemm_act_sb(0, x + j * GEMM_SB * RWE_QK, (int)m, (gx *)y + j);
    }
}

/* The packed-rows GEMM without a workspace (the thread's could not grow):
 * each weight superblock is packed into one on the stack for every token
 * that uses it.  Correct, slow, only when memory is short. */
static void gemm_rows_unbuffered(int fmt, int64_t cols, const void *W, const gx *xs, size_t xsb,
                                 float *Y, int64_t y_stride, int64_t T, int64_t r0, int64_t r1) {
    const int64_t nb = cols / RWE_QK, nsb = sb_count(cols);
    const size_t row_bytes = (size_t)nb * (block_bytes(fmt));
    for (int64_t r = r0; r < r1; r++)
        for (int64_t t = 0; t < T; t++) {
            const gx *x = (const gx *)((const char *)xs + (size_t)t * xsb);
            float acc = 0.0f;
            for (int64_t j = 0; j < nsb; j++) {
                gw w;
                const gw *wp = &w;
                const gx *xp = x + j;
                float y;
                gemm_pack_w_lanes(fmt, (const uint8_t *)W + (size_t)r * row_bytes, nb, j, &w);
                gemm_tile(fmt, 1, 1, 1, &wp, &xp, NULL, &y, 0);
                acc += y;
            }
            Y[t * y_stride + r] = acc;
        }
}

#define RWE_GEMM_ENTRY(name, F)                                                                 \
    static void name(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,    \
                     int64_t y_stride, int64_t T, int64_t r0, int64_t r1) {                    \
        gw *ws = rwe_gemm_workspace(gemm_w_bytes(sb_count(cols)));                              \
        if (ws)                                                                                 \
            gemm_rows(FMT_##F, cols, W, X, x_stride, Y, y_stride, T, r0, r1, ws);            \
        else                                                                                    \
            gemm_rows_unbuffered(FMT_##F, cols, W, X, x_stride, Y, y_stride, T, r0, r1);        \
    }
RWE_GEMM_ENTRY(matmul_gemm_q8_0_avx512, Q8_0)
RWE_GEMM_ENTRY(matmul_gemm_q4_0_avx512, Q4_0)
RWE_GEMM_ENTRY(matmul_gemm_q4_1_avx512, Q4_1)


/* ---------------------------------------------------- float matmul */

/* 16 weights from element i as f32 (masked lanes read nothing and are 0). */
static inline __m512 load16_w(int fmt, const void *w, int64_t i, __mmask16 m) {
    if (fmt == FMT_F32)
        return _mm512_maskz_loadu_ps(m, (const float *)w + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i);
    if (fmt == FMT_F16)
        return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* out[t] = sum_i w[i] x_t[i], 16 lanes; the last partial vector is masked. */
static inline __attribute__((always_inline)) void fdot_tile(int fmt, int TT, int64_t n,
                                                            const void *w,
                                                            const float *const *x, float *out) {
    __m512 acc[RWE_TILE_T];
    for (int t = 0; t < TT; t++)
        acc[t] = _mm512_setzero_ps();
    int64_t i = 0;
    if (TT == 1) { /* decode: unmasked loads, two chains */
        __m512 a1 = _mm512_setzero_ps();
        for (; i + 32 <= n; i += 32) {
            acc[0] = _mm512_fmadd_ps(load16_w(fmt, w, i, 0xffff), _mm512_loadu_ps(x[0] + i), acc[0]);
            a1 = _mm512_fmadd_ps(load16_w(fmt, w, i + 16, 0xffff), _mm512_loadu_ps(x[0] + i + 16), a1);
        }
        acc[0] = _mm512_add_ps(acc[0], a1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 wv = load16_w(fmt, w, i, m);
        for (int t = 0; t < TT; t++)
            acc[t] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x[t] + i), acc[t]);
    }
    for (int t = 0; t < TT; t++)
        out[t] = _mm512_reduce_add_ps(acc[t]);
}

/* Decode of 4 rows at a time, one from each quarter of [r0, r1) (long linear
 * streams, as qdecode_k), sharing every activation load; rows left over go
 * through fdot_tile.  Returns the first row not done. */
static inline __attribute__((always_inline)) int64_t fdecode4(int fmt, int64_t n, const void *W,
                                                              size_t row_bytes, const float *x,
                                                              float *Y, int64_t r0, int64_t r1) {
    const int64_t h = (r1 - r0) / 4;
    for (int64_t i = 0; i < h; i++) {
        const void *w[4];
        __m512 a[4];
        for (int k = 0; k < 4; k++) {
            w[k] = (const char *)W + (size_t)(r0 + k * h + i) * row_bytes;
            a[k] = _mm512_setzero_ps();
        }
        int64_t c = 0;
        for (; c + 16 <= n; c += 16) {
            __m512 xv = _mm512_loadu_ps(x + c);
            for (int k = 0; k < 4; k++)
                a[k] = _mm512_fmadd_ps(load16_w(fmt, w[k], c, 0xffff), xv, a[k]);
        }
        if (c < n) {
            __mmask16 m = (__mmask16)((1u << (n - c)) - 1);
            __m512 xv = _mm512_maskz_loadu_ps(m, x + c);
            for (int k = 0; k < 4; k++)
                a[k] = _mm512_fmadd_ps(load16_w(fmt, w[k], c, m), xv, a[k]);
        }
        for (int k = 0; k < 4; k++)
            Y[r0 + k * h + i] = _mm512_reduce_add_ps(a[k]);
    }
    return r0 + 4 * h;
}

static inline __attribute__((always_inline)) void fmatmul(int fmt, int64_t cols, const void *W,
                                                          const void *X, size_t x_stride, float *Y,
                                                          int64_t y_stride, int64_t T, int64_t r0,
                                                          int64_t r1) {
    size_t row_bytes = (size_t)cols * (fmt == FMT_F32 ? 4 : 2);
    if (T == 1 && (size_t)(r1 - r0) * row_bytes >= 4 * (size_t)RWE_MIN_STREAM)
        r0 = fdecode4(fmt, cols, W, row_bytes, (const float *)X, Y, r0, r1);
    RWE_FLOAT_TILES(fmt);
}

static void matmul_f32_avx512(int64_t cols, const void *W, const void *X, size_t x_stride,
                              float *Y, int64_t y_stride, int64_t T, int64_t r0, int64_t r1) {
    fmatmul(FMT_F32, cols, W, X, x_stride, Y, y_stride, T, r0, r1);
}

static void matmul_f16_avx512(int64_t cols, const void *W, const void *X, size_t x_stride,
                              float *Y, int64_t y_stride, int64_t T, int64_t r0, int64_t r1) {
    fmatmul(FMT_F16, cols, W, X, x_stride, Y, y_stride, T, r0, r1);
}

static void matmul_bf16_avx512(int64_t cols, const void *W, const void *X, size_t x_stride,
                               float *Y, int64_t y_stride, int64_t T, int64_t r0, int64_t r1) {
    fmatmul(FMT_BF16, cols, W, X, x_stride, Y, y_stride, T, r0, r1);
}

/* ------------------------------------------------------------- wkv5 */

/* One head of 64 channels, one token, as wkv5_head64_avx2 (the rank-one
 * bonus, 2 multiply-adds and a multiply per state element) with a state
 * row in 4 vectors instead of 8 (a prefill spends a few percent here). */
static void wkv5_head64_avx512(const float *r, const float *k, const float *v, const float *w,
                               const float *u, float *S, float *out) {
    __m512 o[4], vj[4], a = _mm512_setzero_ps();
    for (int j = 0; j < 4; j++) {
        o[j] = _mm512_setzero_ps();
        vj[j] = _mm512_loadu_ps(v + 16 * j);
        a = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_loadu_ps(r + 16 * j), _mm512_loadu_ps(u + 16 * j)),
                            _mm512_loadu_ps(k + 16 * j), a);
    }
    for (int i = 0; i < 64; i++) {
        __m512 ri = _mm512_set1_ps(r[i]), ki = _mm512_set1_ps(k[i]), wi = _mm512_set1_ps(w[i]);
        float *Si = S + i * 64;
        RWE_UNROLL(4)
        for (int j = 0; j < 4; j++) {
            __m512 s = _mm512_loadu_ps(Si + 16 * j);
            o[j] = _mm512_fmadd_ps(ri, s, o[j]);
            _mm512_storeu_ps(Si + 16 * j, _mm512_fmadd_ps(ki, vj[j], _mm512_mul_ps(wi, s)));
        }
    }
    const __m512 bonus = _mm512_set1_ps(_mm512_reduce_add_ps(a));
    for (int j = 0; j < 4; j++)
        _mm512_storeu_ps(out + 16 * j, _mm512_fmadd_ps(bonus, vj[j], o[j]));
}

/* wkv5_head64_avx512 for two consecutive tokens (rows C floats apart) in
 * one pass over the state: each state row is loaded and stored once for
 * both. */
static void wkv5_head64x2_avx512(int64_t C, const float *r, const float *k, const float *v,
                                 const float *w, const float *u, float *S, float *out) {
    __m512 o0[4], o1[4], v0[4], v1[4], a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (int j = 0; j < 4; j++) {
        o0[j] = o1[j] = _mm512_setzero_ps();
        v0[j] = _mm512_loadu_ps(v + 16 * j);
        v1[j] = _mm512_loadu_ps(v + C + 16 * j);
        __m512 uj = _mm512_loadu_ps(u + 16 * j);
        a0 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_loadu_ps(r + 16 * j), uj), _mm512_loadu_ps(k + 16 * j), a0);
        a1 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_loadu_ps(r + C + 16 * j), uj),
                             _mm512_loadu_ps(k + C + 16 * j), a1);
    }
    for (int i = 0; i < 64; i++) {
        __m512 r0 = _mm512_set1_ps(r[i]), k0 = _mm512_set1_ps(k[i]);
        __m512 r1 = _mm512_set1_ps(r[C + i]), k1 = _mm512_set1_ps(k[C + i]), wi = _mm512_set1_ps(w[i]);
        float *Si = S + i * 64;
        RWE_UNROLL(4)
        for (int j = 0; j < 4; j++) {
            __m512 s = _mm512_loadu_ps(Si + 16 * j);
            o0[j] = _mm512_fmadd_ps(r0, s, o0[j]);
            s = _mm512_fmadd_ps(k0, v0[j], _mm512_mul_ps(wi, s));
            o1[j] = _mm512_fmadd_ps(r1, s, o1[j]);
            _mm512_storeu_ps(Si + 16 * j, _mm512_fmadd_ps(k1, v1[j], _mm512_mul_ps(wi, s)));
        }
    }
    const __m512 b0 = _mm512_set1_ps(_mm512_reduce_add_ps(a0)), b1 = _mm512_set1_ps(_mm512_reduce_add_ps(a1));
    for (int j = 0; j < 4; j++) {
        _mm512_storeu_ps(out + 16 * j, _mm512_fmadd_ps(b0, v0[j], o0[j]));
        _mm512_storeu_ps(out + C + 16 * j, _mm512_fmadd_ps(b1, v1[j], o1[j]));
    }
}

static void wkv5_avx512(int64_t T, int64_t H, int64_t N, int64_t ld, const float *r,
                        const float *k, const float *v, const float *w, const float *u, float *S,
                        float *out) {
    if (N != 64) {
        rwe_wkv5_avx2(T, H, N, ld, r, k, v, w, u, S, out);
        return;
    }
    /* head by head, so that a head's state stays in L1 across the T tokens */
    for (int64_t h = 0; h < H; h++) {
        int64_t t = 0;
        for (; t + 2 <= T; t += 2) {
            int64_t o = t * ld + h * 64;
            wkv5_head64x2_avx512(ld, r + o, k + o, v + o, w + h * 64, u + h * 64, S + h * 64 * 64, out + o);
        }
        for (; t < T; t++) {
            int64_t o = t * ld + h * 64;
            wkv5_head64_avx512(r + o, k + o, v + o, w + h * 64, u + h * 64, S + h * 64 * 64, out + o);
        }
    }
}

/* The norms and the elementwise steps are a small share of a token's time,
 * so this set reuses the AVX2 versions (next-lower ISA); wkv5 has its own. */
const rwe_kernels rwe_kernels_avx512 = {
    .isa = RWE_ISA_AVX512,
    .name = "avx512",
    .quantize_row[RWE_TYPE_Q8_0] = quantize_row_q8_0_avx512,
    .quantize_row[RWE_TYPE_Q8_1] = quantize_row_q8_1_avx512,
    .mm[RWE_TYPE_F32] = {.matmul = matmul_f32_avx512},
    .mm[RWE_TYPE_F16] = {.matmul = matmul_f16_avx512},
    .mm[RWE_TYPE_BF16] = {.matmul = matmul_bf16_avx512},
    .mm[RWE_TYPE_Q8_0] = {.matmul = rwe_matmul_q8_0_avx2, .lanes = matmul_lanes_q8_0_avx512,
                          .gemm = matmul_gemm_q8_0_avx512},
    .mm[RWE_TYPE_Q4_0] = {.matmul = rwe_matmul_q4_0_avx2, .lanes = matmul_lanes_q4_0_avx512,
                          .gemm = matmul_gemm_q4_0_avx512},
    .mm[RWE_TYPE_Q4_1] = {.matmul = rwe_matmul_q4_1_avx2, .lanes = matmul_lanes_q4_1_avx512,
                          .gemm = matmul_gemm_q4_1_avx512},
    .gemm_act_bytes = gemm_act_bytes_avx512,
    .gemm_act = gemm_act_avx512,
    RWE_AVX2_VECTOR_OPS,
    .wkv5 = wkv5_avx512,
};

#if defined(__clang__)
#pragma clang attribute pop
#endif

#endif /* __x86_64__ */
