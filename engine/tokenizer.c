/* Tokenizer core: the vocabulary (tokens, text hash, raw pieces), the
 * added-token table, and encoding (added-token split, pre-tokenizer or SPM
 * normalization, BPE merges). Loaders live in tok_load_*.c, the merge loop
 * in tok_bpe.c, the streaming detokenizer in tok_detok.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/name_index.h"
#include "../common/st_common.h"
#include "tok_internal.h"
#include "tok_nfc.h"
#include "tok_unicode.h"

/* ---- building ------------------------------------------------------------------------ */
st_tokenizer *tok_new(st_tok_kind kind, int n_vocab)
{
    st_tokenizer *t = st_xcalloc(1, sizeof *t);
    t->kind = kind;
    t->n_vocab = n_vocab;
    t->tok = st_xcalloc((size_t)(n_vocab > 0 ? n_vocab : 1), sizeof *t->tok);
    t->pool_cap = 1024;
    t->pool = st_xmalloc(t->pool_cap);
    t->pool_len = 1; /* offset 0 = "" */
    t->pool[0] = 0;
    t->bos = t->eos = t->unk = -1;
    return t;
}

static uint32_t pool_add(st_tokenizer *t, const char *s, size_t len)
{
    while (t->pool_len + len + 1 > t->pool_cap)
        t->pool = st_xrealloc(t->pool, t->pool_cap *= 2);
    uint32_t off = (uint32_t)t->pool_len;
    memcpy(t->pool + off, s, len);
    t->pool[off + len] = 0;
    t->pool_len += len + 1;
    return off;
}

void tok_set(st_tokenizer *t, int32_t id, const char *text, size_t len, float score, int type)
{
    tok_entry *e = &t->tok[id];
    e->text_off = len ? pool_add(t, text, len) : 0;
    e->text_len = (uint32_t)len;
    e->score = score;
    e->type = (uint8_t)type;
}


int32_t tok_find(const st_tokenizer *t, const char *text, size_t len)
{
    if (!t->hash_cap)
        return -1;
    size_t mask = t->hash_cap - 1;
    for (size_t i = st_hash_bytes(text, len) & mask;; i = (i + 1) & mask) {
        int32_t id = t->hash[i];
        if (id < 0)
            return -1;
        if (t->tok[id].text_len == len && memcmp(tok_text(t, id), text, len) == 0)
            return id;
    }
}

/* Raw bytes of a token: byte-level BPE unmaps the GPT-2 characters; SPM
 * turns "▁" into ' ' and <0xXX> into the byte. Control/user tokens keep
 * their text. The raw form is never longer than the text. */
static size_t raw_of(const st_tokenizer *t, int32_t id, char *out)
{
    const tok_entry *e = &t->tok[id];
    const char *s = tok_text(t, id);
    size_t n = e->text_len, m = 0;
    if (e->type == TOK_CONTROL || e->type == TOK_USER || e->type == TOK_UNKNOWN) {
        memcpy(out, s, n);
        return n;
    }
    if (t->kind == ST_TOK_SPM) {
        unsigned v;
        if (e->type == TOK_BYTE && n == 6 && sscanf(s, "<0x%2X>", &v) == 1) {
            out[0] = (char)v;
            return 1;
        }
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
                out[m++] = ' ';
                i += 3;
            } else {
                out[m++] = s[i++];
            }
        }
        return m;
    }
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = st_utf8_next((const unsigned char *)s + i, n - i, &cp);
        int b = cp == ST_UCP_INVALID ? -1 : tok_cp_to_byte(cp);
        if (b >= 0) {
            out[m++] = (char)b;
        } else {
            memcpy(out + m, s + i, (size_t)l);
            m += (size_t)l;
        }
        i += (size_t)l;
    }
    return m;
}

int tok_index(st_tokenizer *t)
{
    size_t cap = 64;
    while (cap < (size_t)t->n_vocab * 2)
        cap *= 2;
    t->hash_cap = cap;
    t->hash = st_xmalloc(cap * sizeof *t->hash);
    memset(t->hash, 0xff, cap * sizeof *t->hash);
    char *buf = NULL;
    size_t buf_cap = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        tok_entry *e = &t->tok[id];
        if (e->text_len && tok_find(t, tok_text(t, id), e->text_len) < 0) { /* first id wins */
            size_t i = st_hash_bytes(tok_text(t, id), e->text_len) & (cap - 1);
            while (t->hash[i] >= 0)
                i = (i + 1) & (cap - 1);
            t->hash[i] = id;
        }
        if (e->text_len + 1 > buf_cap)
            buf = st_xrealloc(buf, buf_cap = e->text_len + 1);
        size_t rl = raw_of(t, id, buf);
        e->raw_off = rl ? pool_add(t, buf, rl) : 0;
        e->raw_len = (uint32_t)rl;
    }
    free(buf);
    for (int b = 0; b < 256; b++) {
        char s[8];
        size_t l;
        if (t->kind == ST_TOK_SPM)
            l = (size_t)snprintf(s, sizeof s, "<0x%02X>", b);
        else
            l = (size_t)st_utf8_put(tok_byte_to_cp((uint8_t)b), s);
        t->byte_tok[b] = tok_find(t, s, l);
    }
    return ST_OK;
}

int tok_add_merge(st_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, int32_t rank)
{
    int32_t ia = tok_find(t, a, alen), ib = tok_find(t, b, blen);
    if (ia < 0 || ib < 0)
        return 0;
    char stack[256];
    char *ab = alen + blen <= sizeof stack ? stack : st_xmalloc(alen + blen);
    memcpy(ab, a, alen);
    memcpy(ab + alen, b, blen);
    int32_t m = tok_find(t, ab, alen + blen);
    if (ab != stack)
        free(ab);
    if (m < 0)
        return 0;
    tok_pairmap_put(&t->merges, ia, ib, rank, m);
    return 1;
}

static _Thread_local const float *score_base;
static int cmp_score_desc(const void *x, const void *y)
{
    float a = score_base[*(const int32_t *)x], b = score_base[*(const int32_t *)y];
    return a > b ? -1 : a < b ? 1 : 0;
}

/* SentencePiece BPE merges the adjacent pair whose concatenation is the
 * vocabulary piece of highest score. Every split of a normal piece into two
 * known pieces becomes a merge whose rank orders scores (equal scores share
 * a rank, so ties go to the leftmost pair). */
void tok_merges_from_scores(st_tokenizer *t)
{
    int32_t *order = st_xmalloc((size_t)t->n_vocab * sizeof *order);
    float *score = st_xmalloc((size_t)t->n_vocab * sizeof *score);
    int32_t *rank = st_xmalloc((size_t)t->n_vocab * sizeof *rank);
    for (int32_t i = 0; i < t->n_vocab; i++) {
        order[i] = i;
        score[i] = t->tok[i].score;
    }
    score_base = score; /* per thread: qsort has no context argument in C11 */
    qsort(order, (size_t)t->n_vocab, sizeof *order, cmp_score_desc);
    for (int32_t i = 0, r = 0; i < t->n_vocab; i++) {
        if (i > 0 && score[order[i]] != score[order[i - 1]])
            r++;
        rank[order[i]] = r;
    }
    tok_pairmap_init(&t->merges, (size_t)t->n_vocab * 4);
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const tok_entry *e = &t->tok[id];
        if (e->type != TOK_NORMAL || e->text_len < 2)
            continue;
        const char *s = tok_text(t, id);
        for (uint32_t k = 1; k < e->text_len; k++) {
            if (((unsigned char)s[k] & 0xC0) == 0x80)
                continue; /* split only between characters */
            int32_t a = tok_find(t, s, k), b = tok_find(t, s + k, e->text_len - k);
            if (a >= 0 && b >= 0)
                tok_pairmap_put(&t->merges, a, b, rank[id], id);
        }
    }
    free(order);
    free(score);
    free(rank);
}

/* ---- finishing: added tokens, end-of-generation set ---------------------------------- */
static _Thread_local const st_tokenizer *added_base; /* qsort context */
static int cmp_added(const void *x, const void *y)
{
    const tok_entry *a = &added_base->tok[*(const int32_t *)x], *b = &added_base->tok[*(const int32_t *)y];
    unsigned char fa = (unsigned char)added_base->pool[a->text_off], fb = (unsigned char)added_base->pool[b->text_off];
    if (fa != fb)
        return fa < fb ? -1 : 1;
    if (a->text_len != b->text_len)
        return a->text_len > b->text_len ? -1 : 1; /* longest first */
    return *(const int32_t *)x < *(const int32_t *)y ? -1 : 1;
}

/* Token texts that end a turn or a document in the families we know. */
static const char *const eog_texts[] = {"<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end_of_text|>", "</s>",
                                        "<|end|>",    "<end_of_turn>", "<|eom_id|>"};
/* Texts that begin something: an eos id naming one of these is wrong metadata. */
static const char *const begin_texts[] = {"<|im_start|>", "<s>", "<|begin_of_text|>", "<bos>", "<start_of_turn>"};

static int text_in(const st_tokenizer *t, int32_t id, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (t->tok[id].text_len == strlen(list[i]) && memcmp(tok_text(t, id), list[i], t->tok[id].text_len) == 0)
            return 1;
    return 0;
}

int tok_finish(st_tokenizer *t)
{
    if (t->bos >= t->n_vocab || t->bos < -1)
        t->bos = -1;
    if (t->eos >= t->n_vocab || t->eos < -1)
        t->eos = -1;
    if (t->unk >= t->n_vocab || t->unk < -1)
        t->unk = -1;

    t->added = st_xmalloc((size_t)(t->n_vocab > 0 ? t->n_vocab : 1) * sizeof *t->added);
    t->n_added = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        int ty = t->tok[id].type;
        if ((ty == TOK_CONTROL || ty == TOK_USER || ty == TOK_UNKNOWN) && t->tok[id].text_len > 0)
            t->added[t->n_added++] = id;
    }
    added_base = t;
    qsort(t->added, (size_t)t->n_added, sizeof *t->added, cmp_added);
    for (int b = 0, i = 0; b <= 256; b++) {
        while (i < t->n_added && (unsigned char)t->pool[t->tok[t->added[i]].text_off] < b)
            i++;
        t->added_first[b] = i;
    }

    t->eog = st_xcalloc((size_t)(t->n_vocab > 0 ? t->n_vocab : 1), 1);
    if (t->eos >= 0 && text_in(t, t->eos, begin_texts, ST_ARRAY_LEN(begin_texts))) {
        ST_WARN("tokenizer: eos_token_id %d is \"%s\", a begin token; not trusted as end of generation",
                (int)t->eos, tok_text(t, t->eos));
        t->eos = -1;
    }
    for (size_t i = 0; i < ST_ARRAY_LEN(eog_texts); i++) {
        int32_t id = tok_find(t, eog_texts[i], strlen(eog_texts[i]));
        if (id >= 0) {
            t->eog[id] = 1;
            if (t->eos < 0)
                t->eos = id; /* the first known end token stands in for a missing/untrusted eos */
        }
    }
    if (t->eos >= 0)
        t->eog[t->eos] = 1;
    return ST_OK;
}

void st_tok_free(st_tokenizer *t)
{
    if (!t)
        return;
    free(t->tok);
    free(t->pool);
    free(t->hash);
    tok_pairmap_free(&t->merges);
    free(t->added);
    free(t->eog);
    free(t->chat_template);
    free(t);
}

/* ---- encoding ------------------------------------------------------------------------ */
typedef struct {
    const st_tokenizer *t;
    const char *text;
    const char *seg; /* start of the segment being pre-tokenized (piece offsets are relative to it) */
    int32_t *out;
    int cap;
    size_t count;
    int32_t *sym; /* scratch symbols of the current piece */
    size_t sym_cap;
} enc;

static void push(enc *e, int32_t id)
{
    if (e->count < (size_t)e->cap)
        e->out[e->count] = id;
    e->count++;
}

static int32_t *sym_reserve(enc *e, size_t n)
{
    if (n > e->sym_cap) {
        e->sym_cap = n * 2;
        e->sym = st_xrealloc(e->sym, e->sym_cap * sizeof *e->sym);
    }
    return e->sym;
}

static void push_merged(enc *e, int32_t *sym, size_t n)
{
    int m = tok_bpe_merge(e->t, sym, (int)n);
    for (int i = 0; i < m; i++)
        push(e, sym[i]);
}

/* One byte-level BPE piece: bytes -> byte tokens -> merges. */
static void encode_piece(void *ctx, size_t off, size_t len)
{
    enc *e = ctx;
    const st_tokenizer *t = e->t;
    const unsigned char *s = (const unsigned char *)e->seg + off;
    if (t->ignore_merges) {
        char stack[128] = {0};
        char *mapped = len * 2 <= sizeof stack ? stack : st_xmalloc(len * 2);
        size_t m = 0;
        for (size_t i = 0; i < len; i++)
            m += (size_t)st_utf8_put(tok_byte_to_cp(s[i]), mapped + m);
        int32_t id = tok_find(t, mapped, m);
        if (mapped != stack)
            free(mapped);
        if (id >= 0 && t->tok[id].type == TOK_NORMAL) {
            push(e, id);
            return;
        }
    }
    /* A byte the vocabulary lacks (typically 0xF5..0xFF, which valid UTF-8
     * never holds) becomes U+FFFD's byte tokens, as llama.cpp reads invalid
     * UTF-8; only without those, unk (or nothing, as HF). Never unk first:
     * vocabularies like SmolLM2's name <|endoftext|> as unk, and stray input
     * bytes must not turn into an end-of-text token. */
    static const unsigned char fffd[3] = {0xEF, 0xBF, 0xBD};
    const int has_fffd = t->byte_tok[0xEF] >= 0 && t->byte_tok[0xBF] >= 0 && t->byte_tok[0xBD] >= 0;
    int32_t *sym = sym_reserve(e, len * 3);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int32_t id = t->byte_tok[s[i]];
        if (id >= 0) {
            sym[n++] = id;
        } else if (has_fffd) {
            for (int k = 0; k < 3; k++)
                sym[n++] = t->byte_tok[fffd[k]];
        } else if (t->unk >= 0) {
            sym[n++] = t->unk;
        }
    }
    push_merged(e, sym, n);
}

/* One SPM segment: "▁" prefix, spaces escaped, then characters -> pieces
 * (bytes of an unknown character fall back to <0xXX>) -> merges. */
static void encode_spm(enc *e, const char *s, size_t len, int prefix)
{
    const st_tokenizer *t = e->t;
    if (len == 0)
        return;
    size_t cap = (len + 1) * 3;
    char *norm = st_xmalloc(cap);
    size_t m = 0;
    if (prefix && t->add_space_prefix) {
        memcpy(norm, "\xE2\x96\x81", 3);
        m = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ' && t->escape_spaces) {
            memcpy(norm + m, "\xE2\x96\x81", 3);
            m += 3;
        } else {
            norm[m++] = s[i];
        }
    }
    int32_t *sym = sym_reserve(e, m);
    size_t n = 0;
    for (size_t i = 0; i < m;) {
        uint32_t cp;
        size_t l = (size_t)st_utf8_next((const unsigned char *)norm + i, m - i, &cp);
        int32_t id = tok_find(t, norm + i, l);
        if (id >= 0 && t->tok[id].type != TOK_NORMAL && t->tok[id].type != TOK_USER)
            id = -1; /* a character is never a control token */
        if (id >= 0) {
            sym[n++] = id;
        } else {
            for (size_t k = 0; k < l; k++) {
                int32_t b = t->byte_tok[(unsigned char)norm[i + k]];
                if (b < 0)
                    b = t->unk;
                if (b >= 0)
                    sym[n++] = b;
            }
        }
        i += l;
    }
    free(norm);
    push_merged(e, sym, n);
}

/* One run of text between added tokens: normalized on its own (as HF
 * does), then split and merged. */
static void encode_segment(enc *e, size_t a, size_t b, int after_added)
{
    if (b <= a)
        return;
    const char *s = e->text + a;
    size_t n = b - a;
    char *norm = NULL;
    if (e->t->nfc && !st_nfc_quick_yes(s, n)) {
        st_nfc(s, n, &norm, &n);
        s = norm;
    }
    if (e->t->kind == ST_TOK_SPM) {
        encode_spm(e, s, n, after_added);
    } else {
        e->seg = s;
        st_pretok_split(e->t->pre, s, n, encode_piece, e);
    }
    free(norm);
}

static int is_space_byte(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Longest added token at text[pos] that may match here, or -1. */
static int32_t match_added(const st_tokenizer *t, const char *text, size_t n, size_t pos, int parse_special)
{
    unsigned char c = (unsigned char)text[pos];
    for (int i = t->added_first[c]; i < t->added_first[c + 1]; i++) {
        int32_t id = t->added[i];
        const tok_entry *te = &t->tok[id];
        if (!parse_special && te->type != TOK_USER)
            continue;
        if (te->text_len <= n - pos && memcmp(text + pos, tok_text(t, id), te->text_len) == 0)
            return id;
    }
    return -1;
}

int st_tok_encode(const st_tokenizer *t, const char *text, size_t n, int parse_special, int32_t *out, int cap)
{
    if (!t || (!text && n) || cap < 0 || (!out && cap > 0))
        return st_err(ST_EINVAL, "st_tok_encode: bad arguments");
    if (n > (size_t)INT32_MAX / 4)
        return st_err(ST_ERANGE, "st_tok_encode: text of %zu bytes is too long", n);
    enc e = {t, text, text, out, cap, 0, NULL, 0};
    size_t seg = 0;
    int after_added = 1; /* SPM: the text start counts as a boundary */
    for (size_t pos = 0; pos < n;) {
        int32_t id = t->n_added ? match_added(t, text, n, pos, parse_special) : -1;
        if (id < 0) {
            pos++;
            continue;
        }
        size_t end = pos + t->tok[id].text_len, seg_end = pos;
        if (t->tok[id].lstrip)
            while (seg_end > seg && is_space_byte(text[seg_end - 1]))
                seg_end--;
        if (t->tok[id].rstrip)
            while (end < n && is_space_byte(text[end]))
                end++;
        encode_segment(&e, seg, seg_end, after_added);
        push(&e, id);
        after_added = !t->prefix_first_only;
        seg = pos = end;
    }
    encode_segment(&e, seg, n, after_added);
    free(e.sym);
    return (int)e.count;
}

/* ---- accessors ------------------------------------------------------------------------- */
int st_tok_piece(const st_tokenizer *t, int32_t id, char *out, int cap)
{
    if (!t || id < 0 || id >= t->n_vocab)
        return st_err(ST_EINVAL, "st_tok_piece: token id %d out of range", (int)id);
    int len = (int)t->tok[id].raw_len;
    if (cap > 0)
        memcpy(out, tok_raw(t, id), (size_t)ST_MIN(len, cap));
    return len;
}

int st_tok_vocab_size(const st_tokenizer *t) { return t->n_vocab; }
st_tok_kind st_tok_kind_of(const st_tokenizer *t) { return t->kind; }
int32_t st_tok_bos(const st_tokenizer *t) { return t->bos; }
int32_t st_tok_eos(const st_tokenizer *t) { return t->eos; }
int st_tok_add_bos(const st_tokenizer *t) { return t->add_bos && t->bos >= 0; }
int st_tok_is_eog(const st_tokenizer *t, int32_t id) { return id >= 0 && id < t->n_vocab && t->eog[id]; }

int st_tok_is_special(const st_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && (t->tok[id].type == TOK_CONTROL || t->tok[id].type == TOK_UNKNOWN);
}

int32_t st_tok_lookup(const st_tokenizer *t, const char *text, size_t n) { return tok_find(t, text, n); }
const char *st_tok_chat_template(const st_tokenizer *t) { return t->chat_template; }
