/* st_gen_backend over st_router: requests and events translated one to
 * one; token ids become token bytes for logprobs here, since the HTTP
 * layer never sees ids (see gen_batcher.h). */
#include "gen_batcher.h"

#include <stdlib.h>
#include <string.h>

#include "../common/st_common.h"

typedef struct {
    st_router *r;              /* NULL until attached; read atomically */
    const st_tokenizer *tok;
    int last_max_ctx;          /* the router's context while it last had pipelines (atomic) */
} adapter;

/* One in-flight request: the HTTP side's callback (freed on the final event). */
typedef struct {
    st_gen_cb cb;
    void *user;
    const st_tokenizer *tok;
    int logprobs;
} pending;

static st_gen_finish map_finish(st_finish_reason f)
{
    switch (f) {
    case ST_FINISH_STOP: return ST_GEN_STOP;
    case ST_FINISH_LENGTH: return ST_GEN_LENGTH;
    case ST_FINISH_ABORT: return ST_GEN_ABORT;
    case ST_FINISH_ERROR: return ST_GEN_ERROR;
    default: return ST_GEN_NONE;
    }
}

/* Token bytes into buf[cap] (empty when unknown). */
static size_t piece(const st_tokenizer *tok, int32_t id, char *buf, int cap)
{
    if (!tok || id < 0)
        return 0;
    int n = st_tok_piece(tok, id, buf, cap);
    return n < 0 ? 0 : (size_t)ST_MIN(n, cap);
}

/* A batcher's or the router's thread. */
static void on_event(const st_batcher_event *bev, void *user)
{
    pending *p = user;
    st_gen_event ev;
    memset(&ev, 0, sizeof ev);
    ev.text = bev->text;
    ev.text_len = bev->text_len;
    ev.has_token = bev->token >= 0;
    ev.finish = map_finish(bev->finish);
    ev.error = bev->error;
    ev.n_prompt = bev->n_prompt;
    ev.n_generated = bev->n_generated;
    ev.n_cached = bev->n_cached;
    char tokbuf[256], topbuf[ST_GEN_MAX_TOP_LOGPROBS][256];
    st_gen_top top[ST_GEN_MAX_TOP_LOGPROBS];
    if (p->logprobs && ev.has_token) {
        ev.has_logprob = 1;
        ev.token = tokbuf;
        ev.token_len = piece(p->tok, bev->token, tokbuf, (int)sizeof tokbuf);
        ev.logprob = bev->logprob;
        int n = ST_MIN(bev->n_top, ST_GEN_MAX_TOP_LOGPROBS);
        for (int k = 0; k < n; k++) {
            top[k].token = topbuf[k];
            top[k].token_len = piece(p->tok, bev->top[k].token, topbuf[k], (int)sizeof topbuf[k]);
            top[k].logprob = bev->top[k].logprob;
        }
        ev.top = top;
        ev.n_top = n;
    }
    p->cb(&ev, p->user);
    if (ev.finish != ST_GEN_NONE)
        free(p);
}

static int submit(st_gen_backend *be, const st_gen_request *r, uint64_t *id)
{
    adapter *a = be->impl;
    st_router *rt = __atomic_load_n(&a->r, __ATOMIC_ACQUIRE);
    if (!rt)
        return st_err(ST_EAGAIN, "the model is still loading");
    pending *p = st_xcalloc(1, sizeof *p);
    p->cb = r->cb;
    p->user = r->user;
    p->tok = a->tok;
    p->logprobs = r->logprobs;
    st_request q = st_request_default();
    q.prompt = r->prompt;
    q.n_prompt = r->n_prompt;
    q.sampling = r->sampling;
    q.max_tokens = r->max_tokens;
    q.stop = r->stop;
    q.n_stop = ST_MIN(r->n_stop, ST_MAX_STOP_STRINGS);
    q.ignore_eos = r->ignore_eos;
    q.logprobs = r->logprobs;
    q.top_logprobs = ST_MIN(r->top_logprobs, ST_MAX_TOP_LOGPROBS);
    q.cb = on_event;
    q.user = p;
    int rc = st_router_submit(rt, &q, id);
    if (rc != ST_OK) {
        free(p);
        return rc == ST_ERANGE ? ST_EINVAL : rc; /* a bad request either way */
    }
    return ST_OK;
}

static void abort_req(st_gen_backend *be, uint64_t id)
{
    adapter *a = be->impl;
    st_router *rt = __atomic_load_n(&a->r, __ATOMIC_ACQUIRE);
    if (rt)
        st_router_abort(rt, id);
}

static void stats(st_gen_backend *be, st_gen_stats *s)
{
    adapter *a = be->impl;
    memset(s, 0, sizeof *s);
    st_router *rt = __atomic_load_n(&a->r, __ATOMIC_ACQUIRE);
    if (!rt)
        return;
    st_batcher_stats bs;
    st_router_get_stats(rt, &bs);
    /* with no pipeline for a moment (a cluster re-planning) requests wait in
     * the router, so the back end stays ready with the last context known */
    int max_ctx = bs.max_ctx;
    if (max_ctx > 0)
        __atomic_store_n(&a->last_max_ctx, max_ctx, __ATOMIC_RELAXED);
    else
        max_ctx = __atomic_load_n(&a->last_max_ctx, __ATOMIC_RELAXED);
    s->ready = max_ctx > 0;
    s->max_ctx = max_ctx;
    s->n_running = bs.n_running;
    s->n_waiting = bs.n_waiting;
    s->kv_blocks_total = bs.kv_blocks_total;
    s->kv_blocks_used = bs.kv_blocks_used;
    s->kv_blocks_free = bs.kv_blocks_free;
    s->steps = bs.steps;
    s->batch_tokens = bs.batch_tokens;
    s->batch_seqs = bs.batch_seqs;
    s->last_batch_tokens = bs.last_batch_tokens;
    s->last_batch_seqs = bs.last_batch_seqs;
    s->preemptions = bs.preemptions;
    s->prefix_hit_tokens = bs.prefix_hit_tokens;
}

static void destroy(st_gen_backend *be)
{
    if (!be)
        return;
    free(be->impl);
    free(be);
}

int st_gen_batcher_create(st_router *r, const st_tokenizer *tok, st_gen_backend **out)
{
    st_gen_backend *be = st_xcalloc(1, sizeof *be);
    adapter *a = st_xcalloc(1, sizeof *a);
    a->tok = tok;
    be->submit = submit;
    be->abort = abort_req;
    be->stats = stats;
    be->destroy = destroy;
    be->impl = a;
    if (r)
        st_gen_batcher_attach(be, r, tok);
    *out = be;
    return ST_OK;
}

void st_gen_batcher_attach(st_gen_backend *be, st_router *r, const st_tokenizer *tok)
{
    adapter *a = be->impl;
    if (tok)
        a->tok = tok;
    __atomic_store_n(&a->r, r, __ATOMIC_RELEASE);
}
