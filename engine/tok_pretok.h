/* Pre-tokenizers of byte-level BPE: the regex splits of the model families,
 * written as hand matchers over code point classes (no regex engine).
 * Each split gives pieces that BPE then encodes independently. */
#ifndef ST_TOK_PRETOK_H
#define ST_TOK_PRETOK_H

#include <stddef.h>

typedef enum {
    ST_PRE_NONE = 0,   /* whole text is one piece (SentencePiece style) */
    ST_PRE_GPT2,       /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    ST_PRE_LLAMA3,     /* (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
    ST_PRE_QWEN2,      /* as LLAMA3 with \p{N} (single digits) */
    ST_PRE_STARCODER,  /* each \p{N} isolated, then GPT2 on the rest (also smollm, refact) */
} st_pretok_kind;

/* Called for each piece [off, off+len) of the text, in order (len > 0). */
typedef void (*st_pretok_emit)(void *ctx, size_t off, size_t len);

/* Split text[0, n). Pieces cover the text exactly. Invalid UTF-8 bytes are
 * single "other" characters. */
void st_pretok_split(st_pretok_kind k, const char *text, size_t n, st_pretok_emit emit, void *ctx);

/* Kind for a GGUF tokenizer.ggml.pre name; -1 if unknown. */
int st_pretok_from_gguf_name(const char *name, size_t len);
/* Kind for a tokenizer.json Split regex pattern; -1 if unknown. */
int st_pretok_from_regex(const char *pattern, size_t len);
const char *st_pretok_name(st_pretok_kind k);

#endif
