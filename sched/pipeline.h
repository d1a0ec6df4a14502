/* The head of a manual pipeline: a batch executor for the batcher
 * (st_batcher_set_executor) that runs the head's own first layer range
 * locally, sends the hidden states (or, with no local layers, the token
 * ids) to the first remote stage, and waits for the last stage's logits.
 * Create that batcher with st_batcher_config.external_exec: it then holds
 * no KV cache or activations, only the block manager this geometry mirrors.
 *
 *   head (batcher, layers [0,k)) --next--> stage [k,j) --> ... --> stage [i,n) --back--> head
 *
 * The batcher decides every block table; the stages allocate the same KV
 * geometry at setup and never run an allocator. As an asynchronous
 * executor (st_pipeline_async_exec) it keeps up to ST_BATCHER_MAX_INFLIGHT
 * batches out: submit runs the head's layers and sends the FORWARD, collect
 * waits for its RESULT; the stages answer in order, so RESULTs are matched
 * to batches by order (and their step ids checked). With the batcher's
 * max_inflight = the number of stages (the head counts when it holds
 * layers), each stage computes one batch while the others compute theirs.
 * When a stage dies or the link breaks, the steps out and every later one
 * fail at once with an error naming the link; a stage's error for one step
 * fails that step only. */
#ifndef ST_PIPELINE_H
#define ST_PIPELINE_H

#include "../dataplane/transport.h"
#include "../engine/model.h"
#include "batch.h"
#include "batcher.h"

typedef struct st_pipeline_config {
    const st_model *local;   /* the head's layers [0,k) (k < n_layers), or NULL */
    st_backend *be;          /* runs `local` */
    const st_model_config *model; /* the whole model's geometry (NULL: local's) */
    st_link *next;           /* to the first remote stage */
    st_link *back;           /* from the last stage */
    int act_dtype;           /* enum st_act_dtype on the wire (default F32: exact) */
    int n_blocks, block_size; /* the batcher's KV geometry */
    int max_tokens, max_seqs; /* the batcher's max_num_tokens_per_batch, max_batch_size */
    int setup_timeout_ms;    /* for the setup round trip (default 30000) */
} st_pipeline_config;

typedef struct st_pipeline st_pipeline;

/* Start polling cores on both links (the caller keeps owning the links and
 * closes them after st_pipeline_destroy) and send the setup through the
 * ring: every stage checks the model geometry and layer contiguity and
 * allocates its KV share. Returns an error naming the stage that refused. */
int st_pipeline_create(const st_pipeline_config *c, st_pipeline **out);
void st_pipeline_destroy(st_pipeline *p);

/* st_batch_async_exec (ctx is the st_pipeline): submit encodes sb, runs the
 * head's layers on it and sends it; collect waits for that batch's logits
 * (batches are collected in the order they were submitted). slot in
 * [0, ST_BATCHER_MAX_INFLIGHT). */
int st_pipeline_submit(void *ctx, const struct st_sched_batch *sb, int slot);
int st_pipeline_collect(void *ctx, const struct st_sched_batch *sb, int slot, float *logits);
/* {st_pipeline_submit, st_pipeline_collect, p}, for st_batcher_set_async_executor. */
st_batch_async_exec st_pipeline_async_exec(st_pipeline *p);

/* st_batch_executor (one batch at a time): submit then collect, in slot 0. */
int st_pipeline_exec(void *ctx, const struct st_sched_batch *sb, float *logits);

/* 0 while healthy, else the error that took the pipeline down. */
int st_pipeline_error(const st_pipeline *p);

#endif
