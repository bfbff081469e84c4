/* Kernel-set lookup, the type helpers of kernels.h, the GEMM workspace. */
#include "kernels_impl.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

const rwe_kernels *rwe_kernels_get(rwe_isa isa) {
    switch (isa) {
    case RWE_ISA_REF: return &rwe_kernels_ref;
#if defined(__x86_64__)
    case RWE_ISA_AVX2: return &rwe_kernels_avx2;
    case RWE_ISA_AVX512: return &rwe_kernels_avx512;
#endif
#if defined(__aarch64__)
    case RWE_ISA_NEON: return &rwe_kernels_neon;
    case RWE_ISA_DOTPROD: return &rwe_kernels_dotprod;
#endif
    default: return NULL; /* AUTO is resolved by the caller (rwe_cpu_best_isa) */
    }
}

const rwe_matmul_set *rwe_kernels_mm(const rwe_kernels *k, rwe_type t) {
    static const rwe_matmul_set none;
    return (unsigned)t < RWE_N_TYPES ? &k->mm[t] : &none;
}

rwe_type rwe_act_type(rwe_type weight_type) {
    switch (weight_type) {
    case RWE_TYPE_Q8_0:
    case RWE_TYPE_Q4_0: return RWE_TYPE_Q8_0;
    case RWE_TYPE_Q4_1: return RWE_TYPE_Q8_1;
    default: return RWE_TYPE_F32;
    }
}

size_t rwe_row_bytes(rwe_type type, int64_t n) {
    if (n < 0)
        return 0;
    size_t nb = (size_t)n / RWE_QK;
    int whole = n % RWE_QK == 0;
    switch ((int)type) {
    case RWE_TYPE_F32: return (size_t)n * 4;
    case RWE_TYPE_F16:
    case RWE_TYPE_BF16: return (size_t)n * 2;
    case RWE_TYPE_Q8_0: return whole ? nb * sizeof(rwe_block_q8_0) : 0;
    case RWE_TYPE_Q8_1: return whole ? nb * sizeof(rwe_block_q8_1) : 0;
    case RWE_TYPE_Q4_0: return whole ? nb * sizeof(rwe_block_q4_0) : 0;
    case RWE_TYPE_Q4_1: return whole ? nb * sizeof(rwe_block_q4_1) : 0;
    default: return 0;
    }
}

/* ------------------------------------------------ GEMM workspace */

static pthread_key_t gemm_ws_key;
static pthread_once_t gemm_ws_once = PTHREAD_ONCE_INIT;
static int gemm_ws_ok;
static size_t gemm_ws_max = SIZE_MAX;
static void gemm_ws_init(void) { gemm_ws_ok = pthread_key_create(&gemm_ws_key, free) == 0; }

typedef struct {
    size_t size;
    _Alignas(64) unsigned char data[];
} gemm_ws;

void *rwe_gemm_workspace(size_t bytes) {
    pthread_once(&gemm_ws_once, gemm_ws_init);
    if (!gemm_ws_ok || bytes > gemm_ws_max) /* the callers then take a path without one */
        return NULL;
    gemm_ws *ws = pthread_getspecific(gemm_ws_key);
    if (ws && ws->size >= bytes)
        return ws->data;
    gemm_ws *grown = NULL;
    if (posix_memalign((void **)&grown, 64, sizeof *grown + bytes))
        return NULL;
    grown->size = bytes;
    if (pthread_setspecific(gemm_ws_key, grown)) {
        free(grown);
        return NULL;
    }
    free(ws);
    return grown->data;
}

void rwe_gemm_workspace_limit(size_t max) { gemm_ws_max = max; }
