/* Private state of the batcher, shared by its files:
 *   batcher.c     lifecycle, the loop thread, submit/abort inbox, stats, sync helper
 *   sched_step.c  the policy of one step: pick rows, allocate blocks, preempt,
 *                 build the batch, run it, hand the logits to the sequences
 *   seq_output.c  what a sampled token means for its request: logprobs, stop
 *                 conditions, held-back text, events */
#ifndef ST_BATCHER_INTERNAL_H
#define ST_BATCHER_INTERNAL_H

#include <pthread.h>

#include "../common/trace.h"
#include "../engine/forward.h"
#include "../engine/tokenizer.h"
#include "batch.h"
#include "batcher.h"
#include "kv_blocks.h"

enum { SEQ_WAITING = 0, SEQ_RUNNING = 1, SEQ_DONE = 2 };

typedef struct seq {
    uint64_t id;
    struct seq *prev, *next;      /* inbox or waiting-queue links */
    st_request req;               /* copy; prompt/stop/stop_ids point to owned copies below */
    char **stop;                  /* (req.n_stop,) owned stop strings */
    int32_t *stop_ids;            /* (req.n_stop_ids,) owned */
    int max_stop_len;

    int32_t *tokens;              /* (cap_tokens,) prompt then generated tokens */
    int n_tokens, cap_tokens;
    int n_prompt;
    int n_generated;
    int n_cached;                 /* prefix-cache tokens at first admission */
    int admitted;                 /* 1 after the first admission */

    st_kv_seq kv;                 /* blocks; kv.n_committed = tokens whose KV is written */
    st_sampler sampler;           /* per-request RNG: kept across preemption */
    st_detok detok;
    char *held;                   /* (cap_held,) decoded text not yet emitted */
    size_t n_held, cap_held;

    int state;
    int sched_rows;               /* rows in the batch being built or in flight (0: in none) */
    int in_flight;                /* 1 while its batch is out with the executor */
    int aborted;                  /* abort asked while in flight: retire when the batch is back */
    uint64_t trace_id;            /* request id if traced, else 0 (common/trace.h) */
    uint64_t t_queued;            /* ns: submitted, or preempted (queue-wait histogram) */
    int batch_idx;                /* its index in its batch, or -1 */
} seq;

/* One batch out with the executor (or being built). */
typedef struct inflight {
    st_sched_batch batch;
    seq **seqs;                   /* (max_batch_size,) its sequences, in batch order */
    int n_seqs;
    float *logits;                /* (max_batch_size, vocab) host logits of its rows */
    uint64_t traced;              /* a traced request's id if the batch holds one, else 0 */
    uint64_t t0;                  /* ns: submitted */
} inflight;

typedef struct seq_list {
    seq *head, *tail;
    int n;
} seq_list;

struct st_batcher {
    st_model *m;
    st_backend *be;
    const st_tokenizer *tok;      /* m->tok, may be NULL */
    st_batcher_config cfg;
    int max_ctx, vocab;
    st_kv_cache kv;
    st_fwd_ctx fwd;
    st_kv_blocks *kb;
    int watermark;                /* blocks admission leaves free while others run (1%, >= 1) */
    st_batch_executor exec;       /* runs a batch (default: the local forward); NULL when async is set */
    st_batch_async_exec async;    /* submit/collect when set (async.submit != NULL) */
    uint32_t trace_pipe;          /* this batcher in step trace records */
    void *exec_ctx;

    /* submission side: guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;            /* wakes the loop: new work or stop */
    seq_list inbox;
    uint64_t *aborts;             /* (cap_aborts,) ids to abort */
    int n_aborts, cap_aborts;
    uint64_t next_id;
    int stop;
    uint64_t n_submitted;

    /* loop side: touched only by the stepping thread */
    seq_list waiting;             /* FCFS; preempted sequences go back to the front */
    seq **running;                /* (max_batch_size,) in admission order, oldest first */
    int n_running;
    inflight fl[ST_BATCHER_MAX_INFLIGHT]; /* a ring of batches: (cfg.max_inflight,) used */
    int fl_head, n_fl;            /* oldest outstanding slot, how many are out */
    uint64_t next_step;           /* step number of the next batch built */
    uint64_t *abort_work;         /* (cap_abort_work,) drained abort ids */
    int cap_abort_work;
    uint64_t *released;           /* (cap_released,) requests that released their blocks since the last
                                     batch was built; that batch carries them (st_sched_batch.released) */
    int n_released, cap_released;
    st_batcher_stats st;          /* counters, copied to `pub` after each step */

    pthread_mutex_t stats_mu;
    st_batcher_stats pub;

    pthread_t thread;
    int thread_running;
};

/* seq_output.c */
seq *seq_new(st_batcher *b, const st_request *r, uint64_t id);
void seq_delete(st_batcher *b, seq *s);
/* The sequence sampled `token` (logprob: chosen token's; top: n_top
 * alternatives). Appends it, decides whether the request is finished,
 * streams the now-final text; a traced request gets its detokenized span
 * (from t_sampled, ns) before the event leaves. Returns the finish reason
 * (NONE: continue).
 * Every final event (here or from seq_emit_final) is preceded by the
 * request's last trace record (sched_trace_end), so a client that has its
 * whole answer finds the whole trace. */
st_finish_reason seq_on_token(st_batcher *b, seq *s, int32_t token, float logprob, const st_token_logprob *top,
                              int n_top, uint64_t t_sampled);
/* Send the final event for a sequence ending without a token (abort/error). */
void seq_emit_final(st_batcher *b, seq *s, st_finish_reason why, const char *error);
/* Top n alternatives of a logits row (n_vocab,) as log-probabilities. */
int logits_top(const float *logits, int n_vocab, int n, st_token_logprob *out);

/* seq lists */
void seq_list_push_back(seq_list *l, seq *s);
void seq_list_push_front(seq_list *l, seq *s);
void seq_list_remove(seq_list *l, seq *s);

/* The request's last trace record: finished (with the reason) or aborted. */
static inline void sched_trace_end(const seq *s, st_finish_reason why)
{
    st_trace_instant(s->trace_id, why == ST_FINISH_ABORT ? ST_TK_ABORTED : ST_TK_FINISHED, st_now_ns(),
                     (uint32_t)why, 0);
}

/* sched_step.c */
/* The default executor (the old private name of st_batcher_exec_local,
 * kept for tests that include this header). */
static inline int exec_local(void *ctx, const st_sched_batch *sb, float *logits)
{
    return st_batcher_exec_local(ctx, sb, logits);
}
int sched_step(st_batcher *b);
/* Collect every outstanding batch and hand out its results (before a
 * stop, an abort of everything, or a change of executor). */
void sched_drain(st_batcher *b);
/* Copy the counters (with the block manager's occupancy) for readers. */
void sched_publish_stats(st_batcher *b);
/* Release a sequence's blocks, take it out of the running set or the
 * waiting queue, and free it (its final event must already be sent). */
void sched_retire(st_batcher *b, seq *s);

#endif
