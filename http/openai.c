/* Routes of the OpenAI-compatible API and the generation stream: the
 * object that carries a request's pieces from the back-end thread to the
 * event loop and out as one JSON body or as SSE chunks.
 *
 * Lifetime of a generation (struct gen):
 *   - created by the handler, owned jointly by the h2o request (through
 *     struct req_ctx, freed with the request's pool) and the back end (until
 *     its final event);
 *   - the back-end callback appends to `pending` under `mu` and, if no
 *     message is queued yet, queues one to the loop (so at most one message
 *     per generation is ever in the queue, and pieces that arrive while a
 *     send is in flight coalesce in `pending`);
 *   - the loop takes `pending` whole and sends it when no send is in flight
 *     (h2o's proceed callback says the last one finished): a slow client
 *     costs one buffer of not-yet-sent text, never a queue of sends;
 *   - the request going away (client disconnect, RST_STREAM) aborts the
 *     generation; the struct is freed on the loop thread once the request
 *     is gone AND the final event has been seen, which implies no message
 *     for it is left in the queue. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../common/st_common.h"
#include "../common/trace.h"
#include "http_internal.h"
#include "web_assets.h"

struct gen;

/* Per-request state in the request's pool: its dispose callback is the one
 * place a request ends (success, error, disconnect). */
struct req_ctx {
    h2o_generator_t gen;       /* for streamed/async responses */
    struct st_http_server *srv;
    h2o_req_t *req;
    struct gen *g;             /* NULL unless this request generates */
    uint64_t t0;
    int prompt_tokens, completion_tokens;
    char method[8];
    char path[96];
};

struct gen {
    h2o_multithread_message_t msg;
    struct st_http_server *srv;
    h2o_linklist_t link;       /* in srv->streams while unfinished */
    /* shared with the back-end thread, under mu */
    pthread_mutex_t mu;
    st_piece_buf pending;
    int queued;                /* msg is in the queue */
    int finished;
    st_gen_finish finish;
    char error[256];
    int n_prompt, n_generated, n_cached;
    int n_tokens_seen;
    uint64_t t_arrival, t_last;
    /* loop thread only */
    struct req_ctx *rc;        /* NULL once the request is gone */
    uint64_t id;
    uint64_t trace_id;         /* the request id if traced, else 0 (common/trace.h) */
    int finish_seen;           /* the final event reached the loop */
    int abort_sent;
    int stream;
    st_api_resp_meta meta;
    st_piece_buf work;         /* pieces being formatted */
    st_strbuf out;             /* bytes handed to h2o_send, kept until proceed/dispose */
    int sending, final_sent;
};

/* ---- responses ------------------------------------------------------------ */

static void start(h2o_req_t *req, int status, const char *ctype, h2o_generator_t *gen)
{
    req->res.status = status;
    req->res.reason = status == 200 ? "OK" : "Error";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    h2o_start_response(req, gen);
}

static void send_body(h2o_req_t *req, int status, const char *ctype, const char *body, size_t len)
{
    static h2o_generator_t none = {NULL, NULL};
    h2o_iovec_t buf = h2o_iovec_init(h2o_mem_alloc_pool(&req->pool, len + 1), len);
    memcpy(buf.base, body, len);
    req->res.content_length = len;
    start(req, status, ctype, &none);
    h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
}

static void send_error(h2o_req_t *req, const st_api_error *e)
{
    st_strbuf sb;
    st_sb_init(&sb);
    st_api_error_json(e, &sb);
    if (e->status == 401)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
    send_body(req, e->status, "application/json", sb.buf, sb.len);
    st_sb_free(&sb);
}

static void fail(h2o_req_t *req, int status, const char *type, const char *param, const char *msg)
{
    st_api_error e;
    st_api_set_error(&e, status, type, param, "%s", msg);
    send_error(req, &e);
}

/* ---- generation stream ----------------------------------------------------- */

/* Back-end thread. */
static void on_gen_event(const st_gen_event *ev, void *user)
{
    struct gen *g = user;
    st_http_metrics *m = &g->srv->metrics;
    uint64_t now = st_now_ns();
    pthread_mutex_lock(&g->mu);
    st_piece_buf_add(&g->pending, ev);
    if (ev->has_token) {
        if (g->n_tokens_seen++ == 0)
            st_histogram_observe(&m->ttft, now - g->t_arrival);
        else
            st_histogram_observe(&m->itl, now - g->t_last);
        g->t_last = now;
    }
    g->n_prompt = ev->n_prompt;
    g->n_generated = ev->n_generated;
    g->n_cached = ev->n_cached;
    if (ev->finish != ST_GEN_NONE) {
        g->finished = 1;
        g->finish = ev->finish;
        snprintf(g->error, sizeof g->error, "%s", ev->error ? ev->error : "generation failed");
        st_histogram_observe(&m->e2e, now - g->t_arrival);
    }
    int notify = !g->queued && (g->stream || g->finished);
    if (notify)
        g->queued = 1;
    pthread_mutex_unlock(&g->mu);
    /* the loop frees g only once it has seen the final event through a
     * message, so g stays valid here while queued is set */
    if (notify)
        h2o_multithread_send_message(&g->srv->receiver, &g->msg);
}

static void gen_free(struct gen *g)
{
    pthread_mutex_destroy(&g->mu);
    st_piece_buf_free(&g->pending);
    st_piece_buf_free(&g->work);
    st_sb_free(&g->out);
    free(g);
}

static void gen_maybe_free(struct gen *g)
{
    if (!g->rc && g->finish_seen)
        gen_free(g);
}

static void usage_of(const struct gen *g, st_api_usage *u)
{
    u->prompt_tokens = g->n_prompt;
    u->completion_tokens = g->n_generated;
    u->cached_tokens = g->n_cached;
}

/* Loop thread: send what is pending if no send is in flight. */
static void gen_flush(struct gen *g)
{
    if (!g->rc || g->sending || g->final_sent)
        return;
    h2o_req_t *req = g->rc->req;
    pthread_mutex_lock(&g->mu);
    int fin = g->finished;
    if (g->stream)
        st_piece_buf_swap(&g->pending, &g->work);
    st_api_usage u;
    usage_of(g, &u);
    pthread_mutex_unlock(&g->mu);
    g->rc->prompt_tokens = u.prompt_tokens;
    g->rc->completion_tokens = u.completion_tokens;
    g->out.len = 0;
    if (!g->stream) {
        if (!fin)
            return;
        /* the back end is done: pending is no longer written */
        g->final_sent = 1;
        if (g->finish == ST_GEN_ERROR && g->pending.n == 0) {
            fail(req, 500, "server_error", NULL, g->error);
            return;
        }
        st_api_full_response(&g->out, &g->meta, &g->pending, st_gen_finish_name(g->finish), &u);
        st_trace_instant(g->trace_id, ST_TK_WRITTEN, st_now_ns(), 0, g->out.len);
        h2o_iovec_t buf = h2o_iovec_init(g->out.buf, g->out.len);
        req->res.content_length = buf.len;
        start(req, 200, "application/json", &g->rc->gen);
        h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
        return;
    }
    st_api_sse_pieces(&g->out, &g->meta, &g->work);
    st_piece_buf_clear(&g->work);
    if (fin) {
        if (g->finish == ST_GEN_ERROR) {
            st_api_error e;
            st_api_set_error(&e, 500, "server_error", NULL, "%s", g->error);
            st_api_sse_error(&g->out, &e);
        } else {
            st_api_sse_finish(&g->out, &g->meta, st_gen_finish_name(g->finish));
        }
        if (g->meta.include_usage)
            st_api_sse_usage(&g->out, &g->meta, &u);
        st_api_sse_done(&g->out);
    }
    if (g->out.len == 0)
        return;
    g->sending = 1;
    g->final_sent = fin;
    st_trace_instant(g->trace_id, ST_TK_WRITTEN, st_now_ns(), 0, g->out.len);
    h2o_iovec_t buf = h2o_iovec_init(g->out.buf, g->out.len);
    h2o_send(req, &buf, 1, fin ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static void on_proceed(h2o_generator_t *self, h2o_req_t *req)
{
    struct req_ctx *rc = (struct req_ctx *)self;
    if (!rc->g)
        return;
    rc->g->sending = 0;
    gen_flush(rc->g);
}

/* The request is gone (finished, or the client left): abort what runs. */
static void gen_detach(struct gen *g)
{
    struct st_http_server *srv = g->srv;
    g->rc = NULL;
    if (!g->finish_seen && !g->abort_sent) {
        g->abort_sent = 1;
        srv->cfg.backend->abort(srv->cfg.backend, g->id);
    }
    gen_maybe_free(g);
}

void st_http_on_messages(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    struct st_http_server *srv = H2O_STRUCT_FROM_MEMBER(struct st_http_server, receiver, receiver);
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *msg = H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        h2o_linklist_unlink(&msg->link);
        struct gen *g = (struct gen *)msg;
        pthread_mutex_lock(&g->mu);
        g->queued = 0;
        int fin = g->finished;
        pthread_mutex_unlock(&g->mu);
        if (fin && !g->finish_seen) {
            g->finish_seen = 1;
            srv->n_inflight--;
            h2o_linklist_unlink(&g->link);
            st_metrics_count_finish(&srv->metrics, g->finish, g->n_prompt, g->n_generated);
        }
        gen_flush(g);
        gen_maybe_free(g);
    }
}

void st_http_abort_all(struct st_http_server *srv)
{
    for (h2o_linklist_t *l = srv->streams.next; l != &srv->streams; l = l->next) {
        struct gen *g = H2O_STRUCT_FROM_MEMBER(struct gen, link, l);
        if (!g->abort_sent) {
            g->abort_sent = 1;
            srv->cfg.backend->abort(srv->cfg.backend, g->id);
        }
    }
}

/* ---- request bookkeeping ------------------------------------------------------- */

static void on_req_dispose(void *p)
{
    struct req_ctx *rc = p;
    struct st_http_server *srv = rc->srv;
    int status = rc->req->res.status;
    st_metrics_count_status(&srv->metrics, status);
    if (srv->cfg.log_requests)
        ST_INFO("http: %s %s %d prompt=%d completion=%d %.1f ms", rc->method, rc->path, status, rc->prompt_tokens,
                rc->completion_tokens, (double)(st_now_ns() - rc->t0) * 1e-6);
    if (rc->g)
        gen_detach(rc->g);
    srv->n_live_reqs--;
}

static void copy_iov(char *dst, size_t cap, h2o_iovec_t v)
{
    size_t n = v.len < cap - 1 ? v.len : cap - 1;
    for (size_t i = 0; i < n; i++)
        dst[i] = isprint((unsigned char)v.base[i]) ? v.base[i] : '?';
    dst[n] = 0;
}

/* ---- endpoints --------------------------------------------------------------------- */

static void handle_generate(struct st_http_server *srv, h2o_req_t *req, struct req_ctx *rc, st_api_kind kind)
{
    st_gen_backend *be = srv->cfg.backend;
    st_api_error e;
    if (srv->stopping) {
        fail(req, 503, "server_error", NULL, "the server is shutting down");
        return;
    }
    st_gen_stats stats;
    memset(&stats, 0, sizeof stats);
    be->stats(be, &stats);
    if (!stats.ready) {
        fail(req, 503, "server_error", NULL, "the model is not loaded yet");
        return;
    }
    /* the request id the client sees (X-Request-Id) and GET /debug/trace takes */
    uint64_t trace_id, rid = st_trace_admit(&trace_id);
    char rid_s[24];
    int rid_n = snprintf(rid_s, sizeof rid_s, "%llu", (unsigned long long)rid);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL,
                          h2o_strdup(&req->pool, rid_s, (size_t)rid_n).base, (size_t)rid_n);
    st_trace_instant(trace_id, ST_TK_RECEIVED, rc->t0, 0, req->entity.len);
    uint64_t tp = trace_id ? st_now_ns() : 0;
    st_api_limits lim = {srv->cfg.max_body_bytes, stats.max_ctx, st_tok_vocab_size(srv->cfg.tok)};
    st_api_request ar;
    int prc = st_api_parse(kind, req->entity.base, req->entity.len, &lim, &ar, &e);
    if (trace_id) {
        uint64_t now = st_now_ns();
        st_trace_span(trace_id, ST_TK_PARSED, tp, now, 0, req->entity.len);
        tp = now;
    }
    if (prc) {
        send_error(req, &e);
        st_api_request_free(&ar);
        return;
    }
    int32_t *ids = NULL;
    int n_ids = 0, rcode;
    const char *pparam = kind == ST_API_CHAT ? "messages" : "prompt";
    if (kind == ST_API_CHAT) {
        rcode = st_prompt_chat(&srv->prompt, ar.msgs, ar.n_msgs, ar.enable_thinking, &ids, &n_ids);
    } else if (ar.prompt_ids) {
        ids = ar.prompt_ids;
        n_ids = ar.n_prompt_ids;
        ar.prompt_ids = NULL;
        rcode = ST_OK;
    } else {
        rcode = st_prompt_text(&srv->prompt, ar.prompt, ar.prompt_len, &ids, &n_ids);
    }
    if (trace_id) { /* st_prompt_* render and tokenize in one call: one span for both */
        uint64_t now = st_now_ns();
        st_trace_span(trace_id, ST_TK_TEMPLATED, tp, now, (uint32_t)(n_ids > 0 ? n_ids : 0), 0);
        st_trace_instant(trace_id, ST_TK_TOKENIZED, now, 0, 0);
    }
    if (rcode) {
        st_api_set_error(&e, 400, "invalid_request_error", pparam, "%s", st_errmsg());
        goto error;
    }
    if (n_ids == 0) {
        st_api_set_error(&e, 400, "invalid_request_error", pparam, "the prompt is empty");
        goto error;
    }
    if (stats.max_ctx > 0 && n_ids >= stats.max_ctx) {
        st_api_set_error(&e, 400, "invalid_request_error", pparam,
                         "the prompt has %d tokens; the context length is %d, which must also leave room for "
                         "at least one generated token",
                         n_ids, stats.max_ctx);
        e.code = "context_length_exceeded";
        goto error;
    }
    if (srv->n_inflight >= srv->cfg.max_queued_requests) {
        st_api_set_error(&e, 503, "server_error", NULL, "the server is busy (%d requests in flight); retry later",
                         srv->n_inflight);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
        goto error;
    }

    struct gen *g = st_xcalloc(1, sizeof *g);
    g->srv = srv;
    pthread_mutex_init(&g->mu, NULL);
    st_piece_buf_init(&g->pending);
    st_piece_buf_init(&g->work);
    st_sb_init(&g->out);
    g->t_arrival = rc->t0;
    g->stream = ar.stream;
    g->n_prompt = n_ids;
    g->meta.kind = kind;
    g->meta.created = (int64_t)time(NULL);
    g->meta.model = srv->model_name;
    g->meta.logprobs = ar.logprobs;
    g->meta.include_usage = ar.stream && ar.include_usage;
    snprintf(g->meta.id, sizeof g->meta.id, "%s-%016llx%08x", kind == ST_API_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)(st_now_ns() ^ ((uint64_t)srv->port << 48)), (unsigned)++srv->seq);

    st_gen_request gr;
    memset(&gr, 0, sizeof gr);
    gr.prompt = ids;
    gr.n_prompt = n_ids;
    gr.sampling = ar.sampling;
    gr.max_tokens = ar.max_tokens > 0 ? ar.max_tokens : (stats.max_ctx > 0 ? stats.max_ctx - n_ids : 16);
    gr.stop = ar.stop;
    gr.n_stop = ar.n_stop;
    gr.logprobs = ar.logprobs;
    gr.top_logprobs = ar.top_logprobs;
    gr.ignore_eos = ar.ignore_eos;
    gr.cb = on_gen_event;
    gr.user = g;
    g->trace_id = trace_id;
    st_trace_set_current(trace_id); /* the batcher's submit takes the decision */
    rcode = be->submit(be, &gr, &g->id);
    st_trace_clear_current();
    if (rcode) {
        gen_free(g);
        if (rcode == ST_EINVAL)
            st_api_set_error(&e, 400, "invalid_request_error", NULL, "%s", st_errmsg());
        else if (rcode == ST_EAGAIN)
            st_api_set_error(&e, 503, "server_error", NULL, "the server is busy: %s", st_errmsg());
        else
            st_api_set_error(&e, 500, "server_error", NULL, "could not start generation: %s", st_errmsg());
        goto error;
    }
    srv->n_inflight++;
    h2o_linklist_insert(&srv->streams, &g->link);
    g->rc = rc;
    rc->g = g;
    rc->prompt_tokens = n_ids;
    free(ids);
    st_api_request_free(&ar);
    if (g->stream) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
        start(req, 200, "text/event-stream", &rc->gen);
        st_api_sse_role(&g->out, &g->meta);
        if (g->out.len) {
            g->sending = 1;
            h2o_iovec_t buf = h2o_iovec_init(g->out.buf, g->out.len);
            h2o_send(req, &buf, 1, H2O_SEND_STATE_IN_PROGRESS);
        }
    }
    return;
error:
    free(ids);
    st_api_request_free(&ar);
    send_error(req, &e);
}

/* GET /debug/trace[?request_id=ID]: Chrome trace JSON of one request (the
 * X-Request-Id of its response), or of everything this process holds. */
static void handle_trace(h2o_req_t *req)
{
    uint64_t id = 0;
    int have_id = 0;
    if (req->query_at != SIZE_MAX) {
        const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
        while (q < end) {
            const char *amp = memchr(q, '&', (size_t)(end - q));
            const char *stop = amp ? amp : end;
            if (stop - q > 11 && !memcmp(q, "request_id=", 11)) {
                have_id = 1;
                for (const char *c = q + 11; c < stop; c++) {
                    if (*c < '0' || *c > '9' || id > (UINT64_MAX - 9) / 10) {
                        fail(req, 400, "invalid_request_error", "request_id",
                             "request_id must be a decimal request id (the X-Request-Id of a response)");
                        return;
                    }
                    id = id * 10 + (uint64_t)(*c - '0');
                }
            } else if (stop - q >= 10 && !memcmp(q, "request_id", 10)) {
                fail(req, 400, "invalid_request_error", "request_id", "request_id needs a value");
                return;
            }
            q = stop + 1;
        }
    }
    st_strbuf sb;
    st_sb_init(&sb);
    int rc = have_id ? st_trace_export_request(id, &sb) : st_trace_export_all(&sb);
    if (rc == ST_ENOENT || rc == ST_EINVAL) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s (tracing samples %.3g of requests: --trace-sample)", st_errmsg(),
                 st_trace_sample());
        fail(req, rc == ST_ENOENT ? 404 : 400, "invalid_request_error", "request_id", msg);
    } else {
        send_body(req, 200, "application/json", sb.buf, sb.len);
    }
    st_sb_free(&sb);
}

/* POST /debug/trace/sample?p=P: set the sampling rate (the overhead
 * benchmark compares 0 and 1); answers the new and the previous rate. */
static void handle_trace_sample(h2o_req_t *req)
{
    char val[64] = "";
    if (req->query_at != SIZE_MAX) {
        const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
        if (end - q > 2 && !memcmp(q, "p=", 2) && (size_t)(end - q - 2) < sizeof val)
            memcpy(val, q + 2, (size_t)(end - q - 2));
    }
    double p;
    if (st_trace_parse_sample(val, &p)) {
        fail(req, 400, "invalid_request_error", "p", st_errmsg());
        return;
    }
    double prev = st_trace_sample();
    st_trace_set_sample(p);
    char body[96];
    int n = snprintf(body, sizeof body, "{\"sample\":%.17g,\"previous\":%.17g}", st_trace_sample(), prev);
    send_body(req, 200, "application/json", body, (size_t)n);
}

static void handle_models(struct st_http_server *srv, h2o_req_t *req)
{
    st_strbuf sb;
    st_sb_init(&sb);
    st_sb_puts(&sb, "{\"object\":\"list\",\"data\":[{\"id\":");
    st_sb_json_str(&sb, srv->model_name, strlen(srv->model_name));
    st_gen_stats s;
    memset(&s, 0, sizeof s);
    srv->cfg.backend->stats(srv->cfg.backend, &s);
    st_sb_printf(&sb, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"strait\",\"max_model_len\":%d}]}",
                 (long long)time(NULL), s.max_ctx);
    send_body(req, 200, "application/json", sb.buf, sb.len);
    st_sb_free(&sb);
}

static void handle_health(struct st_http_server *srv, h2o_req_t *req)
{
    st_gen_stats s;
    memset(&s, 0, sizeof s);
    srv->cfg.backend->stats(srv->cfg.backend, &s);
    const char *body = !s.ready ? "{\"status\":\"loading\"}"
                       : srv->stopping ? "{\"status\":\"stopping\"}"
                                       : "{\"status\":\"ok\"}";
    send_body(req, s.ready && !srv->stopping ? 200 : 503, "application/json", body, strlen(body));
}

static void handle_metrics(struct st_http_server *srv, h2o_req_t *req)
{
    st_gen_stats s;
    memset(&s, 0, sizeof s);
    srv->cfg.backend->stats(srv->cfg.backend, &s);
    st_strbuf sb;
    st_sb_init(&sb);
    st_metrics_render(&srv->metrics, &s, &sb);
    st_sb_printf(&sb, "# HELP strait_http_requests_in_flight Generations in flight.\n"
                      "# TYPE strait_http_requests_in_flight gauge\nstrait_http_requests_in_flight %d\n",
                 srv->n_inflight);
    send_body(req, 200, "text/plain; version=0.0.4", sb.buf, sb.len);
    st_sb_free(&sb);
}

/* Constant-time comparison of the bearer token against each key. */
static int authorized(struct st_http_server *srv, h2o_req_t *req)
{
    if (srv->n_keys == 0)
        return 1;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0)
        return 0;
    h2o_iovec_t v = req->headers.entries[i].value;
    if (v.len < 7 || !h2o_lcstris(v.base, 6, H2O_STRLIT("bearer")) || v.base[6] != ' ')
        return 0;
    const char *tok = v.base + 7;
    size_t n = v.len - 7;
    int ok = 0;
    for (int k = 0; k < srv->n_keys; k++) {
        size_t kl = strlen(srv->keys[k]);
        unsigned char diff = kl != n;
        for (size_t j = 0; j < kl; j++)
            diff |= (unsigned char)(srv->keys[k][j] ^ (j < n ? tok[j] : 0));
        ok |= diff == 0;
    }
    return ok;
}

static int is(h2o_iovec_t v, const char *s) { return h2o_memis(v.base, v.len, s, strlen(s)); }

int st_http_on_req(struct st_http_server *srv, h2o_req_t *req)
{
    struct req_ctx *rc = h2o_mem_alloc_shared(&req->pool, sizeof *rc, on_req_dispose);
    memset(rc, 0, sizeof *rc);
    rc->gen.proceed = on_proceed;
    rc->srv = srv;
    rc->req = req;
    rc->t0 = st_now_ns();
    static __thread int named;
    if (!named) {
        named = 1;
        st_trace_thread_name("http");
    }
    copy_iov(rc->method, sizeof rc->method, req->method);
    copy_iov(rc->path, sizeof rc->path, req->path_normalized);
    srv->n_live_reqs++;

    if (st_http_web_serve(req)) /* the web UI: "/", "/ui/..." (web_assets.h) */
        return 0;
    h2o_iovec_t path = req->path_normalized;
    int get = is(req->method, "GET") || is(req->method, "HEAD"), post = is(req->method, "POST");
    struct {
        const char *path;
        int post;
    } routes[] = {{"/v1/chat/completions", 1}, {"/v1/completions", 1}, {"/v1/models", 0}, {"/health", 0},
                  {"/metrics", 0}, {"/debug/trace", 0}, {"/debug/trace/sample", 1}};
    int r = -1;
    for (int k = 0; k < (int)ST_ARRAY_LEN(routes); k++)
        if (is(path, routes[k].path))
            r = k;
    const st_http_route *ext = r < 0 ? st_http_ext_find(srv, req) : NULL;
    if (ext) {
        if (!ext->public_route && !authorized(srv, req)) {
            fail(req, 401, "authentication_error", NULL, "a valid API key is required: 'Authorization: Bearer KEY'");
            return 0;
        }
        return st_http_ext_serve(srv, req, ext);
    }
    if (r < 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "no route for %s", rc->path);
        fail(req, 404, "invalid_request_error", NULL, msg);
        return 0;
    }
    if (routes[r].post ? !post : !get) {
        const char *allow = routes[r].post ? "POST" : "GET, HEAD";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
        char msg[160];
        snprintf(msg, sizeof msg, "method %s is not allowed on %s (allowed: %s)", rc->method, routes[r].path, allow);
        fail(req, 405, "invalid_request_error", NULL, msg);
        return 0;
    }
    if (r != 3 && !authorized(srv, req)) {
        fail(req, 401, "authentication_error", NULL, "a valid API key is required: 'Authorization: Bearer KEY'");
        return 0;
    }
    switch (r) {
    case 0: handle_generate(srv, req, rc, ST_API_CHAT); break;
    case 1: handle_generate(srv, req, rc, ST_API_COMPLETION); break;
    case 2: handle_models(srv, req); break;
    case 3: handle_health(srv, req); break;
    case 4: handle_metrics(srv, req); break;
    case 5: handle_trace(req); break;
    default: handle_trace_sample(req); break;
    }
    return 0;
}
