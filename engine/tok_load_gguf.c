/* Tokenizer from GGUF metadata (tokenizer.ggml.*): model "gpt2" is
 * byte-level BPE with a merges list and a named pre-tokenizer, model
 * "llama" is SentencePiece BPE over scores with <0xXX> byte fallback. */
#include <stdlib.h>
#include <string.h>

#include "../common/st_common.h"
#include "gguf.h"
#include "tok_internal.h"

static int32_t get_id(const st_gguf *g, const char *key)
{
    uint32_t v;
    return st_gguf_get_u32(g, key, &v) == ST_OK && v <= INT32_MAX ? (int32_t)v : -1;
}

static int get_flag(const st_gguf *g, const char *key, int dflt)
{
    int v;
    return st_gguf_get_bool(g, key, &v) == ST_OK ? v : dflt;
}

static int str_is(const char *s, size_t n, const char *lit) { return n == strlen(lit) && memcmp(s, lit, n) == 0; }

/* Numeric array element i as int64 (token types may be stored in any int type). */
static int arr_int(const void *data, st_gguf_type ty, size_t i, int64_t *v)
{
    const unsigned char *p = data;
    switch (ty) {
    case ST_GGUF_INT32: { int32_t x; memcpy(&x, p + 4 * i, 4); *v = x; return 1; }
    case ST_GGUF_UINT32: { uint32_t x; memcpy(&x, p + 4 * i, 4); *v = x; return 1; }
    case ST_GGUF_INT8: { int8_t x; memcpy(&x, p + i, 1); *v = x; return 1; }
    case ST_GGUF_UINT8: *v = p[i]; return 1;
    case ST_GGUF_INT16: { int16_t x; memcpy(&x, p + 2 * i, 2); *v = x; return 1; }
    case ST_GGUF_UINT16: { uint16_t x; memcpy(&x, p + 2 * i, 2); *v = x; return 1; }
    case ST_GGUF_INT64: { int64_t x; memcpy(&x, p + 8 * i, 8); *v = x; return 1; }
    default: return 0;
    }
}

int st_tok_load_gguf(const st_gguf *g, st_tokenizer **out)
{
    const char *model, *pre = "default";
    size_t model_len, pre_len = 7, n;
    st_gguf_type ty;
    if (st_gguf_get_str(g, "tokenizer.ggml.model", &model, &model_len))
        return st_err(ST_EINVAL, "gguf: no tokenizer.ggml.model (the file has no vocabulary)");
    st_tok_kind kind;
    if (str_is(model, model_len, "gpt2"))
        kind = ST_TOK_BPE;
    else if (str_is(model, model_len, "llama"))
        kind = ST_TOK_SPM;
    else
        return st_err(ST_ENOTSUP, "gguf: tokenizer.ggml.model \"%.*s\" is not supported (gpt2, llama)",
                      (int)ST_MIN(model_len, 64), model);
    st_gguf_get_str(g, "tokenizer.ggml.pre", &pre, &pre_len);
    int pk = ST_PRE_NONE;
    if (kind == ST_TOK_BPE && (pk = st_pretok_from_gguf_name(pre, pre_len)) < 0)
        return st_err(ST_ENOTSUP, "gguf: tokenizer.ggml.pre \"%.*s\" is not a supported pre-tokenizer",
                      (int)ST_MIN(pre_len, 64), pre);
    if (st_gguf_get_arr(g, "tokenizer.ggml.tokens", &ty, &n) || ty != ST_GGUF_STRING)
        return st_err(ST_EINVAL, "gguf: tokenizer.ggml.tokens missing or not a string array");
    if (n == 0 || n > (1u << 24))
        return st_err(ST_ERANGE, "gguf: tokenizer.ggml.tokens has %zu entries", n);

    const void *scores = NULL, *types = NULL;
    st_gguf_type types_ty = ST_GGUF_INT32;
    size_t m;
    if (st_gguf_get_arr(g, "tokenizer.ggml.scores", &ty, &m) == ST_OK) {
        if (ty != ST_GGUF_FLOAT32 || m != n || st_gguf_get_arr_data(g, "tokenizer.ggml.scores", &scores))
            return st_err(ST_EINVAL, "gguf: tokenizer.ggml.scores is not %zu float32", n);
    }
    if (st_gguf_get_arr(g, "tokenizer.ggml.token_type", &types_ty, &m) == ST_OK) {
        int64_t probe;
        if (m != n || st_gguf_get_arr_data(g, "tokenizer.ggml.token_type", &types) || !arr_int(types, types_ty, 0, &probe))
            return st_err(ST_EINVAL, "gguf: tokenizer.ggml.token_type is not %zu integers", n);
    }

    st_tokenizer *t = tok_new(kind, (int)n);
    t->pre = (st_pretok_kind)pk;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if (st_gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len) || (total += len + 1) > (1u << 30)) {
            st_tok_free(t);
            return st_err(ST_EINVAL, "gguf: token %zu unreadable or vocabulary text over 1 GiB", i);
        }
        float score = 0;
        int64_t type = TOK_NORMAL;
        if (scores)
            memcpy(&score, (const char *)scores + 4 * i, 4);
        if (types)
            arr_int(types, types_ty, i, &type);
        if (type < TOK_NORMAL || type > TOK_BYTE)
            type = TOK_NORMAL;
        tok_set(t, (int32_t)i, s, len, score, (int)type);
    }
    tok_index(t);

    if (kind == ST_TOK_BPE) {
        size_t nm = 0;
        if (st_gguf_get_arr(g, "tokenizer.ggml.merges", &ty, &nm) || ty != ST_GGUF_STRING) {
            st_tok_free(t);
            return st_err(ST_EINVAL, "gguf: byte-level BPE without tokenizer.ggml.merges");
        }
        tok_pairmap_init(&t->merges, nm);
        for (size_t i = 0; i < nm && i < INT32_MAX; i++) {
            const char *s, *sp;
            size_t len;
            if (st_gguf_get_arr_str(g, "tokenizer.ggml.merges", i, &s, &len))
                continue;
            /* "left right": split at the first space after the first byte */
            if (len < 3 || !(sp = memchr(s + 1, ' ', len - 1)))
                continue;
            tok_add_merge(t, s, (size_t)(sp - s), sp + 1, len - (size_t)(sp - s) - 1, (int32_t)i);
        }
        t->ignore_merges = t->pre == ST_PRE_LLAMA3; /* llama-3's tokenizer.json sets ignore_merges */
        t->nfc = t->pre == ST_PRE_QWEN2;            /* Qwen's tokenizer.json normalizes to NFC */
    } else {
        tok_merges_from_scores(t);
        t->escape_spaces = 1;
        t->rank_by_score = 1;
    }
    t->add_space_prefix = get_flag(g, "tokenizer.ggml.add_space_prefix", kind == ST_TOK_SPM);
    t->bos = get_id(g, "tokenizer.ggml.bos_token_id");
    t->eos = get_id(g, "tokenizer.ggml.eos_token_id");
    t->unk = get_id(g, "tokenizer.ggml.unknown_token_id");
    t->add_bos = get_flag(g, "tokenizer.ggml.add_bos_token", kind == ST_TOK_SPM || t->pre == ST_PRE_LLAMA3);
    const char *tmpl;
    size_t tl;
    if (st_gguf_get_str(g, "tokenizer.chat_template", &tmpl, &tl) == ST_OK) {
        t->chat_template = st_xmalloc(tl + 1);
        memcpy(t->chat_template, tmpl, tl);
        t->chat_template[tl] = 0;
    }
    /* Phi-3's tokenizer.json marks its chat tokens rstrip (whitespace after
     * "<|end|>" belongs to the token); the GGUF has no field for it. */
    const char *arch;
    size_t al;
    if (st_gguf_get_str(g, "general.architecture", &arch, &al) == ST_OK && str_is(arch, al, "phi3")) {
        for (int32_t id = 0; id < t->n_vocab; id++) {
            int ty2 = t->tok[id].type;
            const char *s = tok_text(t, id);
            if ((ty2 == TOK_CONTROL || ty2 == TOK_USER) && strcmp(s, "<unk>") && strcmp(s, "<s>") &&
                strcmp(s, "<|endoftext|>"))
                t->tok[id].rstrip = 1;
        }
    }
    int rc = tok_finish(t);
    if (rc) {
        st_tok_free(t);
        return rc;
    }
    *out = t;
    return ST_OK;
}
