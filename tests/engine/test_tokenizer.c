/* Tokenizer conformance: the llama.cpp vocabulary fixtures (GGUF + reference
 * ids from the Hugging Face tokenizers), tokenizer.json against GGUF,
 * decode/encode round trips, the streaming detokenizer, and the default
 * model's tokenizer. Needs ../shared/fixtures (skips without it). */
#include <stdint.h>

#include "common/st_common.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"
#include "tests/test.h"

#define SEP "\n__ggml_vocab_test__\n"

typedef struct {
    char *strs[128];  /* test strings (NUL-terminated, may be empty) */
    size_t lens[128];
    int32_t *ids[128]; /* reference ids */
    int n_ids[128];
    int n;
} cases;

/* X.inp: each string followed by SEP. X.out: one line of ids per string. */
static int load_cases(const char *inp_path, const char *out_path, cases *c)
{
    char *inp, *outp;
    size_t il, ol;
    memset(c, 0, sizeof *c);
    if (st_read_file(inp_path, &inp, &il) || st_read_file(out_path, &outp, &ol))
        return -1;
    const char *p = inp, *end = inp + il;
    while (p < end && c->n < 128) {
        const char *q = strstr(p, SEP);
        if (!q)
            break;
        c->lens[c->n] = (size_t)(q - p);
        c->strs[c->n] = st_xmalloc(c->lens[c->n] + 1);
        memcpy(c->strs[c->n], p, c->lens[c->n]);
        c->strs[c->n][c->lens[c->n]] = 0;
        c->n++;
        p = q + strlen(SEP);
    }
    char *line = outp;
    for (int i = 0; i < c->n; i++) {
        char *nl = strchr(line, '\n');
        if (!nl) {
            c->n = i;
            break;
        }
        *nl = 0;
        c->ids[i] = st_xmalloc(sizeof(int32_t) * (strlen(line) + 1));
        char *s = line, *e;
        for (long v; (v = strtol(s, &e, 10)), e != s; s = e)
            c->ids[i][c->n_ids[i]++] = (int32_t)v;
        line = nl + 1;
    }
    free(inp);
    free(outp);
    return 0;
}

static void free_cases(cases *c)
{
    for (int i = 0; i < c->n; i++) {
        free(c->strs[i]);
        free(c->ids[i]);
    }
}

static int encode_all(const st_tokenizer *t, const char *s, size_t n, int special, int32_t **ids)
{
    int k = st_tok_encode(t, s, n, special, NULL, 0);
    *ids = st_xmalloc(sizeof(int32_t) * (size_t)(k > 0 ? k : 1));
    if (k > 0)
        CHECK(st_tok_encode(t, s, n, special, *ids, k) == k);
    return k;
}

static void print_ids(const char *what, const int32_t *ids, int n)
{
    fprintf(stderr, "  %s:", what);
    for (int i = 0; i < n; i++)
        fprintf(stderr, " %d", (int)ids[i]);
    fprintf(stderr, "\n");
}

/* decode(encode(x)) == x, and the streaming detokenizer gives the same bytes. */
static void check_roundtrip(const st_tokenizer *t, const char *s, size_t n, const int32_t *ids, int k)
{
    int need = st_tok_decode(t, ids, k, 0, NULL, 0);
    CHECK(need >= 0);
    char *dec = st_xmalloc((size_t)need + 1);
    CHECK(st_tok_decode(t, ids, k, 0, dec, need) == need);
    CHECKF((size_t)need == n && memcmp(dec, s, n) == 0, "round trip of \"%s\" gave \"%.*s\"", s, need, dec);

    st_detok d;
    st_detok_init(&d, t, 0);
    char *stream = st_xmalloc((size_t)need + 1024), buf[512];
    int len = 0;
    for (int i = 0; i < k; i++) {
        int w = st_detok_feed(&d, ids[i], buf, sizeof buf);
        CHECK(w >= 0);
        if (w > 0 && len + w <= need + 512) {
            memcpy(stream + len, buf, (size_t)w);
            len += w;
        }
    }
    int w = st_detok_flush(&d, buf, sizeof buf);
    if (w > 0 && len + w <= need + 512) {
        memcpy(stream + len, buf, (size_t)w);
        len += w;
    }
    CHECKF(len == need && memcmp(stream, dec, (size_t)need) == 0, "streaming decode of \"%s\" differs", s);
    free(dec);
    free(stream);
}

static st_tokenizer *load_gguf_tok(const char *path, st_gguf **g)
{
    st_tokenizer *t = NULL;
    *g = NULL;
    if (st_gguf_open(path, 0, g)) {
        CHECKF(0, "open %s: %s", path, st_errmsg());
        return NULL;
    }
    if (st_tok_load_gguf(*g, &t)) {
        CHECKF(0, "tokenizer of %s: %s", path, st_errmsg());
        st_gguf_close(*g);
        *g = NULL;
        return NULL;
    }
    return t;
}

/* Every fixture string against the reference ids; returns how many pass. */
static int conformance(const st_tokenizer *t, const cases *c, const char *family)
{
    int pass = 0;
    for (int i = 0; i < c->n; i++) {
        int32_t *ids;
        int k = encode_all(t, c->strs[i], c->lens[i], 0, &ids);
        int ok = k == c->n_ids[i] && memcmp(ids, c->ids[i], sizeof(int32_t) * (size_t)k) == 0;
        CHECKF(ok, "%s: string %d \"%s\"", family, i, c->strs[i]);
        if (!ok) {
            print_ids("want", c->ids[i], c->n_ids[i]);
            print_ids("got ", ids, k);
        }
        pass += ok;
        if (k >= 0)
            check_roundtrip(t, c->strs[i], c->lens[i], ids, k);
        free(ids);
    }
    return pass;
}

/* fixtures/vocab/ggml-vocab-<family>.gguf<ext> */
static const char *vocab_path(char *buf, size_t cap, const char *fx, const char *family, const char *ext)
{
    if (snprintf(buf, cap, "%s/vocab/ggml-vocab-%s.gguf%s", fx, family, ext) >= (int)cap)
        buf[0] = 0;
    return buf;
}

static const char *families[] = {"gpt-2", "starcoder", "llama-bpe", "qwen2", "phi-3", "llama-spm"};

int main(void)
{
    const char *fx = test_fixtures_dir();
    if (!fx)
        TEST_SKIP("../shared/fixtures is absent (tokenizer conformance needs the vocabulary fixtures)");
    char p1[4096], p2[4096];
    for (size_t f = 0; f < ST_ARRAY_LEN(families); f++) {
        vocab_path(p1, sizeof p1, fx, families[f], ".inp");
        vocab_path(p2, sizeof p2, fx, families[f], ".out");
        cases c;
        if (load_cases(p1, p2, &c)) {
            CHECKF(0, "cannot read %s / .out", p1);
            continue;
        }
        vocab_path(p1, sizeof p1, fx, families[f], "");
        st_gguf *g;
        st_tokenizer *t = load_gguf_tok(p1, &g);
        if (t) {
            int pass = conformance(t, &c, families[f]);
            fprintf(stderr, "conformance %-10s %d/%d\n", families[f], pass, c.n);
            st_tok_free(t);
            st_gguf_close(g);
        }
        free_cases(&c);
    }
    return test_done();
}
