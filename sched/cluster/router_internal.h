/* Private state of the router, shared by its files:
 *   router.c        requests, their events, failover
 *   router_thread.c the router thread, create/destroy, add/remove
 *   router_pick.c  the time-to-first-token estimate that picks a pipeline,
 *                  latency sampling, stats */
#ifndef ST_ROUTER_INTERNAL_H
#define ST_ROUTER_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "router.h"

#define ROUTER_SAMPLE_NS 50000000ull /* latency samples every 50 ms while requests run */

typedef struct rpipe {
    int id;
    st_batcher *b;
    int (*error_fn)(void *ctx);
    void *error_ctx;
    int down;                     /* error_fn reported it down (sticky) */
    int removing;                 /* st_router_remove under way: no new requests */
    int n_reqs;                   /* router requests submitted here whose final event has not come */
    int n_prefill;                /* of those, the ones without a first token yet */
    long pending_tokens;          /* their prompt tokens: prefill work queued here */
    uint64_t routed;              /* requests sent here, moves included */
    /* latency, from the batcher's counters between two samples while it was busy */
    int sampled, s_busy;
    uint64_t s_ns, s_steps, s_rows;
    double step_ms;               /* mean wall time per step (EMA; 0 until measured) */
    double row_ms;                /* mean wall time per batch row (EMA; 0 until measured) */
    struct rpipe *next;
} rpipe;

typedef struct rreq {
    uint64_t id;                  /* the router's id, what the client sees */
    struct st_router *rt;
    struct rreq *prev, *next;     /* live list, in submission order */
    struct rreq *dnext;           /* done list (ended by the router thread) */
    st_request q;                 /* the original request; stop/stop_ids point to the copies below */
    char **stop;                  /* (q.n_stop,) owned */
    int32_t *stop_ids;            /* (q.n_stop_ids,) owned */
    st_batcher_cb cb;             /* the client's callback */
    void *user;
    int32_t *tokens;              /* (cap_tokens,) original prompt, then every token sampled so far */
    int n_tokens, cap_tokens;
    int n_orig;                   /* original prompt length */
    int max_tokens;               /* original max_tokens (<= 0: up to the context) */
    int base_gen;                 /* tokens sampled on earlier pipelines */
    int n_cached, admitted;       /* prefix-cache tokens at the first admission */
    struct rpipe *p;              /* the pipeline it is on, or NULL */
    uint64_t bid;                 /* its id in p's batcher */
    int in_batcher;               /* submitted to p, final event not yet come */
    int prefill;                  /* counted in p->pending_tokens / n_prefill */
    int n_submitted;              /* prompt tokens sent to p */
    int moves;
    uint64_t trace_id;            /* the trace decision taken at submit (common/trace.h), kept across moves */
    int aborted;                  /* the client aborted it: never moved again */
    int moving;                   /* st_router_remove aborted it to move it */
    int waiting;                  /* no pipeline: waits until deadline_ns */
    uint64_t deadline_ns;
    st_finish_reason end_why;     /* on the done list: the final event to send */
    char end_msg[320];
} rreq;

struct st_router {
    st_router_config cfg;
    pthread_mutex_t mu;
    pthread_cond_t cv;            /* wakes the router thread (CLOCK_MONOTONIC) */
    pthread_cond_t gone;          /* a request left its pipeline (st_router_remove waits) */
    rpipe *pipes;
    int n_pipes, next_pipe_id;
    rreq *live, *live_tail;       /* every request not yet ended */
    int n_live, n_waiting;
    rreq *done;
    uint64_t next_id, moved;
    pthread_t thread;
    int stop;
};

/* router.c; with mu held */
/* Send r (on the live list, on no pipeline) to the best healthy pipeline, or
 * make it wait for one. ST_OK, or the batcher's refusal (r still has no pipeline). */
int router_dispatch(struct st_router *rt, rreq *r);
/* Take r (on no pipeline) off the live list for the router thread to end it. */
void router_end_later(struct st_router *rt, rreq *r, st_finish_reason why, const char *msg);
/* Without the lock: send the final event the router makes itself and free r. */
void router_end_now(rreq *r, st_finish_reason why, const char *msg);

/* router_pick.c; all with mu held */
int router_pipe_down(rpipe *p);
/* The healthy pipeline with the lowest estimated time to first token for a
 * prompt of n_prompt tokens, or NULL when none is up. */
rpipe *router_pick(struct st_router *rt, int n_prompt);
/* Update every pipeline's step and row latency from its counters. */
void router_sample(struct st_router *rt, uint64_t now_ns);

#endif
