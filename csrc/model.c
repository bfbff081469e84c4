/*
 * The RWKV-v5 engine: load a GGUF model in place, run tokens through it.
 *
 * Reading order: the structs (shapes in comments), loading (every tensor
 * checked, small vectors precomputed in f32), the forward pass (embed ->
 * per layer time mix + channel mix -> head, exactly RWKV5_SPEC.md section 3),
 * then the public entry points of rwkv_edge.h.
 *
 * Tokens always go through the batched path: a chunk of T tokens runs layer
 * by layer, each matmul over the whole chunk, so one token (rwe_eval) is the
 * T == 1 case of the same code. Every stage is split over the call's thread
 * pool where it is big enough to pay for waking it (run): matmul rows, the
 * per-token steps by token (run_rows), the WKV by head.
 *
 * The model is read-only once loaded (but for the one-time repack). What a
 * call writes lives in an exec context (activations, thread pool, GEMM
 * workspaces) that the model lends to one call at a time, so calls on
 * independent states run concurrently, each on its own threads.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gguf.h"
#include "internal.h"
#include "kernels/kernels.h"
#include "quant/quant.h"
#include "threadpool.h"

#define FILE_VERSION 1        /* rwkv_edge.file_version this loader reads */
#define CHUNK 256             /* tokens per batched chunk (sizes the scratch) */
#define MAX_THREADS 256
#define NAME_LEN 96           /* "blocks.<l>.<suffix>" tensor names */
#define ROW_GRAIN 16          /* matmul rows per chunk come in multiples of this */
#define CHUNKS_PER_THREAD 1   /* matmul row chunks per thread and matrix (mm_plan) */
#define PACKED_CHUNKS_PER_THREAD 4 /* the same over packed rows (prefill; mm_task) */
#define PARALLEL_MIN_WORK (1 << 16) /* multiply-adds below which waking threads costs more */

/* ------------------------------------------------------------------ structs */

/* A weight matrix, used where it lies in the map or in its repacked copy. */
typedef struct {
    const void *data;         /* (rows, cols) row-major, rows in `type` (or its lanes layout) */
    const void *src;          /* GGML rows in the map still to be repacked into data, or NULL */
    rwe_type type;
    rwe_type act;             /* type its input rows are converted to (rwe_act_type) */
    int64_t rows, cols;
    rwe_matmul_fn matmul;
    rwe_gemm_fn gemm;         /* the prefill path over packed rows (gemm_act), or NULL */
} matrix;

typedef struct {
    /* f32 copies of the small tensors, precomputed where the reference does */
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;       /* (C) */
    const float *att_mix_k, *att_mix_v, *att_mix_r;   /* (C) */
    const float *att_mix_g;                           /* (C), NULL without a gate */
    const float *decay;       /* (H, N) w = exp(-exp(time_decay)), per head broadcast over N */
    const float *bonus;       /* (H, N) u = time_faaaa, or exp(time_first) */
    const float *lnx_w, *lnx_b;                       /* (C) GroupNorm affine */
    const float *ffn_mix_k, *ffn_mix_r;               /* (C) */
    const float *time_state;  /* (H, N, N) initial wkv, [head][key i][value j]; NULL = zeros */
    matrix att_r, att_k, att_v, att_g, att_o;         /* (C, C); att_g unused without a gate */
    matrix ffn_k;             /* (F, C) */
    matrix ffn_r;             /* (C, C) */
    matrix ffn_v;             /* (C, F) */
} layer;

/* Activations of one chunk of up to CHUNK tokens, allocated once per model. */
typedef struct {
    float *x;                 /* (T, C) residual stream */
    float *xx;                /* (T, C) LayerNorm output */
    float *xk, *xv, *xr, *xg; /* (T, C) token-shift mixes */
    float *r, *k, *v, *g;     /* (T, C) projections */
    float *y;                 /* (T, C) wkv output, then GroupNorm'ed and gated */
    float *out;               /* (T, C) output of the last matrix of a block */
    float *fk;                /* (T, F) FFN key, then relu^2 */
    void *act[4];             /* (T, C) inputs in their matrix's activation type */
    void *act_f;              /* (T, F) same for the FFN value input */
    int gemm;                 /* this chunk's inputs are packed rows where a matrix has gemm */
} scratch;

/* Everything one call writes besides the caller's state and logits (llama2.c's
 * RunState): lent by the model to one call at a time (acquire_exec). */
typedef struct exec {
    const rwe_model *m;
    scratch s;
    /* the call's states: one for a sequence (every row of a chunk is the
     * next token of it), or one per row for a batch (row t of a chunk is
     * states[t]'s next token); layer is the one running */
    float *const *states;
    int batch;
    uint32_t layer;
    rwe_threadpool *pool;     /* pool_size(pool) threads, the calling one included */
    struct exec *next;        /* in the model's idle list */
} exec;

typedef enum { EMB_F32, EMB_BF16, EMB_F16 } emb_rounding;

struct rwe_model {
    rwe_gguf file;            /* the mapping; every matrix points into it or into `lanes` */
    rwe_model_info info;
    int64_t C, H, N, F, V;
    float ln_eps, gn_eps;
    emb_rounding emb_round;   /* LN(emb) is rounded like the reference (spec 5.3) */
    const rwe_kernels *kern;
    matrix emb;               /* (V, C) */
    matrix head;              /* (V, C) */
    const float *ln0_w, *ln0_b, *lnout_w, *lnout_b;   /* (C) */
    layer *layers;            /* (n_layer) */
    float *params;            /* arena behind every small f32 vector */
    pthread_mutex_t lock;     /* guards idle, n_threads and the repack */
    exec *idle;               /* contexts of finished calls, each with n_threads threads */
    atomic_uint n_threads;    /* threads of each call's pool (rwe_model_set_threads) */
    void *lanes;              /* anonymous map of the repacked matrices, or NULL */
    size_t lanes_bytes;
    atomic_int lanes_pending; /* reserved but not yet filled (repack_all, first eval) */
};

/* ------------------------------------------------------------------ loading */

static int is_float_type(rwe_type t) {
    return t == RWE_TYPE_F32 || t == RWE_TYPE_F16 || t == RWE_TYPE_BF16;
}

/* A (rows, cols) matrix, numpy order, so GGUF ne = [cols, rows]. */
static rwe_status load_matrix(rwe_model *m, const char *name, int64_t rows, int64_t cols,
                              matrix *out) {
    const rwe_gguf_tensor *t = rwe_gguf_find_tensor(&m->file, name);
    if (!t) return rwe_fail(RWE_ERR_FORMAT, "model has no tensor '%s'", name);
    if (t->n_dims != 2 || t->ne[0] != cols || t->ne[1] != rows)
        return rwe_fail(RWE_ERR_SHAPE, "tensor '%s' has shape [%lld, %lld], expected [%lld, %lld]",
                        name, (long long)t->ne[1], (long long)t->ne[0], (long long)rows,
                        (long long)cols);
    out->matmul = rwe_kernels_mm(m->kern, t->type)->matmul;
    if (!out->matmul)
        return rwe_fail(RWE_ERR_FORMAT, "tensor '%s' has type %d, not a matrix type", name,
                        t->type);
    out->data = t->data;
    out->type = t->type;
    out->act = rwe_act_type(t->type);
    out->rows = rows;
    out->cols = cols;
    return RWE_OK;
}

/* n floats of a float tensor whose elements all lie along ne[0] ([C] == [1,1,C]). */
static rwe_status load_vector(rwe_model *m, const char *name, int64_t n, float *dst) {
    const rwe_gguf_tensor *t = rwe_gguf_find_tensor(&m->file, name);
    if (!t) return rwe_fail(RWE_ERR_FORMAT, "model has no tensor '%s'", name);
    if (!is_float_type(t->type))
        return rwe_fail(RWE_ERR_FORMAT,
                        "tensor '%s' has type %d; small tensors must be F32/F16/BF16", name,
                        t->type);
    if (rwe_gguf_nelements(t) != n)
        return rwe_fail(RWE_ERR_SHAPE, "tensor '%s' has %lld elements, expected %lld", name,
                        (long long)rwe_gguf_nelements(t), (long long)n);
    rwe_row_to_f32(t->type, t->data, dst, n);
    return RWE_OK;
}

/* A per-head [H] or per-channel [H, N] vector, broadcast to (H, N). */
static rwe_status load_head_vector(rwe_model *m, const char *name, int per_channel, float *dst) {
    const rwe_gguf_tensor *t = rwe_gguf_find_tensor(&m->file, name);
    if (t && per_channel && (t->ne[0] != m->N || t->ne[1] != m->H))
        return rwe_fail(RWE_ERR_SHAPE, "tensor '%s' must be [%lld, %lld] (per channel) in v5.2",
                        name, (long long)m->H, (long long)m->N);
    if (per_channel) return load_vector(m, name, m->H * m->N, dst);
    rwe_status st = load_vector(m, name, m->H, dst);
    for (int64_t h = m->H - 1; h >= 0 && !st; h--)
        for (int64_t i = 0; i < m->N; i++) dst[h * m->N + i] = dst[h];
    return st;
}

static const char *lname(char *buf, int l, const char *suffix) {
    snprintf(buf, NAME_LEN, "blocks.%d.%s", l, suffix);
    return buf;
}

/* The decay and bonus of layer l, precomputed as the reference does at load. */
static rwe_status load_decay_bonus(rwe_model *m, int l, float *w, float *u) {
    char nm[NAME_LEN];
    int per_channel = m->info.version == 52;
    rwe_status st = load_head_vector(m, lname(nm, l, "att.time_decay"), per_channel, w);
    for (int64_t i = 0; i < m->C && !st; i++) w[i] = expf(-expf(w[i]));
    if (st) return st;
    const rwe_gguf_tensor *fa = rwe_gguf_find_tensor(&m->file, lname(nm, l, "att.time_faaaa"));
    if (fa) /* the raw bonus (v5.1+), per head or per channel */
        return load_head_vector(m, nm, rwe_gguf_nelements(fa) == m->C, u);
    st = load_head_vector(m, lname(nm, l, "att.time_first"), 0, u); /* v5.0: log bonus */
    for (int64_t i = 0; i < m->C && !st; i++) u[i] = expf(u[i]);
    return st;
}

/* time_state (H, N, N) is stored [head][value][key]: the initial S is its transpose. */
static rwe_status load_time_state(rwe_model *m, int l, layer *L) {
    char nm[NAME_LEN];
    const rwe_gguf_tensor *t = rwe_gguf_find_tensor(&m->file, lname(nm, l, "att.time_state"));
    if (!t) return RWE_OK;
    int64_t H = m->H, N = m->N;
    if (t->ne[0] != N || t->ne[1] != N || t->ne[2] != H)
        return rwe_fail(RWE_ERR_SHAPE, "tensor '%s' must be [%lld, %lld, %lld]", nm, (long long)H,
                        (long long)N, (long long)N);
    float *raw = malloc((size_t)(H * N * N) * sizeof(float));
    float *S = malloc((size_t)(H * N * N) * sizeof(float));
    rwe_status st = raw && S ? load_vector(m, nm, H * N * N, raw)
                             : rwe_fail(RWE_ERR_NOMEM, "out of memory for '%s'", nm);
    for (int64_t h = 0; h < H && !st; h++)
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < N; j++) S[(h * N + i) * N + j] = raw[(h * N + j) * N + i];
    free(raw);
    if (st) free(S);
    else L->time_state = S;
    return st;
}

/* Carve n floats off the parameter arena. */
static float *take(float **arena, int64_t n) {
    float *p = *arena;
    *arena += n;
    return p;
}

static rwe_status load_layer_vectors(rwe_model *m, int l, layer *L, float **arena) {
    char nm[NAME_LEN];
    int64_t C = m->C;
    float *v[12];
    static const char *names[12] = {"ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias",
                                    "att.time_mix_k", "att.time_mix_v", "att.time_mix_r",
                                    "att.ln_x.weight", "att.ln_x.bias", "ffn.time_mix_k",
                                    "ffn.time_mix_r", "att.time_mix_g"};
    int n = m->info.version == 50 ? 11 : 12; /* v5.0 has no gate */
    rwe_status st = RWE_OK;
    for (int i = 0; i < n && !st; i++)
        st = load_vector(m, lname(nm, l, names[i]), C, v[i] = take(arena, C));
    if (st) return st;
    L->ln1_w = v[0], L->ln1_b = v[1], L->ln2_w = v[2], L->ln2_b = v[3];
    L->att_mix_k = v[4], L->att_mix_v = v[5], L->att_mix_r = v[6];
    L->lnx_w = v[7], L->lnx_b = v[8], L->ffn_mix_k = v[9], L->ffn_mix_r = v[10];
    L->att_mix_g = n == 12 ? v[11] : NULL;
    float *w = take(arena, C), *u = take(arena, C);
    L->decay = w, L->bonus = u;
    return load_decay_bonus(m, l, w, u);
}

static rwe_status load_layer_matrices(rwe_model *m, int l, layer *L) {
    char nm[NAME_LEN];
    int64_t C = m->C, F = m->F;
    rwe_status st = RWE_OK;
    struct { const char *name; int64_t rows, cols; matrix *dst; } mats[] = {
        {"att.receptance.weight", C, C, &L->att_r}, {"att.key.weight", C, C, &L->att_k},
        {"att.value.weight", C, C, &L->att_v},      {"att.output.weight", C, C, &L->att_o},
        {"ffn.key.weight", F, C, &L->ffn_k},        {"ffn.receptance.weight", C, C, &L->ffn_r},
        {"ffn.value.weight", C, F, &L->ffn_v},      {"att.gate.weight", C, C, &L->att_g},
    };
    int n = m->info.version == 50 ? 7 : 8;
    for (int i = 0; i < n && !st; i++)
        st = load_matrix(m, lname(nm, l, mats[i].name), mats[i].rows, mats[i].cols, mats[i].dst);
    if (!st && n == 7 && rwe_gguf_find_tensor(&m->file, lname(nm, l, "att.gate.weight")))
        st = rwe_fail(RWE_ERR_FORMAT, "a v5.0 model has no gate, but '%s' is present", nm);
    return st;
}

static rwe_status load_weights(rwe_model *m) {
    int64_t C = m->C, V = m->V, L = m->info.n_layer;
    m->layers = calloc((size_t)L, sizeof *m->layers);
    m->params = malloc((size_t)(4 * C + L * 14 * C) * sizeof(float));
    if (!m->layers || !m->params) return rwe_fail(RWE_ERR_NOMEM, "out of memory for the model");
    float *arena = m->params, *g[4];
    static const char *gnames[4] = {"blocks.0.ln0.weight", "blocks.0.ln0.bias", "ln_out.weight",
                                    "ln_out.bias"};
    rwe_status st = RWE_OK;
    for (int i = 0; i < 4 && !st; i++) st = load_vector(m, gnames[i], C, g[i] = take(&arena, C));
    m->ln0_w = g[0], m->ln0_b = g[1], m->lnout_w = g[2], m->lnout_b = g[3];
    if (!st) st = load_matrix(m, "emb.weight", V, C, &m->emb);
    if (!st) st = load_matrix(m, "head.weight", V, C, &m->head);
    for (int l = 0; l < L && !st; l++) {
        st = load_layer_vectors(m, l, &m->layers[l], &arena);
        if (!st) st = load_layer_matrices(m, l, &m->layers[l]);
        if (!st) st = load_time_state(m, l, &m->layers[l]);
    }
    return st;
}

/* Hyper-parameters (rwkv_edge/gguf_schema.py), each range-checked. */
static rwe_status load_hparams(rwe_model *m) {
    const rwe_gguf *f = &m->file;
    char s[32];
    uint32_t fv, v[7];
    static const char *keys[7] = {"rwkv5.version", "rwkv5.block_count", "rwkv5.embedding_length",
                                  "rwkv5.attention.head_count", "rwkv5.wkv.head_size",
                                  "rwkv5.feed_forward_length", "rwkv5.vocab_size"};
    rwe_status st = rwe_gguf_get_str(f, "general.architecture", s, sizeof s);
    if (st) return st;
    if (strcmp(s, "rwkv5"))
        return rwe_fail(RWE_ERR_VERSION, "architecture '%s' is not supported (expected 'rwkv5')",
                        s);
    if ((st = rwe_gguf_get_u32(f, "rwkv_edge.file_version", &fv))) return st;
    if (fv != FILE_VERSION)
        return rwe_fail(RWE_ERR_VERSION, "rwkv_edge.file_version %u is not supported (expected %d)",
                        fv, FILE_VERSION);
    for (int i = 0; i < 7 && !st; i++) st = rwe_gguf_get_u32(f, keys[i], &v[i]);
    if (!st) st = rwe_gguf_get_f32(f, "rwkv5.attention.layer_norm_epsilon", &m->ln_eps);
    if (!st) st = rwe_gguf_get_f32(f, "rwkv5.group_norm_epsilon", &m->gn_eps);
    if (st) return st;
    if (v[0] != 50 && v[0] != 51 && v[0] != 52)
        return rwe_fail(RWE_ERR_VERSION, "RWKV version %u is not supported (50, 51 or 52)", v[0]);
    if (v[1] < 1 || v[1] > 4096 || v[2] < 1 || v[2] > 65536 || v[3] < 1 || v[4] < 1 ||
        (uint64_t)v[3] * v[4] != v[2] || v[5] < 1 || v[5] > (1u << 20) || v[6] < 1 ||
        v[6] > (1u << 24))
        return rwe_fail(RWE_ERR_FORMAT, "bad hyper-parameters: %u layers, n_embd %u, %u heads of "
                        "%u, ffn %u, vocab %u", v[1], v[2], v[3], v[4], v[5], v[6]);
    if (!(m->ln_eps > 0 && m->ln_eps < 1) || !(m->gn_eps > 0 && m->gn_eps < 1))
        return rwe_fail(RWE_ERR_FORMAT, "bad epsilons: layer norm %g, group norm %g", m->ln_eps,
                        m->gn_eps);
    m->info.version = v[0], m->info.n_layer = v[1], m->info.n_embd = v[2], m->info.n_head = v[3];
    m->info.head_size = v[4], m->info.n_ffn = v[5], m->info.n_vocab = v[6];
    m->C = v[2], m->H = v[3], m->N = v[4], m->F = v[5], m->V = v[6];
    return RWE_OK;
}

/* rwkv5.emb_ln_dtype: absent or "f32" = no rounding. */
static rwe_status load_emb_rounding(rwe_model *m) {
    char s[16];
    m->emb_round = EMB_F32;
    if (!rwe_gguf_find_kv(&m->file, "rwkv5.emb_ln_dtype")) return RWE_OK;
    rwe_status st = rwe_gguf_get_str(&m->file, "rwkv5.emb_ln_dtype", s, sizeof s);
    if (st) return st;
    if (!strcmp(s, "bf16")) m->emb_round = EMB_BF16;
    else if (!strcmp(s, "f16")) m->emb_round = EMB_F16;
    else if (strcmp(s, "f32"))
        return rwe_fail(RWE_ERR_FORMAT, "rwkv5.emb_ln_dtype '%s' is not f32, bf16 or f16", s);
    return RWE_OK;
}

/* Bytes of the activation rows of n elements in the largest activation
 * type or the kernel set's packed rows, whichever is more. */
static size_t act_row_bytes(const rwe_model *m, int64_t n) {
    size_t b = (size_t)((n + RWE_QK - 1) / RWE_QK) * 36 + 4 * n;
    size_t g = m->kern->gemm_act_bytes ? m->kern->gemm_act_bytes(n) : 0;
    return b > g ? b : g;
}

/* 64-byte aligned (packed rows are read with aligned loads), or NULL. */
static void *alloc64(size_t n) {
    void *p = NULL;
    return posix_memalign(&p, 64, n) ? NULL : p;
}

static rwe_status alloc_scratch(const rwe_model *m, scratch *s) {
    size_t c = (size_t)(CHUNK * m->C) * sizeof(float);
    float **bufs[] = {&s->x, &s->xx, &s->xk, &s->xv, &s->xr, &s->xg, &s->r, &s->k, &s->v,
                      &s->g, &s->y, &s->out};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (!(*bufs[i] = malloc(c))) return rwe_fail(RWE_ERR_NOMEM, "out of memory for scratch");
    s->fk = malloc((size_t)(CHUNK * m->F) * sizeof(float));
    s->act_f = alloc64(CHUNK * act_row_bytes(m, m->F));
    for (int i = 0; i < 4; i++)
        if (!(s->act[i] = alloc64(CHUNK * act_row_bytes(m, m->C))))
            return rwe_fail(RWE_ERR_NOMEM, "out of memory for scratch");
    if (!s->fk || !s->act_f) return rwe_fail(RWE_ERR_NOMEM, "out of memory for scratch");
    return RWE_OK;
}

static void free_scratch(scratch *s) {
    float *bufs[] = {s->x, s->xx, s->xk, s->xv, s->xr, s->xg, s->r, s->k, s->v, s->g, s->y,
                     s->out, s->fk};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    for (int i = 0; i < 4; i++) free(s->act[i]);
    free(s->act_f);
}

static uint64_t matrix_bytes(const matrix *w) {
    return (uint64_t)w->rows * rwe_row_bytes(w->type, w->cols);
}

/* The matrices a token multiplies (the head, then each layer's; not emb,
 * whose rows are looked up): matrix i of 0 <= i < n_matrices(m), or NULL. */
static int n_matrices(const rwe_model *m) { return 1 + 8 * (int)m->info.n_layer; }

static matrix *matrix_at(rwe_model *m, int i) {
    if (i == 0) return &m->head;
    layer *L = &m->layers[(i - 1) / 8];
    matrix *ws[] = {&L->att_r, &L->att_k, &L->att_v, &L->att_o, &L->ffn_k, &L->ffn_r,
                    &L->ffn_v, &L->att_g};
    int j = (i - 1) % 8;
    return j == 7 && !L->att_mix_g ? NULL : ws[j]; /* v5.0 has no gate */
}

/* Bytes read per decoded token: every layer matrix, the head and one emb row. */
static uint64_t weight_bytes(rwe_model *m) {
    uint64_t b = rwe_row_bytes(m->emb.type, m->C);
    for (int i = 0; i < n_matrices(m); i++)
        if (matrix_at(m, i)) b += matrix_bytes(matrix_at(m, i));
    return b;
}

/* ------------------------------------------------------------ lanes repack */

/*
 * Kernel sets with lanes products (mm[type].lanes: AVX2, AVX-512) read
 * quantized matrices in the lanes layout (quant/quant.h): one lane per block,
 * so a decode step needs no shuffles and the prefill GEMM packs weights by a
 * nibble split instead of a transpose.  Load reserves one anonymous map for
 * those matrices (nothing is touched yet); the first eval copies them all
 * into it (repack_all), rows split over the pool, which is when the
 * zero-copy path would page them in anyway, so the load stays a map.  Each
 * thread drops the file pages it read from the process as it goes (the page
 * cache keeps them), so resident memory stays one copy.  RWKV_EDGE_REPACK=0
 * keeps every weight in the file mapping instead (zero copy, shared between
 * processes).  Measurements: docs/ENGINE_NOTES.md.
 */
/* Whether w goes into the lanes layout: its type has a lanes product in
 * this set, and RWKV_EDGE_REPACK=0 does not keep every weight in the map. */
static int repack_wanted(const rwe_model *m, const matrix *w) {
    const char *env = getenv("RWKV_EDGE_REPACK");
    return w && !(env && !strcmp(env, "0")) && rwe_kernels_mm(m->kern, w->type)->lanes;
}

/* The whole pages of [p, p + n) leave this process's resident set. */
static void drop_pages(const void *p, size_t n) {
#if defined(MADV_DONTNEED)
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + page - 1) / page * page, b = ((uintptr_t)p + n) / page * page;
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
#else
    (void)p, (void)n;
#endif
}

/* Each thread packs its rows of every matrix still to be packed and drops
 * the file pages it read at once, so the peak RSS is the copy plus about
 * one matrix (pages shared by two threads' rows go in repack_all's sweep). */
static void repack_task(void *ctx, int ith, int nth) {
    rwe_model *m = ctx;
    for (int i = 0; i < n_matrices(m); i++) {
        matrix *w = matrix_at(m, i);
        if (!w || !w->src) continue;
        int64_t r0, r1;
        rwe_split_range(w->rows, ROW_GRAIN, ith, nth, &r0, &r1);
        rwe_lanes_pack(w->type, w->cols, w->src, (void *)w->data, r0, r1);
        size_t rb = rwe_row_bytes(w->type, w->cols);
        drop_pages((const char *)w->src + (size_t)r0 * rb, (size_t)(r1 - r0) * rb);
    }
}

/* Copies every reserved matrix into its lanes layout, once, on the first
 * eval, with that call's pool: one parallel region for all of them (one
 * region per matrix cost a scheduler quantum each on a busy machine).
 * Calls wait on the lock until it is done; after it the matrices are
 * read-only. */
static void repack_all(rwe_model *m, rwe_threadpool *pool) {
    if (!atomic_load_explicit(&m->lanes_pending, memory_order_acquire)) return;
    pthread_mutex_lock(&m->lock);
    if (atomic_load_explicit(&m->lanes_pending, memory_order_relaxed)) {
        rwe_threadpool_run(pool, repack_task, m);
        for (int i = 0; i < n_matrices(m); i++) {
            matrix *w = matrix_at(m, i);
            if (!w || !w->src) continue;
            drop_pages(w->src, matrix_bytes(w));
            w->src = NULL;
        }
        atomic_store_explicit(&m->lanes_pending, 0, memory_order_release);
    }
    pthread_mutex_unlock(&m->lock);
}

/* Reserves the lanes copy of every matrix the kernel set reads that way and
 * points the matrices at it; repack_all fills them on the first eval. */
static rwe_status repack_lanes(rwe_model *m) {
    int n = n_matrices(m);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        matrix *w = matrix_at(m, i);
        if (repack_wanted(m, w)) total += (matrix_bytes(w) + 63) / 64 * 64;
    }
    if (!total) return RWE_OK;
    void *arena = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (arena == MAP_FAILED)
        return rwe_fail(RWE_ERR_NOMEM, "cannot reserve %zu bytes for repacked weights "
                        "(RWKV_EDGE_REPACK=0 uses them in the mapping)", total);
#if defined(MADV_HUGEPAGE)
    madvise(arena, total, MADV_HUGEPAGE); /* fewer faults and TLB misses; a hint only */
#endif
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        matrix *w = matrix_at(m, i);
        if (!repack_wanted(m, w)) continue;
        w->src = w->data;
        w->data = (char *)arena + off;
        w->matmul = rwe_kernels_mm(m->kern, w->type)->lanes;
        w->gemm = rwe_kernels_mm(m->kern, w->type)->gemm;
        off += (matrix_bytes(w) + 63) / 64 * 64;
    }
    m->lanes = arena;
    m->lanes_bytes = total;
    atomic_store(&m->lanes_pending, 1);
    return RWE_OK;
}

static rwe_status pick_kernels(rwe_isa isa, const rwe_kernels **out) {
    if (isa == RWE_ISA_AUTO) isa = rwe_cpu_best_isa();
    if (isa < RWE_ISA_REF || isa > RWE_ISA_DOTPROD)
        return rwe_fail(RWE_ERR_ISA, "unknown kernel set %d", (int)isa);
    if (!rwe_cpu_supports(isa))
        return rwe_fail(RWE_ERR_ISA, "this CPU does not support kernel set %d", (int)isa);
    *out = rwe_kernels_get(isa);
    if (!*out)
        return rwe_fail(RWE_ERR_ISA, "kernel set %d is not compiled into this build", (int)isa);
    return RWE_OK;
}

static uint32_t default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (uint32_t)n;
}

/* n_threads as asked (0: one per online CPU), or an error for too many. */
static rwe_status thread_count(uint32_t n_threads, uint32_t *out) {
    if (n_threads == 0) n_threads = default_threads();
    if (n_threads > MAX_THREADS)
        return rwe_fail(RWE_ERR_ARG, "n_threads %u is more than %d", n_threads, MAX_THREADS);
    *out = n_threads;
    return RWE_OK;
}

/* ----------------------------------------------------------- exec contexts */

static void exec_free(exec *e) {
    if (!e) return;
    rwe_threadpool_free(e->pool);
    free_scratch(&e->s);
    free(e);
}

/* A context for one call: scratch for CHUNK tokens and a pool of n_threads
 * (each thread keeps its own GEMM workspace, rwe_gemm_workspace). */
static rwe_status exec_new(const rwe_model *m, uint32_t n_threads, exec **out) {
    exec *e = calloc(1, sizeof *e);
    if (!e) return rwe_fail(RWE_ERR_NOMEM, "out of memory for a call's context");
    e->m = m;
    rwe_status st = alloc_scratch(m, &e->s);
    if (!st && !(e->pool = rwe_threadpool_create((int)n_threads)))
        st = rwe_fail(RWE_ERR_NOMEM, "cannot start %u threads", n_threads);
    if (st) exec_free(e);
    else *out = e;
    return st;
}

/* An idle context, or a new one when every context is in use. */
static rwe_status acquire_exec(rwe_model *m, exec **out) {
    pthread_mutex_lock(&m->lock);
    exec *e = m->idle;
    if (e) m->idle = e->next;
    uint32_t n_threads = atomic_load(&m->n_threads);
    pthread_mutex_unlock(&m->lock);
    if (e) {
        *out = e;
        return RWE_OK;
    }
    return exec_new(m, n_threads, out);
}

/* Back to the idle list, unless the thread count changed while it ran. */
static void release_exec(rwe_model *m, exec *e) {
    pthread_mutex_lock(&m->lock);
    if (rwe_threadpool_size(e->pool) == (int)atomic_load(&m->n_threads)) {
        e->next = m->idle;
        m->idle = e;
        e = NULL;
    }
    pthread_mutex_unlock(&m->lock);
    exec_free(e);
}

/* Frees every idle context (the caller holds m->lock or owns m alone). */
static void free_idle(rwe_model *m) {
    while (m->idle) {
        exec *e = m->idle;
        m->idle = e->next;
        exec_free(e);
    }
}

/* Sets the thread count and makes its first context now, so that a
 * failure (too many threads, no memory) is reported here and not by an eval. */
static rwe_status start_threads(rwe_model *m, uint32_t n_threads) {
    exec *e = NULL;
    rwe_status st = thread_count(n_threads, &n_threads);
    if (!st) st = exec_new(m, n_threads, &e);
    if (st) return st;
    pthread_mutex_lock(&m->lock);
    atomic_store(&m->n_threads, n_threads);
    free_idle(m);
    m->idle = e;
    pthread_mutex_unlock(&m->lock);
    return RWE_OK;
}

/* ---------------------------------------------------------- forward blocks */

/* Whether a chunk of T tokens takes the gemm products where a matrix has one. */
static int use_gemm(const rwe_model *m, int64_t T) {
    return m->kern->gemm_act && T >= RWE_GEMM_MIN_T;
}

/* The input rows of w in this chunk are packed for its gemm entry. */
static int packed_input(const exec *e, const matrix *w) { return e->s.gemm && w->gemm; }

/* Bytes between w's input rows of n elements in buf. */
static size_t input_stride(const exec *e, const matrix *w, int64_t n) {
    return packed_input(e, w) ? e->m->kern->gemm_act_bytes(n) : rwe_row_bytes(w->act, n);
}

/* Row t of x (n floats) into row t of buf as w's input: in its activation
 * type (nothing for f32), or packed for its gemm entry. */
static void to_act_row(const exec *e, const matrix *w, const float *x, int64_t t, int64_t n,
                       void *buf) {
    const rwe_model *m = e->m;
    if (w->act == RWE_TYPE_F32) return;
    void *row = (char *)buf + (size_t)t * input_stride(e, w, n);
    if (packed_input(e, w)) {
        m->kern->gemm_act(w->act, x + t * n, row, n);
        return;
    }
    m->kern->quantize_row[w->act](x + t * n, row, n);
}

/* Run fn on the pool, or on this thread alone when the region is too small to share. */
static void run(exec *e, rwe_task_fn fn, void *ctx, int64_t work) {
    if (work < PARALLEL_MIN_WORK) fn(ctx, 0, 1);
    else rwe_threadpool_run(e->pool, fn, ctx);
}

/* Up to four independent matmuls Y = W X over one chunk, run as one parallel region. */
typedef struct {
    const matrix *w;
    const void *x;
    size_t x_stride;
    float *y;
    int64_t y_stride;
    int packed;               /* x is packed rows for w->gemm */
} mm_job;

/* The rows of a batch's matrices are handed out in chunks from one atomic
 * counter rather than split statically, so a thread that starts late (asleep,
 * or descheduled on a shared machine) leaves its share to the others.  Decode
 * takes one chunk per thread and matrix (smaller chunks cost more than they
 * saved); prefill over packed rows (gemm_act) takes 4 per thread, since a
 * chunk there repacks only its own weights and a smaller last chunk leaves
 * less for one thread to finish alone.  Measurements: docs/ENGINE_NOTES.md. */
typedef struct {
    _Alignas(64) atomic_long next; /* next chunk to claim; alone on its cache line */
    char pad[64 - sizeof(atomic_long)];
    mm_job job[4];
    int64_t chunk_rows[4];    /* rows per chunk of each job (a multiple of ROW_GRAIN) */
    int64_t first[5];         /* chunk index of each job's first chunk; first[n] = total */
    int n;
    int64_t T;
    int64_t work;             /* multiply-adds in the batch */
} mm_batch;

static void mm_task(void *ctx, int ith, int nth) {
    mm_batch *b = ctx;
    (void)ith, (void)nth;
    int i = 0;
    for (;;) {
        long c = atomic_fetch_add_explicit(&b->next, 1, memory_order_relaxed);
        if (c >= b->first[b->n]) return;
        while (c >= b->first[i + 1]) i++;
        const mm_job *j = &b->job[i];
        int64_t r0 = (c - b->first[i]) * b->chunk_rows[i];
        int64_t r1 = r0 + b->chunk_rows[i] < j->w->rows ? r0 + b->chunk_rows[i] : j->w->rows;
        if (j->packed)
            j->w->gemm(j->w->cols, j->w->data, j->x, j->x_stride, j->y, j->y_stride, b->T, r0, r1);
        else
            j->w->matmul(j->w->cols, j->w->data, j->x, j->x_stride, j->y, j->y_stride, b->T, r0,
                         r1);
    }
}

/* Chunk the batch's jobs for nth threads: about cpt chunks per thread per
 * matrix, at least ROW_GRAIN rows each. */
static void mm_plan(mm_batch *b, int nth, int cpt) {
    int64_t total = 0;
    for (int i = 0; i < b->n; i++) {
        int64_t rows = b->job[i].w->rows;
        int64_t per = (rows + (int64_t)nth * cpt - 1) / ((int64_t)nth * cpt);
        per = (per + ROW_GRAIN - 1) / ROW_GRAIN * ROW_GRAIN;
        b->chunk_rows[i] = per;
        b->first[i] = total;
        total += (rows + per - 1) / per;
    }
    b->first[b->n] = total;
    atomic_init(&b->next, 0);
}

/* Run a batch of matmuls on the pool (or on this thread when it is small). */
static void run_mm(exec *e, mm_batch *b) {
    int nth = b->work < PARALLEL_MIN_WORK ? 1 : rwe_threadpool_size(e->pool);
    /* the first job decides (a batch's matrices share a type in files we
     * write; either chunking is correct for any job) */
    int cpt = b->n && b->job[0].packed ? PACKED_CHUNKS_PER_THREAD : CHUNKS_PER_THREAD;
    mm_plan(b, nth, cpt);
    run(e, mm_task, b, b->work);
}

/* Add y = W x for one (matrix, input, output) triple to a batch; x is the
 * input already in the matrix's activation type or packed for its gemm
 * entry (to_act_row, act_input). */
static void mm_add(const exec *e, mm_batch *b, const matrix *w, const void *x, float *y,
                   int64_t y_stride) {
    mm_job *j = &b->job[b->n++];
    j->w = w;
    j->x = x;
    j->packed = packed_input(e, w);
    j->x_stride = input_stride(e, w, w->cols);
    j->y = y;
    j->y_stride = y_stride;
    b->work += w->rows * w->cols * b->T;
}

/* A matrix's input rows: f32 ones are used in place, others were converted into buf. */
static const void *act_input(const matrix *w, const float *x, void *buf) {
    return w->act == RWE_TYPE_F32 ? (const void *)x : buf;
}

/* The embedding rows of T tokens: dequantized, LN(ln0), rounded like the reference. */
static void embed(const rwe_model *m, const int32_t *tokens, int64_t T, float *x) {
    int64_t C = m->C;
    for (int64_t t = 0; t < T; t++) {
        float *row = x + t * C;
        size_t row_bytes = rwe_row_bytes(m->emb.type, C);
        const void *src = (const char *)m->emb.data + (size_t)tokens[t] * row_bytes;
        rwe_row_to_f32(m->emb.type, src, row, C);
        m->kern->layer_norm(row, m->ln0_w, m->ln0_b, row, C, m->ln_eps);
        for (int64_t c = 0; c < C && m->emb_round == EMB_BF16; c++)
            row[c] = rwe_bf16_to_f32(rwe_f32_to_bf16(row[c]));
        for (int64_t c = 0; c < C && m->emb_round == EMB_F16; c++)
            row[c] = rwe_f16_to_f32(rwe_f32_to_f16(row[c]));
    }
}

/* The running layer's part of row t's state: att_x (C), ffn_x (C), wkv (H, N, N). */
static float *layer_state(const exec *e, int64_t t) {
    const rwe_model *m = e->m;
    size_t layer_len = (size_t)(2 * m->C + m->H * m->N * m->N);
    return e->states[e->batch ? t : 0] + e->layer * layer_len;
}

/* Row t's token-shift input: the chunk's previous row, or the state's saved
 * vector (att_x at off 0, ffn_x at off C) for a sequence's first row and
 * for every row of a batch. */
static const float *shift_input(const exec *e, int64_t t, int64_t off) {
    if (t && !e->batch) return e->s.xx + (t - 1) * e->m->C;
    return layer_state(e, t) + off;
}

/* The state keeps the last LayerNorm output (xx) of each sequence for the
 * next token's shift, at off as in shift_input. */
static void save_shift(exec *e, int64_t T, int64_t off) {
    size_t bytes = (size_t)e->m->C * sizeof(float);
    if (!e->batch) memcpy(layer_state(e, 0) + off, e->s.xx + (T - 1) * e->m->C, bytes);
    for (int64_t t = 0; t < T && e->batch; t++)
        memcpy(layer_state(e, t) + off, e->s.xx + t * e->m->C, bytes);
}

/* WKV over the chunk, heads split across threads (the recurrence runs along t). */
typedef struct {
    const exec *e;
    const layer *L;
    int64_t T;
} wkv_job;

static void wkv_task(void *ctx, int ith, int nth) {
    const wkv_job *j = ctx;
    const rwe_model *m = j->e->m;
    const scratch *s = &j->e->s;
    int64_t h0, h1, C = m->C, N = m->N;
    rwe_split_range(m->H, 1, ith, nth, &h0, &h1);
    if (h0 == h1) return;
    /* heads [h0, h1): a sequence's chunk in one call (rows C apart), a
     * batch's rows one by one, each on its own state */
    int64_t o = h0 * N, T = j->e->batch ? 1 : j->T;
    for (int64_t t = 0; t < j->T; t += T) {
        int64_t r = t * C + o;
        float *S = layer_state(j->e, t) + 2 * C + h0 * N * N;
        m->kern->wkv5(T, h1 - h0, N, C, s->r + r, s->k + r, s->v + r, j->L->decay + o,
                      j->L->bonus + o, S, s->y + r);
    }
}

/* restrict pointers of its own so that it vectorises (through the scratch
 * struct the compiler must assume aliasing); the other elementwise steps are
 * kernels (token_mix, the gates, relu_square). */
static void add_rows(float *restrict x, const float *restrict y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

/* The per-token steps between the matmuls run as regions of their own,
 * rows (tokens) split across the pool, so that no thread idles through them
 * in a prefill.  A stage is fn(e, L, t0, t1) over rows [t0, t1) of the chunk. */
typedef void (*rows_fn)(exec *e, const layer *L, int64_t t0, int64_t t1);

typedef struct {
    exec *e;
    const layer *L;
    int64_t T;
    rows_fn fn;
} rows_job;

static void rows_task(void *ctx, int ith, int nth) {
    const rows_job *j = ctx;
    int64_t t0, t1;
    rwe_split_range(j->T, 1, ith, nth, &t0, &t1);
    if (t0 < t1) j->fn(j->e, j->L, t0, t1);
}

/* Run a stage over the chunk's T rows; one row (decode) stays on this thread. */
static void run_rows(exec *e, const layer *L, int64_t T, rows_fn fn, int64_t row_work) {
    rows_job j = {e, L, T, fn};
    run(e, rows_task, &j, T > 1 ? T * row_work : 0);
}

/* Token shift of row t with one mix, then the result in w's activation type. */
static void mix_act_row(exec *e, const matrix *w, const float *mix, int64_t off, float *out,
                        void *act, int64_t t) {
    int64_t C = e->m->C;
    e->m->kern->token_mix(e->s.xx + t * C, shift_input(e, t, off), mix, out + t * C, C);
    to_act_row(e, w, out, t, C, act);
}

/* time mix, before the projections: xx = LN1(x). */
static void tm_norm(exec *e, const layer *L, int64_t t0, int64_t t1) {
    const rwe_model *m = e->m;
    for (int64_t t = t0; t < t1; t++)
        m->kern->layer_norm(e->s.x + t * m->C, L->ln1_w, L->ln1_b, e->s.xx + t * m->C, m->C,
                            m->ln_eps);
}

/* time mix: the r, k, v (and g) inputs, converted for their matrices. */
static void tm_mix(exec *e, const layer *L, int64_t t0, int64_t t1) {
    scratch *s = &e->s;
    for (int64_t t = t0; t < t1; t++) {
        mix_act_row(e, &L->att_r, L->att_mix_r, 0, s->xr, s->act[0], t);
        mix_act_row(e, &L->att_k, L->att_mix_k, 0, s->xk, s->act[1], t);
        mix_act_row(e, &L->att_v, L->att_mix_v, 0, s->xv, s->act[2], t);
        if (L->att_mix_g) mix_act_row(e, &L->att_g, L->att_mix_g, 0, s->xg, s->act[3], t);
    }
}

/* time mix, after the WKV: ln_x, the gate silu(g), the output matrix's input. */
static void tm_gate(exec *e, const layer *L, int64_t t0, int64_t t1) {
    const rwe_model *m = e->m;
    scratch *s = &e->s;
    int64_t C = m->C;
    for (int64_t t = t0; t < t1; t++) {
        m->kern->group_norm(s->y + t * C, L->lnx_w, L->lnx_b, m->H, m->N, m->gn_eps);
        if (L->att_mix_g) m->kern->silu_gate(s->y + t * C, s->g + t * C, C);
        to_act_row(e, &L->att_o, s->y, t, C, s->act[0]);
    }
}

/* channel mix, first: x += the attention's output, xx = LN2(x). */
static void cm_norm(exec *e, const layer *L, int64_t t0, int64_t t1) {
    const rwe_model *m = e->m;
    scratch *s = &e->s;
    int64_t C = m->C;
    for (int64_t t = t0; t < t1; t++) {
        add_rows(s->x + t * C, s->out + t * C, C);
        m->kern->layer_norm(s->x + t * C, L->ln2_w, L->ln2_b, s->xx + t * C, C, m->ln_eps);
    }
}

/* channel mix: the k and r inputs. */
static void cm_mix(exec *e, const layer *L, int64_t t0, int64_t t1) {
    scratch *s = &e->s;
    for (int64_t t = t0; t < t1; t++) {
        mix_act_row(e, &L->ffn_k, L->ffn_mix_k, e->m->C, s->xk, s->act[0], t);
        mix_act_row(e, &L->ffn_r, L->ffn_mix_r, e->m->C, s->xr, s->act[1], t);
    }
}

/* channel mix: relu(k)^2, the value matrix's input. */
static void cm_relu(exec *e, const layer *L, int64_t t0, int64_t t1) {
    const rwe_model *m = e->m;
    for (int64_t t = t0; t < t1; t++) {
        m->kern->relu_square(e->s.fk + t * m->F, m->F);
        to_act_row(e, &L->ffn_v, e->s.fk, t, m->F, e->s.act_f);
    }
}

/* channel mix, last: x += sigmoid(r) * value. */
static void cm_out(exec *e, const layer *L, int64_t t0, int64_t t1) {
    int64_t C = e->m->C;
    scratch *s = &e->s;
    (void)L;
    for (int64_t t = t0; t < t1; t++)
        e->m->kern->sigmoid_gate(s->x + t * C, s->r + t * C, s->out + t * C, C);
}

/* Attention (time mix) of one layer over T tokens: out = W_o (GroupNorm(wkv) * silu(g)),
 * added to x by channel_mix (cm_norm). */
static void time_mix(exec *e, const layer *L, int64_t T) {
    const rwe_model *m = e->m;
    scratch *s = &e->s;
    int64_t C = m->C;
    run_rows(e, L, T, tm_norm, 8 * C);
    run_rows(e, L, T, tm_mix, 24 * C);
    save_shift(e, T, 0);

    mm_batch b = {.T = T};                       /* r, k, v, g in one region */
    mm_add(e, &b, &L->att_r, act_input(&L->att_r, s->xr, s->act[0]), s->r, C);
    mm_add(e, &b, &L->att_k, act_input(&L->att_k, s->xk, s->act[1]), s->k, C);
    mm_add(e, &b, &L->att_v, act_input(&L->att_v, s->xv, s->act[2]), s->v, C);
    if (L->att_mix_g) mm_add(e, &b, &L->att_g, act_input(&L->att_g, s->xg, s->act[3]), s->g, C);
    run_mm(e, &b);

    wkv_job w = {e, L, T};
    run(e, wkv_task, &w, T * m->H * m->N * m->N * 2);

    run_rows(e, L, T, tm_gate, 24 * C);
    mm_batch o = {.T = T};
    mm_add(e, &o, &L->att_o, act_input(&L->att_o, s->y, s->act[0]), s->out, C);
    run_mm(e, &o);
}

/* FFN (channel mix) of one layer over T tokens, after x += the attention's out;
 * x += sigmoid(W_r xr) * W_v relu(W_k xk)^2. */
static void channel_mix(exec *e, const layer *L, int64_t T) {
    const rwe_model *m = e->m;
    scratch *s = &e->s;
    int64_t C = m->C, F = m->F;
    run_rows(e, L, T, cm_norm, 8 * C);
    run_rows(e, L, T, cm_mix, 12 * C);
    save_shift(e, T, C);

    mm_batch b = {.T = T};                       /* key and receptance in one region */
    mm_add(e, &b, &L->ffn_k, act_input(&L->ffn_k, s->xk, s->act[0]), s->fk, F);
    mm_add(e, &b, &L->ffn_r, act_input(&L->ffn_r, s->xr, s->act[1]), s->r, C);
    run_mm(e, &b);

    run_rows(e, L, T, cm_relu, 8 * F);
    mm_batch v = {.T = T};
    mm_add(e, &v, &L->ffn_v, act_input(&L->ffn_v, s->fk, s->act_f), s->out, C);
    run_mm(e, &v);
    run_rows(e, L, T, cm_out, 16 * C);
}

/* logits (T, V) = head . LN(x; ln_out) for T rows of x. */
static void head(exec *e, const float *x, int64_t T, float *logits) {
    const rwe_model *m = e->m;
    scratch *s = &e->s;
    s->gemm = use_gemm(m, T);
    for (int64_t t = 0; t < T; t++) {
        m->kern->layer_norm(x + t * m->C, m->lnout_w, m->lnout_b, s->xx + t * m->C, m->C,
                            m->ln_eps);
        to_act_row(e, &m->head, s->xx, t, m->C, s->act[0]);
    }
    mm_batch b = {.T = T};
    mm_add(e, &b, &m->head, act_input(&m->head, s->xx, s->act[0]), logits, m->V);
    run_mm(e, &b);
}

/* One chunk of T <= CHUNK rows over e->states (a sequence's next T tokens,
 * or one token for each of T states). logits: NULL, the last row's
 * (all == 0) or every row's. */
static void forward_chunk(exec *e, const int32_t *tokens, int64_t T, float *logits, int all) {
    const rwe_model *m = e->m;
    e->s.gemm = use_gemm(m, T);
    embed(m, tokens, T, e->s.x);
    for (e->layer = 0; e->layer < m->info.n_layer; e->layer++) {
        time_mix(e, &m->layers[e->layer], T);
        channel_mix(e, &m->layers[e->layer], T);
    }
    if (logits && all) head(e, e->s.x, T, logits);
    else if (logits) head(e, e->s.x + (T - 1) * m->C, 1, logits);
}

/* ------------------------------------------------------------- public API */

rwe_status rwe_model_load(const char *path, uint32_t n_threads, rwe_isa isa, rwe_model **out) {
    rwe_clear_error();
    if (!out) return rwe_fail(RWE_ERR_ARG, "rwe_model_load: out_model is NULL");
    *out = NULL;
    if (!path) return rwe_fail(RWE_ERR_ARG, "rwe_model_load: path is NULL");
    rwe_model *m = calloc(1, sizeof *m);
    if (!m) return rwe_fail(RWE_ERR_NOMEM, "out of memory for the model");
    pthread_mutex_init(&m->lock, NULL);
    rwe_status st = pick_kernels(isa, &m->kern);
    if (!st) st = rwe_gguf_open(path, &m->file);
    if (!st) st = load_hparams(m);
    if (!st) st = load_emb_rounding(m);
    if (!st) st = load_weights(m);
    if (!st) st = repack_lanes(m);
    if (!st) st = start_threads(m, n_threads);
    if (st) {
        rwe_model_free(m);
        return st;
    }
    m->info.isa = m->kern->isa;
    m->info.state_len = (uint64_t)m->info.n_layer * (uint64_t)(2 * m->C + m->H * m->N * m->N);
    m->info.weight_bytes = weight_bytes(m);
    m->info.repacked_bytes = m->lanes_bytes;
    *out = m;
    return RWE_OK;
}

void rwe_model_free(rwe_model *m) {
    if (!m) return;
    free_idle(m);
    for (uint32_t l = 0; m->layers && l < m->info.n_layer; l++)
        free((void *)m->layers[l].time_state);
    free(m->layers);
    free(m->params);
    if (m->lanes) munmap(m->lanes, m->lanes_bytes);
    rwe_gguf_close(&m->file);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

rwe_status rwe_model_get_info(const rwe_model *m, rwe_model_info *out) {
    if (!m || !out) return rwe_fail(RWE_ERR_ARG, "rwe_model_get_info: NULL argument");
    *out = m->info;
    out->n_threads = atomic_load(&m->n_threads);
    return RWE_OK;
}

rwe_status rwe_model_set_threads(rwe_model *m, uint32_t n_threads) {
    if (!m) return rwe_fail(RWE_ERR_ARG, "rwe_model_set_threads: model is NULL");
    return start_threads(m, n_threads);
}

static rwe_status check_state(const rwe_model *m, const float *state, size_t state_len) {
    if (!m || !state) return rwe_fail(RWE_ERR_ARG, "model or state is NULL");
    if (state_len != m->info.state_len)
        return rwe_fail(RWE_ERR_SHAPE, "state has %zu floats, this model's has %llu", state_len,
                        (unsigned long long)m->info.state_len);
    return RWE_OK;
}

rwe_status rwe_state_init(const rwe_model *m, float *state, size_t state_len) {
    rwe_status st = check_state(m, state, state_len);
    if (st) return st;
    int64_t C = m->C, wkv_len = m->H * m->N * m->N;
    for (uint32_t l = 0; l < m->info.n_layer; l++) {
        float *ls = state + l * (2 * C + wkv_len);
        memset(ls, 0, (size_t)(2 * C) * sizeof(float));
        const float *init = m->layers[l].time_state;
        if (init) memcpy(ls + 2 * C, init, (size_t)wkv_len * sizeof(float));
        else memset(ls + 2 * C, 0, (size_t)wkv_len * sizeof(float));
    }
    return RWE_OK;
}

rwe_status rwe_eval(rwe_model *m, int32_t token, float *state, size_t state_len, float *logits,
                    size_t logits_len) {
    return rwe_eval_sequence(m, &token, 1, state, state_len, logits, logits_len, 0);
}

/* Everything is checked before the state is touched, so a failed call changes nothing. */
static rwe_status check_eval_args(const rwe_model *m, const int32_t *tokens, size_t n,
                                  const float *state, size_t state_len, const float *logits,
                                  size_t logits_len, int all) {
    rwe_status st = check_state(m, state, state_len);
    if (st) return st;
    if (!tokens || n == 0) return rwe_fail(RWE_ERR_ARG, "no tokens (NULL or n_tokens == 0)");
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= m->info.n_vocab)
            return rwe_fail(RWE_ERR_TOKEN, "token %d at position %zu is out of range [0, %u)",
                            tokens[i], i, m->info.n_vocab);
    size_t want = (all ? n : 1) * (size_t)m->V;
    if (logits && logits_len != want)
        return rwe_fail(RWE_ERR_SHAPE, "logits has %zu floats, expected %zu", logits_len, want);
    return RWE_OK;
}

rwe_status rwe_eval_sequence(rwe_model *m, const int32_t *tokens, size_t n_tokens, float *state,
                             size_t state_len, float *logits, size_t logits_len, int all_logits) {
    rwe_clear_error();
    rwe_status st = check_eval_args(m, tokens, n_tokens, state, state_len, logits, logits_len,
                                    all_logits);
    exec *e = NULL;
    if (st || (st = acquire_exec(m, &e))) return st;
    repack_all(m, e->pool);
    e->states = &state;
    e->batch = 0;
    for (size_t t0 = 0; t0 < n_tokens; t0 += CHUNK) {
        int64_t T = n_tokens - t0 < CHUNK ? (int64_t)(n_tokens - t0) : CHUNK;
        int last = t0 + (size_t)T == n_tokens;
        float *lg = !logits ? NULL : all_logits ? logits + t0 * (size_t)m->V : last ? logits : NULL;
        forward_chunk(e, tokens + t0, T, lg, all_logits);
    }
    release_exec(m, e);
    return RWE_OK;
}

/* Distinct states (a state twice in one batch would be advanced twice, in
 * an order the rows do not define), none NULL; checked before any is touched. */
static rwe_status check_batch_states(float *const *states, size_t n) {
    if (!states) return rwe_fail(RWE_ERR_ARG, "states is NULL");
    for (size_t i = 0; i < n; i++) {
        if (!states[i]) return rwe_fail(RWE_ERR_ARG, "state %zu is NULL", i);
        for (size_t j = 0; j < i; j++)
            if (states[j] == states[i])
                return rwe_fail(RWE_ERR_ARG, "states %zu and %zu are the same buffer", j, i);
    }
    return RWE_OK;
}

rwe_status rwe_eval_batch(rwe_model *m, const int32_t *tokens, size_t n_seq,
                          float *const *states, size_t state_len, float *logits,
                          size_t logits_len) {
    rwe_clear_error();
    rwe_status st = check_batch_states(states, n_seq);
    if (!st && n_seq == 0) st = rwe_fail(RWE_ERR_ARG, "no sequences (n_seq == 0)");
    if (!st) st = check_eval_args(m, tokens, n_seq, states[0], state_len, logits, logits_len, 1);
    exec *e = NULL;
    if (st || (st = acquire_exec(m, &e))) return st;
    repack_all(m, e->pool);
    e->batch = 1;
    for (size_t b0 = 0; b0 < n_seq; b0 += CHUNK) {
        int64_t B = n_seq - b0 < CHUNK ? (int64_t)(n_seq - b0) : CHUNK;
        e->states = states + b0;
        forward_chunk(e, tokens + b0, B, logits ? logits + b0 * (size_t)m->V : NULL, 1);
    }
    release_exec(m, e);
    return RWE_OK;
}
