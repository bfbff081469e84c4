/*
 * Whole-model check of one kernel set through the public ABI only, for
 * targets where the Python extension does not run (aarch64 under qemu-user,
 * tests/test_arm_model.py):
 *
 *   model_check MODEL.gguf ISA TOKENS.i32 (EXPECTED.f32 | --quantized)
 *
 * TOKENS.i32 holds raw int32 token ids; EXPECTED.f32 the reference's logits
 * at every position (raw float32, n_tokens x n_vocab) for a float file;
 * --quantized marks a file of quantized matrices, which has none.
 *
 * 1. Teacher-forced against the ref kernel set loaded beside it: every call
 *    of ISA starts from the ref set's state, in RNN mode (one token per call)
 *    and in sequence mode (chunks of 5 tokens: the small-batch matmul tiles;
 *    chunks of 37: the GEMM path, taken from 8 tokens on, and its remainders).
 *    Per logit row,
 *    rel = max |ISA - ref| / (max - min of the ref row).  Quantized
 *    activations can land on the other side of a rounding boundary after a
 *    last-bit difference, so the budget is statistical, as in
 *    tests/test_c_engine.py: median <= 1e-5, at most 5% of rows above 1e-3,
 *    none above 1e-2.  Within a chunk such a flip persists in the state for
 *    the chunk's later rows, so quantized files (--quantized) get a looser
 *    budget there: median <= 1e-2, none above 5e-2, and the same top token in
 *    95% of rows (a broken kernel is off by 0.1 to 1 of the range).
 * 2. With EXPECTED: ISA free-running, RNN and sequence mode (chunks of 37),
 *    every logit within 1e-4 of the reference's (f32 files).
 * 3. Batched decode: 19 states primed with different prefixes, one token each
 *    through rwe_eval_batch, against 19 rwe_eval calls. Bit for bit where the
 *    GEMM entries a batch of 19 takes are bit-identical to the decode ones
 *    (quantized files on the ref, AVX2 and AVX-512 sets); elsewhere (float
 *    tiles, the NEON GEMMs) they sum in another order, and a last-bit change
 *    can move a quantized activation to the next level (check 1's outliers),
 *    so every row within REL_MAX of its single eval.
 *
 * Prints one line per check, "ok" or "FAIL"; exits 0 only if all pass.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rwkv_edge.h"

#define MEDIAN_MAX 1e-5
#define OUTLIER_REL 1e-3
#define OUTLIER_SHARE 0.05
#define REL_MAX 1e-2
#define LOOSE_MEDIAN_MAX 1e-2 /* quantized files, chunks of several tokens */
#define LOOSE_REL_MAX 5e-2
#define LOOSE_TOP1_MIN 0.95
#define EXPECTED_ABS 1e-4
#define BATCH 19

typedef struct {
    rwe_model *m;
    rwe_model_info info;
} engine;

static int failures;

static void die(const char *what, rwe_status st) {
    fprintf(stderr, "model_check: %s: %s: %s\n", what, rwe_status_name(st), rwe_last_error());
    exit(2);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "model_check: out of memory\n");
        exit(2);
    }
    return p;
}

/* The whole file, and its size in bytes. */
static void *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END)) {
        fprintf(stderr, "model_check: cannot read %s\n", path);
        exit(2);
    }
    long n = ftell(f);
    rewind(f);
    void *p = xmalloc((size_t)n);
    if (n < 0 || fread(p, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "model_check: cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    *size = (size_t)n;
    return p;
}

static rwe_isa isa_named(const char *s) {
    static const char *names[] = {"ref", "avx2", "avx512", "neon", "dotprod"};
    static const rwe_isa isas[] = {RWE_ISA_REF, RWE_ISA_AVX2, RWE_ISA_AVX512, RWE_ISA_NEON,
                                   RWE_ISA_DOTPROD};
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i]))
            return isas[i];
    fprintf(stderr, "model_check: unknown ISA '%s'\n", s);
    exit(2);
}

static engine open_engine(const char *path, uint32_t threads, rwe_isa isa) {
    engine e;
    rwe_status st = rwe_model_load(path, threads, isa, &e.m);
    if (st)
        die("load", st);
    if ((st = rwe_model_get_info(e.m, &e.info)))
        die("info", st);
    return e;
}

/* n tokens from state (advanced in place); every position's logits. */
static void run(engine *e, const int32_t *tok, size_t n, float *state, float *logits) {
    size_t V = e->info.n_vocab, S = e->info.state_len;
    rwe_status st = n == 1 ? rwe_eval(e->m, tok[0], state, S, logits, V)
                           : rwe_eval_sequence(e->m, tok, n, state, S, logits, n * V, 1);
    if (st)
        die(n == 1 ? "eval" : "eval_sequence", st);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, int ok, const char *detail) {
    printf("%-4s %-52s %s\n", ok ? "ok" : "FAIL", what, detail);
    failures += !ok;
}

static size_t argmax(const float *x, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        best = x[i] > x[best] ? i : best;
    return best;
}

/* max |got - want| / (max - min of want) over one logit row (NaN: infinite). */
static double row_rel(const float *got, const float *want, size_t V) {
    float lo = want[0], hi = want[0];
    double d = 0;
    for (size_t v = 0; v < V; v++) {
        lo = want[v] < lo ? want[v] : lo, hi = want[v] > hi ? want[v] : hi;
        double e = fabs((double)got[v] - want[v]);
        d = isnan(got[v]) ? INFINITY : (e > d ? e : d);
    }
    return d / (hi > lo ? hi - lo : 1.0);
}

/* Check 1: ISA teacher-forced against ref, calls of `chunk` tokens. */
static void teacher_forced(engine *ref, engine *isa, const int32_t *tok, size_t n, size_t chunk,
                           int quantized) {
    size_t V = ref->info.n_vocab, S = ref->info.state_len, same_top = 0;
    float *s_ref = xmalloc(S * 4), *s_isa = xmalloc(S * 4);
    float *want = xmalloc(chunk * V * 4), *got = xmalloc(chunk * V * 4);
    double *rel = xmalloc(n * sizeof(double));
    rwe_status st = rwe_state_init(ref->m, s_ref, S);
    if (st)
        die("state_init", st);
    for (size_t t0 = 0; t0 < n; t0 += chunk) {
        size_t c = n - t0 < chunk ? n - t0 : chunk;
        memcpy(s_isa, s_ref, S * 4);
        run(ref, tok + t0, c, s_ref, want);
        run(isa, tok + t0, c, s_isa, got);
        for (size_t r = 0; r < c; r++) {
            rel[t0 + r] = row_rel(got + r * V, want + r * V, V);
            same_top += argmax(got + r * V, V) == argmax(want + r * V, V);
        }
    }
    size_t over = 0;
    for (size_t i = 0; i < n; i++)
        over += rel[i] > OUTLIER_REL;
    qsort(rel, n, sizeof *rel, cmp_double);
    double med = rel[n / 2], max = rel[n - 1], share = (double)over / (double)n;
    double top1 = (double)same_top / (double)n;
    int loose = quantized && chunk > 1;
    int ok = loose ? med <= LOOSE_MEDIAN_MAX && max <= LOOSE_REL_MAX && top1 >= LOOSE_TOP1_MIN
                   : med <= MEDIAN_MAX && share <= OUTLIER_SHARE && max <= REL_MAX;
    char what[96], detail[128];
    snprintf(what, sizeof what, "vs ref, teacher-forced, %zu token%s a call%s", chunk,
             chunk == 1 ? "" : "s", loose ? " (loose)" : "");
    snprintf(detail, sizeof detail, "median %.2g, %.1f%% of rows > %.0e, max %.2g, top-1 %.1f%%",
             med, 100 * share, OUTLIER_REL, max, 100 * top1);
    report(what, ok, detail);
    free(s_ref), free(s_isa), free(want), free(got), free(rel);
}

/* Check 2: ISA free-running against the reference's logits. */
static void against_expected(engine *isa, const int32_t *tok, size_t n, size_t chunk,
                             const float *expected) {
    size_t V = isa->info.n_vocab, S = isa->info.state_len;
    float *state = xmalloc(S * 4), *got = xmalloc(n * V * 4);
    rwe_status st = rwe_state_init(isa->m, state, S);
    if (st)
        die("state_init", st);
    for (size_t t0 = 0; t0 < n; t0 += chunk)
        run(isa, tok + t0, n - t0 < chunk ? n - t0 : chunk, state, got + t0 * V);
    double worst = 0;
    for (size_t i = 0; i < n * V; i++) {
        double e = fabs((double)got[i] - expected[i]);
        worst = isnan(got[i]) ? INFINITY : (e > worst ? e : worst);
    }
    char what[64], detail[64];
    snprintf(what, sizeof what, "vs reference logits, %s", chunk == 1 ? "RNN" : "chunks of 37");
    snprintf(detail, sizeof detail, "max |diff| %.2g (budget %.0e)", worst, EXPECTED_ABS);
    report(what, worst <= EXPECTED_ABS, detail);
    free(state), free(got);
}

/* Check 3: rwe_eval_batch against one rwe_eval per state. */
static void batch_vs_single(engine *e, const int32_t *tok, size_t n, int exact) {
    size_t V = e->info.n_vocab, S = e->info.state_len;
    float *states = xmalloc(BATCH * S * 4), *alone = xmalloc(BATCH * S * 4);
    float *got = xmalloc(BATCH * V * 4), *want = xmalloc(V * 4);
    float *ptr[BATCH];
    int32_t next[BATCH];
    for (size_t b = 0; b < BATCH; b++) {
        ptr[b] = states + b * S;
        rwe_status st = rwe_state_init(e->m, ptr[b], S);
        if (st)
            die("state_init", st);
        run(e, tok, 1 + b % (n < 9 ? n : 9), ptr[b], got); /* prefixes of 1..9 tokens */
        next[b] = tok[(3 * b + 1) % n];
    }
    memcpy(alone, states, BATCH * S * 4);
    rwe_status st = rwe_eval_batch(e->m, next, BATCH, ptr, S, got, BATCH * V);
    if (st)
        die("eval_batch", st);
    double worst = 0;
    size_t differ = 0;
    for (size_t b = 0; b < BATCH; b++) {
        if ((st = rwe_eval(e->m, next[b], alone + b * S, S, want, V)))
            die("eval", st);
        double r = row_rel(got + b * V, want, V);
        worst = r > worst ? r : worst;
        differ += memcmp(got + b * V, want, V * 4) || memcmp(ptr[b], alone + b * S, S * 4);
    }
    char what[64], detail[96];
    snprintf(what, sizeof what, "batch of %d vs one eval each%s", BATCH,
             exact ? " (bit for bit)" : "");
    snprintf(detail, sizeof detail, "%zu of %d rows differ in any bit, max rel %.2g", differ,
             BATCH, worst);
    report(what, exact ? differ == 0 : worst <= REL_MAX, detail);
    free(states), free(alone), free(got), free(want);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: model_check MODEL.gguf ISA TOKENS.i32 (EXPECTED.f32 | --quantized)\n");
        return 2;
    }
    rwe_isa want = isa_named(argv[2]);
    if (!rwe_cpu_supports(want)) {
        printf("SKIP %s: not supported by this CPU\n", argv[2]);
        return 3;
    }
    int quantized = !strcmp(argv[4], "--quantized");
    size_t bytes, ebytes = 0;
    int32_t *tok = read_file(argv[3], &bytes);
    size_t n = bytes / 4;
    engine ref = open_engine(argv[1], 1, RWE_ISA_REF), isa = open_engine(argv[1], 2, want);
    float *expected = quantized ? NULL : read_file(argv[4], &ebytes);
    if (n == 0 || (expected && ebytes != n * ref.info.n_vocab * 4)) {
        fprintf(stderr, "model_check: %zu tokens, %zu bytes of expected logits\n", n, ebytes);
        return 2;
    }
    printf("%s, %zu tokens, isa %s\n", argv[1], n, argv[2]);
    static const size_t chunks[] = {1, 5, 37};
    for (int i = 0; i < 3; i++)
        teacher_forced(&ref, &isa, tok, n, chunks[i], quantized);
    if (expected) {
        against_expected(&isa, tok, n, 1, expected);
        against_expected(&isa, tok, n, 37, expected);
    }
    int neon = want == RWE_ISA_NEON || want == RWE_ISA_DOTPROD;
    batch_vs_single(&isa, tok, n, quantized && !neon);
    rwe_model_free(ref.m), rwe_model_free(isa.m);
    free(tok), free(expected);
    return failures ? 1 : 0;
}
