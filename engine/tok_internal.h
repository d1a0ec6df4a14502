/* Tokenizer internals shared by the core (tokenizer.c, tok_bpe.c), the
 * loaders (tok_load_gguf.c, tok_load_json.c) and the detokenizer.
 *
 * A loader fills the vocabulary with tok_builder_*, adds merges, and calls
 * tok_finish(); after that the tokenizer is immutable, so st_tok_encode may
 * run on it from any number of threads (all scratch memory is per call). */
#ifndef ST_TOK_INTERNAL_H
#define ST_TOK_INTERNAL_H

#include <stdint.h>

#include "tok_pretok.h"
#include "tokenizer.h"

/* GGUF token types (tokenizer.ggml.token_type) */
enum {
    TOK_NORMAL = 1,
    TOK_UNKNOWN = 2,
    TOK_CONTROL = 3,
    TOK_USER = 4,
    TOK_UNUSED = 5,
    TOK_BYTE = 6,
};

typedef struct {
    uint32_t text_off, text_len; /* stored form in pool ("Ġhello", "▁Hello", "<0x0A>") */
    uint32_t raw_off, raw_len;   /* decoded bytes in pool (" hello", "\n") */
    float score;                 /* SPM score (GGUF), 0 otherwise */
    uint8_t type;                /* TOK_* */
    uint8_t lstrip, rstrip;      /* added tokens: absorb whitespace beside them */
} tok_entry;

/* (left id, right id) -> (rank, merged id), open addressing */
typedef struct {
    uint64_t *keys; /* (cap,) left << 32 | right; UINT64_MAX = empty */
    int32_t *rank;  /* (cap,) */
    int32_t *merged;
    size_t cap, n;
} tok_pairmap;

struct st_tokenizer {
    st_tok_kind kind;
    st_pretok_kind pre;
    int n_vocab;
    tok_entry *tok; /* (n_vocab,) */
    char *pool;     /* token strings */
    size_t pool_len, pool_cap;

    int32_t *hash; /* (hash_cap,) token ids by stored text; -1 = empty */
    size_t hash_cap;
    tok_pairmap merges;

    int32_t byte_tok[256]; /* token of each byte (byte-level char / <0xXX>), -1 if none */
    int32_t *added;        /* (n_added,) ids matched in text, longest first per first byte */
    int n_added;
    int32_t added_first[257]; /* added[added_first[b] .. added_first[b+1]) start with byte b */

    int32_t bos, eos, unk;
    int add_bos;
    int add_space_prefix; /* SPM: "▁" before the first piece (and after added tokens) */
    int prefix_first_only; /* SPM: ... but only at the start of the text (Metaspace "first") */
    int escape_spaces;    /* SPM: ' ' -> "▁" */
    int ignore_merges;    /* BPE: a piece that is a whole token is taken as is */
    int rank_by_score;    /* SPM from GGUF: merge priority from scores, not a merges list */
    int nfc;              /* normalize text segments to NFC first (tokenizer.json "NFC") */
    uint8_t *eog;         /* (n_vocab,) 1 = ends generation */
    char *chat_template;
};

/* ---- building (loaders) ---------------------------------------------------------- */
st_tokenizer *tok_new(st_tok_kind kind, int n_vocab);
/* Set token id's stored text, score and type (before tok_index). */
void tok_set(st_tokenizer *t, int32_t id, const char *text, size_t len, float score, int type);
/* Build the text hash and raw pieces. A text held by several ids finds
 * the lowest one. */
int tok_index(st_tokenizer *t);
/* Add a merge "a b" given by stored texts, with rank (lower merges first).
 * Returns 1 if added, 0 if a part or the result is not in the vocabulary. */
int tok_add_merge(st_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, int32_t rank);
/* SPM from GGUF: derive merges from the vocabulary and scores. */
void tok_merges_from_scores(st_tokenizer *t);
/* Added-token table, EOG set, checks. chat_template may be NULL (copied). */
int tok_finish(st_tokenizer *t);

int32_t tok_find(const st_tokenizer *t, const char *text, size_t len);
static inline const char *tok_text(const st_tokenizer *t, int32_t id) { return t->pool + t->tok[id].text_off; }
static inline const char *tok_raw(const st_tokenizer *t, int32_t id) { return t->pool + t->tok[id].raw_off; }

/* ---- BPE core (tok_bpe.c) ---------------------------------------------------------- */
void tok_pairmap_init(tok_pairmap *m, size_t expect);
void tok_pairmap_free(tok_pairmap *m);
/* Insert unless present (the first, lower rank, wins). */
void tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged);
int tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged);

/* Merge the symbols ids[0..n) in place by the merges map (lowest rank
 * first, leftmost on ties); returns the new count. */
int tok_bpe_merge(const st_tokenizer *t, int32_t *ids, int n);

/* The GPT-2 byte <-> printable code point mapping. */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp); /* -1 if cp is not a mapped byte */

#endif
