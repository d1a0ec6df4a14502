/* Self-contained step description (see batch.h). */
#include "batch.h"

#include <stdlib.h>
#include <string.h>

#include "../common/st_common.h"

void st_sched_batch_init(st_sched_batch *sb) { memset(sb, 0, sizeof *sb); }

void st_sched_batch_free(st_sched_batch *sb)
{
    free(sb->tokens);
    free(sb->pos);
    free(sb->seqs);
    free(sb->info);
    free(sb->tables);
    free(sb->table_off);
    free(sb->logit_rows);
    free(sb->released);
    memset(sb, 0, sizeof *sb);
}

void st_sched_batch_reset(st_sched_batch *sb, uint64_t step)
{
    sb->step = step;
    sb->b = (st_batch){0};
    sb->n_table = 0;
    sb->n_logit_rows = 0;
    sb->n_released = 0;
}

void st_sched_batch_release(st_sched_batch *sb, uint64_t req_id)
{
    if (sb->n_released == sb->cap_released) {
        sb->cap_released = ST_MAX(16, sb->cap_released * 2);
        sb->released = st_xrealloc(sb->released, (size_t)sb->cap_released * sizeof *sb->released);
    }
    sb->released[sb->n_released++] = req_id;
}

int st_sched_batch_add(st_sched_batch *sb, int32_t seq_id, uint64_t req_id, const int32_t *tokens, int n,
                       int pos0, const int32_t *table, int n_blocks, int want_logits, const st_sampling *sampling)
{
    int row0 = sb->b.n_tokens, k = sb->b.n_seqs;
    if (row0 + n > sb->cap_tokens) {
        sb->cap_tokens = ST_MAX(row0 + n, sb->cap_tokens * 2);
        sb->tokens = st_xrealloc(sb->tokens, (size_t)sb->cap_tokens * sizeof(int32_t));
        sb->pos = st_xrealloc(sb->pos, (size_t)sb->cap_tokens * sizeof(int32_t));
    }
    if (k + 1 > sb->cap_seqs) {
        sb->cap_seqs = ST_MAX(16, sb->cap_seqs * 2);
        sb->seqs = st_xrealloc(sb->seqs, (size_t)sb->cap_seqs * sizeof *sb->seqs);
        sb->info = st_xrealloc(sb->info, (size_t)sb->cap_seqs * sizeof *sb->info);
        sb->logit_rows = st_xrealloc(sb->logit_rows, (size_t)sb->cap_seqs * sizeof(int32_t));
        sb->table_off = st_xrealloc(sb->table_off, (size_t)sb->cap_seqs * sizeof(size_t));
    }
    if (sb->n_table + (size_t)n_blocks > sb->cap_table) {
        sb->cap_table = ST_MAX(sb->n_table + (size_t)n_blocks, sb->cap_table * 2);
        sb->tables = st_xrealloc(sb->tables, sb->cap_table * sizeof(int32_t));
    }
    memcpy(sb->tokens + row0, tokens, (size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++)
        sb->pos[row0 + i] = pos0 + i;
    memcpy(sb->tables + sb->n_table, table, (size_t)n_blocks * sizeof(int32_t));
    sb->table_off[k] = sb->n_table; /* tables may still move: pointers are set by seal */
    sb->seqs[k] = (st_batch_seq){.seq_id = seq_id,
                                 .row0 = row0,
                                 .n_tokens = n,
                                 .pos0 = pos0,
                                 .n_blocks = n_blocks,
                                 .block_table = NULL,
                                 .want_logits = want_logits ? 1 : 0};
    sb->info[k] = (st_sched_seq_info){.req_id = req_id, .logit_row = -1, .sampling = *sampling};
    if (want_logits) {
        sb->info[k].logit_row = sb->n_logit_rows;
        sb->logit_rows[sb->n_logit_rows++] = row0 + n - 1;
    }
    sb->n_table += (size_t)n_blocks;
    sb->b.n_tokens += n;
    sb->b.n_seqs++;
    return k;
}

void st_sched_batch_seal(st_sched_batch *sb)
{
    for (int k = 0; k < sb->b.n_seqs; k++)
        sb->seqs[k].block_table = sb->tables + sb->table_off[k];
    sb->b.tokens = sb->tokens;
    sb->b.pos = sb->pos;
    sb->b.seqs = sb->seqs;
}
