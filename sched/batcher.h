/* The continuous batcher: iteration-level scheduling of many requests over
 * one model on one backend.
 *
 * Each step it takes, in this order,
 *   1. one decode row for every running sequence that has a sampled token
 *      to feed back,
 *   2. the next prompt chunk of running sequences still in prefill,
 *   3. first chunks of waiting requests, first come first served, while
 *      KV blocks are free (a prefix-cache hit skips the cached part; while
 *      others run, 1% of the blocks is kept free for their decodes, and
 *      nothing is admitted in a step that had to preempt),
 * under max_num_tokens_per_batch rows and max_batch_size sequences, and
 * runs them as ONE mixed st_forward call. When a running sequence needs a
 * KV block and none is left, the newest running sequence is preempted: its
 * blocks are released and it goes back to the front of the waiting queue
 * with its prompt plus the tokens generated so far; when re-admitted those
 * are prefilled again and generation continues exactly where it stopped
 * (its sampler state is kept, no token is repeated or lost). Decodes are
 * placed before prompt chunks, so a long prompt never stalls the streams
 * already running; the price is that an older sequence still in prefill
 * can be the one preempted when only newer decodes were placed before it.
 *
 * Threading. st_batcher_start runs the step loop on its own thread; any
 * thread may st_batcher_submit / st_batcher_abort (a mutex-protected inbox
 * that the loop drains once per step). Results come back through the
 * request's callback, invoked on the batcher thread (or on the thread that
 * calls st_batcher_step when no loop thread runs): one event per sampled
 * token, and exactly one final event (finish != ST_FINISH_NONE) after which
 * the batcher never mentions the request again. A callback must not block
 * for long; it may call st_batcher_submit/abort, never st_batcher_stop or
 * st_batcher_destroy.
 *
 * Pipelined execution. With an asynchronous executor (st_batch_async_exec,
 * e.g. a pipeline of P stages) and max_inflight = P, each step first fills
 * the pipeline: while fewer than max_inflight batches are out it schedules
 * a batch from the sequences NOT in flight (decodes whose last token is
 * sampled, prompt chunks, admissions) and submits it; then it collects the
 * oldest batch, samples and streams its tokens. So every stage works on a
 * different batch of disjoint sequences while the others do. A batch then
 * takes at most ceil(sequences / max_inflight) sequences, so that the rest
 * can form the next one. A sequence in flight keeps its KV blocks: it is
 * never preempted, and an abort only marks it (its ABORT event comes when
 * its batch is back). With a synchronous executor (the local forward) one
 * batch is out at a time, whatever max_inflight says.
 *
 * Batch invariance: a sequence's rows are always contiguous and in position
 * order, whatever else shares the step, so with batch-invariant kernels a
 * greedy request gives the same tokens alone or among many. */
#ifndef ST_BATCHER_H
#define ST_BATCHER_H

#include <stddef.h>
#include <stdint.h>

#include "../engine/model.h"
#include "../engine/sampler.h"
#include "batch.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ST_MAX_TOP_LOGPROBS 20
#define ST_MAX_STOP_STRINGS 16
#define ST_MAX_STOP_LEN 256 /* bytes per stop string */

typedef enum {
    ST_FINISH_NONE = 0, /* not finished (every event but the last) */
    ST_FINISH_STOP,     /* end-of-generation token, stop token id or stop string */
    ST_FINISH_LENGTH,   /* max_tokens reached, or the context length */
    ST_FINISH_ABORT,    /* st_batcher_abort, or the batcher stopped */
    ST_FINISH_ERROR,    /* the forward pass failed; see the event's error */
} st_finish_reason;

/* "stop", "length", "abort", "error" ("" for NONE): OpenAI's finish_reason
 * words where they exist. */
const char *st_finish_reason_name(st_finish_reason r);

typedef struct st_token_logprob {
    int32_t token;
    float logprob; /* natural log, under the model's unmodified distribution */
} st_token_logprob;

/* What a callback receives. Pointers are valid during the call only. */
typedef struct st_batcher_event {
    uint64_t id;                  /* request id from st_batcher_submit */
    int32_t token;                /* token sampled this step, or -1 (abort/error) */
    float logprob;                /* its logprob (when the request asked for logprobs) */
    const st_token_logprob *top;  /* (n_top,) best alternatives, most likely first */
    int n_top;
    const char *text;             /* UTF-8 bytes that became final now (may lag the token */
    size_t text_len;              /* while a stop string might be matching); none without a tokenizer */
    st_finish_reason finish;
    const char *error;            /* with ST_FINISH_ERROR */
    /* usage so far */
    int n_prompt;                 /* prompt tokens */
    int n_generated;              /* tokens sampled (including a final EOG token) */
    int n_cached;                 /* prompt tokens served from the prefix cache at admission */
} st_batcher_event;

typedef void (*st_batcher_cb)(const st_batcher_event *ev, void *user);

/* A request. Everything is copied by st_batcher_submit. */
typedef struct st_request {
    const int32_t *prompt;        /* (n_prompt,) token ids, 1 <= n_prompt < context length */
    int n_prompt;
    st_sampling sampling;         /* validated with st_sampling_validate */
    int max_tokens;               /* tokens to generate at most; <= 0: up to the context length */
    const char *const *stop;      /* (n_stop,) stop strings (needs a tokenizer); never emitted */
    int n_stop;
    const int32_t *stop_ids;      /* (n_stop_ids,) extra token ids that end generation */
    int n_stop_ids;
    int ignore_eos;               /* 1: the tokenizer's end-of-generation tokens do not stop */
    int logprobs;                 /* 1: report each sampled token's logprob */
    int top_logprobs;             /* 0..ST_MAX_TOP_LOGPROBS alternatives per token (implies logprobs) */
    st_batcher_cb cb;             /* may be NULL (fire and forget) */
    void *user;
} st_request;

/* A request with greedy sampling and no limits, for filling in. */
st_request st_request_default(void);

typedef struct st_batcher_config {
    int max_num_tokens_per_batch; /* rows per forward step (default 512) */
    int max_batch_size;           /* sequences running at once (default 16: on the CPU backend a
                                     decode step's cost grows with it, 16 keeps per-token latency
                                     within ~2x of batch 1 while giving most of the throughput) */
    int block_size;               /* KV token slots per block (default 16) */
    /* KV capacity: the first of these that is set wins */
    int n_blocks;                 /* > 0: exactly this many blocks */
    size_t kv_cache_bytes;        /* > 0: as many blocks as fit (--kv-cache-memory) */
    double kv_mem_fraction;       /* (0, 1]: of the free memory the backend's KV cache lives in
                                     (MemAvailable; a GPU's free memory under cuda) (default
                                     0.3), capped at what max_batch_size full contexts plus as
                                     much again for the prefix cache can use */
    int kv_mem_fraction_exact;    /* 1: kv_mem_fraction was asked for (--kv-cache-fraction):
                                     taken as given, without that cap */
    int max_ctx;                  /* <= 0: the model's context length; always capped so that one
                                     sequence fits in the whole cache */
    int prefix_cache;             /* 1 (default): share full prompt blocks between requests */
    int external_exec;            /* 1: another executor (st_batcher_set_executor, e.g. a pipeline)
                                     runs every batch; the batcher keeps its block manager, scheduling
                                     and sampling but allocates no KV cache or activations, and its
                                     model supplies only the geometry and tokenizer (any layer range).
                                     0 (default): the local st_forward over all layers */
    int max_inflight;             /* batches outstanding at once with an asynchronous executor,
                                     1..ST_BATCHER_MAX_INFLIGHT (default 1: one at a time); set it
                                     to the pipeline's stage count */
} st_batcher_config;

#define ST_BATCHER_MAX_INFLIGHT 8

st_batcher_config st_batcher_config_default(void);

/* Metrics counters (a snapshot). */
typedef struct st_batcher_stats {
    int n_running, n_waiting;     /* sequences now (waiting includes not yet drained submissions) */
    int kv_blocks_total, kv_blocks_used, kv_blocks_free, kv_blocks_cached;
    int block_size, max_ctx;
    uint64_t steps;               /* forward steps run */
    uint64_t batch_tokens;        /* sum of rows over all steps */
    uint64_t batch_seqs;          /* sum of sequences over all steps */
    int last_batch_tokens, last_batch_seqs;
    uint64_t prompt_tokens;       /* prompt tokens of admitted requests */
    uint64_t prompt_tokens_computed; /* rows at positions inside the original prompt */
    uint64_t recomputed_tokens;   /* rows re-prefilled after a preemption (beyond the prompt) */
    uint64_t prefix_hit_tokens;   /* tokens served from the prefix cache (all admissions) */
    uint64_t generated_tokens;
    uint64_t preemptions;
    uint64_t requests_submitted, requests_finished, requests_aborted;
} st_batcher_stats;

typedef struct st_batcher st_batcher;

/* Allocate the KV cache and activations for model m (all layers) on be.
 * With cfg->external_exec, m may hold any layer range (only m->cfg and
 * m->tok are read), nothing is allocated on be (which may be NULL), and
 * every step fails until st_batcher_set_executor installs an executor.
 * The batcher borrows m and be; they must outlive it. */
int st_batcher_create(st_model *m, st_backend *be, const st_batcher_config *cfg, st_batcher **out);
/* Stops the loop thread if running, finishes what is left with ABORT. */
void st_batcher_destroy(st_batcher *b);

/* Start / stop the loop thread. Stop returns after the current step; the
 * requests still queued or running then receive their ABORT event on the
 * calling thread. */
int st_batcher_start(st_batcher *b);
void st_batcher_stop(st_batcher *b);

/* Queue a request (any thread). Returns ST_OK and its id (> 0) in *id, or
 * ST_EINVAL / ST_ERANGE naming what is wrong (empty prompt, token id out of
 * the vocabulary, prompt not shorter than the context, bad sampling, stop
 * strings without a tokenizer...); then no callback will come. */
int st_batcher_submit(st_batcher *b, const st_request *r, uint64_t *id);
/* Abort a request (any thread; unknown or finished ids are ignored). Its
 * blocks are freed and its ABORT event sent at the start of the next step. */
void st_batcher_abort(st_batcher *b, uint64_t id);

/* Run one step on the calling thread (only while no loop thread runs).
 * Returns 1 if there was work, 0 if idle, or a negative error. */
int st_batcher_step(st_batcher *b);
/* Step until no request is left (only while no loop thread runs). */
int st_batcher_run_until_idle(st_batcher *b);

void st_batcher_get_stats(st_batcher *b, st_batcher_stats *s);
/* The block manager (for tests and metrics; touch only while no loop thread runs). */
struct st_kv_blocks *st_batcher_kv(st_batcher *b);
int st_batcher_max_ctx(const st_batcher *b);
/* Bytes of KV cache this batcher allocated on its backend (K and V, all
 * layers): 0 with external_exec, whose executor holds the KV. */
size_t st_batcher_local_kv_bytes(const st_batcher *b);

/* Runs one step's batch and leaves the logits of its sb->n_logit_rows rows,
 * (n_logit_rows, vocab) f32, in host memory `logits`. Returns ST_OK or an
 * error (the batch's requests then end with ST_FINISH_ERROR). The default
 * runs st_forward on this machine's backend and KV cache; a pipeline sends
 * the same batch to its stages instead (create that batcher with
 * external_exec so it holds no KV or activations of its own). */
typedef int (*st_batch_executor)(void *ctx, const st_sched_batch *sb, float *logits);
/* Replace the executor (NULL: the local forward, or with external_exec an
 * executor that fails every step). Only while no loop thread runs; batches
 * still out with the previous executor are completed first. */
void st_batcher_set_executor(st_batcher *b, st_batch_executor fn, void *ctx);

/* An asynchronous executor: up to max_inflight batches are out at once.
 *   submit  starts running sb; slot in [0, max_inflight) names it until its
 *           collect (no other outstanding batch has that slot). sb stays
 *           valid and unchanged until then. ST_OK, or an error: the batch's
 *           requests end with ST_FINISH_ERROR and collect is not called.
 *   collect waits for the batch in `slot` and leaves its logits as
 *           st_batch_executor does. Batches are collected in the order they
 *           were submitted, each exactly once. An error ends the batch's
 *           requests with ST_FINISH_ERROR; the other batches still follow.
 * Both are called on the stepping thread. The batches outstanding at any
 * time hold disjoint sequences (no sequence is in two batches). */
typedef struct st_batch_async_exec {
    int (*submit)(void *ctx, const st_sched_batch *sb, int slot);
    int (*collect)(void *ctx, const st_sched_batch *sb, int slot, float *logits);
    void *ctx;
} st_batch_async_exec;
/* Install an asynchronous executor (copied; NULL: as st_batcher_set_executor
 * with NULL). Same rules as st_batcher_set_executor. */
void st_batcher_set_async_executor(st_batcher *b, const st_batch_async_exec *x);
/* The local forward as an st_batch_executor (ctx: a batcher created without
 * external_exec). Safe to call on another thread than the stepping one, one
 * call at a time: it touches the KV cache and activations, which the step
 * never does (tests wrap it into an asynchronous executor). */
int st_batcher_exec_local(void *ctx, const st_sched_batch *sb, float *logits);
/* Batches outstanding now (0..max_inflight; on the stepping thread, or
 * while no loop thread runs). */
int st_batcher_inflight(const st_batcher *b);

/* ---- synchronous convenience (tests, CLI) ------------------------------------- */
typedef struct st_batcher_result {
    int32_t *tokens;              /* (n_tokens,) sampled tokens, malloc'd */
    int n_tokens;
    float *logprobs;              /* (n_tokens,) when requested, else NULL */
    char *text;                   /* NUL-terminated streamed text, malloc'd */
    size_t text_len;
    st_finish_reason finish;
    int n_prompt, n_cached;
} st_batcher_result;

/* Submit r (its cb/user are ignored) and wait for it to finish: on the loop
 * thread if one runs, else by stepping on this thread (other queued requests
 * progress too). */
int st_batcher_generate(st_batcher *b, const st_request *r, st_batcher_result *res);
void st_batcher_result_free(st_batcher_result *res);

#ifdef __cplusplus
}
#endif
#endif
