/* Routing across pipelines and failover (see router.h): requests, their
 * events and moves. The router thread and the pipelines' lifecycle are in
 * router_thread.c, the cost model that picks a pipeline in router_pick.c.
 *
 * Locking: one mutex (rt->mu) guards the router's pipelines and requests.
 * It may be held while calling into a batcher (submit, abort, stats): a
 * batcher never holds its own locks while it runs a callback, so the order
 * router -> batcher is the only one. It is never held while a client
 * callback runs (the client may call st_router_abort from it). */
#include "router_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../common/st_common.h"
#include "../../common/trace.h"

st_router_config st_router_config_default(void) { return (st_router_config){.wait_ms = 30000, .max_retries = 3}; }

/* ---- requests ------------------------------------------------------------------------ */
static rreq *req_new(const st_request *q)
{
    rreq *r = st_xcalloc(1, sizeof *r);
    r->q = *q;
    r->cb = q->cb;
    r->user = q->user;
    r->n_orig = q->n_prompt;
    r->max_tokens = q->max_tokens;
    r->cap_tokens = q->n_prompt + 64;
    r->tokens = st_xmalloc((size_t)r->cap_tokens * sizeof(int32_t));
    memcpy(r->tokens, q->prompt, (size_t)q->n_prompt * sizeof(int32_t));
    r->n_tokens = q->n_prompt;
    if (q->n_stop) {
        r->stop = st_xcalloc((size_t)q->n_stop, sizeof(char *));
        for (int i = 0; i < q->n_stop; i++)
            r->stop[i] = st_xstrdup(q->stop[i]);
    }
    r->q.stop = (const char *const *)r->stop;
    if (q->n_stop_ids) {
        r->stop_ids = st_xmalloc((size_t)q->n_stop_ids * sizeof(int32_t));
        memcpy(r->stop_ids, q->stop_ids, (size_t)q->n_stop_ids * sizeof(int32_t));
    }
    r->q.stop_ids = r->stop_ids;
    return r;
}

static void req_free(rreq *r)
{
    for (int i = 0; i < r->q.n_stop; i++)
        free(r->stop[i]);
    free(r->stop);
    free(r->stop_ids);
    free(r->tokens);
    free(r);
}

static void live_push(st_router *rt, rreq *r)
{
    r->prev = rt->live_tail;
    r->next = NULL;
    if (rt->live_tail)
        rt->live_tail->next = r;
    else
        rt->live = r;
    rt->live_tail = r;
    rt->n_live++;
}

static void live_remove(st_router *rt, rreq *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        rt->live = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        rt->live_tail = r->prev;
    r->prev = r->next = NULL;
    rt->n_live--;
}

static rreq *live_find(st_router *rt, uint64_t id)
{
    for (rreq *r = rt->live; r; r = r->next)
        if (r->id == id)
            return r;
    return NULL;
}

/* The request no longer counts as queued work on its pipeline. */
static void prefill_done(rreq *r)
{
    if (r->prefill && r->p) {
        r->p->pending_tokens -= r->n_submitted;
        r->p->n_prefill--;
    }
    r->prefill = 0;
}

/* Take r off its pipeline (its final event has come); wakes st_router_remove. */
static void leave_pipe(st_router *rt, rreq *r)
{
    if (!r->p)
        return;
    prefill_done(r);
    r->p->n_reqs--;
    r->p = NULL;
    pthread_cond_broadcast(&rt->gone);
}

/* Hand r to the router thread, which sends its final event (caller holds mu;
 * r has no pipeline). */
void router_end_later(st_router *rt, rreq *r, st_finish_reason why, const char *msg)
{
    if (r->waiting) {
        r->waiting = 0;
        rt->n_waiting--;
    }
    live_remove(rt, r);
    r->end_why = why;
    snprintf(r->end_msg, sizeof r->end_msg, "%s", msg ? msg : "");
    r->dnext = rt->done;
    rt->done = r;
    pthread_cond_signal(&rt->cv);
}

/* Send a final event the router makes itself and free r (no lock held; r is
 * no longer on the live list). */
void router_end_now(rreq *r, st_finish_reason why, const char *msg)
{
    if (r->cb) {
        st_batcher_event ev = {.id = r->id,
                               .token = -1,
                               .text = "",
                               .finish = why,
                               .error = why == ST_FINISH_ERROR ? msg : NULL,
                               .n_prompt = r->n_orig,
                               .n_generated = r->n_tokens - r->n_orig,
                               .n_cached = r->n_cached};
        r->cb(&ev, r->user);
    }
    req_free(r);
}

static void on_batcher_event(const st_batcher_event *ev, void *user);

/* Send r to the best healthy pipeline, or make it wait for one (caller
 * holds mu; r is on the live list and on no pipeline). Returns ST_OK, or
 * the batcher's refusal (r then still has no pipeline). */
int router_dispatch(st_router *rt, rreq *r)
{
    rpipe *p = router_pick(rt, r->n_tokens);
    if (!p) {
        if (!r->waiting) {
            r->waiting = 1;
            rt->n_waiting++;
            r->deadline_ns = st_now_ns() + (uint64_t)rt->cfg.wait_ms * 1000000ull;
            pthread_cond_signal(&rt->cv);
        }
        return ST_OK;
    }
    st_request q = r->q;
    q.prompt = r->tokens;
    q.n_prompt = r->n_tokens;
    q.cb = on_batcher_event;
    q.user = r;
    uint64_t bid = 0;
    st_trace_set_current(r->trace_id); /* one trace across waits and moves: the batcher takes it */
    int rc = st_batcher_submit(p->b, &q, &bid);
    if (rc)
        return rc;
    if (r->waiting) {
        r->waiting = 0;
        rt->n_waiting--;
    }
    r->p = p;
    r->bid = bid;
    r->in_batcher = 1;
    r->prefill = 1;
    r->n_submitted = r->n_tokens;
    p->pending_tokens += r->n_tokens;
    p->n_prefill++;
    p->n_reqs++;
    p->routed++;
    return ST_OK;
}

static void push_token(rreq *r, int32_t t)
{
    if (r->n_tokens == r->cap_tokens) {
        r->cap_tokens *= 2;
        r->tokens = st_xrealloc(r->tokens, (size_t)r->cap_tokens * sizeof(int32_t));
    }
    r->tokens[r->n_tokens++] = t;
}

/* Whether a final ERROR / ABORT from r's pipeline means "continue elsewhere"
 * rather than "tell the client" (caller holds mu). */
static int wants_move(rreq *r, const st_batcher_event *ev)
{
    if (r->aborted || !r->p)
        return 0;
    if (ev->finish == ST_FINISH_ABORT)
        return r->moving;
    return ev->finish == ST_FINISH_ERROR && (r->p->removing || router_pipe_down(r->p));
}

/* Continue r, whose pipeline has ended it, on another one (caller holds mu;
 * r is on no pipeline). Returns ST_FINISH_NONE when r was sent on or now
 * waits, else the finish to report (with *msg). */
static st_finish_reason move(st_router *rt, rreq *r, char *msg, size_t cap)
{
    if (r->aborted)
        return ST_FINISH_ABORT; /* the client's abort wins over the move */
    int gen = r->n_tokens - r->n_orig;
    if (r->max_tokens > 0 && gen >= r->max_tokens)
        return ST_FINISH_LENGTH;
    /* The same sampling parameters: a greedy request continues exactly as it
     * would have. A seeded sampled request's RNG stream restarts from its
     * seed on the new pipeline, so its continuation is a valid sample but
     * not the one the first pipeline would have drawn. */
    r->q.max_tokens = r->max_tokens > 0 ? r->max_tokens - gen : 0;
    r->moves++;
    rt->moved++;
    r->base_gen = gen;
    int rc = router_dispatch(rt, r);
    if (rc == ST_ERANGE)
        return ST_FINISH_LENGTH; /* prompt + generated fills the new pipeline's context */
    if (rc) {
        snprintf(msg, cap, "moving the request to another pipeline failed: %s", st_errmsg());
        return ST_FINISH_ERROR;
    }
    return ST_FINISH_NONE;
}

/* Every event of every request, on a batcher thread. */
static void on_batcher_event(const st_batcher_event *ev, void *user)
{
    rreq *r = user;
    st_router *rt = r->rt;
    pthread_mutex_lock(&rt->mu);
    if (ev->token >= 0) {
        push_token(r, ev->token);
        if (!r->admitted) {
            r->admitted = 1;
            r->n_cached = ev->n_cached;
        }
        prefill_done(r);
    }
    /* usage is the original request's, whatever pipelines it went through */
    st_batcher_event out = *ev;
    out.id = r->id;
    out.n_prompt = r->n_orig;
    out.n_generated = r->base_gen + ev->n_generated;
    out.n_cached = r->n_cached;
    if (ev->finish == ST_FINISH_NONE) {
        pthread_mutex_unlock(&rt->mu);
        if (r->cb)
            r->cb(&out, r->user);
        return;
    }
    r->in_batcher = 0;
    char msg[320];
    st_finish_reason why = ev->finish;
    if (wants_move(r, ev)) {
        if (r->moves >= rt->cfg.max_retries) {
            if (why == ST_FINISH_ABORT) { /* removed, and out of moves */
                snprintf(msg, sizeof msg, "pipeline %d was removed and the request was already moved %d times",
                         r->p->id, r->moves);
                out.finish = ST_FINISH_ERROR;
                out.error = msg;
            }
        } else {
            ST_INFO("router: request %llu leaves pipeline %d after %d tokens (%s)", (unsigned long long)r->id,
                    r->p->id, r->n_tokens - r->n_orig, why == ST_FINISH_ERROR ? ev->error : "removed");
            if (ev->text_len) {
                /* the held-back text is final: it goes out before the stream continues elsewhere */
                st_batcher_event t = out;
                t.finish = ST_FINISH_NONE;
                t.error = NULL;
                pthread_mutex_unlock(&rt->mu);
                if (r->cb)
                    r->cb(&t, r->user);
                pthread_mutex_lock(&rt->mu);
            }
            leave_pipe(rt, r);
            r->moving = 0;
            msg[0] = 0;
            why = move(rt, r, msg, sizeof msg);
            if (why == ST_FINISH_NONE) {
                pthread_mutex_unlock(&rt->mu);
                return;
            }
            live_remove(rt, r);
            pthread_mutex_unlock(&rt->mu);
            router_end_now(r, why, msg);
            return;
        }
    }
    if (r->aborted && out.finish == ST_FINISH_ERROR) { /* the client's abort raced a failure: it wins */
        out.finish = ST_FINISH_ABORT;
        out.error = NULL;
    }
    leave_pipe(rt, r);
    live_remove(rt, r);
    pthread_mutex_unlock(&rt->mu);
    if (r->cb)
        r->cb(&out, r->user);
    req_free(r);
}

/* ---- requests from clients ------------------------------------------------------------ */
int st_router_submit(st_router *rt, const st_request *q, uint64_t *id)
{
    if (id)
        *id = 0;
    /* what a batcher would refuse whatever its model; the rest it checks at dispatch */
    if (!q || !q->prompt || q->n_prompt < 1)
        return st_err(ST_EINVAL, "request: empty prompt");
    if (q->n_stop < 0 || q->n_stop > ST_MAX_STOP_STRINGS || (q->n_stop && !q->stop))
        return st_err(ST_EINVAL, "request: %d stop strings (at most %d)", q->n_stop, ST_MAX_STOP_STRINGS);
    for (int i = 0; i < q->n_stop; i++)
        if (!q->stop[i])
            return st_err(ST_EINVAL, "request: stop string %d is missing", i);
    if (q->n_stop_ids < 0 || (q->n_stop_ids && !q->stop_ids) || q->n_stop_ids > 1024)
        return st_err(ST_EINVAL, "request: %d stop token ids", q->n_stop_ids);
    int rc = st_sampling_validate(&q->sampling);
    if (rc)
        return rc;
    rreq *r = req_new(q);
    r->rt = rt;
    if (!st_trace_take_current(&r->trace_id)) /* the HTTP handler's decision, or our own */
        st_trace_admit(&r->trace_id);
    pthread_mutex_lock(&rt->mu);
    r->id = rt->next_id++;
    live_push(rt, r);
    if ((rc = router_dispatch(rt, r))) {
        live_remove(rt, r);
        pthread_mutex_unlock(&rt->mu);
        req_free(r);
        return rc;
    }
    if (id)
        *id = r->id; /* before unlocking: its events may come at once */
    pthread_mutex_unlock(&rt->mu);
    return ST_OK;
}

void st_router_abort(st_router *rt, uint64_t id)
{
    pthread_mutex_lock(&rt->mu);
    rreq *r = live_find(rt, id);
    if (r && !r->aborted) {
        r->aborted = 1;
        if (r->in_batcher)
            st_batcher_abort(r->p->b, r->bid);
        else if (r->waiting)
            router_end_later(rt, r, ST_FINISH_ABORT, NULL);
        /* else it is between pipelines on a batcher thread, which sees the flag */
    }
    pthread_mutex_unlock(&rt->mu);
}

uint64_t st_router_moved(st_router *rt)
{
    pthread_mutex_lock(&rt->mu);
    uint64_t n = rt->moved;
    pthread_mutex_unlock(&rt->mu);
    return n;
}
