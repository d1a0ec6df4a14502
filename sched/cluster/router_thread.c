/* The router's thread (requests waiting for a pipeline, their deadlines,
 * latency samples, final events the router sends itself) and the
 * lifecycle of the router and its pipelines (see router.h). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../../common/st_common.h"
#include "router_internal.h"

/* ---- the router thread: waiting requests, their deadlines, latency samples -------------- */
static void *router_main(void *arg)
{
    st_router *rt = arg;
    pthread_mutex_lock(&rt->mu);
    while (!rt->stop) {
        if (rt->done) {
            rreq *list = rt->done;
            rt->done = NULL;
            pthread_mutex_unlock(&rt->mu);
            while (list) {
                rreq *r = list;
                list = r->dnext;
                router_end_now(r, r->end_why, r->end_msg);
            }
            pthread_mutex_lock(&rt->mu);
            continue;
        }
        uint64_t now = st_now_ns(), next = UINT64_MAX;
        for (rreq *r = rt->live, *nx; r; r = nx) {
            nx = r->next;
            if (!r->waiting)
                continue;
            if (now >= r->deadline_ns) {
                char msg[96];
                snprintf(msg, sizeof msg, "no pipeline is available (waited %d ms)", rt->cfg.wait_ms);
                router_end_later(rt, r, ST_FINISH_ERROR, msg);
            } else if (r->deadline_ns < next) {
                next = r->deadline_ns;
            }
        }
        if (rt->done)
            continue;
        if (rt->n_live > rt->n_waiting) { /* requests on pipelines: keep measuring them */
            router_sample(rt, now);
            next = ST_MIN(next, now + ROUTER_SAMPLE_NS);
        }
        if (next == UINT64_MAX) {
            pthread_cond_wait(&rt->cv, &rt->mu);
        } else {
            struct timespec ts = {.tv_sec = (time_t)(next / 1000000000ull), .tv_nsec = (long)(next % 1000000000ull)};
            pthread_cond_timedwait(&rt->cv, &rt->mu, &ts);
        }
    }
    pthread_mutex_unlock(&rt->mu);
    return NULL;
}

/* ---- public ------------------------------------------------------------------------------ */
int st_router_create(const st_router_config *c, st_router **out)
{
    *out = NULL;
    st_router_config cfg = c ? *c : st_router_config_default();
    if (cfg.wait_ms < 0 || cfg.max_retries < 0)
        return st_err(ST_EINVAL, "router: wait_ms %d and max_retries %d must be >= 0", cfg.wait_ms, cfg.max_retries);
    st_router *rt = st_xcalloc(1, sizeof *rt);
    rt->cfg = cfg;
    rt->next_id = 1;
    rt->next_pipe_id = 1;
    pthread_mutex_init(&rt->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* deadlines are st_now_ns() */
    pthread_cond_init(&rt->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&rt->gone, NULL);
    int e = pthread_create(&rt->thread, NULL, router_main, rt);
    if (e) {
        pthread_mutex_destroy(&rt->mu);
        pthread_cond_destroy(&rt->cv);
        pthread_cond_destroy(&rt->gone);
        free(rt);
        return st_err(ST_ENOMEM, "router: cannot start thread (error %d)", e);
    }
    *out = rt;
    return ST_OK;
}

void st_router_destroy(st_router *rt)
{
    if (!rt)
        return;
    pthread_mutex_lock(&rt->mu);
    rt->stop = 1;
    pthread_cond_signal(&rt->cv);
    pthread_mutex_unlock(&rt->mu);
    pthread_join(rt->thread, NULL);
    /* requests still waiting end with ABORT; ones the thread had not ended yet end as decided */
    while (rt->live) {
        rreq *r = rt->live;
        if (r->p)
            ST_ERROR("router: destroyed while request %llu is on pipeline %d", (unsigned long long)r->id,
                     r->p->id);
        router_end_later(rt, r, ST_FINISH_ABORT, NULL);
    }
    while (rt->done) {
        rreq *r = rt->done;
        rt->done = r->dnext;
        router_end_now(r, r->end_why, r->end_msg);
    }
    while (rt->pipes) {
        rpipe *p = rt->pipes;
        ST_ERROR("router: destroyed with pipeline %d still added", p->id);
        rt->pipes = p->next;
        free(p);
    }
    pthread_mutex_destroy(&rt->mu);
    pthread_cond_destroy(&rt->cv);
    pthread_cond_destroy(&rt->gone);
    free(rt);
}

int st_router_add(st_router *rt, st_batcher *b, int (*error_fn)(void *ctx), void *error_ctx, int *id)
{
    if (id)
        *id = 0;
    if (!rt || !b)
        return st_err(ST_EINVAL, "router: add needs a router and a batcher");
    rpipe *p = st_xcalloc(1, sizeof *p);
    p->b = b;
    p->error_fn = error_fn;
    p->error_ctx = error_ctx;
    pthread_mutex_lock(&rt->mu);
    p->id = rt->next_pipe_id++;
    rpipe **tail = &rt->pipes;
    while (*tail)
        tail = &(*tail)->next;
    *tail = p;
    rt->n_pipes++;
    /* the requests that were waiting go now, oldest first */
    for (rreq *r = rt->live, *nx; r; r = nx) {
        nx = r->next;
        if (r->waiting && !r->aborted) {
            int rc = router_dispatch(rt, r);
            if (rc == ST_ERANGE && r->moves)
                router_end_later(rt, r, ST_FINISH_LENGTH, NULL);
            else if (rc)
                router_end_later(rt, r, ST_FINISH_ERROR, st_errmsg());
        }
    }
    pthread_mutex_unlock(&rt->mu);
    if (id)
        *id = p->id;
    ST_INFO("router: pipeline %d added (%d in all)", p->id, rt->n_pipes);
    return ST_OK;
}

void st_router_remove(st_router *rt, int id)
{
    pthread_mutex_lock(&rt->mu);
    rpipe **pp = &rt->pipes;
    while (*pp && (*pp)->id != id)
        pp = &(*pp)->next;
    rpipe *p = *pp;
    if (!p) {
        pthread_mutex_unlock(&rt->mu);
        ST_WARN("router: no pipeline %d to remove", id);
        return;
    }
    p->removing = 1; /* router_pick skips it from now on */
    int n = 0;
    for (rreq *r = rt->live; r; r = r->next)
        if (r->p == p && r->in_batcher && !r->moving) {
            r->moving = 1; /* its ABORT event moves it (on p's batcher thread) */
            st_batcher_abort(p->b, r->bid);
            n++;
        }
    while (p->n_reqs > 0)
        pthread_cond_wait(&rt->gone, &rt->mu);
    *pp = p->next;
    rt->n_pipes--;
    pthread_mutex_unlock(&rt->mu);
    ST_INFO("router: pipeline %d removed (%d requests moved off it)", id, n);
    free(p);
}

