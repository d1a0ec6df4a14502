/* A scheduled step as a self-contained description: everything a stage
 * needs to run it (token ids, positions, per-sequence block tables) and
 * what the sampling stage needs (which rows give logits, each sequence's
 * sampling parameters), in arrays the batch owns. Built by the batcher's
 * policy, consumed by whatever executes it, unchanged: st_forward on this
 * machine, or a pipeline sending it to remote stages (st_pipeline_exec). */
#ifndef ST_SCHED_BATCH_H
#define ST_SCHED_BATCH_H

#include <stdint.h>

#include "../engine/sampler.h"
#include "../kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Per-sequence fields beyond st_batch_seq. */
typedef struct st_sched_seq_info {
    uint64_t req_id;
    int32_t logit_row;      /* index into logit_rows / the logits output, or -1 */
    st_sampling sampling;
} st_sched_seq_info;

typedef struct st_sched_batch {
    uint64_t step;          /* step number, for tracing */
    st_batch b;             /* points into the arrays below (valid after st_sched_batch_seal) */
    int32_t *tokens;        /* (cap_tokens,) */
    int32_t *pos;           /* (cap_tokens,) */
    int cap_tokens;
    st_batch_seq *seqs;     /* (cap_seqs,) */
    st_sched_seq_info *info; /* (cap_seqs,) */
    int cap_seqs;
    int32_t *tables;        /* all sequences' block tables, concatenated */
    size_t *table_off;      /* (cap_seqs,) where each sequence's table starts in tables */
    size_t n_table, cap_table;
    int32_t *logit_rows;    /* (n_logit_rows,) ascending rows whose logits are wanted */
    int n_logit_rows;
    /* Requests that released their blocks (finished, aborted, preempted)
     * since the previous batch: executors that keep per-sequence state (a
     * pipeline's block tables, sched/block_tables.h) forget them. */
    uint64_t *released;     /* (cap_released,) */
    int n_released, cap_released;
} st_sched_batch;

void st_sched_batch_init(st_sched_batch *sb);
void st_sched_batch_free(st_sched_batch *sb);
/* Empty it for the next step (keeps the memory). */
void st_sched_batch_reset(st_sched_batch *sb, uint64_t step);
/* Append n rows of one sequence: tokens[0..n) at positions pos0..pos0+n-1,
 * its block table (n_blocks ids, copied), and whether its last row's logits
 * are wanted. Returns the sequence's index in the batch. */
int st_sched_batch_add(st_sched_batch *sb, int32_t seq_id, uint64_t req_id, const int32_t *tokens, int n,
                       int pos0, const int32_t *table, int n_blocks, int want_logits, const st_sampling *sampling);
/* Note that request req_id released its blocks (see `released`). */
void st_sched_batch_release(st_sched_batch *sb, uint64_t req_id);
/* Fix the st_batch view after the last add. */
void st_sched_batch_seal(st_sched_batch *sb);

#ifdef __cplusplus
}
#endif
#endif
