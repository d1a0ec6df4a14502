/* GGUF reader: files written by a small writer below are read back
 * field by field; then corrupt variants (every truncation, bad header
 * fields, bad tensor infos, hostile counts) must all fail cleanly with a
 * message. Real vocabulary files and the default model are checked when
 * present. */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "common/st_common.h"
#include "engine/gguf.h"
#include "tests/test.h"

/* ---- a tiny GGUF writer ------------------------------------------------------------ */
typedef struct {
    uint8_t *b;
    size_t n, cap;
} buf;

static void put(buf *w, const void *p, size_t n)
{
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2 + 64;
        w->b = st_xrealloc(w->b, w->cap);
    }
    memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void p8(buf *w, uint8_t v) { put(w, &v, 1); }
static void p32(buf *w, uint32_t v) { put(w, &v, 4); }
static void p64(buf *w, uint64_t v) { put(w, &v, 8); }
static void pstr(buf *w, const char *s)
{
    p64(w, strlen(s));
    put(w, s, strlen(s));
}
/* key + type; the caller then writes the value */
static void pkey(buf *w, const char *k, uint32_t type)
{
    pstr(w, k);
    p32(w, type);
}

typedef struct {
    const char *name;
    uint32_t type; /* ggml type id */
    int n_dims;
    uint64_t ne[5];
    uint64_t off_add; /* added to the offset written in the info (to corrupt it) */
} tdesc;

static size_t type_bytes(uint32_t type, uint64_t nelem)
{
    switch (type) {
    case 0: return nelem * 4;
    case 1: case 30: return nelem * 2;
    case 2: return nelem / 32 * 18;
    case 3: return nelem / 32 * 20;
    case 8: return nelem / 32 * 34;
    case 12: return nelem / 256 * 144;
    default: return nelem;
    }
}

static uint64_t nelem_of(const tdesc *t)
{
    uint64_t n = 1;
    for (int d = 0; d < t->n_dims; d++)
        n *= t->ne[d];
    return n;
}

/* Byte `i` of tensor `k`'s data: a pattern the reader's pointers are checked against. */
static uint8_t pattern(int k, size_t i) { return (uint8_t)(i * 7 + (size_t)k * 13 + 1); }

/* header | kvs | tensor infos | pad to align | data (ends with the last tensor's last byte) */
static buf build(uint32_t version, const buf *kvs, uint64_t n_kv, const tdesc *ts, int nt, uint32_t align)
{
    buf w = {0};
    put(&w, "GGUF", 4);
    p32(&w, version);
    p64(&w, (uint64_t)nt);
    p64(&w, n_kv);
    if (kvs && kvs->n)
        put(&w, kvs->b, kvs->n);
    uint64_t offs[16], off = 0;
    for (int k = 0; k < nt; k++) {
        offs[k] = off;
        off += type_bytes(ts[k].type, nelem_of(&ts[k]));
        if (k + 1 < nt)
            off = ST_ALIGN_UP(off, align);
        pstr(&w, ts[k].name);
        p32(&w, (uint32_t)ts[k].n_dims);
        for (int d = 0; d < ts[k].n_dims; d++)
            p64(&w, ts[k].ne[d]);
        p32(&w, ts[k].type);
        p64(&w, offs[k] + ts[k].off_add);
    }
    if (nt) {
        while (w.n % align)
            p8(&w, 0);
        size_t data = w.n;
        for (int k = 0; k < nt; k++) {
            while (w.n < data + offs[k])
                p8(&w, 0);
            size_t nb = type_bytes(ts[k].type, nelem_of(&ts[k]));
            for (size_t i = 0; i < nb; i++)
                p8(&w, pattern(k, i));
        }
    }
    return w;
}

/* ---- the valid model ---------------------------------------------------------------- */
static const tdesc model_tensors[] = {
    {"token_embd.weight", 0, 2, {8, 4}, 0},
    {"blk.0.attn_q.weight", 8, 2, {64, 2}, 0},
    {"blk.0.q4_0", 2, 1, {32}, 0},
    {"blk.0.q4_1", 3, 3, {32, 3, 2}, 0},
    {"norm.f16", 1, 1, {5}, 0},
    {"out.bf16", 30, 4, {3, 2, 1, 2}, 0},
};
#define N_MODEL_TENSORS 6

static buf model_kvs(uint64_t *n_kv, uint32_t align)
{
    buf k = {0};
    uint64_t n = 0;
    pkey(&k, "general.architecture", 8), pstr(&k, "llama"), n++;
    if (align) {
        pkey(&k, "general.alignment", 4), p32(&k, align), n++;
    }
    pkey(&k, "llama.block_count", 4), p32(&k, 30), n++;
    pkey(&k, "test.i32_neg", 5), p32(&k, (uint32_t)-5), n++;
    pkey(&k, "test.u64_big", 10), p64(&k, UINT64_MAX), n++;
    pkey(&k, "test.u8", 0), p8(&k, 200), n++;
    pkey(&k, "test.f32", 6);
    float f = 1e-5f;
    put(&k, &f, 4), n++;
    pkey(&k, "test.f64", 12);
    double d = 10000.5;
    put(&k, &d, 8), n++;
    pkey(&k, "test.bool", 7), p8(&k, 1), n++;
    /* string array: the tokens */
    pkey(&k, "tokenizer.ggml.tokens", 9), p32(&k, 8), p64(&k, 4);
    pstr(&k, "<s>"), pstr(&k, ""), pstr(&k, "\xC4\xA0the"), pstr(&k, "</s>"), n++;
    pkey(&k, "tokenizer.ggml.scores", 9), p32(&k, 6), p64(&k, 3);
    for (int i = 0; i < 3; i++) {
        float s = -(float)i;
        put(&k, &s, 4);
    }
    n++;
    /* array of arrays of u8: allowed by the format */
    pkey(&k, "test.nested", 9), p32(&k, 9), p64(&k, 2);
    p32(&k, 0), p64(&k, 2), p8(&k, 1), p8(&k, 2);
    p32(&k, 0), p64(&k, 0);
    n++;
    *n_kv = n;
    return k;
}

static void check_model(const st_gguf *g, uint32_t align)
{
    CHECK(st_gguf_version(g) == 3);
    CHECK(st_gguf_n_tensors(g) == N_MODEL_TENSORS);
    CHECK(st_gguf_n_kv(g) == (align ? 12u : 11u));
    CHECK(strcmp(st_gguf_kv_key(g, 0), "general.architecture") == 0 && st_gguf_kv_type(g, 0) == ST_GGUF_STRING);
    CHECK(st_gguf_kv_key(g, 99) == NULL);

    const char *s;
    size_t len;
    CHECK(st_gguf_get_str(g, "general.architecture", &s, &len) == ST_OK && len == 5 && memcmp(s, "llama", 5) == 0);
    uint32_t u = 0;
    int64_t i64 = 0;
    float f = 0;
    int b = 0;
    CHECK(st_gguf_get_u32(g, "llama.block_count", &u) == ST_OK && u == 30);
    CHECK(st_gguf_get_i64(g, "llama.block_count", &i64) == ST_OK && i64 == 30);
    CHECK(st_gguf_get_u32(g, "test.u8", &u) == ST_OK && u == 200);
    CHECK(st_gguf_get_i64(g, "test.i32_neg", &i64) == ST_OK && i64 == -5);
    CHECK(st_gguf_get_u32(g, "test.i32_neg", &u) == ST_EINVAL);  /* negative */
    CHECK(st_gguf_get_i64(g, "test.u64_big", &i64) == ST_EINVAL); /* > INT64_MAX */
    CHECK(st_gguf_get_u32(g, "test.f32", &u) == ST_EINVAL);       /* not an integer */
    CHECK(st_gguf_get_f32(g, "test.f32", &f) == ST_OK && f == 1e-5f);
    CHECK(st_gguf_get_f32(g, "test.f64", &f) == ST_OK && f == 10000.5f);
    CHECK(st_gguf_get_f32(g, "llama.block_count", &f) == ST_EINVAL);
    CHECK(st_gguf_get_bool(g, "test.bool", &b) == ST_OK && b == 1);
    CHECK(st_gguf_get_bool(g, "test.u8", &b) == ST_EINVAL);
    CHECK(st_gguf_get_str(g, "test.u8", &s, &len) == ST_EINVAL);
    CHECK(st_gguf_get_u32(g, "no.such.key", &u) == ST_ENOENT);
    CHECK(st_gguf_find_key(g, "no.such.key") == -1);
    CHECK(st_gguf_find_key(g, "test.bool") >= 0 &&
          strcmp(st_gguf_kv_key(g, (size_t)st_gguf_find_key(g, "test.bool")), "test.bool") == 0);

    st_gguf_type et;
    size_t n = 0;
    CHECK(st_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n) == ST_OK && et == ST_GGUF_STRING && n == 4);
    const char *want[] = {"<s>", "", "\xC4\xA0the", "</s>"};
    for (size_t i = 0; i < 4; i++)
        CHECKF(st_gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len) == ST_OK && len == strlen(want[i]) &&
                   memcmp(s, want[i], len) == 0,
               "token %zu", i);
    CHECK(st_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 4, &s, &len) == ST_ERANGE);
    CHECK(st_gguf_get_arr_str(g, "tokenizer.ggml.scores", 0, &s, &len) == ST_EINVAL);
    const void *data = NULL;
    CHECK(st_gguf_get_arr_data(g, "tokenizer.ggml.tokens", &data) == ST_EINVAL);
    CHECK(st_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &n) == ST_OK && et == ST_GGUF_FLOAT32 && n == 3);
    CHECK(st_gguf_get_arr_data(g, "tokenizer.ggml.scores", &data) == ST_OK);
    if (data) {
        float sc[3];
        memcpy(sc, data, sizeof sc);
        CHECK(sc[0] == 0 && sc[1] == -1 && sc[2] == -2);
    }
    CHECK(st_gguf_get_arr(g, "test.nested", &et, &n) == ST_OK && et == ST_GGUF_ARRAY && n == 2);
    CHECK(st_gguf_get_arr_data(g, "test.nested", &data) == ST_EINVAL);
    CHECK(st_gguf_get_arr(g, "test.u8", &et, &n) == ST_EINVAL);

    static const st_dtype dt[N_MODEL_TENSORS] = {ST_F32, ST_Q8_0, ST_Q4_0, ST_Q4_1, ST_F16, ST_BF16};
    const uint8_t *data_lo = NULL;
    for (int k = 0; k < N_MODEL_TENSORS; k++) {
        const tdesc *d = &model_tensors[k];
        const st_tensor *t = st_gguf_tensor(g, (size_t)k);
        if (!t) {
            CHECK(t != NULL);
            continue;
        }
        CHECKF(strcmp(t->name, d->name) == 0, "name %s", t->name);
        CHECK(st_gguf_find_tensor(g, d->name) == t);
        CHECK(t->type == dt[k] && st_gguf_tensor_raw_type(g, (size_t)k) == d->type);
        CHECK(t->n_dims == d->n_dims);
        for (int x = 0; x < 4; x++)
            CHECK(t->ne[x] == (x < d->n_dims ? (int64_t)d->ne[x] : 1));
        CHECK(t->nbytes == type_bytes(d->type, nelem_of(d)));
        CHECK(((uintptr_t)t->data - (uintptr_t)st_gguf_tensor(g, 0)->data) % (align ? align : 32) == 0);
        if (k == 0)
            data_lo = t->data;
        int same = 1;
        for (size_t i = 0; i < t->nbytes; i++)
            same &= ((const uint8_t *)t->data)[i] == pattern(k, i);
        CHECKF(same, "tensor %s data", d->name);
    }
    CHECK(data_lo != NULL);
    CHECK(st_gguf_find_tensor(g, "missing") == NULL && st_gguf_tensor(g, N_MODEL_TENSORS) == NULL);
    CHECK(strcmp(st_gguf_type_name(12), "Q4_K") == 0 && strcmp(st_gguf_type_name(39), "MXFP4") == 0);
    CHECK(strcmp(st_gguf_type_name(4), "unknown") == 0 && strcmp(st_gguf_type_name(1000), "unknown") == 0);
}

/* Expect open_mem to fail with `code` (0: any error) and, if given, the message to contain `needle`. */
static void expect_fail(const buf *w, size_t len, int flags, int code, const char *needle, const char *what)
{
    st_gguf *g = NULL;
    int rc = st_gguf_open_mem(w->b, len, flags, &g);
    CHECKF(rc != ST_OK && (code == 0 || rc == code), "%s: rc %d (%s)", what, rc, st_errmsg());
    CHECKF(g == NULL, "%s: out set on failure", what);
    if (rc == ST_OK)
        st_gguf_close(g);
    else
        CHECKF(st_errmsg()[0] && (!needle || strstr(st_errmsg(), needle)), "%s: message \"%s\" lacks \"%s\"", what,
               st_errmsg(), needle ? needle : "");
}

static void test_valid(void)
{
    for (uint32_t align = 0; align <= 64; align += 64) {
        uint64_t n_kv;
        buf k = model_kvs(&n_kv, align);
        buf w = build(3, &k, n_kv, model_tensors, N_MODEL_TENSORS, align ? align : 32);
        st_gguf *g = NULL;
        CHECKF(st_gguf_open_mem(w.b, w.n, 0, &g) == ST_OK, "%s", st_errmsg());
        if (g) {
            check_model(g, align);
            CHECK(st_gguf_file_size(g) == w.n);
            st_gguf_close(g);
        }

        /* the same through a file and mmap */
        char path[] = "/tmp/st_test_gguf_XXXXXX";
        int fd = mkstemp(path);
        CHECK(fd >= 0 && write(fd, w.b, w.n) == (ssize_t)w.n);
        close(fd);
        g = NULL;
        CHECKF(st_gguf_open(path, 0, &g) == ST_OK, "%s", st_errmsg());
        if (g) {
            check_model(g, align);
            st_gguf_close(g);
        }
        unlink(path);

        /* every truncation fails cleanly (the file ends with tensor data) */
        for (size_t len = 0; len < w.n; len++)
            expect_fail(&w, len, 0, 0, NULL, "truncated");
        free(w.b);
        free(k.b);
    }

    /* version 2 is read the same; a vocabulary-only file needs no data section */
    buf k = {0};
    pkey(&k, "tokenizer.ggml.model", 8), pstr(&k, "gpt2");
    buf w = build(2, &k, 1, NULL, 0, 32);
    st_gguf *g = NULL;
    CHECKF(st_gguf_open_mem(w.b, w.n, 0, &g) == ST_OK, "%s", st_errmsg());
    CHECK(g && st_gguf_version(g) == 2 && st_gguf_n_tensors(g) == 0 && st_gguf_find_tensor(g, "x") == NULL);
    st_gguf_close(g);
    free(w.b);
    free(k.b);

    CHECK(st_gguf_open("/nonexistent/x.gguf", 0, &g) == ST_ENOENT && strstr(st_errmsg(), "/nonexistent/x.gguf"));
}

static void test_bad_header(void)
{
    uint64_t n_kv;
    buf k = model_kvs(&n_kv, 0);
    buf w = build(3, &k, n_kv, model_tensors, N_MODEL_TENSORS, 32);
    buf c = {0};
    put(&c, w.b, w.n);

    memcpy(c.b, "GGUV", 4);
    expect_fail(&c, c.n, 0, ST_EINVAL, "magic", "bad magic");
    memcpy(c.b, "GGUF", 4);
    uint32_t versions[] = {1, 4, 0x03000000};
    for (size_t i = 0; i < 3; i++) {
        memcpy(c.b + 4, &versions[i], 4);
        expect_fail(&c, c.n, 0, ST_ENOTSUP, "version", "bad version");
    }
    memcpy(c.b + 4, w.b + 4, 4);

    /* counts far beyond the file fail before allocating anything */
    uint64_t huge = 1ull << 60;
    memcpy(c.b + 8, &huge, 8);
    expect_fail(&c, c.n, 0, ST_EINVAL, "1152921504606846976 tensors", "huge n_tensors");
    memcpy(c.b + 8, w.b + 8, 8);
    memcpy(c.b + 16, &huge, 8);
    expect_fail(&c, c.n, 0, ST_EINVAL, NULL, "huge n_kv");
    huge = UINT64_MAX;
    memcpy(c.b + 16, &huge, 8);
    expect_fail(&c, c.n, 0, ST_EINVAL, NULL, "n_kv = 2^64-1");
    /* n_kv one more than present: the first tensor info is read as a kv */
    uint64_t more = n_kv + 1;
    memcpy(c.b + 16, &more, 8);
    expect_fail(&c, c.n, 0, 0, NULL, "n_kv + 1");
    memcpy(c.b + 16, w.b + 16, 8);

    /* first key's length past the file */
    memcpy(c.b + 24, &huge, 8);
    expect_fail(&c, c.n, 0, ST_EINVAL, "past end", "huge key length");
    free(c.b);
    free(w.b);
    free(k.b);
}

/* A file with one kv (given) and the model tensors. */
static void fail_with_kv(void (*writer)(buf *), const char *needle, const char *what)
{
    buf k = {0};
    writer(&k);
    buf w = build(3, &k, 1, model_tensors, N_MODEL_TENSORS, 32);
    expect_fail(&w, w.n, 0, ST_EINVAL, needle, what);
    free(w.b);
    free(k.b);
}
static void kv_align3(buf *k) { pkey(k, "general.alignment", 4), p32(k, 3); }
static void kv_align0(buf *k) { pkey(k, "general.alignment", 4), p32(k, 0); }
static void kv_align_u64(buf *k) { pkey(k, "general.alignment", 10), p64(k, 32); }
static void kv_bad_type(buf *k) { pkey(k, "x", 13), p8(k, 0); }
static void kv_bool2(buf *k) { pkey(k, "x", 7), p8(k, 2); }
static void kv_huge_arr(buf *k) { pkey(k, "x", 9), p32(k, 4), p64(k, 1ull << 62); }
static void kv_huge_str_arr(buf *k) { pkey(k, "x", 9), p32(k, 8), p64(k, UINT64_MAX / 2); }
static void kv_bad_elem(buf *k) { pkey(k, "x", 9), p32(k, 99), p64(k, 1); }
static void kv_deep_arr(buf *k)
{
    pkey(k, "x", 9);
    for (int i = 0; i < 3; i++)
        p32(k, 9), p64(k, 1);
    p32(k, 0), p64(k, 1), p8(k, 0);
}
static void kv_nul_key(buf *k)
{
    p64(k, 3), put(k, "a\0b", 3), p32(k, 0), p8(k, 0);
}

static void test_bad_kv(void)
{
    fail_with_kv(kv_align3, "power of two", "alignment 3");
    fail_with_kv(kv_align0, "power of two", "alignment 0");
    fail_with_kv(kv_align_u64, "alignment", "alignment as u64");
    fail_with_kv(kv_bad_type, "type 13", "value type 13");
    fail_with_kv(kv_bool2, "bool", "bool 2");
    fail_with_kv(kv_huge_arr, "count", "huge array");
    fail_with_kv(kv_huge_str_arr, "count", "huge string array");
    fail_with_kv(kv_bad_elem, "element type 99", "bad element type");
    fail_with_kv(kv_deep_arr, "nested", "deep arrays");
    fail_with_kv(kv_nul_key, "NUL", "NUL in key");

    /* duplicate keys */
    buf k = {0};
    pkey(&k, "a.b", 4), p32(&k, 1);
    pkey(&k, "a.b", 4), p32(&k, 2);
    buf w = build(3, &k, 2, model_tensors, N_MODEL_TENSORS, 32);
    expect_fail(&w, w.n, 0, ST_EINVAL, "duplicate metadata key a.b", "duplicate key");
    free(w.b);
    free(k.b);
}

static void fail_with_tensors(const tdesc *ts, int nt, int flags, int code, const char *needle, const char *what)
{
    buf w = build(3, NULL, 0, ts, nt, 32);
    expect_fail(&w, w.n, flags, code, needle, what);
    free(w.b);
}

static void test_bad_tensors(void)
{
    tdesc ts[2] = {{"a", 0, 2, {8, 2}, 0}, {"b", 0, 1, {8}, 0}};
    /* sanity: the unmodified pair opens */
    buf w = build(3, NULL, 0, ts, 2, 32);
    st_gguf *g = NULL;
    CHECKF(st_gguf_open_mem(w.b, w.n, 0, &g) == ST_OK, "%s", st_errmsg());
    st_gguf_close(g);
    free(w.b);

    ts[1].off_add = 4; /* misaligned */
    fail_with_tensors(ts, 2, 0, ST_EINVAL, "alignment", "misaligned offset");
    ts[1].off_add = 32; /* past the end */
    fail_with_tensors(ts, 2, 0, ST_ERANGE, "tensor b: data", "offset past EOF");
    ts[1].off_add = UINT64_MAX - 95; /* + its offset 64 = 2^64 - 32: aligned, the end wraps */
    fail_with_tensors(ts, 2, 0, ST_ERANGE, "past end", "offset wrapping");
    ts[1].off_add = 0;

    ts[1].name = "a";
    fail_with_tensors(ts, 2, 0, ST_EINVAL, "duplicate tensor name a", "duplicate tensor");
    ts[1].name = "b";

    tdesc t0 = {"z", 0, 2, {8, 0}, 0};
    fail_with_tensors(&t0, 1, 0, ST_EINVAL, "dim 1 is 0", "zero dim");
    tdesc t5 = {"z", 0, 5, {1, 1, 1, 1, 1}, 0};
    fail_with_tensors(&t5, 1, 0, ST_EINVAL, "n_dims 5", "5 dims");
    tdesc tq = {"q", 8, 1, {48}, 0};
    fail_with_tensors(&tq, 1, 0, ST_EINVAL, "block size", "Q8_0 row of 48");
    tdesc tov = {"big", 0, 3, {1ull << 32, 1ull << 32, 4}, 0};
    fail_with_tensors(&tov, 1, 0, ST_EINVAL, "overflow", "element count overflow");
    tdesc tsz = {"big", 0, 2, {1ull << 31, 1ull << 31}, 0};
    fail_with_tensors(&tsz, 1, 0, 0, NULL, "2^62 floats");

    /* unsupported and unknown types */
    tdesc tk = {"blk.0.ffn_up.weight", 12, 2, {256, 2}, 0};
    fail_with_tensors(&tk, 1, 0, ST_ENOTSUP, "Q4_K", "Q4_K");
    w = build(3, NULL, 0, &tk, 1, 32);
    g = NULL;
    CHECKF(st_gguf_open_mem(w.b, w.n, ST_GGUF_ALLOW_UNKNOWN_TYPES, &g) == ST_OK, "%s", st_errmsg());
    if (g) {
        CHECK(st_gguf_tensor_raw_type(g, 0) == 12 && st_gguf_tensor(g, 0)->nbytes == 2 * 144);
        st_gguf_close(g);
    }
    free(w.b);
    tdesc tu = {"u", 77, 1, {4}, 0};
    fail_with_tensors(&tu, 1, ST_GGUF_ALLOW_UNKNOWN_TYPES, ST_ENOTSUP, "77", "type 77");
}

/* ---- real files ----------------------------------------------------------------------- */
static void check_real(const char *path, int vocab_only)
{
    st_gguf *g = NULL;
    uint64_t t0 = st_now_ns();
    int rc = st_gguf_open(path, 0, &g);
    CHECKF(rc == ST_OK, "%s: %s", path, st_errmsg());
    if (rc)
        return;
    fprintf(stderr, "%s: %zu kv, %zu tensors, opened in %.1f ms\n", path, st_gguf_n_kv(g), st_gguf_n_tensors(g),
            (double)(st_now_ns() - t0) / 1e6);
    if (vocab_only)
        CHECK(st_gguf_n_tensors(g) == 0);
    st_gguf_type et;
    size_t n = 0;
    CHECK(st_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n) == ST_OK && et == ST_GGUF_STRING && n > 1000);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if (st_gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len) != ST_OK) {
            CHECKF(0, "token %zu", i);
            break;
        }
        total += len;
    }
    CHECK(total > 0);
    for (size_t i = 0; i < st_gguf_n_tensors(g); i++)
        CHECK(st_gguf_find_tensor(g, st_gguf_tensor(g, i)->name) == st_gguf_tensor(g, i));
    st_gguf_close(g);
}

static void test_fixtures(void)
{
    const char *fx = test_fixtures_dir();
    if (!fx) {
        fprintf(stderr, "note: ../shared/fixtures absent, vocabulary GGUF checks skipped\n");
    } else {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/vocab", fx);
        DIR *d = opendir(dir);
        int seen = 0;
        struct dirent *e;
        while (d && (e = readdir(d))) {
            size_t l = strlen(e->d_name);
            if (l < 5 || strcmp(e->d_name + l - 5, ".gguf") != 0)
                continue;
            char path[8400];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            check_real(path, 1);
            seen++;
        }
        if (d)
            closedir(d);
        CHECK(seen > 0);
    }
    const char *model = test_default_model();
    if (!model)
        fprintf(stderr, "note: default model absent (set ST_TEST_MODEL), model GGUF check skipped\n");
    else
        check_real(model, 0);
}

int main(void)
{
    test_valid();
    test_bad_header();
    test_bad_kv();
    test_bad_tensors();
    test_fixtures();
    return test_done();
}
