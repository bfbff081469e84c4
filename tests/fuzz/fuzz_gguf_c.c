/*
 * libFuzzer harness for the C GGUF reader and model loader (csrc/gguf.c, csrc/model.c).
 *
 * Each input is written to a private file and loaded with rwe_model_load, which
 * maps it, validates the header (rwe_gguf_open) and binds every tensor. The
 * loader must return a status for any bytes: ASan/UBSan turn an out-of-bounds
 * read, a leak or an overflow into a crash, and the status must be one of the
 * documented values. Built by tools/fuzz.sh:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc csrc/(all).c tests/fuzz/fuzz_gguf_c.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rwkv_edge.h"

static char g_path[64];

static void write_input(const uint8_t *data, size_t size) {
    FILE *f = fopen(g_path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    /* one file per fuzzing process: parallel jobs must not share it */
    snprintf(g_path, sizeof g_path, "/tmp/rwe-fuzz-%d.gguf", (int)getpid());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    write_input(data, size);
    rwe_model *m = NULL;
    rwe_status st = rwe_model_load(g_path, 1, RWE_ISA_REF, &m);
    if (st == RWE_OK) {
        /* a file that loads must also evaluate one token without faults */
        rwe_model_info info;
        if (rwe_model_get_info(m, &info) != RWE_OK) abort();
        float *state = calloc(info.state_len ? info.state_len : 1, sizeof(float));
        float *logits = calloc(info.n_vocab ? info.n_vocab : 1, sizeof(float));
        if (!state || !logits) abort();
        if (rwe_state_init(m, state, info.state_len) == RWE_OK)
            (void)rwe_eval(m, 0, state, info.state_len, logits, info.n_vocab);
        free(state);
        free(logits);
        rwe_model_free(m);
    } else if (m != NULL || st > RWE_ERR_INTERNAL || strlen(rwe_last_error()) == 0) {
        abort(); /* a failure must leave no handle and explain itself */
    }
    return 0;
}
