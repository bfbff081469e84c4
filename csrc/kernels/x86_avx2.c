/*
 * AVX2 + FMA + F16C kernels (x86-64 CPUs from Haswell / Zen 1 on).
 *
 * Lane layouts: one q8_0/q4_0/q4_1 block of 32 elements is one __m256i of
 * int8 in element order (a q4 block's 16 bytes of nibbles are unpacked to
 * low nibbles in bytes 0-15 and high nibbles in bytes 16-31, which is the
 * element order of blocks.h).  Float kernels work on 8 f32 lanes.
 *
 * Quantized weights are read in the lanes layout (quant/quant.h; the
 * engine repacks every quantized matrix into it at load), where one 32-bit
 * lane holds one block: a ymm load is 4 bytes of 8 blocks, so decode needs
 * no unpacking shuffles and converts, scales and accumulates in float once
 * per 8 blocks instead of once per block.  The activation row is repacked
 * once per call into the same lane order (gemm_pack_x, with q4_0's
 * -8 * sum(x) bias).  From RWE_GEMM_MIN_T tokens on, calls go through the
 * prefill GEMM, whose weight packing from this layout is a sign flip (q8_0)
 * or a nibble split (q4), not a transpose.
 *
 * The GGML-block products (qmatmul; both x86 sets use them, under
 * RWKV_EDGE_REPACK=0 only) keep a tile of up to 4 tokens in registers: a
 * weight block is loaded and unpacked once, then multiplied with each
 * token's block.  Decode takes 2 rows at a time so they share each
 * activation block.
 */
#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "../quant/quant.h"
#include "kernels_impl.h"

/* Every function of this file is built for these features (the file is
 * compiled with baseline flags; the CPU is probed before any of it runs).
 * clang ignores GCC's pragma and has its own form. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c,tune=generic") /* see x86_avx512.c */
#endif

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float f16(uint16_t h) { return _cvtsh_ss(h); }

/* ------------------------------------------------- activation quantizers */

/* roundf (half away from zero) of 8 lanes, bit-exact with the scalar ref:
 * t = trunc(v); t += sign(v) where |v - t| >= 0.5 (v - t is exact). */
static inline __m256i round_away8(__m256 v) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    __m256 one = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ),
                               _mm256_set1_ps(1.0f));
    return _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_or_ps(one, _mm256_and_ps(v, sign))));
}

/* One block: writes qs, returns d (f32) and, through sum, sum(qs).
 * Non-finite input as the ref (quant_ref.c): the scale skips it, products
 * are clamped to +-127 and a NaN product gives 0. */
static inline float quantize_block8(const float *x, int8_t *qs, int *sum) {
    const __m256 sign = _mm256_set1_ps(-0.0f), inf = _mm256_set1_ps(INFINITY);
    __m256 v[4], amax = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        __m256 a = _mm256_andnot_ps(sign, v[i]);
        amax = _mm256_max_ps(amax, _mm256_and_ps(a, _mm256_cmp_ps(a, inf, _CMP_LT_OQ)));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    float d = _mm_cvtss_f32(m) / 127.0f;
    __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    __m256i q[4];
    for (int i = 0; i < 4; i++) {
        __m256 p = _mm256_mul_ps(v[i], id);
        p = _mm256_and_ps(p, _mm256_cmp_ps(p, p, _CMP_ORD_Q)); /* NaN -> 0 */
        p = _mm256_min_ps(_mm256_max_ps(p, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
        q[i] = round_away8(p);
    }
    __m256i s32 = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
    s = _mm_hadd_epi32(s, s);
    *sum = _mm_cvtsi128_si32(_mm_hadd_epi32(s, s));
    /* packs interleave the 128-bit lanes; the permute puts elements back in order */
    __m256i p16 = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    p16 = _mm256_permutevar8x32_epi32(p16, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)qs, p16);
    return d;
}

void rwe_quantize_row_q8_0_avx2(const float *x, void *vy, int64_t n) {
    rwe_block_q8_0 *y = vy;
    int sum;
    for (int64_t b = 0; b < n / RWE_QK; b++)
        y[b].d = rwe_f32_to_f16(quantize_block8(x + b * RWE_QK, y[b].qs, &sum));
}

void rwe_quantize_row_q8_1_avx2(const float *x, void *vy, int64_t n) {
    rwe_block_q8_1 *y = vy;
    int sum;
    for (int64_t b = 0; b < n / RWE_QK; b++) {
        float d = quantize_block8(x + b * RWE_QK, y[b].qs, &sum);
        y[b].d = rwe_f32_to_f16(d);
        y[b].s = rwe_f32_to_f16((float)sum * d);
    }
}

/* ------------------------------------------------ quantized matmul */

/* Sum over 4-byte groups of u[i]*s[i] into 8 int32 lanes; u unsigned, s
 * signed.  maddubs saturates at 2^15, which |u| <= 128, |s| <= 127 never
 * reaches for one pair.  Scalar: lane k = sum_{i=4k}^{4k+3} u[i]*s[i]. */
static inline __m256i dot_us8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* Weight block -> 32 bytes in element order (q8_0: signed; q4: the unsigned
 * nibbles, the q4_0 offset 8 is removed after the multiply). */
static inline __m256i load_wblock(int fmt, const uint8_t *blk) {
    if (fmt == FMT_Q8_0)
        return _mm256_loadu_si256((const __m256i *)(blk + 2));
    const uint8_t *qs = blk + (fmt == FMT_Q4_0 ? 2 : 4);
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0f));
}

/* Weight block . activation block in 8 int32 lanes.
 *   q8_0: sign trick, w*x = |w| * (x with w's sign)
 *   q4_0: nib*x - 8*x per byte pair, with 8*x (xoff) shared by the rows of a tile
 *   q4_1: nib*x (the m*s term is added in float)
 * int16 pair sums stay below 2^15: 2*128*127, 2*15*127 + 2*8*127. */
static inline __m256i block_dot(int fmt, __m256i w, __m256i x, __m256i xoff) {
    const __m256i ones = _mm256_set1_epi16(1);
    if (fmt == FMT_Q8_0)
        return dot_us8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    __m256i p = _mm256_maddubs_epi16(w, x);
    return _mm256_madd_epi16(fmt == FMT_Q4_0 ? _mm256_sub_epi16(p, xoff) : p, ones);
}

/* out[i][t] = dot(weight row i, token t) for R rows x TT tokens of nb blocks. */
static inline __attribute__((always_inline)) void qdot_tile(int fmt, int R, int TT, int64_t nb,
                                                            const uint8_t *const *wrow,
                                                            const uint8_t *const *x,
                                                            float out[2][RWE_TILE_T]) {
    size_t wbs = block_bytes(fmt), xbs = fmt == FMT_Q4_1 ? sizeof(rwe_block_q8_1) : sizeof(rwe_block_q8_0);
    size_t xqs = fmt == FMT_Q4_1 ? 4 : 2;
    __m256 acc[2][RWE_TILE_T];
    float mterm[2][RWE_TILE_T] = {{0}};
    for (int i = 0; i < R; i++)
        for (int t = 0; t < TT; t++)
            acc[i][t] = _mm256_setzero_ps();
    /* rows are adjacent: one linear prefetch stream over them (see x86_avx512.c) */
    const char *pf = (const char *)wrow[0] + RWE_PF_AHEAD;
    for (int64_t b = 0; b < nb; b++, pf += (size_t)R * wbs) {
        for (size_t off = 0; off < (size_t)R * wbs; off += 64)
            _mm_prefetch(pf + off, _MM_HINT_T0);
        __m256i w[2];
        float dw[2], m[2];
        for (int i = 0; i < R; i++) {
            const uint8_t *blk = wrow[i] + b * wbs;
            w[i] = load_wblock(fmt, blk);
            dw[i] = f16(*(const uint16_t *)blk);
            m[i] = fmt == FMT_Q4_1 ? f16(*(const uint16_t *)(blk + 2)) : 0.0f;
        }
        for (int t = 0; t < TT; t++) {
            const uint8_t *xb = x[t] + b * xbs;
            __m256i xv = _mm256_loadu_si256((const __m256i *)(xb + xqs));
            float dx = f16(*(const uint16_t *)xb);
            __m256i xoff = fmt == FMT_Q4_0 ? _mm256_maddubs_epi16(_mm256_set1_epi8(8), xv) : xv;
            for (int i = 0; i < R; i++) {
                __m256 d = _mm256_set1_ps(dw[i] * dx);
                __m256i dot = block_dot(fmt, w[i], xv, xoff);
                acc[i][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), d, acc[i][t]);
                if (fmt == FMT_Q4_1)
                    mterm[i][t] += m[i] * f16(*(const uint16_t *)(xb + 2));
            }
        }
    }
    for (int i = 0; i < R; i++)
        for (int t = 0; t < TT; t++)
            out[i][t] = hsum8(acc[i][t]) + mterm[i][t];
}

/* ------------------------------------------------------ prefill GEMM */

/*
 * With many tokens (T >= RWE_GEMM_MIN_T) one int32 lane holds one block:
 * a "superblock" is 8 consecutive blocks (256 columns), and lane l of vector
 * k holds elements 4k..4k+3 of block l, so the integer products of 8 blocks
 * finish before one convert, multiply and FMA.  The activations are packed
 * once per call (4 x 4 dword transposes), the weights from the lanes layout
 * once per block of RWE_GEMM_RB rows, reused by every token of the call.
 * Lanes past the row's last block are zero on both sides.
 *
 * Without VNNI the products go through maddubs (u8 x s8 -> s16 pair sums,
 * saturating), so each format takes the operand split that stays exact:
 *   q8_0: the decode sign trick, |w| (<= 128) unsigned and x with w's sign
 *         (x from the quantizers is within +-127), so a pair is <= 2 * 128 *
 *         127 = 32512; madd to int32 every vector.
 *   q4_0, q4_1: the nibble (0..15) unsigned and x signed, a pair is <=
 *         2 * 15 * 128 = 3840, so the 8 vectors of a superblock add up in
 *         int16 (<= 30720) before one madd.  q4_0's -8 * sum(x) per block is
 *         an activation bias; q4_1's m * s is added in float.
 * (x + 128 unsigned against signed w, as with VNNI, would need no sign ops
 * but can saturate for q8_0: 2 * 255 * 127 > 32767.)
 */
#define GEMM_SB 8        /* blocks per superblock: one per int32 lane */
#define GEMM_PAD (GEMM_SB * sizeof(rwe_block_q8_1)) /* 8 of the largest block */
#define GEMM_R 4         /* rows per register tile */
#define GEMM_T 2         /* tokens per register tile */

typedef struct {
    int8_t q[8][32];  /* qs */
    float d[8];
    float s[8];       /* q8_1 only: the block's s */
    int32_t bias[8];  /* q4_0 only: -8 * sum(qs) */
} __attribute__((aligned(32))) gx;

typedef struct {
    int8_t q[8][32]; /* q8_0: qs; q4: the nibbles 0..15 */
    float d[8];
    float m[8];      /* q4_1 only */
} __attribute__((aligned(32))) gw;

/* v[k] lane l = the k-th 32-bit word at p + l * bs, k < 4, l < 8. */
static inline void transpose_4x8(const uint8_t *p, size_t bs, __m256i v[4]) {
    __m256i r[4]; /* r[m]: block m in the low 128 bits, block m + 4 in the high */
    for (int m = 0; m < 4; m++)
        r[m] = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(p + (size_t)(m + 4) * bs)),
                                _mm_loadu_si128((const __m128i *)(p + (size_t)m * bs)));
    __m256i ab0 = _mm256_unpacklo_epi32(r[0], r[1]), ab1 = _mm256_unpackhi_epi32(r[0], r[1]);
    __m256i cd0 = _mm256_unpacklo_epi32(r[2], r[3]), cd1 = _mm256_unpackhi_epi32(r[2], r[3]);
    v[0] = _mm256_unpacklo_epi64(ab0, cd0);
    v[1] = _mm256_unpackhi_epi64(ab0, cd0);
    v[2] = _mm256_unpacklo_epi64(ab1, cd1);
    v[3] = _mm256_unpackhi_epi64(ab1, cd1);
}

/* The 8 blocks of superblock j of a row of nb blocks of bs bytes: in the row
 * itself, or for a partial last superblock in a zero-padded copy in pad. */
static inline const uint8_t *sb_blocks(const uint8_t *row, size_t bs, int64_t nb, int64_t j,
                                       uint8_t pad[GEMM_PAD]) {
    const uint8_t *base = row + (size_t)(j * GEMM_SB) * bs;
    int64_t n = nb - j * GEMM_SB;
    if (n >= GEMM_SB)
        return base;
    memset(pad, 0, GEMM_PAD);
    memcpy(pad, base, (size_t)n * bs);
    return pad;
}

static inline float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return f16(h);
}

/* Superblock j of one activation row (q8_0 blocks, or q8_1 for q4_1). */
static void gemm_pack_x(int fmt, const uint8_t *x, int64_t nb, int64_t j, gx *o) {
    const size_t bs = fmt == FMT_Q4_1 ? sizeof(rwe_block_q8_1) : sizeof(rwe_block_q8_0);
    uint8_t pad[GEMM_PAD];
    const uint8_t *p = sb_blocks(x, bs, nb, j, pad);
    __m256i q[8];
    transpose_4x8(p + bs - 32, bs, q);
    transpose_4x8(p + bs - 16, bs, q + 4);
    __m256i sum8 = _mm256_setzero_si256(); /* 8 * pair sums: <= 8 * 2048 in int16 */
    for (int k = 0; k < 8; k++) {
        _mm256_store_si256((__m256i *)o->q[k], q[k]);
        if (fmt == FMT_Q4_0)
            sum8 = _mm256_add_epi16(sum8, _mm256_maddubs_epi16(_mm256_set1_epi8(8), q[k]));
    }
    _mm256_store_si256((__m256i *)o->bias, _mm256_madd_epi16(sum8, _mm256_set1_epi16(-1)));
    for (int l = 0; l < GEMM_SB; l++) {
        o->d[l] = f16_at(p + (size_t)l * bs);
        o->s[l] = fmt == FMT_Q4_1 ? f16_at(p + (size_t)l * bs + 2) : 0.0f;
    }
}

/* ------------------------------------------------------- lanes layout */

/*
 * Weights repacked at load into the lanes layout (quant/quant.h): a layout
 * superblock of up to 16 blocks is vectors of 16 lanes x 4 bytes, so one
 * ymm load is 8 lanes = 8 blocks, exactly a superblock of the GEMM above
 * (GEMM_SB), in its lane order.  Here a "half" is such an 8-block piece:
 * half h of a row is blocks 8h..8h+7, in layout superblock h / 2.
 */

/* Superblock j of a lanes row (quant.h): vector k at q + 4 * n * k. */
typedef rwe_lanes_sb lanes_sb;

static inline lanes_sb lanes_at(int fmt, const uint8_t *row, int64_t nb, int64_t j) {
    return rwe_lanes_at(fmt == FMT_Q8_0 ? 32 : 16, fmt == FMT_Q4_1 ? 4 : 2, row, nb, j);
}

/* All ones in the int32 lanes below nl (0..8). */
static inline __m256i lanes_mask8(int nl) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(nl), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* 8 lanes of 4 quant bytes at p, nl of them there (lanes past nl read
 * nothing and are 0: a partial superblock's vectors are 4 * n bytes). */
static inline __m256i lanes_load8(const uint8_t *p, int nl) {
    if (nl == 8)
        return _mm256_loadu_si256((const __m256i *)p);
    return _mm256_maskload_epi32((const int *)p, lanes_mask8(nl));
}

/* 8 fp16 of a header as f32, lanes past nl 0.  The 16 bytes stay inside
 * the row: a group's header is followed by at least 16 bytes of quants
 * per block, so a read starting at a block's d (or m) that exists cannot
 * pass the end; the lanes past nl are whatever follows (maybe NaN). */
static inline __m256 lanes_f16x8(const uint8_t *p, int nl) {
    __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    return nl == 8 ? v : _mm256_and_ps(v, _mm256_castsi256_ps(lanes_mask8(nl)));
}

/* GEMM superblock j (8 blocks: half j % 2 of layout superblock j / 2) of a
 * lanes row, into the GEMM's gw: the quants are already one block per lane,
 * so this is q8_0's sign flip back or q4's nibble split, no transpose. */
static void gemm_pack_w(int fmt, const uint8_t *row, int64_t nb, int64_t j, gw *o) {
    const lanes_sb b = lanes_at(fmt, row, nb, j / 2);
    const int half = (int)(j % 2), nl = b.n - 8 * half < 8 ? b.n - 8 * half : 8;
    const uint8_t *q = b.q + 32 * half;
    const size_t stride = 4 * (size_t)b.n;
    if (fmt == FMT_Q8_0) { /* stored q + 128: back to signed; missing lanes stay 0 */
        const __m256i flip = _mm256_and_si256(_mm256_set1_epi8((char)0x80), lanes_mask8(nl));
        for (int k = 0; k < 8; k++)
            _mm256_store_si256((__m256i *)o->q[k],
                               _mm256_xor_si256(lanes_load8(q + k * stride, nl), flip));
    } else {
        const __m256i nib = _mm256_set1_epi8(0x0f);
        for (int k = 0; k < 4; k++) {
            __m256i v = lanes_load8(q + k * stride, nl);
            _mm256_store_si256((__m256i *)o->q[k], _mm256_and_si256(v, nib));
            _mm256_store_si256((__m256i *)o->q[k + 4], _mm256_and_si256(_mm256_srli_epi16(v, 4), nib));
        }
    }
    _mm256_store_ps(o->d, lanes_f16x8(b.d + 16 * half, nl));
    _mm256_store_ps(o->m, fmt == FMT_Q4_1 ? lanes_f16x8(b.m + 16 * half, nl) : _mm256_setzero_ps());
}

/* The integer block dots of superblock j for an R x TT tile, s[i][t]. */
static inline __attribute__((always_inline)) void gemm_idots(int fmt, int R, int TT, int64_t j,
                                                             const gw *const *w,
                                                             const gx *const *x,
                                                             __m256i s[GEMM_R][GEMM_T]) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i h[GEMM_R][GEMM_T]; /* q8_0: int32 sums; q4: int16 pair sums */
    RWE_UNROLL(8)
    for (int i = 0; i < R; i++)
        RWE_UNROLL(8)
        for (int t = 0; t < TT; t++)
            h[i][t] = _mm256_setzero_si256();
    /* Unrolled by 2, not 8: fully unrolled, GCC turns each int16 chain into
     * an adder tree and spills most of the 64 products. */
    RWE_UNROLL(2)
    for (int k = 0; k < 8; k++) {
        __m256i xv[GEMM_T];
        RWE_UNROLL(8)
        for (int t = 0; t < TT; t++)
            xv[t] = _mm256_load_si256((const __m256i *)x[t][j].q[k]);
        RWE_UNROLL(8)
        for (int i = 0; i < R; i++) {
            __m256i wv = _mm256_load_si256((const __m256i *)w[i][j].q[k]);
            __m256i aw = fmt == FMT_Q8_0 ? _mm256_sign_epi8(wv, wv) : wv;
            RWE_UNROLL(8)
            for (int t = 0; t < TT; t++) {
                if (fmt == FMT_Q8_0)
                    h[i][t] = _mm256_add_epi32(
                        h[i][t], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv[t], wv)),
                                                   ones));
                else
                    h[i][t] = _mm256_add_epi16(h[i][t], _mm256_maddubs_epi16(aw, xv[t]));
            }
        }
    }
    RWE_UNROLL(8)
    for (int i = 0; i < R; i++)
        RWE_UNROLL(8)
        for (int t = 0; t < TT; t++) {
            if (fmt == FMT_Q8_0)
                s[i][t] = h[i][t];
            else if (fmt == FMT_Q4_0)
                s[i][t] = _mm256_add_epi32(_mm256_madd_epi16(h[i][t], ones),
                                           _mm256_load_si256((const __m256i *)x[t][j].bias));
            else
                s[i][t] = _mm256_madd_epi16(h[i][t], ones);
        }
}

/* Y[t * y_stride + i] = W row i . X token t for an R x TT tile over nsb
 * superblocks; w[i] / x[t] point at row i's / token t's superblock 0. */
static inline __attribute__((always_inline)) void gemm_tile(int fmt, int R, int TT, int64_t nsb,
                                                            const gw *const *w,
                                                            const gx *const *x, float *Y,
                                                            int64_t y_stride) {
    __m256 f[GEMM_R][GEMM_T];
    RWE_UNROLL(8)
    for (int i = 0; i < R; i++)
        RWE_UNROLL(8)
        for (int t = 0; t < TT; t++)
            f[i][t] = _mm256_setzero_ps();
    for (int64_t j = 0; j < nsb; j++) {
        __m256i s[GEMM_R][GEMM_T];
        /* The full tile's 8 float sums live in memory across the k loop, so
         * that its 8 int16 chains keep the registers: left to itself, gcc
         * spilled one chain in some callers (the lanes GEMM at -O3 -fPIC,
         * as the Python build compiles, or a noinline tile at -O2). */
        if (R * TT > 4)
            __asm__ volatile("" : : "r"(f) : "memory");
        gemm_idots(fmt, R, TT, j, w, x, s);
        RWE_UNROLL(8)
        for (int i = 0; i < R; i++) {
            __m256 wd = _mm256_load_ps(w[i][j].d);
            RWE_UNROLL(8)
            for (int t = 0; t < TT; t++) {
                __m256 d = _mm256_mul_ps(wd, _mm256_load_ps(x[t][j].d));
                f[i][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[i][t]), d, f[i][t]);
                if (fmt == FMT_Q4_1)
                    f[i][t] = _mm256_fmadd_ps(_mm256_load_ps(w[i][j].m), _mm256_load_ps(x[t][j].s),
                                              f[i][t]);
            }
        }
    }
    RWE_UNROLL(8)
    for (int i = 0; i < R; i++)
        RWE_UNROLL(8)
        for (int t = 0; t < TT; t++)
            Y[t * y_stride + i] = hsum8(f[i][t]);
}

/* An rr x tt tile of the repacked operands: a full one at constant sizes,
 * a partial one row by row (1 x GEMM_T, or 1 x 1 for the last tokens). */
static inline __attribute__((always_inline)) void gemm_tiles(int fmt, int rr, int tt, int64_t nsb,
                                                             const gw *const *wp,
                                                             const gx *const *xt, float *y,
                                                             int64_t y_stride) {
    if (rr == GEMM_R && tt == GEMM_T) {
        gemm_tile(fmt, GEMM_R, GEMM_T, nsb, wp, xt, y, y_stride);
        return;
    }
    for (int k = 0; k < rr; k++) {
        if (tt == GEMM_T) {
            gemm_tile(fmt, 1, GEMM_T, nsb, wp + k, xt, y + k, y_stride);
            continue;
        }
        for (int t = 0; t < tt; t++)
            gemm_tile(fmt, 1, 1, nsb, wp + k, xt + t, y + t * y_stride + k, y_stride);
    }
}

/* The GGML-block products of both x86 sets (RWKV_EDGE_REPACK=0 only; the
 * engine reads quantized weights in the lanes layout otherwise): register
 * tiles at every T, no GEMM.  Decode (one token) takes 2 rows per tile so
 * they share the activation loads; with more tokens one row x 4 tokens
 * fills the 16 ymm registers. */
static inline __attribute__((always_inline)) void qmatmul(int fmt, int64_t cols, const void *W,
                                                          const void *X, size_t x_stride, float *Y,
                                                          int64_t y_stride, int64_t T, int64_t r0,
                                                          int64_t r1) {
    int64_t nb = cols / RWE_QK;
    size_t row_bytes = (size_t)nb * block_bytes(fmt);
    for (int64_t t0 = 0; t0 < T; t0 += RWE_TILE_T) {
        int tt = T - t0 < RWE_TILE_T ? (int)(T - t0) : RWE_TILE_T;
        const uint8_t *x[RWE_TILE_T];
        for (int t = 0; t < tt; t++)
            x[t] = (const uint8_t *)X + (size_t)(t0 + t) * x_stride;
        for (int64_t r = r0; r < r1;) {
            float out[2][RWE_TILE_T] = {{0}};
            int R = tt == 1 && r + 2 <= r1 ? 2 : 1;
            const uint8_t *wrow[2] = {(const uint8_t *)W + (size_t)r * row_bytes,
                                      (const uint8_t *)W + (size_t)(r + R - 1) * row_bytes};
            switch (R == 2 ? 0 : tt) { /* constant tile sizes, so the loops unroll */
            case 0: qdot_tile(fmt, 2, 1, nb, wrow, x, out); break;
            case 1: qdot_tile(fmt, 1, 1, nb, wrow, x, out); break;
            case 2: qdot_tile(fmt, 1, 2, nb, wrow, x, out); break;
            case 3: qdot_tile(fmt, 1, 3, nb, wrow, x, out); break;
            default: qdot_tile(fmt, 1, 4, nb, wrow, x, out); break;
            }
            for (int i = 0; i < R; i++, r++)
                for (int t = 0; t < tt; t++)
                    Y[(t0 + t) * y_stride + r] = out[i][t];
        }
    }
}

void rwe_matmul_q8_0_avx2(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                          int64_t y_stride, int64_t T, int64_t r0, int64_t r1) {
    qmatmul(FMT_Q8_0, cols, W, X, x_stride, Y, y_stride, T, r0, r1);
}

void rwe_matmul_q4_0_avx2(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                          int64_t y_stride, int64_t T, int64_t r0, int64_t r1) {
    qmatmul(FMT_Q4_0, cols, W, X, x_stride, Y, y_stride, T, r0, r1);
}

void rwe_matmul_q4_1_avx2(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                          int64_t y_stride, int64_t T, int64_t r0, int64_t r1) {
    qmatmul(FMT_Q4_1, cols, W, X, x_stride, Y, y_stride, T, r0, r1);
}

/* ------------------------------------------------- lanes layout: matmul */

/* Integer sums of the NH halves of one layout superblock (half hf: 8 blocks
 * at q[i] + 32 hf, nl[hf] of them there, vector v at + v * stride) for K
 * rows against the packed activations x[hf]:
 *   q8_0: stored u = w + 128 is flipped back to w and goes through the
 *         sign trick of block_dot, |w| * (x with w's sign): as unsigned u
 *         against signed x a maddubs pair can reach 2 * 255 * 127 and
 *         saturate; a vector's pairs (<= 2 * 128 * 127) go to int32 at once.
 *   q4: nibbles 0..15 against x, the 8 vectors of a half summed in int16
 *         (<= 8 * 2 * 15 * 127 = 30480), then one madd; q4_0 adds the
 *         activations' bias -8 * sum(x).
 * Both halves of vector v are read before vector v + 1, so a row is read
 * in address order (half by half was slower from DRAM).  Each activation
 * vector is loaded once for the K rows. */
static inline __attribute__((always_inline)) void lanes_idots(int fmt, int K, int NH,
                                                              const uint8_t *const *q,
                                                              size_t stride, const int nl[2],
                                                              const gx *x, __m256i s[2][2]) {
    const __m256i ones = _mm256_set1_epi16(1);
    if (fmt == FMT_Q8_0) {
        const __m256i flip = _mm256_set1_epi8((char)0x80);
        RWE_UNROLL(2)
        for (int i = 0; i < K; i++)
            RWE_UNROLL(2)
            for (int hf = 0; hf < NH; hf++)
                s[i][hf] = _mm256_setzero_si256();
        RWE_UNROLL(8)
        for (int v = 0; v < 8; v++)
            RWE_UNROLL(2)
            for (int hf = 0; hf < NH; hf++) {
                __m256i xv = _mm256_load_si256((const __m256i *)x[hf].q[v]);
                RWE_UNROLL(2)
                for (int i = 0; i < K; i++) {
                    __m256i w = lanes_load8(q[i] + v * stride + 32 * hf, nl[hf]);
                    w = _mm256_xor_si256(w, flip);
                    s[i][hf] = _mm256_add_epi32(
                        s[i][hf], dot_us8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(xv, w)));
                }
            }
        return;
    }
    const __m256i nib = _mm256_set1_epi8(0x0f);
    __m256i h[2][2];
    RWE_UNROLL(2)
    for (int i = 0; i < K; i++)
        RWE_UNROLL(2)
        for (int hf = 0; hf < NH; hf++)
            h[i][hf] = _mm256_setzero_si256();
    RWE_UNROLL(4)
    for (int v = 0; v < 4; v++)
        RWE_UNROLL(2)
        for (int hf = 0; hf < NH; hf++) {
            __m256i xlo = _mm256_load_si256((const __m256i *)x[hf].q[v]);
            __m256i xhi = _mm256_load_si256((const __m256i *)x[hf].q[v + 4]);
            RWE_UNROLL(2)
            for (int i = 0; i < K; i++) {
                __m256i w = lanes_load8(q[i] + v * stride + 32 * hf, nl[hf]);
                __m256i lo = _mm256_and_si256(w, nib);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), nib);
                h[i][hf] = _mm256_add_epi16(h[i][hf], _mm256_maddubs_epi16(lo, xlo));
                h[i][hf] = _mm256_add_epi16(h[i][hf], _mm256_maddubs_epi16(hi, xhi));
            }
        }
    RWE_UNROLL(2)
    for (int i = 0; i < K; i++)
        RWE_UNROLL(2)
        for (int hf = 0; hf < NH; hf++) {
            s[i][hf] = _mm256_madd_epi16(h[i][hf], ones);
            if (fmt == FMT_Q4_0)
                s[i][hf] = _mm256_add_epi32(s[i][hf], _mm256_load_si256((const __m256i *)x[hf].bias));
        }
}

/* Superblock b[i] of each of K rows (n blocks, NH = 2 halves if n > 8,
 * else 1) against its packed activations x[0], x[1], added to acc[i] in
 * float: dw * dx * sum, and for q4_1 m * s. */
static inline __attribute__((always_inline)) void lanes_sb_dot(int fmt, int K, int NH,
                                                               const lanes_sb *b, int n,
                                                               const gx *x, __m256 acc[2]) {
    const int nl[2] = {n < 8 ? n : 8, n - 8};
    const uint8_t *q[2] = {b[0].q, b[K - 1].q};
    __m256i s[2][2];
    lanes_idots(fmt, K, NH, q, 4 * (size_t)n, nl, x, s);
    RWE_UNROLL(2)
    for (int hf = 0; hf < NH; hf++) {
        __m256 dx = _mm256_load_ps(x[hf].d);
        RWE_UNROLL(2)
        for (int i = 0; i < K; i++) {
            __m256 d = _mm256_mul_ps(lanes_f16x8(b[i].d + 16 * hf, nl[hf]), dx);
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[i][hf]), d, acc[i]);
            if (fmt == FMT_Q4_1)
                acc[i] = _mm256_fmadd_ps(lanes_f16x8(b[i].m + 16 * hf, nl[hf]),
                                         _mm256_load_ps(x[hf].s), acc[i]);
        }
    }
}

/* Decode activations of one layout superblock: its two 8-block halves in
 * the GEMM's packing (a half past the row's end is not written). */
typedef struct {
    gx h[2];
} lanes_x;

static inline void lanes_pack_x(int fmt, const uint8_t *x, int64_t nb, int64_t j, lanes_x *o) {
    for (int hf = 0; hf < 2 && 8 * (2 * j + hf) < nb; hf++)
        gemm_pack_x(fmt, x, nb, 2 * j + hf, &o->h[hf]);
}

/* lanes_loops.h's decode step: K = 2 rows at a time, one from each half of
 * the range (two long linear streams), or K = 1; full superblocks (every
 * one but maybe a row's last) take constant sizes. */
static inline __attribute__((always_inline)) int64_t lanes_decode(int fmt, int K, const uint8_t *W,
                                                               size_t row_bytes, int64_t nb,
                                                               const lanes_x *xs, int64_t j0,
                                                               int64_t nj, float *Y, int64_t r0,
                                                               int64_t r1) {
    const int64_t full = nb / RWE_LANES_SB < j0 + nj ? nb / RWE_LANES_SB : j0 + nj;
    const int64_t h = (r1 - r0) / K;
    for (int64_t r = r0; r < r0 + h; r++) {
        const uint8_t *row[2] = {(const uint8_t *)W + (size_t)r * row_bytes,
                                 (const uint8_t *)W + (size_t)(r + (K - 1) * h) * row_bytes};
        __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        lanes_sb b[2];
        int64_t j = j0;
        for (; j < full; j++) {
            RWE_UNROLL(2)
            for (int i = 0; i < K; i++)
                b[i] = lanes_at(fmt, row[i], nb, j);
            lanes_sb_dot(fmt, K, 2, b, RWE_LANES_SB, xs[j - j0].h, acc);
        }
        if (j < j0 + nj) { /* a partial last superblock */
            RWE_UNROLL(2)
            for (int i = 0; i < K; i++)
                b[i] = lanes_at(fmt, row[i], nb, j);
            if (b[0].n > 8)
                lanes_sb_dot(fmt, K, 2, b, b[0].n, xs[j - j0].h, acc);
            else
                lanes_sb_dot(fmt, K, 1, b, b[0].n, xs[j - j0].h, acc);
        }
        RWE_UNROLL(2)
        for (int i = 0; i < K; i++) {
            float v = hsum8(acc[i]);
            float *y = Y + r + i * h;
            *y = j0 == 0 ? v : *y + v;
        }
    }
    return r0 + K * h;
}

#include "lanes_loops.h"

RWE_LANES_ENTRIES(avx2)

/* ---------------------------------------------------- float matmul */

/* 8 weights from element i as f32 (bf16: the 16 bits are the top of an f32). */
static inline __m256 load8_w(int fmt, const void *w, int64_t i) {
    if (fmt == FMT_F32)
        return _mm256_loadu_ps((const float *)w + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    if (fmt == FMT_F16)
        return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline float load1_w(int fmt, const void *w, int64_t i) {
    if (fmt == FMT_F32)
        return ((const float *)w)[i];
    uint16_t h = ((const uint16_t *)w)[i];
    return fmt == FMT_F16 ? f16(h) : rwe_bf16_to_f32(h);
}

static inline __attribute__((always_inline)) void fdot_tile(int fmt, int TT, int64_t n,
                                                            const void *w,
                                                            const float *const *x, float *out) {
    __m256 acc[RWE_TILE_T];
    for (int t = 0; t < TT; t++)
        acc[t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 wv = load8_w(fmt, w, i);
        for (int t = 0; t < TT; t++)
            acc[t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[t] + i), acc[t]);
    }
    for (int t = 0; t < TT; t++) {
        out[t] = hsum8(acc[t]);
        for (int64_t j = i; j < n; j++)
            out[t] += load1_w(fmt, w, j) * x[t][j];
    }
}

static inline __attribute__((always_inline)) void fmatmul(int fmt, int64_t cols, const void *W,
                                                          const void *X, size_t x_stride, float *Y,
                                                          int64_t y_stride, int64_t T, int64_t r0,
                                                          int64_t r1) {
    size_t row_bytes = (size_t)cols * (fmt == FMT_F32 ? 4 : 2);
    RWE_FLOAT_TILES(fmt);
}

static void matmul_f32_avx2(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                            int64_t y_stride, int64_t T, int64_t r0, int64_t r1) {
    fmatmul(FMT_F32, cols, W, X, x_stride, Y, y_stride, T, r0, r1);
}

static void matmul_f16_avx2(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                            int64_t y_stride, int64_t T, int64_t r0, int64_t r1) {
    fmatmul(FMT_F16, cols, W, X, x_stride, Y, y_stride, T, r0, r1);
}

static void matmul_bf16_avx2(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                             int64_t y_stride, int64_t T, int64_t r0, int64_t r1) {
    fmatmul(FMT_BF16, cols, W, X, x_stride, Y, y_stride, T, r0, r1);
}

/* ------------------------------------------------------------- wkv5 */

/* The bonus term is rank one: sum_i r[i] u[i] k[i] v[j] = a v[j] with
 * a = sum_i r[i] u[i] k[i], so a head-token costs one multiply-add per state
 * element for the output and two for the update, not four in all:
 *   out[j] = a v[j] + sum_i r[i] S[i][j]
 *   S[i][j] = k[i] v[j] + w[i] S[i][j]
 * (the ref sums r[i] (u[i] k[i] v[j] + S[i][j]) in double; test_kernels
 * holds both to the same bound). */
static float bonus_avx2(int64_t N, const float *r, const float *k, const float *u) {
    __m256 acc = _mm256_setzero_ps(); /* N % 8 == 0; a scalar sum was one 64-add chain */
    for (int64_t i = 0; i < N; i += 8)
        acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(r + i), _mm256_loadu_ps(u + i)),
                              _mm256_loadu_ps(k + i), acc);
    return hsum8(acc);
}

/* One head, one token, N % 8 == 0; 8 value channels j per vector. */
static void wkv5_head_avx2(int64_t N, const float *r, const float *k, const float *v,
                           const float *w, const float *u, float *S, float *out) {
    for (int64_t j = 0; j < N; j++)
        out[j] = 0.0f;
    for (int64_t i = 0; i < N; i++) {
        __m256 ri = _mm256_set1_ps(r[i]), ki = _mm256_set1_ps(k[i]), wi = _mm256_set1_ps(w[i]);
        float *Si = S + i * N;
        for (int64_t j = 0; j < N; j += 8) {
            __m256 vj = _mm256_loadu_ps(v + j), s = _mm256_loadu_ps(Si + j);
            _mm256_storeu_ps(out + j, _mm256_fmadd_ps(ri, s, _mm256_loadu_ps(out + j)));
            _mm256_storeu_ps(Si + j, _mm256_fmadd_ps(ki, vj, _mm256_mul_ps(wi, s)));
        }
    }
    __m256 a = _mm256_set1_ps(bonus_avx2(N, r, k, u));
    for (int64_t j = 0; j < N; j += 8)
        _mm256_storeu_ps(out + j, _mm256_fmadd_ps(a, _mm256_loadu_ps(v + j), _mm256_loadu_ps(out + j)));
}

/* wkv5_head_avx2 for N == 64 (every real RWKV-5 model): the 64 outputs stay
 * in registers across the 64 state rows instead of a load and store per row. */
static void wkv5_head64_avx2(const float *r, const float *k, const float *v, const float *w,
                             const float *u, float *S, float *out) {
    __m256 o[8];
    for (int j = 0; j < 8; j++)
        o[j] = _mm256_setzero_ps();
    for (int i = 0; i < 64; i++) {
        __m256 ri = _mm256_set1_ps(r[i]), ki = _mm256_set1_ps(k[i]), wi = _mm256_set1_ps(w[i]);
        float *Si = S + i * 64;
        RWE_UNROLL(8)
        for (int j = 0; j < 8; j++) {
            __m256 vj = _mm256_loadu_ps(v + 8 * j), s = _mm256_loadu_ps(Si + 8 * j);
            o[j] = _mm256_fmadd_ps(ri, s, o[j]);
            _mm256_storeu_ps(Si + 8 * j, _mm256_fmadd_ps(ki, vj, _mm256_mul_ps(wi, s)));
        }
    }
    __m256 a = _mm256_set1_ps(bonus_avx2(64, r, k, u));
    for (int j = 0; j < 8; j++)
        _mm256_storeu_ps(out + 8 * j, _mm256_fmadd_ps(a, _mm256_loadu_ps(v + 8 * j), o[j]));
}

/* wkv5_head64_avx2 for two consecutive tokens (rows ld floats apart) in one
 * pass over the state per half (32 value channels, so that both tokens'
 * sums fit the 16 registers): each state element is loaded and stored once
 * for both tokens. */
static void wkv5_head64x2_avx2(int64_t ld, const float *r, const float *k, const float *v,
                               const float *w, const float *u, float *S, float *out) {
    const float *r1 = r + ld, *k1 = k + ld, *v1 = v + ld;
    const __m256 a0 = _mm256_set1_ps(bonus_avx2(64, r, k, u));
    const __m256 a1 = _mm256_set1_ps(bonus_avx2(64, r1, k1, u));
    for (int half = 0; half < 2; half++) {
        const int c0 = 32 * half;
        __m256 o0[4], o1[4];
        for (int j = 0; j < 4; j++)
            o0[j] = o1[j] = _mm256_setzero_ps();
        for (int i = 0; i < 64; i++) {
            __m256 ri = _mm256_set1_ps(r[i]), ki = _mm256_set1_ps(k[i]), wi = _mm256_set1_ps(w[i]);
            __m256 ri1 = _mm256_set1_ps(r1[i]), ki1 = _mm256_set1_ps(k1[i]);
            float *Si = S + i * 64 + c0;
            RWE_UNROLL(4)
            for (int j = 0; j < 4; j++) {
                __m256 s = _mm256_loadu_ps(Si + 8 * j);
                o0[j] = _mm256_fmadd_ps(ri, s, o0[j]);
                s = _mm256_fmadd_ps(ki, _mm256_loadu_ps(v + c0 + 8 * j), _mm256_mul_ps(wi, s));
                o1[j] = _mm256_fmadd_ps(ri1, s, o1[j]);
                _mm256_storeu_ps(Si + 8 * j,
                                 _mm256_fmadd_ps(ki1, _mm256_loadu_ps(v1 + c0 + 8 * j), _mm256_mul_ps(wi, s)));
            }
        }
        for (int j = 0; j < 4; j++) {
            int c = c0 + 8 * j;
            _mm256_storeu_ps(out + c, _mm256_fmadd_ps(a0, _mm256_loadu_ps(v + c), o0[j]));
            _mm256_storeu_ps(out + ld + c, _mm256_fmadd_ps(a1, _mm256_loadu_ps(v1 + c), o1[j]));
        }
    }
}

void rwe_wkv5_avx2(int64_t T, int64_t H, int64_t N, int64_t ld, const float *r, const float *k,
                   const float *v, const float *w, const float *u, float *S, float *out) {
    if (N % 8 != 0) {
        rwe_wkv5_ref(T, H, N, ld, r, k, v, w, u, S, out);
        return;
    }
    /* head by head, so that a head's N x N state stays in L1 across the T tokens */
    for (int64_t h = 0; h < H; h++) {
        int64_t t = 0;
        for (; N == 64 && t + 2 <= T; t += 2) {
            int64_t o = t * ld + h * N;
            wkv5_head64x2_avx2(ld, r + o, k + o, v + o, w + h * N, u + h * N, S + h * N * N, out + o);
        }
        for (; t < T; t++) {
            int64_t o = t * ld + h * N;
            if (N == 64)
                wkv5_head64_avx2(r + o, k + o, v + o, w + h * N, u + h * N, S + h * N * N, out + o);
            else
                wkv5_head_avx2(N, r + o, k + o, v + o, w + h * N, u + h * N, S + h * N * N, out + o);
        }
    }
}

/* ------------------------------------------- norms and elementwise steps */

/* vec_ops.h's mapping: 8 f32 lanes.  maxps / minps return their second
 * operand when one is NaN, so x goes second to stay NaN. */
typedef __m256 vec_t;
#define VEC_N 8
#define VEC_LOAD(p) _mm256_loadu_ps(p)
#define VEC_STORE(p, v) _mm256_storeu_ps(p, v)
#define VEC_SET1(f) _mm256_set1_ps(f)
#define VEC_ZERO() _mm256_setzero_ps()
#define VEC_ADD(a, b) _mm256_add_ps(a, b)
#define VEC_SUB(a, b) _mm256_sub_ps(a, b)
#define VEC_MUL(a, b) _mm256_mul_ps(a, b)
#define VEC_DIV(a, b) _mm256_div_ps(a, b)
#define VEC_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VEC_FNMA(a, b, c) _mm256_fnmadd_ps(a, b, c)
#define VEC_NEG(v) _mm256_sub_ps(_mm256_setzero_ps(), v)
#define VEC_HSUM(v) hsum8(v)
#define VEC_RELU(v) _mm256_max_ps(_mm256_setzero_ps(), v)
#define VEC_CLAMP(v, lo, hi) _mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), v))
#define VEC_ROUND(v) _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VEC_POW2(n)                                                                               \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n),               \
                                                           _mm256_set1_epi32(127)), 23))
#define VEC_FN(name) rwe_##name##_avx2 /* both x86 sets' entries (RWE_AVX2_VECTOR_OPS) */
#define VEC_LINKAGE
#include "vec_ops.h"

const rwe_kernels rwe_kernels_avx2 = {
    .isa = RWE_ISA_AVX2,
    .name = "avx2",
    .quantize_row[RWE_TYPE_Q8_0] = rwe_quantize_row_q8_0_avx2,
    .quantize_row[RWE_TYPE_Q8_1] = rwe_quantize_row_q8_1_avx2,
    .mm[RWE_TYPE_F32] = {.matmul = matmul_f32_avx2},
    .mm[RWE_TYPE_F16] = {.matmul = matmul_f16_avx2},
    .mm[RWE_TYPE_BF16] = {.matmul = matmul_bf16_avx2},
    .mm[RWE_TYPE_Q8_0] = {.matmul = rwe_matmul_q8_0_avx2, .lanes = matmul_lanes_q8_0_avx2},
    .mm[RWE_TYPE_Q4_0] = {.matmul = rwe_matmul_q4_0_avx2, .lanes = matmul_lanes_q4_0_avx2},
    .mm[RWE_TYPE_Q4_1] = {.matmul = rwe_matmul_q4_1_avx2, .lanes = matmul_lanes_q4_1_avx2},
    .wkv5 = rwe_wkv5_avx2,
    RWE_AVX2_VECTOR_OPS,
};

#if defined(__clang__)
#pragma clang attribute pop
#endif

#endif /* __x86_64__ */
