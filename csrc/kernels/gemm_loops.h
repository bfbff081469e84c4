/*
 * The quantized GEMM driver, written once for every SIMD set with a GEMM
 * (x86_avx2.c and x86_avx512.c through lanes_loops.h, arm_neon.c's dotprod
 * set): the thread's workspace, the activation rows packed once per call,
 * then the set's tiled rows.  A set's file includes this after defining
 * (fmt is FMT_Q8_0 / FMT_Q4_0 / FMT_Q4_1):
 *   gx, gw           the GEMM's packed activations / weights of one GEMM
 *                    superblock of GEMM_SB blocks
 *   gemm_pack_x(fmt, x, nb, j, gx *o)   GEMM superblock j of an activation row
 *   gemm_pack_w(fmt, w, nb, j, gw *o)   the same of a weight row
 *   gemm_tiles(fmt, rr, tt, nsb, w, x, y, y_stride)
 *                    an rr (<= GEMM_R) rows x tt (<= GEMM_T) tokens tile
 *   RWE_GEMM_ATTR    (optional) a target attribute needed to inline them
 * or, with RWE_GEMM_OWN_ROWS defined, its own gemm_w_bytes(nsb) and
 *   gemm_rows(fmt, cols, W, xs, xsb, Y, y_stride, T, r0, r1, gw *ws)
 * (the AVX-512 set's fold the rows' partial last superblocks).
 */
#ifndef RWE_GEMM_LOOPS_H
#define RWE_GEMM_LOOPS_H

#ifndef RWE_GEMM_ATTR
#define RWE_GEMM_ATTR
#endif

/* Superblocks of n blocks each in a row of nb blocks (the last may be partial). */
static inline int64_t sb_count_of(int64_t nb, int64_t n) { return (nb + n - 1) / n; }

#ifndef RWE_GEMM_OWN_ROWS
/* The weight workspace of gemm_rows: RWE_GEMM_RB rows of nsb superblocks. */
static inline size_t gemm_w_bytes(int64_t nsb) { return (size_t)(RWE_GEMM_RB * nsb) * sizeof(gw); }

/* Y = W X over rows [r0, r1) for T tokens whose packed activations are xs,
 * token t xsb bytes after t - 1: RWE_GEMM_RB rows packed at a time into ws
 * (gemm_w_bytes), then every token tile over them. */
static inline __attribute__((always_inline)) RWE_GEMM_ATTR void
gemm_rows(int fmt, int64_t cols, const void *W, const gx *xs, size_t xsb, float *Y,
          int64_t y_stride, int64_t T, int64_t r0, int64_t r1, gw *ws) {
    const int64_t nb = cols / RWE_QK, nsb = sb_count_of(nb, GEMM_SB);
    const size_t row_bytes = (size_t)nb * block_bytes(fmt);
    for (int64_t rb = r0; rb < r1; rb += RWE_GEMM_RB) {
        int64_t nr = r1 - rb < RWE_GEMM_RB ? r1 - rb : RWE_GEMM_RB;
        for (int64_t i = 0; i < nr; i++) {
            const uint8_t *row = (const uint8_t *)W + (size_t)(rb + i) * row_bytes;
            for (int64_t j = 0; j < nsb; j++)
                gemm_pack_w(fmt, row, nb, j, ws + i * nsb + j);
        }
        for (int64_t t0 = 0; t0 < T; t0 += GEMM_T) {
            int tt = T - t0 < GEMM_T ? (int)(T - t0) : GEMM_T;
            const gx *xt[GEMM_T];
            for (int t = 0; t < tt; t++)
                xt[t] = (const gx *)((const char *)xs + (size_t)(t0 + t) * xsb);
            for (int64_t i = 0; i < nr; i += GEMM_R) {
                const gw *wp[GEMM_R];
                int rr = nr - i < GEMM_R ? (int)(nr - i) : GEMM_R;
                for (int k = 0; k < rr; k++)
                    wp[k] = ws + (i + k) * nsb;
                gemm_tiles(fmt, rr, tt, nsb, wp, xt, Y + t0 * y_stride + rb + i, y_stride);
            }
        }
    }
}
#endif

/* The GEMM over T tokens: packs X itself into the thread's workspace, then
 * the set's tiled rows; returns 0 (nothing done) without workspace memory. */
static inline __attribute__((always_inline)) RWE_GEMM_ATTR int
qgemm(int fmt, int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
      int64_t y_stride, int64_t T, int64_t r0, int64_t r1) {
    const int64_t nb = cols / RWE_QK, nsb = sb_count_of(nb, GEMM_SB);
    gx *xs = rwe_gemm_workspace((size_t)(T * nsb) * sizeof(gx) + gemm_w_bytes(nsb));
    if (!xs)
        return 0;
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < nsb; j++)
            gemm_pack_x(fmt, (const uint8_t *)X + (size_t)t * x_stride, nb, j, xs + t * nsb + j);
    gemm_rows(fmt, cols, W, xs, (size_t)nsb * sizeof(gx), Y, y_stride, T, r0, r1,
              (gw *)(xs + T * nsb));
    return 1;
}

#endif
