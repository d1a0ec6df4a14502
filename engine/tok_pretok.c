/* Pre-tokenizer matchers. Text is first decoded to (code point, class,
 * byte offset) arrays so that the matchers can look ahead; at each position
 * the regex's alternatives are tried in order, each with the match length
 * the regex engine would find after its own backtracking. */
#include "tok_pretok.h"

#include <stdlib.h>
#include <string.h>

#include "../common/st_common.h"
#include "tok_unicode.h"

typedef struct {
    const uint32_t *cp;    /* (n,) code points */
    const uint8_t *cls;    /* (n,) ST_UC_* flags */
    size_t end;            /* segment end (lookaheads see the end here) */
} seg;

#define IS(s, i, f) ((s)->cls[i] & (f))
#define OTHER(s, i) (!IS(s, i, ST_UC_L | ST_UC_N | ST_UC_WS))

static uint32_t lower_ascii(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* 's 't 're 've 'm 'll 'd at i; returns length in code points or 0. */
static size_t contraction(const seg *s, size_t i, int icase)
{
    if (s->cp[i] != '\'' || i + 1 >= s->end)
        return 0;
    uint32_t a = s->cp[i + 1], b = i + 2 < s->end ? s->cp[i + 2] : 0;
    if (icase)
        a = lower_ascii(a), b = lower_ascii(b);
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

static size_t run(const seg *s, size_t i, unsigned flag)
{
    size_t j = i;
    while (j < s->end && IS(s, j, flag))
        j++;
    return j;
}

/* \s+(?!\S) | \s+ at a whitespace position i: the run, less its last
 * character when a non-space follows and the run is longer than one. */
static size_t space_run(const seg *s, size_t i)
{
    size_t e = run(s, i, ST_UC_WS);
    if (e < s->end && e - i >= 2)
        return e - 1 - i;
    return e - i;
}

static size_t match_gpt2(const seg *s, size_t i)
{
    size_t m = contraction(s, i, 0);
    if (m)
        return m;
    size_t j = i + (s->cp[i] == ' ' && i + 1 < s->end);
    if (IS(s, j, ST_UC_L))
        return run(s, j, ST_UC_L) - i;
    if (IS(s, j, ST_UC_N))
        return run(s, j, ST_UC_N) - i;
    if (OTHER(s, j)) {
        size_t e = j;
        while (e < s->end && OTHER(s, e))
            e++;
        return e - i;
    }
    return space_run(s, i);
}

static size_t match_llama3(const seg *s, size_t i, size_t max_digits)
{
    size_t m = contraction(s, i, 1);
    if (m)
        return m;
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (IS(s, i, ST_UC_L))
        return run(s, i, ST_UC_L) - i;
    if (!IS(s, i, ST_UC_CRLF | ST_UC_L | ST_UC_N) && i + 1 < s->end && IS(s, i + 1, ST_UC_L))
        return run(s, i + 1, ST_UC_L) - i;
    /* \p{N}{1,max} */
    if (IS(s, i, ST_UC_N)) {
        size_t e = i;
        while (e < s->end && e - i < max_digits && IS(s, e, ST_UC_N))
            e++;
        return e - i;
    }
    /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
    size_t j = i + (s->cp[i] == ' ' && i + 1 < s->end);
    if (OTHER(s, j)) {
        size_t e = j;
        while (e < s->end && OTHER(s, e))
            e++;
        return run(s, e, ST_UC_CRLF) - i;
    }
    if (!IS(s, i, ST_UC_WS))
        return 1; /* not reached: every character is L, N, \s or other */
    /* \s*[\r\n]+ : up to the last CR/LF of the whitespace run */
    size_t e = run(s, i, ST_UC_WS), last = 0;
    for (size_t k = i; k < e; k++)
        if (IS(s, k, ST_UC_CRLF))
            last = k + 1;
    if (last)
        return last - i;
    return space_run(s, i);
}

static size_t match(st_pretok_kind k, const seg *s, size_t i)
{
    switch (k) {
    case ST_PRE_LLAMA3:
        return match_llama3(s, i, 3);
    case ST_PRE_QWEN2:
        return match_llama3(s, i, 1);
    default:
        return match_gpt2(s, i);
    }
}

void st_pretok_split(st_pretok_kind k, const char *text, size_t n, st_pretok_emit emit, void *ctx)
{
    if (n == 0)
        return;
    if (k == ST_PRE_NONE) {
        emit(ctx, 0, n);
        return;
    }
    uint32_t *cp = st_xmalloc(n * sizeof *cp);
    uint8_t *cls = st_xmalloc(n);
    size_t *off = st_xmalloc((n + 1) * sizeof *off);
    size_t m = 0;
    for (size_t b = 0; b < n;) {
        int l = st_utf8_next((const unsigned char *)text + b, n - b, &cp[m]);
        cls[m] = (uint8_t)st_ucp_class(cp[m]);
        off[m++] = b;
        b += (size_t)l;
    }
    off[m] = n;
    seg s = {cp, cls, m};
    size_t i = 0;
    while (i < m) {
        if (k == ST_PRE_STARCODER) {
            /* digits are isolated; the text between digits is its own segment */
            if (IS(&s, i, ST_UC_N)) {
                emit(ctx, off[i], off[i + 1] - off[i]);
                i++;
                continue;
            }
            s.end = i;
            while (s.end < m && !IS(&s, s.end, ST_UC_N))
                s.end++;
        }
        size_t seg_end = s.end;
        while (i < seg_end) {
            size_t l = match(k, &s, i);
            emit(ctx, off[i], off[i + l] - off[i]);
            i += l;
        }
        s.end = m;
    }
    free(cp);
    free(cls);
    free(off);
}

static const struct {
    const char *name;
    st_pretok_kind kind;
} gguf_names[] = {
    {"gpt-2", ST_PRE_GPT2},         {"gpt2", ST_PRE_GPT2},          {"default", ST_PRE_GPT2},
    {"llama-bpe", ST_PRE_LLAMA3},   {"llama3", ST_PRE_LLAMA3},      {"llama-v3", ST_PRE_LLAMA3},
    {"qwen2", ST_PRE_QWEN2},        {"qwen3", ST_PRE_QWEN2},        {"starcoder", ST_PRE_STARCODER},
    {"smollm", ST_PRE_STARCODER},   {"refact", ST_PRE_STARCODER},
};

int st_pretok_from_gguf_name(const char *name, size_t len)
{
    for (size_t i = 0; i < ST_ARRAY_LEN(gguf_names); i++)
        if (strlen(gguf_names[i].name) == len && memcmp(gguf_names[i].name, name, len) == 0)
            return gguf_names[i].kind;
    return -1;
}

static const char re_gpt2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char re_llama3[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char re_qwen2[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                               "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

int st_pretok_from_regex(const char *p, size_t len)
{
    if (len == sizeof re_gpt2 - 1 && memcmp(p, re_gpt2, len) == 0)
        return ST_PRE_GPT2;
    if (len == sizeof re_llama3 - 1 && memcmp(p, re_llama3, len) == 0)
        return ST_PRE_LLAMA3;
    if (len == sizeof re_qwen2 - 1 && memcmp(p, re_qwen2, len) == 0)
        return ST_PRE_QWEN2;
    return -1;
}

const char *st_pretok_name(st_pretok_kind k)
{
    static const char *names[] = {"none", "gpt2", "llama3", "qwen2", "starcoder"};
    return (unsigned)k < ST_ARRAY_LEN(names) ? names[k] : "?";
}
