/*
 * Kernel tests: every kernel set this CPU runs, checked op by op against the
 * reference set (ref.c); the reference itself is checked against plain
 * dequantize-then-dot and hand-computed vectors.  Not part of the extension:
 * tests/test_c_kernels.py builds it with gcc together with the kernel sources.
 *
 *   test_kernels [ISA ...]      ISA names: ref avx2 avx512 neon dotprod
 *   RWE_TEST_ISA=avx2,ref       same restriction through the environment
 *   test_kernels --list         prints the ISAs compiled in and supported
 * Prints one line per check and "N passed, M failed"; exits 1 on failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/kernels_impl.h"
#include "../quant/quant.h"

/* |got - want| <= RTOL * sum_i |a_i b_i| + ATOL (sum over the exact products). */
#define RTOL_QUANT 2e-5    /* q8_0/q4_0/q4_1: f32 block scales and f32 accumulation */
#define RTOL_FLOAT 5e-5    /* f32/f16/bf16 weights: f32 fma accumulation over 7168 terms */
#define RTOL_Q4_1_NAIVE 1e-3 /* ref vs dequantized: q8_1's s is rounded to fp16 (2^-11) */
#define RTOL_WKV 1e-5      /* per token; the state bound grows with T */
#define RTOL_NORM 1e-4     /* relative to |x - mean| * rstd * |w| + |b| */
#define RTOL_ELEM 4e-7    /* elementwise steps: a SIMD e^x within a few ulp */
#define ATOL_ELEM 1e-12   /* where e^x saturates (the SIMD one clamps at -87, 88) */
#define ATOL 1e-6

static int n_pass, n_fail;

static void report(int ok, const char *isa, const char *what, double worst) {
    printf("%s %-7s %-58s worst err/tol %.3g\n", ok ? "PASS" : "FAIL", isa, what, worst);
    ok ? n_pass++ : n_fail++;
}

/* ------------------------------------------------------------ random */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_u64(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float rng_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)((rng_u64() >> 40) * 0x1p-24);
}

static int rng_int(int lo, int hi) { return lo + (int)(rng_u64() % (uint64_t)(hi - lo + 1)); }

static void *xmalloc(size_t n) {
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}


/* ------------------------------------------------------- conversions */

/* A hardware converter as the independent oracle: F16C on x86, FCVT on aarch64. */
#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("f16c"))) static float hw_h2f(uint16_t h) { return _cvtsh_ss(h); }
__attribute__((target("f16c"))) static uint16_t hw_f2h(float f) {
    return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
static int hw_f16(void) { return rwe_cpu_supports(RWE_ISA_AVX2); }
#elif defined(__aarch64__)
static float hw_h2f(uint16_t h) {
    _Float16 v;
    memcpy(&v, &h, 2);
    return (float)v;
}
static uint16_t hw_f2h(float f) {
    _Float16 v = (_Float16)f;
    uint16_t h;
    memcpy(&h, &v, 2);
    return h;
}
static int hw_f16(void) { return 1; }
#else
static float hw_h2f(uint16_t h) { return rwe_f16_to_f32(h); }
static uint16_t hw_f2h(float f) { return rwe_f32_to_f16(f); }
static int hw_f16(void) { return 0; }
#endif

static uint32_t bits32(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float from_bits32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static int f16_is_nan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff); }

/* Same encoding, or both NaN (quieting a signalling NaN is allowed). */
static int same_f16(uint16_t a, uint16_t b) { return a == b || (f16_is_nan(a) && f16_is_nan(b)); }

static void test_f16_exhaustive(void) {
    int bad_rt = 0, bad_hw = 0, bad_tie = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = rwe_f16_to_f32((uint16_t)h);
        bad_rt += !same_f16(rwe_f32_to_f16(f), (uint16_t)h);
        if (!hw_f16())
            continue;
        float g = hw_h2f((uint16_t)h);
        bad_hw += !(bits32(f) == bits32(g) || (isnan(f) && isnan(g)));
        /* the midpoint to the next encoding (a tie) and its f32 neighbours */
        if ((h & 0x7fff) < 0x7bff) {
            float mid = (f + rwe_f16_to_f32((uint16_t)(h + 1))) / 2;
            float probes[3] = {mid, nextafterf(mid, -INFINITY), nextafterf(mid, INFINITY)};
            for (int i = 0; i < 3; i++)
                bad_tie += !same_f16(rwe_f32_to_f16(probes[i]), hw_f2h(probes[i]));
        }
    }
    report(bad_rt == 0, "-", "fp16: f32(h) -> f16 round trip, all 65536 h", bad_rt);
    if (hw_f16()) {
        report(bad_hw == 0, "-", "fp16 -> f32 vs hardware, all 65536 h", bad_hw);
        report(bad_tie == 0, "-", "f32 -> fp16 vs hardware at every tie +-1 ulp", bad_tie);
        int bad_rand = 0;
        for (int i = 0; i < 1 << 22; i++) {
            float f = from_bits32((uint32_t)rng_u64());
            bad_rand += !same_f16(rwe_f32_to_f16(f), hw_f2h(f));
        }
        report(bad_rand == 0, "-", "f32 -> fp16 vs hardware, 4M random bit patterns", bad_rand);
    }
}

/* Hand-computed encodings (value, expected bits). */
static void test_conversion_vectors(void) {
    static const struct { uint32_t f; uint16_t h; } f16v[] = {
        {0x3f800000, 0x3c00}, /* 1.0 */
        {0x3f801000, 0x3c00}, /* 1 + 2^-11: tie, stays even */
        {0x3f803000, 0x3c02}, /* 1 + 3*2^-11: tie, rounds up to even */
        {0x477fe000, 0x7bff}, /* 65504, the largest finite */
        {0x477fefff, 0x7bff}, /* just below 65520 */
        {0x477ff000, 0x7c00}, /* 65520 rounds to inf */
        {0x33800000, 0x0001}, /* 2^-24, the smallest subnormal */
        {0x33000000, 0x0000}, /* 2^-25: tie between 0 and 2^-24 -> 0 */
        {0x33400000, 0x0001}, /* 1.5 * 2^-25 */
        {0x387fc000, 0x03ff}, /* largest subnormal */
        {0x387fe000, 0x0400}, /* ties up into the smallest normal */
        {0x80000000, 0x8000}, /* -0 */
        {0xff800000, 0xfc00}, /* -inf */
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof f16v / sizeof f16v[0]; i++)
        bad += rwe_f32_to_f16(from_bits32(f16v[i].f)) != f16v[i].h;
    bad += !f16_is_nan(rwe_f32_to_f16(NAN));
    report(bad == 0, "-", "f32 -> fp16 hand-computed vectors", bad);

    static const struct { uint32_t f; uint16_t h; } bfv[] = {
        {0x3f800000, 0x3f80}, {0x3f808000, 0x3f80}, {0x3f818000, 0x3f82},
        {0x3f808001, 0x3f81}, {0x7f7fffff, 0x7f80}, {0x80000000, 0x8000},
        {0x00000001, 0x0000}, {0xff800000, 0xff80},
    };
    bad = 0;
    for (size_t i = 0; i < sizeof bfv / sizeof bfv[0]; i++)
        bad += rwe_f32_to_bf16(from_bits32(bfv[i].f)) != bfv[i].h;
    bad += !isnan(rwe_bf16_to_f32(rwe_f32_to_bf16(from_bits32(0x7f800001))));
    for (uint32_t h = 0; h < 65536; h++)
        if (!isnan(rwe_bf16_to_f32((uint16_t)h)))
            bad += rwe_f32_to_bf16(rwe_bf16_to_f32((uint16_t)h)) != h;
    report(bad == 0, "-", "bf16: hand vectors + all 65536 round trips", bad);
}

static void test_conversions(void) {
    test_f16_exhaustive();
    test_conversion_vectors();
}

/* ------------------------------------------- reference block quantizers */

static void test_ref_quantizers(void) {
    float x[RWE_QK] = {0};
    int bad = 0;
    /* q8_0: x = j - 16 -> d = 16/127 (fp16 0x3008), q = roundf((j-16) * 127/16) */
    for (int j = 0; j < RWE_QK; j++)
        x[j] = (float)(j - 16);
    rwe_block_q8_0 q8;
    rwe_quantize_row_q8_0_ref(x, &q8, RWE_QK);
    bad += q8.d != 0x3008 || q8.qs[0] != -127 || q8.qs[16] != 0 || q8.qs[17] != 8 ||
           q8.qs[18] != 16 || q8.qs[31] != 119;
    /* q8_1 of the same: sum(q) = -127 + ... ; s = fp16(d * sum(q)) */
    rwe_block_q8_1 q81;
    rwe_quantize_row_q8_1_ref(x, &q81, RWE_QK);
    int sum = 0;
    for (int j = 0; j < RWE_QK; j++)
        sum += q81.qs[j];
    bad += memcmp(q81.qs, q8.qs, RWE_QK) != 0 || sum != -127 || q81.s != 0xcc00;
    /* q4_0: max = -8 -> d = 1, q = (int8)(x + 8.5) */
    memset(x, 0, sizeof x);
    x[0] = -8, x[1] = 4, x[16] = 2;
    rwe_block_q4_0 q4;
    rwe_quantize_row_q4_0_ref(x, &q4, RWE_QK);
    bad += q4.d != 0x3c00 || q4.qs[0] != 0xa0 || q4.qs[1] != 0x8c || q4.qs[2] != 0x88;
    /* q4_1: x = j -> d = 31/15 (fp16 0x4022), m = 0, q = (int8)(j * 15/31 + 0.5) */
    for (int j = 0; j < RWE_QK; j++)
        x[j] = (float)j;
    rwe_block_q4_1 q41;
    rwe_quantize_row_q4_1_ref(x, &q41, RWE_QK);
    bad += q41.d != 0x4022 || q41.m != 0 || q41.qs[0] != 0x80 || q41.qs[1] != 0x80 ||
           q41.qs[2] != 0x91 || q41.qs[15] != 0xf7;
    report(bad == 0, "-", "ref quantizers: hand-computed q8_0/q8_1/q4_0/q4_1 blocks", bad);
    /* all-zero blocks: d = 0 and q = 0 (q4_0 stores the zero point 8) */
    memset(x, 0, sizeof x);
    rwe_quantize_row_q8_0_ref(x, &q8, RWE_QK);
    rwe_quantize_row_q4_0_ref(x, &q4, RWE_QK);
    bad = q8.d != 0 || rwe_f16_to_f32(q4.d) != 0.0f || q4.qs[5] != 0x88; /* q4_0: d = -0 */
    for (int j = 0; j < RWE_QK; j++)
        bad += q8.qs[j] != 0;
    report(bad == 0, "-", "ref quantizers: all-zero block -> d = 0, q = 0", bad);
    /* non-finite activations (NaN weights give NaN activations): the scale
     * ignores them, a NaN quantizes to 0 and +-inf saturates to +-127; no
     * float -> int8 conversion of an out-of-range value (undefined behaviour) */
    for (int j = 0; j < RWE_QK; j++)
        x[j] = (float)(j - 16);
    x[1] = NAN, x[2] = INFINITY, x[3] = -INFINITY, x[20] = -NAN;
    rwe_quantize_row_q8_0_ref(x, &q8, RWE_QK);
    rwe_quantize_row_q8_1_ref(x, &q81, RWE_QK);
    bad = q8.d != 0x3008 || q8.qs[0] != -127 || q8.qs[1] != 0 || q8.qs[2] != 127 ||
          q8.qs[3] != -127 || q8.qs[17] != 8 || q8.qs[20] != 0 || q8.qs[31] != 119;
    bad += q81.d != q8.d || memcmp(q81.qs, q8.qs, RWE_QK) != 0;
    /* all non-finite: d = 0, q = 0 (inf * 0 is NaN -> 0) */
    for (int j = 0; j < RWE_QK; j++)
        x[j] = j % 3 == 0 ? NAN : j % 3 == 1 ? INFINITY : -INFINITY;
    rwe_quantize_row_q8_1_ref(x, &q81, RWE_QK);
    bad += q81.d != 0 || q81.s != 0;
    for (int j = 0; j < RWE_QK; j++)
        bad += q81.qs[j] != 0;
    /* amax so small that 1/d overflows to inf: q saturates, never converts inf */
    for (int j = 0; j < RWE_QK; j++)
        x[j] = j == 0 ? 0.0f : (j & 1 ? 1e-38f : -1e-38f);
    rwe_quantize_row_q8_0_ref(x, &q8, RWE_QK);
    bad += q8.d != 0 || q8.qs[0] != 0 || q8.qs[1] != 127 || q8.qs[2] != -127;
    report(bad == 0, "-", "ref quantizers: q8 of NaN/inf/tiny -> defined, saturated", bad);
}

/* ------------------------------------------------ activation quantizers */

/* 224: 7 blocks; 8288: 259 blocks, 3 past the last whole superblock; 16416:
 * 513 blocks, more than one lanes decode chunk (LANES_CHUNK superblocks). */
static const int test_cols[] = {32, 64, 96, 224, 768, 2048, 7168, 8288, 16416};
#define N_COLS ((int)(sizeof test_cols / sizeof test_cols[0]))
static const int test_T[] = {1, 2, 3, 4, 5, 8, 17};
#define N_T ((int)(sizeof test_T / sizeof test_T[0]))

enum { IN_RANDOM, IN_ZERO, IN_MAX, IN_EXACT, IN_TIES, IN_NONFINITE, IN_COUNT };
static const char *const input_names[] = {"random",    "zero", "max",
                                          "exact-int", "ties", "nan-inf-tiny"};

/* f32 inputs for the activation quantizers; "ties" makes x/d land on k + 0.5. */
static void fill_act_f32(float *x, int64_t n, int kind) {
    for (int64_t i = 0; i < n; i++) {
        switch (kind) {
        case IN_RANDOM: x[i] = rng_uniform(-3.0f, 3.0f); break;
        case IN_ZERO: x[i] = 0.0f; break;
        case IN_MAX: x[i] = (i & 1) ? 3.0e38f : -3.0e38f; break;
        case IN_EXACT: x[i] = (float)rng_int(-127, 127); break;
        case IN_TIES: x[i] = i % RWE_QK == 0 ? 127.0f : (float)rng_int(-126, 126) + 0.5f; break;
        default: { /* per block: some NaN/inf among finite, all non-finite, or tiny */
            int64_t blk = i / RWE_QK;
            int r = rng_int(0, 7);
            float v = blk % 4 == 3 ? rng_uniform(-1e-37f, 1e-37f) : rng_uniform(-3.0f, 3.0f);
            if (blk % 4 == 2 || r == 0)
                v = r < 3 ? NAN : r < 5 ? INFINITY : -INFINITY;
            x[i] = v;
            break;
        }
        }
    }
}

/* Activation quants never reach -128: the AVX2 q8_0 matmul multiplies |w|
 * by x with w's sign moved onto it (vpsignb), and an x of -128 has no
 * positive twin. */
static int no_minus_128(const void *row, rwe_type t, int64_t n) {
    for (int64_t b = 0; b < n / RWE_QK; b++) {
        const int8_t *qs = t == RWE_TYPE_Q8_1 ? ((const rwe_block_q8_1 *)row)[b].qs
                                              : ((const rwe_block_q8_0 *)row)[b].qs;
        for (int j = 0; j < RWE_QK; j++)
            if (qs[j] == -128)
                return 0;
    }
    return 1;
}

/* SIMD activation quantizers must match the reference bit for bit, and every
 * kernel set's output stays in [-127, 127] on every input kind. */
static void test_quantize_rows(const rwe_kernels *k) {
    int64_t n = 7168 + 96;
    float *x = xmalloc((size_t)n * 4);
    char *a = xmalloc((size_t)n * 2), *b = xmalloc((size_t)n * 2);
    int same = k->isa != RWE_ISA_REF; /* the reference is checked by hand vectors above */
    for (int kind = 0; kind < IN_COUNT; kind++) {
        char what[96];
        fill_act_f32(x, n, kind);
        memset(a, 0x55, (size_t)n * 2), memset(b, 0x55, (size_t)n * 2);
        k->quantize_row[RWE_TYPE_Q8_0](x, a, n);
        rwe_quantize_row_q8_0_ref(x, b, n);
        int in_range = no_minus_128(a, RWE_TYPE_Q8_0, n);
        snprintf(what, sizeof what, "quantize_row_q8_0 n=%lld %s (bit-exact)", (long long)n, input_names[kind]);
        if (same)
            report(!memcmp(a, b, rwe_row_bytes(RWE_TYPE_Q8_0, n) + 16), k->name, what, 0);
        k->quantize_row[RWE_TYPE_Q8_1](x, a, n);
        rwe_quantize_row_q8_1_ref(x, b, n);
        in_range = in_range && no_minus_128(a, RWE_TYPE_Q8_1, n);
        snprintf(what, sizeof what, "quantize_row_q8_1 n=%lld %s (bit-exact)", (long long)n, input_names[kind]);
        if (same)
            report(!memcmp(a, b, rwe_row_bytes(RWE_TYPE_Q8_1, n) + 16), k->name, what, 0);
        snprintf(what, sizeof what, "quantize_row_q8_0/q8_1 n=%lld %s: no -128", (long long)n,
                 input_names[kind]);
        report(in_range, k->name, what, 0);
    }
    free(x), free(a), free(b);
}

/* ------------------------------------------------------------ matmul */

enum { W_F32, W_F16, W_BF16, W_Q8_0, W_Q4_0, W_Q4_1, W_COUNT };
static const char *const wfmt_names[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"};
static const rwe_type wfmt_types[] = {RWE_TYPE_F32,  RWE_TYPE_F16,  RWE_TYPE_BF16,
                                      RWE_TYPE_Q8_0, RWE_TYPE_Q4_0, RWE_TYPE_Q4_1};

static rwe_matmul_fn matmul_of(const rwe_kernels *k, int f) { return k->mm[wfmt_types[f]].matmul; }

/* One operand: encoded bytes and its exact (dequantized) values. */
typedef struct {
    char *data;
    float *val;       /* rows x cols */
    float *ms;        /* q4_1: per-block m (weights) or s (activations) */
    size_t row_bytes; /* stride between rows of data */
} operand;

/* Set for the second pass over the quantized matmuls of a set that has
 * lanes kernels: W is repacked into the lanes layout (quant.h) and the
 * set's lanes product (mm[type].lanes) runs on it, against the same
 * reference. */
static int g_lanes;

static rwe_matmul_fn lanes_of(const rwe_kernels *k, int f) { return k->mm[wfmt_types[f]].lanes; }

/* Y = W X over rows [r0, r1) of a `rows`-row W, through the set's kernel
 * for the format, or its lanes kernel on a repacked copy under g_lanes. */
static void call_matmul(const rwe_kernels *k, int f, int64_t rows, int64_t cols, const operand *w,
                        const operand *x, float *y, int64_t ys, int64_t T, int64_t r0, int64_t r1) {
    if (!g_lanes || !lanes_of(k, f)) {
        matmul_of(k, f)(cols, w->data, x->data, x->row_bytes, y, ys, T, r0, r1);
        return;
    }
    char *packed = xmalloc(w->row_bytes * (size_t)rows);
    rwe_lanes_pack(wfmt_types[f], cols, w->data, packed, 0, rows);
    lanes_of(k, f)(cols, packed, x->data, x->row_bytes, y, ys, T, r0, r1);
    free(packed);
}

static void encode_float(int f, const float *v, char *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (f == W_F32)
            memcpy(out + 4 * i, &v[i], 4);
        else {
            uint16_t h = f == W_F16 ? rwe_f32_to_f16(v[i]) : rwe_f32_to_bf16(v[i]);
            memcpy(out + 2 * i, &h, 2);
        }
    }
}

/* Quantized block built by hand: d, (m or s) and integer quants. */
static void put_block(int type, char *blk, uint16_t d, uint16_t ms, const int *q) {
    memcpy(blk, &d, 2);
    if (type == RWE_TYPE_Q8_0 || type == RWE_TYPE_Q8_1) {
        int8_t *qs = (int8_t *)(blk + (type == RWE_TYPE_Q8_1 ? 4 : 2));
        int sum = 0;
        for (int j = 0; j < RWE_QK; j++)
            qs[j] = (int8_t)q[j], sum += q[j];
        if (type == RWE_TYPE_Q8_1) {
            uint16_t s = rwe_f32_to_f16(rwe_f16_to_f32(d) * (float)sum);
            memcpy(blk + 2, &s, 2);
        }
        return;
    }
    uint8_t *qs = (uint8_t *)(blk + (type == RWE_TYPE_Q4_1 ? 4 : 2));
    if (type == RWE_TYPE_Q4_1)
        memcpy(blk + 2, &ms, 2);
    for (int j = 0; j < RWE_QK / 2; j++)
        qs[j] = (uint8_t)(q[j] | (q[j + RWE_QK / 2] << 4));
}

/* Hand-built quants for the max and exact inputs: [lo, hi] or the extremes. */
static void hand_block(int type, char *blk, int kind, int is_act, int act_small) {
    int q[RWE_QK], nib = type == RWE_TYPE_Q4_0 || type == RWE_TYPE_Q4_1;
    static const int ext8[3] = {-128, -127, 127};
    for (int j = 0; j < RWE_QK; j++) {
        if (kind == IN_MAX)
            q[j] = nib ? 15 * rng_int(0, 1) : (is_act ? 127 - 254 * rng_int(0, 1) : ext8[rng_int(0, 2)]);
        else
            q[j] = nib ? rng_int(0, 15) : (act_small ? rng_int(-15, 15) : rng_int(-127, 127));
    }
    uint16_t d = kind == IN_MAX ? 0x4800 /* 8.0 */ : 0x3c00 /* 1.0 */;
    uint16_t m = kind == IN_MAX ? (rng_int(0, 1) ? 0x4800 : 0xc800) : 0;
    put_block(type, blk, d, m, q);
}

static void dequant_rows(int type, const char *data, float *val, float *ms, int64_t rows, int64_t cols, size_t stride) {
    for (int64_t r = 0; r < rows; r++) {
        const char *row = data + (size_t)r * stride;
        float *v = val + r * cols;
        for (int64_t b = 0; b < cols / RWE_QK; b++) {
            if (type == RWE_TYPE_Q8_1) {
                const rwe_block_q8_1 *blk = (const rwe_block_q8_1 *)row + b;
                for (int j = 0; j < RWE_QK; j++)
                    v[b * RWE_QK + j] = rwe_f16_to_f32(blk->d) * blk->qs[j];
                ms[r * (cols / RWE_QK) + b] = rwe_f16_to_f32(blk->s);
            } else if (type == RWE_TYPE_Q4_1) {
                const rwe_block_q4_1 *blk = (const rwe_block_q4_1 *)row + b;
                ms[r * (cols / RWE_QK) + b] = rwe_f16_to_f32(blk->m);
            }
        }
        if (type == RWE_TYPE_Q8_0)
            rwe_dequantize_row_q8_0_ref(row, v, cols);
        else if (type == RWE_TYPE_Q4_0)
            rwe_dequantize_row_q4_0_ref(row, v, cols);
        else if (type == RWE_TYPE_Q4_1)
            rwe_dequantize_row_q4_1_ref(row, v, cols);
    }
}

/* rows x cols operand of `type` (weights: a wfmt type; activations: f32/q8_0/q8_1). */
static operand make_operand(int type, int64_t rows, int64_t cols, int kind, int act, int act_small) {
    operand o;
    size_t rb = rwe_row_bytes(type, cols);
    o.row_bytes = act ? rb + 64 : rb; /* padded activation stride: kernels must honour x_stride */
    o.data = xmalloc(o.row_bytes * (size_t)rows);
    o.val = xmalloc((size_t)(rows * cols) * 4);
    o.ms = xmalloc((size_t)(rows * (cols / RWE_QK + 1)) * 4);
    int is_float = type == RWE_TYPE_F32 || type == RWE_TYPE_F16 || type == RWE_TYPE_BF16;
    for (int64_t r = 0; r < rows; r++) {
        float *v = o.val + r * cols;
        char *row = o.data + (size_t)r * o.row_bytes;
        if (is_float) {
            int f = type == RWE_TYPE_F32 ? W_F32 : (type == RWE_TYPE_F16 ? W_F16 : W_BF16);
            static const float maxw[3] = {1e15f, 65504.0f, 1e18f}; /* x: 1e15; sums stay finite */
            for (int64_t i = 0; i < cols; i++)
                v[i] = kind == IN_RANDOM ? rng_uniform(-1, 1)
                     : kind == IN_ZERO   ? 0.0f
                     : kind == IN_MAX    ? (rng_int(0, 1) ? 1 : -1) * (act ? 1e15f : maxw[f])
                                         : (float)rng_int(-8, 8);
            encode_float(f, v, row, cols);
            if (f != W_F32) /* the exact value is the decoded one */
                for (int64_t i = 0; i < cols; i++) {
                    uint16_t h;
                    memcpy(&h, row + 2 * i, 2);
                    v[i] = f == W_F16 ? rwe_f16_to_f32(h) : rwe_bf16_to_f32(h);
                }
            continue;
        }
        if (kind == IN_RANDOM || kind == IN_ZERO) {
            for (int64_t i = 0; i < cols; i++)
                v[i] = kind == IN_ZERO ? 0.0f : rng_uniform(-1, 1) * (float)(1 + r % 3);
            void (*qz)(const float *, void *, int64_t) =
                type == RWE_TYPE_Q8_0 ? rwe_quantize_row_q8_0_ref
                : type == RWE_TYPE_Q8_1 ? rwe_quantize_row_q8_1_ref
                : type == RWE_TYPE_Q4_0 ? rwe_quantize_row_q4_0_ref : rwe_quantize_row_q4_1_ref;
            qz(v, row, cols);
        } else {
            size_t bb = rb / (size_t)(cols / RWE_QK);
            for (int64_t b = 0; b < cols / RWE_QK; b++)
                hand_block(type, row + (size_t)b * bb, kind, act, act_small);
        }
    }
    if (!is_float)
        dequant_rows(type, o.data, o.val, o.ms, rows, cols, o.row_bytes);
    return o;
}

static void free_operand(operand *o) { free(o->data), free(o->val), free(o->ms); }

/* Exact sum, bound sum_i |w_i x_i| (+ |m s| per q4_1 block), of W row r and X row t. */
static void exact_dot(int f, const operand *w, const operand *x, int64_t cols, int64_t r, int64_t t,
                      double *dot, double *abs_sum) {
    const float *wv = w->val + r * cols, *xv = x->val + t * cols;
    double s = 0, a = 0;
    for (int64_t i = 0; i < cols; i++)
        s += (double)wv[i] * xv[i], a += fabs((double)wv[i] * xv[i]);
    if (f == W_Q4_1)
        for (int64_t b = 0; b < cols / RWE_QK; b++)
            a += fabs((double)w->ms[r * (cols / RWE_QK) + b] * x->ms[t * (cols / RWE_QK) + b]);
    *dot = s, *abs_sum = a;
}

#define SENTINEL 1234.5f

/* Worst err/tol of one (format, cols, T, input) case; rows [2, 7) of 9 so the
 * range starts off 0 and leaves a one-row remainder after 2-row tiles. */
static double run_matmul_case(const rwe_kernels *k, int f, const operand *w, const operand *x,
                              int64_t cols, int64_t T, int exact) {
    const int64_t rows = 9, r0 = 2, r1 = 7, ys = rows + 3;
    float *y = xmalloc((size_t)(T * ys) * 4), *yref = xmalloc((size_t)(T * ys) * 4);
    for (int64_t i = 0; i < T * ys; i++)
        y[i] = yref[i] = SENTINEL;
    call_matmul(k, f, rows, cols, w, x, y, ys, T, r0, r1);
    int vs_naive = k->isa == RWE_ISA_REF;
    if (!vs_naive)
        matmul_of(&rwe_kernels_ref, f)(cols, w->data, x->data, x->row_bytes, yref, ys, T, r0, r1);
    double worst = 0;
    for (int64_t t = 0; t < T; t++)
        for (int64_t r = 0; r < rows; r++) {
            float got = y[t * ys + r];
            if (r < r0 || r >= r1) { /* outside the range: untouched */
                worst = got == SENTINEL ? worst : INFINITY;
                continue;
            }
            double dot, abs_sum;
            exact_dot(f, w, x, cols, r, t, &dot, &abs_sum);
            double want = vs_naive ? dot : yref[t * ys + r];
            double rtol = f <= W_BF16 ? RTOL_FLOAT
                        : (vs_naive && f == W_Q4_1 ? RTOL_Q4_1_NAIVE : RTOL_QUANT);
            double err = fabs(got - want), tol = rtol * abs_sum + ATOL;
            if (exact) /* integer sums below 2^24: every order gives the same f32 */
                err = got == (float)want ? 0 : INFINITY;
            if (isnan(got) || err / tol > worst)
                worst = isnan(got) ? INFINITY : err / tol;
        }
    free(y), free(yref);
    return worst;
}

static void test_matmuls(const rwe_kernels *k) {
    for (int f = g_lanes ? W_Q8_0 : 0; f < W_COUNT; f++)
        for (int c = 0; c < N_COLS; c++)
            for (int kind = 0; kind < IN_TIES; kind++) {
                int64_t cols = test_cols[c];
                rwe_type xt = f <= W_BF16 ? RWE_TYPE_F32 : rwe_act_type(wfmt_types[f]);
                operand w = make_operand(wfmt_types[f], 9, cols, kind, 0, 0);
                operand x = make_operand(xt, 17, cols, kind, 1, f == W_Q8_0);
                double worst = 0;
                for (int t = 0; t < N_T; t++) {
                    double e = run_matmul_case(k, f, &w, &x, cols, test_T[t], kind == IN_EXACT);
                    worst = e > worst ? e : worst;
                }
                char what[96];
                snprintf(what, sizeof what, "matmul%s_%s cols=%lld T=1..17 rows=[2,7) %s%s",
                         g_lanes ? "_lanes" : "", wfmt_names[f],
                         (long long)cols, input_names[kind], kind == IN_EXACT ? " (bit-exact)" : "");
                report(worst <= 1.0, k->name, what, worst);
                free_operand(&w), free_operand(&x);
            }
}

/* Long row ranges, checked row by row as run_matmul_case does: decode
 * (T = 1), where the SIMD kernels may read a call's rows as several streams
 * (x86_avx512.c: qdecode_k, lanes_decode and fdecode4 take K rows from K
 * parts of the range once it spans enough bytes; 1025 and 299 rows leave
 * remainders after 2 and 4), and T = 9, where the AVX-512 GEMM
 * repacks 16 rows at a time (blocks of rows with remainders, and 800
 * columns: a partial last superblock of 9 blocks). */
static void test_long_ranges(const rwe_kernels *k) {
    static const int64_t ranges[][3] = {{1027, 1, 1026}, {700, 3, 302}, {129, 0, 129}};
    /* 1152 columns: 36 blocks, 9 groups of 4 (AVX-512 decode) and 2 superblocks
     * of 16 and 4 blocks over (AVX-512 GEMM) */
    static const int64_t cols_of[4] = {1024, 1000, 800, 1152};
    for (int f = g_lanes ? W_Q8_0 : 0; f < W_COUNT; f++)
        for (size_t ci = 0; ci < 4 * sizeof ranges / sizeof ranges[0]; ci++)
            for (int64_t T = 1; T <= 9; T += 8) {
                /* float rows also with a partial vector at the end (1000 = 62 x 16 + 8) */
                int64_t cols = cols_of[ci % 4];
                if ((cols % RWE_QK && f > W_BF16) || (cols == 800 && f <= W_BF16))
                    continue;
                size_t c = ci / 4;
                int64_t rows = ranges[c][0], r0 = ranges[c][1], r1 = ranges[c][2];
                rwe_type xt = f <= W_BF16 ? RWE_TYPE_F32 : rwe_act_type(wfmt_types[f]);
                operand w = make_operand(wfmt_types[f], rows, cols, IN_RANDOM, 0, 0);
                operand x = make_operand(xt, T, cols, IN_RANDOM, 1, f == W_Q8_0);
                float *y = xmalloc((size_t)(rows * T) * 4), *yref = xmalloc((size_t)(rows * T) * 4);
                for (int64_t i = 0; i < rows * T; i++)
                    y[i] = SENTINEL;
                call_matmul(k, f, rows, cols, &w, &x, y, rows, T, r0, r1);
                int vs_naive = k->isa == RWE_ISA_REF; /* as run_matmul_case */
                if (!vs_naive)
                    matmul_of(&rwe_kernels_ref, f)(cols, w.data, x.data, x.row_bytes, yref, rows, T,
                                                   r0, r1);
                double worst = 0;
                for (int64_t t = 0; t < T; t++)
                    for (int64_t r = 0; r < rows; r++) {
                        float got = y[t * rows + r];
                        if (r < r0 || r >= r1) {
                            worst = got == SENTINEL ? worst : INFINITY;
                            continue;
                        }
                        double dot, abs_sum;
                        exact_dot(f, &w, &x, cols, r, t, &dot, &abs_sum);
                        double want = vs_naive ? dot : yref[t * rows + r];
                        double rtol = f <= W_BF16 ? RTOL_FLOAT
                                    : (vs_naive && f == W_Q4_1 ? RTOL_Q4_1_NAIVE : RTOL_QUANT);
                        double e = fabs(got - want) / (rtol * abs_sum + ATOL);
                        worst = isnan(got) ? INFINITY : (e > worst ? e : worst);
                    }
                char what[96];
                snprintf(what, sizeof what, "matmul%s_%s cols=%lld T=%lld rows=[%lld,%lld) of %lld",
                         g_lanes ? "_lanes" : "", wfmt_names[f], (long long)cols, (long long)T, (long long)r0, (long long)r1,
                         (long long)rows);
                report(worst <= 1.0, k->name, what, worst);
                free(y), free(yref), free_operand(&w), free_operand(&x);
            }
}

static rwe_gemm_fn gemm_of(const rwe_kernels *k, int f) { return k->mm[wfmt_types[f]].gemm; }

static void *xmalloc64(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64)) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* One case of test_gemm_act: worst err/tol of matmul_gemm_* against
 * matmul_lanes_* on the same floats (0 or INFINITY when bit-exact is asked).
 * starve: with no GEMM workspace to be had (both take their paths without
 * one, which need not agree bit for bit). */
static double gemm_act_case(const rwe_kernels *k, int f, int64_t cols, int64_t rows, int64_t r0,
                            int64_t r1, int64_t T, int kind, int starve) {
    const rwe_type act = rwe_act_type(wfmt_types[f]);
    const size_t qb = rwe_row_bytes(act, cols), pb = k->gemm_act_bytes(cols) + 64;
    const int64_t ys = rows + 3;
    operand w = make_operand(wfmt_types[f], rows, cols, IN_RANDOM, 0, 0);
    char *wl = xmalloc(w.row_bytes * (size_t)rows), *xp = xmalloc64(pb * (size_t)T);
    operand x = {xmalloc(qb * (size_t)T), xmalloc((size_t)(T * cols) * 4),
                 xmalloc((size_t)(T * (cols / RWE_QK + 1)) * 4), qb};
    float *xf = xmalloc((size_t)(T * cols) * 4);
    float *y = xmalloc((size_t)(T * ys) * 4), *yl = xmalloc((size_t)(T * ys) * 4);
    rwe_lanes_pack(wfmt_types[f], cols, w.data, wl, 0, rows);
    fill_act_f32(xf, T * cols, kind);
    for (int64_t t = 0; t < T; t++) {
        k->quantize_row[act](xf + t * cols, x.data + t * qb, cols);
        k->gemm_act(act, xf + t * cols, xp + (size_t)t * pb, cols);
    }
    dequant_rows(act, x.data, x.val, x.ms, T, cols, qb);
    for (int64_t i = 0; i < T * ys; i++)
        y[i] = yl[i] = SENTINEL;
    if (starve)
        rwe_gemm_workspace_limit(0);
    lanes_of(k, f)(cols, wl, x.data, qb, yl, ys, T, r0, r1);
    gemm_of(k, f)(cols, wl, xp, pb, y, ys, T, r0, r1);
    rwe_gemm_workspace_limit(SIZE_MAX);
    double worst = 0;
    for (int64_t t = 0; t < T; t++)
        for (int64_t r = 0; r < rows; r++) {
            float got = y[t * ys + r], want = yl[t * ys + r];
            double dot, abs_sum, e;
            if (r < r0 || r >= r1 || (T >= RWE_GEMM_MIN_T && !starve)) {
                e = memcmp(&got, &want, 4) ? INFINITY : 0;
            } else if (!memcmp(&got, &want, 4) || (isnan(got) && isnan(want))) {
                e = 0; /* also the "max" inputs, whose fp16 scales overflow */
            } else {
                exact_dot(f, &w, &x, cols, r, t, &dot, &abs_sum);
                e = isnan(got) ? INFINITY : fabs(got - want) / (RTOL_QUANT * abs_sum + ATOL);
            }
            worst = e > worst ? e : worst;
        }
    free(wl), free(xp), free(xf), free(y), free(yl);
    free_operand(&w), free_operand(&x);
    return worst;
}

/* The prefill GEMM over rows packed once (gemm_act, matmul_gemm_*): from
 * the same floats, the set's quantizer and matmul_lanes_* must give the
 * same outputs bit for bit from RWE_GEMM_MIN_T tokens on (both are the GEMM
 * then), within RTOL_QUANT below it; rows outside [r0, r1) stay untouched.
 * The packed rows are 64 bytes further apart than they need be.  The last
 * shapes run again with the GEMM workspace refused (the paths without one). */
static void test_gemm_act(const rwe_kernels *k) {
    static const int64_t shapes[][4] = {/* rows, r0, r1, T */
                                        {9, 2, 7, 17}, {129, 0, 129, 9}, {40, 3, 37, 8},
                                        {9, 2, 7, 3}, {9, 2, 7, 1}};
    static const int kinds[] = {IN_RANDOM, IN_ZERO, IN_MAX, IN_TIES, IN_NONFINITE};
    const size_t n_shapes = sizeof shapes / sizeof shapes[0];
    if (!k->gemm_act)
        return;
    for (int f = W_Q8_0; f < W_COUNT; f++)
        for (int c = 0; c < N_COLS; c++)
            for (size_t s = 0; s < n_shapes + 2; s++) {
                const int64_t *sh = shapes[s < n_shapes ? s : s - n_shapes];
                const int starve = s >= n_shapes;
                double worst = 0;
                for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
                    double e = gemm_act_case(k, f, test_cols[c], sh[0], sh[1], sh[2], sh[3],
                                             kinds[i], starve);
                    worst = e > worst ? e : worst;
                }
                char what[128];
                snprintf(what, sizeof what, "matmul_gemm_%s cols=%d T=%lld rows=[%lld,%lld) of %lld%s",
                         wfmt_names[f], test_cols[c], (long long)sh[3], (long long)sh[1],
                         (long long)sh[2], (long long)sh[0],
                         starve ? " (no workspace)"
                                : sh[3] >= RWE_GEMM_MIN_T ? " (bit-exact)" : "");
                report(worst <= 1.0, k->name, what, worst);
            }
}

/* The lanes layout is a permutation: packing then unpacking gives the
 * bytes back, for whole and partial groups and superblocks, and packing
 * moves bytes (a copy would pass the round trip too). */
static void test_lanes_roundtrip(void) {
    static const int64_t cols_of[] = {32, 512, 768, 800, 1024, 1152, 2048, 7168, 8288};
    for (int f = W_Q8_0; f < W_COUNT; f++)
        for (size_t c = 0; c < sizeof cols_of / sizeof cols_of[0]; c++) {
            int64_t rows = 3, cols = cols_of[c];
            size_t rb = rwe_row_bytes(wfmt_types[f], cols), n = rb * (size_t)rows;
            uint8_t *a = xmalloc(n), *b = xmalloc(n), *back = xmalloc(n);
            for (size_t i = 0; i < n; i++)
                a[i] = (uint8_t)rng_u64();
            rwe_lanes_pack(wfmt_types[f], cols, a, b, 0, rows);
            rwe_lanes_unpack(wfmt_types[f], cols, b, back, 0, rows);
            /* one q4 block is its own lanes row; anything longer moves */
            int moved = memcmp(a, b, n) != 0 || (cols == RWE_QK && f != W_Q8_0);
            char what[96];
            snprintf(what, sizeof what, "lanes layout %s cols=%lld: unpack(pack(w)) == w%s",
                     wfmt_names[f], (long long)cols, moved ? "" : " (pack moved nothing)");
            report(!memcmp(a, back, n) && moved, "ref", what, 0);
            free(a), free(b), free(back);
        }
}

/* --------------------------------------------------------------- wkv5 */

/* Plain double wkv5 over T tokens, optionally on |inputs| to give the bound
 * sum_i |r_i| (|u_i k_i v_j| + |S_ij|) of every output and state element. */
static void wkv5_naive(int64_t T, int64_t H, int64_t N, const float *r, const float *k, const float *v,
                       const float *w, const float *u, double *S, double *out, int absolute) {
#define A(x) (absolute ? fabs((double)(x)) : (double)(x))
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            int64_t o = t * H * N + h * N;
            double *Sh = S + h * N * N;
            for (int64_t j = 0; j < N; j++) {
                double acc = 0;
                for (int64_t i = 0; i < N; i++)
                    acc += A(r[o + i]) * (A(u[h * N + i]) * A(k[o + i]) * A(v[o + j]) + Sh[i * N + j]);
                out[o + j] = acc;
            }
            for (int64_t i = 0; i < N; i++)
                for (int64_t j = 0; j < N; j++)
                    Sh[i * N + j] = A(k[o + i]) * A(v[o + j]) + w[h * N + i] * Sh[i * N + j];
        }
#undef A
}

static void fill(float *x, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++)
        x[i] = rng_uniform(lo, hi);
}

static double wkv5_case(const rwe_kernels *k, int64_t T, int64_t H, int64_t N) {
    int64_t C = H * N, nS = H * N * N;
    float *r = xmalloc((size_t)(T * C) * 4), *kk = xmalloc((size_t)(T * C) * 4), *v = xmalloc((size_t)(T * C) * 4);
    float *w = xmalloc((size_t)C * 4), *u = xmalloc((size_t)C * 4);
    float *S = xmalloc((size_t)nS * 4), *Sref = xmalloc((size_t)nS * 4);
    float *out = xmalloc((size_t)(T * C) * 4), *oref = xmalloc((size_t)(T * C) * 4);
    double *Sd = xmalloc((size_t)nS * 8), *Sa = xmalloc((size_t)nS * 8);
    double *od = xmalloc((size_t)(T * C) * 8), *oa = xmalloc((size_t)(T * C) * 8);
    fill(r, T * C, -1, 1), fill(kk, T * C, -1, 1), fill(v, T * C, -1, 1);
    fill(w, C, 0.5f, 0.999f), fill(u, C, -1, 1), fill(S, nS, -2, 2);
    for (int64_t i = 0; i < nS; i++)
        Sref[i] = S[i], Sd[i] = S[i], Sa[i] = fabs(S[i]);
    wkv5_naive(T, H, N, r, kk, v, w, u, Sa, oa, 1);
    int vs_naive = k->isa == RWE_ISA_REF;
    if (vs_naive)
        wkv5_naive(T, H, N, r, kk, v, w, u, Sd, od, 0);
    else
        rwe_wkv5_ref(T, H, N, C, r, kk, v, w, u, Sref, oref);
    /* heads [1, H) alone first (rows C apart, as a thread's slice of the
     * heads runs): out and state must be those of the whole call below */
    float *Sslice = xmalloc((size_t)nS * 4), *oslice = xmalloc((size_t)(T * C) * 4);
    memcpy(Sslice, S, (size_t)nS * 4);
    k->wkv5(T, H - 1, N, C, r + N, kk + N, v + N, w + N, u + N, Sslice + N * N, oslice + N);
    k->wkv5(T, H, N, C, r, kk, v, w, u, S, out);
    double worst = 0;
    for (int64_t t = 0; t < T; t++)
        if (memcmp(oslice + t * C + N, out + t * C + N, (size_t)((H - 1) * N) * 4))
            worst = INFINITY;
    if (memcmp(Sslice + N * N, S + N * N, (size_t)((H - 1) * N * N) * 4))
        worst = INFINITY;
    free(Sslice), free(oslice);
    for (int64_t i = 0; i < T * C; i++) {
        double want = vs_naive ? od[i] : oref[i];
        double e = fabs(out[i] - want) / (RTOL_WKV * (double)T * oa[i] + ATOL);
        worst = isnan(out[i]) ? INFINITY : (e > worst ? e : worst);
    }
    for (int64_t i = 0; i < nS; i++) {
        double want = vs_naive ? Sd[i] : Sref[i];
        double e = fabs(S[i] - want) / (RTOL_WKV * (double)T * Sa[i] + ATOL);
        worst = isnan(S[i]) ? INFINITY : (e > worst ? e : worst);
    }
    free(r), free(kk), free(v), free(w), free(u), free(S), free(Sref), free(out), free(oref);
    free(Sd), free(Sa), free(od), free(oa);
    return worst;
}

static void test_wkv5(const rwe_kernels *k) {
    static const int64_t Ns[] = {1, 5, 8, 16, 64};
    static const int64_t Ts[] = {1, 3, 17};
    for (size_t n = 0; n < sizeof Ns / sizeof Ns[0]; n++) {
        double worst = 0;
        for (size_t t = 0; t < sizeof Ts / sizeof Ts[0]; t++) {
            double e = wkv5_case(k, Ts[t], 3, Ns[n]);
            worst = e > worst ? e : worst;
        }
        char what[96];
        snprintf(what, sizeof what, "wkv5 H=3 N=%lld T=1,3,17 (out and state; heads 1-2 alone)",
                 (long long)Ns[n]);
        report(worst <= 1.0, k->name, what, worst);
    }
}

/* -------------------------------------------------------------- norms */

/* Naive double layer norm of n elements; also the bound |x-mean|*rstd*|w| + |b|. */
static void layer_norm_naive(const float *x, const float *wt, const float *b, int64_t n, float eps,
                             double *y, double *bound) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; i++)
        mean += x[i];
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++)
        var += (x[i] - mean) * (x[i] - mean);
    double rstd = 1.0 / sqrt(var / (double)n + eps);
    for (int64_t i = 0; i < n; i++) {
        y[i] = (x[i] - mean) * rstd * wt[i] + b[i];
        bound[i] = (fabs(x[i] - mean) + fabs(mean)) * rstd * fabs(wt[i]) + fabs(b[i]);
    }
}

/* group_norm (H groups of N) when H > 0, else layer_norm over N, in place. */
static double norm_case(const rwe_kernels *k, int64_t H, int64_t N) {
    int64_t n = (H > 0 ? H : 1) * N;
    const float eps = H > 0 ? 64e-5f : 1e-5f;
    float *x = xmalloc((size_t)n * 4), *y = xmalloc((size_t)n * 4), *yref = xmalloc((size_t)n * 4);
    float *wt = xmalloc((size_t)n * 4), *b = xmalloc((size_t)n * 4);
    double *yd = xmalloc((size_t)n * 8), *bound = xmalloc((size_t)n * 8);
    fill(x, n, 2.0f, 4.0f), fill(wt, n, -2, 2), fill(b, n, -1, 1); /* mean ~3: two passes matter */
    for (int64_t g = 0; g < (H > 0 ? H : 1); g++)
        layer_norm_naive(x + g * N, wt + g * N, b + g * N, N, eps, yd + g * N, bound + g * N);
    memcpy(y, x, (size_t)n * 4), memcpy(yref, x, (size_t)n * 4);
    if (H > 0) {
        k->group_norm(y, wt, b, H, N, eps);
        rwe_group_norm_ref(yref, wt, b, H, N, eps);
    } else {
        k->layer_norm(y, wt, b, y, N, eps); /* in place */
        rwe_layer_norm_ref(x, wt, b, yref, N, eps);
    }
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double want = k->isa == RWE_ISA_REF ? yd[i] : yref[i];
        double e = fabs(y[i] - want) / (RTOL_NORM * bound[i] + ATOL);
        worst = isnan(y[i]) ? INFINITY : (e > worst ? e : worst);
    }
    free(x), free(y), free(yref), free(wt), free(b), free(yd), free(bound);
    return worst;
}

static void test_norms(const rwe_kernels *k) {
    static const int64_t ln_n[] = {1, 5, 64, 768, 2048, 7168};
    static const int64_t gn_N[] = {1, 5, 8, 64};
    char what[96];
    for (size_t i = 0; i < sizeof ln_n / sizeof ln_n[0]; i++) {
        snprintf(what, sizeof what, "layer_norm n=%lld (in place)", (long long)ln_n[i]);
        double e = norm_case(k, 0, ln_n[i]);
        report(e <= 1.0, k->name, what, e);
    }
    for (size_t i = 0; i < sizeof gn_N / sizeof gn_N[0]; i++) {
        snprintf(what, sizeof what, "group_norm H=4 N=%lld", (long long)gn_N[i]);
        double e = norm_case(k, 4, gn_N[i]);
        report(e <= 1.0, k->name, what, e);
    }
}

/* --------------------------------------------------------- elementwise */

static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }

/* Gate inputs: mostly [-10, 10], some far out where e^x saturates, and the
 * edges of the SIMD e^x's clamp. */
static void fill_gate(float *x, int64_t n) {
    static const float edge[] = {0.0f, 1e-8f, -1e-8f, 87.0f, -87.0f, 88.0f, -88.0f, 87.5f, -87.5f,
                                 100.0f, -100.0f, 0.34657359f, -0.34657359f};
    for (int64_t i = 0; i < n; i++)
        x[i] = rng_int(0, 9) == 0 ? rng_uniform(-100, 100) : rng_uniform(-10, 10);
    for (int64_t i = 0; i < n && i < (int64_t)(sizeof edge / sizeof edge[0]); i++)
        x[(i * 7) % n] = edge[i];
}

/* One op over n elements against double arithmetic; the worst
 * |got - want| / (RTOL_ELEM * bound + ATOL_ELEM), bound the sum of the terms' magnitudes. */
static double elementwise_case(const rwe_kernels *k, int op, int64_t n) {
    float *a = xmalloc((size_t)n * 4), *b = xmalloc((size_t)n * 4), *c = xmalloc((size_t)n * 4);
    float *out = xmalloc((size_t)n * 4);
    fill(a, n, -4, 4), fill(b, n, -4, 4), fill(c, n, 0, 1);
    if (op == 1 || op == 2) fill_gate(op == 1 ? b : a, n); /* r of sigmoid_gate, g of silu_gate */
    double worst = 0;
    if (n > 1) /* x of token_mix, r of sigmoid_gate, g (and y) of silu_gate, x of relu_square */
        (op == 1 ? b : a)[n / 2] = NAN;
    memcpy(out, a, (size_t)n * 4);
    switch (op) {
    case 0: k->token_mix(a, b, c, out, n); break;      /* x, prev, mix */
    case 1: k->sigmoid_gate(out, b, c, n); break;      /* x += sigmoid(r) * y */
    case 2: k->silu_gate(out, a, n); break;            /* y *= g * sigmoid(g), y = g here */
    default: k->relu_square(out, n); break;
    }
    for (int64_t i = 0; i < n; i++) {
        double want, bound;
        if (i == n / 2 && n > 1) { /* a NaN in the op's first input: must come out NaN */
            worst = isnan(out[i]) ? worst : INFINITY;
            continue;
        }
        if (op == 0) {
            double p = (double)a[i] * c[i], q = (double)b[i] * (1.0 - (double)c[i]);
            want = p + q, bound = fabs(p) + fabs(q);
        } else if (op == 1) {
            double g = sigmoid_d(b[i]) * c[i];
            want = a[i] + g, bound = fabs(a[i]) + fabs(g);
        } else if (op == 2) {
            want = (double)a[i] * a[i] * sigmoid_d(a[i]), bound = fabs(want);
        } else {
            want = a[i] > 0 ? (double)a[i] * a[i] : 0.0, bound = want;
        }
        double e = fabs(out[i] - want) / (RTOL_ELEM * bound + ATOL_ELEM);
        worst = isnan(out[i]) ? INFINITY : (e > worst ? e : worst);
    }
    free(a), free(b), free(c), free(out);
    return worst;
}

static void test_elementwise(const rwe_kernels *k) {
    static const char *const names[] = {"token_mix", "sigmoid_gate", "silu_gate", "relu_square"};
    static const int64_t ns[] = {1, 3, 8, 13, 768, 2048, 7173};
    char what[96];
    for (int op = 0; op < 4; op++)
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
            snprintf(what, sizeof what, "%s n=%lld", names[op], (long long)ns[i]);
            double e = elementwise_case(k, op, ns[i]);
            report(e <= 1.0, k->name, what, e);
        }
}

/* ------------------------------------------------------------- main */

static const rwe_isa all_isas[] = {RWE_ISA_REF, RWE_ISA_AVX2, RWE_ISA_AVX512, RWE_ISA_NEON,
                                   RWE_ISA_DOTPROD};
static const char *const isa_names[] = {"ref", "avx2", "avx512", "neon", "dotprod"};

static int usable(int i) { return rwe_kernels_get(all_isas[i]) && rwe_cpu_supports(all_isas[i]); }

/* Requested by argv (non-empty) or RWE_TEST_ISA (comma separated), else all. */
static int requested(int i, int argc, char **argv) {
    const char *env = getenv("RWE_TEST_ISA");
    if (argc > 1) {
        for (int a = 1; a < argc; a++)
            if (!strcmp(argv[a], isa_names[i]))
                return 1;
        return 0;
    }
    if (env && *env) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", env);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ","))
            if (!strcmp(tok, isa_names[i]))
                return 1;
        return 0;
    }
    return 1;
}

int main(int argc, char **argv) {
    int n = (int)(sizeof all_isas / sizeof all_isas[0]);
    if (argc == 2 && !strcmp(argv[1], "--list")) {
        for (int i = 0; i < n; i++)
            if (usable(i))
                printf("%s\n", isa_names[i]);
        return 0;
    }
    test_conversions();
    test_ref_quantizers();
    test_lanes_roundtrip();
    for (int i = 0; i < n; i++) {
        if (!requested(i, argc, argv))
            continue;
        if (!usable(i)) {
            printf("SKIP %-7s not compiled in or not supported by this CPU\n", isa_names[i]);
            continue;
        }
        const rwe_kernels *k = rwe_kernels_get(all_isas[i]);
        test_quantize_rows(k);
        test_matmuls(k);
        test_long_ranges(k);
        if (k->mm[RWE_TYPE_Q4_0].lanes) {
            g_lanes = 1;
            test_matmuls(k);
            test_long_ranges(k);
            g_lanes = 0;
        }
        test_gemm_act(k);
        test_wkv5(k);
        test_norms(k);
        test_elementwise(k);
    }
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
