/*
 * Block formats, defined once. Layouts are byte-compatible with ggml's
 * (GGUF tensor types Q8_0 = 8, Q4_0 = 2, Q4_1 = 3) so files stay readable by
 * standard tools. Every block holds RWE_QK = 32 consecutive elements of a row.
 *
 *   q8_0: x[j] = d * qs[j]                      34 bytes, 8.5 bits/weight
 *   q4_0: x[j] = d * ((nibble_j) - 8)           18 bytes, 4.5 bits/weight
 *   q4_1: x[j] = d * nibble_j + m               20 bytes, 5.0 bits/weight
 *   q8_1: like q8_0 plus s = d * sum(qs)        36 bytes (activations for q4_1)
 * Nibble order (q4_0, q4_1): qs[i] & 0x0F is element i, qs[i] >> 4 is element
 * i + 16, for i in [0, 16).  d, m and s are IEEE fp16.
 */
#ifndef RWE_QUANT_BLOCKS_H
#define RWE_QUANT_BLOCKS_H

#include <stdint.h>

#define RWE_QK 32

typedef struct {
    uint16_t d;          /* fp16 scale */
    int8_t qs[RWE_QK];
} rwe_block_q8_0;

typedef struct {
    uint16_t d;          /* fp16 scale */
    uint16_t s;          /* fp16 d * sum(qs) */
    int8_t qs[RWE_QK];
} rwe_block_q8_1;

typedef struct {
    uint16_t d;          /* fp16 scale */
    uint8_t qs[RWE_QK / 2];
} rwe_block_q4_0;

typedef struct {
    uint16_t d;          /* fp16 scale */
    uint16_t m;          /* fp16 minimum */
    uint8_t qs[RWE_QK / 2];
} rwe_block_q4_1;

_Static_assert(sizeof(rwe_block_q8_0) == 34, "q8_0 block is 34 bytes");
_Static_assert(sizeof(rwe_block_q8_1) == 36, "q8_1 block is 36 bytes");
_Static_assert(sizeof(rwe_block_q4_0) == 18, "q4_0 block is 18 bytes");
_Static_assert(sizeof(rwe_block_q4_1) == 20, "q4_1 block is 20 bytes");

#endif
