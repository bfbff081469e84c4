/*
 * GGUF v3 parser over a read-only mmap (layout: ggml's docs/gguf.md).
 *
 *   header   : magic "GGUF", u32 version, u64 n_tensors, u64 n_kv
 *   n_kv     : string key, u32 value type, value
 *   n_tensors: string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset
 *   padding to the alignment, then the data section (offsets are relative to it)
 *   string   : u64 length + bytes (no NUL);  array: u32 elem type, u64 n, elems
 *
 * Everything is little-endian. Every read goes through a bounds-checked
 * cursor; counts are checked against the bytes left before anything is
 * allocated, so a hostile header cannot make us allocate more than a small
 * multiple of the file size.
 */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_NAME 256        /* ggml itself allows 64; be a little generous */

typedef struct {
    const uint8_t *p;
    size_t pos, size;
} cursor;

static int cur_has(const cursor *c, uint64_t n) { return n <= c->size - c->pos; }

static rwe_status cur_need(const cursor *c, uint64_t n, const char *what) {
    if (cur_has(c, n)) return RWE_OK;
    return rwe_fail(RWE_ERR_FORMAT, "GGUF truncated: %s at byte %zu runs past the end "
                    "(%zu bytes)", what, c->pos, c->size);
}

static rwe_status cur_read(cursor *c, void *dst, size_t n, const char *what) {
    rwe_status st = cur_need(c, n, what);
    if (!st) {
        memcpy(dst, c->p + c->pos, n);
        c->pos += n;
    }
    return st;
}

static rwe_status cur_skip(cursor *c, uint64_t n, const char *what) {
    rwe_status st = cur_need(c, n, what);
    if (!st) c->pos += (size_t)n;
    return st;
}

/* Strict UTF-8 (as Python decodes it): no overlong forms, no surrogates, <= U+10FFFF.
 * GGUF strings are UTF-8 by the spec; the Python reader refuses others, so must we. */
static int utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        size_t extra = b < 0x80 ? 0 : (b & 0xE0) == 0xC0 ? 1 : (b & 0xF0) == 0xE0 ? 2
                     : (b & 0xF8) == 0xF0 ? 3 : 4;
        if (extra == 4 || extra >= n - i) return 0; /* bad lead byte, or cut short */
        uint32_t cp = extra ? b & (0x3F >> extra) : b;
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += extra + 1;
    }
    return 1;
}

/* A string: checks its length against the file and its encoding; *copy (if asked)
 * is a bounded NUL-terminated dup. */
static rwe_status cur_string(cursor *c, const char *what, char **copy, const uint8_t **at,
                             uint64_t *len) {
    uint64_t n = 0;
    rwe_status st = cur_read(c, &n, 8, what);
    if (st) return st;
    if (!cur_has(c, n))
        return rwe_fail(RWE_ERR_FORMAT, "GGUF: %s length %llu at byte %zu exceeds the file",
                        what, (unsigned long long)n, c->pos);
    if (!utf8_valid(c->p + c->pos, (size_t)n))
        return rwe_fail(RWE_ERR_FORMAT, "GGUF: %s at byte %zu is not valid UTF-8", what, c->pos);
    if (at) *at = c->p + c->pos;
    if (len) *len = n;
    if (copy) {
        if (n == 0 || n > GGUF_MAX_NAME)
            return rwe_fail(RWE_ERR_FORMAT, "GGUF: %s has length %llu (allowed 1..%d)", what,
                            (unsigned long long)n, GGUF_MAX_NAME);
        if (memchr(c->p + c->pos, '\0', (size_t)n))
            return rwe_fail(RWE_ERR_FORMAT, "GGUF: %s contains a NUL byte", what);
        *copy = malloc((size_t)n + 1);
        if (!*copy) return rwe_fail(RWE_ERR_NOMEM, "GGUF: out of memory for %s", what);
        memcpy(*copy, c->p + c->pos, (size_t)n);
        (*copy)[n] = '\0';
    }
    c->pos += (size_t)n;
    return RWE_OK;
}

/* Encoded size of one scalar value type; 0 for string/array/unknown. */
static size_t scalar_size(uint32_t t) {
    switch (t) {
    case RWE_GGUF_U8: case RWE_GGUF_I8: case RWE_GGUF_BOOL: return 1;
    case RWE_GGUF_U16: case RWE_GGUF_I16: return 2;
    case RWE_GGUF_U32: case RWE_GGUF_I32: case RWE_GGUF_F32: return 4;
    case RWE_GGUF_U64: case RWE_GGUF_I64: case RWE_GGUF_F64: return 8;
    default: return 0;
    }
}

/* Walk one array value (elements of a scalar type or strings). */
static rwe_status read_array(cursor *c, rwe_gguf_kv *kv) {
    uint32_t et = 0;
    rwe_status st = cur_read(c, &et, 4, "array element type");
    if (!st) st = cur_read(c, &kv->len, 8, "array length");
    if (st) return st;
    kv->elem_type = (rwe_gguf_vtype)et;
    kv->value = c->p + c->pos;
    size_t es = scalar_size(et);
    if (es) {
        if (kv->len > (c->size - c->pos) / es)
            return rwe_fail(RWE_ERR_FORMAT, "GGUF: array '%s' of %llu elements exceeds the file",
                            kv->key, (unsigned long long)kv->len);
        return cur_skip(c, kv->len * es, "array data");
    }
    if (et != RWE_GGUF_STRING)
        return rwe_fail(RWE_ERR_FORMAT, "GGUF: array '%s' has unsupported element type %u",
                        kv->key, et);
    /* Every string takes at least its 8-byte length, which bounds the loop. */
    if (kv->len > (c->size - c->pos) / 8)
        return rwe_fail(RWE_ERR_FORMAT, "GGUF: string array '%s' of %llu elements exceeds the file",
                        kv->key, (unsigned long long)kv->len);
    for (uint64_t i = 0; i < kv->len; i++)
        if ((st = cur_string(c, "array string", NULL, NULL, NULL))) return st;
    return RWE_OK;
}

static rwe_status read_kv(cursor *c, rwe_gguf_kv *kv) {
    uint32_t t = 0;
    rwe_status st = cur_string(c, "metadata key", &kv->key, NULL, NULL);
    if (!st) st = cur_read(c, &t, 4, "metadata value type");
    if (st) return st;
    kv->type = (rwe_gguf_vtype)t;
    kv->len = 1;
    if (t == RWE_GGUF_STRING)
        return cur_string(c, "metadata string", NULL, &kv->value, &kv->len);
    if (t == RWE_GGUF_ARRAY) return read_array(c, kv);
    size_t n = scalar_size(t);
    if (!n)
        return rwe_fail(RWE_ERR_FORMAT, "GGUF: key '%s' has unknown value type %u", kv->key, t);
    kv->value = c->p + c->pos;
    return cur_skip(c, n, "metadata value");
}

/* Elements per block and bytes per block of the tensor types we accept. */
static int type_layout(uint32_t type, int64_t *blck, int64_t *bytes) {
    switch (type) {
    case RWE_TYPE_F32: *blck = 1; *bytes = 4; return 1;
    case RWE_TYPE_F16: case RWE_TYPE_BF16: *blck = 1; *bytes = 2; return 1;
    case RWE_TYPE_Q8_0: *blck = 32; *bytes = 34; return 1;
    case RWE_TYPE_Q4_0: *blck = 32; *bytes = 18; return 1;
    case RWE_TYPE_Q4_1: *blck = 32; *bytes = 20; return 1;
    default: return 0;
    }
}

int64_t rwe_gguf_nelements(const rwe_gguf_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < RWE_GGUF_MAX_DIMS; i++) n *= t->ne[i];
    return n;
}

/* Dims, type and byte size of one tensor; the size cannot overflow (dims are capped). */
static rwe_status check_tensor_shape(rwe_gguf_tensor *t) {
    int64_t blck, bytes, n = 1;
    for (uint32_t i = 0; i < t->n_dims; i++) {
        if (t->ne[i] <= 0 || t->ne[i] > ((int64_t)1 << 40) / n)
            return rwe_fail(RWE_ERR_FORMAT, "GGUF tensor '%s': dim %u = %lld is invalid",
                            t->name, i, (long long)t->ne[i]);
        n *= t->ne[i];
    }
    if (!type_layout(t->type, &blck, &bytes))
        return rwe_fail(RWE_ERR_FORMAT, "GGUF tensor '%s': unsupported tensor type %d "
                        "(expected F32, F16, BF16, Q8_0, Q4_0 or Q4_1)", t->name, (int)t->type);
    if (t->ne[0] % blck)
        return rwe_fail(RWE_ERR_FORMAT, "GGUF tensor '%s': row of %lld elements is not a whole "
                        "number of %lld-element blocks", t->name, (long long)t->ne[0],
                        (long long)blck);
    t->size = (uint64_t)(n / blck * bytes);
    return RWE_OK;
}

static rwe_status read_tensor_info(cursor *c, rwe_gguf_tensor *t) {
    uint32_t type = 0;
    rwe_status st = cur_string(c, "tensor name", &t->name, NULL, NULL);
    if (!st) st = cur_read(c, &t->n_dims, 4, "tensor n_dims");
    if (st) return st;
    if (t->n_dims < 1 || t->n_dims > RWE_GGUF_MAX_DIMS)
        return rwe_fail(RWE_ERR_FORMAT, "GGUF tensor '%s': %u dims (allowed 1..%d)", t->name,
                        t->n_dims, RWE_GGUF_MAX_DIMS);
    for (int i = 0; i < RWE_GGUF_MAX_DIMS; i++) t->ne[i] = 1;
    for (uint32_t i = 0; i < t->n_dims; i++) {
        uint64_t d = 0;
        if ((st = cur_read(c, &d, 8, "tensor dim"))) return st;
        t->ne[i] = d > INT64_MAX ? -1 : (int64_t)d;
    }
    if (!st) st = cur_read(c, &type, 4, "tensor type");
    if (!st) st = cur_read(c, &t->offset, 8, "tensor offset");
    if (st) return st;
    t->type = (rwe_type)type;
    return check_tensor_shape(t);
}

static int cmp_by_offset(const void *a, const void *b) {
    const rwe_gguf_tensor *x = *(const rwe_gguf_tensor *const *)a;
    const rwe_gguf_tensor *y = *(const rwe_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int cmp_by_name(const void *a, const void *b) {
    const rwe_gguf_tensor *x = *(const rwe_gguf_tensor *const *)a;
    const rwe_gguf_tensor *y = *(const rwe_gguf_tensor *const *)b;
    return strcmp(x->name, y->name);
}

/* Duplicate names and overlapping data, both found by sorting a pointer array. */
static rwe_status check_tensor_set(rwe_gguf *g) {
    if (g->n_tensors < 2) return RWE_OK;
    const rwe_gguf_tensor **v = malloc(g->n_tensors * sizeof *v);
    if (!v) return rwe_fail(RWE_ERR_NOMEM, "GGUF: out of memory checking the tensor table");
    rwe_status st = RWE_OK;
    for (uint64_t i = 0; i < g->n_tensors; i++) v[i] = &g->tensors[i];
    qsort(v, g->n_tensors, sizeof *v, cmp_by_name);
    for (uint64_t i = 1; i < g->n_tensors && !st; i++)
        if (!strcmp(v[i - 1]->name, v[i]->name))
            st = rwe_fail(RWE_ERR_FORMAT, "GGUF: tensor '%s' appears twice", v[i]->name);
    qsort(v, g->n_tensors, sizeof *v, cmp_by_offset);
    for (uint64_t i = 1; i < g->n_tensors && !st; i++)
        if (v[i - 1]->offset + v[i - 1]->size > v[i]->offset)
            st = rwe_fail(RWE_ERR_FORMAT, "GGUF: tensors '%s' and '%s' overlap", v[i - 1]->name,
                          v[i]->name);
    free(v);
    return st;
}

/* general.alignment if present: a u32 power of two. */
static rwe_status read_alignment(rwe_gguf *g) {
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const rwe_gguf_kv *kv = rwe_gguf_find_kv(g, "general.alignment");
    if (!kv) return RWE_OK;
    uint32_t a;
    rwe_status st = rwe_gguf_get_u32(g, "general.alignment", &a);
    if (st) return st;
    if (a == 0 || (a & (a - 1)) || a > (1u << 20))
        return rwe_fail(RWE_ERR_FORMAT,
                        "GGUF: general.alignment %u is not a power of two <= 1 MiB", a);
    g->alignment = a;
    return RWE_OK;
}

/* Place every tensor in the data section; all offsets and sizes must fit the file. */
static rwe_status place_tensors(rwe_gguf *g, size_t header_end) {
    uint64_t data = (header_end + g->alignment - 1) / g->alignment * g->alignment;
    if (data > g->size && g->n_tensors)
        return rwe_fail(RWE_ERR_FORMAT,
                        "GGUF truncated: data section starts at %llu, file has %zu bytes",
                        (unsigned long long)data, g->size);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        rwe_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment)
            return rwe_fail(RWE_ERR_FORMAT, "GGUF tensor '%s': offset %llu is not a multiple of "
                            "the alignment %llu", t->name, (unsigned long long)t->offset,
                            (unsigned long long)g->alignment);
        if (t->offset > g->size - data || t->size > g->size - data - t->offset)
            return rwe_fail(RWE_ERR_FORMAT,
                            "GGUF tensor '%s': data [%llu, +%llu) runs past the end of the file "
                            "(truncated?)", t->name,
                            (unsigned long long)(data + t->offset), (unsigned long long)t->size);
        t->data = g->base + data + t->offset;
    }
    return check_tensor_set(g);
}

static rwe_status parse(rwe_gguf *g) {
    cursor c = {g->base, 0, g->size};
    char magic[4] = {0};
    rwe_status st = cur_read(&c, magic, 4, "magic");
    if (st || memcmp(magic, GGUF_MAGIC, 4))
        return rwe_fail(RWE_ERR_FORMAT, "not a GGUF file (bad magic)");
    if ((st = cur_read(&c, &g->version, 4, "version"))) return st;
    if (g->version != 3)
        return rwe_fail(RWE_ERR_VERSION, "GGUF version %u is not supported (expected 3)",
                        g->version);
    uint64_t nt = 0, nkv = 0;
    if ((st = cur_read(&c, &nt, 8, "tensor count")) || (st = cur_read(&c, &nkv, 8, "kv count")))
        return st;
    /* A kv takes >= 13 bytes and a tensor info >= 33: bound the counts before allocating. */
    if (nkv > (c.size - c.pos) / 13 || nt > (c.size - c.pos) / 33)
        return rwe_fail(RWE_ERR_FORMAT,
                        "GGUF: %llu kvs / %llu tensors cannot fit in a %zu-byte file",
                        (unsigned long long)nkv, (unsigned long long)nt, c.size);
    g->kv = calloc(nkv ? nkv : 1, sizeof *g->kv);
    g->tensors = calloc(nt ? nt : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) return rwe_fail(RWE_ERR_NOMEM, "GGUF: out of memory for the header");
    for (; g->n_kv < nkv; g->n_kv++)
        if ((st = read_kv(&c, &g->kv[g->n_kv]))) {
            g->n_kv++; /* so close() frees its key */
            return st;
        }
    for (; g->n_tensors < nt; g->n_tensors++)
        if ((st = read_tensor_info(&c, &g->tensors[g->n_tensors]))) {
            g->n_tensors++; /* so close() frees its name */
            return st;
        }
    if ((st = read_alignment(g))) return st;
    return place_tensors(g, c.pos);
}

rwe_status rwe_gguf_open(const char *path, rwe_gguf *g) {
    memset(g, 0, sizeof *g);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return rwe_fail(RWE_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        close(fd);
        return rwe_fail(RWE_ERR_IO, "'%s' is not a regular file", path);
    }
    if (sb.st_size < 24) {
        close(fd);
        return rwe_fail(RWE_ERR_FORMAT, "'%s' is too short to be a GGUF file (%lld bytes)", path,
                        (long long)sb.st_size);
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd); /* the mapping keeps the file alive */
    if (p == MAP_FAILED) return rwe_fail(RWE_ERR_IO, "cannot map '%s': %s", path, strerror(errno));
    g->base = p;
    g->size = (size_t)sb.st_size;
    rwe_status st = parse(g);
    if (st) rwe_gguf_close(g);
    return st;
}

void rwe_gguf_close(rwe_gguf *g) {
    if (!g) return;
    for (uint64_t i = 0; i < g->n_kv; i++) free(g->kv[i].key);
    for (uint64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    if (g->base) munmap((void *)g->base, g->size);
    memset(g, 0, sizeof *g);
}

const rwe_gguf_kv *rwe_gguf_find_kv(const rwe_gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && !strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const rwe_gguf_tensor *rwe_gguf_find_tensor(const rwe_gguf *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

static rwe_status get_typed(const rwe_gguf *g, const char *key, rwe_gguf_vtype type,
                            const rwe_gguf_kv **out) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                  "string", "array", "u64", "i64", "f64"};
    *out = rwe_gguf_find_kv(g, key);
    if (!*out) return rwe_fail(RWE_ERR_FORMAT, "GGUF: metadata key '%s' is missing", key);
    if ((*out)->type != type)
        return rwe_fail(RWE_ERR_FORMAT, "GGUF: metadata key '%s' should be a %s", key, names[type]);
    return RWE_OK;
}

rwe_status rwe_gguf_get_u32(const rwe_gguf *g, const char *key, uint32_t *out) {
    const rwe_gguf_kv *kv;
    rwe_status st = get_typed(g, key, RWE_GGUF_U32, &kv);
    if (!st) memcpy(out, kv->value, 4);
    return st;
}

rwe_status rwe_gguf_get_f32(const rwe_gguf *g, const char *key, float *out) {
    const rwe_gguf_kv *kv;
    rwe_status st = get_typed(g, key, RWE_GGUF_F32, &kv);
    if (!st) memcpy(out, kv->value, 4);
    return st;
}

rwe_status rwe_gguf_get_str(const rwe_gguf *g, const char *key, char *buf, size_t buf_size) {
    const rwe_gguf_kv *kv;
    rwe_status st = get_typed(g, key, RWE_GGUF_STRING, &kv);
    if (st) return st;
    if (kv->len >= buf_size)
        return rwe_fail(RWE_ERR_FORMAT, "GGUF: metadata string '%s' is too long (%llu bytes)", key,
                        (unsigned long long)kv->len);
    if (memchr(kv->value, '\0', (size_t)kv->len))
        return rwe_fail(RWE_ERR_FORMAT, "GGUF: metadata string '%s' contains a NUL byte", key);
    memcpy(buf, kv->value, (size_t)kv->len);
    buf[kv->len] = '\0';
    return RWE_OK;
}
