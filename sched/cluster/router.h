/* Request routing across pipelines, and failover.
 *
 * The router stands where a single batcher used to: the API submits to it,
 * it picks a pipeline (a running st_batcher, whatever executes its steps:
 * the local forward or a remote pipeline) and forwards that batcher's
 * events to the request's callback.
 *
 * Routing: each new request goes to the pipeline with the lowest estimated
 * time to first token, from its queue (waiting prompt tokens), its free KV
 * and its measured step latency.
 *
 * Failover: the router keeps each request's prompt and the tokens sampled
 * so far. When a request ends with ST_FINISH_ERROR on a pipeline that is
 * down (its error_fn says so, or it was removed), or is moved off a
 * pipeline being removed, it is submitted again to a healthy pipeline with
 * prompt + generated tokens as its prompt and the remaining max_tokens; the
 * KV is rebuilt by prefill there. The client sees one uninterrupted stream:
 * no error, no repeated and no missing token; usage counts are the
 * original request's. When no pipeline is up, a request waits up to
 * wait_ms for one to be added, then ends with ST_FINISH_ERROR ("no
 * pipeline is available"). A request is moved at most max_retries times.
 * A request aborted by its client is never moved again: it ends with ABORT
 * even when the abort raced a failure.
 *
 * Text across a move: the batcher puts the text it was holding back (the
 * start of a possible stop string, an incomplete UTF-8 character) into its
 * final ERROR / ABORT event, and the router relays it as a plain event
 * before the stream continues, so no text is lost. What the new pipeline's
 * fresh detokenizer and stop matcher cannot know stays an edge: a stop
 * string straddling the move (begun before it, completed after) is not
 * matched; a UTF-8 character split across the move comes out as U+FFFD
 * bytes; with an SPM tokenizer the first word after the move loses its
 * leading space. A seeded sampled request's RNG restarts from its seed on
 * the new pipeline (a valid sample, not the one the first would have drawn);
 * greedy requests continue exactly.
 *
 * Threading: any thread may submit / abort / read stats; add and remove
 * are for the cluster's control thread (never a callback). Callbacks run on
 * batcher threads (or on the router's own thread for requests it ends
 * itself), never under the router's lock: a callback may call
 * st_router_submit / st_router_abort. Event ids are the router's ids. */
#ifndef ST_CLUSTER_ROUTER_H
#define ST_CLUSTER_ROUTER_H

#include <stdint.h>

#include "sched/batcher.h"

typedef struct st_router st_router;

typedef struct st_router_config {
    int wait_ms;      /* how long a request waits for a pipeline (default 30000) */
    int max_retries;  /* moves per request (default 3) */
} st_router_config;

st_router_config st_router_config_default(void);

int st_router_create(const st_router_config *c, st_router **out);
/* Every pipeline must have been removed; requests still waiting end with ABORT. */
void st_router_destroy(st_router *r);

/* Add a pipeline whose loop thread runs (st_batcher_start). error_fn (may be
 * NULL) returns nonzero once the pipeline is down (e.g. st_pipeline_error);
 * once it has, the router treats the pipeline as down for good. It is called
 * under the router's lock, so it must be quick and must not call the router;
 * it must report down no later than the failed step's ERROR events arrive.
 * Requests waiting for a pipeline are dispatched at once. *id: its handle. */
int st_router_add(st_router *r, st_batcher *b, int (*error_fn)(void *ctx), void *error_ctx, int *id);
/* Take pipeline id out: no new request goes there; each request on it is
 * moved to another pipeline (or waits for one). Returns once the batcher
 * holds none of the router's requests, so the caller may then stop and
 * destroy it. Its loop thread must still run (the moves happen on it). */
void st_router_remove(st_router *r, int id);

/* As st_batcher_submit / st_batcher_abort, over all pipelines. */
int st_router_submit(st_router *r, const st_request *q, uint64_t *id);
void st_router_abort(st_router *r, uint64_t id);

/* Sums over the pipelines (n_running, n_waiting include requests waiting
 * for a pipeline); max_ctx is the smallest of them (0 with none). */
void st_router_get_stats(st_router *r, st_batcher_stats *s);
int st_router_max_ctx(st_router *r);
int st_router_n_pipelines(st_router *r);

/* Per pipeline, for /cluster/status: fills up to max entries, returns how many. */
typedef struct st_router_pipe_info {
    int id;
    int healthy;              /* 0 once error_fn reported it down */
    int n_running, n_waiting; /* its batcher's sequences */
    int kv_blocks_free, kv_blocks_total;
    double step_ms;           /* recent mean step latency */
    uint64_t requests_routed; /* requests sent here (moves included) */
} st_router_pipe_info;
int st_router_pipes(st_router *r, st_router_pipe_info *out, int max);

/* Requests moved between pipelines so far (failovers). */
uint64_t st_router_moved(st_router *r);

#endif
