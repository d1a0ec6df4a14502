/* The forward pass of a layer range over one mixed batch, written once
 * against the backend interface. A pipeline stage runs exactly this:
 * the first range embeds tokens, the last applies the final norm and the
 * output matrix; middle ranges map hidden states to hidden states. */
#ifndef ST_FORWARD_H
#define ST_FORWARD_H

#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Activation scratch for batches of up to max_tokens rows and max_logits
 * logit rows, in backend memory. */
typedef struct st_fwd_ctx {
    const st_model *m;
    st_backend *be;
    int max_tokens;
    int max_logits;
    float *x;      /* (max_tokens, dim) residual stream: the hidden state in/out */
    float *xb;     /* (max_tokens, max(dim, q_dim)) normed input / projection out */
    float *q;      /* (max_tokens, n_heads * head_dim) */
    float *k, *v;  /* (max_tokens, n_kv_heads * head_dim) */
    float *att;    /* (max_tokens, n_heads * head_dim) */
    float *hb, *hb2; /* (max_tokens, ffn_dim) */
    float *lx;     /* (max_logits, dim) rows gathered for the logits */
    float *logits; /* (max_logits, vocab) */
} st_fwd_ctx;

int st_fwd_init(st_fwd_ctx *f, const st_model *m, st_backend *be, int max_tokens, int max_logits);
void st_fwd_free(st_fwd_ctx *f);

/* Allocate a paged KV cache for the model's layer range on the backend:
 * n_blocks blocks of block_size token slots, f16. */
int st_kv_init(st_kv_cache *kv, const st_model *m, st_backend *be, int n_blocks, int block_size);
void st_kv_free(st_kv_cache *kv, st_backend *be);

/* Run layers [layer_start, layer_end) on batch b (b->n_tokens <= max_tokens).
 * First range: reads b->tokens; otherwise reads f->x (the previous stage's
 * hidden states, (n_tokens, dim)). Non-last range: leaves the output hidden
 * states in f->x. Last range: computes logits for the n_rows rows listed in
 * rows (ascending row indices, n_rows <= max_logits) into f->logits
 * (n_rows, vocab). Returns ST_OK or ST_EINVAL on a batch that does not fit. */
int st_forward(st_fwd_ctx *f, st_kv_cache *kv, const st_batch *b, const int32_t *rows, int n_rows);

#ifdef __cplusplus
}
#endif
#endif
