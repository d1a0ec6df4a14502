/* Extra endpoints registered by the embedding program (server.h
 * st_http_route): exact-path dispatch, the reply, and Server-Sent Events
 * streams for routes with stream = 1 (the API key is checked by the
 * caller, openai.c).
 *
 * A stream (struct ext_stream, in the request's pool) lives on the loop
 * thread only: a per-route h2o timeout calls the handler every period_ms;
 * a body that differs from the last one queued becomes one event. At most
 * one h2o_send is in flight; a body that changes meanwhile waits in
 * `pending` (only the newest is kept: a slow client skips states, never
 * queues them). The stream ends when the client leaves (the pool's dispose
 * callback unhooks it) or at server stop (st_http_ext_end_streams sends
 * the final chunk). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/st_common.h"
#include "http_internal.h"

static int eq(h2o_iovec_t v, const char *s) { return h2o_memis(v.base, v.len, s, strlen(s)); }

static void reply(h2o_req_t *req, int status, const char *ctype, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = status == 200 ? "OK" : "Error";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_send_inline(req, body, len);
}

static void reply_error(h2o_req_t *req, int status, const char *msg)
{
    st_strbuf sb;
    st_sb_init(&sb);
    st_sb_puts(&sb, "{\"error\":{\"message\":");
    st_sb_json_str(&sb, msg, strlen(msg));
    st_sb_puts(&sb, ",\"type\":\"");
    st_sb_puts(&sb, status < 500 ? "invalid_request_error" : "server_error");
    st_sb_puts(&sb, "\"}}");
    reply(req, status, "application/json", sb.buf, sb.len);
    st_sb_free(&sb);
}

static int status_of(int rc)
{
    switch (rc) {
    case ST_EINVAL: return 400;
    case ST_ENOENT: return 404;
    case ST_EAGAIN: return 503;
    default: return 500;
    }
}

const st_http_route *st_http_ext_find(struct st_http_server *srv, h2o_req_t *req)
{
    h2o_iovec_t path = req->path_normalized;
    for (int i = 0; i < srv->cfg.n_routes; i++)
        if (eq(path, srv->cfg.routes[i].path))
            return &srv->cfg.routes[i];
    return NULL;
}

int st_http_ext_serve(struct st_http_server *srv, h2o_req_t *req, const st_http_route *rt)
{
    int post = strcmp(rt->method, "POST") == 0;
    if (post ? !eq(req->method, "POST") : !(eq(req->method, "GET") || eq(req->method, "HEAD"))) {
        const char *allow = post ? "POST" : "GET, HEAD";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
        reply_error(req, 405, "method not allowed on this path");
        return 0;
    }
    const char *query = "";
    size_t qlen = 0;
    if (req->query_at != SIZE_MAX && req->query_at + 1 < req->path.len) {
        query = req->path.base + req->query_at + 1;
        qlen = req->path.len - req->query_at - 1;
    }
    if (rt->stream)
        return st_http_ext_stream(srv, req, rt, query, qlen);
    st_http_reply out = {.status = 200, .content_type = "application/json"};
    int rc = rt->handle(rt->ctx, query, qlen, req->entity.base ? req->entity.base : "", req->entity.len, &out);
    if (rc) {
        free(out.body);
        reply_error(req, status_of(rc), st_errmsg());
        return 0;
    }
    h2o_iovec_t body = h2o_strdup(&req->pool, out.body ? out.body : "", out.body ? out.len : 0);
    free(out.body);
    reply(req, out.status ? out.status : 200, out.content_type ? out.content_type : "application/json", body.base,
          body.len);
    return 0;
}

/* ---- SSE streams ----------------------------------------------------------- */

/* A comment line goes out after this long without an event, so that
 * proxies and browsers keep an idle stream open. */
#define KEEPALIVE_NS (15ull * 1000000000ull)
#define DEFAULT_PERIOD_MS 500
#define MIN_PERIOD_MS 10

struct ext_stream {
    h2o_generator_t gen;       /* proceed: the last send was written */
    struct st_http_server *srv;
    h2o_req_t *req;
    const st_http_route *rt;
    int route_idx;
    const char *query;         /* in req->path: lives as long as the request */
    size_t query_len;
    h2o_timeout_entry_t timer;
    h2o_linklist_t link;       /* in srv->ext_streams */
    char *last;                /* (last_len,) the body of the last event queued, malloc'd */
    size_t last_len;
    int last_was_error;
    st_strbuf pending;         /* events not yet handed to h2o */
    st_strbuf out;             /* bytes of the send in flight: valid until proceed */
    int sending;               /* an h2o_send is in flight */
    int ending;                /* send the final chunk once nothing is in flight */
    int final_sent;
    uint64_t last_sent_ns;
};

/* One event: every line of body as a "data:" line (SSE fields cannot hold
 * a newline), an optional event name, then the blank line. */
static void sse_event(st_strbuf *sb, const char *event, const char *body, size_t len)
{
    if (event)
        st_sb_printf(sb, "event: %s\n", event);
    const char *p = body, *end = body + len;
    for (;;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        if (n && p[n - 1] == '\r')
            n--;
        st_sb_puts(sb, "data: ");
        st_sb_putn(sb, p, n);
        st_sb_puts(sb, "\n");
        if (!nl)
            break;
        p = nl + 1;
    }
    st_sb_puts(sb, "\n");
}

/* Hand pending (or the final chunk) to h2o when no send is in flight. */
static void stream_flush(struct ext_stream *st)
{
    if (st->sending || st->final_sent)
        return;
    if (st->pending.len == 0 && !st->ending)
        return;
    st_strbuf t = st->out;
    st->out = st->pending;
    st->pending = t;
    st->pending.len = 0;
    h2o_iovec_t buf = h2o_iovec_init(st->out.buf, st->out.len);
    st->sending = 1;
    st->final_sent = st->ending;
    st->last_sent_ns = st_now_ns();
    h2o_send(st->req, &buf, buf.len ? 1 : 0, st->ending ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

/* Call the handler; queue an event when its answer changed. A failure
 * after the stream started is an "error" event carrying the JSON error
 * (sent once, until the answer changes again); polling goes on. */
static void stream_poll(struct ext_stream *st)
{
    st_http_reply r = {.status = 200, .content_type = "application/json"};
    int rc = st->rt->handle(st->rt->ctx, st->query, st->query_len, "", 0, &r);
    st_strbuf err;
    st_sb_init(&err);
    const char *body = r.body ? r.body : "";
    size_t len = r.body ? r.len : 0;
    if (rc) {
        const char *msg = st_errmsg();
        st_sb_printf(&err, "{\"error\":{\"message\":");
        st_sb_json_str(&err, msg, strlen(msg));
        st_sb_printf(&err, ",\"status\":%d}}", status_of(rc));
        body = err.buf;
        len = err.len;
    }
    int same = st->last && (rc != 0) == st->last_was_error && st->last_len == len && memcmp(st->last, body, len) == 0;
    if (!same) {
        free(st->last);
        st->last = st_xmalloc(len + 1);
        memcpy(st->last, body, len);
        st->last[len] = 0;
        st->last_len = len;
        st->last_was_error = rc != 0;
        /* a slow client: drop events it has not been sent yet, keep the newest */
        st->pending.len = 0;
        sse_event(&st->pending, rc ? "error" : NULL, body, len);
    } else if (!st->sending && st->pending.len == 0 && st_now_ns() - st->last_sent_ns >= KEEPALIVE_NS) {
        st_sb_puts(&st->pending, ": keepalive\n\n");
    }
    free(r.body);
    st_sb_free(&err);
    stream_flush(st);
}

static int period_of(const st_http_route *rt)
{
    int p = rt->period_ms > 0 ? rt->period_ms : DEFAULT_PERIOD_MS;
    return p < MIN_PERIOD_MS ? MIN_PERIOD_MS : p;
}

static void stream_arm(struct ext_stream *st)
{
    struct st_http_server *srv = st->srv;
    if (!srv->ext_timer_init[st->route_idx]) {
        h2o_timeout_init(srv->ctx.loop, &srv->ext_timers[st->route_idx], (uint64_t)period_of(st->rt));
        srv->ext_timer_init[st->route_idx] = 1;
    }
    h2o_timeout_link(srv->ctx.loop, &srv->ext_timers[st->route_idx], &st->timer);
}

static void stream_end(struct ext_stream *st);

/* Whether an HTTP/1 client has closed its connection. h2o 2.2 does not
 * read an HTTP/1 socket while a response is being sent, so a departure
 * shows only at the next failed write, which for an unchanging status can
 * be a keep-alive period away; a peek at the socket sees the EOF at once.
 * (HTTP/2 reads throughout: h2o ends the request on RST_STREAM or close.) */
static int client_gone(h2o_req_t *req)
{
    if (req->version >= 0x200 || !req->conn->callbacks->get_socket)
        return 0;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    int fd = sock ? h2o_socket_get_fd(sock) : -1;
    if (fd < 0)
        return 0;
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    struct ext_stream *st = H2O_STRUCT_FROM_MEMBER(struct ext_stream, timer, entry);
    if (st->ending)
        return;
    if (client_gone(st->req)) {
        stream_end(st); /* the final chunk: h2o then closes and disposes the request */
        return;
    }
    stream_poll(st);
    if (!st->ending)
        stream_arm(st);
}

static void on_proceed(h2o_generator_t *self, h2o_req_t *req)
{
    (void)req;
    struct ext_stream *st = H2O_STRUCT_FROM_MEMBER(struct ext_stream, gen, self);
    st->sending = 0;
    stream_flush(st);
}

/* The request is gone (client left, or the final chunk went out). */
static void on_dispose(void *p)
{
    struct ext_stream *st = p;
    if (h2o_timeout_is_linked(&st->timer))
        h2o_timeout_unlink(&st->timer);
    if (h2o_linklist_is_linked(&st->link))
        h2o_linklist_unlink(&st->link);
    free(st->last);
    st_sb_free(&st->pending);
    st_sb_free(&st->out);
}

static void stream_end(struct ext_stream *st)
{
    st->ending = 1;
    if (h2o_timeout_is_linked(&st->timer))
        h2o_timeout_unlink(&st->timer);
    if (h2o_linklist_is_linked(&st->link))
        h2o_linklist_unlink(&st->link);
    stream_flush(st);
}

void st_http_ext_end_streams(struct st_http_server *srv)
{
    while (!h2o_linklist_is_empty(&srv->ext_streams))
        stream_end(H2O_STRUCT_FROM_MEMBER(struct ext_stream, link, srv->ext_streams.next));
}

void st_http_ext_free(struct st_http_server *srv)
{
    for (int i = 0; srv->ext_timer_init && i < srv->cfg.n_routes; i++)
        if (srv->ext_timer_init[i] && h2o_linklist_is_empty(&srv->ext_timers[i]._entries))
            h2o_timeout_dispose(srv->ctx.loop, &srv->ext_timers[i]);
    free(srv->ext_timers);
    free(srv->ext_timer_init);
    srv->ext_timers = NULL;
    srv->ext_timer_init = NULL;
}

int st_http_ext_stream(struct st_http_server *srv, h2o_req_t *req, const st_http_route *rt, const char *query,
                       size_t query_len)
{
    if (srv->stopping) {
        reply_error(req, 503, "the server is shutting down");
        return 0;
    }
    /* the first answer decides between an error reply and a stream */
    st_http_reply r = {.status = 200, .content_type = "application/json"};
    int rc = rt->handle(rt->ctx, query, query_len, "", 0, &r);
    if (rc || (r.status && (r.status < 200 || r.status > 299))) {
        if (rc) {
            reply_error(req, status_of(rc), st_errmsg());
        } else {
            h2o_iovec_t body = h2o_strdup(&req->pool, r.body ? r.body : "", r.body ? r.len : 0);
            reply(req, r.status, r.content_type ? r.content_type : "application/json", body.base, body.len);
        }
        free(r.body);
        return 0;
    }
    if (!srv->ext_timers) {
        srv->ext_timers = st_xcalloc((size_t)srv->cfg.n_routes, sizeof *srv->ext_timers);
        srv->ext_timer_init = st_xcalloc((size_t)srv->cfg.n_routes, 1);
    }
    struct ext_stream *st = h2o_mem_alloc_shared(&req->pool, sizeof *st, on_dispose);
    memset(st, 0, sizeof *st);
    st->gen.proceed = on_proceed;
    st->srv = srv;
    st->req = req;
    st->rt = rt;
    st->route_idx = (int)(rt - srv->cfg.routes);
    st->query = query;
    st->query_len = query_len;
    st->timer.cb = on_tick;
    st_sb_init(&st->pending);
    st_sb_init(&st->out);
    st->last_len = r.body ? r.len : 0;
    st->last = st_xmalloc(st->last_len + 1);
    memcpy(st->last, r.body ? r.body : "", st->last_len);
    st->last[st->last_len] = 0;
    free(r.body);

    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/event-stream"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    /* nginx and similar proxies buffer responses unless told otherwise */
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-accel-buffering"), 0, NULL,
                          H2O_STRLIT("no"));
    h2o_start_response(req, &st->gen);
    if (eq(req->method, "HEAD")) {
        st->ending = 1;
        stream_flush(st);
        return 0;
    }
    h2o_linklist_insert(&srv->ext_streams, &st->link);
    sse_event(&st->pending, NULL, st->last, st->last_len);
    stream_flush(st);
    stream_arm(st);
    return 0;
}
