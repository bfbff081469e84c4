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

#include <stdint.h>

#include "blocks.h"

void rwe_quantize_row_q8_0_ref(const float *x, void *y, int64_t n);
void rwe_quantize_row_q8_1_ref(const float *x, void *y, int64_t n);
void rwe_quantize_row_q4_0_ref(const float *x, void *y, int64_t n);
void rwe_quantize_row_q4_1_ref(const float *x, void *y, int64_t n);

void rwe_dequantize_row_q8_0_ref(const void *x, float *y, int64_t n);
void rwe_dequantize_row_q4_0_ref(const void *x, float *y, int64_t n);
void rwe_dequantize_row_q4_1_ref(const void *x, float *y, int64_t n);

#endif
