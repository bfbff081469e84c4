/*
 * Matmul micro-benchmark (one thread by default): GB/s of weights streamed per kernel.
 *   decode  (T = 1):  weights cycle through ~400 MB of copies, so they come
 *                     from DRAM as in a real model (24 layers x 2048 wide);
 *                     compared with a plain read loop over the same memory.
 *   prefill (T = 16, or RWE_BENCH_T): the same matrices, multiply-adds per second.
 * Build (from the repo root; the shipped flags and sources of csrc/build.py):
 *   gcc $(python3 csrc/build.py cflags shipped) -o /tmp/bench benchmarks/bench_kernels.c \
 *       $(python3 csrc/build.py sources kernels) $(python3 csrc/build.py ldflags shipped)
 *   /tmp/bench [ROWS COLS [MB]] [ISA ...]   (default 7168 2048 400, all ISAs;
 *                                          a small MB keeps the weights in cache)
 *   RWE_BENCH_LANES=1 times the lanes-layout entries (what the engine runs
 *   on x86) instead of the GGML-layout ones.
 *   RWE_BENCH_THREADS=N splits the rows of every matrix (and the plain read)
 *   over N threads, as the engine's pool does (no barrier between matrices).
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>

#include "../csrc/kernels/kernels_impl.h"
#include "../csrc/quant/quant.h"

static size_t TOTAL_BYTES = 400u << 20; /* weights cycled through per pass */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Plain streaming read of n bytes (the bandwidth yardstick). */
#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2"))) static uint64_t read_all(const uint8_t *p, size_t n) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a = _mm256_add_epi64(a, _mm256_loadu_si256((const __m256i *)(p + i)));
        b = _mm256_add_epi64(b, _mm256_loadu_si256((const __m256i *)(p + i + 32)));
        c = _mm256_add_epi64(c, _mm256_loadu_si256((const __m256i *)(p + i + 64)));
        d = _mm256_add_epi64(d, _mm256_loadu_si256((const __m256i *)(p + i + 96)));
    }
    a = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
    return (uint64_t)_mm256_extract_epi64(a, 0) + (uint64_t)_mm256_extract_epi64(a, 3);
}
#else
static uint64_t read_all(const uint8_t *p, size_t n) {
    const uint64_t *q = (const uint64_t *)p;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= n / 8; i += 4)
        s0 += q[i], s1 += q[i + 1], s2 += q[i + 2], s3 += q[i + 3];
    return s0 + s1 + s2 + s3;
}
#endif

/* Valid weight rows: quantized from random floats (real scales, no NaN). */
static void fill_weights(rwe_type type, uint8_t *w, int64_t rows, int64_t cols) {
    float *x = malloc((size_t)cols * 4);
    size_t rb = rwe_row_bytes(type, cols);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++)
            x[i] = (float)rand() / RAND_MAX - 0.5f;
        uint8_t *row = w + (size_t)r * rb;
        if (type == RWE_TYPE_Q8_0) rwe_quantize_row_q8_0_ref(x, row, cols);
        else if (type == RWE_TYPE_Q4_0) rwe_quantize_row_q4_0_ref(x, row, cols);
        else if (type == RWE_TYPE_Q4_1) rwe_quantize_row_q4_1_ref(x, row, cols);
        else for (int64_t i = 0; i < cols; i++) ((uint16_t *)row)[i] = rwe_f32_to_f16(x[i]);
    }
    free(x);
}

/* RWE_BENCH_LANES=1: the quantized matrices in the lanes layout, through
 * the lanes products (mm[type].lanes) the engine uses where the set has them. */
static int lanes_mode(const rwe_kernels *k, rwe_type t) {
    const char *e = getenv("RWE_BENCH_LANES");
    return e && atoi(e) && k->mm[t].lanes;
}

static rwe_matmul_fn pick(const rwe_kernels *k, rwe_type t) {
    if (lanes_mode(k, t))
        return k->mm[t].lanes;
    return k->mm[t].matmul;
}

static int n_threads = 1;

typedef struct {
    rwe_matmul_fn fn;
    const uint8_t *w;
    size_t mat_bytes;
    int copies;
    int64_t rows, cols, T, r0, r1;
    const void *x;
    size_t xs;
    float *y;
} pass_job;

static void *run_pass(void *arg) {
    const pass_job *j = arg;
    for (int c = 0; c < j->copies; c++)
        j->fn(j->cols, j->w + (size_t)c * j->mat_bytes, j->x, j->xs, j->y, j->rows, j->T, j->r0, j->r1);
    return NULL;
}

/* Seconds per pass over all copies with T tokens (best of reps), rows split
 * evenly over n_threads threads. */
static double time_pass(rwe_matmul_fn fn, const uint8_t *w, size_t mat_bytes, int copies, int64_t rows,
                        int64_t cols, const void *x, size_t xs, float *y, int64_t T, int reps) {
    double best = 1e30;
    pass_job jobs[64];
    pthread_t tid[64];
    for (int i = 0; i < n_threads; i++)
        jobs[i] = (pass_job){fn, w, mat_bytes, copies, rows, cols, T, rows * i / n_threads,
                             rows * (i + 1) / n_threads, x, xs, y};
    for (int rep = 0; rep < reps; rep++) {
        double t0 = now();
        for (int i = 1; i < n_threads; i++)
            pthread_create(&tid[i], NULL, run_pass, &jobs[i]);
        run_pass(&jobs[0]);
        for (int i = 1; i < n_threads; i++)
            pthread_join(tid[i], NULL);
        double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    return best;
}

typedef struct {
    const uint8_t *p;
    size_t n;
    uint64_t sum;
} read_job;

static void *run_read(void *arg) {
    read_job *j = arg;
    j->sum = read_all(j->p, j->n);
    return NULL;
}

/* Plain read bandwidth of buf with n_threads threads (best of 5). */
static double read_bandwidth(const uint8_t *buf, size_t n) {
    double best = 1e30;
    read_job jobs[64];
    pthread_t tid[64];
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        for (int i = 0; i < n_threads; i++) {
            jobs[i] = (read_job){buf + n / (size_t)n_threads * (size_t)i, n / (size_t)n_threads, 0};
            if (i)
                pthread_create(&tid[i], NULL, run_read, &jobs[i]);
        }
        run_read(&jobs[0]);
        for (int i = 1; i < n_threads; i++)
            pthread_join(tid[i], NULL);
        double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    return (double)n / best * 1e-9;
}

static void bench_format(const rwe_kernels *k, rwe_type type, const char *name, int64_t rows, int64_t cols) {
    size_t mat = rwe_row_bytes(type, cols) * (size_t)rows;
    int copies = (int)(TOTAL_BYTES / mat) + 1;
    uint8_t *w = malloc(mat * (size_t)copies);
    fill_weights(type, w, rows, cols);
    if (lanes_mode(k, type)) {
        uint8_t *row_major = malloc(mat);
        memcpy(row_major, w, mat);
        rwe_lanes_pack(type, cols, row_major, w, 0, rows);
        free(row_major);
    }
    for (int c = 1; c < copies; c++)
        memcpy(w + (size_t)c * mat, w, mat);
    const char *te = getenv("RWE_BENCH_T");
    const int64_t T = te && atoi(te) > 1 && atoi(te) <= 256 ? atoi(te) : 16;
    rwe_type xt = rwe_act_type(type);
    size_t xs = xt == RWE_TYPE_F32 ? (size_t)cols * 4 : rwe_row_bytes(xt, cols);
    float *xf = malloc((size_t)cols * 4), *y = malloc((size_t)(rows * T) * 4);
    uint8_t *x = malloc(xs * (size_t)T);
    for (int64_t i = 0; i < cols; i++)
        xf[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int64_t t = 0; t < T; t++) {
        if (xt == RWE_TYPE_F32) memcpy(x + (size_t)t * xs, xf, xs);
        else k->quantize_row[xt](xf, x + (size_t)t * xs, cols);
    }
    rwe_matmul_fn fn = pick(k, type);
    double bytes = (double)mat * copies;
    double t1 = time_pass(fn, w, mat, copies, rows, cols, x, xs, y, 1, 5);
    int pcopies = copies < 4 ? copies : 4; /* prefill is compute-bound: fewer copies */
    double t16 = time_pass(fn, w, mat, pcopies, rows, cols, x, xs, y, T, 2);
    printf("%-8s %-5s%s %lldx%lld  decode %6.2f GB/s (%5.2f ms/matrix)   prefill T=%lld %6.1f GMAC/s\n",
           k->name, name, lanes_mode(k, type) ? " lanes" : "", (long long)rows, (long long)cols,
           bytes / t1 * 1e-9, t1 / copies * 1e3, (long long)T, (double)rows * (double)cols * pcopies * T / t16 * 1e-9);
    free(w), free(xf), free(y), free(x);
}

int main(int argc, char **argv) {
    int64_t rows = 7168, cols = 2048;
    int a = 1;
    if (argc > 2 && atoll(argv[1]) > 0) {
        rows = atoll(argv[1]), cols = atoll(argv[2]);
        a = 3;
        if (argc > 3 && atoll(argv[3]) > 0)
            TOTAL_BYTES = (size_t)atoll(argv[3]) << 20, a = 4;
    }
    const char *nt = getenv("RWE_BENCH_THREADS");
    if (nt && atoi(nt) > 0)
        n_threads = atoi(nt) < 64 ? atoi(nt) : 64;
    uint8_t *buf = malloc(TOTAL_BYTES);
    memset(buf, 1, TOTAL_BYTES);
    printf("plain read, %d thread(s): %.2f GB/s\n", n_threads, read_bandwidth(buf, TOTAL_BYTES));
    free(buf);
    static const rwe_isa isas[] = {RWE_ISA_REF, RWE_ISA_AVX2, RWE_ISA_AVX512, RWE_ISA_NEON, RWE_ISA_DOTPROD};
    static const struct { rwe_type t; const char *n; } fmts[] = {
        {RWE_TYPE_Q8_0, "q8_0"}, {RWE_TYPE_Q4_0, "q4_0"}, {RWE_TYPE_Q4_1, "q4_1"}, {RWE_TYPE_F16, "f16"}};
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        const rwe_kernels *k = rwe_kernels_get(isas[i]);
        int wanted = argc <= a;
        for (int j = a; j < argc; j++)
            wanted |= k && !strcmp(argv[j], k->name);
        if (!k || !rwe_cpu_supports(isas[i]) || !wanted)
            continue;
        for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++)
            bench_format(k, fmts[f].t, fmts[f].n, rows, cols);
    }
    return 0;
}
