/* A single-sequence inference session over the whole model: the KV cache,
 * the activations, and the position. Used by `strait generate`, the engine
 * benchmark and the golden tests; the serving scheduler drives st_forward
 * directly with its own block manager. */
#ifndef ST_SESSION_H
#define ST_SESSION_H

#include "forward.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_session {
    st_model *m;
    st_backend *be;
    st_kv_cache kv;
    st_fwd_ctx fwd;
    int32_t *block_table; /* (n_blocks,) logical -> physical block */
    int n_blocks;
    int max_ctx;          /* positions the cache holds */
    int chunk;            /* prompt tokens per forward call */
    int n_past;           /* tokens already in the cache */
    int32_t *pos;         /* (chunk,) scratch */
    int32_t *rows;        /* (chunk,) scratch */
} st_session;

/* max_ctx: context to reserve (rounded up to whole blocks); chunk: the most
 * prompt tokens per forward step (prefill is chunked). */
int st_session_init(st_session *s, st_model *m, st_backend *be, int max_ctx, int chunk);
void st_session_free(st_session *s);
/* Forget all cached tokens. */
static inline void st_session_reset(st_session *s) { s->n_past = 0; }

/* Append n tokens at the current position. logits (host memory) receives
 * the last token's logits (vocab,) or, when all is set, every token's
 * (n, vocab); NULL skips the output matrix entirely when all is 0 and the
 * caller does not need logits. Returns ST_OK, ST_ERANGE when the context is
 * full, or a forward error. */
int st_session_eval(st_session *s, const int32_t *toks, int n, float *logits, int all);

#ifdef __cplusplus
}
#endif
#endif
