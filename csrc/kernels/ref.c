/*
 * The reference kernel set: plain scalar C written to read like the math in
 * kernels.h and the RWKV-5 spec (docs/RWKV5_SPEC.md).  Every SIMD kernel is tested against the function of the
 * same op here (the lanes and gemm products through the GGML-block product
 * of their weight type; kernels.h), so clarity beats speed.  Sums accumulate
 * in double, making this the more accurate side of every comparison.
 */
#include <math.h>

#include "../quant/quant.h"
#include "kernels_impl.h"

/* Keep a*b+c as two roundings on every target (aarch64 would fuse them),
 * so the reference gives the same bits everywhere. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#else
#pragma GCC optimize("fp-contract=off")
#endif

/* ------------------------------------------------------- dot products */

float rwe_vec_dot_q8_0_q8_0_ref(int64_t nb, const void *vw, const void *vx) {
    const rwe_block_q8_0 *w = vw, *x = vx;
    double sum = 0.0;
    for (int64_t b = 0; b < nb; b++) {
        int32_t sumi = 0;
        for (int j = 0; j < RWE_QK; j++)
            sumi += w[b].qs[j] * x[b].qs[j];
        sum += (double)sumi * (rwe_f16_to_f32(w[b].d) * rwe_f16_to_f32(x[b].d));
    }
    return (float)sum;
}

float rwe_vec_dot_q4_0_q8_0_ref(int64_t nb, const void *vw, const void *vx) {
    const rwe_block_q4_0 *w = vw;
    const rwe_block_q8_0 *x = vx;
    double sum = 0.0;
    for (int64_t b = 0; b < nb; b++) {
        int32_t sumi = 0;
        for (int j = 0; j < RWE_QK / 2; j++) {
            sumi += ((w[b].qs[j] & 0x0f) - 8) * x[b].qs[j];
            sumi += ((w[b].qs[j] >> 4) - 8) * x[b].qs[j + RWE_QK / 2];
        }
        sum += (double)sumi * (rwe_f16_to_f32(w[b].d) * rwe_f16_to_f32(x[b].d));
    }
    return (float)sum;
}

/* sum_j (dw*q_j + m)(dx*x_j) = dw*dx*sum_j q_j*x_j + m*s, with s = dx*sum_j x_j. */
float rwe_vec_dot_q4_1_q8_1_ref(int64_t nb, const void *vw, const void *vx) {
    const rwe_block_q4_1 *w = vw;
    const rwe_block_q8_1 *x = vx;
    double sum = 0.0;
    for (int64_t b = 0; b < nb; b++) {
        int32_t sumi = 0;
        for (int j = 0; j < RWE_QK / 2; j++) {
            sumi += (w[b].qs[j] & 0x0f) * x[b].qs[j];
            sumi += (w[b].qs[j] >> 4) * x[b].qs[j + RWE_QK / 2];
        }
        sum += (double)sumi * (rwe_f16_to_f32(w[b].d) * rwe_f16_to_f32(x[b].d));
        sum += (double)rwe_f16_to_f32(w[b].m) * rwe_f16_to_f32(x[b].s);
    }
    return (float)sum;
}

static float vec_dot_f32(int64_t n, const void *vw, const void *vx) {
    const float *w = vw, *x = vx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)w[i] * x[i];
    return (float)sum;
}

static float vec_dot_f16(int64_t n, const void *vw, const void *vx) {
    const uint16_t *w = vw;
    const float *x = vx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)rwe_f16_to_f32(w[i]) * x[i];
    return (float)sum;
}

static float vec_dot_bf16(int64_t n, const void *vw, const void *vx) {
    const uint16_t *w = vw;
    const float *x = vx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)rwe_bf16_to_f32(w[i]) * x[i];
    return (float)sum;
}

/* ------------------------------------------------------------ matmul */

/* Y[t, r] = dot(W row r, X row t); n is cols for float dots, blocks otherwise. */
static void matmul_rows(int64_t n, size_t w_row_bytes, float (*dot)(int64_t, const void *, const void *),
                        const void *W, const void *X, size_t x_stride, float *Y, int64_t y_stride,
                        int64_t T, int64_t r0, int64_t r1) {
    for (int64_t t = 0; t < T; t++) {
        const char *x = (const char *)X + (size_t)t * x_stride;
        for (int64_t r = r0; r < r1; r++)
            Y[t * y_stride + r] = dot(n, (const char *)W + (size_t)r * w_row_bytes, x);
    }
}

void rwe_matmul_f32_ref(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                        int64_t y_stride, int64_t T, int64_t r0, int64_t r1) {
    matmul_rows(cols, (size_t)cols * 4, vec_dot_f32, W, X, x_stride, Y, y_stride, T, r0, r1);
}

void rwe_matmul_f16_ref(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                        int64_t y_stride, int64_t T, int64_t r0, int64_t r1) {
    matmul_rows(cols, (size_t)cols * 2, vec_dot_f16, W, X, x_stride, Y, y_stride, T, r0, r1);
}

void rwe_matmul_bf16_ref(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                         int64_t y_stride, int64_t T, int64_t r0, int64_t r1) {
    matmul_rows(cols, (size_t)cols * 2, vec_dot_bf16, W, X, x_stride, Y, y_stride, T, r0, r1);
}

void rwe_matmul_q8_0_ref(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                         int64_t y_stride, int64_t T, int64_t r0, int64_t r1) {
    int64_t nb = cols / RWE_QK;
    matmul_rows(nb, (size_t)nb * sizeof(rwe_block_q8_0), rwe_vec_dot_q8_0_q8_0_ref, W, X,
                x_stride, Y, y_stride, T, r0, r1);
}

void rwe_matmul_q4_0_ref(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                         int64_t y_stride, int64_t T, int64_t r0, int64_t r1) {
    int64_t nb = cols / RWE_QK;
    matmul_rows(nb, (size_t)nb * sizeof(rwe_block_q4_0), rwe_vec_dot_q4_0_q8_0_ref, W, X,
                x_stride, Y, y_stride, T, r0, r1);
}

void rwe_matmul_q4_1_ref(int64_t cols, const void *W, const void *X, size_t x_stride, float *Y,
                         int64_t y_stride, int64_t T, int64_t r0, int64_t r1) {
    int64_t nb = cols / RWE_QK;
    matmul_rows(nb, (size_t)nb * sizeof(rwe_block_q4_1), rwe_vec_dot_q4_1_q8_1_ref, W, X,
                x_stride, Y, y_stride, T, r0, r1);
}

/* -------------------------------------------------------------- wkv5 */

/* One head, one token: out[j] = sum_i r[i] (u[i] k[i] v[j] + S[i][j]),
 * then S[i][j] = k[i] v[j] + w[i] S[i][j]. */
static void wkv5_head(int64_t N, const float *r, const float *k, const float *v, const float *w,
                      const float *u, float *S, float *out) {
    for (int64_t j = 0; j < N; j++) {
        double acc = 0.0;
        for (int64_t i = 0; i < N; i++)
            acc += (double)r[i] * (u[i] * k[i] * v[j] + S[i * N + j]);
        out[j] = (float)acc;
    }
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < N; j++)
            S[i * N + j] = k[i] * v[j] + w[i] * S[i * N + j];
}

void rwe_wkv5_ref(int64_t T, int64_t H, int64_t N, int64_t ld, const float *r, const float *k,
                  const float *v, const float *w, const float *u, float *S, float *out) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            int64_t o = t * ld + h * N;
            wkv5_head(N, r + o, k + o, v + o, w + h * N, u + h * N, S + h * N * N, out + o);
        }
}

/* ------------------------------------------------------------- norms */

/* Mean and 1/sqrt(biased variance + eps) of n elements (two passes). */
static void mean_rstd(const float *x, int64_t n, float eps, float *mean, float *rstd) {
    double sum = 0.0, sq = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += x[i];
    double mu = sum / (double)n;
    for (int64_t i = 0; i < n; i++)
        sq += ((double)x[i] - mu) * ((double)x[i] - mu);
    *mean = (float)mu;
    *rstd = (float)(1.0 / sqrt(sq / (double)n + eps));
}

void rwe_layer_norm_ref(const float *x, const float *weight, const float *bias, float *y,
                        int64_t n, float eps) {
    float mean, rstd;
    mean_rstd(x, n, eps, &mean, &rstd);
    for (int64_t i = 0; i < n; i++)
        y[i] = (x[i] - mean) * rstd * weight[i] + bias[i];
}

void rwe_group_norm_ref(float *x, const float *weight, const float *bias, int64_t H, int64_t N,
                        float eps) {
    for (int64_t h = 0; h < H; h++)
        rwe_layer_norm_ref(x + h * N, weight + h * N, bias + h * N, x + h * N, N, eps);
}

/* ------------------------------------------------------ elementwise */

static float sigmoid_ref(float x) { return 1.0f / (1.0f + expf(-x)); }

void rwe_token_mix_ref(const float *x, const float *prev, const float *mix, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] * mix[i] + prev[i] * (1.0f - mix[i]);
}

void rwe_sigmoid_gate_ref(float *x, const float *r, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        x[i] += sigmoid_ref(r[i]) * y[i];
}

void rwe_silu_gate_ref(float *y, const float *g, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        y[i] *= g[i] * sigmoid_ref(g[i]);
}

/* gcc compiles the compare to a branch that FFN keys (signs a coin toss)
 * mispredict half the time; the SIMD versions use max instead. */
void rwe_relu_square_ref(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float k = x[i] < 0.0f ? 0.0f : x[i]; /* NaN stays NaN, as in torch.relu */
        x[i] = k * k;
    }
}

const rwe_kernels rwe_kernels_ref = {
    .isa = RWE_ISA_REF,
    .name = "ref",
    .quantize_row[RWE_TYPE_Q8_0] = rwe_quantize_row_q8_0_ref,
    .quantize_row[RWE_TYPE_Q8_1] = rwe_quantize_row_q8_1_ref,
    .mm[RWE_TYPE_F32] = {.matmul = rwe_matmul_f32_ref},
    .mm[RWE_TYPE_F16] = {.matmul = rwe_matmul_f16_ref},
    .mm[RWE_TYPE_BF16] = {.matmul = rwe_matmul_bf16_ref},
    .mm[RWE_TYPE_Q8_0] = {.matmul = rwe_matmul_q8_0_ref},
    .mm[RWE_TYPE_Q4_0] = {.matmul = rwe_matmul_q4_0_ref},
    .mm[RWE_TYPE_Q4_1] = {.matmul = rwe_matmul_q4_1_ref},
    .wkv5 = rwe_wkv5_ref,
    .layer_norm = rwe_layer_norm_ref,
    .group_norm = rwe_group_norm_ref,
    .token_mix = rwe_token_mix_ref,
    .sigmoid_gate = rwe_sigmoid_gate_ref,
    .silu_gate = rwe_silu_gate_ref,
    .relu_square = rwe_relu_square_ref,
};
