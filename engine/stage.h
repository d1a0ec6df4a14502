/* A pipeline stage on the engine side: one layer range of a model with its
 * share of the paged KV cache and activation scratch, run on batches whose
 * block tables were decided elsewhere (the head's batcher). Hidden states
 * come in and go out as host memory in f32 or bf16, logits as f32; the
 * engine knows nothing of how those bytes travel. */
#ifndef ST_STAGE_H
#define ST_STAGE_H

#include <stdint.h>

#include "forward.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Element type of hidden states handed between stages. */
enum st_act_dtype {
    ST_ACT_F32 = 0,  /* exact: a pipeline gives the same bits as one machine */
    ST_ACT_BF16 = 1, /* half the bytes; rounding to nearest even */
    ST_ACT_I8 = 2,   /* ~quarter the bytes: int8 with one f32 scale per token row,
                      * for slow links; lossy. The engine never sees it: the
                      * sender and receiver convert (sched/act_codec.h). */
};
/* 4, 2, or 0 for ST_ACT_I8 (no fixed element size) or an unknown value:
 * the dtypes st_stage_run takes. */
size_t st_act_dtype_size(int dt);

typedef struct st_stage {
    const st_model *m;  /* borrowed; its layer range is what this stage runs */
    st_backend *be;     /* borrowed */
    st_fwd_ctx fwd;
    st_kv_cache kv;     /* layers [m->layer_start, m->layer_end), n_blocks x block_size slots */
    float *conv;        /* (max_tokens, dim) host scratch for bf16 <-> f32 */
} st_stage;

/* Allocate the KV share (same geometry as the head: n_blocks blocks of
 * block_size slots, so the head's block ids are valid here) and scratch
 * for up to max_tokens rows and max_logits logit rows. */
int st_stage_init(st_stage *s, const st_model *m, st_backend *be, int n_blocks, int block_size, int max_tokens,
                  int max_logits);
void st_stage_free(st_stage *s);

/* Run the stage's layers on b.
 *  in:  first stage: ignored (b->tokens are embedded); else (b->n_tokens,
 *       dim) hidden states of type in_dt in host memory.
 *  out: non-last stage: (b->n_tokens, dim) hidden states of type out_dt;
 *       last stage: (n_rows, vocab) f32 logits of the listed rows.
 * Returns ST_OK, or ST_EINVAL for a batch that does not fit (rows, blocks,
 * positions are checked by st_forward) or an unknown dtype. */
int st_stage_run(st_stage *s, const st_batch *b, const void *in, int in_dt, const int32_t *rows, int n_rows,
                 void *out, int out_dt);

/* Bytes st_stage_run writes to out for a batch of n_tokens rows and n_rows
 * logit rows. */
size_t st_stage_out_bytes(const st_stage *s, int n_tokens, int n_rows, int out_dt);

/* bf16 <-> f32 for n values (round to nearest even; NaN stays NaN). */
void st_act_f32_to_bf16(uint16_t *dst, const float *src, size_t n);
void st_act_bf16_to_f32(float *dst, const uint16_t *src, size_t n);

#ifdef __cplusplus
}
#endif
#endif
