/* The batcher's lifecycle, loop thread, submission inbox, metrics and the
 * synchronous helper (see batcher.h; the step itself is in sched_step.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/st_common.h"
#include "batcher_internal.h"

st_batcher_config st_batcher_config_default(void)
{
    return (st_batcher_config){.max_num_tokens_per_batch = 512,
                               .max_batch_size = 16,
                               .block_size = ST_KV_BLOCK_SIZE_DEFAULT,
                               .kv_mem_fraction = 0.3,
                               .prefix_cache = 1};
}

st_request st_request_default(void)
{
    st_request r = {0};
    r.sampling = st_sampling_default();
    r.sampling.temperature = 0.0f;
    return r;
}

/* ---- lifecycle ---------------------------------------------------------------------- */
/* The executor of an external_exec batcher until one is set: fails the step
 * (there is no local KV or activations to run it on). */
static int exec_none(void *ctx, const st_sched_batch *sb, float *logits)
{
    (void)ctx, (void)logits;
    return st_err(ST_EINVAL, "batcher: external_exec is set but no executor was installed (step %llu)",
                  (unsigned long long)sb->step);
}

static int kv_capacity(const st_batcher_config *c, const st_model *m, st_backend *be, int max_ctx, int *n_blocks)
{
    const st_model_config *mc = &m->cfg;
    size_t bb = st_kv_block_bytes(mc->n_layers, mc->n_kv_heads, mc->head_dim, 2, c->block_size);
    if (!bb)
        return st_err(ST_EINVAL, "batcher: model geometry gives no KV block size");
    if (c->n_blocks > 0) {
        *n_blocks = c->n_blocks;
        return ST_OK;
    }
    if (c->kv_cache_bytes > 0) {
        *n_blocks = st_kv_blocks_for_bytes(c->kv_cache_bytes, bb);
    } else {
        /* a share of the memory the cache will live in: the device's under cuda */
        uint64_t avail = 0;
        int rc = be && be->ops->mem_available ? be->ops->mem_available(be, &avail) : st_mem_available(&avail);
        if (rc || (rc = st_kv_blocks_for_share(c->kv_mem_fraction, avail, bb, n_blocks)))
            return rc;
        /* more than this is never used at once, with as much again for the prefix cache */
        int64_t useful = 2LL * c->max_batch_size * ((max_ctx + c->block_size - 1) / c->block_size);
        if (!c->kv_mem_fraction_exact && *n_blocks > useful)
            *n_blocks = (int)ST_MIN(useful, (int64_t)INT32_MAX / 2);
    }
    if (*n_blocks < 1)
        return st_err(ST_EINVAL, "batcher: KV budget holds no block of %zu bytes", bb);
    return ST_OK;
}

int st_batcher_create(st_model *m, st_backend *be, const st_batcher_config *cfg, st_batcher **out)
{
    *out = NULL;
    st_batcher_config c = cfg ? *cfg : st_batcher_config_default();
    if (c.max_num_tokens_per_batch < 1)
        return st_err(ST_EINVAL, "batcher: max_num_tokens_per_batch %d < 1", c.max_num_tokens_per_batch);
    if (c.max_batch_size < 1 || c.max_batch_size > c.max_num_tokens_per_batch)
        return st_err(ST_EINVAL, "batcher: max_batch_size %d outside [1, max_num_tokens_per_batch %d]",
                      c.max_batch_size, c.max_num_tokens_per_batch);
    if (c.block_size < 1 || c.block_size > 1024)
        return st_err(ST_EINVAL, "batcher: block size %d outside [1, 1024]", c.block_size);
    if (c.max_inflight == 0)
        c.max_inflight = 1;
    if (c.max_inflight < 1 || c.max_inflight > ST_BATCHER_MAX_INFLIGHT)
        return st_err(ST_EINVAL, "batcher: max_inflight %d outside [1, %d]", c.max_inflight, ST_BATCHER_MAX_INFLIGHT);
    if (!m)
        return st_err(ST_EINVAL, "batcher: no model");
    if (!c.external_exec && !be)
        return st_err(ST_EINVAL, "batcher: no backend for the local forward");
    if (!c.external_exec && (!st_model_is_first(m) || !st_model_is_last(m)))
        return st_err(ST_ENOTSUP, "batcher: needs all layers of the model (loaded %d..%d of %d)", m->layer_start,
                      m->layer_end, m->cfg.n_layers);
    int max_ctx = m->cfg.ctx_len > 0 ? m->cfg.ctx_len : 4096;
    if (c.max_ctx > 0)
        max_ctx = ST_MIN(max_ctx, c.max_ctx);
    int n_blocks, rc = kv_capacity(&c, m, c.external_exec ? NULL : be, max_ctx, &n_blocks);
    if (rc)
        return rc;
    if ((int64_t)n_blocks * c.block_size < max_ctx)
        max_ctx = n_blocks * c.block_size; /* one sequence must always fit on its own */
    if (max_ctx < 2)
        return st_err(ST_EINVAL, "batcher: context of %d tokens is too small", max_ctx);

    st_batcher *b = st_xcalloc(1, sizeof *b);
    b->m = m;
    b->be = be;
    b->tok = m->tok;
    b->cfg = c;
    b->cfg.n_blocks = n_blocks;
    b->max_ctx = max_ctx;
    b->vocab = m->cfg.vocab_size;
    /* with an external executor the KV and activations live where it runs */
    if (!c.external_exec && (rc = st_kv_init(&b->kv, m, be, n_blocks, c.block_size)))
        goto fail;
    if (!c.external_exec && (rc = st_fwd_init(&b->fwd, m, be, c.max_num_tokens_per_batch, c.max_batch_size)))
        goto fail;
    if ((rc = st_kv_blocks_create(n_blocks, c.block_size, c.prefix_cache, &b->kb)))
        goto fail;
    b->running = st_xcalloc((size_t)c.max_batch_size, sizeof(seq *));
    for (int i = 0; i < c.max_inflight; i++) {
        inflight *f = &b->fl[i];
        f->seqs = st_xcalloc((size_t)c.max_batch_size, sizeof(seq *));
        f->logits = st_xmalloc((size_t)c.max_batch_size * b->vocab * sizeof(float));
        st_sched_batch_init(&f->batch);
    }
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    pthread_mutex_init(&b->stats_mu, NULL);
    b->next_id = 1;
    b->trace_pipe = st_trace_new_pipe();
    b->watermark = ST_MAX(1, n_blocks / 100);
    st_batcher_set_executor(b, NULL, NULL);
    ST_INFO("batcher: %d KV blocks of %d tokens (%.1f MiB%s), context %d, batch %d seqs / %d tokens, prefix cache %s",
            n_blocks, c.block_size,
            (double)n_blocks * st_kv_block_bytes(m->cfg.n_layers, m->cfg.n_kv_heads, m->cfg.head_dim, 2, c.block_size) /
                (1 << 20),
            c.external_exec ? ", held by the external executor" : "", max_ctx, c.max_batch_size,
            c.max_num_tokens_per_batch, c.prefix_cache ? "on" : "off");
    sched_publish_stats(b);
    *out = b;
    return ST_OK;
fail:
    st_fwd_free(&b->fwd);
    st_kv_free(&b->kv, be);
    st_kv_blocks_destroy(b->kb);
    free(b);
    return rc;
}

/* Send ABORT to everything not finished (no loop thread may run). The
 * batches still out come back first: the executor may be using them. */
static void abort_all(st_batcher *b)
{
    sched_drain(b);
    pthread_mutex_lock(&b->mu);
    while (b->inbox.head) {
        seq *s = b->inbox.head;
        seq_list_remove(&b->inbox, s);
        seq_list_push_back(&b->waiting, s);
    }
    b->n_aborts = 0;
    pthread_mutex_unlock(&b->mu);
    while (b->n_running) {
        seq *s = b->running[b->n_running - 1];
        seq_emit_final(b, s, ST_FINISH_ABORT, NULL);
        sched_retire(b, s);
        b->st.requests_aborted++;
    }
    while (b->waiting.head) {
        seq *s = b->waiting.head;
        seq_emit_final(b, s, ST_FINISH_ABORT, NULL);
        sched_retire(b, s);
        b->st.requests_aborted++;
    }
    sched_publish_stats(b);
}

void st_batcher_destroy(st_batcher *b)
{
    if (!b)
        return;
    st_batcher_stop(b);
    abort_all(b);
    st_fwd_free(&b->fwd);
    st_kv_free(&b->kv, b->be);
    st_kv_blocks_destroy(b->kb);
    for (int i = 0; i < b->cfg.max_inflight; i++) {
        st_sched_batch_free(&b->fl[i].batch);
        free(b->fl[i].seqs);
        free(b->fl[i].logits);
    }
    free(b->running);
    free(b->aborts);
    free(b->abort_work);
    free(b->released);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->stats_mu);
    free(b);
}

/* ---- the loop thread ------------------------------------------------------------------ */
static void *loop_main(void *arg)
{
    st_batcher *b = arg;
    char name[32];
    snprintf(name, sizeof name, "batcher %u", b->trace_pipe);
    st_trace_thread_name(name);
    for (;;) {
        pthread_mutex_lock(&b->mu);
        /* n_running / waiting are this thread's own state */
        while (!b->stop && !b->inbox.head && !b->n_aborts && !b->n_running && !b->waiting.head)
            pthread_cond_wait(&b->cv, &b->mu);
        int stop = b->stop;
        pthread_mutex_unlock(&b->mu);
        if (stop)
            break;
        sched_step(b); /* errors were reported to the requests concerned */
    }
    return NULL;
}

int st_batcher_start(st_batcher *b)
{
    pthread_mutex_lock(&b->mu);
    if (b->thread_running) {
        pthread_mutex_unlock(&b->mu);
        return st_err(ST_EINVAL, "batcher: already started");
    }
    b->stop = 0;
    int e = pthread_create(&b->thread, NULL, loop_main, b);
    if (!e)
        b->thread_running = 1;
    pthread_mutex_unlock(&b->mu);
    return e ? st_err(ST_ENOMEM, "batcher: cannot start thread (error %d)", e) : ST_OK;
}

void st_batcher_stop(st_batcher *b)
{
    pthread_mutex_lock(&b->mu);
    if (!b->thread_running) {
        pthread_mutex_unlock(&b->mu);
        return;
    }
    b->stop = 1;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    pthread_mutex_lock(&b->mu);
    b->thread_running = 0;
    b->stop = 0;
    pthread_mutex_unlock(&b->mu);
    abort_all(b);
}

/* ---- submission ----------------------------------------------------------------------- */
static int validate(const st_batcher *b, const st_request *r)
{
    if (!r->prompt || r->n_prompt < 1)
        return st_err(ST_EINVAL, "request: empty prompt");
    if (r->n_prompt >= b->max_ctx)
        return st_err(ST_ERANGE, "request: prompt of %d tokens does not fit the context of %d", r->n_prompt,
                      b->max_ctx);
    for (int i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= b->vocab)
            return st_err(ST_EINVAL, "request: prompt token %d (id %d) outside the vocabulary of %d", i,
                          r->prompt[i], b->vocab);
    int rc = st_sampling_validate(&r->sampling);
    if (rc)
        return rc;
    if (r->n_stop < 0 || r->n_stop > ST_MAX_STOP_STRINGS || (r->n_stop && !r->stop))
        return st_err(ST_EINVAL, "request: %d stop strings (at most %d)", r->n_stop, ST_MAX_STOP_STRINGS);
    if (r->n_stop && !b->tok)
        return st_err(ST_EINVAL, "request: stop strings need a model with a tokenizer");
    for (int i = 0; i < r->n_stop; i++) {
        size_t L = r->stop[i] ? strlen(r->stop[i]) : 0;
        if (L < 1 || L > ST_MAX_STOP_LEN)
            return st_err(ST_EINVAL, "request: stop string %d has %zu bytes (1..%d)", i, L, ST_MAX_STOP_LEN);
    }
    if (r->n_stop_ids < 0 || (r->n_stop_ids && !r->stop_ids) || r->n_stop_ids > 1024)
        return st_err(ST_EINVAL, "request: %d stop token ids", r->n_stop_ids);
    if (r->top_logprobs < 0 || r->top_logprobs > ST_MAX_TOP_LOGPROBS)
        return st_err(ST_EINVAL, "request: top_logprobs %d outside [0, %d]", r->top_logprobs,
                      ST_MAX_TOP_LOGPROBS);
    return ST_OK;
}

int st_batcher_submit(st_batcher *b, const st_request *r, uint64_t *id)
{
    if (id)
        *id = 0;
    /* the caller's trace decision (the HTTP handler's), or one made here */
    uint64_t trace_id;
    if (!st_trace_take_current(&trace_id))
        st_trace_admit(&trace_id);
    int rc = validate(b, r);
    if (rc)
        return rc;
    seq *s = seq_new(b, r, 0);
    s->trace_id = trace_id;
    s->t_queued = st_now_ns();
    pthread_mutex_lock(&b->mu);
    s->id = b->next_id++;
    seq_list_push_back(&b->inbox, s);
    b->n_submitted++;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    if (id)
        *id = s->id; /* s is the loop's now; its id never changes */
    return ST_OK;
}

void st_batcher_abort(st_batcher *b, uint64_t id)
{
    pthread_mutex_lock(&b->mu);
    if (b->n_aborts == b->cap_aborts) {
        b->cap_aborts = b->cap_aborts ? b->cap_aborts * 2 : 16;
        b->aborts = st_xrealloc(b->aborts, (size_t)b->cap_aborts * sizeof(uint64_t));
    }
    b->aborts[b->n_aborts++] = id;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static int thread_running(st_batcher *b)
{
    pthread_mutex_lock(&b->mu);
    int r = b->thread_running;
    pthread_mutex_unlock(&b->mu);
    return r;
}

int st_batcher_step(st_batcher *b)
{
    if (thread_running(b))
        return st_err(ST_EINVAL, "batcher: st_batcher_step while the loop thread runs");
    return sched_step(b);
}

int st_batcher_run_until_idle(st_batcher *b)
{
    if (thread_running(b))
        return st_err(ST_EINVAL, "batcher: st_batcher_run_until_idle while the loop thread runs");
    /* a failed step retired the requests it held, so this always ends */
    while (sched_step(b) != 0)
        ;
    return ST_OK;
}

void st_batcher_get_stats(st_batcher *b, st_batcher_stats *s)
{
    pthread_mutex_lock(&b->stats_mu);
    *s = b->pub;
    pthread_mutex_unlock(&b->stats_mu);
    pthread_mutex_lock(&b->mu);
    s->n_waiting += b->inbox.n;
    s->requests_submitted = b->n_submitted;
    pthread_mutex_unlock(&b->mu);
}

void st_batcher_set_executor(st_batcher *b, st_batch_executor fn, void *ctx)
{
    sched_drain(b); /* what is out belongs to the previous executor */
    b->exec = fn ? fn : b->cfg.external_exec ? exec_none : st_batcher_exec_local;
    b->exec_ctx = fn ? ctx : b;
    memset(&b->async, 0, sizeof b->async);
}

void st_batcher_set_async_executor(st_batcher *b, const st_batch_async_exec *x)
{
    st_batcher_set_executor(b, NULL, NULL);
    if (x && x->submit && x->collect) {
        b->async = *x;
        b->exec = NULL;
        b->exec_ctx = NULL;
    }
}

int st_batcher_inflight(const st_batcher *b) { return b->n_fl; }

struct st_kv_blocks *st_batcher_kv(st_batcher *b) { return b->kb; }
int st_batcher_max_ctx(const st_batcher *b) { return b->max_ctx; }

size_t st_batcher_local_kv_bytes(const st_batcher *b)
{
    return b->kv.k ? 2 * (size_t)b->kv.n_layers * (size_t)b->kv.n_blocks * b->kv.block_bytes : 0;
}

/* ---- synchronous helper ------------------------------------------------------------------ */
typedef struct gen_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int cap_tokens;
    size_t cap_text;
    st_batcher_result *res;
} gen_wait;

static void gen_cb(const st_batcher_event *ev, void *user)
{
    gen_wait *w = user;
    st_batcher_result *r = w->res;
    if (ev->token >= 0) {
        if (r->n_tokens == w->cap_tokens) {
            w->cap_tokens = w->cap_tokens ? w->cap_tokens * 2 : 64;
            r->tokens = st_xrealloc(r->tokens, (size_t)w->cap_tokens * sizeof(int32_t));
            r->logprobs = st_xrealloc(r->logprobs, (size_t)w->cap_tokens * sizeof(float));
        }
        r->logprobs[r->n_tokens] = ev->logprob;
        r->tokens[r->n_tokens++] = ev->token;
    }
    if (r->text_len + ev->text_len + 1 > w->cap_text) {
        w->cap_text = ST_MAX(r->text_len + ev->text_len + 1, w->cap_text * 2);
        r->text = st_xrealloc(r->text, w->cap_text);
    }
    memcpy(r->text + r->text_len, ev->text, ev->text_len);
    r->text_len += ev->text_len;
    r->text[r->text_len] = 0;
    r->n_prompt = ev->n_prompt;
    r->n_cached = ev->n_cached;
    if (ev->finish != ST_FINISH_NONE) {
        pthread_mutex_lock(&w->mu);
        r->finish = ev->finish;
        w->done = 1;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
}

int st_batcher_generate(st_batcher *b, const st_request *r, st_batcher_result *res)
{
    memset(res, 0, sizeof *res);
    gen_wait w = {.res = res};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    st_request q = *r;
    q.cb = gen_cb;
    q.user = &w;
    int rc = st_batcher_submit(b, &q, NULL);
    if (rc == ST_OK) {
        if (thread_running(b)) {
            pthread_mutex_lock(&w.mu);
            while (!w.done)
                pthread_cond_wait(&w.cv, &w.mu);
            pthread_mutex_unlock(&w.mu);
        } else {
            while (!w.done && (rc = st_batcher_step(b)) >= 0 && rc != 0)
                ;
            rc = w.done ? ST_OK : (rc < 0 ? rc : st_err(ST_EINVAL, "batcher: request vanished"));
        }
    }
    if (!r->logprobs && !r->top_logprobs) {
        free(res->logprobs);
        res->logprobs = NULL;
    }
    if (!res->text)
        res->text = st_xstrdup("");
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return rc;
}

void st_batcher_result_free(st_batcher_result *res)
{
    free(res->tokens);
    free(res->logprobs);
    free(res->text);
    memset(res, 0, sizeof *res);
}
