/* GGUF reader: mmap the file, validate every field once at open, then
 * serve metadata and tensor views with O(1) lookups.
 *
 * Layout (all little-endian):
 *   "GGUF" | version u32 | n_tensors u64 | n_kv u64
 *   n_kv x      { key: str | value type u32 | value }
 *   n_tensors x { name: str | n_dims u32 | dims u64[n_dims] | ggml type u32 | offset u64 }
 *   padding to general.alignment (default 32) | data section
 * where str = { len u64 | len bytes, not NUL-terminated } and an array
 * value = { elem type u32 | count u64 | count elements }. Tensor offsets are
 * relative to the start of the data section. */
#define _GNU_SOURCE
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/name_index.h"
#include "../common/st_common.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host"
#endif

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_ARRAY_NESTING 2 /* an array of arrays of scalars at most */

/* ---- ggml tensor types ------------------------------------------------------------ */
/* Names and block layouts of every ggml type id, so that even types Strait
 * cannot compute with get their byte size (and bounds) checked. Ids 4, 5,
 * 31..33 and 36..38 were retired from ggml and stay unnamed. */
static const struct {
    const char *name;
    uint32_t block_elems, block_bytes;
} ggml_types[] = {
    [0] = {"F32", 1, 4},          [1] = {"F16", 1, 2},          [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},       [6] = {"Q5_0", 32, 22},       [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},       [9] = {"Q8_1", 32, 36},       [10] = {"Q2_K", 256, 84},
    [11] = {"Q3_K", 256, 110},    [12] = {"Q4_K", 256, 144},    [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},    [15] = {"Q8_K", 256, 292},    [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74},   [18] = {"IQ3_XXS", 256, 98},  [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18},    [21] = {"IQ3_S", 256, 110},   [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136},  [24] = {"I8", 1, 1},          [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},         [27] = {"I64", 1, 8},         [28] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56},    [30] = {"BF16", 1, 2},        [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66},    [39] = {"MXFP4", 32, 17},
};

const char *st_gguf_type_name(uint32_t t)
{
    return t < ST_ARRAY_LEN(ggml_types) && ggml_types[t].name ? ggml_types[t].name : "unknown";
}

/* ggml type id -> st_dtype, or ST_DTYPE_COUNT when Strait has no kernels for it */
static st_dtype dtype_of(uint32_t t)
{
    switch (t) {
    case 0: return ST_F32;
    case 1: return ST_F16;
    case 2: return ST_Q4_0;
    case 3: return ST_Q4_1;
    case 8: return ST_Q8_0;
    case 30: return ST_BF16;
    default: return ST_DTYPE_COUNT;
    }
}

/* ---- the reader ---------------------------------------------------------------------- */
typedef struct {
    char *key;               /* NUL-terminated copy */
    size_t key_len;
    st_gguf_type type;
    const uint8_t *val;      /* scalars: the value; STRING: its bytes; ARRAY: first element */
    uint64_t len;            /* STRING: byte length */
    st_gguf_type elem_type;  /* ARRAY */
    uint64_t n;              /* ARRAY: element count */
    size_t *str_offs;        /* STRING arrays: (n,) offset of each element's length field */
} kv_entry;

struct st_gguf {
    const uint8_t *base;
    size_t size;
    int mapped; /* munmap at close */
    uint32_t version;
    kv_entry *kv;
    size_t n_kv;
    st_tensor *tensors;
    uint32_t *raw_types; /* (n_tensors,) */
    size_t n_tensors;
    st_name_index kv_index, tensor_index;
};

typedef struct {
    const uint8_t *p;
    size_t size, pos;
    const char *name; /* file path for messages */
} cursor;

static int bad(const cursor *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(const cursor *c, int code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return st_err(code, "%s: %s", c->name, msg);
}

static size_t left(const cursor *c) { return c->size - c->pos; }

static int take(cursor *c, size_t n, const char *what, const uint8_t **out)
{
    if (left(c) < n)
        return bad(c, ST_EINVAL, "truncated at byte %zu reading %s (%zu bytes needed, %zu left)", c->pos, what, n,
                   left(c));
    *out = c->p + c->pos;
    c->pos += n;
    return ST_OK;
}

static int rd_u32(cursor *c, const char *what, uint32_t *v)
{
    const uint8_t *b = NULL;
    int rc = take(c, 4, what, &b);
    if (rc == ST_OK)
        memcpy(v, b, 4);
    return rc;
}

static int rd_u64(cursor *c, const char *what, uint64_t *v)
{
    const uint8_t *b = NULL;
    int rc = take(c, 8, what, &b);
    if (rc == ST_OK)
        memcpy(v, b, 8);
    return rc;
}

/* A gguf string: the length is checked against the bytes left before use. */
static int rd_str(cursor *c, const char *what, const uint8_t **s, uint64_t *len)
{
    int rc = rd_u64(c, what, len);
    if (rc)
        return rc;
    if (*len > left(c))
        return bad(c, ST_EINVAL, "%s at byte %zu: length %llu past end of file", what, c->pos - 8,
                   (unsigned long long)*len);
    return take(c, (size_t)*len, what, s);
}

/* Byte size of a scalar value type, 0 for STRING/ARRAY, -1 if invalid. */
static int scalar_size(uint32_t t)
{
    switch (t) {
    case ST_GGUF_UINT8: case ST_GGUF_INT8: case ST_GGUF_BOOL: return 1;
    case ST_GGUF_UINT16: case ST_GGUF_INT16: return 2;
    case ST_GGUF_UINT32: case ST_GGUF_INT32: case ST_GGUF_FLOAT32: return 4;
    case ST_GGUF_UINT64: case ST_GGUF_INT64: case ST_GGUF_FLOAT64: return 8;
    case ST_GGUF_STRING: case ST_GGUF_ARRAY: return 0;
    default: return -1;
    }
}

/* ---- name indexes ---------------------------------------------------------------------- */
static const char *kv_name_at(const void *ctx, uint32_t i, size_t *len)
{
    const kv_entry *kv = &((const st_gguf *)ctx)->kv[i];
    *len = kv->key_len;
    return kv->key;
}

static const char *tensor_name_at(const void *ctx, uint32_t i, size_t *len)
{
    const char *name = ((const st_gguf *)ctx)->tensors[i].name;
    *len = strlen(name);
    return name;
}

/* ---- metadata parsing ------------------------------------------------------------------ */

/* Skip (and validate) one value of type t; for string arrays at the top
 * level also record where each element starts. */
static int parse_value(cursor *c, uint32_t t, int depth, kv_entry *kv);

static int parse_array(cursor *c, int depth, kv_entry *kv)
{
    uint32_t et;
    uint64_t n;
    int rc;
    if ((rc = rd_u32(c, "array element type", &et)) || (rc = rd_u64(c, "array count", &n)))
        return rc;
    int sz = scalar_size(et);
    if (sz < 0)
        return bad(c, ST_EINVAL, "array at byte %zu: invalid element type %u", c->pos - 12, et);
    if (et == ST_GGUF_ARRAY && depth >= GGUF_MAX_ARRAY_NESTING)
        return bad(c, ST_EINVAL, "array at byte %zu: arrays nested deeper than %d", c->pos - 12,
                   GGUF_MAX_ARRAY_NESTING);
    /* the smallest encoding of one element bounds the count before any
     * allocation or loop: 8 bytes per string, 12 per nested array */
    size_t min_elem = sz > 0 ? (size_t)sz : et == ST_GGUF_STRING ? 8 : 12;
    if (n > left(c) / min_elem)
        return bad(c, ST_EINVAL, "array at byte %zu: count %llu exceeds the %zu bytes left", c->pos - 12,
                   (unsigned long long)n, left(c));
    if (kv) {
        kv->elem_type = (st_gguf_type)et;
        kv->n = n;
        kv->val = c->p + c->pos;
    }
    if (sz > 0) {
        c->pos += (size_t)n * (size_t)sz;
        return ST_OK;
    }
    if (kv && et == ST_GGUF_STRING)
        kv->str_offs = st_xmalloc((size_t)(n ? n : 1) * sizeof(size_t));
    for (uint64_t i = 0; i < n; i++) {
        if (kv && et == ST_GGUF_STRING)
            kv->str_offs[i] = c->pos;
        if ((rc = parse_value(c, et, depth + 1, NULL)))
            return rc;
    }
    return ST_OK;
}

static int parse_value(cursor *c, uint32_t t, int depth, kv_entry *kv)
{
    const uint8_t *b = NULL;
    uint64_t len;
    int rc, sz = scalar_size(t);
    if (sz < 0)
        return bad(c, ST_EINVAL, "invalid value type %u at byte %zu", t, c->pos);
    if (t == ST_GGUF_ARRAY)
        return parse_array(c, depth, kv);
    if (t == ST_GGUF_STRING) {
        if ((rc = rd_str(c, "string value", &b, &len)))
            return rc;
        if (kv) {
            kv->val = b;
            kv->len = len;
        }
        return ST_OK;
    }
    if ((rc = take(c, (size_t)sz, "value", &b)))
        return rc;
    if (t == ST_GGUF_BOOL && *b > 1)
        return bad(c, ST_EINVAL, "bool value %u at byte %zu is not 0 or 1", *b, c->pos - 1);
    if (kv)
        kv->val = b;
    return ST_OK;
}

/* g->n_kv counts the entries parsed so far (whose keys are owned). */
static int parse_kvs(st_gguf *g, cursor *c, size_t n_kv)
{
    int rc;
    for (size_t i = 0; i < n_kv; i++) {
        kv_entry *kv = &g->kv[i];
        const uint8_t *key = NULL;
        uint64_t klen;
        uint32_t t;
        if ((rc = rd_str(c, "metadata key", &key, &klen)))
            return rc;
        if (memchr(key, 0, (size_t)klen))
            return bad(c, ST_EINVAL, "metadata key %zu contains a NUL byte", i);
        kv->key = st_xmalloc((size_t)klen + 1);
        memcpy(kv->key, key, (size_t)klen);
        kv->key[klen] = 0;
        kv->key_len = (size_t)klen;
        g->n_kv = i + 1; /* the key is owned from here on, for cleanup */
        if ((rc = rd_u32(c, "metadata value type", &t)))
            return rc;
        if (scalar_size(t) < 0)
            return bad(c, ST_EINVAL, "key %s: invalid value type %u", kv->key, t);
        kv->type = (st_gguf_type)t;
        if ((rc = parse_value(c, t, 0, kv)))
            return rc;
        if (st_name_index_add(&g->kv_index, (uint32_t)i) >= 0)
            return bad(c, ST_EINVAL, "duplicate metadata key %s", kv->key);
    }
    return ST_OK;
}

/* ---- tensor infos ---------------------------------------------------------------------- */
static int parse_tensor(st_gguf *g, cursor *c, size_t i, int flags)
{
    st_tensor *t = &g->tensors[i];
    const uint8_t *name = NULL;
    uint64_t nlen, dims[ST_MAX_DIMS];
    uint32_t n_dims, type;
    int rc;
    if ((rc = rd_str(c, "tensor name", &name, &nlen)))
        return rc;
    if (memchr(name, 0, (size_t)nlen))
        return bad(c, ST_EINVAL, "tensor %zu: name contains a NUL byte", i);
    char *copy = st_xmalloc((size_t)nlen + 1);
    memcpy(copy, name, (size_t)nlen);
    copy[nlen] = 0;
    t->name = copy;
    g->n_tensors = i + 1; /* owned from here on, for cleanup */
    if ((rc = rd_u32(c, "tensor n_dims", &n_dims)))
        return rc;
    if (n_dims < 1 || n_dims > ST_MAX_DIMS)
        return bad(c, ST_EINVAL, "tensor %s: n_dims %u not in 1..%d", copy, n_dims, ST_MAX_DIMS);
    t->n_dims = (int)n_dims;
    int64_t nelem = 1;
    for (uint32_t d = 0; d < ST_MAX_DIMS; d++) {
        dims[d] = 1;
        if (d < n_dims && (rc = rd_u64(c, "tensor dim", &dims[d])))
            return rc;
        if (dims[d] == 0 || dims[d] > INT64_MAX)
            return bad(c, ST_EINVAL, "tensor %s: dim %u is %llu", copy, d, (unsigned long long)dims[d]);
        t->ne[d] = (int64_t)dims[d];
        if (__builtin_mul_overflow(nelem, t->ne[d], &nelem))
            return bad(c, ST_EINVAL, "tensor %s: element count overflows", copy);
    }
    uint64_t off;
    if ((rc = rd_u32(c, "tensor type", &type)) || (rc = rd_u64(c, "tensor offset", &off)))
        return rc;
    g->raw_types[i] = type;
    if (type >= ST_ARRAY_LEN(ggml_types) || !ggml_types[type].name)
        return bad(c, ST_ENOTSUP, "tensor %s: unknown ggml type id %u", copy, type);
    t->type = dtype_of(type);
    if (t->type == ST_DTYPE_COUNT && !(flags & ST_GGUF_ALLOW_UNKNOWN_TYPES))
        return bad(c, ST_ENOTSUP, "tensor %s: type %s (ggml type %u) is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1)",
                   copy, ggml_types[type].name, type);
    uint32_t be = ggml_types[type].block_elems;
    if (t->ne[0] % be)
        return bad(c, ST_EINVAL, "tensor %s: ne[0] = %lld is not a multiple of the %s block size %u", copy,
                   (long long)t->ne[0], ggml_types[type].name, be);
    size_t nbytes;
    if (st_mul_ok((size_t)(nelem / be), ggml_types[type].block_bytes, &nbytes))
        return bad(c, ST_EINVAL, "tensor %s: byte size overflows", copy);
    t->nbytes = nbytes;
    t->data = (const void *)(uintptr_t)off; /* offset for now; made a pointer once the data section is known */
    t->device = NULL;
    return ST_OK;
}

/* Place the tensors: every [data + off, + nbytes) must be aligned and lie
 * inside the file. */
static int place_tensors(st_gguf *g, cursor *c, size_t alignment)
{
    size_t data_start = ST_ALIGN_UP(c->pos, alignment);
    for (size_t i = 0; i < g->n_tensors; i++) {
        st_tensor *t = &g->tensors[i];
        uint64_t off = (uint64_t)(uintptr_t)t->data;
        if (off % alignment)
            return bad(c, ST_EINVAL, "tensor %s: offset %llu is not a multiple of the alignment %zu", t->name,
                       (unsigned long long)off, alignment);
        size_t end;
        if (data_start > g->size || off > g->size - data_start || st_add_ok(data_start + (size_t)off, t->nbytes, &end) ||
            end > g->size)
            return bad(c, ST_ERANGE,
                       "tensor %s: data [%llu, +%zu bytes) past end of file (data section at byte %zu, file size %zu)",
                       t->name, (unsigned long long)off, t->nbytes, data_start, g->size);
        t->data = g->base + data_start + off;
    }
    return ST_OK;
}

static int parse(st_gguf *g, const char *name, int flags)
{
    cursor c = {g->base, g->size, 0, name};
    const uint8_t *magic = NULL;
    uint64_t n_tensors, n_kv;
    int rc;
    if ((rc = take(&c, 4, "magic", &magic)))
        return rc;
    if (memcmp(magic, "GGUF", 4) != 0)
        return bad(&c, ST_EINVAL, "not a GGUF file (bad magic %02x %02x %02x %02x)", magic[0], magic[1], magic[2],
                   magic[3]);
    if ((rc = rd_u32(&c, "version", &g->version)))
        return rc;
    if (g->version == 0x02000000 || g->version == 0x03000000)
        return bad(&c, ST_ENOTSUP, "big-endian GGUF files (byte-swapped version) are not supported");
    if (g->version != 2 && g->version != 3)
        return bad(&c, ST_ENOTSUP, "GGUF version %u not supported (2 or 3)", g->version);
    if ((rc = rd_u64(&c, "tensor count", &n_tensors)) || (rc = rd_u64(&c, "metadata count", &n_kv)))
        return rc;
    /* fail fast on absurd counts: a kv takes at least 13 bytes (key length,
     * type, one value byte) and a tensor info at least 32 */
    if (n_kv > left(&c) / 13 || n_tensors > left(&c) / 32 || n_kv * 13 + n_tensors * 32 > left(&c))
        return bad(&c, ST_EINVAL, "header claims %llu tensors and %llu metadata entries but only %zu bytes follow",
                   (unsigned long long)n_tensors, (unsigned long long)n_kv, left(&c));
    if (n_kv >= UINT32_MAX || n_tensors >= UINT32_MAX)
        return bad(&c, ST_EINVAL, "too many entries");

    g->kv = st_xcalloc((size_t)n_kv ? (size_t)n_kv : 1, sizeof *g->kv);
    st_name_index_init(&g->kv_index, (size_t)n_kv, kv_name_at, g);
    if ((rc = parse_kvs(g, &c, (size_t)n_kv)))
        return rc;

    size_t alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = st_gguf_find_key(g, "general.alignment");
    if (ai >= 0) {
        const kv_entry *kv = &g->kv[ai];
        uint32_t a = 0;
        if (kv->type != ST_GGUF_UINT32)
            return bad(&c, ST_EINVAL, "general.alignment must be a uint32");
        memcpy(&a, kv->val, 4);
        if (a == 0 || (a & (a - 1)))
            return bad(&c, ST_EINVAL, "general.alignment %u is not a power of two", a);
        alignment = a;
    }

    g->tensors = st_xcalloc((size_t)n_tensors ? (size_t)n_tensors : 1, sizeof *g->tensors);
    g->raw_types = st_xcalloc((size_t)n_tensors ? (size_t)n_tensors : 1, sizeof *g->raw_types);
    st_name_index_init(&g->tensor_index, (size_t)n_tensors, tensor_name_at, g);
    for (size_t i = 0; i < n_tensors; i++) {
        if ((rc = parse_tensor(g, &c, i, flags)))
            return rc;
        if (st_name_index_add(&g->tensor_index, (uint32_t)i) >= 0)
            return bad(&c, ST_EINVAL, "duplicate tensor name %s", g->tensors[i].name);
    }
    return place_tensors(g, &c, alignment);
}

/* ---- open / close ------------------------------------------------------------------------ */
void st_gguf_close(st_gguf *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str_offs);
    }
    free(g->kv);
    for (size_t i = 0; i < g->n_tensors; i++)
        free((void *)g->tensors[i].name);
    free(g->tensors);
    free(g->raw_types);
    st_name_index_free(&g->kv_index);
    st_name_index_free(&g->tensor_index);
    if (g->mapped)
        st_unmap_file(g->base, g->size);
    free(g);
}

static int open_common(st_gguf *g, const char *name, int flags, st_gguf **out)
{
    int rc = parse(g, name, flags);
    if (rc) {
        st_gguf_close(g);
        return rc;
    }
    *out = g;
    return ST_OK;
}

int st_gguf_open_mem(const void *buf, size_t len, int flags, st_gguf **out)
{
    if (!buf && len)
        return st_err(ST_EINVAL, "gguf: NULL buffer");
    st_gguf *g = st_xcalloc(1, sizeof *g);
    static const uint8_t empty[1];
    g->base = buf ? buf : empty;
    g->size = len;
    return open_common(g, "<memory>", flags, out);
}

int st_gguf_open(const char *path, int flags, st_gguf **out)
{
    const void *p;
    size_t size;
    int rc = st_map_file(path, 24, "GGUF", &p, &size);
    if (rc)
        return rc;
    st_gguf *g = st_xcalloc(1, sizeof *g);
    g->base = p;
    g->size = size;
    g->mapped = 1;
    return open_common(g, path, flags, out);
}

/* ---- metadata access ---------------------------------------------------------------------- */
uint32_t st_gguf_version(const st_gguf *g) { return g->version; }
size_t st_gguf_n_kv(const st_gguf *g) { return g->n_kv; }
size_t st_gguf_file_size(const st_gguf *g) { return g->size; }

const char *st_gguf_kv_key(const st_gguf *g, size_t i) { return i < g->n_kv ? g->kv[i].key : NULL; }

st_gguf_type st_gguf_kv_type(const st_gguf *g, size_t i)
{
    return i < g->n_kv ? g->kv[i].type : (st_gguf_type)-1;
}

int64_t st_gguf_find_key(const st_gguf *g, const char *key)
{
    return key ? st_name_index_find(&g->kv_index, key, strlen(key)) : -1;
}

static int lookup(const st_gguf *g, const char *key, const kv_entry **out)
{
    int64_t i = st_gguf_find_key(g, key);
    if (i < 0)
        return st_err(ST_ENOENT, "gguf: key %s not found", key ? key : "(null)");
    *out = &g->kv[i];
    return ST_OK;
}

/* An integer value as sign + magnitude, so that every integer type compares exactly. */
static int as_integer(const kv_entry *kv, int *neg, uint64_t *mag)
{
    const uint8_t *v = kv->val;
    int64_t s = 0;
    uint64_t u = 0;
    int is_signed = 1;
    switch (kv->type) {
    case ST_GGUF_UINT8: u = v[0]; is_signed = 0; break;
    case ST_GGUF_INT8: s = (int8_t)v[0]; break;
    case ST_GGUF_UINT16: { uint16_t x; memcpy(&x, v, 2); u = x; is_signed = 0; break; }
    case ST_GGUF_INT16: { int16_t x; memcpy(&x, v, 2); s = x; break; }
    case ST_GGUF_UINT32: { uint32_t x; memcpy(&x, v, 4); u = x; is_signed = 0; break; }
    case ST_GGUF_INT32: { int32_t x; memcpy(&x, v, 4); s = x; break; }
    case ST_GGUF_UINT64: memcpy(&u, v, 8); is_signed = 0; break;
    case ST_GGUF_INT64: memcpy(&s, v, 8); break;
    default: return st_err(ST_EINVAL, "gguf: key %s is not an integer (type %d)", kv->key, (int)kv->type);
    }
    if (is_signed) {
        *neg = s < 0;
        *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    } else {
        *neg = 0;
        *mag = u;
    }
    return ST_OK;
}

int st_gguf_get_u32(const st_gguf *g, const char *key, uint32_t *out)
{
    const kv_entry *kv = NULL;
    int neg, rc;
    uint64_t m;
    if ((rc = lookup(g, key, &kv)) || (rc = as_integer(kv, &neg, &m)))
        return rc;
    if (neg || m > UINT32_MAX)
        return st_err(ST_EINVAL, "gguf: key %s: value does not fit in uint32", key);
    *out = (uint32_t)m;
    return ST_OK;
}

int st_gguf_get_i64(const st_gguf *g, const char *key, int64_t *out)
{
    const kv_entry *kv = NULL;
    int neg, rc;
    uint64_t m;
    if ((rc = lookup(g, key, &kv)) || (rc = as_integer(kv, &neg, &m)))
        return rc;
    if (neg ? m > (uint64_t)INT64_MAX + 1 : m > (uint64_t)INT64_MAX)
        return st_err(ST_EINVAL, "gguf: key %s: value does not fit in int64", key);
    *out = neg ? (int64_t)(0 - m) : (int64_t)m;
    return ST_OK;
}

int st_gguf_get_f32(const st_gguf *g, const char *key, float *out)
{
    const kv_entry *kv = NULL;
    int rc = lookup(g, key, &kv);
    if (rc)
        return rc;
    if (kv->type == ST_GGUF_FLOAT32) {
        memcpy(out, kv->val, 4);
    } else if (kv->type == ST_GGUF_FLOAT64) {
        double d;
        memcpy(&d, kv->val, 8);
        *out = (float)d;
    } else {
        return st_err(ST_EINVAL, "gguf: key %s is not a float (type %d)", key, (int)kv->type);
    }
    return ST_OK;
}

int st_gguf_get_bool(const st_gguf *g, const char *key, int *out)
{
    const kv_entry *kv = NULL;
    int rc = lookup(g, key, &kv);
    if (rc)
        return rc;
    if (kv->type != ST_GGUF_BOOL)
        return st_err(ST_EINVAL, "gguf: key %s is not a bool (type %d)", key, (int)kv->type);
    *out = kv->val[0];
    return ST_OK;
}

int st_gguf_get_str(const st_gguf *g, const char *key, const char **s, size_t *len)
{
    const kv_entry *kv = NULL;
    int rc = lookup(g, key, &kv);
    if (rc)
        return rc;
    if (kv->type != ST_GGUF_STRING)
        return st_err(ST_EINVAL, "gguf: key %s is not a string (type %d)", key, (int)kv->type);
    *s = (const char *)kv->val;
    *len = (size_t)kv->len;
    return ST_OK;
}

int st_gguf_get_arr(const st_gguf *g, const char *key, st_gguf_type *elem_type, size_t *n)
{
    const kv_entry *kv = NULL;
    int rc = lookup(g, key, &kv);
    if (rc)
        return rc;
    if (kv->type != ST_GGUF_ARRAY)
        return st_err(ST_EINVAL, "gguf: key %s is not an array (type %d)", key, (int)kv->type);
    *elem_type = kv->elem_type;
    *n = (size_t)kv->n;
    return ST_OK;
}

int st_gguf_get_arr_data(const st_gguf *g, const char *key, const void **data)
{
    const kv_entry *kv = NULL;
    int rc = lookup(g, key, &kv);
    if (rc)
        return rc;
    if (kv->type != ST_GGUF_ARRAY || scalar_size(kv->elem_type) <= 0)
        return st_err(ST_EINVAL, "gguf: key %s is not an array of numbers", key);
    *data = kv->val;
    return ST_OK;
}

int st_gguf_get_arr_str(const st_gguf *g, const char *key, size_t i, const char **s, size_t *len)
{
    const kv_entry *kv = NULL;
    int rc = lookup(g, key, &kv);
    if (rc)
        return rc;
    if (kv->type != ST_GGUF_ARRAY || kv->elem_type != ST_GGUF_STRING)
        return st_err(ST_EINVAL, "gguf: key %s is not an array of strings", key);
    if (i >= kv->n)
        return st_err(ST_ERANGE, "gguf: key %s: index %zu out of range (%llu elements)", key, i,
                      (unsigned long long)kv->n);
    uint64_t l;
    memcpy(&l, g->base + kv->str_offs[i], 8);
    *s = (const char *)g->base + kv->str_offs[i] + 8;
    *len = (size_t)l;
    return ST_OK;
}

/* ---- tensors -------------------------------------------------------------------------------- */
size_t st_gguf_n_tensors(const st_gguf *g) { return g->n_tensors; }

const st_tensor *st_gguf_tensor(const st_gguf *g, size_t i) { return i < g->n_tensors ? &g->tensors[i] : NULL; }

uint32_t st_gguf_tensor_raw_type(const st_gguf *g, size_t i) { return i < g->n_tensors ? g->raw_types[i] : UINT32_MAX; }

const st_tensor *st_gguf_find_tensor(const st_gguf *g, const char *name)
{
    int64_t i = name ? st_name_index_find(&g->tensor_index, name, strlen(name)) : -1;
    return i >= 0 ? &g->tensors[i] : NULL;
}
