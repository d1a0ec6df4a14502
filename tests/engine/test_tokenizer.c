/* Tokenizer conformance: the llama.cpp vocabulary fixtures (GGUF + reference
 * ids from the Hugging Face tokenizers), tokenizer.json against GGUF,
 * decode/encode round trips, the streaming detokenizer, and the default
 * model's tokenizer. Needs ../shared/fixtures (skips without it). */
#include <pthread.h>
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
    CHECKF((size_t)need == n && memcmp(dec, s, n) == 0, "round trip of \"%.60s\" (%zu bytes) gave \"%.60s\" (%d)", s, n,
           dec, need);

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
    CHECKF(len == need && memcmp(stream, dec, (size_t)need) == 0, "streaming decode of \"%.60s\" differs", s);
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

/* The llama2 tokenizer.json fixture holds a different 32000-token SPM
 * vocabulary from the llama-spm GGUF (its "\xE2\x96\x81Hello" is 22557, not 15043), so
 * its ids are checked against the Hugging Face tokenizers library run on
 * that file (tokenizers 0.x, Tokenizer.from_file(...).encode(s,
 * add_special_tokens=False)) over the fixture strings, one line each. */
static const char *const llama2_json_ref[] = {
    "613 286 28705 28781 28705 29039 3370",
    "18912 10018 301",
    "",
    "259",
    "2287",
    "260",
    "28705 12",
    "28705 13",
    "28705 13 13",
    "28705 13 13 13",
    "28705 12 13",
    "22557 1526",
    "28705 22557 1526",
    "22557 3304",
    "28705 22557 3304",
    "28705 22557 3304 28808",
    "22557 28725 1526 28808",
    "28705 22557 28725 1526 28808",
    "28705 456 349 28705 243 162 169 156 28723 5222",
    "275 28734 28781 28783 28705 28787 17512 17722 18099 4053 9538",
    "2409 6986 929 2216 11134 17260 2073",
    "28705 30208 29847 30078 30890 30460 31692 31196 30845 30326 31396 30326 31379 29847 31032 228 161 132 30964 31032 31396 31901",
    "28705 30012 325 8027 28731 28705 243 162 155 185 29274 243 162 143 174 29096 325 27772 877 6054 278 3078 6486 601 28731 28705 30129 325 5041 877 27813 369 659 871 1216 6029 28731",
    "22557",
    "28705 22557",
    "259 22557",
    "2287 22557",
    "260 22557",
    "260 22557 13 2287 22557",
    "28705 325",
    "28705 13 327",
    "464 4204",
    "22557 28725 337 28742 455 28808 1602 460 368 28705 30707 1550 29242 30023 29010 24175 29487 29089 28740 28770 28740 28781 28740 28782 28740 29354 30328",
    "918 3946 13915",
    "28705 28770",
    "28705 28770 28770",
    "28705 28770 28770 28770",
    "28705 28770 28770 28770 28770",
    "28705 28770 28770 28770 28770 28770",
    "28705 28770 28770 28770 28770 28770 28770",
    "28705 28770 28770 28770 28770 28770 28770 28770",
    "28705 28770 28770 28770 28770 28770 28770 28770 28770",
    "28705 28770 28770 28770 28770 28770 28770 28770 28770 28770",
    "334 30389 28708 11004 29539 28707",
    "28705 2312 2178",
    "28705 13 28705 13 13 28705 13 13 13 28705 12 28705 12 12 28705 12 13 259 13 2287 13 260 13 355 13 30012 325 8027 28731 28705 243 162 155 185 29274 243 162 143 174 29096 325 27772 877 6054 278 3078 6486 601 28731 28705 30129 28705 243 162 169 156 243 162 169 156 28705 28770 28705 28770 28770 28705 28770 28770 28770 28705 28770 28770 28770 28770 28705 28770 28770 28770 28770 28770 28705 28770 28770 28770 28770 28770 28770 28705 28770 28770 28770 28770 28770 28770 28770 28705 28770 28770 28770 28770 28770 28770 28770 28770 28705 28770 28723 28770 28705 28770 568 28770 28705 28770 1101 28770 28705 30208 29847 30078 30890 30460 31692 31196 30845 30326 31396 30326 31379 29847 31032 30707 1550 29242 30023 29010 24175 29487 29089 28740 28770 28740 28781 28740 28782 28740 29354 30328 28705 18697 965 14203 2409 6986 929 2216 11134 17260 2073 23713 25135 13940 13940 13940 28832 2539 2539 3406 568 19010 3946 8908 8908 8908 315 28742 333 750 464 28707 738 400 28742 28713 736 28725 464 896 368 1864 28804 464 28755 459 1864 315 28742 584 1038 378 28725 464 28757 368 737 741 9510 28804 816 28742 28790 28706 264 28742 28714 28758",
};

/* tokenizer.json and GGUF of the same family give the same ids. */
static int parse_ids(const char *line, int32_t *ids)
{
    int n = 0;
    char *e;
    for (long v; (v = strtol(line, &e, 10)), e != line; line = e)
        ids[n++] = (int32_t)v;
    return n;
}

/* ref_lines: when the json's vocabulary differs from the GGUF's, its own
 * reference ids (one line per fixture string) replace the comparison. */
static void json_vs_gguf(const char *fx, const char *json_dir, const char *family, const char *const *ref_lines)
{
    char path[4096], inp[4096], outp[4096];
    snprintf(path, sizeof path, "%s/tokenizers/%s/tokenizer.json", fx, json_dir);
    st_tokenizer *tj = NULL, *tg;
    st_gguf *g;
    double t0 = st_now_s();
    int rc = st_tok_load_json(path, &tj);
    CHECKF(rc == 0, "load %s: %s", path, st_errmsg());
    if (rc)
        return;
    fprintf(stderr, "loaded %s/tokenizer.json in %.0f ms (vocab %d)\n", json_dir, (st_now_s() - t0) * 1e3,
            st_tok_vocab_size(tj));
    tg = load_gguf_tok(vocab_path(path, sizeof path, fx, family, ""), &g);
    cases c;
    if (!tg || load_cases(vocab_path(inp, sizeof inp, fx, family, ".inp"), vocab_path(outp, sizeof outp, fx, family, ".out"), &c)) {
        st_tok_free(tj);
        return;
    }
    CHECK(st_tok_kind_of(tj) == st_tok_kind_of(tg));
    int same = 0, ref = 0;
    for (int i = 0; i < c.n; i++) {
        int32_t *a, *b;
        int ka = encode_all(tj, c.strs[i], c.lens[i], 0, &a), kb = encode_all(tg, c.strs[i], c.lens[i], 0, &b);
        if (ref_lines) {
            kb = parse_ids(ref_lines[i], b = realloc(b, sizeof(int32_t) * (strlen(ref_lines[i]) + 1)));
        }
        int ok = ka == kb && memcmp(a, b, sizeof(int32_t) * (size_t)ka) == 0;
        CHECKF(ok, "%s json vs %s: string %d \"%s\"", json_dir, ref_lines ? "its reference" : "gguf", i, c.strs[i]);
        if (!ok) {
            print_ids("gguf", b, kb);
            print_ids("json", a, ka);
        }
        same += ok;
        ref += ka == c.n_ids[i] && memcmp(a, c.ids[i], sizeof(int32_t) * (size_t)ka) == 0;
        if (ka >= 0)
            check_roundtrip(tj, c.strs[i], c.lens[i], a, ka);
        free(a);
        free(b);
    }
    if (ref_lines)
        fprintf(stderr, "json %-7s vs its HF reference: %d/%d same ids\n", json_dir, same, c.n);
    else
        fprintf(stderr, "json %-7s vs gguf %-10s: %d/%d same ids, %d/%d match the reference\n", json_dir, family, same,
                c.n, ref, c.n);
    if (!strcmp(json_dir, "qwen3")) {
        /* its NFC normalizer: a decomposed "e" + U+0301 encodes as the precomposed "é" */
        int32_t *x, *y;
        int kx = encode_all(tj, "caf\xC3\xA9 na\xC3\xAFve", 12, 0, &x);
        int ky = encode_all(tj, "cafe\xCC\x81 nai\xCC\x88ve", 14, 0, &y);
        CHECK(kx > 0 && kx == ky && memcmp(x, y, sizeof(int32_t) * (size_t)kx) == 0);
        free(x);
        free(y);
    }
    if (st_tok_kind_of(tj) == ST_TOK_BPE) /* the llama2 config carries no template */
        CHECK(st_tok_chat_template(tj) != NULL);
    CHECK(st_tok_eos(tj) >= 0 && st_tok_is_eog(tj, st_tok_eos(tj)));
    free_cases(&c);
    st_tok_free(tj);
    st_tok_free(tg);
    st_gguf_close(g);
}

/* Special tokens are single tokens only with parse_special; text around
 * them is encoded as if they were not there. */
static void check_special(const st_tokenizer *t, const char *special, const char *word)
{
    char text[256];
    snprintf(text, sizeof text, "%s%s", special, word);
    int32_t sid = st_tok_lookup(t, special, strlen(special)), *ids, *wids;
    CHECKF(sid >= 0 && st_tok_is_special(t, sid), "%s is a special token", special);
    int k = encode_all(t, text, strlen(text), 1, &ids), kw = encode_all(t, word, strlen(word), 0, &wids);
    CHECKF(k == kw + 1 && ids[0] == sid && memcmp(ids + 1, wids, sizeof(int32_t) * (size_t)kw) == 0,
           "\"%s\" with parse_special", text);
    free(ids);
    k = encode_all(t, text, strlen(text), 0, &ids);
    int has = 0;
    for (int i = 0; i < k; i++)
        has |= ids[i] == sid;
    CHECKF(k > 1 && !has, "\"%s\" without parse_special must not give the special token", text);
    free(ids);
    /* decode skips it on request */
    char out[256];
    k = encode_all(t, text, strlen(text), 1, &ids);
    int n = st_tok_decode(t, ids, k, 1, out, sizeof out);
    CHECKF(n == (int)strlen(word) && memcmp(out, word, (size_t)n) == 0, "skip_special decode of \"%s\"", text);
    free(ids);
    free(wids);
}

/* A long mixed prompt: timing (information only) and agreement between
 * threads encoding at once on one tokenizer. */
typedef struct {
    const st_tokenizer *t;
    const char *text;
    size_t n;
    int32_t *ids;
    int k;
} job;

static void *encode_job(void *arg)
{
    job *j = arg;
    j->k = st_tok_encode(j->t, j->text, j->n, 1, j->ids, 1 << 16);
    return NULL;
}

static void check_long_prompt(const st_tokenizer *t, const char *name)
{
    static const char *parts[] = {"The quick brown fox jumps over the lazy dog. ", "int main(void) { return 42; }\n",
                                  "Der Äpfel 1234567 café naïve — «quotes» ", "\t\t  indented\n\n", "日本語のテキスト。 ",
                                  "Hello, y'all! How're you 😁? ", "<|im_start|>user\n"};
    size_t cap = 64 << 10, n = 0;
    char *text = st_xmalloc(cap);
    for (int i = 0; n + 64 < cap - 64; i++) {
        const char *p = parts[(i * 7 + i / 3) % ST_ARRAY_LEN(parts)];
        size_t l = strlen(p);
        if (n + l >= 16000)
            break;
        memcpy(text + n, p, l);
        n += l;
    }
    int32_t *ids = st_xmalloc(sizeof(int32_t) << 16);
    double t0 = st_now_s();
    int k = st_tok_encode(t, text, n, 1, ids, 1 << 16);
    double dt = st_now_s() - t0;
    CHECK(k > 0);
    fprintf(stderr, "%s: %zu bytes -> %d tokens in %.2f ms (%.1f tokens/ms)\n", name, n, k, dt * 1e3, k / (dt * 1e3));
    check_roundtrip(t, text, n, ids, k);
    enum { NT = 4 };
    pthread_t th[NT];
    job jobs[NT];
    for (int i = 0; i < NT; i++) {
        jobs[i] = (job){t, text, n, st_xmalloc(sizeof(int32_t) << 16), 0};
        pthread_create(&th[i], NULL, encode_job, &jobs[i]);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].k == k && memcmp(jobs[i].ids, ids, sizeof(int32_t) * (size_t)k) == 0);
        free(jobs[i].ids);
    }
    free(ids);
    free(text);
}

/* Streaming detokenizer: a character split across byte tokens is held back,
 * an invalid sequence becomes U+FFFD. */
static void check_detok_bytes(const st_tokenizer *t)
{
    /* "é" = C3 A9: as SPM byte tokens <0xC3> <0xA9>, or GPT-2 byte characters */
    int32_t c3 = -1, a9 = -1, a = st_tok_lookup(t, "a", 1);
    if (st_tok_kind_of(t) == ST_TOK_SPM) {
        c3 = st_tok_lookup(t, "<0xC3>", 6), a9 = st_tok_lookup(t, "<0xA9>", 6);
    } else {
        c3 = st_tok_lookup(t, "\xC3\x83", 2), a9 = st_tok_lookup(t, "\xC2\xA9", 2);
    }
    CHECK(c3 >= 0 && a9 >= 0 && a >= 0);
    if (c3 < 0 || a9 < 0 || a < 0)
        return;
    st_detok d;
    char out[300];
    st_detok_init(&d, t, 0);
    CHECK(st_detok_feed(&d, a, out, sizeof out) == 1 && out[0] == 'a');
    CHECK(st_detok_feed(&d, c3, out, sizeof out) == 0); /* held */
    CHECK(st_detok_feed(&d, a9, out, sizeof out) == 2 && memcmp(out, "\xC3\xA9", 2) == 0);
    CHECK(st_detok_feed(&d, a9, out, sizeof out) == 3 && memcmp(out, "\xEF\xBF\xBD", 3) == 0); /* lone continuation */
    CHECK(st_detok_feed(&d, c3, out, sizeof out) == 0);
    CHECK(st_detok_feed(&d, a, out, sizeof out) == 4 && memcmp(out, "\xEF\xBF\xBD" "a", 4) == 0);
    CHECK(st_detok_feed(&d, c3, out, sizeof out) == 0);
    CHECK(st_detok_flush(&d, out, sizeof out) == 3 && memcmp(out, "\xEF\xBF\xBD", 3) == 0);
    CHECK(st_detok_feed(&d, st_tok_vocab_size(t), out, sizeof out) < 0);
}

/* The default model (SmolLM2, GGUF pre "smollm"). */
static void check_default_model(void)
{
    const char *path = test_default_model();
    if (!path) {
        fprintf(stderr, "default model absent: its tokenizer check is skipped\n");
        return;
    }
    st_gguf *g;
    st_tokenizer *t = load_gguf_tok(path, &g);
    if (!t)
        return;
    int32_t *ids;
    const char *s = "The capital of France is";
    int k = encode_all(t, s, strlen(s), 0, &ids);
    /* reference: Hugging Face tokenizers over this GGUF's vocab and merges
     * (ByteLevel BPE, Digits(individual) + ByteLevel pre-tokenizer) */
    static const int32_t want[] = {504, 3575, 282, 4649, 314};
    CHECKF(k == 5 && memcmp(ids, want, sizeof want) == 0, "SmolLM2 \"%s\"", s);
    print_ids("SmolLM2 \"The capital of France is\"", ids, k);
    free(ids);
    /* same reference: special tokens in a chat turn, digits split one by one */
    static const int32_t want_chat[] = {1, 4093, 198, 1780, 314, 216, 34, 27, 34, 47, 2, 198};
    s = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n";
    k = encode_all(t, s, strlen(s), 1, &ids);
    CHECKF(k == 12 && memcmp(ids, want_chat, sizeof want_chat) == 0, "SmolLM2 chat turn");
    free(ids);
    static const int32_t want_digits[] = {19556, 216, 905, 216, 33, 34, 35, 36, 37, 4563};
    s = "Hello  world 12345 ...";
    k = encode_all(t, s, strlen(s), 0, &ids);
    CHECKF(k == 10 && memcmp(ids, want_digits, sizeof want_digits) == 0, "SmolLM2 \"%s\"", s);
    free(ids);
    int32_t im_end = st_tok_lookup(t, "<|im_end|>", 10), eot = st_tok_lookup(t, "<|endoftext|>", 13),
            im_start = st_tok_lookup(t, "<|im_start|>", 12);
    CHECK(im_end == 2 && eot == 0 && im_start == 1);
    CHECK(st_tok_is_eog(t, im_end) && st_tok_is_eog(t, eot) && !st_tok_is_eog(t, im_start));
    CHECK(st_tok_eos(t) == im_end);
    CHECK(st_tok_chat_template(t) && strstr(st_tok_chat_template(t), "<|im_start|>"));
    check_special(t, "<|im_start|>", "user\nHi there");
    /* bytes its vocabulary lacks (0xFE, 0xFF: never in valid UTF-8) read as
     * U+FFFD, as llama.cpp does, never as its unk <|endoftext|> */
    s = "a\xFF" "b\xFE";
    k = encode_all(t, s, strlen(s), 0, &ids);
    int eog = 0;
    for (int i = 0; i < k; i++)
        eog += st_tok_is_eog(t, ids[i]);
    char dec[32];
    int dl = k > 0 ? st_tok_decode(t, ids, k, 0, dec, sizeof dec) : -1;
    CHECKF(k > 0 && !eog && dl == 8 && !memcmp(dec, "a\xEF\xBF\xBD" "b\xEF\xBF\xBD", 8),
           "SmolLM2 invalid bytes: %d ids, %d end-of-text, decoded %d bytes", k, eog, dl);
    free(ids);
    check_long_prompt(t, "smollm2 16 KB prompt");
    st_tok_free(t);
    st_gguf_close(g);
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
            check_detok_bytes(t);
            if (!strcmp(families[f], "qwen2")) {
                check_special(t, "<|im_start|>", "user");
                CHECK(st_tok_is_eog(t, st_tok_lookup(t, "<|im_end|>", 10)));
                check_long_prompt(t, "qwen2 16 KB prompt");
            }
            if (!strcmp(families[f], "llama-spm")) {
                check_special(t, "<s>", "Hello world");
                CHECK(st_tok_add_bos(t) == 1 && st_tok_bos(t) == 1 && st_tok_eos(t) == 2);
                check_long_prompt(t, "llama-spm 16 KB prompt");
            }
            if (!strcmp(families[f], "llama-bpe")) {
                check_special(t, "<|eot_id|>", "Hi");
                CHECK(st_tok_is_eog(t, st_tok_lookup(t, "<|eot_id|>", 10)));
            }
            st_tok_free(t);
            st_gguf_close(g);
        }
        free_cases(&c);
    }
    json_vs_gguf(fx, "qwen3", "qwen2", NULL);
    json_vs_gguf(fx, "llama3", "llama-bpe", NULL);
    json_vs_gguf(fx, "llama2", "llama-spm", llama2_json_ref);
    check_default_model();
    return test_done();
}
