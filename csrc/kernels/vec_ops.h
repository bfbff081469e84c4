/*
 * The norms and the elementwise steps between the matrices, written once
 * over a small SIMD mapping that a kernel file defines before including
 * this (x86_avx2.c: 8 f32 lanes; arm_neon.c: 4).  The tails (n % VEC_N)
 * go through the ref set; its expf differs from vec_exp by an ulp or two.
 *
 * The mapping (each a macro; v* are vectors, f a float):
 *   vec_t, VEC_N                 the f32 vector type and its lanes
 *   VEC_LOAD(p), VEC_STORE(p, v), VEC_SET1(f), VEC_ZERO()
 *   VEC_ADD, VEC_SUB, VEC_MUL, VEC_DIV (a, b)
 *   VEC_FMA(a, b, c)             a * b + c, one rounding
 *   VEC_FNMA(a, b, c)            c - a * b, one rounding
 *   VEC_NEG(v)                   -v
 *   VEC_HSUM(v)                  the lanes' sum as a float
 *   VEC_RELU(v)                  max(v, 0), a NaN lane staying NaN
 *   VEC_CLAMP(v, lo, hi)         v within [lo, hi], a NaN lane staying NaN
 *   VEC_ROUND(v)                 to the nearest integer (ties to even)
 *   VEC_POW2(n)                  2^n for integral n in [-126, 127]
 *   VEC_FN(name)                 the name a function gets in this set
 *   VEC_LINKAGE                  its linkage (static, or empty to export it)
 */
#ifndef RWE_VEC_OPS_H
#define RWE_VEC_OPS_H

#include <math.h>

static float vec_sum(const float *x, int64_t n) {
    vec_t acc = VEC_ZERO();
    int64_t i = 0;
    for (; i + VEC_N <= n; i += VEC_N)
        acc = VEC_ADD(acc, VEC_LOAD(x + i));
    float s = VEC_HSUM(acc);
    for (; i < n; i++)
        s += x[i];
    return s;
}

/* sum (x[i] - mean)^2 */
static float vec_sqdev(const float *x, int64_t n, float mean) {
    vec_t acc = VEC_ZERO(), m = VEC_SET1(mean);
    int64_t i = 0;
    for (; i + VEC_N <= n; i += VEC_N) {
        vec_t d = VEC_SUB(VEC_LOAD(x + i), m);
        acc = VEC_FMA(d, d, acc);
    }
    float s = VEC_HSUM(acc);
    for (; i < n; i++)
        s += (x[i] - mean) * (x[i] - mean);
    return s;
}

/* Two passes (mean, then squared deviations) like the ref. */
VEC_LINKAGE void VEC_FN(layer_norm)(const float *x, const float *weight, const float *bias,
                                    float *y, int64_t n, float eps) {
    float mean = vec_sum(x, n) / (float)n;
    float rstd = 1.0f / sqrtf(vec_sqdev(x, n, mean) / (float)n + eps);
    vec_t vm = VEC_SET1(mean), vr = VEC_SET1(rstd);
    int64_t i = 0;
    for (; i + VEC_N <= n; i += VEC_N) {
        vec_t xn = VEC_MUL(VEC_SUB(VEC_LOAD(x + i), vm), vr);
        VEC_STORE(y + i, VEC_FMA(xn, VEC_LOAD(weight + i), VEC_LOAD(bias + i)));
    }
    for (; i < n; i++)
        y[i] = (x[i] - mean) * rstd * weight[i] + bias[i];
}

VEC_LINKAGE void VEC_FN(group_norm)(float *x, const float *weight, const float *bias, int64_t H,
                                    int64_t N, float eps) {
    for (int64_t h = 0; h < H; h++)
        VEC_FN(layer_norm)(x + h * N, weight + h * N, bias + h * N, x + h * N, N, eps);
}

/* e^x: x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two so that n ln2
 * is exact), e^r from its degree-7 Taylor polynomial (truncation under 1e-8
 * relative there), 2^n written into the exponent bits.  x is clamped to
 * [-87, 88], where 2^n stays a normal float: the gates below only need e^x
 * to saturate beyond that, and there 1 / (1 + e^-x) is 0 or 1 to within
 * 1e-38 either way. */
static inline vec_t vec_exp(vec_t x) {
    x = VEC_CLAMP(x, -87.0f, 88.0f);
    vec_t n = VEC_ROUND(VEC_MUL(x, VEC_SET1(1.44269504f)));
    vec_t r = VEC_FNMA(n, VEC_SET1(0.693145751953125f), x);
    r = VEC_FNMA(n, VEC_SET1(1.42860677e-6f), r);
    vec_t p = VEC_SET1(1.0f / 5040.0f);
    p = VEC_FMA(p, r, VEC_SET1(1.0f / 720.0f));
    p = VEC_FMA(p, r, VEC_SET1(1.0f / 120.0f));
    p = VEC_FMA(p, r, VEC_SET1(1.0f / 24.0f));
    p = VEC_FMA(p, r, VEC_SET1(1.0f / 6.0f));
    p = VEC_FMA(p, r, VEC_SET1(0.5f));
    p = VEC_FMA(p, r, VEC_SET1(1.0f));
    p = VEC_FMA(p, r, VEC_SET1(1.0f));
    return VEC_MUL(p, VEC_POW2(n));
}

static inline vec_t vec_sigmoid(vec_t x) {
    const vec_t one = VEC_SET1(1.0f);
    return VEC_DIV(one, VEC_ADD(one, vec_exp(VEC_NEG(x))));
}

VEC_LINKAGE void VEC_FN(token_mix)(const float *x, const float *prev, const float *mix,
                                   float *out, int64_t n) {
    const vec_t one = VEC_SET1(1.0f);
    int64_t i = 0;
    for (; i + VEC_N <= n; i += VEC_N) {
        vec_t m = VEC_LOAD(mix + i);
        vec_t p = VEC_MUL(VEC_LOAD(prev + i), VEC_SUB(one, m));
        VEC_STORE(out + i, VEC_FMA(VEC_LOAD(x + i), m, p));
    }
    rwe_token_mix_ref(x + i, prev + i, mix + i, out + i, n - i);
}

VEC_LINKAGE void VEC_FN(sigmoid_gate)(float *x, const float *r, const float *y, int64_t n) {
    int64_t i = 0;
    for (; i + VEC_N <= n; i += VEC_N)
        VEC_STORE(x + i, VEC_FMA(vec_sigmoid(VEC_LOAD(r + i)), VEC_LOAD(y + i), VEC_LOAD(x + i)));
    rwe_sigmoid_gate_ref(x + i, r + i, y + i, n - i);
}

VEC_LINKAGE void VEC_FN(silu_gate)(float *y, const float *g, int64_t n) {
    int64_t i = 0;
    for (; i + VEC_N <= n; i += VEC_N) {
        vec_t gv = VEC_LOAD(g + i);
        VEC_STORE(y + i, VEC_MUL(VEC_LOAD(y + i), VEC_MUL(gv, vec_sigmoid(gv))));
    }
    rwe_silu_gate_ref(y + i, g + i, n - i);
}

VEC_LINKAGE void VEC_FN(relu_square)(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + VEC_N <= n; i += VEC_N) {
        vec_t k = VEC_RELU(VEC_LOAD(x + i));
        VEC_STORE(x + i, VEC_MUL(k, k));
    }
    rwe_relu_square_ref(x + i, n - i);
}

#endif
