/* The messages of a manual pipeline, on top of the data-plane wire format
 * (dataplane/wire.h). The ring is head -> stage 1 -> ... -> stage N -> head:
 *
 *   FORWARD           one step: first a record per request that released
 *                     its blocks (flag ST_PIPE_REC_RELEASE, no rows, no
 *                     blocks), then a record per sequence of the step (first
 *                     position, row count, the block ids its table gained
 *                     since its previous step — or its whole table with flag
 *                     ST_PIPE_REC_RESET —, sampling numbers; flag
 *                     ST_PIPE_REC_LOGITS when its last row's logits are
 *                     wanted: sched/block_tables.h), payload = token ids (i32, hidden 1) for a
 *                     stage that embeds, else hidden states in the setup's
 *                     activation dtype (sched/act_codec.h): f32 or bf16
 *                     with hidden = dim, or int8 as wire dtype U8 with
 *                     hidden = dim + 4 (bytes per row: its share of the
 *                     payload, n_tokens f32 scales then n_tokens x dim
 *                     int8); always payload_len = st_act_bytes.
 *   FORWARD|SETUP     before any step: payload = st_pipe_setup as i32s. Each
 *                     stage checks the geometry and that its first layer is
 *                     next_layer, allocates its KV share, passes it on with
 *                     next_layer = its end; the last answers RESULT|SETUP.
 *   FORWARD|ERROR     a stage failed this step (payload = the message, u8);
 *                     later stages pass it on, the last as RESULT|ERROR.
 *   RESULT            the last stage's answer to a step (same step id):
 *                     logits of the wanted rows, f32, hidden = vocab, in
 *                     batch row order. The head samples (its batcher keeps
 *                     each request's sampler and RNG).
 *
 * Every FORWARD gets exactly one RESULT, in order, so the head can match
 * them by order and check the step id. */
#ifndef ST_PIPELINE_MSG_H
#define ST_PIPELINE_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "../dataplane/wire.h"
#include "../engine/stage.h"
#include "batch.h"
#include "block_tables.h"

#define ST_PIPE_F_SETUP 1u   /* header flag */
#define ST_PIPE_F_ERROR 2u   /* header flag */
#define ST_PIPE_REC_LOGITS 1u  /* record flags */
#define ST_PIPE_REC_RESET 2u   /* the record's blocks are the whole table, not an append */
#define ST_PIPE_REC_RELEASE 4u /* the sequence released its blocks: forget its table */

/* What a stage needs to know before the first step (all positive). */
typedef struct st_pipe_setup {
    int32_t n_layers, dim, vocab; /* the model's geometry, checked by every stage */
    int32_t n_blocks, block_size; /* the head's KV geometry */
    int32_t max_tokens, max_seqs; /* rows and sequences per step at most */
    int32_t act_dtype;            /* enum st_act_dtype of hidden states on the wire */
    int32_t next_layer;           /* first layer the receiving stage must hold */
} st_pipe_setup;
#define ST_PIPE_SETUP_N 9

/* Wire dtype of an activation dtype, and back (-1 when unknown): f32 <->
 * F32, bf16 <-> BF16, int8 <-> U8. */
int st_pipe_wire_dt(int act_dtype);
int st_pipe_act_dt(int wire_dtype);
/* The header's `hidden` for hidden states of model width dim: dim, or
 * dim + 4 for int8 (so that n_tokens x hidden x 1 byte = st_act_bytes). */
uint32_t st_pipe_wire_hidden(int act_dtype, int dim);

/* Header + records of a FORWARD for sb with n_released release records
 * (upper bound, bytes). */
size_t st_pipe_forward_meta_size(const st_sched_batch *sb, int n_released);
/* Largest message a pipeline with this geometry sends. */
size_t st_pipe_max_msg(int dim, int vocab, int max_tokens, int max_seqs, int max_blocks_per_seq);

/* Write the header and records of a FORWARD for sb into buf[cap]; the
 * payload (n_tokens x hidden of wire_dt) goes at buf + *meta_len. The
 * released[0..n_released) requests get release records, and `sent` (the
 * tables as the stages hold them) is brought up to date: each sequence's
 * record carries only what its table gained, or all of it with
 * ST_PIPE_REC_RESET. */
int st_pipe_encode_forward(void *buf, size_t cap, const st_sched_batch *sb, const uint64_t *released,
                           int n_released, st_bt_map *sent, uint64_t step, int wire_dt, uint32_t hidden,
                           size_t *meta_len);
/* The block-table limits both ends of a pipeline apply (so a head and its
 * stages agree): tables per pipeline and blocks per table. */
void st_pipe_bt_limits(int n_blocks, int max_seqs, int *max_tables, int *max_blocks);
/* The same records as an accepted FORWARD `in`, with a new payload shape. */
int st_pipe_reencode_forward(void *buf, size_t cap, const st_wire_msg *in, int wire_dt, uint32_t hidden,
                             size_t *meta_len);
/* A message without records (SETUP, RESULT, ERROR): header only; the
 * payload (n_tokens x hidden of wire_dt) goes at buf + *meta_len. */
int st_pipe_encode_plain(void *buf, size_t cap, int kind, uint32_t flags, uint64_t step, int wire_dt,
                         uint32_t n_tokens, uint32_t hidden, size_t *meta_len);
/* A whole ERROR message (FORWARD|ERROR or RESULT|ERROR) carrying text. */
int st_pipe_encode_error(void *buf, size_t cap, int kind, uint64_t step, const char *text, size_t *len);

int st_pipe_setup_decode(const st_wire_msg *m, st_pipe_setup *out);

/* A FORWARD decoded for a stage: an st_batch over arrays it owns. */
typedef struct st_pipe_batch {
    st_batch b;
    int32_t *tokens, *pos;   /* (cap_tokens,) */
    int cap_tokens;
    st_batch_seq *seqs;      /* (cap_seqs,) */
    int cap_seqs;
    int32_t *tables;         /* the step's whole block tables, concatenated */
    size_t cap_tables;
    int32_t *rows;           /* (n_rows,) rows whose logits are wanted, ascending */
    int n_rows;
    const void *act;         /* hidden states in the message payload, or NULL (token ids) */
    size_t act_len;          /* its bytes (= st_act_bytes(act_dtype, n_tokens, dim)) */
    int act_dtype;
} st_pipe_batch;

void st_pipe_batch_free(st_pipe_batch *pb);
/* Decode an accepted FORWARD against the stage's setup, applying its
 * release, reset and append records to `tables` (the stage's copy of the
 * block tables) in order: at most max_tokens rows and max_seqs sequences
 * in the step, block ids < n_blocks, appends only to tables held, tables
 * long enough for the positions, token ids < vocab (when first) or the setup's dtype with
 * its wire hidden and a payload st_act_check accepts (exact length; int8
 * scales finite and >= 0). ST_EPROTO naming the problem otherwise. pb->act
 * then points at the payload in pb->act_dtype (decode it with
 * st_act_decode, or hand f32/bf16 straight to st_stage_run). */
int st_pipe_batch_decode(const st_wire_msg *m, const st_pipe_setup *su, int first, st_bt_map *tables,
                         st_pipe_batch *pb);

/* Idle back-off for a thread polling a ring: spin, yield, then short
 * sleeps. *idle counts idle rounds (reset it to 0 after work). */
void st_pipe_backoff(int *idle);

#endif
