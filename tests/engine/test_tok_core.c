/* Tokenizer pieces that need no fixtures: the pre-tokenizer matchers (the
 * expected splits were produced by the Hugging Face tokenizers Split with
 * each family's regex), NFC, and small in-memory tokenizer.json models
 * (merge order, SPM byte fallback, added tokens with rstrip). */
#include <stdint.h>

#include "common/st_common.h"
#include "engine/tok_nfc.h"
#include "engine/tok_pretok.h"
#include "engine/tokenizer.h"
#include "tests/test.h"

static const struct {
    st_pretok_kind kind;
    const char *text;
    const char *pieces; /* joined by '|' */
} splits[] = {
    {ST_PRE_GPT2, "  Hello\x0A""\x0A""  there's 12345 ", " | Hello|\x0A""\x0A"" | there|'s| 12345| "},
    {ST_PRE_GPT2, "I'LL  don't\x09""\x09""x", "I|'|LL| | don|'t|\x09""|\x09""|x"},
    {ST_PRE_GPT2, "a+=b;\x0D""\x0A""\x09""c", "a|+=|b|;|\x0D""\x0A""|\x09""|c"},
    {ST_PRE_GPT2, "\xC3\xBC""ber 3.14 \xC2\xBD"" \xE6\x97\xA5""\xE6\x9C\xAC""\xC2\xA0""x", "\xC3\xBC""ber| 3|.|14| \xC2\xBD""| \xE6\x97\xA5""\xE6\x9C\xAC""|\xC2\xA0""|x"},
    {ST_PRE_LLAMA3, "  Hello\x0A""\x0A""  there's 12345 ", " | Hello|\x0A""\x0A""| | there|'s| |123|45| "},
    {ST_PRE_LLAMA3, "I'LL  don't\x09""\x09""x", "I|'LL| | don|'t|\x09""|\x09""x"},
    {ST_PRE_LLAMA3, "a+=b;\x0D""\x0A""\x09""c", "a|+=|b|;\x0D""\x0A""|\x09""c"},
    {ST_PRE_LLAMA3, "\xC3\xBC""ber 3.14 \xC2\xBD"" \xE6\x97\xA5""\xE6\x9C\xAC""\xC2\xA0""x", "\xC3\xBC""ber| |3|.|14| |\xC2\xBD""| \xE6\x97\xA5""\xE6\x9C\xAC""|\xC2\xA0""x"},
    {ST_PRE_QWEN2, "  Hello\x0A""\x0A""  there's 12345 ", " | Hello|\x0A""\x0A""| | there|'s| |1|2|3|4|5| "},
    {ST_PRE_QWEN2, "I'LL  don't\x09""\x09""x", "I|'LL| | don|'t|\x09""|\x09""x"},
    {ST_PRE_QWEN2, "a+=b;\x0D""\x0A""\x09""c", "a|+=|b|;\x0D""\x0A""|\x09""c"},
    {ST_PRE_QWEN2, "\xC3\xBC""ber 3.14 \xC2\xBD"" \xE6\x97\xA5""\xE6\x9C\xAC""\xC2\xA0""x", "\xC3\xBC""ber| |3|.|1|4| |\xC2\xBD""| \xE6\x97\xA5""\xE6\x9C\xAC""|\xC2\xA0""x"},
    {ST_PRE_STARCODER, "  Hello\x0A""\x0A""  there's 12345 ", " | Hello|\x0A""\x0A"" | there|'s| |1|2|3|4|5| "},
    {ST_PRE_STARCODER, "I'LL  don't\x09""\x09""x", "I|'|LL| | don|'t|\x09""|\x09""|x"},
    {ST_PRE_STARCODER, "a+=b;\x0D""\x0A""\x09""c", "a|+=|b|;|\x0D""\x0A""|\x09""|c"},
    {ST_PRE_STARCODER, "\xC3\xBC""ber 3.14 \xC2\xBD"" \xE6\x97\xA5""\xE6\x9C\xAC""\xC2\xA0""x", "\xC3\xBC""ber| |3|.|1|4| |\xC2\xBD""| \xE6\x97\xA5""\xE6\x9C\xAC""|\xC2\xA0""|x"},
};

typedef struct {
    char buf[512];
    size_t len;
    const char *text;
} joined;

static void join_piece(void *ctx, size_t off, size_t len)
{
    joined *j = ctx;
    if (j->len && j->len < sizeof j->buf)
        j->buf[j->len++] = '|';
    if (j->len + len < sizeof j->buf) {
        memcpy(j->buf + j->len, j->text + off, len);
        j->len += len;
    }
}

static void check_splits(void)
{
    for (size_t i = 0; i < ST_ARRAY_LEN(splits); i++) {
        joined j = {.len = 0, .text = splits[i].text};
        st_pretok_split(splits[i].kind, splits[i].text, strlen(splits[i].text), join_piece, &j);
        CHECKF(j.len == strlen(splits[i].pieces) && memcmp(j.buf, splits[i].pieces, j.len) == 0,
               "%s split %zu: got \"%.*s\"", st_pretok_name(splits[i].kind), i, (int)j.len, j.buf);
    }
    CHECK(st_pretok_from_gguf_name("smollm", 6) == ST_PRE_STARCODER);
    CHECK(st_pretok_from_gguf_name("qwen2", 5) == ST_PRE_QWEN2);
    CHECK(st_pretok_from_gguf_name("llama-bpe", 9) == ST_PRE_LLAMA3);
    CHECK(st_pretok_from_gguf_name("nonesuch", 8) == -1);
}

static void check_nfc(void)
{
    /* expected values from Python's unicodedata.normalize("NFC", ...) */
    static const char *cases[][2] = {
        {"cafe\xCC\x81", "caf\xC3\xA9"},
        {"\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", "\xEA\xB0\x81"}, /* Hangul L V T */
        {"a\xCC\xA3\xCC\x82", "\xE1\xBA\xAD"},                    /* marks reordered, then composed */
        {"a\xCC\x82\xCC\xA3", "\xE1\xBA\xAD"},
        {"\xE2\x84\xAB", "\xC3\x85"},                              /* singleton decomposition */
        {"x\xCC\x81\xCC\x80", "x\xCC\x81\xCC\x80"},                /* nothing to compose with */
        {"\xCC\x81" "e", "\xCC\x81" "e"},                          /* leading mark */
        {"e\xFF\xCC\x81", "e\xFF\xCC\x81"},                        /* an invalid byte blocks composition */
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(cases); i++) {
        char *out;
        size_t n;
        st_nfc(cases[i][0], strlen(cases[i][0]), &out, &n);
        CHECKF(n == strlen(cases[i][1]) && memcmp(out, cases[i][1], n) == 0, "nfc case %zu", i);
        free(out);
    }
    CHECK(st_nfc_quick_yes("plain ascii \xC3\xA9", 14));
    CHECK(!st_nfc_quick_yes("e\xCC\x81", 3));
}

static int enc(const st_tokenizer *t, const char *s, int special, int32_t *ids, int cap)
{
    return st_tok_encode(t, s, strlen(s), special, ids, cap);
}

static void check_bytelevel_json(void)
{
    /* merges apply by rank, not by position: "l l" (rank 1) before "e l" (rank 2) */
    static const char js[] =
        "{\"added_tokens\":[{\"id\":20,\"content\":\"<|end|>\",\"special\":true,\"rstrip\":true},"
        "{\"id\":21,\"content\":\"<x>\",\"special\":false}],"
        "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true},"
        "\"model\":{\"type\":\"BPE\",\"vocab\":{\"h\":0,\"e\":1,\"l\":2,\"o\":3,\"\\u0120\":4,\"ll\":5,\"el\":6,"
        "\"hell\":7,\"he\":8,\"\\u0120h\":9,\"\\u010a\":10,\"\\u00c3\":11,\"\\u00a9\":12,\"\\u00c3\\u00a9\":13},"
        "\"merges\":[\"h e\",\"l l\",\"e l\",\"he ll\",\"\\u0120 h\",\"\\u00c3 \\u00a9\"]}}";
    st_tokenizer *t;
    int rc = st_tok_load_json_mem(js, sizeof js - 1, &t);
    CHECKF(rc == 0, "load: %s", st_errmsg());
    if (rc)
        return;
    CHECK(st_tok_kind_of(t) == ST_TOK_BPE && st_tok_vocab_size(t) == 22);
    int32_t ids[32];
    int n = enc(t, "hello", 0, ids, 32);
    CHECK(n == 2 && ids[0] == 7 && ids[1] == 3); /* he + ll -> hell, o */
    n = enc(t, "ell", 0, ids, 32);
    CHECK(n == 2 && ids[0] == 1 && ids[1] == 5); /* "l l" outranks "e l" */
    n = enc(t, " h\n\xC3\xA9", 0, ids, 32);
    CHECK(n == 3 && ids[0] == 9 && ids[1] == 10 && ids[2] == 13);
    /* a too-small buffer still reports the full count */
    CHECK(enc(t, "hello hello", 0, ids, 1) == 5 && ids[0] == 7); /* hell o | Ġ hell o */
    /* <|end|> only with parse_special, and it eats the spaces after it; <x> always */
    n = enc(t, "h<|end|>  h<x>", 1, ids, 32);
    CHECK(n == 4 && ids[0] == 0 && ids[1] == 20 && ids[2] == 0 && ids[3] == 21);
    n = enc(t, "h<|end|>", 0, ids, 32); /* bytes missing from this vocabulary are dropped, as HF does */
    CHECK(n == 2 && ids[0] == 0 && ids[1] == 1);
    CHECK(st_tok_is_eog(t, 20) && st_tok_is_special(t, 20) && !st_tok_is_special(t, 21));
    char out[64];
    int32_t seq[] = {7, 3, 20, 9, 21};
    n = st_tok_decode(t, seq, 5, 0, out, sizeof out);
    CHECK(n == 17 && memcmp(out, "hello<|end|> h<x>", 17) == 0);
    n = st_tok_decode(t, seq, 5, 1, out, sizeof out);
    CHECK(n == 10 && memcmp(out, "hello h<x>", 10) == 0);
    CHECK(st_tok_piece(t, 9, out, sizeof out) == 2 && memcmp(out, " h", 2) == 0);
    CHECK(st_tok_piece(t, 99, out, sizeof out) < 0);
    CHECK(st_tok_lookup(t, "\xC4\xA0h", 3) == 9);
    st_tok_free(t);
}

static void check_spm_json(void)
{
    static const char js[] =
        "{\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},{\"id\":1,\"content\":\"<s>\",\"special\":true},"
        "{\"id\":2,\"content\":\"</s>\",\"special\":true}],"
        "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
        "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]},"
        "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"unk_token\":\"<unk>\",\"vocab\":{\"<unk>\":0,\"<s>\":1,"
        "\"</s>\":2,\"<0xC3>\":3,\"<0xA9>\":4,\"\\u2581\":5,\"H\":6,\"i\":7,\"\\u2581H\":8,\"\\u2581Hi\":9},"
        "\"merges\":[\"\\u2581 H\",\"\\u2581H i\"]}}";
    st_tokenizer *t;
    int rc = st_tok_load_json_mem(js, sizeof js - 1, &t);
    CHECKF(rc == 0, "load: %s", st_errmsg());
    if (rc)
        return;
    CHECK(st_tok_kind_of(t) == ST_TOK_SPM && st_tok_bos(t) == 1 && st_tok_eos(t) == 2);
    int32_t ids[32];
    int n = enc(t, "Hi \xC3\xA9", 0, ids, 32);
    CHECK(n == 4 && ids[0] == 9 && ids[1] == 5 && ids[2] == 3 && ids[3] == 4); /* é by byte fallback */
    n = enc(t, "Hi<s>Hi", 1, ids, 32);
    CHECK(n == 3 && ids[0] == 9 && ids[1] == 1 && ids[2] == 9); /* "▁" again after a special token */
    char out[32];
    int32_t seq[] = {9, 5, 3, 4};
    n = st_tok_decode(t, seq, 4, 0, out, sizeof out);
    CHECK(n == 5 && memcmp(out, "Hi \xC3\xA9", 5) == 0); /* the prefix space is dropped */
    st_tok_free(t);
}

static void check_bad_json(void)
{
    static const char *bad[] = {
        "",
        "{}",
        "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}",
        ("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\w+\"},\"behavior\":\"Isolated\"},"
         "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}"),
        "{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-4},\"merges\":[]}}",
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(bad); i++) {
        st_tokenizer *t = NULL;
        int rc = st_tok_load_json_mem(bad[i], strlen(bad[i]), &t);
        CHECKF(rc < 0 && !t && st_errmsg()[0], "bad json %zu must fail with a message", i);
    }
}

int main(void)
{
    check_splits();
    check_nfc();
    check_bytelevel_json();
    check_spm_json();
    check_bad_json();
    return test_done();
}
