/*
 * Scalar conversions: fp16/bf16 <-> f32 (declared in kernels/kernels.h) and
 * the reference block quantizers of quant.h.  Everything here is plain C so
 * it is the yardstick the SIMD kernels are tested against.
 */
#include <math.h>
#include <string.h>

#include "../kernels/kernels.h"
#include "quant.h"

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---------------------------------------------------------------- fp16 */

float rwe_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) /* inf / NaN: keep the payload */
        return f32_from_bits(sign | 0x7f800000u | (man << 13));
    if (exp == 0) { /* zero / subnormal: man * 2^-24, exact in f32 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

/* f32 magnitude below 2^-14 to an f16 subnormal, round to nearest even. */
static uint16_t f16_subnormal(uint32_t ax) {
    if (ax <= 0x33000000u) /* <= 2^-25: rounds to 0 (2^-25 is a tie, 0 is even) */
        return 0;
    uint32_t man = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - (ax >> 23); /* value = man * 2^(e-150) = (man >> shift) * 2^-24 */
    uint32_t h = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1)))
        h++; /* may carry into the smallest normal: still the right encoding */
    return (uint16_t)h;
}

uint16_t rwe_f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN: quiet it, keep the top payload bits */
        return sign | 0x7e00u | (uint16_t)((ax >> 13) & 0x3ffu);
    if (ax >= 0x477ff000u) /* >= 65520 rounds to inf (inf included) */
        return sign | 0x7c00u;
    if (ax < 0x38800000u) /* below 2^-14 */
        return sign | f16_subnormal(ax);
    /* rebias the exponent, then round the 13 dropped bits to nearest even */
    uint32_t r = ax - 0x38000000u;
    r += 0x0fffu + ((r >> 13) & 1u);
    return sign | (uint16_t)(r >> 13);
}

/* ---------------------------------------------------------------- bf16 */

float rwe_bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

uint16_t rwe_f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: truncate, force quiet */
        return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* ------------------------------------------------------- block quantizers */

/* The activation quantizers (q8_0, q8_1) must give defined results for any
 * input, since NaN weights give NaN activations: the scale is taken over the
 * finite values only, and each x * id is clamped to [-127, 127] with a NaN
 * product (NaN input, or inf * 0) giving 0.  So +-inf saturates to +-127
 * (0 in a block with no other nonzero value), and a block so small that
 * 1 / d overflows saturates too (its fp16 d is 0).  The SIMD kernels
 * (kernels/x86_avx2.c, x86_avx512.c, arm_neon.c) follow this bit for bit. */
static float block_amax_finite(const float *x) {
    float amax = 0.0f;
    for (int j = 0; j < RWE_QK; j++) {
        float a = fabsf(x[j]);
        if (a < INFINITY) /* false for inf and NaN */
            amax = fmaxf(amax, a);
    }
    return amax;
}

static int8_t q8_round(float v) {
    v = v == v ? fminf(fmaxf(v, -127.0f), 127.0f) : 0.0f;
    return (int8_t)roundf(v);
}

void rwe_quantize_row_q8_0_ref(const float *x, void *vy, int64_t n) {
    rwe_block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / RWE_QK; b++, x += RWE_QK) {
        float d = block_amax_finite(x) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = rwe_f32_to_f16(d);
        for (int j = 0; j < RWE_QK; j++)
            y[b].qs[j] = q8_round(x[j] * id);
    }
}

void rwe_quantize_row_q8_1_ref(const float *x, void *vy, int64_t n) {
    rwe_block_q8_1 *y = vy;
    for (int64_t b = 0; b < n / RWE_QK; b++, x += RWE_QK) {
        float d = block_amax_finite(x) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < RWE_QK; j++) {
            y[b].qs[j] = q8_round(x[j] * id);
            sum += y[b].qs[j];
        }
        y[b].d = rwe_f32_to_f16(d);
        y[b].s = rwe_f32_to_f16((float)sum * d); /* from the rounded q, as ggml */
    }
}

void rwe_quantize_row_q4_0_ref(const float *x, void *vy, int64_t n) {
    rwe_block_q4_0 *y = vy;
    for (int64_t b = 0; b < n / RWE_QK; b++, x += RWE_QK) {
        float amax = 0.0f, max = 0.0f; /* max keeps the sign: it maps to -8 */
        for (int j = 0; j < RWE_QK; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        float d = max / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = rwe_f32_to_f16(d);
        for (int j = 0; j < RWE_QK / 2; j++) {
            int lo = (int8_t)(x[j] * id + 8.5f);
            int hi = (int8_t)(x[j + RWE_QK / 2] * id + 8.5f);
            lo = lo < 15 ? lo : 15;
            hi = hi < 15 ? hi : 15;
            y[b].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

void rwe_quantize_row_q4_1_ref(const float *x, void *vy, int64_t n) {
    rwe_block_q4_1 *y = vy;
    for (int64_t b = 0; b < n / RWE_QK; b++, x += RWE_QK) {
        float min = x[0], max = x[0];
        for (int j = 1; j < RWE_QK; j++) {
            min = fminf(min, x[j]);
            max = fmaxf(max, x[j]);
        }
        float d = (max - min) / 15.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = rwe_f32_to_f16(d);
        y[b].m = rwe_f32_to_f16(min);
        for (int j = 0; j < RWE_QK / 2; j++) {
            int lo = (int8_t)((x[j] - min) * id + 0.5f);
            int hi = (int8_t)((x[j + RWE_QK / 2] - min) * id + 0.5f);
            lo = lo < 15 ? lo : 15;
            hi = hi < 15 ? hi : 15;
            y[b].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

/* ----------------------------------------------------- block dequantizers */

void rwe_dequantize_row_q8_0_ref(const void *vx, float *y, int64_t n) {
    const rwe_block_q8_0 *x = vx;
    for (int64_t b = 0; b < n / RWE_QK; b++, y += RWE_QK) {
        float d = rwe_f16_to_f32(x[b].d);
        for (int j = 0; j < RWE_QK; j++)
            y[j] = d * (float)x[b].qs[j];
    }
}

void rwe_dequantize_row_q4_0_ref(const void *vx, float *y, int64_t n) {
    const rwe_block_q4_0 *x = vx;
    for (int64_t b = 0; b < n / RWE_QK; b++, y += RWE_QK) {
        float d = rwe_f16_to_f32(x[b].d);
        for (int j = 0; j < RWE_QK / 2; j++) {
            y[j] = d * (float)((x[b].qs[j] & 0x0f) - 8);
            y[j + RWE_QK / 2] = d * (float)((x[b].qs[j] >> 4) - 8);
        }
    }
}

void rwe_dequantize_row_q4_1_ref(const void *vx, float *y, int64_t n) {
    const rwe_block_q4_1 *x = vx;
    for (int64_t b = 0; b < n / RWE_QK; b++, y += RWE_QK) {
        float d = rwe_f16_to_f32(x[b].d);
        float m = rwe_f16_to_f32(x[b].m);
        for (int j = 0; j < RWE_QK / 2; j++) {
            y[j] = d * (float)(x[b].qs[j] & 0x0f) + m;
            y[j + RWE_QK / 2] = d * (float)(x[b].qs[j] >> 4) + m;
        }
    }
}

void rwe_row_to_f32(rwe_type t, const void *x, float *y, int64_t n) {
    const uint16_t *h = x;
    switch (t) {
    case RWE_TYPE_F32: memcpy(y, x, (size_t)n * sizeof(float)); break;
    case RWE_TYPE_F16: for (int64_t i = 0; i < n; i++) y[i] = rwe_f16_to_f32(h[i]); break;
    case RWE_TYPE_BF16: for (int64_t i = 0; i < n; i++) y[i] = rwe_bf16_to_f32(h[i]); break;
    case RWE_TYPE_Q8_0: rwe_dequantize_row_q8_0_ref(x, y, n); break;
    case RWE_TYPE_Q4_0: rwe_dequantize_row_q4_0_ref(x, y, n); break;
    case RWE_TYPE_Q4_1: rwe_dequantize_row_q4_1_ref(x, y, n); break;
    default: break;
    }
}

/* ------------------------------------------------------ lanes layout */

/* Bytes of one block's quants, and of its header (d, and m for q4_1). */
static int lanes_qs_bytes(rwe_type t) { return t == RWE_TYPE_Q8_0 ? 32 : 16; }
static int lanes_head_bytes(rwe_type t) { return t == RWE_TYPE_Q4_1 ? 4 : 2; }

int rwe_lanes_supported(rwe_type t) {
    return t == RWE_TYPE_Q8_0 || t == RWE_TYPE_Q4_0 || t == RWE_TYPE_Q4_1;
}

/* One row, either direction: the block at `blk` and its place in the lanes
 * row are visited in the same order, so packing and unpacking share it. */
static void lanes_row(rwe_type t, int64_t nb, uint8_t *ggml, uint8_t *lanes, int to_lanes) {
    const int qs = lanes_qs_bytes(t), hb = lanes_head_bytes(t), bs = hb + qs;
    const uint32_t flip = t == RWE_TYPE_Q8_0 ? 0x80808080u : 0;
    uint8_t *o = lanes;
    for (int64_t g0 = 0; g0 < nb; g0 += RWE_LANES_GROUP) {
        int64_t m = nb - g0 < RWE_LANES_GROUP ? nb - g0 : RWE_LANES_GROUP;
        for (int64_t b = 0; b < m; b++) { /* d of every block, then m (q4_1) */
            uint8_t *blk = ggml + (size_t)(g0 + b) * (size_t)bs;
            for (int h = 0; h < hb; h += 2) {
                uint8_t *l = o + (size_t)(h / 2) * (size_t)(2 * m) + 2 * b;
                memcpy(to_lanes ? l : blk + h, to_lanes ? blk + h : l, 2);
            }
        }
        o += (size_t)m * (size_t)hb;
        for (int64_t s0 = 0; s0 < m; s0 += RWE_LANES_SB) {
            int n = m - s0 < RWE_LANES_SB ? (int)(m - s0) : RWE_LANES_SB;
            for (int k = 0; k < qs / 4; k++)
                for (int l = 0; l < n; l++) { /* one 4-byte word; q8_0 flips its sign bits */
                    uint8_t *w = ggml + (size_t)(g0 + s0 + l) * (size_t)bs + hb + 4 * k;
                    uint8_t *v = o + 4 * ((size_t)k * (size_t)n + (size_t)l);
                    uint32_t u;
                    memcpy(&u, to_lanes ? w : v, 4);
                    u ^= flip;
                    memcpy(to_lanes ? v : w, &u, 4);
                }
            o += (size_t)n * (size_t)qs;
        }
    }
}

void rwe_lanes_pack(rwe_type t, int64_t cols, const void *src, void *dst, int64_t r0, int64_t r1) {
    size_t rb = rwe_row_bytes(t, cols);
    for (int64_t r = r0; r < r1; r++)
        lanes_row(t, cols / RWE_QK, (uint8_t *)src + (size_t)r * rb, (uint8_t *)dst + (size_t)r * rb, 1);
}

void rwe_lanes_unpack(rwe_type t, int64_t cols, const void *src, void *dst, int64_t r0, int64_t r1) {
    size_t rb = rwe_row_bytes(t, cols);
    for (int64_t r = r0; r < r1; r++)
        lanes_row(t, cols / RWE_QK, (uint8_t *)dst + (size_t)r * rb, (uint8_t *)src + (size_t)r * rb, 0);
}
