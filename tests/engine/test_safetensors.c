/* safetensors reader: single files, Hugging Face directories (single and
 * sharded, with config.json) built in a temporary directory, and malformed
 * headers that must each fail with a message naming the problem. */
#define _GNU_SOURCE
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/st_common.h"
#include "engine/safetensors.h"
#include "tests/test.h"

/* ---- a tiny writer ---------------------------------------------------------------- */
typedef struct {
    const char *name, *dtype;
    int n_dims;
    int64_t shape[5]; /* HF order, outermost first */
} tdesc;

static size_t dtype_size(const char *dt) { return strcmp(dt, "F32") == 0 ? 4 : strcmp(dt, "I64") == 0 ? 8 : 2; }

static size_t tbytes(const tdesc *t)
{
    size_t n = dtype_size(t->dtype);
    for (int d = 0; d < t->n_dims; d++)
        n *= (size_t)t->shape[d];
    return n;
}

static uint8_t pattern(int k, size_t i) { return (uint8_t)(i * 5 + (size_t)k * 31 + 3); }

/* One file's bytes: u64 N | header | data (tensors back to back, in order). */
static st_strbuf make_file(const tdesc *ts, int nt, const char *extra_header)
{
    st_strbuf h, f;
    st_sb_init(&h);
    st_sb_init(&f);
    st_sb_puts(&h, "{");
    if (extra_header)
        st_sb_printf(&h, "%s,", extra_header);
    size_t off = 0;
    for (int k = 0; k < nt; k++) {
        st_sb_printf(&h, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", k ? "," : "", ts[k].name, ts[k].dtype);
        for (int d = 0; d < ts[k].n_dims; d++)
            st_sb_printf(&h, "%s%lld", d ? "," : "", (long long)ts[k].shape[d]);
        st_sb_printf(&h, "],\"data_offsets\":[%zu,%zu]}", off, off + tbytes(&ts[k]));
        off += tbytes(&ts[k]);
    }
    st_sb_puts(&h, "}");
    while (h.len % 8) /* the reference writer pads with spaces */
        st_sb_puts(&h, " ");
    uint64_t n = h.len;
    st_sb_putn(&f, (const char *)&n, 8);
    st_sb_putn(&f, h.buf, h.len);
    for (int k = 0; k < nt; k++)
        for (size_t i = 0; i < tbytes(&ts[k]); i++) {
            char c = (char)pattern(k, i);
            st_sb_putn(&f, &c, 1);
        }
    st_sb_free(&h);
    return f;
}

/* A file from a raw header string, padded with `pad` spaces, and
 * `data_len` zero bytes of data. */
static st_strbuf raw_file_pad(const char *header, size_t pad, size_t data_len)
{
    st_strbuf f;
    st_sb_init(&f);
    uint64_t n = strlen(header) + pad;
    st_sb_putn(&f, (const char *)&n, 8);
    st_sb_puts(&f, header);
    for (size_t i = 0; i < pad; i++)
        st_sb_putn(&f, " ", 1);
    for (size_t i = 0; i < data_len; i++)
        st_sb_putn(&f, "", 1);
    return f;
}

/* ... padded to 8 bytes as the reference writer does. */
static st_strbuf raw_file(const char *header, size_t data_len)
{
    return raw_file_pad(header, (8 - strlen(header) % 8) % 8, data_len);
}

static void write_file(const char *dir, const char *name, const char *bytes, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    CHECK(fp && fwrite(bytes, 1, n, fp) == n);
    if (fp)
        fclose(fp);
}

static const tdesc model[] = {
    {"model.embed_tokens.weight", "F32", 2, {4, 8}},
    {"model.norm.weight", "F16", 1, {3}},
    {"lm_head.scale", "BF16", 0, {0}},
    {"model.empty", "F32", 2, {0, 5}},
    {"model.layers.0.mlp.up_proj.weight", "BF16", 3, {2, 3, 4}},
};
#define N_MODEL 5

/* model[k] as read back; its data was written with pattern index pk */
static void check_tensor(const st_safetensors *st, int k, int pk)
{
    const tdesc *d = &model[k];
    const st_tensor *t = st_safetensors_find(st, d->name);
    CHECKF(t != NULL, "tensor %s", d->name);
    if (!t)
        return;
    CHECK(strcmp(t->name, d->name) == 0);
    st_dtype want = strcmp(d->dtype, "F32") == 0 ? ST_F32 : strcmp(d->dtype, "F16") == 0 ? ST_F16 : ST_BF16;
    CHECK(t->type == want);
    CHECK(t->n_dims == (d->n_dims ? d->n_dims : 1));
    for (int x = 0; x < 4; x++) /* reversed: ne[0] is the last HF dim */
        CHECKF(t->ne[x] == (x < d->n_dims ? d->shape[d->n_dims - 1 - x] : 1), "%s ne[%d] = %lld", d->name, x,
               (long long)t->ne[x]);
    CHECK(t->nbytes == tbytes(d));
    int same = 1;
    for (size_t i = 0; i < t->nbytes; i++)
        same &= ((const uint8_t *)t->data)[i] == pattern(pk, i);
    CHECKF(same, "%s data", d->name);
}

static void check_model(const st_safetensors *st)
{
    CHECK(st_safetensors_n_tensors(st) == N_MODEL);
    for (int k = 0; k < N_MODEL; k++)
        check_tensor(st, k, k);
    CHECK(st_safetensors_find(st, "nope") == NULL);
    CHECK(st_safetensors_tensor(st, N_MODEL) == NULL);
}

static void expect_fail(const st_strbuf *f, size_t len, int code, const char *needle, const char *what)
{
    st_safetensors *st = NULL;
    int rc = st_safetensors_open_mem(f->buf, len, &st);
    CHECKF(rc != ST_OK && (code == 0 || rc == code), "%s: rc %d (%s)", what, rc, st_errmsg());
    CHECKF(st == NULL, "%s: out set", what);
    if (rc == ST_OK)
        st_safetensors_close(st);
    else
        CHECKF(!needle || strstr(st_errmsg(), needle), "%s: message \"%s\" lacks \"%s\"", what, st_errmsg(), needle);
}

static void test_single(void)
{
    st_strbuf f = make_file(model, N_MODEL, "\"__metadata__\":{\"format\":\"pt\"}");
    st_safetensors *st = NULL;
    CHECKF(st_safetensors_open_mem(f.buf, f.len, &st) == ST_OK, "%s", st_errmsg());
    if (st) {
        check_model(st);
        CHECK(st_safetensors_config(st) == NULL && strcmp(st_safetensors_dir(st), "") == 0);
        const st_tensor *e = st_safetensors_find(st, "model.empty");
        CHECK(e && e->ne[0] == 5 && e->ne[1] == 0 && e->nbytes == 0);
        st_safetensors_close(st);
    }
    /* every truncation fails (the file ends with tensor data) */
    for (size_t len = 0; len < f.len; len++)
        expect_fail(&f, len, 0, NULL, "truncated");
    st_sb_free(&f);
}

static void test_bad_headers(void)
{
    static const struct {
        const char *header;
        size_t data;
        int code;
        const char *needle;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, ST_ENOTSUP, "I64"},
        {"{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, ST_ENOTSUP, "F8_E4M3"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, ST_EINVAL, "need 8"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 8, ST_ERANGE, "outside"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, ST_ERANGE, "outside"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, ST_EINVAL, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, ST_EINVAL, "shape[0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, ST_EINVAL, "shape[0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, ST_ENOTSUP, "dimensions"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0, ST_EINVAL,
         "overflow"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, ST_EINVAL, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", 4, ST_EINVAL, "data_offsets"},
        {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, ST_EINVAL, "dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, ST_EINVAL, "shape"},
        {"{\"a\":[1]}", 0, ST_EINVAL, "not an object"},
        {"[]", 0, ST_EINVAL, "not a JSON object"},
        {"{\"a\":", 0, ST_EINVAL, "header"},
        {"{\"__metadata__\":{\"k\":1}}", 0, ST_EINVAL, "__metadata__"},
        {"{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, ST_EINVAL, "empty"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, ST_EINVAL, "duplicate"},
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(cases); i++) {
        st_strbuf f = raw_file(cases[i].header, cases[i].data);
        expect_fail(&f, f.len, cases[i].code, cases[i].needle, cases[i].header);
        st_sb_free(&f);
    }
    /* a header length beyond the file, and beyond any sane size */
    st_strbuf f = raw_file("{}", 0);
    uint64_t n = f.len - 8 + 1; /* one byte past the end */
    memcpy(f.buf, &n, 8);
    expect_fail(&f, f.len, ST_EINVAL, "header length", "N > size - 8");
    n = UINT64_MAX;
    memcpy(f.buf, &n, 8);
    expect_fail(&f, f.len, ST_EINVAL, "header length", "N = 2^64-1");
    st_sb_free(&f);
    /* the minimal valid file: no tensors; and adjacent + empty tensors do not overlap */
    f = raw_file("{}", 0);
    st_safetensors *st = NULL;
    CHECK(st_safetensors_open_mem(f.buf, f.len, &st) == ST_OK && st_safetensors_n_tensors(st) == 0);
    st_safetensors_close(st);
    st_sb_free(&f);
    f = raw_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[2,2]},"
                 "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]}}",
                 8);
    st = NULL;
    CHECKF(st_safetensors_open_mem(f.buf, f.len, &st) == ST_OK, "%s", st_errmsg());
    st_safetensors_close(st);
    st_sb_free(&f);
    /* a header length that leaves the data misaligned for the element type
     * fails (the buffer itself is malloc'd, so 8-aligned); F16 needs only
     * an even start, and an empty tensor reads nothing */
    static const struct {
        const char *header; /* 54 or 55 bytes */
        size_t pad;
        int ok;
    } align[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 0},  /* data at 62 */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 3, 0},  /* 65 */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 2, 1},  /* 64 */
        {"{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 0, 1},  /* 62 */
        {"{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 0, 0}, /* 63 */
        {"{\"a\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, 1}, /* 63, empty */
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(align); i++) {
        f = raw_file_pad(align[i].header, align[i].pad, 8);
        if (align[i].ok) {
            st = NULL;
            CHECKF(st_safetensors_open_mem(f.buf, f.len, &st) == ST_OK, "aligned case %zu: %s", i, st_errmsg());
            st_safetensors_close(st);
        } else {
            expect_fail(&f, f.len, ST_EINVAL, "not aligned", align[i].header);
        }
        st_sb_free(&f);
    }
}

/* ---- directories --------------------------------------------------------------------- */
static void rm_dir(const char *dir)
{
    static const char *names[] = {"model.safetensors", "model-00001-of-00002.safetensors",
                                  "model-00002-of-00002.safetensors", "model.safetensors.index.json",
                                  "config.json", "other.safetensors"};
    char p[4096];
    for (size_t i = 0; i < ST_ARRAY_LEN(names); i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void write_index(const char *dir, const char *s0, const char *s1, const char *extra)
{
    st_strbuf ix;
    st_sb_init(&ix);
    st_sb_puts(&ix, "{\"metadata\":{\"total_size\":1},\"weight_map\":{");
    for (int k = 0; k < N_MODEL; k++)
        st_sb_printf(&ix, "%s\"%s\":\"%s\"", k ? "," : "", model[k].name, k < 2 ? s0 : s1);
    if (extra)
        st_sb_puts(&ix, extra);
    st_sb_puts(&ix, "}}");
    write_file(dir, "model.safetensors.index.json", ix.buf, ix.len);
    st_sb_free(&ix);
}

static void test_dirs(void)
{
    char dir[] = "/tmp/st_test_safetensors_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    st_safetensors *st = NULL;
    CHECK(st_safetensors_open(dir, &st) == ST_ENOENT && strstr(st_errmsg(), "model.safetensors"));

    /* single file + config.json */
    st_strbuf f = make_file(model, N_MODEL, NULL);
    write_file(dir, "model.safetensors", f.buf, f.len);
    const char *cfg = "{\"hidden_size\": 576, \"model_type\": \"llama\"}";
    write_file(dir, "config.json", cfg, strlen(cfg));
    CHECKF(st_safetensors_open(dir, &st) == ST_OK, "%s", st_errmsg());
    if (st) {
        check_model(st);
        CHECK(st_json_get_num(st_safetensors_config(st), "hidden_size", 0) == 576);
        CHECK(strcmp(st_safetensors_dir(st), dir) == 0);
        st_safetensors_close(st);
    }
    /* the file alone: no config, dir is its directory */
    char p[4200];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    st = NULL;
    CHECKF(st_safetensors_open(p, &st) == ST_OK, "%s", st_errmsg());
    if (st) {
        CHECK(st_safetensors_config(st) == NULL && strcmp(st_safetensors_dir(st), dir) == 0);
        st_safetensors_close(st);
    }
    st_sb_free(&f);
    /* a broken config.json fails the open, naming the file */
    write_file(dir, "config.json", "{\"a\":", 5);
    CHECK(st_safetensors_open(dir, &st) == ST_EINVAL && strstr(st_errmsg(), "config.json"));
    write_file(dir, "config.json", cfg, strlen(cfg));

    /* sharded: tensors 0-1 in shard 1, 2-4 in shard 2; the index wins over model.safetensors */
    const char *s0 = "model-00001-of-00002.safetensors", *s1 = "model-00002-of-00002.safetensors";
    st_strbuf a = make_file(model, 2, NULL), b = make_file(model + 2, 3, NULL);
    write_file(dir, s0, a.buf, a.len);
    write_file(dir, s1, b.buf, b.len);
    unlink(p);
    write_index(dir, s0, s1, NULL);
    st = NULL;
    CHECKF(st_safetensors_open(dir, &st) == ST_OK, "%s", st_errmsg());
    if (st) {
        CHECK(st_safetensors_n_tensors(st) == N_MODEL);
        for (int k = 0; k < N_MODEL; k++)
            check_tensor(st, k, k < 2 ? k : k - 2);
        st_safetensors_close(st);
    }
    st_sb_free(&a);
    st_sb_free(&b);

    /* listed in the wrong shard / missing from its shard */
    write_index(dir, s1, s0, NULL);
    CHECK(st_safetensors_open(dir, &st) == ST_ENOENT && strstr(st_errmsg(), "not in its shard"));
    write_index(dir, s0, s1, ",\"extra.weight\":\"model-00001-of-00002.safetensors\"");
    CHECK(st_safetensors_open(dir, &st) == ST_ENOENT && strstr(st_errmsg(), "extra.weight"));
    /* shard paths that leave the directory, and a missing shard */
    write_index(dir, s0, "../x.safetensors", NULL);
    CHECK(st_safetensors_open(dir, &st) == ST_EINVAL && strstr(st_errmsg(), "plain file name"));
    write_index(dir, s0, "sub/x.safetensors", NULL);
    CHECK(st_safetensors_open(dir, &st) == ST_EINVAL && strstr(st_errmsg(), "plain file name"));
    write_index(dir, s0, "other.safetensors", NULL);
    CHECK(st_safetensors_open(dir, &st) == ST_ENOENT && strstr(st_errmsg(), "other.safetensors"));
    /* the same tensor in two shards */
    st_strbuf dup = make_file(model, 1, NULL);
    write_file(dir, "other.safetensors", dup.buf, dup.len);
    st_sb_free(&dup);
    write_index(dir, s0, s1, ",\"x\":\"other.safetensors\"");
    CHECK(st_safetensors_open(dir, &st) == ST_EINVAL && strstr(st_errmsg(), "duplicate tensor name"));
    write_file(dir, "model.safetensors.index.json", "{\"weight_map\": {}}", 18);
    CHECK(st_safetensors_open(dir, &st) == ST_EINVAL && strstr(st_errmsg(), "weight_map"));

    rm_dir(dir);
    CHECK(st_safetensors_open("/nonexistent/model", &st) == ST_ENOENT);
}

int main(void)
{
    test_single();
    test_bad_headers();
    test_dirs();
    return test_done();
}
