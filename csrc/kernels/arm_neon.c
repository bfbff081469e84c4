/*
 * aarch64 kernels: "neon" (Advanced SIMD, every aarch64 CPU) and "dotprod"
 * (ARMv8.2 SDOT; Cortex-A55/A76+, Apple M1+, Graviton 2+).  The two sets
 * differ only in the quantized products (the int8 block dot, and dotprod's
 * prefill GEMM); the dotprod entry points carry the target attribute
 * themselves, so this file builds with baseline flags.
 *
 * Lane layout: a block of 32 int8 is two int8x16_t (elements 0-15, 16-31;
 * for q4 the low nibbles are elements 0-15 and the high ones 16-31).  The
 * block dot leaves partial sums in 4 int32 lanes:
 *   neon:    vmull_s8 / vmlal_s8 into int16 (|pair| <= 2*128*127 < 2^15),
 *            then pairwise widening adds into int32
 *   dotprod: vdotq_s32, lane k = sum_{i=4k}^{4k+3} w[i]*x[i] per half
 * Scalar equivalent: sumi = sum_j w[j]*x[j]; y += dw*dx*sumi (+ m*s for q4_1).
 * Matmuls keep up to 4 tokens in registers so prefill unpacks each weight
 * block once per 4 tokens.  The dotprod set takes a GEMM layout instead for
 * calls of RWE_GEMM_MIN_T tokens or more (qgemm, "prefill GEMM" below).
 */
#if defined(__aarch64__)

#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "../quant/quant.h"
#include "kernels_impl.h"

/* The dotprod kernels opt in per function (clang names the feature alone) */
#if defined(__clang__)
#define RWE_DOTPROD __attribute__((target("dotprod")))
#else
#define RWE_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif

/* clang's arm_neon.h (up to 15 at least) declares vdotq_s32 only when the
 * whole file is built for dotprod: give it the one instruction by hand. */
#if defined(__clang__) && !defined(__ARM_FEATURE_DOTPROD)
static inline RWE_DOTPROD int32x4_t rwe_vdotq_s32(int32x4_t acc, int8x16_t a, int8x16_t b) {
    __asm__("sdot %0.4s, %1.16b, %2.16b" : "+w"(acc) : "w"(a), "w"(b));
    return acc;
}
#define vdotq_s32 rwe_vdotq_s32
#endif

/* ------------------------------------------------- activation quantizers */

/* x * id, a NaN product as 0, clamped to [-127, 127] (as the ref). */
static inline float32x4_t scale_clamp_q8(float32x4_t v, float id) {
    float32x4_t p = vmulq_n_f32(v, id);
    p = vreinterpretq_f32_u32(vandq_u32(vceqq_f32(p, p), vreinterpretq_u32_f32(p)));
    return vminq_f32(vmaxq_f32(p, vdupq_n_f32(-127.0f)), vdupq_n_f32(127.0f));
}

/* vcvtaq rounds half away from zero, i.e. roundf: bit-exact with the ref.
 * Non-finite input as the ref (quant_ref.c): the scale skips it. */
static float quantize_block_neon(const float *x, int8_t *qs, int *sum) {
    const float32x4_t inf = vdupq_n_f32(INFINITY);
    float32x4_t v[8], amax = vdupq_n_f32(0.0f);
    for (int i = 0; i < 8; i++) {
        v[i] = vld1q_f32(x + 4 * i);
        float32x4_t a = vabsq_f32(v[i]);
        a = vreinterpretq_f32_u32(vandq_u32(vcltq_f32(a, inf), vreinterpretq_u32_f32(a)));
        amax = vmaxq_f32(amax, a);
    }
    float d = vmaxvq_f32(amax) / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    int32x4_t s = vdupq_n_s32(0);
    for (int i = 0; i < 8; i += 2) {
        int32x4_t q0 = vcvtaq_s32_f32(scale_clamp_q8(v[i], id));
        int32x4_t q1 = vcvtaq_s32_f32(scale_clamp_q8(v[i + 1], id));
        s = vaddq_s32(s, vaddq_s32(q0, q1));
        int16x8_t q16 = vcombine_s16(vqmovn_s32(q0), vqmovn_s32(q1));
        vst1_s8(qs + 4 * i, vqmovn_s16(q16));
    }
    *sum = vaddvq_s32(s);
    return d;
}

static void quantize_row_q8_0_neon(const float *x, void *vy, int64_t n) {
    rwe_block_q8_0 *y = vy;
    int sum;
    for (int64_t b = 0; b < n / RWE_QK; b++)
        y[b].d = rwe_f32_to_f16(quantize_block_neon(x + b * RWE_QK, y[b].qs, &sum));
}

static void quantize_row_q8_1_neon(const float *x, void *vy, int64_t n) {
    rwe_block_q8_1 *y = vy;
    int sum;
    for (int64_t b = 0; b < n / RWE_QK; b++) {
        float d = quantize_block_neon(x + b * RWE_QK, y[b].qs, &sum);
        y[b].d = rwe_f32_to_f16(d);
        y[b].s = rwe_f32_to_f16((float)sum * d);
    }
}

/* ------------------------------------------------ quantized matmul */

typedef int32x4_t (*block_dot_fn)(int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1);

static inline int32x4_t block_dot_neon(int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1) {
    int16x8_t p0 = vmlal_s8(vmull_s8(vget_low_s8(w0), vget_low_s8(x0)), vget_high_s8(w0), vget_high_s8(x0));
    int16x8_t p1 = vmlal_s8(vmull_s8(vget_low_s8(w1), vget_low_s8(x1)), vget_high_s8(w1), vget_high_s8(x1));
    return vpadalq_s16(vpaddlq_s16(p0), p1);
}

static inline RWE_DOTPROD int32x4_t block_dot_sdot(int8x16_t w0, int8x16_t w1, int8x16_t x0,
                                                   int8x16_t x1) {
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0, x0), w1, x1);
}

/* fp16 at p to f32 with the FCVT instruction (exact, like rwe_f16_to_f32). */
static inline float f16(const uint8_t *p) {
    __fp16 h;
    memcpy(&h, p, sizeof h);
    return (float)h;
}

/* Weight block -> two int8x16 in element order (q4_0: nibble - 8). */
static inline void load_wblock(int fmt, const uint8_t *blk, int8x16_t *w0, int8x16_t *w1) {
    if (fmt == FMT_Q8_0) {
        *w0 = vld1q_s8((const int8_t *)blk + 2);
        *w1 = vld1q_s8((const int8_t *)blk + 18);
        return;
    }
    uint8x16_t q = vld1q_u8(blk + (fmt == FMT_Q4_0 ? 2 : 4));
    int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0f)));
    int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
    int8x16_t off = vdupq_n_s8(fmt == FMT_Q4_0 ? 8 : 0);
    *w0 = vsubq_s8(lo, off);
    *w1 = vsubq_s8(hi, off);
}

static inline __attribute__((always_inline)) void qdot_tile(int fmt, int TT, block_dot_fn dot,
                                                            int64_t nb, const uint8_t *wrow,
                                                            const uint8_t *const *x, float *out) {
    size_t wbs = block_bytes(fmt), xbs = fmt == FMT_Q4_1 ? sizeof(rwe_block_q8_1) : sizeof(rwe_block_q8_0);
    size_t xqs = fmt == FMT_Q4_1 ? 4 : 2;
    float32x4_t acc[RWE_TILE_T];
    float mterm[RWE_TILE_T] = {0};
    for (int t = 0; t < TT; t++)
        acc[t] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = wrow + b * wbs;
        int8x16_t w0, w1;
        load_wblock(fmt, blk, &w0, &w1);
        float dw = f16(blk);
        for (int t = 0; t < TT; t++) {
            const uint8_t *xb = x[t] + b * xbs;
            int8x16_t x0 = vld1q_s8((const int8_t *)(xb + xqs)), x1 = vld1q_s8((const int8_t *)(xb + xqs + 16));
            acc[t] = vfmaq_n_f32(acc[t], vcvtq_f32_s32(dot(w0, w1, x0, x1)), dw * f16(xb));
            if (fmt == FMT_Q4_1)
                mterm[t] += f16(blk + 2) * f16(xb + 2);
        }
    }
    for (int t = 0; t < TT; t++)
        out[t] = vaddvq_f32(acc[t]) + mterm[t];
}

static inline __attribute__((always_inline)) void qmatmul(int fmt, block_dot_fn dot, int64_t cols,
                                                          const void *W, const void *X,
                                                          size_t x_stride, float *Y, int64_t y_stride,
                                                          int64_t T, int64_t r0, int64_t r1) {
    int64_t nb = cols / RWE_QK;
    size_t row_bytes = (size_t)nb * block_bytes(fmt);
    for (int64_t t0 = 0; t0 < T; t0 += RWE_TILE_T) {
        int tt = T - t0 < RWE_TILE_T ? (int)(T - t0) : RWE_TILE_T;
        const uint8_t *x[RWE_TILE_T];
        for (int t = 0; t < tt; t++)
            x[t] = (const uint8_t *)X + (size_t)(t0 + t) * x_stride;
        for (int64_t r = r0; r < r1; r++) {
            float out[RWE_TILE_T];
            const uint8_t *wrow = (const uint8_t *)W + (size_t)r * row_bytes;
            switch (tt) {
            case 1: qdot_tile(fmt, 1, dot, nb, wrow, x, out); break;
            case 2: qdot_tile(fmt, 2, dot, nb, wrow, x, out); break;
            case 3: qdot_tile(fmt, 3, dot, nb, wrow, x, out); break;
            default: qdot_tile(fmt, 4, dot, nb, wrow, x, out); break;
            }
            for (int t = 0; t < tt; t++)
                Y[(t0 + t) * y_stride + r] = out[t];
        }
    }
}

/* ---------------------------------------------- prefill GEMM (dotprod) */

/*
 * With many tokens (T >= RWE_GEMM_MIN_T) qdot_tile spends, per two sdot, a
 * convert, an FMA, a scalar scale product and an fp16 load of the
 * activation's scale, and it unpacks each weight block once per 4 tokens.
 * Here one int32 lane holds one block instead: a superblock is 4
 * consecutive blocks (128 columns), and lane l of vector k holds elements
 * 4k..4k+3 of block l, so eight sdot finish 4 blocks of one row x token
 * pair, and the scales then cost one convert, one multiply and one FMA
 * (q4_1: one more FMA for m * s) per eight sdot.
 * Both operands are repacked into this layout (gemm_pack_sb): the
 * activations once per call, the weights once per block of RWE_GEMM_RB rows,
 * reused by every token of the call.  sdot multiplies signed by signed
 * bytes, so unlike x86's vpdpbusd no offset or bias is needed: q8_0 weights
 * go in as they are, q4_0 as nibble - 8, q4_1 as the nibble with m * s
 * added in float.  Lanes past the row's last block are zero on both sides
 * (d, m and s included), so they add exactly 0.
 * Register tile: GEMM_R rows x GEMM_T tokens = 12 int32 sums + 12 float
 * sums + 3 activation vectors + 1 weight vector = 28 of the 32 q registers.
 * Per superblock it loads 8 x (4 + 3) quant vectors for 96 sdot (qdot_tile:
 * 2 weight + 8 activation vectors and a weight unpack per 8 sdot).  GCC 12
 * keeps the q8_0 / q4_0 tiles entirely in registers; q4_1's extra m and s
 * vectors push 4 float sums to the stack (about 8 accesses per 96 sdot).
 */
#define GEMM_SB 4        /* blocks per superblock: one per int32 lane */
#define GEMM_R 4         /* rows per register tile */
#define GEMM_T 3         /* tokens per register tile */

typedef struct {
    int8_t q[8][16]; /* q[k] lane l: elements 4k..4k+3 of block l */
    float d[4];
    float e[4]; /* activations (q8_1): s = d * sum(qs); weights (q4_1): m; else 0 */
} gsb;

/* o[k] = lane l holds 32-bit word k of v[l] (a 4 x 4 word transpose). */
static inline void transpose_words(const int8x16_t v[4], int8x16_t o[4]) {
    int32x4_t t0 = vtrn1q_s32(vreinterpretq_s32_s8(v[0]), vreinterpretq_s32_s8(v[1]));
    int32x4_t t1 = vtrn2q_s32(vreinterpretq_s32_s8(v[0]), vreinterpretq_s32_s8(v[1]));
    int32x4_t t2 = vtrn1q_s32(vreinterpretq_s32_s8(v[2]), vreinterpretq_s32_s8(v[3]));
    int32x4_t t3 = vtrn2q_s32(vreinterpretq_s32_s8(v[2]), vreinterpretq_s32_s8(v[3]));
    int64x2_t a0 = vreinterpretq_s64_s32(t0), a1 = vreinterpretq_s64_s32(t1);
    int64x2_t a2 = vreinterpretq_s64_s32(t2), a3 = vreinterpretq_s64_s32(t3);
    /* t0 = [v0.w0 v1.w0 v0.w2 v1.w2], t2 the same of v2, v3: their low halves are word 0 */
    o[0] = vreinterpretq_s8_s64(vtrn1q_s64(a0, a2));
    o[1] = vreinterpretq_s8_s64(vtrn1q_s64(a1, a3));
    o[2] = vreinterpretq_s8_s64(vtrn2q_s64(a0, a2));
    o[3] = vreinterpretq_s8_s64(vtrn2q_s64(a1, a3));
}

/* Superblock j of a row of nb blocks into o.  Weights (is_x = 0) are
 * unpacked by load_wblock; activations (q8_0, or q8_1 for q4_1) are two
 * plain loads.  Both keep their second fp16 at byte 2 (q4_1's m, q8_1's s). */
static inline void gemm_pack_sb(int fmt, int is_x, const uint8_t *row, int64_t nb, int64_t j,
                                gsb *o) {
    const size_t bs = !is_x ? block_bytes(fmt)
                            : (fmt == FMT_Q4_1 ? sizeof(rwe_block_q8_1) : sizeof(rwe_block_q8_0));
    const size_t qoff = fmt == FMT_Q4_1 ? 4 : 2;
    int8x16_t lo[GEMM_SB], hi[GEMM_SB]; /* elements 0-15, 16-31 of each block */
    for (int l = 0; l < GEMM_SB; l++) {
        int64_t b = j * GEMM_SB + l;
        o->d[l] = o->e[l] = 0.0f;
        lo[l] = hi[l] = vdupq_n_s8(0);
        if (b >= nb)
            continue;
        const uint8_t *blk = row + (size_t)b * bs;
        if (is_x) {
            lo[l] = vld1q_s8((const int8_t *)(blk + qoff));
            hi[l] = vld1q_s8((const int8_t *)(blk + qoff + 16));
        } else {
            load_wblock(fmt, blk, &lo[l], &hi[l]);
        }
        o->d[l] = f16(blk);
        if (fmt == FMT_Q4_1)
            o->e[l] = f16(blk + 2);
    }
    int8x16_t q[8];
    transpose_words(lo, q);
    transpose_words(hi, q + 4);
    for (int k = 0; k < 8; k++)
        vst1q_s8(o->q[k], q[k]);
}

/* Y[t * y_stride + i] = W row i . X token t for an R x TT tile over nsb
 * superblocks; w[i] / x[t] point at row i's / token t's superblock 0.  The
 * int32 sums restart every superblock: each lane's block has its own scale. */
static inline __attribute__((always_inline)) RWE_DOTPROD void
gemm_tile(int fmt, int R, int TT, int64_t nsb, const gsb *const *w, const gsb *const *x, float *Y,
          int64_t y_stride) {
    float32x4_t f[GEMM_R][GEMM_T];
    RWE_UNROLL_ALL(4)
    for (int i = 0; i < R; i++)
        RWE_UNROLL_ALL(4)
        for (int t = 0; t < TT; t++)
            f[i][t] = vdupq_n_f32(0.0f);
    for (int64_t j = 0; j < nsb; j++) {
        int32x4_t s[GEMM_R][GEMM_T];
        RWE_UNROLL_ALL(4)
        for (int i = 0; i < R; i++)
            RWE_UNROLL_ALL(4)
            for (int t = 0; t < TT; t++)
                s[i][t] = vdupq_n_s32(0);
        RWE_UNROLL_ALL(8)
        for (int k = 0; k < 8; k++) {
            int8x16_t xv[GEMM_T];
            RWE_UNROLL_ALL(4)
            for (int t = 0; t < TT; t++)
                xv[t] = vld1q_s8(x[t][j].q[k]);
            RWE_UNROLL_ALL(4)
            for (int i = 0; i < R; i++) {
                int8x16_t wv = vld1q_s8(w[i][j].q[k]);
                RWE_UNROLL_ALL(4)
                for (int t = 0; t < TT; t++)
                    s[i][t] = vdotq_s32(s[i][t], wv, xv[t]);
            }
        }
        RWE_UNROLL_ALL(4)
        for (int i = 0; i < R; i++) {
            /* (sum * dw) * dx: no per-pair product of scales to keep live */
            float32x4_t wd = vld1q_f32(w[i][j].d);
            RWE_UNROLL_ALL(4)
            for (int t = 0; t < TT; t++) {
                float32x4_t sw = vmulq_f32(vcvtq_f32_s32(s[i][t]), wd);
                f[i][t] = vfmaq_f32(f[i][t], sw, vld1q_f32(x[t][j].d));
                if (fmt == FMT_Q4_1)
                    f[i][t] = vfmaq_f32(f[i][t], vld1q_f32(w[i][j].e), vld1q_f32(x[t][j].e));
            }
        }
    }
    RWE_UNROLL_ALL(4)
    for (int i = 0; i < R; i++)
        RWE_UNROLL_ALL(4)
        for (int t = 0; t < TT; t++)
            Y[t * y_stride + i] = vaddvq_f32(f[i][t]);
}

/* rr (<= GEMM_R) rows x tt (<= GEMM_T) tokens: full-height tiles when rr is
 * GEMM_R, else one row at a time (only a range's last rows). */
static inline __attribute__((always_inline)) RWE_DOTPROD void
gemm_tiles(int fmt, int rr, int tt, int64_t nsb, const gsb *const *w, const gsb *const *x, float *y,
          int64_t y_stride) {
    _Static_assert(GEMM_T == 3, "the tile sizes below are 3, 2 and 1 tokens");
    const int R = rr == GEMM_R ? GEMM_R : 1;
    for (int i = 0; i < rr; i += R) {
        if (R == GEMM_R && tt == 3)
            gemm_tile(fmt, GEMM_R, 3, nsb, w + i, x, y + i, y_stride);
        else if (R == GEMM_R && tt == 2)
            gemm_tile(fmt, GEMM_R, 2, nsb, w + i, x, y + i, y_stride);
        else if (R == GEMM_R)
            gemm_tile(fmt, GEMM_R, 1, nsb, w + i, x, y + i, y_stride);
        else if (tt == 3)
            gemm_tile(fmt, 1, 3, nsb, w + i, x, y + i, y_stride);
        else if (tt == 2)
            gemm_tile(fmt, 1, 2, nsb, w + i, x, y + i, y_stride);
        else
            gemm_tile(fmt, 1, 1, nsb, w + i, x, y + i, y_stride);
    }
}

/* gemm_loops.h's pieces: activations and weights share the superblock
 * packing; (T + RWE_GEMM_RB) x 40 bytes of workspace per block. */
typedef gsb gx;
typedef gsb gw;

static inline void gemm_pack_x(int fmt, const uint8_t *x, int64_t nb, int64_t j, gx *o) {
    gemm_pack_sb(fmt, 1, x, nb, j, o);
}

static inline void gemm_pack_w(int fmt, const uint8_t *w, int64_t nb, int64_t j, gw *o) {
    gemm_pack_sb(fmt, 0, w, nb, j, o);
}

#define RWE_GEMM_ATTR RWE_DOTPROD
#include "gemm_loops.h"

#define RWE_MATMUL_ARGS                                                                        \
    int64_t cols, const void *W, const void *X, size_t x_stride, float *Y, int64_t y_stride,   \
        int64_t T, int64_t r0, int64_t r1
#define RWE_MATMUL_PASS cols, W, X, x_stride, Y, y_stride, T, r0, r1

static void matmul_q8_0_neon(RWE_MATMUL_ARGS) { qmatmul(FMT_Q8_0, block_dot_neon, RWE_MATMUL_PASS); }
static void matmul_q4_0_neon(RWE_MATMUL_ARGS) { qmatmul(FMT_Q4_0, block_dot_neon, RWE_MATMUL_PASS); }
static void matmul_q4_1_neon(RWE_MATMUL_ARGS) { qmatmul(FMT_Q4_1, block_dot_neon, RWE_MATMUL_PASS); }

/* Decode and short calls keep qmatmul's layout; longer ones take qgemm. */
static inline __attribute__((always_inline)) RWE_DOTPROD void qmatmul_dotprod(int fmt, RWE_MATMUL_ARGS) {
    if (T >= RWE_GEMM_MIN_T && qgemm(fmt, RWE_MATMUL_PASS))
        return;
    qmatmul(fmt, block_dot_sdot, RWE_MATMUL_PASS);
}

static RWE_DOTPROD void matmul_q8_0_dotprod(RWE_MATMUL_ARGS) {
    qmatmul_dotprod(FMT_Q8_0, RWE_MATMUL_PASS);
}
static RWE_DOTPROD void matmul_q4_0_dotprod(RWE_MATMUL_ARGS) {
    qmatmul_dotprod(FMT_Q4_0, RWE_MATMUL_PASS);
}
static RWE_DOTPROD void matmul_q4_1_dotprod(RWE_MATMUL_ARGS) {
    qmatmul_dotprod(FMT_Q4_1, RWE_MATMUL_PASS);
}

/* ---------------------------------------------------- float matmul */

static inline float32x4_t load4_w(int fmt, const void *w, int64_t i) {
    if (fmt == FMT_F32)
        return vld1q_f32((const float *)w + i);
    if (fmt == FMT_F16)
        return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)w + i)));
    return vreinterpretq_f32_u32(vshlq_n_u32(vmovl_u16(vld1_u16((const uint16_t *)w + i)), 16));
}

static inline float load1_w(int fmt, const void *w, int64_t i) {
    if (fmt == FMT_F32)
        return ((const float *)w)[i];
    uint16_t h = ((const uint16_t *)w)[i];
    return fmt == FMT_F16 ? rwe_f16_to_f32(h) : rwe_bf16_to_f32(h);
}

static inline __attribute__((always_inline)) void fdot_tile(int fmt, int TT, int64_t n, const void *w,
                                                            const float *const *x, float *out) {
    float32x4_t acc[RWE_TILE_T];
    for (int t = 0; t < TT; t++)
        acc[t] = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t wv = load4_w(fmt, w, i);
        for (int t = 0; t < TT; t++)
            acc[t] = vfmaq_f32(acc[t], wv, vld1q_f32(x[t] + i));
    }
    for (int t = 0; t < TT; t++) {
        out[t] = vaddvq_f32(acc[t]);
        for (int64_t j = i; j < n; j++)
            out[t] += load1_w(fmt, w, j) * x[t][j];
    }
}

static inline __attribute__((always_inline)) void fmatmul(int fmt, RWE_MATMUL_ARGS) {
    size_t row_bytes = (size_t)cols * (fmt == FMT_F32 ? 4 : 2);
    RWE_FLOAT_TILES(fmt);
}

static void matmul_f32_neon(RWE_MATMUL_ARGS) { fmatmul(FMT_F32, RWE_MATMUL_PASS); }
static void matmul_f16_neon(RWE_MATMUL_ARGS) { fmatmul(FMT_F16, RWE_MATMUL_PASS); }
static void matmul_bf16_neon(RWE_MATMUL_ARGS) { fmatmul(FMT_BF16, RWE_MATMUL_PASS); }

/* ------------------------------------------------------------- wkv5 */

/* One head, one token, N % 4 == 0, 4 value channels j per vector; the bonus
 * term is rank one, as in x86_avx2.c:
 *   out[j] = a v[j] + sum_i r[i] S[i][j],  a = sum_i r[i] u[i] k[i]
 *   S[i][j] = k[i] v[j] + w[i] S[i][j] */
static void wkv5_head_neon(int64_t N, const float *r, const float *k, const float *v,
                           const float *w, const float *u, float *S, float *out) {
    float a = 0.0f;
    for (int64_t j = 0; j < N; j++)
        out[j] = 0.0f;
    for (int64_t i = 0; i < N; i++) {
        float *Si = S + i * N;
        a += r[i] * u[i] * k[i];
        for (int64_t j = 0; j < N; j += 4) {
            float32x4_t vj = vld1q_f32(v + j), s = vld1q_f32(Si + j);
            vst1q_f32(out + j, vfmaq_n_f32(vld1q_f32(out + j), s, r[i]));
            vst1q_f32(Si + j, vfmaq_n_f32(vmulq_n_f32(s, w[i]), vj, k[i]));
        }
    }
    for (int64_t j = 0; j < N; j += 4)
        vst1q_f32(out + j, vfmaq_n_f32(vld1q_f32(out + j), vld1q_f32(v + j), a));
}

static void wkv5_neon(int64_t T, int64_t H, int64_t N, int64_t ld, const float *r, const float *k,
                      const float *v, const float *w, const float *u, float *S, float *out) {
    if (N % 4 != 0) {
        rwe_wkv5_ref(T, H, N, ld, r, k, v, w, u, S, out);
        return;
    }
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            int64_t o = t * ld + h * N;
            wkv5_head_neon(N, r + o, k + o, v + o, w + h * N, u + h * N, S + h * N * N, out + o);
        }
}

/* ------------------------------------------- norms and elementwise steps */

/* vec_ops.h's mapping: 4 f32 lanes (NEON's max and min propagate NaN). */
typedef float32x4_t vec_t;
#define VEC_N 4
#define VEC_LOAD(p) vld1q_f32(p)
#define VEC_STORE(p, v) vst1q_f32(p, v)
#define VEC_SET1(f) vdupq_n_f32(f)
#define VEC_ZERO() vdupq_n_f32(0.0f)
#define VEC_ADD(a, b) vaddq_f32(a, b)
#define VEC_SUB(a, b) vsubq_f32(a, b)
#define VEC_MUL(a, b) vmulq_f32(a, b)
#define VEC_DIV(a, b) vdivq_f32(a, b)
#define VEC_FMA(a, b, c) vfmaq_f32(c, a, b)
#define VEC_FNMA(a, b, c) vfmsq_f32(c, a, b)
#define VEC_NEG(v) vnegq_f32(v)
#define VEC_HSUM(v) vaddvq_f32(v)
#define VEC_RELU(v) vmaxq_f32(v, vdupq_n_f32(0.0f))
#define VEC_CLAMP(v, lo, hi) vminq_f32(vmaxq_f32(v, vdupq_n_f32(lo)), vdupq_n_f32(hi))
#define VEC_ROUND(v) vrndnq_f32(v)
#define VEC_POW2(n) vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23))
#define VEC_FN(name) name##_neon
#define VEC_LINKAGE static
#include "vec_ops.h"

/* Everything but the quantized matmuls, shared by both aarch64 sets. */
#define RWE_NEON_COMMON                                                                       \
    .quantize_row[RWE_TYPE_Q8_0] = quantize_row_q8_0_neon,                                    \
    .quantize_row[RWE_TYPE_Q8_1] = quantize_row_q8_1_neon,                                    \
    .mm[RWE_TYPE_F32] = {.matmul = matmul_f32_neon},                                          \
    .mm[RWE_TYPE_F16] = {.matmul = matmul_f16_neon},                                          \
    .mm[RWE_TYPE_BF16] = {.matmul = matmul_bf16_neon},                                        \
    .wkv5 = wkv5_neon, .layer_norm = layer_norm_neon,                                         \
    .group_norm = group_norm_neon, .token_mix = token_mix_neon,                               \
    .sigmoid_gate = sigmoid_gate_neon, .silu_gate = silu_gate_neon,                           \
    .relu_square = relu_square_neon

const rwe_kernels rwe_kernels_neon = {
    .isa = RWE_ISA_NEON,
    .name = "neon",
    .mm[RWE_TYPE_Q8_0] = {.matmul = matmul_q8_0_neon},
    .mm[RWE_TYPE_Q4_0] = {.matmul = matmul_q4_0_neon},
    .mm[RWE_TYPE_Q4_1] = {.matmul = matmul_q4_1_neon},
    RWE_NEON_COMMON,
};

/* Only the int8 block dot changes; everything else is the neon set's. */
const rwe_kernels rwe_kernels_dotprod = {
    .isa = RWE_ISA_DOTPROD,
    .name = "dotprod",
    .mm[RWE_TYPE_Q8_0] = {.matmul = matmul_q8_0_dotprod},
    .mm[RWE_TYPE_Q4_0] = {.matmul = matmul_q4_0_dotprod},
    .mm[RWE_TYPE_Q4_1] = {.matmul = matmul_q4_1_dotprod},
    RWE_NEON_COMMON,
};

#endif /* __aarch64__ */
