/*
 * A GGUF v3 reader over a read-only memory map.
 *
 * rwe_gguf_open maps the file and validates the whole header before anything
 * else looks at it: magic, version, every count, string and array length,
 * every tensor's dims, type, offset and size against the file size and the
 * alignment (general.alignment, default 32), and that no two tensors overlap
 * or share a name. After it returns RWE_OK every pointer in the structs below
 * lies inside the map, so callers never bounds-check again.
 *
 * Metadata values are not copied: a kv points at its encoded value in the map.
 */
#ifndef RWE_GGUF_H
#define RWE_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "rwkv_edge.h"

#define RWE_GGUF_MAX_DIMS 4

/* GGUF metadata value types (the file's numbering). */
typedef enum rwe_gguf_vtype {
    RWE_GGUF_U8 = 0, RWE_GGUF_I8 = 1, RWE_GGUF_U16 = 2, RWE_GGUF_I16 = 3,
    RWE_GGUF_U32 = 4, RWE_GGUF_I32 = 5, RWE_GGUF_F32 = 6, RWE_GGUF_BOOL = 7,
    RWE_GGUF_STRING = 8, RWE_GGUF_ARRAY = 9, RWE_GGUF_U64 = 10, RWE_GGUF_I64 = 11,
    RWE_GGUF_F64 = 12
} rwe_gguf_vtype;

typedef struct rwe_gguf_kv {
    char *key;                   /* NUL-terminated copy */
    rwe_gguf_vtype type;
    const uint8_t *value;        /* encoded value in the map (strings: after the length) */
    uint64_t len;                /* strings: bytes; arrays: elements; else 1 */
    rwe_gguf_vtype elem_type;    /* arrays only */
} rwe_gguf_kv;

typedef struct rwe_gguf_tensor {
    char *name;                  /* NUL-terminated copy */
    uint32_t n_dims;
    int64_t ne[RWE_GGUF_MAX_DIMS]; /* ne[0] is the contiguous (innermost) dim; unused = 1 */
    rwe_type type;
    uint64_t offset;             /* from the start of the data section */
    uint64_t size;               /* bytes */
    const void *data;            /* in the map */
} rwe_gguf_tensor;

typedef struct rwe_gguf {
    const uint8_t *base;         /* the map */
    size_t size;
    uint32_t version;
    uint64_t alignment;
    uint64_t n_kv, n_tensors;
    rwe_gguf_kv *kv;
    rwe_gguf_tensor *tensors;
} rwe_gguf;

/* Map and validate path; on failure *g is left empty (safe to close). */
rwe_status rwe_gguf_open(const char *path, rwe_gguf *g);
void rwe_gguf_close(rwe_gguf *g);

const rwe_gguf_kv *rwe_gguf_find_kv(const rwe_gguf *g, const char *key);
const rwe_gguf_tensor *rwe_gguf_find_tensor(const rwe_gguf *g, const char *name);

/* Typed getters: RWE_ERR_FORMAT naming the key when absent or of another type. */
rwe_status rwe_gguf_get_u32(const rwe_gguf *g, const char *key, uint32_t *out);
rwe_status rwe_gguf_get_f32(const rwe_gguf *g, const char *key, float *out);
/* Copies the string into buf (NUL-terminated); too long for buf is an error. */
rwe_status rwe_gguf_get_str(const rwe_gguf *g, const char *key, char *buf, size_t buf_size);

/* Elements in a tensor (product of ne). */
int64_t rwe_gguf_nelements(const rwe_gguf_tensor *t);

#endif
