/* Tokenizers: byte-level BPE (gpt2, llama-3, qwen2, starcoder/smollm
 * pre-tokenizers) and SentencePiece-style BPE with byte fallback (llama-2),
 * with added/special tokens; loaded from GGUF tokenizer.ggml.* metadata or
 * from a Hugging Face tokenizer.json (+ tokenizer_config.json).
 *
 * Encoding never adds BOS by itself: callers ask for it (st_tok_add_bos()).
 * Special tokens in the text ("<|im_start|>") are matched as single tokens
 * only when parse_special is set (chat templates), never in user content;
 * user-defined added tokens are always matched (as Hugging Face does).
 *
 * A loaded tokenizer is immutable: any number of threads may encode and
 * decode with it at once. */
#ifndef ST_TOKENIZER_H
#define ST_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct st_gguf;
typedef struct st_tokenizer st_tokenizer;

typedef enum {
    ST_TOK_BPE = 0, /* byte-level BPE (GPT-2 byte-to-unicode mapping) */
    ST_TOK_SPM = 1, /* SentencePiece-style BPE over scores, byte fallback */
} st_tok_kind;

/* From GGUF metadata (tokenizer.ggml.model/pre/tokens/merges/scores/
 * token_type/bos_token_id/eos_token_id/...). */
int st_tok_load_gguf(const struct st_gguf *g, st_tokenizer **out);
/* From a tokenizer.json file; tokenizer_config.json beside it (optional)
 * gives bos/eos, add_bos and the chat template. */
int st_tok_load_json(const char *tokenizer_json_path, st_tokenizer **out);
/* From tokenizer.json bytes in memory (fuzz target). */
int st_tok_load_json_mem(const char *buf, size_t len, st_tokenizer **out);
void st_tok_free(st_tokenizer *t);

/* Encode text (n bytes, any bytes: invalid UTF-8 is encoded through byte
 * tokens / byte fallback, never rejected). Writes up to cap ids into out and
 * returns the total count needed (call again with a larger buffer if it
 * exceeds cap), or a negative error. */
int st_tok_encode(const st_tokenizer *t, const char *text, size_t n, int parse_special, int32_t *out, int cap);

/* Raw bytes of one token's text (after byte-level/SPM unmapping), e.g.
 * "▁Hello" -> " Hello", "<0x0A>" -> "\n". Special tokens give their text
 * ("<|im_end|>"). Returns length, writes up to cap bytes. */
int st_tok_piece(const st_tokenizer *t, int32_t id, char *out, int cap);

/* Decode a whole sequence to bytes (appends into out up to cap; returns the
 * total length needed). skip_special drops control tokens' text. */
int st_tok_decode(const st_tokenizer *t, const int32_t *ids, int n, int skip_special, char *out, int cap);

int st_tok_vocab_size(const st_tokenizer *t);
st_tok_kind st_tok_kind_of(const st_tokenizer *t);
int32_t st_tok_bos(const st_tokenizer *t);  /* -1 if none */
int32_t st_tok_eos(const st_tokenizer *t);  /* -1 if none */
int st_tok_add_bos(const st_tokenizer *t);  /* 1 if the model wants BOS prepended */
/* 1 if id ends generation (eos, eot, <|im_end|>, <|eot_id|>, <|endoftext|>...). */
int st_tok_is_eog(const st_tokenizer *t, int32_t id);
/* 1 if id is a control/special token. */
int st_tok_is_special(const st_tokenizer *t, int32_t id);
/* Id of an exact token text as the vocabulary stores it (byte-level BPE:
 * "Ġhello" for " hello"; SPM: "▁Hello"; special tokens as written:
 * "<|im_end|>"), or -1. */
int32_t st_tok_lookup(const st_tokenizer *t, const char *text, size_t n);
/* The chat template carried by the tokenizer source (GGUF
 * tokenizer.chat_template or tokenizer_config.json chat_template), or NULL. */
const char *st_tok_chat_template(const st_tokenizer *t);

/* ---- streaming detokenizer ---------------------------------------------------
 * Feed ids one at a time; each call yields the bytes that are now final,
 * never half a UTF-8 character (incomplete sequences are held until the
 * next token completes them; an invalid sequence is emitted as U+FFFD).
 * SPM leading-space handling matches st_tok_decode of the whole sequence. */
typedef struct st_detok {
    const st_tokenizer *tok;
    int skip_special;
    int n_seen;          /* tokens fed so far */
    int any_out;         /* 1 once a token produced bytes (SPM strips one leading space before that) */
    unsigned char pend[8];
    int n_pend;          /* bytes of an incomplete UTF-8 sequence held back */
} st_detok;

void st_detok_init(st_detok *d, const st_tokenizer *t, int skip_special);
/* Append the now-complete bytes for token id to out (cap bytes); returns
 * the number written (the caller sizes out >= 256 + 8, enough for any real
 * vocabulary), or ST_ERANGE when the bytes would not fit (nothing consumed),
 * ST_EINVAL for an id out of range. */
int st_detok_feed(st_detok *d, int32_t id, char *out, int cap);
/* Flush held bytes at end of stream (as U+FFFD if incomplete). */
int st_detok_flush(st_detok *d, char *out, int cap);

#ifdef __cplusplus
}
#endif
#endif
