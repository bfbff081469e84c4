/*
 * rwkv_edge.h -- the whole C ABI of rwkv-edge.
 *
 * This is the only header the Python side (cffi, API mode) reads, so it must
 * stay "cdef clean": no macros inside declarations, every constant that Python
 * needs is an enum, no #include other than <stddef.h>/<stdint.h>.
 *
 * Conventions
 *  - Every entry point returns rwe_status and writes results through out
 *    pointers. On failure a human readable detail is kept per thread and read
 *    with rwe_last_error(). C never exits or aborts on bad input.
 *  - Handles are opaque. Buffers (state, logits, tokens) are owned by the
 *    caller.
 *
 * State layout (float32, caller owned, length rwe_model_info.state_len):
 *   for each layer l in [0, n_layer):
 *     att_x[n_embd]                 ln1 output of the previous token (token shift)
 *     ffn_x[n_embd]                 ln2 output of the previous token (token shift)
 *     wkv[n_head][head_size][head_size]   indexed [head][key channel i][value channel j]
 *   so layer l starts at l * (2*n_embd + n_head*head_size*head_size).
 *   A zero state is the reference's initial state (unless the model carries
 *   time_state, see rwe_state_init).
 *
 * Thread safety: a model may be shared by several threads, and their evals run
 * concurrently: the model is read-only after loading, and each call in flight
 * borrows its own context (activations, a pool of n_threads threads with
 * their GEMM workspaces), made on first need and kept for later calls. So k concurrent
 * callers use k * n_threads threads and k contexts' memory. A state must not
 * be used by two calls at once. rwe_model_free must not overlap any call.
 */
#ifndef RWKV_EDGE_H
#define RWKV_EDGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rwe_status {
    RWE_OK = 0,
    RWE_ERR_IO = 1,          /* cannot open / map / read a file */
    RWE_ERR_FORMAT = 2,      /* corrupt, truncated or hostile file */
    RWE_ERR_VERSION = 3,     /* unsupported file or architecture version */
    RWE_ERR_SHAPE = 4,       /* a tensor or buffer has the wrong shape or length */
    RWE_ERR_ARG = 5,         /* invalid argument (NULL pointer, bad thread count) */
    RWE_ERR_ISA = 6,         /* requested kernel set not supported by this CPU/build */
    RWE_ERR_NOMEM = 7,       /* allocation failed */
    RWE_ERR_TOKEN = 8,       /* token id out of range */
    RWE_ERR_INTERNAL = 9     /* a bug: please report */
} rwe_status;

/* Kernel sets, lowest to highest. RWE_ISA_AUTO picks the best the CPU has. */
typedef enum rwe_isa {
    RWE_ISA_AUTO = 0,
    RWE_ISA_REF = 1,         /* plain scalar C, the reference of every kernel */
    RWE_ISA_AVX2 = 2,        /* x86-64 AVX2 + FMA + F16C */
    RWE_ISA_AVX512 = 3,      /* x86-64 AVX-512 F/BW/VL + VNNI */
    RWE_ISA_NEON = 4,        /* aarch64 Advanced SIMD */
    RWE_ISA_DOTPROD = 5      /* aarch64 Advanced SIMD + dot product (sdot) */
} rwe_isa;

/* Tensor storage formats; values equal ggml's type ids (GGUF tensor types). */
typedef enum rwe_type {
    RWE_TYPE_F32 = 0,
    RWE_TYPE_F16 = 1,
    RWE_TYPE_Q4_0 = 2,
    RWE_TYPE_Q4_1 = 3,
    RWE_TYPE_Q8_0 = 8,
    RWE_TYPE_BF16 = 30
} rwe_type;

typedef struct rwe_model rwe_model;

typedef struct rwe_model_info {
    uint32_t version;        /* 50, 51 or 52 for RWKV v5.0 / v5.1 / v5.2 */
    uint32_t n_layer;
    uint32_t n_embd;
    uint32_t n_head;
    uint32_t head_size;
    uint32_t n_ffn;
    uint32_t n_vocab;
    uint32_t n_threads;
    rwe_isa isa;             /* kernel set in use */
    uint64_t state_len;      /* floats in one state */
    uint64_t weight_bytes;   /* bytes of weights read per token (head included) */
    uint64_t repacked_bytes; /* weights kept in the kernels' own layout, copied from
                                the map on first use (0: all used where they lie) */
} rwe_model_info;

/* Status name ("RWE_ERR_FORMAT") and this thread's last error detail. */
const char *rwe_status_name(rwe_status status);
const char *rwe_last_error(void);

/* Best kernel set this CPU supports, and whether a given one is usable. */
rwe_isa rwe_cpu_best_isa(void);
int rwe_cpu_supports(rwe_isa isa);

/* Load a GGUF model (arch "rwkv5") by memory-mapping it; weights are used in
 * place, except that a kernel set with a layout of its own (AVX2 and AVX-512:
 * the lanes layout) gets its quantized matrices copied into it once, by the
 * first eval (see rwe_model_info.repacked_bytes; the environment variable
 * RWKV_EDGE_REPACK=0 turns that off). n_threads 0 means one per online CPU. */
rwe_status rwe_model_load(const char *path, uint32_t n_threads, rwe_isa isa,
                          rwe_model **out_model);
void rwe_model_free(rwe_model *model);
rwe_status rwe_model_get_info(const rwe_model *model, rwe_model_info *out_info);
/* Threads of each call from now on (calls already running keep theirs). */
rwe_status rwe_model_set_threads(rwe_model *model, uint32_t n_threads);

/* Write the initial state (zeros, or the model's time_state) into state. */
rwe_status rwe_state_init(const rwe_model *model, float *state, size_t state_len);

/* One token: advances state in place; logits (n_vocab floats) may be NULL to
 * skip the head. */
rwe_status rwe_eval(rwe_model *model, int32_t token, float *state, size_t state_len,
                    float *logits, size_t logits_len);

/* A chunk of n_tokens tokens through the batched (matrix-matrix) path.
 * logits may be NULL; else it holds n_vocab floats (all_logits == 0: the
 * last position only) or n_tokens * n_vocab floats (all_logits != 0). */
rwe_status rwe_eval_sequence(rwe_model *model, const int32_t *tokens, size_t n_tokens,
                             float *state, size_t state_len, float *logits,
                             size_t logits_len, int all_logits);

/* One token for each of n_seq independent sequences, with one pass over the
 * weights: tokens[b] advances states[b] (each state_len floats; n_seq
 * distinct buffers). logits may be NULL; else it holds n_seq * n_vocab
 * floats, row b for sequence b. The results equal n_seq rwe_eval calls. */
rwe_status rwe_eval_batch(rwe_model *model, const int32_t *tokens, size_t n_seq,
                          float *const *states, size_t state_len, float *logits,
                          size_t logits_len);

/* Memory read bandwidth for `rwkv-edge bench`'s roofline (touches no model):
 * n_threads threads each sum one contiguous slice of words[0, n_words) once;
 * *out_gbps is the pass's bytes over its wall time in GB/s (1e9 bytes).
 * n_threads in [1, 256]; RWE_ERR_NOMEM when a thread cannot start. */
rwe_status rwe_read_bandwidth(const uint64_t *words, size_t n_words, uint32_t n_threads,
                              double *out_gbps);

#ifdef __cplusplus
}
#endif

#endif /* RWKV_EDGE_H */
